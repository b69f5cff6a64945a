"""Tests of the evaluation layer (sslgeom.evaluation): the linear probe, kNN accuracy and few-shot.

The probe is checked against scikit-learn's LogisticRegression (same C, same standardisation), kNN
accuracy against scikit-learn's KNeighborsClassifier, few-shot against a plain-loop reimplementation.
"""

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

from sslgeom import evaluation, logistic


def _blobs(n, n_classes=4, dim=12, spread=0.3, seed=0):
    rng = np.random.default_rng(seed)
    centres = 3.0 * rng.normal(size=(n_classes, dim))
    labels = rng.integers(0, n_classes, size=n)
    return centres[labels] + spread * rng.normal(size=(n, dim)), labels


# --------------------------------------------------------------------------- linear probe


def test_linear_probe_separable_task_is_solved():
    x, y = _blobs(900, seed=0)
    result = evaluation.linear_probe((x[:400], y[:400]), (x[400:600], y[400:600]), (x[600:], y[600:]),
                                   c_grid=[0.01, 1.0, 100.0])
    assert result.accuracy >= 0.99
    assert set(result.val_accuracy) == {0.01, 1.0, 100.0}
    assert result.best_c in result.val_accuracy


def test_linear_probe_random_labels_is_at_chance():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1400, 20))
    y = rng.integers(0, 4, size=1400)
    result = evaluation.linear_probe((x[:600], y[:600]), (x[600:800], y[600:800]), (x[800:], y[800:]))
    # chance is 0.25; with 600 test points the binomial std is about 0.018
    assert abs(result.accuracy - 0.25) < 0.07


def test_linear_probe_is_deterministic():
    x, y = _blobs(600, spread=2.5, seed=5)
    splits = ((x[:300], y[:300]), (x[300:400], y[300:400]), (x[400:], y[400:]))
    assert evaluation.linear_probe(*splits) == evaluation.linear_probe(*splits)


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
    mean, scale = logistic.standardiser(x)
    weights, _ = logistic.fit_logistic(logistic.design_matrix(x, mean, scale), y, 10, c)
    reference = _sklearn_probe(x, y, c)
    model = reference[-1]
    theirs = np.vstack([model.coef_.T, model.intercept_])
    # the objective only fixes the biases up to a common shift, and the optimum has weights summing
    # to zero over classes; compare class-centred parameters
    centred = lambda w: w - w.mean(axis=1, keepdims=True)  # noqa: E731
    np.testing.assert_allclose(centred(weights), centred(theirs), atol=1e-3 * np.abs(theirs).max())
    strength = 1.0 / (c * len(y))
    ours_loss = logistic.loss_gradient(weights, logistic.design_matrix(x, mean, scale), y, strength)[0]
    their_loss = logistic.loss_gradient(theirs, logistic.design_matrix(x, mean, scale), y, strength)[0]
    assert ours_loss <= their_loss + 1e-10 * abs(their_loss)
    ours = logistic.predict(weights, logistic.design_matrix(x_test, mean, scale), np.arange(10))
    np.testing.assert_array_equal(ours, reference.predict(x_test))


def test_linear_probe_matches_sklearn_protocol():
    """Same validation accuracies, same C, same test accuracy as the protocol run with scikit-learn."""
    train, val, test = _digits_splits()
    grid = [0.001, 0.01, 0.1, 1.0, 10.0]
    result = evaluation.linear_probe(train, val, test, c_grid=grid)
    expected_val = {c: float(np.mean(_sklearn_probe(*train, c).predict(val[0]) == val[1])) for c in grid}
    assert result.val_accuracy == expected_val
    best_c = max(grid, key=lambda c: (expected_val[c], -c))
    assert result.best_c == best_c
    refit = _sklearn_probe(np.vstack([train[0], val[0]]), np.concatenate([train[1], val[1]]), best_c)
    assert result.accuracy == float(np.mean(refit.predict(test[0]) == test[1]))
    assert 0.9 < result.accuracy < 1.0  # a real, not trivially separable, problem


def _sklearn_protocol(train, val, test, grid):
    """The probe's protocol written with scikit-learn: C by validation accuracy (ties to the smallest
    C), refit on train+val, test accuracy.

    With two classes scikit-learn fits one weight vector (binary loss) where the probe fits one per
    class (softmax); the two objectives have the same minimiser when scikit-learn's C is twice the
    probe's (the probe's optimum has W_1 = -W_0, so its penalty is half that of w = W_1 - W_0).
    """
    scale = 2.0 if len(np.unique(train[1])) == 2 else 1.0
    val_accuracy = {c: float(np.mean(_sklearn_probe(*train, scale * c).predict(val[0]) == val[1])) for c in grid}
    best_c = max(grid, key=lambda c: (val_accuracy[c], -c))
    refit = _sklearn_probe(np.vstack([train[0], val[0]]), np.concatenate([train[1], val[1]]), scale * best_c)
    return val_accuracy, best_c, float(np.mean(refit.predict(test[0]) == test[1]))


