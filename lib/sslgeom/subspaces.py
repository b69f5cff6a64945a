"""Local tangent subspaces and the principal angles between them.

The ``subspace_angle`` metric of :mod:`sslgeom.mgm` and the curvature estimate of
:mod:`sslgeom.curvature` both read how the local subspaces turn from one neighbourhood to the
next. This module computes the two ingredients, batched over nodes:

- :func:`tangent_bases`: per node, an orthonormal basis of the leading right singular vectors of
  its neighbours' offsets ``x_j - x_i`` (dimension fixed, or chosen per node by the share of the
  offsets' energy);
- :func:`largest_principal_angles` (and :func:`pair_angles` on node indices): the largest
  principal angle between paired subspaces, as ``scipy.linalg.subspace_angles(A, B).max()``,
  accurate from tiny angles to right angles (the sine rule below ``pi/4``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["tangent_bases", "largest_principal_angles", "pair_angles"]

#: Float64 values per block of batched work (cross products here, gathered neighbourhoods in
#: sslgeom.mgm): keeps a block's memory near 64 MiB.
BLOCK_VALUES = 1 << 23


def _dense_tangent_bases(
    offsets: np.ndarray,
    tangent_dim: int | None,
    variance_fraction: float,
    max_tangent_dim: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Tangent bases of nodes whose every offset row is a neighbour.

    Parameters
    ----------
    offsets : np.ndarray, shape (n_nodes, m, dim)
        ``x_j - x_i`` for the ``m >= 1`` neighbours of each node.
    tangent_dim, variance_fraction, max_tangent_dim
        See :func:`tangent_bases`.

    Returns
    -------
    bases : np.ndarray, shape (n_nodes, dim, min(m, dim, width))
        ``width`` is ``tangent_dim`` or ``max_tangent_dim``; zero beyond each node's dimension.
    dims : np.ndarray, shape (n_nodes,), int64
    """
    _, singular, vh = np.linalg.svd(offsets, full_matrices=False)  # vh: (n, min(m, dim), dim)
    energy = singular**2
    total = energy.sum(axis=1, keepdims=True)
    # numerical rank: singular values that are not rounding noise
    rank = (singular > 1e-9 * np.maximum(singular[:, :1], 1e-300)).sum(axis=1)
    rank = np.where(total[:, 0] > 0, rank, 0)
    if tangent_dim is None:
        share = np.cumsum(energy, axis=1) / np.where(total > 0, total, 1.0)
        dims = np.minimum((share < variance_fraction - 1e-12).sum(axis=1) + 1, max_tangent_dim)
        width = max_tangent_dim
    else:
        dims = np.full(len(offsets), int(tangent_dim))
        width = int(tangent_dim)
    dims = np.minimum(dims, rank).astype(np.int64)
    width = min(width, vh.shape[1])
    bases = np.transpose(vh[:, :width, :], (0, 2, 1)).copy()
    bases *= np.arange(width)[None, None, :] < dims[:, None, None]
    return bases, dims


