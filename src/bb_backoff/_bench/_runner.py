"""Running the benchmark: one import per scenario and contender, on virtual time.

Each run builds a fresh mock and a fresh virtual clock from the seed, so a
row depends on nothing but (scenario, contender, seed, workers); runs are
spread over worker processes and come back in order.

:func:`run_real` repeats a run against the mock served by uvicorn on real
time; :func:`run_fleet` runs one import with several importer processes on
one token, their account gates sharing one model in Redis or each keeping
its own.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import inspect
import logging
import math
import multiprocessing
import os
import queue
import random
import secrets
import signal
import tempfile
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs

from .._auth import BearerToken
from .._client import AsyncBitbucketClient
from .._exceptions import redact_url
from .._gate import AccountGate, MemoryStore
from .._policy import ExponentialBackoff, RetryPolicy, int_up_to
from .._redis_clients import (
    UnusableRedisURL,
    check_asyncio,
    scrub,
    sync_client,
    url_passwords,
)
from .._redis_server import RedisServer, RedisUnavailable
from .._timing import default_async_sleep, default_clock
from ..testing import MockBitbucket, VirtualClock, VirtualThreads, run_virtual, serve_mock
from ._contenders import CONTENDERS, Arena, Contender, _gate, _scaled, contender_named
from ._importer import (
    PAGELEN,
    AsyncFetcher,
    ImportResult,
    ImportState,
    SyncFetcher,
    Task,
    import_async,
    import_sync,
    initial_tasks,
)

if TYPE_CHECKING:
    from multiprocessing.context import SpawnProcess
    from multiprocessing.queues import JoinableQueue
    from multiprocessing.queues import Queue as ProcessQueue
from ._scenarios import Scenario

BASE_URL: Final = "https://api.bitbucket.org/2.0"


@attrs.frozen(kw_only=True)
class Row:
    """One contender's import in one scenario.

    Attributes:
        scenario: the scenario's name.
        policy: the contender's name.
        mode: ``"async"`` or ``"sync"``.
        workers: concurrent workers.
        time_ratio: completion time divided by the lower bound the rate limit forces.
        seconds: completion time in seconds.
        lower_bound: the lower bound in seconds.
        calls: requests the API received.
        rate_limited: of which answered 429.
        wasted: calls that delivered nothing (429s, faults, outage 503s,
            repeats), as a share of the calls needed: above 1 when more calls
            were wasted than a complete import needs.
        calls_needed: successful calls a complete import needs.
        lost: expected items that were not imported.
        complete: whether every expected item was imported (``lost == 0``);
            an incomplete run's time is that of an import that stopped early,
            not of a fast one.
        duplicates: items imported more than once.
        items: items a complete import has.
        give_ups: requests that failed for good.
        p99_request: 99th percentile of one logical request's duration
            (retries and waits included), seconds.
        longest_request: the longest logical request, seconds.
        outage_calls: calls that arrived during the scenario's full outage.
        clock: ``"virtual"`` or ``"real"``.
    """

    scenario: str
    policy: str
    mode: str
    workers: int
    time_ratio: float
    seconds: float
    lower_bound: float
    calls: int
    rate_limited: int
    wasted: float
    calls_needed: int
    lost: int
    complete: bool = attrs.field(default=attrs.Factory(lambda row: row.lost == 0, takes_self=True))
    duplicates: int
    items: int
    give_ups: int
    p99_request: float
    longest_request: float
    outage_calls: int = 0
    clock: str = "virtual"

    @complete.validator
    def _complete_means_nothing_lost(self, _attribute: object, value: object) -> None:
        if value is not (self.lost == 0):
            raise ValueError(f"complete must be {self.lost == 0} when lost is {self.lost}")

    def as_dict(self) -> dict[str, Any]:
        """The row as plain JSON-ready values (an infinite ratio is ``None``).

        NaN stays NaN: it can only come from a bug, and strict JSON refuses it.
        """
        values = attrs.asdict(self)
        for name, value in values.items():
            if isinstance(value, float) and math.isinf(value):
                values[name] = None
        return values


def _percentile(values: Sequence[float], share: float) -> float:
    """The value at rank ``ceil(share * n)`` of the sorted values (nearest rank); 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1))]


