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


def _digits_splits():
    """scikit-learn's 8x8 digits (bundled, offline): a fixed real problem, split 50/20/30 at random.
    Some pixels are constant, which exercises the scale-1 rule for constant columns."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order], y[order]
    first, second = int(0.5 * len(y)), int(0.7 * len(y))
    return (x[:first], y[:first]), (x[first:second], y[first:second]), (x[second:], y[second:])


def _sklearn_probe(x, y, c):
    """scikit-learn's LogisticRegression on standardised features, solved far past its default
    tolerance (on one thread: its OpenMP threads crawl on a busy two-core machine)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return make_pipeline(StandardScaler(), LogisticRegression(C=c, tol=1e-10, max_iter=20000)).fit(x, y)


@pytest.mark.parametrize("c", [0.01, 1.0, 10.0])
def test_probe_solver_reaches_sklearns_optimum(c):
    (x, y), _, (x_test, y_test) = _digits_splits()
    mean, scale = transfer._standardiser(x)
    weights, _ = transfer._fit_logistic(transfer._design(x, mean, scale), y, 10, c)
    reference = _sklearn_probe(x, y, c)
    model = reference[-1]
    theirs = np.vstack([model.coef_.T, model.intercept_])
    # the objective only fixes the biases up to a common shift, and the optimum has weights summing
    # to zero over classes; compare class-centred parameters
    centred = lambda w: w - w.mean(axis=1, keepdims=True)  # noqa: E731
    np.testing.assert_allclose(centred(weights), centred(theirs), atol=1e-3 * np.abs(theirs).max())
    strength = 1.0 / (c * len(y))
    ours_loss = transfer._loss_gradient(weights, transfer._design(x, mean, scale), y, strength)[0]
    their_loss = transfer._loss_gradient(theirs, transfer._design(x, mean, scale), y, strength)[0]
    assert ours_loss <= their_loss + 1e-10 * abs(their_loss)
    ours = transfer._predict(weights, transfer._design(x_test, mean, scale), np.arange(10))
    np.testing.assert_array_equal(ours, reference.predict(x_test))


def test_linear_probe_matches_sklearn_protocol():
    """Same validation accuracies, same C, same test accuracy as the protocol run with scikit-learn."""
    train, val, test = _digits_splits()
    grid = [0.001, 0.01, 0.1, 1.0, 10.0]
    result = transfer.linear_probe(train, val, test, c_grid=grid)
    expected_val = {c: float(np.mean(_sklearn_probe(*train, c).predict(val[0]) == val[1])) for c in grid}
    assert result.val_accuracy == expected_val
    best_c = max(grid, key=lambda c: (expected_val[c], -c))
    assert result.best_c == best_c
    refit = _sklearn_probe(np.vstack([train[0], val[0]]), np.concatenate([train[1], val[1]]), best_c)
    assert result.accuracy == float(np.mean(refit.predict(test[0]) == test[1]))
    assert 0.9 < result.accuracy < 1.0  # a real, not trivially separable, problem


def test_linear_probe_warns_when_stopped_early_and_checks_grid():
    train, val, test = _digits_splits()
    with pytest.warns(transfer.ProbeConvergenceWarning, match="stopped after 2 steps"):
        transfer.linear_probe(train, val, test, c_grid=[1.0], max_iter=2)
    with pytest.raises(ValueError, match="c_grid"):
        transfer.linear_probe(train, val, test, c_grid=[0.0, 1.0])
    with pytest.raises(ValueError, match="differ in dimension"):
        transfer.linear_probe(train, val, (test[0][:, :10], test[1]))


def test_linear_probe_labels_need_not_be_contiguous():
    x, y = _blobs(900, spread=1.5, seed=6)
    splits = ((x[:400], y[:400]), (x[400:600], y[400:600]), (x[600:], y[600:]))
    renamed = tuple((features, np.array([10, 30, 70, 90])[labels]) for features, labels in splits)
    assert transfer.linear_probe(*splits) == transfer.linear_probe(*renamed)


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


