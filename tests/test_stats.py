"""Shared statistics: permutation p-values, multiplicity, verdicts, effect sizes and reliability."""

import numpy as np
import pandas as pd
import pytest

from sslgeom import stats
from sslgeom.stats import permutation_pvalue


def test_counts_ties_and_exceedances_with_the_plus_one_correction():
    null = np.array([0.1, 0.5, 0.5, 0.9])
    assert permutation_pvalue(0.5, null) == pytest.approx((1 + 3) / 5)
    assert permutation_pvalue(1.0, null) == pytest.approx(1 / 5)  # the floor 1/(B+1)
    assert permutation_pvalue(0.0, null) == pytest.approx(1.0)


def test_round_off_ties_count_as_ties_and_nan_as_smaller():
    observed = 0.3
    null = np.array([0.1 + 0.2, np.nan, 0.2])  # 0.1 + 0.2 = 0.30000000000000004 > 0.3; 0.3 - 1e-17 would not be
    assert permutation_pvalue(observed, null) == pytest.approx(2 / 4)
    assert permutation_pvalue(observed, np.array([observed * (1 - 1e-14)])) == pytest.approx(1.0)


def test_columns_are_tested_separately():
    null = np.array([[0.0, 5.0], [1.0, 6.0], [2.0, 7.0]])
    np.testing.assert_allclose(permutation_pvalue(np.array([1.5, 10.0]), null), [2 / 4, 1 / 4])


def test_uniform_under_the_null():
    # Statistic = mean of group A minus group B on exchangeable data: p must be (about) uniform,
    # so the rejection rate at 5% is 5% within sampling error.
    rng = np.random.default_rng(0)
    rejections = 0
    n_repeats = 400
    for _ in range(n_repeats):
        values = rng.normal(size=20)
        labels = np.repeat([0, 1], 10)
        observed = values[labels == 0].mean() - values[labels == 1].mean()
        null = [values[p == 0].mean() - values[p == 1].mean() for p in (rng.permutation(labels) for _ in range(99))]
        rejections += permutation_pvalue(observed, np.array(null)) <= 0.05
    rate = rejections / n_repeats
    assert abs(rate - 0.05) < 3 * np.sqrt(0.05 * 0.95 / n_repeats)


def test_empty_null_is_refused():
    with pytest.raises(ValueError, match="at least one"):
        permutation_pvalue(0.1, np.array([]))


# --------------------------------------------------------------------------- exact p, multiplicity, formatting


def test_exact_pvalue_counts_the_observed_assignment_itself():
    null_all = np.array([0.1, 0.5, 0.9, 0.9])  # an enumeration; 0.9 is the observed assignment's value
    assert stats.exact_pvalue(0.9, null_all) == pytest.approx(2 / 4)
    assert stats.exact_pvalue(0.1, null_all) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="include"):
        stats.exact_pvalue(2.0, null_all)


def test_bh_matches_statsmodels_and_keeps_shape():
    from statsmodels.stats.multitest import multipletests

    p = np.array([[0.001, 0.2], [0.03, 0.04], [0.5, 0.012]])
    reject, adjusted = stats.bh(p, q=0.05)
    reference = multipletests(p.ravel(), alpha=0.05, method="fdr_bh")
    assert adjusted.shape == (3, 2)
    np.testing.assert_allclose(adjusted.ravel(), reference[1])
    np.testing.assert_array_equal(reject.ravel(), reference[0])
    with pytest.raises(ValueError, match="NaN"):
        stats.bh([0.1, np.nan])


def test_permutations_needed_is_the_least_b_with_which_bh_can_reject():
    assert stats.permutations_needed(20, 0.05) == 399  # floor 1/400 = 0.05/20
    assert stats.permutations_needed(1, 0.05) == 19
    for m, q in [(20, 0.05), (7, 0.1), (48, 0.05)]:
        b = stats.permutations_needed(m, q)
        for n_perm, can in [(b, True), (b - 1, False)]:
            floor = 1 / (n_perm + 1)
            p = np.r_[floor, np.ones(m - 1)]  # the best case: one test beats every permutation
            assert stats.bh(p, q)[0].any() == can, (m, q, n_perm)


