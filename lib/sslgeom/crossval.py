"""Claim 2, geometry predicts transfer: leave-one-method-out prediction, calibrated against its own null.

A method's seeds, budget checkpoints and backbones are near-copies of one another, so a model's
transfer is easy to "predict" from its siblings. The unit of every step here is the method:

- :func:`lomo_predict` predicts each model with every model of its method held out together
  (standardise + ridge, optional descriptor selection, all inside the fold; the pipeline of
  :mod:`sslgeom.prediction`), pooling backbones or restricted to one;
- :func:`calibrated_score` runs the identical pipeline on targets permuted at the method level
  (whole methods' target vectors move together) and reports the observed score minus the mean of
  that null, which is zero on average when descriptors do not predict the target;
- :func:`direct_score` scores a single-number baseline with a sign fixed in advance, no fitting;
- :func:`paired_comparison` compares two predictors: a bootstrap over methods that refits
  everything and a paired permutation test that swaps their predictions per method;
- :func:`correlation_power` finds the smallest true correlation these tests detect with 80% power.

The design (one row per model) is a manifest: columns ``method, backbone, seed,
budget_fraction``, indexed by model name (or with a ``name`` column).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .design import unit_permutations
from .prediction import RIDGE_ALPHAS, SCORES, _average_ranks, _ridge_fit, _score_columns, _select_columns
from .stats import exact_pvalue, permutation_pvalue
from .validation import check_choice, check_int

__all__ = [
    "POSITION_COLUMNS",
    "lomo_predict",
    "CalibratedScore",
    "calibrated_score",
    "direct_score",
    "PairedComparison",
    "paired_comparison",
    "correlation_power",
]

#: Columns that locate a model within its method: permuted targets are matched on them.
POSITION_COLUMNS: tuple[str, ...] = ("backbone", "seed", "budget_fraction")


# ---------------------------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------------------------

def _unit_cv_columns(
    x: np.ndarray, y: np.ndarray, unit_codes: np.ndarray, n_select: int | None, alphas: Sequence[float]
) -> np.ndarray:
    """Leave-one-unit-out predictions of every column of ``y`` (n, m) from ``x`` (n, p).

    For each unit, using the other units' rows only: keep the ``n_select`` descriptors with the
    largest absolute Spearman correlation with the target (all when ``None``), standardise them, fit a ridge whose
    penalty is chosen by exact leave-one-*model*-out within the training units
    (:func:`sslgeom.prediction._ridge_fit`; it never sees the held-out unit), and predict the
    unit's rows. Target columns are independent problems batched together.
    """
    n_rows, n_targets = y.shape
    predictions = np.empty((n_rows, n_targets))
    select = n_select is not None and n_select < x.shape[1]
    for unit in np.unique(unit_codes):
        test = unit_codes == unit
        x_train, y_train = x[~test], y[~test]
        if select:
            columns = _select_columns(x_train, y_train, n_select)  # (m, k)
        else:
            columns = np.broadcast_to(np.arange(x.shape[1]), (n_targets, x.shape[1]))
        chosen = x_train[:, columns].transpose(1, 0, 2)  # (m, n_train, k)
        mean, std = chosen.mean(axis=1), chosen.std(axis=1)
        std[std == 0] = 1.0
        coef, intercept, _ = _ridge_fit((chosen - mean[:, None, :]) / std[:, None, :], y_train.T, alphas)
        x_test = (x[test][:, columns].transpose(1, 0, 2) - mean[:, None, :]) / std[:, None, :]  # (m, n_test, k)
        predictions[test] = (np.einsum("mtk,mk->mt", x_test, coef) + intercept[:, None]).T
    return predictions


def _design_table(design: pd.DataFrame) -> pd.DataFrame:
    table = design.set_index("name", drop=False) if "name" in design.columns else design
    missing = [c for c in ("method", *POSITION_COLUMNS) if c not in table.columns]
    if missing:
        raise ValueError(f"design lacks column(s) {missing}; pass the zoo manifest (one row per model).")
    return table


@dataclass(frozen=True)
class _Problem:
    """Validated inputs of one prediction problem: rows are models."""

    index: pd.Index
    x: np.ndarray  # (n, p)
    y: np.ndarray  # (n,)
    units: np.ndarray  # (n,) unit codes
    positions: list  # (n,) position keys within units
    names: np.ndarray  # (n_units,) unit names


def _problem(
    descriptors: pd.DataFrame | pd.Series, target: pd.Series, design: pd.DataFrame, backbone: str | None, unit: str
) -> _Problem:
    """Align descriptors, target and design on the target's models (restricted to ``backbone``)."""
    if isinstance(descriptors, pd.Series):
        descriptors = descriptors.to_frame()
    if not isinstance(descriptors, pd.DataFrame) or not isinstance(target, pd.Series):
        raise TypeError("descriptors must be a DataFrame (or Series) and target a Series, both indexed by model name.")
    table = _design_table(design)
    if unit not in table.columns:
        raise ValueError(f"design has no column {unit!r} to use as the unit.")
    models = target.index
    missing = sorted(set(models) - set(table.index)) + sorted(set(models) - set(descriptors.index))
    if missing:
        raise ValueError(f"model(s) {missing[:5]} have a target but no design row or descriptors.")
    if backbone is not None:
        models = models[table.loc[models, "backbone"].to_numpy() == backbone]
    rows = table.loc[models]
    x = descriptors.loc[models].to_numpy(dtype=np.float64)
    y = target.loc[models].to_numpy(dtype=np.float64)
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("descriptors and target must be finite for every model used.")
    names, codes = np.unique(rows[unit].to_numpy(), return_inverse=True)
    if len(names) < 3:
        raise ValueError(f"leave-one-{unit}-out needs at least 3 units; got {len(names)}.")
    positions = list(zip(*(rows[c].tolist() for c in POSITION_COLUMNS)))
    return _Problem(pd.Index(models), x, y, codes, positions, names)


