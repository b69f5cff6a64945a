"""Benchmark of sslgeom.nnk: exact kNN alone, the whole nnk_graph, and a per-node scipy loop.

Every measurement runs in a fresh subprocess so that its peak resident memory (``ru_maxrss``)
is its own. Data: points near a 16-dimensional subspace with isotropic noise, L2-normalised
(a stand-in for SSL features: low intrinsic dimension, unit norm); cosine kernel, float32.

The per-node scipy loop solves each node's problem with ``scipy.optimize.nnls`` on the
Cholesky form of ``K_SS``, on the candidates found by the same kNN; for large ``n`` it is run on
the first ``--scipy-nodes`` nodes and its time extrapolated linearly (marked in the table).

Usage::

    python benchmarks/nnk.py            # full grid, writes benchmarks/results/nnk.json
    python benchmarks/nnk.py --quick    # n = 1000 only (smoke test)
    python benchmarks/nnk.py --sizes 10000 --dims 512 --extra --torch-solver   # one row, both solvers
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "nnk.json"


def make_features(n_points: int, dim: int, seed: int = 0) -> np.ndarray:
    """Unit vectors near a random 16-dimensional subspace, shape ``(n_points, dim)``, float32."""
    from sslgeom import synthetic

    points = synthetic.linear_subspace(n_points, min(16, dim), dim, noise=0.05, seed=seed)
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points.astype(np.float32)


def _scipy_loop(features: np.ndarray, neighbors: np.ndarray, n_nodes: int) -> None:
    from scipy.optimize import nnls
    from threadpoolctl import threadpool_limits

    points = features.astype(np.float64)
    # one BLAS thread: per-node matrices are tiny, and threads only wait on each other
    with threadpool_limits(limits=1):
        _scipy_nodes(points, neighbors, n_nodes, nnls)


def _scipy_nodes(points: np.ndarray, neighbors: np.ndarray, n_nodes: int, nnls) -> None:
    for node in range(n_nodes):
        cand = points[neighbors[node]]
        gram = 0.5 + 0.5 * cand @ cand.T
        linear = 0.5 + 0.5 * cand @ points[node]
        chol = np.linalg.cholesky(gram + 1e-10 * np.eye(len(linear)))
        nnls(chol.T, np.linalg.solve(chol, linear), maxiter=50 * len(linear))


def run_one(task: str, n_points: int, dim: int, k: int, scipy_nodes: int) -> dict:
    """Time one task in this process and return its measurements."""
    import torch

    from sslgeom import nnk

    features = make_features(n_points, dim)
    record: dict = {"task": task, "n": n_points, "dim": dim, "k": k,
                    "threads": torch.get_num_threads()}
    # Warm-up on 200 points, not timed: torch's thread pool, and numba loading the compiled
    # solver from its on-disk cache (or compiling it, about 20 s, on the very first run).
    start = time.perf_counter()
    warm = make_features(200, dim, seed=1)
    if task == "knn":
        nnk.knn(warm, 10, metric="cosine")
    elif task.startswith("nnk"):
        nnk.nnk_graph(warm, 10, kernel="cosine", solver=task.partition("-")[2] or "auto")
    record["warmup_seconds"] = time.perf_counter() - start
    if task == "knn":
        start = time.perf_counter()
        nnk.knn(features, k, metric="cosine")
        record["seconds"] = time.perf_counter() - start
    elif task in ("nnk", "nnk-torch"):
        solver = "torch" if task == "nnk-torch" else "auto"
        start = time.perf_counter()
        result = nnk.nnk_graph(features, k, kernel="cosine", dtype="float32", solver=solver)
        record["seconds"] = time.perf_counter() - start
        record["mean_neighbors"] = float(result.n_neighbors.mean())
        record["iterations"] = int(result.n_iterations)
        record["max_kkt_residual"] = float(result.kkt_residual.max())
    elif task == "scipy":
        n_nodes = min(n_points, scipy_nodes)
        # candidates of the timed nodes only: brute force, exact (rows are unit vectors)
        scores = features[:n_nodes] @ features.T
        scores[np.arange(n_nodes), np.arange(n_nodes)] = -np.inf
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1)
        neighbors = np.take_along_axis(top, order, 1)
        del scores
        start = time.perf_counter()
        _scipy_loop(features, neighbors, n_nodes)
        elapsed = time.perf_counter() - start
        record["seconds"] = elapsed * n_points / n_nodes
        record["nodes_timed"] = n_nodes
        record["extrapolated"] = n_nodes < n_points
    else:
        raise ValueError(f"unknown task {task!r}")
    record["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return record


def _in_subprocess(task: str, n_points: int, dim: int, k: int, scipy_nodes: int) -> dict:
    command = [sys.executable, __file__, "--one", task, str(n_points), str(dim), str(k),
               str(scipy_nodes)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only n = 1000 (smoke test)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--dims", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--extra", type=str, nargs="*", default=["100000x256"],
                        help="extra n x dim configurations, e.g. 100000x256")
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--scipy-nodes", type=int, default=10_000,
                        help="per-node scipy loop runs on at most this many nodes")
    parser.add_argument("--torch-solver", action="store_true",
                        help="also time nnk_graph with solver='torch' (the batched solver)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--one", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.one:
        task, n_points, dim, k, scipy_nodes = args.one
        print(json.dumps(run_one(task, int(n_points), int(dim), int(k), int(scipy_nodes))))
        return

    configs = [(n, d) for n in args.sizes for d in args.dims]
    configs += [tuple(int(v) for v in extra.split("x")) for extra in args.extra]
    if args.quick:
        configs = [(1_000, d) for d in args.dims]
    configs = sorted(set(configs), key=lambda c: (c[0] * c[1], c))

    tasks = ["knn", "nnk", "scipy"] + (["nnk-torch"] if args.torch_solver else [])
    rows = []
    for n_points, dim in configs:
        row = {"n": n_points, "dim": dim, "k": args.k}
        for task in tasks:
            record = _in_subprocess(task, n_points, dim, args.k, args.scipy_nodes)
            row[task] = record
            print(f"  n={n_points} dim={dim} {task}: {record['seconds']:.2f} s, "
                  f"peak {record['peak_rss_mb']:.0f} MB", flush=True)
        # the per-node stage: everything nnk_graph does after its kNN search
        row["stage_seconds"] = row["nnk"]["seconds"] - row["knn"]["seconds"]
        row["nnk_over_knn"] = row["nnk"]["seconds"] / row["knn"]["seconds"]
        row["scipy_over_nnk"] = row["scipy"]["seconds"] / row["nnk"]["seconds"]
        row["scipy_over_stage"] = row["scipy"]["seconds"] / max(row["stage_seconds"], 1e-9)
        rows.append(row)
        _write(args.out, rows, args.quick)  # after every configuration: partial runs survive

    header = (f"{'n':>7} {'dim':>4} {'kNN s':>7} {'NNK s':>7} {'NNK/kNN':>7} {'stage s':>7} "
              f"{'scipy s':>8} {'scipy/NNK':>9} {'scipy/stage':>11} {'kNN MB':>7} {'NNK MB':>7} "
              f"{'nbrs':>5}" + (f" {'torch s':>7}" if args.torch_solver else ""))
    print(header)
    for row in rows:
        mark = "*" if row["scipy"].get("extrapolated") else " "
        print(f"{row['n']:>7} {row['dim']:>4} {row['knn']['seconds']:>7.2f} "
              f"{row['nnk']['seconds']:>7.2f} {row['nnk_over_knn']:>7.2f} "
              f"{row['stage_seconds']:>7.2f} "
              f"{row['scipy']['seconds']:>7.1f}{mark} {row['scipy_over_nnk']:>9.1f} "
              f"{row['scipy_over_stage']:>11.1f} "
              f"{row['knn']['peak_rss_mb']:>7.0f} {row['nnk']['peak_rss_mb']:>7.0f} "
              f"{row['nnk']['mean_neighbors']:>5.1f}"
              + (f" {row['nnk-torch']['seconds']:>7.2f}" if args.torch_solver else ""))
    print("stage = NNK - kNN: the per-node stage (kernel matrices and exact solves), which the "
          "scipy loop also does (on the same candidates).")
    print("* scipy time extrapolated linearly from the first "
          f"{args.scipy_nodes} nodes")

    print(f"wrote {args.out}")


def _write(path: Path, rows: list[dict], quick: bool) -> None:
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"machine": platform.platform(), "processor": platform.processor(),
               "cpus": os.cpu_count(), "load_average": os.getloadavg(), "quick": quick,
               "rows": rows}
    path.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
