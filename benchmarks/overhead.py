"""Success-path overhead of the clients over bare httpx, measured side by side.

Every variant sends the same GET to the same in-process transport and parses
the JSON body, so the difference is what the wrapper adds: the flag check,
the status check, the origin guard, and (flag on, by default) the account
gate in memory.  The clients keep no cookies (see ``NoCookies``), which
spares them httpx's cookie work on every response; the second row, bare
httpx with that same jar, compares like with like.  A third table, pages,
walks a listing by its absolute ``next`` links, one page per call: the
clients' ``pages`` against the loop a careful user writes over bare httpx;
there the clients also check every link (origin, loops) and record each
page.  Rounds of the variants are interleaved,
so a noisy neighbour slows them all alike; the figure per variant is the
median over rounds of the mean time per request.

Where a process's objects land in memory moves its figures by a microsecond
or two from one run to the next, so the measurement runs in several fresh
processes (``--processes``, 5 by default) and reports, per variant, the
median over processes of the extra time over the baseline, with the lowest
and highest beside it.

Timing on a shared machine moves with its neighbours.  ``--callgrind``
counts instead: each variant runs under valgrind's callgrind, which gives
the instructions per request and the misses of a simulated first-level
instruction cache, whatever else the machine does: the sync rows repeat to
the instruction, the async ones within a few hundred (the event loop reads
the clock).  It takes minutes, and valgrind.  On these machines the extra
time follows the misses more than the instructions.

Run: ``python benchmarks/overhead.py [--requests N] [--rounds N] [--processes N]``
or ``python benchmarks/overhead.py --callgrind``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import httpx
import tenacity

import bb_backoff as bb
from bb_backoff._client import NoCookies

URL = "https://api.bitbucket.org/2.0/user"
BODY = b'{"username": "ada", "account_id": "1234"}'
WARM_UP = 200
"""Requests each variant makes before it is measured."""
# callgrind's summary line: instructions, data reads and writes, then the
# first-level instruction cache's read misses, ...
COLLECTED = re.compile(r"Collected : (\d+) \d+ \d+ (\d+)")


def handler(_request: httpx.Request) -> httpx.Response:
    """The in-process server: a small JSON body, like ``/user``."""
    return httpx.Response(200, content=BODY, headers={"Content-Type": "application/json"})


LISTING = "https://api.bitbucket.org/2.0/repositories/ada"
LISTING_PAGES = 1000
"""Pages in the listing; a walk that reaches the end starts again from the first."""


def listing_handler(request: httpx.Request) -> httpx.Response:
    """The listing: one item a page, and an absolute ``next`` link up to the last page."""
    page = int(request.url.params.get("page", "1"))
    data: dict[str, object] = {"values": [{"slug": f"r{page}"}], "page": page}
    if page < LISTING_PAGES:
        data["next"] = f"{LISTING}?page={page + 1}"
    return httpx.Response(
        200, content=json.dumps(data).encode(), headers={"Content-Type": "application/json"}
    )


def endless(walk: Callable[[], Iterator[object]]) -> Callable[[], object]:
    """One page of the listing a call, walked again from its start after its last page."""

    def again() -> Iterator[object]:
        while True:
            yield from walk()

    return again().__next__


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


@contextlib.asynccontextmanager
async def async_variants() -> AsyncIterator[dict[str, Callable[[], Awaitable[object]]]]:
    """The async variants, by name; the first is the baseline."""
    transport = httpx.MockTransport(handler)
    retrying = tenacity.AsyncRetrying(stop=tenacity.stop_after_attempt(3))
    async with (
        httpx.AsyncClient(transport=transport) as bare,
        httpx.AsyncClient(transport=transport, cookies=NoCookies()) as cookieless,
        bb.AsyncBitbucketClient(transport=transport) as ours,
        bb.AsyncBitbucketClient(transport=transport, gate=False) as ungated,
        bb.AsyncBitbucketClient(transport=transport, flag=bb.FlipperFlag()) as off,
    ):

        async def bare_get() -> object:
            return (await bare.get(URL)).json()

        async def tenacity_get() -> object:
            async for attempt in retrying:
                with attempt:
                    return (await bare.get(URL)).json()
            return None  # pragma: no cover (tenacity either returns or raises)

        async def cookieless_get() -> object:
            return (await cookieless.get(URL)).json()

        yield {
            "httpx.AsyncClient.get + json": bare_get,
            "httpx.AsyncClient.get + json, no cookie jar (as ours)": cookieless_get,
            "AsyncBitbucketClient.get (flag on, memory gate)": lambda: ours.get("/user"),
            "AsyncBitbucketClient.get (flag on, gate=False)": lambda: ungated.get("/user"),
            "AsyncBitbucketClient.get (FlipperFlag off)": lambda: off.get("/user"),
            "tenacity AsyncRetrying around httpx": tenacity_get,
        }


@contextlib.contextmanager
def sync_variants() -> Iterator[dict[str, Callable[[], object]]]:
    """The sync variants, by name; the first is the baseline."""
    transport = httpx.MockTransport(handler)
    with (
        httpx.Client(transport=transport) as bare,
        httpx.Client(transport=transport, cookies=NoCookies()) as cookieless,
        bb.BitbucketClient(transport=transport) as ours,
        bb.BitbucketClient(transport=transport, gate=False) as ungated,
    ):
        yield {
            "httpx.Client.get + json": lambda: bare.get(URL).json(),
            "httpx.Client.get + json, no cookie jar (as ours)": lambda: cookieless.get(URL).json(),
            "BitbucketClient.get (flag on, memory gate)": lambda: ours.get("/user"),
            "BitbucketClient.get (flag on, gate=False)": lambda: ungated.get("/user"),
        }


@contextlib.contextmanager
def pages_variants() -> Iterator[dict[str, Callable[[], object]]]:
    """The listing variants, by name: each call reads one more page; the first is the baseline.

    What an importer does most: follow ``next`` links.  The baseline is the
    loop a careful user writes over bare httpx; the clients' ``pages`` also
    check every link (origin, loops) and record each page.
    """
    transport = httpx.MockTransport(listing_handler)

    with (
        httpx.Client(transport=transport) as bare,
        bb.BitbucketClient(transport=transport) as ours,
        bb.BitbucketClient(transport=transport, gate=False) as ungated,
    ):

        def bare_pages() -> Iterator[object]:
            url: str | None = LISTING
            while url is not None:
                data = bare.get(url).json()
                yield data["values"]
                url = data.get("next")

        def pages_of(client: bb.BitbucketClient) -> Callable[[], Iterator[object]]:
            return lambda: (page.values for page in client.pages("/repositories/ada"))

        yield {
            "httpx.Client.get + json, following next": endless(bare_pages),
            "BitbucketClient.pages (flag on, memory gate)": endless(pages_of(ours)),
            "BitbucketClient.pages (flag on, gate=False)": endless(pages_of(ungated)),
        }


async def measure_async(requests: int, rounds: int) -> dict[str, float]:
    """Median seconds per request of each async variant."""
    async with async_variants() as variants:
        samples: dict[str, list[float]] = {name: [] for name in variants}
        for call in variants.values():  # warm up
            await timed(call, WARM_UP)
        for _ in range(rounds):
            for name, call in variants.items():
                samples[name].append(await timed(call, requests))
    return {name: statistics.median(values) for name, values in samples.items()}


SyncVariants = Callable[[], contextlib.AbstractContextManager[dict[str, Callable[[], object]]]]
SYNC_KINDS: dict[str, SyncVariants] = {"sync": sync_variants, "pages": pages_variants}
"""The kinds of variant run without an event loop: requests, and pages of a listing."""
KINDS = ("async", *SYNC_KINDS)


def measure_sync(requests: int, rounds: int, kind: str = "sync") -> dict[str, float]:
    """Median seconds per request of each variant of a sync kind (per page, for pages)."""
    with SYNC_KINDS[kind]() as variants:
        samples: dict[str, list[float]] = {name: [] for name in variants}
        for call in variants.values():
            timed_sync(call, WARM_UP)
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
    """One process's medians, of every kind."""
    return {
        "async": asyncio.run(measure_async(requests, rounds)),
        **{kind: measure_sync(requests, rounds, kind) for kind in SYNC_KINDS},
    }


