"""Tests of sslgeom.kernels: the one definition of the kernels, bandwidth and reconstruction error.

The compiled per-node stage (sslgeom.nnk_compiled) keeps its own scalar loop; the tests at the
end check that it computes these definitions.
"""

import numpy as np
import pytest
import torch

from sslgeom import kernels, nnk, nnk_compiled


def _points(n=40, dim=5, seed=0):
    return np.random.default_rng(seed).standard_normal((n, dim))


def _pairwise_sq(points):
    return ((points[:, None, :] - points[None, :, :]) ** 2).sum(-1)


@pytest.mark.parametrize("sigma", [0.3, 1.0, 2.5])
def test_gaussian_kernel_is_exp_of_scaled_distance(sigma):
    points = _points()
    sq = _pairwise_sq(points)
    expected = np.exp(-np.linalg.norm(points[:, None] - points[None], axis=-1) ** 2 / (2 * sigma**2))
    values = kernels.kernel_from_sq_distances(sq, "gaussian", {"sigma": sigma})
    np.testing.assert_allclose(values, expected, rtol=1e-13)
    np.testing.assert_allclose(np.diag(values), 1.0)


@pytest.mark.parametrize("power", [1.0, 2.0, 3.5])
def test_cosine_kernel_is_a_power_of_half_one_plus_cosine(power):
    points = _points(seed=1)
    cosine = (points @ points.T) / np.outer(*2 * [np.linalg.norm(points, axis=1)])
    unit = kernels.kernel_space(points, "cosine")
    values = kernels.kernel_from_sq_distances(_pairwise_sq(unit), "cosine", {"power": power})
    np.testing.assert_allclose(values, ((1 + cosine) / 2) ** power, atol=1e-13)
    # opposite unit vectors: 1 - 4/4 = 0, and rounding below 0 is clipped
    assert kernels.kernel_from_sq_distances(np.array([4.0, 4.0 + 1e-12]), "cosine",
                                            {"power": power}).tolist() == [0.0, 0.0]


@pytest.mark.parametrize("kernel,params", [("gaussian", {"sigma": 0.7}), ("cosine", {"power": 2.0})])
def test_numpy_and_torch_give_the_same_kernel(kernel, params):
    sq = np.random.default_rng(2).uniform(0.0, 4.0, size=(7, 9))
    from_numpy = kernels.kernel_from_sq_distances(sq, kernel, params)
    from_torch = kernels.kernel_from_sq_distances(torch.from_numpy(sq), kernel, params)
    assert isinstance(from_torch, torch.Tensor) and from_torch.dtype == torch.float64
    np.testing.assert_allclose(from_torch.numpy(), from_numpy, rtol=1e-15)
    with pytest.raises(ValueError, match="unknown kernel"):
        kernels.kernel_from_sq_distances(sq, "laplace", params)


def test_gaussian_bandwidth_is_mean_kth_distance_over_three_per_cloud():
    sq = np.random.default_rng(3).uniform(0.5, 2.0, size=(4, 10, 6))
    sigma = kernels.gaussian_bandwidth(sq)
    np.testing.assert_allclose(sigma, np.sqrt(sq[:, :, 5]).mean(axis=1) / 3.0)
    assert kernels.gaussian_bandwidth(sq[0]) == pytest.approx(np.sqrt(sq[0, :, 5]).mean() / 3.0)
    # torch float32: mean in float32, the division by 3 in float64, returned as a Python float
    single = torch.from_numpy(sq[0].astype(np.float32))
    expected = float(torch.sqrt(single[:, -1]).mean()) / 3.0
    assert kernels.gaussian_bandwidth(single) == expected
    with pytest.raises(ValueError, match="bandwidth is 0"):
        kernels.gaussian_bandwidth(np.zeros((5, 3)))


