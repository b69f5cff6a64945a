"""Statistical helpers shared by the claims: p-values, multiplicity, verdicts, effect sizes.

- p-values: :func:`permutation_pvalue` (Monte Carlo), :func:`exact_pvalue` (complete enumeration);
- multiplicity: :func:`bh`, :func:`permutations_needed`, :func:`format_pvalue`;
- the verdict on a claim: :func:`verdict`, beside the power of a simulated test,
  :func:`power_curve`, whose simulation settings travel together as one :class:`PowerSimulation`;
- effect sizes and variance: :func:`partial_eta_squared` (statsmodels type II ANOVA),
  :func:`variance_components`, :func:`participation_ratio` (effective number of independent
  columns).

The reliability of the measured scores (how much of their spread is not noise) is
:mod:`sslgeom.reliability`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .validation import check_float, check_int

__all__ = [
    "TIE_TOLERANCE",
    "permutation_pvalue",
    "exact_pvalue",
    "bh",
    "permutations_needed",
    "format_pvalue",
    "SUPPORTED",
    "NOT_SUPPORTED",
    "CANNOT_TELL",
    "verdict",
    "PowerSimulation",
    "power_curve",
    "partial_eta_squared",
    "variance_components",
    "participation_ratio",
    "varying_columns",
]

# Null values within this (relative) distance of the observed value count as ties, and ties count
# against the observed value: a statistic recomputed on a relabelling that happens to equal the
# observed one must not come out "smaller" by float round-off.
TIE_TOLERANCE = 1e-12


def _null_for_comparison(null) -> np.ndarray:
    """Null statistics as float64 with NaN below everything; +-inf stay infinite (a pseudo-F with no
    within-group spread is +inf and ties with the observed +inf)."""
    return np.nan_to_num(np.asarray(null, dtype=np.float64), nan=-np.inf, posinf=np.inf, neginf=-np.inf)


def _tie_tolerance(observed: np.ndarray) -> np.ndarray:
    """Relative tolerance of a tie with ``observed``; zero where it is infinite (inf - inf is NaN)."""
    magnitude = np.abs(observed)
    return np.where(np.isfinite(magnitude), TIE_TOLERANCE * np.maximum(1.0, magnitude), 0.0)


def permutation_pvalue(observed, null) -> np.ndarray | float:
    """One-sided permutation p-value ``(1 + #{null >= observed}) / (1 + n_permutations)``.

    Parameters
    ----------
    observed : float or array, shape (n_statistics,)
        The statistic(s) on the real labels; larger means stronger evidence.
    null : array, shape (n_permutations,) or (n_permutations, n_statistics)
        The same statistic(s) on permuted labels. NaN null values (a statistic undefined on a
        permutation) count as smaller than any observed value.

    Returns
    -------
    float or numpy.ndarray, shape (n_statistics,)
        Never below ``1 / (1 + n_permutations)``, the floor of a permutation test.
    """
    observed_array = np.asarray(observed, dtype=np.float64)
    null = _null_for_comparison(null)
    if null.ndim == 0 or len(null) == 0:
        raise ValueError("null must hold at least one permuted statistic (n_permutations >= 1).")
    exceed = (null >= observed_array - _tie_tolerance(observed_array)).sum(axis=0)
    p_value = (1.0 + exceed) / (1.0 + len(null))
    return float(p_value) if np.ndim(p_value) == 0 else p_value


# ---------------------------------------------------------------------------------------------
# Exact p-values, multiplicity and how to write p-values
# ---------------------------------------------------------------------------------------------

def exact_pvalue(observed: float, null_all) -> float:
    """Exact permutation p-value ``#{null_all >= observed} / len(null_all)``.

    For a complete enumeration of the permutation group, ``null_all`` already holds the observed
    assignment's statistic, so there is no ``+ 1``; the smallest value is ``1 / len(null_all)``.
    Ties (within :data:`TIE_TOLERANCE`, relative) count against the observed value; NaN counts as
    smaller.

    Parameters
    ----------
    observed : float
    null_all : array, shape (n_assignments,)
        The statistic on every assignment of the enumeration, the observed one included.
    """
    null_all = _null_for_comparison(null_all).reshape(-1)
    if len(null_all) == 0:
        raise ValueError("null_all must hold the statistic of every enumerated assignment (at least one).")
    if np.isnan(observed):
        raise ValueError("the observed statistic is NaN (undefined on the real labels, e.g. no within-group "
                         "spread): the test cannot be computed on this design.")
    count = int(np.sum(null_all >= observed - _tie_tolerance(np.float64(observed))))
    if count == 0:
        raise ValueError("the observed statistic exceeds every enumerated one: the enumeration must include "
                         "the observed assignment.")
    return count / len(null_all)


def bh(pvalues, q: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Benjamini-Hochberg: which tests are rejected at false discovery rate ``q``, and adjusted p-values.

    A thin wrapper of ``statsmodels.stats.multitest.multipletests(method="fdr_bh")`` that keeps
    the input's shape (e.g. a targets x predictors grid is corrected as one family).

    Parameters
    ----------
    pvalues : array, any shape
        No NaN: a test that was not run does not belong to the family.
    q : float
        False discovery rate.

    Returns
    -------
    reject : bool array, same shape
        ``adjusted <= q``.
    adjusted : array, same shape
    """
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=np.float64)
    if p.size == 0 or not np.all(np.isfinite(p)):
        raise ValueError("pvalues must be a non-empty array without NaN; leave tests that were not run out of the family.")
    if not 0 < q < 1:
        raise ValueError(f"q must be in (0, 1); got {q}.")
    reject, adjusted, _, _ = multipletests(p.reshape(-1), alpha=q, method="fdr_bh")
    return reject.reshape(p.shape), adjusted.reshape(p.shape)


