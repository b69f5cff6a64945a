"""Every chapter in _toc.yml runs end to end on the smoke profile (papermill, fresh kernel).

The executed copies land in ``_build/smoke/`` so that a failure can be inspected; the book's own
``chapters/`` directory is left alone.
"""

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import run_notebooks  # noqa: E402

CHAPTERS = run_notebooks.toc_chapters()


def test_toc_lists_every_notebook_source():
    sources = sorted(p.stem for p in (REPO / "notebooks").glob("[0-9][0-9]_*.py"))
    assert sources == sorted(CHAPTERS), "each notebooks/NN_*.py must be a chapter in _toc.yml and vice versa"


@pytest.mark.notebook
@pytest.mark.parametrize("stem", CHAPTERS)
def test_chapter_runs_on_smoke_profile(stem):
    record = run_notebooks.run_one(
        stem, run_notebooks.params_path("smoke"), REPO / "_build" / "smoke", kernel="python3"
    )
    run_notebooks.update_execution_report([record], REPO / "_build" / "smoke")
    assert record["status"] == "ok", f"notebooks/{stem}.py failed on the smoke profile: {record.get('error')}"
    executed = REPO / "_build" / "smoke" / f"{stem}.ipynb"
    import nbformat

    notebook = nbformat.read(executed, as_version=4)
    errors = [
        output for cell in notebook.cells if cell.cell_type == "code"
        for output in cell.get("outputs", []) if output.get("output_type") == "error"
    ]
    assert not errors
    injected = [c for c in notebook.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and all("remove-cell" in c.metadata["tags"] for c in injected)
