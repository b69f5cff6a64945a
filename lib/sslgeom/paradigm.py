"""Paradigm statistics: compare models through their geometry and test what explains it.

Works on the tidy geometry table of :mod:`sslgeom.geometry` (or any table with its columns, so
everything here can be tested on synthetic zoos): one geometry vector per model
(:func:`geometry_vectors`), z-scored distances between them (:func:`model_distances`),
hierarchical clusters (:func:`cluster_models`), their agreement with a label such as the training
paradigm (:func:`cluster_agreement`), per-feature effect sizes (:func:`effect_sizes`), a
two-dimensional map (:func:`embedding_2d`), invariance ranks (:func:`invariance_ranking`), and the
geometry tables of the analysis variants (:func:`sensitivity_variants`). There is no test that
shuffles labels between *models*: seeds of one method are replicates, not independent units, so
every test of a label reassigns whole methods (below).

With the method as the unit (the zoo's design, :mod:`sslgeom.design`): cluster agreement over
every partition of the methods into paradigms (:func:`unit_agreement_test`), paradigm labels moved
between paradigms (:func:`relabel`); for claim 3, a scale-free invariance measure
(:func:`scale_free_invariance`) checked against the direct sensitivity of chapter 02
(:func:`direct_sensitivity`) by rank agreement with whole methods permuted (:func:`rank_agreement`,
:func:`rank_agreement_power`); and the budget checkpoints of a run as a trajectory
(:func:`run_trajectories`).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sslgeom.design import MethodPermutations
from sslgeom.geometry import GeometrySettings, check_table, geometry_table
from sslgeom.stats import permutation_pvalue
from sslgeom.validation import check_choice, check_int

#: Linkage rules of :func:`cluster_models`.
LINKAGES: tuple[str, ...] = ("average", "complete", "single", "ward")

__all__ = [
    "LINKAGES",
    "geometry_vectors",
    "standardize",
    "model_distances",
    "cluster_models",
    "cluster_agreement",
    "effect_sizes",
    "eta_squared_interval",
    "embedding_2d",
    "invariance_ranking",
    "sensitivity_variants",
    "AgreementResult",
    "unit_agreement_test",
    "relabel",
    "direct_sensitivity",
    "scale_free_invariance",
    "AgreementTest",
    "rank_agreement",
    "rank_agreement_power",
    "run_trajectories",
]


def geometry_vectors(
    table: pd.DataFrame,
    graph: str = "nnk",
    statistics: Sequence[str] | None = ("mean",),
    metrics: Sequence[str] | None = None,
    manifolds: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One geometry vector per model: the table pivoted to (models, features).

    Parameters
    ----------
    table : pandas.DataFrame
        Geometry table (columns :data:`TABLE_COLUMNS`).
    graph : {"nnk", "knn"}
        Which neighbourhood's metrics to use.
    statistics, metrics, manifolds : sequence of str, optional
        Keep only these (``None``: all).

    Returns
    -------
    pandas.DataFrame, shape (n_models, n_features)
        Columns named ``"manifold/family/metric/statistic"``, sorted.

    Warns
    -----
    UserWarning
        When a feature is undefined (NaN or absent) for some model; that feature is left out.
    """
    check_table(table)
    rows = table[table["graph"] == graph]
    if statistics is not None:
        rows = rows[rows["statistic"].isin(statistics)]
    if metrics is not None:
        rows = rows[rows["metric"].isin(metrics)]
    if manifolds is not None:
        rows = rows[rows["manifold"].isin(manifolds)]
    if rows.empty:
        raise ValueError(
            f"no rows left for graph={graph!r}, statistics={statistics}, metrics={metrics}, "
            f"manifolds={manifolds}; available graphs {sorted(table['graph'].unique())}, "
            f"statistics {sorted(table['statistic'].unique())}, metrics {sorted(table['metric'].unique())}."
        )
    names = rows["manifold"] + "/" + rows["family"] + "/" + rows["metric"] + "/" + rows["statistic"]
    wide = rows.assign(feature=names).pivot_table(index="model", columns="feature", values="value", aggfunc="first")
    wide = wide.reindex(sorted(wide.columns), axis=1)
    wide.columns.name = None
    holes = wide.columns[wide.isna().any()].tolist()
    if holes:
        # A summary is NaN (or absent) when a metric is undefined on a manifold for some model,
        # e.g. subspace angles where every node has a single neighbour: such a feature cannot be
        # compared across models, so it is left out, loudly.
        warnings.warn(f"{len(holes)} geometry feature(s) are undefined for some models and are left out: "
                      f"{holes[:5]}{' ...' if len(holes) > 5 else ''}", stacklevel=2)
        wide = wide.drop(columns=holes)
    return wide


