"""bb_backoff._bench._contenders: the table of contenders, virtual time for the peers, scaling."""

from __future__ import annotations

import importlib
import math
import random
import sys
import time
import types
from typing import Any

import attrs
import httpx
import pytest

from bb_backoff import GITLAB_16_7, AccountGate, ExponentialBackoff, FixedRetry
from bb_backoff._bench import CONTENDERS, Arena, Contender, contender_named
from bb_backoff._bench._contenders import _gate, _scaled
from bb_backoff._bench._importer import AsyncFetcher, SyncFetcher
from bb_backoff._bench._runner import BASE_URL
from bb_backoff._bench._scenarios import QUICK_SIZE
from bb_backoff._timing import duration
from bb_backoff.testing import MockBitbucket, VirtualClock, VirtualThreads, run_virtual

PEER_MODULE = "bb_backoff_test_peer"
PATCHING = [contender for contender in CONTENDERS if contender.patches]


def no_fetcher(_arena: Arena) -> AsyncFetcher:
    raise NotImplementedError


def peer_contender(*modules: str) -> Contender:
    return Contender("a peer", "async", no_fetcher, patches=modules)


@pytest.fixture
def peer_module(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """A stand-in peer that reads the ``time`` module, as tenacity and urllib3 do."""
    module = types.ModuleType(PEER_MODULE)
    module.time = time  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, PEER_MODULE, module)
    return module


def virtual_arena(clock: VirtualClock | None, threads: VirtualThreads | None = None) -> Arena:
    return Arena(
        mock=MockBitbucket(size=QUICK_SIZE),
        base_url=BASE_URL,
        seed=0,
        clock=clock,
        threads=threads,
    )


def time_settings(policy: type) -> list[str]:
    """The policy's fields that hold seconds: those converted by ``duration``."""
    return [field.name for field in attrs.fields(policy) if field.converter is duration]


# -- the table ------------------------------------------------------------------------


def test_every_contender_is_available_in_this_venv() -> None:
    assert [contender.name for contender in CONTENDERS if not contender.available()] == []


def test_a_contender_whose_module_is_missing_is_unavailable() -> None:
    missing = Contender("ghost", "async", no_fetcher, requires="bb_backoff_no_such_module")
    assert missing.available() is False


def test_contender_names_are_unique() -> None:
    names = [contender.name for contender in CONTENDERS]
    assert len(set(names)) == len(names)


def test_contenders_are_async_or_sync() -> None:
    assert {contender.mode for contender in CONTENDERS} == {"async", "sync"}


def test_contender_named_finds_each_contender_and_refuses_an_unknown_name() -> None:
    assert [contender_named(c.name) for c in CONTENDERS] == list(CONTENDERS)
    with pytest.raises(ValueError, match="unknown contender 'nobody'"):
        contender_named("nobody")


def test_the_contenders_are_the_documented_rows_in_table_order() -> None:
    assert [contender.name for contender in CONTENDERS] == [
        "bb-backoff, flag on",
        "bb-backoff, flag on, no gate",
        "bb-backoff, flag off (legacy)",
        "GITLAB_16_7 preset",
        "tenacity",
        "tenacity, tuned for an hourly limit",
        "stamina",
        "stamina + Retry-After hook",
        "backoff",
        "httpx-retries",
        "bb-backoff, flag on (sync)",
        "urllib3 Retry (sync)",
    ]


# -- the gate ----------------------------------------------------------------------------


def test_the_gate_knows_the_limit_only_when_the_arena_tells_it() -> None:
    arena = virtual_arena(VirtualClock())
    told = attrs.evolve(arena, configured_limit=50)
    untold_gate, told_gate = _gate(arena, enabled=True), _gate(told, enabled=True)
    assert isinstance(untold_gate, AccountGate)
    assert isinstance(told_gate, AccountGate)
    assert (untold_gate.limit, told_gate.limit) == (None, 50)
    assert _gate(told, enabled=False) is False


def test_the_gate_is_scaled_like_the_arena_and_seeded() -> None:
    arena = attrs.evolve(virtual_arena(VirtualClock()), scale=0.01, seed=7)
    gate = _gate(arena, enabled=True)
    assert gate == AccountGate(
        window=arena.mock.window,
        probe_initial=0.01,
        probe_max=3.0,
        breaker_max=0.6,
        probe_lease=0.6,
        outage_budget=18.0,
        seed=7,
    )


