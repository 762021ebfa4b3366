"""The bb-backoff command: bench, schedule and serve-mock; bad arguments exit cleanly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from bb_backoff._bench import CONTENDERS
from bb_backoff._cli import main, schedule_table

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
        (["bench", "--scale", "0"], "must be > 0"),
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