@pytest.mark.parametrize("dataset", ["wine", "breast_cancer", "blobs"])
def test_probe_accuracy_equals_sklearn_on_several_datasets(dataset):
    """Bundled scikit-learn datasets (offline) and overlapping blobs, with the default 6-value grid."""
    from sklearn import datasets

    if dataset == "blobs":
        x, y = _blobs(500, n_classes=5, dim=10, spread=3.0, seed=8)
    else:
        x, y = getattr(datasets, f"load_{dataset}")(return_X_y=True)
    order = np.random.default_rng(1).permutation(len(y))
    x, y = x[order], y[order]
    first, second = int(0.5 * len(y)), int(0.7 * len(y))
    train, val, test = (x[:first], y[:first]), (x[first:second], y[first:second]), (x[second:], y[second:])
    result = evaluation.linear_probe(train, val, test)
    assert tuple(result.val_accuracy) == evaluation.DEFAULT_C_GRID == (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)
    val_accuracy, best_c, accuracy = _sklearn_protocol(train, val, test, evaluation.DEFAULT_C_GRID)
    assert result.val_accuracy == val_accuracy
    assert result.best_c == best_c
    assert result.accuracy == accuracy


def _wide_splits(n_train=60, n_val=30, n_test=200, dim=300, n_classes=5, seed=0):
    """More dimensions than training points (as with 2048-d published features on a small folder)."""
    rng = np.random.default_rng(seed)
    centres = 0.15 * rng.normal(size=(n_classes, dim))
    splits = []
    for n in (n_train, n_val, n_test):
        labels = np.arange(n) % n_classes
        splits.append((centres[labels] + rng.normal(size=(n, dim)), labels))
    return splits


def test_probe_in_the_row_space_matches_sklearn_when_dimensions_exceed_points():
    """With fewer points than dimensions the probe solves in the row space of the training features;
    the protocol's numbers are scikit-learn's, which solves in the full space."""
    train, val, test = _wide_splits()
    design = logistic.design_matrix(train[0], *logistic.standardiser(train[0]))
    basis = logistic.row_space(design)
    assert basis is not None and basis.shape == (300, 60)
    np.testing.assert_allclose(basis.T @ basis, np.eye(60), atol=1e-10)
    grid = [0.01, 0.1, 1.0]
    result = evaluation.linear_probe(train, val, test, c_grid=grid)
    val_accuracy, best_c, accuracy = _sklearn_protocol(train, val, test, grid)
    assert (result.val_accuracy, result.best_c, result.accuracy) == (val_accuracy, best_c, accuracy)
    assert 0.4 < result.accuracy < 1.0  # neither chance (0.2) nor trivially separable


def test_row_space_weights_are_the_full_space_optimum():
    """Lifted row-space weights have a zero full-space gradient: the reduction is exact."""
    train, _, _ = _wide_splits(seed=1)
    design = logistic.design_matrix(train[0], *logistic.standardiser(train[0]))
    basis = logistic.row_space(design)
    reduced, _ = logistic.fit_logistic(logistic.in_basis(design, basis), train[1], 5, 1.0)
    weights = logistic.lift(reduced, basis)
    _, gradient, _ = logistic.loss_gradient(weights, design, train[1], 1.0 / len(train[1]))
    assert np.abs(gradient).max() < 1e-7
    np.testing.assert_allclose(logistic.project(weights, basis), reduced, atol=1e-12)


def test_kronecker_preconditioner_reaches_the_same_optimum(monkeypatch):
    """Past the exact-Hessian size the shared-block preconditioner is used: the same optimum as the
    exact Hessian (only the path differs), checked on scikit-learn's digits."""
    (x, y), _, _ = _digits_splits()
    design = logistic.design_matrix(x, *logistic.standardiser(x))
    exact, _ = logistic.fit_logistic(design, y, 10, 1.0)
    calls = []
    original = logistic._kronecker_factor
    monkeypatch.setattr(logistic, "_kronecker_factor", lambda *a: calls.append(1) or original(*a))
    monkeypatch.setattr(logistic, "_PROBE_EXACT_HESSIAN", 100)
    approximate, _ = logistic.fit_logistic(design, y, 10, 1.0, max_iter=2000)
    assert calls  # the Kronecker path ran
    centred = lambda w: w - w.mean(axis=1, keepdims=True)  # noqa: E731
    np.testing.assert_allclose(centred(approximate), centred(exact), atol=1e-5 * np.abs(exact).max())
    _, gradient, _ = logistic.loss_gradient(approximate, design, y, 1.0 / len(y))
    assert np.abs(gradient).max() < evaluation.PROBE_GTOL


