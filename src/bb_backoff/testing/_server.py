"""The mock over real HTTP: its ASGI app served by uvicorn in a thread.

uvicorn is an optional dependency (``bb-backoff[mock]``): it is imported
only when :func:`serve_mock` runs, so importing :mod:`bb_backoff.testing`
never needs it.  The ASGI app itself is a driver like the transports (see
``_drivers``); this module only runs a server around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from ._drivers import AccessLog
    from ._mock import MockBitbucket

# uvicorn reports the cut-short response as an error; for the mock it is the point.
_RESET_LOG_MESSAGE: Final = "ASGI callable returned without completing response."
_APP_MODULE: Final = "bb_backoff.testing._drivers"
"""Where the mock's ASGI app runs: a cancellation raised through it is the server stopping."""
_STARTUP_POLL: Final = 0.05
"""Seconds between checks that the server thread is still alive while it starts."""
_STARTUP_TIMEOUT: Final = 10.0
_SHUTDOWN_TIMEOUT: Final = 5.0


class _DropResetNoise(logging.Filter):
    """Drops uvicorn's error lines that are no error of the mock's.

    A reset fault's deliberately unfinished response, and an answer still on
    its way when the server stops (a slow one: uvicorn cancels it after the
    graceful shutdown's second and logs the cancellation with a traceback).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage() == _RESET_LOG_MESSAGE:
            return False
        error = record.exc_info[1] if record.exc_info else None
        # (The logger is the process's: another app's errors must still show.)
        return not (isinstance(error, asyncio.CancelledError) and _raised_in_the_mock(error))


def _raised_in_the_mock(error: BaseException) -> bool:
    """Whether ``error`` came through the mock's ASGI app (its traceback passes there)."""
    frames = error.__traceback__
    while frames is not None:
        if frames.tb_frame.f_globals.get("__name__") == _APP_MODULE:
            return True
        frames = frames.tb_next
    return False


def _listener(host: str, port: int) -> socket.socket:
    """The server's socket, bound to ``host`` and ``port``.

    It sets ``TCP_NODELAY``, which the sockets it accepts inherit: uvicorn
    writes the head and the body of an answer separately, and without it
    Nagle holds the body until the client's delayed ACK, 40 ms on every
    request of a kept-alive connection.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        listener.bind((host, port))
    except BaseException:
        listener.close()
        raise
    return listener


@contextlib.contextmanager
def serve_mock(
    mock: MockBitbucket,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    access_log: AccessLog | None = None,
) -> Iterator[str]:
    """Serve ``mock`` over real HTTP with uvicorn, in a daemon thread, while the block runs.

    Needs uvicorn (``pip install 'bb-backoff[mock]'``).  The mock should run
    in real time (its default clock and sleeps): the server's clients do.

    Args:
        mock: the mock to serve.
        host: the address to bind.
        port: the port; 0 picks a free one.
        access_log: called with one line per request (method, target with
            secrets redacted, status, principal kind; never a credential),
            for example ``print``.

    Yields:
        The served API's base URL, like ``"http://127.0.0.1:54321/2.0"``.

    Raises:
        RuntimeError: the server did not start within 10 s.
        ModuleNotFoundError: uvicorn is not installed.
    """
    import uvicorn  # noqa: PLC0415 (optional dependency, only needed here)

    listener = _listener(host, port)
    family = listener.family
    ready = threading.Event()

    class _Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            ready.set()

    noise = _DropResetNoise()
    error_log = logging.getLogger("uvicorn.error")
    try:
        bound_port = listener.getsockname()[1]
        config = uvicorn.Config(
            mock.asgi_app(access_log=access_log),
            # Leave the process's logging alone: uvicorn's own config would replace it.
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            loop="asyncio",
            http="h11",
            server_header=False,
            # Nothing stands in front of the mock: a client's X-Forwarded-Proto
            # or -For must not change the links it writes (uvicorn trusts them
            # from 127.0.0.1 by default).
            proxy_headers=False,
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
