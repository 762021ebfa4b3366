"""The ``bb-backoff`` command.

``bench``
    the main job: every policy and its peers import the mock's dataset in the
    default scenarios, on virtual time; prints the table, and writes it with
    a chart where ``--output`` says.  Without ``--output``, only the full
    default run started from the root of this project's checkout writes, to
    ``benchmarks/results/`` (the README's first line); any other run writes
    nothing, so a partial run never rewrites the committed results.
``bench --real``
    the same against the mock served by uvicorn, in real time, with the
    window scaled down, beside the virtual results of the same runs.
``bench --real --importers N``
    one import by N importer processes on one token, their account gates
    sharing one model in Redis, then each keeping its own: what sharing buys.
``schedule``
    the delay schedules of the default, legacy and GitLab policies.
``flag``
    the fleet-wide feature flag in Redis, in Ruby Flipper's layout, as the
    rollout template's chatops sets it: ``flag set NAME 25 --actors``,
    ``flag set NAME true --actor Project:123``, ``flag set NAME false`` (the
    rollback), ``flag get NAME``, ``flag delete NAME``.
``serve-mock``
    the mock API as a real HTTP server, for manual and integration use: its
    rate limit, 429 style, faults and OAuth credentials are options, and it
    logs one line per request on stderr.
``rollout-report``
    the evidence a rollout step asks for: requests, errors, 429s and give-ups
    by flag variant, and whether the error rate increased with the flag on
    (a one-sided two-proportion z-test); from a simulated rollout on the mock
    (``--simulate``) or a deployment's Prometheus metrics (``--metrics``).

Bad arguments get a message and exit status 2, never a traceback.  A closed
pipe (``bb-backoff schedule | head -1``) ends the command quietly with exit
status 1, as Python itself does on a broken pipe, without the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import sys
import textwrap
import threading
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import attrs

from ._exceptions import redact_url
from ._policy import (
    GITLAB_16_7,
    ExponentialBackoff,
    FixedRetry,
    Reason,
    RetryPolicy,
    ScheduleRow,
)
from ._redis_clients import is_redis_url
from ._version import __version__

if TYPE_CHECKING:
    from ._bench import Row
    from .testing import MockBitbucket

DEFAULT_RESULTS: Final = Path("benchmarks") / "results"
"""Where the full default ``bench`` run writes, relative to this project's checkout."""
PROJECT_NAME: Final = "bb-backoff"
# The package this command runs from: .../src/bb_backoff in a checkout.
_PACKAGE_DIR: Final = Path(__file__).resolve().parent
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


# -- flag ----------------------------------------------------------------------------

FLAG_STORE_ENV: Final = "BB_BACKOFF_FLAG_STORE"
"""The environment variable ``flag --store`` defaults to."""


# A percentage as a person types it: ASCII digits, an optional fraction.
# (float() also takes "5_0", "1e1", " 50 ", other scripts' digits and "inf":
# a typo that opens a flag to half the projects must be refused instead.)
_PLAIN_NUMBER: Final = re.compile(r"[0-9]+(?:\.[0-9]+)?|\.[0-9]+")


def _flag_percentage(text: str) -> float | None:
    """``text`` as a percentage 0-100, or ``None`` when it is no plain number in range."""
    if not _PLAIN_NUMBER.fullmatch(text):
        return None
    value = float(text)
    return value if 0 <= value <= 100 else None  # noqa: PLR2004


def _flag_change(args: argparse.Namespace) -> Callable[[Any], Any] | None:
    """What ``flag set`` writes, as a call on the store; ``None`` for get and delete.

    Every bad combination is refused here, before the store is touched.
    """
    if args.flag_command != "set":
        return None
    parser: argparse.ArgumentParser = args.flag_parser
    fail = parser.error
    name, text = args.name, args.value.strip().lower()
    switch = {"true": True, "false": False}.get(text)
    if args.actor is not None:
        # Stripped as VALUE is: " Project:1" (a shell's stray space) would be
        # the field "actors/ Project:1", which no actor ever matches.
        actor = args.actor.strip()
        if not actor:
            fail("--actor takes an actor id like Project:123")
        if switch is None:
            fail(f"--actor takes true or false (on or off for that actor), got {args.value!r}")
        return (
            (lambda store: store.enable_actor(name, actor))
            if switch
            else (lambda store: store.disable_actor(name, actor))
        )
    if args.actors or args.random:
        option, gate = ("--actors", "percentage_of_actors")
        if args.random:
            option, gate = ("--random", "percentage_of_time")
        if switch is not None:
            fail(f"{option} takes a percentage from 0 to 100, not {args.value!r}")
        percentage = _flag_percentage(text)
        if percentage is None:
            fail(f"{option} takes a percentage from 0 to 100, got {args.value!r}")
        return lambda store: store.set_percentage(name, gate, percentage)
    if switch is None:
        if _flag_percentage(text) is not None:
            fail(
                f"a percentage needs --actors (percentage of actors) or --random (percentage "
                f"of time): flag set {name} {args.value} --actors"
            )
        fail(f"VALUE must be true, false or a percentage from 0 to 100, got {args.value!r}")
    return (lambda store: store.enable(name)) if switch else (lambda store: store.disable(name))


