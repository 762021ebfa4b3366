"""The ``bb-backoff`` command.

``bench``
    the main job: every policy and its peers import the mock's dataset in the
    default scenarios, on virtual time; prints the table, writes the chart.
``bench --real``
    the same against the mock served by uvicorn, in real time, with the
    window scaled down, beside the virtual results of the same runs.
``schedule``
    the delay schedules of the default, legacy and GitLab policies.
``serve-mock``
    the mock API as a real HTTP server, for manual and integration use.

Bad arguments get a message and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs

from ._policy import (
    GITLAB_16_7,
    ExponentialBackoff,
    FixedRetry,
    Reason,
    RetryPolicy,
    ScheduleRow,
)

if TYPE_CHECKING:
    from ._bench import Row

DEFAULT_RESULTS: Final = Path("benchmarks") / "results"
# bench --real: an hour becomes 3600 * 0.005 = 18 real seconds.
DEFAULT_REAL_SCALE: Final = 0.005
_REAL_CONTENDERS: Final = (
    "bb-backoff, flag on",
    "bb-backoff, flag off (legacy)",
    "GITLAB_16_7 preset",
    "tenacity",
)


# -- schedule -----------------------------------------------------------------------

SCHEDULE_COLUMNS: tuple[tuple[str, RetryPolicy, Reason], ...] = (
    ("flag on, 429 (ExponentialBackoff())", ExponentialBackoff(), Reason.RATE_LIMIT),
    ("flag on, 5xx (ExponentialBackoff())", ExponentialBackoff(), Reason.SERVER_ERROR),
    ("flag off (FixedRetry())", FixedRetry(), Reason.RATE_LIMIT),
    ("GITLAB_16_7", GITLAB_16_7, Reason.RATE_LIMIT),
)


def _spread(row: ScheduleRow) -> str:
    return f"{row.low:.3g} / {row.median:.3g} / {row.high:.3g}"


def schedule_table(retries: int = 10) -> str:
    """The default, legacy and GitLab schedules side by side, as a markdown table.

    Each cell is ``low / median / high`` seconds for that wait, without
    server hints; "gave up" means the policy has stopped by then.
    """
    columns = [policy.schedule(retries, reason=reason) for _, policy, reason in SCHEDULE_COLUMNS]
    lines = [
        "| wait | " + " | ".join(title for title, _, _ in SCHEDULE_COLUMNS) + " |",
        "|---:|" + "---|" * len(SCHEDULE_COLUMNS),
    ]
    for index in range(max(len(rows) for rows in columns)):
        cells = [_spread(rows[index]) if index < len(rows) else "gave up" for rows in columns]
        lines.append(f"| {index + 1} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _schedule(args: argparse.Namespace) -> int:
    print("Waits in seconds (low / median / high) when the server sends no hint:\n")
    print(schedule_table(args.retries))
    return 0


# -- bench ---------------------------------------------------------------------------


def _progress(total: int, *, quiet: bool) -> tuple[Callable[[Row], object], Callable[[], None]]:
    """A progress bar on stderr (tqdm when installed), and its closer."""
    if quiet:
        return (lambda _row: None, lambda: None)
    try:
        from tqdm import tqdm  # noqa: PLC0415 (optional: the bench extra)
    except ImportError:
        done = 0

        def step(row: Row) -> None:
            nonlocal done
            done += 1
            print(f"[{done}/{total}] {row.scenario}: {row.policy}", file=sys.stderr)

        return (step, lambda: None)
    bar = tqdm(total=total, unit="run", file=sys.stderr, dynamic_ncols=True)

    def advance(row: Row) -> None:
        bar.set_postfix_str(f"{row.scenario}: {row.policy}", refresh=False)
        bar.update()

    return (advance, bar.close)


def _bench(args: argparse.Namespace) -> int:
    from . import _bench as bench  # noqa: PLC0415 (the mock and peers load only for bench)

    scenarios = [bench.scenario_named(name) for name in args.scenario] or list(bench.SCENARIOS)
    if args.quick:
        scenarios = [scenario.quick() for scenario in scenarios]
    if args.real:
        return _bench_real(args, bench, scenarios)
    contenders = bench.available_contenders()
    missing = [c.name for c in bench.CONTENDERS if c not in contenders]
    if missing:
        print(
            "not installed, skipped: " + ", ".join(missing) + " (pip install 'bb-backoff[bench]')",
            file=sys.stderr,
        )
    step, close = _progress(len(scenarios) * len(contenders), quiet=args.json)
    try:
        rows = bench.run_all(
            scenarios,
            contenders,
            seed=args.seed,
            workers=args.workers,
            processes=args.processes,
            progress=step,
        )
    finally:
        close()
    if args.json:
        print(bench.json_rows(rows))
        return 0
    table = bench.markdown_table(rows)
    print(table)
    output: Path = args.output
    output.mkdir(parents=True, exist_ok=True)
    (output / "table.md").write_text(table + "\n", encoding="utf-8")
    try:
        chart = bench.write_chart(rows, output / "chart.png")
    except ImportError:
        print("\nmatplotlib is not installed: no chart (pip install 'bb-backoff[bench]')")
    else:
        print(f"\nwrote {output / 'table.md'} and {chart}")
    return 0


def _bench_real(args: argparse.Namespace, bench: Any, scenarios: list[Any]) -> int:
    """The same imports against the uvicorn-served mock, on real time, next to virtual runs."""
    try:
        import uvicorn  # noqa: F401, PLC0415 (checked here for a clear message)
    except ImportError:
        print("bench --real needs uvicorn: pip install 'bb-backoff[mock]'", file=sys.stderr)
        return 1
    if not args.scenario:
        scenarios = [bench.scenario_named("no-hint")]
        if args.quick:
            scenarios = [scenario.quick() for scenario in scenarios]
    contenders = [
        c for c in bench.available_contenders() if c.name in _REAL_CONTENDERS and c.mode == "async"
    ]
    jobs = [(s, c) for s in scenarios for c in contenders]
    seconds = max(s.window for s in scenarios) * args.scale
    print(
        f"Real time against uvicorn on 127.0.0.1, windows scaled by {args.scale:g} "
        f"({seconds:g} s for an hour); {len(jobs)} imports side by side, then the same on virtual "
        "time.",
        file=sys.stderr,
    )
    real: list[Row | None] = [None] * len(jobs)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        scenario, contender = jobs[index]
        try:
            real[index] = bench.run_real(scenario, contender, args.seed, args.scale, args.workers)
        except BaseException as error:  # noqa: BLE001 (reported below, after the others finish)
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    # The virtual twins run at the same scale (with the real run's near-zero
    # latency), so every column compares, not only the ratios.
    virtual = [
        bench.run_one(attrs.evolve(s, latency=0.0), c, args.seed, args.workers, scale=args.scale)
        for s, c in jobs
    ]
    rows = [
        attrs.evolve(row, policy=f"{row.policy} ({row.clock})")
        for pair in zip(real, virtual, strict=True)
        for row in pair
        if row is not None
    ]
    if args.json:
        print(bench.json_rows(rows))
    else:
        print(bench.markdown_table(rows))
    return 0


# -- serve-mock ----------------------------------------------------------------------


def _serve_mock(args: argparse.Namespace) -> int:
    try:
        import uvicorn  # noqa: F401, PLC0415 (checked here for a clear message)
    except ImportError:
        print("serve-mock needs uvicorn: pip install 'bb-backoff[mock]'", file=sys.stderr)
        return 1
    from .testing import MockBitbucket, serve_mock  # noqa: PLC0415

    mock = MockBitbucket(seed=args.seed, limit=args.limit, window=args.window, hint=args.hint)
    with serve_mock(mock, host=args.host, port=args.port) as base_url:
        print(f"base_url: {base_url}")
        print(f"token: {mock.access_token}")
        print(f"basic: {mock.email} {mock.api_token}")
        print(
            f"rate limit: {args.limit} requests per {args.window:g} s (rolling), "
            f"429 hint: {args.hint}; Ctrl-C stops",
            flush=True,
        )
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("stopped", file=sys.stderr)
    return 0


# -- the parser -------------------------------------------------------------------------


def _number(kind: type[int | float], *, minimum: float = 0, inclusive: bool = False) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if math.isnan(value) or value < minimum or (value == minimum and not inclusive):
            bound = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value

    return parse


def _scenario_name(text: str) -> str:
    from ._bench._scenarios import scenario_named  # noqa: PLC0415

    try:
        scenario_named(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(
        prog="bb-backoff",
        description="A flag-aware Bitbucket Cloud client with backoff, its mock and benchmark.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    positive_int = _number(int)
    positive = _number(float)

    bench = commands.add_parser(
        "bench", help="benchmark every policy and its peers on the mock API (virtual time)"
    )
    bench.add_argument(
        "--scenario",
        action="append",
        default=[],
        type=_scenario_name,
        metavar="NAME",
        help="run only this scenario (repeatable; default: all)",
    )
    bench.add_argument("--workers", type=positive_int, help="override every scenario's workers")
    bench.add_argument("--seed", type=_number(int, inclusive=True), default=0, help="default: 0")
    bench.add_argument("--json", action="store_true", help="print the rows as JSON, nothing else")
    bench.add_argument(
        "--quick", action="store_true", help="a twentieth of the dataset and quota (seconds)"
    )
    bench.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_RESULTS,
        help=f"where table.md and chart.png go (default: {DEFAULT_RESULTS})",
    )
    bench.add_argument(
        "--processes",
        type=positive_int,
        default=min(2, os.cpu_count() or 1),
        help="worker processes (default: up to 2)",
    )
    bench.add_argument(
        "--real", action="store_true", help="against the uvicorn-served mock on real time"
    )
    bench.add_argument(
        "--scale",
        type=positive,
        default=DEFAULT_REAL_SCALE,
        help=f"--real: time scale, an hour becomes 3600 * SCALE s (default: {DEFAULT_REAL_SCALE})",
    )
    bench.set_defaults(run=_bench)

    schedule = commands.add_parser("schedule", help="print the delay schedules of the policies")
    schedule.add_argument("--retries", type=positive_int, default=10, help="default: 10")
    schedule.set_defaults(run=_schedule)

    serve = commands.add_parser("serve-mock", help="run the mock API as an HTTP server")
    serve.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    serve.add_argument(
        "--port", type=_number(int, inclusive=True), default=0, help="default: a free port"
    )
    serve.add_argument("--limit", type=positive_int, default=1000, help="requests per window")
    serve.add_argument("--window", type=positive, default=3600.0, help="seconds (default: 3600)")
    serve.add_argument(
        "--hint",
        choices=["none", "retry-after", "retry-after-date", "reset"],
        default="none",
        help="how 429s say when to come back (default: none, like Bitbucket)",
    )
    serve.add_argument("--seed", type=_number(int, inclusive=True), default=0, help="dataset seed")
    serve.set_defaults(run=_serve_mock)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "port", 0) > 65535:  # noqa: PLR2004
        parser.error(f"argument --port: must be at most 65535, got {args.port}")
    return int(args.run(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
