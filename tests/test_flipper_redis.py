"""The fleet-wide flag (``_flipper_redis.py``, ``FlipperFlag(store=...)``) on a real redis-server.

In order: the layout written is exactly Ruby Flipper's (raw keys read back);
a hash written by hand in that layout reads as Flipper reads it; the cache
(one second of virtual time) and a rollback seen by another instance (another
process, and a real one through the command); an outage (a killed server):
the last state kept, one log record, recovery; the async path; validation and
secrets; and a property: a Redis-backed flag answers exactly as the in-memory
one for any gates and actors.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio
import respx
from hypothesis import given
from hypothesis import strategies as st

from bb_backoff import (
    FLAG_NAME,
    AsyncBitbucketClient,
    BitbucketClient,
    ExponentialBackoff,
    FixedRetry,
    FlagStoreError,
    FlipperFlag,
    RetryEvent,
)
from bb_backoff._flags import FlagCheck
from bb_backoff._flipper_redis import (
    DEFAULT_TIMEOUT,
    FlipperHash,
    RedisFlagStore,
    format_percentage,
    parse_flipper_hash,
    ruby_to_f,
)
from bb_backoff.testing import VirtualClock
from redis_server import RedisServer, free_port

ROOT = Path(__file__).parent.parent
NAME = FLAG_NAME
SECRET = "s3cret-Pa55"

actor_ids = st.builds(
    "{}:{}".format,
    st.sampled_from(["Project", "Group", "User"]),
    st.integers(min_value=1, max_value=10**9),
)
percentages = st.floats(min_value=0.0, max_value=100.0, allow_nan=False)


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client on the flushed test database, decoding to str, to look at raw keys."""
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        yield client


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


def flag_on(url: str, clock: VirtualClock, **options: Any) -> FlipperFlag:
    return FlipperFlag(store=url, clock=clock.monotonic, **options)


def dead_url(password: str | None = None) -> str:
    """A URL where nothing listens."""
    userinfo = f":{password}@" if password else ""
    return f"redis://{userinfo}127.0.0.1:{free_port()}/0"


def records_about_the_store(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name == "bb_backoff" and "store" in record.getMessage()
    ]


# -- the layout written is Flipper's -----------------------------------------------------------


def test_enable_writes_the_boolean_gate_alone_and_adds_the_name_to_the_set(
    redis_url: str, raw: redis.Redis, clock: VirtualClock
) -> None:
    with flag_on(redis_url, clock) as flag:
        flag.enable_percentage_of_actors(30)
        flag.enable_actor("Project:1")
        flag.enable()
    # Flipper clears the hash before it writes the boolean gate.
    assert raw.hgetall(NAME) == {"boolean": "true"}
    assert raw.smembers("flipper_features") == {NAME}
    assert sorted(raw.keys("*")) == sorted([NAME, "flipper_features"])


def test_disable_deletes_the_hash_and_keeps_the_name_in_the_set(
    redis_url: str, raw: redis.Redis, clock: VirtualClock
) -> None:
    with flag_on(redis_url, clock) as flag:
        flag.enable()
        flag.enable_actor("Project:1")
        flag.disable()
        assert (flag.boolean, flag.actors) == (False, frozenset())
    assert raw.exists(NAME) == 0
    assert raw.smembers("flipper_features") == {NAME}


def test_percentages_are_written_as_flipper_writes_them_and_disabling_writes_zero(
    redis_url: str, raw: redis.Redis, clock: VirtualClock
) -> None:
    with flag_on(redis_url, clock) as flag:
        flag.enable_percentage_of_actors(25)
        flag.enable_percentage_of_time(12.5)
        assert raw.hgetall(NAME) == {"percentage_of_actors": "25", "percentage_of_time": "12.5"}
        flag.enable_percentage_of_actors(0.001)
        flag.disable_percentage_of_time()
        assert raw.hgetall(NAME) == {"percentage_of_actors": "0.001", "percentage_of_time": "0"}
        flag.disable_percentage_of_actors()
        assert raw.hgetall(NAME) == {"percentage_of_actors": "0", "percentage_of_time": "0"}
    assert raw.smembers("flipper_features") == {NAME}


def test_each_actor_is_one_field_and_disabling_one_deletes_only_its_field(
    redis_url: str, raw: redis.Redis, clock: VirtualClock
) -> None:
    with flag_on(redis_url, clock) as flag:
        flag.enable_actor("Project:1")
        flag.enable_actor("Group:45")
        assert raw.hgetall(NAME) == {"actors/Project:1": "1", "actors/Group:45": "1"}
        flag.disable_actor("Project:1")
        flag.disable_actor("Project:99")  # absent: a no-op, as in Flipper
        assert raw.hgetall(NAME) == {"actors/Group:45": "1"}
        assert flag.actors == frozenset({"Group:45"})


def test_remove_takes_the_name_out_of_the_set_and_deletes_the_hash(
    redis_url: str, raw: redis.Redis, clock: VirtualClock
) -> None:
    raw.sadd("flipper_features", "other_feature")
    with flag_on(redis_url, clock) as flag:
        flag.enable()
        flag.remove()
        assert flag.enabled(NAME, None) is False
    assert raw.smembers("flipper_features") == {"other_feature"}
    assert raw.exists(NAME) == 0


def test_key_prefix_prefixes_the_set_and_the_hash_as_flippers_option_does(
    redis_url: str, raw: redis.Redis, clock: VirtualClock
) -> None:
    with flag_on(redis_url, clock, key_prefix="gitlab:") as flag:
        flag.enable_actor("Project:7")
        assert flag.enabled(NAME, "Project:7") is True
    assert sorted(raw.keys("*")) == [
        "gitlab:bitbucket_importer_exponential_backoff",
        "gitlab:flipper_features",
    ]
    assert raw.smembers("gitlab:flipper_features") == {NAME}


def test_each_change_is_one_multi_exec_transaction(
    redis_url: str, raw: redis.Redis, clock: VirtualClock
) -> None:
    """Flipper's two steps (add the name, change the hash) never show half done."""
    raw.config_resetstat()
    with flag_on(redis_url, clock) as flag:
        flag.enable()
        flag.enable_actor("Project:1")
        flag.disable()
    stats = raw.info("commandstats")
    assert stats["cmdstat_multi"]["calls"] == 3
    assert stats["cmdstat_exec"]["calls"] == 3


