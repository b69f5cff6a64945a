"""Datasets: shapes, dtypes, class balance, and clear errors for missing or corrupt files."""

import gzip
import shutil

import numpy as np
import pytest

from sslgeom import data


@pytest.fixture(scope="module")
def fashion_test():
    return data.load_fashion_mnist("test")


def test_fashion_mnist_test_split_shapes_and_balance(fashion_test):
    images, labels = fashion_test
    assert images.shape == (10_000, 28, 28)
    assert images.dtype == np.uint8 and labels.dtype == np.int64
    assert np.array_equal(data.class_counts(labels, 10), np.full(10, 1000))
    assert 0 < images.mean() < 255  # real pixels, not a blank array


def test_fashion_mnist_train_split_shapes_and_balance():
    images, labels = data.load_fashion_mnist("train")
    assert images.shape == (60_000, 28, 28)
    assert np.array_equal(data.class_counts(labels, 10), np.full(10, 6000))
    assert len(data.FASHION_CLASSES) == 10


def test_unknown_split_is_rejected():
    with pytest.raises(ValueError, match="unknown Fashion-MNIST split"):
        data.load_fashion_mnist("validation")


def _copy_release(tmp_path):
    for name in data.FASHION_FILES:
        shutil.copy(data._find_fashion_file(name), tmp_path / name)


@pytest.fixture
def private_copy(tmp_path, monkeypatch):
    """A copy of the release in a directory that is searched first, and nowhere else."""
    _copy_release(tmp_path)
    monkeypatch.setenv(data.FASHION_ENV, str(tmp_path))
    monkeypatch.setattr(data, "DEBIAN_FASHION_DIR", tmp_path / "absent")
    monkeypatch.setenv("SSLGEOM_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_corrupted_copy_fails_checksum(private_copy):
    path = private_copy / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[100] ^= 0xFF  # flip one label byte: same size, different content
    path.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(data.DataFileError, match="checksum mismatch.*t10k-labels"):
        data.load_fashion_mnist("test")


def test_truncated_copy_is_reported_not_partially_read(private_copy):
    path = private_copy / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[: 100_000])
    with pytest.raises(data.DataFileError, match="t10k-images"):
        data.load_fashion_mnist("test")


def test_bad_magic_number_is_reported(private_copy, monkeypatch):
    path = private_copy / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[3] = 0x09
    fake = bytes(raw)
    path.write_bytes(gzip.compress(fake))
    import hashlib

    # Accept the altered content's checksum so that the magic-number check is the one exercised.
    table = dict(data.FASHION_FILES)
    table[path.name] = (hashlib.sha256(fake).hexdigest(), len(fake))
    monkeypatch.setattr(data, "FASHION_FILES", table)
    with pytest.raises(data.DataFileError, match="magic number"):
        data.load_fashion_mnist("test")


def test_missing_file_says_where_it_looked_and_how_to_fix(private_copy):
    (private_copy / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError) as info:
        data.load_fashion_mnist("train")
    message = str(info.value)
    assert str(private_copy) in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert data.FASHION_ENV in message


def test_digits_task_splits_are_disjoint_balanced_and_deterministic():
    task = data.load_digits_task(size=28, seed=0)
    assert task.train[0].shape[1:] == (28, 28) and task.train[0].dtype == np.uint8
    sizes = task.split_sizes()
    assert sum(sizes.values()) == 1797
    for split in (task.train, task.val, task.test):
        assert set(np.unique(split[1])) == set(range(10))
    again = data.load_digits_task(size=28, seed=0)
    assert np.array_equal(task.test[0], again.test[0])
    other = data.load_digits_task(size=28, seed=1)
    assert not np.array_equal(task.test[1], other.test[1])


def test_textures_task_shapes_classes_and_disjoint_bands():
    task = data.load_textures_task(size=28, seed=0, patches_per_class=50)
    n_classes = len(task.classes)
    assert n_classes == len(data.TEXTURE_SOURCES)
    assert task.split_sizes() == {"train": 30 * n_classes, "val": 10 * n_classes, "test": 10 * n_classes}
    assert np.array_equal(data.class_counts(task.test[1]), np.full(n_classes, 10))
    # Different textures give different images: per-class mean patches must differ.
    means = np.stack([task.train[0][task.train[1] == c].mean() for c in range(n_classes)])
    assert np.unique(np.round(means, 3)).size == n_classes


@pytest.mark.parametrize("size", [0, 4, 28.0, "28"])
def test_bad_size_is_rejected(size):
    with pytest.raises(ValueError, match="size must be an integer"):
        data.load_digits_task(size=size)


def test_unknown_texture_source_is_rejected():
    with pytest.raises(ValueError, match="unknown texture sources"):
        data.load_textures_task(sources=("brick", "velvet"))
