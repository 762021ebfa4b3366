"""The bb-backoff command: bench, schedule, serve-mock and flag; bad arguments exit cleanly."""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

import bb_backoff
from bb_backoff import _bench, _cli
from bb_backoff._bench import CONTENDERS, SCENARIOS
from bb_backoff._cli import (
    DEFAULT_RESULTS,
    MAX_IMPORTERS,
    MAX_SCHEDULE_RETRIES,
    _HelpFormatter,
    build_parser,
    is_default_bench,
    is_own_checkout,
    main,
    results_dir,
    schedule_table,
)
from markers import REALTIME
from redis_server import free_port

ROOT = Path(__file__).parent.parent
QUICK_BENCH = ["bench", "--quick", "--processes", "1", "--scenario", "workers-8"]

ROW_KEYS = {
    "scenario",
    "policy",
    "mode",
    "workers",
    "time_ratio",
    "seconds",
    "lower_bound",
    "calls",
    "rate_limited",
    "wasted",
    "calls_needed",
    "lost",
    "complete",
    "duplicates",
    "items",
    "give_ups",
    "p99_request",
    "longest_request",
    "outage_calls",
    "clock",
}


def test_bench_json_prints_one_object_per_scenario_and_policy(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["bench", "--quick", "--json", "--processes", "1"]
    assert main([*argv, "--scenario", "no-hint", "--scenario", "retry-after"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["scenario"], r["policy"]) for r in rows] == [
        (scenario, contender.name)
        for scenario in ("no-hint", "retry-after")
        for contender in CONTENDERS
    ]
    assert all(set(row) == ROW_KEYS for row in rows)
    flag_on = [r for r in rows if r["policy"].startswith("bb-backoff, flag on")]
    assert [(r["lost"], r["complete"]) for r in flag_on] == [(0, True)] * 6
    legacy = next(r for r in rows if r["policy"] == "bb-backoff, flag off (legacy)")
    assert (legacy["lost"] > 0, legacy["complete"]) == (True, False)


def test_bench_is_reproducible_from_the_seed(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "--quick", "--json", "--processes", "1", "--scenario", "faults-5pct"]
    main([*argv, "--seed", "3"])
    first = capsys.readouterr().out
    main([*argv, "--seed", "3"])
    assert capsys.readouterr().out == first


def test_bench_prints_the_table_and_writes_table_and_chart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bench", "--quick", "--processes", "1", "--scenario", "workers-8"]
    assert main([*argv, "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    table = (tmp_path / "table.md").read_text()
    assert table.splitlines()[0] in out
    assert "| **workers-8** | bb-backoff, flag on |" in table
    assert (tmp_path / "chart.png").read_bytes().startswith(b"\x89PNG")


def test_bench_workers_overrides_every_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    main(
        [
            "bench",
            "--quick",
            "--json",
            "--processes",
            "1",
            "--scenario",
            "no-hint",
            "--workers",
            "2",
        ]
    )
    assert {row["workers"] for row in json.loads(capsys.readouterr().out)} == {2}


@REALTIME
def test_bench_real_runs_against_the_served_mock_beside_virtual_time(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--real: the async contenders on a uvicorn server, an hour scaled to 1.8 s."""
    assert main(["bench", "--real", "--quick", "--json", "--scale", "0.0005"]) == 0
    rows = json.loads(capsys.readouterr().out)
    clocks = {(row["policy"].rsplit(" (", 1)[0], row["clock"]) for row in rows}
    assert ("bb-backoff, flag on", "real") in clocks
    assert ("bb-backoff, flag on", "virtual") in clocks
    flag_on = [r for r in rows if r["policy"].startswith("bb-backoff, flag on (")]
    assert [r["lost"] for r in flag_on] == [0, 0]


# -- bench --real --importers: a fleet of importer processes ------------------------------


@REALTIME
def test_bench_importers_run_a_fleet_through_redis_and_without_it(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two processes of two workers on the quick dataset, an hour scaled to 0.36 s.

    The second process joins 100 s (0.01 s scaled) after the first.
    """
    import redis  # noqa: PLC0415 (installed: the fixture checked)

    with redis.Redis.from_url(redis_url) as client:
        client.config_resetstat()
        argv = ["bench", "--real", "--quick", "--json", "--scale", "0.0001"]
        fleet = ["--importers", "2", "--workers", "2", "--stagger", "100", "--redis", redis_url]
        assert main([*argv, *fleet]) == 0
        reservations = client.info("commandstats")["cmdstat_evalsha"]["calls"]
        leftover = client.keys("bb_backoff_bench_*")
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    fleet_of_two = "bb-backoff, flag on: 2 processes x 2 workers joining 100 s apart"
    assert [row["policy"] for row in rows] == [
        f"{fleet_of_two}, one account gate in Redis (real)",
        f"{fleet_of_two}, an in-memory gate per process (real)",
    ]
    for row in rows:
        assert set(row) == ROW_KEYS
        assert (row["scenario"], row["mode"], row["workers"], row["clock"]) == (
            "no-hint",
            "async",
            4,
            "real",
        )
        assert (row["lost"], row["complete"], row["duplicates"], row["give_ups"]) == (0, True, 0, 0)
        # The quick dataset: 60 calls (the import starts from /user/workspaces),
        # 81 items; 50 calls a window, so the bound is one window.
        assert (row["calls_needed"], row["items"]) == (60, 81)
        assert row["lower_bound"] == pytest.approx(3600 * 0.0001)
        assert row["seconds"] >= row["lower_bound"]
        assert row["time_ratio"] == pytest.approx(row["seconds"] / row["lower_bound"])
        assert row["calls"] >= row["calls_needed"]
    # The Redis row's every request was reserved through Redis; the run's keys are gone.
    assert reservations >= rows[0]["calls"]
    assert leftover == []
    assert "2 importer processes x 2 workers on one token, joining 100 s apart" in captured.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--importers", "2"], "--importers needs --real"),
        (["--real", "--redis", "redis://127.0.0.1:6379/0"], "--redis needs --importers"),
        (["--real", "--stagger", "60"], "--stagger needs --importers"),
        (["--real", "--importers", "2", "--stagger", "-1"], "must be >= 0"),
        (["--real", "--importers", "2", "--stagger", "inf"], "must be a finite number"),
        (["--real", "--importers", "0"], "must be > 0"),
        (["--real", "--importers", "65"], "must be at most 64"),
        (["--real", "--importers", "two"], "is not a number"),
        (
            ["--real", "--importers", "2", "--redis", "http://user:hunter2@127.0.0.1/"],
            "must be a redis://, rediss:// or unix:// URL, got 'http://127.0.0.1/'",
        ),
    ],
)
def test_bench_importers_and_redis_are_refused_with_a_message_and_status_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["bench", *argv])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "usage: bb-backoff bench" in err
    assert message in err
    assert "hunter2" not in err
    assert "Traceback" not in err


def test_bench_importers_without_redis_server_on_path_is_an_error_with_status_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["bench", "--real", "--quick", "--importers", "2"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "bb-backoff bench: error: --importers needs Redis: redis-server is not on PATH; pass "
        "--redis URL, or put redis-server on PATH (apt-get install redis-server) for a private "
        "one\n"
    )


def test_bench_importers_with_a_redis_that_does_not_answer_is_an_error_without_its_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    assert main(["bench", "--real", "--quick", "--importers", "2", "--redis", url]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"bb-backoff bench: error: --importers needs Redis: Redis at "
        f"redis://127.0.0.1:{url.rsplit(':', 1)[1]} does not answer (ConnectionError: "
    )
    assert "hunter2" not in err


def test_the_command_and_the_runner_cap_importers_alike() -> None:
    assert _bench.MAX_IMPORTERS == MAX_IMPORTERS


# -- where bench writes -------------------------------------------------------------------


def bench_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["bench", *argv])


