"""One gate per account: every request of every client on one credential asks it first.

:class:`AccountGate` is the configuration; the state lives in a
:class:`GateStore`: in memory for one process (the default, shared by every
client in the process that uses the same credential, API and clock), or in
Redis for a fleet (:class:`~bb_backoff.RedisStore`).  The rules the
state follows are in :mod:`._window`; a client holds a :class:`GateHandle`,
its view of one account in one store.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import operator
import random
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Final, Protocol, runtime_checkable

import attrs
import httpx

from ._auth import BasicAuth, BearerToken, OAuth2
from ._exceptions import BitbucketError, short_repr
from ._policy import positive_int
from ._redis_clients import is_redis_client, is_redis_url
from ._timing import MAX_WAIT, MIN_WAIT, duration, to_seconds
from ._timing import limit as unbounded_duration
from ._window import (
    ERROR,
    GO,
    OK,
    PROBE,
    RATE_LIMITED,
    Grant,
    Knowledge,
    Observation,
    WindowModel,
    WindowParams,
)

logger: Final = logging.getLogger("bb_backoff")

# The round trip allowed when a slot frees, before any answer was timed
# (seconds), and the most any measurement may set it to.
_INITIAL_MARGIN: Final = 0.5
_MAX_MARGIN: Final = 30.0
# Sweep idle accounts out of a memory store every this many new accounts (only
# new accounts grow it; a reservation of a known one does no bookkeeping).
_SWEEP_EVERY: Final = 64


@runtime_checkable
class GateStore(Protocol):
    """Where an account's window model lives; every call is one atomic step.

    The sync methods serve :class:`~bb_backoff.BitbucketClient`, the async
    ones :class:`~bb_backoff.AsyncBitbucketClient`.  A store never raises
    for its own trouble (a Redis outage, say): it falls back to local state.
    """

    def reserve(
        self,
        key: str,
        *,
        now: float,
        params: WindowParams,
        member: object,
        margin: float,
        cancel: Grant | None,
    ) -> Grant:
        """Ask when the send ``member`` may go (see :meth:`WindowModel.reserve`)."""
        ...  # pragma: no cover

    def observe(
        self,
        key: str,
        *,
        now: float,
        params: WindowParams,
        grant: Grant,
        observation: Observation,
        draw: float,
    ) -> Knowledge:
        """Tell the model what the server did (see :meth:`WindowModel.observe`)."""
        ...  # pragma: no cover

    async def areserve(
        self,
        key: str,
        *,
        now: float,
        params: WindowParams,
        member: object,
        margin: float,
        cancel: Grant | None,
    ) -> Grant:
        """:meth:`reserve` for async clients."""
        ...  # pragma: no cover

    async def aobserve(
        self,
        key: str,
        *,
        now: float,
        params: WindowParams,
        grant: Grant,
        observation: Observation,
        draw: float,
    ) -> Knowledge:
        """:meth:`observe` for async clients."""
        ...  # pragma: no cover

    def knowledge(self, key: str) -> Knowledge | WindowModel:
        """What this process knows of the account's model, without asking anyone."""
        ...  # pragma: no cover


