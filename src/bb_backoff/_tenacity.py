"""bb-backoff policies as tenacity strategies: Retry-After support for tenacity users.

tenacity has no notion of a server hint; its wait strategies see only the
attempt number.  :class:`TenacityStrategies` turns any bb-backoff policy into
the ``retry``, ``wait`` and ``stop`` strategies of a :class:`tenacity.Retrying`
(or ``AsyncRetrying``, or the ``@retry`` decorator).  They read the outcome
tenacity hands them (an :class:`httpx.Response`, an
:class:`httpx.HTTPStatusError` or an :class:`httpx.TransportError`), so the
same decision as in the clients applies: 429s and hints honoured, budgets
per reason, POST retried only when safe.
"""

from __future__ import annotations

import weakref
from typing import Any

import httpx
from tenacity import RetryCallState

from ._outcomes import outcome_of_error, outcome_of_response
from ._policy import Decision, Outcome, RetryHistory, RetryPolicy, check_policy, classify
from ._timing import Clock, default_now


def outcome_of(retry_state: RetryCallState, now: float) -> Outcome | None:
    """The :class:`Outcome` of tenacity's last attempt, or ``None`` if it is not retryable HTTP.

    The same mapping as the clients' (:mod:`._outcomes`): a transport error
    that is not transient (a bad URL scheme, a header httpx refuses) is final.

    Args:
        retry_state: tenacity's state after an attempt.
        now: epoch seconds, to read HTTP-date hints.
    """
    future = retry_state.outcome
    if future is None:
        return None
    if not future.failed:
        result = future.result()
        return outcome_of_response(result, now) if isinstance(result, httpx.Response) else None
    error = future.exception()
    if isinstance(error, httpx.HTTPStatusError):
        return outcome_of_response(error.response, now)
    if isinstance(error, httpx.TransportError):
        try:
            method = error.request.method
        except RuntimeError:  # an error raised without a request attached
            method = "GET"
        return outcome_of_error(method, error)
    return None


class TenacityStrategies:
    """A policy's decision as tenacity's ``retry``, ``wait`` and ``stop``.

    Usage::

        strategies = TenacityStrategies(ExponentialBackoff())

        @tenacity.retry(**strategies.kwargs())
        def fetch(url):
            response = httpx.get(url)
            response.raise_for_status()
            return response.json()

    ``wait`` makes the decision (tenacity asks it before ``stop``) and
    ``stop`` reads it, so a hint beyond ``max_hint`` or a spent budget stops
    at once.  The history lives beside tenacity's own state, one per call, so
    one instance serves many concurrent calls.

    Args:
        policy: any bb-backoff policy.
        now: epoch seconds, for HTTP-date hints.
    """

    def __init__(self, policy: RetryPolicy, *, now: Clock = default_now) -> None:
        check_policy("policy", policy)
        if not callable(now):
            raise ValueError(
                f"now must be a callable giving epoch seconds, got {type(now).__name__}"
            )
        self.policy = policy
        self._now = now
        self._decisions: weakref.WeakKeyDictionary[RetryCallState, Decision] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:
        return f"TenacityStrategies({self.policy!r})"

    def retry(self, retry_state: RetryCallState) -> bool:
        """Tenacity ``retry``: whether the last outcome is retryable at all."""
        outcome = outcome_of(retry_state, self._now())
        if outcome is None:
            return False
        # The same classification the policy's decide() applies.
        transport_errors = getattr(self.policy, "retry_transport_errors", True)
        return classify(outcome, transport_errors=transport_errors) is not None

    def wait(self, retry_state: RetryCallState) -> float:
        """Tenacity ``wait``: the policy's delay in seconds (0 when it will stop)."""
        outcome = outcome_of(retry_state, self._now())
        if outcome is None:
            return 0.0
        previous = self._decisions.get(retry_state)
        history = previous.history if previous is not None else RetryHistory()
        decision = self.policy.decide(history, outcome)
        self._decisions[retry_state] = decision
        return decision.delay if decision.delay is not None else 0.0

    def stop(self, retry_state: RetryCallState) -> bool:
        """Tenacity ``stop``: true when the policy gave up in ``wait``."""
        decision = self._decisions.get(retry_state)
        return decision is not None and decision.delay is None

    def kwargs(self) -> dict[str, Any]:
        """``{"retry": ..., "wait": ..., "stop": ...}`` for ``tenacity.Retrying(**kwargs)``."""
        return {"retry": self.retry, "wait": self.wait, "stop": self.stop}
