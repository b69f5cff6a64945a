"""Benchmark of sslgeom.nnk: the graph against the exact kNN search it needs, and past it.

For each size ``n x dim`` every task runs in its own fresh subprocess (so that its peak resident
memory, ``ru_maxrss``, is its own; it includes the features themselves), on the same data:

- ``faiss``: faiss ``IndexFlatIP`` exact search of the ``k + 1`` nearest neighbours (the floor:
  exact NNK cannot be faster than the exact search that finds its candidates);
- ``knn``: ``nnk.knn`` (the kNN stage of ``nnk_graph``: faiss on the CPU in float32);
- ``knn-torch``: ``nnk.knn(backend="torch")``, the blocked torch search (GPUs, float64);
- ``nnk``: the whole ``nnk.nnk_graph`` with exact candidates (the default);
- ``authors``: the NNK authors' route as they describe it, written here from that description:
  faiss exact search, then one non-negative QP per node in a Python loop with a generic solver
  (``K_SS`` and ``K_Si`` with NumPy, ``scipy.optimize.nnls`` on the Cholesky form of the QP);
- ``interleaved``: ``faiss``, ``knn`` and ``nnk`` again, alternated in one process for
  ``--rounds`` rounds on the same data (the ratios of the medians): separate processes run
  minutes apart, and on a shared machine their times drift by about 10% between runs, which is
  as large as the differences measured;
- ``ivf`` / ``hnsw``: ``nnk_graph(candidates="ivf" | "hnsw")``, the **approximate** candidate
  modes (per-node problems still solved exactly). After the timing, on a random sample of
  ``--sample`` nodes: the candidate recall against an exact faiss search of those nodes, and the
  MGM summaries of the sample (NNK neighbour count, neighbourhood diameter, reconstruction error,
  weight entropy: the per-node metrics of ``sslgeom.mgm`` that need no other node) with exact
  and with approximate candidates, each node's QP solved the same way in float64.

Data (``make_features``): synthetic clustered features, the stand-in for SSL features (clusters,
low intrinsic dimension, unit norm): ``max(10, n // 1000)`` clusters whose centres are standard
normal in a random 32-dimensional subspace; each point is its cluster's centre plus a standard
normal offset of scale 0.5 in an 8-dimensional random subspace of its own cluster, plus isotropic
noise of standard deviation 0.05 in all ``dim`` coordinates; rows L2-normalised, float32, seed 0.
Cosine kernel, ``k = 50``, float32, all cores (torch's, numba's and faiss's thread settings).

The machine's load average is recorded before and after every task: on a shared machine the
times are only as good as the load they were taken under.

Usage::

    python benchmarks/nnk.py            # 10k x 512, 100k x 256 and 1M x 256 (approximate only)
    python benchmarks/nnk.py --quick    # 2,000 x 128 only (smoke test)
    python benchmarks/nnk.py --configs 10000x512 --tasks faiss nnk   # one row, some tasks
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "nnk.json"
EXACT_TASKS = ("faiss", "knn", "knn-torch", "nnk", "authors")
APPROXIMATE_TASKS = ("ivf", "hnsw")
#: faiss, the kNN stage and the graph alternated in one process (see :func:`run_interleaved`)
INTERLEAVED = "interleaved"
ALL_TASKS = EXACT_TASKS + APPROXIMATE_TASKS + (INTERLEAVED,)
#: Sizes past which a task is skipped unless asked for: an exact search of a million points is
#: about an hour on two cores, and faiss's HNSW build is single-insertion bound.
DEFAULT_LIMITS = {"faiss": 200_000, "knn": 200_000, "knn-torch": 200_000, "nnk": 200_000,
                  "authors": 200_000, "ivf": None, "hnsw": 200_000, INTERLEAVED: 200_000}
MGM_COLUMNS = ("n_neighbors", "diameter", "error", "entropy")


def make_features(n_points: int, dim: int, seed: int = 0, chunk: int = 16384) -> np.ndarray:
    """Synthetic clustered unit vectors (see the module docstring), shape ``(n_points, dim)``.

    Generated in chunks, so that a million rows need no float64 copy.
    """
    rng = np.random.default_rng(seed)
    n_clusters = max(10, n_points // 1000)
    frame = np.linalg.qr(rng.standard_normal((dim, min(32, dim))))[0]
    centres = (rng.standard_normal((n_clusters, frame.shape[1])) @ frame.T).astype(np.float32)
    local = rng.standard_normal((n_clusters, dim, 8)).astype(np.float32)
    local /= np.linalg.norm(local, axis=1, keepdims=True)
    labels = rng.integers(n_clusters, size=n_points)
    features = np.empty((n_points, dim), dtype=np.float32)
    for start in range(0, n_points, chunk):
        block = labels[start:start + chunk]
        offsets = 0.5 * rng.standard_normal((len(block), 8)).astype(np.float32)
        rows = centres[block] + np.einsum("bdk,bk->bd", local[block], offsets)
        rows += 0.05 * rng.standard_normal(rows.shape).astype(np.float32)
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        features[start:start + chunk] = rows
    return features


# ------------------------------------------------------------------------ the authors' route


def authors_route(features: np.ndarray, k: int) -> dict:
    """faiss exact search, then one non-negative QP per node in Python with a generic solver.

    Per node ``i`` with candidates ``S``: ``K_SS = (1 + X_S X_S^T) / 2`` and
    ``K_Si = (1 + X_S x_i) / 2`` (cosine kernel on unit rows), then
    ``min_{theta >= 0} 1/2 theta^T K_SS theta - K_Si^T theta`` as the non-negative least-squares
    problem ``min ||L^T theta - L^{-1} K_Si||`` (``K_SS = L L^T``) with ``scipy.optimize.nnls``.

    Returns
    -------
    dict
        ``search_seconds``, ``qp_seconds`` and the mean number of kept neighbours.
    """
    import faiss
    from scipy.optimize import nnls
    from threadpoolctl import threadpool_limits

    start = time.perf_counter()
    index = faiss.IndexFlatIP(features.shape[1])
    index.add(features)
    _, found = index.search(features, k + 1)
    neighbors = _without_self(found, k)
    search_seconds = time.perf_counter() - start
    start = time.perf_counter()
    points = features.astype(np.float64)
    kept = 0
    # one BLAS thread: the per-node matrices are tiny, more threads only wait on each other
    with threadpool_limits(limits=1):
        for node in range(len(points)):
            cand = points[neighbors[node]]
            gram = 0.5 + 0.5 * cand @ cand.T
            linear = 0.5 + 0.5 * cand @ points[node]
            chol = np.linalg.cholesky(gram + 1e-10 * np.eye(k))
            theta, _ = nnls(chol.T, np.linalg.solve(chol, linear), maxiter=50 * k)
            kept += int((theta > 0).sum())
    return {"search_seconds": search_seconds, "qp_seconds": time.perf_counter() - start,
            "mean_neighbors": kept / len(points)}


def _without_self(found: np.ndarray, k: int) -> np.ndarray:
    from sslgeom.candidates import drop_self

    return drop_self(found, np.zeros(found.shape, np.float32), k, np.arange(len(found)))[0]


# -------------------------------------------------- recall and MGM change of approximate modes


def _sample_nnk(points: np.ndarray, nodes: np.ndarray, neighbors: np.ndarray) -> dict:
    """NNK weights (float64, exact solver) and local MGMs of ``nodes`` given their candidates.

    Returns
    -------
    dict of np.ndarray, shape (n_nodes,)
        ``n_neighbors``, ``diameter`` (largest distance between kept neighbours), ``error``
        (kernel-space reconstruction error) and ``entropy`` (of the normalised weights), as
        defined in :mod:`sslgeom.mgm`.
    """
    import torch

    from sslgeom import nnk
    from sslgeom.kernels import reconstruction_error

    unit = points.astype(np.float64)
    cand = unit[neighbors]  # (m, k, dim)
    inner = cand @ cand.transpose(0, 2, 1)
    gram = 0.5 + 0.5 * inner
    linear = 0.5 + 0.5 * np.einsum("mkd,md->mk", cand, unit[nodes])
    theta, _, _ = nnk.nonnegative_qp(torch.from_numpy(gram), torch.from_numpy(linear))
    theta = theta.numpy()
    kept = theta > 0
    sq_norms = np.einsum("mkd,mkd->mk", cand, cand)
    pair = np.maximum(sq_norms[:, :, None] + sq_norms[:, None, :] - 2 * inner, 0.0)
    both = kept[:, :, None] & kept[:, None, :]
    share = theta / np.maximum(theta.sum(axis=1, keepdims=True), 1e-300)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(kept, share * np.log(share), 0.0).sum(axis=1)
    return {"n_neighbors": kept.sum(axis=1), "diameter": np.sqrt(np.where(both, pair, 0).max((1, 2))),
            "error": reconstruction_error(gram, linear, theta), "entropy": entropy}


def approximate_quality(features: np.ndarray, neighbors: np.ndarray, k: int, n_sample: int,
                        seed: int = 1) -> dict:
    """Candidate recall and change in the MGM summaries on a random sample of nodes.

    Returns
    -------
    dict
        ``recall`` (mean over the sample of ``|approximate & exact| / k``), ``recall_q10``,
        ``exact_seconds`` (exact search of the sample), and ``mgm``: for each metric and
        statistic (mean, median, q10, q90, as :func:`sslgeom.mgm.summarize`), the value with
        exact and with approximate candidates and their difference.
    """
    import pandas as pd

    from sslgeom import candidates, mgm

    rng = np.random.default_rng(seed)
    nodes = np.sort(rng.choice(len(features), size=min(n_sample, len(features)), replace=False))
    start = time.perf_counter()
    exact, _ = candidates.exact_search(features, k, "ip", n_threads=os.cpu_count() or 1,
                                       queries=nodes)
    exact_seconds = time.perf_counter() - start
    approx = neighbors[nodes]
    hits = np.array([len(np.intersect1d(a, e)) for a, e in zip(approx, exact)]) / k
    tables = []
    for name, cands in (("exact", exact), ("approximate", approx)):
        table = pd.DataFrame(_sample_nnk(features, nodes, cands))
        table.insert(0, "candidates", name)
        tables.append(table)
    summary = mgm.summarize(pd.concat(tables), by=["candidates"], metrics=MGM_COLUMNS)
    summary = summary.set_index("candidates")
    change = {}
    for column in summary.columns.drop("n_nodes"):
        exact_value = float(summary.loc["exact", column])
        approx_value = float(summary.loc["approximate", column])
        change[column] = {"exact": exact_value, "approximate": approx_value,
                          "difference": approx_value - exact_value}
    return {"n_sample": int(len(nodes)), "recall": float(hits.mean()),
            "recall_q10": float(np.quantile(hits, 0.1)), "exact_seconds": exact_seconds,
            "mgm": change}


# ------------------------------------------------------------------------------ one task


def _warm_up(task: str, dim: int) -> None:
    """Not timed: torch's and faiss's thread pools, numba loading the compiled stage."""
    from sslgeom import nnk

    warm = make_features(500, dim, seed=1)
    if task in ("knn", "knn-torch"):
        nnk.knn(warm, 10, metric="cosine", backend="torch" if task == "knn-torch" else "auto")
    elif task in ("nnk",) + APPROXIMATE_TASKS:
        nnk.nnk_graph(warm, 10, kernel="cosine")
    elif task == "authors":
        authors_route(warm[:100], 10)


def run_one(task: str, n_points: int, dim: int, k: int, n_sample: int,
            candidate_params: dict | None = None) -> dict:
    """Time one task in this process and return its measurements (``n_sample`` is the number of
    rounds for the interleaved task)."""
    if task == INTERLEAVED:
        return run_interleaved(n_points, dim, k, n_sample)
    import faiss
    import numba
    import torch

    from sslgeom import nnk

    features = make_features(n_points, dim)
    record: dict = {"task": task, "n": n_points, "dim": dim, "k": k,
                    "threads": {"torch": torch.get_num_threads(),
                                "numba": numba.get_num_threads(),
                                "faiss": faiss.omp_get_max_threads()}}
    start = time.perf_counter()
    _warm_up(task, dim)
    record["warmup_seconds"] = time.perf_counter() - start
    record["load_before"] = os.getloadavg()
    start = time.perf_counter()
    if task == "faiss":
        index = faiss.IndexFlatIP(dim)
        index.add(features)
        index.search(features, k + 1)
    elif task in ("knn", "knn-torch"):
        nnk.knn(features, k, metric="cosine", backend="torch" if task == "knn-torch" else "auto")
    elif task == "authors":
        record.update(authors_route(features, k))
    elif task in ("nnk",) + APPROXIMATE_TASKS:
        mode = "exact" if task == "nnk" else task
        params = (candidate_params or {}).get(task) if mode != "exact" else None
        result = nnk.nnk_graph(features, k, kernel="cosine", dtype="float32", candidates=mode,
                               candidate_params=params)
        record["seconds"] = time.perf_counter() - start
        record["mean_neighbors"] = float(result.n_neighbors.mean())
        record["max_kkt_residual"] = float(result.kkt_residual.max())
        record["candidate_settings"] = result.candidate_settings
    else:
        raise ValueError(f"unknown task {task!r}; choose from {ALL_TASKS}.")
    record.setdefault("seconds", time.perf_counter() - start)
    record["load_after"] = os.getloadavg()
    record["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if task in APPROXIMATE_TASKS:
        neighbors = result.neighbors
        del result
        record["quality"] = approximate_quality(features, neighbors, k, n_sample)
    return record


def run_interleaved(n_points: int, dim: int, k: int, rounds: int) -> dict:
    """faiss ``IndexFlatIP`` search, ``nnk.knn`` and ``nnk.nnk_graph`` alternated ``rounds`` times
    in this process on the same data; per-round seconds and the ratios of the medians."""
    import faiss

    from sslgeom import nnk

    features = make_features(n_points, dim)
    for task in ("knn", "nnk"):
        _warm_up(task, dim)

    def search() -> None:
        index = faiss.IndexFlatIP(dim)
        index.add(features)
        index.search(features, k + 1)

    steps = {"faiss": search, "knn": lambda: nnk.knn(features, k, metric="cosine"),
             "nnk": lambda: nnk.nnk_graph(features, k, kernel="cosine", dtype="float32")}
    record: dict = {"task": INTERLEAVED, "n": n_points, "dim": dim, "k": k, "rounds": rounds,
                    "load_before": os.getloadavg(), "seconds_per_round": {name: [] for name in steps}}
    start = time.perf_counter()
    for _ in range(rounds):
        for name, step in steps.items():
            began = time.perf_counter()
            step()
            record["seconds_per_round"][name].append(time.perf_counter() - began)
    record["total_seconds"] = time.perf_counter() - start
    medians = {name: float(np.median(times)) for name, times in record["seconds_per_round"].items()}
    record["median_seconds"] = medians
    record["knn_over_faiss"] = medians["knn"] / medians["faiss"]
    record["nnk_over_faiss"] = medians["nnk"] / medians["faiss"]
    record["load_after"] = os.getloadavg()
    record["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return record


def _in_subprocess(task: str, n_points: int, dim: int, k: int, n_sample: int,
                   candidate_params: dict) -> dict:
    command = [sys.executable, __file__, "--one", task, str(n_points), str(dim), str(k),
               str(n_sample), json.dumps(candidate_params)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        return {"task": task, "failed": done.stderr.strip().splitlines()[-5:],
                "load_after": os.getloadavg()}
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------ the table


def _ratio(row: dict, top: str, bottom: str) -> float | None:
    a, b = row["tasks"].get(top, {}), row["tasks"].get(bottom, {})
    if "seconds" not in a or "seconds" not in b:
        return None
    return a["seconds"] / b["seconds"]


def summarise_row(row: dict) -> None:
    """Add the ratios the issue asks about to one size's row (in place)."""
    tasks = row["tasks"]
    row["knn_over_faiss"] = _ratio(row, "knn", "faiss")
    row["knn_torch_over_faiss"] = _ratio(row, "knn-torch", "faiss")
    row["nnk_over_faiss"] = _ratio(row, "nnk", "faiss")
    row["authors_over_faiss"] = _ratio(row, "authors", "faiss")
    row["authors_over_nnk"] = _ratio(row, "authors", "nnk")
    if "seconds" in tasks.get("nnk", {}) and "seconds" in tasks.get("knn", {}):
        row["stage_seconds"] = tasks["nnk"]["seconds"] - tasks["knn"]["seconds"]


