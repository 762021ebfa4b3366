"""One logical request, written once: the flow that both clients drive.

Theory of operation
-------------------
A logical request (one GET, one page of a listing) is one generator,
:class:`RequestFlow`, that holds every decision and yields *steps* for its
driver to carry out, the way httpx's ``Auth.auth_flow`` is one generator
driven by ``sync_auth_flow`` and ``async_auth_flow``:

==============  =========================================  ========================
step            the driver...                              and sends back
==============  =========================================  ========================
:class:`Reserve`  asks the account gate when to send       a :class:`~._window.Grant`
:class:`Sleep`    waits, with the client's one ``sleep``   ``None``
:class:`Send`     sends the request with httpx             the response, or the error
:class:`Observe`  tells the gate what the server did       ``None``
:class:`Emit`     logs a retry and calls ``on_retry``      ``None``
==============  =========================================  ========================

The sync driver (:meth:`BitbucketClient._send`) does each step in the calling
thread; the async one (:meth:`AsyncBitbucketClient._send`) awaits them.  A
step that needs no I/O in one store (the memory gate) and a round trip in
another (Redis) is the same step: only the driver knows.

With no gate (the flag off, or ``gate=False``), the flow is the plain retry
loop: send, ask the policy, sleep, send again.  With a gate, every send is
reserved first; a 429 is waited out at the gate (which knows when a slot
frees) rather than by the policy's own backoff, and a failed probe of the
account's breaker is not charged to the request.  See
:class:`~bb_backoff.AccountGate` for how the waits are budgeted.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Generator
from typing import Any, Final, TypeAlias

import attrs
import httpx

from ._auth import TOKEN_REFRESH_EXTENSION
from ._endpoints import endpoint_template
from ._events import Event, GateChanged, GaveUp, RequestFinished, RetryEvent
from ._exceptions import (
    BitbucketError,
    HTTPStatusError,
    InvalidResponse,
    NotFound,
    RateLimited,
    RetriesExhausted,
    Unauthorized,
    UnsafeURL,
    redact_url,
    scrub_chain,
)
from ._gate import GateHandle, observation_of
from ._hints import hint_from_headers
from ._outcomes import error_envelope, outcome_of_error, outcome_of_response
from ._policy import (
    Decision,
    Outcome,
    Reason,
    RetryHistory,
    RetryPolicy,
    StopReason,
    gate_wait_stop,
)
from ._timing import MAX_WAIT
from ._window import BREAKER, ERROR, HOLD, PROBE, VOID, WAIT, Grant, Observation

# A wait shorter than this may end before the clock shows it moved (asyncio
# wakes a timer up to the clock's resolution early): too short to judge sleep by.
_NOTICEABLE: Final = 0.001
# Seconds of sleep asked for in a row, at the gate, that the clock must fail
# to show before the flow takes ``sleep`` for one that does not move it:
# well above the coarsest monotonic clock's tick (15.6 ms: Windows, before
# Python 3.13), which shows a sleep of a few milliseconds as no time at all.
_IGNORED_AFTER: Final = 0.1
# A wait at the gate before asking again (a WAIT) lasts this long at least: two
# ticks of that clock, so that it shows the wait (an event loop on it may wake
# a shorter timer with no time passed, and the request would ask again and
# again within one tick).
_SHORTEST_WAIT: Final = 0.032
# A wait for a slot is slept in pieces of at most this share of the window,
# so that a waiting request notices when the model changes under it (a
# provisional limit forgotten, a hold lifted) instead of sleeping out a
# reservation made on a model that no longer stands.
_RECHECK_SHARE: Final = 1 / 60
logger: Final = logging.getLogger("bb_backoff")

MAX_REDIRECTS: Final = 20
"""Redirects one logical request follows before it gives up (httpx's default)."""
CONTEXT: Final = "bb_backoff.context"
"""The response extension holding ``(flag variant, attempts)`` of the request behind it."""


class Reserve:
    """Ask the gate when the send may go; ``cancel`` drops a void reservation first."""

    __slots__ = ("cancel",)

    def __init__(self, cancel: Grant | None) -> None:
        self.cancel = cancel


_RESERVE: Final = Reserve(None)


class Sleep:
    """Wait ``seconds``, at most :data:`~._timing.MAX_WAIT` (a day).

    The policies never ask for more; a custom one that does is slept a day
    at a time rather than handed to a sleep that fails on it (``time.sleep``
    past about 2.9e9 s) or sleeps for centuries (``asyncio.sleep``).
    """

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = MAX_WAIT if seconds > MAX_WAIT else seconds


class Send:
    """Send the request; the driver sends back the response or the exception."""

    __slots__ = ("request",)

    def __init__(self, request: httpx.Request) -> None:
        self.request = request


class Observe:
    """Tell the gate what the server did with the send of ``grant``."""

    __slots__ = ("grant", "observation")

    def __init__(self, grant: Grant, observation: Observation) -> None:
        self.grant = grant
        self.observation = observation


class Emit:
    """Report an event: a retry about to happen, a request finished or given up, the gate."""

    __slots__ = ("event",)

    def __init__(self, event: Event) -> None:
        self.event = event


Step: TypeAlias = Reserve | Sleep | Send | Observe | Emit
Flow: TypeAlias = Generator[Step, Any, httpx.Response]


@attrs.define
class _Attempts:
    """One request's bookkeeping once something went wrong (built lazily)."""

    started: float
    history: RetryHistory = attrs.field(factory=RetryHistory)
    breaker_waited: float = 0.0
    last_response: httpx.Response | None = None
    """The last error response, for the error a request gives up with."""
    last_error: httpx.TransportError | None = None
    """The last transport error, for a transport's give-up (httpx's own error)."""


# A retry whose wait the gate decides: the policy's decision, the outcome, the error's name.
_Pending: TypeAlias = tuple[Decision, Outcome, str | None]


class FlowSettings:
    """What stays the same across the requests of one client under one flag variant.

    A client builds two (flag on, flag off) once, so a request's flow is
    three fields to set, not twelve.

    Args:
        policy: the policy this variant follows.
        variant: ``"on"`` or ``"off"``, for errors and events.
        actor: the flag's actor, for events.
        clock: monotonic seconds.
        now: epoch seconds, to read date hints.
        gate: the account gate's handle, or ``None`` for none.
        follow_redirects: follow redirects here, each hop through the gate
            (the clients); ``False`` returns a redirect as the response (a
            transport, under an httpx client that follows them itself).
        give_up_with_response: when the policy gives up on an error
            response, return it instead of raising, and re-raise httpx's own
            error after a transport error (a transport, whose callers expect
            httpx's behaviour); the clients raise a :class:`BitbucketError`.
        base_path: the API root's path, stripped from endpoint templates.
    """

    __slots__ = (
        "actor",
        "base_path",
        "clock",
        "follow_redirects",
        "gate",
        "give_up_with_response",
        "now",
        "policy",
        "variant",
    )

    def __init__(
        self,
        policy: RetryPolicy,
        variant: str,
        *,
        actor: str | None,
        clock: Callable[[], float],
        now: Callable[[], float],
        gate: GateHandle | None,
        follow_redirects: bool = True,
        give_up_with_response: bool = False,
        base_path: str = "/2.0",
    ) -> None:
        self.policy = policy
        self.variant = variant
        self.actor = actor
        self.clock = clock
        self.now = now
        self.gate = gate
        self.follow_redirects = follow_redirects
        self.give_up_with_response = give_up_with_response
        self.base_path = base_path


# Shared by every flow until its first redirect (then a list of its own).
_NO_REDIRECTS: Final[list[httpx.Response]] = []
# What the gate hears of a reservation whose request ended before its send.
_VOIDED: Final = Observation(VOID, sent=False)


class RequestFlow:
    """The steps of one logical request, to the response or the error to raise.

    Call :meth:`steps` for the generator a driver runs.

    Args:
        request: the request, sent as many times as needed.
        settings: what the client (or transport) fixed for this variant.
        observe: emit a :class:`RequestFinished` when the request ends (only
            when someone listens: it costs a clock read and a template).

    :class:`GaveUp` and :class:`GateChanged` are always emitted: they are
    rare, and the client logs them.
    """

    # What most requests never change is a class default (set on the
    # instance only when it changes): a flow is built for every request.
    sent = 0
    """Sends that went out (a request the origin guard refused did not)."""
    sent_at = 0.0
    grant: Grant | None = None
    state: _Attempts | None = None
    pending: _Pending | None = None
    redirects: list[httpx.Response] = _NO_REDIRECTS
    held = False
    """Whether :meth:`ready` reserved the first send and left it to wait in :meth:`steps`."""
    unsent: Grant | None = None
    """The reservation waiting for its send: void, should the request end first."""
    given_up: BitbucketError | None = None
    """Why a transport's request gave up with httpx's error: what a client would raise."""
    news: Observation | None = None
    """What the last success told the gate's model, for :meth:`steps` to report."""
    hinted = 0.0
    """Of the wait at the gate in progress, the seconds the request's own hint added."""
    unmoved = 0.0
    """Sleep asked for at the gate since the clock last showed one (see :data:`_IGNORED_AFTER`)."""
    logged = 0.0
    """When the reservation's send was due, on the client's clock, for a store whose
    time is not the client's: asked at, plus the delay it gave."""

    def __init__(
        self,
        request: httpx.Request,
        settings: FlowSettings,
        observe: bool = False,  # noqa: FBT001, FBT002 (a class called with a keyword builds a dict)
    ) -> None:
        self.settings = settings
        self.observe = observe
        self.request = request
        """The request to send now: the logical one, or a redirect's target."""
        self.logical = request
        """The request the caller asked for: errors and events name it."""

    def steps(self) -> Flow:
        """The generator: yields steps, returns the successful response.

        Returns:
            The response, with :data:`CONTEXT` set in its extensions.

        Raises:
            BitbucketError: the error to give up with.
        """
        return self._observed() if self.observe else self._steps()

    # -- the first attempt, without the generator ------------------------------------
    #
    # Most requests succeed at once.  The drivers then send straight away when
    # :meth:`ready` says so, and :meth:`outcome` hands back the response; only
    # a request that waits, fails or carries news goes on as the generator,
    # :meth:`resume`.  Both halves are the generator's own code, so the two
    # ways cannot drift apart.

    def ready(self) -> bool:
        """Whether the first send may go now with no step before it.

        It may without a gate, and with an in-memory gate that lets it go
        now (the reservation is made here, in place).  ``False`` means:
        drive :meth:`steps` (a reservation made here that must wait is kept
        for it).  Not for observed flows, whose :meth:`steps` time the whole.
        """
        gate = self.settings.gate
        if gate is None:
            return True
        if not gate.in_memory:
            return False
        grant = self.grant = gate.reserve()
        if grant.delay > 0.0 or grant.kind == WAIT:
            self.held = True
            if grant.kind != WAIT:
                self.unsent = grant
            return False
        self.sent_at = grant.at  # a memory store keeps time on the client's clock
        return True

    def outcome(self, result: object) -> httpx.Response | None:
        """Take what one send gave: the response to return, or ``None`` to go on.

        Counts the send, and times a success for the gate (which may find
        news in it, kept for :meth:`steps` to report).  A success the gate
        has nothing to learn from, and that is not a redirect, is the answer.
        """
        if not isinstance(result, httpx.Response):
            if not isinstance(result, BitbucketError):
                self.sent += 1  # refused by the origin guard: nothing went out
            return None
        self.sent += 1
        if result.status_code >= 400:  # noqa: PLR2004
            return None
        settings = self.settings
        gate = settings.gate
        if gate is not None and self.grant is not None:
            clock = settings.clock
            news = gate.answered(self.grant, result, clock() - self.sent_at)
            if news is not None:
                self.news = news
                return None
        if result.status_code >= 300 and settings.follow_redirects:  # noqa: PLR2004
            return None
        return self._final(result)

    def _final(self, response: httpx.Response) -> httpx.Response:
        """The response to answer with: the redirects behind it, and the request's context."""
        if self.redirects:
            response.history = self.redirects
        response.extensions[CONTEXT] = (self.settings.variant, self.sent)
        return response

    def resume(self, result: object) -> Flow:
        """The generator, from the first send's ``result`` on (after :meth:`outcome` said go on)."""
        return self._steps(result)

    def _observed(self) -> Flow:
        """:meth:`_steps`, then a :class:`RequestFinished` whatever the end."""
        started = self.settings.clock()
        try:
            response = yield from self._steps()
        except BitbucketError as error:
            yield Emit(self._finished(started, error, None))
            raise
        except httpx.HTTPError:  # a transport's give-up: httpx's own error
            yield Emit(self._finished(started, self.given_up, None))
            raise
        yield Emit(self._finished(started, None, response))
        return response

    def _finished(
        self, started: float, error: BitbucketError | None, response: httpx.Response | None
    ) -> RequestFinished:
        status = getattr(error, "status", None) if response is None else response.status_code
        state = self.state
        return RequestFinished(
            variant=self.settings.variant,
            endpoint=endpoint_template(str(self.logical.url), self.settings.base_path),
            method=self.logical.method,
            status=status,
            attempts=self.sent,
            waited=0.0 if state is None else state.history.waited + state.breaker_waited,
            elapsed=self.settings.clock() - started,
            outcome=outcome_label(error, response),
        )

    def _gave_up(self, error: BitbucketError) -> GaveUp:
        state = self._attempts()
        return GaveUp(
            variant=self.settings.variant,
            endpoint=endpoint_template(str(self.logical.url), self.settings.base_path),
            method=self.logical.method,
            status=getattr(error, "status", None),
            attempts=self.sent,
            waited=state.history.waited + state.breaker_waited,
            elapsed=self.settings.clock() - state.started,
            reason=getattr(error, "stop_reason", None) or "unknown",
            outcome=outcome_label(error, None),
        )

    def _observe(
        self, gate: GateHandle, grant: Grant, observation: Observation
    ) -> Generator[Step, Any, None]:
        """Tell the gate; announce a change of the gate's mode."""
        before = gate.store.knowledge(gate.key).mode
        knowledge = yield Observe(grant, observation)
        mode = getattr(knowledge, "mode", before)
        if mode != before:
            yield Emit(GateChanged(before, mode, getattr(knowledge, "limit", None)))

    def _steps(self, result: object = None) -> Flow:
        """The loop; ``result`` is the first send's, when the driver sent it (see :meth:`ready`)."""
        settings = self.settings
        gate = settings.gate
        while True:
            if result is None:  # nothing sent yet for this attempt
                if gate is not None:
                    given_up = yield from self._at_gate(gate)
                    if given_up is not None:
                        return given_up
                result = yield Send(self.request)
                response = self.outcome(result)
                if response is not None:
                    return response
            if isinstance(result, httpx.Response) and result.status_code < 400:  # noqa: PLR2004
                news, self.news = self.news, None
                if news is not None:
                    assert gate is not None  # noqa: S101 (news comes from a gate)
                    assert self.grant is not None  # noqa: S101
                    yield from self._observe(gate, self.grant, news)
                if result.status_code >= 300 and settings.follow_redirects:  # noqa: PLR2004
                    # Redirects are followed here, not inside httpx, so that
                    # every hop passes the gate: each one spends the quota.
                    self._follow(result)
                    result = None
                    continue
                return self._final(result)
            delay = yield from self._failed(result)
            if isinstance(delay, httpx.Response):
                return delay  # given up, answering with the last response
            if delay is not None:
                yield Sleep(delay)
            result = None

    def _at_gate(self, gate: GateHandle) -> Generator[Step, Any, httpx.Response | None]:
        """Reserve the next send, and wait for it: ``None`` to send now, or give up."""
        if self.held:
            grant, self.held = self.grant, False
            assert grant is not None  # noqa: S101 (held means reserved)
        elif gate.in_memory:  # asked in place: no I/O, so no step
            grant = self.grant = gate.reserve()
        else:
            asked = self.settings.clock()
            grant = self.grant = yield _RESERVE
            self.logged = asked + grant.delay
        if grant.delay > 0 or grant.kind == WAIT or self.pending is not None:
            given_up = yield from self._through_gate(gate, grant)
            if given_up is not None:
                return given_up
        now = self.settings.clock()
        grant = self.grant
        if grant is None:  # a wait broken off (a sleep that does not move the clock)
            self.sent_at = now
        else:
            # The answer is timed from when the send was logged, not from
            # when it went: the margin then covers what comes between (a
            # busy event loop, a sleep that overslept, the store's answer
            # on its way), which delays the send past its slot as much as
            # the network does.  A store's time is not the client's clock:
            # its slot is taken from when it was asked (the earliest it can be).
            logged = grant.at if gate.in_memory else self.logged
            self.sent_at = logged if logged < now else now
        return None

    def _follow(self, response: httpx.Response) -> None:
        """Move on to the redirect's target, or raise for a redirect that goes nowhere."""
        status = response.status_code
        target = response.next_request
        if target is None:
            raise self._error(
                InvalidResponse,
                f"HTTP {status} without a usable Location: a {status} is neither the resource "
                "nor a redirect to it",
            )
        if len(self.redirects) >= MAX_REDIRECTS:
            raise self._error(
                InvalidResponse,
                f"TooManyRedirects: more than {MAX_REDIRECTS} redirects in a row; stopping "
                "instead of looping",
            )
        if self.redirects is _NO_REDIRECTS:
            self.redirects = []
        self.redirects.append(response)
        self.request = target
        if self.state is not None:  # the redirect answered: no failure is the last one now
            self.state.last_error = None
            self.state.last_response = None

    def _attempts(self) -> _Attempts:
        if self.state is None:
            self.state = _Attempts(self.settings.clock())
        return self.state

    def _through_gate(
        self, gate: GateHandle, first: Grant
    ) -> Generator[Step, Any, httpx.Response | None]:
        """Wait as long as the gate says (within the budgets), asking again when it says so.

        Args:
            gate: the gate.
            first: the gate's first answer for this send.

        Returns:
            ``None``: send now.  When the wait does not fit a budget, the
            reservation is voided and the request gives up: it raises, or
            (``give_up_with_response``) returns its last response.
        """
        # The request's own hint is never undercut, whatever the gate's rounding.
        pending = self.pending
        floor = pending[0].hint.seconds if pending is not None and pending[0].hint else 0.0
        cancel: Grant | None = None
        grant: Grant | None = first
        while True:
            if grant is None:
                asked = self.settings.clock()
                grant = yield Reserve(cancel)
                self.grant, cancel = grant, None
                self.logged = asked + grant.delay
            self.unsent = None if grant.kind == WAIT else grant
            delay = max(grant.delay, floor)
            if delay <= 0 and grant.kind != WAIT:
                break
            self.hinted = delay - grant.delay  # (never negative: delay is at least the gate's)
            if grant.kind == WAIT and delay < _SHORTEST_WAIT:
                delay = _SHORTEST_WAIT
            refused = self._charge_gate_wait(self._attempts(), grant, delay, gate)
            if refused is not None:
                return (yield from self._give_up_at_gate(refused))
            if self.pending is not None:
                yield Emit(self._event(self.pending, delay))
                self.pending = None
            hint_left, floor = floor, 0.0
            slept = yield from self._sleep_watching(gate, grant, delay)
            if slept is None:
                # ``sleep`` did not move ``clock`` (a stubbed sleep in a test,
                # say): the gate cannot pace on such a clock, so go now.
                gate.clock_ignored_sleep()
                if grant.kind == WAIT:
                    self.grant = None
                break
            if grant.kind != WAIT:
                if slept >= delay and gate.still_valid(grant):
                    break
                cancel = grant
                # What is left of the request's own hint still holds.
                floor = max(0.0, hint_left - slept)
            grant = None
        if self.pending is not None:
            yield Emit(self._event(self.pending, 0.0))
            self.pending = None
        self.unsent = None  # the send goes now
        return None

    def _give_up_at_gate(self, refused: BitbucketError) -> Generator[Step, Any, httpx.Response]:
        """Give the reservation back (it will not be sent), report, and give up."""
        unsent = self.abandon()
        if unsent is not None:
            yield Observe(unsent, _VOIDED)
        yield Emit(self._gave_up(refused))
        state = self._attempts()
        if not self.settings.give_up_with_response:
            if (
                state.last_error is not None
                and getattr(refused, "stop_reason", None) == StopReason.OUTAGE.value
            ):
                # An outage of transport errors: the last one is the cause.
                raise refused from scrub_chain(state.last_error)
            raise refused
        if state.last_response is not None:
            return self._given_up(state.last_response)
        self.given_up = refused
        if state.last_error is not None:
            raise scrub_chain(state.last_error)  # its last attempt's own error
        # Nothing sent to answer with: httpx's error for a request that
        # waited too long for its turn (the gate is a pool of slots).
        raise httpx.PoolTimeout(str(refused), request=self.logical)

    def abandon(self) -> Grant | None:
        """Take the reservation still waiting for its send, to void it (the request ends first).

        The drivers call it when the request ends by an exception from
        outside the flow (a cancelled task, an interrupted sleep).
        """
        unsent, self.unsent = self.unsent, None
        return unsent

    def _given_up(self, response: httpx.Response) -> httpx.Response:
        """``response``, the last answer, as a request that gave up returns it (a transport's)."""
        response.extensions[CONTEXT] = (self.settings.variant, self.sent)
        return response

    def _sleep_watching(
        self, gate: GateHandle, grant: Grant, delay: float
    ) -> Generator[Step, Any, float | None]:
        """Sleep ``delay`` for ``grant``, in pieces, stopping early when the model changed.

        Returns:
            The seconds slept (less than ``delay`` when the reservation went
            void, the rest refunded to the budget it was charged to), or
            ``None`` when ``sleep`` does not move the clock.
        """
        clock = self.settings.clock
        # Pieces well above _NOTICEABLE, so a sleep that does not move the
        # clock is still noticed on a tiny window.
        piece = max(gate.params.window * _RECHECK_SHARE, 10 * _NOTICEABLE)
        if grant.kind == WAIT:
            piece = delay
        slept = 0.0
        while slept < delay:
            chunk = min(piece, delay - slept)
            before = clock()
            yield Sleep(chunk)
            if chunk > _NOTICEABLE and clock() - before < chunk / 2:
                # Not shown: ``sleep`` does not move the clock, or the clock
                # ticks coarsely and will show it later.  Only a run of such
                # sleeps, longer than any clock's tick, tells.
                self.unmoved += chunk
                if self.unmoved >= _IGNORED_AFTER:
                    return None
            elif chunk > _NOTICEABLE:  # (a shorter one shows nothing either way)
                self.unmoved = 0.0
            slept += chunk
            if slept < delay and not gate.still_valid(grant):
                self._refund_gate_wait(grant, delay - slept)
                break
        return slept

    def _refund_gate_wait(self, grant: Grant, seconds: float) -> None:
        """Give back to its budget a wait at the gate that was charged and not slept.

        At the breaker, the part of the wait a hint added (its end) is given
        back to the rate-limit budget it was charged to, and the rest to the
        outage budget.
        """
        state = self._attempts()
        if grant.reason == BREAKER:
            hinted = min(seconds, self.hinted)
            state.breaker_waited -= seconds - hinted
            if hinted > 0.0:
                history = state.history
                state.history = attrs.evolve(
                    history, rate_limit_waited=history.rate_limit_waited - hinted
                )
        else:
            history = state.history
            state.history = attrs.evolve(
                history, rate_limit_waited=history.rate_limit_waited - seconds
            )

    def _failed(self, result: object) -> Generator[Step, Any, float | httpx.Response | None]:
        """After a failed attempt: the policy's wait, ``None`` when the gate paces, or give up.

        Giving up raises, or returns the last response (``give_up_with_response``).
        """
        gate, grant = self.settings.gate, self.grant
        outcome, error = yield from self._judge(result)
        # _judge raised for anything else.
        assert isinstance(result, httpx.Response | httpx.TransportError)  # noqa: S101

        state = self._attempts()
        state.last_response = result if isinstance(result, httpx.Response) else None
        state.last_error = result if isinstance(result, httpx.TransportError) else None
        if (
            grant is not None
            and grant.kind == PROBE
            and grant.reason == BREAKER
            and outcome.status != 429  # noqa: PLR2004
        ):
            # The breaker's probe failed: the breaker spaces the next one, and
            # the request waits there without spending its own attempts.
            return None
        decision = self.settings.policy.decide(state.history, outcome)
        if decision.delay is None:
            if (
                gate is not None
                and grant is not None  # (None: a sleep that does not move the clock)
                and state.history.error_retries > 0
                and not _from_token_endpoint(result)
                and _outlasted_by_breaker(gate, decision)
            ):
                # The account's breaker is open: the outage is the account's,
                # and a request its policy retries waits for it with the
                # others (charged to outage_budget) instead of giving up.
                # With one worker, the errors that open the breaker are the
                # request's own, and its last attempt is the one that opens
                # it.  The wait is reported as a retry.  The error's hint (a
                # maintenance 503's Retry-After) is never undercut when the
                # policy would honour it (respect_hints, max_hint, the
                # rate-limit budget, which its part of the wait is charged
                # to); otherwise the breaker's probes space the wait.
                hint = decision.hint
                if hint is not None and not self._honours_at_breaker(hint.seconds):
                    hint = None
                self.pending = (attrs.evolve(decision, hint=hint), outcome, error)
                return None
            failure = self._give_up(decision, result)
            if isinstance(failure, RetriesExhausted):
                yield Emit(self._gave_up(failure))
            if self.settings.give_up_with_response:
                if isinstance(result, httpx.Response):
                    return self._given_up(result)
                self.given_up = failure
                raise scrub_chain(result)
            raise failure from (scrub_chain(result) if isinstance(result, Exception) else None)
        if (
            gate is not None
            and decision.reason is Reason.RATE_LIMIT
            and not answered_by_token_endpoint(result)
            and not self.request.extensions.get(TOKEN_REFRESH_EXTENSION)
        ):
            # The gate knows when the API's slot frees: wait there, not on a
            # blind backoff (a token endpoint's 429 is not the API's window).
            state.history = attrs.evolve(
                decision.history, rate_limit_waited=state.history.rate_limit_waited
            )
            self.pending = (decision, outcome, error)
            return None
        state.history = decision.history
        yield Emit(self._event((decision, outcome, error), decision.delay))
        return decision.delay

    def _honours_at_breaker(self, seconds: float) -> bool:
        """Whether an error's hint of ``seconds`` holds for a wait at the breaker.

        It does as the policy would have honoured it on a retry of its own.
        """
        policy = self.settings.policy
        return getattr(policy, "respect_hints", True) and (
            gate_wait_stop(policy, self._attempts().history, seconds, hint=True) is None
        )

    def _judge(self, result: object) -> Generator[Step, Any, tuple[Outcome, str | None]]:
        """The policy's view of a failed attempt, told to the gate; or raise when it is final.

        Returns:
            The outcome, and the transport error's class name, if any.
        """
        request, gate, grant = self.request, self.settings.gate, self.grant
        if isinstance(result, httpx.Response):
            outcome = outcome_of_response(result, self.settings.now(), request.method)
            if gate is not None and grant is not None:
                if answered_by_token_endpoint(result) or request.extensions.get(
                    TOKEN_REFRESH_EXTENSION
                ):
                    # The API request never left: the OAuth token endpoint (its
                    # own host and limits) answered the refresh instead.  The
                    # API's window spent nothing and learns nothing from it.
                    observation = Observation(ERROR, sent=False)
                else:
                    gate.round_trip(self.settings.clock() - self.sent_at)
                    hint = None if outcome.hint is None else outcome.hint.seconds
                    observation = observation_of(
                        result.status_code, result.headers, sent=True, hint=hint
                    )
                yield from self._observe(gate, grant, observation)
            return outcome, None
        if isinstance(result, httpx.TransportError):
            maybe = outcome_of_error(request.method, result)
            if maybe is None:
                failure = _not_transient(result, self.logical, self.settings.variant, self.sent)
                yield Emit(self._gave_up(failure))
                if self.settings.give_up_with_response:
                    self.given_up = failure
                    raise scrub_chain(result)  # httpx's own error, as without the transport
                raise failure
            if gate is not None and grant is not None:
                yield from self._observe(
                    gate, grant, observation_of(None, None, sent=maybe.sent, hint=None)
                )
            return maybe, type(result).__name__
        assert isinstance(result, Exception)  # noqa: S101 (the drivers send nothing else)
        if isinstance(result, BitbucketError) and gate is not None and grant is not None:
            # Refused before it went out (the origin guard, a closed client):
            # the slot it was given is no send, and must not count as one.
            yield from self._observe(gate, grant, _VOIDED)
        failure = failed_send(result, self.logical, self.settings.variant, self.sent)
        if failure is result:
            raise failure  # our own error (origin guard, OAuth): its cause stays its own
        raise failure from scrub_chain(result)

    def _charge_gate_wait(
        self, state: _Attempts, grant: Grant, delay: float, gate: GateHandle
    ) -> BitbucketError | None:
        """Charge a wait at the gate to the right budget, or the error when it does not fit.

        At the breaker, the part of ``delay`` the request's own hint adds to
        the gate's (:attr:`hinted`) is charged to the rate-limit budget (as an
        error's hint is), and the rest to the outage budget.
        """
        if grant.reason == BREAKER:
            budget = gate.gate.outage_budget
            hinted = self.hinted
            outage = delay - hinted
            if state.breaker_waited + outage > budget:
                last = state.last_response
                message, detail = (None, None) if last is None else error_envelope(last)
                return self._error(
                    RetriesExhausted,
                    "gave up: the account's breaker stayed open longer than the outage budget "
                    f"({budget:.0f} s)",
                    stop_reason=StopReason.OUTAGE.value,
                    waited=state.history.waited + state.breaker_waited,
                    elapsed=self.settings.clock() - state.started,
                    status=None if last is None else last.status_code,
                    error_message=message,
                    detail=detail,
                )
            state.breaker_waited += outage
            if hinted > 0.0:
                history = state.history
                state.history = attrs.evolve(
                    history, rate_limit_waited=history.rate_limit_waited + hinted
                )
            return None
        stop = gate_wait_stop(self.settings.policy, state.history, delay, hint=grant.reason == HOLD)
        if stop is not None:
            why = (
                f"the server asked the account to wait {delay:.0f} s, more than the policy's "
                "max_hint"
                if stop is StopReason.HINT_TOO_LONG
                else f"the rate-limit budget is spent ({state.history.rate_limit_waited:.1f} s "
                f"waited, {delay:.1f} s more needed)"
            )
            last = state.last_response
            message, detail = (None, None) if last is None else error_envelope(last)
            return self._error(
                RateLimited,
                f"rate limited: gave up at the account gate: {why}",
                stop_reason=stop.value,
                waited=state.history.waited,
                elapsed=self.settings.clock() - state.started,
                status=None if last is None else last.status_code,
                error_message=message,
                detail=detail,
                last_hint=_hint_seconds(last, self.settings.now()),
            )
        history = state.history
        state.history = attrs.evolve(history, rate_limit_waited=history.rate_limit_waited + delay)
        return None

    def _event(self, pending: _Pending, delay: float) -> RetryEvent:
        decision, outcome, error = pending
        assert decision.reason is not None  # noqa: S101 (a retry always has a reason)
        hint = decision.hint
        return RetryEvent(
            attempt=self.sent,
            reason=decision.reason,
            status=outcome.status,
            delay=delay,
            retry_after=None if hint is None else hint.seconds,
            hint_source=None if hint is None else hint.source,
            flag_variant=self.settings.variant,
            method=self.logical.method,
            url=redact_url(self.logical.url),
            actor=self.settings.actor,
            error=error,
        )

    def _error(self, kind: type[BitbucketError], message: str, **fields: Any) -> BitbucketError:
        fields.setdefault("attempts", self.sent)
        return _error_for(kind, message, self.logical, self.settings.variant, **fields)

    def _give_up(self, decision: Decision, result: httpx.Response | Exception) -> BitbucketError:
        state = self._attempts()
        response = result if isinstance(result, httpx.Response) else None
        status = None if response is None else response.status_code
        message, detail = (None, None) if response is None else error_envelope(response)
        history = decision.history
        elapsed = self.settings.clock() - state.started
        if decision.stop is StopReason.NOT_RETRYABLE:
            if response is None:
                return self._error(
                    RetriesExhausted,
                    f"transport error, not retried for {self.logical.method}",
                    stop_reason=decision.stop.value,
                    elapsed=elapsed,
                )
            assert status is not None  # noqa: S101 (a response has a status)
            kind = {401: Unauthorized, 404: NotFound}.get(status, HTTPStatusError)
            text = f"HTTP {status}" + (f": {message}" if message else "")
            return self._error(kind, text, status=status, error_message=message, detail=detail)

        assert decision.stop is not None  # noqa: S101 (no delay means a stop reason)
        hint = decision.hint
        asked = (
            ""
            if hint is None
            else f"; the server asked for {hint.seconds:.0f} s more ({hint.source})"
        )
        why = {
            StopReason.ATTEMPTS: f"gave up after {self.sent} attempts",
            StopReason.BUDGET: (
                "gave up: the waiting budget is spent "
                f"({history.rate_limit_waited:.1f} s waited for rate limits and server hints, "
                f"{history.error_waited:.1f} s for errors{asked})"
            ),
            StopReason.HINT_TOO_LONG: (
                f"gave up at once: the server asked to wait {hint.seconds:.0f} s "
                f"({hint.source}), more than the policy's max_hint (a day at most: the "
                "longest single wait)"
                if hint is not None
                else "gave up: the server's hint is too long"
            ),
        }.get(decision.stop, f"gave up: {decision.stop.value}")
        common: dict[str, Any] = {
            "status": status,
            "waited": history.waited + state.breaker_waited,
            "elapsed": elapsed,
            "stop_reason": decision.stop.value,
            "error_message": message,
            "detail": detail,
        }
        if decision.reason is Reason.RATE_LIMIT:
            return self._error(
                RateLimited,
                f"rate limited: {why}",
                last_hint=None if hint is None else hint.seconds,
                **common,
            )
        failure = f"HTTP {status}" if status is not None else "transport error"
        return self._error(RetriesExhausted, f"{failure}: {why}", **common)


# -- the two drivers ------------------------------------------------------------------


def run(
    flow: RequestFlow,
    *,
    send: Callable[[httpx.Request], object],
    sleep: Callable[[float], object],
    report: Callable[[Event], object],
) -> httpx.Response:
    """Drive ``flow`` in the calling thread: the sync clients' and transport's one loop.

    A first attempt that needs no step (see :meth:`RequestFlow.ready`) is
    sent straight away; the generator runs only when something is left to do.

    Args:
        flow: one logical request.
        send: sends one request; returns the response, or the exception
            that the flow should judge (anything else propagates).
        sleep: the one sleep.
        report: takes each event (:class:`RetryEvent`, :class:`RequestFinished`,
            :class:`GaveUp`, :class:`GateChanged`).

    Returns:
        What the flow returns.
    """
    if not flow.observe and flow.ready():
        result = send(flow.request)
        first = flow.outcome(result)
        if first is not None:
            return first
        steps = flow.resume(result)
    else:
        steps = flow.steps()
    return _drive(flow, steps, send=send, sleep=sleep, report=report)


def _drive(
    flow: RequestFlow,
    steps: Flow,
    *,
    send: Callable[[httpx.Request], object],
    sleep: Callable[[float], object],
    report: Callable[[Event], object],
) -> httpx.Response:
    """Carry out the steps of ``steps`` until it returns (perhaps before its first step).

    A request ended from outside (an exception out of a sleep or a report,
    a ``KeyboardInterrupt``) gives its waiting reservation back to the gate.
    """
    gate = flow.settings.gate
    try:
        step: Step = next(steps)
        while True:
            if isinstance(step, Send):
                step = steps.send(send(step.request))
            elif isinstance(step, Reserve):
                step = steps.send(gate.reserve(step.cancel))  # type: ignore[union-attr]
            elif isinstance(step, Sleep):
                sleep(step.seconds)
                step = next(steps)
            elif isinstance(step, Observe):
                step = steps.send(gate.observe(step.grant, step.observation))  # type: ignore[union-attr]
            else:
                report(step.event)
                step = next(steps)
    except StopIteration as done:
        response: httpx.Response = done.value
        return response
    except BaseException:
        unsent = flow.abandon()
        if unsent is not None and gate is not None:
            gate.observe(unsent, _VOIDED)
        raise


async def arun(
    flow: RequestFlow,
    *,
    send: Callable[[httpx.Request], Awaitable[object]],
    sleep: Callable[[float], object],
    report: Callable[[Event], object],
) -> httpx.Response:
    """Drive ``flow`` on the event loop; see :func:`run`.

    ``sleep`` may be async or not; an awaitable ``report`` result (an async
    ``on_retry``) is awaited, and its exception logged.
    """
    if not flow.observe and flow.ready():
        result = await send(flow.request)
        first = flow.outcome(result)
        if first is not None:
            return first
        steps = flow.resume(result)
    else:
        steps = flow.steps()
    return await _adrive(flow, steps, send=send, sleep=sleep, report=report)


async def _adrive(
    flow: RequestFlow,
    steps: Flow,
    *,
    send: Callable[[httpx.Request], Awaitable[object]],
    sleep: Callable[[float], object],
    report: Callable[[Event], object],
) -> httpx.Response:
    """Carry out the steps of ``steps`` until it returns; see :func:`_drive`.

    A task cancelled while it waits at the gate (``asyncio.timeout``,
    ``wait_for``) gives its reservation back: a slot nobody will use must
    not be counted against the account.
    """
    gate = flow.settings.gate
    try:
        step: Step = next(steps)
        while True:
            if isinstance(step, Send):
                step = steps.send(await send(step.request))
            elif isinstance(step, Reserve):
                assert gate is not None  # noqa: S101 (a flow reserves only with a gate)
                step = steps.send(await _reserve_shielded(gate, step.cancel))
            elif isinstance(step, Sleep):
                slept = sleep(step.seconds)
                if inspect.isawaitable(slept):
                    await slept
                step = next(steps)
            elif isinstance(step, Observe):
                known = await gate.aobserve(step.grant, step.observation)  # type: ignore[union-attr]
                step = steps.send(known)
            else:
                reported = report(step.event)
                if inspect.isawaitable(reported):
                    try:
                        await reported
                    except Exception as error:
                        logger.error(  # noqa: TRY400 (with the traceback, scrubbed)
                            "on_retry callback raised; the request goes on",
                            exc_info=scrub_chain(error),
                        )
                step = next(steps)
    except StopIteration as done:
        response: httpx.Response = done.value
        return response
    except BaseException:
        unsent = flow.abandon()
        if unsent is not None and gate is not None:
            _void_soon(gate, unsent)
        raise


# Voids in flight, kept referenced until they are done (the loop keeps only weak ones).
_VOIDING: Final[set[asyncio.Future[object]]] = set()


async def _reserve_shielded(gate: GateHandle, cancel: Grant | None) -> Grant:
    """``gate.areserve(cancel)``, the reservation voided should the request be cancelled meanwhile.

    A network store has made the reservation by the time its answer is on
    the way: a task cancelled while it awaits that answer would never learn
    of it, and the slot would be held for nobody.  The call runs on, out of
    the cancellation's reach, and what it made is given back when it ends.
    """
    if gate.in_memory:  # no I/O, nothing to shield: in place, on any event loop (trio's too)
        return gate.reserve(cancel)
    reserving = asyncio.ensure_future(gate.areserve(cancel))
    try:
        return await asyncio.shield(reserving)
    except asyncio.CancelledError:
        reserving.add_done_callback(functools.partial(_void_when_made, gate))
        raise


def _void_when_made(gate: GateHandle, reserving: asyncio.Future[Grant]) -> None:
    if reserving.cancelled() or reserving.exception() is not None:
        return
    grant = reserving.result()
    if grant.kind != WAIT:
        _void_soon(gate, grant)


def _void_soon(gate: GateHandle, grant: Grant) -> None:
    """Tell the gate ``grant`` will not be sent, in a task of its own (out of any cancellation).

    A task of its own: in a cancelled scope (anyio's, trio-style) every
    await of this task is cancelled again.  A memory gate needs no task: it
    is told at once, on any event loop.
    """
    if gate.in_memory:
        gate.observe(grant, _VOIDED)
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # no loop left to run it on: nothing more can be done
        return
    voiding: asyncio.Future[object] = loop.create_task(gate.aobserve(grant, _VOIDED))
    _VOIDING.add(voiding)
    voiding.add_done_callback(_VOIDING.discard)


_OUTCOMES: Final = (
    (RateLimited, "rate_limited"),
    (RetriesExhausted, "retries_exhausted"),
    (NotFound, "not_found"),
    (Unauthorized, "unauthorized"),
    (HTTPStatusError, "http_error"),
    (UnsafeURL, "unsafe_url"),
    (InvalidResponse, "invalid_response"),
)
_STATUS_OUTCOMES: Final = {401: "unauthorized", 404: "not_found", 429: "rate_limited"}


_OUTLASTED: Final = frozenset((StopReason.ATTEMPTS, StopReason.BUDGET))
_ERRORS: Final = frozenset((Reason.SERVER_ERROR, Reason.TRANSPORT_ERROR))


def _outlasted_by_breaker(gate: GateHandle, decision: Decision) -> bool:
    """Whether an error's retries ran out while the account's breaker is open.

    Such a request waits at the breaker rather than give up; one refused
    for good (a 404, a POST that may have gone through) still gives up.
    """
    return (
        decision.reason in _ERRORS
        and decision.stop in _OUTLASTED
        and gate.store.knowledge(gate.key).mode == BREAKER
    )


def _from_token_endpoint(result: object) -> bool:
    """Whether ``result`` (an answer or a transport error) came from the OAuth token endpoint.

    Its failures are the refresh's, not an outage of the API.
    """
    if isinstance(result, httpx.RequestError):
        try:
            return bool(result.request.extensions.get(TOKEN_REFRESH_EXTENSION))
        except RuntimeError:  # raised without a request
            return False
    return answered_by_token_endpoint(result)


def answered_by_token_endpoint(result: object) -> bool:
    """Whether ``result`` is the OAuth token endpoint's answer, not the API's.

    When a refresh meets a 408, 429 or 5xx, the auth flow hands that answer
    back as the request's response (see :class:`~bb_backoff._auth.OAuth2Flow`).
    """
    if not isinstance(result, httpx.Response):
        return False
    try:
        request = result.request
    except RuntimeError:  # a transport's own response, not yet bound to its request
        return False
    return bool(request.extensions.get(TOKEN_REFRESH_EXTENSION))


def outcome_label(error: BitbucketError | None, response: httpx.Response | None) -> str:
    """A request's end as a short, bounded label: ``"ok"`` or the kind of error."""
    if error is not None:
        for kind, label in _OUTCOMES:
            if isinstance(error, kind):
                return label
        return "error"
    status = 0 if response is None else response.status_code
    if status < 400:  # noqa: PLR2004
        return "ok"
    if status >= 500 or status == 408:  # noqa: PLR2004
        return "retries_exhausted"
    return _STATUS_OUTCOMES.get(status, "http_error")


def _hint_seconds(response: httpx.Response | None, now: float) -> float | None:
    if response is None:
        return None
    hint = hint_from_headers(response.headers, now)
    return None if hint is None else hint.seconds


# -- the errors a request gives up with ------------------------------------------------


def _error_for(
    kind: type[BitbucketError],
    message: str,
    request: httpx.Request,
    variant: str,
    **fields: Any,
) -> BitbucketError:
    """A ``kind`` error about ``request``, carrying the flag variant that served it."""
    return kind(message, flag_variant=variant, method=request.method, url=request.url, **fields)


def _not_transient(
    error: httpx.TransportError, request: httpx.Request, variant: str, sent: int
) -> BitbucketError:
    exhausted = _error_for(
        RetriesExhausted,
        f"{type(error).__name__} is not a transient error",
        request,
        variant,
        stop_reason=StopReason.NOT_RETRYABLE.value,
        attempts=sent,
    )
    if isinstance(error, httpx.LocalProtocolError):
        # h11 quotes the offending header, which may be a credential: no cause.
        exhausted.__cause__ = None
        exhausted.__suppress_context__ = True
        return exhausted
    exhausted.__cause__ = scrub_chain(error)
    return exhausted


def network_error(error: OSError, request: httpx.Request) -> httpx.NetworkError:
    """An ``OSError`` a transport let through, as the network error it is.

    httpx's own transports map theirs to :class:`httpx.TransportError`; a
    transport of the caller's may not.  Judged as one (retried, and its
    send counted as made, the safe side), it is no raw exception out of a
    client call.
    """
    failure = httpx.NetworkError(f"{type(error).__name__}: {error}", request=request)
    failure.__cause__ = error
    return failure


def failed_send(
    error: Exception, request: httpx.Request, variant: str, attempts: int
) -> BitbucketError:
    """The error to raise when sending failed for a reason no retry can fix.

    Our own errors (from the origin guard or the OAuth flow) get the
    request's context; httpx's (a redirect loop, an undecodable body)
    become :class:`InvalidResponse`.
    """
    if isinstance(error, BitbucketError):
        return error.with_context(
            flag_variant=variant, attempts=attempts, method=request.method, url=request.url
        )
    return _error_for(
        InvalidResponse,
        f"the response could not be read: {type(error).__name__}",
        request,
        variant,
        attempts=attempts,
    )


__all__ = [
    "CONTEXT",
    "MAX_REDIRECTS",
    "Emit",
    "Flow",
    "FlowSettings",
    "Observe",
    "RequestFlow",
    "Reserve",
    "Send",
    "Sleep",
    "Step",
    "arun",
    "failed_send",
    "network_error",
    "outcome_label",
    "run",
]
