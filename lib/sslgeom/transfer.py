"""Measured transfer of frozen features, and its prediction from per-model descriptors.

Three layers, each usable on plain arrays:

1. **Protocols** on features: :func:`linear_probe` (logistic regression, regularisation chosen on
   a validation split then refit on train+val, as Ericsson et al., CVPR 2021) and
   :func:`few_shot` (N-way K-shot nearest-prototype episodes with a 95% interval).
2. **Tasks and the zoo**: :func:`build_tasks` makes the target tasks (Fashion-MNIST in domain,
   a corrupted Fashion-MNIST, scikit-learn digits, texture patches); :func:`measure_transfer`
   embeds them with every model and runs the protocols, cached by content.
3. **Prediction**: :func:`loo_predict` regresses a transfer score on descriptors with
   leave-one-model-out cross-validation (feature selection and scaling inside the loop);
   :func:`compare_predictors` runs it for several descriptor sets and targets with bootstrap
   intervals and a permutation p-value.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .baselines import check_features

__all__ = [
    "ProbeResult",
    "FewShotResult",
    "LOOResult",
    "linear_probe",
    "few_shot",
    "corrupt_images",
    "build_tasks",
    "measure_transfer",
    "baseline_table",
    "loo_predict",
    "regression_scores",
    "bootstrap_scores",
    "bootstrap_mean_score",
    "loo_permutation_pvalue",
    "compare_predictors",
]

DEFAULT_C_GRID: tuple[float, ...] = tuple(np.logspace(-3, 2, 6).tolist())
CORRUPTIONS: tuple[str, ...] = ("noise", "blur", "contrast")


# ---------------------------------------------------------------------------------------------
# Protocols on features
# ---------------------------------------------------------------------------------------------


def _check_labels(labels: np.ndarray, n_rows: int, name: str, min_classes: int = 2) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != n_rows:
        raise ValueError(f"{name} must be 1-D with one label per feature row ({n_rows}); got shape {labels.shape}.")
    n_classes = len(np.unique(labels))
    if n_classes < min_classes:
        raise ValueError(
            f"{name} hold {n_classes} class(es); a classification task needs at least {min_classes}. "
            "Check the task's split (a single-class split cannot measure transfer)."
        )
    return labels


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


def _quiet_fit(classifier, x: np.ndarray, y: np.ndarray):
    """Fit, silencing ConvergenceWarnings: a few iterations short of full convergence changes
    accuracy in the 4th digit, and a grid search would otherwise flood the notebook."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=ConvergenceWarning)
        return classifier.fit(x, y)


