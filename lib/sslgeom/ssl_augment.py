"""Per-sample random views for SSL training, computed on a whole batch at once.

torchvision's v2 transforms draw one parameter set per call, so applying them to a batch tensor
gives every image the same crop. Here every parameter (crop box, flip, brightness, contrast, blur
width) is drawn per image and applied with batched tensor operations: crops and flips as one
``affine_grid``/``grid_sample`` call, blur as a grouped convolution with one kernel per image.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentationPolicy:
    """Distribution of random views.

    Attributes
    ----------
    crop_scale : tuple[float, float]
        Range of the crop area as a fraction of the image area.
    crop_ratio : tuple[float, float]
        Range of the crop aspect ratio (width / height), sampled log-uniformly.
    flip_prob : float
        Probability of a horizontal flip.
    jitter_prob : float
        Probability of applying brightness and contrast jitter.
    brightness, contrast : float
        Jitter strengths: factors are drawn uniformly from ``[1 - s, 1 + s]``.
    blur_prob : float
        Probability of a Gaussian blur.
    blur_sigma : tuple[float, float]
        Range of the blur standard deviation in pixels.
    """

    crop_scale: tuple[float, float] = (0.25, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_prob: float = 0.5
    jitter_prob: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    blur_prob: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 1.5)

    def __post_init__(self) -> None:
        low, high = self.crop_scale
        if not 0 < low <= high <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}.")
        if not 0 < self.crop_ratio[0] <= self.crop_ratio[1]:
            raise ValueError(f"crop_ratio must satisfy 0 < low <= high, got {self.crop_ratio}.")
        for name in ("flip_prob", "jitter_prob", "blur_prob"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} is a probability and must lie in [0, 1], got {value}.")
        for name in ("brightness", "contrast"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise ValueError(f"{name} must lie in [0, 1) so factors stay positive, got {value}.")
        if not 0 < self.blur_sigma[0] <= self.blur_sigma[1]:
            raise ValueError(f"blur_sigma must satisfy 0 < low <= high, got {self.blur_sigma}.")

    def to_dict(self) -> dict:
        """Plain-dict form, for manifests."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}


#: Named policies used by the default zoo. ``strong`` follows the SimCLR recipe adapted to small
#: grayscale images; ``weak`` keeps most of the object and never blurs.
POLICIES: dict[str, AugmentationPolicy] = {
    "strong": AugmentationPolicy(),
    "weak": AugmentationPolicy(
        crop_scale=(0.6, 1.0), jitter_prob=0.5, brightness=0.2, contrast=0.2, blur_prob=0.0
    ),
}


def get_policy(name: str) -> AugmentationPolicy:
    """Look up a named policy; unknown names raise an error listing the known ones."""
    if name not in POLICIES:
        raise ValueError(f"Unknown augmentation policy {name!r}; choose one of {sorted(POLICIES)}.")
    return POLICIES[name]


def _uniform(low: float, high: float, n: int, generator: torch.Generator, device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, device=device)


def _bernoulli(prob: float, n: int, generator: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=device) < prob


