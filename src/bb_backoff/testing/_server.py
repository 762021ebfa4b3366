"""The mock over real HTTP: a raw ASGI app, and a uvicorn server in a thread.

The ASGI app is one more driver of :meth:`MockBitbucket.respond`: it turns
the ASGI request into the core's arguments and the reply into ASGI messages.
Links and redirects come out on the origin the request came to (its
``Host``), so a mock served on a random port links to itself.

uvicorn is an optional dependency (``bb-backoff[mock]``): it is imported
only when :func:`serve_mock` runs, so importing :mod:`bb_backoff.testing`
never needs it.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any, Final, TypeAlias
from urllib.parse import quote, urlsplit

if TYPE_CHECKING:
    from .._timing import AsyncSleep
    from ._mock import MockBitbucket
    from ._routes import MockReply

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]

# A reset promises this many bytes more than it sends, then closes the
# connection: the client sees a response cut short.
_MISSING_BYTES: Final = 1024
# uvicorn reports the cut-short response as an error; for the mock it is the point.
_RESET_LOG_MESSAGE: Final = "ASGI callable returned without completing response."
_STARTUP_POLL: Final = 0.05
"""Seconds between checks that the server thread is still alive while it starts."""
_STARTUP_TIMEOUT: Final = 10.0
_SHUTDOWN_TIMEOUT: Final = 5.0


class MockASGIApp:
    """:class:`~bb_backoff.testing.MockBitbucket` as a raw ASGI 3 application.

    Build it with :meth:`MockBitbucket.asgi_app`.  It waits with the mock's
    ``async_sleep``.  A reset fault starts a response whose
    ``Content-Length`` promises more than is sent, then ends it, so the
    client sees the connection close mid-body.  A timeout fault cannot know
    the client's timeout: the answer comes ``slow_seconds`` late.  ASGI has
    no reason phrases, so a served 429 says "Too Many Requests".
    """

    def __init__(
        self,
        respond: Callable[..., MockReply],
        async_sleep: AsyncSleep,
    ) -> None:
        self._respond = respond
        self._sleep = async_sleep

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection scope (``http`` or ``lifespan``)."""
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            raise ValueError(f"the mock serves HTTP only, not {scope['type']!r}")
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        headers = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]
        }
        reply = self._respond(scope["method"], _url(scope, headers), headers, bytes(body))
        if reply.delay > 0:
            slept = self._sleep(reply.delay)
            if inspect.isawaitable(slept):
                await slept
        promised = len(reply.body) + (_MISSING_BYTES if reply.fault == "reset" else 0)
        response_headers = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
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


def _url(scope: Scope, headers: dict[str, str]) -> str:
    """The absolute URL the client asked for, percent-encoded as sent."""
    host = headers.get("host")
    if not host:
        server_host, server_port = scope.get("server") or ("localhost", 80)
        host = f"{server_host}:{server_port}"
    raw_path = scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else quote(scope["path"])
    query = scope.get("query_string", b"").decode("latin-1")
    return f"{scope.get('scheme', 'http')}://{host}{path}" + (f"?{query}" if query else "")


class _DropResetNoise(logging.Filter):
    """Drops uvicorn's error line for a reset fault's deliberately unfinished response."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _RESET_LOG_MESSAGE


@contextlib.contextmanager
def serve_mock(mock: MockBitbucket, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``mock`` over real HTTP with uvicorn, in a daemon thread, while the block runs.

    Needs uvicorn (``pip install 'bb-backoff[mock]'``).  The mock should run
    in real time (its default clock and sleeps): the server's clients do.

    Args:
        mock: the mock to serve.
        host: the address to bind.
        port: the port; 0 picks a free one.

    Yields:
        The served API's base URL, like ``"http://127.0.0.1:54321/2.0"``.

    Raises:
        RuntimeError: the server did not start within 10 s.
        ModuleNotFoundError: uvicorn is not installed.
    """
    import uvicorn  # noqa: PLC0415 (optional dependency, only needed here)

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ready = threading.Event()

    class _Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            ready.set()

    noise = _DropResetNoise()
    error_log = logging.getLogger("uvicorn.error")
    try:
        listener.bind((host, port))
        bound_port = listener.getsockname()[1]
        config = uvicorn.Config(
            mock.asgi_app(),
            # Leave the process's logging alone: uvicorn's own config would replace it.
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            loop="asyncio",
            http="h11",
            server_header=False,
            timeout_graceful_shutdown=1,
        )
        server = _Server(config)
        thread = threading.Thread(
            target=server.run,
            kwargs={"sockets": [listener]},
            name=f"serve_mock:{bound_port}",
            daemon=True,
        )
        error_log.addFilter(noise)
        thread.start()
        waited = 0.0
        while not ready.wait(_STARTUP_POLL):
            waited += _STARTUP_POLL
            if not thread.is_alive() or waited >= _STARTUP_TIMEOUT:
                server.should_exit = True
                raise RuntimeError(f"the mock server on {host}:{bound_port} did not start")
        url_host = f"[{host}]" if family == socket.AF_INET6 else host
        try:
            yield f"http://{url_host}:{bound_port}{urlsplit(mock.base_url).path.rstrip('/')}"
        finally:
            server.should_exit = True
            thread.join(_SHUTDOWN_TIMEOUT)
    finally:
        error_log.removeFilter(noise)
        listener.close()
