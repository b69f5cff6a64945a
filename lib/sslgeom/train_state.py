"""Training state for exact resumption, stored without pickle.

A :class:`TrainingState` holds everything a run needs to continue as if it had never stopped: every
parameter and buffer of the method (backbone, heads, momentum teachers, memory banks, DINO's centre),
the optimiser's moments and hyper-parameters, the two random generators (data order, augmentations),
the current epoch's batch order and the losses so far. :func:`save_training_state` writes it as a
NumPy ``.npz`` archive of plain arrays plus one JSON string, read back with ``allow_pickle=False``,
so loading a state file never executes code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sslgeom.cache import atomic_write

__all__ = ["TrainingState", "capture_state", "restore_state", "save_training_state", "load_training_state"]

FORMAT_VERSION = 1


@dataclass
class TrainingState:
    """A run paused after ``step`` optimiser steps.

    Attributes
    ----------
    step : int
        Optimiser steps done.
    tensors : dict[str, torch.Tensor]
        ``method/<name>`` for every parameter and buffer of the method (non-persistent buffers such as
        MoCo's memory bank included), ``optimizer/<index>/<key>`` for the optimiser's per-parameter
        state, ``rng/data`` and ``rng/augment`` for the generators' states and ``order`` for the
        current epoch's batch order ``(n_train,)``.
    optimizer_groups : list[dict]
        The optimiser's ``param_groups`` (hyper-parameters and parameter indices).
    step_losses : list[float]
        Loss of every step so far.
    fingerprint : str
        Identifies the run configuration; a state never resumes a different run.
    """

    step: int
    tensors: dict[str, torch.Tensor]
    optimizer_groups: list[dict[str, Any]]
    step_losses: list[float] = field(default_factory=list)
    fingerprint: str = ""


def _method_tensors(method: nn.Module) -> dict[str, torch.Tensor]:
    named = dict(method.named_parameters())
    named.update(dict(method.named_buffers()))  # includes non-persistent buffers (memory banks)
    return named


def capture_state(
    method: nn.Module,
    optimizer: torch.optim.Optimizer,
    generators: dict[str, torch.Generator],
    order: torch.Tensor,
    step: int,
    step_losses: list[float],
    fingerprint: str,
) -> TrainingState:
    """Copy the current training state (the copy does not change when training goes on)."""
    tensors = {f"method/{name}": value.detach().clone() for name, value in _method_tensors(method).items()}
    saved = optimizer.state_dict()
    for index, state in saved["state"].items():
        for key, value in state.items():
            tensors[f"optimizer/{index}/{key}"] = torch.as_tensor(value).detach().clone()
    for name, generator in generators.items():
        tensors[f"rng/{name}"] = generator.get_state()
    tensors["order"] = order.clone()
    groups = [dict(group) for group in saved["param_groups"]]
    return TrainingState(step, tensors, groups, list(step_losses), fingerprint)


def restore_state(
    state: TrainingState,
    method: nn.Module,
    optimizer: torch.optim.Optimizer,
    generators: dict[str, torch.Generator],
) -> torch.Tensor:
    """Load ``state`` into a freshly built method, optimiser and generators; return the epoch order.

    Raises
    ------
    ValueError
        If the state does not have the method's tensors (a state from another method or backbone).
    """
    targets = _method_tensors(method)
    stored = {key[len("method/") :]: value for key, value in state.tensors.items() if key.startswith("method/")}
    if set(stored) != set(targets):
        missing, unexpected = sorted(set(targets) - set(stored)), sorted(set(stored) - set(targets))
        raise ValueError(
            f"Training state does not match the method: missing {missing[:5]}, unexpected {unexpected[:5]}; "
            "delete the state file to restart the run."
        )
    with torch.no_grad():
        for name, target in targets.items():
            target.copy_(stored[name])
    per_parameter: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state.tensors.items():
        if key.startswith("optimizer/"):
            _, index, name = key.split("/", 2)
            per_parameter.setdefault(int(index), {})[name] = value.clone()
    groups = [{**group, "betas": tuple(group["betas"])} if "betas" in group else group for group in state.optimizer_groups]
    optimizer.load_state_dict({"state": per_parameter, "param_groups": groups})
    # give every moment its parameter's memory layout: fused kernels walk both in memory order, so a
    # contiguous moment next to a channels-last weight would pair the wrong elements
    for parameter, state_of_parameter in optimizer.state.items():
        for key, value in state_of_parameter.items():
            if torch.is_tensor(value) and value.shape == parameter.shape:
                state_of_parameter[key] = torch.empty_like(parameter, dtype=value.dtype).copy_(value)
    for name, generator in generators.items():
        generator.set_state(state.tensors[f"rng/{name}"])
    return state.tensors["order"].clone()


def save_training_state(state: TrainingState, path: str | Path) -> Path:
    """Write ``state`` atomically as an ``.npz`` of plain arrays plus a JSON header (no pickle)."""
    header = {
        "format_version": FORMAT_VERSION,
        "step": state.step,
        "optimizer_groups": state.optimizer_groups,
        "step_losses": state.step_losses,
        "fingerprint": state.fingerprint,
        "dtypes": {key: str(value.dtype).removeprefix("torch.") for key, value in state.tensors.items()},
    }
    arrays = {key: value.contiguous().cpu().numpy() for key, value in state.tensors.items()}
    path = Path(path)
    with atomic_write(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, __header__=np.array(json.dumps(header)), **arrays)
    return path


def load_training_state(path: str | Path) -> TrainingState:
    """Read a state written by :func:`save_training_state` (never unpickles).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the file is not a training-state archive of this format.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Training state {path} does not exist; the run restarts from its first step.")
    try:
        with np.load(path, allow_pickle=False) as archive:
            header = json.loads(str(archive["__header__"]))
            tensors = {key: torch.from_numpy(archive[key].copy()) for key in archive.files if key != "__header__"}
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(f"{path} is not a readable training state ({error}); delete it to restart the run.") from error
    if header.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path} has format {header.get('format_version')}, expected {FORMAT_VERSION}; delete it.")
    return TrainingState(
        step=int(header["step"]),
        tensors=tensors,
        optimizer_groups=header["optimizer_groups"],
        step_losses=[float(v) for v in header["step_losses"]],
        fingerprint=header["fingerprint"],
    )