def test_validation_split_then_probe_is_the_manifest_protocol():
    """The zoo manifest's protocol: a stratified 20% validation split of the probe's train images
    (scikit-learn's train_test_split, seed 0), then the probe."""
    from sklearn.model_selection import train_test_split

    (x, y), _, test = _digits_splits()
    train, val = evaluation.validation_split(x, y, 0.2, seed=0)
    fit_x, val_x, fit_y, val_y = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    np.testing.assert_array_equal(train[0], fit_x)
    np.testing.assert_array_equal(val[1], val_y)
    assert len(val[1]) == int(np.ceil(0.2 * len(y)))
    # each class keeps its share in both parts (stratified), to within one image
    for label in np.unique(y):
        assert abs(np.sum(val[1] == label) - 0.2 * np.sum(y == label)) <= 1
    grid = (0.01, 1.0, 100.0)
    result = evaluation.linear_probe(train, val, test, c_grid=grid)
    assert (result.val_accuracy, result.best_c, result.accuracy) == _sklearn_protocol(
        (fit_x, fit_y), (val_x, val_y), test, grid)
    with pytest.raises(ValueError, match="val_fraction"):
        evaluation.validation_split(x, y, 1.5)


def test_linear_probe_warns_when_stopped_early_and_checks_grid():
    train, val, test = _digits_splits()
    with pytest.warns(evaluation.ProbeConvergenceWarning, match="stopped after 2 steps"):
        evaluation.linear_probe(train, val, test, c_grid=[1.0], max_iter=2)
    with pytest.raises(ValueError, match="c_grid"):
        evaluation.linear_probe(train, val, test, c_grid=[0.0, 1.0])
    with pytest.raises(ValueError, match="differ in dimension"):
        evaluation.linear_probe(train, val, (test[0][:, :10], test[1]))


def test_linear_probe_labels_need_not_be_contiguous():
    x, y = _blobs(900, spread=1.5, seed=6)
    splits = ((x[:400], y[:400]), (x[400:600], y[400:600]), (x[600:], y[600:]))
    renamed = tuple((features, np.array([10, 30, 70, 90])[labels]) for features, labels in splits)
    assert evaluation.linear_probe(*splits) == evaluation.linear_probe(*renamed)


def test_linear_probe_rejects_single_class_and_nan():
    x, y = _blobs(300, seed=0)
    with pytest.raises(ValueError, match="at least 2"):
        evaluation.linear_probe((x[:100], np.zeros(100)), (x[100:200], y[100:200]), (x[200:], y[200:]))
    bad = x.copy()
    bad[250] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        evaluation.linear_probe((x[:100], y[:100]), (x[100:200], y[100:200]), (bad[200:], y[200:]))



# --------------------------------------------------------------------------- few-shot


def test_few_shot_perfect_on_separable_data_and_reproducible():
    x, y = _blobs(600, n_classes=6, spread=0.05, seed=2)
    result = evaluation.few_shot(x, y, n_way=5, n_shot=5, n_query=15, n_episodes=100, seed=7)
    assert result.mean == 1.0
    assert len(result.episode_accuracy) == 100
    again = evaluation.few_shot(x, y, n_way=5, n_shot=5, n_query=15, n_episodes=100, seed=7)
    np.testing.assert_array_equal(result.episode_accuracy, again.episode_accuracy)


@pytest.mark.slow
def test_few_shot_interval_covers_true_accuracy():
    # Hard task (overlapping classes) so that episode accuracy varies. The "true" accuracy of the
    # episode distribution is estimated with many more episodes than any single run uses.
    x, y = _blobs(700, n_classes=7, dim=8, spread=3.5, seed=4)
    truth = evaluation.few_shot(x, y, n_episodes=20000, seed=12345).mean
    assert 0.3 < truth < 0.9
    covered = 0
    for seed in range(20):
        run = evaluation.few_shot(x, y, n_episodes=600, seed=seed)
        covered += run.ci_low <= truth <= run.ci_high
    # nominal 95%: P(covered <= 15 of 20) is about 0.3% if the interval is right
    assert covered >= 16


