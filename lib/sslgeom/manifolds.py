"""Semantic and augmentation manifolds of a model, as plain arrays with their metadata.

The images come from the active image source (:func:`sslgeom.sources.active_images`): held-out
Fashion-MNIST test images by default, or the pool of an image folder after
:func:`sslgeom.sources.activate`; "test images" below means that pool.

* **Semantic manifold**: features of held-out test images, stratified by class
  (:func:`semantic_manifold`); :meth:`SemanticManifold.for_class` gives the per-class manifolds.
* **Augmentation manifolds**: for each base image and family, the features of its views along the
  family's strength grid, a curve per base image (:func:`augmentation_manifolds`).
* **Composition manifold**: for each base image, the features of random compositions of all
  families (the SSL training distribution), a cloud per base image (:func:`composition_manifold`).

Base images are test images chosen by :func:`select_test_images` (seeded, stratified by class).
Features are cached per (model, manifold) piece with :func:`sslgeom.embed.embed_lazy`, so a run
that is interrupted keeps its finished pieces; returned features are L2-normalised unless
``normalize=False``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from . import augment
from .embed import ModelLike, embed_lazy, l2_normalize, model_name, resolve_model

__all__ = [
    "SemanticManifold",
    "AugmentationManifold",
    "CompositionManifold",
    "ModelManifolds",
    "select_test_images",
    "semantic_manifold",
    "augmentation_manifolds",
    "composition_manifold",
    "model_manifolds",
    "invariance_table",
    "typical_distance",
    "MANIFOLD_VERSION",
]

#: Part of every cache key; bump when the way images or views are built changes.
MANIFOLD_VERSION = "manifolds-v1"


@dataclass(frozen=True)
class SemanticManifold:
    """Features of clean test images.

    Attributes
    ----------
    model : str
        Model name.
    features : numpy.ndarray
        ``float32``, shape ``(n_images, dim)``; unit rows when ``normalized``.
    labels : numpy.ndarray
        ``int64``, shape ``(n_images,)``: classes of the active images.
    image_ids : numpy.ndarray
        ``int64``, shape ``(n_images,)``: indices into the active images (the Fashion-MNIST test split by default).
    normalized : bool
        Whether rows were L2-normalised.
    """

    model: str
    features: np.ndarray
    labels: np.ndarray
    image_ids: np.ndarray
    normalized: bool = True

    @property
    def classes(self) -> np.ndarray:
        """Sorted distinct labels, shape ``(n_classes,)``."""
        return np.unique(self.labels)

    def for_class(self, label: int) -> "SemanticManifold":
        """The within-class manifold of ``label`` (same fields, only that class's rows)."""
        mask = self.labels == int(label)
        if not mask.any():
            raise ValueError(f"class {label!r} has no images here; classes present: {self.classes.tolist()}.")
        return replace(self, features=self.features[mask], labels=self.labels[mask],
                       image_ids=self.image_ids[mask])


@dataclass(frozen=True)
class AugmentationManifold:
    """Features of swept views: one curve per base image for one family.

    Attributes
    ----------
    model, family : str
        Model and augmentation family.
    features : numpy.ndarray
        ``float32``, shape ``(n_base, n_points, dim)``; ``features[:, identity_index]`` are the clean
        images' features.
    strengths : numpy.ndarray
        Shape ``(n_points,)``, the grid (from :func:`sslgeom.augment.grid`).
    base_ids, base_labels : numpy.ndarray
        ``int64``, shape ``(n_base,)``: test-split indices and classes of the base images.
    identity_index : int
        Position of the family's identity strength in ``strengths``.
    seed : int
        Seed of the views (only the noise family is random).
    normalized : bool
        Whether feature rows were L2-normalised.
    """

    model: str
    family: str
    features: np.ndarray
    strengths: np.ndarray
    base_ids: np.ndarray
    base_labels: np.ndarray
    identity_index: int
    seed: int
    normalized: bool = True

    @property
    def clean_features(self) -> np.ndarray:
        """Features of the unaugmented base images, shape ``(n_base, dim)``."""
        return self.features[:, self.identity_index]

    def distances_from_clean(self) -> np.ndarray:
        """Euclidean distance of each view's feature to its clean feature, shape ``(n_base, n_points)``."""
        return np.linalg.norm(self.features - self.clean_features[:, None, :], axis=-1)


@dataclass(frozen=True)
class CompositionManifold:
    """Features of random compositions of families: one cloud of views per base image.

    Attributes
    ----------
    model : str
        Model name.
    features : numpy.ndarray
        ``float32``, shape ``(n_base, n_views, dim)``.
    clean_features : numpy.ndarray
        ``float32``, shape ``(n_base, dim)``: the unaugmented base images.
    view_strengths : numpy.ndarray
        Shape ``(n_base, n_views, n_families)``: strength of each family in each view.
    families : tuple of str
        Families composed, in the order of the last axis of ``view_strengths``.
    base_ids, base_labels : numpy.ndarray
        ``int64``, shape ``(n_base,)``.
    seed : int
        Seed of the random draws.
    normalized : bool
        Whether feature rows were L2-normalised.
    """

    model: str
    features: np.ndarray
    clean_features: np.ndarray
    view_strengths: np.ndarray
    families: tuple[str, ...]
    base_ids: np.ndarray
    base_labels: np.ndarray
    seed: int
    normalized: bool = True


@dataclass(frozen=True)
class ModelManifolds:
    """All manifolds of one model (what :func:`model_manifolds` yields).

    Attributes
    ----------
    model : str
        Model name.
    info : dict
        The model's metadata (``LoadedModel.info``: method, paradigm, backbone, sha256, ...).
    semantic : SemanticManifold
        Clean held-out images.
    augmentation : dict of str to AugmentationManifold
        One swept manifold per family.
    composition : CompositionManifold or None
        Random compositions, None when not requested.
    """

    model: str
    info: dict
    semantic: SemanticManifold
    augmentation: dict[str, AugmentationManifold]
    composition: CompositionManifold | None = None


def _test_split() -> tuple[np.ndarray, np.ndarray]:
    """The active source's images ``(n, C, H, W)`` uint8 and labels ``(n,)`` (read-only)."""
    from .sources import active_images

    pool = active_images()
    return pool.images, pool.labels


def _dataset() -> str:
    """The active source's key in cache keys (``"fashion-mnist-test"`` for the default data)."""
    from .sources import active_images

    return active_images().key


def select_test_images(n_images: int, seed: int = 0) -> np.ndarray:
    """Held-out test images chosen by seed, stratified by class.

    Classes are visited round robin (0, 1, ..., 9, 0, 1, ...), each contributing its next image
    from a seeded shuffle, so any prefix of the result is as balanced as possible and the first
    ``n`` ids for ``n_images >= n`` are the same ids.

    Parameters
    ----------
    n_images : int
        How many ids, at most the number of active images (10,000 Fashion-MNIST test images by default).
    seed : int
        Seed of the per-class shuffles.

    Returns
    -------
    numpy.ndarray
        ``int64``, shape ``(n_images,)``: indices into the active images (the Fashion-MNIST test split by default).
    """
    _, labels = _test_split()
    if isinstance(n_images, bool) or int(n_images) != n_images or not 1 <= n_images <= labels.size:
        raise ValueError(f"n_images must be an integer in [1, {labels.size}], got {n_images!r}.")
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    longest = max(len(ids) for ids in per_class)
    # Column-major read of a (n_classes, longest) table, skipping the padding of short classes.
    table = np.full((len(per_class), longest), -1, dtype=np.int64)
    for row, ids in enumerate(per_class):
        table[row, : len(ids)] = ids
    order = table.T.reshape(-1)
    return order[order >= 0][: int(n_images)]


def _image_shape() -> tuple[int, int, int]:
    """``(channels, height, width)`` of the active images ((1, 28, 28) for the default data)."""
    images, _ = _test_split()
    return tuple(int(v) for v in images.shape[1:])


def _images(ids: np.ndarray) -> torch.Tensor:
    images, _ = _test_split()
    return torch.from_numpy(np.ascontiguousarray(images[ids]))


def _labels(ids: np.ndarray) -> np.ndarray:
    return np.asarray(_test_split()[1][ids], dtype=np.int64)


def _finish(features: np.ndarray, normalize: bool) -> np.ndarray:
    return l2_normalize(features) if normalize else features.astype(np.float32, copy=False)


def semantic_manifold(
    model: str | ModelLike,
    *,
    n_per_class: int = 500,
    seed: int = 0,
    device: str | torch.device = "cpu",
    normalize: bool = True,
    batch_size: int = 512,
    progress: bool = True,
) -> SemanticManifold:
    """Features of ``10 * n_per_class`` held-out test images, stratified by class.

    Parameters
    ----------
    model : str or model object
        Zoo name or loaded model.
    n_per_class : int
        Images per class (at most 1,000, the test split's class size).
    seed : int
        Seed of the image choice (:func:`select_test_images`).
    device : str or torch.device
        Device of the forward passes.
    normalize : bool
        L2-normalise feature rows (raw features are what is cached).
    batch_size : int
        Images per forward pass.
    progress : bool
        Show progress bars.

    Returns
    -------
    SemanticManifold
        ``features`` ``(10 * n_per_class, dim)``, ``labels`` and ``image_ids`` ``(10 * n_per_class,)``.
    """
    if isinstance(n_per_class, bool) or int(n_per_class) != n_per_class or not 1 <= n_per_class <= 1000:
        raise ValueError(f"n_per_class must be an integer in [1, 1000], got {n_per_class!r}.")
    loaded = resolve_model(model, device)
    n_classes = len(np.unique(_test_split()[1]))
    ids = select_test_images(n_classes * int(n_per_class), seed)
    features = embed_lazy(
        loaded, [MANIFOLD_VERSION, "semantic", _dataset(), ids], lambda: _images(ids),
        image_shape=_image_shape(), batch_size=batch_size, device=device, progress=progress,
    )
    return SemanticManifold(model_name(loaded), _finish(features, normalize), _labels(ids), ids,
                            normalized=normalize)


def _check_families(families: Iterable[str] | None) -> tuple[str, ...]:
    """The families to sweep: None gives every family the active images allow (colour ones for RGB)."""
    from .sources import active_images

    allowed = active_images().families
    if families is None:
        return allowed
    names = tuple(augment.family_names(families))
    colour = [f for f in names if f not in allowed]
    if colour:
        raise ValueError(
            f"families {colour} need colour images, but the active images are greyscale; use families "
            f"from {allowed}, or an image folder of colour images (sslgeom.sources.activate)."
        )
    if not names:
        raise ValueError("families is empty: name at least one augmentation family.")
    return names


def augmentation_manifolds(
    model: str | ModelLike,
    *,
    families: Sequence[str] | None = None,
    n_base: int = 100,
    n_points: int | dict[str, int] | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    normalize: bool = True,
    batch_size: int = 512,
    progress: bool = True,
) -> dict[str, AugmentationManifold]:
    """For each family, the features of every base image swept along the family's grid.

    Parameters
    ----------
    model : str or model object
        Zoo name or loaded model.
    families : sequence of str, optional
        Families to sweep; default every family the active images allow (the greyscale ones,
        :data:`sslgeom.augment.GRAYSCALE_FAMILIES`, plus hue and saturation for colour images).
    n_base : int
        Base images (test split, stratified by class, chosen by ``seed``).
    n_points : int or dict, optional
        Grid size for every family, or per family; None uses each family's default.
    seed : int
        Seed of the base-image choice and of the noise family's noise field.
    device, normalize, batch_size, progress
        As in :func:`semantic_manifold`.

    Returns
    -------
    dict of str to AugmentationManifold
        One entry per family, features ``(n_base, n_points, dim)``.
    """
    names = _check_families(families)
    loaded = resolve_model(model, device)
    swept = _family_manifolds(loaded, names, n_base, n_points, seed, device, normalize, batch_size)
    return dict(tqdm(swept, total=len(names), desc=f"augmentation manifolds {model_name(loaded)}",
                     disable=not progress, leave=False))


def _family_manifolds(
    loaded: ModelLike,
    families: tuple[str, ...],
    n_base: int,
    n_points: int | dict[str, int] | None,
    seed: int,
    device: str | torch.device,
    normalize: bool,
    batch_size: int,
) -> Iterator[tuple[str, AugmentationManifold]]:
    """``(family, manifold)`` for each family in turn, on the base images that ``n_base`` and ``seed`` choose."""
    base_ids = select_test_images(n_base, seed)
    base_labels = _labels(base_ids)
    for family in families:
        points = n_points.get(family) if isinstance(n_points, dict) else n_points
        yield family, _one_family(loaded, family, augment.grid(family, points), base_ids, base_labels, seed,
                                  device, normalize, batch_size)


def _one_family(
    loaded: ModelLike,
    family: str,
    strengths: np.ndarray,
    base_ids: np.ndarray,
    base_labels: np.ndarray,
    seed: int,
    device: str | torch.device,
    normalize: bool,
    batch_size: int,
) -> AugmentationManifold:
    def make_images() -> torch.Tensor:
        views = augment.sweep(_images(base_ids), family, strengths, seed=seed)
        return views.reshape(-1, *views.shape[2:])

    key = [MANIFOLD_VERSION, "augmentation", _dataset(), family, strengths, base_ids, int(seed)]
    flat = embed_lazy(loaded, key, make_images, image_shape=_image_shape(), batch_size=batch_size, device=device,
                      progress=False)
    features = _finish(flat, normalize).reshape(len(base_ids), len(strengths), -1)
    identity_index = int(np.flatnonzero(strengths == augment.FAMILIES[family].identity)[0])
    return AugmentationManifold(model_name(loaded), family, features, strengths, base_ids,
                                base_labels, identity_index, int(seed), normalized=normalize)


def composition_manifold(
    model: str | ModelLike,
    *,
    n_base: int = 100,
    n_views: int = 32,
    families: Sequence[str] | None = None,
    p_apply: float = 0.8,
    seed: int = 0,
    device: str | torch.device = "cpu",
    normalize: bool = True,
    batch_size: int = 512,
    progress: bool = True,
) -> CompositionManifold:
    """Features of random compositions of families: a cloud of ``n_views`` views per base image.

    Parameters
    ----------
    model : str or model object
        Zoo name or loaded model.
    n_base : int
        Base images (same choice as :func:`augmentation_manifolds` for the same seed).
    n_views : int
        Random views per base image.
    families : sequence of str, optional
        Families composed (default every family the active images allow).
    p_apply : float
        Probability of each family in a view (see :func:`sslgeom.augment.random_views`).
    seed : int
        Seed of the base-image choice and of the views.
    device, normalize, batch_size, progress
        As in :func:`semantic_manifold`.

    Returns
    -------
    CompositionManifold
        ``features`` ``(n_base, n_views, dim)``, ``clean_features`` ``(n_base, dim)``.
    """
    names = _check_families(families)
    loaded = resolve_model(model, device)
    base_ids = select_test_images(n_base, seed)
    # The drawn strengths are cheap to recompute (no pixels), so a cache hit still reports them.
    view_strengths = augment.sample_strengths(len(base_ids), n_views, seed=seed, families=names,
                                              p_apply=p_apply)
    key = [MANIFOLD_VERSION, "composition", _dataset(), base_ids, int(n_views), names,
           float(p_apply), int(seed)]

    def make_images() -> torch.Tensor:
        base = _images(base_ids)
        views, _ = augment.random_views(base, n_views, seed=seed, families=names, p_apply=p_apply)
        return torch.cat([base, views.reshape(-1, *views.shape[2:])])

    flat = embed_lazy(loaded, key, make_images, image_shape=_image_shape(), batch_size=batch_size, device=device,
                      progress=progress)
    flat = _finish(flat, normalize)
    clean, views = flat[: len(base_ids)], flat[len(base_ids):]
    return CompositionManifold(
        model_name(loaded), views.reshape(len(base_ids), int(n_views), -1), clean, view_strengths,
        tuple(s.name for s in augment.composition_order(names)), base_ids, _labels(base_ids),
        int(seed), normalized=normalize,
    )


def model_manifolds(
    models: Sequence[str | ModelLike],
    *,
    n_per_class: int = 500,
    families: Sequence[str] | None = None,
    n_base: int = 100,
    n_points: int | dict[str, int] | None = None,
    n_views: int = 32,
    seed: int = 0,
    device: str | torch.device = "cpu",
    normalize: bool = True,
    batch_size: int = 512,
    composition: bool = True,
) -> Iterator[ModelManifolds]:
    """Semantic, augmentation and (optionally) composition manifolds of each model, with one bar.

    Parameters
    ----------
    models : sequence of str or model objects
        Zoo names (e.g. ``sslgeom.zoo.names()``) or loaded models.
    n_per_class : int
        Semantic manifold size per class.
    families, n_base, n_points
        As in :func:`augmentation_manifolds`.
    n_views : int
        Views per base image of the composition manifold.
    seed, device, normalize, batch_size
        As in :func:`semantic_manifold`.
    composition : bool
        Also build the composition manifold.

    Yields
    ------
    ModelManifolds
        One per model, in the order of ``models``. Each model is loaded, embedded and released
        before the next, so memory stays bounded.
    """
    names = _check_families(families)
    models = list(models)
    if not models:
        raise ValueError("models is empty: pass zoo names, e.g. sslgeom.zoo.names().")
    pieces_per_model = 1 + len(names) + int(composition)
    with tqdm(total=len(models) * pieces_per_model, desc="manifolds", unit="piece") as bar:
        for model in models:
            loaded = resolve_model(model, device)
            name = model_name(loaded)
            bar.set_postfix_str(name)
            semantic = semantic_manifold(loaded, n_per_class=n_per_class, seed=seed, device=device,
                                         normalize=normalize, batch_size=batch_size, progress=False)
            bar.update(1)
            augmentation = {}
            for family, manifold in _family_manifolds(loaded, names, n_base, n_points, seed, device, normalize,
                                                      batch_size):
                augmentation[family] = manifold
                bar.update(1)
            cloud = None
            if composition:
                cloud = composition_manifold(loaded, n_base=n_base, n_views=n_views, families=names,
                                             seed=seed, device=device, normalize=normalize,
                                             batch_size=batch_size, progress=False)
                bar.update(1)
            yield ModelManifolds(name, dict(loaded.info), semantic, augmentation, cloud)


def typical_distance(features: np.ndarray) -> float:
    """Mean Euclidean distance between distinct rows: the scale of "a different image".

    Parameters
    ----------
    features : numpy.ndarray
        Shape ``(n_points, dim)``, at least two rows.

    Returns
    -------
    float
        ``sum_{i != j} ||x_i - x_j|| / (n (n - 1))``.
    """
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"need features of shape (n_points >= 2, dim), got {features.shape}.")
    # ||x - y||^2 = |x|^2 + |y|^2 - 2 x.y, clipped at 0 against round-off.
    squared = np.sum(features**2, axis=1)
    gram = features @ features.T
    distances = np.sqrt(np.clip(squared[:, None] + squared[None, :] - 2.0 * gram, 0.0, None))
    n = features.shape[0]
    return float((distances.sum() - np.trace(distances)) / (n * (n - 1)))


