"""Reliability of measured scores: how much of their spread across models is not noise.

Chapter 05 asks it of every transfer target before predicting it: a target whose spread is mostly
test-set or seed noise cannot be ranked by any descriptor.

- across seeds: :func:`icc` (Shrout & Fleiss intraclass correlations; methods are targets, seeds
  raters);
- across test examples: :func:`split_half_reliability` and :func:`bootstrap_reliability` from
  per-example correctness, :func:`noise_reliability` from standard errors that come with the
  scores (e.g. :func:`binomial_standard_error`).
"""

from __future__ import annotations

import numpy as np

from .validation import check_choice

__all__ = [
    "ICC_KINDS",
    "icc",
    "split_half_reliability",
    "bootstrap_reliability",
    "noise_reliability",
    "binomial_standard_error",
]

#: Kinds of :func:`icc`.
ICC_KINDS: tuple[str, ...] = ("1", "1k", "2", "2k")


def icc(table, kind: str = "1k") -> float:
    """Intraclass correlation of a complete (targets x raters) table, Shrout & Fleiss (1979).

    Here targets are methods and raters are seeds: how reliably do seeds agree on a method's value
    (e.g. its transfer accuracy)? With ``MSR`` between methods, ``MSW`` within methods, ``MSC``
    between seeds and ``MSE`` the two-way residual, ``k`` seeds and ``n`` methods:

    - ``"1"``: ICC(1,1) ``(MSR - MSW) / (MSR + (k - 1) MSW)``, one seed's reliability;
    - ``"1k"``: ICC(1,k) ``(MSR - MSW) / MSR``, the reliability of a method's mean over k seeds;
    - ``"2"``: ICC(2,1) ``(MSR - MSE) / (MSR + (k - 1) MSE + k (MSC - MSE) / n)``;
    - ``"2k"``: ICC(2,k) ``(MSR - MSE) / (MSR + (MSC - MSE) / n)``.

    The default is ICC(1,k): seeds are nested in methods (seed 0 of one method has nothing to do
    with seed 0 of another), so the one-way model is the right one, and method means over k seeds
    are what the analyses use. The two-way kinds are for crossed raters.

    Parameters
    ----------
    table : array or DataFrame, shape (n_targets, k_raters)
        Complete: no NaN.
    kind : {"1", "1k", "2", "2k"}
    """
    check_choice(kind, ICC_KINDS, "ICC kind")
    y = np.asarray(table, dtype=np.float64)
    if y.ndim != 2 or y.shape[0] < 2 or y.shape[1] < 2 or not np.all(np.isfinite(y)):
        raise ValueError(f"table must be a complete (targets, raters) array with at least 2 of each; got {y.shape}.")
    n, k = y.shape
    grand = y.mean()
    row_means, col_means = y.mean(axis=1), y.mean(axis=0)
    msr = k * np.sum((row_means - grand) ** 2) / (n - 1)
    ss_within = np.sum((y - row_means[:, None]) ** 2)
    msw = ss_within / (n * (k - 1))
    ss_cols = n * np.sum((col_means - grand) ** 2)
    msc = ss_cols / (k - 1)
    mse = (ss_within - ss_cols) / ((n - 1) * (k - 1))
    value = {
        "1": (msr - msw) / (msr + (k - 1) * msw),
        "1k": (msr - msw) / msr,
        "2": (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n),
        "2k": (msr - mse) / (msr + (msc - mse) / n),
    }[kind]
    return float(value)


def _correct_matrix(correct) -> np.ndarray:
    correct = np.asarray(correct, dtype=np.float64)
    if correct.ndim != 2 or correct.shape[0] < 3 or correct.shape[1] < 4:
        raise ValueError(f"correct must be (n_models >= 3, n_examples >= 4) per-example correctness; got {correct.shape}.")
    return correct