def fake_checkout(root: Path, name: str = "bb-backoff") -> Path:
    """A directory shaped like this project's checkout; returns its package directory."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(f'[project]\nname = "{name}"\n')
    package = root / "src" / "bb_backoff"
    package.mkdir(parents=True)
    return package.resolve()


def test_the_default_run_from_the_root_of_its_own_checkout_writes_the_committed_results(
    tmp_path: Path,
) -> None:
    package = fake_checkout(tmp_path)
    assert results_dir(bench_args(), cwd=tmp_path, package=package) == DEFAULT_RESULTS


@pytest.mark.parametrize(
    "argv",
    [
        ["--processes", "1"],
        ["--seed", "0"],
        [arg for scenario in SCENARIOS for arg in ("--scenario", scenario.name)],
        ["--scale", "0.01"],
    ],
    ids=["processes", "seed-0", "every-scenario-in-order", "scale"],
)
def test_arguments_that_do_not_change_the_rows_keep_the_default_run(argv: list[str]) -> None:
    assert is_default_bench(bench_args(*argv))


@pytest.mark.parametrize(
    "argv",
    [
        ["--scenario", "no-hint"],
        [arg for scenario in reversed(SCENARIOS) for arg in ("--scenario", scenario.name)],
        ["--workers", "4"],
        ["--seed", "1"],
        ["--quick"],
        ["--json"],
        ["--real"],
    ],
    ids=["one-scenario", "reordered", "workers", "seed", "quick", "json", "real"],
)
def test_any_other_run_writes_nowhere_even_from_its_own_checkout(
    argv: list[str], tmp_path: Path
) -> None:
    package = fake_checkout(tmp_path)
    args = bench_args(*argv)
    assert (is_default_bench(args), results_dir(args, cwd=tmp_path, package=package)) == (
        False,
        None,
    )


def test_the_default_run_outside_a_checkout_writes_nowhere(tmp_path: Path) -> None:
    assert results_dir(bench_args(), cwd=tmp_path) is None


def test_the_default_run_in_another_projects_checkout_writes_nowhere(tmp_path: Path) -> None:
    package = fake_checkout(tmp_path, name="someone-else")
    assert results_dir(bench_args(), cwd=tmp_path, package=package) is None


def test_the_default_run_in_a_checkout_whose_code_is_not_running_writes_nowhere(
    tmp_path: Path,
) -> None:
    fake_checkout(tmp_path / "clone")
    elsewhere = fake_checkout(tmp_path / "installed")
    assert results_dir(bench_args(), cwd=tmp_path / "clone", package=elsewhere) is None


def test_a_broken_pyproject_is_not_a_checkout(tmp_path: Path) -> None:
    package = fake_checkout(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[project\nname = ")
    assert is_own_checkout(tmp_path, package) is False


def test_output_given_is_where_any_run_writes(tmp_path: Path) -> None:
    args = bench_args("--quick", "--json", "--output", str(tmp_path / "out"))
    assert results_dir(args, cwd=tmp_path) == tmp_path / "out"


@pytest.mark.skipif(
    Path(bb_backoff.__file__).resolve().parent != (ROOT / "src" / "bb_backoff").resolve(),
    reason="bb-backoff is not installed from this checkout (pip install -e)",
)
def test_this_repository_is_its_own_checkout_when_installed_editable() -> None:
    assert is_own_checkout(ROOT)


def test_a_partial_run_from_its_own_checkout_writes_no_file_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("bb_backoff._cli._PACKAGE_DIR", fake_checkout(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert main(QUICK_BENCH) == 0
    captured = capsys.readouterr()
    assert "| **workers-8** | bb-backoff, flag on |" in captured.out
    assert "wrote no files: pass --output DIR" in captured.err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["pyproject.toml", "src"]


def test_a_run_outside_a_checkout_creates_no_results_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([*QUICK_BENCH, "--json"]) == 0
    json.loads(capsys.readouterr().out)
    assert list(tmp_path.iterdir()) == []


def test_bench_output_that_cannot_be_a_directory_is_refused_before_the_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    with pytest.raises(SystemExit) as exited:
        main(["bench", "--quick", "--scenario", "no-hint", "--output", str(afile / "sub")])
    captured = capsys.readouterr()
    assert exited.value.code == 2
    assert captured.out == ""
    assert f"--output: cannot use {afile / 'sub'} as a directory" in captured.err


def test_bench_json_with_output_writes_the_table_and_keeps_stdout_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*QUICK_BENCH, "--json", "--output", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert [row["scenario"] for row in rows] == ["workers-8"] * len(CONTENDERS)
    assert (tmp_path / "table.md").read_text().startswith("| scenario | policy |")
    assert captured.err.strip().endswith(
        f"wrote {tmp_path / 'table.md'} and {tmp_path / 'chart.png'}"
    )


# -- the command's manners ------------------------------------------------------------------


def test_version_prints_the_name_and_the_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert (exited.value.code, capsys.readouterr().out) == (
        0,
        f"bb-backoff {bb_backoff.__version__}\n",
    )


def test_ctrl_c_stops_a_command_with_status_130_and_no_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # serve-mock interrupted while it starts and prints its credentials, say.
    def interrupted(_args: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(_cli, "_serve_mock", interrupted)
    try:
        status = main(["serve-mock"])
    except KeyboardInterrupt:  # (uncaught, it would end the test session)
        pytest.fail("Ctrl-C escaped main() as a traceback")
    assert status == 130
    err = capsys.readouterr().err
    assert "interrupted" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("unbuffered", ["", "1"], ids=["block-buffered", "unbuffered"])
def test_a_closed_pipe_ends_the_command_quietly(unbuffered: str) -> None:
    """`bb-backoff schedule | head -1`: the reader leaves after one line of many.

    The pipe is shrunk to one page and the table is several pages long, so the
    command is still writing when the reader leaves, however stdout buffers
    (PYTHONUNBUFFERED set or not) and however fast the table is built.
    """
    set_pipe_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if set_pipe_size is None:  # pragma: no cover (Linux has it)
        pytest.skip("this platform cannot shrink a pipe")
    read_end, write_end = os.pipe()
    # The kernel rounds the size up to its memory page (16 or 64 KiB on some
    # machines).  The table must outgrow what the pipe holds plus what the
    # reader takes in one read: rows of 50 bytes and more (the default policy
    # waits for the quota far longer than 1,000 waits).
    size = fcntl.fcntl(write_end, set_pipe_size, 4096)
    rows = max(200, (2 * size + 1024) // 50)
    if rows > MAX_SCHEDULE_RETRIES:  # pragma: no cover (64 KiB pages)
        os.close(read_end)
        os.close(write_end)
        pytest.skip(f"a pipe here holds at least {size} bytes, more than the longest table")
    command = [sys.executable, "-m", "bb_backoff", "schedule", "--retries", str(rows)]
    env = {**os.environ, "PYTHONUNBUFFERED": unbuffered}
    with (
        os.fdopen(read_end, encoding="utf-8") as reader,
        subprocess.Popen(  # noqa: S603
            command, stdout=write_end, stderr=subprocess.PIPE, text=True, env=env
        ) as process,
    ):
        os.close(write_end)
        assert process.stderr is not None
        first = reader.readline()
        reader.close()
        errors = process.stderr.read()
        status = process.wait(timeout=60)
    assert first == "Waits in seconds (low / median / high) when the server sends no hint:\n"
    assert (status, errors) == (1, "")


def test_bench_help_lists_every_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    names = ", ".join(scenario.name for scenario in SCENARIOS)
    assert f"one of: {names}" in help_text


def subcommand_parsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {"": parser, **commands.choices}


@pytest.mark.parametrize("command", ["", "bench", "schedule", "serve-mock"])
def test_every_help_shows_the_default_of_every_option_that_takes_a_value(command: str) -> None:
    parser = subcommand_parsers()[command]
    formatter = _HelpFormatter(prog="bb-backoff")
    undocumented = [
        action.dest
        for action in parser._actions
        if action.option_strings
        and action.nargs != 0
        and "default" not in (formatter._get_help_string(action) or "")
    ]
    assert undocumented == []


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        ("bench", "--seed SEED seeds the run (default: 0)"),
        (
            "bench",
            "--scale SCALE --real: time scale, an hour becomes 3600 * SCALE s (default: 0.005)",
        ),
        (
            "bench",
            "--workers WORKERS override every scenario's workers (default: each scenario's own)",
        ),
        ("schedule", "--retries RETRIES waits to show (default: 10)"),
        ("serve-mock", "--limit LIMIT requests per window (default: 1000)"),
        ("serve-mock", "--host HOST address to listen on (default: 127.0.0.1)"),
    ],
)
def test_help_shows_defaults_in_words(
    command: str, shown: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert shown in " ".join(capsys.readouterr().out.split())


def test_schedule_prints_the_side_by_side_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schedule", "--retries", "4"]) == 0
    out = capsys.readouterr().out
    assert schedule_table(4) in out
    assert "| 1 | 0 / 0.5 / 1 | 0 / 0.5 / 1 | 1 / 1 / 1 | 2 / 3.02 / 4 |" in out


def test_serve_mock_prints_the_base_url_and_a_working_token_first() -> None:
    command = [sys.executable, "-m", "bb_backoff", "serve-mock", "--limit", "5", "--window", "60"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as server:  # noqa: S603
        try:
            assert server.stdout is not None
            base_url = server.stdout.readline().strip().removeprefix("base_url: ")
            token = server.stdout.readline().strip().removeprefix("token: ")
            headers = {"Authorization": f"Bearer {token}"}
            response = httpx.get(f"{base_url}/user", headers=headers, timeout=10)
            assert response.status_code == 200
            assert base_url.startswith("http://127.0.0.1:")
            statuses = [
                httpx.get(f"{base_url}/user", headers=headers, timeout=10).status_code
                for _ in range(5)
            ]
            assert statuses == [200, 200, 200, 200, 429]
        finally:
            server.terminate()
            server.wait(timeout=10)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench", "--scenario", "nonsense"], "unknown scenario 'nonsense'"),
        (["bench", "--workers", "-3"], "must be > 0"),
        (["bench", "--workers", "many"], "is not a number"),
        (["bench", "--seed", "-1"], "must be >= 0"),
        # The mock takes seeds up to 2**64 (a fleet's are seed * 64 + i): refused, not raised.
        (["bench", "--seed", str(2**32)], "must be at most 4,294,967,295"),
        (["serve-mock", "--seed", str(2**70)], "must be at most 4,294,967,295"),
        (["bench", "--scale", "0"], "must be > 0"),
        # A pool of 100,000 interpreters hung, leaking semaphores, until killed.
        (["bench", "--processes", "100000"], "must be at most 64"),
        (["bench", "--processes", "65"], "must be at most 64"),
        (["bench", "--processes", "0"], "must be > 0"),
        # Scaled up, an hour's max_hint of two passed a day: refused by the policy, raw.
        (["bench", "--real", "--scale", "13"], "must be at most 1"),
        (["schedule", "--retries", "0"], "must be > 0"),
        (["serve-mock", "--limit", "-5"], "must be > 0"),
        (["serve-mock", "--window", "nan"], "must be > 0"),
        (["serve-mock", "--port", "70000"], "at most 65535"),
        (["serve-mock", "--hint", "maybe"], "invalid choice"),
        (["nonsense"], "invalid choice"),
        ([], "required"),
    ],
)
def test_bad_arguments_exit_non_zero_with_a_message_not_a_traceback(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "usage: bb-backoff" in err
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["schedule", "--retries", "100000000"],
        ["schedule", "--retries", "0"],
        ["bench", "--real", "--scale", "inf"],
        ["bench", "--real", "--scale", "nan"],
        ["bench", "--workers", "1000000"],
    ],
)
def test_an_unbounded_or_absurd_argument_is_a_message_and_status_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "must be" in err


# -- flag: the fleet-wide flag in Redis, as GitLab's chatops set it ------------------------------

FLAG = "bitbucket_importer_exponential_backoff"


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client on the flushed test database, to read the raw keys."""
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        yield client


