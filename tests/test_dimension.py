"""Tests of sslgeom.dimension: established estimators and the NNK neighbour count on manifolds of
known dimension, the calibration curve, and input checks.

Tolerances are measured (seeds fixed here) and stated with some margin; the measured values are
in the comments."""

import numpy as np
import pandas as pd
import pytest

from sslgeom import dimension, synthetic

AMBIENT = 32


def _flat(n, dim, noise=1e-4, offset=2.0, seed=0):
    return synthetic.offset_manifold("flat", n, dim, AMBIENT, offset=offset, noise=noise, seed=seed)


def test_offset_manifolds_have_their_size_offset_and_span():
    for kind, span in (("flat", 3), ("sphere", 4), ("torus", 6)):
        points = synthetic.offset_manifold(kind, 300, 3, AMBIENT, size=0.5, offset=2.0, seed=1)
        centred = synthetic.offset_manifold(kind, 300, 3, AMBIENT, size=0.5, offset=0.0, seed=1)
        shift = points - centred  # the translation, the same vector for every point
        np.testing.assert_allclose(shift, np.broadcast_to(shift[0], shift.shape), atol=1e-12)
        assert np.linalg.norm(shift[0]) == pytest.approx(2.0)
        # orthogonal to the manifold: every centred point is orthogonal to the translation
        np.testing.assert_allclose(centred @ shift[0], 0.0, atol=1e-12)
        singular = np.linalg.svd(centred - centred.mean(0), compute_uv=False)
        assert int((singular > 1e-9 * singular[0]).sum()) == span
        if kind == "sphere":
            np.testing.assert_allclose(np.linalg.norm(centred, axis=1), 0.5)
        if kind == "flat":
            assert np.abs(centred).max() <= 0.5 * np.sqrt(3) + 1e-12
    torus = synthetic.torus(200, 2, 1.5, 8, seed=2)
    np.testing.assert_allclose(np.linalg.norm(torus, axis=1), 1.5 * np.sqrt(2))
    with pytest.raises(ValueError, match="ambient_dim"):
        synthetic.offset_manifold("torus", 10, 4, 8)
    with pytest.raises(ValueError, match="offset"):
        synthetic.offset_manifold("flat", 10, 1, offset=-1.0)


@pytest.fixture(scope="module")
def flat_estimates():
    """Global TwoNN and MLE, local PCA on offset flat patches, n=800, noise 1e-4."""
    rows = []
    for dim in range(1, 6):
        table = dimension.estimate_dimension(_flat(800, dim, seed=dim), local=False)
        estimates = dict(zip(table["estimator"], table["dimension"]))
        estimates["lpca_local"] = np.median(
            dimension.pointwise_dimension(_flat(800, dim, seed=dim), "lpca"))
        rows.append({"dim": dim, **estimates})
    return pd.DataFrame(rows).set_index("dim")


def test_estimators_recover_the_dimension_of_flat_patches(flat_estimates):
    dims = flat_estimates.index.to_numpy()
    # measured: TwoNN 1.87 2.04 3.10 3.77 4.57; MLE 1.06 1.95 2.76 3.62 4.26
    assert np.all(np.abs(flat_estimates["twonn"] - dims) <= 1.0), flat_estimates
    assert np.all(np.abs(flat_estimates["mle"] - dims) <= 1.0), flat_estimates
    # both underestimate as the dimension grows (boundary of the cube, finite sample)
    assert flat_estimates.loc[5, "twonn"] < 5 and flat_estimates.loc[5, "mle"] < 5
    # global PCA of a flat patch is its span; local PCA (Fukunaga-Olsen) rounds to the truth
    np.testing.assert_array_equal(flat_estimates["lpca"], dims)
    np.testing.assert_array_equal(flat_estimates["lpca_local"], dims)


