"""Fault injection: hostile files, broken environments and silent-wrong-result inputs.

Each case is what a careful attacker or an unlucky user would try. A hostile pickle carries a
payload that creates a marker file when unpickled; every load path must refuse it (or treat it as a
corrupt entry) without the marker ever appearing. The scale cases of kNN/NNK live in
``test_scale_properties.py`` and the parameter cases in ``test_params.py``.
"""

import dataclasses
import os
import pickle
import time

import numpy as np
import pandas as pd
import pytest
import torch

from sslgeom import augment, cache, embed, published, zoo
from sslgeom.checkpoints import CheckpointError, LoadedModel, load_state_strict
from sslgeom.models import build_backbone, preprocess_uint8
from sslgeom.train_state import load_training_state


class Payload:
    """Creates ``path`` if it is ever unpickled (``open(path, "w")`` runs at load time)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "payload-ran"
    yield path
    assert not path.exists(), "a pickled payload ran"


# --- no pickle on any load path -------------------------------------------------------------


def test_table_cache_recomputes_a_planted_pickle(private_cache, marker):
    path = cache.entry_path("tables", cache.content_key(["planted"]), cache.TABLE_SUFFIX)
    path.parent.mkdir(parents=True)
    path.write_bytes(pickle.dumps(pd.DataFrame({"payload": [Payload(marker)]})))
    fresh = pd.DataFrame({"x": [1.0]})
    assert cache.cached_table("tables", ["planted"], lambda: fresh).equals(fresh)


def test_array_cache_recomputes_an_object_array(private_cache, marker):
    path = cache.entry_path("demo", cache.content_key(["planted"]), ".npz")
    path.parent.mkdir(parents=True)
    with open(path, "wb") as handle:
        np.savez(handle, x=np.array([Payload(marker)], dtype=object))
    result = cache.cached_arrays("demo", ["planted"], lambda: {"x": np.arange(3)}, required=("x",))
    assert np.array_equal(result["x"], np.arange(3))


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_default_zoo_refuses_a_pickled_checkpoint(tiny_zoo, marker, suffix):
    """A zoo entry whose file is a pickle, with its correct SHA-256 recorded: still never unpickled."""
    name = tiny_zoo[0]
    hostile = zoo.zoo_dir() / f"{name}-hostile{suffix}"
    with open(hostile, "wb") as handle:
        pickle.dump({"conv.weight": Payload(marker)}, handle)
    manifest = zoo.read_manifest()
    manifest["models"][0].update(file=hostile.name, sha256=cache.file_sha256(hostile))
    zoo.write_manifest(manifest)
    with pytest.raises(CheckpointError, match="Could not read|Refused to read"):
        zoo.load(name)


@pytest.mark.parametrize("key", published.names())
def test_every_published_layout_refuses_a_pickled_payload(key, tmp_path, monkeypatch, private_cache, marker):
    monkeypatch.setenv(published.CHECKPOINTS_ENV, str(tmp_path))
    spec = dataclasses.replace(published.REGISTRY[key], sha256=None, sha256_prefix=None)
    monkeypatch.setitem(published.REGISTRY, key, spec)
    # the payload sits where the release keeps its training options; the loader must stop before it
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}, "options": Payload(marker)}, tmp_path / spec.filename)
    with pytest.raises(CheckpointError, match="Refused to read .*nothing was loaded"):
        published.load_published(key)


def test_training_state_refuses_a_pickle(tmp_path, marker):
    path = tmp_path / "state.npz"
    with open(path, "wb") as handle:
        np.savez(handle, header=np.array([Payload(marker)], dtype=object))
    with pytest.raises(ValueError):
        load_training_state(path)


# --- checkpoints whose values would be silently wrong ------------------------------------------


def test_integer_weights_are_not_cast():
    backbone = build_backbone("convnet")
    state = {key: value.to(torch.int32) if value.is_floating_point() else value
             for key, value in backbone.state_dict().items()}
    with pytest.raises(CheckpointError, match="another kind than the model.*torch.int32.*casting would change"):
        load_state_strict(build_backbone("convnet"), state, source="ints.safetensors")


@pytest.mark.parametrize("state", [torch.zeros(3), [torch.zeros(3)], {"w": "text"}])
def test_a_file_that_is_not_a_state_dict_is_named(state):
    with pytest.raises(CheckpointError, match="not a state_dict .*save backbone.state_dict"):
        load_state_strict(build_backbone("convnet"), state, source="odd.pt")


# --- features -------------------------------------------------------------------------------


def test_nan_features_are_refused_and_not_cached(private_cache):
    backbone = build_backbone("convnet").eval()
    with torch.no_grad():
        backbone.features[0][0].weight.fill_(float("nan"))
    model = LoadedModel(backbone, preprocess_uint8, {"name": "broken-net", "sha256": "0" * 64})
    images = torch.zeros(4, 1, 28, 28, dtype=torch.uint8)
    with pytest.raises(ValueError, match="'broken-net' returned NaN or infinite features for 4 of 4 images.*nothing was cached"):
        embed.embed(model, images, progress=False)
    features_dir = private_cache / "features"
    assert not features_dir.exists() or not any(features_dir.iterdir())


# --- names ----------------------------------------------------------------------------------


def test_families_as_a_bare_string_are_refused():
    with pytest.raises(TypeError, match=r"list of family names such as \['rotation'\]"):
        augment.composition_order("rotation")


def test_zoo_load_of_none_says_what_a_name_is():
    with pytest.raises(TypeError, match="model name must be a string"):
        zoo.load(None)


# --- the cache directory and its hygiene -------------------------------------------------------


def test_a_file_where_the_cache_should_be_is_named(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    monkeypatch.setenv(cache.CACHE_ENV, str(blocker))
    with pytest.raises(cache.CacheError, match=rf"{blocker}.*a file is in the way.*SSLGEOM_CACHE="):
        cache.cache_dir()


def test_data_loading_does_not_need_a_usable_cache(tmp_path, monkeypatch):
    from sslgeom import data

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    monkeypatch.setenv(cache.CACHE_ENV, str(blocker / "cache"))
    images, labels = data.load_fashion_mnist("test")
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    assert blocker.is_file()


def test_a_full_disk_names_the_entry_and_the_variable(private_cache, monkeypatch):
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", full_disk)
    with pytest.raises(cache.CacheError, match=r"Could not write the cache entry .*No space left.*SSLGEOM_CACHE"):
        cache.cached_arrays("demo", ["full"], lambda: {"x": np.arange(2)})
    assert not [p for p in (private_cache / "demo").iterdir()]  # no temporary file left behind


def test_an_incomplete_archive_is_recomputed(private_cache):
    cache.cached_arrays("demo", ["partial"], lambda: {"other": np.arange(2)})
    result = cache.cached_arrays("demo", ["partial"], lambda: {"x": np.ones(2)}, required=("x",))
    assert np.array_equal(result["x"], np.ones(2))
    assert set(cache.cached_arrays("demo", ["partial"], lambda: {}, required=("x",))) == {"x"}


def test_stale_temporary_files_are_removed_and_fresh_ones_kept(private_cache):
    path = cache.entry_path("demo", "k", ".npz")
    path.parent.mkdir(parents=True)
    stale, fresh = path.parent / f".{path.name}.dead.tmp", path.parent / f".{path.name}.busy.tmp"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    old = time.time() - cache.STALE_TEMP_SECONDS - 10
    os.utime(stale, (old, old))
    cache.save_arrays(path, x=np.arange(3))
    assert not stale.exists() and fresh.exists()  # a live writer's file is left alone


def test_writes_never_touch_the_process_umask(private_cache, monkeypatch):
    def forbidden(*args):
        raise AssertionError("os.umask changes the mask of every thread in the process")

    monkeypatch.setattr(os, "umask", forbidden)
    path = cache.save_arrays(cache.entry_path("demo", "mode", ".npz"), x=np.arange(2))
    probe = private_cache / "probe"
    os.close(os.open(probe, os.O_CREAT | os.O_WRONLY, 0o666))
    assert path.stat().st_mode & 0o777 == probe.stat().st_mode & 0o777  # what any new file gets
