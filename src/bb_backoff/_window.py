"""The account's rolling window, modelled: the pure core of :class:`~bb_backoff.AccountGate`.

Theory of operation
-------------------
Bitbucket counts an account's requests in a rolling hour.  The gate keeps one
model of that window per account and asks it, before every send, *when* the
send may go; after the answer, it tells the model what the server did.  The
model is a hypothesis, checked on every answer:

::

                       429 the model did not predict
                       (another tool spends the quota,
          +---------+   or the limit dropped)            +---------+
          |  MODEL  | ---------------------------------> |  PROBE  |
          |         | <--------------------------------- |         |
          +---------+       the probe gets through       +---------+
             |   ^                                          |
   errors in a row | the probe gets through       errors in a row
             v   |                                          v
          +---------+ <----------------------------------------
          | BREAKER |   (one probe at a time, exponentially spaced;
          +---------+    a probe that gets a 429 moves to PROBE)

MODEL
    The log holds the account's own sends in the window (reservations,
    possibly in the future).  With no limit known, every send goes at once
    and is logged (the oldest forgotten beyond :data:`MAX_LOGGED`).  The
    first 429 teaches the limit: the number of sends the server let through
    in its window.  Round trips race, so the sends made
    after the refused one, up to its answer, count as let through until
    they come back refused (see :meth:`WindowModel._learn`); no slot is
    booked on the count until they have had a round trip to answer.  The
    limit can also come
    from ``X-RateLimit-Limit`` (the server's word wins) or from the
    configuration: the account's total.  The first 429 before it teaches the
    account's share by the same count (another tool spends the rest), and
    the model goes on with it.  With a limit, a send is released when the oldest of the
    last ``limit`` sends leaves the window, plus ``margin`` seconds for the
    round trip (the server counts a request when it arrives, later than we
    logged it).  Reservations are handed out in order, so a request that has
    waited long is not overtaken by a fresh one (no capture effect).
    A limit counted before the model has watched a whole window (it started
    less than a window before the 429: a process restarted mid-window, a
    fallback model, another tool's burst) is *provisional*: a floor, since
    the server's window also held sends the model never saw.  Once the
    model has watched a whole window, while its own sends fill the window,
    one send goes beyond the limit as a check: refused (or a send of the
    full window refused while it is out or within a round trip after it got
    through: it overtook that send), the limit holds; let through, the
    limit was too low and is forgotten (the next 429, counted over a whole
    window, teaches the share).  A limit that holds,
    or was counted over a watched window, may still be a share another tool
    stops taking: it is checked again two windows on, then twice as late
    each time it holds (at most every :data:`RECHECK_DOUBLINGS` doublings).
    A send released at the window's edge and refused, when the sends just
    before the window make up the limit, shows a server window a little
    longer than the model's: the window is stretched, the limit stands
    (see :attr:`WindowModel.stretch`).
PROBE
    A 429 the model did not predict (under a learned share, or with a hint)
    means the model is wrong: someone else
    spends the quota, or the limit changed.  Instead of waiting on a wrong
    model, the gate probes: one request at a time, after a jittered
    exponential wait; the others wait without sending.  A probe that gets
    through ends probing, and the others follow under the model.  With more
    of the account's sends in the window than the share it counted over a
    whole window, the share grew (the limit rose again): it is forgotten,
    and the next 429 counts it.  Otherwise the estimate grows to what the
    window now holds, provisional: checked once the account's sends fill
    the window, and a window after each check that finds it holding.
BREAKER
    ``failure_threshold`` errors (5xx, 408, transport errors) in a row across
    the account open the breaker: one probe at a time, exponentially spaced,
    the others wait without spending their attempts.  The first probe that
    gets an answer closes it.

Server hints (``Retry-After``, ``X-RateLimit-Reset``) set a *hold*: no send
goes before it, in any mode.  ``X-RateLimit-NearLimit: true`` while the model
still sees plenty of room means others spend the quota too: the sends go
one at a time, a round trip apart (the margin; ``window / limit`` at most),
until it turns false, or until a 429 teaches the account's share (which
counts the others' sends): that 429 then finds one send on its way, not
every worker's.

Everything here is pure: time comes in as an argument, randomness as a
``draw`` in ``[0, 1)``.  :class:`WindowModel` is the reference
implementation; the Redis store runs the same transitions as a Lua script,
and a differential test holds the two together.
"""

from __future__ import annotations

import bisect
import math
from typing import Final, NamedTuple

import attrs

GO: Final = "go"
"""Send at ``delay`` seconds from now (0: at once); the send is logged."""
PROBE: Final = "probe"
"""Send at once as the one probe; the others wait for its answer."""
WAIT: Final = "wait"
"""Do not send: ask again in ``delay`` seconds."""

MODEL: Final = "model"
PROBING: Final = "probe"
BREAKER: Final = "breaker"

OK: Final = "ok"
"""The server answered (any status but 429 and the retryable errors)."""
RATE_LIMITED: Final = "rate_limited"
"""The server answered 429."""
ERROR: Final = "error"
"""5xx, 408 or a transport error."""
VOID: Final = "void"
"""The send never went: the request gave up or was cancelled while its
reservation waited.  The reservation is dropped (a probe's lease with it, so
the next request may probe); nothing is learned."""

