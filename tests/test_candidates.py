"""Tests of the candidate search of the NNK graph: faiss exact search against the torch search,
the approximate (opt-in) modes, self-matches and duplicates, and bad input."""

import numpy as np
import pytest
import torch

from sslgeom import candidates, nnk


def _random(n, dim, seed):
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def _clustered(n, dim, n_clusters, seed):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, dim))
    labels = rng.integers(n_clusters, size=n)
    return (centres[labels] + 0.3 * rng.standard_normal((n, dim))).astype(np.float32)


def _objective(gram, linear, theta):
    return 0.5 * theta @ gram @ theta - linear @ theta


def _tie_tolerance(dim):
    # both engines form ||q||^2 + ||x||^2 - 2 q.x at unit scale (largest |x| in [1, 2)):
    # rounding of at most about (dim + 2) eps (||q||^2 + ||x||^2), ||x||^2 < 4 dim
    return 4 * (dim + 2) * np.finfo(np.float32).eps * 8 * dim


def _same_up_to_ties(a_idx, a_sq, b_idx, b_sq, tol):
    """Same neighbours where no two candidates are within ``tol``; sorted distances agree."""
    np.testing.assert_allclose(a_sq, b_sq, atol=tol, rtol=0)
    differ = a_idx != b_idx
    # a position may differ only where its distance ties with a neighbouring rank
    gaps = np.diff(np.sort(a_sq, axis=1), axis=1)
    near_tie = np.zeros_like(differ)
    near_tie[:, :-1] |= gaps <= 2 * tol
    near_tie[:, 1:] |= gaps <= 2 * tol
    assert not np.any(differ & ~near_tie)
    # and the last rank may swap with the first excluded point: compare sets on the others
    return differ


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("seed", [0, 1])
def test_faiss_knn_matches_torch_knn(metric, seed):
    points = _random(400, 12, seed) * 3.0
    f_idx, f_sq = nnk.knn(points, 15, metric=metric, backend="faiss")
    t_idx, t_sq = nnk.knn(points, 15, metric=metric, backend="torch")
    assert f_idx.dtype == np.int64 and f_sq.dtype == np.float32
    assert not np.any(f_idx == np.arange(400)[:, None])
    scale = 1.0 if metric == "cosine" else 4.0 ** 2  # sq distances in the input's units
    _same_up_to_ties(f_idx, f_sq, t_idx, t_sq, _tie_tolerance(12) * scale)
    assert np.mean(f_idx == t_idx) > 0.99


def test_auto_backend_is_faiss_for_float32_on_cpu_and_torch_otherwise():
    from sslgeom.neighbors import resolve_backend

    assert resolve_backend("auto", "cpu", torch.float32) == "faiss"
    assert resolve_backend("auto", "cpu", torch.float64) == "torch"
    assert resolve_backend("auto", "cuda", torch.float32) == "torch"
    assert resolve_backend("torch", "cpu", torch.float32) == "torch"
    points = _random(60, 4, 2)
    result = nnk.nnk_graph(points, 5)
    assert result.candidates == "exact" and result.candidate_settings == {"backend": "faiss"}
    result64 = nnk.nnk_graph(points, 5, dtype="float64")
    assert result64.candidate_settings == {"backend": "torch"}


@pytest.mark.parametrize("kernel", ["cosine", "gaussian"])
@pytest.mark.parametrize("data", ["random", "clustered"])
def test_graph_with_faiss_candidates_equals_torch_path(kernel, data):
    """Same candidates (up to ties) and weights to 1e-6 as the torch search's graph."""
    points = _random(300, 12, 13) if data == "random" else _clustered(600, 24, 8, 3)
    k = 20
    fast = nnk.nnk_graph(points, k, kernel=kernel, knn_backend="faiss")
    slow = nnk.nnk_graph(points, k, kernel=kernel, knn_backend="torch")
    same = np.all(np.sort(fast.neighbors, 1) == np.sort(slow.neighbors, 1), axis=1)
    assert same.mean() > 0.98
    if kernel == "gaussian":
        assert fast.kernel_params["sigma"] == pytest.approx(slow.kernel_params["sigma"],
                                                            rel=1e-6)
    for node in np.flatnonzero(same):
        order_f, order_s = np.argsort(fast.neighbors[node]), np.argsort(slow.neighbors[node])
        np.testing.assert_allclose(fast.weights[node, order_f], slow.weights[node, order_s],
                                   atol=1e-6)
    np.testing.assert_allclose(fast.errors[same], slow.errors[same], atol=1e-6)
    assert (fast.kkt_residual <= fast.kkt_tol).all()


