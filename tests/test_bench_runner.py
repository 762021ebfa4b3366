"""bb_backoff._bench._runner: one run per scenario and contender, reproducible from the seed."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Self

import attrs
import pytest

from bb_backoff._bench import (
    CONTENDERS,
    SCENARIOS,
    Contender,
    RedisUnavailable,
    Row,
    Scenario,
    _runner,
    available_contenders,
    check_redis,
    contender_named,
    fleet_label,
    private_redis,
    run_all,
    run_fleet,
    run_one,
    run_real,
    scenario_named,
)
from bb_backoff._bench._runner import MAX_PROCESSES, _percentile
from bb_backoff._bench._scenarios import QUICK_SIZE
from bb_backoff.testing import Faults
from markers import REALTIME
from redis_server import free_port, require_redis

FLAG_ON = contender_named("bb-backoff, flag on")
LEGACY = contender_named("bb-backoff, flag off (legacy)")
GITLAB = contender_named("GITLAB_16_7 preset")
SYNC_FLAG_ON = contender_named("bb-backoff, flag on (sync)")
NO_GATE = contender_named("bb-backoff, flag on, no gate")
TENACITY = contender_named("tenacity")
TUNED_TENACITY = contender_named("tenacity, tuned for an hourly limit")
QUICK = {scenario.name: scenario.quick() for scenario in SCENARIOS}
ROW_FIELDS = [
    "scenario",
    "policy",
    "mode",
    "workers",
    "time_ratio",
    "seconds",
    "lower_bound",
    "calls",
    "rate_limited",
    "wasted",
    "calls_needed",
    "lost",
    "complete",
    "duplicates",
    "items",
    "give_ups",
    "p99_request",
    "longest_request",
    "outage_calls",
    "clock",
]


# -- run_one ----------------------------------------------------------------------------


def test_run_one_is_the_same_row_for_the_same_seed() -> None:
    faulty = QUICK["faults-5pct"]
    assert run_one(faulty, FLAG_ON, seed=3) == run_one(faulty, FLAG_ON, seed=3)


def test_run_one_of_a_sync_contender_is_the_same_row_for_the_same_seed() -> None:
    faulty = QUICK["faults-5pct"]
    assert run_one(faulty, SYNC_FLAG_ON, seed=3) == run_one(faulty, SYNC_FLAG_ON, seed=3)


def test_run_one_differs_across_seeds_in_a_faulty_scenario() -> None:
    faulty = QUICK["faults-5pct"]
    first, second = run_one(faulty, FLAG_ON, seed=1), run_one(faulty, FLAG_ON, seed=2)
    assert (first.calls, first.seconds) != (second.calls, second.seconds)


def test_a_row_describes_the_run() -> None:
    row = run_one(QUICK["no-hint"], FLAG_ON, seed=0)
    quick = QUICK["no-hint"]
    assert (row.scenario, row.policy, row.mode, row.workers, row.clock) == (
        "no-hint",
        "bb-backoff, flag on",
        "async",
        quick.workers,
        "virtual",
    )
    # The quick dataset: 60 calls (/user/workspaces among them) and 81 items; 50 calls
    # an hour, so one window to wait.
    assert (row.calls_needed, row.items, row.lower_bound) == (60, 81, 3600.0)
    assert row.time_ratio == pytest.approx(row.seconds / row.lower_bound)
    assert row.wasted == pytest.approx((row.calls - row.calls_needed) / row.calls_needed)
    assert (row.lost, row.duplicates, row.give_ups) == (0, 0, 0)
    assert (row.complete, row.outage_calls) == (True, 0)
    assert row.rate_limited > 0


def test_run_one_uses_the_workers_given_instead_of_the_scenarios() -> None:
    row = run_one(QUICK["no-hint"], LEGACY, seed=0, workers=2)
    assert row.workers == 2
    assert row.lower_bound == attrs.evolve(QUICK["no-hint"], workers=2).lower_bound(60)


@pytest.mark.parametrize("scenario", QUICK.values(), ids=lambda s: s.name)
def test_the_flag_on_contender_loses_nothing_in_every_quick_scenario(scenario: Scenario) -> None:
    row = run_one(scenario, FLAG_ON, seed=0)
    assert (row.lost, row.give_ups, row.duplicates) == (0, 0, 0)
    assert row.time_ratio >= 1.0


def test_the_legacy_contender_loses_items_in_quick_no_hint() -> None:
    row = run_one(QUICK["no-hint"], LEGACY, seed=0)
    assert row.lost > 0
    assert row.give_ups > 0


def test_a_run_that_lost_items_is_incomplete_and_one_that_lost_none_complete() -> None:
    rows = [run_one(QUICK["no-hint"], contender, seed=0) for contender in (FLAG_ON, LEGACY)]
    assert [(row.lost > 0, row.complete) for row in rows] == [(False, True), (True, False)]


def test_the_longest_request_of_a_client_that_waits_out_the_window_is_about_an_hour() -> None:
    """Quick no-hint: 60 calls, 50 an hour; the calls past the quota wait for the window."""
    row = run_one(QUICK["no-hint"], FLAG_ON, seed=0)
    assert row.p99_request <= row.longest_request <= row.seconds
    assert row.longest_request == pytest.approx(3600.0, rel=0.01)


def test_the_longest_request_of_a_client_that_gives_up_is_its_retry_budget() -> None:
    """The legacy policy: three attempts one second apart, then it gives up.

    Two waits of 1 s, and three attempts of one call or two (a diff's redirect
    and its target) at 0.1 s each.
    """
    row = run_one(QUICK["no-hint"], LEGACY, seed=0)
    assert 2 * 1.0 + 3 * 0.1 <= row.longest_request <= 2 * 1.0 + 6 * 0.1


def test_calls_during_the_outage_are_counted_in_the_row() -> None:
    """Quick outage: the gate waits for the window through the outage; without it, requests
    retry into the outage, give up and lose items."""
    gated = run_one(QUICK["outage"], FLAG_ON, seed=0)
    alone = run_one(QUICK["outage"], NO_GATE, seed=0)
    assert (gated.outage_calls, gated.complete) == (0, True)
    assert alone.outage_calls > 0
    assert (alone.complete, alone.give_ups > 0) == (False, True)


def test_the_gate_told_the_limit_never_meets_a_429() -> None:
    told = run_one(QUICK["configured-limit"], FLAG_ON, seed=0)
    learning = run_one(QUICK["no-hint"], FLAG_ON, seed=0)
    assert (told.rate_limited, told.complete) == (0, True)
    assert learning.rate_limited > 0


def test_the_sync_gate_told_the_limit_never_meets_a_429_either() -> None:
    told = run_one(QUICK["configured-limit"], SYNC_FLAG_ON, seed=0)
    assert (told.rate_limited, told.complete) == (0, True)


@pytest.mark.parametrize("contender", [NO_GATE, TENACITY, LEGACY], ids=lambda c: c.name)
def test_a_contender_without_a_gate_runs_configured_limit_as_no_hint(contender: Contender) -> None:
    """The peers and the ungated rows have nowhere to put the limit: same run, same row."""
    told = run_one(QUICK["configured-limit"], contender, seed=0)
    untold = run_one(QUICK["no-hint"], contender, seed=0)
    assert told == attrs.evolve(untold, scenario="configured-limit")


def test_the_gate_spares_the_429s_the_same_policy_makes_without_it() -> None:
    gated = run_one(QUICK["workers-128"], FLAG_ON, seed=0)
    alone = run_one(QUICK["workers-128"], NO_GATE, seed=0)
    assert (gated.complete, alone.complete) == (True, True)
    assert gated.rate_limited < alone.rate_limited


def test_tenacity_tuned_for_an_hourly_limit_completes_where_its_defaults_give_up() -> None:
    tuned = run_one(QUICK["no-hint"], TUNED_TENACITY, seed=0)
    defaults = run_one(QUICK["no-hint"], TENACITY, seed=0)
    assert (tuned.complete, defaults.complete) == (True, False)


def test_run_one_scaled_scales_the_outage_with_the_window() -> None:
    # An outage from the start: the bound moves by its length, scaled like the window.
    down = attrs.evolve(QUICK["no-hint"], faults=Faults(outage_start=0, outage_seconds=600))
    row = run_one(down, FLAG_ON, seed=0, scale=0.01)
    assert row.lower_bound == pytest.approx(0.01 * down.lower_bound(60))
    # (600 s of outage, then one window of 3,600 s for the calls past the quota) x 0.01.
    assert row.lower_bound == pytest.approx(42.0)
    assert (row.complete, row.outage_calls > 0) == (True, True)


def test_run_one_scaled_scales_the_window_and_the_bound_and_flag_on_stays_lossless() -> None:
    quick = QUICK["no-hint"]
    row = run_one(quick, FLAG_ON, seed=0, scale=0.01)
    unscaled = run_one(quick, FLAG_ON, seed=0)
    assert row.lower_bound == pytest.approx(unscaled.lower_bound * 0.01)
    assert row.lower_bound == pytest.approx(36.0)
    assert (row.lost, row.give_ups) == (0, 0)
    assert row.seconds >= row.lower_bound
    assert row.seconds < unscaled.seconds


def test_run_one_without_rate_limit_or_latency_has_an_infinite_ratio() -> None:
    # Nothing bounds the import from below, so the bound is 0 and the ratio infinite.
    unbounded = Scenario(
        name="unbounded", summary="no limit, no latency", limit=10_000, latency=0.0, size=QUICK_SIZE
    )
    row = run_one(unbounded, FLAG_ON, seed=0)
    assert (row.lower_bound, row.time_ratio, row.lost) == (0.0, math.inf, 0)


# -- Row ----------------------------------------------------------------------------------


def test_row_as_dict_has_every_field_in_order_with_its_value() -> None:
    row = run_one(QUICK["retry-after"], LEGACY, seed=0)
    as_dict = row.as_dict()
    assert list(as_dict) == ROW_FIELDS
    assert as_dict == {name: getattr(row, name) for name in ROW_FIELDS}
    assert Row(**as_dict) == row


# -- run_all ------------------------------------------------------------------------------


def test_run_all_returns_rows_in_scenario_by_contender_order_reporting_each() -> None:
    scenarios = [QUICK["no-hint"], QUICK["retry-after"]]
    contenders = [LEGACY, GITLAB]
    reported: list[Row] = []
    rows = run_all(scenarios, contenders, seed=0, processes=1, progress=reported.append)
    assert [(row.scenario, row.policy) for row in rows] == [
        ("no-hint", LEGACY.name),
        ("no-hint", GITLAB.name),
        ("retry-after", LEGACY.name),
        ("retry-after", GITLAB.name),
    ]
    assert reported == rows


def test_run_all_rows_are_the_rows_of_run_one() -> None:
    rows = run_all([QUICK["token-headers"]], [LEGACY], seed=5, workers=3)
    assert rows == [run_one(QUICK["token-headers"], LEGACY, seed=5, workers=3)]


class _PoolInThisProcess:
    """Stands in for ``multiprocessing``'s spawn context: records the pool size, runs here."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def get_context(self, _method: str) -> _PoolInThisProcess:
        return self

    def Pool(self, processes: int, _initializer: Any = None) -> _PoolInThisProcess:  # noqa: N802 (multiprocessing's name)
        self.sizes.append(processes)
        return self

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc_info: object) -> None:
        pass

    def imap(self, function: Any, jobs: list[Any]) -> Any:
        return map(function, jobs)


