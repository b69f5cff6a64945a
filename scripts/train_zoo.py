"""Train the default model zoo on Fashion-MNIST and write ``data/zoo`` (checkpoints + manifest).

The design
----------
* **Main backbone, the ConvNet**: each of the 8 SSL methods with seeds 0, 1, 2, plus a random-init
  and a supervised reference for every seed.
* **Second backbone, the ResNet**: seed 0 of every method, plus its random and supervised references.
* **The seed is a block.** ``seed`` fixes only the initial backbone weights: every run with seed s on
  a backbone starts from the same weights, which are exactly the random reference of seed s
  (``random-convnet``, ``random-convnet-s1``, ...); different seeds start from different weights.
* **Each run is otherwise independent**: its training subset (``N_TRAIN`` of the 60,000 train images),
  batch order, augmentation stream and head initialisation come from a run seed derived from the
  run id by SHA-256 (:func:`run_seed`), so no two runs share them.
* **One budget per backbone** (images seen, each with two views): ``BUDGET_IMAGES``, the same for
  every method, the supervised reference included.
* **Budget checkpoints**: every main-backbone run is saved at 1/4, 1/2 and all of its budget
  (``simclr-convnet-s1-b025``, ``-b050``, and ``simclr-convnet-s1`` for the full budget); each is a
  manifest entry with ``run_id``, ``budget_fraction``, ``images_seen``, ``seed``, ``method``,
  ``paradigm``, ``backbone``, ``policy``, ``file`` and ``sha256``. ResNet runs are saved at their
  full budget only.
* **One augmentation policy** (``strong``): the first zoo's ``weak`` variant answered no question
  the book asks, so it is not trained again.

The main backbone (:class:`sslgeom.models.ConvNet`) is the third zoo's: width 16 (16-32-64-64
channels) with a stride-2 first block, a quarter of the multiply-adds of the width-32 ConvNet with two
max-pools that the first two zoos used. On this machine's AVX2-only CPU (no native bfloat16) the wider
net trained at about 410 images/s and could not reach the 1,500 images/s goal of issue 13 at any
setting: two views of an image cost it about 0.18 GFLOP forward and backward, so 1,500 images/s
would need about 265 GFLOP/s, twice what the two cores reach in a plain matrix product. The narrow
net trains 2.5 to 3 times as fast (``benchmarks/train.py``, two runs on the idle machine: 1,372 and
1,453 images/s against 504 and 582), still short of 1,500, and, given twice the images and steps of
the second zoo in less time, learns more (the pilot below).

Hyper-parameter rule (fixed before training, no per-seed or per-method tuning): every method uses
AdamW at batch 64 with the first zoo's batch-32 settings scaled to the batch size by the
square-root rule for Adam-type optimisers, ``lr = 2e-3 * sqrt(batch / 32)`` (2.83e-3 at batch 64),
weight decay 1e-4, 5% linear warm-up then cosine decay to zero; the method-specific settings are the
defaults of the classes in :mod:`sslgeom.ssl_methods` (lightly's recommended values for small
images: SimCLR and MoCo temperature 0.2, MoCo's memory bank 4,096 = 64 batches, BYOL/DINO momentum
0.99 -> 1, ...). The batch size is the one choice the second zoo's pilots made, for all methods at
once; the third zoo kept it and the rule, and changed only the backbone's width and the budget.

Pilots (ConvNet, seed 0, run on this machine; gain = linear-probe accuracy minus the random init's,
probe of :func:`evaluate`; other work was running during some of them):

* second zoo (width-32 ConvNet, random init 0.8208), batch 256, lr 5.66e-3: SimCLR +3.6 / +4.7 /
  +4.7 after 49k / 98k / 197k images (about 480 images/s); supervised +5.6 after 115k; SimSiam +0.7 /
  +0.6 / +1.6 after 29k / 57k / 115k; BYOL +0.8 after 29k. The predictor methods fall short of the
  2-point floor: 448 steps are too few.
* SimSiam with the SimSiam paper's SGD rule (lr 0.05 x batch / 256, momentum 0.9, wd 5e-4) at batch
  256: -0.0 / -0.6 after 29k / 57k images. Rejected.
* batch 64 (4x the steps for the same images): SimSiam (lr 2e-3) +2.6 / +2.5 after 29k / 57k
  images, about 410 images/s on the idle machine; BYOL (lr 2.83e-3, the rule) +2.3 / +2.7 after
  29k / 57k images. The second zoo trained at batch 64 for 86,016 images: median gain 3.5 points,
  short of the 4-point goal.
* third zoo (width-16 ConvNet, random init 0.7770), batch 64, the rule, 172,032 images: SimSiam, the
  weakest method of the second zoo, +4.7 / +6.0 / +6.1 after 43k / 86k / 172k images, at about
  1,230 images/s on the idle machine. Its checkpoints are the zoo's ``simsiam-convnet-s0`` (same
  configuration and run seed).

Training budget and time (the arithmetic behind ``BUDGET_IMAGES``)
------------------------------------------------------------------
Cost of a run = images x (relative cost of its method, ``METHOD_COST``, in SimCLR steps: methods
with a momentum teacher pay its extra forward passes, MoCo back-propagates one view, the supervised
reference one view) x (backbone cost, ``BACKBONE_COST``) / throughput, plus one evaluation
(embedding 15,000 images and the probes, ``EVAL_SECONDS``) per checkpoint. Throughput is for
SimCLR-cost steps on the ConvNet with ``torch.set_num_threads(2)``, fp32 channels-last; on CPUs
without native bfloat16 (AVX2 only, like the reference machine) bf16 autocast is 8-30x slower than
fp32 (``benchmarks/train.py``), so the zoo trains in fp32.

With ``THROUGHPUT`` = 1,200 images/s (the pilot's 1,230 rounded down), ``EVAL_SECONDS`` = 6, ConvNet
budget 172,032 images (2,688 steps of 64, about 3.4 passes over a run's subset), ResNet budget
43,008 (672 steps) at three times the ConvNet's cost per image:

* ConvNet: 3 seeds x (sum of the 8 method costs 8.33 + supervised 0.5) = 26.5 run units
  x 172,032 / 1,200 = 3,800 s
* ResNet: (8.33 + 0.5) x 3.0 x 43,008 / 1,200 = 950 s
* evaluation: 3 x 9 x 3 + 3 random + 9 ResNet + 1 random = 94 checkpoints x 6 s = 560 s

Total about 5,300 s = 1.5 h (``--dry-run`` prints the same sum from the constants), under the 2.5 h
limit with a wide margin for a busy machine. Change ``--budget``/``--throughput`` to see other plans.
The ResNet runs are unchanged from the second zoo (same architecture, configuration and run seeds):
the committed zoo keeps their checkpoints, and ``make zoo`` skips them as finished.

Resuming: a checkpoint whose manifest entry records the planned configuration and whose file has
the recorded SHA-256 is never trained again. After each checkpoint the complete training state
(weights, heads, teachers, memory banks, optimiser moments, random generators, batch order) is
saved without pickle to ``--state-dir`` (:mod:`sslgeom.train_state`); an interrupted run resumes
from its last finished checkpoint and ends bit for bit where an uninterrupted run would (same
thread count). If that state file is missing, the run restarts cleanly from step 0. A manifest
entry whose file is missing or has another SHA-256 stops the script with the fix to apply.

Usage::

    .venv/bin/python scripts/train_zoo.py --dry-run             # the plan and its estimated time
    .venv/bin/python scripts/train_zoo.py                       # train (or resume) the whole zoo
    .venv/bin/python scripts/train_zoo.py --only random-convnet simclr-convnet-s0   # a pilot
"""

