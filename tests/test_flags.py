"""The feature flag (``_flags.py``): Flipper's gates, and how the clients consult them.

The first half pins :class:`FlipperFlag` and :class:`StaticFlag` on their own
(gates, formulas, validation, thread safety); the second half pins the
contract with the clients, sync and async mirrored: the flag is asked once
per logical request, for the client's actor, and a request keeps the policy
it started with.
"""

from __future__ import annotations

import logging
import threading
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, Final

import httpx
import pytest
import respx
from hypothesis import given
from hypothesis import strategies as st

from bb_backoff import (
    FLAG_NAME,
    AsyncBitbucketClient,
    BearerToken,
    BitbucketClient,
    ExponentialBackoff,
    FixedRetry,
    FlagSource,
    FlipperFlag,
    RetriesExhausted,
    RetryEvent,
    StaticFlag,
)
from bb_backoff._flags import FlagCheck
from bb_backoff.testing import DatasetSize, MockBitbucket, VirtualClock

BASE_URL = "https://api.bitbucket.org/2.0"
USER_URL = f"{BASE_URL}/user"

# Deterministic policies whose waits tell them apart: the flag-on policy waits
# 0.25 s, then 0.5 s; the legacy policy always waits 1 s.
ON_POLICY = ExponentialBackoff(initial=0.25, factor=2.0, max_delay=4.0, jitter="none")
LEGACY_POLICY = FixedRetry(delay=1.0, max_attempts=3)

actor_ids = st.builds(
    "{}:{}".format,
    st.sampled_from(["Project", "Group", "User", "Namespace"]),
    st.integers(min_value=1, max_value=10**12),
)
percentages = st.floats(min_value=0.0, max_value=100.0, allow_nan=False)


def flipper_cohort(name: str, actor: str, percentage: float) -> bool:
    """Flipper's percentage-of-actors formula, written out independently of the library."""
    return zlib.crc32((name + actor).encode()) % 100_000 < percentage * 1_000


def first_actor(in_cohort: bool, percentage: float) -> str:
    """The first ``Project:<n>`` that is (or is not) in the cohort at ``percentage``."""
    for number in range(1, 10_000):
        actor = f"Project:{number}"
        if flipper_cohort(FLAG_NAME, actor, percentage) is in_cohort:
            return actor
    raise AssertionError("no such actor in range")  # pragma: no cover


# -- FLAG_NAME and StaticFlag ---------------------------------------------------


def test_flag_name_is_gitlabs_feature_flag_name() -> None:
    assert FLAG_NAME == "bitbucket_importer_exponential_backoff"


@pytest.mark.parametrize("on", [True, False])
@pytest.mark.parametrize("name", [FLAG_NAME, "some_other_flag"])
@pytest.mark.parametrize("actor", [None, "Project:1"])
def test_static_flag_answers_on_for_every_name_and_actor(
    on: bool, name: str, actor: str | None
) -> None:
    assert StaticFlag(on).enabled(name, actor) is on


@pytest.mark.parametrize("value", ["false", "yes", 0, 1, None])
def test_static_flag_refuses_anything_but_a_bool_naming_on(value: object) -> None:
    """``StaticFlag("false")`` would otherwise fail every check at request time."""
    with pytest.raises(ValueError, match=r"^on must be True or False, got "):
        StaticFlag(value)  # type: ignore[arg-type]


def test_static_and_flipper_flags_satisfy_the_flag_source_protocol() -> None:
    assert isinstance(StaticFlag(True), FlagSource)
    assert isinstance(FlipperFlag(), FlagSource)


def overruled(asked: list[str | None]) -> StaticFlag:
    """A subclass of StaticFlag(True) that answers otherwise, and records each actor asked for."""

    class Overruled(StaticFlag):
        def enabled(self, name: str, actor: str | None) -> bool:
            asked.append(actor)
            return not self.on

    return Overruled(True)


@pytest.mark.parametrize("flag", [True, False, StaticFlag(True), StaticFlag(False)], ids=repr)
def test_a_bool_or_a_static_flag_is_fixed_so_a_client_need_not_ask_it(
    flag: bool | StaticFlag,
) -> None:
    on = flag if isinstance(flag, bool) else flag.on
    assert FlagCheck(flag=flag, actor=None).fixed is on


def test_a_static_flag_holding_no_bool_is_not_fixed_but_asked_and_refused() -> None:
    """One forced past its validator answers 1: a failure of the source, as for any other."""
    flag = StaticFlag(True)
    object.__setattr__(flag, "on", 1)  # StaticFlag(1) itself is refused (see above)
    check = FlagCheck(flag=flag, actor=None)
    assert check.fixed is None
    assert check.ask() is False
    assert check.errors == 1


def test_a_source_that_may_answer_otherwise_is_not_fixed_even_a_static_flag_subclass() -> None:
    assert FlagCheck(flag=overruled([]), actor=None).fixed is None
    assert FlagCheck(flag=FlipperFlag(boolean=True), actor=None).fixed is None
    assert FlagCheck(flag=RecordingFlag(), actor=None).fixed is None


# -- FlipperFlag gates ---------------------------------------------------------