def test_reconstruction_error_is_the_feature_space_distance():
    """Cosine kernel with power 1 on unit vectors: phi(x) = (1, x) / sqrt(2) explicitly."""
    rng = np.random.default_rng(4)
    unit = kernels.kernel_space(rng.standard_normal((6, 4, 3)), "cosine")  # (points, 1 + k, dim)
    node, cand = unit[:, 0], unit[:, 1:]
    weights = rng.uniform(0.0, 1.0, size=(6, 3))
    phi = lambda x: np.concatenate([np.ones(x.shape[:-1] + (1,)), x], axis=-1) / np.sqrt(2)  # noqa: E731
    expected = ((phi(node) - (weights[:, :, None] * phi(cand)).sum(1)) ** 2).sum(-1)
    params = {"power": 1.0}
    gram = kernels.kernel_from_sq_distances(_batched_sq(cand, cand), "cosine", params)
    linear = kernels.kernel_from_sq_distances(((cand - node[:, None]) ** 2).sum(-1), "cosine", params)
    errors = kernels.reconstruction_error(gram, linear, weights)
    np.testing.assert_allclose(errors, expected, atol=1e-13)
    # the ridge on the diagonal is removed; torch computes the same
    ridged = kernels.unit_diagonal(gram, 0.25)
    np.testing.assert_allclose(kernels.reconstruction_error(ridged, linear, weights, 0.25), expected,
                               atol=1e-13)
    from_torch = kernels.reconstruction_error(*map(torch.from_numpy, (ridged, linear, weights)), 0.25)
    np.testing.assert_allclose(from_torch.numpy(), expected, atol=1e-13)


def _batched_sq(a, b):
    return ((a[:, :, None, :] - b[:, None, :, :]) ** 2).sum(-1)


def test_unit_diagonal_and_kernel_space():
    gram = np.full((2, 3, 3), 0.5)
    out = kernels.unit_diagonal(gram, 0.1)
    np.testing.assert_array_equal(out[0], 0.5 + 0.6 * np.eye(3))
    assert torch.equal(kernels.unit_diagonal(torch.from_numpy(gram), 0.1), torch.from_numpy(out))
    points = np.array([[3.0, 4.0], [0.0, 2.0]])
    np.testing.assert_allclose(kernels.kernel_space(points, "cosine"), [[0.6, 0.8], [0.0, 1.0]])
    assert kernels.kernel_space(points, "gaussian") is points
    single = torch.tensor([[3.0, 4.0]], dtype=torch.float32)
    assert kernels.kernel_space(single, "cosine").dtype == torch.float32
    with pytest.raises(ValueError, match="zero"):
        kernels.kernel_space(np.array([[1.0, 0.0], [0.0, 0.0]]), "cosine")


def test_power_of_two_floor_is_exact_in_numpy_and_torch():
    values = np.array([3.0, 1.0, 0.75, 1e-40, 1e-300, 5e-324, 1e20, 1.7e308, 0.0])
    expected = [2.0, 1.0, 0.5, 2.0**-133, 2.0**-997, 2.0**-1074, 2.0**66, 2.0**1023, 1.0]
    assert kernels.power_of_two_floor(values).tolist() == expected
    assert torch.equal(kernels.power_of_two_floor(torch.from_numpy(values)),
                       torch.tensor(expected, dtype=torch.float64))
    single = np.array([3.0e38, 1e-40, 0.0], dtype=np.float32)  # near float32's max, subnormal, zero
    for result in (kernels.power_of_two_floor(single),
                   kernels.power_of_two_floor(torch.from_numpy(single)).numpy()):
        assert result.dtype == np.float32
        assert result.tolist() == [2.0**127, 2.0**-133, 1.0]


@pytest.mark.parametrize("factor", [2.0**-100, 1e-30, 1.0, 1e30, 2.0**120])
def test_cosine_kernel_space_is_the_same_at_every_row_scale(factor):
    rows = _points(12, 4, seed=8).astype(np.float32)
    unit = kernels.kernel_space(rows, "cosine")
    # every product stays a normal float32 (exact for powers of two); its square does not
    scaled = (rows.astype(np.float64) * factor).astype(np.float32)
    # powers of two scale exactly: the unit rows are the same bit for bit; other factors round
    check = np.testing.assert_array_equal if np.log2(factor).is_integer() else (
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7))
    check(kernels.kernel_space(scaled, "cosine"), unit)
    check(kernels.kernel_space(torch.from_numpy(scaled), "cosine").numpy(), unit)
    # a zero row is still an error, a tiny one is not
    scaled[3] = 0.0
    with pytest.raises(ValueError, match="1 feature vector"):
        kernels.kernel_space(scaled, "cosine")


# ---- the compiled loop computes the definitions ----------------------------------------------


