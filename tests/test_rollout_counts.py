"""What each flag variant did: VariantCounts, and the VariantTally hook on real clients."""

from __future__ import annotations

import threading
from collections.abc import Callable

import httpx
import pytest

import bb_backoff as bb
from bb_backoff._rollout import VariantCounts, VariantTally, total
from bb_backoff.instrumentation import RequestFinished
from bb_backoff.testing import VirtualClock


def scripted(*responses: httpx.Response) -> Callable[[httpx.Request], httpx.Response]:
    """Answers in order, then 200s."""
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        return queue.pop(0) if queue else httpx.Response(200, json={})

    return handler


def client(
    answers: Callable[[httpx.Request], httpx.Response],
    clock: VirtualClock,
    tally: VariantTally,
    *,
    flag: bb.FlagSource | bool,
    actor: str = "Project:1",
) -> bb.BitbucketClient:
    return bb.BitbucketClient(
        auth=bb.BearerToken("tally-SECRET"),
        actor=actor,
        flag=flag,
        transport=httpx.MockTransport(answers),
        clock=clock.monotonic,
        now=clock.time,
        sleep=clock.sleep,
        policy=bb.ExponentialBackoff(seed=1),
        gate=bb.AccountGate(store=bb.MemoryStore(), seed=1),
        hooks=[tally],
    )


def run_requests(api: bb.BitbucketClient, count: int) -> list[str]:
    """``count`` GETs of /user; the names of the errors they raised."""
    raised = []
    for _ in range(count):
        try:
            api.get("/user")
        except bb.BitbucketError as error:
            raised.append(type(error).__name__)
    return raised


def test_tally_counts_the_legacy_variants_requests_errors_429s_and_give_ups() -> None:
    """Flag off, FixedRetry (3 attempts, 1 s apart).

    A 429 retried then a success; a 404 (an error, not a give-up); three 429s
    (two retries, then the request ends rate limited: a give-up).
    """
    clock, tally = VirtualClock(), VariantTally()
    answers = scripted(
        httpx.Response(429),
        httpx.Response(200, json={}),
        httpx.Response(404),
        *[httpx.Response(429)] * 3,
    )
    with client(answers, clock, tally, flag=False) as api:
        assert run_requests(api, 3) == ["NotFound", "RateLimited"]
    assert tally.counts() == {
        "off": VariantCounts(
            requests=3,
            errors=2,
            give_ups=1,
            rate_limited=1 + 2 + 1,
            retries=3,
            wait_seconds=3.0,
            duration_seconds=3.0,
        )
    }
    assert tally.variants == frozenset({"off"})


def test_tally_counts_the_flag_on_variant_from_the_clients_own_events() -> None:
    clock, tally = VirtualClock(), VariantTally()
    answers = scripted(httpx.Response(429), httpx.Response(503), httpx.Response(200, json={}))
    with client(answers, clock, tally, flag=True) as api:
        assert run_requests(api, 2) == []
    counts = tally.counts()["on"]
    assert (counts.requests, counts.errors, counts.give_ups, counts.rate_limited) == (2, 0, 0, 1)
    assert counts.retries == 2
    assert counts.wait_seconds == pytest.approx(sum(clock.sleeps))
    assert counts.error_rate == 0.0


def test_one_tally_on_many_clients_splits_them_by_the_variant_each_used() -> None:
    """Flipper's actor gate: Project:1 is on, Project:2 is off; one tally hears both."""
    clock, tally = VirtualClock(), VariantTally()
    flag = bb.FlipperFlag(actors=["Project:1"])
    for actor, requests in (("Project:1", 2), ("Project:2", 5)):
        with client(scripted(), clock, tally, flag=flag, actor=actor) as api:
            run_requests(api, requests)
    assert {variant: c.requests for variant, c in tally.counts().items()} == {"on": 2, "off": 5}


def test_tally_is_thread_safe() -> None:
    tally = VariantTally()
    event = RequestFinished(
        variant="on",
        endpoint="/user",
        method="GET",
        status=500,
        attempts=1,
        waited=0.5,
        elapsed=1.0,
        outcome="retries_exhausted",
    )

    def hammer() -> None:
        for _ in range(2_000):
            tally.on_request(event)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    counts = tally.counts()["on"]
    assert (counts.requests, counts.errors) == (8_000, 8_000)
    assert counts.wait_seconds == pytest.approx(4_000.0)


def test_tally_repr_shows_the_counts() -> None:
    assert repr(VariantTally()) == "VariantTally({})"


def test_counts_add_up_field_by_field() -> None:
    a = VariantCounts(
        requests=10, errors=2, give_ups=1, rate_limited=3, retries=4, wait_seconds=1.5
    )
    b = VariantCounts(requests=5, errors=1, rate_limited=1, duration_seconds=2.0)
    assert a + b == VariantCounts(
        requests=15,
        errors=3,
        give_ups=1,
        rate_limited=4,
        retries=4,
        wait_seconds=1.5,
        duration_seconds=2.0,
    )


def test_rates_and_means_are_none_without_requests() -> None:
    empty = VariantCounts()
    assert (empty.error_rate, empty.mean_wait, empty.mean_duration) == (None, None, None)
    counts = VariantCounts(requests=4, errors=1, wait_seconds=2.0, duration_seconds=6.0)
    assert (counts.error_rate, counts.mean_wait, counts.mean_duration) == (0.25, 0.5, 1.5)


def test_total_adds_several_tallies_variant_by_variant() -> None:
    first = {"on": VariantCounts(requests=3, errors=1)}
    second = {"on": VariantCounts(requests=2), "off": VariantCounts(requests=7, errors=2)}
    assert total([first, second]) == {
        "on": VariantCounts(requests=5, errors=1),
        "off": VariantCounts(requests=7, errors=2),
    }
    assert total([]) == {}
