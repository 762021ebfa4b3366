"""Retry policies: the sans-IO core that decides "retry? after how long? give up?".

Theory of operation
-------------------
A *logical request* (one GET, one page of a listing) makes attempts until one
succeeds, one fails for good, or the policy gives up.  After every attempt
that did not succeed, the client describes what happened as an
:class:`Outcome` (method, status or transport failure, the server's hint) and
asks its policy ``decide(history, outcome)``.  The :class:`Decision` says
either "wait ``delay`` seconds, then try again" or "stop" with a
:class:`StopReason`, and carries the :class:`RetryHistory` to pass to the
next call.  Nothing here sends, sleeps or reads a clock, so the sync and the
async client, the tenacity adapter and the schedule printer all share it, and
every timing rule can be tested as a pure function.

Budgets are kept per reason, because the reasons call for opposite
behaviour: a 429 means "the hourly quota is spent, come back later", so it
gets a long budget of waiting (hours); a 5xx or a dropped connection means
"something is broken", so it gets a few attempts and a short budget.

Randomness is the one impurity: a policy owns a :class:`random.Random`,
seedable for reproducible schedules.
"""

from __future__ import annotations

import enum
import math
import random
import statistics
from typing import Final, Literal, Protocol, runtime_checkable

import attrs

from ._exceptions import short_repr
from ._hints import Hint
from ._timing import MAX_WAIT, duration, first_wait, limit, wait, wait_cap

IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})

JitterMode = Literal["full", "equal", "decorrelated", "multiplicative", "none"]
_JITTER_MODES: Final = frozenset({"full", "equal", "decorrelated", "multiplicative", "none"})


class Reason(enum.Enum):
    """Why an outcome is worth retrying."""

    RATE_LIMIT = "rate_limit"
    """429: the quota is spent; waiting is the cure."""
    SERVER_ERROR = "server_error"
    """408 or 5xx: the server failed or timed out."""
    TRANSPORT_ERROR = "transport_error"
    """No response: the connection failed, broke or timed out."""


class StopReason(enum.Enum):
    """Why a policy stopped retrying."""

    NOT_RETRYABLE = "not_retryable"
    """The outcome is final (a 404, say); retrying cannot change it."""
    ATTEMPTS = "attempts"
    """The attempt limit for this reason is reached."""
    BUDGET = "budget"
    """The next wait would not fit in the waiting budget for this reason."""
    HINT_TOO_LONG = "hint_too_long"
    """The server asked for a longer wait than the policy's ``max_hint``."""
    OUTAGE = "outage"
    """The account's breaker stayed open longer than the gate's ``outage_budget``."""


@attrs.frozen
class Outcome:
    """What one attempt produced, as far as the retry decision cares.

    Attributes:
        method: the HTTP method, upper case.
        status: the response status, or ``None`` when no response came back.
        sent: ``False`` when the request certainly never reached the server
            (the connection could not be made), which makes it safe to retry
            even for non-idempotent methods.
        hint: the wait the server asked for, if any (see :mod:`._hints`).
    """

    method: str = "GET"
    status: int | None = None
    sent: bool = True
    hint: Hint | None = None


def classify(outcome: Outcome, *, transport_errors: bool = True) -> Reason | None:
    """Whether an outcome is retryable, and why.

    408, 429 and 5xx are retryable, and so are transport errors; nothing else
    is (400, 401, 403, 404, 410, 422 are final).  POST and PATCH are retried
    only where the request never reached the server: on 429 and on connect
    errors.

    Args:
        outcome: the attempt's outcome.
        transport_errors: whether transport errors are retryable at all.

    Returns:
        The reason to retry, or ``None`` when the outcome is final.
    """
    status = outcome.status
    if status == 429:  # noqa: PLR2004 (the one status that means "rate limited")
        return Reason.RATE_LIMIT
    idempotent = outcome.method in IDEMPOTENT_METHODS
    if status is None:
        if transport_errors and (idempotent or not outcome.sent):
            return Reason.TRANSPORT_ERROR
        return None
    if server_failed(status) and idempotent:
        return Reason.SERVER_ERROR
    return None


