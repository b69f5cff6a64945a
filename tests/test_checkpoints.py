"""Checkpoint files: round trip, checksums, unreadable files, key layouts; and no import circle."""

import hashlib
import json
import subprocess
import sys

import pytest
import torch

from sslgeom import checkpoints
from sslgeom.checkpoints import CheckpointError, ChecksumError
from sslgeom.models import build_backbone


@pytest.fixture
def saved(tmp_path):
    """A ConvNet saved as a half-precision safetensors checkpoint: (path, backbone, sha256)."""
    backbone = build_backbone("convnet", seed=3).eval()
    path = tmp_path / "tiny.safetensors"
    return path, backbone, checkpoints.save_checkpoint(backbone, path)


def test_save_returns_the_file_hash_and_round_trips_in_half_precision(saved):
    path, backbone, sha = saved
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest()
    state = checkpoints.read_checkpoint(path, expected_sha256=sha.upper())  # any case of the hex digest
    reference = backbone.state_dict()
    assert set(state) == set(reference)
    for key, value in state.items():
        if value.is_floating_point():
            assert value.dtype == torch.float16
            assert torch.equal(value, reference[key].half())
    fresh = checkpoints.load_state_strict(build_backbone("convnet", seed=0), state, source="tiny")
    for key, value in fresh.state_dict().items():
        assert value.dtype == reference[key].dtype
        assert torch.equal(value, state[key].to(value.dtype))


def test_missing_file_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="make zoo"):
        checkpoints.read_checkpoint(tmp_path / "absent.safetensors")


def test_truncated_file_fails_the_checksum(saved):
    path, _, sha = saved
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ChecksumError, match="SHA-256 mismatch") as error:
        checkpoints.read_checkpoint(path, expected_sha256=sha)
    assert sha in str(error.value) and hashlib.sha256(path.read_bytes()).hexdigest() in str(error.value)


def test_corrupt_file_without_a_hash_is_reported(saved):
    path, _, _ = saved
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="truncated or not a checkpoint of this format"):
        checkpoints.read_checkpoint(path)


def test_written_files_hold_no_pickle_and_are_deterministic(saved, tmp_path):
    path, backbone, sha = saved
    raw = path.read_bytes()
    header_length = int.from_bytes(raw[:8], "little")  # safetensors: u64 header size, JSON header, tensors
    header = json.loads(raw[8 : 8 + header_length])
    assert set(header) - {"__metadata__"} == set(backbone.state_dict())
    assert not raw.startswith((b"\x80", b"PK"))  # neither a pickle (protocol 2+) nor a torch zip archive
    assert checkpoints.save_checkpoint(backbone, tmp_path / "again.safetensors") == sha


def test_only_safetensors_are_written(tmp_path):
    with pytest.raises(ValueError, match=r"name the file \*\.safetensors"):
        checkpoints.save_checkpoint(build_backbone("convnet"), tmp_path / "model.pt")


def test_torch_files_are_read_without_running_pickled_code(saved, tmp_path):
    _, backbone, _ = saved
    legacy = tmp_path / "release.pth"  # the published releases and the first zoo are torch files
    torch.save(backbone.state_dict(), legacy)
    assert set(checkpoints.read_checkpoint(legacy)) == set(backbone.state_dict())
    hostile = tmp_path / "hostile.pt"
    torch.save({"weights": torch.zeros(2), "payload": _Payload()}, hostile)
    with pytest.raises(CheckpointError, match="Refused to read .*hostile.pt: it pickles the object .*print"):
        checkpoints.read_checkpoint(hostile)
    with pytest.raises(CheckpointError, match="Unknown checkpoint format model.bin"):
        (tmp_path / "model.bin").write_bytes(b"x")
        checkpoints.read_checkpoint(tmp_path / "model.bin")


class _Payload:
    """An object that weights_only loading must refuse to rebuild."""

    def __reduce__(self):
        return (print, ("this must never run",))


def test_prefix_checksum_and_its_message(saved):
    path, _, sha = saved
    checkpoints.verify_sha256(path, sha[:8], prefix=True)  # a published prefix that matches
    with pytest.raises(ChecksumError, match="a hash starting with 0badc0de.*download it again from https://x"):
        checkpoints.verify_sha256(path, "0BADC0DE", prefix=True, fix="download it again from https://x")
    with pytest.raises(ChecksumError):
        checkpoints.verify_sha256(path, sha[:8])  # without prefix=True the whole hash must match


def test_key_layout_and_shape_mismatches_are_listed(saved):
    path, _, _ = saved
    state = checkpoints.read_checkpoint(path)
    with pytest.raises(CheckpointError, match="missing keys .*unexpected keys"):
        checkpoints.load_state_strict(build_backbone("resnet"), state, source="tiny")
    renamed = dict(state)
    renamed["extra.weight"] = renamed.pop(next(iter(renamed)))
    with pytest.raises(CheckpointError, match=r"1 missing keys .*1 unexpected keys \['extra.weight'\]"):
        checkpoints.load_state_strict(build_backbone("convnet"), renamed, source="tiny")
    key = next(k for k, v in state.items() if v.ndim == 4)
    reshaped = dict(state, **{key: torch.zeros(1, 1, 1, 1)})
    with pytest.raises(CheckpointError, match="Shapes in tiny do not match"):
        checkpoints.load_state_strict(build_backbone("convnet"), reshaped, source="tiny")


def test_freeze_sets_eval_mode_without_gradients():
    backbone = checkpoints.freeze(build_backbone("convnet").train(), "cpu")
    assert not backbone.training and not any(p.requires_grad for p in backbone.parameters())


@pytest.mark.parametrize(("module", "must_not_load"), [
    ("sslgeom.checkpoints", ["sslgeom.zoo", "sslgeom.published"]),
    ("sslgeom.published", ["sslgeom.zoo"]),
    ("sslgeom.zoo", []),
])
def test_no_import_circle_between_zoo_registry_and_checkpoints(module, must_not_load):
    """Importing a module alone, in a fresh interpreter, loads none of the modules above it."""
    code = (f"import sys, importlib; importlib.import_module({module!r}); "
            f"print(','.join(m for m in {must_not_load!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"importing {module} also imported {result.stdout.strip()}"


def test_published_source_does_not_name_the_zoo_module():
    """A lazy import inside a function would not show in sys.modules at import time: check the source."""
    import inspect

    from sslgeom import published

    source = inspect.getsource(published)
    assert "from sslgeom import zoo" not in source and "sslgeom.zoo" not in source
    assert "from . import zoo" not in source and "from .zoo" not in source