from __future__ import annotations

import argparse
import hashlib
import math
import time
from typing import NamedTuple
from pathlib import Path

import numpy as np
import torch

from sslgeom.baselines import effective_rank
from sslgeom.cache import cache_dir, file_sha256
from sslgeom.checkpoints import CheckpointError, ChecksumError
from sslgeom.data import load_fashion_mnist
from sslgeom.evaluation import knn_accuracy, linear_probe, validation_split
from sslgeom.models import BACKBONES, count_parameters, preprocess_uint8
from sslgeom.ssl_augment import get_policy
from sslgeom.ssl_methods import METHODS, get_method
from sslgeom.train import Checkpoint, TrainConfig, check_checkpoint_steps, train_model
from sslgeom.train_state import load_training_state, save_training_state
from sslgeom.zoo import LoadedModel, read_manifest, save_checkpoint, write_manifest, zoo_dir

# methods that tend to lag or collapse in short runs come first, so problems show early
SSL_METHODS = ("simsiam", "byol", "dino", "swav", "simclr", "moco-v2", "barlowtwins", "vicreg")
MAIN_BACKBONE, SECOND_BACKBONE = "convnet", "resnet"
SEEDS = {MAIN_BACKBONE: (0, 1, 2), SECOND_BACKBONE: (0,)}
BATCH_SIZE = 64
#: images of the 60,000-image train split in each run's own random subset
N_TRAIN = 50_000
#: images seen per run (each with two views), the same for every method on a backbone
BUDGET_IMAGES = {MAIN_BACKBONE: 172_032, SECOND_BACKBONE: 43_008}
#: fractions of the budget at which a run is checkpointed
BUDGET_FRACTIONS = {MAIN_BACKBONE: (0.25, 0.5, 1.0), SECOND_BACKBONE: (1.0,)}
POLICY = "strong"
#: relative cost of one step, in SimCLR steps (forward+backward of two views = 6 units; a teacher
#: forward pass adds 1 per view; MoCo back-propagates one view; supervised sees one view)
METHOD_COST = {"simclr": 1.0, "moco-v2": 4 / 6, "byol": 8 / 6, "simsiam": 1.0, "barlowtwins": 1.0,
               "vicreg": 1.0, "swav": 1.0, "dino": 8 / 6, "supervised": 0.5, "random": 0.0}
