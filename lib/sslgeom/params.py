"""Validation of notebook parameters.

Papermill injects whatever a parameter file holds; a typo in YAML (``k: "50"``, ``profile: defualt``)
should stop a chapter at its first cell with a message that names the parameter, not fail twenty
cells later inside NumPy. Chapters call :func:`check` on their parameter cell's values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

PROFILES = ("smoke", "default", "full")


class ParameterError(TypeError, ValueError):
    """A notebook parameter has the wrong type or an invalid value."""


def _type_names(expected: type | tuple[type, ...]) -> str:
    types = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join("None" if t is type(None) else t.__name__ for t in types)


def check_one(
    name: str,
    value: Any,
    expected: type | tuple[type, ...],
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    choices: Sequence[Any] | None = None,
) -> Any:
    """Check one parameter and return it unchanged.

    ``bool`` is not accepted where ``int`` is expected, and ``int`` is accepted where ``float`` is.

    Raises
    ------
    ParameterError
        With a message naming the parameter, the value received and what is expected.
    """
    types = expected if isinstance(expected, tuple) else (expected,)
    if float in types and int not in types:
        types = (*types, int)
    ok_type = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if not ok_type:
        raise ParameterError(
            f"parameter {name!r} must be {_type_names(expected)}, got {value!r} "
            f"({type(value).__name__}); fix it in the parameter file (params/*.yaml) or the -p option"
        )
    if choices is not None and value not in choices:
        raise ParameterError(f"parameter {name!r} must be one of {list(choices)}, got {value!r}")
    if value is not None and not isinstance(value, (str, list, tuple, dict)):
        if minimum is not None and value < minimum:
            raise ParameterError(f"parameter {name!r} must be >= {minimum}, got {value!r}")
        if maximum is not None and value > maximum:
            raise ParameterError(f"parameter {name!r} must be <= {maximum}, got {value!r}")
    return value


def check(values: Mapping[str, Any], spec: Mapping[str, Mapping[str, Any] | type | tuple[type, ...]]) -> None:
    """Check several parameters at once.

    Parameters
    ----------
    values
        Parameter names to values, e.g. ``{"k": k, "profile": profile}``.
    spec
        Parameter names to either an expected type (or tuple of types) or a dict of keyword arguments
        of :func:`check_one` (``{"type": int, "minimum": 2}``).

    Examples
    --------
    >>> check({"k": 10, "profile": "smoke"},
    ...       {"k": {"type": int, "minimum": 2}, "profile": {"type": str, "choices": PROFILES}})
    """
    for name, rule in spec.items():
        if name not in values:
            raise ParameterError(f"parameter {name!r} is missing")
        if isinstance(rule, Mapping):
            options = dict(rule)
            expected = options.pop("type")
            check_one(name, values[name], expected, **options)
        else:
            check_one(name, values[name], rule)


def check_common(profile: Any, seed: Any, device: Any) -> None:
    """Check the parameters every chapter takes: ``profile``, ``seed`` and ``device``."""
    check(
        {"profile": profile, "seed": seed, "device": device},
        {
            "profile": {"type": str, "choices": PROFILES},
            "seed": {"type": int, "minimum": 0},
            "device": str,
        },
    )
