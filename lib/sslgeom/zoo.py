"""One loading API for the default zoo (trained here) and published ResNet-50 checkpoints.

>>> from sslgeom import zoo
>>> zoo.names()[:2]                                  # doctest: +SKIP
['barlowtwins-convnet-s0', 'barlowtwins-convnet-weak-s0']
>>> model = zoo.load("simclr-convnet-s0")            # doctest: +SKIP
>>> features = model.backbone(model.preprocess(images_uint8))   # (batch, dim)

Default-zoo checkpoints are half-precision ``state_dict`` files of the backbone only, listed in
``data/zoo/manifest.json`` with their SHA-256, which is verified on every load (reading and
writing them is :mod:`sslgeom.checkpoints`). Names starting with ``published/`` resolve through
:mod:`sslgeom.published`, names starting with ``user/`` through the active user registry
(:mod:`sslgeom.registry`, ``$SSLGEOM_USER_REGISTRY``). The zoo also says which models a chapter studies
(:func:`select_models`, :func:`check_model_names`) and what labels they carry
(:func:`model_labels`).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from sslgeom import published, registry
from sslgeom.cache import REPO_ROOT, atomic_write
# save_checkpoint is imported for the callers that write zoo checkpoints (scripts/train_zoo.py,
# chapter 01, the test fixtures) through ``zoo.save_checkpoint``.
from sslgeom.checkpoints import CheckpointError, LoadedModel, freeze, load_state_strict, read_checkpoint, save_checkpoint
from sslgeom.models import build_backbone, preprocess_uint8
from sslgeom.validation import check_float, check_int, check_names

class ZooNotFoundError(FileNotFoundError):
    """The default zoo's directory or manifest is missing."""


#: When set, every model a process resolves (loads, or keys a cache entry by) is appended to this
#: file as one JSON line ``{"name", "sha256", "file"}``: the notebook runner's provenance record.
PROVENANCE_ENV = "SSLGEOM_PROVENANCE_LOG"
#: Environment variable that points the default zoo somewhere else (tests, user zoos).
ZOO_ENV = "SSLGEOM_ZOO_DIR"
MANIFEST_NAME = "manifest.json"
PUBLISHED_PREFIX = "published/"


def zoo_dir() -> Path:
    """Directory of the default zoo: ``$SSLGEOM_ZOO_DIR`` or ``<repo>/data/zoo``."""
    return Path(os.environ.get(ZOO_ENV) or REPO_ROOT / "data" / "zoo")


def read_manifest(directory: str | Path | None = None, *, missing_ok: bool = False) -> dict[str, Any]:
    """The raw manifest ``{"models": [entry, ...], ...}``.

    Parameters
    ----------
    directory : str or Path, optional
        Zoo directory; default :func:`zoo_dir`.
    missing_ok : bool
        Return an empty zoo when the manifest is absent (a zoo being trained); otherwise that is an error.

    Raises
    ------
    ZooNotFoundError
        If the manifest is absent and ``missing_ok`` is False; the message says where the zoo was looked
        for (and whether ``$SSLGEOM_ZOO_DIR`` chose the place) and how to get it.
    CheckpointError
        If the manifest is not valid JSON.
    """
    path = Path(directory or zoo_dir()) / MANIFEST_NAME
    if not path.exists():
        if missing_ok:
            return {"models": []}
        raise ZooNotFoundError(_missing_zoo_message(path))
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path} is not valid JSON ({error}); restore it from git or rerun make zoo.") from error
    if not isinstance(manifest, dict) or not isinstance(manifest.get("models"), list):
        raise CheckpointError(f"{path} has no list of models under 'models'; restore it from git or rerun make zoo.")
    return manifest


def _missing_zoo_message(path: Path) -> str:
    where = (f"${ZOO_ENV}={os.environ[ZOO_ENV]!r} points there" if os.environ.get(ZOO_ENV)
             else f"the default location; ${ZOO_ENV} is not set")
    fix = (f"check the spelling of ${ZOO_ENV} or unset it to use {REPO_ROOT / 'data' / 'zoo'}"
           if os.environ.get(ZOO_ENV) else "restore data/zoo from git (git checkout -- data/zoo) or run `make zoo`")
    return f"No model zoo at {path.parent}: {path.name} is missing ({where}). To fix it, {fix}."


