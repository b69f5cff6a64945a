"""The experimental design of the zoo: its units, and the permutations that respect them.

The zoo is not a sample of independent models. Seeds, backbones and budget checkpoints of one
SSL method share that method's loss, so the *method* is the unit a claim about paradigms can
generalise over: eight methods, not ninety models. Everything here serves tests that respect this:

- :func:`synthetic_manifest` writes a manifest with the zoo's design (methods x seeds x budgets on
  the main backbone, a seed per method on the second backbone, references), for tests and power
  simulations, and :func:`analysis_rows` picks the rows of one analysis (backbone, budget);
- :func:`unit_labels` checks that a label (the paradigm) is constant within each unit (method),
  and :func:`method_groups` reads a labels table once into the :class:`MethodGroups` (units,
  groups, strata) that every method-level test of claim 1 takes;
- :func:`count_assignments` and :func:`enumerate_assignments` list every assignment of units to
  groups of the observed sizes (8 methods in paradigms of 2/4/2: 420 labelled assignments, 210
  distinct partitions), so a paradigm test can be exact; :func:`unit_permutation_test` runs such a
  test, exact when the enumeration is small and Monte Carlo otherwise, with the settings of
  :class:`MethodPermutations` (shared by every method-level test of the claims);
- :func:`unit_permutations` permutes whole units' target vectors (a method's models move
  together, matched position by position), for permutation nulls of claim 2;
- :func:`within_strata_permutations` permutes labels only within strata (backbones).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .stats import exact_pvalue, permutation_pvalue
from .validation import check_int

__all__ = [
    "MANIFEST_COLUMNS",
    "MAIN_BACKBONE",
    "SECOND_BACKBONE",
    "REFERENCE_PARADIGMS",
    "BUDGETS",
    "ssl_paradigms",
    "synthetic_manifest",
    "analysis_rows",
    "unit_labels",
    "MethodGroups",
    "method_groups",
    "aligned_groups",
    "count_assignments",
    "enumerate_assignments",
    "UnitTestResult",
    "MethodPermutations",
    "unit_permutation_test",
    "unit_permutations",
    "within_strata_permutations",
]

#: Columns of a zoo manifest that describe the design.
MANIFEST_COLUMNS: tuple[str, ...] = ("name", "run_id", "method", "paradigm", "backbone", "seed", "budget_fraction")
#: The backbone with several seeds and budget checkpoints, and the second one (one seed, full budget).
MAIN_BACKBONE, SECOND_BACKBONE = "convnet", "resnet"
#: Paradigms of the reference models (not SSL methods; never permuted with them).
REFERENCE_PARADIGMS: tuple[str, ...] = ("random", "supervised")
#: Budget checkpoints of each main-backbone run, as fractions of the full training budget.
BUDGETS: tuple[float, ...] = (0.25, 0.5, 1.0)


def ssl_paradigms() -> dict[str, str]:
    """Method -> paradigm for the SSL methods of :data:`sslgeom.ssl_methods.METHODS` (references left out).

    The training registry is the one authority on which paradigm a method belongs to; importing it
    loads torch and lightly, so it is read here, lazily, rather than copied.
    """
    from .ssl_methods import METHODS

    return {name: spec.paradigm for name, spec in METHODS.items() if spec.paradigm not in REFERENCE_PARADIGMS}


def _model_name(method: str, backbone: str, seed: int, budget: float) -> str:
    """Zoo naming: ``method-backbone-s{seed}``, with ``-b025`` style suffixes for partial budgets."""
    suffix = "" if budget == 1.0 else f"-b{round(100 * budget):03d}"
    return f"{method}-{backbone}-s{seed}{suffix}"


def synthetic_manifest(
    paradigms: Mapping[str, str] | None = None,
    *,
    n_seeds: int = 3,
    n_second_seeds: int = 1,
    budgets: Sequence[float] = BUDGETS,
    references: bool = True,
    main_backbone: str = MAIN_BACKBONE,
    second_backbone: str = SECOND_BACKBONE,
) -> pd.DataFrame:
    """A manifest with the zoo's design and no models behind it, for tests and power simulations.

    Every SSL method gets ``n_seeds`` runs on the main backbone, each with a checkpoint at every
    budget fraction, and ``n_second_seeds`` full-budget runs on the second backbone. References:
    ``supervised`` like an SSL method, ``random`` once per seed and backbone with budget 0.

    Parameters
    ----------
    paradigms : mapping of str to str, optional
        Method -> paradigm; default :func:`ssl_paradigms` (the training registry).
    n_seeds, n_second_seeds : int
        Seeds per method on the main and the second backbone (``n_second_seeds=0``: one backbone).
    budgets : sequence of float
        Budget fractions of the main-backbone checkpoints; must include 1.0.
    references : bool
        Add the ``random`` and ``supervised`` references.

    Returns
    -------
    pandas.DataFrame, shape (n_models, 7)
        Columns :data:`MANIFEST_COLUMNS`, one row per model; ``run_id`` is shared by the budget
        checkpoints of one run.
    """
    check_int(n_seeds, "n_seeds", minimum=1)
    check_int(n_second_seeds, "n_second_seeds", minimum=0)
    if 1.0 not in budgets:
        raise ValueError(f"budgets must include the full budget 1.0; got {list(budgets)}.")
    paradigms = dict(ssl_paradigms() if paradigms is None else paradigms)
    methods = list(paradigms.items())
    if references:
        methods += [("supervised", "supervised")]
    rows = []
    for method, paradigm in methods:
        runs = [(main_backbone, s, tuple(budgets)) for s in range(n_seeds)]
        runs += [(second_backbone, s, (1.0,)) for s in range(n_second_seeds)]
        for backbone, seed, run_budgets in runs:
            run_id = _model_name(method, backbone, seed, 1.0)
            for budget in run_budgets:
                rows.append((_model_name(method, backbone, seed, budget), run_id, method, paradigm,
                             backbone, seed, float(budget)))
    if references:
        seeds = [(main_backbone, s) for s in range(n_seeds)] + [(second_backbone, s) for s in range(n_second_seeds)]
        for backbone, seed in seeds:
            name = f"random-{backbone}-s{seed}"
            rows.append((name, name, "random", "random", backbone, seed, 0.0))
    return pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))


def analysis_rows(
    manifest: pd.DataFrame,
    *,
    backbone: str | None = None,
    budget: float | None = 1.0,
    references: bool = False,
) -> pd.DataFrame:
    """Rows of a manifest for one analysis: a backbone (``None``: all), a budget (``None``: all), references or not."""
    rows = manifest
    if backbone is not None:
        rows = rows[rows["backbone"] == backbone]
    if budget is not None:
        rows = rows[np.isclose(rows["budget_fraction"].astype(float), budget)]
    if not references:
        rows = rows[~rows["paradigm"].isin(REFERENCE_PARADIGMS)]
    if rows.empty:
        raise ValueError(f"no models left for backbone={backbone!r}, budget={budget}, references={references}.")
    return rows


def unit_labels(units: Sequence[Hashable], labels: Sequence[Hashable]) -> pd.Series:
    """The one label of each unit (e.g. the paradigm of each method), checked constant within units.

    Parameters
    ----------
    units, labels : sequence, shape (n_models,)

    Returns
    -------
    pandas.Series, shape (n_units,)
        Index: units in order of first appearance; values: their labels.
    """
    if len(units) != len(labels):
        raise ValueError(f"{len(units)} units for {len(labels)} labels; give one of each per model.")
    frame = pd.DataFrame({"unit": np.asarray(units), "label": np.asarray(labels)})
    distinct = frame.groupby("unit", sort=False)["label"].nunique()
    mixed = distinct[distinct > 1].index.tolist()
    if mixed:
        raise ValueError(f"unit(s) {mixed} carry several labels; a label permuted at the unit level must be "
                         "constant within each unit (e.g. one paradigm per method).")
    return frame.groupby("unit", sort=False)["label"].first()


@dataclass(frozen=True)
class MethodGroups:
    """Each model's unit (method), each unit's group (paradigm) and each model's stratum (backbone), checked once.

    Built by :func:`method_groups`. The method-level tests of claim 1
    (:func:`sslgeom.permanova.nested_permanova`, :func:`sslgeom.permanova.metric_effects`,
    :func:`sslgeom.paradigm.unit_agreement_test`) take it instead of columns or arrays, and align
    it with their distances or values by model name (:func:`aligned_groups`).

    Attributes
    ----------
    labels : pandas.DataFrame, shape (n_models, 2 or 3)
        The group, unit and stratum columns as given, indexed by model.
    group, unit : str
        Column names: the label the tests reassign, and the unit that moves as a whole.
    stratum : str or None
        Column name of the stratum (tested within each value, statistics summed; a covariate in
        :func:`sslgeom.permanova.metric_effects`); ``None``: a single stratum.
    units : pandas.Index, shape (n_units,)
        Units in order of first appearance.
    unit_of_model : int array, shape (n_models,)
        Position in ``units`` of each model's unit.
    groups : array, shape (n_groups,)
        The distinct groups, sorted.
    group_of_unit : int array, shape (n_units,)
        Position in ``groups`` of each unit's group: the observed assignment that the tests permute.
    strata : object array, shape (n_models,)
        Stratum of each model (``"all"`` without a stratum column).
    """

    labels: pd.DataFrame = field(repr=False)
    group: str
    unit: str
    stratum: str | None
    units: pd.Index
    unit_of_model: np.ndarray = field(repr=False)
    groups: np.ndarray
    group_of_unit: np.ndarray = field(repr=False)
    strata: np.ndarray = field(repr=False)

    @property
    def models(self) -> pd.Index:
        """The models, in order: shape (n_models,)."""
        return self.labels.index

    def select(self, models: Sequence[Hashable]) -> MethodGroups:
        """The same columns for these models, in this order (units renumbered by first appearance)."""
        models = pd.Index(models)
        missing = models.difference(self.labels.index)
        if len(missing):
            raise ValueError(f"{len(missing)} model(s) have no labels, e.g. {list(missing[:3])}; give the labels "
                             "table a row for every model of the distances or values.")
        return method_groups(self.labels.loc[models], group=self.group, unit=self.unit, stratum=self.stratum)

def method_groups(
    labels: pd.DataFrame, *, group: str = "paradigm", unit: str = "method", stratum: str | None = "backbone"
) -> MethodGroups:
    """Read the group, unit and stratum columns of a labels table once, for the method-level tests.

    Parameters
    ----------
    labels : pandas.DataFrame
        One row per model, indexed by model name (e.g. the zoo's ``model_labels`` or a manifest's
        analysis rows).
    group, unit : str
        Column of the label reassigned by the tests (paradigm) and of the unit moved as a whole
        (method); the group must be constant within each unit (:func:`unit_labels`).
    stratum : str or None
        Column of the stratum (backbone), or ``None`` for one stratum.

    Returns
    -------
    MethodGroups
    """
    if not isinstance(labels, pd.DataFrame):
        raise TypeError(f"labels must be a DataFrame indexed by model, got {type(labels).__name__}.")
    columns = [group, unit] + ([stratum] if stratum is not None else [])
    absent = [c for c in columns if c not in labels.columns]
    if absent:
        raise ValueError(f"labels has no column(s) {absent}; it has {list(labels.columns)}. Name the columns "
                         "with group=, unit= and stratum= (stratum=None for a single stratum).")
    table = labels[columns]
    if table.isna().any().any():
        raise ValueError(f"labels has missing values in {table.columns[table.isna().any()].tolist()}; "
                         "every model needs a group, a unit and a stratum.")
    if not table.index.is_unique:
        raise ValueError("labels has repeated model names in its index; give one row per model.")
    per_unit = unit_labels(table[unit].to_numpy(), table[group].to_numpy())
    groups, group_of_unit = np.unique(per_unit.to_numpy(), return_inverse=True)
    unit_of_model = pd.Index(per_unit.index).get_indexer(pd.Series(table[unit].to_numpy()))
    strata = (table[stratum].to_numpy(dtype=object) if stratum is not None
              else np.full(len(table), "all", dtype=object))
    return MethodGroups(table, group, unit, stratum, pd.Index(per_unit.index), unit_of_model.astype(np.int64),
                        groups, group_of_unit.astype(np.int64), strata)


def aligned_groups(groups: MethodGroups, data) -> MethodGroups:
    """``groups`` aligned with the rows of ``data``, checked to be a :class:`MethodGroups`.

    A DataFrame's index selects the models by name (:meth:`MethodGroups.select`); the rows of an
    array (or of a distance matrix without names) must be the labelled models, in order.
    """
    if not isinstance(groups, MethodGroups):
        raise TypeError(f"groups must be a MethodGroups, got {type(groups).__name__}; build it from a labels table "
                        "indexed by model: sslgeom.design.method_groups(labels, group='paradigm', unit='method', "
                        "stratum='backbone').")
    if isinstance(data, pd.DataFrame):
        return groups.select(data.index)
    if len(data) != len(groups.labels):
        raise ValueError(f"{len(data)} rows for {len(groups.labels)} labelled models; pass a DataFrame indexed "
                         "by model, or rows in the order of the labels.")
    return groups


def _group_sizes(codes: np.ndarray) -> np.ndarray:
    return np.bincount(codes)


def count_assignments(group_sizes: Sequence[int], distinct: bool = False) -> int:
    """Number of assignments of ``sum(group_sizes)`` units to groups of these sizes.

    Labelled: the multinomial ``n! / prod(n_g!)``. Distinct partitions (``distinct=True``): groups of
    equal size are interchangeable, so divide by ``prod_s (number of groups of size s)!``; this is
    the count that matters for a statistic invariant to the names of the groups (ARI, NMI,
    pseudo-F). For sizes 2/4/2: 8!/(2! 4! 2!) = 420 labelled, 420 / 2! = 210 distinct.
    """
    sizes = [check_int(int(s), "group size", minimum=1) for s in group_sizes]
    count = math.factorial(sum(sizes))
    for size in sizes:
        count //= math.factorial(size)
    if distinct:
        for repeats in pd.Series(sizes).value_counts():
            count //= math.factorial(int(repeats))
    return count


def _labelled(n_units: int, sizes: Sequence[int]) -> list[tuple[int, ...]]:
    """All labelled assignments, as code tuples: choose group 0's members, then group 1's, ..."""
    out = []

    def fill(remaining: tuple[int, ...], group: int, codes: list[int]) -> None:
        if group == len(sizes):
            out.append(tuple(codes))
            return
        for members in itertools.combinations(remaining, sizes[group]):
            for unit in members:
                codes[unit] = group
            fill(tuple(u for u in remaining if u not in members), group + 1, codes)

    fill(tuple(range(n_units)), 0, [0] * n_units)
    return out


def _canonical(codes: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Rename groups of equal size in order of their first member: one representative per partition.

    ``codes`` is (n_assignments, n_units); codes keep their size (a group of size s maps to a code
    whose observed group also has size s), so relabelled rows stay valid assignments.
    """
    out = codes.copy()
    for size in np.unique(sizes):
        same = np.flatnonzero(sizes == size)
        if len(same) < 2:
            continue
        # first unit of each same-size group, per row: order those groups by it
        first = np.stack([np.argmax(codes == g, axis=1) for g in same], axis=1)  # (rows, len(same))
        order = np.argsort(first, axis=1)
        for rank in range(len(same)):
            source = same[order[:, rank]]  # the group that takes code same[rank]
            out[codes == source[:, None]] = same[rank]
    return out


