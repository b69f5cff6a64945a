"""Claim 3: does the NNK geometry of augmentation manifolds measure invariance?

Chapter 02 measures how far each augmentation family moves a model's features (the *direct
sensitivity*, :func:`direct_sensitivity`); chapter 04 asks whether the NNK polytope diameter of the
augmentation manifolds, divided by the model's own typical distance between images
(:func:`scale_free_invariance`), ranks the models the same way. The comparison is a rank agreement
per augmentation family with whole methods permuted (:func:`rank_agreement`), with its power at a
given true correlation (:func:`rank_agreement_power`). :func:`invariance_ranking` ranks the models
by any augmentation metric.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sslgeom.design import unit_permutations
from sslgeom.geometry import check_table
from sslgeom.stats import bh, permutation_pvalue
from sslgeom.validation import check_int

__all__ = [
    "invariance_ranking",
    "direct_sensitivity",
    "scale_free_invariance",
    "AgreementTest",
    "rank_agreement",
    "rank_agreement_power",
]


def _augmentation_wide(table: pd.DataFrame, metric: str, statistic: str, graph: str) -> pd.DataFrame:
    """One augmentation metric summary as a (models, families) table, checked non-empty."""
    check_table(table)
    rows = table[(table["manifold"] == "augmentation") & (table["metric"] == metric)
                 & (table["statistic"] == statistic) & (table["graph"] == graph)]
    if rows.empty:
        raise ValueError(f"no augmentation rows with metric={metric!r}, statistic={statistic!r}, graph={graph!r}.")
    return rows.pivot_table(index="model", columns="family", values="value", aggfunc="first")


def invariance_ranking(
    table: pd.DataFrame, metric: str = "diameter", statistic: str = "median", graph: str = "nnk"
) -> pd.DataFrame:
    """Rank models by invariance to each augmentation family.

    A small polytope diameter on a family's augmentation manifolds means the model maps the
    augmented views close together: rank 1 is the most invariant model for that family.

    Returns
    -------
    pandas.DataFrame, shape (n_models, n_families)
        Integer ranks (1 = most invariant), index models, columns families.
    """
    wide = _augmentation_wide(table, metric, statistic, graph)
    return wide.rank(axis=0, method="min").astype(int)


def direct_sensitivity(
    model_names: Sequence[str],
    *,
    n_base: int,
    seed: int = 0,
    n_points: int | None = None,
    families: Sequence[str] | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.Series]:
    """Chapter 02's sensitivity of every model to every family, and its typical distance between images.

    For each model, the augmentation manifolds (read from the feature cache when the geometry
    table was built with the same ``n_base``, ``n_points`` and ``seed``) give
    :func:`sslgeom.manifolds.invariance_table`; the *sensitivity* to a family is the mean
    ``relative_distance`` (distance of a view from the clean feature divided by the mean distance
    between two different clean base images) over the non-identity strengths: chapter 02's
    definition. The *typical distance* is :func:`sslgeom.manifolds.typical_distance` of the clean
    base features.

    Returns
    -------
    sensitivity : pandas.DataFrame, shape (n_models, n_families)
        Lower means more invariant.
    typical : pandas.Series, shape (n_models,)
    """
    from tqdm.auto import tqdm

    from sslgeom import manifolds

    sensitivity, typical = {}, {}
    for name in tqdm(list(model_names), desc="sensitivity", disable=not progress):
        curves = manifolds.augmentation_manifolds(name, families=families, n_base=n_base, n_points=n_points,
                                                  seed=seed, device=device, progress=False)
        profile = manifolds.invariance_table(curves.values())
        moved = profile[profile["relative_strength"] != 0.0]
        sensitivity[name] = moved.groupby("family", sort=False)["relative_distance"].mean()
        typical[name] = manifolds.typical_distance(next(iter(curves.values())).clean_features)
    return pd.DataFrame(sensitivity).T, pd.Series(typical, name="typical_distance")


def scale_free_invariance(
    table: pd.DataFrame,
    scale: pd.Series,
    metric: str = "diameter",
    statistic: str = "median",
    graph: str = "nnk",
) -> pd.DataFrame:
    """An augmentation-manifold metric divided by the model's own scale (e.g. its typical distance).

    The NNK polytope diameter is a length in feature space. Models spread images over very
    different scales (a random network maps all images close together), so raw diameters rank
    models by scale, not by invariance. Dividing by the model's typical distance between two
    *different* images gives a scale-free number: 0.5 means a view's neighbourhood spans half the
    distance that separates two images.

    Parameters
    ----------
    table : pandas.DataFrame
        Geometry table.
    scale : pandas.Series
        Positive scale per model (e.g. from :func:`direct_sensitivity`), indexed by model.
    metric, statistic, graph : str
        Which summary of the augmentation manifolds to use.

    Returns
    -------
    pandas.DataFrame, shape (n_models, n_families)
        Lower means more invariant.
    """
    wide = _augmentation_wide(table, metric, statistic, graph)
    missing = [m for m in wide.index if m not in scale.index]
    if missing:
        raise ValueError(f"no scale for model(s) {missing[:5]}.")
    scale = scale.loc[wide.index].astype(float)
    if not np.all(scale > 0):
        raise ValueError("scales must be positive.")
    wide.columns.name = None
    return wide.div(scale, axis=0)


def _rank_columns(values: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(values, axis=0)


def _column_correlations(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of matching columns; x (n, f), y (..., n, f) -> (..., f)."""
    xc = x - x.mean(axis=0)
    yc = y - y.mean(axis=-2, keepdims=True)
    numerator = (xc * yc).sum(axis=-2)
    denominator = np.sqrt((xc**2).sum(axis=0) * (yc**2).sum(axis=-2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / denominator, 0.0)


@dataclass(frozen=True)
class AgreementTest:
    """Outcome of :func:`rank_agreement`.

    Attributes
    ----------
    per_column : pandas.DataFrame
        One row per column (family): ``rho`` (Spearman across models), ``p_value`` (one-sided,
        unit permutations), ``q_value`` (BH across columns).
    mean_rho : float
        The statistic of the overall test: the mean of the columns' Spearman correlations.
    p_value : float
        Monte Carlo, one-sided (``rho > 0``), whole units permuted.
    min_p : float
        ``1 / (n_permutations + 1)``.
    n_permutations : int
    null : array, shape (n_permutations,)
        Mean Spearman correlation under unit permutations.
    """

    per_column: pd.DataFrame
    mean_rho: float
    p_value: float
    min_p: float
    n_permutations: int
    null: np.ndarray = field(repr=False)


def rank_agreement(
    x: pd.DataFrame,
    y: pd.DataFrame,
    units: Sequence,
    *,
    positions: Sequence | None = None,
    n_permutations: int = 1999,
    q: float = 0.05,
    seed: int = 0,
) -> AgreementTest:
    """Do two measurements rank the models alike, column by column? Spearman, with units permuted.

    For each shared column (augmentation family) the Spearman correlation across models between
    ``x`` and ``y``; the overall statistic is their mean. Models of one unit (method) share its
    training, so both measurements can carry a common unit effect; permuting single models would
    then give too narrow a null. The permutations move whole units instead
    (:func:`sslgeom.design.unit_permutations`: unit ``u`` takes the ``y`` rows of unit ``pi(u)``,
    matched position by position, e.g. by (backbone, seed)).

    Parameters
    ----------
    x, y : pandas.DataFrame, shape (n_models, n_columns)
        Same index (models); the shared columns are compared.
    units : sequence, shape (n_models,)
        Unit of each model (method).
    positions : sequence, shape (n_models,), optional
        Position of each model within its unit (default: order of appearance).
    n_permutations : int
    q : float
        False discovery rate of the per-column BH adjustment.
    seed : int

    Returns
    -------
    AgreementTest
    """
    if not x.index.equals(y.index):
        raise ValueError("x and y must have the same index (one row per model, same order).")
    columns = [c for c in x.columns if c in y.columns]
    if not columns:
        raise ValueError("x and y share no column.")
    if len(x) < 3:
        raise ValueError(f"need at least 3 models to correlate ranks; got {len(x)}.")
    rx = _rank_columns(x[columns].to_numpy(dtype=np.float64))
    ry = _rank_columns(y[columns].to_numpy(dtype=np.float64))
    observed = _column_correlations(rx, ry)
    index = unit_permutations(units, n_permutations, seed=seed, positions=positions)
    null = _column_correlations(rx, ry[index])  # (B, f)
    p_columns = permutation_pvalue(observed, null)
    _, q_columns = bh(np.atleast_1d(p_columns), q)
    mean_null = null.mean(axis=1)
    p_value = float(permutation_pvalue(observed.mean(), mean_null))
    table = pd.DataFrame({"rho": observed, "p_value": p_columns, "q_value": q_columns}, index=columns)
    return AgreementTest(table, float(observed.mean()), p_value, 1.0 / (n_permutations + 1), n_permutations,
                         mean_null)


def rank_agreement_power(
    units: Sequence,
    rho: float,
    *,
    n_columns: int,
    unit_share: float = 0.5,
    positions: Sequence | None = None,
    n_sim: int = 100,
    n_permutations: int = 199,
    alpha: float = 0.05,
    seed: int = 0,
) -> float:
    """Power of :func:`rank_agreement`'s overall test when the two measurements correlate at ``rho``.

    Simulation on the given design: per column, a latent value per model (a unit effect with
    share ``unit_share`` of its variance plus a model part); ``x`` is the latent value, ``y``
    is ``rho`` times it plus independent noise with the same unit structure, so the true
    correlation of ``x`` and ``y`` across models is ``rho``.

    Returns
    -------
    float
        Share of ``n_sim`` simulations with ``p <= alpha``.
    """
    check_int(n_sim, "n_sim", minimum=1)
    units = np.asarray(units)
    _, codes = np.unique(units, return_inverse=True)
    rng = np.random.default_rng(seed)
    n = len(units)

    def draw() -> np.ndarray:
        shared = rng.normal(size=(codes.max() + 1, n_columns))[codes]
        return np.sqrt(unit_share) * shared + np.sqrt(1 - unit_share) * rng.normal(size=(n, n_columns))

    hits = 0
    for _ in range(n_sim):
        latent = draw()
        x = pd.DataFrame(latent)
        y = pd.DataFrame(rho * latent + np.sqrt(1 - rho**2) * draw())
        test = rank_agreement(x, y, units, positions=positions, n_permutations=n_permutations,
                              seed=int(rng.integers(2**32)))
        hits += test.p_value <= alpha
    return hits / n_sim
