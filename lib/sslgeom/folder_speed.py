"""Decoding speed of a class folder, and small synthetic class folders to measure it on.

:func:`decoding_throughput` times one uncached pass of :func:`sslgeom.image_folder.load_image_folder`
over your folder; :func:`benchmark_decoding` does the same on a synthetic folder written by
:func:`write_synthetic_folder` (smooth colour gradients plus noise), which the tests also use as a
small labelled image set.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sslgeom.image_folder import DEFAULT_WORKERS, load_image_folder
from sslgeom.validation import check_int

__all__ = ["decoding_throughput", "write_synthetic_folder", "benchmark_decoding"]


def decoding_throughput(root: str | Path, **options: Any) -> dict[str, float]:
    """Read a folder with :func:`load_image_folder` without the cache, and time it.

    The time covers the listing, the worker start-up and the decoding (unreadable files count as
    processed images: they were opened and tried).

    Parameters
    ----------
    root : str or Path
        ``root/<class>/.../<image>``.
    **options
        :func:`load_image_folder`'s options (``size``, ``n_per_class``, ``seed``, ``resize``,
        ``num_workers``, ``batch_size``); ``progress`` and ``use_cache`` are set here.

    Returns
    -------
    dict
        ``images``, ``seconds``, ``images_per_second``, ``num_workers``.
    """
    start = time.perf_counter()
    report = load_image_folder(root, progress=False, use_cache=False, **options).report
    seconds = time.perf_counter() - start
    n_images = report.n_loaded + report.n_skipped
    workers = options.get("num_workers", DEFAULT_WORKERS)
    return {"images": float(n_images), "seconds": seconds, "images_per_second": n_images / seconds,
            "num_workers": float(workers)}


def write_synthetic_folder(
    root: str | Path,
    *,
    n_classes: int = 3,
    n_per_class: int = 100,
    shape: tuple[int, int] = (96, 128),
    seed: int = 0,
    suffix: str = ".png",
) -> Path:
    """Write a small class-folder image set (smooth colour gradients plus noise) for tests and benchmarks.

    Parameters
    ----------
    root : str or Path
        Created if needed; images go to ``root/class_<k>/img_<i><suffix>``.
    n_classes, n_per_class : int
    shape : tuple of int
        ``(height, width)`` of every image.
    seed : int
    suffix : {".png", ".jpg"}

    Returns
    -------
    Path
        ``root``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    height, width = shape
    ramp = np.linspace(0.0, 1.0, width)[None, :, None] * np.linspace(0.3, 1.0, height)[:, None, None]
    for k in range(n_classes):
        folder = root / f"class_{k}"
        folder.mkdir(parents=True, exist_ok=True)
        tint = np.array([(k + 1) % 3, (k + 2) % 3, k % 3], dtype=np.float64) / 2.0
        for i in range(n_per_class):
            pixels = 200.0 * ramp * tint + rng.normal(0.0, 20.0, (height, width, 3)) + 30.0
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"img_{i:05d}{suffix}")
    return root


def benchmark_decoding(
    n_images: int = 300,
    *,
    shape: tuple[int, int] = (96, 128),
    size: int = 64,
    num_workers: int = 2,
    seed: int = 0,
) -> dict[str, float]:
    """Throughput of :func:`load_image_folder`'s decoding on ``n_images`` synthetic PNGs in 3 classes.

    Writes the images to a temporary folder (deleted afterwards) and times one uncached pass with
    :func:`decoding_throughput`. On a loaded machine the number is noisy; repeat it to compare.
    """
    n_images = check_int(n_images, "n_images", minimum=3)
    with tempfile.TemporaryDirectory() as directory:
        write_synthetic_folder(directory, n_classes=3, n_per_class=n_images // 3, shape=shape, seed=seed)
        return decoding_throughput(directory, size=size, num_workers=num_workers, seed=seed)
