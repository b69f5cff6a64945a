"""Which images a run sees, and whether its models fit them: the default data or a folder of images.

An *image source* supplies the images of the manifolds (chapters 02 and 04), of the in-domain
transfer task and of the label-free baselines (chapter 05):

* **the default data** (``image_folder = None``): held-out Fashion-MNIST test images, greyscale,
  28x28 pixels (the transfer tasks of :mod:`sslgeom.tasks` stay corrupted Fashion-MNIST, digits and
  textures);
* **an image folder**: ``root/<class>/<image>`` (your data, or ImageNet's validation set sorted by
  class), read by :func:`sslgeom.image_folder.load_image_folder` as RGB at the input side of the
  external models (224 pixels, or ``input_size``), at most ``images_per_class`` images per class
  by that module's seeded rule. This *pool* serves the manifolds (the stratified choice of
  :func:`sslgeom.manifolds.select_test_images`), the ``image_folder`` transfer task of
  :func:`sslgeom.tasks.build_tasks` and the images of RankMe and alpha-ReQ. Colour images get the
  colour augmentation families (hue, saturation) besides the greyscale ones.

A chapter calls :func:`activate` once, in the cell that loads its images; the manifolds read
:func:`active_images` from then on (scripts and tests use the :func:`use_source` block). Three
rules keep results apart and honest:

* **One set of images per run.** Default-zoo models were trained on 28x28 greyscale Fashion-MNIST
  and take one channel; external models (``published/<key>``, ``user/<name>``) take RGB. With the
  default data every model sees the same Fashion-MNIST images (external ones upsampled by their own
  preprocessing), so they may be compared; with an image folder only external models can see the
  folder's colour images, and :func:`check_models` refuses default-zoo models with the reason.
* **Caches per source.** Cached geometry tables are keyed by model and settings, not by images, so
  a run on an image folder, or at an ``input_size`` of its own, keeps every result it computes in a
  sub-folder of the cache named after the folder's content and that size (``<cache>/sources/<id>``).
  The checkpoints and Fashion-MNIST files the cache holds stay visible (:func:`activate` adds them
  to ``$SSLGEOM_CHECKPOINTS`` and ``$SSLGEOM_FASHION_MNIST_DIR``).
* **Relative paths** (``image_folder``, ``registry``) start at the repository root: chapters run
  inside ``notebooks/``, so the working directory is no guide.

>>> with use_source("imagenet/val", images_per_class=20, input_size=64) as pool:   # doctest: +SKIP
...     print(pool.summary())
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from sslgeom import cache, published
from sslgeom import registry as user_registry
from sslgeom.image_folder import FolderReport
from sslgeom.validation import check_int

__all__ = [
    "DEFAULT_KEY",
    "DEFAULT_IMAGES_PER_CLASS",
    "SourceError",
    "ImageSource",
    "SourceImages",
    "load_images",
    "activate",
    "use_source",
    "active_images",
    "PARAMETER_RULES",
    "check_paths",
    "input_identity",
    "is_external",
    "check_models",
    "check_class_sizes",
    "spectrum_baselines",
    "source_scores",
]

#: the manifolds' dataset key of the default data (unchanged, so the default book's caches stay valid)
DEFAULT_KEY = "fashion-mnist-test"
#: images per class read from a folder unless a chapter says otherwise
DEFAULT_IMAGES_PER_CLASS = 100
#: sub-folder of the cache holding one folder per image source and input size
NAMESPACE_DIR = "sources"
_VERSION = "sources-v1"
#: environment variables :func:`activate` sets, and :func:`use_source` restores
_ENV_NAMES = (user_registry.REGISTRY_ENV, published.INPUT_SIZE_ENV, cache.CACHE_ENV, published.CHECKPOINTS_ENV,
              "SSLGEOM_FASHION_MNIST_DIR")


class SourceError(ValueError):
    """The models, the images and the sizes of a run do not fit together."""


@dataclass(frozen=True)
class ImageSource:
    """Where a run's images come from.

    Attributes
    ----------
    root : Path or None
        The image folder (``root/<class>/<image>``); None for the default data.
    size : int
        Side the folder's images are decoded at (ignored for the default data).
    per_class : int or None
        Images read per class from the folder; None reads all.
    seed : int
        Seed of the per-class choice of files.
    """

    root: Path | None = None
    size: int = published.DEFAULT_INPUT_SIZE
    per_class: int | None = DEFAULT_IMAGES_PER_CLASS
    seed: int = 0


@dataclass(frozen=True)
class SourceImages:
    """The pool of labelled images a source provides.

    Attributes
    ----------
    source : ImageSource
    key : str
        Identity of the pool in cache keys: :data:`DEFAULT_KEY`, or ``folder-<hash>`` of the folder's
        files (relative paths, sizes, modification times) and the decoding options.
    images : numpy.ndarray, shape (n, C, H, W)
        uint8, read-only; C = 1 for the default data, 3 for a folder.
    labels : numpy.ndarray, shape (n,)
        int64 indices into ``classes``.
    classes : tuple of str
    report : FolderReport or None
        How the folder was read (None for the default data).
    """

    source: ImageSource
    key: str
    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    report: FolderReport | None = None

    @property
    def is_default(self) -> bool:
        """Whether these are the default data (Fashion-MNIST test images)."""
        return self.source.root is None

    @property
    def channels(self) -> int:
        """1 (greyscale) or 3 (RGB)."""
        return int(self.images.shape[1])

    @property
    def families(self) -> tuple[str, ...]:
        """The augmentation families these images allow: every family for colour, the greyscale ones otherwise."""
        from sslgeom import augment

        return tuple(augment.FAMILIES) if self.channels == 3 else augment.GRAYSCALE_FAMILIES

    def class_counts(self) -> pd.Series:
        """Images per class, indexed by class name."""
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return pd.Series(counts, index=list(self.classes), name="images")

    @property
    def description(self) -> str:
        """What the images are, for a chapter's text: ``"held-out Fashion-MNIST test images"`` or
        ``"images of the folder <name>"``."""
        return ("held-out Fashion-MNIST test images" if self.is_default
                else f"images of the folder {Path(self.source.root).name}")

    def summary(self) -> str:
        """One line (plus the folder report) for a notebook."""
        what = "Fashion-MNIST test split" if self.is_default else str(self.source.root)
        head = (f"{len(self.labels):,} images of {len(self.classes)} classes from {what}, "
                f"{self.channels} channel(s), {self.images.shape[2]}x{self.images.shape[3]} pixels.")
        return head if self.report is None else head + "\n" + self.report.summary()


# ------------------------------------------------------------------------------------------------
# loading
# ------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _default_images() -> SourceImages:
    from sslgeom import data

    images, labels = data.load_fashion_mnist("test")
    images = images[:, None]  # (n, 1, 28, 28): a view, the torchvision layout
    images.setflags(write=False)
    labels.setflags(write=False)
    return SourceImages(ImageSource(), DEFAULT_KEY, images, labels, data.FASHION_CLASSES)


def _folder_key(source: ImageSource) -> str:
    """The pool's identity from the folder's listing (no decoding) and the decoding options."""
    from sslgeom.image_folder import IMAGE_FOLDER_VERSION, scan_folder

    scan = scan_folder(source.root)
    parts = [_VERSION, IMAGE_FOLDER_VERSION, list(scan.classes), list(scan.files), scan.sizes, scan.mtimes,
             source.size, source.per_class, source.seed]
    return "folder-" + cache.content_key(*parts)[:24]


def load_images(source: ImageSource, *, progress: bool = True, key: str | None = None) -> SourceImages:
    """Read a source's pool of images (the folder's are decoded in worker processes and cached).

    Parameters
    ----------
    source : ImageSource
    progress : bool
        Show the decoding progress bar.
    key : str or None
        The pool's key when already computed (:func:`activate` computes it before choosing the cache).

    Returns
    -------
    SourceImages

    Raises
    ------
    FileNotFoundError, NotADirectoryError, sslgeom.image_folder.ImageFolderError
        The folder is missing, not a folder, or not a labelled image set (see the message).
    """
    if source.root is None:
        return _default_images()
    from sslgeom.image_folder import load_image_folder

    key = key or _folder_key(source)
    loaded = load_image_folder(source.root, size=source.size, n_per_class=source.per_class, seed=source.seed,
                               progress=progress)
    images = loaded.images.numpy()
    images.setflags(write=False)
    return SourceImages(source, key, images, loaded.labels, loaded.classes, loaded.report)


# ------------------------------------------------------------------------------------------------
# the active source
# ------------------------------------------------------------------------------------------------

_ACTIVE: SourceImages | None = None
#: the cache and input-folder variables as they were before the first activation in this process
_BASE_ENV: dict[str, str | None] = {}


def active_images() -> SourceImages:
    """The pool the manifolds read: the last :func:`activate`'s, else the default data."""
    return _ACTIVE if _ACTIVE is not None else _default_images()


