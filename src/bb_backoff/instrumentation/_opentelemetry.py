"""OpenTelemetryHook: the clients' events as OpenTelemetry metrics.

The OpenTelemetry API is imported when a hook is built, never before
(``pip install 'bb-backoff[opentelemetry]'``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from .._events import GateChanged, GaveUp, RequestFinished, RetryEvent
from .._version import __version__
from ._hooks import DURATION_BUCKETS

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider


class OpenTelemetryHook:
    """Records the clients' events with OpenTelemetry metric instruments.

    The same instruments as :class:`PrometheusHook`, in OpenTelemetry's
    naming (an exporter to Prometheus turns ``bb_backoff.requests`` into
    ``bb_backoff_requests_total``):

    - ``bb_backoff.requests`` (counter; attributes ``variant``, ``outcome``)
    - ``bb_backoff.retries`` (counter; ``variant``, ``reason``)
    - ``bb_backoff.give_ups`` (counter; ``variant``, ``reason``)
    - ``bb_backoff.wait`` (counter, seconds; ``variant``)
    - ``bb_backoff.request.duration`` (histogram, seconds; ``variant``)
    - ``bb_backoff.gate.changes`` (counter; ``mode``)

    Args:
        meter_provider: where the meter comes from (default: the global
            provider set with ``opentelemetry.metrics.set_meter_provider``).

    Raises:
        ModuleNotFoundError: opentelemetry-api is not installed.
        TypeError: ``meter_provider`` is not a meter provider.
    """

    def __init__(self, meter_provider: MeterProvider | None = None) -> None:
        from opentelemetry import metrics  # noqa: PLC0415 (optional dependency)

        provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
        if not callable(getattr(provider, "get_meter", None)):
            # Not an AttributeError out of the first line that uses it.
            raise TypeError(
                "meter_provider must be an OpenTelemetry MeterProvider (with get_meter) or "
                f"None, not {type(meter_provider).__name__}"
            )
        meter = provider.get_meter("bb_backoff", __version__)
        self.meter_provider: Final = provider
        self._requests = meter.create_counter(
            "bb_backoff.requests", unit="{request}", description="Logical requests by outcome."
        )
        self._retries = meter.create_counter(
            "bb_backoff.retries", unit="{retry}", description="Retries by reason."
        )
        self._give_ups = meter.create_counter(
            "bb_backoff.give_ups", unit="{request}", description="Requests given up, by reason."
        )
        self._waited = meter.create_counter(
            "bb_backoff.wait", unit="s", description="Seconds spent waiting (backoff and gate)."
        )
        name = "bb_backoff.request.duration"
        description = "Logical request duration, waits included."
        try:
            # Seconds, not the SDK's default buckets (0 to 10,000, sized for
            # milliseconds: every request under 5 s in the first bucket).
            self._duration = meter.create_histogram(
                name,
                unit="s",
                description=description,
                explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
            )
        except TypeError:  # an API before 1.23 takes no advice: the SDK's views decide
            self._duration = meter.create_histogram(name, unit="s", description=description)
        self._gate = meter.create_counter(
            "bb_backoff.gate.changes", unit="{change}", description="Account gate mode changes."
        )

    def __repr__(self) -> str:
        return f"OpenTelemetryHook(meter_provider={self.meter_provider!r})"

    def on_retry(self, event: RetryEvent) -> None:
        """Count a retry."""
        self._retries.add(1, {"variant": event.flag_variant, "reason": event.reason.value})

    def on_request(self, event: RequestFinished) -> None:
        """Count a finished request, its waits and its duration."""
        self._requests.add(1, {"variant": event.variant, "outcome": event.outcome})
        if event.waited > 0:
            self._waited.add(event.waited, {"variant": event.variant})
        self._duration.record(event.elapsed, {"variant": event.variant})

    def on_give_up(self, event: GaveUp) -> None:
        """Count a give-up."""
        self._give_ups.add(1, {"variant": event.variant, "reason": event.reason})

    def on_gate(self, event: GateChanged) -> None:
        """Count a gate mode change."""
        self._gate.add(1, {"mode": event.mode})
