"""Notebook parameter validation gives errors that name the parameter."""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sslgeom import params

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def test_valid_parameters_pass():
    params.check({"k": 10, "scale": 2, "name": "x"}, {"k": {"type": int, "minimum": 2}, "scale": float, "name": str})
    params.check_common("smoke", 0, "cpu")


@pytest.mark.parametrize(
    ("value", "message"),
    [("50", "must be int"), (True, "must be int"), (1, ">= 2"), (2.5, "must be int")],
)
def test_wrong_type_or_range_names_the_parameter(value, message):
    with pytest.raises(params.ParameterError, match=f"'k'.*{message}|{message}"):
        params.check({"k": value}, {"k": {"type": int, "minimum": 2}})


def test_unknown_profile_lists_choices():
    with pytest.raises(params.ParameterError, match="one of \\['smoke', 'default', 'full'\\]"):
        params.check_common("defualt", 0, "cpu")


def test_negative_seed_rejected():
    with pytest.raises(params.ParameterError, match="'seed' must be >= 0"):
        params.check_common("smoke", -1, "cpu")


def test_missing_parameter_reported():
    with pytest.raises(params.ParameterError, match="'k' is missing"):
        params.check({}, {"k": int})


def test_error_is_both_type_and_value_error():
    with pytest.raises(TypeError):
        params.check_one("k", "x", int)
    with pytest.raises(ValueError):
        params.check_one("k", "x", int)


def test_messages_say_where_to_fix():
    with pytest.raises(params.ParameterError, match=re.escape("params/*.yaml") + ".*-p option"):
        params.check_one("k", 1, int, minimum=2)


# --- bool, NaN and infinities ---------------------------------------------------------------------


@pytest.mark.parametrize("expected", [int, float, (int, type(None))])
@pytest.mark.parametrize("value", [True, False])
def test_bool_is_not_a_number(expected, value):
    with pytest.raises(params.ParameterError, match="'n'.*must be"):
        params.check_one("n", value, expected)


@pytest.mark.parametrize(("value", "message"), [(math.nan, "NaN"), (math.inf, "finite"), (-math.inf, "finite")])
def test_nan_and_infinities_refused(value, message):
    # without a bound too: NaN and inf must not slip through a rule that only names the type
    for rule in ({}, {"minimum": 1e-3}, {"maximum": 10.0}, {"minimum": 0.0, "maximum": 1.0}):
        with pytest.raises(params.ParameterError, match=f"parameter 'spacing' must .*{message}"):
            params.check_one("spacing", value, float, **rule)


def test_allow_inf_accepts_infinities_but_never_nan():
    assert params.check_one("limit", math.inf, float, allow_inf=True) == math.inf
    assert params.check_one("limit", -math.inf, float, allow_inf=True) == -math.inf
    with pytest.raises(params.ParameterError, match="'limit' must be >= 0"):
        params.check_one("limit", -math.inf, float, minimum=0, allow_inf=True)
    with pytest.raises(params.ParameterError, match="'limit'.*NaN"):
        params.check_one("limit", math.nan, float, allow_inf=True)


def test_exclusive_minimum():
    assert params.check_one("c", 1e-9, float, exclusive_minimum=0) == 1e-9
    with pytest.raises(params.ParameterError, match="'c' must be > 0"):
        params.check_one("c", 0.0, float, exclusive_minimum=0)


# --- lists, tuples and dicts ----------------------------------------------------------------------


def test_list_elements_pass_and_are_returned_unchanged():
    radii = [0.5, 1, 2.0]  # an int is a float here, as in YAML
    assert params.check_one("radii", radii, list, items=float, exclusive_minimum=0) is radii
    assert params.check_one("models", None, (list, type(None)), items=str, min_length=1) is None