def test_flipper_flag_defaults_to_every_gate_closed() -> None:
    flag = FlipperFlag()
    assert (
        flag.name,
        flag.boolean,
        flag.actors,
        flag.percentage_of_actors,
        flag.percentage_of_time,
    ) == (FLAG_NAME, False, frozenset(), 0.0, 0.0)
    assert flag.enabled(FLAG_NAME, None) is False
    assert flag.enabled(FLAG_NAME, "Project:1") is False


@pytest.mark.parametrize("actor", [None, "Project:1", "User:7"])
def test_boolean_gate_opens_for_every_actor_including_none(actor: str | None) -> None:
    assert FlipperFlag(boolean=True).enabled(FLAG_NAME, actor) is True


def test_actors_gate_opens_only_for_listed_actor_ids() -> None:
    flag = FlipperFlag(actors=["Project:1", "Group:45"])
    answers = {
        actor: flag.enabled(FLAG_NAME, actor) for actor in ["Project:1", "Group:45", "Project:2"]
    }
    assert answers == {"Project:1": True, "Group:45": True, "Project:2": False}
    assert flag.actors == frozenset({"Project:1", "Group:45"})


def test_actor_none_never_matches_the_actors_or_percentage_of_actors_gates() -> None:
    """GitLab passed no actor, so these gates could never open its rollout."""
    flag = FlipperFlag(actors=["Project:1"], percentage_of_actors=100)
    assert flag.enabled(FLAG_NAME, None) is False
    assert flag.enabled(FLAG_NAME, "Project:1") is True


@given(actor=actor_ids, percentage=percentages)
def test_percentage_of_actors_gate_matches_flippers_crc32_formula(
    actor: str, percentage: float
) -> None:
    flag = FlipperFlag(percentage_of_actors=percentage)
    assert flag.enabled(FLAG_NAME, actor) is flipper_cohort(FLAG_NAME, actor, percentage)


@given(actor=actor_ids, low=percentages, high=percentages)
def test_percentage_of_actors_cohorts_grow_monotonically(
    actor: str, low: float, high: float
) -> None:
    low, high = sorted((low, high))
    in_low = FlipperFlag(percentage_of_actors=low).enabled(FLAG_NAME, actor)
    in_high = FlipperFlag(percentage_of_actors=high).enabled(FLAG_NAME, actor)
    assert (not in_low) or in_high


def test_percentage_of_actors_cohort_size_is_close_to_the_percentage() -> None:
    actors = [f"Project:{number}" for number in range(1, 5_001)]
    flag = FlipperFlag(percentage_of_actors=12.5)
    share = sum(flag.enabled(FLAG_NAME, actor) for actor in actors) / len(actors)
    assert abs(share - 0.125) < 0.02


def test_percentage_of_actors_zero_and_hundred_are_none_and_all() -> None:
    actors = [f"Project:{number}" for number in range(1, 201)]
    none = FlipperFlag(percentage_of_actors=0)
    every = FlipperFlag(percentage_of_actors=100)
    assert [none.enabled(FLAG_NAME, actor) for actor in actors] == [False] * 200
    assert [every.enabled(FLAG_NAME, actor) for actor in actors] == [True] * 200


def test_percentage_of_actors_cohort_depends_on_the_flag_name() -> None:
    """The name is part of the hash, so two flags at 50% pick different cohorts."""
    actors = [f"Project:{number}" for number in range(1, 201)]
    ours = FlipperFlag(percentage_of_actors=50)
    other = FlipperFlag("other_flag", percentage_of_actors=50)
    expected_other = [flipper_cohort("other_flag", actor, 50) for actor in actors]
    assert [other.enabled("other_flag", actor) for actor in actors] == expected_other
    assert [ours.enabled(FLAG_NAME, actor) for actor in actors] != expected_other


def test_percentage_of_time_draws_once_per_check_from_the_injected_random() -> None:
    draws = iter([0.10, 0.29, 0.30, 0.95])
    flag = FlipperFlag(percentage_of_time=30, random=lambda: next(draws))
    answers = [flag.enabled(FLAG_NAME, None) for _ in range(4)]
    assert answers == [True, True, False, False]


def test_percentage_of_time_accepts_fractional_percentages() -> None:
    draws = iter([0.0049, 0.005])
    flag = FlipperFlag(percentage_of_time=0.5, random=lambda: next(draws))
    assert [flag.enabled(FLAG_NAME, "Project:1"), flag.enabled(FLAG_NAME, None)] == [True, False]


def test_percentage_of_time_closed_never_draws() -> None:
    def no_draw() -> float:
        raise AssertionError("the random source was called")

    assert FlipperFlag(random=no_draw).enabled(FLAG_NAME, "Project:1") is False


@pytest.mark.parametrize(
    "flag",
    [
        FlipperFlag(boolean=True),
        FlipperFlag(actors=["Project:1"]),
        FlipperFlag(percentage_of_actors=100),
        FlipperFlag(percentage_of_time=100, random=lambda: 0.0),
    ],
    ids=["boolean", "actors", "percentage_of_actors", "percentage_of_time"],
)
def test_other_flag_names_are_off_whatever_the_gates(flag: FlipperFlag) -> None:
    assert flag.enabled("some_other_flag", "Project:1") is False
    assert flag.enabled(FLAG_NAME, "Project:1") is True


