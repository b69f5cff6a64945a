"""Claim 1's tests on the zoo's design (sslgeom.permanova): against scikit-bio, by hand, and by simulation."""

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import pdist, squareform
from skbio import DistanceMatrix
from skbio.stats.distance import permanova as skbio_permanova

from sslgeom import design, permanova
from sslgeom.design import MethodPermutations
from sslgeom.stats import PowerSimulation

# As in sslgeom.ssl_methods.METHODS (checked in test_design): paradigm sizes 2 / 4 / 2.
PARADIGMS = {"simclr": "contrastive", "moco-v2": "contrastive", "byol": "non-contrastive",
             "simsiam": "non-contrastive", "barlowtwins": "non-contrastive", "vicreg": "non-contrastive",
             "swav": "clustering", "dino": "clustering"}
MANIFEST = design.synthetic_manifest(PARADIGMS, references=False)
FULL = design.analysis_rows(MANIFEST).reset_index(drop=True)  # 8 methods x (3 convnet + 1 resnet seeds)
CONVNET = FULL[FULL["backbone"] == "convnet"].reset_index(drop=True)


def _binomial_band(rate: float, n: int, level: float = 0.05) -> bool:
    """Is a rejection rate within 3 binomial standard errors of ``level``?"""
    return abs(rate - level) <= 3 * np.sqrt(level * (1 - level) / n)


def _null_geometry(rng, table, method_sd=1.0, n_features=5):
    """Method effects (shared across backbones) + backbone shift + seed noise; no paradigm effect."""
    methods, codes = np.unique(table["method"], return_inverse=True)
    backbones, b = np.unique(table["backbone"], return_inverse=True)
    method = rng.normal(scale=method_sd, size=(len(methods), n_features))
    interaction = rng.normal(scale=0.5 * method_sd, size=(len(backbones), len(methods), n_features))
    x = method[codes] + 3 * rng.normal(size=(len(backbones), n_features))[b] + interaction[b, codes]
    return x + rng.normal(size=x.shape)


def _planted(rng, table, effect=10.0):
    x = _null_geometry(rng, table)
    _, p = np.unique(table["paradigm"], return_inverse=True)
    return x + effect * rng.normal(size=(3, x.shape[1]))[p]


# --------------------------------------------------------------------------- one-way (method effect)


@pytest.mark.parametrize("seed", [0, 7])
def test_oneway_equals_scikit_bio_same_f_same_p(seed):
    rng = np.random.default_rng(seed)
    groups = np.array(list("aaabbbbccdddddeef"))  # unequal group sizes
    x = rng.normal(size=(len(groups), 4)) + 0.4 * (groups == "a")[:, None]
    distances = squareform(pdist(x))
    mine = permanova.permanova(distances, groups, n_permutations=499, seed=seed)
    for engine in ("cython", None):  # None: scikit-bio's configured default
        reference = skbio_permanova(DistanceMatrix(distances), groups, permutations=499, seed=seed,
                                    **({"engine": engine} if engine else {}))
        assert mine.statistic == pytest.approx(reference["test statistic"], rel=1e-12)
        assert mine.p_value == reference["p-value"]  # same permutations, same count
    assert mine.min_p == pytest.approx(1 / 500) and not mine.exact


def test_oneway_accepts_a_dataframe_and_states_r2():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(12, 3))
    names = [f"m{i}" for i in range(12)]
    frame = pd.DataFrame(squareform(pdist(x)), index=names, columns=names)
    groups = np.repeat([0, 1, 2], 4)
    result = permanova.permanova(frame, groups, n_permutations=9)
    row = result.per_stratum.loc["all"]
    # R^2 = 1 / (1 + (n - g) / ((g - 1) F)), the relation stated by scikit-bio
    assert row["r2"] == pytest.approx(1 / (1 + (12 - 3) / (2 * result.statistic)))
    assert (row["df_effect"], row["df_residual"], row["n"]) == (2, 9, 12)


def test_oneway_is_uniform_under_no_method_effect():
    rng = np.random.default_rng(2)
    groups = CONVNET["method"].to_numpy()
    n_sim, rejections = 400, 0
    for i in range(n_sim):
        x = rng.normal(size=(len(groups), 5))
        rejections += permanova.permanova(squareform(pdist(x)), groups, n_permutations=99, seed=i).p_value <= 0.05
    rate = rejections / n_sim  # measured: 0.055
    assert _binomial_band(rate, n_sim), rate


