"""The mock's drivers: the only code that waits, raises transport errors or speaks ASGI.

The core (:meth:`MockBitbucket.respond <bb_backoff.testing.MockBitbucket.respond>`)
decides a :class:`MockReply` and does no I/O.  The drivers carry the
decision out, as respx's router does for its routes:

* :class:`HTTPXHandlers` gives one sync ``handler`` and one async
  ``async_handler`` over a shared resolver; ``httpx.MockTransport(handler)``
  is the sync transport and ``httpx.MockTransport(async_handler)`` the async
  one.  They wait ``reply.delay``, then return the response or raise the
  fault's transport error.
* :class:`MockASGIApp` serves the same replies as ASGI messages, for uvicorn
  (see ``_server``) or any ASGI server.

Links and redirects come out on the origin each request came to, so a mock
served on a random port links to itself.  Nothing here raises out of a
driver except the transport errors a fault stands for: the core answers
every bad input itself.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any, Final, Protocol, TypeAlias
from urllib.parse import quote

import httpx

from .._exceptions import printable, redact_url
from .._timing import AsyncSleep, SyncSleep
from ._replies import MockReply

_logger: Final = logging.getLogger("bb_backoff.testing")
DEFAULT_READ_TIMEOUT: Final = 5.0
"""Seconds a transport waits on a timeout fault when the request sets no read timeout."""

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
AccessLog: TypeAlias = Callable[[str], object]
"""Takes one line per request, safe to print (see :func:`access_line`)."""

# A reset promises this many bytes more than it sends, then closes the
# connection: the client sees a response cut short.
_MISSING_BYTES: Final = 1024
_WEBSOCKET_REFUSED: Final = 1008  # policy violation: the mock speaks HTTP only


class Respond(Protocol):
    """The core every driver shares: one request in, one :class:`MockReply` out, no I/O."""

    def __call__(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        *,
        read_timeout: float | None = None,
    ) -> MockReply:
        """Decide the reply to one request (see :meth:`MockBitbucket.respond`)."""
        ...


def access_line(method: str, target: str, reply: MockReply) -> str:
    """One log line for a request: method, target (secrets redacted), outcome, principal kind.

    Never holds a credential: query values with secret-looking names are
    replaced, and the principal is only its kind (``"access-token"``,
    ``"user"``, ``"consumer"`` or ``"-"``).
    """
    outcome = reply.fault or str(reply.status)
    return f"{printable(method, 16)} {redact_url(target)} {outcome} {reply.principal or '-'}"


def _read_timeout(request: httpx.Request) -> float:
    timeout = request.extensions.get("timeout")
    read = timeout.get("read") if isinstance(timeout, dict) else None
    if isinstance(read, int | float) and not isinstance(read, bool) and math.isfinite(read):
        return max(0.0, float(read))
    return DEFAULT_READ_TIMEOUT


def _finish(reply: MockReply, request: httpx.Request) -> httpx.Response:
    """The response to return, or the fault's transport error, raised."""
    if reply.fault == "reset":
        raise httpx.RemoteProtocolError(
            "Server disconnected without sending a response.", request=request
        )
    if reply.fault == "timeout":
        raise httpx.ReadTimeout("The read operation timed out", request=request)
    return reply.to_httpx(request)


