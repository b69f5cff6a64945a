"""Build the HTML book from executed notebooks (Jupyter Book 1.x).

By default the chapters are the executed notebooks in ``chapters/`` (made by ``make notebooks``)
and the book goes to ``_build/html``. With ``--chapters DIR --output DIR`` the same book is built
from another set of executed notebooks (the test suite builds the smoke-profile book this way)
in a staging copy of the sources, leaving ``chapters/`` and ``_build/html`` alone.

Fails (exit status 1) when a chapter listed in ``_toc.yml`` has no executed notebook, when the
last execution of a chapter failed, or when Sphinx emits any warning (``-W --keep-going``: every
warning is printed, then the build fails). Execution is off in ``_config.yml``: the book shows
exactly what papermill ran.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_notebooks import REPO, toc_chapters  # noqa: E402

BOOK_SOURCES = ("_config.yml", "_toc.yml", "book")


def check_chapters(chapters_dir: Path) -> list[str]:
    """Problems with the executed chapters (empty when all are present and succeeded)."""
    problems = []
    report_path = chapters_dir / "execution.json"
    records = {}
    if report_path.exists():
        records = {r["notebook"]: r for r in json.loads(report_path.read_text())["records"]}
    for stem in toc_chapters():
        if not (chapters_dir / f"{stem}.ipynb").exists():
            problems.append(f"{chapters_dir / stem}.ipynb is missing: run `make notebooks` first")
        elif records.get(stem, {}).get("status") == "failed":
            problems.append(f"notebooks/{stem}.py failed in its last run: {records[stem]['error']}")
    if not (chapters_dir / "execution.md").exists():
        problems.append(f"{chapters_dir / 'execution.md'} is missing: run `make notebooks` first")
    return problems


def stage_sources(chapters_dir: Path, staging: Path) -> Path:
    """Copy the book sources and the executed chapters into ``staging``; return it."""
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    for name in BOOK_SOURCES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, staging / name)
        else:
            shutil.copy2(source, staging / name)
    shutil.copytree(chapters_dir, staging / "chapters", ignore=shutil.ignore_patterns(".*"))
    static = REPO / "_static"
    if static.exists():
        shutil.copytree(static, staging / "_static")
    return staging


def build(chapters_dir: Path, output_dir: Path) -> int:
    """Build the HTML book into ``output_dir`` (its ``html/`` sub-folder); return an exit status."""
    problems = check_chapters(chapters_dir)
    if problems:
        print("[build_book] cannot build the book:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    in_place = chapters_dir.resolve() == (REPO / "chapters").resolve()
    source_root = REPO if in_place else stage_sources(chapters_dir, output_dir / "src")
    html_dir = output_dir / "html"
    # --path-output P writes to P/_build/html; point P at the parent of output_dir.
    path_output = output_dir.parent if output_dir.name == "_build" else None
    pages = pages_fingerprint(source_root)
    stamp = html_dir / ".pages.sha256"
    same_pages = path_output is not None and stamp.exists() and stamp.read_text() == pages
    if html_dir.exists() and not same_pages:
        # stale pages from removed chapters must not survive; with the same pages, Sphinx's
        # incremental build keeps a rebuild of an unchanged book to a few seconds
        shutil.rmtree(html_dir)
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    command = [str(jupyter_book), "build", str(source_root), "--builder", "html", "-W", "--keep-going", "-q"]
    if path_output is not None:
        command += ["--path-output", str(path_output)]
    else:
        command += ["--path-output", str(output_dir / "out")]
    print("[build_book] " + " ".join(command), flush=True)
    result = subprocess.run(command, cwd=source_root)
    if result.returncode != 0:
        print("[build_book] the book build failed (see the warnings above)", file=sys.stderr)
        return 1
    if path_output is None:  # move <out>/_build/html to <output_dir>/html
        shutil.move(str(output_dir / "out" / "_build" / "html"), str(html_dir))
        shutil.rmtree(output_dir / "out")
    stamp.write_text(pages)
    print(f"[build_book] built {html_dir / 'index.html'}")
    return 0


def pages_fingerprint(source_root: Path) -> str:
    """SHA-256 of the table of contents and the list of page files: what decides which pages exist."""
    toc = (source_root / "_toc.yml").read_bytes()
    files = sorted(str(path.relative_to(source_root)) for folder in ("book", "chapters") if (source_root / folder).exists()
                   for path in (source_root / folder).rglob("*") if path.suffix in (".md", ".ipynb"))
    return hashlib.sha256(toc + "\n".join(files).encode()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the HTML book from executed notebooks.")
    parser.add_argument("--chapters", type=Path, default=REPO / "chapters",
                        help="directory of executed notebooks and execution.md (default: chapters/)")
    parser.add_argument("--output", type=Path, default=REPO / "_build",
                        help="the book goes to OUTPUT/html (default: _build)")
    args = parser.parse_args(argv)
    chapters = args.chapters if args.chapters.is_absolute() else REPO / args.chapters
    output = args.output if args.output.is_absolute() else REPO / args.output
    return build(chapters, output)


if __name__ == "__main__":
    sys.exit(main())