def test_custom_flag_name_owns_the_gates() -> None:
    flag = FlipperFlag("my_feature", boolean=True)
    assert (flag.enabled("my_feature", None), flag.enabled(FLAG_NAME, None)) == (True, False)


def test_repr_shows_every_gate() -> None:
    flag = FlipperFlag(actors=["Project:2", "Project:1"], percentage_of_actors=5)
    assert repr(flag) == (
        "FlipperFlag('bitbucket_importer_exponential_backoff', boolean=False, "
        "actors=['Project:1', 'Project:2'], percentage_of_actors=5.0, percentage_of_time=0.0)"
    )


# -- FlipperFlag changes -------------------------------------------------------


def test_enable_and_disable_toggle_the_boolean_gate() -> None:
    flag = FlipperFlag()
    flag.enable()
    assert (flag.boolean, flag.enabled(FLAG_NAME, None)) == (True, True)
    flag.disable()
    assert (flag.boolean, flag.enabled(FLAG_NAME, None)) == (False, False)


def test_disable_closes_every_gate_like_flipper() -> None:
    flag = FlipperFlag(
        boolean=True,
        actors=["Project:1"],
        percentage_of_actors=100,
        percentage_of_time=100,
        random=lambda: 0.0,
    )
    flag.disable()
    gates = (flag.boolean, flag.actors, flag.percentage_of_actors, flag.percentage_of_time)
    assert gates == (False, frozenset(), 0.0, 0.0)
    assert flag.enabled(FLAG_NAME, "Project:1") is False


def test_enable_clears_the_other_gates_like_flipper_and_the_redis_store() -> None:
    # Flipper's boolean enable clears the feature first; the Redis store
    # does (DEL, then HSET boolean): memory must leave the same gates.
    flag = FlipperFlag(actors=["Project:1"], percentage_of_actors=30, percentage_of_time=5)
    flag.enable()
    gates = (flag.boolean, flag.actors, flag.percentage_of_actors, flag.percentage_of_time)
    assert gates == (True, frozenset(), 0.0, 0.0)
    assert flag.enabled(FLAG_NAME, "Project:2") is True


def test_enable_actor_and_disable_actor_change_only_that_actor() -> None:
    flag = FlipperFlag(actors=["Project:1"])
    flag.enable_actor("Project:2")
    assert flag.actors == frozenset({"Project:1", "Project:2"})
    assert flag.enabled(FLAG_NAME, "Project:2") is True
    flag.disable_actor("Project:1")
    assert flag.actors == frozenset({"Project:2"})
    assert flag.enabled(FLAG_NAME, "Project:1") is False
    flag.disable_actor("Project:99")  # absent: a no-op, not an error
    assert flag.actors == frozenset({"Project:2"})


def test_enable_percentage_of_actors_opens_the_cohort_and_disable_closes_it() -> None:
    inside = first_actor(True, 10)
    outside = first_actor(False, 10)
    flag = FlipperFlag()
    flag.enable_percentage_of_actors(10)
    assert flag.percentage_of_actors == 10.0
    assert (flag.enabled(FLAG_NAME, inside), flag.enabled(FLAG_NAME, outside)) == (True, False)
    flag.disable_percentage_of_actors()
    assert (flag.percentage_of_actors, flag.enabled(FLAG_NAME, inside)) == (0.0, False)


def test_enable_percentage_of_time_opens_and_disable_closes_it() -> None:
    flag = FlipperFlag(random=lambda: 0.5)
    flag.enable_percentage_of_time(50.5)
    assert (flag.percentage_of_time, flag.enabled(FLAG_NAME, None)) == (50.5, True)
    flag.disable_percentage_of_time()
    assert (flag.percentage_of_time, flag.enabled(FLAG_NAME, None)) == (0.0, False)


def test_disable_percentage_gates_leave_the_other_gates_alone() -> None:
    flag = FlipperFlag(actors=["Project:1"], percentage_of_actors=30, percentage_of_time=40)
    flag.disable_percentage_of_time()
    assert (flag.actors, flag.percentage_of_actors, flag.percentage_of_time) == (
        frozenset({"Project:1"}),
        30.0,
        0.0,
    )
    flag.disable_percentage_of_actors()
    assert (flag.actors, flag.percentage_of_actors) == (frozenset({"Project:1"}), 0.0)


# -- validation ----------------------------------------------------------------

BAD_PERCENTAGES: list[Any] = [-1, 101, "50", True, float("nan"), float("inf"), None]


@pytest.mark.parametrize("value", BAD_PERCENTAGES)
@pytest.mark.parametrize("parameter", ["percentage_of_actors", "percentage_of_time"])
def test_constructor_rejects_invalid_percentages_naming_the_parameter(
    parameter: str, value: Any
) -> None:
    with pytest.raises(ValueError, match=rf"^{parameter} must be a number from 0 to 100"):
        FlipperFlag(**{parameter: value})