def dump(client: redis.Redis) -> dict[object, tuple[object, object]]:
    """Every key: its type and value."""
    values: dict[object, Callable[[Any], object]] = {
        "string": client.get,
        "hash": client.hgetall,
        "set": client.smembers,
    }
    dumped: dict[object, tuple[object, object]] = {}
    for key in client.keys("*"):
        kind = client.type(key)
        dumped[key] = (kind, values[kind](key))
    return dumped


@pytest.mark.parametrize(
    "write",
    [
        lambda flag: flag.enable_actor("Project:1"),
        lambda flag: flag.disable_actor("Project:1"),
        lambda flag: flag.enable_percentage_of_actors(25),
        lambda flag: flag.disable_percentage_of_time(),
    ],
    ids=["enable_actor", "disable_actor", "percentage", "percentage off"],
)
def test_a_write_to_a_feature_key_that_is_no_hash_fails_and_changes_nothing(
    redis_url: str, raw: redis.Redis, clock: VirtualClock, write: Callable[[FlipperFlag], None]
) -> None:
    """Redis does not roll a MULTI back: the name would be added though the write failed."""
    raw.set(NAME, "not a hash")
    with flag_on(redis_url, clock) as flag:
        before = dump(raw)
        with pytest.raises(FlagStoreError) as raised:
            write(flag)
        assert dump(raw) == before == {NAME: ("string", "not a hash")}
    assert f"WRONGTYPE '{NAME}' holds a string, not a hash; nothing written" in str(raised.value)


@pytest.mark.parametrize(
    "write",
    [
        lambda flag: flag.enable(),
        lambda flag: flag.disable(),
        lambda flag: flag.enable_actor("Project:1"),
        lambda flag: flag.remove(),
    ],
    ids=["enable", "disable", "enable_actor", "remove"],
)
def test_a_write_when_the_set_of_features_is_no_set_fails_and_changes_nothing(
    redis_url: str, raw: redis.Redis, clock: VirtualClock, write: Callable[[FlipperFlag], None]
) -> None:
    raw.set("flipper_features", "not a set")
    raw.hset(NAME, "actors/Project:9", "1")
    with flag_on(redis_url, clock) as flag:
        before = dump(raw)
        with pytest.raises(FlagStoreError) as raised:
            write(flag)
        assert dump(raw) == before
        assert flag.actors == frozenset({"Project:9"})
    assert "'flipper_features' holds a string, not a set; nothing written" in str(raised.value)


def test_enable_and_disable_replace_a_feature_key_that_is_no_hash(
    redis_url: str, raw: redis.Redis, clock: VirtualClock
) -> None:
    """They delete the key first, as Flipper does: the rollback works whatever the key held."""
    raw.set(NAME, "not a hash")
    with flag_on(redis_url, clock) as flag:
        flag.enable()
        assert raw.hgetall(NAME) == {"boolean": "true"}
        raw.set(NAME, "not a hash")
        flag.disable()
    assert dump(raw) == {"flipper_features": ("set", {NAME})}


def test_a_change_becomes_this_flags_state_at_once_without_waiting_for_the_cache(
    redis_url: str, clock: VirtualClock
) -> None:
    with flag_on(redis_url, clock) as flag:
        assert flag.enabled(NAME, "Project:1") is False
        flag.enable_actor("Project:1")
        assert flag.enabled(NAME, "Project:1") is True  # same virtual instant


def test_a_read_under_way_when_this_flag_writes_does_not_undo_the_write(
    redis_url: str, clock: VirtualClock
) -> None:
    """The rollback lands while a check's HGETALL answer (the flag on) is on its way."""
    with flag_on(redis_url, clock) as flag:
        flag.enable()
        clock.advance(1.0)  # stale: the next check reads
        store = flag._store
        assert store is not None
        read = store.read

        def read_then_rolled_back(name: str) -> FlipperHash:
            answer = read(name)
            flag.disable()
            return answer

        store.read = read_then_rolled_back  # type: ignore[method-assign]
        assert read(NAME).boolean is True
        assert flag.enabled(NAME, "Project:1") is False
        store.read = read  # type: ignore[method-assign]
        assert (flag.enabled(NAME, "Project:1"), flag.boolean) == (False, False)


@pytest.mark.anyio
async def test_an_async_read_under_way_when_this_flag_writes_does_not_undo_the_write(
    redis_url: str, clock: VirtualClock
) -> None:
    async with flag_on(redis_url, clock) as flag:
        flag.enable()
        clock.advance(1.0)
        store = flag._store
        assert store is not None
        read_async = store.read_async

        async def read_then_rolled_back(name: str) -> FlipperHash:
            answer = await read_async(name)
            flag.disable()
            return answer

        store.read_async = read_then_rolled_back  # type: ignore[method-assign]
        assert (await read_async(NAME)).boolean is True
        assert await flag.enabled_async(NAME, "Project:1") is False
        store.read_async = read_async  # type: ignore[method-assign]
        assert await flag.enabled_async(NAME, "Project:1") is False


# -- a hash written by a Ruby Flipper reads as Flipper reads it --------------------------------


