"""Non-negative kernel regression (NNK) graphs: the public entry point of the graph layer.

:func:`nnk_graph` builds the NNK graph of a point cloud, :func:`grouped_nnk` the graphs of many
small clouds in one batch. The pieces live in their own modules and are importable from here:
:func:`knn` (exact, blocked k-nearest-neighbour search, :mod:`sslgeom.neighbors`),
:func:`nonnegative_qp` (the batched exact solver of the per-node problems, :mod:`sslgeom.qp`)
and the kernels, bandwidth rule and reconstruction error (:mod:`sslgeom.kernels`); the per-node
stage (duplicates, then every node's problem solved, compiled first) is :mod:`sslgeom.nnk_solve`.
The candidates come from an exact search by default (faiss on the CPU in float32, a blocked torch
search otherwise) or, opt-in, from an approximate faiss index (:mod:`sslgeom.candidates`).

NNK in one paragraph: for each point ``x_i`` take its ``k`` nearest neighbours ``S`` as
candidates and solve the non-negative quadratic program

    theta_i = argmin_{theta >= 0}  1/2 theta^T K_SS theta - K_Si^T theta,

the best non-negative approximation of ``phi(x_i)`` by the candidates' images in the kernel's
feature space. Candidates with ``theta_j = 0`` are pruned; the others are the NNK neighbours.
The per-node problems are solved by the Lawson-Hanson active-set method from ``theta = 0`` to a
KKT tolerance relative to each node's neighbourhood (below); with ``kkt_tol=0`` the solution is
exact. Every returned solution satisfies the KKT conditions to the tolerance stored in the result.

Scale and tolerances. The graph of ``X`` and of ``c X`` is the same, bit for bit, for ``c`` a
power of two (``c X`` without over- or underflow), in float32 as in float64: distances are formed
on features divided by an exact power of two (:func:`sslgeom.neighbors.unit_scale`; each row's
own for the cosine kernel, :func:`sslgeom.kernels.kernel_space`), and every tolerance is
relative to that unit scale or to the kernel, whose diagonal is 1:

- duplicates: exact. A point is a duplicate when a candidate's row (in the kernel's space, at
  unit scale) equals its own bit for bit, i.e. relative tolerance 0; candidates within the
  rounding of the squared-distance expansion, ``4 (dim + 2) eps (||x_i||^2 + ||x_j||^2)`` at
  unit scale, are the ones compared, so a copy is found even when rounding ranks it second.
- ties in the kNN: squared distances differing by less than about ``(dim + 2) eps (||x_i||^2 +
  ||x_j||^2)`` at unit scale come in an order that rounding decides (:func:`knn`).
- near-singular nodes (near-duplicate candidates): ``K_SS`` has unit diagonal, so the compiled
  solver flags a node whose Cholesky pivot is at most ``1e-12`` times its diagonal entry, and
  the torch solver re-solves it with the smallest jitter ``10 eps * 10**j <= 1e-2`` (relative to
  the unit diagonal) that makes the restriction positive definite.
- KKT tolerance: relative to each node's neighbourhood, ``kkt_tol * mean_j (1 - K_ij)``
  (:func:`sslgeom.qp.node_kkt_tol`), so it is free of the features' units *and* of how
  concentrated they are: a manifold shrunk towards a point keeps its neighbours. The exact
  solution (``kkt_tol=0``) is not the book's count: it also reconstructs noise far below the
  sampling scale (a noisy line keeps about 8 of 20 candidates instead of 2); chapter 03 states
  the rule that chose the default 0.01.

Typical use (many small manifolds and a few large ones)::

    from sslgeom import nnk
    result = nnk.nnk_graph(features, k=50)            # features: (n_points, dim)
    result.weights, result.neighbors, result.adjacency
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch

from .kernels import (
    KERNELS,
    KernelName,
    gaussian_bandwidth,
    kernel_from_sq_distances,
    kernel_space,
    neighbourhood_scale,
    power_of_two_floor,
    reconstruction_error,
    unit_diagonal,
)
from .candidates import (
    CANDIDATE_MODES,
    CandidateMode,
    check_candidate_params,
)
from .neighbors import (
    KNN_BACKENDS,
    KnnBackend,
    as_tensor,
    check_graph_input,
    find_candidates,
    knn,
    resolve_dtype,
    search_engine,
    sq_to_input_units,
    unit_scale,
)
from .qp import (
    DEFAULT_RELATIVE_KKT_TOL,
    SOLVERS,
    SolverName,
    check_relative_tol,
    default_kkt_tol,
    KKT_FLOOR,
    node_kkt_tol,
    nonnegative_qp,
    use_compiled,
)
from .nnk_solve import ridge_for_duplicates, solve_nodes
from .validation import check_choice, check_features

__all__ = [
    "KERNELS",
    "SOLVERS",
    "CANDIDATE_MODES",
    "KNN_BACKENDS",
    "KernelName",
    "SolverName",
    "NNKResult",
    "nnk_graph",
    "grouped_nnk",
    "knn",
    "nonnegative_qp",
    "default_kkt_tol",
    "DEFAULT_RELATIVE_KKT_TOL",
    "KKT_FLOOR",
    "node_kkt_tol",
    "symmetrize",
    "node_problem",
]


@dataclass(frozen=True)
class NNKResult:
    """NNK graph of ``n_points`` points with ``k`` candidates each.

    Attributes
    ----------
    neighbors : np.ndarray, shape (n_points, k), int64
        Indices of each point's ``k`` nearest neighbours (itself excluded), nearest first.
        These are the candidates of the NNK problem.
    weights : np.ndarray, shape (n_points, k)
        Directed NNK weights ``theta_ij`` aligned with ``neighbors``; 0 where pruned.
    errors : np.ndarray, shape (n_points,)
        Kernel-space reconstruction error of each point,
        ``||phi(x_i) - sum_j theta_ij phi(x_j)||^2 = 1 - 2 K_Si^T theta + theta^T K_SS theta``.
    sq_distances : np.ndarray, shape (n_points, k)
        Squared Euclidean distances to the candidates, in the space the kernel uses
        (the L2-normalised features for the cosine kernel, the raw features, in their own units,
        otherwise). For the Gaussian kernel they are computed at unit scale and multiplied back
        by ``s**2`` exactly (``s`` the power of two of :func:`sslgeom.neighbors.unit_scale`); in
        float32 a squared distance above about ``3.4e38`` is ``inf`` (the weights do not use it).
    kernel_values : np.ndarray, shape (n_points, k)
        ``K(x_i, x_j)`` for each candidate (the linear term of the per-node problem).
    adjacency : scipy.sparse.csr_matrix, shape (n_points, n_points)
        Symmetric weighted NNK graph. Rule: the directed edge ``i -> j`` is discarded when
        ``errors[i] > errors[j]`` (the endpoint whose neighbourhood is reconstructed better
        decides), then ``A = max(W, W^T)`` elementwise. An edge that only one endpoint has among
        its candidates therefore survives only if that endpoint's error is not larger.
    kernel : str
        ``"cosine"`` or ``"gaussian"``.
    kernel_params : dict
        Everything needed to rebuild each node's problem: ``{"sigma": float}`` (in the input's
        units) for the Gaussian kernel ``exp(-||x_i - x_j||^2 / (2 sigma^2))``,
        ``{"power": float}`` for the cosine kernel ``((1 + cos(x_i, x_j)) / 2) ** power``.
    kkt_tol : np.ndarray, shape (n_points,)
        Each node's stopping tolerance, ``max(relative_kkt_tol * mean_j (1 - K_ij), floor)``
        (:func:`sslgeom.qp.node_kkt_tol`): every node has ``theta >= 0`` exactly and
        ``g = K_SS theta - K_Si`` satisfies ``g_j >= -kkt_tol[i]`` where ``theta_j = 0``; on
        the support ``g_j = 0`` up to the rounding of the linear solve.
    relative_kkt_tol : float
        The ``kkt_tol`` argument of :func:`nnk_graph` (a fraction of each node's mean kernel
        distance to its candidates).
    kkt_residual : np.ndarray, shape (n_points,)
        Achieved KKT residual per node, ``max(max_{theta_j > 0} |g_j|,
        max_{theta_j = 0} -g_j)``: about 1e-15 (the solves run in float64).
    n_iterations : int
        Active-set iterations of the slowest node (compiled solver: coordinates added) or block
        (torch solver).
    ridge : float
        Relative diagonal ridge (0 unless duplicates were allowed): node ``i``'s ``K_SS`` carries
        ``ridge * mean_j (1 - K_ij)`` on its diagonal (:attr:`node_ridge`), a fraction of its
        own kernel scale, as the tolerance.
    candidates : str
        How the candidates were found: ``"exact"`` (the ``k`` nearest neighbours), or the
        **approximate** index ``"hnsw"`` / ``"ivf"`` (then ``neighbors`` are the ``k`` nearest
        points that index found, which may miss some true neighbours).
    candidate_settings : dict
        Settings of the search: ``{"backend": "faiss" | "torch"}`` for the exact search; the
        index settings of :func:`sslgeom.candidates.approximate_search` otherwise.
    """

    neighbors: np.ndarray
    weights: np.ndarray
    errors: np.ndarray
    sq_distances: np.ndarray
    kernel_values: np.ndarray
    adjacency: sp.csr_matrix
    kernel: str
    kernel_params: dict = field(default_factory=dict)
    kkt_tol: np.ndarray | None = None
    relative_kkt_tol: float = DEFAULT_RELATIVE_KKT_TOL
    kkt_residual: np.ndarray | None = None
    n_iterations: int = 0
    ridge: float = 0.0
    candidates: str = "exact"
    candidate_settings: dict = field(default_factory=dict)

    @property
    def node_ridge(self) -> np.ndarray:
        """The ridge on each node's diagonal, ``ridge * mean_j (1 - K_ij)``, shape ``(n_points,)``."""
        return self.ridge * neighbourhood_scale(self.kernel_values)

    @property
    def n_points(self) -> int:
        """Number of points in the graph."""
        return int(self.neighbors.shape[0])

    @property
    def k(self) -> int:
        """Number of candidates per point."""
        return int(self.neighbors.shape[1])

    @property
    def kept(self) -> np.ndarray:
        """Boolean mask ``(n_points, k)`` of the NNK neighbours (weight > 0)."""
        return self.weights > 0

    @property
    def n_neighbors(self) -> np.ndarray:
        """Directed NNK neighbour count per point, shape ``(n_points,)``."""
        return self.kept.sum(axis=1)

    def directed_adjacency(self) -> sp.csr_matrix:
        """Directed weight matrix ``W`` with ``W[i, neighbors[i, m]] = weights[i, m]``."""
        return _directed_matrix(self.neighbors, self.weights)