@pytest.mark.parametrize("kernel,code,param", [
    ("gaussian", nnk_compiled.GAUSSIAN, 0.37), ("gaussian", nnk_compiled.GAUSSIAN, 2.0),
    ("cosine", nnk_compiled.COSINE, 1.0), ("cosine", nnk_compiled.COSINE, 3.0),
])
def test_compiled_kernel_equals_the_definition(kernel, code, param):
    sq = np.concatenate([np.random.default_rng(5).uniform(0.0, 4.5, 500), [0.0, 4.0, 5.0]])
    compiled = np.array([nnk_compiled._kernel(value, code, param) for value in sq])
    params = {"sigma": param} if kernel == "gaussian" else {"power": param}
    # equal up to the last bit the math library may round differently (exp, pow)
    np.testing.assert_array_max_ulp(compiled, kernels.kernel_from_sq_distances(sq, kernel, params),
                                    maxulp=1)


@pytest.mark.parametrize("scale", [1.0, 1e-30, 1e30])
@pytest.mark.parametrize("kernel", ["cosine", "gaussian"])
def test_compiled_nodes_compute_the_defined_kernel_and_error(kernel, scale):
    # at any scale: the compiled stage works at unit scale, the result is in the input's units
    points = _points(80, 6, seed=6) * scale
    result = nnk.nnk_graph(points, k=8, kernel=kernel, dtype="float64", solver="compiled",
                           duplicates="ridge", ridge=1e-3)
    np.testing.assert_array_max_ulp(
        result.kernel_values,
        kernels.kernel_from_sq_distances(result.sq_distances, kernel, result.kernel_params),
        maxulp=1,
    )
    grams, linears = zip(*(nnk.node_problem(result, points, node) for node in range(80)))
    errors = kernels.reconstruction_error(np.stack(grams), np.stack(linears), result.weights,
                                          result.node_ridge)
    np.testing.assert_allclose(result.errors, errors, atol=1e-12)


def test_kernel_ratio_interval_is_exact_for_two_candidates():
    # With k = 2, NNK keeps both candidates exactly when the interval holds (theorem thm-kri of
    # chapter 03). Nodes whose kernel values are numerically 0 or 1 (a candidate far outside the
    # bandwidth, or a near-duplicate) are left out: there the solver's tolerance decides, not the
    # theorem. They must be rare.
    from sslgeom import nnk
    from sslgeom.kernels import kernel_ratio_agreement

    rng = np.random.default_rng(3)
    for kernel, dim, offset in (("gaussian", 2, 0.0), ("cosine", 3, 1.0)):
        points = rng.uniform(-1, 1, size=(300, dim)) + offset  # off the origin: cosine needs directions
        graph = nnk.nnk_graph(points, 2, kernel=kernel, dtype="float64", kkt_tol=0)
        regular = ((graph.kernel_values > 1e-6) & (graph.kernel_values < 1 - 1e-6)).all(axis=1)
        assert regular.mean() > 0.8
        both = graph.kept.all(axis=1) & regular
        pruned = ~graph.kept.all(axis=1) & regular
        assert both.sum() > 10 and pruned.sum() > 10

        def fraction(rows, kept):
            return kernel_ratio_agreement(points, graph.neighbors[rows], kept[rows], graph.kernel_values[rows],
                                          graph.kernel, graph.kernel_params)

        assert fraction(both, graph.kept) == 1.0
        assert fraction(pruned, np.ones_like(graph.kept)) == 0.0  # where NNK pruned one, the interval fails


def test_kernel_ratio_agreement_counts_pairs():
    from sslgeom.kernels import kernel_ratio_agreement

    points = np.array([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.9, 0.1]])
    params = {"sigma": 1.0}
    neighbors = np.array([[1, 2, 3]])
    kept = np.array([[True, True, True]])
    sq = np.array([[1.0, 1.0, 0.82]])
    values = np.exp(-sq / 2)
    # pair (1, 2): K_12 = exp(-2) < 1 < exp(2): holds. pair (1, 3): x_3 sits next to x_1
    # (K_13 = exp(-0.01)) and is closer to x_0, so K_01 / K_03 = exp(-0.09) < K_13: fails (x_3
    # shadows x_1). pair (2, 3): K_23 = exp(-1.81) < exp(0.09) < exp(1.81): holds. Two of three.
    assert kernel_ratio_agreement(points, neighbors, kept, values, "gaussian", params) == pytest.approx(2 / 3)
    assert np.isnan(kernel_ratio_agreement(points, neighbors, np.array([[True, False, False]]), values,
                                           "gaussian", params))