def _flag_state(read: Any) -> str:
    """Flipper's summary of a feature: on, off or conditional."""
    if read.boolean or read.percentage_of_time >= 100:  # noqa: PLR2004
        return "on"
    if read.actors or read.percentage_of_actors or read.percentage_of_time or read.unevaluated:
        return "conditional"
    return "off"


def _flag_report(args: argparse.Namespace, store: Any, read: Any, *, known: bool) -> None:
    if args.flag_command == "get" and args.json:
        import json  # noqa: PLC0415 (only this verb prints JSON)

        report = {
            "name": args.name,
            "store": store.description,
            "known": known,
            "state": _flag_state(read),
            "boolean": read.boolean,
            "actors": sorted(read.actors),
            "percentage_of_actors": read.percentage_of_actors,
            "percentage_of_time": read.percentage_of_time,
            "groups": sorted(read.groups),
            "ignored": list(read.ignored),
        }
        print(json.dumps(report, indent=2))
        return
    where = "" if known else f" (not in {store.features_key})"
    print(f"{args.name}: {_flag_state(read)}{where}")
    print(f"  boolean: {'on' if read.boolean else 'off'}")
    print(f"  actors: {', '.join(sorted(read.actors)) or 'none'}")
    print(f"  percentage_of_actors: {read.percentage_of_actors:g}%")
    print(f"  percentage_of_time: {read.percentage_of_time:g}%")
    if read.unevaluated:
        print(f"  not evaluated by bb-backoff: {', '.join(read.unevaluated)}")


def _flag(args: argparse.Namespace) -> int:
    """``flag set|get|delete``: the fleet-wide flag in Redis, as GitLab's chatops set it."""
    parser: argparse.ArgumentParser = args.flag_parser
    url: str | None = args.store or os.environ.get(FLAG_STORE_ENV)
    if not url:
        parser.error(f"no flag store: pass --store URL or set {FLAG_STORE_ENV}")
    change = _flag_change(args)
    try:
        from ._flipper_redis import RedisFlagStore, check_name  # noqa: PLC0415 (optional)
    except ImportError:
        print("bb-backoff flag needs redis-py: pip install 'bb-backoff[redis]'", file=sys.stderr)
        return 1
    from ._flags import FlagStoreError  # noqa: PLC0415

    try:
        check_name(args.name)
        store = RedisFlagStore(url, key_prefix=args.key_prefix)
    except ValueError as error:
        parser.error(str(error))
    try:
        if args.flag_command == "delete":
            known = store.remove(args.name)
            what = "removed from" if known else "was not in"
            print(f"{args.name}: {what} {store.features_key}; its hash is gone")
            return 0
        read = store.read(args.name) if change is None else change(store)
        _flag_report(args, store, read, known=store.is_known(args.name))
    except FlagStoreError as error:
        print(f"bb-backoff flag: {error}", file=sys.stderr)
        return 1
    finally:
        store.close()
    return 0


