"""Claim 2, geometry predicts transfer: the leave-one-method-out predictions of :mod:`sslgeom.lomo`, calibrated against their own null.

The unit of every step here is the method (a method's seeds, budget checkpoints and backbones
are near-copies of one another):

- :func:`score_targets` runs the pipeline of :func:`sslgeom.lomo.lomo_predict` on targets
  permuted at the method level (whole methods' target vectors move together) and reports the
  observed score minus the mean of that null, which is zero on average when descriptors do not
  predict the target; a single-number baseline with a sign fixed in advance
  (``PipelineOptions(sign=...)``) is scored the same way, nothing fitted. One target or several
  at once, with one set of permutations shared by all targets, so that their mean score has a
  null and a p-value of its own; it also reports how often each descriptor was selected and, on
  request, a bootstrap interval over methods that refits everything;
- :func:`paired_comparison` compares two predictors: a bootstrap over methods that refits
  everything and a paired permutation test that swaps their predictions per method
  (:class:`sslgeom.design.MethodPermutations`);
- :func:`correlation_power` finds the smallest true correlation these tests detect with 80% power
  (:class:`sslgeom.stats.PowerSimulation`);
  :func:`effective_descriptors` says how many independent descriptors a correlated set is worth,
  for the power simulation.

The options of a predictor (:class:`sslgeom.lomo.PipelineOptions`) and what it is evaluated on
(:class:`sslgeom.lomo.Evaluation`) are those of :mod:`sslgeom.lomo`; the design is the manifest
described there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .design import MethodPermutations, unit_permutations
from .lomo import Evaluation, PipelineOptions, _design_table, _predict_columns, _problem, _Problem
from .prediction import _average_ranks, _percentile_interval, _score_columns
from .stats import (PowerSimulation, exact_pvalue, participation_ratio, permutation_pvalue, power_curve,
                    varying_columns)
from .validation import check_choice, check_float, check_int

__all__ = [
    "CalibratedScore",
    "PairedComparison",
    "paired_comparison",
    "correlation_power",
    "ScoreSet",
    "score_targets",
    "effective_descriptors",
    "PAIRED_SWAPS",
]

#: The swap patterns of :func:`paired_comparison`: all ``2^n_methods`` sign patterns when at most
#: 4,096 (exact; the zoo's 8 methods give 256), else 999 random ones. ``dataclasses.replace(
#: PAIRED_SWAPS, seed=s)`` keeps the rule and changes the seed.
PAIRED_SWAPS: MethodPermutations = MethodPermutations(max_enumerate=4096, n_permutations=999)

# ---------------------------------------------------------------------------------------------
# Scores calibrated against their permutation null, for one target or several at once
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
        ``observed - null_mean``: zero on average under the null (see :func:`score_targets`).
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


@dataclass(frozen=True)
class ScoreSet:
    """One predictor on several targets: each target's score beside its null, and their mean.

    Attributes
    ----------
    per_target : dict of str to CalibratedScore
        One entry per target column.
    mean : CalibratedScore
        The mean of the targets' scores; its null is the mean over targets of each permutation's
        scores (one method permutation is applied to every target at once), so its p-value tests
        the targets jointly.
    predictions : pandas.DataFrame, shape (n_models, n_targets)
        Out-of-sample predictions of the real targets.
    selected : pandas.DataFrame, shape (n_descriptors, n_targets)
        Fraction of folds in which each descriptor was kept (all ones without selection; empty for
        a fixed-sign baseline).
    mean_interval : tuple of float
        Percentile bootstrap interval over methods of the *calibrated* mean score (``n_boot``
        draws, everything refitted, minus ``mean.null_mean``); NaN without a bootstrap.
    boot : array, shape (n_boot,)
        The draws of the raw mean score (NaN for draws with fewer than 3 distinct methods).
    """

    per_target: dict
    mean: CalibratedScore
    predictions: pd.DataFrame
    selected: pd.DataFrame
    mean_interval: tuple[float, float] = (float("nan"), float("nan"))
    boot: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)

    def table(self) -> pd.DataFrame:
        """One row per target and one for ``"mean"``: ``observed, null_mean, null_sd, calibrated, p_value, n_permutations``."""
        rows = {**self.per_target, "mean": self.mean}
        return pd.DataFrame({name: {"observed": s.observed, "null_mean": s.null_mean, "null_sd": s.null_sd,
                                    "calibrated": s.calibrated, "p_value": s.p_value,
                                    "n_permutations": s.n_permutations} for name, s in rows.items()}).T


def _as_targets(targets: pd.Series | pd.DataFrame) -> pd.DataFrame:
    if isinstance(targets, pd.Series):
        return targets.to_frame(targets.name if targets.name is not None else "target")
    if not isinstance(targets, pd.DataFrame) or targets.shape[1] == 0:
        raise TypeError("targets must be a Series or a DataFrame (models x targets) with at least one column.")
    return targets


def _targets_problem(
    descriptors: pd.DataFrame | pd.Series, targets: pd.DataFrame, design: pd.DataFrame, evaluation: Evaluation
) -> tuple[_Problem, np.ndarray]:
    """The problem of the first target, and every target's values on its rows: (n, n_targets)."""
    problem = _problem(descriptors, targets.iloc[:, 0], design, evaluation)
    y = targets.loc[problem.index].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(y)):
        raise ValueError("every target must be finite for every model used.")
    return problem, y


