"""Compiled (numba) per-node stage of the NNK graph: kernel matrices and exact solves.

:mod:`sslgeom.nnk` finds the candidates; this module does the rest, one node at a time, with
the nodes spread over CPU threads (``numba.prange``). Per node: copy the ``k`` candidate rows
into a small buffer (it stays in cache), form their inner products in register tiles, turn
them into the kernel matrix ``K_SS`` and vector ``K_Si``, and solve

    min_{theta >= 0}  1/2 theta^T K_SS theta - K_Si^T theta

exactly with the Lawson-Hanson active-set method (Lawson and Hanson, *Solving Least Squares
Problems*, 1974, ch. 23), written for the quadratic form. The Cholesky factor of the passive
block grows by one row when a coordinate enters (``O(p^2)``) and is refactorised only when one
leaves, which is rare. The solve runs in float64 whatever the dtype of the features.

Every node reports whether it succeeded: a node whose passive block is numerically singular
(near-duplicate candidates), or which exceeds the iteration cap, or whose final KKT residual is
above the tolerance, is flagged, and :func:`sslgeom.nnk.nnk_graph` re-solves the flagged nodes
with the batched torch solver, which adds the smallest jitter that works.

Why compiled: the per-node problems are tiny (``k x k`` with ``k`` about 50), so batched
tensor code spends its time on memory traffic (gathering ``n * k`` rows) and on masking; a
per-node loop in compiled code keeps each problem in cache. Measured in ``benchmarks/nnk.py``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# Status codes of a node (see module docstring).
OK = 0
SINGULAR = 1
NOT_CONVERGED = 2
KKT_FAILED = 3

COSINE = 0
GAUSSIAN = 1

# Reassociation and contraction let loops vectorise; NaN/inf semantics are kept.
_SAFE_FAST = {"reassoc", "contract", "nsz"}


@njit(cache=True, nogil=True, fastmath=_SAFE_FAST)
def _refactor(gram, passive, n_passive, chol):
    """Cholesky factor of ``gram[passive, passive]`` into ``chol[:p, :p]``; False if singular."""
    for a in range(n_passive):
        row = passive[a]
        for b in range(a + 1):
            total = gram[row, passive[b]]
            for c in range(b):
                total -= chol[a, c] * chol[b, c]
            if a == b:
                if total <= 1e-12 * gram[row, row]:
                    return False
                chol[a, a] = np.sqrt(total)
            else:
                chol[a, b] = total / chol[b, b]
    return True


@njit(cache=True, nogil=True, fastmath=_SAFE_FAST)
def _append(gram, passive, n_passive, chol):
    """Grow the factor by the row of ``passive[n_passive]`` (already stored); False if singular."""
    new = passive[n_passive]
    squared = gram[new, new]
    for a in range(n_passive):
        total = gram[new, passive[a]]
        for c in range(a):
            total -= chol[n_passive, c] * chol[a, c]
        value = total / chol[a, a]
        chol[n_passive, a] = value
        squared -= value * value
    if squared <= 1e-12 * gram[new, new]:
        return False
    chol[n_passive, n_passive] = np.sqrt(squared)
    return True


@njit(cache=True, nogil=True, fastmath=_SAFE_FAST)
def _solve_passive(chol, passive, n_passive, linear, z):
    """``z[:p] = gram[P, P]^{-1} linear[P]`` from the factor (two triangular solves)."""
    for a in range(n_passive):
        total = linear[passive[a]]
        for c in range(a):
            total -= chol[a, c] * z[c]
        z[a] = total / chol[a, a]
    # L^T z = y, column by column: row a of L is contiguous
    for a in range(n_passive - 1, -1, -1):
        z[a] /= chol[a, a]
        value = z[a]
        for c in range(a):
            z[c] -= chol[a, c] * value


@njit(cache=True, nogil=True, fastmath=_SAFE_FAST)
def _residual(gram, linear, theta):
    """KKT residual ``max(max_{theta_j > 0} |g_j|, max_{theta_j = 0} -g_j)``, ``g = G theta - c``."""
    m = linear.shape[0]
    gradient = -linear.copy()
    for i in range(m):
        if theta[i] > 0.0:
            weight = theta[i]
            for j in range(m):  # G is symmetric: add theta_i * row i
                gradient[j] += weight * gram[i, j]
    worst = 0.0
    for j in range(m):
        value = abs(gradient[j]) if theta[j] > 0.0 else -gradient[j]
        if value > worst:
            worst = value
    return worst


@njit(cache=True, nogil=True)
def _ratio(current, target):
    """Fraction of the way from ``current >= 0`` to ``target <= 0`` where zero is crossed."""
    gap = current - target
    return current / gap if gap > 0.0 else 0.0


@njit(cache=True, nogil=True, fastmath=_SAFE_FAST)
def solve_one(gram, linear, tol, max_iter, theta, work_chol, work_z, work_descent, work_passive,
              work_in):
    """Lawson-Hanson on ``min_{theta >= 0} 1/2 theta^T G theta - c^T theta`` for one problem.

    Parameters
    ----------
    gram : float64 array (m, m), symmetric positive definite
    linear : float64 array (m,)
    tol : float
        Stop when no coordinate at zero has negative gradient below ``-tol``.
    max_iter : int
        Cap on the number of coordinates added.
    theta : float64 array (m,)
        Output, overwritten.
    work_chol, work_z, work_descent, work_passive, work_in
        Scratch arrays ``(m, m)``, ``(m,)``, ``(m,)``, int64 ``(m,)``, bool ``(m,)``.

    Returns
    -------
    status : int
        :data:`OK`, :data:`SINGULAR` or :data:`NOT_CONVERGED`.
    iterations : int
        Coordinates added.
    """
    m = linear.shape[0]
    for j in range(m):
        theta[j] = 0.0
        work_in[j] = False
    n_passive = 0
    iterations = 0
    while True:
        # the coordinate at zero with the most negative gradient g_j = (G theta - c)_j
        # (G symmetric: subtract theta_i times row i, contiguous, for i in the passive set)
        for j in range(m):
            work_descent[j] = linear[j]
        for a in range(n_passive):
            i = work_passive[a]
            weight = theta[i]
            for j in range(m):
                work_descent[j] -= weight * gram[i, j]
        best = -1
        best_value = tol
        for j in range(m):
            if not work_in[j] and work_descent[j] > best_value:
                best_value = work_descent[j]
                best = j
        if best < 0:
            return OK, iterations
        if iterations >= max_iter:
            return NOT_CONVERGED, iterations
        iterations += 1
        work_passive[n_passive] = best
        if not _append(gram, work_passive, n_passive, work_chol):
            return SINGULAR, iterations
        work_in[best] = True
        n_passive += 1
        while True:
            _solve_passive(work_chol, work_passive, n_passive, linear, work_z)
            # step from theta towards z, stopping where the first coordinate reaches zero
            alpha = 1.0
            blocked = False
            for a in range(n_passive):
                if work_z[a] <= 0.0:
                    ratio = _ratio(theta[work_passive[a]], work_z[a])
                    if not blocked or ratio < alpha:
                        alpha = ratio
                    blocked = True
            if not blocked:
                for a in range(n_passive):
                    theta[work_passive[a]] = work_z[a]
                break
            if alpha > 1.0:
                alpha = 1.0
            kept = 0
            for a in range(n_passive):
                i = work_passive[a]
                value = theta[i] + alpha * (work_z[a] - theta[i])
                # the blocking coordinates (z <= 0 and ratio == alpha) land on zero
                if value <= 0.0 or (work_z[a] <= 0.0 and _ratio(theta[i], work_z[a]) <= alpha):
                    theta[i] = 0.0
                    work_in[i] = False
                else:
                    theta[i] = value
                    work_passive[kept] = i
                    kept += 1
            if kept == n_passive:  # cannot happen in exact arithmetic; guard against a stall
                return NOT_CONVERGED, iterations
            n_passive = kept
            if n_passive == 0:
                break
            if not _refactor(gram, work_passive, n_passive, work_chol):
                return SINGULAR, iterations


@njit(cache=True, parallel=True)
def solve_batch(gram, linear, tol, max_iter):
    """:func:`solve_one` for every problem of a batch, in parallel.

    Parameters
    ----------
    gram : float64 array (batch, m, m)
    linear : float64 array (batch, m)
    tol : float64 array (batch,)
        KKT tolerance of each problem.
    max_iter : int

    Returns
    -------
    theta : float64 array (batch, m)
    residual : float64 array (batch,)
    iterations : int64 array (batch,)
    status : int64 array (batch,)
        :data:`KKT_FAILED` where the residual exceeds the problem's tolerance.
    """
    batch, m = linear.shape
    theta = np.zeros((batch, m))
    residual = np.zeros(batch)
    iterations = np.zeros(batch, dtype=np.int64)
    status = np.zeros(batch, dtype=np.int64)
    for node in prange(batch):
        chol = np.empty((m, m))
        z = np.empty(m)
        passive = np.empty(m, dtype=np.int64)
        inside = np.empty(m, dtype=np.bool_)
        code, count = solve_one(gram[node], linear[node], tol[node], max_iter, theta[node], chol,
                                z, np.empty(m), passive, inside)
        iterations[node] = count
        residual[node] = _residual(gram[node], linear[node], theta[node])
        if code == OK and residual[node] > tol[node]:
            code = KKT_FAILED
        status[node] = code
    return theta, residual, iterations, status


@njit(cache=True, nogil=True)
def padded_rows(k: int) -> int:
    """Rows of the per-node buffer: ``k`` candidates and the node, rounded up to 4 (tiles)."""
    return -(-(k + 1) // 4) * 4


@njit(cache=True, nogil=True, fastmath=True)
def _pair_sq_distances(points, neighbors, node, rows, sq):
    """Squared distances among ``node``'s candidates and from ``node`` to them.

    The candidate rows, then the node's row, are copied into ``rows`` (shape
    ``(padded_rows(k), dim)``, zero-padded; contiguous, so they stay in cache). ``sq[a, b]`` for
    ``b <= a`` receives ``||rows[a] - rows[b]||^2``, so row ``k`` holds the node's distances.
    Tiles of 2 x 4 rows keep eight sums in registers per pass over ``dim``; ``fastmath`` lets the
    compiler vectorise those sums (reassociation only). The distances are summed from the
    differences, not from ``||a||^2 + ||b||^2 - 2 a.b``: for near neighbours that expansion
    cancels almost completely, and in float32 it left the kernel distances ``1 - K_ij`` of
    concentrated features (about 1e-6) with errors of several percent, which is what decides the
    NNK support there. Summed differences are accurate to a few float32 ulps of the distance
    itself, at the speed of the inner products.
    """
    n_rows, dim = rows.shape
    k = neighbors.shape[1]
    for a in range(n_rows):
        if a < k:
            source = points[neighbors[node, a]]
        elif a == k:
            source = points[node]
        else:
            for d in range(dim):
                rows[a, d] = 0.0
            continue
        for d in range(dim):
            rows[a, d] = source[d]
    zero = rows[0, 0] - rows[0, 0]
    for a in range(0, n_rows, 2):
        for b in range(0, a + 2, 4):
            s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = zero
            for d in range(dim):
                x0 = rows[a, d]
                x1 = rows[a + 1, d]
                y0 = rows[b, d]
                y1 = rows[b + 1, d]
                y2 = rows[b + 2, d]
                y3 = rows[b + 3, d]
                s00 += (x0 - y0) * (x0 - y0)
                s01 += (x0 - y1) * (x0 - y1)
                s02 += (x0 - y2) * (x0 - y2)
                s03 += (x0 - y3) * (x0 - y3)
                s10 += (x1 - y0) * (x1 - y0)
                s11 += (x1 - y1) * (x1 - y1)
                s12 += (x1 - y2) * (x1 - y2)
                s13 += (x1 - y3) * (x1 - y3)
            sq[a, b], sq[a, b + 1], sq[a, b + 2], sq[a, b + 3] = s00, s01, s02, s03
            sq[a + 1, b], sq[a + 1, b + 1] = s10, s11
            sq[a + 1, b + 2], sq[a + 1, b + 3] = s12, s13


@njit(cache=True, nogil=True)
def _kernel(sq_distance, kernel, param):
    """:func:`sslgeom.kernels.kernel_from_sq_distances` for one value (tested equal to it).

    ``value ** 1.0`` is ``value`` exactly, so the default cosine kernel skips the ``pow`` call
    (which cost as much as the per-node inner products).
    """
    if kernel == GAUSSIAN:
        return np.exp(-sq_distance / (2.0 * param * param))
    value = 1.0 - sq_distance / 4.0
    if value <= 0.0:
        return 0.0
    if param == 1.0:
        return value
    return value**param


@njit(cache=True, nogil=True)
def _node_kernels(k, sq, kernel, param, gram, linear, sq_out):
    """``K_SS`` (``1`` on the diagonal), ``K_Si`` and squared distances of one node.

    ``sq`` holds the squared distances of :func:`_pair_sq_distances`; ``gram`` (k, k), ``linear``
    (k,) and ``sq_out`` (k,) are overwritten. The diagonal is ``K(x, x) = 1`` for both kernels
    (as :func:`sslgeom.kernels.unit_diagonal`); the caller adds the node's ridge.
    """
    for a in range(k):
        node_sq = float(sq[k, a])
        sq_out[a] = node_sq
        linear[a] = _kernel(node_sq, kernel, param)
        gram[a, a] = 1.0
        for b in range(a):
            gram[a, b] = _kernel(float(sq[a, b]), kernel, param)
    for a in range(k):  # upper triangle from the lower one, row by row
        for b in range(a + 1, k):
            gram[a, b] = gram[b, a]


@njit(cache=True, nogil=True)
def _reconstruction_error(gram, linear, theta, ridge):
    """:func:`sslgeom.kernels.reconstruction_error` of one node, summed over the support."""
    k = linear.shape[0]
    error = 1.0
    for a in range(k):
        if theta[a] > 0.0:
            error -= 2.0 * linear[a] * theta[a]
            for b in range(k):
                if theta[b] > 0.0:
                    error += theta[a] * (gram[a, b] - (ridge if a == b else 0.0)) * theta[b]
    return max(error, 0.0)


@njit(cache=True, parallel=True)
def nnk_nodes(points, neighbors, start, stop, kernel, param, ridge, relative_tol, floor, max_iter):
    """Kernel matrices and exact NNK weights of nodes ``start .. stop - 1``, in parallel.

    Parameters
    ----------
    points : float32 or float64 array (n_points, dim), C-contiguous
        Features in the kernel's space (L2-normalised rows for the cosine kernel).
    neighbors : int64 array (n_points, k)
        Candidates of each node.
    start, stop : int
        The nodes to solve (a chunk, so that callers can show progress).
    kernel : int
        :data:`COSINE` (``param`` = power) or :data:`GAUSSIAN` (``param`` = sigma).
    param : float
    ridge : float
        Relative ridge: ``ridge * mean_j (1 - K_ij)`` is added to the diagonal of the node's
        ``K_SS``.
    relative_tol, floor : float
        Each node's KKT tolerance is ``max(relative_tol * mean_j (1 - K_ij), floor)``, the
        definition of :func:`sslgeom.qp.node_kkt_tol` (this loop is tested equal to it).
    max_iter : int

    Returns
    -------
    Arrays over the ``n_nodes = stop - start`` nodes:
    weights : float64 (n_nodes, k)
    errors : float64 (n_nodes,)
        ``1 - 2 K_Si^T theta + theta^T K_SS theta`` (``K_SS`` without the ridge), clipped at 0.
    residual : float64 (n_nodes,)
    kernel_values : float64 (n_nodes, k)
    sq_distances : float64 (n_nodes, k)
    iterations : int64 (n_nodes,)
    status : int64 (n_nodes,)
    tolerances : float64 (n_nodes,)
        The KKT tolerance each node was solved to.
    """
    n_points, dim = points.shape
    n_nodes = stop - start
    k = neighbors.shape[1]
    n_rows = padded_rows(k)
    weights = np.zeros((n_nodes, k))
    errors = np.zeros(n_nodes)
    residual = np.zeros(n_nodes)
    kernel_values = np.zeros((n_nodes, k))
    sq_distances = np.zeros((n_nodes, k))
    iterations = np.zeros(n_nodes, dtype=np.int64)
    status = np.zeros(n_nodes, dtype=np.int64)
    tolerances = np.zeros(n_nodes)
    for local in prange(n_nodes):
        node = start + local
        rows = np.empty((n_rows, dim), dtype=points.dtype)
        sq = np.empty((n_rows, n_rows), dtype=points.dtype)
        _pair_sq_distances(points, neighbors, node, rows, sq)
        gram = np.empty((k, k))
        linear = kernel_values[local]
        _node_kernels(k, sq, kernel, param, gram, linear, sq_distances[local])
        chol = np.empty((k, k))
        z = np.empty(k)
        passive = np.empty(k, dtype=np.int64)
        inside = np.empty(k, dtype=np.bool_)
        # the node's scale mean_j (1 - K_ij) (sslgeom.kernels.neighbourhood_scale) sets its
        # ridge and its tolerance
        distance = 0.0
        for j in range(k):
            distance += 1.0 - linear[j]
        scale = distance / k
        node_ridge = ridge * scale
        for j in range(k):
            gram[j, j] += node_ridge
        tol = max(relative_tol * scale, floor)
        tolerances[local] = tol
        theta = weights[local]
        code, count = solve_one(gram, linear, tol, max_iter, theta, chol, z, np.empty(k), passive,
                                inside)
        iterations[local] = count
        residual[local] = _residual(gram, linear, theta)
        if code == OK and residual[local] > tol:
            code = KKT_FAILED
        status[local] = code
        errors[local] = _reconstruction_error(gram, linear, theta, node_ridge)
    return (weights, errors, residual, kernel_values, sq_distances, iterations, status,
            tolerances)