def test_self_is_never_a_candidate_even_with_more_than_k_copies():
    points = _random(40, 5, 4)
    points[10:18] = points[3]  # nine copies of one point, k = 4
    idx, sq = nnk.knn(points, 4, backend="faiss")
    assert not np.any(idx == np.arange(40)[:, None])
    copies = {3, *range(10, 18)}
    for node in copies:
        assert set(idx[node]) <= copies - {node}
        assert np.all(sq[node] == 0)


@pytest.mark.parametrize("kernel", ["cosine", "gaussian"])
def test_duplicates_behave_as_in_the_torch_path(kernel):
    points = _random(50, 4, 11)
    points[7] = points[3]
    for backend in ("faiss", "torch"):
        with pytest.raises(ValueError, match=r"found 2 point\(s\) with an exact duplicate"):
            nnk.nnk_graph(points, 5, kernel=kernel, knn_backend=backend)
    fast = nnk.nnk_graph(points, 5, kernel=kernel, duplicates="ridge", knn_backend="faiss")
    slow = nnk.nnk_graph(points, 5, kernel=kernel, duplicates="ridge", knn_backend="torch")
    assert fast.neighbors[3, 0] == 7 and fast.neighbors[7, 0] == 3
    np.testing.assert_array_equal(np.sort(fast.neighbors, 1), np.sort(slow.neighbors, 1))
    np.testing.assert_allclose(np.sort(fast.weights, 1), np.sort(slow.weights, 1), atol=1e-5)


def test_drop_self_removes_the_query_or_else_the_last_result():
    indices = np.array([[5, 0, 2], [4, 3, -1], [1, 2, 3]])
    values = np.array([[0.1, 0.2, 0.3], [0.0, 0.5, np.inf], [0.0, 0.0, 0.0]], np.float32)
    idx, val = candidates.drop_self(indices, values, 2, np.array([0, 1, 2]))
    np.testing.assert_array_equal(idx, [[5, 2], [4, 3], [1, 3]])
    np.testing.assert_allclose(val, [[0.1, 0.3], [0.0, 0.5], [0.0, 0.0]])


# ------------------------------------------------------------------- approximate candidates


def test_exact_is_the_default_and_approximate_modes_are_opt_in():
    import inspect

    assert inspect.signature(nnk.nnk_graph).parameters["candidates"].default == "exact"
    assert "approximate" in nnk.nnk_graph.__doc__.lower()
    assert "approximate" in candidates.approximate_search.__doc__.lower()


def test_ivf_probing_every_cell_is_the_exact_search():
    points = _clustered(800, 16, 6, 5)
    exact_idx, exact_sq = candidates.exact_search(points, 10, "l2")
    idx, sq, used = candidates.approximate_search(points, 10, "l2", "ivf",
                                                  {"nlist": 8, "nprobe": 8})
    assert used["nlist"] == 8 and used["nprobe"] == 8 and used["exact_rows"] == 0
    _same_up_to_ties(idx, sq, exact_idx, exact_sq, _tie_tolerance(16) * 16)


@pytest.mark.parametrize("mode", ["ivf", "hnsw"])
@pytest.mark.parametrize("kernel", ["cosine", "gaussian"])
def test_approximate_graph_has_high_recall_and_exact_weights_on_its_candidates(mode, kernel):
    points = _clustered(1500, 16, 10, 6)
    k = 12
    exact = nnk.nnk_graph(points, k, kernel=kernel)
    approx = nnk.nnk_graph(points, k, kernel=kernel, candidates=mode)
    assert approx.candidates == mode and approx.candidate_settings["exact_rows"] >= 0
    recall = np.mean([len(set(a) & set(e)) / k
                      for a, e in zip(approx.neighbors, exact.neighbors)])
    assert recall > 0.9
    assert not np.any(approx.neighbors == np.arange(1500)[:, None])
    assert (approx.kkt_residual <= approx.kkt_tol).all()
    # the per-node problems are solved exactly on the candidates found
    for node in range(0, 1500, 150):
        gram, linear = nnk.node_problem(approx, points, node)
        theta, _, _ = nnk.nonnegative_qp(torch.from_numpy(gram[None]),
                                         torch.from_numpy(linear[None]))
        # float32 weights are exact to the KKT tolerance: compare the objective they reach
        ours = approx.weights[node].astype(np.float64)
        best = theta[0].numpy()
        assert _objective(gram, linear, ours) == pytest.approx(_objective(gram, linear, best),
                                                               abs=2e-4)


