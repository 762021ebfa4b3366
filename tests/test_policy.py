"""Tests for the sans-IO retry core, ``bb_backoff._policy``.

Most timing rules are hypothesis properties over simulated sequences of
``decide()`` calls that thread the history through, exactly as the clients
do.  Nothing here sleeps: a policy only returns numbers.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from datetime import timedelta
from typing import Any, NamedTuple

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bb_backoff import (
    GITLAB_16_7,
    Decision,
    ExponentialBackoff,
    FixedRetry,
    Hint,
    Outcome,
    Reason,
    RetryHistory,
    RetryPolicy,
    ScheduleRow,
    StopReason,
    classify,
)
from bb_backoff._hints import RETRY_AFTER
from bb_backoff._policy import MAX_SCHEDULE_RETRIES, JitterMode, _grown
from bb_backoff._timing import MAX_WAIT, MIN_WAIT
from strategies import (
    FINAL_STATUSES,
    IDEMPOTENT,
    JITTER_MODES,
    MAX_STEPS,
    NON_IDEMPOTENT,
    OUTCOME_TEMPLATES,
    RETRYABLE_STATUSES,
    backoff_kwargs,
    hints,
    outcome_sequences,
    outcomes,
    retryable_outcomes,
    seconds,
)

# Waits are summed in floating point; allow this much relative slack when a
# sum or a product of random draws is compared with an exact bound.
REL_TOL = 1e-9


def at_most(actual: float, bound: float) -> bool:
    """``actual <= bound``, up to float rounding."""
    return actual <= bound * (1 + REL_TOL)


def at_least(actual: float, bound: float) -> bool:
    """``actual >= bound``, up to float rounding."""
    return actual >= bound * (1 - REL_TOL)


class Step(NamedTuple):
    """One ``decide()`` call of a simulated request."""

    outcome: Outcome
    decision: Decision


def simulate(policy: RetryPolicy, outcomes: Iterable[Outcome]) -> list[Step]:
    """Feed ``outcomes`` to ``policy`` as one request would, until it stops.

    Each decision's history is passed to the next call, as the clients do.
    """
    history = RetryHistory()
    steps = []
    for outcome in outcomes:
        decision = policy.decide(history, outcome)
        steps.append(Step(outcome, decision))
        if not decision.retry:
            break
        history = decision.history
    return steps


def retried(steps: list[Step]) -> list[tuple[Step, float]]:
    """The steps that retried, each with its delay."""
    return [(step, step.decision.delay) for step in steps if step.decision.delay is not None]


# --- Classification ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (429, Reason.RATE_LIMIT),
        (408, Reason.SERVER_ERROR),
        (500, Reason.SERVER_ERROR),
        (502, Reason.SERVER_ERROR),
        (503, Reason.SERVER_ERROR),
        (504, Reason.SERVER_ERROR),
        (599, Reason.SERVER_ERROR),
        (None, Reason.TRANSPORT_ERROR),
    ],
)
def test_idempotent_methods_retry_408_429_5xx_and_transport_errors(
    status: int | None, expected: Reason
) -> None:
    actual = {method: classify(Outcome(method=method, status=status)) for method in IDEMPOTENT}
    assert actual == dict.fromkeys(IDEMPOTENT, expected)


@pytest.mark.parametrize("status", [*FINAL_STATUSES, 100, 302, 405, 409, 412, 428, 431, 600])
def test_other_statuses_are_final_for_every_method(status: int) -> None:
    methods = IDEMPOTENT + NON_IDEMPOTENT
    actual = {method: classify(Outcome(method=method, status=status)) for method in methods}
    assert actual == dict.fromkeys(methods)


@pytest.mark.parametrize("method", NON_IDEMPOTENT)
@pytest.mark.parametrize(
    ("status", "sent", "expected"),
    [
        (429, True, Reason.RATE_LIMIT),
        (None, False, Reason.TRANSPORT_ERROR),
        (None, True, None),
        (408, True, None),
        (500, True, None),
        (503, True, None),
        (599, True, None),
    ],
)
def test_post_and_patch_retry_only_429_and_requests_never_sent(
    method: str, status: int | None, sent: bool, expected: Reason | None
) -> None:
    assert classify(Outcome(method=method, status=status, sent=sent)) == expected


def test_transport_errors_are_final_when_disabled() -> None:
    outcomes = [
        Outcome(method=method, status=None, sent=sent)
        for method in IDEMPOTENT + NON_IDEMPOTENT
        for sent in (True, False)
    ]
    actual = [classify(outcome, transport_errors=False) for outcome in outcomes]
    assert actual == [None] * len(outcomes)


def test_every_status_is_retried_only_if_429_or_408_or_5xx_on_an_idempotent_method() -> None:
    """Exhaustive over 100-599, every method, sent or not."""
    for status in range(100, 600):
        for method in IDEMPOTENT + NON_IDEMPOTENT:
            if status == 429:
                expected: Reason | None = Reason.RATE_LIMIT
            elif (status == 408 or status >= 500) and method in IDEMPOTENT:
                expected = Reason.SERVER_ERROR
            else:
                expected = None
            for sent in (True, False):
                assert classify(Outcome(method=method, status=status, sent=sent)) == expected


@pytest.mark.parametrize("retry_transport_errors", [True, False])
def test_decide_stops_as_not_retryable_exactly_when_classify_says_final(
    retry_transport_errors: bool,
) -> None:
    """Exhaustive over every method, every status class and both ``sent`` flags."""
    policy = ExponentialBackoff(retry_transport_errors=retry_transport_errors, seed=0)
    for outcome in OUTCOME_TEMPLATES:
        decision = policy.decide(RetryHistory(), outcome)
        reason = classify(outcome, transport_errors=retry_transport_errors)
        actual = (decision.reason, decision.stop is StopReason.NOT_RETRYABLE)
        assert actual == (reason, reason is None)


def test_a_final_outcome_counts_the_attempt_and_stops() -> None:
    hint = Hint(5.0, RETRY_AFTER)
    decision = ExponentialBackoff(seed=0).decide(RetryHistory(), Outcome(status=404, hint=hint))
    expected = Decision(
        reason=None,
        delay=None,
        stop=StopReason.NOT_RETRYABLE,
        hint=hint,
        history=RetryHistory(attempts=1),
    )
    assert decision == expected


# --- Delays, hints and max_delay --------------------------------------------------------------


def test_first_full_jitter_delay_is_a_draw_from_the_seeded_random_source() -> None:
    policy = ExponentialBackoff(initial=2.0, seed=7)
    decision = policy.decide(RetryHistory(), Outcome(status=429))
    expected_delay = random.Random(7).random() * 2.0  # the policy's own first draw
    expected = Decision(
        reason=Reason.RATE_LIMIT,
        delay=expected_delay,
        stop=None,
        hint=None,
        history=RetryHistory(
            attempts=1,
            rate_limit_retries=1,
            rate_limit_waited=expected_delay,
            last_delay=expected_delay,
            last_reason=Reason.RATE_LIMIT,
        ),
    )
    assert decision == expected


@given(backoff_kwargs(), outcome_sequences())
def test_delay_is_within_max_delay_unless_a_larger_hint_then_exactly_the_hint(
    kwargs: dict[str, Any], outcomes: list[Outcome]
) -> None:
    policy = ExponentialBackoff(**kwargs)
    for step, delay in retried(simulate(policy, outcomes)):
        hint = step.outcome.hint if policy.respect_hints else None
        if hint is not None and hint.seconds > policy.max_delay:
            assert delay == hint.seconds
        else:
            assert 0.0 <= delay <= policy.max_delay


@given(backoff_kwargs(), outcome_sequences())
def test_delay_is_never_earlier_than_a_hint_when_hints_are_respected(
    kwargs: dict[str, Any], outcomes: list[Outcome]
) -> None:
    """...and a hint above max_hint is never waited for at all."""
    policy = ExponentialBackoff(**kwargs | {"respect_hints": True})
    for step, delay in retried(simulate(policy, outcomes)):
        if step.outcome.hint is not None:
            assert delay >= step.outcome.hint.seconds
            assert step.outcome.hint.seconds <= policy.max_hint


@given(
    backoff_kwargs(),
    seconds(3600.0),
    st.floats(min_value=1e-6, max_value=1e6),
    st.sampled_from([429, 408, 503, None]),
)
def test_hint_above_max_hint_stops_at_once(
    kwargs: dict[str, Any], max_hint: float, excess: float, status: int | None
) -> None:
    policy = ExponentialBackoff(
        **kwargs
        | {
            "max_hint": max_hint,
            "respect_hints": True,
            "retry_transport_errors": True,
            "max_attempts": None,
            "error_attempts": 2,
        }
    )
    hint = Hint(max_hint + excess, RETRY_AFTER)
    outcome = Outcome(status=status, hint=hint)
    reason = classify(outcome)
    decision = policy.decide(RetryHistory(), outcome)
    expected = Decision(
        reason=reason,
        delay=None,
        stop=StopReason.HINT_TOO_LONG,
        hint=hint,
        history=RetryHistory(attempts=1, errors=0 if reason is Reason.RATE_LIMIT else 1),
    )
    assert decision == expected


def test_hint_equal_to_max_hint_is_honoured_exactly() -> None:
    policy = ExponentialBackoff(initial=1.0, max_delay=10.0, max_hint=30.0, seed=0)
    decision = policy.decide(RetryHistory(), Outcome(status=429, hint=Hint(30.0, RETRY_AFTER)))
    assert decision.delay == 30.0


def test_hint_shorter_than_the_backoff_does_not_shorten_it() -> None:
    policy = ExponentialBackoff(initial=8.0, jitter="none", seed=0)
    decision = policy.decide(RetryHistory(), Outcome(status=503, hint=Hint(2.0, RETRY_AFTER)))
    assert decision.delay == 8.0


@given(backoff_kwargs(), outcome_sequences(retryable_outcomes(hint=hints())))
def test_hints_change_nothing_when_not_respected(
    kwargs: dict[str, Any], outcomes: list[Outcome]
) -> None:
    """With respect_hints=False, the delays and stops are those of the same outcomes unhinted."""
    hinted = ExponentialBackoff(**kwargs | {"respect_hints": False})
    unhinted = ExponentialBackoff(**kwargs | {"respect_hints": False})
    plain = [attrs.evolve(outcome, hint=None) for outcome in outcomes]
    actual = [(s.decision.delay, s.decision.stop) for s in simulate(hinted, outcomes)]
    expected = [(s.decision.delay, s.decision.stop) for s in simulate(unhinted, plain)]
    assert actual == expected


# --- Budgets and attempt limits ---------------------------------------------------------------


@given(backoff_kwargs(), outcome_sequences(min_length=MAX_STEPS))
def test_waiting_per_reason_never_exceeds_its_budget(
    kwargs: dict[str, Any], outcomes: list[Outcome]
) -> None:
    """Attempt limits are lifted, so that only budgets and hints end a long run.

    A 429's wait goes to the rate-limit tally, an error's own backoff to the
    error tally; an error's wait that its hint set (the wait is the hint) is
    the server's schedule, and goes to the rate-limit tally.
    """
    policy = ExponentialBackoff(**kwargs | {"max_attempts": None, "error_attempts": MAX_STEPS})
    steps = simulate(policy, outcomes)
    rate_limit_waited = 0.0
    error_waited = 0.0
    for step, delay in retried(steps):
        hint = step.decision.hint
        charged = step.decision.history
        if step.decision.reason is Reason.RATE_LIMIT:
            to_rate_limit = True
        elif hint is None or delay != hint.seconds:
            to_rate_limit = False
        else:  # the hint set it, unless a backoff cut to fit the budget landed on it
            to_rate_limit = charged.error_waited == error_waited
        if to_rate_limit:
            rate_limit_waited += delay
        else:
            error_waited += delay
        assert (charged.rate_limit_waited, charged.error_waited) == (
            rate_limit_waited,
            error_waited,
        )
    assert at_most(rate_limit_waited, policy.rate_limit_budget)
    assert at_most(error_waited, policy.error_budget)


def test_a_wait_that_overruns_the_budget_is_shortened_then_the_policy_stops() -> None:
    policy = ExponentialBackoff(initial=4.0, factor=2.0, jitter="none", error_budget=10.0)
    steps = simulate(policy, [Outcome(status=503)] * 4)
    actual = [(s.decision.delay, s.decision.stop) for s in steps]
    assert actual == [(4.0, None), (6.0, None), (None, StopReason.BUDGET)]


def test_a_hint_that_does_not_fit_the_budget_stops_instead_of_being_undercut() -> None:
    policy = ExponentialBackoff(initial=1.0, jitter="none", rate_limit_budget=10.0)
    outcomes = [
        Outcome(status=429, hint=Hint(8.0, RETRY_AFTER)),
        Outcome(status=429, hint=Hint(5.0, RETRY_AFTER)),
    ]
    actual = [(s.decision.delay, s.decision.stop) for s in simulate(policy, outcomes)]
    assert actual == [(8.0, None), (None, StopReason.BUDGET)]


def test_an_error_whose_hint_outlasts_the_error_budget_waits_it_on_the_rate_limit_budget() -> None:
    """A 503 with ``Retry-After: 120`` (maintenance) is waited, not given up on.

    The hint is the server's schedule: it fits ``max_hint`` and the
    rate-limit budget, so the 60-second error budget does not stop it, and
    it spends none of that budget.
    """
    policy = ExponentialBackoff(seed=1)
    decision = policy.decide(RetryHistory(), Outcome(status=503, hint=Hint(120.0, RETRY_AFTER)))
    assert decision.delay == 120.0
    history = decision.history
    assert (history.rate_limit_waited, history.error_waited, history.errors) == (120.0, 0.0, 1)


def test_hinted_errors_still_stop_after_error_attempts_in_a_row() -> None:
    policy = ExponentialBackoff(seed=1, error_attempts=3)
    outcomes = [Outcome(status=503, hint=Hint(600.0, RETRY_AFTER))] * 5
    steps = simulate(policy, outcomes)
    assert [s.decision.delay for s in steps] == [600.0, 600.0, None]
    assert steps[-1].decision.stop is StopReason.ATTEMPTS


def test_rate_limits_and_errors_have_separate_budgets() -> None:
    policy = ExponentialBackoff(
        initial=5.0, jitter="none", factor=1.0, error_budget=5.0, rate_limit_budget=10.0
    )
    outcomes = [Outcome(status=503), Outcome(status=429), Outcome(status=429), Outcome()]
    actual = [(s.decision.delay, s.decision.stop) for s in simulate(policy, outcomes)]
    assert actual == [(5.0, None), (5.0, None), (5.0, None), (None, StopReason.BUDGET)]


@given(backoff_kwargs(), outcome_sequences())
def test_error_attempts_and_max_attempts_are_never_exceeded(
    kwargs: dict[str, Any], outcomes: list[Outcome]
) -> None:
    policy = ExponentialBackoff(**kwargs)
    steps = simulate(policy, outcomes)
    last = steps[-1].decision
    # error_attempts bounds an error streak: the errors since the last rate limit.
    streak = 0
    for step in steps:
        reason = step.decision.reason
        streak = 0 if reason is Reason.RATE_LIMIT else streak + (reason is not None)
        assert streak <= policy.error_attempts
    assert (last.history.attempts, last.history.errors) == (len(steps), streak)
    if policy.max_attempts is not None:
        assert last.history.attempts <= policy.max_attempts
    if last.stop is StopReason.ATTEMPTS:
        assert (
            last.history.errors == policy.error_attempts
            or last.history.attempts == policy.max_attempts
        )


def test_error_attempts_count_errors_in_a_row_only() -> None:
    policy = ExponentialBackoff(error_attempts=2, seed=0)
    steps = simulate(policy, [Outcome(status=503), Outcome()])
    assert [s.decision.stop for s in steps] == [None, StopReason.ATTEMPTS]
    assert steps[-1].decision.history.errors == 2


def test_a_rate_limit_ends_the_error_streak() -> None:
    """Faults hours apart, with 429s between them, are not one outage."""
    policy = ExponentialBackoff(error_attempts=2, seed=0)
    outcomes = [Outcome(status=503), Outcome(status=429), Outcome(status=429), Outcome()]
    steps = simulate(policy, outcomes)
    assert [s.decision.stop for s in steps] == [None, None, None, None]
    last = steps[-1].decision.history
    assert (last.attempts, last.errors, last.error_retries) == (4, 1, 1)


def test_an_error_after_a_rate_limit_backs_off_from_the_start() -> None:
    policy = ExponentialBackoff(jitter="none", seed=0)
    outcomes = [Outcome(status=503), Outcome(status=503), Outcome(status=429), Outcome()]
    delays = [s.decision.delay for s in simulate(policy, outcomes)]
    assert delays == [1.0, 2.0, 1.0, 1.0]


def test_max_attempts_counts_every_reason() -> None:
    policy = ExponentialBackoff(max_attempts=2, seed=0)
    steps = simulate(policy, [Outcome(status=429), Outcome(status=503), Outcome(status=429)])
    assert [s.decision.stop for s in steps] == [None, StopReason.ATTEMPTS]


# --- Jitter modes and bounds() ----------------------------------------------------------------


def previous_delays(initial: float) -> st.SearchStrategy[float | None]:
    """A previous wait (at least ``initial``, as every unbudgeted wait is) or none."""
    return st.none() | seconds(1000.0).map(lambda extra: initial + extra)


def expected_range(
    policy: ExponentialBackoff, retries: int, previous: float | None
) -> tuple[float, float]:
    """The documented range of a wait without hints or budgets, computed independently.

    ``max_delay`` caps it, and a day (``MAX_WAIT``) caps it when that is ``math.inf``.
    """
    cap = min(policy.max_delay, MAX_WAIT)
    base = min(cap, policy.initial * policy.factor**retries)
    start = policy.initial if previous is None else previous
    ranges = {
        "full": (0.0, base),
        "equal": (base / 2, base),
        "none": (base, base),
        "decorrelated": (policy.initial, min(cap, 3 * start)),
        "multiplicative": (
            min(cap, start * policy.factor),
            min(cap, 2 * start * policy.factor),
        ),
    }
    return ranges[policy.jitter]


@given(backoff_kwargs(unlimited=True), st.integers(0, MAX_STEPS), st.data())
def test_delay_without_hint_is_within_the_jitter_modes_range(
    kwargs: dict[str, Any], retries: int, data: st.DataObject
) -> None:
    """The documented ranges, for retry n and base = min(max_delay, a day, initial * factor**n).

    full: [0, base]; equal: [base/2, base]; none: exactly base;
    decorrelated: [initial, min(max_delay, 3 * previous)];
    multiplicative: previous * factor * [1, 2], capped at max_delay.
    """
    policy = ExponentialBackoff(**kwargs)
    previous = None if retries == 0 else data.draw(previous_delays(policy.initial))
    history = RetryHistory(
        rate_limit_retries=retries,
        last_delay=previous,
        last_reason=None if previous is None else Reason.RATE_LIMIT,
    )
    delay = policy.decide(history, Outcome(status=429)).delay
    low, high = expected_range(policy, retries, previous)
    assert delay is not None
    assert at_least(delay, low)
    assert at_most(delay, high)


@given(backoff_kwargs(unlimited=True), st.integers(min_value=1, max_value=MAX_STEPS))
def test_bounds_contain_every_sampled_delay(kwargs: dict[str, Any], retries: int) -> None:
    policy = ExponentialBackoff(**kwargs)
    steps = simulate(policy, [Outcome(status=429)] * retries)
    for n, (_, delay) in enumerate(retried(steps)):
        low, high = policy.bounds(n)
        assert 0.0 <= low <= high <= policy.max_delay
        assert at_least(delay, low)
        assert at_most(delay, high)


@pytest.mark.parametrize(
    ("jitter", "expected"),
    [
        ("full", [(0.0, 1.0), (0.0, 2.0), (0.0, 4.0), (0.0, 5.0)]),
        ("equal", [(0.5, 1.0), (1.0, 2.0), (2.0, 4.0), (2.5, 5.0)]),
        ("none", [(1.0, 1.0), (2.0, 2.0), (4.0, 4.0), (5.0, 5.0)]),
        ("decorrelated", [(1.0, 3.0), (1.0, 5.0), (1.0, 5.0), (1.0, 5.0)]),
        ("multiplicative", [(2.0, 4.0), (4.0, 5.0), (5.0, 5.0), (5.0, 5.0)]),
    ],
)
def test_bounds_per_jitter_mode_for_initial_1_factor_2_cap_5(
    jitter: JitterMode, expected: list[tuple[float, float]]
) -> None:
    policy = ExponentialBackoff(initial=1.0, factor=2.0, max_delay=5.0, jitter=jitter)
    assert [policy.bounds(n) for n in range(4)] == expected


# --- Huge retry counts ------------------------------------------------------------------------


@given(
    backoff_kwargs(),
    st.integers(min_value=10_000, max_value=10**9),
    st.none() | seconds(1e6),
    st.sampled_from([429, 503, 408]),
)
def test_huge_retry_counts_never_overflow(
    kwargs: dict[str, Any], retries: int, previous: float | None, status: int
) -> None:
    policy = ExponentialBackoff(**kwargs)
    reason = Reason.RATE_LIMIT if status == 429 else Reason.SERVER_ERROR
    history = RetryHistory(
        rate_limit_retries=retries if reason is Reason.RATE_LIMIT else 0,
        error_retries=0 if reason is Reason.RATE_LIMIT else retries,
        last_delay=previous,
        last_reason=None if previous is None else reason,
    )
    decision = policy.decide(history, Outcome(status=status))
    low, high = policy.bounds(retries)
    assert 0.0 <= low <= high <= policy.max_delay
    if decision.delay is not None:
        assert 0.0 <= decision.delay <= policy.max_delay


@pytest.mark.parametrize("jitter", ["full", "equal", "none"])
def test_huge_retry_count_is_clamped_to_max_delay(jitter: JitterMode) -> None:
    policy = ExponentialBackoff(initial=1.0, factor=2.0, max_delay=60.0, jitter=jitter, seed=0)
    assert policy.bounds(10_000)[1] == 60.0
    assert policy.bounds(10_000) == policy.bounds(10**9)
    if jitter == "none":
        decision = policy.decide(RetryHistory(error_retries=10_000), Outcome(status=503))
        assert decision.delay == 60.0


@pytest.mark.parametrize(
    ("jitter", "low"), [("full", 0.0), ("equal", MAX_WAIT / 2), ("none", MAX_WAIT)]
)
def test_huge_retry_count_with_integer_parameters_and_no_cap_waits_a_day_at_most(
    jitter: JitterMode, low: float
) -> None:
    """``initial=1, factor=2`` (ints) with ``max_delay=inf`` must not overflow either.

    The grown base is ``1 * 2 ** 10_000``, an exact int that no float can
    hold; with no cap, one wait is a day at most (before, it was the whole
    budget: with ``rate_limit_budget=inf``, a sleep that overflowed).
    """
    policy = ExponentialBackoff(
        initial=1, factor=2, max_delay=math.inf, jitter=jitter, seed=0, rate_limit_budget=math.inf
    )
    assert policy.bounds(10_000) == (low, MAX_WAIT)
    decision = policy.decide(RetryHistory(rate_limit_retries=10_000), Outcome(status=429))
    assert decision.delay is not None
    assert low <= decision.delay <= MAX_WAIT


@given(
    backoff_kwargs(unlimited=True),
    outcome_sequences(retryable_outcomes(hint=st.none() | hints(3 * MAX_WAIT))),
)
def test_no_wait_is_longer_than_a_day_and_no_hint_up_to_a_day_is_cut_short(
    kwargs: dict[str, Any], outcomes: list[Outcome]
) -> None:
    """Whatever the cap (``math.inf`` included) and the budgets (infinite here).

    A longer wait overflowed ``time.sleep`` (an ``OverflowError`` out of
    ``client.get``) or slept for centuries in asyncio.  A hint is waited in
    full up to ``max_hint``, and ``math.inf`` as ``max_hint`` means a day:
    a longer hint stops the request (``hint_too_long``) rather than being cut.
    """
    policy = ExponentialBackoff(**kwargs | {"max_hint": math.inf})
    for step in simulate(policy, outcomes):
        hint = step.outcome.hint if policy.respect_hints else None
        delay = step.decision.delay
        if delay is not None:
            assert delay <= MAX_WAIT
            assert hint is None or delay >= hint.seconds
        elif hint is not None and hint.seconds > MAX_WAIT and step.decision.reason is not None:
            assert step.decision.stop is StopReason.HINT_TOO_LONG


def test_a_hint_of_exactly_a_day_is_waited_in_full_with_no_limit_on_hints() -> None:
    policy = ExponentialBackoff(max_hint=math.inf, rate_limit_budget=math.inf)
    day = Outcome(status=429, hint=Hint(MAX_WAIT, RETRY_AFTER))
    assert policy.decide(RetryHistory(), day).delay == MAX_WAIT
    longer = Outcome(status=429, hint=Hint(math.nextafter(MAX_WAIT, math.inf), RETRY_AFTER))
    assert policy.decide(RetryHistory(), longer).stop is StopReason.HINT_TOO_LONG


def test_zero_initial_is_refused_because_it_would_hammer_forever() -> None:
    """Zero waits never spend a budget: 429s would be retried at once, forever."""
    with pytest.raises(ValueError, match=r"^initial\b"):
        ExponentialBackoff(initial=0.0)
    with pytest.raises(ValueError, match=r"^initial\b"):
        ExponentialBackoff(initial=timedelta(0))


@pytest.mark.parametrize(
    "initial", [1e-6, timedelta(microseconds=1), 1e-320, 5e-324, math.nextafter(MIN_WAIT, 0)]
)
@pytest.mark.parametrize("factor", [1, 2.0])
def test_an_initial_below_ten_milliseconds_is_refused_because_it_hammers_too(
    initial: float | timedelta, factor: float
) -> None:
    """With ``factor=1``, ``initial=1e-6`` sent 20,000 requests in 0.01 virtual s."""
    with pytest.raises(ValueError, match=r"^initial must be at least 0.01 s"):
        ExponentialBackoff(initial=initial, factor=factor)


@given(backoff_kwargs(unlimited=True), st.integers(min_value=0, max_value=10**6))
def test_the_ceiling_of_every_wait_is_ten_milliseconds_at_least(
    kwargs: dict[str, Any], retry: int
) -> None:
    """What keeps a request that keeps failing from hammering, whatever the factor.

    At the floor, ``factor=1`` and no jitter, it sends 100 requests a second at most.
    """
    assert ExponentialBackoff(**kwargs).bounds(retry)[1] >= MIN_WAIT


def test_the_growth_of_a_zero_base_stays_zero_even_where_the_power_overflows() -> None:
    """0 * factor ** n is 0 for every n (the clamp must not turn it into the cap)."""
    assert _grown(0.0, 2.0, 10_000, 60.0) == 0.0
    assert _grown(1.0, 2.0, 10_000, 60.0) == 60.0


# --- Reproducibility and schedule() -----------------------------------------------------------


@given(backoff_kwargs(), outcome_sequences(outcomes(), min_length=1))
def test_same_seed_gives_the_same_decisions_for_the_same_outcomes(
    kwargs: dict[str, Any], outcomes: list[Outcome]
) -> None:
    first = simulate(ExponentialBackoff(**kwargs), outcomes)
    second = simulate(ExponentialBackoff(**kwargs), outcomes)
    assert first == second


@pytest.mark.parametrize("jitter", JITTER_MODES)
def test_schedule_rows_agree_with_bounds(jitter: JitterMode) -> None:
    policy = ExponentialBackoff(initial=0.5, factor=3.0, max_delay=20.0, jitter=jitter)
    schedule = policy.schedule(2)
    assert [(row.retry, row.low, row.high) for row in schedule] == [
        (n + 1, *policy.bounds(n)) for n in range(2)
    ]
    for row in schedule:
        assert row.low <= row.median <= row.high


@pytest.mark.parametrize("jitter", ["decorrelated", "multiplicative"])
def test_schedule_is_the_same_every_time_whatever_the_policys_seed(jitter: JitterMode) -> None:
    """The sampled medians come from a run seeded with 0, not from the policy's own source."""
    unseeded = ExponentialBackoff(jitter=jitter)
    seeded = ExponentialBackoff(jitter=jitter, seed=99)
    assert unseeded.schedule(2) == seeded.schedule(2)


