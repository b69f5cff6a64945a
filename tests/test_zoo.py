"""The committed default zoo loads through one API, checksums are enforced, bad files fail clearly."""

import pytest
import torch

from sslgeom import zoo
from sslgeom.models import build_backbone
from sslgeom.zoo import CheckpointError, ChecksumError

PARADIGMS = {"contrastive", "non-contrastive", "clustering", "supervised", "random"}
COMMITTED = zoo.read_manifest()["models"]


def test_manifest_describes_a_complete_zoo():
    assert COMMITTED, "data/zoo/manifest.json is missing or empty: run `make zoo`"
    required = {"name", "method", "paradigm", "backbone", "policy", "seed", "epochs", "train_seconds", "final_loss",
                "sha256", "probe_accuracy", "knn_accuracy", "effective_rank", "file", "epoch_losses", "step_losses"}
    for entry in COMMITTED:
        assert required <= set(entry), f"{entry['name']} lacks {required - set(entry)}"
        assert entry["paradigm"] in PARADIGMS
    ssl = [e for e in COMMITTED if e["paradigm"] not in ("supervised", "random")]
    assert len(ssl) >= 18
    for paradigm in ("contrastive", "non-contrastive", "clustering"):
        assert sum(e["paradigm"] == paradigm for e in ssl) >= 3
    assert len({e["backbone"] for e in ssl}) >= 2
    assert len({(e["policy"], e["seed"]) for e in ssl}) >= 2
    total = sum((zoo.zoo_dir() / e["file"]).stat().st_size for e in COMMITTED)
    assert total <= 40 * 2**20


def test_every_ssl_model_beats_random_init_by_two_points():
    random_probe = {e["backbone"]: e["probe_accuracy"] for e in COMMITTED if e["paradigm"] == "random"}
    for entry in COMMITTED:
        if entry["paradigm"] in ("supervised", "random"):
            continue
        gain = entry["probe_accuracy"] - random_probe[entry["backbone"]]
        assert gain >= 0.02, f"{entry['name']} beats random init by only {gain:.4f}"
        assert entry["effective_rank"] > 2, f"{entry['name']} looks collapsed"


@pytest.mark.parametrize("name", [e["name"] for e in COMMITTED])
def test_committed_checkpoint_loads_with_verified_hash(name):
    model = zoo.load(name)
    assert model.info["sha256"] == zoo.checkpoint_hash(name)
    images = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    features = model.features(images)
    assert features.shape == (3, model.backbone.feature_dim)
    assert torch.isfinite(torch.from_numpy(features)).all()
    assert not model.backbone.training


def test_names_lists_default_and_published_models():
    listed = zoo.names()
    assert [e["name"] for e in COMMITTED if e["name"] not in listed] == []
    assert "published/swav" in listed
    frame = zoo.manifest()
    assert len(frame) == len(COMMITTED) and "step_losses" not in frame.columns


def test_unknown_name_lists_available():
    with pytest.raises(ValueError, match="Available models"):
        zoo.load("no-such-model")


@pytest.fixture
def fake_zoo(tmp_path, monkeypatch):
    """A one-model zoo in a temporary directory."""
    monkeypatch.setenv(zoo.ZOO_ENV, str(tmp_path))
    backbone = build_backbone("convnet", seed=3).eval()
    sha = zoo.save_checkpoint(backbone, tmp_path / "tiny.pt")
    entry = {"name": "tiny", "method": "random", "paradigm": "random", "backbone": "convnet", "file": "tiny.pt",
             "sha256": sha}
    zoo.write_manifest({"models": [entry]}, tmp_path)
    return tmp_path, backbone, entry


def test_half_precision_round_trip_keeps_features(fake_zoo):
    _, backbone, _ = fake_zoo
    model = zoo.load("tiny")
    images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    with torch.no_grad():
        expected = backbone(model.preprocess(images))
    assert torch.allclose(torch.from_numpy(model.features(images)), expected, atol=2e-2, rtol=2e-2)


def test_missing_checkpoint(fake_zoo):
    directory, _, _ = fake_zoo
    (directory / "tiny.pt").unlink()
    with pytest.raises(FileNotFoundError, match="make zoo"):
        zoo.load("tiny")


def test_truncated_checkpoint_fails_checksum(fake_zoo):
    directory, _, _ = fake_zoo
    path = directory / "tiny.pt"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ChecksumError, match="SHA-256 mismatch"):
        zoo.load("tiny")


def test_corrupt_file_with_matching_hash_is_reported(fake_zoo):
    directory, _, entry = fake_zoo
    path = directory / "tiny.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="truncated or not a torch checkpoint"):
        zoo.read_checkpoint(path)


def test_key_layout_mismatch_lists_keys(fake_zoo):
    directory, _, entry = fake_zoo
    entry = dict(entry, backbone="resnet")  # convnet weights declared as a resnet
    zoo.write_manifest({"models": [entry]}, directory)
    with pytest.raises(CheckpointError, match="missing keys .*unexpected keys"):
        zoo.load("tiny")


def test_corrupt_manifest(fake_zoo):
    directory, _, _ = fake_zoo
    (directory / "manifest.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        zoo.names()


@pytest.mark.slow
def test_train_zoo_script_is_resumable(tmp_path, capsys):
    """A tiny zoo trains, loads, and a second run skips what is finished; a changed file is retrained."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_zoo", zoo.REPO_ROOT / "scripts" / "train_zoo.py")
    train_zoo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_zoo)
    args = ["--out", str(tmp_path), "--epochs", "1", "--n-train", "64", "--batch-size", "32", "--probe-train", "200",
            "--probe-test", "100", "--workers", "1", "--only", "random-convnet", "simclr-convnet-s0"]
    assert train_zoo.main(args) == 0
    manifest = zoo.read_manifest(tmp_path)
    assert [e["name"] for e in manifest["models"]] == ["random-convnet", "simclr-convnet-s0"]
    simclr = manifest["models"][1]
    assert simclr["paradigm"] == "contrastive" and len(simclr["step_losses"]) == 2
    assert simclr["probe_gain_vs_random"] == pytest.approx(
        simclr["probe_accuracy"] - manifest["models"][0]["probe_accuracy"], abs=1e-4)
    first_mtime = (tmp_path / "simclr-convnet-s0.pt").stat().st_mtime_ns
    capsys.readouterr()
    assert train_zoo.main(args) == 0
    assert "2 of 2 models already trained; training 0" in capsys.readouterr().out
    assert (tmp_path / "simclr-convnet-s0.pt").stat().st_mtime_ns == first_mtime
    (tmp_path / "random-convnet.pt").write_bytes(b"damaged")
    assert train_zoo.main(args) == 0
    assert "1 of 2 models already trained; training 1" in capsys.readouterr().out