#: cost of a ResNet step relative to a ConvNet step (benchmarks/train.py)
BACKBONE_COST = {MAIN_BACKBONE: 1.0, SECOND_BACKBONE: 3.0}
#: SimCLR-cost images/s on the ConvNet at batch 64, 2 threads, fp32 channels-last (the pilot; see the docstring)
THROUGHPUT = 1200.0
#: seconds to evaluate one checkpoint (embed 15,000 images, linear probe, kNN, effective rank)
EVAL_SECONDS = 6.0


def model_name(method: str, backbone: str, policy: str, seed: int) -> str:
    """``simclr-convnet-s0``; non-default policies are named (``simclr-convnet-weak-s0``)."""
    if method in ("random", "supervised"):
        return f"{method}-{backbone}" + (f"-s{seed}" if seed else "")
    return f"{method}-{backbone}" + (f"-{policy}" if policy != "strong" else "") + f"-s{seed}"


def checkpoint_name(run_id: str, fraction: float) -> str:
    """The full budget keeps the run's name; earlier checkpoints add ``-b025`` (per mille: ``-b050``...)."""
    return run_id if fraction == 1.0 else f"{run_id}-b{round(fraction * 100):03d}"


def run_seed(run_id: str) -> int:
    """Seed of a run's subset, order, augmentations and heads: the first 31 bits of SHA-256(run id)."""
    return int.from_bytes(hashlib.sha256(run_id.encode()).digest()[:4], "big") >> 1


def learning_rate(batch_size: int) -> float:
    """The stated rule: the first zoo's 2e-3 at batch 32, scaled by sqrt(batch / 32)."""
    return 2e-3 * math.sqrt(batch_size / 32)


class PlannedCheckpoint(NamedTuple):
    """One budget checkpoint of a run: its model name, budget fraction, step and images seen."""

    name: str
    fraction: float
    step: int
    images_seen: int