def test_format_pvalue_writes_the_floor_as_less_than():
    assert stats.format_pvalue(0.001, n_permutations=999) == "< 0.001"
    assert stats.format_pvalue(1 / 400, n_permutations=399) == "< 0.0025"
    assert stats.format_pvalue(0.0123, n_permutations=999) == "0.012"
    assert stats.format_pvalue(1 / 210) == "0.0048"  # exact tests: the floor is exact
    assert stats.format_pvalue(float("nan")) == "n/a"


# --------------------------------------------------------------------------- verdict


def test_verdict_each_branch():
    assert stats.verdict(0.01, power=0.3) == stats.SUPPORTED
    assert stats.verdict(0.05, power=0.3) == stats.SUPPORTED  # BH rejects at p_adj <= q
    assert stats.verdict(0.4, power=0.9) == stats.NOT_SUPPORTED
    assert stats.verdict(0.4, power=0.3, interval=(-0.2, 0.1), minimal_effect=0.3) == stats.NOT_SUPPORTED
    assert stats.verdict(0.4, power=0.3) == stats.CANNOT_TELL
    assert stats.verdict(0.4, power=0.3, interval=(-0.2, 0.5), minimal_effect=0.3) == stats.CANNOT_TELL
    assert stats.verdict(0.4, power=float("nan")) == stats.CANNOT_TELL
    assert stats.verdict(float("nan"), power=0.95) == stats.NOT_SUPPORTED


# --------------------------------------------------------------------------- effect sizes and reliability


def test_partial_eta_squared_against_a_hand_computed_example():
    # 2 paradigms x 2 backbones x 2 replicates, balanced. Grand mean 4.5; paradigm means 2.5 / 6.5:
    # SS_paradigm = 4 * 2^2 + 4 * 2^2 = 32; backbone means 4 / 5: SS_backbone = 2; additive fit
    # 2, 3, 6, 7 leaves residuals +-1: SS_residual = 8 (SS_total 42 = 32 + 2 + 8).
    # partial eta^2 = 32 / (32 + 8) = 0.8; F = (32 / 1) / (8 / 5) = 20.
    y = [1, 3, 2, 4, 5, 7, 8, 6]
    factors = pd.DataFrame({"paradigm": list("AAAABBBB"), "backbone": list("ccrrccrr")})
    values = pd.DataFrame({"metric": y}, dtype=float)
    table = stats.partial_eta_squared(values, factors, "paradigm", ["backbone"])
    assert table.loc["metric", "eta2_partial"] == pytest.approx(0.8)
    assert table.loc["metric", "F"] == pytest.approx(20.0)
    assert (table.loc["metric", "df_effect"], table.loc["metric", "df_residual"]) == (1, 5)
    # a one-level covariate is dropped: plain eta^2 = 32 / 42
    one = stats.partial_eta_squared(values, factors.assign(backbone="c"), "paradigm", ["backbone"])
    assert one.loc["metric", "eta2_partial"] == pytest.approx(32 / 42)




def test_variance_components_recover_the_simulated_sds():
    rng = np.random.default_rng(0)
    units = np.repeat(np.arange(200), 3)
    values = rng.normal(scale=2.0, size=200)[units] + rng.normal(scale=0.5, size=600)
    between, within = stats.variance_components(values, units)
    assert between[0] == pytest.approx(2.0, rel=0.1) and within[0] == pytest.approx(0.5, rel=0.1)






def test_power_curve_counts_rejections_with_wilson_intervals_and_finds_the_smallest_powered_effect():
    from statsmodels.stats.proportion import proportion_confint

    rng = np.random.default_rng(0)
    calls = []

    def rejects(effect):
        calls.append(effect)
        return rng.uniform() < effect  # a test whose power is the effect itself

    curve, minimal = stats.power_curve([0.0, 0.5, 1.0], rejects, 40, target_power=0.8, name="rho")
    assert calls == [0.0] * 40 + [0.5] * 40 + [1.0] * 40  # effect by effect, n_sim each, in order
    assert list(curve.columns) == ["rho", "power", "low", "high"]
    assert curve["power"].iloc[0] == 0.0 and curve["power"].iloc[2] == 1.0 and minimal == 1.0
    rejections = round(curve["power"].iloc[1] * 40)
    np.testing.assert_allclose(curve.loc[1, ["low", "high"]].to_numpy(dtype=float),
                               proportion_confint(rejections, 40, alpha=0.05, method="wilson"))
    never, none = stats.power_curve([0.2], lambda effect: False, 5)
    assert never["power"].iloc[0] == 0.0 and np.isnan(none)
    with pytest.raises(ValueError, match="n_sim"):
        stats.power_curve([0.2], lambda effect: True, 0)