def _mock_for(scenario: Scenario, seed: int, **timing: Any) -> MockBitbucket:
    return MockBitbucket(
        seed=seed,
        size=scenario.size,
        limit=scenario.limit,
        window=scenario.window,
        hint=scenario.hint,
        token_headers=scenario.token_headers,
        other_consumers=scenario.other_consumers,
        faults=scenario.faults,
        latency=scenario.latency,
        **timing,
    )


def _row(
    scenario: Scenario,
    contender: Contender,
    mock: MockBitbucket,
    result: ImportResult,
    *,
    workers: int,
    clock: str,
) -> Row:
    return _row_of(
        scenario,
        mock,
        result.state,
        policy=contender.name,
        mode=contender.mode,
        seconds=result.seconds,
        latencies=result.latencies,
        give_ups=result.give_ups,
        workers=workers,
        clock=clock,
    )


def _row_of(
    scenario: Scenario,
    mock: MockBitbucket,
    state: ImportState,
    *,
    policy: str,
    mode: str,
    seconds: float,
    latencies: Sequence[float],
    give_ups: int,
    workers: int,
    clock: str,
) -> Row:
    needed = mock.dataset.requests_needed(PAGELEN)
    expected = mock.dataset.expected()
    bound = attrs.evolve(scenario, workers=workers).lower_bound(needed)
    counters = mock.counters
    return Row(
        scenario=scenario.name,
        policy=policy,
        mode=mode,
        workers=workers,
        # No bound (no rate limit, no latency) or no quota: the ratio means nothing.
        time_ratio=seconds / bound if 0 < bound < math.inf else math.inf,
        seconds=seconds,
        lower_bound=bound,
        calls=counters.calls,
        rate_limited=counters.rate_limited,
        # Calls that delivered nothing new: 429s, faults, and repeats of calls
        # already counted as needed (a retried diff repeats its redirect).
        wasted=(counters.calls - min(counters.ok, needed)) / needed,
        calls_needed=needed,
        lost=state.lost(expected),
        duplicates=state.duplicates(),
        items=sum(len(keys) for keys in expected.values()),
        give_ups=give_ups,
        p99_request=_percentile(latencies, 0.99),
        longest_request=max(latencies, default=0.0),
        outage_calls=counters.outage_calls,
        clock=clock,
    )


def run_one(
    scenario: Scenario,
    contender: Contender,
    seed: int,
    workers: int | None = None,
    *,
    scale: float = 1.0,
) -> Row:
    """Import the scenario's dataset once with one contender, on virtual time.

    Args:
        scenario: how the API behaves.
        contender: who imports.
        seed: seeds the dataset, the faults and every random source.
        workers: overrides the scenario's worker count.
        scale: multiplies the window, the latency, the faults' times and
            every policy's time settings (to mirror a scaled-down real-time
            run).

    Returns:
        The row for the table.
    """
    workers = workers or scenario.workers
    scenario = scenario.scaled(scale)
    # Peers draw their jitter from the global random source; seeding it makes
    # their runs repeatable too.
    random.seed(seed)
    clock = VirtualClock()
    if contender.mode == "sync":
        threads = VirtualThreads(clock)
        mock = _mock_for(scenario, seed, clock=clock.monotonic, now=clock.time, sleep=threads.sleep)
        arena = Arena(
            mock=mock,
            base_url=BASE_URL,
            seed=seed,
            scale=scale,
            clock=clock,
            threads=threads,
            transport=mock.transport(),
            configured_limit=_configured_limit(scenario),
        )
        fetcher = _as_sync(contender.build(arena))
        with contender.patched(arena):
            result = import_sync(fetcher, workers, clock.monotonic, threads)
    else:
        mock = _mock_for(scenario, seed, clock=clock.monotonic, now=clock.time)
        arena = Arena(
            mock=mock,
            base_url=BASE_URL,
            seed=seed,
            scale=scale,
            clock=clock,
            transport=mock.async_transport(),
            configured_limit=_configured_limit(scenario),
        )

        async def main() -> ImportResult:
            fetcher = _as_async(contender.build(arena))
            return await import_async(fetcher, workers, clock.monotonic)

        with contender.patched(arena):
            result = run_virtual(main(), clock)
    return _row(scenario, contender, mock, result, workers=workers, clock="virtual")


