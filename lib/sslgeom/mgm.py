"""Manifold graph metrics (MGMs): per-node geometry read off an NNK graph, and summaries.

Per node ``i`` with neighbour set ``N_i`` (NNK: the candidates with positive weight; kNN
baseline: all ``k`` candidates) the metrics are

- ``n_neighbors``: ``|N_i|``, a proxy for the local intrinsic dimension (constant ``k`` for kNN);
  how it maps to a dimension depends on the kernel, ``k``, sampling and noise: see the
  calibration in :mod:`sslgeom.dimension`;
- ``degree``: degree of ``i`` in the symmetric graph (NNK adjacency, or the symmetrised kNN graph);
- ``diameter``: ``max_{j, l in N_i} ||x_j - x_l||``, the spread of the neighbourhood polytope;
- ``subspace_angle``: mean over ``j in N_i`` of the largest principal angle (radians) between
  the tangent subspaces ``T_i`` and ``T_j``; ``T_i`` is spanned by the leading right singular
  vectors of the offsets ``{x_j - x_i : j in N_i}`` (see ``tangent_dim``; both computed by
  :mod:`sslgeom.subspaces`). About 0 on flat data, about ``edge length / R`` on a sphere of
  radius ``R``, so it shrinks as sampling gets denser
  (the paper's kind of metric, kept as such); :mod:`sslgeom.curvature` divides by the edge
  length for a density-invariant curvature estimate of the book's own;
- ``tangent_dim``: the dimension of ``T_i`` used;
- ``error``: kernel-space reconstruction error
  ``||phi(x_i) - sum_j w_ij phi(x_j)||^2`` (NNK: the NNK weights; kNN: kernel-weighted average
  ``w_ij = K_ij / sum_l K_il``);
- ``entropy``: Shannon entropy (nats) of the normalised weights ``w_ij / sum_l w_il``.

Distances are measured in the space the kernel uses: L2-normalised rows for the cosine kernel,
raw rows for the Gaussian kernel.

Typical use::

    from sslgeom import mgm
    table = mgm.graph_metrics(features, k=50)          # per node, graph = "nnk" and "knn"
    mgm.summarize(table, by=["graph"])                 # mean, median, q10, q90 per metric

    tables = mgm.manifold_metrics({"rotation": f_rot, "crop": f_crop}, k=10)
    mgm.summarize(tables, by=["manifold", "graph"])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm.auto import tqdm

from sslgeom import nnk
from sslgeom.kernels import kernel_from_sq_distances, kernel_space, reconstruction_error
from sslgeom.subspaces import BLOCK_VALUES, pair_angles, tangent_bases
from sslgeom.validation import check_graph_features

GraphName = Literal["nnk", "knn"]
METRICS: tuple[str, ...] = (
    "n_neighbors",
    "degree",
    "diameter",
    "subspace_angle",
    "tangent_dim",
    "error",
    "entropy",
)
STATISTICS: tuple[str, ...] = ("mean", "median", "q10", "q90")


def _geometry_points(result: nnk.NNKResult, features) -> np.ndarray:
    """The graph's features (validated against it) in the kernel's space."""
    return kernel_space(check_graph_features(features, result.n_points), result.kernel)


def _neighbour_weights(result: nnk.NNKResult, graph: str) -> tuple[np.ndarray, np.ndarray]:
    """Boolean neighbour mask and weights, both ``(n_points, k)``, for one graph type."""
    if graph == "nnk":
        return result.weights > 0, result.weights
    if graph == "knn":
        mask = np.ones_like(result.weights, dtype=bool)
        weights = result.kernel_values / result.kernel_values.sum(axis=1, keepdims=True)
        return mask, weights
    raise ValueError(f"graph must be 'nnk' or 'knn', got {graph!r}.")


def _mean_neighbour_angle(
    bases: np.ndarray, dims: np.ndarray, neighbors: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """Mean over each node's neighbours ``j`` of the largest principal angle between T_i and T_j.

    Parameters
    ----------
    bases : np.ndarray, shape (n_nodes, dim, d_max)
    dims : np.ndarray, shape (n_nodes,)
    neighbors : np.ndarray, shape (n_nodes, k), int
    mask : np.ndarray, shape (n_nodes, k), bool

    Returns
    -------
    np.ndarray, shape (n_nodes,)
        NaN for a node without neighbours; a neighbour pair with an empty tangent space
        counts as angle 0.
    """
    n_nodes = len(dims)
    node, slot = np.nonzero(mask)
    other = neighbors[node, slot]
    # the angle is symmetric: compute it once per undirected edge, mutual neighbours share it
    low, high = np.minimum(node, other), np.maximum(node, other)
    edges, edge_of_pair = np.unique(low * n_nodes + high, return_inverse=True)
    edge_angles = pair_angles(bases, dims, edges // n_nodes, edges % n_nodes)
    angle_sum = np.bincount(node, weights=np.nan_to_num(edge_angles[edge_of_pair], nan=0.0),
                            minlength=n_nodes)
    counts = mask.sum(axis=1)
    return np.where(counts > 0, angle_sum / np.maximum(counts, 1), np.nan)


def _weight_entropy(mask: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each node's normalised neighbour weights.

    Parameters
    ----------
    mask : np.ndarray, shape (n_nodes, k), bool
    weights : np.ndarray, shape (n_nodes, k)

    Returns
    -------
    np.ndarray, shape (n_nodes,), float64
        0 for a node without positive weights.
    """
    # float64: float32 weights would turn the 1e-300 guard into 0 and lose digits in the log
    p = np.where(mask, weights, 0.0).astype(np.float64)
    p /= np.maximum(p.sum(axis=1, keepdims=True), 1e-300)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)


