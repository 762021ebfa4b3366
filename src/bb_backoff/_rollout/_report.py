"""The rollout report: one row per step and variant, the verdicts, as markdown, JSON or a chart.

A :class:`Step` is what a rollout step measured (counts by variant, and
for a simulation how each variant's imports went); :func:`build_report`
turns steps into :class:`Row` objects and :class:`~._stats.Verdict`
objects:

- a step with both variants is judged on its own: the two cohorts met the
  same API at the same time;
- a step with the flag on everywhere (100 %) is judged against the first
  step with it off everywhere (0 %), when there is one: the same fleet on
  the same API, in two runs;
- a step with the flag off everywhere gets a note, not a verdict, when
  another step has requests with the flag on (it is the baseline, or has
  nothing to compare); alone, it gets "not enough data" naming the missing
  variant, as does a step with the flag on everywhere and no baseline.

The report's overall :attr:`Report.verdict` is the most alarming of the
comparisons ("increased" before "no significant increase" before "not
enough data" before "no increase"), the smallest p-value among equals: one
answer to "did the error rate increase with the flag on?".  Each
comparison is tested at ``alpha`` on its own (no correction for several
comparisons), so with more steps a false alarm is more likely, never a
missed increase: the cautious side for a rollout.

Everything here is pure; matplotlib is imported only to draw the chart.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import attrs

from .._flags import FLAG_NAME
from ._counts import VARIANTS, VariantCounts
from ._stats import DEFAULT_ALPHA, Conclusion, Verdict, judge, p_text, percent

ROLLBACK: Final = f"bb-backoff flag set {FLAG_NAME} false"
"""How to roll the flag back, as the summary of an increase says (see docs/rollout.md)."""
DEFINITIONS: Final = {
    "projects": "the projects whose requests ran under the variant (Flipper's cohort).",
    "requests": "logical requests, each a GET with all its retries.",
    "errors": (
        'requests whose outcome is not "ok" (the request raised: rate limited, retries '
        "exhausted, not found, ...)."
    ),
    "error rate": "errors / requests.",
    "429s": (
        "rate-limited answers: retries for a rate limit, plus requests that ended rate limited."
    ),
    "give-ups": (
        "errors after the policy or the account gate stopped retrying (each is also an "
        "error; a 404 is an error but not a give-up)."
    ),
    "mean wait": "seconds waited per request (backoff and the account gate).",
    "mean request": "seconds per request, its retries and waits included.",
    "import time": (
        "one project's import, start to end, averaged over the variant's projects (virtual "
        'time); "incomplete" when items were lost: an import that gave up ended early.'
    ),
    "items lost": (
        "items of their repositories the imports did not get (a request that failed for good "
        "loses what was behind it)."
    ),
}
"""The legend: what each column means."""


@attrs.frozen(kw_only=True)
class Imports:
    """How one variant's project imports went in a simulated step.

    Attributes:
        projects: projects whose requests ran under the variant.
        seconds: their mean import time, in seconds.
        items: items their repositories hold.
        lost: of those, items the imports did not get.
    """

    projects: int
    seconds: float
    items: int
    lost: int


@attrs.frozen(kw_only=True)
class Step:
    """What one rollout step measured.

    Attributes:
        label: the step's name in the report, like ``"25 %"``.
        percentage: percent of actors with the flag on, if known.
        counts: what each variant's requests did.
        imports: how each variant's imports went (a simulation only).
    """

    label: str
    percentage: float | None
    counts: Mapping[str, VariantCounts]
    imports: Mapping[str, Imports] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class Row:
    """One variant in one step: the report's line.

    Attributes:
        step: the step's label.
        percentage: percent of actors with the flag on, if known.
        variant: ``"on"`` or ``"off"``.
        requests: logical requests.
        errors: requests whose outcome is not ``"ok"``.
        error_rate: errors / requests (``None`` without requests).
        give_ups: errors after retrying stopped.
        rate_limited: 429s seen (retried, or ending the request).
        retries: retries for any reason.
        mean_wait_seconds: seconds waited per request.
        mean_request_seconds: seconds per request, waits included.
        projects: projects under this variant (a simulation only).
        seconds: their mean import time in seconds (a simulation only).
        items: items their repositories hold (a simulation only).
        lost: items their imports did not get (a simulation only).
    """

    step: str
    percentage: float | None
    variant: str
    requests: int
    errors: int
    error_rate: float | None
    give_ups: int
    rate_limited: int
    retries: int
    mean_wait_seconds: float | None
    mean_request_seconds: float | None
    projects: int | None = None
    seconds: float | None = None
    items: int | None = None
    lost: int | None = None


@attrs.frozen(kw_only=True)
class Report:
    """Everything a rollout report says.

    Attributes:
        source: what was measured, one paragraph.
        alpha: the significance level of the verdicts.
        rows: one per step and variant.
        verdicts: one per comparison, at least one.
        notes: steps without a verdict of their own, and why.
        verdict: the overall answer: the most alarming of ``verdicts``.
        summary: one line: an increase (and the rollback), none, or not enough data.
    """

    source: str
    alpha: float
    rows: tuple[Row, ...]
    verdicts: tuple[Verdict, ...]
    notes: tuple[str, ...]
    verdict: Verdict
    summary: str


def _ordered(variants: Iterable[str]) -> list[str]:
    """``on`` first, then ``off``, then anything else by name."""
    present = set(variants)
    return [v for v in VARIANTS if v in present] + sorted(present - set(VARIANTS))


def rows_of(step: Step) -> list[Row]:
    """The step's rows, one per variant, ``on`` first."""
    rows = []
    for variant in _ordered([*step.counts, *step.imports]):
        counts = step.counts.get(variant, VariantCounts())
        imports = step.imports.get(variant)
        rows.append(
            Row(
                step=step.label,
                percentage=step.percentage,
                variant=variant,
                requests=counts.requests,
                errors=counts.errors,
                error_rate=counts.error_rate,
                give_ups=counts.give_ups,
                rate_limited=counts.rate_limited,
                retries=counts.retries,
                mean_wait_seconds=counts.mean_wait,
                mean_request_seconds=counts.mean_duration,
                projects=None if imports is None else imports.projects,
                seconds=None if imports is None else imports.seconds,
                items=None if imports is None else imports.items,
                lost=None if imports is None else imports.lost,
            )
        )
    return rows


