"""The records a request leaves behind: retries, finished requests, give-ups, gate changes.

Each is a frozen, slotted attrs class, built only when someone listens (a
hook, an ``on_retry`` callback or an enabled log level).  They carry no URL
with a secret (URLs are redacted, metrics get an endpoint *template*), no
credential, and, except :class:`RetryEvent`, no actor: their fields are safe
as metric labels and log fields.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

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


@attrs.frozen
class RequestFinished:
    """One logical request ended, with a success or an error.

    Attributes:
        variant: ``"on"`` or ``"off"``: the flag's answer for the request.
        endpoint: the endpoint's template, like
            ``"/repositories/{workspace}/{repo_slug}/pullrequests"``.
        method: the HTTP method.
        status: the last response's status, or ``None`` if none came back.
        attempts: requests sent (retries and redirect hops included).
        waited: seconds spent waiting (backoff and the account gate).
        elapsed: seconds from the start to the end, waits included.
        outcome: ``"ok"``, or what it ended with: ``"rate_limited"``,
            ``"retries_exhausted"``, ``"not_found"``, ``"unauthorized"``,
            ``"http_error"``, ``"unsafe_url"``, ``"invalid_response"``.
    """

    variant: str
    endpoint: str
    method: str
    status: int | None
    attempts: int
    waited: float
    elapsed: float
    outcome: str

    @property
    def ok(self) -> bool:
        """Whether the request succeeded."""
        return self.outcome == "ok"


@attrs.frozen
class GaveUp:
    """The policy or the gate gave up on a request (the error it raised says why).

    Attributes:
        variant: ``"on"`` or ``"off"``.
        endpoint: the endpoint's template.
        method: the HTTP method.
        status: the last response's status, or ``None``.
        attempts: requests sent.
        waited: seconds spent waiting.
        elapsed: seconds from the start to giving up.
        reason: the stop reason: ``"attempts"``, ``"budget"``,
            ``"hint_too_long"``, ``"outage"``, ``"not_retryable"``.
        outcome: ``"rate_limited"`` or ``"retries_exhausted"``.
    """

    variant: str
    endpoint: str
    method: str
    status: int | None
    attempts: int
    waited: float
    elapsed: float
    reason: str
    outcome: str


@attrs.frozen
class GateChanged:
    """The account gate changed mode (see :class:`~bb_backoff.AccountGate`).

    Attributes:
        previous: the mode before: ``"model"``, ``"probe"`` or ``"breaker"``.
        mode: the mode now.
        limit: the model's limit for the account's share, if known.
    """

    previous: str
    mode: str
    limit: int | None


Event: TypeAlias = RetryEvent | RequestFinished | GaveUp | GateChanged
"""Any record the clients emit."""

OnRetry: TypeAlias = Callable[[RetryEvent], object]
"""A callback that receives every :class:`RetryEvent`."""