def test_participation_ratio_counts_independent_columns():
    rng = np.random.default_rng(1)
    assert stats.participation_ratio(rng.normal(size=(5000, 4))) == pytest.approx(4, rel=0.02)
    base = rng.normal(size=(100, 1))
    assert stats.participation_ratio(np.hstack([base, -2 * base + 1])) == pytest.approx(1.0)
    assert stats.participation_ratio(base) == 1.0
    with pytest.raises(ValueError, match="at least one column"):
        stats.participation_ratio(np.empty((10, 0)))


def test_infinite_statistics_tie_instead_of_breaking_the_p_values():
    # a pseudo-F with no within-group spread is +inf on the real labels and on some relabellings
    null_all = np.array([np.inf, 2.0, np.inf, np.nan, 1.0])
    assert stats.exact_pvalue(np.inf, null_all) == pytest.approx(2 / 5)
    assert stats.permutation_pvalue(np.inf, null_all[1:]) == pytest.approx(2 / 5)
    assert stats.permutation_pvalue(3.0, null_all) == pytest.approx(3 / 6)
    with pytest.raises(ValueError, match="NaN"):
        stats.exact_pvalue(np.nan, null_all)


def test_varying_columns_ignores_rounding_of_equal_entries():
    # 16/9 repeated: the mean rounds, and numpy's std can come out at 1e-17 instead of 0
    values = np.column_stack([np.full(24, 16 / 9), np.linspace(0, 1, 24), np.full(24, 3.0),
                              np.r_[np.zeros(23), 1e-9]])
    np.testing.assert_array_equal(stats.varying_columns(values), [False, True, False, True])
    assert stats.varying_columns(np.empty((0, 2))).tolist() == [False, False]
    with pytest.raises(ValueError, match="2-D"):
        stats.varying_columns(np.ones(3))


def test_power_simulation_holds_plain_validated_settings():
    settings = stats.PowerSimulation(n_sim=np.int64(20), alpha=0.1, target_power=1, n_permutations=99, seed=3)
    assert (settings.n_sim, settings.alpha, settings.target_power) == (20, 0.1, 1.0)
    assert isinstance(settings.n_sim, int) and isinstance(settings.target_power, float)
    assert stats.PowerSimulation() == stats.PowerSimulation(n_sim=100, alpha=0.05, target_power=0.8,
                                                            n_permutations=999, seed=0)
    assert len({stats.PowerSimulation(), stats.PowerSimulation(seed=1), stats.PowerSimulation()}) == 2


@pytest.mark.parametrize("settings, error, message", [
    ({"n_sim": 0}, ValueError, "n_sim must be at least 1, got 0"),
    ({"n_sim": 10.0}, TypeError, "n_sim must be an integer"),
    ({"alpha": 5}, ValueError, r"alpha is the level of the simulated test and must lie in \(0, 1\), e.g. 0.05"),
    ({"alpha": "0.05"}, TypeError, "alpha must be a number, got '0.05'"),
    ({"target_power": 80}, ValueError, r"target_power .* must lie in \(0, 1\], e.g. 0.8; got 80.0"),
    ({"target_power": float("nan")}, ValueError, "target_power must be finite"),
    ({"n_permutations": 0}, ValueError, "n_permutations must be at least 1"),
    ({"seed": -1}, ValueError, "seed must be at least 0"),
])
def test_power_simulation_refuses_bad_settings_by_name(settings, error, message):
    with pytest.raises(error, match=message):
        stats.PowerSimulation(**settings)