def _directed_matrix(neighbors: np.ndarray, weights: np.ndarray) -> sp.csr_matrix:
    """CSR matrix ``W[i, neighbors[i, m]] = weights[i, m]`` of the non-zero weights.

    Built row by row from the non-zero entries only (no COO copy of all ``n_points * k``
    candidates, which at a million points is gigabytes).
    """
    n_points = neighbors.shape[0]
    keep = weights != 0
    index_dtype = np.int32 if n_points < 2**31 - 1 else np.int64
    indptr = np.zeros(n_points + 1, dtype=index_dtype)
    np.cumsum(keep.sum(axis=1), out=indptr[1:])
    matrix = sp.csr_matrix((weights[keep], neighbors[keep].astype(index_dtype), indptr),
                           shape=(n_points, n_points))
    matrix.sum_duplicates()  # sorted column indices (and sums repeated ones, as COO would)
    return matrix


def symmetrize(
    neighbors: np.ndarray, weights: np.ndarray, errors: np.ndarray
) -> sp.csr_matrix:
    """Symmetric NNK adjacency from directed weights (reference rule).

    The directed edge ``i -> j`` is dropped when ``errors[i] > errors[j]``; the result is
    ``max(W, W^T)`` of what remains.

    Parameters
    ----------
    neighbors : np.ndarray, shape (n_points, k)
    weights : np.ndarray, shape (n_points, k)
    errors : np.ndarray, shape (n_points,)

    Returns
    -------
    scipy.sparse.csr_matrix, shape (n_points, n_points)
    """
    worse = errors[:, None] > errors[neighbors]
    directed = _directed_matrix(neighbors, np.where(worse, 0.0, weights))
    return directed.maximum(directed.T).tocsr()


