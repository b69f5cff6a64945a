"""Images from a folder of class sub-folders (your own data, or ImageNet's validation set by class).

The layout is torchvision's ``ImageFolder`` one: ``root/<class name>/.../<image>``, one sub-folder
per class, class names sorted alphabetically give the labels ``0, 1, ...``. :func:`load_image_folder`
lists the files, picks a per-class subsample, decodes it in parallel worker processes (a torch
``DataLoader``), resizes it, and caches the result by content (:mod:`sslgeom.cache`).

Rules (each tested in ``tests/test_image_folder.py``)
-----------------------------------------------------
* **Files.** Only ``.png``, ``.jpg`` and ``.jpeg`` files (any case) are images; every other file is
  ignored and counted (:attr:`FolderReport.n_ignored`). Hidden files and folders (names starting with
  ``.``, such as macOS ``._x.jpg`` or ``.ipynb_checkpoints``) are ignored too. Class folders without
  any image are left out (listed in :attr:`FolderReport.empty_classes`).
* **Subsample.** Within a class, files are sorted by relative path, then shuffled by a generator
  seeded with ``(seed, class name)``, and the first ``n_per_class`` *readable* files of that order
  are kept (an unreadable file is replaced by the next one). Seeding per class name means that adding
  or removing a class does not change which files another class keeps. A class with fewer readable
  files keeps all of them and is listed in :attr:`FolderReport.short_classes`. ``n_per_class=None``
  keeps every file. The kept images are returned by class, then in sorted path order.
* **Resize.** ``resize="crop"`` (default, the ImageNet evaluation convention): the shorter side is
  resized to ``size`` (bilinear, antialiased), then the centre ``size x size`` square is cropped.
  ``resize="stretch"``: direct resize to ``size x size``, aspect ratio not kept.
* **Small images** are upsampled by the same resize (never an error: a folder of 32-pixel images is
  legitimate data); how many were is :attr:`FolderReport.n_upsampled`.
* **Colour.** Every image becomes 8-bit RGB: greyscale is repeated, alpha (RGBA, LA, palette
  transparency) is discarded as in torchvision's default loader, palettes are expanded, CMYK is
  converted, 16-bit greyscale is scaled to 8 bits (not clipped). EXIF orientation is applied.
* **Unreadable files** (corrupt, truncated, not an image despite the name) are skipped, not fatal:
  one bad file among 50,000 should not stop a long run. The count and the first few paths with the
  reason are in :attr:`FolderReport.skipped`; if no file at all can be read it is an error.
* **Cache.** The key holds every image file's relative path, size and modification time, the class
  folders, ``size``, ``resize``, ``n_per_class`` and ``seed``: a changed folder is decoded again.

>>> data = load_image_folder("imagenet/val", size=224, n_per_class=10)     # doctest: +SKIP
>>> data.images.shape, data.labels.dtype, data.classes[:2]                  # doctest: +SKIP
(torch.Size([10000, 3, 224, 224]), dtype('int64'), ('n01440764', 'n01443537'))
>>> print(data.report.summary())                                            # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from tqdm.auto import tqdm

from sslgeom import cache
from sslgeom.validation import check_choice, check_int

__all__ = [
    "IMAGE_EXTENSIONS",
    "RESIZE_MODES",
    "ImageFolderError",
    "FolderScan",
    "FolderReport",
    "ImageFolderData",
    "scan_folder",
    "subsample_order",
    "decode_image",
    "load_image_folder",
]

#: file endings read as images (compared in lower case)
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg")
#: ``crop``: shorter side to ``size``, then centre crop; ``stretch``: direct resize to ``size x size``
RESIZE_MODES: tuple[str, ...] = ("crop", "stretch")
#: bumped when decoding changes, so that old cache entries are not reused
IMAGE_FOLDER_VERSION = "image-folder-v1"
CACHE_NAMESPACE = "image_folder"
#: decoding processes of :func:`load_image_folder` unless told otherwise (the machine's two cores)
DEFAULT_WORKERS = 2
#: how many example paths a report lists (skipped, ignored)
MAX_LISTED = 5
#: modes of 16-bit greyscale PNGs; ``Image.convert`` would clip them at 255 instead of scaling
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I")


class ImageFolderError(ValueError):
    """A folder cannot serve as a labelled image set (no classes, no images, a single class)."""


@dataclass(frozen=True)
class FolderScan:
    """What a folder holds, before any decoding.

    Attributes
    ----------
    root : Path
    classes : tuple of str
        Class folders with at least one image file, sorted; a label indexes this tuple.
    files : tuple of str
        Image files relative to ``root`` (POSIX separators), by class then sorted path.
    labels : numpy.ndarray, shape (n_files,)
        int64 class index of each file.
    sizes, mtimes : numpy.ndarray, shape (n_files,)
        File sizes in bytes and modification times in nanoseconds (the cache key).
    empty_classes : tuple of str
        Class folders without any image file (left out of ``classes``).
    ignored : tuple of str
        Non-image and hidden files inside the class folders, relative to ``root``.
    """

    root: Path
    classes: tuple[str, ...]
    files: tuple[str, ...]
    labels: np.ndarray
    sizes: np.ndarray
    mtimes: np.ndarray
    empty_classes: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()


@dataclass(frozen=True)
class FolderReport:
    """How a folder was read: counts, the classes that ran short, skipped and upsampled files.

    Attributes
    ----------
    root : str
    size : int
    resize : str
    n_per_class : int or None
    seed : int
    n_found : int
        Image files in the class folders.
    n_loaded : int
        Images returned.
    kept_per_class : dict of str to int
        Images returned per class.
    short_classes : dict of str to int
        Classes with fewer than ``n_per_class`` readable files, which keep all they have (empty when
        ``n_per_class`` is None: every class keeps all its readable files then).
    n_skipped : int
        Unreadable files skipped.
    skipped : tuple of str
        The first :data:`MAX_LISTED` of them as ``"<path>: <reason>"``.
    n_upsampled : int
        Returned images that were smaller than ``size`` (shorter side for ``crop``, either side for
        ``stretch``) and were upsampled.
    empty_classes : tuple of str
        Class folders without image files, left out.
    n_ignored : int
        Non-image or hidden files ignored.
    ignored : tuple of str
        The first :data:`MAX_LISTED` of them.
    """

    root: str
    size: int
    resize: str
    n_per_class: int | None
    seed: int
    n_found: int
    n_loaded: int
    kept_per_class: dict[str, int] = field(default_factory=dict)
    short_classes: dict[str, int] = field(default_factory=dict)
    n_skipped: int = 0
    skipped: tuple[str, ...] = ()
    n_upsampled: int = 0
    empty_classes: tuple[str, ...] = ()
    n_ignored: int = 0
    ignored: tuple[str, ...] = ()

    def summary(self) -> str:
        """A few lines for a notebook or a log."""
        rule = "all files" if self.n_per_class is None else f"{self.n_per_class} per class (seed {self.seed})"
        lines = [f"{self.n_loaded} images of {len(self.kept_per_class)} classes from {self.root} "
                 f"({self.n_found} image files; kept {rule}; {self.resize} to {self.size}x{self.size})."]
        if self.short_classes:
            lines.append(f"{len(self.short_classes)} classes have fewer readable files and keep all: "
                         f"{_first(self.short_classes)}.")
        if self.n_skipped:
            lines.append(f"Skipped {self.n_skipped} unreadable files, e.g. {list(self.skipped)}.")
        if self.n_upsampled:
            lines.append(f"Upsampled {self.n_upsampled} images smaller than {self.size} pixels.")
        if self.empty_classes:
            lines.append(f"Left out {len(self.empty_classes)} class folders without images: "
                         f"{list(self.empty_classes[:MAX_LISTED])}.")
        if self.n_ignored:
            lines.append(f"Ignored {self.n_ignored} non-image or hidden files, e.g. {list(self.ignored)}.")
        return "\n".join(lines)


def _first(mapping: dict[str, int]) -> str:
    items = list(mapping.items())
    return ", ".join(f"{k} ({v})" for k, v in items[:MAX_LISTED]) + (" ..." if len(items) > MAX_LISTED else "")


@dataclass(frozen=True)
class ImageFolderData:
    """A labelled image set read from a folder.

    Attributes
    ----------
    images : torch.Tensor, shape (n, 3, size, size)
        uint8 RGB images, by class then sorted path.
    labels : numpy.ndarray, shape (n,)
        int64 indices into ``classes``.
    classes : tuple of str
        Class folder names.
    paths : tuple of str
        Each image's file, relative to the folder.
    report : FolderReport
    """

    images: torch.Tensor
    labels: np.ndarray
    classes: tuple[str, ...]
    paths: tuple[str, ...]
    report: FolderReport


# ------------------------------------------------------------------------------------------------
# listing
# ------------------------------------------------------------------------------------------------


def _is_hidden(relative: str) -> bool:
    return any(part.startswith(".") for part in Path(relative).parts)


def _check_root(root: str | Path) -> Path:
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"Image folder {root} does not exist. Give a folder holding one sub-folder "
                                "per class (root/<class>/<image>.png|.jpg), as torchvision's ImageFolder reads.")
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is a file, not a folder of class sub-folders (root/<class>/<image>).")
    return root


def _class_folders(root: Path) -> list[str]:
    """Non-hidden sub-folders of ``root``, sorted (torchvision's ``find_classes`` without hidden ones)."""
    return sorted(entry.name for entry in os.scandir(root) if entry.is_dir() and not entry.name.startswith("."))


def scan_folder(root: str | Path) -> FolderScan:
    """List a folder's classes and image files (no decoding).

    Files are found with torchvision's ``make_dataset`` (the listing ``ImageFolder`` uses, following
    symbolic links), with hidden files and non-image endings rejected and counted.

    Parameters
    ----------
    root : str or Path
        ``root/<class>/.../<image>``.

    Returns
    -------
    FolderScan

    Raises
    ------
    FileNotFoundError, NotADirectoryError
        ``root`` is missing or a file.
    ImageFolderError
        No class sub-folder, no image file, or images in fewer than two classes.
    """
    from torchvision.datasets.folder import make_dataset  # imported here: torchvision is slow to import

    root = _check_root(root)
    folders = _class_folders(root)
    if not folders:
        loose = [p.name for p in root.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS]
        where = f" ({len(loose)} images lie directly in it)" if loose else ""
        raise ImageFolderError(f"{root} has no class sub-folders{where}. Put the images of each class in a "
                               "sub-folder named after the class: root/<class>/<image>.")
    ignored: list[str] = []

    def is_image(path: str) -> bool:
        relative = Path(path).relative_to(root).as_posix()
        if Path(path).suffix.lower() in IMAGE_EXTENSIONS and not _is_hidden(relative):
            return True
        ignored.append(relative)
        return False

    samples = make_dataset(str(root), {name: i for i, name in enumerate(folders)}, is_valid_file=is_image,
                           allow_empty=True)
    # by class, then relative path: make_dataset walks folders in its own order
    samples = sorted(((Path(path).relative_to(root).as_posix(), label) for path, label in samples),
                     key=lambda item: (item[1], item[0]))
    present = sorted({label for _, label in samples})
    if not present:
        raise ImageFolderError(
            f"No PNG or JPEG images in the class folders of {root} (looked for {', '.join(IMAGE_EXTENSIONS)}; "
            f"ignored {len(ignored)} other files{', e.g. ' + str(ignored[:MAX_LISTED]) if ignored else ''}).")
    if len(present) < 2:
        raise ImageFolderError(
            f"{root} has images in a single class ({folders[present[0]]!r}); a labelled image set needs at least "
            "2 classes. Add a sub-folder per class.")
    # relabel so that labels index the classes that have images (an empty folder gets no label)
    relabel = {old: new for new, old in enumerate(present)}
    stats = [os.stat(root / relative) for relative, _ in samples]
    return FolderScan(
        root=root,
        classes=tuple(folders[i] for i in present),
        files=tuple(relative for relative, _ in samples),
        labels=np.array([relabel[label] for _, label in samples], dtype=np.int64),
        sizes=np.array([s.st_size for s in stats], dtype=np.int64),
        mtimes=np.array([s.st_mtime_ns for s in stats], dtype=np.int64),
        empty_classes=tuple(name for i, name in enumerate(folders) if i not in relabel),
        ignored=tuple(ignored),
    )


def subsample_order(files: Sequence[str], class_name: str, seed: int) -> np.ndarray:
    """The order in which a class's files are tried: sorted paths shuffled by ``(seed, class name)``.

    Parameters
    ----------
    files : sequence of str, length m
        The class's files.
    class_name : str
    seed : int

    Returns
    -------
    numpy.ndarray, shape (m,)
        Indices into ``files``; the first ``n_per_class`` readable ones are kept.
    """
    # the class name enters the seed, so each class's draw is independent of the other classes
    name_entropy = int.from_bytes(hashlib.sha256(class_name.encode()).digest()[:8], "little")
    rng = np.random.default_rng([check_int(seed, "seed", minimum=0), name_entropy])
    by_path = np.argsort(np.asarray(files, dtype=str), kind="stable")
    return by_path[rng.permutation(len(files))]


# ------------------------------------------------------------------------------------------------
# decoding
# ------------------------------------------------------------------------------------------------


def _to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from any PIL mode (see the module's colour rule)."""
    if image.mode in _SIXTEEN_BIT_MODES:
        # 16-bit greyscale: scale 0..65535 to 0..255 (convert("L") would clip everything above 255)
        array = np.asarray(image, dtype=np.float64) / 257.0
        image = Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8))
    elif image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # the direct P -> RGB conversion warns about byte transparency
    return image.convert("RGB")