class PlannedRun(NamedTuple):
    """A training run of the zoo: its id, configuration and checkpoints (empty for ``random``)."""

    run_id: str
    config: TrainConfig
    checkpoints: tuple[PlannedCheckpoint, ...]

    @property
    def cost_units(self) -> float:
        """Images x method cost x backbone cost, in SimCLR/ConvNet images."""
        config = self.config
        return (config.images or 0) * METHOD_COST[config.method] * BACKBONE_COST[config.backbone]


def plan_run(
    method: str, backbone: str, seed: int, *, policy: str = POLICY, budget: int, fractions: tuple[float, ...],
    batch_size: int = BATCH_SIZE, n_train: int = N_TRAIN,
) -> PlannedRun:
    """Plan one run; unknown names and budgets that do not fit the run raise ``ValueError``.

    ``fractions`` must increase strictly, end at 1, and each ``fraction * budget`` must be a whole
    number of batches.
    """
    get_method(method)
    get_policy(policy)
    if backbone not in BACKBONES:
        raise ValueError(f"Unknown backbone {backbone!r}; choose one of {list(BACKBONES)}.")
    run_id = model_name(method, backbone, policy, seed)
    if method == "random":
        config = TrainConfig("random", backbone, policy, seed=seed, n_train=n_train, batch_size=batch_size)
        return PlannedRun(run_id, config, (PlannedCheckpoint(run_id, 0.0, 0, 0),))
    if budget % batch_size:
        raise ValueError(f"The budget of {budget} images is not a whole number of batches of {batch_size}.")
    steps = budget // batch_size
    fractions = tuple(float(f) for f in fractions)
    planned = [f * steps for f in fractions]
    if not fractions or fractions[-1] != 1.0 or any(abs(s - round(s)) > 1e-9 for s in planned):
        raise ValueError(
            f"Budget fractions {list(fractions)} do not fit a run of {steps} steps ({budget} images, batch "
            f"{batch_size}): they must end at 1 and each must be a whole number of steps; use a budget "
            f"that is a multiple of {batch_size} x the fractions' common denominator."
        )
    check_checkpoint_steps([round(s) for s in planned], steps)
    config = TrainConfig(
        method, backbone, policy, seed=seed, n_train=n_train, batch_size=batch_size, lr=learning_rate(batch_size),
        images=budget, data_seed=run_seed(run_id), mixed_precision=False, channels_last=True, fused_optimizer=True,
    )
    checkpoints = tuple(
        PlannedCheckpoint(checkpoint_name(run_id, f), f, round(s), round(s) * batch_size) for f, s in zip(fractions, planned)
    )
    return PlannedRun(run_id, config, checkpoints)


def build_plan(
    methods: tuple[str, ...] = SSL_METHODS, budgets: dict[str, int] | None = None,
    seeds: dict[str, tuple[int, ...]] | None = None, fractions: dict[str, tuple[float, ...]] | None = None,
) -> list[PlannedRun]:
    """Every run of the zoo, references of a seed before its SSL runs (the gains need them)."""
    budgets, seeds, fractions = budgets or BUDGET_IMAGES, seeds or SEEDS, fractions or BUDGET_FRACTIONS
    unknown = sorted((set(budgets) | set(seeds) | set(fractions)) - set(BACKBONES))
    if unknown:
        raise ValueError(f"Unknown backbone(s) {unknown}; choose from {list(BACKBONES)}.")
    plan = []
    for backbone in (MAIN_BACKBONE, SECOND_BACKBONE):
        for seed in seeds[backbone]:
            for method in ("random", "supervised", *methods):
                plan.append(plan_run(method, backbone, seed, budget=budgets[backbone], fractions=fractions[backbone]))
    return plan


def estimate_seconds(plan: list[PlannedRun], throughput: float = THROUGHPUT, eval_seconds: float = EVAL_SECONDS) -> float:
    """Estimated training plus evaluation time of ``plan`` on the reference machine."""
    train = sum(run.cost_units for run in plan) / throughput
    return train + eval_seconds * sum(len(run.checkpoints) for run in plan)


