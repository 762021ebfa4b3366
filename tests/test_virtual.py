"""Concurrent workers on virtual time: tasks on VirtualEventLoop, threads under VirtualThreads."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import pytest

import bb_backoff as bb
from bb_backoff.testing import VirtualClock, VirtualEventLoop, VirtualThreads, run_virtual


def test_tasks_sleep_concurrently_and_time_jumps_to_the_latest_wake_up() -> None:
    clock = VirtualClock()

    async def worker(seconds: float) -> float:
        await asyncio.sleep(seconds)
        return asyncio.get_running_loop().time()

    async def main() -> list[float]:
        return list(await asyncio.gather(worker(3600), worker(10), worker(7200)))

    assert run_virtual(main(), clock) == [3600.0, 10.0, 7200.0]
    assert clock.monotonic() == 7200.0


def test_timeouts_fire_on_virtual_time() -> None:
    async def main() -> None:
        await asyncio.wait_for(asyncio.sleep(10_000), timeout=5)

    clock = VirtualClock()
    with pytest.raises(TimeoutError):
        run_virtual(main(), clock)
    assert clock.monotonic() == pytest.approx(5.0)


def test_a_deadlock_is_reported_instead_of_hanging() -> None:
    async def main() -> None:
        await asyncio.get_running_loop().create_future()

    with pytest.raises(RuntimeError, match="virtual time deadlock"):
        run_virtual(main(), deadlock_grace=0)


def test_tasks_left_behind_when_main_raises_are_cancelled_not_destroyed_pending() -> None:
    # (Closed with them pending, the loop left "Task was destroyed but it is
    # pending!" and "Event loop is closed" on stderr: a Ctrl-C in the bench.)
    cleaned: list[str] = []

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned.append("forever")

    async def main() -> None:
        asyncio.get_running_loop().create_task(forever())
        await asyncio.sleep(1)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_virtual(main())
    assert cleaned == ["forever"]


def test_a_left_task_s_clean_up_may_wait_on_a_thread() -> None:
    """The clean-up of a task main left behind may wait on a thread (a store's close)."""
    clock = VirtualClock()
    cleaned: list[str] = []

    async def closes_in_a_thread() -> None:
        try:
            await asyncio.sleep(10**9)
        finally:
            await asyncio.to_thread(time.sleep, 0.05)
            cleaned.append("closed")

    async def main() -> None:
        asyncio.get_running_loop().create_task(closes_in_a_thread())
        await asyncio.sleep(5)

    run_virtual(main(), clock)
    assert cleaned == ["closed"]
    assert clock.monotonic() == 5.0


def test_a_main_that_returns_has_its_tasks_cancelled_and_their_clean_up_run() -> None:
    clock = VirtualClock()
    cleaned: list[float] = []

    async def cleanup_sleeps() -> None:
        try:
            await asyncio.sleep(10**9)
        finally:
            cleaned.append(clock.monotonic())
            await asyncio.sleep(0.5)  # a graceful close

    async def main() -> float:
        asyncio.get_running_loop().create_task(cleanup_sleeps())
        await asyncio.sleep(5)
        return clock.monotonic()

    assert run_virtual(main(), clock) == 5.0
    assert cleaned == [5.0]
    assert clock.monotonic() == 5.5


def test_the_loop_time_is_the_clock() -> None:
    clock = VirtualClock(start=42)
    loop = VirtualEventLoop(clock)
    try:
        assert loop.time() == 42.0
    finally:
        loop.close()


def test_the_async_client_waits_out_hours_of_rate_limits_in_no_real_time() -> None:
    clock = VirtualClock()
    limited_until = 3 * 3600

    def handler(_request: httpx.Request) -> httpx.Response:
        if clock.monotonic() < limited_until:
            return httpx.Response(429, text="Rate limit for this resource has been exceeded")
        return httpx.Response(200, json={"ok": True})

    async def main() -> list[Any]:
        async with bb.AsyncBitbucketClient(
            transport=httpx.MockTransport(handler),
            clock=clock.monotonic,
            now=clock.time,
            policy=bb.ExponentialBackoff(rate_limit_budget=4 * 3600, seed=1),
        ) as client:
            return await asyncio.gather(*(client.get("/user") for _ in range(8)))

    assert run_virtual(main(), clock) == [{"ok": True}] * 8
    assert clock.monotonic() >= limited_until


def test_threads_take_turns_deterministically_by_wake_up_time() -> None:
    clock = VirtualClock()
    threads = VirtualThreads(clock)
    log: list[tuple[float, str]] = []

    def worker(name: str, period: float) -> str:
        for _ in range(3):
            threads.sleep(period)
            log.append((clock.monotonic(), name))
        return name

    results = threads.run([lambda: worker("a", 10), lambda: worker("b", 25)])
    assert results == ["a", "b"]
    assert log == [
        (10.0, "a"),
        (20.0, "a"),
        (25.0, "b"),
        (30.0, "a"),
        (50.0, "b"),
        (75.0, "b"),
    ]


def test_only_one_thread_runs_at_a_time() -> None:
    clock = VirtualClock()
    threads = VirtualThreads(clock)
    running = 0
    overlap = False
    lock = threading.Lock()

    def worker() -> None:
        nonlocal running, overlap
        for _ in range(20):
            with lock:
                running += 1
                overlap = overlap or running > 1
            for _ in range(1000):
                pass
            with lock:
                running -= 1
            threads.sleep(1)

    threads.run([worker] * 6)
    assert overlap is False


def test_a_worker_exception_is_raised_after_all_workers_finish() -> None:
    clock = VirtualClock()
    threads = VirtualThreads(clock)
    finished: list[str] = []

    def failing() -> None:
        threads.sleep(1)
        raise ValueError("boom")

    def slow() -> None:
        threads.sleep(100)
        finished.append("slow")

    with pytest.raises(ValueError, match="boom"):
        threads.run([failing, slow])
    assert finished == ["slow"]


def test_a_parked_worker_wakes_when_another_unparks_it_at_that_time() -> None:
    """Like a consumer blocked on a queue: no turns while parked, awake when work comes."""
    clock = VirtualClock()
    threads = VirtualThreads(clock)
    queue: list[str] = []
    log: list[tuple[float, str]] = []

    def consumer() -> None:
        while not queue:
            threads.park()
        log.append((clock.monotonic(), queue.pop()))

    def producer() -> None:
        threads.sleep(7.5)
        queue.append("work")
        threads.unpark_all()
        threads.sleep(100)

    threads.run([consumer, producer])
    assert log == [(7.5, "work")]
    assert clock.sleeps == [7.5, 100]  # the parked consumer never polled


def test_workers_left_parked_when_the_last_other_finishes_are_woken() -> None:
    clock = VirtualClock()
    threads = VirtualThreads(clock)
    done = False
    woke: list[float] = []

    def waiter() -> None:
        while not done:
            threads.park()
        woke.append(clock.monotonic())

    def finisher() -> None:
        nonlocal done
        threads.sleep(3)
        done = True  # and returns without unparking anyone

    threads.run([waiter, waiter, finisher])
    assert woke == [3.0, 3.0]


def test_park_refuses_to_wait_for_nobody() -> None:
    clock = VirtualClock()
    threads = VirtualThreads(clock)
    with pytest.raises(RuntimeError, match="worker"):
        threads.park()

    solo = VirtualThreads(clock)

    def alone() -> None:
        solo.park()

    with pytest.raises(RuntimeError, match="nobody would unpark"):
        solo.run([alone])


def test_sleep_outside_a_worker_just_advances_the_clock() -> None:
    clock = VirtualClock()
    VirtualThreads(clock).sleep(5)
    assert clock.monotonic() == 5.0


def test_the_sync_client_in_threads_shares_one_virtual_clock() -> None:
    """Four threads wait out their own 600 s side by side, not one after another.

    Without the account gate: with it, the first 429 makes the others wait
    for one probe, and this script's next three 429s would each be that
    probe's answer (tests/test_gate.py pins that behaviour).
    """
    clock = VirtualClock()
    threads = VirtualThreads(clock)
    calls: list[float] = []

    def handler(_request: httpx.Request) -> httpx.Response:
        calls.append(clock.monotonic())
        if len(calls) <= 4:
            return httpx.Response(429, headers={"Retry-After": "600"})
        return httpx.Response(200, json={"ok": True})

    with bb.BitbucketClient(
        transport=httpx.MockTransport(handler),
        clock=clock.monotonic,
        now=clock.time,
        sleep=threads.sleep,
        gate=False,
    ) as client:
        results = threads.run([lambda: client.get("/user")] * 4)
    assert results == [{"ok": True}] * 4
    assert clock.monotonic() == pytest.approx(600.0)
