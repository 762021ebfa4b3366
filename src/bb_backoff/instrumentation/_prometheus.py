"""PrometheusHook: the clients' events as prometheus-client metrics.

prometheus-client is imported when a hook is built, never before
(``pip install 'bb-backoff[prometheus]'``).
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any, Final

from .._events import GateChanged, GaveUp, RequestFinished, RetryEvent
from ._hooks import DURATION_BUCKETS

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

_LOCK: Final = threading.Lock()
# One set of metrics per registry: a second hook on the same registry shares
# them instead of failing on a duplicated name.
_METRICS: Final[weakref.WeakKeyDictionary[Any, dict[str, Any]]] = weakref.WeakKeyDictionary()


def _metrics(registry: CollectorRegistry) -> dict[str, Any]:
    from prometheus_client import Counter, Histogram  # noqa: PLC0415 (optional dependency)

    with _LOCK:
        metrics = _METRICS.get(registry)
        if metrics is None:
            metrics = _METRICS[registry] = {
                "requests": Counter(
                    "bb_backoff_requests",
                    "Logical requests by flag variant and outcome ('ok' for a success).",
                    ["variant", "outcome"],
                    registry=registry,
                ),
                "retries": Counter(
                    "bb_backoff_retries",
                    "Retries by flag variant and reason (rate_limit, server_error, ...).",
                    ["variant", "reason"],
                    registry=registry,
                ),
                "give_ups": Counter(
                    "bb_backoff_give_ups",
                    "Requests given up by flag variant and stop reason.",
                    ["variant", "reason"],
                    registry=registry,
                ),
                "waited": Counter(
                    "bb_backoff_wait_seconds",
                    "Seconds spent waiting (backoff and the account gate) by flag variant.",
                    ["variant"],
                    registry=registry,
                ),
                "duration": Histogram(
                    "bb_backoff_request_duration_seconds",
                    "Logical request duration, waits included, by flag variant.",
                    ["variant"],
                    buckets=DURATION_BUCKETS,
                    registry=registry,
                ),
                "gate": Counter(
                    "bb_backoff_gate_changes",
                    "Account gate mode changes, by the mode entered.",
                    ["mode"],
                    registry=registry,
                ),
            }
        return metrics


class PrometheusHook:
    """Counts the clients' events in prometheus-client metrics.

    Metrics (labels never carry a URL, an actor or a secret):

    - ``bb_backoff_requests_total{variant, outcome}``: logical requests;
      ``outcome`` is ``"ok"`` or what the request ended with.
    - ``bb_backoff_retries_total{variant, reason}``: retries, ``reason`` as in
      :class:`~bb_backoff.Reason`.
    - ``bb_backoff_give_ups_total{variant, reason}``: give-ups, by stop reason.
    - ``bb_backoff_wait_seconds_total{variant}``: seconds spent waiting.
    - ``bb_backoff_request_duration_seconds{variant}``: a histogram of request
      durations, waits included.
    - ``bb_backoff_gate_changes_total{mode}``: account gate mode changes.

    Args:
        registry: the prometheus-client registry (default: the global one).
            Hooks on one registry share its metrics.

    Raises:
        ModuleNotFoundError: prometheus-client is not installed.
        TypeError: ``registry`` is not a ``CollectorRegistry``.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import (  # noqa: PLC0415 (optional dependency)
            REGISTRY,
            CollectorRegistry,
        )

        if registry is None:
            registry = REGISTRY
        elif not isinstance(registry, CollectorRegistry):
            # Not a weakref TypeError out of the metrics' cache, naming nothing.
            raise TypeError(
                "registry must be a prometheus_client.CollectorRegistry or None, "
                f"not {type(registry).__name__}"
            )
        self.registry: Final = registry
        metrics = _metrics(registry)
        self._requests = metrics["requests"]
        self._retries = metrics["retries"]
        self._give_ups = metrics["give_ups"]
        self._waited = metrics["waited"]
        self._duration = metrics["duration"]
        self._gate = metrics["gate"]

    def __repr__(self) -> str:
        return f"PrometheusHook(registry={self.registry!r})"

    def on_retry(self, event: RetryEvent) -> None:
        """Count a retry."""
        self._retries.labels(event.flag_variant, event.reason.value).inc()

    def on_request(self, event: RequestFinished) -> None:
        """Count a finished request, its waits and its duration."""
        self._requests.labels(event.variant, event.outcome).inc()
        if event.waited > 0:
            self._waited.labels(event.variant).inc(event.waited)
        self._duration.labels(event.variant).observe(event.elapsed)

    def on_give_up(self, event: GaveUp) -> None:
        """Count a give-up."""
        self._give_ups.labels(event.variant, event.reason).inc()

    def on_gate(self, event: GateChanged) -> None:
        """Count a gate mode change."""
        self._gate.labels(event.mode).inc()
