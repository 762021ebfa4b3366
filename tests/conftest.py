"""Shared fixtures: the async backend, hypothesis settings for a fast suite, a redis-server."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from redis_server import RedisServer

# Property tests run on virtual time, so wall-clock deadlines only add flakiness
# on shared machines; CI may raise the example count with HYPOTHESIS_PROFILE=ci.
settings.register_profile(
    "default", deadline=None, max_examples=100, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci", deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio (the anyio pytest plugin ships with httpx's anyio)."""
    return "asyncio"


# -- Redis: a server of the session's own (see redis_server.py) ------------------------


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server for the whole session; skipped without one (unless CI requires it)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session server's URL, its keyspace emptied for this test."""
    import redis  # noqa: PLC0415 (installed: the fixture above checked)

    with redis.Redis.from_url(redis_server.url) as client:
        client.flushdb()
    return redis_server.url


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server for this test alone, to stop, kill and restart."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _fresh_process_wide_gates() -> Iterator[None]:
    """Every test starts with no account known to the process-wide memory store.

    Clients built with the real clock share it by design (one gate per
    account in a process); across tests that would let one test's 429s
    teach another's gate, on real time.
    """
    from bb_backoff import _gate  # noqa: PLC0415

    yield
    store = _gate.memory_store_for(time.monotonic)
    with store._lock:
        for model in store._models.values():
            model.lane = 0  # a handle that still holds one asks the store again
        store._models.clear()
