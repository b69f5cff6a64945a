"""Tests of measuring transfer for the zoo (sslgeom.transfer) on the shared tiny zoo."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from sslgeom import baselines, cache, evaluation, tasks, transfer, zoo


def test_protocol_normalises_and_validates_its_fields():
    protocol = transfer.TransferProtocol(c_grid=[1, 10], shots=[np.int64(5)], n_way=3, seed=2)
    assert protocol.c_grid == (1.0, 10.0) and protocol.shots == (5,)
    assert protocol == transfer.TransferProtocol(c_grid=(1.0, 10.0), shots=(5,), n_way=3, seed=2)
    assert protocol.protocol_names() == ["linear", "3way5shot"]
    # the cache key keeps the content of the settings dict it replaced, so cached numbers stay valid
    assert transfer.TransferProtocol().cache_key() == [
        [0.001, 0.01, 0.1, 1.0, 10.0, 100.0], [5, 20], 5, 15, 600, 0]
    with pytest.raises(ValueError, match="c_grid"):
        transfer.TransferProtocol(c_grid=(0.0, 1.0))
    with pytest.raises(ValueError, match="n_way"):
        transfer.TransferProtocol(n_way=1)
    with pytest.raises(TypeError, match="shots"):
        transfer.TransferProtocol(shots=(2.5,))
    with pytest.raises(dataclasses.FrozenInstanceError):
        protocol.seed = 3


def test_missing_model_raises():
    with pytest.raises(ValueError, match="unknown model"):
        transfer.measure_transfer(["no_such_model"], {}, progress=False)
    with pytest.raises(ValueError, match="unknown model"):
        transfer.baseline_table(["no_such_model"], progress=False)


@pytest.mark.slow
def test_measure_transfer_same_seeds_same_numbers(tiny_zoo, monkeypatch, tmp_path):
    built = tasks.build_tasks(("digits", "fashion_corrupted"), n_train=150, n_val=60, n_test=200, seed=1)
    protocol = transfer.TransferProtocol(c_grid=(0.1, 1.0), shots=(5,), n_episodes=50, seed=3)
    first = transfer.measure_transfer(tiny_zoo, built, protocol, n_jobs=1, progress=False)
    assert len(first) == 2 * 2 * 2 and first["score"].between(0, 1).all()
    assert set(first["protocol"]) == {"linear", "5way5shot"}
    # the numbers are those of the evaluation functions on the cached features
    model, task = tiny_zoo[0], built["digits"]
    splits = [(transfer._features(model, images, "cpu"), labels) for images, labels in (task.train, task.val, task.test)]
    row = first.set_index(["model", "task", "protocol"])
    assert row.loc[(model, "digits", "linear"), "score"] == evaluation.linear_probe(*splits, c_grid=(0.1, 1.0)).accuracy
    shots = evaluation.few_shot(*splits[2], n_way=5, n_shot=5, n_query=15, n_episodes=50, seed=3)
    assert row.loc[(model, "digits", "5way5shot"), ["score", "ci_low", "ci_high"]].tolist() == [
        shots.mean, shots.ci_low, shots.ci_high]
    # a fresh cache recomputes everything: same seeds must give the same numbers, with any n_jobs
    monkeypatch.setenv("SSLGEOM_CACHE", str(tmp_path / "second"))
    second = transfer.measure_transfer(tiny_zoo, built, protocol, n_jobs=2, progress=False)
    pd.testing.assert_frame_equal(first, second)
    # the cached tables are what a third call returns
    assert len(list((cache.cache_dir() / "transfer").glob("*.parquet"))) == 4
    pd.testing.assert_frame_equal(first, transfer.measure_transfer(tiny_zoo, built, protocol, progress=False))
    with pytest.raises(ValueError, match="n_jobs"):
        transfer.measure_transfer(tiny_zoo[:1], built, protocol, n_jobs=0)
    with pytest.raises(TypeError, match="TransferProtocol"):
        transfer.measure_transfer(tiny_zoo[:1], built, {"seed": 3})
    other_seed = transfer.measure_transfer(tiny_zoo[:1], built, transfer.TransferProtocol(
        c_grid=(0.1, 1.0), shots=(5,), n_episodes=50, seed=4), progress=False)
    assert not np.allclose(other_seed.query("protocol != 'linear'")["score"],
                           first.query(f"model == '{tiny_zoo[0]}' and protocol != 'linear'")["score"])


@pytest.mark.slow
def test_baseline_table_values(tiny_zoo):
    table = transfer.baseline_table(tiny_zoo, n_spectrum=100, n_knn_train=300, n_knn_test=100, progress=False)
    assert list(table.columns) == ["rankme", "alpha_req", "source_knn"] and list(table.index) == tiny_zoo
    # recompute one model's row from its features with the same draws
    from sslgeom import data

    rng = np.random.default_rng(0)
    train_images, train_labels = data.load_fashion_mnist("train")
    test_images, test_labels = data.load_fashion_mnist("test")
    memory = rng.choice(len(train_labels), size=300, replace=False)
    queries = rng.choice(len(test_labels), size=100, replace=False)
    model = zoo.load(tiny_zoo[1])
    memory_features = transfer._features(model, train_images[memory], "cpu")
    query_features = transfer._features(model, test_images[queries], "cpu")
    expected = {
        "rankme": baselines.rankme(query_features),
        "alpha_req": baselines.alpha_req(query_features),
        "source_knn": evaluation.knn_accuracy(memory_features, train_labels[memory], query_features,
                                              test_labels[queries], k=20),
    }
    assert table.loc[tiny_zoo[1]].to_dict() == pytest.approx(expected, rel=1e-12)
    assert (table["rankme"] >= 1).all() and table["source_knn"].between(0.3, 1).all()


def test_spectrum_baselines_equal_the_baselines_of_the_same_features(tiny_zoo):
    from sslgeom import data

    table = transfer.spectrum_baselines(tiny_zoo, n_spectrum=120, seed=3, progress=False)
    assert list(table.columns) == ["rankme", "alpha_req"] and list(table.index) == tiny_zoo
    test_images, _ = data.load_fashion_mnist("test")
    images = test_images[np.random.default_rng(3).choice(len(test_images), size=120, replace=False)]
    features = transfer._features(zoo.load(tiny_zoo[0]), images, "cpu")
    assert table.loc[tiny_zoo[0], "rankme"] == pytest.approx(baselines.rankme(features), rel=1e-12)
    assert table.loc[tiny_zoo[0], "alpha_req"] == pytest.approx(baselines.alpha_req(features), rel=1e-12)
    again = transfer.spectrum_baselines(tiny_zoo, n_spectrum=120, seed=3, progress=False)  # from the cache
    pd.testing.assert_frame_equal(table, again)


def test_source_scores_read_the_manifest(tiny_zoo):
    manifest = zoo.read_manifest()
    manifest["models"][0].update(probe_accuracy=0.81, knn_accuracy=0.77)
    zoo.write_manifest(manifest)
    table = transfer.source_scores(tiny_zoo)
    assert table.loc[tiny_zoo[0]].tolist() == [0.81, 0.77]
    assert table.loc[tiny_zoo[1]].isna().all()