class HTTPXHandlers:
    """The mock as httpx handlers: ``httpx.MockTransport(handlers.handler)`` is a transport.

    Thread-safe: the core serializes under its lock, the handlers hold no state.

    Args:
        respond: the core.
        sleep: waits ``reply.delay`` in :meth:`handler`.
        async_sleep: waits in :meth:`async_handler` (a sync callable works too).
    """

    def __init__(self, respond: Respond, sleep: SyncSleep, async_sleep: AsyncSleep) -> None:
        self._respond = respond
        self._sleep = sleep
        self._async_sleep = async_sleep

    def resolve(self, request: httpx.Request, body: bytes) -> MockReply:
        """The core's decision for ``request``, whose ``body`` the caller has read."""
        return self._respond(
            request.method,
            str(request.url),
            request.headers,
            body,
            read_timeout=_read_timeout(request),
        )

    def handler(self, request: httpx.Request) -> httpx.Response:
        """Answer ``request``, waiting with ``sleep``."""
        reply = self.resolve(request, request.read())
        if reply.delay > 0:
            self._sleep(reply.delay)
        return _finish(reply, request)

    async def async_handler(self, request: httpx.Request) -> httpx.Response:
        """Answer ``request``, waiting with ``async_sleep``."""
        reply = self.resolve(request, await request.aread())
        if reply.delay > 0:
            slept = self._async_sleep(reply.delay)
            if inspect.isawaitable(slept):
                await slept
        return _finish(reply, request)


class MockASGIApp:
    """:class:`~bb_backoff.testing.MockBitbucket` as a raw ASGI 3 application.

    Build it with :meth:`MockBitbucket.asgi_app`.  It waits with the mock's
    ``async_sleep``.  A reset fault starts a response whose
    ``Content-Length`` promises more than is sent, then ends it, so the
    client sees the connection close mid-body.  A timeout fault cannot know
    the client's timeout: the answer comes ``slow_seconds`` late.  ASGI has
    no reason phrases, so a served 429 says "Too Many Requests".  A
    WebSocket connection is refused (the mock speaks HTTP only).

    Args:
        respond: the core.
        async_sleep: waits ``reply.delay`` (a sync callable works too).
        access_log: called with one line per request (see :func:`access_line`).
    """

    def __init__(
        self, respond: Respond, async_sleep: AsyncSleep, access_log: AccessLog | None = None
    ) -> None:
        self._respond = respond
        self._sleep = async_sleep
        self._access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection scope (``http``, ``lifespan`` or ``websocket``)."""
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            # Refused before it is accepted: the server answers the handshake 403.
            await send({"type": "websocket.close", "code": _WEBSOCKET_REFUSED})
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        headers = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]
        }
        url, target = _url(scope, headers)
        reply = self._respond(scope["method"], url, headers, bytes(body))
        if self._access_log is not None:
            try:
                self._access_log(access_line(scope["method"], target, reply))
            except Exception as error:  # noqa: BLE001 (the log must never change an answer)
                # Its reader went away (a closed pipe, say): the answer stands,
                # the log stops, once said.
                self._access_log = None
                _logger.warning("the mock's access log failed (%r); it stops", error)
        if reply.delay > 0:
            slept = self._sleep(reply.delay)
            if inspect.isawaitable(slept):
                await slept
        promised = len(reply.body) + (_MISSING_BYTES if reply.fault == "reset" else 0)
        response_headers = [
            (name.lower().encode("latin-1", "replace"), value.encode("latin-1", "replace"))
            for name, value in reply.headers
        ]
        response_headers.append((b"content-length", str(promised).encode("ascii")))
        await send(
            {"type": "http.response.start", "status": reply.status, "headers": response_headers}
        )
        # A reset returns with the body unfinished; the server closes the connection.
        await send(
            {
                "type": "http.response.body",
                "body": reply.body,
                "more_body": reply.fault == "reset",
            }
        )


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _url(scope: Scope, headers: Mapping[str, str]) -> tuple[str, str]:
    """The absolute URL the client asked for, percent-encoded as sent, and its target.

    The ``Host`` header is taken as sent: the core checks it, and answers a
    bad one with 400.
    """
    host = headers.get("host")
    if host is None:
        server_host, server_port = scope.get("server") or ("localhost", 80)
        host = f"{server_host}:{server_port}"
    raw_path = scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else quote(scope["path"])
    query = scope.get("query_string", b"").decode("latin-1")
    target = path + (f"?{query}" if query else "")
    return f"{scope.get('scheme', 'http')}://{host}{target}", target
