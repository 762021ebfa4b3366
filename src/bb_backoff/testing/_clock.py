"""A virtual clock: time passes only when someone sleeps."""

from __future__ import annotations

import threading
from typing import Final

from .._timing import to_seconds

DEFAULT_EPOCH: Final = 1_795_000_000.0
"""Epoch seconds at virtual time 0: 2026-11-18T11:06:40Z, fixed so runs repeat."""


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
        epoch: the epoch time at monotonic 0, in seconds.
    """

    def __init__(self, start: float = 0.0, epoch: float = DEFAULT_EPOCH) -> None:
        self._now = to_seconds(start, "start")
        self._epoch = float(epoch)
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