def probe_split(n_probe_train: int, n_probe_test: int, seed: int = 0):
    """Probe data: fixed random subsets of the train split and of the test split."""
    train_images, train_labels = load_fashion_mnist("train")
    test_images, test_labels = load_fashion_mnist("test")
    rng = np.random.default_rng(seed)
    train_subset = rng.permutation(len(train_images))[:n_probe_train]
    test_subset = rng.permutation(len(test_images))[:n_probe_test]
    as_tensor = lambda array: torch.from_numpy(np.ascontiguousarray(array))[:, None]  # noqa: E731
    return (
        as_tensor(train_images[train_subset]), train_labels[train_subset],
        as_tensor(test_images[test_subset]), test_labels[test_subset],
    )



def evaluate(backbone: torch.nn.Module, probe_data, device: str) -> dict:
    """Linear-probe and kNN accuracy on Fashion-MNIST plus the effective rank of test features."""
    train_x, train_y, test_x, test_y = probe_data
    model = LoadedModel(backbone=backbone.eval().to(device), preprocess=preprocess_uint8)
    train_features = model.features(train_x, device=device)
    test_features = model.features(test_x, device=device)
    # C chosen on a stratified 20% of the probe's train images, then refit on all of them
    probe = linear_probe(*validation_split(train_features, train_y, 0.2, seed=0), (test_features, test_y))
    return {
        "probe_accuracy": round(probe.accuracy, 4),
        "probe_best_c": probe.best_c,
        "knn_accuracy": round(knn_accuracy(train_features, train_y, test_features, test_y, k=20), 4),
        "effective_rank": round(effective_rank(test_features), 2),
        "feature_dim": int(test_features.shape[1]),
    }


def finished_checkpoints(run: PlannedRun, entries: dict[str, dict], directory: Path) -> set[str]:
    """Names of ``run``'s checkpoints already in the manifest with the planned configuration.

    Raises
    ------
    CheckpointError
        If an entry's file is missing.
    ChecksumError
        If an entry's file has another SHA-256 than the one recorded.
    """
    done = set()
    for checkpoint in run.checkpoints:
        entry = entries.get(checkpoint.name)
        if entry is None or entry.get("config") != run.config.to_dict():
            continue  # never trained, or trained under another plan: (re)train it
        path = directory / entry["file"]
        fix = f"restore it from git, or rerun with --retrain {run.run_id} to train the run again"
        if not path.is_file():
            raise CheckpointError(f"Checkpoint {path} of run {run.run_id} is in the manifest but missing; {fix}.")
        actual = file_sha256(path)
        if actual != entry["sha256"]:
            raise ChecksumError(
                f"Checkpoint {path} of run {run.run_id} has SHA-256 {actual}, the manifest records {entry['sha256']}; {fix}."
            )
        done.add(checkpoint.name)
    return done


def manifest_entry(run: PlannedRun, checkpoint: PlannedCheckpoint, backbone, scores: dict, directory: Path,
                   sha256: str, seconds: float, step_losses: list[float], threads: int) -> dict:
    """The manifest record of one checkpoint (training losses only on the full-budget one)."""
    config = run.config
    trained = config.method != "random"
    full = checkpoint.fraction == 1.0
    file_name = f"{checkpoint.name}.safetensors"
    return {
        "name": checkpoint.name,
        "run_id": run.run_id,
        "method": config.method,
        "paradigm": METHODS[config.method].paradigm,
        "backbone": config.backbone,
        "policy": config.policy if trained else None,
        "seed": config.seed,
        "run_seed": config.run_seed if trained else None,
        "budget_fraction": checkpoint.fraction,
        "images_seen": checkpoint.images_seen,
        "step": checkpoint.step,
        "epochs": round(checkpoint.images_seen / config.n_train, 3) if trained else 0,
        "n_train": config.n_train if trained else 0,
        "train_seconds": round(seconds, 1),
        "torch_threads": threads,
        "final_loss": round(float(np.mean(step_losses[-25:])), 4) if step_losses else None,
        **scores,
        "n_parameters": count_parameters(backbone),
        "in_channels": 1,
        "file": file_name,
        "size_bytes": (directory / file_name).stat().st_size,
        "sha256": sha256,
        "config": config.to_dict(),
        "step_losses": [round(v, 5) for v in step_losses] if full else [],
    }


