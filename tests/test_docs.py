"""The docs show what the code does: the schedule table is the one the code prints."""

from __future__ import annotations

from pathlib import Path

from bb_backoff._cli import schedule_table

ROOT = Path(__file__).parent.parent


def test_the_policies_page_shows_the_current_schedules() -> None:
    page = (ROOT / "docs" / "policies.md").read_text()
    assert schedule_table() in page


def test_readme_opens_with_the_two_quickstart_commands() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    opening = lines[lines.index("```sh") + 1 : lines.index("```sh") + 3]
    assert opening[0].endswith("bb-backoff bench")
    assert opening[1].endswith("python -m pytest")


def test_readme_shows_the_latest_benchmark_table() -> None:
    """README and benchmarks/results/table.md are written by the same run: they must agree.

    Only the full default run from the checkout's root (README's first line)
    writes table.md; any other local run (a scenario, --quick, --seed, ...)
    writes nowhere unless told --output, so it cannot break this test.
    """
    table = (ROOT / "benchmarks" / "results" / "table.md").read_text().strip()
    assert table in (ROOT / "README.md").read_text()