def server_failed(status: int) -> bool:
    """408 or 5xx: the server failed or timed out (retried where sending again is safe)."""
    return status == 408 or 500 <= status <= 599  # noqa: PLR2004


@attrs.frozen
class RetryHistory:
    """What happened so far in one logical request; the policy's only memory.

    Start a request with ``RetryHistory()`` and pass along the history of
    each :class:`Decision`.

    Rate limits and errors keep separate backoff sequences: a request that
    waited out an hour of 429s starts its error backoff from the beginning.
    A 429 also ends an *error streak*: the server answered, so errors before
    it and errors after it are not one outage, and ``error_attempts`` counts
    only the errors since the last rate limit.  Without that, a request that
    waits six hours for its quota would give up after five faults spread
    over those hours.

    Attributes:
        attempts: attempts made so far (also the waits taken so far).
        errors: errors (not rate limits) since the last rate limit.
        rate_limit_retries: waits taken because of rate limits.
        error_retries: waits taken because of errors since the last rate limit.
        rate_limit_waited: seconds waited because of rate limits, or because a
            server hint asked for them after an error.
        error_waited: seconds of backoff waited because of errors, in all.
        last_delay: the previous wait in seconds, if any.
        last_reason: why the previous wait was taken, if any.
    """

    attempts: int = 0
    errors: int = 0
    rate_limit_retries: int = 0
    error_retries: int = 0
    rate_limit_waited: float = 0.0
    error_waited: float = 0.0
    last_delay: float | None = None
    last_reason: Reason | None = None

    @property
    def waited(self) -> float:
        """Seconds waited in all."""
        return self.rate_limit_waited + self.error_waited

    def sequence(self, reason: Reason, *, shared: bool = False) -> tuple[int, float | None]:
        """Where the backoff for ``reason`` stands: (waits so far, previous wait).

        Args:
            reason: the reason of the wait to come.
            shared: one sequence for every reason (GitLab 16.7's behaviour).

        Returns:
            The index of the next wait in its sequence (from 0), and the
            previous wait of the same sequence in seconds, if any.
        """
        if shared:
            # Every attempt so far was followed by a wait, or we would have stopped.
            return self.attempts, self.last_delay
        rate_limited = reason is Reason.RATE_LIMIT
        count = self.rate_limit_retries if rate_limited else self.error_retries
        same = self.last_reason is not None and (
            (self.last_reason is Reason.RATE_LIMIT) == rate_limited
        )
        return count, self.last_delay if same else None


@attrs.frozen
class Decision:
    """A policy's answer for one outcome.

    Attributes:
        reason: why the outcome is retryable, or ``None`` if it is final.
        delay: seconds to wait before the next attempt, or ``None`` to stop.
        stop: why the policy stopped, or ``None`` when it retries.
        hint: the server's hint on this outcome, whether honoured or not.
        history: the history including this outcome (and this wait).
    """

    reason: Reason | None
    delay: float | None
    stop: StopReason | None
    hint: Hint | None
    history: RetryHistory

    @property
    def retry(self) -> bool:
        """Whether to wait ``delay`` seconds and try again."""
        return self.delay is not None


@attrs.frozen
class ScheduleRow:
    """The spread of one wait in a policy's schedule (seconds).

    Attributes:
        retry: which wait (1 is the wait after the first failed attempt).
        low: the shortest possible wait.
        median: the median wait, sampled from a seeded run.
        high: the longest possible wait (exclusive for random modes).
    """

    retry: int
    low: float
    median: float
    high: float


@runtime_checkable
class RetryPolicy(Protocol):
    """What the clients need from a policy."""

    def decide(self, history: RetryHistory, outcome: Outcome) -> Decision:
        """Decide what to do after ``outcome``, given the ``history`` before it."""
        ...  # pragma: no cover

    def schedule(
        self, retries: int = 8, *, reason: Reason = Reason.RATE_LIMIT
    ) -> list[ScheduleRow]:
        """The first waits the policy would take when the server sends no hint."""
        ...  # pragma: no cover


