"""Tests of sslgeom.nnk: exact kNN, the batched non-negative QP, the NNK graph, bad input."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.optimize import minimize, nnls

from sslgeom import nnk


def _objective(gram, linear, theta):
    return 0.5 * theta @ gram @ theta - linear @ theta


def _reference_qp(gram, linear):
    """Independent solution: NNLS on the Cholesky form 1/2||L^T t - L^{-1} c||^2."""
    chol = np.linalg.cholesky(gram)
    theta, _ = nnls(chol.T, np.linalg.solve(chol, linear), maxiter=50 * len(linear))
    return theta


def _random_spd_problems(batch, m, seed):
    rng = np.random.default_rng(seed)
    factors = rng.standard_normal((batch, m, m + 3))
    gram = factors @ factors.transpose(0, 2, 1) / (m + 3) + 0.05 * np.eye(m)
    linear = rng.standard_normal((batch, m))
    return gram, linear


SOLVERS = ["compiled", "torch"]


@pytest.mark.parametrize("solver", SOLVERS)
def test_qp_matches_nnls_and_satisfies_kkt(solver):
    gram, linear = _random_spd_problems(60, 12, seed=1)
    theta, residual, _ = nnk.nonnegative_qp(torch.from_numpy(gram), torch.from_numpy(linear),
                                            solver=solver)
    theta = theta.numpy()
    assert (theta >= 0).all()
    for g, c, t in zip(gram, linear, theta):
        reference = _reference_qp(g, c)
        assert _objective(g, c, t) <= _objective(g, c, reference) + 1e-6
        grad = g @ t - c
        assert np.all(np.abs(grad[t > 0]) < 1e-8)
        assert np.all(grad[t == 0] > -1e-8)
    assert residual.max() <= nnk.default_kkt_tol("float64")


@pytest.mark.parametrize("solver", SOLVERS)
def test_qp_with_all_negative_linear_term_gives_zero(solver):
    gram, linear = _random_spd_problems(5, 6, seed=2)
    theta, _, _ = nnk.nonnegative_qp(torch.from_numpy(gram), torch.from_numpy(-np.abs(linear)),
                                     solver=solver)
    # zero is optimal iff the gradient -c is non-negative, i.e. c <= 0
    assert np.all(theta.numpy() == 0)


@pytest.mark.parametrize("solver", SOLVERS)
def test_nnk_weights_match_bounded_minimize(solver):
    rng = np.random.default_rng(3)
    points = rng.standard_normal((150, 5))
    result = nnk.nnk_graph(points, k=15, kernel="gaussian", dtype="float64", solver=solver,
                           kkt_tol=0)
    assert (result.kkt_residual <= result.kkt_tol).all()
    for node in range(0, 150, 10):
        gram, linear = nnk.node_problem(result, points, node)
        reference = minimize(
            lambda t: _objective(gram, linear, t),
            np.full(15, 0.01),
            jac=lambda t: gram @ t - linear,
            bounds=[(0, None)] * 15,
            method="L-BFGS-B",
            options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 10_000},
        )
        assert _objective(gram, linear, result.weights[node]) <= reference.fun + 1e-6
        assert abs(_objective(gram, linear, result.weights[node]) - reference.fun) < 1e-6


def test_errors_are_kernel_space_reconstruction_errors():
    rng = np.random.default_rng(4)
    points = rng.standard_normal((80, 6))
    result = nnk.nnk_graph(points, k=10, kernel="cosine", dtype="float64")
    for node in (0, 17, 55):
        gram, linear = nnk.node_problem(result, points, node)
        theta = result.weights[node]
        expected = 1.0 - 2.0 * linear @ theta + theta @ gram @ theta
        assert result.errors[node] == pytest.approx(expected, abs=1e-10)


def test_knn_is_exact_and_excludes_self():
    rng = np.random.default_rng(5)
    points = rng.standard_normal((300, 7))
    indices, sq_dist = nnk.knn(points, 9, block_size=37, dtype="float64")
    full = ((points[:, None] - points[None]) ** 2).sum(-1)
    np.fill_diagonal(full, np.inf)
    expected = np.argsort(full, axis=1)[:, :9]
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_allclose(sq_dist, np.take_along_axis(full, expected, 1), atol=1e-10)
    assert not np.any(indices == np.arange(300)[:, None])


def test_symmetrisation_rule():
    neighbors = np.array([[1, 2], [0, 2], [0, 1]])
    weights = np.array([[0.5, 0.2], [0.4, 0.0], [0.3, 0.1]])
    errors = np.array([0.1, 0.3, 0.2])
    adjacency = nnk.symmetrize(neighbors, weights, errors).toarray()
    # 0 has the smallest error: its edges stand (0-1: 0.5, 0-2: 0.2) over what 1 and 2 say
    # 1 -> 2 is dropped (error 0.3 > 0.2); 2 -> 1 kept (0.1)
    expected = np.array([[0, 0.5, 0.2], [0.5, 0, 0.1], [0.2, 0.1, 0]])
    np.testing.assert_allclose(adjacency, expected)


def test_adjacency_is_symmetric_and_built_from_directed_weights():
    rng = np.random.default_rng(6)
    points = rng.standard_normal((120, 4))
    result = nnk.nnk_graph(points, k=12, kernel="gaussian", dtype="float64")
    adjacency = result.adjacency
    assert sp.issparse(adjacency)
    assert abs(adjacency - adjacency.T).max() == 0
    directed = result.directed_adjacency().toarray()
    dense = adjacency.toarray()
    rows, cols = np.nonzero(dense)
    errors = result.errors
    for i, j in zip(rows, cols):
        # the weight is a directed weight i -> j or j -> i whose source has the smaller error
        ok_ij = errors[i] <= errors[j] and dense[i, j] == directed[i, j]
        ok_ji = errors[j] <= errors[i] and dense[i, j] == directed[j, i]
        assert ok_ij or ok_ji
    assert len(rows) > 0


def test_permutation_equivariance():
    rng = np.random.default_rng(7)
    points = rng.standard_normal((100, 6))
    perm = rng.permutation(100)
    base = nnk.nnk_graph(points, k=10, kernel="gaussian", dtype="float64")
    permuted = nnk.nnk_graph(points[perm], k=10, kernel="gaussian", dtype="float64")
    np.testing.assert_allclose(permuted.errors, base.errors[perm], atol=1e-12)
    inverse = np.argsort(perm)
    # neighbour indices map through the permutation
    np.testing.assert_array_equal(inverse[base.neighbors[perm]], permuted.neighbors)
    np.testing.assert_allclose(permuted.weights, base.weights[perm], atol=1e-10)
    dense_base = base.adjacency.toarray()
    np.testing.assert_allclose(permuted.adjacency.toarray(), dense_base[np.ix_(perm, perm)],
                               atol=1e-10)


def test_float32_agrees_with_float64():
    rng = np.random.default_rng(8)
    points = rng.standard_normal((200, 16))
    r64 = nnk.nnk_graph(points, k=20, dtype="float64")
    r32 = nnk.nnk_graph(points, k=20, dtype="float32")
    assert r32.weights.dtype == np.float32
    assert np.abs(r64.weights - r32.weights).max() < 1e-2
    assert np.mean(r64.kept == r32.kept) > 0.98


def test_default_sigma_is_mean_kth_distance_over_three():
    rng = np.random.default_rng(9)
    points = rng.standard_normal((90, 3))
    result = nnk.nnk_graph(points, k=8, kernel="gaussian", dtype="float64")
    _, sq_dist = nnk.knn(points, 8, dtype="float64")
    assert result.kernel_params["sigma"] == pytest.approx(np.sqrt(sq_dist[:, -1]).mean() / 3)
    fixed = nnk.nnk_graph(points, k=8, kernel="gaussian", sigma=0.7, dtype="float64")
    assert fixed.kernel_params == {"sigma": 0.7}


def test_two_candidates_follow_kernel_ratio_interval():
    # with two candidates both are kept iff K_jl < K_ij / K_il < 1 / K_jl
    rng = np.random.default_rng(10)
    for _ in range(200):
        tri = rng.standard_normal((3, 2))
        result = nnk.nnk_graph(tri, k=2, kernel="gaussian", sigma=1.0, dtype="float64", kkt_tol=0)
        gram, linear = nnk.node_problem(result, tri, 0)
        ratio = linear[0] / linear[1]
        inside = gram[0, 1] < ratio < 1.0 / gram[0, 1]
        assert inside == bool(result.kept[0].all())


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_features_raise(bad):
    points = np.random.default_rng(0).standard_normal((20, 3))
    points[4, 1] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        nnk.nnk_graph(points, k=3)


def test_k_too_large_raises():
    points = np.random.default_rng(0).standard_normal((10, 3))
    with pytest.raises(ValueError, match="smaller than the number of points"):
        nnk.nnk_graph(points, k=10)
    with pytest.raises(ValueError, match="at least 1"):
        nnk.nnk_graph(points, k=0)


def test_too_few_points_raise():
    with pytest.raises(ValueError, match="at least 2 rows"):
        nnk.nnk_graph(np.ones((1, 4)), k=1)


def test_wrong_shape_raises():
    with pytest.raises(ValueError, match="2-D"):
        nnk.nnk_graph(np.ones(10), k=1)


def test_unknown_kernel_raises():
    points = np.random.default_rng(0).standard_normal((10, 3))
    with pytest.raises(ValueError, match="unknown kernel"):
        nnk.nnk_graph(points, k=3, kernel="laplacian")


def test_zero_vector_with_cosine_kernel_raises():
    points = np.random.default_rng(0).standard_normal((10, 3))
    points[2] = 0.0
    with pytest.raises(ValueError, match="zero"):
        nnk.nnk_graph(points, k=3, kernel="cosine")
    # the Gaussian kernel has no trouble with the origin
    nnk.nnk_graph(points, k=3, kernel="gaussian")


@pytest.mark.parametrize("solver", SOLVERS)
def test_duplicates_raise_by_default_and_ridge_handles_them(solver):
    rng = np.random.default_rng(11)
    points = rng.standard_normal((40, 4))
    points[7] = points[3]
    points[8] = points[3] + 1e-3
    with pytest.raises(ValueError, match="duplicate"):
        nnk.nnk_graph(points, k=5, kernel="gaussian", solver=solver)
    result = nnk.nnk_graph(points, k=5, kernel="gaussian", duplicates="ridge", dtype="float64",
                           solver=solver)
    assert np.all(np.isfinite(result.weights))
    # the copy is the nearest candidate of its twin; with the near copy 8 it rebuilds it
    assert result.neighbors[3, 0] == 7 and result.neighbors[7, 0] == 3
    near = np.isin(result.neighbors[3], [7, 8])
    assert result.weights[3, near].sum() > 0.99 and result.errors[3] < 1e-5
    # a third point sees the two copies as one: the first copy the solver adds takes the whole
    # weight (the second's gain is the ridge's, below the tolerance), so the pair counts once
    slots = [list(result.neighbors[8]).index(3), list(result.neighbors[8]).index(7)]
    w = result.weights[8, slots]
    assert min(w) == 0 and max(w) > 0.1
    # solved exactly, the copies share the weight equally
    exact = nnk.nnk_graph(points, k=5, kernel="gaussian", duplicates="ridge", dtype="float64",
                          solver=solver, kkt_tol=0)
    w = exact.weights[8, slots]
    assert w[0] == pytest.approx(w[1], rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("scale", [1.0, 1e-25, 1e20])
@pytest.mark.parametrize("kernel", ["cosine", "gaussian"])
def test_duplicate_test_is_exact_at_every_scale(kernel, scale):
    """Duplicates: rows equal bit for bit at unit scale (relative tolerance 0). A row one ulp
    away is a near-duplicate, which the solver handles, not a duplicate, whatever the scale."""
    points = (np.random.default_rng(17).standard_normal((40, 4)) * scale).astype(np.float32)
    points[8] = np.nextafter(points[3], np.float32(np.inf))
    result = nnk.nnk_graph(points, k=5, kernel=kernel)
    assert np.all(np.isfinite(result.weights)) and np.all(result.weights >= 0)
    assert 8 in result.neighbors[3]
    points[7] = points[3]
    with pytest.raises(ValueError, match=r"found 2 point\(s\) with an exact duplicate"):
        nnk.nnk_graph(points, k=5, kernel=kernel)


@pytest.mark.parametrize("backend", ["torch", "faiss"])
def test_duplicate_ranked_after_a_nearer_rounding_is_still_found(backend):
    """Copies and one-ulp neighbours tie up to rounding: whichever the kNN ranks first, the
    exact copy among the candidates is found, for both twins (with either search engine)."""
    rng = np.random.default_rng(18)
    points = rng.standard_normal((30, 3)).astype(np.float32)
    points[4] = points[2]
    points[5] = np.nextafter(points[2], np.float32(np.inf))
    points[6] = np.nextafter(points[2], np.float32(-np.inf))
    indices, _ = nnk.knn(points, 4, backend=backend)
    assert set(indices[2]) >= {4, 5, 6} and set(indices[4]) >= {2, 5, 6}
    if backend == "torch":  # this engine's rounding ranks a near point before the copy
        assert indices[2, 0] != 4 or indices[4, 0] != 2
    with pytest.raises(ValueError, match=r"found 2 point\(s\)"):
        nnk.nnk_graph(points, k=4, kernel="gaussian", knn_backend=backend)


def test_bad_parameters_raise():
    points = np.random.default_rng(0).standard_normal((10, 3))
    with pytest.raises(ValueError, match="sigma"):
        nnk.nnk_graph(points, k=3, kernel="gaussian", sigma=-1.0)
    with pytest.raises(ValueError, match="dtype"):
        nnk.nnk_graph(points, k=3, dtype="float16")
    with pytest.raises(ValueError, match="duplicates"):
        nnk.nnk_graph(points, k=3, duplicates="ignore")


def test_solver_threads_do_not_change_the_result():
    points = np.random.default_rng(12).standard_normal((120, 6))
    single = nnk.nnk_graph(points, k=10, dtype="float64")
    shared = nnk.nnk_graph(points, k=10, dtype="float64", solver_threads=None)
    np.testing.assert_allclose(single.weights, shared.weights, atol=1e-12)
    with pytest.raises(ValueError, match="solver_threads"):
        nnk.nnk_graph(points, k=10, solver_threads=0)


@pytest.mark.parametrize("kernel", ["cosine", "gaussian"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_compiled_and_torch_solvers_agree(kernel, dtype):
    points = np.random.default_rng(13).standard_normal((300, 12))
    compiled = nnk.nnk_graph(points, k=20, kernel=kernel, dtype=dtype, solver="compiled")
    batched = nnk.nnk_graph(points, k=20, kernel=kernel, dtype=dtype, solver="torch")
    np.testing.assert_array_equal(compiled.neighbors, batched.neighbors)
    np.testing.assert_allclose(compiled.kernel_values, batched.kernel_values, atol=1e-5)
    if dtype == "float64":
        np.testing.assert_allclose(compiled.weights, batched.weights, atol=1e-8)
        np.testing.assert_allclose(compiled.errors, batched.errors, atol=1e-8)
    else:
        # float32 weights are exact only to the KKT tolerance; compare what they achieve on the
        # float64 problem: the objective (half the reconstruction error, up to a constant)
        for node in range(0, 300, 7):
            gram, linear = nnk.node_problem(compiled, points, node)
            ours = _objective(gram, linear, compiled.weights[node].astype(np.float64))
            theirs = _objective(gram, linear, batched.weights[node].astype(np.float64))
            assert ours == pytest.approx(theirs, abs=2e-4)
    assert compiled.weights.dtype == batched.weights.dtype == np.dtype(dtype)
    assert (compiled.kkt_residual <= compiled.kkt_tol).all()


def test_compiled_solver_hands_flagged_nodes_to_torch(monkeypatch):
    """Nodes the compiled stage flags are re-solved by the torch solver, and only those."""
    from sslgeom import nnk_compiled

    points = np.random.default_rng(14).standard_normal((120, 6))
    original = nnk_compiled.nnk_nodes
    flagged = np.array([3, 50, 119])

    def flagging(*args):
        outputs = list(original(*args))
        start, stop = args[2], args[3]
        status = outputs[6].copy()  # (weights, ..., iterations, status, tolerances)
        for node in flagged[(flagged >= start) & (flagged < stop)]:
            status[node - start] = nnk_compiled.SINGULAR
            outputs[0][node - start] = -1.0  # garbage that the retry must overwrite
        outputs[6] = status
        return tuple(outputs)

    monkeypatch.setattr(nnk_compiled, "nnk_nodes", flagging)
    retried = nnk.nnk_graph(points, k=10, dtype="float64", solver="compiled")
    monkeypatch.setattr(nnk_compiled, "nnk_nodes", original)
    reference = nnk.nnk_graph(points, k=10, dtype="float64", solver="torch")
    assert (retried.weights >= 0).all()
    np.testing.assert_allclose(retried.weights, reference.weights, atol=1e-10)


def test_compiled_qp_reports_iteration_cap_and_then_raises():
    from sslgeom import nnk_compiled

    gram, linear = _random_spd_problems(4, 8, seed=15)
    linear = np.abs(linear) + 1.0  # several coordinates must enter, so one step is not enough
    _, _, _, status = nnk_compiled.solve_batch(gram, linear, np.full(len(linear), 1e-9), 1)
    assert (status == nnk_compiled.NOT_CONVERGED).any()
    with pytest.raises(RuntimeError, match="did not converge"):
        nnk.nonnegative_qp(torch.from_numpy(gram), torch.from_numpy(linear), max_iter=1)


def test_bad_solver_choices_raise():
    points = np.random.default_rng(16).standard_normal((30, 3))
    with pytest.raises(ValueError, match="solver must be one of"):
        nnk.nnk_graph(points, k=5, solver="scipy")
    with pytest.raises(ValueError, match="solver='torch'"):
        nnk.nnk_graph(points, k=5, solver="compiled", device="cuda")


def test_compiled_status_code_of_success_matches_qp():
    from sslgeom import nnk_compiled, qp

    assert qp.COMPILED_OK == nnk_compiled.OK


def test_fallback_helper_replaces_only_flagged_rows():
    from sslgeom import qp

    def compiled_solve():
        return {"theta": np.arange(12.0).reshape(4, 3), "residual": np.zeros(4, dtype=np.float32),
                "status": np.array([0, 2, 0, 1]), "n_iterations": 5}

    asked = []

    def torch_solve(problems):
        asked.append(problems.tolist())
        return {"theta": -torch.ones((len(problems), 3), dtype=torch.float32),
                "residual": torch.full((len(problems),), 0.5, dtype=torch.float64),
                "n_iterations": 9}

    solved = qp.solve_with_fallback(compiled_solve, torch_solve)
    assert asked == [[1, 3]] and "status" not in solved and solved["n_iterations"] == 9
    np.testing.assert_array_equal(solved["theta"][[0, 2]], [[0, 1, 2], [6, 7, 8]])
    np.testing.assert_array_equal(solved["theta"][[1, 3]], -1.0)
    assert solved["residual"].dtype == np.float32  # the compiled arrays keep their dtype
    np.testing.assert_array_equal(solved["residual"], [0, 0.5, 0, 0.5])

    def all_solved():
        return {"theta": np.ones((2, 3)), "status": np.zeros(2, dtype=int), "n_iterations": 3}

    untouched = qp.solve_with_fallback(all_solved, lambda problems: pytest.fail("not called"))
    assert untouched["n_iterations"] == 3


def test_feature_tensor_check_keeps_dtype_and_object():
    from sslgeom import validation

    single = torch.zeros((3, 2), dtype=torch.float32)
    assert validation.check_feature_tensor(single) is single
    with pytest.raises(ValueError, match="2-D"):
        validation.check_feature_tensor(single[0])
    with pytest.raises(ValueError, match="zero columns"):
        validation.check_feature_tensor(torch.zeros((3, 0)))
    bad = single.clone()
    bad[1, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf in 1 of 3 row"):
        validation.check_feature_tensor(bad)


# ---- grouped NNK: many small clouds in one batch ---------------------------------------------


@pytest.mark.parametrize("kernel", ["cosine", "gaussian"])
def test_grouped_nnk_equals_one_graph_per_cloud(kernel):
    rng = np.random.default_rng(0)
    clouds = rng.normal(size=(5, 12, 16))
    grouped = nnk.grouped_nnk(clouds, k=6, kernel=kernel)
    directed = grouped.directed_adjacency()
    assert grouped.neighbors.shape == (60, 6)
    for c in range(5):
        rows = slice(12 * c, 12 * (c + 1))
        single = nnk.nnk_graph(clouds[c], k=6, kernel=kernel, duplicates="ridge", dtype="float64")
        np.testing.assert_array_equal(grouped.neighbors[rows] - 12 * c, single.neighbors)
        np.testing.assert_allclose(directed[rows, rows].toarray(), single.directed_adjacency().toarray(), atol=1e-9)
        np.testing.assert_allclose(grouped.errors[rows], single.errors, atol=1e-9)
        np.testing.assert_allclose(grouped.adjacency[rows, rows].toarray(), single.adjacency.toarray(), atol=1e-9)
        if kernel == "gaussian":  # each cloud has its own bandwidth, as nnk_graph gives it
            np.testing.assert_allclose(grouped.kernel_values[rows], single.kernel_values, atol=1e-12)
    # no edge between clouds
    assert directed[:12, 12:].nnz == 0


def test_grouped_nnk_accepts_repeated_points_and_rejects_bad_input():
    rng = np.random.default_rng(1)
    clouds = rng.normal(size=(3, 8, 5))
    clouds[1, 2] = clouds[1, 3]  # identical views happen on augmentation curves
    result = nnk.grouped_nnk(clouds, k=4)
    assert np.all(np.isfinite(result.weights)) and np.all(result.weights >= 0)
    # the copy is a kept neighbour (the ridge makes the repeated candidate solvable)
    copies = result.weights[8 + 2][np.isin(result.neighbors[8 + 2], [8 + 3])]
    assert copies.size == 1 and copies[0] > 0
    with pytest.raises(ValueError, match="k must satisfy"):
        nnk.grouped_nnk(clouds, k=8)
    with pytest.raises(ValueError, match="n_clouds, n_points, dim"):
        nnk.grouped_nnk(clouds[0], k=3)
    with pytest.raises(ValueError, match="unknown kernel"):
        nnk.grouped_nnk(clouds, k=3, kernel="laplace")
    clouds[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        nnk.grouped_nnk(clouds, k=3)


def test_grouped_nnk_is_importable_from_the_graph_entry_point():
    from sslgeom.nnk import grouped_nnk

    assert grouped_nnk is nnk.grouped_nnk and grouped_nnk.__module__ == "sslgeom.nnk"


# ---------------------------------------------------------------- the relative KKT tolerance


def _offset_patch(dim, size, seed, n=300, noise=1e-3):
    from sslgeom import synthetic

    return synthetic.offset_manifold("flat", n, dim, 16, size=size, offset=2.0,
                                     noise=noise * size, seed=seed)


@pytest.mark.parametrize("solver", SOLVERS)
def test_each_node_is_solved_to_its_relative_tolerance(solver):
    points = _offset_patch(3, 1.0, seed=21)
    result = nnk.nnk_graph(points, 12, solver=solver)
    expected = nnk.node_kkt_tol(result.kernel_values.astype(np.float64), 0.01, nnk.KKT_FLOOR)
    np.testing.assert_allclose(result.kkt_tol, expected, rtol=1e-4)
    assert result.relative_kkt_tol == 0.01
    assert (result.kkt_residual <= result.kkt_tol).all()
    # no pruned candidate correlates with the residual above the node's tolerance
    for node in range(0, 300, 25):
        gram, linear = nnk.node_problem(result, points, node)
        gradient = gram @ result.weights[node].astype(np.float64) - linear
        assert (-gradient[~result.kept[node]] <= result.kkt_tol[node] * (1 + 1e-3)).all()


@pytest.mark.parametrize("dim", [2, 4])
def test_the_count_does_not_change_when_the_manifold_is_concentrated(dim):
    # the same patch (noise included) shrunk 8x towards its centre: every kernel distance
    # 1 - K_ij shrinks about 64x, and so does each node's tolerance
    wide = _offset_patch(dim, 1.0, seed=dim)
    centre = wide.mean(axis=0)
    narrow = centre + (wide - centre) / 8
    counts = [nnk.nnk_graph(x, 20, dtype=dtype).n_neighbors.mean()
              for x in (wide, narrow) for dtype in ("float32", "float64")]
    assert max(counts) - min(counts) < 0.1, counts
    exact = [nnk.nnk_graph(x, 20, kkt_tol=0).n_neighbors.mean() for x in (wide, narrow)]
    assert counts[0] < exact[0]  # the tolerance prunes what only fits the noise


def test_torch_and_compiled_solvers_find_the_same_support_at_the_tolerance():
    points = _offset_patch(5, 1.0, seed=22, noise=1e-2)
    compiled = nnk.nnk_graph(points, 20, dtype="float64", solver="compiled")
    batched = nnk.nnk_graph(points, 20, dtype="float64", solver="torch")
    np.testing.assert_array_equal(compiled.kept, batched.kept)
    np.testing.assert_allclose(compiled.weights, batched.weights, atol=1e-10)


@pytest.mark.parametrize("bad, error", [(-0.1, ValueError), (1.0, ValueError),
                                        (np.nan, ValueError), ("0.01", TypeError),
                                        (True, TypeError)])
def test_bad_relative_tolerance_raises(bad, error):
    points = _offset_patch(2, 1.0, seed=23, n=40)
    with pytest.raises(error, match="kkt_tol"):
        nnk.nnk_graph(points, 5, kkt_tol=bad)
    with pytest.raises(error, match="kkt_tol"):
        nnk.grouped_nnk(points.reshape(2, 20, -1), 5, kkt_tol=bad)
