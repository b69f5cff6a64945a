"""Deterministic augmentation families for sweeping augmentation manifolds.

Each *family* is a function of a batch of images and one scalar *strength* (rotation angle, zoom
scale, shift, ...). With the same strength every image of the batch gets exactly the same
transformation, which is what a sweep needs: the views of one base image along a grid of strengths
trace a curve in feature space (its augmentation manifold). The family's identity strength returns
the input unchanged.

:func:`random_views` samples random compositions of the families instead, independently per image
and per view (the kind of distribution SSL training draws from), which gives a cloud of views per
base image rather than a curve.

Images are ``uint8`` tensors ``(batch, channels, height, width)``. Operations run in ``float32`` on
the ``[0, 1]`` scale (bilinear interpolation, zero fill: Fashion-MNIST's background is black) and
are rounded back to ``uint8``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from collections.abc import Sequence
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torchvision.transforms.v2.functional as TF

from .validation import check_images

__all__ = [
    "FamilySpec",
    "FAMILIES",
    "GRAYSCALE_FAMILIES",
    "COLOR_FAMILIES",
    "family_table",
    "get_family",
    "grid",
    "apply",
    "sweep",
    "random_views",
    "sample_strengths",
    "composition_order",
    "family_names",
]


@dataclass(frozen=True)
class FamilySpec:
    """One augmentation family and its default sweep grid.

    Every family's spec is a value of :data:`FAMILIES`; :func:`get_family` looks one up by name.

    Attributes
    ----------
    name : str
        Family name used by :func:`apply` and :func:`grid`.
    parameter : str
        What the strength means, with its unit.
    identity : float
        Strength that leaves the image unchanged.
    valid_low, valid_high : float
        Strengths outside ``[valid_low, valid_high]`` are rejected.
    grid_low, grid_high : float
        Default sweep range; the sweep runs from ``grid_low`` to ``grid_high``.
    grid_points : int
        Default number of grid points (the identity is always one of them).
    color_only : bool
        True if the family needs 3-channel images (hue, saturation).
    """

    name: str
    parameter: str
    identity: float
    valid_low: float
    valid_high: float
    grid_low: float
    grid_high: float
    grid_points: int
    color_only: bool = False

    @property
    def two_sided(self) -> bool:
        """True when the identity lies strictly inside the default grid range."""
        return min(self.grid_low, self.grid_high) < self.identity < max(self.grid_low, self.grid_high)


# Order matters for random compositions: geometry first, then photometric changes, then blur
# and noise (noise last so that it is not smoothed away by the blur).
_SPECS = (
    FamilySpec("zoom", "relative side of the central crop, resized back to full size", 1.0,
               0.1, 1.0, 1.0, 0.4, 13),
    FamilySpec("rotation", "angle in degrees, counter-clockwise", 0.0, -180.0, 180.0, -90.0, 90.0, 13),
    FamilySpec("shift", "horizontal translation in pixels, positive to the right", 0.0,
               -14.0, 14.0, -8.0, 8.0, 17),
    FamilySpec("brightness", "multiplicative brightness factor", 1.0, 0.0, 3.0, 0.3, 1.7, 15),
    FamilySpec("contrast", "contrast factor (blend with the mean grey level)", 1.0, 0.0, 3.0, 0.3, 1.7, 15),
    FamilySpec("hue", "hue rotation as a fraction of the colour circle", 0.0, -0.5, 0.5, -0.5, 0.5, 11,
               color_only=True),
    FamilySpec("saturation", "saturation factor (0 is greyscale)", 1.0, 0.0, 3.0, 0.0, 2.0, 11,
               color_only=True),
    FamilySpec("blur", "Gaussian blur standard deviation in pixels", 0.0, 0.0, 5.0, 0.0, 2.5, 6),
    FamilySpec("noise", "additive Gaussian noise std on the [0, 1] intensity scale", 0.0,
               0.0, 1.0, 0.0, 0.4, 9),
)

#: All families by name, in composition order.
FAMILIES: dict[str, FamilySpec] = {spec.name: spec for spec in _SPECS}
#: Families valid for single-channel images (Fashion-MNIST).
GRAYSCALE_FAMILIES: tuple[str, ...] = tuple(s.name for s in _SPECS if not s.color_only)
#: Families that need 3-channel images.
COLOR_FAMILIES: tuple[str, ...] = tuple(s.name for s in _SPECS if s.color_only)


def family_table() -> pd.DataFrame:
    """All families with their identity strength, valid range and default grid, one row each."""
    rows = [
        {
            "family": s.name,
            "strength": s.parameter,
            "identity": s.identity,
            "valid range": f"[{s.valid_low:g}, {s.valid_high:g}]",
            "default grid": f"{s.grid_low:g} .. {s.grid_high:g}",
            "points": s.grid_points,
            "colour only": s.color_only,
        }
        for s in _SPECS
    ]
    return pd.DataFrame(rows)


def get_family(family: str) -> FamilySpec:
    """Return the spec of ``family``; raise a ValueError listing the known names otherwise."""
    try:
        return FAMILIES[family]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown augmentation family {family!r}. Known families: {', '.join(FAMILIES)}."
        ) from None


def grid(
    family: str,
    n_points: int | None = None,
    low: float | None = None,
    high: float | None = None,
) -> np.ndarray:
    """Evenly spaced strengths for sweeping ``family``, always including its identity value.

    Parameters
    ----------
    family : str
        Family name (see :data:`FAMILIES`).
    n_points : int, optional
        Number of strengths; defaults to the family's ``grid_points``. When the identity lies
        strictly inside the range (rotation, shift, brightness, ...), ``n_points`` must be odd and
        the range symmetric about the identity, so that the identity is the middle point.
    low, high : float, optional
        Ends of the sweep; default to the family's ``grid_low`` and ``grid_high``.

    Returns
    -------
    numpy.ndarray
        Strengths, shape ``(n_points,)``, float64, running from ``low`` to ``high``.
    """
    spec = get_family(family)
    n_points = spec.grid_points if n_points is None else int(n_points)
    low = spec.grid_low if low is None else float(low)
    high = spec.grid_high if high is None else float(high)
    if n_points < 2:
        raise ValueError(f"n_points must be at least 2 for a sweep of {family!r}, got {n_points}.")
    for end in (low, high):
        _check_strength(spec, end)
    strengths = np.linspace(low, high, n_points)
    if not np.any(np.isclose(strengths, spec.identity, rtol=0.0, atol=1e-12)):
        raise ValueError(
            f"The grid {low:g}..{high:g} with {n_points} points for {family!r} misses the identity "
            f"strength {spec.identity:g}. Use an end point equal to {spec.identity:g}, or a range "
            f"symmetric about it with an odd n_points."
        )
    # Snap the identity exactly (linspace can be off by one ulp).
    strengths[np.isclose(strengths, spec.identity, rtol=0.0, atol=1e-12)] = spec.identity
    return strengths


def _check_strength(spec: FamilySpec, strength: float) -> float:
    strength = float(strength)
    if not math.isfinite(strength) or not spec.valid_low <= strength <= spec.valid_high:
        raise ValueError(
            f"Strength {strength!r} is out of range for family {spec.name!r} ({spec.parameter}): "
            f"use a value in [{spec.valid_low:g}, {spec.valid_high:g}]."
        )
    return strength


def _to_float(images: torch.Tensor) -> torch.Tensor:
    return images.to(torch.float32) / 255.0


def _to_uint8(images: torch.Tensor) -> torch.Tensor:
    return (images * 255.0).round_().clamp_(0.0, 255.0).to(torch.uint8)


_BILINEAR = TF.InterpolationMode.BILINEAR


def _affine(x: torch.Tensor, angle: float = 0.0, shift: float = 0.0, scale: float = 1.0) -> torch.Tensor:
    # fill=None pads with zeros inside grid_sample (Fashion-MNIST's background is black).
    return TF.affine(x, angle=angle, translate=[shift, 0.0], scale=scale, shear=[0.0, 0.0],
                     interpolation=_BILINEAR, fill=None)


def _zoom(x: torch.Tensor, s: float, seed: int) -> torch.Tensor:
    # Cropping the central s-by-s fraction and resizing it to full size is a zoom by 1/s about the
    # centre; an affine zoom keeps the strength continuous (no rounding of crop sides).
    return _affine(x, scale=1.0 / s)


def _rotation(x: torch.Tensor, angle: float, seed: int) -> torch.Tensor:
    # torchvision's affine turns clockwise on screen for a positive angle; we use the
    # mathematical (counter-clockwise) convention, as torchvision's rotate does.
    return _affine(x, angle=-angle)


def _shift(x: torch.Tensor, shift: float, seed: int) -> torch.Tensor:
    return _affine(x, shift=shift)


def _brightness(x: torch.Tensor, factor: float, seed: int) -> torch.Tensor:
    return TF.adjust_brightness(x, factor)


def _contrast(x: torch.Tensor, factor: float, seed: int) -> torch.Tensor:
    return TF.adjust_contrast(x, factor)


def _hue(x: torch.Tensor, factor: float, seed: int) -> torch.Tensor:
    return TF.adjust_hue(x, factor)


def _saturation(x: torch.Tensor, factor: float, seed: int) -> torch.Tensor:
    return TF.adjust_saturation(x, factor)


def _blur(x: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    if sigma == 0.0:
        return x  # the limit of a Gaussian blur as sigma -> 0 is the identity
    # Kernel covers +-3 sigma, capped at the largest odd size the reflect padding allows.
    largest = min(x.shape[-2:])
    largest = largest if largest % 2 == 1 else largest - 1
    size = min(2 * math.ceil(3.0 * sigma) + 1, largest)
    return TF.gaussian_blur(x, kernel_size=[size, size], sigma=[sigma, sigma])


def _noise(x: torch.Tensor, std: float, seed: int) -> torch.Tensor:
    # One fixed noise field per (seed, batch position), scaled by std: a sweep over std then moves
    # each image along a straight ray, and equal seeds give identical views.
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    field = torch.randn(x.shape, generator=generator, dtype=torch.float32).to(x.device)
    return (x + std * field).clamp_(0.0, 1.0)


_OPS: dict[str, Callable[[torch.Tensor, float, int], torch.Tensor]] = {
    "zoom": _zoom,
    "rotation": _rotation,
    "shift": _shift,
    "brightness": _brightness,
    "contrast": _contrast,
    "hue": _hue,
    "saturation": _saturation,
    "blur": _blur,
    "noise": _noise,
}


def apply(images: torch.Tensor, family: str, strength: float, *, seed: int = 0) -> torch.Tensor:
    """Apply one augmentation family at one strength to every image of a batch.

    Parameters
    ----------
    images : torch.Tensor
        ``uint8``, shape ``(batch, channels, height, width)``.
    family : str
        Family name (see :data:`FAMILIES`); ``hue`` and ``saturation`` need 3 channels.
    strength : float
        The family's parameter (see :func:`family_table`), within its valid range.
    seed : int
        Seed of the noise field (only the ``noise`` family is random); same seed, same output.

    Returns
    -------
    torch.Tensor
        ``uint8``, same shape as ``images``. At the identity strength, equal to ``images``.
    """
    spec = get_family(family)
    strength = _check_strength(spec, strength)
    check_images(images)
    if spec.color_only and images.shape[1] != 3:
        raise ValueError(
            f"Family {family!r} needs 3-channel (RGB) images, got {images.shape[1]} channel(s). "
            f"For greyscale images use one of: {', '.join(GRAYSCALE_FAMILIES)}."
        )
    return _to_uint8(_OPS[family](_to_float(images), strength, seed))


def sweep(
    images: torch.Tensor, family: str, strengths: np.ndarray | list[float], *, seed: int = 0
) -> torch.Tensor:
    """Views of every image at every strength of a grid.

    Parameters
    ----------
    images : torch.Tensor
        ``uint8``, shape ``(n_images, channels, height, width)``.
    family : str
        Family name.
    strengths : array-like
        Shape ``(n_points,)``, e.g. from :func:`grid`.
    seed : int
        Noise seed (see :func:`apply`); the same noise field is used at every strength.

    Returns
    -------
    torch.Tensor
        ``uint8``, shape ``(n_images, n_points, channels, height, width)``.
    """
    strengths = np.asarray(strengths, dtype=np.float64).reshape(-1)
    if strengths.size == 0:
        raise ValueError("strengths is empty: pass at least one strength, e.g. grid(family).")
    views = [apply(images, family, s, seed=seed) for s in strengths]
    return torch.stack(views, dim=1)


def random_views(
    images: torch.Tensor,
    n_views: int,
    *,
    seed: int = 0,
    families: tuple[str, ...] | list[str] | None = None,
    p_apply: float = 0.8,
) -> tuple[torch.Tensor, np.ndarray]:
    """Random compositions of families, drawn independently for every image and every view.

    Each view applies the families in :data:`FAMILIES` order; each family is applied with
    probability ``p_apply``, with a strength drawn uniformly over its default grid range, and is
    otherwise left at its identity. Every view is the same as chaining :func:`apply` on that one
    image with its drawn strengths (up to float rounding); the work is batched over all views.

    Parameters
    ----------
    images : torch.Tensor
        ``uint8``, shape ``(n_images, channels, height, width)``.
    n_views : int
        Views per image.
    seed : int
        Seed of all random draws; the same seed gives identical views.
    families : sequence of str, optional
        Families to compose; default: all families valid for the images' channel count.
    p_apply : float
        Probability that a family is applied in a view, in ``[0, 1]``.

    Returns
    -------
    views : torch.Tensor
        ``uint8``, shape ``(n_images, n_views, channels, height, width)``.
    strengths : numpy.ndarray
        Strength used for each family, shape ``(n_images, n_views, n_families)``, families in the
        order of ``composition_order(families)`` (the identity where a family was not applied).
    """
    check_images(images)
    if isinstance(n_views, bool) or int(n_views) != n_views or n_views < 1:
        raise ValueError(f"n_views must be a positive integer, got {n_views!r}.")
    n_views = int(n_views)
    if not 0.0 <= float(p_apply) <= 1.0:
        raise ValueError(f"p_apply is a probability: use a value in [0, 1], got {p_apply!r}.")
    n_channels = images.shape[1]
    if families is None:
        families = GRAYSCALE_FAMILIES if n_channels != 3 else tuple(FAMILIES)
    ordered = composition_order(families)
    for spec in ordered:
        if spec.color_only and n_channels != 3:
            raise ValueError(
                f"Family {spec.name!r} needs 3-channel images, got {n_channels}; drop it from families."
            )
    n_images = images.shape[0]
    strengths = sample_strengths(n_images, n_views, seed=seed, families=[s.name for s in ordered],
                                 p_apply=p_apply)
    # The noise field gets its own stream so that the strengths above depend on nothing else.
    noise_seed = int(np.random.default_rng([int(seed), 1]).integers(0, 2**31 - 1))

    # Flatten (image, view) pairs into one batch and apply each family with per-sample strengths.
    x = _to_float(images).repeat_interleave(n_views, dim=0)
    flat = strengths.reshape(n_images * n_views, len(ordered))
    for f, spec in enumerate(ordered):
        x = _batched(spec.name, x, torch.as_tensor(flat[:, f], dtype=torch.float32), noise_seed)
        # Round after each step, as a chain of uint8 transforms (``apply``) would.
        x = _to_uint8(x).to(torch.float32) / 255.0
    views = _to_uint8(x).reshape(n_images, n_views, *images.shape[1:])
    return views, strengths


def sample_strengths(
    n_images: int,
    n_views: int,
    *,
    seed: int = 0,
    families: tuple[str, ...] | list[str] | None = None,
    p_apply: float = 0.8,
) -> np.ndarray:
    """The per-view family strengths that :func:`random_views` uses, without building any image.

    Parameters
    ----------
    n_images, n_views : int
        Number of base images and of views per image.
    seed : int
        Same meaning as in :func:`random_views`.
    families : sequence of str, optional
        Families composed; default all greyscale families.
    p_apply : float
        Probability that a family is applied in a view.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_images, n_views, n_families)``, families in ``composition_order`` order.
    """
    if not 0.0 <= float(p_apply) <= 1.0:
        raise ValueError(f"p_apply is a probability: use a value in [0, 1], got {p_apply!r}.")
    ordered = composition_order(GRAYSCALE_FAMILIES if families is None else families)
    rng = np.random.default_rng(int(seed))
    shape = (int(n_images), int(n_views), len(ordered))
    applied = rng.random(shape) < p_apply
    uniform = rng.random(shape)
    lows = np.array([s.grid_low for s in ordered])
    highs = np.array([s.grid_high for s in ordered])
    identities = np.array([s.identity for s in ordered])
    return np.where(applied, lows + uniform * (highs - lows), identities)


def family_names(families: Sequence[str]) -> list[str]:
    """Canonical names of a list of families; a bare string is refused (it would be read letter by letter).

    Raises
    ------
    TypeError
        If ``families`` is a string rather than a list of names.
    ValueError
        If a name is not a family (from :func:`get_family`).
    """
    if isinstance(families, str):
        raise TypeError(f"families must be a list of family names such as [{families!r}], not the string "
                        f"{families!r}, which would be read letter by letter.")
    return [get_family(name).name for name in families]


def composition_order(families: tuple[str, ...] | list[str]) -> list[FamilySpec]:
    """Specs of ``families`` in the order random compositions apply them (:data:`FAMILIES` order)."""
    wanted = family_names(families)
    if not wanted:
        raise ValueError("families is empty: name at least one family to compose.")
    return [FAMILIES[name] for name in FAMILIES if name in set(wanted)]


def _batched_affine(
    x: torch.Tensor, angle: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """Per-sample version of :func:`_affine`: one angle, shift and scale per image, shape ``(n,)``."""
    n, _, height, width = x.shape
    radians = torch.deg2rad(angle)
    cos, sin = torch.cos(radians) / scale, torch.sin(radians) / scale
    # Inverse map (output pixel -> input pixel) in centred pixel coordinates,
    # p_in = R(angle) / scale @ (p_out - (shift, 0)), rewritten for grid_sample's [-1, 1] coordinates
    # (align_corners=False). The sign matches torchvision's affine (clockwise on screen).
    row_x = torch.stack([cos, sin * height / width, -2.0 * cos * shift / width], dim=-1)
    row_y = torch.stack([-sin * width / height, cos, 2.0 * sin * shift / height], dim=-1)
    theta = torch.stack([row_x, row_y], dim=1).to(x.device)
    sampling_grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    return torch.nn.functional.grid_sample(
        x, sampling_grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )


def _batched_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    out = x.clone()
    sigma_list = sigma.tolist()
    # Group samples by kernel size so each group is one call with torchvision's own kernel rule.
    largest = min(x.shape[-2:])
    largest = largest if largest % 2 == 1 else largest - 1
    sizes = [min(2 * math.ceil(3.0 * s) + 1, largest) if s > 0 else 0 for s in sigma_list]
    for size in sorted(set(sizes) - {0}):
        index = [i for i, k in enumerate(sizes) if k == size]
        out[index] = _blur_group(x[index], sigma[index], size)
    return out


def _blur_group(x: torch.Tensor, sigma: torch.Tensor, size: int) -> torch.Tensor:
    """Separable Gaussian blur with one sigma per sample and a shared odd kernel size."""
    n, channels, height, width = x.shape
    offsets = torch.arange(size, dtype=torch.float32) - (size - 1) / 2.0
    kernel = torch.exp(-0.5 * (offsets[None, :] / sigma[:, None]) ** 2)
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(channels, dim=0).to(x.device)
    pad = size // 2
    flat = x.reshape(1, n * channels, height, width)
    flat = torch.nn.functional.pad(flat, [pad, pad, pad, pad], mode="reflect")
    flat = torch.nn.functional.conv2d(flat, kernel[:, None, None, :], groups=n * channels)
    flat = torch.nn.functional.conv2d(flat, kernel[:, None, :, None], groups=n * channels)
    return flat.reshape(n, channels, height, width)


def _batched(name: str, x: torch.Tensor, strength: torch.Tensor, noise_seed: int) -> torch.Tensor:
    """Apply family ``name`` with one strength per sample; float images ``(n, C, H, W)`` in [0, 1]."""
    column = strength.to(x.device)[:, None, None, None]
    ones = torch.ones_like(strength)
    zeros = torch.zeros_like(strength)
    if name == "zoom":
        return _batched_affine(x, zeros, zeros, 1.0 / strength)
    if name == "rotation":
        return _batched_affine(x, -strength, zeros, ones)
    if name == "shift":
        return _batched_affine(x, zeros, strength, ones)
    if name == "brightness":
        return (x * column).clamp_(0.0, 1.0)
    if name == "contrast":
        grey = x if x.shape[1] == 1 else TF.rgb_to_grayscale(x)
        mean = grey.mean(dim=(1, 2, 3), keepdim=True)
        return (column * x + (1.0 - column) * mean).clamp_(0.0, 1.0)
    if name == "saturation":
        grey = TF.rgb_to_grayscale(x)
        return (column * x + (1.0 - column) * grey).clamp_(0.0, 1.0)
    if name == "hue":
        # Hue needs an HSV round trip; done per image (colour images only, not on the main path).
        return torch.cat([TF.adjust_hue(x[i : i + 1], float(h)) for i, h in enumerate(strength.tolist())])
    if name == "blur":
        return _batched_blur(x, strength)
    if name == "noise":
        generator = torch.Generator(device="cpu").manual_seed(noise_seed)
        field = torch.randn(x.shape, generator=generator, dtype=torch.float32).to(x.device)
        return (x + column * field).clamp_(0.0, 1.0)
    raise ValueError(f"Unknown augmentation family {name!r}.")  # unreachable: names are checked
