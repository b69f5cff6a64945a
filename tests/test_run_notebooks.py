"""The notebook runner: parameters merge, failures are reported with notebook and cell."""

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import run_notebooks  # noqa: E402

NOTEBOOK = '''# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% tags=["parameters"]
value = 1

# %%
result = 10 / value
'''


@pytest.fixture
def tiny(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "99_tiny.py").write_text(NOTEBOOK)
    return tmp_path


def _params(tmp_path, value):
    path = tmp_path / "p.yaml"
    path.write_text(f"common:\n  profile: test\n99_tiny:\n  value: {value}\n")
    return path


def test_parameters_merge_common_and_section(tiny):
    merged = run_notebooks.load_parameters(_params(tiny, 5), "99_tiny")
    assert merged == {"profile": "test", "value": 5}


def test_a_section_that_is_not_a_mapping_stops_the_runner_with_its_name(tiny):
    path = tiny / "bad.yaml"
    path.write_text("common:\n  profile: test\n99_tiny:\n  - value\n  - 5\n")
    with pytest.raises(SystemExit, match="99_tiny"):
        run_notebooks.load_parameters(path, "99_tiny")


def test_failing_cell_is_reported_with_cell_and_error(tiny):
    record = run_notebooks.run_one("99_tiny", _params(tiny, 0), tiny / "out", "python3", source_dir=tiny / "src")
    assert record["status"] == "failed"
    assert "ZeroDivisionError" in record["error"] and "cell [" in record["error"]


def test_succeeding_notebook_hides_injected_parameters(tiny):
    import nbformat

    record = run_notebooks.run_one("99_tiny", _params(tiny, 2), tiny / "out", "python3", source_dir=tiny / "src")
    assert record["status"] == "ok" and record["parameters"]["value"] == 2
    notebook = nbformat.read(tiny / "out" / "99_tiny.ipynb", as_version=4)
    injected = [c for c in notebook.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "remove-cell" in injected[0].metadata["tags"]


def test_unknown_profile_names_the_available_ones():
    with pytest.raises(SystemExit, match="available"):
        run_notebooks.params_path("huge")


def test_unchanged_chapter_is_reused_and_changes_rerun_it(tiny, monkeypatch):
    """A second run on the same inputs reuses the executed notebook; new parameters, a new
    source or a failed last run execute it again; force always executes."""
    out = tiny / "out"
    first = run_notebooks.run_one("99_tiny", _params(tiny, 2), out, "python3", source_dir=tiny / "src",
                                  force=False)
    assert first["status"] == "ok" and not first["reused"]

    def again(value, **kwargs):
        return run_notebooks.run_one("99_tiny", _params(tiny, value), out, "python3",
                                     source_dir=tiny / "src", **kwargs)

    monkeypatch.setattr(run_notebooks, "toc_chapters", lambda: ["99_tiny"])
    run_notebooks.update_execution_report([first], out)
    reused = again(2, force=False)
    assert reused["reused"] and reused["started"] == first["started"]
    assert not again(2, force=True)["reused"]  # --force
    changed = again(3, force=False)  # new parameters
    assert not changed["reused"] and changed["parameters"]["value"] == 3
    run_notebooks.update_execution_report([changed], out)
    (tiny / "src" / "99_tiny.py").write_text(NOTEBOOK + "\n# %%\nextra = 1\n")  # new source
    assert not again(3, force=False)["reused"]
    failed = again(0, force=False)
    run_notebooks.update_execution_report([failed], out)
    assert failed["status"] == "failed" and not again(0, force=False)["reused"]
    (out / "99_tiny.ipynb").unlink()
    run_notebooks.update_execution_report([again(3, force=False)], out)
    (out / "99_tiny.ipynb").unlink()  # a missing executed notebook is never "reused"
    assert not again(3, force=False)["reused"]


def test_provenance_records_commit_manifest_and_the_models_a_chapter_used(tiny, tiny_zoo, monkeypatch):
    from sslgeom import zoo

    (tiny / "src" / "98_uses.py").write_text(NOTEBOOK.replace(
        "result = 10 / value",
        f"from sslgeom import zoo\nzoo.load({tiny_zoo[0]!r})\nzoo.checkpoint_hash({tiny_zoo[1]!r})\n"
        f"zoo.load({tiny_zoo[0]!r})  # twice: listed once"))
    params = tiny / "p.yaml"
    params.write_text("common:\n  profile: test\n")
    record = run_notebooks.run_one("98_uses", params, tiny / "out", "python3", source_dir=tiny / "src")
    assert record["status"] == "ok", record.get("error")
    manifest = zoo.zoo_dir() / zoo.MANIFEST_NAME
    import hashlib
    assert record["zoo_manifest_sha256"] == hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert len(record["commit"].split("+")[0]) == 40
    used = {m["name"]: m["sha256"] for m in record["models_used"]}
    assert used == {name: zoo.checkpoint_hash(name) for name in tiny_zoo}
    assert not list((tiny / "out").glob(".*.provenance.jsonl"))  # the log is folded into the record
    monkeypatch.setattr(run_notebooks, "toc_chapters", lambda: ["98_uses"])
    run_notebooks.update_execution_report([record], tiny / "out")
    page = (tiny / "out" / "execution.md").read_text()
    assert "## Provenance" in page and f"| 98_uses | `{record['commit']}` | `{record['zoo_manifest_sha256'][:16]}...` | 2 | none |" in page


def test_lanes_pass_on_every_option_but_the_chapter_choice():
    argv = ["--params", "p.yaml", "--only", "02", "04", "--force", "--jobs", "2", "--output-dir=out"]
    assert run_notebooks._without_options(argv, {"--only", "--jobs"}) == ["--params", "p.yaml", "--force",
                                                                          "--output-dir=out"]
    assert set(run_notebooks.SIDE_LANE) <= set(run_notebooks.toc_chapters())


def test_concurrent_report_updates_keep_every_record(tmp_path, monkeypatch):
    # two lanes finishing at once must both end up in execution.json
    from concurrent.futures import ThreadPoolExecutor

    stems = [f"9{i}_lane" for i in range(6)]
    monkeypatch.setattr(run_notebooks, "toc_chapters", lambda: stems)
    monkeypatch.setattr(run_notebooks, "package_versions", lambda: {"python": "3"})
    records = [{"notebook": stem, "profile": "smoke", "status": "ok", "wall_seconds": 1.0, "started": "now",
                "parameters": {}} for stem in stems]
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(lambda record: run_notebooks.update_execution_report([record], tmp_path), records))
    assert sorted(run_notebooks.previous_records(tmp_path)) == stems
