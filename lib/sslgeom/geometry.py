"""The geometry table of zoo models: manifolds, their graphs and metrics, summarised and cached.

The central object is the *geometry table*, a tidy DataFrame with one row per
``(model, manifold, family, graph, metric, statistic)`` and a ``value``:

* ``manifold`` is ``"semantic"`` or ``"augmentation"``;
* ``family`` is ``"within_class"`` (class manifolds, metrics pooled over classes) or ``"pooled"``
  (all classes in one graph) for semantic manifolds; for augmentation manifolds it is the
  augmentation family (one curve of views per base image) or ``"composition"`` (a cloud of random
  compositions of all families per base image);
* ``graph`` is ``"nnk"`` or ``"knn"`` (the baseline neighbourhood);
* ``statistic`` is a summary over nodes (mean, median, quantiles).

:func:`geometry_table` builds it for zoo models with the choices held by one
:class:`GeometrySettings`, which is also what the cache is keyed on. The statistics that compare
models through this table are in :mod:`sslgeom.paradigm`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from sslgeom.qp import DEFAULT_RELATIVE_KKT_TOL, check_relative_tol
from sslgeom.validation import check_choice, check_int, check_names

if TYPE_CHECKING:
    from sslgeom.embed import ModelLike

__all__ = ["TABLE_COLUMNS", "KERNELS", "GRAPHS", "check_table", "GeometrySettings", "geometry_table"]

TABLE_COLUMNS: tuple[str, ...] = ("model", "manifold", "family", "graph", "metric", "statistic", "value")
KERNELS: tuple[str, ...] = ("cosine", "gaussian")
GRAPHS: tuple[str, ...] = ("knn", "nnk")

#: Cache namespace and version of the per-part tables (bump the version when their content changes).
_CACHE_NAMESPACE, _CACHE_VERSION = "geometry", "geometry-v4"


def check_table(table: pd.DataFrame) -> None:
    """Raise a ValueError if ``table`` lacks a column of :data:`TABLE_COLUMNS`."""
    missing = [c for c in TABLE_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(
            f"geometry table lacks columns {missing}; expected {list(TABLE_COLUMNS)} "
            "(build it with sslgeom.geometry.geometry_table)."
        )


@dataclass(frozen=True)
class GeometrySettings:
    """Every choice the geometry table depends on; frozen, so it can key the cache.

    Attributes
    ----------
    k : int
        kNN candidates of the semantic graphs (capped at the manifold size minus one).
    kernel : {"cosine", "gaussian"}
        NNK kernel of every graph.
    n_per_class : int
        Semantic images per class.
    families : tuple of str or None
        Augmentation families (``None``: every family the active images allow: the greyscale ones,
        and hue and saturation on an image folder's colour images).
    n_base : int
        Base images of the augmentation manifolds (0 skips augmentation manifolds).
    n_points : int or None
        Grid size of every family (``None``: each family's own).
    n_views : int
        Views per base image of the composition manifold (0 skips it).
    k_augmentation : int
        Candidates of the augmentation graphs (capped at the curve length minus one).
    graphs : tuple of {"knn", "nnk"}
        Neighbourhoods whose metrics are computed, stored sorted (the kNN baseline roughly doubles
        the cost).
    kkt_tol : float
        Relative KKT tolerance of every NNK graph (:func:`sslgeom.nnk.nnk_graph`; default 0.01,
        the rule of chapter 03).
    seed : int
        Seed of the image choice and of the views.

    Examples
    --------
    >>> import dataclasses
    >>> settings = GeometrySettings(k=10, n_base=20)
    >>> dataclasses.replace(settings, kernel="gaussian", graphs=("nnk",)).kernel
    'gaussian'
    """

    k: int = 20
    kernel: str = "cosine"
    n_per_class: int = 100
    families: tuple[str, ...] | None = None
    n_base: int = 50
    n_points: int | None = None
    n_views: int = 32
    k_augmentation: int = 10
    graphs: tuple[str, ...] = GRAPHS
    kkt_tol: float = DEFAULT_RELATIVE_KKT_TOL
    seed: int = 0

    def __post_init__(self) -> None:
        # normalise in place (frozen: through object.__setattr__) so equal choices compare equal
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        for name, minimum in (("k", 1), ("n_per_class", 1), ("n_base", 0), ("n_views", 0),
                              ("k_augmentation", 1), ("seed", 0)):
            set_(name, check_int(getattr(self, name), name, minimum=minimum))
        if self.n_points is not None:
            set_("n_points", check_int(self.n_points, "n_points", minimum=2))
        check_choice(self.kernel, KERNELS, "kernel")
        set_("kkt_tol", check_relative_tol(self.kkt_tol))
        graphs = check_names(self.graphs, GRAPHS, "graphs")
        if not graphs:
            raise ValueError(f"graphs must be a non-empty subset of {GRAPHS}; got {self.graphs!r}.")
        set_("graphs", tuple(sorted(set(graphs))))
        if self.families is not None:
            from sslgeom import augment

            # every family name is accepted here; the colour ones (hue, saturation) are refused
            # when the manifolds are built on greyscale images (sslgeom.manifolds says why)
            families = check_names(self.families, tuple(augment.FAMILIES), "augmentation families",
                                   hint=f"Colour families {augment.COLOR_FAMILIES} need an image folder of colour "
                                        "images (sslgeom.sources.activate).")
            if not families:
                raise ValueError("families is empty: name at least one augmentation family, or None for all.")
            set_("families", tuple(families))

    def key(self, fields: Sequence[str]) -> dict:
        """The values of ``fields``, as plain data for a cache key."""
        return {name: getattr(self, name) for name in fields}


# ---------------------------------------------------------------------------------------------
# One model's table, part by part
# ---------------------------------------------------------------------------------------------

def _node_metrics(
    features: np.ndarray, k: int, kernel: str, graphs: Sequence[str], kkt_tol: float
) -> pd.DataFrame:
    """Per-node metrics of the NNK graph and of the kNN baseline (rows labelled by ``graph``).

    ``features`` is one cloud ``(n_points, dim)`` or a stack of equal-size clouds
    ``(n_clouds, n_points, dim)``, each with its own graph (see :func:`sslgeom.nnk.grouped_nnk`).
    ``k`` is capped at the cloud size minus one.
    """
    from sslgeom import mgm
    from sslgeom.nnk import grouped_nnk, nnk_graph

    if features.ndim == 3:
        k = min(int(k), features.shape[1] - 1)
        result = grouped_nnk(features, k, kernel, kkt_tol=kkt_tol)
        flat = features.reshape(-1, features.shape[-1])
    else:
        k = min(int(k), len(features) - 1)
        # identical points can occur (e.g. two views rounding to the same image): ridge, not error
        result = nnk_graph(features, k=k, kernel=kernel, duplicates="ridge", kkt_tol=kkt_tol)
        flat = features
    return pd.concat([mgm.node_metrics(result, flat, graph=graph) for graph in graphs], ignore_index=True)


def _summarise(nodes: pd.DataFrame, manifold: str, family: str) -> pd.DataFrame:
    """Summaries (:data:`sslgeom.mgm.STATISTICS`) of per-node metrics, as geometry-table rows."""
    from sslgeom import mgm

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


def _semantic_part(
    model: ModelLike, settings: GeometrySettings, graphs: Sequence[str], device: str
) -> pd.DataFrame:
    """Summaries of the pooled and within-class semantic manifolds of a loaded model, for ``graphs``."""
    from sslgeom import manifolds

    semantic = manifolds.semantic_manifold(model, n_per_class=settings.n_per_class, seed=settings.seed,
                                           device=device, progress=False)
    pooled = _node_metrics(semantic.features, settings.k, settings.kernel, graphs, settings.kkt_tol)
    classes = [semantic.for_class(c).features for c in semantic.classes]
    if len({len(c) for c in classes}) == 1:  # stratified choice: equal class sizes, one batch
        within = _node_metrics(np.stack(classes), settings.k, settings.kernel, graphs,
                               settings.kkt_tol)
    else:
        within = pd.concat([_node_metrics(c, settings.k, settings.kernel, graphs, settings.kkt_tol)
                            for c in classes], ignore_index=True)
    return pd.concat([_summarise(pooled, "semantic", "pooled"), _summarise(within, "semantic", "within_class")],
                     ignore_index=True)


def _augmentation_part(
    model: ModelLike, settings: GeometrySettings, graphs: Sequence[str], device: str
) -> pd.DataFrame:
    """Summaries of every augmentation family's curves and of the composition clouds of a loaded model."""
    from sslgeom import manifolds

    families = None if settings.families is None else list(settings.families)
    k, kernel, tol = settings.k_augmentation, settings.kernel, settings.kkt_tol
    parts = []
    curves = manifolds.augmentation_manifolds(
        model, families=families, n_base=settings.n_base, n_points=settings.n_points,
        seed=settings.seed, device=device, progress=False)
    for family, manifold in curves.items():
        parts.append(_summarise(_node_metrics(manifold.features, k, kernel, graphs, tol), "augmentation",
                                family))
    if settings.n_views:
        cloud = manifolds.composition_manifold(
            model, n_base=settings.n_base, n_views=settings.n_views, families=families,
            seed=settings.seed, device=device, progress=False)
        parts.append(_summarise(_node_metrics(cloud.features, k, kernel, graphs, tol), "augmentation",
                                "composition"))
    return pd.concat(parts, ignore_index=True)


PartFunction = Callable[["ModelLike", GeometrySettings, Sequence[str], str], pd.DataFrame]

#: Each part of the geometry table and the settings it depends on (its cache key uses only these),
#: so that changing ``k`` reuses the augmentation part and changing ``n_base`` the semantic part.
_PARTS: dict[str, tuple[PartFunction, tuple[str, ...]]] = {
    "semantic": (_semantic_part, ("k", "kernel", "kkt_tol", "n_per_class", "seed")),
    "augmentation": (_augmentation_part, ("k_augmentation", "kernel", "kkt_tol", "n_base", "n_points",
                                          "n_views", "families", "seed")),
}


def _entry_paths(model: str, checkpoint: str, part: str, settings: GeometrySettings) -> dict[str, Path]:
    """Cache path of each graph's rows of one part of one model."""
    from sslgeom import cache

    relevant = settings.key(_PARTS[part][1])
    return {graph: cache.entry_path(_CACHE_NAMESPACE, cache.content_key(
        _CACHE_VERSION, model, checkpoint, part, relevant, graph), cache.TABLE_SUFFIX) for graph in settings.graphs}


def _read_entries(paths: dict[str, Path]) -> dict[str, pd.DataFrame]:
    """The cached tables among ``paths``; corrupt entries are deleted so that they are recomputed."""
    from sslgeom import cache

    found = {graph: cache.read_entry(path, cache.load_table) for graph, path in paths.items()}
    return {graph: table for graph, table in found.items() if table is not None}


def _model_geometry(model: str, checkpoint: str, settings: GeometrySettings, device: str) -> pd.DataFrame:
    """Geometry-table rows of one model, each (part, graph) cached on its own."""
    from sslgeom import cache, embed

    parts = []
    loaded = None  # the model, loaded on the first cache miss and shared by every part
    for part, (compute, _) in _PARTS.items():
        if part == "augmentation" and not settings.n_base:
            continue
        paths = _entry_paths(model, checkpoint, part, settings)
        found = _read_entries(paths)
        missing = [graph for graph in settings.graphs if graph not in found]
        if missing:
            # one NNK construction serves every missing graph type
            if loaded is None:
                loaded = embed.resolve_model(model, device)
            fresh = compute(loaded, settings, missing, device)
            for graph in missing:
                found[graph] = fresh[fresh["graph"] == graph].reset_index(drop=True)
                cache.save_table(paths[graph], found[graph])
        parts.extend(found[graph] for graph in settings.graphs)
    return pd.concat(parts, ignore_index=True).assign(model=model)[list(TABLE_COLUMNS)]


def geometry_table(
    model_names: Sequence[str],
    settings: GeometrySettings = GeometrySettings(),
    *,
    device: str = "cpu",
    progress: bool = True,
    n_jobs: int | None = None,
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
        Zoo names (checked by :func:`sslgeom.zoo.check_model_names`).
    settings : GeometrySettings
        Every choice the numbers depend on (graphs, kernel, manifold sizes, seed).
    device : str
        Device of the forward passes and graphs.
    progress : bool
        Show a progress bar over models.
    n_jobs : int or None
        Models computed at once, each on one thread (:func:`sslgeom.threads.map_in_threads`;
        ``None``: one per core). The table does not depend on it.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`TABLE_COLUMNS`; per model, the semantic rows then the augmentation rows,
        the graphs in :attr:`GeometrySettings.graphs` order inside each part.
    """
    from threadpoolctl import threadpool_limits

    from sslgeom import zoo
    from sslgeom.threads import map_in_threads

    if not isinstance(settings, GeometrySettings):
        raise TypeError(f"settings must be a GeometrySettings, got {type(settings).__name__}; build one with "
                        "sslgeom.geometry.GeometrySettings(k=..., kernel=..., ...).")
    model_names = zoo.check_model_names(model_names)
    # The work is thousands of tiny matrix products and SVDs: extra BLAS threads only add
    # synchronisation (measured: a fifth of the time, more on a busy machine).
    with threadpool_limits(limits=1, user_api="blas"):
        tables = map_in_threads(lambda model: _model_geometry(model, zoo.checkpoint_hash(model), settings, device),
                                model_names, n_jobs, desc="geometry", progress=progress)
    return pd.concat(tables, ignore_index=True)
