"""Success-path overhead of the clients over bare httpx, measured side by side.

Every variant sends the same GET to the same in-process transport and parses
the JSON body, so the difference is what the wrapper adds: the flag check,
the status check, the origin guard, and (flag on, by default) the account
gate in memory.  Rounds of the variants are interleaved,
so a noisy neighbour slows them all alike; the figure per variant is the
median over rounds of the mean time per request.

Where a process's objects land in memory moves its figures by a microsecond
or two from one run to the next, so the measurement runs in several fresh
processes (``--processes``, 5 by default) and reports, per variant, the
median over processes of the extra time over the baseline, with the lowest
and highest beside it.

Run: ``python benchmarks/overhead.py [--requests N] [--rounds N] [--processes N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import httpx
import tenacity

import bb_backoff as bb

URL = "https://api.bitbucket.org/2.0/user"
BODY = b'{"username": "ada", "account_id": "1234"}'


def handler(_request: httpx.Request) -> httpx.Response:
    """The in-process server: a small JSON body, like ``/user``."""
    return httpx.Response(200, content=BODY, headers={"Content-Type": "application/json"})


async def timed(call: Callable[[], Awaitable[object]], requests: int) -> float:
    """Mean seconds per call over ``requests`` calls."""
    start = time.perf_counter()
    for _ in range(requests):
        await call()
    return (time.perf_counter() - start) / requests


def timed_sync(call: Callable[[], object], requests: int) -> float:
    """Mean seconds per call over ``requests`` calls."""
    start = time.perf_counter()
    for _ in range(requests):
        call()
    return (time.perf_counter() - start) / requests


async def measure_async(requests: int, rounds: int) -> dict[str, float]:
    """Median seconds per request of each async variant."""
    transport = httpx.MockTransport(handler)
    bare = httpx.AsyncClient(transport=transport)
    ours = bb.AsyncBitbucketClient(transport=transport)
    ours_ungated = bb.AsyncBitbucketClient(transport=transport, gate=False)
    ours_off = bb.AsyncBitbucketClient(transport=transport, flag=bb.FlipperFlag())
    retrying = tenacity.AsyncRetrying(stop=tenacity.stop_after_attempt(3))

    async def bare_get() -> object:
        return (await bare.get(URL)).json()

    async def tenacity_get() -> object:
        async for attempt in retrying:
            with attempt:
                return (await bare.get(URL)).json()
        return None  # pragma: no cover (tenacity either returns or raises)

    variants: dict[str, Callable[[], Awaitable[object]]] = {
        "httpx.AsyncClient.get + json": bare_get,
        "AsyncBitbucketClient.get (flag on, memory gate)": lambda: ours.get("/user"),
        "AsyncBitbucketClient.get (flag on, gate=False)": lambda: ours_ungated.get("/user"),
        "AsyncBitbucketClient.get (FlipperFlag off)": lambda: ours_off.get("/user"),
        "tenacity AsyncRetrying around httpx": tenacity_get,
    }
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for call in variants.values():  # warm up
        await timed(call, 200)
    for _ in range(rounds):
        for name, call in variants.items():
            samples[name].append(await timed(call, requests))
    await bare.aclose()
    await ours.aclose()
    await ours_ungated.aclose()
    await ours_off.aclose()
    return {name: statistics.median(values) for name, values in samples.items()}


def measure_sync(requests: int, rounds: int) -> dict[str, float]:
    """Median seconds per request of each sync variant."""
    transport = httpx.MockTransport(handler)
    with (
        httpx.Client(transport=transport) as bare,
        bb.BitbucketClient(transport=transport) as ours,
        bb.BitbucketClient(transport=transport, gate=False) as ungated,
    ):
        variants: dict[str, Callable[[], object]] = {
            "httpx.Client.get + json": lambda: bare.get(URL).json(),
            "BitbucketClient.get (flag on, memory gate)": lambda: ours.get("/user"),
            "BitbucketClient.get (flag on, gate=False)": lambda: ungated.get("/user"),
        }
        samples: dict[str, list[float]] = {name: [] for name in variants}
        for call in variants.values():
            timed_sync(call, 200)
        for _ in range(rounds):
            for name, call in variants.items():
                samples[name].append(timed_sync(call, requests))
    return {name: statistics.median(values) for name, values in samples.items()}


def report(title: str, runs: list[dict[str, float]]) -> None:
    """Print one table from one result per process; the first variant is the baseline."""
    names = list(runs[0])
    baseline_name = names[0]
    print(f"\n{title} (median over {len(runs)} processes of the median of rounds)")
    print(f"{'variant':48} {'us/req':>8} {'+us':>7} {'ratio':>6}  {'+us lowest..highest':>19}")
    for name in names:
        seconds = statistics.median(run[name] for run in runs)
        extras = sorted((run[name] - run[baseline_name]) * 1e6 for run in runs)
        extra = statistics.median(extras)
        ratio = statistics.median(run[name] / run[baseline_name] for run in runs)
        spread = f"{extras[0]:+.1f}..{extras[-1]:+.1f}"
        marker = "" if name != baseline_name else "  (baseline)"
        print(f"{name:48} {seconds * 1e6:8.1f} {extra:+7.1f} {ratio:6.3f}  {spread:>19}{marker}")


def measure(requests: int, rounds: int) -> dict[str, dict[str, float]]:
    """One process's medians, async and sync."""
    return {
        "async": asyncio.run(measure_async(requests, rounds)),
        "sync": measure_sync(requests, rounds),
    }


def main() -> None:
    """Measure in fresh processes, and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds")
    parser.add_argument("--processes", type=int, default=5, help="fresh processes measured")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.requests < 1 or args.rounds < 1 or args.processes < 1:
        parser.error("--requests, --rounds and --processes must be positive")
    if args.json:  # one process's share of a measurement
        print(json.dumps(measure(args.requests, args.rounds)))
        return
    runs = []
    for _ in range(args.processes):
        command = [sys.executable, __file__, "--json"]
        command += ["--requests", str(args.requests), "--rounds", str(args.rounds)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)  # noqa: S603
        runs.append(json.loads(done.stdout))
    for title in ("async", "sync"):
        report(title, [run[title] for run in runs])


if __name__ == "__main__":
    main()
