"""Registry and loading of published ResNet-50 checkpoints (Ericsson et al., CVPR 2021, and later).

Nothing here is downloaded unless asked: :func:`load_published` looks for the file in
``$SSLGEOM_CHECKPOINTS`` (one folder, or several separated by ``os.pathsep``, ``:`` on Linux) and
then in ``<cache>/published/``; if it is absent the error says where to put it and where it comes
from. :func:`download` fetches a URL into the cache (the only
function that touches the network).

Loading a release means: read the file, take the nested dict (``state_dict``, ``model``, ...),
keep the keys under the release's prefix and strip it, drop projection/classifier heads, then
``load_state_dict(strict=True)`` into a torchvision ResNet-50 whose ``fc`` is removed, so every
backbone returns the 2048-d pooled features. :func:`remap_state_dict` does the middle steps in
one place.

Input size: every published (and user-registry) model resizes its input to its own side, 224
pixels for the ResNet-50 releases. ``$SSLGEOM_INPUT_SIZE`` (see :func:`input_size`) runs them all
at another side instead, e.g. 64 for a CPU-sized run; the embedding cache keys include the
preprocessing, so features at different sizes never mix.

The facts in :data:`REGISTRY` (sources, prefixes, nesting) follow the releases' own README files
and the preparation script of Ericsson et al. (github.com/linusericsson/ssl-transfer). Releases
distributed in other frameworks (BYOL's JAX pickle, SimCLR's TensorFlow checkpoints) must be
converted to a torchvision ``state_dict`` first; their entries say so in ``note``.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from sslgeom.cache import atomic_write, cache_dir, cache_root, file_sha256
from sslgeom.checkpoints import CheckpointError, LoadedModel, freeze, load_state_strict, read_checkpoint, verify_sha256

CHECKPOINTS_ENV = "SSLGEOM_CHECKPOINTS"
#: environment variable overriding the input side of every published and user-registry model
INPUT_SIZE_ENV = "SSLGEOM_INPUT_SIZE"
#: the input side of the published ResNet-50 releases
DEFAULT_INPUT_SIZE = 224
#: smallest input side accepted (a ResNet-50 downsamples by 32)
MIN_INPUT_SIZE = 16
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: head / auxiliary keys dropped after prefix stripping (matched at the start of a key)
_COMMON_HEADS = ("fc.",)


@dataclass(frozen=True, kw_only=True)
class KeyLayout:
    """Where a checkpoint keeps the backbone's weights: the key layout :func:`remap_state_dict` reads.

    :class:`PublishedSpec` and :class:`sslgeom.registry.UserEntry` both extend it, so the two
    registries describe a file's keys in the same terms. The fields are keyword-only: each
    extension keeps its own positional fields.

    Attributes
    ----------
    nesting : tuple[str, ...]
        Keys to descend into (``("state_dict",)``); the first present one is used, ``()`` for a flat file.
    prefix : str
        Prefix of the backbone keys (``module.encoder_q.``), stripped; other keys (key encoders,
        queues) are ignored.
    drop : tuple[str, ...]
        Key prefixes (after stripping) of heads to drop: projection heads, prototypes, classifiers.
    """

    nesting: tuple[str, ...] = ()
    prefix: str = ""
    drop: tuple[str, ...] = ()


@dataclass(frozen=True)
class PublishedSpec(KeyLayout):
    """How to find and read one published checkpoint.

    Attributes
    ----------
    key : str
        Registry name (``zoo.load("published/<key>")``).
    method : str
        Method as named in its paper.
    paradigm : str
        ``contrastive``, ``non-contrastive``, ``clustering`` or ``supervised``.
    url : str
        Where the file is published.
    filename : str
        Expected local file name.
    nesting, prefix, drop
        The file's :class:`KeyLayout` (keyword-only); ``drop`` defaults to torchvision's ``fc.``
        classifier here.
    normalize : bool
        Whether inputs are standardised with ImageNet statistics (SimCLR releases take raw ``[0, 1]``).
    sha256 : str or None
        Full SHA-256 of the file when known.
    sha256_prefix : str or None
        Leading hex digits of the SHA-256 when only those are published (torchvision file names).
    note : str
        Anything a user must know (conversion needed, ...).
    """

    key: str
    method: str
    paradigm: str
    url: str
    filename: str
    drop: tuple[str, ...] = field(default=_COMMON_HEADS, kw_only=True)
    normalize: bool = True
    sha256: str | None = None
    sha256_prefix: str | None = None
    note: str = ""


_FB = "https://dl.fbaipublicfiles.com"


def _swav_repository_release(key: str, label: str, file_name: str) -> PublishedSpec:
    """A clustering model released with the SwAV code (Caron et al. 2020): one layout for all three."""
    return PublishedSpec(
        key, label, "clustering", f"{_FB}/deepcluster/{file_name}", file_name,
        prefix="module.", drop=("fc.", "projection_head.", "prototypes."),
    )


_PYCONTRAST = "https://www.dropbox.com/sh/87d24jqsl6ra7t2"
_PCL = "https://storage.googleapis.com/sfr-pcl-data-research/PCL_checkpoint"

REGISTRY: dict[str, PublishedSpec] = {
    spec.key: spec
    for spec in (
        # --- Ericsson et al. (CVPR 2021) set ---
        PublishedSpec(
            "insdis", "InsDis", "contrastive", f"{_PYCONTRAST}/AACcsSIt1_Njv7GsmsuzZ6Sta/InsDis.pth", "InsDis.pth",
            nesting=("model", "state_dict"), prefix="module.encoder.", drop=("fc.", "head."),
            note="PyContrast release; its training options (an argparse.Namespace) are read without running code.",
        ),
        PublishedSpec(
            "moco-v1", "MoCo-v1", "contrastive", f"{_FB}/moco/moco_checkpoints/moco_v1_200ep/moco_v1_200ep_pretrain.pth.tar",
            "moco_v1_200ep_pretrain.pth.tar", nesting=("state_dict",), prefix="module.encoder_q.",
        ),
        PublishedSpec(
            "pcl-v1", "PCL-v1", "contrastive", f"{_PCL}/PCL_v1_epoch200.pth.tar", "PCL_v1_epoch200.pth.tar",
            nesting=("state_dict",), prefix="module.encoder_q.",
        ),
        PublishedSpec(
            "pirl", "PIRL", "contrastive", f"{_PYCONTRAST}/AADN4jKnvTI0U5oT6hTmQZz8a/PIRL.pth", "PIRL.pth",
            nesting=("model", "state_dict"), prefix="module.encoder.", drop=("fc.", "head.", "head_jig."),
            note="PyContrast release; the jigsaw branch (head_jig) is dropped.",
        ),
        PublishedSpec(
            "pcl-v2", "PCL-v2", "contrastive", f"{_PCL}/PCL_v2_epoch200.pth.tar", "PCL_v2_epoch200.pth.tar",
            nesting=("state_dict",), prefix="module.encoder_q.",
        ),
        PublishedSpec(
            "simclr-v1", "SimCLR-v1", "contrastive", "https://github.com/google-research/simclr", "simclr-v1.pth",
            nesting=("state_dict",), normalize=False,
            note="TensorFlow release: convert the ResNet-50 (1x) checkpoint to a torchvision state_dict "
            "(e.g. with the tonylins/simclr-converter tool). Inputs are unnormalised [0, 1] images.",
        ),
        PublishedSpec(
            "moco-v2", "MoCo-v2", "contrastive", f"{_FB}/moco/moco_checkpoints/moco_v2_800ep/moco_v2_800ep_pretrain.pth.tar",
            "moco_v2_800ep_pretrain.pth.tar", nesting=("state_dict",), prefix="module.encoder_q.",
        ),
        PublishedSpec(
            "simclr-v2", "SimCLR-v2", "contrastive", "https://github.com/google-research/simclr", "simclr-v2.pth",
            normalize=False,
            note="TensorFlow release: convert the r50_1x_sk0 checkpoint to a flat torchvision state_dict "
            "(as in the Ericsson et al. preparation script). Inputs are unnormalised [0, 1] images.",
        ),
        _swav_repository_release("sela-v2", "SeLa-v2", "selav2_400ep_pretrain.pth.tar"),
        PublishedSpec(
            "infomin", "InfoMin", "contrastive", f"{_PYCONTRAST}/AAAzMTynP3Qc8mIE4XWkgILUa/InfoMin_800.pth", "InfoMin_800.pth",
            nesting=("model", "state_dict"), prefix="module.encoder.", drop=("fc.", "head.", "head_jig."),
            note="PyContrast release.",
        ),
        PublishedSpec(
            "byol", "BYOL", "non-contrastive", "https://storage.googleapis.com/deepmind-byol/checkpoints/pretrain_res50x1.pkl",
            "byol.pth", nesting=("state_dict",),
            note="JAX/Haiku pickle: convert pretrain_res50x1.pkl to a torchvision state_dict saved under "
            "'state_dict' (as in the Ericsson et al. preparation script) and name it byol.pth.",
        ),
        _swav_repository_release("deepcluster-v2", "DeepCluster-v2", "deepclusterv2_800ep_pretrain.pth.tar"),
        _swav_repository_release("swav", "SwAV", "swav_800ep_pretrain.pth.tar"),
        PublishedSpec(
            "supervised", "Supervised (torchvision V1)", "supervised", "https://download.pytorch.org/models/resnet50-19c8e357.pth",
            "resnet50-19c8e357.pth", sha256_prefix="19c8e357",
        ),
        # --- later releases with torchvision-format ResNet-50 weights ---
        PublishedSpec(
            "barlowtwins", "Barlow Twins", "non-contrastive",
            f"{_FB}/barlowtwins/ep1000_bs2048_lrw0.2_lrb0.0048_lambd0.0051/resnet50.pth", "barlowtwins_resnet50.pth",
            note="Flat torchvision backbone without fc; saved as resnet50.pth upstream: rename it.",
        ),
        PublishedSpec(
            "vicreg", "VICReg", "non-contrastive", f"{_FB}/vicreg/resnet50.pth", "vicreg_resnet50.pth",
            note="Flat torchvision-named backbone without fc; saved as resnet50.pth upstream: rename it.",
        ),
        PublishedSpec(
            "dino-resnet50", "DINO", "clustering", f"{_FB}/dino/dino_resnet50_pretrain/dino_resnet50_pretrain.pth",
            "dino_resnet50_pretrain.pth",
        ),
        PublishedSpec(
            "moco-v3", "MoCo-v3", "contrastive", f"{_FB}/moco-v3/r-50-1000ep/r-50-1000ep.pth.tar", "r-50-1000ep.pth.tar",
            nesting=("state_dict",), prefix="module.base_encoder.", drop=("fc.",),
            note="Only the base encoder is kept (momentum encoder and predictor are ignored).",
        ),
    )
}


def names() -> list[str]:
    """Registry keys, in registry order."""
    return list(REGISTRY)


def get_spec(key: str) -> PublishedSpec:
    """Registry entry for ``key``; unknown keys raise an error listing the known ones."""
    if key not in REGISTRY:
        raise ValueError(f"Unknown published checkpoint {key!r}; known: {', '.join(REGISTRY)}.")
    return REGISTRY[key]


def search_dirs() -> list[Path]:
    """Where checkpoints are looked for: the folders of ``$SSLGEOM_CHECKPOINTS`` (if set; several are
    separated by ``os.pathsep``), then ``<cache>/published``."""
    listed = os.environ.get(CHECKPOINTS_ENV, "")
    dirs = [Path(part).expanduser() for part in listed.split(os.pathsep) if part]
    dirs.append(cache_root() / "published")  # looking never creates the cache
    return dirs


def input_size(default: int = DEFAULT_INPUT_SIZE) -> int:
    """The input side of external models: ``$SSLGEOM_INPUT_SIZE`` when set, else ``default``.

    Raises
    ------
    ValueError
        The variable is not an integer of at least :data:`MIN_INPUT_SIZE`.
    """
    value = os.environ.get(INPUT_SIZE_ENV, "").strip()
    if not value:
        return default
    if not value.isdigit() or int(value) < MIN_INPUT_SIZE:
        raise ValueError(f"${INPUT_SIZE_ENV}={value!r} is not an input side in pixels: set it to an integer of at "
                         f"least {MIN_INPUT_SIZE} (e.g. 64 for a CPU-sized run), or unset it to use each model's own.")
    return int(value)


def find_checkpoint(key: str) -> Path:
    """Local path of a published checkpoint.

    Raises
    ------
    FileNotFoundError
        With the places searched, the expected file name and the source URL.
    """
    spec = get_spec(key)
    for directory in search_dirs():
        candidate = directory / spec.filename
        if candidate.is_file():
            return candidate
    places = " or ".join(str(d) for d in search_dirs())
    raise FileNotFoundError(
        f"No local checkpoint for published/{key}. Put the file {spec.filename!r} in {places} "
        f"(set ${CHECKPOINTS_ENV} to choose the folder). Source: {spec.url}"
        + (f". Note: {spec.note}" if spec.note else "")
        + f". With network access, sslgeom.published.download({key!r}) fetches it into the cache."
    )


def download(key: str, *, timeout: float = 60.0) -> Path:
    """Fetch a checkpoint from its URL into ``<cache>/published`` (atomic; verified if a hash is known).

    Raises
    ------
    ConnectionError
        If the URL cannot be reached (offline); the message says where to put the file instead.
    """
    spec = get_spec(key)
    target = cache_dir() / "published" / spec.filename
    try:
        with urllib.request.urlopen(spec.url, timeout=timeout) as response, atomic_write(target) as tmp:
            with open(tmp, "wb") as handle:
                while chunk := response.read(1 << 20):
                    handle.write(chunk)
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        raise ConnectionError(
            f"Could not download published/{key} from {spec.url} ({error}). If this machine is offline, "
            f"download the file elsewhere and put it at {target} (or in ${CHECKPOINTS_ENV})."
        ) from error
    try:
        verify_checksum(target, spec)
    except ValueError:
        target.unlink()  # never leave a file that failed verification where loading would find it
        raise
    return target


_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def file_hash(path: str | Path) -> str:
    """SHA-256 of a checkpoint file, memoised by resolved path, size and modification time.

    A published ResNet-50 is about 100 MB, and its hash is part of every cache key that depends on
    it; hashing it once per process keeps cache lookups cheap while a replaced file is rehashed.
    """
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _FILE_HASHES:
        _FILE_HASHES[key] = file_sha256(path)
    return _FILE_HASHES[key]


def verify_checksum(path: Path, spec: PublishedSpec) -> None:
    """Compare the file's SHA-256 with the registry (full hash or published prefix), if known."""
    if not spec.sha256 and not spec.sha256_prefix:
        return
    verify_sha256(path, spec.sha256 or spec.sha256_prefix, prefix=not spec.sha256,
                  fix=f"download it again from {spec.url}")


