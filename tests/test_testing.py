"""bb_backoff.testing.VirtualClock: time moves only when someone sleeps."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bb_backoff import testing
from bb_backoff.testing import VirtualClock


def test_sleep_moves_both_clocks_forward_at_once_and_records_the_wait() -> None:
    clock = VirtualClock(start=10, epoch=1_000_000)
    clock.sleep(2.5)
    clock.sleep(timedelta(seconds=1))  # type: ignore[arg-type]
    assert clock.monotonic() == 13.5
    assert clock.time() == 1_000_013.5
    assert clock.sleeps == [2.5, 1.0]
    assert clock.slept == 3.5


def test_advance_moves_time_without_recording_a_wait() -> None:
    clock = VirtualClock()
    clock.advance(60)
    assert (clock.monotonic(), clock.sleeps) == (60.0, [])


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "1"])
def test_a_negative_or_non_finite_sleep_is_refused(bad: object) -> None:
    clock = VirtualClock()
    with pytest.raises(ValueError, match="seconds"):
        clock.sleep(bad)  # type: ignore[arg-type]
    assert clock.monotonic() == 0.0


@pytest.mark.parametrize(
    "epoch",
    [float("nan"), float("inf"), -1.0, None, "1795000000", True, 10**400, 253_402_300_800],
    ids=["nan", "inf", "negative", "none", "str", "bool", "huge", "year-10000"],
)
def test_an_epoch_that_is_not_epoch_seconds_is_refused_naming_it(epoch: object) -> None:
    """NaN was taken (every time() then NaN), None failed in float() naming nothing."""
    with pytest.raises(ValueError, match=r"^epoch must be epoch seconds from 0 to"):
        VirtualClock(epoch=epoch)  # type: ignore[arg-type]


@pytest.mark.parametrize("epoch", [0, 1_795_000_000, 253_402_300_799.0])
def test_an_epoch_from_1970_to_the_end_of_year_9999_is_taken(epoch: float) -> None:
    assert VirtualClock(epoch=epoch).time() == float(epoch)


@given(st.lists(st.floats(min_value=0, max_value=1e6), max_size=50))
def test_monotonic_time_is_the_sum_of_the_sleeps(waits: list[float]) -> None:
    clock = VirtualClock()
    readings = []
    for wait in waits:
        clock.sleep(wait)
        readings.append(clock.monotonic())
    assert readings == sorted(readings)
    assert clock.sleeps == waits


def test_the_testing_packages_all_is_sorted_and_complete() -> None:
    public = {
        name
        for name, value in vars(testing).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith("bb_backoff")
    }
    assert sorted(testing.__all__) == testing.__all__
    assert public == set(testing.__all__)
