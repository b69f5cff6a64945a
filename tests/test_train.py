"""Every method trains: finite losses, weights move, runs are reproducible and resume exactly, bad configs fail clearly."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from sslgeom.models import build_backbone
from sslgeom.ssl_methods import METHODS, get_method
from sslgeom.train import TrainConfig, _learning_rate, check_checkpoint_steps, prepare_run, train_model
from sslgeom.train_state import load_training_state, save_training_state

TRAINED = [name for name, spec in METHODS.items() if spec.build is not None]


@pytest.fixture(scope="module")
def tiny_data():
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 1, 28, 28), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (40,), generator=generator)
    return images, labels


def _tiny_config(method, backbone="convnet", **kwargs):
    return TrainConfig(method=method, backbone=backbone, epochs=1, n_train=32, batch_size=16, **kwargs)


@pytest.mark.parametrize("backbone", ["convnet", "resnet"])
@pytest.mark.parametrize("method", TRAINED)
def test_method_trains_a_few_steps(method, backbone, tiny_data):
    images, labels = tiny_data
    config = _tiny_config(method, backbone)
    result = train_model(config, images, labels, progress=False)
    initial = build_backbone(backbone, seed=config.seed).state_dict()
    trained = result.backbone.state_dict()
    assert len(result.step_losses) == 2 and len(result.epoch_losses) == 1
    assert all(torch.isfinite(torch.tensor(result.step_losses)))
    moved = [k for k in initial if initial[k].is_floating_point() and not torch.equal(initial[k], trained[k])]
    assert any("weight" in k for k in moved), f"{method} did not update the backbone"
    assert not result.backbone.training
    assert result.backbone(torch.rand(2, 1, 28, 28)).shape == (2, result.backbone.feature_dim)


def test_paradigm_labels_cover_the_issue():
    paradigms = {spec.paradigm for spec in METHODS.values()}
    assert paradigms == {"contrastive", "non-contrastive", "clustering", "supervised", "random"}
    assert sum(spec.paradigm == "clustering" for spec in METHODS.values()) >= 2


def test_training_is_reproducible(tiny_data):
    images, labels = tiny_data
    first = train_model(_tiny_config("simclr"), images, labels, progress=False)
    second = train_model(_tiny_config("simclr"), images, labels, progress=False)
    third = train_model(_tiny_config("simclr", seed=1), images, labels, progress=False)
    assert first.step_losses == second.step_losses
    assert first.step_losses != third.step_losses


def test_method_options_reach_the_method(tiny_data):
    images, labels = tiny_data
    low = train_model(_tiny_config("simclr", options={"temperature": 0.05}), images, labels, progress=False)
    high = train_model(_tiny_config("simclr", options={"temperature": 1.0}), images, labels, progress=False)
    assert low.step_losses[0] != pytest.approx(high.step_losses[0])


def test_random_reference_is_the_seeded_initialisation(tiny_data):
    images, _ = tiny_data
    result = train_model(_tiny_config("random"), images, progress=False)
    initial = build_backbone("convnet", seed=0).state_dict()
    assert result.step_losses == [] and all(torch.equal(v, result.backbone.state_dict()[k]) for k, v in initial.items())


def test_learning_rate_warms_up_then_decays_to_zero():
    rates = [_learning_rate(step, 100, 1.0, 0.1) for step in range(100)]
    assert rates[0] == pytest.approx(0.1) and rates[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(rates[9:], rates[10:]))
    assert rates[-1] < 0.01


def test_bad_configurations_raise(tiny_data):
    images, labels = tiny_data
    with pytest.raises(ValueError, match="labels"):
        train_model(_tiny_config("supervised"), images, None, progress=False)
    with pytest.raises(ValueError, match="exceeds"):
        train_model(TrainConfig("simclr", "convnet", n_train=64, batch_size=16), images, progress=False)
    with pytest.raises(ValueError, match="uint8"):
        train_model(_tiny_config("simclr"), images.float(), progress=False)
    with pytest.raises(ValueError, match="optimizer"):
        train_model(_tiny_config("simclr", optimizer="lamb"), images, progress=False)
    with pytest.raises(ValueError, match="Unknown method"):
        get_method("mae")


def test_sgd_optimizer_trains(tiny_data):
    images, _ = tiny_data
    result = train_model(_tiny_config("vicreg", optimizer="sgd", lr=0.05), images, progress=False)
    assert all(torch.isfinite(torch.tensor(result.step_losses)))


def test_budget_in_images_sets_the_steps(tiny_data):
    images, _ = tiny_data
    config = TrainConfig("simclr", "convnet", n_train=32, batch_size=16, images=80)
    assert (config.steps_per_epoch, config.total_steps) == (2, 5)
    result = train_model(config, images, progress=False)
    # five steps over two-batch epochs: epochs of 2, 2 and 1 steps
    assert len(result.step_losses) == 5 and len(result.epoch_losses) == 3
    assert result.epoch_losses[-1] == pytest.approx(result.step_losses[-1])
    with pytest.raises(ValueError, match="multiple of batch_size"):
        train_model(TrainConfig("simclr", "convnet", n_train=32, batch_size=16, images=40), images, progress=False)


def test_data_seed_separates_the_start_from_the_data(tiny_data):
    images, _ = tiny_data
    runs = [prepare_run(TrainConfig("byol", "convnet", n_train=32, batch_size=16, data_seed=d), images) for d in (5, 6)]
    reference = build_backbone("convnet", seed=0).state_dict()
    for run in runs:
        assert all(torch.equal(v, run.method.backbone.state_dict()[k]) for k, v in reference.items())
    assert not torch.equal(runs[0].images, runs[1].images)  # different training subsets
    first, second = (run.inputs(0)[0] for run in runs)
    assert not torch.equal(first, second)


@pytest.mark.parametrize("method", ["simclr", "moco-v2", "swav", "supervised"])
def test_resumed_run_ends_exactly_where_an_uninterrupted_one_does(method, tiny_data, tmp_path):
    images, labels = tiny_data
    config = TrainConfig(method, "convnet", n_train=32, batch_size=16, images=96, data_seed=3)
    full = train_model(config, images, labels, progress=False)
    saved = []

    def keep(point):
        saved.append(point)
        save_training_state(point.state, tmp_path / "state.npz")

    partial = train_model(config, images, labels, progress=False, checkpoint_steps=[3, 6], on_checkpoint=keep)
    assert [p.step for p in saved] == [3, 6] and [p.images_seen for p in saved] == [48, 96]
    state = load_training_state(tmp_path / "state.npz")
    assert state.step == 6
    # resume from the step-3 state, written and read back through the file format
    save_training_state(saved[0].state, tmp_path / "state3.npz")
    resumed = train_model(config, images, labels, progress=False, resume=load_training_state(tmp_path / "state3.npz"))
    assert resumed.step_losses == full.step_losses == partial.step_losses
    expected = full.backbone.state_dict()
    assert all(torch.equal(expected[k], v) for k, v in resumed.backbone.state_dict().items())
    checkpoint_weights = saved[-1].backbone.state_dict()
    assert all(torch.equal(expected[k], v) for k, v in checkpoint_weights.items())
    with pytest.raises(ValueError, match="another configuration"):
        train_model(replace(config, lr=1e-3), images, labels, progress=False, resume=state)


def test_checkpoint_steps_must_fit_the_run():
    assert check_checkpoint_steps([1, 2, 4], 4) == [1, 2, 4]
    for bad in ([0, 4], [2, 2], [3, 2], [5]):
        with pytest.raises(ValueError, match="do not fit a run of 4 steps"):
            check_checkpoint_steps(bad, 4)


def test_state_file_refuses_pickles_and_garbage(tmp_path):
    garbage = tmp_path / "bad.npz"
    garbage.write_bytes(b"not an archive")
    with pytest.raises(ValueError, match="not a readable training state"):
        load_training_state(garbage)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, __header__=np.array({"a": 1}, dtype=object))
    with pytest.raises(ValueError, match="not a readable training state"):
        load_training_state(pickled)
    with pytest.raises(FileNotFoundError, match="restarts"):
        load_training_state(tmp_path / "absent.npz")


def test_fast_settings_compute_the_same_losses(tiny_data):
    # channels-last and the fused optimiser change memory layout and kernels, not the maths
    images, _ = tiny_data
    base = TrainConfig("simclr", "convnet", n_train=32, batch_size=16, images=64, mixed_precision=False)
    slow = train_model(replace(base, channels_last=False, fused_optimizer=False), images, progress=False)
    fast = train_model(base, images, progress=False)
    assert fast.step_losses[0] == pytest.approx(slow.step_losses[0], rel=1e-5)
    assert fast.step_losses == pytest.approx(slow.step_losses, rel=1e-3)