def _knn_adjacency(result: nnk.NNKResult) -> sp.csr_matrix:
    binary = sp.csr_matrix(
        (np.ones(result.neighbors.size), (np.repeat(np.arange(result.n_points), result.k),
                                          result.neighbors.ravel())),
        shape=(result.n_points, result.n_points),
    )
    return binary.maximum(binary.T).tocsr()


def _local_geometry(
    result: nnk.NNKResult,
    points: np.ndarray,
    mask: np.ndarray,
    weights: np.ndarray,
    graph: str,
    tangent_dim: int | None,
    variance_fraction: float,
    max_tangent_dim: int,
    progress: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Diameter, reconstruction error and tangent bases of every node, in blocks of nodes.

    Parameters
    ----------
    result : NNKResult
    points : np.ndarray, shape (n_points, dim)
        Features in the kernel's space (:func:`_geometry_points`).
    mask, weights : np.ndarray, shape (n_points, k)
        Neighbours and weights of the graph (:func:`_neighbour_weights`).
    graph : {"nnk", "knn"}
    tangent_dim, variance_fraction, max_tangent_dim, progress
        See :func:`node_metrics`.

    Returns
    -------
    diameter : np.ndarray, shape (n_points,)
    error : np.ndarray, shape (n_points,)
    bases : np.ndarray, shape (n_points, dim, d_max)
    dims : np.ndarray, shape (n_points,), int64
    """
    n_points, k = result.neighbors.shape
    dim = points.shape[1]
    diameter = np.zeros(n_points)
    error = np.empty(n_points)
    width = int(tangent_dim) if tangent_dim is not None else int(max_tangent_dim)
    bases = np.zeros((n_points, dim, min(width, k, dim)))
    dims = np.zeros(n_points, dtype=np.int64)
    rows = max(1, BLOCK_VALUES // (k * max(k, dim)))
    for start in tqdm(range(0, n_points, rows), desc=f"MGM {graph}", disable=not progress,
                      leave=False):
        stop = min(start + rows, n_points)
        cand = points[result.neighbors[start:stop]]  # (b, k, dim)
        block_mask = mask[start:stop]
        sq_norms = (cand**2).sum(-1)
        inner = cand @ np.transpose(cand, (0, 2, 1))
        pair_sq = np.maximum(sq_norms[:, :, None] + sq_norms[:, None, :] - 2.0 * inner, 0.0)
        # pairs of distinct kept neighbours (the expansion leaves rounding on the diagonal, which
        # would give a one-neighbour node a diameter of about 1e-7 instead of 0)
        both = block_mask[:, :, None] & block_mask[:, None, :] & ~np.eye(k, dtype=bool)
        diameter[start:stop] = np.sqrt(np.where(both, pair_sq, 0.0).max(axis=(1, 2)))
        if graph == "nnk":
            error[start:stop] = result.errors[start:stop]
        else:
            gram = kernel_from_sq_distances(pair_sq, result.kernel, result.kernel_params)
            error[start:stop] = reconstruction_error(
                gram, result.kernel_values[start:stop], weights[start:stop]
            )
        block_bases, block_dims = tangent_bases(
            cand - points[start:stop, None, :], block_mask, tangent_dim,
            variance_fraction=variance_fraction, max_tangent_dim=max_tangent_dim,
        )
        bases[start:stop, :, : block_bases.shape[2]] = block_bases
        dims[start:stop] = block_dims
    return diameter, error, bases, dims


def node_metrics(
    result: nnk.NNKResult,
    features,
    *,
    graph: GraphName = "nnk",
    tangent_dim: int | None = None,
    variance_fraction: float = 0.99,
    max_tangent_dim: int = 8,
    progress: bool = False,
) -> pd.DataFrame:
    """Per-node manifold graph metrics of one graph.

    Parameters
    ----------
    result : NNKResult
        From :func:`sslgeom.nnk.nnk_graph` on ``features``.
    features : array-like, shape (n_points, dim)
        The features the graph was built from.
    graph : {"nnk", "knn"}
        NNK neighbourhoods, or the plain kNN baseline on the same candidates.
    tangent_dim, variance_fraction, max_tangent_dim
        Choice of the tangent dimension for ``subspace_angle``; see :func:`sslgeom.subspaces.tangent_bases`.
        Default: automatic per node (99% of the offsets' energy, at most 8).
    progress : bool
        Show a tqdm bar over blocks.

    Returns
    -------
    pandas.DataFrame
        One row per node: ``node``, ``graph`` and the columns in :data:`METRICS`.
    """
    points = _geometry_points(result, features)
    mask, weights = _neighbour_weights(result, graph)
    n_points = result.n_points
    diameter, error, bases, dims = _local_geometry(
        result, points, mask, weights, graph, tangent_dim, variance_fraction, max_tangent_dim,
        progress,
    )
    subspace_angle = _mean_neighbour_angle(bases, dims, result.neighbors, mask)
    counts = mask.sum(axis=1)
    entropy = _weight_entropy(mask, weights)
    adjacency = result.adjacency if graph == "nnk" else _knn_adjacency(result)
    degree = np.diff(adjacency.indptr)
    return pd.DataFrame(
        {
            "node": np.arange(n_points),
            "graph": graph,
            "n_neighbors": counts,
            "degree": degree,
            "diameter": diameter,
            "subspace_angle": subspace_angle,
            "tangent_dim": dims,
            "error": error,
            "entropy": entropy,
        }
    )


def graph_metrics(
    features,
    k: int = 50,
    *,
    graphs: Sequence[str] = ("nnk", "knn"),
    tangent_dim: int | None = None,
    variance_fraction: float = 0.99,
    max_tangent_dim: int = 8,
    **nnk_kwargs,
) -> pd.DataFrame:
    """Build the NNK graph of ``features`` and return per-node metrics of each graph type.

    Parameters
    ----------
    features : array-like, shape (n_points, dim)
    k : int
        Candidates per node.
    graphs : sequence of {"nnk", "knn"}
        Which graphs to measure; rows are labelled by the ``graph`` column.
    tangent_dim, variance_fraction, max_tangent_dim
        See :func:`sslgeom.subspaces.tangent_bases`.
    **nnk_kwargs
        Passed to :func:`sslgeom.nnk.nnk_graph` (``kernel``, ``sigma``, ``dtype``, ...).

    Returns
    -------
    pandas.DataFrame
        Rows of :func:`node_metrics` for each graph, stacked.
    """
    result = nnk.nnk_graph(features, k, **nnk_kwargs)
    tables = [
        node_metrics(result, features, graph=g, tangent_dim=tangent_dim,
                     variance_fraction=variance_fraction, max_tangent_dim=max_tangent_dim)
        for g in graphs
    ]
    return pd.concat(tables, ignore_index=True)


def manifold_metrics(
    manifolds: Mapping[str, np.ndarray],
    k: int = 50,
    *,
    progress: bool = True,
    **kwargs,
) -> pd.DataFrame:
    """:func:`graph_metrics` for many manifolds, stacked with a ``manifold`` column.

    Parameters
    ----------
    manifolds : mapping name -> array of shape (n_points, dim)
        Each manifold needs more than ``k`` points.
    k : int
    progress : bool
        tqdm bar over manifolds.
    **kwargs
        Passed to :func:`graph_metrics`.

    Returns
    -------
    pandas.DataFrame
        Per-node rows with ``manifold`` as the first column.
    """
    tables = []
    for name, features in tqdm(manifolds.items(), desc="manifolds", disable=not progress):
        table = graph_metrics(features, k, **kwargs)
        table.insert(0, "manifold", name)
        tables.append(table)
    if not tables:
        raise ValueError("manifolds is empty; pass at least one named feature array.")
    return pd.concat(tables, ignore_index=True)


def summarize(
    table: pd.DataFrame,
    by: Sequence[str] = ("graph",),
    metrics: Sequence[str] = METRICS,
) -> pd.DataFrame:
    """Mean, median, 10% and 90% quantiles of each metric per group.

    Parameters
    ----------
    table : pandas.DataFrame
        Per-node rows from :func:`node_metrics`, :func:`graph_metrics` or
        :func:`manifold_metrics`.
    by : sequence of str
        Grouping columns, e.g. ``["manifold", "graph"]``.
    metrics : sequence of str
        Metric columns to summarise.

    Returns
    -------
    pandas.DataFrame
        One row per group: the ``by`` columns, ``n_nodes``, then ``<metric>_<stat>`` for
        ``stat`` in mean, median, q10, q90. NaN values (nodes without neighbours) are skipped.
    """
    by = list(by)
    missing = [c for c in by + list(metrics) if c not in table.columns]
    if missing:
        raise ValueError(
            f"columns {missing} are not in the table (it has {list(table.columns)}); "
            "pass by=/metrics= that exist."
        )
    grouped = table.groupby(by, sort=True)[list(metrics)]
    # pandas' compiled group reductions (a Python quantile function per group was 5x slower)
    per_statistic = {"mean": grouped.mean(), "median": grouped.median(),
                     "q10": grouped.quantile(0.1), "q90": grouped.quantile(0.9)}
    stats = pd.DataFrame({f"{metric}_{statistic}": per_statistic[statistic][metric].astype(float)
                          for metric in metrics for statistic in STATISTICS})
    stats.insert(0, "n_nodes", table.groupby(by, sort=True).size())
    return stats.reset_index()


def covered_candidates(result: nnk.NNKResult, features) -> np.ndarray:
    """Which candidates make an acute angle at their node with some NNK neighbour.

    Candidate ``j`` of node ``i`` is covered when a kept neighbour ``l`` has
    ``(x_l - x_i)^T (x_j - x_i) > 0``. For both kernels of the book every candidate is covered
    (chapter 03 proves it from the KKT conditions: an uncovered candidate would have a positive
    residual correlation, so NNK would have kept it); kept candidates cover themselves.
    Numerically the statement holds up to the solver's tolerance: the proof bounds the residual
    correlation of an uncovered candidate below by ``K_ij e_i``, and the solver stops once every
    such correlation is below the node's tolerance ``kkt_tol[i]``, so candidates with
    ``K_ij e_i <= kkt_tol[i]`` may be left uncovered: on exact graphs (``kkt_tol=0``) only
    kernel values that underflow, around outliers; at the book's relative tolerance also
    candidates whose gain is below it (chapter 03 measures the covered share).

    Parameters
    ----------
    result : NNKResult
        From :func:`sslgeom.nnk.nnk_graph` on ``features``.
    features : array-like, shape (n_points, dim)
        The features the graph was built from (mapped to the kernel's space).

    Returns
    -------
    np.ndarray of bool, shape (n_points, k)
    """
    points = _geometry_points(result, features)
    n_points, k = result.neighbors.shape
    covered = np.zeros((n_points, k), dtype=bool)
    rows = max(1, BLOCK_VALUES // (k * max(k, points.shape[1])))
    for start in range(0, n_points, rows):
        stop = min(start + rows, n_points)
        offsets = points[result.neighbors[start:stop]] - points[start:stop, None, :]
        inner = offsets @ np.transpose(offsets, (0, 2, 1))  # (b, candidate j, candidate l)
        covered[start:stop] = ((inner > 0) & result.kept[start:stop, None, :]).any(axis=2)
    return covered


def encloses_origin(offsets: np.ndarray, mask: np.ndarray | None = None,
                    dim: int | None = None, *, tol: float = 1e-9) -> np.ndarray:
    """Whether each node lies inside the convex hull of its (masked) neighbours.

    The test is on the offsets ``x_j - x_i``: the origin must be in the relative interior of their
    convex hull, i.e. a convex combination of all of them with every weight positive must vanish
    (one linear programme per node, ``scipy.optimize.linprog``). With ``dim``, the offsets must
    also span ``dim`` dimensions, so that the hull encloses the node in a ``dim``-dimensional
    patch and not only along a lower-dimensional slice.

    Parameters
    ----------
    offsets : np.ndarray, shape (n_nodes, k, dim_ambient)
    mask : np.ndarray of bool, shape (n_nodes, k), optional
        Which offsets count (default: all).
    dim : int, optional
        Required dimension of the span of the counted offsets.
    tol : float
        The smallest weight must exceed ``tol`` (offsets are scaled to a largest norm of 1 first),
        and singular values above ``tol`` count towards the span.

    Returns
    -------
    np.ndarray of bool, shape (n_nodes,)
        False for a node with no counted offset.
    """
    from scipy.optimize import linprog  # imported here: scipy.optimize is slow to import

    offsets = np.asarray(offsets, dtype=np.float64)
    if offsets.ndim != 3:
        raise ValueError(f"offsets must have shape (n_nodes, k, dim); got {offsets.shape}.")
    mask = np.ones(offsets.shape[:2], dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if mask.shape != offsets.shape[:2]:
        raise ValueError(f"mask must have shape {offsets.shape[:2]}; got {mask.shape}.")
    inside = np.zeros(len(offsets), dtype=bool)
    for node in range(len(offsets)):
        rows = offsets[node][mask[node]]
        scale = np.linalg.norm(rows, axis=1).max(initial=0.0)
        if not len(rows) or scale == 0:
            continue
        rows = rows / scale
        if dim is not None and (np.linalg.svd(rows, compute_uv=False) > tol).sum() != dim:
            continue
        m = len(rows)
        # variables (lambda_1..m, s): maximise s with lambda_j >= s, sum lambda = 1, sum lambda x = 0
        cost = np.r_[np.zeros(m), -1.0]
        a_eq = np.vstack([np.c_[rows.T, np.zeros(rows.shape[1])], np.r_[np.ones(m), 0.0]])
        b_eq = np.r_[np.zeros(rows.shape[1]), 1.0]
        a_ub = np.c_[-np.eye(m), np.ones(m)]
        fit = linprog(cost, A_ub=a_ub, b_ub=np.zeros(m), A_eq=a_eq, b_eq=b_eq,
                      bounds=[(0, None)] * m + [(None, 1.0)], method="highs")
        inside[node] = bool(fit.status == 0 and -fit.fun > tol)
    return inside