def _resolve(path: str | Path, what: str) -> Path:
    """``path`` made absolute (``~`` expanded; relative paths start at the repository root)."""
    if not isinstance(path, (str, Path)) or not str(path).strip():
        raise TypeError(f"{what} must be a path (a string) or None, got {path!r}.")
    resolved = Path(path).expanduser()
    return resolved if resolved.is_absolute() else (cache.REPO_ROOT / resolved).resolve()


def _set_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def _namespace(key: str) -> str | None:
    """The cache sub-folder of a pool and input size, or None for the default data at the models' own sizes."""
    size = os.environ.get(published.INPUT_SIZE_ENV) or None
    if key == DEFAULT_KEY and size is None:
        return None
    return cache.content_key(_VERSION, key, size)[:16]


def _use_namespace(name: str | None) -> None:
    """Point the cache at ``<base cache>/sources/<name>`` (None: the base cache), keeping its inputs visible."""
    from sslgeom.data import FASHION_ENV

    if not _BASE_ENV:
        watched = (cache.CACHE_ENV, published.CHECKPOINTS_ENV, FASHION_ENV)
        _BASE_ENV.update({env: os.environ.get(env) for env in watched})
    for env, value in _BASE_ENV.items():
        _set_env(env, value)
    if name is None:
        return
    base = cache.cache_root()
    os.environ[cache.CACHE_ENV] = str(base / NAMESPACE_DIR / name)
    # the published checkpoints and Fashion-MNIST files kept in the base cache stay where lookups go
    listed = [p for p in (_BASE_ENV[published.CHECKPOINTS_ENV], str(base / "published")) if p]
    os.environ[published.CHECKPOINTS_ENV] = os.pathsep.join(listed)
    if _BASE_ENV[FASHION_ENV] is None and (base / "fashion-mnist").is_dir():
        os.environ[FASHION_ENV] = str(base / "fashion-mnist")


