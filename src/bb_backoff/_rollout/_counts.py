"""What each flag variant did: the counts a rollout report compares.

:class:`VariantCounts` holds them for one variant; :class:`VariantTally` is
a hook (give it to a client's ``hooks=``) that fills them from the client's
own events, so the variant of a request is the one the client used, never
asked of the flag again.  :mod:`._exposition` fills the same counts from
:class:`~bb_backoff.instrumentation.PrometheusHook`'s metrics, with the same
definitions:

- a **request** is a logical request: one GET with all its retries;
- an **error** is a request whose outcome is not ``"ok"`` (it raised);
- a **give-up** is an error after the policy or the gate stopped retrying
  (every give-up is also an error; a 404 is an error, not a give-up);
- **429s** are the rate-limited answers a variant saw: its retries for a
  rate limit, plus its requests that ended rate limited.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Final

import attrs

from .._events import GaveUp, RequestFinished, RetryEvent
from .._policy import Reason

VARIANTS: Final = ("on", "off")
"""The flag's variants, in the order reports show them."""
RATE_LIMITED: Final = "rate_limited"
"""The outcome of a request that ended on a 429."""


@attrs.frozen(kw_only=True)
class VariantCounts:
    """What one flag variant's requests did.

    Attributes:
        requests: logical requests that finished (each GET with its retries).
        errors: of those, the ones whose outcome is not ``"ok"``.
        give_ups: errors after the policy or the gate stopped retrying.
        rate_limited: 429s: retries for a rate limit, plus requests that
            ended rate limited.
        retries: retries, for any reason.
        wait_seconds: seconds spent waiting (backoff and the account gate).
        duration_seconds: the requests' durations added up, waits included.
    """

    requests: int = 0
    errors: int = 0
    give_ups: int = 0
    rate_limited: int = 0
    retries: int = 0
    wait_seconds: float = 0.0
    duration_seconds: float = 0.0

    def __add__(self, other: VariantCounts) -> VariantCounts:
        if not isinstance(other, VariantCounts):
            return NotImplemented
        return VariantCounts(
            requests=self.requests + other.requests,
            errors=self.errors + other.errors,
            give_ups=self.give_ups + other.give_ups,
            rate_limited=self.rate_limited + other.rate_limited,
            retries=self.retries + other.retries,
            wait_seconds=self.wait_seconds + other.wait_seconds,
            duration_seconds=self.duration_seconds + other.duration_seconds,
        )

    @property
    def error_rate(self) -> float | None:
        """Errors per request, or ``None`` without requests."""
        return self.errors / self.requests if self.requests else None

    @property
    def mean_wait(self) -> float | None:
        """Seconds waited per request, or ``None`` without requests."""
        return self.wait_seconds / self.requests if self.requests else None

    @property
    def mean_duration(self) -> float | None:
        """Seconds per request, waits included, or ``None`` without requests."""
        return self.duration_seconds / self.requests if self.requests else None


def total(counts: Iterable[Mapping[str, VariantCounts]]) -> dict[str, VariantCounts]:
    """Several tallies' counts added up, variant by variant."""
    summed: dict[str, VariantCounts] = {}
    for by_variant in counts:
        for variant, counted in by_variant.items():
            summed[variant] = summed.get(variant, VariantCounts()) + counted
    return summed


@attrs.define
class _Running:
    """One variant's counts while they are being counted."""

    requests: int = 0
    errors: int = 0
    give_ups: int = 0
    rate_limited: int = 0
    retries: int = 0
    wait_seconds: float = 0.0
    duration_seconds: float = 0.0


class VariantTally:
    """A hook that counts each flag variant's requests, errors, give-ups, 429s and waits.

    Give it to a client (``hooks=[tally]``), or to many: it is thread-safe.
    The variant of each event is the one the client used for the request.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, _Running] = {}

    def __repr__(self) -> str:
        return f"VariantTally({self.counts()!r})"

    def _of(self, variant: str) -> _Running:
        running = self._running.get(variant)
        if running is None:
            running = self._running[variant] = _Running()
        return running

    def on_request(self, event: RequestFinished) -> None:
        """Count a finished request, its error, its waits and its duration."""
        with self._lock:
            running = self._of(event.variant)
            running.requests += 1
            running.errors += not event.ok
            running.rate_limited += event.outcome == RATE_LIMITED
            running.wait_seconds += event.waited
            running.duration_seconds += event.elapsed

    def on_retry(self, event: RetryEvent) -> None:
        """Count a retry, and a 429 when it retries a rate limit."""
        with self._lock:
            running = self._of(event.flag_variant)
            running.retries += 1
            running.rate_limited += event.reason is Reason.RATE_LIMIT

    def on_give_up(self, event: GaveUp) -> None:
        """Count a give-up."""
        with self._lock:
            self._of(event.variant).give_ups += 1

    @property
    def variants(self) -> frozenset[str]:
        """The variants seen so far."""
        with self._lock:
            return frozenset(self._running)

    def counts(self) -> dict[str, VariantCounts]:
        """The counts so far, by variant."""
        with self._lock:
            return {
                variant: VariantCounts(**attrs.asdict(running))
                for variant, running in self._running.items()
            }
