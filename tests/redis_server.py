"""A redis-server of the tests' own: started on a free port of 127.0.0.1, stopped after.

The Redis store's tests never use a Redis that happens to be running: each
session starts its own (``conftest.redis_server``), and the outage tests
start, stop and restart more.  The server is the library's
(``bb_backoff._redis_server``, which the benchmark uses too); what this
module adds is the tests' policy: without ``redis-server`` on the PATH (or
redis-py) they are skipped, unless ``BB_BACKOFF_REQUIRE_REDIS=1`` (as CI
sets) makes that an error.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Final

import pytest

from bb_backoff import _redis_server
from bb_backoff._redis_server import free_port

REQUIRE_REDIS: Final = os.environ.get("BB_BACKOFF_REQUIRE_REDIS") == "1"


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


class RedisServer(_redis_server.RedisServer):
    """The library's redis-server (``bb_backoff._redis_server``), skipped when it is missing.

    Args:
        directory: where it runs (it writes nothing there but may need it).
        port: the port, kept across :meth:`stop` and :meth:`start`; a free
            one by default.
    """

    def __init__(self, directory: Path, port: int | None = None) -> None:
        super().__init__(directory, port, executable=require_redis())


__all__ = ["REQUIRE_REDIS", "RedisServer", "free_port", "require_redis"]