def invariance_table(manifolds: Iterable[AugmentationManifold], info: dict | None = None) -> pd.DataFrame:
    """Distance from the clean feature versus strength, averaged over base images.

    ``relative_distance`` divides the mean distance by :func:`typical_distance` of the clean base
    features, so that 1 means "the augmentation moves an image as far as swapping it for another
    base image", comparable across models whatever their feature scale.

    Parameters
    ----------
    manifolds : iterable of AugmentationManifold
        E.g. ``augmentation_manifolds(...).values()`` for one or several models.
    info : dict, optional
        Extra columns to add to every row (e.g. ``{"paradigm": "contrastive"}``).

    Returns
    -------
    pandas.DataFrame
        One row per (model, family, strength) with columns ``model``, ``family``, ``strength``,
        ``relative_strength`` (0 at the identity, 1 at the grid end farthest from it, signed),
        ``mean_distance``, ``std_distance``, ``relative_distance``, ``n_base``, plus the ``info``
        columns.
    """
    rows = []
    for manifold in manifolds:
        distances = manifold.distances_from_clean()
        scale = typical_distance(manifold.clean_features)
        identity = augment.FAMILIES[manifold.family].identity
        span = np.max(np.abs(manifold.strengths - identity))
        for j, strength in enumerate(manifold.strengths):
            rows.append({
                "model": manifold.model,
                "family": manifold.family,
                "strength": float(strength),
                "relative_strength": float((strength - identity) / span),
                "mean_distance": float(distances[:, j].mean()),
                "std_distance": float(distances[:, j].std()),
                "relative_distance": float(distances[:, j].mean() / scale),
                "n_base": int(distances.shape[0]),
                **(info or {}),
            })
    if not rows:
        raise ValueError("no augmentation manifolds given: pass augmentation_manifolds(...).values().")
    return pd.DataFrame(rows)