def decode_image(path: str | Path, size: int, resize: str = "crop") -> tuple[torch.Tensor, bool]:
    """Read one image as uint8 RGB, resized by the module's rule.

    Parameters
    ----------
    path : str or Path
    size : int
        Side of the square output.
    resize : {"crop", "stretch"}

    Returns
    -------
    image : torch.Tensor, shape (3, size, size)
        uint8.
    upsampled : bool
        Whether the image was smaller than ``size`` and enlarged.

    Raises
    ------
    OSError, ValueError, PIL.Image.DecompressionBombError
        If the file is not a readable image (:func:`load_image_folder` skips such files).
    """
    import torchvision.transforms.v2.functional as TF

    with Image.open(path) as opened:
        image = _to_rgb(ImageOps.exif_transpose(opened))  # decoding happens here, inside the with
    width, height = image.size
    if resize == "crop":
        upsampled = min(width, height) < size
        image = TF.center_crop(TF.resize(image, size, antialias=True), [size, size])
    else:
        upsampled = width < size or height < size
        image = TF.resize(image, [size, size], antialias=True)
    return TF.pil_to_tensor(image), upsampled


class _DecodeDataset(torch.utils.data.Dataset):
    """Decodes files by position; a failure is returned as data so that one bad file stops no worker."""

    def __init__(self, paths: Sequence[Path], size: int, resize: str) -> None:
        self.paths, self.size, self.resize = list(paths), size, resize

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, bool, str]:
        try:
            image, upsampled = decode_image(self.paths[index], self.size, self.resize)
        except Exception as error:  # PIL raises OSError, ValueError, SyntaxError, DecompressionBombError...
            return index, None, False, f"{type(error).__name__}: {error}"
        return index, image, upsampled, ""


