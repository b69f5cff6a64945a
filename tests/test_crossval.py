"""Claim 2 on the zoo's design (sslgeom.crossval): calibrated nulls, bootstraps, paired comparisons, power."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from sslgeom import crossval, design, lomo
from sslgeom.lomo import Evaluation, PipelineOptions
from sslgeom.design import MethodPermutations
from sslgeom.stats import PowerSimulation

# As in sslgeom.ssl_methods.METHODS (checked in test_design).
PARADIGMS = {"simclr": "contrastive", "moco-v2": "contrastive", "byol": "non-contrastive",
             "simsiam": "non-contrastive", "barlowtwins": "non-contrastive", "vicreg": "non-contrastive",
             "swav": "clustering", "dino": "clustering"}
# every checkpoint of every SSL method: 8 methods x (3 seeds x 3 budgets on convnet + 1 resnet seed)
MANIFEST = design.synthetic_manifest(PARADIGMS, references=False).set_index("name", drop=False)
METHOD_CODES = pd.factorize(MANIFEST["method"])[0]
SELECT_2 = PipelineOptions(n_select=2)  # a descriptor set, two descriptors kept per fold
PLUS, MINUS = PipelineOptions(sign=1), PipelineOptions(sign=-1)  # fixed-sign baselines
CONVNET = Evaluation(backbone="convnet")  # the main backbone's models only


def _clustered(rng, n_columns, method_sd=1.0):
    """Values with a method effect and model-level noise: (n_models, n_columns), indexed by model."""
    values = method_sd * rng.normal(size=(8, n_columns))[METHOD_CODES] + rng.normal(size=(len(MANIFEST), n_columns))
    return pd.DataFrame(values, index=MANIFEST.index)


@pytest.mark.parametrize("n_descriptors, n_select", [(1, None), (25, 2)])
def test_calibrated_score_is_zero_on_average_on_noise_targets(n_descriptors, n_select):
    # Descriptors and targets both carry method effects (as real ones do) but are independent.
    # The raw leave-one-method-out Spearman is biased downwards (measured mean -0.45 with one
    # descriptor, -0.16 with 2 of 25 selected); observed minus its method-level permutation null mean
    # is not. The calibrated score's SD is about 0.26-0.27, so 400 simulations put its mean
    # within 0.013 (one SE) of its expectation: 0.05 is about 3.7 SE.
    rng = np.random.default_rng(10 + n_descriptors)
    n_sim = 400
    observed, calibrated = np.empty(n_sim), np.empty(n_sim)
    for i in range(n_sim):
        x = _clustered(rng, n_descriptors)
        y = _clustered(rng, 1)[0]
        options = PipelineOptions(n_select=n_select)
        result = crossval.score_targets(x, y, MANIFEST, options=options, n_permutations=19, seed=i).mean
        observed[i], calibrated[i] = result.observed, result.calibrated
    assert abs(calibrated.mean()) < 0.05, calibrated.mean()  # measured: -0.003 (1), -0.005 (25, select 2)
    assert observed.mean() < -0.1  # the bias the calibration removes


def test_calibrated_score_sees_a_real_signal_and_is_reproducible():
    rng = np.random.default_rng(3)
    x = _clustered(rng, 5)
    y = pd.Series(x[0] + 0.3 * rng.normal(size=len(x)), index=x.index)
    result = crossval.score_targets(x, y, MANIFEST, options=SELECT_2, n_permutations=99, seed=4).mean
    assert result.observed > 0.8 and result.calibrated > 0.8
    assert result.p_value == pytest.approx(1 / 100)
    again = crossval.score_targets(x, y, MANIFEST, options=SELECT_2, n_permutations=99, seed=4).mean
    np.testing.assert_array_equal(result.null, again.null)


def test_fixed_sign_score_uses_the_sign_and_no_fitting():
    rng = np.random.default_rng(5)
    baseline = _clustered(rng, 1)[0]
    y = pd.Series(-baseline + 0.5 * rng.normal(size=len(baseline)), index=baseline.index)
    plus = crossval.score_targets(baseline, y, MANIFEST, options=PLUS, n_permutations=199).mean
    minus = crossval.score_targets(baseline, y, MANIFEST, options=MINUS, n_permutations=199).mean
    from scipy.stats import spearmanr

    assert minus.observed == pytest.approx(spearmanr(-baseline, y).statistic)
    assert plus.observed == pytest.approx(-minus.observed)
    assert minus.p_value == pytest.approx(1 / 200) and plus.p_value > 0.9
    assert abs(minus.null_mean) < 0.1  # nothing fitted: no cross-validation bias
    with pytest.raises(ValueError, match="sign"):
        PipelineOptions(sign=0)


def test_paired_comparison_of_identical_and_of_good_versus_noise_predictors():
    rng = np.random.default_rng(6)
    x = _clustered(rng, 2)
    y = pd.Series(x[0] + 0.3 * rng.normal(size=len(x)), index=x.index)
    same = crossval.paired_comparison(x[[0]], x[[0]], y, MANIFEST, n_boot=5)
    assert same.difference == 0 and same.p_value == 1.0 and same.exact
    good = crossval.paired_comparison(x[[0]], x[[1]], y, MANIFEST, n_boot=30, permutations=replace(crossval.PAIRED_SWAPS, seed=1))
    assert good.exact and len(good.null) == 2**8
    assert good.p_value == pytest.approx(2 / 256)  # flipping every method gives -difference: a tie
    assert good.difference > 0.5 and 0 < good.low < good.difference < good.high + 1e-12
    assert np.isfinite(good.boot).sum() >= 25
    monte_carlo = crossval.paired_comparison(x[[0]], x[[1]], y, MANIFEST, n_boot=2,
                                             permutations=MethodPermutations(max_enumerate=16, n_permutations=99,
                                                                             seed=1))
    assert not monte_carlo.exact and monte_carlo.p_value <= 0.05


def test_correlation_power_curve():
    table = MANIFEST[MANIFEST["backbone"] == "convnet"]
    curve, minimal = crossval.correlation_power(table, correlations=(0.0, 0.99), noise_x=0.2, noise_y=0.2,
                                                simulation=PowerSimulation(n_sim=15, n_permutations=39, seed=0))
    assert list(curve.columns) == ["rho", "power", "low", "high"]
    assert curve.loc[0, "power"] <= 0.3 and curve.loc[1, "power"] >= 0.8 and minimal == 0.99
    direct, _ = crossval.correlation_power(table, correlations=(0.99,), options=PLUS, noise_x=0.2, noise_y=0.2,
                                           simulation=PowerSimulation(n_sim=10, n_permutations=39, seed=0))
    assert direct.loc[0, "power"] >= 0.8


@pytest.mark.parametrize("coefficient, bound", [(0.0, None), (0.7, 0.15)])
def test_paired_swap_test_type_one_error(coefficient, bound):
    # Two predictors equally (un)informative about the target, fitted by leave-one-method-out.
    # Uninformative: the rate is nominal. Informative: the swap test (no refit) is somewhat liberal,
    # as its docstring states; this bounds how much (measured here: 0.015 and 0.11).
    rng = np.random.default_rng(20)
    n_sim, rejections = 200, 0
    for i in range(n_sim):
        x = _clustered(rng, 2)
        y = coefficient * (x[0] + x[1]) + _clustered(rng, 1)[0]
        rejections += crossval.paired_comparison(x[[0]], x[[1]], y, MANIFEST, n_boot=1,
                                                 permutations=replace(crossval.PAIRED_SWAPS, seed=i)).p_value <= 0.05
    rate = rejections / n_sim
    if bound is None:
        assert abs(rate - 0.05) <= 3 * np.sqrt(0.05 * 0.95 / n_sim), rate
    else:
        assert rate <= bound, rate


def test_score_targets_matches_each_target_alone_and_shares_permutations():
    rng = np.random.default_rng(30)
    x = _clustered(rng, 6)
    targets = pd.DataFrame({"a": x[0] + rng.normal(size=len(x)), "b": _clustered(rng, 1)[0]})
    scored = crossval.score_targets(x, targets, MANIFEST, options=SELECT_2, n_permutations=29, seed=3)
    for name in targets:
        single = crossval.score_targets(x, targets[name], MANIFEST, options=SELECT_2, n_permutations=29, seed=3).mean
        np.testing.assert_allclose(scored.per_target[name].null, single.null)
        assert scored.per_target[name].observed == pytest.approx(single.observed)
    # the mean's null is the mean of the targets' nulls, permutation by permutation
    np.testing.assert_allclose(scored.mean.null, (scored.per_target["a"].null + scored.per_target["b"].null) / 2)
    # selection frequencies: n_select descriptors per fold, so each target's column sums to n_select
    np.testing.assert_allclose(scored.selected.sum(axis=0), 2.0)
    assert scored.selected.loc[0, "a"] > 0.8  # the informative descriptor is kept in most folds
    pd.testing.assert_series_equal(scored.predictions["a"],
                                   lomo.lomo_predict(x, targets["a"], MANIFEST, options=SELECT_2).rename("a"))
    direct = crossval.score_targets(x[0], targets, MANIFEST, options=MINUS, n_permutations=29, seed=3)
    single = crossval.score_targets(x[0], targets["b"], MANIFEST, options=MINUS, n_permutations=29, seed=3).mean
    np.testing.assert_allclose(direct.per_target["b"].null, single.null)
    assert direct.selected.empty and set(direct.table().index) == {"a", "b", "mean"}
    with pytest.raises(ValueError, match="one number"):
        crossval.score_targets(x, targets, MANIFEST, options=PLUS, n_permutations=5)


def test_score_targets_bootstrap_covers_the_observed_score_and_refits():
    rng = np.random.default_rng(31)
    x = _clustered(rng, 3)
    y = pd.Series(x[0] + 0.5 * rng.normal(size=len(x)), index=x.index)
    result = crossval.score_targets(x, y, MANIFEST, n_permutations=9, n_boot=60, seed=0)
    low, high = result.mean_interval  # calibrated: the draws' percentiles minus the null mean
    raw_low, raw_high = np.nanpercentile(result.boot, [2.5, 97.5])
    assert (low, high) == pytest.approx((raw_low - result.mean.null_mean, raw_high - result.mean.null_mean))
    assert raw_low < result.mean.observed < raw_high and np.isfinite(result.boot).sum() >= 55
    # each draw refits: with a refitted pipeline the draws vary, and the permutations do not move them
    assert np.nanstd(result.boot) > 0.01
    again = crossval.score_targets(x, y, MANIFEST, n_permutations=3, n_boot=60, seed=0)
    np.testing.assert_array_equal(again.boot, result.boot)
    fixed = crossval.score_targets(x[0], y, MANIFEST, options=PLUS, n_permutations=9, n_boot=60, seed=0)
    assert 0.5 < np.nanpercentile(fixed.boot, 2.5) < np.nanpercentile(fixed.boot, 97.5)
    # without a bootstrap there is no interval
    plain = crossval.score_targets(x, y, MANIFEST, n_permutations=9, seed=0)
    assert np.isnan(plain.mean_interval).all() and plain.boot.shape == (0,)
    with pytest.raises(ValueError, match="n_boot"):
        crossval.score_targets(x, y, MANIFEST, n_permutations=9, n_boot=-1)


def test_paired_comparison_with_a_fixed_sign_baseline_and_several_targets():
    rng = np.random.default_rng(32)
    x = _clustered(rng, 2)
    targets = pd.DataFrame({t: x[0] + 0.3 * rng.normal(size=len(x)) for t in "ab"})
    result = crossval.paired_comparison(x[[0]], x[1], targets, MANIFEST, options_b=PLUS, n_boot=20)
    from scipy.stats import spearmanr

    direct = np.mean([spearmanr(x[1], targets[t]).statistic for t in "ab"])
    assert result.score_b == pytest.approx(direct)
    assert result.difference > 0.5 and result.p_value <= 2 / 256 + 1e-12 and result.low > 0
    # the additive statistic is the difference itself (no ties): the sum of the methods' terms
    same = crossval.paired_comparison(x[0], x[0], targets, MANIFEST, options_a=PLUS, options_b=PLUS, n_boot=2)
    assert same.difference == 0 and same.p_value == 1.0


def test_power_with_many_descriptors_is_lower_than_with_the_informative_one_alone():
    table = MANIFEST[MANIFEST["backbone"] == "convnet"]
    kwargs = dict(correlations=(0.9,), noise_x=0.3, noise_y=0.3,
                  simulation=PowerSimulation(n_sim=30, n_permutations=39, seed=1))
    one, _ = crossval.correlation_power(table, **kwargs)
    many, _ = crossval.correlation_power(table, n_descriptors=60, options=SELECT_2, n_targets=2, **kwargs)
    assert many.loc[0, "power"] <= one.loc[0, "power"]
    null, _ = crossval.correlation_power(table, correlations=(0.0,), n_descriptors=20, options=SELECT_2,
                                         simulation=PowerSimulation(n_sim=60, n_permutations=19, seed=2))
    assert null.loc[0, "power"] <= 0.15  # nominal 0.05; 60 simulations


@pytest.mark.parametrize("kind", ["many descriptors, 2 selected", "binary label, pooled", "fixed sign"])
def test_every_kind_of_predictor_scores_zero_on_average_on_noise_targets(kind):
    # The chapter's predictors: MGM sets (about 100 descriptors, 2 kept per fold), a one-bit
    # nuisance label through the cross-validation (the backbone, pooled), and a single number with
    # its sign fixed (RankMe, alpha-ReQ, source kNN). Descriptors carry method effects, targets
    # are independent noise with method effects. The reported (calibrated) score must average zero
    # within 0.05 over 300 simulations (its SD is at most about 0.3, so the SE is about 0.017).
    rng = np.random.default_rng(40)
    backbone = (MANIFEST["backbone"] == "resnet").astype(float)
    calibrated = []
    for i in range(300):
        y = _clustered(rng, 2)
        if kind == "many descriptors, 2 selected":
            result = crossval.score_targets(_clustered(rng, 100), y, MANIFEST, options=SELECT_2, n_permutations=19,
                                            seed=i)
        elif kind == "binary label, pooled":
            result = crossval.score_targets(backbone, y, MANIFEST, n_permutations=19, seed=i)
        else:
            result = crossval.score_targets(_clustered(rng, 1)[0], y, MANIFEST, options=PLUS, n_permutations=19, seed=i)
        calibrated.append(result.mean.calibrated)
    assert abs(np.mean(calibrated)) < 0.05, np.mean(calibrated)


def test_effective_descriptors_counts_independent_directions():
    rng = np.random.default_rng(50)
    independent = pd.DataFrame(rng.normal(size=(5000, 6)))
    assert crossval.effective_descriptors(independent) == pytest.approx(6, rel=0.02)
    base = rng.normal(size=(200, 1))
    copies = pd.DataFrame(np.hstack([base, 2 * base, -base + 1, np.ones((200, 1))]))  # constant column ignored
    assert crossval.effective_descriptors(copies) == pytest.approx(1.0)
    two_blocks = pd.DataFrame(np.hstack([np.repeat(rng.normal(size=(5000, 1)), 3, axis=1),
                                         np.repeat(rng.normal(size=(5000, 1)), 3, axis=1)]))
    assert crossval.effective_descriptors(two_blocks) == pytest.approx(2.0, rel=0.02)


def test_evaluation_is_validated_and_read_by_every_function():
    assert Evaluation() == Evaluation(backbone=None, unit="method", statistic="spearman")
    assert len({Evaluation(), Evaluation(), CONVNET}) == 2  # frozen and hashable
    with pytest.raises(ValueError, match=r"unknown statistic 'pearson'; choose one of \['r2', 'spearman', 'kendall'\]"):
        Evaluation(statistic="pearson")
    with pytest.raises(TypeError, match="backbone must be a backbone name such as 'convnet', or None"):
        Evaluation(backbone=1)
    with pytest.raises(TypeError, match="unit must be the name of a design column, e.g. 'method'"):
        Evaluation(unit=["method"])
    with pytest.raises(ValueError, match="unit must name a design column, e.g. 'method'; got an empty name"):
        Evaluation(unit="")
    rng = np.random.default_rng(60)
    x = _clustered(rng, 2)
    y = pd.Series(x[0] + 0.5 * rng.normal(size=len(x)), index=x.index)
    with pytest.raises(ValueError, match="design has no column 'lab' to use as the unit"):
        lomo.lomo_predict(x, y, MANIFEST, evaluation=Evaluation(unit="lab"))
    with pytest.raises(ValueError, match="design has no column 'lab' to use as the unit"):
        crossval.correlation_power(MANIFEST, (0.5,), evaluation=Evaluation(unit="lab"))
    with pytest.raises(ValueError, match="A paired comparison needs a score with an additive form"):
        crossval.paired_comparison(x[[0]], x[[1]], y, MANIFEST, evaluation=Evaluation(statistic="kendall"), n_boot=1)
    # the statistic reaches the score: Kendall's tau of the fixed-sign baseline, as scipy computes it
    from scipy.stats import kendalltau

    kendall = crossval.score_targets(x[0], y, MANIFEST, options=PLUS, evaluation=Evaluation(statistic="kendall"),
                                     n_permutations=1).mean
    assert kendall.observed == pytest.approx(kendalltau(x[0], y).statistic)
    main = crossval.score_targets(x, y, MANIFEST, evaluation=CONVNET, n_permutations=1).predictions
    assert set(MANIFEST.loc[main.index, "backbone"]) == {"convnet"}
