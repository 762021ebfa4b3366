"""The account's window model (bb_backoff._window): pure transitions on explicit time.

Each test drives a :class:`WindowModel` by hand: ``reserve`` at a time, then
``observe`` what the "server" answered.  The property tests check the rules
that must hold whatever happens: the model never lets more than the limit
into a window, never sends before a hold, never hands out a negative delay,
and spaces its probes within their jitter bounds.
"""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bb_backoff._window import (
    BREAKER,
    ERROR,
    GO,
    HOLD,
    MODEL,
    OK,
    PROBE,
    PROBING,
    RATE_LIMITED,
    WAIT,
    WINDOW,
    Grant,
    Observation,
    WindowModel,
    WindowParams,
    probe_wait,
)

PARAMS = WindowParams(window=100.0)
_members = itertools.count()


def reserve(model: WindowModel, now: float, params: WindowParams = PARAMS, **kw: object) -> Grant:
    return model.reserve(now, params, member=next(_members), **kw)  # type: ignore[arg-type]


def answer(
    model: WindowModel,
    now: float,
    grant: Grant,
    outcome: str = OK,
    params: WindowParams = PARAMS,
    **fields: object,
) -> None:
    model.observe(now, params, grant, Observation(outcome, **fields), draw=0.5)  # type: ignore[arg-type]


def fill(model: WindowModel, count: int, now: float = 0.0) -> list[Grant]:
    """``count`` sends at ``now``, all let through."""
    grants = [reserve(model, now) for _ in range(count)]
    for grant in grants:
        answer(model, now, grant)
    return grants


# -- MODEL: learning the limit ----------------------------------------------------------


def test_with_no_limit_known_every_send_goes_at_once_and_is_logged() -> None:
    model = WindowModel()
    grants = [reserve(model, float(t)) for t in range(5)]
    assert [(g.kind, g.delay) for g in grants] == [(GO, 0.0)] * 5
    assert [at for at, _ in model.log] == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_the_first_429_teaches_the_limit_from_what_got_through_before_it() -> None:
    model = WindowModel()
    fill(model, 7, now=1.0)
    refused = reserve(model, 2.0)
    answer(model, 2.1, refused, RATE_LIMITED)
    assert (model.mode, model.limit) == (MODEL, 7)
    assert len(model.log) == 7  # the refused send spent nothing


def test_once_the_limit_is_known_the_next_send_waits_for_the_oldest_to_leave_the_window() -> None:
    model = WindowModel()
    fill(model, 3, now=10.0)
    answer(model, 11.0, reserve(model, 11.0), RATE_LIMITED)
    grant = reserve(model, 12.0, margin=0.25)
    assert grant.kind == GO
    assert grant.reason == WINDOW
    assert grant.delay == pytest.approx(10.0 + 100.0 + 0.25 - 12.0)


def test_waiting_sends_are_released_in_the_order_they_asked() -> None:
    """No capture effect: a request that asked first never goes after a later one."""
    model = WindowModel()
    for t in range(5):
        answer(model, float(t), reserve(model, float(t)))
    answer(model, 5.0, reserve(model, 5.0), RATE_LIMITED)
    times = [reserve(model, 6.0 + i / 10).at for i in range(10)]
    assert times == sorted(times)
    assert times[:5] == [100.0, 101.0, 102.0, 103.0, 104.0]
    assert times[5:] == [200.0, 201.0, 202.0, 203.0, 204.0]


def test_429s_of_sends_in_flight_at_discovery_correct_the_learned_limit() -> None:
    """Sends reserved at the same instant as the first refused one were counted as let through."""
    model = WindowModel()
    burst = [reserve(model, 0.0) for _ in range(10)]
    for grant in burst[:6]:
        answer(model, 0.1, grant)
    answer(model, 0.1, burst[9], RATE_LIMITED)
    assert model.limit == 9  # counted everything logged up to that instant
    for grant in burst[6:9]:
        answer(model, 0.1, grant, RATE_LIMITED)
    assert model.limit == 6


