"""A registry of your own checkpoints: a YAML file, loaded as strictly as the published releases.

Point ``$SSLGEOM_USER_REGISTRY`` at the file (or use :func:`use_registry`) and every entry becomes a
model name ``user/<name>`` that :func:`sslgeom.zoo.load`, :func:`sslgeom.zoo.names`,
:func:`sslgeom.zoo.checkpoint_hash` and :func:`sslgeom.zoo.model_labels` accept, so every chapter can
run on it. The file::

    models:
      - name: my-moco                      # the model is "user/my-moco"; letters, digits, . _ -
        file: checkpoints/moco_v2.pth.tar  # relative paths start at this YAML file's folder
        architecture: resnet50             # a torchvision classification model name
        paradigm: contrastive              # contrastive, non-contrastive, clustering, supervised, random
        method: MoCo-v2                    # free text, the label the chapters show
        nesting: state_dict                # optional: key (or list of keys, first present) holding the weights
        prefix: module.encoder_q.          # optional (default ""): keep the keys under it, strip it
        drop: [fc.]                        # optional (default []): key prefixes (after stripping) to drop
        sha256: 0123...cdef                # optional: 64 hex digits, verified before the file is read
        image_size: 224                    # optional (default 224): side images are resized to
                                           # ($SSLGEOM_INPUT_SIZE overrides it for every model)
        normalize: imagenet                # optional: imagenet (default), none, or {mean: [r, g, b], std: [r, g, b]}

Parsing is strict: an unknown field, a missing one, a wrong type, an unknown architecture (checked
against ``torchvision.models.list_models``) or paradigm, a malformed SHA-256, a duplicate name or a
duplicated YAML key is an error naming the file, the entry and the field.

Loading an entry follows the published registry's path (:mod:`sslgeom.published`): the SHA-256 is
verified if given, the file is read by :func:`sslgeom.checkpoints.read_checkpoint` (safetensors, or
``torch.load(weights_only=True)`` with the one-class allowlist: nothing else is ever unpickled), the
keys are remapped by :func:`sslgeom.published.remap_state_dict`, and the weights are loaded strictly
into the torchvision architecture whose classifier (its last ``nn.Linear``: ``fc`` for ResNets,
``classifier.1`` for EfficientNets, ``heads.head`` for ViTs) is replaced by an identity; the
classifier's keys are always dropped, so the model returns the pooled features that fed it.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from sslgeom import published
from sslgeom.checkpoints import (
    CheckpointError, ChecksumError, LoadedModel, freeze, load_state_strict, read_checkpoint, verify_sha256,
)

__all__ = [
    "REGISTRY_ENV",
    "USER_PREFIX",
    "PARADIGMS",
    "RegistryError",
    "UserEntry",
    "read_registry",
    "active_registry",
    "names",
    "get_entry",
    "architectures",
    "build_architecture",
    "user_preprocess",
    "checkpoint_hash",
    "labels",
    "load_user",
    "use_registry",
]

#: environment variable holding the path of the active registry YAML
REGISTRY_ENV = "SSLGEOM_USER_REGISTRY"
#: model names of registry entries start with this
USER_PREFIX = "user/"
#: the paradigms the chapters compare (the zoo's, the published registry's and the two references)
PARADIGMS: tuple[str, ...] = ("contrastive", "non-contrastive", "clustering", "supervised", "random")
_REQUIRED = ("name", "file", "architecture", "paradigm", "method")
_OPTIONAL = ("nesting", "prefix", "drop", "sha256", "image_size", "normalize")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


class RegistryError(ValueError):
    """The registry file is not valid: YAML syntax, structure, or a field of an entry."""


@dataclass(frozen=True)
class UserEntry(published.KeyLayout):
    """One validated registry entry.

    Attributes
    ----------
    name : str
        Without the ``user/`` prefix.
    file : Path
        Absolute path of the checkpoint.
    architecture : str
        torchvision model name.
    paradigm, method : str
    nesting, prefix, drop
        The file's :class:`sslgeom.published.KeyLayout` (keyword-only); ``drop`` lists the key
        prefixes to drop besides the classifier (always dropped).
    sha256 : str or None
        Expected SHA-256 (lower case).
    image_size : int
    mean, std : tuple of float or None
        Per-channel standardisation of ``[0, 1]`` inputs; None leaves inputs in ``[0, 1]``.
    registry : Path
        The YAML file the entry comes from.
    """

    name: str
    file: Path
    architecture: str
    paradigm: str
    method: str
    sha256: str | None = None
    image_size: int = 224
    mean: tuple[float, float, float] | None = published.IMAGENET_MEAN
    std: tuple[float, float, float] | None = published.IMAGENET_STD
    registry: Path = Path()

    @property
    def model_name(self) -> str:
        """``user/<name>``: the name :func:`sslgeom.zoo.load` takes."""
        return USER_PREFIX + self.name


# ------------------------------------------------------------------------------------------------
# parsing
# ------------------------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML loader that refuses a key given twice in one mapping (plain YAML keeps the last)."""


