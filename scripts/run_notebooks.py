"""Execute the book's notebooks with papermill, one profile at a time.

Each chapter listed in ``_toc.yml`` as ``chapters/<stem>`` has its source in ``notebooks/<stem>.py``
(jupytext py:percent). This script converts the source to a notebook, executes it with the
parameters of ``params/<profile>.yaml`` (the ``common`` section, then the notebook's own section),
hides the cell papermill injects, and writes the executed notebook to the output directory
(``chapters/`` for the book). A record of every run (wall time, parameters, package versions)
goes to ``<output>/execution.json`` and a page ``<output>/execution.md`` that the book shows.

A failing notebook is reported with its name, the failing cell and the error; the remaining
notebooks still run (so one report lists every failure) and the script exits with status 1.

Re-running is cheap: each record stores a fingerprint of everything the run depends on (the
notebook source, its parameters, the ``sslgeom`` package sources, the zoo manifest, the
package versions, and the image folder, registry and checkpoints the parameters point at).
When a chapter's executed notebook is present and its last run succeeded with the same
fingerprint, it is not executed again (the notebooks are deterministic: same inputs, same
outputs); ``--force`` executes every chapter regardless.

Usage::

    python scripts/run_notebooks.py --profile default            # every chapter, into chapters/
    python scripts/run_notebooks.py --profile smoke --only 03     # one chapter, by prefix
    python scripts/run_notebooks.py --profile full --only 04 --output-dir _build/full
    python scripts/run_notebooks.py --force                       # execute even if unchanged
    python scripts/run_notebooks.py --jobs 2                      # two lanes of chapters at once

With ``--jobs 2`` the chapters run in two lanes, each a process of its own that executes its
chapters in reading order: :data:`SIDE_LANE` (chapters that share no cached results with the
others and run mostly on one core) beside the rest. Results do not depend on it; the chapters of
one lane still run one after the other, and the cache is safe for concurrent writers.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
#: Chapters of the second lane of ``--jobs 2``: mostly single-threaded work on synthetic data and a
#: few models, sharing no cached results with chapters 02, 04 and 05 (which share features and
#: geometry tables, so they stay in one lane, in order).
SIDE_LANE = ("01_models", "03_manifold_graph_metrics")
PACKAGES = ("torch", "torchvision", "numpy", "scipy", "scikit-learn", "pandas", "lightly", "faiss-cpu",
            "matplotlib", "papermill", "jupyter-book", "myst-nb")


def toc_files(toc_path: Path = REPO / "_toc.yml") -> list[str]:
    """Every ``root`` and ``file`` entry of the table of contents, in reading order."""
    toc = yaml.safe_load(toc_path.read_text())
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key in ("root", "file"):
                if isinstance(node.get(key), str):
                    found.append(node[key])
            for value in node.values():
                if isinstance(value, (list, dict)):
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return found


def toc_chapters(toc_path: Path = REPO / "_toc.yml") -> list[str]:
    """Stems of the notebook chapters listed in the table of contents, in reading order."""
    return [
        entry.removeprefix("chapters/")
        for entry in toc_files(toc_path)
        if entry.startswith("chapters/") and entry != "chapters/execution"
    ]


def params_path(profile: str) -> Path:
    """The parameter file of a named profile (``params/<profile>.yaml``)."""
    path = REPO / "params" / f"{profile}.yaml"
    if not path.exists():
        available = sorted(p.stem for p in (REPO / "params").glob("*.yaml"))
        raise SystemExit(f"unknown profile {profile!r}: {path} does not exist; available: {available}")
    return path


def load_parameters(path: Path, stem: str) -> dict:
    """Merge the ``common`` section and the notebook's section of a parameter file."""
    if not path.exists():
        raise SystemExit(f"parameter file {path} does not exist")
    from sslgeom import params

    try:
        return params.section_parameters(yaml.safe_load(path.read_text()), stem, str(path))
    except params.ParameterError as error:  # a list where a section should be, ...: say which, stop
        raise SystemExit(str(error)) from None


def package_versions() -> dict[str, str]:
    """Versions of Python and of the packages a chapter's results depend on."""
    from sslgeom.export import package_versions as versions_of

    return versions_of(PACKAGES)


