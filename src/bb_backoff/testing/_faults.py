"""The mock's faults: what can go wrong on the way to Bitbucket, and how it looks.

:class:`Faults` says how often each fault strikes and when a full outage
runs; :func:`draw_fault` makes the one seeded draw per request that decides
which fault, if any, a request meets.  The replies here are the faults'
faces: a proxy's HTML 503, the JSON 5xx, a connection reset and a timeout.
Pure: the caller passes the generator and serializes the calls.
"""

from __future__ import annotations

import random
from typing import Final

import attrs

from .._timing import duration, finite
from ._replies import JSON_CONTENT_TYPE, Fault, MockReply, error_reply

STATUS_UNAVAILABLE: Final = 503
SERVER_ERROR_MESSAGES: Final = {
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}
"""The error envelope's message for each 5xx the mock sends."""
_HTML_503: Final = (
    b"<html><body><h1>503 Service Unavailable</h1>\n"
    b"No server is available to handle this request.\n</body></html>\n"
)
# A reset over a real socket sends the start of a body that never finishes.
_RESET_BODY: Final = b'{"type": "pullrequest", "id": 1, "title": "'


def _rate(_instance: object, field: attrs.Attribute[float], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"{field.name} must be a probability from 0 to 1, got {value!r}")


@attrs.frozen
class Faults:
    """Faults the mock injects, each drawn per request from the seeded generator.

    A request that passed authentication and its rate window meets at most
    one fault: one draw decides which, so the rates must sum to at most 1.
    Faulted requests count against the rate window, as they do at Bitbucket.

    A full outage is not drawn: for ``outage_seconds`` from ``outage_start``
    (both measured from the moment the mock was created, on its ``clock``),
    every API request is answered 503 with the HTML body of a proxy, before
    authentication and the rate window, so it uses no slot; such requests are
    counted in :attr:`MockCounters.outage_calls`.  Scripted steps still come
    first, and the OAuth token endpoint stays up.

    Args:
        server_error_rate: share of requests answered 500, 502 or 503 (the
            503 with an HTML body, as a proxy sends it; the others with the
            JSON error envelope).
        reset_rate: share of connections dropped without a response.
        timeout_rate: share of requests never answered in time: a transport
            waits the request's read timeout and raises
            :class:`httpx.ReadTimeout`; the ASGI app answers after
            ``slow_seconds``.
        slow_rate: share of requests answered ``slow_seconds`` late.
        slow_seconds: the extra wait of a slow request, in seconds (or a
            :class:`~datetime.timedelta`).
        outage_start: when the full outage begins, in seconds after the
            mock was created (or a timedelta).
        outage_seconds: how long the full outage lasts, in seconds (or a
            timedelta); 0, the default, means no outage.

    The OAuth token endpoint meets no random faults; script them there
    (see :meth:`MockBitbucket.script`).

    Raises:
        ValueError: a rate outside 0..1, rates summing above 1, or a
            negative or infinite ``slow_seconds``, ``outage_start`` or
            ``outage_seconds``; the message names it.
    """

    server_error_rate: float = attrs.field(default=0.0, validator=_rate)
    reset_rate: float = attrs.field(default=0.0, validator=_rate)
    timeout_rate: float = attrs.field(default=0.0, validator=_rate)
    slow_rate: float = attrs.field(default=0.0, validator=_rate)
    slow_seconds: float = attrs.field(default=10.0, converter=duration, validator=finite)
    outage_start: float = attrs.field(default=0.0, converter=duration, validator=finite)
    outage_seconds: float = attrs.field(default=0.0, converter=duration, validator=finite)

    def __attrs_post_init__(self) -> None:
        if self.total > 1:
            raise ValueError(
                "faults: server_error_rate + reset_rate + timeout_rate + slow_rate "
                f"must be at most 1, got {self.total!r}"
            )

    @property
    def total(self) -> float:
        """The share of requests that meet some fault."""
        return self.server_error_rate + self.reset_rate + self.timeout_rate + self.slow_rate

    def in_outage(self, elapsed: float) -> bool:
        """Whether ``elapsed`` seconds after the mock's creation fall in the full outage."""
        return self.outage_start <= elapsed < self.outage_start + self.outage_seconds


def draw_fault(faults: Faults, rng: random.Random) -> tuple[MockReply | Fault | None, float]:
    """One draw for one request: the fault it meets, if any, and the extra delay it brings.

    Returns:
        A 5xx reply, ``"reset"``, ``"timeout"`` or ``None``; and the extra
        seconds of a slow request (0 otherwise).  No fault configured means
        no draw, so a mock without faults never touches ``rng``.
    """
    if not faults.total:
        return None, 0.0
    draw = rng.random()
    if draw < faults.server_error_rate:
        return server_error_reply(rng.choice((500, 502, 503))), 0.0
    draw -= faults.server_error_rate
    if draw < faults.reset_rate:
        return "reset", 0.0
    draw -= faults.reset_rate
    if draw < faults.timeout_rate:
        return "timeout", 0.0
    draw -= faults.timeout_rate
    return None, faults.slow_seconds if draw < faults.slow_rate else 0.0


def server_error_reply(status: int) -> MockReply:
    """A 5xx as Bitbucket sends it: 503 from the proxy in HTML, the others in the envelope."""
    if status == STATUS_UNAVAILABLE:
        return unavailable_reply()
    return error_reply(status, SERVER_ERROR_MESSAGES.get(status, "Scripted error"))


def unavailable_reply() -> MockReply:
    """The proxy's 503, with its HTML body (an outage, or a drawn 503)."""
    return MockReply(STATUS_UNAVAILABLE, (("Content-Type", "text/html"),), _HTML_503)


def reset_reply() -> MockReply:
    """A connection dropped mid-response."""
    return MockReply(200, (("Content-Type", JSON_CONTENT_TYPE),), _RESET_BODY, fault="reset")


def timeout_reply(read_timeout: float) -> MockReply:
    """A request the client stops waiting for after ``read_timeout`` seconds."""
    return MockReply(504, fault="timeout", delay=read_timeout)
