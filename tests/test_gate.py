"""The account gate (bb_backoff._gate) in the clients: sharing, limits, probing, the breaker.

Imports run against :class:`MockBitbucket` on virtual time (the sync client in
:class:`VirtualThreads`, the async one on :func:`run_virtual`); a few tests
script the server by hand with :class:`httpx.MockTransport`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import email.utils
import itertools
import logging
import math
import random
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, cast

import anyio
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

import bb_backoff as bb
from bb_backoff import _window as bb_window
from bb_backoff._gate import (
    _MAX_MARGIN,
    _SWEEP_EVERY,
    GateHandle,
    account_key,
    memory_store_for,
    rate_limit_headers,
)
from bb_backoff._window import MODEL
from bb_backoff.testing import (
    DatasetSize,
    MockBitbucket,
    VirtualClock,
    VirtualThreads,
    run_virtual,
)
from importers import Items, expected_items, import_async, import_sync

BASE = "https://api.bitbucket.org/2.0"
SMALL = DatasetSize(
    repositories=1,
    pull_requests=20,
    comments_per_pull_request=2,
    issues=10,
    comments_per_issue=2,
    members=3,
)


def mock_on(
    clock: VirtualClock, sleep: Callable[[float], object] | None = None, **options: Any
) -> MockBitbucket:
    timing: dict[str, Any] = {"clock": clock.monotonic, "now": clock.time}
    if sleep is not None:
        timing["sleep"] = sleep
    return MockBitbucket(seed=3, size=SMALL, latency=0.1, **timing, **options)


def timing(clock: VirtualClock) -> dict[str, Any]:
    """A client's clock, now and sleep on ``clock``."""
    return {"clock": clock.monotonic, "now": clock.time, "sleep": clock.sleep}


def virtual_client(
    clock: VirtualClock,
    transport: httpx.AsyncBaseTransport,
    token: str,
    seed: int,
    gate: bb.AccountGate,
) -> bb.AsyncBitbucketClient:
    """An async client on ``clock``, its policy and gate seeded with ``seed``."""
    return bb.AsyncBitbucketClient(
        auth=bb.BearerToken(token),
        transport=transport,
        clock=clock.monotonic,
        now=clock.time,
        policy=bb.ExponentialBackoff(seed=seed),
        gate=gate,
    )


def run_async_import(
    mock: MockBitbucket, clock: VirtualClock, workers: int, **options: Any
) -> Items:
    async def main() -> Items:
        async with bb.AsyncBitbucketClient(
            auth=mock.bearer(),
            transport=mock.async_transport(),
            clock=clock.monotonic,
            now=clock.time,
            policy=bb.ExponentialBackoff(seed=1),
            **options,
        ) as client:
            return await import_async(client, workers=workers)

    return run_virtual(main(), clock)


def run_sync_import(workers: int, limit: int, **options: Any) -> tuple[Items, MockBitbucket]:
    clock = VirtualClock()
    threads = VirtualThreads(clock)
    mock = mock_on(clock, sleep=threads.sleep, limit=limit)
    with bb.BitbucketClient(
        auth=mock.bearer(),
        transport=mock.transport(),
        clock=clock.monotonic,
        now=clock.time,
        sleep=threads.sleep,
        policy=bb.ExponentialBackoff(seed=1),
        **options,
    ) as client:
        return import_sync(client, threads, workers=workers), mock


