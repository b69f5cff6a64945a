"""Offline datasets: Fashion-MNIST (source domain) and two out-of-domain transfer targets.

Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017) is read from gzipped IDX files. They are looked for,
in order, in ``$SSLGEOM_FASHION_MNIST_DIR``, in the Debian package ``dataset-fashion-mnist``
(``/usr/share/datasets/fashion-mnist``), and in the cache (``<cache>/fashion-mnist``), where
:func:`download_fashion_mnist` puts them. Every file is verified against the SHA-256 of its
*decompressed* bytes before use, so the check holds for any gzip container (the Debian package
re-compresses the canonical files) and catches truncation and corruption.

The transfer targets are scikit-learn's handwritten digits (8x8, resized) and texture patches cut
from scikit-image's sample images; both ship inside those packages, so nothing is downloaded.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cache import atomic_write, cache_dir, cache_root

FASHION_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

FASHION_ENV = "SSLGEOM_FASHION_MNIST_DIR"
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

# SHA-256 of the decompressed IDX bytes and their exact size.
FASHION_FILES: dict[str, tuple[str, int]] = {
    "train-images-idx3-ubyte.gz": (
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        47_040_016,
    ),
    "train-labels-idx1-ubyte.gz": (
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        60_008,
    ),
    "t10k-images-idx3-ubyte.gz": (
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        7_840_016,
    ),
    "t10k-labels-idx1-ubyte.gz": (
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        10_008,
    ),
}
_SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_IDX_IMAGES_MAGIC = 2051
_IDX_LABELS_MAGIC = 2049


class DataFileError(ValueError):
    """A data file exists but is truncated, corrupt or not what it claims to be."""


@dataclass(frozen=True)
class Task:
    """A labelled image classification task with fixed train/val/test splits.

    Attributes
    ----------
    name
        Short identifier, e.g. ``"digits"``.
    classes
        Class names, indexed by label.
    train, val, test
        ``(images, labels)``: ``uint8`` arrays ``(n, height, width)`` (greyscale) or
        ``(n, channels, height, width)`` (an image folder's RGB pool), and ``int64`` arrays ``(n,)``.
    """

    name: str
    classes: tuple[str, ...]
    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]

    def split_sizes(self) -> dict[str, int]:
        """Number of images per split."""
        return {"train": len(self.train[1]), "val": len(self.val[1]), "test": len(self.test[1])}


# --------------------------------------------------------------------------------------------
# Fashion-MNIST
# --------------------------------------------------------------------------------------------


def fashion_mnist_search_dirs() -> list[Path]:
    """Directories searched for the Fashion-MNIST files, in order."""
    dirs = []
    if os.environ.get(FASHION_ENV):
        dirs.append(Path(os.environ[FASHION_ENV]))
    dirs += [DEBIAN_FASHION_DIR, cache_root() / "fashion-mnist"]  # looking never creates the cache
    return dirs


def _find_fashion_file(filename: str) -> Path:
    searched = fashion_mnist_search_dirs()
    for directory in searched:
        candidate = directory / filename
        if candidate.exists():
            return candidate
    raise FileNotFoundError(
        f"Fashion-MNIST file {filename!r} not found; looked in: "
        + ", ".join(str(d) for d in searched)
        + ". Install it with `apt-get install dataset-fashion-mnist` (Debian), or set "
        f"{FASHION_ENV} to a directory holding the four *-ubyte.gz files, or call "
        "sslgeom.data.download_fashion_mnist() on a machine with internet access."
    )


def _read_verified(path: Path, filename: str | None = None) -> bytes:
    """Decompress ``path`` and check size and SHA-256 of the content; never return partial data.

    ``filename`` names the release file whose checksum applies (default: ``path.name``).
    """
    expected_sha, expected_size = FASHION_FILES[filename or path.name]
    try:
        with gzip.open(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as error:
        raise DataFileError(
            f"{path} is not a valid gzip file ({error}); the copy is corrupt or truncated. "
            "Reinstall `dataset-fashion-mnist` or download the file again."
        ) from error
    if len(raw) != expected_size:
        raise DataFileError(
            f"{path} decompresses to {len(raw)} bytes, expected {expected_size}; the file is "
            "truncated or not the Fashion-MNIST release. Replace it with a fresh copy."
        )
    digest = hashlib.sha256(raw).hexdigest()
    if digest != expected_sha:
        raise DataFileError(
            f"checksum mismatch for {path}: SHA-256 of its content is {digest}, expected "
            f"{expected_sha}. The file is corrupt or a different dataset; replace it."
        )
    return raw


def _parse_idx(raw: bytes, path: Path, expected_magic: int) -> np.ndarray:
    magic = int.from_bytes(raw[:4], "big")
    if magic != expected_magic:
        raise DataFileError(f"{path} has IDX magic number {magic}, expected {expected_magic}")
    n_dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(n_dims))
    offset = 4 + 4 * n_dims
    if len(raw) - offset != int(np.prod(shape)):
        raise DataFileError(f"{path}: header says shape {shape} but payload has {len(raw) - offset} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(shape).copy()


def load_fashion_mnist(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Load a Fashion-MNIST split, verified by checksum.

    Parameters
    ----------
    split
        ``"train"`` (60,000 images) or ``"test"`` (10,000 images).

    Returns
    -------
    images : numpy.ndarray
        ``uint8`` array of shape ``(n, 28, 28)``.
    labels : numpy.ndarray
        ``int64`` array of shape ``(n,)`` with values in ``0..9`` (see :data:`FASHION_CLASSES`).

    Raises
    ------
    ValueError
        For an unknown split name.
    FileNotFoundError
        If the files are nowhere to be found (the message says where it looked and how to get them).
    DataFileError
        If a file is truncated, corrupt, or fails its checksum.
    """
    if not isinstance(split, str) or split not in _SPLIT_FILES:
        raise ValueError(f"unknown Fashion-MNIST split {split!r}; use 'train' or 'test'")
    image_file, label_file = _SPLIT_FILES[split]
    image_path, label_path = _find_fashion_file(image_file), _find_fashion_file(label_file)
    images = _parse_idx(_read_verified(image_path), image_path, _IDX_IMAGES_MAGIC)
    labels = _parse_idx(_read_verified(label_path), label_path, _IDX_LABELS_MAGIC).astype(np.int64)
    if images.shape[0] != labels.shape[0]:
        raise DataFileError(f"{image_path} and {label_path} hold {images.shape[0]} images but {labels.shape[0]} labels")
    return images, labels


def download_fashion_mnist(target_dir: str | Path | None = None, timeout: float = 30.0) -> Path:
    """Download the four Fashion-MNIST files from the canonical source and verify them.

    Files already present and valid are kept. Each download is written atomically and checked
    before it is moved into place.

    Parameters
    ----------
    target_dir
        Where to put the files; defaults to ``<cache>/fashion-mnist``.
    timeout
        Seconds before a connection attempt is abandoned.

    Returns
    -------
    pathlib.Path
        The directory holding the verified files.
    """
    target = Path(target_dir) if target_dir is not None else cache_dir() / "fashion-mnist"
    target.mkdir(parents=True, exist_ok=True)
    for filename in FASHION_FILES:
        destination = target / filename
        if destination.exists():
            try:
                _read_verified(destination)
                continue
            except DataFileError:
                destination.unlink()
        url = FASHION_URL + filename
        with atomic_write(destination) as tmp:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
                    out.write(response.read())
            except (urllib.error.URLError, OSError) as error:
                raise ConnectionError(
                    f"could not download {url} ({error}). Without internet access, install the Debian "
                    f"package `dataset-fashion-mnist` or copy the files into {target}."
                ) from error
            _read_verified(tmp, filename)  # a bad download raises here and is never moved into place
    return target


# --------------------------------------------------------------------------------------------
# Transfer targets
# --------------------------------------------------------------------------------------------


def _resize_batch(images: np.ndarray, size: int) -> np.ndarray:
    """Resize ``(n, h, w)`` uint8 images to ``(n, size, size)`` with antialiased bilinear filtering."""
    import torch
    import torchvision.transforms.v2.functional as TF

    tensor = torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1)
    resized = TF.resize(tensor, [size, size], antialias=True)
    return resized.squeeze(1).numpy()