@pytest.mark.parametrize("value", BAD_PERCENTAGES)
@pytest.mark.parametrize("method", ["enable_percentage_of_actors", "enable_percentage_of_time"])
def test_enable_percentage_rejects_invalid_values_and_keeps_the_gate(
    method: str, value: Any
) -> None:
    flag = FlipperFlag(percentage_of_actors=7, percentage_of_time=8)
    with pytest.raises(ValueError, match=r"^percentage must be a number from 0 to 100"):
        getattr(flag, method)(value)
    assert (flag.percentage_of_actors, flag.percentage_of_time) == (7.0, 8.0)


@pytest.mark.parametrize("value", [0, 0.001, 50, 99.999, 100])
def test_percentages_from_0_to_100_are_accepted_as_floats(value: float) -> None:
    flag = FlipperFlag(percentage_of_actors=value, percentage_of_time=value)
    assert (flag.percentage_of_actors, flag.percentage_of_time) == (float(value), float(value))


BAD_ACTORS: list[Any] = ["", 123, None, b"Project:1"]


@pytest.mark.parametrize("actor", BAD_ACTORS)
def test_invalid_actor_ids_raise_naming_actor(actor: Any) -> None:
    flag = FlipperFlag()
    with pytest.raises(ValueError, match=r"^actor must be a non-empty id string"):
        FlipperFlag(actors=[actor])
    with pytest.raises(ValueError, match=r"^actor must be a non-empty id string"):
        flag.enable_actor(actor)
    with pytest.raises(ValueError, match=r"^actor must be a non-empty id string"):
        flag.disable_actor(actor)
    assert flag.actors == frozenset()


@pytest.mark.parametrize("value", ["false", "true", 0, 1, None, [0]])
def test_a_boolean_gate_that_is_not_a_bool_is_refused_naming_it(value: Any) -> None:
    """bool("false") is True: the flag was on for everyone."""
    with pytest.raises(ValueError, match=r"^boolean must be True or False"):
        FlipperFlag(boolean=value)


@pytest.mark.parametrize("value", [None, "", 7, b"name"])
def test_a_name_that_is_not_a_non_empty_string_is_refused_naming_it(value: Any) -> None:
    with pytest.raises(ValueError, match=r"^name must be a non-empty string"):
        FlipperFlag(value)


@pytest.mark.parametrize("value", [None, 7, "Project:1"])
def test_actors_that_are_not_a_collection_of_ids_are_refused_naming_them(value: Any) -> None:
    with pytest.raises(ValueError, match=r"^actors must be a collection of ids"):
        FlipperFlag(actors=value)


def test_a_random_that_is_not_callable_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match=r"^random must be a callable"):
        FlipperFlag(random=0.5)  # type: ignore[arg-type]


def test_a_huge_int_percentage_is_refused_naming_it_without_its_digits() -> None:
    with pytest.raises(ValueError, match=r"^percentage_of_time .* got a huge int$"):
        FlipperFlag(percentage_of_time=10**5000)


@pytest.mark.parametrize("value", [-1, float("nan"), float("inf"), 60.001, "1", None, True])
def test_invalid_cache_seconds_raise_naming_it(value: Any) -> None:
    with pytest.raises(ValueError, match=r"^cache_seconds must be"):
        FlipperFlag(cache_seconds=value)