def test_episodes_are_uniform_draws_without_replacement():
    labels = np.repeat(np.arange(7), [30, 40, 50, 25, 60, 35, 45])
    members, counts = evaluation._class_members(labels, np.arange(7))
    episodes = evaluation._draw_episodes(np.random.default_rng(0), members, counts, 5, 25, 4000)
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
        evaluation.few_shot(x, y, n_way=5, n_shot=1, n_query=1)
    with pytest.raises(ValueError, match="at least 35 examples"):
        evaluation.few_shot(x, y, n_way=3, n_shot=20, n_query=15)
    with pytest.raises(ValueError, match="1 class"):
        evaluation.few_shot(x, np.zeros(100, dtype=int))
    bad = x.copy()
    bad[5, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        evaluation.few_shot(bad, y, n_way=2)


def test_few_shot_matches_a_plain_loop_reimplementation():
    """Same episodes (the sampler is tested above), classified one query at a time by the textbook
    rule: L2-normalise, average each class's support, assign the nearest mean (Euclidean)."""
    x, y = _blobs(120, n_classes=6, dim=5, spread=2.0, seed=9)
    result = evaluation.few_shot(x, y, n_way=3, n_shot=2, n_query=4, n_episodes=150, seed=11)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    classes, counts = np.unique(y, return_counts=True)
    members, member_counts = evaluation._class_members(y, classes[counts >= 6])
    rng = np.random.default_rng(11)
    expected = []
    for start in range(0, 150, evaluation.EPISODE_BLOCK):  # the sampler's stream is drawn per block
        size = min(evaluation.EPISODE_BLOCK, 150 - start)
        for episode in evaluation._draw_episodes(rng, members, member_counts, 3, 6, size):
            prototypes = [unit[episode[way, :2]].mean(axis=0) for way in range(3)]
            correct = []
            for way in range(3):
                for row in episode[way, 2:]:
                    distances = [np.sum((unit[row] - p) ** 2) for p in prototypes]
                    correct.append(int(np.argmin(distances)) == way)
            expected.append(np.mean(correct))
    np.testing.assert_allclose(result.episode_accuracy, expected, rtol=0, atol=1e-12)
    half = 1.96 * np.std(expected, ddof=1) / np.sqrt(150)
    assert (result.mean, result.ci_low, result.ci_high) == pytest.approx(
        (np.mean(expected), np.mean(expected) - half, np.mean(expected) + half), rel=1e-12)
    assert 0.4 < result.mean < 0.95  # neither trivial nor hopeless


# --------------------------------------------------------------------------- kNN accuracy


def _knn_task(seed=1, n_train=300, n_test=200, dim=16):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, dim))
    train_labels = rng.integers(0, 3, size=n_train)
    test_labels = rng.integers(0, 3, size=n_test)
    train = centres[train_labels] + 1.5 * rng.normal(size=(n_train, dim))
    test = centres[test_labels] + 1.5 * rng.normal(size=(n_test, dim))
    return train, train_labels, test, test_labels


@pytest.mark.parametrize("k", [1, 7, 20])
def test_knn_accuracy_matches_scikit_learn(k):
    train, train_labels, test, test_labels = _knn_task()
    reference = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute").fit(train, train_labels)
    expected = float(np.mean(reference.predict(test) == test_labels))
    assert evaluation.knn_accuracy(train, train_labels, test, test_labels, k=k, block_size=64) == expected
    assert 0.5 < expected < 1.0  # the task is neither trivial nor hopeless


def test_knn_vote_ties_go_to_the_smallest_label():
    # two neighbours, one of each class: the vote is a tie and the smaller label wins
    train = np.array([[1.0, 0.1], [1.0, -0.1], [-1.0, 0.0]])
    labels = np.array([4, 2, 0])
    test = np.array([[1.0, 0.0]])
    assert evaluation.knn_accuracy(train, labels, test, np.array([2]), k=2) == 1.0
    assert evaluation.knn_accuracy(train, labels, test, np.array([4]), k=2) == 0.0


def test_cosine_neighbours_match_brute_force():
    train, _, test, _ = _knn_task(seed=2)
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    similarity = unit(test) @ unit(train).T
    expected = np.argsort(-similarity, axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(evaluation.cosine_neighbours(test, train, 5, block_size=33), expected)
    # queries taken from the reference, each excluding itself
    neighbours = evaluation.cosine_neighbours(train[:10], train, 3, exclude=np.arange(10))
    self_similarity = unit(train[:10]) @ unit(train).T
    self_similarity[np.arange(10), np.arange(10)] = -np.inf
    np.testing.assert_array_equal(neighbours, np.argsort(-self_similarity, axis=1, kind="stable")[:, :3])


def test_knn_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="k must lie in"):
        evaluation.knn_accuracy(np.ones((5, 2)), np.zeros(5), np.ones((3, 2)), np.zeros(3), k=6)
    with pytest.raises(ValueError, match="non-negative"):
        evaluation.knn_accuracy(np.eye(3), np.array([0, -1, 1]), np.eye(3), np.zeros(3), k=1)
    with pytest.raises(ValueError, match="differ in dimension"):
        evaluation.cosine_neighbours(np.ones((2, 3)), np.ones((4, 2)), 1)
    with pytest.raises(ValueError, match="NaN"):
        evaluation.knn_accuracy(np.full((4, 2), np.nan), np.zeros(4), np.ones((3, 2)), np.zeros(3), k=1)
