"""User registry: three releases' key layouts load through zoo.load("user/<name>"); bad entries fail clearly.

Tiny checkpoints hold random ResNet-18 weights (with BatchNorm statistics perturbed, so that a
mix-up of running statistics would show) in the layouts of three kinds of release, written out here
from the releases' documentation: a plain torchvision ``state_dict``; MoCo (``state_dict`` nesting,
``module.encoder_q.`` prefix, MLP head, key encoder and queue beside it); PyContrast (``model``
nesting, ``module.encoder.`` prefix, training options as an ``argparse.Namespace``, which only the
allowlisted loader of ``sslgeom.checkpoints`` reads). Images are 32 x 32 to keep the tests fast.
"""

import argparse
import os

import numpy as np
import pandas as pd
import pytest
import safetensors.torch
import torch
import yaml
from torch import nn
from torchvision.models import resnet18

from sslgeom import published, registry, zoo
from sslgeom.cache import file_sha256
from sslgeom.checkpoints import CheckpointError, ChecksumError
from sslgeom.registry import RegistryError

SIZE = 32


@pytest.fixture(scope="module")
def weights() -> dict[str, torch.Tensor]:
    """A ResNet-18 state_dict (with fc) of random weights and random BatchNorm statistics."""
    torch.manual_seed(0)
    state = resnet18(weights=None).state_dict()
    for key, value in state.items():
        if key.endswith("running_mean"):
            state[key] = 0.1 * torch.randn_like(value)
        elif key.endswith("running_var"):
            state[key] = 0.5 + torch.rand_like(value)
    return state


def moco_file(weights):
    backbone = {f"module.encoder_q.{k}": v for k, v in weights.items() if not k.startswith("fc.")}
    head = {"module.encoder_q.fc.0.weight": torch.randn(512, 512), "module.encoder_q.fc.0.bias": torch.randn(512),
            "module.encoder_q.fc.2.weight": torch.randn(128, 512), "module.encoder_q.fc.2.bias": torch.randn(128)}
    outside = {"module.encoder_k.conv1.weight": torch.randn(64, 3, 7, 7), "module.queue": torch.randn(128, 64),
               "module.queue_ptr": torch.zeros(1, dtype=torch.long)}
    return {"epoch": 200, "arch": "resnet18", "state_dict": {**backbone, **head, **outside},
            "optimizer": {"state": {}, "param_groups": []}}


def pycontrast_file(weights):
    backbone = {f"module.encoder.{k}": v for k, v in weights.items()}  # its own linear classifier included
    jigsaw = {"module.encoder.head_jig.fc1.weight": torch.randn(16, 512)}  # a branch under the prefix: drop it
    head = {"module.head.0.weight": torch.randn(128, 512)}
    options = argparse.Namespace(arch="resnet18", method="InsDis", learning_rate=0.03, epochs=200)
    return {"model": {**backbone, **jigsaw, **head}, "opt": options, "epoch": 200}


REGISTRY_YAML = """\
models:
  - name: plain
    file: checkpoints/plain.pth
    architecture: resnet18
    paradigm: supervised
    method: Supervised
    image_size: 32
  - name: plain-safetensors
    file: checkpoints/plain.safetensors
    architecture: resnet18
    paradigm: random
    method: Random init
    image_size: 32
    normalize: none
  - name: moco
    file: checkpoints/moco.pth.tar
    architecture: resnet18
    paradigm: contrastive
    method: MoCo-v2
    nesting: state_dict
    prefix: module.encoder_q.
    drop: [fc.]
    image_size: 32
  - name: pycontrast
    file: checkpoints/pycontrast.pth
    architecture: resnet18
    paradigm: contrastive
    method: InsDis
    nesting: [model, state_dict]
    prefix: module.encoder.
    drop: [head_jig.]
    image_size: 32
    normalize: {mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}
"""


@pytest.fixture
def user_registry(tmp_path, weights, monkeypatch, private_cache):
    """The four checkpoints and their registry, made active through ``$SSLGEOM_USER_REGISTRY``."""
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    torch.save(weights, folder / "plain.pth")
    safetensors.torch.save_file({k: v.contiguous() for k, v in weights.items()}, str(folder / "plain.safetensors"))
    torch.save(moco_file(weights), folder / "moco.pth.tar")
    torch.save(pycontrast_file(weights), folder / "pycontrast.pth")
    path = tmp_path / "registry.yaml"
    path.write_text(REGISTRY_YAML)
    monkeypatch.setenv(registry.REGISTRY_ENV, str(path))
    return path