@pytest.mark.parametrize("value", [0, 0.5, 60, timedelta(seconds=2)])
def test_cache_seconds_from_0_to_60_are_accepted_as_seconds_or_timedelta(value: Any) -> None:
    FlipperFlag(cache_seconds=value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"key_prefix": "gitlab:"}, r"^key_prefix needs a store"),
        ({"clock": 3.0}, r"^clock must be a callable"),
    ],
)
def test_store_options_without_a_store_are_refused_naming_them(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        FlipperFlag(**options)


# -- in memory: the store's methods are harmless -------------------------------------


def test_in_memory_remove_closes_every_gate() -> None:
    flag = FlipperFlag(boolean=True, actors=["Project:1"], percentage_of_time=50)
    flag.remove()
    assert (flag.boolean, flag.actors, flag.percentage_of_time) == (False, frozenset(), 0.0)


@pytest.mark.anyio
async def test_in_memory_enabled_async_answers_as_enabled() -> None:
    flag = FlipperFlag(actors=["Project:1"])
    answers = [await flag.enabled_async(FLAG_NAME, actor) for actor in ["Project:1", "User:2"]]
    assert answers == [True, False]
    assert await flag.enabled_async("some_other_flag", "Project:1") is False


@pytest.mark.anyio
async def test_in_memory_refresh_close_and_context_managers_do_nothing() -> None:
    flag = FlipperFlag(boolean=True)
    flag.refresh()
    with flag as same:
        assert same is flag
    async with flag as again:
        assert again is flag
    await flag.aclose()
    assert flag.enabled(FLAG_NAME, None) is True


# -- thread safety ---------------------------------------------------------------


def test_concurrent_toggles_and_checks_never_raise_and_disable_applies_next_check() -> None:
    flag = FlipperFlag(random=lambda: 0.5)
    start = threading.Barrier(8)

    def toggler(worker: int) -> None:
        start.wait()
        for step in range(300):
            flag.enable()
            flag.enable_actor(f"Project:{worker}-{step}")
            flag.enable_percentage_of_actors(step % 101)
            flag.enable_percentage_of_time((step * 7) % 101)
            flag.disable_actor(f"Project:{worker}-{step}")
            flag.disable_percentage_of_time()
            flag.disable()

    def reader(worker: int) -> int:
        start.wait()
        checks = 0
        for step in range(1_500):
            flag.enabled(FLAG_NAME, f"Project:{worker}-{step}")
            flag.enabled(FLAG_NAME, None)
            checks += 2
        return checks

    with ThreadPoolExecutor(max_workers=8) as pool:
        toggles = [pool.submit(toggler, worker) for worker in range(4)]
        reads = [pool.submit(reader, worker) for worker in range(4)]
        results = [future.result() for future in toggles + reads]  # re-raises any error
    assert results[4:] == [3_000] * 4

    flag.enable()
    flag.enable_percentage_of_actors(100)
    flag.disable()
    assert [flag.enabled(FLAG_NAME, f"Project:{n}") for n in range(50)] == [False] * 50


def test_concurrent_changes_to_different_gates_lose_no_update() -> None:
    flag = FlipperFlag()
    start = threading.Barrier(6)

    def add_actors(worker: int) -> None:
        start.wait()
        for number in range(100):
            flag.enable_actor(f"Project:{worker * 1_000 + number}")

    def churn_percentages(_worker: int) -> None:
        start.wait()
        for step in range(400):
            flag.enable_percentage_of_time(step % 100)
            flag.enable_percentage_of_actors(step % 100)

    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = [pool.submit(add_actors, worker) for worker in range(4)]
        futures += [pool.submit(churn_percentages, worker) for worker in range(2)]
        for future in futures:
            future.result()
    expected = {f"Project:{worker * 1_000 + n}" for worker in range(4) for n in range(100)}
    assert flag.actors == frozenset(expected)


# -- through the clients -----------------------------------------------------------


class RecordingFlag:
    """A flag source that answers ``on`` and records every question."""

    def __init__(self, on: bool = True) -> None:
        self.on = on
        self.questions: list[tuple[str, str | None]] = []

    def enabled(self, name: str, actor: str | None) -> bool:
        self.questions.append((name, actor))
        return self.on


class BrokenFlag:
    """A flag source whose backing store is down."""

    def __init__(self) -> None:
        self.calls = 0

    def enabled(self, name: str, actor: str | None) -> bool:
        self.calls += 1
        raise RuntimeError(f"flag store unreachable for {name} / {actor}")


def fail_then_succeed(*bodies: object) -> list[httpx.Response]:
    """For each body: a 503, then a 200 with that body (one logical request each)."""
    responses: list[httpx.Response] = []
    for body in bodies:
        responses += [httpx.Response(503), httpx.Response(200, json=body)]
    return responses


def user_router(responses: list[httpx.Response]) -> respx.Router:
    router = respx.Router(assert_all_called=False)
    router.get(USER_URL).mock(side_effect=responses)
    return router


def sync_client(
    flag: Any,
    clock: VirtualClock,
    events: list[RetryEvent],
    transport: httpx.BaseTransport,
    *,
    actor: str | None = None,
    legacy_policy: FixedRetry = LEGACY_POLICY,
    on_retry: Callable[[RetryEvent], object] | None = None,
) -> BitbucketClient:
    return BitbucketClient(
        flag=flag,
        actor=actor,
        policy=ON_POLICY,
        legacy_policy=legacy_policy,
        transport=transport,
        on_retry=on_retry or events.append,
        clock=clock.monotonic,
        now=clock.time,
        sleep=clock.sleep,
    )


def async_client(
    flag: Any,
    clock: VirtualClock,
    events: list[RetryEvent],
    transport: httpx.AsyncBaseTransport,
    *,
    actor: str | None = None,
    legacy_policy: FixedRetry = LEGACY_POLICY,
    on_retry: Callable[[RetryEvent], object] | None = None,
) -> AsyncBitbucketClient:
    return AsyncBitbucketClient(
        flag=flag,
        actor=actor,
        policy=ON_POLICY,
        legacy_policy=legacy_policy,
        transport=transport,
        on_retry=on_retry or events.append,
        clock=clock.monotonic,
        now=clock.time,
        sleep=clock.sleep,
    )


def test_sync_flag_flip_takes_effect_on_the_very_next_request() -> None:
    flag = FlipperFlag(boolean=True)
    clock = VirtualClock()
    events: list[RetryEvent] = []
    router = user_router(fail_then_succeed({"n": 1}, {"n": 2}, {"n": 3}))
    with sync_client(flag, clock, events, httpx.MockTransport(router.handler)) as client:
        first = client.get("/user")
        flag.disable()
        second = client.get("/user")
        flag.enable()
        third = client.get("/user")
    assert [first, second, third] == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert [event.flag_variant for event in events] == ["on", "off", "on"]
    assert clock.sleeps == [0.25, 1.0, 0.25]


@pytest.mark.anyio
async def test_async_flag_flip_takes_effect_on_the_very_next_request() -> None:
    flag = FlipperFlag(boolean=True)
    clock = VirtualClock()
    events: list[RetryEvent] = []
    router = user_router(fail_then_succeed({"n": 1}, {"n": 2}, {"n": 3}))
    async with async_client(
        flag, clock, events, httpx.MockTransport(router.async_handler)
    ) as client:
        first = await client.get("/user")
        flag.disable()
        second = await client.get("/user")
        flag.enable()
        third = await client.get("/user")
    assert [first, second, third] == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert [event.flag_variant for event in events] == ["on", "off", "on"]
    assert clock.sleeps == [0.25, 1.0, 0.25]


def test_sync_client_asks_the_flag_once_per_request_for_its_actor() -> None:
    flag = RecordingFlag()
    clock = VirtualClock()
    events: list[RetryEvent] = []
    router = user_router(fail_then_succeed({"n": 1}))
    transport = httpx.MockTransport(router.handler)
    with sync_client(flag, clock, events, transport, actor="Project:42") as client:
        client.get("/user")
    assert flag.questions == [(FLAG_NAME, "Project:42")]
    assert [(event.actor, event.flag_variant) for event in events] == [("Project:42", "on")]


@pytest.mark.anyio
async def test_async_client_asks_the_flag_once_per_request_for_its_actor() -> None:
    flag = RecordingFlag()
    clock = VirtualClock()
    events: list[RetryEvent] = []
    router = user_router(fail_then_succeed({"n": 1}))
    transport = httpx.MockTransport(router.async_handler)
    async with async_client(flag, clock, events, transport, actor="Project:42") as client:
        await client.get("/user")
    assert flag.questions == [(FLAG_NAME, "Project:42")]
    assert [(event.actor, event.flag_variant) for event in events] == [("Project:42", "on")]


COHORT_ACTORS = [
    (first_actor(True, 10), "on"),
    (first_actor(False, 10), "off"),
    (None, "off"),
]


@pytest.mark.parametrize(("actor", "variant"), COHORT_ACTORS)
def test_sync_percentage_of_actors_rollout_opens_for_cohort_actors_only(
    actor: str | None, variant: str
) -> None:
    flag = FlipperFlag(percentage_of_actors=10)
    clock = VirtualClock()
    events: list[RetryEvent] = []
    router = user_router(fail_then_succeed({"n": 1}))
    transport = httpx.MockTransport(router.handler)
    with sync_client(flag, clock, events, transport, actor=actor) as client:
        assert client.get("/user") == {"n": 1}
    assert [event.flag_variant for event in events] == [variant]


@pytest.mark.anyio
@pytest.mark.parametrize(("actor", "variant"), COHORT_ACTORS)
async def test_async_percentage_of_actors_rollout_opens_for_cohort_actors_only(
    actor: str | None, variant: str
) -> None:
    flag = FlipperFlag(percentage_of_actors=10)
    clock = VirtualClock()
    events: list[RetryEvent] = []
    router = user_router(fail_then_succeed({"n": 1}))
    transport = httpx.MockTransport(router.async_handler)
    async with async_client(flag, clock, events, transport, actor=actor) as client:
        assert await client.get("/user") == {"n": 1}
    assert [event.flag_variant for event in events] == [variant]


def warnings_from_bb_backoff(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name == "bb_backoff" and record.levelno == logging.WARNING
    ]


def test_sync_flag_source_that_raises_falls_back_to_legacy_and_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="bb_backoff")
    flag = BrokenFlag()
    clock = VirtualClock()
    events: list[RetryEvent] = []
    router = user_router(fail_then_succeed({"n": 1}, {"n": 2}))
    transport = httpx.MockTransport(router.handler)
    with sync_client(flag, clock, events, transport, actor="Project:9") as client:
        results = [client.get("/user"), client.get("/user")]
        errors = client.flag_errors
    assert results == [{"n": 1}, {"n": 2}]
    assert errors == 2
    assert [event.flag_variant for event in events] == ["off", "off"]
    assert clock.sleeps == [1.0, 1.0]  # the legacy policy's waits
    warnings = warnings_from_bb_backoff(caplog)
    assert len(warnings) == 1  # one run of failures
    assert "legacy policy" in warnings[0].getMessage()
    assert warnings[0].exc_info is not None
    assert warnings[0].exc_info[0] is RuntimeError


