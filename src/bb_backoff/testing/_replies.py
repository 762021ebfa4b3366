"""What the mock decides for one request: :class:`MockReply`, and Bitbucket's reply shapes.

Every part of the mock (the router, the accounts, the rate windows, the
faults) answers with a :class:`MockReply`; the drivers in ``_drivers`` turn
it into an httpx response or ASGI messages.  This module depends on nothing
else in the mock, so every other module can import it.
"""

from __future__ import annotations

import json
from typing import Any, Final, Literal, TypeAlias

import attrs
import httpx

JSON_CONTENT_TYPE: Final = "application/json; charset=utf-8"
"""The ``Content-Type`` of JSON replies."""
TEXT_CONTENT_TYPE: Final = "text/plain; charset=utf-8"
"""The ``Content-Type`` of plain-text replies (diffs, redirects)."""

Fault: TypeAlias = Literal["reset", "timeout"]
Headers: TypeAlias = tuple[tuple[str, str], ...]


@attrs.frozen
class MockReply:
    """What the mock does with one request: the core's decision, before any I/O.

    Attributes:
        status: the HTTP status (not sent when ``fault`` is set in a transport).
        headers: the response headers, without ``Content-Length`` (the
            driver adds it).
        body: the response body.
        reason: the reason phrase, when it is not the standard one.
        delay: seconds to wait before answering or failing.
        fault: ``None`` to answer; ``"reset"`` to drop the connection after
            ``delay``; ``"timeout"`` for a request the client gives up on.  A
            transport waits ``delay`` (the read timeout), then raises
            :class:`httpx.ReadTimeout`; the ASGI app, which cannot know the
            client's timeout, waits ``delay`` and then answers.
        principal: the kind of principal the request was decided for, safe
            to log: ``"access-token"``, ``"user"`` (API token),
            ``"consumer"`` (OAuth), or ``None`` (not authenticated).
    """

    status: int
    headers: Headers = ()
    body: bytes = b""
    reason: bytes | None = None
    delay: float = 0.0
    fault: Fault | None = None
    principal: str | None = None

    def header(self, name: str) -> str | None:
        """The first header called ``name`` (any case), or ``None``."""
        name = name.lower()
        return next((value for key, value in self.headers if key.lower() == name), None)

    def to_httpx(self, request: httpx.Request) -> httpx.Response:
        """This reply as the :class:`httpx.Response` to ``request``."""
        extensions = {} if self.reason is None else {"reason_phrase": self.reason}
        return httpx.Response(
            self.status,
            headers=list(self.headers),
            content=self.body,
            extensions=extensions,
            request=request,
        )


def json_reply(status: int, value: Any, *extra: tuple[str, str]) -> MockReply:
    """``value`` as a compact JSON body."""
    body = json.dumps(value, separators=(",", ":")).encode()
    return MockReply(status, (("Content-Type", JSON_CONTENT_TYPE), *extra), body)


def error_reply(
    status: int, message: str, *extra: tuple[str, str], detail: str | None = None
) -> MockReply:
    """Bitbucket's error envelope: ``{"type": "error", "error": {"message": ...}}``."""
    error: dict[str, str] = {"message": message}
    if detail is not None:
        error["detail"] = detail
    return json_reply(status, {"type": "error", "error": error}, *extra)


def with_headers(reply: MockReply, extra: Headers) -> MockReply:
    """``reply`` with ``extra`` headers appended."""
    return attrs.evolve(reply, headers=reply.headers + extra) if extra else reply
