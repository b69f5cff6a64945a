"""Cache: content keys, atomic writes, recovery from interrupted and corrupt writes."""

import numpy as np
import pytest

from sslgeom import cache


# every test writes to a cache of its own (the conftest fixture), even those that do not name it
pytestmark = pytest.mark.usefixtures("private_cache")


def test_content_key_depends_on_content_not_identity():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert cache.content_key("x", a, {"k": 1}) == cache.content_key("x", a.copy(), {"k": 1})
    assert cache.content_key("x", a) != cache.content_key("x", a.reshape(3, 2))
    assert cache.content_key("x", a) != cache.content_key("x", a.astype(np.float64))
    assert cache.content_key({"b": 1, "a": 2}) == cache.content_key({"a": 2, "b": 1})
    assert cache.content_key(1) != cache.content_key("1")


def test_content_key_rejects_unhashable_objects():
    with pytest.raises(TypeError, match="cannot build a cache key"):
        cache.content_key(object())


def test_cached_arrays_computes_once(private_cache):
    calls = []

    def compute():
        calls.append(1)
        return {"features": np.ones((3, 2)), "labels": np.arange(3)}

    first = cache.cached_arrays("demo", ["model", 7], compute)
    second = cache.cached_arrays("demo", ["model", 7], compute)
    assert len(calls) == 1
    assert np.array_equal(first["features"], second["features"])
    cache.cached_arrays("demo", ["model", 8], compute)
    assert len(calls) == 2


def test_crash_during_write_leaves_no_entry_and_next_run_recomputes(private_cache):
    def crashing():
        raise KeyboardInterrupt  # the user stops the run mid-computation

    target = cache.entry_path("demo", cache.content_key("k"), ".npz")
    with pytest.raises(KeyboardInterrupt):
        with cache.atomic_write(target) as tmp:
            tmp.write_bytes(b"half a file")
            crashing()
    assert not target.exists()
    assert list(target.parent.iterdir()) == []  # no temporary left behind either
    result = cache.cached_arrays("demo", "k", lambda: {"x": np.arange(4)})
    assert np.array_equal(result["x"], np.arange(4))


def test_crash_inside_savez_does_not_replace_previous_entry(private_cache, monkeypatch):
    path = private_cache / "demo" / "entry.npz"
    cache.save_arrays(path, x=np.zeros(3))

    def exploding_savez(handle, **arrays):
        handle.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", exploding_savez)
    with pytest.raises(OSError, match="disk full"):
        cache.save_arrays(path, x=np.ones(3))
    monkeypatch.undo()
    assert np.array_equal(cache.load_arrays(path)["x"], np.zeros(3))
    assert sorted(p.name for p in path.parent.iterdir()) == ["entry.npz"]


def test_corrupt_entry_is_reported_and_recomputed(private_cache):
    key_parts = ["corrupt"]
    path = cache.entry_path("demo", cache.content_key(key_parts), ".npz")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a zip archive")
    with pytest.raises(ValueError, match="corrupt or truncated"):
        cache.load_arrays(path)
    result = cache.cached_arrays("demo", key_parts, lambda: {"x": np.arange(2)})
    assert np.array_equal(result["x"], np.arange(2))


def test_tables_round_trip(private_cache):
    import pandas as pd

    table = pd.DataFrame({"model": ["a", "b"], "score": [0.5, 0.7]})
    loaded = cache.cached_table("tables", ["t"], lambda: table)
    assert loaded.equals(table)
    assert cache.cached_table("tables", ["t"], lambda: None).equals(table)


def test_cache_dir_follows_environment(private_cache):
    assert cache.cache_dir() == private_cache and private_cache.is_dir()


def test_invalid_namespace_is_rejected():
    with pytest.raises(ValueError, match="invalid cache namespace"):
        cache.entry_path("../escape", "k", ".npz")


class _Marker:
    """A pickle payload that would create a file if it were ever unpickled."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_pickle_in_the_table_cache_is_never_run(private_cache, tmp_path):
    import pickle

    import pandas as pd

    marker = tmp_path / "payload-ran"
    path = cache.entry_path("tables", cache.content_key(["planted"]), cache.TABLE_SUFFIX)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(_Marker(marker)))
    table = pd.DataFrame({"model": ["a"], "score": [1.0]})
    assert cache.cached_table("tables", ["planted"], lambda: table).equals(table)  # recomputed, not read
    assert not marker.exists()
    assert cache.load_table(path).equals(table)  # the planted file was replaced by the Parquet entry
    with pytest.raises(TypeError, match="DataFrames"):
        cache.save_table(tmp_path / "x.parquet", {"not": "a table"})
