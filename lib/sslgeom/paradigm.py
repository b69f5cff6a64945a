"""Paradigm statistics: compare models through their geometry and test what explains it.

Works on the tidy geometry table of :mod:`sslgeom.geometry` (or any table with its columns, so
everything here can be tested on synthetic zoos): one geometry vector per model
(:func:`geometry_vectors`), z-scored distances between them (:func:`model_distances`),
hierarchical clusters (:func:`cluster_models`), their agreement with a label such as the training
paradigm (:func:`cluster_agreement`), a two-dimensional map (:func:`embedding_2d`), and the
geometry tables of the analysis variants (:func:`sensitivity_variants`). There is no test that
shuffles labels between *models*: seeds of one method are replicates, not independent units, so
every test of a label reassigns whole methods (below).

With the method as the unit (the zoo's design, :mod:`sslgeom.design`): cluster agreement over
every partition of the methods into paradigms (:func:`unit_agreement_test`, labels read once by
:func:`sslgeom.design.method_groups`), paradigm labels moved between paradigms (:func:`relabel`);
and the budget checkpoints of a run as a trajectory (:func:`run_trajectories`). Claim 3's
invariance measures are in :mod:`sslgeom.invariance`.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sslgeom.design import MethodGroups, MethodPermutations, aligned_groups, unit_permutation_test
from sslgeom.geometry import GeometrySettings, check_table, geometry_table
from sslgeom.validation import check_choice

#: Linkage rules of :func:`cluster_models`.
LINKAGES: tuple[str, ...] = ("average", "complete", "single", "ward")

__all__ = [
    "LINKAGES",
    "geometry_vectors",
    "standardize",
    "model_distances",
    "cluster_models",
    "cluster_agreement",
    "embedding_2d",
    "sensitivity_variants",
    "AgreementResult",
    "unit_agreement_test",
    "relabel",
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
    groups: MethodGroups,
    *,
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
    groups : MethodGroups
        Paradigm (group), method (unit) and backbone (stratum; ``stratum=None`` treats all models
        as one stratum) of at least the models of ``distances``
        (:func:`sslgeom.design.method_groups`).
    method : str
        Linkage rule (:data:`LINKAGES`).
    permutations : MethodPermutations
        As in :func:`sslgeom.design.unit_permutation_test`.

    Returns
    -------
    AgreementResult
    """
    check_choice(method, LINKAGES, "linkage method")  # before any clustering
    groups = aligned_groups(groups, distances)
    n_groups, observed, unit_of_model = len(groups.groups), groups.group_of_unit, groups.unit_of_model
    if n_groups < 2:
        raise ValueError(f"the {groups.unit}s fall into a single {groups.group}; agreement needs at least two groups.")
    strata = groups.strata
    blocks, table, clusters = [], [], pd.Series(0, index=distances.index, dtype=np.int64)
    for value in pd.unique(strata):
        keep = np.flatnonzero(strata == value)
        n_clusters = min(n_groups, len(keep))
        if len(keep) < 2:
            continue
        codes, _ = cluster_models(distances.iloc[keep, keep], n_clusters, method=method)
        clusters.iloc[keep] = codes
        blocks.append((codes, unit_of_model[keep], int(codes.max()) + 1))
        ari, nmi = _fast_agreement(codes, observed[unit_of_model[keep]], int(codes.max()) + 1, n_groups)
        table.append({"stratum": value, "models": len(keep), "clusters": n_clusters, "ARI": ari, "NMI": nmi})
    if not blocks:
        raise ValueError("no stratum holds two or more models.")

    def agreement(assignments: np.ndarray) -> np.ndarray:
        out = np.zeros((len(assignments), 2))
        for codes, units_here, n_clusters in blocks:
            for b, assignment in enumerate(assignments):
                out[b] += _fast_agreement(codes, assignment[units_here], n_clusters, n_groups)
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