def split_half_reliability(correct, n_splits: int = 200, seed: int = 0) -> tuple[float, np.ndarray]:
    """Split-half reliability of per-model accuracies, Spearman-Brown corrected, over random splits.

    Each split divides the test examples (the same split for every model) into two random halves;
    the Pearson correlation ``r`` across models of the two half-accuracies, stepped up to the full
    test set by Spearman-Brown ``2 r / (1 + r)``, says how much of the spread of accuracies across
    models is not test-set sampling noise.

    Parameters
    ----------
    correct : array, shape (n_models, n_examples)
        1 where a model classified an example correctly.
    n_splits : int
    seed : int

    Returns
    -------
    mean : float
        Mean of the corrected reliabilities.
    values : array, shape (n_splits,)
    """
    correct = _correct_matrix(correct)
    rng = np.random.default_rng(seed)
    half = correct.shape[1] // 2
    values = np.empty(n_splits)
    for i in range(n_splits):
        order = rng.permutation(correct.shape[1])
        a, b = correct[:, order[:half]].mean(axis=1), correct[:, order[half:2 * half]].mean(axis=1)
        r = np.corrcoef(a, b)[0, 1] if a.std() > 0 and b.std() > 0 else np.nan
        values[i] = 2 * r / (1 + r)
    return float(np.nanmean(values)), values


def bootstrap_reliability(correct, n_boot: int = 500, seed: int = 0) -> tuple[float, np.ndarray]:
    """Reliability of per-model accuracies from a bootstrap over test examples.

    Resampling examples (jointly for all models) gives each model's accuracy a standard error;
    reliability ``1 - mean(SE^2) / var(accuracy across models)`` is the share of the spread of
    accuracies that is not test-set noise.

    Returns
    -------
    reliability : float
    standard_errors : array, shape (n_models,)
    """
    correct = _correct_matrix(correct)
    rng = np.random.default_rng(seed)
    draws = np.stack([correct[:, rng.integers(0, correct.shape[1], correct.shape[1])].mean(axis=1)
                      for _ in range(n_boot)])  # (n_boot, n_models)
    se = draws.std(axis=0, ddof=1)
    spread = correct.mean(axis=1).var(ddof=1)
    return float(1 - np.mean(se**2) / spread) if spread > 0 else float("nan"), se


def binomial_standard_error(accuracy, n_test) -> np.ndarray:
    """Standard error of an accuracy measured on ``n_test`` independent test examples.

    ``sqrt(a (1 - a) / n)``: the bootstrap over test examples of a fixed classifier converges to it
    (the bootstrap SD is ``sqrt(a (1 - a) / n)`` exactly in expectation over resamples, up to
    Monte Carlo error).

    Parameters
    ----------
    accuracy : array, shape (n_models,)
    n_test : int or array, shape (n_models,)
    """
    accuracy = np.asarray(accuracy, dtype=np.float64)
    n_test = np.asarray(n_test, dtype=np.float64)
    if np.any((accuracy < 0) | (accuracy > 1)) or np.any(n_test < 1):
        raise ValueError("accuracy must lie in [0, 1] and n_test be at least 1.")
    return np.sqrt(accuracy * (1 - accuracy) / n_test)


def noise_reliability(scores, standard_errors) -> float:
    """Share of the spread of scores across models that is not measurement noise.

    ``1 - mean(SE^2) / var(scores)`` (``var`` with ``ddof=1``): the classical reliability of a
    measurement whose error variance per model is ``SE^2``, the ceiling of the squared correlation
    any predictor can reach with the measured scores. It is what :func:`bootstrap_reliability`
    computes from per-example correctness, written for measurements that come with their own
    standard errors (test-set sampling of a linear probe: :func:`binomial_standard_error`; few-shot
    episodes: the SE of the episode mean). Negative values (noise larger than the spread) are
    returned as they are: such a target cannot be ranked.

    Parameters
    ----------
    scores : array, shape (n_models,)
    standard_errors : array, shape (n_models,)

    Returns
    -------
    float
        NaN when the scores do not vary.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    se = np.asarray(standard_errors, dtype=np.float64).reshape(-1)
    if len(scores) < 2 or se.shape != scores.shape or not (np.all(np.isfinite(scores)) and np.all(np.isfinite(se))):
        raise ValueError(f"need at least 2 finite scores and one finite standard error each; got {scores.shape}, {se.shape}.")
    spread = scores.var(ddof=1)
    return float(1 - np.mean(se**2) / spread) if spread > 0 else float("nan")