def permutations_needed(n_tests: int, q: float = 0.05) -> int:
    """Fewest Monte Carlo permutations with which Benjamini-Hochberg can reject anything at all.

    BH rejects only if the smallest p-value is at most ``q / m``; a permutation p-value is at least
    ``1 / (B + 1)``. So ``B + 1 >= m / q``: about ``m / q`` permutations (20 tests at ``q = 0.05``:
    399, whose floor 1/400 equals q/m). This is a bare minimum (reached only when the observed
    statistic beats every permuted one); with an exact enumeration the analogous condition is
    ``n_assignments >= m / q``.
    """
    n_tests = int(n_tests)
    if n_tests < 1 or not 0 < q < 1:
        raise ValueError(f"need n_tests >= 1 and 0 < q < 1; got {n_tests}, {q}.")
    # the small slack keeps float division (e.g. 20 / 0.05) from rounding up by one
    return max(1, math.ceil(n_tests / q - 1e-9) - 1)


def _significant(value: float, digits: int) -> str:
    return np.format_float_positional(value, precision=digits, unique=False, fractional=False, trim="-")


def format_pvalue(p: float, n_permutations: int | None = None, digits: int = 2) -> str:
    """Write a p-value; a Monte Carlo p-value at its floor reads ``"< 1/(B+1)"``, e.g. ``"< 0.001"``.

    Parameters
    ----------
    p : float
    n_permutations : int, optional
        B of a Monte Carlo permutation test, whose p-value cannot go below ``1 / (B + 1)``; at that
        floor the true p-value can be anything smaller, hence ``<``. Leave out for exact tests
        (their smallest p-value is exact, and is written as it is).
    digits : int
        Significant digits.
    """
    if not np.isfinite(p):
        return "n/a"
    if n_permutations is not None:
        floor = 1.0 / (int(n_permutations) + 1)
        if p <= floor * (1 + 1e-9):
            return f"< {_significant(floor, digits)}"
    return _significant(float(p), digits)


# ---------------------------------------------------------------------------------------------
# The verdict on a claim
# ---------------------------------------------------------------------------------------------