def test_stratified_oneway_sums_f_within_strata_and_is_uniform_under_the_null():
    table = design.analysis_rows(design.synthetic_manifest(PARADIGMS, n_second_seeds=2, references=False))
    groups, strata = table["method"].to_numpy(), table["backbone"].to_numpy()
    rng = np.random.default_rng(3)
    x = rng.normal(size=(len(table), 4))
    x[strata == "resnet"] += 5.0  # a backbone shift must not matter
    result = permanova.permanova(squareform(pdist(x)), groups, strata=strata, n_permutations=49, seed=0)
    for stratum in ("convnet", "resnet"):
        keep = strata == stratum
        alone = permanova.permanova(squareform(pdist(x[keep])), groups[keep], n_permutations=9)
        assert result.per_stratum.loc[stratum, "F"] == pytest.approx(alone.statistic, rel=1e-10)
    assert result.statistic == pytest.approx(result.per_stratum["F"].sum())
    n_sim, rejections = 300, 0
    for i in range(n_sim):
        x = rng.normal(size=(len(table), 4)) + 5.0 * (strata == "resnet")[:, None]
        rejections += permanova.permanova(squareform(pdist(x)), groups, strata=strata, n_permutations=99,
                                          seed=i).p_value <= 0.05
    rate = rejections / n_sim  # measured: 0.043
    assert _binomial_band(rate, n_sim), rate


# --------------------------------------------------------------------------- nested (paradigm effect)


def test_nested_f_equals_the_means_formula_with_unequal_sizes():
    rng = np.random.default_rng(4)
    table = CONVNET.drop(index=[0, 4, 5]).reset_index(drop=True)  # unequal seeds per method
    x = rng.normal(size=(len(table), 3))
    result = permanova.nested_permanova(squareform(pdist(x)), design.method_groups(table, stratum=None))
    grand = x.mean(axis=0)
    ss_paradigm = sum(len(g) * np.sum((g.mean(axis=0) - grand) ** 2)
                      for _, g in pd.DataFrame(x).groupby(table["paradigm"].to_numpy()))
    ss_method = 0.0
    for method, rows in table.groupby("method").groups.items():
        paradigm_rows = table.index[table["paradigm"] == PARADIGMS[method]]
        ss_method += len(rows) * np.sum((x[rows].mean(axis=0) - x[paradigm_rows].mean(axis=0)) ** 2)
    expected = (ss_paradigm / (3 - 1)) / (ss_method / (8 - 3))
    assert result.statistic == pytest.approx(expected, rel=1e-10)
    row = result.per_stratum.loc["all"]
    assert (row["df_effect"], row["df_residual"]) == (2, 5)


def test_nested_is_exact_over_the_210_method_partitions_and_rejects_a_planted_effect():
    rng = np.random.default_rng(5)
    for stratum in (None, "backbone"):
        x = _planted(rng, FULL)
        result = permanova.nested_permanova(squareform(pdist(x)), design.method_groups(FULL, stratum=stratum))
        assert result.exact and result.n_permutations == 210
        assert result.min_p == pytest.approx(1 / 210)
        assert result.p_value == pytest.approx(1 / 210)  # the true partition beats all 209 others


def test_nested_monte_carlo_fallback():
    rng = np.random.default_rng(6)
    x = _planted(rng, CONVNET)
    result = permanova.nested_permanova(squareform(pdist(x)), design.method_groups(CONVNET, stratum=None),
                                        permutations=MethodPermutations(max_enumerate=100, n_permutations=199, seed=1))
    assert not result.exact and result.n_permutations == 199
    # random relabellings may redraw the true partition (2 of 420 labelled ones), which ties
    assert result.p_value == pytest.approx((1 + np.sum(result.null >= result.statistic * (1 - 1e-12))) / 200)
    assert result.min_p == pytest.approx(1 / 200) and result.p_value <= 0.05


def test_nested_refuses_a_paradigm_that_varies_within_a_method():
    x = np.random.default_rng(0).normal(size=(len(CONVNET), 2))
    mixed = CONVNET.copy()
    mixed.loc[0, "paradigm"] = "clustering"
    with pytest.raises(ValueError, match="several labels"):
        permanova.nested_permanova(squareform(pdist(x)), design.method_groups(mixed, stratum=None))
    # the labels come as one MethodGroups, not as columns
    with pytest.raises(TypeError, match="groups must be a MethodGroups"):
        permanova.nested_permanova(squareform(pdist(x)), CONVNET["paradigm"])
    # rows of an array must match the labelled models one to one
    with pytest.raises(ValueError, match="rows for"):
        permanova.nested_permanova(squareform(pdist(x[:-1])), design.method_groups(CONVNET, stratum=None))