def test_a_429_on_an_older_model_changes_nothing_but_the_log() -> None:
    model = WindowModel()
    fill(model, 4)
    early = reserve(model, 1.0)
    late = reserve(model, 1.0)
    answer(model, 1.1, early, RATE_LIMITED)
    generation = model.generation
    answer(model, 1.2, late, RATE_LIMITED)
    assert (model.mode, model.generation) == (MODEL, generation)
    assert len(model.log) == 4


def test_a_configured_limit_is_used_before_any_429() -> None:
    params = WindowParams(window=100.0, limit=2)
    model = WindowModel()
    grants = [reserve(model, 0.0, params) for _ in range(3)]
    assert [g.delay for g in grants] == [0.0, 0.0, 100.0]


def test_x_ratelimit_limit_wins_over_the_configuration_and_any_estimate() -> None:
    params = WindowParams(window=100.0, limit=50)
    model = WindowModel()
    first = reserve(model, 0.0, params)
    answer(model, 0.1, first, params=params, header_limit=3)
    assert (model.ceiling, model.cap(params)) == (3, 3)
    grants = [reserve(model, 1.0, params) for _ in range(3)]
    assert [g.delay for g in grants] == [0.0, 0.0, 99.0]


def test_a_send_that_never_left_is_dropped_from_the_log() -> None:
    model = WindowModel()
    grant = reserve(model, 0.0)
    answer(model, 0.1, grant, ERROR, sent=False)
    assert model.log == []


def test_a_timed_out_send_stays_in_the_log() -> None:
    """The server probably counted it; the model assumes the worse."""
    model = WindowModel()
    grant = reserve(model, 0.0)
    answer(model, 30.0, grant, ERROR)
    assert len(model.log) == 1


def test_sends_older_than_the_window_are_forgotten() -> None:
    model = WindowModel()
    fill(model, 3, now=0.0)
    reserve(model, 100.5, margin=0.25)
    assert [at for at, _ in model.log] == [100.5]


# -- hints -----------------------------------------------------------------------------


def test_a_hint_holds_every_send_of_the_account_until_it_passes() -> None:
    model = WindowModel()
    fill(model, 2)
    answer(model, 1.0, reserve(model, 1.0), RATE_LIMITED, hint=30.0)
    # Discovery with a hint: the model learns the limit, and the server's word
    # wins: one probe when the hold has passed, nothing before.
    assert model.limit == 2
    grant = reserve(model, 2.0)
    assert (grant.kind, grant.reason, 2.0 + grant.delay) == (WAIT, HOLD, 31.0)
    assert reserve(model, 31.0).kind == PROBE


def test_a_hold_is_capped_at_max_hold_for_the_rest_of_the_account() -> None:
    params = WindowParams(window=100.0, max_hold=100.0)
    model = WindowModel()
    answer(model, 0.0, reserve(model, 0.0, params), RATE_LIMITED, params=params, hint=1e9)
    assert model.hold_until == 100.0


# -- PROBE: the model was wrong ---------------------------------------------------------


def probing_model() -> WindowModel:
    """A model that learned a limit of 3, then met a 429 it did not predict."""
    model = WindowModel()
    fill(model, 3)
    answer(model, 0.5, reserve(model, 0.5), RATE_LIMITED)
    grant = reserve(model, 200.0)
    assert grant.delay == 0.0
    answer(model, 200.1, grant, RATE_LIMITED)
    assert model.mode == PROBING
    return model


def test_a_429_the_model_did_not_predict_switches_to_probing() -> None:
    model = probing_model()
    assert model.probe_at == pytest.approx(200.1 + probe_wait(0, 1.0, 300.0, 0.5))


def test_while_probing_only_one_request_probes_and_the_others_wait() -> None:
    model = probing_model()
    early = reserve(model, 200.2)
    assert (early.kind, early.reason) == (WAIT, PROBING)
    probe = reserve(model, 202.0)
    others = [reserve(model, 202.0) for _ in range(3)]
    assert probe.kind == PROBE
    assert [g.kind for g in others] == [WAIT] * 3


def test_a_failed_probe_doubles_the_wait_before_the_next() -> None:
    model = probing_model()
    waits = []
    now = 202.0
    for _ in range(5):
        probe = reserve(model, now)
        assert probe.kind == PROBE
        answer(model, now, probe, RATE_LIMITED)
        waits.append(model.probe_at - now)
        now = model.probe_at
    assert waits == [probe_wait(n, 1.0, 300.0, 0.5) for n in range(1, 6)]