def keyspace(client: redis.Redis) -> dict[str, object]:
    """Every key and its value (sets and hashes as Python sets and dicts)."""
    dump: dict[str, object] = {}
    for key in client.keys("*"):
        kind = client.type(key)
        dump[str(key)] = client.smembers(key) if kind == "set" else client.hgetall(key)
    return dump


def flag_command(store: str, *argv: str) -> list[str]:
    return ["flag", *argv, "--store", store]


def test_flag_set_true_opens_the_boolean_gate_in_flippers_layout(
    redis_url: str, raw: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    raw.hset(FLAG, "percentage_of_actors", "50")
    assert main(flag_command(redis_url, "set", FLAG, "true")) == 0
    assert keyspace(raw) == {"flipper_features": {FLAG}, FLAG: {"boolean": "true"}}
    out = capsys.readouterr().out
    assert out.splitlines()[:2] == [f"{FLAG}: on", "  boolean: on"]


def test_flag_set_false_is_the_rollback_deleting_the_hash_and_keeping_the_name(
    redis_url: str, raw: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    raw.sadd("flipper_features", FLAG)
    raw.hset(FLAG, mapping={"boolean": "true", "actors/Project:1": "1", "percentage_of_time": "5"})
    assert main(flag_command(redis_url, "set", FLAG, "false")) == 0
    assert keyspace(raw) == {"flipper_features": {FLAG}}
    assert capsys.readouterr().out.splitlines()[0] == f"{FLAG}: off"


@pytest.mark.parametrize(
    ("argv", "field", "written"),
    [
        (["25", "--actors"], "percentage_of_actors", "25"),
        (["12.5", "--actors"], "percentage_of_actors", "12.5"),
        (["10", "--random"], "percentage_of_time", "10"),
        (["0", "--random"], "percentage_of_time", "0"),
        (["100.0", "--actors"], "percentage_of_actors", "100"),
    ],
)
def test_flag_set_percentages_with_actors_or_random_write_that_gate(
    argv: list[str], field: str, written: str, redis_url: str, raw: redis.Redis
) -> None:
    assert main(flag_command(redis_url, "set", FLAG, *argv)) == 0
    assert keyspace(raw) == {"flipper_features": {FLAG}, FLAG: {field: written}}


def test_flag_set_true_and_false_for_one_actor(
    redis_url: str, raw: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(flag_command(redis_url, "set", FLAG, "true", "--actor", "Project:123")) == 0
    assert main(flag_command(redis_url, "set", FLAG, "true", "--actor", "Group:45")) == 0
    assert raw.hgetall(FLAG) == {"actors/Project:123": "1", "actors/Group:45": "1"}
    assert "  actors: Group:45, Project:123" in capsys.readouterr().out
    assert main(flag_command(redis_url, "set", FLAG, "false", "--actor", "Project:123")) == 0
    assert raw.hgetall(FLAG) == {"actors/Group:45": "1"}


def test_flag_set_for_one_actor_strips_the_actor_id_as_it_strips_the_value(
    redis_url: str, raw: redis.Redis
) -> None:
    """A stray space would write the field "actors/ Project:1", which no actor matches."""
    assert main(flag_command(redis_url, "set", FLAG, "true", "--actor", " Project:1\t")) == 0
    assert raw.hgetall(FLAG) == {"actors/Project:1": "1"}
    assert main(flag_command(redis_url, "set", FLAG, "false", "--actor", "Project:1 ")) == 0
    assert raw.hgetall(FLAG) == {}


def test_flag_get_prints_every_gate_and_what_it_cannot_evaluate(
    redis_url: str, raw: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    raw.sadd("flipper_features", FLAG)
    raw.hset(
        FLAG,
        mapping={
            "actors/Project:1": "1",
            "percentage_of_actors": "25",
            "percentage_of_time": "0.5",
            "groups/admins": "1",
        },
    )
    assert main(flag_command(redis_url, "get", FLAG)) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{FLAG}: conditional",
        "  boolean: off",
        "  actors: Project:1",
        "  percentage_of_actors: 25%",
        "  percentage_of_time: 0.5%",
        "  not evaluated by bb-backoff: groups/admins",
    ]


def test_flag_get_json_reports_the_gates(
    redis_url: str, raw: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    raw.sadd("flipper_features", FLAG)
    raw.hset(FLAG, mapping={"boolean": "true", "actors/User:7": "1"})
    assert main(flag_command(redis_url, "get", FLAG, "--json")) == 0
    assert json.loads(capsys.readouterr().out) == {
        "name": FLAG,
        "store": redis_url,
        "known": True,
        "state": "on",
        "boolean": True,
        "actors": ["User:7"],
        "percentage_of_actors": 0.0,
        "percentage_of_time": 0.0,
        "groups": [],
        "ignored": [],
    }


def test_flag_get_of_an_unknown_feature_says_so_and_writes_nothing(
    redis_url: str, raw: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(flag_command(redis_url, "get", "no_such_flag")) == 0
    assert capsys.readouterr().out.splitlines()[0] == "no_such_flag: off (not in flipper_features)"
    assert keyspace(raw) == {}


def test_flag_delete_removes_the_name_from_the_set_and_the_hash(
    redis_url: str, raw: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    raw.sadd("flipper_features", FLAG, "other_flag")
    raw.hset(FLAG, "boolean", "true")
    assert main(flag_command(redis_url, "delete", FLAG)) == 0
    assert keyspace(raw) == {"flipper_features": {"other_flag"}}
    assert main(flag_command(redis_url, "delete", FLAG)) == 0  # again: nothing left, no error
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"{FLAG}: removed from flipper_features; its hash is gone",
        f"{FLAG}: was not in flipper_features; its hash is gone",
    ]


def test_flag_store_defaults_to_the_environment_variable(
    redis_url: str, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BB_BACKOFF_FLAG_STORE", redis_url)
    assert main(["flag", "set", FLAG, "true"]) == 0
    assert raw.hgetall(FLAG) == {"boolean": "true"}


def test_flag_store_option_wins_over_the_environment_variable(
    redis_url: str, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BB_BACKOFF_FLAG_STORE", "redis://127.0.0.1:1/0")
    assert main(flag_command(redis_url, "set", FLAG, "true")) == 0
    assert raw.hgetall(FLAG) == {"boolean": "true"}


def test_flag_key_prefix_namespaces_every_key_as_flipper_does(
    redis_url: str, raw: redis.Redis
) -> None:
    assert main(flag_command(redis_url, "set", FLAG, "true", "--key-prefix", "gitlab:")) == 0
    assert keyspace(raw) == {
        "gitlab:flipper_features": {FLAG},
        f"gitlab:{FLAG}": {"boolean": "true"},
    }


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["set", FLAG, "150", "--actors"], "--actors takes a percentage from 0 to 100, got '150'"),
        (["set", FLAG, "-1", "--random"], "--random takes a percentage from 0 to 100, got '-1'"),
        (["set", FLAG, "nan", "--actors"], "takes a percentage from 0 to 100"),
        (["set", FLAG, "inf", "--random"], "takes a percentage from 0 to 100"),
        (["set", FLAG, "lots", "--actors"], "takes a percentage from 0 to 100, got 'lots'"),
        # float() reads these as 50 and 10: a typo would open the flag to half the projects.
        (["set", FLAG, "5_0", "--actors"], "takes a percentage from 0 to 100, got '5_0'"),
        (["set", FLAG, "1e1", "--random"], "takes a percentage from 0 to 100, got '1e1'"),
        (
            ["set", FLAG, "true", "--actors"],
            "--actors takes a percentage from 0 to 100, not 'true'",
        ),
        (["set", FLAG, "false", "--random"], "--random takes a percentage"),
        (["set", FLAG, "abc"], "VALUE must be true, false or a percentage from 0 to 100"),
        (["set", FLAG, "25"], "a percentage needs --actors"),
        (["set", FLAG, "25", "--actor", "Project:1"], "--actor takes true or false"),
        (["set", FLAG, "true", "--actor", " "], "--actor takes an actor id"),
        (["set", FLAG, "25", "--actors", "--random"], "not allowed with argument"),
        (["set", FLAG, "true", "--actors", "--actor", "X"], "not allowed with argument"),
        (["set", "flipper_features", "true"], "the key of Flipper's set of features"),
        (["set", "", "true"], "name must be a non-empty string"),
        (["set", FLAG], "the following arguments are required: VALUE"),
        (["unset", FLAG], "invalid choice"),
    ],
)
def test_flag_bad_values_exit_2_with_a_message_and_leave_redis_untouched(
    argv: list[str],
    message: str,
    redis_url: str,
    raw: redis.Redis,
    capsys: pytest.CaptureFixture[str],
) -> None:
    raw.sadd("flipper_features", FLAG)
    raw.hset(FLAG, mapping={"percentage_of_actors": "10", "actors/Project:1": "1"})
    before = keyspace(raw)
    with pytest.raises(SystemExit) as exited:
        main(flag_command(redis_url, *argv))
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "usage: bb-backoff flag" in err
    assert message in err
    assert "Traceback" not in err
    assert keyspace(raw) == before


@pytest.mark.parametrize("store", ["http://127.0.0.1/0", "127.0.0.1:6379"])
def test_flag_store_that_is_not_a_redis_url_exits_2(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["flag", "get", FLAG, "--store", store])
    assert exited.value.code == 2
    assert "store must be a redis://" in capsys.readouterr().err


def test_flag_without_a_store_exits_2_naming_the_option_and_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("BB_BACKOFF_FLAG_STORE", raising=False)
    with pytest.raises(SystemExit) as exited:
        main(["flag", "set", FLAG, "false"])
    assert exited.value.code == 2
    assert "pass --store URL or set BB_BACKOFF_FLAG_STORE" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv", [["set", FLAG, "false"], ["get", FLAG], ["get", FLAG, "--json"], ["delete", FLAG]]
)
def test_flag_unreachable_store_exits_1_with_a_clear_message_no_traceback_no_password(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    store = f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0"
    assert main(flag_command(store, *argv)) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("bb-backoff flag: flag store redis://:***@127.0.0.1:")
    assert "Connection refused" in captured.err
    assert "Traceback" not in captured.err
    assert "hunter2-secret" not in captured.err


def test_flag_unreachable_store_from_a_real_process_has_no_traceback() -> None:
    store = f"redis://127.0.0.1:{free_port()}/0"
    command = [sys.executable, "-m", "bb_backoff", "flag", "set", FLAG, "false", "--store", store]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)  # noqa: S603
    assert done.returncode == 1
    assert done.stderr.startswith("bb-backoff flag: ")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("verb", ["set", "get", "delete"])
def test_flag_help_shows_the_default_of_every_option_that_takes_a_value(verb: str) -> None:
    (flag_verbs,) = [
        action
        for action in subcommand_parsers()["flag"]._actions
        if isinstance(action, argparse._SubParsersAction)
    ]
    parser = flag_verbs.choices[verb]
    formatter = _HelpFormatter(prog="bb-backoff flag")
    undocumented = [
        action.dest
        for action in parser._actions
        if action.option_strings
        and action.nargs != 0
        and "default" not in (formatter._get_help_string(action) or "")
    ]
    assert undocumented == []


@pytest.mark.parametrize("url", ["REDIS://127.0.0.1:6379/0", "Rediss://h:6380/0", "UNIX:///r.sock"])
def test_a_redis_url_is_taken_whatever_the_case_of_its_scheme(url: str) -> None:
    """Schemes are case-insensitive: ``--redis REDIS://...`` exited 2 ("must be a redis:// URL")."""
    assert build_parser().parse_args(["bench", "--real", "--redis", url]).redis == url