class MemoryStore:
    """Window models in this process's memory, one per account key.

    Thread-safe.  Accounts idle for two windows (the longest window of the
    gates using the store) are dropped as new accounts arrive, looked at
    every 64 new ones (their log has expired; a learned limit is learned
    again).  ``AccountGate()`` with no
    store uses one memory store per clock, shared by the whole process.
    """

    def __init__(self) -> None:
        self._models: dict[str, WindowModel] = {}
        self._lock = threading.Lock()
        self._created = 0
        self._longest = 0.0
        """The longest window of the gates using this store: idleness is judged by it."""

    def __repr__(self) -> str:
        return f"MemoryStore(accounts={len(self._models)})"

    def _model(self, key: str, now: float, window: float) -> WindowModel:
        model = self._models.get(key)
        self._longest = max(self._longest, window)
        if model is None:
            model = self._models[key] = WindowModel()
            self._created += 1
            if self._created % _SWEEP_EVERY == 0:
                self._sweep(now - 2 * self._longest, keep=key)
        model.last_used = now
        return model

    def _sweep(self, horizon: float, *, keep: str) -> None:
        """Drop the accounts neither told anything nor sending since ``horizon``."""
        idle = [
            key
            for key, model in self._models.items()
            if model.last_used < horizon and (not model.log or model.log[-1][0] < horizon)
        ]
        for key in idle:
            if key != keep:
                dropped = self._models.pop(key)
                # A handle may still hold it: close its lane (the next send
                # finds the account's new model) and let its entries go, all
                # older than the window anyway.
                dropped.lane = 0
                dropped.log.clear()
                dropped.errors.clear()

    def reserve(  # noqa: PLR0917 (positional for the handle: every request passes here)
        self,
        key: str,
        now: float,
        params: WindowParams,
        member: object,
        margin: float,
        cancel: Grant | None,
    ) -> Grant:
        """Ask when the send ``member`` may go.

        Unlike the protocol's, the arguments may be given by position: the
        handle does, on the success path.
        """
        lock = self._lock
        lock.acquire()
        try:
            model = self._models.get(key)
            if model is None:
                model = self._model(key, now, params.window)
            return model.reserve(
                now, params, member, margin, None if cancel is None else (cancel.member, cancel.at)
            )
        finally:
            lock.release()

    def observe(
        self,
        key: str,
        *,
        now: float,
        params: WindowParams,
        grant: Grant,
        observation: Observation,
        draw: float,
    ) -> Knowledge:
        """Tell the model what the server did."""
        with self._lock:
            return self._model(key, now, params.window).observe(
                now, params, grant, observation, draw=draw
            )

    async def areserve(
        self,
        key: str,
        *,
        now: float,
        params: WindowParams,
        member: object,
        margin: float,
        cancel: Grant | None,
    ) -> Grant:
        """:meth:`reserve`; memory needs no waiting."""
        return self.reserve(key, now, params, member, margin, cancel)

    async def aobserve(
        self,
        key: str,
        *,
        now: float,
        params: WindowParams,
        grant: Grant,
        observation: Observation,
        draw: float,
    ) -> Knowledge:
        """:meth:`observe`; memory needs no waiting."""
        return self.observe(
            key, now=now, params=params, grant=grant, observation=observation, draw=draw
        )

    def knowledge(self, key: str) -> Knowledge | WindowModel:
        """The account's model as it is now (the model itself: it has the same fields)."""
        model = self._models.get(key)
        return _NOTHING_KNOWN if model is None else model

    def model(self, key: str) -> WindowModel | None:
        """The account's model itself, for inspection in tests (do not change it)."""
        return self._models.get(key)


_NOTHING_KNOWN: Final = Knowledge()

# One memory store per clock: clients on different clocks (the virtual
# clocks of different tests, say) must not share a window.
_DEFAULT_STORE: Final = MemoryStore()
_STORES_BY_CLOCK: Final[weakref.WeakKeyDictionary[object, MemoryStore]] = (
    weakref.WeakKeyDictionary()
)
_STORES_LOCK: Final = threading.Lock()
_PARAMS: Final[weakref.WeakValueDictionary[tuple[object, ...], WindowParams]] = (
    weakref.WeakValueDictionary()
)


def memory_store_for(clock: Callable[[], float]) -> MemoryStore:
    """The process-wide memory store of the clients that use ``clock``."""
    if clock is time.monotonic:
        return _DEFAULT_STORE
    owner = getattr(clock, "__self__", None) or clock
    with _STORES_LOCK:
        try:
            store = _STORES_BY_CLOCK.get(owner)
            if store is None:
                store = _STORES_BY_CLOCK[owner] = MemoryStore()
        except TypeError:  # not weakly referenceable: keep one store for it forever
            return _DEFAULT_STORE
        return store