def test_schedule_stops_where_the_policy_gives_up() -> None:
    policy = ExponentialBackoff(error_attempts=3, jitter="none")
    schedule = policy.schedule(8, reason=Reason.SERVER_ERROR)
    assert schedule == [ScheduleRow(1, 1.0, 1.0, 1.0), ScheduleRow(2, 2.0, 2.0, 2.0)]


@pytest.mark.parametrize("retries", [0, -1])
def test_schedule_rejects_a_non_positive_count(retries: int) -> None:
    with pytest.raises(ValueError, match=r"^retries\b"):
        ExponentialBackoff().schedule(retries)


@pytest.mark.parametrize(
    "retries",
    [MAX_SCHEDULE_RETRIES + 1, 10**9, 2**63 - 1, pytest.param(10**5000, id="5000-digits")],
)
@pytest.mark.parametrize("policy", [ExponentialBackoff(), FixedRetry()], ids=["backoff", "fixed"])
def test_schedule_refuses_more_rows_than_its_maximum_naming_retries(
    policy: RetryPolicy, retries: int
) -> None:
    """``schedule(10**9)`` built a list per row: a MemoryError after 11 s (under 3 GB).

    The budgets end the default schedule after 634 rows anyway.
    """
    with pytest.raises(ValueError, match=r"^retries must be an integer from 1 to 1,000, got"):
        policy.schedule(retries)


