"""Input validation in one place: features, labels, images, integers, names and result files.

Every public function of the package checks what it is given with these helpers, so that a wrong
input raises the same clear error wherever it enters, and the message says how to fix it. In the
spirit of scikit-learn's ``utils/validation.py``: each helper returns the validated value in the
form the caller works with (for example float64 features), or raises.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "check_features",
    "check_graph_features",
    "check_feature_tensor",
    "check_labels",
    "check_images",
    "check_int",
    "check_float",
    "check_choice",
    "check_names",
    "read_json_results",
]


def _check_matrix_shape(shape: tuple[int, ...], name: str, min_rows: int) -> None:
    """The shape rules shared by NumPy and torch feature matrices."""
    if len(shape) != 2:
        raise ValueError(
            f"{name} must be a 2-D array (n_points, dim); got shape {shape}. Reshape or stack the "
            "per-image features first, e.g. features.reshape(len(features), -1)."
        )
    if shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows (points); got {shape[0]}.")
    if shape[1] < 1:
        raise ValueError(f"{name} has zero columns; each point needs at least one coordinate.")


def check_features(
    features: Any,
    name: str = "features",
    min_rows: int = 2,
    dtype: np.dtype | type = np.float64,
) -> np.ndarray:
    """Validate a feature matrix and return it as a NumPy array of ``dtype``.

    Parameters
    ----------
    features : array-like, shape (n_points, dim)
    name : str
        Used in error messages.
    min_rows : int
        Minimum number of rows required.
    dtype : numpy dtype
        Dtype of the returned array (float64 unless the caller needs otherwise).

    Returns
    -------
    numpy.ndarray, shape (n_points, dim)

    Raises
    ------
    ValueError
        If the array is not 2-D, has too few rows or no columns, or holds NaN or infinite values.
    """
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().numpy()
    array = np.asarray(features, dtype=dtype)
    _check_matrix_shape(tuple(array.shape), name, min_rows)
    bad = ~np.isfinite(array)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        raise ValueError(
            f"{name} contains NaN or infinite values in {len(rows)} of {array.shape[0]} rows "
            f"(first: {rows[:5].tolist()}). Check the model's forward pass (collapsed or diverged?) "
            "or the feature cache (delete the stale cache entry and recompute)."
        )
    return array


def check_graph_features(features: Any, n_points: int, name: str = "features") -> np.ndarray:
    """Validate the features a graph was built from: :func:`check_features`, one row per node.

    Parameters
    ----------
    features : array-like, shape (n_points, dim)
    n_points : int
        Nodes of the graph (e.g. ``NNKResult.n_points``).
    name : str
        Used in error messages.

    Returns
    -------
    numpy.ndarray, shape (n_points, dim), float64
    """
    points = check_features(features, name)
    if points.shape[0] != n_points:
        raise ValueError(
            f"{name} must have {n_points} rows to match the graph, got shape {points.shape}; pass the "
            "features the NNK result was built from."
        )
    return points


def check_labels(labels: Any, n_rows: int, name: str = "labels", min_classes: int = 2) -> np.ndarray:
    """Validate class labels: 1-D, one per feature row, at least ``min_classes`` classes.

    Parameters
    ----------
    labels : array-like, shape (n_rows,)
    n_rows : int
        Number of feature rows the labels belong to.
    name : str
        Used in error messages.
    min_classes : int
        Minimum number of distinct classes (a classification task needs two).

    Returns
    -------
    numpy.ndarray, shape (n_rows,)
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != n_rows:
        raise ValueError(
            f"{name} must be 1-D with one label per feature row ({n_rows}); got shape {labels.shape}."
        )
    n_classes = len(np.unique(labels))
    if n_classes < min_classes:
        raise ValueError(
            f"{name} hold {n_classes} class(es); a classification task needs at least {min_classes}. "
            "Check the task's split (a single-class split cannot measure transfer)."
        )
    return labels


