"""The shared input checks: what they accept, what they refuse, and that messages say how to fix it."""

import numpy as np
import pytest
import torch

from sslgeom import validation


def test_check_features_returns_float64_copy_of_valid_input():
    features = np.arange(12, dtype=np.float32).reshape(4, 3)
    checked = validation.check_features(features)
    assert checked.dtype == np.float64
    np.testing.assert_array_equal(checked, features.astype(np.float64))
    np.testing.assert_array_equal(validation.check_features(torch.from_numpy(features)), checked)


@pytest.mark.parametrize(
    "features, match",
    [
        (np.zeros(5), "2-D array"),
        (np.zeros((1, 3)), "at least 2 rows"),
        (np.zeros((4, 0)), "zero columns"),
        (np.array([[0.0, 1.0], [np.nan, 2.0], [3.0, np.inf]]), r"2 of 3 rows \(first: \[1, 2\]\)"),
    ],
)
def test_check_features_refuses_bad_matrices(features, match):
    with pytest.raises(ValueError, match=match):
        validation.check_features(features)


def test_check_labels():
    labels = validation.check_labels([0, 1, 1], n_rows=3)
    np.testing.assert_array_equal(labels, [0, 1, 1])
    with pytest.raises(ValueError, match="one label per feature row"):
        validation.check_labels([0, 1], n_rows=3)
    with pytest.raises(ValueError, match="1 class"):
        validation.check_labels([2, 2, 2], n_rows=3)


def test_check_images():
    images = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
    assert validation.check_images(images) is images
    with pytest.raises(TypeError, match="torch.from_numpy"):
        validation.check_images(np.zeros((2, 1, 4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"images\[:, None\]"):
        validation.check_images(torch.zeros(2, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match="float32"):
        validation.check_images(torch.zeros(2, 1, 4, 4))


def test_check_int():
    assert validation.check_int(np.int64(3), "k", minimum=1) == 3
    for bad in (True, 2.0, "3"):
        with pytest.raises(TypeError, match="k must be an integer"):
            validation.check_int(bad, "k")
    with pytest.raises(ValueError, match="at least 1"):
        validation.check_int(0, "k", minimum=1)
    with pytest.raises(ValueError, match="at most 9"):
        validation.check_int(10, "k", maximum=9)


def test_check_choice_and_names_list_the_choices():
    assert validation.check_choice("cosine", ["cosine", "gaussian"], "kernel") == "cosine"
    with pytest.raises(ValueError, match=r"unknown kernel 'rbf'; choose one of \['cosine', 'gaussian'\]"):
        validation.check_choice("rbf", ["cosine", "gaussian"], "kernel")
    assert validation.check_names(("a", "b"), ["a", "b", "c"], "model(s)") == ["a", "b"]
    with pytest.raises(TypeError, match="list of names"):
        validation.check_names("a", ["a"], "model(s)")
    with pytest.raises(ValueError, match=r"unknown model\(s\) \['z'\]; available: \['a', 'b'\]. Train"):
        validation.check_names(["a", "z"], ["a", "b"], "model(s)", hint="Train them.")


def test_check_graph_features_needs_one_row_per_node():
    features = np.ones((5, 3), dtype=np.float32)
    checked = validation.check_graph_features(features, 5)
    assert checked.dtype == np.float64 and checked.shape == (5, 3)
    with pytest.raises(ValueError, match="must have 4 rows to match the graph.*built from"):
        validation.check_graph_features(features, 4)
    with pytest.raises(ValueError, match="NaN"):
        validation.check_graph_features(np.full((5, 3), np.nan), 5)
