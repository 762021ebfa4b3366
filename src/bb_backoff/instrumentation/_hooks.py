"""Hooks: who hears about retries, finished requests, give-ups and the gate.

A hook is any object with one or more of ``on_retry``, ``on_request``,
``on_give_up`` and ``on_gate``; the clients call the ones it has.  A hook that
raises is logged and never fails a request.  :class:`Hooks` is the fan-out the
clients hold; it also writes every event to the ``bb_backoff`` logger, with
the event's fields as ``extra`` so that structlog and JSON handlers take them
as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, Final, Protocol, runtime_checkable

import attrs

from .._events import Event, GateChanged, GaveUp, OnRetry, RequestFinished, RetryEvent
from .._exceptions import scrub_chain
from .._timing import is_async_callable

logger: Final = logging.getLogger("bb_backoff")

_METHODS: Final = {
    RetryEvent: "on_retry",
    RequestFinished: "on_request",
    GaveUp: "on_give_up",
    GateChanged: "on_gate",
}

# Seconds, for the request-duration histograms (Prometheus's and
# OpenTelemetry's): a request answered at once, one waiting out a backoff,
# one waiting out an hour of rate limiting.
DURATION_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200)


@runtime_checkable
class Hook(Protocol):
    """What a hook may implement; each method is optional (implement the ones you need)."""

    def on_retry(self, event: RetryEvent) -> None:
        """A retry is about to happen (the client waits ``event.delay`` seconds)."""

    def on_request(self, event: RequestFinished) -> None:
        """A logical request ended, with a success or an error."""

    def on_give_up(self, event: GaveUp) -> None:
        """The policy or the gate gave up on a request."""

    def on_gate(self, event: GateChanged) -> None:
        """The account gate changed mode."""


def event_fields(event: Event) -> dict[str, Any]:
    """The event's fields, flat, for a log record's ``extra`` (``bb_backoff_event`` names it)."""
    fields = attrs.asdict(event, recurse=False)
    if isinstance(event, RetryEvent):
        fields["reason"] = event.reason.value
    fields["bb_backoff_event"] = type(event).__name__
    return fields


def _log(event: Event) -> None:
    if isinstance(event, RetryEvent):
        logger.info(
            "%s %s: %s (attempt %d, %s); retrying in %.2f s (flag %s)",
            event.method,
            event.url,
            event.reason.value,
            event.attempt,
            event.status if event.status is not None else event.error,
            event.delay,
            event.flag_variant,
            extra={**event_fields(event), "retry_event": event},
        )
    elif isinstance(event, RequestFinished):
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s %s: %s after %d attempt(s), %.2f s (flag %s)",
                event.method,
                event.endpoint,
                event.outcome,
                event.attempts,
                event.elapsed,
                event.variant,
                extra=event_fields(event),
            )
    elif isinstance(event, GaveUp):
        logger.info(
            "%s %s: gave up (%s, %s) after %d attempt(s) and %.1f s waited (flag %s)",
            event.method,
            event.endpoint,
            event.outcome,
            event.reason,
            event.attempts,
            event.waited,
            event.variant,
            extra=event_fields(event),
        )
    else:
        logger.info(
            "account gate: %s -> %s (limit %s)",
            event.previous,
            event.mode,
            event.limit,
            extra=event_fields(event),
        )


class Hooks:
    """The fan-out a client holds: the logger, ``on_retry``, and every hook.

    Args:
        hooks: objects with some of the :class:`Hook` methods.
        on_retry: the clients' original callback for retries.

    Raises:
        ValueError: a hook with none of the methods, or an ``on_retry`` that
            is not callable.
        TypeError: a hook method that is async (``async def on_request``):
            hooks are called, never awaited, by both clients, so its events
            would be lost.  The message names the hook and the method.
    """

    __slots__ = ("_calls", "active", "on_retry")

    def __init__(self, hooks: Iterable[object] = (), on_retry: OnRetry | None = None) -> None:
        if isinstance(hooks, str | bytes) or not isinstance(hooks, Iterable):
            raise ValueError("hooks must be a list of hook objects")
        hooks = list(hooks)
        for hook in hooks:
            if not any(callable(getattr(hook, name, None)) for name in _METHODS.values()):
                raise ValueError(
                    f"hooks must have on_retry, on_request, on_give_up or on_gate; "
                    f"{type(hook).__name__} has none"
                )
            for name in _METHODS.values():
                if is_async_callable(getattr(hook, name, None)):
                    raise TypeError(
                        f"hooks: {type(hook).__name__}.{name} is async, and hooks are called "
                        "without await (its events would be lost); make it a plain method "
                        "(an async client's on_retry= may be async)"
                    )
        if on_retry is not None and not callable(on_retry):
            raise ValueError("on_retry must be a callable taking a RetryEvent")
        self.on_retry = on_retry
        self._calls: dict[type, tuple[Callable[[Any], object], ...]] = {
            kind: tuple(method for hook in hooks if callable(method := getattr(hook, name, None)))
            for kind, name in _METHODS.items()
        }
        self.active: Final = bool(hooks)
        """Whether any hook listens (then every request reports how it finished)."""

    def observe_requests(self) -> bool:
        """Whether a finished request is worth an event: a hook, or a debug log, wants it."""
        return self.active or logger.isEnabledFor(logging.DEBUG)

    def __call__(self, event: Event) -> object:
        """Log ``event`` and hand it to every hook; return what ``on_retry`` returned.

        The return value is an awaitable when ``on_retry`` is async: the async
        drivers await it.
        """
        _log(event)
        result = None
        if isinstance(event, RetryEvent) and self.on_retry is not None:
            try:
                result = self.on_retry(event)
            except Exception as error:
                logger.error(  # noqa: TRY400 (with the traceback, scrubbed)
                    "on_retry callback raised; the request goes on", exc_info=scrub_chain(error)
                )
        for call in self._calls[type(event)]:
            try:
                call(event)
            except Exception as error:
                logger.error(  # noqa: TRY400 (with the traceback, scrubbed)
                    "a bb_backoff hook raised on %s; the request goes on",
                    type(event).__name__,
                    exc_info=scrub_chain(error),
                )
        return result
