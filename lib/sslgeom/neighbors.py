"""Exact k-nearest-neighbour search on tensors, the input checks the graph layer shares, and
the candidate search of the NNK graph (:func:`find_candidates`: exact here, or approximate with
:func:`sslgeom.candidates.approximate_search`).

:func:`knn` is the public entry point (also importable as ``sslgeom.nnk.knn``); the NNK graph
(:mod:`sslgeom.nnk`) calls :func:`knn_tensor` on features it has already validated with
:func:`as_tensor` and :func:`check_graph_input` and brought to unit scale with :func:`unit_scale`.

Two engines compute the same exact search (:func:`resolve_backend`): faiss's brute-force search
(:func:`sslgeom.candidates.exact_search`), the default for float32 on the CPU, where it runs at
close to the matrix-multiply limit; and a blocked torch search (matrix product and ``topk``),
for float64 and for other devices. Both form ``||q||^2 + ||x||^2 - 2 q.x`` on the same unit-scale
rows, so they agree up to ties (below).

Scale: squared distances are formed on the features divided by ``s = 2**floor(log2(max |x|))``
(an exact division), so their largest entry lies in ``[1, 2)``: ``||x||^2`` neither overflows
(features of ``1e20`` in float32) nor underflows (``1e-25``), and ``X`` and ``c X`` (``c`` a power
of two, ``c X`` itself without over- or underflow) give bit-identical computations, hence the
same neighbours. Squared distances are returned in the input's units (times ``s**2``,
:func:`sq_to_input_units`).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from .candidates import approximate_search, exact_search
from .kernels import kernel_space, power_of_two_floor
from .validation import check_choice, check_feature_tensor, check_int

KnnBackend = Literal["auto", "faiss", "torch"]
KNN_BACKENDS: tuple[str, ...] = ("auto", "faiss", "torch")

# Bytes we allow one block of pairwise distances / gathered candidates to take.
BLOCK_BYTES = 1 << 27


def resolve_dtype(dtype) -> torch.dtype:
    """The torch dtype of ``"float32"`` / ``"float64"`` (or the NumPy / torch type)."""
    table = {
        "float32": torch.float32,
        "float64": torch.float64,
        np.float32: torch.float32,
        np.float64: torch.float64,
        torch.float32: torch.float32,
        torch.float64: torch.float64,
    }
    key = np.dtype(dtype).type if isinstance(dtype, (str, np.dtype)) else dtype
    if key not in table:
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}.")
    return table[key]


def as_tensor(features, device, dtype: torch.dtype) -> torch.Tensor:
    """``features`` (array-like or tensor) as a tensor of ``dtype`` on ``device``."""
    if isinstance(features, torch.Tensor):
        return features.detach().to(device=device, dtype=dtype)
    array = np.asarray(features)
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"features must be numeric, got dtype {array.dtype}.")
    return torch.as_tensor(array, dtype=dtype, device=device)


def check_graph_input(features: torch.Tensor, k) -> int:
    """Validate the features and ``k`` of a neighbour graph; return ``k`` as an int."""
    check_feature_tensor(features, min_rows=2,
                         hint="remove or impute them before building a graph.")
    k = check_int(k, "k", minimum=1)
    n_points = features.shape[0]
    if k >= n_points:
        raise ValueError(
            f"k={k} must be smaller than the number of points ({n_points}) because a point is "
            f"not its own neighbour; use k <= {n_points - 1}."
        )
    return k


def unit_scale(features: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Divide validated features by ``s = 2**floor(log2(max |x|))``, exactly.

    Parameters
    ----------
    features : torch.Tensor, shape (n_points, dim)
        Finite features (validated by :func:`check_graph_input`).

    Returns
    -------
    scaled : torch.Tensor, shape (n_points, dim)
        ``features / s``, same dtype and device; its largest ``|x|`` lies in ``[1, 2)`` (all
        zeros stay zeros, with ``s = 1``). Division by a power of two only rounds entries whose
        quotient is subnormal, i.e. entries below ``2**-126`` (float32) times the largest one.
    s : float
        The power of two, exact as a Python float.
    """
    divisor = power_of_two_floor(features.abs().amax())
    return features / divisor, float(divisor)


def sq_to_input_units(sq_distances: np.ndarray, scale) -> np.ndarray:
    """Squared distances computed on ``features / scale``, in the features' own units.

    Parameters
    ----------
    sq_distances : np.ndarray, any shape
        Squared distances between rows of ``features / scale``.
    scale : float or np.ndarray broadcasting against ``sq_distances``
        Exact power(s) of two (:func:`unit_scale`, :func:`sslgeom.kernels.power_of_two_floor`).

    Returns
    -------
    np.ndarray, same shape and dtype
        ``sq_distances * scale**2``, one exact ``ldexp`` (a single rounding, only where the result
        is subnormal). A value beyond the dtype's range saturates to ``inf`` (float32: squared
        distances above about ``3.4e38``, i.e. features beyond about ``1e19``) or to 0; the
        neighbours and weights, computed at unit scale, are not affected.
    """
    _, exponent = np.frexp(scale)  # scale = 0.5 * 2**exponent exactly
    with np.errstate(over="ignore", under="ignore"):
        return np.ldexp(sq_distances, 2 * (np.asarray(exponent) - 1)).astype(sq_distances.dtype)


