"""The zoo's design and the permutations that respect it (sslgeom.design)."""

import itertools

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from sslgeom import design

# The paradigms of sslgeom.ssl_methods.METHODS (checked against the registry below); a copy keeps
# the other tests from importing torch and lightly.
PARADIGMS = {"simclr": "contrastive", "moco-v2": "contrastive", "byol": "non-contrastive",
             "simsiam": "non-contrastive", "barlowtwins": "non-contrastive", "vicreg": "non-contrastive",
             "swav": "clustering", "dino": "clustering"}
#: Observed method -> paradigm codes of the zoo: sizes 2 / 4 / 2.
CODES = np.array([0, 0, 1, 1, 1, 1, 2, 2])


def test_paradigms_come_from_the_training_registry():
    assert design.ssl_paradigms() == PARADIGMS


def test_synthetic_manifest_has_the_zoo_design():
    manifest = design.synthetic_manifest(PARADIGMS)
    assert list(manifest.columns) == list(design.MANIFEST_COLUMNS)
    assert manifest["name"].is_unique
    ssl = manifest[manifest["method"].isin(PARADIGMS)]
    # 8 methods x (3 seeds x 3 budgets on the main backbone + 1 full-budget seed on the second)
    assert len(ssl) == 8 * (3 * 3 + 1)
    per_method = ssl.groupby("method").size()
    assert (per_method == 10).all()
    assert set(ssl.loc[ssl["backbone"] == "resnet", "budget_fraction"]) == {1.0}
    assert (ssl.groupby("run_id")["budget_fraction"].nunique().loc[lambda s: s.index.str.contains("convnet")] == 3).all()
    assert set(manifest["paradigm"]) == {"contrastive", "non-contrastive", "clustering", "random", "supervised"}
    assert "simclr-convnet-s1-b025" in set(manifest["name"]) and "simclr-resnet-s0" in set(manifest["name"])
    full = design.analysis_rows(manifest, backbone="convnet")
    assert len(full) == 8 * 3 and (full["budget_fraction"] == 1.0).all()
    assert len(design.analysis_rows(manifest, budget=None, references=True)) == len(manifest)


def test_unit_labels_refuse_a_label_that_varies_within_a_unit():
    labels = design.unit_labels(["a", "a", "b", "c"], ["x", "x", "y", "x"])
    assert labels.to_dict() == {"a": "x", "b": "y", "c": "x"}
    with pytest.raises(ValueError, match="several labels"):
        design.unit_labels(["a", "a", "b"], ["x", "y", "y"])


def test_method_groups_read_units_groups_and_strata_once():
    rows = design.analysis_rows(design.synthetic_manifest(PARADIGMS, references=False)).set_index("name")
    groups = design.method_groups(rows)
    # units in order of first appearance, groups sorted, each model pointing at its unit
    assert list(groups.units) == list(dict.fromkeys(rows["method"]))
    assert list(groups.groups) == ["clustering", "contrastive", "non-contrastive"]
    assert list(groups.units[groups.unit_of_model]) == list(rows["method"])
    assert [groups.groups[groups.group_of_unit[u]] for u in groups.unit_of_model] == list(rows["paradigm"])
    assert list(groups.strata) == list(rows["backbone"]) and list(groups.models) == list(rows.index)
    assert set(design.method_groups(rows, stratum=None).strata) == {"all"}
    # select reorders by name and renumbers the units by their first appearance there
    reversed_names = rows.index[::-1]
    flipped = groups.select(reversed_names)
    assert list(flipped.models) == list(reversed_names)
    assert list(flipped.units) == list(dict.fromkeys(rows.loc[reversed_names, "method"]))
    assert list(flipped.units[flipped.unit_of_model]) == list(rows.loc[reversed_names, "method"])


