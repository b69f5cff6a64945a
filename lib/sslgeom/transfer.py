"""Measured transfer of frozen features, and its prediction from per-model descriptors.

Three layers, each usable on plain arrays:

1. **Protocols** on features: :func:`linear_probe` (logistic regression, regularisation chosen on
   a validation split then refit on train+val, as Ericsson et al., CVPR 2021) and
   :func:`few_shot` (N-way K-shot nearest-prototype episodes with a 95% interval).
2. **Tasks and the zoo**: :func:`build_tasks` makes the target tasks (Fashion-MNIST in domain,
   a corrupted Fashion-MNIST, scikit-learn digits, texture patches); :func:`measure_transfer`
   embeds them with every model and runs the protocols, cached by content.
3. **Prediction**: :func:`loo_predict` regresses a transfer score on descriptors with
   leave-one-model-out cross-validation (feature selection and scaling inside the loop);
   :func:`compare_predictors` runs it for several descriptor sets and targets with bootstrap
   intervals and a permutation p-value.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .baselines import check_features

__all__ = [
    "ProbeResult",
    "ProbeConvergenceWarning",
    "PROBE_GTOL",
    "FewShotResult",
    "LOOResult",
    "linear_probe",
    "few_shot",
    "corrupt_images",
    "build_tasks",
    "measure_transfer",
    "baseline_table",
    "loo_predict",
    "regression_scores",
    "bootstrap_scores",
    "bootstrap_mean_score",
    "loo_permutation_pvalue",
    "compare_predictors",
]

DEFAULT_C_GRID: tuple[float, ...] = tuple(np.logspace(-3, 2, 6).tolist())
CORRUPTIONS: tuple[str, ...] = ("noise", "blur", "contrast")
RIDGE_ALPHAS: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0, 100.0)


# ---------------------------------------------------------------------------------------------
# Protocols on features
# ---------------------------------------------------------------------------------------------


def _check_labels(labels: np.ndarray, n_rows: int, name: str, min_classes: int = 2) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != n_rows:
        raise ValueError(f"{name} must be 1-D with one label per feature row ({n_rows}); got shape {labels.shape}.")
    n_classes = len(np.unique(labels))
    if n_classes < min_classes:
        raise ValueError(
            f"{name} hold {n_classes} class(es); a classification task needs at least {min_classes}. "
            "Check the task's split (a single-class split cannot measure transfer)."
        )
    return labels


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
PROBE_GTOL = 1e-8  # stop when max |dF/dW| < PROBE_GTOL (F as above)
_PROBE_MEMORY = 10  # L-BFGS correction pairs
_PROBE_REFRESH = 50  # steps between Hessian refreshes


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
    """Cholesky factor (float32) of the Hessian of :func:`_loss_gradient`'s objective.

    ``H = (1/n) sum_i (diag(p_i) - p_i p_i^T) kron x_i x_i^T + strength * I`` over the raveled
    weights (bias excluded from the penalty). Adding the same value to every bias leaves the
    objective unchanged, so ``H`` is singular, and float32 rounding can make it slightly
    indefinite; a small diagonal jitter makes it factorable. It only preconditions L-BFGS, whose
    line search and stopping rule use the exact float64 objective, so neither the single precision
    nor the jitter moves the optimum (they halve the cost of this step).
    """
    from scipy.linalg import LinAlgError, cho_factor

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
            return cho_factor(shifted, lower=True, check_finite=False)
        except LinAlgError:
            jitter *= 10.0
    raise LinAlgError("the probe's Hessian is not positive definite even with jitter; are the features finite?")


def _lbfgs_direction(gradient: np.ndarray, pairs: list[tuple[np.ndarray, np.ndarray]], factor) -> np.ndarray:
    """L-BFGS two-loop recursion with initial inverse Hessian ``factor`` (from :func:`_hessian_factor`).

    ``gradient`` and the ``(step, gradient change)`` pairs are raveled, shape ``(n_parameters,)``.
    Returns the (descent) step to subtract, float64.
    """
    from scipy.linalg import cho_solve

    q = gradient.copy()
    alphas = []
    for step, change in reversed(pairs):
        alpha = (step @ q) / (change @ step)
        alphas.append(alpha)
        q -= alpha * change
    r = cho_solve(factor, q.astype(factor[0].dtype), check_finite=False).astype(np.float64)
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
            factor, pairs, since_refresh = _hessian_factor(design, probabilities, strength), [], 0
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
    y_train = _check_labels(y_train, len(x_train), "train labels")
    y_val = _check_labels(y_val, len(x_val), "val labels", min_classes=1)
    y_test = _check_labels(y_test, len(x_test), "test labels", min_classes=1)
    if not len(c_grid) or min(float(c) for c in c_grid) <= 0:
        raise ValueError(f"c_grid must hold positive values such as numpy.logspace(-3, 3, 7); got {list(c_grid)}.")
    if not x_train.shape[1] == x_val.shape[1] == x_test.shape[1]:
        raise ValueError(f"train, val and test features differ in dimension "
                         f"({x_train.shape[1]}, {x_val.shape[1]}, {x_test.shape[1]}); embed them with the same model.")
    with threadpool_limits(limits=1, user_api="blas"):
        classes, train_index = np.unique(y_train, return_inverse=True)
        train_scaler = _standardiser(x_train)
        design, val_design = _design(x_train, *train_scaler), _design(x_val, *train_scaler)
        path_weights, val_accuracy, weights = {}, {}, None
        for c in sorted(float(c) for c in c_grid):
            weights, _ = _fit_logistic(design, train_index, len(classes), c, weights, gtol=gtol, max_iter=max_iter)
            path_weights[c] = weights
            val_accuracy[c] = float(np.mean(_predict(weights, val_design, classes) == y_val))
        best_c = max(val_accuracy, key=lambda c: (val_accuracy[c], -c))
        x_full, y_full = np.vstack([x_train, x_val]), np.concatenate([y_train, y_val])
        full_classes, full_index = np.unique(y_full, return_inverse=True)
        full_scaler = _standardiser(x_full)
        initial = (_restandardise(path_weights[best_c], train_scaler, full_scaler)
                   if np.array_equal(full_classes, classes) else None)
        final, _ = _fit_logistic(_design(x_full, *full_scaler), full_index, len(full_classes), best_c, initial,
                                 gtol=gtol, max_iter=max_iter)
        accuracy = float(np.mean(_predict(final, _design(x_test, *full_scaler), full_classes) == y_test))
    return ProbeResult(accuracy=accuracy, best_c=best_c, val_accuracy=val_accuracy)


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


_EPISODE_BLOCK = 100  # episodes drawn and scored per vectorised block (fixed: it shapes the random stream)


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
    in blocks of :data:`_EPISODE_BLOCK` with array operations.

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
    labels = _check_labels(labels, len(x), "labels")
    for name, value in (("n_way", n_way), ("n_shot", n_shot), ("n_query", n_query), ("n_episodes", n_episodes)):
        if int(value) < 1:
            raise ValueError(f"{name} must be a positive integer; got {value}.")
    classes, counts = np.unique(labels, return_counts=True)
    if n_way < 2:
        raise ValueError("n_way must be at least 2 for a classification episode.")
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
    for start in range(0, n_episodes, _EPISODE_BLOCK):
        size = min(_EPISODE_BLOCK, n_episodes - start)
        episodes = _draw_episodes(rng, members, member_counts, n_way, n_shot + n_query, size)
        blocks.append(_episode_accuracy(x, episodes, n_shot))
    accuracy = np.concatenate(blocks)
    mean = float(accuracy.mean())
    half = 1.96 * float(accuracy.std(ddof=1)) / np.sqrt(n_episodes) if n_episodes > 1 else float("nan")
    return FewShotResult(mean=mean, ci_low=float(mean - half), ci_high=float(mean + half), episode_accuracy=accuracy)


# ---------------------------------------------------------------------------------------------
# Target tasks
# ---------------------------------------------------------------------------------------------


def corrupt_images(images: np.ndarray, seed: int = 0, severity: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Apply one corruption per image, drawn uniformly from Gaussian noise, blur and low contrast.

    Parameters
    ----------
    images : uint8 array, shape (n, height, width)
    seed : int
        Seed of the corruption choice and of the noise.
    severity : float
        Scales every corruption (1.0: noise std 64 grey levels, blur sigma 1.5 px, contrast x0.3).

    Returns
    -------
    corrupted : uint8 array, shape (n, height, width)
    kind : int array, shape (n,)
        Index into :data:`CORRUPTIONS` of the corruption each image received.
    """
    import torch
    import torchvision.transforms.v2.functional as TF

    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(f"images must be uint8 (n, height, width); got {images.dtype} {images.shape}.")
    if severity <= 0:
        raise ValueError(f"severity must be positive; got {severity}.")
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, len(CORRUPTIONS), size=len(images))
    out = images.copy()
    noise_idx = np.flatnonzero(kind == 0)
    noisy = images[noise_idx].astype(np.float64) + rng.normal(0.0, 64.0 * severity, size=images[noise_idx].shape)
    out[noise_idx] = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    blur_idx = np.flatnonzero(kind == 1)
    if len(blur_idx):
        # One parameter set for the whole batch is intended here: every image gets the same blur.
        blurred = TF.gaussian_blur(torch.from_numpy(images[blur_idx]).unsqueeze(1), [7, 7], [1.5 * severity] * 2)
        out[blur_idx] = blurred.squeeze(1).numpy()
    contrast_idx = np.flatnonzero(kind == 2)
    if len(contrast_idx):
        factor = max(0.0, 1.0 - 0.7 * severity)
        lowered = TF.adjust_contrast(torch.from_numpy(images[contrast_idx]).unsqueeze(1), factor)
        out[contrast_idx] = lowered.squeeze(1).numpy()
    return out, kind