def check_policy(name: str, value: object) -> None:
    """``ValueError`` naming ``name`` unless ``value`` is a retry policy (it has ``decide``)."""
    if not callable(getattr(value, "decide", None)):
        raise ValueError(f"{name} must be a retry policy, got {type(value).__name__}")


def gate_wait_stop(
    policy: RetryPolicy, history: RetryHistory, seconds: float, *, hint: bool
) -> StopReason | None:
    """Whether a wait for the quota that the account gate imposes fits the request's policy.

    The gate paces sends for the whole account, so a request may wait there
    without a 429 of its own; that wait is waiting for the quota, and is
    charged to the policy's ``rate_limit_budget``.  A wait that comes from a
    server hint must also fit ``max_hint``.  A policy without those settings
    (a custom one, or :class:`FixedRetry`) sets no bound here; its attempts
    still do.

    Args:
        policy: the request's policy.
        history: the request's history so far.
        seconds: the wait the gate asks for.
        hint: whether the wait comes from a server hint.

    Returns:
        Why the request must give up instead of waiting, or ``None``.
    """
    if hint and seconds > getattr(policy, "max_hint", math.inf):
        return StopReason.HINT_TOO_LONG
    if history.rate_limit_waited + seconds > getattr(policy, "rate_limit_budget", math.inf):
        return StopReason.BUDGET
    return None


def _stop(
    reason: Reason | None, why: StopReason, outcome: Outcome, history: RetryHistory
) -> Decision:
    return Decision(reason=reason, delay=None, stop=why, hint=outcome.hint, history=history)


def _count(history: RetryHistory, reason: Reason | None) -> RetryHistory:
    """The history with one more attempt; a rate limit ends the error streak."""
    # Built field by field: attrs.evolve introspects the class on every call,
    # and a long schedule or a virtual-time import makes millions of these.
    rate_limited = reason is Reason.RATE_LIMIT
    return RetryHistory(
        attempts=history.attempts + 1,
        errors=0 if rate_limited else history.errors + (reason is not None),
        rate_limit_retries=history.rate_limit_retries,
        error_retries=0 if rate_limited else history.error_retries,
        rate_limit_waited=history.rate_limit_waited,
        error_waited=history.error_waited,
        last_delay=history.last_delay,
        last_reason=history.last_reason,
    )


def _waited(
    history: RetryHistory, reason: Reason, delay: float, *, asked: bool = False
) -> RetryHistory:
    """The history after waiting ``delay`` seconds because of ``reason``.

    ``asked``: a server hint set the wait of an error; it is charged to the
    rate-limit tally, while the error's backoff sequence moves on.
    """
    rate_limited = reason is Reason.RATE_LIMIT
    # The reason's backoff sequence moves on, and the wait is charged to its tally.
    charged_to_rate_limit = rate_limited or asked
    return RetryHistory(
        attempts=history.attempts,
        errors=history.errors,
        rate_limit_retries=history.rate_limit_retries + rate_limited,
        error_retries=history.error_retries + (not rate_limited),
        rate_limit_waited=(
            history.rate_limit_waited + delay
            if charged_to_rate_limit
            else history.rate_limit_waited
        ),
        error_waited=(
            history.error_waited if charged_to_rate_limit else history.error_waited + delay
        ),
        last_delay=delay,
        last_reason=reason,
    )


def _fit(waited: float, remaining: float, budget: float) -> float:
    """The last wait: what is left of the budget, so that ``waited + wait <= budget`` exactly.

    ``budget - waited`` rounds, and adding it back can land one ulp over.
    """
    wait = remaining
    while waited + wait > budget:
        wait = math.nextafter(wait, 0.0)
    return wait


def _grown(initial: float, factor: float, retry: int, cap: float) -> float:
    """``min(cap, initial * factor ** retry)``, clamped instead of overflowing.

    Float arithmetic throughout: an int ``factor`` would otherwise build an
    exact integer power, slow for huge ``retry`` and too large to scale.
    """
    if initial == 0:
        return 0.0
    try:
        grown = float(initial) * float(factor) ** retry
    except OverflowError:
        grown = math.inf
    return min(float(cap), grown)