# -- patched ----------------------------------------------------------------------------


def test_patched_gives_the_peer_a_time_on_the_virtual_clock_during_the_block(
    peer_module: types.ModuleType,
) -> None:
    clock = VirtualClock(start=100.0)
    with peer_contender(PEER_MODULE).patched(virtual_arena(clock)):
        peer_time: Any = peer_module.time
        assert (peer_time.monotonic(), peer_time.perf_counter()) == (100.0, 100.0)
        assert peer_time.time() == clock.time()
        peer_time.sleep(30.0)
        assert clock.monotonic() == 130.0
    assert clock.sleeps == [30.0]


def test_patched_sleeps_through_the_virtual_threads_when_there_are_some(
    peer_module: types.ModuleType,
) -> None:
    clock = VirtualClock()
    threads = VirtualThreads(clock)
    with peer_contender(PEER_MODULE).patched(virtual_arena(clock, threads)):
        peer_time: Any = peer_module.time
        assert peer_time.sleep == threads.sleep
        assert threads.run([lambda: peer_time.sleep(5.0), lambda: peer_time.sleep(2.0)]) == [
            None,
            None,
        ]
    assert clock.monotonic() == 5.0


def test_patched_restores_the_real_time_module_afterwards(peer_module: types.ModuleType) -> None:
    with peer_contender(PEER_MODULE).patched(virtual_arena(VirtualClock())):
        assert peer_module.time is not time
    assert peer_module.time is time


def test_patched_restores_the_real_time_module_when_the_block_raises(
    peer_module: types.ModuleType,
) -> None:
    with (
        pytest.raises(RuntimeError, match="the import broke"),
        peer_contender(PEER_MODULE).patched(virtual_arena(VirtualClock())),
    ):
        raise RuntimeError("the import broke")
    assert peer_module.time is time


def test_patched_is_a_no_op_on_real_time(peer_module: types.ModuleType) -> None:
    with peer_contender(PEER_MODULE).patched(virtual_arena(clock=None)):
        assert peer_module.time is time
    assert peer_module.time is time


@pytest.mark.parametrize("contender", PATCHING, ids=lambda c: c.name)
def test_patched_swaps_each_real_peers_time_and_puts_it_back(contender: Contender) -> None:
    modules = [importlib.import_module(name) for name in contender.patches]
    assert [module.time for module in modules] == [time] * len(modules)
    clock = VirtualClock(start=7.0)
    with contender.patched(virtual_arena(clock)):
        assert [module.time.monotonic() for module in modules] == [7.0] * len(modules)
    assert [module.time for module in modules] == [time] * len(modules)


def test_the_peers_that_read_the_time_module_are_patched() -> None:
    assert {c.name: c.patches for c in PATCHING} == {
        "tenacity": ("tenacity",),
        "tenacity, tuned for an hourly limit": ("tenacity",),
        "stamina": ("tenacity",),
        "stamina + Retry-After hook": ("tenacity",),
        "urllib3 Retry (sync)": ("urllib3.util.retry",),
    }


# -- _scaled ----------------------------------------------------------------------------


def test_scaled_multiplies_the_fixed_delay() -> None:
    assert _scaled(FixedRetry(delay=2.0, max_attempts=4), 0.01) == FixedRetry(
        delay=0.02, max_attempts=4
    )


def test_scaled_multiplies_every_time_setting_of_exponential_backoff_and_nothing_else() -> None:
    policy = ExponentialBackoff(seed=3)
    scaled = _scaled(policy, 0.01)
    assert isinstance(scaled, ExponentialBackoff)
    settings = time_settings(ExponentialBackoff)
    assert settings == ["initial", "max_delay", "error_budget", "rate_limit_budget", "max_hint"]
    assert {name: getattr(scaled, name) for name in settings} == {
        name: pytest.approx(getattr(policy, name) * 0.01) for name in settings
    }
    unscaled = {name: getattr(policy, name) for name in settings}
    assert attrs.evolve(scaled, **unscaled) == policy


def test_scaled_covers_every_time_setting_of_fixed_retry() -> None:
    assert time_settings(FixedRetry) == ["delay"]


def test_scaled_keeps_unbounded_settings_unbounded() -> None:
    scaled = _scaled(GITLAB_16_7, 0.5)
    assert isinstance(scaled, ExponentialBackoff)
    assert (scaled.initial, scaled.max_delay, scaled.rate_limit_budget) == (0.5, math.inf, math.inf)


