"""bb_backoff._bench._scenarios: the lower bound, the quick variants, the scenario table.

The lower bound is checked against an ideal client: one that knows the mock's
rolling window exactly and sends every call at the first instant the window
admits it, with the scenario's workers and latency.  Any client's import
takes at least as long, so a lower bound must never exceed it.
"""

from __future__ import annotations

import heapq
import math
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bb_backoff._bench import SCENARIOS, Scenario, scenario_named
from bb_backoff._bench._importer import PAGELEN
from bb_backoff._bench._scenarios import QUICK_SIZE
from bb_backoff.testing import Dataset, Faults, MockBitbucket
from bb_backoff.testing._ratelimit import RateLimiter

# The calls a complete import of the default dataset makes (docs/benchmark.md).
DEFAULT_CALLS_NEEDED = 1035
NOT_FOR_THE_MOCK = {"name", "summary", "workers", "configured_limit"}


def ideal_import_seconds(scenario: Scenario, calls: int) -> float:
    """When the last of ``calls`` independent calls completes, sent as early as the window allows.

    Uses the mock's own rate limiter, so the answer is what the mock admits.
    Every worker sends its next call when its previous one is answered
    (``latency`` later) or, if the window is full, at the instant it has room;
    it knows the outage and sends nothing during it.
    """
    limiter = RateLimiter(
        limit=scenario.limit,
        window=scenario.window,
        other_share=scenario.other_consumers,
        count_rejected=False,
        start=0.0,
    )
    ready = [0.0] * scenario.workers
    made = 0
    finished = 0.0
    outage_end = scenario.faults.outage_start + scenario.faults.outage_seconds
    while made < calls:
        at = heapq.heappop(ready)
        if scenario.faults.in_outage(at):
            heapq.heappush(ready, outage_end)
            continue
        admission = limiter.admit("access-token", at)
        if admission.accepted:
            made += 1
            finished = max(finished, at + scenario.latency)
            heapq.heappush(ready, at + scenario.latency)
        else:
            # The limiter can answer a wait of 0.0 when rounding keeps the
            # oldest slot one ulp short of expiring; the next float is the
            # earliest the ideal client can try again.
            heapq.heappush(ready, max(at + admission.wait, math.nextafter(at, math.inf)))
    return finished


def scenario(**changes: Any) -> Scenario:
    return attrs.evolve(Scenario(name="custom", summary="a test scenario"), **changes)


# -- lower_bound -----------------------------------------------------------------------


def test_lower_bound_is_a_window_per_further_quota() -> None:
    hourly = scenario(limit=1000, window=3600.0)
    assert [hourly.lower_bound(n) for n in (1001, 2000, 2001, 3001)] == [
        3600.0,
        3600.0,
        7200.0,
        10800.0,
    ]


def test_lower_bound_takes_the_other_consumers_share_out_of_the_quota() -> None:
    # Half of 1000 left: 1035 calls need three quotas, so two further windows.
    shared = scenario(limit=1000, window=3600.0, other_consumers=0.5)
    assert shared.lower_bound(DEFAULT_CALLS_NEEDED) == 7200.0
    assert shared.lower_bound(501) == scenario(limit=500).lower_bound(501) == 3600.0


def test_lower_bound_is_the_latency_spread_over_the_workers_when_the_quota_suffices() -> None:
    roomy = scenario(limit=1000, workers=4, latency=0.1)
    assert roomy.lower_bound(1000) == pytest.approx(250 * 0.1)
    assert roomy.lower_bound(9) == pytest.approx(3 * 0.1)


def test_lower_bound_is_the_longer_of_the_rate_and_the_latency_bounds() -> None:
    # One worker at 10 s a call: 20 calls take 200 s, longer than one window of 100 s.
    slow = scenario(limit=10, window=100.0, workers=1, latency=10.0)
    assert slow.lower_bound(20) == 200.0
    fast = attrs.evolve(slow, latency=1.0)
    assert fast.lower_bound(20) == 100.0


