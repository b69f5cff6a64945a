"""The kernels of the NNK graph, their bandwidth rule and the reconstruction error: one definition.

Both kernels have ``K(x, x) = 1`` and are written as functions of the squared Euclidean
distance ``d2 = ||x - y||^2`` in the space the kernel uses (see :func:`kernel_space`):

- ``"gaussian"``: ``exp(-d2 / (2 sigma^2))`` on the raw rows, with the default bandwidth
  :func:`gaussian_bandwidth` (mean distance to the k-th neighbour / 3, the NNK reference default);
- ``"cosine"``: ``((1 + cos(x, y)) / 2) ** power`` on L2-normalised rows, where
  ``cos = 1 - d2 / 2``, so the kernel is ``(1 - d2 / 4) ** power`` (clipped at 0).

The kernel-space reconstruction error of a point ``x_i`` from candidates ``x_j`` with weights
``theta`` is ``||phi(x_i) - sum_j theta_j phi(x_j)||^2 = 1 - 2 K_Si^T theta + theta^T K_SS theta``
(:func:`reconstruction_error`).

Scale: both kernels are dimensionless (``K(x, x) = 1``), so everything downstream of the kernel
matrices (the QP and its tolerances) is free of the features' units. What depends on the units
is formed here and in :mod:`sslgeom.neighbors` on features divided by an exact power of two
(:func:`power_of_two_floor`), so that ``X`` and ``c X`` (``c`` a power of two) give bit-identical
inputs and no squared norm over- or underflows: :func:`kernel_space` divides each row by its
own power of two before normalising it, and the Gaussian graph divides the whole matrix by one.

Every function takes NumPy arrays or torch tensors and computes in the type and dtype it is
given, so the graph code (torch), the metrics (NumPy) and the grouped solver share one formula.
The compiled per-node stage (:mod:`sslgeom.nnk_compiled`) keeps its own scalar loop for speed;
``tests/test_kernels.py`` checks that it equals these definitions.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

KernelName = Literal["cosine", "gaussian"]
KERNELS: tuple[str, ...] = ("cosine", "gaussian")

Array = np.ndarray | torch.Tensor


def kernel_from_sq_distances(sq_distances, kernel: str, params: dict):
    """Kernel values from squared distances in the kernel's space.

    Parameters
    ----------
    sq_distances : np.ndarray, torch.Tensor or float, any shape
        ``||x - y||^2`` between the rows the kernel compares (L2-normalised rows for the
        cosine kernel).
    kernel : {"cosine", "gaussian"}
    params : dict
        ``{"sigma": float or array}`` for the Gaussian kernel (an array must broadcast against
        ``sq_distances``, e.g. one bandwidth per cloud), ``{"power": float}`` for the cosine one.

    Returns
    -------
    Same type and shape as ``sq_distances``
        ``exp(-d2 / (2 sigma^2))`` or ``max(1 - d2 / 4, 0) ** power``.
    """
    if kernel == "gaussian":
        scaled = -sq_distances / (2.0 * params["sigma"] ** 2)
        return torch.exp(scaled) if isinstance(scaled, torch.Tensor) else np.exp(scaled)
    if kernel != "cosine":
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {KERNELS}.")
    # unit vectors: cos = 1 - ||x - y||^2 / 2, so (1 + cos) / 2 = 1 - ||x - y||^2 / 4
    half_cos = 1.0 - sq_distances / 4.0
    if isinstance(half_cos, torch.Tensor):
        return half_cos.clamp(min=0.0) ** params["power"]
    return np.clip(half_cos, 0.0, None) ** params["power"]


def gaussian_bandwidth(sq_distances):
    """Default Gaussian bandwidth: mean distance to the k-th neighbour divided by 3.

    Parameters
    ----------
    sq_distances : np.ndarray or torch.Tensor, shape (..., n_points, k)
        Squared distances of each point to its ``k`` nearest neighbours, nearest first; leading
        axes are independent clouds (one bandwidth each).

    Returns
    -------
    float or np.ndarray of shape (...)
        ``sigma`` in float64 (the mean is taken in the input's dtype, the division in float64).

    Raises
    ------
    ValueError
        If a bandwidth is 0 (every point of a cloud coincides with its k-th neighbour).
    """
    if isinstance(sq_distances, torch.Tensor):
        mean_kth = torch.sqrt(sq_distances[..., -1]).mean(dim=-1).cpu().numpy()
    else:
        mean_kth = np.sqrt(sq_distances[..., -1]).mean(axis=-1)
    sigma = np.asarray(mean_kth, dtype=np.float64) / 3.0
    if np.any(sigma <= 0):
        raise ValueError(
            "all points coincide with their k-th neighbour, so the default Gaussian bandwidth "
            "is 0; deduplicate the data, raise k, or pass sigma explicitly."
        )
    return float(sigma) if sigma.ndim == 0 else sigma


def neighbourhood_scale(kernel_values):
    """Each node's kernel scale, ``mean_j (1 - K_ij)`` over its candidates.

    ``1 - K_ij = ||phi(x_i) - phi(x_j)||^2 / 2`` for kernels with unit diagonal, so this is half
    the node's mean squared distance to its candidates in the kernel's feature space. The NNK
    graph measures its KKT tolerance and its duplicate ridge in this unit, per node
    (:func:`sslgeom.qp.node_kkt_tol`), so that neither depends on how concentrated the
    features are.

    Parameters
    ----------
    kernel_values : np.ndarray or torch.Tensor, shape (n_nodes, k)
        ``K_Si`` of each node.

    Returns
    -------
    np.ndarray or torch.Tensor, shape (n_nodes,)
        Float64.
    """
    if isinstance(kernel_values, torch.Tensor):
        return (1.0 - kernel_values.to(torch.float64)).mean(dim=1)
    return (1.0 - np.asarray(kernel_values, dtype=np.float64)).mean(axis=1)


def reconstruction_error(gram, linear, weights, ridge=0.0):
    """Kernel-space reconstruction error of each point from its weighted candidates.

    ``||phi(x_i) - sum_j w_ij phi(x_j)||^2 = 1 - 2 K_Si^T w + w^T (K_SS - ridge I) w``, clipped
    at 0 (``K(x_i, x_i) = 1`` for both kernels).

    Parameters
    ----------
    gram : np.ndarray or torch.Tensor, shape (n_points, k, k)
        ``K_SS`` of each point (with ``ridge`` on the diagonal if the solve used one).
    linear : same type, shape (n_points, k)
        ``K_Si`` of each point.
    weights : same type, shape (n_points, k)
        Reconstruction weights (NNK weights, or kNN kernel-weighted averages).
    ridge : float or array of shape (n_points,)
        Diagonal ridge contained in ``gram`` (one for all points or one per point); removed so
        that the error is that of the kernel.

    Returns
    -------
    Same type, shape (n_points,)
    """
    if isinstance(gram, torch.Tensor):
        ridge = torch.as_tensor(ridge, dtype=gram.dtype, device=gram.device)
        ridge = ridge[:, None] if ridge.ndim == 1 else ridge
        quad = torch.bmm(gram, weights[:, :, None])[:, :, 0] - ridge * weights
        return (1.0 - 2.0 * (linear * weights).sum(1) + (weights * quad).sum(1)).clamp(min=0.0)
    ridge = np.asarray(ridge, dtype=np.float64)
    ridge = ridge[:, None] if ridge.ndim == 1 else ridge
    quad = np.einsum("bij,bj->bi", gram, weights) - ridge * weights
    return np.clip(1.0 - 2.0 * (linear * weights).sum(1) + (weights * quad).sum(1), 0.0, None)


def kernel_space(points, kernel: str):
    """The rows the kernel compares: L2-normalised for the cosine kernel, unchanged otherwise.

    Parameters
    ----------
    points : np.ndarray or torch.Tensor, shape (..., dim)
        Floating rows (any leading axes, e.g. ``(n_clouds, n_points, dim)``).
    kernel : {"cosine", "gaussian"}

    Returns
    -------
    Same type, dtype and shape as ``points``.
        For the cosine kernel, ``x / ||x||`` computed as ``y / ||y||`` with
        ``y = x / 2**floor(log2(max_j |x_j|))`` (exact division by a power of two), so the result
        is the same, bit for bit, for ``x`` and ``c x`` (``c > 0`` a power of two) and the squared
        norm cannot over- or underflow (``||y||`` lies in ``[1, 2 sqrt(dim))``).

    Raises
    ------
    ValueError
        A zero row with the cosine kernel (its cosine similarity is undefined). The test is
        exact: a row is zero when all its entries are 0, whatever the scale of the others
        (a row of ``1e-30`` in float32 is a direction, not a zero).
    """
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {KERNELS}.")
    if kernel != "cosine":
        return points
    if isinstance(points, torch.Tensor):
        row_max = points.abs().amax(dim=-1, keepdim=True)
        prescaled = points / power_of_two_floor(row_max)
        norms = torch.linalg.vector_norm(prescaled, dim=-1, keepdim=True)
    else:
        row_max = np.abs(points).max(axis=-1, keepdims=True)
        prescaled = points / power_of_two_floor(row_max)
        norms = np.linalg.norm(prescaled, axis=-1, keepdims=True)
    # after the prescaling a non-zero row has norm >= 1, so "zero" is exact, not a threshold
    zero = norms == 0
    if bool(zero.any()):
        raise ValueError(
            f"{int(zero.sum())} feature vector(s) are zero, so their cosine similarity is "
            "undefined; drop them or use kernel='gaussian'."
        )
    return prescaled / norms


def power_of_two_floor(values):
    """The largest power of two not above each value, exactly (1 where the value is 0).

    Dividing by such a power is exact in binary floating point (unless the quotient is
    subnormal), so it normalises a scale without changing any digit: ``x / power_of_two_floor(m)``
    is the same for ``x, m`` and ``c x, c m`` whenever ``c`` is a power of two.

    Parameters
    ----------
    values : np.ndarray or torch.Tensor, any shape
        Non-negative finite floating values (e.g. the largest ``|x|`` of each row).

    Returns
    -------
    Same type, dtype and shape
        ``2 ** floor(log2(v))`` in the values' own dtype; computed as ``v / (2 m)`` with ``m``
        the binary mantissa of ``v`` (``frexp``), an exact quotient, so it is representable
        (possibly subnormal) and never rounded.
    """
    if isinstance(values, torch.Tensor):
        safe = torch.where(values > 0, values, torch.ones_like(values))
        mantissa, _ = torch.frexp(safe)
    else:
        values = np.asarray(values)
        safe = np.where(values > 0, values, np.ones_like(values))
        mantissa, _ = np.frexp(safe)
    return safe / (2 * mantissa)


def unit_diagonal(gram, ridge=0.0):
    """``K_SS`` with its diagonal set to exactly ``1 + ridge``.

    ``K(x, x) = 1`` for both kernels; kernel matrices built from the squared-distance expansion
    carry rounding noise there instead, and a ridge makes repeated candidates solvable.

    Parameters
    ----------
    gram : np.ndarray or torch.Tensor, shape (..., k, k)
    ridge : float or array of shape (...)
        One ridge for every matrix, or one per matrix.

    Returns
    -------
    Same type, dtype and shape.
    """
    k = gram.shape[-1]
    if isinstance(gram, torch.Tensor):
        eye = torch.eye(k, dtype=gram.dtype, device=gram.device)
        ridge = torch.as_tensor(ridge, dtype=gram.dtype, device=gram.device)
    else:
        eye = np.eye(k)
        ridge = np.asarray(ridge, dtype=np.float64)
    return gram * (1.0 - eye) + eye * (1.0 + ridge[..., None, None])


def kernel_ratio_agreement(points, neighbors, kept, kernel_values, kernel: str, params: dict) -> float:
    """Fraction of pairs of kept NNK neighbours that satisfy the kernel ratio interval.

    For a node ``i`` and two kept neighbours ``j, l`` the interval reads
    ``K_jl < K_ij / K_il < 1 / K_jl``. It is exact for two candidates (NNK keeps both if and
    only if it holds); among many candidates it is a pairwise condition that need not hold for
    every kept pair, which is what this fraction measures.

    Parameters
    ----------
    points : np.ndarray, shape (n_points, dim)
        The points the graph was built on (raw rows; mapped with :func:`kernel_space`).
    neighbors : np.ndarray, shape (n_points, k)
        Candidate neighbours of each node.
    kept : np.ndarray of bool, shape (n_points, k)
        Which candidates NNK kept (non-zero weight).
    kernel_values : np.ndarray, shape (n_points, k)
        ``K(x_i, x_j)`` for each candidate.
    kernel : {"cosine", "gaussian"}
    params : dict
        The kernel's parameters, as stored by the graph (``NNKResult.kernel_params``).

    Returns
    -------
    float
        In [0, 1]; NaN when no node keeps two neighbours.
    """
    space = np.asarray(kernel_space(np.asarray(points, dtype=np.float64), kernel))
    agree = total = 0
    for node in range(len(neighbors)):
        chosen = np.asarray(neighbors[node])[np.asarray(kept[node])]
        values = np.asarray(kernel_values[node])[np.asarray(kept[node])]
        first, second = np.triu_indices(len(chosen), k=1)
        if not len(first):
            continue
        gaps = np.sum((space[chosen[first]] - space[chosen[second]]) ** 2, axis=1)
        between = kernel_from_sq_distances(gaps, kernel, params)
        ratio = values[first] / values[second]
        agree += int(np.sum((between < ratio) & (ratio < 1.0 / between)))
        total += len(first)
    return agree / total if total else float("nan")


def shadowed_candidates(points, neighbors, kept, kernel_values, kernel: str, params: dict) -> np.ndarray:
    """Which pruned candidates the two-candidate rule prunes next to some kept neighbour.

    With only two candidates ``j, l`` of ``x_i``, NNK prunes ``j`` if and only if
    ``K_ij <= K_jl K_il`` (the kernel ratio interval fails on ``j``'s side); for the Gaussian kernel
    this says that ``x_j`` lies behind the hyperplane through ``x_l`` orthogonal to ``x_i - x_l``
    (``x_l``'s "shadow"). With many candidates NNK's pruning is not this pairwise rule, so a pruned
    candidate need not lie in the shadow of any kept one; this function says where it does.

    Parameters
    ----------
    points, neighbors, kept, kernel_values, kernel, params
        As in :func:`kernel_ratio_agreement`: the graph's points, its candidates, which of them
        NNK kept, their kernel values and the kernel with its parameters.

    Returns
    -------
    np.ndarray of bool, shape (n_points, k)
        True for a pruned candidate ``j`` of node ``i`` with a kept ``l`` such that
        ``K_ij <= K_jl K_il``; False for kept candidates and for pruned ones in no shadow.
    """
    space = np.asarray(kernel_space(np.asarray(points, dtype=np.float64), kernel))
    neighbors, kept = np.asarray(neighbors), np.asarray(kept, dtype=bool)
    values = np.asarray(kernel_values, dtype=np.float64)
    shadowed = np.zeros(kept.shape, dtype=bool)
    for node in range(len(neighbors)):
        kept_slots, pruned_slots = np.flatnonzero(kept[node]), np.flatnonzero(~kept[node])
        if not len(kept_slots) or not len(pruned_slots):
            continue
        pruned_points = space[neighbors[node, pruned_slots]]
        kept_points = space[neighbors[node, kept_slots]]
        gaps = ((pruned_points[:, None, :] - kept_points[None, :, :]) ** 2).sum(-1)
        between = kernel_from_sq_distances(gaps, kernel, params)  # K_jl, (pruned, kept)
        behind = values[node][pruned_slots][:, None] <= between * values[node][kept_slots][None, :]
        shadowed[node, pruned_slots] = behind.any(axis=1)
    return shadowed


def optimal_reconstruction_errors(gram, linear) -> tuple[np.ndarray, np.ndarray]:
    """Smallest kernel-space reconstruction errors from given candidates: free and simplex weights.

    For each node, ``e(theta) = 1 - 2 K_Si^T theta + theta^T K_SS theta`` (:func:`reconstruction_error`)
    minimised over all ``theta`` (unconstrained) and over the simplex (``theta >= 0``,
    ``sum theta = 1``). They bound the NNK error of the same candidates, which minimises ``e`` over
    ``theta >= 0``: each minimises the same error over a smaller set, so

    ``unconstrained <= NNK <= simplex <= e(any simplex weights)``,

    the last being for instance the kNN baseline's kernel-weighted average
    ``theta_j = K_ij / sum_l K_il``.

    Parameters
    ----------
    gram : np.ndarray, shape (n_nodes, k, k)
        ``K_SS`` of each node (positive semi-definite).
    linear : np.ndarray, shape (n_nodes, k)
        ``K_Si`` of each node.

    Returns
    -------
    unconstrained : np.ndarray, shape (n_nodes,)
        Least-squares minimum (``theta`` from ``numpy.linalg.lstsq``, which is a minimiser also
        when ``K_SS`` is singular, since ``K_Si`` lies in its range).
    simplex : np.ndarray, shape (n_nodes,)
        Minimum over the simplex, by ``scipy.optimize.minimize`` (SLSQP, ``ftol`` 1e-15) from the
        uniform weights; a few milliseconds per node, meant for tens to hundreds of nodes.

    Raises
    ------
    RuntimeError
        If SLSQP does not converge for a node.
    """
    from scipy.optimize import minimize  # imported here: scipy.optimize is slow to import

    gram = np.asarray(gram, dtype=np.float64)
    linear = np.asarray(linear, dtype=np.float64)
    if gram.ndim != 3 or gram.shape[1] != gram.shape[2] or linear.shape != gram.shape[:2]:
        raise ValueError(f"gram must have shape (n_nodes, k, k) and linear (n_nodes, k); got "
                         f"{gram.shape} and {linear.shape}.")
    n_nodes, k = linear.shape
    free = np.stack([np.linalg.lstsq(gram[i], linear[i], rcond=None)[0] for i in range(n_nodes)])
    simplex = np.empty((n_nodes, k))
    constraint = {"type": "eq", "fun": lambda t: t.sum() - 1.0, "jac": lambda t: np.ones_like(t)}
    for i in range(n_nodes):
        g, b = gram[i], linear[i]
        fit = minimize(lambda t: t @ g @ t - 2.0 * b @ t, np.full(k, 1.0 / k),
                       jac=lambda t: 2.0 * (g @ t - b), method="SLSQP", bounds=[(0.0, None)] * k,
                       constraints=[constraint], options={"ftol": 1e-15, "maxiter": 1000})
        if not fit.success:
            raise RuntimeError(f"SLSQP did not converge on node {i}: {fit.message}")
        simplex[i] = np.clip(fit.x, 0.0, None) / np.clip(fit.x, 0.0, None).sum()
    return reconstruction_error(gram, linear, free), reconstruction_error(gram, linear, simplex)