def score_targets(
    descriptors: pd.DataFrame | pd.Series,
    targets: pd.Series | pd.DataFrame,
    design: pd.DataFrame,
    *,
    options: PipelineOptions = PipelineOptions(),
    evaluation: Evaluation = Evaluation(),
    n_permutations: int = 199,
    n_boot: int = 0,
    level: float = 0.95,
    seed: int = 0,
) -> ScoreSet:
    """A predictor's out-of-sample score on each target and on their mean, beside its method-level permutation null.

    Targets are permuted at the method level (:func:`sslgeom.design.unit_permutations`: whole
    methods' target vectors move together, matched on backbone, seed and budget), and every
    target and every one of its ``n_permutations`` permutations goes through the identical
    pipeline (:func:`sslgeom.lomo.lomo_predict` with the same options); the permutations are the same for
    every target (they depend only on the design and ``seed``), so the mean of the targets' scores
    has a null of its own. With a fitted ``options`` the predictor is the leave-one-method-out
    ridge with in-fold selection; with ``options.sign`` set it is one number per model used as it
    is, ``sign * baseline``, its direction fixed in advance (e.g. ``+1`` for RankMe: higher rank,
    better transfer): no fold sees the targets, so there is no cross-validation bias, the null
    gives the p-value and its mean (about zero) is reported for symmetry with the fitted
    predictors. To score such a baseline through the same cross-validation as the geometry
    instead, pass it with fitted options.

    With ``n_boot > 0`` the mean score also gets an interval: each draw resamples methods with
    replacement (a method drawn twice brings two copies of all its models, which leave their fold
    together), reruns the whole pipeline (selection, penalty, fit; nothing for a fixed-sign
    baseline) on every target and records the mean over targets of the score. The interval of the
    calibrated score subtracts the null mean from the draws' percentiles: the null's bias is taken
    as fixed, since it depends on the design, which a draw changes only by which methods are
    repeated.

    Each score is reported as ``calibrated = observed - mean(null)``. Why: cross-validated scores
    are biased even when descriptors carry no information. Holding a method out moves the training
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
    descriptors : DataFrame (n_models, n_descriptors) or Series
    targets : Series or DataFrame, shape (n_models, n_targets)
        Index: the models to use. One target: ``result.per_target`` has one entry, and
        ``result.mean`` equals it.
    design, options
        As in :func:`sslgeom.lomo.lomo_predict`.
    evaluation : Evaluation
        The models used, the unit permuted and left out together, and the score; a ``statistic`` of
        ``"r2"`` compares raw values and is rarely meaningful for a fixed-sign baseline on another scale.
    n_permutations : int
    n_boot : int
        Bootstrap draws over methods for the interval of the mean score; 0 skips the bootstrap.
    level : float
        Level of that interval.
    seed : int
        Seed of the permutations and, independently, of the bootstrap draws.

    Returns
    -------
    ScoreSet
    """
    check_int(n_permutations, "n_permutations", minimum=1)
    check_int(n_boot, "n_boot", minimum=0)
    targets = _as_targets(targets)
    problem, y = _targets_problem(descriptors, targets, design, evaluation)
    index = unit_permutations(problem.units, n_permutations, seed, positions=problem.positions)  # (B, n)
    width = 1 + n_permutations
    stacked = np.concatenate([np.column_stack([y[:, t], y[index, t].T]) for t in range(y.shape[1])], axis=1)
    counts = np.zeros((stacked.shape[1], problem.x.shape[1]), dtype=np.int64) if options.sign is None else None
    predictions = _predict_columns(problem, stacked, options, counts)
    scores = _score_columns(stacked, predictions)[evaluation.statistic].reshape(y.shape[1], width)
    per_target = {name: _calibrate(scores[t]) for t, name in enumerate(targets.columns)}
    columns = (descriptors.columns if isinstance(descriptors, pd.DataFrame) else [descriptors.name])
    if counts is None:
        selected = pd.DataFrame(index=pd.Index([], name="descriptor"), columns=targets.columns, dtype=float)
    else:
        selected = pd.DataFrame(counts[::width].T / len(problem.names), index=pd.Index(columns, name="descriptor"),
                                columns=targets.columns)
    with np.errstate(all="ignore"):
        mean_scores = np.nanmean(scores, axis=0)
    mean = _calibrate(mean_scores)
    boot = _bootstrap_mean(problem, y, options, evaluation.statistic, n_boot, seed)
    low, high = _interval(boot, check_float(level, "level", 0.0, 1.0)) if n_boot else (float("nan"), float("nan"))
    return ScoreSet(per_target, mean,
                    pd.DataFrame(predictions[:, ::width], index=problem.index, columns=targets.columns), selected,
                    (low - mean.null_mean, high - mean.null_mean), boot)