def lomo_predict(
    descriptors: pd.DataFrame | pd.Series,
    target: pd.Series,
    design: pd.DataFrame,
    *,
    backbone: str | None = None,
    unit: str = "method",
    n_select: int | None = None,
    alphas: Sequence[float] = RIDGE_ALPHAS,
) -> pd.Series:
    """Leave-one-method-out predictions: every model of the held-out method leaves together.

    Parameters
    ----------
    descriptors : pandas.DataFrame, shape (n_models, n_descriptors), or Series
        Index: model names.
    target : pandas.Series, shape (n_models,)
        The models to use are those of its index.
    design : pandas.DataFrame
        Manifest rows (see the module docstring).
    backbone : str, optional
        Restrict to models of this backbone (e.g. the main one); ``None`` pools backbones.
    unit : str
        Design column whose values leave together.
    n_select : int, optional
        Descriptors kept per fold by absolute Spearman correlation with the target on the training units (``None``: all).
    alphas : sequence of float
        Ridge penalties.

    Returns
    -------
    pandas.Series
        Out-of-sample prediction per model.
    """
    problem = _problem(descriptors, target, design, backbone, unit)
    predictions = _unit_cv_columns(problem.x, problem.y[:, None], problem.units, n_select, alphas)
    return pd.Series(predictions[:, 0], index=problem.index, name="predicted")


# ---------------------------------------------------------------------------------------------
# Scores calibrated against their permutation null
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CalibratedScore:
    """A score beside its permutation null.

    Attributes
    ----------
    observed : float
        The score (e.g. Spearman) of the real predictions.
    null_mean, null_sd : float
        Mean and SD of the same score on method-level permuted targets, same pipeline.
    calibrated : float
        ``observed - null_mean``: zero on average under the null (see :func:`calibrated_score`).
    p_value : float
        One-sided, ``(1 + #{null >= observed}) / (1 + B)``.
    n_permutations : int
    null : array, shape (n_permutations,)
    """

    observed: float
    null_mean: float
    null_sd: float
    calibrated: float
    p_value: float
    n_permutations: int
    null: np.ndarray = field(repr=False)


