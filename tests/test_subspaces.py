"""Tests of sslgeom.subspaces: tangent bases against a per-node SVD, principal angles against
scipy.linalg.subspace_angles and against subspaces built at a known angle."""

import numpy as np
import pytest
from scipy.linalg import subspace_angles

from sslgeom import subspaces


def _orthonormal(rng, dim, cols):
    q, _ = np.linalg.qr(rng.standard_normal((dim, cols)))
    return q


def test_largest_principal_angles_match_scipy():
    rng = np.random.default_rng(0)
    dim, width = 10, 4
    pairs = [(1, 1), (2, 3), (4, 2), (3, 3), (4, 4)]
    bases_a = np.zeros((len(pairs), dim, width))
    bases_b = np.zeros((len(pairs), dim, width))
    expected = []
    for p, (da, db) in enumerate(pairs):
        a, b = _orthonormal(rng, dim, da), _orthonormal(rng, dim, db)
        bases_a[p, :, :da], bases_b[p, :, :db] = a, b
        expected.append(subspace_angles(a, b).max())
    got = subspaces.largest_principal_angles(
        bases_a, np.array([p[0] for p in pairs]), bases_b, np.array([p[1] for p in pairs])
    )
    np.testing.assert_allclose(got, expected, atol=1e-10)


def _rotated_pair(rng, dim, angle, dims_a, dims_b):
    """Bases of two subspaces whose largest principal angle is ``angle`` (exactly, before the
    common random rotation): B shares A's directions except the first, tilted by ``angle``."""
    rotation = _orthonormal(rng, dim, dim)
    a = np.eye(dim)[:, :dims_a]
    b = np.eye(dim)[:, :dims_b].copy()
    b[:, 0] = np.cos(angle) * np.eye(dim)[:, 0] + np.sin(angle) * np.eye(dim)[:, dims_b]
    return rotation @ a, rotation @ b


@pytest.mark.parametrize("angle", [1e-9, 1e-4, 0.3, np.pi / 4, 1.2, np.pi / 2 - 1e-9])
def test_largest_principal_angles_are_accurate_from_tiny_to_right_angles(angle):
    rng = np.random.default_rng(7)
    dim, width = 9, 4
    pairs = [(1, 1), (2, 3), (3, 2), (4, 4)]
    bases_a, bases_b = np.zeros((len(pairs), dim, width)), np.zeros((len(pairs), dim, width))
    for p, (da, db) in enumerate(pairs):
        # the tilted direction must lie in the smaller subspace for the largest angle to be `angle`
        small, large = _rotated_pair(rng, dim, angle, min(da, db), max(da, db))
        a, b = (small, large) if da <= db else (large, small)
        bases_a[p, :, :da], bases_b[p, :, :db] = a, b
        assert subspace_angles(a, b).max() == pytest.approx(angle, rel=1e-6, abs=1e-15)
    got = subspaces.largest_principal_angles(
        bases_a, np.array([p[0] for p in pairs]), bases_b, np.array([p[1] for p in pairs])
    )
    np.testing.assert_allclose(got, angle, rtol=1e-6, atol=1e-15)


def test_largest_principal_angles_of_an_empty_subspace_are_nan_and_bad_shapes_raise():
    rng = np.random.default_rng(8)
    bases = np.zeros((2, 5, 2))
    bases[:, :, :1] = _orthonormal(rng, 5, 1)
    got = subspaces.largest_principal_angles(bases, np.array([1, 0]), bases, np.array([1, 1]))
    assert got[0] == pytest.approx(0.0, abs=1e-12) and np.isnan(got[1])
    with pytest.raises(ValueError, match="same shape"):
        subspaces.largest_principal_angles(bases, np.array([1, 1]), bases[:1], np.array([1]))
    with pytest.raises(ValueError, match="integers in"):
        subspaces.largest_principal_angles(bases, np.array([1, 3]), bases, np.array([1, 1]))


def test_tangent_bases_match_an_svd_of_each_nodes_neighbours():
    rng = np.random.default_rng(9)
    n_nodes, k, dim = 40, 7, 12
    offsets = rng.standard_normal((n_nodes, k, 3)) @ rng.standard_normal((3, dim))
    offsets += 0.05 * rng.standard_normal((n_nodes, k, dim))
    mask = rng.random((n_nodes, k)) < 0.6
    mask[0], mask[1] = False, True  # a node without neighbours and one with all candidates
    for tangent_dim in (None, 2):
        bases, dims = subspaces.tangent_bases(offsets, mask, tangent_dim, variance_fraction=0.9)
        assert bases.shape == (n_nodes, dim, 2 if tangent_dim else 7)
        for node in range(n_nodes):
            kept = offsets[node][mask[node]]
            if len(kept) == 0:
                assert dims[node] == 0 and not bases[node].any()
                continue
            _, singular, vh = np.linalg.svd(kept, full_matrices=False)
            share = np.cumsum(singular**2) / np.sum(singular**2)
            expected_dim = tangent_dim or int(np.argmax(share >= 0.9 - 1e-12)) + 1
            expected_dim = min(expected_dim, len(kept))
            assert dims[node] == expected_dim
            basis = bases[node, :, : dims[node]]
            np.testing.assert_allclose(basis.T @ basis, np.eye(dims[node]), atol=1e-12)
            assert not bases[node, :, dims[node]:].any()
            assert subspace_angles(basis, vh[: dims[node]].T).max() < 1e-8


def test_tangent_bases_recover_a_plane():
    rng = np.random.default_rng(1)
    plane = _orthonormal(rng, 6, 2)
    offsets = (rng.standard_normal((1, 9, 2)) @ plane.T)
    bases, dims = subspaces.tangent_bases(offsets, np.ones((1, 9), bool))
    assert dims[0] == 2
    assert subspace_angles(bases[0, :, :2], plane).max() < 1e-10
    fixed, fixed_dims = subspaces.tangent_bases(offsets, np.ones((1, 9), bool), tangent_dim=1)
    assert fixed_dims[0] == 1 and fixed.shape[2] == 1
