"""A simulated rollout: many projects import at once, at each step's percentage of actors.

Each step is one import of the whole fleet on a fresh mock with the same
seed, so every step meets the same API: the same dataset, the same rate
limit, the same other consumer and the same fault rates.  Every project
(``Project:1`` ... ``Project:N``, GitLab's actor ids) imports one
repository with its own client, all on one Bitbucket account; the client
asks ``FlipperFlag(percentage_of_actors=p)`` for its actor, so Flipper's
CRC-32 cohort splits the projects, and a :class:`VariantTally` on each
client counts what its requests did under the variant it used.  Within a
step both variants share the account's quota and the API's faults at the
same moments: the same conditions, as in a real rollout.

Everything runs on virtual time (:func:`~bb_backoff.testing.run_virtual`):
hours of rate limiting take seconds of CPU, and a seed gives the same
report on every run.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable, Sequence
from typing import Final

import attrs

from .._bench._contenders import ClientFetcher
from .._bench._importer import import_async, repository_task
from .._client import AsyncBitbucketClient
from .._flags import FlipperFlag
from .._gate import AccountGate
from .._policy import ExponentialBackoff, RetryPolicy
from ..testing import DatasetSize, Faults, MockBitbucket, VirtualClock, run_virtual
from ._counts import VariantCounts, VariantTally, total
from ._report import Imports, Report, Step, build_report
from ._stats import DEFAULT_ALPHA

BASE_URL: Final = "https://api.bitbucket.org/2.0"
DEFAULT_PERCENTAGES: Final = (0.0, 25.0, 50.0, 100.0)
"""The rollout's steps, in percent of actors."""
DEFAULT_PROJECTS: Final = 40
DEFAULT_LIMIT: Final = 1000
"""Requests per hour for the account: Bitbucket's limit on ``/2.0/repositories/*``."""
MIXED: Final = "mixed"
"""The variant of a project whose requests ran under both (the flag changed mid-import)."""
PROJECT_SIZE: Final = DatasetSize(
    repositories=1,
    pull_requests=10,
    comments_per_pull_request=2,
    issues=5,
    comments_per_issue=2,
    members=4,
)
"""One project's repository: 10 pull requests, 5 issues, their comments: about 40 calls."""
DEFAULT_FAULTS: Final = Faults(server_error_rate=0.02, reset_rate=0.005, timeout_rate=0.005)


