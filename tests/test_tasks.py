"""Tests of the transfer tasks and of the corruptions of the shifted-domain task."""

import numpy as np
import pytest

from sslgeom import tasks


def test_corruption_is_deterministic_and_changes_images():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(60, 28, 28), dtype=np.uint8)
    first, kind = tasks.corrupt_images(images, seed=3)
    second, kind_again = tasks.corrupt_images(images, seed=3)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(kind, kind_again)
    assert first.dtype == np.uint8 and first.shape == images.shape
    assert set(np.unique(kind)) == {0, 1, 2}
    for k in range(3):  # every corruption really alters its images
        assert np.abs(first[kind == k].astype(int) - images[kind == k]).mean() > 5
    # low contrast shrinks the spread of grey levels
    assert first[kind == 2].std() < 0.5 * images[kind == 2].std()
    # low contrast at severity 1 blends each image with its mean grey level, weight 0.3 on the image
    lowered = images[kind == 2].astype(np.float64)
    expected = 0.3 * lowered + 0.7 * lowered.mean(axis=(1, 2), keepdims=True)
    assert np.abs(first[kind == 2] - expected).max() <= 1.0  # uint8 rounding
    # the noise is Gaussian with std 64 grey levels where it is not clipped
    residual = first[kind == 0].astype(np.float64) - images[kind == 0]
    inside = (first[kind == 0] > 0) & (first[kind == 0] < 255)
    assert 45 < residual[inside].std() < 70  # clipping removes the tails, so a bit below 64
    with pytest.raises(ValueError, match="uint8"):
        tasks.corrupt_images(images.astype(np.float32))


def test_fashion_task_splits_are_disjoint_and_sized():
    built = tasks.build_tasks(["fashion"], n_train=500, n_val=200, n_test=300, seed=0)["fashion"]
    train, val, test = built.train, built.val, built.test
    assert abs(len(train[1]) - 500) <= 10 and abs(len(val[1]) - 200) <= 10 and abs(len(test[1]) - 300) <= 10
    assert set(np.unique(train[1])) == set(range(10)) == set(np.unique(test[1]))
    # train and val come from disjoint parts of the train split: no image is in both
    train_rows = {image.tobytes() for image in train[0]}
    assert not any(image.tobytes() in train_rows for image in val[0])


def test_tasks_do_not_depend_on_which_others_are_built():
    alone = tasks.build_tasks(["digits"], n_train=100, n_val=50, n_test=100, seed=2)["digits"]
    together = tasks.build_tasks(["textures", "digits"], n_train=100, n_val=50, n_test=100, seed=2)["digits"]
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(alone, split)[0], getattr(together, split)[0])
    other_seed = tasks.build_tasks(["digits"], n_train=100, n_val=50, n_test=100, seed=3)["digits"]
    assert not np.array_equal(alone.train[1], other_seed.train[1])
    with pytest.raises(ValueError, match="unknown transfer tasks"):
        tasks.build_tasks(["imagenet"])
