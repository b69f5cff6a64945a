"""Evaluation of frozen features with labels: the linear probe, kNN accuracy and few-shot episodes.

Features in, numbers out: nothing here knows about models or tasks, so the zoo manifest (chapter 01,
``scripts/train_zoo.py``) and the transfer measurements (chapter 05, :mod:`sslgeom.transfer`) go
through the same functions.

* :func:`linear_probe`: L2-regularised multinomial logistic regression on standardised features,
  ``C`` chosen on a validation split then refit on train+val (Ericsson et al., CVPR 2021), each fit
  solved to the optimum of scikit-learn's ``LogisticRegression(C=C)`` by :mod:`sslgeom.logistic`;
  :func:`validation_split` cuts a stratified validation part off a training set for it.
* :func:`knn_accuracy`: cosine k-nearest-neighbour majority vote (the "kNN monitor" of SSL
  training); :func:`cosine_neighbours` is the neighbour search behind it.
* :func:`few_shot`: N-way K-shot nearest-prototype episodes with a 95% interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .logistic import (PROBE_GTOL, ProbeConvergenceWarning, design_matrix, fit_logistic, in_basis, lift, predict,
                       project, restandardise, row_space, standardiser)
from .validation import check_features, check_int, check_labels

__all__ = [
    "DEFAULT_C_GRID",
    "PROBE_GTOL",
    "EPISODE_BLOCK",
    "ProbeResult",
    "ProbeConvergenceWarning",
    "FewShotResult",
    "validation_split",
    "linear_probe",
    "cosine_neighbours",
    "knn_accuracy",
    "few_shot",
]

#: The probe's grid of inverse regularisation strengths, ``1e-3 .. 1e2`` (6 values, log-spaced).
DEFAULT_C_GRID: tuple[float, ...] = tuple(np.logspace(-3, 2, 6).tolist())


# ---------------------------------------------------------------------------------------------
# Linear probe
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeResult:
    """Outcome of :func:`linear_probe`.

    Attributes
    ----------
    accuracy : float
        Test accuracy of the model refit on train+val with the chosen ``C``.
    best_c : float
        Inverse regularisation strength chosen on the validation split.
    val_accuracy : dict
        Validation accuracy for every ``C`` of the grid.
    """

    accuracy: float
    best_c: float
    val_accuracy: dict[float, float]


def validation_split(
    features: np.ndarray, labels: np.ndarray, val_fraction: float = 0.2, seed: int = 0
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Hold out a stratified, random validation part of a training set (for :func:`linear_probe`).

    Parameters
    ----------
    features : array, shape (n_points, dim)
    labels : array, shape (n_points,)
        Class labels; every class needs at least two points (one per part).
    val_fraction : float
        Fraction of the points held out, in ``(0, 1)``.
    seed : int
        Seeds the split (scikit-learn's ``train_test_split`` with ``random_state=seed``).

    Returns
    -------
    train, val : (features (n, dim), labels (n,))
        The two parts, ``round(val_fraction * n_points)`` points (rounded up) in ``val``.
    """
    from sklearn.model_selection import train_test_split

    features = check_features(features, "features")
    labels = check_labels(labels, len(features), "labels")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}.")
    fit_x, val_x, fit_y, val_y = train_test_split(
        features, labels, test_size=val_fraction, random_state=seed, stratify=labels
    )
    return (fit_x, fit_y), (val_x, val_y)