def _collate(batch: list[tuple[int, torch.Tensor | None, bool, str]]) -> tuple[list, torch.Tensor | None, list]:
    """Stack a batch's decoded images in the worker: one shared-memory tensor per batch, not per image.

    Returns ``(position, upsampled)`` of the k decoded images, their stack ``(k, 3, size, size)``
    (None if k = 0), and ``(position, error)`` of the files that failed.
    """
    decoded = [item for item in batch if item[1] is not None]
    failed = [(index, error) for index, image, _, error in batch if image is None]
    stack = torch.stack([image for _, image, _, _ in decoded]) if decoded else None
    return [(index, upsampled) for index, _, upsampled, _ in decoded], stack, failed


def _decode_files(
    paths: Sequence[Path], size: int, resize: str, num_workers: int, batch_size: int, bar: Any
) -> list[tuple[int, torch.Tensor | None, bool, str]]:
    """Decode ``paths`` in ``num_workers`` processes; one ``(index, image or None, upsampled, error)`` each."""
    loader = torch.utils.data.DataLoader(
        _DecodeDataset(paths, size, resize), batch_size=batch_size, shuffle=False, num_workers=num_workers,
        collate_fn=_collate,
    )
    results: list[tuple[int, torch.Tensor | None, bool, str]] = []
    for decoded, stack, failed in loader:
        results.extend((index, stack[k], upsampled, "") for k, (index, upsampled) in enumerate(decoded))
        results.extend((index, None, False, error) for index, error in failed)
        bar.update(len(decoded) + len(failed))
    return results


