"""Intrinsic dimension: established estimators beside the NNK neighbour count, and its calibration.

The manifold graph metrics read the NNK neighbour count as "a proxy for the local intrinsic
dimension" (:mod:`sslgeom.mgm`). This module puts numbers on that claim:

- :func:`estimate_dimension` runs established estimators from scikit-dimension (``skdim``; not
  rewritten here) on one feature matrix and returns a tidy table: TwoNN (Facco et al. 2017),
  the Levina-Bickel maximum likelihood estimator (``skdim.id.MLE``) and PCA (``skdim.id.lPCA``,
  Fukunaga-Olsen rule), each globally and, where ``skdim`` offers it, locally (one estimate per
  point from its ``n_neighbors`` nearest neighbours; local PCA is the PCA rule applied to
  each neighbourhood);
- :func:`nnk_neighbour_count` is the mean NNK neighbour count of a feature matrix;
- :func:`calibration_table` measures both on synthetic manifolds of known dimension (flat
  patches, spheres, tori; see :func:`sslgeom.synthetic.offset_manifold`) over sample sizes and
  noise levels, and :func:`count_to_dimension` turns the table into a calibration curve from
  count to dimension, with its spread.

Why the synthetic data are offset from the origin: the cosine kernel L2-normalises rows, which
maps a centred ``d``-flat onto the ``(d-1)``-sphere (one dimension lost), and the kernel
``(1 + cos) / 2`` is linear in the normalised rows plus a constant, so its rank, and with it the
neighbour count, is capped by the span of the data plus one. An offset manifold keeps its
dimension after normalisation; a little noise keeps the kernel matrices from being exactly
rank deficient (where the count is set by rounding, not by geometry).

What the count counts. The NNK graphs stop each node's solver at a tolerance relative to the
node's own kernel scale (:func:`sslgeom.nnk.nnk_graph`, default 0.01 of ``mean_j (1 - K_ij)``,
chosen by :func:`tolerance_rule`), so the count does not change when the features are more or
less concentrated, and float32 and float64 graphs give the same count. The count reads the
dimension at the scale of a node's neighbours: where the noise is as large as the sampling
spacing, the neighbours see the noise's dimensions, and so does the count (as TwoNN does).
:func:`noise_to_spacing` measures this (noise norm over the median nearest-neighbour distance of
the clean points); measured on the default calibration, noise moves the count by at most 0.12
neighbours up to a ratio of 0.1 (:data:`RESOLVED_NOISE_TO_SPACING`, the settings the curve
uses), by up to 0.47 between 0.15 and 0.2, and by several neighbours past 0.5 (a line with noise
1e-2 keeps about 8 of 20 candidates).

Measured with the defaults (``calibration_table()``: flat patches and spheres of dimension 1-8,
n = 200, 400, 800, noise 1e-4, 1e-3, 1e-2, 32 coordinates, offset 2, k = 20; 94 of the 144
settings resolved), median count per true dimension 1..8 over the resolved settings, with its
range:

- cosine kernel (the book's graphs; float32 and float64 agree): 1.96 2.91 3.70 4.43 5.00 5.53
  5.84 6.30; ranges 1.96 (one setting), 2.82-2.94, 3.60-3.82, 4.23-4.59, 4.78-5.30,
  5.14-5.87, 5.62-6.36, 6.06-6.80. About ``d + 1`` for ``d = 1-3`` (an interior node is
  enclosed by a simplex of ``d + 1`` neighbours), then a gain of 0.3-0.6 per dimension, so a
  count reads as a dimension to about +-1 above 4; sample size (200 to 800) moves dimensions
  5-8 by 0.3-0.5;
- Gaussian kernel: 1.94 3.73 5.56 7.13 8.70 9.65 10.70 11.32 (about ``2 d`` for ``d = 2-4``,
  then bending towards k);
- flat tori count higher than flat patches of the same dimension (cosine, n = 400: 5.7 against
  4.3 at d = 4, 8.9 against 6.2 at d = 8), and a centred flat patch under the cosine kernel
  counts as the sphere one dimension lower (``tests/test_dimension.py``).

The estimators on the same data: local PCA is exact on flat patches and spheres of every
dimension up to noise 1e-3 but counts a torus's extrinsic curvature (a 3-torus reads 5, an
8-torus 12) and noise 1e-2 on a line (14); global PCA gives the linear span (d + 1 for a sphere,
2 d for a torus). TwoNN's median over sample sizes is within 0.4 of the truth for d = 2-4 at
noise up to 1e-3 (within 0.5 on tori up to d = 8), falls to 6.7 at d = 8 on flat patches, and
reads noise at the nearest-neighbour scale as dimension (a line with noise 1e-3: 6.3; 1e-2: 15).
The Levina-Bickel MLE (20 neighbours) is the most robust to noise (a line with noise 1e-3: 1.3)
but underestimates flat patches increasingly (6.3 at d = 8) and overestimates tori (10 at d =
8).

Typical use::

    from sslgeom import dimension
    dimension.estimate_dimension(features)                 # estimator, scope, dimension, q10, q90
    table = dimension.calibration_table(k=20, kernel="cosine")
    curve = dimension.count_to_dimension(table)
    curve.table                                            # count per true dimension, spread
    curve(dimension.nnk_neighbour_count(features))         # count read as a dimension
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from sslgeom import nnk, synthetic
from sslgeom.validation import check_choice, check_features, check_int

__all__ = [
    "ESTIMATORS",
    "CALIBRATION_COLUMNS",
    "CalibrationCurve",
    "estimate_dimension",
    "pointwise_dimension",
    "global_dimension",
    "nnk_neighbour_count",
    "calibration_table",
    "count_to_dimension",
    "noise_to_spacing",
    "RESOLVED_NOISE_TO_SPACING",
    "TOLERANCE_GRID",
    "tolerance_rule",
]

#: Estimators run by :func:`estimate_dimension`, by their names here.
ESTIMATORS: tuple[str, ...] = ("twonn", "mle", "lpca")

#: Columns of :func:`calibration_table` before the estimator columns.
CALIBRATION_COLUMNS: tuple[str, ...] = (
    "true_dim", "kind", "n_points", "noise", "noise_to_spacing", "kernel", "k", "nnk_count",
    "nnk_count_q10", "nnk_count_q90",
)

#: A manifold counts as resolved at the scale of its neighbours when the norm of its noise is at
#: most this fraction of the median nearest-neighbour distance of its noise-free points
#: (:func:`count_to_dimension` calibrates on such settings only).
RESOLVED_NOISE_TO_SPACING = 0.1


def noise_to_spacing(clean_points: np.ndarray, noise: float) -> float:
    """Norm of isotropic noise over the median nearest-neighbour distance of the clean points.

    Parameters
    ----------
    clean_points : np.ndarray, shape (n_points, ambient_dim)
        The manifold's points before noise.
    noise : float
        Standard deviation per coordinate; its expected norm is ``noise * sqrt(ambient_dim)``.

    Returns
    -------
    float
        Below about 0.1 the noise is small against the sampling spacing and a node's
        neighbours see the manifold's own dimension; near 1 and above they see the noise's.
    """
    from sklearn.neighbors import NearestNeighbors

    distances, _ = NearestNeighbors(n_neighbors=2).fit(clean_points).kneighbors(clean_points)
    return float(noise * np.sqrt(clean_points.shape[1]) / np.median(distances[:, 1]))


def _skdim_estimator(name: str):
    """A fresh scikit-dimension estimator with its library defaults (lPCA made quiet)."""
    import skdim  # imported lazily: it pulls in scikit-learn, slow to import

    if name == "twonn":
        return skdim.id.TwoNN()  # linear fit of Facco et al., 10% largest ratios discarded
    if name == "mle":
        return skdim.id.MLE()  # Levina-Bickel; global value = harmonic mean (MacKay-Ghahramani)
    return skdim.id.lPCA(verbose=False)  # Fukunaga-Olsen: eigenvalues > 5% of the largest


def validated_by_caller():
    """scikit-learn's configuration for estimator calls on inputs this module has already checked.

    skdim fits one estimator per neighbourhood, and each fit re-validates its input and its
    parameters; on the book's sizes that is about half the time of a pointwise estimate. The
    inputs are checked once (finite rows, no duplicates) before these calls, so the repeated
    checks are switched off (``assume_finite``, ``skip_parameter_validation``); the estimates are
    bit for bit the same (``tests/test_dimension.py``).
    """
    import sklearn

    return sklearn.config_context(assume_finite=True, skip_parameter_validation=True)


def _check_points(features, n_neighbors: int, name: str = "features") -> np.ndarray:
    """Finite float64 rows, enough of them for ``n_neighbors``, without duplicates.

    Duplicate rows have a zero nearest-neighbour distance, which TwoNN drops with a warning and
    the maximum likelihood estimator turns into a dimension of 0.
    """
    n_neighbors = check_int(n_neighbors, "n_neighbors", minimum=2)
    points = check_features(features, name)
    if points.shape[0] < n_neighbors + 2:
        raise ValueError(
            f"{name} has {points.shape[0]} points, too few for n_neighbors={n_neighbors}: the "
            f"estimators need at least n_neighbors + 2 = {n_neighbors + 2}. Pass more points or "
            "a smaller n_neighbors."
        )
    if points.shape[1] < 2:
        raise ValueError(f"{name} has one column; the estimators need at least 2 coordinates.")
    if len(np.unique(points, axis=0)) < len(points):
        raise ValueError(
            f"{name} has duplicate rows; the nearest-neighbour estimators divide by the distance "
            "to the nearest neighbour. Drop duplicates (np.unique(features, axis=0)) first."
        )
    return points


def pointwise_dimension(features, estimator: str, n_neighbors: int = 20) -> np.ndarray:
    """One dimension estimate per point, from the point's ``n_neighbors`` nearest neighbours.

    Parameters
    ----------
    features : array-like, shape (n_points, dim)
    estimator : {"twonn", "mle", "lpca"}
        ``"mle"``: the Levina-Bickel estimate of each neighbourhood (``skdim.id.MLE``);
        ``"twonn"``, ``"lpca"``: the global estimator applied to each point's neighbourhood
        (``fit_pw`` of scikit-dimension; the neighbourhood excludes the point itself).
    n_neighbors : int
        Neighbourhood size, at least 2 and at most ``n_points - 2``.

    Returns
    -------
    np.ndarray, shape (n_points,)
    """
    check_choice(estimator, ESTIMATORS, "estimator")
    points = _check_points(features, n_neighbors)
    model = _skdim_estimator(estimator)
    with warnings.catch_warnings(), validated_by_caller():
        warnings.simplefilter("ignore", RuntimeWarning)  # 0/0 in TwoNN's fit on tiny clouds
        if estimator == "mle":
            return np.asarray(model.fit(points, n_neighbors=n_neighbors).dimension_pw_, float)
        return np.asarray(model.fit_pw(points, n_neighbors=n_neighbors).dimension_pw_, float)


def global_dimension(features, estimator: str, n_neighbors: int = 20) -> float:
    """One dimension estimate for the whole point cloud.

    Parameters
    ----------
    features : array-like, shape (n_points, dim)
    estimator : {"twonn", "mle", "lpca"}
        ``"twonn"``: TwoNN on all points; ``"mle"``: harmonic mean of the Levina-Bickel
        estimates of every ``n_neighbors`` neighbourhood (skdim's ``comb="mle"``);
        ``"lpca"``: the Fukunaga-Olsen rule on the PCA of all points (a linear dimension:
        a curved manifold counts its ambient span).
    n_neighbors : int
        Used by ``"mle"`` only (validated for all, so the three see the same inputs).

    Returns
    -------
    float
    """
    check_choice(estimator, ESTIMATORS, "estimator")
    points = _check_points(features, n_neighbors)
    model = _skdim_estimator(estimator)
    if estimator == "mle":
        return float(model.fit(points, n_neighbors=n_neighbors).dimension_)
    return float(model.fit(points).dimension_)


def estimate_dimension(
    features,
    estimators: Sequence[str] = ESTIMATORS,
    *,
    n_neighbors: int = 20,
    local: bool = True,
) -> pd.DataFrame:
    """Intrinsic dimension of a point cloud by established estimators, as a tidy table.

    Parameters
    ----------
    features : array-like, shape (n_points, dim)
        No NaN or infinite values, no duplicate rows, at least ``n_neighbors + 2`` points.
    estimators : sequence of {"twonn", "mle", "lpca"}
    n_neighbors : int
        Neighbourhood size of the local estimates (and of the global MLE). The default, 20, is
        the book's NNK ``k``: the local estimators then see the NNK candidates.
    local : bool
        Also compute the pointwise estimates (slower: TwoNN and PCA refit per point).

    Returns
    -------
    pandas.DataFrame
        One row per (estimator, scope) with columns ``estimator``, ``scope`` ("global" or
        "local"), ``dimension`` (the global estimate, or the median of the pointwise ones),
        ``q10``, ``q90`` (quantiles of the pointwise estimates; NaN for global rows),
        ``n_neighbors``.
    """
    estimators = list(estimators)
    for name in estimators:
        check_choice(name, ESTIMATORS, "estimator")
    points = _check_points(features, n_neighbors)
    rows = []
    for name in estimators:
        rows.append({"estimator": name, "scope": "global",
                     "dimension": global_dimension(points, name, n_neighbors),
                     "q10": np.nan, "q90": np.nan, "n_neighbors": n_neighbors})
        if local:
            values = pointwise_dimension(points, name, n_neighbors)
            rows.append({"estimator": name, "scope": "local",
                         "dimension": float(np.nanmedian(values)),
                         "q10": float(np.nanquantile(values, 0.1)),
                         "q90": float(np.nanquantile(values, 0.9)), "n_neighbors": n_neighbors})
    return pd.DataFrame(rows)


def nnk_neighbour_count(
    features, k: int = 20, kernel: str = "cosine", *, quantiles: bool = False, **nnk_kwargs
) -> float | tuple[float, float, float]:
    """Mean NNK neighbour count of a point cloud (the count :mod:`sslgeom.mgm` reports per node).

    Parameters
    ----------
    features : array-like, shape (n_points, dim)
    k : int
        Candidates per node, ``1 <= k < n_points``.
    kernel : {"cosine", "gaussian"}
    quantiles : bool
        Also return the 10% and 90% quantiles of the per-node counts.
    **nnk_kwargs
        Passed to :func:`sslgeom.nnk.nnk_graph`; the default ``duplicates="ridge"`` is the one the
        geometry table uses (:mod:`sslgeom.geometry`), as is the default float32 precision.

    Returns
    -------
    float, or (mean, q10, q90)
    """
    nnk_kwargs.setdefault("duplicates", "ridge")
    counts = nnk.nnk_graph(features, k=k, kernel=kernel, **nnk_kwargs).n_neighbors
    mean = float(counts.mean())
    if quantiles:
        return mean, float(np.quantile(counts, 0.1)), float(np.quantile(counts, 0.9))
    return mean


#: Relative KKT tolerances :func:`tolerance_rule` chooses from (half decades).
TOLERANCE_GRID: tuple[float, ...] = (0.001, 0.003, 0.01, 0.03, 0.1)


def tolerance_rule(
    grid: Sequence[float] = TOLERANCE_GRID,
    ks: Sequence[int] = (10, 20, 30),
    *,
    n_points: int = 400,
    noise: float = 1e-5,
    min_count: float = 1.9,
    ambient_dim: int = 32,
    seed: int = 0,
) -> tuple[float, pd.DataFrame]:
    """The rule that sets the NNK graphs' relative KKT tolerance, and what it measured.

    A nearly noise-free line (an offset flat of dimension 1, noise far below its spacing) has
    one NNK neighbour on each side of every interior node when solved exactly. The tolerance
    decides how small a candidate's gain may be and still count, so it sets the scale below
    which structure counts as noise: larger values ignore more noise, too large ones prune the
    line's far side. The rule takes the **largest** value of ``grid`` at which the line keeps
    both sides, a mean count of at least ``min_count``, at every ``k`` of ``ks`` (the far side's
    gain relative to the mean kernel distance shrinks as ``k`` grows: about
    ``24 / ((k/2 + 1)(k + 1))`` on an evenly spaced line, 0.10 at ``k = 20``). The default ``ks``
    are the book's: 10 for augmentation curves, 20 for semantic manifolds, and 10 and 30 in
    chapter 04's sensitivity variants. Measured on four lines (seeds 0-3): the rule picks 0.01
    on each; at ``k = 50``, outside the book's range, 0.01 keeps both sides at 1.87-1.91.

    Parameters
    ----------
    grid : sequence of float
        Candidate relative tolerances.
    ks : sequence of int
        Candidate counts the rule must hold for.
    n_points, noise, ambient_dim, seed
        The line (:func:`sslgeom.synthetic.offset_manifold`, offset 2); the default noise is
        about 0.02-0.03 of the sampling spacing (:func:`noise_to_spacing`).
    min_count : float
        Mean count that counts as "both sides" (interior nodes have 2, the two ends 1).

    Returns
    -------
    chosen : float
        The largest tolerance that passes (``nan`` if none does).
    table : pandas.DataFrame
        One row per ``(relative_tol, k)``: ``mean_count`` and ``passes``.
    """
    from sslgeom.qp import check_relative_tol

    grid = [check_relative_tol(tol) for tol in grid]
    ks = [check_int(k, "each k of ks", minimum=1) for k in ks]
    if not grid or not ks:
        raise ValueError("tolerance_rule needs at least one tolerance in grid and one k in ks.")
    line = synthetic.offset_manifold("flat", check_int(n_points, "n_points", minimum=max(ks) + 2),
                                     1, ambient_dim, offset=2.0, noise=float(noise), seed=seed)
    rows = [{"relative_tol": float(tol), "k": int(k),
             "mean_count": nnk_neighbour_count(line, int(k), "cosine", kkt_tol=float(tol))}
            for tol in grid for k in ks]
    table = pd.DataFrame(rows)
    table["passes"] = table["mean_count"] >= min_count
    passing = table.groupby("relative_tol")["passes"].all()
    chosen = float(passing[passing].index.max()) if passing.any() else float("nan")
    return chosen, table


def _setting_seed(seed: int, *parts: int) -> list[int]:
    """A seed sequence for one calibration setting, so each setting is reproducible alone."""
    return [int(seed), *(int(p) for p in parts)]


def calibration_table(
    dims: Sequence[int] = tuple(range(1, 9)),
    sample_sizes: Sequence[int] = (200, 400, 800),
    noise_levels: Sequence[float] = (1e-4, 1e-3, 1e-2),
    *,
    kinds: Sequence[str] = ("flat", "sphere"),
    k: int = 20,
    kernel: str = "cosine",
    ambient_dim: int = 32,
    offset: float = 2.0,
    estimators: Sequence[str] = ESTIMATORS,
    n_neighbors: int = 20,
    local: bool = True,
    seed: int = 0,
    progress: bool = False,
    **nnk_kwargs,
) -> pd.DataFrame:
    """NNK neighbour count and estimator outputs on manifolds of known dimension.

    Each setting (true dimension, kind, sample size, noise) draws one manifold with
    :func:`sslgeom.synthetic.offset_manifold` (size 1, centre at distance ``offset`` from the
    origin, isotropic noise of standard deviation ``noise`` in all ``ambient_dim`` coordinates),
    builds its NNK graph and runs the estimators on the same points.

    Parameters
    ----------
    dims : sequence of int
        True intrinsic dimensions.
    sample_sizes : sequence of int
        Points per manifold; each must exceed ``max(k, n_neighbors) + 1``.
    noise_levels : sequence of float
        Noise standard deviations, in units of the manifold's size (half side of the cube,
        radius of the sphere).
    kinds : sequence of {"flat", "sphere", "torus"}
    k, kernel
        The NNK graph; default the book's (``k=20``, cosine).
    ambient_dim : int
        Must hold the manifold plus its offset (``2 * max(dims) + 1`` for tori).
    offset : float
        Distance of each manifold's centre from the origin (see the module docstring for why it
        must not be 0 with the cosine kernel).
    estimators, n_neighbors, local
        See :func:`estimate_dimension`; an empty ``estimators`` skips them (they do not depend
        on the kernel, so a second kernel's table can reuse the first one's estimates).
    seed : int
        Base seed; each setting's manifold gets its own seed derived from it.
    progress : bool
        tqdm bar over settings.
    **nnk_kwargs
        Passed to :func:`nnk_neighbour_count` (e.g. ``dtype="float64"``).

    Returns
    -------
    pandas.DataFrame
        One row per setting: :data:`CALIBRATION_COLUMNS` (``nnk_count`` is the mean count over
        nodes, with its 10% and 90% quantiles), then ``<estimator>_<scope>`` for each estimator
        and scope (see :func:`estimate_dimension`; local columns hold the median over points).
    """
    kernel = check_choice(kernel, nnk.KERNELS, "kernel")
    for kind in kinds:
        check_choice(kind, tuple(synthetic.OFFSET_KINDS), "kind")
    settings = list(itertools.product(dims, kinds, sample_sizes, noise_levels))
    if not settings:
        raise ValueError("calibration_table needs at least one dimension, kind, sample size and "
                         "noise level.")
    rows = []
    for dim, kind, n_points, noise in tqdm(settings, desc="calibration", disable=not progress):
        n_points = check_int(n_points, "sample size", minimum=max(k, n_neighbors) + 2)
        manifold_seed = int(np.random.default_rng(_setting_seed(seed, dim, n_points)).integers(2**31))
        points, clean = (synthetic.offset_manifold(kind, n_points, int(dim), ambient_dim,
                                                   offset=offset, noise=level, seed=manifold_seed)
                         for level in (float(noise), 0.0))
        count, q10, q90 = nnk_neighbour_count(points, k, kernel, quantiles=True, **nnk_kwargs)
        row = {"true_dim": int(dim), "kind": kind, "n_points": n_points, "noise": float(noise),
               "noise_to_spacing": noise_to_spacing(clean, float(noise)), "kernel": kernel,
               "k": int(k), "nnk_count": count, "nnk_count_q10": q10, "nnk_count_q90": q90}
        if len(estimators):  # an empty sequence skips them (the estimators ignore the kernel)
            estimates = estimate_dimension(points, estimators, n_neighbors=n_neighbors,
                                           local=local)
            for _, estimate in estimates.iterrows():
                row[f"{estimate['estimator']}_{estimate['scope']}"] = estimate["dimension"]
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class CalibrationCurve:
    """Calibration of the NNK neighbour count against the true dimension.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per true dimension: ``true_dim``, ``count_median`` (median over settings of the
        mean NNK count), ``count_q10``, ``count_q90``, ``count_min``, ``count_max`` (its spread
        over sample sizes, noise levels and kinds), ``n_settings``.
    monotone : bool
        Whether the median count strictly increases with the true dimension. Only a monotone
        curve can be inverted; otherwise calling the curve raises.
    """

    table: pd.DataFrame
    monotone: bool

    def __call__(self, counts) -> np.ndarray | float:
        """Read counts as dimensions: piecewise-linear inverse of the median curve.

        Counts outside the calibrated range are clipped to the smallest or largest calibrated
        dimension (the curve says nothing beyond it).

        Parameters
        ----------
        counts : float or array-like
            Mean NNK neighbour counts, same ``k`` and kernel as the calibration.

        Returns
        -------
        float or np.ndarray, same shape as ``counts``
        """
        if not self.monotone:
            raise ValueError(
                "the median count does not increase strictly with the true dimension in this "
                f"calibration ({self.table['count_median'].round(3).tolist()}), so a count does "
                "not determine a dimension; calibrate with more points or less noise."
            )
        values = np.interp(np.asarray(counts, dtype=float), self.table["count_median"],
                           self.table["true_dim"].astype(float))
        return float(values) if np.ndim(values) == 0 else values


def count_to_dimension(
    calibration: pd.DataFrame, *, kinds: Sequence[str] | None = None,
    max_noise_to_spacing: float | None = RESOLVED_NOISE_TO_SPACING,
) -> CalibrationCurve:
    """The calibration curve count -> dimension of a :func:`calibration_table`.

    Parameters
    ----------
    calibration : pandas.DataFrame
        From :func:`calibration_table`, for one ``k`` and kernel.
    kinds : sequence of str, optional
        Restrict to these manifold kinds (default: all in the table).
    max_noise_to_spacing : float or None
        Use only the settings whose noise is at most this fraction of the sampling spacing
        (:func:`noise_to_spacing`; default :data:`RESOLVED_NOISE_TO_SPACING`): where the noise
        is as large as the spacing, a node's neighbours see the noise's dimensions, and the
        count (like TwoNN) reads them. ``None`` uses every setting.

    Returns
    -------
    CalibrationCurve
        Median count per true dimension, its spread, and the monotone inverse.
    """
    needed = {"true_dim", "kind", "nnk_count", "kernel", "k"}
    missing = needed - set(calibration.columns)
    if missing:
        raise ValueError(f"calibration lacks columns {sorted(missing)}; pass the table of "
                         "calibration_table().")
    for column in ("kernel", "k"):
        if calibration[column].nunique() > 1:
            raise ValueError(f"calibration mixes several values of {column!r} "
                             f"({sorted(calibration[column].unique())}); calibrate one at a time.")
    table = calibration if kinds is None else calibration[calibration["kind"].isin(list(kinds))]
    if table.empty:
        raise ValueError(f"no rows of kinds {kinds} in the calibration table.")
    if max_noise_to_spacing is not None:
        if "noise_to_spacing" not in table.columns:
            raise ValueError("calibration lacks the column 'noise_to_spacing'; pass the table of "
                             "calibration_table(), or max_noise_to_spacing=None.")
        table = table[table["noise_to_spacing"] <= max_noise_to_spacing]
        if table.empty:
            raise ValueError(
                f"no calibration setting has noise at most {max_noise_to_spacing} of its "
                "sampling spacing; calibrate with less noise or fewer points, or pass "
                "max_noise_to_spacing=None.")
    grouped = table.groupby("true_dim")["nnk_count"]
    curve = pd.DataFrame({
        "count_median": grouped.median(), "count_q10": grouped.quantile(0.1),
        "count_q90": grouped.quantile(0.9), "count_min": grouped.min(),
        "count_max": grouped.max(), "n_settings": grouped.size(),
    }).reset_index()
    monotone = bool(np.all(np.diff(curve["count_median"].to_numpy()) > 0))
    return CalibrationCurve(table=curve, monotone=monotone)