def _configured_limit(scenario: Scenario) -> int | None:
    """The limit the scenario tells the clients, if it tells them one."""
    return scenario.limit if scenario.configured_limit else None


def _as_sync(fetcher: AsyncFetcher | SyncFetcher) -> SyncFetcher:
    return fetcher  # type: ignore[return-value]


def _as_async(fetcher: AsyncFetcher | SyncFetcher) -> AsyncFetcher:
    return fetcher  # type: ignore[return-value]


def _run_job(job: tuple[Scenario, str, int, int | None]) -> Row:
    scenario, name, seed, workers = job
    return run_one(scenario, contender_named(name), seed, workers)


def available_contenders() -> list[Contender]:
    """The contenders whose optional dependencies are installed."""
    return [contender for contender in CONTENDERS if contender.available()]


MAX_PROCESSES: Final = 64
"""Worker processes :func:`run_all` starts at most (an interpreter each)."""


def run_all(
    scenarios: Sequence[Scenario],
    contenders: Sequence[Contender],
    *,
    seed: int,
    workers: int | None = None,
    processes: int = 1,
    progress: Callable[[Row], object] = lambda _row: None,
) -> list[Row]:
    """Every contender in every scenario, in table order.

    Args:
        scenarios: the scenarios.
        contenders: the contenders.
        seed: seeds every run.
        workers: overrides every scenario's worker count.
        processes: worker processes (1 runs in this process); no more are
            started than there are runs, and at most ``MAX_PROCESSES``.
        progress: called with each row as it completes.

    Raises:
        ValueError: ``processes`` is not an int from 1 to ``MAX_PROCESSES``.
    """
    int_up_to("processes", processes, MAX_PROCESSES)
    jobs = [(scenario, c.name, seed, workers) for scenario in scenarios for c in contenders]
    # An interpreter per process: none beyond the runs there are to share.
    processes = min(processes, len(jobs))
    rows: list[Row] = []
    if processes <= 1:
        for job in jobs:
            rows.append(_run_job(job))
            progress(rows[-1])
        return rows
    with multiprocessing.get_context("spawn").Pool(processes, _ignore_interrupts) as pool:
        for row in pool.imap(_run_job, jobs):
            rows.append(row)
            progress(row)
    return rows


# -- real time ------------------------------------------------------------------------


def run_real(
    scenario: Scenario, contender: Contender, seed: int, scale: float, workers: int | None = None
) -> Row:
    """The same import against the mock served by uvicorn, in real time (async contenders).

    The scenario's window and every policy's time settings are multiplied by
    ``scale``, so an hour-long window takes ``3600 * scale`` real seconds.

    Raises:
        ValueError: for a sync contender (threads on real time are not measured).
    """
    if contender.mode != "async":
        raise ValueError(f"{contender.name} is sync; --real measures the async contenders")
    workers = workers or scenario.workers
    random.seed(seed)
    # Real requests take real time already: no simulated latency.
    scaled = attrs.evolve(scenario.scaled(scale), latency=0.0)
    with _served_arena(scaled, seed, scale) as arena:
        mock = arena.mock
        result = asyncio.run(
            import_async(_as_async(contender.build(arena)), workers, default_clock)
        )
    return _row(scaled, contender, mock, result, workers=workers, clock="real")


@contextlib.contextmanager
def _served_arena(scenario: Scenario, seed: int, scale: float) -> Iterator[Arena]:
    """The scenario's mock served by uvicorn on a free port, as contenders see it."""
    mock = _mock_for(scenario, seed)
    with serve_mock(mock) as base_url:
        yield Arena(
            mock=mock,
            base_url=base_url,
            seed=seed,
            scale=scale,
            configured_limit=_configured_limit(scenario),
        )


# -- a fleet of importer processes -------------------------------------------------------
#
# Theory of operation.  One served mock, one token, N importer processes of W
# async workers each.  The import's tasks travel through one queue shared by
# the processes (the fleet's job queue): the parent puts the first tasks,
# and whoever fetches a page puts the tasks it leads to, so the repositories,
# pull requests and issues are split between the processes as they are
# found, the way a fleet of job workers splits an import.  Only the account
# gate's store differs between the two imports of a run: one model in Redis
# for every process, or one in each process's memory.  The processes are
# started once and import both times; the clock runs from the first task put
# to the last task done, so starting Python is not counted.  With a stagger,
# process i joins i staggers after that start: a fleet whose processes come
# and go, where a process's own memory knows nothing of what the others spent.

