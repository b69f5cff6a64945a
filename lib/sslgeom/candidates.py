"""Candidate search of the NNK graph with faiss: exact flat search, and opt-in approximate search.

:func:`sslgeom.nnk.nnk_graph` needs, for each point, its ``k`` nearest other points (the
candidates of its non-negative kernel regression). This module finds them with faiss on the CPU:

- ``"exact"`` (:func:`exact_search`): faiss's brute-force search (``faiss.knn``, the search of
  ``IndexFlatIP`` / ``IndexFlatL2``: blocked matrix products and heaps), inner products for the
  cosine kernel (L2-normalised rows) and squared Euclidean distances for the Gaussian kernel.
  Same neighbours as the blocked torch search of :func:`sslgeom.neighbors.knn_tensor` up to
  ties (squared distances within about ``(dim + 2) eps (||q||^2 + ||x||^2)``).
- ``"ivf"`` and ``"hnsw"`` (:func:`approximate_search`): **approximate** candidates. ``"ivf"``:
  an inverted file (faiss k-means cuts the space into ``nlist`` cells; the points of each cell
  are searched exactly among the points of the ``nprobe`` cells nearest to it, one matrix
  product per cell, :func:`_ivf_search`). ``"hnsw"``: faiss's graph index ``IndexHNSWFlat``.
  Distances to the candidates found are exact; some true neighbours may be missed (the
  candidate recall, measured by ``benchmarks/nnk.py``). Never the default: an NNK graph on
  approximate candidates is the NNK graph of a different candidate set. Rows for which the
  search returns fewer than ``k`` candidates are searched again exactly.

Self-matches: every search asks for ``k + 1`` neighbours and :func:`drop_self` removes the
point's own index; if the point is not among them (it has more than ``k`` exact copies, or the
approximate search missed it), the farthest of the ``k + 1`` is dropped instead. So a point is
never its own candidate, and its exact copies are candidates like any other point, as in the
torch search; :mod:`sslgeom.nnk` then decides what duplicates mean.

faiss computes in float32 only; the callers use it for float32 features on the CPU and keep the
torch search for float64 and for other devices. Threads: faiss's OpenMP pool, set to torch's
thread count for the duration of a search (:func:`faiss_threads`); the IVF cell searches run
in torch, with its thread setting.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import numpy as np
from tqdm.auto import tqdm

from .validation import check_choice, check_int

CandidateMode = Literal["exact", "hnsw", "ivf"]
CANDIDATE_MODES: tuple[str, ...] = ("exact", "hnsw", "ivf")
Metric = Literal["ip", "l2"]

#: Tunable settings of each approximate mode and their defaults (``None``: chosen from ``n``).
APPROXIMATE_DEFAULTS: dict[str, dict] = {
    "ivf": {"nlist": None, "nprobe": None, "train_size": None, "seed": 0},
    "hnsw": {"M": 32, "ef_construction": 80, "ef_search": None},
}

# Queries per faiss call: large enough for faiss's own blocking (4096 queries), small enough
# that a progress bar moves.
QUERY_BLOCK = 1 << 15


@contextmanager
def faiss_threads(n_threads: int) -> Iterator[None]:
    """Run the block with ``n_threads`` faiss (OpenMP) threads, then restore the setting."""
    import faiss

    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(max(1, int(n_threads)))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def as_faiss_array(points) -> np.ndarray:
    """``points`` as a C-contiguous float32 NumPy array (no copy when it already is one).

    Parameters
    ----------
    points : np.ndarray or torch.Tensor on the CPU, shape (n_points, dim)

    Returns
    -------
    np.ndarray, shape (n_points, dim), float32
    """
    if hasattr(points, "numpy"):  # torch tensor: shares memory
        points = points.detach().numpy()
    return np.ascontiguousarray(points, dtype=np.float32)


def drop_self(indices: np.ndarray, values: np.ndarray, k: int,
              own: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remove each query's own index from its ``k + 1`` search results.

    Parameters
    ----------
    indices : np.ndarray, shape (n_queries, k + 1), int64
        Search results, nearest first; ``-1`` marks a missing result (approximate search).
    values : np.ndarray, shape (n_queries, k + 1)
        The matching distances or inner products.
    k : int
    own : np.ndarray, shape (n_queries,), int64
        Index of each query point in the searched set.

    Returns
    -------
    indices : np.ndarray, shape (n_queries, k), int64
    values : np.ndarray, shape (n_queries, k)
        The results without the query itself; where it is absent, without the last result.
    """
    n_queries = indices.shape[0]
    is_self = indices == np.asarray(own)[:, None]
    drop = np.where(is_self.any(axis=1), is_self.argmax(axis=1), k)
    keep = np.ones(indices.shape, dtype=bool)
    keep[np.arange(n_queries), drop] = False
    return indices[keep].reshape(n_queries, k), values[keep].reshape(n_queries, k)