def test_method_groups_refuse_bad_labels_with_a_fix():
    rows = design.analysis_rows(design.synthetic_manifest(PARADIGMS, references=False)).set_index("name")
    with pytest.raises(TypeError, match="DataFrame indexed by model"):
        design.method_groups(rows["paradigm"])
    with pytest.raises(ValueError, match=r"no column\(s\) \['family'\].*stratum=None"):
        design.method_groups(rows, stratum="family")
    holes = rows.copy()
    holes.iloc[0, holes.columns.get_loc("paradigm")] = None
    with pytest.raises(ValueError, match="missing values in \\['paradigm'\\]"):
        design.method_groups(holes)
    with pytest.raises(ValueError, match="repeated model names"):
        design.method_groups(rows.iloc[[0, 0, 1]])
    mixed = rows.copy()
    mixed.iloc[0, mixed.columns.get_loc("paradigm")] = "clustering"
    with pytest.raises(ValueError, match="several labels"):
        design.method_groups(mixed)
    groups = design.method_groups(rows)
    with pytest.raises(ValueError, match="1 model\\(s\\) have no labels"):
        groups.select(list(rows.index[:3]) + ["not-a-model"])
    with pytest.raises(ValueError, match="rows for"):
        design.aligned_groups(groups, np.zeros((3, 3)))
    with pytest.raises(TypeError, match=r"groups must be a MethodGroups, got Series; .*method_groups\(labels"):
        design.aligned_groups(rows["paradigm"], np.zeros((len(rows), len(rows))))


def test_counts_of_assignments_420_labelled_and_210_distinct():
    assert design.count_assignments([2, 4, 2]) == 420
    assert design.count_assignments([2, 4, 2], distinct=True) == 210
    labelled = design.enumerate_assignments(CODES)
    distinct = design.enumerate_assignments(CODES, distinct=True)
    assert labelled.shape == (420, 8) and distinct.shape == (210, 8)
    for rows in (labelled, distinct):
        assert len(np.unique(rows, axis=0)) == len(rows)
        assert all(sorted(np.bincount(r)) == [2, 2, 4] for r in rows)
    # brute force: all distinct orderings of the codes, and the partitions they make
    brute = set(itertools.permutations(CODES.tolist()))
    assert len(brute) == 420
    partitions = {frozenset(frozenset(np.flatnonzero(np.array(p) == g)) for g in range(3)) for p in brute}
    assert len(partitions) == 210
    mine = {frozenset(frozenset(np.flatnonzero(r == g)) for g in range(3)) for r in distinct}
    assert mine == partitions


def test_exact_p_is_ties_at_the_maximum_over_the_total():
    # ARI with the true partition is maximal (1) only there: one partition of 210, two labelled of 420
    ari = lambda rows: np.array([adjusted_rand_score(CODES, r) for r in rows])  # noqa: E731
    exact = design.unit_permutation_test(ari, CODES, distinct=True)
    assert exact.exact and exact.n_assignments == 210
    assert exact.p_value == pytest.approx(1 / 210) and exact.min_p == pytest.approx(1 / 210)
    labelled = design.unit_permutation_test(ari, CODES, distinct=False)
    assert labelled.n_assignments == 420 and labelled.p_value == pytest.approx(2 / 420)


def test_exact_p_counts_every_tied_assignment():
    # statistic: are methods 0 and 1 in the same group? Observed yes; p = share of assignments where they are
    together = lambda rows: (rows[:, 0] == rows[:, 1]).astype(float)  # noqa: E731
    result = design.unit_permutation_test(together, CODES, distinct=False)
    brute = [p for p in set(itertools.permutations(CODES.tolist()))]
    expected = sum(p[0] == p[1] for p in brute) / len(brute)
    assert result.p_value == pytest.approx(expected)
    assert result.p_value == pytest.approx((2 * 1 + 4 * 3 + 2 * 1) / (8 * 7))  # ordered pairs within groups / all


