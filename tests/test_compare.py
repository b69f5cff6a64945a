"""Tests of geometry-vs-paradigm comparison on synthetic zoos."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.cluster import AgglomerativeClustering
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from sslgeom import compare


def _synthetic_zoo(n_per_group=5, n_features=12, separation=4.0, seed=0):
    """Geometry vectors built to follow three paradigm labels (group centre + small noise)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(["contrastive", "non_contrastive", "clustering"], n_per_group)
    centres = separation * rng.normal(size=(3, n_features))
    codes = np.repeat(np.arange(3), n_per_group)
    values = centres[codes] + rng.normal(size=(len(labels), n_features))
    models = [f"model{i}" for i in range(len(labels))]
    return pd.DataFrame(values, index=models, columns=[f"f{j}" for j in range(n_features)]), labels


def _tidy(vectors):
    """Turn (models, features) into a geometry table with two metrics over two manifolds."""
    rows = []
    for model, row in vectors.iterrows():
        for j, value in enumerate(row):
            manifold = "semantic" if j % 2 == 0 else "augmentation"
            family = f"fam{j}"
            metric = "diameter" if j % 4 < 2 else "n_neighbors"
            statistic = "mean" if j < 6 else "median"
            rows.append((model, manifold, family, "nnk", metric, statistic, value))
            rows.append((model, manifold, family, "knn", metric, statistic, 2 * value))
    return pd.DataFrame(rows, columns=compare.TABLE_COLUMNS)


def test_geometry_vectors_pivots_and_filters():
    vectors, _ = _synthetic_zoo()
    table = _tidy(vectors)
    wide = compare.geometry_vectors(table, statistics=None)
    assert wide.shape == (len(vectors), len(vectors.columns))
    assert "semantic/fam0/diameter/mean" in wide.columns
    knn = compare.geometry_vectors(table, graph="knn", statistics=None)
    np.testing.assert_allclose(knn.to_numpy(), 2 * wide.to_numpy())
    only_mean = compare.geometry_vectors(table, statistics=["mean"], manifolds=["semantic"])
    assert all(c.startswith("semantic/") and c.endswith("/mean") for c in only_mean.columns)
    with pytest.raises(ValueError, match="no rows left"):
        compare.geometry_vectors(table, metrics=["no_such_metric"])
    with pytest.raises(ValueError, match="lacks columns"):
        compare.geometry_vectors(table.drop(columns="graph"))


def test_distances_are_euclidean_on_standardized_features():
    vectors, _ = _synthetic_zoo()
    vectors["constant"] = 1.0
    distances = compare.model_distances(vectors)
    z = (vectors.drop(columns="constant") - vectors.drop(columns="constant").mean()) / vectors.drop(
        columns="constant").std(ddof=0)
    a, b = vectors.index[0], vectors.index[7]
    assert distances.loc[a, b] == pytest.approx(np.linalg.norm(z.loc[a] - z.loc[b]))
    np.testing.assert_allclose(distances.to_numpy(), distances.to_numpy().T)
    assert np.all(np.diag(distances.to_numpy()) == 0)


@pytest.mark.parametrize("method", ["average", "complete", "single"])
def test_clustering_matches_scikit_learn(method):
    vectors, _ = _synthetic_zoo(separation=1.0, seed=3)  # weak structure: the tree is not trivial
    distances = compare.model_distances(vectors)
    for n_clusters in (2, 3, 5):
        ours, tree = compare.cluster_models(distances, n_clusters, method=method)
        reference = AgglomerativeClustering(n_clusters=n_clusters, metric="precomputed",
                                            linkage=method).fit_predict(distances.to_numpy())
        assert adjusted_rand_score(reference, ours) == pytest.approx(1.0)
        assert len(np.unique(ours)) == n_clusters
        assert tree.shape == (len(vectors) - 1, 4)


