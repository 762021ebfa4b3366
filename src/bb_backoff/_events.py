"""Instrumentation: one frozen record per retry, for callbacks and logs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final, TypeAlias

import attrs

from ._policy import Reason


@attrs.frozen
class RetryEvent:
    """One retry about to happen: the client will wait ``delay`` seconds, then try again.

    Attributes:
        attempt: the attempt that just failed, counting from 1.
        reason: why it is retried.
        status: the response status, or ``None`` after a transport error.
        delay: seconds the client will wait now.
        retry_after: the wait the server asked for in seconds, if any
            (honoured by the exponential policy, ignored by the legacy one).
        hint_source: the header the hint came from, if any.
        flag_variant: ``"on"`` (exponential policy) or ``"off"`` (legacy).
        method: the HTTP method.
        url: the request URL, redacted.
        actor: the actor the flag was evaluated for.
        error: the transport error's class name, if no response came back.
    """

    attempt: int
    reason: Reason
    status: int | None
    delay: float
    retry_after: float | None
    hint_source: str | None
    flag_variant: str
    method: str
    url: str
    actor: str | None = None
    error: str | None = None


OnRetry: TypeAlias = Callable[[RetryEvent], object]
"""A callback that receives every :class:`RetryEvent`."""

logger: Final = logging.getLogger("bb_backoff")


def report_retry(event: RetryEvent, on_retry: OnRetry | None) -> object:
    """Log one retry on the ``bb_backoff`` logger and call ``on_retry``.

    A callback that raises is logged, never propagated: the request goes on.

    Returns:
        What the callback returned (an awaitable from an async one).
    """
    logger.info(
        "%s %s: %s (attempt %d, %s); retrying in %.2f s (flag %s)",
        event.method,
        event.url,
        event.reason.value,
        event.attempt,
        event.status if event.status is not None else event.error,
        event.delay,
        event.flag_variant,
        extra={"retry_event": event},
    )
    if on_retry is None:
        return None
    try:
        return on_retry(event)
    except Exception:
        logger.exception("on_retry callback raised; the request goes on")
        return None
