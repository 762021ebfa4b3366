"""Hypothesis strategies shared by the policy, hint, timing and account-gate tests.

The ranges are chosen so that ``initial * factor ** n`` stays finite for the
sequences the property tests simulate (at most ``MAX_STEPS`` retries); the
overflow clamp has its own tests with huge retry counts.
"""

from __future__ import annotations

import functools
import math
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, Final, TypeVar

import attrs
from hypothesis import strategies as st

from bb_backoff import Hint, Outcome
from bb_backoff._hints import RATELIMIT_RESET, RETRY_AFTER
from bb_backoff._policy import JitterMode
from bb_backoff._window import ERROR, OK, RATE_LIMITED, VOID, Observation, WindowParams

JITTER_MODES: Final[tuple[JitterMode, ...]] = (
    "full",
    "equal",
    "decorrelated",
    "multiplicative",
    "none",
)
IDEMPOTENT: Final = ("GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE")
NON_IDEMPOTENT: Final = ("POST", "PATCH")
RETRYABLE_STATUSES: Final = (408, 429, 500, 502, 503, 504, 599)
FINAL_STATUSES: Final = (200, 201, 204, 301, 304, 400, 401, 403, 404, 410, 422)

# Wed, 21 Oct 2015 07:28:00 GMT: the RFC 9110 example date, as epoch seconds.
FIXED_NOW: Final = 1_445_412_480.0
# The longest sequence of decide() calls one example simulates.
MAX_STEPS: Final = 80

# Epoch seconds between 2001-09-09 and 2100-01-01, as whole seconds (HTTP-dates
# carry no fraction).
T = TypeVar("T")

EPOCH_SECONDS: Final = st.integers(min_value=1_000_000_000, max_value=4_102_444_800)


@functools.cache
def seconds(max_value: float = 3600.0) -> st.SearchStrategy[float]:
    """Finite, non-negative durations in seconds, up to ``max_value``.

    No subnormals: below 1e-308 s the rounding of ``base / 2`` alone exceeds
    any relative tolerance, and no real wait is that short.
    """
    return st.floats(
        min_value=0.0,
        max_value=max_value,
        allow_nan=False,
        allow_infinity=False,
        allow_subnormal=False,
    )


@functools.cache
def limits(max_value: float) -> st.SearchStrategy[float]:
    """A finite limit up to ``max_value``, or ``math.inf`` (no limit)."""
    return st.one_of(seconds(max_value), st.just(math.inf))


@functools.cache
def hints(max_value: float = 10_000.0) -> st.SearchStrategy[Hint]:
    """Server hints, from either header, some of them longer than any ``max_hint`` drawn."""
    return st.builds(Hint, seconds(max_value), st.sampled_from([RETRY_AFTER, RATELIMIT_RESET]))


# Strategies are built once, here: building them inside a composite on every
# draw costs more than the draws themselves.
_CAP_ABOVE_INITIAL: Final = st.none() | seconds(600.0)  # None: no cap (math.inf)
_FACTORS: Final = st.floats(min_value=1.0, max_value=4.0)
_JITTERS: Final = st.sampled_from(JITTER_MODES)
_SEEDS: Final = st.integers(min_value=0, max_value=2**32)
_MAX_ATTEMPTS: Final = st.none() | st.integers(min_value=1, max_value=MAX_STEPS)
_ERROR_ATTEMPTS: Final = st.integers(min_value=1, max_value=20)


def _backoff_kwargs(
    drawn: tuple[float, float | None, float, JitterMode, int, float, bool, bool],
) -> dict[str, Any]:
    initial, extra, factor, jitter, seed, max_hint, respect_hints, transport = drawn
    return {
        "initial": initial,
        "factor": factor,
        "max_delay": math.inf if extra is None else initial + extra,
        "jitter": jitter,
        "seed": seed,
        "max_hint": max_hint,
        "respect_hints": respect_hints,
        "retry_transport_errors": transport,
    }


