"""Nothing lost: a whole import through the client's helpers under heavy rate limiting and faults.

An importer built the way GitLab's is (repositories, then pull requests with
comments and diffs, issues with comments, workspace members), with several
workers sharing one token, must end up with every item of the mock's dataset
exactly once: on virtual time with the sync client in threads and the async
client in tasks, and on real time through the uvicorn-served mock.
"""

from __future__ import annotations

import asyncio

import pytest

import bb_backoff as bb
from bb_backoff.testing import (
    DatasetSize,
    Faults,
    MockBitbucket,
    VirtualClock,
    VirtualThreads,
    run_virtual,
    serve_mock,
)
from importers import Items, expected_items, import_async, import_sync
from markers import REALTIME

# 5,000 requests an hour would take the default dataset's ~1,000 calls in
# one go; 150 an hour makes the import wait out seven windows.
HEAVY_LIMIT = 150
# 5 % of admitted requests fail (as in the benchmark): with the default five
# errors in a row before giving up, a request is lost with probability
# 0.05 ** 5, about 3e-7.
FAULTS = Faults(server_error_rate=0.03, reset_rate=0.01, timeout_rate=0.01)


# -- the tests ---------------------------------------------------------------------------


def assert_heavily_rate_limited(mock: MockBitbucket, clock: VirtualClock, *, gated: bool) -> None:
    """The import waited out many windows; without the gate, through many 429s."""
    counters = mock.counters
    # The gate learns the window and stops sending into a full one; each
    # request alone keeps knocking.
    assert counters.rate_limited > (0 if gated else 100)
    assert counters.server_errors + counters.resets + counters.timeouts > 30
    assert clock.monotonic() > 5 * 3600


@pytest.mark.parametrize("gate", [None, False], ids=["gate", "no-gate"])
@pytest.mark.parametrize("seed", [0, 1])
def test_a_sync_import_in_threads_gets_every_item_exactly_once(
    seed: int, gate: bool | None
) -> None:
    clock = VirtualClock()
    threads = VirtualThreads(clock)
    mock = MockBitbucket(
        seed=seed,
        limit=HEAVY_LIMIT,
        faults=FAULTS,
        latency=0.1,
        clock=clock.monotonic,
        now=clock.time,
        sleep=threads.sleep,
    )
    with bb.BitbucketClient(
        auth=mock.bearer(),
        transport=mock.transport(),
        policy=bb.ExponentialBackoff(seed=seed),
        clock=clock.monotonic,
        now=clock.time,
        sleep=threads.sleep,
        gate=gate,
    ) as client:
        items = import_sync(client, threads, workers=4)
    assert_heavily_rate_limited(mock, clock, gated=gate is None)
    assert items == expected_items(mock)


@pytest.mark.parametrize("gate", [None, False], ids=["gate", "no-gate"])
@pytest.mark.parametrize("seed", [0, 1])
def test_an_async_import_in_tasks_gets_every_item_exactly_once(
    seed: int, gate: bool | None
) -> None:
    clock = VirtualClock()
    mock = MockBitbucket(
        seed=seed,
        limit=HEAVY_LIMIT,
        faults=FAULTS,
        latency=0.1,
        clock=clock.monotonic,
        now=clock.time,
    )

    async def main() -> Items:
        async with bb.AsyncBitbucketClient(
            auth=mock.bearer(),
            transport=mock.async_transport(),
            policy=bb.ExponentialBackoff(seed=seed),
            clock=clock.monotonic,
            now=clock.time,
            gate=gate,
        ) as client:
            return await import_async(client, workers=8)

    items = run_virtual(main(), clock)
    assert_heavily_rate_limited(mock, clock, gated=gate is None)
    assert items == expected_items(mock)


def test_an_import_with_oauth_tokens_expiring_and_rotating_midway_loses_nothing() -> None:
    """Access tokens last 7,200 s; a seven-hour import refreshes several times."""
    clock = VirtualClock()
    mock = MockBitbucket(limit=HEAVY_LIMIT, latency=0.1, clock=clock.monotonic, now=clock.time)
    rotated: list[bb.OAuth2Tokens] = []

    async def main() -> Items:
        async with bb.AsyncBitbucketClient(
            auth=mock.oauth2(on_refresh=rotated.append),
            transport=mock.async_transport(),
            clock=clock.monotonic,
            now=clock.time,
        ) as client:
            return await import_async(client, workers=4)

    items = run_virtual(main(), clock)
    assert len(rotated) >= 2
    assert mock.counters.refreshes == len(rotated)
    assert items == expected_items(mock)


@REALTIME
def test_an_import_through_the_real_server_on_real_time_gets_every_item_exactly_once() -> None:
    """uvicorn on 127.0.0.1, real sockets and real sleeps: an hour scaled down to one second."""
    scale = 1 / 3600
    mock = MockBitbucket(
        seed=5,
        size=DatasetSize(
            repositories=1,
            pull_requests=12,
            comments_per_pull_request=2,
            issues=6,
            comments_per_issue=2,
            members=3,
        ),
        limit=15,
        window=3600 * scale,
        faults=Faults(server_error_rate=0.05, reset_rate=0.03),
    )
    policy = bb.ExponentialBackoff(
        initial=0.05,
        max_delay=300 * scale,
        rate_limit_budget=24 * 3600 * scale,
        error_budget=5.0,
        seed=5,
    )

    # The account gate on the same scaled window.
    gate = bb.AccountGate(
        window=3600 * scale, probe_initial=0.05, probe_max=300 * scale, breaker_max=0.5
    )

    async def main(base_url: str) -> Items:
        async with bb.AsyncBitbucketClient(
            auth=mock.bearer(), base_url=base_url, policy=policy, timeout=10.0, gate=gate
        ) as client:
            return await import_async(client, workers=4)

    with serve_mock(mock) as base_url:
        items = asyncio.run(main(base_url))
    assert mock.counters.rate_limited > 0
    assert items == expected_items(mock)
