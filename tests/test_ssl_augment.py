"""Per-sample batched views: independence, reproducibility, exactness of each operation."""

import numpy as np
import pytest
import torch
from scipy.signal import correlate2d

from sslgeom.ssl_augment import POLICIES, AugmentationPolicy, get_policy, random_blur, random_views

IDENTITY = AugmentationPolicy(
    crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_prob=0.0, jitter_prob=0.0, blur_prob=0.0
)


def _images(n=4, seed=0):
    return torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_identical_inputs_get_different_views(policy):
    batch = _images(1).repeat(16, 1, 1, 1)
    views = random_views(batch, policy, torch.Generator().manual_seed(0))
    flat = views.flatten(1)
    distances = torch.cdist(flat, flat)
    off_diagonal = distances[~torch.eye(16, dtype=torch.bool)]
    assert off_diagonal.min() > 1e-3, "two copies of one image received the same view"


def test_same_seed_same_views_and_range():
    batch = _images(8)
    a = random_views(batch, "strong", torch.Generator().manual_seed(3))
    b = random_views(batch, "strong", torch.Generator().manual_seed(3))
    c = random_views(batch, "strong", torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == batch.shape and a.dtype == torch.float32
    assert a.min() >= 0 and a.max() <= 1


def test_identity_policy_returns_the_images():
    batch = _images(5)
    views = random_views(batch, IDENTITY, torch.Generator().manual_seed(0))
    assert torch.allclose(views, batch.float() / 255, atol=1e-5)


def test_flip_is_an_exact_mirror():
    policy = AugmentationPolicy(
        crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_prob=1.0, jitter_prob=0.0, blur_prob=0.0
    )
    batch = _images(3)
    views = random_views(batch, policy, torch.Generator().manual_seed(0))
    assert torch.allclose(views, torch.flip(batch.float() / 255, dims=[3]), atol=1e-5)


def test_crop_keeps_a_scaled_region():
    # a bright square in the centre grows when a central crop of a quarter of the area is zoomed in
    image = torch.zeros(1, 1, 28, 28)
    image[..., 12:16, 12:16] = 1.0
    policy = AugmentationPolicy(crop_scale=(0.25, 0.25), crop_ratio=(1.0, 1.0), flip_prob=0.0,
                                jitter_prob=0.0, blur_prob=0.0)
    views = random_views(image.repeat(64, 1, 1, 1), policy, torch.Generator().manual_seed(0))
    # a crop of half the side doubles lengths: mass scales by 4 unless the square leaves the crop
    mass = views.sum(dim=(1, 2, 3))
    assert mass.max() == pytest.approx(64.0, rel=0.05)


def test_blur_matches_explicit_gaussian_kernel():
    sigma = 0.8
    policy = AugmentationPolicy(blur_prob=1.0, blur_sigma=(sigma, sigma))
    image = torch.rand(2, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    blurred = random_blur(image, policy, torch.Generator().manual_seed(0)).numpy()
    offsets = np.arange(5) - 2
    g = np.exp(-(offsets**2) / (2 * sigma**2))
    g /= g.sum()
    kernel = np.outer(g, g)
    for i in range(2):
        padded = np.pad(image[i, 0].numpy().astype(np.float64), 2, mode="edge")
        expected = correlate2d(padded, kernel, mode="valid")
        np.testing.assert_allclose(blurred[i, 0], expected, atol=1e-5)


def test_jitter_changes_intensities_per_image():
    policy = AugmentationPolicy(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_prob=0.0,
                                jitter_prob=1.0, brightness=0.4, contrast=0.0, blur_prob=0.0)
    batch = torch.full((32, 1, 8, 8), 128, dtype=torch.uint8)
    views = random_views(batch, policy, torch.Generator().manual_seed(0))
    levels = views.mean(dim=(1, 2, 3))
    ratios = levels / (128 / 255)
    assert ratios.min() >= 0.6 - 1e-6 and ratios.max() <= 1.4 + 1e-6
    assert ratios.std() > 0.1


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="channels"):
        random_views(torch.zeros(2, 28, 28, dtype=torch.uint8), "strong", torch.Generator())
    with pytest.raises(ValueError, match="Unknown augmentation policy"):
        get_policy("extreme")
    with pytest.raises(ValueError, match="crop_scale"):
        AugmentationPolicy(crop_scale=(0.5, 1.5))
    with pytest.raises(ValueError, match="probability"):
        AugmentationPolicy(flip_prob=2.0)