def standardize(vectors: pd.DataFrame) -> pd.DataFrame:
    """Z-score each column across models and drop columns that are constant.

    Metrics live on different scales (counts, angles, distances); z-scoring gives each the same
    weight in model distances.
    """
    spread = vectors.std(axis=0, ddof=0)
    kept = vectors.loc[:, spread > 1e-12 * (1 + vectors.abs().max(axis=0))]
    return (kept - kept.mean(axis=0)) / kept.std(axis=0, ddof=0)


def model_distances(vectors: pd.DataFrame, standardized: bool = True) -> pd.DataFrame:
    """Euclidean distances between model geometry vectors.

    Parameters
    ----------
    vectors : pandas.DataFrame, shape (n_models, n_features)
    standardized : bool
        Z-score features first (see :func:`standardize`).

    Returns
    -------
    pandas.DataFrame, shape (n_models, n_models)
        Symmetric, zero diagonal, indexed by model on both axes.
    """
    from scipy.spatial.distance import pdist, squareform

    values = standardize(vectors) if standardized else vectors
    if not np.all(np.isfinite(values.to_numpy())):
        raise ValueError("geometry vectors contain NaN or infinite values; check the geometry table.")
    matrix = squareform(pdist(values.to_numpy(dtype=np.float64), metric="euclidean"))
    return pd.DataFrame(matrix, index=vectors.index, columns=vectors.index)


def cluster_models(
    distances: pd.DataFrame | np.ndarray, n_clusters: int, method: str = "average"
) -> tuple[np.ndarray, np.ndarray]:
    """Agglomerative clustering of models from their distance matrix.

    Parameters
    ----------
    distances : array or DataFrame, shape (n_models, n_models)
    n_clusters : int
        Number of flat clusters cut from the tree.
    method : {"average", "complete", "single", "ward"}
        Linkage rule (``"ward"`` assumes Euclidean distances).

    Returns
    -------
    labels : int array, shape (n_models,)
        Cluster index of each model, 0-based.
    linkage : array, shape (n_models - 1, 4)
        SciPy linkage matrix (for dendrograms).
    """
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    check_choice(method, LINKAGES, "linkage method")
    matrix = np.asarray(distances, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"distances must be a square matrix; got shape {matrix.shape}.")
    if not np.allclose(matrix, matrix.T) or np.any(np.diag(matrix) != 0):
        raise ValueError("distances must be symmetric with a zero diagonal.")
    if not 1 <= n_clusters <= len(matrix):
        raise ValueError(f"n_clusters must be between 1 and {len(matrix)} (the number of models); got {n_clusters}.")
    tree = linkage(squareform(matrix, checks=False), method=method)
    labels = fcluster(tree, t=n_clusters, criterion="maxclust") - 1
    return labels.astype(np.int64), tree


