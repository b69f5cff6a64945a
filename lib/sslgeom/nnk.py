"""Exact kNN search and non-negative kernel regression (NNK) graphs.

The public entry points are :func:`knn` (exact, blocked k-nearest-neighbour search),
:func:`nnk_graph` (the NNK graph of a point cloud) and :func:`nonnegative_qp` (the batched
exact solver of the per-node problems, exposed so that it can be tested on its own).

NNK in one paragraph: for each point ``x_i`` take its ``k`` nearest neighbours ``S`` as
candidates and solve the non-negative quadratic program

    theta_i = argmin_{theta >= 0}  1/2 theta^T K_SS theta - K_Si^T theta,

the best non-negative approximation of ``phi(x_i)`` by the candidates' images in the kernel's
feature space. Candidates with ``theta_j = 0`` are pruned; the others are the NNK neighbours.
The per-node solutions are exact: a batched primal active-set method whose every returned
solution satisfies the KKT conditions to the tolerance stored in the result.

Typical use (many small manifolds and a few large ones)::

    from sslgeom import nnk
    result = nnk.nnk_graph(features, k=50)            # features: (n_points, dim)
    result.weights, result.neighbors, result.adjacency
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from .threads import numba_threads, torch_threads

KernelName = Literal["cosine", "gaussian"]
KERNELS: tuple[str, ...] = ("cosine", "gaussian")
SolverName = Literal["auto", "compiled", "torch"]
SOLVERS: tuple[str, ...] = ("auto", "compiled", "torch")

# Status of a node the compiled stage solved (sslgeom.nnk_compiled.OK, kept here so that
# importing this module does not import numba).
_COMPILED_OK = 0

# Bytes we allow one block of pairwise distances / gathered candidates to take.
_BLOCK_BYTES = 1 << 27


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
        (the L2-normalised features for the cosine kernel, the raw features otherwise).
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
        Everything needed to rebuild each node's problem: ``{"sigma": float}`` for the Gaussian
        kernel ``exp(-||x_i - x_j||^2 / (2 sigma^2))``, ``{"power": float}`` for the cosine kernel
        ``((1 + cos(x_i, x_j)) / 2) ** power``.
    kkt_tol : float
        Stopping tolerance of the solver: every node has ``theta >= 0`` exactly and
        ``g = K_SS theta - K_Si`` satisfies ``g_j >= -kkt_tol`` where ``theta_j = 0``; on the
        support ``g_j = 0`` up to the rounding of the linear solve.
    kkt_residual : np.ndarray, shape (n_points,)
        Achieved KKT residual per node, ``max(max_{theta_j > 0} |g_j|,
        max_{theta_j = 0} -g_j)``: about 1e-15 in float64; in float32 up to about ``kkt_tol``
        (1e-4) when ``K_SS`` is badly conditioned.
    n_iterations : int
        Active-set iterations of the slowest node (compiled solver: coordinates added) or block
        (torch solver).
    ridge : float
        Value added to the diagonal of every ``K_SS`` (0 unless duplicates were allowed).
    """

    neighbors: np.ndarray
    weights: np.ndarray
    errors: np.ndarray
    sq_distances: np.ndarray
    kernel_values: np.ndarray
    adjacency: sp.csr_matrix
    kernel: str
    kernel_params: dict = field(default_factory=dict)
    kkt_tol: float = 0.0
    kkt_residual: np.ndarray | None = None
    n_iterations: int = 0
    ridge: float = 0.0

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


# ----------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------


def _as_tensor(features, device, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(features, torch.Tensor):
        tensor = features.detach().to(device=device, dtype=dtype)
    else:
        array = np.asarray(features)
        if not np.issubdtype(array.dtype, np.number):
            raise ValueError(f"features must be numeric, got dtype {array.dtype}.")
        tensor = torch.as_tensor(array, dtype=dtype, device=device)
    return tensor


def _torch_threads(n_threads: int | None) -> contextlib.AbstractContextManager:
    """Temporarily set torch's intra-op thread count (CPU)."""
    return torch_threads(n_threads, name="solver_threads / num_threads")


def _numba_threads(n_threads: int | None) -> contextlib.AbstractContextManager:
    """Temporarily set numba's thread count (the compiled per-node stage)."""
    return numba_threads(n_threads, name="solver_threads / num_threads")


def _use_compiled(solver: str, device) -> bool:
    """Whether to run the per-node stage with the compiled (numba, CPU) solver."""
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}.")
    on_cpu = torch.device(device).type == "cpu"
    if solver == "compiled" and not on_cpu:
        raise ValueError(
            f"solver='compiled' runs on the CPU only; use solver='torch' (or 'auto') with "
            f"device={str(device)!r}."
        )
    return solver == "compiled" or (solver == "auto" and on_cpu)