def test_twonn_counts_noise_on_a_dense_line_where_mle_and_local_pca_do_not():
    # 800 points on a line of length 2 are ~0.0025 apart; noise 1e-3 in 32 coordinates has
    # norm 0.0057. TwoNN reads the two nearest neighbours only and sees the noise's dimension.
    line = _flat(800, 1, noise=1e-3, seed=11)
    table = dimension.estimate_dimension(line).set_index(["estimator", "scope"])["dimension"]
    assert table["twonn", "global"] > 3  # measured 9.54 (local median 9.35)
    assert table["mle", "global"] < 2  # measured 1.69 (k = 20 neighbours: a larger scale)
    assert table["lpca", "local"] == 1


def test_pca_global_counts_the_span_of_a_curved_manifold():
    sphere = synthetic.offset_manifold("sphere", 400, 2, AMBIENT, noise=1e-4, seed=3)
    table = dimension.estimate_dimension(sphere).set_index(["estimator", "scope"])
    assert table.loc[("lpca", "global"), "dimension"] == 3  # the sphere spans 3 dimensions
    assert table.loc[("lpca", "local"), "dimension"] == 2
    for name in ("twonn", "mle"):
        # measured TwoNN 1.92, MLE 2.02
        assert table.loc[(name, "global"), "dimension"] == pytest.approx(2, abs=0.3)


def test_estimate_dimension_table_and_pointwise_values():
    points = _flat(150, 2, seed=4)
    table = dimension.estimate_dimension(points, ("mle", "lpca"), n_neighbors=15)
    assert list(table.columns) == ["estimator", "scope", "dimension", "q10", "q90", "n_neighbors"]
    assert list(zip(table["estimator"], table["scope"])) == [
        ("mle", "global"), ("mle", "local"), ("lpca", "global"), ("lpca", "local")]
    assert table.loc[table["scope"] == "global", "q10"].isna().all()
    local = dimension.pointwise_dimension(points, "mle", n_neighbors=15)
    assert local.shape == (150,)
    row = table[(table["estimator"] == "mle") & (table["scope"] == "local")].iloc[0]
    assert row["dimension"] == pytest.approx(np.median(local))
    assert row["q10"] <= row["dimension"] <= row["q90"]


@pytest.mark.parametrize("estimator", ["twonn", "lpca"])
def test_pointwise_estimates_equal_skdim_with_its_own_checks(estimator):
    # pointwise_dimension switches scikit-learn's per-fit input checks off for speed; the
    # estimates must be the ones skdim gives with its checks on
    import skdim

    points = _flat(120, 3, seed=5)
    ours = dimension.pointwise_dimension(points, estimator, n_neighbors=15)
    model = skdim.id.TwoNN() if estimator == "twonn" else skdim.id.lPCA(verbose=False)
    with np.errstate(all="ignore"):
        reference = model.fit_pw(points, n_neighbors=15).dimension_pw_
    np.testing.assert_array_equal(ours, np.asarray(reference, float))


@pytest.mark.parametrize("kernel, dtype", [("cosine", "float32"), ("gaussian", "float64")])
def test_nnk_count_increases_with_dimension_on_offset_flat_data(kernel, dtype):
    # float64 for the Gaussian kernel: in float32 the solver's fallback raises on a nearly
    # noise-free line (near-singular kernel matrices)
    counts = [dimension.nnk_neighbour_count(_flat(400, dim, seed=dim), 20, kernel, dtype=dtype)
              for dim in range(1, 9)]
    # measured cosine: 1.98 2.89 3.68 4.31 4.86 5.33 5.77 6.18
    #          gaussian: 1.96 3.60 5.40 6.71 8.29 9.43 10.09 10.98
    assert np.all(np.diff(counts) > 0.2), counts  # smallest step measured 0.41
    if kernel == "cosine":
        # the cosine kernel is (1 + cos) / 2: linear in the normalised rows plus a constant,
        # so an interior node needs about d + 1 points (Caratheodory) and the count saturates;
        # a line keeps one neighbour on each side
        assert counts[0] == pytest.approx(2.0, abs=0.1) and counts[-1] < 8
    else:
        assert counts[1] == pytest.approx(4.0, abs=0.5)  # about 2 d at low dimension


