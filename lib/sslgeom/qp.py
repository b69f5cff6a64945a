"""Exact batched solvers of non-negative quadratic programs (the per-node problems of NNK).

:func:`nonnegative_qp` solves ``min_{theta >= 0} 1/2 theta^T G theta - c^T theta`` for a
batch of problems, with the compiled Lawson-Hanson solver (:mod:`sslgeom.nnk_compiled`, CPU)
or the batched torch active-set solver (``solver="torch"``, any device). Problems the compiled
solver flags are re-solved by the torch one through :func:`solve_with_fallback`, the one place
that combines the two (the NNK graph uses it too). Also importable from :mod:`sslgeom.nnk`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch

from .kernels import neighbourhood_scale
from .neighbors import resolve_dtype
from .threads import numba_threads, torch_threads

SolverName = Literal["auto", "compiled", "torch"]
SOLVERS: tuple[str, ...] = ("auto", "compiled", "torch")

# Status of a problem the compiled solver solved (sslgeom.nnk_compiled.OK, kept here so that
# importing this module does not import numba).
COMPILED_OK = 0


def torch_threads_for(n_threads: int | None) -> contextlib.AbstractContextManager:
    """Temporarily set torch's intra-op thread count (CPU)."""
    return torch_threads(n_threads, name="solver_threads / num_threads")


def numba_threads_for(n_threads: int | None) -> contextlib.AbstractContextManager:
    """Temporarily set numba's thread count (the compiled per-node stage)."""
    return numba_threads(n_threads, name="solver_threads / num_threads")


def use_compiled(solver: str, device) -> bool:
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
    """Default absolute KKT tolerance of :func:`nonnegative_qp`: 1e-9 in float64, 1e-4 in float32.

    The NNK graphs do not use it: their tolerance is relative to each node's neighbourhood
    (:func:`node_kkt_tol`).
    """
    return 1e-9 if resolve_dtype(dtype) == torch.float64 else 1e-4


#: Default relative KKT tolerance of the NNK graphs (:func:`node_kkt_tol`). Chapter 03 derives
#: the rule that chose it and checks that the rule still picks it.
DEFAULT_RELATIVE_KKT_TOL = 0.01


#: Smallest per-node KKT tolerance of an NNK graph. The per-node problems are solved in float64
#: from squared distances accurate to a few ulps of themselves (summed from the differences), so
#: the floor is float64 rounding of kernel values at most 1, with a margin.
KKT_FLOOR = 1e-12


def node_kkt_tol(kernel_values, relative_tol: float, floor: float):
    """Per-node KKT tolerance of an NNK graph: ``max(relative_tol * mean_j (1 - K_ij), floor)``.

    The scale is :func:`sslgeom.kernels.neighbourhood_scale`. ``1 - K_ij = ||phi(x_i) -
    phi(x_j)||^2 / 2`` (kernels with unit diagonal) is the node's squared distance to candidate
    ``j`` in the kernel's feature space, and ``-g_j = <phi(x_j), r_i>`` (``r_i`` the residual)
    has the same units, so the tolerance scales with the neighbourhood: the graph of a manifold
    and of the same manifold shrunk towards a point (more concentrated features) keep the same
    neighbours. ``relative_tol`` is the fraction of the neighbourhood's scale below which a
    candidate's correlation with the residual counts as noise.

    Parameters
    ----------
    kernel_values : np.ndarray or torch.Tensor, shape (n_nodes, k)
        ``K_Si`` of each node.
    relative_tol : float
        Non-negative; 0 asks for the exact solution (the floor).
    floor : float
        Smallest tolerance (:data:`KKT_FLOOR`).

    Returns
    -------
    np.ndarray or torch.Tensor, shape (n_nodes,)
        Float64 tolerances (same array library as ``kernel_values``).
    """
    scale = neighbourhood_scale(kernel_values)
    if isinstance(scale, torch.Tensor):
        return (relative_tol * scale).clamp(min=floor)
    return np.maximum(relative_tol * scale, floor)


def check_relative_tol(relative_tol) -> float:
    """``relative_tol`` as a float; ``TypeError`` / ``ValueError`` saying what is allowed."""
    if isinstance(relative_tol, bool) or not isinstance(relative_tol, (int, float, np.floating)):
        raise TypeError(f"kkt_tol must be a number (a fraction such as 0.01), got "
                        f"{type(relative_tol).__name__}.")
    if not (np.isfinite(relative_tol) and 0 <= relative_tol < 1):
        raise ValueError(f"kkt_tol is relative to each node's mean kernel distance 1 - K_ij and "
                         f"must be in [0, 1) (default {DEFAULT_RELATIVE_KKT_TOL}; 0 solves "
                         f"exactly); got {relative_tol!r}.")
    return float(relative_tol)


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

    Both solvers follow one path, Lawson-Hanson from ``theta = 0``: add the coordinate with the
    most negative gradient, re-solve on the passive set, and if some coordinate turns
    non-positive step back to the boundary along the segment and drop it; every step keeps
    feasibility and lowers the objective (adding several coordinates at once was tried and can
    cycle). A problem stops when its KKT conditions hold to ``kkt_tol``. With a tolerance above
    rounding the support found depends on the path (a different exact method could stop at
    another support that also meets the tolerance), so the common path is what makes the
    compiled and torch solvers return the same neighbours. The torch solver solves the systems
    on the passive sets of all problems at once, with batched Cholesky factorisations sized to
    the passive sets.

    Parameters
    ----------
    gram : torch.Tensor, shape (batch, m, m)
        Symmetric positive definite matrices ``G``.
    linear : torch.Tensor, shape (batch, m)
        Linear terms ``c``.
    kkt_tol : float or torch.Tensor of shape (batch,), optional
        Stop when ``min_j g_j >= -kkt_tol`` over coordinates at zero, with ``g = G theta - c``
        (one tolerance for all problems, or one per problem). Default :func:`default_kkt_tol`
        of the dtype.
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
    m = linear.shape[1]
    if kkt_tol is None:
        kkt_tol = default_kkt_tol(gram.dtype)
    tol = torch.as_tensor(kkt_tol, dtype=torch.float64).expand(gram.shape[0]).clone()
    cap = 4 * m + 10 if max_iter is None else int(max_iter)
    if not use_compiled(solver, gram.device):
        with torch_threads_for(num_threads):
            return _active_set(gram, linear, tol, cap)
    return _compiled_then_torch(gram, linear, tol, cap, num_threads)