def test_a_hash_written_by_hand_in_flippers_layout_reads_correctly(
    redis_url: str, raw: redis.Redis, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bb_backoff")
    raw.sadd("flipper_features", NAME)
    raw.hset(
        NAME,
        mapping={
            "actors/Project:123": "1",
            "actors/Group:45": "1",
            "percentage_of_actors": "12.5",
            "percentage_of_time": "0",
            "groups/admins": "1",
        },
    )
    with flag_on(redis_url, clock) as flag:
        gates = (flag.boolean, flag.actors, flag.percentage_of_actors, flag.percentage_of_time)
        assert gates == (False, frozenset({"Project:123", "Group:45"}), 12.5, 0.0)
        reference = FlipperFlag(actors=["Project:123", "Group:45"], percentage_of_actors=12.5)
        actors = [f"Project:{number}" for number in range(1, 300)] + ["Group:45", None]
        assert [flag.enabled(NAME, actor) for actor in actors] == [
            reference.enabled(NAME, actor) for actor in actors
        ]
    (warning,) = [r for r in records_about_the_store(caplog) if "cannot evaluate" in r.getMessage()]
    assert "groups/admins" in warning.getMessage()


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, FlipperHash()),
        ({"boolean": "true"}, FlipperHash(boolean=True)),
        ({"boolean": "1"}, FlipperHash(boolean=True)),  # Flipper's TruthMap
        ({"boolean": "TRUE"}, FlipperHash()),
        ({"boolean": "false"}, FlipperHash()),
        ({"percentage_of_actors": "12abc"}, FlipperHash(percentage_of_actors=12.0)),
        ({"percentage_of_actors": "abc"}, FlipperHash()),
        ({"percentage_of_actors": " 7"}, FlipperHash(percentage_of_actors=7.0)),
        ({"percentage_of_actors": "1_0"}, FlipperHash(percentage_of_actors=10.0)),
        ({"percentage_of_actors": ".5"}, FlipperHash(percentage_of_actors=0.5)),
        ({"percentage_of_time": "1e1"}, FlipperHash(percentage_of_time=10.0)),
        ({"percentage_of_time": "150"}, FlipperHash(percentage_of_time=100.0)),
        ({"percentage_of_time": "-5"}, FlipperHash()),
        ({"percentage_of_time": "nan"}, FlipperHash()),
        (
            {"actors/User:7": "1", "actors/a/b": "1"},
            FlipperHash(actors=frozenset({"User:7", "a/b"})),
        ),
        (
            {"groups/admins": "1", "expression": "{}"},
            FlipperHash(groups=frozenset({"admins"}), ignored=("expression",)),
        ),
        (
            {b"boolean": b"true", b"actors/Project:1": b"1"},
            FlipperHash(True, frozenset({"Project:1"})),
        ),
    ],
)
def test_fields_are_typecast_as_ruby_flipper_does(
    fields: dict[Any, Any], expected: FlipperHash
) -> None:
    assert parse_flipper_hash(fields) == expected


@given(percentage=percentages)
def test_a_percentage_written_reads_back_exactly_and_never_in_exponent_form(
    percentage: float,
) -> None:
    text = format_percentage(percentage)
    assert ruby_to_f(text) == percentage
    assert "e" not in text
    assert ("." in text) is (percentage != int(percentage))


def test_groups_and_unknown_gates_never_open_the_flag_here(
    redis_url: str, raw: redis.Redis, clock: VirtualClock
) -> None:
    raw.hset(NAME, mapping={"groups/admins": "1", "expression": '{"Equal": [1, 1]}'})
    with flag_on(redis_url, clock) as flag:
        assert [flag.enabled(NAME, actor) for actor in ["Project:1", None]] == [False, False]


# -- the cache: a rollback reaches every process within a second -------------------------------


def test_another_instance_sees_a_rollback_after_one_second_of_virtual_time(
    redis_url: str, clock: VirtualClock
) -> None:
    with flag_on(redis_url, clock) as admin, flag_on(redis_url, clock) as worker:
        admin.enable()
        assert worker.enabled(NAME, "Project:1") is True
        admin.disable()  # the rollback, from "another process"
        clock.advance(0.999)
        assert worker.enabled(NAME, "Project:1") is True  # still the state read 0.999 s ago
        clock.advance(0.001)
        assert worker.enabled(NAME, "Project:1") is False


def test_within_the_cache_second_checks_do_not_read_redis(
    redis_url: str, raw: redis.Redis, clock: VirtualClock
) -> None:
    with flag_on(redis_url, clock) as flag:
        raw.config_resetstat()
        for _ in range(50):
            flag.enabled(NAME, "Project:1")
            clock.advance(0.01)
        reads = raw.info("commandstats")["cmdstat_hgetall"]["calls"]
    assert reads == 1


@pytest.mark.parametrize(
    ("cache_seconds", "seen_after"), [(0, 0.0), (0.25, 0.25), (timedelta(seconds=5), 5.0)]
)
def test_cache_seconds_is_configurable(
    redis_url: str, clock: VirtualClock, cache_seconds: float | timedelta, seen_after: float
) -> None:
    with (
        flag_on(redis_url, clock) as admin,
        flag_on(redis_url, clock, cache_seconds=cache_seconds) as worker,
    ):
        admin.enable()
        assert worker.enabled(NAME, None) is True
        admin.disable()
        if seen_after:
            clock.advance(seen_after * 0.99)
            assert worker.enabled(NAME, None) is True
            clock.advance(seen_after * 0.01)
        assert worker.enabled(NAME, None) is False


@given(
    cache_seconds=st.floats(min_value=0.0, max_value=5.0),
    steps=st.lists(
        st.tuples(st.floats(min_value=0.0, max_value=3.0), st.booleans()), min_size=1, max_size=20
    ),
)
def test_a_check_answers_from_a_read_made_at_most_cache_seconds_before(
    redis_server: RedisServer, cache_seconds: float, steps: list[tuple[float, bool]]
) -> None:
    """The model: a check reads Redis once its last read is cache_seconds old, else trusts it."""
    with redis.Redis.from_url(redis_server.url) as raw_client:
        raw_client.flushdb()
    clock = VirtualClock()
    in_redis, seen, last_read = False, False, None
    with (
        flag_on(redis_server.url, clock) as admin,
        flag_on(redis_server.url, clock, cache_seconds=cache_seconds) as worker,
    ):
        for advance, flip in steps:
            clock.advance(advance)
            if flip:
                in_redis = not in_redis
                (admin.enable if in_redis else admin.disable)()
            now = clock.monotonic()
            if last_read is None or now - last_read >= cache_seconds:
                seen, last_read = in_redis, now
            assert worker.enabled(NAME, None) is seen