def test_lower_bound_of_no_calls_is_zero() -> None:
    assert scenario(latency=0.0).lower_bound(0) == 0.0


@pytest.mark.parametrize(
    "named",
    [
        *(pytest.param(s, id=s.name) for s in SCENARIOS),
        *(pytest.param(s.quick(), id=f"{s.name}-quick") for s in SCENARIOS),
    ],
)
def test_lower_bound_of_every_scenario_holds_for_an_ideal_client(named: Scenario) -> None:
    """The bound behind the table's "time ÷ bound": no client may beat it against the mock."""
    calls = Dataset.generate(0, named.size).requests_needed(PAGELEN)
    assert named.lower_bound(calls) <= ideal_import_seconds(named, calls)


def test_lower_bound_counts_the_other_consumers_in_whole_requests() -> None:
    # 7 requests, half taken by others: the mock lets others hold 3 slots (it
    # cannot hold half a request), so 4 calls fit in the first window.
    shared = scenario(limit=7, workers=4, latency=0.1, other_consumers=0.5)
    assert ideal_import_seconds(shared, 4) == pytest.approx(0.1)
    assert shared.lower_bound(4) == pytest.approx(0.1)


def test_an_outage_during_the_wait_for_the_window_does_not_move_the_lower_bound() -> None:
    """The outage scenario: the outage ends long before the hour every client waits for."""
    outage = scenario_named("outage")
    assert outage.lower_bound(DEFAULT_CALLS_NEEDED) == 3600.0
    assert outage.lower_bound(DEFAULT_CALLS_NEEDED) == pytest.approx(
        ideal_import_seconds(outage, DEFAULT_CALLS_NEEDED), abs=1.0
    )


def test_an_outage_before_the_quota_is_spent_pushes_the_rest_of_the_calls_after_it() -> None:
    # One worker, a call a second: 11 calls before the outage at 10.5 s, 89 after it ends.
    slow = scenario(
        limit=1000, workers=1, latency=1.0, faults=Faults(outage_start=10.5, outage_seconds=600)
    )
    assert slow.lower_bound(100) == 610.5 + 89
    assert ideal_import_seconds(slow, 100) == 610.5 + 89


def test_an_outage_from_the_start_delays_the_whole_import_by_its_length() -> None:
    down = scenario(latency=0.1, workers=4, faults=Faults(outage_start=0, outage_seconds=600))
    up = attrs.evolve(down, faults=Faults())
    assert down.lower_bound(DEFAULT_CALLS_NEEDED) == 600.0 + up.lower_bound(DEFAULT_CALLS_NEEDED)


def test_an_outage_starting_a_hair_after_zero_still_lets_the_first_calls_through() -> None:
    # 5e-324 / 2 underflows to 0: the calls sent at 0 must still count as before the outage.
    outage = Faults(outage_start=5e-324, outage_seconds=1.0)
    hair = scenario(limit=1, window=2.0, workers=1, latency=0.0, faults=outage)
    assert hair.lower_bound(1) == ideal_import_seconds(hair, 1) == 0.0


def test_an_outage_starting_on_a_whole_number_of_latencies_allows_for_float_sums() -> None:
    # Ten sums of 0.1 s land at 0.9999999999999999: an eleventh call fits before 1.0 s.
    tie = scenario(
        limit=11,
        window=1.0,
        workers=1,
        latency=0.1,
        faults=Faults(outage_start=1, outage_seconds=1),
    )
    assert ideal_import_seconds(tie, 11) == pytest.approx(1.1)
    # The bound is the latency's, not pushed past the outage.
    assert tie.lower_bound(11) == pytest.approx(1.1)


def test_an_outage_after_the_import_can_finish_does_not_move_the_lower_bound() -> None:
    late = scenario(latency=0.1, faults=Faults(outage_start=7200, outage_seconds=600))
    assert late.lower_bound(DEFAULT_CALLS_NEEDED) == scenario(latency=0.1).lower_bound(
        DEFAULT_CALLS_NEEDED
    )