@pytest.mark.parametrize("retries", [True, 2.0, "8"])
def test_schedule_refuses_a_count_that_is_not_an_int(retries: Any) -> None:
    with pytest.raises(ValueError, match=r"^retries\b"):
        ExponentialBackoff().schedule(retries)


def test_the_default_schedule_fits_under_the_maximum_in_full() -> None:
    rows = ExponentialBackoff().schedule(MAX_SCHEDULE_RETRIES)
    assert 600 < len(rows) < MAX_SCHEDULE_RETRIES
    assert rows[-1].high == 300.0


# --- FixedRetry -------------------------------------------------------------------------------


def test_fixed_retry_defaults_to_three_attempts_one_second_apart() -> None:
    policy = FixedRetry()
    assert (policy.delay, policy.max_attempts) == (1.0, 3)
    steps = simulate(policy, [Outcome(status=503)] * 5)
    actual = [(s.decision.delay, s.decision.stop) for s in steps]
    assert actual == [(1.0, None), (1.0, None), (None, StopReason.ATTEMPTS)]


@given(
    seconds(600.0),
    st.integers(min_value=1, max_value=20),
    outcome_sequences(retryable_outcomes(hint=st.none() | hints()), min_length=1),
)
def test_fixed_retry_waits_the_same_delay_every_time_and_ignores_hints(
    delay: float, max_attempts: int, outcomes: list[Outcome]
) -> None:
    policy = FixedRetry(delay=delay, max_attempts=max_attempts)
    steps = simulate(policy, outcomes)
    assert [d for _, d in retried(steps)] == [delay] * min(len(outcomes), max_attempts - 1)
    assert len(steps) == min(len(outcomes), max_attempts)
    if len(outcomes) >= max_attempts:
        assert steps[-1].decision.stop is StopReason.ATTEMPTS


