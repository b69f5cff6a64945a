"""Published ResNet-50 checkpoints: every release's key layout loads; bad files fail clearly.

Fake checkpoints reproduce each release's nesting, prefixes and extra keys (written out here from
the releases' documentation, independently of the registry) with random weights. To keep the
tests fast they use a narrow ResNet-50 (same key names and block counts, fewer channels inside the
bottlenecks); one test checks the key names against torchvision's ResNet-50 and one loads a full-size
fake through ``zoo.load``.
"""

import argparse
import inspect
import copy
import dataclasses
import functools
import io
import os
import urllib.error

import pytest
import torch
from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet

from sslgeom import published, zoo
from sslgeom import checkpoints
from sslgeom.checkpoints import CheckpointError, ChecksumError


@functools.cache
def _narrow_template() -> nn.Module:
    model = ResNet(Bottleneck, [3, 4, 6, 3], width_per_group=4)
    model.fc = nn.Identity()
    return model


def narrow_resnet50() -> nn.Module:
    """ResNet-50 key names and block counts, narrow bottlenecks (copied: initialisation is slow)."""
    return copy.deepcopy(_narrow_template())


MOCO_EXTRA = {"module.encoder_k.conv1.weight": (64, 3, 7, 7), "module.queue": (128, 65536), "module.queue_ptr": (1,)}
MLP_FC = ("fc.0.weight", "fc.0.bias", "fc.2.weight", "fc.2.bias")
SWAV_HEADS = ("projection_head.0.weight", "projection_head.0.bias", "projection_head.1.weight",
              "projection_head.1.running_mean", "projection_head.3.weight", "prototypes.weight")
PYCONTRAST_EXTRA = {"module.head.0.weight": (2048, 2048), "module.head.2.weight": (128, 2048)}

# release -> (nesting key or None, backbone prefix, head keys under the prefix, keys outside it)
LAYOUTS = {
    "insdis": ("model", "module.encoder.", ("fc.weight",), PYCONTRAST_EXTRA),
    "moco-v1": ("state_dict", "module.encoder_q.", ("fc.weight", "fc.bias"), MOCO_EXTRA),
    "pcl-v1": ("state_dict", "module.encoder_q.", ("fc.weight", "fc.bias"), MOCO_EXTRA),
    "pirl": ("model", "module.encoder.", (), {**PYCONTRAST_EXTRA, "module.head_jig.fc1.weight": (128, 2048)}),
    "pcl-v2": ("state_dict", "module.encoder_q.", MLP_FC, MOCO_EXTRA),
    "simclr-v1": ("state_dict", "", ("fc.weight", "fc.bias"), {}),
    "moco-v2": ("state_dict", "module.encoder_q.", MLP_FC, MOCO_EXTRA),
    "simclr-v2": (None, "", ("fc.weight", "fc.bias"), {}),
    "sela-v2": (None, "module.", SWAV_HEADS, {}),
    "infomin": ("model", "module.encoder.", (), {**PYCONTRAST_EXTRA, "module.head_jig.fc1.weight": (128, 2048)}),
    "byol": ("state_dict", "", ("fc.weight", "fc.bias"), {}),
    "deepcluster-v2": (None, "module.", ("projection_head.0.weight", "prototypes.prototypes0.weight",
                                        "prototypes.prototypes1.weight"), {}),
    "swav": (None, "module.", SWAV_HEADS, {}),
    "supervised": (None, "", ("fc.weight", "fc.bias"), {}),
    "barlowtwins": (None, "", (), {}),
    "vicreg": (None, "", (), {}),
    "dino-resnet50": (None, "", (), {}),
    "moco-v3": ("state_dict", "module.base_encoder.", ("fc.0.weight", "fc.1.weight", "fc.1.running_mean", "fc.3.weight"),
                {"module.momentum_encoder.conv1.weight": (64, 3, 7, 7), "module.predictor.0.weight": (4096, 256)}),
}


@pytest.fixture(scope="module")
def backbone_state():
    torch.manual_seed(0)
    return {k: v.half() if v.is_floating_point() else v for k, v in narrow_resnet50().state_dict().items()}


