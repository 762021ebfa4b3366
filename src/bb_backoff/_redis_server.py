"""A redis-server of our own: started on a free port of 127.0.0.1, stopped after.

The benchmark's fleet run (:func:`~bb_backoff._bench.private_redis`) and the
test suite's Redis fixtures never use a Redis that happens to be running:
they start one here.  It keeps nothing on disk (no snapshots, no
append-only file), runs in a directory of the caller's, and can be stopped,
killed (a crash) and started again on the same port.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Final

from ._redis_clients import sync_client
from ._timing import default_clock

if TYPE_CHECKING:
    import redis

START_TIMEOUT: Final = 10.0
"""Seconds a starting redis-server has to answer PING."""
# Seconds to connect and to answer, for each PING while it starts.
_PING_TIMEOUT: Final = 0.5
# Seconds a stopped (SIGTERM) redis-server has to exit before it is killed.
_STOP_TIMEOUT: Final = 5.0


class RedisUnavailable(RuntimeError):
    """Redis cannot be used: redis-py or redis-server missing, or no answer."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """One redis-server process: no persistence, its own directory, a fixed port.

    Args:
        directory: where it runs (made if missing; it writes nothing there
            but may need it).
        port: the port, kept across :meth:`stop` and :meth:`start`; a free
            one by default.
        executable: the ``redis-server`` to run; the one on ``PATH`` by
            default.

    Raises:
        RedisUnavailable: no ``executable`` given and no ``redis-server``
            on ``PATH``.
    """

    def __init__(
        self, directory: Path, port: int | None = None, *, executable: str | None = None
    ) -> None:
        if executable is None:
            executable = shutil.which("redis-server")
            if executable is None:
                raise RedisUnavailable("redis-server is not on PATH")
        self.executable: Final = executable
        self.directory: Final = directory
        self.port: Final = free_port() if port is None else port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it and return once it answers PING.

        Raises:
            RedisUnavailable: redis-py is not installed, or the server
                exited or did not answer within :data:`START_TIMEOUT`
                seconds (it is stopped then).
        """
        try:
            import redis  # noqa: F401, PLC0415 (the optional dependency)
        except ImportError:
            raise RedisUnavailable(
                "the redis package is not installed (pip install 'bb-backoff[redis]')"
            ) from None
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [self.executable, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        self.process = subprocess.Popen(  # noqa: S603 (redis-server, fixed arguments)
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            with sync_client(self.url, timeout=_PING_TIMEOUT) as client:
                self._await_answer(client, self.process)
        except BaseException:
            self.stop()
            raise

    def _await_answer(self, client: redis.Redis, process: subprocess.Popen[bytes]) -> None:
        """Return once ``client`` gets an answer to PING; raise if ``process`` exits or is slow."""
        import redis  # noqa: PLC0415 (imported already: start checked)

        deadline = default_clock() + START_TIMEOUT
        while True:
            with contextlib.suppress(redis.ConnectionError):
                # The answer must be this process's: another Redis already on
                # the port would answer PING while ours fails to bind and exits.
                if client.info("server").get("process_id") == process.pid:
                    return
            try:
                # Waiting for the server to exit is also how to pause between tries.
                status = process.wait(timeout=0.02)
            except subprocess.TimeoutExpired:
                if default_clock() > deadline:
                    raise RedisUnavailable(
                        f"redis-server on port {self.port} did not answer within "
                        f"{START_TIMEOUT:g} s"
                    ) from None
                continue
            raise RedisUnavailable(f"redis-server on port {self.port} exited with status {status}")

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL) and wait for it to exit; nothing if it is not running."""
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """Kill it at once (SIGKILL): a crash, not a shutdown."""
        process, self.process = self.process, None
        if process is not None:
            process.kill()
            process.wait()
