"""The rollout report: rows, which step meets which, the verdict, markdown, JSON, the chart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bb_backoff._rollout import (
    Conclusion,
    Imports,
    Step,
    VariantCounts,
    Verdict,
    build_report,
    json_report,
    judge,
    markdown,
    overall,
    write_chart,
)
from bb_backoff._rollout._report import ROLLBACK

ON_BAD = VariantCounts(requests=500, errors=60, give_ups=50, rate_limited=80, wait_seconds=250.0)
OFF = VariantCounts(requests=500, errors=40, give_ups=40, rate_limited=90, wait_seconds=50.0)
ON_GOOD = VariantCounts(requests=500, errors=10, rate_limited=30, wait_seconds=900.0)


def step(label: str, **counts: VariantCounts) -> Step:
    return Step(label=label, percentage=float(label.rstrip(" %")), counts=counts)


def rollout(on: VariantCounts) -> list[Step]:
    """The template's steps: 0 % (off only), 25 % and 50 % (both), 100 % (on only)."""
    return [
        step("0 %", off=OFF),
        step("25 %", on=on, off=OFF),
        step("50 %", on=on, off=OFF),
        step("100 %", on=on),
    ]


# -- rows and comparisons -------------------------------------------------------------


def test_one_row_per_step_and_variant_flag_on_first() -> None:
    report = build_report("test", rollout(ON_GOOD))
    assert [(row.step, row.variant) for row in report.rows] == [
        ("0 %", "off"),
        ("25 %", "on"),
        ("25 %", "off"),
        ("50 %", "on"),
        ("50 %", "off"),
        ("100 %", "on"),
    ]
    first = report.rows[1]
    assert (first.requests, first.errors, first.error_rate, first.rate_limited) == (
        500,
        10,
        0.02,
        30,
    )
    assert (first.mean_wait_seconds, first.projects, first.seconds) == (1.8, None, None)


def test_mixed_steps_are_judged_alone_and_the_full_step_against_the_off_baseline() -> None:
    report = build_report("test", rollout(ON_BAD))
    assert [v.label for v in report.verdicts] == ["25 %", "50 %", "100 % vs 0 %"]
    assert all(
        (v.errors_on, v.requests_on, v.errors_off, v.requests_off) == (60, 500, 40, 500)
        for v in report.verdicts
    )
    assert report.notes == (
        (
            "0 %: every request with the flag off (error rate 8.0 %); the baseline: the steps "
            "with the flag on everywhere are compared with it"
        ),
    )


def test_an_off_only_step_without_a_full_step_is_noted_not_judged() -> None:
    report = build_report("test", rollout(ON_GOOD)[:3])
    assert [v.label for v in report.verdicts] == ["25 %", "50 %"]
    assert report.notes == (
        "0 %: every request with the flag off (error rate 8.0 %); nothing to compare",
    )


def test_a_lone_step_missing_a_variant_says_which_is_missing() -> None:
    """A deployment whose flag is still off everywhere: nothing to compare yet."""
    report = build_report("test", [Step(label="metrics", percentage=None, counts={"off": OFF})])
    assert report.verdict.conclusion is Conclusion.NOT_ENOUGH_DATA
    assert report.verdict.text == "metrics: not enough data: no requests with the flag on"
    assert report.notes == ()


def test_a_full_step_without_a_baseline_says_the_flag_off_is_missing() -> None:
    report = build_report("test", [step("100 %", on=ON_GOOD)])
    assert report.verdict.text == "100 %: not enough data: no requests with the flag off"


def test_variants_other_than_on_and_off_get_rows_but_no_comparison() -> None:
    report = build_report("test", [step("50 %", on=ON_GOOD, off=OFF, mixed=OFF)])
    assert [row.variant for row in report.rows] == ["on", "off", "mixed"]
    assert len(report.verdicts) == 1


def test_a_report_needs_a_step() -> None:
    with pytest.raises(ValueError, match="steps must hold at least one step"):
        build_report("test", [])


# -- the overall verdict --------------------------------------------------------------


def test_an_increase_anywhere_is_the_verdict_with_the_rollback() -> None:
    report = build_report("test", rollout(ON_BAD))
    assert report.verdict.conclusion is Conclusion.INCREASED
    assert report.summary == (
        "The error rate INCREASED with the flag on at 25 %, 50 %, 100 % vs 0 % "
        f"(one-sided p = 0.018): stop the rollout and roll back: {ROLLBACK}"
    )
    assert ROLLBACK == "bb-backoff flag set bitbucket_importer_exponential_backoff false"


def test_no_increase_anywhere_is_no_increase() -> None:
    report = build_report("test", rollout(ON_GOOD))
    assert report.verdict.conclusion is Conclusion.NO_INCREASE
    assert report.summary == "No increase of the error rate with the flag on."


def test_the_overall_verdict_is_the_most_alarming_then_the_smallest_p_value() -> None:
    def verdict(label: str, errors_on: int, requests_on: int = 1000) -> Verdict:
        return judge(
            label, errors_on=errors_on, requests_on=requests_on, errors_off=50, requests_off=1000
        )

    lower, slightly, clearly, more_clearly, empty = (
        verdict("lower", 40),
        verdict("slightly", 55),
        verdict("clearly", 80),
        verdict("more clearly", 95),
        verdict("empty", 0, requests_on=0),
    )
    assert overall([lower, slightly, empty]) is slightly
    assert overall([lower, empty]) is empty
    assert overall([lower]) is lower
    assert overall([slightly, clearly, more_clearly, lower]) is more_clearly
    with pytest.raises(ValueError, match="verdicts must hold at least one verdict"):
        overall([])


