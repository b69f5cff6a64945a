"""Paradigm statistics on synthetic zoos, against scikit-learn, SciPy and hand computations."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
from scipy.spatial import procrustes
from scipy.spatial.distance import cdist
from sklearn.cluster import AgglomerativeClustering
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from sslgeom import geometry, paradigm


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
    """Turn (models, features) into a geometry table; the kNN rows hold twice the NNK values."""
    rows = []
    for model, row in vectors.iterrows():
        for j, value in enumerate(row):
            manifold = "semantic" if j % 2 == 0 else "augmentation"
            family = f"fam{j}"
            metric = "diameter" if j % 4 < 2 else "n_neighbors"
            statistic = "mean" if j < 6 else "median"
            rows.append((model, manifold, family, "nnk", metric, statistic, value))
            rows.append((model, manifold, family, "knn", metric, statistic, 2 * value))
    return pd.DataFrame(rows, columns=geometry.TABLE_COLUMNS)


def _feature(j):
    manifold = "semantic" if j % 2 == 0 else "augmentation"
    return f"{manifold}/fam{j}/{'diameter' if j % 4 < 2 else 'n_neighbors'}/{'mean' if j < 6 else 'median'}"


def test_geometry_vectors_pivot_every_value_and_filter():
    vectors, _ = _synthetic_zoo()
    table = _tidy(vectors)
    wide = paradigm.geometry_vectors(table, statistics=None)
    assert list(wide.columns) == sorted(_feature(j) for j in range(12))
    assert list(wide.index) == sorted(vectors.index)
    for j, column in enumerate(vectors.columns):
        np.testing.assert_array_equal(wide.loc[vectors.index, _feature(j)], vectors[column])
    knn = paradigm.geometry_vectors(table, graph="knn", statistics=None)
    np.testing.assert_array_equal(knn.to_numpy(), 2 * wide.to_numpy())
    only_mean = paradigm.geometry_vectors(table, statistics=["mean"], manifolds=["semantic"])
    assert list(only_mean.columns) == sorted(_feature(j) for j in (0, 2, 4))
    diameters = paradigm.geometry_vectors(table, statistics=None, metrics=["diameter"])
    assert list(diameters.columns) == sorted(_feature(j) for j in range(12) if j % 4 < 2)
    with pytest.raises(ValueError, match="no rows left"):
        paradigm.geometry_vectors(table, metrics=["no_such_metric"])
    with pytest.raises(ValueError, match="lacks columns"):
        paradigm.geometry_vectors(table.drop(columns="graph"))


def test_geometry_vectors_drop_undefined_features_with_a_warning():
    vectors, _ = _synthetic_zoo(n_per_group=2, n_features=4)
    table = _tidy(vectors)
    hole = (table["model"] == "model0") & (table["family"] == "fam1") & (table["graph"] == "nnk")
    table.loc[hole, "value"] = np.nan
    with pytest.warns(UserWarning, match="undefined for some models"):
        wide = paradigm.geometry_vectors(table, statistics=None)
    assert list(wide.columns) == sorted(_feature(j) for j in (0, 2, 3))


def test_standardize_z_scores_and_drops_constant_columns():
    vectors = pd.DataFrame({"a": [1.0, 2.0, 3.0, 6.0], "constant": 5.0, "b": [0.0, 0.0, 1.0, 1.0]})
    z = paradigm.standardize(vectors)
    assert list(z.columns) == ["a", "b"]
    np.testing.assert_allclose(z["a"], (np.array([1, 2, 3, 6]) - 3.0) / np.sqrt(3.5))  # population sd of a: sqrt(3.5)
    np.testing.assert_allclose(z["b"], [-1.0, -1.0, 1.0, 1.0])


def test_distances_are_euclidean_on_standardized_features():
    vectors, _ = _synthetic_zoo()
    vectors["constant"] = 1.0
    distances = paradigm.model_distances(vectors)
    kept = vectors.drop(columns="constant").to_numpy()
    z = (kept - kept.mean(axis=0)) / kept.std(axis=0)
    np.testing.assert_allclose(distances.to_numpy(), cdist(z, z), atol=1e-12)
    assert list(distances.index) == list(distances.columns) == list(vectors.index)
    raw = paradigm.model_distances(vectors, standardized=False)
    np.testing.assert_allclose(raw.to_numpy(), cdist(vectors.to_numpy(), vectors.to_numpy()), atol=1e-12)


@pytest.mark.parametrize("method", ["average", "complete", "single"])
def test_clustering_matches_scikit_learn(method):
    vectors, _ = _synthetic_zoo(separation=1.0, seed=3)  # weak structure: the tree is not trivial
    distances = paradigm.model_distances(vectors)
    for n_clusters in (2, 3, 5):
        ours, tree = paradigm.cluster_models(distances, n_clusters, method=method)
        reference = AgglomerativeClustering(n_clusters=n_clusters, metric="precomputed",
                                            linkage=method).fit_predict(distances.to_numpy())
        assert adjusted_rand_score(reference, ours) == 1.0  # the same partition, up to naming
        assert sorted(np.unique(ours)) == list(range(n_clusters))
        assert tree.shape == (len(vectors) - 1, 4)


def test_clustering_rejects_bad_input():
    distances = paradigm.model_distances(_synthetic_zoo()[0])
    with pytest.raises(ValueError, match="between 1 and 15"):
        paradigm.cluster_models(distances, 16)
    with pytest.raises(ValueError, match="unknown linkage method 'median'"):
        paradigm.cluster_models(distances, 2, method="median")
    asymmetric = distances.to_numpy().copy()
    asymmetric[0, 1] += 1
    with pytest.raises(ValueError, match="symmetric"):
        paradigm.cluster_models(asymmetric, 2)


def test_agreement_matches_hand_computation_and_scikit_learn():
    labels = [0, 0, 0, 1, 1, 1]
    clusters = [0, 0, 1, 1, 2, 2]
    # contingency pairs: sum C(n_ij,2) = 2, rows 6, columns 3, C(6,2) = 15
    expected_ari = (2 - 6 * 3 / 15) / ((6 + 3) / 2 - 6 * 3 / 15)
    # NMI (arithmetic mean): I = ln 2 - (2/3) ln 2 ... computed from the joint table by hand
    joint = np.array([[2, 1, 0], [0, 1, 2]]) / 6
    outer = joint.sum(1, keepdims=True) * joint.sum(0, keepdims=True)
    mutual = np.sum(joint[joint > 0] * np.log(joint[joint > 0] / outer[joint > 0]))
    entropy = lambda p: -np.sum(p * np.log(p))  # noqa: E731
    expected_nmi = mutual / ((entropy(np.array([0.5, 0.5])) + entropy(np.array([1, 1, 1]) / 3)) / 2)
    scores = paradigm.cluster_agreement(clusters, labels)
    assert scores["ari"] == pytest.approx(expected_ari, abs=1e-14)
    assert scores["nmi"] == pytest.approx(expected_nmi, abs=1e-14)
    assert scores["ari"] == adjusted_rand_score(labels, clusters)
    assert scores["nmi"] == normalized_mutual_info_score(labels, clusters)
    assert paradigm.cluster_agreement([1, 1, 0, 0], ["a", "a", "b", "b"]) == {"ari": 1.0, "nmi": 1.0}


def test_fast_agreement_matches_scikit_learn():
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(50):
        n = int(rng.integers(6, 30))
        clusters = rng.integers(0, rng.integers(2, 5), size=n)
        labels = rng.integers(0, rng.integers(2, 5), size=n)
        _, c = np.unique(clusters, return_inverse=True)
        _, l = np.unique(labels, return_inverse=True)
        if c.max() < 1 or l.max() < 1:
            continue
        ari, nmi = paradigm._fast_agreement(c, l, c.max() + 1, l.max() + 1)
        assert ari == pytest.approx(adjusted_rand_score(labels, clusters), abs=1e-12)
        assert nmi == pytest.approx(normalized_mutual_info_score(labels, clusters), abs=1e-12)
        checked += 1
    assert checked >= 40


def test_embeddings_recover_planar_distances():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(9, 2))
    distances = pd.DataFrame(cdist(points, points), index=[f"m{i}" for i in range(9)],
                             columns=[f"m{i}" for i in range(9)])
    classical = paradigm.embedding_2d(distances, method="classical")
    assert list(classical.index) == list(distances.index) and list(classical.columns) == ["x", "y"]
    np.testing.assert_allclose(cdist(classical, classical), distances, atol=1e-9)
    # classical MDS is the PCA of the centred points (up to the sign of each axis)
    centred = points - points.mean(axis=0)
    pcs = centred @ np.linalg.svd(centred, full_matrices=False)[2].T
    np.testing.assert_allclose(np.abs(classical.to_numpy()), np.abs(pcs), atol=1e-9)
    mds = paradigm.embedding_2d(distances, method="mds", seed=0).to_numpy()
    # planar data: SMACOF (stopped at its tolerance) finds the points up to a rigid motion
    assert procrustes(points, mds)[2] < 1e-3
    relative_stress = np.sqrt(((cdist(mds, mds) - distances.to_numpy()) ** 2).sum() / (distances.to_numpy() ** 2).sum())
    assert relative_stress < 1e-2
    with pytest.raises(ValueError, match="'mds' or 'classical'"):
        paradigm.embedding_2d(distances, method="tsne")


def test_sensitivity_variants_change_one_choice_each(monkeypatch):
    calls = []

    def fake_table(names, settings, *, device="cpu", progress=True):
        calls.append(settings)
        return pd.DataFrame({"settings": [settings]})

    monkeypatch.setattr(paradigm, "geometry_table", fake_table)
    settings = geometry.GeometrySettings(k=8, n_base=4)
    variants = paradigm.sensitivity_variants(["m"], settings, ks=[5, 12], kernel="gaussian", n_base=2)
    assert list(variants) == ["main", "k=5", "k=12", "kernel=gaussian", "n_base=2", "kNN graph"]
    nnk_only = dataclasses.replace(settings, graphs=("nnk",))
    assert calls == [settings, dataclasses.replace(nnk_only, k=5), dataclasses.replace(nnk_only, k=12),
                     dataclasses.replace(nnk_only, kernel="gaussian"), dataclasses.replace(nnk_only, n_base=2)]
    assert [graph for _, graph in variants.values()] == ["nnk"] * 5 + ["knn"]
    assert variants["kNN graph"][0] is variants["main"][0]
    calls.clear()
    same = paradigm.sensitivity_variants(["m"], settings, kernel="cosine", n_base=4)  # unchanged choices
    assert list(same) == ["main", "kNN graph"] and calls == [settings]


# --- the method as the unit: cluster agreement over method partitions, label variants ---

from sslgeom import design  # noqa: E402

UNIT_PARADIGMS = {"simclr": "contrastive", "moco-v2": "contrastive", "byol": "non-contrastive",
                  "simsiam": "non-contrastive", "barlowtwins": "non-contrastive", "vicreg": "non-contrastive",
                  "swav": "clustering", "dino": "clustering"}


def _unit_zoo(rng, effect=0.0, n_features=4):
    rows = design.analysis_rows(design.synthetic_manifest(UNIT_PARADIGMS, references=False))
    labels = rows.set_index("name")
    _, methods = np.unique(labels["method"], return_inverse=True)
    _, paradigms_ = np.unique(labels["paradigm"], return_inverse=True)
    _, backbones = np.unique(labels["backbone"], return_inverse=True)
    x = (rng.normal(size=(8, n_features))[methods] + 5 * rng.normal(size=(2, n_features))[backbones]
         + effect * rng.normal(size=(3, n_features))[paradigms_] + 0.2 * rng.normal(size=(len(labels), n_features)))
    return pd.DataFrame(x, index=labels.index), labels


def test_unit_agreement_is_exact_over_210_partitions_and_matches_scikit_learn():
    vectors, labels = _unit_zoo(np.random.default_rng(0), effect=8.0)
    distances = paradigm.model_distances(vectors)
    result = paradigm.unit_agreement_test(distances, design.method_groups(labels))
    assert result.exact and result.n_assignments == 210 and result.min_p == pytest.approx(1 / 210)
    # the per-stratum ARI is scikit-learn's on that backbone's clusters
    for backbone, row in result.per_stratum.iterrows():
        members = labels.index[labels["backbone"] == backbone]
        assert row["ARI"] == pytest.approx(adjusted_rand_score(labels.loc[members, "paradigm"],
                                                               result.clusters.loc[members]))
    assert result.ari == pytest.approx(result.per_stratum["ARI"].mean())
    assert result.p_ari <= 0.05  # planted paradigm effect found


def test_unit_agreement_refuses_bad_input_with_a_fix():
    vectors, labels = _unit_zoo(np.random.default_rng(2))
    distances = paradigm.model_distances(vectors)
    with pytest.raises(ValueError, match="unknown linkage method 'median'"):
        paradigm.unit_agreement_test(distances, design.method_groups(labels), method="median")
    with pytest.raises(TypeError, match="groups must be a MethodGroups"):
        paradigm.unit_agreement_test(distances, labels)
    with pytest.raises(ValueError, match="have no labels"):
        paradigm.unit_agreement_test(distances, design.method_groups(labels.iloc[:-1]))


def test_unit_agreement_null_moves_whole_methods():
    vectors, labels = _unit_zoo(np.random.default_rng(1))
    result = paradigm.unit_agreement_test(paradigm.model_distances(vectors), design.method_groups(labels))
    # every partition's ARI: the observed one is among them, and p counts ties at or above it
    assert np.isclose(result.null_ari, result.ari).any()
    assert result.p_ari == pytest.approx(np.mean(result.null_ari >= result.ari - 1e-12))


def test_unit_agreement_false_positive_rate_is_near_the_level():
    hits = []
    for i in range(120):
        vectors, labels = _unit_zoo(np.random.default_rng(1000 + i))
        hits.append(paradigm.unit_agreement_test(paradigm.model_distances(vectors), design.method_groups(labels)).p_ari <= 0.05)
    # exact test over 210 partitions: at most 5% under the null (discrete, so conservative)
    assert np.mean(hits) <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 120)


def test_relabel_moves_methods_between_paradigms():
    _, labels = _unit_zoo(np.random.default_rng(2))
    moved = paradigm.relabel(labels, {"dino": "non-contrastive", "swav": "non-contrastive", "absent": "x"})
    assert set(moved.loc[moved["method"] == "dino", "paradigm"]) == {"non-contrastive"}
    assert moved["paradigm"].nunique() == 2 and labels["paradigm"].nunique() == 3  # the input is unchanged
    counts = design.unit_labels(moved["method"].tolist(), moved["paradigm"].tolist()).value_counts()
    assert design.count_assignments(counts.to_numpy(), distinct=True) == 28


def test_run_trajectories_measure_each_runs_steps():
    points = pd.DataFrame({"x": [0.0, 1.0, 3.0, 0.0, 0.0, 0.0]},
                          index=["r1-25", "r1-50", "r1", "r2-25", "r2-50", "r2"])
    labels = pd.DataFrame({"run_id": ["r1"] * 3 + ["r2"] * 3, "budget_fraction": [0.25, 0.5, 1.0] * 2},
                          index=points.index)
    table = paradigm.run_trajectories(paradigm.model_distances(points, standardized=False), labels)
    first = table[(table["run"] == "r1") & (table["budget"] == 0.25)].iloc[0]
    assert first["to_final"] == 3.0 and first["step"] == 1.0
    assert (table.loc[table["run"] == "r2", ["to_final", "step"]] == 0).all().all()


def test_no_model_level_label_shuffle_is_offered():
    # seeds of a method are replicates: every label test of this module reassigns whole methods
    for removed in ("permutation_test", "label_test", "label_tests", "sensitivity_table", "PermutationResult",
                    "effect_sizes"):
        assert not hasattr(paradigm, removed)
