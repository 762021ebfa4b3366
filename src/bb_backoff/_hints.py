"""Server hints: how long the server asked us to wait.

Bitbucket usually sends a bare 429 with no hint at all.  When a hint is
there it may be ``Retry-After`` (RFC 9110: delta-seconds or an HTTP-date) or,
for access tokens on scaled endpoints, ``X-RateLimit-Reset`` as *seconds
remaining*.  Every hint is optional and untrusted: anything we cannot read,
anything negative and any date in the past yields no hint, so the policy
falls back to its own backoff.  Whether a hint is too long to honour is the
policy's call, not the parser's.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Final

import attrs

RETRY_AFTER: Final = "Retry-After"
RATELIMIT_RESET: Final = "X-RateLimit-Reset"

# delta-seconds is an integer per RFC 9110; decimals are accepted because
# some proxies send them.  Any length: an absurd value is the policy's to
# refuse (max_hint), with a clear error, not garbage to ignore.
_DELTA_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")
# RFC 9110's obsolete asctime format carries no zone but is GMT by definition;
# recipients must accept it.  Any other zone-less date is malformed.
_ASCTIME = re.compile(
    r"[A-Z][a-z]{2} [A-Z][a-z]{2} [ 0-9][0-9] [0-9]{2}:[0-9]{2}:[0-9]{2} [0-9]{4}"
)
# A header longer than any valid HTTP-date is garbage; don't hand it to the
# date parser.
_MAX_HINT_LENGTH: Final = 64
# A header repeated a few dozen times, joined by commas: longer is garbage.
_MAX_HINT_LIST_LENGTH: Final = 1024
# A "seconds remaining" value this large can only be an epoch timestamp
# (about 2001-09-09), which some servers send instead; read it as one.
_EPOCH_THRESHOLD: Final = 1_000_000_000.0
# And one a thousand times larger (31,000 years as seconds) can only be an
# epoch timestamp in milliseconds, the third convention in use.
_EPOCH_MS_THRESHOLD: Final = 1_000_000_000_000.0

# The furthest a response's Date may be from the client's clock and still be
# read as the server's clock (skew); beyond, it is broken and ignored.
_MAX_SKEW: Final = 86_400.0


def _check_now(now: object) -> None:
    """``TypeError`` naming ``now`` unless it is a number."""
    if isinstance(now, bool) or not isinstance(now, int | float):
        raise TypeError(f"now must be epoch seconds (a number), not {type(now).__name__}")


def _check_value(value: object, name: str = "value") -> None:
    """``TypeError`` naming ``name`` unless ``value`` is a header's text."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a header value (str), not {type(value).__name__}")


@attrs.frozen
class Hint:
    """A wait the server asked for.

    Attributes:
        seconds: how long to wait from now, in seconds (non-negative).
        source: the header it came from, e.g. ``"Retry-After"``.
    """

    seconds: float
    source: str


def parse_retry_after(value: str, now: float) -> float | None:
    """Read a ``Retry-After`` value as seconds from ``now``.

    Args:
        value: the header value: delta-seconds (``"120"``) or an HTTP-date
            (``"Wed, 21 Oct 2015 07:28:00 GMT"``); a repeated header's
            delta-seconds and dates give the longest, its garbage skipped
            (``"120, soon"`` is 120).
        now: the current time in epoch seconds, to turn a date into a delay.

    Returns:
        Seconds to wait, or ``None`` if the value is garbage, negative, not
        finite or a date in the past.

    Raises:
        TypeError: ``value`` is not a str or ``now`` not a number, naming it.
    """
    _check_value(value)
    _check_now(now)
    text = value.strip()
    if not text or len(text) > _MAX_HINT_LIST_LENGTH:
        return None
    # A repeated header arrives joined by commas, and an HTTP-date holds one
    # comma of its own ("Wed, 21 Oct ..."): each part is read as a number,
    # or with the next one as a date, or alone as a date (asctime has none).
    parts = [part.strip() for part in text.split(",")]
    waits: list[float] = []
    index = 0
    while index < len(parts):
        part = parts[index]
        if _DELTA_SECONDS.fullmatch(part):
            seconds = float(part)
            if seconds < math.inf:  # over 308 digits is inf: not a wait, as documented
                waits.append(seconds)
            index += 1
            continue
        when = None
        if index + 1 < len(parts) and not _DELTA_SECONDS.fullmatch(parts[index + 1]):
            when = _http_date(f"{part}, {parts[index + 1]}")
        if when is not None:
            index += 2
        else:
            when = _http_date(part)
            index += 1
        if when is not None and 0 <= when - now < math.inf:
            waits.append(when - now)
    return max(waits, default=None)