def activate(
    image_folder: str | Path | None = None,
    *,
    registry: str | Path | None = None,
    input_size: int | None = None,
    images_per_class: int | None = DEFAULT_IMAGES_PER_CLASS,
    seed: int = 0,
    progress: bool = True,
) -> SourceImages:
    """Choose this process's images, user registry and input size (what a chapter's loading cell calls).

    Parameters
    ----------
    image_folder : str, Path or None
        ``root/<class>/<image>``; None: the default data.
    registry : str, Path or None
        A user registry YAML (:mod:`sslgeom.registry`) made active (``$SSLGEOM_USER_REGISTRY``);
        None leaves the variable as it is.
    input_size : int or None
        Input side of every published and user model (``$SSLGEOM_INPUT_SIZE``), and the side the
        folder's images are decoded at; None leaves the variable as it is (unset: each model's own
        side, 224 for the ResNet-50s).
    images_per_class : int or None
        Images read per class from the folder (None: all); ignored for the default data.
    seed : int
        Seed of the per-class choice of files.
    progress : bool
        Show the decoding progress bar.

    Returns
    -------
    SourceImages
        The pool the manifolds now read.

    Raises
    ------
    FileNotFoundError, sslgeom.registry.RegistryError, sslgeom.image_folder.ImageFolderError
        A missing or invalid registry or folder.
    TypeError, ValueError
        An invalid size or count.
    """
    global _ACTIVE
    if registry is not None:
        path = _resolve(registry, "registry")
        user_registry.read_registry(path)  # a bad registry fails here, before any model loads
        os.environ[user_registry.REGISTRY_ENV] = str(path)
    if input_size is not None:
        check_int(input_size, "input_size", minimum=published.MIN_INPUT_SIZE)
        os.environ[published.INPUT_SIZE_ENV] = str(input_size)
    if image_folder is None:
        source = ImageSource()
    else:
        if images_per_class is not None:
            check_int(images_per_class, "images_per_class", minimum=2)
        source = ImageSource(_resolve(image_folder, "image_folder"), published.input_size(), images_per_class,
                             check_int(seed, "seed", minimum=0))
    key = DEFAULT_KEY if source.root is None else _folder_key(source)
    _use_namespace(_namespace(key))
    _ACTIVE = load_images(source, progress=progress, key=key)
    return _ACTIVE


