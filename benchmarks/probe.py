"""Linear-probe speed on wide features: the cost of chapter 05 for published ResNet-50s.

:func:`sslgeom.evaluation.linear_probe` on synthetic features of ``--dim`` dimensions (2,048, a
ResNet-50's pooled features) for each ``classes x images per class`` case, split 50/20/30 per class
as the ``image_folder`` task does, with the worked example's two-value grid of ``C``. The features
are non-negative (as after a ReLU and average pooling): class centres plus a shared 64-dimensional
latent part plus noise, made by :func:`make_splits` with a fixed seed, so every run times the same
problems.

The cases take the two solver paths: 10 x 50 (250 training images, fewer than the dimensions: the
fit runs in the span of the training features) and 100 x 50 (2,500 training images, 204,900
parameters: the shared-block preconditioner). Writes ``benchmarks/results/probe.json`` with the
seconds, the accuracy, the chosen ``C`` and the load average. Run with ``make bench-probe``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np

from sslgeom import evaluation

RESULTS = Path(__file__).resolve().parent / "results" / "probe.json"


def make_splits(n_classes: int, per_class: int, dim: int = 2048, seed: int = 0):
    """Train, val and test ``(features float32 (n, dim), labels (n,))``, 50/20/30 of ``per_class`` each."""
    rng = np.random.default_rng(seed)
    centres = 0.3 * rng.normal(size=(n_classes, dim))
    mix = rng.normal(size=(64, dim)) / 8
    splits = []
    for fraction in (0.5, 0.2, 0.3):
        n = int(round(fraction * per_class)) * n_classes
        labels = np.arange(n) % n_classes
        latent = rng.normal(size=(n, 64))
        features = np.abs(centres[labels] + latent @ mix + 0.5 * rng.normal(size=(n, dim)))
        splits.append((features.astype(np.float32), labels))
    return splits


def time_case(n_classes: int, per_class: int, dim: int, c_grid: list[float]) -> dict:
    """One probe, timed; its result and whether the solver warned."""
    train, val, test = make_splits(n_classes, per_class, dim)
    load_before = os.getloadavg()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", evaluation.ProbeConvergenceWarning)
        start = time.perf_counter()
        result = evaluation.linear_probe(train, val, test, c_grid=c_grid)
        seconds = time.perf_counter() - start
    return {"classes": n_classes, "per_class": per_class, "dim": dim, "train": len(train[1]),
            "parameters": (dim + 1) * n_classes, "seconds": seconds, "accuracy": result.accuracy,
            "best_c": result.best_c, "val_accuracy": result.val_accuracy,
            "convergence_warnings": sum(issubclass(w.category, evaluation.ProbeConvergenceWarning) for w in caught),
            "load_before": load_before, "load_after": os.getloadavg()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["10x50", "100x50"], help="classes x images per class")
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--c-grid", nargs="+", type=float, default=[0.1, 1.0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    rows = []
    for case in args.cases:
        n_classes, per_class = (int(v) for v in case.split("x"))
        row = time_case(n_classes, per_class, args.dim, args.c_grid)
        rows.append(row)
        print(f"{n_classes:>4} classes x {per_class} images, {args.dim}-d ({row['train']} training images, "
              f"{row['parameters']:,} parameters): {row['seconds']:.1f} s, accuracy {row['accuracy']:.3f}, "
              f"C {row['best_c']:g}, warnings {row['convergence_warnings']}, load {row['load_before'][0]:.1f}",
              flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"what": "linear_probe on synthetic wide features (benchmarks/probe.py)",
                                    "machine": platform.platform(), "cpus": os.cpu_count(),
                                    "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": rows}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
