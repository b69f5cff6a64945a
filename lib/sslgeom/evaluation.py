"""Evaluation of frozen features with labels: the linear probe, kNN accuracy and few-shot episodes.

Features in, numbers out: nothing here knows about models or tasks, so the zoo manifest (chapter 01,
``scripts/train_zoo.py``) and the transfer measurements (chapter 05, :mod:`sslgeom.transfer`) go
through the same functions.

* :func:`linear_probe`: L2-regularised multinomial logistic regression on standardised features,
  ``C`` chosen on a validation split then refit on train+val (Ericsson et al., CVPR 2021), each fit
  solved to the optimum of scikit-learn's ``LogisticRegression(C=C)``; :func:`validation_split`
  cuts a stratified validation part off a training set for it.
* :func:`knn_accuracy`: cosine k-nearest-neighbour majority vote (the "kNN monitor" of SSL
  training); :func:`cosine_neighbours` is the neighbour search behind it.
* :func:`few_shot`: N-way K-shot nearest-prototype episodes with a 95% interval.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .validation import check_features, check_int, check_labels

__all__ = [
    "DEFAULT_C_GRID",
    "PROBE_GTOL",
    "EPISODE_BLOCK",
    "ProbeResult",
    "ProbeConvergenceWarning",
    "FewShotResult",
    "validation_split",
    "linear_probe",
    "cosine_neighbours",
    "knn_accuracy",
    "few_shot",
]

#: The probe's grid of inverse regularisation strengths, ``1e-3 .. 1e2`` (6 values, log-spaced).
DEFAULT_C_GRID: tuple[float, ...] = tuple(np.logspace(-3, 2, 6).tolist())


# ---------------------------------------------------------------------------------------------
# Linear probe
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeResult:
    """Outcome of :func:`linear_probe`.

    Attributes
    ----------
    accuracy : float
        Test accuracy of the model refit on train+val with the chosen ``C``.
    best_c : float
        Inverse regularisation strength chosen on the validation split.
    val_accuracy : dict
        Validation accuracy for every ``C`` of the grid.
    """

    accuracy: float
    best_c: float
    val_accuracy: dict[float, float]


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
#   (:func:`_row_space`): the same optimum, with min(n, dim) instead of dim weights per class.
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


def _standardiser(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means ``(dim,)`` and scales ``(dim,)`` (std, or 1 for a constant column), as
    scikit-learn's StandardScaler."""
    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale[scale == 0] = 1.0
    return mean, scale


