"""Label-free statistics of a feature matrix: spectrum-based quality measures that need no labels.

* :func:`rankme` -- RankMe (Garrido et al., ICML 2023), the transfer baseline of chapter 05.
* :func:`effective_rank` -- the effective rank of Roy & Vetterli (2007), the collapse check of the
  zoo manifest (chapter 01).
* :func:`eigenspectrum` and :func:`alpha_req` -- the covariance eigenspectrum and its power-law
  decay exponent (alpha-ReQ, Agrawal et al., NeurIPS 2022).

RankMe and the effective rank are both ``exp`` of the entropy of normalised singular values, but
they are not the same number: RankMe takes the singular values of the *uncentred* feature matrix and
adds ``eps`` to each normalised value (as its paper does), the effective rank those of the *centred*
matrix, without ``eps``. Non-negative features (pooled after a ReLU) have a large mean, which gives
the uncentred matrix one dominant singular value: RankMe is then well below the effective rank.
Each number is kept with the definition its chapter cites. Label-using measures (kNN accuracy, the
linear probe) live in :mod:`sslgeom.evaluation`.
"""

from __future__ import annotations

import numpy as np

from .validation import check_features

__all__ = ["rankme", "effective_rank", "eigenspectrum", "alpha_req"]


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


def effective_rank(features: np.ndarray) -> float:
    """Effective rank (Roy & Vetterli, 2007) of centred features.

    ``exp(H(p))`` with ``p`` the singular values of the centred matrix divided by their sum and
    ``H`` the Shannon entropy: ``dim`` for isotropic features, 1 for features on a line, and close to
    1 for a collapsed representation. Unlike :func:`rankme`, the features are centred and no ``eps``
    is added.

    Parameters
    ----------
    features : array, shape (n_points, dim)
        ``n_points >= 2``.

    Returns
    -------
    float
        A value in ``[1, min(n_points - 1, dim)]``; 0.0 if all points coincide.
    """
    array = check_features(features)
    singular = np.linalg.svd(array - array.mean(axis=0), compute_uv=False)
    total = singular.sum()
    if total <= 1e-12 * max(1.0, np.abs(array).max()):
        return 0.0
    p = singular / total
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


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