def _unique_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, str) and key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"the key {key!r} is given twice in one mapping", key_node.start_mark)
        seen.add(key if isinstance(key, str) else id(key_node))
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


@functools.cache
def architectures() -> tuple[str, ...]:
    """The torchvision classification models an entry may name (``list_models(module=torchvision.models)``)."""
    import torchvision

    return tuple(torchvision.models.list_models(module=torchvision.models))


class _Fields:
    """Typed access to one entry's fields, with errors that name the registry, the entry and the field."""

    def __init__(self, raw: dict[str, Any], where: str) -> None:
        self.raw, self.where = raw, where

    def error(self, field: str, problem: str) -> RegistryError:
        return RegistryError(f"{self.where}, field {field!r}: {problem}")

    def string(self, field: str, default: str | None = None) -> str:
        value = self.raw.get(field, default)
        if not isinstance(value, str):
            raise self.error(field, f"expected a string, got {value!r} ({type(value).__name__}); quote it in the YAML.")
        return value

    def strings(self, field: str, *, single_ok: bool) -> tuple[str, ...]:
        """A list of non-empty strings (or, with ``single_ok``, one string); absent or null is ``()``."""
        value = self.raw.get(field)
        if value is None:
            return ()
        if single_ok and isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            form = "a string or a list of strings" if single_ok else "a list of strings, e.g. [fc., head.]"
            raise self.error(field, f"expected {form}, got {value!r}.")
        return tuple(value)


def _check_choice(fields: _Fields, field: str, allowed: tuple[str, ...], what: str, listing: str = "") -> str:
    """``fields[field]`` if it is one of ``allowed``; the error suggests close names and lists the allowed
    ones (or says where to find them: ``listing``)."""
    value = fields.string(field)
    if value not in allowed:
        close = difflib.get_close_matches(value, allowed, n=3)
        hint = f" Did you mean {close}?" if close else ""
        raise fields.error(field, f"unknown {what} {value!r}.{hint} {listing or 'Allowed: ' + ', '.join(allowed)}.")
    return value


def _normalisation(fields: _Fields) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    value = fields.raw.get("normalize", "imagenet")
    if value == "imagenet":
        return published.IMAGENET_MEAN, published.IMAGENET_STD
    if value == "none":
        return None, None
    usage = "imagenet, none, or {mean: [r, g, b], std: [r, g, b]} with positive std"
    if not isinstance(value, dict) or set(value) != {"mean", "std"}:
        raise fields.error("normalize", f"expected {usage}; got {value!r}.")
    triples = []
    for key in ("mean", "std"):
        triple = value[key]
        if (not isinstance(triple, list) or len(triple) != 3
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in triple)):
            raise fields.error("normalize", f"{key} must be a list of 3 numbers (one per RGB channel); got {triple!r}.")
        triples.append(tuple(float(v) for v in triple))
    if min(triples[1]) <= 0:
        raise fields.error("normalize", f"std must be positive; got {list(triples[1])}.")
    return triples[0], triples[1]


