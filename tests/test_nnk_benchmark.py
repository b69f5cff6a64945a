"""The committed NNK benchmark (benchmarks/results/nnk.json) as chapter 03 reads it."""

import json

import pytest

from sslgeom import nnk_benchmark


def test_the_committed_run_is_read_with_ratios_that_match_its_times():
    run = nnk_benchmark.read_nnk_benchmark()
    raw = json.loads(nnk_benchmark.NNK_BENCHMARK.read_text())
    assert not raw["quick"] and run.finished == raw["finished"] and run.rounds >= 3
    # the two exact sizes chapter 03 quotes, smallest first
    assert list(run.exact.index) == ["10,000 x 512", "100,000 x 256"]
    for _, row in run.exact.iterrows():
        assert row["nnk_over_faiss"] == pytest.approx(row["nnk_s"] / row["faiss_s"])
        assert row["knn_over_faiss"] == pytest.approx(row["knn_s"] / row["faiss_s"])
        # the graph cannot beat the exact search that finds its candidates
        assert row["nnk_over_faiss"] > 1 and row["nnk_over_faiss_separate"] > 0.9
        assert row["authors_over_nnk"] > 1
    # chapter 03: "at the smaller size ... the graph stays further from the search"
    assert run.exact.iloc[0]["nnk_over_faiss"] > run.exact.iloc[-1]["nnk_over_faiss"]
    assert (run.exact["rounds"] == run.rounds).all()
    # the medians are medians of the alternated rounds
    rounds = raw["rows"][0]["interleaved"]["seconds_per_round"]["nnk"]
    assert run.exact.iloc[0]["nnk_s"] == pytest.approx(sorted(rounds)[len(rounds) // 2])
    million = run.approximate.query("n == 1000000 and mode == 'ivf'")
    assert len(million) == 1 and 0 <= million["recall"].iloc[0] <= 1 and million["peak_gib"].iloc[0] > 0


def _write(path, payload):
    path.write_text(json.dumps(payload))
    return path


def test_a_missing_quick_or_partial_run_is_refused_with_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="make bench"):
        nnk_benchmark.read_nnk_benchmark(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="not the output of benchmarks/nnk.py"):
        nnk_benchmark.read_nnk_benchmark(_write(tmp_path / "other.json", {"results": []}))
    with pytest.raises(ValueError, match="--quick smoke run"):
        nnk_benchmark.read_nnk_benchmark(_write(tmp_path / "quick.json", {"quick": True, "rows": []}))
    partial = {"quick": False, "rows": [{"n": 10, "dim": 2, "tasks": {"nnk": {"seconds": 1.0}}}]}
    with pytest.raises(ValueError, match="not a full run.*interleaved.*make bench"):
        nnk_benchmark.read_nnk_benchmark(_write(tmp_path / "partial.json", partial))
    with pytest.raises(ValueError, match="no size timed with exact candidates"):
        nnk_benchmark.read_nnk_benchmark(_write(tmp_path / "empty.json", {"quick": False, "rows": []}))