@contextlib.contextmanager
def use_source(image_folder: str | Path | None = None, **options: Any) -> Iterator[SourceImages]:
    """:func:`activate` inside a ``with`` block; the previous pool and variables are restored afterwards.

    Parameters
    ----------
    image_folder : str, Path or None
    **options
        The keyword arguments of :func:`activate`.

    Yields
    ------
    SourceImages
    """
    global _ACTIVE
    previous = (_ACTIVE, {env: os.environ.get(env) for env in _ENV_NAMES}, dict(_BASE_ENV))
    try:
        yield activate(image_folder, **options)
    finally:
        _ACTIVE = previous[0]
        for env, value in previous[1].items():
            _set_env(env, value)
        _BASE_ENV.clear()
        _BASE_ENV.update(previous[2])


# ------------------------------------------------------------------------------------------------
# parameters and checks
# ------------------------------------------------------------------------------------------------


#: :func:`sslgeom.params.check` rules of the source parameters chapters 02, 04 and 05 share
PARAMETER_RULES: dict[str, dict[str, Any]] = {
    "image_folder": {"type": (str, type(None))},
    "registry": {"type": (str, type(None))},
    "input_size": {"type": (int, type(None)), "minimum": published.MIN_INPUT_SIZE},
    "images_per_class": {"type": (int, type(None)), "minimum": 2},
}


def check_paths(image_folder: str | None, registry: str | None) -> None:
    """Check that the ``image_folder`` and ``registry`` parameters name something (types: :data:`PARAMETER_RULES`).

    Raises
    ------
    FileNotFoundError
        A path that does not exist (relative paths start at the repository root).
    """
    for name, value in (("image_folder", image_folder), ("registry", registry)):
        if value is not None and not _resolve(value, name).exists():
            raise FileNotFoundError(f"Parameter {name} = {value!r}: {_resolve(value, name)} does not exist (relative "
                                    "paths start at the repository root); fix the path or set it to null.")


def _file_identity(path: Path) -> list:
    """``[path, size, mtime_ns]``, or ``[path, None, None]`` for a missing file."""
    try:
        stat = path.stat()
    except OSError:
        return [str(path), None, None]
    return [str(path), stat.st_size, stat.st_mtime_ns]