def _stratified_split(
    labels: np.ndarray, fractions: tuple[float, float, float], seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of a deterministic per-class train/val/test split."""
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_train = int(round(fractions[0] * len(members)))
        n_val = int(round(fractions[1] * len(members)))
        parts[0].append(members[:n_train])
        parts[1].append(members[n_train : n_train + n_val])
        parts[2].append(members[n_train + n_val :])
    return tuple(np.sort(np.concatenate(p)) for p in parts)  # type: ignore[return-value]


def _check_size(size: int) -> None:
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 8:
        raise ValueError(f"size must be an integer >= 8 (pixels), got {size!r}")


def load_digits_task(size: int = 28, seed: int = 0) -> Task:
    """scikit-learn's handwritten digits (1,797 images, 10 classes), resized to ``size``.

    The 8x8 images have 17 grey levels (0..16); they are rescaled to 0..255 and resized with
    bilinear interpolation. Split per class: 50% train, 20% val, 30% test, fixed by ``seed``.

    Returns
    -------
    Task
        Images ``uint8 (n, size, size)``, labels ``int64 (n,)``.
    """
    from sklearn.datasets import load_digits

    _check_size(size)
    digits = load_digits()
    images8 = np.clip(np.rint(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    images = _resize_batch(images8, size)
    labels = digits.target.astype(np.int64)
    train, val, test = _stratified_split(labels, (0.5, 0.2, 0.3), seed)
    return Task(
        name="digits",
        classes=tuple(str(d) for d in range(10)),
        train=(images[train], labels[train]),
        val=(images[val], labels[val]),
        test=(images[test], labels[test]),
    )


# scikit-image sample images used as texture classes (all ship with scikit-image, no download).
TEXTURE_SOURCES: tuple[str, ...] = (
    "brick",
    "grass",
    "gravel",
    "moon",
    "cell",
    "hubble_deep_field",
    "immunohistochemistry",
    "text",
)


def _texture_image(name: str) -> np.ndarray:
    from skimage import color, data, util

    image = getattr(data, name)()
    if image.ndim == 3:
        image = color.rgb2gray(image[..., :3])
    return util.img_as_ubyte(image)


def load_textures_task(
    size: int = 28,
    seed: int = 0,
    patches_per_class: int = 300,
    sources: tuple[str, ...] = TEXTURE_SOURCES,
) -> Task:
    """Texture patches cut from scikit-image's sample images, one class per source image.

    Each source image is split into a left 60% (train), a middle 20% (val) and a right 20% (test)
    band, so that patches from different splits never overlap. Patches of side ``2 * size`` are cut
    at random positions in the band (fixed by ``seed``) and resized to ``size``.

    Parameters
    ----------
    size
        Output side length in pixels.
    seed
        Seed of the patch positions.
    patches_per_class
        Total patches per class, shared 60/20/20 between train, val and test.
    sources
        Names of ``skimage.data`` images; each becomes one class.

    Returns
    -------
    Task
        Images ``uint8 (n, size, size)``, labels ``int64 (n,)``.
    """
    _check_size(size)
    if patches_per_class < 5:
        raise ValueError(f"patches_per_class must be at least 5, got {patches_per_class}")
    unknown = [name for name in sources if name not in TEXTURE_SOURCES]
    if unknown:
        raise ValueError(f"unknown texture sources {unknown}; available: {list(TEXTURE_SOURCES)}")
    rng = np.random.default_rng(seed)
    patch = 2 * size
    counts = {"train": int(0.6 * patches_per_class), "val": int(0.2 * patches_per_class)}
    counts["test"] = patches_per_class - counts["train"] - counts["val"]
    bands = {"train": (0.0, 0.6), "val": (0.6, 0.8), "test": (0.8, 1.0)}
    split_images: dict[str, list[np.ndarray]] = {name: [] for name in bands}
    split_labels: dict[str, list[np.ndarray]] = {name: [] for name in bands}
    for label, source in enumerate(sources):
        image = _texture_image(source)
        height, width = image.shape
        for split, (start, stop) in bands.items():
            col_lo, col_hi = int(start * width), int(stop * width) - patch
            if col_hi <= col_lo or height <= patch:
                raise ValueError(f"texture {source!r} ({height}x{width}) is too small for patches of {patch}px")
            rows = rng.integers(0, height - patch, size=counts[split])
            cols = rng.integers(col_lo, col_hi, size=counts[split])
            crops = np.stack([image[r : r + patch, c : c + patch] for r, c in zip(rows, cols)])
            split_images[split].append(_resize_batch(crops, size))
            split_labels[split].append(np.full(counts[split], label, dtype=np.int64))
    arrays = {
        split: (np.concatenate(split_images[split]), np.concatenate(split_labels[split])) for split in bands
    }
    return Task(name="textures", classes=tuple(sources), **arrays)


def class_counts(labels: np.ndarray, n_classes: int | None = None) -> np.ndarray:
    """Number of examples per class, ``(n_classes,)``."""
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_classes or 0)
