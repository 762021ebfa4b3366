"""Bitbucket's rolling rate windows: one per principal, shared with other consumers.

Each principal gets ``limit`` requests per ``window`` seconds, and a request
holds its slot for exactly ``window`` seconds.  Other tools sharing an
account (``other_consumers``) are evenly spaced requests, generated lazily up
to the present before every check.  They have been running for a whole
window when the mock starts, so the window is in its steady state from the
first request.  An other consumer refused for a full window does not give
up: it takes the next slot that frees, before any later arrival, so the
other tools always get their share (as persistent tools do) and an importer
cannot win their slots through a rounding tie.

Pure: the caller passes the time of every check and serializes the calls
(:class:`~bb_backoff.testing.MockBitbucket` holds its lock around them).
"""

from __future__ import annotations

from collections import deque

import attrs


@attrs.frozen
class Admission:
    """The verdict on one request: counted or refused, and how full the window is."""

    accepted: bool
    used: int
    """Requests in the window after this one."""
    wait: float
    """Seconds until the window has room again (for a refused request)."""


class _Window:
    """One principal's rolling window: monotonic times of the requests it counts."""

    __slots__ = ("entries", "others_made", "others_waiting")

    def __init__(self) -> None:
        self.entries: deque[float] = deque()
        self.others_made = 0
        self.others_waiting = 0


class RateLimiter:
    """Rolling windows per principal, and the other consumers sharing them."""

    def __init__(
        self, *, limit: int, window: float, other_share: float, count_rejected: bool, start: float
    ) -> None:
        self.limit = limit
        self.window = window
        self.count_rejected = count_rejected
        self.start = start
        # Other consumers make other_share * limit requests per window, evenly spaced.
        self.other_interval = window / (other_share * limit) if other_share and limit else None
        self.other_calls = 0
        self.windows: dict[str, _Window] = {}

    def _expire(self, entries: deque[float], now: float) -> None:
        # A request at t holds its slot over [t, t + window): free exactly at t + window.
        horizon = now - self.window
        while entries and entries[0] <= horizon:
            entries.popleft()

    def _catch_up_others(self, window: _Window, now: float) -> None:
        interval = self.other_interval
        if interval is None:
            return
        entries = window.entries
        while True:
            # Multiplying rather than adding keeps the schedule from drifting.
            arrival = self.start - self.window + (window.others_made + 1) * interval
            freed = (
                entries[0] + self.window
                if window.others_waiting and entries and len(entries) >= self.limit
                else arrival
            )
            at = min(arrival, freed)
            if at > now:
                return
            self._expire(entries, at)
            if at < arrival or (window.others_waiting and len(entries) < self.limit):
                # A waiting other consumer takes the slot that just freed.
                window.others_waiting -= 1
                self._other_call(entries, at)
                continue
            window.others_made += 1
            if len(entries) < self.limit:
                self._other_call(entries, at)
                continue
            window.others_waiting += 1
            if self.count_rejected:
                entries.append(at)

    def _other_call(self, entries: deque[float], at: float) -> None:
        entries.append(at)
        if at > self.start:
            self.other_calls += 1

    def _window(self, principal: str, now: float) -> deque[float]:
        window = self.windows.get(principal)
        if window is None:
            window = self.windows[principal] = _Window()
        self._catch_up_others(window, now)
        self._expire(window.entries, now)
        return window.entries

    def admit(self, principal: str, now: float) -> Admission:
        """Count a request at ``now`` if the principal's window has room."""
        entries = self._window(principal, now)
        if len(entries) < self.limit:
            entries.append(now)
            return Admission(accepted=True, used=len(entries), wait=0.0)
        if self.count_rejected:
            entries.append(now)
        if self.limit == 0:
            return Admission(accepted=False, used=len(entries), wait=self.window)
        # There is room once all but limit - 1 of the entries have expired.
        wait = entries[len(entries) - self.limit] + self.window - now
        return Admission(accepted=False, used=len(entries), wait=wait)

    def oldest_wait(self, principal: str | None, now: float) -> float:
        """Seconds until the principal's oldest counted request frees its slot, 1 at least."""
        entries = self._window(principal, now) if principal is not None else None
        if not entries:
            return 1.0
        return max(1.0, entries[0] + self.window - now)
