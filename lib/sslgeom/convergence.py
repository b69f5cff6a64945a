"""How many points a manifold needs: metric summaries against sample size, on real features.

A manifold graph metric is summarised over the nodes of a manifold (the mean neighbour count of a
class, the mean diameter of an augmentation cloud). Such a summary depends on how many points the
manifold has: the NNK neighbourhood of a node shrinks as sampling gets denser, so diameters and
raw angles fall with the sample size, while the neighbour count reflects the local dimension and
settles once the neighbourhoods are resolved. This module measures that dependence so that the
chapters can pick sizes where the summaries have settled, and say which ones never do.

- :func:`size_convergence`: semantic (class) manifolds subsampled to several numbers of points per
  class, repeated with fresh subsamples;
- :func:`views_convergence`: augmentation clouds truncated to several numbers of views per base
  image (nested: the first ``v`` views of each image);
- :func:`stability_table`: per metric, the relative distance of each size's summary from the
  largest size's, and the smallest size from which it stays within a tolerance;
- :func:`rank_agreement`: per metric and size, the Spearman correlation between the models'
  summaries at that size and at the largest size, which is what a comparison of models needs
  (a bias shared by every model does not change their order).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from sslgeom.validation import check_features, check_int

__all__ = [
    "CONVERGENCE_METRICS",
    "cloud_summaries",
    "size_convergence",
    "views_convergence",
    "stability_table",
    "rank_agreement",
]

#: The metrics followed against sample size: the three MGMs of the paper's kind, the reconstruction
#: error, and the book's own curvature estimate (:mod:`sslgeom.curvature`, angle per unit length).
CONVERGENCE_METRICS: tuple[str, ...] = ("n_neighbors", "diameter", "subspace_angle", "error", "curvature")


def _check_sizes(sizes: Sequence[int], largest: int, what: str) -> list[int]:
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence) or len(sizes) < 2:
        raise ValueError(f"{what} must be a list of at least two sizes, got {sizes!r}.")
    checked = sorted({check_int(size, what, minimum=3) for size in sizes})
    if checked[-1] > largest:
        raise ValueError(f"{what} asks for {checked[-1]} points but only {largest} are available; "
                         f"use sizes up to {largest} or give more points.")
    return checked


def cloud_summaries(clouds: np.ndarray, k: int, kernel: str = "cosine") -> dict[str, float]:
    """Mean of each metric of :data:`CONVERGENCE_METRICS` over the nodes of equal-size clouds.

    Parameters
    ----------
    clouds : array, shape (n_clouds, n_points, dim)
        Point clouds with a graph each (classes, or the views of one base image).
    k : int
        NNK candidates per node, capped at ``n_points - 1``.
    kernel : {"cosine", "gaussian"}

    Returns
    -------
    dict
        Metric name -> mean over all nodes of all clouds (``curvature``: the edge-length-weighted
        estimate of :func:`sslgeom.curvature.curvature_from_graph` over all clouds' edges).
    """
    from sslgeom import curvature, mgm
    from sslgeom.nnk import grouped_nnk

    clouds = np.asarray(clouds, dtype=np.float64)
    if clouds.ndim != 3 or clouds.shape[1] < 3:
        raise ValueError(f"clouds must have shape (n_clouds, n_points >= 3, dim), got {clouds.shape}.")
    flat = check_features(clouds.reshape(-1, clouds.shape[-1]), name="clouds")
    result = grouped_nnk(clouds, min(int(k), clouds.shape[1] - 1), kernel)
    nodes = mgm.node_metrics(result, flat, graph="nnk")
    summary = {metric: float(nodes[metric].mean()) for metric in CONVERGENCE_METRICS if metric in nodes}
    with np.errstate(all="ignore"):
        summary["curvature"] = curvature.curvature_from_graph(result, flat).curvature
    return summary


def size_convergence(
    class_features: Sequence[np.ndarray],
    sizes: Sequence[int],
    *,
    k: int,
    kernel: str = "cosine",
    n_repeats: int = 3,
    seed: int = 0,
) -> pd.DataFrame:
    """Class-manifold summaries for several numbers of points per class.

    For each size and repeat, every class is subsampled (without replacement, a fresh draw per
    repeat) to ``size`` points, each class gets its own NNK graph, and the node metrics are averaged
    over all classes.

    Parameters
    ----------
    class_features : sequence of arrays, each (n_points_c, dim)
        The features of each class; every class needs at least ``max(sizes)`` points.
    sizes : sequence of int
        Points per class (at least two sizes, each at least 3).
    k : int
        NNK candidates (capped at ``size - 1``).
    kernel : {"cosine", "gaussian"}
    n_repeats : int
        Independent subsamples per size.
    seed : int

    Returns
    -------
    pandas.DataFrame
        Columns ``size, repeat, metric, value``.
    """
    classes = [check_features(c, name="class_features") for c in class_features]
    if len(classes) < 1:
        raise ValueError("class_features is empty: give the features of at least one class.")
    sizes = _check_sizes(sizes, min(len(c) for c in classes), "sizes")
    n_repeats = check_int(n_repeats, "n_repeats", minimum=1)
    rng = np.random.default_rng(seed)
    rows = []
    for size in sizes:
        for repeat in range(n_repeats):
            clouds = np.stack([c[rng.choice(len(c), size=size, replace=False)] for c in classes])
            for metric, value in cloud_summaries(clouds, k, kernel).items():
                rows.append((size, repeat, metric, value))
    return pd.DataFrame(rows, columns=["size", "repeat", "metric", "value"])


def views_convergence(
    view_features: np.ndarray, views: Sequence[int], *, k: int, kernel: str = "cosine"
) -> pd.DataFrame:
    """Augmentation-cloud summaries for several numbers of views per base image.

    Parameters
    ----------
    view_features : array, shape (n_base, n_views, dim)
        Views of each base image (e.g. :func:`sslgeom.manifolds.composition_manifold`'s features).
    views : sequence of int
        Views per base image; the first ``v`` views of each image are used, so sizes are nested.
    k : int
        NNK candidates (capped at ``v - 1``).
    kernel : {"cosine", "gaussian"}

    Returns
    -------
    pandas.DataFrame
        Columns ``size, repeat, metric, value`` (``repeat`` is 0: the views are nested, not redrawn).
    """
    view_features = np.asarray(view_features)
    if view_features.ndim != 3:
        raise ValueError(f"view_features must have shape (n_base, n_views, dim), got {view_features.shape}.")
    views = _check_sizes(views, view_features.shape[1], "views")
    rows = []
    for size in views:
        for metric, value in cloud_summaries(view_features[:, :size], k, kernel).items():
            rows.append((size, 0, metric, value))
    return pd.DataFrame(rows, columns=["size", "repeat", "metric", "value"])


def _mean_by_size(convergence: pd.DataFrame) -> pd.DataFrame:
    """Mean over repeats: index (model, metric), one column per size."""
    missing = {"model", "size", "metric", "value"} - set(convergence.columns)
    if missing:
        raise ValueError(f"convergence table lacks columns {sorted(missing)}; concatenate the tables of "
                         "size_convergence or views_convergence with a 'model' column.")
    return convergence.pivot_table(index=["model", "metric"], columns="size", values="value", aggfunc="mean")


def stability_table(convergence: pd.DataFrame, tolerance: float = 0.1) -> pd.DataFrame:
    """Per metric: how far each size's summary is from the largest size's, and where it settles.

    Parameters
    ----------
    convergence : pandas.DataFrame
        Rows of :func:`size_convergence` or :func:`views_convergence` for several models, with a
        ``model`` column.
    tolerance : float
        Relative distance counted as settled: ``|s(n) - s(n_max)| <= tolerance * |s(n_max)|``.

    Returns
    -------
    pandas.DataFrame
        Index: metric; one column ``dev_<size>`` per size with the largest relative distance over
        models, and ``stable_from``: the smallest size from which every larger size is within the
        tolerance for every model (NaN if only the largest size is: the summary has not settled).
    """
    if not (isinstance(tolerance, (int, float)) and 0 < tolerance < 1):
        raise ValueError(f"tolerance must be a fraction in (0, 1), got {tolerance!r}.")
    means = _mean_by_size(convergence)
    sizes = list(means.columns)
    largest = means[sizes[-1]]
    deviation = means[sizes].sub(largest, axis=0).abs().div(largest.abs().where(largest.abs() > 0), axis=0)
    worst = deviation.groupby(level="metric").max()
    table = worst.rename(columns={size: f"dev_{size}" for size in sizes}).drop(columns=f"dev_{sizes[-1]}")
    stable_from = []
    for metric, row in worst.iterrows():
        within = (row[sizes[:-1]] <= tolerance).to_numpy()
        # the smallest size after which every size is within the tolerance
        first = len(within)
        for position in range(len(within) - 1, -1, -1):
            if not within[position]:
                break
            first = position
        stable_from.append(float(sizes[first]) if first < len(within) else np.nan)
    table["stable_from"] = stable_from
    return table


def rank_agreement(convergence: pd.DataFrame) -> pd.DataFrame:
    """Spearman correlation between the models' summaries at each size and at the largest size.

    Parameters
    ----------
    convergence : pandas.DataFrame
        As for :func:`stability_table`, with at least three models.

    Returns
    -------
    pandas.DataFrame
        Index: metric; one column per size (the largest is 1 by definition and left out).
    """
    means = _mean_by_size(convergence)
    models = means.index.get_level_values("model").unique()
    if len(models) < 3:
        raise ValueError(f"rank agreement needs at least three models, got {len(models)}.")
    sizes = list(means.columns)
    rows: dict[str, dict[int, float]] = {}
    for metric, block in means.groupby(level="metric"):
        reference = block[sizes[-1]].to_numpy()
        rows[metric] = {size: float(scipy_stats.spearmanr(block[size].to_numpy(), reference)[0])
                        for size in sizes[:-1]}
    return pd.DataFrame.from_dict(rows, orient="index")