def _parse_entry(raw: Any, position: int, registry: Path) -> UserEntry:
    """Validate entry number ``position`` (1-based) of ``registry``."""
    label = f"{raw.get('name')!r}" if isinstance(raw, dict) and isinstance(raw.get("name"), str) else "without a name"
    where = f"User registry {registry}, entry {position} ({label})"
    if not isinstance(raw, dict):
        raise RegistryError(f"{where}: expected a mapping of fields (name: ..., file: ...), got {raw!r}.")
    unknown = sorted(str(key) for key in raw if key not in _REQUIRED + _OPTIONAL)
    if unknown:
        raise RegistryError(f"{where}: unknown field(s) {unknown}. Allowed: {', '.join(_REQUIRED + _OPTIONAL)}.")
    missing = [field for field in _REQUIRED if field not in raw]
    if missing:
        raise RegistryError(f"{where}: missing required field(s) {missing} (required: {', '.join(_REQUIRED)}).")
    fields = _Fields(raw, where)
    name = fields.string("name")
    if not _NAME.fullmatch(name):
        raise fields.error("name", f"{name!r} is not a valid name: use letters, digits, '.', '_' and '-', "
                                   "starting with a letter or digit (the model becomes 'user/<name>').")
    method = fields.string("method")
    if not method.strip():
        raise fields.error("method", "must not be empty.")
    sha256 = raw.get("sha256")
    if sha256 is not None and (not isinstance(sha256, str) or not _SHA256.fullmatch(sha256)):
        raise fields.error("sha256", f"expected 64 hexadecimal digits (sslgeom.cache.file_sha256(path) computes "
                                     f"them), got {sha256!r}; quote it in the YAML.")
    image_size = raw.get("image_size", 224)
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 16:
        raise fields.error("image_size", f"expected an integer of at least 16 (pixels), got {image_size!r}.")
    file = Path(fields.string("file")).expanduser()
    mean, std = _normalisation(fields)
    return UserEntry(
        name=name,
        file=file if file.is_absolute() else (registry.parent / file).resolve(),
        architecture=_check_choice(fields, "architecture", architectures(), "torchvision architecture",
                                   "The names are torchvision.models.list_models(module=torchvision.models)"),
        paradigm=_check_choice(fields, "paradigm", PARADIGMS, "paradigm"),
        method=method,
        nesting=fields.strings("nesting", single_ok=True),
        prefix=fields.string("prefix", ""),
        drop=fields.strings("drop", single_ok=False),
        sha256=sha256.lower() if sha256 else None,
        image_size=image_size,
        mean=mean,
        std=std,
        registry=registry,
    )


_PARSED: dict[tuple[str, str], dict[str, UserEntry]] = {}


def read_registry(path: str | Path) -> dict[str, UserEntry]:
    """Parse and validate a registry file (memoised by path and content).

    Parameters
    ----------
    path : str or Path
        The YAML file.

    Returns
    -------
    dict of str to UserEntry
        Entries by name (without ``user/``), in file order.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    RegistryError
        Invalid YAML, structure or entry (the message names the entry and the field).
    """
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"User registry {path} does not exist; write a YAML file listing your checkpoints "
                                "(see sslgeom.registry's documentation for the format).")
    # keyed by content, not modification time: a registry is small, and an edit within the file
    # system's timestamp resolution must not return the previous parse
    text = path.read_bytes()
    key = (str(path), hashlib.sha256(text).hexdigest())
    if key not in _PARSED:
        try:
            decoded = text.decode("utf-8")
        except UnicodeDecodeError as error:
            raise RegistryError(f"User registry {path} is not UTF-8 text ({error}); save it as UTF-8.") from error
        _PARSED[key] = _parse_registry(path, decoded)
    return dict(_PARSED[key])


def _parse_registry(path: Path, text: str) -> dict[str, UserEntry]:
    try:
        document = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a safe loader)
    except yaml.YAMLError as error:
        raise RegistryError(f"User registry {path} is not valid YAML: {error}") from error
    if not isinstance(document, dict) or set(document) != {"models"} or not isinstance(document["models"], list):
        found = sorted(document) if isinstance(document, dict) else type(document).__name__
        raise RegistryError(f"User registry {path}: expected one top-level key 'models' holding a list of entries, "
                            f"found {found}.")
    if not document["models"]:
        raise RegistryError(f"User registry {path} lists no models under 'models'.")
    entries: dict[str, UserEntry] = {}
    for position, raw in enumerate(document["models"], start=1):
        entry = _parse_entry(raw, position, path)
        if entry.name in entries:
            raise RegistryError(f"User registry {path}, entry {position}: the name {entry.name!r} is used twice.")
        entries[entry.name] = entry
    return entries


# ------------------------------------------------------------------------------------------------
# the active registry and its names
# ------------------------------------------------------------------------------------------------


def active_registry() -> Path | None:
    """The registry file named by ``$SSLGEOM_USER_REGISTRY``, or None when it is unset or empty."""
    value = os.environ.get(REGISTRY_ENV)
    return Path(value) if value else None


def _active_entries() -> dict[str, UserEntry]:
    path = active_registry()
    if path is None:
        return {}
    try:
        return read_registry(path)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"${REGISTRY_ENV}={os.environ[REGISTRY_ENV]!r} names a user registry that does not "
                                f"exist ({path}); fix the path or unset the variable.") from error


def names() -> list[str]:
    """``user/<name>`` of every entry of the active registry (``[]`` when none is active)."""
    return [USER_PREFIX + name for name in _active_entries()]