@pytest.mark.parametrize("hint", [None, Hint(0.0, RETRY_AFTER), Hint(5.0, RETRY_AFTER)])
def test_fixed_retry_with_one_attempt_never_retries(hint: Hint | None) -> None:
    """Exhaustive over every method, every status class and both ``sent`` flags."""
    policy = FixedRetry(max_attempts=1)
    for template in OUTCOME_TEMPLATES:
        outcome = attrs.evolve(template, hint=hint)
        decision = policy.decide(RetryHistory(), outcome)
        final = classify(outcome) is None
        expected_stop = StopReason.NOT_RETRYABLE if final else StopReason.ATTEMPTS
        assert (decision.delay, decision.stop) == (None, expected_stop)


def test_fixed_retry_schedule_lists_max_attempts_minus_one_waits() -> None:
    assert FixedRetry(delay=2.0, max_attempts=3).schedule() == [
        ScheduleRow(1, 2.0, 2.0, 2.0),
        ScheduleRow(2, 2.0, 2.0, 2.0),
    ]
    assert FixedRetry(max_attempts=20).schedule(4) == [
        ScheduleRow(n, 1.0, 1.0, 1.0) for n in range(1, 5)
    ]
    assert FixedRetry(max_attempts=1).schedule() == []


# --- GITLAB_16_7 ------------------------------------------------------------------------------