def test_a_higher_rate_short_of_significance_says_hold_the_step() -> None:
    slightly = VariantCounts(requests=500, errors=45)
    report = build_report("test", [step("25 %", on=slightly, off=OFF)])
    assert report.verdict.conclusion is Conclusion.NOT_SIGNIFICANT
    assert report.summary.startswith("The error rate was higher with the flag on at 25 %")
    assert report.summary.endswith("hold this step and let more requests run before the next.")


def test_not_enough_data_names_the_comparisons_that_lack_it() -> None:
    report = build_report("test", [step("25 %", on=VariantCounts(requests=3, errors=1), off=OFF)])
    assert report.summary == (
        "Not enough data for a verdict at 25 %: let more requests run under both variants "
        "(see each comparison for what is missing)."
    )


# -- markdown and JSON ----------------------------------------------------------------


def test_markdown_shows_the_table_the_comparisons_the_summary_and_the_legend() -> None:
    text = markdown(build_report("What was measured.", rollout(ON_BAD)))
    lines = text.splitlines()
    assert lines[0] == "What was measured."
    header = (
        "| step | variant | requests | errors | error rate | 429s | give-ups | mean wait "
        "| mean request |"
    )
    assert lines[2] == header
    assert lines[3] == "|---|---|---:|---:|---:|---:|---:|---:|---:|"
    assert lines[5] == "| 25 % | on | 500 | 60 | 12.0 % | 80 | 50 | 0.5 s | 0.0 s |"
    assert lines[6].startswith("|  | off | 500 | 40 | 8.0 % |")
    assert "- 100 % vs 0 %: error rate on 12.0 % (60 of 500) vs off 8.0 % (40 of 500)" in text
    assert f"**{build_report('x', rollout(ON_BAD)).summary}**" in text
    assert "- **429s**: rate-limited answers" in text
    assert "import time" not in text


def test_markdown_shows_the_import_columns_when_a_simulation_has_them() -> None:
    legacy = {"off": Imports(projects=3, seconds=30.0, items=120, lost=45)}
    exponential = {"on": Imports(projects=3, seconds=5400.0, items=120, lost=0)}
    steps = [
        Step(label="0 %", percentage=0.0, counts={"off": OFF}, imports=legacy),
        Step(label="100 %", percentage=100.0, counts={"on": ON_GOOD}, imports=exponential),
    ]
    lines = markdown(build_report("test", steps)).splitlines()
    assert lines[2] == (
        "| step | variant | projects | requests | errors | error rate | 429s | give-ups "
        "| mean wait | import time | items lost |"
    )
    assert lines[4] == (
        "| 0 % | off | 3 | 500 | 40 | 8.0 % | 90 | 40 | 0.1 s | 30.0 s (incomplete) "
        "| 45 of 120 (37.5 %) |"
    )
    assert lines[5:6] == [
        "| 100 % | on | 3 | 500 | 10 | 2.0 % | 30 | 0 | 1.8 s | 1.5 h | 0 of 120 (0 %) |",
    ]


def test_json_has_rows_with_variant_and_error_rate_and_the_verdict() -> None:
    document = json.loads(json_report(build_report("test", rollout(ON_BAD))))
    assert set(document) == {"source", "alpha", "rows", "verdict", "comparisons", "notes"}
    assert [(row["step"], row["variant"], row["error_rate"]) for row in document["rows"]] == [
        ("0 %", "off", 0.08),
        ("25 %", "on", 0.12),
        ("25 %", "off", 0.08),
        ("50 %", "on", 0.12),
        ("50 %", "off", 0.08),
        ("100 %", "on", 0.12),
    ]
    verdict = document["verdict"]
    assert (verdict["conclusion"], verdict["increased"], verdict["alpha"]) == (
        "increased",
        True,
        0.05,
    )
    assert verdict["p_value"] == pytest.approx(0.0175075, abs=1e-6)
    assert verdict["confidence"] == pytest.approx(1 - verdict["p_value"])
    assert verdict["summary"].startswith("The error rate INCREASED")
    assert [c["comparison"] for c in document["comparisons"]] == ["25 %", "50 %", "100 % vs 0 %"]


def test_json_writes_null_where_a_variant_has_no_requests() -> None:
    report = build_report("test", [Step(label="metrics", percentage=None, counts={"off": OFF})])
    document = json.loads(json_report(report))
    assert (document["verdict"]["p_value"], document["verdict"]["z"]) == (None, None)
    assert document["verdict"]["error_rate_on"] is None
    assert document["rows"][0]["percentage"] is None


# -- the chart ------------------------------------------------------------------------


def test_write_chart_writes_a_png(tmp_path: Path) -> None:
    path = tmp_path / "charts" / "rollout.png"
    assert write_chart(build_report("test", rollout(ON_BAD)), path) == path
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_write_chart_wants_a_png_path(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"path must name a \.png file"):
        write_chart(build_report("test", rollout(ON_BAD)), tmp_path / "rollout.svg")
    assert list(tmp_path.iterdir()) == []
