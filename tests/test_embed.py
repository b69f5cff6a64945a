"""Tests of sslgeom.embed with a tiny stand-in model (no zoo needed)."""

from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from sslgeom import embed


class CountingNet(torch.nn.Module):
    """Conv + pooling to 16-D features; counts forward calls and can fail on a chosen call."""

    def __init__(self, seed: int = 0):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.conv = torch.nn.Conv2d(1, 4, kernel_size=3)
        self.calls = 0
        self.fail_on_call: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.fail_on_call is not None and self.calls == self.fail_on_call:
            raise KeyboardInterrupt("simulated interrupt")
        x = torch.relu(self.conv(x)) + 0.01  # + 0.01: never an all-zero feature vector
        return torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)


def scale_to_unit(images: torch.Tensor) -> torch.Tensor:
    return images.to(torch.float32) / 255.0


@dataclass
class TinyModel:
    backbone: torch.nn.Module
    preprocess: object = scale_to_unit
    info: dict = field(default_factory=lambda: {"name": "tiny"})


pytestmark = pytest.mark.usefixtures("private_cache")  # every test gets an empty cache (conftest)


def _images(n: int = 10, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, 28, 28), generator=generator, dtype=torch.uint8)


def test_features_match_a_direct_forward_pass_for_any_batch_size():
    model = TinyModel(CountingNet())
    images = _images(10)
    with torch.no_grad():
        reference = model.backbone(images.float() / 255.0).numpy()
    for batch_size in (1, 3, 512):
        features = embed.embed_images(model, images, batch_size=batch_size, progress=False)
        assert features.dtype == np.float32 and features.shape == (10, 16)
        np.testing.assert_allclose(features, reference, rtol=1e-5, atol=1e-6)
    assert model.backbone.calls == 1 + 10 + 4 + 1


def test_numpy_input_and_normalisation():
    model = TinyModel(CountingNet())
    images = _images(6)
    raw = embed.embed(model, images.numpy(), use_cache=False, progress=False)
    unit = embed.embed(model, images, use_cache=False, normalize=True, progress=False)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(unit, raw / np.linalg.norm(raw, axis=1, keepdims=True), rtol=1e-6)


def test_second_call_reads_the_cache(private_cache):
    model = TinyModel(CountingNet())
    images = _images(12)
    first = embed.embed(model, images, batch_size=5, progress=False)
    calls = model.backbone.calls
    assert calls == 3
    assert len(list((private_cache / "features").glob("*.npz"))) == 1
    second = embed.embed(model, images, batch_size=5, progress=False)
    assert model.backbone.calls == calls  # no forward pass: read from disk
    np.testing.assert_array_equal(first, second)
    # Other images, other weights or other preprocessing are different entries.
    embed.embed(model, _images(12, seed=1), progress=False)
    embed.embed(TinyModel(CountingNet(seed=1)), images, progress=False)
    embed.embed(TinyModel(CountingNet(), preprocess=lambda x: x.float() / 127.5 - 1.0), images,
                progress=False)
    assert len(list((private_cache / "features").glob("*.npz"))) == 4


def test_checkpoint_hash_in_info_is_the_weights_identity():
    a = TinyModel(CountingNet(seed=0), info={"name": "a", "sha256": "abc"})
    b = TinyModel(CountingNet(seed=0), info={"name": "b", "sha256": "abc"})
    c = TinyModel(CountingNet(seed=0), info={"name": "c", "sha256": "def"})
    assert embed.model_fingerprint(a) == embed.model_fingerprint(b) != embed.model_fingerprint(c)
    # Without a hash, the weights themselves are hashed.
    d, e = TinyModel(CountingNet(seed=0)), TinyModel(CountingNet(seed=2))
    assert embed.model_fingerprint(d) != embed.model_fingerprint(e)
    assert embed.model_fingerprint(d) == embed.model_fingerprint(TinyModel(CountingNet(seed=0)))


def test_interrupted_run_leaves_no_partial_file_and_resumes(private_cache):
    model = TinyModel(CountingNet())
    images = _images(12)
    model.backbone.fail_on_call = 2  # dies in the middle of the second batch
    with pytest.raises(KeyboardInterrupt):
        embed.embed(model, images, batch_size=5, progress=False)
    folder = private_cache / "features"
    assert not folder.exists() or list(folder.iterdir()) == []
    model.backbone.fail_on_call = None
    features = embed.embed(model, images, batch_size=5, progress=False)
    assert [p.suffix for p in folder.iterdir()] == [".npz"]
    np.testing.assert_array_equal(features, embed.embed_images(model, images, progress=False))