def enumerate_assignments(codes: Sequence[int], distinct: bool = False) -> np.ndarray:
    """Every assignment of units to groups with the sizes of the observed assignment ``codes``.

    Parameters
    ----------
    codes : int sequence, shape (n_units,)
        Observed group of each unit, codes ``0 .. n_groups - 1``, every code used.
    distinct : bool
        One row per partition instead of per labelled assignment (see :func:`count_assignments`);
        valid only for statistics invariant to renaming the groups.

    Returns
    -------
    int array, shape (n_assignments, n_units)
        The observed assignment (or its canonical form) is one of the rows.
    """
    codes = np.asarray(codes, dtype=np.int64)
    sizes = _group_sizes(codes)
    if np.any(sizes == 0):
        raise ValueError("codes must use every group code 0 .. n_groups - 1.")
    rows = np.array(_labelled(len(codes), sizes.tolist()), dtype=np.int64)
    if distinct:
        rows = np.unique(_canonical(rows, sizes), axis=0)
    return rows


@dataclass(frozen=True)
class UnitTestResult:
    """Outcome of :func:`unit_permutation_test`.

    Attributes
    ----------
    statistic : float or array, shape (n_statistics,)
        On the observed assignment.
    p_value : float or array, shape (n_statistics,)
        Exact: ``#{assignments with statistic >= observed} / n_assignments`` (the observed one
        included). Monte Carlo: ``(1 + #{null >= observed}) / (1 + n_permutations)``.
    min_p : float
        Smallest p-value this test can return: ``1 / n_assignments`` or ``1 / (1 + B)``.
    exact : bool
        Whether every assignment was enumerated.
    n_assignments : int
        Assignments enumerated (exact) or random relabellings drawn (Monte Carlo, B).
    null : array, shape (n_assignments,) or (n_assignments, n_statistics)
        The statistic on every enumerated (or drawn) assignment.
    """

    statistic: float | np.ndarray
    p_value: float | np.ndarray
    min_p: float
    exact: bool
    n_assignments: int
    null: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class MethodPermutations:
    """How a method-level permutation test draws its null: enumerated when small, else Monte Carlo.

    The three settings travel together through every test that reassigns whole methods
    (:func:`unit_permutation_test` and the claims' tests built on it, e.g.
    :func:`sslgeom.permanova.nested_permanova`, :func:`sslgeom.permanova.metric_effects`,
    :func:`sslgeom.paradigm.unit_agreement_test`, :func:`sslgeom.crossval.paired_comparison`);
    each test keeps its own defaults in its default argument. Frozen and validated once.

    Attributes
    ----------
    max_enumerate : int
        Largest number of assignments enumerated (an exact test), at least 1; more than that and
        the test draws ``n_permutations`` random ones.
    n_permutations : int
        Random relabellings of the Monte Carlo fallback, at least 1.
    seed : int
        Seeds the random relabellings (unused when the test is exact), at least 0.

    Examples
    --------
    ``MethodPermutations(max_enumerate=100, n_permutations=199, seed=1)``: exact up to 100
    assignments, else 199 random ones.
    """

    max_enumerate: int = 20_000
    n_permutations: int = 9_999
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "max_enumerate", check_int(self.max_enumerate, "max_enumerate", minimum=1))
        object.__setattr__(self, "n_permutations", check_int(self.n_permutations, "n_permutations", minimum=1))
        object.__setattr__(self, "seed", check_int(self.seed, "seed", minimum=0))


