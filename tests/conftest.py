"""Shared fixtures. Browser tests run last, on the book built from the smoke-profile notebooks."""

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config, items):
    # The browser test needs the notebooks executed by the notebook tests: run it last.
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)


@pytest.fixture(scope="session")
def smoke_book_html() -> Path:
    """HTML of the book built from ``_build/smoke`` (the smoke-profile notebooks).

    Skips with a reason when the smoke notebooks have not all run successfully in this session's
    tree (run ``pytest -m notebook`` first, or the whole suite, which orders this fixture's users last).
    """
    sys.path.insert(0, str(REPO / "scripts"))
    import build_book
    import run_notebooks

    smoke_dir = REPO / "_build" / "smoke"
    report = smoke_dir / "execution.json"
    if not report.exists():
        pytest.skip("no smoke-profile notebooks in _build/smoke: run the notebook tests first")
    records = {r["notebook"]: r for r in json.loads(report.read_text())["records"]}
    missing = [s for s in run_notebooks.toc_chapters() if records.get(s, {}).get("status") != "ok"]
    if missing:
        pytest.skip(f"smoke notebooks not all executed successfully: {missing}")
    output = REPO / "_build" / "smoke-book"
    status = build_book.build(smoke_dir, output)
    assert status == 0, "building the smoke book failed (Sphinx warnings or notebook errors above)"
    return output / "html"


@pytest.fixture
def private_cache(tmp_path, monkeypatch) -> Path:
    """An empty cache directory of this test's own (``SSLGEOM_CACHE``)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("SSLGEOM_CACHE", str(cache))
    return cache


@pytest.fixture
def tiny_zoo(tmp_path, monkeypatch, private_cache) -> list[str]:
    """Two random-initialisation ConvNets written as a real default zoo (checkpoints and manifest)
    in a temporary directory (``SSLGEOM_ZOO_DIR``), with an empty private cache.

    Returns the model names; their paradigms are ``contrastive`` and ``clustering``.
    """
    from sslgeom import models, zoo

    directory = tmp_path / "zoo"
    directory.mkdir()
    entries = []
    for seed, paradigm in enumerate(["contrastive", "clustering"]):
        name = f"tiny-{paradigm}"
        sha = zoo.save_checkpoint(models.build_backbone("convnet", seed=seed), directory / f"{name}.safetensors")
        entries.append({"name": name, "file": f"{name}.safetensors", "sha256": sha, "backbone": "convnet",
                        "method": paradigm, "paradigm": paradigm, "policy": "default", "seed": seed})
    zoo.write_manifest({"models": entries}, directory)
    monkeypatch.setenv("SSLGEOM_ZOO_DIR", str(directory))
    return [entry["name"] for entry in entries]