def cluster_agreement(clusters: Sequence, labels: Sequence) -> dict[str, float]:
    """Adjusted Rand index and normalised mutual information between two labelings."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    clusters, labels = np.asarray(clusters), np.asarray(labels)
    if clusters.shape != labels.shape:
        raise ValueError(f"clusters {clusters.shape} and labels {labels.shape} must have the same length.")
    return {"ari": float(adjusted_rand_score(labels, clusters)),
            "nmi": float(normalized_mutual_info_score(labels, clusters))}


def _fast_agreement(clusters: np.ndarray, codes: np.ndarray, n_clusters: int, n_labels: int) -> tuple[float, float]:
    """ARI and NMI (arithmetic normalisation) from integer codes via one contingency table.

    Same values as scikit-learn's functions for non-degenerate labelings (both with at least two
    groups), without their input validation, which dominates the cost inside a permutation loop.
    """
    n = len(codes)
    table = np.bincount(clusters * n_labels + codes, minlength=n_clusters * n_labels).reshape(n_clusters, n_labels)
    rows, cols = table.sum(axis=1), table.sum(axis=0)
    pairs = lambda counts: float(np.sum(counts * (counts - 1)) / 2)  # noqa: E731
    total_pairs = n * (n - 1) / 2
    index, row_pairs, col_pairs = pairs(table), pairs(rows), pairs(cols)
    expected = row_pairs * col_pairs / total_pairs
    maximum = (row_pairs + col_pairs) / 2
    ari = (index - expected) / (maximum - expected) if maximum != expected else 1.0
    nonzero = table > 0
    joint = table[nonzero] / n
    outer = (rows[:, None] * cols[None, :])[nonzero] / n**2
    mutual = float(np.sum(joint * np.log(joint / outer)))
    entropy = lambda counts: -float(np.sum((counts[counts > 0] / n) * np.log(counts[counts > 0] / n)))  # noqa: E731
    denominator = (entropy(rows) + entropy(cols)) / 2
    nmi = mutual / denominator if denominator > 0 else 1.0
    return float(ari), float(max(nmi, 0.0))


def _eta_squared(values: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Between-group share of variance, per column: values (n, f), codes (n,) -> (f,)."""
    total = ((values - values.mean(axis=0)) ** 2).sum(axis=0)
    counts = np.bincount(codes, minlength=n_groups).astype(np.float64)
    sums = np.zeros((n_groups, values.shape[1]))
    np.add.at(sums, codes, values)
    present = counts > 0
    means = sums[present] / counts[present, None]
    between = (counts[present, None] * (means - values.mean(axis=0)) ** 2).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, between / total, 0.0)


def eta_squared_interval(eta2: float, n_groups: int, n_total: int, level: float = 0.95) -> tuple[float, float]:
    """Confidence interval of eta squared by inverting the noncentral F distribution.

    With ``F = (eta2 / df1) / ((1 - eta2) / df2)``, ``df1 = n_groups - 1`` and
    ``df2 = n_total - n_groups``, find the noncentrality ``lambda`` at which the observed ``F``
    sits at the upper and lower tail quantiles, and map it back with
    ``eta2 = lambda / (lambda + n_total)`` (Steiger, Psychological Methods 2004). Assumes normal
    errors with equal variances (one-way fixed-effects ANOVA).

    Returns
    -------
    (low, high) : tuple of float, within [0, 1]
    """
    from scipy.optimize import brentq
    from scipy.stats import ncf

    df1, df2 = n_groups - 1, n_total - n_groups
    if df1 < 1 or df2 < 1:
        raise ValueError(f"need at least 2 groups and more models than groups; got {n_groups} groups, {n_total} models.")
    if eta2 >= 1:
        return 1.0, 1.0
    f_value = (eta2 / df1) / ((1 - eta2) / df2)
    tail = (1 - level) / 2

    def noncentrality(probability: float) -> float:
        # cdf(F; lambda) decreases in lambda: find where it equals `probability`, or 0 if already below
        gap = lambda lam: ncf.cdf(f_value, df1, df2, lam) - probability  # noqa: E731
        if gap(0.0) <= 0:
            return 0.0
        upper = max(10.0, 10 * f_value * df1)
        while gap(upper) > 0:
            upper *= 2
        return brentq(gap, 0.0, upper, xtol=1e-10)

    low, high = noncentrality(1 - tail), noncentrality(tail)
    return low / (low + n_total), high / (high + n_total)


