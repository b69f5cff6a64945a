"""The committed NNK speed benchmark (``make bench``), read into the tables chapter 03 quotes.

``benchmarks/nnk.py`` times, per size, faiss's exact search, the kNN stage of
:func:`sslgeom.nnk.nnk_graph`, the whole graph and the NNK authors' route, each in its own process
and again alternated in one process, and the approximate candidate modes with their recall; it
writes ``benchmarks/results/nnk.json``, which is committed. :func:`read_nnk_benchmark` turns that
file into two tables, so the chapter's numbers are the ones the benchmark measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sslgeom.cache import REPO_ROOT
from sslgeom.validation import read_json_results

__all__ = ["NNK_BENCHMARK", "NNKBenchmark", "read_nnk_benchmark"]

#: where ``make bench`` writes its results
NNK_BENCHMARK = REPO_ROOT / "benchmarks" / "results" / "nnk.json"

_FIX = "run `make bench` (about 8-19 min on two cores) to measure it"
_WHAT = "the output of benchmarks/nnk.py"


@dataclass(frozen=True)
class NNKBenchmark:
    """One run of ``benchmarks/nnk.py``.

    Attributes
    ----------
    exact : pandas.DataFrame
        One row per size with exact candidates, index ``"n x dim"``: ``n``, ``dim``, ``rounds``;
        medians over the rounds alternated in one process, ``faiss_s`` (exact search), ``knn_s`` (the kNN stage)
        and ``nnk_s`` (the whole graph), with ``knn_over_faiss`` and ``nnk_over_faiss``; the same
        ratio timed as separate processes, ``nnk_over_faiss_separate``; and ``authors_over_nnk``,
        the NNK authors' route (faiss, then one generic QP per node in Python) over ``nnk_graph``,
        both as separate processes.
    approximate : pandas.DataFrame
        One row per (size, mode) of approximate candidates: ``n``, ``dim``, ``mode``, ``seconds``,
        ``peak_gib``, ``recall`` (of the candidates on sampled nodes), ``n_sample``, and the mean
        NNK neighbour count of the sample with exact and with approximate candidates
        (``neighbours_exact``, ``neighbours_approximate``).
    finished : str
        When the run finished (``YYYY-MM-DD HH:MM:SS``).
    cpus : int
        ``os.cpu_count()`` of the machine it ran on.
    rounds : int
        Rounds alternated in one process (the fewest of any size).
    """

    exact: pd.DataFrame
    approximate: pd.DataFrame
    finished: str
    cpus: int
    rounds: int


def _exact_row(row: dict) -> dict:
    interleaved = row["interleaved"]
    median = interleaved["median_seconds"]
    return {"n": row["n"], "dim": row["dim"], "rounds": interleaved["rounds"],
            "faiss_s": median["faiss"], "knn_s": median["knn"], "nnk_s": median["nnk"],
            "knn_over_faiss": interleaved["knn_over_faiss"], "nnk_over_faiss": interleaved["nnk_over_faiss"],
            "nnk_over_faiss_separate": row["nnk_over_faiss"], "authors_over_nnk": row["authors_over_nnk"]}


def _approximate_row(row: dict, mode: str) -> dict:
    record = row["tasks"][mode]
    quality = record["quality"]
    neighbours = quality["mgm"]["n_neighbors_mean"]
    return {"n": row["n"], "dim": row["dim"], "mode": mode, "seconds": record["seconds"],
            "peak_gib": record["peak_rss_mb"] / 1024, "recall": quality["recall"], "n_sample": quality["n_sample"],
            "neighbours_exact": neighbours["exact"], "neighbours_approximate": neighbours["approximate"]}


def read_nnk_benchmark(path: str | Path = NNK_BENCHMARK) -> NNKBenchmark:
    """Read a full run of ``benchmarks/nnk.py``.

    Parameters
    ----------
    path : str or Path
        Default: the committed ``benchmarks/results/nnk.json``.

    Returns
    -------
    NNKBenchmark

    Raises
    ------
    FileNotFoundError
        If the file is missing (run ``make bench``).
    ValueError
        If it is not the benchmark's output, is a ``--quick`` smoke run, or a size lacks the
        alternated rounds or the authors' route (a run restricted with ``--tasks``).
    """
    document = read_json_results(path, "rows", _FIX, _WHAT)
    rows = document["rows"]
    if document.get("quick"):
        raise ValueError(f"{path} holds a --quick smoke run of benchmarks/nnk.py; {_FIX}.")
    try:
        exact = [_exact_row(row) for row in rows if "interleaved" in row or "nnk" in row.get("tasks", {})]
        approximate = [_approximate_row(row, mode) for row in rows for mode in ("ivf", "hnsw")
                       if mode in row.get("tasks", {}) and "quality" in row["tasks"][mode]]
    except (KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a full run of benchmarks/nnk.py (missing {error}); {_FIX}.") from error
    if not exact:
        raise ValueError(f"{path} has no size timed with exact candidates; {_FIX}.")
    exact_table = pd.DataFrame(exact, index=[f"{r['n']:,} x {r['dim']}" for r in exact])
    approximate_table = pd.DataFrame(approximate, columns=["n", "dim", "mode", "seconds", "peak_gib", "recall",
                                                           "n_sample", "neighbours_exact", "neighbours_approximate"])
    return NNKBenchmark(exact=exact_table, approximate=approximate_table, finished=str(document.get("finished", "")),
                        cpus=int(document.get("cpus") or 0), rounds=int(exact_table["rounds"].min()))