def test_an_outage_longer_than_a_window_restarts_the_quotas_after_it() -> None:
    # 10 an hour: one quota before the outage (60 s to 10,060 s); 25 calls after it
    # need three quotas, two windows apart.
    busy = scenario(
        limit=10, workers=4, latency=0.1, faults=Faults(outage_start=60, outage_seconds=10_000)
    )
    assert busy.lower_bound(35) == 10_060.0 + 2 * 3600.0
    # The last five calls take two rounds of the four workers.
    assert ideal_import_seconds(busy, 35) == pytest.approx(10_060.0 + 2 * 3600.0 + 0.2)


def test_lower_bound_of_a_share_leaving_one_request_is_that_of_a_quota_of_one() -> None:
    # 1 - 0.9 is 0.09999999999999998 in floats: 10 * that must still be one whole request.
    shared = scenario(limit=10, other_consumers=0.9)
    alone = scenario(limit=1)
    assert shared.lower_bound(1) == alone.lower_bound(1)


@given(
    limit=st.integers(min_value=1, max_value=60),
    window=st.integers(min_value=1, max_value=7200),
    workers=st.integers(min_value=1, max_value=8),
    latency=st.sampled_from([0.0, 0.1, 0.5, 1.0, 30.0]),
    calls=st.integers(min_value=0, max_value=250),
)
def test_lower_bound_never_exceeds_what_an_ideal_client_needs(
    limit: int, window: int, workers: int, latency: float, calls: int
) -> None:
    """Alone on the token; the other consumers' share is pinned by the examples above."""
    alone = scenario(limit=limit, window=float(window), workers=workers, latency=latency)
    ideal = ideal_import_seconds(alone, calls)
    assert alone.lower_bound(calls) <= ideal + 1e-9 * max(1.0, ideal)


@given(
    down=st.builds(
        scenario,
        limit=st.integers(min_value=1, max_value=60),
        window=st.integers(min_value=1, max_value=7200).map(float),
        workers=st.integers(min_value=1, max_value=8),
        latency=st.sampled_from([0.0, 0.1, 0.5, 1.0, 30.0]),
        faults=st.builds(
            Faults,
            outage_start=st.integers(min_value=0, max_value=10_000),
            outage_seconds=st.integers(min_value=1, max_value=10_000),
        ),
    ),
    calls=st.integers(min_value=0, max_value=250),
)
def test_lower_bound_with_an_outage_never_exceeds_what_an_ideal_client_needs(
    down: Scenario, calls: int
) -> None:
    ideal = ideal_import_seconds(down, calls)
    assert down.lower_bound(calls) <= ideal + 1e-9 * max(1.0, ideal)


@given(
    shape=st.builds(
        scenario,
        limit=st.integers(min_value=1, max_value=5000),
        window=st.floats(min_value=0.001, max_value=1e6),
        workers=st.integers(min_value=1, max_value=64),
        latency=st.floats(min_value=0.0, max_value=100.0),
        other_consumers=st.floats(min_value=0.0, max_value=0.99),
    ),
    calls=st.integers(min_value=0, max_value=100_000),
    more=st.integers(min_value=0, max_value=100_000),
)
def test_lower_bound_is_never_negative_and_grows_with_the_calls(
    shape: Scenario, calls: int, more: int
) -> None:
    assert shape.lower_bound(calls) >= 0.0
    assert shape.lower_bound(calls) <= shape.lower_bound(calls + more)


# -- the scenario table -----------------------------------------------------------------


def test_scenario_named_finds_each_scenario() -> None:
    assert [scenario_named(s.name) for s in SCENARIOS] == list(SCENARIOS)


def test_scenario_named_refuses_an_unknown_name_listing_the_known_ones() -> None:
    known = ", ".join(s.name for s in SCENARIOS)
    with pytest.raises(ValueError, match="unknown scenario") as raised:
        scenario_named("no-such-scenario")
    assert str(raised.value) == f"unknown scenario 'no-such-scenario'; choose from: {known}"


