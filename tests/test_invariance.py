"""Claim 3 (sslgeom.invariance): invariance ranks, the scale-free diameter, rank agreement with methods permuted."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sslgeom import geometry, invariance


def test_invariance_ranking_orders_by_diameter():
    rows = []
    for model, diameters in {"inv": (0.1, 0.2), "mid": (0.5, 0.1), "var": (0.9, 0.9)}.items():
        for family, value in zip(("rotation", "blur"), diameters):
            rows.append((model, "augmentation", family, "nnk", "diameter", "median", value))
            rows.append((model, "augmentation", family, "nnk", "diameter", "mean", 1 - value))  # ignored
    ranks = invariance.invariance_ranking(pd.DataFrame(rows, columns=geometry.TABLE_COLUMNS))
    expected = pd.DataFrame({"blur": [2, 1, 3], "rotation": [1, 2, 3]}, index=["inv", "mid", "var"])
    pd.testing.assert_frame_equal(ranks, expected, check_names=False, check_dtype=False)
    with pytest.raises(ValueError, match="no augmentation rows"):
        invariance.invariance_ranking(pd.DataFrame(rows, columns=geometry.TABLE_COLUMNS), metric="entropy")


def test_scale_free_invariance_divides_by_each_models_scale():
    rng = np.random.default_rng(0)
    table = pd.DataFrame([(model, "augmentation", family, graph, metric, statistic, rng.uniform(0.1, 1))
                          for model in ("a", "b") for family in ("rotation", "zoom") for graph in ("nnk", "knn")
                          for metric in ("diameter", "n_neighbors") for statistic in ("mean", "median")],
                         columns=geometry.TABLE_COLUMNS)
    scale = pd.Series({"a": 2.0, "b": 0.5})
    free = invariance.scale_free_invariance(table, scale)
    rows = table[(table["manifold"] == "augmentation") & (table["metric"] == "diameter")
                 & (table["statistic"] == "median") & (table["graph"] == "nnk")]
    raw = rows.pivot_table(index="model", columns="family", values="value")
    assert np.allclose(free.loc["a"], raw.loc["a"] / 2.0) and np.allclose(free.loc["b"], raw.loc["b"] / 0.5)
    with pytest.raises(ValueError, match="positive"):
        invariance.scale_free_invariance(table, pd.Series({"a": 0.0, "b": 1.0}))


def test_rank_agreement_matches_scipy_spearman_and_permutes_units():
    rng = np.random.default_rng(0)
    units = np.repeat(np.arange(10), 4)
    latent = rng.normal(size=(40, 3))
    x = pd.DataFrame(latent, columns=list("abc"))
    y = pd.DataFrame(0.9 * latent + 0.3 * rng.normal(size=(40, 3)), columns=list("abc"))
    result = invariance.rank_agreement(x, y, units, n_permutations=499, seed=0)
    for column in "abc":
        assert result.per_column.loc[column, "rho"] == pytest.approx(stats.spearmanr(x[column], y[column])[0])
    assert result.mean_rho == pytest.approx(result.per_column["rho"].mean())
    assert result.p_value == pytest.approx(1 / 500)


def test_rank_agreement_is_calibrated_when_units_share_effects():
    # both measurements carry independent method effects: permuting single models would reject too often,
    # permuting whole methods keeps the level
    rng = np.random.default_rng(5)
    units = np.repeat(np.arange(8), 4)
    hits = []
    for i in range(150):
        x = pd.DataFrame(rng.normal(size=(8, 2))[units] + 0.3 * rng.normal(size=(32, 2)))
        y = pd.DataFrame(rng.normal(size=(8, 2))[units] + 0.3 * rng.normal(size=(32, 2)))
        hits.append(invariance.rank_agreement(x, y, units, n_permutations=199, seed=i).p_value <= 0.05)
    assert np.mean(hits) <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 150)


def test_rank_agreement_power_grows_with_the_true_correlation():
    units = np.repeat(np.arange(10), 4)
    low = invariance.rank_agreement_power(units, 0.0, n_columns=4, n_sim=60, n_permutations=99, seed=0)
    high = invariance.rank_agreement_power(units, 0.8, n_columns=4, n_sim=60, n_permutations=99, seed=0)
    assert low <= 0.15 and high >= 0.8