def nnk_graph(
    features,
    k: int = 50,
    *,
    kernel: KernelName = "cosine",
    sigma: float | None = None,
    power: float = 1.0,
    duplicates: Literal["raise", "ridge"] = "raise",
    ridge: float = 1e-6,
    kkt_tol: float = DEFAULT_RELATIVE_KKT_TOL,
    block_size: int | None = None,
    device: str | torch.device = "cpu",
    dtype="float32",
    solver: SolverName = "auto",
    solver_threads: int | None = None,
    candidates: CandidateMode = "exact",
    candidate_params: dict | None = None,
    knn_backend: KnnBackend = "auto",
    progress: bool = False,
) -> NNKResult:
    """Build the NNK graph of a point cloud.

    Steps: exact kNN (itself excluded) gives ``k`` candidates per point; the kernel gives
    ``K_SS`` and ``K_Si`` for each point; the solver returns the weights (to ``kkt_tol``); the
    reconstruction errors decide which directed edges enter the symmetric graph.

    Parameters
    ----------
    features : array-like, shape (n_points, dim)
        Points, one per row; for SSL features, L2-normalised rows.
    k : int
        Candidates per point, ``1 <= k < n_points``. Default 50 (the NNK work on SSL features).
    kernel : {"cosine", "gaussian"}
        ``"cosine"``: ``((1 + cos(x_i, x_j)) / 2) ** power``; rows are L2-normalised internally
        (zero rows raise). ``"gaussian"``: ``exp(-||x_i - x_j||^2 / (2 sigma^2))`` on the raw
        rows.
    sigma : float, optional
        Gaussian bandwidth, in the features' units. Default: mean distance to the k-th
        neighbour divided by 3 (the NNK reference default); stored in ``kernel_params``.
    power : float
        Exponent of the cosine kernel (1 gives ``0.5 + 0.5 cos``; larger values make it sharper;
        any positive integer keeps it positive definite).
    duplicates : {"raise", "ridge"}
        What to do when a point has an exact copy among its candidates: raise ``ValueError``
        (default) or add a ridge to the diagonal of every ``K_SS``. The test is exact and
        scale-free: rows equal bit for bit in the kernel's space at unit scale (see the module
        docstring); near-duplicates are near-singular nodes, which the solver handles.
    ridge : float
        Diagonal ridge used with ``duplicates="ridge"``, relative to each node's kernel scale:
        node ``i`` gets ``ridge * mean_j (1 - K_ij)`` (:func:`sslgeom.kernels.neighbourhood_scale`),
        so that the ridge does not outweigh the geometry of concentrated features (an absolute
        1e-6 did on a finely sampled line, where ``1 - K_ij`` is about 1e-5). A duplicated
        candidate then counts once: after its first copy enters, the second one's gain is the
        ridge's, far below the tolerance.
    kkt_tol : float
        KKT tolerance of the solver, relative to each node's neighbourhood: node ``i`` stops when
        no pruned candidate has ``-g_j > kkt_tol * mean_j (1 - K_ij)`` (at least
        :data:`sslgeom.qp.KKT_FLOOR`). Default 0.01 (chapter 03's
        rule); 0 gives the exact solution, which also reconstructs noise below the sampling
        scale. Free of the features' units and of their concentration.
    block_size : int, optional
        Nodes per batch of the torch solver; default keeps gathered candidates near 128 MiB.
    device : str or torch.device
        Where to compute; CPU by default.
    dtype : {"float32", "float64"}
        Precision of kNN and kernels (the compiled solver always solves in float64; the
        results are returned in this dtype).
    solver : {"auto", "compiled", "torch"}
        Engine of the per-node stage (``K_SS``, ``K_Si`` and the solve). ``"compiled"``:
        one node at a time in compiled code (numba), nodes spread over threads; the default on
        the CPU (at 10,000 points in 512 dimensions its stage is about 7x faster than the torch
        solver's, see ``benchmarks/nnk.py --torch-solver``). ``"torch"``: batched tensor
        operations, for GPUs. Both follow the same path and return the same solution; nodes the
        compiled solver flags (near-singular ``K_SS``) are re-solved by the torch one.
    solver_threads : int or None
        CPU threads for the per-node stage; ``None`` (default) uses numba's setting (one per
        core) for the compiled solver and one thread for the torch solver on the CPU (its many
        small batched operations mostly wait on each other with more). The kNN search always
        uses torch's thread setting.
    candidates : {"exact", "hnsw", "ivf"}
        How the ``k`` candidates are found. ``"exact"`` (default): the exact ``k`` nearest
        neighbours. ``"ivf"`` / ``"hnsw"``: **approximate** nearest neighbours, for point sets
        too large for an exact search (about a million points and more): an inverted file
        (faiss k-means cells; each cell's points searched exactly among the ``nprobe`` cells
        nearest to it) or faiss's HNSW graph index (``IndexHNSWFlat``); opt-in, float32 on the
        CPU only. Some true neighbours may be missed (the candidate recall; ``benchmarks/nnk.py``
        measures it and the change in the MGM summaries); the per-node problems are still
        solved as usual on the candidates found, so the result is the NNK graph of an
        approximate candidate set (and the duplicate test of ``duplicates`` sees only the
        candidates found). See :mod:`sslgeom.candidates`.
    candidate_params : dict, optional
        Settings of the approximate index (:func:`sslgeom.candidates.check_candidate_params`),
        e.g. ``{"nlist": 1024, "nprobe": 8}`` for ``"ivf"``, ``{"M": 32, "ef_search": 128}``
        for ``"hnsw"``; stored in ``candidate_settings``. Not allowed with ``"exact"``.
    knn_backend : {"auto", "faiss", "torch"}
        Engine of the exact search (:func:`sslgeom.neighbors.resolve_backend`): ``"auto"``
        uses faiss's flat search for float32 on the CPU and the blocked torch search otherwise
        (float64, GPUs). The two agree up to ties (see the module docstring).
    progress : bool
        Show tqdm bars.

    Returns
    -------
    NNKResult
        Candidates, weights, errors, symmetric adjacency and kernel parameters. For ``c`` a power
        of two, ``nnk_graph(c * X)`` has the same neighbours, weights, errors, kernel values and
        adjacency as ``nnk_graph(X)``, bit for bit; ``sigma`` is ``c`` times and
        ``sq_distances`` (Gaussian kernel) ``c**2`` times larger.

    Raises
    ------
    ValueError
        NaN/inf features, fewer than 2 points, ``k >= n_points``, unknown kernel, solver,
        candidate mode or knn backend, ``solver="compiled"`` off the CPU, faiss (``knn_backend=
        "faiss"`` or an approximate mode) off the CPU or in float64, zero rows with the cosine
        kernel, duplicates with ``duplicates="raise"``, bad ``sigma``/``power``/
        ``candidate_params``, ``kkt_tol`` outside ``[0, 1)``.
    TypeError
        ``k`` or a candidate setting not an integer, ``candidate_params`` not a dict,
        ``kkt_tol`` not a number.
    """
    check_choice(kernel, KERNELS, "kernel")
    check_choice(duplicates, ("raise", "ridge"), "duplicates")
    settings = check_candidate_params(candidates, candidate_params)
    if sigma is not None and not (np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive finite number, got {sigma!r}.")
    if not (np.isfinite(power) and power > 0):
        raise ValueError(f"power must be a positive finite number, got {power!r}.")
    relative = check_relative_tol(kkt_tol)
    compiled = use_compiled(solver, device)
    torch_dtype = resolve_dtype(dtype)
    engine = search_engine(candidates, knn_backend, device, torch_dtype)
    points = as_tensor(features, device, torch_dtype)
    k = check_graph_input(points, k)
    points, scale = _unit_kernel_space(points, kernel)

    with torch.no_grad():
        indices, sq_dist, settings = find_candidates(points, k, candidates, settings, engine,
                                                     progress, equal_norms=kernel == "cosine")
        used_ridge = ridge_for_duplicates(points, indices, sq_dist, duplicates, ridge)
        params, unit_params = _kernel_params(kernel, sq_dist, scale, sigma, power)
        stage = dict(kernel=kernel, params=unit_params, ridge=used_ridge, relative_tol=relative,
                     floor=KKT_FLOOR, threads=solver_threads, progress=progress)
        solved = solve_nodes(points, indices, compiled, block_size, stage)

    neighbors_np = indices.cpu().numpy()
    return NNKResult(
        neighbors=neighbors_np,
        weights=solved["weights"],
        errors=solved["errors"],
        sq_distances=sq_to_input_units(solved["sq_distances"], scale),
        kernel_values=solved["kernel_values"],
        adjacency=symmetrize(neighbors_np, solved["weights"], solved["errors"]),
        kernel=kernel,
        kernel_params=params,
        kkt_tol=solved["kkt_tol"],
        relative_kkt_tol=relative,
        kkt_residual=solved["kkt_residual"],
        n_iterations=int(solved["n_iterations"]),
        ridge=used_ridge,
        candidates=candidates,
        candidate_settings=settings,
    )


def _unit_kernel_space(points: torch.Tensor, kernel: str) -> tuple[torch.Tensor, float]:
    """The kernel's rows at unit scale, and the power of two ``s`` they were divided by.

    Parameters
    ----------
    points : torch.Tensor, shape (n_points, dim)
        Validated features.
    kernel : {"cosine", "gaussian"}

    Returns
    -------
    unit : torch.Tensor, shape (n_points, dim)
        Cosine: the L2-normalised rows (already free of scale; ``s = 1`` because the kernel
        reads the distances between unit vectors themselves). Gaussian: ``points / s`` with
        ``s = 2**floor(log2(max |x|))``; the bandwidth is divided by the same ``s``.
    s : float
    """
    points = kernel_space(points, kernel)
    if kernel == "cosine":
        return points, 1.0
    return unit_scale(points)


def _kernel_params(
    kernel: str, sq_dist: torch.Tensor, scale: float, sigma: float | None, power: float
) -> tuple[dict, dict]:
    """Kernel parameters in the input's units (stored) and at unit scale (used to solve).

    ``sq_dist`` are the unit-scale squared distances to the candidates, ``(n_points, k)``.
    """
    if kernel != "gaussian":
        params = {"power": float(power)}
        return params, params
    if sigma is None:
        unit_sigma = float(gaussian_bandwidth(sq_dist))
        # times an exact power of two: the stored sigma rebuilds the same kernel on raw rows
        return {"sigma": unit_sigma * scale}, {"sigma": unit_sigma}
    return {"sigma": float(sigma)}, {"sigma": float(sigma) / scale}


def node_problem(result: NNKResult, features, node: int) -> tuple[np.ndarray, np.ndarray]:
    """Rebuild node ``node``'s QP ``(K_SS, K_Si)`` in float64 from a result and the features.

    Parameters
    ----------
    result : NNKResult
    features : array-like, shape (n_points, dim)
        The features the result was built from.
    node : int

    Returns
    -------
    gram : np.ndarray, shape (k, k)
    linear : np.ndarray, shape (k,)
    """
    points = kernel_space(np.asarray(features, dtype=np.float64), result.kernel)
    params = result.kernel_params
    if result.kernel == "gaussian":
        # at unit scale, as nnk_graph built it: squares of any float64 features stay finite
        scale = power_of_two_floor(np.abs(points).max())
        points, params = points / scale, {"sigma": params["sigma"] / float(scale)}
    cand = points[result.neighbors[node]]
    pair_sq = ((cand[:, None, :] - cand[None, :, :]) ** 2).sum(-1)
    node_sq = ((cand - points[node]) ** 2).sum(-1)
    gram = kernel_from_sq_distances(pair_sq, result.kernel, params)
    linear = kernel_from_sq_distances(node_sq, result.kernel, params)
    gram = gram + result.ridge * neighbourhood_scale(linear[None])[0] * np.eye(len(linear))
    return gram, linear


def grouped_nnk(
    features: np.ndarray, k: int, kernel: str = "cosine", ridge: float = 1e-6,
    kkt_tol: float = DEFAULT_RELATIVE_KKT_TOL,
) -> NNKResult:
    """NNK graphs of many small point clouds of equal size, solved in one batch.

    Equivalent to calling :func:`nnk_graph` on each cloud with ``duplicates="ridge"`` (candidates
    only from the same cloud, Gaussian bandwidth per cloud) and stacking the results, but one
    batched solve instead of one Python call per cloud, which matters for thousands of
    augmentation curves of a dozen points each. Computed in float64.

    Parameters
    ----------
    features : array, shape (n_clouds, n_points, dim)
        The clouds (e.g. one augmentation curve per base image).
    k : int
        Candidates per point, ``1 <= k < n_points``.
    kernel : {"cosine", "gaussian"}
        As in :func:`nnk_graph` (cosine: ``(1 + cos) / 2`` on L2-normalised rows; Gaussian:
        bandwidth = mean distance to the k-th neighbour of that cloud / 3).
    ridge : float
        Relative ridge, as in :func:`nnk_graph` (always used here, so that repeated points,
        identical views, are allowed).
    kkt_tol : float
        Relative KKT tolerance, as in :func:`nnk_graph` (float64 floor).

    Returns
    -------
    NNKResult
        Over the ``n_clouds * n_points`` stacked points (cloud ``c`` holds rows
        ``c * n_points ... (c + 1) * n_points - 1``); the adjacency is block diagonal.
        ``kernel_params["sigma"]`` is the mean of the per-cloud bandwidths (Gaussian kernel).
        Each cloud is brought to unit scale by its own power of two before its distances are
        formed, as :func:`nnk_graph` does, and ``sq_distances`` are returned in the input's
        units.
    """
    relative = check_relative_tol(kkt_tol)
    points = np.asarray(features, dtype=np.float64)
    if points.ndim != 3:
        raise ValueError(f"features must be (n_clouds, n_points, dim); got shape {points.shape}.")
    n_clouds, n_points, dim = points.shape
    if not 1 <= k < n_points:
        raise ValueError(f"k must satisfy 1 <= k < n_points={n_points}; got {k}.")
    check_features(points.reshape(-1, dim), min_rows=1)
    check_choice(kernel, KERNELS, "kernel")
    points, scale = _unit_clouds(points, kernel)
    local, sq_dist, cand_pairs = _cloud_candidates(points, k)
    if kernel == "gaussian":
        sigma = gaussian_bandwidth(sq_dist)  # per cloud, as nnk_graph on that cloud
        params = {"sigma": float((sigma * scale[:, 0, 0]).mean())}  # in the input's units
        linear = kernel_from_sq_distances(sq_dist, kernel, {"sigma": sigma[:, None, None]})
        gram = kernel_from_sq_distances(cand_pairs, kernel, {"sigma": sigma[:, None, None, None]})
    else:
        params = {"power": 1.0}
        linear = kernel_from_sq_distances(sq_dist, kernel, params)
        gram = kernel_from_sq_distances(cand_pairs, kernel, params)
    linear = linear.reshape(-1, k)
    node_ridge = ridge * neighbourhood_scale(linear)
    gram = unit_diagonal(gram.reshape(-1, k, k), node_ridge)
    tol = node_kkt_tol(linear, relative, KKT_FLOOR)
    theta, residual, n_iter = nonnegative_qp(torch.from_numpy(gram), torch.from_numpy(linear),
                                             kkt_tol=torch.from_numpy(tol))
    theta, residual = theta.numpy(), residual.numpy()
    errors = reconstruction_error(gram, linear, theta, node_ridge)
    neighbors = (local + (np.arange(n_clouds) * n_points)[:, None, None]).reshape(-1, k)
    sq_dist = sq_to_input_units(sq_dist, scale)
    return NNKResult(
        neighbors=neighbors, weights=theta, errors=errors, sq_distances=sq_dist.reshape(-1, k),
        kernel_values=linear, adjacency=symmetrize(neighbors, theta, errors), kernel=kernel,
        kernel_params=params, kkt_tol=tol, relative_kkt_tol=relative, kkt_residual=residual,
        n_iterations=n_iter, ridge=ridge,
    )


def _unit_clouds(points: np.ndarray, kernel: str) -> tuple[np.ndarray, np.ndarray]:
    """Each cloud in the kernel's space at unit scale, as :func:`nnk_graph` on that cloud.

    Parameters
    ----------
    points : np.ndarray, shape (n_clouds, n_points, dim)
    kernel : {"cosine", "gaussian"}

    Returns
    -------
    unit : np.ndarray, shape (n_clouds, n_points, dim)
    scale : np.ndarray, shape (n_clouds, 1, 1)
        The power of two each cloud was divided by (1 for the cosine kernel).
    """
    points = kernel_space(points, kernel)
    if kernel == "cosine":
        return points, np.ones((len(points), 1, 1))
    scale = power_of_two_floor(np.abs(points).max(axis=(1, 2), keepdims=True))
    return points / scale, scale


def _cloud_candidates(points: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact kNN within each cloud, by sorting all pairwise distances (clouds are small).

    Parameters
    ----------
    points : np.ndarray, shape (n_clouds, n_points, dim)
    k : int

    Returns
    -------
    local : np.ndarray, shape (n_clouds, n_points, k)
        Candidate indices within the cloud, nearest first (ties in index order).
    sq_dist : np.ndarray, shape (n_clouds, n_points, k)
        Squared distances to the candidates (in the units of ``points``).
    cand_pairs : np.ndarray, shape (n_clouds, n_points, k, k)
        Squared distances between the candidates of each point.
    """
    n_clouds, n_points, _ = points.shape
    sq_norms = (points**2).sum(-1)
    pair = np.maximum(
        sq_norms[:, :, None] + sq_norms[:, None, :] - 2 * points @ points.transpose(0, 2, 1), 0.0
    )
    masked = pair.copy()
    diagonal = np.arange(n_points)
    masked[:, diagonal, diagonal] = np.inf  # a point is not its own neighbour
    local = np.argsort(masked, axis=-1, kind="stable")[:, :, :k]
    sq_dist = np.take_along_axis(pair, local, axis=-1)
    clouds = np.arange(n_clouds)[:, None, None, None]
    cand_pairs = pair[clouds, local[:, :, :, None], local[:, :, None, :]]
    return local, sq_dist, cand_pairs