def _http_date(text: str) -> float | None:
    """An HTTP-date (any of RFC 9110's three formats) as epoch seconds, or ``None``."""
    if len(text) > _MAX_HINT_LENGTH:
        return None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        if not _ASCTIME.fullmatch(text):
            return None
        when = when.replace(tzinfo=UTC)
    try:
        return when.timestamp()
    except (OverflowError, ValueError):  # pragma: no cover (a year the platform cannot hold)
        return None


def parse_ratelimit_reset(value: str, now: float) -> float | None:
    """Read an ``X-RateLimit-Reset`` value as seconds from ``now``.

    Bitbucket's is reported as seconds remaining.  A value too large to be
    that is read as an epoch timestamp, the other common convention: in
    seconds from 10^9 (2001), in milliseconds from 10^12.  A repeated header
    (``"120, 120"``) gives the longest of its waits, each read that way.

    Args:
        value: the header value.
        now: the current time in epoch seconds.

    Returns:
        Seconds to wait, or ``None`` for garbage, negative or past values.

    Raises:
        TypeError: ``value`` is not a str or ``now`` not a number, naming it.
    """
    _check_value(value)
    _check_now(now)
    text = value.strip()
    if len(text) > _MAX_HINT_LIST_LENGTH:
        return None
    # Each part a number (garbage, "" after a trailing comma, skipped): the
    # longest wait undercuts none of them.
    numbers = [
        float(part) for part in map(str.strip, text.split(",")) if _DELTA_SECONDS.fullmatch(part)
    ]
    waits = [
        wait for wait in (_reset_remaining(number, now) for number in numbers) if wait is not None
    ]
    return max(waits, default=None)


def _reset_remaining(number: float, now: float) -> float | None:
    """One ``X-RateLimit-Reset`` number as seconds from ``now``: remaining, or an epoch."""
    seconds = number
    if seconds >= _EPOCH_MS_THRESHOLD:
        seconds = seconds / 1000.0 - now
    elif seconds >= _EPOCH_THRESHOLD:
        seconds -= now
    return seconds if seconds >= 0 and math.isfinite(seconds) else None


def hint_from_headers(headers: Mapping[str, str], now: float) -> Hint | None:
    """The longest valid wait any hint header asks for.

    Taking the longest means no hint is ever undercut.  A hint given as a
    point in time (an HTTP-date, an epoch ``X-RateLimit-Reset``) is on the
    server's clock, so it is read against the response's own ``Date`` when
    that is a valid HTTP-date: a client clock that runs fast or slow then
    neither cuts the wait short nor stretches it past ``max_hint``.  Without
    a usable ``Date`` (none, garbage, or more than a day from ``now``),
    ``now`` stands in.

    Args:
        headers: response headers (a case-insensitive mapping such as
            :class:`httpx.Headers`).
        now: the current time in epoch seconds.

    Returns:
        The hint, or ``None`` when there is no valid one.

    Raises:
        TypeError: ``headers`` is not a mapping, ``now`` not a number, or a
            header's value not a str, naming it.
    """
    if not isinstance(headers, Mapping):
        raise TypeError(
            f"headers must be a mapping of header names to values, not {type(headers).__name__}"
        )
    _check_now(now)
    date = headers.get("Date")
    if date is not None:
        _check_value(date, "headers['Date']")
    if date is not None:
        server_now = _http_date(date.strip())
        # A Date further off than any clock drifts is broken, not skewed.
        if server_now is not None and abs(server_now - now) <= _MAX_SKEW:
            now = server_now
    best: Hint | None = None
    for name, parse in ((RETRY_AFTER, parse_retry_after), (RATELIMIT_RESET, parse_ratelimit_reset)):
        raw = headers.get(name)
        if raw is None:
            continue
        _check_value(raw, f"headers[{name!r}]")
        seconds = parse(raw, now)
        if seconds is not None and (best is None or seconds > best.seconds):
            best = Hint(seconds, name)
    return best