def get_entry(name: str) -> UserEntry:
    """The entry of a ``user/<name>`` model in the active registry.

    Raises
    ------
    ValueError
        No registry is active, or it has no such entry (the message lists its names).
    """
    if not name.startswith(USER_PREFIX):
        raise ValueError(f"{name!r} is not a user model name; those start with {USER_PREFIX!r}.")
    entries = _active_entries()
    if active_registry() is None:
        raise ValueError(f"{name!r} names a user model, but no user registry is active: set ${REGISTRY_ENV} to your "
                         "registry YAML file, or use `with sslgeom.registry.use_registry(path):`.")
    key = name[len(USER_PREFIX):]
    if key not in entries:
        raise ValueError(f"Unknown user model {name!r}: the user registry {active_registry()} lists "
                         f"{[USER_PREFIX + k for k in entries]}.")
    return entries[key]


@contextlib.contextmanager
def use_registry(path: str | Path) -> Iterator[dict[str, UserEntry]]:
    """Make ``path`` the active registry inside a ``with`` block (like :func:`sslgeom.zoo.use_zoo_dir`).

    The file is parsed first, so a bad registry fails before the block runs. ``$SSLGEOM_USER_REGISTRY``
    is restored (or removed) afterwards, even if the block raises.

    Yields
    ------
    dict of str to UserEntry
        The registry's entries.
    """
    entries = read_registry(path)
    previous = os.environ.get(REGISTRY_ENV)
    os.environ[REGISTRY_ENV] = str(Path(path).expanduser().resolve())
    try:
        yield entries
    finally:
        if previous is None:
            os.environ.pop(REGISTRY_ENV, None)
        else:
            os.environ[REGISTRY_ENV] = previous


def labels(name: str) -> dict[str, str]:
    """Method, paradigm, backbone (the architecture) and policy (``"user"``) of a user model."""
    entry = get_entry(name)
    return {"method": entry.method, "paradigm": entry.paradigm, "backbone": entry.architecture, "policy": "user"}


# ------------------------------------------------------------------------------------------------
# loading
# ------------------------------------------------------------------------------------------------


def _existing_file(entry: UserEntry) -> Path:
    if not entry.file.is_file():
        raise FileNotFoundError(
            f"{entry.model_name}: checkpoint file {entry.file} does not exist (field 'file' of entry {entry.name!r} "
            f"in {entry.registry}; relative paths start at the registry's folder).")
    return entry.file


def checkpoint_hash(name: str) -> str:
    """SHA-256 of a user model's file (memoised by path, size and mtime), checked against the entry's if given.

    Raises
    ------
    FileNotFoundError
        The file is missing.
    ChecksumError
        The entry records another SHA-256.
    """
    entry = get_entry(name)
    actual = published.file_hash(_existing_file(entry))
    if entry.sha256 and actual != entry.sha256:
        raise ChecksumError(_mismatch(entry, actual))
    return actual


def _mismatch(entry: UserEntry, actual: str) -> str:
    return (f"SHA-256 mismatch for {entry.file}: expected {entry.sha256}, got {actual}. The file is truncated, "
            f"corrupt or another checkpoint; {_restore_hint(entry)}.")


def _restore_hint(entry: UserEntry) -> str:
    return (f"restore it, or update the sha256 of entry {entry.name!r} in {entry.registry} if you replaced "
            "the file on purpose")


def build_architecture(architecture: str) -> tuple[nn.Module, str]:
    """A torchvision model (random weights) with its classifier replaced by an identity.

    The classifier is the last ``nn.Linear`` registered in the model, which is the output layer of
    every torchvision classification model that has one.

    Parameters
    ----------
    architecture : str
        One of :func:`architectures`.

    Returns
    -------
    model : nn.Module
        float ``(batch, 3, H, W)`` -> ``(batch, dim)`` pooled features.
    head : str
        Dotted name of the replaced layer (``"fc"`` for ResNets); its keys are not part of the model.

    Raises
    ------
    CheckpointError
        The architecture has no linear classifier (SqueezeNet's is a convolution).
    """
    import torchvision

    model = torchvision.models.get_model(architecture, weights=None)
    linear = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not linear:
        raise CheckpointError(f"The architecture {architecture!r} has no linear classifier to replace by an identity; "
                              "choose another torchvision architecture.")
    model.set_submodule(linear[-1], nn.Identity())
    return model, linear[-1]


