"""Tests of the label-free statistics (sslgeom.baselines) against hand-computed values."""

import numpy as np
import pytest

from sslgeom import baselines


def _matrix_with_singular_values(singular, n_rows=40, seed=0):
    """A (n_rows, len(singular)) matrix whose singular values are exactly ``singular``."""
    rng = np.random.default_rng(seed)
    left, _ = np.linalg.qr(rng.normal(size=(n_rows, len(singular))))
    right, _ = np.linalg.qr(rng.normal(size=(len(singular), len(singular))))
    return left @ np.diag(singular) @ right.T


def _matrix_with_covariance_eigenvalues(eigenvalues, n_rows=200, seed=0):
    """Centred features whose covariance eigenvalues (ddof=1) are exactly ``eigenvalues``."""
    rng = np.random.default_rng(seed)
    raw = rng.normal(size=(n_rows, len(eigenvalues)))
    raw -= raw.mean(axis=0)
    left, _ = np.linalg.qr(raw)  # orthonormal columns, each orthogonal to the all-ones vector
    right, _ = np.linalg.qr(rng.normal(size=(len(eigenvalues), len(eigenvalues))))
    return left @ np.diag(np.sqrt((n_rows - 1) * np.asarray(eigenvalues))) @ right.T


def test_rankme_matches_hand_computed_value():
    features = _matrix_with_singular_values([3.0, 1.0])
    p = np.array([0.75, 0.25]) + 1e-7
    expected = np.exp(-np.sum(p * np.log(p)))  # about 1.7548
    assert baselines.rankme(features) == pytest.approx(expected, rel=1e-9)
    assert expected == pytest.approx(1.75477, abs=1e-4)


def test_rankme_of_flat_and_rank_one_spectra():
    assert baselines.rankme(_matrix_with_singular_values(np.ones(8))) == pytest.approx(8.0, rel=1e-5)
    rank_one = np.outer(np.arange(1.0, 11.0), np.ones(6))
    assert baselines.rankme(rank_one) == pytest.approx(1.0, abs=1e-4)


def test_alpha_req_recovers_power_law_exponent():
    ranks = np.arange(1, 31)
    for alpha in (0.5, 1.0, 2.0):
        assert baselines.alpha_req(eigenvalues=ranks ** -alpha) == pytest.approx(alpha, rel=1e-10)
    features = _matrix_with_covariance_eigenvalues(ranks**-1.3)
    assert baselines.alpha_req(features) == pytest.approx(1.3, rel=1e-6)
    assert np.allclose(baselines.eigenspectrum(features)[:30], ranks**-1.3)


def test_alpha_req_fit_range_uses_only_those_ranks():
    # exponent 1 on ranks 1..9, exponent 3 beyond: fitting ranks 1..9 must see only the first law
    ranks = np.arange(1, 31, dtype=float)
    eigen = np.where(ranks < 10, ranks**-1.0, 10.0**2 * ranks**-3.0 / 10.0)
    assert baselines.alpha_req(eigenvalues=eigen, fit_range=(1, 10)) == pytest.approx(1.0)
    assert baselines.alpha_req(eigenvalues=eigen, fit_range=(10, 31)) == pytest.approx(3.0)


def test_effective_rank_matches_hand_computed_value():
    # centred features with singular values 3 and 1: p = (0.75, 0.25), exp(H) without any eps
    features = _matrix_with_covariance_eigenvalues([9.0 / 199, 1.0 / 199])
    assert np.linalg.svd(features - features.mean(axis=0), compute_uv=False) == pytest.approx([3.0, 1.0])
    expected = np.exp(-(0.75 * np.log(0.75) + 0.25 * np.log(0.25)))  # about 1.7548
    assert baselines.effective_rank(features) == pytest.approx(expected, rel=1e-12)
    assert baselines.effective_rank(_matrix_with_covariance_eigenvalues(np.ones(6))) == pytest.approx(6.0)
    assert baselines.effective_rank(np.ones((5, 3))) == 0.0  # all points coincide


def test_effective_rank_is_centred_and_rankme_is_not():
    """The two definitions differ: a large common offset gives the uncentred matrix one dominant
    singular value, which lowers RankMe but leaves the effective rank unchanged."""
    features = _matrix_with_covariance_eigenvalues(np.ones(6))
    shifted = features + 10.0
    assert baselines.effective_rank(shifted) == pytest.approx(baselines.effective_rank(features), rel=1e-9)
    assert baselines.rankme(features) == pytest.approx(6.0, rel=1e-5)  # centred input: RankMe = erank
    # the offset is orthogonal to the centred columns: shifted' shifted = 199 I + 100 * 200 * 11', so the
    # singular values are sqrt(199 + 20000 * 6) once and sqrt(199) five times
    singular = np.sqrt([199 + 20000 * 6] + [199] * 5)
    p = singular / singular.sum() + 1e-7
    assert baselines.rankme(shifted) == pytest.approx(np.exp(-np.sum(p * np.log(p))), rel=1e-9)
    assert baselines.rankme(shifted) < 2.1 < 6.0


def test_bad_input_raises_clear_errors():
    features = np.ones((10, 4))
    features[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        baselines.rankme(features)
    with pytest.raises(ValueError, match="2-D"):
        baselines.rankme(np.ones(5))
    with pytest.raises(ValueError, match="exactly one"):
        baselines.alpha_req()
    with pytest.raises(ValueError, match="at least 2 rows"):
        baselines.effective_rank(np.ones((1, 3)))