def tangent_bases(
    offsets: np.ndarray,
    mask: np.ndarray,
    tangent_dim: int | None = None,
    *,
    variance_fraction: float = 0.99,
    max_tangent_dim: int = 8,
) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal tangent bases from neighbour offsets.

    Nodes are processed in groups of equal neighbour count, each on its neighbours' offsets
    only, so an NNK node with a few neighbours among many candidates costs a small SVD.

    Parameters
    ----------
    offsets : np.ndarray, shape (n_nodes, k, dim)
        ``x_j - x_i`` for each candidate ``j`` of each node ``i``.
    mask : np.ndarray, shape (n_nodes, k), bool
        Which candidates are neighbours.
    tangent_dim : int, optional
        Fixed dimension of every tangent space (capped by the rank of the offsets). ``None``
        (default) picks, per node, the smallest ``d`` whose leading singular values carry
        ``variance_fraction`` of the offsets' energy, capped at ``max_tangent_dim``.
    variance_fraction : float
        Energy fraction for the automatic choice.
    max_tangent_dim : int
        Cap of the automatic choice (and the width of the returned array).

    Returns
    -------
    bases : np.ndarray, shape (n_nodes, dim, min(d_max, k, dim))
        Orthonormal columns (the leading right singular vectors of the neighbours' offsets);
        columns beyond a node's dimension are zero. ``d_max`` is ``tangent_dim`` when given,
        else ``max_tangent_dim``.
    dims : np.ndarray, shape (n_nodes,), int64
        Tangent dimension of each node (0 for a node without neighbours).
    """
    if tangent_dim is not None and tangent_dim < 1:
        raise ValueError(f"tangent_dim must be a positive integer or None, got {tangent_dim}.")
    if not 0 < variance_fraction <= 1:
        raise ValueError(f"variance_fraction must be in (0, 1], got {variance_fraction}.")
    offsets, mask = np.asarray(offsets, dtype=np.float64), np.asarray(mask, dtype=bool)
    if offsets.ndim != 3 or mask.shape != offsets.shape[:2]:
        raise ValueError(
            f"offsets must have shape (n_nodes, k, dim) and mask (n_nodes, k); got {offsets.shape} "
            f"and {mask.shape}."
        )
    n_nodes, k, dim = offsets.shape
    width = min(int(tangent_dim) if tangent_dim is not None else int(max_tangent_dim), k, dim)
    bases = np.zeros((n_nodes, dim, width))
    dims = np.zeros(n_nodes, dtype=np.int64)
    counts = mask.sum(axis=1)
    neighbours_first = np.argsort(~mask, axis=1, kind="stable")  # neighbour slots, then the rest
    for count in np.unique(counts[counts > 0]):
        rows = np.flatnonzero(counts == count)
        compact = offsets[rows[:, None], neighbours_first[rows, :count]]  # (rows, count, dim)
        group_bases, group_dims = _dense_tangent_bases(
            compact, tangent_dim, variance_fraction, max_tangent_dim
        )
        bases[rows, :, : group_bases.shape[2]] = group_bases
        dims[rows] = group_dims
    return bases, dims


def _largest_angles_of_equal_shapes(small: np.ndarray, large: np.ndarray) -> np.ndarray:
    """Largest principal angle between the column spans of paired bases of fixed widths.

    Parameters
    ----------
    small : np.ndarray, shape (n_pairs, dim, d_small)
    large : np.ndarray, shape (n_pairs, dim, d_large)
        Orthonormal columns, ``1 <= d_small <= d_large``.

    Returns
    -------
    np.ndarray, shape (n_pairs,)
        Radians in ``[0, pi/2]``.
    """
    cross = np.matmul(np.swapaxes(large, 1, 2), small)  # (n, d_large, d_small)
    # the cosines of the d_small principal angles are the singular values of the cross products
    smallest_cos = np.clip(np.linalg.svd(cross, compute_uv=False)[:, -1], 0.0, 1.0)
    angles = np.arccos(smallest_cos)
    # arccos of a cosine near 1 is inaccurate: below pi/4 read the angle off its sine, the
    # largest singular value of what the smaller basis loses when projected on the larger one
    # (the rule of scipy.linalg.subspace_angles)
    acute = smallest_cos**2 >= 0.5
    if acute.any():
        residual = small[acute] - np.matmul(large[acute], cross[acute])
        residual_gram = np.matmul(np.swapaxes(residual, 1, 2), residual)
        largest_sin_sq = np.linalg.eigvalsh(residual_gram)[:, -1]
        angles[acute] = np.arcsin(np.sqrt(np.clip(largest_sin_sq, 0.0, 1.0)))
    return angles


def pair_angles(bases: np.ndarray, dims: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Largest principal angle between the tangent spaces of node pairs.

    Parameters
    ----------
    bases : np.ndarray, shape (n_nodes, dim, d_max)
        Orthonormal columns, zero beyond each node's dimension (see :func:`tangent_bases`).
    dims : np.ndarray, shape (n_nodes,)
    first, second : np.ndarray, shape (n_pairs,), int
        Node indices of each pair.

    Returns
    -------
    np.ndarray, shape (n_pairs,)
        NaN where either tangent space is empty.
    """
    swap = dims[first] > dims[second]
    small, large = np.where(swap, second, first), np.where(swap, first, second)
    small_dims, large_dims = dims[small], dims[large]
    angles = np.full(len(first), np.nan)
    dim = bases.shape[1]
    # pairs of equal tangent dimensions share array shapes: one batched computation per shape
    shape_code = small_dims * (bases.shape[2] + 1) + large_dims
    for code in np.unique(shape_code[small_dims > 0]):
        d_small, d_large = divmod(int(code), bases.shape[2] + 1)
        members = np.flatnonzero(shape_code == code)
        per_block = max(1, BLOCK_VALUES // (dim * (d_small + d_large)))
        for start in range(0, len(members), per_block):
            block = members[start : start + per_block]
            angles[block] = _largest_angles_of_equal_shapes(
                bases[small[block], :, :d_small], bases[large[block], :, :d_large]
            )
    return angles


def largest_principal_angles(
    bases_a: np.ndarray, dims_a: np.ndarray, bases_b: np.ndarray, dims_b: np.ndarray
) -> np.ndarray:
    """Largest principal angle (radians) between paired subspaces.

    Same semantics as ``scipy.linalg.subspace_angles(A, B).max()`` for the spans of the first
    ``dims_a`` / ``dims_b`` columns; there are ``min(dims_a, dims_b)`` principal angles.

    Parameters
    ----------
    bases_a, bases_b : np.ndarray, shape (n_pairs, dim, d_max)
        Orthonormal columns (zero beyond each subspace's dimension).
    dims_a, dims_b : np.ndarray, shape (n_pairs,)

    Returns
    -------
    np.ndarray, shape (n_pairs,)
        NaN where either subspace is empty.
    """
    bases_a, bases_b = np.asarray(bases_a, dtype=np.float64), np.asarray(bases_b, dtype=np.float64)
    if bases_a.ndim != 3 or bases_a.shape != bases_b.shape:
        raise ValueError(
            f"bases_a and bases_b must have the same shape (n_pairs, dim, d_max); got "
            f"{bases_a.shape} and {bases_b.shape}."
        )
    dims = np.concatenate([np.asarray(dims_a), np.asarray(dims_b)]).astype(np.int64)
    n_pairs, _, width = bases_a.shape
    if dims.shape != (2 * n_pairs,) or dims.min(initial=0) < 0 or dims.max(initial=0) > width:
        raise ValueError(f"dims_a and dims_b must be ({n_pairs},) integers in [0, {width}].")
    pairs = np.arange(n_pairs)
    return pair_angles(np.concatenate([bases_a, bases_b]), dims, pairs, pairs + n_pairs)