def check_images(images: Any) -> torch.Tensor:
    """Validate a batch of images: a ``uint8`` tensor ``(batch, channels, height, width)``.

    Returns
    -------
    torch.Tensor
        The same tensor.
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(
            f"images must be a torch.Tensor, got {type(images).__name__}; convert a NumPy array "
            "with torch.from_numpy(images)."
        )
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(
            "images must be a uint8 tensor of shape (batch, channels, height, width); got "
            f"dtype {images.dtype} and shape {tuple(images.shape)}. Add a channel axis with "
            "images[:, None] for (batch, height, width) arrays."
        )
    return images


def check_int(value: Any, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """Validate an integer parameter (``bool`` is refused) within ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__}).")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}.")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {value}.")
    return value


def check_float(value: Any, name: str, minimum: float | None = None, maximum: float | None = None) -> float:
    """Validate a finite real parameter (``bool`` is refused) within ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__}).")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}.")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}.")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {value}.")
    return value


def check_choice(value: Any, choices: Iterable[str], what: str, hint: str = "") -> str:
    """Validate one name against the allowed ``choices``; the error lists them.

    Parameters
    ----------
    value : str
        The name given.
    choices : iterable of str
        The names accepted.
    what : str
        What the name denotes, for the message (for example ``"kernel"``).
    hint : str
        Extra advice appended to the message.
    """
    allowed = list(choices)
    if not isinstance(value, str) or value not in allowed:
        message = f"unknown {what} {value!r}; choose one of {allowed}."
        raise ValueError(f"{message} {hint}".strip())
    return value


def check_names(values: Any, choices: Iterable[str], what: str, hint: str = "") -> list[str]:
    """Validate a list of names: a list (not a bare string) whose every entry is in ``choices``.

    Returns
    -------
    list of str
        The names, in the given order.
    """
    if isinstance(values, str) or not isinstance(values, Sequence) or not all(isinstance(v, str) for v in values):
        raise TypeError(f"{what} must be a list of names, got {values!r}.")
    allowed = set(choices)
    unknown = [v for v in values if v not in allowed]
    if unknown:
        message = f"unknown {what} {unknown}; available: {sorted(allowed)}."
        raise ValueError(f"{message} {hint}".strip())
    return list(values)


def check_feature_tensor(
    features: torch.Tensor,
    name: str = "features",
    min_rows: int = 2,
    hint: str = "remove or impute them first.",
) -> torch.Tensor:
    """Validate a 2-D floating feature tensor in place: no copy, dtype and device unchanged.

    The tensor counterpart of :func:`check_features`, for code that computes in torch (the NNK
    graph in float32 or float64, on any device).

    Parameters
    ----------
    features : torch.Tensor, shape (n_points, dim)
    name : str
        Used in error messages.
    min_rows : int
        Minimum number of rows required.
    hint : str
        Advice appended to the message about NaN or infinite values.

    Returns
    -------
    torch.Tensor
        The same tensor.

    Raises
    ------
    ValueError
        If the tensor is not 2-D, has too few rows or no columns, or holds NaN or infinite values.
    """
    _check_matrix_shape(tuple(features.shape), name, min_rows)
    finite = torch.isfinite(features)
    if not bool(finite.all()):
        bad = int((~finite).any(dim=1).sum())
        raise ValueError(
            f"{name} contains NaN or inf in {bad} of {features.shape[0]} row(s); {hint}"
        )
    return features


def read_json_results(path: str | Path, key: str, fix: str, what: str) -> dict:
    """A JSON results file, parsed once, whose ``key`` holds a list.

    Parameters
    ----------
    path : str or Path
    key : str
        The top-level key that must hold a list (the results' rows).
    fix : str
        How to get a good file (said when the file is missing), e.g. "run `make bench`".
    what : str
        What the file should be (said when its layout is another), e.g. "the output of benchmarks/nnk.py".

    Returns
    -------
    dict
        The whole document: the list under ``key`` and whatever the writer recorded beside it.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        Not JSON, not an object, no ``key``, or ``key`` does not hold a list.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No file at {path}; {fix}.")
    try:
        document = json.loads(path.read_text())
        rows = document[key]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not {what}: {error}") from error
    if not isinstance(rows, list):
        raise ValueError(f"{path} is not {what}: {key!r} is not a list.")
    return document
