"""Features of images through any zoo model, batched and cached on disk by content.

A *model* here is either a zoo name (loaded with :func:`sslgeom.zoo.load`) or any object with
``.backbone`` (``torch.nn.Module``: float ``(batch, C, H, W)`` -> ``(batch, dim)``), ``.preprocess``
(uint8 ``(batch, C, H, W)`` tensor -> float input of the backbone) and ``.info`` (a dict, ideally with
the checkpoint's ``"sha256"``), which is what :func:`sslgeom.zoo.load` returns.

Cache keys are built from content, never from names: the checkpoint hash (or, failing that, a hash
of the weights), a fingerprint of the preprocessing (its output on a fixed probe batch), and either
the caller's description of the images (``cache_key_parts``: ids, family, grid, seed) or a hash of
the image bytes. Entries are written atomically (:mod:`sslgeom.cache`), so an interrupted run keeps
every finished entry and recomputes only the missing ones.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any, Callable, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from . import cache
from .threads import torch_threads

__all__ = ["ModelLike", "resolve_model", "model_name", "model_fingerprint", "embed_images",
           "embed", "embed_lazy", "l2_normalize", "EMBED_VERSION"]

#: Bumped when the way features are computed changes, so old cache entries are not reused.
EMBED_VERSION = "embed-v1"


class ModelLike(Protocol):
    """What :func:`embed` needs from a model (``sslgeom.zoo.LoadedModel`` satisfies it)."""

    backbone: torch.nn.Module
    preprocess: Any
    info: dict


def resolve_model(model: str | ModelLike, device: str | torch.device = "cpu") -> ModelLike:
    """Return a loaded model: load a zoo name, or check and pass through a model object.

    Parameters
    ----------
    model : str or model object
        Zoo name (see ``sslgeom.zoo.names()``) or an object with ``.backbone``, ``.preprocess``
        and ``.info``.
    device : str or torch.device
        Where a zoo name is loaded.
    """
    if isinstance(model, str):
        from . import zoo  # imported lazily: the zoo reads checkpoints from disk

        return zoo.load(model, device=device)
    missing = [attr for attr in ("backbone", "preprocess", "info") if not hasattr(model, attr)]
    if missing:
        raise TypeError(
            f"model must be a zoo name or an object with .backbone, .preprocess and .info "
            f"(as returned by sslgeom.zoo.load); {type(model).__name__} lacks {', '.join(missing)}."
        )
    if not isinstance(model.backbone, torch.nn.Module) or not callable(model.preprocess):
        raise TypeError("model.backbone must be a torch.nn.Module and model.preprocess a callable.")
    return model


def model_name(model: str | ModelLike) -> str:
    """A display name: the zoo name, or ``info["name"]`` of a model object (``"model"`` if absent)."""
    if isinstance(model, str):
        return model
    return str(getattr(model, "info", {}).get("name", "model"))


def _weights_hash(backbone: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for key, tensor in sorted(backbone.state_dict().items()):
        digest.update(key.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _preprocess_fingerprint(model: ModelLike, image_shape: tuple[int, int, int]) -> str:
    # Run the preprocessing on a fixed probe batch: two models whose preprocessing differs in any
    # way that matters (normalisation constants, resizing) get different fingerprints.
    n_values = int(np.prod(image_shape))
    probe = (torch.arange(2 * n_values, dtype=torch.int64) * 37 % 256).to(torch.uint8)
    out = model.preprocess(probe.reshape(2, *image_shape))
    out = torch.as_tensor(out).detach().cpu().to(torch.float32).contiguous()
    return hashlib.sha256(str(tuple(out.shape)).encode() + out.numpy().tobytes()).hexdigest()


def model_fingerprint(model: ModelLike, image_shape: tuple[int, int, int] = (1, 28, 28)) -> str:
    """Content hash of a model: checkpoint (``info["sha256"]`` or the weights) and preprocessing.

    Parameters
    ----------
    model : model object
        As returned by :func:`resolve_model`.
    image_shape : tuple of int
        ``(channels, height, width)`` of the images the preprocessing fingerprint is taken on.
    """
    weights = model.info.get("sha256") or _weights_hash(model.backbone)
    return cache.content_key(EMBED_VERSION, weights, _preprocess_fingerprint(model, image_shape))


def _as_uint8_tensor(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor or numpy array, got {type(images).__name__}.")
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(
            "images must be uint8 with shape (n_images, channels, height, width); got dtype "
            f"{images.dtype} and shape {tuple(images.shape)}. Add a channel axis with images[:, None] "
            "for (n_images, height, width) arrays."
        )
    if images.shape[0] == 0:
        raise ValueError("images is empty: pass at least one image.")
    return images


def embed_images(
    model: str | ModelLike,
    images: torch.Tensor | np.ndarray,
    *,
    batch_size: int = 512,
    device: str | torch.device = "cpu",
    progress: bool = True,
    num_threads: int | None = None,
    channels_last: bool = True,
) -> np.ndarray:
    """Backbone features of images, computed in batches without caching.

    Parameters
    ----------
    model : str or model object
        Zoo name or loaded model (see :func:`resolve_model`). A model object's backbone is moved
        to ``device`` in place.
    images : torch.Tensor or numpy.ndarray
        ``uint8``, shape ``(n_images, channels, height, width)``.
    batch_size : int
        Images per forward pass.
    device : str or torch.device
        Device of the forward passes.
    progress : bool
        Show a tqdm bar over batches.
    num_threads : int, optional
        Torch CPU threads during the call (restored afterwards); None keeps the current setting.
    channels_last : bool
        Run convolutions in channels-last memory layout (the backbone is converted in place):
        1.3-1.5x faster on CPU for the default zoo, same features up to float round-off (~1e-7).

    Returns
    -------
    numpy.ndarray
        ``float32``, shape ``(n_images, dim)``, raw (not normalised) features.

    Raises
    ------
    ValueError
        If the model returns NaN or infinite features (the message names the model and the images).
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    loaded = resolve_model(model, device)
    images = _as_uint8_tensor(images)
    backbone = loaded.backbone.to(device).eval()
    layout = torch.channels_last if channels_last else torch.contiguous_format
    backbone = backbone.to(memory_format=layout)
    chunks = []
    with torch_threads(num_threads), torch.inference_mode():
        starts = range(0, images.shape[0], int(batch_size))
        for start in tqdm(starts, desc=f"embed {model_name(loaded)}", disable=not progress,
                          leave=False, unit="batch"):
            batch = loaded.preprocess(images[start : start + int(batch_size)])
            batch = torch.as_tensor(batch).to(device)
            if batch.ndim == 4:
                batch = batch.contiguous(memory_format=layout)
            out = backbone(batch)
            if out.ndim != 2 or out.shape[0] != batch.shape[0]:
                raise ValueError(
                    f"backbone of {model_name(loaded)!r} returned shape {tuple(out.shape)}; "
                    "expected (batch, dim) pooled features."
                )
            chunks.append(out.detach().to("cpu", torch.float32).numpy())
    features = np.concatenate(chunks, axis=0)
    _check_finite(features, model_name(loaded), images)
    return features