def user_preprocess(images: torch.Tensor, *, size: int, mean: tuple[float, ...] | None,
                    std: tuple[float, ...] | None) -> torch.Tensor:
    """``uint8 (batch, C, H, W)`` -> float ``(batch, 3, size, size)``, standardised by ``mean``/``std`` if given.

    Greyscale is repeated to three channels and the resize is bilinear and antialiased, as for the
    published models (:func:`sslgeom.published.imagenet_preprocess`).
    """
    x = published.imagenet_preprocess(images, size=size, normalize=False)
    if mean is None:
        return x
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def _as_published_spec(entry: UserEntry, head: str) -> published.PublishedSpec:
    """The entry in the published registry's terms, so that both remap keys with one function."""
    return published.PublishedSpec(
        key=entry.name, method=entry.method, paradigm=entry.paradigm, url=str(entry.file), filename=entry.file.name,
        nesting=entry.nesting, prefix=entry.prefix, drop=(*entry.drop, f"{head}."),
        normalize=entry.mean is not None, sha256=entry.sha256,
    )


def _layout(raw: Any, entry: UserEntry) -> str:
    """What the file holds, so that a user can fix nesting, prefix and drop from the message alone."""
    if not isinstance(raw, dict):
        return ""
    top = sorted(str(k) for k in raw)[:10]
    nested = next((key for key in entry.nesting if isinstance(raw.get(key), dict)), None)
    if nested is None:
        nested = next((key for key in raw if isinstance(raw[key], dict) and not torch.is_tensor(raw[key])), None)
    where, state = (f"under {nested!r}", raw[nested]) if nested is not None else ("at the top level", raw)
    sample = [key for key, value in state.items() if torch.is_tensor(value)][:5]
    return (f" The file's top-level keys are {top}; the first tensor keys {where} are {sample}. Set 'nesting', "
            f"'prefix' and 'drop' of entry {entry.name!r} in {entry.registry} to match.")


def load_user(name: str, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a ``user/<name>`` model of the active registry.

    Parameters
    ----------
    name : str
        ``user/<name>``.
    device : str or torch.device

    Returns
    -------
    sslgeom.checkpoints.LoadedModel
        Backbone (eval mode, frozen) returning ``(batch, dim)`` features; ``preprocess`` maps uint8
        ``(batch, C, H, W)`` images to the entry's input; ``info`` has ``name`` (``user/<name>``),
        ``method``, ``paradigm``, ``backbone`` (the architecture), ``sha256`` (the file's), ``file``,
        ``registry``, ``image_size`` (the entry's, or ``$SSLGEOM_INPUT_SIZE``), ``mean``, ``std``.

    Raises
    ------
    ValueError
        No active registry, or no such entry.
    FileNotFoundError
        The checkpoint file is missing.
    ChecksumError
        The file's SHA-256 differs from the entry's.
    CheckpointError
        Unreadable file, a pickled object outside the allowlist, or keys that do not fit the
        architecture after remapping (missing and unexpected keys listed, with the file's layout).
    """
    entry = get_entry(name)
    path = _existing_file(entry)
    if entry.sha256:
        verify_sha256(path, entry.sha256, fix=_restore_hint(entry))
    raw = read_checkpoint(path)  # weights_only with the allowlist: no pickled code ever runs
    backbone, head = build_architecture(entry.architecture)
    try:
        state = published.remap_state_dict(raw, _as_published_spec(entry, head))
    except ValueError as error:
        # the shared remapping names models "published/<key>"; this one is a user model
        message = str(error).replace(f"published/{entry.name}:", f"{entry.model_name}:", 1)
        raise CheckpointError(message + _layout(raw, entry)) from error
    # BatchNorm counters are dropped by the remapping; take the model's so that only real differences count
    state.update({k: v for k, v in backbone.state_dict().items() if k.endswith("num_batches_tracked")})
    try:
        load_state_strict(backbone, state, source=f"{entry.model_name} ({path.name})")
    except CheckpointError as error:
        raise CheckpointError(str(error) + _layout(raw, entry)) from error
    freeze(backbone, device)
    size = published.input_size(default=entry.image_size)  # $SSLGEOM_INPUT_SIZE overrides the entry
    info = {
        "name": entry.model_name, "method": entry.method, "paradigm": entry.paradigm,
        "backbone": entry.architecture, "sha256": published.file_hash(path), "file": str(path),
        "registry": str(entry.registry), "image_size": size,
        "mean": entry.mean, "std": entry.std,
    }
    preprocess = partial(user_preprocess, size=size, mean=entry.mean, std=entry.std)
    return LoadedModel(backbone=backbone, preprocess=preprocess, info=info)
