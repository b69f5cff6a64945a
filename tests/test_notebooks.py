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


def _glued(stem: str) -> dict[str, str]:
    """The text of every value a smoke-profile chapter glued, by key."""
    import ast

    import nbformat

    notebook = nbformat.read(REPO / "_build" / "smoke" / f"{stem}.ipynb", as_version=4)
    values = {}
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            key = output.get("metadata", {}).get("scrapbook", {}).get("name")
            # myst-nb stores a glued value under a prefixed mime type, e.g. application/papermill.record/text/plain
            text = next((v for k, v in output.get("data", {}).items() if k.endswith("text/plain")), None)
            if key and text is not None:
                values[key] = ast.literal_eval(text) if text[:1] in "'\"" else text
    return values


@pytest.mark.notebook
def test_exported_tables_match_the_glued_numbers():
    """The CSV files a reader takes away hold the numbers the prose states (smoke-profile run)."""
    import pandas as pd

    tables = REPO / "_build" / "smoke" / "tables"
    if not (tables / "05_transfer_prediction" / "claim_scores.csv").exists():
        pytest.skip("chapters 04 and 05 have not run on the smoke profile in this tree")
    effects = pd.read_csv(tables / "04_geometry_vs_paradigm" / "metric_effects.csv", index_col=0)
    glued = _glued("04_geometry_vs_paradigm")
    assert glued["top_eta2"] == f"{effects['eta2_partial'].iloc[0]:.2f}"
    assert glued["top_feature"] == effects.index[0].replace("/", " / ")
    vectors = pd.read_csv(tables / "04_geometry_vs_paradigm" / "geometry_vectors.csv", index_col=0)
    assert int(glued["n_features"]) == vectors.shape[1]
    verdicts = pd.read_csv(tables / "04_geometry_vs_paradigm" / "claim_verdicts.csv")
    # the conclusions page pastes these glued verdicts: they must be the ones in the exported table
    assert [glued["claim1_verdict"], glued["claim3_verdict"]] == verdicts["verdict"].tolist()
    claim = pd.read_csv(tables / "05_transfer_prediction" / "claim_scores.csv", index_col=[0, 1])
    glued = _glued("05_transfer_prediction")
    main = claim.index.get_level_values("analysis")[0]  # the main backbone comes first
    assert glued["claim_calibrated"] == f"{claim.loc[(main, 'MGM all'), 'calibrated']:.2f}"
    assert glued["claim2_statistic"].startswith(f"calibrated Spearman {claim.loc[(main, 'MGM all'), 'calibrated']:.2f} [")
    assert glued["claim2_verdict"] in ("supported", "not supported", "this design cannot tell")
    for table in tables.glob("*/*.csv"):
        sidecar = table.with_suffix(".json")
        assert sidecar.exists(), f"{table} has no provenance sidecar"
