"""The simulated rollout: many projects import on the mock API at each step, on virtual time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from bb_backoff import FLAG_NAME, FixedRetry
from bb_backoff._flags import actor_in_percentage
from bb_backoff._rollout import Conclusion, build_report, counts_from_exposition
from bb_backoff._rollout._simulation import (
    Simulation,
    StepResult,
    run_step,
    simulate,
    simulated_report,
)
from bb_backoff.instrumentation import PrometheusHook
from bb_backoff.testing import DatasetSize, Faults

# A few requests per project (about 15), so a whole rollout takes a fraction of a second.
SMALL = DatasetSize(
    repositories=1,
    pull_requests=4,
    comments_per_pull_request=1,
    issues=2,
    comments_per_issue=1,
    members=2,
)
# A busy account: 200 requests an hour for twelve projects and another tool.
BUSY = Simulation(projects=12, size=SMALL, limit=200)


@pytest.fixture(scope="module")
def busy_rollout() -> Sequence[StepResult]:
    """Every default step of BUSY, seed 1 (run once for the module: it is the slow part)."""
    return simulate(BUSY, seed=1)


def test_each_step_splits_the_projects_by_flippers_percentage_of_actors(
    busy_rollout: Sequence[StepResult],
) -> None:
    results = busy_rollout
    assert [result.percentage for result in results] == [0.0, 25.0, 50.0, 100.0]
    for result in results:
        on = {p.actor for p in result.imports if p.variant == "on"}
        expected = {
            f"Project:{n}"
            for n in range(1, 13)
            if actor_in_percentage(FLAG_NAME, f"Project:{n}", result.percentage)
        }
        assert on == expected
        assert {p.variant for p in result.imports} <= {"on", "off"}
    assert [len(r.projects_of("on")) for r in results][0::3] == [0, 12]


def test_a_step_adds_up_its_projects(busy_rollout: Sequence[StepResult]) -> None:
    result = busy_rollout[2]
    counts = result.counts
    assert sum(c.requests for c in counts.values()) == sum(
        c.requests for p in result.imports for c in p.counts.values()
    )
    step = result.step()
    assert step.label == "50 %"
    assert sum(i.projects for i in step.imports.values()) == 12
    assert sum(i.items for i in step.imports.values()) == sum(p.items for p in result.imports)
    # Every logical request reached the API at least once; retries and the other tool add more.
    assert result.api_calls >= sum(c.requests for c in counts.values())
    assert result.api_rate_limited > 0


def test_on_a_busy_account_the_flag_on_imports_everything_and_the_legacy_loses_items(
    busy_rollout: Sequence[StepResult],
) -> None:
    report = build_report(BUSY.describe(1), [result.step() for result in busy_rollout])
    rows = {(row.step, row.variant): row for row in report.rows}
    assert set(rows) == {
        ("0 %", "off"),
        ("25 %", "on"),
        ("25 %", "off"),
        ("50 %", "on"),
        ("50 %", "off"),
        ("100 %", "on"),
    }
    assert all(row.lost == 0 for (_, variant), row in rows.items() if variant == "on")
    assert all(row.lost for (_, variant), row in rows.items() if variant == "off")
    legacy, exponential = rows["0 %", "off"], rows["100 %", "on"]
    assert legacy.error_rate is not None
    assert legacy.error_rate > 0
    assert (legacy.give_ups, legacy.rate_limited > 0) == (legacy.errors, True)
    assert exponential.error_rate == 0.0
    assert legacy.seconds is not None
    assert exponential.seconds is not None
    assert exponential.seconds > legacy.seconds  # waiting out the quota takes time
    assert [v.label for v in report.verdicts] == ["25 %", "50 %", "100 % vs 0 %"]
    assert report.verdict.conclusion is Conclusion.NO_INCREASE
    assert report.source.startswith("Simulated rollout (the mock API on virtual time, seed 1)")


def test_the_simulation_is_reproducible_from_its_seed(busy_rollout: Sequence[StepResult]) -> None:
    assert run_step(BUSY, 50.0, seed=1) == busy_rollout[2]
    assert run_step(BUSY, 50.0, seed=2) != busy_rollout[2]


def test_a_worse_candidate_policy_is_caught_as_an_increase() -> None:
    """The report would stop this rollout: the flag's policy never retries a 5xx."""
    candidate = Simulation(
        projects=16,
        size=SMALL,
        percentages=(50.0,),
        limit=100_000,
        other_consumers=0.0,
        faults=Faults(server_error_rate=0.1),
        policy=FixedRetry(max_attempts=1),
    )
    report = simulated_report(candidate, seed=1)
    assert report.verdict.conclusion is Conclusion.INCREASED
    assert report.verdict.p_value is not None
    assert report.verdict.p_value < 0.001
    assert "Flag on: FixedRetry(delay=1.0, max_attempts=1) with the account gate" in report.source


def test_more_hooks_see_the_same_requests_as_the_report() -> None:
    """The simulation's metrics, exposed and read back, give the step's counts."""
    registry = CollectorRegistry()
    result = run_step(BUSY, 50.0, seed=1, hooks=[PrometheusHook(registry)])
    read = counts_from_exposition(generate_latest(registry).decode())
    assert {v: (c.requests, c.errors, c.give_ups, c.rate_limited) for v, c in read.items()} == {
        v: (c.requests, c.errors, c.give_ups, c.rate_limited) for v, c in result.counts.items()
    }


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"projects": 0}, "projects must be a positive integer, got 0"),
        ({"limit": 0}, "limit must be a positive integer, got 0"),
        ({"workers": True}, "workers must be a positive integer, got True"),
        ({"percentages": ()}, "percentages must name at least one step"),
        ({"percentages": (0.0, 101.0)}, "percentage_of_actors"),
        ({"other_consumers": 1.5}, "other_consumers must be a share from 0 to 1"),
        ({"window": 0}, "window must be positive"),
        ({"latency": -1}, "latency must be a non-negative duration"),
    ],
)
def test_invalid_parameters_are_refused_by_name(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Simulation(**options)