def _add_flag_command(commands: Any) -> None:
    """Register ``flag`` and its verbs."""
    flag = commands.add_parser(
        "flag",
        help="read or change the fleet-wide feature flag (Redis, in Ruby Flipper's layout)",
        description=(
            "The flag shared by every process (and a Ruby Flipper) through Redis, changed "
            "as GitLab's chatops change it; processes see a change within a second."
        ),
        formatter_class=_HelpFormatter,
    )
    verbs = flag.add_subparsers(dest="flag_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--store", metavar="URL", help=f"the Redis URL (default: ${FLAG_STORE_ENV})"
    )
    common.add_argument(
        "--key-prefix",
        default="",
        metavar="PREFIX",
        help="prefix of every key, as Flipper's key_prefix (default: none)",
    )
    change = verbs.add_parser(
        "set",
        parents=[common],
        help="change a gate: true, false, N --actors, N --random, true|false --actor ID",
        description=(
            "true opens the boolean gate; false is the rollback (every gate closes: the "
            "feature's hash is deleted, its name stays known); N --actors: percentage of "
            "actors; N --random: percentage of time; true|false --actor ID: one actor."
        ),
        formatter_class=_HelpFormatter,
    )
    change.add_argument(
        "name", metavar="NAME", help="the feature, e.g. bitbucket_importer_exponential_backoff"
    )
    change.add_argument("value", metavar="VALUE", help="true, false, or a percentage 0-100")
    how = change.add_mutually_exclusive_group()
    how.add_argument("--actors", action="store_true", help="VALUE is a percentage of actors")
    how.add_argument("--random", action="store_true", help="VALUE is a percentage of time")
    how.add_argument(
        "--actor",
        metavar="ID",
        help="VALUE (true|false) is for this actor only (default: none, VALUE is for everyone)",
    )
    change.set_defaults(run=_flag, flag_parser=change)
    get = verbs.add_parser(
        "get", parents=[common], help="print a feature's gates", formatter_class=_HelpFormatter
    )
    get.add_argument("name", metavar="NAME", help="the feature")
    get.add_argument("--json", action="store_true", help="print them as JSON")
    get.set_defaults(run=_flag, flag_parser=get)
    delete = verbs.add_parser(
        "delete",
        parents=[common],
        help="forget a feature: out of flipper_features, its hash deleted",
        formatter_class=_HelpFormatter,
    )
    delete.add_argument("name", metavar="NAME", help="the feature")
    delete.set_defaults(run=_flag, flag_parser=delete)


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


def is_own_checkout(directory: Path, package: Path | None = None) -> bool:
    """Whether ``directory`` is the root of a bb-backoff checkout whose code this command runs.

    Only such a run may refresh the checkout's committed results: a
    ``bb-backoff`` installed from elsewhere would write another version's
    numbers into it.  ``package``: the running package's directory (this
    one's by default).
    """
    package = _PACKAGE_DIR if package is None else package
    try:
        with (directory / "pyproject.toml").open("rb") as file:
            name = tomllib.load(file).get("project", {}).get("name")
    except (OSError, tomllib.TOMLDecodeError):
        return False
    return name == PROJECT_NAME and (directory / "src" / "bb_backoff").resolve() == package


def is_default_bench(args: argparse.Namespace) -> bool:
    """Whether ``args`` ask for the full default benchmark, the one the committed results show.

    ``--processes`` and ``--scale`` (``--real`` only) do not change the
    rows; every other option does, or prints JSON instead of the table.
    """
    from ._bench._scenarios import SCENARIOS  # noqa: PLC0415

    every = [scenario.name for scenario in SCENARIOS]
    return (
        args.scenario in ([], every)
        and args.workers is None
        and args.seed == 0
        and not args.quick
        and not args.json
        and not args.real
    )


def results_dir(
    args: argparse.Namespace, *, cwd: Path | None = None, package: Path | None = None
) -> Path | None:
    """Where ``bench`` writes ``table.md`` and ``chart.png``, or ``None`` for nowhere.

    ``--output`` when given; else ``benchmarks/results`` for the full default
    run from the root of this project's checkout; else nowhere.
    """
    if args.output is not None:
        return Path(args.output)
    here = Path.cwd() if cwd is None else cwd
    if is_default_bench(args) and is_own_checkout(here, package):
        return DEFAULT_RESULTS
    return None