def _limits_kwargs(drawn: tuple[int | None, int, float, float]) -> dict[str, Any]:
    max_attempts, error_attempts, error_budget, rate_limit_budget = drawn
    return {
        "max_attempts": max_attempts,
        "error_attempts": error_attempts,
        "error_budget": error_budget,
        "rate_limit_budget": rate_limit_budget,
    }


_UNLIMITED: Final[dict[str, Any]] = {
    "max_attempts": None,
    "error_attempts": MAX_STEPS + 1,
    "error_budget": math.inf,
    "rate_limit_budget": math.inf,
}


@functools.cache
def backoff_kwargs(
    *, jitter: JitterMode | None = None, unlimited: bool = False
) -> st.SearchStrategy[dict[str, Any]]:
    """Valid keyword arguments for :class:`~bb_backoff.ExponentialBackoff`.

    Args:
        jitter: fix the jitter mode instead of drawing it.
        unlimited: no attempt limits and infinite budgets, so that a
            sequence of retryable outcomes never stops for those reasons.
    """
    core = st.tuples(
        st.floats(min_value=0.01, max_value=10.0),  # initial: MIN_WAIT (10 ms) at least
        _CAP_ABOVE_INITIAL,
        _FACTORS,
        _JITTERS if jitter is None else st.just(jitter),
        _SEEDS,
        limits(3600.0),
        st.booleans(),
        st.booleans(),
    ).map(_backoff_kwargs)
    limit = (
        st.just(_UNLIMITED)
        if unlimited
        else st.tuples(_MAX_ATTEMPTS, _ERROR_ATTEMPTS, limits(600.0), limits(7200.0)).map(
            _limits_kwargs
        )
    )
    return st.tuples(core, limit).map(lambda parts: parts[0] | parts[1])


def _outcome(parts: tuple[Outcome, Hint | None]) -> Outcome:
    template, hint = parts
    return Outcome(method=template.method, status=template.status, sent=template.sent, hint=hint)


def _with_hints(
    templates: st.SearchStrategy[Outcome], hint: st.SearchStrategy[Hint | None] | None
) -> st.SearchStrategy[Outcome]:
    return st.tuples(templates, hint if hint is not None else st.none() | hints()).map(_outcome)


# Every method with every interesting status and both ``sent`` flags, no hint.
# Drawing one template beats drawing method, status and sent separately: long
# runs of outcomes are the slowest thing these tests generate.
OUTCOME_TEMPLATES: Final = tuple(
    Outcome(method=method, status=status, sent=sent)
    for status in (*RETRYABLE_STATUSES, None, *FINAL_STATUSES)
    for method in IDEMPOTENT + NON_IDEMPOTENT
    for sent in (True, False)
)
_RETRYABLE_TEMPLATES: Final = tuple(
    Outcome(status=status, sent=sent)
    for status in (429, 503, None, 408, 500, 502, 504, 599)
    for sent in (True, False)
)


@functools.cache
def outcomes(hint: st.SearchStrategy[Hint | None] | None = None) -> st.SearchStrategy[Outcome]:
    """Any outcome: any method, status or transport failure, with or without a hint."""
    return _with_hints(st.sampled_from(OUTCOME_TEMPLATES), hint)


@functools.cache
def retryable_outcomes(
    hint: st.SearchStrategy[Hint | None] | None = None,
) -> st.SearchStrategy[Outcome]:
    """GET outcomes a policy retries (429, 408, 5xx, transport), with or without a hint."""
    return _with_hints(st.sampled_from(_RETRYABLE_TEMPLATES), hint)


def _repeat(drawn: tuple[list[Outcome], int]) -> list[Outcome]:
    pattern, length = drawn
    return [pattern[index % len(pattern)] for index in range(length)]