def _positive(_instance: object, field: attrs.Attribute[Any], value: float) -> None:
    """attrs validator: more than 0 seconds, and a day at most (one wait at the gate)."""
    to_seconds(value, field.name, maximum=MAX_WAIT)
    if value <= 0:
        raise ValueError(f"{field.name} must be more than 0 seconds, got {short_repr(value)}")


def _at_least_min_wait(instance: object, field: attrs.Attribute[Any], value: float) -> None:
    """attrs validator: a probe's first wait, from :data:`MIN_WAIT` to a day."""
    _positive(instance, field, value)
    if value < MIN_WAIT:
        raise ValueError(
            f"{field.name} must be at least {MIN_WAIT} s (MIN_WAIT): shorter, the probes of "
            f"an account that keeps failing hammer the API; got {short_repr(value)}"
        )


def _to_store(value: object) -> object:
    """attrs converter: a Redis URL or a redis-py client becomes a :class:`RedisStore`."""
    if isinstance(value, str) and is_redis_url(value):
        from ._redis import RedisStore  # noqa: PLC0415 (imports this module; redis only when used)

        return RedisStore(value)
    if not isinstance(value, str | GateStore | None):
        from ._redis import RedisStore  # noqa: PLC0415

        if is_redis_client(value):
            return RedisStore(value)  # type: ignore[arg-type]
    return value