def _calibrate(values: np.ndarray) -> CalibratedScore:
    """Row 0 observed, rows 1.. null."""
    observed, null = float(values[0]), values[1:]
    null_mean = float(np.nanmean(null))
    return CalibratedScore(observed, null_mean, float(np.nanstd(null)), observed - null_mean,
                           float(permutation_pvalue(observed, null)), len(null), null)


def _permuted_targets(problem: _Problem, n_permutations: int, seed: int) -> np.ndarray:
    """The target and its method-level permutations as columns: (n, 1 + B)."""
    index = unit_permutations(problem.units, n_permutations, seed, positions=problem.positions)
    return np.column_stack([problem.y, problem.y[index].T])


def calibrated_score(
    descriptors: pd.DataFrame | pd.Series,
    target: pd.Series,
    design: pd.DataFrame,
    *,
    backbone: str | None = None,
    unit: str = "method",
    n_select: int | None = None,
    alphas: Sequence[float] = RIDGE_ALPHAS,
    statistic: str = "spearman",
    n_permutations: int = 199,
    seed: int = 0,
) -> CalibratedScore:
    """Out-of-sample score of a predictor, beside the same pipeline's score on permuted targets.

    Targets are permuted at the method level (:func:`sslgeom.design.unit_permutations`: whole
    methods' target vectors move together, matched on backbone, seed and budget), and each
    permutation goes through the identical pipeline (:func:`lomo_predict` with the same
    selection and penalties).

    The reported score is ``calibrated = observed - mean(null)``. Why: cross-validated scores are
    biased even when descriptors carry no information. Holding a method out moves the training
    mean away from its targets, so leave-out predictions anti-correlate with the truth (the LOO
    shrinkage bias: a mean Spearman of -0.45 with one descriptor on the synthetic zoo design of 8
    methods, -0.16 with 2 of 25 descriptors selected in-fold); its size depends on the number
    of methods, the descriptors, the selection and the penalty grid. The permutation null
    goes through the same pipeline on targets with the same method-level structure, so under the
    null hypothesis (methods' targets exchangeable, descriptors uninformative) it has the same
    expectation as the observed score, and the difference has expectation zero; it needs no model
    of where the bias comes from. The raw ``observed`` stays beside it.

    Parameters
    ----------
    descriptors, target, design, backbone, unit, n_select, alphas
        As in :func:`lomo_predict`.
    statistic : {"spearman", "kendall", "r2"}
    n_permutations : int
    seed : int

    Returns
    -------
    CalibratedScore
    """
    check_choice(statistic, SCORES, "statistic")
    check_int(n_permutations, "n_permutations", minimum=1)
    problem = _problem(descriptors, target, design, backbone, unit)
    targets = _permuted_targets(problem, n_permutations, seed)
    predictions = _unit_cv_columns(problem.x, targets, problem.units, n_select, alphas)
    return _calibrate(_score_columns(targets, predictions)[statistic])