@functools.cache
def outcome_sequences(
    outcome: st.SearchStrategy[Outcome] | None = None, *, min_length: int = MAX_STEPS // 4
) -> st.SearchStrategy[list[Outcome]]:
    """Runs of ``min_length`` to ``MAX_STEPS`` outcomes, by default retryable ones.

    Long by default: every step of a run is checked, so a long run checks
    all its prefixes too, and simulating it costs little next to drawing it.

    A run is a short drawn pattern repeated to a drawn length, the way a
    struggling server repeats itself; drawing every outcome of a long run
    separately would make the suite slow.
    """
    pattern = st.lists(
        outcome if outcome is not None else retryable_outcomes(), min_size=1, max_size=8
    )
    length = st.integers(min_value=min_length, max_value=MAX_STEPS)
    return st.tuples(pattern, length).map(_repeat)


def http_date(epoch_seconds: int) -> str:
    """The IMF-fixdate (``Wed, 21 Oct 2015 07:28:00 GMT``) for whole epoch seconds."""
    return format_datetime(datetime.fromtimestamp(epoch_seconds, UTC), usegmt=True)


# Pieces of dates, numbers and junk, so that random header values reach the
# date parser and the number pattern instead of failing at the first character.
_HEADER_FRAGMENTS: Final = (
    *("Mon", "Wed", "Sunday", "Wednesday", ",", " ", "  ", "\t", "-", "+", ".", ":"),
    *("0", "1", "9", "21", "32", "60", "99", "1e3", "2015", "15", "99999", "1000000000"),
    *("Oct", "Feb", "Foo", "07:28:00", "24:00:00", "99:99:99", "GMT", "UT", "UTC", "EST"),
    *("+0000", "-0000", "+0200", "+9999", "-2400", "nan", "inf", "soon", "\u0661", "\x00"),
)
_FRAGMENTED: Final = st.lists(st.sampled_from(_HEADER_FRAGMENTS), max_size=12).map("".join)
_NUMERIC: Final = st.text(alphabet="0123456789.-+e ", max_size=30)


@functools.cache
def header_values() -> st.SearchStrategy[str]:
    """Arbitrary header text, biased towards near-misses of numbers and HTTP-dates."""
    return st.one_of(st.text(max_size=100), _FRAGMENTED, _NUMERIC)


# -- the account gate's window model ------------------------------------------------------
#
# A run is a start time, the settings, and a list of operations applied to a
# model (and, in the differential test, to the Redis store alongside).  Time
# moves by fractions of the window, and also lands exactly on the times the
# model compares against (a grant's time, the probe's, the hold's end, the
# lease's end, a window later), where a ``<`` mistaken for ``<=`` shows.


def _same(value: T) -> T:
    return value


def _weighted(*choices: tuple[int, st.SearchStrategy[T]]) -> st.SearchStrategy[T]:
    """``st.one_of`` the ``(weight, strategy)`` choices, each ``weight`` times as likely.

    Passing one strategy object several times to ``st.one_of`` does not
    weight it: ``one_of`` keeps one copy of each object.  Distinct wrappers
    (a ``map`` that changes nothing) are kept.
    """
    return st.one_of(*[strategy.map(_same) for weight, strategy in choices for _ in range(weight)])


@attrs.frozen
class Advance:
    """Let ``fraction`` of two windows pass."""

    fraction: float


ADVANCE_TARGETS: Final = (
    "at",
    "at+window",
    "probe_at",
    "hold_until",
    "lease_until",
    "verify_at",
)


@attrs.frozen
class AdvanceTo:
    """Move time to a moment the model keeps (if it is ahead and set): see :data:`ADVANCE_TARGETS`.

    ``index`` picks the grant for ``"at"`` and ``"at+window"``: 0 is the
    latest, 1 the one before, and so on (modulo the grants so far).
    """

    target: str
    index: int


@attrs.frozen
class ReserveOp:
    """Reserve a send; ``cancel`` picks an earlier grant to drop first (as ``AdvanceTo.index``)."""

    margin: float
    cancel: int | None


@attrs.frozen
class ObserveOp:
    """Report ``observation`` on an earlier GO or PROBE grant (as ``AdvanceTo.index``)."""

    grant: int
    observation: Observation
    draw: float


WindowOperation = Advance | AdvanceTo | ReserveOp | ObserveOp