def test_scaled_by_one_is_the_policy_itself() -> None:
    policy = ExponentialBackoff(seed=1)
    assert _scaled(policy, 1.0) is policy


def test_scaled_refuses_a_policy_it_does_not_know() -> None:
    @attrs.frozen
    class OtherPolicy:
        delay: float = 1.0

    with pytest.raises(TypeError, match="cannot scale OtherPolicy"):
        _scaled(OtherPolicy(), 0.5)  # type: ignore[arg-type]


# -- every contender's fetcher ------------------------------------------------------------


def fetch_user_async(contender: Contender, clock: VirtualClock) -> tuple[Any, MockBitbucket]:
    mock = MockBitbucket(size=QUICK_SIZE, latency=0.1, clock=clock.monotonic, now=clock.time)
    return fetch_user_async_on(contender, clock, mock)


def fetch_user_async_on(
    contender: Contender, clock: VirtualClock, mock: MockBitbucket
) -> tuple[Any, MockBitbucket]:
    arena = Arena(
        mock=mock, base_url=BASE_URL, seed=0, clock=clock, transport=mock.async_transport()
    )

    async def main() -> Any:
        fetcher: AsyncFetcher = contender.build(arena)  # type: ignore[assignment]
        try:
            return await fetcher.json("/user")
        finally:
            await fetcher.aclose()

    with contender.patched(arena):
        return run_virtual(main(), clock), mock


def fetch_user_sync(contender: Contender, clock: VirtualClock) -> tuple[Any, MockBitbucket]:
    threads = VirtualThreads(clock)
    mock = MockBitbucket(
        size=QUICK_SIZE,
        latency=0.1,
        clock=clock.monotonic,
        now=clock.time,
        sleep=threads.sleep,
    )
    arena = Arena(
        mock=mock,
        base_url=BASE_URL,
        seed=0,
        clock=clock,
        threads=threads,
        transport=mock.transport(),
    )
    fetcher: SyncFetcher = contender.build(arena)  # type: ignore[assignment]
    try:
        with contender.patched(arena):
            return threads.run([lambda: fetcher.json("/user")])[0], mock
    finally:
        fetcher.close()


@pytest.mark.parametrize("contender", CONTENDERS, ids=lambda c: c.name)
def test_each_contenders_fetcher_gets_the_user_from_a_quick_mock_on_virtual_time(
    contender: Contender,
) -> None:
    clock = VirtualClock()
    fetch = fetch_user_sync if contender.mode == "sync" else fetch_user_async
    user, mock = fetch(contender, clock)
    twin = MockBitbucket(size=QUICK_SIZE)
    with httpx.Client(
        transport=twin.transport(),
        base_url=BASE_URL,
        headers={"Authorization": twin.bearer().authorization()},
    ) as bare:
        assert user == bare.get("/user").json()
    assert (mock.counters.calls, mock.counters.ok) == (1, 1)
    assert clock.monotonic() == pytest.approx(0.1)


def fetch_user_through_429s(contender: Contender, refusals: int) -> tuple[object, float]:
    """GET /user after ``refusals`` scripted 429s: the user, or the error; and the time taken."""
    random.seed(0)  # tenacity's jitter comes from the global random source
    clock = VirtualClock()
    mock = MockBitbucket(size=QUICK_SIZE, clock=clock.monotonic, now=clock.time)
    mock.script(*[429] * refusals)
    try:
        user, _ = fetch_user_async_on(contender, clock, mock)
    except httpx.HTTPStatusError as error:
        return error.response.status_code, clock.monotonic()
    return user["type"], clock.monotonic()


def test_tenacity_gives_up_after_six_attempts_and_tuned_keeps_going() -> None:
    defaults = contender_named("tenacity")
    tuned = contender_named("tenacity, tuned for an hourly limit")
    assert fetch_user_through_429s(defaults, 5)[0] == "user"
    assert fetch_user_through_429s(defaults, 6)[0] == 429
    assert fetch_user_through_429s(tuned, 40)[0] == "user"


def test_tenacity_tuned_waits_up_to_300_s_between_attempts_where_the_defaults_stop_at_60() -> None:
    tuned = contender_named("tenacity, tuned for an hourly limit")
    outcome, seconds = fetch_user_through_429s(tuned, 40)
    assert outcome == "user"
    assert 40 * 60.0 < seconds <= 40 * 300.0
