"""Claim 1, geometry follows paradigm: PERMANOVA, per-metric effects and power, on the zoo's design.

Three questions, each tested with the permutations its design allows:

- :func:`permanova`: do *methods* differ in geometry? One-way PERMANOVA with seeds as
  replicates, models permuted (within backbone when stratified). Without strata it reproduces
  ``skbio.stats.distance.permanova`` exactly (same pseudo-F, same permutations for a seed).
- :func:`nested_permanova`: do *paradigms* differ more than methods within a paradigm do? The
  pseudo-F ``MS_paradigm / MS_method-within-paradigm`` with whole methods reassigned to paradigms
  (exactly enumerated: 210 partitions of 8 methods into 2/4/2), so the test generalises over
  methods, not over seeds.
- :func:`metric_effects`: per geometry metric, the partial eta squared of paradigm with backbone
  in the model, tested by the same method-level relabelling, BH-corrected across metrics.

:func:`paradigm_power` simulates paradigm effects of increasing size on the design and finds the
smallest one the method-level test detects with 80% power, with variance components estimated
from the real vectors by :func:`simulation_settings` (:func:`power_at` reads the curve);
:func:`no_effect_verdict` turns test and power into the verdict on a claim of *no* effect.
:func:`block_permanova` tests a within-run factor (the training budget) with the checkpoints of a
run as repeated measures.

Distances are squared once; every pseudo-F is computed from the matrix of summed squared distances
between units, ``A[u, v] = sum_{i in u, j in v} d_ij^2``, so a batch of relabellings costs a
few array operations whatever the number of seeds.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .design import (MethodGroups, MethodPermutations, aligned_groups, count_assignments, enumerate_assignments,
                     method_groups, unit_permutation_test, within_strata_permutations)
from .stats import (PowerSimulation, bh, exact_pvalue, partial_eta_squared, participation_ratio, permutation_pvalue,
                    power_curve, variance_components)
from .validation import check_int

__all__ = [
    "PermanovaResult",
    "distance_matrix",
    "pseudo_f",
    "permanova",
    "nested_permanova",
    "metric_effects",
    "paradigm_power",
    "simulation_settings",
    "power_at",
    "no_effect_verdict",
    "block_permanova",
]


def distance_matrix(distances, ids: Sequence[str] | None = None):
    """A validated ``skbio.DistanceMatrix`` (symmetric, zero diagonal) from an array, DataFrame or DistanceMatrix."""
    from skbio import DistanceMatrix

    if isinstance(distances, DistanceMatrix):
        return distances
    if isinstance(distances, pd.DataFrame):
        if not distances.index.equals(distances.columns):
            raise ValueError("a distance DataFrame must have the same labels on both axes, in the same order.")
        ids = [str(i) for i in distances.index] if ids is None else ids
    return DistanceMatrix(np.asarray(distances, dtype=np.float64), ids=ids)


def _codes(values: Sequence[Hashable]) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values and the integer code of each entry (as ``np.unique``, like scikit-bio)."""
    levels, codes = np.unique(np.asarray(values), return_inverse=True)
    return levels, codes.astype(np.int64)


def _unit_blocks(d2: np.ndarray, unit_codes: np.ndarray, n_units: int) -> tuple[np.ndarray, np.ndarray]:
    """``A[u, v] = sum_{i in u, j in v} d_ij^2`` (shape (n_units, n_units)) and unit sizes (n_units,)."""
    onehot = np.zeros((len(unit_codes), n_units))
    onehot[np.arange(len(unit_codes)), unit_codes] = 1.0
    return onehot.T @ d2 @ onehot, onehot.sum(axis=0)


