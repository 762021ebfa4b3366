"""Time values: the defaults for the one injectable clock and sleep, and conversions.

The clients take ``clock`` (monotonic seconds), ``now`` (epoch seconds) and
``sleep`` as constructor arguments.  The defaults below are the only place in
the package that names :func:`time.monotonic`, :func:`time.time`,
:func:`time.sleep` or :func:`anyio.sleep`; everything else receives time
through those arguments, which is what lets the test suite and the benchmark
run on virtual time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeAlias

import anyio
import attrs

from ._exceptions import short_repr

Seconds: TypeAlias = float | int | timedelta
"""A duration: seconds as a number, or a :class:`datetime.timedelta`."""

Clock: TypeAlias = Callable[[], float]
SyncSleep: TypeAlias = Callable[[float], object]
AsyncSleep: TypeAlias = Callable[[float], Awaitable[object] | object]

default_clock: Clock = time.monotonic
default_now: Clock = time.time
default_sleep: SyncSleep = time.sleep
# anyio's: asyncio's sleep under asyncio, trio's under trio (httpx runs on both).
default_async_sleep: AsyncSleep = anyio.sleep


def to_seconds(value: object, name: str, *, allow_inf: bool = False) -> float:
    """Convert a duration to non-negative float seconds.

    Args:
        value: seconds (int or float) or a :class:`~datetime.timedelta`.
        name: the parameter's name, for the error message.
        allow_inf: accept ``math.inf`` (meaning "no limit").

    Returns:
        The duration in seconds.

    Raises:
        ValueError: if ``value`` is not a duration, is negative, NaN, or
            infinite while ``allow_inf`` is false. The message names ``name``.
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:
            raise ValueError(f"{name} is too large to be a duration: {short_repr(value)}") from None
    else:
        raise ValueError(
            f"{name} must be seconds (a number) or a timedelta, not {type(value).__name__}"
        )
    if math.isnan(seconds) or seconds < 0:
        raise ValueError(f"{name} must be a non-negative duration, got {short_repr(value)}")
    if math.isinf(seconds) and not allow_inf:
        raise ValueError(f"{name} must be finite, got {short_repr(value)}")
    return seconds


def duration(value: float | timedelta) -> float:
    """attrs converter: a ``timedelta`` becomes seconds; anything else is left to the validator."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    return value  # validated (and named in the error) by ``finite`` or ``limit``


def finite(_instance: object, field: attrs.Attribute[Any], value: object) -> None:
    """attrs validator: a finite, non-negative duration; the error names the field."""
    to_seconds(value, field.name)


def limit(_instance: object, field: attrs.Attribute[Any], value: object) -> None:
    """attrs validator: a non-negative duration where ``math.inf`` means "no limit"."""
    to_seconds(value, field.name, allow_inf=True)