def _check_finite(features: np.ndarray, name: str, images: torch.Tensor) -> None:
    """Refuse NaN or infinite features before anything caches or analyses them."""
    bad_rows = np.flatnonzero(~np.isfinite(features).all(axis=1))
    if bad_rows.size:
        raise ValueError(
            f"Model {name!r} returned NaN or infinite features for {bad_rows.size} of {len(features)} images "
            f"(images of shape {tuple(images.shape[1:])}, first bad rows {bad_rows[:5].tolist()}); nothing was "
            "cached. The checkpoint's weights may be corrupt or overflow in half precision: reload or retrain it."
        )


def l2_normalize(features: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Scale each row (the last axis) to unit Euclidean norm.

    Parameters
    ----------
    features : numpy.ndarray
        Shape ``(..., dim)``.
    eps : float
        Rows with a smaller norm raise a ValueError (they have no direction).

    Returns
    -------
    numpy.ndarray
        ``float32``, same shape, rows of norm 1.
    """
    features = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(features, axis=-1, keepdims=True)
    if np.any(~np.isfinite(norms)) or np.any(norms < eps):
        bad = int(np.sum(~np.isfinite(norms) | (norms < eps)))
        raise ValueError(
            f"{bad} feature vector(s) are zero or not finite and cannot be L2-normalised; "
            "check the model's outputs (e.g. a dead ReLU layer) or use normalize=False."
        )
    return features / norms


def embed(model: str | ModelLike, images: torch.Tensor | np.ndarray, *, batch_size: int = 512,
          device: str | torch.device = "cpu", cache_key_parts: Any = None, use_cache: bool = True,
          normalize: bool = False, progress: bool = True, num_threads: int | None = None) -> np.ndarray:
    """Features of images through a model, read from the cache when computed before.

    Parameters
    ----------
    model, images, batch_size, device, progress, num_threads
        As in :func:`embed_images`, which computes the features on a cache miss.
    cache_key_parts : optional
        Plain values that fully determine ``images`` (e.g. image ids, family, grid, seed). When
        None, the images are identified by a hash of their bytes.
    use_cache : bool
        False computes without reading or writing the cache.
    normalize : bool
        Return L2-normalised rows (the cache always stores raw features).

    Returns
    -------
    numpy.ndarray
        ``float32``, shape ``(n_images, dim)``.
    """
    loaded = resolve_model(model, device)
    images = _as_uint8_tensor(images)

    def compute() -> dict[str, np.ndarray]:
        return {"features": embed_images(loaded, images, batch_size=batch_size, device=device,
                                         progress=progress, num_threads=num_threads)}

    if use_cache:
        described = cache_key_parts if cache_key_parts is not None else {"image_bytes": images}
        key = ["images", model_fingerprint(loaded, tuple(images.shape[1:])), described,
               list(images.shape)]
        features = cache.cached_arrays("features", key, compute, required=("features",))["features"]
    else:
        features = compute()["features"]
    if features.shape[0] != images.shape[0]:
        raise ValueError(
            f"cached features have {features.shape[0]} rows for {images.shape[0]} images: the "
            "cache_key_parts do not identify the images; include the image ids in them."
        )
    return l2_normalize(features) if normalize else features.astype(np.float32, copy=False)


#: Images built by :func:`embed_lazy` in this process, by the description that determines them:
#: every model of a chapter embeds the same augmented views, which cost about as much to build
#: as to embed. Least recently used entries go first beyond :data:`_IMAGE_MEMO_BYTES`.
_IMAGE_MEMO: OrderedDict[str, torch.Tensor] = OrderedDict()
_IMAGE_MEMO_BYTES = 256 * 2**20
_IMAGE_MEMO_LOCK = threading.Lock()  # models are embedded in worker threads (sslgeom.threads)


def _described_images(
    cache_key_parts: Any, image_shape: tuple[int, ...], make_images: Callable[[], torch.Tensor | np.ndarray]
) -> torch.Tensor:
    """``make_images()`` as ``uint8``, built once per description and process (see :data:`_IMAGE_MEMO`)."""
    key = cache.content_key(["images", cache_key_parts, list(image_shape)])
    with _IMAGE_MEMO_LOCK:
        if key in _IMAGE_MEMO:
            _IMAGE_MEMO.move_to_end(key)
            return _IMAGE_MEMO[key]
    images = _as_uint8_tensor(make_images())  # outside the lock: two workers may build at once
    if tuple(images.shape[1:]) != image_shape:
        raise ValueError(
            f"make_images returned images of shape {tuple(images.shape[1:])}, but image_shape "
            f"is {image_shape}; pass the matching image_shape."
        )
    with _IMAGE_MEMO_LOCK:
        _IMAGE_MEMO[key] = images
        while sum(t.numel() for t in _IMAGE_MEMO.values()) > _IMAGE_MEMO_BYTES and len(_IMAGE_MEMO) > 1:
            _IMAGE_MEMO.popitem(last=False)
    return images


def embed_lazy(
    model: str | ModelLike,
    cache_key_parts: Any,
    make_images: Callable[[], torch.Tensor | np.ndarray],
    *,
    image_shape: tuple[int, int, int] = (1, 28, 28),
    batch_size: int = 512,
    device: str | torch.device = "cpu",
    normalize: bool = False,
    progress: bool = True,
    num_threads: int | None = None,
) -> np.ndarray:
    """Like :func:`embed`, but builds the images only on a cache miss.

    Use it when the images are a deterministic function of a description (ids, family, grid,
    seed) that is cheaper to hash than to rebuild: on a cache hit ``make_images`` is never called.

    Parameters
    ----------
    model : str or model object
        Zoo name or loaded model (see :func:`resolve_model`).
    cache_key_parts
        Plain values that fully determine the images ``make_images`` returns.
    make_images : callable
        Returns ``uint8`` images ``(n_images, *image_shape)``.
    image_shape : tuple of int
        ``(channels, height, width)`` of those images (for the preprocessing fingerprint).
    batch_size, device, normalize, progress, num_threads
        As in :func:`embed`.

    Returns
    -------
    numpy.ndarray
        ``float32``, shape ``(n_images, dim)``.
    """
    loaded = resolve_model(model, device)
    image_shape = tuple(int(v) for v in image_shape)

    def compute() -> dict[str, np.ndarray]:
        images = _described_images(cache_key_parts, image_shape, make_images)
        return {"features": embed_images(loaded, images, batch_size=batch_size, device=device,
                                         progress=progress, num_threads=num_threads)}

    key = ["described", model_fingerprint(loaded, image_shape), cache_key_parts, list(image_shape)]
    features = cache.cached_arrays("features", key, compute, required=("features",))["features"]
    return l2_normalize(features) if normalize else features.astype(np.float32, copy=False)
