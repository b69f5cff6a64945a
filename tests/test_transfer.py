"""Tests of the transfer protocols and of leave-one-model-out prediction."""

import sys
import types

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score

import sslgeom
from sslgeom import transfer


def _blobs(n, n_classes=4, dim=12, spread=0.3, seed=0):
    rng = np.random.default_rng(seed)
    centres = 3.0 * rng.normal(size=(n_classes, dim))
    labels = rng.integers(0, n_classes, size=n)
    return centres[labels] + spread * rng.normal(size=(n, dim)), labels


# --------------------------------------------------------------------------- linear probe


def test_linear_probe_separable_task_is_solved():
    x, y = _blobs(900, seed=0)
    result = transfer.linear_probe((x[:400], y[:400]), (x[400:600], y[400:600]), (x[600:], y[600:]),
                                   c_grid=[0.01, 1.0, 100.0])
    assert result.accuracy >= 0.99
    assert set(result.val_accuracy) == {0.01, 1.0, 100.0}
    assert result.best_c in result.val_accuracy


def test_linear_probe_random_labels_is_at_chance():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1400, 20))
    y = rng.integers(0, 4, size=1400)
    result = transfer.linear_probe((x[:600], y[:600]), (x[600:800], y[600:800]), (x[800:], y[800:]))
    # chance is 0.25; with 600 test points the binomial std is about 0.018
    assert abs(result.accuracy - 0.25) < 0.07


def test_linear_probe_is_deterministic():
    x, y = _blobs(600, spread=2.5, seed=5)
    splits = ((x[:300], y[:300]), (x[300:400], y[300:400]), (x[400:], y[400:]))
    assert transfer.linear_probe(*splits) == transfer.linear_probe(*splits)


# --------------------------------------------------------------------------- few-shot


def test_few_shot_perfect_on_separable_data_and_reproducible():
    x, y = _blobs(600, n_classes=6, spread=0.05, seed=2)
    result = transfer.few_shot(x, y, n_way=5, n_shot=5, n_query=15, n_episodes=100, seed=7)
    assert result.mean == 1.0
    assert len(result.episode_accuracy) == 100
    again = transfer.few_shot(x, y, n_way=5, n_shot=5, n_query=15, n_episodes=100, seed=7)
    np.testing.assert_array_equal(result.episode_accuracy, again.episode_accuracy)


@pytest.mark.slow
def test_few_shot_interval_covers_true_accuracy():
    # Hard task (overlapping classes) so that episode accuracy varies. The "true" accuracy of the
    # episode distribution is estimated with many more episodes than any single run uses.
    x, y = _blobs(700, n_classes=7, dim=8, spread=3.5, seed=4)
    truth = transfer.few_shot(x, y, n_episodes=20000, seed=12345).mean
    assert 0.3 < truth < 0.9
    covered = 0
    for seed in range(20):
        run = transfer.few_shot(x, y, n_episodes=600, seed=seed)
        covered += run.ci_low <= truth <= run.ci_high
    # nominal 95%: P(covered <= 15 of 20) is about 0.3% if the interval is right
    assert covered >= 16