def _check_store(_instance: object, _field: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if not isinstance(value, GateStore):
        got = "a string that is not a Redis URL" if isinstance(value, str) else type(value).__name__
        raise ValueError(
            "store must be None, a GateStore (MemoryStore, RedisStore), a redis://, rediss:// "
            f"or unix:// URL, or a redis-py client (redis.Redis, redis.asyncio.Redis), got {got}"
        )


@attrs.frozen
class AccountGate:
    """One gate per account: the window model every request of an account asks first.

    Bitbucket's quota belongs to the account, so every request of every
    client that uses one credential asks one gate when it may go, and tells
    it what the server answered.  The gate learns the account's limit (or
    reads it from ``X-RateLimit-Limit``, or takes ``limit``), releases each
    send when a slot of the rolling window frees, probes one request at a
    time when the server disagrees with the model, and opens a shared
    breaker when errors come in a row.  See :mod:`bb_backoff._window` for
    the rules, and the docs' "coordination" page for the design.

    Pass it as ``gate=`` to a client.  Clients without ``gate=`` share the
    default gate of their process: one in-memory model per credential, API
    origin and clock.  ``gate=False`` opts out (every request backs off on
    its own, as before).  With the flag off, no gate is ever asked.

    Waiting at the gate counts against the request's ``rate_limit_budget``
    (a day by default) when it waits for the quota, and against
    ``outage_budget`` when it waits for the breaker; the request's own
    error budget covers only its own retries.  A request whose error budget
    runs out while the breaker is open waits for the breaker too.

    Args:
        window: the rolling window (seconds or timedelta), a day at most.
        limit: requests per window, if known (``None``: learn it).
        store: where the model lives: ``None`` (this process's memory), a
            :class:`MemoryStore`, a :class:`~bb_backoff.RedisStore`, or a
            ``redis://`` URL or a redis-py client (``redis.Redis``,
            ``redis.asyncio.Redis``) to make a ``RedisStore`` of.
        failure_threshold: errors in a row, across the account, that open
            the breaker.
        outage_budget: how long a request waits for the breaker to close
            before it gives up (seconds; 30 minutes by default: an importer
            would rather wait than lose work).
        probe_initial: the first wait before a probe (seconds), 10 ms at
            least (``MIN_WAIT``; ``probe_max`` and ``breaker_max`` are at
            least this too): shorter, a failing account is probed without
            pause.
        probe_max: the longest wait between rate-limit probes (seconds).
        breaker_max: the longest wait between breaker probes (seconds).
        probe_lease: how long a probe may stay unanswered before another
            request probes instead (seconds).  Each of these four, and
            ``window``, is a day at most (one wait never is longer).
        seed: seeds the probes' jitter (``None``: from the OS).

    Raises:
        ValueError: for an invalid argument; the message names it.
    """

    window: float = attrs.field(default=3600.0, converter=duration, validator=_positive)
    limit: int | None = None
    store: GateStore | None = attrs.field(default=None, converter=_to_store, validator=_check_store)
    failure_threshold: int = attrs.field(default=5, kw_only=True)
    outage_budget: float = attrs.field(
        default=1800.0, converter=duration, validator=unbounded_duration, kw_only=True
    )
    probe_initial: float = attrs.field(
        default=1.0, converter=duration, validator=_at_least_min_wait, kw_only=True
    )
    probe_max: float = attrs.field(
        default=300.0, converter=duration, validator=_positive, kw_only=True
    )
    breaker_max: float = attrs.field(
        default=60.0, converter=duration, validator=_positive, kw_only=True
    )
    probe_lease: float = attrs.field(
        default=60.0, converter=duration, validator=_positive, kw_only=True
    )
    seed: int | None = attrs.field(default=None, kw_only=True, repr=short_repr)

    def __attrs_post_init__(self) -> None:
        positive_int("limit", self.limit, optional=True)
        positive_int("failure_threshold", self.failure_threshold)
        if self.probe_max < self.probe_initial:
            raise ValueError(
                f"probe_max ({self.probe_max} s) must be at least probe_initial "
                f"({self.probe_initial} s)"
            )
        if self.breaker_max < self.probe_initial:
            raise ValueError(
                f"breaker_max ({self.breaker_max} s) must be at least probe_initial "
                f"({self.probe_initial} s)"
            )
        if self.seed is not None and (
            not isinstance(self.seed, int) or isinstance(self.seed, bool)
        ):
            raise ValueError(f"seed must be an integer or None, got {short_repr(self.seed)}")

    @property
    def params(self) -> WindowParams:
        """The settings as the window model reads them.

        Gates with the same settings give the same object: a model's fast
        lane serves the settings it was opened with, told by identity.
        """
        params = WindowParams(
            window=self.window,
            limit=self.limit,
            failure_threshold=self.failure_threshold,
            probe_initial=self.probe_initial,
            probe_max=self.probe_max,
            breaker_max=self.breaker_max,
            probe_lease=self.probe_lease,
            max_hold=self.window,
        )
        with _STORES_LOCK:
            return _PARAMS.setdefault(attrs.astuple(params), params)

    def bind(
        self, account: str, *, clock: Callable[[], float], now: Callable[[], float]
    ) -> GateHandle:
        """The handle a client uses for ``account`` (a fingerprint, see :func:`account_key`).

        Args:
            account: the account's key.
            clock: the client's monotonic clock (the memory store's time).
            now: the client's epoch clock (the Redis store's time when it
                does not use the server's).
        """
        store = self.store if self.store is not None else memory_store_for(clock)
        uses_epoch = getattr(store, "uses_epoch_time", False)
        return GateHandle(
            store,
            account,
            self,
            clock=clock,
            store_time=now if uses_epoch else clock,
        )


_members = itertools.count(1)
_INF: Final = float("inf")


def _unreadable_clock(now: object) -> BitbucketError:
    """The error for a clock that read NaN or infinity: the gate cannot pace on it.

    Its model then answered every reservation with no wait (NaN compares
    false), and a rate-limited request was sent again and again without
    sleeping (5,000 requests, no sleep).
    """
    return BitbucketError(
        f"the client's clock read {now!r} (clock=, or now= for a gate store on client "
        "time): the account gate cannot pace requests on a clock that is not finite "
        "seconds; the request stops before sending again (give the client time.monotonic "
        "or bb_backoff.testing.VirtualClock's)"
    )


class GateHandle:
    """One client's view of one account's gate: the key, the settings, the round trip.

    It keeps what is local to the process: the round-trip estimate that
    becomes the margin when a slot frees, and the jitter source.  The
    clients' request flow calls it; it is not meant to be used directly.
    """

    __slots__ = (
        "_memory",
        "_memory_lock",
        "_model",
        "_random",
        "_rttvar",
        "_srtt",
        "_warned",
        "clock",
        "gate",
        "in_memory",
        "key",
        "margin",
        "params",
        "store",
        "store_time",
    )

    def __init__(
        self,
        store: GateStore,
        key: str,
        gate: AccountGate,
        *,
        clock: Callable[[], float],
        store_time: Callable[[], float],
    ) -> None:
        self.store = store
        self.key = key
        self.gate = gate
        self.params = gate.params
        self.clock = clock
        self.store_time = store_time
        self._memory = store if type(store) is MemoryStore else None
        self._model: WindowModel | None = None
        self._memory_lock = (
            self._memory._lock  # noqa: SLF001 (the store's lock, taken for its model's lane)
            if self._memory is not None
            else threading.Lock()
        )
        self.in_memory = self._memory is not None
        """Whether the store is this process's memory: the flow then calls it in
        place rather than through its driver (no I/O, nothing to await)."""
        self.margin = _INITIAL_MARGIN
        self._srtt: float | None = None
        self._rttvar = 0.0
        self._random = random.Random(gate.seed)  # noqa: S311 (jitter, not security)
        self._warned = False

    def __repr__(self) -> str:
        return f"GateHandle(key={self.key!r}, store={self.store!r}, margin={self.margin:.3f})"

    # -- the store's calls, sync and async ----------------------------------------

    def reserve(self, cancel: Grant | None = None) -> Grant:
        """Ask when the next send may go.

        Raises:
            BitbucketError: the clock read NaN or infinity (see :func:`_unreadable_clock`).
        """
        model = self._model
        if model is not None and model.lane and cancel is None:
            # The memory model's fast lane (see WindowModel.reserve_now).
            # (Callables kept in slots are read into locals first, and the
            # lock taken by its methods: both the interpreter's quick paths.)
            lock, store_time = self._memory_lock, self.store_time
            lock.acquire()
            try:
                now = store_time()  # under the lock: the model sees time in order
                if not -_INF < now < _INF:
                    raise _unreadable_clock(now)
                grant = model.reserve_now(now, self.params, next(_members), self.margin)
            finally:
                lock.release()
            if grant is not None:
                return grant
        now = self.store_time()
        if not -_INF < now < _INF:
            raise _unreadable_clock(now)
        memory = self._memory
        if memory is not None:
            grant = memory.reserve(self.key, now, self.params, next(_members), self.margin, cancel)
            # The account's model, for the lane and for answers (a sweep that
            # drops it closes its lane, so a stale one sends the next here).
            self._model = memory.model(self.key)
            return grant
        return self.store.reserve(
            self.key,
            now=now,
            params=self.params,
            member=next(_members),
            margin=self.margin,
            cancel=cancel,
        )

    async def areserve(self, cancel: Grant | None = None) -> Grant:
        """:meth:`reserve` for async clients."""
        now = self.store_time()
        if not -_INF < now < _INF:
            raise _unreadable_clock(now)
        return await self.store.areserve(
            self.key,
            now=now,
            params=self.params,
            member=next(_members),
            margin=self.margin,
            cancel=cancel,
        )

    def observe(self, grant: Grant, observation: Observation) -> Knowledge:
        """Tell the gate what the server did with ``grant``'s send."""
        return self.store.observe(
            self.key,
            now=self.store_time(),
            params=self.params,
            grant=grant,
            observation=observation,
            draw=self._random.random(),
        )

    async def aobserve(self, grant: Grant, observation: Observation) -> Knowledge:
        """:meth:`observe` for async clients."""
        return await self.store.aobserve(
            self.key,
            now=self.store_time(),
            params=self.params,
            grant=grant,
            observation=observation,
            draw=self._random.random(),
        )

    # -- local decisions ---------------------------------------------------------

    def still_valid(self, grant: Grant) -> bool:
        """Whether a reservation made before a wait still stands (the model did not change).

        A store may say more (a Redis store's local fallback: its
        reservations lapse when Redis is due to be tried again).
        """
        if grant.generation < self.store.knowledge(self.key).generation:
            return False
        stands = getattr(self.store, "stands", None)
        return stands is None or bool(stands(grant))

    def clock_ignored_sleep(self) -> None:
        """Warn (once per handle) that ``sleep`` does not move ``clock``: the gate cannot pace."""
        if not self._warned:
            self._warned = True
            logger.warning(
                "the client's sleep did not advance its clock; the account gate cannot pace "
                "requests on such a clock and lets them go (give a client a consistent "
                "clock and sleep, such as bb_backoff.testing.VirtualClock's)"
            )

    def round_trip(self, seconds: float) -> None:
        """Time one answer that was not a success (a success's goes through :meth:`answered`)."""
        self.answered(None, None, seconds)

    def answered(
        self, grant: Grant | None, response: httpx.Response | None, seconds: float
    ) -> Observation | None:
        """An answer came ``seconds`` after its send: time it, and say what a success tells.

        The margin is a smoothed round trip plus four deviations (as TCP's);
        a wait that is negative or beyond the largest margin is no round trip
        (a clock jump, a stalled process) and is ignored.  A success
        (``response``) is news when it answers a probe, ends a run of
        errors, or carries rate-limit headers the gate has not seen yet;
        otherwise this returns ``None`` and the gate is not asked at all (no
        round trip to a shared store).  Every successful request passes
        here: it is one function, written for few steps.
        """
        # (Float literals: float-with-float arithmetic and comparisons take the
        # interpreter's specialised paths, mixed ones the generic.)
        if 0.0 <= seconds < _MAX_MARGIN:
            srtt = self._srtt
            if srtt is None:
                srtt = seconds
                rttvar = seconds / 2.0
            else:
                deviation = srtt - seconds
                rttvar = 0.75 * self._rttvar + 0.25 * (
                    deviation if deviation >= 0.0 else -deviation
                )
                srtt = 0.875 * srtt + 0.125 * seconds
            self._srtt, self._rttvar = srtt, rttvar
            margin = srtt + 4.0 * rttvar
            self.margin = margin if margin < _MAX_MARGIN else _MAX_MARGIN
        if response is None or grant is None:
            return None
        header_limit = near = None
        headers = response.headers
        entries = headers._list if _HAS_LIST else None  # noqa: SLF001 (see _HAS_LIST)
        if entries is None or not _RATE_HEADERS.isdisjoint(map(_LOWERED, entries)):
            header_limit, near = rate_limit_headers(headers)
        known = self.store.knowledge(self.key)  # the account's model now (a sweep may replace it)
        if (
            grant.kind == PROBE
            or known.failures
            or (header_limit is not None and header_limit != known.ceiling)
            or (near is not None and near != known.near)
        ):
            return Observation(OK, header_limit=header_limit, near=near)
        return None


_PREFIX: Final = b"x-ratelimit-"
_LIMIT_HEADER: Final = b"x-ratelimit-limit"
_NEAR_HEADER: Final = b"x-ratelimit-nearlimit"
_RATE_HEADERS: Final = frozenset((_LIMIT_HEADER, _NEAR_HEADER))
# httpx keeps (name, lower-cased name, value) triples in a private list; a set
# test over their lower-cased names runs in C, whatever the number of headers
# (a Python loop over Bitbucket's sixteen or so costs most of a microsecond).
_HAS_LIST: Final = isinstance(getattr(httpx.Headers({"a": "b"}), "_list", None), list)
_LOWERED: Final = operator.itemgetter(1)


def rate_limit_headers(headers: httpx.Headers) -> tuple[int | None, bool | None]:
    """``X-RateLimit-Limit`` and ``X-RateLimit-NearLimit``, when present and readable.

    Every response passes here, so it reads the headers in one pass over
    httpx's lower-cased names rather than with two lookups (a third of the
    client's whole success-path cost otherwise).
    """
    entries = getattr(headers, "_list", None)
    if entries is None:  # another httpx: the public, slower way
        entries = [(name, name.lower(), value) for name, value in headers.raw]
    raw_limit = raw_near = None
    for _name, lowered, value in entries:
        if lowered.startswith(_PREFIX):
            if lowered == _LIMIT_HEADER:
                raw_limit = value
            elif lowered == _NEAR_HEADER:
                raw_near = value
    header_limit = None
    if raw_limit is not None:
        text = raw_limit.strip()
        if text.isdigit() and len(text) <= 9:  # noqa: PLR2004 (beyond a billion is garbage)
            header_limit = int(text) or None
    near = None
    if raw_near is not None:
        lowered = raw_near.strip().lower()
        near = True if lowered == b"true" else False if lowered == b"false" else None
    return header_limit, near


def observation_of(
    status: int | None, headers: httpx.Headers | None, *, sent: bool, hint: float | None
) -> Observation:
    """The gate's view of a failed attempt: a 429, an error, or an answer (a final 4xx).

    A hint of zero (``Retry-After: 0``) says nothing about when the window
    frees: the gate takes the 429 as if it came with none (the model learns
    from it and paces) rather than as the server's word to probe at once.
    """
    header_limit, near = rate_limit_headers(headers) if headers is not None else (None, None)
    if status == 429:  # noqa: PLR2004
        if hint is not None and hint <= 0:
            hint = None
        return Observation(RATE_LIMITED, hint=hint, header_limit=header_limit, near=near)
    if status is None or status == 408 or status >= 500:  # noqa: PLR2004
        return Observation(ERROR, sent=sent, header_limit=header_limit)
    return Observation(OK, header_limit=header_limit, near=near)


def account_key(auth: object, base_url: str) -> str:
    """A fingerprint of the account a credential spends the quota of; never the secret.

    Bitbucket counts an OAuth consumer's calls against the consumer, an API
    token's against its user (the email), and an access token against
    itself.  The fingerprint is a truncated SHA-256 of the kind, the API's
    origin and that identity: stable across clients and processes, and
    useless for recovering the secret.

    Args:
        auth: the client's credential, or ``None`` (anonymous).
        base_url: the API root.

    Returns:
        24 hex digits.
    """
    url = httpx.URL(base_url)
    origin = f"{url.scheme}://{url.host}:{url.port or ''}"
    if isinstance(auth, BearerToken):
        identity = f"bearer:{auth.token}"
    elif isinstance(auth, BasicAuth):
        identity = f"user:{auth.email.lower()}"
    elif isinstance(auth, OAuth2):
        identity = f"consumer:{auth.client_id}"
    else:
        identity = "anonymous"
    digest = hashlib.sha256(f"bb-backoff\0{origin}\0{identity}".encode()).hexdigest()
    return digest[:24]


DEFAULT_GATE: Final = AccountGate()
"""The gate of clients built without ``gate=``: in memory, shared per credential and clock."""


def check_sync_gate(gate: AccountGate | None, name: str) -> None:
    """Refuse, for a sync caller, a gate whose store serves async callers only.

    Found at construction, not at the first request with the flag on (which
    may come only when a rollout reaches the client).

    Raises:
        TypeError: the store was given a ``redis.asyncio.Redis``.
    """
    if gate is not None and not getattr(gate.store, "serves_sync", True):
        raise TypeError(
            f"{name}: its store was given a redis.asyncio.Redis, which serves async callers "
            "only; give a sync client a store built from a redis:// URL or a redis.Redis"
        )


def resolve_gate(gate: object) -> AccountGate | None:
    """``gate=`` as given to a client: ``None``/``True`` (the default), ``False`` (none), or a gate.

    Raises:
        ValueError: for anything else, naming ``gate``.
    """
    if gate is None or gate is True:
        return DEFAULT_GATE
    if gate is False:
        return None
    if isinstance(gate, AccountGate):
        return gate
    raise ValueError(f"gate must be an AccountGate, True, False or None, got {type(gate).__name__}")


__all__ = [
    "DEFAULT_GATE",
    "GO",
    "AccountGate",
    "GateHandle",
    "GateStore",
    "MemoryStore",
    "account_key",
    "memory_store_for",
    "observation_of",
    "rate_limit_headers",
    "resolve_gate",
]
