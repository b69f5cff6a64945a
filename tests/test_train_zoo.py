"""The zoo's design and its resumable training script (``scripts/train_zoo.py``), on tiny budgets."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from sslgeom import zoo
from sslgeom.cache import file_sha256
from sslgeom.checkpoints import CheckpointError, ChecksumError
from sslgeom.train import prepare_run, train_model

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train_zoo.py"


@pytest.fixture(scope="module")
def train_zoo():
    spec = importlib.util.spec_from_file_location("train_zoo", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_zoo"] = module  # dataclasses look their module up while it loads
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("train_zoo", None)


@pytest.fixture(scope="module")
def images():
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8, generator=generator)


def _weights(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def _same(a, b):
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_seed_is_a_block_of_identical_starting_weights(train_zoo, images):
    def start(method, seed):
        run = train_zoo.plan_run(method, "convnet", seed, budget=64, fractions=(1.0,), batch_size=16, n_train=32)
        if method == "random":
            return _weights(train_model(run.config, images, progress=False).backbone)
        labels = torch.arange(len(images)) % 10
        return _weights(prepare_run(run.config, images, labels).method.backbone)

    reference = start("random", 1)
    assert _same(start("simclr", 1), reference) and _same(start("dino", 1), reference)
    assert _same(start("supervised", 1), reference)
    assert not _same(start("simclr", 2), reference)
    assert not _same(start("random", 2), reference)


def test_every_run_has_its_own_data_stream_and_the_budget_is_shared(train_zoo):
    plan = train_zoo.build_plan()
    trained = [run for run in plan if run.config.method != "random"]
    seeds = [run.config.run_seed for run in trained]
    assert len(set(seeds)) == len(seeds)
    assert len({run.run_id for run in plan}) == len(plan)
    for backbone, budget in train_zoo.BUDGET_IMAGES.items():
        assert {run.config.images for run in trained if run.config.backbone == backbone} == {budget}
    main = [run for run in trained if run.config.backbone == "convnet"]
    # 8 SSL methods x 3 seeds, plus a supervised reference per seed
    assert len(main) == 27 and {run.config.seed for run in main} == {0, 1, 2}
    assert sum(run.config.method == "random" for run in plan) == 4
    # the stated rule: 2e-3 at batch 32, scaled by the square root of the batch ratio
    assert all(run.config.lr == pytest.approx(2e-3 * (train_zoo.BATCH_SIZE / 32) ** 0.5) for run in trained)


def test_budget_checkpoints_sit_at_the_planned_image_counts(train_zoo):
    plan = {run.run_id: run for run in train_zoo.build_plan()}
    run = plan["byol-convnet-s2"]
    budget = train_zoo.BUDGET_IMAGES["convnet"]
    assert [c.images_seen for c in run.checkpoints] == [budget // 4, budget // 2, budget]
    batch = train_zoo.BATCH_SIZE
    assert [c.step for c in run.checkpoints] == [budget // (4 * batch), budget // (2 * batch), budget // batch]
    assert [c.name for c in run.checkpoints] == ["byol-convnet-s2-b025", "byol-convnet-s2-b050", "byol-convnet-s2"]
    assert [c.images_seen for c in plan["byol-resnet-s0"].checkpoints] == [train_zoo.BUDGET_IMAGES["resnet"]]
    assert [c.images_seen for c in plan["random-convnet-s1"].checkpoints] == [0]


def test_the_whole_zoo_fits_the_time_limit(train_zoo, capsys):
    assert train_zoo.estimate_seconds(train_zoo.build_plan()) <= 2.5 * 3600
    assert train_zoo.main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "40 runs, 94 checkpoints" in out and "simclr-convnet-s2" in out


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(method="mae"), "Unknown method"),
        (dict(backbone="vgg"), "Unknown backbone"),
        (dict(policy="extreme"), "Unknown augmentation policy"),
        (dict(fractions=(0.3, 1.0)), "do not fit a run of 4 steps"),
        (dict(fractions=(0.25, 0.5)), "must end at 1"),
        (dict(fractions=(0.5, 0.25, 1.0)), "do not fit a run of 4 steps"),
        (dict(budget=1000), "whole number of batches"),
    ],
)
def test_bad_names_and_budgets_raise_clear_errors(train_zoo, kwargs, message):
    # a budget of four batches: the fractions 1/4, 1/2, 1 are whole steps, 0.3 is not
    arguments = dict(method="simclr", backbone="convnet", seed=0, budget=4 * train_zoo.BATCH_SIZE,
                     fractions=(0.25, 0.5, 1.0))
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        train_zoo.plan_run(arguments.pop("method"), arguments.pop("backbone"), arguments.pop("seed"), **arguments)


def test_command_line_refuses_unknown_names(train_zoo, capsys):
    for argv in (["--dry-run", "--methods", "mae"], ["--dry-run", "--only", "simclr-convnet-s9"]):
        with pytest.raises(SystemExit):
            train_zoo.main(argv)
        error = capsys.readouterr().err
        assert "Unknown method 'mae'" in error or "unknown run ids ['simclr-convnet-s9']" in error


@pytest.mark.slow
def test_interrupted_zoo_resumes_from_its_last_checkpoint(train_zoo, tmp_path, monkeypatch, capsys):
    out, state = tmp_path / "zoo", tmp_path / "state"
    budget = 4 * train_zoo.BATCH_SIZE  # four steps: checkpoints after steps 1, 2 and 4
    argv = ["--out", str(out), "--state-dir", str(state), "--budget", str(budget), "--probe-train", "200",
            "--probe-test", "100", "--quiet", "--only", "random-convnet", "simclr-convnet-s0"]
    real_save = train_zoo.save_checkpoint

    def interrupt_at_full_budget(backbone, path):
        if Path(path).name == "simclr-convnet-s0.safetensors":
            raise KeyboardInterrupt
        return real_save(backbone, path)

    monkeypatch.setattr(train_zoo, "save_checkpoint", interrupt_at_full_budget)
    with pytest.raises(KeyboardInterrupt):
        train_zoo.main(argv)
    names = [e["name"] for e in zoo.read_manifest(out)["models"]]
    assert names == ["random-convnet", "simclr-convnet-s0-b025", "simclr-convnet-s0-b050"]
    assert (state / "simclr-convnet-s0.npz").is_file()
    mtimes = {name: (out / f"{name}.safetensors").stat().st_mtime_ns for name in names}

    monkeypatch.setattr(train_zoo, "save_checkpoint", real_save)
    calls = []
    real_train = train_zoo.train_model
    monkeypatch.setattr(train_zoo, "train_model", lambda *a, **k: calls.append(k) or real_train(*a, **k))
    assert train_zoo.main(argv) == 0
    assert [call["resume"].step for call in calls] == [2] and calls[0]["checkpoint_steps"] == [4]
    assert {name: (out / f"{name}.safetensors").stat().st_mtime_ns for name in names} == mtimes
    entries = {e["name"]: e for e in zoo.read_manifest(out)["models"]}
    full = entries["simclr-convnet-s0"]
    assert (full["run_id"], full["budget_fraction"], full["images_seen"], full["seed"]) == ("simclr-convnet-s0", 1.0, budget, 0)
    assert full["paradigm"] == "contrastive" and full["policy"] == "strong" and len(full["step_losses"]) == 4
    assert full["probe_gain_vs_random"] == pytest.approx(full["probe_accuracy"] - entries["random-convnet"]["probe_accuracy"], abs=1e-4)
    assert not (state / "simclr-convnet-s0.npz").exists()

    calls.clear()
    assert train_zoo.main(argv) == 0 and calls == []  # everything finished: nothing trains

    (out / "simclr-convnet-s0-b050.safetensors").write_bytes(b"damaged")
    with pytest.raises(ChecksumError, match="--retrain simclr-convnet-s0"):
        train_zoo.main(argv)
    (out / "simclr-convnet-s0-b050.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        train_zoo.main(argv)
    assert train_zoo.main([*argv, "--retrain", "simclr-convnet-s0"]) == 0
    assert calls[-1]["resume"] is None and calls[-1]["checkpoint_steps"] == [1, 2, 4]
    manifest = json.loads((out / "manifest.json").read_text())
    retrained = next(e for e in manifest["models"] if e["name"] == "simclr-convnet-s0-b050")
    assert file_sha256(out / "simclr-convnet-s0-b050.safetensors") == retrained["sha256"]
    assert {e["name"] for e in manifest["models"]} == set(names) | {"simclr-convnet-s0"}