def test_episodes_are_uniform_draws_without_replacement():
    labels = np.repeat(np.arange(7), [30, 40, 50, 25, 60, 35, 45])
    members, counts = transfer._class_members(labels, np.arange(7))
    episodes = transfer._draw_episodes(np.random.default_rng(0), members, counts, 5, 25, 4000)
    assert episodes.shape == (4000, 5, 25)
    episode_labels = labels[episodes]
    assert (episode_labels == episode_labels[:, :, :1]).all()  # one class per row of an episode
    assert all(len(set(e[:, 0])) == 5 for e in episode_labels)  # distinct classes
    assert all(len(set(e.ravel())) == 125 for e in episodes)  # no image twice
    # every class is chosen with probability 5/7; every image of a class of size s with 25/s
    chosen = np.bincount(episode_labels[:, :, 0].ravel(), minlength=7) / 4000
    np.testing.assert_allclose(chosen, 5 / 7, atol=0.03)
    uses = np.bincount(episodes.ravel(), minlength=len(labels))
    rate = uses / (4000 * 5 / 7 * 25 / counts[labels])
    assert abs(rate.mean() - 1) < 0.02 and rate.min() > 0.7 and rate.max() < 1.3


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
    coef, intercept, alpha = transfer._ridge_fit(x[None], y[None], alphas=[2.0])  # a batch of one problem
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
    assert transfer._ridge_fit(x[None], y[None], alphas)[2][0] == alphas[int(np.argmin(errors))]
    # a batch gives each problem the answer it gets alone
    other = rng.normal(size=12)
    batch = transfer._ridge_fit(np.stack([x, x[::-1]]), np.stack([y, other]), alphas)
    alone = transfer._ridge_fit(x[::-1][None], other[None], alphas)
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
        seen.append(("select", set(np.round(np.ravel(y), 12))))
        return original_select(x, y, n_select)

    def spy_fit(x, y, alphas):
        seen.append(("fit", set(np.round(np.ravel(y), 12))))
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


def test_batched_permutations_and_bootstraps_match_plain_loops():
    """The vectorised p-value and bootstrap intervals equal the one-at-a-time definitions."""
    target, noise = _zoo_like(n_models=12, n_noise=5, seed=7)
    descriptors = noise.assign(signal=target + 0.8 * np.random.default_rng(1).normal(size=12))
    rng = np.random.default_rng(3)
    observed = transfer.loo_predict(descriptors, target, n_select=2).spearman
    null = [transfer.loo_predict(descriptors, pd.Series(rng.permutation(target.to_numpy()), index=target.index),
                                 n_select=2).spearman for _ in range(30)]
    expected = (1 + np.sum(np.nan_to_num(null, nan=-np.inf) >= observed)) / 31
    assert transfer.loo_permutation_pvalue(descriptors, target, 30, seed=3, n_select=2) == pytest.approx(expected)

    result = transfer.loo_predict(descriptors, target, n_select=2)
    measured, predicted = result.measured.to_numpy(), result.predictions.to_numpy()
    rng = np.random.default_rng(5)
    draws = {"r2": [], "spearman": [], "kendall": []}
    for _ in range(200):
        idx = rng.integers(0, 12, size=12)
        for name, value in transfer.regression_scores(measured[idx], predicted[idx]).items():
            draws[name].append(value)
    intervals = transfer.bootstrap_scores(measured, predicted, n_boot=200, seed=5)
    for name, values in draws.items():
        np.testing.assert_allclose(intervals[name], np.nanpercentile(values, [2.5, 97.5]), rtol=1e-12)

    other = transfer.loo_predict(noise, target, n_select=1)
    rng = np.random.default_rng(2)
    means = []
    for _ in range(150):
        idx = rng.integers(0, 12, size=12)
        means.append(np.nanmean([transfer.regression_scores(r.measured.to_numpy()[idx], r.predictions.to_numpy()[idx])
                                 ["kendall"] for r in (result, other)]))
    _, low, high = transfer.bootstrap_mean_score([result, other], "kendall", n_boot=150, seed=2)
    np.testing.assert_allclose([low, high], np.nanpercentile(means, [2.5, 97.5]), rtol=1e-12)
    with pytest.raises(TypeError, match="unexpected keyword"):
        transfer.loo_permutation_pvalue(descriptors, target, 5, n_selct=2)


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
    first = transfer.measure_transfer(["tiny0", "tiny1"], tasks, n_jobs=1, **settings)
    assert len(first) == 2 * 2 * 2 and first["score"].between(0, 1).all()
    assert set(first["protocol"]) == {"linear", "5way5shot"}
    # a fresh cache recomputes everything: same seeds must give the same numbers, with any n_jobs
    monkeypatch.setenv("SSLGEOM_CACHE", str(tiny_zoo / "second"))
    second = transfer.measure_transfer(["tiny0", "tiny1"], tasks, n_jobs=2, **settings)
    pd.testing.assert_frame_equal(first, second)
    # the cached tables are what a third call returns
    pd.testing.assert_frame_equal(first, transfer.measure_transfer(["tiny0", "tiny1"], tasks, **settings))
    with pytest.raises(ValueError, match="n_jobs"):
        transfer.measure_transfer(["tiny0"], tasks, n_jobs=0, **settings)
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
