"""Exact k-nearest-neighbour search on tensors, and the input checks the graph layer shares.

:func:`knn` is the public entry point (also importable as ``sslgeom.nnk.knn``); the NNK graph
(:mod:`sslgeom.nnk`) calls :func:`knn_tensor` on features it has already validated with
:func:`as_tensor` and :func:`check_graph_input`.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from .kernels import kernel_space
from .validation import check_feature_tensor, check_int

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


def block_rows(n_cols: int, bytes_per_value: int, budget: int = BLOCK_BYTES) -> int:
    """Rows per block so that ``rows x n_cols`` values take about ``budget`` bytes (1..4096)."""
    return max(1, min(4096, budget // max(1, n_cols * bytes_per_value)))


def knn_tensor(
    features: torch.Tensor, k: int, block_size: int | None, progress: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact kNN on a validated tensor; returns (indices (n,k) int64, sq_distances (n,k))."""
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
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k-nearest neighbours of every point, itself excluded.

    Brute force in row blocks: a block of ``block_size`` query rows is compared with all points
    at once, so memory is ``O(block_size * n_points)``, never ``n_points x n_points``.

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
        Query rows per block; default keeps one block of scores near 128 MiB.
    device : str or torch.device
        Where to compute (CPU by default).
    dtype : {"float32", "float64"}
        Precision of the computation.
    progress : bool
        Show a tqdm bar over blocks.

    Returns
    -------
    indices : np.ndarray, shape (n_points, k), int64
        Neighbour indices, nearest first.
    sq_distances : np.ndarray, shape (n_points, k)
        Squared Euclidean distances to those neighbours, from the expansion
        ``||q||^2 + ||x||^2 - 2 q.x`` (accurate to about ``eps * ||x||^2``), clipped at 0.
    """
    torch_dtype = resolve_dtype(dtype)
    tensor = as_tensor(features, device, torch_dtype)
    k = check_graph_input(tensor, k)
    if metric not in ("euclidean", "cosine"):
        raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}.")
    if metric == "cosine":
        tensor = kernel_space(tensor, "cosine")  # L2-normalised rows
    with torch.no_grad():
        indices, sq_distances = knn_tensor(tensor, k, block_size, progress)
    return indices.cpu().numpy(), sq_distances.cpu().numpy()