def test_gitlab_16_7_is_configured_like_gitlabs_importer() -> None:
    expected = ExponentialBackoff(
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
    assert expected == GITLAB_16_7
    assert [GITLAB_16_7.bounds(n) for n in range(2)] == [(2.0, 4.0), (4.0, 16.0)]


@given(
    st.integers(min_value=0, max_value=2**32),
    st.lists(
        st.builds(
            Outcome,
            status=st.sampled_from(RETRYABLE_STATUSES),
            hint=st.none() | hints(1e9),
        ),
        min_size=3,
        max_size=3,
    ),
)
def test_gitlab_16_7_waits_2_to_4_then_4_to_16_then_gives_up(
    seed: int, outcomes: list[Outcome]
) -> None:
    """Hints, however long, are ignored: the delays stay GitLab's."""
    policy = attrs.evolve(GITLAB_16_7, seed=seed)
    steps = simulate(policy, outcomes)
    first, second, third = (step.decision for step in steps)
    assert first.delay is not None
    assert 2.0 <= first.delay < 4.0
    assert second.delay is not None
    assert 4.0 <= second.delay < 16.0
    assert (third.delay, third.stop, third.history.attempts) == (None, StopReason.ATTEMPTS, 3)


@pytest.mark.parametrize("sent", [True, False])
def test_gitlab_16_7_does_not_retry_transport_errors(sent: bool) -> None:
    decision = GITLAB_16_7.decide(RetryHistory(), Outcome(status=None, sent=sent))
    assert (decision.reason, decision.stop) == (None, StopReason.NOT_RETRYABLE)


def test_gitlab_16_7_has_no_cap() -> None:
    history = RetryHistory(error_retries=5, last_delay=1000.0, last_reason=Reason.SERVER_ERROR)
    delay = attrs.evolve(GITLAB_16_7, seed=0).decide(history, Outcome(status=503)).delay
    assert delay is not None
    assert 2000.0 <= delay < 4000.0


def test_gitlab_16_7_schedule_lists_its_two_waits() -> None:
    schedule = GITLAB_16_7.schedule()
    assert [(row.retry, row.low, row.high) for row in schedule] == [(1, 2.0, 4.0), (2, 4.0, 16.0)]


# --- Parameters -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"initial": -1.0}, "initial"),
        ({"initial": math.nan}, "initial"),
        ({"initial": math.inf}, "initial"),
        ({"initial": -math.inf}, "initial"),
        ({"initial": "1"}, "initial"),
        ({"initial": None}, "initial"),
        ({"initial": True}, "initial"),
        ({"initial": timedelta(seconds=-1)}, "initial"),
        ({"factor": 0.5}, "factor"),
        ({"factor": 0}, "factor"),
        ({"factor": math.nan}, "factor"),
        ({"factor": math.inf}, "factor"),
        ({"factor": "2"}, "factor"),
        ({"factor": True}, "factor"),
        ({"max_delay": 0.5}, "max_delay"),
        ({"initial": 10.0, "max_delay": timedelta(seconds=9)}, "max_delay"),
        ({"max_delay": -1.0}, "max_delay"),
        ({"max_delay": math.nan}, "max_delay"),
        ({"max_delay": "60"}, "max_delay"),
        ({"jitter": "FULL"}, "jitter"),
        ({"jitter": "exponential"}, "jitter"),
        ({"jitter": ""}, "jitter"),
        ({"seed": True}, "seed"),
        ({"seed": False}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"seed": "42"}, "seed"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": -1}, "max_attempts"),
        ({"max_attempts": 2.0}, "max_attempts"),
        ({"max_attempts": True}, "max_attempts"),
        ({"max_attempts": "3"}, "max_attempts"),
        ({"error_attempts": 0}, "error_attempts"),
        ({"error_attempts": -3}, "error_attempts"),
        ({"error_attempts": None}, "error_attempts"),
        ({"error_attempts": True}, "error_attempts"),
        ({"error_budget": -1.0}, "error_budget"),
        ({"error_budget": math.nan}, "error_budget"),
        ({"error_budget": "60"}, "error_budget"),
        ({"rate_limit_budget": -1.0}, "rate_limit_budget"),
        ({"rate_limit_budget": math.nan}, "rate_limit_budget"),
        ({"max_hint": -0.5}, "max_hint"),
        ({"max_hint": math.nan}, "max_hint"),
        ({"max_hint": [1]}, "max_hint"),
        # One wait past a day: time.sleep overflowed on it (about 2.9e9 s), or
        # the async client slept for centuries; milliseconds taken for seconds.
        ({"initial": 1e10, "max_delay": 1e10}, "initial"),
        ({"initial": MAX_WAIT + 1, "max_delay": math.inf}, "initial"),
        ({"max_delay": 1e10}, "max_delay"),
        ({"max_delay": timedelta(days=2)}, "max_delay"),
        ({"max_hint": 1e10}, "max_hint"),
        ({"max_hint": MAX_WAIT + 1}, "max_hint"),
        ({"factor": 10**400}, "factor"),
        ({"max_attempts": 10**400 * -1}, "max_attempts"),
        # Past Python's 4,300-digit limit: repr() of these raised a ValueError naming nothing.
        ({"initial": 10**5000}, "initial"),
        ({"max_delay": 10**5000}, "max_delay"),
        ({"error_budget": -(10**5000)}, "error_budget"),
        ({"max_attempts": 10**5000}, "max_attempts"),
        ({"max_attempts": 2**63}, "max_attempts"),
        ({"error_attempts": 10**5000}, "error_attempts"),
        ({"jitter": []}, "jitter"),  # unhashable: raised TypeError "unhashable type"
        ({"jitter": {}}, "jitter"),
        ({"jitter": None}, "jitter"),
        ({"respect_hints": "no"}, "respect_hints"),
        ({"respect_hints": 0}, "respect_hints"),
        ({"retry_transport_errors": "false"}, "retry_transport_errors"),
        ({"shared_backoff": None}, "shared_backoff"),
    ],
)
def test_invalid_exponential_backoff_parameter_raises_naming_it(
    kwargs: dict[str, Any], name: str
) -> None:
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        ExponentialBackoff(**kwargs)


