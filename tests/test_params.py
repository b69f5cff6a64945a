"""Notebook parameter validation gives errors that name the parameter."""

import pytest

from sslgeom import params


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