def input_fingerprint(source: Path, parameters: dict, repo: Path = REPO) -> str:
    """SHA-256 of everything an execution depends on besides the cache on disk.

    The notebook source, its parameters, every ``lib/sslgeom`` source file, the zoo manifest
    (which holds each checkpoint's hash), the package versions, and the identity of the files
    outside the repository that the parameters point at (:func:`sslgeom.sources.input_identity`:
    the image folder's listing, the registry and its checkpoints, ``$SSLGEOM_CHECKPOINTS``).
    """
    from sslgeom.sources import input_identity

    digest = hashlib.sha256()

    def add(label: str, payload: bytes) -> None:
        digest.update(label.encode() + b"\0" + hashlib.sha256(payload).digest())

    add("source", source.read_bytes())
    add("parameters", json.dumps(parameters, sort_keys=True, default=str).encode())
    for path in sorted((repo / "lib" / "sslgeom").rglob("*.py")):
        add(str(path.relative_to(repo)), path.read_bytes())
    manifest = zoo_manifest_path(repo)
    add("manifest", manifest.read_bytes() if manifest.exists() else b"")
    add("versions", json.dumps(package_versions(), sort_keys=True).encode())
    external = input_identity(parameters.get("image_folder"), parameters.get("registry"))
    add("external", json.dumps(external, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def zoo_manifest_path(repo: Path = REPO) -> Path:
    """The default zoo's manifest: under ``$SSLGEOM_ZOO_DIR`` when set, else ``data/zoo``."""
    return Path(os.environ.get("SSLGEOM_ZOO_DIR") or repo / "data" / "zoo") / "manifest.json"


def source_commit(repo: Path = REPO) -> str:
    """The git commit the run's code came from, with ``+uncommitted`` if the work tree differs."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                              check=True, timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, check=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return head + ("+uncommitted" if dirty else "")


def models_used(log_path: Path) -> list[dict]:
    """Distinct models a chapter resolved, from the provenance log its kernel wrote (sorted by name)."""
    if not log_path.exists():
        return []
    seen = {}
    for line in log_path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            seen[(entry["name"], entry["sha256"])] = entry
    return [seen[key] for key in sorted(seen)]


def previous_records(output_dir: Path) -> dict[str, dict]:
    """Records of the last runs in ``output_dir/execution.json``, by notebook (empty if none)."""
    json_path = output_dir / "execution.json"
    if not json_path.exists():
        return {}
    try:
        return {r["notebook"]: r for r in json.loads(json_path.read_text())["records"]}
    except (ValueError, KeyError, TypeError):
        return {}


def reusable(stem: str, fingerprint: str, output_dir: Path, previous: dict[str, dict]) -> bool:
    """Whether the executed notebook in ``output_dir`` came from a successful run on these inputs."""
    record = previous.get(stem)
    return (
        record is not None
        and record.get("status") == "ok"
        and record.get("fingerprint") == fingerprint
        and (output_dir / f"{stem}.ipynb").exists()
    )


def hide_injected_cells(notebook_path: Path) -> None:
    """Tag the cell papermill injected so that the book removes it from the page."""
    import nbformat

    notebook = nbformat.read(notebook_path, as_version=4)
    for cell in notebook.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]
    nbformat.write(notebook, notebook_path)


def describe_failure(error: Exception) -> str:
    """One paragraph naming the failing cell and the exception."""
    cell_index = getattr(error, "exec_count", None)
    ename = getattr(error, "ename", type(error).__name__)
    evalue = getattr(error, "evalue", str(error))
    where = f"cell [{cell_index}]" if cell_index is not None else "a cell"
    return f"{where} raised {ename}: {evalue}"


def run_one(
    stem: str, parameter_file: Path, output_dir: Path, kernel: str, source_dir: Path = REPO / "notebooks",
    force: bool = True,
) -> dict:
    """Convert, execute and post-process one notebook; return its execution record.

    With ``force=False`` a notebook whose last successful run in ``output_dir`` had the same
    :func:`input_fingerprint` is not executed again; its previous record is returned with
    ``"reused": True``.
    """
    import jupytext
    import papermill

    source = source_dir / f"{stem}.py"
    if not source.exists():
        raise SystemExit(f"_toc.yml lists chapters/{stem} but its source {source} does not exist")
    parameters = load_parameters(parameter_file, stem)
    fingerprint = input_fingerprint(source, parameters)
    previous = previous_records(output_dir)
    if not force and reusable(stem, fingerprint, output_dir, previous):
        return {**previous[stem], "reused": True}
    output_dir.mkdir(parents=True, exist_ok=True)
    unexecuted = output_dir / f".{stem}.input.ipynb"
    executed = output_dir / f"{stem}.ipynb"
    jupytext.write(jupytext.read(source), unexecuted)
    profile = str(parameters.get("profile", parameter_file.stem))
    manifest = zoo_manifest_path()
    record = {"notebook": stem, "profile": profile, "parameters": parameters,
              "fingerprint": fingerprint, "reused": False,
              "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "commit": source_commit(),
              "zoo_manifest_sha256": hashlib.sha256(manifest.read_bytes()).hexdigest() if manifest.exists() else None}
    start = time.perf_counter()
    # the kernel inherits this variable: sslgeom.zoo logs every model it loads or keys a cache entry by
    log_path = output_dir / f".{stem}.provenance.jsonl"
    log_path.unlink(missing_ok=True)
    # and exports its result tables next to the executed notebook (sslgeom.export), for the book's links
    redirected = {"SSLGEOM_PROVENANCE_LOG": str(log_path), "SSLGEOM_TABLES_DIR": str(output_dir / "tables")}
    previous_env = {name: os.environ.get(name) for name in redirected}
    os.environ.update(redirected)
    try:
        papermill.execute_notebook(
            str(unexecuted), str(executed), parameters=parameters, kernel_name=kernel,
            cwd=str(REPO / "notebooks"), progress_bar=False, log_output=False,
        )
        record["status"] = "ok"
    except Exception as error:  # papermill.PapermillExecutionError and kernel failures
        record["status"] = "failed"
        record["error"] = describe_failure(error)
    finally:
        unexecuted.unlink(missing_ok=True)
        for name, value in previous_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    record["models_used"] = models_used(log_path)
    log_path.unlink(missing_ok=True)
    record["wall_seconds"] = round(time.perf_counter() - start, 1)
    if executed.exists():
        hide_injected_cells(executed)
    return record


def write_execution_page(records: list[dict], output_dir: Path) -> None:
    """Write ``execution.json`` and the book page ``execution.md`` from the run records."""
    versions = package_versions()
    (output_dir / "execution.json").write_text(
        json.dumps({"records": records, "versions": versions}, indent=2, default=str)
    )
    lines = [
        "# Execution report",
        "",
        "This page is written by `scripts/run_notebooks.py` each time the book is built: it records how "
        "each chapter was executed for the pages you are reading. A chapter whose inputs (source, "
        "parameters, the `sslgeom` package, the zoo manifest, package versions, and the image folder, "
        "registry and checkpoints the parameters point at) have not changed since "
        "its last successful run is not executed again; its row then shows that run.",
        "",
        "| chapter | profile | status | wall time (s) | started (UTC) |",
        "|---|---|---|---|---|",
    ]
    for record in records:
        lines.append(
            f"| [{record['notebook']}]({record['notebook']}.ipynb) | {record['profile']} | {record['status']} "
            f"| {record['wall_seconds']} | {record['started']} |"
        )
    lines += ["", "## Parameters", ""]
    for record in records:
        lines.append(f"**{record['notebook']}**: " + ", ".join(
            f"`{key}={value!r}`" for key, value in sorted(record["parameters"].items())))
        lines.append("")
    lines += ["## Provenance", "",
              "The commit of the code each chapter ran, the SHA-256 of the zoo manifest (which records every "
              "default-zoo checkpoint's SHA-256, verified on load) and the models the chapter loaded or keyed a "
              "cached result by. Published checkpoints are files from outside the repository: each is listed "
              "with the SHA-256 of the file that was used. `execution.json` lists every model with its hash.", "",
              "| chapter | commit | zoo manifest SHA-256 | default-zoo models | external checkpoints |",
              "|---|---|---|---|---|"]
    for record in records:
        used = record.get("models_used", [])
        external = [m for m in used if m["name"].startswith("published/")]
        external_text = "; ".join(f"`{m['name']}` `{m['sha256'][:16]}...`" for m in external) or "none"
        manifest_hash = record.get("zoo_manifest_sha256")
        lines.append(f"| {record['notebook']} | `{record.get('commit', 'not recorded')}` | "
                     f"{'`' + manifest_hash[:16] + '...`' if manifest_hash else 'no zoo'} | "
                     f"{len(used) - len(external)} | {external_text} |")
    lines += ["", "## Software", "", "| package | version |", "|---|---|"]
    lines += [f"| {name} | {version} |" for name, version in versions.items()]
    lines += ["", f"Machine: {platform.machine()}, {platform.system()} {platform.release()}, "
              f"Python {platform.python_version()}.", ""]
    (output_dir / "execution.md").write_text("\n".join(lines))


def update_execution_report(records: list[dict], output_dir: Path) -> None:
    """Merge ``records`` into ``output_dir/execution.json`` (keeping chapters not rerun) and rewrite the page.

    Lanes (``--jobs``) update the report from several processes: a lock file serialises the
    read-merge-write so that no lane's record is lost.
    """
    import fcntl

    output_dir.mkdir(parents=True, exist_ok=True)
    with open(output_dir / ".execution.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        merged = {**previous_records(output_dir), **{r["notebook"]: r for r in records}}
        order = toc_chapters()
        write_execution_page([merged[s] for s in order if s in merged], output_dir)


def run_lanes(stems: list[str], argv: list[str]) -> int:
    """Run :data:`SIDE_LANE` and the other chapters in two processes at once; the worse exit status.

    Each lane is this script with ``--only`` its chapters and the rest of ``argv`` unchanged.
    """
    side = [s for s in stems if s in SIDE_LANE]
    main_lane = [s for s in stems if s not in SIDE_LANE]
    lanes = [lane for lane in (main_lane, side) if lane]
    passed_on = _without_options(argv, {"--only", "--jobs"})
    if len(lanes) < 2:
        return main([*passed_on, "--jobs", "1", "--only", *lanes[0]])
    processes = [subprocess.Popen([sys.executable, __file__, *passed_on, "--jobs", "1", "--only", *lane])
                 for lane in lanes]
    return max(process.wait() for process in processes)


def _without_options(argv: list[str], options: set[str]) -> list[str]:
    """``argv`` without the named options and their values (``--only`` takes several)."""
    kept, skipping = [], False
    for argument in argv:
        if argument.startswith("--"):
            skipping = argument.split("=", 1)[0] in options
            if skipping:
                continue
        elif skipping:
            continue
        kept.append(argument)
    return kept


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="default", help="parameter set in params/ (smoke, default, full)")
    parser.add_argument("--params", type=Path, default=None,
                        help="a parameter file of your own (same layout as params/default.yaml); overrides --profile")
    parser.add_argument("--only", nargs="*", default=None,
                        help="run only chapters whose file stem starts with one of these prefixes (e.g. 03)")
    parser.add_argument("--output-dir", type=Path, default=None,
                        help="where executed notebooks go (default: chapters/ for the book)")
    parser.add_argument("--kernel", default="python3")
    parser.add_argument("--force", action="store_true",
                        help="execute every chapter even if its inputs are unchanged since its last successful run")
    parser.add_argument("--jobs", type=int, default=1, choices=(1, 2),
                        help="2: run the chapters in two lanes at once (see SIDE_LANE); results do not depend on it")
    args = parser.parse_args(argv)

    parameter_file = args.params.resolve() if args.params else params_path(args.profile)
    stems = toc_chapters()
    if args.only:
        stems = [s for s in stems if any(s.startswith(prefix) for prefix in args.only)]
        if not stems:
            raise SystemExit(f"no chapter in _toc.yml matches {args.only}; chapters: {toc_chapters()}")
    output_dir = args.output_dir or REPO / "chapters"
    if not output_dir.is_absolute():
        output_dir = REPO / output_dir
    if args.jobs > 1:
        return run_lanes(stems, sys.argv[1:] if argv is None else list(argv))

    records = []
    for stem in stems:
        print(f"[run_notebooks] {stem} ({parameter_file.name}) ...", flush=True)
        record = run_one(stem, parameter_file, output_dir, args.kernel, force=args.force)
        records.append(record)
        if record.get("reused"):
            print(f"[run_notebooks] {stem}: unchanged since its run of {record['started']}, not re-executed "
                  "(--force to execute)", flush=True)
            continue
        status = "ok" if record["status"] == "ok" else f"FAILED: {record['error']}"
        print(f"[run_notebooks] {stem}: {status} in {record['wall_seconds']} s", flush=True)
        update_execution_report([record], output_dir)

    failures = [r for r in records if r["status"] != "ok"]
    if failures:
        print("\n[run_notebooks] notebook failures:", file=sys.stderr)
        for record in failures:
            print(f"  notebooks/{record['notebook']}.py: {record['error']} "
                  f"(executed copy with the traceback: {output_dir / (record['notebook'] + '.ipynb')})",
                  file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