def test_a_probe_that_gets_through_lets_the_others_follow_under_the_model() -> None:
    model = probing_model()
    probe = reserve(model, 202.0)
    answer(model, 202.1, probe, OK)
    assert model.mode == MODEL
    assert reserve(model, 202.2).kind == GO


def test_a_probe_into_a_window_full_of_others_sends_keeps_probing_one_at_a_time() -> None:
    """Nothing of ours in the window: the model cannot tell when slots free; probing goes on."""
    model = WindowModel()
    answer(model, 0.0, reserve(model, 0.0), RATE_LIMITED)
    assert (model.mode, model.limit) == (PROBING, None)
    for now in (5.0, 5.2, 5.4):
        probe = reserve(model, now)
        assert probe.kind == PROBE
        answer(model, now + 0.1, probe, OK)
        assert (model.mode, model.limit, model.probe_at) == (PROBING, None, now + 0.1)
    refused = reserve(model, 5.6)
    answer(model, 5.7, refused, RATE_LIMITED)
    assert (model.mode, model.limit) == (PROBING, 3)  # the share it got before the window filled
    probe = reserve(model, model.probe_at)
    answer(model, model.probe_at + 0.1, probe, OK)
    assert (model.mode, model.limit) == (MODEL, 4)


def test_an_unanswered_probe_lets_another_request_probe_after_its_lease() -> None:
    model = probing_model()
    reserve(model, 202.0)
    assert reserve(model, 202.0 + PARAMS.probe_lease - 1).kind == WAIT
    assert reserve(model, 202.0 + PARAMS.probe_lease).kind == PROBE


# -- BREAKER: errors in a row ----------------------------------------------------------


def test_errors_in_a_row_across_the_account_open_the_breaker() -> None:
    model = WindowModel()
    for n in range(PARAMS.failure_threshold):
        assert model.mode == MODEL
        answer(model, float(n), reserve(model, float(n)), ERROR)
    assert model.mode == BREAKER
    assert model.outage_since == PARAMS.failure_threshold - 1


def test_an_answer_between_errors_resets_the_count() -> None:
    model = WindowModel()
    for n in range(20):
        outcome = OK if n % PARAMS.failure_threshold == 0 else ERROR
        answer(model, float(n), reserve(model, float(n)), outcome)
    assert model.mode == MODEL


def test_the_breaker_probes_one_at_a_time_and_closes_on_the_first_answer() -> None:
    model = WindowModel()
    for _ in range(PARAMS.failure_threshold):
        answer(model, 0.0, reserve(model, 0.0), ERROR)
    waiting = reserve(model, 0.1)
    assert (waiting.kind, waiting.reason) == (WAIT, BREAKER)
    now = model.probe_at
    probe = reserve(model, now)
    assert (probe.kind, probe.reason) == (PROBE, BREAKER)
    assert reserve(model, now).kind == WAIT
    answer(model, now + 0.1, probe, ERROR)
    assert model.mode == BREAKER
    now = model.probe_at
    probe = reserve(model, now)
    answer(model, now + 0.1, probe, OK)
    assert (model.mode, model.failures) == (MODEL, 0)


def test_a_breaker_probe_that_gets_a_429_moves_to_rate_limit_probing() -> None:
    model = WindowModel()
    for _ in range(PARAMS.failure_threshold):
        answer(model, 0.0, reserve(model, 0.0), ERROR)
    probe = reserve(model, model.probe_at)
    answer(model, model.probe_at, probe, RATE_LIMITED)
    assert model.mode == PROBING


# -- X-RateLimit-NearLimit -------------------------------------------------------------


def test_near_limit_while_the_model_sees_room_paces_sends_at_the_sustainable_rate() -> None:
    params = WindowParams(window=100.0, limit=10)
    model = WindowModel()
    first = reserve(model, 0.0, params)
    answer(model, 0.1, first, params=params, near=True)
    assert model.pace
    assert reserve(model, 0.2, params).at == pytest.approx(10.0)
    answer(model, 0.3, reserve(model, 0.3, params), params=params, near=False)
    assert not model.pace