def zoo_exists() -> bool:
    """Whether the default zoo's manifest is there."""
    return (zoo_dir() / MANIFEST_NAME).is_file()


def write_manifest(manifest: dict[str, Any], directory: str | Path | None = None) -> Path:
    """Write the manifest atomically (a killed run never leaves half a file)."""
    path = Path(directory or zoo_dir()) / MANIFEST_NAME
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=False) + "\n")
    return path


def _entries(missing_ok: bool = False) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in read_manifest(missing_ok=missing_ok)["models"]}


def manifest() -> pd.DataFrame:
    """The default zoo as a table, one row per model (training logs left out).

    Raises
    ------
    ZooNotFoundError
        If the zoo's manifest is missing.
    """
    rows = [{k: v for k, v in entry.items() if k not in ("step_losses", "epoch_losses")} for entry in read_manifest()["models"]]
    return pd.DataFrame(rows)


def names(include_published: bool = True, include_user: bool = True) -> list[str]:
    """Names accepted by :func:`load`: the default zoo, then ``published/...`` registry entries, then
    ``user/...`` entries of the active user registry (:mod:`sslgeom.registry`; none when inactive).

    A missing zoo contributes no names here (published models stay usable without it); asking for a
    default-zoo name then fails with the reason (see :func:`check_model_names`).
    """
    listed = sorted(_entries(missing_ok=True))
    if include_published:
        listed += [PUBLISHED_PREFIX + key for key in published.names()]
    if include_user:
        listed += registry.names()
    return listed


def check_model_names(model_names: Any) -> list[str]:
    """Validate a list of model names against :func:`names`; return it as a list.

    Raises
    ------
    TypeError
        If ``model_names`` is not a list of strings (a bare string is refused).
    ValueError
        If a name is in no registry; the message lists the available names and how to add models.
    """
    hint = "Train default-zoo models with `make zoo`, or remove the names from the parameter list."
    if not zoo_exists():
        hint = _missing_zoo_message(zoo_dir() / MANIFEST_NAME)
    return check_names(model_names, names(), "model(s)", hint=hint)


def select_models(
    models: Sequence[str] | None = None, models_per_paradigm: int = 0, budget: float | None = 1.0
) -> list[str]:
    """The model names a chapter studies.

    Parameters
    ----------
    models : list of str or None
        Explicit names (default zoo or ``published/<key>``, checked by :func:`check_model_names`);
        ``None`` means the default zoo.
    models_per_paradigm : int
        With ``models=None``: keep only the first this many models of each paradigm in manifest
        order (``0`` keeps all). The smoke profile uses it to run on a small zoo.
    budget : float or None
        With ``models=None``: keep the checkpoints at this fraction of their run's training budget
        (default ``1.0``, the end of training) and the random-initialisation references, which have
        no budget; ``None`` keeps every checkpoint. Manifests without budget checkpoints (no
        ``budget_fraction`` column) keep every model.

    Returns
    -------
    list of str

    Raises
    ------
    ValueError
        If a name is unknown, or ``models`` is None and the default zoo is empty.
    """
    if models is not None:
        return check_model_names(models)
    models_per_paradigm = check_int(models_per_paradigm, "models_per_paradigm", minimum=0)
    table = manifest()
    if table.empty:
        raise ValueError(f"The default zoo is empty (no entries in {zoo_dir() / MANIFEST_NAME}): "
                         "train it with `make zoo`.")
    if budget is not None and "budget_fraction" in table:
        budget = check_float(budget, "budget", minimum=0.0, maximum=1.0)
        fractions = table["budget_fraction"].astype(float)
        at_budget = np.isclose(fractions, budget) & (table["method"] != "random")
        if not at_budget.any():  # random inits alone would hide a budget that does not exist
            raise ValueError(f"No default-zoo checkpoint at budget {budget}; the manifest has budgets "
                             f"{sorted(set(fractions.round(3)))}.")
        table = table[at_budget | (table["method"] == "random")]
    if models_per_paradigm:
        table = table.groupby("paradigm", sort=False).head(models_per_paradigm)
    return list(table["name"])


