"""Build the HTML book from the executed notebooks in ``chapters/`` (Jupyter Book 1.x).

Fails (exit status 1) when a chapter listed in ``_toc.yml`` has no executed notebook, when the
last execution of a chapter failed, or when Sphinx emits any warning (``-W --keep-going``: every
warning is printed, then the build fails). Execution is off in ``_config.yml``: the book shows
exactly what papermill ran.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_notebooks import REPO, toc_chapters  # noqa: E402


def check_chapters() -> list[str]:
    """Problems with the executed chapters (empty when all are present and succeeded)."""
    problems = []
    report_path = REPO / "chapters" / "execution.json"
    records = {}
    if report_path.exists():
        records = {r["notebook"]: r for r in json.loads(report_path.read_text())["records"]}
    for stem in toc_chapters():
        if not (REPO / "chapters" / f"{stem}.ipynb").exists():
            problems.append(f"chapters/{stem}.ipynb is missing: run `make notebooks` first")
        elif records.get(stem, {}).get("status") == "failed":
            problems.append(f"notebooks/{stem}.py failed in its last run: {records[stem]['error']}")
    if not (REPO / "chapters" / "execution.md").exists():
        problems.append("chapters/execution.md is missing: run `make notebooks` first")
    return problems


def main() -> int:
    problems = check_chapters()
    if problems:
        print("[build_book] cannot build the book:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    html_dir = REPO / "_build" / "html"
    if html_dir.exists():
        shutil.rmtree(html_dir)  # stale pages from removed chapters must not survive
    command = [str(jupyter_book), "build", str(REPO), "--builder", "html", "-W", "--keep-going", "-q"]
    print("[build_book] " + " ".join(command), flush=True)
    result = subprocess.run(command, cwd=REPO)
    if result.returncode != 0:
        print("[build_book] the book build failed (see the warnings above)", file=sys.stderr)
        return 1
    print(f"[build_book] built {html_dir / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