SUPPORTED, NOT_SUPPORTED, CANNOT_TELL = "supported", "not supported", "this design cannot tell"


def verdict(
    p_adjusted: float,
    power: float,
    *,
    q: float = 0.05,
    power_threshold: float = 0.8,
    interval: tuple[float, float] | None = None,
    minimal_effect: float | None = None,
) -> str:
    """Verdict on a claim from its test, its estimate's interval and the design's power.

    The rule, in order:

    1. ``"supported"`` if the claim's test is rejected: ``p_adjusted <= q`` (the BH-adjusted
       p-value, one-sided in the claim's direction; ``<=`` is the rejection rule of BH).
    2. ``"not supported"`` if it is not rejected and the design could have seen an effect that
       matters: the power at the minimal effect of interest is at least ``power_threshold``, or
       the interval of the estimate lies entirely below ``minimal_effect`` (the data exclude an
       effect that large).
    3. ``"this design cannot tell"`` otherwise: a non-rejection from a design too weak to detect
       the minimal effect is absence of evidence, not evidence of absence.

    Parameters
    ----------
    p_adjusted : float
        BH-adjusted p-value of the test (NaN: not tested, never "supported").
    power : float
        Power of this test on this design at ``minimal_effect`` (NaN if unknown).
    q : float
        False discovery rate.
    power_threshold : float
    interval : (low, high), optional
        Confidence interval of the effect estimate, on the scale of ``minimal_effect``.
    minimal_effect : float, optional
        Smallest effect that would matter.

    Returns
    -------
    str
        :data:`SUPPORTED`, :data:`NOT_SUPPORTED` or :data:`CANNOT_TELL`.
    """
    if np.isfinite(p_adjusted) and p_adjusted <= q:
        return SUPPORTED
    powered = np.isfinite(power) and power >= power_threshold
    excluded = interval is not None and minimal_effect is not None and np.isfinite(interval[1]) \
        and interval[1] < minimal_effect
    return NOT_SUPPORTED if (powered or excluded) else CANNOT_TELL


@dataclass(frozen=True)
class PowerSimulation:
    """How a power simulation runs: how many data sets, the test's level and permutations, the seed.

    The settings travel together through every power simulation of the claims
    (:func:`sslgeom.permanova.paradigm_power`, :func:`sslgeom.crossval.correlation_power`), each of
    which keeps its own defaults in its default argument. Frozen and validated once.

    Attributes
    ----------
    n_sim : int
        Simulated data sets per effect, at least 1.
    alpha : float
        Level at which each simulated test rejects, in (0, 1).
    target_power : float
        The power that makes an effect detectable, in (0, 1].
    n_permutations : int
        Permutations of each simulated test's Monte Carlo null, at least 1.
    seed : int
        Seeds the generator of the whole simulation (data and the tests' own seeds), at least 0.

    Examples
    --------
    ``PowerSimulation(n_sim=20, n_permutations=99)``: a quick curve for a smoke run.
    """

    n_sim: int = 100
    alpha: float = 0.05
    target_power: float = 0.8
    n_permutations: int = 999
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_sim", check_int(self.n_sim, "n_sim", minimum=1))
        alpha = check_float(self.alpha, "alpha")
        if not 0 < alpha < 1:
            raise ValueError(f"alpha is the level of the simulated test and must lie in (0, 1), e.g. 0.05; "
                             f"got {alpha}.")
        object.__setattr__(self, "alpha", alpha)
        target_power = check_float(self.target_power, "target_power")
        if not 0 < target_power <= 1:
            raise ValueError(f"target_power is the power that makes an effect detectable and must lie in (0, 1], "
                             f"e.g. 0.8; got {target_power}.")
        object.__setattr__(self, "target_power", target_power)
        object.__setattr__(self, "n_permutations", check_int(self.n_permutations, "n_permutations", minimum=1))
        object.__setattr__(self, "seed", check_int(self.seed, "seed", minimum=0))