def _design(features: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Standardised features with a trailing column of ones (the bias): ``(n, dim + 1)``."""
    standardised = (features - mean) / scale
    return np.hstack([standardised, np.ones((len(features), 1))])


def _loss_gradient(
    weights: np.ndarray, design: np.ndarray, labels: np.ndarray, strength: float
) -> tuple[float, np.ndarray, np.ndarray]:
    """Objective ``F = mean cross-entropy + strength / 2 * ||W||^2`` (bias row not penalised).

    Parameters
    ----------
    weights : array, shape (dim + 1, n_classes)
        Last row is the bias.
    design : array, shape (n, dim + 1)
        From :func:`_design`.
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
    """Preconditioner ``q -> H^-1 q`` from the Cholesky factor (float32) of the Hessian of :func:`_loss_gradient`'s objective.

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


def _fit_logistic(
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
        Standardised features and a column of ones (:func:`_design`).
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
    loss, gradient, probabilities = _loss_gradient(weights, design, labels, strength)
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
            trial_loss, trial_gradient, trial_probabilities = _loss_gradient(trial, design, labels, strength)
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


def _row_space(design: np.ndarray) -> np.ndarray | None:
    """Orthonormal basis ``(dim, n)`` of the row space of the standardised features of ``design``
    ``(n, dim + 1)``, or None when ``n >= dim`` (the reduction would not shrink the problem)."""
    features = design[:, :-1]
    if len(features) >= features.shape[1]:
        return None
    basis, _ = np.linalg.qr(features.T)
    return basis


def _in_basis(design: np.ndarray, basis: np.ndarray | None) -> np.ndarray:
    """``design`` ``(n, dim + 1)`` with its features in ``basis`` coordinates: ``(n, r + 1)``."""
    return design if basis is None else np.hstack([design[:, :-1] @ basis, design[:, -1:]])


def _lift(weights: np.ndarray, basis: np.ndarray | None) -> np.ndarray:
    """Weights ``(r + 1, n_classes)`` in ``basis`` coordinates -> ``(dim + 1, n_classes)``."""
    return weights if basis is None else np.vstack([basis @ weights[:-1], weights[-1:]])


def _project(weights: np.ndarray, basis: np.ndarray | None) -> np.ndarray:
    """Weights ``(dim + 1, n_classes)`` -> ``basis`` coordinates (a warm start: exact only in the row space)."""
    return weights if basis is None else np.vstack([basis.T @ weights[:-1], weights[-1:]])


def _restandardise(weights: np.ndarray, old: tuple, new: tuple) -> np.ndarray:
    """Weights giving the same logits on features standardised with ``new = (mean, scale)``
    instead of ``old``: a warm start for the refit on train+val."""
    (old_mean, old_scale), (new_mean, new_scale) = old, new
    mapped = np.empty_like(weights)
    mapped[:-1] = weights[:-1] * (new_scale / old_scale)[:, None]
    mapped[-1] = weights[-1] + ((new_mean - old_mean) / old_scale) @ weights[:-1]
    return mapped


def _predict(weights: np.ndarray, design: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Labels ``(n,)`` of the largest logit (ties go to the first class, as sklearn)."""
    return classes[np.argmax(design @ weights, axis=1)]


def validation_split(
    features: np.ndarray, labels: np.ndarray, val_fraction: float = 0.2, seed: int = 0
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Hold out a stratified, random validation part of a training set (for :func:`linear_probe`).

    Parameters
    ----------
    features : array, shape (n_points, dim)
    labels : array, shape (n_points,)
        Class labels; every class needs at least two points (one per part).
    val_fraction : float
        Fraction of the points held out, in ``(0, 1)``.
    seed : int
        Seeds the split (scikit-learn's ``train_test_split`` with ``random_state=seed``).

    Returns
    -------
    train, val : (features (n, dim), labels (n,))
        The two parts, ``round(val_fraction * n_points)`` points (rounded up) in ``val``.
    """
    from sklearn.model_selection import train_test_split

    features = check_features(features, "features")
    labels = check_labels(labels, len(features), "labels")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}.")
    fit_x, val_x, fit_y, val_y = train_test_split(
        features, labels, test_size=val_fraction, random_state=seed, stratify=labels
    )
    return (fit_x, fit_y), (val_x, val_y)


def linear_probe(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    c_grid: Sequence[float] = DEFAULT_C_GRID,
    max_iter: int = 500,
    gtol: float = PROBE_GTOL,
) -> ProbeResult:
    """Linear probe: L2-regularised multinomial logistic regression on standardised features.

    ``C`` (inverse regularisation) is chosen on ``val`` from ``c_grid``; the model is then refit
    on train+val with that ``C`` and scored on ``test``. Ties in validation accuracy go to the
    smallest ``C`` (the strongest regularisation). Each fit is solved to the optimum of
    scikit-learn's ``LogisticRegression(C=C)`` objective (gradient below ``gtol``; tested against
    scikit-learn), walking the grid from strong to weak regularisation with warm starts. BLAS runs
    on one thread: faster for these small problems and the same numbers on every machine load.
    The fit is always multinomial (one weight vector per class): with two classes it equals
    scikit-learn's binary ``LogisticRegression(C=2 * C)``. Wide features cost little: with fewer
    training points than dimensions the fit runs in the span of the training features (exact, see
    the solver notes above), so a 2,048-d probe on 250 images of 10 classes takes seconds.

    Parameters
    ----------
    train, val, test : (features (n, dim), labels (n,))
        Feature matrices and labels of the three splits.
    c_grid : sequence of float
        Candidate values of ``C`` (log-spaced is customary).
    max_iter : int
        Step cap of the solver per fit.
    gtol : float
        Gradient tolerance of the solver (on ``mean CE + ||W||^2 / (2 C n)``).

    Returns
    -------
    ProbeResult
    """
    from threadpoolctl import threadpool_limits

    x_train, y_train = check_features(train[0], "train features"), train[1]
    x_val, y_val = check_features(val[0], "val features", min_rows=1), val[1]
    x_test, y_test = check_features(test[0], "test features", min_rows=1), test[1]
    y_train = check_labels(y_train, len(x_train), "train labels")
    y_val = check_labels(y_val, len(x_val), "val labels", min_classes=1)
    y_test = check_labels(y_test, len(x_test), "test labels", min_classes=1)
    if not len(c_grid) or min(float(c) for c in c_grid) <= 0:
        raise ValueError(f"c_grid must hold positive values such as numpy.logspace(-3, 3, 7); got {list(c_grid)}.")
    if not x_train.shape[1] == x_val.shape[1] == x_test.shape[1]:
        raise ValueError(f"train, val and test features differ in dimension "
                         f"({x_train.shape[1]}, {x_val.shape[1]}, {x_test.shape[1]}); embed them with the same model.")
    with threadpool_limits(limits=1, user_api="blas"):
        classes, train_index = np.unique(y_train, return_inverse=True)
        train_scaler = _standardiser(x_train)
        design, val_design = _design(x_train, *train_scaler), _design(x_val, *train_scaler)
        basis = _row_space(design)  # fewer points than dimensions: solve in the row space (exact)
        fit_design = _in_basis(design, basis)
        path_weights, val_accuracy, weights = {}, {}, None
        for c in sorted(float(c) for c in c_grid):
            weights, _ = _fit_logistic(fit_design, train_index, len(classes), c, weights, gtol=gtol, max_iter=max_iter)
            path_weights[c] = _lift(weights, basis)
            val_accuracy[c] = float(np.mean(_predict(path_weights[c], val_design, classes) == y_val))
        best_c = max(val_accuracy, key=lambda c: (val_accuracy[c], -c))
        x_full, y_full = np.vstack([x_train, x_val]), np.concatenate([y_train, y_val])
        full_classes, full_index = np.unique(y_full, return_inverse=True)
        full_scaler = _standardiser(x_full)
        full_design = _design(x_full, *full_scaler)
        full_basis = _row_space(full_design)
        initial = (_project(_restandardise(path_weights[best_c], train_scaler, full_scaler), full_basis)
                   if np.array_equal(full_classes, classes) else None)
        final, _ = _fit_logistic(_in_basis(full_design, full_basis), full_index, len(full_classes), best_c, initial,
                                 gtol=gtol, max_iter=max_iter)
        final = _lift(final, full_basis)
        accuracy = float(np.mean(_predict(final, _design(x_test, *full_scaler), full_classes) == y_test))
    return ProbeResult(accuracy=accuracy, best_c=best_c, val_accuracy=val_accuracy)



# ---------------------------------------------------------------------------------------------
# Few-shot episodes
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FewShotResult:
    """Outcome of :func:`few_shot`.

    Attributes
    ----------
    mean : float
        Mean query accuracy over episodes.
    ci_low, ci_high : float
        95% normal interval of the mean, ``mean -/+ 1.96 * std / sqrt(n_episodes)``.
    episode_accuracy : array, shape (n_episodes,)
    """

    mean: float
    ci_low: float
    ci_high: float
    episode_accuracy: np.ndarray = field(repr=False)


EPISODE_BLOCK = 100  # episodes drawn and scored per vectorised block (fixed: it shapes the random stream)


def _class_members(labels: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of each class, padded with -1: ``members (n_classes, max_count)``, ``counts (n_classes,)``."""
    rows = [np.flatnonzero(labels == c) for c in classes]
    counts = np.array([len(r) for r in rows])
    members = np.full((len(rows), counts.max()), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        members[i, : len(r)] = r
    return members, counts


def _draw_episodes(
    rng: np.random.Generator, members: np.ndarray, counts: np.ndarray, n_way: int, n_per_class: int, n_episodes: int
) -> np.ndarray:
    """Random episodes: ``(n_episodes, n_way, n_per_class)`` row indices.

    Each episode takes ``n_way`` distinct classes and ``n_per_class`` distinct rows of each, all
    uniformly without replacement: the order of independent uniform keys is a uniform random
    permutation (ties have probability zero), and padding gets key +inf so it sorts last.
    """
    chosen = np.argsort(rng.random((n_episodes, len(counts))), axis=1, kind="stable")[:, :n_way]
    keys = rng.random((n_episodes, n_way, members.shape[1]))
    keys[np.arange(members.shape[1]) >= counts[chosen][..., None]] = np.inf
    picks = np.argsort(keys, axis=2, kind="stable")[..., :n_per_class]
    return np.take_along_axis(members[chosen], picks, axis=2)


def _episode_accuracy(features: np.ndarray, episodes: np.ndarray, n_shot: int) -> np.ndarray:
    """Query accuracy ``(n_episodes,)`` of the nearest class mean (Euclidean) in each episode.

    ``episodes (n_episodes, n_way, n_shot + n_query)``: the first ``n_shot`` rows of each class
    are the support, the rest the queries. ``||q - p||^2 = ||q||^2 - 2 q.p + ||p||^2``, and
    ``||q||^2`` does not change which prototype is nearest.
    """
    n_episodes, n_way, n_per_class = episodes.shape
    prototypes = features[episodes[:, :, :n_shot]].mean(axis=2)  # (episodes, way, dim)
    queries = features[episodes[:, :, n_shot:]].reshape(n_episodes, n_way * (n_per_class - n_shot), -1)
    distance = (prototypes**2).sum(axis=2)[:, None, :] - 2.0 * queries @ prototypes.transpose(0, 2, 1)
    truth = np.repeat(np.arange(n_way), n_per_class - n_shot)
    return np.mean(distance.argmin(axis=2) == truth, axis=1)


def few_shot(
    features: np.ndarray,
    labels: np.ndarray,
    n_way: int = 5,
    n_shot: int = 5,
    n_query: int = 15,
    n_episodes: int = 600,
    seed: int = 0,
) -> FewShotResult:
    """Few-shot accuracy of a nearest-prototype classifier, averaged over random episodes.

    Each episode draws ``n_way`` classes, then ``n_shot`` support and ``n_query`` query images
    per class without replacement. Features are L2-normalised; a query gets the class of the
    nearest support mean (Euclidean), as in prototypical networks. Episodes are drawn and scored
    in blocks of :data:`EPISODE_BLOCK` with array operations.

    Parameters
    ----------
    features : array, shape (n_points, dim)
    labels : int array, shape (n_points,)
    n_way, n_shot, n_query, n_episodes : int
    seed : int
        Seed of the episode sampler; equal seeds give equal episodes.

    Returns
    -------
    FewShotResult
    """
    x = check_features(features)
    labels = check_labels(labels, len(x), "labels")
    for name, value in (("n_shot", n_shot), ("n_query", n_query), ("n_episodes", n_episodes)):
        check_int(value, name, minimum=1)
    check_int(n_way, "n_way (classes per episode)", minimum=2)
    classes, counts = np.unique(labels, return_counts=True)
    eligible = classes[counts >= n_shot + n_query]
    if len(eligible) < n_way:
        raise ValueError(
            f"{n_way}-way episodes with {n_shot} shots + {n_query} queries need {n_way} classes with at "
            f"least {n_shot + n_query} examples; only {len(eligible)} of {len(classes)} classes have "
            f"that many (smallest class: {counts.min()}). Lower n_shot/n_query/n_way or use a larger split."
        )
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    members, member_counts = _class_members(labels, eligible)
    rng = np.random.default_rng(seed)
    blocks = []
    for start in range(0, n_episodes, EPISODE_BLOCK):
        size = min(EPISODE_BLOCK, n_episodes - start)
        episodes = _draw_episodes(rng, members, member_counts, n_way, n_shot + n_query, size)
        blocks.append(_episode_accuracy(x, episodes, n_shot))
    accuracy = np.concatenate(blocks)
    mean = float(accuracy.mean())
    half = 1.96 * float(accuracy.std(ddof=1)) / np.sqrt(n_episodes) if n_episodes > 1 else float("nan")
    return FewShotResult(mean=mean, ci_low=float(mean - half), ci_high=float(mean + half), episode_accuracy=accuracy)


# ---------------------------------------------------------------------------------------------
# Cosine nearest neighbours and kNN accuracy
# ---------------------------------------------------------------------------------------------


def cosine_neighbours(
    queries: np.ndarray,
    reference: np.ndarray,
    k: int,
    *,
    exclude: np.ndarray | None = None,
    block_size: int = 2048,
) -> np.ndarray:
    """Indices of the ``k`` reference points most cosine-similar to each query, most similar first.

    Exact search in float32 (torch matmul and ``topk``), ``block_size`` queries at a time.

    Parameters
    ----------
    queries : array, shape (n_queries, dim)
    reference : array, shape (n_reference, dim)
    k : int
        Neighbours per query, ``1 <= k <= n_reference`` (minus one when ``exclude`` is given).
    exclude : int array, shape (n_queries,), optional
        For each query, one reference row that may not be its neighbour (the query itself when the
        queries are rows of ``reference``).
    block_size : int
        Queries per block: memory stays at ``block_size * n_reference`` floats.

    Returns
    -------
    int array, shape (n_queries, k)
    """
    import torch

    queries = check_features(queries, "queries", min_rows=1, dtype=np.float32)
    reference = check_features(reference, "reference features", min_rows=1, dtype=np.float32)
    if queries.shape[1] != reference.shape[1]:
        raise ValueError(f"queries and reference differ in dimension ({queries.shape[1]} vs {reference.shape[1]}); "
                         "embed both with the same model.")
    available = len(reference) - (exclude is not None)
    check_int(k, "k", minimum=1)
    if k > available:
        raise ValueError(f"k must lie in [1, {available}] (the number of reference points that can be "
                         f"neighbours), got {k}.")
    if exclude is not None:
        exclude = np.asarray(exclude, dtype=np.int64)
        if exclude.shape != (len(queries),):
            raise ValueError(f"exclude must hold one reference row per query, shape ({len(queries)},); "
                             f"got {exclude.shape}.")
    block_size = check_int(block_size, "block_size", minimum=1)
    reference_t = torch.nn.functional.normalize(torch.from_numpy(reference), dim=1)
    queries_t = torch.nn.functional.normalize(torch.from_numpy(queries), dim=1)
    indices = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), block_size):
        similarity = queries_t[start : start + block_size] @ reference_t.T
        if exclude is not None:
            rows = torch.arange(len(similarity))
            similarity[rows, torch.from_numpy(exclude[start : start + block_size])] = -torch.inf
        indices[start : start + block_size] = similarity.topk(k, dim=1).indices.numpy()
    return indices


def knn_accuracy(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    *,
    k: int = 20,
    block_size: int = 2048,
) -> float:
    """Cosine kNN classification accuracy: majority vote of the ``k`` most similar training points.

    Ties in the vote go to the smallest label. The neighbours come from :func:`cosine_neighbours`.

    Parameters
    ----------
    train_features, test_features : array, shapes (n_train, dim) and (n_test, dim)
    train_labels, test_labels : int arrays, shapes (n_train,) and (n_test,)
        Non-negative integer classes.
    k : int
        Number of neighbours, ``1 <= k <= n_train``.
    block_size : int
        Test points per similarity block (memory: ``block_size * n_train`` floats).

    Returns
    -------
    float
        Accuracy in ``[0, 1]``.
    """
    train_features = check_features(train_features, "train features", min_rows=1, dtype=np.float32)
    test_features = check_features(test_features, "test features", min_rows=1, dtype=np.float32)
    train_labels = check_labels(train_labels, len(train_features), "train labels", min_classes=1)
    test_labels = check_labels(test_labels, len(test_features), "test labels", min_classes=1)
    if train_labels.min() < 0 or test_labels.min() < 0:
        raise ValueError("labels must be non-negative integers (class indices); map them with np.unique(..., "
                         "return_inverse=True).")
    neighbours = cosine_neighbours(test_features, train_features, k, block_size=block_size)
    n_classes = int(max(train_labels.max(), test_labels.max())) + 1
    votes = np.zeros((len(test_features), n_classes), dtype=np.int64)
    np.add.at(votes, (np.arange(len(test_features))[:, None], train_labels.astype(np.int64)[neighbours]), 1)
    return float(np.mean(votes.argmax(axis=1) == test_labels))