def test_agreement_matches_hand_computation_and_scikit_learn():
    labels = [0, 0, 0, 1, 1, 1]
    clusters = [0, 0, 1, 1, 2, 2]
    # contingency pairs: sum C(n_ij,2) = 2, rows 6, columns 3, C(6,2) = 15
    expected_ari = (2 - 6 * 3 / 15) / ((6 + 3) / 2 - 6 * 3 / 15)
    scores = compare.cluster_agreement(clusters, labels)
    assert scores["ari"] == pytest.approx(expected_ari)
    assert scores["ari"] == pytest.approx(adjusted_rand_score(labels, clusters))
    assert scores["nmi"] == pytest.approx(normalized_mutual_info_score(labels, clusters))
    assert compare.cluster_agreement([1, 1, 0, 0], ["a", "a", "b", "b"]) == {"ari": 1.0, "nmi": 1.0}


def test_permutation_test_finds_geometry_that_follows_labels():
    vectors, labels = _synthetic_zoo(seed=1)
    clusters, _ = compare.cluster_models(compare.model_distances(vectors), n_clusters=3)
    result = compare.permutation_test(clusters, labels, n_permutations=999, seed=0)
    assert result.ari == pytest.approx(1.0)
    assert result.p_ari <= 0.002 and result.p_nmi <= 0.002
    assert len(result.null_ari) == 999


def test_permutation_test_on_shuffled_labels_is_roughly_uniform():
    vectors, labels = _synthetic_zoo(seed=2)
    clusters, _ = compare.cluster_models(compare.model_distances(vectors), n_clusters=3)
    rng = np.random.default_rng(0)
    p_values = np.array([
        compare.permutation_test(clusters, rng.permutation(labels), n_permutations=99, seed=s).p_ari
        for s in range(40)
    ])
    # Under the null, p is (roughly, ARI being discrete) uniform: mean near 1/2, few small values.
    assert 0.35 < p_values.mean() < 0.7
    assert np.mean(p_values <= 0.05) <= 0.15
    assert stats.kstest(p_values, "uniform").pvalue > 0.001


def test_permutation_test_is_reproducible_and_validates():
    vectors, labels = _synthetic_zoo(seed=4, separation=0.5)
    clusters, _ = compare.cluster_models(compare.model_distances(vectors), n_clusters=3)
    first = compare.permutation_test(clusters, labels, n_permutations=50, seed=9)
    second = compare.permutation_test(clusters, labels, n_permutations=50, seed=9)
    np.testing.assert_array_equal(first.null_ari, second.null_ari)
    with pytest.raises(ValueError, match="single group"):
        compare.permutation_test(clusters, ["x"] * len(clusters))


def test_effect_sizes_match_anova_and_flag_the_separating_metric():
    rng = np.random.default_rng(0)
    labels = np.repeat(["a", "b", "c"], 6)
    vectors = pd.DataFrame({
        "separates": np.repeat([0.0, 2.0, 4.0], 6) + 0.5 * rng.normal(size=18),
        "noise": rng.normal(size=18),
    })
    table = compare.effect_sizes(vectors, labels, n_permutations=500, seed=0)
    for feature in vectors.columns:
        groups = [vectors[feature][labels == g] for g in "abc"]
        f = stats.f_oneway(*groups).statistic
        eta2 = f * 2 / (f * 2 + 15)  # eta^2 = F df_b / (F df_b + df_w)
        assert table.loc[feature, "eta2"] == pytest.approx(eta2)
        assert table.loc[feature, "eta2_low"] <= table.loc[feature, "eta2"] <= table.loc[feature, "eta2_high"]
    assert table.index[0] == "separates"
    assert table.loc["separates", "p_value"] < 0.01 and table.loc["separates", "q_value"] < 0.01
    assert table.loc["noise", "p_value"] > 0.01
    assert table.loc["noise", "null_mean"] == pytest.approx(2 / 17, abs=0.04)


