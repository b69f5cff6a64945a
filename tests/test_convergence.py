"""Metric summaries against sample size: known answers on curves, and the stability rules."""

import numpy as np
import pandas as pd
import pytest

from sslgeom import convergence


def _circles(n_classes: int, n_points: int, radius: float, seed: int = 0) -> list[np.ndarray]:
    """Unit-speed circles of one radius in a random plane of R^5, offset from the origin."""
    rng = np.random.default_rng(seed)
    clouds = []
    for _ in range(n_classes):
        basis, _ = np.linalg.qr(rng.normal(size=(5, 2)))
        angles = rng.uniform(0, 2 * np.pi, n_points)
        clouds.append(radius * np.c_[np.cos(angles), np.sin(angles)] @ basis.T + 3.0)
    return clouds


def test_on_circles_the_count_is_flat_and_the_diameter_scales_with_spacing():
    """A curve has two NNK neighbours at every density; the polytope diameter halves when the
    density doubles; the book's curvature estimate gives 1/radius once sampling resolves the curve."""
    table = convergence.size_convergence(_circles(3, 400, radius=2.0), [50, 100, 200, 400], k=10,
                                         kernel="gaussian", n_repeats=2, seed=1)
    means = table.groupby(["metric", "size"]).value.mean().unstack()
    # about 2 at every size (measured 1.94-1.95: at the relative tolerance a node whose far
    # side is much farther than its near side can keep one neighbour)
    assert np.allclose(means.loc["n_neighbors"], 1.95, atol=0.05)
    assert np.ptp(means.loc["n_neighbors"]) < 0.03
    ratios = means.loc["diameter"].to_numpy()[:-1] / means.loc["diameter"].to_numpy()[1:]
    assert np.allclose(ratios, 2.0, rtol=0.15)
    assert means.loc["curvature", 400] == pytest.approx(0.5, rel=0.05)
    assert means.loc["curvature", 100] == pytest.approx(0.5, rel=0.05)


def test_subsamples_are_reproducible_and_repeats_differ():
    clouds = _circles(2, 120, radius=1.0)
    first = convergence.size_convergence(clouds, [20, 60], k=8, kernel="gaussian", n_repeats=2, seed=3)
    again = convergence.size_convergence(clouds, [20, 60], k=8, kernel="gaussian", n_repeats=2, seed=3)
    pd.testing.assert_frame_equal(first, again)
    diameters = first[(first.metric == "diameter") & (first["size"] == 20)].value.to_numpy()
    assert diameters[0] != diameters[1]
    assert set(first.columns) == {"size", "repeat", "metric", "value"}
    assert set(first.metric) == set(convergence.CONVERGENCE_METRICS)


def test_views_are_nested_prefixes():
    rng = np.random.default_rng(0)
    views = rng.normal(size=(4, 16, 6)) + 5.0
    table = convergence.views_convergence(views, [8, 16], k=5, kernel="cosine")
    full = convergence.cloud_summaries(views, 5, "cosine")
    last = table[table["size"] == 16].set_index("metric").value
    for metric, value in full.items():
        assert last[metric] == pytest.approx(value)
    prefix = convergence.cloud_summaries(views[:, :8], 5, "cosine")
    assert table[(table["size"] == 8) & (table.metric == "diameter")].value.item() == pytest.approx(prefix["diameter"])


def _synthetic(values: dict[str, list[float]], sizes=(25, 50, 100, 200)) -> pd.DataFrame:
    rows = [(model, size, "m", value) for model, series in values.items() for size, value in zip(sizes, series)]
    return pd.DataFrame(rows, columns=["model", "size", "metric", "value"])


def test_stability_finds_the_size_after_which_every_size_is_within_tolerance():
    table = _synthetic({"a": [2.0, 1.2, 1.05, 1.0], "b": [1.0, 1.5, 2.1, 2.0], "c": [3.0, 3.0, 3.0, 3.0]})
    stability = convergence.stability_table(table, tolerance=0.1)
    # a: 100%, 20%, 5%; b: 50%, 25%, 5%: both settle from 100 on
    assert stability.loc["m", "stable_from"] == 100
    assert stability.loc["m", "dev_25"] == pytest.approx(1.0)
    assert stability.loc["m", "dev_50"] == pytest.approx(0.25)
    # leaving the tolerance again after entering it counts as not settled before that
    wobbly = _synthetic({"a": [1.0, 1.5, 1.0, 1.0], "b": [1, 1, 1, 1], "c": [2, 2, 2, 2]})
    assert convergence.stability_table(wobbly, tolerance=0.1).loc["m", "stable_from"] == 100
    never = _synthetic({"a": [4.0, 3.0, 2.0, 1.0], "b": [1, 1, 1, 1], "c": [2, 2, 2, 2]})
    assert np.isnan(convergence.stability_table(never, tolerance=0.1).loc["m", "stable_from"])


def test_rank_agreement_sees_a_shared_bias_as_harmless_and_a_crossing_as_not():
    shared = _synthetic({"a": [2.0, 1.5, 1.2, 1.0], "b": [4.0, 3.5, 3.2, 3.0], "c": [6.0, 5.5, 5.2, 5.0]})
    assert np.allclose(convergence.rank_agreement(shared).loc["m"], 1.0)
    crossing = _synthetic({"a": [6.0, 1.5, 1.2, 1.0], "b": [4.0, 3.5, 3.2, 3.0], "c": [2.0, 5.5, 5.2, 5.0]})
    assert convergence.rank_agreement(crossing).loc["m", 25] == pytest.approx(-1.0)


def test_bad_input_is_refused_with_the_fix():
    clouds = _circles(2, 50, radius=1.0)
    with pytest.raises(ValueError, match="only 50 are available"):
        convergence.size_convergence(clouds, [25, 100], k=5)
    with pytest.raises(ValueError, match="at least two sizes"):
        convergence.size_convergence(clouds, [25], k=5)
    with pytest.raises(TypeError, match="must be an integer"):
        convergence.size_convergence(clouds, [25, 40.5], k=5)
    nan_cloud = [c.copy() for c in clouds]
    nan_cloud[0][3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN|finite"):
        convergence.size_convergence(nan_cloud, [10, 20], k=5)
    with pytest.raises(ValueError, match="lacks columns"):
        convergence.stability_table(pd.DataFrame({"size": [1], "value": [1.0]}))
    with pytest.raises(ValueError, match="at least three models"):
        convergence.rank_agreement(_synthetic({"a": [1, 1, 1, 1], "b": [2, 2, 2, 2]}))
    with pytest.raises(ValueError, match="shape"):
        convergence.views_convergence(np.zeros((4, 6)), [3, 6], k=2)