def power_curve(
    effects: Sequence[float],
    rejects: Callable[[float], bool],
    n_sim: int,
    *,
    target_power: float = 0.8,
    name: str = "effect",
) -> tuple[pd.DataFrame, float]:
    """Power of a simulated test at each effect of a grid, and the smallest effect it detects.

    The power at an effect is the share of ``n_sim`` simulations in which the test rejects, with
    its 95% Wilson interval (statsmodels ``proportion_confint``). Used by every power simulation
    of the claims (:func:`sslgeom.permanova.paradigm_power`,
    :func:`sslgeom.crossval.correlation_power`).

    Parameters
    ----------
    effects : sequence of float
        The grid of true effects, in the order simulated.
    rejects : callable
        ``rejects(effect)`` draws one data set with that effect, runs the test and says whether it
        rejects at its level. It is called ``n_sim`` times per effect, effect by effect, so a
        generator it draws from gives the same curve for the same seed.
    n_sim : int
        Simulations per effect.
    target_power : float
        The power that makes an effect detectable.
    name : str
        Name of the effect column (e.g. ``"rho"``).

    Returns
    -------
    curve : pandas.DataFrame
        One row per effect: ``name, power, low, high``.
    minimal_effect : float
        Smallest grid effect with power at least ``target_power`` (NaN if none): a grid value,
        not interpolated, so on the safe side.
    """
    from statsmodels.stats.proportion import proportion_confint

    n_sim = check_int(n_sim, "n_sim", minimum=1)
    rows = []
    for effect in effects:
        rejections = sum(bool(rejects(effect)) for _ in range(n_sim))
        low, high = proportion_confint(rejections, n_sim, alpha=0.05, method="wilson")
        rows.append({name: float(effect), "power": rejections / n_sim, "low": low, "high": high})
    curve = pd.DataFrame(rows)
    powered = curve.loc[curve["power"] >= target_power, name]
    return curve, float(powered.min()) if len(powered) else float("nan")


# ---------------------------------------------------------------------------------------------
# Effect sizes and reliability
# ---------------------------------------------------------------------------------------------

def partial_eta_squared(
    values: pd.DataFrame, factors: pd.DataFrame, effect: str, covariates: Sequence[str] = ()
) -> pd.DataFrame:
    """Partial eta squared of one factor, adjusted for others, per column (statsmodels type II ANOVA).

    For each column ``y`` of ``values``: OLS ``y ~ C(effect) + C(covariate) + ...`` and
    ``anova_lm(typ=2)``; ``eta2_partial = SS_effect / (SS_effect + SS_residual)``, where the type
    II ``SS_effect`` is the drop in residual sum of squares when the effect joins the covariates.
    Covariates with a single level are left out (e.g. backbone within one backbone).

    Parameters
    ----------
    values : pandas.DataFrame, shape (n_models, n_metrics)
    factors : pandas.DataFrame, shape (n_models, n_factors)
        Same index as ``values``; categorical columns ``effect`` and ``covariates``.
    effect : str
    covariates : sequence of str

    Returns
    -------
    pandas.DataFrame, shape (n_metrics, 5)
        Index: metrics; columns ``eta2_partial, F, df_effect, df_residual, p_anova``. ``p_anova``
        is the parametric F-test p-value, which treats rows as independent.
    """
    import statsmodels.formula.api as smf
    from statsmodels.stats.anova import anova_lm

    if not values.index.equals(factors.index):
        raise ValueError("values and factors must have the same index (one row per model, same order).")
    kept = [c for c in covariates if factors[c].nunique() > 1]
    data = pd.DataFrame({f"f{i}": factors[c].astype(str).to_numpy() for i, c in enumerate([effect, *kept])})
    formula = "y ~ " + " + ".join(f"C(f{i})" for i in range(1 + len(kept)))
    rows = {}
    for column in values.columns:
        fit = smf.ols(formula, data=data.assign(y=values[column].to_numpy(dtype=np.float64))).fit()
        table = anova_lm(fit, typ=2)
        ss_effect, ss_residual = table.loc["C(f0)", "sum_sq"], table.loc["Residual", "sum_sq"]
        total = ss_effect + ss_residual
        rows[column] = {"eta2_partial": ss_effect / total if total > 0 else np.nan,
                        "F": table.loc["C(f0)", "F"], "df_effect": table.loc["C(f0)", "df"],
                        "df_residual": table.loc["Residual", "df"], "p_anova": table.loc["C(f0)", "PR(>F)"]}
    return pd.DataFrame.from_dict(rows, orient="index")


