"""Recompute the probe fields of the zoo manifest from the shipped checkpoints (no retraining).

For every model of ``data/zoo/manifest.json`` (or ``$SSLGEOM_ZOO_DIR``) this loads the committed
checkpoint, embeds the probe images of ``scripts/train_zoo.py`` (``probe_split``, same sizes and
seed) and calls that script's ``evaluate``, which uses :mod:`sslgeom.evaluation` (the book's one
linear probe and kNN accuracy) and :func:`sslgeom.baselines.effective_rank`. The fields ``evaluate``
returns and every ``probe_gain_vs_random`` are replaced; every other field and the key order stay
as they are. The manifest is rewritten atomically once all models are done.

Usage::

    .venv/bin/python scripts/reprobe_zoo.py            # print before/after and rewrite the manifest
    .venv/bin/python scripts/reprobe_zoo.py --dry-run  # print only
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import torch
from tqdm.auto import tqdm

from sslgeom import zoo

#: The manifest's description of the linear probe, as written by this script.
LINEAR_PROTOCOL = (
    "standardised features, multinomial logistic regression (sslgeom.evaluation.linear_probe), C from "
    "the 6 values 1e-3..1e2 chosen on a 20% stratified validation split, refit on train+val, test accuracy"
)


def load_train_zoo():
    """``scripts/train_zoo.py`` as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("train_zoo", Path(__file__).with_name("train_zoo.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reprobe(manifest: dict, probe_train: int, probe_test: int, device: str = "cpu") -> list[dict]:
    """Update ``manifest`` in place; return one ``{name, field: (before, after)}`` row per model."""
    train_zoo = load_train_zoo()
    probe_data = train_zoo.probe_split(probe_train, probe_test)
    changes = []
    for entry in tqdm(manifest["models"], desc="reprobe", unit="model"):
        model = zoo.load(entry["name"], device=device)
        scores = train_zoo.evaluate(model.backbone, probe_data, device)
        changes.append({"name": entry["name"], **{k: (entry.get(k), v) for k, v in scores.items()}})
        entry.update(scores)  # existing keys keep their place in the entry
    accuracy = {e["name"]: e["probe_accuracy"] for e in manifest["models"]}
    for entry, change in zip(manifest["models"], changes):
        # as train_zoo.finalize_manifest: the gain over the seed-0 random initialisation of the backbone
        reference = accuracy.get(train_zoo.model_name("random", entry["backbone"], "strong", 0))
        gain = None if reference is None else round(entry["probe_accuracy"] - reference, 4)
        change["probe_gain_vs_random"] = (entry.get("probe_gain_vs_random"), gain)
        entry["probe_gain_vs_random"] = gain
    if "probe_protocol" in manifest:
        manifest["probe_protocol"]["linear"] = LINEAR_PROTOCOL
    return changes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probe-train", type=int, default=10000, help="train-split images (as train_zoo.py)")
    parser.add_argument("--probe-test", type=int, default=5000, help="test-split images (as train_zoo.py)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dry-run", action="store_true", help="print the changes, leave the manifest alone")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    manifest = zoo.read_manifest()
    if not manifest["models"]:
        parser.error(f"no models in {zoo.zoo_dir()}; train the zoo with `make zoo` first")
    changes = reprobe(manifest, args.probe_train, args.probe_test, args.device)
    print(f"{'model':<28} {'probe before':>12} {'after':>7} {'C before':>9} {'after':>6} {'kNN before':>10} "
          f"{'after':>7} {'erank before':>12} {'after':>7}")
    for row in changes:
        (p0, p1), (c0, c1), (k0, k1), (e0, e1) = (row[f] for f in ("probe_accuracy", "probe_best_c",
                                                                   "knn_accuracy", "effective_rank"))
        print(f"{row['name']:<28} {p0:>12.4f} {p1:>7.4f} {c0:>9g} {c1:>6g} {k0:>10.4f} {k1:>7.4f} {e0:>12.2f} {e1:>7.2f}")
    if not args.dry_run:
        path = zoo.write_manifest(manifest)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