def fake_checkpoint(key, backbone_state):
    """Build the object a release's file holds, with random small tensors for heads and extras."""
    nesting, prefix, heads, outside = LAYOUTS[key]
    state = {prefix + k: v for k, v in backbone_state.items()}
    state.update({prefix + k: torch.randn(4, 4).half() for k in heads})
    state.update({k: torch.zeros(shape[:1]) for k, shape in outside.items()})
    if nesting is None:
        return state
    return {nesting: state, "epoch": 200, "arch": "resnet50", "optimizer": {"state": {}, "param_groups": []}}


@pytest.fixture
def checkpoint_dir(tmp_path, monkeypatch, private_cache):
    """``$SSLGEOM_CHECKPOINTS`` in a temporary directory, with the private cache in its ``cache/``."""
    monkeypatch.setenv(published.CHECKPOINTS_ENV, str(tmp_path))
    return tmp_path


def without_hash(monkeypatch, key):
    spec = dataclasses.replace(published.REGISTRY[key], sha256=None, sha256_prefix=None)
    monkeypatch.setitem(published.REGISTRY, key, spec)


def test_registry_covers_ericsson_set_and_later_releases():
    ericsson = {"insdis", "moco-v1", "pcl-v1", "pirl", "pcl-v2", "simclr-v1", "moco-v2", "simclr-v2", "sela-v2",
                "infomin", "byol", "deepcluster-v2", "swav", "supervised"}
    later = {"barlowtwins", "vicreg", "dino-resnet50", "moco-v3"}
    assert ericsson | later == set(published.names()) == set(LAYOUTS)
    for key in published.names():
        spec = published.get_spec(key)
        assert spec.paradigm in {"contrastive", "non-contrastive", "clustering", "supervised"}
        assert spec.url.startswith("https://")
        assert spec.normalize == (not key.startswith("simclr")), key



def test_specs_and_user_entries_share_one_key_layout():
    from pathlib import Path

    from sslgeom.registry import UserEntry

    spec = published.PublishedSpec("k", "K", "contrastive", "https://example.org/k.pth", "k.pth")
    entry = UserEntry("u", Path("u.pth"), "resnet18", "contrastive", "U")
    assert isinstance(spec, published.KeyLayout) and isinstance(entry, published.KeyLayout)
    # the defaults stay each registry's own: a published release drops torchvision's fc unless told otherwise
    assert (spec.nesting, spec.prefix, spec.drop) == ((), "", ("fc.",))
    assert (entry.nesting, entry.prefix, entry.drop) == ((), "", ())
    moved = dataclasses.replace(spec, nesting=("state_dict",), prefix="module.")
    assert (moved.nesting, moved.prefix, moved.drop, moved.key) == (("state_dict",), "module.", ("fc.",), "k")
    with pytest.raises(TypeError):
        published.PublishedSpec("k", "K", "contrastive", "https://example.org/k.pth", "k.pth", True, None, None, "",
                                ("state_dict",))  # the layout is keyword-only

def test_fake_key_names_are_torchvision_resnet50_names():
    from torchvision.models import resnet50

    real = {k for k in resnet50(weights=None).state_dict() if not k.startswith("fc.")}
    assert set(narrow_resnet50().state_dict()) == real


@pytest.mark.parametrize("key", list(LAYOUTS))
def test_every_published_layout_loads(key, backbone_state, checkpoint_dir, monkeypatch):
    without_hash(monkeypatch, key)
    spec = published.get_spec(key)
    torch.save(fake_checkpoint(key, backbone_state), checkpoint_dir / spec.filename)
    model = published.load_published(key, backbone_factory=narrow_resnet50, image_size=32)
    loaded = model.backbone.state_dict()
    for name in ("conv1.weight", "layer4.2.bn3.running_var", "layer3.0.downsample.0.weight"):
        assert torch.equal(loaded[name], backbone_state[name].float())
    images = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    features = model.backbone(model.preprocess(images))
    assert features.shape == (2, 2048) and torch.isfinite(features).all()
    assert model.info["paradigm"] == spec.paradigm and len(model.info["sha256"]) == 64


