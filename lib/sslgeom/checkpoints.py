"""Checkpoint files: reading, writing and verifying them, and the model they load into.

Both the default zoo (:mod:`sslgeom.zoo`) and the published registry (:mod:`sslgeom.published`)
read checkpoints through this module, so it imports neither of them: the zoo imports the
registry, the registry imports only this module, and there is no import circle.
"""

from __future__ import annotations

import argparse
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import safetensors.torch
import torch
from torch import nn

from sslgeom.cache import atomic_write, file_sha256

__all__ = [
    "CheckpointError",
    "ChecksumError",
    "LoadedModel",
    "SAFETENSORS_SUFFIX",
    "save_checkpoint",
    "read_checkpoint",
    "verify_sha256",
    "load_state_strict",
    "freeze",
]


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupt, or does not match its expected content."""


class ChecksumError(CheckpointError):
    """A checkpoint's SHA-256 differs from the one recorded for it."""


@dataclass
class LoadedModel:
    """A backbone ready for feature extraction.

    Attributes
    ----------
    backbone : nn.Module
        Eval mode; float ``(batch, C, H, W)`` -> ``(batch, dim)`` features before any projection head.
    preprocess : Callable[[torch.Tensor], torch.Tensor]
        ``uint8 (batch, C, H, W)`` -> the backbone's float input.
    info : dict
        Manifest or registry entry: name, method, paradigm, backbone, sha256, ...
    """

    backbone: nn.Module
    preprocess: Callable[[torch.Tensor], torch.Tensor]
    info: dict[str, Any] = field(default_factory=dict)

    @torch.no_grad()
    def features(self, images: torch.Tensor, batch_size: int = 1024, device: str | torch.device = "cpu") -> np.ndarray:
        """Features of ``uint8 (n, C, H, W)`` images as float32 ``(n, dim)``, in batches."""
        self.backbone.to(device)
        chunks = [
            self.backbone(self.preprocess(images[start : start + batch_size]).to(device)).float().cpu()
            for start in range(0, len(images), batch_size)
        ]
        return torch.cat(chunks).numpy()


#: file ending of the checkpoints this project writes (no pickle: a header of shapes plus raw tensors)
SAFETENSORS_SUFFIX = ".safetensors"
#: file endings read with ``torch.load(weights_only=True)``: the published releases, the first zoo
TORCH_SUFFIXES = (".pt", ".pth", ".tar")
#: the only non-tensor classes a torch checkpoint may contain: the PyContrast releases (InsDis, PIRL,
#: InfoMin) store their training options as an ``argparse.Namespace``, a plain attribute bag whose
#: rebuilding runs no code of the file's choosing. Anything else is refused by ``weights_only``.
SAFE_GLOBALS = (argparse.Namespace,)


def save_checkpoint(backbone: nn.Module, path: str | Path) -> str:
    """Save a backbone's ``state_dict`` in half precision as safetensors, atomically; return its SHA-256.

    The file holds no pickle, so reading it can never run code. Writing is deterministic: the same
    weights give the same bytes, hence the same SHA-256.

    Raises
    ------
    ValueError
        If ``path`` does not end in ``.safetensors``.
    """
    path = Path(path)
    if path.suffix != SAFETENSORS_SUFFIX:
        raise ValueError(f"Checkpoints are written as safetensors: name the file *{SAFETENSORS_SUFFIX}, got {path.name}.")
    state = {
        key: value.detach().to("cpu", torch.float16) if torch.is_floating_point(value) else value.detach().cpu()
        for key, value in backbone.state_dict().items()
    }
    # safetensors refuses tensors that share memory or are not contiguous; a state_dict's are not shared
    state = {key: value.contiguous() for key, value in state.items()}
    with atomic_write(path) as tmp:
        safetensors.torch.save_file(state, str(tmp))
    return file_sha256(path)


def verify_sha256(path: str | Path, expected: str, *, prefix: bool = False, fix: str = "") -> None:
    """Compare a file's SHA-256 with the expected one (or, with ``prefix``, its leading digits).

    Parameters
    ----------
    path : str or Path
    expected : str
        Hexadecimal digest (any case).
    prefix : bool
        ``expected`` holds only the leading digits of the hash (as in torchvision file names).
    fix : str
        How to get a good file, for the message (default: download it again or rerun ``make zoo``).

    Raises
    ------
    ChecksumError
        If the hash differs.
    """
    actual = file_sha256(path)
    expected = expected.lower()
    if actual.startswith(expected) if prefix else actual == expected:
        return
    raise ChecksumError(
        f"SHA-256 mismatch for {path}: expected {'a hash starting with ' if prefix else ''}{expected}, got {actual}. "
        f"The file is truncated, corrupt or a different release; {fix or 'download it again or rerun `make zoo`'}."
    )


_TORCH_LOAD_LOCK = threading.Lock()