def block_rows(n_cols: int, bytes_per_value: int, budget: int = BLOCK_BYTES) -> int:
    """Rows per block so that ``rows x n_cols`` values take about ``budget`` bytes (1..4096)."""
    return max(1, min(4096, budget // max(1, n_cols * bytes_per_value)))


def resolve_backend(backend: str, device, dtype: torch.dtype) -> str:
    """The engine of the exact kNN search: ``"faiss"`` or ``"torch"``.

    Parameters
    ----------
    backend : {"auto", "faiss", "torch"}
        ``"auto"``: faiss for float32 on the CPU, torch otherwise.
    device : str or torch.device
    dtype : torch.dtype

    Returns
    -------
    str

    Raises
    ------
    ValueError
        Unknown name, or ``"faiss"`` off the CPU or in float64 (faiss computes in float32).
    """
    check_choice(backend, KNN_BACKENDS, "knn backend")
    on_cpu = torch.device(device).type == "cpu"
    if backend == "auto":
        return "faiss" if on_cpu and dtype == torch.float32 else "torch"
    if backend == "faiss" and not (on_cpu and dtype == torch.float32):
        raise ValueError(
            f"the faiss kNN search runs in float32 on the CPU; got dtype {dtype} on "
            f"device {str(device)!r}. Use backend 'torch' (or 'auto') there."
        )
    return backend


def knn_tensor(
    features: torch.Tensor, k: int, block_size: int | None, progress: bool,
    backend: str = "torch", equal_norms: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact kNN on a validated tensor; returns (indices (n,k) int64, sq_distances (n,k)).

    ``features`` should be at unit scale (:func:`unit_scale`): the squared norms are formed as
    they are. Ties: the expansion below rounds by at most about ``(dim + 2) eps (||q||^2 +
    ||x||^2)``; candidates closer than that in squared distance may come in either order (the
    order is deterministic for given inputs, and may differ between the two engines).
    ``backend`` is ``"torch"`` (blocked search, any device, ``block_size`` query rows per
    block) or ``"faiss"`` (float32 CPU tensors only; :func:`resolve_backend`); the faiss search
    uses torch's thread count. ``equal_norms`` says every row has the same norm (the cosine
    kernel's normalised rows): faiss then ranks by inner product, the same order as by distance
    (up to the ties above) and about 10% faster, since it skips the norm terms (measured at
    100,000 x 256: 44.5-46.4 s against 50.5-50.8 s); the squared distances are then formed from
    the same expansion, ``||q||^2 + ||x||^2 - 2 q.x``.
    """
    if backend == "faiss":
        threads = torch.get_num_threads()
        if equal_norms:
            indices, products = exact_search(features, k, "ip", n_threads=threads, progress=progress)
            sq_norms = (features * features).sum(dim=1).numpy()
            sq_distances = sq_norms[:, None] + sq_norms[indices] - 2.0 * products
        else:
            indices, sq_distances = exact_search(features, k, "l2", n_threads=threads, progress=progress)
        return torch.from_numpy(indices), torch.from_numpy(sq_distances).clamp_(min=0.0)
    n_points = features.shape[0]
    sq_norms = (features * features).sum(dim=1)
    rows = block_size or block_rows(n_points, features.element_size())
    indices = torch.empty((n_points, k), dtype=torch.int64, device=features.device)
    sq_distances = torch.empty((n_points, k), dtype=features.dtype, device=features.device)
    starts = range(0, n_points, rows)
    for start in tqdm(starts, desc="kNN", disable=not progress, leave=False):
        stop = min(start + rows, n_points)
        # ||q - x||^2 = ||q||^2 + ||x||^2 - 2 q.x ; ||q||^2 is constant per row, so only the
        # last two terms matter for the ranking.
        scores = torch.addmm(sq_norms[None, :], features[start:stop], features.T, alpha=-2.0)
        local = torch.arange(stop - start, device=features.device)
        scores[local, local + start] = math.inf  # a point is not its own neighbour
        top = torch.topk(scores, k, dim=1, largest=False, sorted=True)
        indices[start:stop] = top.indices
        sq_distances[start:stop] = (top.values + sq_norms[start:stop, None]).clamp(min=0.0)
    return indices, sq_distances


def knn(
    features,
    k: int,
    *,
    metric: Literal["euclidean", "cosine"] = "euclidean",
    block_size: int | None = None,
    device: str | torch.device = "cpu",
    dtype="float32",
    backend: KnnBackend = "auto",
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k-nearest neighbours of every point, itself excluded.

    Brute force: faiss's flat search (float32 on the CPU, the default there) or a blocked torch
    search, where a block of ``block_size`` query rows is compared with all points at once, so
    memory is ``O(block_size * n_points)``, never ``n_points x n_points``.

    Parameters
    ----------
    features : array-like, shape (n_points, dim)
        Points, one per row.
    k : int
        Number of neighbours, ``1 <= k < n_points``.
    metric : {"euclidean", "cosine"}
        ``"cosine"`` ranks by Euclidean distance between L2-normalised rows (same order as cosine
        similarity) and returns squared distances between the normalised rows.
    block_size : int, optional
        Query rows per block of the torch search; default keeps one block of scores near
        128 MiB.
    device : str or torch.device
        Where to compute (CPU by default).
    dtype : {"float32", "float64"}
        Precision of the computation.
    backend : {"auto", "faiss", "torch"}
        Engine (:func:`resolve_backend`): ``"auto"`` uses faiss for float32 on the CPU and the
        torch search otherwise. Both are exact; they agree up to ties.
    progress : bool
        Show a tqdm bar over blocks.

    Returns
    -------
    indices : np.ndarray, shape (n_points, k), int64
        Neighbour indices, nearest first.
    sq_distances : np.ndarray, shape (n_points, k)
        Squared Euclidean distances to those neighbours in the input's units, clipped at 0. They
        come from the expansion ``||q||^2 + ||x||^2 - 2 q.x`` on the features divided by the
        power of two ``s = 2**floor(log2(max |x|))`` and are multiplied back by ``s**2``
        (exactly, :func:`sq_to_input_units`); a value beyond the dtype's range becomes ``inf``.

    Notes
    -----
    Scale: the neighbours of ``X`` and ``c X`` are identical for ``c`` a power of two (as long
    as ``c X`` neither overflows nor has subnormal entries), and ``sq_distances`` scale by
    ``c**2``. Ties: at unit scale the expansion rounds by at most about ``(dim + 2) eps
    (||q||^2 + ||x||^2)``, i.e. relative to the squared norms, not to the distance; neighbours
    whose squared distances differ by less come in an order that rounding decides (the same
    for ``X`` and ``c X``). A point is never its own neighbour, even if it has exact copies.
    """
    torch_dtype = resolve_dtype(dtype)
    engine = resolve_backend(backend, device, torch_dtype)
    tensor = as_tensor(features, device, torch_dtype)
    k = check_graph_input(tensor, k)
    if metric not in ("euclidean", "cosine"):
        raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}.")
    if metric == "cosine":
        tensor = kernel_space(tensor, "cosine")  # L2-normalised rows
    tensor, scale = unit_scale(tensor)
    with torch.no_grad():
        indices, sq_distances = knn_tensor(tensor, k, block_size, progress, engine, equal_norms=metric == "cosine")
    return indices.cpu().numpy(), sq_to_input_units(sq_distances.cpu().numpy(), scale)


def search_engine(candidates: str, knn_backend: str, device, dtype: torch.dtype) -> str:
    """``"faiss"`` or ``"torch"``: the engine of the candidate search (validates the choice)."""
    engine = resolve_backend(knn_backend, device, dtype)
    if candidates == "exact":
        return engine
    if knn_backend == "torch" or engine != "faiss":
        raise ValueError(
            f"candidates={candidates!r} is an approximate faiss search: it needs float32 "
            f"features on the CPU and knn_backend 'auto' or 'faiss' (got dtype {dtype}, device "
            f"{str(device)!r}, knn_backend {knn_backend!r}). Use candidates='exact' otherwise."
        )
    return engine


def find_candidates(
    points: torch.Tensor, k: int, candidates: str, settings: dict, engine: str, progress: bool,
    equal_norms: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """The ``k`` candidates of every point and their squared distances (unit scale).

    Parameters
    ----------
    points : torch.Tensor, shape (n_points, dim)
        Rows in the kernel's space at unit scale.
    k : int
    candidates : {"exact", "hnsw", "ivf"}
    settings : dict
        From :func:`sslgeom.candidates.check_candidate_params`.
    engine : {"faiss", "torch"}
        Engine of the exact search.
    progress : bool
    equal_norms : bool
        Every row has the same norm (cosine kernel): the exact faiss search ranks by inner product
        (:func:`sslgeom.neighbors.knn_tensor`).

    Returns
    -------
    indices : torch.Tensor, shape (n_points, k), int64
    sq_dist : torch.Tensor, shape (n_points, k)
        Clipped at 0, in the points' dtype.
    settings : dict
        What was used (stored in :attr:`sslgeom.nnk.NNKResult.candidate_settings`).
    """
    if candidates == "exact":
        indices, sq_dist = knn_tensor(points, k, None, progress, engine, equal_norms=equal_norms)
        return indices, sq_dist, {"backend": engine}
    indices, sq_dist, used = approximate_search(points, k, "l2", candidates, settings,
                                                n_threads=torch.get_num_threads(),
                                                progress=progress)
    sq_dist = torch.from_numpy(sq_dist).clamp_(min=0.0).to(points.dtype)
    return torch.from_numpy(indices), sq_dist, used