# -- counted, not timed --------------------------------------------------------------


def run_variant(kind: str, name: str, requests: int) -> None:
    """Warm one variant up, then make ``requests`` requests (what callgrind counts)."""
    if kind in SYNC_KINDS:
        with SYNC_KINDS[kind]() as variants:
            timed_sync(variants[name], WARM_UP + requests)
        return

    async def main() -> None:
        async with async_variants() as variants:
            await timed(variants[name], WARM_UP + requests)

    asyncio.run(main())


def counted(kind: str, name: str, requests: int) -> tuple[int, int]:
    """Instructions and simulated instruction-cache misses of a whole run of one variant."""
    command = ["valgrind", "--tool=callgrind", "--cache-sim=yes", "--callgrind-out-file=/dev/null"]
    command += [sys.executable, __file__, "--run", kind, name, "--requests", str(requests)]
    # A fixed hash seed: the same run executes the same instructions.
    environment = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=environment)  # noqa: S603
    found = COLLECTED.search(done.stderr)
    if found is None:
        raise SystemExit(f"no callgrind summary in valgrind's output:\n{done.stderr[-2000:]}")
    return int(found[1]), int(found[2])


def count_requests(requests: int) -> dict[str, dict[str, tuple[float, float]]]:
    """Per request, instructions and instruction-cache misses of every variant.

    Each variant runs twice under callgrind, with ``requests`` and with
    three times as many; the difference divided by the difference in
    requests is one request's share, with start-up and warm-up taken out.
    """
    results: dict[str, dict[str, tuple[float, float]]] = {}
    names = {}
    for kind, variants_of in SYNC_KINDS.items():
        with variants_of() as variants:
            names[kind] = list(variants)

    async def async_names() -> list[str]:
        async with async_variants() as variants:
            return list(variants)

    names["async"] = asyncio.run(async_names())
    runs = [(kind, name) for kind in KINDS for name in names[kind]]
    # One valgrind per core: the counts do not depend on what else runs.
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count()) as pool:
        few = pool.map(lambda run: counted(run[0], run[1], requests), runs)
        many = pool.map(lambda run: counted(run[0], run[1], 3 * requests), runs)
        for (kind, name), (few_ir, few_misses), (many_ir, many_misses) in zip(
            runs, few, many, strict=True
        ):
            extra = 2 * requests
            results.setdefault(kind, {})[name] = (
                (many_ir - few_ir) / extra,
                (many_misses - few_misses) / extra,
            )
    return results