def test_few_shot_errors():
    x, y = _blobs(100, n_classes=4, seed=1)
    with pytest.raises(ValueError, match="need 5 classes"):
        transfer.few_shot(x, y, n_way=5, n_shot=1, n_query=1)
    with pytest.raises(ValueError, match="at least 35 examples"):
        transfer.few_shot(x, y, n_way=3, n_shot=20, n_query=15)
    with pytest.raises(ValueError, match="1 class"):
        transfer.few_shot(x, np.zeros(100, dtype=int))
    bad = x.copy()
    bad[5, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        transfer.few_shot(bad, y, n_way=2)


def test_linear_probe_rejects_single_class_and_nan():
    x, y = _blobs(300, seed=0)
    with pytest.raises(ValueError, match="at least 2"):
        transfer.linear_probe((x[:100], np.zeros(100)), (x[100:200], y[100:200]), (x[200:], y[200:]))
    bad = x.copy()
    bad[250] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        transfer.linear_probe((x[:100], y[:100]), (x[100:200], y[100:200]), (bad[200:], y[200:]))


# --------------------------------------------------------------------------- tasks


def test_corruption_is_deterministic_and_changes_images():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(60, 28, 28), dtype=np.uint8)
    first, kind = transfer.corrupt_images(images, seed=3)
    second, kind_again = transfer.corrupt_images(images, seed=3)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(kind, kind_again)
    assert first.dtype == np.uint8 and first.shape == images.shape
    assert set(np.unique(kind)) == {0, 1, 2}
    for k in range(3):  # every corruption really alters its images
        assert np.abs(first[kind == k].astype(int) - images[kind == k]).mean() > 5
    # low contrast shrinks the spread of grey levels
    assert first[kind == 2].std() < 0.5 * images[kind == 2].std()


def test_missing_model_raises(monkeypatch):
    fake = types.ModuleType("sslgeom.zoo")
    fake.names = lambda: ["simclr_cnn_s0"]
    monkeypatch.setitem(sys.modules, "sslgeom.zoo", fake)
    monkeypatch.setattr(sslgeom, "zoo", fake, raising=False)
    with pytest.raises(ValueError, match="not in the zoo"):
        transfer.measure_transfer(["no_such_model"], {}, progress=False)
    with pytest.raises(ValueError, match="not in the zoo"):
        transfer.baseline_table(["no_such_model"], progress=False)


# --------------------------------------------------------------------------- prediction


def test_regression_scores_match_references():
    rng = np.random.default_rng(0)
    y = rng.normal(size=15)
    pred = y + 0.5 * rng.normal(size=15)
    scores = transfer.regression_scores(y, pred)
    assert scores["r2"] == pytest.approx(r2_score(y, pred))
    from scipy import stats

    assert scores["spearman"] == pytest.approx(stats.spearmanr(y, pred).statistic)
    assert scores["kendall"] == pytest.approx(stats.kendalltau(y, pred).statistic)


def test_ridge_fit_matches_sklearn_and_brute_force_loo():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(12, 3))
    x -= x.mean(axis=0)
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.3 * rng.normal(size=12) + 4.0
    coef, intercept, alpha = transfer._ridge_fit(x, y, alphas=[2.0])
    reference = Ridge(alpha=2.0).fit(x, y)
    np.testing.assert_allclose(coef, reference.coef_, rtol=1e-10)
    assert intercept == pytest.approx(reference.intercept_)
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
    assert transfer._ridge_fit(x, y, alphas)[2] == alphas[int(np.argmin(errors))]


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
    result = transfer.loo_predict(descriptors, target, n_select=1)
    assert result.r2 > 0.95 and result.spearman > 0.95
    assert result.selected["signal"].all()
    assert result.importance().index[0] == "signal"


def test_leak_detector_selection_on_noise_gives_no_skill():
    """Selecting features on all models before the LOO would leak; inside the loop it must not."""
    honest, leaky = [], []
    for seed in range(8):
        target, noise = _zoo_like(n_noise=200, seed=seed)
        honest.append(transfer.loo_predict(noise, target, n_select=2).r2)
        # the leaky protocol: choose the 2 best columns on *all* models, then cross-validate
        best = transfer._select_columns(noise.to_numpy(), target.to_numpy(), 2)
        leaky.append(transfer.loo_predict(noise.iloc[:, best], target, n_select=2).r2)
    assert np.mean(honest) < 0.05
    # the detector is sensitive: the leaky protocol looks clearly better than honest on pure noise
    assert np.mean(leaky) > np.mean(honest) + 0.25


