"""The bb-backoff command: demo and schedule; bad arguments exit cleanly."""

from __future__ import annotations

import pytest

from bb_backoff._cli import main, schedule_table


def test_demo_imports_everything_with_the_flag_on_and_loses_items_with_it_off(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo"]) == 0
    lines = capsys.readouterr().out.splitlines()
    on = next(line.split() for line in lines if line.split()[:1] == ["on"])
    off = next(line.split() for line in lines if line.split()[:1] == ["off"])
    imported, expected, failed = int(on[1]), int(on[2]), int(on[3])
    assert (imported, failed) == (expected, 0)
    assert int(off[1]) < int(off[2])
    assert int(off[3]) > 0


def test_schedule_prints_the_side_by_side_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schedule", "--retries", "4"]) == 0
    out = capsys.readouterr().out
    assert schedule_table(4) in out
    assert "| 1 | 0 / 0.5 / 1 | 0 / 0.5 / 1 | 1 / 1 / 1 | 2 / 3.02 / 4 |" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["demo", "--limit", "-3"],
        ["demo", "--window", "soon"],
        ["schedule", "--retries", "0"],
        ["nonsense"],
        [],
    ],
)
def test_bad_arguments_exit_non_zero_with_a_message_not_a_traceback(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "usage: bb-backoff" in err
    assert "Traceback" not in err