def _resolve_dtype(dtype) -> torch.dtype:
    table = {
        "float32": torch.float32,
        "float64": torch.float64,
        np.float32: torch.float32,
        np.float64: torch.float64,
        torch.float32: torch.float32,
        torch.float64: torch.float64,
    }
    key = np.dtype(dtype).type if isinstance(dtype, (str, np.dtype)) else dtype
    if key not in table:
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}.")
    return table[key]


def _check_features(features: torch.Tensor, k: int) -> None:
    if features.ndim != 2:
        raise ValueError(
            f"features must be a 2-D array (n_points, dim), got shape {tuple(features.shape)}; "
            "reshape it, e.g. features.reshape(len(features), -1)."
        )
    n_points = features.shape[0]
    if n_points < 2:
        raise ValueError(f"need at least 2 points to build a graph, got {n_points}.")
    if features.shape[1] < 1:
        raise ValueError("features have zero columns; each point needs at least one coordinate.")
    if not bool(torch.isfinite(features).all()):
        bad = int((~torch.isfinite(features)).any(dim=1).sum())
        raise ValueError(
            f"features contain NaN or inf in {bad} row(s); remove or impute them before "
            "building a graph."
        )
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"k must be an integer, got {k!r}.")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}.")
    if k >= n_points:
        raise ValueError(
            f"k={k} must be smaller than the number of points ({n_points}) because a point is "
            f"not its own neighbour; use k <= {n_points - 1}."
        )


def _normalise_rows(features: torch.Tensor) -> torch.Tensor:
    norms = torch.linalg.vector_norm(features, dim=1)
    zero = norms <= torch.finfo(features.dtype).tiny
    if bool(zero.any()):
        raise ValueError(
            f"{int(zero.sum())} feature vector(s) are zero, so their cosine similarity is "
            "undefined; drop them or use kernel='gaussian'."
        )
    return features / norms[:, None]


# ----------------------------------------------------------------------------------------
# Exact kNN
# ----------------------------------------------------------------------------------------


