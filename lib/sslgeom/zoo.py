"""One loading API for the default zoo (trained here) and published ResNet-50 checkpoints.

>>> from sslgeom import zoo
>>> zoo.names()[:2]                                  # doctest: +SKIP
['barlowtwins-convnet-s0', 'barlowtwins-convnet-weak-s0']
>>> model = zoo.load("simclr-convnet-s0")            # doctest: +SKIP
>>> features = model.backbone(model.preprocess(images_uint8))   # (batch, dim)

Default-zoo checkpoints are half-precision ``state_dict`` files of the backbone only, listed in
``data/zoo/manifest.json`` with their SHA-256, which is verified on every load. Names starting
with ``published/`` resolve through :mod:`sslgeom.published`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from sslgeom.cache import REPO_ROOT, atomic_write, file_sha256
from sslgeom.models import build_backbone, preprocess_uint8

#: Environment variable that points the default zoo somewhere else (tests, user zoos).
ZOO_ENV = "SSLGEOM_ZOO_DIR"
MANIFEST_NAME = "manifest.json"
PUBLISHED_PREFIX = "published/"


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


def zoo_dir() -> Path:
    """Directory of the default zoo: ``$SSLGEOM_ZOO_DIR`` or ``<repo>/data/zoo``."""
    return Path(os.environ.get(ZOO_ENV) or REPO_ROOT / "data" / "zoo")


def read_manifest(directory: str | Path | None = None) -> dict[str, Any]:
    """The raw manifest ``{"models": [entry, ...], ...}``; an empty zoo if the file is absent."""
    path = Path(directory or zoo_dir()) / MANIFEST_NAME
    if not path.exists():
        return {"models": []}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path} is not valid JSON ({error}); restore it from git or rerun make zoo.") from error


def write_manifest(manifest: dict[str, Any], directory: str | Path | None = None) -> Path:
    """Write the manifest atomically (a killed run never leaves half a file)."""
    path = Path(directory or zoo_dir()) / MANIFEST_NAME
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=False) + "\n")
    return path


def _entries() -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in read_manifest()["models"]}


def manifest() -> pd.DataFrame:
    """The default zoo as a table, one row per model (training logs left out)."""
    rows = [{k: v for k, v in entry.items() if k not in ("step_losses", "epoch_losses")} for entry in read_manifest()["models"]]
    return pd.DataFrame(rows)


def names(include_published: bool = True) -> list[str]:
    """Names accepted by :func:`load`: the default zoo, then ``published/...`` registry entries."""
    listed = sorted(_entries())
    if include_published:
        from sslgeom import published

        listed += [PUBLISHED_PREFIX + key for key in published.names()]
    return listed


def _unknown(name: str) -> ValueError:
    available = names()
    return ValueError(f"Unknown model {name!r}. Available models ({len(available)}): {', '.join(available)}.")


def checkpoint_hash(name: str) -> str:
    """SHA-256 recorded for a model (default zoo: manifest; published: registry, may be empty)."""
    if name.startswith(PUBLISHED_PREFIX):
        from sslgeom import published

        return published.get_spec(name[len(PUBLISHED_PREFIX) :]).sha256 or ""
    entries = _entries()
    if name not in entries:
        raise _unknown(name)
    return entries[name]["sha256"]


def save_checkpoint(backbone: nn.Module, path: str | Path) -> str:
    """Save a backbone's ``state_dict`` in half precision, atomically; return the file's SHA-256."""
    state = {
        key: value.detach().to("cpu", torch.float16) if torch.is_floating_point(value) else value.detach().cpu()
        for key, value in backbone.state_dict().items()
    }
    with atomic_write(path) as tmp:
        torch.save(state, tmp)
    return file_sha256(path)


def read_checkpoint(path: str | Path, expected_sha256: str | None = None) -> dict[str, Any]:
    """Read a checkpoint file safely (``weights_only``), verifying its SHA-256 first if given.

    Raises
    ------
    FileNotFoundError
        If the file is absent.
    ChecksumError
        If the SHA-256 differs from ``expected_sha256``.
    CheckpointError
        If the file cannot be unpickled (truncated or not a checkpoint).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Checkpoint {path} does not exist. For the default zoo run `make zoo` (or restore data/zoo "
            "from git); for published models put the file there."
        )
    if expected_sha256:
        actual = file_sha256(path)
        if actual != expected_sha256.lower():
            raise ChecksumError(
                f"SHA-256 mismatch for {path}: expected {expected_sha256}, got {actual}. The file is "
                "truncated, corrupt or a different release; download it again or rerun `make zoo`."
            )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for truncated/corrupt archives
        raise CheckpointError(
            f"Could not read checkpoint {path} ({type(error).__name__}: {error}); the file is truncated or "
            "not a torch checkpoint. Download it again or rerun `make zoo`."
        ) from error


def load_state_strict(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> nn.Module:
    """``load_state_dict(strict=True)`` with an error that lists missing and unexpected keys."""
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
    # checkpoints may be half precision: cast to the module's dtypes before loading
    cast = {k: v.to(reference[k].dtype) for k, v in state.items()}
    module.load_state_dict(cast, strict=True)
    return module


def load(name: str, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a model by name.

    Parameters
    ----------
    name : str
        A default-zoo name (see :func:`names`) or ``published/<key>``.
    device : str or torch.device

    Returns
    -------
    LoadedModel
        Backbone in eval mode on ``device`` (float32), its preprocessing and its metadata.

    Raises
    ------
    ValueError
        Unknown name (the message lists the available ones).
    FileNotFoundError, ChecksumError, CheckpointError
        Missing, altered or unreadable checkpoint.
    """
    if name.startswith(PUBLISHED_PREFIX):
        from sslgeom import published

        key = name[len(PUBLISHED_PREFIX) :]
        if key not in published.names():
            raise _unknown(name)
        return published.load_published(key, device=device)
    entries = _entries()
    if name not in entries:
        raise _unknown(name)
    info = dict(entries[name])
    state = read_checkpoint(zoo_dir() / info["file"], expected_sha256=info["sha256"])
    backbone = build_backbone(info["backbone"], in_channels=info.get("in_channels", 1))
    load_state_strict(backbone, state, source=f"{name} ({info['file']})")
    backbone.eval().to(device)
    for parameter in backbone.parameters():
        parameter.requires_grad_(False)
    info = {k: v for k, v in info.items() if k not in ("step_losses", "epoch_losses")}
    return LoadedModel(backbone=backbone, preprocess=preprocess_uint8, info=info)
