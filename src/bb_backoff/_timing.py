"""Time values: the defaults for the one injectable clock and sleep, and conversions.

The clients take ``clock`` (monotonic seconds), ``now`` (epoch seconds) and
``sleep`` as constructor arguments.  The defaults below are the only place in
the package that names :func:`time.monotonic`, :func:`time.time`,
:func:`time.sleep` or :func:`anyio.sleep`; everything else receives time
through those arguments, which is what lets the test suite and the benchmark
run on virtual time.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Final, TypeAlias

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


MAX_WAIT: Final = 86_400.0
"""The longest single wait, in seconds: a day.

Every setting that is one wait (a policy's ``initial``, ``max_delay``,
``max_hint``, ``FixedRetry.delay``; the gate's window and probe waits; a
store's timeouts) takes at most this, as the clients' ``timeout`` does: the
sync sleep refuses about 2.9e9 s with an ``OverflowError`` (out of the
request, not a library error), the async one would sleep for centuries, and
a wait past a day is a mistake (milliseconds taken for seconds, ``1e10``),
Bitbucket's window being an hour.  Budgets add waits up and may be longer
(or ``math.inf``); no single sleep of a request is longer than this.
"""


MIN_WAIT: Final = 0.01
"""The shortest first wait a looping retry takes, in seconds: 10 ms.

A policy's ``initial`` and the gate's probe waits (``probe_initial``, and
so ``probe_max`` and ``breaker_max``) are refused below it.  They are what
paces a request that keeps failing: with ``factor=1`` the wait never
grows, and a ceiling of a microsecond sent 20,000 requests in 0.01 s, a
loop bounded only by how fast the server answers (the day's budget would
have allowed about 1e11).  At 10 ms such a loop sends 100 requests a second
at most without jitter, about 200 with full jitter, and the default
``factor`` of 2 doubles the wait from there; the defaults (1 s) are a
hundred times the floor.  10 ms is also the flow's smallest piece of a wait
at the gate (ten times the 1 ms below which a sleep cannot be judged).
"""


def to_seconds(
    value: object, name: str, *, allow_inf: bool = False, maximum: float | None = None
) -> float:
    """Convert a duration to non-negative float seconds.

    Args:
        value: seconds (int or float) or a :class:`~datetime.timedelta`.
        name: the parameter's name, for the error message.
        allow_inf: accept ``math.inf`` (meaning "no limit").
        maximum: the largest finite value taken, if any (``math.inf`` is
            still taken when ``allow_inf``).

    Returns:
        The duration in seconds.

    Raises:
        ValueError: if ``value`` is not a duration, is negative, NaN,
            infinite while ``allow_inf`` is false, or over ``maximum``.
            The message names ``name``.
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
    if math.isinf(seconds):
        if not allow_inf:
            raise ValueError(f"{name} must be finite, got {short_repr(value)}")
    elif maximum is not None and seconds > maximum:
        day = " (a day)" if maximum == MAX_WAIT else ""
        unlimited = ", or math.inf for no limit" if allow_inf else ""
        raise ValueError(
            f"{name} must be at most {maximum:,g} s{day}{unlimited}, got {short_repr(value)}"
        )
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


def wait(_instance: object, field: attrs.Attribute[Any], value: object) -> None:
    """attrs validator: one wait, from 0 to :data:`MAX_WAIT`; the error names the field."""
    to_seconds(value, field.name, maximum=MAX_WAIT)


def first_wait(_instance: object, field: attrs.Attribute[Any], value: object) -> None:
    """attrs validator: a wait that paces a loop, from :data:`MIN_WAIT` to :data:`MAX_WAIT`."""
    seconds = to_seconds(value, field.name, maximum=MAX_WAIT)
    if seconds < MIN_WAIT:
        raise ValueError(
            f"{field.name} must be at least {MIN_WAIT} s (MIN_WAIT): shorter, a request "
            f"that keeps failing hammers the API; got {short_repr(value)}"
        )


def wait_cap(_instance: object, field: attrs.Attribute[Any], value: object) -> None:
    """attrs validator: a cap on one wait, up to :data:`MAX_WAIT`, or ``math.inf`` (no cap)."""
    to_seconds(value, field.name, allow_inf=True, maximum=MAX_WAIT)


def is_async_callable(function: object) -> bool:
    """Whether calling ``function`` gives a coroutine to await.

    An ``async def`` function or method (through ``functools.partial`` too),
    or an object whose ``__call__`` is one.
    """
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
        getattr(function, "__call__", None)  # noqa: B004 (the method, not whether it exists)
    )