def effect_sizes(
    vectors: pd.DataFrame,
    labels: Sequence,
    n_permutations: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """How strongly each geometry feature separates the label groups.

    For each feature: eta squared (between-group sum of squares over total, one-way ANOVA), its
    confidence interval from the noncentral F distribution (:func:`eta_squared_interval`), a
    permutation p-value (shuffled labels, no normality assumed), and Benjamini-Hochberg q-values
    over features. With k groups and n models eta squared is about (k - 1) / (n - 1) by chance
    alone; the column ``null_mean`` shows the permutation average to compare against.

    Parameters
    ----------
    vectors : pandas.DataFrame, shape (n_models, n_features)
    labels : sequence, shape (n_models,)
        Group of each model (e.g. training paradigm).
    n_permutations : int
    seed : int
    level : float
        Confidence level of the interval.

    Returns
    -------
    pandas.DataFrame
        Index: feature; columns ``eta2, eta2_low, eta2_high, null_mean, p_value, q_value``,
        sorted by eta squared.
    """
    from scipy.stats import false_discovery_control

    labels = np.asarray(labels)
    if len(labels) != len(vectors):
        raise ValueError(f"{len(labels)} labels for {len(vectors)} models.")
    groups, codes = np.unique(labels, return_inverse=True)
    if len(groups) < 2:
        raise ValueError("labels hold a single group; effect sizes need at least two.")
    values = vectors.to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError("geometry vectors contain NaN or infinite values.")
    rng = np.random.default_rng(seed)
    observed = _eta_squared(values, codes, len(groups))
    intervals = np.array([eta_squared_interval(e, len(groups), len(labels), level) for e in observed])
    null = np.empty((n_permutations, values.shape[1]))
    for i in range(n_permutations):
        null[i] = _eta_squared(values, rng.permutation(codes), len(groups))
    p_value = permutation_pvalue(observed, null)
    table = pd.DataFrame(
        {"eta2": observed, "eta2_low": intervals[:, 0], "eta2_high": intervals[:, 1],
         "null_mean": null.mean(axis=0), "p_value": p_value,
         "q_value": false_discovery_control(p_value, method="bh")},
        index=vectors.columns,
    )
    return table.sort_values("eta2", ascending=False)


def embedding_2d(distances: pd.DataFrame, method: str = "mds", seed: int = 0) -> pd.DataFrame:
    """Two-dimensional map of models that preserves their distances as well as possible.

    Parameters
    ----------
    distances : pandas.DataFrame, shape (n_models, n_models)
    method : {"mds", "classical"}
        Metric MDS (SMACOF, seeded) or classical MDS (principal coordinates, equal to PCA of the
        standardised vectors for Euclidean distances).

    Returns
    -------
    pandas.DataFrame
        Index: models; columns ``x, y``.
    """
    matrix = distances.to_numpy(dtype=np.float64)
    if method == "mds":
        from sklearn.manifold import MDS

        mds = MDS(n_components=2, metric_mds=True, metric="precomputed", random_state=seed,
                  n_init=4, init="random")
        coords = mds.fit_transform(matrix)
    elif method == "classical":
        n = len(matrix)
        centring = np.eye(n) - np.ones((n, n)) / n
        gram = -0.5 * centring @ (matrix**2) @ centring
        eigenvalues, eigenvectors = np.linalg.eigh(gram)
        order = np.argsort(eigenvalues)[::-1][:2]
        coords = eigenvectors[:, order] * np.sqrt(np.maximum(eigenvalues[order], 0))
    else:
        raise ValueError(f"method must be 'mds' or 'classical'; got {method!r}.")
    return pd.DataFrame(coords, index=distances.index, columns=["x", "y"])


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


# ---------------------------------------------------------------------------------------------
# Does a label explain the clusters? The test of chapter 04 and its sensitivity analysis
# ---------------------------------------------------------------------------------------------

def sensitivity_variants(
    model_names: Sequence[str],
    settings: GeometrySettings,
    *,
    ks: Sequence[int] = (),
    kernel: str = "",
    n_base: int = 0,
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, tuple[pd.DataFrame, str]]:
    """Geometry tables of the analysis variants: the main one and one per changed choice.

    Variants, in this order: ``"main"`` (``settings``, NNK metrics); ``"k=<k>"`` for each of
    ``ks``; ``"kernel=<kernel>"`` if ``kernel`` is given and differs from ``settings.kernel``;
    ``"n_base=<n>"`` if ``n_base`` is non-zero and differs from ``settings.n_base``; ``"kNN graph"``
    (the main table's kNN metrics, if ``settings.graphs`` holds ``"knn"``). Changed variants
    compute NNK metrics only (the kNN baseline is needed once) and are cached like any table.

    Returns
    -------
    dict of str to (pandas.DataFrame, str)
        Variant name -> (geometry table, graph whose metrics it is read on).
    """
    main = geometry_table(model_names, settings, device=device, progress=progress)
    nnk_only = dataclasses.replace(settings, graphs=("nnk",))
    changed = [dataclasses.replace(nnk_only, k=other_k) for other_k in ks]
    names = [f"k={other_k}" for other_k in ks]
    if kernel and kernel != settings.kernel:
        changed.append(dataclasses.replace(nnk_only, kernel=kernel))
        names.append(f"kernel={kernel}")
    if n_base and n_base != settings.n_base:
        changed.append(dataclasses.replace(nnk_only, n_base=n_base))
        names.append(f"n_base={n_base}")
    variants = {"main": (main, "nnk")}
    for name, variant in zip(names, changed):
        variants[name] = (geometry_table(model_names, variant, device=device, progress=progress), "nnk")
    if "knn" in settings.graphs:
        variants["kNN graph"] = (main, "knn")
    return variants


# ---------------------------------------------------------------------------------------------
# Claim 1 with the method as the unit: cluster agreement over method partitions, label variants
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AgreementResult:
    """Outcome of :func:`unit_agreement_test`.

    Attributes
    ----------
    ari, nmi : float
        Observed agreement, averaged over strata.
    p_ari, p_nmi : float
        Exact (``#{assignments with agreement >= observed} / n_assignments``) or Monte Carlo.
    min_p : float
        Smallest p-value the test can return (``1 / n_assignments`` when exact).
    exact : bool
    n_assignments : int
        Partitions of the methods enumerated (exact) or drawn.
    per_stratum : pandas.DataFrame
        One row per stratum: ``models, clusters, ARI, NMI`` (observed).
    clusters : pandas.Series
        Cluster of each model (within its stratum), indexed by model.
    null_ari, null_nmi : array, shape (n_assignments,)
    """

    ari: float
    nmi: float
    p_ari: float
    p_nmi: float
    min_p: float
    exact: bool
    n_assignments: int
    per_stratum: pd.DataFrame
    clusters: pd.Series = field(repr=False)
    null_ari: np.ndarray = field(repr=False)
    null_nmi: np.ndarray = field(repr=False)


def unit_agreement_test(
    distances: pd.DataFrame,
    labels: pd.DataFrame,
    *,
    group: str = "paradigm",
    unit: str = "method",
    stratum: str | None = "backbone",
    method: str = "average",
    permutations: MethodPermutations = MethodPermutations(),
) -> AgreementResult:
    """Do geometry clusters agree with the paradigm more than other groupings of the *methods* would?

    Within each stratum (backbone) the models' tree is cut into as many clusters as there are
    groups (paradigms); the statistic is the ARI (and NMI) between clusters and paradigms,
    averaged over strata. Under the null hypothesis methods are exchangeable between paradigms,
    so the null reassigns *whole methods* (every seed and backbone of a method together, the same
    reassignment in every stratum) to groups of the observed sizes: every distinct partition when
    there are at most ``permutations.max_enumerate`` (ARI and NMI ignore group names; 8 methods in
    2/4/2 give 210 partitions, smallest p-value 1/210), else ``permutations.n_permutations`` random
    ones (:func:`sslgeom.design.unit_permutation_test`). The clusters come from geometry alone and stay
    fixed.

    Parameters
    ----------
    distances : pandas.DataFrame, shape (n_models, n_models)
        From :func:`model_distances` (all strata together; only within-stratum blocks are used).
    labels : pandas.DataFrame
        Indexed by model (at least the models of ``distances``), columns ``group``, ``unit`` and
        ``stratum``.
    group, unit, stratum : str
        Column names; ``stratum=None`` treats all models as one stratum.
    method : str
        Linkage rule (:data:`LINKAGES`).
    permutations : MethodPermutations
        As in :func:`sslgeom.design.unit_permutation_test`.

    Returns
    -------
    AgreementResult
    """
    from sslgeom.design import unit_labels, unit_permutation_test

    rows = labels.loc[distances.index]
    per_unit = unit_labels(rows[unit].astype(str).to_numpy(), rows[group].astype(str).to_numpy())
    groups, observed = np.unique(per_unit.to_numpy(), return_inverse=True)
    if len(groups) < 2:
        raise ValueError(f"the {unit}s fall into a single {group}; agreement needs at least two groups.")
    unit_of_model = pd.Index(per_unit.index).get_indexer(rows[unit].astype(str))
    strata = rows[stratum].astype(str).to_numpy() if stratum is not None else np.full(len(rows), "all")
    blocks, table, clusters = [], [], pd.Series(0, index=distances.index, dtype=np.int64)
    for value in pd.unique(strata):
        keep = np.flatnonzero(strata == value)
        n_clusters = min(len(groups), len(keep))
        if len(keep) < 2:
            continue
        codes, _ = cluster_models(distances.iloc[keep, keep], n_clusters, method=method)
        clusters.iloc[keep] = codes
        blocks.append((codes, unit_of_model[keep], int(codes.max()) + 1))
        ari, nmi = _fast_agreement(codes, observed[unit_of_model[keep]], int(codes.max()) + 1, len(groups))
        table.append({"stratum": value, "models": len(keep), "clusters": n_clusters, "ARI": ari, "NMI": nmi})
    if not blocks:
        raise ValueError("no stratum holds two or more models.")

    def agreement(assignments: np.ndarray) -> np.ndarray:
        out = np.zeros((len(assignments), 2))
        for codes, units_here, n_clusters in blocks:
            for b, assignment in enumerate(assignments):
                out[b] += _fast_agreement(codes, assignment[units_here], n_clusters, len(groups))
        return out / len(blocks)

    test = unit_permutation_test(agreement, observed, distinct=True, permutations=permutations)
    statistic, p_value = np.atleast_1d(test.statistic), np.atleast_1d(test.p_value)
    return AgreementResult(float(statistic[0]), float(statistic[1]), float(p_value[0]), float(p_value[1]),
                           test.min_p, test.exact, test.n_assignments,
                           pd.DataFrame(table).set_index("stratum"), clusters, test.null[:, 0], test.null[:, 1])


def relabel(labels: pd.DataFrame, moves: Mapping[str, str], *, group: str = "paradigm",
            unit: str = "method") -> pd.DataFrame:
    """A copy of ``labels`` with some units moved to another group (e.g. DINO to non-contrastive).

    Parameters
    ----------
    labels : pandas.DataFrame
        Columns ``group`` and ``unit``.
    moves : mapping of str to str
        Unit -> its new group. Units absent from ``labels`` are ignored (a smaller zoo).

    Returns
    -------
    pandas.DataFrame
        Same index and columns.
    """
    out = labels.copy()
    for name, new_group in moves.items():
        out.loc[out[unit].astype(str) == str(name), group] = str(new_group)
    return out


# ---------------------------------------------------------------------------------------------
# Claim 3: a scale-free invariance measure, checked against the direct sensitivity of chapter 02
# ---------------------------------------------------------------------------------------------

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
    from sslgeom.design import unit_permutations
    from sslgeom.stats import bh

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


# ---------------------------------------------------------------------------------------------
# Budget axis: the checkpoints of one run as a trajectory
# ---------------------------------------------------------------------------------------------

def run_trajectories(distances: pd.DataFrame, labels: pd.DataFrame, *, run: str = "run_id",
                     budget: str = "budget_fraction") -> pd.DataFrame:
    """How far each run's geometry moves between its budget checkpoints.

    Parameters
    ----------
    distances : pandas.DataFrame, shape (n_models, n_models)
    labels : pandas.DataFrame
        Indexed by model; columns ``run`` and ``budget``.

    Returns
    -------
    pandas.DataFrame
        One row per run (with at least two checkpoints) and per budget below the largest:
        ``run, budget, to_final`` (distance to the run's last checkpoint) and ``step`` (distance
        to the run's next checkpoint).
    """
    rows = labels.loc[distances.index]
    out = []
    for run_id, members in rows.groupby(run, sort=False):
        ordered = members.sort_values(budget)
        if len(ordered) < 2:
            continue
        names, final = list(ordered.index), ordered.index[-1]
        for current, following in zip(names[:-1], names[1:]):
            out.append({"run": run_id, "budget": float(ordered.loc[current, budget]),
                        "to_final": float(distances.loc[current, final]),
                        "step": float(distances.loc[current, following])})
    return pd.DataFrame(out, columns=["run", "budget", "to_final", "step"])