def test_centred_flat_loses_a_dimension_under_the_cosine_kernel():
    # normalising maps a centred d-flat onto the unit (d-1)-sphere: the count is the sphere's
    for dim in (2, 3, 4):
        offset = dimension.nnk_neighbour_count(_flat(400, dim, seed=dim), 20)
        centred = dimension.nnk_neighbour_count(_flat(400, dim, offset=0.0, seed=dim), 20)
        sphere = dimension.nnk_neighbour_count(
            synthetic.offset_manifold("sphere", 400, dim - 1, AMBIENT, offset=0.0, noise=1e-4,
                                      seed=dim), 20)
        # measured (offset, centred, sphere): d=2 2.89 1.97 1.98; d=3 3.67 2.93 2.92;
        # d=4 4.31 3.79 3.83
        assert centred < offset - 0.3, (dim, offset, centred)
        assert centred == pytest.approx(sphere, abs=0.2), (dim, centred, sphere)


@pytest.fixture(scope="module")
def small_calibration():
    return dimension.calibration_table(
        dims=(1, 2, 3, 4), sample_sizes=(200, 300), noise_levels=(1e-5, 1e-3), kinds=("flat",),
        estimators=("mle",), local=False, seed=5)


def test_calibration_table_has_one_row_per_setting(small_calibration):
    table = small_calibration
    assert len(table) == 4 * 2 * 2
    assert list(table.columns) == [*dimension.CALIBRATION_COLUMNS, "mle_global"]
    assert (table["kernel"] == "cosine").all() and (table["k"] == 20).all()
    # quantiles of the per-node counts (the mean can sit below q10 when under 10% of nodes
    # keep fewer neighbours than the rest)
    assert (table["nnk_count_q10"] <= table["nnk_count_q90"]).all()
    assert table["nnk_count"].between(1, 20).all()
    again = dimension.calibration_table(dims=(2,), sample_sizes=(300,), noise_levels=(1e-3,),
                                        kinds=("flat",), estimators=("mle",), local=False, seed=5)
    row = table[(table["true_dim"] == 2) & (table["n_points"] == 300) & (table["noise"] == 1e-3)]
    # each setting's seed depends only on (seed, dim, n): reproducible alone
    assert again["nnk_count"].iloc[0] == row["nnk_count"].iloc[0]


def test_count_to_dimension_inverts_the_median_curve(small_calibration):
    curve = dimension.count_to_dimension(small_calibration)
    assert curve.monotone
    assert list(curve.table["true_dim"]) == [1, 2, 3, 4]
    medians = curve.table["count_median"].to_numpy()
    np.testing.assert_allclose(curve(medians), [1, 2, 3, 4])
    assert (curve.table["count_min"] <= medians).all()
    assert (medians <= curve.table["count_max"]).all()
    middle = (medians[1] + medians[2]) / 2
    assert 2 < curve(middle) < 3
    assert curve(0.0) == 1 and curve(100.0) == 4  # clipped to the calibrated range
    flat_curve = dimension.count_to_dimension(small_calibration, kinds=["flat"])
    pd.testing.assert_frame_equal(flat_curve.table, curve.table)


def test_a_non_monotone_curve_refuses_to_invert(small_calibration):
    shuffled = small_calibration.copy()
    shuffled["nnk_count"] = np.where(shuffled["true_dim"] == 1, 10.0, shuffled["nnk_count"])
    curve = dimension.count_to_dimension(shuffled)
    assert not curve.monotone
    with pytest.raises(ValueError, match="does not increase"):
        curve(3.0)
    with pytest.raises(ValueError, match="mixes"):
        dimension.count_to_dimension(pd.concat([small_calibration,
                                                small_calibration.assign(kernel="gaussian")]))
    with pytest.raises(ValueError, match="lacks columns"):
        dimension.count_to_dimension(small_calibration.drop(columns="nnk_count"))