def _compiled_then_torch(
    gram: torch.Tensor, linear: torch.Tensor, tol: torch.Tensor, cap: int,
    num_threads: int | None,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """:func:`nonnegative_qp` with the compiled solver, flagged problems re-solved in torch."""
    from . import nnk_compiled

    def compiled_solve() -> dict:
        gram64 = np.ascontiguousarray(gram.detach().numpy(), dtype=np.float64)
        linear64 = np.ascontiguousarray(linear.detach().numpy(), dtype=np.float64)
        with numba_threads_for(num_threads):
            theta, residual, iterations, status = nnk_compiled.solve_batch(
                gram64, linear64, np.ascontiguousarray(tol.numpy()), cap)
        return {"theta": theta, "residual": residual, "status": status,
                "n_iterations": int(iterations.max()) if len(linear64) else 0}

    def torch_solve(problems: torch.Tensor) -> dict:
        with torch_threads_for(num_threads):
            theta, residual, n_iter = _active_set(gram[problems], linear[problems],
                                                  tol[problems], cap)
        return {"theta": theta, "residual": residual, "n_iterations": n_iter}

    solved = solve_with_fallback(compiled_solve, torch_solve)
    theta = torch.from_numpy(solved["theta"]).to(gram.dtype)
    residual = torch.from_numpy(solved["residual"]).to(gram.dtype)
    return theta, residual, solved["n_iterations"]


def _active_set(
    gram: torch.Tensor, linear: torch.Tensor, tol: torch.Tensor, cap: int
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The loop of :func:`nonnegative_qp` on validated inputs (``tol`` one per problem)."""
    batch, m = linear.shape
    tol_sub = tol.to(device=gram.device, dtype=gram.dtype)

    theta = torch.zeros_like(linear)
    # Working set: the problems not finished yet, compacted as they finish.
    todo = torch.arange(batch, device=gram.device)
    g_sub, c_sub = gram, linear
    # Start from theta = 0 with an empty passive set, as the compiled solver does: with a
    # tolerance above zero the support found depends on the path, and one path (Lawson-Hanson
    # from zero) makes the two solvers return the same neighbours.
    p_sub = torch.zeros_like(linear, dtype=torch.bool)
    t_sub = torch.zeros_like(linear)
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
        grad = torch.bmm(g_sub, t_sub[:, :, None])[:, :, 0] - c_sub
        off_support = torch.where(p_sub, torch.full_like(grad, -math.inf), -grad)
        worst_value, worst_index = off_support.max(dim=1)
        finished = accept & (worst_value <= tol_sub)
        grow = (accept & ~finished).nonzero().squeeze(1)
        p_sub[grow, worst_index[grow]] = True

        # (b) move from the feasible theta towards z until a coordinate hits zero.
        step_rows = blocked.nonzero().squeeze(1)
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
            p_sub, t_sub = p_sub[live], t_sub[live]
            tol_sub = tol_sub[live]

    grad = torch.bmm(gram, theta[:, :, None])[:, :, 0] - linear
    support = theta > 0
    residual = torch.where(support, grad.abs(), (-grad).clamp(min=0.0)).amax(dim=1)
    return theta, residual, n_iter




def solve_with_fallback(
    compiled_solve: Callable[[], dict], torch_solve: Callable[[torch.Tensor], dict]
) -> dict:
    """Run the compiled solver, then re-solve the problems it flags with the torch solver.

    Parameters
    ----------
    compiled_solve : callable () -> dict
        Solves every problem; returns NumPy arrays with one row per problem, an int
        ``"n_iterations"`` and an int array ``"status"`` (:data:`COMPILED_OK` where solved).
    torch_solve : callable (problems: torch.Tensor of int64) -> dict
        Solves the given problems; returns the same keys as ``compiled_solve`` (tensors, one row
        per given problem) except ``"status"``.

    Returns
    -------
    dict
        ``compiled_solve``'s arrays (dtypes kept) with the flagged rows replaced, and
        ``"n_iterations"`` the larger of the two solvers' counts; ``"status"`` removed.
    """
    solved = compiled_solve()
    failed = np.flatnonzero(solved.pop("status") != COMPILED_OK)
    if failed.size:  # near-singular matrix or KKT not met: the torch solver adds jitter
        retry = torch_solve(torch.from_numpy(failed))
        for name, values in retry.items():
            if name == "n_iterations":
                solved[name] = max(solved[name], values)
            else:
                solved[name][failed] = values.cpu().numpy().astype(solved[name].dtype)
    return solved
