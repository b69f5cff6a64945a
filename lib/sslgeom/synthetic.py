"""Synthetic manifolds of known intrinsic dimension and curvature.

Each generator returns points of shape ``(n_points, ambient_dim)`` (float64) lying on a manifold
placed in a random orientation of the ambient space (a random orthonormal frame drawn from
``seed``), so that no coordinate axis is special. They are the ground truth against which the
manifold graph metrics are checked (tests and the metrics chapter).

- :func:`linear_subspace`: a flat ``d``-dimensional patch (curvature 0).
- :func:`circle`: a circle of radius ``R`` (dimension 1, curvature ``1 / R``).
- :func:`sphere`: a ``d``-sphere of radius ``R`` (dimension ``d``, curvature ``1 / R``).
- :func:`swiss_roll`: the rolled-up 2-D sheet (dimension 2, curvature varying along the roll).
- :func:`torus`: the flat ``d``-torus, a product of ``d`` circles (dimension ``d``, intrinsically
  flat, extrinsically curved: ``1 / R`` along each circle).
- :func:`offset_manifold`: any of the flat patch, sphere or torus translated away from the origin
  along a direction orthogonal to it, then noised. The cosine kernel sees only directions: a
  manifold centred on the origin loses a dimension when its rows are L2-normalised (a centred
  ``d``-flat becomes the ``(d-1)``-sphere), an offset one keeps its dimension.
"""

from __future__ import annotations

import numpy as np


def _check_sizes(n_points: int, intrinsic_dim: int, ambient_dim: int, extra: int = 0) -> None:
    if n_points < 2:
        raise ValueError(f"n_points must be at least 2, got {n_points}.")
    if intrinsic_dim < 1:
        raise ValueError(f"intrinsic_dim must be at least 1, got {intrinsic_dim}.")
    if ambient_dim < intrinsic_dim + extra:
        raise ValueError(
            f"ambient_dim={ambient_dim} is too small for a manifold of dimension "
            f"{intrinsic_dim} that needs {intrinsic_dim + extra} coordinates; raise ambient_dim."
        )


def random_frame(ambient_dim: int, n_columns: int, seed: int) -> np.ndarray:
    """Random orthonormal columns, shape ``(ambient_dim, n_columns)``, from a QR factorisation."""
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((ambient_dim, n_columns)))
    return q * np.sign(np.diag(r))  # sign fix makes the draw uniform (Haar)


def _embed(coords: np.ndarray, ambient_dim: int, seed: int, noise: float) -> np.ndarray:
    frame = random_frame(ambient_dim, coords.shape[1], seed)
    points = coords @ frame.T
    if noise < 0:
        raise ValueError(f"noise must be non-negative, got {noise}.")
    if noise > 0:
        rng = np.random.default_rng([seed, 1])
        points = points + noise * rng.standard_normal(points.shape)
    return points


def _coords(kind: str, n_points: int, intrinsic_dim: int, size: float, seed: int) -> np.ndarray:
    """Coordinates of a manifold in its own span, before the rotation into the ambient space.

    ``"flat"``: uniform in the cube of half side ``size`` (``intrinsic_dim`` coordinates);
    ``"sphere"``: uniform on the sphere of radius ``size`` (``intrinsic_dim + 1``); ``"torus"``:
    uniform on the flat torus whose circles have radius ``size`` (``2 * intrinsic_dim``, circle
    ``m`` in coordinates ``(2m, 2m + 1)``).
    """
    rng = np.random.default_rng(seed)
    if kind == "flat":
        return rng.uniform(-size, size, size=(n_points, intrinsic_dim))
    if kind == "sphere":
        directions = rng.standard_normal((n_points, intrinsic_dim + 1))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        return size * directions
    angles = rng.uniform(0.0, 2.0 * np.pi, size=(n_points, intrinsic_dim))
    return size * np.stack([np.cos(angles), np.sin(angles)], axis=-1).reshape(n_points, -1)


