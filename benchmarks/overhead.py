"""Success-path overhead of the clients over bare httpx, measured side by side.

Every variant sends the same GET to the same in-process transport and parses
the JSON body, so the difference is what the wrapper adds: the flag check,
the status check, the origin guard, and (flag on, by default) the account
gate in memory.  Rounds of the variants are interleaved,
so a noisy neighbour slows them all alike; the figure per variant is the
median over rounds of the mean time per request.

Run: ``python benchmarks/overhead.py [--requests N] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
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


def report(title: str, results: dict[str, float]) -> None:
    """Print one table; the first variant is the baseline."""
    baseline_name, baseline = next(iter(results.items()))
    print(f"\n{title} (median of rounds, microseconds per request)")
    print(f"{'variant':48} {'us/req':>8} {'+us':>7} {'ratio':>6}")
    for name, seconds in results.items():
        extra = (seconds - baseline) * 1e6
        marker = "" if name != baseline_name else "  (baseline)"
        print(f"{name:48} {seconds * 1e6:8.1f} {extra:+7.1f} {seconds / baseline:6.3f}{marker}")


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds")
    args = parser.parse_args()
    if args.requests < 1 or args.rounds < 1:
        parser.error("--requests and --rounds must be positive")
    report("async", asyncio.run(measure_async(args.requests, args.rounds)))
    report("sync", measure_sync(args.requests, args.rounds))


if __name__ == "__main__":
    main()