def _decode_selection(
    scan: FolderScan, n_per_class: int | None, seed: int, size: int, resize: str,
    num_workers: int, batch_size: int, progress: bool,
) -> dict[str, np.ndarray]:
    """Decode the subsample: try files in each class's order until ``n_per_class`` decode (or none is left)."""
    orders, wanted, cursor, kept = {}, {}, {}, {}
    for label, name in enumerate(scan.classes):
        members = np.flatnonzero(scan.labels == label)
        orders[label] = members[subsample_order([scan.files[i] for i in members], name, seed)]
        wanted[label] = len(members) if n_per_class is None else min(n_per_class, len(members))
        cursor[label], kept[label] = 0, []
    images: dict[int, tuple[torch.Tensor, bool]] = {}
    failed: list[tuple[int, str]] = []
    with tqdm(total=0, desc=f"decoding {scan.root.name}", unit="img", disable=not progress) as bar:
        while True:
            # the next untried files of every class still short of its target (all of them the first time)
            batch = []
            for label in orders:
                missing = wanted[label] - len(kept[label])
                take = orders[label][cursor[label] : cursor[label] + missing]
                cursor[label] += len(take)
                batch.extend(int(i) for i in take)
            if not batch:
                break
            bar.total += len(batch)
            bar.refresh()
            decoded = _decode_files([scan.root / scan.files[i] for i in batch], size, resize, num_workers,
                                    batch_size, bar)
            for position, image, upsampled, error in decoded:
                file_index = batch[position]
                if image is None:
                    failed.append((file_index, error))
                else:
                    images[file_index] = (image, upsampled)
                    kept[int(scan.labels[file_index])].append(file_index)
    order = sorted(images)  # by class, then path: the scan's order
    failed.sort()
    return {
        "images": (torch.stack([images[i][0] for i in order]).numpy() if order
                   else np.zeros((0, 3, size, size), np.uint8)),
        "labels": scan.labels[order].astype(np.int64),
        "paths": np.array([scan.files[i] for i in order], dtype=str),
        "upsampled": np.array([images[i][1] for i in order], dtype=bool),
        "skipped_paths": np.array([scan.files[i] for i, _ in failed], dtype=str),
        "skipped_reasons": np.array([reason for _, reason in failed], dtype=str),
    }