def _subsample(images: np.ndarray, labels: np.ndarray, n: int | None, rng: np.random.Generator):
    """A class-stratified random subset of size about ``n`` (all of it when ``n`` is None)."""
    if n is None or n >= len(labels):
        return images, labels
    fraction = n / len(labels)
    keep = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        keep.append(rng.choice(members, size=max(1, int(round(fraction * len(members)))), replace=False))
    keep = np.sort(np.concatenate(keep))
    return images[keep], labels[keep]


def _split_per_class(
    labels: np.ndarray, fractions: tuple[float, float], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of a random per-class split: the first two fractions, then the rest."""
    parts: list[list[np.ndarray]] = [[], [], []]
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        first = int(round(fractions[0] * len(members)))
        second = first + int(round(fractions[1] * len(members)))
        for part, chunk in zip(parts, (members[:first], members[first:second], members[second:])):
            part.append(chunk)
    return tuple(np.sort(np.concatenate(p)) for p in parts)  # type: ignore[return-value]


def build_tasks(
    names: Sequence[str] = ("fashion", "fashion_corrupted", "digits", "textures"),
    n_train: int | None = 2000,
    n_val: int | None = 1000,
    n_test: int | None = 2000,
    seed: int = 0,
) -> dict:
    """Build the target tasks as :class:`sslgeom.data.Task` objects.

    * ``fashion`` (in domain): train and val drawn from disjoint parts of the Fashion-MNIST train
      split, test from its test split.
    * ``fashion_corrupted`` (shifted domain): the Fashion-MNIST test split, each image corrupted
      by noise, blur or low contrast (:func:`corrupt_images`), split 50/20/30 per class.
    * ``digits`` and ``textures`` (out of domain): :func:`sslgeom.data.load_digits_task` and
      :func:`sslgeom.data.load_textures_task`.

    Every split is subsampled (class-stratified) to at most ``n_train``/``n_val``/``n_test``
    images; ``None`` keeps the whole split.

    Returns
    -------
    dict of str to Task
    """
    from . import data

    known = ("fashion", "fashion_corrupted", "digits", "textures")
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown transfer tasks {unknown}; choose from {list(known)}.")
    tasks = {}
    for name in names:
        # one generator per task, so a task's images do not depend on which other tasks are built
        rng = np.random.default_rng([seed, known.index(name)])
        if name == "fashion":
            images, labels = data.load_fashion_mnist("train")
            order = rng.permutation(len(labels))
            cut = len(order) - 10_000  # the last 10k of a fixed permutation is the validation pool
            train = _subsample(images[order[:cut]], labels[order[:cut]], n_train, rng)
            val = _subsample(images[order[cut:]], labels[order[cut:]], n_val, rng)
            test = _subsample(*data.load_fashion_mnist("test"), n_test, rng)
            task = data.Task(name=name, classes=data.FASHION_CLASSES, train=train, val=val, test=test)
        elif name == "fashion_corrupted":
            images, labels = data.load_fashion_mnist("test")
            corrupted, _ = corrupt_images(images, seed=seed)
            train_idx, val_idx, test_idx = _split_per_class(labels, (0.5, 0.2), rng)
            parts = [_subsample(corrupted[idx], labels[idx], n, rng)
                     for idx, n in ((train_idx, n_train), (val_idx, n_val), (test_idx, n_test))]
            task = data.Task(name=name, classes=data.FASHION_CLASSES, train=parts[0], val=parts[1], test=parts[2])
        else:
            loaded = data.load_digits_task(seed=seed) if name == "digits" else data.load_textures_task(seed=seed)
            parts = [_subsample(*split, n, rng) for split, n in
                     ((loaded.train, n_train), (loaded.val, n_val), (loaded.test, n_test))]
            task = data.Task(name=name, classes=loaded.classes, train=parts[0], val=parts[1], test=parts[2])
        for split_name in ("train", "val", "test"):
            _check_labels(getattr(task, split_name)[1], len(getattr(task, split_name)[1]),
                          f"task {name!r} {split_name} labels", min_classes=2)
        tasks[name] = task
    return tasks


# ---------------------------------------------------------------------------------------------
# The zoo: embedding and measuring
# ---------------------------------------------------------------------------------------------


def _check_models(model_names: Sequence[str]) -> None:
    from . import zoo

    available = set(zoo.names())
    missing = [name for name in model_names if name not in available]
    if missing:
        raise ValueError(
            f"model(s) {missing} are not in the zoo (available: {sorted(available)}). "
            "Train them with `make zoo` or remove them from the parameter list."
        )


def _features(model, images: np.ndarray, device: str, batch_size: int = 512) -> np.ndarray:
    """Cached features ``(n, dim)`` of uint8 images ``(n, H, W)`` through one model (a zoo name, or
    the model loaded once by the caller: a cache hit then skips reading the checkpoint again)."""
    from . import embed

    features = embed.embed(model, images[:, None, :, :], batch_size=batch_size, device=device,
                           progress=False)
    return check_features(features, f"features of model {embed.model_name(model)!r}", min_rows=1)


def _transfer_scores(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    settings: Mapping,
) -> pd.DataFrame:
    """Linear-probe and few-shot rows (``protocol, score, ci_low, ci_high``) of one model on one task.

    ``train``, ``val``, ``test`` are ``(features (n, dim), labels (n,))``; ``settings`` holds
    ``c_grid, shots, n_way, n_query, n_episodes, seed``. Pure numpy, so it can run in a worker
    thread (numpy releases the GIL in its array operations).
    """
    probe = linear_probe(train, val, test, c_grid=settings["c_grid"])
    rows = [{"protocol": "linear", "score": probe.accuracy, "ci_low": np.nan, "ci_high": np.nan}]
    for shot in settings["shots"]:
        result = few_shot(test[0], test[1], n_way=settings["n_way"], n_shot=shot, n_query=settings["n_query"],
                          n_episodes=settings["n_episodes"], seed=settings["seed"])
        rows.append({"protocol": f"{settings['n_way']}way{shot}shot", "score": result.mean,
                     "ci_low": result.ci_low, "ci_high": result.ci_high})
    return pd.DataFrame(rows)


def _transfer_entry(model_name: str, task_name: str, task, settings: Mapping):
    """Cache path of one (model, task) measurement, keyed by everything the numbers depend on."""
    from . import cache, zoo

    key = [
        "transfer-v2", zoo.checkpoint_hash(model_name), task_name,
        [task.train[0], task.train[1], task.val[0], task.val[1], task.test[0], task.test[1]],
        list(settings["c_grid"]), list(settings["shots"]), settings["n_way"], settings["n_query"],
        settings["n_episodes"], settings["seed"], PROBE_GTOL, _EPISODE_BLOCK,
    ]
    return cache.entry_path("transfer", cache.content_key(key), ".pkl")


def _cached_entry(path) -> pd.DataFrame | None:
    """The table stored at ``path``, or None if absent or corrupt (a corrupt entry is deleted)."""
    from . import cache

    if not path.exists():
        return None
    try:
        return cache.load_table(path)
    except ValueError:
        path.unlink(missing_ok=True)
        return None


def measure_transfer(
    model_names: Sequence[str],
    tasks: Mapping,
    *,
    c_grid: Sequence[float] = DEFAULT_C_GRID,
    shots: Sequence[int] = (5, 20),
    n_way: int = 5,
    n_query: int = 15,
    n_episodes: int = 600,
    seed: int = 0,
    device: str = "cpu",
    n_jobs: int = 2,
    progress: bool = True,
) -> pd.DataFrame:
    """Linear-probe and few-shot transfer of every model on every task, cached per (model, task).

    Features are computed (or read from the feature cache) in the calling thread; the protocols of
    the (model, task) pairs missing from the transfer cache run in ``n_jobs`` worker threads while
    BLAS is held to one thread (see :func:`linear_probe`). The numbers do not depend on ``n_jobs``.

    Parameters
    ----------
    model_names : sequence of str
        Zoo names (see :func:`sslgeom.zoo.names`).
    tasks : mapping of str to Task
        From :func:`build_tasks`.
    c_grid, shots, n_way, n_query, n_episodes, seed, device
        Protocol settings; few-shot episodes are drawn from the task's test split.
    n_jobs : int
        Worker threads for the protocols (the calling thread embeds the next pair meanwhile).

    Returns
    -------
    pandas.DataFrame
        Tidy table with columns ``model, task, protocol, score, ci_low, ci_high`` where protocol is
        ``"linear"`` or ``"{n_way}way{shot}shot"``; scores are accuracies in [0, 1].
    """
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    from threadpoolctl import threadpool_limits
    from tqdm.auto import tqdm

    from . import cache, embed

    _check_models(model_names)
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
        raise ValueError(f"n_jobs must be a positive integer (worker threads); got {n_jobs!r}.")
    settings = {"c_grid": [float(c) for c in c_grid], "shots": [int(s) for s in shots], "n_way": int(n_way),
                "n_query": int(n_query), "n_episodes": int(n_episodes), "seed": int(seed)}
    jobs = [(m, t) for m in model_names for t in tasks]
    paths = {(m, t): _transfer_entry(m, t, tasks[t], settings) for m, t in jobs}
    tables = {job: _cached_entry(paths[job]) for job in jobs}
    missing = [job for job in jobs if tables[job] is None]

    loaded = {}

    def splits(job):
        model_name, task = job[0], tasks[job[1]]
        if model_name not in loaded:  # jobs come grouped by model: keep only the current one
            loaded.clear()
            loaded[model_name] = embed.resolve_model(model_name, device)
        model = loaded[model_name]
        return [(_features(model, images, device), labels) for images, labels in (task.train, task.val, task.test)]

    def store(job, table):
        cache.save_table(paths[job], table)
        tables[job] = table
        bar.update()

    # BLAS on one thread for the whole pool: every worker's own limit (in linear_probe) then
    # enters and restores the same value, whatever the order in which the workers finish.
    with tqdm(total=len(jobs), initial=len(jobs) - len(missing), desc="transfer", disable=not progress) as bar, \
            threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(max_workers=n_jobs) as pool:
        pending = {}
        for job in missing:  # embed the next job here while the workers measure earlier ones
            pending[pool.submit(_transfer_scores, *splits(job), settings)] = job
            # at most one job waits for a worker: bounds the features held in memory
            done, _ = wait(pending, timeout=None if len(pending) > n_jobs else 0, return_when=FIRST_COMPLETED)
            for future in done:
                store(pending.pop(future), future.result())
        for future in list(pending):
            store(pending.pop(future), future.result())
    rows = [tables[(m, t)].assign(model=m, task=t) for m, t in jobs]
    result = pd.concat(rows, ignore_index=True)
    return result[["model", "task", "protocol", "score", "ci_low", "ci_high"]]


def baseline_table(
    model_names: Sequence[str],
    *,
    n_spectrum: int = 2000,
    n_knn_train: int = 5000,
    n_knn_test: int = 2000,
    knn_k: int = 20,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
) -> pd.DataFrame:
    """RankMe, alpha-ReQ and source-domain kNN accuracy of every model.

    RankMe and alpha-ReQ use the features of ``n_spectrum`` Fashion-MNIST test images (no labels);
    kNN accuracy uses ``n_knn_train`` train images as memory and ``n_knn_test`` test images.

    Returns
    -------
    pandas.DataFrame
        Index: model names; columns ``rankme, alpha_req, source_knn``.
    """
    from tqdm.auto import tqdm

    from . import baselines, cache, data, embed, zoo

    _check_models(model_names)
    rng = np.random.default_rng(seed)
    train_images, train_labels = data.load_fashion_mnist("train")
    test_images, test_labels = data.load_fashion_mnist("test")
    memory = rng.choice(len(train_labels), size=min(n_knn_train, len(train_labels)), replace=False)
    queries = rng.choice(len(test_labels), size=min(max(n_knn_test, n_spectrum), len(test_labels)), replace=False)
    rows = {}
    for model_name in tqdm(model_names, desc="baselines", disable=not progress):
        key = ["baselines-v1", zoo.checkpoint_hash(model_name), memory, queries, n_spectrum, n_knn_test, knn_k]

        def compute(model_name=model_name):
            model = embed.resolve_model(model_name, device)
            memory_features = _features(model, train_images[memory], device)
            query_features = _features(model, test_images[queries], device)
            spectrum_features = query_features[:n_spectrum]
            return {
                "rankme": np.float64(baselines.rankme(spectrum_features)),
                "alpha_req": np.float64(baselines.alpha_req(spectrum_features)),
                "source_knn": np.float64(baselines.knn_accuracy(
                    memory_features, train_labels[memory], query_features[:n_knn_test],
                    test_labels[queries][:n_knn_test], k=knn_k)),
            }

        values = cache.cached_arrays("baselines", key, compute)
        rows[model_name] = {name: float(value) for name, value in values.items()}
    return pd.DataFrame.from_dict(rows, orient="index")[["rankme", "alpha_req", "source_knn"]]


# ---------------------------------------------------------------------------------------------
# Prediction with leave-one-model-out cross-validation
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LOOResult:
    """Outcome of :func:`loo_predict`.

    Attributes
    ----------
    predictions : pandas.Series
        Out-of-sample prediction for each model (index: model).
    measured : pandas.Series
        The target, same index.
    selected : pandas.DataFrame
        One row per held-out model, one boolean column per descriptor: chosen in that fold.
    coefficients : pandas.DataFrame
        Standardised ridge coefficients per fold (0 where not selected).
    r2, spearman, kendall : float
        Out-of-sample scores (see :func:`regression_scores`).
    """

    predictions: pd.Series
    measured: pd.Series
    selected: pd.DataFrame
    coefficients: pd.DataFrame
    r2: float
    spearman: float
    kendall: float

    def importance(self) -> pd.DataFrame:
        """How often each descriptor was selected and the mean sign of its coefficient."""
        frequency = self.selected.mean(axis=0)
        coefficient = self.coefficients.where(self.selected).mean(axis=0)
        table = pd.DataFrame({"selected_fraction": frequency, "mean_coefficient": coefficient})
        return table.sort_values("selected_fraction", ascending=False)


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks (1-based, ties get their average rank) along axis 0 of a (n,) or (n, m) array.

    ``rank_i = #{j : x_j < x_i} + (#{j : x_j = x_i} + 1) / 2``, by broadcasting: fine for the
    tens of models compared here, and far cheaper than a library call per column.
    """
    x = np.asarray(values, dtype=np.float64)
    below = (x[None, :] < x[:, None]).sum(axis=1)
    equal = (x[None, :] == x[:, None]).sum(axis=1)
    return below + (equal + 1) / 2.0


def _pearson_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of matching columns of two (n, m) arrays: (m,), NaN where one is constant."""
    a, b = a - a.mean(axis=0), b - b.mean(axis=0)
    denominator = np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (a * b).sum(axis=0) / denominator, np.nan)


def _kendall_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Kendall's tau-b (tie-corrected) of matching columns of two (n, m) arrays, from all pairs: (m,)."""
    upper = np.triu_indices(len(a), 1)
    sign_a = np.sign(a[:, None] - a[None, :])[upper]  # (n_pairs, m)
    sign_b = np.sign(b[:, None] - b[None, :])[upper]
    denominator = np.sqrt(np.count_nonzero(sign_a, axis=0) * np.count_nonzero(sign_b, axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (sign_a * sign_b).sum(axis=0) / denominator, np.nan)


def _score_columns(measured: np.ndarray, predicted: np.ndarray) -> dict[str, np.ndarray]:
    """:func:`regression_scores` of every column of two (n, m) arrays at once: each value (m,)."""
    total = np.sum((measured - measured.mean(axis=0)) ** 2, axis=0)
    error = np.sum((measured - predicted) ** 2, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = np.where(total > 0, 1.0 - error / total, np.nan)
    spearman = _pearson_columns(_average_ranks(measured), _average_ranks(predicted))
    return {"r2": r2, "spearman": spearman, "kendall": _kendall_columns(measured, predicted)}


def regression_scores(measured: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Out-of-sample R^2 (1 - SSE / SST around the mean of ``measured``), Spearman and Kendall (tau-b).

    Correlations are NaN when either input is constant.
    """
    measured = np.asarray(measured, dtype=np.float64).reshape(-1, 1)
    predicted = np.asarray(predicted, dtype=np.float64).reshape(-1, 1)
    return {name: float(value[0]) for name, value in _score_columns(measured, predicted).items()}


def _select_columns(x: np.ndarray, y: np.ndarray, n_select: int) -> np.ndarray:
    """For each target column, the ``n_select`` columns of ``x`` with the largest |Spearman| with it.

    Parameters
    ----------
    x : array, shape (n, p)
    y : array, shape (n, m) or (n,)
        One target per column (e.g. the measured target and its permutations).

    Returns
    -------
    int array, shape (m, n_select), or (n_select,) for a 1-D ``y``
        Sorted column indices per target. Columns constant on these rows score -1 and are picked
        last (ties in the score go to the lower index).
    """
    if np.ndim(y) == 1:
        return _select_columns(x, np.asarray(y)[:, None], n_select)[0]
    ranks_x = _average_ranks(x)
    ranks_y = _average_ranks(y)
    centred_x = ranks_x - ranks_x.mean(axis=0)
    centred_y = ranks_y - ranks_y.mean(axis=0)
    norms = np.sqrt((centred_x**2).sum(axis=0)[:, None] * (centred_y**2).sum(axis=0)[None, :])  # (p, m)
    with np.errstate(invalid="ignore", divide="ignore"):
        scores = np.abs(centred_x.T @ centred_y) / norms
    scores[~(norms > 0)] = -1.0
    return np.sort(np.argsort(-scores, axis=0, kind="stable")[:n_select].T, axis=1)


def _ridge_fit(x: np.ndarray, y: np.ndarray, alphas: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ridge regressions with unpenalised intercept, each penalty chosen by exact leave-one-out.

    A batch of ``m`` independent problems. Each ``x[j]`` must have centred columns. For the linear
    smoother ``H = 11'/n + X (X'X + a I)^-1 X'`` the leave-one-out residual is
    ``(y_i - yhat_i) / (1 - H_ii)`` exactly. With the eigen decomposition ``X'X = V diag(e) V'``
    every penalty costs a few array operations.

    Parameters
    ----------
    x : array, shape (m, n, p)
    y : array, shape (m, n)
    alphas : sequence of float

    Returns
    -------
    coef : array, shape (m, p)
    intercept : array, shape (m,)
    alpha : array, shape (m,)
        Per problem, the penalty with the smallest mean squared leave-one-out residual (the first such one).
    """
    n = y.shape[1]
    intercept = y.mean(axis=1)
    centred_y = y - intercept[:, None]
    eigenvalues, eigenvectors = np.linalg.eigh(x.transpose(0, 2, 1) @ x)  # (m, p), (m, p, p)
    projected = x @ eigenvectors  # (m, n, p)
    target = (projected * centred_y[:, :, None]).sum(axis=1)  # (m, p) = V' X' y
    alphas = np.asarray(alphas, dtype=np.float64)
    shrink = 1.0 / (np.maximum(eigenvalues, 0.0)[:, None, :] + alphas[None, :, None])  # (m, n_alphas, p)
    coefs = (shrink * target[:, None, :]) @ eigenvectors.transpose(0, 2, 1)  # (m, n_alphas, p)
    leverage = 1.0 / n + np.einsum("mip,map->mai", projected**2, shrink)  # (m, n_alphas, n)
    fitted = coefs @ x.transpose(0, 2, 1)  # (m, n_alphas, n)
    residual = (centred_y[:, None, :] - fitted) / np.maximum(1.0 - leverage, 1e-12)
    best = np.argmin(np.mean(residual**2, axis=2), axis=1)
    return coefs[np.arange(len(best)), best], intercept, alphas[best]


def _loo_columns(
    x: np.ndarray, y: np.ndarray, n_select: int, alphas: Sequence[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Leave-one-model-out predictions of every target column of ``y`` from descriptors ``x``.

    For each held-out row, using the other rows only: select ``n_select`` columns per target
    (:func:`_select_columns`), standardise them, fit a ridge (:func:`_ridge_fit`) and predict the
    held-out row. Targets are independent; batching them (a target and its permutations) only
    shares the array operations.

    Parameters
    ----------
    x : array, shape (n, p)
    y : array, shape (n, m)

    Returns
    -------
    predictions : array, shape (n, m)
    selected : bool array, shape (m, n, p)
        ``selected[j, i, c]``: descriptor ``c`` used for target ``j`` when row ``i`` was held out.
    coefficients : array, shape (m, n, p)
        Standardised ridge coefficients (0 where not selected).
    """
    n_rows, n_targets = y.shape
    predictions = np.empty((n_rows, n_targets))
    selected = np.zeros((n_targets, n_rows, x.shape[1]), dtype=bool)
    coefficients = np.zeros((n_targets, n_rows, x.shape[1]))
    every_target = np.arange(n_targets)[:, None]
    for held_out in range(n_rows):
        train = np.arange(n_rows) != held_out
        x_train, y_train = x[train], y[train]
        columns = _select_columns(x_train, y_train, n_select)  # (m, n_select)
        chosen = x_train[:, columns].transpose(1, 0, 2)  # (m, n - 1, n_select)
        mean, std = chosen.mean(axis=1), chosen.std(axis=1)
        std[std == 0] = 1.0
        coef, intercept, _ = _ridge_fit((chosen - mean[:, None, :]) / std[:, None, :], y_train.T, alphas)
        predictions[held_out] = intercept + (((x[held_out, columns] - mean) / std) * coef).sum(axis=1)
        selected[every_target, held_out, columns] = True
        coefficients[every_target, held_out, columns] = coef
    return predictions, selected, coefficients


def _loo_inputs(descriptors: pd.DataFrame, target: pd.Series, n_select: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Validated descriptor matrix ``(n_models, n_descriptors)``, target ``(n_models,)`` and capped ``n_select``."""
    if not isinstance(descriptors, pd.DataFrame) or not isinstance(target, pd.Series):
        raise TypeError("descriptors must be a DataFrame and target a Series, both indexed by model name.")
    missing = sorted(set(target.index) - set(descriptors.index))
    if missing:
        raise ValueError(f"descriptors lack model(s) {missing} that have a target; compute them first.")
    x = check_features(descriptors.loc[list(target.index)].to_numpy(dtype=np.float64), "descriptors", min_rows=4)
    y = target.to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(y)):
        raise ValueError(f"target has NaN values for models {list(target.index[~np.isfinite(y)])}.")
    if n_select < 1:
        raise ValueError(f"n_select must be at least 1; got {n_select}.")
    return x, y, min(n_select, x.shape[1])


def loo_predict(
    descriptors: pd.DataFrame,
    target: pd.Series,
    n_select: int = 2,
    alphas: Sequence[float] = RIDGE_ALPHAS,
) -> LOOResult:
    """Predict a per-model score from descriptors with leave-one-model-out cross-validation.

    For each held-out model, using the other models only: keep the ``n_select`` descriptors with
    the largest |Spearman| correlation with the target, standardise them, fit a ridge regression
    whose penalty is chosen by (inner, efficient) leave-one-out over ``alphas``, and predict the
    held-out model. Nothing computed in a fold sees the held-out model.

    Parameters
    ----------
    descriptors : pandas.DataFrame, shape (n_models, n_descriptors)
        Index: model names.
    target : pandas.Series, shape (n_models,)
        Index: model names (aligned with ``descriptors``).
    n_select : int
        Descriptors kept per fold (capped at the number of descriptors).
    alphas : sequence of float
        Ridge penalties to choose from.

    Returns
    -------
    LOOResult
    """
    x, y, n_select = _loo_inputs(descriptors, target, n_select)
    predictions, selected, coefficients = _loo_columns(x, y[:, None], n_select, alphas)
    scores = regression_scores(y, predictions[:, 0])
    return LOOResult(
        predictions=pd.Series(predictions[:, 0], index=target.index, name="predicted"),
        measured=target.rename("measured"),
        selected=pd.DataFrame(selected[0], index=target.index, columns=descriptors.columns),
        coefficients=pd.DataFrame(coefficients[0], index=target.index, columns=descriptors.columns),
        **scores,
    )


def _percentile_interval(draws: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile interval of bootstrap draws (NaN draws ignored)."""
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(draws, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_scores(
    measured: np.ndarray, predicted: np.ndarray, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> dict[str, tuple[float, float]]:
    """Percentile intervals of R^2, Spearman and Kendall, resampling models with replacement.

    The out-of-sample predictions are held fixed; the interval reflects which models happen to
    be in the zoo, not the refitting noise. All ``n_boot`` resamples are scored at once.

    Returns
    -------
    dict
        ``{"r2": (low, high), "spearman": ..., "kendall": ...}``.
    """
    measured = np.asarray(measured, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(measured), size=(n_boot, len(measured))).T  # (n_models, n_boot)
    draws = _score_columns(measured[idx], predicted[idx])
    return {name: _percentile_interval(values, level) for name, values in draws.items()}


def loo_permutation_pvalue(
    descriptors: pd.DataFrame,
    target: pd.Series,
    n_permutations: int = 200,
    seed: int = 0,
    statistic: str = "spearman",
    **loo_kwargs,
) -> float:
    """Permutation p-value of an out-of-sample score: rerun the whole LOO on shuffled targets.

    The target and its ``n_permutations`` shuffles go through :func:`loo_predict`'s procedure as
    one batch (each column on its own). Returns ``(1 + #{null >= observed}) / (1 + n_permutations)``
    (one-sided: better than chance).
    """
    if statistic not in ("r2", "spearman", "kendall"):
        raise ValueError(f"statistic must be 'r2', 'spearman' or 'kendall'; got {statistic!r}.")
    unknown = sorted(set(loo_kwargs) - {"n_select", "alphas"})
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) {unknown}; loo_predict takes n_select and alphas.")
    x, y, n_select = _loo_inputs(descriptors, target, loo_kwargs.get("n_select", 2))
    rng = np.random.default_rng(seed)
    targets = np.column_stack([y] + [rng.permutation(y) for _ in range(n_permutations)])
    predictions, _, _ = _loo_columns(x, targets, n_select, loo_kwargs.get("alphas", RIDGE_ALPHAS))
    values = _score_columns(targets, predictions)[statistic]
    null = np.nan_to_num(values[1:], nan=-np.inf)
    return float((1 + np.sum(null >= values[0])) / (1 + n_permutations))


def compare_predictors(
    predictor_sets: Mapping[str, pd.DataFrame],
    targets: pd.DataFrame,
    *,
    n_select: Mapping[str, int] | int = 2,
    n_boot: int = 2000,
    n_permutations: int = 200,
    seed: int = 0,
    progress: bool = True,
) -> tuple[pd.DataFrame, dict[tuple[str, str], LOOResult]]:
    """Run :func:`loo_predict` for every descriptor set and every target column.

    Parameters
    ----------
    predictor_sets : mapping of str to DataFrame (n_models, n_descriptors)
        E.g. ``{"MGM": geometry, "RankMe": baselines[["rankme"]], ...}``.
    targets : DataFrame, shape (n_models, n_targets)
        Measured transfer scores, one column per (task, protocol).
    n_select : int or mapping
        Descriptors kept per fold, globally or per predictor set.

    Returns
    -------
    table : pandas.DataFrame
        One row per (predictor, target): ``r2, spearman, kendall``, their bootstrap intervals
        (``*_low``, ``*_high``) and the permutation ``p_spearman``.
    results : dict
        The :class:`LOOResult` of each (predictor, target).
    """
    from tqdm.auto import tqdm

    rows, results = [], {}
    jobs = [(p, t) for p in predictor_sets for t in targets.columns]
    for predictor, target_name in tqdm(jobs, desc="predictors", disable=not progress):
        k = n_select[predictor] if isinstance(n_select, Mapping) else n_select
        target = targets[target_name]
        result = loo_predict(predictor_sets[predictor], target, n_select=k)
        intervals = bootstrap_scores(result.measured, result.predictions, n_boot=n_boot, seed=seed)
        p_value = (
            loo_permutation_pvalue(predictor_sets[predictor], target, n_permutations, seed=seed, n_select=k)
            if n_permutations
            else float("nan")
        )
        row = {"predictor": predictor, "target": target_name, "r2": result.r2,
               "spearman": result.spearman, "kendall": result.kendall, "p_spearman": p_value}
        for name, (low, high) in intervals.items():
            row[f"{name}_low"], row[f"{name}_high"] = low, high
        rows.append(row)
        results[(predictor, target_name)] = result
    return pd.DataFrame(rows), results


def bootstrap_mean_score(
    results: Sequence[LOOResult],
    statistic: str = "spearman",
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """Mean of an out-of-sample score over several targets, with a bootstrap interval over models.

    Each bootstrap draw resamples the models once (with replacement) and recomputes the score of
    every target on that same resample, so the interval accounts for targets sharing models.

    Parameters
    ----------
    results : sequence of LOOResult
        One per target, all on the same models (e.g. one predictor on every task).
    statistic : {"r2", "spearman", "kendall"}

    Returns
    -------
    (mean, low, high) : tuple of float
    """
    if statistic not in ("r2", "spearman", "kendall"):
        raise ValueError(f"statistic must be 'r2', 'spearman' or 'kendall'; got {statistic!r}.")
    if not results:
        raise ValueError("results is empty: pass one LOOResult per target.")
    index = results[0].measured.index
    if any(not r.measured.index.equals(index) for r in results):
        raise ValueError("all results must cover the same models in the same order.")
    measured = np.column_stack([r.measured.to_numpy(dtype=np.float64) for r in results])  # (n_models, n_targets)
    predicted = np.column_stack([r.predictions.to_numpy(dtype=np.float64) for r in results])
    observed = float(np.mean(_score_columns(measured, predicted)[statistic]))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(index), size=(n_boot, len(index)))
    # one resample of models per draw, shared by every target: draws[b, t]
    draws = np.stack([_score_columns(measured[:, t][idx].T, predicted[:, t][idx].T)[statistic]
                      for t in range(measured.shape[1])], axis=1)
    low, high = _percentile_interval(np.nanmean(draws, axis=1), level)
    return observed, float(low), float(high)