MAX_IMPORTERS: Final = 64
"""The most importer processes :func:`run_fleet` starts."""
# Seconds for the importer processes to start (or report).
_START_TIMEOUT: Final = 120.0
# Seconds the fleet's Redis has to answer the check before the run.
_REDIS_CHECK_TIMEOUT: Final = 2.0
# Seconds between checks that every importer process still lives.
_LIVENESS_POLL: Final = 0.5
# How the Redis store's warning that it fell back to local state begins.
_FALLBACK_WARNING: Final = "Redis at"


def check_redis(url: str) -> None:
    """Make sure ``url`` is a Redis that answers, before importer processes rely on it.

    The Redis store falls back to each process's memory when Redis does not
    answer, which would turn the shared-gate import into the other one
    without a word: hence this check first.

    Raises:
        RedisUnavailable: redis-py is not installed, or ``url`` does not
            answer PING within 2 s (the message never shows the password).
    """
    try:
        import redis  # noqa: PLC0415 (the optional dependency, only for a fleet run)
    except ImportError:
        raise RedisUnavailable(
            "the redis package is not installed (pip install 'bb-backoff[redis]')"
        ) from None
    try:
        made = sync_client(url, timeout=_REDIS_CHECK_TIMEOUT)
        check_asyncio(url)  # the fleet's importers are async clients
    except UnusableRedisURL as error:
        raise RedisUnavailable(f"{redact_url(url)} is not a usable Redis URL: {error}") from None
    except ValueError:
        # redis-py's message quotes the part of the URL it choked on, which
        # may be a piece of the password: say what to fix instead.
        raise RedisUnavailable(
            f"{redact_url(url)} is not a usable Redis URL (percent-encode a password "
            "holding '/', '?', '#', '&' or '@')"
        ) from None
    try:
        with made as client:
            client.ping()
    except (redis.RedisError, OSError) as error:
        message = scrub(f"{type(error).__name__}: {error}", url_passwords(url), "[redacted]")
        raise RedisUnavailable(f"Redis at {redact_url(url)} does not answer ({message})") from None


@contextlib.contextmanager
def private_redis() -> Iterator[str]:
    """A redis-server of the run's own on a free port of 127.0.0.1, stopped when the block ends.

    It keeps nothing on disk (no snapshots, no append-only file) and runs in
    a temporary directory.

    Yields:
        Its URL, ``redis://127.0.0.1:<port>/0``.

    Raises:
        RedisUnavailable: ``redis-server`` is not on PATH, redis-py is not
            installed, or the server did not answer within 10 s.
    """
    with tempfile.TemporaryDirectory(prefix="bb-backoff-redis-") as directory:
        server = RedisServer(Path(directory))
        server.start()
        try:
            yield server.url
        finally:
            server.stop()


def fleet_label(importers: int, workers: int, *, shared: bool, stagger: float = 0.0) -> str:
    """The policy column of a fleet row: who imported, and where their gates kept the model.

    ``stagger``: seconds between the processes' joins, in the scenario's time.
    """
    gates = "one account gate in Redis" if shared else "an in-memory gate per process"
    joining = f" joining {stagger:g} s apart" if stagger else ""
    return f"bb-backoff, flag on: {importers} processes x {workers} workers{joining}, {gates}"


@attrs.frozen(kw_only=True)
class _Round:
    """What one importer process needs for one import: where, as whom, and how.

    The parent builds the policy and the gate (without its store) as for the
    single-process flag-on row, so the store is the only difference.
    """

    index: int
    base_url: str
    auth: BearerToken
    policy: RetryPolicy
    gate: AccountGate
    # May hold a password: never in a repr.
    redis_url: str | None = attrs.field(repr=False)
    redis_prefix: str
    workers: int
    # Real seconds after the start before this process's workers begin.
    delay: float


@attrs.frozen(kw_only=True)
class _Report:
    """What one importer process brings back from one import."""

    items: dict[str, collections.Counter[tuple[Any, ...]]]
    latencies: list[float]
    give_ups: int
    fallbacks: int