def linear_subspace(n_points: int, intrinsic_dim: int, ambient_dim: int = 64, *, scale: float = 1.0,
                    noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """Points uniform in a ``intrinsic_dim``-dimensional cube of side ``2 * scale``, embedded flat.

    Parameters
    ----------
    n_points, intrinsic_dim, ambient_dim : int
    scale : float
        Half side of the cube.
    noise : float
        Standard deviation of isotropic Gaussian noise added in the ambient space.
    seed : int

    Returns
    -------
    np.ndarray, shape (n_points, ambient_dim)
    """
    _check_sizes(n_points, intrinsic_dim, ambient_dim)
    return _embed(_coords("flat", n_points, intrinsic_dim, scale, seed), ambient_dim, seed + 1, noise)


def sphere(n_points: int, radius: float = 1.0, intrinsic_dim: int = 2, ambient_dim: int = 64, *,
           noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """Points uniform on a ``intrinsic_dim``-sphere of radius ``radius``.

    The sphere lives in ``intrinsic_dim + 1`` coordinates rotated into the ambient space.
    ``intrinsic_dim=1`` is a circle.

    Returns
    -------
    np.ndarray, shape (n_points, ambient_dim)
    """
    _check_sizes(n_points, intrinsic_dim, ambient_dim, extra=1)
    if radius <= 0:
        raise ValueError(f"radius must be positive, got {radius}.")
    return _embed(_coords("sphere", n_points, intrinsic_dim, radius, seed), ambient_dim, seed + 1, noise)


def circle(n_points: int, radius: float = 1.0, ambient_dim: int = 64, *, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """Points at uniform random angles on a circle of radius ``radius``: :func:`sphere` of dimension 1."""
    return sphere(n_points, radius, 1, ambient_dim, noise=noise, seed=seed)


def swiss_roll(n_points: int, ambient_dim: int = 64, *, turns: float = 1.5, width: float = 10.0, noise: float = 0.0,
               seed: int = 0, return_coords: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Points on a Swiss roll: the spiral ``t (cos t, sin t)`` times a straight width.

    ``t`` runs over ``[1.5 pi, 1.5 pi + 2 pi turns]`` so the local radius of curvature (about
    ``t``) changes along the roll.

    Parameters
    ----------
    n_points, ambient_dim : int
    turns : float
        Number of turns of the spiral.
    width : float
        Extent of the straight direction.
    noise : float
    seed : int
    return_coords : bool
        Also return the intrinsic coordinates ``(t, height)``.

    Returns
    -------
    points : np.ndarray, shape (n_points, ambient_dim)
    coords : np.ndarray, shape (n_points, 2), only if ``return_coords``
    """
    _check_sizes(n_points, 2, ambient_dim, extra=1)
    rng = np.random.default_rng(seed)
    t = 1.5 * np.pi + 2.0 * np.pi * turns * rng.uniform(size=n_points)
    height = width * rng.uniform(size=n_points)
    coords3 = np.column_stack([t * np.cos(t), height, t * np.sin(t)])
    points = _embed(coords3, ambient_dim, seed + 1, noise)
    if return_coords:
        return points, np.column_stack([t, height])
    return points


def torus(n_points: int, intrinsic_dim: int = 2, radius: float = 1.0, ambient_dim: int = 64, *,
          noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """Points uniform on the flat ``intrinsic_dim``-torus, circles of radius ``radius`` multiplied.

    Circle ``m`` lives in coordinates ``(2m, 2m + 1)``, so the torus needs ``2 * intrinsic_dim``
    coordinates; it is intrinsically flat and every circle has curvature ``1 / radius``.

    Parameters
    ----------
    n_points, intrinsic_dim, ambient_dim : int
    radius : float
        Radius of every circle.
    noise, seed
        As in :func:`linear_subspace`.

    Returns
    -------
    np.ndarray, shape (n_points, ambient_dim)
    """
    _check_sizes(n_points, intrinsic_dim, ambient_dim, extra=intrinsic_dim)
    if radius <= 0:
        raise ValueError(f"radius must be positive, got {radius}.")
    return _embed(_coords("torus", n_points, intrinsic_dim, radius, seed), ambient_dim, seed + 1, noise)


#: Kinds of :func:`offset_manifold`, with the coordinates each needs beyond its dimension.
OFFSET_KINDS: dict[str, str] = {
    "flat": "cube of half side `size` (curvature 0)",
    "sphere": "sphere of radius `size` (curvature 1 / size)",
    "torus": "flat torus, circles of radius `size` (extrinsic curvature 1 / size)",
}


def offset_manifold(
    kind: str,
    n_points: int,
    intrinsic_dim: int,
    ambient_dim: int = 64,
    *,
    size: float = 1.0,
    offset: float = 2.0,
    noise: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """A flat patch, sphere or torus at distance ``offset`` from the origin, plus noise.

    The manifold's coordinates get one extra coordinate, constant ``offset``, before the random
    rotation into the ambient space: the translation is orthogonal to the manifold's own span, so
    ``offset`` is exactly the distance from the origin to the manifold's centre (and to the
    nearest point of the flat patch's plane). Noise is added last, in all ambient coordinates.

    Parameters
    ----------
    kind : {"flat", "sphere", "torus"}
        See :data:`OFFSET_KINDS`. ``"flat"`` is :func:`linear_subspace`'s cube, ``"sphere"`` the
        ``intrinsic_dim``-sphere (``intrinsic_dim + 1`` coordinates), ``"torus"`` :func:`torus`
        (``2 * intrinsic_dim`` coordinates).
    n_points, intrinsic_dim, ambient_dim : int
    size : float
        Half side of the cube, or radius of the sphere / of the torus's circles.
    offset : float
        Distance of the centre from the origin; 0 gives the centred manifold.
    noise : float
        Standard deviation of isotropic Gaussian noise in the ambient space.
    seed : int

    Returns
    -------
    np.ndarray, shape (n_points, ambient_dim)
    """
    if kind not in OFFSET_KINDS:
        raise ValueError(f"kind must be one of {tuple(OFFSET_KINDS)}, got {kind!r}.")
    if not (np.isfinite(size) and size > 0):
        raise ValueError(f"size must be a positive finite number, got {size!r}.")
    if not (np.isfinite(offset) and offset >= 0):
        raise ValueError(f"offset must be a non-negative finite number, got {offset!r}.")
    extra = {"flat": 0, "sphere": 1, "torus": intrinsic_dim}[kind]
    _check_sizes(n_points, intrinsic_dim, ambient_dim, extra=extra + 1)
    coords = np.column_stack([_coords(kind, n_points, intrinsic_dim, size, seed), np.full(n_points, float(offset))])
    return _embed(coords, ambient_dim, seed + 1, noise)