def _block_rows(n_cols: int, bytes_per_value: int, budget: int = _BLOCK_BYTES) -> int:
    return max(1, min(4096, budget // max(1, n_cols * bytes_per_value)))


def _knn_tensor(
    features: torch.Tensor, k: int, block_size: int | None, progress: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact kNN on a validated tensor; returns (indices (n,k) int64, sq_distances (n,k))."""
    n_points = features.shape[0]
    sq_norms = (features * features).sum(dim=1)
    rows = block_size or _block_rows(n_points, features.element_size())
    indices = torch.empty((n_points, k), dtype=torch.int64, device=features.device)
    sq_distances = torch.empty((n_points, k), dtype=features.dtype, device=features.device)
    starts = range(0, n_points, rows)
    for start in tqdm(starts, desc="kNN", disable=not progress, leave=False):
        stop = min(start + rows, n_points)
        # ||q - x||^2 = ||q||^2 + ||x||^2 - 2 q.x ; ||q||^2 is constant per row, so only the
        # last two terms matter for the ranking.
        scores = torch.addmm(sq_norms[None, :], features[start:stop], features.T, alpha=-2.0)
        local = torch.arange(stop - start, device=features.device)
        scores[local, local + start] = math.inf  # a point is not its own neighbour
        top = torch.topk(scores, k, dim=1, largest=False, sorted=True)
        indices[start:stop] = top.indices
        sq_distances[start:stop] = (top.values + sq_norms[start:stop, None]).clamp(min=0.0)
    return indices, sq_distances


def knn(
    features,
    k: int,
    *,
    metric: Literal["euclidean", "cosine"] = "euclidean",
    block_size: int | None = None,
    device: str | torch.device = "cpu",
    dtype="float32",
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k-nearest neighbours of every point, itself excluded.

    Brute force in row blocks: a block of ``block_size`` query rows is compared with all points
    at once, so memory is ``O(block_size * n_points)``, never ``n_points x n_points``.

    Parameters
    ----------
    features : array-like, shape (n_points, dim)
        Points, one per row.
    k : int
        Number of neighbours, ``1 <= k < n_points``.
    metric : {"euclidean", "cosine"}
        ``"cosine"`` ranks by Euclidean distance between L2-normalised rows (same order as cosine
        similarity) and returns squared distances between the normalised rows.
    block_size : int, optional
        Query rows per block; default keeps one block of scores near 128 MiB.
    device : str or torch.device
        Where to compute (CPU by default).
    dtype : {"float32", "float64"}
        Precision of the computation.
    progress : bool
        Show a tqdm bar over blocks.

    Returns
    -------
    indices : np.ndarray, shape (n_points, k), int64
        Neighbour indices, nearest first.
    sq_distances : np.ndarray, shape (n_points, k)
        Squared Euclidean distances to those neighbours, from the expansion
        ``||q||^2 + ||x||^2 - 2 q.x`` (accurate to about ``eps * ||x||^2``), clipped at 0.
    """
    torch_dtype = _resolve_dtype(dtype)
    tensor = _as_tensor(features, device, torch_dtype)
    _check_features(tensor, k)
    if metric == "cosine":
        tensor = _normalise_rows(tensor)
    elif metric != "euclidean":
        raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}.")
    with torch.no_grad():
        indices, sq_distances = _knn_tensor(tensor, int(k), block_size, progress)
    return indices.cpu().numpy(), sq_distances.cpu().numpy()


# ----------------------------------------------------------------------------------------
# Batched exact non-negative QP
# ----------------------------------------------------------------------------------------


def _cholesky_solve_padded(
    gram: torch.Tensor, rhs: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """Solve ``gram[valid, valid] z = rhs[valid]`` per problem; ``z = 0`` off ``valid``."""
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    if bool(valid.all()):
        restricted = gram
    else:
        # rows and columns outside the valid set become those of the identity, with zero rhs
        restricted = torch.where(valid[:, :, None] & valid[:, None, :], gram, eye)
    factor, info = torch.linalg.cholesky_ex(restricted)
    failed = info > 0
    jitter = 10.0 * torch.finfo(gram.dtype).eps
    while bool(failed.any()):
        # Numerically semidefinite restrictions (near-duplicate candidates, or more candidates
        # than the kernel's feature space has dimensions): the smallest jitter that works.
        if jitter > 1e-2:
            raise FloatingPointError(
                "kernel matrix restriction is not positive definite even with jitter; check "
                "for duplicate points or use dtype='float64'."
            )
        rows = failed.nonzero().squeeze(1)
        retry, info_retry = torch.linalg.cholesky_ex(restricted[rows] + jitter * eye)
        factor[rows] = retry
        failed = torch.zeros_like(failed)
        failed[rows[info_retry > 0]] = True
        jitter *= 10.0
    rhs = torch.where(valid, rhs, torch.zeros_like(rhs))
    return torch.cholesky_solve(rhs[:, :, None], factor)[:, :, 0]


# Passive-set sizes are padded up to one of these widths, so problems with few neighbours are
# factorised as small matrices (Cholesky cost grows as width^3).
_WIDTHS = (4, 8, 12, 16, 24, 32, 48, 64, 96, 128)


def _masked_solve(gram: torch.Tensor, linear: torch.Tensor, passive: torch.Tensor) -> torch.Tensor:
    """Solve ``gram[P, P] z_P = linear[P]``, ``z = 0`` off ``P``, for every problem at once.

    Each problem's passive coordinates are gathered into a compact system whose width is the
    passive-set size rounded up to a bucket width; one batched Cholesky per bucket.
    """
    batch, m = linear.shape
    sizes = passive.sum(dim=1)
    solution = torch.zeros_like(linear)
    # passive coordinates first, in their original order
    order = torch.argsort((~passive).to(torch.int8), dim=1, stable=True)
    widths = [w for w in _WIDTHS if w < m] + [m]
    lower = 0
    for width in widths:
        rows = ((sizes > lower) & (sizes <= width)).nonzero().squeeze(1)
        lower = width
        if rows.numel() == 0:
            continue
        sel = order[rows, :width]
        if width == m and bool(passive[rows].all()):
            sub, valid = gram[rows], passive[rows]  # nothing to gather: the full system
        else:
            sub = gram[rows].gather(1, sel[:, :, None].expand(-1, -1, m))
            sub = sub.gather(2, sel[:, None, :].expand(-1, width, -1))
            valid = torch.arange(width, device=gram.device)[None, :] < sizes[rows, None]
        z = _cholesky_solve_padded(sub, linear[rows].gather(1, sel), valid)
        block = torch.zeros((rows.numel(), m), dtype=linear.dtype, device=linear.device)
        solution[rows] = block.scatter(1, sel, z)
    return solution


def default_kkt_tol(dtype) -> float:
    """Default KKT tolerance: 1e-9 in float64, 1e-4 in float32 (kernel values are <= 1)."""
    return 1e-9 if _resolve_dtype(dtype) == torch.float64 else 1e-4


def nonnegative_qp(
    gram,
    linear,
    *,
    kkt_tol: float | None = None,
    max_iter: int | None = None,
    num_threads: int | None = None,
    solver: SolverName = "auto",
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Exactly solve a batch of ``min_{theta >= 0} 1/2 theta^T G theta - c^T theta``.

    Two exact solvers. ``"compiled"`` (the default on the CPU) runs the Lawson-Hanson
    active-set method per problem in compiled code (:mod:`sslgeom.nnk_compiled`), in float64,
    problems spread over threads; a problem it flags (numerically singular passive block, or
    KKT residual above ``kkt_tol``) is handed to the torch solver. ``"torch"`` is a primal
    active-set method run on all problems at once with batched tensor operations (any device).

    The torch solver: phase 1 starts from the unconstrained solution and drops negative
    coordinates until the solution on the passive set is positive (a feasible point). Phase 2
    is Lawson-Hanson: add the coordinate with the most negative gradient, re-solve, and if some
    coordinate turns non-positive step back to the boundary along the segment and drop it; every step keeps feasibility and lowers the
    objective (adding several coordinates at once was tried and can cycle). A problem stops
    when its KKT conditions hold to ``kkt_tol``. Each iteration solves the systems on the
    passive sets with batched Cholesky factorisations sized to the passive sets.

    Parameters
    ----------
    gram : torch.Tensor, shape (batch, m, m)
        Symmetric positive definite matrices ``G``.
    linear : torch.Tensor, shape (batch, m)
        Linear terms ``c``.
    kkt_tol : float, optional
        Stop when ``min_j g_j >= -kkt_tol`` over coordinates at zero, with ``g = G theta - c``.
        Default :func:`default_kkt_tol` of the dtype.
    max_iter : int, optional
        Iteration cap (default ``4 m + 10``); reaching it raises ``RuntimeError`` (the
        compiled solver first hands such problems to the torch solver).
    num_threads : int or None
        CPU threads while solving; ``None`` (default) leaves numba's (one per core) or torch's
        setting.
    solver : {"auto", "compiled", "torch"}
        ``"auto"``: compiled for CPU tensors, torch otherwise.

    Returns
    -------
    theta : torch.Tensor, shape (batch, m)
        The solutions (exactly zero off the support).
    residual : torch.Tensor, shape (batch,)
        Largest KKT violation of each solution: negative gradient off the support and
        ``|g_j|`` on it.
    n_iter : int
        Iterations used.
    """
    gram = torch.as_tensor(gram)
    linear = torch.as_tensor(linear, dtype=gram.dtype, device=gram.device)
    if gram.ndim != 3 or gram.shape[1] != gram.shape[2] or linear.shape != gram.shape[:2]:
        raise ValueError(
            f"gram must be (batch, m, m) and linear (batch, m); got {tuple(gram.shape)} and "
            f"{tuple(linear.shape)}."
        )
    batch, m = linear.shape
    tol = default_kkt_tol(gram.dtype) if kkt_tol is None else float(kkt_tol)
    cap = 4 * m + 10 if max_iter is None else int(max_iter)
    if not _use_compiled(solver, gram.device):
        with _torch_threads(num_threads):
            return _active_set(gram, linear, tol, cap)
    from . import nnk_compiled

    gram64 = np.ascontiguousarray(gram.detach().numpy(), dtype=np.float64)
    linear64 = np.ascontiguousarray(linear.detach().numpy(), dtype=np.float64)
    with _numba_threads(num_threads):
        theta, residual, iterations, status = nnk_compiled.solve_batch(gram64, linear64, tol, cap)
    theta = torch.from_numpy(theta).to(gram.dtype)
    residual = torch.from_numpy(residual).to(gram.dtype)
    n_iter = int(iterations.max()) if batch else 0
    failed = torch.from_numpy(np.flatnonzero(status != nnk_compiled.OK))
    if failed.numel():
        with _torch_threads(num_threads):
            retry, retry_residual, retry_iter = _active_set(gram[failed], linear[failed], tol, cap)
        theta[failed], residual[failed] = retry, retry_residual
        n_iter = max(n_iter, retry_iter)
    return theta, residual, n_iter


def _active_set(
    gram: torch.Tensor, linear: torch.Tensor, tol: float, cap: int
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The loop of :func:`nonnegative_qp` on validated inputs."""
    batch, m = linear.shape

    theta = torch.zeros_like(linear)
    # Working set: the problems not finished yet, compacted as they finish.
    todo = torch.arange(batch, device=gram.device)
    g_sub, c_sub = gram, linear
    p_sub = torch.ones_like(linear, dtype=torch.bool)
    t_sub = torch.zeros_like(linear)
    f_sub = torch.zeros(batch, dtype=torch.bool, device=gram.device)  # holds a feasible point
    n_iter = 0
    while todo.numel() > 0:
        if n_iter >= cap:
            raise RuntimeError(
                f"non-negative QP did not converge in {cap} iterations for {todo.numel()} "
                "problem(s); the kernel matrices may be badly conditioned (try dtype='float64')."
            )
        n_iter += 1
        z = _masked_solve(g_sub, c_sub, p_sub)
        nonpositive = p_sub & (z <= 0)
        blocked = nonpositive.any(dim=1)

        # (a) z is positive on the passive set: accept it and test optimality.
        accept = ~blocked
        t_sub = torch.where(accept[:, None], z, t_sub)
        f_sub = f_sub | accept
        grad = torch.bmm(g_sub, t_sub[:, :, None])[:, :, 0] - c_sub
        off_support = torch.where(p_sub, torch.full_like(grad, -math.inf), -grad)
        worst_value, worst_index = off_support.max(dim=1)
        finished = accept & (worst_value <= tol)
        grow = (accept & ~finished).nonzero().squeeze(1)
        p_sub[grow, worst_index[grow]] = True

        # (b) phase 1, no feasible point yet: drop the non-positive coordinates.
        drop = blocked & ~f_sub
        p_sub = torch.where(drop[:, None], p_sub & ~nonpositive, p_sub)

        # (c) phase 2: move from the feasible theta towards z until a coordinate hits zero.
        step_rows = (blocked & f_sub).nonzero().squeeze(1)
        if step_rows.numel() > 0:
            t_old, z_new = t_sub[step_rows], z[step_rows]
            hits = nonpositive[step_rows]
            ratio = torch.where(hits, t_old / (t_old - z_new), torch.full_like(t_old, math.inf))
            alpha, first = ratio.min(dim=1)
            t_new = t_old + alpha.clamp(0.0, 1.0)[:, None] * (z_new - t_old)
            keep = p_sub[step_rows] & (t_new > 0)
            keep[torch.arange(keep.shape[0], device=keep.device), first] = False
            t_sub[step_rows] = torch.where(keep, t_new, torch.zeros_like(t_new))
            p_sub[step_rows] = keep

        if bool(finished.any()):
            theta[todo[finished]] = t_sub[finished]
            live = ~finished
            todo, g_sub, c_sub = todo[live], g_sub[live], c_sub[live]
            p_sub, t_sub, f_sub = p_sub[live], t_sub[live], f_sub[live]

    grad = torch.bmm(gram, theta[:, :, None])[:, :, 0] - linear
    support = theta > 0
    residual = torch.where(support, grad.abs(), (-grad).clamp(min=0.0)).amax(dim=1)
    return theta, residual, n_iter


# ----------------------------------------------------------------------------------------
# NNK graph
# ----------------------------------------------------------------------------------------


def _kernel_from_sq_distances(
    sq_distances: torch.Tensor, kernel: str, params: dict
) -> torch.Tensor:
    if kernel == "gaussian":
        return torch.exp(-sq_distances / (2.0 * params["sigma"] ** 2))
    # unit vectors: cos = 1 - ||x - y||^2 / 2, so (1 + cos) / 2 = 1 - ||x - y||^2 / 4
    return (1.0 - sq_distances / 4.0).clamp(min=0.0) ** params["power"]


def _directed_matrix(neighbors: np.ndarray, weights: np.ndarray) -> sp.csr_matrix:
    n_points, k = neighbors.shape
    rows = np.repeat(np.arange(n_points), k)
    matrix = sp.csr_matrix(
        (weights.ravel(), (rows, neighbors.ravel())), shape=(n_points, n_points)
    )
    matrix.eliminate_zeros()
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


def _duplicate_message(n_pairs: int) -> str:
    return (
        f"found {n_pairs} point(s) with an exact duplicate among their neighbours; duplicate "
        "points make the kernel matrix singular. Deduplicate first (np.unique(features, axis=0, "
        "return_inverse=True)) or pass duplicates='ridge' to add a small ridge to K_SS (the "
        "weight of a duplicated candidate is then shared equally among its copies)."
    )


def nnk_graph(
    features,
    k: int = 50,
    *,
    kernel: KernelName = "cosine",
    sigma: float | None = None,
    power: float = 1.0,
    duplicates: Literal["raise", "ridge"] = "raise",
    ridge: float = 1e-6,
    kkt_tol: float | None = None,
    block_size: int | None = None,
    device: str | torch.device = "cpu",
    dtype="float32",
    solver: SolverName = "auto",
    solver_threads: int | None = None,
    progress: bool = False,
) -> NNKResult:
    """Build the NNK graph of a point cloud.

    Steps: exact kNN (blocked, itself excluded) gives ``k`` candidates per point; the kernel
    gives ``K_SS`` and ``K_Si`` for each point; the batched exact solver returns the weights;
    the reconstruction errors decide which directed edges enter the symmetric graph.

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
        Gaussian bandwidth. Default: mean distance to the k-th neighbour divided by 3 (the NNK
        reference default); stored in ``kernel_params``.
    power : float
        Exponent of the cosine kernel (1 gives ``0.5 + 0.5 cos``; larger values make it sharper;
        any positive integer keeps it positive definite).
    duplicates : {"raise", "ridge"}
        What to do when a point has an exact copy among its candidates: raise ``ValueError``
        (default) or add ``ridge`` to the diagonal of every ``K_SS``.
    ridge : float
        Diagonal ridge used with ``duplicates="ridge"``.
    kkt_tol : float, optional
        KKT tolerance of the solver; default 1e-9 (float64) or 1e-4 (float32).
    block_size : int, optional
        Nodes per batch of the torch solver; default keeps gathered candidates near 128 MiB.
    device : str or torch.device
        Where to compute; CPU by default.
    dtype : {"float32", "float64"}
        Precision of kNN and kernels (the compiled solver always solves in float64; the
        results are returned in this dtype).
    solver : {"auto", "compiled", "torch"}
        Engine of the per-node stage (``K_SS``, ``K_Si`` and the exact solve). ``"compiled"``:
        one node at a time in compiled code (numba), nodes spread over threads; the default on
        the CPU (at 10,000 points in 512 dimensions its stage is about 7x faster than the torch
        solver's, see ``benchmarks/nnk.py --torch-solver``). ``"torch"``: batched tensor
        operations, for GPUs. Both return the exact solution; nodes the compiled solver flags
        (near-singular ``K_SS``) are re-solved by the torch one.
    solver_threads : int or None
        CPU threads for the per-node stage; ``None`` (default) uses numba's setting (one per
        core) for the compiled solver and one thread for the torch solver on the CPU (its many
        small batched operations mostly wait on each other with more). The kNN search always
        uses torch's thread setting.
    progress : bool
        Show tqdm bars.

    Returns
    -------
    NNKResult
        Candidates, weights, errors, symmetric adjacency and kernel parameters.

    Raises
    ------
    ValueError
        NaN/inf features, fewer than 2 points, ``k >= n_points``, unknown kernel or solver,
        ``solver="compiled"`` off the CPU, zero rows with the cosine kernel, duplicates with
        ``duplicates="raise"``, bad ``sigma``/``power``.
    """
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {KERNELS}.")
    if duplicates not in ("raise", "ridge"):
        raise ValueError(f"duplicates must be 'raise' or 'ridge', got {duplicates!r}.")
    if sigma is not None and not (np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive finite number, got {sigma!r}.")
    if not (np.isfinite(power) and power > 0):
        raise ValueError(f"power must be a positive finite number, got {power!r}.")
    compiled = _use_compiled(solver, device)
    torch_dtype = _resolve_dtype(dtype)
    points = _as_tensor(features, device, torch_dtype)
    _check_features(points, k)
    k = int(k)
    if kernel == "cosine":
        points = _normalise_rows(points)

    with torch.no_grad():
        indices, sq_dist = _knn_tensor(points, k, None, progress)
        # Exact test on the nearest candidate: any duplicated point has its copy there.
        nearest_gap = points - points.index_select(0, indices[:, 0])
        duplicate_pairs = int(((nearest_gap * nearest_gap).sum(dim=1) == 0).sum())
        if duplicate_pairs and duplicates == "raise":
            raise ValueError(_duplicate_message(duplicate_pairs))
        used_ridge = float(ridge) if duplicates == "ridge" else 0.0

        if kernel == "gaussian":
            if sigma is None:
                sigma = float(torch.sqrt(sq_dist[:, -1]).mean()) / 3.0
                if sigma <= 0:
                    raise ValueError(
                        "all points coincide with their k-th neighbour, so the default Gaussian "
                        "bandwidth is 0; deduplicate the data or pass sigma explicitly."
                    )
            params = {"sigma": float(sigma)}
        else:
            params = {"power": float(power)}

        tol = default_kkt_tol(torch_dtype) if kkt_tol is None else float(kkt_tol)
        stage = dict(kernel=kernel, params=params, ridge=used_ridge, tol=tol,
                     threads=solver_threads, progress=progress)
        if compiled:
            solved = _per_node_compiled(points, indices, **stage)
            failed = np.flatnonzero(solved.pop("status") != _COMPILED_OK)
            if failed.size:  # near-singular K_SS or KKT not met: the torch solver adds jitter
                retry = _per_node_torch(points, indices, torch.from_numpy(failed), block_size,
                                        **stage)
                for name, values in retry.items():
                    if name == "n_iterations":
                        solved[name] = max(solved[name], values)
                    else:
                        solved[name][failed] = values.cpu().numpy().astype(solved[name].dtype)
        else:
            everything = torch.arange(points.shape[0], device=points.device)
            solved = {name: values.cpu().numpy() if isinstance(values, torch.Tensor) else values
                      for name, values in
                      _per_node_torch(points, indices, everything, block_size, **stage).items()}

    neighbors_np = indices.cpu().numpy()
    return NNKResult(
        neighbors=neighbors_np,
        weights=solved["weights"],
        errors=solved["errors"],
        sq_distances=solved["sq_distances"],
        kernel_values=solved["kernel_values"],
        adjacency=symmetrize(neighbors_np, solved["weights"], solved["errors"]),
        kernel=kernel,
        kernel_params=params,
        kkt_tol=tol,
        kkt_residual=solved["kkt_residual"],
        n_iterations=int(solved["n_iterations"]),
        ridge=used_ridge,
    )


def _per_node_compiled(
    points: torch.Tensor, indices: torch.Tensor, *, kernel: str, params: dict, ridge: float,
    tol: float, threads: int | None, progress: bool, chunk: int = 4096,
) -> dict:
    """Per-node stage with the compiled solver; arrays ``(n_points, ...)`` in the points' dtype.

    Returns the per-node arrays and ``status`` (non-zero where the torch solver must retry).
    """
    from . import nnk_compiled

    array = np.ascontiguousarray(points.numpy())
    neighbors = np.ascontiguousarray(indices.numpy())
    sq_norms = (array.astype(np.float64) ** 2).sum(axis=1)
    code = nnk_compiled.COSINE if kernel == "cosine" else nnk_compiled.GAUSSIAN
    param = params["power"] if kernel == "cosine" else params["sigma"]
    cap = 4 * neighbors.shape[1] + 10
    names = ("weights", "errors", "kkt_residual", "kernel_values", "sq_distances", "iterations",
             "status")
    parts: dict[str, list] = {name: [] for name in names}
    starts = range(0, len(array), chunk)
    with _numba_threads(threads):
        for start in tqdm(starts, desc="NNK", disable=not progress, leave=False):
            stop = min(start + chunk, len(array))
            outputs = nnk_compiled.nnk_nodes(array, sq_norms, neighbors, start, stop, code,
                                             float(param), float(ridge), tol, cap)
            for name, values in zip(names, outputs):
                parts[name].append(values)
    solved = {name: np.concatenate(values) for name, values in parts.items()}
    for name in ("weights", "errors", "kkt_residual", "kernel_values", "sq_distances"):
        solved[name] = solved[name].astype(array.dtype)
    solved["n_iterations"] = int(solved.pop("iterations").max())
    return solved


def _per_node_torch(
    points: torch.Tensor, indices: torch.Tensor, nodes: torch.Tensor, block_size: int | None, *,
    kernel: str, params: dict, ridge: float, tol: float, threads: int | None, progress: bool,
) -> dict:
    """Per-node stage with batched tensor operations for the given ``nodes`` (any device)."""
    n_nodes, k = len(nodes), indices.shape[1]
    dim = points.shape[1]
    dtype = points.dtype
    weights = torch.zeros((n_nodes, k), dtype=dtype, device=points.device)
    kernel_values = torch.empty_like(weights)
    sq_distances = torch.empty_like(weights)
    errors = torch.empty(n_nodes, dtype=dtype, device=points.device)
    residuals = torch.empty_like(errors)
    sq_norms = (points * points).sum(dim=1)
    rows = block_size or min(2048, _block_rows(k * dim, points.element_size()))
    max_iter = 0
    eye = torch.eye(k, dtype=dtype, device=points.device)
    if threads is None and points.device.type == "cpu":
        # small batched operations: extra threads mostly wait on each other (measured about
        # 7x more CPU time with 2 threads on a busy 2-core machine)
        threads = 1
    with _torch_threads(threads):
        blocks = tqdm(range(0, n_nodes, rows), desc="NNK (torch)", disable=not progress,
                      leave=False)
        for start in blocks:
            stop = min(start + rows, n_nodes)
            node_ids = nodes[start:stop]
            cand = indices[node_ids]
            gathered = points.index_select(0, cand.reshape(-1)).view(stop - start, k, dim)
            inner = torch.bmm(gathered, gathered.transpose(1, 2))  # (b, k, k)
            node_inner = torch.bmm(gathered, points[node_ids, :, None])[:, :, 0]
            cand_norms = sq_norms[cand]
            pair_sq = cand_norms[:, :, None] + cand_norms[:, None, :] - 2.0 * inner
            node_sq = (cand_norms + sq_norms[node_ids, None] - 2.0 * node_inner).clamp_(min=0.0)
            sq_distances[start:stop] = node_sq
            gram = _kernel_from_sq_distances(pair_sq.clamp_(min=0.0), kernel, params)
            gram = gram * (1.0 - eye) + eye * (1.0 + ridge)
            linear = _kernel_from_sq_distances(node_sq, kernel, params)
            kernel_values[start:stop] = linear
            theta, residual, n_iter = nonnegative_qp(gram, linear, kkt_tol=tol,
                                                     num_threads=threads, solver="torch")
            max_iter = max(max_iter, n_iter)
            weights[start:stop] = theta
            residuals[start:stop] = residual
            # error with K(x_i, x_i) = 1 (both kernels) and without the ridge
            quad = torch.bmm(gram, theta[:, :, None])[:, :, 0] - ridge * theta
            errors[start:stop] = (
                1.0 - 2.0 * (linear * theta).sum(1) + (theta * quad).sum(1)
            ).clamp(min=0.0)
    return {"weights": weights, "errors": errors, "kkt_residual": residuals,
            "kernel_values": kernel_values, "sq_distances": sq_distances,
            "n_iterations": max_iter}


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
    points = np.asarray(features, dtype=np.float64)
    if result.kernel == "cosine":
        points = points / np.linalg.norm(points, axis=1, keepdims=True)
    cand = points[result.neighbors[node]]
    pair_sq = ((cand[:, None, :] - cand[None, :, :]) ** 2).sum(-1)
    node_sq = ((cand - points[node]) ** 2).sum(-1)
    if result.kernel == "gaussian":
        scale = 2.0 * result.kernel_params["sigma"] ** 2
        gram, linear = np.exp(-pair_sq / scale), np.exp(-node_sq / scale)
    else:
        power = result.kernel_params["power"]
        gram = np.clip(1.0 - pair_sq / 4.0, 0.0, None) ** power
        linear = np.clip(1.0 - node_sq / 4.0, 0.0, None) ** power
    gram = gram + result.ridge * np.eye(len(linear))
    return gram, linear