def input_identity(image_folder: str | None, registry: str | None) -> list:
    """What identifies the files outside the repository that a run with these parameters reads.

    The folder's listing (classes, files, sizes, modification times; nothing is decoded), the
    registry's text with the size and modification time of every checkpoint it names, and the
    checkpoint folders of ``$SSLGEOM_CHECKPOINTS`` with the files they hold, and ``$SSLGEOM_INPUT_SIZE``.
    The notebook runner puts it in a chapter's fingerprint, so that a run is repeated when an
    image, a registry entry or a checkpoint changes, not only when a parameter does. A path that
    cannot be read contributes the error's text (the run itself then stops with the full message).

    Parameters
    ----------
    image_folder, registry : str or None
        The chapter parameters of the same names.

    Returns
    -------
    list
        JSON-serialisable.
    """
    from sslgeom.image_folder import scan_folder

    def folder() -> list:
        scan = scan_folder(_resolve(image_folder, "image_folder"))
        return [str(scan.root), list(scan.classes), list(scan.files), scan.sizes.tolist(), scan.mtimes.tolist()]

    def registry_files() -> list:
        path = _resolve(registry, "registry")
        entries = user_registry.read_registry(path)
        return [str(path), hashlib.sha256(path.read_bytes()).hexdigest(),
                [_file_identity(entry.file) for entry in entries.values()]]

    def checkpoint_folder(directory: Path) -> list:
        files = sorted(directory.iterdir()) if directory.is_dir() else []
        return [str(directory), [_file_identity(f) for f in files if f.is_file()]]

    parts = []
    if image_folder is not None:
        parts.append(("folder", folder))
    if registry is not None:
        parts.append(("registry", registry_files))
    for directory in published.search_dirs()[:-1]:  # the last is the cache's own folder
        parts.append(("checkpoints", functools.partial(checkpoint_folder, directory)))
    identity: list = []
    for label, read in parts:
        try:
            identity.append([label, *read()])
        except (OSError, ValueError, TypeError) as error:  # the run itself stops with the full message
            identity.append([label, f"{type(error).__name__}: {error}"])
    identity.append(["input_size", os.environ.get(published.INPUT_SIZE_ENV)])
    return identity


def is_external(name: str) -> bool:
    """Whether a model name is a published or user-registry model (not the default zoo)."""
    from sslgeom.zoo import PUBLISHED_PREFIX

    return name.startswith((PUBLISHED_PREFIX, user_registry.USER_PREFIX))


def check_models(names: Sequence[str], pool: SourceImages | None = None, parameter: str = "models") -> list[str]:
    """The model names, if every model can see the pool's images; otherwise why not and what to do.

    Default-zoo and external models may share a run only on the default data, which both can see.
    With an image folder, default-zoo models (one greyscale 28x28 channel) cannot see its colour
    images, so a run that lists them is refused.

    Parameters
    ----------
    names : sequence of str
        The run's models (already checked by :func:`sslgeom.zoo.check_model_names`).
    pool : SourceImages or None
        Default: :func:`active_images`.
    parameter : str
        The chapter parameter that chose the models, for the message.

    Raises
    ------
    SourceError
        Default-zoo models in a run on an image folder.
    """
    pool = active_images() if pool is None else pool
    names = list(names)
    zoo_names = [name for name in names if not is_external(name)]
    if pool.is_default or not zoo_names:
        return names
    shown = ", ".join(zoo_names[:5]) + (f" and {len(zoo_names) - 5} more" if len(zoo_names) > 5 else "")
    raise SourceError(
        f"This run reads its images from the folder {pool.source.root}, but {parameter} includes default-zoo models "
        f"({shown}). Those were trained on 28x28 greyscale Fashion-MNIST and take one channel, so they cannot see "
        "the folder's colour images that the published and user models see, and models that saw different images "
        f"cannot be compared. Either list only published/<key> and user/<name> models in {parameter} (None selects "
        "the default zoo), or set image_folder to null to compare every model on Fashion-MNIST.")


def check_class_sizes(n_per_class: int, pool: SourceImages | None = None, parameter: str = "n_per_class") -> None:
    """Refuse a per-class count that the pool's smallest class cannot provide.

    Raises
    ------
    SourceError
        The message names the short classes and the two ways to fix it.
    """
    pool = active_images() if pool is None else pool
    counts = pool.class_counts()
    short = counts[counts < n_per_class]
    if len(short):
        listed = ", ".join(f"{name} ({count})" for name, count in short.head(5).items())
        raise SourceError(
            f"{parameter} = {n_per_class} images per class, but {len(short)} class(es) of the pool have fewer: "
            f"{listed}. Lower {parameter} to at most {int(counts.min())}, or raise images_per_class (now "
            f"{pool.source.per_class}) if the folder holds more images.")