# Why a grant makes the request wait; the client charges the wait to a budget.
WINDOW: Final = "window"
HOLD: Final = "hold"
# X-RateLimit-NearLimit: pace when the model still sees more than this share
# of the limit free (Bitbucket's own threshold is not documented; near the
# model's own limit, the model stops sends by itself).
NEAR_LIMIT_ROOM: Final = 0.2
RECHECK_DOUBLINGS: Final = 5
"""A learned limit that keeps holding is checked again at most every 2 ** this windows."""
LANE: Final = 64
"""The most sends a fast lane lets go between full decisions (:meth:`WindowModel.reserve_now`)."""
LANE_MARGIN_SLACK: Final = 1.0
"""Seconds of round trip a lane's room allows beyond twice the margin it opened
with: the client's margin moves with every answer, and the lane serves while
it stays within that (see :attr:`WindowModel.lane_margin`)."""
MAX_STRETCH: Final = 0.1
"""The most the model stretches its window, as a share of the configured one
(see :attr:`WindowModel.stretch`): six minutes of an hour."""
STRETCH_STEP: Final = 0.005
"""The least a stretch adds, as a share of the window (18 s of an hour); each
stretch at least doubles the last, so a few 429s find any window up to
:data:`MAX_STRETCH` longer."""
MAX_LOGGED: Final = 40_000
"""The most sends the log keeps while no limit is known: four times Bitbucket's
highest (a scaled limit of 10,000 an hour).  A server that lets more through in
one window has no limit worth counting at this rate; beyond it the oldest are
forgotten, so that memory stays bounded on a server with no limit at all, and a
limit counted later over the shorter log is a floor (see :attr:`WindowModel.since`)."""
# While a probe is out, the others look again after the round trip, this long at least.
_PROBE_POLL: Final = 0.05
# A wait for answers on their way shorter than this is no wait (a clock that
# rounds it away would have the request ask again forever).
_SETTLE_SLACK: Final = 0.001
# How far past an answer's time an entry is a reservation booked ahead.  Nearer,
# it may be a send made at once: its request read the clock after the answer's
# did and reserved first (threads), or its process's clock is a little ahead (a
# Redis store on the clients' clocks).
_BOOKED_AHEAD: Final = 0.1


@attrs.frozen(kw_only=True)
class WindowParams:
    """The gate's settings, as the model reads them (seconds and counts).

    Attributes:
        window: the rolling window.
        limit: the configured limit, or ``None`` to learn it.
        failure_threshold: errors in a row that open the breaker.
        probe_initial: the first probe wait.
        probe_max: the cap on a rate-limit probe wait.
        breaker_max: the cap on a breaker probe wait.
        probe_lease: how long a probe may stay unanswered before another
            request may probe (its process may have died).
        max_hold: the longest hold a hint sets for the whole account.
    """

    window: float = 3600.0
    limit: int | None = None
    failure_threshold: int = 5
    probe_initial: float = 1.0
    probe_max: float = 300.0
    breaker_max: float = 60.0
    probe_lease: float = 60.0
    max_hold: float = 3600.0


class Grant(NamedTuple):
    """The model's answer to "may I send?".

    A named tuple: one is made for every request, and a tuple is the
    cheapest object Python makes (the model builds them with
    :func:`tuple.__new__`, skipping even the constructor's frame).

    Attributes:
        kind: :data:`GO`, :data:`PROBE` or :data:`WAIT`.
        delay: seconds from now: when to send (GO) or to ask again (WAIT).
        reason: why the request waits: ``"window"``, ``"hold"``,
            ``"probe"`` or ``"breaker"``; ``""`` when it does not.  A PROBE
            says which mode it probes for: ``"probe"`` or ``"breaker"``, or
            ``"window"`` for the one send beyond a learned limit that checks it.
        generation: the model's generation when it answered; a waiting GO
            whose generation is no longer current is void.
        member: the log entry of the send (GO, PROBE), to report on.
        at: the entry's time.
    """

    kind: str
    delay: float
    reason: str
    generation: int
    member: object = None
    at: float = 0.0

    def __repr__(self) -> str:
        return (
            f"Grant({self.kind!r}, delay={self.delay!r}, reason={self.reason!r}, "
            f"generation={self.generation})"
        )


_new_tuple: Final = tuple.__new__


@attrs.frozen
class Observation:
    """What the server did with one send, as the model cares.

    Attributes:
        outcome: :data:`OK`, :data:`RATE_LIMITED` or :data:`ERROR`.
        sent: ``False`` when the request certainly never reached the server
            (its log entry is dropped: it spent no quota).
        hint: the wait a hint header asked for, in seconds.
        header_limit: ``X-RateLimit-Limit``, if sent.
        near: ``X-RateLimit-NearLimit``, if sent.
    """

    outcome: str
    sent: bool = True
    hint: float | None = None
    header_limit: int | None = None
    near: bool | None = None


@attrs.frozen
class Knowledge:
    """What a process learns about the shared model after each call.

    The client uses it to decide, without asking the store, whether an
    answer is worth reporting (only news is) and whether a waiting
    reservation is still valid.
    """

    generation: int = 0
    mode: str = MODEL
    failures: int = 0
    ceiling: int | None = None
    near: bool | None = None
    limit: int | None = None
    """The learned limit, for the events that report a change of mode."""


def probe_wait(failed: int, initial: float, cap: float, draw: float) -> float:
    """The wait before the next probe after ``failed`` failed probes: equal jitter.

    Uniform in ``[base / 2, base)`` with ``base = min(cap, initial * 2 **
    failed)``: never zero (a probe is a request), never above ``cap``.
    """
    try:
        base = min(cap, initial * 2.0**failed)
    except OverflowError:
        base = cap
    return base / 2 + draw * base / 2


def _time(entry: tuple[float, object]) -> float:
    return entry[0]