def linear_probe(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    c_grid: Sequence[float] = DEFAULT_C_GRID,
    max_iter: int = 500,
) -> ProbeResult:
    """Linear probe: L2-regularised multinomial logistic regression on standardised features.

    ``C`` (inverse regularisation) is chosen on ``val`` from ``c_grid``; the model is then refit
    on train+val with that ``C`` and scored on ``test``. Ties in validation accuracy go to the
    smallest ``C`` (the strongest regularisation).

    Parameters
    ----------
    train, val, test : (features (n, dim), labels (n,))
        Feature matrices and integer labels of the three splits.
    c_grid : sequence of float
        Candidate values of ``C`` (log-spaced is customary).
    max_iter : int
        Iteration cap of the L-BFGS solver.

    Returns
    -------
    ProbeResult
    """
    x_train, y_train = check_features(train[0], "train features"), train[1]
    x_val, y_val = check_features(val[0], "val features", min_rows=1), val[1]
    x_test, y_test = check_features(test[0], "test features", min_rows=1), test[1]
    y_train = _check_labels(y_train, len(x_train), "train labels")
    y_val = _check_labels(y_val, len(x_val), "val labels", min_classes=1)
    y_test = _check_labels(y_test, len(x_test), "test labels", min_classes=1)
    if not len(c_grid):
        raise ValueError("c_grid is empty; pass candidate values such as numpy.logspace(-3, 3, 7).")
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x_train)
    scaled_train, scaled_val = scaler.transform(x_train), scaler.transform(x_val)
    # Walk the grid from strong to weak regularisation, starting each fit from the previous
    # solution (warm start): same optimum, about half the solver iterations.
    path = LogisticRegression(max_iter=max_iter, warm_start=True)
    val_accuracy = {}
    for c in sorted(float(c) for c in c_grid):
        _quiet_fit(path.set_params(C=c), scaled_train, y_train)
        val_accuracy[c] = float(np.mean(path.predict(scaled_val) == y_val))
    best_c = max(val_accuracy, key=lambda c: (val_accuracy[c], -c))
    x_full, y_full = np.vstack([x_train, x_val]), np.concatenate([y_train, y_val])
    scaler = StandardScaler().fit(x_full)
    final = _quiet_fit(LogisticRegression(C=best_c, max_iter=max_iter), scaler.transform(x_full), y_full)
    accuracy = float(np.mean(final.predict(scaler.transform(x_test)) == y_test))
    return ProbeResult(accuracy=accuracy, best_c=best_c, val_accuracy=val_accuracy)


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
    nearest support mean (Euclidean), as in prototypical networks.

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
    labels = _check_labels(labels, len(x), "labels")
    for name, value in (("n_way", n_way), ("n_shot", n_shot), ("n_query", n_query), ("n_episodes", n_episodes)):
        if int(value) < 1:
            raise ValueError(f"{name} must be a positive integer; got {value}.")
    classes, counts = np.unique(labels, return_counts=True)
    if n_way < 2:
        raise ValueError("n_way must be at least 2 for a classification episode.")
    eligible = classes[counts >= n_shot + n_query]
    if len(eligible) < n_way:
        raise ValueError(
            f"{n_way}-way episodes with {n_shot} shots + {n_query} queries need {n_way} classes with at "
            f"least {n_shot + n_query} examples; only {len(eligible)} of {len(classes)} classes have "
            f"that many (smallest class: {counts.min()}). Lower n_shot/n_query/n_way or use a larger split."
        )
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    members = {c: np.flatnonzero(labels == c) for c in eligible}
    rng = np.random.default_rng(seed)
    accuracy = np.empty(n_episodes)
    for episode in range(n_episodes):
        chosen = rng.choice(eligible, size=n_way, replace=False)
        draws = np.stack([rng.choice(members[c], size=n_shot + n_query, replace=False) for c in chosen])
        prototypes = x[draws[:, :n_shot]].mean(axis=1)  # (n_way, dim)
        queries = x[draws[:, n_shot:]].reshape(n_way * n_query, -1)
        distances = ((queries[:, None, :] - prototypes[None, :, :]) ** 2).sum(axis=-1)
        truth = np.repeat(np.arange(n_way), n_query)
        accuracy[episode] = np.mean(distances.argmin(axis=1) == truth)
    mean = float(accuracy.mean())
    half = 1.96 * float(accuracy.std(ddof=1)) / np.sqrt(n_episodes) if n_episodes > 1 else float("nan")
    return FewShotResult(mean=mean, ci_low=float(mean - half), ci_high=float(mean + half), episode_accuracy=accuracy)


# ---------------------------------------------------------------------------------------------
# Target tasks
# ---------------------------------------------------------------------------------------------


