"""Tests of sslgeom.augment: identities, monotone strengths, independent references, errors."""

import numpy as np
import pytest
import torch

from sslgeom import augment


def _images(n: int = 6, channels: int = 1, seed: int = 0) -> torch.Tensor:
    """A dark background with a bright off-centre blob plus texture, like a Fashion-MNIST item."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.zeros((n, channels, 28, 28), dtype=torch.uint8)
    texture = torch.randint(60, 256, (n, channels, 16, 12), generator=generator, dtype=torch.uint8)
    images[:, :, 5:21, 9:21] = texture
    return images


@pytest.mark.parametrize("family", augment.GRAYSCALE_FAMILIES)
def test_identity_strength_returns_input_exactly(family):
    images = _images()
    out = augment.apply(images, family, augment.FAMILIES[family].identity)
    assert out.dtype == torch.uint8 and out.shape == images.shape
    assert torch.equal(out, images)


@pytest.mark.parametrize("family", augment.COLOR_FAMILIES)
def test_colour_identity_and_greyscale_error(family):
    colour = _images(channels=3)
    assert torch.equal(augment.apply(colour, family, augment.FAMILIES[family].identity), colour)
    with pytest.raises(ValueError, match="3-channel"):
        augment.apply(_images(channels=1), family, augment.FAMILIES[family].identity)


@pytest.mark.parametrize("family", augment.GRAYSCALE_FAMILIES)
def test_every_non_identity_grid_point_changes_the_image(family):
    images = _images()
    for strength in augment.grid(family):
        if strength != augment.FAMILIES[family].identity:
            assert not torch.equal(augment.apply(images, family, strength), images), strength


def _smooth_shape() -> torch.Tensor:
    """An asymmetric smooth shape (two Gaussian blobs), so rotations are visible but resampling is gentle."""
    rows, cols = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    blob = 230 * torch.exp(-((rows - 10) ** 2 / 18 + (cols - 14) ** 2 / 60))
    blob += 180 * torch.exp(-((rows - 18) ** 2 / 10 + (cols - 19) ** 2 / 10))
    return blob.round().clamp(0, 255).to(torch.uint8)[None, None]


def test_rotation_composes_additively_up_to_interpolation():
    images = _smooth_shape()
    for a, b in [(20.0, 25.0), (-30.0, 60.0), (45.0, 45.0), (-70.0, -20.0)]:
        twice = augment.apply(augment.apply(images, "rotation", a), "rotation", b)
        once = augment.apply(images, "rotation", a + b)
        wrong = augment.apply(images, "rotation", a - b)
        difference = (twice.float() - once.float()).abs()
        # Two bilinear resamplings differ from one by about one grey level on average (at most a
        # dozen at the peak, of 230) on a smooth image; a wrong composition (a - b) moves the
        # shape and differs by more than a hundred.
        assert float(difference.mean()) <= 1.5 and float(difference.max()) <= 16.0, (a, b)
        assert float((twice.float() - wrong.float()).abs().max()) > 80.0


def test_rotation_by_90_matches_rot90():
    images = _images()
    rotated = augment.apply(images, "rotation", 90.0)
    # Counter-clockwise on screen: the first row of the output is the last column of the input.
    assert torch.equal(rotated, torch.rot90(images, k=1, dims=(2, 3)))


def test_integer_shift_matches_roll_with_zero_fill():
    images = _images()
    for shift in (3, -5):
        reference = torch.zeros_like(images)
        if shift > 0:
            reference[..., shift:] = images[..., :-shift]
        else:
            reference[..., :shift] = images[..., -shift:]
        assert torch.equal(augment.apply(images, "shift", float(shift)), reference)


def test_zoom_by_one_half_doubles_a_centred_square():
    # Zoom 0.5 shows the central 14x14 crop at full size: output pixel p samples input
    # 6.75 + p / 2, so the 8x8 square at 10..17 covers outputs 7..20 fully, 5..22 partly.
    images = torch.zeros((1, 1, 28, 28), dtype=torch.uint8)
    images[..., 10:18, 10:18] = 200
    zoomed = augment.apply(images, "zoom", 0.5)[0, 0]
    assert torch.equal(zoomed[7:21, 7:21], torch.full((14, 14), 200, dtype=torch.uint8))
    inside = torch.zeros((28, 28), dtype=torch.bool)
    inside[5:23, 5:23] = True
    assert zoomed[~inside].max() == 0 and zoomed[inside].min() > 0


def test_pointwise_families_match_formulas():
    images = _images()
    x = images.double()
    bright = augment.apply(images, "brightness", 1.5)
    # float32 on the [0, 1] scale: off by at most one grey level from exact arithmetic.
    assert (bright.double() - (x * 1.5).round().clamp(0, 255)).abs().max() <= 1
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    contrast = augment.apply(images, "contrast", 0.4)
    expected = (0.4 * x + 0.6 * mean).round().clamp(0, 255)
    assert (contrast.double() - expected).abs().max() <= 1


def test_blur_preserves_mass_and_smooths_more_with_sigma():
    images = _images()
    roughness = []
    for sigma in augment.grid("blur"):
        out = augment.apply(images, "blur", sigma).double()
        # Total intensity is kept (reflect padding, normalised kernel) up to rounding.
        assert abs(out.sum() - images.double().sum()) / images.double().sum() < 0.01
        roughness.append(float(out.diff(dim=-1).abs().mean()))
    assert all(a > b for a, b in zip(roughness, roughness[1:]))


@pytest.mark.parametrize("family", ["rotation", "zoom", "shift", "blur", "noise", "brightness", "contrast"])
def test_distance_from_clean_grows_with_strength(family):
    images = _images()
    spec = augment.FAMILIES[family]
    strengths = augment.grid(family)
    # Walk away from the identity on the side where the grid is longest.
    side = strengths[strengths >= spec.identity] if strengths.max() - spec.identity >= spec.identity - strengths.min() \
        else strengths[strengths <= spec.identity][::-1]
    side = side if side[0] == spec.identity else side[::-1]
    distances = [float((augment.apply(images, family, s).double() - images.double()).norm()) for s in side]
    assert distances[0] == 0.0
    assert all(b > a for a, b in zip(distances, distances[1:])), distances


def test_noise_is_seeded_and_has_requested_std():
    images = torch.full((8, 1, 28, 28), 128, dtype=torch.uint8)
    a = augment.apply(images, "noise", 0.1, seed=3)
    assert torch.equal(a, augment.apply(images, "noise", 0.1, seed=3))
    assert not torch.equal(a, augment.apply(images, "noise", 0.1, seed=4))
    measured = ((a.double() - 128.0) / 255.0).std()
    assert abs(float(measured) - 0.1) < 0.005


def test_grid_contains_identity_and_validates():
    for family, spec in augment.FAMILIES.items():
        strengths = augment.grid(family)
        assert strengths.shape == (spec.grid_points,)
        assert spec.identity in strengths
        assert strengths[0] == spec.grid_low and strengths[-1] == spec.grid_high
    with pytest.raises(ValueError, match="misses the identity"):
        augment.grid("rotation", 4)
    with pytest.raises(ValueError, match="out of range"):
        augment.grid("zoom", 5, low=1.0, high=0.0)
    with pytest.raises(ValueError, match="at least 2"):
        augment.grid("blur", 1)


def test_unknown_family_and_bad_strengths_raise_clear_errors():
    images = _images()
    with pytest.raises(ValueError, match="Unknown augmentation family 'solarize'.*rotation"):
        augment.apply(images, "solarize", 1.0)
    with pytest.raises(ValueError, match=r"out of range.*\[-180, 180\]"):
        augment.apply(images, "rotation", 200.0)
    with pytest.raises(ValueError, match="out of range"):
        augment.apply(images, "noise", float("nan"))
    with pytest.raises(ValueError, match="uint8"):
        augment.apply(images.float(), "rotation", 10.0)
    with pytest.raises(ValueError, match="channel axis"):
        augment.apply(images[:, 0], "rotation", 10.0)


def test_sweep_shape_and_order():
    images = _images(3)
    strengths = augment.grid("rotation", 5)
    views = augment.sweep(images, "rotation", strengths)
    assert views.shape == (3, 5, 1, 28, 28)
    for j, s in enumerate(strengths):
        assert torch.equal(views[:, j], augment.apply(images, "rotation", s))


def test_random_views_differ_per_image_and_view_and_are_reproducible():
    # Identical inputs must still get different views (one parameter draw per sample, not per batch).
    images = _images(1).repeat(5, 1, 1, 1)
    views, strengths = augment.random_views(images, 4, seed=0)
    assert views.shape == (5, 4, 1, 28, 28)
    assert strengths.shape == (5, 4, len(augment.GRAYSCALE_FAMILIES))
    flat = views.reshape(20, -1)
    assert len({bytes(row.numpy()) for row in flat}) == 20
    again, strengths_again = augment.random_views(images, 4, seed=0)
    assert torch.equal(views, again) and np.array_equal(strengths, strengths_again)
    other, _ = augment.random_views(images, 4, seed=1)
    assert not torch.equal(views, other)
    assert np.array_equal(strengths, augment.sample_strengths(5, 4, seed=0))


def test_random_views_match_chained_apply():
    # The batched per-sample implementation against the per-family torchvision reference.
    families = [f for f in augment.GRAYSCALE_FAMILIES if f != "noise"]
    images = _images(6)
    views, strengths = augment.random_views(images, 3, seed=5, families=families)
    for i in range(6):
        for v in range(3):
            expected = images[i : i + 1]
            for f, name in enumerate(families):
                expected = augment.apply(expected, name, strengths[i, v, f])
            assert (expected.int() - views[i, v : v + 1].int()).abs().max() <= 1


def test_random_views_colour_families_match_chained_apply():
    families = ["contrast", "hue", "saturation"]
    images = _images(4, channels=3)
    views, strengths = augment.random_views(images, 2, seed=2, families=families, p_apply=1.0)
    for i in range(4):
        for v in range(2):
            expected = images[i : i + 1]
            for f, name in enumerate(families):
                expected = augment.apply(expected, name, strengths[i, v, f])
            assert (expected.int() - views[i, v : v + 1].int()).abs().max() <= 1


def test_random_views_p_apply_zero_is_identity_and_errors():
    images = _images(3)
    views, strengths = augment.random_views(images, 2, seed=0, p_apply=0.0)
    assert torch.equal(views, images[:, None].expand(-1, 2, -1, -1, -1))
    identities = [augment.FAMILIES[f].identity for f in augment.GRAYSCALE_FAMILIES]
    assert np.array_equal(strengths, np.broadcast_to(identities, strengths.shape))
    with pytest.raises(ValueError, match="probability"):
        augment.random_views(images, 2, p_apply=1.5)
    with pytest.raises(ValueError, match="positive integer"):
        augment.random_views(images, 0)
    with pytest.raises(ValueError, match="3-channel"):
        augment.random_views(images, 2, families=["hue"])


def test_family_table_lists_every_family():
    table = augment.family_table()
    assert list(table["family"]) == list(augment.FAMILIES)
    assert table.loc[table["family"] == "hue", "colour only"].item()
