"""Tests of leave-one-model-out prediction and its statistics (sslgeom.prediction)."""

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score

from sslgeom import prediction


# --------------------------------------------------------------------------- prediction


def test_regression_scores_match_references():
    rng = np.random.default_rng(0)
    y = rng.normal(size=15)
    pred = y + 0.5 * rng.normal(size=15)
    scores = prediction.regression_scores(y, pred)
    assert scores["r2"] == pytest.approx(r2_score(y, pred))
    from scipy import stats

    assert scores["spearman"] == pytest.approx(stats.spearmanr(y, pred).statistic)
    assert scores["kendall"] == pytest.approx(stats.kendalltau(y, pred).statistic)


def test_ridge_fit_matches_sklearn_and_brute_force_loo():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(12, 3))
    x -= x.mean(axis=0)
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.3 * rng.normal(size=12) + 4.0
    coef, intercept, alpha = prediction._ridge_fit(x[None], y[None], alphas=[2.0])  # a batch of one problem
    reference = Ridge(alpha=2.0).fit(x, y)
    np.testing.assert_allclose(coef[0], reference.coef_, rtol=1e-10)
    assert intercept[0] == pytest.approx(reference.intercept_)
    # the chosen penalty minimises the brute-force leave-one-out error
    alphas = [0.01, 1.0, 10.0, 1000.0]
    errors = []
    for a in alphas:
        residuals = []
        for i in range(12):
            keep = np.arange(12) != i
            model = Ridge(alpha=a).fit(x[keep], y[keep])
            residuals.append(y[i] - model.predict(x[i : i + 1])[0])
        errors.append(np.mean(np.square(residuals)))
    assert prediction._ridge_fit(x[None], y[None], alphas)[2][0] == alphas[int(np.argmin(errors))]
    # a batch gives each problem the answer it gets alone
    other = rng.normal(size=12)
    batch = prediction._ridge_fit(np.stack([x, x[::-1]]), np.stack([y, other]), alphas)
    alone = prediction._ridge_fit(x[::-1][None], other[None], alphas)
    np.testing.assert_allclose(batch[0][1], alone[0][0], rtol=1e-10)
    assert batch[2][1] == alone[2][0]


def _zoo_like(n_models=20, n_noise=50, seed=0):
    rng = np.random.default_rng(seed)
    models = [f"m{i}" for i in range(n_models)]
    target = pd.Series(rng.normal(size=n_models), index=models)
    noise = pd.DataFrame(rng.normal(size=(n_models, n_noise)), index=models,
                         columns=[f"noise{j}" for j in range(n_noise)])
    return target, noise


def test_truly_predictive_feature_is_found_out_of_sample():
    target, noise = _zoo_like(seed=1)
    descriptors = noise.assign(signal=target.to_numpy())
    result = prediction.loo_predict(descriptors, target, n_select=1)
    assert result.r2 > 0.95 and result.spearman > 0.95
    assert result.selected["signal"].all()
    assert result.importance().index[0] == "signal"


def test_leak_detector_selection_on_noise_gives_no_skill():
    """Selecting features on all models before the LOO would leak; inside the loop it must not."""
    honest, leaky = [], []
    for seed in range(8):
        target, noise = _zoo_like(n_noise=200, seed=seed)
        honest.append(prediction.loo_predict(noise, target, n_select=2).r2)
        # the leaky protocol: choose the 2 best columns on *all* models, then cross-validate
        best = prediction._select_columns(noise.to_numpy(), target.to_numpy(), 2)
        leaky.append(prediction.loo_predict(noise.iloc[:, best], target, n_select=2).r2)
    assert np.mean(honest) < 0.05
    # the detector is sensitive: the leaky protocol looks clearly better than honest on pure noise
    assert np.mean(leaky) > np.mean(honest) + 0.25


def test_held_out_model_never_reaches_the_fit(monkeypatch):
    target, noise = _zoo_like(n_models=10, n_noise=5, seed=3)
    seen = []
    original_select, original_fit = prediction._select_columns, prediction._ridge_fit

    def spy_select(x, y, n_select):
        seen.append(("select", set(np.round(np.ravel(y), 12))))
        return original_select(x, y, n_select)

    def spy_fit(x, y, alphas):
        seen.append(("fit", set(np.round(np.ravel(y), 12))))
        return original_fit(x, y, alphas)

    monkeypatch.setattr(prediction, "_select_columns", spy_select)
    monkeypatch.setattr(prediction, "_ridge_fit", spy_fit)
    prediction.loo_predict(noise, target, n_select=2)
    assert len(seen) == 20
    for fold, model in enumerate(target.index):
        held = round(float(target[model]), 12)
        for _, values in seen[2 * fold : 2 * fold + 2]:
            assert held not in values and len(values) == 9


def test_loo_missing_model_and_nan_target():
    target, noise = _zoo_like(n_models=8, n_noise=3)
    with pytest.raises(ValueError, match="lack model"):
        prediction.loo_predict(noise.drop(index="m3"), target)
    with pytest.raises(ValueError, match="NaN"):
        prediction.loo_predict(noise, target.where(target.index != "m2"))


