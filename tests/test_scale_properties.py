"""Property tests of scale-safe numerics in the graph layer (kNN, NNK graph, grouped NNK).

The graph of ``X`` and of ``c X`` must be the same for ``c`` a power of two across float32's
normal range: features are divided by an exact power of two before squared distances are
formed, so both give bit-identical computations. Exact duplicates are reported at every scale,
and nothing else is. Point clouds come from a NumPy generator whose seed hypothesis draws, so
every failing example is reproducible from the seed hypothesis prints.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from sslgeom import nnk

FAST = settings(max_examples=25, deadline=None)
KERNELS = list(nnk.KERNELS)
FLOAT32 = np.finfo(np.float32)


# ---- strategies --------------------------------------------------------------------------------


@st.composite
def clouds(draw, min_points: int = 20, max_points: int = 60) -> np.ndarray:
    """A float32 point cloud ``(n_points, dim)``, ``20 <= n_points <= 60``, ``2 <= dim <= 16``.

    Rows get magnitudes spread over ``2**-8 .. 2**8``, so a global scale does not fit every row.
    """
    n_points = draw(st.integers(min_points, max_points))
    dim = draw(st.integers(2, 16))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    magnitudes = 2.0 ** rng.integers(-8, 9, size=(n_points, 1))
    return (rng.standard_normal((n_points, dim)) * magnitudes).astype(np.float32)


def exponent_range(points: np.ndarray, widest: int = 100) -> tuple[int, int]:
    """Exponents ``e`` in ``[-widest, widest]`` for which ``2**e * points`` stays in float32's
    normal range entry by entry (no overflow, no subnormal), so that the product is exact."""
    magnitudes = np.abs(points[points != 0]).astype(np.float64)
    _, top = np.frexp(magnitudes.max())  # max = m * 2**top, 0.5 <= m < 1
    _, bottom = np.frexp(magnitudes.min())
    # 2**e * max < 2**128 (float32 overflow); 2**e * min >= 2**-126 (smallest normal)
    return max(-widest, -125 - int(bottom)), min(widest, 128 - int(top))


@st.composite
def scaled_clouds(draw) -> tuple[np.ndarray, np.ndarray, int]:
    """``(X, 2**e X, e)`` with ``2**e X`` exact in float32."""
    points = draw(clouds())
    low, high = exponent_range(points)
    exponent = draw(st.integers(low, high))
    scaled = np.ldexp(points, exponent).astype(np.float32)
    assert np.array_equal(scaled.astype(np.float64), np.ldexp(points.astype(np.float64), exponent))
    return points, scaled, exponent


def neighbour_count(points: np.ndarray, data) -> int:
    return data.draw(st.integers(1, min(10, len(points) - 1)), label="k")


def representable_sq(sq_distances: np.ndarray, exponent: int) -> tuple[np.ndarray, np.ndarray]:
    """``sq_distances * 4**exponent`` in float64, and where float32 holds it exactly."""
    expected = np.ldexp(sq_distances.astype(np.float64), 2 * exponent)
    exact = (expected == 0) | ((expected >= FLOAT32.tiny) & (expected <= FLOAT32.max))
    return expected, exact


# ---- scale invariance --------------------------------------------------------------------------


@FAST
@given(pair=scaled_clouds(), metric=st.sampled_from(["euclidean", "cosine"]), data=st.data())
def test_knn_neighbours_are_the_same_for_power_of_two_scalings(pair, metric, data):
    points, scaled, exponent = pair
    k = neighbour_count(points, data)
    indices, sq_dist = nnk.knn(points, k, metric=metric)
    scaled_indices, scaled_sq = nnk.knn(scaled, k, metric=metric)
    np.testing.assert_array_equal(scaled_indices, indices)
    assert not np.any(scaled_indices == np.arange(len(points))[:, None])  # never its own neighbour
    if metric == "euclidean":
        # returned in the input's units: exactly 4**e times larger wherever float32 holds that
        expected, exact = representable_sq(sq_dist, exponent)
        np.testing.assert_array_equal(scaled_sq[exact], expected[exact].astype(np.float32))
        assert np.all(np.isinf(scaled_sq[expected > FLOAT32.max]))
    else:  # distances between unit vectors do not scale
        np.testing.assert_array_equal(scaled_sq, sq_dist)


@pytest.mark.parametrize("kernel", KERNELS)
@FAST
@given(pair=scaled_clouds(), dtype=st.sampled_from(["float32", "float64"]), data=st.data())
def test_nnk_graph_is_the_same_for_power_of_two_scalings(kernel, pair, dtype, data):
    points, scaled, exponent = pair
    k = neighbour_count(points, data)
    base = nnk.nnk_graph(points, k=k, kernel=kernel, dtype=dtype)  # default solver
    other = nnk.nnk_graph(scaled, k=k, kernel=kernel, dtype=dtype)
    for name in ("neighbors", "weights", "errors", "kernel_values"):
        np.testing.assert_array_equal(getattr(other, name), getattr(base, name), err_msg=name)
    assert (other.adjacency != base.adjacency).nnz == 0
    assert not np.any(other.neighbors == np.arange(len(points))[:, None])
    if kernel == "gaussian":  # the bandwidth is stored in the input's units
        assert other.kernel_params["sigma"] == np.ldexp(base.kernel_params["sigma"], exponent)
    else:
        assert other.kernel_params == base.kernel_params
    # the rebuilt float64 problem of a node does not depend on the scale either
    for built, built_scaled in zip(nnk.node_problem(base, points, 0),
                                   nnk.node_problem(other, scaled, 0)):
        np.testing.assert_array_equal(built_scaled, built)


@pytest.mark.parametrize("kernel", KERNELS)
@FAST
@given(points=clouds(), data=st.data())
def test_exact_duplicates_are_reported_at_every_scale(kernel, points, data):
    first, second = data.draw(st.lists(st.integers(0, len(points) - 1), min_size=2, max_size=2,
                                       unique=True), label="copied rows")
    points = points.copy()
    points[second] = points[first]
    low, high = exponent_range(points)
    exponent = data.draw(st.integers(low, high), label="exponent")
    scaled = np.ldexp(points, exponent).astype(np.float32)
    k = neighbour_count(points, data)
    # both copies have the other among their candidates: two points are reported
    with pytest.raises(ValueError, match=r"found 2 point\(s\) with an exact duplicate"):
        nnk.nnk_graph(scaled, k=k, kernel=kernel)
    allowed = nnk.nnk_graph(scaled, k=k, kernel=kernel, duplicates="ridge")
    assert np.all(np.isfinite(allowed.weights)) and np.all(allowed.weights >= 0)


@FAST
@given(points=clouds(), shifts=st.lists(st.integers(-900, 900), min_size=3, max_size=3),
       kernel=st.sampled_from(KERNELS))
def test_grouped_nnk_is_the_same_for_power_of_two_scalings_of_each_cloud(points, shifts, kernel):
    n_points = (len(points) // 3) * 3
    group = points[:n_points].astype(np.float64).reshape(3, n_points // 3, -1)
    scaled = np.ldexp(group, np.array(shifts)[:, None, None])  # float64: exact at 2**+-900
    base = nnk.grouped_nnk(group, k=4, kernel=kernel)
    other = nnk.grouped_nnk(scaled, k=4, kernel=kernel)
    for name in ("neighbors", "weights", "errors", "kernel_values"):
        np.testing.assert_array_equal(getattr(other, name), getattr(base, name), err_msg=name)


# ---- explicit regressions: scales that used to over- or underflow ------------------------------


def _reference_cloud() -> np.ndarray:
    return np.random.default_rng(2024).standard_normal((40, 8)).astype(np.float32)


@pytest.mark.parametrize("factor", [1e20, 1e-25])
@pytest.mark.parametrize("kernel", KERNELS)
def test_float32_features_at_1e20_and_1e_25_give_the_same_graph(factor, kernel):
    points = _reference_cloud()
    scaled = (points * np.float32(factor)).astype(np.float32)  # not a power of two: rounds
    assert np.all(np.isfinite(scaled)) and np.all(scaled != 0)
    base = nnk.nnk_graph(points, k=6, kernel=kernel)
    other = nnk.nnk_graph(scaled, k=6, kernel=kernel)  # used to report duplicates / zero rows
    np.testing.assert_array_equal(other.neighbors, base.neighbors)
    np.testing.assert_allclose(other.weights, base.weights, atol=1e-4)
    np.testing.assert_allclose(other.kernel_values, base.kernel_values, atol=1e-5)
    if kernel == "gaussian":
        assert other.kernel_params["sigma"] == pytest.approx(factor * base.kernel_params["sigma"],
                                                             rel=1e-5)
    indices, _ = nnk.knn(scaled, 6)
    np.testing.assert_array_equal(indices, nnk.knn(points, 6)[0])
    assert not np.any(indices == np.arange(len(points))[:, None])  # used to list itself


@pytest.mark.parametrize("factor", [1e20, 1e-25, 1.0, 2.0**-140])
@pytest.mark.parametrize("kernel", KERNELS)
def test_real_duplicates_are_still_reported_at_extreme_scales(factor, kernel):
    points = _reference_cloud()
    points[11] = points[29]
    scaled = (points.astype(np.float64) * factor).astype(np.float32)  # 2**-140: subnormal rows
    with pytest.raises(ValueError, match=r"found 2 point\(s\) with an exact duplicate"):
        nnk.nnk_graph(scaled, k=5, kernel=kernel)


def test_squared_distances_beyond_float32_saturate_but_the_graph_does_not():
    points = _reference_cloud()
    huge = (points * np.float32(1e20)).astype(np.float32)
    result = nnk.nnk_graph(huge, k=5, kernel="gaussian")
    assert np.all(np.isinf(result.sq_distances))  # ~1e40 does not fit in float32
    assert np.all(np.isfinite(result.weights)) and result.weights.max() > 0
    _, sq_dist = nnk.knn(huge.astype(np.float64), 5, dtype="float64")  # float64 holds them
    np.testing.assert_allclose(sq_dist, nnk.knn(points, 5, dtype="float64")[1] * 1e40, rtol=1e-4)


def test_zero_matrices_and_non_finite_inputs_keep_their_errors():
    zeros = np.zeros((10, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="zero"):
        nnk.nnk_graph(zeros, k=3, kernel="cosine")
    with pytest.raises(ValueError, match="duplicate"):
        nnk.nnk_graph(zeros, k=3, kernel="gaussian")
    with pytest.raises(ValueError, match="bandwidth is 0"):
        nnk.nnk_graph(zeros, k=3, kernel="gaussian", duplicates="ridge")
    with np.errstate(over="ignore"):  # a float32 product that overflows to inf
        overflowed = _reference_cloud() * np.float32(1e30) * np.float32(1e10)
    assert np.isinf(overflowed).any()
    with pytest.raises(ValueError, match="NaN or inf"):
        nnk.nnk_graph(overflowed, k=3)
    with pytest.raises(ValueError, match="NaN or inf"):
        nnk.knn(overflowed, 3)


# ---- graph properties and invalid input under drawn clouds -------------------------------------


@pytest.mark.parametrize("kernel", KERNELS)
@FAST
@given(points=clouds(), data=st.data())
def test_weights_are_nonnegative_and_supported_on_the_candidates(kernel, points, data):
    k = neighbour_count(points, data)
    result = nnk.nnk_graph(points, k=k, kernel=kernel)
    n_points = len(points)
    assert result.neighbors.shape == result.weights.shape == (n_points, k)
    assert np.all(np.isfinite(result.weights)) and np.all(result.weights >= 0)
    # KKT at theta = 0 fails when some K_Si > kkt_tol, so such a node keeps a neighbour
    must_keep = result.kernel_values.max(axis=1) > result.kkt_tol
    assert np.all(result.n_neighbors[must_keep] >= 1)
    candidates = np.zeros((n_points, n_points), dtype=bool)
    candidates[np.repeat(np.arange(n_points), k), result.neighbors.ravel()] = True
    directed = result.directed_adjacency().toarray()
    assert not np.any(directed[~candidates])  # only candidates carry weight
    adjacency = result.adjacency.toarray()
    assert np.all(np.diag(adjacency) == 0) and np.array_equal(adjacency, adjacency.T)
    assert not np.any(adjacency[~(candidates | candidates.T)])
    assert (result.kkt_residual <= result.kkt_tol).all()


@FAST
@given(points=clouds(), data=st.data(), bad=st.sampled_from([np.nan, np.inf, -np.inf]),
       kernel=st.sampled_from(KERNELS))
def test_non_finite_entries_raise_wherever_they_are(points, data, bad, kernel):
    row = data.draw(st.integers(0, len(points) - 1), label="row")
    col = data.draw(st.integers(0, points.shape[1] - 1), label="col")
    points = points.copy()
    points[row, col] = bad
    with pytest.raises(ValueError, match=r"NaN or inf in 1 of \d+ row"):
        nnk.nnk_graph(points, k=3, kernel=kernel)
    with pytest.raises(ValueError, match="NaN or inf"):
        nnk.knn(points, 3)


@FAST
@given(points=clouds(), extra=st.integers(0, 50), kernel=st.sampled_from(KERNELS))
def test_k_not_below_the_number_of_points_raises(points, extra, kernel):
    k = len(points) + extra
    with pytest.raises(ValueError, match="smaller than the number of points"):
        nnk.nnk_graph(points, k=k, kernel=kernel)
    with pytest.raises(ValueError, match="smaller than the number of points"):
        nnk.knn(points, k)
