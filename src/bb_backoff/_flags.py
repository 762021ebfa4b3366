"""The feature flag: which actors get the exponential backoff.

The client asks its :class:`FlagSource` once per logical request, for its
actor, whether :data:`FLAG_NAME` is on.  :class:`FlipperFlag` implements
GitLab's gates (Flipper's) with the same formulas, so a percentage rollout
here picks the same projects as GitLab does at the same percentage.  Given a
``store``, it keeps the gates in Redis in Ruby Flipper's layout
(``_flipper_redis.py``), shared by the fleet; the evaluation stays here, one
pure function for both.
"""

from __future__ import annotations

import inspect
import logging
import random
import threading
import zlib
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Protocol, Self, runtime_checkable

import anyio
import anyio.lowlevel
import attrs

from ._exceptions import scrub_chain, short_repr
from ._timing import Clock, Seconds, default_clock, to_seconds

if TYPE_CHECKING:
    import redis
    import redis.asyncio

    from ._flipper_redis import FlipperHash, RedisFlagStore

FLAG_NAME: Final = "bitbucket_importer_exponential_backoff"
"""The flag's name, as in GitLab (type development, introduced in 16.7)."""

logger: Final = logging.getLogger("bb_backoff")

# Flipper scales percentages by 1,000 so that fractional percentages work.
_SCALING_FACTOR: Final = 1_000

DEFAULT_CACHE_SECONDS: Final = 1.0
"""How long a store-backed :class:`FlipperFlag` trusts what it read: a rollback
written to the store reaches every process within about this long."""
MAX_CACHE_SECONDS: Final = 60.0
"""``cache_seconds`` beyond this is refused: a rollback must reach the fleet quickly."""


class FlagStoreError(Exception):
    """The flag's shared store (Redis) could not be read or written.

    Raised by the writers and :meth:`FlipperFlag.refresh`; a flag *check*
    never raises it (it keeps the last state read, and logs).  The message
    names the store without its password.
    """


@runtime_checkable
class FlagSource(Protocol):
    """Anything that can say whether a flag is on for an actor.

    Implementations must be safe to call from several threads.  The answer
    must be ``True`` or ``False``: the client treats an exception, or any
    other answer (``"false"``, ``0``, ``None``, a coroutine), as a failure of
    the source, uses the legacy policy for that request, and logs a warning,
    so a broken source can never switch the exponential policy on.

    A source that must wait for its answer (a network call) should also
    offer ``async def enabled_async(name, actor) -> bool``:
    :class:`~bb_backoff.AsyncBitbucketClient` awaits it instead of calling
    :meth:`enabled`, so a slow source never blocks the event loop.
    """

    def enabled(self, name: str, actor: str | None) -> bool:
        """Whether flag ``name`` is on for ``actor`` (an id like ``"Project:123"``)."""
        ...  # pragma: no cover


@attrs.frozen
class StaticFlag:
    """A flag that is on or off for everyone, forever.

    Args:
        on: the answer to every question: ``True`` or ``False``.

    Raises:
        ValueError: ``on`` is not a bool (``StaticFlag("false")`` would
            otherwise fail every check, and every request would go legacy).
    """

    on: bool = attrs.field()

    @on.validator
    def _check_on(self, _attribute: attrs.Attribute[bool], value: object) -> None:
        if not isinstance(value, bool):
            raise ValueError(f"on must be True or False, got {short_repr(value)}")

    def enabled(self, name: str, actor: str | None) -> bool:  # noqa: ARG002 (protocol signature)
        """Return ``on``, whatever the flag and actor."""
        return self.on