def test_held_out_model_never_reaches_the_fit(monkeypatch):
    target, noise = _zoo_like(n_models=10, n_noise=5, seed=3)
    seen = []
    original_select, original_fit = transfer._select_columns, transfer._ridge_fit

    def spy_select(x, y, n_select):
        seen.append(("select", set(np.round(y, 12))))
        return original_select(x, y, n_select)

    def spy_fit(x, y, alphas):
        seen.append(("fit", set(np.round(y, 12))))
        return original_fit(x, y, alphas)

    monkeypatch.setattr(transfer, "_select_columns", spy_select)
    monkeypatch.setattr(transfer, "_ridge_fit", spy_fit)
    transfer.loo_predict(noise, target, n_select=2)
    assert len(seen) == 20
    for fold, model in enumerate(target.index):
        held = round(float(target[model]), 12)
        for _, values in seen[2 * fold : 2 * fold + 2]:
            assert held not in values and len(values) == 9


def test_loo_missing_model_and_nan_target():
    target, noise = _zoo_like(n_models=8, n_noise=3)
    with pytest.raises(ValueError, match="lack model"):
        transfer.loo_predict(noise.drop(index="m3"), target)
    with pytest.raises(ValueError, match="NaN"):
        transfer.loo_predict(noise, target.where(target.index != "m2"))


def test_compare_predictors_and_permutation_pvalue():
    target, noise = _zoo_like(n_models=14, n_noise=6, seed=5)
    rng = np.random.default_rng(0)
    signal = pd.DataFrame({"s": target + 0.2 * rng.normal(size=len(target))})
    targets = pd.DataFrame({"task": target})
    table, results = transfer.compare_predictors({"signal": signal, "noise": noise}, targets,
                                                 n_boot=200, n_permutations=49, progress=False)
    assert list(table["predictor"]) == ["signal", "noise"]
    row = table.set_index("predictor").loc["signal"]
    assert row["spearman"] > 0.8 and row["p_spearman"] <= 0.05
    assert row["spearman_low"] <= row["spearman"] <= row["spearman_high"]
    assert table.set_index("predictor").loc["noise", "p_spearman"] > 0.05
    assert set(results) == {("signal", "task"), ("noise", "task")}
    again, _ = transfer.compare_predictors({"signal": signal, "noise": noise}, targets,
                                           n_boot=200, n_permutations=49, progress=False)
    pd.testing.assert_frame_equal(table, again)


def test_bootstrap_mean_score_brackets_the_mean():
    rng = np.random.default_rng(2)
    target, noise = _zoo_like(n_models=16, n_noise=2, seed=2)
    results = []
    for scale in (0.3, 0.6):
        signal = pd.DataFrame({"s": target + scale * rng.normal(size=len(target))})
        results.append(transfer.loo_predict(signal, target, n_select=1))
    mean, low, high = transfer.bootstrap_mean_score(results, "spearman", n_boot=300, seed=0)
    assert mean == pytest.approx(np.mean([r.spearman for r in results]))
    assert low < mean < high and low > 0
    assert transfer.bootstrap_mean_score(results, "spearman", n_boot=300, seed=0) == (mean, low, high)
    with pytest.raises(ValueError, match="statistic"):
        transfer.bootstrap_mean_score(results, "accuracy")


@pytest.fixture
def tiny_zoo(monkeypatch, tmp_path):
    """Two small random conv nets behind the zoo API, and an empty cache directory."""
    import torch

    nets = {}
    for i in range(2):
        torch.manual_seed(i)
        nets[f"tiny{i}"] = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, stride=2), torch.nn.ReLU(),
                                               torch.nn.Flatten(), torch.nn.Linear(4 * 13 * 13, 16)).eval()

    class Loaded:
        def __init__(self, name):
            self.backbone, self.info = nets[name], {"name": name, "sha256": f"tiny-{name}"}

        def preprocess(self, images):
            return images.float() / 255.0

    fake = types.ModuleType("sslgeom.zoo")
    fake.names = lambda: list(nets)
    fake.checkpoint_hash = lambda name: f"tiny-{name}"
    fake.load = lambda name, device="cpu": Loaded(name)
    monkeypatch.setitem(sys.modules, "sslgeom.zoo", fake)
    monkeypatch.setattr(sslgeom, "zoo", fake, raising=False)
    monkeypatch.setenv("SSLGEOM_CACHE", str(tmp_path / "first"))
    return tmp_path


