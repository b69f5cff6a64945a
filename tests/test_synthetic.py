"""Tests of sslgeom.synthetic: the manifolds have the dimension and size they claim."""

import numpy as np
import pytest

from sslgeom import synthetic


def _rank(points, tol=1e-9):
    singular = np.linalg.svd(points - points.mean(0), compute_uv=False)
    return int((singular > tol * singular[0]).sum())


@pytest.mark.parametrize("dim", [1, 3, 8])
def test_linear_subspace_has_its_dimension(dim):
    points = synthetic.linear_subspace(200, dim, 64, scale=2.0, seed=dim)
    assert points.shape == (200, 64)
    assert _rank(points) == dim
    # the cube of half side 2 is preserved by the orthonormal embedding
    frame = synthetic.random_frame(64, dim, dim + 1)
    coords = points @ frame
    assert np.abs(coords).max() <= 2.0 + 1e-12
    np.testing.assert_allclose(coords @ frame.T, points, atol=1e-12)


@pytest.mark.parametrize("radius", [0.3, 1.0, 5.0])
def test_circle_and_sphere_have_their_radius(radius):
    circle = synthetic.circle(100, radius, 32, seed=1)
    sphere = synthetic.sphere(100, radius, 2, 32, seed=1)
    np.testing.assert_allclose(np.linalg.norm(circle, axis=1), radius)
    np.testing.assert_allclose(np.linalg.norm(sphere, axis=1), radius)
    assert _rank(circle) == 2 and _rank(sphere) == 3


def test_swiss_roll_coordinates_and_rank():
    points, coords = synthetic.swiss_roll(300, 16, seed=2, return_coords=True)
    assert points.shape == (300, 16) and coords.shape == (300, 2)
    assert _rank(points) == 3
    t = coords[:, 0]
    # distance from the roll's axis (a line through the origin) is t
    frame = synthetic.random_frame(16, 3, 3)
    local = points @ frame
    np.testing.assert_allclose(np.hypot(local[:, 0], local[:, 2]), t)


def test_seeds_reproduce_and_differ():
    a = synthetic.sphere(50, seed=4)
    np.testing.assert_array_equal(a, synthetic.sphere(50, seed=4))
    assert not np.allclose(a, synthetic.sphere(50, seed=5))


def test_noise_is_added_with_requested_scale():
    clean = synthetic.linear_subspace(2000, 2, 64, seed=0)
    noisy = synthetic.linear_subspace(2000, 2, 64, noise=0.1, seed=0)
    assert np.std(noisy - clean) == pytest.approx(0.1, rel=0.05)


def test_bad_sizes_raise():
    with pytest.raises(ValueError, match="ambient_dim"):
        synthetic.sphere(10, 1.0, intrinsic_dim=3, ambient_dim=3)
    with pytest.raises(ValueError, match="n_points"):
        synthetic.linear_subspace(1, 2)
    with pytest.raises(ValueError, match="radius"):
        synthetic.circle(10, radius=0.0)
    with pytest.raises(ValueError, match="noise"):
        synthetic.linear_subspace(10, 2, noise=-1.0)
