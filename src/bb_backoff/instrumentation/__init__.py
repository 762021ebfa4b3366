"""Instrumentation: hooks, the events they receive, and exporters for metrics.

Give a client ``hooks=[...]``: any objects with some of ``on_retry``,
``on_request``, ``on_give_up`` and ``on_gate`` (see :class:`Hook`).  Every
event also goes to the ``bb_backoff`` logger with its fields as ``extra``.

The exporters import their library only when built:
:class:`PrometheusHook` (``pip install 'bb-backoff[prometheus]'``) and
:class:`OpenTelemetryHook` (``pip install 'bb-backoff[opentelemetry]'``).
Their labels are the flag variant, the outcome and the reason: never a URL,
an actor or a secret.
"""

from .._events import GateChanged, GaveUp, RequestFinished, RetryEvent
from ._hooks import Hook, Hooks, event_fields
from ._opentelemetry import OpenTelemetryHook
from ._prometheus import PrometheusHook

__all__ = [
    "GateChanged",
    "GaveUp",
    "Hook",
    "Hooks",
    "OpenTelemetryHook",
    "PrometheusHook",
    "RequestFinished",
    "RetryEvent",
    "event_fields",
]