def test_zoo_load_full_size_resnet50(checkpoint_dir):
    torch.manual_seed(0)
    state = {k: v.half() if v.is_floating_point() else v for k, v in published.resnet50_backbone().state_dict().items()}
    raw = {"state_dict": {"module.encoder_q." + k: v for k, v in state.items()}, "epoch": 800}
    torch.save(raw, checkpoint_dir / published.get_spec("moco-v2").filename)
    model = zoo.load("published/moco-v2")
    assert torch.equal(model.backbone.state_dict()["layer1.0.conv1.weight"], state["layer1.0.conv1.weight"].float())
    assert model.preprocess(torch.zeros(1, 1, 28, 28, dtype=torch.uint8)).shape == (1, 3, 224, 224)
    assert "published/moco-v2" in zoo.names()


def test_missing_file_says_where_to_put_it(checkpoint_dir):
    with pytest.raises(FileNotFoundError) as error:
        zoo.load("published/swav")
    message = str(error.value)
    assert "swav_800ep_pretrain.pth.tar" in message and str(checkpoint_dir) in message
    assert published.get_spec("swav").url in message and published.CHECKPOINTS_ENV in message


def test_offline_download_says_where_to_put_the_file(checkpoint_dir, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(published.urllib.request, "urlopen", offline)
    with pytest.raises(ConnectionError, match="put it at .*selav2_400ep_pretrain.pth.tar"):
        published.download("sela-v2")


def test_checksum_mismatch(checkpoint_dir, backbone_state):
    spec = published.get_spec("supervised")
    torch.save(fake_checkpoint("supervised", backbone_state), checkpoint_dir / spec.filename)
    with pytest.raises(ChecksumError, match="19c8e357"):
        published.load_published("supervised", backbone_factory=narrow_resnet50)


def test_truncated_file(checkpoint_dir, backbone_state, monkeypatch):
    without_hash(monkeypatch, "swav")
    path = checkpoint_dir / published.get_spec("swav").filename
    torch.save(fake_checkpoint("swav", backbone_state), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        published.load_published("swav", backbone_factory=narrow_resnet50)


def test_layout_mismatch_lists_missing_and_unexpected_keys(checkpoint_dir, backbone_state, monkeypatch):
    without_hash(monkeypatch, "vicreg")
    raw = fake_checkpoint("vicreg", backbone_state)
    del raw["layer2.1.conv2.weight"]
    raw["layer5.0.conv1.weight"] = torch.zeros(3)
    torch.save(raw, checkpoint_dir / published.get_spec("vicreg").filename)
    with pytest.raises(CheckpointError) as error:
        published.load_published("vicreg", backbone_factory=narrow_resnet50)
    assert "layer2.1.conv2.weight" in str(error.value) and "layer5.0.conv1.weight" in str(error.value)
    assert "1 missing" in str(error.value) and "1 unexpected" in str(error.value)


def test_wrong_nesting_or_prefix(checkpoint_dir, backbone_state, monkeypatch):
    without_hash(monkeypatch, "moco-v2")
    path = checkpoint_dir / published.get_spec("moco-v2").filename
    torch.save(fake_checkpoint("supervised", backbone_state), path)  # flat file where a nested one is expected
    with pytest.raises(CheckpointError, match="state_dict"):
        published.load_published("moco-v2", backbone_factory=narrow_resnet50)
    torch.save({"state_dict": fake_checkpoint("swav", backbone_state)}, path)  # nested, wrong prefix
    with pytest.raises(CheckpointError, match="module.encoder_q."):
        published.load_published("moco-v2", backbone_factory=narrow_resnet50)


def test_pickled_options_load_and_other_objects_are_refused_before_they_run(
    checkpoint_dir, backbone_state, monkeypatch, tmp_path
):
    without_hash(monkeypatch, "infomin")
    raw = fake_checkpoint("infomin", backbone_state)
    raw["opt"] = argparse.Namespace(arch="resnet50")  # what the PyContrast releases store
    path = checkpoint_dir / published.get_spec("infomin").filename
    torch.save(raw, path)
    assert published.load_published("infomin", backbone_factory=narrow_resnet50).info["method"] == "InfoMin"
    marker = tmp_path / "payload-ran"
    raw["opt"] = _Payload(marker)
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="Refused to read .*pickles the object .*nothing was loaded"):
        published.load_published("infomin", backbone_factory=narrow_resnet50)
    assert not marker.exists()
    assert "allow_pickle" not in inspect.signature(published.load_published).parameters


class _Payload:
    """Creates a file if it is ever unpickled."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_preprocess_for_imagenet_models():
    images = torch.full((2, 1, 28, 28), 255, dtype=torch.uint8)
    raw = published.imagenet_preprocess(images, size=64, normalize=False)
    assert raw.shape == (2, 3, 64, 64) and torch.allclose(raw, torch.ones_like(raw))
    normed = published.imagenet_preprocess(images, size=64)
    expected = (1 - torch.tensor(published.IMAGENET_MEAN)) / torch.tensor(published.IMAGENET_STD)
    assert torch.allclose(normed[0, :, 0, 0], expected)
    with pytest.raises(ValueError, match="uint8"):
        published.imagenet_preprocess(images.float())


def test_unknown_published_name_lists_available():
    with pytest.raises(ValueError, match="published/moco-v2"):
        zoo.load("published/mae")
    with pytest.raises(ValueError, match="known: insdis"):
        published.get_spec("mae")


class _FakeResponse(io.BytesIO):
    """Stands in for an HTTP response (no network in tests)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_download_into_cache_and_verification(checkpoint_dir, monkeypatch):
    payload = b"pretend weights"
    monkeypatch.setattr(published.urllib.request, "urlopen", lambda url, timeout: _FakeResponse(payload))
    path = published.download("vicreg")  # no known hash: stored as is
    assert path == checkpoint_dir / "cache" / "published" / "vicreg_resnet50.pth" and path.read_bytes() == payload
    with pytest.raises(ChecksumError):
        published.download("supervised")  # published hash prefix does not match the payload
    assert not (checkpoint_dir / "cache" / "published" / "resnet50-19c8e357.pth").exists()


def test_several_checkpoint_folders_are_searched_in_order(checkpoint_dir, tmp_path, backbone_state, monkeypatch):
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.setenv(published.CHECKPOINTS_ENV, os.pathsep.join([str(other), str(checkpoint_dir)]))
    without_hash(monkeypatch, "vicreg")
    torch.save(fake_checkpoint("vicreg", backbone_state), checkpoint_dir / published.get_spec("vicreg").filename)
    assert published.search_dirs()[:2] == [other, checkpoint_dir]
    assert published.find_checkpoint("vicreg") == checkpoint_dir / "vicreg_resnet50.pth"


def test_the_input_size_variable_sets_every_release_s_input(checkpoint_dir, backbone_state, monkeypatch):
    without_hash(monkeypatch, "vicreg")
    torch.save(fake_checkpoint("vicreg", backbone_state), checkpoint_dir / published.get_spec("vicreg").filename)
    monkeypatch.setenv(published.INPUT_SIZE_ENV, "48")
    model = published.load_published("vicreg", backbone_factory=narrow_resnet50)
    assert model.info["image_size"] == 48
    assert model.preprocess(torch.zeros(1, 1, 28, 28, dtype=torch.uint8)).shape == (1, 3, 48, 48)
    for bad in ("8", "large", "-3", "32.5"):
        monkeypatch.setenv(published.INPUT_SIZE_ENV, bad)
        with pytest.raises(ValueError, match="SSLGEOM_INPUT_SIZE.*at least 16"):
            published.input_size()
    monkeypatch.delenv(published.INPUT_SIZE_ENV)
    assert published.input_size() == 224


def test_release_files_read_in_threads_keep_the_allowlist(checkpoint_dir, backbone_state):
    """torch's allowlist context is process-wide: concurrent reads must not drop each other's allowed class."""
    from concurrent.futures import ThreadPoolExecutor

    path = checkpoint_dir / published.get_spec("insdis").filename
    raw = fake_checkpoint("insdis", backbone_state)
    raw["opt"] = argparse.Namespace(arch="resnet50")
    torch.save(raw, path)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: checkpoints.read_checkpoint(path), range(8)))
    assert all(isinstance(result["opt"], argparse.Namespace) for result in results)