def unit_permutation_test(
    statistic: Callable[[np.ndarray], np.ndarray],
    codes: Sequence[int],
    *,
    distinct: bool = True,
    permutations: MethodPermutations = MethodPermutations(),
) -> UnitTestResult:
    """Permutation test that reassigns whole units (methods) to groups (paradigms).

    Under the null hypothesis the paradigm labels are exchangeable among methods: every
    assignment of methods to paradigms with the observed group sizes is equally likely. When
    there are at most ``permutations.max_enumerate`` of them they are all enumerated and the p-value
    is exact (its smallest value ``1 / n_assignments``: 1/210 for 8 methods in groups of 2/4/2);
    otherwise ``permutations.n_permutations`` random relabellings, drawn from
    ``permutations.seed``, give a Monte Carlo p-value.

    Parameters
    ----------
    statistic : callable
        Vectorised: unit codes ``(n_assignments, n_units)`` -> values ``(n_assignments,)``, or
        ``(n_assignments, n_statistics)`` for several statistics tested on the same relabellings
        (e.g. one per metric); larger means stronger evidence. Seeds and backbones of a unit move
        with it because the statistic maps unit codes to its models itself
        (``unit_codes[:, unit_of_model]``).
    codes : int sequence, shape (n_units,)
        Observed group of each unit (codes ``0 .. n_groups - 1``).
    distinct : bool
        Enumerate partitions (statistic invariant to group names) rather than labelled assignments.
    permutations : MethodPermutations
        Largest enumeration, and the relabellings and seed of the Monte Carlo fallback.

    Returns
    -------
    UnitTestResult
    """
    codes = np.asarray(codes, dtype=np.int64)
    n_total = count_assignments(_group_sizes(codes), distinct=distinct)
    observed = np.asarray(statistic(codes[None, :]), dtype=np.float64)[0]
    exact = n_total <= permutations.max_enumerate
    if exact:
        assignments = enumerate_assignments(codes, distinct=distinct)
    else:
        rng = np.random.default_rng(permutations.seed)
        assignments = np.stack([rng.permutation(codes) for _ in range(permutations.n_permutations)])
    null = np.asarray(statistic(assignments), dtype=np.float64)
    if exact:
        p_value = (exact_pvalue(float(observed), null) if observed.ndim == 0
                   else np.array([exact_pvalue(o, null[:, j]) for j, o in enumerate(observed)]))
        min_p = 1.0 / len(null)
    else:
        p_value = permutation_pvalue(observed, null)
        min_p = 1.0 / (len(null) + 1)
    statistic_value = float(observed) if observed.ndim == 0 else observed
    return UnitTestResult(statistic_value, p_value, min_p, exact, len(null), null)


