"""The benchmark's scenarios: how the mock API misbehaves, and how many workers import."""

from __future__ import annotations

import math
from typing import Final

import attrs

from ..testing import DatasetSize, Faults

DEFAULT_WORKERS: Final = 4
QUICK_SIZE: Final = DatasetSize(
    repositories=1,
    pull_requests=15,
    comments_per_pull_request=2,
    issues=8,
    comments_per_issue=2,
    members=4,
)
"""The dataset of ``bench --quick``: about 60 calls instead of about 1,000."""
# Bitbucket answers in about a tenth of a second; in virtual time this only
# sets the pace of an import that is not rate limited.
DEFAULT_LATENCY: Final = 0.1


@attrs.frozen(kw_only=True)
class Scenario:
    """One way the API behaves during an import.

    Attributes:
        name: the name on the command line and in the table.
        summary: one line for the table's legend.
        workers: concurrent workers sharing one access token.
        limit: requests per window for the token.
        window: the rolling window, in seconds.
        hint: how 429s say when to come back (see :class:`MockBitbucket`).
        token_headers: send the access-token ``X-RateLimit-*`` headers.
        other_consumers: share of the quota other tools on the account use.
        faults: transient faults, and a full outage (see :class:`Faults`).
        size: the dataset.
        latency: seconds every response takes.
        configured_limit: the client is told the limit: our gated
            contenders get ``AccountGate(limit=limit)``; the peers have no
            such setting and run as in any other scenario.
    """

    name: str
    summary: str
    workers: int = DEFAULT_WORKERS
    limit: int = 1000
    window: float = 3600.0
    hint: str = "none"
    token_headers: bool = False
    other_consumers: float = 0.0
    faults: Faults = attrs.field(factory=Faults)
    size: DatasetSize = attrs.field(factory=DatasetSize)
    latency: float = DEFAULT_LATENCY
    configured_limit: bool = False

    def quick(self) -> Scenario:
        """The same scenario at a twentieth of the size: a small dataset, a twentieth of the quota.

        The import still needs more than one window, so rate limiting still
        bites, but a run takes a fraction of a second.
        """
        return attrs.evolve(self, size=QUICK_SIZE, limit=max(1, self.limit // 20))

    def scaled(self, scale: float) -> Scenario:
        """The same scenario with every time in it (window, latency, faults) times ``scale``."""
        if scale == 1.0:
            return self
        faults = attrs.evolve(
            self.faults,
            slow_seconds=self.faults.slow_seconds * scale,
            outage_start=self.faults.outage_start * scale,
            outage_seconds=self.faults.outage_seconds * scale,
        )
        return attrs.evolve(
            self, window=self.window * scale, latency=self.latency * scale, faults=faults
        )

    def lower_bound(self, calls_needed: int) -> float:
        """The shortest possible import, in seconds, given the rate limit (and the outage).

        With a rolling window a client can spend the quota at once, then must
        wait a window for each further quota's worth: the last of ``N`` calls
        cannot start before ``(ceil(N / quota) - 1) * window``.  The quota is
        what the other consumers leave, in whole requests (they hold
        ``floor(limit * share)`` slots).  When the quota is never exhausted,
        the latency of the calls, spread over the workers, is the bound
        instead.  With no quota at all, no import can finish: infinity.

        A full outage lets no call through while it lasts.  The calls that
        can be sent before it starts are at most a quota per window begun
        before it, and at most one per worker per latency; the others are
        sent after it ends, and the same two bounds apply to them from the
        end of the outage.  The bound is the later of that and the bound
        without the outage.  When the quota is spent before the outage
        starts anyway, the outage falls in a wait any client must make, and
        the bound does not move.
        """
        # The epsilon keeps 10 * (1 - 0.9) from rounding down a whole request.
        taken = math.floor(self.limit * self.other_consumers + 1e-9)
        quota = self.limit - taken
        if quota <= 0:
            return math.inf
        bound = self._calls_bound(calls_needed, quota)
        start, length = self.faults.outage_start, self.faults.outage_seconds
        if length <= 0 or calls_needed <= 0:
            return bound
        before = min(calls_needed, quota * _periods_begun(start, self.window))
        if self.latency > 0:
            before = min(before, self.workers * _periods_begun(start, self.latency))
        after = calls_needed - before
        if after <= 0:
            return bound
        return max(bound, start + length + self._calls_bound(after, quota))

    def _calls_bound(self, calls: int, quota: int) -> float:
        """The earliest the last of ``calls`` can start (rate) or end (latency), from 0."""
        rate_bound = (math.ceil(calls / quota) - 1) * self.window
        latency_bound = math.ceil(calls / self.workers) * self.latency
        return max(rate_bound, latency_bound)


def _periods_begun(elapsed: float, period: float) -> int:
    """How many periods of ``period`` seconds begin in ``[0, elapsed)``, rounding ties up.

    A tie (``elapsed`` a whole number of periods) counts one more period: a
    clock that adds up periods in floats may land a hair before ``elapsed``,
    and a lower bound must allow for it.
    """
    if elapsed <= 0:
        return 0
    # Never fewer than one, even when a tiny elapsed / period underflows to 0.
    return math.floor(elapsed / period * (1 + 1e-9)) + 1


SCENARIOS: Final = (
    Scenario(
        name="no-hint",
        summary="429s with no hint at all, plain-text body (Bitbucket's usual)",
    ),
    Scenario(
        name="retry-after",
        summary="429s with Retry-After (delta-seconds)",
        hint="retry-after",
    ),
    Scenario(
        name="token-headers",
        summary="access token: X-RateLimit-Limit/-Resource/-NearLimit and X-RateLimit-Reset",
        hint="reset",
        token_headers=True,
    ),
    Scenario(
        name="faults-5pct",
        summary="5 % transient faults (3 % 5xx, 1 % resets, 1 % read timeouts) on top of 429s",
        faults=Faults(server_error_rate=0.03, reset_rate=0.01, timeout_rate=0.01),
    ),
    Scenario(
        name="workers-8",
        summary="8 concurrent workers sharing one token",
        workers=8,
    ),
    Scenario(
        name="workers-32",
        summary="32 concurrent workers sharing one token",
        workers=32,
    ),
    Scenario(
        name="workers-128",
        summary="128 concurrent workers sharing one token",
        workers=128,
    ),
    Scenario(
        name="multi-hour",
        summary="a busy account, 400 requests an hour: the import needs three windows of quota",
        limit=400,
    ),
    Scenario(
        name="other-consumer",
        summary="another tool on the same account uses half of the quota",
        other_consumers=0.5,
    ),
    Scenario(
        name="outage",
        summary=(
            "a 10-minute full outage (every request a 503) one second into the import, while "
            "32 workers are spending the quota; no call gets through during it, so the bound "
            "sends what fits before it and the rest after it"
        ),
        workers=32,
        faults=Faults(outage_start=1.0, outage_seconds=600.0),
    ),
    Scenario(
        name="configured-limit",
        summary=(
            "the client is told the limit: the gated bb-backoff rows get "
            "AccountGate(limit=<the limit>); the peers have no such setting"
        ),
        configured_limit=True,
    ),
)
"""The default scenarios, in the table's order."""


def scenario_named(name: str) -> Scenario:
    """The scenario called ``name``.

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    for scenario in SCENARIOS:
        if scenario.name == name:
            return scenario
    known = ", ".join(s.name for s in SCENARIOS)
    raise ValueError(f"unknown scenario {name!r}; choose from: {known}")
