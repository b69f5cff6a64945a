"""The geometry table: its settings (also the cache key), its summaries, and the cached pipeline."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from sslgeom import cache, geometry, mgm
from sslgeom.geometry import GeometrySettings


def test_settings_normalise_so_equal_choices_are_equal():
    settings = GeometrySettings(k=np.int64(8), graphs=["nnk", "knn", "nnk"], families=["blur", "rotation"])
    assert settings.k == 8 and type(settings.k) is int
    assert settings.graphs == ("knn", "nnk") and settings.families == ("blur", "rotation")
    assert settings == GeometrySettings(k=8, families=("blur", "rotation"))
    assert hash(settings) == hash(GeometrySettings(k=8, families=("blur", "rotation")))
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.k = 3
    changed = dataclasses.replace(settings, kernel="gaussian", graphs=("nnk",))
    assert (changed.kernel, changed.graphs, changed.k) == ("gaussian", ("nnk",), 8)


@pytest.mark.parametrize(("changes", "error", "message"), [
    ({"kernel": "laplace"}, ValueError, "unknown kernel 'laplace'"),
    ({"graphs": ["nnk", "mst"]}, ValueError, "unknown graphs \\['mst'\\]"),
    ({"graphs": []}, ValueError, "non-empty subset"),
    ({"graphs": "nnk"}, TypeError, "list of names"),
    ({"k": 0}, ValueError, "k must be at least 1"),
    ({"k": 2.5}, TypeError, "k must be an integer"),
    ({"n_base": -1}, ValueError, "n_base must be at least 0"),
    ({"n_points": 1}, ValueError, "n_points must be at least 2"),
    ({"seed": True}, TypeError, "seed must be an integer"),
    ({"families": ["huee"]}, ValueError, "unknown augmentation families \\['huee'\\].*colour images"),
    ({"families": []}, ValueError, "families is empty"),
    ({"kkt_tol": 1.5}, ValueError, "kkt_tol is relative"),
    ({"kkt_tol": "0.01"}, TypeError, "kkt_tol must be a number"),
])
def test_settings_reject_bad_choices(changes, error, message):
    with pytest.raises(error, match=message):
        GeometrySettings(**changes)


def test_colour_families_are_named_in_settings_and_refused_on_greyscale_images():
    """Settings accept every family name; the manifolds refuse colour families on the greyscale
    default data with the reason and the fix (an image folder allows them)."""
    from sslgeom import manifolds, sources

    settings = GeometrySettings(families=["hue", "blur", "saturation"])
    assert settings.families == ("hue", "blur", "saturation")
    assert sources.active_images().is_default
    with pytest.raises(ValueError, match=r"\['hue', 'saturation'\] need colour images.*image folder"):
        manifolds._check_families(settings.families)


def test_cache_keys_depend_only_on_each_parts_settings(private_cache):
    settings = GeometrySettings(k=8, n_base=4, n_views=8, k_augmentation=5)
    paths = {part: geometry._entry_paths("m", "sha", part, settings) for part in ("semantic", "augmentation")}
    assert set(paths["semantic"]) == {"knn", "nnk"}
    # the key holds exactly the part's settings (geometry-v4: the relative KKT tolerance joined)
    semantic_key = {"k": 8, "kernel": "cosine", "kkt_tol": 0.01, "n_per_class": 100, "seed": 0}
    assert paths["semantic"]["nnk"].name == cache.content_key(
        "geometry-v4", "m", "sha", "semantic", semantic_key, "nnk") + ".parquet"
    augmentation_key = {"k_augmentation": 5, "kernel": "cosine", "kkt_tol": 0.01, "n_base": 4,
                        "n_points": None, "n_views": 8, "families": None, "seed": 0}
    assert paths["augmentation"]["knn"].name == cache.content_key(
        "geometry-v4", "m", "sha", "augmentation", augmentation_key, "knn") + ".parquet"
    with_families = dataclasses.replace(settings, families=("blur",))
    assert geometry._entry_paths("m", "sha", "augmentation", with_families)["nnk"].name == cache.content_key(
        "geometry-v4", "m", "sha", "augmentation", {**augmentation_key, "families": ["blur"]},
        "nnk") + ".parquet"
    # k changes the semantic key only, n_base the augmentation key only, the kernel and the
    # tolerance both
    for change, semantic_moves, augmentation_moves in (({"k": 9}, True, False), ({"n_base": 5}, False, True),
                                                        ({"kernel": "gaussian"}, True, True),
                                                        ({"kkt_tol": 0.03}, True, True)):
        other = dataclasses.replace(settings, **change)
        assert (geometry._entry_paths("m", "sha", "semantic", other) != paths["semantic"]) == semantic_moves
        assert (geometry._entry_paths("m", "sha", "augmentation", other) != paths["augmentation"]) == augmentation_moves


def test_summary_rows_carry_the_summaries_of_each_graph():
    rng = np.random.default_rng(3)
    nodes = pd.DataFrame({"graph": np.repeat(["nnk", "knn"], 30),
                          **{metric: rng.random(60) for metric in mgm.METRICS}})
    rows = geometry._summarise(nodes, "augmentation", "blur")
    assert list(rows.columns) == [c for c in geometry.TABLE_COLUMNS if c != "model"]
    assert len(rows) == 2 * len(mgm.METRICS) * len(mgm.STATISTICS)
    assert (rows["manifold"] == "augmentation").all() and (rows["family"] == "blur").all()
    quantiles = {"mean": None, "median": 0.5, "q10": 0.1, "q90": 0.9}
    for row in rows.itertuples():
        values = nodes.loc[nodes["graph"] == row.graph, row.metric].to_numpy()
        level = quantiles[row.statistic]
        expected = values.mean() if level is None else np.quantile(values, level)
        assert row.value == pytest.approx(expected, abs=1e-12)


def test_node_metrics_of_a_stack_equal_one_graph_per_cloud():
    from sslgeom import nnk

    rng = np.random.default_rng(0)
    clouds = rng.normal(size=(3, 7, 6))
    stacked = geometry._node_metrics(clouds, k=10, kernel="cosine", graphs=["nnk"],
                                     kkt_tol=0.01)  # k capped at 6
    for c in range(3):
        single = nnk.nnk_graph(clouds[c], k=6, kernel="cosine", duplicates="ridge")
        expected = mgm.node_metrics(single, clouds[c], graph="nnk")
        got = stacked.iloc[7 * c: 7 * (c + 1)].reset_index(drop=True)
        for metric in mgm.METRICS:
            np.testing.assert_allclose(got[metric], expected[metric], atol=1e-6, err_msg=metric)


def test_geometry_table_checks_its_inputs(tiny_zoo):
    with pytest.raises(ValueError, match="unknown model"):
        geometry.geometry_table(["no-such-model"], progress=False)
    with pytest.raises(TypeError, match="GeometrySettings"):
        geometry.geometry_table(tiny_zoo, {"k": 5}, progress=False)


@pytest.mark.slow
def test_geometry_table_of_zoo_models(tiny_zoo, monkeypatch):
    from sslgeom import manifolds, nnk, zoo

    settings = GeometrySettings(k=5, n_per_class=8, families=("rotation", "blur"), n_base=3, n_views=6,
                                k_augmentation=4)
    loads = []
    load = zoo.load
    monkeypatch.setattr(zoo, "load", lambda name, **kwargs: loads.append(name) or load(name, **kwargs))
    table = geometry.geometry_table(tiny_zoo, settings, progress=False)
    assert sorted(loads) == sorted(tiny_zoo)  # one load per model serves every part
    assert list(table.columns) == list(geometry.TABLE_COLUMNS)
    assert list(dict.fromkeys(table["model"])) == tiny_zoo
    assert set(table["graph"]) == {"nnk", "knn"}
    assert list(dict.fromkeys(zip(table["manifold"], table["family"]))) == [
        ("semantic", "pooled"), ("semantic", "within_class"), ("augmentation", "rotation"),
        ("augmentation", "blur"), ("augmentation", "composition")]
    assert set(table["metric"]) == set(mgm.METRICS) and set(table["statistic"]) == set(mgm.STATISTICS)

    # the pooled semantic rows are the summaries of the metrics of one NNK graph on that manifold
    semantic = manifolds.semantic_manifold(load(tiny_zoo[0]), n_per_class=8, seed=0, progress=False)
    graph = nnk.nnk_graph(semantic.features, k=5, kernel="cosine", duplicates="ridge")
    nodes = pd.concat([mgm.node_metrics(graph, semantic.features, graph=g) for g in ("knn", "nnk")])
    expected = mgm.summarize(nodes, by=["graph"]).set_index("graph")
    pooled = table.query("model == @tiny_zoo[0] and family == 'pooled'")
    for row in pooled.itertuples():
        assert row.value == pytest.approx(expected.loc[row.graph, f"{row.metric}_{row.statistic}"], abs=1e-9)
    n_neighbors = pooled.query("metric == 'n_neighbors' and statistic == 'mean'").set_index("graph")["value"]
    assert n_neighbors["knn"] == 5 and 1 <= n_neighbors["nnk"] <= 5  # NNK keeps at most the k candidates

    # second call is read from the cache and identical; other settings give other numbers
    pd.testing.assert_frame_equal(table, geometry.geometry_table(tiny_zoo, settings, progress=False))
    assert len(loads) == len(tiny_zoo)  # read from the cache without loading a model
    only_nnk = geometry.geometry_table(tiny_zoo, dataclasses.replace(settings, graphs=("nnk",), k=3), progress=False)
    assert set(only_nnk["graph"]) == {"nnk"}
    changed = only_nnk.query("manifold == 'semantic'").merge(
        table.query("graph == 'nnk' and manifold == 'semantic'"), on=["model", "family", "metric", "statistic"])
    assert not np.allclose(changed["value_x"], changed["value_y"])  # k changed the semantic part

    # changing k must reuse the cached augmentation part: make recomputing it impossible
    def fail(*args, **kwargs):
        raise AssertionError("augmentation part recomputed although only k changed")

    monkeypatch.setitem(geometry._PARTS, "augmentation", (fail, geometry._PARTS["augmentation"][1]))
    reused = geometry.geometry_table(tiny_zoo, dataclasses.replace(settings, k=4), progress=False)
    pd.testing.assert_frame_equal(reused.query("manifold == 'augmentation'").reset_index(drop=True),
                                  table.query("manifold == 'augmentation'").reset_index(drop=True))

    # a corrupt cache entry is recomputed, not read
    monkeypatch.setitem(geometry._PARTS, "augmentation", (geometry._augmentation_part,
                                                          geometry._PARTS["augmentation"][1]))
    model_hash = zoo.checkpoint_hash(tiny_zoo[1])
    corrupt = geometry._entry_paths(tiny_zoo[1], model_hash, "augmentation", settings)["knn"]
    corrupt.write_bytes(b"truncated")
    pd.testing.assert_frame_equal(table, geometry.geometry_table(tiny_zoo, settings, progress=False))
    assert cache.load_table(corrupt).equals(
        table.query("model == @tiny_zoo[1] and manifold == 'augmentation' and graph == 'knn'")
        .drop(columns="model").reset_index(drop=True))


@pytest.mark.slow
def test_geometry_table_does_not_depend_on_the_worker_count(tiny_zoo, private_cache):
    import shutil

    settings = GeometrySettings(k=5, n_per_class=6, families=("rotation",), n_base=2, n_views=4,
                                k_augmentation=3)
    serial = geometry.geometry_table(tiny_zoo, settings, progress=False, n_jobs=1)
    for namespace in ("geometry", "features"):  # recompute everything, this time on two threads
        shutil.rmtree(private_cache / namespace)
    threaded = geometry.geometry_table(tiny_zoo, settings, progress=False, n_jobs=2)
    pd.testing.assert_frame_equal(serial, threaded, check_exact=True)
    with pytest.raises(ValueError, match="n_jobs"):
        geometry.geometry_table(tiny_zoo, settings, progress=False, n_jobs=0)
