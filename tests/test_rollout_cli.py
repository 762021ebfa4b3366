"""bb-backoff rollout-report: the report from a simulation or from metrics; bad arguments exit 2."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

import bb_backoff as bb
from bb_backoff._cli import _HelpFormatter, build_parser, main
from bb_backoff._rollout import DEFAULT_TIMEOUT
from bb_backoff._rollout._simulation import DEFAULT_LIMIT, DEFAULT_PROJECTS
from bb_backoff.instrumentation import PrometheusHook
from bb_backoff.testing import VirtualClock

# Six projects, two steps: the whole simulated rollout takes a fraction of a second.
QUICK = ["rollout-report", "--simulate", "--projects", "6", "--limit", "120", "--steps", "0,100"]
ROW_KEYS = {
    "step",
    "percentage",
    "variant",
    "requests",
    "errors",
    "error_rate",
    "give_ups",
    "rate_limited",
    "retries",
    "mean_wait_seconds",
    "mean_request_seconds",
    "projects",
    "seconds",
    "items",
    "lost",
}
VERDICT_KEYS = {
    "comparison",
    "conclusion",
    "increased",
    "errors_on",
    "requests_on",
    "error_rate_on",
    "errors_off",
    "requests_off",
    "error_rate_off",
    "z",
    "p_value",
    "confidence",
    "alpha",
    "text",
}


def not_found_first(count: int) -> Callable[[httpx.Request], httpx.Response]:
    """A 404 for the first ``count`` requests, then 200s."""
    answers = iter([httpx.Response(404)] * count)

    def handler(request: httpx.Request) -> httpx.Response:
        return next(answers, httpx.Response(200, json={}))

    return handler


def exposition(
    errors_on: int, errors_off: int, requests: int = 200, registry: CollectorRegistry | None = None
) -> bytes:
    """The metrics of two real clients, flag on and off, each ``requests`` GETs on virtual time.

    The first ``errors_*`` requests of each get a 404 (an error), the rest a 200.  Given a
    ``registry``, its counters count on (the same process, scraped again).
    """
    registry = CollectorRegistry() if registry is None else registry
    for flag, errors in ((True, errors_on), (False, errors_off)):
        clock = VirtualClock()
        with bb.BitbucketClient(
            auth=bb.BearerToken("cli-SECRET"),
            flag=flag,
            transport=httpx.MockTransport(not_found_first(errors)),
            clock=clock.monotonic,
            now=clock.time,
            sleep=clock.sleep,
            gate=bb.AccountGate(store=bb.MemoryStore(), seed=1),
            hooks=[PrometheusHook(registry)],
        ) as api:
            for _ in range(requests):
                with contextlib.suppress(bb.NotFound):
                    api.get("/user")
    return generate_latest(registry)


# -- --simulate -----------------------------------------------------------------------


def test_simulate_json_prints_rows_with_variant_and_error_rate_and_the_verdict(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([*QUICK, "--json"]) == 0
    out = capsys.readouterr().out
    document = json.loads(out)
    assert set(document) == {"source", "alpha", "rows", "verdict", "comparisons", "notes"}
    assert all(set(row) == ROW_KEYS for row in document["rows"])
    assert [(row["step"], row["variant"]) for row in document["rows"]] == [
        ("0 %", "off"),
        ("100 %", "on"),
    ]
    assert all(0 <= row["error_rate"] <= 1 for row in document["rows"])
    assert set(document["verdict"]) == VERDICT_KEYS | {"summary"}
    assert document["verdict"]["comparison"] == "100 % vs 0 %"
    assert document["verdict"]["conclusion"] == "no increase"
    assert 0 <= document["verdict"]["p_value"] <= 1


def test_simulate_prints_the_table_the_verdict_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(QUICK) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("Simulated rollout (the mock API on virtual time, seed 0): ")
    assert "| step | variant | projects | requests | errors | error rate | 429s |" in captured.out
    assert "- 100 % vs 0 %: error rate on 0 % (0 of " in captured.out
    assert "**No increase of the error rate with the flag on.**" in captured.out
    assert captured.err == ""
    assert list(tmp_path.iterdir()) == []


def test_simulate_is_reproducible_from_its_seed(capsys: pytest.CaptureFixture[str]) -> None:
    main([*QUICK, "--seed", "4"])
    first = capsys.readouterr().out
    main([*QUICK, "--seed", "4"])
    assert capsys.readouterr().out == first
    assert "seed 4" in first


def test_chart_writes_a_png_where_it_says_and_nothing_else(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    chart = tmp_path / "charts" / "step.png"
    assert main([*QUICK, "--json", "--chart", str(chart)]) == 0
    captured = capsys.readouterr()
    json.loads(captured.out)  # stdout stays JSON
    assert captured.err == f"wrote {chart}\n"
    assert chart.read_bytes().startswith(b"\x89PNG")
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == [
        Path("charts"),
        Path("charts/step.png"),
    ]


def test_a_chart_path_that_cannot_be_written_is_refused_before_the_simulation(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    with pytest.raises(SystemExit) as exited:
        main([*QUICK, "--chart", str(afile / "step.png")])
    captured = capsys.readouterr()
    assert exited.value.code == 2
    assert captured.out == ""  # refused before the simulation ran
    assert f"--chart: cannot use {afile} as a directory" in captured.err
    assert "Traceback" not in captured.err


def test_a_chart_path_that_is_a_directory_is_refused_before_the_simulation(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    directory = tmp_path / "step.png"
    directory.mkdir()
    with pytest.raises(SystemExit) as exited:
        main([*QUICK, "--chart", str(directory)])
    captured = capsys.readouterr()
    assert exited.value.code == 2
    assert captured.out == ""
    assert f"--chart: {directory} is a directory" in captured.err


# -- --metrics ------------------------------------------------------------------------


def test_metrics_from_a_file_reports_an_increase_with_its_confidence(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """40 of 200 errors with the flag on, 20 of 200 off: pooled 0.15, z = 2.80, p = 0.0026."""
    path = tmp_path / "metrics.prom"
    path.write_bytes(exposition(errors_on=40, errors_off=20))
    assert main(["rollout-report", "--metrics", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Metrics of a deployment, read from {path}: ")
    assert "| metrics | on | 200 | 40 | 20.0 % | 0 | 0 |" in out
    assert (
        "- metrics: error rate on 20.0 % (40 of 200) vs off 10.0 % (20 of 200): INCREASED "
        "(one-sided p = 0.0026, 99.7 % confidence)"
    ) in out
    assert "roll back: bb-backoff flag set bitbucket_importer_exponential_backoff false" in out


def test_metrics_json_from_standard_input(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(exposition(errors_on=10, errors_off=20)))
    monkeypatch.setattr(sys, "stdin", stdin)
    assert main(["rollout-report", "--metrics", "-", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [(row["variant"], row["error_rate"]) for row in document["rows"]] == [
        ("on", 0.05),
        ("off", 0.1),
    ]
    assert all(set(row) == ROW_KEYS for row in document["rows"])
    assert set(document["verdict"]) == VERDICT_KEYS | {"summary"}
    assert (document["verdict"]["conclusion"], document["verdict"]["increased"]) == (
        "no increase",
        False,
    )


def test_metrics_since_an_earlier_scrape(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    earlier, later = tmp_path / "earlier.prom", tmp_path / "later.prom"
    registry = CollectorRegistry()
    earlier.write_bytes(exposition(errors_on=5, errors_off=5, requests=100, registry=registry))
    later.write_bytes(exposition(errors_on=40, errors_off=20, requests=200, registry=registry))
    argv = ["rollout-report", "--metrics", str(later), "--since", str(earlier), "--json"]
    assert main(argv) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [(row["variant"], row["requests"], row["errors"]) for row in rows] == [
        ("on", 200, 40),
        ("off", 200, 20),
    ]


def test_metrics_since_a_restart_among_several_processes_is_a_report_not_a_traceback(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Importer a restarted; b's errors since the earlier scrape outnumber the sums' growth."""

    def federated(*series: tuple[str, str, str, int]) -> str:
        return "".join(
            f'bb_backoff_requests_total{{instance="{instance}",outcome="{outcome}",'
            f'variant="{variant}"}} {value}\n'
            for instance, variant, outcome, value in series
        )

    earlier, later = tmp_path / "earlier.prom", tmp_path / "later.prom"
    earlier.write_text(
        federated(("a", "on", "ok", 1000), ("b", "on", "ok", 10), ("a", "off", "ok", 10))
    )
    later.write_text(
        federated(
            ("a", "on", "ok", 5),
            ("b", "on", "ok", 20),
            ("b", "on", "retries_exhausted", 1000),
            ("a", "off", "ok", 20),
        )
    )
    argv = ["rollout-report", "--metrics", str(later), "--since", str(earlier), "--json"]
    assert main(argv) == 0
    document = json.loads(capsys.readouterr().out)
    assert [(row["variant"], row["requests"], row["errors"]) for row in document["rows"]] == [
        ("on", 1015, 1000),
        ("off", 10, 0),
    ]
    assert "1 series counted from zero again in between" in document["source"]