@pytest.mark.parametrize(
    ("value", "rule", "message"),
    [
        ([5, "10", 20], {"items": int}, r"'k_values' element \[1\] must be int, got '10'"),
        ([5, True], {"items": int}, r"'k_values' element \[1\] must be int, got True"),
        ([5, 10, 1], {"items": int, "minimum": 2}, r"'k_values' element \[2\] must be >= 2, got 1"),
        ([5, 500], {"items": int, "maximum": 100}, r"'k_values' element \[1\] must be <= 100"),
        ([1.0, math.nan], {"items": float}, r"'k_values' element \[1\] must be a number, got NaN"),
        ([math.inf], {"items": float, "minimum": 0}, r"'k_values' element \[0\] must be finite"),
        ([0.1, 0.0], {"items": float, "exclusive_minimum": 0}, r"'k_values' element \[1\] must be > 0"),
        (["mean", "mode"], {"items": str, "choices": ["mean", "median"]},
         r"'k_values' element \[1\] must be one of \['mean', 'median'\], got 'mode'"),
        ([], {"items": int, "min_length": 1}, r"'k_values' must have at least 1 element"),
    ],
)
def test_list_elements_checked_with_their_index(value, rule, message):
    with pytest.raises(params.ParameterError, match=message):
        params.check_one("k_values", value, list, **rule)


def test_list_where_mapping_expected_and_vice_versa():
    with pytest.raises(params.ParameterError, match="'n_points' must be int or dict or None, got \\[9\\]"):
        params.check_one("n_points", [9], (int, dict, type(None)), items=int)
    with pytest.raises(params.ParameterError, match="'models' must be list or None, got \\{"):
        params.check_one("models", {"simclr": 1}, (list, type(None)), items=str)


def test_dict_values_and_keys():
    rule = {"items": int, "minimum": 2, "keys": ["rotation", "shift"]}
    assert params.check_one("n_points", {"rotation": 9}, dict, **rule) == {"rotation": 9}
    assert params.check_one("n_points", 9, (int, dict), **rule) == 9  # the bounds hold for a plain int too
    with pytest.raises(params.ParameterError, match="'n_points' entry 'shift' must be >= 2, got 1"):
        params.check_one("n_points", {"rotation": 9, "shift": 1}, dict, **rule)
    with pytest.raises(params.ParameterError, match="'n_points' has unknown keys \\['rotaton'\\]"):
        params.check_one("n_points", {"rotaton": 9}, dict, **rule)


def test_bounds_on_a_container_without_items_is_a_rule_mistake():
    # not a ParameterError: the parameter file is fine, the chapter's rule would ignore its bounds
    with pytest.raises(TypeError, match="need `items`") as caught:
        params.check_one("k_values", [1], list, minimum=2)
    assert not isinstance(caught.value, params.ParameterError)


def test_check_refuses_values_without_a_rule():
    with pytest.raises(TypeError, match="no rule for \\['n'\\]"):
        params.check({"k": 3, "n": 4}, {"k": int})
    with pytest.raises(TypeError, match="rule for 'k' has no 'type'"):
        params.check({"k": 3}, {"k": {"minimum": 2}})


def test_check_passes_items_through():
    with pytest.raises(params.ParameterError, match=r"'shots' element \[0\] must be >= 1"):
        params.check({"shots": [0, 5]}, {"shots": {"type": list, "items": int, "minimum": 1}})


# --- devices --------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", ["cpu", "cuda", "cuda:0", "cuda:1", "mps"])
def test_good_device_names_accepted(device):
    # availability is not checked: 'cuda:1' passes on a machine without a GPU
    assert params.check_device("device", device) == device
    params.check_common("smoke", 0, device)


@pytest.mark.parametrize("device", ["gpu", "CUDA", "cuda:x", "cuda:-1", "cuda:01", " cpu", "cpu ", "", "meta", "xla"])
def test_bad_device_names_refused(device):
    with pytest.raises(params.ParameterError, match="parameter 'device' must be a device name 'cpu', 'cuda', 'cuda:N'"):
        params.check_common("smoke", 0, device)


@pytest.mark.parametrize("device", [0, None, ["cpu"]])
def test_device_must_be_a_string(device):
    with pytest.raises(params.ParameterError, match="parameter 'device' must be str"):
        params.check_common("smoke", 0, device)