def _faiss_metric(metric: str):
    import faiss

    check_choice(metric, ("ip", "l2"), "metric")
    return faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2


def exact_search(points, k: int, metric: Metric, *, n_threads: int = 1, queries=None,
                 progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``k`` nearest neighbours of every point (itself excluded) with faiss.

    Parameters
    ----------
    points : np.ndarray or CPU torch.Tensor, shape (n_points, dim)
        The searched set, float32 (other dtypes are converted).
    k : int
        Neighbours per point, ``1 <= k < n_points``.
    metric : {"ip", "l2"}
        ``"ip"``: largest inner product first (L2-normalised rows: the cosine kernel's order);
        ``"l2"``: smallest squared Euclidean distance first.
    n_threads : int
        faiss threads during the search.
    queries : np.ndarray of int64, shape (n_queries,), optional
        Search only for these points (default: all, in order).
    progress : bool
        tqdm bar over blocks of queries.

    Returns
    -------
    indices : np.ndarray, shape (n_queries, k), int64
        Nearest first; never the query itself.
    values : np.ndarray, shape (n_queries, k), float32
        Inner products (``"ip"``) or squared distances (``"l2"``), as faiss computes them.
    """
    import faiss

    base = as_faiss_array(points)
    faiss_metric = _faiss_metric(metric)
    ids = np.arange(len(base)) if queries is None else np.asarray(queries, dtype=np.int64)
    want = min(k + 1, len(base))
    out_idx = np.empty((len(ids), k), dtype=np.int64)
    out_val = np.empty((len(ids), k), dtype=np.float32)
    blocks = range(0, len(ids), QUERY_BLOCK)
    with faiss_threads(n_threads):
        for start in tqdm(blocks, desc="kNN (faiss)", disable=not progress, leave=False):
            block = ids[start:start + QUERY_BLOCK]
            contiguous = queries is None
            query_rows = base[start:start + len(block)] if contiguous else base[block]
            values, indices = faiss.knn(query_rows, base, want, faiss_metric)
            out_idx[start:start + len(block)], out_val[start:start + len(block)] = (
                drop_self(indices, values, k, block))
    return out_idx, out_val


def check_candidate_params(mode: str, params: dict | None) -> dict:
    """Validate the settings of an approximate mode and fill in the defaults.

    Parameters
    ----------
    mode : {"exact", "hnsw", "ivf"}
    params : dict or None
        ``"ivf"``: ``nlist`` (cells), ``nprobe`` (cells searched per point), ``train_size``
        (points used for k-means), ``seed``. ``"hnsw"``: ``M`` (links per node),
        ``ef_construction``, ``ef_search`` (at least ``k + 1`` is used). ``"exact"`` takes none.

    Returns
    -------
    dict
        The settings with defaults for the missing ones (``None`` where :func:`approximate_search`
        chooses from the number of points).

    Raises
    ------
    ValueError
        Unknown mode, unknown setting, or settings given to ``"exact"``.
    TypeError
        ``params`` not a dict, or a setting not an integer.
    """
    check_choice(mode, CANDIDATE_MODES, "candidates",
                 hint="'hnsw' and 'ivf' are approximate (opt-in); 'exact' is the default.")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise TypeError(f"candidate_params must be a dict or None, got {type(params).__name__}.")
    if mode == "exact":
        if params:
            raise ValueError(
                f"candidate_params {sorted(params)} apply to candidates='hnsw' or 'ivf' only; "
                "the exact search has no settings."
            )
        return {}
    allowed = APPROXIMATE_DEFAULTS[mode]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown candidate_params {unknown} for candidates={mode!r}; "
            f"choose from {sorted(allowed)}."
        )
    settings = dict(allowed)
    for name, value in params.items():
        if value is None:
            continue
        settings[name] = check_int(value, f"candidate_params[{name!r}]",
                                   minimum=0 if name == "seed" else 1)
    return settings


def default_ivf_settings(n_points: int, settings: dict) -> dict:
    """IVF defaults: ``nlist`` about ``sqrt(n)`` cells (a power of two), ``nprobe = 8``.

    Each point is compared with the points of ``nprobe`` cells, about ``nprobe / nlist`` of the
    data (1/128 at a million points), so the search costs about ``nprobe / nlist`` of an exact
    one plus the k-means; raise ``nprobe`` for a higher recall, lower it for speed (the recall
    depends on how clustered the data are: measure it, as ``benchmarks/nnk.py`` does).
    ``train_size`` is ``64 nlist`` points (faiss advises 30 to 256 per centroid).

    Parameters
    ----------
    n_points : int
    settings : dict
        From :func:`check_candidate_params` for ``"ivf"``.

    Returns
    -------
    dict
        ``nlist``, ``nprobe``, ``train_size`` and ``seed``, all set.

    Raises
    ------
    ValueError
        ``train_size`` smaller than ``nlist`` (k-means needs a point per centroid).
    """
    nlist = settings["nlist"]
    if nlist is None:
        nlist = int(2 ** round(np.log2(max(1.0, np.sqrt(n_points)))))
    nlist = max(1, min(nlist, n_points))
    nprobe = min(settings["nprobe"] or 8, nlist)
    train_size = min(settings["train_size"] or 64 * nlist, n_points)
    if train_size < nlist:
        raise ValueError(
            f"candidate_params: train_size={train_size} is smaller than nlist={nlist}; k-means "
            "needs at least one training point per cell."
        )
    return {"nlist": nlist, "nprobe": nprobe, "train_size": train_size,
            "seed": settings["seed"]}


def _ivf_search(base: np.ndarray, k: int, metric: str, settings: dict,
                progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """Inverted-file search of every point, one cell of queries at a time.

    k-means (faiss, on ``train_size`` random points) cuts the space into ``nlist`` cells; each
    point goes to the cell of its nearest centroid. The points of cell ``c`` are searched
    together, exactly, among the points of the ``nprobe`` cells whose centroids are nearest to
    ``c``'s (its own included): one matrix product and one ``topk`` per cell (torch, its thread
    setting), instead of a separate walk over the inverted lists for every query as faiss's
    ``IndexIVFFlat`` does (several times slower per distance on these 2 cores, measured).
    Probing by the query's cell rather than by the query itself misses a little more near cell
    borders; the recall is measured (``benchmarks/nnk.py``), not assumed.

    Returns
    -------
    indices : np.ndarray, shape (n_points, k + 1), int64
        Nearest first, ``-1`` where the probed cells hold fewer than ``k + 1`` points.
    values : np.ndarray, shape (n_points, k + 1), float32
    """
    import faiss
    import torch

    n_points, dim = base.shape
    metric_code = _faiss_metric(metric)
    rng = np.random.default_rng(settings["seed"])
    sample = np.sort(rng.choice(n_points, size=settings["train_size"], replace=False))
    kmeans = faiss.Kmeans(dim, settings["nlist"], niter=20, seed=int(settings["seed"]) + 1,
                          spherical=metric == "ip", min_points_per_centroid=1, verbose=False)
    kmeans.train(base[sample])
    centroids = np.ascontiguousarray(kmeans.centroids)
    _, cell = faiss.knn(base, centroids, 1, metric_code)
    _, near = faiss.knn(centroids, centroids, settings["nprobe"], metric_code)
    order = np.argsort(cell[:, 0], kind="stable")
    bounds = np.searchsorted(cell[order, 0], np.arange(settings["nlist"] + 1))
    del cell
    grouped = torch.from_numpy(base[order])  # points sorted by cell: every cell is a slice
    sq_norms = (grouped * grouped).sum(dim=1)
    order_t = torch.from_numpy(order)
    want = k + 1
    # results in the cell order (every block a slice), put back in the points' order at the end
    by_cell = torch.full((n_points, want), -1, dtype=torch.int64)
    values = torch.full((n_points, want), float("inf"), dtype=torch.float32)
    for c in tqdm(range(settings["nlist"]), desc="kNN (ivf)", disable=not progress,
                  leave=False):
        if bounds[c] == bounds[c + 1]:
            continue
        probes = near[c][near[c] >= 0]
        if c not in probes:  # its own cell first, whatever the ties among centroids
            probes = np.concatenate([[c], probes[:-1]])
        pool = torch.from_numpy(np.concatenate([np.arange(bounds[p], bounds[p + 1])
                                                for p in probes]))
        candidates = grouped.index_select(0, pool)
        pool_norms = sq_norms.index_select(0, pool)
        found = min(want, len(pool))
        rows = max(1, (1 << 25) // len(pool))  # scores of one block: at most 128 MiB
        for start in range(int(bounds[c]), int(bounds[c + 1]), rows):
            stop = min(start + rows, int(bounds[c + 1]))
            if metric == "ip":
                scores = grouped[start:stop] @ candidates.T
                top = torch.topk(scores, found, dim=1, largest=True, sorted=True)
                block_values = top.values
            else:
                scores = torch.addmm(pool_norms[None, :], grouped[start:stop], candidates.T,
                                     alpha=-2.0)
                top = torch.topk(scores, found, dim=1, largest=False, sorted=True)
                block_values = (top.values + sq_norms[start:stop, None]).clamp_(min=0.0)
            # index_select, not advanced indexing (about 200x slower for these shapes here)
            ids = pool.index_select(0, top.indices.reshape(-1))
            by_cell[start:stop, :found] = order_t.index_select(0, ids).view(top.indices.shape)
            values[start:stop, :found] = block_values
    indices = np.empty((n_points, want), dtype=np.int64)
    indices[order] = by_cell.numpy()
    del by_cell
    by_point = np.empty((n_points, want), dtype=np.float32)
    by_point[order] = values.numpy()
    return indices, by_point


def _hnsw_index(base: np.ndarray, metric: str, settings: dict, k: int, progress: bool):
    import faiss

    index = faiss.IndexHNSWFlat(base.shape[1], settings["M"], _faiss_metric(metric))
    index.hnsw.efConstruction = settings["ef_construction"]
    for start in tqdm(range(0, len(base), QUERY_BLOCK), desc="HNSW add", disable=not progress,
                      leave=False):
        index.add(base[start:start + QUERY_BLOCK])
    index.hnsw.efSearch = max(settings["ef_search"] or 2 * (k + 1), k + 1)
    return index


def approximate_search(points, k: int, metric: Metric, mode: str, params: dict | None = None,
                       *, n_threads: int = 1,
                       progress: bool = False) -> tuple[np.ndarray, np.ndarray, dict]:
    """**Approximate** ``k`` nearest neighbours of every point (itself excluded) with faiss.

    Parameters
    ----------
    points : np.ndarray or CPU torch.Tensor, shape (n_points, dim)
        float32 (other dtypes are converted).
    k : int
        Candidates per point, ``1 <= k < n_points``.
    metric : {"ip", "l2"}
        As in :func:`exact_search`.
    mode : {"ivf", "hnsw"}
        Index type (see the module docstring).
    params : dict, optional
        Settings of the index (:func:`check_candidate_params`).
    n_threads : int
        faiss threads.
    progress : bool
        tqdm bars.

    Returns
    -------
    indices : np.ndarray, shape (n_points, k), int64
        Approximate neighbours, nearest first; never the point itself.
    values : np.ndarray, shape (n_points, k), float32
        Their exact inner products or squared distances (as faiss computes them).
    settings : dict
        The settings used (defaults filled in), and ``"exact_rows"``: how many rows had fewer
        than ``k`` results and were searched exactly.
    """
    settings = check_candidate_params(mode, params)
    if mode == "exact":
        raise ValueError("approximate_search needs mode 'ivf' or 'hnsw'; use exact_search.")
    base = as_faiss_array(points)
    want = min(k + 1, len(base))
    with faiss_threads(n_threads):
        if mode == "ivf":
            settings = default_ivf_settings(len(base), settings)
            indices, values = _ivf_search(base, k, metric, settings, progress)
        else:
            index = _hnsw_index(base, metric, settings, k, progress)
            settings["ef_search"] = int(index.hnsw.efSearch)
            values, indices = index.search(base, want)
            del index
    own = np.arange(len(base))
    # fewer than k results besides the point itself: searched again, exactly
    found = (indices >= 0).sum(axis=1) - (indices == own[:, None]).any(axis=1)
    short_rows = np.flatnonzero(found < k)
    out_idx, out_val = drop_self(indices, values, k, own)
    del indices, values
    if len(short_rows):
        exact_idx, exact_val = exact_search(base, k, metric, n_threads=n_threads,
                                            queries=short_rows)
        out_idx[short_rows], out_val[short_rows] = exact_idx, exact_val
    settings["exact_rows"] = int(len(short_rows))
    return out_idx, out_val, settings