def direct_score(
    baseline: pd.Series,
    target: pd.Series,
    design: pd.DataFrame,
    *,
    sign: int = 1,
    backbone: str | None = None,
    unit: str = "method",
    statistic: str = "spearman",
    n_permutations: int = 999,
    seed: int = 0,
) -> CalibratedScore:
    """Score a single-number baseline directly: ``sign * baseline`` as the prediction, nothing fitted.

    The direction is fixed in advance (e.g. ``+1`` for RankMe: higher rank, better transfer), so
    no fold sees the targets and there is no cross-validation bias; the method-level permutation
    null (as in :func:`calibrated_score`) gives the p-value, and its mean (about zero) is reported
    for symmetry with the fitted predictors. To score the baseline through the same cross-validation
    as the geometry, pass it to :func:`calibrated_score`.

    Parameters
    ----------
    baseline : pandas.Series, shape (n_models,)
    target, design, backbone, unit
        As in :func:`lomo_predict`.
    sign : {1, -1}
    statistic : {"spearman", "kendall", "r2"}
        ``"r2"`` compares raw values and is rarely meaningful for a baseline on another scale.
    n_permutations, seed

    Returns
    -------
    CalibratedScore
    """
    if sign not in (1, -1):
        raise ValueError(f"sign must be 1 or -1; got {sign!r}.")
    check_choice(statistic, SCORES, "statistic")
    problem = _problem(baseline, target, design, backbone, unit)
    targets = _permuted_targets(problem, n_permutations, seed)
    prediction = np.repeat(sign * problem.x[:, :1], targets.shape[1], axis=1)
    return _calibrate(_score_columns(targets, prediction)[statistic])


# ---------------------------------------------------------------------------------------------
# Two predictors compared
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PairedComparison:
    """Outcome of :func:`paired_comparison` (``a`` minus ``b``).

    Attributes
    ----------
    score_a, score_b, difference : float
        Out-of-sample scores and their difference.
    low, high : float
        Percentile bootstrap interval of the difference (methods resampled, everything refitted).
    p_value : float
        Two-sided paired permutation p-value (predictions swapped per method).
    null : array, shape (n_swaps,)
        ``|statistic|`` of each swap pattern (the additive form, see :func:`paired_comparison`).
    exact : bool
        Whether every swap pattern was enumerated.
    boot : array, shape (n_boot,)
    """

    score_a: float
    score_b: float
    difference: float
    low: float
    high: float
    p_value: float
    exact: bool
    boot: np.ndarray = field(repr=False)
    null: np.ndarray = field(repr=False)


def _unit_advantage(
    y: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, units: np.ndarray, n_units: int, statistic: str
) -> np.ndarray:
    """Per unit, its additive share of ``score_a - score_b``: (n_units,).

    Spearman: ``rho = 1 - 6 sum d_i^2 / (n (n^2 - 1))`` with ``d_i`` the rank difference of model
    ``i`` (exact without ties), so ``rho_a - rho_b`` is proportional to ``sum_i (d_bi^2 - d_ai^2)``,
    a sum over models of terms that change sign when a model's two ranks are swapped. R^2: the
    same with squared errors. Ranks are taken once, per predictor, before any swap.
    """
    if statistic == "spearman":
        rank = lambda v: _average_ranks(v)  # noqa: E731
        ry = rank(y)
        loss_a, loss_b = (rank(pred_a) - ry) ** 2, (rank(pred_b) - ry) ** 2
    else:
        loss_a, loss_b = (y - pred_a) ** 2, (y - pred_b) ** 2
    return np.bincount(units, weights=loss_b - loss_a, minlength=n_units)