def test_a_flag_sources_error_is_logged_with_its_traceback_but_never_the_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The source's message, and its cause's, may quote the client's credential."""
    token = BearerToken("flag-SECRET-token")

    class Quoting:
        def enabled(self, name: str, actor: str | None) -> bool:
            cause = OSError(f"refused Authorization: Bearer {token.token}")
            raise RuntimeError(f"flag service said: {token.token}") from cause

    caplog.set_level(logging.WARNING, logger="bb_backoff")
    transport = httpx.MockTransport(lambda _request: httpx.Response(200, json={"ok": True}))
    with BitbucketClient(auth=token, flag=Quoting(), transport=transport) as client:
        assert client.get("/user") == {"ok": True}
    assert "flag service said: [redacted]" in caplog.text  # the traceback is there...
    assert "Bearer [redacted]" in caplog.text  # ...with its cause
    assert token.token not in caplog.text


@pytest.mark.anyio
async def test_async_flag_source_that_raises_falls_back_to_legacy_and_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="bb_backoff")
    flag = BrokenFlag()
    clock = VirtualClock()
    events: list[RetryEvent] = []
    router = user_router(fail_then_succeed({"n": 1}, {"n": 2}))
    transport = httpx.MockTransport(router.async_handler)
    async with async_client(flag, clock, events, transport, actor="Project:9") as client:
        results = [await client.get("/user"), await client.get("/user")]
        errors = client.flag_errors
    assert results == [{"n": 1}, {"n": 2}]
    assert errors == 2
    assert [event.flag_variant for event in events] == ["off", "off"]
    assert clock.sleeps == [1.0, 1.0]
    warnings = warnings_from_bb_backoff(caplog)
    assert len(warnings) == 1  # one run of failures
    assert "legacy policy" in warnings[0].getMessage()
    assert warnings[0].exc_info is not None
    assert warnings[0].exc_info[0] is RuntimeError