def test_a_rollback_by_the_command_in_another_process_reaches_this_one_after_the_cache_second(
    redis_url: str, clock: VirtualClock
) -> None:
    with flag_on(redis_url, clock) as flag:
        flag.enable_percentage_of_time(100)
        assert flag.enabled(NAME, None) is True
        command = [sys.executable, "-m", "bb_backoff", "flag", "set", NAME, "false"]
        done = subprocess.run(  # noqa: S603 (our own interpreter and command)
            [*command, "--store", redis_url],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (done.returncode, done.stderr) == (0, "")
        assert flag.enabled(NAME, None) is True  # this process still trusts its read
        clock.advance(1.0)
        assert flag.enabled(NAME, None) is False


# -- through the clients -----------------------------------------------------------------------

ON_POLICY = ExponentialBackoff(initial=0.25, factor=2.0, max_delay=4.0, jitter="none")
LEGACY_POLICY = FixedRetry(delay=1.0, max_attempts=3)
USER_URL = "https://api.bitbucket.org/2.0/user"


def flaky_user_router() -> respx.Router:
    """Every request: a 503, then a 200, so each one records one retry event."""
    router = respx.Router(assert_all_called=False)
    router.get(USER_URL).mock(side_effect=[httpx.Response(503), httpx.Response(200, json={})] * 3)
    return router


def test_sync_client_follows_the_flag_in_redis_and_a_rollback_within_a_second(
    redis_url: str, clock: VirtualClock
) -> None:
    events: list[RetryEvent] = []
    router = flaky_user_router()
    with flag_on(redis_url, clock) as admin, flag_on(redis_url, clock) as flag:
        admin.enable_actor("Project:42")
        client = BitbucketClient(
            flag=flag,
            actor="Project:42",
            policy=ON_POLICY,
            legacy_policy=LEGACY_POLICY,
            transport=httpx.MockTransport(router.handler),
            on_retry=events.append,
            clock=clock.monotonic,
            now=clock.time,
            sleep=clock.sleep,
        )
        with client:
            client.get("/user")  # on: waits 0.25 s
            admin.disable_actor("Project:42")
            client.get("/user")  # read 0.25 s ago: still on
            clock.advance(1.0)
            client.get("/user")  # the rollback is seen
    assert [event.flag_variant for event in events] == ["on", "on", "off"]


@pytest.mark.anyio
async def test_async_client_follows_the_flag_in_redis_and_a_rollback_within_a_second(
    redis_url: str, clock: VirtualClock
) -> None:
    events: list[RetryEvent] = []
    router = flaky_user_router()
    with flag_on(redis_url, clock) as admin:
        async with flag_on(redis_url, clock) as flag:
            admin.enable_actor("Project:42")
            client = AsyncBitbucketClient(
                flag=flag,
                actor="Project:42",
                policy=ON_POLICY,
                legacy_policy=LEGACY_POLICY,
                transport=httpx.MockTransport(router.async_handler),
                on_retry=events.append,
                clock=clock.monotonic,
                now=clock.time,
                sleep=clock.sleep,
            )
            async with client:
                await client.get("/user")
                admin.disable_actor("Project:42")
                await client.get("/user")
                clock.advance(1.0)
                await client.get("/user")
    assert [event.flag_variant for event in events] == ["on", "on", "off"]


# -- outages: the last state is kept, one record per outage and one on recovery ----------------


def test_a_killed_redis_keeps_the_last_state_with_one_record_and_recovery_after_restart(
    own_redis: RedisServer, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bb_backoff")
    with flag_on(own_redis.url, clock) as flag:
        flag.enable_actor("Project:1")
        own_redis.kill()
        answers = []
        for _ in range(5):
            clock.advance(1.0)
            answers.append(flag.enabled(NAME, "Project:1"))
        assert answers == [True] * 5
        (outage,) = records_about_the_store(caplog)
        assert outage.levelno == logging.WARNING
        assert "keeping the gates read 1 s ago" in outage.getMessage()

        own_redis.start()  # empty: nothing persisted
        with redis.Redis.from_url(own_redis.url) as admin:
            admin.hset(NAME, "percentage_of_time", "100")
        clock.advance(1.0)
        assert (flag.enabled(NAME, "Project:1"), flag.percentage_of_time) == (True, 100.0)
        clock.advance(1.0)
        flag.enabled(NAME, "Project:1")
    recovery = records_about_the_store(caplog)[1:]
    assert [record.levelno for record in recovery] == [logging.INFO]
    assert "answers again after 5 s" in recovery[0].getMessage()


def test_a_second_outage_is_a_second_record(
    own_redis: RedisServer, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bb_backoff")
    with flag_on(own_redis.url, clock) as flag:
        for _ in range(2):
            flag.enable()
            own_redis.kill()
            clock.advance(1.0)
            assert flag.enabled(NAME, None) is True
            own_redis.start()
            clock.advance(1.0)
            assert flag.enabled(NAME, None) is False  # the restarted server is empty
    levels = [record.levelno for record in records_about_the_store(caplog)]
    assert levels == [logging.WARNING, logging.INFO, logging.WARNING, logging.INFO]


def test_with_no_state_ever_read_an_unreachable_store_means_off_with_one_warning(
    clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bb_backoff")
    with flag_on(dead_url(), clock) as flag:
        answers = []
        for _ in range(3):
            answers.append(flag.enabled(NAME, "Project:1"))
            clock.advance(1.0)
    assert answers == [False] * 3
    (warning,) = records_about_the_store(caplog)
    assert warning.levelno == logging.WARNING
    assert "off (legacy policy)" in warning.getMessage()


def test_during_an_outage_redis_is_tried_once_per_cache_second_not_per_check(
    clock: VirtualClock,
) -> None:
    attempts: list[float] = []
    with flag_on(dead_url(), clock) as flag:
        store = flag._store
        assert store is not None
        read = store.read

        def counting_read(name: str) -> FlipperHash:
            attempts.append(clock.monotonic())
            return read(name)

        store.read = counting_read  # type: ignore[method-assign]
        for _ in range(40):
            flag.enabled(NAME, None)
            clock.advance(0.125)
    assert attempts == [0.0, 1.0, 2.0, 3.0, 4.0]


class CountingLock:
    """A lock that counts the threads that asked for it, waiting or not."""

    def __init__(self, threads: int) -> None:
        self._lock = threading.Lock()
        self._count = threading.Lock()
        self.asked = 0
        self.all_asked = threading.Event()
        self._threads = threads

    def acquire(self, blocking: bool = True) -> bool:
        with self._count:
            self.asked += 1
            if self.asked == self._threads:
                self.all_asked.set()
        return self._lock.acquire(blocking)

    def release(self) -> None:
        self._lock.release()


def checks_at_once(flag: FlipperFlag, actors: list[str]) -> tuple[list[bool], int, int]:
    """``flag``'s answer for each actor, each asked in a thread of its own, all at once.

    The store's first read waits until every thread has asked for the
    refresh lock.

    Returns:
        The answers, how many threads asked for the lock, how many reads went.
    """
    lock = CountingLock(len(actors))
    flag._refreshing = lock  # type: ignore[assignment]
    store = flag._store
    assert store is not None
    read = store.read
    reads: list[str] = []

    def counting_read(name: str) -> FlipperHash:
        reads.append(name)
        assert lock.all_asked.wait(timeout=10)  # every thread waits behind this read
        return read(name)

    store.read = counting_read  # type: ignore[method-assign]
    with ThreadPoolExecutor(max_workers=len(actors)) as pool:
        answers = list(pool.map(lambda actor: flag.enabled(NAME, actor), actors))
    return answers, lock.asked, len(reads)


@pytest.fixture
def silent_redis() -> Iterator[str]:
    """The URL, with 50 ms timeouts, of a server that accepts and never answers: a hung Redis."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        port = silent.getsockname()[1]
        yield f"redis://127.0.0.1:{port}/0?socket_timeout=0.05&socket_connect_timeout=0.05"


@pytest.mark.parametrize("cache_seconds", [0.0, 0.02], ids=["no cache", "cache below timeout"])
def test_checks_waiting_for_the_first_read_take_its_failure_and_never_read_in_turn(
    silent_redis: str, cache_seconds: float, caplog: pytest.LogCaptureFixture
) -> None:
    """Eight threads check at once before anything was read; Redis is hung.

    One reads (and times out); the seven that waited for it answer from its
    failure (off) without reading: each would wait a timeout of its own.
    """
    caplog.set_level(logging.WARNING, logger="bb_backoff")
    with FlipperFlag(store=silent_redis, cache_seconds=cache_seconds) as flag:
        answers, asked, reads = checks_at_once(flag, [f"Project:{n}" for n in range(8)])
    assert answers == [False] * 8
    assert (asked, reads) == (8, 1)
    assert len(records_about_the_store(caplog)) == 1


def test_checks_waiting_for_the_first_read_take_the_state_it_read(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with FlipperFlag(store=redis_url) as admin:
        admin.enable_actor("Project:1")
    with FlipperFlag(store=redis_url, cache_seconds=0) as flag:
        answers, asked, reads = checks_at_once(flag, [f"Project:{n % 2}" for n in range(8)])
    assert answers == [False, True] * 4
    assert (asked, reads) == (8, 1)


async def async_checks_at_once(flag: FlipperFlag, actors: list[str]) -> tuple[list[bool], int]:
    """``flag``'s async answer for each actor, each asked in a task of its own, all at once.

    The store's first read lets every other task run up to where it waits
    before it reads.

    Returns:
        The answers, how many reads went.
    """
    store = flag._store
    assert store is not None
    read_async = store.read_async
    reads: list[str] = []

    async def counting_read(name: str) -> FlipperHash:
        reads.append(name)
        for _ in range(len(actors)):  # every other task asks meanwhile
            await asyncio.sleep(0)
        return await read_async(name)

    store.read_async = counting_read  # type: ignore[method-assign]
    answers = await asyncio.gather(*(flag.enabled_async(NAME, actor) for actor in actors))
    return answers, len(reads)


@pytest.mark.anyio
async def test_async_checks_waiting_for_the_first_read_take_the_state_it_read(
    redis_url: str,
) -> None:
    # As the threads' checks do: one read, not one per task (128 workers
    # starting at once made 128 reads of a store that may be down).
    with FlipperFlag(store=redis_url) as admin:
        admin.enable_actor("Project:1")
    async with FlipperFlag(store=redis_url, cache_seconds=0) as flag:
        answers, reads = await async_checks_at_once(flag, [f"Project:{n % 2}" for n in range(8)])
    assert answers == [False, True] * 4
    assert reads == 1


@pytest.mark.anyio
async def test_async_checks_waiting_for_the_first_read_take_its_failure(
    silent_redis: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bb_backoff")
    async with FlipperFlag(store=silent_redis, cache_seconds=0) as flag:
        answers, reads = await async_checks_at_once(flag, [f"Project:{n}" for n in range(8)])
    assert answers == [False] * 8
    assert reads == 1
    assert len(records_about_the_store(caplog)) == 1


@pytest.mark.anyio
async def test_async_checks_waiting_for_a_first_read_cancelled_read_in_its_place(
    redis_url: str,
) -> None:
    with FlipperFlag(store=redis_url) as admin:
        admin.enable()
    async with FlipperFlag(store=redis_url, cache_seconds=0) as flag:
        store = flag._store
        assert store is not None
        read_async = store.read_async
        started = asyncio.Event()
        reads: list[str] = []

        async def first_hangs(name: str) -> FlipperHash:
            reads.append(name)
            if len(reads) == 1:
                started.set()
                await asyncio.sleep(3600)  # cancelled long before
            return await read_async(name)

        store.read_async = first_hangs  # type: ignore[method-assign]
        first = asyncio.ensure_future(flag.enabled_async(NAME, None))
        await started.wait()
        waiting = [asyncio.ensure_future(flag.enabled_async(NAME, None)) for _ in range(4)]
        await asyncio.sleep(0)
        first.cancel()
        answers = await asyncio.gather(*waiting)
    assert answers == [True] * 4
    assert len(reads) == 2  # the cancelled one, then one for all the waiting checks


@pytest.mark.anyio
async def test_an_async_check_on_another_event_loop_reads_for_itself(redis_url: str) -> None:
    # The first read's event belongs to its loop: a check on another loop
    # (another thread's) cannot wait for it, and reads, as before.
    with FlipperFlag(store=redis_url) as admin:
        admin.enable()
    async with FlipperFlag(store=redis_url, cache_seconds=0) as flag:
        store = flag._store
        assert store is not None
        read_async = store.read_async
        other_loop_done = threading.Event()
        reads: list[str] = []

        async def first_waits_for_the_other_loop(name: str) -> FlipperHash:
            reads.append(name)
            if len(reads) > 1:  # the other loop's: through the sync client, which no loop owns
                return store.read(name)
            while not other_loop_done.is_set():
                await asyncio.sleep(0.005)
            return await read_async(name)

        store.read_async = first_waits_for_the_other_loop  # type: ignore[method-assign]
        first = asyncio.ensure_future(flag.enabled_async(NAME, None))
        while not reads:
            await asyncio.sleep(0)
        answers: list[bool] = []

        def on_another_loop() -> None:
            answers.append(asyncio.run(flag.enabled_async(NAME, None)))
            other_loop_done.set()

        thread = threading.Thread(target=on_another_loop)
        thread.start()
        assert await first is True
        await asyncio.to_thread(thread.join, 10)
    assert answers == [True]
    assert len(reads) == 2


def test_after_a_failed_read_the_next_try_waits_cache_seconds_from_the_failure(
    silent_redis: str, clock: VirtualClock
) -> None:
    """Reads that time out after 0.25 s, a cache of 0.25 s: not a read on every check."""
    attempts: list[float] = []
    with flag_on(silent_redis, clock, cache_seconds=0.25) as flag:
        store = flag._store
        assert store is not None
        read = store.read

        def timing_out(name: str) -> FlipperHash:
            attempts.append(clock.monotonic())
            clock.advance(0.25)  # the timeout, in virtual time
            return read(name)

        store.read = timing_out  # type: ignore[method-assign]
        for _ in range(8):
            flag.enabled(NAME, None)
            clock.advance(0.125)
    # The read at 0 fails at 0.25: the check at 0.375 answers at once, the one at 0.5 reads.
    assert attempts == [0.0, 0.5, 1.0, 1.5]


def test_a_redis_that_accepts_but_never_answers_is_an_outage_not_a_hang(
    clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bb_backoff")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        url = f"redis://127.0.0.1:{port}/0?socket_timeout=0.05&socket_connect_timeout=0.05"
        with flag_on(url, clock) as flag:
            assert flag.enabled(NAME, None) is False
    (warning,) = records_about_the_store(caplog)
    assert "Timeout" in warning.getMessage()


def test_writes_to_an_unreachable_store_raise_flag_store_error_and_change_nothing(
    redis_url: str, clock: VirtualClock
) -> None:
    with flag_on(dead_url(), clock) as flag:
        with pytest.raises(FlagStoreError, match="failed enabling") as caught:
            flag.enable()
        assert caught.value.__cause__ is None
        for write in (flag.disable, flag.remove, flag.refresh):
            with pytest.raises(FlagStoreError):
                write()
        with pytest.raises(FlagStoreError):
            flag.enable_percentage_of_time(5)
        assert flag.enabled(NAME, None) is False


def test_refresh_reads_at_once_whatever_the_cache(
    redis_url: str, raw: redis.Redis, clock: VirtualClock
) -> None:
    with flag_on(redis_url, clock) as flag:
        assert flag.enabled(NAME, None) is False
        raw.hset(NAME, "boolean", "true")
        assert flag.enabled(NAME, None) is False
        flag.refresh()
        assert flag.enabled(NAME, None) is True
    FlipperFlag().refresh()  # in memory: nothing to read


def test_a_redis_error_that_is_not_a_connection_error_is_an_outage_too(
    redis_url: str, raw: redis.Redis, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bb_backoff")
    with flag_on(redis_url, clock) as flag:
        flag.enable()
        raw.delete(NAME)
        raw.set(NAME, "not a hash")  # WRONGTYPE on HGETALL
        clock.advance(1.0)
        assert flag.enabled(NAME, None) is True
    (warning,) = records_about_the_store(caplog)
    assert "WRONGTYPE" in warning.getMessage()


# -- async -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query", ["ssl_cert_reqs=none&ssl_validate_ocsp_stapled=false", "command_packer=x"]
)
def test_a_setting_the_asyncio_connections_refuse_is_refused_when_the_flag_is_made(
    query: str,
) -> None:
    # The sync connections take these and the asyncio ones do not: every
    # async read would fail (and redis-py reads OCSP settings from a URL as
    # text, which fails at the first command or checks nothing).
    with pytest.raises(ValueError, match="store is not a valid Redis URL") as refused:
        FlipperFlag(store=f"rediss://:{SECRET}@127.0.0.1:{free_port()}/0?{query}")
    assert SECRET not in str(refused.value)


@pytest.mark.anyio
async def test_enabled_async_reads_through_redis_asyncio_and_sees_a_rollback(
    redis_url: str, raw: redis.Redis, clock: VirtualClock
) -> None:
    async with flag_on(redis_url, clock) as flag:
        raw.hset(NAME, "boolean", "true")
        assert await flag.enabled_async(NAME, None) is True
        raw.delete(NAME)
        clock.advance(0.5)
        assert await flag.enabled_async(NAME, None) is True
        clock.advance(0.5)
        assert await flag.enabled_async(NAME, None) is False
        assert await flag.enabled_async("other_flag", None) is False
        store = flag._store
        assert store is not None
        assert store._sync_client is not None
        # the reads went through the asyncio client of this loop
        assert list(store._loop_clients.values()) != []
    assert list(store._loop_clients.values()) == []  # closed by async with


@pytest.mark.anyio
async def test_enabled_async_never_blocks_the_loop_while_it_reads(
    redis_url: str, raw: redis.Redis, clock: VirtualClock
) -> None:
    """Another task runs while the read is in flight: the loop is free."""
    raw.hset(NAME, "boolean", "true")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    async with flag_on(redis_url, clock, cache_seconds=0) as flag:
        task = asyncio.create_task(ticker())
        try:
            answers = [await flag.enabled_async(NAME, None) for _ in range(20)]
        finally:
            task.cancel()
    assert answers == [True] * 20
    assert ticks >= 20


@pytest.mark.anyio
async def test_async_outage_keeps_the_last_state_with_one_record_and_recovers(
    own_redis: RedisServer, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bb_backoff")
    async with flag_on(own_redis.url, clock) as flag:
        flag.enable()
        own_redis.kill()
        answers = []
        for _ in range(3):
            clock.advance(1.0)
            answers.append(await flag.enabled_async(NAME, None))
        own_redis.start()
        clock.advance(1.0)
        answers.append(await flag.enabled_async(NAME, None))
    assert answers == [True, True, True, False]
    levels = [record.levelno for record in records_about_the_store(caplog)]
    assert levels == [logging.WARNING, logging.INFO]


@pytest.mark.anyio
async def test_a_redis_asyncio_client_handed_in_serves_enabled_async_and_stays_open(
    redis_url: str, raw: redis.Redis, clock: VirtualClock
) -> None:
    raw.hset(NAME, "actors/Project:5", "1")
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        flag = FlipperFlag(store=client, clock=clock.monotonic)
        assert await flag.enabled_async(NAME, "Project:5") is True
        assert flag.actors == frozenset({"Project:5"})  # the last state read, no I/O
        with pytest.raises(TypeError, match="enabled_async"):
            flag.enabled(NAME, "Project:5")
        with pytest.raises(TypeError, match="enabled_async"):
            flag.enable()
        check = FlagCheck(flag=flag, actor="Project:5")
        assert await check.ask_async() is True
        assert check.ask() is False  # the sync path refused: legacy, counted
        assert check.errors == 1
        await flag.aclose()
        assert await client.ping() is True  # the caller's client is left open
    finally:
        await client.aclose()


@pytest.mark.anyio
async def test_a_sync_client_handed_in_serves_both_paths_and_stays_open(
    redis_url: str, raw: redis.Redis, clock: VirtualClock
) -> None:
    raw.hset(NAME, "percentage_of_time", "100")
    with redis.Redis.from_url(redis_url) as client:
        async with FlipperFlag(store=client, clock=clock.monotonic) as flag:
            assert await flag.enabled_async(NAME, None) is True
            assert flag.enabled(NAME, None) is True
        assert client.ping() is True


@pytest.mark.anyio
async def test_one_flag_serves_several_event_loops(redis_url: str, raw: redis.Redis) -> None:
    """An asyncio client belongs to one loop: the flag keeps one per loop."""
    raw.hset(NAME, "boolean", "true")
    flag = FlipperFlag(store=redis_url, cache_seconds=0)

    def in_another_loop() -> bool:
        async def check() -> bool:
            try:
                return await flag.enabled_async(NAME, None)
            finally:
                await flag.aclose()

        return asyncio.run(check())

    with ThreadPoolExecutor(max_workers=1) as pool:
        assert pool.submit(in_another_loop).result() is True
    assert await flag.enabled_async(NAME, None) is True
    await flag.aclose()


# -- threads -----------------------------------------------------------------------------------


def test_concurrent_checks_and_changes_never_raise_and_the_final_rollback_holds(
    redis_url: str, clock: VirtualClock
) -> None:
    start = threading.Barrier(6)
    with flag_on(redis_url, clock) as admin, flag_on(redis_url, clock, cache_seconds=0) as flag:

        def toggle() -> int:
            start.wait()
            for step in range(30):
                admin.enable_percentage_of_actors(step % 101)
                admin.enable()
                admin.disable()
            return 0

        def check(worker: int) -> int:
            start.wait()
            for step in range(100):
                flag.enabled(NAME, f"Project:{worker}-{step}")
            return 100

        with ThreadPoolExecutor(max_workers=6) as pool:
            futures = [pool.submit(toggle) for _ in range(2)]
            futures += [pool.submit(check, worker) for worker in range(4)]
            results = [future.result() for future in futures]
        assert results == [0, 0, 100, 100, 100, 100]
        admin.disable()
        assert [flag.enabled(NAME, f"Project:{n}") for n in range(20)] == [False] * 20


# -- the property: Redis-backed answers == in-memory answers -----------------------------------


@given(
    boolean=st.booleans(),
    actors=st.frozensets(actor_ids, max_size=4),
    percentage_of_actors=percentages,
    percentage_of_time=percentages,
    asked=st.lists(st.one_of(st.none(), actor_ids), min_size=1, max_size=8),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_a_redis_backed_flag_answers_exactly_as_the_in_memory_flag(
    redis_server: RedisServer,
    *,
    boolean: bool,
    actors: frozenset[str],
    percentage_of_actors: float,
    percentage_of_time: float,
    asked: list[str | None],
    seed: int,
) -> None:
    memory = FlipperFlag(
        boolean=boolean,
        actors=actors,
        percentage_of_actors=percentage_of_actors,
        percentage_of_time=percentage_of_time,
        random=random.Random(seed).random,
    )
    with redis.Redis.from_url(redis_server.url) as admin:
        admin.flushdb()
    clock = VirtualClock()
    with (
        flag_on(redis_server.url, clock) as writer,
        flag_on(redis_server.url, clock, random=random.Random(seed).random) as reader,
    ):
        for actor in actors:
            writer.enable_actor(actor)
        writer.enable_percentage_of_actors(percentage_of_actors)
        writer.enable_percentage_of_time(percentage_of_time)
        if boolean:
            writer.enable()  # Flipper's boolean gate clears the others first
            memory = FlipperFlag(boolean=True, random=random.Random(seed).random)
        # The cohort belongs to the actors asked about and a few in it.
        asked += [f"Project:{number}" for number in range(1, 6)]
        assert [reader.enabled(NAME, actor) for actor in asked] == [
            memory.enabled(NAME, actor) for actor in asked
        ]
        assert (reader.boolean, reader.actors, reader.percentage_of_actors) == (
            memory.boolean,
            memory.actors,
            memory.percentage_of_actors,
        )
        assert reader.percentage_of_time == memory.percentage_of_time


# -- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"store": 42}, "store must be a redis:// URL"),
        ({"store": "localhost:6379"}, "store must be a redis://"),
        ({"store": "http://127.0.0.1/0"}, "store must be a redis://"),
        ({"store": "redis://127.0.0.1:notaport/0"}, "store is not a valid Redis URL"),
        ({"store": "redis://127.0.0.1/flags"}, "the path after the host must be a database"),
        ({"store": "redis://127.0.0.1/0?colour=red"}, "argument 'colour'"),
        ({"store": "redis://:?s3cret=1@127.0.0.1/0"}, "percent-encode a password"),
        ({"store": "redis://default:1234?s3cret&x@127.0.0.1/0"}, "a field without '='"),
        ({"store": "redis://127.0.0.1/0", "boolean": True}, "the gates come from it"),
        ({"store": "redis://127.0.0.1/0", "actors": ["Project:1"]}, "the gates come from it"),
        ({"store": "redis://127.0.0.1/0", "percentage_of_time": 5}, "the gates come from it"),
        ({"store": "redis://127.0.0.1/0", "key_prefix": 3}, "key_prefix must be a string"),
    ],
)
def test_invalid_options_raise_value_error_naming_them(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        FlipperFlag(**options)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("unix:///run/redis.sock?db=2", "unix:///run/redis.sock?db=2"),
        ("unix://:s3cret@/run/redis.sock", "unix://:***@/run/redis.sock"),
        ("redis://127.0.0.1/0?db=1&password=s3cret", "redis://127.0.0.1/0?db=1&password=***"),
        # Fields after the password: perhaps its rest, cut at an unencoded "&".
        ("redis://127.0.0.1/0?password=s3cret&db=1", "redis://127.0.0.1/0?password=***&***"),
        # An "@" after the host: perhaps a password cut after digits that
        # read as a port (see redact_url).
        ("redis://127.0.0.1:1/0?client_name=w@h&password=s3cret", "redis://127.0.0.1/***?***"),
    ],
)
def test_a_store_url_is_described_without_its_passwords_and_still_made(
    url: str, shown: str
) -> None:
    # A unix:// URL without a user part was refused: the description lost its "//".
    store = RedisFlagStore(url)
    assert store.description == shown


@pytest.mark.parametrize("name", ["", "flipper_features"])
def test_names_that_cannot_live_in_the_layout_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="name"):
        FlipperFlag(name, store="redis://127.0.0.1/0")


def test_a_store_created_from_a_url_has_short_timeouts_that_the_url_may_override() -> None:
    short = RedisFlagStore("redis://127.0.0.1:6379/0")
    long = RedisFlagStore("redis://127.0.0.1:6379/0?socket_timeout=2")
    kwargs = [store._sync().connection_pool.connection_kwargs for store in (short, long)]
    assert [k["socket_timeout"] for k in kwargs] == [DEFAULT_TIMEOUT, 2.0]
    assert kwargs[0]["socket_connect_timeout"] == DEFAULT_TIMEOUT
    assert kwargs[0]["retry"].get_retries() == 0  # a request never waits for a second try
    short.close()
    long.close()


# -- secrets -----------------------------------------------------------------------------------


def test_the_password_never_appears_in_repr_errors_or_logs(
    clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="bb_backoff")
    url = dead_url(SECRET) + f"?socket_timeout=0.5&password={SECRET}x"
    with flag_on(url, clock) as flag:
        flag.enabled(NAME, None)
        with pytest.raises(FlagStoreError) as caught:
            flag.enable()
        texts = [repr(flag), str(caught.value), repr(caught.value), caplog.text]
    assert all(SECRET not in text for text in texts)
    assert "redis://:***@127.0.0.1" in repr(flag)
    assert "password=***" in repr(flag)
    assert "socket_timeout=0.5" in repr(flag)


@pytest.mark.parametrize(
    "store",
    [
        f"redis://:{SECRET}@127.0.0.1:notaport/0",
        f"user:{SECRET}@127.0.0.1:6379",
        f"http://user:{SECRET}@127.0.0.1/0",
        f"redis://127.0.0.1:notaport/0?password={SECRET}",
        f"redis://:ab/{SECRET}@127.0.0.1:1/0",  # urlsplit would cut this password at "/"
        f"redis://:{SECRET}?#@127.0.0.1:1/0",
        f"redis://me:{SECRET}@127.0.0.1:1/0",
        f"redis://me@corp.com:{SECRET}@127.0.0.1:1/0",  # an email address as the user
        f"redis://127.0.0.1:1/0?password={SECRET[:4]}&{SECRET[4:]}",  # cut at an "&"
        f"redis://127.0.0.1:1/0?password={SECRET[:4]}&{SECRET[4:]}=1",
        f"redis://127.0.0.1:1/0?password={SECRET[:4]}#{SECRET[4:]}",
    ],
)
def test_a_urls_password_never_shows_whether_the_url_is_refused_or_taken(store: str) -> None:
    try:
        flag = FlipperFlag(store=store)
    except ValueError as error:
        shown = str(error)
    else:
        with flag:
            shown = repr(flag)
    assert "store" in shown
    assert SECRET not in shown
    assert SECRET[4:] not in shown  # nor the rest of one cut after its first characters


def test_a_password_protected_redis_works_and_a_wrong_password_never_leaks(
    own_redis: RedisServer, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="bb_backoff")
    with redis.Redis.from_url(own_redis.url) as admin:
        admin.config_set("requirepass", SECRET)
    good = own_redis.url.replace("redis://", f"redis://:{SECRET}@")
    wrong = own_redis.url.replace("redis://", f"redis://:{SECRET}-wrong@")
    with flag_on(good, clock) as flag, flag_on(wrong, clock) as intruder:
        flag.enable()
        assert flag.enabled(NAME, None) is True
        assert intruder.enabled(NAME, None) is False
        with pytest.raises(FlagStoreError) as caught:
            intruder.disable()
        texts = [repr(flag), repr(intruder), str(caught.value), caplog.text]
    assert all(SECRET not in text for text in texts)
    assert "AuthenticationError" in str(caught.value) or "WRONGPASS" in str(caught.value)


def test_a_client_handed_in_is_described_without_its_password(redis_url: str) -> None:
    with redis.Redis.from_url(redis_url.replace("redis://", f"redis://:{SECRET}@")) as client:
        flag = FlipperFlag(store=client)
        assert SECRET not in repr(flag)
        assert "redis://127.0.0.1:" in repr(flag)


# -- docs/flags.md: every example runs against a real server -----------------------------------


def python_blocks(page: Path) -> list[str]:
    blocks: list[str] = []
    lines = page.read_text().splitlines()
    inside: list[str] | None = None
    for line in lines:
        if inside is None and line.strip() == "```python":
            inside = []
        elif inside is not None and line.strip() == "```":
            blocks.append("\n".join(inside))
            inside = None
        elif inside is not None:
            inside.append(line)
    return blocks


def test_every_python_example_in_the_flags_page_runs(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BB_BACKOFF_FLAG_STORE", redis_url)
    blocks = python_blocks(ROOT / "docs" / "flags.md")
    assert len(blocks) >= 3
    for number, block in enumerate(blocks):
        namespace: dict[str, Any] = {"__name__": f"flags_md_{number}"}
        exec(compile(block, f"docs/flags.md example {number + 1}", "exec"), namespace)  # noqa: S102


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\uff11\uff10\uff10", 0.0),  # fullwidth digits "100": Ruby's to_f is 0.0
        ("\u0663\u0663", 0.0),  # Arabic-Indic digits "33"
        ("\u200333", 0.0),  # a space Ruby does not skip
        (" 33", 33.0),
        ("33\u0663", 33.0),
    ],
)
def test_only_ascii_digits_and_spaces_are_read_as_ruby_reads_them(
    text: str, expected: float
) -> None:
    """A percentage a Ruby Flipper reads as 0 must not open the flag here."""
    assert ruby_to_f(text) == expected