def _cell(record: dict | None, key: str = "seconds", fmt: str = "{:.2f}") -> str:
    if not record:
        return "-"
    if "failed" in record:
        return "failed"
    return fmt.format(record[key]) if key in record else "-"


def print_table(rows: list[dict]) -> None:
    print()
    print("Seconds (peak MB) per task; ratios to the faiss exact search in the same run; "
          "load = 1-min load average before/after the task.")
    header = (f"{'n x dim':>14} {'task':>9} {'seconds':>8} {'/faiss':>7} {'peak MB':>8} "
              f"{'load':>10} {'nbrs':>5} {'recall':>7}")
    print(header)
    for row in rows:
        faiss_record = row["tasks"].get("faiss", {})
        for task, record in row["tasks"].items():
            ratio = "-"
            if "seconds" in faiss_record and "seconds" in record:
                ratio = f"{record['seconds'] / faiss_record['seconds']:.2f}"
            load = "-"
            if "load_before" in record:
                load = f"{record['load_before'][0]:.1f}/{record['load_after'][0]:.1f}"
            recall = "-"
            if "quality" in record:
                recall = f"{record['quality']['recall']:.4f}"
            print(f"{row['n']:>8} x {row['dim']:<4} {task:>9} {_cell(record):>8} {ratio:>7} "
                  f"{_cell(record, 'peak_rss_mb', '{:.0f}'):>8} {load:>10} "
                  f"{_cell(record, 'mean_neighbors', '{:.1f}'):>5} {recall:>7}")
    for row in rows:
        record = row.get(INTERLEAVED)
        if record and "failed" not in record:
            medians = record["median_seconds"]
            print(f"\n{row['n']} x {row['dim']} interleaved in one process, medians of {record['rounds']} rounds: "
                  f"faiss {medians['faiss']:.2f} s, knn {medians['knn']:.2f} s "
                  f"({record['knn_over_faiss']:.3f}x), nnk {medians['nnk']:.2f} s ({record['nnk_over_faiss']:.3f}x); "
                  f"load {record['load_before'][0]:.1f}/{record['load_after'][0]:.1f}")
    for row in rows:
        for task, record in row["tasks"].items():
            if "quality" not in record:
                continue
            quality = record["quality"]
            print(f"\n{row['n']} x {row['dim']} {task}: settings {record['candidate_settings']}; "
                  f"recall {quality['recall']:.4f} (q10 {quality['recall_q10']:.3f}) on "
                  f"{quality['n_sample']} random nodes; MGM summaries exact -> approximate:")
            for metric in MGM_COLUMNS:
                parts = [f"{stat} {quality['mgm'][f'{metric}_{stat}']['exact']:.4g} -> "
                         f"{quality['mgm'][f'{metric}_{stat}']['approximate']:.4g}"
                         for stat in ("mean", "median", "q10", "q90")]
                print(f"    {metric:>12}: " + "; ".join(parts))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only 2,000 x 128 (smoke test)")
    parser.add_argument("--configs", nargs="+",
                        default=["10000x512", "100000x256", "1000000x256"],
                        help="n x dim configurations")
    parser.add_argument("--tasks", nargs="+", default=list(ALL_TASKS), choices=ALL_TASKS)
    parser.add_argument("--all-sizes", action="store_true",
                        help="run every task at every size (exact search of 1M points: ~1 h)")
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--sample", type=int, default=2000,
                        help="random nodes for the recall and MGM comparison")
    parser.add_argument("--ivf", type=json.loads, default={"nprobe": 4},
                        help="candidate_params of the ivf task, JSON (default: nprobe 4 of the "
                             "default sqrt(n) cells; {} for the library defaults)")
    parser.add_argument("--hnsw", type=json.loads, default={},
                        help="candidate_params of the hnsw task, JSON")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of the interleaved task (faiss, knn, nnk alternated in one process)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--one", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.one:
        task, n_points, dim, k, n_sample, params = args.one
        print(json.dumps(run_one(task, int(n_points), int(dim), int(k), int(n_sample),
                                 json.loads(params))))
        return

    configs = ["2000x128"] if args.quick else args.configs
    configs = sorted({tuple(int(v) for v in c.split("x")) for c in configs},
                     key=lambda c: (c[0] * c[1], c))
    rows = []
    for n_points, dim in configs:
        row = {"n": n_points, "dim": dim, "k": args.k, "tasks": {}}
        rows.append(row)
        for task in args.tasks:
            limit = DEFAULT_LIMITS[task]
            if limit is not None and n_points > limit and not args.all_sizes:
                continue
            record = _in_subprocess(task, n_points, dim, args.k,
                                    args.rounds if task == INTERLEAVED else args.sample,
                                    {"ivf": args.ivf, "hnsw": args.hnsw})
            if task == INTERLEAVED:
                row[INTERLEAVED] = record
                print(f"  {n_points} x {dim} interleaved ({args.rounds} rounds): "
                      + (", ".join(f"{name} {np.round(times, 2).tolist()} s"
                                   for name, times in record["seconds_per_round"].items())
                         if "failed" not in record else "failed"), flush=True)
            else:
                row["tasks"][task] = record
                print(f"  {n_points} x {dim} {task}: {_cell(record)} s, peak "
                      f"{_cell(record, 'peak_rss_mb', '{:.0f}')} MB, load "
                      f"{record.get('load_before', ['-'])[0]} -> {record['load_after'][0]}",
                      flush=True)
            summarise_row(row)
            _write(args.out, rows, args)  # after every task: partial runs survive
    print_table(rows)
    print(f"wrote {args.out}")


def _write(path: Path, rows: list[dict], args: argparse.Namespace) -> None:
    import faiss
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"what": "NNK graph vs faiss exact kNN; approximate candidates past it",
               "command": " ".join(["python", "benchmarks/nnk.py", *sys.argv[1:]]),
               "data": "synthetic clustered unit vectors, benchmarks/nnk.py make_features",
               "kernel": "cosine", "dtype": "float32", "machine": platform.platform(),
               "processor": platform.processor(), "cpus": os.cpu_count(),
               "torch": torch.__version__, "faiss": faiss.__version__,
               "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "quick": args.quick,
               "rows": rows}
    path.write_text(json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
