"""Reliability of measured scores (sslgeom.reliability), against published values and simulations."""

import numpy as np
import pytest

from sslgeom import reliability


def test_icc_against_shrout_fleiss_1979():
    # Shrout & Fleiss (1979), table 2: 6 targets x 4 judges; published ICC(1,1) .17, ICC(2,1) .29,
    # ICC(1,4) .44, ICC(2,4) .62
    table = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]])
    assert reliability.icc(table, "1") == pytest.approx(0.17, abs=0.005)
    assert reliability.icc(table, "2") == pytest.approx(0.29, abs=0.005)
    assert reliability.icc(table, "1k") == pytest.approx(0.44, abs=0.005)
    assert reliability.icc(table, "2k") == pytest.approx(0.62, abs=0.005)
    # by hand from the mean squares: MSR = 11.24, MSW = 6.26
    assert reliability.icc(table, "1k") == pytest.approx((11.2417 - 6.2639) / 11.2417, abs=1e-4)
    with pytest.raises(ValueError, match="unknown ICC kind"):
        reliability.icc(table, "3")


def test_reliability_of_accuracies_from_per_example_correctness():
    rng = np.random.default_rng(1)
    ability = np.linspace(0.5, 0.9, 12)
    distinct = rng.random((12, 2000)) < ability[:, None]
    same = rng.random((12, 2000)) < 0.7
    high, splits = reliability.split_half_reliability(distinct, n_splits=50, seed=0)
    assert high > 0.95 and splits.shape == (50,)
    assert abs(reliability.split_half_reliability(same, n_splits=50, seed=0)[0]) < 0.3
    share, se = reliability.bootstrap_reliability(distinct, n_boot=200, seed=0)
    assert share > 0.95 and se.shape == (12,)
    # binomial SE sqrt(p (1 - p) / n)
    np.testing.assert_allclose(se, np.sqrt(distinct.mean(1) * (1 - distinct.mean(1)) / 2000), rtol=0.25)
    assert reliability.bootstrap_reliability(same, n_boot=200, seed=0)[0] < 0.5


def test_noise_reliability_agrees_with_the_bootstrap_over_test_examples():
    # Simulated per-example correctness: 15 models with true accuracies spread over 0.70-0.85,
    # 600 test examples each. The analytic (binomial) form and the bootstrap measure the same thing.
    rng = np.random.default_rng(3)
    truth = np.linspace(0.70, 0.85, 15)
    correct = (rng.random((15, 600)) < truth[:, None]).astype(float)
    accuracy = correct.mean(axis=1)
    analytic = reliability.noise_reliability(accuracy, reliability.binomial_standard_error(accuracy, 600))
    bootstrap, _ = reliability.bootstrap_reliability(correct, n_boot=2000, seed=0)
    assert abs(analytic - bootstrap) < 0.03, (analytic, bootstrap)
    # and both are near the true share: var(truth) / (var(truth) + mean binomial variance)
    true_var = truth.var(ddof=1)
    expected = true_var / (true_var + np.mean(truth * (1 - truth) / 600))
    assert abs(analytic - expected) < 0.1
    # pure noise: every model has the same accuracy, reliability about zero or below
    same = (rng.random((15, 600)) < 0.8).astype(float).mean(axis=1)
    assert reliability.noise_reliability(same, reliability.binomial_standard_error(same, 600)) < 0.5
    assert np.isnan(reliability.noise_reliability([0.5, 0.5], [0.01, 0.01]))
    with pytest.raises(ValueError):
        reliability.binomial_standard_error([1.2], 10)
