"""The target tasks of the transfer chapter, and the image corruptions of the shifted-domain task.

:func:`build_tasks` makes :class:`sslgeom.data.Task` objects (train/val/test images and labels) from
Fashion-MNIST in domain, a corrupted Fashion-MNIST (:func:`corrupt_images`), scikit-learn digits,
texture patches, and the images of an image folder (the in-domain task of a run on your own images,
:mod:`sslgeom.sources`). :mod:`sslgeom.transfer` measures models on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .validation import check_labels, check_names

if TYPE_CHECKING:
    from .data import Task
    from .sources import SourceImages

__all__ = ["TASK_NAMES", "DEFAULT_DATA_TASKS", "CORRUPTIONS", "corrupt_images", "build_tasks"]

#: The tasks of the default data, from close to far from the default zoo's training domain.
DEFAULT_DATA_TASKS: tuple[str, ...] = ("fashion", "fashion_corrupted", "digits", "textures")
#: Every task :func:`build_tasks` knows: the default data's, then the pool of the active image folder
#: (last, so that the other tasks keep their seeds).
TASK_NAMES: tuple[str, ...] = (*DEFAULT_DATA_TASKS, "image_folder")
#: Corruptions of the ``fashion_corrupted`` task, in the order of the indices :func:`corrupt_images` returns.
CORRUPTIONS: tuple[str, ...] = ("noise", "blur", "contrast")


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


def _folder_task(pool: SourceImages, sizes: tuple[int | None, int | None, int | None],
                 rng: np.random.Generator) -> Task:
    """The in-domain task of an image folder's pool: split 50/20/30 per class, in the pool's colours
    (``uint8 (n, 3, H, W)``, the images the models' manifolds are built from)."""
    from . import data

    if pool.is_default:
        raise ValueError("The image_folder task needs an image folder, but the active images are the default data: "
                         "set the chapter parameter image_folder (sslgeom.sources.activate), or drop the task.")
    images = pool.images
    split = _split_per_class(pool.labels, (0.5, 0.2), rng)
    parts = [_subsample(images[idx], pool.labels[idx], n, rng) for idx, n in zip(split, sizes)]
    return data.Task(name="image_folder", classes=tuple(pool.classes), train=parts[0], val=parts[1], test=parts[2])


def _build_task(name: str, sizes: tuple[int | None, int | None, int | None], seed: int,
                pool: SourceImages | None = None) -> Task:
    """One task of :func:`build_tasks`; ``sizes`` caps the train, val and test splits."""
    from . import data, sources

    n_train, n_val, n_test = sizes
    # one generator per task, so a task's images do not depend on which other tasks are built
    rng = np.random.default_rng([seed, TASK_NAMES.index(name)])
    if name == "image_folder":
        return _folder_task(sources.active_images() if pool is None else pool, sizes, rng)
    if name == "fashion":
        images, labels = data.load_fashion_mnist("train")
        order = rng.permutation(len(labels))
        cut = len(order) - 10_000  # the last 10k of a fixed permutation is the validation pool
        train = _subsample(images[order[:cut]], labels[order[:cut]], n_train, rng)
        val = _subsample(images[order[cut:]], labels[order[cut:]], n_val, rng)
        test = _subsample(*data.load_fashion_mnist("test"), n_test, rng)
        return data.Task(name=name, classes=data.FASHION_CLASSES, train=train, val=val, test=test)
    if name == "fashion_corrupted":
        images, labels = data.load_fashion_mnist("test")
        corrupted, _ = corrupt_images(images, seed=seed)
        train_idx, val_idx, test_idx = _split_per_class(labels, (0.5, 0.2), rng)
        parts = [_subsample(corrupted[idx], labels[idx], n, rng)
                 for idx, n in ((train_idx, n_train), (val_idx, n_val), (test_idx, n_test))]
        return data.Task(name=name, classes=data.FASHION_CLASSES, train=parts[0], val=parts[1], test=parts[2])
    loaded = data.load_digits_task(seed=seed) if name == "digits" else data.load_textures_task(seed=seed)
    parts = [_subsample(*split, n, rng) for split, n in ((loaded.train, n_train), (loaded.val, n_val), (loaded.test, n_test))]
    return data.Task(name=name, classes=loaded.classes, train=parts[0], val=parts[1], test=parts[2])


def build_tasks(
    names: Sequence[str] = DEFAULT_DATA_TASKS,
    n_train: int | None = 2000,
    n_val: int | None = 1000,
    n_test: int | None = 2000,
    seed: int = 0,
    pool: SourceImages | None = None,
) -> dict[str, Task]:
    """Build the target tasks as :class:`sslgeom.data.Task` objects.

    * ``fashion`` (in domain): train and val drawn from disjoint parts of the Fashion-MNIST train
      split, test from its test split.
    * ``fashion_corrupted`` (shifted domain): the Fashion-MNIST test split, each image corrupted
      by noise, blur or low contrast (:func:`corrupt_images`), split 50/20/30 per class.
    * ``digits`` and ``textures`` (out of domain): :func:`sslgeom.data.load_digits_task` and
      :func:`sslgeom.data.load_textures_task`.
    * ``image_folder`` (in the domain of a run on an image folder): the pool of
      :func:`sslgeom.sources.active_images` (or ``pool``), split 50/20/30 per class, in colour
      (``(n, 3, H, W)``; the other tasks' images are greyscale ``(n, H, W)``).

    Every split is subsampled (class-stratified) to at most ``n_train``/``n_val``/``n_test``
    images; ``None`` keeps the whole split.

    Parameters
    ----------
    names : sequence of str
        Tasks from :data:`TASK_NAMES`, in the order wanted.
    n_train, n_val, n_test : int or None
        Caps on the split sizes.
    seed : int
        Seeds the splits, the subsampling and the corruptions; a task's images do not depend on
        which other tasks are built.
    pool : sslgeom.sources.SourceImages or None
        The images of the ``image_folder`` task; None: the active ones.

    Returns
    -------
    dict of str to Task
        Each split is ``(images uint8 (n, H, W), labels int64 (n,))``: 28x28 for the default tasks,
        the pool's side for ``image_folder``.
    """
    check_names(names, TASK_NAMES, "transfer tasks")
    tasks = {}
    for name in names:
        task = _build_task(name, (n_train, n_val, n_test), seed, pool)
        for split_name in ("train", "val", "test"):
            labels = getattr(task, split_name)[1]
            check_labels(labels, len(labels), f"task {name!r} {split_name} labels", min_classes=2)
        tasks[name] = task
    return tasks
