"""One training loop for every SSL method, with budget checkpoints and exact resumption.

A run is fully described by a :class:`TrainConfig` (method, backbone, policy, seeds, budget,
optimiser); :func:`train_model` trains it, calling back at checkpoint steps with a copy of the
backbone and the complete training state (:mod:`sslgeom.train_state`), and can resume from such a
state. The methods themselves live in :mod:`sslgeom.ssl_methods`.

Speed (measured in ``benchmarks/train.py``): views are computed per sample on the whole batch,
activations are kept in channels-last memory format, the optimiser is the fused kernel, and losses
are read back to Python once every 25 steps rather than after each. bfloat16 autocast
(``mixed_precision``) pays off only on CPUs with native bf16 (AVX512-BF16/AMX); on AVX2-only CPUs it
is emulated and 8-30x slower than float32, so the zoo trains in float32.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from lightly.utils.scheduler import cosine_schedule

from sslgeom.models import build_backbone, normalize_images
from sslgeom.ssl_augment import AugmentationPolicy, get_policy, random_views
from sslgeom.ssl_methods import MethodSpec, SSLMethod, get_method
from sslgeom.train_state import TrainingState, capture_state, restore_state

__all__ = ["TrainConfig", "TrainResult", "Checkpoint", "Run", "prepare_run", "check_checkpoint_steps", "train_model"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained model (recorded in the manifest).

    Attributes
    ----------
    method, backbone, policy : str
        Names in :data:`METHODS`, :data:`sslgeom.models.BACKBONES`, :data:`sslgeom.ssl_augment.POLICIES`.
    seed : int
        Seeds the initial weights of the backbone; with ``data_seed`` unset also the training subset,
        batch order, augmentations and head initialisation.
    epochs : int
        Passes over the training subset (used when ``images`` is None).
    n_train : int
        Size of the random training subset of the Fashion-MNIST train split.
    batch_size : int
    lr, weight_decay : float
        Optimiser settings; the learning rate follows a linear warm-up then cosine decay.
    warmup_fraction : float
        Fraction of steps used for the warm-up.
    mixed_precision : bool
        Run the backbone under bfloat16 autocast (faster only on CPUs with native bf16; about 8-30x
        slower on AVX2-only CPUs); projection heads, losses and the stored weights stay float32.
    optimizer : str
        ``"adamw"`` or ``"sgd"`` (momentum 0.9).
    options : dict
        Keyword arguments for the method's constructor (e.g. ``{"temperature": 0.1}``).
    images : int or None
        Training budget in images seen (each with its two views); a multiple of ``batch_size``.
        Overrides ``epochs``; the subset is revisited in a fresh order as often as needed.
    data_seed : int or None
        Seeds the training subset, batch order, augmentation stream and head initialisation
        separately from the initial weights, so that runs sharing ``seed`` share their starting
        point and nothing else. None: ``seed`` seeds everything (the first zoo's runs).
    channels_last : bool
        Keep activations in channels-last memory format (faster convolutions on CPU, same maths).
    fused_optimizer : bool
        Use the fused AdamW/SGD kernels (one call per step instead of a loop over parameters).
    """

    method: str
    backbone: str
    policy: str = "strong"
    seed: int = 0
    epochs: int = 3
    n_train: int = 16384
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.05
    mixed_precision: bool = True
    optimizer: str = "adamw"
    options: dict = field(default_factory=dict)
    images: int | None = None
    data_seed: int | None = None
    channels_last: bool = True
    fused_optimizer: bool = True

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def steps_per_epoch(self) -> int:
        """Full batches in one pass over the subset (the last partial batch is dropped: BN, SwAV)."""
        return self.n_train // self.batch_size

    @property
    def total_steps(self) -> int:
        """Optimiser steps of the whole run."""
        if self.images is not None:
            return self.images // self.batch_size
        return self.steps_per_epoch * self.epochs

    @property
    def run_seed(self) -> int:
        """Seed of everything random in the run except the initial backbone weights."""
        return self.seed if self.data_seed is None else self.data_seed

    def fingerprint(self) -> str:
        """Short hash of the configuration; training states record it so they resume only their run."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class TrainResult:
    """Output of :func:`train_model`.

    Attributes
    ----------
    backbone : nn.Module
        Trained backbone in eval mode (heads dropped), contiguous memory format.
    epoch_losses : list[float]
        Mean training loss per epoch (the last one may be partial when ``images`` sets the budget).
    step_losses : list[float]
        Training loss of every step (for training curves).
    seconds : float
        Wall-clock training time of this call (a resumed run counts only the steps it trained).
    """

    backbone: nn.Module
    epoch_losses: list[float] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Checkpoint:
    """What :func:`train_model` hands to ``on_checkpoint`` after a checkpoint step.

    Attributes
    ----------
    step : int
        Optimiser steps done.
    images_seen : int
        ``step * batch_size``.
    backbone : nn.Module
        A copy of the backbone in eval mode and contiguous format (training goes on with the original).
    state : TrainingState
        Everything needed to resume the run from here (see :mod:`sslgeom.train_state`).
    seconds : float
        Training time of this call so far.
    """

    step: int
    images_seen: int
    backbone: nn.Module
    state: TrainingState
    seconds: float


def _learning_rate(step: int, total: int, base_lr: float, warmup_fraction: float) -> float:
    warmup = max(1, int(total * warmup_fraction))
    if step < warmup:
        return base_lr * (step + 1) / warmup
    return cosine_schedule(step - warmup, max(1, total - warmup), base_lr, 0.0)


def _check_run(config: TrainConfig, images: torch.Tensor, labels: torch.Tensor | None) -> MethodSpec:
    spec = get_method(config.method)
    get_policy(config.policy)
    if images.ndim != 4 or images.dtype != torch.uint8:
        raise ValueError(
            f"images must be a uint8 tensor (n, channels, height, width), got {images.dtype} "
            f"{tuple(images.shape)}; use torch.from_numpy(array)[:, None] for (n, H, W) arrays."
        )
    if spec.build is not None and getattr(spec.build, "uses_labels", False) and labels is None:
        raise ValueError(f"{config.method} needs labels; pass labels as an int64 tensor of shape (n_images,).")
    if config.optimizer not in ("adamw", "sgd"):
        raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {config.optimizer!r}.")
    if config.epochs < 1 or config.batch_size < 2:
        raise ValueError(f"Need epochs >= 1 and batch_size >= 2, got {config.epochs} and {config.batch_size}.")
    if config.n_train < config.batch_size:
        raise ValueError(f"n_train ({config.n_train}) must be at least batch_size ({config.batch_size}).")
    if config.n_train > len(images):
        raise ValueError(f"n_train ({config.n_train}) exceeds the {len(images)} images given.")
    if config.images is not None and (config.images < config.batch_size or config.images % config.batch_size):
        raise ValueError(
            f"images (the budget, {config.images}) must be a positive multiple of batch_size "
            f"({config.batch_size}); round it to {max(1, round(config.images / config.batch_size)) * config.batch_size}."
        )
    return spec


def check_checkpoint_steps(steps: Sequence[int], total_steps: int) -> list[int]:
    """Validate checkpoint steps: integers, strictly increasing, within ``1 .. total_steps``.

    Raises
    ------
    ValueError
        With the offending steps and the run's length.
    """
    steps = [int(step) for step in steps]
    if any(b <= a for a, b in zip(steps, steps[1:])) or any(not 1 <= step <= total_steps for step in steps):
        raise ValueError(
            f"checkpoint steps {steps} do not fit a run of {total_steps} steps: they must increase strictly "
            f"and lie in 1..{total_steps}."
        )
    return steps


def _build_optimizer(config: TrainConfig, method: SSLMethod) -> torch.optim.Optimizer:
    parameters = [p for p in method.parameters() if p.requires_grad]
    fused = {"fused": True} if config.fused_optimizer else {}
    if config.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay, **fused)
    return torch.optim.SGD(parameters, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay, **fused)


def _contiguous_copy(backbone: nn.Module) -> nn.Module:
    """An eval-mode copy in the default memory format (what checkpoints and evaluation expect)."""
    return copy.deepcopy(backbone).to(memory_format=torch.contiguous_format).eval()


def _check_finite(losses: list[torch.Tensor], first_step: int, config: TrainConfig) -> list[float]:
    # one conversion for a block of steps instead of a Python-level check after every step
    values = torch.cat([loss.reshape(1) for loss in losses]).tolist()
    for offset, value in enumerate(values):
        if not math.isfinite(value):
            raise FloatingPointError(
                f"{config.method}/{config.backbone} loss became {value} at step {first_step + offset}; "
                "lower the learning rate or change the seed."
            )
    return values


@dataclass
class Run:
    """A run ready to train: its method, optimiser, data subset and random generators.

    Built by :func:`prepare_run`; :meth:`inputs` and :meth:`update` are one training step, split so
    that ``benchmarks/train.py`` can time the views apart from the update.
    """

    config: TrainConfig
    method: SSLMethod
    optimizer: torch.optim.Optimizer
    images: torch.Tensor
    labels: torch.Tensor | None
    generators: dict[str, torch.Generator]
    policy: AugmentationPolicy
    memory_format: torch.memory_format
    order: torch.Tensor | None = None

    def _view(self, batch: torch.Tensor) -> torch.Tensor:
        views = random_views(batch, self.policy, self.generators["augment"])
        return normalize_images(views).contiguous(memory_format=self.memory_format)

    def inputs(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The two inputs of ``step``: two independent views of the batch, or one view and the labels.

        A new epoch (a fresh order of the subset) starts whenever ``step`` is a multiple of
        ``config.steps_per_epoch``; the views are ``(batch, C, H, W)`` standardised floats.
        """
        config = self.config
        position = step % config.steps_per_epoch
        if position == 0:
            self.order = torch.randperm(config.n_train, generator=self.generators["data"])
        index = self.order[position * config.batch_size : (position + 1) * config.batch_size]
        device = next(self.method.parameters()).device
        batch = self.images[index].to(device)
        if self.method.uses_labels:
            return self._view(batch), self.labels[index].to(device)
        return self._view(batch), self._view(batch)

    def update(self, step: int, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """One optimiser step at ``step`` (learning-rate schedule, loss, backward, step, bookkeeping).

        Returns the detached scalar loss (not read back to Python here).
        """
        config = self.config
        for group in self.optimizer.param_groups:
            group["lr"] = _learning_rate(step, config.total_steps, config.lr, config.warmup_fraction)
        loss = self.method.loss(first, second)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.method.after_step((step + 1) / config.total_steps)
        return loss.detach()


def prepare_run(
    config: TrainConfig, images: torch.Tensor, labels: torch.Tensor | None = None, *, device: str | torch.device = "cpu"
) -> Run:
    """Build the method (backbone from ``config.seed``, heads from ``config.run_seed``), the optimiser,
    the training subset and the generators of a run, exactly as :func:`train_model` does.

    ``images``/``labels`` are as in :func:`train_model`; ``random`` (no training) is refused.
    """
    spec = _check_run(config, images, labels)
    if spec.build is None:
        raise ValueError("The random reference has no training run; use build_backbone(name, seed=seed).")
    backbone = build_backbone(config.backbone, in_channels=images.shape[1], seed=config.seed)
    generator = torch.Generator().manual_seed(config.run_seed)
    with torch.random.fork_rng(devices=[]):
        # heads are initialised from the global RNG inside lightly: seed it, then restore
        torch.manual_seed(config.run_seed + 1)
        method = spec.build(backbone, **config.options).to(device)
    method.mixed_precision = config.mixed_precision
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    method.to(memory_format=memory_format)
    subset = torch.randperm(len(images), generator=generator)[: config.n_train]
    return Run(
        config=config,
        method=method,
        optimizer=_build_optimizer(config, method),
        images=images[subset],
        labels=labels[subset] if labels is not None else None,
        generators={"data": generator, "augment": torch.Generator(device=device).manual_seed(config.run_seed + 2)},
        policy=get_policy(config.policy),
        memory_format=memory_format,
    )


def train_model(
    config: TrainConfig,
    images: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    device: str | torch.device = "cpu",
    progress: bool = True,
    checkpoint_steps: Sequence[int] = (),
    on_checkpoint: Callable[[Checkpoint], None] | None = None,
    resume: TrainingState | None = None,
) -> TrainResult:
    """Train one backbone with one method, optionally pausing at checkpoint steps or resuming.

    Parameters
    ----------
    config : TrainConfig
    images : torch.Tensor
        ``uint8`` ``(n_images, channels, height, width)``; a random subset of ``config.n_train``
        images (drawn with ``config.run_seed``) is used.
    labels : torch.Tensor or None
        ``int64`` ``(n_images,)``; required only by the supervised reference.
    device : str or torch.device
    progress : bool
        Show a tqdm bar over steps.
    checkpoint_steps : sequence of int
        Steps (``1 .. config.total_steps``, increasing) after which ``on_checkpoint`` is called.
    on_checkpoint : callable or None
        Receives a :class:`Checkpoint` (a copy of the backbone and the full training state).
    resume : TrainingState or None
        Continue a run of the same configuration from this state; the result equals an
        uninterrupted run's (same thread count).

    Returns
    -------
    TrainResult
        For ``random`` the untrained, seeded backbone with empty loss lists.
    """
    spec = _check_run(config, images, labels)
    total_steps = config.total_steps
    checkpoint_steps = check_checkpoint_steps(checkpoint_steps, total_steps)
    if spec.build is None:
        backbone = build_backbone(config.backbone, in_channels=images.shape[1], seed=config.seed)
        return TrainResult(backbone=backbone.eval().to(device))
    run = prepare_run(config, images, labels, device=device)
    step, step_losses = 0, []
    if resume is not None:
        if resume.fingerprint != config.fingerprint():
            raise ValueError("The training state belongs to another configuration; delete it to restart the run.")
        run.order = restore_state(resume, run.method, run.optimizer, run.generators)
        step, step_losses = resume.step, list(resume.step_losses)
        run.method.set_progress(step / total_steps)  # after_step would move momentum teachers again
    start = time.perf_counter()
    run.method.train()
    bar = tqdm(total=total_steps, initial=step, desc=f"{config.method}/{config.backbone}", disable=not progress, leave=False)
    pending: list[torch.Tensor] = []
    while step < total_steps:
        pending.append(run.update(step, *run.inputs(step)))
        step += 1
        if len(pending) == 25 or step == total_steps or step in checkpoint_steps:
            step_losses += _check_finite(pending, step - len(pending), config)
            pending = []
            bar.update(step - bar.n)
            bar.set_postfix(loss=f"{step_losses[-1]:.3f}")
        if step in checkpoint_steps and on_checkpoint is not None:
            state = capture_state(run.method, run.optimizer, run.generators, run.order, step, step_losses, config.fingerprint())
            seconds = time.perf_counter() - start
            on_checkpoint(Checkpoint(step, step * config.batch_size, _contiguous_copy(run.method.backbone), state, seconds))
    bar.close()
    epochs = range(0, len(step_losses), config.steps_per_epoch)
    return TrainResult(
        backbone=_contiguous_copy(run.method.backbone),
        epoch_losses=[float(np.mean(step_losses[i : i + config.steps_per_epoch])) for i in epochs],
        step_losses=step_losses,
        seconds=time.perf_counter() - start,
    )