def read_checkpoint(path: str | Path, expected_sha256: str | None = None) -> dict[str, Any]:
    """Read a checkpoint file without unpickling, verifying its SHA-256 first if given.

    ``.safetensors`` files are read with :func:`safetensors.torch.load_file`; ``.pt``, ``.pth`` and
    ``.tar`` files (the published releases) with ``torch.load(weights_only=True)``, which accepts only
    tensors, plain containers and the classes in :data:`SAFE_GLOBALS`, and refuses any other pickled
    object before building it.

    Raises
    ------
    FileNotFoundError
        If the file is absent.
    ChecksumError
        If the SHA-256 differs from ``expected_sha256``.
    CheckpointError
        If the file is truncated, corrupt, or of an unknown format.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Checkpoint {path} does not exist. For the default zoo run `make zoo` (or restore data/zoo "
            "from git); for published models put the file there."
        )
    if expected_sha256:
        verify_sha256(path, expected_sha256)
    suffix = path.suffix.lower()
    if suffix not in (SAFETENSORS_SUFFIX, *TORCH_SUFFIXES):
        raise CheckpointError(
            f"Unknown checkpoint format {path.name}: expected a file ending in {SAFETENSORS_SUFFIX} or one of "
            f"{', '.join(TORCH_SUFFIXES)}; convert it to a state_dict saved with safetensors."
        )
    try:
        if suffix == SAFETENSORS_SUFFIX:
            return safetensors.torch.load_file(str(path), device="cpu")
        # the allowlist is process-wide state that the context sets and restores: one reader at a time
        # (models are loaded in worker threads, sslgeom.threads)
        with _TORCH_LOAD_LOCK, torch.serialization.safe_globals(list(SAFE_GLOBALS)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # both libraries raise several types for truncated or corrupt files
        refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
        if refused:
            raise CheckpointError(
                f"Refused to read {path}: it pickles the object {refused.group(1)}, which could run code when "
                "rebuilt, so nothing was loaded. Convert the file to a plain state_dict of tensors (load it once "
                "in a trusted session and save model.state_dict() with safetensors)."
            ) from error
        raise CheckpointError(
            f"Could not read checkpoint {path} ({type(error).__name__}: {error}); the file is truncated or "
            "not a checkpoint of this format. Download it again or rerun `make zoo`."
        ) from error


def load_state_strict(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> nn.Module:
    """``load_state_dict(strict=True)`` with an error that lists missing and unexpected keys.

    Floating-point tensors are cast to the module's dtypes (checkpoints are half precision); a tensor
    whose kind differs (integer weights where the module has floats, or the reverse) is an error,
    never a silent cast that would truncate weights.
    """
    if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        what = "a bare tensor" if torch.is_tensor(state) else f"a {type(state).__name__}"
        if isinstance(state, dict):
            what = "a dict whose entries are not all named tensors"
        raise CheckpointError(f"{source} holds {what}, not a state_dict (a dict of named tensors); save "
                              "backbone.state_dict() instead.")
    expected = set(module.state_dict())
    given = set(state)
    missing, unexpected = sorted(expected - given), sorted(given - expected)
    if missing or unexpected:
        raise CheckpointError(
            f"Key layout of {source} does not match the model: {len(missing)} missing keys "
            f"{missing[:10]}{' ...' if len(missing) > 10 else ''}, {len(unexpected)} unexpected keys "
            f"{unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}. Check the prefix to strip and the "
            "head keys to drop for this checkpoint."
        )
    reference = module.state_dict()
    mismatched = [k for k in expected if tuple(state[k].shape) != tuple(reference[k].shape)]
    if mismatched:
        raise CheckpointError(
            f"Shapes in {source} do not match the model for {len(mismatched)} keys, e.g. {mismatched[0]}: "
            f"{tuple(state[mismatched[0]].shape)} vs {tuple(reference[mismatched[0]].shape)}; wrong architecture?"
        )
    kinds = [k for k in expected if state[k].is_floating_point() != reference[k].is_floating_point()]
    if kinds:
        first = kinds[0]
        raise CheckpointError(
            f"{source} stores {len(kinds)} tensors of another kind than the model, e.g. {first}: {state[first].dtype} "
            f"where the model has {reference[first].dtype}; casting would change the values. Save the weights in "
            "floating point (and counters as integers)."
        )
    # checkpoints may be half precision: cast to the module's dtypes before loading
    cast = {k: v.to(reference[k].dtype) for k, v in state.items()}
    module.load_state_dict(cast, strict=True)
    return module


def freeze(backbone: nn.Module, device: str | torch.device) -> nn.Module:
    """Put a loaded backbone in eval mode on ``device`` with gradients off (inference only)."""
    backbone.eval().to(device)
    for parameter in backbone.parameters():
        parameter.requires_grad_(False)
    return backbone