# --- sections of a parameter file -----------------------------------------------------------------


def test_sections_merge_common_then_notebook():
    spec = {"common": {"profile": "smoke", "seed": 0}, "04_x": {"seed": 3, "k": 8}, "05_y": {"k": 1}}
    assert params.section_parameters(spec, "04_x") == {"profile": "smoke", "seed": 3, "k": 8}
    assert params.section_parameters({"common": {"seed": 1}, "00_data": None}, "00_data") == {"seed": 1}
    assert params.section_parameters({"common": {"seed": 1}}, "03_z") == {"seed": 1}
    assert params.section_parameters(None, "03_z") == {}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"common": {"seed": 0}, "04_x": ["k", 8]}, "section '04_x' of p.yaml must be a mapping.*got list"),
        ({"common": ["profile", "smoke"]}, "section 'common' of p.yaml must be a mapping.*got list"),
        ({"common": "smoke"}, "section 'common' of p.yaml must be a mapping.*got str"),
        ({"04_x": {1: 2}}, "section '04_x' of p.yaml has keys that are not parameter names: \\[1\\]"),
        (["common", "04_x"], "p.yaml must be a mapping of sections"),
    ],
)
def test_section_of_the_wrong_container_type_refused(spec, message):
    with pytest.raises(params.ParameterError, match=message):
        params.section_parameters(spec, "04_x", source="p.yaml")


# --- properties: a ParameterError naming the parameter, or the value unchanged --------------------

ANY_VALUE = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(),
    st.booleans(),
    st.none(),
    st.text(max_size=12),
    st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.booleans(),
                       st.text(max_size=5), st.none()), max_size=6),
)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite_in(value: Any, low: float, high: float) -> bool:
    return _number(value) and math.isfinite(value) and low <= value <= high


# Rules and, written independently of params.py, what a value must be to satisfy them.
RULES: list[tuple[str, dict[str, Any], Callable[[Any], bool]]] = [
    ("spacing", {"type": float, "minimum": -1.0, "maximum": 10.0}, lambda v: _finite_in(v, -1.0, 10.0)),
    ("limit", {"type": float, "allow_inf": True},
     lambda v: _number(v) and not (isinstance(v, float) and math.isnan(v))),
    ("k", {"type": int, "minimum": 0, "maximum": 100},
     lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 100),
    ("n_points", {"type": (int, type(None)), "minimum": 2},
     lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 2)),
    ("profile", {"type": str, "choices": params.PROFILES}, lambda v: v in params.PROFILES and isinstance(v, str)),
    ("model_name", {"type": str, "min_length": 1}, lambda v: isinstance(v, str) and len(v) >= 1),
    ("radii", {"type": list, "items": float, "exclusive_minimum": 0, "min_length": 1},
     lambda v: isinstance(v, list) and len(v) >= 1 and all(_finite_in(x, 0, math.inf) and x > 0 for x in v)),
    ("shots", {"type": list, "items": int, "minimum": 1},
     lambda v: isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in v)),
    ("tasks", {"type": (list, type(None)), "items": str, "choices": ["a", "b"]},
     lambda v: v is None or (isinstance(v, list) and all(isinstance(x, str) and x in ("a", "b") for x in v))),
]


def _assert_checked(name: str, value: Any, rule: dict[str, Any], satisfied: Callable[[Any], bool]) -> None:
    """``check_one`` returns ``value`` itself when it satisfies the rule, else a ParameterError names it."""
    options = dict(rule)
    expected = options.pop("type")
    try:
        result = params.check_one(name, value, expected, **options)
    except params.ParameterError as error:
        assert f"parameter {name!r}" in str(error)
        assert not satisfied(value), f"{value!r} satisfies {rule} but was refused: {error}"
    else:
        assert result is value
        assert satisfied(value), f"{value!r} breaks {rule} but was accepted"


@settings(max_examples=50, deadline=None)
@given(value=ANY_VALUE, which=st.integers(min_value=0, max_value=len(RULES) - 1))
def test_property_any_value_any_rule(value, which):
    name, rule, satisfied = RULES[which]
    _assert_checked(name, value, rule, satisfied)


