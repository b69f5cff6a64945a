"""Tests of sslgeom.manifolds on Fashion-MNIST test images with a tiny stand-in model."""

from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from sslgeom import augment, embed, manifolds
from sslgeom.data import load_fashion_mnist


class SmallNet(torch.nn.Module):
    """Conv + pooling to 16-D features; counts forward calls and can fail on a chosen call."""

    def __init__(self, seed: int = 0):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.conv = torch.nn.Conv2d(1, 4, kernel_size=5, stride=2)
        self.calls = 0
        self.fail_on_call: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.fail_on_call is not None and self.calls == self.fail_on_call:
            raise KeyboardInterrupt("simulated interrupt")
        x = torch.relu(self.conv(x)) + 0.01
        return torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)


def scale_to_unit(images: torch.Tensor) -> torch.Tensor:
    return images.to(torch.float32) / 255.0


@dataclass
class TinyModel:
    backbone: torch.nn.Module
    preprocess: object = scale_to_unit
    info: dict = field(default_factory=lambda: {"name": "tiny", "paradigm": "test"})


pytestmark = pytest.mark.usefixtures("private_cache")  # every test gets an empty cache (conftest)


@pytest.fixture(scope="module")
def test_split():
    return load_fashion_mnist("test")


def test_select_test_images_is_stratified_seeded_and_prefix_stable(test_split):
    _, labels = test_split
    ids = manifolds.select_test_images(95, seed=3)
    assert ids.shape == (95,) and len(set(ids.tolist())) == 95
    counts = np.bincount(labels[ids], minlength=10)
    assert counts.max() - counts.min() <= 1
    np.testing.assert_array_equal(ids, manifolds.select_test_images(95, seed=3))
    np.testing.assert_array_equal(ids[:40], manifolds.select_test_images(40, seed=3))
    assert not np.array_equal(ids, manifolds.select_test_images(95, seed=4))
    with pytest.raises(ValueError, match="n_images"):
        manifolds.select_test_images(0)
    with pytest.raises(ValueError, match="n_images"):
        manifolds.select_test_images(10_001)


def test_semantic_manifold_matches_direct_embedding(test_split):
    images, labels = test_split
    model = TinyModel(SmallNet())
    semantic = manifolds.semantic_manifold(model, n_per_class=3, seed=0, progress=False)
    assert semantic.features.shape == (30, 16) and semantic.features.dtype == np.float32
    np.testing.assert_array_equal(semantic.labels, labels[semantic.image_ids])
    np.testing.assert_array_equal(np.bincount(semantic.labels), np.full(10, 3))
    np.testing.assert_allclose(np.linalg.norm(semantic.features, axis=1), 1.0, rtol=1e-6)
    direct = embed.embed_images(model, images[semantic.image_ids][:, None], progress=False)
    raw = manifolds.semantic_manifold(model, n_per_class=3, seed=0, normalize=False, progress=False)
    np.testing.assert_allclose(raw.features, direct, rtol=1e-5, atol=1e-6)
    coat = semantic.for_class(4)
    assert coat.features.shape == (3, 16) and set(coat.labels.tolist()) == {4}
    with pytest.raises(ValueError, match="n_per_class"):
        manifolds.semantic_manifold(model, n_per_class=0)


def test_augmentation_manifolds_hold_swept_views(test_split):
    images, _ = test_split
    model = TinyModel(SmallNet())
    result = manifolds.augmentation_manifolds(model, families=["rotation", "noise"], n_base=4,
                                              n_points=5, seed=1, normalize=False, progress=False)
    assert list(result) == ["rotation", "noise"]
    rotation = result["rotation"]
    assert rotation.features.shape == (4, 5, 16)
    np.testing.assert_array_equal(rotation.strengths, augment.grid("rotation", 5))
    assert rotation.strengths[rotation.identity_index] == 0.0
    base = torch.from_numpy(images[rotation.base_ids][:, None])
    for j, strength in enumerate(rotation.strengths):
        expected = embed.embed_images(model, augment.apply(base, "rotation", strength), progress=False)
        np.testing.assert_allclose(rotation.features[:, j], expected, rtol=1e-5, atol=1e-6)
    # The identity column is the clean images' features: distance zero there, positive elsewhere.
    distances = rotation.distances_from_clean()
    assert np.all(distances[:, rotation.identity_index] == 0.0)
    assert np.all(np.delete(distances, rotation.identity_index, axis=1) > 0.0)
    noise = result["noise"]
    assert noise.identity_index == 0
    np.testing.assert_allclose(noise.clean_features, rotation.clean_features, rtol=1e-6)


def test_bad_families_raise():
    model = TinyModel(SmallNet())
    with pytest.raises(ValueError, match="Unknown augmentation family"):
        manifolds.augmentation_manifolds(model, families=["warp"], n_base=2, progress=False)
    with pytest.raises(ValueError, match="greyscale"):
        manifolds.augmentation_manifolds(model, families=["hue"], n_base=2, progress=False)