class FlagCheck:
    """Asks a flag source once per logical request, and never lets it fail the request.

    The clients and :class:`~bb_backoff.RetryTransport` ask through it: an
    exception, or any answer but ``True``/``False``, is a failure of the
    source: the answer is "off" (the legacy policy) and :attr:`errors` counts
    it.  A run of failures logs one warning, with the first failure's
    traceback; the failures after it log at DEBUG, and the first answer after
    them one INFO record, so a source that is down for a while does not log
    once per request.

    Args:
        flag: a :class:`FlagSource`, or a bool for a flag that never changes.
        actor: the id the flag is checked for, like ``"Project:123"``.

    Raises:
        ValueError: ``flag`` is neither, or ``actor`` is not an id string.
    """

    __slots__ = ("_ask_async", "_failing", "_lock", "actor", "errors", "fixed", "flag")

    def __init__(self, *, flag: FlagSource | bool, actor: str | None) -> None:
        if isinstance(flag, bool):
            flag = StaticFlag(flag)
        elif not callable(getattr(flag, "enabled", None)):
            raise ValueError(f"flag must be a FlagSource or a bool, got {type(flag).__name__}")
        if actor is not None and (not isinstance(actor, str) or not actor):
            raise ValueError(
                f"actor must be an id string like 'Project:123' or None, got {actor!r}"
            )
        self.flag: Final[FlagSource] = flag
        self.actor: Final = actor
        self.fixed: Final = flag.on if type(flag) is StaticFlag and type(flag.on) is bool else None
        """The answer when the source can give no other (a :class:`StaticFlag`), else
        ``None``: a client need not ask at all."""
        self.errors = 0
        """How many times the source failed (and "off" was used)."""
        # The failures in a row so far: 0 while the source answers.
        self._failing = 0
        self._lock = threading.Lock()
        ask_async = getattr(flag, "enabled_async", None)
        self._ask_async = ask_async if callable(ask_async) else None

    def ask(self) -> bool:
        """Whether :data:`FLAG_NAME` is on for the actor; ``False`` when the source fails."""
        try:
            answer: Any = self.flag.enabled(FLAG_NAME, self.actor)
        except Exception as error:  # noqa: BLE001 (a flag source must never fail a request)
            return self._failed("raised", error)
        if answer is True or answer is False:
            if self._failing:
                self._recovered()
            return answer
        if inspect.isawaitable(answer):
            # An async source handed to a sync caller: never awaited, so close it.
            close = getattr(answer, "close", None)
            if callable(close):
                close()
        return self._failed(f"returned {type(answer).__name__}, not a bool", None)

    async def ask_async(self) -> bool:
        """:meth:`ask`, awaiting the source's ``enabled_async`` when it has one."""
        ask = self._ask_async
        if ask is None:
            return self.ask()
        try:
            answer: Any = await ask(FLAG_NAME, self.actor)
        except Exception as error:  # noqa: BLE001 (a flag source must never fail a request)
            return self._failed("raised", error)
        if answer is True or answer is False:
            if self._failing:
                self._recovered()
            return answer
        return self._failed(f"returned {type(answer).__name__}, not a bool", None)

    def _recovered(self) -> None:
        """The source answers after a run of failures: say so once."""
        with self._lock:
            failures, self._failing = self._failing, 0
        if failures:
            logger.info(
                "flag source %s answers again for %s after %d failed checks",
                type(self.flag).__name__,
                self.actor,
                failures,
            )

    def _failed(self, what: str, error: BaseException | None) -> bool:
        with self._lock:
            self.errors += 1
            self._failing += 1
            first = self._failing == 1
        if first:
            logger.warning(
                "flag source %s %s while checking %s for %s; using the legacy policy "
                "(until it answers, further failures are logged at DEBUG)",
                type(self.flag).__name__,
                what,
                FLAG_NAME,
                self.actor,
                exc_info=None if error is None else scrub_chain(error),
            )
        else:
            logger.debug(
                "flag source %s failed again (%s) while checking %s for %s; using the legacy "
                "policy",
                type(self.flag).__name__,
                what,
                FLAG_NAME,
                self.actor,
            )
        return False