def direct_features(weights, images, mean=published.IMAGENET_MEAN, std=published.IMAGENET_STD):
    """The same weights run by hand: torchvision ResNet-18 without its classifier, inputs standardised."""
    model = resnet18(weights=None)
    model.load_state_dict(weights)
    model.fc = nn.Identity()
    x = images.float() / 255.0
    if mean is not None:
        x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        return model.eval()(x).numpy()


NORMALISATION = {"plain": published.IMAGENET_MEAN, "plain-safetensors": None, "moco": published.IMAGENET_MEAN,
                 "pycontrast": (0.5, 0.5, 0.5)}


@pytest.mark.parametrize("name", list(NORMALISATION))
def test_every_layout_loads_and_gives_the_weights_features(name, user_registry, weights):
    images = torch.randint(0, 256, (4, 3, SIZE, SIZE), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    model = zoo.load(f"user/{name}")
    features = model.features(images)
    mean = NORMALISATION[name]
    std = None if mean is None else (published.IMAGENET_STD if mean == published.IMAGENET_MEAN else (0.25,) * 3)
    assert features.shape == (4, 512)
    np.testing.assert_allclose(features, direct_features(weights, images, mean, std), rtol=1e-5, atol=1e-5)
    assert not model.backbone.training and not any(p.requires_grad for p in model.backbone.parameters())
    info = model.info
    assert info["name"] == f"user/{name}" and info["backbone"] == "resnet18"
    assert info["sha256"] == file_sha256(info["file"]) == zoo.checkpoint_hash(f"user/{name}")


def test_registry_names_labels_and_hash_through_the_zoo(user_registry):
    expected = ["user/plain", "user/plain-safetensors", "user/moco", "user/pycontrast"]
    assert zoo.names()[-4:] == expected and registry.names() == expected
    assert zoo.check_model_names(["published/swav", "user/moco"]) == ["published/swav", "user/moco"]
    labels = zoo.model_labels(["user/moco", "user/plain"])
    pd.testing.assert_frame_equal(labels, pd.DataFrame(
        {"method": ["MoCo-v2", "Supervised"], "paradigm": ["contrastive", "supervised"],
         "backbone": ["resnet18", "resnet18"], "policy": ["user", "user"],
         # a user model is one run of its method: its own run id, seed 0, fully trained
         "run_id": ["user/moco", "user/plain"], "seed": [0, 0], "budget_fraction": [1.0, 1.0]},
        index=["user/moco", "user/plain"]))
    entry = registry.get_entry("user/moco")
    assert entry.file == user_registry.parent / "checkpoints" / "moco.pth.tar"  # relative to the YAML's folder
    assert (entry.nesting, entry.prefix, entry.drop) == (("state_dict",), "module.encoder_q.", ("fc.",))


def test_a_recorded_hash_is_verified(user_registry):
    text = user_registry.read_text()
    real = file_sha256(user_registry.parent / "checkpoints" / "plain.pth")
    with_hash = f"    image_size: 32\n    sha256: {real.upper()}\n"  # any case is accepted
    user_registry.write_text(text.replace("    image_size: 32\n", with_hash, 1))
    assert zoo.load("user/plain").info["sha256"] == real
    user_registry.write_text(text.replace("    image_size: 32\n", f"    image_size: 32\n    sha256: '{'0' * 64}'\n", 1))
    with pytest.raises(ChecksumError, match=r"SHA-256 mismatch for .*plain.pth.*update the sha256 of entry 'plain'"):
        zoo.load("user/plain")
    with pytest.raises(ChecksumError, match="SHA-256 mismatch"):
        zoo.checkpoint_hash("user/plain")


def rewrite(path, entry_name, **changes):
    """Change fields of one entry of a registry (None removes the field)."""
    document = yaml.safe_load(path.read_text())
    entry = next(e for e in document["models"] if e["name"] == entry_name)
    for field, value in changes.items():
        if value is None:
            entry.pop(field, None)
        else:
            entry[field] = value
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def test_a_wrong_prefix_says_which_keys_the_file_has(user_registry):
    rewrite(user_registry, "moco", prefix="module.encoder.")
    with pytest.raises(CheckpointError, match=r"user/moco: no key starts with the expected prefix 'module.encoder.'"
                                              r".*under 'state_dict' are \['module.encoder_q.conv1.weight'"):
        zoo.load("user/moco")


def test_a_missing_nesting_or_drop_fails_the_strict_load(user_registry):
    rewrite(user_registry, "moco", nesting=None, prefix=None)
    with pytest.raises(CheckpointError, match=r"Key layout of user/moco .* missing keys.*top-level keys are "
                                              r"\['arch', 'epoch', 'optimizer', 'state_dict'\]"):
        zoo.load("user/moco")
    rewrite(user_registry, "pycontrast", drop=None)
    with pytest.raises(CheckpointError, match=r"1 unexpected keys \['head_jig.fc1.weight'\]"):
        zoo.load("user/pycontrast")


def test_a_valid_but_wrong_architecture_fails_the_strict_load(user_registry):
    rewrite(user_registry, "plain", architecture="resnet34")
    with pytest.raises(CheckpointError, match="Key layout of user/plain .* missing keys"):
        zoo.load("user/plain")


def test_a_missing_file_says_where_it_was_looked_for(user_registry):
    (user_registry.parent / "checkpoints" / "moco.pth.tar").unlink()
    with pytest.raises(FileNotFoundError, match=r"user/moco: checkpoint file .*moco.pth.tar does not exist "
                                                r"\(field 'file' of entry 'moco'"):
        zoo.load("user/moco")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        zoo.checkpoint_hash("user/moco")


class NotAllowed:
    """A class a checkpoint may pickle but the allowlist does not admit."""


def test_pickled_objects_outside_the_allowlist_are_refused(user_registry, weights):
    torch.save({"state_dict": weights, "extra": NotAllowed()}, user_registry.parent / "checkpoints" / "plain.pth")
    with pytest.raises(CheckpointError, match="Refused to read .*NotAllowed"):
        zoo.load("user/plain")


def test_names_in_no_registry(user_registry, monkeypatch):
    with pytest.raises(ValueError, match=r"Unknown user model 'user/nope': the user registry .* lists \['user/plain'"):
        zoo.load("user/nope")
    with pytest.raises(ValueError, match=r"unknown model\(s\) \['user/nope'\]"):
        zoo.check_model_names(["user/nope"])
    monkeypatch.delenv(registry.REGISTRY_ENV)
    assert not any(name.startswith("user/") for name in zoo.names())
    with pytest.raises(ValueError, match=r"no user registry is active: set \$SSLGEOM_USER_REGISTRY"):
        zoo.load("user/plain")
    with pytest.raises(ValueError, match="no user registry is active"):
        zoo.checkpoint_hash("user/plain")
    monkeypatch.setenv(registry.REGISTRY_ENV, str(user_registry.parent / "missing.yaml"))
    with pytest.raises(FileNotFoundError, match=r"\$SSLGEOM_USER_REGISTRY=.*missing.yaml.* does not exist"):
        zoo.names()


def test_use_registry_sets_and_restores_the_variable(user_registry, monkeypatch):
    monkeypatch.delenv(registry.REGISTRY_ENV)
    with registry.use_registry(user_registry) as entries:
        assert list(entries) == ["plain", "plain-safetensors", "moco", "pycontrast"]
        assert "user/moco" in zoo.names()
    assert registry.REGISTRY_ENV not in os.environ
    monkeypatch.setenv(registry.REGISTRY_ENV, "/elsewhere.yaml")
    with pytest.raises(RuntimeError, match="inside"):
        with registry.use_registry(user_registry):
            raise RuntimeError("inside")
    assert os.environ[registry.REGISTRY_ENV] == "/elsewhere.yaml"
    with pytest.raises(FileNotFoundError, match="User registry .*nowhere.yaml does not exist"):
        with registry.use_registry(user_registry.parent / "nowhere.yaml"):
            pass


GOOD = {"name": "m", "file": "m.pth", "architecture": "resnet18", "paradigm": "contrastive", "method": "SimCLR"}


@pytest.mark.parametrize("change, message", [
    ({"architecture": "resnet99"}, r"entry 1 \('m'\), field 'architecture': unknown torchvision architecture "
                                   r"'resnet99'\. Did you mean \["),
    ({"paradigm": "self-supervised"}, r"field 'paradigm': unknown paradigm 'self-supervised'.*Allowed: contrastive"),
    ({"sha256": "abc123"}, r"field 'sha256': expected 64 hexadecimal digits"),
    ({"sha256": "g" * 64}, r"field 'sha256': expected 64 hexadecimal digits"),
    ({"prefx": "module."}, r"entry 1 \('m'\): unknown field\(s\) \['prefx'\]"),
    ({"method": None}, r"missing required field\(s\) \['method'\]"),
    ({"file": 3}, r"field 'file': expected a string, got 3"),
    ({"name": "my/model"}, r"field 'name': 'my/model' is not a valid name"),
    ({"drop": "fc."}, r"field 'drop': expected a list of strings"),
    ({"nesting": [1]}, r"field 'nesting': expected a string or a list of strings"),
    ({"image_size": True}, r"field 'image_size': expected an integer of at least 16"),
    ({"normalize": "yes"}, r"field 'normalize': expected imagenet, none, or"),
    ({"normalize": {"mean": [0.5, 0.5], "std": [1, 1, 1]}}, r"mean must be a list of 3 numbers"),
    ({"normalize": {"mean": [0, 0, 0], "std": [1, 0, 1]}}, r"std must be positive"),
])
def test_invalid_entries_name_the_entry_and_the_field(tmp_path, change, message):
    entry = {**GOOD, **change}
    entry = {k: v for k, v in entry.items() if v is not None}
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump({"models": [entry]}))
    with pytest.raises(RegistryError, match=rf"User registry {path}, {message}" if "entry 1" in message else message):
        registry.read_registry(path)


