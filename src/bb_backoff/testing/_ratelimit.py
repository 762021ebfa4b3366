"""Bitbucket's rolling rate windows, and the 429s and rate headers the mock sends.

Each principal gets ``limit`` requests per ``window`` seconds, and a request
holds its slot for exactly ``window`` seconds.  Other tools sharing an
account (``other_consumers``) are evenly spaced requests, generated lazily up
to the present before every check.  They have been running for a whole
window when the mock starts, so the window is in its steady state from the
first request.  An other consumer refused for a full window does not give
up: it takes the next slot that frees, before any later arrival, so the
other tools always get their share (as persistent tools do) and an importer
cannot win their slots through a rounding tie.

:class:`RateLimitStyle` is what a client sees of all that: the 429 (plain
text as Bitbucket usually sends it, or the JSON envelope), its hint, and the
``X-RateLimit-*`` headers of access tokens.

Pure: the caller passes the time of every check and serializes the calls
(:class:`~bb_backoff.testing.MockBitbucket` holds its lock around them).
"""

from __future__ import annotations

import math
from collections import deque
from email.utils import formatdate
from typing import Final

import attrs

from ._replies import Headers, MockReply, error_reply

HINT_MODES: Final = ("none", "retry-after", "retry-after-date", "reset")
"""The values of ``MockBitbucket(hint=...)``."""
LAST_HTTP_DATE: Final = 253_402_300_799
"""Fri, 31 Dec 9999 23:59:59 GMT, the last moment an HTTP-date (a four-digit year) names."""
RATE_LIMIT_BODY: Final = b"Rate limit for this resource has been exceeded"
"""Bitbucket's plain-text 429 body (46 bytes)."""
RATE_LIMIT_REASON: Final = b"Unknown Status Code"
"""The reason phrase Bitbucket's 429s often carry."""
STATUS_TOO_MANY: Final = 429
# X-RateLimit-NearLimit turns true when fewer than this share of the limit remain.
_NEAR_LIMIT_SHARE: Final = 0.2


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


@attrs.frozen
class RateLimitStyle:
    """How the mock tells a client about its rate window: the 429s and the rate headers.

    Attributes:
        limit: requests per window per principal.
        hint: one of :data:`HINT_MODES`.
        json_429: 429s carry the JSON error envelope instead of plain text.
        token_headers: access-token requests under ``/repositories`` get
            ``X-RateLimit-Limit``, ``-Resource`` and ``-NearLimit``.
    """

    limit: int
    hint: str
    json_429: bool
    token_headers: bool

    def headers(self, *, access_token: bool, path: str, used: int) -> Headers:
        """The ``X-RateLimit-*`` headers for a request, with ``used`` requests in its window."""
        if not (
            self.token_headers
            and access_token
            and (path == "/repositories" or path.startswith("/repositories/"))
        ):
            return ()
        remaining = max(0, self.limit - used)
        near = remaining < _NEAR_LIMIT_SHARE * self.limit or self.limit == 0
        return (
            ("X-RateLimit-Limit", str(self.limit)),
            ("X-RateLimit-Resource", "api"),
            ("X-RateLimit-NearLimit", "true" if near else "false"),
        )

    def refusal(self, wait: float, epoch: float, extra: Headers = ()) -> MockReply:
        """The 429 for a request that must wait ``wait`` seconds; ``epoch`` is now, for dates."""
        seconds = max(1, math.ceil(wait))
        hint: Headers = ()
        if self.hint == "retry-after":
            hint = (("Retry-After", str(seconds)),)
        elif self.hint == "retry-after-date":
            # Rounded up to the second, so the date never undercuts the real wait;
            # an absurd window's is the last moment an HTTP-date can name.
            when = min(math.ceil(epoch + wait), LAST_HTTP_DATE)
            hint = (("Retry-After", formatdate(when, usegmt=True)),)
        elif self.hint == "reset":
            hint = (("X-RateLimit-Reset", str(seconds)),)
        if self.json_429:
            body = error_reply(STATUS_TOO_MANY, RATE_LIMIT_BODY.decode())
        else:
            body = MockReply(STATUS_TOO_MANY, (("Content-Type", "text/plain"),), RATE_LIMIT_BODY)
        return MockReply(
            STATUS_TOO_MANY, body.headers + hint + extra, body.body, reason=RATE_LIMIT_REASON
        )