def linear_probe(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    c_grid: Sequence[float] = DEFAULT_C_GRID,
    max_iter: int = 500,
    gtol: float = PROBE_GTOL,
) -> ProbeResult:
    """Linear probe: L2-regularised multinomial logistic regression on standardised features.

    ``C`` (inverse regularisation) is chosen on ``val`` from ``c_grid``; the model is then refit
    on train+val with that ``C`` and scored on ``test``. Ties in validation accuracy go to the
    smallest ``C`` (the strongest regularisation). Each fit is solved to the optimum of
    scikit-learn's ``LogisticRegression(C=C)`` objective (gradient below ``gtol``; tested against
    scikit-learn), walking the grid from strong to weak regularisation with warm starts. BLAS runs
    on one thread: faster for these small problems and the same numbers on every machine load.
    The fit is always multinomial (one weight vector per class): with two classes it equals
    scikit-learn's binary ``LogisticRegression(C=2 * C)``. Wide features cost little: with fewer
    training points than dimensions the fit runs in the span of the training features (exact, see
    :mod:`sslgeom.logistic`), so a 2,048-d probe on 250 images of 10 classes takes seconds.

    Parameters
    ----------
    train, val, test : (features (n, dim), labels (n,))
        Feature matrices and labels of the three splits.
    c_grid : sequence of float
        Candidate values of ``C`` (log-spaced is customary).
    max_iter : int
        Step cap of the solver per fit.
    gtol : float
        Gradient tolerance of the solver (on ``mean CE + ||W||^2 / (2 C n)``).

    Returns
    -------
    ProbeResult
    """
    from threadpoolctl import threadpool_limits

    x_train, y_train = check_features(train[0], "train features"), train[1]
    x_val, y_val = check_features(val[0], "val features", min_rows=1), val[1]
    x_test, y_test = check_features(test[0], "test features", min_rows=1), test[1]
    y_train = check_labels(y_train, len(x_train), "train labels")
    y_val = check_labels(y_val, len(x_val), "val labels", min_classes=1)
    y_test = check_labels(y_test, len(x_test), "test labels", min_classes=1)
    if not len(c_grid) or min(float(c) for c in c_grid) <= 0:
        raise ValueError(f"c_grid must hold positive values such as numpy.logspace(-3, 3, 7); got {list(c_grid)}.")
    if not x_train.shape[1] == x_val.shape[1] == x_test.shape[1]:
        raise ValueError(f"train, val and test features differ in dimension "
                         f"({x_train.shape[1]}, {x_val.shape[1]}, {x_test.shape[1]}); embed them with the same model.")
    with threadpool_limits(limits=1, user_api="blas"):
        classes, train_index = np.unique(y_train, return_inverse=True)
        train_scaler = standardiser(x_train)
        design, val_design = design_matrix(x_train, *train_scaler), design_matrix(x_val, *train_scaler)
        basis = row_space(design)  # fewer points than dimensions: solve in the row space (exact)
        fit_design = in_basis(design, basis)
        path_weights, val_accuracy, weights = {}, {}, None
        for c in sorted(float(c) for c in c_grid):
            weights, _ = fit_logistic(fit_design, train_index, len(classes), c, weights, gtol=gtol, max_iter=max_iter)
            path_weights[c] = lift(weights, basis)
            val_accuracy[c] = float(np.mean(predict(path_weights[c], val_design, classes) == y_val))
        best_c = max(val_accuracy, key=lambda c: (val_accuracy[c], -c))
        x_full, y_full = np.vstack([x_train, x_val]), np.concatenate([y_train, y_val])
        full_classes, full_index = np.unique(y_full, return_inverse=True)
        full_scaler = standardiser(x_full)
        full_design = design_matrix(x_full, *full_scaler)
        full_basis = row_space(full_design)
        initial = (project(restandardise(path_weights[best_c], train_scaler, full_scaler), full_basis)
                   if np.array_equal(full_classes, classes) else None)
        final, _ = fit_logistic(in_basis(full_design, full_basis), full_index, len(full_classes), best_c, initial,
                                 gtol=gtol, max_iter=max_iter)
        final = lift(final, full_basis)
        accuracy = float(np.mean(predict(final, design_matrix(x_test, *full_scaler), full_classes) == y_test))
    return ProbeResult(accuracy=accuracy, best_c=best_c, val_accuracy=val_accuracy)



# ---------------------------------------------------------------------------------------------
# Few-shot episodes
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FewShotResult:
    """Outcome of :func:`few_shot`.

    Attributes
    ----------
    mean : float
        Mean query accuracy over episodes.
    ci_low, ci_high : float
        95% normal interval of the mean, ``mean -/+ 1.96 * std / sqrt(n_episodes)``.
    episode_accuracy : array, shape (n_episodes,)
    """

    mean: float
    ci_low: float
    ci_high: float
    episode_accuracy: np.ndarray = field(repr=False)


EPISODE_BLOCK = 100  # episodes drawn and scored per vectorised block (fixed: it shapes the random stream)