def _requests(step: Step, variant: str) -> VariantCounts:
    return step.counts.get(variant, VariantCounts())


def _judge(label: str, on: VariantCounts, off: VariantCounts, alpha: float) -> Verdict:
    return judge(
        label,
        errors_on=on.errors,
        requests_on=on.requests,
        errors_off=off.errors,
        requests_off=off.requests,
        alpha=alpha,
    )


def verdicts_of(steps: Sequence[Step], alpha: float) -> tuple[list[Verdict], list[str]]:
    """The verdicts of the steps, and notes on the steps that have none.

    See the module's docstring for which step is compared with which.
    """

    def has(step: Step, variant: str) -> bool:
        return _requests(step, variant).requests > 0

    only_off = [s for s in steps if has(s, "off") and not has(s, "on")]
    baseline = only_off[0] if only_off else None
    any_on = any(has(s, "on") for s in steps)
    verdicts: list[Verdict] = []
    notes: list[str] = []
    for step in steps:
        on, off = _requests(step, "on"), _requests(step, "off")
        if step in only_off and any_on:
            rate = f"error rate {percent(off.errors / off.requests)}"
            role = (
                "the baseline: the steps with the flag on everywhere are compared with it"
                if step is baseline and any(has(s, "on") and not has(s, "off") for s in steps)
                else "nothing to compare"
            )
            notes.append(f"{step.label}: every request with the flag off ({rate}); {role}")
        elif baseline is not None and has(step, "on") and not has(step, "off"):
            label = f"{step.label} vs {baseline.label}"
            verdicts.append(_judge(label, on, _requests(baseline, "off"), alpha))
        else:
            verdicts.append(_judge(step.label, on, off, alpha))
    return verdicts, notes


# Most alarming first: the overall verdict is the first of these any comparison reached.
_SEVERITY: Final = (
    Conclusion.INCREASED,
    Conclusion.NOT_SIGNIFICANT,
    Conclusion.NOT_ENOUGH_DATA,
    Conclusion.NO_INCREASE,
)


def overall(verdicts: Sequence[Verdict]) -> Verdict:
    """The most alarming verdict; among equals, the one with the smallest p-value.

    Raises:
        ValueError: ``verdicts`` is empty.
    """
    if not verdicts:
        raise ValueError("verdicts must hold at least one verdict")
    return min(
        verdicts,
        key=lambda v: (
            _SEVERITY.index(v.conclusion),
            1.0 if v.p_value is None else v.p_value,
        ),
    )


