"""bb_backoff._bench._report: the markdown table, the JSON rows and the chart."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from bb_backoff._bench import SCENARIOS, Row, json_rows, markdown_table, write_chart
from bb_backoff._bench._report import COLUMNS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HEADER = (
    "| scenario | policy | time ÷ bound | calls | 429s | wasted | lost | give-ups "
    "| longest request |"
)
ALIGNMENT = "|---|---|---:|---:|---:|---:|---:|---:|---:|"
LEGEND_TITLE = "Scenarios (lower bound = the shortest import the rate limit allows):"


def make_row(**changes: Any) -> Row:
    """A row; ``complete`` follows ``lost`` unless given (a Row checks they agree)."""
    fields: dict[str, Any] = {
        "scenario": "no-hint",
        "policy": "bb-backoff, flag on",
        "mode": "async",
        "workers": 4,
        "time_ratio": 1.05,
        "seconds": 3780.0,
        "lower_bound": 3600.0,
        "calls": 178,
        "rate_limited": 119,
        "wasted": 2.017,
        "calls_needed": 59,
        "lost": 0,
        "duplicates": 0,
        "items": 81,
        "give_ups": 0,
        "p99_request": 0.2,
        "longest_request": 3610.0,
    }
    return Row(**{**fields, **changes})


ROWS = [
    make_row(),
    make_row(
        policy="bb-backoff, flag off (legacy)",
        time_ratio=0.004,
        seconds=14.4,
        calls=77,
        rate_limited=27,
        wasted=0.3,
        lost=18,
        give_ups=9,
        p99_request=2.3,
        longest_request=2.3,
    ),
    make_row(
        scenario="retry-after",
        time_ratio=1.0,
        calls=64,
        rate_limited=5,
        wasted=0.08,
        longest_request=3600.0,
    ),
]


def table_lines(rows: list[Row]) -> list[str]:
    return markdown_table(rows).split("\n")


# -- markdown_table ---------------------------------------------------------------------


def test_the_table_starts_with_the_header_and_right_aligns_the_numbers() -> None:
    assert table_lines(ROWS)[:2] == [HEADER, ALIGNMENT]


def test_the_table_has_one_line_per_row_labelling_each_scenario_on_its_first_row_only() -> None:
    assert table_lines(ROWS)[2:5] == [
        "| **no-hint** | bb-backoff, flag on | 1.05 | 178 | 119 | 202% | 0 | 0 | 60.2 min |",
        "|  | bb-backoff, flag off (legacy) | incomplete | 77 | 27 | 30% | 18 (22%) | 9 | 2.3 s |",
        "| **retry-after** | bb-backoff, flag on | 1.00 | 64 | 5 | 8% | 0 | 0 | 60.0 min |",
    ]


def test_a_run_that_lost_items_shows_incomplete_instead_of_a_ratio_that_reads_as_fast() -> None:
    quitter = make_row(time_ratio=0.004, lost=1, give_ups=1)
    assert table_lines([quitter])[2].split(" | ")[2] == "incomplete"


def test_an_incomplete_run_with_no_bound_is_incomplete_not_infinite() -> None:
    quitter = make_row(time_ratio=math.inf, lost=5, give_ups=2)
    assert table_lines([quitter])[2].split(" | ")[2] == "incomplete"


def test_calls_during_an_outage_are_shown_beside_the_calls() -> None:
    row = make_row(scenario="outage", calls=1403, outage_calls=135)
    assert table_lines([row])[2].split(" | ")[3] == "1403 (135 in the outage)"


def test_a_run_with_no_calls_during_an_outage_shows_the_calls_alone() -> None:
    row = make_row(scenario="outage", calls=1043, outage_calls=0)
    assert table_lines([row])[2].split(" | ")[3] == "1043"


def test_lost_items_are_shown_with_their_share_of_all_items() -> None:
    row = make_row(lost=2615, items=2615)
    assert "| 2615 (100%) |" in table_lines([row])[2]


@pytest.mark.parametrize(
    ("longest", "shown"),
    [(0.04, "0.0 s"), (89.9, "89.9 s"), (90.0, "1.5 min"), (5399.0, "90.0 min"), (5400.0, "1.5 h")],
)
def test_the_longest_request_is_shown_in_seconds_minutes_or_hours(
    longest: float, shown: str
) -> None:
    assert table_lines([make_row(longest_request=longest)])[2].endswith(f"| {shown} |")


def test_an_infinite_ratio_is_shown_as_infinity() -> None:
    assert "| ∞ |" in table_lines([make_row(time_ratio=math.inf)])[2]


def test_the_legend_lists_each_shown_scenario_once_in_table_order() -> None:
    rows = [ROWS[2], *ROWS[:2]]  # retry-after first: the legend keeps the scenarios' order
    legend = table_lines(rows)[5:10]
    assert legend == [
        "",
        LEGEND_TITLE,
        "",
        (
            "- **no-hint**: 429s with no hint at all, plain-text body (Bitbucket's usual); "
            "4 workers, 59 calls needed, 81 items, lower bound 60.0 min."
        ),
        (
            "- **retry-after**: 429s with Retry-After (delta-seconds); "
            "4 workers, 59 calls needed, 81 items, lower bound 60.0 min."
        ),
    ]


def test_the_legend_leaves_out_the_scenarios_not_shown() -> None:
    legend = "\n".join(table_lines([make_row()])[3:])
    assert [s.name for s in SCENARIOS if f"**{s.name}**" in legend] == ["no-hint"]


def test_the_legend_ends_with_one_line_per_column_after_the_scenarios() -> None:
    lines = table_lines(ROWS)
    columns = lines[lines.index("Columns:") + 2 :]
    explained = [line.removeprefix("- **").split("**")[0] for line in columns]
    assert explained == list(COLUMNS[2:])
    assert lines[lines.index("Columns:") - 1] == ""
    assert lines.index(LEGEND_TITLE) < lines.index("Columns:")


def test_the_legend_says_why_wasted_can_exceed_100_percent() -> None:
    wasted = next(line for line in table_lines(ROWS) if line.startswith("- **wasted**"))
    assert wasted == (
        "- **wasted**: calls that delivered nothing (429s, faults, outage 503s, repeats of "
        "calls already made), as a share of the calls a complete import needs, which is why "
        "it can exceed 100 %."
    )


# -- json_rows --------------------------------------------------------------------------


def test_json_rows_round_trip_to_the_row_dicts() -> None:
    assert json.loads(json_rows(ROWS)) == [row.as_dict() for row in ROWS]


def test_every_json_row_says_whether_the_import_was_complete() -> None:
    assert [row["complete"] for row in json.loads(json_rows(ROWS))] == [True, False, True]


def test_json_rows_carry_the_calls_during_the_outage_and_the_request_durations() -> None:
    row = make_row(scenario="outage", outage_calls=135, p99_request=3500.0, longest_request=3900.0)
    (loaded,) = json.loads(json_rows([row]))
    assert (loaded["outage_calls"], loaded["p99_request"], loaded["longest_request"]) == (
        135,
        3500.0,
        3900.0,
    )


def test_json_rows_of_no_rows_is_an_empty_list() -> None:
    assert json.loads(json_rows([])) == []


def test_json_rows_refuses_nan() -> None:
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        json_rows([make_row(longest_request=math.nan)])


def test_json_rows_serializes_an_infinite_time_ratio_as_strict_json_null() -> None:
    """run_one and run_real give an infinite ratio when nothing bounds the import (bound 0).

    Strict JSON has no infinity; the row must still come out, the ratio as null.
    """
    row = make_row(lower_bound=0.0, time_ratio=math.inf)
    assert json.loads(json_rows([row])) == [{**row.as_dict(), "time_ratio": None}]


# -- write_chart ------------------------------------------------------------------------


def test_write_chart_writes_a_png_into_a_new_directory(tmp_path: Path) -> None:
    path = tmp_path / "results" / "latest" / "chart.png"
    rows = [*ROWS, make_row(scenario="retry-after", policy="bb-backoff, flag off (legacy)")]
    assert write_chart(rows, path) == path
    assert path.read_bytes().startswith(PNG_MAGIC)


def test_write_chart_draws_missing_cells_and_infinite_ratios(tmp_path: Path) -> None:
    # retry-after has no legacy row: that cell is empty, like the infinite ratio.
    rows = [*ROWS, make_row(scenario="multi-hour", time_ratio=math.inf)]
    path = write_chart(rows, tmp_path / "chart.png")
    assert path.read_bytes().startswith(PNG_MAGIC)