def model_labels(model_names: Sequence[str]) -> pd.DataFrame:
    """The labels that could explain a model's geometry (method, paradigm, backbone, policy) and its design.

    Default-zoo models take them from :func:`manifest`; published checkpoints
    (``published/<key>``) from their registry entry (backbone ``resnet50``, policy
    ``published``); user models (``user/<name>``) from the user registry (backbone: the
    architecture, policy ``user``). A missing policy (random initialisation) reads ``"none"``.

    Returns
    -------
    pandas.DataFrame
        Index: model names (in the given order); columns ``method, paradigm, backbone, policy`` and
        the design columns ``run_id, seed, budget_fraction`` (a published or user model is its own run,
        seed 0, full budget; a manifest without these columns gives the same defaults).
    """
    model_names = check_model_names(model_names)
    columns = ["method", "paradigm", "backbone", "policy"]
    table = manifest()
    table = table.set_index("name") if len(table) else pd.DataFrame(columns=columns)
    design = ["run_id", "seed", "budget_fraction"]
    rows = {}
    for name in model_names:
        if name.startswith(PUBLISHED_PREFIX):
            spec = published.get_spec(name[len(PUBLISHED_PREFIX):])
            rows[name] = {"method": spec.method, "paradigm": spec.paradigm, "backbone": "resnet50",
                          "policy": "published"}
        elif name.startswith(registry.USER_PREFIX):
            rows[name] = registry.labels(name)
        else:
            rows[name] = table.loc[name, [c for c in columns + design if c in table]].to_dict()
        # external models (and first-zoo manifests) are one run each, one seed, fully trained
        defaults = {"run_id": name, "seed": 0, "budget_fraction": 1.0}
        rows[name] = {**defaults, **{k: v for k, v in rows[name].items() if not _missing(v) or k in columns}}
    labels = pd.DataFrame.from_dict(rows, orient="index", columns=columns + design)
    labels[columns] = labels[columns].fillna("none")
    return labels.astype({"seed": int, "budget_fraction": float})


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _unknown(name: str) -> Exception:
    if not name.startswith(PUBLISHED_PREFIX) and not zoo_exists():
        return ZooNotFoundError(f"Cannot load {name!r}. " + _missing_zoo_message(zoo_dir() / MANIFEST_NAME))
    available = names()
    return ValueError(f"Unknown model {name!r}. Available models ({len(available)}): {', '.join(available)}.")


def _check_name(name: Any) -> str:
    if not isinstance(name, str):
        raise TypeError(f"A model name must be a string such as 'simclr-convnet-s0' or 'published/swav', "
                        f"got {name!r} ({type(name).__name__}); see zoo.names().")
    return name


def _recorded_sha256(name: str, entry: dict[str, Any]) -> str:
    """The manifest's SHA-256 of a default-zoo checkpoint; missing or empty is an error, never a skip."""
    sha256 = entry.get("sha256")
    if not isinstance(sha256, str) or len(sha256) != 64 or any(c not in "0123456789abcdefABCDEF" for c in sha256):
        raise CheckpointError(
            f"The manifest entry of {name!r} in {zoo_dir() / MANIFEST_NAME} has no valid SHA-256 (got {sha256!r}); "
            "every default-zoo checkpoint must have one, so it is never loaded unverified. Restore the manifest "
            "from git, or record the file's hash with sslgeom.cache.file_sha256(path) if you made the checkpoint."
        )
    return sha256.lower()


def _record_use(name: str, sha256: str, file: str | Path) -> None:
    """Append a used model to the provenance log named by ``$SSLGEOM_PROVENANCE_LOG`` (if set)."""
    log = os.environ.get(PROVENANCE_ENV)
    if not log:
        return
    line = json.dumps({"name": name, "sha256": sha256, "file": str(file)}) + "\n"
    with open(log, "a", encoding="utf-8") as handle:  # one short O_APPEND write per line
        handle.write(line)