def remap_state_dict(raw: dict[str, Any], spec: PublishedSpec) -> dict[str, torch.Tensor]:
    """Turn a release's checkpoint object into torchvision ResNet-50 backbone keys.

    Steps: descend into the first present key of ``spec.nesting``; keep only keys starting with
    ``spec.prefix`` and strip it; drop keys starting with any of ``spec.drop``; drop BatchNorm
    ``num_batches_tracked`` counters (absent from some releases, irrelevant for inference).

    Parameters
    ----------
    raw : dict
        The object ``torch.load`` returned.
    spec : PublishedSpec

    Returns
    -------
    dict[str, torch.Tensor]
        Backbone ``state_dict`` without ``fc``.
    """
    if not isinstance(raw, dict):
        what = "a bare tensor" if torch.is_tensor(raw) else f"a {type(raw).__name__}"
        raise ValueError(f"published/{spec.key}: the file holds {what}, not a checkpoint dict of named tensors; "
                         "save the model's state_dict() (a dict of tensors) instead.")
    state = raw
    if spec.nesting:
        present = [key for key in spec.nesting if key in raw]
        if not present:
            raise ValueError(
                f"published/{spec.key}: expected the weights under one of {list(spec.nesting)}, but the file's "
                f"top-level keys are {sorted(raw)[:10]}. Is this the right file?"
            )
        state = raw[present[0]]
    if spec.prefix:
        state = {key[len(spec.prefix) :]: value for key, value in state.items() if key.startswith(spec.prefix)}
        if not state:
            raise ValueError(f"published/{spec.key}: no key starts with the expected prefix {spec.prefix!r}.")
    return {
        key: value
        for key, value in state.items()
        if torch.is_tensor(value) and not key.startswith(spec.drop) and not key.endswith("num_batches_tracked")
    }


