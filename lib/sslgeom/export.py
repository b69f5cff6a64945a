"""Result tables to take away: CSV files next to the executed chapter, each with a provenance sidecar.

A chapter calls :func:`export_table` on every table its conclusions rest on. The file goes to
``$SSLGEOM_TABLES_DIR/<chapter>/<name>.csv`` (the notebook runner points the variable at
``<output>/tables``, next to the executed notebooks, so the book can link the file with a
``{download}`` role), with ``<name>.json`` beside it: the run's parameters, the package versions,
the columns and the SHA-256 of the CSV. Outside the runner the files go to ``_build/tables``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from sslgeom.cache import REPO_ROOT, atomic_write

__all__ = ["TABLES_ENV", "tables_dir", "export_table", "read_sidecar", "package_versions"]

#: where exported tables go; set by ``scripts/run_notebooks.py`` to ``<output>/tables``
TABLES_ENV = "SSLGEOM_TABLES_DIR"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_PACKAGES = ("numpy", "scipy", "pandas", "scikit-learn", "torch", "torchvision", "scikit-bio", "statsmodels")


def tables_dir() -> Path:
    """``$SSLGEOM_TABLES_DIR`` when set (the runner's ``<output>/tables``), else ``<repo>/_build/tables``."""
    return Path(os.environ.get(TABLES_ENV) or REPO_ROOT / "_build" / "tables")


def package_versions(packages: Sequence[str] = _PACKAGES) -> dict[str, str]:
    """Python's version and each installed package's (``"not installed"`` when absent)."""
    versions = {"python": platform.python_version()}
    for name in packages:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def export_table(table: pd.DataFrame, name: str, *, chapter: str, parameters: Mapping[str, Any],
                 description: str = "", index: bool = True) -> Path:
    """Write ``table`` as CSV with a JSON sidecar of provenance; return the CSV's path.

    Parameters
    ----------
    table : pandas.DataFrame
        The table exactly as the chapter uses it (full precision: the CSV is not rounded).
    name : str
        File stem, letters, digits, ``-`` and ``_`` (e.g. ``"geometry_vectors"``).
    chapter : str
        The chapter's file stem, e.g. ``"04_geometry_vs_paradigm"``: the sub-directory.
    parameters : mapping
        The chapter's parameters (written to the sidecar as they are, JSON-serialisable values).
    description : str
        One sentence on what a row is, for the sidecar.
    index : bool
        Write the index as the first column (model names, metric names).

    Returns
    -------
    Path
        ``<tables_dir()>/<chapter>/<name>.csv``; the sidecar is the same path with ``.json``.

    Raises
    ------
    TypeError
        If ``table`` is not a DataFrame.
    ValueError
        If ``name`` or ``chapter`` is not a plain file stem.
    """
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"export_table writes DataFrames, got {type(table).__name__}.")
    for label, value in (("name", name), ("chapter", chapter)):
        if not isinstance(value, str) or not _NAME.match(value):
            raise ValueError(f"{label} must be a file stem of letters, digits, '-' and '_', got {value!r}.")
    path = tables_dir() / chapter / f"{name}.csv"
    with atomic_write(path) as tmp:
        table.to_csv(tmp, index=index, float_format="%.17g")
    sidecar = {
        "table": name,
        "chapter": chapter,
        "description": description,
        "rows": int(len(table)),
        "columns": [str(c) for c in ([table.index.name or "index"] if index else []) + list(table.columns)],
        "csv_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "parameters": {str(k): v for k, v in parameters.items()},
        "versions": package_versions(),
    }
    with atomic_write(path.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(sidecar, indent=1, default=str) + "\n")
    return path


def read_sidecar(csv_path: str | Path) -> dict[str, Any]:
    """The provenance written beside an exported table."""
    return json.loads(Path(csv_path).with_suffix(".json").read_text())