def corrupt_images(images: np.ndarray, seed: int = 0, severity: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Apply one corruption per image, drawn uniformly from Gaussian noise, blur and low contrast.

    Parameters
    ----------
    images : uint8 array, shape (n, height, width)
    seed : int
        Seed of the corruption choice and of the noise.
    severity : float
        Scales every corruption (1.0: noise std 64 grey levels, blur sigma 1.5 px, contrast x0.3).

    Returns
    -------
    corrupted : uint8 array, shape (n, height, width)
    kind : int array, shape (n,)
        Index into :data:`CORRUPTIONS` of the corruption each image received.
    """
    import torch
    import torchvision.transforms.v2.functional as TF

    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(f"images must be uint8 (n, height, width); got {images.dtype} {images.shape}.")
    if severity <= 0:
        raise ValueError(f"severity must be positive; got {severity}.")
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, len(CORRUPTIONS), size=len(images))
    out = images.copy()
    noise_idx = np.flatnonzero(kind == 0)
    noisy = images[noise_idx].astype(np.float64) + rng.normal(0.0, 64.0 * severity, size=images[noise_idx].shape)
    out[noise_idx] = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    blur_idx = np.flatnonzero(kind == 1)
    if len(blur_idx):
        # One parameter set for the whole batch is intended here: every image gets the same blur.
        blurred = TF.gaussian_blur(torch.from_numpy(images[blur_idx]).unsqueeze(1), [7, 7], [1.5 * severity] * 2)
        out[blur_idx] = blurred.squeeze(1).numpy()
    contrast_idx = np.flatnonzero(kind == 2)
    if len(contrast_idx):
        factor = max(0.0, 1.0 - 0.7 * severity)
        lowered = TF.adjust_contrast(torch.from_numpy(images[contrast_idx]).unsqueeze(1), factor)
        out[contrast_idx] = lowered.squeeze(1).numpy()
    return out, kind


def _subsample(images: np.ndarray, labels: np.ndarray, n: int | None, rng: np.random.Generator):
    """A class-stratified random subset of size about ``n`` (all of it when ``n`` is None)."""
    if n is None or n >= len(labels):
        return images, labels
    fraction = n / len(labels)
    keep = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        keep.append(rng.choice(members, size=max(1, int(round(fraction * len(members)))), replace=False))
    keep = np.sort(np.concatenate(keep))
    return images[keep], labels[keep]


def _split_per_class(
    labels: np.ndarray, fractions: tuple[float, float], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of a random per-class split: the first two fractions, then the rest."""
    parts: list[list[np.ndarray]] = [[], [], []]
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        first = int(round(fractions[0] * len(members)))
        second = first + int(round(fractions[1] * len(members)))
        for part, chunk in zip(parts, (members[:first], members[first:second], members[second:])):
            part.append(chunk)
    return tuple(np.sort(np.concatenate(p)) for p in parts)  # type: ignore[return-value]


def build_tasks(
    names: Sequence[str] = ("fashion", "fashion_corrupted", "digits", "textures"),
    n_train: int | None = 2000,
    n_val: int | None = 1000,
    n_test: int | None = 2000,
    seed: int = 0,
) -> dict:
    """Build the target tasks as :class:`sslgeom.data.Task` objects.

    * ``fashion`` (in domain): train and val drawn from disjoint parts of the Fashion-MNIST train
      split, test from its test split.
    * ``fashion_corrupted`` (shifted domain): the Fashion-MNIST test split, each image corrupted
      by noise, blur or low contrast (:func:`corrupt_images`), split 50/20/30 per class.
    * ``digits`` and ``textures`` (out of domain): :func:`sslgeom.data.load_digits_task` and
      :func:`sslgeom.data.load_textures_task`.

    Every split is subsampled (class-stratified) to at most ``n_train``/``n_val``/``n_test``
    images; ``None`` keeps the whole split.

    Returns
    -------
    dict of str to Task
    """
    from . import data

    known = ("fashion", "fashion_corrupted", "digits", "textures")
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown transfer tasks {unknown}; choose from {list(known)}.")
    tasks = {}
    for name in names:
        # one generator per task, so a task's images do not depend on which other tasks are built
        rng = np.random.default_rng([seed, known.index(name)])
        if name == "fashion":
            images, labels = data.load_fashion_mnist("train")
            order = rng.permutation(len(labels))
            cut = len(order) - 10_000  # the last 10k of a fixed permutation is the validation pool
            train = _subsample(images[order[:cut]], labels[order[:cut]], n_train, rng)
            val = _subsample(images[order[cut:]], labels[order[cut:]], n_val, rng)
            test = _subsample(*data.load_fashion_mnist("test"), n_test, rng)
            task = data.Task(name=name, classes=data.FASHION_CLASSES, train=train, val=val, test=test)
        elif name == "fashion_corrupted":
            images, labels = data.load_fashion_mnist("test")
            corrupted, _ = corrupt_images(images, seed=seed)
            train_idx, val_idx, test_idx = _split_per_class(labels, (0.5, 0.2), rng)
            parts = [_subsample(corrupted[idx], labels[idx], n, rng)
                     for idx, n in ((train_idx, n_train), (val_idx, n_val), (test_idx, n_test))]
            task = data.Task(name=name, classes=data.FASHION_CLASSES, train=parts[0], val=parts[1], test=parts[2])
        else:
            loaded = data.load_digits_task(seed=seed) if name == "digits" else data.load_textures_task(seed=seed)
            parts = [_subsample(*split, n, rng) for split, n in
                     ((loaded.train, n_train), (loaded.val, n_val), (loaded.test, n_test))]
            task = data.Task(name=name, classes=loaded.classes, train=parts[0], val=parts[1], test=parts[2])
        for split_name in ("train", "val", "test"):
            _check_labels(getattr(task, split_name)[1], len(getattr(task, split_name)[1]),
                          f"task {name!r} {split_name} labels", min_classes=2)
        tasks[name] = task
    return tasks


# ---------------------------------------------------------------------------------------------
# The zoo: embedding and measuring
# ---------------------------------------------------------------------------------------------


def _check_models(model_names: Sequence[str]) -> None:
    from . import zoo

    available = set(zoo.names())
    missing = [name for name in model_names if name not in available]
    if missing:
        raise ValueError(
            f"model(s) {missing} are not in the zoo (available: {sorted(available)}). "
            "Train them with `make zoo` or remove them from the parameter list."
        )


def _features(model_name: str, images: np.ndarray, device: str, batch_size: int = 512) -> np.ndarray:
    """Cached features ``(n, dim)`` of uint8 images ``(n, H, W)`` through one model."""
    from . import embed

    features = embed.embed(model_name, images[:, None, :, :], batch_size=batch_size, device=device,
                           progress=False)
    return check_features(features, f"features of model {model_name!r}", min_rows=1)


def measure_transfer(
    model_names: Sequence[str],
    tasks: Mapping,
    *,
    c_grid: Sequence[float] = DEFAULT_C_GRID,
    shots: Sequence[int] = (5, 20),
    n_way: int = 5,
    n_query: int = 15,
    n_episodes: int = 600,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
) -> pd.DataFrame:
    """Linear-probe and few-shot transfer of every model on every task, cached per (model, task).

    Parameters
    ----------
    model_names : sequence of str
        Zoo names (see :func:`sslgeom.zoo.names`).
    tasks : mapping of str to Task
        From :func:`build_tasks`.
    c_grid, shots, n_way, n_query, n_episodes, seed, device
        Protocol settings; few-shot episodes are drawn from the task's test split.

    Returns
    -------
    pandas.DataFrame
        Tidy table with columns ``model, task, protocol, score, ci_low, ci_high`` where protocol is
        ``"linear"`` or ``"{n_way}way{shot}shot"``; scores are accuracies in [0, 1].
    """
    from tqdm.auto import tqdm

    from . import cache, zoo

    _check_models(model_names)
    rows = []
    jobs = [(m, t) for m in model_names for t in tasks]
    for model_name, task_name in tqdm(jobs, desc="transfer", disable=not progress):
        task = tasks[task_name]
        key = [
            "transfer-v1", zoo.checkpoint_hash(model_name), task_name,
            [task.train[0], task.train[1], task.val[0], task.val[1], task.test[0], task.test[1]],
            list(map(float, c_grid)), list(map(int, shots)), n_way, n_query, n_episodes, seed,
        ]

        def compute(model_name=model_name, task=task):
            train = (_features(model_name, task.train[0], device), task.train[1])
            val = (_features(model_name, task.val[0], device), task.val[1])
            test = (_features(model_name, task.test[0], device), task.test[1])
            probe = linear_probe(train, val, test, c_grid=c_grid)
            out = [{"protocol": "linear", "score": probe.accuracy, "ci_low": np.nan, "ci_high": np.nan}]
            for shot in shots:
                result = few_shot(test[0], test[1], n_way=n_way, n_shot=shot, n_query=n_query,
                                  n_episodes=n_episodes, seed=seed)
                out.append({"protocol": f"{n_way}way{shot}shot", "score": result.mean,
                            "ci_low": result.ci_low, "ci_high": result.ci_high})
            return pd.DataFrame(out)

        table = cache.cached_table("transfer", key, compute)
        rows.append(table.assign(model=model_name, task=task_name))
    result = pd.concat(rows, ignore_index=True)
    return result[["model", "task", "protocol", "score", "ci_low", "ci_high"]]


def baseline_table(
    model_names: Sequence[str],
    *,
    n_spectrum: int = 2000,
    n_knn_train: int = 5000,
    n_knn_test: int = 2000,
    knn_k: int = 20,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
) -> pd.DataFrame:
    """RankMe, alpha-ReQ and source-domain kNN accuracy of every model.

    RankMe and alpha-ReQ use the features of ``n_spectrum`` Fashion-MNIST test images (no labels);
    kNN accuracy uses ``n_knn_train`` train images as memory and ``n_knn_test`` test images.

    Returns
    -------
    pandas.DataFrame
        Index: model names; columns ``rankme, alpha_req, source_knn``.
    """
    from tqdm.auto import tqdm

    from . import baselines, cache, data, zoo

    _check_models(model_names)
    rng = np.random.default_rng(seed)
    train_images, train_labels = data.load_fashion_mnist("train")
    test_images, test_labels = data.load_fashion_mnist("test")
    memory = rng.choice(len(train_labels), size=min(n_knn_train, len(train_labels)), replace=False)
    queries = rng.choice(len(test_labels), size=min(max(n_knn_test, n_spectrum), len(test_labels)), replace=False)
    rows = {}
    for model_name in tqdm(model_names, desc="baselines", disable=not progress):
        key = ["baselines-v1", zoo.checkpoint_hash(model_name), memory, queries, n_spectrum, n_knn_test, knn_k]

        def compute(model_name=model_name):
            memory_features = _features(model_name, train_images[memory], device)
            query_features = _features(model_name, test_images[queries], device)
            spectrum_features = query_features[:n_spectrum]
            return {
                "rankme": np.float64(baselines.rankme(spectrum_features)),
                "alpha_req": np.float64(baselines.alpha_req(spectrum_features)),
                "source_knn": np.float64(baselines.knn_accuracy(
                    memory_features, train_labels[memory], query_features[:n_knn_test],
                    test_labels[queries][:n_knn_test], k=knn_k)),
            }

        values = cache.cached_arrays("baselines", key, compute)
        rows[model_name] = {name: float(value) for name, value in values.items()}
    return pd.DataFrame.from_dict(rows, orient="index")[["rankme", "alpha_req", "source_knn"]]


# ---------------------------------------------------------------------------------------------
# Prediction with leave-one-model-out cross-validation
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LOOResult:
    """Outcome of :func:`loo_predict`.

    Attributes
    ----------
    predictions : pandas.Series
        Out-of-sample prediction for each model (index: model).
    measured : pandas.Series
        The target, same index.
    selected : pandas.DataFrame
        One row per held-out model, one boolean column per descriptor: chosen in that fold.
    coefficients : pandas.DataFrame
        Standardised ridge coefficients per fold (0 where not selected).
    r2, spearman, kendall : float
        Out-of-sample scores (see :func:`regression_scores`).
    """

    predictions: pd.Series
    measured: pd.Series
    selected: pd.DataFrame
    coefficients: pd.DataFrame
    r2: float
    spearman: float
    kendall: float

    def importance(self) -> pd.DataFrame:
        """How often each descriptor was selected and the mean sign of its coefficient."""
        frequency = self.selected.mean(axis=0)
        coefficient = self.coefficients.where(self.selected).mean(axis=0)
        table = pd.DataFrame({"selected_fraction": frequency, "mean_coefficient": coefficient})
        return table.sort_values("selected_fraction", ascending=False)


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks (1-based, ties get their average rank) along axis 0 of a (n,) or (n, m) array.

    ``rank_i = #{j : x_j < x_i} + (#{j : x_j = x_i} + 1) / 2``, by broadcasting: fine for the
    tens of models compared here, and far cheaper than a library call per column.
    """
    x = np.asarray(values, dtype=np.float64)
    below = (x[None, :] < x[:, None]).sum(axis=1)
    equal = (x[None, :] == x[:, None]).sum(axis=1)
    return below + (equal + 1) / 2.0


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else float("nan")


def _kendall_tau_b(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's tau-b (tie-corrected), from all pairs."""
    sign_a = np.sign(a[:, None] - a[None, :])
    sign_b = np.sign(b[:, None] - b[None, :])
    upper = np.triu_indices(len(a), 1)
    sign_a, sign_b = sign_a[upper], sign_b[upper]
    denominator = np.sqrt(np.count_nonzero(sign_a) * np.count_nonzero(sign_b))
    return float((sign_a * sign_b).sum() / denominator) if denominator > 0 else float("nan")


def regression_scores(measured: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Out-of-sample R^2 (1 - SSE / SST around the mean of ``measured``), Spearman and Kendall (tau-b).

    Correlations are NaN when either input is constant.
    """
    measured = np.asarray(measured, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    total = np.sum((measured - measured.mean()) ** 2)
    r2 = 1.0 - np.sum((measured - predicted) ** 2) / total if total > 0 else float("nan")
    spearman = _pearson(_average_ranks(measured), _average_ranks(predicted))
    return {"r2": float(r2), "spearman": spearman, "kendall": _kendall_tau_b(measured, predicted)}


def _select_columns(x: np.ndarray, y: np.ndarray, n_select: int) -> np.ndarray:
    """Indices of the ``n_select`` columns with the largest |Spearman correlation| with ``y``.

    Spearman's rho is Pearson's correlation of average ranks, computed for all columns at once.
    Columns constant on these rows score -1 and are picked last.
    """
    ranks_x = _average_ranks(x)
    ranks_y = _average_ranks(y)
    centred_x = ranks_x - ranks_x.mean(axis=0)
    centred_y = ranks_y - ranks_y.mean()
    norms = np.sqrt((centred_x**2).sum(axis=0) * (centred_y**2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        scores = np.abs(centred_x.T @ centred_y) / norms
    scores[~(norms > 0)] = -1.0
    return np.sort(np.argsort(-scores, kind="stable")[:n_select])


def _ridge_fit(x: np.ndarray, y: np.ndarray, alphas: Sequence[float]) -> tuple[np.ndarray, float, float]:
    """Ridge regression with unpenalised intercept; penalty chosen by exact leave-one-out.

    ``x`` must have centred columns. For the linear smoother ``H = 11'/n + X (X'X + a I)^-1 X'``
    the leave-one-out residual is ``(y_i - yhat_i) / (1 - H_ii)`` exactly. With the eigen
    decomposition ``X'X = V diag(e) V'`` every penalty costs a few vector operations.

    Returns
    -------
    coef : array, shape (n_features,)
    intercept : float
    alpha : float
        The penalty with the smallest mean squared leave-one-out residual (the first such one).
    """
    n = len(y)
    intercept = float(y.mean())
    centred_y = y - intercept
    eigenvalues, eigenvectors = np.linalg.eigh(x.T @ x)
    projected = x @ eigenvectors  # (n, p)
    target = eigenvectors.T @ (x.T @ centred_y)  # (p,)
    alphas = np.asarray(alphas, dtype=np.float64)
    shrink = 1.0 / (np.maximum(eigenvalues, 0.0)[None, :] + alphas[:, None])  # (n_alphas, p)
    coefs = (shrink * target[None, :]) @ eigenvectors.T  # (n_alphas, p)
    leverage = 1.0 / n + (projected[None, :, :] ** 2 * shrink[:, None, :]).sum(axis=2)  # (n_alphas, n)
    residual = (centred_y[None, :] - coefs @ x.T) / np.maximum(1.0 - leverage, 1e-12)
    best = int(np.argmin(np.mean(residual**2, axis=1)))
    return coefs[best], intercept, float(alphas[best])


def loo_predict(
    descriptors: pd.DataFrame,
    target: pd.Series,
    n_select: int = 2,
    alphas: Sequence[float] = (0.01, 0.1, 1.0, 10.0, 100.0),
) -> LOOResult:
    """Predict a per-model score from descriptors with leave-one-model-out cross-validation.

    For each held-out model, using the other models only: keep the ``n_select`` descriptors with
    the largest |Spearman| correlation with the target, standardise them, fit a ridge regression
    whose penalty is chosen by (inner, efficient) leave-one-out over ``alphas``, and predict the
    held-out model. Nothing computed in a fold sees the held-out model.

    Parameters
    ----------
    descriptors : pandas.DataFrame, shape (n_models, n_descriptors)
        Index: model names.
    target : pandas.Series, shape (n_models,)
        Index: model names (aligned with ``descriptors``).
    n_select : int
        Descriptors kept per fold (capped at the number of descriptors).
    alphas : sequence of float
        Ridge penalties to choose from.

    Returns
    -------
    LOOResult
    """
    if not isinstance(descriptors, pd.DataFrame) or not isinstance(target, pd.Series):
        raise TypeError("descriptors must be a DataFrame and target a Series, both indexed by model name.")
    missing = sorted(set(target.index) - set(descriptors.index))
    if missing:
        raise ValueError(f"descriptors lack model(s) {missing} that have a target; compute them first.")
    models = list(target.index)
    x = check_features(descriptors.loc[models].to_numpy(dtype=np.float64), "descriptors", min_rows=4)
    y = target.to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(y)):
        raise ValueError(f"target has NaN values for models {list(target.index[~np.isfinite(y)])}.")
    if n_select < 1:
        raise ValueError(f"n_select must be at least 1; got {n_select}.")
    n_select = min(n_select, x.shape[1])
    n_models = len(models)
    predictions = np.empty(n_models)
    selected = np.zeros((n_models, x.shape[1]), dtype=bool)
    coefficients = np.zeros((n_models, x.shape[1]))
    for held_out in range(n_models):
        train = np.arange(n_models) != held_out
        x_train, y_train = x[train], y[train]
        columns = _select_columns(x_train, y_train, n_select)
        mean = x_train[:, columns].mean(axis=0)
        std = x_train[:, columns].std(axis=0)
        std[std == 0] = 1.0
        coef, intercept, _ = _ridge_fit((x_train[:, columns] - mean) / std, y_train, alphas)
        predictions[held_out] = intercept + ((x[held_out, columns] - mean) / std) @ coef
        selected[held_out, columns] = True
        coefficients[held_out, columns] = coef
    scores = regression_scores(y, predictions)
    return LOOResult(
        predictions=pd.Series(predictions, index=target.index, name="predicted"),
        measured=target.rename("measured"),
        selected=pd.DataFrame(selected, index=target.index, columns=descriptors.columns),
        coefficients=pd.DataFrame(coefficients, index=target.index, columns=descriptors.columns),
        **scores,
    )


def bootstrap_scores(
    measured: np.ndarray, predicted: np.ndarray, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> dict[str, tuple[float, float]]:
    """Percentile intervals of R^2, Spearman and Kendall, resampling models with replacement.

    The out-of-sample predictions are held fixed; the interval reflects which models happen to
    be in the zoo, not the refitting noise.

    Returns
    -------
    dict
        ``{"r2": (low, high), "spearman": ..., "kendall": ...}``.
    """
    measured = np.asarray(measured, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    rng = np.random.default_rng(seed)
    draws = {"r2": [], "spearman": [], "kendall": []}
    for _ in range(n_boot):
        idx = rng.integers(0, len(measured), size=len(measured))
        for name, value in regression_scores(measured[idx], predicted[idx]).items():
            draws[name].append(value)
    tail = (1 - level) / 2 * 100
    return {
        name: tuple(float(v) for v in np.nanpercentile(values, [tail, 100 - tail]))
        for name, values in draws.items()
    }


def loo_permutation_pvalue(
    descriptors: pd.DataFrame,
    target: pd.Series,
    n_permutations: int = 200,
    seed: int = 0,
    statistic: str = "spearman",
    **loo_kwargs,
) -> float:
    """Permutation p-value of an out-of-sample score: rerun the whole LOO on shuffled targets.

    Returns ``(1 + #{null >= observed}) / (1 + n_permutations)`` (one-sided: better than chance).
    """
    if statistic not in ("r2", "spearman", "kendall"):
        raise ValueError(f"statistic must be 'r2', 'spearman' or 'kendall'; got {statistic!r}.")
    observed = getattr(loo_predict(descriptors, target, **loo_kwargs), statistic)
    rng = np.random.default_rng(seed)
    null = np.empty(n_permutations)
    for i in range(n_permutations):
        shuffled = pd.Series(rng.permutation(target.to_numpy()), index=target.index)
        null[i] = getattr(loo_predict(descriptors, shuffled, **loo_kwargs), statistic)
    null = np.nan_to_num(null, nan=-np.inf)
    return float((1 + np.sum(null >= observed)) / (1 + n_permutations))


def compare_predictors(
    predictor_sets: Mapping[str, pd.DataFrame],
    targets: pd.DataFrame,
    *,
    n_select: Mapping[str, int] | int = 2,
    n_boot: int = 2000,
    n_permutations: int = 200,
    seed: int = 0,
    progress: bool = True,
) -> tuple[pd.DataFrame, dict[tuple[str, str], LOOResult]]:
    """Run :func:`loo_predict` for every descriptor set and every target column.

    Parameters
    ----------
    predictor_sets : mapping of str to DataFrame (n_models, n_descriptors)
        E.g. ``{"MGM": geometry, "RankMe": baselines[["rankme"]], ...}``.
    targets : DataFrame, shape (n_models, n_targets)
        Measured transfer scores, one column per (task, protocol).
    n_select : int or mapping
        Descriptors kept per fold, globally or per predictor set.

    Returns
    -------
    table : pandas.DataFrame
        One row per (predictor, target): ``r2, spearman, kendall``, their bootstrap intervals
        (``*_low``, ``*_high``) and the permutation ``p_spearman``.
    results : dict
        The :class:`LOOResult` of each (predictor, target).
    """
    from tqdm.auto import tqdm

    rows, results = [], {}
    jobs = [(p, t) for p in predictor_sets for t in targets.columns]
    for predictor, target_name in tqdm(jobs, desc="predictors", disable=not progress):
        k = n_select[predictor] if isinstance(n_select, Mapping) else n_select
        target = targets[target_name]
        result = loo_predict(predictor_sets[predictor], target, n_select=k)
        intervals = bootstrap_scores(result.measured, result.predictions, n_boot=n_boot, seed=seed)
        p_value = (
            loo_permutation_pvalue(predictor_sets[predictor], target, n_permutations, seed=seed, n_select=k)
            if n_permutations
            else float("nan")
        )
        row = {"predictor": predictor, "target": target_name, "r2": result.r2,
               "spearman": result.spearman, "kendall": result.kendall, "p_spearman": p_value}
        for name, (low, high) in intervals.items():
            row[f"{name}_low"], row[f"{name}_high"] = low, high
        rows.append(row)
        results[(predictor, target_name)] = result
    return pd.DataFrame(rows), results


def bootstrap_mean_score(
    results: Sequence[LOOResult],
    statistic: str = "spearman",
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """Mean of an out-of-sample score over several targets, with a bootstrap interval over models.

    Each bootstrap draw resamples the models once (with replacement) and recomputes the score of
    every target on that same resample, so the interval accounts for targets sharing models.

    Parameters
    ----------
    results : sequence of LOOResult
        One per target, all on the same models (e.g. one predictor on every task).
    statistic : {"r2", "spearman", "kendall"}

    Returns
    -------
    (mean, low, high) : tuple of float
    """
    if statistic not in ("r2", "spearman", "kendall"):
        raise ValueError(f"statistic must be 'r2', 'spearman' or 'kendall'; got {statistic!r}.")
    if not results:
        raise ValueError("results is empty: pass one LOOResult per target.")
    index = results[0].measured.index
    if any(not r.measured.index.equals(index) for r in results):
        raise ValueError("all results must cover the same models in the same order.")
    pairs = [(r.measured.to_numpy(), r.predictions.to_numpy()) for r in results]
    observed = float(np.mean([regression_scores(m, p)[statistic] for m, p in pairs]))
    rng = np.random.default_rng(seed)
    draws = np.empty(n_boot)
    for b in range(n_boot):
        idx = rng.integers(0, len(index), size=len(index))
        draws[b] = np.nanmean([regression_scores(m[idx], p[idx])[statistic] for m, p in pairs])
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(draws, [tail, 100 - tail])
    return observed, float(low), float(high)