# -- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"window": 0}, "window"),
        ({"window": -1.0}, "window"),
        ({"window": float("inf")}, "window"),
        ({"window": "1h"}, "window"),
        ({"limit": 0}, "limit"),
        ({"limit": True}, "limit"),
        ({"limit": 2.5}, "limit"),
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"outage_budget": -1}, "outage_budget"),
        ({"probe_initial": 0}, "probe_initial"),
        ({"probe_initial": 10.0, "probe_max": 5.0}, "probe_max"),
        ({"breaker_max": 0.5}, "breaker_max"),
        ({"probe_lease": float("nan")}, "probe_lease"),
        ({"seed": True}, "seed"),
        ({"store": object()}, "store"),
        # Past Python's 4,300-digit limit: repr() of these raised a ValueError naming nothing.
        ({"window": 10**5000}, "window"),
        ({"probe_lease": 10**5000}, "probe_lease"),
        ({"limit": 10**5000}, "limit"),
        ({"failure_threshold": 2**63}, "failure_threshold"),
        # One wait at the gate past a day (a sleep that overflows past about
        # 2.9e9 s, or a window in milliseconds): refused like the clients' timeout.
        ({"window": 1e10}, "window"),
        ({"window": timedelta(days=2)}, "window"),
        ({"probe_initial": 1e10, "probe_max": 1e10, "breaker_max": 1e10}, "probe_initial"),
        ({"probe_max": 86_401}, "probe_max"),
        ({"breaker_max": 1e9}, "breaker_max"),
        ({"probe_lease": 1e10}, "probe_lease"),
        # Below 10 ms (MIN_WAIT): probes without pause. 1e-320 for all three
        # sent 20,000 requests in 0.03 virtual s with the default policy.
        ({"probe_initial": 1e-320, "probe_max": 1e-320, "breaker_max": 1e-320}, "probe_initial"),
        ({"probe_initial": timedelta(microseconds=1)}, "probe_initial"),
        ({"probe_initial": 0.009}, "probe_initial"),
        ({"probe_max": 0.001}, "probe_max"),  # (below probe_initial, at least 10 ms)
        ({"breaker_max": 0.001}, "breaker_max"),
    ],
)
def test_an_invalid_gate_setting_is_refused_naming_it(
    arguments: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        bb.AccountGate(**arguments)


def test_a_huge_gate_seed_is_taken_and_its_repr_does_not_print_its_digits() -> None:
    assert "seed=a huge int" in repr(bb.AccountGate(seed=10**5000))


class _Stop(BaseException):
    """Ends a request that would go on for ever (not an Exception: the flow judges those)."""


class _RefusingAccount:
    """An account rate limited for ever (every answer a 429) on virtual time.

    Counts the requests that reach it, and ends the request (:class:`_Stop`)
    past ``seconds`` or after ``sends``.
    """

    def __init__(self, *, seconds: float = math.inf, sends: float = math.inf) -> None:
        self.clock = clock = VirtualClock()
        self.mock = MockBitbucket(limit=0, clock=clock.monotonic, now=clock.time, sleep=clock.sleep)
        self._inner = self.mock.transport()
        self._seconds, self._sends = seconds, sends
        self.sent = 0
        self.transport = httpx.MockTransport(self._counting)

    def _counting(self, request: httpx.Request) -> httpx.Response:
        if self.clock.monotonic() > self._seconds or self.sent >= self._sends:
            raise _Stop
        self.sent += 1
        return self._inner.handle_request(request)


def _requests_in_a_virtual_second(**options: Any) -> int:
    """How many requests one GET sends in its first virtual second against an account that
    is rate limited for ever, through the client built with ``options``."""
    account = _RefusingAccount(seconds=1.0)
    clock = account.clock
    client = bb.BitbucketClient(
        auth=account.mock.bearer(),
        transport=account.transport,
        clock=clock.monotonic,
        now=clock.time,
        sleep=clock.sleep,
        **options,
    )
    with contextlib.suppress(_Stop, bb.BitbucketError):
        client.get("/user")
    return account.sent


@pytest.mark.parametrize(
    "options",
    [
        {"gate": bb.AccountGate(probe_initial=0.01, probe_max=0.01, breaker_max=0.01)},
        {"gate": False, "policy": bb.ExponentialBackoff(initial=0.01, factor=1, jitter="none")},
        {
            "flag": False,
            "legacy_policy": bb.ExponentialBackoff(initial=0.01, factor=1, jitter="none"),
        },
    ],
    ids=["gate", "no-gate", "legacy"],
)
def test_at_the_shortest_waits_taken_a_failing_request_sends_100_a_second_at_most(
    options: dict[str, Any],
) -> None:
    """10 ms (MIN_WAIT) paces a loop; a microsecond sent 20,000 requests in 0.01 virtual s."""
    assert 1 < _requests_in_a_virtual_second(**options) <= 101


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("reading", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("after", [0, 1, 3], ids=["at-once", "after-1", "after-3"])
def test_a_clock_that_reads_nan_or_infinity_stops_the_request_with_a_clear_error(
    kind: str, reading: float, after: int
) -> None:
    """The gate cannot pace on it: NaN waits were never slept.

    A rate-limited request was sent again and again with no sleep (5,000
    requests, 0 sleeps, unbounded: no wait was charged to a budget).  Now
    the first reservation on such a reading raises, naming the clock.
    """
    account = _RefusingAccount(sends=50)
    clock = account.clock

    def broken_clock() -> float:
        return reading if account.sent >= after else clock.monotonic()

    options: dict[str, Any] = {
        "auth": account.mock.bearer(),
        "transport": account.transport,
        "clock": broken_clock,
        "now": clock.time,
        "sleep": clock.sleep,
        "gate": bb.AccountGate(store=bb.MemoryStore()),
    }

    def get() -> None:
        if kind == "sync":
            bb.BitbucketClient(**options).get("/user")
            return

        async def main() -> None:
            async with bb.AsyncBitbucketClient(**options) as client:
                await client.get("/user")

        run_virtual(main(), clock)

    with pytest.raises(bb.BitbucketError, match=r"^the client's clock read (nan|inf|-inf) \("):
        get()
    assert account.sent == after


def test_every_wait_setting_takes_a_day() -> None:
    day = timedelta(days=1)
    gate = bb.AccountGate(
        window=day, probe_initial=day, probe_max=day, breaker_max=day, probe_lease=day
    )
    assert {gate.window, gate.probe_initial, gate.probe_max, gate.breaker_max} == {86_400.0}


def test_every_time_setting_accepts_a_timedelta() -> None:
    gate = bb.AccountGate(window=timedelta(minutes=20), outage_budget=timedelta(hours=1))
    assert (gate.window, gate.outage_budget) == (1200.0, 3600.0)


def test_a_client_refuses_a_gate_that_is_not_one() -> None:
    with pytest.raises(ValueError, match="gate"):
        bb.BitbucketClient(gate="yes")  # type: ignore[arg-type]


# -- the account's key --------------------------------------------------------------------


@given(token=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=8))
def test_an_account_key_is_a_fingerprint_that_never_holds_the_secret(token: str) -> None:
    key = account_key(bb.BearerToken(token), BASE)
    assert len(key) == 24
    assert all(c in "0123456789abcdef" for c in key)
    assert token not in key
    assert key == account_key(bb.BearerToken(token), BASE + "/")
    assert key != account_key(bb.BearerToken(token + "x"), BASE)


def test_an_account_key_follows_the_quota_s_owner() -> None:
    """A user's API tokens share the user's quota; a consumer's tokens share the consumer's."""
    one = bb.BasicAuth("Ada@example.com", "token-one")
    two = bb.BasicAuth("ada@example.com", "token-two")
    assert account_key(one, BASE) == account_key(two, BASE)
    first = bb.OAuth2(client_id="consumer", client_secret="s", refresh_token="r1")
    second = bb.OAuth2(client_id="consumer", client_secret="s", refresh_token="r2")
    assert account_key(first, BASE) == account_key(second, BASE)
    assert account_key(None, BASE) != account_key(bb.BearerToken("t"), BASE)
    assert account_key(bb.BearerToken("t"), BASE) != account_key(
        bb.BearerToken("t"), "https://bitbucket.example.com/2.0"
    )


# -- who shares a gate ---------------------------------------------------------------------


def test_two_clients_built_separately_with_one_token_share_the_gate() -> None:
    """The second client never meets the limit the first one learned.

    It only sends the one check of that limit (learned in the model's first
    second, so a floor until a window has passed), which the server refuses.
    """
    clock = VirtualClock()
    mock = mock_on(clock, limit=5)
    options = timing(clock)
    first = bb.BitbucketClient(auth=mock.bearer(), transport=mock.transport(), **options)
    second = bb.BitbucketClient(auth=mock.bearer(), transport=mock.transport(), **options)
    for _ in range(6):
        first.user()
    assert mock.counters.rate_limited == 1
    for _ in range(5):
        second.user()
    assert mock.counters.rate_limited == 2  # the second waited for the window instead
    assert clock.monotonic() >= 3600
    model = memory_store_for(clock.monotonic).model(account_key(mock.bearer(), BASE))
    assert model is not None
    assert (model.limit, model.checks_held) == (5, 1)  # checked: it holds


def test_clients_on_different_clocks_never_share_a_gate() -> None:
    one, two = VirtualClock(), VirtualClock()
    assert memory_store_for(one.monotonic) is not memory_store_for(two.monotonic)
    assert memory_store_for(one.monotonic) is memory_store_for(one.monotonic)


def test_gate_false_opts_out_and_the_flag_off_never_asks_the_gate() -> None:
    clock = VirtualClock()
    mock = mock_on(clock)
    key = account_key(mock.bearer(), BASE)
    store = memory_store_for(clock.monotonic)
    options = timing(clock)
    with bb.BitbucketClient(
        auth=mock.bearer(), transport=mock.transport(), gate=False, **options
    ) as client:
        client.user()
    with bb.BitbucketClient(
        auth=mock.bearer(), transport=mock.transport(), flag=False, **options
    ) as client:
        client.user()
    assert store.model(key) is None
    with bb.BitbucketClient(auth=mock.bearer(), transport=mock.transport(), **options) as client:
        client.user()
    model = store.model(key)
    assert model is not None
    assert len(model.log) == 1


def test_a_gate_of_ones_own_is_shared_only_by_the_clients_given_it() -> None:
    clock = VirtualClock()
    mock = mock_on(clock, limit=3)
    gate = bb.AccountGate(store=bb.MemoryStore())
    options = timing(clock)
    with bb.BitbucketClient(
        auth=mock.bearer(), transport=mock.transport(), gate=gate, **options
    ) as client:
        for _ in range(4):
            client.user()
    store = gate.store
    assert isinstance(store, bb.MemoryStore)
    model = store.model(account_key(mock.bearer(), BASE))
    assert model is not None
    assert model.limit == 3
    assert memory_store_for(clock.monotonic).model(account_key(mock.bearer(), BASE)) is None


# -- the window: few 429s, nothing lost -----------------------------------------------------


@pytest.mark.parametrize("workers", [1, 8, 32])
def test_an_async_import_meets_the_unknown_limit_once_per_request_in_flight(workers: int) -> None:
    clock = VirtualClock()
    mock = mock_on(clock, limit=20)
    items = run_async_import(mock, clock, workers)
    assert items == expected_items(mock)
    needed = mock.dataset.requests_needed(50)
    assert needed > 3 * 20  # the import needs several windows
    # Each request in flight when the limit is first met gets one 429; after
    # that the model knows the window and no send goes into a full one but
    # the one check of a limit learned in the model's first window.
    assert mock.counters.rate_limited <= workers + 1
    assert clock.monotonic() < (needed // 20 + 1) * 3600


async def gets_by_workers(
    client: bb.AsyncBitbucketClient, workers: int, items: int
) -> list[object]:
    """``items`` GETs made by ``workers`` tasks sharing ``client``: every answer."""
    queue = list(range(items))

    async def worker() -> list[object]:
        done = []
        while queue:
            done.append(await client.get(f"/repositories/w/r{queue.pop()}"))
        return done

    return [
        item for part in await asyncio.gather(*(worker() for _ in range(workers))) for item in part
    ]


class JitteredServer(httpx.AsyncBaseTransport):
    """A rolling window counted when a request arrives, with random one-way delays.

    Not our mock (which answers in a fixed time): sends made later overtake
    earlier ones on the way, as on the Internet, and answers come back in
    any order.
    """

    def __init__(self, clock: VirtualClock, limit: int, seed: int) -> None:
        self.clock, self.limit = clock, limit
        self.random = random.Random(seed)
        self.admitted: collections.deque[float] = collections.deque()
        self.refused = 0

    async def _on_the_way(self) -> None:
        await asyncio.sleep(self.random.uniform(0.02, 0.5))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await self._on_the_way()
        now = self.clock.monotonic()
        while self.admitted and self.admitted[0] <= now - 3600.0:
            self.admitted.popleft()
        accepted = len(self.admitted) < self.limit
        if accepted:
            self.admitted.append(now)
        else:
            self.refused += 1
        await self._on_the_way()
        if not accepted:
            return httpx.Response(429, text="Rate limit for this resource has been exceeded")
        return httpx.Response(200, json={"path": request.url.path})


@pytest.mark.parametrize("seed", range(12))
def test_with_round_trips_that_overtake_each_other_the_limit_is_met_once_per_request_in_flight(
    seed: int,
) -> None:
    """Sends racing to the server make the count at the first 429 uncertain.

    Those made after the refused one count as let through until they are
    refused themselves; a check that overtakes the sends of a full window
    proves nothing.  Counting only the sends made before the refused one
    learned less than 20 on some of these runs: the first check got
    through, the limit was forgotten, and every worker met a second 429.
    """
    clock = VirtualClock()
    server = JitteredServer(clock, limit=20, seed=seed)
    workers, items = 8, 70

    async def main() -> list[object]:
        gate = bb.AccountGate(store=bb.MemoryStore(), seed=seed)
        async with virtual_client(clock, server, "jittered", seed, gate) as client:
            return await gets_by_workers(client, workers, items)

    assert len(run_virtual(main(), clock)) == items
    assert server.refused <= workers + 1  # and the one check of the limit learned
    assert clock.monotonic() < (items // 20 + 0.05) * 3600


@pytest.mark.parametrize("seed", range(8))
def test_a_limit_that_drops_and_rises_again_is_followed_both_ways(seed: int) -> None:
    """Bitbucket's limits are "subject to change (possibly dynamically)".

    20 an hour, 10 from half an hour in, 20 again from the third hour: 20
    sends go in the first window, 10 in each of the next two, and the last
    20 as the third hour begins.  Before, the gate kept the 10 it had
    learned once it had probed its way back in (as one more than it counted,
    or as a share checked two windows on): the last 10 waited a window more,
    on some seeds (4 h on an independent mock's 1,000 -> 500 -> 1,000, 1.35
    x the bound).
    """
    clock = VirtualClock()
    server = JitteredServer(clock, limit=20, seed=seed)
    workers, items = 8, 60

    async def main() -> list[object]:
        async def change_the_limit() -> None:
            await asyncio.sleep(1800.0)
            server.limit = 10
            await asyncio.sleep(3 * 3600.0 - 1800.0)
            server.limit = 20

        changes = asyncio.create_task(change_the_limit())
        gate = bb.AccountGate(store=bb.MemoryStore(), seed=seed)
        async with virtual_client(clock, server, "dynamic", seed, gate) as client:
            got = await gets_by_workers(client, workers, items)
        await changes
        return got

    assert len(run_virtual(main(), clock)) == items
    # The rise is found by a probe or a check within minutes, not a window.
    assert clock.monotonic() < 3 * 3600.0 + 900.0


@pytest.mark.parametrize("seed", range(4))
def test_a_check_let_through_wakes_the_requests_booked_at_the_windows_turn(seed: int) -> None:
    """An importer restarted a minute after a run that spent half the window.

    It learns a floor of 10 (the server still counts the 10 earlier sends);
    a window on, its check of the floor gets through, while every other
    worker sleeps on a reservation at the next window's turn and nobody
    new asks.  Before, the verdict waited for a request to ask, and the
    last items waited an hour for it.
    """
    clock = VirtualClock()
    server = JitteredServer(clock, limit=20, seed=seed)
    server.admitted.extend([0.0] * 10)  # the previous run's sends
    workers, items = 8, 26

    async def main() -> list[object]:
        await asyncio.sleep(60.0)
        gate = bb.AccountGate(store=bb.MemoryStore(), seed=seed)
        async with virtual_client(clock, server, "restarted", seed, gate) as client:
            return await gets_by_workers(client, workers, items)

    assert len(run_virtual(main(), clock)) == items
    # 10 at 60 s, 10 at the window's turn, the check gets through: the rest
    # follow within a piece of the sleepers' wait, not a window later.
    assert clock.monotonic() < 3660.0 + 300.0


@pytest.mark.parametrize("workers", [1, 8])
def test_a_sync_import_in_threads_meets_the_unknown_limit_once_per_request_in_flight(
    workers: int,
) -> None:
    items, mock = run_sync_import(workers, limit=30)
    assert items == expected_items(mock)
    assert mock.counters.rate_limited <= workers + 1  # and the check of the limit learned


@pytest.mark.parametrize("longer", [1.005, 1.03])
def test_a_server_window_a_little_longer_than_the_gates_costs_a_few_429s_not_its_limit(
    longer: float,
) -> None:
    """The server counts a send for longer than the gate's window (a 3,620 s "hour").

    Without the stretch, every window's edge met a 429 that the model read
    as a lower limit (1,000 -> 797 -> 508 on an independent mock: 1.5 x the
    bound at 128 workers).  The sends just before the window explain the
    429, so the window stretches and the limit stands.
    """
    clock = VirtualClock()
    mock = mock_on(clock, limit=20, window=3600.0 * longer)
    workers = 16
    items = run_async_import(mock, clock, workers)
    assert items == expected_items(mock)
    needed = mock.dataset.requests_needed(50)
    assert needed > 3 * 20  # the import needs several windows
    windows = -(-needed // 20)  # ceil: the last one need not be full
    assert clock.monotonic() < (windows - 1) * 3600.0 * longer * 1.1 + 60.0
    # The discovery's requests in flight, then at most a few stretches'.
    assert mock.counters.rate_limited <= 4 * workers


def test_a_configured_limit_means_no_429_at_all() -> None:
    clock = VirtualClock()
    mock = mock_on(clock, limit=30)
    items = run_async_import(mock, clock, 16, gate=bb.AccountGate(limit=30))
    assert items == expected_items(mock)
    assert mock.counters.rate_limited == 0


def test_x_ratelimit_limit_means_no_429_at_all() -> None:
    clock = VirtualClock()
    mock = mock_on(clock, limit=30, token_headers=True, hint="reset")
    items = run_async_import(mock, clock, 4)
    assert items == expected_items(mock)
    assert mock.counters.rate_limited == 0


def test_another_tool_spending_the_quota_costs_time_not_items() -> None:
    clock = VirtualClock()
    mock = mock_on(clock, limit=30, other_consumers=1 / 3)
    items = run_async_import(mock, clock, 8)
    assert items == expected_items(mock)


def test_the_diff_redirect_passes_the_gate_too() -> None:
    """Each hop spends the quota: both the API call and its redirect are in the log."""
    clock = VirtualClock()
    mock = mock_on(clock)
    options = timing(clock)
    with bb.BitbucketClient(auth=mock.bearer(), transport=mock.transport(), **options) as client:
        repository = mock.dataset.repositories[0]
        workspace, slug = repository.full_name.split("/")
        diff = client.pull_request_diff(workspace, slug, 1)
    assert diff
    model = memory_store_for(clock.monotonic).model(account_key(mock.bearer(), BASE))
    assert model is not None
    assert len(model.log) == 2
    assert mock.counters.calls == 2


# -- hints and budgets ---------------------------------------------------------------------


def test_a_retry_after_holds_the_whole_account_and_is_never_undercut() -> None:
    clock = VirtualClock()
    calls: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(clock.monotonic())
        if len(calls) == 1:
            return httpx.Response(429, headers={"Retry-After": "120"}, text="slow down")
        return httpx.Response(200, json={"ok": True})

    options = timing(clock)
    with bb.BitbucketClient(
        auth=bb.BearerToken("hold"), transport=httpx.MockTransport(handler), **options
    ) as one:
        assert one.get("/user") == {"ok": True}
    assert calls[1] >= 120.0
    assert clock.sleeps[0] == 120.0


@pytest.mark.parametrize("retry_after", ["0", "-5"])
def test_a_retry_after_of_zero_on_the_first_429_is_no_hint_the_model_learns_and_paces(
    retry_after: str,
) -> None:
    """``Retry-After: 0`` does not say when the window frees; probing at once on it
    drew three times the 429s of no hint at all (an independent check's figure)."""
    clock = VirtualClock()
    sent: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        now = clock.monotonic()
        if len([at for at in sent if at > now - 100.0]) >= 3:
            return httpx.Response(429, headers={"Retry-After": retry_after}, text="slow down")
        sent.append(now)
        return httpx.Response(200, json={"ok": True})

    store = bb.MemoryStore()
    with bb.BitbucketClient(
        auth=bb.BearerToken("zero-hint"),
        transport=httpx.MockTransport(handler),
        gate=bb.AccountGate(window=100.0, store=store),
        **timing(clock),
    ) as client:
        for _ in range(7):
            assert client.get("/user") == {"ok": True}
        model = store.model(account_key(bb.BearerToken("zero-hint"), bb.DEFAULT_BASE_URL))
    assert model is not None
    assert (model.mode, model.limit, model.hold_until) == (MODEL, 3, 0.0)


def test_waiting_at_the_gate_is_charged_to_the_rate_limit_budget() -> None:
    """A request that would wait past its budget gives up with the last 429's message."""
    clock = VirtualClock()

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, text="Rate limit for this resource has been exceeded")

    options = timing(clock)
    policy = bb.ExponentialBackoff(rate_limit_budget=600, seed=2)
    with (
        bb.BitbucketClient(
            auth=bb.BearerToken("budget"),
            transport=httpx.MockTransport(handler),
            policy=policy,
            **options,
        ) as client,
        pytest.raises(bb.RateLimited) as caught,
    ):
        client.get("/user")
    error = caught.value
    assert clock.slept <= 600
    assert error.waited <= 600
    assert error.status == 429
    assert error.error_message == "Rate limit for this resource has been exceeded"
    assert error.stop_reason == "budget"


# Found by an independent probe: a request refused at the gate kept its
# reservation, and the slots of requests that never sent held the others back.
def test_a_request_refused_at_the_gate_gives_its_slot_back() -> None:
    clock = VirtualClock()
    gate = bb.AccountGate(limit=2, store=bb.MemoryStore())
    policy = bb.ExponentialBackoff(rate_limit_budget=600, seed=2)
    with bb.BitbucketClient(
        auth=bb.BearerToken("refused"),
        transport=httpx.MockTransport(lambda _request: httpx.Response(200, json={})),
        policy=policy,
        gate=gate,
        **timing(clock),
    ) as client:
        client.get("/user")
        client.get("/user")  # the window is full for an hour
        for _ in range(3):
            with pytest.raises(bb.RateLimited) as caught:
                client.get("/user")
            assert caught.value.stop_reason == "budget"
        assert clock.slept == 0
        clock.advance(3601.0)
        client.get("/user")  # the two slots are free again: nobody holds them
    assert clock.slept < 1.0


def answering_ok(clock: VirtualClock, gate: bb.AccountGate) -> bb.AsyncBitbucketClient:
    """An async client on ``clock`` and ``gate`` whose server answers every request 200."""
    return bb.AsyncBitbucketClient(
        auth=bb.BearerToken("ok-SECRET-token"),
        transport=httpx.MockTransport(lambda _request: httpx.Response(200, json={})),
        clock=clock.monotonic,
        now=clock.time,
        gate=gate,
    )


def test_a_request_cancelled_while_it_waits_at_the_gate_gives_its_slot_back() -> None:
    clock = VirtualClock()
    gate = bb.AccountGate(limit=2, store=bb.MemoryStore())

    async def main() -> float:
        async with answering_ok(clock, gate) as client:
            await client.get("/user")
            await client.get("/user")  # the window is full for an hour
            for _ in range(5):
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(client.get("/user"), 10.0)
            await asyncio.sleep(3601.0 - clock.monotonic())
            started = clock.monotonic()
            await client.get("/user")
            return clock.monotonic() - started

    assert run_virtual(main(), clock) < 1.0


class LatentStore:
    """A store that answers after an await, as a network store (Redis) does.

    The real :class:`MemoryStore` does the work; each async call then
    yields to the loop once, as a reply on its way would.  (A real Redis
    answers too fast to land a cancellation in that gap on purpose.)
    """

    def __init__(self) -> None:
        self.inner = bb.MemoryStore()

    def reserve(self, key: str, **call: Any) -> bb_window.Grant:
        return self.inner.reserve(
            key,
            call["now"],
            call["params"],
            call["member"],
            call["margin"],
            call["cancel"],
        )

    def observe(self, key: str, **call: Any) -> bb_window.Knowledge:
        return self.inner.observe(key, **call)

    async def areserve(self, key: str, **call: Any) -> bb_window.Grant:
        grant = self.reserve(key, **call)  # made on the server...
        await asyncio.sleep(0)  # ...and the reply on its way
        return grant

    async def aobserve(self, key: str, **call: Any) -> bb_window.Knowledge:
        await asyncio.sleep(0)
        return self.observe(key, **call)

    def knowledge(self, key: str) -> bb_window.Knowledge | bb_window.WindowModel:
        return self.inner.knowledge(key)


@pytest.mark.parametrize("scope", ["asyncio.wait_for", "anyio.fail_after"])
def test_a_request_cancelled_while_a_network_store_answers_gives_its_slot_back(
    scope: str,
) -> None:
    """Cancelled while its reservation is on the way, or while it waits: the slot comes back.

    anyio's cancel scopes cancel every await of the task again, the void
    included: it runs in a task of its own.
    """
    clock = VirtualClock()
    store = LatentStore()

    async def main() -> None:
        async with answering_ok(clock, bb.AccountGate(limit=1, store=store)) as client:
            await client.get("/user")  # the window is full for an hour
            # 0: cancelled at its first await (under anyio, the reserve call's;
            # asyncio's wait_for never starts it); 10: while it waits its turn.
            for delay in (0.0, 10.0):
                if scope == "asyncio.wait_for":
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(client.get("/user"), delay)
                else:
                    with anyio.move_on_after(delay):
                        await client.get("/user")
            for _ in range(5):
                await asyncio.sleep(0)  # the voids' own tasks run

    run_virtual(main(), clock)
    (model,) = store.inner._models.values()
    assert len(model.log) == 1  # the one send made


@pytest.mark.parametrize("header", ["Retry-After", "X-RateLimit-Reset"])
def test_a_request_given_up_at_the_gate_reports_the_servers_last_hint_in_seconds_from_now(
    header: str,
) -> None:
    """An HTTP-date or epoch hint is read against ``now``, not against 1970."""
    clock = VirtualClock()
    calls = itertools.count()

    def handler(_request: httpx.Request) -> httpx.Response:
        if next(calls) == 0:
            return httpx.Response(200, json={})
        when = clock.time() + 50.0
        value = (
            email.utils.formatdate(when, usegmt=True) if header == "Retry-After" else str(int(when))
        )
        return httpx.Response(429, headers={header: value})

    with (
        bb.BitbucketClient(
            auth=bb.BearerToken("hinted"),
            transport=httpx.MockTransport(handler),
            policy=bb.ExponentialBackoff(rate_limit_budget=600, seed=2),
            gate=bb.AccountGate(store=bb.MemoryStore()),
            **timing(clock),
        ) as client,
    ):
        client.get("/user")
        # The 429 teaches a limit of one: the next slot is an hour away, past
        # the budget, so the request gives up at the gate after the hint.
        with pytest.raises(bb.RateLimited) as caught:
            client.get("/user")
    assert caught.value.stop_reason == "budget"
    assert caught.value.last_hint is not None
    assert 49.0 <= caught.value.last_hint <= 50.0


def test_a_429_under_the_gate_reports_the_gates_wait_as_the_retry_delay() -> None:
    clock = VirtualClock()
    events: list[bb.RetryEvent] = []
    answers = iter(
        [httpx.Response(200, json={}), httpx.Response(429, headers={"Retry-After": "30"})]
    )

    def handler(request: httpx.Request) -> httpx.Response:
        return next(answers, httpx.Response(200, json={"ok": True}))

    options = timing(clock)
    with bb.BitbucketClient(
        auth=bb.BearerToken("events"),
        transport=httpx.MockTransport(handler),
        on_retry=events.append,
        **options,
    ) as client:
        client.get("/user")
        client.get("/user")
    assert [(e.status, e.retry_after) for e in events] == [(429, 30.0)]
    assert events[0].delay == clock.sleeps[0] == 30.0


# -- the breaker ------------------------------------------------------------------------------


def outage_handler(
    clock: VirtualClock, start: float, seconds: float, calls: list[float]
) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        now = clock.monotonic()
        calls.append(now)
        if start <= now < start + seconds:
            return httpx.Response(503, text="<html>503 Service Unavailable</html>")
        return httpx.Response(200, json={"ok": True})

    return handler


def run_outage(
    workers: int, seconds: float, latency: float = 0.0, **gate: Any
) -> tuple[list[object], list[float]]:
    """``workers`` tasks each make 20 requests 10 s apart; the server is down from 60 s on.

    With ``latency``, each answer takes that long on the way back: the
    requests are in flight together, as against a real server.
    """
    clock = VirtualClock()
    calls: list[float] = []
    answer = outage_handler(clock, 60.0, seconds, calls)

    async def slow(request: httpx.Request) -> httpx.Response:
        response = answer(request)
        await asyncio.sleep(latency)
        return response

    transport = httpx.MockTransport(slow if latency else answer)

    async def main() -> list[object]:
        shared = bb.AccountGate(seed=4, **gate)
        async with virtual_client(clock, transport, "outage", 4, shared) as client:

            async def worker() -> list[object]:
                results = []
                for _ in range(20):
                    try:
                        results.append(await client.get("/user"))
                    except bb.BitbucketError as error:
                        results.append(error)
                    await asyncio.sleep(10.0)
                return results

            done = await asyncio.gather(*(worker() for _ in range(workers)))
            return [result for results in done for result in results]

    return run_virtual(main(), clock), calls


@pytest.mark.parametrize("latency", [0.0, 0.5])
def test_a_ten_minute_outage_loses_nothing_and_costs_few_calls(latency: float) -> None:
    results, calls = run_outage(32, 600.0, latency)
    assert all(result == {"ok": True} for result in results)
    during = [t for t in calls if 60.0 <= t < 660.0]
    # The requests in flight when it started, then one probe at a time.
    assert len(during) <= 64


@pytest.mark.parametrize("threshold", [3, 5])
def test_one_worker_waits_out_an_outage_its_own_errors_opened(threshold: int) -> None:
    """With one worker, the errors that open the breaker are one request's own.

    Its last attempt (the policy's fifth) is the error that opens the breaker
    (the fifth in a row, by default), or comes after it opened: it waits for
    the breaker with the account instead of giving up.  (Before: an
    independent mock's sequential importer lost that request.)
    """
    results, calls = run_outage(1, 600.0, failure_threshold=threshold)
    assert results == [{"ok": True}] * 20
    # Its own five attempts, then one probe at a time, spaced up to a minute.
    assert len([t for t in calls if 60.0 <= t < 660.0]) <= 32


def one_request(
    handler: Callable[[httpx.Request], httpx.Response],
    clock: VirtualClock,
    *,
    policy: bb.ExponentialBackoff | None = None,
    events: list[bb.RetryEvent] | None = None,
    **gate: Any,
) -> object:
    """One GET through a client with a gate of its own: the answer, or the error raised."""
    with bb.BitbucketClient(
        auth=bb.BearerToken("one-request"),
        transport=httpx.MockTransport(handler),
        gate=bb.AccountGate(store=bb.MemoryStore(), seed=1, **gate),
        policy=policy or bb.ExponentialBackoff(seed=1),
        on_retry=None if events is None else events.append,
        **timing(clock),
    ) as client:
        try:
            return client.get("/user")
        except bb.BitbucketError as error:
            return error


@pytest.mark.parametrize(
    ("retry_after", "policy", "kept"),
    [
        (None, {}, False),
        ("120", {}, True),
        ("20000", {}, False),  # beyond max_hint (2 h)
        ("120", {"respect_hints": False}, False),
        ("120", {"rate_limit_budget": 100.0}, False),
    ],
)
def test_the_wait_for_an_outage_its_own_errors_opened_keeps_a_hint_the_policy_would(
    retry_after: str | None, policy: dict[str, Any], kept: bool
) -> None:
    """Reported as a retry; an error's hint is never undercut when the policy would
    honour it (respect_hints, max_hint, the rate-limit budget), and the breaker's
    probes space the wait otherwise."""
    clock = VirtualClock()
    calls: list[float] = []
    headers = {} if retry_after is None else {"Retry-After": retry_after}

    def handler(_request: httpx.Request) -> httpx.Response:
        calls.append(clock.monotonic())
        if len(calls) < 5:
            return httpx.Response(503, text="down")
        if len(calls) == 5:  # the last attempt, the one that opens the breaker
            return httpx.Response(503, text="maintenance", headers=headers)
        return httpx.Response(200, json={"ok": True})

    events: list[bb.RetryEvent] = []
    backoff = bb.ExponentialBackoff(seed=1, **policy)
    assert one_request(handler, clock, policy=backoff, events=events) == {"ok": True}
    assert len(calls) == 6
    waited = calls[5] - calls[4]
    assert [event.status for event in events] == [503] * 5
    assert events[-1].delay == pytest.approx(waited)
    if kept:
        assert waited >= 120.0
        assert events[-1].retry_after == 120.0
    else:
        assert waited <= 1.0  # the breaker's first probe (probe_initial)
        assert events[-1].retry_after is None


def test_an_errors_hint_at_the_breaker_is_charged_to_the_rate_limit_budget() -> None:
    """As an error's hint is on a retry: two minutes of maintenance fit a minute of outage."""
    clock = VirtualClock()
    calls: list[float] = []

    def handler(_request: httpx.Request) -> httpx.Response:
        calls.append(clock.monotonic())
        if len(calls) < 5:
            return httpx.Response(503, text="down")
        if len(calls) == 5:
            return httpx.Response(503, text="maintenance", headers={"Retry-After": "120"})
        return httpx.Response(200, json={"ok": True})

    assert one_request(handler, clock, outage_budget=60.0) == {"ok": True}
    assert calls[5] - calls[4] >= 120.0


def test_a_refusal_at_the_gate_after_a_transport_error_has_no_stale_cause() -> None:
    """Only an outage of transport errors gives up with the last one as its cause."""
    clock = VirtualClock()
    gate = bb.AccountGate(store=bb.MemoryStore(), seed=1)
    budget = bb.ExponentialBackoff(seed=1, rate_limit_budget=100.0)
    auth = bb.BearerToken("stale-cause")
    held = httpx.MockTransport(lambda _r: httpx.Response(429, headers={"Retry-After": "3600"}))
    other = bb.BitbucketClient(auth=auth, transport=held, gate=gate, policy=budget, **timing(clock))

    def handler(request: httpx.Request) -> httpx.Response:
        # Meanwhile another worker's 429 holds the account for an hour.
        with pytest.raises(bb.RateLimited):
            other.get("/user")
        raise httpx.ConnectError("connection refused", request=request)

    with (
        bb.BitbucketClient(
            auth=auth,
            transport=httpx.MockTransport(handler),
            gate=gate,
            policy=budget,
            **timing(clock),
        ) as client,
        pytest.raises(bb.RateLimited) as raised,
    ):
        client.get("/user")
    other.close()
    assert raised.value.stop_reason == "budget"
    assert raised.value.__cause__ is None


def test_an_outage_of_transport_errors_gives_up_with_the_last_one_as_the_cause() -> None:
    clock = VirtualClock()

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    error = one_request(handler, clock, outage_budget=300.0)
    assert isinstance(error, bb.RetriesExhausted)
    assert error.stop_reason == "outage"
    assert isinstance(error.__cause__, httpx.ConnectError)


def test_an_outage_its_errors_opened_gives_up_after_the_budget_naming_their_status() -> None:
    clock = VirtualClock()
    refused = httpx.Response(503, json={"type": "error", "error": {"message": "down"}})
    error = one_request(lambda _request: refused, clock, outage_budget=300.0)
    assert isinstance(error, bb.RetriesExhausted)
    assert (error.stop_reason, error.status, error.error_message) == ("outage", 503, "down")


def test_a_policy_that_never_retries_errors_gives_up_though_its_error_opens_the_breaker() -> None:
    clock = VirtualClock()
    calls: list[float] = []

    def handler(_request: httpx.Request) -> httpx.Response:
        calls.append(clock.monotonic())
        return httpx.Response(503)

    policy = bb.ExponentialBackoff(seed=1, error_attempts=1)
    error = one_request(handler, clock, policy=policy, failure_threshold=1)
    assert isinstance(error, bb.RetriesExhausted)
    assert (error.stop_reason, len(calls)) == ("attempts", 1)


def test_with_a_sleep_that_does_not_move_the_clock_a_run_of_errors_still_ends() -> None:
    """The gate cannot pace on such a clock and lets sends go: no wait for the breaker."""
    calls: list[int] = []

    def handler(_request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(503)

    with (
        bb.BitbucketClient(
            auth=bb.BearerToken("stubbed-sleep-outage"),
            transport=httpx.MockTransport(handler),
            gate=bb.AccountGate(store=bb.MemoryStore(), seed=1),
            sleep=lambda _seconds: None,
        ) as client,
        pytest.raises(bb.RetriesExhausted) as raised,
    ):
        client.get("/user")
    assert raised.value.stop_reason == "attempts"
    assert len(calls) <= 6


def test_a_token_endpoint_that_is_down_fails_the_refresh_not_the_api_s_breaker() -> None:
    """Its errors are the refresh's: the request gives up after the policy's attempts."""
    clock = VirtualClock()
    token_calls: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/access_token"):
            token_calls.append(clock.monotonic())
            return httpx.Response(503, text="token endpoint down")
        return httpx.Response(200, json={"ok": True})

    auth = bb.OAuth2(
        client_id="cid",
        client_secret="client-secret",
        refresh_token="r" * 20,
        access_token="a" * 20,
        expires_at=clock.time() - 10,
    )
    with (
        bb.BitbucketClient(
            auth=auth,
            transport=httpx.MockTransport(handler),
            gate=bb.AccountGate(store=bb.MemoryStore(), seed=1),
            policy=bb.ExponentialBackoff(seed=1),
            **timing(clock),
        ) as client,
        pytest.raises(bb.RetriesExhausted) as raised,
    ):
        client.get("/user")
    assert (raised.value.stop_reason, len(token_calls)) == ("attempts", 5)
    assert clock.monotonic() < 60.0


def test_an_outage_longer_than_the_budget_gives_up_with_the_outage_reason() -> None:
    results, _ = run_outage(4, 3 * 3600.0, outage_budget=1800.0)
    errors = [r for r in results if isinstance(r, bb.RetriesExhausted)]
    assert errors
    assert {e.stop_reason for e in errors} <= {"outage", "attempts", "budget"}
    assert "outage" in {e.stop_reason for e in errors}


def test_an_outage_across_the_windows_edge_costs_no_burst_of_429s_a_window_later() -> None:
    """The outage's 503s sit in the log, but the server never counted them.

    Checks of the limit let through beside them take the room they seemed to
    hold, one at a time; what was booked on their leaving the window is void
    and booked again, so the next window does not open with a burst into a
    server window the sends after the outage still fill.  (Before: an
    independent mock drew 28 to 41 429s there, 1.015 to 1.041 x the bound.)
    """
    clock = VirtualClock()
    limit, start, length = 100, 3595.0, 600.0
    accepted: collections.deque[float] = collections.deque()
    refused: list[float] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.05)  # the way there: requests are in flight together
        now = clock.monotonic()
        if start <= now < start + length:
            return httpx.Response(503, text="<html>503 Service Unavailable</html>")
        while accepted and accepted[0] <= now - 3600.0:
            accepted.popleft()
        if len(accepted) >= limit:
            refused.append(now)
            return httpx.Response(429, text="Rate limit for this resource has been exceeded")
        accepted.append(now)
        return httpx.Response(200, json={"ok": True})

    jobs = iter(range(2 * limit + limit // 2))
    done: list[object] = []

    async def main() -> None:
        transport = httpx.MockTransport(handler)
        async with virtual_client(clock, transport, "edge", 4, bb.AccountGate(seed=2)) as client:

            async def worker() -> None:
                for _ in jobs:
                    await asyncio.sleep(0.05)  # the work between two calls
                    done.append(await client.get("/user"))

            await asyncio.gather(*(worker() for _ in range(32)))

    run_virtual(main(), clock)
    assert done == [{"ok": True}] * (2 * limit + limit // 2)
    later = [t for t in refused if t > start]
    # The check of the limit once the sends let through fill the window: one.
    assert len(later) <= 2, later
    # The third window's sends wait for the post-outage ones to leave the server's.
    assert clock.monotonic() < start + length + 3600.0 + 60.0


def test_the_breaker_opens_and_closes_in_the_shared_model() -> None:
    clock = VirtualClock()
    calls: list[float] = []
    handler = outage_handler(clock, 0.0, 30.0, calls)
    options = timing(clock)
    gate = bb.AccountGate(store=bb.MemoryStore(), failure_threshold=3, seed=1)
    with bb.BitbucketClient(
        auth=bb.BearerToken("b"), transport=httpx.MockTransport(handler), gate=gate, **options
    ) as client:
        assert client.get("/user") == {"ok": True}
        store = gate.store
        assert isinstance(store, bb.MemoryStore)
        model = store.model(account_key(bb.BearerToken("b"), BASE))
        assert model is not None
        assert (model.mode, model.failures) == (MODEL, 0)
        assert model.generation >= 2  # it opened and closed
    assert calls[-1] >= 30.0


# -- a clock that sleep does not move --------------------------------------------------------


def test_a_stubbed_sleep_on_the_real_clock_warns_once_and_lets_requests_go(
    caplog: pytest.LogCaptureFixture,
) -> None:
    answers = collections.deque(
        [httpx.Response(429, headers={"Retry-After": "5"}) for _ in range(3)]
    )

    def handler(request: httpx.Request) -> httpx.Response:
        return answers.popleft() if answers else httpx.Response(200, json={"ok": True})

    slept: list[float] = []
    with (
        caplog.at_level(logging.WARNING, logger="bb_backoff"),
        bb.BitbucketClient(
            auth=bb.BearerToken("stubbed-sleep"),
            transport=httpx.MockTransport(handler),
            sleep=slept.append,
        ) as client,
    ):
        assert client.get("/user") == {"ok": True}
        assert client.get("/user") == {"ok": True}
    warnings = [r for r in caplog.records if "did not advance its clock" in r.getMessage()]
    assert len(warnings) == 1
    assert slept


@pytest.mark.parametrize("seed", [0, 1, 4, 5])
def test_a_clock_that_ticks_coarsely_is_not_taken_for_one_that_ignores_sleep(
    seed: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Windows' monotonic clock ticks every 15.6 ms before Python 3.13.

    A wait of a few milliseconds at the gate reads as no time at all.
    Before, one such wait made the client take its sleep for one that does
    not move the clock, warn, and send without a reservation (13 429s
    against 7 here); only a run of unseen sleeps longer than any tick tells.
    """
    clock = VirtualClock()
    server = JitteredServer(clock, limit=20, seed=seed)
    tick = 0.015625
    workers, items = 8, 70

    def coarse() -> float:
        return math.floor(clock.monotonic() / tick) * tick

    async def main() -> None:
        gate = bb.AccountGate(store=bb.MemoryStore(), seed=seed)
        async with bb.AsyncBitbucketClient(
            auth=bb.BearerToken("coarse-clock"),
            transport=server,
            clock=coarse,
            now=clock.time,
            policy=bb.ExponentialBackoff(seed=seed),
            gate=gate,
        ) as client:
            await gets_by_workers(client, workers, items)

    with caplog.at_level(logging.WARNING, logger="bb_backoff"):
        run_virtual(main(), clock)
    assert "did not advance its clock" not in caplog.text
    assert server.refused <= workers + 1  # and the one check of the limit learned


class ScriptedWaits(bb.MemoryStore):
    """A store whose every answer is a WAIT, of these delays in turn: the flow's side of waits."""

    def __init__(self, delays: list[float]) -> None:
        super().__init__()
        self.delays = itertools.cycle(delays)
        self.asked = 0

    def reserve(  # noqa: PLR0917 (as the store it stands for)
        self,
        key: str,
        now: float,
        params: bb_window.WindowParams,
        member: object,
        margin: float,
        cancel: bb_window.Grant | None,
    ) -> bb_window.Grant:
        self.asked += 1
        if self.asked > 500:
            raise AssertionError("the request asks the gate again and again")
        return bb_window.Grant(bb_window.WAIT, next(self.delays), bb_window.WINDOW, 0)


@pytest.mark.parametrize("delays", [[0.05, 0.0005], [0.0005], [0.002]])
def test_on_a_frozen_clock_a_run_of_short_gate_waits_still_ends(
    delays: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    """A sleep that does nothing, a clock that never moves, waits of a millisecond or less.

    A wait too short to judge must neither clear the unseen sleep counted
    so far (50 ms and 0.5 ms in turn asked again for ever) nor be asked
    again as it is (0.5 ms: for ever, 2 ms: 50 times): every wait at the
    gate lasts two ticks of a coarse clock at least.
    """
    clock = VirtualClock()
    store = ScriptedWaits(delays)
    with (
        caplog.at_level(logging.WARNING, logger="bb_backoff"),
        bb.BitbucketClient(
            auth=bb.BearerToken("frozen-clock"),
            transport=httpx.MockTransport(lambda _request: httpx.Response(200, json={"ok": 1})),
            clock=clock.monotonic,
            now=clock.time,
            sleep=lambda _seconds: None,
            gate=bb.AccountGate(store=store),
        ) as client,
    ):
        assert client.get("/user") == {"ok": 1}
    assert store.asked <= 4
    assert "did not advance its clock" in caplog.text


# -- the headers the gate reads ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, (None, None)),
        ({"X-RateLimit-Limit": "1000", "X-RateLimit-NearLimit": "false"}, (1000, False)),
        ({"x-ratelimit-limit": " 250 ", "X-RATELIMIT-NEARLIMIT": "TRUE"}, (250, True)),
        ({"X-RateLimit-Limit": "-5", "X-RateLimit-NearLimit": "maybe"}, (None, None)),
        ({"X-RateLimit-Limit": "0"}, (None, None)),
        ({"X-RateLimit-Limit": "9" * 40}, (None, None)),
        ({"X-RateLimit-Resource": "api"}, (None, None)),
    ],
)
def test_rate_limit_headers_are_read_when_readable_and_ignored_otherwise(
    headers: dict[str, str], expected: tuple[int | None, bool | None]
) -> None:
    assert rate_limit_headers(httpx.Headers(headers)) == expected


# -- a waiting request notices when the model changes under it ---------------------------


def test_a_request_waiting_for_a_slot_goes_soon_after_the_model_changes_under_it() -> None:
    """Waits for a slot are slept in pieces (a sixtieth of the window), checking the model.

    Configured for one request an hour, the second request reserves the next
    hour's slot.  A hundred seconds in, the server states a limit of 100
    (``X-RateLimit-Limit``): the reservation is void, and the request goes
    within a piece of the wait, not after the hour it reserved.
    """
    clock = VirtualClock()
    mock = mock_on(clock)
    store = bb.MemoryStore()
    gate = bb.AccountGate(limit=1, store=store)
    key = account_key(mock.bearer(), BASE)
    finished: list[float] = []

    async def server_states_a_limit() -> None:
        await asyncio.sleep(100)
        now = clock.monotonic()
        grant = store.reserve(
            key, now=now, params=gate.params, member="elsewhere", margin=0.0, cancel=None
        )
        news = bb_window.Observation(bb_window.OK, header_limit=100)
        store.observe(key, now=now, params=gate.params, grant=grant, observation=news, draw=0.5)

    async def main() -> None:
        async with bb.AsyncBitbucketClient(
            auth=mock.bearer(),
            transport=mock.async_transport(),
            clock=clock.monotonic,
            now=clock.time,
            gate=gate,
        ) as client:
            await client.user()  # the hour's one slot
            started = clock.monotonic()
            changing = asyncio.create_task(server_states_a_limit())
            await client.user()
            finished.append(clock.monotonic() - started)
            await changing

    run_virtual(main(), clock)
    assert 100 <= finished[0] <= 100 + 3600 / 60 + 1


# -- the memory store forgets idle accounts ------------------------------------------------------


def test_the_memory_store_drops_only_accounts_idle_for_two_windows_as_new_ones_arrive() -> None:
    """The sweep runs when the ``_SWEEP_EVERY``-th account is created, judged by each log.

    With a ten-second window, at t=100 an account is idle when nothing was
    observed for it since t=80 and its newest log entry is older than that.
    """
    store = bb.MemoryStore()
    params = bb_window.WindowParams(window=10.0)

    def reserve(key: str, now: float) -> bb_window.Grant:
        return store.reserve(key, now=now, params=params, member=key, margin=0.0, cancel=None)

    reserve("idle", 0.0)
    reserve("sending", 0.0)
    told = reserve("told", 0.0)
    reserve("sending", 100.0)  # kept sending: a recent log entry
    store.observe(
        "told",
        now=100.0,
        params=params,
        grant=told,
        observation=bb_window.Observation(bb_window.OK),
        draw=0.5,
    )
    for number in range(_SWEEP_EVERY - 4):
        reserve(f"new-{number}", 100.0)
    assert store.model("idle") is not None  # no sweep yet: one account short
    reserve("last", 100.0)  # the sweep runs as this one is created
    assert store.model("idle") is None
    assert store.model("sending") is not None
    assert store.model("told") is not None
    assert store.model("new-0") is not None
    assert store.model("last") is not None  # the account being created is never dropped


def test_an_account_created_by_an_observe_is_not_swept_as_it_is_created() -> None:
    store = bb.MemoryStore()
    params = bb_window.WindowParams(window=10.0)
    grant = bb_window.Grant(bb_window.GO, 0.0, "", 0, "m", 0.0)
    for number in range(_SWEEP_EVERY - 1):
        store.reserve(f"a-{number}", now=0.0, params=params, member=number, margin=0.0, cancel=None)
    store.observe(
        "observed",
        now=1000.0,
        params=params,
        grant=grant,
        observation=bb_window.Observation(bb_window.OK),
        draw=0.5,
    )
    assert store.model("observed") is not None
    assert store.model("a-0") is None  # idle since t=0: swept at t=1000


def test_a_sweep_judges_idleness_by_the_longest_window_using_the_store() -> None:
    """Gates on one clock share a store: a short window's sweep keeps a long one's accounts."""
    store = bb.MemoryStore()
    hour = bb_window.WindowParams(window=3600.0)
    minute = bb_window.WindowParams(window=60.0)
    store.reserve("hourly", now=0.0, params=hour, member="h", margin=0.0, cancel=None)
    for number in range(_SWEEP_EVERY - 1):
        store.reserve(
            f"m-{number}", now=600.0, params=minute, member=number, margin=0.0, cancel=None
        )
    model = store.model("hourly")
    assert model is not None  # its send still counts for another 50 minutes
    assert len(model.log) == 1


# -- the fast lane: the memory gate's success path ------------------------------------------------


def test_a_handle_takes_the_next_sends_from_the_models_lane_under_the_store_lock() -> None:
    clock = VirtualClock()
    store = bb.MemoryStore()
    handle = bb.AccountGate(store=store).bind("key", clock=clock.monotonic, now=clock.time)
    handle.reserve()
    model = store.model("key")
    assert model is not None
    room = model.lane
    assert room > 0
    clock.advance(1.0)
    grant = handle.reserve()
    assert (grant.kind, grant.delay, grant.at) == (bb_window.GO, 0.0, 1.0)
    assert model.lane == room - 1  # taken from the lane, not decided again
    assert [at for at, _member in model.log] == [0.0, 1.0]


def _sweep_idle_models(gate: bb.AccountGate, clock: VirtualClock) -> None:
    """Let every model go idle past its window, then send enough elsewhere for a sweep."""
    clock.advance(100.0)
    for number in range(_SWEEP_EVERY):
        gate.bind(f"other-{number}", clock=clock.monotonic, now=clock.time).reserve()


def test_a_handle_whose_model_was_swept_sends_into_the_accounts_new_model() -> None:
    """A sweep closes the lane of the model it drops, so no send is logged where no one looks."""
    clock = VirtualClock()
    store = bb.MemoryStore()
    gate = bb.AccountGate(window=10.0, store=store)
    handle = gate.bind("key", clock=clock.monotonic, now=clock.time)
    handle.reserve()
    dropped = store.model("key")
    assert dropped is not None
    _sweep_idle_models(gate, clock)
    assert store.model("key") is None
    assert dropped.lane == 0
    grant = handle.reserve()
    model = store.model("key")
    assert model is not None
    assert model is not dropped
    assert [member for _at, member in model.log] == [grant.member]
    assert handle.answered(grant, httpx.Response(200), 0.1) is None


def test_a_sweep_lets_go_of_a_dropped_models_entries_though_a_handle_still_holds_it() -> None:
    clock = VirtualClock()
    store = bb.MemoryStore()
    gate = bb.AccountGate(window=10.0, store=store)
    idle = gate.bind("idle", clock=clock.monotonic, now=clock.time)
    for _ in range(10):
        idle.reserve()
    dropped = store.model("idle")
    assert dropped is not None
    _sweep_idle_models(gate, clock)
    assert store.model("idle") is None
    assert (dropped.log, dropped.errors) == ([], [])


def test_a_late_success_is_judged_by_the_accounts_model_now_not_one_a_sweep_dropped() -> None:
    """A success that ends another client's run of errors is news, whatever the handle saw."""
    clock = VirtualClock()
    store = bb.MemoryStore()
    gate = bb.AccountGate(window=10.0, store=store)
    slow_client = gate.bind("key", clock=clock.monotonic, now=clock.time)
    other_client = gate.bind("key", clock=clock.monotonic, now=clock.time)
    slow = slow_client.reserve()  # its answer takes long
    _sweep_idle_models(gate, clock)
    failed = other_client.reserve()  # into the account's new model
    other_client.observe(failed, bb_window.Observation(bb_window.ERROR))
    assert slow_client.answered(slow, httpx.Response(200), 0.2) == bb_window.Observation(
        bb_window.OK
    )


def test_clients_of_gates_with_the_same_settings_share_one_lane() -> None:
    clock = VirtualClock()
    store = bb.MemoryStore()
    first = bb.AccountGate(store=store).bind("key", clock=clock.monotonic, now=clock.time)
    second = bb.AccountGate(store=store).bind("key", clock=clock.monotonic, now=clock.time)
    assert first.params is second.params
    first.reserve()
    second.reserve()  # each handle's first send finds the account's model
    model = store.model("key")
    assert model is not None
    room = model.lane
    first.reserve()
    second.reserve()
    assert model.lane == room - 2


def test_a_gate_with_a_configured_limit_is_held_to_it_while_another_gates_lane_is_open() -> None:
    clock = VirtualClock()
    store = bb.MemoryStore()
    learning = bb.AccountGate(store=store).bind("key", clock=clock.monotonic, now=clock.time)
    configured = bb.AccountGate(limit=2, store=store).bind(
        "key", clock=clock.monotonic, now=clock.time
    )
    learning.reserve()
    model = store.model("key")
    assert model is not None
    assert model.lane > 0
    assert configured.reserve().delay == 0
    assert configured.reserve().reason == bb_window.WINDOW  # two in the window already


def test_threads_sharing_a_memory_gate_log_every_send_once_and_in_order() -> None:
    store = bb.MemoryStore()
    handles = [
        bb.AccountGate(store=store).bind("key", clock=time.monotonic, now=time.time)
        for _ in range(4)
    ]
    members: list[list[int]] = [[] for _ in handles]

    def send(handle: GateHandle, mine: list[int]) -> None:
        mine.extend(cast("int", handle.reserve().member) for _ in range(2_000))

    threads = [
        threading.Thread(target=send, args=pair) for pair in zip(handles, members, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    model = store.model("key")
    assert model is not None
    times = [at for at, _member in model.log]
    assert times == sorted(times)
    assert sorted(cast("int", member) for _at, member in model.log) == sorted(
        member for mine in members for member in mine
    )


# -- the round trip: the margin a freed slot waits ------------------------------------------------


def handle_on(clock: VirtualClock) -> GateHandle:
    return bb.AccountGate(store=bb.MemoryStore()).bind("key", clock=clock.monotonic, now=clock.time)


def tcp_margin(samples: list[float]) -> float | None:
    """RFC 6298's estimate of ``samples`` (all valid): srtt + 4 rttvar, capped at 30 s."""
    srtt: float | None = None
    rttvar = 0.0
    for sample in samples:
        if srtt is None:
            srtt, rttvar = sample, sample / 2
        else:
            rttvar = 0.75 * rttvar + 0.25 * abs(srtt - sample)
            srtt = 0.875 * srtt + 0.125 * sample
    if srtt is None:
        return None
    return min(srtt + 4 * rttvar, _MAX_MARGIN)


round_trips = st.one_of(
    st.floats(min_value=0.0, max_value=_MAX_MARGIN, exclude_max=True),
    st.floats(max_value=0.0, exclude_max=True),  # a clock that jumped back
    st.floats(min_value=_MAX_MARGIN),  # a stalled process
)


@given(samples=st.lists(round_trips, max_size=30))
def test_the_margin_is_tcp_s_smoothed_round_trip_plus_four_deviations_capped(
    samples: list[float],
) -> None:
    handle = handle_on(VirtualClock())
    initial = handle.margin
    valid: list[float] = []
    for sample in samples:
        before = handle.margin
        handle.round_trip(sample)
        if 0.0 <= sample < _MAX_MARGIN:
            valid.append(sample)
        else:
            assert handle.margin == before  # no round trip: ignored
        assert 0.0 <= handle.margin <= _MAX_MARGIN
    expected = tcp_margin(valid)
    assert handle.margin == pytest.approx(initial if expected is None else expected, rel=1e-9)


# -- what a success tells the gate -----------------------------------------------------------------


ORDINARY_HEADERS = [(f"X-Header-{number}", f"value {number}") for number in range(16)]
LIMIT_HEADER = "x-ratelimit-limit"


def test_a_plain_success_on_a_go_grant_is_no_news() -> None:
    handle = handle_on(VirtualClock())
    grant = handle.reserve()
    assert grant.kind == bb_window.GO
    assert handle.answered(grant, httpx.Response(200), 0.0) is None
    resource = [*ORDINARY_HEADERS, ("X-RateLimit-Resource", "api")]
    assert handle.answered(grant, httpx.Response(200, headers=resource), 0.0) is None


@given(
    upper=st.lists(st.booleans(), min_size=len(LIMIT_HEADER), max_size=len(LIMIT_HEADER)),
    position=st.integers(min_value=0, max_value=len(ORDINARY_HEADERS)),
)
def test_x_ratelimit_limit_among_many_headers_in_any_case_is_news_until_the_gate_knows_it(
    upper: list[bool], position: int
) -> None:
    name = "".join(c.upper() if up else c for c, up in zip(LIMIT_HEADER, upper, strict=True))
    headers = list(ORDINARY_HEADERS)
    headers.insert(position, (name, "1000"))
    handle = handle_on(VirtualClock())
    grant = handle.reserve()
    news = handle.answered(grant, httpx.Response(200, headers=headers), 0.0)
    assert news == bb_window.Observation(bb_window.OK, header_limit=1000)
    handle.observe(grant, news)
    assert handle.answered(grant, httpx.Response(200, headers=headers), 0.0) is None


def test_x_ratelimit_nearlimit_alone_is_news() -> None:
    handle = handle_on(VirtualClock())
    headers = [*ORDINARY_HEADERS, ("X-RateLimit-NearLimit", "true")]
    news = handle.answered(handle.reserve(), httpx.Response(200, headers=headers), 0.0)
    assert news == bb_window.Observation(bb_window.OK, near=True)


def test_a_success_that_answers_a_probe_is_always_news() -> None:
    handle = handle_on(VirtualClock())
    probe = bb_window.Grant(bb_window.PROBE, 0.0, bb_window.WINDOW, 0, "probe", 0.0)
    assert handle.answered(probe, httpx.Response(200), 0.0) == bb_window.Observation(bb_window.OK)


def test_a_success_is_timed_by_the_seconds_its_answer_took() -> None:
    handle = handle_on(VirtualClock(start=10.0))
    assert handle.answered(handle.reserve(), httpx.Response(200), 1.0) is None
    assert handle.margin == pytest.approx(1.0 + 4 * 0.5)
    handle.answered(handle.reserve(), httpx.Response(200), 100.0)  # a stall, ignored
    assert handle.margin == pytest.approx(3.0)


class StoreOfItsOwn(bb.MemoryStore):
    """A memory store the clients do not know as one: reached through the store protocol."""


@pytest.mark.parametrize("store_kind", [bb.MemoryStore, StoreOfItsOwn])
def test_the_margin_covers_a_send_that_went_later_than_its_slot(
    store_kind: type[bb.MemoryStore],
) -> None:
    """A sleep that oversleeps (a busy event loop) sends past the slot it was booked.

    The server then counts the send later than the model logged it: the
    margin (when a slot frees) must cover that as it covers the network.
    """
    clock = VirtualClock()
    late = 0.25

    def oversleep(seconds: float) -> None:
        clock.sleep(seconds + late)

    transport = httpx.MockTransport(lambda _request: httpx.Response(200, json={}))
    gate = bb.AccountGate(window=60.0, limit=1, store=store_kind())
    with bb.BitbucketClient(
        transport=transport, gate=gate, clock=clock.monotonic, now=clock.time, sleep=oversleep
    ) as client:
        client.get("/user")
        assert client._gate_handle is not None
        assert client._gate_handle.margin == 0.0  # answered at once
        client.get("/user")  # waits for the slot, and goes late
        margin = client._gate_handle.margin
    assert margin >= late


@pytest.mark.parametrize("refused_by", ["origin guard", "closed client"])
def test_a_send_refused_before_it_went_out_gives_its_slot_back(refused_by: str) -> None:
    """Left in the log, it would count as let through when the next 429 teaches the limit."""
    clock = VirtualClock()
    store = bb.MemoryStore()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/diff"):
            return httpx.Response(302, headers={"Location": "https://evil.example/diff"})
        return httpx.Response(200, json={})

    client = bb.BitbucketClient(
        transport=httpx.MockTransport(handler),
        gate=bb.AccountGate(store=store),
        clock=clock.monotonic,
        now=clock.time,
        sleep=clock.sleep,
    )
    client.get("/user")
    if refused_by == "closed client":
        client.close()
    with pytest.raises(bb.BitbucketError):
        client.get("/repositories/w/r/pullrequests/1/diff")
    client.close()
    assert client._gate_handle is not None
    model = store.model(client._gate_handle.key)
    assert model is not None
    sent = 2 if refused_by == "origin guard" else 1  # /user, and the redirect that went
    assert len(model.log) == sent