def test_ivf_rows_with_too_few_candidates_are_searched_exactly():
    points = _clustered(300, 8, 4, 7)
    # 150 cells of about 2 points, one probed: no cell holds k + 1 = 11 points
    idx, sq, used = candidates.approximate_search(points, 10, "l2", "ivf",
                                                  {"nlist": 150, "nprobe": 1})
    assert used["exact_rows"] > 0
    assert np.all(idx >= 0) and np.all(np.isfinite(sq))
    exact_idx, _ = candidates.exact_search(points, 10, "l2")
    rows = np.all(np.isin(idx, exact_idx), axis=1)
    assert rows.mean() >= used["exact_rows"] / 300


# ------------------------------------------------------------------------------ bad input


def test_bad_candidate_choices_raise():
    points = _random(50, 4, 8)
    with pytest.raises(ValueError, match="unknown candidates 'annoy'"):
        nnk.nnk_graph(points, 5, candidates="annoy")
    with pytest.raises(ValueError, match="unknown candidates"):
        nnk.nnk_graph(points, 5, candidates=None)
    with pytest.raises(ValueError, match="the exact search has no settings"):
        nnk.nnk_graph(points, 5, candidate_params={"nprobe": 4})
    with pytest.raises(ValueError, match=r"unknown candidate_params \['efSearch'\]"):
        nnk.nnk_graph(points, 5, candidates="hnsw", candidate_params={"efSearch": 4})
    with pytest.raises(TypeError, match="must be an integer"):
        nnk.nnk_graph(points, 5, candidates="ivf", candidate_params={"nprobe": 2.5})
    with pytest.raises(ValueError, match="at least 1"):
        nnk.nnk_graph(points, 5, candidates="ivf", candidate_params={"nlist": 0})
    with pytest.raises(TypeError, match="candidate_params must be a dict"):
        nnk.nnk_graph(points, 5, candidates="ivf", candidate_params=[("nprobe", 2)])
    with pytest.raises(ValueError, match="train_size=4 is smaller than nlist=8"):
        nnk.nnk_graph(points, 5, candidates="ivf",
                      candidate_params={"nlist": 8, "train_size": 4})


def test_bad_backend_choices_raise():
    points = _random(50, 4, 9)
    with pytest.raises(ValueError, match="unknown knn backend 'sklearn'"):
        nnk.nnk_graph(points, 5, knn_backend="sklearn")
    with pytest.raises(ValueError, match="unknown knn backend"):
        nnk.knn(points, 5, backend="annoy")
    with pytest.raises(ValueError, match="faiss kNN search runs in float32 on the CPU"):
        nnk.knn(points, 5, backend="faiss", dtype="float64")
    with pytest.raises(ValueError, match="faiss kNN search runs in float32 on the CPU"):
        nnk.nnk_graph(points, 5, knn_backend="faiss", device="cuda")
    with pytest.raises(ValueError, match="approximate faiss search"):
        nnk.nnk_graph(points, 5, candidates="ivf", dtype="float64")
    with pytest.raises(ValueError, match="approximate faiss search"):
        nnk.nnk_graph(points, 5, candidates="hnsw", knn_backend="torch")


@pytest.mark.parametrize("mode", ["exact", "ivf", "hnsw"])
def test_bad_features_raise_in_every_mode(mode):
    points = _random(30, 4, 10)
    with pytest.raises(ValueError, match="smaller than the number of points"):
        nnk.nnk_graph(points, 30, candidates=mode)
    with pytest.raises(TypeError, match="k must be an integer"):
        nnk.nnk_graph(points, 3.0, candidates=mode)
    points[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        nnk.nnk_graph(points, 3, candidates=mode)
    with pytest.raises(ValueError, match="numeric"):
        nnk.nnk_graph(np.array([["a", "b"], ["c", "d"]]), 1, candidates=mode)