def test_compare_predictors_and_permutation_pvalue():
    target, noise = _zoo_like(n_models=14, n_noise=6, seed=5)
    rng = np.random.default_rng(0)
    signal = pd.DataFrame({"s": target + 0.2 * rng.normal(size=len(target))})
    targets = pd.DataFrame({"task": target})
    table, results = prediction.compare_predictors({"signal": signal, "noise": noise}, targets,
                                                 n_boot=200, n_permutations=49, progress=False)
    assert list(table["predictor"]) == ["signal", "noise"]
    row = table.set_index("predictor").loc["signal"]
    assert row["spearman"] > 0.8 and row["p_spearman"] <= 0.05
    assert row["spearman_low"] <= row["spearman"] <= row["spearman_high"]
    assert table.set_index("predictor").loc["noise", "p_spearman"] > 0.05
    assert set(results) == {("signal", "task"), ("noise", "task")}
    again, _ = prediction.compare_predictors({"signal": signal, "noise": noise}, targets,
                                           n_boot=200, n_permutations=49, progress=False)
    pd.testing.assert_frame_equal(table, again)


def test_batched_permutations_and_bootstraps_match_plain_loops():
    """The vectorised p-value and bootstrap intervals equal the one-at-a-time definitions."""
    target, noise = _zoo_like(n_models=12, n_noise=5, seed=7)
    descriptors = noise.assign(signal=target + 0.8 * np.random.default_rng(1).normal(size=12))
    rng = np.random.default_rng(3)
    observed = prediction.loo_predict(descriptors, target, n_select=2).spearman
    null = [prediction.loo_predict(descriptors, pd.Series(rng.permutation(target.to_numpy()), index=target.index),
                                 n_select=2).spearman for _ in range(30)]
    expected = (1 + np.sum(np.nan_to_num(null, nan=-np.inf) >= observed)) / 31
    assert prediction.loo_permutation_pvalue(descriptors, target, 30, seed=3, n_select=2) == pytest.approx(expected)

    result = prediction.loo_predict(descriptors, target, n_select=2)
    measured, predicted = result.measured.to_numpy(), result.predictions.to_numpy()
    rng = np.random.default_rng(5)
    draws = {"r2": [], "spearman": [], "kendall": []}
    for _ in range(200):
        idx = rng.integers(0, 12, size=12)
        for name, value in prediction.regression_scores(measured[idx], predicted[idx]).items():
            draws[name].append(value)
    intervals = prediction.bootstrap_scores(measured, predicted, n_boot=200, seed=5)
    for name, values in draws.items():
        np.testing.assert_allclose(intervals[name], np.nanpercentile(values, [2.5, 97.5]), rtol=1e-12)

    other = prediction.loo_predict(noise, target, n_select=1)
    rng = np.random.default_rng(2)
    means = []
    for _ in range(150):
        idx = rng.integers(0, 12, size=12)
        means.append(np.nanmean([prediction.regression_scores(r.measured.to_numpy()[idx], r.predictions.to_numpy()[idx])
                                 ["kendall"] for r in (result, other)]))
    _, low, high = prediction.bootstrap_mean_score([result, other], "kendall", n_boot=150, seed=2)
    np.testing.assert_allclose([low, high], np.nanpercentile(means, [2.5, 97.5]), rtol=1e-12)
    with pytest.raises(TypeError, match="unexpected keyword"):
        prediction.loo_permutation_pvalue(descriptors, target, 5, n_selct=2)


def test_bootstrap_mean_score_brackets_the_mean():
    rng = np.random.default_rng(2)
    target, noise = _zoo_like(n_models=16, n_noise=2, seed=2)
    results = []
    for scale in (0.3, 0.6):
        signal = pd.DataFrame({"s": target + scale * rng.normal(size=len(target))})
        results.append(prediction.loo_predict(signal, target, n_select=1))
    mean, low, high = prediction.bootstrap_mean_score(results, "spearman", n_boot=300, seed=0)
    assert mean == pytest.approx(np.mean([r.spearman for r in results]))
    assert low < mean < high and low > 0
    assert prediction.bootstrap_mean_score(results, "spearman", n_boot=300, seed=0) == (mean, low, high)
    with pytest.raises(ValueError, match="statistic"):
        prediction.bootstrap_mean_score(results, "accuracy")



def test_rank_helpers_match_scipy_with_ties():
    from scipy import stats

    rng = np.random.default_rng(4)
    for _ in range(20):
        a = rng.integers(0, 5, size=12).astype(float)  # many ties
        b = rng.integers(0, 4, size=12).astype(float)
        np.testing.assert_allclose(prediction._average_ranks(a), stats.rankdata(a))
        scores = prediction.regression_scores(a, b)
        assert scores["spearman"] == pytest.approx(stats.spearmanr(a, b).statistic)
        assert scores["kendall"] == pytest.approx(stats.kendalltau(a, b).statistic)
    matrix = rng.integers(0, 3, size=(9, 4)).astype(float)
    np.testing.assert_allclose(prediction._average_ranks(matrix), stats.rankdata(matrix, axis=0))
    assert np.isnan(prediction.regression_scores(np.ones(5), np.arange(5.0))["spearman"])