def test_several_statistics_share_one_enumeration():
    # e.g. one statistic per metric: each gets its own exact p-value from the same relabellings
    both = lambda rows: np.column_stack([[adjusted_rand_score(CODES, r) for r in rows],  # noqa: E731
                                         (rows[:, 0] == rows[:, 1]).astype(float)])
    result = design.unit_permutation_test(both, CODES)
    assert result.null.shape == (210, 2)
    np.testing.assert_allclose(result.p_value, [1 / 210, 16 / 56])


def test_monte_carlo_fallback_states_its_size_and_floor():
    ari = lambda rows: np.array([adjusted_rand_score(CODES, r) for r in rows])  # noqa: E731
    permutations = design.MethodPermutations(max_enumerate=100, n_permutations=499, seed=3)
    result = design.unit_permutation_test(ari, CODES, permutations=permutations)
    assert not result.exact and result.n_assignments == 499
    assert result.min_p == pytest.approx(1 / 500)
    assert result.p_value == pytest.approx((1 + np.sum(result.null >= 1 - 1e-12)) / 500)
    again = design.unit_permutation_test(ari, CODES, permutations=permutations)
    np.testing.assert_array_equal(result.null, again.null)


def test_method_permutations_are_frozen_hashable_plain_settings():
    assert design.MethodPermutations() == design.MethodPermutations(max_enumerate=20_000, n_permutations=9_999, seed=0)
    assert design.MethodPermutations(max_enumerate=np.int64(16)).max_enumerate == 16  # NumPy integers are plain ints
    assert len({design.MethodPermutations(), design.MethodPermutations(seed=1), design.MethodPermutations()}) == 2
    with pytest.raises(Exception, match="cannot assign"):  # frozen
        design.MethodPermutations().seed = 1


@pytest.mark.parametrize("settings, error, message", [
    ({"max_enumerate": 0}, ValueError, "max_enumerate must be at least 1, got 0"),
    ({"n_permutations": 0}, ValueError, "n_permutations must be at least 1, got 0"),
    ({"n_permutations": 99.5}, TypeError, r"n_permutations must be an integer, got 99.5 \(float\)"),
    ({"seed": -1}, ValueError, "seed must be at least 0, got -1"),
    ({"seed": True}, TypeError, "seed must be an integer, got True"),
])
def test_method_permutations_refuse_bad_settings_by_name(settings, error, message):
    with pytest.raises(error, match=message):
        design.MethodPermutations(**settings)


def test_unit_permutations_move_whole_methods_matched_by_position():
    manifest = design.synthetic_manifest(PARADIGMS)
    positions = list(zip(manifest["backbone"], manifest["seed"], manifest["budget_fraction"]))
    units = manifest["method"].to_numpy()
    index = design.unit_permutations(units, 50, seed=1, positions=positions)
    assert index.shape == (50, len(manifest))
    np.testing.assert_array_equal(index, design.unit_permutations(units, 50, seed=1, positions=positions))
    moved = 0
    for row in index:
        for unit in np.unique(units):
            rows = np.flatnonzero(units == unit)
            donors = set(units[row[rows]])
            assert len(donors) == 1  # all of a unit's models come from one unit
            assert [positions[i] for i in row[rows]] == [positions[i] for i in rows]  # matched position by position
            moved += donors != {unit}
        assert sorted(row) == list(range(len(manifest)))  # a permutation of the rows
        # random has its own positions (budget 0): it never swaps
        random_rows = np.flatnonzero(units == "random")
        np.testing.assert_array_equal(row[random_rows], random_rows)
    assert moved > 0


def test_within_strata_permutations_keep_labels_in_their_stratum():
    codes = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    strata = np.array(["c"] * 6 + ["r"] * 2)
    out = design.within_strata_permutations(codes, strata, 100, seed=0)
    for row in out:
        assert sorted(row[:6]) == sorted(codes[:6]) and sorted(row[6:]) == sorted(codes[6:])
    # without strata: the sequence scikit-bio draws
    rng = np.random.default_rng(5)
    expected = np.stack([rng.permutation(codes) for _ in range(3)])
    np.testing.assert_array_equal(design.within_strata_permutations(codes, None, 3, seed=5), expected)