def test_metrics_with_only_one_variant_says_which_is_missing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "metrics.prom"
    text = exposition(errors_on=0, errors_off=3).decode()
    path.write_text("\n".join(line for line in text.splitlines() if 'variant="on"' not in line))
    assert main(["rollout-report", "--metrics", str(path)]) == 0
    assert "metrics: not enough data: no requests with the flag on" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.prom", None, "cannot read {path}: No such file or directory"),
        ("up.prom", b"# TYPE up gauge\nup 1\n", "{path} has no bb_backoff_requests_total samples"),
    ],
)
def test_metrics_that_cannot_be_read_exit_1_with_the_reason(
    name: str,
    content: bytes | None,
    message: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    assert main(["rollout-report", "--metrics", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("bb-backoff rollout-report: " + message.format(path=path))
    assert "Traceback" not in captured.err


# -- arguments ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "one of the arguments --simulate --metrics is required"),
        (["--simulate", "--metrics", "m.prom"], "not allowed with argument"),
        (["--metrics", "m.prom", "--steps", "0,50"], "--steps cannot be used with --metrics"),
        (["--metrics", "m.prom", "--seed", "0"], "--seed cannot be used with --metrics"),
        (["--simulate", "--since", "m.prom"], "--since cannot be used with --simulate"),
        (["--simulate", "--timeout", "3"], "--timeout cannot be used with --simulate"),
        (["--simulate", "--steps", "0,x"], "argument --steps: 'x' is not a number"),
        (["--simulate", "--steps", "0,150"], "a step must be from 0 to 100, got 150"),
        (["--simulate", "--steps", "25,25.0"], "step 25 is given twice"),
        (["--simulate", "--steps", "nan"], "argument --steps: 'nan' is not a number"),
        (["--simulate", "--steps", "0,5_0"], "argument --steps: '5_0' is not a number"),
        (["--simulate", "--projects", "0"], "argument --projects: must be > 0, got 0"),
        (["--simulate", "--limit", "-5"], "argument --limit: must be > 0, got -5"),
        (["--simulate", "--alpha", "0.7"], "must be above 0 and at most 0.5, got 0.7"),
        (["--simulate", "--alpha", "0"], "must be above 0 and at most 0.5, got 0"),
        (["--simulate", "--chart", "report.svg"], "the path must end in .png, got report.svg"),
        (["--metrics", "m.prom", "--timeout", "0"], "argument --timeout: must be > 0, got 0"),
        # Found by an independent review: 10**8 projects took 3.5 GB in 20 s,
        # and 1e300 s reached the socket (OverflowError, a traceback).
        (
            ["--simulate", "--projects", "100000000"],
            "argument --projects: must be at most 1000, got 100000000",
        ),
        (
            ["--metrics", "m.prom", "--timeout", "1e300"],
            "argument --timeout: must be at most 86400, got 1e300",
        ),
    ],
)
def test_bad_arguments_exit_2_with_a_message_not_a_traceback(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["rollout-report", *argv])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "usage: bb-backoff rollout-report" in err
    assert message in err
    assert "Traceback" not in err


def test_help_states_the_defaults_the_code_uses(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["rollout-report", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert f"one repository each (default: {DEFAULT_PROJECTS})" in shown
    assert f"requests per rolling hour (default: {DEFAULT_LIMIT}, Bitbucket's" in shown
    assert f"seconds to wait for it (default: {DEFAULT_TIMEOUT:g})" in shown
    assert "--steps STEPS --simulate: the steps, percent of actors, comma-separated " in shown
    assert "(default: 0,25,50,100)" in shown
    assert "p-value is below it (default: 0.05)" in shown


def test_every_option_that_takes_a_value_shows_its_default() -> None:
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    formatter = _HelpFormatter(prog="bb-backoff")
    undocumented = [
        action.dest
        for action in commands.choices["rollout-report"]._actions
        if action.option_strings
        and action.nargs != 0
        and "default" not in (formatter._get_help_string(action) or "")
    ]
    assert undocumented == []