class _FallbackCounter(logging.Handler):
    """Counts the Redis store's warnings that it fell back to this process's memory."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith(_FALLBACK_WARNING):
            self.count += 1


Message = tuple[str, int, Any]
"""What importer processes tell the parent: ``(kind, process index, payload)``."""


def _ignore_interrupts() -> None:
    """In a child process: leave Ctrl-C to the parent, which stops the children.

    A terminal sends SIGINT to the whole process group; each child would
    otherwise print a traceback of its own.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _exit_with_parent() -> None:
    """In a child process: end it when the parent ends, however it ends.

    The parent stops its children itself when it can; killed (SIGKILL, a
    crash), it cannot, and a child blocked on a queue would wait for ever,
    deaf to Ctrl-C (see :func:`_ignore_interrupts`).
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        os._exit(1)

    threading.Thread(target=watch, name="bb-backoff-parent-watch", daemon=True).start()


def _importer_process(
    index: int,
    rounds: ProcessQueue[_Round | float | None],
    tasks: JoinableQueue[Task | None],
    messages: ProcessQueue[Message],
) -> None:
    """One importer process: imports each round it is given, until it is given ``None``."""
    _ignore_interrupts()
    _exit_with_parent()
    try:
        while (given := rounds.get()) is not None:
            assert isinstance(given, _Round)  # noqa: S101 (a start time comes only after ready)
            report = asyncio.run(_import_round(given, rounds, tasks, messages))
            messages.put(("report", index, report))
    except BaseException:
        messages.put(("error", index, traceback.format_exc()))
        raise


async def _import_round(
    given: _Round,
    rounds: ProcessQueue[_Round | float | None],
    tasks: JoinableQueue[Task | None],
    messages: ProcessQueue[Message],
) -> _Report:
    """Import with ``given.workers`` workers from the fleet's queue until each meets a ``None``.

    The workers begin ``given.delay`` seconds after the start the parent
    sends once every process is ready (a monotonic time: one clock for
    every process of the machine).
    """
    store: Any = MemoryStore()
    if given.redis_url is not None:
        from .._redis import RedisStore  # noqa: PLC0415 (redis-py only for the Redis round)

        store = RedisStore(given.redis_url, prefix=given.redis_prefix)
    fallbacks = _FallbackCounter()
    logging.getLogger("bb_backoff").addHandler(fallbacks)
    client = AsyncBitbucketClient(
        auth=given.auth,
        flag=True,
        policy=given.policy,
        legacy_policy=given.policy,
        base_url=given.base_url,
        gate=attrs.evolve(given.gate, store=store),
    )
    state = ImportState()
    latencies: list[float] = []
    give_ups = 0
    loop = asyncio.get_running_loop()
    # The queue is the fleet's, with blocking reads: each worker waits in a thread of its own.
    waiting = concurrent.futures.ThreadPoolExecutor(given.workers, thread_name_prefix="bench-queue")

    async def worker() -> None:
        nonlocal give_ups
        while True:
            task = await loop.run_in_executor(waiting, tasks.get)
            if task is None:
                # Marked done too, so the queue is back to nothing unfinished for the next round.
                tasks.task_done()
                return
            begun = default_clock()
            try:
                if task.kind == "diff":
                    body: Any = await client.get_text(task.url)
                else:
                    body = await client.get(task.url)
            except Exception:  # noqa: BLE001 (a give-up drops the task and its items)
                give_ups += 1
            else:
                # Put before the task is marked done, so the queue is never empty too early.
                for found in state.follow(task, body):
                    tasks.put(found)
            finally:
                latencies.append(default_clock() - begun)
                tasks.task_done()

    messages.put(("ready", given.index, None))
    try:
        started = await loop.run_in_executor(waiting, rounds.get)
        assert isinstance(started, float)  # noqa: S101 (the parent sends the start after ready)
        pause = default_async_sleep(max(0.0, started + given.delay - default_clock()))
        if inspect.isawaitable(pause):
            await pause
        await asyncio.gather(*(worker() for _ in range(given.workers)))
    finally:
        waiting.shutdown(wait=False, cancel_futures=True)
        await client.aclose()
        if given.redis_url is not None:
            await store.aclose()
        logging.getLogger("bb_backoff").removeHandler(fallbacks)
    return _Report(
        items=dict(state.items), latencies=latencies, give_ups=give_ups, fallbacks=fallbacks.count
    )


class _Fleet:
    """The importer processes and the queues between them and this process."""

    def __init__(self, importers: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.tasks: JoinableQueue[Task | None] = context.JoinableQueue()
        self.messages: ProcessQueue[Message] = context.Queue()
        self.rounds: list[ProcessQueue[_Round | float | None]] = [
            context.Queue() for _ in range(importers)
        ]
        self.processes: list[SpawnProcess] = [
            context.Process(
                target=_importer_process,
                args=(index, self.rounds[index], self.tasks, self.messages),
                name=f"bb-backoff-importer-{index}",
                daemon=True,
            )
            for index in range(importers)
        ]
        self.failed = False
        for process in self.processes:
            process.start()

    def import_once(
        self,
        scenario: Scenario,
        *,
        seed: int,
        scale: float,
        workers: int,
        stagger: float,
        redis_url: str | None,
        redis_prefix: str,
    ) -> Row:
        """One import of ``scenario`` (already scaled) by every process; its row.

        ``stagger`` is in the scenario's time: process ``i`` begins
        ``i * stagger * scale`` real seconds after the start.
        """
        importers = len(self.processes)
        with _served_arena(scenario, seed, scale) as arena:
            mock, base_url = arena.mock, arena.base_url
            for index, channel in enumerate(self.rounds):
                # Each process its own jitter, as separate processes have.
                member = attrs.evolve(arena, seed=seed * MAX_IMPORTERS + index)
                gate = _gate(member, enabled=True)
                assert isinstance(gate, AccountGate)  # noqa: S101
                channel.put(
                    _Round(
                        index=index,
                        base_url=base_url,
                        auth=mock.bearer(),
                        policy=_scaled(ExponentialBackoff(seed=member.seed), scale),
                        gate=gate,
                        redis_url=redis_url,
                        redis_prefix=redis_prefix,
                        workers=workers,
                        delay=index * stagger * scale,
                    )
                )
            for _ in range(importers):
                self._receive("ready", _START_TIMEOUT)
            started = default_clock()
            for channel in self.rounds:
                channel.put(started)
            for task in initial_tasks():
                self.tasks.put(task)
            threading.Thread(target=self._await_done, name="bb-backoff-fleet", daemon=True).start()
            _, finished = self._receive("done", None)
            for _ in range(importers * workers):
                self.tasks.put(None)
            reports: list[_Report] = [
                self._receive("report", _START_TIMEOUT)[1] for _ in range(importers)
            ]
        state = ImportState()
        for report in reports:
            for kind, counter in report.items.items():
                state.items[kind].update(counter)
        fallbacks = sum(report.fallbacks for report in reports)
        policy = fleet_label(importers, workers, shared=redis_url is not None, stagger=stagger)
        if fallbacks:
            policy += f" (fell back to local state {fallbacks} times)"
        return _row_of(
            scenario,
            mock,
            state,
            policy=policy,
            mode="async",
            seconds=finished - started,
            latencies=[seconds for report in reports for seconds in report.latencies],
            give_ups=sum(report.give_ups for report in reports),
            workers=importers * workers,
            clock="real",
        )

    def _await_done(self) -> None:
        """Wait for every task to be done, then say when (a thread's work)."""
        self.tasks.join()
        self.messages.put(("done", -1, default_clock()))

    def _receive(self, expected: str, timeout: float | None) -> tuple[int, Any]:
        """The next message, which must be ``expected``; raises if a process failed or died."""
        deadline = None if timeout is None else default_clock() + timeout
        while True:
            try:
                kind, index, payload = self.messages.get(timeout=_LIVENESS_POLL)
            except queue.Empty:
                for process in self.processes:
                    if process.exitcode is not None:
                        self.failed = True
                        raise RuntimeError(
                            f"importer process {process.name} exited with status {process.exitcode}"
                        ) from None
                if deadline is not None and default_clock() > deadline:
                    self.failed = True
                    raise RuntimeError(
                        f"the importer processes did not report {expected!r} within {timeout:g} s"
                    ) from None
                continue
            if kind == "error":
                self.failed = True
                raise RuntimeError(f"importer process {index} failed:\n{payload}")
            if kind != expected:  # pragma: no cover (the protocol's own bug)
                self.failed = True
                raise RuntimeError(f"importer process {index} said {kind!r}, not {expected!r}")
            return index, payload

    def stop(self) -> None:
        """Let the processes end (at once after a failure), and wait for them."""
        if not self.failed:
            for channel in self.rounds:
                channel.put(None)
        for process in self.processes:
            if self.failed:
                process.terminate()
            process.join(timeout=10)
            if process.exitcode is None:
                process.kill()
                process.join()


def _forget(redis_url: str, prefix: str) -> None:
    """Delete the run's keys (they would expire anyway, two windows after their last use)."""
    import redis  # noqa: PLC0415

    with (
        contextlib.suppress(redis.RedisError, OSError),
        sync_client(redis_url, timeout=_REDIS_CHECK_TIMEOUT) as client,
    ):
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)