def test_a_huge_seed_is_taken_and_its_repr_does_not_print_its_digits() -> None:
    policy = ExponentialBackoff(seed=10**5000)
    assert "seed=a huge int" in repr(policy)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"delay": -1.0}, "delay"),
        ({"delay": math.nan}, "delay"),
        ({"delay": math.inf}, "delay"),
        ({"delay": "1"}, "delay"),
        ({"delay": False}, "delay"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": None}, "max_attempts"),
        ({"max_attempts": True}, "max_attempts"),
        ({"max_attempts": 1.0}, "max_attempts"),
        ({"delay": 10**5000}, "delay"),
        ({"max_attempts": 10**5000}, "max_attempts"),
        ({"delay": 1e10}, "delay"),  # overflowed time.sleep, out of client.get
        ({"delay": MAX_WAIT + 1}, "delay"),
        ({"delay": timedelta(days=1, microseconds=1)}, "delay"),
    ],
)
def test_invalid_fixed_retry_parameter_raises_naming_it(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        FixedRetry(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial": MIN_WAIT},
        {"factor": 1},
        {"initial": 5.0, "max_delay": 5.0},
        {"max_delay": math.inf},
        {"seed": 0},
        {"seed": 2**100},
        {"seed": -1},
        {"max_attempts": 1},
        {"max_attempts": 2**63 - 1},
        {"error_attempts": 1},
        {"error_budget": 0, "rate_limit_budget": 0, "max_hint": 0},
        {"error_budget": math.inf, "rate_limit_budget": math.inf, "max_hint": math.inf},
        {"initial": MAX_WAIT, "max_delay": MAX_WAIT, "max_hint": MAX_WAIT},
        {"error_budget": 1e300, "rate_limit_budget": 1e300},  # budgets: any (no sleep is longer)
    ],
)
def test_edge_values_are_valid(kwargs: dict[str, Any]) -> None:
    policy = ExponentialBackoff(**kwargs)
    assert {name: getattr(policy, name) for name in kwargs} == kwargs


