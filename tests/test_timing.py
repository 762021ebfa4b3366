"""Tests for time values, ``bb_backoff._timing``: ``to_seconds`` and the attrs helpers."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import anyio
import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bb_backoff import ExponentialBackoff
from bb_backoff._timing import (
    default_async_sleep,
    default_clock,
    default_now,
    default_sleep,
    duration,
    finite,
    limit,
    to_seconds,
)
from strategies import seconds

INITIAL = attrs.fields(ExponentialBackoff).initial
MAX_DELAY = attrs.fields(ExponentialBackoff).max_delay


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0.0),
        (1, 1.0),
        (10**15, 1e15),
        (0.0, 0.0),
        (2.5, 2.5),
        (1e-9, 1e-9),
        (timedelta(0), 0.0),
        (timedelta(microseconds=1), 1e-6),
        (timedelta(minutes=2, milliseconds=500), 120.5),
        (timedelta(days=1), 86_400.0),
    ],
)
def test_to_seconds_accepts_ints_floats_and_timedeltas_as_float_seconds(
    value: float | timedelta, expected: float
) -> None:
    actual = to_seconds(value, "delay")
    assert (actual, type(actual)) == (expected, float)


def test_to_seconds_accepts_infinity_only_when_allowed() -> None:
    assert to_seconds(math.inf, "max_delay", allow_inf=True) == math.inf
    with pytest.raises(ValueError, match=r"^max_delay must be finite"):
        to_seconds(math.inf, "max_delay")


@pytest.mark.parametrize("allow_inf", [False, True])
@pytest.mark.parametrize(
    "value",
    [
        -1,
        -0.001,
        -math.inf,
        math.nan,
        timedelta(seconds=-1),
        timedelta(microseconds=-1),
    ],
)
def test_to_seconds_rejects_negative_and_nan_naming_the_parameter(
    value: float | timedelta, allow_inf: bool
) -> None:
    with pytest.raises(ValueError, match=r"^error_budget must be a non-negative duration"):
        to_seconds(value, "error_budget", allow_inf=allow_inf)


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        (True, "bool"),
        (False, "bool"),
        ("1", "str"),
        (None, "NoneType"),
        ([1], "list"),
        (Decimal(1), "Decimal"),
        (Fraction(1, 2), "Fraction"),
        (1 + 0j, "complex"),
    ],
)
def test_to_seconds_rejects_non_durations_including_bool_naming_the_parameter(
    value: object, type_name: str
) -> None:
    expected = rf"^initial must be seconds \(a number\) or a timedelta, not {type_name}$"
    with pytest.raises(ValueError, match=expected):
        to_seconds(value, "initial")


def test_to_seconds_rejects_an_int_too_large_for_a_float_naming_the_parameter() -> None:
    """10**400 seconds is a number but no float: a ValueError naming the parameter, not an
    OverflowError from ``float()``."""
    with pytest.raises(ValueError, match=r"^initial\b"):
        to_seconds(10**400, "initial")


@given(seconds(1e300))
def test_to_seconds_returns_any_finite_non_negative_float_unchanged(value: float) -> None:
    assert to_seconds(value, "delay") == value


@given(st.integers(min_value=0, max_value=10**18))
def test_to_seconds_converts_ints_to_float(value: int) -> None:
    assert to_seconds(value, "delay") == float(value)


@given(st.integers(min_value=0, max_value=10**15))
def test_to_seconds_reads_timedeltas_to_the_microsecond(microseconds: int) -> None:
    assert to_seconds(timedelta(microseconds=microseconds), "delay") == microseconds / 10**6


@given(st.floats(max_value=-1e-300))
def test_to_seconds_rejects_every_negative_float(value: float) -> None:
    with pytest.raises(ValueError, match=r"^delay\b"):
        to_seconds(value, "delay")


def test_duration_converts_timedeltas_and_passes_everything_else_to_the_validator() -> None:
    assert duration(timedelta(seconds=90)) == 90.0
    for value in (1.5, -1.0, "1", None):
        assert duration(value) is value  # type: ignore[arg-type]


@pytest.mark.parametrize("validator", [finite, limit])
def test_validators_name_the_attrs_field(
    validator: Callable[[object, attrs.Attribute[Any], object], None],
) -> None:
    with pytest.raises(ValueError, match=r"^initial\b"):
        validator(None, INITIAL, -1.0)


def test_finite_rejects_infinity_and_limit_accepts_it() -> None:
    limit(None, MAX_DELAY, math.inf)
    with pytest.raises(ValueError, match=r"^max_delay must be finite"):
        finite(None, MAX_DELAY, math.inf)


def test_defaults_are_the_real_clock_and_sleeps() -> None:
    """The one place that names the real clock and sleeps; everything else injects them."""
    assert (default_clock, default_now, default_sleep, default_async_sleep) == (
        time.monotonic,
        time.time,
        time.sleep,
        anyio.sleep,  # asyncio's under asyncio, trio's under trio
    )