def summary_of(verdicts: Sequence[Verdict]) -> str:
    """One line: where the error rate increased (and how to roll back), or that it did not."""
    by_conclusion = {
        conclusion: [v.label for v in verdicts if v.conclusion is conclusion]
        for conclusion in Conclusion
    }
    worst = overall(verdicts)
    if worst.conclusion is Conclusion.INCREASED:
        where = ", ".join(by_conclusion[Conclusion.INCREASED])
        return (
            f"The error rate INCREASED with the flag on at {where} "
            f"(one-sided {p_text(worst.p_value or 0.0)}): stop the rollout and roll back: "
            f"{ROLLBACK}"
        )
    if worst.conclusion is Conclusion.NOT_SIGNIFICANT:
        where = ", ".join(by_conclusion[Conclusion.NOT_SIGNIFICANT])
        return (
            f"The error rate was higher with the flag on at {where}, but not significantly "
            f"(smallest one-sided {p_text(worst.p_value or 1.0)}, alpha {worst.alpha:g}): "
            "hold this step and let more requests run before the next."
        )
    if worst.conclusion is Conclusion.NOT_ENOUGH_DATA:
        where = ", ".join(by_conclusion[Conclusion.NOT_ENOUGH_DATA])
        return (
            f"Not enough data for a verdict at {where}: let more requests run under both "
            "variants (see each comparison for what is missing)."
        )
    return "No increase of the error rate with the flag on."


def build_report(source: str, steps: Sequence[Step], *, alpha: float = DEFAULT_ALPHA) -> Report:
    """The report of ``steps``: rows, verdicts, notes, the overall verdict and a summary.

    Args:
        source: what was measured, one paragraph.
        steps: the steps, in rollout order; at least one.
        alpha: the significance level, above 0 and at most 0.5.

    Raises:
        ValueError: for an invalid ``alpha``, or no steps.
    """
    if not steps:
        raise ValueError("steps must hold at least one step")
    verdicts, notes = verdicts_of(steps, alpha)
    return Report(
        source=source,
        alpha=alpha,
        rows=tuple(row for step in steps for row in rows_of(step)),
        verdicts=tuple(verdicts),
        notes=tuple(notes),
        verdict=overall(verdicts),
        summary=summary_of(verdicts),
    )


# -- markdown ---------------------------------------------------------------------------


def duration(seconds: float) -> str:
    """Seconds for people: ``"0.9 s"``, ``"12.0 min"``, ``"1.8 h"``."""
    if seconds < 90:  # noqa: PLR2004
        return f"{seconds:.1f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _lost(row: Row) -> str:
    if row.lost is None or not row.items:
        return "-"
    return f"{row.lost:,} of {row.items:,} ({percent(row.lost / row.items)})"


def _import_time(row: Row) -> str:
    if row.seconds is None:
        return "-"
    return duration(row.seconds) + (" (incomplete)" if row.lost else "")


def _or_dash(value: float | None, show: Any) -> str:
    return "-" if value is None else str(show(value))


# (header, cell, whether the column applies to a row)
_COLUMNS: Final = (
    ("step", lambda row: row.step, lambda _row: True),
    ("variant", lambda row: row.variant, lambda _row: True),
    (
        "projects",
        lambda row: _or_dash(row.projects, "{:,}".format),
        lambda r: r.projects is not None,
    ),
    ("requests", lambda row: f"{row.requests:,}", lambda _row: True),
    ("errors", lambda row: f"{row.errors:,}", lambda _row: True),
    ("error rate", lambda row: _or_dash(row.error_rate, percent), lambda _row: True),
    ("429s", lambda row: f"{row.rate_limited:,}", lambda _row: True),
    ("give-ups", lambda row: f"{row.give_ups:,}", lambda _row: True),
    ("mean wait", lambda row: _or_dash(row.mean_wait_seconds, duration), lambda _row: True),
    (
        "mean request",
        lambda row: _or_dash(row.mean_request_seconds, duration),
        lambda row: row.seconds is None,
    ),
    ("import time", _import_time, lambda r: r.seconds is not None),
    ("items lost", _lost, lambda row: row.items is not None),
)


def markdown(report: Report) -> str:
    """The report as markdown: the source, the table, the verdicts, the summary, the legend."""
    columns = [c for c in _COLUMNS if any(c[2](row) for row in report.rows)]
    left_aligned = {"step", "variant"}
    lines = [
        report.source,
        "",
        "| " + " | ".join(header for header, _, _ in columns) + " |",
        "|" + "".join("---|" if header in left_aligned else "---:|" for header, _, _ in columns),
    ]
    previous = None
    for row in report.rows:
        cells = [cell(row) for _, cell, _ in columns]
        if row.step == previous:
            cells[0] = ""
        previous = row.step
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        (
            "Did the error rate increase with the flag on? One-sided pooled two-proportion "
            f"z-test, alpha {report.alpha:g}:"
        ),
        "",
        *(f"- {note}" for note in report.notes),
        *(f"- {verdict.text}" for verdict in report.verdicts),
        "",
        f"**{report.summary}**",
        "",
        "Columns:",
        "",
        *(
            f"- **{header}**: {DEFINITIONS[header]}"
            for header, _, _ in columns
            if header in DEFINITIONS
        ),
    ]
    return "\n".join(lines)