@given(
    name=st.sampled_from(["initial", "max_delay", "error_budget", "rate_limit_budget", "max_hint"]),
    microseconds=st.integers(min_value=0, max_value=10**12),
)
def test_timedelta_equals_float_seconds_for_every_time_parameter(
    name: str, microseconds: int
) -> None:
    if name in {"initial", "max_delay"}:
        microseconds = max(microseconds, 10_000)  # initial >= 10 ms, and max_delay >= initial
    if name in {"initial", "max_delay", "max_hint"}:
        microseconds = min(microseconds, int(MAX_WAIT) * 10**6)  # one wait: a day at most
    seconds = microseconds / 10**6
    # the smallest initial and no cap, so that any initial and any max_delay is valid
    uncapped: dict[str, Any] = {"initial": MIN_WAIT, "max_delay": math.inf}
    from_timedelta = ExponentialBackoff(**uncapped | {name: timedelta(microseconds=microseconds)})
    from_float = ExponentialBackoff(**uncapped | {name: seconds})
    assert from_timedelta == from_float
    assert getattr(from_timedelta, name) == seconds


@given(microseconds=st.integers(min_value=0, max_value=int(MAX_WAIT) * 10**6))
def test_fixed_retry_timedelta_delay_equals_float_seconds(microseconds: int) -> None:
    seconds = microseconds / 10**6
    assert FixedRetry(delay=timedelta(microseconds=microseconds)) == FixedRetry(delay=seconds)
    assert FixedRetry(delay=timedelta(microseconds=microseconds)).delay == seconds


