"""The one permutation p-value, against a direct count and on exchangeable data."""

import numpy as np
import pytest

from sslgeom.stats import permutation_pvalue


def test_counts_ties_and_exceedances_with_the_plus_one_correction():
    null = np.array([0.1, 0.5, 0.5, 0.9])
    assert permutation_pvalue(0.5, null) == pytest.approx((1 + 3) / 5)
    assert permutation_pvalue(1.0, null) == pytest.approx(1 / 5)  # the floor 1/(B+1)
    assert permutation_pvalue(0.0, null) == pytest.approx(1.0)


def test_round_off_ties_count_as_ties_and_nan_as_smaller():
    observed = 0.3
    null = np.array([0.1 + 0.2, np.nan, 0.2])  # 0.1 + 0.2 = 0.30000000000000004 > 0.3; 0.3 - 1e-17 would not be
    assert permutation_pvalue(observed, null) == pytest.approx(2 / 4)
    assert permutation_pvalue(observed, np.array([observed * (1 - 1e-14)])) == pytest.approx(1.0)


def test_columns_are_tested_separately():
    null = np.array([[0.0, 5.0], [1.0, 6.0], [2.0, 7.0]])
    np.testing.assert_allclose(permutation_pvalue(np.array([1.5, 10.0]), null), [2 / 4, 1 / 4])


def test_uniform_under_the_null():
    # Statistic = mean of group A minus group B on exchangeable data: p must be (about) uniform,
    # so the rejection rate at 5% is 5% within sampling error.
    rng = np.random.default_rng(0)
    rejections = 0
    n_repeats = 400
    for _ in range(n_repeats):
        values = rng.normal(size=20)
        labels = np.repeat([0, 1], 10)
        observed = values[labels == 0].mean() - values[labels == 1].mean()
        null = [values[p == 0].mean() - values[p == 1].mean() for p in (rng.permutation(labels) for _ in range(99))]
        rejections += permutation_pvalue(observed, np.array(null)) <= 0.05
    rate = rejections / n_repeats
    assert abs(rate - 0.05) < 3 * np.sqrt(0.05 * 0.95 / n_repeats)


def test_empty_null_is_refused():
    with pytest.raises(ValueError, match="at least one"):
        permutation_pvalue(0.1, np.array([]))
