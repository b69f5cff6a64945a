"""Exported result tables: full-precision CSV plus a provenance sidecar, in the runner's directory."""

import hashlib

import numpy as np
import pandas as pd
import pytest

from sslgeom import export


def test_table_round_trips_exactly_with_its_provenance(tmp_path, monkeypatch):
    monkeypatch.setenv(export.TABLES_ENV, str(tmp_path))
    table = pd.DataFrame({"eta2": [1 / 3, 0.1 + 0.2], "p": [0.005, 1.0]},
                         index=pd.Index(["a/median", "b/mean"], name="metric"))
    path = export.export_table(table, "effects", chapter="04_geometry_vs_paradigm",
                               parameters={"k": 20, "statistics": ["mean"]}, description="one row per metric")
    assert path == tmp_path / "04_geometry_vs_paradigm" / "effects.csv"
    back = pd.read_csv(path, index_col=0)
    assert np.array_equal(back.to_numpy(), table.to_numpy())  # 17 significant digits: no rounding
    sidecar = export.read_sidecar(path)
    assert sidecar["parameters"] == {"k": 20, "statistics": ["mean"]}
    assert sidecar["columns"] == ["metric", "eta2", "p"] and sidecar["rows"] == 2
    assert sidecar["csv_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert sidecar["versions"]["pandas"] == pd.__version__


def test_bad_names_and_objects_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(export.TABLES_ENV, str(tmp_path))
    with pytest.raises(ValueError, match="file stem"):
        export.export_table(pd.DataFrame({"x": [1]}), "../escape", chapter="04", parameters={})
    with pytest.raises(TypeError, match="DataFrames"):
        export.export_table({"x": [1]}, "t", chapter="04", parameters={})