def actor_in_percentage(name: str, actor: str, percentage: float) -> bool:
    """Flipper's percentage-of-actors gate.

    An actor is in the cohort when ``crc32(name + actor) % 100_000 <
    percentage * 1_000``, so cohorts grow monotonically with the percentage
    and match GitLab's for the same flag name and actor id.

    Args:
        name: the flag's name.
        actor: the actor's id, e.g. ``"Project:123"``.
        percentage: 0 to 100, fractions allowed.

    Returns:
        Whether the actor is in the cohort.
    """
    bucket = zlib.crc32(f"{name}{actor}".encode()) % (100 * _SCALING_FACTOR)
    return bucket < percentage * _SCALING_FACTOR


def _percentage(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:  # noqa: PLR2004
        raise ValueError(f"{name} must be a number from 0 to 100, got {short_repr(value)}")
    return float(value)


def _actor_id(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(
            f"actor must be a non-empty id string like 'Project:123', got {short_repr(value)}"
        )
    return value


def _actor_ids(actors: object) -> frozenset[str]:
    """The ``actors`` argument: a collection of ids (not one string, which is a collection too)."""
    if isinstance(actors, str) or not isinstance(actors, Iterable):
        raise ValueError(
            f"actors must be a collection of ids (not one string), got {short_repr(actors)}"
        )
    return frozenset(_actor_id(actor) for actor in actors)


@attrs.frozen
class _Gates:
    boolean: bool = False
    actors: frozenset[str] = frozenset()
    percentage_of_actors: float = 0.0
    percentage_of_time: float = 0.0


_CLOSED: Final = _Gates()


def _is_open(gates: _Gates, name: str, actor: str | None, draw: Callable[[], float]) -> bool:
    """Flipper's evaluation: any gate open, checked in Flipper's order; pure but for ``draw``."""
    if gates.boolean:
        return True
    if actor is not None:
        if actor in gates.actors:
            return True
        if gates.percentage_of_actors and actor_in_percentage(
            name, actor, gates.percentage_of_actors
        ):
            return True
    return bool(gates.percentage_of_time) and (draw() < gates.percentage_of_time / 100)


def _gates_of(read: FlipperHash) -> _Gates:
    return _Gates(
        boolean=read.boolean,
        actors=read.actors,
        percentage_of_actors=read.percentage_of_actors,
        percentage_of_time=read.percentage_of_time,
    )


def _cache_seconds(value: object) -> float:
    seconds = to_seconds(value, "cache_seconds")
    if seconds > MAX_CACHE_SECONDS:
        raise ValueError(
            f"cache_seconds must be at most {MAX_CACHE_SECONDS:g} (a rollback must reach every "
            f"process quickly), got {short_repr(value)}"
        )
    return seconds


class FlipperFlag:
    """A flag with Flipper's gates, changeable at runtime from any thread.

    The gates are checked in Flipper's order: boolean, actors, percentage of
    actors, percentage of time; the flag is on if any gate is open.  Every
    change replaces an immutable snapshot of the gates, so a change such as
    :meth:`disable` takes effect on the very next request.

    **Fleet-wide.**  With ``store`` (a Redis URL or client), the gates live in
    Redis in the layout of Ruby Flipper's Redis adapter, so every process, and
    a GitLab-style Flipper, share one flag: the writers change Redis (one
    transaction each, as Flipper writes it), and a check answers from the
    state read at most ``cache_seconds`` ago, so a rollback (:meth:`disable`,
    or ``bb-backoff flag set NAME false``) reaches every process within about
    a second.  A check never fails and never waits on a dead Redis for more
    than one short timeout per ``cache_seconds``: when the store is
    unreachable or errs, the flag keeps the last state it read (closed, the
    legacy policy, if it never read one) and logs one warning on the
    ``bb_backoff`` logger per outage, and one record when the store answers
    again.  Close it (:meth:`close`, :meth:`aclose`, or ``with``/``async
    with``) to close the clients it made from a URL.

    Args:
        name: the feature the gates belong to; other names are off.
        boolean: open for everyone.
        actors: ids that are always on, like ``"Project:123"``.
        percentage_of_actors: 0-100; Flipper's CRC-32 cohort.
        percentage_of_time: 0-100; a fresh random draw on every check.
        random: a ``() -> float`` in ``[0, 1)`` for the percentage-of-time
            gate (seed it for reproducible tests).
        store: where the gates live: ``None`` (this object, the default), a
            ``redis://``/``rediss://``/``unix://`` URL (needs the ``redis``
            extra), a ``redis.Redis`` client, or a ``redis.asyncio.Redis``
            client (then only :meth:`enabled_async` reads it).  With a store
            the gates come from it: ``boolean``, ``actors`` and the
            percentages must stay at their defaults.
        key_prefix: with ``store``, prepended to every Redis key (Flipper's
            ``key_prefix:`` option).
        cache_seconds: with ``store``, how long a state read is trusted
            (seconds or timedelta, 0 to 60; 0 reads on every check).
        clock: monotonic seconds, for the cache (inject a virtual clock in
            tests).

    Raises:
        ValueError: for an invalid percentage, actor id, name, store, key
            prefix, cache duration or clock; the message names it.
        ImportError: ``store`` without redis-py installed.
    """

    def __init__(
        self,
        name: str = FLAG_NAME,
        *,
        boolean: bool = False,
        actors: Iterable[str] = (),
        percentage_of_actors: float = 0.0,
        percentage_of_time: float = 0.0,
        random: Callable[[], float] = random.random,
        store: str | redis.Redis | redis.asyncio.Redis | None = None,
        key_prefix: str = "",
        cache_seconds: Seconds = DEFAULT_CACHE_SECONDS,
        clock: Clock = default_clock,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {short_repr(name)}")
        self.name: Final = name
        # Not bool(boolean): "false" and [0] are true, and would open the flag for everyone.
        if not isinstance(boolean, bool):
            raise ValueError(f"boolean must be True or False, got {short_repr(boolean)}")
        if not callable(clock):
            raise ValueError(f"clock must be a callable returning seconds, got {clock!r}")
        if not callable(random):
            raise ValueError(f"random must be a callable returning [0, 1), got {random!r}")
        self._random = random
        self._clock = clock
        self._cache_seconds: Final = _cache_seconds(cache_seconds)
        self._lock = threading.Lock()
        self._gates = _Gates(
            boolean=boolean,
            actors=_actor_ids(actors),
            percentage_of_actors=_percentage("percentage_of_actors", percentage_of_actors),
            percentage_of_time=_percentage("percentage_of_time", percentage_of_time),
        )
        # With a store: when the last read was tried and when one last worked
        # (clock seconds), when the current outage began, the fields logged as
        # unevaluated, how many reads and writes have ended (a thread that
        # waited for another's read answers from its outcome) and how many
        # writes this object made (a read that began before the latest one
        # holds an older state); one thread refreshes at a time.
        self._store: RedisFlagStore | None = None
        self._tried_at: float | None = None
        self._read_at: float | None = None
        self._outage_since: float | None = None
        self._unevaluated: tuple[str, ...] = ()
        self._outcomes = 0
        self._writes = 0
        self._refreshing = threading.Lock()
        self._refreshing_async = False
        self._first_read: tuple[anyio.Event, anyio.lowlevel.EventLoopToken] | None = None
        """Before any read worked, the read under way: its end, and its event loop."""
        if store is not None:
            self._store = self._open_store(store, key_prefix)
        elif key_prefix != "":
            raise ValueError("key_prefix needs a store: pass store='redis://...' too")

    def _open_store(
        self, store: str | redis.Redis | redis.asyncio.Redis, key_prefix: str
    ) -> RedisFlagStore:
        if self._gates != _CLOSED:
            raise ValueError(
                "with a store the gates come from it: leave boolean, actors and the percentages "
                "at their defaults and change them with enable...() or `bb-backoff flag set`"
            )
        try:
            from ._flipper_redis import RedisFlagStore, check_name  # noqa: PLC0415 (optional)
        except ImportError as error:
            raise ImportError(
                "FlipperFlag(store=...) needs redis-py: pip install 'bb-backoff[redis]'"
            ) from error
        check_name(self.name)
        return RedisFlagStore(store, key_prefix=key_prefix)

    def __repr__(self) -> str:
        gates = self._gates
        text = (
            f"FlipperFlag({self.name!r}, boolean={gates.boolean}, "
            f"actors={sorted(gates.actors)}, percentage_of_actors={gates.percentage_of_actors}, "
            f"percentage_of_time={gates.percentage_of_time}"
        )
        store = self._store
        if store is None:
            return text + ")"
        read = "never read" if self._read_at is None else "as last read"
        return (
            f"{text}, store={store.description!r}, key_prefix={store.key_prefix!r}, "
            f"cache_seconds={self._cache_seconds:g}, gates {read})"
        )

    # -- checks ------------------------------------------------------------------------------

    def enabled(self, name: str, actor: str | None) -> bool:
        """Whether flag ``name`` is on for ``actor``.

        Args:
            name: the flag asked about; only :attr:`name` has gates here.
            actor: the actor id, or ``None`` (then only the boolean and
                percentage-of-time gates can open, as in Flipper).

        Returns:
            Whether any gate is open.  With a store: by the state read at
            most ``cache_seconds`` ago, else the last one read, else off.

        Raises:
            TypeError: the store is a ``redis.asyncio`` client (use
                :meth:`enabled_async`).
        """
        if name != self.name:
            return False
        if self._store is not None:
            self._store_gates(check=True)
        # one snapshot per check: a concurrent change can't tear it
        return _is_open(self._gates, name, actor, self._random)

    async def enabled_async(self, name: str, actor: str | None) -> bool:
        """:meth:`enabled` for the async client: a store is read without blocking the loop."""
        if name != self.name:
            return False
        store = self._store
        if store is not None and self._stale():
            await self._refresh_async(store)
        return _is_open(self._gates, name, actor, self._random)

    def _stale(self) -> bool:
        tried_at = self._tried_at
        return tried_at is None or not 0 <= self._clock() - tried_at < self._cache_seconds

    def _store_gates(self, *, check: bool = False) -> _Gates:
        """The gates, refreshed from a sync store first when the cached state is stale."""
        store = self._store
        if store is None:
            return self._gates
        if not store.can_sync:
            if check:
                store.read(self.name)  # raises the TypeError that says what to do
            return self._gates
        if not self._stale():
            return self._gates
        # The first read is waited for; later, a thread that finds another
        # one refreshing answers from the state it has.  A thread that waited
        # takes the outcome of the read it waited for, worked or failed: read
        # again, with a cache shorter than a hung Redis' timeout (or none),
        # each waiting thread would find the state stale and wait a timeout
        # of its own, one after the other.
        outcomes = self._outcomes
        if not self._refreshing.acquire(blocking=self._read_at is None):
            return self._gates
        try:
            if self._outcomes == outcomes and self._stale():
                now, writes = self._clock(), self._writes
                try:
                    read = store.read(self.name)
                except FlagStoreError as error:
                    self._read_failed(now, error)
                else:
                    self._read_worked(now, read, writes)
        finally:
            self._refreshing.release()
        return self._gates

    async def _refresh_async(self, store: RedisFlagStore) -> None:
        # As in threads (see _store_gates): before any read worked, a check
        # waits for the read under way and takes its outcome, worked or
        # failed, rather than reading too; later, it answers from the state
        # it has.  (Only a check on the same event loop waits: the read's
        # event belongs to its loop; on another, the check reads itself, as
        # it did before any read worked.)
        while self._refreshing_async:
            first = self._first_read
            if self._read_at is not None or first is None:
                return  # another task is reading; answer from the state we have
            event, loop = first
            if loop != anyio.lowlevel.current_token():
                break  # a read on another event loop, which this one cannot wait for
            outcomes = self._outcomes
            await event.wait()
            if self._outcomes != outcomes:
                return
            # The read was cancelled before it ended: read in its place,
            # unless another waiter already does.
        self._refreshing_async = True
        first = None
        if self._read_at is None:
            first = self._first_read = (anyio.Event(), anyio.lowlevel.current_token())
        try:
            now, writes = self._clock(), self._writes
            try:
                read = await store.read_async(self.name)
            except FlagStoreError as error:
                self._read_failed(now, error)
            else:
                self._read_worked(now, read, writes)
        finally:
            self._refreshing_async = False
            if first is not None:
                self._first_read = None
                first[0].set()

    def _read_worked(self, now: float, read: FlipperHash, writes: int | None) -> None:
        """Take the state ``read`` at ``now``, begun after this object's first ``writes`` writes.

        ``writes=None`` means this object wrote it (a transaction that reads
        the hash it wrote): it is the object's state at once.  A read that
        began before this object's latest write may hold the state from before
        it, and leaves the written state alone.
        """
        with self._lock:
            self._outcomes += 1
            outage_since, self._outage_since = self._outage_since, None
            unevaluated = read.unevaluated
            new_unevaluated = False
            if writes is None:
                self._writes += 1
            if writes is None or writes == self._writes:
                self._gates = _gates_of(read)
                self._tried_at = self._read_at = now
                new_unevaluated = unevaluated != self._unevaluated
                self._unevaluated = unevaluated
        if outage_since is not None:
            logger.info(
                "flag %s: the store %s answers again after %.3g s; gates read",
                self.name,
                self._store_description,
                now - outage_since,
            )
        if new_unevaluated and unevaluated:
            logger.warning(
                "flag %s: the store %s holds gates this library cannot evaluate (%s): they "
                "never open the flag here, though a Ruby Flipper may open it for them",
                self.name,
                self._store_description,
                ", ".join(unevaluated),
            )

    def _read_failed(self, began: float, error: FlagStoreError) -> None:
        # The next try waits cache_seconds from the failure, not from the
        # start of a read that may have waited a whole timeout.
        now = self._clock()
        with self._lock:
            self._outcomes += 1
            self._tried_at = now
            starting = self._outage_since is None
            if starting:
                self._outage_since = began
            read_at = self._read_at
        if not starting:
            return
        if read_at is None:
            logger.warning(
                "flag %s: %s; no state was ever read, so the flag is off (legacy policy) "
                "until the store answers",
                self.name,
                error,
            )
        else:
            logger.warning(
                "flag %s: %s; keeping the gates read %.3g s ago until the store answers",
                self.name,
                error,
                now - read_at,
            )

    @property
    def _store_description(self) -> str:
        return "" if self._store is None else self._store.description

    def refresh(self) -> None:
        """Read the store now (a no-op without one), whatever the cache says.

        Use it to fail fast at startup when the store is misconfigured.

        Raises:
            FlagStoreError: the store is unreachable or failed; the state is kept.
            TypeError: the store is a ``redis.asyncio`` client.
        """
        store = self._store
        if store is None:
            return
        now, writes = self._clock(), self._writes
        self._read_worked(now, store.read(self.name), writes)

    # -- the gates -------------------------------------------------------------------------

    @property
    def boolean(self) -> bool:
        """Whether the boolean gate is open (with a store: read at most ``cache_seconds`` ago)."""
        return self._store_gates().boolean

    @property
    def actors(self) -> frozenset[str]:
        """The actor ids that are always on."""
        return self._store_gates().actors

    @property
    def percentage_of_actors(self) -> float:
        """The percentage-of-actors gate, 0-100."""
        return self._store_gates().percentage_of_actors

    @property
    def percentage_of_time(self) -> float:
        """The percentage-of-time gate, 0-100."""
        return self._store_gates().percentage_of_time

    # -- changes -------------------------------------------------------------------------------
    #
    # In memory, each change replaces the snapshot under the lock.  With a store,
    # each change is one Redis transaction that also reads the new hash, which
    # becomes this object's state at once (other processes see it within
    # cache_seconds), and that a read under way when it lands cannot undo; a
    # failure raises FlagStoreError and changes nothing here.

    def _written(self, read: FlipperHash) -> None:
        self._read_worked(self._clock(), read, None)

    def _change(self, **changes: object) -> None:
        with self._lock:
            self._gates = attrs.evolve(self._gates, **changes)  # type: ignore[arg-type]

    def enable(self) -> None:
        """Open the boolean gate: on for everyone, the other gates cleared, as Flipper's.

        Flipper's boolean ``enable`` clears the feature first: afterwards
        :attr:`actors` is empty and both percentages are 0, in memory as in
        Redis.

        Raises:
            FlagStoreError: with a store, when Redis cannot be written.
        """
        if self._store is not None:
            return self._written(self._store.enable(self.name))
        return self._change(
            boolean=True, actors=frozenset(), percentage_of_actors=0.0, percentage_of_time=0.0
        )

    def disable(self) -> None:
        """Close every gate, as Flipper's ``disable`` does: off for everyone.

        With a store this deletes the feature's hash (the rollback), keeping
        its name in ``flipper_features``.

        Raises:
            FlagStoreError: with a store, when Redis cannot be written.
        """
        if self._store is not None:
            return self._written(self._store.disable(self.name))
        return self._change(
            boolean=False, actors=frozenset(), percentage_of_actors=0.0, percentage_of_time=0.0
        )

    def remove(self) -> None:
        """Forget the feature, as Flipper's ``remove``: every gate closed.

        With a store this also takes its name out of ``flipper_features``.

        Raises:
            FlagStoreError: with a store, when Redis cannot be written.
        """
        if self._store is None:
            return self.disable()
        self._store.remove(self.name)
        from ._flipper_redis import FlipperHash  # noqa: PLC0415 (loaded with the store)

        return self._written(FlipperHash())

    def enable_actor(self, actor: str) -> None:
        """Turn the flag on for one actor id, like ``"Project:123"``."""
        actor = _actor_id(actor)
        if self._store is not None:
            return self._written(self._store.enable_actor(self.name, actor))
        with self._lock:
            self._gates = attrs.evolve(self._gates, actors=self._gates.actors | {actor})
        return None

    def disable_actor(self, actor: str) -> None:
        """Remove one actor id from the actors gate."""
        actor = _actor_id(actor)
        if self._store is not None:
            return self._written(self._store.disable_actor(self.name, actor))
        with self._lock:
            self._gates = attrs.evolve(self._gates, actors=self._gates.actors - {actor})
        return None

    def _set_percentage(self, gate: str, percentage: float) -> None:
        if self._store is None:
            return self._change(**{gate: percentage})
        return self._written(self._store.set_percentage(self.name, gate, percentage))

    def enable_percentage_of_actors(self, percentage: float) -> None:
        """Set the percentage-of-actors gate (0-100, fractions allowed)."""
        self._set_percentage("percentage_of_actors", _percentage("percentage", percentage))

    def disable_percentage_of_actors(self) -> None:
        """Close the percentage-of-actors gate (with a store: writes ``"0"``, as Flipper)."""
        self._set_percentage("percentage_of_actors", 0.0)

    def enable_percentage_of_time(self, percentage: float) -> None:
        """Set the percentage-of-time gate (0-100, fractions allowed)."""
        self._set_percentage("percentage_of_time", _percentage("percentage", percentage))

    def disable_percentage_of_time(self) -> None:
        """Close the percentage-of-time gate (with a store: writes ``"0"``, as Flipper)."""
        self._set_percentage("percentage_of_time", 0.0)

    # -- closing ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the sync Redis client made from a URL (clients handed in stay open)."""
        if self._store is not None:
            self._store.close()

    async def aclose(self) -> None:
        """Close the asyncio client made from a URL for the running loop, then :meth:`close`."""
        if self._store is not None:
            await self._store.aclose()
            self._store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