def run_fleet(
    scenario: Scenario,
    seed: int,
    scale: float,
    *,
    importers: int,
    redis_url: str,
    workers: int | None = None,
    stagger: float = 0.0,
) -> list[Row]:
    """One import by a fleet of importer processes on one token, with and without Redis.

    ``importers`` processes of ``workers`` async workers each (the
    scenario's workers by default), each process with its own
    :class:`~bb_backoff.AsyncBitbucketClient` (flag on, the default policy
    and account gate, as the flag-on row) on the same token, import the
    scenario's dataset from one mock served by uvicorn, on real time, with
    the window and every time setting scaled by ``scale`` as in
    :func:`run_real`.  The processes take the import's tasks from one
    shared queue as they are found.  The import runs twice, each time
    against a fresh mock: first with every process's gate on the Redis at
    ``redis_url`` (one model of the account's window for the fleet; keys
    under a prefix of the run's own, deleted after), then with each
    process's gate in its own memory, as without Redis.

    ``stagger`` (seconds in the scenario's time, scaled like the window)
    spaces the processes' joins: process ``i`` begins ``i * stagger`` after
    the first, and finds the others' sends in the window, which only a
    shared model tells it about.  0 (the default): all at once.

    Returns:
        The two rows, Redis first.  ``workers`` in a row counts every
        worker of the fleet; a row whose processes fell back to local
        state (Redis too slow or down) says so in its ``policy``.

    Raises:
        ValueError: ``importers``, ``workers`` or ``stagger`` out of range, or a dataset
            of more than one page of repositories (each process remembers
            only the workspaces it saw, so members would be listed twice).
        RuntimeError: an importer process failed or died.
    """
    if isinstance(importers, bool) or not isinstance(importers, int):
        raise ValueError(f"importers must be an integer, got {importers!r}")
    if not 1 <= importers <= MAX_IMPORTERS:
        raise ValueError(f"importers must be from 1 to {MAX_IMPORTERS}, got {importers}")
    workers = scenario.workers if workers is None else workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if isinstance(stagger, bool) or not isinstance(stagger, int | float):
        raise ValueError(f"stagger must be seconds (a number), got {stagger!r}")
    if not 0 <= stagger < math.inf:
        raise ValueError(f"stagger must be finite and at least 0 seconds, got {stagger!r}")
    if scenario.size.repositories > PAGELEN:
        raise ValueError(
            f"scenario {scenario.name!r} has {scenario.size.repositories} repositories: a fleet "
            f"run lists at most {PAGELEN} (one page)"
        )
    # Real requests take real time already: no simulated latency.
    scaled = attrs.evolve(scenario.scaled(scale), latency=0.0)
    prefix = f"bb_backoff_bench_{secrets.token_hex(6)}"
    fleet = _Fleet(importers)
    try:
        return [
            fleet.import_once(
                scaled,
                seed=seed,
                scale=scale,
                workers=workers,
                stagger=stagger,
                redis_url=url,
                redis_prefix=prefix,
            )
            for url in (redis_url, None)
        ]
    except BaseException:
        # Interrupted or failed: the processes may be mid-import, stop them at once.
        fleet.failed = True
        raise
    finally:
        fleet.stop()
        _forget(redis_url, prefix)
