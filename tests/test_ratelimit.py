"""The mock's rolling rate windows, driven directly with explicit times.

test_mock.py pins what a client sees (429s, hints, headers); these tests pin
the window arithmetic underneath, on exact integer times.
"""

from __future__ import annotations

import copy

from hypothesis import given
from hypothesis import strategies as st

from bb_backoff.testing._ratelimit import Admission, RateLimiter


def limiter(
    limit: int, window: float = 60.0, *, other_share: float = 0.0, count_rejected: bool = False
) -> RateLimiter:
    return RateLimiter(
        limit=limit,
        window=window,
        other_share=other_share,
        count_rejected=count_rejected,
        start=1000.0,
    )


def test_a_slot_frees_exactly_window_seconds_after_its_request() -> None:
    rate = limiter(1)
    assert rate.admit("p", 1000.0) == Admission(accepted=True, used=1, wait=0.0)
    assert rate.admit("p", 1059.5) == Admission(accepted=False, used=1, wait=0.5)
    assert rate.admit("p", 1060.0) == Admission(accepted=True, used=1, wait=0.0)


def test_a_refused_request_waits_for_the_oldest_slot_that_makes_room() -> None:
    rate = limiter(2)
    rate.admit("p", 1000.0)
    rate.admit("p", 1010.0)
    assert rate.admit("p", 1020.0) == Admission(accepted=False, used=2, wait=40.0)


def test_with_count_rejected_refused_requests_hold_slots_and_push_the_wait_back() -> None:
    rate = limiter(1, count_rejected=True)
    rate.admit("p", 1000.0)
    # The refusal holds its own slot, so room comes only when it expires.
    assert rate.admit("p", 1030.0) == Admission(accepted=False, used=2, wait=60.0)
    assert rate.admit("p", 1060.0) == Admission(accepted=False, used=2, wait=60.0)
    assert rate.admit("p", 1120.0) == Admission(accepted=True, used=1, wait=0.0)


def test_a_zero_limit_refuses_everything_for_a_whole_window() -> None:
    rate = limiter(0)
    assert rate.admit("p", 1000.0) == Admission(accepted=False, used=0, wait=60.0)


def test_principals_have_separate_windows() -> None:
    rate = limiter(1)
    assert rate.admit("access-token", 1000.0).accepted
    assert rate.admit("user:someone@example.com", 1000.0).accepted
    assert not rate.admit("access-token", 1001.0).accepted


def test_other_consumers_fill_their_share_from_the_start_and_count_only_after_it() -> None:
    rate = limiter(10, 100.0, other_share=0.5)
    accepted = [rate.admit("p", 1000.0).accepted for _ in range(6)]
    assert accepted == [True] * 5 + [False]
    assert rate.other_calls == 0
    # Their next request comes 100 / 5 = 20 s after their last one, at 1020.
    rate.admit("p", 1020.0)
    assert rate.other_calls == 1


def test_the_oldest_wait_is_at_least_a_second_and_one_without_a_principal() -> None:
    rate = limiter(2)
    assert rate.oldest_wait(None, 1000.0) == 1.0
    assert rate.oldest_wait("p", 1000.0) == 1.0
    rate.admit("p", 1000.0)
    assert rate.oldest_wait("p", 1030.0) == 30.0
    assert rate.oldest_wait("p", 1059.5) == 1.0


@given(
    limit=st.integers(min_value=1, max_value=5),
    window=st.integers(min_value=1, max_value=100),
    gaps=st.lists(st.integers(min_value=0, max_value=40), max_size=60),
    count_rejected=st.booleans(),
)
def test_no_window_ever_holds_more_than_limit_and_a_refusal_waits_exactly_long_enough(
    limit: int, window: int, gaps: list[int], count_rejected: bool
) -> None:
    rate = limiter(limit, float(window), count_rejected=count_rejected)
    now = 1000.0
    accepted: list[float] = []
    for gap in gaps:
        now += gap
        retry = copy.deepcopy(rate)
        admission = rate.admit("p", now)
        if admission.accepted:
            accepted.append(now)
            assert sum(1 for at in accepted if at > now - window) <= limit
        else:
            assert 0 < admission.wait <= window
            # Without count_rejected, nothing else holds a slot: room comes exactly then.
            if not count_rejected:
                assert not retry.admit("p", now + admission.wait - 0.5).accepted
                assert retry.admit("p", now + admission.wait).accepted