@pytest.mark.slow
def test_measure_transfer_same_seeds_same_numbers(tiny_zoo, monkeypatch):
    kwargs = dict(names=("digits", "fashion_corrupted"), n_train=150, n_val=60, n_test=200, seed=1)
    tasks = transfer.build_tasks(**kwargs)
    again = transfer.build_tasks(**kwargs)
    for name in tasks:
        for split in ("train", "val", "test"):
            np.testing.assert_array_equal(getattr(tasks[name], split)[0], getattr(again[name], split)[0])
            np.testing.assert_array_equal(getattr(tasks[name], split)[1], getattr(again[name], split)[1])
    settings = dict(c_grid=[0.1, 1.0], shots=(5,), n_episodes=50, seed=3, progress=False)
    first = transfer.measure_transfer(["tiny0", "tiny1"], tasks, **settings)
    assert len(first) == 2 * 2 * 2 and first["score"].between(0, 1).all()
    assert set(first["protocol"]) == {"linear", "5way5shot"}
    # a fresh cache recomputes everything: same seeds must give the same numbers
    monkeypatch.setenv("SSLGEOM_CACHE", str(tiny_zoo / "second"))
    second = transfer.measure_transfer(["tiny0", "tiny1"], tasks, **settings)
    pd.testing.assert_frame_equal(first, second)
    other_seed = transfer.measure_transfer(["tiny0"], tasks, **{**settings, "seed": 4})
    assert not np.allclose(other_seed.query("protocol != 'linear'")["score"],
                           first.query("model == 'tiny0' and protocol != 'linear'")["score"])
    baselines = transfer.baseline_table(["tiny0", "tiny1"], n_spectrum=100, n_knn_train=300, n_knn_test=100,
                                        progress=False)
    assert list(baselines.columns) == ["rankme", "alpha_req", "source_knn"]
    assert (baselines["rankme"] >= 1).all() and baselines["source_knn"].between(0, 1).all()


def test_rank_helpers_match_scipy_with_ties():
    from scipy import stats

    rng = np.random.default_rng(4)
    for _ in range(20):
        a = rng.integers(0, 5, size=12).astype(float)  # many ties
        b = rng.integers(0, 4, size=12).astype(float)
        np.testing.assert_allclose(transfer._average_ranks(a), stats.rankdata(a))
        scores = transfer.regression_scores(a, b)
        assert scores["spearman"] == pytest.approx(stats.spearmanr(a, b).statistic)
        assert scores["kendall"] == pytest.approx(stats.kendalltau(a, b).statistic)
    matrix = rng.integers(0, 3, size=(9, 4)).astype(float)
    np.testing.assert_allclose(transfer._average_ranks(matrix), stats.rankdata(matrix, axis=0))
    assert np.isnan(transfer.regression_scores(np.ones(5), np.arange(5.0))["spearman"])


def test_tasks_do_not_depend_on_which_others_are_built():
    alone = transfer.build_tasks(["digits"], n_train=100, n_val=50, n_test=100, seed=2)["digits"]
    together = transfer.build_tasks(["textures", "digits"], n_train=100, n_val=50, n_test=100, seed=2)["digits"]
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(alone, split)[0], getattr(together, split)[0])
    other_seed = transfer.build_tasks(["digits"], n_train=100, n_val=50, n_test=100, seed=3)["digits"]
    assert not np.array_equal(alone.train[1], other_seed.train[1])
    with pytest.raises(ValueError, match="unknown transfer tasks"):
        transfer.build_tasks(["imagenet"])