def test_embed_lazy_builds_images_only_on_a_miss():
    model = TinyModel(CountingNet())
    built = []

    def make():
        built.append(1)
        return _images(7)

    first = embed.embed_lazy(model, ["ids", list(range(7))], make, progress=False)
    second = embed.embed_lazy(model, ["ids", list(range(7))], make, progress=False)
    assert len(built) == 1
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, embed.embed(model, _images(7), use_cache=False, progress=False))
    with pytest.raises(ValueError, match="image_shape"):
        embed.embed_lazy(model, ["other"], make, image_shape=(3, 28, 28), progress=False)


def test_embed_lazy_builds_described_images_once_for_every_model():
    # every model of a chapter embeds the same augmented views: built once per process
    first_model, second_model = TinyModel(CountingNet(seed=1)), TinyModel(CountingNet(seed=2))
    second_model.info = {"name": "tiny-2"}
    built = []

    def make():
        built.append(1)
        return _images(6, seed=3)

    key = ["views", "built once", list(range(6))]
    first = embed.embed_lazy(first_model, key, make, progress=False)
    second = embed.embed_lazy(second_model, key, make, progress=False)
    assert len(built) == 1
    assert not np.array_equal(first, second)  # each model's own features, from the same images
    np.testing.assert_array_equal(second, embed.embed(second_model, _images(6, seed=3), use_cache=False,
                                                      progress=False))
    embed.embed_lazy(first_model, key + ["another description"], make, progress=False)
    assert len(built) == 2


def test_bad_inputs_raise_clear_errors():
    model = TinyModel(CountingNet())
    with pytest.raises(ValueError, match="channel axis"):
        embed.embed(model, _images(3)[:, 0], progress=False)
    with pytest.raises(ValueError, match="uint8"):
        embed.embed(model, _images(3).float(), progress=False)
    with pytest.raises(ValueError, match="empty"):
        embed.embed(model, _images(3)[:0], progress=False)
    with pytest.raises(TypeError, match="lacks .*preprocess"):
        embed.embed(object(), _images(3), progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        embed.embed_images(model, _images(3), batch_size=0, progress=False)
    with pytest.raises(ValueError, match="cannot be L2-normalised"):
        embed.l2_normalize(np.zeros((2, 4)))


def test_num_threads_is_restored():
    model = TinyModel(CountingNet())
    before = torch.get_num_threads()
    embed.embed_images(model, _images(3), num_threads=1, progress=False)
    assert torch.get_num_threads() == before


def test_interrupt_while_writing_leaves_no_entry(private_cache, monkeypatch):
    from sslgeom import cache

    model = TinyModel(CountingNet())
    images = _images(4)
    real_savez = np.savez

    def savez_then_die(handle, **arrays):
        handle.write(b"PK\x03\x04 half an archive")
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(cache.np, "savez", savez_then_die)
    with pytest.raises(KeyboardInterrupt):
        embed.embed(model, images, progress=False)
    assert list((private_cache / "features").iterdir()) == []
    monkeypatch.setattr(cache.np, "savez", real_savez)
    calls = model.backbone.calls
    features = embed.embed(model, images, progress=False)
    assert model.backbone.calls == calls + 1  # nothing half-written was read back
    np.testing.assert_array_equal(features, embed.embed(model, images, progress=False))


def test_channels_last_layout_gives_the_same_features():
    images = _images(9)
    fast = embed.embed_images(TinyModel(CountingNet()), images, channels_last=True, progress=False)
    plain = embed.embed_images(TinyModel(CountingNet()), images, channels_last=False, progress=False)
    np.testing.assert_allclose(fast, plain, rtol=1e-5, atol=1e-6)
    # The weights hash (part of the cache key) does not depend on the memory layout.
    a, b = TinyModel(CountingNet()), TinyModel(CountingNet())
    embed.embed_images(a, images, channels_last=True, progress=False)
    assert embed.model_fingerprint(a) == embed.model_fingerprint(b)