def report_counts(title: str, counts: dict[str, tuple[float, float]]) -> None:
    """Print one table of counts; the first variant is the baseline."""
    names = list(counts)
    base_ir, base_misses = counts[names[0]]
    print(f"\n{title} (per request, under callgrind: instructions, first-level I-cache misses)")
    print(f"{'variant':48} {'instr':>9} {'+instr':>8} {'ratio':>6} {'I1 miss':>8} {'+miss':>6}")
    for name in names:
        ir, misses = counts[name]
        marker = "" if name != names[0] else "  (baseline)"
        print(
            f"{name:48} {ir:9.0f} {ir - base_ir:+8.0f} {ir / base_ir:6.3f} "
            f"{misses:8.0f} {misses - base_misses:+6.0f}{marker}"
        )


def main() -> None:
    """Measure in fresh processes, and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--requests",
        type=int,
        help="requests per round (2000); with --callgrind, of the shorter run (1000)",
    )
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds")
    parser.add_argument("--processes", type=int, default=5, help="fresh processes measured")
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="count instructions and instruction-cache misses under valgrind instead of timing",
    )
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--run", nargs=2, metavar=("KIND", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.requests is None:
        args.requests = 1000 if args.callgrind or args.run else 2000
    if args.requests < 1 or args.rounds < 1 or args.processes < 1:
        parser.error("--requests, --rounds and --processes must be positive")
    if args.run:  # one variant's run, under callgrind
        kind, name = args.run
        run_variant(kind, name, args.requests)
        return
    if args.callgrind:
        if shutil.which("valgrind") is None:
            parser.error("--callgrind needs valgrind (Debian's package valgrind)")
        counts = count_requests(args.requests)
        for title in KINDS:
            report_counts(title, counts[title])
        return
    if args.json:  # one process's share of a measurement
        print(json.dumps(measure(args.requests, args.rounds)))
        return
    runs = []
    for _ in range(args.processes):
        command = [sys.executable, __file__, "--json"]
        command += ["--requests", str(args.requests), "--rounds", str(args.rounds)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)  # noqa: S603
        runs.append(json.loads(done.stdout))
    for title in KINDS:
        report(title, [run[title] for run in runs])


if __name__ == "__main__":
    main()