def _find(entries: list[tuple[float, object]], at: float, member: object) -> int:
    """The index of ``(at, member)`` in ``entries`` (sorted by time), or -1."""
    index = bisect.bisect_left(entries, at, key=_time)
    while index < len(entries) and entries[index][0] == at:
        if entries[index][1] == member:
            return index
        index += 1
    return -1


def _after(start: float, seconds: float) -> float:
    """``start + seconds``, rounded up so that ``result - start >= seconds`` holds exactly."""
    end = start + seconds
    while end - start < seconds:
        end = math.nextafter(end, math.inf)
    return end


class WindowModel:
    """One account's model: the log of its sends, the limit, the mode.

    Mutable, not thread-safe: the memory store holds a lock around every
    call.  Times are seconds on one clock (the store's).
    """

    __slots__ = (
        "ceiling",
        "checks_held",
        "counted_until",
        "errors",
        "failures",
        "generation",
        "hold_until",
        "lane",
        "lane_margin",
        "lane_oldest",
        "lane_params",
        "lane_span",
        "last_used",
        "lease_until",
        "limit",
        "log",
        "mode",
        "near",
        "outage_since",
        "pace",
        "passed_seen",
        "probe_at",
        "probe_failures",
        "since",
        "stretch",
        "verify_at",
    )

    def __init__(self) -> None:
        self.log: list[tuple[float, object]] = []
        """(time, member) of every send in the window, sorted."""
        self.limit: int | None = None
        """The learned share of the quota this account's sends can use."""
        self.ceiling: int | None = None
        """``X-RateLimit-Limit`` as last seen."""
        self.generation = 0
        self.mode = MODEL
        self.probe_at = 0.0
        self.lease_until = 0.0
        self.probe_failures = 0
        self.failures = 0
        self.outage_since = 0.0
        self.hold_until = 0.0
        self.pace = False
        self.near: bool | None = None
        """``X-RateLimit-NearLimit`` as last seen."""
        self.last_used = 0.0
        """When a memory store created this model or told it an answer (the store's
        time): with the newest log entry, what tells an idle model to drop."""
        self.counted_until = -math.inf
        """The newest send :attr:`limit` counted as let through, when a 429 set it by
        counting the log (see :meth:`_learn`): a 429 or an error answering a send
        logged at or before it takes one off."""
        self.passed_seen: float | None = None
        """When a check of the limit got through: the verdict (forget the limit)
        waits a round trip for the sends that were on their way before it (see
        :meth:`_ok`); ``None`` when no verdict waits."""
        self.since: float | None = None
        """The time of the first send the model logged: it has watched the account since.
        When the log grows beyond :data:`MAX_LOGGED` with no limit known, the time of
        the newest send it forgot: its log is whole only after that."""
        self.verify_at: float | None = None
        """When the model may send one beyond the learned :attr:`limit` to check
        it (see :meth:`_judge`): once it has watched a whole window while the
        limit is provisional (a floor), ever later while it holds; ``None``
        when there is nothing to check."""
        self.errors: list[tuple[float, object]] = []
        """(time, member) of the logged sends an error answered (a 5xx, a timeout
        after sending), sorted.  The server may not have counted them (an outage's
        proxy answers before its rate limiter), so what it let through is
        counted without them, while pacing still counts them as spent."""
        self.checks_held = 0
        """How many checks in a row found the learned limit holding (0 while it
        is provisional): the next check waits twice as many windows.  -1 for a
        limit a probe set after the model was found wrong: the limit moves
        (or another tool's spending does), and the check that finds it holding
        waits one window, not two (leaving 0: the probe's rule in :meth:`_ok`
        then still takes the limit for a floor, the cautious side, until a
        second check holds it)."""
        self.lane = 0
        """How many more sends :meth:`reserve_now` may let go at once without a
        full decision: the room the last full decision left (at most
        :data:`LANE`), for the settings it was made with (:attr:`lane_params`).
        Any answer closes it (0)."""
        self.lane_params: WindowParams | None = None
        self.lane_oldest = -math.inf
        """The oldest entry of the log and the errors when the lane opened: once it
        leaves the window, :meth:`reserve` would forget entries, so the lane does not serve."""
        self.lane_margin = 0.0
        """The largest margin the lane's room holds for: the room counts the sends
        in the window widened by it, so a send with a margin up to it goes at once
        on a full decision too (a larger margin counts more sends as in the window)."""
        self.lane_span = 0.0
        """How far back :meth:`reserve` kept entries when the lane opened (the window,
        stretched, and what it keeps beyond): the lane's horizon is ``now - lane_span - margin``."""
        self.stretch = 0.0
        """Seconds the server's window was found to outlast the configured one.

        A 429 on a send the model released as the oldest of ``cap`` sends left
        its window, with fewer than ``cap`` let through in the window, has two
        explanations: the limit dropped (or another tool spends a share), or
        the server's window is longer than ours (its clock counts from arrival,
        or it is not quite an hour).  When the sends the model kept from just
        before its window (up to :data:`MAX_STRETCH` of it) make up the count,
        the longer window explains the 429: the window is stretched to cover
        them (at least doubling, at most :data:`MAX_STRETCH` of the window),
        and the limit stands.  When they do not, the count over the window
        in force is the limit, as before, and the stretch is dropped.  A
        limit that dropped at the edge is met as a few stretches first (its
        first refusal looks the same); a window too short, unexplained,
        would cost a 429 at every window's edge and a limit learned lower
        each time."""

    def __repr__(self) -> str:
        return (
            f"WindowModel(mode={self.mode!r}, limit={self.limit}, ceiling={self.ceiling}, "
            f"logged={len(self.log)}, generation={self.generation}, stretch={self.stretch})"
        )

    def knowledge(self) -> Knowledge:
        """What a process may cache about this model."""
        return Knowledge(
            self.generation, self.mode, self.failures, self.ceiling, self.near, self.limit
        )

    def cap(self, params: WindowParams) -> int | None:
        """The most sends the model lets into one window, or ``None`` (not known yet)."""
        if self.limit is not None:
            return self.limit
        return self.ceiling if self.ceiling is not None else params.limit

    def _remove(self, member: object, at: float) -> bool:
        index = _find(self.log, at, member)
        if index < 0:
            return False
        del self.log[index]
        return True

    def _let_through(self, low: float, high: float) -> int:
        """Sends with ``low < time <= high``, less those an error answered."""
        errors = self.errors
        failed = bisect.bisect_right(errors, high, key=_time) - bisect.bisect_right(
            errors, low, key=_time
        )
        return self._count(low, high) - failed

    def _count(self, low: float, high: float) -> int:
        """Entries with ``low < time <= high``."""
        log = self.log
        return bisect.bisect_right(log, high, key=_time) - bisect.bisect_right(log, low, key=_time)

    def reserve(  # noqa: PLR0912, PLR0915 (the success path, inlined: one call per request)
        self,
        now: float,
        params: WindowParams,
        member: object,
        margin: float = 0.0,
        cancel: tuple[object, float] | None = None,
    ) -> Grant:
        """When may the send ``member`` go?

        Args:
            now: the current time.
            params: the gate's settings.
            member: a unique id for the send's log entry.
            margin: seconds allowed for the round trip when a slot frees.
            cancel: ``(member, at)`` of a void reservation to drop first.

        Returns:
            The grant; for GO and PROBE, the send is logged at ``now +
            delay``.
        """
        self.lane = 0
        if cancel is not None and self._remove(*cancel):
            self._uncount(cancel[1])  # never sent: if counted as let through, it was not
        log = self.log
        window = params.window + self.stretch
        # self.cap(params), inlined: every request passes here.
        limit, ceiling = self.limit, self.ceiling
        cap = limit if limit is not None else ceiling if ceiling is not None else params.limit
        # With a limit, the sends just before the window are kept too: a 429
        # at the window's edge may show that the server's window is longer.
        span = window if cap is None else window + params.window * MAX_STRETCH
        horizon = now - span - margin
        if log and log[0][0] <= horizon:
            del log[: bisect.bisect_right(log, horizon, key=_time)]
        errors = self.errors
        if errors and errors[0][0] <= horizon:
            del errors[: bisect.bisect_right(errors, horizon, key=_time)]
        if cap is None and len(log) >= MAX_LOGGED:
            self._forget_oldest(len(log) - MAX_LOGGED + 1)  # room for this send

        if self.mode != MODEL:
            return self._reserve_probe(now, params, member, margin)

        settling = self._settling(now, margin)
        if settling:
            return Grant(WAIT, settling, WINDOW, self.generation)
        at = now
        reason = ""
        if self.hold_until > at:
            at, reason = self.hold_until, HOLD
        # self.cap(params) again (settling may forget the limit) and, below,
        # self._log, inlined: every request passes here.
        limit, ceiling = self.limit, self.ceiling
        cap = limit if limit is not None else ceiling if ceiling is not None else params.limit
        if cap is not None and log:
            count = len(log)
            if count >= cap:
                free = _after(log[count - cap][0], window + margin)
                if free > at:
                    at, reason = free, WINDOW
            if self.pace:
                # One at a time near the server's limit: the 429 to come finds
                # one send on its way.  (Spaced at the total's sustainable
                # rate instead, window / cap apart, they only put that 429
                # off, minutes into each window, while another tool spends
                # the rest: up to 1.33 x the bound.)  Never further apart than
                # that rate, though: a round trip longer than it (a slow
                # endpoint, a large limit) would pace below it, and a share
                # above the pace would never send the 429 that ends it.
                gap = window / cap
                paced = log[-1][0] + (margin if margin < gap else gap)
                if paced > at:
                    at, reason = paced, WINDOW
            if reason == WINDOW:
                check = self._verify_wait(now, params, cap, margin)
                if check:
                    return Grant(WAIT, check, WINDOW, self.generation)
                if check is not None:
                    # One send beyond a learned limit, into a window our own
                    # sends fill: refused, the limit holds; let through, it was low.
                    self.lease_until = now + params.probe_lease
                    self._log(now, member)
                    return Grant(PROBE, 0.0, WINDOW, self.generation, member, now)
        if log and at < log[-1][0]:
            bisect.insort(log, (at, member), key=_time)
        else:
            log.append((at, member))
        since = self.since
        if since is None or at < since:
            self.since = at
        if (
            at == now
            and not self.pace
            and self.counted_until == -math.inf
            and self.passed_seen is None
        ):
            # What this decision would decide again, as long as nothing is
            # answered: the next sends go at once while the log has room.
            # (Not on a limit counted at a 429, nor while a check's verdict
            # waits: whether they must settle first depends on the margin,
            # which may grow meanwhile.  The pace is the limit's then anyway.)
            if cap is None:
                room = LANE
                span = window  # (a limit forgotten while settling keeps nothing more)
            else:  # the sends in the window, not those kept from before it
                reach = margin + margin + LANE_MARGIN_SLACK
                inside = len(log) - bisect.bisect_right(log, now - window - reach, key=_time)
                room = min(LANE, cap - inside)
            if room > 0:
                self.lane, self.lane_params, self.lane_span = room, params, span
                self.lane_margin = math.inf if cap is None else reach
                # While it stays within the window, reserve forgets nothing.
                oldest = log[0][0]
                self.lane_oldest = oldest if not errors or oldest < errors[0][0] else errors[0][0]
        grant: Grant = _new_tuple(Grant, (GO, at - now, reason, self.generation, member, at))
        return grant

    def _settling(self, now: float, margin: float) -> float:
        """How long sends on their way still have to answer before a slot is booked (or 0).

        The limit was just counted, sends still on their way included, or a
        check got through: nothing is booked on the limit before they have
        had a round trip to answer (a refused one takes one off the count,
        or makes the check's verdict "holds").  A verdict that waited long
        enough is passed here: the limit was low, and is forgotten.
        """
        settled = self.counted_until + margin
        if self.passed_seen is not None:
            settled = self.passed_seen + margin
            if settled - now <= _SETTLE_SLACK:
                self._forget()
        wait = settled - now
        return wait if wait > _SETTLE_SLACK else 0.0

    def reserve_now(
        self, now: float, params: WindowParams, member: object, margin: float = 0.0
    ) -> Grant | None:
        """The success path's reservation: the GO at once :meth:`reserve` would give, or ``None``.

        A full decision that lets a send go at once, in the MODEL mode with
        no hold, no pacing, no limit counted at a 429 and no check's verdict
        waiting, opens a *lane*: the room it left in the
        window under the cap it used.  Until an answer is observed (the only
        thing that changes the mode, the limit, a hold or the pacing) or the
        room is spent, the next sends go at once too: the log only grows
        with them.  This takes one of them with no other check.  It returns
        ``None`` (ask :meth:`reserve`) when the lane is closed, was opened
        under other settings, the margin grew beyond what its room allows
        (:attr:`lane_margin`), a reservation waits in the future (a new send
        must not overtake it), or :meth:`reserve` would first forget sends
        that left the window.  Whenever it answers, it answers exactly as
        :meth:`reserve` would, and leaves the same state (a differential
        property test holds the two together).
        """
        if (
            self.lane
            and self.lane_params is params
            and margin <= self.lane_margin
            and self.lane_oldest > now - self.lane_span - margin  # reserve's horizon
        ):
            log = self.log
            if log[-1][0] <= now:
                self.lane -= 1
                log.append((now, member))
                grant: Grant = _new_tuple(Grant, (GO, 0.0, "", self.generation, member, now))
                return grant
        return None

    def _forget_oldest(self, excess: int) -> None:
        """Forget the ``excess`` oldest sends (and any sent at the same time as the last)."""
        cut = self.log[excess - 1][0]
        del self.log[: bisect.bisect_right(self.log, cut, key=_time)]
        del self.errors[: bisect.bisect_right(self.errors, cut, key=_time)]
        self.since = cut

    def _log(self, at: float, member: object) -> None:
        log = self.log
        if log and at < log[-1][0]:
            bisect.insort(log, (at, member), key=_time)
        else:
            log.append((at, member))
        if self.since is None or at < self.since:
            self.since = at

    def _verify_wait(
        self, now: float, params: WindowParams, cap: int, margin: float
    ) -> float | None:
        """Whether a send held for the window goes as the learned limit's check: how soon.

        Only once the model has watched a whole window (older sends it never
        saw have left the server's window too), one check at a time, never
        during a hold, and only while the sends already made fill the window
        up to now: reservations still to come leave room the server would
        grant, and a check let through then would prove nothing.  A limit the
        server stated or the user configured holds for the check too: while
        reservations already booked keep the log at that limit, the check
        waits (the safe side: a few slots a window at worst).

        Returns:
            ``0.0``: the check goes now.  More: the check is due, but the
            window fills only with sends booked ahead; ask again once they
            have gone, :data:`_PROBE_POLL` at least (booked at the next
            window's turn instead, every request would sleep past the moment
            the check could go, and no request would be left to make it).
            ``None``: no check now.
        """
        verify_at = self.verify_at
        if not (
            verify_at is not None
            and now >= verify_at
            and self.passed_seen is None
            and self.lease_until <= now
            and self.hold_until <= now
        ):
            return None
        window = params.window + self.stretch
        ceiling = self.ceiling if self.ceiling is not None else params.limit
        log = self.log
        count = len(log)
        if not (
            ceiling is None
            or count < ceiling
            or _after(log[count - ceiling][0], window + margin) <= now
        ):
            return None
        # (Counted from a round trip in: a send at the window's trailing
        # edge may have reached the server early enough to leave its window.)
        if self._count(now - window + margin, now) >= cap:
            return 0.0
        booked = log[-1][0] - now
        # (Asked again no sooner than a probe's poll: each asking is a store
        # call, a Redis round trip for a shared gate.)
        return max(booked, _PROBE_POLL) if booked > _SETTLE_SLACK else None

    def _reserve_probe(
        self, now: float, params: WindowParams, member: object, margin: float
    ) -> Grant:
        """PROBE and BREAKER: one probe at a time, after the probe wait and any hold."""
        start = max(self.probe_at, self.hold_until)
        reason = BREAKER if self.mode == BREAKER else PROBING
        ceiling = self.ceiling if self.ceiling is not None else params.limit
        if ceiling is not None and len(self.log) >= ceiling:
            # A limit the server stated or the user configured holds for probes too.
            start = max(
                start,
                _after(self.log[len(self.log) - ceiling][0], params.window + self.stretch + margin),
            )
        if self.lease_until > now:
            # A probe is out: look again once it should have its answer.
            again = min(self.lease_until - now, max(margin, _PROBE_POLL))
            return Grant(WAIT, again, reason, self.generation)
        if now < start:
            why = HOLD if start == self.hold_until else reason
            return Grant(WAIT, start - now, why, self.generation)
        self.lease_until = now + params.probe_lease
        self._log(now, member)
        return Grant(PROBE, 0.0, reason, self.generation, member=member, at=now)

    def observe(
        self,
        now: float,
        params: WindowParams,
        grant: Grant,
        observation: Observation,
        *,
        draw: float = 0.5,
    ) -> Knowledge:
        """Learn from what the server did with the send ``grant`` let go.

        Args:
            now: the current time.
            params: the gate's settings.
            grant: the GO or PROBE grant the send went out on.
            observation: the server's answer.
            draw: a uniform number in ``[0, 1)`` for the probe jitter.

        Returns:
            What the process may cache.
        """
        self.lane = 0
        outcome = observation.outcome
        if observation.header_limit is not None and observation.header_limit != self.ceiling:
            # The server says what the limit is: believe it over any estimate.
            self.ceiling = max(1, observation.header_limit)
            self.limit = None
            self.verify_at = self.passed_seen = None
            self.counted_until = -math.inf
            self.generation += 1
        if outcome == RATE_LIMITED:
            self._rate_limited(now, params, grant, observation.hint, draw)
        elif outcome == ERROR:
            self._error(now, params, grant, sent=observation.sent, draw=draw)
        elif outcome == VOID:
            # The entry goes; the reservations booked after it keep theirs.
            # (Moving them up means telling every process that holds one:
            # one that never heard would send at its old time, no longer
            # counted.  Asking them again while their old entries stay
            # queues each behind the others' and moves it back.)
            if self._remove(grant.member, grant.at):
                self._uncount(grant.at)
            if grant.kind == PROBE:
                self.lease_until = 0.0
        else:
            self._ok(now, params, grant)
        if observation.near is not None and outcome != ERROR:
            self._near(now, params, near=observation.near)
        return self.knowledge()

    def _rate_limited(
        self, now: float, params: WindowParams, grant: Grant, hint: float | None, draw: float
    ) -> None:
        self.failures = 0  # the server is up: a 429 ends an outage
        self._remove(grant.member, grant.at)
        # Counted as let through, but refused (even when a late answer finds
        # its entry already gone from the log: it was there when counted).
        self._uncount(grant.at)
        if hint is not None:
            self.hold_until = max(self.hold_until, now + min(hint, params.max_hold))
        if grant.reason == WINDOW and grant.kind == PROBE:
            if self._verifying(grant):
                self._held(now, params)
            return
        if grant.kind == PROBE:
            if self.mode == BREAKER:
                self.mode = PROBING
                self.probe_failures = 0
            if self.cap(params) is None:
                self._learn(grant.at, params, now)
            self.probe_failures += 1
            self.lease_until = 0.0
            self.probe_at = now + probe_wait(
                self.probe_failures, params.probe_initial, params.probe_max, draw
            )
            return
        if self.mode != MODEL or (
            grant.generation != self.generation
            # (A check's pending verdict voided the generation the sends on
            # their way were made on: their refusals are what it waits for.)
            and (self.passed_seen is None or grant.generation != self.generation - 1)
        ):
            return  # sent on an older model: this 429 is already explained
        verify_at = self.verify_at
        if self.passed_seen is not None or (
            verify_at is not None and verify_at <= now < self.lease_until
        ):
            # A check is out or got through, and a send made on the same
            # model is refused: the check took the slot it found taken (it
            # overtook sends on their way to a full window).  The limit
            # holds, as if the check had been refused.
            self.passed_seen = None
            self.lease_until = 0.0
            self._held(now, params)
            return
        stretched = None
        if hint is None and grant.reason == WINDOW:
            stretched = self._stretched(grant.at, params)
            if stretched:
                # The server's window outlasts the model's: the limit stands,
                # and the reservations booked on the shorter window are void.
                self.generation += 1
                return
        self.generation += 1
        # The reservations booked ahead on the model this 429 proves wrong
        # (one at a time near the server's limit, at a turn of the total)
        # are void: their requests ask again.  Their entries go now: kept,
        # each request asking again would queue behind the others' void
        # entries, a whole window later when they outnumber the share.
        # (Only those more than _BOOKED_AHEAD ahead: a send that went at
        # once, logged a little past this answer's time, is on its way.  A
        # request in another process that has not heard of the new
        # generation sends at its old time, uncounted: a 429 at worst, where
        # the model was wrong anyway.)
        log = self.log
        del log[bisect.bisect_right(log, now + _BOOKED_AHEAD, key=_time) :]
        # Discovery: no share of the quota learned yet, and the model logged
        # some of what the server let through in the window up to this send.
        # The count is the model now, as when no limit was known at all: a
        # limit the server stated or the user configured that this 429
        # undercuts is the account's total, and another tool spends the rest
        # (or the limit dropped).  Its slots free as its own sends leave the
        # window: waiting for them is no wait on a wrong model, and probing
        # instead would only add a probe's wait to each window's turn.
        unlearned = self.limit is None
        learned = self._learn(grant.at, params, now)
        if stretched is False:
            # Counted over the window in force (the refused send went at its
            # stretched edge: over the configured one, the count would miss
            # the sends it was released after), then the stretch goes.
            self.stretch = 0.0
        if learned and unlearned and hint is None:
            return
        # The model said there was room and the server disagreed; or the
        # server says when to come back, and its word wins over the model's
        # window: one probe goes when the hint has passed.
        self.mode = PROBING
        self.probe_failures = 0
        self.lease_until = 0.0
        self.probe_at = now + probe_wait(0, params.probe_initial, params.probe_max, draw)

    def _stretched(self, at: float, params: WindowParams) -> bool | None:
        """Whether a longer window explains the 429 of the send made at ``at``; stretch it if so.

        Returns ``True`` when it does (stretched), ``False`` when the sends
        before the window cannot explain it (the stretch is no explanation:
        the caller drops it once it has counted the limit), ``None`` when
        there is nothing to explain (no limit, or the window held it).

        With a limit known (``cap``), the server refused a send while the
        model's window held fewer than ``cap`` sends let through.  If the
        model's own sends from just before its window (no further back than
        :data:`MAX_STRETCH` of it) make up the difference, the server still
        counted them: its window is longer (see :attr:`stretch`).  The
        stretch covers them, with room to spare, and at least doubles.
        """
        cap = self.cap(params)
        if cap is None:
            return None
        low = at - (params.window + self.stretch)
        need = cap - self._let_through(low, at)
        if need <= 0:
            return None  # the window held the limit: no edge to explain
        reach = at - params.window * (1.0 + MAX_STRETCH)
        log = self.log
        index = bisect.bisect_right(log, low, key=_time)
        when = low
        while need > 0:
            index -= 1
            if index < 0 or log[index][0] <= reach:
                # No window up to the longest stretch explains the 429: the
                # stretch was no explanation either (the limit dropped, or
                # another tool spends a share); the count will tell.
                return False
            when, member = log[index]
            if not self._errored(when, member):
                need -= 1
        # The server still counted the send made at ``when``: its window
        # is longer than ``at - when``.
        extra = at - when - params.window
        most = params.window * MAX_STRETCH
        if extra >= most:
            return False
        stretch = max(2.0 * self.stretch, params.window * STRETCH_STEP, extra * 1.25)
        self.stretch = min(stretch, most)
        return True

    def _errored(self, at: float, member: object) -> bool:
        """Whether an error answered the send logged at ``at`` as ``member``."""
        return _find(self.errors, at, member) >= 0

    def _held(self, now: float, params: WindowParams) -> None:
        """A check found the window full at the limit: it holds.

        Check it again later (another tool may stop spending), each time
        twice as late.
        """
        self.checks_held += 1
        self.verify_at = now + params.window * 2.0 ** min(self.checks_held, RECHECK_DOUBLINGS)

    def _learn(self, at: float, params: WindowParams, now: float) -> bool:
        """Learn the limit from the 429 of the send made at ``at``, answered at ``now``.

        The limit is what the server let through in the window up to that
        send, when the model logged any of it.  Sends made after it, up to
        ``now``, were on their way: with jittered round trips, some
        overtook it at the server and were let through in that very window
        (some may even have been answered already).  So they are counted as
        let through too, and each that comes back refused (or failed) takes
        one off (see :meth:`_rate_limited`): once they have all answered, the
        limit is what the server let through, however they raced.  Only up
        to when the first counted send leaves the window: a send made after
        that may have taken the slot it freed.

        Returns:
            Whether a limit was learned (the model logged some of the window).
        """
        window = params.window + self.stretch
        low = at - window
        if self._let_through(low, at) <= 0:
            return False
        log = self.log
        first = log[bisect.bisect_right(log, low, key=_time)][0]
        until = max(at, min(first + window, now))
        count = self._let_through(low, until)
        # A share is never more than the account's total (a count over a
        # stretched window may find more than the configured window holds).
        stated = self.ceiling if self.ceiling is not None else params.limit
        self.limit = count if stated is None or count < stated else stated
        self.counted_until = until
        # A count over a window the model did not watch from its start is a
        # floor: sends it never saw (a previous run's, another tool's) may
        # have filled the rest.
        self._judge(params, floor=self.since is None or low < self.since, at=at)
        return True

    def _uncount(self, at: float) -> None:
        """The send logged at ``at`` was not let through: if the limit counted it, take it off."""
        if at <= self.counted_until and self.limit is not None and self.limit > 1:
            self.limit -= 1

    def _judge(self, params: WindowParams, *, floor: bool, at: float) -> None:
        """Schedule the check of :attr:`limit`, learned at ``at``.

        A ``floor`` (counted over less than a watched window) is provisional:
        checked once the model has watched a window.  A limit counted over a
        watched window may still be a share (another tool spending the
        rest): checked two windows later, then ever later while it holds
        (:data:`RECHECK_DOUBLINGS`).  A stated or configured limit at or
        below it leaves nothing to check.
        """
        since, limit = self.since, self.limit
        ceiling = self.ceiling if self.ceiling is not None else params.limit
        if since is not None and limit is not None and (ceiling is None or limit < ceiling):
            if floor:
                self.checks_held = 0
                self.verify_at = since + params.window
            else:
                self.checks_held = 1
                self.verify_at = at + 2 * params.window
        else:
            self.checks_held = 0
            self.verify_at = None

    def _verifying(self, grant: Grant) -> bool:
        """Whether ``grant`` is the check of the learned limit the model still holds.

        It frees the lease when it is: the next check may go.
        """
        verify_at = self.verify_at
        if (
            self.mode != MODEL
            or grant.generation != self.generation
            or verify_at is None
            or grant.at < verify_at  # a check already judged (a later one is due)
        ):
            return False
        self.lease_until = 0.0
        return True

    def _error(
        self, now: float, params: WindowParams, grant: Grant, *, sent: bool, draw: float
    ) -> None:
        if not sent:
            if self._remove(grant.member, grant.at):
                self._uncount(grant.at)
        elif not self._errored(grant.at, grant.member):  # one mark per send
            bisect.insort(self.errors, (grant.at, grant.member), key=_time)
            self._uncount(grant.at)
        self.failures += 1
        # The mode's own probe; a learned limit's check met a fault: no
        # news about the limit, the next check may go.
        probe = grant.kind == PROBE
        if probe and grant.reason == WINDOW:
            probe = False
            self._verifying(grant)
        if self.mode == BREAKER:
            if probe:
                self.probe_failures += 1
                self.lease_until = 0.0
                self.probe_at = now + probe_wait(
                    self.probe_failures, params.probe_initial, params.breaker_max, draw
                )
            return
        if self.failures >= params.failure_threshold:
            self.mode = BREAKER
            self.passed_seen = None  # a check's pending verdict is no news after an outage
            self.generation += 1
            self.outage_since = now
            self.probe_failures = 0
            self.lease_until = 0.0
            self.probe_at = now + probe_wait(0, params.probe_initial, params.breaker_max, draw)
        elif probe:
            # A rate-limit probe met a fault: no news about the quota; let
            # the next request probe.
            self.lease_until = 0.0

    def _ok(self, now: float, params: WindowParams, grant: Grant) -> None:
        self.failures = 0
        if grant.reason == WINDOW and grant.kind == PROBE:
            limit = self.limit
            if self._verifying(grant) and limit is not None:
                low = grant.at - (params.window + self.stretch)
                if self._let_through(low, grant.at) > limit:
                    # More of our sends than the limit in one window got through:
                    # the limit was a floor, unless the check overtook sends still
                    # on their way.  The verdict waits a round trip for them
                    # (reserve passes it): a refused one means the limit holds.
                    # The reservations booked at the window's turn are void: their
                    # requests ask again, and pass the verdict (nobody else may
                    # ask before their turn comes, an hour on).
                    self.passed_seen = now
                    self.generation += 1
                else:
                    self._uncounted_error(low, grant.at)
            return
        if grant.kind != PROBE or self.mode == MODEL:
            return
        self.probe_failures = 0
        self.lease_until = 0.0
        if self.mode == PROBING:
            ceiling = self.ceiling if self.ceiling is not None else params.limit
            if self.limit is None and ceiling is None:
                # Nothing tells the model the account's share yet (the window
                # was full of other sends when the first 429 came): the next
                # request probes at once, so the account follows one send at
                # a time while sends get through; the first refused probe
                # teaches the share.
                self.probe_at = now
                return
            # The server let one more through: the window holds at least this much.
            held = self._let_through(now - (params.window + self.stretch), now)
            limit = self.limit
            counted = self.verify_at is None or self.checks_held > 0  # not a floor
            if (
                limit is not None
                and counted
                and held > limit
                and (ceiling is None or limit < ceiling)
            ):
                # More of the account's sends got through in one window than
                # the share it counted over a whole window: the share grew
                # (the limit rose again, another tool stopped).  Forgotten,
                # as a check let through would: the sends go at once, and the
                # next 429 counts it.  (A floor grows as the sends it never
                # saw leave the window: more getting through is no news.)
                self._forget()
            else:
                # At least the probe itself fits, even when its answer came so
                # late that its send has left the window: a limit is never 0.
                # The share was wrong once (the model probed), and the limit
                # may change again ("possibly dynamically", Bitbucket says),
                # or the other tool's spending: the estimate is provisional,
                # checked as soon as the account's sends fill the window, and
                # again a window after a check finds it holding.
                estimate = max(limit or 0, held, 1)
                self.limit = min(estimate, ceiling) if ceiling is not None else estimate
                self.counted_until = -math.inf
                self._judge(params, floor=True, at=now)
                if self.verify_at is not None:
                    self.checks_held = -1
        self.mode = MODEL
        self.generation += 1

    def _uncounted_error(self, low: float, high: float) -> None:
        """A check let through into a window full only with sends an error answered.

        The server did not count one of them (an outage's proxy answers
        before its rate limiter): the check took the slot it seemed to hold.
        The oldest such send is forgotten, and the reservations booked on
        its leaving the window are void (a new generation): they would go
        into room the check has taken, a 429 each a window later.  The next
        check may go at once, so the checks use that room one at a time until
        the sends let through fill the window, and the check after them
        proves something.
        """
        errors = self.errors
        index = bisect.bisect_right(errors, low, key=_time)
        if index < len(errors) and errors[index][0] <= high:
            at, member = errors.pop(index)
            self._remove(member, at)
            self.generation += 1

    def _forget(self) -> None:
        """Forget a learned limit found too low: sends go at once again.

        The next 429 counts a whole watched window.
        """
        self.limit = None
        self.verify_at = None
        self.passed_seen = None
        self.checks_held = 0
        self.counted_until = -math.inf
        self.generation += 1

    def _near(self, now: float, params: WindowParams, *, near: bool) -> None:
        self.near = near
        if not near or self.limit is not None:
            # A share learned from a 429 already counts the others' sends:
            # pacing on top would only spread the account's turn at each
            # window over an hour (its slots free when they free).
            self.pace = False
            return
        cap = self.cap(params)
        # Near the model's own limit the model stops sends by itself; near
        # the server's while the model sees room means others spend it too.
        inside = self._count(now - (params.window + self.stretch), math.inf)
        self.pace = cap is not None and inside < cap * (1 - NEAR_LIMIT_ROOM)