def random_crop_flip(
    images: torch.Tensor, policy: AugmentationPolicy, generator: torch.Generator
) -> torch.Tensor:
    """Random resized crop and horizontal flip, drawn independently per image.

    Parameters
    ----------
    images : torch.Tensor
        Floats ``(batch, channels, height, width)``.
    policy : AugmentationPolicy
    generator : torch.Generator
        Source of randomness (on the images' device).

    Returns
    -------
    torch.Tensor
        Same shape as ``images``: each crop is resampled to the full size (bilinear).
    """
    n, device = images.shape[0], images.device
    area = _uniform(*policy.crop_scale, n, generator, device)
    log_ratio = _uniform(math.log(policy.crop_ratio[0]), math.log(policy.crop_ratio[1]), n, generator, device)
    ratio = torch.exp(log_ratio)
    # half-extents of the crop in normalised coordinates, where the full image spans [-1, 1]
    half_width = torch.sqrt(area * ratio).clamp(max=1.0)
    half_height = torch.sqrt(area / ratio).clamp(max=1.0)
    centre_x = (2 * torch.rand(n, generator=generator, device=device) - 1) * (1 - half_width)
    centre_y = (2 * torch.rand(n, generator=generator, device=device) - 1) * (1 - half_height)
    flip = torch.where(_bernoulli(policy.flip_prob, n, generator, device), -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=device, dtype=images.dtype)
    theta[:, 0, 0] = half_width * flip
    theta[:, 0, 2] = centre_x
    theta[:, 1, 1] = half_height
    theta[:, 1, 2] = centre_y
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_jitter(
    images: torch.Tensor, policy: AugmentationPolicy, generator: torch.Generator
) -> torch.Tensor:
    """Brightness then contrast jitter with per-image factors, applied with ``jitter_prob``."""
    n, device = images.shape[0], images.device
    apply = _bernoulli(policy.jitter_prob, n, generator, device)
    brightness = _uniform(1 - policy.brightness, 1 + policy.brightness, n, generator, device)
    contrast = _uniform(1 - policy.contrast, 1 + policy.contrast, n, generator, device)
    brightness = torch.where(apply, brightness, 1.0).view(n, 1, 1, 1)
    contrast = torch.where(apply, contrast, 1.0).view(n, 1, 1, 1)
    out = (images * brightness).clamp(0, 1)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    return ((out - mean) * contrast + mean).clamp(0, 1)


def random_blur(
    images: torch.Tensor, policy: AugmentationPolicy, generator: torch.Generator, kernel_size: int = 5
) -> torch.Tensor:
    """Gaussian blur with a per-image sigma, applied with ``blur_prob`` (identity kernel otherwise)."""
    n, channels, height, width = images.shape
    device = images.device
    apply = _bernoulli(policy.blur_prob, n, generator, device)
    sigma = _uniform(*policy.blur_sigma, n, generator, device)
    offsets = torch.arange(kernel_size, device=device, dtype=images.dtype) - (kernel_size - 1) / 2
    kernels = torch.exp(-(offsets[None, :] ** 2) / (2 * sigma[:, None] ** 2))
    kernels = kernels / kernels.sum(dim=1, keepdim=True)
    identity = (offsets == 0).to(images.dtype).expand(n, kernel_size)
    kernels = torch.where(apply[:, None], kernels, identity)
    # one group per (image, channel): a separable blur with each image's own kernel
    kernels = kernels.repeat_interleave(channels, dim=0)
    flat = images.reshape(1, n * channels, height, width)
    pad = kernel_size // 2
    flat = F.conv2d(F.pad(flat, (pad, pad, 0, 0), mode="replicate"), kernels.view(-1, 1, 1, kernel_size), groups=n * channels)
    flat = F.conv2d(F.pad(flat, (0, 0, pad, pad), mode="replicate"), kernels.view(-1, 1, kernel_size, 1), groups=n * channels)
    return flat.view(n, channels, height, width)


def random_views(
    images: torch.Tensor, policy: AugmentationPolicy | str, generator: torch.Generator
) -> torch.Tensor:
    """One random view of every image, parameters drawn independently per image.

    Parameters
    ----------
    images : torch.Tensor
        ``(batch, channels, height, width)``; ``uint8`` in ``[0, 255]`` or floats in ``[0, 1]``.
    policy : AugmentationPolicy or str
        The view distribution (or the name of one in :data:`POLICIES`).
    generator : torch.Generator
        Seeded generator on the images' device; the same seed gives the same views.

    Returns
    -------
    torch.Tensor
        Float views in ``[0, 1]``, shape ``(batch, channels, height, width)``.
    """
    if isinstance(policy, str):
        policy = get_policy(policy)
    if images.ndim != 4:
        raise ValueError(
            f"images must have shape (batch, channels, height, width), got {tuple(images.shape)}; "
            "add a channel axis with images[:, None] for grayscale arrays."
        )
    if images.dtype == torch.uint8:
        images = images.float() / 255.0
    elif not torch.is_floating_point(images):
        raise ValueError(f"images must be uint8 or floating point, got {images.dtype}.")
    views = random_crop_flip(images, policy, generator)
    views = random_jitter(views, policy, generator)
    if policy.blur_prob > 0:
        views = random_blur(views, policy, generator)
    return views