# ------------------------------------------------------------------------------------------------
# label-free baselines and source scores on the pool
# ------------------------------------------------------------------------------------------------


def spectrum_baselines(
    model_names: Sequence[str],
    *,
    n_spectrum: int = 1000,
    seed: int = 0,
    device: str = "cpu",
    pool: SourceImages | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """RankMe and alpha-ReQ of every model on ``n_spectrum`` images of the pool (no labels).

    :func:`sslgeom.transfer.spectrum_baselines` on the pool's images: the default data keep its
    numbers and cache; a folder's images are drawn by ``seed`` from the pool, in colour.

    Returns
    -------
    pandas.DataFrame
        Index: model names; columns ``rankme, alpha_req``.
    """
    from sslgeom import transfer

    pool = active_images() if pool is None else pool
    return transfer.spectrum_baselines(model_names, n_spectrum=n_spectrum, seed=seed, device=device,
                                       progress=progress, images=None if pool.is_default else pool.images)


def _memory_split(labels: np.ndarray, n_memory: int, n_queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per class, a seeded half of the pool as kNN memory and the other half as queries, capped in total."""
    rng = np.random.default_rng([seed, 1])  # its own stream: the spectrum images use default_rng(seed)
    memory, queries = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        half = (len(members) + 1) // 2
        memory.append(members[:half])
        queries.append(members[half:])
    memory, queries = np.concatenate(memory), np.concatenate(queries)
    # class-balanced caps: keep a seeded subset when the pool is larger than asked
    memory = np.sort(rng.permutation(memory)[:n_memory])
    return memory, np.sort(rng.permutation(queries)[:n_queries])


def source_scores(
    model_names: Sequence[str],
    *,
    seed: int = 0,
    device: str = "cpu",
    k: int = 20,
    n_memory: int = 5000,
    n_queries: int = 2000,
    pool: SourceImages | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Source-domain scores: the manifest's for default-zoo models on the default data, else measured on the pool.

    On the default data with only default-zoo models this is :func:`sslgeom.transfer.source_scores`
    (the probe and kNN accuracies the manifest records). Any other run (an image folder, or external
    models) has no recorded score that fits all its models, so every model gets one protocol on the
    pool: cosine ``k``-nearest-neighbour accuracy (:func:`sslgeom.evaluation.knn_accuracy`) with a
    seeded half of each class as memory and the other half as queries (at most ``n_memory`` and
    ``n_queries`` images); ``source_probe`` is then NaN.

    Returns
    -------
    pandas.DataFrame
        Index: model names; columns ``source_probe, source_knn``.
    """
    from tqdm.auto import tqdm

    from sslgeom import embed, evaluation, transfer

    pool = active_images() if pool is None else pool
    names = list(model_names)
    if pool.is_default and not any(map(is_external, names)):
        return transfer.source_scores(names)
    memory, queries = _memory_split(pool.labels, check_int(n_memory, "n_memory", minimum=2),
                                    check_int(n_queries, "n_queries", minimum=1), check_int(seed, "seed", minimum=0))
    images = {part: torch.from_numpy(np.ascontiguousarray(pool.images[ids])) for part, ids in
              (("memory", memory), ("queries", queries))}
    neighbours = min(check_int(k, "k", minimum=1), len(memory))
    rows = {}
    for name in tqdm(names, desc="source kNN", disable=not progress):
        model = embed.resolve_model(name, device)
        features = {part: embed.embed(model, batch, device=device, progress=False) for part, batch in images.items()}
        rows[name] = {"source_probe": np.nan, "source_knn": float(evaluation.knn_accuracy(
            features["memory"], pool.labels[memory], features["queries"], pool.labels[queries], k=neighbours))}
    return pd.DataFrame.from_dict(rows, orient="index")[["source_probe", "source_knn"]]