# -- JSON -------------------------------------------------------------------------------


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def verdict_dict(verdict: Verdict) -> dict[str, Any]:
    """A verdict as plain JSON-ready values."""
    return {
        "comparison": verdict.label,
        "conclusion": verdict.conclusion.value,
        "increased": verdict.conclusion is Conclusion.INCREASED,
        "errors_on": verdict.errors_on,
        "requests_on": verdict.requests_on,
        "error_rate_on": verdict.error_rate_on,
        "errors_off": verdict.errors_off,
        "requests_off": verdict.requests_off,
        "error_rate_off": verdict.error_rate_off,
        "z": _finite(verdict.z),
        "p_value": verdict.p_value,
        "confidence": verdict.confidence,
        "alpha": verdict.alpha,
        "text": verdict.text,
    }


def json_report(report: Report) -> str:
    """The report as one JSON object.

    Keys: ``source``, ``alpha``, ``rows`` (one object per step and variant,
    the fields of :class:`Row`: ``step``, ``variant``, ``error_rate``, ...),
    ``verdict`` (the overall answer: :func:`verdict_dict` of
    :attr:`Report.verdict`, with ``summary``), ``comparisons`` (every
    verdict), ``notes``.
    """
    document = {
        "source": report.source,
        "alpha": report.alpha,
        "rows": [{k: _finite(v) for k, v in attrs.asdict(row).items()} for row in report.rows],
        "verdict": {**verdict_dict(report.verdict), "summary": report.summary},
        "comparisons": [verdict_dict(verdict) for verdict in report.verdicts],
        "notes": list(report.notes),
    }
    return json.dumps(document, indent=2, allow_nan=False)


# -- the chart --------------------------------------------------------------------------


def write_chart(report: Report, path: Path) -> Path:
    """Draw bars by step and variant: error rates, and import times and items lost when known.

    Args:
        report: the report to draw.
        path: the PNG file to write (its directory is created if missing).

    Returns:
        ``path``.

    Raises:
        ValueError: ``path`` does not end in ``.png``.
        ImportError: matplotlib is not installed (``pip install 'bb-backoff[bench]'``).
    """
    if path.suffix.lower() != ".png":
        raise ValueError(f"path must name a .png file, got {str(path)!r}")
    import matplotlib as mpl  # noqa: PLC0415 (an optional dependency, loaded when drawing)

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    steps = list(dict.fromkeys(row.step for row in report.rows))
    variants = _ordered(row.variant for row in report.rows)
    table = {(row.step, row.variant): row for row in report.rows}

    def values(measure: Any) -> dict[str, list[float]]:
        return {
            variant: [
                math.nan if (s, variant) not in table else _nan(measure(table[s, variant]))
                for s in steps
            ]
            for variant in variants
        }

    panels: list[tuple[str, dict[str, list[float]]]] = [
        ("error rate, % of requests", values(lambda r: _scaled(r.error_rate, 100))),
    ]
    if any(row.seconds is not None for row in report.rows):
        panels.append(
            ("mean import time per project, hours", values(lambda r: _scaled(r.seconds, 1 / 3600)))
        )
        panels.append(
            (
                "items lost, % of the variant's items",
                values(lambda r: _scaled(_share(r.lost, r.items), 100)),
            )
        )
    else:
        panels.append(("mean wait per request, seconds", values(lambda r: r.mean_wait_seconds)))
    colours = {"on": "tab:blue", "off": "tab:orange"}
    figure, axes_list = plt.subplots(
        1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False
    )
    width = 0.8 / max(1, len(variants))
    for axes, (title, by_variant) in zip(axes_list[0], panels, strict=True):
        for index, variant in enumerate(variants):
            positions = [x + (index - (len(variants) - 1) / 2) * width for x in range(len(steps))]
            heights = [0.0 if math.isnan(v) else v for v in by_variant[variant]]
            bars = axes.bar(
                positions,
                heights,
                width,
                label=f"flag {variant}",
                color=colours.get(variant, "tab:grey"),
            )
            for bar, value in zip(bars, by_variant[variant], strict=True):
                if not math.isnan(value):
                    axes.annotate(
                        f"{value:.3g}",
                        (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center",
                        va="bottom",
                        fontsize=7,
                    )
        axes.set_title(title, fontsize=9)
        axes.set_xticks(range(len(steps)), steps, fontsize=8)
        axes.set_xlabel("step (percentage of actors)", fontsize=8)
        axes.legend(fontsize=7)
    figure.suptitle(f"{FLAG_NAME} rollout", fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(figure)
    return path


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _scaled(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def _share(part: int | None, whole: int | None) -> float | None:
    return None if part is None or not whole else part / whole