def test_classical_embedding_recovers_planar_distances():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(9, 2))
    distances = pd.DataFrame(np.linalg.norm(points[:, None] - points[None], axis=-1))
    coords = compare.embedding_2d(distances, method="classical").to_numpy()
    np.testing.assert_allclose(np.linalg.norm(coords[:, None] - coords[None], axis=-1), distances, atol=1e-9)
    mds = compare.embedding_2d(distances, method="mds", seed=0).to_numpy()
    assert np.corrcoef(np.linalg.norm(mds[:, None] - mds[None], axis=-1).ravel(),
                       distances.to_numpy().ravel())[0, 1] > 0.99


def test_invariance_ranking_orders_by_diameter():
    rows = []
    for model, diameters in {"inv": (0.1, 0.2), "mid": (0.5, 0.1), "var": (0.9, 0.9)}.items():
        for family, value in zip(("rotation", "blur"), diameters):
            rows.append((model, "augmentation", family, "nnk", "diameter", "median", value))
    ranks = compare.invariance_ranking(pd.DataFrame(rows, columns=compare.TABLE_COLUMNS))
    assert ranks.loc["inv", "rotation"] == 1 and ranks.loc["var", "rotation"] == 3
    assert ranks.loc["mid", "blur"] == 1


def test_fast_agreement_matches_scikit_learn():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(6, 30))
        clusters = rng.integers(0, rng.integers(2, 5), size=n)
        labels = rng.integers(0, rng.integers(2, 5), size=n)
        _, c = np.unique(clusters, return_inverse=True)
        _, l = np.unique(labels, return_inverse=True)
        if c.max() < 1 or l.max() < 1:
            continue
        ari, nmi = compare._fast_agreement(c, l, c.max() + 1, l.max() + 1)
        assert ari == pytest.approx(adjusted_rand_score(labels, clusters), abs=1e-12)
        assert nmi == pytest.approx(normalized_mutual_info_score(labels, clusters), abs=1e-12)


@pytest.mark.parametrize("kernel", ["cosine", "gaussian"])
def test_grouped_nnk_equals_one_graph_per_cloud(kernel):
    from sslgeom import nnk

    rng = np.random.default_rng(0)
    clouds = rng.normal(size=(5, 12, 16))
    grouped = compare.grouped_nnk(clouds, k=6, kernel=kernel)
    directed = grouped.directed_adjacency()
    assert grouped.neighbors.shape == (60, 6)
    for c in range(5):
        rows = slice(12 * c, 12 * (c + 1))
        single = nnk.nnk_graph(clouds[c], k=6, kernel=kernel, duplicates="ridge", dtype="float64")
        np.testing.assert_array_equal(grouped.neighbors[rows] - 12 * c, single.neighbors)
        np.testing.assert_allclose(directed[rows, rows].toarray(), single.directed_adjacency().toarray(), atol=1e-9)
        np.testing.assert_allclose(grouped.errors[rows], single.errors, atol=1e-9)
        np.testing.assert_allclose(grouped.adjacency[rows, rows].toarray(), single.adjacency.toarray(), atol=1e-9)
    # no edge between clouds
    assert directed[:12, 12:].nnz == 0