def pseudo_f(
    blocks: np.ndarray, sizes: np.ndarray, assignments: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pseudo-F of groups of units against the variation between units within groups, for many assignments.

    With ``SS_T = sum_{i<j} d^2 / n`` and, for a partition, ``SS_W = sum_g sum_{i<j in g} d^2 / n_g``
    (Anderson 2001), the groups' sum of squares is ``SS_T - SS_W(groups)`` and the units' within
    groups ``SS_W(groups) - SS_W(units)``; these are nested projections, so the split holds for
    unequal sizes too. ``F = (SS_groups / (g - 1)) / (SS_units|groups / (u - g))``. With one model
    per unit, ``SS_W(units) = 0`` and ``u = n``: the one-way PERMANOVA pseudo-F of scikit-bio.

    Parameters
    ----------
    blocks : array, shape (n_units, n_units)
        Summed squared distances between units (units with no model have zero rows).
    sizes : array, shape (n_units,)
        Models per unit (0: absent from these data).
    assignments : int array, shape (n_assignments, n_units)
        Group code of each unit, per assignment.
    n_groups : int

    Returns
    -------
    f : array, shape (n_assignments,)
    r2 : array, shape (n_assignments,)
        ``SS_groups / SS_T``.
    """
    onehot = (assignments[:, :, None] == np.arange(n_groups)).astype(np.float64)  # (B, u, g)
    onehot *= (sizes > 0)[None, :, None]  # absent units belong to no group
    pair_sums = 0.5 * np.einsum("bug,uv,bvg->bg", onehot, blocks, onehot)
    group_sizes = np.einsum("bug,u->bg", onehot, sizes)
    with np.errstate(invalid="ignore", divide="ignore"):
        ss_within_groups = np.where(group_sizes > 0, pair_sums / group_sizes, 0.0).sum(axis=1)
    present = sizes > 0
    ss_total = 0.5 * blocks.sum() / sizes.sum()
    ss_within_units = np.sum(0.5 * np.diag(blocks)[present] / sizes[present])
    df_groups = (group_sizes > 0).sum(axis=1) - 1
    df_units = present.sum() - df_groups - 1
    ss_groups = ss_total - ss_within_groups
    with np.errstate(invalid="ignore", divide="ignore"):
        f = (ss_groups / df_groups) / ((ss_within_groups - ss_within_units) / df_units)
        r2 = ss_groups / ss_total
    return f, r2


def _stratum_table(blocks: dict, assignments: dict, n_groups: int) -> pd.DataFrame:
    """Per stratum: observed ``F, r2, df_effect, df_residual, n`` (refuses an undefined F).

    ``blocks[stratum] = (A, sizes)`` as from :func:`_unit_blocks`; ``assignments[stratum]`` the
    observed group code of each of that stratum's units.
    """
    rows = []
    for stratum, (block, sizes) in blocks.items():
        assignment = assignments[stratum]
        f, r2 = pseudo_f(block, sizes, assignment[None, :], n_groups)
        if not np.isfinite(f[0]):
            raise ValueError(f"pseudo-F is undefined in stratum {stratum!r}: it needs at least two groups and "
                             "more units than groups (replicates within groups).")
        present = sizes > 0
        n_present_groups = len(np.unique(assignment[present]))
        rows.append({"stratum": stratum, "F": f[0], "r2": r2[0], "df_effect": n_present_groups - 1,
                     "df_residual": int(present.sum()) - n_present_groups, "n": int(sizes.sum())})
    return pd.DataFrame(rows).set_index("stratum")


def _strata(strata: Sequence[Hashable] | None, n: int) -> np.ndarray:
    if strata is None:
        return np.full(n, "all", dtype=object)
    strata = np.asarray(strata, dtype=object)
    if len(strata) != n:
        raise ValueError(f"{len(strata)} strata for {n} models.")
    return strata


@dataclass(frozen=True)
class PermanovaResult:
    """Outcome of :func:`permanova` or :func:`nested_permanova`.

    Attributes
    ----------
    statistic : float
        Pseudo-F, or with strata the sum of the per-stratum pseudo-F.
    p_value : float
        Exact (``#{null >= observed} / n``) or Monte Carlo (``(1 + #{null >= observed}) / (1 + B)``).
    min_p : float
        Smallest p-value this test can return.
    exact : bool
    n_permutations : int
        Assignments enumerated (exact) or permutations drawn.
    per_stratum : pandas.DataFrame
        One row per stratum (``"all"`` without strata): ``F, r2, df_effect, df_residual, n``,
        where ``r2`` is the tested term's share of the total sum of squares.
    null : array, shape (n_permutations,)
    """

    statistic: float
    p_value: float
    min_p: float
    exact: bool
    n_permutations: int
    per_stratum: pd.DataFrame
    null: np.ndarray = field(repr=False)


def permanova(
    distances,
    grouping: Sequence[Hashable],
    *,
    strata: Sequence[Hashable] | None = None,
    n_permutations: int = 999,
    seed: int = 0,
) -> PermanovaResult:
    """One-way PERMANOVA (e.g. method effect, seeds as replicates), optionally within strata.

    Without strata: the pseudo-F of ``skbio.stats.distance.permanova`` and its Monte Carlo p-value
    ``(1 + #{F_perm >= F}) / (1 + B)``, drawing the same permutations from ``seed`` (so the same
    p-value). With strata (backbones): the pseudo-F is computed within each stratum and the
    statistic is their *sum*; labels are permuted within each stratum only, independently, so a
    model never takes a label from another backbone.

    Models are the replicates here, which suits a method effect (seeds of a method are replicates
    of it) but not a paradigm effect: seeds are not independent replicates of a paradigm, and
    with method effects present this test rejects a true null about half the time (see the
    tests). Test paradigms with :func:`nested_permanova`.

    Parameters
    ----------
    distances : array, DataFrame or skbio.DistanceMatrix, shape (n_models, n_models)
    grouping : sequence, shape (n_models,)
        Group of each model (e.g. method).
    strata : sequence, shape (n_models,), optional
        Stratum of each model (e.g. backbone).
    n_permutations : int
    seed : int

    Returns
    -------
    PermanovaResult
    """
    n_permutations = check_int(n_permutations, "n_permutations", minimum=1)
    dm = distance_matrix(distances)
    d2 = np.asarray(dm.data, dtype=np.float64) ** 2
    levels, codes = _codes(grouping)
    if len(codes) != len(d2):
        raise ValueError(f"{len(codes)} group labels for {len(d2)} models.")
    permuted = within_strata_permutations(codes, strata, n_permutations, seed)  # (B, n)
    strata = _strata(strata, len(codes))
    total = np.zeros(n_permutations + 1)
    blocks, observed = {}, {}
    for stratum in pd.unique(strata):
        keep = strata == stratum
        # every model is its own unit: A is the stratum's squared distances
        blocks[stratum] = (d2[np.ix_(keep, keep)], np.ones(int(keep.sum())))
        observed[stratum] = codes[keep]
        assignments = np.vstack([codes[None, keep], permuted[:, keep]])
        total += pseudo_f(*blocks[stratum], assignments, len(levels))[0]
    table = _stratum_table(blocks, observed, len(levels))
    return PermanovaResult(float(total[0]), float(permutation_pvalue(total[0], total[1:])),
                           1.0 / (n_permutations + 1), False, n_permutations, table, total[1:])


def nested_permanova(
    distances,
    groups: MethodGroups,
    *,
    permutations: MethodPermutations = MethodPermutations(),
) -> PermanovaResult:
    """Paradigm effect tested against the variation between methods within paradigms.

    The pseudo-F is ``MS_paradigm / MS_method|paradigm`` (:func:`pseudo_f` with methods as units):
    seeds only sharpen each method's position, they are not replicates of a paradigm. Under the
    null hypothesis methods are exchangeable between paradigms, so the permutations reassign
    *whole methods* (all their seeds, checkpoints and backbones together) to paradigms with the
    observed sizes: all distinct partitions when there are at most ``permutations.max_enumerate``
    (exact test; 8 methods in 2/4/2: 210, smallest p-value 1/210), else
    ``permutations.n_permutations`` random ones.

    With strata (backbones), the pseudo-F is computed within each backbone and the statistic is
    the *sum* over backbones; the same relabelling of methods applies to every backbone (a method is
    one unit across backbones, so its backbones must move together: relabelling them independently
    would ignore that they share the method's effect and make the null too narrow).

    Parameters
    ----------
    distances : array, DataFrame or skbio.DistanceMatrix, shape (n_models, n_models)
        A DataFrame is matched to ``groups`` by model name; other forms must list the models in
        the order of ``groups``.
    groups : MethodGroups
        Paradigm (group), method (unit) and backbone (stratum; ``stratum=None`` for none) of each
        model (:func:`sslgeom.design.method_groups`).
    permutations : MethodPermutations
        As in :func:`sslgeom.design.unit_permutation_test`.

    Returns
    -------
    PermanovaResult
    """
    groups = aligned_groups(groups, distances)
    dm = distance_matrix(distances)
    d2 = np.asarray(dm.data, dtype=np.float64) ** 2
    n_units, observed = len(groups.units), groups.group_of_unit
    if len(groups.groups) < 2 or n_units <= len(groups.groups):
        raise ValueError(f"need at least 2 groups and more units than groups; got {len(groups.groups)} groups, "
                         f"{n_units} units.")
    # every stratum's summed squared distances between methods, computed once
    blocks = {}
    for stratum in pd.unique(groups.strata):
        keep = groups.strata == stratum
        blocks[stratum] = _unit_blocks(d2[np.ix_(keep, keep)], groups.unit_of_model[keep], n_units)

    def total_f(assignments: np.ndarray) -> np.ndarray:
        # the same relabelling of methods in every stratum, F summed over strata
        return sum(pseudo_f(a, sizes, assignments, len(groups.groups))[0] for a, sizes in blocks.values())

    test = unit_permutation_test(total_f, observed, distinct=True, permutations=permutations)
    table = _stratum_table(blocks, {stratum: observed for stratum in blocks}, len(groups.groups))
    return PermanovaResult(test.statistic, float(test.p_value), test.min_p, test.exact, test.n_assignments,
                           table, test.null)


def _residual_ss(design: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Residual sum of squares of least squares fits of every column of ``y`` (n, m) on ``design`` (n, k)."""
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return ((y - design @ coef) ** 2).sum(axis=0)


def _dummies(codes: np.ndarray) -> np.ndarray:
    """Treatment-coded indicator columns (first level dropped) of integer codes: (n, n_levels - 1)."""
    return (codes[:, None] == np.arange(1, codes.max() + 1)).astype(np.float64)


def metric_effects(
    values: pd.DataFrame,
    groups: MethodGroups,
    *,
    q: float = 0.05,
    permutations: MethodPermutations = MethodPermutations(),
) -> pd.DataFrame:
    """Per geometry metric: partial eta squared of paradigm with backbone in the model, tested at the method level.

    ``eta2_partial`` and the parametric ``p_anova`` come from statsmodels (``y ~ C(paradigm) +
    C(backbone)``, type II; :func:`sslgeom.stats.partial_eta_squared`). ``p_anova`` treats the
    models as independent although seeds of a method are not, so it is shown only for comparison:
    the test is ``p_value``, from reassigning whole methods to paradigms (exact over the 210
    partitions when few; the same relabelling for every metric), with ``q_value`` its BH
    adjustment across metrics. Use full-budget models (:func:`sslgeom.design.analysis_rows`).
    With 210 partitions the smallest p-value is 1/210, so BH can reject at ``q = 0.05`` only if
    there are at most 10 metrics (:func:`sslgeom.stats.permutations_needed`).

    Parameters
    ----------
    values : pandas.DataFrame, shape (n_models, n_metrics)
        Indexed by model.
    groups : MethodGroups
        Paradigm (group) and method (unit) of each model, matched to ``values`` by model name; its
        stratum column (backbone), if any, enters the model as a covariate
        (:func:`sslgeom.design.method_groups`, ``stratum=None`` for none).
    q : float
        False discovery rate of ``reject``.
    permutations : MethodPermutations
        As in :func:`nested_permanova`.

    Returns
    -------
    pandas.DataFrame, shape (n_metrics, 9)
        Index: metrics; ``eta2_partial, F, df_effect, df_residual, p_anova, p_value, q_value,
        reject, exact``.
    """
    groups = aligned_groups(groups, values)
    y = values.to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(y)):
        raise ValueError("values contain NaN or infinite entries; drop those metrics first.")
    covariates = [groups.stratum] if groups.stratum is not None else []
    table = partial_eta_squared(values, groups.labels, groups.group, covariates)
    unit_codes, observed = groups.unit_of_model, groups.group_of_unit
    base = [np.ones((len(y), 1))]
    if len(pd.unique(groups.strata)) > 1:
        base.append(_dummies(_codes(groups.strata)[1]))
    base = np.hstack(base)
    rss_base = _residual_ss(base, y)  # the covariates alone: the same for every relabelling

    def eta2(assignments: np.ndarray) -> np.ndarray:
        # partial eta^2 = (RSS_base - RSS_full) / RSS_base for each relabelling: (B, m)
        out = np.empty((len(assignments), y.shape[1]))
        for b, codes in enumerate(assignments):
            rss_full = _residual_ss(np.hstack([base, _dummies(codes[unit_codes])]), y)
            out[b] = (rss_base - rss_full) / rss_base
        return out

    # one relabelling of methods for every metric; partial eta^2 is invariant to paradigm names
    test = unit_permutation_test(eta2, observed, distinct=True, permutations=permutations)
    p_value = np.atleast_1d(test.p_value)
    reject, q_value = bh(p_value, q)
    return table.assign(p_value=p_value, q_value=q_value, reject=reject, exact=test.exact)


def _simulate_geometry(
    rng: np.random.Generator,
    paradigm_of_unit: np.ndarray,
    unit_codes: np.ndarray,
    stratum_codes: np.ndarray,
    effect: float,
    seed_sd: float,
    method_sd: float,
    backbone_sd: float,
    n_features: int,
) -> np.ndarray:
    """Geometry vectors (n_models, n_features): paradigm mean + method effect (per backbone) + seed noise."""
    n_paradigms = paradigm_of_unit.max() + 1
    pattern = rng.normal(size=(n_paradigms, n_features))
    pattern -= pattern.mean(axis=0)
    pattern /= pattern.std(axis=0)  # each feature: paradigm means with SD exactly 1
    n_units, n_strata = len(paradigm_of_unit), stratum_codes.max() + 1
    method = rng.normal(scale=method_sd, size=(n_units, n_features))
    # a backbone shifts every model and adds its own part of the method effect (an interaction
    # with half the method SD): a method is not the same point on every backbone
    shift = rng.normal(scale=backbone_sd, size=(n_strata, n_features))
    method_by_stratum = 0.5 * rng.normal(scale=method_sd, size=(n_strata, n_units, n_features))
    return (effect * seed_sd * pattern[paradigm_of_unit[unit_codes]] + method[unit_codes]
            + shift[stratum_codes] + method_by_stratum[stratum_codes, unit_codes]
            + rng.normal(scale=seed_sd, size=(len(unit_codes), n_features)))


def paradigm_power(
    design: pd.DataFrame,
    effects: Sequence[float] = (0.0, 0.5, 1.0, 2.0, 4.0),
    *,
    seed_sd: float = 1.0,
    method_sd: float = 1.0,
    backbone_sd: float = 3.0,
    n_features: int = 10,
    simulation: PowerSimulation = PowerSimulation(),
    stratify: bool = True,
    max_enumerate: int = 20_000,
) -> tuple[pd.DataFrame, float]:
    """Power of :func:`nested_permanova` against paradigm effects of increasing size on this design.

    Each simulation draws geometry vectors for the models of ``design``: per feature, paradigm
    means with SD ``effect * seed_sd`` across paradigms, a random method effect (SD
    ``method_sd``, plus a method x backbone part with half that SD), a random backbone shift (SD
    ``backbone_sd``), and seed-to-seed
    noise (SD ``seed_sd``); then runs the method-level test on their Euclidean distances. Estimate
    ``seed_sd`` and ``method_sd`` from the real geometry vectors with
    :func:`sslgeom.stats.variance_components`.

    Parameters
    ----------
    design : pandas.DataFrame
        One row per model, columns ``method, paradigm, backbone`` (e.g. the full-budget rows of
        :func:`sslgeom.design.synthetic_manifest`).
    effects : sequence of float
        Paradigm effects, in units of the seed-to-seed SD.
    seed_sd, method_sd, backbone_sd : float
    n_features : int
    simulation : PowerSimulation
        Simulations per effect, the level of the test, the target power, and the seed of the
        simulation; its ``n_permutations`` are the random partitions of the test when the design has
        more than ``max_enumerate`` (as in :func:`nested_permanova`).
    stratify : bool
        Backbone as a stratum (as the analysis will be run).
    max_enumerate : int
        As in :func:`nested_permanova`: designs with at most this many partitions are tested exactly.

    Returns
    -------
    curve : pandas.DataFrame
        One row per effect: ``effect, power, low, high`` (95% Wilson interval).
    minimal_effect : float
        Smallest effect of ``effects`` whose power is at least ``simulation.target_power`` (NaN if none):
        a grid value, not interpolated, so on the safe side.
    """
    from scipy.spatial.distance import pdist, squareform

    groups = method_groups(design.reset_index(drop=True), stratum="backbone" if stratify else None)
    unit_codes, paradigm_of_unit = groups.unit_of_model, groups.group_of_unit
    _, stratum_codes = _codes(design["backbone"].to_numpy())
    rng = np.random.default_rng(simulation.seed)
    n_groups = int(paradigm_of_unit.max()) + 1
    exact = count_assignments(np.bincount(paradigm_of_unit), distinct=True) <= check_int(
        max_enumerate, "max_enumerate", minimum=1)
    # exact designs: the partitions are the same in every simulation, so enumerate them once and
    # compute the pseudo-F of every partition directly (the numbers of nested_permanova, faster)
    assignments = enumerate_assignments(paradigm_of_unit, distinct=True) if exact else None
    keeps = [stratum_codes == s for s in range(int(stratum_codes.max()) + 1)] if stratify else [slice(None)]

    def rejects(effect: float) -> bool:
        x = _simulate_geometry(rng, paradigm_of_unit, unit_codes, stratum_codes, effect, seed_sd, method_sd,
                               backbone_sd, n_features)
        if exact:
            d2 = squareform(pdist(x, "sqeuclidean"))
            total = np.zeros(len(assignments))
            observed_f = 0.0
            for keep in keeps:
                block, sizes = _unit_blocks(d2[np.ix_(keep, keep)] if not isinstance(keep, slice) else d2,
                                            unit_codes[keep], len(paradigm_of_unit))
                total += pseudo_f(block, sizes, assignments, n_groups)[0]
                observed_f += pseudo_f(block, sizes, paradigm_of_unit[None, :], n_groups)[0][0]
            p_value = exact_pvalue(observed_f, total)
        else:
            permutations = MethodPermutations(max_enumerate=max_enumerate, n_permutations=simulation.n_permutations,
                                              seed=int(rng.integers(2**32)))
            p_value = nested_permanova(squareform(pdist(x)), groups, permutations=permutations).p_value
        return p_value <= simulation.alpha

    return power_curve(effects, rejects, simulation.n_sim, target_power=simulation.target_power)


def simulation_settings(vectors: pd.DataFrame, methods: Sequence[Hashable]) -> dict[str, float]:
    """The variance components that :func:`paradigm_power` needs, estimated from real geometry vectors.

    Parameters
    ----------
    vectors : pandas.DataFrame, shape (n_models, n_features)
        Geometry vectors (z-scored as for the distances) of models of *one* backbone and budget,
        with several seeds per method.
    methods : sequence, shape (n_models,)
        Method of each model.

    Returns
    -------
    dict
        ``seed_sd`` and ``method_sd``: medians over features of the within-method (seed-to-seed)
        and between-method standard deviations (:func:`sslgeom.stats.variance_components`);
        ``n_features``: the effective number of independent features, the participation ratio
        of the features' correlation matrix (:func:`sslgeom.stats.participation_ratio`; rounded,
        at least 1), since :func:`paradigm_power` simulates independent features and
        correlated features carry less independent evidence.
    """
    values = vectors.to_numpy(dtype=np.float64)
    keep = values.std(axis=0) > 1e-12
    values = values[:, keep]
    if values.shape[1] == 0:
        raise ValueError("every feature is constant across these models.")
    between, within = variance_components(values, np.asarray(methods))
    ratio = participation_ratio(values)
    return {"seed_sd": float(np.median(within)), "method_sd": float(np.median(between)),
            "n_features": int(max(1, round(ratio)))}


def power_at(curve: pd.DataFrame, effect: float) -> float:
    """Power of a :func:`paradigm_power` curve at one of its effects (NaN if not on the grid)."""
    rows = curve.loc[np.isclose(curve["effect"].to_numpy(dtype=np.float64), effect), "power"]
    return float(rows.iloc[0]) if len(rows) else float("nan")


def no_effect_verdict(p_value: float, power: float, *, q: float = 0.05, power_threshold: float = 0.8) -> str:
    """Verdict on a claim that an effect is *absent* (claim 1: geometry is not tied to paradigm).

    :func:`sslgeom.stats.verdict` judges a claim that an effect exists. A claim of absence reads
    the same test the other way round:

    1. the test rejects (``p_value <= q``): an effect is found, the claim is ``"not supported"``;
    2. it does not reject and the design had at least ``power_threshold`` power at the minimal
       effect of interest: the claim is ``"supported"`` (an effect that large would have been seen);
    3. otherwise ``"this design cannot tell"``.
    """
    from .stats import CANNOT_TELL, NOT_SUPPORTED, SUPPORTED, verdict

    effect = verdict(p_value, power, q=q, power_threshold=power_threshold)
    return {SUPPORTED: NOT_SUPPORTED, NOT_SUPPORTED: SUPPORTED, CANNOT_TELL: CANNOT_TELL}[effect]


def block_permanova(
    vectors,
    factor: Sequence[Hashable],
    blocks: Sequence[Hashable],
    *,
    n_permutations: int = 999,
    seed: int = 0,
) -> PermanovaResult:
    """Repeated-measures PERMANOVA: a within-block factor (budget) with blocks (runs), Euclidean.

    The checkpoints of one run are repeated measures of that run, so the budget effect is tested
    within runs: each run's mean is removed, ``SS_factor = sum_l n_l ||mean_l||^2`` of the
    centred vectors, ``SS_residual`` the rest, and ``F = (SS_factor / (L - 1)) / (SS_residual /
    ((R - 1)(L - 1)))`` for ``R`` complete blocks of ``L`` levels (summed over features: with one
    feature, the F of a one-way repeated-measures ANOVA). The permutations shuffle the factor
    labels *within* each block only, independently.

    Parameters
    ----------
    vectors : array or DataFrame, shape (n_models, n_features)
        Coordinates (e.g. z-scored geometry vectors, whose Euclidean distances the other tests use).
    factor : sequence, shape (n_models,)
        Level of each model (budget fraction).
    blocks : sequence, shape (n_models,)
        Block of each model (run); every block must hold each level once.
    n_permutations, seed : int

    Returns
    -------
    PermanovaResult
        ``per_stratum`` holds one row (``"within runs"``).
    """
    n_permutations = check_int(n_permutations, "n_permutations", minimum=1)
    x = np.asarray(vectors, dtype=np.float64)
    levels, codes = _codes(factor)
    block_levels, block_codes = _codes(blocks)
    if len(codes) != len(x) or len(block_codes) != len(x):
        raise ValueError("factor and blocks need one entry per row of vectors.")
    n_levels, n_blocks = len(levels), len(block_levels)
    counts = np.zeros((n_blocks, n_levels), dtype=np.int64)
    np.add.at(counts, (block_codes, codes), 1)
    if n_levels < 2 or n_blocks < 2 or np.any(counts != 1):
        raise ValueError("block_permanova needs at least 2 levels and 2 blocks, each block holding every level "
                         "exactly once (complete repeated measures).")
    means = np.zeros((n_blocks, x.shape[1]))
    np.add.at(means, block_codes, x)
    centred = x - means[block_codes] / n_levels
    total = float((centred**2).sum())
    permuted = within_strata_permutations(codes, block_codes, n_permutations, seed)
    assignments = np.vstack([codes[None, :], permuted])
    onehot = (assignments[:, :, None] == np.arange(n_levels)).astype(np.float64)  # (B, n, L)
    sums = np.einsum("bnl,nf->blf", onehot, centred)
    ss_factor = (sums**2).sum(axis=(1, 2)) / n_blocks
    df_factor, df_residual = n_levels - 1, (n_blocks - 1) * (n_levels - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        f = (ss_factor / df_factor) / ((total - ss_factor) / df_residual)
    ss_all = float(((x - x.mean(axis=0)) ** 2).sum())
    table = pd.DataFrame([{"stratum": "within runs", "F": f[0], "r2": ss_factor[0] / ss_all,
                           "df_effect": df_factor, "df_residual": df_residual, "n": len(x)}]).set_index("stratum")
    return PermanovaResult(float(f[0]), float(permutation_pvalue(f[0], f[1:])), 1.0 / (n_permutations + 1), False,
                           n_permutations, table, f[1:])
