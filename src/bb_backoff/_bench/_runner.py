"""Running the benchmark: one import per scenario and contender, on virtual time.

Each run builds a fresh mock and a fresh virtual clock from the seed, so a
row depends on nothing but (scenario, contender, seed, workers); runs are
spread over worker processes and come back in order.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import random
from collections.abc import Callable, Sequence
from typing import Any, Final

import attrs

from .._timing import default_clock
from ..testing import MockBitbucket, VirtualClock, VirtualThreads, run_virtual, serve_mock
from ._contenders import CONTENDERS, Arena, Contender, contender_named
from ._importer import PAGELEN, AsyncFetcher, ImportResult, SyncFetcher, import_async, import_sync
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
    needed = mock.dataset.requests_needed(PAGELEN)
    expected = mock.dataset.expected()
    bound = attrs.evolve(scenario, workers=workers).lower_bound(needed)
    counters = mock.counters
    return Row(
        scenario=scenario.name,
        policy=contender.name,
        mode=contender.mode,
        workers=workers,
        # No bound (no rate limit, no latency) or no quota: the ratio means nothing.
        time_ratio=result.seconds / bound if 0 < bound < math.inf else math.inf,
        seconds=result.seconds,
        lower_bound=bound,
        calls=counters.calls,
        rate_limited=counters.rate_limited,
        # Calls that delivered nothing new: 429s, faults, and repeats of calls
        # already counted as needed (a retried diff repeats its redirect).
        wasted=(counters.calls - min(counters.ok, needed)) / needed,
        calls_needed=needed,
        lost=result.state.lost(expected),
        duplicates=result.state.duplicates(),
        items=sum(len(keys) for keys in expected.values()),
        give_ups=result.give_ups,
        p99_request=_percentile(result.latencies, 0.99),
        longest_request=max(result.latencies, default=0.0),
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
        processes: worker processes (1 runs in this process).
        progress: called with each row as it completes.
    """
    jobs = [(scenario, c.name, seed, workers) for scenario in scenarios for c in contenders]
    rows: list[Row] = []
    if processes <= 1:
        for job in jobs:
            rows.append(_run_job(job))
            progress(rows[-1])
        return rows
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
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
    mock = _mock_for(scaled, seed)
    with serve_mock(mock) as base_url:
        arena = Arena(
            mock=mock,
            base_url=base_url,
            seed=seed,
            scale=scale,
            configured_limit=_configured_limit(scaled),
        )
        result = asyncio.run(
            import_async(_as_async(contender.build(arena)), workers, default_clock)
        )
    return _row(scaled, contender, mock, result, workers=workers, clock="real")
