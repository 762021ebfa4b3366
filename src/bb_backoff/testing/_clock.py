"""A virtual clock: time passes only when someone sleeps."""

from __future__ import annotations

import contextlib
import math
import threading
from typing import Final

from .._exceptions import short_repr
from .._timing import to_seconds

DEFAULT_EPOCH: Final = 1_795_000_000.0
"""Epoch seconds at virtual time 0: 2026-11-18T11:06:40Z, fixed so runs repeat."""
LATEST_EPOCH: Final = 253_402_300_799.0
"""The last epoch second an HTTP-date shows: 9999-12-31T23:59:59Z."""


def _epoch(value: object) -> float:
    """``epoch`` as float seconds, or ``ValueError`` naming it."""
    seconds = math.nan
    if isinstance(value, int | float) and not isinstance(value, bool):
        with contextlib.suppress(OverflowError):  # an int too large for a float
            seconds = float(value)
    if not 0 <= seconds <= LATEST_EPOCH:  # (NaN is in no range)
        raise ValueError(
            f"epoch must be epoch seconds from 0 to {LATEST_EPOCH:,.0f} (the end of year "
            f"9999, the last an HTTP-date shows), got {short_repr(value)}"
        )
    return seconds


class VirtualClock:
    """Monotonic time, epoch time and sleep that never wait for real.

    Give its methods to a client as ``clock=vc.monotonic, now=vc.time,
    sleep=vc.sleep``: every ``sleep(s)`` moves time forward by ``s`` at once
    and is recorded in :attr:`sleeps`.  ``sleep`` works for the async client
    too (a sync sleep is accepted there).  One clock serves one sequential
    caller; for concurrent workers on virtual time use the runner in
    :mod:`bb_backoff.testing` that schedules them.

    Args:
        start: the initial monotonic reading, in seconds.
        epoch: the epoch time at monotonic 0, in seconds (0 to the end of
            year 9999).

    Raises:
        ValueError: ``start`` is not a duration or ``epoch`` not such seconds, naming it.
    """

    def __init__(self, start: float = 0.0, epoch: float = DEFAULT_EPOCH) -> None:
        self._now = to_seconds(start, "start")
        self._epoch = _epoch(epoch)
        self._lock = threading.Lock()
        self.sleeps: list[float] = []
        """Every wait, in seconds, in order."""

    def __repr__(self) -> str:
        return f"VirtualClock(monotonic={self._now:.3f}, sleeps={len(self.sleeps)})"

    def monotonic(self) -> float:
        """Seconds since the clock started (plus ``start``)."""
        return self._now

    def time(self) -> float:
        """Epoch seconds: ``epoch + monotonic()``."""
        return self._epoch + self._now

    def sleep(self, seconds: float) -> None:
        """Move time forward by ``seconds`` at once, and record the wait.

        Raises:
            ValueError: for a negative or non-finite wait (a real sleep would fail too).
        """
        seconds = to_seconds(seconds, "seconds")
        with self._lock:
            self.sleeps.append(seconds)
            self._now += seconds

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` without recording a wait."""
        seconds = to_seconds(seconds, "seconds")
        with self._lock:
            self._now += seconds

    @property
    def slept(self) -> float:
        """Seconds slept in all."""
        return sum(self.sleeps)
