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
        faults: transient faults.
        size: the dataset.
        latency: seconds every response takes.
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

    def quick(self) -> Scenario:
        """The same scenario at a twentieth of the size: a small dataset, a twentieth of the quota.

        The import still needs more than one window, so rate limiting still
        bites, but a run takes a fraction of a second.
        """
        return attrs.evolve(self, size=QUICK_SIZE, limit=max(1, self.limit // 20))

    def lower_bound(self, calls_needed: int) -> float:
        """The shortest possible import, in seconds, given the rate limit.

        With a rolling window a client can spend the quota at once, then must
        wait a window for each further quota's worth: the last of ``N`` calls
        cannot start before ``(ceil(N / quota) - 1) * window``.  The quota is
        what the other consumers leave, in whole requests (they hold
        ``floor(limit * share)`` slots).  When the quota is never exhausted,
        the latency of the calls, spread over the workers, is the bound
        instead.  With no quota at all, no import can finish: infinity.
        """
        # The epsilon keeps 10 * (1 - 0.9) from rounding down a whole request.
        taken = math.floor(self.limit * self.other_consumers + 1e-9)
        quota = self.limit - taken
        if quota <= 0:
            return math.inf
        rate_bound = (math.ceil(calls_needed / quota) - 1) * self.window
        latency_bound = math.ceil(calls_needed / self.workers) * self.latency
        return max(rate_bound, latency_bound)


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
        name="multi-hour",
        summary="a busy account, 400 requests an hour: the import needs three windows of quota",
        limit=400,
    ),
    Scenario(
        name="other-consumer",
        summary="another tool on the same account uses half of the quota",
        other_consumers=0.5,
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