class ScriptedFlag:
    """A flag source that answers, or raises, as scripted: one entry per check."""

    def __init__(self, *script: bool | Exception) -> None:
        self.script = list(script)

    def enabled(self, name: str, actor: str | None) -> bool:
        answer = self.script.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


DOWN_UP_DOWN: Final[tuple[bool | Exception, ...]] = (
    *[RuntimeError(f"flag service down ({n})") for n in range(3)],
    True,
    True,
    RuntimeError("flag service down again"),
)
"""Three failures, two answers, a failure: two runs of failures."""


def records_of_runs(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str, bool]]:
    """The records about the flag source: level, the message's start, whether with a traceback."""
    return [
        (record.levelno, record.getMessage()[:40], record.exc_info is not None)
        for record in about_the_flag_source(caplog)
    ]


def about_the_flag_source(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name == "bb_backoff" and record.getMessage().startswith("flag source")
    ]


RUNS_LOGGED: Final = [
    (logging.WARNING, "flag source ScriptedFlag raised while ch", True),
    (logging.DEBUG, "flag source ScriptedFlag failed again (r", False),
    (logging.DEBUG, "flag source ScriptedFlag failed again (r", False),
    (logging.INFO, "flag source ScriptedFlag answers again f", False),
    (logging.WARNING, "flag source ScriptedFlag raised while ch", True),
]


def test_sync_a_run_of_flag_source_failures_logs_one_warning_and_a_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="bb_backoff")
    clock = VirtualClock()
    transport = httpx.MockTransport(lambda _request: httpx.Response(200, json={}))
    events: list[RetryEvent] = []
    with sync_client(ScriptedFlag(*DOWN_UP_DOWN), clock, events, transport) as client:
        for _ in DOWN_UP_DOWN:
            client.get("/user")
        errors = client.flag_errors
    assert errors == 4
    assert records_of_runs(caplog) == RUNS_LOGGED
    records = about_the_flag_source(caplog)
    assert "answers again for None after 3 failed checks" in records[3].getMessage()
    assert records[4].exc_info is not None
    assert str(records[4].exc_info[1]) == "flag service down again"


@pytest.mark.anyio
async def test_async_a_run_of_flag_source_failures_logs_one_warning_and_a_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="bb_backoff")
    clock = VirtualClock()
    transport = httpx.MockTransport(lambda _request: httpx.Response(200, json={}))
    events: list[RetryEvent] = []
    async with async_client(ScriptedFlag(*DOWN_UP_DOWN), clock, events, transport) as client:
        for _ in DOWN_UP_DOWN:
            await client.get("/user")
        errors = client.flag_errors
    assert errors == 4
    assert records_of_runs(caplog) == RUNS_LOGGED


def always_503(flip: Callable[[], None] | None = None) -> Callable[[httpx.Request], httpx.Response]:
    """A handler answering 503 forever; ``flip`` runs on the first call."""
    calls = iter(range(1_000))

    def handler(_request: httpx.Request) -> httpx.Response:
        if next(calls) == 0 and flip is not None:
            flip()
        return httpx.Response(503)

    return handler


def sequence(responses: list[httpx.Response]) -> Callable[[httpx.Request], httpx.Response]:
    remaining: Iterator[httpx.Response] = iter(responses)
    return lambda _request: next(remaining)


# With the flag switched on mid-request, the exponential policy would keep going
# (error_attempts=5); the legacy policy with 2 attempts gives up after 2.
ONE_RETRY = FixedRetry(delay=1.0, max_attempts=2)
# With the flag switched off mid-request, a legacy policy of 1 attempt would give
# up at the first 503; the exponential policy retries to success.
NO_RETRY = FixedRetry(max_attempts=1)