def checkpoint_hash(name: str) -> str:
    """SHA-256 of a model's checkpoint file, the identity used in cache keys.

    Default zoo: the manifest's hash (verified against the file on every load). Published and user
    models: the hash of the local file itself (memoised by path, size and modification time), so that
    two different files under one registry name never share cache entries; a user entry's recorded
    SHA-256, if any, must match it.

    Raises
    ------
    ValueError
        Unknown name (a ``user/`` name without an active registry says how to activate one).
    ZooNotFoundError
        A default-zoo name while the zoo is missing.
    CheckpointError
        A manifest entry without a valid SHA-256; a user file whose hash differs from its entry's.
    FileNotFoundError
        A published or user model whose file is not on this machine.
    """
    name = _check_name(name)
    if name.startswith(registry.USER_PREFIX):
        sha256 = registry.checkpoint_hash(name)  # verified against the entry's hash when it has one
        _record_use(name, sha256, registry.get_entry(name).file)
        return sha256
    if name.startswith(PUBLISHED_PREFIX):
        key = name[len(PUBLISHED_PREFIX) :]
        if key not in published.names():
            raise _unknown(name)
        path = published.find_checkpoint(key)
        sha256 = published.file_hash(path)
        _record_use(name, sha256, path)
        return sha256
    entries = _entries(missing_ok=True)
    if name not in entries:
        raise _unknown(name)
    sha256 = _recorded_sha256(name, entries[name])
    _record_use(name, sha256, zoo_dir() / entries[name]["file"])
    return sha256


def load(name: str, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a model by name.

    Parameters
    ----------
    name : str
        A default-zoo name (see :func:`names`), ``published/<key>`` or ``user/<name>``.
    device : str or torch.device

    Returns
    -------
    LoadedModel
        Backbone in eval mode on ``device`` (float32), its preprocessing and its metadata.

    Raises
    ------
    TypeError
        ``name`` is not a string.
    ValueError
        Unknown name (the message lists the available ones).
    ZooNotFoundError
        A default-zoo name while the zoo's manifest is missing (says where it was looked for).
    FileNotFoundError, ChecksumError, CheckpointError
        Missing, altered or unreadable checkpoint; a manifest entry without a valid SHA-256.
    """
    name = _check_name(name)
    if name.startswith(registry.USER_PREFIX):
        model = registry.load_user(name, device=device)
        _record_use(name, model.info["sha256"], model.info["file"])
        return model
    if name.startswith(PUBLISHED_PREFIX):
        key = name[len(PUBLISHED_PREFIX) :]
        if key not in published.names():
            raise _unknown(name)
        model = published.load_published(key, device=device)
        _record_use(name, model.info["sha256"], model.info["file"])
        return model
    entries = _entries(missing_ok=True)
    if name not in entries:
        raise _unknown(name)
    info = dict(entries[name])
    state = read_checkpoint(zoo_dir() / info["file"], expected_sha256=_recorded_sha256(name, info))
    _record_use(name, info["sha256"], zoo_dir() / info["file"])
    backbone = build_backbone(info["backbone"], in_channels=info.get("in_channels", 1))
    load_state_strict(backbone, state, source=f"{name} ({info['file']})")
    freeze(backbone, device)
    info = {k: v for k, v in info.items() if k not in ("step_losses", "epoch_losses")}
    return LoadedModel(backbone=backbone, preprocess=preprocess_uint8, info=info)


@contextlib.contextmanager
def use_zoo_dir(directory: str | Path) -> Iterator[Path]:
    """Point the default zoo at ``directory`` inside a ``with`` block (for example a zoo of your own).

    Sets :data:`ZOO_ENV` for the block and restores its previous value (or its absence) afterwards,
    even if the block raises.

    Parameters
    ----------
    directory : str or Path
        A folder holding (or about to hold) checkpoints and a manifest.

    Yields
    ------
    Path
        ``directory``.
    """
    previous = os.environ.get(ZOO_ENV)
    os.environ[ZOO_ENV] = str(directory)
    try:
        yield Path(directory)
    finally:
        if previous is None:
            os.environ.pop(ZOO_ENV, None)
        else:
            os.environ[ZOO_ENV] = previous