def test_bad_inputs_raise_clear_errors():
    points = _flat(100, 2, seed=6)
    nan_points = points.copy()
    nan_points[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        dimension.estimate_dimension(nan_points)
    with pytest.raises(ValueError, match="too few for n_neighbors"):
        dimension.estimate_dimension(points[:15], n_neighbors=20)
    with pytest.raises(ValueError, match="duplicate rows"):
        dimension.pointwise_dimension(np.vstack([points, points[:1]]), "mle")
    with pytest.raises(ValueError, match="estimator"):
        dimension.global_dimension(points, "danco")
    with pytest.raises(ValueError, match="k"):
        dimension.nnk_neighbour_count(points, k=100)
    with pytest.raises(ValueError, match="NaN"):
        dimension.nnk_neighbour_count(nan_points, k=10)
    with pytest.raises(ValueError, match="sample size"):
        dimension.calibration_table(dims=(1,), sample_sizes=(15,), noise_levels=(1e-3,))
    with pytest.raises(ValueError, match="kind"):
        dimension.calibration_table(kinds=("cylinder",))
    with pytest.raises(ValueError, match="kind"):
        synthetic.offset_manifold("cylinder", 10, 1)


# ------------------------------------------------------------ the solver's tolerance and noise


@pytest.mark.parametrize("seed", [0, 3])
def test_the_tolerance_rule_picks_the_nnk_default_on_lines_it_was_not_tuned_on(seed):
    from sslgeom import nnk

    chosen, table = dimension.tolerance_rule(seed=seed)
    assert chosen == nnk.DEFAULT_RELATIVE_KKT_TOL
    assert set(table["k"]) == {10, 20, 30} and len(table) == 15
    # larger tolerances prune the line's far side, and more so at larger k
    counts = table.pivot(index="relative_tol", columns="k", values="mean_count")
    assert (counts.diff().dropna() <= 1e-9).all().all()
    assert counts.loc[0.1, 30] < counts.loc[0.1, 10] < 1.9


@pytest.mark.parametrize("changes, error", [({"grid": []}, ValueError), ({"grid": [1.5]}, ValueError),
                                            ({"ks": [2.5]}, TypeError), ({"ks": []}, ValueError)])
def test_the_tolerance_rule_checks_its_inputs(changes, error):
    with pytest.raises(error):
        dimension.tolerance_rule(**changes)


def test_noise_to_spacing_separates_resolved_from_noisy_manifolds():
    clean = synthetic.offset_manifold("flat", 400, 2, AMBIENT, offset=2.0, seed=1)
    spacing = np.median(np.sort(np.linalg.norm(clean[:, None] - clean[None], axis=-1), 1)[:, 1])
    ratio = dimension.noise_to_spacing(clean, 1e-3)
    assert ratio == pytest.approx(1e-3 * np.sqrt(AMBIENT) / spacing)
    # the count of a noisy plane moves once the noise nears its spacing
    counts = {noise: dimension.nnk_neighbour_count(_flat(400, 2, noise=noise, seed=1), 20)
              for noise in (1e-5, 5e-4, 1e-2)}
    ratios = {noise: dimension.noise_to_spacing(clean, noise) for noise in counts}
    assert ratios[5e-4] <= dimension.RESOLVED_NOISE_TO_SPACING < ratios[1e-2]
    assert abs(counts[5e-4] - counts[1e-5]) < 0.15 < counts[1e-2] - counts[1e-5]


def test_the_curve_uses_resolved_settings_only(small_calibration):
    resolved = dimension.count_to_dimension(small_calibration)
    everything = dimension.count_to_dimension(small_calibration, max_noise_to_spacing=None)
    assert resolved.table["n_settings"].sum() == (
        small_calibration["noise_to_spacing"] <= dimension.RESOLVED_NOISE_TO_SPACING).sum()
    assert everything.table["n_settings"].sum() == len(small_calibration)
    with pytest.raises(ValueError, match="no calibration setting has noise"):
        dimension.count_to_dimension(small_calibration, max_noise_to_spacing=1e-9)
    with pytest.raises(ValueError, match="noise_to_spacing"):
        dimension.count_to_dimension(small_calibration.drop(columns="noise_to_spacing"))