def test_composition_manifold_views_differ_and_clean_matches_semantic():
    model = TinyModel(SmallNet())
    cloud = manifolds.composition_manifold(model, n_base=5, n_views=6, seed=2, progress=False)
    assert cloud.features.shape == (5, 6, 16) and cloud.clean_features.shape == (5, 16)
    assert cloud.view_strengths.shape == (5, 6, len(augment.GRAYSCALE_FAMILIES))
    assert cloud.families == augment.GRAYSCALE_FAMILIES
    flat = cloud.features.reshape(30, 16)
    assert len(np.unique(flat.round(6), axis=0)) == 30
    semantic_ids = manifolds.select_test_images(5, seed=2)
    np.testing.assert_array_equal(cloud.base_ids, semantic_ids)


def test_same_seed_gives_identical_arrays_across_fresh_runs(tmp_path, monkeypatch):
    def run(cache_name: str):
        monkeypatch.setenv("SSLGEOM_CACHE", str(tmp_path / cache_name))
        model = TinyModel(SmallNet())
        (out,) = list(manifolds.model_manifolds([model], n_per_class=2, families=["noise", "zoom"],
                                                n_base=3, n_points=3, n_views=4, seed=7))
        return out, model.backbone.calls

    first, calls_first = run("a")
    second, calls_second = run("b")  # separate empty cache: everything recomputed
    assert calls_first == calls_second > 0
    np.testing.assert_array_equal(first.semantic.features, second.semantic.features)
    for family in ("noise", "zoom"):
        np.testing.assert_array_equal(first.augmentation[family].features,
                                      second.augmentation[family].features)
    np.testing.assert_array_equal(first.composition.features, second.composition.features)
    np.testing.assert_array_equal(first.composition.view_strengths, second.composition.view_strengths)
    third, calls_third = run("a")  # warm cache: no forward pass at all
    assert calls_third == 0
    np.testing.assert_array_equal(first.composition.features, third.composition.features)
    assert third.info["paradigm"] == "test"


def test_interrupted_run_keeps_finished_pieces(private_cache):
    model = TinyModel(SmallNet())
    families = ["rotation", "shift", "blur"]
    model.backbone.fail_on_call = 3  # one forward pass per piece here: dies on the third family
    with pytest.raises(KeyboardInterrupt):
        manifolds.augmentation_manifolds(model, families=families, n_base=3, n_points=3,
                                         progress=False)
    assert len(list((private_cache / "features").glob("*.npz"))) == 2
    assert not list((private_cache / "features").glob("*.tmp"))
    model.backbone.fail_on_call = None
    model.backbone.calls = 0
    resumed = manifolds.augmentation_manifolds(model, families=families, n_base=3, n_points=3,
                                               progress=False)
    assert model.backbone.calls == 1  # only the missing family is computed
    assert set(resumed) == set(families)


def test_invariance_table_rows():
    model = TinyModel(SmallNet())
    result = manifolds.augmentation_manifolds(model, families=["brightness", "blur"], n_base=3,
                                              n_points=3, progress=False)
    table = manifolds.invariance_table(result.values(), info={"paradigm": "test"})
    assert len(table) == 6 and set(table["paradigm"]) == {"test"}
    at_identity = table[table["relative_strength"] == 0.0]
    assert len(at_identity) == 2 and np.all(at_identity["mean_distance"] == 0.0)
    blur = table[table["family"] == "blur"].sort_values("strength")
    np.testing.assert_allclose(blur["relative_strength"], [0.0, 0.5, 1.0])
    expected = result["blur"].distances_from_clean().mean(axis=0)
    np.testing.assert_allclose(blur["mean_distance"], expected, rtol=1e-6)
    clean = result["blur"].clean_features
    pairs = [np.linalg.norm(clean[i] - clean[j]) for i in range(3) for j in range(3) if i != j]
    np.testing.assert_allclose(blur["relative_distance"], expected / np.mean(pairs), rtol=1e-5)
    with pytest.raises(ValueError, match="no augmentation manifolds"):
        manifolds.invariance_table([])


def test_typical_distance_against_scipy():
    from scipy.spatial.distance import pdist

    points = np.random.default_rng(0).normal(size=(7, 5))
    assert manifolds.typical_distance(points) == pytest.approx(pdist(points).mean(), rel=1e-9)
    with pytest.raises(ValueError, match="n_points >= 2"):
        manifolds.typical_distance(points[:1])


def test_model_manifolds_options_and_errors():
    model = TinyModel(SmallNet())
    (out,) = list(manifolds.model_manifolds([model], n_per_class=2, families=["shift"], n_base=2,
                                            n_points={"shift": 3}, composition=False))
    assert out.composition is None and list(out.augmentation) == ["shift"]
    assert out.augmentation["shift"].features.shape == (2, 3, 16)
    with pytest.raises(ValueError, match="models is empty"):
        list(manifolds.model_manifolds([]))
