"""A redis-server of the tests' own: started on a free port of 127.0.0.1, stopped after.

The Redis store's tests never use a Redis that happens to be running: each
session starts its own (``conftest.redis_server``), and the outage tests
start, stop and restart more.  Without ``redis-server`` on the PATH they are
skipped, unless ``BB_BACKOFF_REQUIRE_REDIS=1`` (as CI sets) makes that an
error.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Final

import pytest

REQUIRE_REDIS: Final = os.environ.get("BB_BACKOFF_REQUIRE_REDIS") == "1"
_START_TIMEOUT: Final = 10.0  # seconds


def require_redis() -> str:
    """The path of ``redis-server``; skips the test (or fails it in CI) when it is missing."""
    server = shutil.which("redis-server")
    missing = (
        "redis-server is not on PATH"
        if server is None
        else "the redis package is not installed"
        if _redis_py_missing()
        else None
    )
    if missing is not None:
        reason = (
            f"{missing}: the Redis store's tests need both (apt-get install redis-server; "
            "pip install -e '.[dev]')"
        )
        if REQUIRE_REDIS:
            pytest.fail(f"BB_BACKOFF_REQUIRE_REDIS=1 but {reason}", pytrace=False)
        pytest.skip(f"{reason}; set BB_BACKOFF_REQUIRE_REDIS=1 to make this an error")
    assert server is not None
    return server


def _redis_py_missing() -> bool:
    try:
        import redis  # noqa: F401, PLC0415
    except ImportError:
        return True
    return False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """One redis-server process: no persistence, its own directory, a fixed port.

    Args:
        directory: where it runs (it writes nothing there but may need it).
        port: the port, kept across :meth:`stop` and :meth:`start`; a free
            one by default.
    """

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.executable = require_redis()
        self.directory = directory
        self.port = free_port() if port is None else port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it and wait until it answers PING."""
        import redis  # noqa: PLC0415

        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(  # noqa: S603 (a fixed command line of our own)
            [
                self.executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5, socket_timeout=0.5)
        deadline = time.monotonic() + _START_TIMEOUT
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.exceptions.ConnectionError:
                    pass
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server on port {self.port} did not start")
                time.sleep(0.01)
        finally:
            client.close()

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL) and wait for it to exit."""
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """Kill it at once (SIGKILL): a crash, not a shutdown."""
        process, self.process = self.process, None
        if process is not None:
            process.kill()
            process.wait()
