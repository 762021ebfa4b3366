"""bb_backoff._bench._report: the markdown table, the JSON rows and the chart."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import attrs
import pytest

from bb_backoff._bench import SCENARIOS, Row, json_rows, markdown_table, write_chart

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HEADER = (
    "| scenario | policy | time ÷ bound | calls | 429s | wasted | lost | give-ups | p95 request |"
)
ALIGNMENT = "|---|---|---:|---:|---:|---:|---:|---:|---:|"
LEGEND_TITLE = "Scenarios (lower bound = the shortest import the rate limit allows):"


def make_row(**changes: Any) -> Row:
    row = Row(
        scenario="no-hint",
        policy="bb-backoff, flag on",
        mode="async",
        workers=4,
        time_ratio=1.05,
        seconds=3780.0,
        lower_bound=3600.0,
        calls=178,
        rate_limited=119,
        wasted=2.017,
        calls_needed=59,
        lost=0,
        duplicates=0,
        items=81,
        give_ups=0,
        p95=0.2,
    )
    return attrs.evolve(row, **changes)


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
        p95=2.3,
    ),
    make_row(scenario="retry-after", time_ratio=1.0, calls=64, rate_limited=5, wasted=0.08),
]


def table_lines(rows: list[Row]) -> list[str]:
    return markdown_table(rows).split("\n")


# -- markdown_table ---------------------------------------------------------------------


def test_the_table_starts_with_the_header_and_right_aligns_the_numbers() -> None:
    assert table_lines(ROWS)[:2] == [HEADER, ALIGNMENT]


def test_the_table_has_one_line_per_row_labelling_each_scenario_on_its_first_row_only() -> None:
    assert table_lines(ROWS)[2:5] == [
        "| **no-hint** | bb-backoff, flag on | 1.05 | 178 | 119 | 202% | 0 | 0 | 0.2 s |",
        "|  | bb-backoff, flag off (legacy) | 0.00 | 77 | 27 | 30% | 18 (22%) | 9 | 2.3 s |",
        "| **retry-after** | bb-backoff, flag on | 1.00 | 64 | 5 | 8% | 0 | 0 | 0.2 s |",
    ]


def test_lost_items_are_shown_with_their_share_of_all_items() -> None:
    row = make_row(lost=2615, items=2615)
    assert "| 2615 (100%) |" in table_lines([row])[2]


@pytest.mark.parametrize(
    ("p95", "shown"),
    [(0.04, "0.0 s"), (89.9, "89.9 s"), (90.0, "1.5 min"), (5399.0, "90.0 min"), (5400.0, "1.5 h")],
)
def test_request_durations_are_shown_in_seconds_minutes_or_hours(p95: float, shown: str) -> None:
    assert table_lines([make_row(p95=p95)])[2].endswith(f"| {shown} |")


def test_an_infinite_ratio_is_shown_as_infinity() -> None:
    assert "| ∞ |" in table_lines([make_row(time_ratio=math.inf)])[2]


def test_the_legend_lists_each_shown_scenario_once_in_table_order() -> None:
    rows = [ROWS[2], *ROWS[:2]]  # retry-after first: the legend keeps the scenarios' order
    legend = table_lines(rows)[5:]
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


# -- json_rows --------------------------------------------------------------------------


def test_json_rows_round_trip_to_the_row_dicts() -> None:
    assert json.loads(json_rows(ROWS)) == [row.as_dict() for row in ROWS]


def test_json_rows_of_no_rows_is_an_empty_list() -> None:
    assert json.loads(json_rows([])) == []


def test_json_rows_refuses_nan() -> None:
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        json_rows([make_row(p95=math.nan)])


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