def _class_members(labels: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of each class, padded with -1: ``members (n_classes, max_count)``, ``counts (n_classes,)``."""
    rows = [np.flatnonzero(labels == c) for c in classes]
    counts = np.array([len(r) for r in rows])
    members = np.full((len(rows), counts.max()), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        members[i, : len(r)] = r
    return members, counts


def _draw_episodes(
    rng: np.random.Generator, members: np.ndarray, counts: np.ndarray, n_way: int, n_per_class: int, n_episodes: int
) -> np.ndarray:
    """Random episodes: ``(n_episodes, n_way, n_per_class)`` row indices.

    Each episode takes ``n_way`` distinct classes and ``n_per_class`` distinct rows of each, all
    uniformly without replacement: the order of independent uniform keys is a uniform random
    permutation (ties have probability zero), and padding gets key +inf so it sorts last.
    """
    chosen = np.argsort(rng.random((n_episodes, len(counts))), axis=1, kind="stable")[:, :n_way]
    keys = rng.random((n_episodes, n_way, members.shape[1]))
    keys[np.arange(members.shape[1]) >= counts[chosen][..., None]] = np.inf
    picks = np.argsort(keys, axis=2, kind="stable")[..., :n_per_class]
    return np.take_along_axis(members[chosen], picks, axis=2)


def _episode_accuracy(features: np.ndarray, episodes: np.ndarray, n_shot: int) -> np.ndarray:
    """Query accuracy ``(n_episodes,)`` of the nearest class mean (Euclidean) in each episode.

    ``episodes (n_episodes, n_way, n_shot + n_query)``: the first ``n_shot`` rows of each class
    are the support, the rest the queries. ``||q - p||^2 = ||q||^2 - 2 q.p + ||p||^2``, and
    ``||q||^2`` does not change which prototype is nearest.
    """
    n_episodes, n_way, n_per_class = episodes.shape
    prototypes = features[episodes[:, :, :n_shot]].mean(axis=2)  # (episodes, way, dim)
    queries = features[episodes[:, :, n_shot:]].reshape(n_episodes, n_way * (n_per_class - n_shot), -1)
    distance = (prototypes**2).sum(axis=2)[:, None, :] - 2.0 * queries @ prototypes.transpose(0, 2, 1)
    truth = np.repeat(np.arange(n_way), n_per_class - n_shot)
    return np.mean(distance.argmin(axis=2) == truth, axis=1)


def few_shot(
    features: np.ndarray,
    labels: np.ndarray,
    n_way: int = 5,
    n_shot: int = 5,
    n_query: int = 15,
    n_episodes: int = 600,
    seed: int = 0,
) -> FewShotResult:
    """Few-shot accuracy of a nearest-prototype classifier, averaged over random episodes.

    Each episode draws ``n_way`` classes, then ``n_shot`` support and ``n_query`` query images
    per class without replacement. Features are L2-normalised; a query gets the class of the
    nearest support mean (Euclidean), as in prototypical networks. Episodes are drawn and scored
    in blocks of :data:`EPISODE_BLOCK` with array operations.

    Parameters
    ----------
    features : array, shape (n_points, dim)
    labels : int array, shape (n_points,)
    n_way, n_shot, n_query, n_episodes : int
    seed : int
        Seed of the episode sampler; equal seeds give equal episodes.

    Returns
    -------
    FewShotResult
    """
    x = check_features(features)
    labels = check_labels(labels, len(x), "labels")
    for name, value in (("n_shot", n_shot), ("n_query", n_query), ("n_episodes", n_episodes)):
        check_int(value, name, minimum=1)
    check_int(n_way, "n_way (classes per episode)", minimum=2)
    classes, counts = np.unique(labels, return_counts=True)
    eligible = classes[counts >= n_shot + n_query]
    if len(eligible) < n_way:
        raise ValueError(
            f"{n_way}-way episodes with {n_shot} shots + {n_query} queries need {n_way} classes with at "
            f"least {n_shot + n_query} examples; only {len(eligible)} of {len(classes)} classes have "
            f"that many (smallest class: {counts.min()}). Lower n_shot/n_query/n_way or use a larger split."
        )
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    members, member_counts = _class_members(labels, eligible)
    rng = np.random.default_rng(seed)
    blocks = []
    for start in range(0, n_episodes, EPISODE_BLOCK):
        size = min(EPISODE_BLOCK, n_episodes - start)
        episodes = _draw_episodes(rng, members, member_counts, n_way, n_shot + n_query, size)
        blocks.append(_episode_accuracy(x, episodes, n_shot))
    accuracy = np.concatenate(blocks)
    mean = float(accuracy.mean())
    half = 1.96 * float(accuracy.std(ddof=1)) / np.sqrt(n_episodes) if n_episodes > 1 else float("nan")
    return FewShotResult(mean=mean, ci_low=float(mean - half), ci_high=float(mean + half), episode_accuracy=accuracy)


# ---------------------------------------------------------------------------------------------
# Cosine nearest neighbours and kNN accuracy
# ---------------------------------------------------------------------------------------------


def cosine_neighbours(
    queries: np.ndarray,
    reference: np.ndarray,
    k: int,
    *,
    exclude: np.ndarray | None = None,
    block_size: int = 2048,
) -> np.ndarray:
    """Indices of the ``k`` reference points most cosine-similar to each query, most similar first.

    Exact search in float32 (torch matmul and ``topk``), ``block_size`` queries at a time.

    Parameters
    ----------
    queries : array, shape (n_queries, dim)
    reference : array, shape (n_reference, dim)
    k : int
        Neighbours per query, ``1 <= k <= n_reference`` (minus one when ``exclude`` is given).
    exclude : int array, shape (n_queries,), optional
        For each query, one reference row that may not be its neighbour (the query itself when the
        queries are rows of ``reference``).
    block_size : int
        Queries per block: memory stays at ``block_size * n_reference`` floats.

    Returns
    -------
    int array, shape (n_queries, k)
    """
    import torch

    queries = check_features(queries, "queries", min_rows=1, dtype=np.float32)
    reference = check_features(reference, "reference features", min_rows=1, dtype=np.float32)
    if queries.shape[1] != reference.shape[1]:
        raise ValueError(f"queries and reference differ in dimension ({queries.shape[1]} vs {reference.shape[1]}); "
                         "embed both with the same model.")
    available = len(reference) - (exclude is not None)
    check_int(k, "k", minimum=1)
    if k > available:
        raise ValueError(f"k must lie in [1, {available}] (the number of reference points that can be "
                         f"neighbours), got {k}.")
    if exclude is not None:
        exclude = np.asarray(exclude, dtype=np.int64)
        if exclude.shape != (len(queries),):
            raise ValueError(f"exclude must hold one reference row per query, shape ({len(queries)},); "
                             f"got {exclude.shape}.")
    block_size = check_int(block_size, "block_size", minimum=1)
    reference_t = torch.nn.functional.normalize(torch.from_numpy(reference), dim=1)
    queries_t = torch.nn.functional.normalize(torch.from_numpy(queries), dim=1)
    indices = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), block_size):
        similarity = queries_t[start : start + block_size] @ reference_t.T
        if exclude is not None:
            rows = torch.arange(len(similarity))
            similarity[rows, torch.from_numpy(exclude[start : start + block_size])] = -torch.inf
        indices[start : start + block_size] = similarity.topk(k, dim=1).indices.numpy()
    return indices


def knn_accuracy(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    *,
    k: int = 20,
    block_size: int = 2048,
) -> float:
    """Cosine kNN classification accuracy: majority vote of the ``k`` most similar training points.

    Ties in the vote go to the smallest label. The neighbours come from :func:`cosine_neighbours`.

    Parameters
    ----------
    train_features, test_features : array, shapes (n_train, dim) and (n_test, dim)
    train_labels, test_labels : int arrays, shapes (n_train,) and (n_test,)
        Non-negative integer classes.
    k : int
        Number of neighbours, ``1 <= k <= n_train``.
    block_size : int
        Test points per similarity block (memory: ``block_size * n_train`` floats).

    Returns
    -------
    float
        Accuracy in ``[0, 1]``.
    """
    train_features = check_features(train_features, "train features", min_rows=1, dtype=np.float32)
    test_features = check_features(test_features, "test features", min_rows=1, dtype=np.float32)
    train_labels = check_labels(train_labels, len(train_features), "train labels", min_classes=1)
    test_labels = check_labels(test_labels, len(test_features), "test labels", min_classes=1)
    if train_labels.min() < 0 or test_labels.min() < 0:
        raise ValueError("labels must be non-negative integers (class indices); map them with np.unique(..., "
                         "return_inverse=True).")
    neighbours = cosine_neighbours(test_features, train_features, k, block_size=block_size)
    n_classes = int(max(train_labels.max(), test_labels.max())) + 1
    votes = np.zeros((len(test_features), n_classes), dtype=np.int64)
    np.add.at(votes, (np.arange(len(test_features))[:, None], train_labels.astype(np.int64)[neighbours]), 1)
    return float(np.mean(votes.argmax(axis=1) == test_labels))
