"""What the zoo's design is and how well its models trained: the tables and curves of chapter 01.

The designed zoo (``scripts/train_zoo.py``) crosses methods, seeds, backbones and training budgets.
These functions read that design back from the manifest (:func:`sslgeom.zoo.manifest`), so that a
chapter shows the factors the statistics can use, the quality of every model with its spread across
seeds, and the training curves, without hand-written counts.

Every function takes the manifest as a table (one row per checkpoint, the columns written by the
training script: ``name, run_id, method, paradigm, backbone, seed, budget_fraction, images_seen,
probe_accuracy, probe_gain_vs_random, knn_accuracy``) so that it can be tested on a made-up zoo.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sslgeom.cache import REPO_ROOT
from sslgeom.validation import read_json_results

__all__ = [
    "REFERENCE_METHODS",
    "QUALITY_GOALS",
    "design_table",
    "quality_table",
    "quality_summary",
    "budget_curves",
    "training_curves",
    "SECOND_ZOO_MANIFEST",
    "archived_manifest",
    "TRAIN_BENCHMARK",
    "training_speeds",
    "training_hours",
]

#: methods that are references, not self-supervised: the random initialisation and supervised training
REFERENCE_METHODS = ("random", "supervised")
#: the zoo's quality goals at full budget on the main backbone, in probe accuracy points over the
#: random initialisation of the same seed: the median SSL model and the worst one
QUALITY_GOALS = {"median_gain_points": 4.0, "min_gain_points": 2.0}

#: manifest of the second default zoo (width-32 ConvNet, 86,016 images per ConvNet run), which the
#: current zoo replaced; its checkpoints are in the git history. Step losses are dropped.
SECOND_ZOO_MANIFEST = REPO_ROOT / "data" / "zoo-history" / "second-zoo-manifest.json"

#: results of ``benchmarks/train.py`` (``make bench-train``), committed with the code
TRAIN_BENCHMARK = REPO_ROOT / "benchmarks" / "results" / "train.json"

_REQUIRED = ("name", "run_id", "method", "paradigm", "backbone", "seed", "budget_fraction")


def _check_manifest(manifest: pd.DataFrame, extra: Sequence[str] = ()) -> pd.DataFrame:
    if not isinstance(manifest, pd.DataFrame):
        raise TypeError(f"manifest must be a DataFrame (sslgeom.zoo.manifest()), got {type(manifest).__name__}.")
    missing = [c for c in (*_REQUIRED, *extra) if c not in manifest.columns]
    if missing:
        raise ValueError(
            f"The manifest has no column(s) {missing}: it was written by the first zoo's training script, "
            "which recorded no design factors. Train the designed zoo with `make zoo`."
        )
    if manifest.empty:
        raise ValueError("The manifest lists no models: train the zoo with `make zoo`.")
    return manifest


def design_table(manifest: pd.DataFrame) -> pd.DataFrame:
    """How many seeds and checkpoints each method has on each backbone.

    Parameters
    ----------
    manifest : pandas.DataFrame
        One row per checkpoint (see the module docstring).

    Returns
    -------
    pandas.DataFrame
        Index ``(backbone, paradigm, method)``; columns ``seeds`` (number of distinct seeds),
        ``seed_list`` (e.g. ``"0, 1, 2"``), ``runs``, ``checkpoints`` (all budgets) and ``budgets``
        (the budget fractions, e.g. ``"0.25, 0.5, 1"``).
    """
    manifest = _check_manifest(manifest)

    def listed(values: pd.Series) -> str:
        return ", ".join(f"{v:g}" for v in sorted(set(values)))

    grouped = manifest.groupby(["backbone", "paradigm", "method"], sort=True)
    return pd.DataFrame({
        "seeds": grouped["seed"].nunique(),
        "seed_list": grouped["seed"].agg(listed),
        "runs": grouped["run_id"].nunique(),
        "checkpoints": grouped["name"].size(),
        "budgets": grouped["budget_fraction"].agg(listed),
    })


def quality_table(manifest: pd.DataFrame, budget_fraction: float = 1.0) -> pd.DataFrame:
    """Linear-probe gain over the random initialisation of the same seed, per method, across seeds.

    Parameters
    ----------
    manifest : pandas.DataFrame
        One row per checkpoint, with ``probe_accuracy`` and ``probe_gain_vs_random`` (a fraction).
    budget_fraction : float
        Which checkpoints to summarise (1.0: the full-budget models).

    Returns
    -------
    pandas.DataFrame
        Index ``(backbone, paradigm, method)``; columns ``n_seeds``, ``gain_mean``, ``gain_sd``
        (across seeds, ddof 1; NaN with one seed), ``gain_min``, ``gain_max`` (all in accuracy
        points) and ``probe_mean`` (accuracy, %). The random initialisation is left out (its gain is
        zero by definition).
    """
    manifest = _check_manifest(manifest, ("probe_accuracy", "probe_gain_vs_random"))
    rows = manifest[(manifest["budget_fraction"] == budget_fraction) & (manifest["method"] != "random")]
    if rows.empty:
        raise ValueError(f"No trained checkpoint at budget fraction {budget_fraction}; the manifest has "
                         f"{sorted(set(manifest['budget_fraction']))}.")
    gains = rows.assign(gain=100 * rows["probe_gain_vs_random"].astype(float),
                        probe=100 * rows["probe_accuracy"].astype(float))
    grouped = gains.groupby(["backbone", "paradigm", "method"], sort=True)
    return pd.DataFrame({
        "n_seeds": grouped["seed"].nunique(),
        "gain_mean": grouped["gain"].mean(),
        "gain_sd": grouped["gain"].std(ddof=1),
        "gain_min": grouped["gain"].min(),
        "gain_max": grouped["gain"].max(),
        "probe_mean": grouped["probe"].mean(),
    })


def quality_summary(manifest: pd.DataFrame, backbone: str = "convnet") -> dict[str, object]:
    """The zoo's quality goals checked on the full-budget SSL models of one backbone.

    Returns
    -------
    dict
        ``n_models``, ``median_gain`` and ``min_gain`` (points), ``worst_model``, ``below_min``
        (names under the floor), and ``median_goal_met`` / ``min_goal_met`` (bools) against
        :data:`QUALITY_GOALS`.
    """
    manifest = _check_manifest(manifest, ("probe_gain_vs_random",))
    ssl = manifest[(manifest["budget_fraction"] == 1.0) & (manifest["backbone"] == backbone)
                   & ~manifest["method"].isin(REFERENCE_METHODS)]
    if ssl.empty:
        raise ValueError(f"No full-budget SSL model on backbone {backbone!r}; backbones in the manifest: "
                         f"{sorted(set(manifest['backbone']))}.")
    gains = 100 * ssl.set_index("name")["probe_gain_vs_random"].astype(float)
    floor = QUALITY_GOALS["min_gain_points"]
    return {
        "n_models": int(len(gains)),
        "median_gain": float(np.median(gains)),
        "min_gain": float(gains.min()),
        "worst_model": str(gains.idxmin()),
        "below_min": sorted(gains.index[gains < floor]),
        "median_goal_met": bool(np.median(gains) >= QUALITY_GOALS["median_gain_points"]),
        "min_goal_met": bool(gains.min() >= floor),
    }


def archived_manifest(path: str | Path = SECOND_ZOO_MANIFEST) -> pd.DataFrame:
    """The manifest of an earlier zoo as a table (one row per checkpoint), for comparisons with it.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist (restore it from git: it is committed under ``data/zoo-history``).
    ValueError
        If the file is not a manifest (no ``models`` list with the design columns).
    """
    models = read_json_results(path, "models", f"restore it with git checkout -- {path}",
                               "a zoo manifest (a JSON object with a 'models' list)")["models"]
    return _check_manifest(pd.DataFrame(models))


def training_speeds(path: str | Path = TRAIN_BENCHMARK) -> pd.DataFrame:
    """SimCLR training throughput per architecture and setting, as measured by ``benchmarks/train.py``.

    Returns
    -------
    pandas.DataFrame
        One row per measured case: ``architecture``, ``setting``, ``batch_size``,
        ``images_per_s_step`` and ``images_per_s_train_model`` (images/s, two views each).

    Raises
    ------
    FileNotFoundError
        If the results file is missing (run ``make bench-train``).
    ValueError
        If it is not the benchmark's output.
    """
    rows = pd.DataFrame(read_json_results(path, "results", "run `make bench-train` to measure them",
                                          "the output of benchmarks/train.py")["results"])
    columns = ["architecture", "setting", "batch_size", "images_per_s_step", "images_per_s_train_model"]
    missing = sorted(set(columns) - set(rows.columns))
    if missing:
        raise ValueError(f"{path} is not the output of benchmarks/train.py: no columns {missing}.")
    return rows[columns]


def training_hours(manifest: pd.DataFrame, backbone: str | None = None) -> float:
    """Wall-clock training hours summed over runs (each run's last checkpoint holds its time).

    ``backbone`` restricts the sum to one backbone's runs; None sums every run.
    """
    manifest = _check_manifest(manifest, ("train_seconds",))
    if backbone is not None:
        manifest = manifest[manifest["backbone"] == backbone]
    return float(manifest.groupby("run_id")["train_seconds"].max().sum() / 3600)


def budget_curves(manifest: pd.DataFrame) -> pd.DataFrame:
    """Probe and kNN accuracy of every run along its budget checkpoints (runs with two or more).

    Returns
    -------
    pandas.DataFrame
        Columns ``run_id, method, paradigm, backbone, seed, budget_fraction, images_seen,
        probe_accuracy, knn_accuracy``, sorted by run and budget.
    """
    manifest = _check_manifest(manifest, ("images_seen", "probe_accuracy", "knn_accuracy"))
    counts = manifest.groupby("run_id")["name"].transform("size")
    columns = ["run_id", "method", "paradigm", "backbone", "seed", "budget_fraction", "images_seen",
               "probe_accuracy", "knn_accuracy"]
    return (manifest.loc[counts >= 2, columns]
            .sort_values(["run_id", "budget_fraction"]).reset_index(drop=True))


def training_curves(entries: Sequence[dict], smoothing: int = 25) -> pd.DataFrame:
    """Per-step training losses of the full-budget checkpoints, smoothed by a running mean.

    Parameters
    ----------
    entries : sequence of dict
        Raw manifest entries (:func:`sslgeom.zoo.read_manifest`), which hold ``step_losses`` on the
        full-budget checkpoint of each run.
    smoothing : int
        Window of the running mean, in steps (1 keeps the raw losses).

    Returns
    -------
    pandas.DataFrame
        Columns ``run_id, method, paradigm, backbone, seed, step, loss`` (``step`` counts from 1).
        Runs without recorded losses (the random initialisation) are left out.
    """
    if isinstance(smoothing, bool) or not isinstance(smoothing, (int, np.integer)) or smoothing < 1:
        raise ValueError(f"smoothing must be a positive integer (steps), got {smoothing!r}.")
    frames = []
    for entry in entries:
        losses = np.asarray(entry.get("step_losses") or [], dtype=float)
        if losses.size == 0:
            continue
        window = min(int(smoothing), losses.size)
        smoothed = np.convolve(losses, np.ones(window) / window, mode="valid")
        steps = np.arange(window, losses.size + 1)
        frames.append(pd.DataFrame({
            "run_id": entry.get("run_id", entry["name"]), "method": entry["method"], "paradigm": entry["paradigm"],
            "backbone": entry["backbone"], "seed": entry.get("seed", 0), "step": steps, "loss": smoothed,
        }))
    if not frames:
        raise ValueError("No entry records step losses: they are written by the designed zoo's training script.")
    return pd.concat(frames, ignore_index=True)
