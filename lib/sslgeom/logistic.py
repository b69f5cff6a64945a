"""The exact solver of the linear probe: L2-regularised multinomial logistic regression.

:func:`sslgeom.evaluation.linear_probe` chooses ``C`` and scores the fit; this module finds each
fit's optimum, the one of scikit-learn's ``LogisticRegression(C=C)`` (tested against it in
``tests/test_probe.py``). The pieces, in the order the probe uses them: :func:`standardiser` and
:func:`design_matrix` (standardised features and a bias column), :func:`row_space`,
:func:`in_basis`, :func:`lift` and :func:`project` (the exact reduction to the span of the training
features), :func:`fit_logistic` (preconditioned L-BFGS on :func:`loss_gradient`),
:func:`restandardise` (a warm start for the refit on train+val) and :func:`predict`.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = [
    "PROBE_GTOL",
    "ProbeConvergenceWarning",
    "standardiser",
    "design_matrix",
    "loss_gradient",
    "fit_logistic",
    "row_space",
    "in_basis",
    "lift",
    "project",
    "restandardise",
    "predict",
]


# The probe's solver. sklearn's LogisticRegression minimises C * sum_i CE_i + ||W||^2 / 2 (bias not
# penalised); dividing by C * n gives the same minimiser with an objective whose scale does not
# depend on C or n: F(W) = mean_i CE_i + ||W||^2 / (2 C n). F is minimised by L-BFGS whose initial
# inverse Hessian is the exact Hessian of F at the starting point (Cholesky-factored, refreshed
# every few dozen steps): a few tens of steps per fit, where plain L-BFGS needs thousands at large C.
# The stopping rule is on the gradient, so the preconditioner only changes the speed, not the optimum.
# Two exact reductions keep large problems (2048-d published features, many classes) tractable:
# * W lies in the row space of the standardised training features (a component of W orthogonal to
#   every x_i changes no logit but adds to the penalty), so with fewer points than dimensions the fit
#   runs on the coordinates of the features in an orthonormal basis of that row space
#   (:func:`row_space`): the same optimum, with min(n, dim) instead of dim weights per class.
# * Past _PROBE_EXACT_HESSIAN parameters the (params x params) Hessian is too big to factor (for
#   2049 x 10 parameters, 1.7 GB and ~3 TFLOP), so the preconditioner becomes the Kronecker
#   approximation H ~ B kron I with one (dim + 1)-square block B shared by all classes
#   (:func:`_kronecker_factor`): more L-BFGS steps, the same stopping rule and the same optimum.
PROBE_GTOL = 1e-8  # stop when max |dF/dW| < PROBE_GTOL (F as above)
_PROBE_MEMORY = 10  # L-BFGS correction pairs
_PROBE_REFRESH = 50  # steps between Hessian refreshes
_PROBE_EXACT_HESSIAN = 6000  # largest (dim + 1) * n_classes preconditioned by the exact Hessian


class ProbeConvergenceWarning(RuntimeWarning):
    """The probe's logistic regression stopped before its gradient reached the tolerance."""