def _positions(units: np.ndarray, positions: Sequence[Hashable] | None) -> np.ndarray:
    """Position key of each row within its unit: given, or the order of appearance in the unit."""
    if positions is not None:
        keys = pd.Series(list(positions), dtype=object)
        if len(keys) != len(units):
            raise ValueError(f"{len(keys)} positions for {len(units)} rows.")
        return keys.to_numpy()
    return pd.Series(units).groupby(units, sort=False).cumcount().to_numpy()


def unit_permutations(
    units: Sequence[Hashable],
    n_permutations: int,
    seed: int = 0,
    positions: Sequence[Hashable] | None = None,
) -> np.ndarray:
    """Row indices that permute whole units: ``y[index[b]]`` moves every unit's values together.

    Unit ``u`` receives the values of unit ``pi(u)``, matched position by position (e.g. position =
    (backbone, seed, budget)), so a permuted target keeps the design: the seed-0 full-budget model
    of simclr gets the seed-0 full-budget target of, say, dino. Only units with the same set of
    positions can swap; a unit with a set of its own (a reference with fewer checkpoints) stays.

    Parameters
    ----------
    units : sequence, shape (n_rows,)
        Unit of each row (e.g. method).
    n_permutations : int
    seed : int
    positions : sequence of hashable, shape (n_rows,), optional
        Position of each row within its unit, unique within a unit; default: order of appearance.

    Returns
    -------
    int array, shape (n_permutations, n_rows)
    """
    check_int(n_permutations, "n_permutations", minimum=1)
    units = np.asarray(units)
    keys = _positions(units, positions)
    row_of: dict[Hashable, dict[Hashable, int]] = {}
    for row, (unit, key) in enumerate(zip(units.tolist(), keys.tolist())):
        if key in row_of.setdefault(unit, {}):
            raise ValueError(f"unit {unit!r} has position {key!r} twice; positions must be unique within a unit.")
        row_of[unit][key] = row
    # units with the same set of positions form a class; permutations act within classes
    classes: dict[frozenset, list[Hashable]] = {}
    for unit, rows in row_of.items():
        classes.setdefault(frozenset(rows), []).append(unit)
    rng = np.random.default_rng(seed)
    out = np.empty((n_permutations, len(units)), dtype=np.int64)
    for b in range(n_permutations):
        for members in classes.values():
            for unit, source in zip(members, rng.permutation(len(members))):
                donor = row_of[members[source]]
                for key, row in row_of[unit].items():
                    out[b, row] = donor[key]
    return out


def within_strata_permutations(
    codes: Sequence[int], strata: Sequence[Hashable] | None, n_permutations: int, seed: int = 0
) -> np.ndarray:
    """Permuted label codes, shuffled only within strata (each stratum keeps its own labels).

    Without strata this draws ``rng.permutation(codes)`` ``n_permutations`` times from
    ``numpy.random.default_rng(seed)``: the very sequence scikit-bio's ``permanova`` uses, so the
    two give the same p-value for the same seed.

    Returns
    -------
    int array, shape (n_permutations, n_rows)
    """
    check_int(n_permutations, "n_permutations", minimum=1)
    codes = np.asarray(codes, dtype=np.int64)
    rng = np.random.default_rng(seed)
    if strata is None:
        return np.stack([rng.permutation(codes) for _ in range(n_permutations)])
    strata = np.asarray(strata)
    if len(strata) != len(codes):
        raise ValueError(f"{len(strata)} strata for {len(codes)} rows.")
    blocks = [np.flatnonzero(strata == s) for s in pd.unique(strata)]
    out = np.empty((n_permutations, len(codes)), dtype=np.int64)
    for b in range(n_permutations):
        for rows in blocks:
            out[b, rows] = rng.permutation(codes[rows])
    return out