def test_sync_request_keeps_the_legacy_policy_when_the_flag_turns_on_mid_retries() -> None:
    flag = FlipperFlag()
    clock = VirtualClock()
    events: list[RetryEvent] = []
    transport = httpx.MockTransport(always_503(flip=flag.enable))
    client = sync_client(flag, clock, events, transport, legacy_policy=ONE_RETRY)
    with client, pytest.raises(RetriesExhausted) as caught:
        client.get("/user")
    assert (caught.value.flag_variant, caught.value.attempts) == ("off", 2)
    assert clock.sleeps == [1.0]
    assert flag.enabled(FLAG_NAME, None) is True  # the flip did happen


@pytest.mark.anyio
async def test_async_request_keeps_the_legacy_policy_when_the_flag_turns_on_mid_retries() -> None:
    flag = FlipperFlag()
    clock = VirtualClock()
    events: list[RetryEvent] = []
    transport = httpx.MockTransport(always_503(flip=flag.enable))
    client = async_client(flag, clock, events, transport, legacy_policy=ONE_RETRY)
    async with client:
        with pytest.raises(RetriesExhausted) as caught:
            await client.get("/user")
    assert (caught.value.flag_variant, caught.value.attempts) == ("off", 2)
    assert clock.sleeps == [1.0]
    assert flag.enabled(FLAG_NAME, None) is True


def test_sync_request_keeps_the_flag_on_policy_when_on_retry_turns_the_flag_off() -> None:
    flag = FlipperFlag(boolean=True)
    clock = VirtualClock()
    events: list[RetryEvent] = []

    def on_retry(event: RetryEvent) -> None:
        events.append(event)
        flag.disable()

    responses = [httpx.Response(503), httpx.Response(503), httpx.Response(200, json={"n": 1})]
    responses += [httpx.Response(503), httpx.Response(200, json={"n": 2})]
    transport = httpx.MockTransport(sequence(responses))
    client = sync_client(flag, clock, events, transport, legacy_policy=NO_RETRY, on_retry=on_retry)
    with client:
        assert client.get("/user") == {"n": 1}
        with pytest.raises(RetriesExhausted) as caught:
            client.get("/user")  # the next request sees the flip: legacy, no retry
    assert [event.flag_variant for event in events] == ["on", "on"]
    assert clock.sleeps == [0.25, 0.5]
    assert (caught.value.flag_variant, caught.value.attempts) == ("off", 1)


@pytest.mark.anyio
async def test_async_request_keeps_the_flag_on_policy_when_on_retry_turns_the_flag_off() -> None:
    flag = FlipperFlag(boolean=True)
    clock = VirtualClock()
    events: list[RetryEvent] = []

    def on_retry(event: RetryEvent) -> None:
        events.append(event)
        flag.disable()

    responses = [httpx.Response(503), httpx.Response(503), httpx.Response(200, json={"n": 1})]
    responses += [httpx.Response(503), httpx.Response(200, json={"n": 2})]
    transport = httpx.MockTransport(sequence(responses))
    client = async_client(flag, clock, events, transport, legacy_policy=NO_RETRY, on_retry=on_retry)
    async with client:
        assert await client.get("/user") == {"n": 1}
        with pytest.raises(RetriesExhausted) as caught:
            await client.get("/user")
    assert [event.flag_variant for event in events] == ["on", "on"]
    assert clock.sleeps == [0.25, 0.5]
    assert (caught.value.flag_variant, caught.value.attempts) == ("off", 1)


# -- a static flag's subclass, through the clients on the mock ----------------------------

MOCK_SIZE = DatasetSize(
    repositories=1,
    pull_requests=2,
    comments_per_pull_request=1,
    issues=1,
    comments_per_issue=1,
    members=1,
)


def test_sync_client_asks_a_static_flag_subclass_on_every_request() -> None:
    clock = VirtualClock()
    mock = MockBitbucket(size=MOCK_SIZE, clock=clock.monotonic, now=clock.time)
    asked: list[str | None] = []
    with BitbucketClient(
        auth=mock.bearer(),
        transport=mock.transport(),
        flag=overruled(asked),
        actor="Project:7",
        clock=clock.monotonic,
        now=clock.time,
        sleep=clock.sleep,
    ) as client:
        variants = [
            page.flag_variant for _ in range(3) for page in client.pages("/user/workspaces")
        ]
    assert asked == ["Project:7"] * 3
    assert variants == ["off"] * 3  # its answer, not its ``on``


@pytest.mark.anyio
async def test_async_client_asks_a_static_flag_subclass_on_every_request() -> None:
    clock = VirtualClock()
    mock = MockBitbucket(size=MOCK_SIZE, clock=clock.monotonic, now=clock.time)
    asked: list[str | None] = []
    variants: list[str | None] = []
    async with AsyncBitbucketClient(
        auth=mock.bearer(),
        transport=mock.async_transport(),
        flag=overruled(asked),
        actor="Project:7",
        clock=clock.monotonic,
        now=clock.time,
        sleep=clock.sleep,
    ) as client:
        for _ in range(3):
            variants += [page.flag_variant async for page in client.pages("/user/workspaces")]
    assert asked == ["Project:7"] * 3
    assert variants == ["off"] * 3