def test_near_limit_when_the_model_itself_is_near_its_limit_changes_nothing() -> None:
    params = WindowParams(window=100.0, limit=10)
    model = WindowModel()
    grants = [reserve(model, 0.0, params) for _ in range(9)]
    answer(model, 0.1, grants[-1], params=params, near=True)
    assert not model.pace


# -- rules that always hold -------------------------------------------------------------

_EVENTS = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=30.0, allow_nan=False),
        st.sampled_from([OK, OK, OK, RATE_LIMITED, ERROR]),
        st.one_of(st.none(), st.floats(min_value=0.0, max_value=200.0, allow_nan=False)),
    ),
    max_size=60,
)


@given(
    limit=st.integers(min_value=1, max_value=8),
    events=_EVENTS,
    margin=st.floats(min_value=0.0, max_value=2.0),
)
def test_a_configured_limit_is_never_exceeded_in_any_window(
    limit: int, events: list[tuple[float, str, float | None]], margin: float
) -> None:
    """Whatever the answers, the sends the model lets go never crowd one window."""
    params = WindowParams(window=100.0, limit=limit)
    model = WindowModel()
    now = 0.0
    sent: list[float] = []
    for step, outcome, hint in events:
        now += step
        grant = reserve(model, now, params, margin=margin)
        assert grant.delay >= 0
        if grant.kind == WAIT:
            continue
        if grant.kind == GO:
            assert grant.at >= now
            assert grant.at >= model.hold_until or grant.reason != HOLD
        sent.append(grant.at)
        answer(model, grant.at, grant, outcome, params=params, hint=hint)
        if outcome == RATE_LIMITED:
            sent.remove(grant.at)  # refused: the server counted nothing
    sent.sort()
    for index in range(len(sent) - limit):
        # The (limit + 1)-th send after any send is a whole window later.
        assert sent[index + limit] - sent[index] >= params.window


@given(
    hint=st.floats(min_value=0.0, max_value=1000.0, allow_nan=False),
    later=st.lists(st.floats(min_value=0.0, max_value=50.0, allow_nan=False), max_size=10),
)
def test_no_send_goes_before_a_hint_has_passed(hint: float, later: list[float]) -> None:
    model = WindowModel()
    fill(model, 2)
    answer(model, 1.0, reserve(model, 1.0), RATE_LIMITED, hint=hint)
    held = min(hint, PARAMS.max_hold)
    now = 1.0
    for step in later:
        now += step
        grant = reserve(model, now)
        if grant.kind != WAIT:
            assert grant.at >= 1.0 + held - 1e-9


@given(
    failed=st.integers(min_value=0, max_value=10_000),
    initial=st.floats(min_value=1e-3, max_value=100.0),
    cap=st.floats(min_value=100.0, max_value=1e6),
    draw=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_a_probe_wait_is_equal_jitter_below_the_cap_and_never_zero(
    failed: int, initial: float, cap: float, draw: float
) -> None:
    wait = probe_wait(failed, initial, cap, draw)
    # 2 ** 64 times the smallest initial is far above the largest cap.
    base = min(cap, initial * 2.0**failed) if failed < 64 else cap
    assert base / 2 <= wait <= base
    assert 0 < wait <= cap
    assert math.isfinite(wait)


def test_a_probe_answered_after_its_send_left_the_window_never_sets_the_limit_to_zero() -> None:
    # Found by the Redis store's differential test: a new X-RateLimit-Limit
    # resets the learned limit, and the late probe's send is no longer in the
    # window, so the window "held" nothing; a limit of 0 stopped every send.
    model = WindowModel()
    answer(model, 0.0, reserve(model, 0.0), header_limit=3)
    answer(model, 0.0, reserve(model, 0.0), RATE_LIMITED, hint=0.1)
    assert model.mode == PROBING
    probe = reserve(model, 20.0)
    assert probe.kind == PROBE
    answer(model, 20.0 + 2 * PARAMS.window, probe, header_limit=4)
    assert (model.mode, model.limit) == (MODEL, 1)
    assert reserve(model, 20.0 + 2 * PARAMS.window).kind == GO