def _sampled_schedule(
    policy: RetryPolicy, retries: int, reason: Reason, samples: int = 2001
) -> list[list[float]]:
    """Waits per retry over ``samples`` runs of ``policy`` (seeded by the caller)."""
    status = 429 if reason is Reason.RATE_LIMIT else 503
    outcome = Outcome(status=status) if reason is not Reason.TRANSPORT_ERROR else Outcome()
    columns: list[list[float]] = [[] for _ in range(retries)]
    for _ in range(samples):
        history = RetryHistory()
        for column in columns:
            decision = policy.decide(history, outcome)
            if decision.delay is None:
                break
            column.append(decision.delay)
            history = decision.history
    return [column for column in columns if column]


MAX_COUNT: Final = 2**63 - 1
"""The largest count an argument takes (attempts, a limit, a threshold): a 64-bit integer.

Larger is no count anyone means, and where a count reaches Redis or a
message, its digits would cost more than the request.
"""


def positive_int(name: str, value: object, *, optional: bool = False) -> None:
    """Check a count argument: an int from 1 to :data:`MAX_COUNT` (or ``None`` if ``optional``).

    Raises:
        ValueError: naming ``name``; a huge int is not printed in full.
    """
    if value is None and optional:
        return
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_COUNT:
        raise ValueError(
            f"{name} must be a positive integer up to 2**63 - 1, got {short_repr(value)}"
        )


MAX_SCHEDULE_RETRIES: Final = 1_000
"""The most waits :meth:`ExponentialBackoff.schedule` and :meth:`FixedRetry.schedule` list.

The default policy's budget ends its schedule after 634 rows; a policy
with no budget samples every row 2,001 times (about 9 s and 60 MB at this
bound), and ``schedule(10**9)`` ran out of memory.  ``bb-backoff schedule``
takes as many.
"""


def int_up_to(name: str, value: object, maximum: int) -> None:
    """Check a count argument with a bound of its own: an int from 1 to ``maximum``.

    Raises:
        ValueError: naming ``name``; a huge int is not printed in full.
    """
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= maximum:
        raise ValueError(
            f"{name} must be an integer from 1 to {maximum:,}, got {short_repr(value)}"
        )