def record(entry: dict, directory: Path, order: list[str]) -> None:
    """Add ``entry`` to the manifest (atomically), keep plan order, refresh every probe gain.

    A model's gain is measured against the random initialisation of the same backbone and seed.
    """
    manifest = read_manifest(directory, missing_ok=True)
    entries = {e["name"]: e for e in manifest.get("models", [])}
    entries[entry["name"]] = entry
    for item in entries.values():
        reference = entries.get(model_name("random", item["backbone"], POLICY, item["seed"]))
        gain = None if reference is None else item["probe_accuracy"] - reference["probe_accuracy"]
        item["probe_gain_vs_random"] = None if gain is None else round(gain, 4)
    rank = {name: i for i, name in enumerate(order)}
    manifest["models"] = sorted(entries.values(), key=lambda e: rank.get(e["name"], len(rank)))
    write_manifest(manifest, directory)


def train_run(run: PlannedRun, data: tuple, probe_data, directory: Path, state_dir: Path, args, order: list[str]) -> None:
    """Train (or resume) one run, saving, evaluating and recording each unfinished checkpoint."""
    images, labels = data
    entries = {e["name"]: e for e in read_manifest(directory, missing_ok=True)["models"]}
    done = set() if run.run_id in (args.retrain or []) else finished_checkpoints(run, entries, directory)
    todo = [c for c in run.checkpoints if c.name not in done]
    if not todo:
        return
    state_path = state_dir / f"{run.run_id}.npz"
    resume = None
    if done and state_path.is_file():
        state = load_training_state(state_path)
        last_done = max(c.step for c in run.checkpoints if c.name in done)
        if state.fingerprint == run.config.fingerprint() and state.step == last_done:
            resume = state
            todo = [c for c in run.checkpoints if c.step > state.step]
    by_step = {c.step: c for c in todo}
    started = time.perf_counter()
    # a resumed run's time so far, as recorded with its last finished checkpoint
    previous = max((entries[c.name]["train_seconds"] for c in run.checkpoints if c.name in done), default=0.0) if resume else 0.0

    def save(checkpoint: PlannedCheckpoint, backbone, step_losses: list[float]) -> None:
        sha256 = save_checkpoint(backbone, directory / f"{checkpoint.name}.safetensors")
        scores = evaluate(backbone, probe_data, args.device)
        entry = manifest_entry(run, checkpoint, backbone, scores, directory, sha256,
                               previous + time.perf_counter() - started, step_losses, args.threads)
        record(entry, directory, order)
        print(f"{checkpoint.name}: {checkpoint.images_seen} images, probe {scores['probe_accuracy']:.4f}, "
              f"kNN {scores['knn_accuracy']:.4f}, {time.perf_counter() - started:.0f}s", flush=True)

    def on_checkpoint(point: Checkpoint) -> None:
        save(by_step[point.step], point.backbone, point.state.step_losses)
        if point.step < run.config.total_steps:
            save_training_state(point.state, state_path)

    if run.config.method == "random":
        save(run.checkpoints[0], train_model(run.config, images, labels).backbone, [])
        return
    train_model(run.config, images, labels, device=args.device, progress=not args.quiet,
                checkpoint_steps=sorted(by_step), on_checkpoint=on_checkpoint, resume=resume)
    state_path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="zoo directory (default: data/zoo or $SSLGEOM_ZOO_DIR)")
    parser.add_argument("--state-dir", type=Path, default=None, help="training states for resuming (default: cache)")
    parser.add_argument("--only", nargs="*", default=None, help="train only these runs (run ids)")
    parser.add_argument("--retrain", nargs="*", default=None, help="train these runs again even if finished")
    parser.add_argument("--methods", nargs="+", default=list(SSL_METHODS), help="SSL methods of the zoo")
    parser.add_argument("--budget", type=int, default=BUDGET_IMAGES[MAIN_BACKBONE], help="ConvNet images per run")
    parser.add_argument("--resnet-budget", type=int, default=BUDGET_IMAGES[SECOND_BACKBONE], help="ResNet images per run")
    parser.add_argument("--fractions", nargs="+", type=float, default=list(BUDGET_FRACTIONS[MAIN_BACKBONE]),
                        help="ConvNet budget checkpoints as fractions of the budget")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS[MAIN_BACKBONE]), help="ConvNet seeds")
    parser.add_argument("--probe-train", type=int, default=10000, help="train-split images for the probes")
    parser.add_argument("--probe-test", type=int, default=5000, help="test-split images for the probes")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--throughput", type=float, default=THROUGHPUT, help="SimCLR/ConvNet images/s, for the estimate")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quiet", action="store_true", help="no per-step progress bar")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and its estimated time, train nothing")
    args = parser.parse_args(argv)

    try:
        plan = build_plan(
            tuple(args.methods),
            budgets={MAIN_BACKBONE: args.budget, SECOND_BACKBONE: args.resnet_budget},
            seeds={MAIN_BACKBONE: tuple(args.seeds), SECOND_BACKBONE: SEEDS[SECOND_BACKBONE]},
            fractions={MAIN_BACKBONE: tuple(args.fractions), SECOND_BACKBONE: BUDGET_FRACTIONS[SECOND_BACKBONE]},
        )
    except ValueError as error:
        parser.error(str(error))
    known = [run.run_id for run in plan]
    unknown = sorted((set(args.only or []) | set(args.retrain or [])) - set(known))
    if unknown:
        parser.error(f"unknown run ids {unknown}; the plan has: {', '.join(known)}")
    if args.only:
        plan = [run for run in plan if run.run_id in args.only]
    if args.dry_run:
        print_plan(plan, args.throughput)
        return 0

    torch.set_num_threads(args.threads)
    directory = args.out or zoo_dir()
    directory.mkdir(parents=True, exist_ok=True)
    state_dir = args.state_dir or cache_dir() / "zoo-train-state"
    train_images, train_labels = load_fashion_mnist("train")
    data = (torch.from_numpy(train_images)[:, None], torch.from_numpy(train_labels))
    probe_data = probe_split(args.probe_train, args.probe_test)
    order = [c.name for run in build_plan(tuple(args.methods)) for c in run.checkpoints]
    start = time.perf_counter()
    for index, run in enumerate(plan, 1):
        remaining = estimate_seconds(plan[index - 1 :], args.throughput)
        print(f"[{index}/{len(plan)}] {run.run_id} ({time.perf_counter() - start:.0f}s elapsed, at most "
              f"{remaining / 60:.0f} min left at {args.throughput:.0f} images/s)", flush=True)
        train_run(run, data, probe_data, directory, state_dir, args, order)
    models = read_manifest(directory)["models"]
    failing = [e["name"] for e in models if e["paradigm"] not in ("random", "supervised")
               and e["budget_fraction"] == 1.0 and (e["probe_gain_vs_random"] or 0) < 0.02]
    total_mb = sum(e["size_bytes"] for e in models) / 2**20
    print(f"zoo: {len(models)} checkpoints, {total_mb:.1f} MB; full-budget models below random+2 points: {failing or 'none'}")
    return 0


def print_plan(plan: list[PlannedRun], throughput: float) -> None:
    """One line per run, then the totals and the estimated time."""
    for run in plan:
        budgets = ", ".join(f"{c.images_seen}" for c in run.checkpoints)
        print(f"{run.run_id:26s} seed {run.config.seed}  run seed {run.config.data_seed or '-'!s:>10s}  "
              f"checkpoints at {budgets} images  cost {run.cost_units / throughput:6.0f}s")
    checkpoints = sum(len(run.checkpoints) for run in plan)
    seconds = estimate_seconds(plan, throughput)
    print(f"{len(plan)} runs, {checkpoints} checkpoints; estimated {seconds:.0f}s = {seconds / 3600:.2f} h at "
          f"{throughput:.0f} SimCLR/ConvNet images/s plus {EVAL_SECONDS:.0f}s per checkpoint evaluation")


if __name__ == "__main__":
    raise SystemExit(main())
