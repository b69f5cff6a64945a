"""A density-invariant curvature estimate on NNK graphs (the book's own, not the paper's).

The paper's kind of metric, the raw mean subspace angle between neighbouring tangent spaces
(:mod:`sslgeom.mgm`, column ``subspace_angle``), grows with the edge length: on a curve of
curvature ``kappa`` the tangent turns by about ``kappa * length`` along an edge. Edges shrink as
sampling gets denser, so the raw angle measures density as much as curvature. This module keeps
the raw angle for comparison and adds **our** estimate, the angle per unit edge length:

- per NNK edge ``(i, j)`` (``j`` kept by ``i``'s NNK problem or ``i`` by ``j``'s), ``phi_ij`` is
  the largest principal angle between the tangent spaces ``T_i`` and ``T_j`` (the leading
  right singular vectors of each node's neighbour offsets, as in :func:`sslgeom.subspaces.tangent_bases`)
  and ``L_ij = ||x_i - x_j||``;
- the edge's curvature is ``2 sin(phi_ij / 2) / L_ij``: for two points of a circle of radius
  ``R`` whose tangents differ by ``phi``, the chord is ``L = 2 R sin(phi / 2)``, so this is
  exactly ``1 / R`` for exact tangents (``phi / L`` is the same to second order);
- the graph's curvature is the length-weighted mean ``sum_ij 2 sin(phi_ij / 2) / sum_ij L_ij``.
  Not the median of the per-edge ratios: the tangent of a node is estimated from a few
  neighbours and its error does not shrink with the length of one particular edge, so the
  ratio of a short edge is mostly estimation error; on random circles the median ratio came out
  15-70% above ``1 / R``, the length-weighted mean within 2% (``tests/test_curvature.py``).

For a sphere of radius ``R`` the tangent spaces of two points differ by the central angle, so
the estimate is ``1 / R`` again (the curvature of great circles); measured 4-11% high on random
2-spheres (tangent planes fitted to about 5 NNK neighbours). For flat data it is 0 (measured
below 1e-12 for flat 1-, 2- and 3-spaces and k = 10, 20, 40).

The tangent dimension comes from a rule tested on manifolds of known dimension
(:func:`tangent_dimension`): the median over nodes of the local PCA estimate of
scikit-dimension (Fukunaga-Olsen rule on each node's ``k`` nearest neighbours), rounded. The
mgm default rule (99% of the energy of the NNK offsets, at most 8) is not used: it counts noise
and curvature as dimensions (median 5 on a line with noise 1e-3, 3 on such a circle, 4 on a
3-sphere, where this rule returns 1, 1 and 3).

L2-normalised features (cosine kernel). The graph then lives on the unit sphere, and
normalisation adds the sphere's own curvature: a great circle, or a straight line offset from
the origin (which normalisation maps onto a great-circle arc), has curvature 1 in the ambient
space though it is as straight as a curve on a sphere can be. The estimate therefore reports

- ``curvature``: in the ambient space of the kernel (the normalised rows), comparable with the
  raw angle;
- ``intrinsic``: the curvature within the sphere. Before comparing ``T_i`` with ``T_j``,
  ``T_j`` is carried to ``x_i`` by the rotation of the plane ``span(x_i, x_j)`` that takes
  ``x_j`` to ``x_i`` (parallel transport along the sphere's great circle), and tangent spaces
  are fitted to the offsets projected on the sphere's tangent space at each node. What the
  sphere turns is thereby removed exactly, edge by edge; what is left is the data's own
  turning on the sphere (the geodesic curvature for curves: 0 for great circles,
  ``cot(alpha)`` for a circle of angular radius ``alpha``, whose ambient curvature is
  ``1 / sin(alpha)``). We chose this over the analytic identity
  ``kappa_intrinsic^2 = kappa^2 - 1`` (exact for curves) because the square root turns a 1%
  error of ``kappa`` near 1 into an intrinsic curvature of 0.14.

For the Gaussian kernel the geometry is the raw features' and no sphere arises:
``intrinsic == curvature``. Computing on the raw features is right there because the Gaussian
graph is built on them: its edges and lengths are raw distances.

Validity: the estimate is density invariant (circles at n, 2n, 4n within 1.4%, 2-spheres
within 1.6%) while the noise is small against the edges. Noise of norm ``e = noise *
sqrt(ambient_dim)`` tilts a tangent fitted to neighbours at distance ``L`` by about ``e / L``, which
reads as a curvature of order ``e / L**2``: on flat 2-D data with ``L = 0.1`` and ``e = 6e-4``
the estimate is 0.12 instead of 0, on a circle of radius 1 with ``L = 0.016`` and ``e = 6e-3`` it
is 11.5 instead of 1, and it grows as sampling gets denser. Tangents fitted to all ``k``
candidates (``tangents="knn"``) are steadier (1.6 on that circle) at the price of a bias on clean
data. Graph: :func:`curvature` builds the **exact** NNK graph (``kkt_tol=0``, float64) by
default. A node's tangent needs at least ``d`` neighbour offsets, which the exact graph of clean
data keeps (a curve's node keeps both sides); at the book's relative tolerance
(:func:`sslgeom.nnk.nnk_graph`) a node whose far side is much farther than its near side can
keep one neighbour, and its tangent is then the direction of one edge.

Typical use::

    from sslgeom import curvature
    est = curvature.curvature(features, k=20, kernel="gaussian")
    est.curvature, est.intrinsic, est.raw_mean_angle
    curvature.edge_curvatures(result, features, tangent_dim=2)   # one row per edge
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import pandas as pd

from sslgeom import nnk
from sslgeom.dimension import validated_by_caller
from sslgeom.kernels import kernel_space
from sslgeom.subspaces import largest_principal_angles, tangent_bases
from sslgeom.neighbors import knn
from sslgeom.validation import check_choice, check_features, check_graph_features, check_int

__all__ = [
    "CurvatureEstimate",
    "tangent_dimension",
    "edge_curvatures",
    "curvature_from_graph",
    "curvature",
]

TangentSource = Literal["nnk", "knn"]
# Edges processed per block: the gathered bases take about 64 MiB.
_BLOCK_VALUES = 1 << 23


@dataclass(frozen=True)
class CurvatureEstimate:
    """Curvature of a point cloud read off its NNK graph (the book's estimate).

    Attributes
    ----------
    curvature : float
        ``sum 2 sin(phi / 2) / sum L`` over NNK edges, in the kernel's space (1 / length).
    intrinsic : float
        The same with the unit sphere's turning removed (cosine kernel); equals ``curvature``
        for the Gaussian kernel.
    raw_mean_angle : float
        The paper's kind of metric for comparison: mean over nodes of the mean largest
        principal angle (radians) to its NNK neighbours, with the same tangent spaces.
    mean_edge_length : float
        Mean ``L`` over the edges (what the raw angle scales with).
    tangent_dim : int
    n_edges : int
    kernel : str
    """

    curvature: float
    intrinsic: float
    raw_mean_angle: float
    mean_edge_length: float
    tangent_dim: int
    n_edges: int
    kernel: str

    def as_dict(self) -> dict:
        """The fields as a plain dict (e.g. a table row)."""
        return asdict(self)


def tangent_dimension(
    points,
    neighbors: np.ndarray | None = None,
    *,
    n_neighbors: int = 20,
    max_nodes: int | None = 200,
    seed: int = 0,
) -> int:
    """Tangent dimension by the validated rule: median local PCA estimate, rounded.

    Each node's neighbourhood is its ``n_neighbors`` nearest neighbours (or the row of
    ``neighbors``); scikit-dimension's ``lPCA`` (Fukunaga-Olsen: eigenvalues above 5% of the
    largest) estimates its dimension; the rule returns the median over nodes, rounded, at
    least 1. Tested in ``tests/test_curvature.py`` on flat 1-, 2-, 3-spaces and 1-, 2-,
    3-spheres with noise 1e-4 and 1e-3, where it returns the true dimension. (Rules that fail
    there: the mgm default, 99% of the energy of the NNK offsets, counts noise and curvature as
    dimensions; TwoNN rounded counts noise when it is comparable with the nearest-neighbour
    distance: 10 on a dense line with noise 1e-3.) The neighbourhood is the library
    estimator's ``fit`` on each node's neighbours, which is what ``fit_pw`` does for every node.

    Parameters
    ----------
    points : array-like, shape (n_points, dim)
        In the space the curvature is measured in (normalised rows for the cosine kernel).
    neighbors : np.ndarray, shape (n_points, m), optional
        Precomputed neighbour indices (e.g. ``NNKResult.neighbors``), the point excluded.
    n_neighbors : int
        Neighbourhood size when ``neighbors`` is not given.
    max_nodes : int or None
        Estimate on at most this many nodes drawn at random (skdim fits one node at a time, about
        2 ms each; the median of 200 is stable); ``None``: every node.
    seed : int
        Seed of that draw.

    Returns
    -------
    int
    """
    import skdim  # imported here: scikit-learn and skdim are slow to import

    points = check_features(points, "points", min_rows=3)
    if neighbors is None:
        n_neighbors = check_int(n_neighbors, "n_neighbors", minimum=2, maximum=len(points) - 1)
        neighbors, _ = knn(points, n_neighbors, dtype="float64")
    neighbors = np.asarray(neighbors)
    if neighbors.ndim != 2 or len(neighbors) != len(points) or neighbors.shape[1] < 2:
        raise ValueError(f"neighbors must have shape ({len(points)}, m >= 2); got "
                         f"{neighbors.shape}.")
    nodes = np.arange(len(points))
    if max_nodes is not None and len(points) > max_nodes:
        nodes = np.sort(np.random.default_rng(seed).choice(len(points), max_nodes, replace=False))
    model = skdim.id.lPCA(verbose=False)
    with validated_by_caller():  # the points were checked above; skip skdim's per-node re-checks
        estimates = [model.fit(points[neighbors[node]]).dimension_ for node in nodes]
    return max(1, int(np.rint(np.median(estimates))))


def _node_tangents(
    points: np.ndarray, neighbors: np.ndarray, mask: np.ndarray, tangent_dim: int, on_sphere: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Tangent bases of every node from its neighbours' offsets, in blocks of nodes.

    Parameters
    ----------
    points : np.ndarray, shape (n_points, dim)
    neighbors : np.ndarray, shape (n_points, k), int
    mask : np.ndarray, shape (n_points, k), bool
        Which candidates the tangent is fitted to.
    tangent_dim : int
    on_sphere : bool
        Project each offset on the unit sphere's tangent space at the node first
        (``v - (x_i . v) x_i``), so the basis lies in ``x_i``'s orthogonal complement.

    Returns
    -------
    bases : np.ndarray, shape (n_points, dim, min(tangent_dim, k, dim))
    dims : np.ndarray, shape (n_points,), int64
    """
    n_points, k = neighbors.shape
    dim = points.shape[1]
    width = min(tangent_dim, k, dim)
    bases, dims = np.zeros((n_points, dim, width)), np.zeros(n_points, dtype=np.int64)
    rows = max(1, _BLOCK_VALUES // (k * dim))
    for start in range(0, n_points, rows):
        stop = min(start + rows, n_points)
        centre = points[start:stop, None, :]
        offsets = points[neighbors[start:stop]] - centre
        if on_sphere:
            offsets -= (offsets * centre).sum(-1, keepdims=True) * centre
        block_bases, block_dims = tangent_bases(offsets, mask[start:stop], tangent_dim)
        bases[start:stop, :, : block_bases.shape[2]] = block_bases
        dims[start:stop] = block_dims
    return bases, dims


def _transport_on_sphere(basis: np.ndarray, source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Rotate bases at ``source`` to ``target`` along the unit sphere's great circle.

    The rotation acts in the plane ``span(source, target)``, takes ``source`` to ``target``
    and fixes its orthogonal complement: the sphere's parallel transport along the geodesic.

    Parameters
    ----------
    basis : np.ndarray, shape (n_edges, dim, d)
    source, target : np.ndarray, shape (n_edges, dim)
        Unit vectors.

    Returns
    -------
    np.ndarray, shape (n_edges, dim, d)
    """
    cos = np.clip((source * target).sum(-1), -1.0, 1.0)
    normal = target - cos[:, None] * source  # the in-plane direction orthogonal to source
    sin = np.linalg.norm(normal, axis=1)
    normal = normal / np.where(sin > 0, sin, 1.0)[:, None]  # sin == 0: the rotation is identity
    along_source = np.einsum("ed,edk->ek", source, basis)
    along_normal = np.einsum("ed,edk->ek", normal, basis)
    # R v = v + (cos - 1)(u u.v + w w.v) + sin (w u.v - u w.v), u = source, w = normal
    return (basis
            + (cos - 1.0)[:, None, None] * (source[:, :, None] * along_source[:, None, :]
                                            + normal[:, :, None] * along_normal[:, None, :])
            + sin[:, None, None] * (normal[:, :, None] * along_source[:, None, :]
                                    - source[:, :, None] * along_normal[:, None, :]))


def _edge_angles(
    bases: np.ndarray,
    dims: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    points: np.ndarray | None = None,
) -> np.ndarray:
    """Largest principal angle per edge, in blocks of edges.

    Parameters
    ----------
    bases : np.ndarray, shape (n_points, dim, d_max)
    dims : np.ndarray, shape (n_points,)
    first, second : np.ndarray, shape (n_edges,), int
    points : np.ndarray, shape (n_points, dim), optional
        Unit rows: transport the bases of ``second`` to ``first`` on the sphere first.

    Returns
    -------
    np.ndarray, shape (n_edges,)
        NaN where either tangent space is empty.
    """
    angles = np.empty(len(first))
    per_block = max(1, _BLOCK_VALUES // (2 * bases.shape[1] * max(bases.shape[2], 1)))
    for start in range(0, len(first), per_block):
        a, b = first[start : start + per_block], second[start : start + per_block]
        moved = bases[b] if points is None else _transport_on_sphere(bases[b], points[b], points[a])
        angles[start : start + per_block] = largest_principal_angles(bases[a], dims[a], moved,
                                                                     dims[b])
    return angles


def _nnk_edges(result: nnk.NNKResult) -> tuple[np.ndarray, np.ndarray]:
    """Undirected edges ``(i, j)``, ``i < j``, kept by either endpoint's NNK problem."""
    node, slot = np.nonzero(result.kept)
    other = result.neighbors[node, slot]
    low, high = np.minimum(node, other), np.maximum(node, other)
    codes = np.unique(low * result.n_points + high)
    return codes // result.n_points, codes % result.n_points


def _check_graph_points(result: nnk.NNKResult, features) -> np.ndarray:
    """The graph's features (validated against it) in the kernel's space."""
    return kernel_space(check_graph_features(features, result.n_points), result.kernel)


def edge_curvatures(
    result: nnk.NNKResult,
    features,
    tangent_dim: int,
    *,
    tangents: TangentSource = "nnk",
) -> pd.DataFrame:
    """Per NNK edge: length, tangent angle and curvature (the book's estimate).

    Parameters
    ----------
    result, features
        The NNK graph and the features it was built from, as in :func:`sslgeom.mgm.node_metrics`.
    tangent_dim : int
        Dimension of every tangent space (capped by each node's neighbour count); see
        :func:`tangent_dimension` for the validated rule.
    tangents : {"nnk", "knn"}
        Fit each tangent to the node's NNK neighbours (default; the neighbourhoods of
        :mod:`sslgeom.mgm`, exact on noise-free circles) or to all its ``k`` candidates (more
        robust to noise, about 14% high on noise-free circles).

    Returns
    -------
    pandas.DataFrame
        One row per undirected edge: ``i``, ``j``, ``length`` (in the kernel's space), ``angle``
        (radians), ``curvature`` ``= 2 sin(angle / 2) / length``; for the cosine kernel also
        ``intrinsic_angle`` and ``intrinsic_curvature`` (the sphere's turning removed, see the
        module docstring), else these equal ``angle`` and ``curvature``.
    """
    tangent_dim = check_int(tangent_dim, "tangent_dim", minimum=1)
    check_choice(tangents, ("nnk", "knn"), "tangents")
    points = _check_graph_points(result, features)
    mask = result.kept if tangents == "nnk" else np.ones_like(result.kept)
    first, second = _nnk_edges(result)
    length = np.linalg.norm(points[first] - points[second], axis=1)
    bases, dims = _node_tangents(points, result.neighbors, mask, tangent_dim, on_sphere=False)
    angle = _edge_angles(bases, dims, first, second)
    table = pd.DataFrame({"i": first, "j": second, "length": length, "angle": angle})
    with np.errstate(divide="ignore", invalid="ignore"):
        table["curvature"] = 2.0 * np.sin(angle / 2.0) / length
        if result.kernel == "cosine":
            bases, dims = _node_tangents(points, result.neighbors, mask, tangent_dim,
                                         on_sphere=True)
            table["intrinsic_angle"] = _edge_angles(bases, dims, first, second, points)
            table["intrinsic_curvature"] = 2.0 * np.sin(table["intrinsic_angle"] / 2.0) / length
        else:
            table["intrinsic_angle"] = table["angle"]
            table["intrinsic_curvature"] = table["curvature"]
    return table


def _raw_mean_angle(edges: pd.DataFrame, result: nnk.NNKResult) -> float:
    """The paper's kind of metric: mean over nodes of the mean angle to their NNK neighbours.

    As ``subspace_angle`` of :func:`sslgeom.mgm.node_metrics`: an edge without a defined angle
    counts as 0, nodes without neighbours are skipped.
    """
    n = result.n_points
    edge_codes = edges["i"].to_numpy() * n + edges["j"].to_numpy()  # sorted (np.unique)
    node, slot = np.nonzero(result.kept)
    other = result.neighbors[node, slot]
    codes = np.minimum(node, other) * n + np.maximum(node, other)
    angles = np.nan_to_num(edges["angle"].to_numpy()[np.searchsorted(edge_codes, codes)], nan=0.0)
    per_node = np.bincount(node, weights=angles, minlength=n) / np.maximum(result.n_neighbors, 1)
    return float(np.mean(per_node[result.n_neighbors > 0]))


def _weighted_curvature(angle: np.ndarray, length: np.ndarray) -> float:
    """``sum 2 sin(angle / 2) / sum length`` over edges with a defined angle."""
    valid = np.isfinite(angle) & (length > 0)
    if not valid.any():
        return float("nan")
    return float(np.sum(2.0 * np.sin(angle[valid] / 2.0)) / np.sum(length[valid]))


def curvature_from_graph(
    result: nnk.NNKResult,
    features,
    *,
    tangent_dim: int | None = None,
    tangents: TangentSource = "nnk",
) -> CurvatureEstimate:
    """The book's curvature estimate on a given NNK graph.

    Parameters
    ----------
    result, features
        As in :func:`edge_curvatures`.
    tangent_dim : int, optional
        Default: :func:`tangent_dimension` on the kernel-space points and the graph's candidates.
    tangents : {"nnk", "knn"}
        See :func:`edge_curvatures`.

    Returns
    -------
    CurvatureEstimate
    """
    points = _check_graph_points(result, features)
    if tangent_dim is None:
        tangent_dim = tangent_dimension(points, result.neighbors)
    edges = edge_curvatures(result, features, tangent_dim, tangents=tangents)
    angle, length = edges["angle"].to_numpy(), edges["length"].to_numpy()
    return CurvatureEstimate(
        curvature=_weighted_curvature(angle, length),
        intrinsic=_weighted_curvature(edges["intrinsic_angle"].to_numpy(), length),
        raw_mean_angle=_raw_mean_angle(edges, result),
        mean_edge_length=float(length.mean()),
        tangent_dim=int(tangent_dim),
        n_edges=len(edges),
        kernel=result.kernel,
    )


def curvature(
    features,
    k: int = 20,
    *,
    kernel: str = "cosine",
    tangent_dim: int | None = None,
    tangents: TangentSource = "nnk",
    **nnk_kwargs,
) -> CurvatureEstimate:
    """Build the NNK graph of ``features`` and estimate its curvature (the book's estimate).

    Parameters
    ----------
    features : array-like, shape (n_points, dim)
    k : int
        NNK candidates per node.
    kernel : {"cosine", "gaussian"}
        ``"cosine"`` measures on the L2-normalised rows and also reports the intrinsic part;
        ``"gaussian"`` on the raw rows.
    tangent_dim : int, optional
        Default: the validated rule :func:`tangent_dimension`.
    tangents : {"nnk", "knn"}
        See :func:`edge_curvatures`.
    **nnk_kwargs
        Passed to :func:`sslgeom.nnk.nnk_graph`; defaults ``duplicates="ridge"`` (as the geometry
        table), ``dtype="float64"`` and ``kkt_tol=0``, the exact graph (see the module
        docstring, Graph).

    Returns
    -------
    CurvatureEstimate
    """
    nnk_kwargs.setdefault("duplicates", "ridge")
    nnk_kwargs.setdefault("dtype", "float64")
    nnk_kwargs.setdefault("kkt_tol", 0.0)  # exact graph: see the module docstring (Graph)
    result = nnk.nnk_graph(features, k, kernel=kernel, **nnk_kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return curvature_from_graph(result, features, tangent_dim=tangent_dim, tangents=tangents)