@attrs.frozen(kw_only=True)
class Simulation:
    """The simulated fleet and the API it meets.

    Attributes:
        projects: projects importing at once, one repository each.
        percentages: the rollout's steps, percent of actors with the flag on.
        limit: requests per window for the account (Bitbucket's 1,000 an hour).
        window: the rolling window, in seconds.
        other_consumers: share of the quota another tool on the account uses.
        faults: transient faults on top of the rate limit.
        size: each project's repository (``repositories`` is ignored: one each).
        workers: concurrent requests per project's import.
        latency: seconds every response takes.
        policy: the policy with the flag on; ``None``: ``ExponentialBackoff``
            with a jitter seed of its own per project (the clients' default).
        legacy_policy: the policy with the flag off; ``None``: the clients'
            default, ``FixedRetry()``.  Give a candidate policy here and in
            ``policy`` to see what its rollout would report.

    Raises:
        ValueError: for an invalid parameter; the message names it.
    """

    projects: int = DEFAULT_PROJECTS
    percentages: tuple[float, ...] = DEFAULT_PERCENTAGES
    limit: int = DEFAULT_LIMIT
    window: float = 3600.0
    other_consumers: float = 0.25
    faults: Faults = DEFAULT_FAULTS
    size: DatasetSize = PROJECT_SIZE
    workers: int = 2
    latency: float = 0.1
    policy: RetryPolicy | None = None
    legacy_policy: RetryPolicy | None = None

    def __attrs_post_init__(self) -> None:
        for name in ("projects", "limit", "workers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not self.percentages:
            raise ValueError("percentages must name at least one step")
        for percentage in self.percentages:
            FlipperFlag(percentage_of_actors=percentage)  # raises ValueError naming it
        # The mock checks the rest (window, other_consumers, faults, latency) by name.
        mock_api(self, seed=0, clock=VirtualClock())

    def describe(self, seed: int) -> str:
        """What the simulation is, in one paragraph, for the report's header."""
        faults = self.faults
        parts = [
            f"{percent_of(faults.server_error_rate)} 5xx",
            f"{percent_of(faults.reset_rate)} connection resets",
            f"{percent_of(faults.timeout_rate)} read timeouts",
        ]
        other = (
            f"another tool on the same account uses {percent_of(self.other_consumers)} of it; "
            if self.other_consumers
            else ""
        )
        size = self.size
        on = "ExponentialBackoff (the default)" if self.policy is None else repr(self.policy)
        off = (
            "the legacy FixedRetry (the default)"
            if self.legacy_policy is None
            else repr(self.legacy_policy)
        )
        return (
            f"Simulated rollout (the mock API on virtual time, seed {seed}): "
            f"{self.projects} projects (Project:1 ... Project:{self.projects}) each import one "
            f"repository ({size.pull_requests} pull requests with comments and diffs, "
            f"{size.issues} issues with comments; {self.workers} requests at a time), all at "
            f"once, on one Bitbucket account: {self.limit:,} requests per rolling "
            f"{_window_text(self.window)}, 429s with no hint (Bitbucket's usual); {other}"
            f"{', '.join(parts)}; responses take {self.latency:g} s. Flag on: {on} with the "
            f"account gate; off: {off}, no gate. Each step is a fresh run of the same fleet "
            "on the same API."
        )


def mock_api(simulation: Simulation, seed: int, clock: VirtualClock) -> MockBitbucket:
    """The API of one step: every project's repository on one account, on ``clock``."""
    return MockBitbucket(
        seed=seed,
        size=attrs.evolve(simulation.size, repositories=simulation.projects),
        limit=simulation.limit,
        window=simulation.window,
        hint="none",
        other_consumers=simulation.other_consumers,
        faults=simulation.faults,
        latency=simulation.latency,
        clock=clock.monotonic,
        now=clock.time,
        base_url=BASE_URL,
    )


def percent_of(share: float) -> str:
    """A share as a percentage: ``0.025`` -> ``"2.5 %"``."""
    return f"{100 * share:g} %"


def _window_text(seconds: float) -> str:
    if seconds == 3600:  # noqa: PLR2004
        return "hour"
    return f"{seconds:g} s"


@attrs.frozen(kw_only=True)
class ProjectImport:
    """One project's import in one step.

    Attributes:
        actor: the project's actor id, ``"Project:<id>"``.
        variant: the variant its requests ran under (``"on"``, ``"off"``,
            or ``"mixed"``), as its client reported them.
        seconds: how long its import took, virtual seconds.
        items: items its repository has.
        lost: of those, the ones the import did not get.
        counts: what its requests did, by variant.
    """

    actor: str
    variant: str
    seconds: float
    items: int
    lost: int
    counts: dict[str, VariantCounts]


@attrs.frozen(kw_only=True)
class StepResult:
    """One step of the rollout: every project's import at one percentage.

    Attributes:
        percentage: percent of actors with the flag on.
        imports: each project's import.
        api_calls: requests the mock API received.
        api_rate_limited: of which it answered 429.
    """

    percentage: float
    imports: tuple[ProjectImport, ...]
    api_calls: int
    api_rate_limited: int

    @property
    def counts(self) -> dict[str, VariantCounts]:
        """Every project's counts added up, by variant."""
        return total(project.counts for project in self.imports)

    def projects_of(self, variant: str) -> list[ProjectImport]:
        """The projects whose requests ran under ``variant``."""
        return [project for project in self.imports if project.variant == variant]

    @property
    def label(self) -> str:
        """The step's name in the report: ``"25 %"``."""
        return f"{self.percentage:g} %"

    def step(self) -> Step:
        """The step as the report reads it: counts, and imports by the variant of each project."""
        imports = {}
        for variant in dict.fromkeys(project.variant for project in self.imports):
            projects = self.projects_of(variant)
            imports[variant] = Imports(
                projects=len(projects),
                seconds=sum(p.seconds for p in projects) / len(projects),
                items=sum(p.items for p in projects),
                lost=sum(p.lost for p in projects),
            )
        return Step(
            label=self.label, percentage=self.percentage, counts=self.counts, imports=imports
        )


def _policy_seed(seed: int, actor: str) -> int:
    """A jitter seed of its own for each project, drawn from the run's seed."""
    return random.Random(f"policy:{seed}:{actor}").getrandbits(64)  # noqa: S311 (jitter)


def run_step(
    simulation: Simulation, percentage: float, seed: int, *, hooks: Iterable[object] = ()
) -> StepResult:
    """Import every project once with the flag on for ``percentage`` of actors.

    Args:
        simulation: the fleet and the API.
        percentage: percent of actors with the flag on (0 to 100).
        seed: seeds the dataset, the faults, the gate and every policy's jitter.
        hooks: more hooks for every project's client (a ``PrometheusHook``,
            say), beside the tally that counts for the report.

    Returns:
        Every project's import, and what the API saw.
    """
    clock = VirtualClock()
    mock = mock_api(simulation, seed, clock)
    flag = FlipperFlag(percentage_of_actors=percentage)
    # One account, one gate: every project's client shares it, as the clients
    # of one process share their default gate.
    gate = AccountGate(window=simulation.window, seed=seed)
    transport = mock.async_transport()
    auth = mock.basic()
    expected = mock.dataset.expected()
    extra_hooks = list(hooks)

    async def one(number: int, full_name: str) -> ProjectImport:
        actor = f"Project:{number}"
        tally = VariantTally()
        client = AsyncBitbucketClient(
            auth=auth,
            flag=flag,
            actor=actor,
            policy=(
                ExponentialBackoff(seed=_policy_seed(seed, actor))
                if simulation.policy is None
                else simulation.policy
            ),
            legacy_policy=simulation.legacy_policy,
            base_url=BASE_URL,
            transport=transport,
            gate=gate,
            hooks=[tally, *extra_hooks],
            clock=clock.monotonic,
            now=clock.time,
        )
        outcome = await import_async(
            ClientFetcher(client), simulation.workers, clock.monotonic, [repository_task(full_name)]
        )
        mine = {
            kind: {key for key in keys if key[0] == full_name}
            for kind, keys in expected.items()
            if kind != "member"
        }
        variants = tally.variants
        return ProjectImport(
            actor=actor,
            variant=next(iter(variants)) if len(variants) == 1 else MIXED,
            seconds=outcome.seconds,
            items=sum(len(keys) for keys in mine.values()),
            lost=outcome.state.lost(mine),
            counts=tally.counts(),
        )

    async def fleet() -> list[ProjectImport]:
        repositories = mock.dataset.repositories
        return await asyncio.gather(
            *(
                one(number, repository.full_name)
                for number, repository in enumerate(repositories, 1)
            )
        )

    imports = run_virtual(fleet(), clock)
    counters = mock.counters
    return StepResult(
        percentage=percentage,
        imports=tuple(imports),
        api_calls=counters.calls,
        api_rate_limited=counters.rate_limited,
    )


def simulate(simulation: Simulation, seed: int = 0) -> Sequence[StepResult]:
    """Every step of the rollout, in order (see :func:`run_step`)."""
    return [run_step(simulation, percentage, seed) for percentage in simulation.percentages]


def simulated_report(
    simulation: Simulation, *, seed: int = 0, alpha: float = DEFAULT_ALPHA
) -> Report:
    """Run every step of the simulated rollout and report it.

    Args:
        simulation: the fleet and the API.
        seed: seeds the run.
        alpha: the significance level of the verdicts.
    """
    steps = [result.step() for result in simulate(simulation, seed)]
    return build_report(simulation.describe(seed), steps, alpha=alpha)