@pytest.mark.parametrize("stratified", [False, True])
def test_nested_type_one_error_with_method_effects_and_no_paradigm_effect(stratified):
    rng = np.random.default_rng(8 + stratified)
    table = FULL if stratified else CONVNET
    groups = design.method_groups(table, stratum="backbone" if stratified else None)
    n_sim, rejections, naive = 400, 0, 0
    for i in range(n_sim):
        distances = squareform(pdist(_null_geometry(rng, table)))
        p = permanova.nested_permanova(distances, groups).p_value
        rejections += p <= 0.05
        if not stratified and i < 100:  # paradigm tested with models as replicates: the wrong unit
            naive += permanova.permanova(distances, table["paradigm"], n_permutations=99, seed=i).p_value <= 0.05
    rate = rejections / n_sim  # exact test: expected 10/210 = 0.048; measured 0.0475 pooled, 0.0425 stratified
    assert _binomial_band(rate, n_sim), rate
    if not stratified:
        assert naive / 100 > 0.2  # measured 0.55: seeds are not independent replicates of a paradigm


# --------------------------------------------------------------------------- per-metric effects and power


def test_metric_effects_flag_the_planted_metric_at_the_method_level():
    rng = np.random.default_rng(10)
    x = _null_geometry(rng, FULL, n_features=4)
    _, p = np.unique(FULL["paradigm"], return_inverse=True)
    x[:, 0] += 10 * np.array([-1.0, 0.0, 1.0])[p]
    values = pd.DataFrame(x, index=FULL["name"], columns=["planted", "b", "c", "d"])
    labels = FULL.set_index("name")[["method", "paradigm", "backbone"]]
    table = permanova.metric_effects(values, design.method_groups(labels))
    assert table["exact"].all()
    assert table.loc["planted", "p_value"] == pytest.approx(1 / 210)
    assert table.loc["planted", "eta2_partial"] > 0.9
    assert table.loc["planted", "reject"]
    # eta2 from statsmodels equals the least-squares drop in residual SS used for the permutation null
    backbone = (FULL["backbone"] == "resnet").to_numpy(dtype=float)
    base = np.column_stack([np.ones(len(x)), backbone])
    full = np.column_stack([base, (p[:, None] == np.array([1, 2])).astype(float)])
    rss = lambda d: np.sum((x - d @ np.linalg.lstsq(d, x, rcond=None)[0]) ** 2, axis=0)  # noqa: E731
    np.testing.assert_allclose(table["eta2_partial"], 1 - rss(full) / rss(base), rtol=1e-10)
    from statsmodels.stats.multitest import multipletests

    np.testing.assert_allclose(table["q_value"], multipletests(table["p_value"], method="fdr_bh")[1])


def test_paradigm_power_curve_and_minimal_effect():
    curve, minimal = permanova.paradigm_power(FULL, effects=(0.0, 6.0), simulation=PowerSimulation(n_sim=20))
    assert list(curve.columns) == ["effect", "power", "low", "high"]
    assert curve.loc[0, "power"] <= 0.25  # about alpha under no effect
    assert curve.loc[1, "power"] >= 0.8 and minimal == 6.0
    again, _ = permanova.paradigm_power(FULL, effects=(0.0, 6.0), simulation=PowerSimulation(n_sim=20, seed=0))
    pd.testing.assert_frame_equal(curve, again)
    _, none = permanova.paradigm_power(FULL, effects=(0.0,), simulation=PowerSimulation(n_sim=5))
    assert np.isnan(none)
    # more partitions than max_enumerate: each simulation runs nested_permanova with the simulation's permutations
    monte_carlo, _ = permanova.paradigm_power(FULL, effects=(6.0,), max_enumerate=10,
                                              simulation=PowerSimulation(n_sim=3, n_permutations=99))
    assert monte_carlo.loc[0, "power"] == 1.0  # a large effect: each p near its floor 1/100


# --- simulation settings, verdicts on claims of no effect, repeated measures along the budget ---