def test_scenario_names_are_unique() -> None:
    names = [s.name for s in SCENARIOS]
    assert len(set(names)) == len(names)


def test_the_documented_scenarios_are_the_table_in_order() -> None:
    assert [s.name for s in SCENARIOS] == [
        "no-hint",
        "retry-after",
        "token-headers",
        "faults-5pct",
        "workers-8",
        "workers-32",
        "workers-128",
        "multi-hour",
        "other-consumer",
        "outage",
        "configured-limit",
    ]


def test_the_new_scenarios_have_their_workers_outage_and_told_limit() -> None:
    shapes = {
        s.name: (s.workers, s.faults, s.configured_limit, s.hint)
        for s in SCENARIOS
        if s.name in {"workers-128", "outage", "configured-limit"}
    }
    assert shapes == {
        "workers-128": (128, Faults(), False, "none"),
        "outage": (32, Faults(outage_start=1.0, outage_seconds=600.0), False, "none"),
        "configured-limit": (4, Faults(), True, "none"),
    }


def test_only_the_configured_limit_scenario_tells_the_client_the_limit() -> None:
    assert [s.name for s in SCENARIOS if s.configured_limit] == ["configured-limit"]


@pytest.mark.parametrize("named", SCENARIOS, ids=lambda s: s.name)
def test_every_scenario_builds_a_mock_with_its_settings(named: Scenario) -> None:
    settings = {
        key: value
        for key, value in attrs.asdict(named, recurse=False).items()
        if key not in NOT_FOR_THE_MOCK
    }
    mock = MockBitbucket(seed=0, **settings)
    assert (
        mock.limit,
        mock.window,
        mock.hint,
        mock.token_headers,
        mock.other_consumers,
        mock.faults,
        mock.dataset.size,
        mock.latency,
    ) == (
        named.limit,
        named.window,
        named.hint,
        named.token_headers,
        named.other_consumers,
        named.faults,
        named.size,
        named.latency,
    )


# -- scaled ----------------------------------------------------------------------------


def test_scaled_multiplies_every_time_of_the_scenario_and_nothing_else() -> None:
    faults = Faults(server_error_rate=0.1, slow_seconds=10, outage_start=300, outage_seconds=600)
    named = scenario(window=3600.0, latency=0.5, faults=faults, limit=400, workers=8)
    assert named.scaled(0.25) == attrs.evolve(
        named,
        window=900.0,
        latency=0.125,
        faults=Faults(
            server_error_rate=0.1, slow_seconds=2.5, outage_start=75.0, outage_seconds=150.0
        ),
    )


def test_scaled_by_one_is_the_scenario_itself() -> None:
    named = scenario_named("outage")
    assert named.scaled(1.0) is named


def test_scaling_the_outage_scenario_scales_its_lower_bound() -> None:
    named = scenario_named("outage")
    assert named.scaled(0.01).lower_bound(DEFAULT_CALLS_NEEDED) == pytest.approx(
        named.lower_bound(DEFAULT_CALLS_NEEDED) * 0.01
    )


# -- quick -----------------------------------------------------------------------------


@pytest.mark.parametrize("named", SCENARIOS, ids=lambda s: s.name)
def test_quick_keeps_the_scenario_with_the_quick_dataset_and_a_twentieth_of_the_quota(
    named: Scenario,
) -> None:
    quick = named.quick()
    assert (quick.size, quick.limit) == (QUICK_SIZE, named.limit // 20)
    assert attrs.evolve(quick, size=named.size, limit=named.limit) == named


@pytest.mark.parametrize("named", SCENARIOS, ids=lambda s: s.name)
def test_quick_keeps_rate_limiting_biting(named: Scenario) -> None:
    quick = named.quick()
    calls = Dataset.generate(0, quick.size).requests_needed(PAGELEN)
    quota = quick.limit * (1 - quick.other_consumers)
    assert calls > quota
    assert quick.lower_bound(calls) >= quick.window
