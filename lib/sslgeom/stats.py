"""Small statistical helpers shared by the paradigm and the prediction statistics."""

from __future__ import annotations

import numpy as np

__all__ = ["TIE_TOLERANCE", "permutation_pvalue"]

# Null values within this (relative) distance of the observed value count as ties, and ties count
# against the observed value: a statistic recomputed on a relabelling that happens to equal the
# observed one must not come out "smaller" by float round-off.
TIE_TOLERANCE = 1e-12


def permutation_pvalue(observed, null) -> np.ndarray | float:
    """One-sided permutation p-value ``(1 + #{null >= observed}) / (1 + n_permutations)``.

    Parameters
    ----------
    observed : float or array, shape (n_statistics,)
        The statistic(s) on the real labels; larger means stronger evidence.
    null : array, shape (n_permutations,) or (n_permutations, n_statistics)
        The same statistic(s) on permuted labels. NaN null values (a statistic undefined on a
        permutation) count as smaller than any observed value.

    Returns
    -------
    float or numpy.ndarray, shape (n_statistics,)
        Never below ``1 / (1 + n_permutations)``, the floor of a permutation test.
    """
    observed_array = np.asarray(observed, dtype=np.float64)
    null = np.nan_to_num(np.asarray(null, dtype=np.float64), nan=-np.inf)
    if null.ndim == 0 or len(null) == 0:
        raise ValueError("null must hold at least one permuted statistic (n_permutations >= 1).")
    tolerance = TIE_TOLERANCE * np.maximum(1.0, np.abs(observed_array))
    exceed = (null >= observed_array - tolerance).sum(axis=0)
    p_value = (1.0 + exceed) / (1.0 + len(null))
    return float(p_value) if np.ndim(p_value) == 0 else p_value