_UNIT: Final = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)
# Grants are picked counting from the latest: mostly one of the last few, as
# a client answers the send it just made, sometimes any earlier one.
_INDEX: Final = st.integers(min_value=0, max_value=2) | st.integers(min_value=0, max_value=1_000)


@st.composite
def window_params(draw: st.DrawFn) -> WindowParams:
    """Gate settings small enough for a short run to reach every mode."""
    window = draw(st.sampled_from([1.0, 10.0, 3600.0]) | st.floats(min_value=0.5, max_value=100))
    initial = draw(st.floats(min_value=0.01, max_value=5.0))
    return WindowParams(
        window=window,
        limit=draw(st.none() | st.integers(min_value=1, max_value=8)),
        failure_threshold=draw(st.integers(min_value=1, max_value=4)),
        probe_initial=initial,
        probe_max=initial * draw(st.floats(min_value=1.0, max_value=100.0)),
        breaker_max=initial * draw(st.floats(min_value=1.0, max_value=20.0)),
        probe_lease=draw(st.floats(min_value=0.05, max_value=30.0)),
        max_hold=draw(st.floats(min_value=0.1, max_value=3600.0)),
    )


_OBSERVATIONS: Final = st.builds(
    Observation,
    st.sampled_from([OK, RATE_LIMITED, RATE_LIMITED, ERROR, VOID]),
    sent=st.booleans(),
    hint=st.none() | st.none() | seconds(100.0) | st.just(math.inf),
    header_limit=_weighted(
        (6, st.none()),
        (1, st.sampled_from([3, 5, 10])),
        (1, st.integers(min_value=0, max_value=12)),
    ),
    near=st.none() | st.booleans(),
)
_ADVANCES: Final = st.builds(Advance, st.floats(min_value=0.0, max_value=0.05) | _UNIT)
_ADVANCES_TO: Final = st.builds(AdvanceTo, st.sampled_from(ADVANCE_TARGETS), _INDEX)
_RESERVES: Final = st.builds(
    ReserveOp,
    st.sampled_from([0.0, 0.5]) | st.floats(min_value=0.0, max_value=2.0),
    st.none() | st.none() | st.none() | _INDEX,
)
_OBSERVES: Final = st.builds(ObserveOp, _INDEX, _OBSERVATIONS, _UNIT)
# Sends and answers come more often than the clock jumps, so that runs fill
# the window, learn a limit and reach the probe and the breaker.
WINDOW_OPERATIONS: Final[st.SearchStrategy[WindowOperation]] = _weighted(
    (3, _RESERVES), (2, _OBSERVES), (1, _ADVANCES), (1, _ADVANCES_TO)
)
"""One operation on a window model (see :class:`Advance` and its siblings)."""


# -- imports through one window model, simulated (tests/test_window.py) -------------------


@attrs.frozen(kw_only=True)
class SimulatedImport:
    """``workers`` send ``requests`` to a server that lets ``share`` through a window.

    ``earlier`` are the seconds before the model's first send at which a
    previous run's sends already sit in the server's window; ``latency`` is
    every answer's round trip, ``margin`` the model's allowance for it.
    """

    share: int
    earlier: tuple[float, ...]
    workers: int
    latency: float
    margin: float
    requests: int


@st.composite
def simulated_imports(draw: st.DrawFn, *, restarted: bool) -> SimulatedImport:
    """An import a few windows of 100 s long; ``restarted``: after a previous run's sends."""
    share = draw(st.integers(min_value=2, max_value=30))
    earlier = (
        draw(st.lists(st.floats(min_value=0.0, max_value=99.0), max_size=share - 1))
        if restarted
        else []
    )
    return SimulatedImport(
        share=share,
        earlier=tuple(earlier),
        workers=draw(st.integers(min_value=1, max_value=8)),
        latency=draw(st.floats(min_value=0.01, max_value=1.0)),
        # A margin of 0 meets float ties between the model's and the
        # server's arithmetic; a client's margin is a round trip at least.
        margin=draw(st.floats(min_value=0.01, max_value=2.0)),
        requests=share * draw(st.integers(min_value=2, max_value=5)),
    )