def test_simulation_settings_recover_the_variance_components():
    rng = np.random.default_rng(3)
    methods = np.repeat(np.arange(40), 5)
    x = 2.0 * rng.normal(size=(40, 6))[methods] + 0.5 * rng.normal(size=(200, 6))
    settings = permanova.simulation_settings(pd.DataFrame(x), methods)
    assert settings["method_sd"] == pytest.approx(2.0, rel=0.25)
    assert settings["seed_sd"] == pytest.approx(0.5, rel=0.15)
    assert 4 <= settings["n_features"] <= 6  # six nearly independent features
    # perfectly correlated features count as one
    y = np.repeat(x[:, :1], 5, axis=1)
    assert permanova.simulation_settings(pd.DataFrame(y), methods)["n_features"] == 1


def test_power_at_reads_the_curve():
    curve = pd.DataFrame({"effect": [0.0, 1.0, 2.0], "power": [0.05, 0.5, 0.9]})
    assert permanova.power_at(curve, 1.0) == 0.5
    assert np.isnan(permanova.power_at(curve, 1.5))


def test_no_effect_verdict_reads_the_test_the_other_way_round():
    from sslgeom import stats

    assert permanova.no_effect_verdict(0.01, 0.1) == stats.NOT_SUPPORTED  # effect found
    assert permanova.no_effect_verdict(0.5, 0.9) == stats.SUPPORTED  # powered non-rejection
    assert permanova.no_effect_verdict(0.5, 0.3) == stats.CANNOT_TELL  # weak design
    assert permanova.no_effect_verdict(0.5, float("nan")) == stats.CANNOT_TELL


def _blocked(rng, n_runs=8, levels=(0.25, 0.5, 1.0), effect=0.0, n_features=3):
    runs = np.repeat(np.arange(n_runs), len(levels))
    factor = np.tile(levels, n_runs)
    x = 3 * rng.normal(size=(n_runs, n_features))[runs] + rng.normal(size=(len(runs), n_features))
    x += effect * np.asarray(factor)[:, None]
    return x, factor, runs


def test_block_permanova_equals_repeated_measures_anova_for_one_feature():
    from statsmodels.stats.anova import AnovaRM

    rng = np.random.default_rng(0)
    x, factor, runs = _blocked(rng, effect=1.0, n_features=1)
    frame = pd.DataFrame({"y": x[:, 0], "budget": factor.astype(str), "run": runs})
    reference = AnovaRM(frame, "y", "run", within=["budget"]).fit().anova_table
    result = permanova.block_permanova(x, factor, runs, n_permutations=199, seed=0)
    assert result.statistic == pytest.approx(float(reference["F Value"].iloc[0]), rel=1e-10)
    assert result.per_stratum["df_residual"].iloc[0] == reference["Den DF"].iloc[0]


def test_block_permanova_permutes_within_runs_and_detects_a_budget_effect():
    rng = np.random.default_rng(1)
    x, factor, runs = _blocked(rng, effect=3.0)
    assert permanova.block_permanova(x, factor, runs, n_permutations=199).p_value <= 0.01
    # large run effects, no budget effect: a test that ignored the runs would be swamped; this one is uniform
    rejections = [permanova.block_permanova(*_blocked(np.random.default_rng(100 + i)), n_permutations=99,
                                            seed=i).p_value <= 0.05 for i in range(200)]
    assert _binomial_band(np.mean(rejections), 200)


def test_block_permanova_refuses_incomplete_runs():
    x, factor, runs = _blocked(np.random.default_rng(2))
    with pytest.raises(ValueError, match="every level"):
        permanova.block_permanova(x[1:], factor[1:], runs[1:])


def test_paradigm_power_fast_exact_path_equals_nested_permanova():
    # the exact path enumerates partitions once; it must reject exactly when nested_permanova does
    groups = design.method_groups(FULL)
    unit_codes, paradigm_of_unit = groups.unit_of_model, groups.group_of_unit
    _, stratum_codes = np.unique(FULL["backbone"], return_inverse=True)
    for stratify in (True, False):
        curve, _ = permanova.paradigm_power(FULL, [0.7], n_features=5, stratify=stratify,
                                            simulation=PowerSimulation(n_sim=30, seed=3))
        rng = np.random.default_rng(3)  # the same draws as paradigm_power's exact path
        hits = 0
        for _ in range(30):
            x = permanova._simulate_geometry(rng, paradigm_of_unit, unit_codes, stratum_codes, 0.7, 1.0, 1.0, 3.0, 5)
            hits += permanova.nested_permanova(squareform(pdist(x)), design.method_groups(
                FULL, stratum="backbone" if stratify else None)).p_value <= 0.05
        assert curve["power"].iloc[0] == pytest.approx(hits / 30)
        assert 0 < hits < 30  # a test that can tell the two apart