def _swap_patterns(n_units: int, max_enumerate: int, n_permutations: int, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """Which units swap predictions: all 2^u patterns when few (exact), else random ones. (n_patterns, n_units) bool."""
    if 2**n_units <= max_enumerate:
        patterns = (np.arange(2**n_units)[:, None] >> np.arange(n_units)) & 1
        return patterns.astype(bool), True
    return rng.integers(0, 2, size=(n_permutations, n_units)).astype(bool), False


def paired_comparison(
    descriptors_a: pd.DataFrame | pd.Series,
    descriptors_b: pd.DataFrame | pd.Series,
    target: pd.Series,
    design: pd.DataFrame,
    *,
    backbone: str | None = None,
    unit: str = "method",
    n_select_a: int | None = None,
    n_select_b: int | None = None,
    alphas: Sequence[float] = RIDGE_ALPHAS,
    statistic: str = "spearman",
    n_boot: int = 200,
    level: float = 0.95,
    max_enumerate: int = 4096,
    n_permutations: int = 999,
    seed: int = 0,
) -> PairedComparison:
    """Is predictor ``a`` better than ``b``? Difference of out-of-sample scores, interval and p-value.

    - Interval: each bootstrap draw resamples methods with replacement (a method drawn twice
      brings two copies of all its models, which leave their fold together) and reruns both
      cross-validations from scratch, selection and penalty included, so the interval carries the
      refitting noise as well as which methods happen to be in the zoo.
    - p-value: under the null hypothesis that the two predictors are interchangeable, swapping
      their held-out predictions for all models of a method leaves the distribution unchanged.
      The test statistic is the additive form of the difference (for Spearman, the sum over
      models of ``d_b^2 - d_a^2``, rank differences to the target, each predictor ranked once;
      for R^2, of squared errors), so a swap flips the sign of exactly that method's term; the
      p-value counts sign patterns (all ``2^n_methods`` when at most ``max_enumerate``: exact)
      with ``|statistic| >= |observed|``. Swapping raw predictions and recomputing the
      correlation would not be a sign flip (the correlation compares methods in pairs, and
      mixes two predictors' scales): on the zoo design it rejected a true null 17% (two equally
      informative predictors) and 47% (two uninformative ones) of the time at the 5% level.
    - How exact: predictions are not refitted after a swap, yet a fitted predictor's
      prediction for one method depends on the others' data, which makes the methods' terms
      positively correlated. Measured type-I rates at the 5% level (8 methods x 10 models,
      100-300 simulations each): 0.043 for fixed, unfitted predictions; 0.015-0.03 for two
      uninformative fitted predictors; 0.06-0.11 for two equally informative fitted ones. So
      read a p-value near 0.05 with that in mind, beside the bootstrap interval (whose 95%
      version excluded 0 in 9 of 100 such simulations).

    The difference is of raw scores; each score's own null bias (see :func:`calibrated_score`)
    differs between predictors with different numbers of descriptors, so read the difference
    beside the two calibrated scores.

    Parameters
    ----------
    descriptors_a, descriptors_b : DataFrame or Series, indexed by model
    target, design, backbone, unit, alphas
        As in :func:`lomo_predict`.
    n_select_a, n_select_b : int, optional
        In-fold selection of each predictor.
    statistic : {"spearman", "r2"}
    n_boot : int
    level : float
    max_enumerate, n_permutations : int
    seed : int

    Returns
    -------
    PairedComparison
    """
    check_choice(statistic, ("spearman", "r2"), "statistic")
    a = _problem(descriptors_a, target, design, backbone, unit)
    b = _problem(descriptors_b, target, design, backbone, unit)
    y = a.y[:, None]
    pred_a = _unit_cv_columns(a.x, y, a.units, n_select_a, alphas)[:, 0]
    pred_b = _unit_cv_columns(b.x, y, b.units, n_select_b, alphas)[:, 0]
    score = lambda p: _score_columns(np.broadcast_to(y, p.shape), p)[statistic]  # noqa: E731
    score_a, score_b = float(score(pred_a[:, None])[0]), float(score(pred_b[:, None])[0])
    difference = score_a - score_b

    rng = np.random.default_rng(seed)
    patterns, exact = _swap_patterns(len(a.names), max_enumerate, n_permutations, rng)
    per_unit = _unit_advantage(a.y, pred_a, pred_b, a.units, len(a.names), statistic)  # (n_units,)
    signs = np.where(patterns, -1.0, 1.0)  # swapping a method's predictions flips its term
    null = np.abs(signs @ per_unit)
    observed = abs(per_unit.sum())
    p_value = exact_pvalue(observed, null) if exact else float(permutation_pvalue(observed, null))

    rows_of = [np.flatnonzero(a.units == u) for u in range(len(a.names))]
    boot = np.full(n_boot, np.nan)
    for i in range(n_boot):
        drawn = rng.integers(0, len(a.names), len(a.names))
        if len(np.unique(drawn)) < 3:  # too few distinct methods to leave one out
            continue
        rows = np.concatenate([rows_of[u] for u in drawn])
        codes = a.units[rows]  # copies of a method keep its code: they leave together
        yb = a.y[rows][:, None]
        pa = _unit_cv_columns(a.x[rows], yb, codes, n_select_a, alphas)
        pb = _unit_cv_columns(b.x[rows], yb, codes, n_select_b, alphas)
        boot[i] = _score_columns(yb, pa)[statistic][0] - _score_columns(yb, pb)[statistic][0]
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(boot, [tail, 100 - tail])
    return PairedComparison(score_a, score_b, difference, float(low), float(high), float(p_value), exact, boot, null)


# ---------------------------------------------------------------------------------------------
# Power
# ---------------------------------------------------------------------------------------------

def correlation_power(
    design: pd.DataFrame,
    correlations: Sequence[float] = (0.0, 0.3, 0.5, 0.7, 0.9),
    *,
    noise_x: float = 0.5,
    noise_y: float = 0.5,
    mode: str = "cv",
    unit: str = "method",
    n_sim: int = 100,
    n_permutations: int = 99,
    alpha: float = 0.05,
    target_power: float = 0.8,
    seed: int = 0,
) -> tuple[pd.DataFrame, float]:
    """Power of the claim-2 test against a true correlation between methods' descriptor and transfer.

    Each simulation draws, per method, a latent descriptor and transfer value with correlation
    ``rho`` (standard normal), and per model adds seed-level noise with SD ``noise_x`` and
    ``noise_y`` (in units of the between-method SD; the model-level correlation is therefore
    ``rho / sqrt((1 + noise_x^2) (1 + noise_y^2))``). The test is the one the chapter runs:
    ``mode="cv"``, the leave-one-method-out ridge on the descriptor with the method-level
    permutation p-value (:func:`calibrated_score`); ``mode="direct"``, the fixed-sign Spearman
    (:func:`direct_score`).

    Parameters
    ----------
    design : pandas.DataFrame
        Manifest rows of the models used (see the module docstring).
    correlations : sequence of float
        True method-level correlations, in [0, 1).
    noise_x, noise_y : float
    mode : {"cv", "direct"}
    unit : str
    n_sim, n_permutations : int
    alpha, target_power : float
    seed : int

    Returns
    -------
    curve : pandas.DataFrame
        One row per correlation: ``rho, power, low, high`` (95% Wilson interval).
    minimal_rho : float
        Smallest grid correlation with power at least ``target_power`` (NaN if none).
    """
    from statsmodels.stats.proportion import proportion_confint

    check_choice(mode, ("cv", "direct"), "mode")
    check_int(n_sim, "n_sim", minimum=1)
    table = _design_table(design)
    names, codes = np.unique(table[unit].to_numpy(), return_inverse=True)
    rng = np.random.default_rng(seed)
    rows = []
    for rho in correlations:
        rejections = 0
        for _ in range(n_sim):
            latent = rng.multivariate_normal([0.0, 0.0], [[1.0, rho], [rho, 1.0]], size=len(names))
            x = latent[codes, 0] + noise_x * rng.normal(size=len(codes))
            y = pd.Series(latent[codes, 1] + noise_y * rng.normal(size=len(codes)), index=table.index)
            descriptor = pd.Series(x, index=table.index)
            kwargs = dict(unit=unit, n_permutations=n_permutations, seed=int(rng.integers(2**32)))
            if mode == "cv":
                result = calibrated_score(descriptor, y, table, **kwargs)
            else:
                result = direct_score(descriptor, y, table, **kwargs)
            rejections += result.p_value <= alpha
        low, high = proportion_confint(rejections, n_sim, alpha=0.05, method="wilson")
        rows.append({"rho": float(rho), "power": rejections / n_sim, "low": low, "high": high})
    curve = pd.DataFrame(rows)
    powered = curve.loc[curve["power"] >= target_power, "rho"]
    return curve, float(powered.min()) if len(powered) else float("nan")