def test_grouped_nnk_accepts_repeated_points_and_rejects_bad_input():
    rng = np.random.default_rng(1)
    clouds = rng.normal(size=(3, 8, 5))
    clouds[1, 2] = clouds[1, 3]  # identical views happen on augmentation curves
    result = compare.grouped_nnk(clouds, k=4)
    assert np.all(np.isfinite(result.weights)) and np.all(result.weights >= 0)
    with pytest.raises(ValueError, match="k must satisfy"):
        compare.grouped_nnk(clouds, k=8)
    clouds[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        compare.grouped_nnk(clouds, k=3)


def test_summary_rows_carry_the_summaries_of_each_graph():
    from sslgeom import mgm

    rng = np.random.default_rng(3)
    nodes = pd.DataFrame({"graph": np.repeat(["nnk", "knn"], 30),
                          **{metric: rng.random(60) for metric in mgm.METRICS}})
    rows = compare._summarise(nodes, "augmentation", "blur")
    assert list(rows.columns) == [c for c in compare.TABLE_COLUMNS if c != "model"]
    assert len(rows) == 2 * len(mgm.METRICS) * len(mgm.STATISTICS)
    assert (rows["manifold"] == "augmentation").all() and (rows["family"] == "blur").all()
    quantiles = {"mean": None, "median": 0.5, "q10": 0.1, "q90": 0.9}
    for row in rows.itertuples():
        values = nodes.loc[nodes["graph"] == row.graph, row.metric].to_numpy()
        level = quantiles[row.statistic]
        expected = values.mean() if level is None else np.quantile(values, level)
        assert row.value == pytest.approx(expected)


@pytest.fixture
def tiny_zoo(monkeypatch, tmp_path):
    """Two random-initialisation ConvNets written as a default zoo, and an empty cache."""
    from sslgeom import models, zoo

    entries = []
    for seed, paradigm in enumerate(["contrastive", "clustering"]):
        name = f"tiny-{paradigm}"
        sha = zoo.save_checkpoint(models.build_backbone("convnet", seed=seed), tmp_path / f"{name}.pt")
        entries.append({"name": name, "file": f"{name}.pt", "sha256": sha, "backbone": "convnet",
                        "method": paradigm, "paradigm": paradigm, "policy": "default", "seed": seed})
    zoo.write_manifest({"models": entries}, tmp_path)
    monkeypatch.setenv("SSLGEOM_ZOO_DIR", str(tmp_path))
    monkeypatch.setenv("SSLGEOM_CACHE", str(tmp_path / "cache"))
    return [entry["name"] for entry in entries]


@pytest.mark.slow
def test_geometry_table_of_zoo_models(tiny_zoo, monkeypatch):
    from sslgeom import zoo

    settings = dict(k=5, n_per_class=8, families=["rotation", "blur"], n_base=3, n_views=6, k_augmentation=4,
                    progress=False)
    loads = []
    load = zoo.load
    monkeypatch.setattr(zoo, "load", lambda name, **kwargs: loads.append(name) or load(name, **kwargs))
    table = compare.geometry_table(tiny_zoo, **settings)
    assert sorted(loads) == sorted(tiny_zoo)  # one load per model serves every part
    assert list(table.columns) == list(compare.TABLE_COLUMNS)
    assert set(table["model"]) == set(tiny_zoo)
    assert set(table["graph"]) == {"nnk", "knn"}
    assert set(zip(table["manifold"], table["family"])) == {
        ("semantic", "pooled"), ("semantic", "within_class"), ("augmentation", "rotation"),
        ("augmentation", "blur"), ("augmentation", "composition")}
    assert {"n_neighbors", "diameter", "subspace_angle", "error", "entropy"} <= set(table["metric"])
    nnk_counts = table.query("graph == 'nnk' and metric == 'n_neighbors' and statistic == 'mean'")["value"]
    assert ((nnk_counts >= 1) & (nnk_counts <= 5)).all()  # NNK keeps at most the k candidates
    vectors = compare.geometry_vectors(table)
    assert vectors.shape[0] == 2 and np.isfinite(vectors.to_numpy()).all()
    # second call is read from the cache and identical; other settings give other numbers
    pd.testing.assert_frame_equal(table, compare.geometry_table(tiny_zoo, **settings))
    assert len(loads) == len(tiny_zoo)  # read from the cache without loading a model
    only_nnk = compare.geometry_table(tiny_zoo, **{**settings, "graphs": ["nnk"], "k": 3})
    assert set(only_nnk["graph"]) == {"nnk"}
    changed = only_nnk.query("manifold == 'semantic'").merge(
        table.query("graph == 'nnk' and manifold == 'semantic'"), on=["model", "family", "metric", "statistic"])
    assert not np.allclose(changed["value_x"], changed["value_y"])  # k changed the semantic part

    # changing k must reuse the cached augmentation part: make recomputing it impossible
    def fail(*args, **kwargs):
        raise AssertionError("augmentation part recomputed although only k changed")

    monkeypatch.setitem(compare._PARTS, "augmentation", (fail, compare._PARTS["augmentation"][1]))
    reused = compare.geometry_table(tiny_zoo, **{**settings, "k": 4})
    pd.testing.assert_frame_equal(reused.query("manifold == 'augmentation'").reset_index(drop=True),
                                  table.query("manifold == 'augmentation'").reset_index(drop=True))
    with pytest.raises(ValueError, match="not in the zoo"):
        compare.geometry_table(["no-such-model"], **settings)


def test_eta_squared_interval_inverts_noncentral_f_and_covers():
    from scipy.stats import ncf

    low, high = compare.eta_squared_interval(0.6, n_groups=3, n_total=18)
    f_value = (0.6 / 2) / (0.4 / 15)
    # at the bounds the observed F sits exactly at the 97.5% and 2.5% quantiles
    assert ncf.cdf(f_value, 2, 15, low / (1 - low) * 18) == pytest.approx(0.975, abs=1e-6)
    assert ncf.cdf(f_value, 2, 15, high / (1 - high) * 18) == pytest.approx(0.025, abs=1e-6)
    assert compare.eta_squared_interval(0.01, 3, 18)[0] == 0.0  # no evidence of an effect
    # coverage on simulated one-way designs with a known population eta squared
    rng = np.random.default_rng(0)
    means = np.array([0.0, 1.0, 2.0])
    codes = np.repeat(np.arange(3), 6)
    true_eta2 = means.var() / (means.var() + 1.0)  # population: between / (between + within)
    covered = 0
    for _ in range(200):
        values = (means[codes] + rng.normal(size=18))[:, None]
        eta2 = compare._eta_squared(values, codes, 3)[0]
        low, high = compare.eta_squared_interval(eta2, 3, 18)
        covered += low <= true_eta2 <= high
    assert 0.90 <= covered / 200 <= 0.99


def test_model_labels_from_manifest_and_registry(tiny_zoo):
    labels = compare.model_labels([tiny_zoo[1], "published/swav", tiny_zoo[0]])
    assert list(labels.index) == [tiny_zoo[1], "published/swav", tiny_zoo[0]]
    assert labels.loc[tiny_zoo[0], "paradigm"] == "contrastive"
    assert labels.loc["published/swav", "paradigm"] == "clustering"
    assert labels.loc["published/swav", "backbone"] == "resnet50"
    with pytest.raises(ValueError, match="neither in the default zoo"):
        compare.model_labels(["no-such-model"])


def test_geometry_vectors_drop_undefined_features_with_a_warning():
    vectors, _ = _synthetic_zoo(n_per_group=2, n_features=4)
    table = _tidy(vectors)
    hole = (table["model"] == "model0") & (table["family"] == "fam1") & (table["graph"] == "nnk")
    table.loc[hole, "value"] = np.nan
    with pytest.warns(UserWarning, match="undefined for some models"):
        wide = compare.geometry_vectors(table, statistics=None)
    assert wide.shape[1] == 3 and not any("fam1" in c for c in wide.columns)


def test_select_models_defaults_to_zoo_and_trims_per_paradigm():
    from sslgeom import zoo

    manifest = zoo.manifest()
    assert compare.select_models() == list(manifest["name"])
    trimmed = compare.select_models(None, 1)
    assert len(trimmed) == manifest["paradigm"].nunique()
    assert compare.select_models(["a", "b"]) == ["a", "b"]
    with pytest.raises(TypeError, match="list of model names"):
        compare.select_models("simclr-convnet-s0")
    with pytest.raises(ValueError, match="non-negative"):
        compare.select_models(None, -1)