@settings(max_examples=50, deadline=None)
@given(value=st.floats(allow_nan=True, allow_infinity=True))
def test_property_floats(value):
    _assert_checked("spacing", value, {"type": float, "minimum": -1.0, "maximum": 10.0},
                    lambda v: _finite_in(v, -1.0, 10.0))


@settings(max_examples=50, deadline=None)
@given(value=st.integers())
def test_property_integers(value):
    _assert_checked("k", value, {"type": int, "minimum": 0, "maximum": 100}, lambda v: 0 <= v <= 100)


@settings(max_examples=50, deadline=None)
@given(value=st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.booleans())))
def test_property_lists(value):
    name, rule, satisfied = RULES[6]  # radii
    _assert_checked(name, value, rule, satisfied)


@settings(max_examples=50, deadline=None)
@given(value=st.text())
def test_property_device_text(value):
    # any text: accepted unchanged or refused with a ParameterError, never torch's RuntimeError
    try:
        result = params.check_device("device", value)
    except params.ParameterError as error:
        assert "parameter 'device'" in str(error)
    else:
        assert result is value
        assert re.fullmatch(r"(cpu|cuda|mps)(:(0|[1-9][0-9]*))?", value)


# --- every notebook parameter is checked in the first code cell after the parameters cell ---------


def _cells(source: str) -> list[tuple[str, str]]:
    """``(header, body)`` of each py:percent cell; the header is the ``# %%`` line."""
    parts = re.split(r"^(# %%.*)$", source, flags=re.MULTILINE)
    return list(zip(parts[1::2], parts[2::2]))


def _parameter_names(body: str) -> list[str]:
    return [target.id for node in ast.parse(body).body if isinstance(node, ast.Assign)
            for target in node.targets if isinstance(target, ast.Name)]


def _check_calls(body: str) -> list[ast.Call]:
    return [node for node in ast.walk(ast.parse(body)) if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "params" and node.func.attr.startswith("check")]


def _checked_names(call: ast.Call) -> set[str]:
    """Parameters a ``params.check_common(...)`` or ``params.check({...}, {...})`` call checks."""
    if call.func.attr == "check_common":
        names = [arg.id for arg in call.args if isinstance(arg, ast.Name)]
        assert names == ["profile", "seed", "device"], ast.unparse(call)
        return set(names)
    values, spec = call.args[:2]
    assert isinstance(values, ast.Dict) and isinstance(spec, ast.Dict), ast.unparse(call)
    value_keys = {key.value: value for key, value in zip(values.keys, values.values)}
    for key, value in value_keys.items():
        # {"n_base": n_base}, not {"n_base": n_views}: the rule must see the parameter it names
        assert isinstance(value, ast.Name) and value.id == key, f"{key!r}: {ast.unparse(value)}"
    assert set(value_keys) == {key.value for key in spec.keys}, ast.unparse(call)
    return set(value_keys)


NOTEBOOK_FILES = sorted(NOTEBOOKS.glob("[0-9]*.py"))


def test_chapters_found():
    assert len(NOTEBOOK_FILES) >= 6


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.stem)
def test_every_notebook_parameter_is_checked_in_the_first_code_cell(path):
    cells = _cells(path.read_text())
    tagged = [i for i, (header, _) in enumerate(cells) if re.search(r'tags=\[[^]]*"parameters"', header)]
    assert len(tagged) == 1, f"{path.name}: expected one cell tagged parameters"
    names = _parameter_names(cells[tagged[0]][1])
    assert {"profile", "seed", "device"} <= set(names)
    first_code = next(body for header, body in cells[tagged[0] + 1:] if "[markdown]" not in header)
    checked = set().union(*(_checked_names(call) for call in _check_calls(first_code)))
    unchecked = [name for name in names if name not in checked]
    assert not unchecked, f"{path.name}: parameters not checked by params.check* in the first code cell: {unchecked}"
