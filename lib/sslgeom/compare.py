"""Geometry versus training paradigm: per-model geometry vectors, distances, clustering, tests.

The central object is the *geometry table*, a tidy DataFrame with one row per
``(model, manifold, family, graph, metric, statistic)`` and a ``value``:

* ``manifold`` is ``"semantic"`` or ``"augmentation"``;
* ``family`` is ``"within_class"`` (class manifolds, metrics pooled over classes) or ``"pooled"``
  (all classes in one graph) for semantic manifolds; for augmentation manifolds it is the
  augmentation family (one curve of views per base image) or ``"composition"`` (a cloud of random
  compositions of all families per base image);
* ``graph`` is ``"nnk"`` or ``"knn"`` (the baseline neighbourhood);
* ``statistic`` is a summary over nodes (mean, median, quantiles).

:func:`geometry_table` builds it for zoo models (cached by checkpoint hashes and parameters);
everything else works on plain tables so it can be tested on synthetic zoos.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from .embed import ModelLike

__all__ = [
    "TABLE_COLUMNS",
    "model_labels",
    "geometry_vectors",
    "standardize",
    "model_distances",
    "cluster_models",
    "cluster_agreement",
    "PermutationResult",
    "permutation_test",
    "effect_sizes",
    "eta_squared_interval",
    "embedding_2d",
    "invariance_ranking",
    "geometry_table",
    "grouped_nnk",
]

TABLE_COLUMNS: tuple[str, ...] = ("model", "manifold", "family", "graph", "metric", "statistic", "value")


def _check_table(table: pd.DataFrame) -> None:
    missing = [c for c in TABLE_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(
            f"geometry table lacks columns {missing}; expected {list(TABLE_COLUMNS)} "
            "(build it with sslgeom.compare.geometry_table)."
        )


def select_models(models: Sequence[str] | None = None, models_per_paradigm: int = 0) -> list[str]:
    """The model names a chapter studies.

    Parameters
    ----------
    models
        Explicit names (default zoo or ``published/<key>``); ``None`` means the default zoo.
    models_per_paradigm
        With ``models=None``: keep only the first this many models of each paradigm in manifest
        order (``0`` keeps all). The smoke profile uses it to run on a small zoo.

    Returns
    -------
    list of str
    """
    if models is not None:
        if isinstance(models, str) or not all(isinstance(name, str) for name in models):
            raise TypeError(f"models must be a list of model names or None, got {models!r}")
        return list(models)
    if not isinstance(models_per_paradigm, int) or models_per_paradigm < 0:
        raise ValueError(f"models_per_paradigm must be a non-negative integer, got {models_per_paradigm!r}")
    from . import zoo

    manifest = zoo.manifest()
    if models_per_paradigm:
        manifest = manifest.groupby("paradigm", sort=False).head(models_per_paradigm)
    return list(manifest["name"])


def model_labels(model_names: Sequence[str]) -> pd.DataFrame:
    """The labels that could explain a model's geometry: method, paradigm, backbone, policy.

    Default-zoo models take them from :func:`sslgeom.zoo.manifest`; published checkpoints
    (``published/<key>``) from their registry entry (backbone ``resnet50``, policy
    ``published``). A missing policy (random initialisation) reads ``"none"``.

    Returns
    -------
    pandas.DataFrame
        Index: model names (in the given order); columns ``method, paradigm, backbone, policy``.
    """
    from . import zoo

    columns = ["method", "paradigm", "backbone", "policy"]
    manifest = zoo.manifest()
    manifest = manifest.set_index("name") if len(manifest) else pd.DataFrame(columns=columns)
    rows = {}
    for name in model_names:
        if name.startswith(zoo.PUBLISHED_PREFIX):
            from . import published

            spec = published.get_spec(name[len(zoo.PUBLISHED_PREFIX):])
            rows[name] = {"method": spec.method, "paradigm": spec.paradigm, "backbone": "resnet50",
                          "policy": "published"}
        elif name in manifest.index:
            rows[name] = manifest.loc[name, columns].to_dict()
        else:
            raise ValueError(f"model {name!r} is neither in the default zoo manifest nor a published/ name; "
                             f"available: {zoo.names()}.")
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns).fillna("none")


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
    _check_table(table)
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


@dataclass(frozen=True)
class PermutationResult:
    """Agreement of clusters with labels against a label-permutation null.

    Attributes
    ----------
    ari, nmi : float
        Observed agreement.
    p_ari, p_nmi : float
        ``(1 + #{null >= observed}) / (1 + n_permutations)``.
    null_ari, null_nmi : array, shape (n_permutations,)
    """

    ari: float
    nmi: float
    p_ari: float
    p_nmi: float
    null_ari: np.ndarray = field(repr=False)
    null_nmi: np.ndarray = field(repr=False)


def permutation_test(
    clusters: Sequence, labels: Sequence, n_permutations: int = 2000, seed: int = 0
) -> PermutationResult:
    """Is the agreement between clusters and labels larger than by chance?

    The clusters come from geometry alone, so under the null hypothesis (geometry unrelated to
    the labels) every assignment of the labels to models is equally likely: shuffle the labels,
    recompute ARI and NMI, and count how often chance does at least as well.

    Parameters
    ----------
    clusters, labels : sequence, shape (n_models,)
    n_permutations : int
    seed : int

    Returns
    -------
    PermutationResult
    """
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be positive; got {n_permutations}.")
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        raise ValueError("labels hold a single group; a test of agreement needs at least two.")
    observed = cluster_agreement(clusters, labels)
    _, cluster_codes = np.unique(np.asarray(clusters), return_inverse=True)
    _, label_codes = np.unique(labels, return_inverse=True)
    n_clusters, n_labels = cluster_codes.max() + 1, label_codes.max() + 1
    rng = np.random.default_rng(seed)
    if n_clusters < 2:  # one cluster: agreement is 0 whatever the labels; the sklearn path handles it
        null = np.array([list(cluster_agreement(clusters, rng.permutation(labels)).values())
                         for _ in range(n_permutations)])
    else:
        null = np.array([_fast_agreement(cluster_codes, rng.permutation(label_codes), n_clusters, n_labels)
                         for _ in range(n_permutations)])
    # Small tolerance so that permutations equal to the observed labels count as ties, not losses.
    p_ari = (1 + np.sum(null[:, 0] >= observed["ari"] - 1e-12)) / (1 + n_permutations)
    p_nmi = (1 + np.sum(null[:, 1] >= observed["nmi"] - 1e-12)) / (1 + n_permutations)
    return PermutationResult(ari=observed["ari"], nmi=observed["nmi"], p_ari=float(p_ari),
                             p_nmi=float(p_nmi), null_ari=null[:, 0], null_nmi=null[:, 1])


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
    p_value = (1 + (null >= observed - 1e-12).sum(axis=0)) / (1 + n_permutations)
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
    _check_table(table)
    rows = table[(table["manifold"] == "augmentation") & (table["metric"] == metric)
                 & (table["statistic"] == statistic) & (table["graph"] == graph)]
    if rows.empty:
        raise ValueError(f"no augmentation rows with metric={metric!r}, statistic={statistic!r}, graph={graph!r}.")
    wide = rows.pivot_table(index="model", columns="family", values="value", aggfunc="first")
    return wide.rank(axis=0, method="min").astype(int)


# ---------------------------------------------------------------------------------------------
# The geometry table of zoo models
# ---------------------------------------------------------------------------------------------

def grouped_nnk(features: np.ndarray, k: int, kernel: str = "cosine", ridge: float = 1e-6):
    """NNK graphs of many small point clouds of equal size, solved in one batch.

    Equivalent to calling :func:`sslgeom.nnk.nnk_graph` on each cloud with
    ``duplicates="ridge"`` (candidates only from the same cloud, Gaussian bandwidth per cloud)
    and stacking the results, but one batched solve instead of one Python call per cloud, which
    matters for thousands of augmentation curves of a dozen points each.

    Parameters
    ----------
    features : array, shape (n_clouds, n_points, dim)
        The clouds (e.g. one augmentation curve per base image).
    k : int
        Candidates per point, ``1 <= k < n_points``.
    kernel : {"cosine", "gaussian"}
        As in :func:`sslgeom.nnk.nnk_graph` (cosine: ``(1 + cos) / 2`` on L2-normalised rows;
        Gaussian: bandwidth = mean distance to the k-th neighbour of that cloud / 3).
    ridge : float
        Added to the diagonal of every ``K_SS`` so that repeated points (identical views) are
        allowed.

    Returns
    -------
    sslgeom.nnk.NNKResult
        Over the ``n_clouds * n_points`` stacked points (cloud ``c`` holds rows
        ``c * n_points ... (c + 1) * n_points - 1``); the adjacency is block diagonal.
        ``kernel_params["sigma"]`` is the mean of the per-cloud bandwidths (Gaussian kernel).
    """
    import torch

    from . import nnk

    points = np.asarray(features, dtype=np.float64)
    if points.ndim != 3:
        raise ValueError(f"features must be (n_clouds, n_points, dim); got shape {points.shape}.")
    n_clouds, n_points, _ = points.shape
    if not 1 <= k < n_points:
        raise ValueError(f"k must satisfy 1 <= k < n_points={n_points}; got {k}.")
    if not np.all(np.isfinite(points)):
        raise ValueError("features contain NaN or infinite values.")
    if kernel == "cosine":
        norms = np.linalg.norm(points, axis=-1, keepdims=True)
        if np.any(norms == 0):
            raise ValueError("a feature vector is zero; the cosine kernel needs non-zero rows.")
        points = points / norms
    elif kernel != "gaussian":
        raise ValueError(f"kernel must be 'cosine' or 'gaussian'; got {kernel!r}.")
    sq_norms = (points**2).sum(-1)
    pair = np.maximum(sq_norms[:, :, None] + sq_norms[:, None, :] - 2 * points @ points.transpose(0, 2, 1), 0.0)
    masked = pair.copy()
    masked[:, np.arange(n_points), np.arange(n_points)] = np.inf  # a point is not its own neighbour
    local = np.argsort(masked, axis=-1, kind="stable")[:, :, :k]  # (clouds, points, k)
    sq_dist = np.take_along_axis(pair, local, axis=-1)
    cand_pairs = pair[np.arange(n_clouds)[:, None, None, None], local[:, :, :, None], local[:, :, None, :]]
    if kernel == "gaussian":
        sigma = np.sqrt(sq_dist[:, :, -1]).mean(axis=1) / 3.0  # per cloud, as nnk_graph on that cloud
        if np.any(sigma <= 0):
            raise ValueError("a cloud has all points equal to their k-th neighbour: its bandwidth would be 0.")
        scale = (2.0 * sigma**2)[:, None, None]
        linear = np.exp(-sq_dist / scale)
        gram = np.exp(-cand_pairs / scale[..., None])
        params = {"sigma": float(sigma.mean())}
    else:
        linear = np.clip(1.0 - sq_dist / 4.0, 0.0, None)
        gram = np.clip(1.0 - cand_pairs / 4.0, 0.0, None)
        params = {"power": 1.0}
    eye = np.eye(k)
    gram = gram * (1.0 - eye) + eye * (1.0 + ridge)
    gram, linear = gram.reshape(-1, k, k), linear.reshape(-1, k)
    theta, residual, n_iter = nnk.nonnegative_qp(torch.from_numpy(gram), torch.from_numpy(linear),
                                                 kkt_tol=nnk.default_kkt_tol("float64"))
    theta, residual = theta.numpy(), residual.numpy()
    quad = np.einsum("bij,bj->bi", gram, theta) - ridge * theta
    errors = np.clip(1.0 - 2.0 * (linear * theta).sum(1) + (theta * quad).sum(1), 0.0, None)
    neighbors = (local + (np.arange(n_clouds) * n_points)[:, None, None]).reshape(-1, k)
    return nnk.NNKResult(
        neighbors=neighbors, weights=theta, errors=errors, sq_distances=sq_dist.reshape(-1, k),
        kernel_values=linear, adjacency=nnk.symmetrize(neighbors, theta, errors), kernel=kernel,
        kernel_params=params, kkt_tol=nnk.default_kkt_tol("float64"), kkt_residual=residual,
        n_iterations=n_iter, ridge=ridge,
    )


def _node_metrics(features: np.ndarray, k: int, kernel: str, graphs: Sequence[str] = ("nnk", "knn")) -> pd.DataFrame:
    """Per-node metrics of the NNK graph and of the kNN baseline (rows labelled by ``graph``).

    ``features`` is one cloud ``(n_points, dim)`` or a stack of equal-size clouds
    ``(n_clouds, n_points, dim)``, each with its own graph (see :func:`grouped_nnk`). ``k`` is
    capped at the cloud size minus one.
    """
    from . import mgm, nnk

    if features.ndim == 3:
        k = min(int(k), features.shape[1] - 1)
        result = grouped_nnk(features, k, kernel)
        flat = features.reshape(-1, features.shape[-1])
    else:
        k = min(int(k), len(features) - 1)
        # identical points can occur (e.g. two views rounding to the same image): ridge, not error
        result = nnk.nnk_graph(features, k=k, kernel=kernel, duplicates="ridge")
        flat = features
    return pd.concat([mgm.node_metrics(result, flat, graph=graph) for graph in graphs], ignore_index=True)


def _summarise(nodes: pd.DataFrame, manifold: str, family: str) -> pd.DataFrame:
    """Summaries (:data:`sslgeom.mgm.STATISTICS`) of per-node metrics, as geometry-table rows."""
    from . import mgm

    wide = mgm.summarize(nodes, by=["graph"])
    pairs = [(metric, statistic) for metric in mgm.METRICS for statistic in mgm.STATISTICS]
    values = wide[[f"{metric}_{statistic}" for metric, statistic in pairs]].to_numpy(dtype=np.float64)
    n_graphs = len(wide)
    # one block of rows per (metric, statistic), the graphs inside each block
    return pd.DataFrame({"manifold": manifold, "family": family,
                         "graph": np.tile(wide["graph"].to_numpy(), len(pairs)),
                         "metric": np.repeat([metric for metric, _ in pairs], n_graphs),
                         "statistic": np.repeat([statistic for _, statistic in pairs], n_graphs),
                         "value": values.T.ravel()})


def _semantic_part(model: str | ModelLike, settings: dict, graphs: Sequence[str], device: str) -> pd.DataFrame:
    """Summaries of the pooled and within-class semantic manifolds of ``model`` (name or loaded), for ``graphs``."""
    from . import manifolds

    k, kernel = settings["k"], settings["kernel"]
    semantic = manifolds.semantic_manifold(model, n_per_class=settings["n_per_class"], seed=settings["seed"],
                                           device=device, progress=False)
    parts = [_summarise(_node_metrics(semantic.features, k, kernel, graphs), "semantic", "pooled")]
    classes = [semantic.for_class(c).features for c in semantic.classes]
    if len({len(c) for c in classes}) == 1:  # stratified choice: equal class sizes, one batch
        within = _node_metrics(np.stack(classes), k, kernel, graphs)
    else:
        within = pd.concat([_node_metrics(c, k, kernel, graphs) for c in classes], ignore_index=True)
    parts.append(_summarise(within, "semantic", "within_class"))
    return pd.concat(parts, ignore_index=True)


def _augmentation_part(model: str | ModelLike, settings: dict, graphs: Sequence[str], device: str) -> pd.DataFrame:
    """Summaries of every augmentation family's curves and of the composition clouds of ``model`` (name or loaded)."""
    from . import manifolds

    k, kernel, seed = settings["k_augmentation"], settings["kernel"], settings["seed"]
    parts = []
    curves = manifolds.augmentation_manifolds(
        model, families=settings["families"], n_base=settings["n_base"], n_points=settings["n_points"],
        seed=seed, device=device, progress=False)
    for family, manifold in curves.items():
        parts.append(_summarise(_node_metrics(manifold.features, k, kernel, graphs), "augmentation", family))
    if settings["n_views"]:
        cloud = manifolds.composition_manifold(
            model, n_base=settings["n_base"], n_views=settings["n_views"], families=settings["families"],
            seed=seed, device=device, progress=False)
        parts.append(_summarise(_node_metrics(cloud.features, k, kernel, graphs), "augmentation", "composition"))
    return pd.concat(parts, ignore_index=True)


#: The settings each part of the geometry table depends on (its cache key uses only these), so
#: that changing ``k`` reuses the augmentation part and changing ``n_base`` the semantic part.
_PARTS = {
    "semantic": (_semantic_part, ("k", "kernel", "n_per_class", "seed")),
    "augmentation": (_augmentation_part, ("k_augmentation", "kernel", "n_base", "n_points", "n_views",
                                          "families", "seed")),
}


def _model_geometry(model: str, checkpoint: str, settings: dict, device: str) -> pd.DataFrame:
    """Geometry-table rows of one model, each (part, graph) cached on its own."""
    from . import cache, embed

    parts = []
    loaded = None  # the model, loaded on the first cache miss and shared by every part
    for part, (compute, depends_on) in _PARTS.items():
        if part == "augmentation" and not settings["n_base"]:
            continue
        relevant = {name: settings[name] for name in depends_on}
        paths = {graph: cache.entry_path("geometry", cache.content_key(
            "geometry-v3", model, checkpoint, part, relevant, graph), ".pkl") for graph in settings["graphs"]}
        found = {}
        for graph, path in paths.items():
            if path.exists():
                try:
                    found[graph] = cache.load_table(path)
                except ValueError:  # corrupt entry: recompute it
                    path.unlink(missing_ok=True)
        missing = [graph for graph in settings["graphs"] if graph not in found]
        if missing:
            # one NNK construction serves every missing graph type
            if loaded is None:
                loaded = embed.resolve_model(model, device)
            fresh = compute(loaded, settings, missing, device)
            for graph in missing:
                found[graph] = fresh[fresh["graph"] == graph].reset_index(drop=True)
                cache.save_table(paths[graph], found[graph])
        parts.extend(found[graph] for graph in settings["graphs"])
    return pd.concat(parts, ignore_index=True).assign(model=model)[list(TABLE_COLUMNS)]


def geometry_table(
    model_names: Sequence[str],
    *,
    k: int = 20,
    kernel: str = "cosine",
    n_per_class: int = 100,
    families: Sequence[str] | None = None,
    n_base: int = 50,
    n_points: int | None = None,
    n_views: int = 32,
    k_augmentation: int = 10,
    graphs: Sequence[str] = ("nnk", "knn"),
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
) -> pd.DataFrame:
    """MGMs of every model on every manifold, summarised: the tidy geometry table.

    For each model (cached per model, part and graph type, keyed by the checkpoint hash and the
    settings that part depends on, so a change of ``k`` reuses the augmentation part):

    * semantic manifold of ``10 * n_per_class`` test images: one graph over all of them
      (family ``"pooled"``) and one graph per class, node metrics pooled over classes
      (family ``"within_class"``);
    * augmentation manifolds: for each family, one graph per base image on its sweep of views,
      node metrics pooled over the ``n_base`` base images (family = the augmentation family);
    * composition manifold: one graph per base image on ``n_views`` random compositions of all
      families (family ``"composition"``; skipped when ``n_views`` is 0).

    Each node metric of :mod:`sslgeom.mgm` (NNK and kNN baseline) is summarised by mean, median,
    10% and 90% quantiles over the nodes (:func:`sslgeom.mgm.summarize`).

    Parameters
    ----------
    model_names : sequence of str
        Zoo names.
    k : int
        kNN candidates of the semantic graphs (capped at the manifold size minus one).
    kernel : {"cosine", "gaussian"}
        NNK kernel.
    n_per_class : int
        Semantic images per class.
    families : sequence of str, optional
        Augmentation families (default: every greyscale family).
    n_base : int
        Base images of the augmentation manifolds (0 skips augmentation manifolds).
    n_points : int, optional
        Grid size of every family (default: each family's own).
    n_views : int
        Views per base image of the composition manifold (0 skips it).
    k_augmentation : int
        Candidates of the augmentation graphs (capped at the curve length minus one).
    graphs : sequence of {"nnk", "knn"}
        Neighbourhoods whose metrics are computed (the kNN baseline roughly doubles the cost).
    seed : int
        Seed of image choice and views.
    device : str
        Device of the forward passes and graphs.
    progress : bool
        Show a progress bar over models.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`TABLE_COLUMNS`.
    """
    from threadpoolctl import threadpool_limits
    from tqdm.auto import tqdm

    from . import zoo

    if kernel not in ("cosine", "gaussian"):
        raise ValueError(f"kernel must be 'cosine' or 'gaussian'; got {kernel!r}.")
    if not graphs or any(g not in ("nnk", "knn") for g in graphs):
        raise ValueError(f"graphs must be a non-empty subset of ('nnk', 'knn'); got {graphs!r}.")
    available = set(zoo.names())
    missing = [name for name in model_names if name not in available]
    if missing:
        raise ValueError(f"model(s) {missing} are not in the zoo (available: {sorted(available)}); "
                         "train them with `make zoo` or drop them from the parameters.")
    settings = {"k": int(k), "kernel": kernel, "n_per_class": int(n_per_class),
                "families": None if families is None else list(families), "n_base": int(n_base),
                "n_points": n_points, "n_views": int(n_views), "k_augmentation": int(k_augmentation),
                "graphs": sorted(set(graphs)), "seed": int(seed)}  # every value is part of a cache key
    # The work is thousands of tiny matrix products and SVDs: extra BLAS threads only add
    # synchronisation (measured: a fifth of the time, more on a busy machine).
    with threadpool_limits(limits=1, user_api="blas"):
        tables = [_model_geometry(model, zoo.checkpoint_hash(model), settings, device)
                  for model in tqdm(list(model_names), desc="geometry", disable=not progress)]
    return pd.concat(tables, ignore_index=True)
