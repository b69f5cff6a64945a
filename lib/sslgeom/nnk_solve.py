"""The per-node stage of :func:`sslgeom.nnk.nnk_graph`: duplicates, and every node's NNK problem solved.

Given the candidates of every point (rows in the kernel's space at unit scale), this stage
checks for exact duplicates among a node's candidates (:func:`duplicate_nodes`: an error, or a
ridge relative to each node's neighbourhood, :func:`ridge_for_duplicates`), forms each node's
quadratic program ``(K_SS, K_Si)`` and solves it (:func:`solve_nodes`): with the compiled
per-node solver of :mod:`sslgeom.nnk_compiled` on the CPU, the nodes it flags (near-singular
``K_SS`` or the KKT conditions not met) re-solved by the batched torch solver of
:mod:`sslgeom.qp`; with the torch solver alone on other devices. The kernel, tolerance and
reconstruction error are the single definitions of :mod:`sslgeom.kernels` and :mod:`sslgeom.qp`.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from .kernels import kernel_from_sq_distances, neighbourhood_scale, reconstruction_error, unit_diagonal
from .neighbors import block_rows
from .qp import node_kkt_tol, nonnegative_qp, numba_threads_for, solve_with_fallback, torch_threads_for

__all__ = [
    "duplicate_message",
    "duplicate_nodes",
    "ridge_for_duplicates",
    "solve_nodes",
]


def duplicate_message(n_pairs: int) -> str:
    """What to do about exact duplicates among the candidates of ``n_pairs`` points."""
    return (
        f"found {n_pairs} point(s) with an exact duplicate among their neighbours; duplicate "
        "points make the kernel matrix singular. Deduplicate first (np.unique(features, axis=0, "
        "return_inverse=True)) or pass duplicates='ridge' to add a small ridge to K_SS (the "
        "weight of a duplicated candidate is then shared equally among its copies)."
    )

def duplicate_nodes(points: torch.Tensor, indices: torch.Tensor,
                     sq_dist: torch.Tensor) -> torch.Tensor:
    """Which nodes have a candidate equal to themselves, bit for bit.

    Parameters
    ----------
    points : torch.Tensor, shape (n_points, dim)
        Rows in the kernel's space at unit scale.
    indices : torch.Tensor, shape (n_points, k)
        Candidates of each node.
    sq_dist : torch.Tensor, shape (n_points, k)
        Their squared distances from :func:`sslgeom.neighbors.knn_tensor`.

    Returns
    -------
    torch.Tensor of bool, shape (n_points,)
    """
    # A copy's computed squared distance is only the rounding of ||q||^2 + ||x||^2 - 2 q.x,
    # at most about (dim + 2) eps (||q||^2 + ||x||^2); screen with four times that bound (so a
    # copy ranked after a very near point is still seen), then compare the rows exactly (so no
    # near-duplicate is called a duplicate). Comparing rows, not squaring their difference,
    # cannot underflow.
    sq_norms = (points * points).sum(dim=1)
    screen = 4.0 * (points.shape[1] + 2) * torch.finfo(points.dtype).eps
    # index_select: torch's advanced indexing by an (n, k) tensor is far slower on the CPU
    cand_norms = sq_norms.index_select(0, indices.reshape(-1)).view(indices.shape)
    bound = screen * (sq_norms[:, None] + cand_norms)
    nodes, slots = (sq_dist <= bound).nonzero(as_tuple=True)
    duplicated = torch.zeros(points.shape[0], dtype=torch.bool, device=points.device)
    rows = block_rows(points.shape[1], points.element_size())
    for start in range(0, len(nodes), rows):
        node, slot = nodes[start:start + rows], slots[start:start + rows]
        equal = (points[node] == points[indices[node, slot]]).all(dim=1)
        duplicated[node[equal]] = True
    return duplicated


def ridge_for_duplicates(
    points: torch.Tensor, indices: torch.Tensor, sq_dist: torch.Tensor, duplicates: str,
    ridge: float,
) -> float:
    """The diagonal ridge to use; raises for exact duplicates with ``duplicates="raise"``."""
    if duplicates == "ridge":
        return float(ridge)
    duplicate_points = int(duplicate_nodes(points, indices, sq_dist).sum())
    if duplicate_points:
        raise ValueError(duplicate_message(duplicate_points))
    return 0.0


def solve_nodes(
    points: torch.Tensor, indices: torch.Tensor, compiled: bool, block_size: int | None,
    stage: dict,
) -> dict:
    """Per-node stage of :func:`sslgeom.nnk.nnk_graph`: NumPy arrays ``(n_points, ...)`` and ``n_iterations``.

    With ``compiled``, nodes the compiled solver flags (near-singular ``K_SS`` or KKT not met)
    are re-solved by the torch solver, which adds the smallest jitter that works.
    """
    if compiled:
        return solve_with_fallback(
            lambda: _per_node_compiled(points, indices, **stage),
            lambda nodes: _per_node_torch(points, indices, nodes, block_size, **stage),
        )
    everything = torch.arange(points.shape[0], device=points.device)
    solved = _per_node_torch(points, indices, everything, block_size, **stage)
    return {name: values.cpu().numpy() if isinstance(values, torch.Tensor) else values
            for name, values in solved.items()}


def _per_node_compiled(
    points: torch.Tensor, indices: torch.Tensor, *, kernel: str, params: dict, ridge: float,
    relative_tol: float, floor: float, threads: int | None, progress: bool, chunk: int = 4096,
) -> dict:
    """Per-node stage with the compiled solver; arrays ``(n_points, ...)`` in the points' dtype.

    Returns the per-node arrays and ``status`` (non-zero where the torch solver must retry).
    """
    from . import nnk_compiled

    array = np.ascontiguousarray(points.numpy())
    neighbors = np.ascontiguousarray(indices.numpy())
    code = nnk_compiled.COSINE if kernel == "cosine" else nnk_compiled.GAUSSIAN
    param = params["power"] if kernel == "cosine" else params["sigma"]
    cap = 4 * neighbors.shape[1] + 10
    names = ("weights", "errors", "kkt_residual", "kernel_values", "sq_distances", "iterations",
             "status", "kkt_tol")
    parts: dict[str, list] = {name: [] for name in names}
    starts = range(0, len(array), chunk)
    floats = ("weights", "errors", "kkt_residual", "kernel_values", "sq_distances")
    with numba_threads_for(threads):
        for start in tqdm(starts, desc="NNK", disable=not progress, leave=False):
            stop = min(start + chunk, len(array))
            outputs = nnk_compiled.nnk_nodes(array, neighbors, start, stop, code,
                                             float(param), float(ridge), float(relative_tol),
                                             float(floor), cap)
            for name, values in zip(names, outputs):
                # in the points' dtype chunk by chunk: no float64 copy of all n_points * k
                parts[name].append(values.astype(array.dtype) if name in floats else values)
    solved = {name: np.concatenate(values) for name, values in parts.items()}
    solved["n_iterations"] = int(solved.pop("iterations").max())
    return solved


def _per_node_torch(
    points: torch.Tensor, indices: torch.Tensor, nodes: torch.Tensor, block_size: int | None, *,
    kernel: str, params: dict, ridge: float, relative_tol: float, floor: float,
    threads: int | None, progress: bool,
) -> dict:
    """Per-node stage with batched tensor operations for the given ``nodes`` (any device).

    The problems are formed and solved in float64 whatever the points' dtype: the squared
    distances come from the norm expansion, which in float32 cancels for near neighbours (the
    compiled stage sums them from the differences instead, see
    :func:`sslgeom.nnk_compiled._pair_sq_distances`).
    """
    n_nodes, k = len(nodes), indices.shape[1]
    dim = points.shape[1]
    dtype = points.dtype
    weights = torch.zeros((n_nodes, k), dtype=dtype, device=points.device)
    kernel_values = torch.empty_like(weights)
    sq_distances = torch.empty_like(weights)
    errors = torch.empty(n_nodes, dtype=dtype, device=points.device)
    residuals = torch.empty_like(errors)
    tolerances = torch.empty(n_nodes, dtype=torch.float64, device=points.device)
    sq_norms = torch.cat([(block.to(torch.float64) ** 2).sum(dim=1)  # no float64 copy of all
                          for block in points.split(65536)])
    rows = block_size or min(2048, block_rows(k * dim, 8))  # gathered in float64
    max_iter = 0
    if threads is None and points.device.type == "cpu":
        # small batched operations: extra threads mostly wait on each other (measured about
        # 7x more CPU time with 2 threads on a busy 2-core machine)
        threads = 1
    with torch_threads_for(threads):
        blocks = tqdm(range(0, n_nodes, rows), desc="NNK (torch)", disable=not progress,
                      leave=False)
        for start in blocks:
            stop = min(start + rows, n_nodes)
            gram, linear, node_sq, node_ridge = _node_problems(points, sq_norms, indices,
                                                               nodes[start:stop], kernel, params,
                                                               ridge)
            sq_distances[start:stop] = node_sq
            kernel_values[start:stop] = linear
            tol = node_kkt_tol(linear, relative_tol, floor)
            theta, residual, n_iter = nonnegative_qp(gram, linear, kkt_tol=tol,
                                                     num_threads=threads, solver="torch")
            max_iter = max(max_iter, n_iter)
            weights[start:stop] = theta.to(dtype)
            residuals[start:stop] = residual.to(dtype)
            tolerances[start:stop] = tol
            errors[start:stop] = reconstruction_error(gram, linear, theta, node_ridge).to(dtype)
    return {"weights": weights, "errors": errors, "kkt_residual": residuals,
            "kernel_values": kernel_values, "sq_distances": sq_distances,
            "kkt_tol": tolerances, "n_iterations": max_iter}


def _node_problems(
    points: torch.Tensor, sq_norms: torch.Tensor, indices: torch.Tensor, node_ids: torch.Tensor,
    kernel: str, params: dict, ridge: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``K_SS`` (with each node's ridge), ``K_Si``, squared candidate distances and the ridges.

    Formed in float64 from the gathered rows (``sq_norms`` float64).

    Returns
    -------
    gram : torch.Tensor, shape (n_nodes, k, k)
    linear : torch.Tensor, shape (n_nodes, k)
    node_sq : torch.Tensor, shape (n_nodes, k)
    node_ridge : torch.Tensor, shape (n_nodes,)
        ``ridge * mean_j (1 - K_ij)``, on the diagonal of ``gram``.
    """
    n_nodes, k, dim = len(node_ids), indices.shape[1], points.shape[1]
    cand = indices[node_ids]
    gathered = points.index_select(0, cand.reshape(-1)).view(n_nodes, k, dim).to(torch.float64)
    inner = torch.bmm(gathered, gathered.transpose(1, 2))  # (b, k, k)
    node_inner = torch.bmm(gathered, points[node_ids, :, None].to(torch.float64))[:, :, 0]
    cand_norms = sq_norms[cand]
    pair_sq = cand_norms[:, :, None] + cand_norms[:, None, :] - 2.0 * inner
    node_sq = (cand_norms + sq_norms[node_ids, None] - 2.0 * node_inner).clamp_(min=0.0)
    linear = kernel_from_sq_distances(node_sq, kernel, params)
    node_ridge = ridge * neighbourhood_scale(linear)
    gram = unit_diagonal(kernel_from_sq_distances(pair_sq.clamp_(min=0.0), kernel, params), node_ridge)
    return gram, linear, node_sq, node_ridge
