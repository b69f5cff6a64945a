"""The zoo's design and quality tables, read back from a made-up manifest with known answers."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sslgeom import zoo_design

REPO = Path(__file__).resolve().parents[1]


def made_up_manifest() -> pd.DataFrame:
    """Two SSL methods x seeds 0-2 on the ConvNet (three budgets), one seed on the ResNet, references."""
    rows = []
    gains = {("simclr", 0): 0.050, ("simclr", 1): 0.040, ("simclr", 2): 0.060,
             ("simsiam", 0): 0.021, ("simsiam", 1): 0.019, ("simsiam", 2): 0.030}
    paradigms = {"simclr": "contrastive", "simsiam": "non-contrastive", "supervised": "supervised",
                 "random": "random"}
    for seed in (0, 1, 2):
        rows.append(dict(name=f"random-convnet-s{seed}", run_id=f"random-convnet-s{seed}", method="random",
                         backbone="convnet", seed=seed, budget_fraction=0.0, images_seen=0,
                         probe_accuracy=0.80, probe_gain_vs_random=0.0, knn_accuracy=0.75))
        for method in ("supervised", "simclr", "simsiam"):
            gain = gains.get((method, seed), 0.08)
            run = f"{method}-convnet-s{seed}"
            for fraction in (0.25, 0.5, 1.0):
                rows.append(dict(name=run if fraction == 1.0 else f"{run}-b{round(fraction * 100):03d}", run_id=run,
                                 method=method, backbone="convnet", seed=seed, budget_fraction=fraction,
                                 images_seen=int(fraction * 1000), probe_accuracy=0.80 + gain * fraction,
                                 probe_gain_vs_random=gain * fraction, knn_accuracy=0.75 + gain * fraction))
    for method, gain in (("random", 0.0), ("simclr", 0.07)):
        rows.append(dict(name=f"{method}-resnet-s0", run_id=f"{method}-resnet-s0", method=method, backbone="resnet",
                         seed=0, budget_fraction=1.0 if gain else 0.0, images_seen=500 if gain else 0,
                         probe_accuracy=0.78 + gain, probe_gain_vs_random=gain, knn_accuracy=0.7))
    table = pd.DataFrame(rows)
    table["paradigm"] = table["method"].map(paradigms)
    return table


def test_design_counts_seeds_runs_and_budgets():
    design = zoo_design.design_table(made_up_manifest())
    simclr = design.loc[("convnet", "contrastive", "simclr")]
    assert (simclr["seeds"], simclr["seed_list"], simclr["runs"], simclr["checkpoints"]) == (3, "0, 1, 2", 3, 9)
    assert simclr["budgets"] == "0.25, 0.5, 1"
    assert design.loc[("resnet", "contrastive", "simclr"), "seeds"] == 1


def test_quality_is_the_gain_over_the_same_seed_in_points_with_its_spread():
    quality = zoo_design.quality_table(made_up_manifest())
    simclr = quality.loc[("convnet", "contrastive", "simclr")]
    assert simclr["n_seeds"] == 3
    assert simclr["gain_mean"] == pytest.approx(5.0)
    assert simclr["gain_sd"] == pytest.approx(1.0)  # 4, 5, 6 points
    assert (simclr["gain_min"], simclr["gain_max"]) == (pytest.approx(4.0), pytest.approx(6.0))
    assert np.isnan(quality.loc[("resnet", "contrastive", "simclr"), "gain_sd"])  # one seed
    assert ("convnet", "random", "random") not in quality.index
    half = zoo_design.quality_table(made_up_manifest(), budget_fraction=0.5)
    assert half.loc[("convnet", "contrastive", "simclr"), "gain_mean"] == pytest.approx(2.5)
    with pytest.raises(ValueError, match="No trained checkpoint at budget fraction 0.75"):
        zoo_design.quality_table(made_up_manifest(), budget_fraction=0.75)


def test_quality_goals_name_the_models_under_the_floor():
    summary = zoo_design.quality_summary(made_up_manifest())
    # ConvNet SSL gains 5, 4, 6, 2.1, 1.9, 3.0 points: median 3.5, minimum 1.9 (simsiam seed 1)
    assert summary["n_models"] == 6
    assert summary["median_gain"] == pytest.approx(3.5)
    assert summary["min_gain"] == pytest.approx(1.9)
    assert summary["worst_model"] == "simsiam-convnet-s1" and summary["below_min"] == ["simsiam-convnet-s1"]
    assert not summary["median_goal_met"] and not summary["min_goal_met"]


def test_budget_curves_follow_each_run():
    curves = zoo_design.budget_curves(made_up_manifest())
    run = curves[curves["run_id"] == "simclr-convnet-s2"]
    assert list(run["budget_fraction"]) == [0.25, 0.5, 1.0]
    assert list(run["probe_accuracy"]) == pytest.approx([0.815, 0.83, 0.86])
    assert "random-convnet-s0" not in set(curves["run_id"])  # one checkpoint: no curve


def test_training_curves_are_running_means_of_the_step_losses():
    entries = [{"name": "a", "run_id": "a", "method": "simclr", "paradigm": "contrastive", "backbone": "convnet",
                "seed": 0, "step_losses": [4.0, 2.0, 3.0, 1.0]},
               {"name": "r", "method": "random", "paradigm": "random", "backbone": "convnet", "step_losses": []}]
    curves = zoo_design.training_curves(entries, smoothing=2)
    assert list(curves["step"]) == [2, 3, 4] and list(curves["loss"]) == [3.0, 2.5, 2.0]
    assert set(curves["run_id"]) == {"a"}
    with pytest.raises(ValueError, match="smoothing must be a positive integer"):
        zoo_design.training_curves(entries, smoothing=0)


def test_a_first_zoo_manifest_gets_a_clear_error():
    first = pd.DataFrame([{"name": "simclr-convnet-s0", "method": "simclr", "paradigm": "contrastive",
                           "backbone": "convnet", "seed": 0}])
    with pytest.raises(ValueError, match=r"no column\(s\) \['run_id', 'budget_fraction'\].*make zoo"):
        zoo_design.design_table(first)
    with pytest.raises(TypeError, match="must be a DataFrame"):
        zoo_design.design_table([{"name": "x"}])


def test_the_committed_zoo_reads_back():
    """The committed designed zoo has the columns these tables need."""
    path = REPO / "data" / "zoo" / "manifest.json"
    entries = json.loads(path.read_text())["models"]
    table = pd.DataFrame([{k: v for k, v in e.items() if k != "step_losses"} for e in entries])
    design = zoo_design.design_table(table)
    assert (design["budgets"].str.len() > 0).all()
    full = [e for e in entries if e["budget_fraction"] == 1.0 and e["method"] != "random"]
    if full:
        assert len(zoo_design.training_curves(full)) > 0


def test_archived_second_zoo_is_the_one_that_missed_the_median_goal(tmp_path):
    # chapter 01 quotes this zoo's median gain as the reason the current zoo was redesigned
    archived = zoo_design.archived_manifest()
    summary = zoo_design.quality_summary(archived, backbone="convnet")
    assert summary["n_models"] == 24 and not summary["median_goal_met"] and summary["min_goal_met"]
    assert round(summary["median_gain"], 2) == 3.46
    with pytest.raises(FileNotFoundError, match="git checkout"):
        zoo_design.archived_manifest(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"runs": []}')
    with pytest.raises(ValueError, match="not a zoo manifest"):
        zoo_design.archived_manifest(tmp_path / "bad.json")


def test_training_speeds_read_the_committed_benchmark(tmp_path):
    # chapter 01 quotes the speed-up of the current ConvNet over the earlier one from this file
    speeds = zoo_design.training_speeds()
    zoo_rows = speeds[speeds.setting == "fp32, channels-last, fused AdamW (zoo)"].set_index("architecture")
    current = zoo_rows.filter(like="current zoo", axis=0).images_per_s_train_model
    earlier = zoo_rows.filter(like="zoos 1-2", axis=0).images_per_s_train_model
    assert len(current) == len(earlier) == 1 and current.iloc[0] > 2 * earlier.iloc[0]
    assert set(speeds.batch_size) == {64}
    with pytest.raises(FileNotFoundError, match="make bench-train"):
        zoo_design.training_speeds(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"rows": []}')
    with pytest.raises(ValueError, match="benchmarks/train.py"):
        zoo_design.training_speeds(tmp_path / "bad.json")


def test_training_hours_sum_each_runs_last_checkpoint():
    manifest = made_up_manifest()
    manifest["train_seconds"] = 3600.0 * manifest["budget_fraction"]  # a run's checkpoints: 0.25, 0.5, 1 h
    runs = manifest.groupby("run_id")
    assert zoo_design.training_hours(manifest) == pytest.approx(float(runs["budget_fraction"].max().sum()))
    convnet_runs = manifest[manifest.backbone == "convnet"].run_id.nunique()
    trained = manifest[(manifest.backbone == "convnet") & (manifest.budget_fraction > 0)].run_id.nunique()
    assert zoo_design.training_hours(manifest, backbone="convnet") == pytest.approx(trained)
    assert trained < convnet_runs  # the random inits took no training time