def standardiser(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means ``(dim,)`` and scales ``(dim,)`` (std, or 1 for a constant column), as
    scikit-learn's StandardScaler."""
    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale[scale == 0] = 1.0
    return mean, scale


def design_matrix(features: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Standardised features with a trailing column of ones (the bias): ``(n, dim + 1)``."""
    standardised = (features - mean) / scale
    return np.hstack([standardised, np.ones((len(features), 1))])


def loss_gradient(
    weights: np.ndarray, design: np.ndarray, labels: np.ndarray, strength: float
) -> tuple[float, np.ndarray, np.ndarray]:
    """Objective ``F = mean cross-entropy + strength / 2 * ||W||^2`` (bias row not penalised).

    Parameters
    ----------
    weights : array, shape (dim + 1, n_classes)
        Last row is the bias.
    design : array, shape (n, dim + 1)
        From :func:`design_matrix`.
    labels : int array, shape (n,)
        Class indices in ``[0, n_classes)``.
    strength : float
        ``1 / (C n)``.

    Returns
    -------
    loss : float
    gradient : array, shape (dim + 1, n_classes)
    probabilities : array, shape (n, n_classes)
    """
    n = len(labels)
    logits = design @ weights
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    total = exp.sum(axis=1)
    probabilities = exp / total[:, None]
    cross_entropy = np.mean(np.log(total) - logits[np.arange(n), labels])
    loss = cross_entropy + 0.5 * strength * float(np.sum(weights[:-1] ** 2))
    residual = probabilities.copy()
    residual[np.arange(n), labels] -= 1.0  # probabilities - one-hot
    gradient = design.T @ residual / n
    gradient[:-1] += strength * weights[:-1]
    return float(loss), gradient, probabilities


def _hessian_factor(design: np.ndarray, probabilities: np.ndarray, strength: float):
    """Preconditioner ``q -> H^-1 q`` from the Cholesky factor (float32) of the Hessian of :func:`loss_gradient`'s objective.

    ``H = (1/n) sum_i (diag(p_i) - p_i p_i^T) kron x_i x_i^T + strength * I`` over the raveled
    weights (bias excluded from the penalty). Adding the same value to every bias leaves the
    objective unchanged, so ``H`` is singular, and float32 rounding can make it slightly
    indefinite; a small diagonal jitter makes it factorable. It only preconditions L-BFGS, whose
    line search and stopping rule use the exact float64 objective, so neither the single precision
    nor the jitter moves the optimum (they halve the cost of this step).
    """
    from scipy.linalg import LinAlgError, cho_factor, cho_solve

    n, width = design.shape
    n_classes = probabilities.shape[1]
    design32, probabilities32 = design.astype(np.float32), probabilities.astype(np.float32)
    weighted = (design32[:, :, None] * probabilities32[:, None, :]).reshape(n, width * n_classes)
    hessian = -(weighted.T @ weighted)
    for k in range(n_classes):
        hessian[k::n_classes, k::n_classes] += (design32 * probabilities32[:, k : k + 1]).T @ design32
    hessian /= n
    penalised = np.arange((width - 1) * n_classes)
    hessian[penalised, penalised] += strength
    diagonal = np.arange(len(hessian))
    jitter = 1e-6 * float(hessian.diagonal().max())
    for _ in range(8):
        try:
            shifted = hessian.copy()
            shifted[diagonal, diagonal] += jitter
            factor = cho_factor(shifted, lower=True, check_finite=False)
            return lambda q: cho_solve(factor, q.astype(np.float32), check_finite=False).astype(np.float64)
        except LinAlgError:
            jitter *= 10.0
    raise LinAlgError("the probe's Hessian is not positive definite even with jitter; are the features finite?")


def _kronecker_factor(design: np.ndarray, probabilities: np.ndarray, strength: float):
    """Preconditioner ``q -> (B kron I)^-1 q`` for problems too large for :func:`_hessian_factor`.

    The Hessian's diagonal block of class k is ``X^T diag(p_k (1 - p_k)) X / n`` (+ the penalty);
    ``B`` is that block with the class-averaged weights ``mean_k p_k (1 - p_k)``, shared by every
    class. One ``(dim + 1)``-square Cholesky factorisation instead of one of side
    ``(dim + 1) * n_classes``; it ignores the coupling between classes, which L-BFGS's correction
    pairs make up for. Raveled weights are row-major ``(dim + 1, n_classes)``, so applying the
    inverse is a solve with ``B`` on the ``(dim + 1, n_classes)`` matrix.
    """
    from scipy.linalg import LinAlgError, cho_factor, cho_solve

    n, width = design.shape
    weights = np.mean(probabilities * (1.0 - probabilities), axis=1)
    block = (design * weights[:, None]).T @ design / n
    penalised = np.arange(width - 1)
    block[penalised, penalised] += strength
    diagonal = np.arange(width)
    jitter = 1e-8 * max(float(block.diagonal().max()), 1e-300)
    for _ in range(10):
        try:
            shifted = block.copy()
            shifted[diagonal, diagonal] += jitter
            factor = cho_factor(shifted, lower=True, check_finite=False)
            return lambda q: cho_solve(factor, q.reshape(width, -1), check_finite=False).ravel()
        except LinAlgError:
            jitter *= 10.0
    raise LinAlgError("the probe's preconditioner is not positive definite even with jitter; are the features finite?")


def _lbfgs_direction(gradient: np.ndarray, pairs: list[tuple[np.ndarray, np.ndarray]], precondition) -> np.ndarray:
    """L-BFGS two-loop recursion with initial inverse Hessian ``precondition`` (a function ``q -> H0^-1 q``
    from :func:`_hessian_factor` or :func:`_kronecker_factor`).

    ``gradient`` and the ``(step, gradient change)`` pairs are raveled, shape ``(n_parameters,)``.
    Returns the (descent) step to subtract, float64.
    """
    q = gradient.copy()
    alphas = []
    for step, change in reversed(pairs):
        alpha = (step @ q) / (change @ step)
        alphas.append(alpha)
        q -= alpha * change
    r = precondition(q)
    for (step, change), alpha in zip(pairs, reversed(alphas)):
        beta = (change @ r) / (change @ step)
        r += (alpha - beta) * step
    return r


def fit_logistic(
    design: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    c: float,
    initial: np.ndarray | None = None,
    *,
    gtol: float = PROBE_GTOL,
    max_iter: int = 500,
) -> tuple[np.ndarray, int]:
    """Minimise ``mean CE + ||W||^2 / (2 C n)``: sklearn's ``LogisticRegression(C=c)`` optimum.

    Parameters
    ----------
    design : array, shape (n, dim + 1)
        Standardised features and a column of ones (:func:`design_matrix`).
    labels : int array, shape (n,)
        Class indices in ``[0, n_classes)``; every class should occur.
    c : float
        Inverse regularisation strength.
    initial : array, shape (dim + 1, n_classes), optional
        Starting weights (warm start); zeros by default.
    gtol : float
        Stop when the largest absolute entry of the gradient is below ``gtol``.
    max_iter : int
        Step cap; a :class:`ProbeConvergenceWarning` is issued if it is reached first.

    Returns
    -------
    weights : array, shape (dim + 1, n_classes)
        Last row is the bias.
    n_iter : int
    """
    strength = 1.0 / (c * len(labels))
    weights = np.zeros((design.shape[1], n_classes)) if initial is None else np.array(initial, dtype=np.float64)
    loss, gradient, probabilities = loss_gradient(weights, design, labels, strength)
    factor, pairs, since_refresh = None, [], 0
    for n_iter in range(max_iter + 1):
        if np.abs(gradient).max() < gtol:
            return weights, n_iter
        if n_iter == max_iter:
            break
        if factor is None or since_refresh >= _PROBE_REFRESH:
            preconditioner = _hessian_factor if weights.size <= _PROBE_EXACT_HESSIAN else _kronecker_factor
            factor, pairs, since_refresh = preconditioner(design, probabilities, strength), [], 0
        step = _lbfgs_direction(gradient.ravel(), pairs, factor).reshape(weights.shape)
        slope = float(np.sum(gradient * step))
        t = 1.0
        while True:  # backtracking (Armijo) line search
            trial = weights - t * step
            trial_loss, trial_gradient, trial_probabilities = loss_gradient(trial, design, labels, strength)
            if trial_loss <= loss - 1e-4 * t * slope or t < 1e-10:
                break
            t *= 0.5
        if t < 1e-10:  # no decrease measurable in float64: restart from a fresh Hessian, once
            if since_refresh == 0:
                break
            factor = None
            continue
        change = (trial_gradient - gradient).ravel()
        moved = (trial - weights).ravel()
        if moved @ change > 1e-12 * (change @ change):
            pairs = (pairs + [(moved, change)])[-_PROBE_MEMORY:]
        weights, loss, gradient, probabilities = trial, trial_loss, trial_gradient, trial_probabilities
        since_refresh += 1
    warnings.warn(
        f"logistic regression (C={c:g}) stopped after {n_iter} steps with gradient "
        f"{np.abs(gradient).max():.1e} > {gtol:g}; raise max_iter or check the features.",
        ProbeConvergenceWarning, stacklevel=3,
    )
    return weights, n_iter


def row_space(design: np.ndarray) -> np.ndarray | None:
    """Orthonormal basis ``(dim, n)`` of the row space of the standardised features of ``design``
    ``(n, dim + 1)``, or None when ``n >= dim`` (the reduction would not shrink the problem)."""
    features = design[:, :-1]
    if len(features) >= features.shape[1]:
        return None
    basis, _ = np.linalg.qr(features.T)
    return basis


def in_basis(design: np.ndarray, basis: np.ndarray | None) -> np.ndarray:
    """``design`` ``(n, dim + 1)`` with its features in ``basis`` coordinates: ``(n, r + 1)``."""
    return design if basis is None else np.hstack([design[:, :-1] @ basis, design[:, -1:]])


def lift(weights: np.ndarray, basis: np.ndarray | None) -> np.ndarray:
    """Weights ``(r + 1, n_classes)`` in ``basis`` coordinates -> ``(dim + 1, n_classes)``."""
    return weights if basis is None else np.vstack([basis @ weights[:-1], weights[-1:]])


def project(weights: np.ndarray, basis: np.ndarray | None) -> np.ndarray:
    """Weights ``(dim + 1, n_classes)`` -> ``basis`` coordinates (a warm start: exact only in the row space)."""
    return weights if basis is None else np.vstack([basis.T @ weights[:-1], weights[-1:]])


def restandardise(weights: np.ndarray, old: tuple, new: tuple) -> np.ndarray:
    """Weights giving the same logits on features standardised with ``new = (mean, scale)``
    instead of ``old``: a warm start for the refit on train+val."""
    (old_mean, old_scale), (new_mean, new_scale) = old, new
    mapped = np.empty_like(weights)
    mapped[:-1] = weights[:-1] * (new_scale / old_scale)[:, None]
    mapped[-1] = weights[-1] + ((new_mean - old_mean) / old_scale) @ weights[:-1]
    return mapped


def predict(weights: np.ndarray, design: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Labels ``(n,)`` of the largest logit (ties go to the first class, as sklearn)."""
    return classes[np.argmax(design @ weights, axis=1)]