@pytest.mark.parametrize("text, message", [
    ("models: [", "is not valid YAML"),
    ("- name: m\n", "expected one top-level key 'models'"),
    ("models: []\n", "lists no models"),
    ("models:\n  - name: m\n    name: n\n", "the key 'name' is given twice"),
    ("models:\n  - just a string\n", r"entry 1 \(without a name\): expected a mapping of fields"),
])
def test_invalid_files_are_refused(tmp_path, text, message):
    path = tmp_path / "registry.yaml"
    path.write_text(text)
    with pytest.raises(RegistryError, match=message):
        registry.read_registry(path)


def test_duplicate_names_are_refused(tmp_path):
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump({"models": [GOOD, dict(GOOD, file="other.pth")]}))
    with pytest.raises(RegistryError, match="entry 2: the name 'm' is used twice"):
        registry.read_registry(path)


def test_the_classifier_is_the_last_linear_layer():
    model, head = registry.build_architecture("resnet18")
    assert head == "fc" and isinstance(model.fc, nn.Identity)
    _, head = registry.build_architecture("mobilenet_v3_small")
    assert head == "classifier.3"
    with pytest.raises(CheckpointError, match="'squeezenet1_0' has no linear classifier"):
        registry.build_architecture("squeezenet1_0")


def test_user_models_go_through_the_feature_cache(user_registry):
    from sslgeom import embed

    images = torch.randint(0, 256, (3, 3, SIZE, SIZE), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    cached = embed.embed("user/moco", images, progress=False)
    assert cached.shape == (3, 512)
    np.testing.assert_allclose(cached, zoo.load("user/moco").features(images), rtol=1e-5, atol=1e-5)


def test_the_input_size_variable_overrides_the_entry_s_size(user_registry, monkeypatch):
    monkeypatch.setenv(published.INPUT_SIZE_ENV, "48")
    model = zoo.load("user/moco")
    assert model.info["image_size"] == 48
    assert model.preprocess(torch.zeros(2, 3, 20, 20, dtype=torch.uint8)).shape == (2, 3, 48, 48)
    monkeypatch.delenv(published.INPUT_SIZE_ENV)
    assert zoo.load("user/moco").info["image_size"] == SIZE  # the entry's own
