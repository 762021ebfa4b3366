"""The library's redis-server (``bb_backoff._redis_server``): how a start that fails is reported."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bb_backoff._redis_server import RedisServer, RedisUnavailable
from redis_server import require_redis


def test_a_server_that_exits_at_once_is_reported_and_cleaned_up(tmp_path: Path) -> None:
    require_redis()  # redis-py, to ask
    failing = shutil.which("false")
    assert failing is not None
    server = RedisServer(tmp_path, executable=failing)
    with pytest.raises(
        RedisUnavailable, match=rf"^redis-server on port {server.port} exited with status 1$"
    ):
        server.start()
    assert server.process is None
    server.stop()  # nothing left to stop


def test_without_redis_server_on_path_the_server_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RedisUnavailable, match=r"^redis-server is not on PATH$"):
        RedisServer(tmp_path)


def test_a_port_another_redis_holds_is_reported_not_taken_for_a_start(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    # The other Redis answers PING on that port; ours cannot bind and exits.
    server = RedisServer(tmp_path, port=redis_server.port, executable=redis_server.executable)
    with pytest.raises(RedisUnavailable, match=rf"^redis-server on port {server.port} exited"):
        server.start()
    assert server.process is None