_REQUIRED = ("images", "labels", "paths", "upsampled", "skipped_paths", "skipped_reasons")


def _check_options(size: int, n_per_class: int | None, seed: int, resize: str, num_workers: int,
                   batch_size: int) -> None:
    check_int(size, "size", minimum=8)
    if n_per_class is not None:
        check_int(n_per_class, "n_per_class", minimum=1)
    check_int(seed, "seed", minimum=0)
    check_choice(resize, RESIZE_MODES, "resize mode", hint="'crop': shorter side, then centre crop; "
                 "'stretch': direct resize.")
    check_int(num_workers, "num_workers", minimum=0)
    check_int(batch_size, "batch_size", minimum=1)


def load_image_folder(
    root: str | Path,
    *,
    size: int = 224,
    n_per_class: int | None = None,
    seed: int = 0,
    resize: str = "crop",
    num_workers: int = DEFAULT_WORKERS,
    batch_size: int = 32,
    progress: bool = True,
    use_cache: bool = True,
) -> ImageFolderData:
    """Read a folder of class sub-folders as uint8 RGB images with labels, cached by content.

    The rules for files, subsampling, resizing, colour, small and unreadable images are in the
    module's docstring. Memory: the result holds ``n * 3 * size**2`` bytes (ImageNet's 50,000
    validation images at 224 pixels: 7.5 GB), so subsample large folders with ``n_per_class``.

    Parameters
    ----------
    root : str or Path
        ``root/<class>/.../<image>.png|.jpg|.jpeg``.
    size : int
        Side of the square output images (at least 8).
    n_per_class : int or None
        Images kept per class; ``None`` keeps all.
    seed : int
        Seed of the per-class shuffle.
    resize : {"crop", "stretch"}
        ``crop``: shorter side to ``size``, then centre crop; ``stretch``: direct resize.
    num_workers : int
        Decoding processes (``0`` decodes in this process).
    batch_size : int
        Files per worker task.
    progress : bool
        Show a tqdm progress bar.
    use_cache : bool
        Read and write the on-disk cache (``False`` always decodes).

    Returns
    -------
    ImageFolderData
        ``images`` uint8 ``(n, 3, size, size)``, ``labels`` int64 ``(n,)``, ``classes``, ``paths``, ``report``.

    Raises
    ------
    FileNotFoundError, NotADirectoryError
        ``root`` is missing or a file.
    ImageFolderError
        No class sub-folder, no image, a single class, or fewer than two classes with a readable image.
    TypeError, ValueError
        An invalid option.
    """
    _check_options(size, n_per_class, seed, resize, num_workers, batch_size)
    scan = scan_folder(root)

    def compute() -> dict[str, np.ndarray]:
        return _decode_selection(scan, n_per_class, seed, size, resize, num_workers, batch_size, progress)

    # relative paths, sizes and mtimes identify the folder's content without reading every byte
    key = [IMAGE_FOLDER_VERSION, list(scan.classes), list(scan.files), scan.sizes, scan.mtimes,
           size, resize, n_per_class, seed]
    arrays = cache.cached_arrays(CACHE_NAMESPACE, key, compute, required=_REQUIRED) if use_cache else compute()
    return _assemble(scan, arrays, size=size, resize=resize, n_per_class=n_per_class, seed=seed)


