"""Label-free and source-domain predictors of transfer, used as baselines for the MGMs.

* :func:`rankme` -- effective rank of the feature matrix (Garrido et al., ICML 2023).
* :func:`alpha_req` -- power-law decay exponent of the feature covariance eigenspectrum
  (alpha-ReQ, Agrawal et al., NeurIPS 2022).
* :func:`knn_accuracy` -- accuracy of a cosine k-nearest-neighbour classifier on the source
  domain (Fashion-MNIST), the usual "kNN monitor" of SSL training.
"""

from __future__ import annotations

import numpy as np

__all__ = ["check_features", "rankme", "eigenspectrum", "alpha_req", "knn_accuracy"]


def check_features(features: np.ndarray, name: str = "features", min_rows: int = 2) -> np.ndarray:
    """Validate a feature matrix and return it as float64.

    Parameters
    ----------
    features : array, shape (n_points, dim)
    name : str
        Used in error messages.
    min_rows : int
        Minimum number of rows required.

    Raises
    ------
    ValueError
        If the array is not 2-D, has too few rows, or holds NaN or infinite values.
    """
    array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array (n_points, dim); got shape {array.shape}. "
            "Reshape or stack the per-image features first."
        )
    if array.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows; got {array.shape[0]}.")
    bad = ~np.isfinite(array)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        raise ValueError(
            f"{name} contains NaN or infinite values in {len(rows)} of {array.shape[0]} rows "
            f"(first: {rows[:5].tolist()}). Check the model's forward pass or the feature cache "
            "(delete the stale cache entry and recompute)."
        )
    return array


def rankme(features: np.ndarray, eps: float = 1e-7) -> float:
    """Effective rank of a feature matrix (RankMe).

    With singular values :math:`\\sigma_k` of the (uncentred) feature matrix,
    :math:`p_k = \\sigma_k / \\lVert\\sigma\\rVert_1 + \\epsilon` and
    :math:`\\mathrm{RankMe} = \\exp(-\\sum_k p_k \\log p_k)`.

    Parameters
    ----------
    features : array, shape (n_points, dim)
    eps : float
        Small constant added to each normalised singular value, as in the original definition.

    Returns
    -------
    float
        A value between 1 (rank one) and ``min(n_points, dim)`` (flat spectrum).
    """
    array = check_features(features)
    singular = np.linalg.svd(array, compute_uv=False)
    total = singular.sum()
    if total <= 0:
        raise ValueError("features are all zero; RankMe is undefined for a zero matrix.")
    p = singular / total + eps
    return float(np.exp(-np.sum(p * np.log(p))))


def eigenspectrum(features: np.ndarray) -> np.ndarray:
    """Eigenvalues of the feature covariance, in decreasing order.

    Parameters
    ----------
    features : array, shape (n_points, dim)

    Returns
    -------
    array, shape (min(n_points - 1, dim),)
    """
    array = check_features(features)
    centred = array - array.mean(axis=0, keepdims=True)
    singular = np.linalg.svd(centred, compute_uv=False)
    eigen = singular**2 / (array.shape[0] - 1)
    return eigen[: min(array.shape[0] - 1, array.shape[1])]


def alpha_req(
    features: np.ndarray | None = None,
    *,
    eigenvalues: np.ndarray | None = None,
    fit_range: tuple[int, int] | None = None,
    rel_tol: float = 1e-10,
) -> float:
    """Power-law exponent alpha of the covariance eigenspectrum, :math:`\\lambda_i \\propto i^{-\\alpha}`.

    Least-squares fit of :math:`\\log \\lambda_i = c - \\alpha \\log i` over ranks ``i`` in
    ``fit_range`` (1-based, inclusive start, exclusive stop). Agrawal et al. relate alpha close
    to 1 to good generalisation.

    Parameters
    ----------
    features : array, shape (n_points, dim), optional
        Feature matrix; its covariance eigenvalues are used.
    eigenvalues : array, shape (n_eigen,), optional
        Eigenvalues given directly (any order); exactly one of ``features``/``eigenvalues``.
    fit_range : (int, int), optional
        Ranks to fit. Default: all eigenvalues above ``rel_tol`` times the largest.
    rel_tol : float
        Eigenvalues below this fraction of the largest are numerical zeros and are dropped.

    Returns
    -------
    float
        The decay exponent alpha (positive for a decaying spectrum).
    """
    if (features is None) == (eigenvalues is None):
        raise ValueError("pass exactly one of `features` or `eigenvalues`.")
    if eigenvalues is None:
        eigen = eigenspectrum(features)
    else:
        eigen = np.sort(np.asarray(eigenvalues, dtype=np.float64))[::-1]
        if not np.all(np.isfinite(eigen)):
            raise ValueError("eigenvalues contain NaN or infinite values.")
    if eigen.size == 0 or eigen[0] <= 0:
        raise ValueError("the spectrum is empty or zero; alpha-ReQ needs a non-zero covariance.")
    ranks = np.arange(1, eigen.size + 1)
    keep = eigen > rel_tol * eigen[0]
    if fit_range is not None:
        start, stop = fit_range
        if not 1 <= start < stop:
            raise ValueError(f"fit_range must satisfy 1 <= start < stop; got {fit_range}.")
        keep &= (ranks >= start) & (ranks < stop)
    if keep.sum() < 2:
        raise ValueError(
            f"only {int(keep.sum())} eigenvalue(s) in the fit range; need at least 2. "
            "Use more points or dimensions, or widen fit_range."
        )
    slope, _ = np.polyfit(np.log(ranks[keep]), np.log(eigen[keep]), deg=1)
    return float(-slope)


def knn_accuracy(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    k: int = 20,
    block_size: int = 2048,
) -> float:
    """Source-domain cosine kNN accuracy, the label-using baseline.

    The same protocol as the zoo manifest's kNN column: see :func:`sslgeom.probe.knn_accuracy`
    (majority vote over ``k`` cosine neighbours, ties to the smallest label). Features are
    ``(n_train, dim)`` and ``(n_test, dim)``; labels are non-negative integers.
    """
    from .probe import knn_accuracy as probe_knn_accuracy

    return probe_knn_accuracy(
        train_features, train_labels, test_features, test_labels, k=k, block_size=block_size
    )