# --- Small pieces -----------------------------------------------------------------------------


def test_both_policies_satisfy_the_retry_policy_protocol() -> None:
    assert isinstance(ExponentialBackoff(), RetryPolicy)
    assert isinstance(FixedRetry(), RetryPolicy)
    assert isinstance(GITLAB_16_7, RetryPolicy)


def test_history_waited_is_the_sum_of_both_reasons() -> None:
    assert RetryHistory(rate_limit_waited=2.5, error_waited=1.25).waited == 3.75


def test_decision_retries_exactly_when_it_has_a_delay() -> None:
    history = RetryHistory()
    assert Decision(Reason.RATE_LIMIT, 0.0, None, None, history).retry is True
    assert Decision(None, None, StopReason.NOT_RETRYABLE, None, history).retry is False


def test_rate_limits_and_errors_keep_separate_backoff_sequences() -> None:
    """An hour of 429s must not make the next 5xx wait as long as a rate limit does."""
    policy = ExponentialBackoff(jitter="none", max_delay=300, seed=0)
    history = RetryHistory()
    for _ in range(20):
        history = policy.decide(history, Outcome(status=429)).history
    assert history.rate_limit_retries == 20
    error_wait = policy.decide(history, Outcome(status=503))
    assert error_wait.delay == 1.0
    assert policy.decide(error_wait.history, Outcome(status=429)).delay == 300.0


def test_decorrelated_jitter_restarts_from_initial_when_the_reason_changes() -> None:
    policy = ExponentialBackoff(jitter="decorrelated", initial=1, max_delay=300, seed=0)
    history = RetryHistory(rate_limit_retries=9, last_delay=290.0, last_reason=Reason.RATE_LIMIT)
    delay = policy.decide(history, Outcome(status=502)).delay
    assert delay is not None
    assert 1.0 <= delay <= 3.0


def test_gitlab_16_7_shares_one_sequence_across_reasons_as_gitlab_did() -> None:
    """GitLab's module keeps one ``delay`` whatever the status: 429 then 503 keeps doubling."""
    policy = attrs.evolve(GITLAB_16_7, seed=0)
    first = policy.decide(RetryHistory(), Outcome(status=429))
    second = policy.decide(first.history, Outcome(status=503))
    assert first.delay is not None
    assert second.delay is not None
    assert 2.0 <= first.delay < 4.0
    assert 2 * first.delay <= second.delay < 4 * first.delay


def test_the_last_wait_fits_the_budget_exactly_despite_float_rounding() -> None:
    """7.7 s of budget: the waits must add up to at most 7.7, not 7.700000000000001."""
    policy = ExponentialBackoff(jitter="none", error_budget=7.7, error_attempts=50, seed=0)
    steps = simulate(policy, [Outcome(status=503)] * 10)
    total = 0.0
    for _, delay in retried(steps):
        total += delay  # summed in the policy's order, as its history does
    assert total <= 7.7
    assert steps[-1].decision.stop is StopReason.BUDGET