def test_run_all_starts_no_more_processes_than_there_are_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--processes 100000`` spawned a pool of 100,000 interpreters for a handful of runs."""
    pool = _PoolInThisProcess()
    monkeypatch.setattr(_runner, "multiprocessing", pool)
    rows = run_all([QUICK["retry-after"]], [LEGACY, GITLAB], seed=0, processes=MAX_PROCESSES)
    assert pool.sizes == [2]
    assert [row.policy for row in rows] == [LEGACY.name, GITLAB.name]


@pytest.mark.parametrize("processes", [0, MAX_PROCESSES + 1, 10**5, True, 2.0, "2"])
def test_run_all_refuses_a_number_of_processes_out_of_range_naming_it(processes: Any) -> None:
    with pytest.raises(ValueError, match=r"^processes must be an integer from 1 to 64"):
        run_all([QUICK["retry-after"]], [LEGACY], seed=0, processes=processes)


def test_run_all_of_nothing_is_no_rows() -> None:
    assert run_all([], CONTENDERS, seed=0) == []


def test_available_contenders_are_every_contender_in_this_venv() -> None:
    assert available_contenders() == list(CONTENDERS)


# -- percentiles ----------------------------------------------------------------------------


def test_percentile_is_the_value_at_the_nearest_rank() -> None:
    descending = [float(n) for n in range(100, 0, -1)]
    assert [_percentile(descending, share) for share in (0.95, 0.99, 1.0)] == [95.0, 99.0, 100.0]
    assert _percentile([1.0, 2.0], 0.99) == 2.0
    assert _percentile([3.0], 0.0) == 3.0
    assert _percentile([], 0.99) == 0.0


def test_a_row_refuses_to_be_complete_when_it_lost_items() -> None:
    row = run_one(QUICK["no-hint"], LEGACY, seed=0)
    # 19 since the import lists /user/workspaces first: one call less before the quota runs out.
    with pytest.raises(ValueError, match="complete must be False when lost is 19"):
        attrs.evolve(row, complete=True)


# -- run_real ---------------------------------------------------------------------------------


def test_run_real_refuses_a_sync_contender() -> None:
    with pytest.raises(ValueError, match="is sync; --real measures the async contenders"):
        run_real(QUICK["no-hint"], SYNC_FLAG_ON, seed=0, scale=0.0002)


@REALTIME
def test_run_real_imports_from_the_served_mock_with_the_window_scaled() -> None:
    """An hour scaled to 0.72 s: the flag-on client waits it out on real time and loses nothing."""
    row = run_real(scenario_named("no-hint").quick(), FLAG_ON, seed=0, scale=0.0002)
    assert (row.clock, row.lost, row.give_ups) == ("real", 0, 0)
    # No simulated latency on real time: the bound is the scaled window alone.
    assert row.lower_bound == pytest.approx(3600 * 0.0002)
    assert row.seconds >= row.lower_bound


# -- run_fleet and its Redis ----------------------------------------------------------------
# (one real fleet run is in test_cli.py: bench --real --importers, through the command)


UNSTAGGERED = "stagger must be finite and at least 0 seconds, got "


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"importers": 0}, "importers must be from 1 to 64, got 0"),
        ({"importers": 65}, "importers must be from 1 to 64, got 65"),
        ({"importers": True}, "importers must be an integer, got True"),
        ({"importers": 2.0}, "importers must be an integer, got 2.0"),
        ({"importers": 2, "workers": 0}, "workers must be a positive integer, got 0"),
        ({"importers": 2, "workers": False}, "workers must be a positive integer, got False"),
        (
            {"importers": 2, "stagger": -1.0},
            "stagger must be finite and at least 0 seconds, got -1.0",
        ),
        (
            {"importers": 2, "stagger": math.inf},
            "stagger must be finite and at least 0 seconds, got inf",
        ),
        (
            {"importers": 2, "stagger": math.nan},
            "stagger must be finite and at least 0 seconds, got nan",
        ),
        ({"importers": 2, "stagger": True}, "stagger must be seconds (a number), got True"),
        ({"importers": 2, "stagger": "1"}, "stagger must be seconds (a number), got '1'"),
    ],
)
def test_run_fleet_refuses_bad_counts_naming_them_before_starting_anything(
    arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        run_fleet(QUICK["no-hint"], 0, 0.0001, redis_url="redis://127.0.0.1:1/0", **arguments)


def test_run_fleet_refuses_a_repository_listing_of_more_than_one_page() -> None:
    many = attrs.evolve(QUICK["no-hint"], size=attrs.evolve(QUICK_SIZE, repositories=51))
    with pytest.raises(ValueError, match="has 51 repositories: a fleet run lists at most 50"):
        run_fleet(many, 0, 0.0001, importers=2, redis_url="redis://127.0.0.1:1/0")


def test_a_fleet_rows_policy_says_how_many_processes_workers_and_where_the_model_lives() -> None:
    assert fleet_label(4, 8, shared=True) == (
        "bb-backoff, flag on: 4 processes x 8 workers, one account gate in Redis"
    )
    assert fleet_label(1, 2, shared=False) == (
        "bb-backoff, flag on: 1 processes x 2 workers, an in-memory gate per process"
    )
    assert fleet_label(4, 8, shared=False, stagger=400.0) == (
        "bb-backoff, flag on: 4 processes x 8 workers joining 400 s apart, an in-memory gate "
        "per process"
    )


def test_check_redis_accepts_a_redis_that_answers(redis_url: str) -> None:
    check_redis(redis_url)


def test_check_redis_refuses_a_silent_one_without_showing_its_password() -> None:
    port = free_port()
    with pytest.raises(RedisUnavailable) as refused:
        check_redis(f"redis://:hunter2@127.0.0.1:{port}/0")
    message = str(refused.value)
    assert message.startswith(f"Redis at redis://127.0.0.1:{port}/0 does not answer (")
    assert "hunter2" not in message


def test_check_redis_never_quotes_a_piece_of_a_password_from_a_url_it_cannot_read() -> None:
    # redis-py's ValueError quotes what it read as the port: "s3" of "s3/cr3t".
    with pytest.raises(RedisUnavailable) as refused:
        check_redis("redis://:s3/cr3t@127.0.0.1:6399/0")
    message = str(refused.value)
    assert "redis://127.0.0.1:6399/0 is not a usable Redis URL" in message
    assert "percent-encode a password that holds '/', '?', '#' or '@'" in message
    assert "s3" not in message.replace("127.0.0.1", "")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis://:s3cr3t@127.0.0.1:6399/bench", "the path after the host must be a database"),
        ("redis://:s3cr3t@127.0.0.1:6399/0?protocol=4", "protocol must be either 2 or 3"),
        ("redis://:?s3cr3t=1@127.0.0.1:6399/0", "percent-encode a password"),
        # The sync client takes it; the fleet's async importers failed on it
        # with a raw AttributeError (found by a review).
        ("redis://:s3cr3t@127.0.0.1:6399/0?command_packer=x", "'command_packer'"),
    ],
)
def test_check_redis_refuses_a_url_redis_py_would_misread_saying_why(url: str, why: str) -> None:
    with pytest.raises(RedisUnavailable) as refused:
        check_redis(url)
    message = str(refused.value)
    assert f"redis://127.0.0.1:6399/{url.rpartition('/')[2]} is not a usable Redis URL" in message
    assert why in message
    assert "s3cr3t" not in message


def test_a_private_redis_answers_while_the_block_runs_and_is_gone_after() -> None:
    import redis  # noqa: PLC0415

    require_redis()
    with private_redis() as url:
        assert url.startswith("redis://127.0.0.1:")
        with redis.Redis.from_url(url) as client:
            assert client.ping()
    with pytest.raises(RedisUnavailable, match="does not answer"):
        check_redis(url)


def test_without_redis_server_on_path_a_private_redis_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RedisUnavailable) as refused, private_redis():
        pass  # pragma: no cover (never entered)
    assert str(refused.value) == "redis-server is not on PATH"