def resnet50_backbone() -> nn.Module:
    """torchvision ResNet-50 (random init) with ``fc`` replaced by identity: ``(batch, 3, H, W) -> (batch, 2048)``."""
    from torchvision.models import resnet50

    model = resnet50(weights=None)
    model.fc = nn.Identity()
    return model


def imagenet_preprocess(images: torch.Tensor, *, size: int = 224, normalize: bool = True) -> torch.Tensor:
    """``uint8 (batch, C, H, W)`` -> float ``(batch, 3, size, size)`` for an ImageNet ResNet.

    Grayscale images are repeated to three channels, resized bilinearly (antialiased) and, if
    ``normalize``, standardised with ImageNet statistics (otherwise left in ``[0, 1]``).
    """
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError("Expected a uint8 tensor (batch, channels, height, width); use torch.from_numpy(x)[:, None].")
    if images.shape[1] not in (1, 3):
        raise ValueError(f"Expected 1 or 3 channels, got {images.shape[1]}.")
    x = images.float() / 255.0
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    if normalize:
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        x = (x - mean) / std
    return x


def load_published(
    key: str,
    *,
    path: str | Path | None = None,
    device: str | torch.device = "cpu",
    image_size: int | None = None,
    backbone_factory: Callable[[], nn.Module] | None = None,
):
    """Load a published ResNet-50 backbone.

    Parameters
    ----------
    key : str
        Registry key (see :func:`names`).
    path : str or Path or None
        Explicit file; default: :func:`find_checkpoint`.
    device : str or torch.device
    image_size : int or None
        Side the preprocessing resizes images to; None: :func:`input_size` (224 unless
        ``$SSLGEOM_INPUT_SIZE`` says otherwise).
    backbone_factory : callable or None
        Builds the empty backbone; default :func:`resnet50_backbone`. Tests pass a narrow network
        with the same key names.

    Returns
    -------
    sslgeom.checkpoints.LoadedModel
        2048-d pooled features; ``info`` has the registry fields and the file's SHA-256.

    Raises
    ------
    FileNotFoundError
        No local file (message: where to put it, source URL).
    sslgeom.checkpoints.ChecksumError, sslgeom.checkpoints.CheckpointError
        Hash mismatch; unreadable file; key layout mismatch (missing and unexpected keys listed).
    """
    spec = get_spec(key)
    image_size = input_size() if image_size is None else image_size
    path = Path(path) if path is not None else find_checkpoint(key)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; source of published/{key}: {spec.url}")
    verify_checksum(path, spec)
    # weights_only with the allowlist of checkpoints.SAFE_GLOBALS: no pickled code ever runs
    raw = read_checkpoint(path)
    try:
        state = remap_state_dict(raw, spec)
    except ValueError as error:
        raise CheckpointError(str(error)) from error
    backbone = (backbone_factory or resnet50_backbone)()
    # fill BatchNorm counters (dropped above) so that the strict load sees only real differences
    state.update({k: v for k, v in backbone.state_dict().items() if k.endswith("num_batches_tracked")})
    load_state_strict(backbone, state, source=f"published/{key} ({path.name})")
    freeze(backbone, device)
    info = {
        "name": f"published/{key}",
        "method": spec.method,
        "paradigm": spec.paradigm,
        "backbone": "resnet50",
        "source_url": spec.url,
        "file": str(path),
        "sha256": file_hash(path),
        "normalize": spec.normalize,
        "image_size": image_size,
    }
    return LoadedModel(
        backbone=backbone, preprocess=partial(imagenet_preprocess, size=image_size, normalize=spec.normalize), info=info
    )