def variance_components(values, units) -> tuple[np.ndarray, np.ndarray]:
    """Between-unit and within-unit standard deviations per column (one-way random effects, ANOVA estimator).

    ``within`` is the pooled seed-to-seed SD (``sqrt(MS_within)``); ``between`` is
    ``sqrt(max(0, (MS_between - MS_within) / n0))`` with ``n0 = (N - sum n_u^2 / N) / (a - 1)``
    (the mean unit size for balanced designs).

    Parameters
    ----------
    values : array, shape (n_rows,) or (n_rows, n_columns)
    units : sequence, shape (n_rows,)

    Returns
    -------
    between, within : arrays, shape (n_columns,)
    """
    values = np.asarray(values, dtype=np.float64)
    values = values[:, None] if values.ndim == 1 else values
    _, codes = np.unique(np.asarray(units), return_inverse=True)
    sizes = np.bincount(codes).astype(np.float64)
    n, a = len(codes), len(sizes)
    if a < 2 or n <= a:
        raise ValueError(f"need at least 2 units and replicates within units; got {a} units, {n} rows.")
    means = np.zeros((a, values.shape[1]))
    np.add.at(means, codes, values)
    means /= sizes[:, None]
    ms_within = ((values - means[codes]) ** 2).sum(axis=0) / (n - a)
    ms_between = (sizes[:, None] * (means - values.mean(axis=0)) ** 2).sum(axis=0) / (a - 1)
    n0 = (n - np.sum(sizes**2) / n) / (a - 1)
    return np.sqrt(np.maximum(0.0, (ms_between - ms_within) / n0)), np.sqrt(ms_within)


def varying_columns(values) -> np.ndarray:
    """Which columns vary: spread (max - min) above ``TIE_TOLERANCE`` of the column's magnitude.

    ``std > 0`` is not a safe test: a column whose entries are all equal can come out with a
    standard deviation of 1e-17 when its mean is rounded, and correlations then divide by it.

    Parameters
    ----------
    values : array-like, shape (n_rows, n_columns)

    Returns
    -------
    np.ndarray of bool, shape (n_columns,)
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"values must be a 2-D array; got shape {values.shape}.")
    if values.shape[0] == 0:
        return np.zeros(values.shape[1], dtype=bool)
    magnitude = np.maximum(np.abs(values).max(axis=0), 1.0)
    return np.ptp(values, axis=0) > TIE_TOLERANCE * magnitude


def participation_ratio(values) -> float:
    """How many independent columns a set of correlated columns amounts to.

    With ``lambda`` the eigenvalues of the columns' correlation matrix, ``(sum lambda)^2 / sum
    lambda^2``: ``p`` for ``p`` uncorrelated columns, 1 for copies of one column.

    Parameters
    ----------
    values : array, shape (n_rows, n_columns)
        Every column non-constant (drop constant ones first with :func:`varying_columns`: they
        have no correlation).

    Returns
    -------
    float
        Between 1 and ``n_columns``.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] == 0:
        raise ValueError(f"values must be a 2-D array with at least one column; got shape {values.shape}.")
    if values.shape[1] == 1:
        return 1.0
    eigenvalues = np.clip(np.linalg.eigvalsh(np.corrcoef(values, rowvar=False)), 0.0, None)
    return float(eigenvalues.sum() ** 2 / np.sum(eigenvalues**2))