def _unusable_dir(path: Path) -> str | None:
    """Why files cannot be written into ``path`` (made if missing), or ``None`` when they can.

    Asked before a long run, so that a bad ``--output`` or ``--chart`` is an
    error at once rather than a traceback after the run.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        return f"cannot use {path} as a directory: {error.strerror or error}"
    if not os.access(path, os.W_OK):
        return f"cannot write into {path}"
    return None


def _write_results(rows: Sequence[Row], args: argparse.Namespace, bench: Any) -> None:
    """Write the table and the chart where :func:`results_dir` says, and say where (stderr)."""
    output = results_dir(args)
    if output is None:
        print(
            "wrote no files: pass --output DIR to keep table.md and chart.png (only the full "
            f"default run from the root of a {PROJECT_NAME} checkout refreshes {DEFAULT_RESULTS})",
            file=sys.stderr,
        )
        return
    output.mkdir(parents=True, exist_ok=True)
    table = output / "table.md"
    table.write_text(bench.markdown_table(rows) + "\n", encoding="utf-8")
    try:
        chart = bench.write_chart(rows, output / "chart.png")
    except ImportError:
        print(
            f"wrote {table}; matplotlib is not installed: no chart (pip install "
            "'bb-backoff[bench]')",
            file=sys.stderr,
        )
    else:
        print(f"wrote {table} and {chart}", file=sys.stderr)


def _bench(args: argparse.Namespace) -> int:
    from . import _bench as bench  # noqa: PLC0415 (the mock and peers load only for bench)

    if args.importers is not None and not args.real:
        args.bench_parser.error("--importers needs --real (importer processes run on real time)")
    if args.redis is not None and args.importers is None:
        args.bench_parser.error("--redis needs --importers (only importer processes share it)")
    if args.stagger and args.importers is None:
        args.bench_parser.error("--stagger needs --importers (it spaces importer processes)")
    output = results_dir(args)
    problem = None if output is None else _unusable_dir(output)
    if problem is not None:
        args.bench_parser.error(f"--output: {problem}")

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
    print(bench.json_rows(rows) if args.json else bench.markdown_table(rows))
    _write_results(rows, args, bench)
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
    if args.importers is not None:
        return _bench_fleet(args, bench, scenarios)
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
    print(bench.json_rows(rows) if args.json else bench.markdown_table(rows))
    _write_results(rows, args, bench)
    return 0


def _bench_fleet(args: argparse.Namespace, bench: Any, scenarios: list[Any]) -> int:
    """``--importers``: one import by a fleet of processes, through Redis and without it."""
    with contextlib.ExitStack() as stack:
        try:
            url = args.redis or stack.enter_context(bench.private_redis())
            bench.check_redis(url)
        except bench.RedisUnavailable as error:
            print(
                f"bb-backoff bench: error: --importers needs Redis: {error}; pass --redis URL, "
                "or put redis-server on PATH (apt-get install redis-server) for a private one",
                file=sys.stderr,
            )
            return 2
        workers = args.workers or "/".join(sorted({str(s.workers) for s in scenarios}))
        joining = f", joining {args.stagger:g} s apart (scaled)" if args.stagger else ""
        where = "a private redis-server" if args.redis is None else "the Redis given"
        print(
            f"Real time against uvicorn on 127.0.0.1, windows scaled by {args.scale:g}: "
            f"{args.importers} importer processes x {workers} workers on one token{joining}, "
            f"their gates on {where} ({redact_url(url)}), then each gate in its own process's "
            "memory.",
            file=sys.stderr,
        )
        rows = [
            attrs.evolve(row, policy=f"{row.policy} ({row.clock})")
            for scenario in scenarios
            for row in bench.run_fleet(
                scenario,
                args.seed,
                args.scale,
                importers=args.importers,
                workers=args.workers,
                redis_url=url,
                stagger=args.stagger,
            )
        ]
    print(bench.json_rows(rows) if args.json else bench.markdown_table(rows))
    _write_results(rows, args, bench)
    return 0


# -- serve-mock ----------------------------------------------------------------------


def _served_mock(args: argparse.Namespace) -> MockBitbucket:
    """The mock the ``serve-mock`` options describe.

    Raises:
        ValueError: what the options cannot check one by one (the fault rates' sum).
    """
    from .testing import Faults, MockBitbucket  # noqa: PLC0415

    faults = Faults(
        server_error_rate=args.server_error_rate,
        reset_rate=args.reset_rate,
        timeout_rate=args.timeout_rate,
        slow_rate=args.slow_rate,
        slow_seconds=args.slow_seconds,
        outage_start=args.outage_start,
        outage_seconds=args.outage_seconds,
    )
    return MockBitbucket(
        seed=args.seed,
        limit=args.limit,
        window=args.window,
        hint=args.hint,
        token_headers=args.token_headers,
        json_429=args.json_429,
        faults=faults,
        latency=args.latency,
    )


def _serve_mock(args: argparse.Namespace) -> int:
    try:
        import uvicorn  # noqa: F401, PLC0415 (checked here for a clear message)
    except ImportError:
        print("serve-mock needs uvicorn: pip install 'bb-backoff[mock]'", file=sys.stderr)
        return 1
    from .testing import serve_mock  # noqa: PLC0415

    try:
        mock = _served_mock(args)
    except ValueError as error:
        print(f"bb-backoff serve-mock: error: {error}", file=sys.stderr)
        return 2

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    with contextlib.ExitStack() as stack:
        try:
            base_url = stack.enter_context(
                serve_mock(mock, host=args.host, port=args.port, access_log=log)
            )
        except OSError as error:
            reason = error.strerror or str(error)
            print(
                f"bb-backoff serve-mock: error: cannot listen on {args.host}:{args.port}: {reason}",
                file=sys.stderr,
            )
            return 2
        print(f"base_url: {base_url}")
        print(f"token: {mock.access_token}")
        print(f"basic: {mock.email} {mock.api_token}")
        if args.oauth:
            origin = base_url.removesuffix(urlsplit(mock.base_url).path)
            print(f"oauth client: {mock.client_id} {mock.client_secret}")
            print(f"oauth refresh token: {mock.refresh_token}")
            print(f"oauth token url: {origin}{urlsplit(mock.token_url).path}")
        print(
            f"rate limit: {args.limit} requests per {args.window:g} s (rolling), "
            f"429 hint: {args.hint}; one line per request on stderr; Ctrl-C stops",
            flush=True,
        )
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("stopped", file=sys.stderr)
    return 0


# -- rollout-report -------------------------------------------------------------------

DEFAULT_STEPS: Final = "0,25,50,100"
# The options that only one source uses (``--simulate`` or ``--metrics``).
_SIMULATE_ONLY: Final = ("steps", "projects", "limit", "seed")
_METRICS_ONLY: Final = ("since", "timeout")


def _rollout_report(args: argparse.Namespace) -> int:
    """Print the rollout report; exit 1 when the metrics cannot be read, 2 for bad arguments."""
    import importlib.util  # noqa: PLC0415

    from . import _rollout as rollout  # noqa: PLC0415 (loaded for this command only)

    source, other = (
        ("--simulate", _METRICS_ONLY) if args.simulate else ("--metrics", _SIMULATE_ONLY)
    )
    stray = [f"--{name}" for name in other if getattr(args, name) is not None]
    if stray:
        args.fail(f"{', '.join(stray)} cannot be used with {source}")
    problem = None if args.chart is None else _unusable_dir(Path(args.chart).parent)
    if args.chart is not None and Path(args.chart).is_dir():
        problem = f"{args.chart} is a directory"
    if problem is not None:
        args.fail(f"--chart: {problem}")
    needed = [("matplotlib", "--chart", "bench")] if args.chart is not None else []
    if args.metrics is not None:
        needed.append(("prometheus_client", "--metrics", "prometheus"))
    for module, option, extra in needed:
        if importlib.util.find_spec(module) is None:
            print(
                f"bb-backoff rollout-report: {option} needs {module}: "
                f"pip install 'bb-backoff[{extra}]'",
                file=sys.stderr,
            )
            return 1
    if args.simulate:
        from ._rollout import _simulation  # noqa: PLC0415 (the mock loads only for --simulate)

        simulation = _simulation.Simulation(
            projects=args.projects or _simulation.DEFAULT_PROJECTS,
            limit=args.limit or _simulation.DEFAULT_LIMIT,
            percentages=args.steps or _percentages(DEFAULT_STEPS),
        )
        report = _simulation.simulated_report(simulation, seed=args.seed or 0, alpha=args.alpha)
    else:
        try:
            report = rollout.metrics_report(
                args.metrics,
                since=args.since,
                timeout=args.timeout or rollout.DEFAULT_TIMEOUT,
                alpha=args.alpha,
            )
        except rollout.ExpositionError as error:
            print(f"bb-backoff rollout-report: {error}", file=sys.stderr)
            return 1
    print(rollout.json_report(report) if args.json else rollout.markdown(report))
    if args.chart is not None:
        try:
            rollout.write_chart(report, args.chart)
        except OSError as error:
            print(f"bb-backoff rollout-report: cannot write {args.chart}: {error}", file=sys.stderr)
            return 1
        print(f"wrote {args.chart}", file=sys.stderr)
    return 0


def _add_rollout_report(commands: Any) -> None:
    """Add ``rollout-report`` to the subcommands (an ``argparse`` subparsers action)."""
    positive_int = _number(int)
    rollout = commands.add_parser(
        "rollout-report",
        help="error rates by flag variant, and whether the flag increased them",
        description=(
            "The evidence a rollout step asks for: per step and flag variant, the requests, "
            "errors, 429s, give-ups and (simulated) import times, and a one-sided "
            "two-proportion z-test of 'did the error rate increase with the flag on?' with "
            "its p-value. An error is a logical request (a GET with its retries) whose "
            "outcome is not 'ok'. From a simulated rollout on the mock API (--simulate) or "
            "from a deployment's metrics (--metrics). Exit status 0 with a report, 1 when "
            "the metrics cannot be read, 2 for bad arguments."
        ),
        formatter_class=_HelpFormatter,
    )
    source = rollout.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--simulate",
        action="store_true",
        help=(
            "simulate the rollout: many projects import at once on the mock API (rate limit, "
            "faults, another consumer), at each step's percentage of actors, on virtual time"
        ),
    )
    source.add_argument(
        "--metrics",
        metavar="FILE_OR_URL",
        help=(
            "read a deployment's metrics (PrometheusHook's): a Prometheus exposition file, "
            "- for standard input, or an http(s) URL such as http://host:9090/metrics "
            "(no default: one of --simulate and --metrics is required)"
        ),
    )
    rollout.add_argument(
        "--steps",
        type=_percentages,
        help=(
            f"--simulate: the steps, percent of actors, comma-separated (default: {DEFAULT_STEPS})"
        ),
    )
    rollout.add_argument(
        "--projects",
        type=_number(int, maximum=MAX_SIMULATED_PROJECTS),
        help=(
            "--simulate: projects importing at once, one repository each (default: 40); "
            f"at most {MAX_SIMULATED_PROJECTS:,}"
        ),
    )
    rollout.add_argument(
        "--limit",
        type=positive_int,
        help=(
            "--simulate: the account's requests per rolling hour (default: 1000, Bitbucket's; "
            "lower it for a busy account)"
        ),
    )
    rollout.add_argument(
        "--seed",
        type=_number(int, inclusive=True, maximum=MAX_SEED),
        help="--simulate: seeds the run (default: 0)",
    )
    rollout.add_argument(
        "--since",
        metavar="FILE_OR_URL",
        help=(
            "--metrics: an earlier scrape of the same processes, taken when the step began; "
            "the report covers what happened since (default: the counters' whole life)"
        ),
    )
    rollout.add_argument(
        "--timeout",
        type=_number(float, maximum=MAX_METRICS_TIMEOUT),
        help="--metrics with a URL: seconds to wait for it (default: 10); at most a day",
    )
    rollout.add_argument(
        "--alpha",
        type=_alpha,
        default=0.05,
        help="the significance level: 'INCREASED' when the one-sided p-value is below it",
    )
    rollout.add_argument(
        "--json", action="store_true", help="print the rows and the verdict as JSON, nothing else"
    )
    rollout.add_argument(
        "--chart",
        type=_png,
        metavar="PATH",
        help="write a chart of the report there, a .png (default: no chart, nothing written)",
    )
    rollout.set_defaults(run=_rollout_report, fail=rollout.error)


def _percentages(text: str) -> tuple[float, ...]:
    """``--steps``: comma-separated percentages of actors, each from 0 to 100, each once."""
    steps: list[float] = []
    for part in text.split(","):
        if not _PLAIN_NUMBER.fullmatch(part.strip()):
            raise argparse.ArgumentTypeError(f"{part.strip()!r} is not a number")
        value = float(part)
        if not 0 <= value <= 100:  # noqa: PLR2004 (also refuses NaN)
            raise argparse.ArgumentTypeError(f"a step must be from 0 to 100, got {part.strip()}")
        if value in steps:
            raise argparse.ArgumentTypeError(f"step {value:g} is given twice")
        steps.append(value)
    return tuple(steps)


def _alpha(text: str) -> float:
    """``--alpha``: a significance level above 0 and at most 0.5."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value <= 0.5:  # noqa: PLR2004 (also refuses NaN)
        raise argparse.ArgumentTypeError(f"must be above 0 and at most 0.5, got {text}")
    return value


def _png(text: str) -> Path:
    """``--chart``: a path ending in .png."""
    path = Path(text)
    if path.suffix.lower() != ".png":
        raise argparse.ArgumentTypeError(
            f"the chart is a PNG: the path must end in .png, got {text}"
        )
    return path


def _share(text: str) -> float:
    value: float = _number(float, inclusive=True)(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be a share from 0 to 1, got {text}")
    return value


def _host(text: str) -> str:
    """An address to listen on: not empty (a URL with an empty host is unusable)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def _serve_mock_options(serve: argparse.ArgumentParser) -> None:
    seconds = _number(float, inclusive=True)
    serve.add_argument("--host", type=_host, default="127.0.0.1", help="address to listen on")
    serve.add_argument(
        "--port",
        type=_number(int, inclusive=True, maximum=65535),
        default=0,
        help="port (0: a free one)",
    )
    serve.add_argument("--limit", type=_number(int), default=1000, help="requests per window")
    serve.add_argument(
        "--window", type=_number(float), default=3600.0, help="the window, in seconds"
    )
    serve.add_argument(
        "--hint",
        choices=["none", "retry-after", "retry-after-date", "reset"],
        default="none",
        help="how 429s say when to come back (none is Bitbucket's usual)",
    )
    serve.add_argument(
        "--token-headers",
        action="store_true",
        help="send X-RateLimit-Limit, -Resource and -NearLimit on access-token requests",
    )
    serve.add_argument(
        "--json-429",
        action="store_true",
        help="answer 429 with the JSON error envelope, not Bitbucket's usual plain text",
    )
    serve.add_argument(
        "--oauth",
        action="store_true",
        help="also print the OAuth consumer, its refresh token and the served token URL",
    )
    serve.add_argument(
        "--seed",
        type=_number(int, inclusive=True, maximum=MAX_SEED),
        default=0,
        help="dataset seed",
    )
    serve.add_argument("--latency", type=seconds, default=0.0, help="seconds every answer takes")
    faults = serve.add_argument_group("faults", "drawn per request; the rates sum to at most 1")
    faults.add_argument(
        "--server-error-rate", type=_share, default=0.0, help="share answered 500, 502 or 503"
    )
    faults.add_argument(
        "--reset-rate", type=_share, default=0.0, help="share of connections dropped mid-answer"
    )
    faults.add_argument(
        "--timeout-rate",
        type=_share,
        default=0.0,
        help="share answered only after --slow-seconds (a client's read timeout fires first)",
    )
    faults.add_argument(
        "--slow-rate", type=_share, default=0.0, help="share answered --slow-seconds late"
    )
    faults.add_argument(
        "--slow-seconds", type=seconds, default=10.0, help="how late a slow answer comes"
    )
    faults.add_argument(
        "--outage-start",
        type=seconds,
        default=0.0,
        help="seconds after start when every API request starts getting 503",
    )
    faults.add_argument(
        "--outage-seconds", type=seconds, default=0.0, help="how long the outage lasts (0: none)"
    )


# -- the parser -------------------------------------------------------------------------


def _number(
    kind: type[int | float],
    *,
    minimum: float = 0,
    inclusive: bool = False,
    maximum: float = math.inf,
) -> Any:
    """An argparse type: a finite number above ``minimum`` and at most ``maximum``."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if math.isinf(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if math.isnan(value) or value < minimum or (value == minimum and not inclusive):
            bound = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        if value > maximum:
            # (Past a million in full: 4.29497e+09 says little.)
            bound = f"{maximum:g}" if maximum < 1e6 else f"{maximum:,.0f}"  # noqa: PLR2004
            raise argparse.ArgumentTypeError(f"must be at most {bound}, got {text}")
        return value

    return parse


MAX_SIMULATED_PROJECTS: Final = 1000
"""``rollout-report --simulate --projects`` beyond this is refused: the simulation
keeps every project's import in memory (10**8 took 3.5 GB in 20 s, and grew)."""
MAX_METRICS_TIMEOUT: Final = 86_400.0
"""``rollout-report --timeout`` beyond a day is refused (the socket refuses about 2**63 ns)."""
MAX_SCHEDULE_RETRIES: Final = 1000
"""``schedule --retries`` beyond this is refused: the table would be unreadable anyway."""
MAX_WORKERS: Final = 10_000
MAX_SEED: Final = 2**32 - 1
"""``--seed`` beyond this is refused: the mock takes seeds up to 2**64, and a fleet's
processes seed theirs from ``seed * 64 + i``."""
MAX_IMPORTERS: Final = 64
"""``bench --importers`` beyond this is refused (as the runner does): a process each."""
MAX_PROCESSES: Final = 64
"""``bench --processes`` beyond this is refused: an interpreter each (100,000 hung, leaking
semaphores, until killed); the runner starts no more than there are runs anyway."""


def _redis_url(text: str) -> str:
    """An argparse type: a Redis URL (checked for its scheme here, for an answer later)."""
    if not is_redis_url(text):  # (in any case: schemes are case-insensitive)
        raise argparse.ArgumentTypeError(
            f"must be a redis://, rediss:// or unix:// URL, got {redact_url(text)!r}"
        )
    return text


def _scenario_name(text: str) -> str:
    from ._bench._scenarios import scenario_named  # noqa: PLC0415

    try:
        scenario_named(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every option's default, unless its help already says it in words.

    Flags (no value) and options with no default value explain themselves in
    their help instead of showing ``(default: None)``.  Lines never break
    inside a hyphenated word, so scenario names stay whole.
    """

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or action.nargs == 0 or action.default in (None, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    from ._bench._scenarios import SCENARIOS  # noqa: PLC0415 (names for --help)

    parser = argparse.ArgumentParser(
        prog="bb-backoff",
        description="A flag-aware Bitbucket Cloud client with backoff, its mock and benchmark.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROJECT_NAME} {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    bench = commands.add_parser(
        "bench",
        help="benchmark every policy and its peers on the mock API (virtual time)",
        description=(
            "Every retry policy and its peers import the mock's dataset in each scenario, on "
            "virtual time; prints the table (or JSON rows) and writes the table and a chart "
            "where --output says."
        ),
        formatter_class=_HelpFormatter,
    )
    names = ", ".join(scenario.name for scenario in SCENARIOS)
    bench.add_argument(
        "--scenario",
        action="append",
        default=[],
        type=_scenario_name,
        metavar="NAME",
        help=f"run only this scenario (repeatable; default: all), one of: {names}",
    )
    bench.add_argument(
        "--workers",
        type=_number(int, maximum=MAX_WORKERS),
        help="override every scenario's workers (default: each scenario's own)",
    )
    bench.add_argument(
        "--seed",
        type=_number(int, inclusive=True, maximum=MAX_SEED),
        default=0,
        help="seeds the run",
    )
    bench.add_argument("--json", action="store_true", help="print the rows as JSON, not the table")
    bench.add_argument(
        "--quick", action="store_true", help="a twentieth of the dataset and quota (seconds)"
    )
    bench.add_argument(
        "--output",
        type=Path,
        metavar="DIR",
        help=(
            "where table.md and chart.png go. Default: "
            f"{DEFAULT_RESULTS} for the full default run (every scenario, seed 0, no --workers, "
            f"--quick, --json or --real) started from the root of a {PROJECT_NAME} checkout "
            "running its own code; nowhere otherwise"
        ),
    )
    bench.add_argument(
        "--processes",
        type=_number(int, maximum=MAX_PROCESSES),
        default=min(2, os.cpu_count() or 1),
        help=f"worker processes that share the runs (at most {MAX_PROCESSES}, and no more "
        "than there are runs)",
    )
    bench.add_argument(
        "--real", action="store_true", help="against the uvicorn-served mock on real time"
    )
    bench.add_argument(
        "--scale",
        # At most 1: scaled down, never up (a policy's and the gate's waits
        # are refused past a day: an hour's max_hint of two, scaled by 12).
        type=_number(float, maximum=1.0),
        default=DEFAULT_REAL_SCALE,
        help="--real: time scale, an hour becomes 3600 * SCALE s",
    )
    bench.add_argument(
        "--importers",
        type=_number(int, maximum=MAX_IMPORTERS),
        metavar="N",
        help=(
            "--real: instead of the contenders, N importer processes (--workers each) on one "
            "token import one dataset, their gates first sharing one Redis, then each in its "
            "own memory (default: no such run)"
        ),
    )
    bench.add_argument(
        "--redis",
        type=_redis_url,
        metavar="URL",
        help=(
            "--importers: the Redis their gates share, redis://host:port/db (default: a private "
            "redis-server on a free port, when redis-server is on PATH)"
        ),
    )
    bench.add_argument(
        "--stagger",
        type=_number(float, inclusive=True),
        default=0.0,
        metavar="SECONDS",
        help=(
            "--importers: process i joins i * SECONDS after the first (the scenario's seconds, "
            "scaled like the window); 0 starts them all at once"
        ),
    )
    bench.set_defaults(run=_bench, bench_parser=bench)

    schedule = commands.add_parser(
        "schedule",
        help="print the delay schedules of the policies",
        description="The waits of the default, legacy and GitLab policies, side by side.",
        formatter_class=_HelpFormatter,
    )
    schedule.add_argument(
        "--retries",
        type=_number(int, maximum=MAX_SCHEDULE_RETRIES),
        default=10,
        help="waits to show",
    )
    schedule.set_defaults(run=_schedule)
    _add_flag_command(commands)

    serve = commands.add_parser(
        "serve-mock",
        help="run the mock API as an HTTP server",
        description="The mock Bitbucket Cloud API over real HTTP, until Ctrl-C.",
        formatter_class=_HelpFormatter,
    )
    _serve_mock_options(serve)
    serve.set_defaults(run=_serve_mock)

    _add_rollout_report(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "port", 0) > 65535:  # noqa: PLR2004
        parser.error(f"argument --port: must be at most 65535, got {args.port}")
    try:
        status = int(args.run(args))
        # Flush here, where a closed pipe can still be caught, not at exit.
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`bb-backoff schedule | head -1`): stop quietly.
        # Point stdout at devnull, or Python's final flush reports the pipe.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        # Ctrl-C wherever it lands (serve-mock still starting, a long bench):
        # a stop, not a crash; 130 as a shell reports a SIGINT.
        print("interrupted", file=sys.stderr)
        return 130
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
