"""Measured transfer of the zoo: every model on every target task, and the baselines' table.

:func:`measure_transfer` embeds the tasks of :func:`sslgeom.tasks.build_tasks` with every model and
runs the protocols of :mod:`sslgeom.evaluation` (linear probe, few-shot episodes) as described by a
:class:`TransferProtocol`, cached per (model, task). :func:`baseline_table` computes the descriptors
the geometry is compared with: RankMe and alpha-ReQ (label-free, :mod:`sslgeom.baselines`) and the
source-domain kNN accuracy; :func:`spectrum_baselines` computes only the two label-free ones (cheaper),
and :func:`source_scores` reads the source-domain probe and kNN accuracies the zoo's manifest records
for every checkpoint. Predicting these measurements is :mod:`sslgeom.prediction`'s job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .evaluation import DEFAULT_C_GRID, EPISODE_BLOCK, PROBE_GTOL, few_shot, linear_probe
from .validation import check_features, check_int

__all__ = ["TransferProtocol", "measure_transfer", "baseline_table", "spectrum_baselines", "source_scores"]

Split = tuple[np.ndarray, np.ndarray]  # (features (n, dim), labels (n,))


@dataclass(frozen=True)
class TransferProtocol:
    """How transfer is measured on a task: the linear probe's grid and the few-shot episodes.

    Every field enters the cache key of a measurement, so two protocols that differ in any field
    never share cached numbers.

    Attributes
    ----------
    c_grid : tuple of float
        Inverse regularisation strengths the linear probe chooses from on the validation split.
    shots : tuple of int
        Support images per class of the few-shot protocols (one protocol per value).
    n_way : int
        Classes per episode (at least 2).
    n_query : int
        Query images per class and episode.
    n_episodes : int
        Episodes per few-shot protocol; they are drawn from the task's test split.
    seed : int
        Seed of the episode sampler.
    """

    c_grid: tuple[float, ...] = DEFAULT_C_GRID
    shots: tuple[int, ...] = (5, 20)
    n_way: int = 5
    n_query: int = 15
    n_episodes: int = 600
    seed: int = 0

    def __post_init__(self) -> None:
        c_grid = tuple(float(c) for c in self.c_grid)
        if not c_grid or min(c_grid) <= 0:
            raise ValueError(f"c_grid must hold positive values such as (0.01, 1.0, 100.0); got {self.c_grid}.")
        shots = tuple(check_int(s, "each entry of shots", minimum=1) for s in self.shots)
        if not shots:
            raise ValueError("shots must hold at least one number of support images per class, e.g. (5, 20).")
        # frozen: normalise through object.__setattr__ so that lists and numpy scalars give equal keys
        object.__setattr__(self, "c_grid", c_grid)
        object.__setattr__(self, "shots", shots)
        object.__setattr__(self, "n_way", check_int(self.n_way, "n_way", minimum=2))
        object.__setattr__(self, "n_query", check_int(self.n_query, "n_query", minimum=1))
        object.__setattr__(self, "n_episodes", check_int(self.n_episodes, "n_episodes", minimum=1))
        object.__setattr__(self, "seed", check_int(self.seed, "seed"))

    def protocol_names(self) -> list[str]:
        """Protocol names in the order of the rows of a measurement: ``linear``, then ``{n_way}way{shot}shot``."""
        return ["linear"] + [f"{self.n_way}way{shot}shot" for shot in self.shots]

    def cache_key(self) -> list:
        """The protocol's part of a measurement's cache key (the same content as before this class existed)."""
        return [list(self.c_grid), list(self.shots), self.n_way, self.n_query, self.n_episodes, self.seed]


def _features(model, images: np.ndarray, device: str, batch_size: int = 512) -> np.ndarray:
    """Cached features ``(n, dim)`` of uint8 images, greyscale ``(n, H, W)`` or ``(n, C, H, W)``,
    through one model (a zoo name, or the model loaded once by the caller: a cache hit then skips
    reading the checkpoint again)."""
    from . import embed

    if images.ndim not in (3, 4):
        raise ValueError(f"task images must be uint8 (n, H, W) or (n, C, H, W), got shape {images.shape}.")
    batch = images[:, None, :, :] if images.ndim == 3 else images
    features = embed.embed(model, batch, batch_size=batch_size, device=device, progress=False)
    return check_features(features, f"features of model {embed.model_name(model)!r}", min_rows=1)


def _transfer_scores(train: Split, val: Split, test: Split, protocol: TransferProtocol) -> pd.DataFrame:
    """Linear-probe and few-shot rows (``protocol, score, ci_low, ci_high``) of one model on one task.

    Pure numpy, so it can run in a worker thread (numpy releases the GIL in its array operations).
    """
    probe = linear_probe(train, val, test, c_grid=protocol.c_grid)
    rows = [{"protocol": "linear", "score": probe.accuracy, "ci_low": np.nan, "ci_high": np.nan}]
    for shot, name in zip(protocol.shots, protocol.protocol_names()[1:]):
        result = few_shot(test[0], test[1], n_way=protocol.n_way, n_shot=shot, n_query=protocol.n_query,
                          n_episodes=protocol.n_episodes, seed=protocol.seed)
        rows.append({"protocol": name, "score": result.mean, "ci_low": result.ci_low, "ci_high": result.ci_high})
    return pd.DataFrame(rows)


def _transfer_entry(model_name: str, task_name: str, task, protocol: TransferProtocol):
    """Cache path of one (model, task) measurement, keyed by everything the numbers depend on."""
    from . import cache, zoo

    key = [
        "transfer-v2", zoo.checkpoint_hash(model_name), task_name,
        [task.train[0], task.train[1], task.val[0], task.val[1], task.test[0], task.test[1]],
        *protocol.cache_key(), PROBE_GTOL, EPISODE_BLOCK,
    ]
    return cache.entry_path("transfer", cache.content_key(key), cache.TABLE_SUFFIX)


def _measure_model(
    model_name: str, task_names: Sequence[str], tasks: Mapping, protocol: TransferProtocol, device: str
) -> dict[str, pd.DataFrame]:
    """Protocol rows of one model on each of ``task_names``: the model is loaded once for them all."""
    from . import embed

    model = embed.resolve_model(model_name, device)
    measured = {}
    for task_name in task_names:
        task = tasks[task_name]
        splits = [(_features(model, images, device), labels) for images, labels in (task.train, task.val, task.test)]
        measured[task_name] = _transfer_scores(*splits, protocol)
    return measured


def measure_transfer(
    model_names: Sequence[str],
    tasks: Mapping,
    protocol: TransferProtocol = TransferProtocol(),
    *,
    device: str = "cpu",
    n_jobs: int | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Linear-probe and few-shot transfer of every model on every task, cached per (model, task).

    The models with (model, task) pairs missing from the transfer cache are measured in ``n_jobs``
    worker threads, one model per thread (embedding, probe and episodes on one core each; see
    :func:`sslgeom.threads.map_in_threads`). The numbers do not depend on ``n_jobs``.

    Parameters
    ----------
    model_names : sequence of str
        Zoo names (see :func:`sslgeom.zoo.names`).
    tasks : mapping of str to Task
        From :func:`sslgeom.tasks.build_tasks`.
    protocol : TransferProtocol
        The probe's grid and the few-shot episodes (drawn from each task's test split).
    device : str
        Where the models embed the images.
    n_jobs : int or None
        Models measured at once (``None``: one per core).
    progress : bool
        Show a tqdm bar over the models to measure.

    Returns
    -------
    pandas.DataFrame
        Tidy table with columns ``model, task, protocol, score, ci_low, ci_high`` where protocol is
        ``"linear"`` or ``"{n_way}way{shot}shot"``; scores are accuracies in [0, 1].
    """
    from threadpoolctl import threadpool_limits

    from . import cache, zoo
    from .threads import map_in_threads, resolve_jobs

    zoo.check_model_names(model_names if isinstance(model_names, str) else list(model_names))
    n_jobs = resolve_jobs(n_jobs, "n_jobs (worker threads)")
    if not isinstance(protocol, TransferProtocol):
        raise TypeError(f"protocol must be a TransferProtocol, e.g. TransferProtocol(c_grid=(0.1, 1.0)); "
                        f"got {type(protocol).__name__}.")
    jobs = [(m, t) for m in model_names for t in tasks]
    paths = {(m, t): _transfer_entry(m, t, tasks[t], protocol) for m, t in jobs}
    tables = {job: cache.read_entry(paths[job]) for job in jobs}
    missing: dict[str, list[str]] = {}
    for m, t in jobs:
        if tables[(m, t)] is None:
            missing.setdefault(m, []).append(t)

    def measure(model_name: str) -> None:
        for task_name, table in _measure_model(model_name, missing[model_name], tasks, protocol, device).items():
            cache.save_table(paths[(model_name, task_name)], table)
            tables[(model_name, task_name)] = table

    # BLAS on one thread for the whole pool: each probe's own limit (in linear_probe) then enters
    # and restores the same value, whatever the order in which the workers finish
    with threadpool_limits(limits=1, user_api="blas"):
        map_in_threads(measure, list(missing), n_jobs, desc="transfer", progress=progress)
    rows = [tables[(m, t)].assign(model=m, task=t) for m, t in jobs]
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
    kNN accuracy (:func:`sslgeom.evaluation.knn_accuracy`) uses ``n_knn_train`` train images as
    memory and ``n_knn_test`` test images.

    Returns
    -------
    pandas.DataFrame
        Index: model names; columns ``rankme, alpha_req, source_knn``.
    """
    from tqdm.auto import tqdm

    from . import baselines, cache, data, embed, evaluation, zoo

    zoo.check_model_names(model_names if isinstance(model_names, str) else list(model_names))
    rng = np.random.default_rng(seed)
    train_images, train_labels = data.load_fashion_mnist("train")
    test_images, test_labels = data.load_fashion_mnist("test")
    memory = rng.choice(len(train_labels), size=min(n_knn_train, len(train_labels)), replace=False)
    queries = rng.choice(len(test_labels), size=min(max(n_knn_test, n_spectrum), len(test_labels)), replace=False)
    rows = {}
    for model_name in tqdm(model_names, desc="baselines", disable=not progress):
        key = ["baselines-v1", zoo.checkpoint_hash(model_name), memory, queries, n_spectrum, n_knn_test, knn_k]

        def compute(model_name=model_name):
            model = embed.resolve_model(model_name, device)
            memory_features = _features(model, train_images[memory], device)
            query_features = _features(model, test_images[queries], device)
            spectrum_features = query_features[:n_spectrum]
            return {
                "rankme": np.float64(baselines.rankme(spectrum_features)),
                "alpha_req": np.float64(baselines.alpha_req(spectrum_features)),
                "source_knn": np.float64(evaluation.knn_accuracy(
                    memory_features, train_labels[memory], query_features[:n_knn_test],
                    test_labels[queries][:n_knn_test], k=knn_k)),
            }

        values = cache.cached_arrays("baselines", key, compute, required=("rankme", "alpha_req", "source_knn"))
        rows[model_name] = {name: float(value) for name, value in values.items()}
    return pd.DataFrame.from_dict(rows, orient="index")[["rankme", "alpha_req", "source_knn"]]


def spectrum_baselines(
    model_names: Sequence[str],
    *,
    n_spectrum: int = 1000,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
    n_jobs: int | None = None,
    images: np.ndarray | None = None,
) -> pd.DataFrame:
    """RankMe and alpha-ReQ of every model on ``n_spectrum`` images (no labels).

    The label-free part of :func:`baseline_table` without its kNN memory (a model's features of
    ``n_spectrum`` images only), cached per model; models missing from the cache are computed
    ``n_jobs`` at a time (``None``: one per core; the numbers do not depend on it). The images are
    drawn by ``seed`` from ``images`` (uint8 ``(n, H, W)`` or ``(n, C, H, W)``, e.g. an image
    folder's pool, :func:`sslgeom.sources.spectrum_baselines`), by default from the Fashion-MNIST
    test split.

    Returns
    -------
    pandas.DataFrame
        Index: model names; columns ``rankme, alpha_req``.
    """
    from threadpoolctl import threadpool_limits

    from . import baselines, cache, data, embed, zoo
    from .threads import map_in_threads

    model_names = zoo.check_model_names(model_names if isinstance(model_names, str) else list(model_names))
    check_int(n_spectrum, "n_spectrum", minimum=10)
    source = data.load_fashion_mnist("test")[0] if images is None else images
    images = source[np.random.default_rng(seed).choice(len(source), size=min(n_spectrum, len(source)), replace=False)]

    def one_model(model_name: str) -> dict[str, float]:
        def compute():
            features = _features(embed.resolve_model(model_name, device), images, device)
            return {"rankme": np.float64(baselines.rankme(features)),
                    "alpha_req": np.float64(baselines.alpha_req(features))}

        key = ["spectrum-v1", zoo.checkpoint_hash(model_name), images]
        values = cache.cached_arrays("baselines", key, compute, required=("rankme", "alpha_req"))
        return {name: float(value) for name, value in values.items()}

    with threadpool_limits(limits=1, user_api="blas"):
        rows = map_in_threads(one_model, list(model_names), n_jobs, desc="spectra", progress=progress)
    return pd.DataFrame(rows, index=pd.Index(list(model_names)))[["rankme", "alpha_req"]]


def source_scores(model_names: Sequence[str]) -> pd.DataFrame:
    """Source-domain (Fashion-MNIST) scores the zoo's manifest records for every checkpoint.

    ``scripts/train_zoo.py`` measures each checkpoint when it is saved: a linear probe and a cosine
    20-nearest-neighbour classifier on 10,000 training images, scored on 5,000 test images.

    Returns
    -------
    pandas.DataFrame
        Index: model names; columns ``source_probe, source_knn`` (NaN where the manifest has none,
        e.g. published models).
    """
    from . import zoo

    names_ = zoo.check_model_names(model_names if isinstance(model_names, str) else list(model_names))
    table = zoo.manifest().set_index("name")
    out = pd.DataFrame(index=pd.Index(names_), columns=["source_probe", "source_knn"], dtype=float)
    for column, source in (("source_probe", "probe_accuracy"), ("source_knn", "knn_accuracy")):
        if source in table:
            out[column] = table[source].reindex(names_).astype(float).to_numpy()
    return out
