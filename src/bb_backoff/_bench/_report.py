"""The benchmark's outputs: a markdown table, JSON rows and a PNG chart."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from ._runner import Row
from ._scenarios import SCENARIOS

COLUMNS: Final = (
    "scenario",
    "policy",
    "time ÷ bound",
    "calls",
    "429s",
    "wasted",
    "lost",
    "give-ups",
    "longest request",
)
INCOMPLETE: Final = "incomplete"
"""What the ratio cell of a run that lost items says instead of a ratio."""
COLUMN_LEGEND: Final = (
    "Columns:",
    "",
    (
        "- **time ÷ bound**: completion time over the lower bound (1 is ideal). "
        f'"{INCOMPLETE}" when the import lost items: it stopped early because it gave up, '
        "so its time says nothing about speed."
    ),
    (
        "- **calls**: requests the API received, 429s, faults and outage 503s included "
        '("n in the outage": how many arrived while the API was down).'
    ),
    "- **429s**: of those, the ones answered 429 (rate limited).",
    (
        "- **wasted**: calls that delivered nothing (429s, faults, outage 503s, repeats of "
        "calls already made), as a share of the calls a complete import needs, which is why "
        "it can exceed 100 %."
    ),
    "- **lost**: dataset items the import does not have (and their share of all items).",
    "- **give-ups**: logical requests (a GET with all its retries) that failed for good.",
    (
        "- **longest request**: the longest single logical request, retries and waits "
        "included: a request that waited out the hourly window shows about an hour."
    ),
)
"""The legend of the table's columns, one markdown line each."""


def _duration(seconds: float) -> str:
    if seconds < 90:  # noqa: PLR2004
        return f"{seconds:.1f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _ratio(row: Row) -> str:
    # A run that gave up finished early because it stopped, not because it
    # was fast: a ratio would read as a win.
    if not row.complete:
        return INCOMPLETE
    return "∞" if math.isinf(row.time_ratio) else f"{row.time_ratio:.2f}"


def _calls(row: Row) -> str:
    if row.outage_calls:
        return f"{row.calls} ({row.outage_calls} in the outage)"
    return str(row.calls)


def markdown_table(rows: Sequence[Row]) -> str:
    """The rows as one markdown table, with a legend of the scenarios and one of the columns."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|---|---|" + "---:|" * (len(COLUMNS) - 2)]
    previous = None
    for row in rows:
        label = f"**{row.scenario}**" if row.scenario != previous else ""
        previous = row.scenario
        lost = f"{row.lost} ({row.lost / row.items:.0%})" if row.lost else "0"
        lines.append(
            "| "
            + " | ".join(
                [
                    label,
                    row.policy,
                    _ratio(row),
                    _calls(row),
                    str(row.rate_limited),
                    f"{row.wasted:.0%}",
                    lost,
                    str(row.give_ups),
                    _duration(row.longest_request),
                ]
            )
            + " |"
        )
    shown = {row.scenario: row for row in rows}
    summaries = {scenario.name: scenario.summary for scenario in SCENARIOS}
    legend = [
        "",
        "Scenarios (lower bound = the shortest import the rate limit allows):",
        "",
    ]
    # The known scenarios in their usual order, then any custom ones.
    names = [s.name for s in SCENARIOS if s.name in shown] + [
        name for name in shown if name not in summaries
    ]
    for name in names:
        row = shown[name]
        summary = summaries.get(name, "a custom scenario")
        legend.append(
            f"- **{name}**: {summary}; {row.workers} workers, "
            f"{row.calls_needed} calls needed, {row.items} items, "
            f"lower bound {_duration(row.lower_bound)}."
        )
    return "\n".join([*lines, *legend, "", *COLUMN_LEGEND])


def json_rows(rows: Sequence[Row]) -> str:
    """The rows as a JSON list of objects, one per scenario and policy."""
    return json.dumps([row.as_dict() for row in rows], indent=2, allow_nan=False, default=str)


def write_chart(rows: Sequence[Row], path: Path) -> Path:
    """Three heat maps (time ÷ bound, items lost, wasted calls), policies by scenarios, as a PNG.

    Raises:
        ImportError: when matplotlib is not installed (``pip install 'bb-backoff[bench]'``).
    """
    import matplotlib as mpl  # noqa: PLC0415 (an optional dependency, loaded when drawing)

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    scenarios = list(dict.fromkeys(row.scenario for row in rows))
    policies = list(dict.fromkeys(row.policy for row in rows))
    table = {(row.policy, row.scenario): row for row in rows}

    def grid(value: str) -> list[list[float]]:
        return [
            [float(getattr(table[p, s], value)) if (p, s) in table else math.nan for s in scenarios]
            for p in policies
        ]

    # A run that gave up finished early because it stopped, not because it was
    # fast: its time is not comparable, so the cell says "incomplete" instead.
    ratios = [
        [
            table[p, s].time_ratio if (p, s) in table and table[p, s].complete else math.nan
            for s in scenarios
        ]
        for p in policies
    ]
    lost = [
        [
            100 * table[p, s].lost / table[p, s].items if (p, s) in table else math.nan
            for s in scenarios
        ]
        for p in policies
    ]
    wasted = [
        [100 * table[p, s].wasted if (p, s) in table else math.nan for s in scenarios]
        for p in policies
    ]
    figure, (left, middle, right) = plt.subplots(
        3, 1, figsize=(3.0 + 1.1 * len(scenarios), 1.5 + 3 * (0.9 + 0.32 * len(policies)))
    )
    panels = (
        (left, ratios, "completion ÷ lower bound, complete imports (1 is ideal)", "{:.2f}", 1.0),
        (middle, lost, "items lost, % (0 is the goal)", "{:.0f}", 0.0),
        (right, wasted, "wasted calls, % of the calls needed", "{:.0f}", 0.0),
    )
    colours = {left: "Purples", middle: "Reds", right: "Oranges"}
    for axes, values, title, fmt, bottom in panels:
        finite = [v for line in values for v in line if math.isfinite(v)]
        top = max(finite, default=1.0)
        image = axes.imshow(
            values,
            aspect="auto",
            cmap=colours[axes],
            vmin=bottom,
            vmax=max(top, bottom + 0.1),
        )
        axes.set_title(title, fontsize=10)
        axes.set_xticks(range(len(scenarios)), scenarios, rotation=30, ha="right", fontsize=8)
        axes.set_yticks(range(len(policies)), policies, fontsize=8)
        for y, line in enumerate(values):
            for x, value in enumerate(line):
                text = fmt.format(value) if math.isfinite(value) else "incomplete"
                if value == math.inf:
                    text = "no bound"
                dark = math.isfinite(value) and value > bottom + 0.6 * (top - bottom)
                colour = "white" if dark else ("black" if math.isfinite(value) else "grey")
                axes.text(x, y, text, ha="center", va="center", fontsize=7, color=colour)
        figure.colorbar(image, ax=axes, fraction=0.04)
    figure.suptitle("bb-backoff import benchmark (virtual time, one run, same seed for all)")
    figure.tight_layout(rect=(0, 0, 1, 0.985))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(figure)
    return path
