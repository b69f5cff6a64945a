"""Prediction of a per-model score from per-model descriptors, and its statistics.

:func:`loo_predict` regresses a transfer score on descriptors with leave-one-model-out
cross-validation (descriptor selection and scaling inside the loop, ridge penalty by an inner exact
leave-one-out); :func:`regression_scores` scores the out-of-sample predictions (R^2, Spearman,
Kendall); :func:`bootstrap_scores` and :func:`bootstrap_mean_score` give intervals over models;
:func:`loo_permutation_pvalue` reruns the whole procedure on shuffled targets; and
:func:`compare_predictors` runs all of it for several descriptor sets and targets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .stats import permutation_pvalue
from .validation import check_choice, check_features, check_int

__all__ = [
    "RIDGE_ALPHAS",
    "SCORES",
    "LOOResult",
    "loo_predict",
    "regression_scores",
    "bootstrap_scores",
    "bootstrap_mean_score",
    "loo_permutation_pvalue",
    "compare_predictors",
]

#: Ridge penalties the inner leave-one-out chooses from.
RIDGE_ALPHAS: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0, 100.0)
#: Names of the out-of-sample scores (keys of :func:`regression_scores`).
SCORES: tuple[str, ...] = ("r2", "spearman", "kendall")


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
    """For each target column, the ``n_select`` columns of ``x`` with the largest absolute Spearman correlation with it.

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
    the largest absolute Spearman correlation with the target, standardise them, fit a ridge regression
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
    *,
    n_select: int = 2,
    alphas: Sequence[float] = RIDGE_ALPHAS,
) -> float:
    """Permutation p-value of an out-of-sample score: rerun the whole LOO on shuffled targets.

    The target and its ``n_permutations`` shuffles go through :func:`loo_predict`'s procedure (with
    the same ``n_select`` and ``alphas``) as one batch, each column on its own. The p-value is
    :func:`sslgeom.stats.permutation_pvalue`, ``(1 + #{null >= observed}) / (1 + n_permutations)``
    (one-sided: better than chance).

    Parameters
    ----------
    descriptors : pandas.DataFrame, shape (n_models, n_descriptors)
    target : pandas.Series, shape (n_models,)
    n_permutations : int
        Shuffles of the target, at least 1.
    seed : int
        Seeds the shuffles.
    statistic : {"r2", "spearman", "kendall"}
    n_select, alphas
        As in :func:`loo_predict`.
    """
    check_choice(statistic, SCORES, "statistic")
    check_int(n_permutations, "n_permutations", minimum=1)
    x, y, n_select = _loo_inputs(descriptors, target, n_select)
    rng = np.random.default_rng(seed)
    targets = np.column_stack([y] + [rng.permutation(y) for _ in range(n_permutations)])
    predictions, _, _ = _loo_columns(x, targets, n_select, alphas)
    values = _score_columns(targets, predictions)[statistic]
    return permutation_pvalue(values[0], values[1:])


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
    check_choice(statistic, SCORES, "statistic")
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