@attrs.frozen(kw_only=True)
class ExponentialBackoff:
    """Jittered exponential backoff that honours the server's hints.

    Without a hint, the wait before retry *n* (counting from 0) is drawn from
    the jitter mode's range around ``min(max_delay, initial * factor ** n)``:

    ``"full"``
        uniform in ``[0, base)``: the fewest calls under contention.
    ``"equal"``
        uniform in ``[base / 2, base)``.
    ``"decorrelated"``
        uniform in ``[initial, 3 * previous)``, capped at ``max_delay``.
    ``"multiplicative"``
        ``previous * factor * (1 + U[0, 1))`` (GitLab 16.7's formula), capped.
    ``"none"``
        exactly ``base``.

    A ``Retry-After`` or ``X-RateLimit-Reset`` hint is never undercut: the
    wait is ``max(backoff, hint)``, so a hint above ``max_delay`` is honoured
    exactly.  A hint above ``max_hint`` stops at once (the server wants us
    gone for longer than we are willing to wait).  Rate limits and errors
    have separate budgets; a wait that would overrun its budget is shortened
    to fit, unless that would undercut a hint, in which case the policy stops.

    Args:
        initial: the first backoff ceiling (seconds or timedelta), from 10 ms
            (``MIN_WAIT``: zero or a microsecond, and a request that keeps
            failing hammers the API) to a day.
        factor: growth per retry (at least 1).
        max_delay: cap on one backoff wait (seconds or timedelta, a day at
            most, or ``math.inf``: then a day caps it, as it caps every wait).
            Five minutes by default: without a hint, a rate-limited client
            can only probe, and probing every 2.5 minutes on average costs a
            few percent of completion time against a rolling hour while
            making a quarter of the calls that a one-minute cap makes
            (``benchmarks/caps.py`` measures the trade-off).
        jitter: one of the modes above.
        seed: seed for the random source; ``None`` seeds from the OS.
        max_attempts: attempts in all for one request, any reason; ``None``
            leaves it to the budgets.
        error_attempts: errors (408, 5xx, transport) in a row after which
            the request gives up; a 429 in between ends the streak.
        error_budget: seconds of backoff allowed because of errors.
        rate_limit_budget: seconds of waiting allowed because of 429s, and of
            waits a server hint sets after an error (a 503's ``Retry-After``
            during maintenance is the server's schedule): a day
            by default.  Bitbucket's window is a rolling hour shared by every
            worker and tool on the account, and while an import keeps it
            saturated, fresh requests (whose backoff starts small) win most
            freed slots from requests that have waited long (the capture
            effect of exponential backoff), so one request can wait for hours
            in an import that never stops making progress.
        max_hint: the longest server hint honoured; a longer one gives up.
            Two hours by default: twice Bitbucket's window, so that a hint
            for a whole window, rounded up or with a margin added, is
            waited, while one of days (a broken proxy) is refused.  A day at
            most, or ``math.inf``: a hint up to a day (none longer is waited).
        respect_hints: honour ``Retry-After`` / ``X-RateLimit-Reset``.
        retry_transport_errors: retry when no response came back at all.
        shared_backoff: one backoff sequence for rate limits and errors
            together (GitLab 16.7's behaviour); by default each reason has
            its own, so an hour of 429s does not make the next 5xx wait long.

    Raises:
        ValueError: for an invalid parameter; the message names it.
    """

    initial: float = attrs.field(default=1.0, converter=duration, validator=first_wait)
    factor: float = 2.0
    max_delay: float = attrs.field(default=300.0, converter=duration, validator=wait_cap)
    jitter: JitterMode = "full"
    seed: int | None = attrs.field(default=None, repr=short_repr)
    max_attempts: int | None = None
    error_attempts: int = 5
    error_budget: float = attrs.field(default=60.0, converter=duration, validator=limit)
    rate_limit_budget: float = attrs.field(default=86400.0, converter=duration, validator=limit)
    max_hint: float = attrs.field(default=7200.0, converter=duration, validator=wait_cap)
    respect_hints: bool = True
    retry_transport_errors: bool = True
    shared_backoff: bool = False
    _random: random.Random = attrs.field(init=False, repr=False, eq=False, hash=False)
    # max_delay and max_hint as applied: math.inf means "up to the longest wait".
    _cap: float = attrs.field(init=False, repr=False, eq=False, hash=False)
    _longest_hint: float = attrs.field(init=False, repr=False, eq=False, hash=False)

    def __attrs_post_init__(self) -> None:
        factor = self.factor
        try:
            usable = (
                isinstance(factor, int | float)
                and not isinstance(factor, bool)
                and math.isfinite(factor)
                and factor >= 1
            )
        except OverflowError:  # an int too large for a float
            usable = False
        if not usable:
            raise ValueError(f"factor must be a finite number >= 1, got {short_repr(factor)}")
        for name in ("respect_hints", "retry_transport_errors", "shared_backoff"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.max_delay < self.initial:
            raise ValueError(
                f"max_delay ({self.max_delay} s) must be at least initial ({self.initial} s)"
            )
        # A str first: "in" hashes the value, and a list is not hashable.
        if not isinstance(self.jitter, str) or self.jitter not in _JITTER_MODES:
            raise ValueError(
                f"jitter must be one of {sorted(_JITTER_MODES)}, got {short_repr(self.jitter)}"
            )
        positive_int("max_attempts", self.max_attempts, optional=True)
        positive_int("error_attempts", self.error_attempts)
        if self.seed is not None and (
            not isinstance(self.seed, int) or isinstance(self.seed, bool)
        ):
            raise ValueError(f"seed must be an integer or None, got {short_repr(self.seed)}")
        object.__setattr__(self, "_random", random.Random(self.seed))  # noqa: S311 (jitter, not security)
        # No single sleep is longer than MAX_WAIT, whatever the budgets: a
        # longer one fails in time.sleep (OverflowError past about 2.9e9 s)
        # or sleeps for centuries in asyncio.  A hint is never cut short to
        # fit: one longer than that gives up, as one over max_hint does.
        object.__setattr__(self, "_cap", min(self.max_delay, MAX_WAIT))
        object.__setattr__(self, "_longest_hint", min(self.max_hint, MAX_WAIT))

    def backoff(self, retry: int, previous: float | None, draw: float) -> float:
        """The backoff wait for retry ``retry`` (from 0), before hints and budgets.

        Args:
            retry: how many waits came before this one.
            previous: the previous wait in seconds, if any.
            draw: a uniform random number in ``[0, 1)``.

        Returns:
            The wait in seconds, within ``[0, max_delay]`` and at most a
            day (``math.inf`` as ``max_delay`` caps it there).
        """
        cap = self._cap
        if self.jitter == "decorrelated":
            low = self.initial
            high = 3 * (previous if previous is not None else self.initial)
            return min(cap, low + draw * max(0.0, high - low))
        if self.jitter == "multiplicative":
            start = previous if previous is not None else self.initial
            return min(cap, start * self.factor * (1 + draw))
        base = _grown(self.initial, self.factor, retry, cap)
        if self.jitter == "full":
            return draw * base
        if self.jitter == "equal":
            return base / 2 + draw * base / 2
        return base

    def bounds(self, retry: int) -> tuple[float, float]:
        """The range of the backoff wait for retry ``retry`` (from 0), without hints.

        Returns:
            ``(low, high)`` in seconds.
        """
        cap = self._cap
        if self.jitter == "decorrelated":
            high = _grown(3 * self.initial, 3.0, retry, cap)
            return (min(self.initial, high), high)
        if self.jitter == "multiplicative":
            return (
                _grown(self.initial * self.factor, self.factor, retry, cap),
                _grown(self.initial * 2 * self.factor, 2 * self.factor, retry, cap),
            )
        base = _grown(self.initial, self.factor, retry, cap)
        low = {"full": 0.0, "equal": base / 2}.get(self.jitter, base)
        return (low, base)

    def decide(self, history: RetryHistory, outcome: Outcome) -> Decision:
        """Decide what to do after ``outcome``.

        Args:
            history: the request's history before this outcome.
            outcome: what the latest attempt produced.

        Returns:
            The decision, with the updated history.
        """
        reason = classify(outcome, transport_errors=self.retry_transport_errors)
        counted = _count(history, reason)
        if reason is None:
            return _stop(None, StopReason.NOT_RETRYABLE, outcome, counted)
        if self.max_attempts is not None and counted.attempts >= self.max_attempts:
            return _stop(reason, StopReason.ATTEMPTS, outcome, counted)
        rate_limited = reason is Reason.RATE_LIMIT
        if not rate_limited and counted.errors >= self.error_attempts:
            return _stop(reason, StopReason.ATTEMPTS, outcome, counted)

        retry, previous = history.sequence(reason, shared=self.shared_backoff)
        delay = self.backoff(retry, previous, self._random.random())
        hint = outcome.hint if self.respect_hints else None
        asked = False
        if hint is not None:
            if hint.seconds > self._longest_hint:
                return _stop(reason, StopReason.HINT_TOO_LONG, outcome, counted)
            # A wait the server set (a 503's Retry-After during maintenance)
            # is its schedule, not our backoff: like a 429's, it is charged
            # to the rate-limit budget.  The error budget bounds only the
            # waits we choose; error_attempts still bounds the errors.
            asked = hint.seconds >= delay
            delay = max(delay, hint.seconds)

        if rate_limited or asked:
            waited, budget = counted.rate_limit_waited, self.rate_limit_budget
        else:
            waited, budget = counted.error_waited, self.error_budget
        remaining = budget - waited
        if delay > remaining:
            if remaining <= 0 or (hint is not None and hint.seconds > remaining):
                return _stop(reason, StopReason.BUDGET, outcome, counted)
            delay = _fit(waited, remaining, budget)
        return Decision(
            reason=reason,
            delay=delay,
            stop=None,
            hint=outcome.hint,
            history=_waited(counted, reason, delay, asked=asked),
        )

    def schedule(
        self, retries: int = 8, *, reason: Reason = Reason.RATE_LIMIT
    ) -> list[ScheduleRow]:
        """The first waits this policy takes when the server sends no hint.

        ``low`` and ``high`` are exact.  ``median`` is exact for the uniform
        modes (full, equal, none); for decorrelated and multiplicative jitter
        it is sampled from a run seeded with 0, so the table never changes.

        Args:
            retries: how many waits to list, at most (1 to
                :data:`MAX_SCHEDULE_RETRIES`, 1,000).
            reason: which kind of failure repeats (budgets differ by reason).

        Returns:
            One row per wait, fewer if the policy gives up sooner.
        """
        int_up_to("retries", retries, MAX_SCHEDULE_RETRIES)
        columns = _sampled_schedule(attrs.evolve(self, seed=0), retries, reason)
        rows = []
        uniform = self.jitter in {"full", "equal", "none"}
        for index, column in enumerate(columns):
            low, high = self.bounds(index)
            median = (low + high) / 2 if uniform else statistics.median(column)
            rows.append(ScheduleRow(index + 1, low, median, high))
        return rows


@attrs.frozen(kw_only=True)
class FixedRetry:
    """The legacy behaviour: the same wait every time, no jitter, hints ignored.

    ``FixedRetry(max_attempts=1)`` never retries, which is what GitLab's
    importer does with the flag off (the job system retries the whole job
    later).

    Args:
        delay: the wait between attempts (seconds or timedelta), a day at most.
        max_attempts: attempts in all for one request, any reason.

    Raises:
        ValueError: for an invalid parameter; the message names it.
    """

    delay: float = attrs.field(default=1.0, converter=duration, validator=wait)
    max_attempts: int = 3

    def __attrs_post_init__(self) -> None:
        positive_int("max_attempts", self.max_attempts)

    def decide(self, history: RetryHistory, outcome: Outcome) -> Decision:
        """Decide what to do after ``outcome``: retry after ``delay`` until ``max_attempts``.

        Args:
            history: the request's history before this outcome.
            outcome: what the latest attempt produced.

        Returns:
            The decision, with the updated history.
        """
        reason = classify(outcome)
        counted = _count(history, reason)
        if reason is None:
            return _stop(None, StopReason.NOT_RETRYABLE, outcome, counted)
        if counted.attempts >= self.max_attempts:
            return _stop(reason, StopReason.ATTEMPTS, outcome, counted)
        return Decision(
            reason=reason,
            delay=self.delay,
            stop=None,
            hint=outcome.hint,
            history=_waited(counted, reason, self.delay),
        )

    def schedule(
        self, retries: int = 8, *, reason: Reason = Reason.RATE_LIMIT
    ) -> list[ScheduleRow]:
        """The waits this policy takes: ``delay`` each, ``max_attempts - 1`` of them.

        Args:
            retries: how many waits to list, at most (1 to
                :data:`MAX_SCHEDULE_RETRIES`, 1,000).
            reason: which kind of failure repeats (the same for every reason).

        Returns:
            One row per wait.
        """
        int_up_to("retries", retries, MAX_SCHEDULE_RETRIES)
        del reason  # a fixed policy treats every reason alike
        count = min(retries, self.max_attempts - 1)
        return [ScheduleRow(n, self.delay, self.delay, self.delay) for n in range(1, count + 1)]


GITLAB_16_7: Final = ExponentialBackoff(
    initial=1.0,
    factor=2.0,
    max_delay=math.inf,
    jitter="multiplicative",
    max_attempts=3,
    error_attempts=3,
    error_budget=math.inf,
    rate_limit_budget=math.inf,
    max_hint=math.inf,
    respect_hints=False,
    retry_transport_errors=False,
    shared_backoff=True,
)
"""GitLab 16.7's flag-on retry, reproduced for comparison.

``Bitbucket::ExponentialBackoff``: ``delay = 1 s``, then before each sleep
``delay *= 2 * (1 + rand)`` (first sleep in [2, 4) s, second in [4, 16) s),
3 attempts in all, no cap, no hint support, HTTP 408/429/5xx only (a dropped
connection is not retried).
"""