# ---------------------------------------------------------------------------------------------
# Bootstraps over methods, refitting everything
# ---------------------------------------------------------------------------------------------

def _mean_score(y: np.ndarray, predictions: np.ndarray, statistic: str) -> float:
    """Mean over target columns of the score of ``predictions`` (NaN scores ignored)."""
    with np.errstate(all="ignore"):
        return float(np.nanmean(_score_columns(y, predictions)[statistic]))


def _unit_bootstrap(
    problem: _Problem, n_boot: int, rng: np.random.Generator, score: Callable[[np.ndarray], float]
) -> np.ndarray:
    """``score(rows)`` for ``n_boot`` draws of whole units with replacement: (n_boot,).

    A unit drawn twice brings two copies of all its rows, which keep its code and so leave their
    fold together. NaN for a draw with fewer than 3 distinct units (too few to leave one out).
    """
    draws = np.full(n_boot, np.nan)
    for i in range(n_boot):
        drawn = rng.integers(0, len(problem.names), len(problem.names))
        if len(np.unique(drawn)) >= 3:
            draws[i] = score(np.concatenate([np.flatnonzero(problem.units == u) for u in drawn]))
    return draws


def _interval(draws: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile interval of the finite draws; NaN when there are none."""
    if not np.isfinite(draws).any():
        return float("nan"), float("nan")
    return _percentile_interval(draws, level)


def _bootstrap_mean(
    problem: _Problem, y: np.ndarray, options: PipelineOptions, statistic: str, n_boot: int, seed: int
) -> np.ndarray:
    """Mean score over targets of ``n_boot`` draws of whole methods, the pipeline refitted per draw: (n_boot,).

    NaN for draws with fewer than 3 distinct methods; empty for ``n_boot = 0``.
    """
    def score(rows: np.ndarray) -> float:
        return _mean_score(y[rows], _predict_columns(problem.take(rows), y[rows], options), statistic)

    return _unit_bootstrap(problem, n_boot, np.random.default_rng(seed), score)


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
    """Per unit, its additive share of ``mean_t (score_a - score_b)``: (n_units,).

    ``y, pred_a, pred_b``: (n, n_targets). Spearman: ``rho = 1 - 6 sum d_i^2 / (n (n^2 - 1))`` with
    ``d_i`` the rank difference of model ``i`` (exact without ties), so ``rho_a - rho_b`` equals
    ``6 sum_i (d_bi^2 - d_ai^2) / (n (n^2 - 1))``, a sum over models of terms that change sign when a
    model's two ranks are swapped. R^2: the same with squared errors over the target's total sum of
    squares. Ranks are taken once, per predictor, before any swap; targets are averaged.
    """
    y, pred_a, pred_b = (np.asarray(v, dtype=np.float64).reshape(len(units), -1) for v in (y, pred_a, pred_b))
    n = len(units)
    if statistic == "spearman":
        ry = _average_ranks(y)
        loss_a, loss_b = (_average_ranks(pred_a) - ry) ** 2, (_average_ranks(pred_b) - ry) ** 2
        weight = np.full(y.shape[1], 6.0 / (n * (n**2 - 1)))
    else:
        loss_a, loss_b = (y - pred_a) ** 2, (y - pred_b) ** 2
        total = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
        weight = np.where(total > 0, 1.0 / np.where(total > 0, total, 1.0), 0.0)
    per_model = ((loss_b - loss_a) * weight).mean(axis=1)
    return np.bincount(units, weights=per_model, minlength=n_units)


def _swap_patterns(
    n_units: int, permutations: MethodPermutations, rng: np.random.Generator
) -> tuple[np.ndarray, bool]:
    """Which units swap predictions: all 2^u patterns when few (exact), else random ones. (n_patterns, n_units) bool."""
    if 2**n_units <= permutations.max_enumerate:
        patterns = (np.arange(2**n_units)[:, None] >> np.arange(n_units)) & 1
        return patterns.astype(bool), True
    return rng.integers(0, 2, size=(permutations.n_permutations, n_units)).astype(bool), False


def paired_comparison(
    descriptors_a: pd.DataFrame | pd.Series,
    descriptors_b: pd.DataFrame | pd.Series,
    target: pd.Series | pd.DataFrame,
    design: pd.DataFrame,
    *,
    options_a: PipelineOptions = PipelineOptions(),
    options_b: PipelineOptions = PipelineOptions(),
    evaluation: Evaluation = Evaluation(),
    n_boot: int = 200,
    level: float = 0.95,
    permutations: MethodPermutations = PAIRED_SWAPS,
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
      p-value counts sign patterns (all ``2^n_methods`` when at most
      ``permutations.max_enumerate``: exact; else ``permutations.n_permutations`` random ones)
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

    With several targets (a DataFrame), the scores are means over targets, and each method's
    term is its share of that mean (the swap still flips it). A predictor whose options set a
    sign is a fixed-sign single number, never fitted.

    The difference is of raw scores; each score's own null bias (see :func:`score_targets`)
    differs between predictors with different numbers of descriptors, so read the difference
    beside the two calibrated scores.

    Parameters
    ----------
    descriptors_a, descriptors_b : DataFrame or Series, indexed by model
    target : Series or DataFrame (n_models, n_targets)
    design
        As in :func:`sslgeom.lomo.lomo_predict`.
    options_a, options_b : PipelineOptions
        Each predictor's pipeline: in-fold selection and penalties, or a fixed sign.
    evaluation : Evaluation
        As in :func:`score_targets`; its ``statistic`` must be ``"spearman"`` or ``"r2"`` (the
        scores with an additive form).
    n_boot : int
    level : float
    permutations : MethodPermutations
        The swap patterns of the permutation test; its seed also seeds the bootstrap (one
        generator: the patterns are drawn first, then the bootstrap draws).

    Returns
    -------
    PairedComparison
    """
    statistic = check_choice(evaluation.statistic, ("spearman", "r2"), "statistic",
                             hint="A paired comparison needs a score with an additive form.")
    targets = _as_targets(target)
    a, y = _targets_problem(descriptors_a, targets, design, evaluation)
    b, _ = _targets_problem(descriptors_b, targets, design, evaluation)
    if not a.index.equals(b.index):
        raise ValueError("the two predictors must cover the same models.")
    pred_a, pred_b = _predict_columns(a, y, options_a), _predict_columns(b, y, options_b)
    score_a, score_b = _mean_score(y, pred_a, statistic), _mean_score(y, pred_b, statistic)

    rng = np.random.default_rng(permutations.seed)
    patterns, exact = _swap_patterns(len(a.names), permutations, rng)
    per_unit = _unit_advantage(y, pred_a, pred_b, a.units, len(a.names), statistic)  # (n_units,)
    signs = np.where(patterns, -1.0, 1.0)  # swapping a method's predictions flips its term
    null = np.abs(signs @ per_unit)
    observed = abs(per_unit.sum())
    p_value = exact_pvalue(observed, null) if exact else float(permutation_pvalue(observed, null))

    def difference(rows: np.ndarray) -> float:
        yb = y[rows]
        return (_mean_score(yb, _predict_columns(a.take(rows), yb, options_a), statistic)
                - _mean_score(yb, _predict_columns(b.take(rows), yb, options_b), statistic))

    boot = _unit_bootstrap(a, n_boot, rng, difference)
    return PairedComparison(score_a, score_b, score_a - score_b, *_interval(boot, level), float(p_value), exact,
                            boot, null)


# ---------------------------------------------------------------------------------------------
# Power
# ---------------------------------------------------------------------------------------------

def correlation_power(
    design: pd.DataFrame,
    correlations: Sequence[float] = (0.0, 0.3, 0.5, 0.7, 0.9),
    *,
    noise_x: float = 0.5,
    noise_y: float = 0.5,
    options: PipelineOptions = PipelineOptions(),
    evaluation: Evaluation = Evaluation(),
    n_descriptors: int = 1,
    n_targets: int = 1,
    simulation: PowerSimulation = PowerSimulation(n_permutations=99),
) -> tuple[pd.DataFrame, float]:
    """Power of the claim-2 test against a true correlation between methods' descriptor and transfer.

    Each simulation draws, per method, a latent descriptor and transfer value with correlation
    ``rho`` (standard normal), and per model adds seed-level noise with SD ``noise_x`` and
    ``noise_y`` (in units of the between-method SD; the model-level correlation is therefore
    ``rho / sqrt((1 + noise_x^2) (1 + noise_y^2))``). The test is the one the chapter runs
    (:func:`score_targets` with ``options`` and ``evaluation``): a fitted pipeline, the
    leave-one-method-out ridge on the descriptors with the method-level permutation p-value; or,
    with ``options.sign`` set, the fixed-sign score of the informative descriptor alone.

    To match a fitted predictor with many descriptors, ``n_descriptors - 1`` uninformative
    descriptors (method effect and seed noise like the informative one, independent of transfer)
    join the informative one and the pipeline keeps ``options.n_select`` per fold; the search for
    the informative one costs power, as it does on the real data. With ``n_targets > 1`` the test
    is on the mean score over targets, the targets sharing the methods' latent transfer value
    with independent seed noise each: the optimistic case of tasks that agree at the method level.

    Parameters
    ----------
    design : pandas.DataFrame
        Manifest rows of the models used (see the module docstring).
    correlations : sequence of float
        True method-level correlations, in [0, 1).
    noise_x, noise_y : float
    options : PipelineOptions
        The pipeline tested: fitted (with its in-fold selection) or a fixed sign.
    evaluation : Evaluation
        As in :func:`score_targets`; the latent values are drawn per value of its ``unit``.
    n_descriptors : int
        Descriptors per model (one informative); a fixed-sign pipeline uses the informative one only.
    n_targets : int
        Targets whose mean score is tested.
    simulation : PowerSimulation
        Simulations per correlation, the permutations and level of each test, the target power, the seed.

    Returns
    -------
    curve : pandas.DataFrame
        One row per correlation: ``rho, power, low, high`` (95% Wilson interval).
    minimal_rho : float
        Smallest grid correlation with power at least ``simulation.target_power`` (NaN if none).
    """
    check_int(n_descriptors, "n_descriptors", minimum=1)
    check_int(n_targets, "n_targets", minimum=1)
    table = _design_table(design)
    if evaluation.unit not in table.columns:
        raise ValueError(f"design has no column {evaluation.unit!r} to use as the unit.")
    names, codes = np.unique(table[evaluation.unit].to_numpy(), return_inverse=True)
    n_units, n_rows = len(names), len(codes)
    rng = np.random.default_rng(simulation.seed)

    def rejects(rho: float) -> bool:
        latent = rng.multivariate_normal([0.0, 0.0], [[1.0, rho], [rho, 1.0]], size=n_units)
        x = latent[codes, 0] + noise_x * rng.normal(size=n_rows)
        if n_descriptors > 1:
            others = rng.normal(size=(n_units, n_descriptors - 1))[codes] \
                + noise_x * rng.normal(size=(n_rows, n_descriptors - 1))
            x = np.column_stack([x, others])
        y = pd.DataFrame(latent[codes, 1][:, None] + noise_y * rng.normal(size=(n_rows, n_targets)),
                         index=table.index)
        descriptors = pd.DataFrame(np.reshape(x, (n_rows, -1)), index=table.index)
        if options.sign is not None:
            descriptors = descriptors[[0]]
        result = score_targets(descriptors, y, table, options=options, evaluation=evaluation,
                               n_permutations=simulation.n_permutations, seed=int(rng.integers(2**32)))
        return result.mean.p_value <= simulation.alpha

    return power_curve(correlations, rejects, simulation.n_sim, target_power=simulation.target_power, name="rho")


def effective_descriptors(descriptors: pd.DataFrame) -> float:
    """Participation ratio of the descriptors' correlation matrix: how many independent descriptors they amount to.

    :func:`sslgeom.stats.participation_ratio` of the non-constant columns: ``p`` for ``p``
    uncorrelated descriptors, 1 for copies of one descriptor. A power simulation with this many
    independent descriptors searches a space as large as the real, correlated one, roughly.

    Parameters
    ----------
    descriptors : pandas.DataFrame, shape (n_models, n_descriptors)

    Returns
    -------
    float
        Between 1 and the number of non-constant columns (NaN if none varies).
    """
    values = np.asarray(descriptors, dtype=np.float64)
    values = values[:, varying_columns(values)]
    return participation_ratio(values) if values.shape[1] else float("nan")
