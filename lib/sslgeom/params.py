"""Validation of notebook parameters.

Papermill injects whatever a parameter file holds; a typo in YAML (``k: "50"``, ``profile: defualt``,
``spacing: .nan``, ``device: gpu``) should stop a chapter at its first cell with a message that names
the parameter, not fail twenty cells later inside NumPy. Chapters call :func:`check_common` and
:func:`check` on their parameter cell's values in the first code cell after it.

A rule is an expected type (or tuple of types) or a dict of keyword arguments of :func:`check_one`
with the type under ``"type"``::

    {"k": {"type": int, "minimum": 2},
     "radii": {"type": list, "items": float, "exclusive_minimum": 0, "min_length": 1},
     "models": {"type": (list, type(None)), "items": str}}

:func:`section_parameters` checks the layout of a parameter file (``params/*.yaml``): the ``common``
section and each notebook's section must be mappings of parameter names to values.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

PROFILES = ("smoke", "default", "full")
#: Device types a chapter can run on; ``torch.device`` parses the name, this list restricts the type.
DEVICE_TYPES = ("cpu", "cuda", "mps")
DEVICE_FORMS = "'cpu', 'cuda', 'cuda:N' (N = 0, 1, ...) or 'mps'"
FIX_HINT = "fix it in the parameter file (params/*.yaml) or with papermill's -p option"

Types = type | tuple[type, ...]
Rule = Types | Mapping[str, Any]

# Values whose bounds and choices apply to their elements (with ``items``), not to themselves.
_CONTAINERS = (list, tuple, dict)


class ParameterError(TypeError, ValueError):
    """A notebook parameter has the wrong type or an invalid value."""


def _fail(label: str, problem: str) -> ParameterError:
    """The error for ``label`` (e.g. ``parameter 'k'``), with the hint on where to fix it."""
    return ParameterError(f"{label} {problem}; {FIX_HINT}")


def _label(name: str) -> str:
    return f"parameter {name!r}"


def _as_tuple(expected: Types) -> tuple[type, ...]:
    return expected if isinstance(expected, tuple) else (expected,)


def _type_names(expected: Types) -> str:
    return " or ".join("None" if t is type(None) else t.__name__ for t in _as_tuple(expected))


def _check_type(label: str, value: Any, expected: Types) -> None:
    """Raise unless ``value`` is one of ``expected``.

    ``int`` is accepted where ``float`` is (YAML writes ``1.0`` as ``1`` easily), but ``bool`` is
    not accepted as ``int``: ``True`` is an int to Python, never a count or a size to a reader.
    """
    types = _as_tuple(expected)
    if float in types and int not in types:
        types = (*types, int)
    is_bool = isinstance(value, bool) and bool not in types
    if not isinstance(value, types) or is_bool:
        raise _fail(label, f"must be {_type_names(expected)}, got {value!r} ({type(value).__name__})")


def _check_finite(label: str, value: Any, allow_inf: bool) -> None:
    """Refuse NaN (always) and infinities (unless allowed) for floats.

    Needed before the bounds: every comparison with NaN is False, so NaN passes any minimum and
    maximum, and ``inf`` passes every minimum.
    """
    if not isinstance(value, float) or math.isfinite(value):
        return
    if math.isnan(value):
        raise _fail(label, "must be a number, got NaN")
    if not allow_inf:
        raise _fail(label, f"must be finite, got {value!r}")


def _check_choice(label: str, value: Any, choices: Sequence[Any] | None) -> None:
    if choices is not None and value not in choices:
        raise _fail(label, f"must be one of {list(choices)}, got {value!r}")


def _check_bounds(
    label: str,
    value: Any,
    minimum: float | None,
    maximum: float | None,
    exclusive_minimum: float | None,
) -> None:
    """Compare numbers with the bounds; other values (None, strings) have no bounds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if minimum is not None and value < minimum:
        raise _fail(label, f"must be >= {minimum}, got {value!r}")
    if exclusive_minimum is not None and value <= exclusive_minimum:
        raise _fail(label, f"must be > {exclusive_minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise _fail(label, f"must be <= {maximum}, got {value!r}")


def _check_value(label: str, value: Any, bounds: Mapping[str, Any]) -> None:
    """Finiteness, choices and bounds of one scalar (a parameter or an element of one)."""
    _check_finite(label, value, bounds["allow_inf"])
    _check_choice(label, value, bounds["choices"])
    _check_bounds(label, value, bounds["minimum"], bounds["maximum"], bounds["exclusive_minimum"])


def _check_length(label: str, value: Any, min_length: int | None) -> None:
    if min_length is not None and len(value) < min_length:
        raise _fail(label, f"must have at least {min_length} element(s), got {value!r}")


def _check_keys(label: str, value: Mapping[Any, Any], keys: Sequence[Any] | None) -> None:
    """Refuse unknown keys of a mapping: a misspelt key would otherwise be ignored silently."""
    unknown = [key for key in value if keys is not None and key not in keys]
    if unknown:
        raise _fail(label, f"has unknown keys {unknown}; allowed keys are {list(keys or [])}")


def _elements(name: str, value: list | tuple | dict) -> Iterator[tuple[str, Any]]:
    """``(label, element)`` pairs; labels carry the index (or key) so the message can point at it."""
    if isinstance(value, dict):
        for key, element in value.items():
            yield f"{_label(name)} entry {key!r}", element
    else:
        for index, element in enumerate(value):
            yield f"{_label(name)} element [{index}]", element


def _has_bounds(bounds: Mapping[str, Any]) -> bool:
    return any(bounds[key] is not None for key in ("minimum", "maximum", "exclusive_minimum"))


def check_one(
    name: str,
    value: Any,
    expected: Types,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: float | None = None,
    choices: Sequence[Any] | None = None,
    items: Types | None = None,
    keys: Sequence[Any] | None = None,
    min_length: int | None = None,
    allow_inf: bool = False,
) -> Any:
    """Check one parameter and return it unchanged.

    Parameters
    ----------
    name
        The parameter's name, used in every message.
    value
        What the parameter cell (or papermill) set.
    expected
        Type or tuple of types; ``type(None)`` allows None (meaning "not set", so no other check
        applies to it). ``bool`` is not accepted where ``int`` is, and ``int`` is accepted where
        ``float`` is.
    minimum, maximum, exclusive_minimum
        Bounds (``>= minimum``, ``<= maximum``, ``> exclusive_minimum``) of a number, or of each
        element of a list, tuple or dict value when ``items`` is given.
    choices
        Allowed values: of the value, or of each element when the value is a container and
        ``items`` is given (without ``items``, of the container as a whole).
    items
        Type (or tuple of types) of each element of a list or tuple value, or of each value of a
        dict value. Without it, elements are not checked.
    keys
        Allowed keys of a dict value.
    min_length
        Minimum length of a str, list, tuple or dict value.
    allow_inf
        Accept ``inf`` and ``-inf`` floats. NaN is never accepted.

    Returns
    -------
    Any
        ``value`` itself.

    Raises
    ------
    ParameterError
        With a message naming the parameter (and the element's index or key), the value received,
        what is expected and where to fix it.

    Examples
    --------
    >>> check_one("radii", [0.5, 1.0], list, items=float, exclusive_minimum=0, min_length=1)
    [0.5, 1.0]
    """
    label = _label(name)
    bounds = {"minimum": minimum, "maximum": maximum, "exclusive_minimum": exclusive_minimum,
              "choices": choices, "allow_inf": allow_inf}
    _check_type(label, value, expected)
    if value is None:
        return value  # the rule's type allows None ("not set"): bounds and choices are for set values
    if isinstance(value, (str, *_CONTAINERS)):
        _check_length(label, value, min_length)
    if isinstance(value, _CONTAINERS):
        _check_container(name, value, items, keys, bounds)
    else:
        _check_value(label, value, bounds)
    return value


def _check_container(
    name: str, value: list | tuple | dict, items: Types | None, keys: Sequence[Any] | None,
    bounds: Mapping[str, Any],
) -> None:
    """Keys of a dict, then each element's type, finiteness, choices and bounds (with ``items``)."""
    if isinstance(value, dict):
        _check_keys(_label(name), value, keys)
    if items is None:
        if _has_bounds(bounds):
            # a mistake in the chapter's rule: the bounds would be ignored, so say so instead
            raise TypeError(f"params.check_one: bounds for {name!r} need `items` when its value is a container")
        _check_choice(_label(name), value, bounds["choices"])  # the container as a whole
        return
    for element_label, element in _elements(name, value):
        _check_type(element_label, element, items)
        _check_value(element_label, element, bounds)


def _rule_options(name: str, rule: Rule) -> tuple[Types, dict[str, Any]]:
    """Split a rule of :func:`check` into the expected type(s) and the keywords of :func:`check_one`."""
    if not isinstance(rule, Mapping):
        return rule, {}
    options = dict(rule)
    if "type" not in options:
        # a mistake in the chapter, not in the parameter file: say so, not "fix params/*.yaml"
        raise TypeError(f"params.check: the rule for {name!r} has no 'type': {dict(rule)}")
    return options.pop("type"), options


def check(values: Mapping[str, Any], spec: Mapping[str, Rule]) -> None:
    """Check several parameters at once.

    Parameters
    ----------
    values
        Parameter names to values, e.g. ``{"k": k, "profile": profile}``.
    spec
        Parameter names to either an expected type (or tuple of types) or a dict of keyword arguments
        of :func:`check_one` plus ``"type"`` (``{"type": int, "minimum": 2}``,
        ``{"type": list, "items": str, "choices": ["mean", "median"]}``).

    Raises
    ------
    ParameterError
        If a parameter is missing from ``values`` or breaks its rule.
    TypeError
        If ``values`` holds a name that ``spec`` has no rule for (it would go unchecked), or a rule
        has no ``"type"``: both are mistakes in the chapter's code.

    Examples
    --------
    >>> check({"k": 10, "profile": "smoke"},
    ...       {"k": {"type": int, "minimum": 2}, "profile": {"type": str, "choices": PROFILES}})
    """
    unchecked = sorted(set(values) - set(spec))
    if unchecked:
        raise TypeError(f"params.check: no rule for {unchecked}; add one to the spec so they are checked")
    for name, rule in spec.items():
        if name not in values:
            raise ParameterError(f"parameter {name!r} is missing")
        expected, options = _rule_options(name, rule)
        check_one(name, values[name], expected, **options)


def check_device(name: str, value: Any) -> str:
    """Check a torch device name such as ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"mps"``.

    The syntax is ``torch.device``'s, so what passes here is what the chapter's torch calls accept;
    whether the device exists on this machine is not checked (torch says so at first use).

    Raises
    ------
    ParameterError
        If ``value`` is not a str, does not parse, or names a device type not in :data:`DEVICE_TYPES`.
    """
    check_one(name, value, str)
    import torch  # here, not at module level: importing sslgeom.params stays light for numeric checks

    try:
        device_type = torch.device(value).type
    except (RuntimeError, ValueError, TypeError):
        device_type = None
    if device_type not in DEVICE_TYPES:
        raise _fail(_label(name), f"must be a device name {DEVICE_FORMS}, got {value!r}")
    return value


def check_common(profile: Any, seed: Any, device: Any) -> None:
    """Check the parameters every chapter takes: ``profile``, ``seed`` and ``device``."""
    check(
        {"profile": profile, "seed": seed},
        {"profile": {"type": str, "choices": PROFILES}, "seed": {"type": int, "minimum": 0}},
    )
    check_device("device", device)


def check_section(name: str, section: Any, source: str = "the parameter file") -> dict[str, Any]:
    """Check one section of a parameter file and return it as a dict.

    Parameters
    ----------
    name
        The section's name: ``common`` or a notebook's file stem.
    section
        What YAML gave for it; ``None`` (an empty section, ``01_models:``) counts as ``{}``.
    source
        The file, for the message.

    Raises
    ------
    ParameterError
        If the section is not a mapping (a YAML list, say) or has a key that is not a str.
    """
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise ParameterError(
            f"section {name!r} of {source} must be a mapping of parameter names to values "
            f"(`{name}:` then indented `name: value` lines), got {type(section).__name__} {section!r}"
        )
    bad_keys = [key for key in section if not isinstance(key, str)]
    if bad_keys:
        raise ParameterError(f"section {name!r} of {source} has keys that are not parameter names: {bad_keys}")
    return dict(section)


def section_parameters(spec: Any, stem: str, source: str = "the parameter file") -> dict[str, Any]:
    """The parameters of one notebook in a parameter file: ``common``, then the notebook's section.

    Parameters
    ----------
    spec
        The loaded YAML file (``yaml.safe_load``); ``None`` (an empty file) counts as ``{}``.
    stem
        The notebook's file stem, e.g. ``"04_geometry_vs_paradigm"``.
    source
        The file, for the message.

    Raises
    ------
    ParameterError
        If the file or one of the two sections is not a mapping; the message names the section.
    """
    if spec is None:
        spec = {}
    if not isinstance(spec, Mapping):
        raise ParameterError(
            f"{source} must be a mapping of sections (`common:` and one per notebook, named by its "
            f"file stem), got {type(spec).__name__}"
        )
    parameters = check_section("common", spec.get("common"), source)
    parameters.update(check_section(stem, spec.get(stem), source))
    return parameters