def test_shadowed_candidates_is_the_two_candidate_rule():
    # With k = 2 a pruned candidate is exactly one the kept candidate shadows (theorem thm-kri):
    # every pruned candidate is shadowed. Kept candidates never are.
    rng = np.random.default_rng(5)
    points = rng.uniform(-1, 1, size=(200, 2))
    graph = nnk.nnk_graph(points, 2, kernel="gaussian", dtype="float64", kkt_tol=0)
    shadowed = kernels.shadowed_candidates(points, graph.neighbors, graph.kept, graph.kernel_values,
                                           graph.kernel, graph.kernel_params)
    regular = ((graph.kernel_values > 1e-6) & (graph.kernel_values < 1 - 1e-6)).all(axis=1)
    pruned = ~graph.kept & regular[:, None]
    assert pruned.sum() > 10
    assert shadowed[pruned].all()
    assert not shadowed[graph.kept].any()


def test_shadowed_candidates_is_the_hyperplane_for_the_gaussian_kernel():
    # x_0 = 0, kept x_1 = (1, 0); pruned x_2 = (2, 0.5) lies beyond the line x = 1 (behind x_1),
    # pruned x_3 = (0.5, 1) does not. sigma cancels (theorem thm-kri), so any value works.
    points = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.5], [0.5, 1.0]])
    params = {"sigma": 0.7}
    neighbors = np.array([[1, 2, 3]])
    values = np.exp(-np.array([[1.0, 4.25, 1.25]]) / (2 * 0.7**2))
    kept = np.array([[True, False, False]])
    shadowed = kernels.shadowed_candidates(points, neighbors, kept, values, "gaussian", params)
    assert shadowed.tolist() == [[False, True, False]]


def _brute_force_simplex(gram, linear):
    """Minimum of e over the simplex by enumerating supports (small k only)."""
    import itertools

    k = len(linear)
    best = np.inf
    for size in range(1, k + 1):
        for support in itertools.combinations(range(k), size):
            s = list(support)
            # minimise t^T G t - 2 b^T t subject to 1^T t = 1 on the support: KKT linear system
            system = np.block([[2 * gram[np.ix_(s, s)], np.ones((size, 1))],
                               [np.ones((1, size)), np.zeros((1, 1))]])
            solution = np.linalg.lstsq(system, np.r_[2 * linear[s], 1.0], rcond=None)[0][:size]
            if np.all(solution >= -1e-12):
                theta = np.zeros(k)
                theta[s] = solution
                best = min(best, 1 - 2 * linear @ theta + theta @ gram @ theta)
    return best


def test_optimal_reconstruction_errors_bound_nnk_and_knn():
    from scipy.optimize import nnls

    rng = np.random.default_rng(7)
    points = rng.standard_normal((60, 3))
    for kernel in ("gaussian", "cosine"):
        graph = nnk.nnk_graph(points, 5, kernel=kernel, dtype="float64", kkt_tol=0)
        grams, linears = (np.stack(p) for p in zip(*(nnk.node_problem(graph, points, i) for i in range(12))))
        free, simplex = kernels.optimal_reconstruction_errors(grams, linears)
        averages = graph.kernel_values[:12] / graph.kernel_values[:12].sum(1, keepdims=True)
        knn = kernels.reconstruction_error(grams, linears, averages)
        nnk_error = graph.errors[:12]
        assert np.all(free <= nnk_error + 1e-10)
        assert np.all(nnk_error <= simplex + 1e-10)
        assert np.all(simplex <= knn + 1e-10)
        for i in range(12):
            assert simplex[i] == pytest.approx(_brute_force_simplex(grams[i], linears[i]), abs=1e-9)
            # the unconstrained minimum is 1 - b^T G^+ b; NNK's equals scipy's nnls on the Cholesky factor
            assert free[i] == pytest.approx(1 - linears[i] @ np.linalg.pinv(grams[i]) @ linears[i], abs=1e-9)
            if kernel == "gaussian":
                factor = np.linalg.cholesky(grams[i]).T
                theta = nnls(factor, np.linalg.solve(factor.T, linears[i]))[0]
                expected = 1 - 2 * linears[i] @ theta + theta @ grams[i] @ theta
                assert nnk_error[i] == pytest.approx(expected, abs=1e-9)


def test_optimal_reconstruction_errors_check_shapes():
    with pytest.raises(ValueError, match="shape"):
        kernels.optimal_reconstruction_errors(np.eye(3), np.ones(3))