def _assemble(scan: FolderScan, arrays: dict[str, np.ndarray], *, size: int, resize: str,
              n_per_class: int | None, seed: int) -> ImageFolderData:
    """The result and its report from the (cached) arrays and the (fresh) scan."""
    labels = arrays["labels"].astype(np.int64)
    counts = np.bincount(labels, minlength=len(scan.classes))
    if np.count_nonzero(counts) < 2:
        raise ImageFolderError(
            f"Fewer than 2 classes of {scan.root} have a readable image ({int(counts.sum())} images read, "
            f"{len(arrays['skipped_paths'])} unreadable, e.g. "
            f"{[f'{p}: {r}' for p, r in zip(arrays['skipped_paths'][:MAX_LISTED], arrays['skipped_reasons'])]}).")
    short = {} if n_per_class is None else {
        name: int(counts[i]) for i, name in enumerate(scan.classes) if counts[i] < n_per_class}
    skipped = tuple(f"{scan.root / p}: {r}" for p, r in
                    zip(arrays["skipped_paths"][:MAX_LISTED], arrays["skipped_reasons"][:MAX_LISTED]))
    report = FolderReport(
        root=str(scan.root), size=size, resize=resize, n_per_class=n_per_class, seed=seed,
        n_found=len(scan.files), n_loaded=len(labels),
        kept_per_class={name: int(counts[i]) for i, name in enumerate(scan.classes)},
        short_classes=short, n_skipped=len(arrays["skipped_paths"]), skipped=skipped,
        n_upsampled=int(arrays["upsampled"].sum()), empty_classes=scan.empty_classes,
        n_ignored=len(scan.ignored), ignored=scan.ignored[:MAX_LISTED],
    )
    return ImageFolderData(images=torch.from_numpy(np.ascontiguousarray(arrays["images"])), labels=labels,
                           classes=scan.classes, paths=tuple(str(p) for p in arrays["paths"]), report=report)
