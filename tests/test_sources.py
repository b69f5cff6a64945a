"""Image sources: the default data or an image folder, its pool, its cache namespace, and the checks.

A small folder of synthetic colour images (3 classes) and one tiny user model (a torchvision
MobileNet-V3-small with random weights, named by a user registry) are enough to check that the
manifolds, the ``image_folder`` task, the baselines and the checks read the active pool.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from sslgeom import augment, manifolds, params, published, registry, sources, tasks
from sslgeom.folder_speed import write_synthetic_folder


@pytest.fixture
def folder(tmp_path, private_cache) -> Path:
    return write_synthetic_folder(tmp_path / "images", n_classes=3, n_per_class=8, shape=(20, 24), seed=1)


@pytest.fixture
def tiny_registry(tmp_path) -> Path:
    """A user registry with one random MobileNet-V3-small (1024-d features after its last linear layer)."""
    from torchvision.models import mobilenet_v3_small

    torch.manual_seed(0)
    torch.save(mobilenet_v3_small(weights=None).state_dict(), tmp_path / "tiny.pth")
    entry = {"name": "tiny", "file": "tiny.pth", "architecture": "mobilenet_v3_small", "paradigm": "contrastive",
             "method": "Tiny", "image_size": 64}
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump({"models": [entry]}))
    return path


class MeanColour:
    """A model whose features are the mean of each channel: what the images are, read off directly."""

    backbone = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    info = {"name": "mean-colour"}

    @staticmethod
    def preprocess(images: torch.Tensor) -> torch.Tensor:
        return images.float() / 255.0


def test_the_default_source_is_fashion_mnist_and_leaves_the_cache_alone(private_cache):
    before = os.environ["SSLGEOM_CACHE"]
    with sources.use_source(None) as pool:
        assert pool.is_default and pool.key == sources.DEFAULT_KEY == manifolds._dataset()
        assert pool.images.shape == (10_000, 1, 28, 28) and pool.images.dtype == np.uint8
        assert pool.families == augment.GRAYSCALE_FAMILIES and manifolds._image_shape() == (1, 28, 28)
        assert os.environ["SSLGEOM_CACHE"] == before
    assert sources.active_images().is_default


def test_a_folder_is_the_pool_of_the_manifolds_with_colour_families(folder):
    base = Path(os.environ["SSLGEOM_CACHE"])
    with sources.use_source(folder, input_size=16, images_per_class=6, progress=False) as pool:
        assert pool.images.shape == (18, 3, 16, 16) and pool.classes == ("class_0", "class_1", "class_2")
        assert pool.key.startswith("folder-") and manifolds._dataset() == pool.key
        assert set(augment.COLOR_FAMILIES) <= set(pool.families) == set(manifolds._check_families(None))
        # the stratified choice visits the folder's classes in turn
        ids = manifolds.select_test_images(6, seed=0)
        assert sorted(pool.labels[ids].tolist()) == [0, 0, 1, 1, 2, 2]
        semantic = manifolds.semantic_manifold(MeanColour(), n_per_class=2, progress=False, normalize=False)
        expected = pool.images[semantic.image_ids].reshape(6, 3, -1).mean(axis=2) / 255.0
        np.testing.assert_allclose(semantic.features, expected, atol=1e-5)
        hue = manifolds.augmentation_manifolds(MeanColour(), families=["hue"], n_base=3, n_points=3, progress=False)
        assert hue["hue"].features.shape == (3, 3, 3)
        # results go to the source's own cache folder; the base cache's checkpoints stay visible
        assert Path(os.environ["SSLGEOM_CACHE"]).parent == base / sources.NAMESPACE_DIR
        assert str(base / "published") in os.environ[published.CHECKPOINTS_ENV].split(os.pathsep)
        assert os.environ[published.INPUT_SIZE_ENV] == "16"
    assert os.environ["SSLGEOM_CACHE"] == str(base) and published.INPUT_SIZE_ENV not in os.environ
    assert sources.active_images().is_default


def test_the_pool_key_follows_the_content_and_the_options(folder, tmp_path):
    key = sources._folder_key(sources.ImageSource(folder, 16, 6, 0))
    copy = tmp_path / "copy"
    write_synthetic_folder(copy, n_classes=3, n_per_class=8, shape=(20, 24), seed=1)
    for source in (sources.ImageSource(folder, 32, 6, 0), sources.ImageSource(folder, 16, 5, 0),
                   sources.ImageSource(folder, 16, 6, 1)):
        assert sources._folder_key(source) != key
    os.utime(folder / "class_0" / "img_00000.png", ns=(1, 1))  # a changed file changes the key
    assert sources._folder_key(sources.ImageSource(folder, 16, 6, 0)) != key


def test_the_same_model_gets_other_features_on_another_source(folder):
    with sources.use_source(None):
        default = manifolds.semantic_manifold(MeanColour(), n_per_class=2, progress=False, normalize=False)
    with sources.use_source(folder, input_size=16, progress=False):
        on_folder = manifolds.semantic_manifold(MeanColour(), n_per_class=2, progress=False, normalize=False)
    assert default.features.shape == (20, 1) and on_folder.features.shape == (6, 3)


def test_default_zoo_models_are_refused_on_a_folder_with_the_reason(folder):
    external = ["published/moco-v2", "user/mine"]
    with sources.use_source(None) as pool:
        assert sources.check_models(["simclr-convnet-s0", *external], pool) == ["simclr-convnet-s0", *external]
    with sources.use_source(folder, input_size=16, progress=False) as pool:
        assert sources.check_models(external) == external
        with pytest.raises(sources.SourceError, match=r"includes default-zoo models \(simclr-convnet-s0\)"
                                                      r".*cannot see the folder's colour images.*image_folder to null"):
            sources.check_models(["simclr-convnet-s0", *external], pool)


def test_a_per_class_count_the_pool_cannot_give_is_refused(folder):
    with sources.use_source(folder, input_size=16, images_per_class=4, progress=False) as pool:
        sources.check_class_sizes(4, pool)
        with pytest.raises(sources.SourceError, match=r"n_per_class = 5 .* 3 class\(es\).*at most 4.*images_per_class"):
            sources.check_class_sizes(5, pool)


def test_parameters_are_checked(folder, tmp_path):
    rules = sources.PARAMETER_RULES
    params.check({"image_folder": str(folder), "registry": None, "input_size": 64, "images_per_class": 10}, rules)
    with pytest.raises(params.ParameterError, match="input_size"):
        params.check({"input_size": 8}, {"input_size": rules["input_size"]})
    with pytest.raises(params.ParameterError, match="image_folder"):
        params.check({"image_folder": 3}, {"image_folder": rules["image_folder"]})
    sources.check_paths(str(folder), None)
    with pytest.raises(FileNotFoundError, match=r"image_folder = .*does not exist.*repository root"):
        sources.check_paths(str(tmp_path / "nowhere"), None)
    with pytest.raises(FileNotFoundError, match="registry"):
        sources.check_paths(None, "no/such/registry.yaml")


def test_a_folder_that_is_not_an_image_set_fails_on_activation(tmp_path, private_cache):
    (tmp_path / "one" / "only").mkdir(parents=True)
    write_synthetic_folder(tmp_path / "tmp", n_classes=1, n_per_class=2, shape=(8, 8))
    (tmp_path / "tmp" / "class_0").rename(tmp_path / "one" / "only" / "class_0")
    with pytest.raises(ValueError, match="single class|no class sub-folders|No PNG"):
        with sources.use_source(tmp_path / "one", progress=False):
            pass
    assert sources.active_images().is_default


def test_the_image_folder_task_splits_the_pool_in_colour(folder):
    with pytest.raises(ValueError, match="needs an image folder"):
        tasks.build_tasks(["image_folder"])
    with sources.use_source(folder, input_size=16, images_per_class=8, progress=False) as pool:
        task = tasks.build_tasks(["image_folder"], n_train=None, n_val=None, n_test=None)["image_folder"]
        again = tasks.build_tasks(["image_folder", "digits"], n_train=None, n_val=None, n_test=None)["image_folder"]
    assert task.classes == pool.classes
    assert task.split_sizes() == {"train": 12, "val": 6, "test": 6}  # 4/2/2 per class
    assert task.train[0].shape[1:] == (3, 16, 16) and task.train[0].dtype == np.uint8
    np.testing.assert_array_equal(task.test[0], again.test[0])  # other tasks do not move its split
    everything = np.concatenate([task.train[0], task.val[0], task.test[0]])
    assert len({image.tobytes() for image in everything}) == 24  # the three splits are disjoint
    assert {image.tobytes() for image in everything} == {image.tobytes() for image in pool.images}
    assert any(np.ptp(image.astype(int), axis=0).max() > 0 for image in everything)  # colour kept, not luma


def test_baselines_and_source_knn_use_the_pool_at_the_input_size(folder, tiny_registry):
    from sslgeom import baselines, embed

    with sources.use_source(folder, registry=tiny_registry, input_size=32, images_per_class=8, progress=False) as pool:
        model = registry.load_user("user/tiny")
        assert model.info["image_size"] == 32  # input_size overrides the entry's 64
        spectra = sources.spectrum_baselines(["user/tiny"], n_spectrum=20, progress=False)
        scores = sources.source_scores(["user/tiny"], k=3, progress=False)
        # the spectrum is that of 20 pool images drawn by the seed, in colour
        chosen = pool.images[np.random.default_rng(0).choice(len(pool.labels), size=20, replace=False)]
        direct = embed.embed_images(model, chosen, progress=False)
    assert list(spectra.index) == ["user/tiny"] and np.isfinite(spectra.to_numpy()).all()
    assert 1.0 <= spectra.loc["user/tiny", "rankme"] <= 20
    assert spectra.loc["user/tiny", "rankme"] == pytest.approx(baselines.rankme(direct), rel=1e-5)
    assert spectra.loc["user/tiny", "alpha_req"] == pytest.approx(baselines.alpha_req(direct), rel=1e-4)
    assert np.isnan(scores.loc["user/tiny", "source_probe"]) and 0 <= scores.loc["user/tiny", "source_knn"] <= 1


def test_the_memory_split_is_per_class_halves_and_capped():
    labels = np.repeat([0, 1, 2], 10)
    memory, queries = sources._memory_split(labels, 100, 100, seed=0)
    assert len(set(memory) | set(queries)) == 30 and not set(memory) & set(queries)
    assert np.bincount(labels[memory]).tolist() == [5, 5, 5]
    memory, queries = sources._memory_split(labels, 6, 3, seed=0)
    assert len(memory) == 6 and len(queries) == 3


def test_the_input_identity_follows_the_folder_the_registry_and_the_checkpoints(folder, tiny_registry, tmp_path,
                                                                                 monkeypatch):
    """What the notebook runner fingerprints: any changed image, registry, named checkpoint or file in
    $SSLGEOM_CHECKPOINTS gives another identity; nothing changed gives the same one."""
    checkpoints = tmp_path / "release-files"
    checkpoints.mkdir()
    monkeypatch.setenv("SSLGEOM_CHECKPOINTS", str(checkpoints))
    monkeypatch.delenv("SSLGEOM_INPUT_SIZE", raising=False)
    identity = lambda: sources.input_identity(str(folder), str(tiny_registry))  # noqa: E731
    seen = [identity()]
    assert identity() == seen[0] and json.dumps(seen[0])  # stable, and JSON for the fingerprint

    def changed(path: Path, content: bytes, when: int) -> None:
        path.write_bytes(content)
        os.utime(path, ns=(when, when))
        seen.append(identity())
        assert seen[-1] not in seen[:-1], f"changing {path.name} left the identity unchanged"

    image = sorted(folder.rglob("*.png"))[0]
    changed(image, image.read_bytes(), 1_000_000_000_000_000_000)  # same bytes, new time
    changed(tiny_registry, tiny_registry.read_bytes() + b"\n# edited\n", 1_000_000_000_000_000_000)
    named = tiny_registry.parent / "tiny.pth"
    changed(named, named.read_bytes(), 1_100_000_000_000_000_000)
    changed(checkpoints / "InsDis.pth", b"release weights", 1_000_000_000_000_000_000)
    monkeypatch.setenv("SSLGEOM_INPUT_SIZE", "64")
    assert identity() not in seen
    assert sources.input_identity(None, None)[-1] == ["input_size", "64"]
    missing = sources.input_identity(str(tmp_path / "nowhere"), None)[0]
    assert missing[0] == "folder" and "FileNotFoundError" in missing[-1]  # an error's text, not a crash
    assert "TypeError" in sources.input_identity(None, 3)[0][-1]  # a wrong type is the chapter's to report
