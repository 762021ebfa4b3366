"""The feature flag: which actors get the exponential backoff.

The client asks its :class:`FlagSource` once per logical request, for its
actor, whether :data:`FLAG_NAME` is on.  :class:`FlipperFlag` implements
GitLab's gates (Flipper's) with the same formulas, so a percentage rollout
here picks the same projects as GitLab does at the same percentage.
"""

from __future__ import annotations

import inspect
import logging
import random
import threading
import zlib
from collections.abc import Callable, Iterable
from typing import Any, Final, Protocol, runtime_checkable

import attrs

FLAG_NAME: Final = "bitbucket_importer_exponential_backoff"
"""The flag's name, as in GitLab (type development, introduced in 16.7)."""

logger: Final = logging.getLogger("bb_backoff")

# Flipper scales percentages by 1,000 so that fractional percentages work.
_SCALING_FACTOR: Final = 1_000


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
        on: the answer to every question.
    """

    on: bool

    def enabled(self, name: str, actor: str | None) -> bool:  # noqa: ARG002 (protocol signature)
        """Return ``on``, whatever the flag and actor."""
        return self.on


class FlagCheck:
    """Asks a flag source once per logical request, and never lets it fail the request.

    The clients and :class:`~bb_backoff.RetryTransport` ask through it: an
    exception, or any answer but ``True``/``False``, is a failure of the
    source: the answer is "off" (the legacy policy), a warning is logged and
    :attr:`errors` counts it.

    Args:
        flag: a :class:`FlagSource`, or a bool for a flag that never changes.
        actor: the id the flag is checked for, like ``"Project:123"``.

    Raises:
        ValueError: ``flag`` is neither, or ``actor`` is not an id string.
    """

    __slots__ = ("_ask_async", "_lock", "actor", "errors", "flag")

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
        self.errors = 0
        """How many times the source failed (and "off" was used)."""
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
            return answer
        return self._failed(f"returned {type(answer).__name__}, not a bool", None)

    def _failed(self, what: str, error: BaseException | None) -> bool:
        with self._lock:
            self.errors += 1
        logger.warning(
            "flag source %s %s while checking %s for %s; using the legacy policy",
            type(self.flag).__name__,
            what,
            FLAG_NAME,
            self.actor,
            exc_info=error,
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
        raise ValueError(f"{name} must be a number from 0 to 100, got {value!r}")
    return float(value)


def _actor_id(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"actor must be a non-empty id string like 'Project:123', got {value!r}")
    return value


@attrs.frozen
class _Gates:
    boolean: bool
    actors: frozenset[str]
    percentage_of_actors: float
    percentage_of_time: float


class FlipperFlag:
    """A flag with Flipper's gates, changeable at runtime from any thread.

    The gates are checked in Flipper's order: boolean, actors, percentage of
    actors, percentage of time; the flag is on if any gate is open.  Every
    change replaces an immutable snapshot of the gates, so a change such as
    :meth:`disable` takes effect on the very next request.

    Args:
        name: the feature the gates belong to; other names are off.
        boolean: open for everyone.
        actors: ids that are always on, like ``"Project:123"``.
        percentage_of_actors: 0-100; Flipper's CRC-32 cohort.
        percentage_of_time: 0-100; a fresh random draw on every check.
        random: a ``() -> float`` in ``[0, 1)`` for the percentage-of-time
            gate (seed it for reproducible tests).

    Raises:
        ValueError: for an invalid percentage or actor id; the message names it.
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
    ) -> None:
        self.name: Final = name
        if isinstance(actors, str):
            raise ValueError(f"actors must be a collection of ids, not one string: {actors!r}")
        self._random = random
        self._lock = threading.Lock()
        self._gates = _Gates(
            boolean=bool(boolean),
            actors=frozenset(_actor_id(actor) for actor in actors),
            percentage_of_actors=_percentage("percentage_of_actors", percentage_of_actors),
            percentage_of_time=_percentage("percentage_of_time", percentage_of_time),
        )

    def __repr__(self) -> str:
        gates = self._gates
        return (
            f"FlipperFlag({self.name!r}, boolean={gates.boolean}, "
            f"actors={sorted(gates.actors)}, percentage_of_actors={gates.percentage_of_actors}, "
            f"percentage_of_time={gates.percentage_of_time})"
        )

    def enabled(self, name: str, actor: str | None) -> bool:
        """Whether flag ``name`` is on for ``actor``.

        Args:
            name: the flag asked about; only :attr:`name` has gates here.
            actor: the actor id, or ``None`` (then only the boolean and
                percentage-of-time gates can open, as in Flipper).

        Returns:
            Whether any gate is open.
        """
        if name != self.name:
            return False
        gates = self._gates  # one snapshot per check: a concurrent change can't tear it
        if gates.boolean:
            return True
        if actor is not None:
            if actor in gates.actors:
                return True
            if gates.percentage_of_actors and actor_in_percentage(
                name, actor, gates.percentage_of_actors
            ):
                return True
        return bool(gates.percentage_of_time) and (self._random() < gates.percentage_of_time / 100)

    @property
    def boolean(self) -> bool:
        """Whether the boolean gate is open."""
        return self._gates.boolean

    @property
    def actors(self) -> frozenset[str]:
        """The actor ids that are always on."""
        return self._gates.actors

    @property
    def percentage_of_actors(self) -> float:
        """The percentage-of-actors gate, 0-100."""
        return self._gates.percentage_of_actors

    @property
    def percentage_of_time(self) -> float:
        """The percentage-of-time gate, 0-100."""
        return self._gates.percentage_of_time

    def _change(self, **changes: object) -> None:
        with self._lock:
            self._gates = attrs.evolve(self._gates, **changes)  # type: ignore[arg-type]

    def enable(self) -> None:
        """Open the boolean gate: on for everyone."""
        self._change(boolean=True)

    def disable(self) -> None:
        """Close every gate, as Flipper's ``disable`` does: off for everyone."""
        self._change(
            boolean=False, actors=frozenset(), percentage_of_actors=0.0, percentage_of_time=0.0
        )

    def enable_actor(self, actor: str) -> None:
        """Turn the flag on for one actor id, like ``"Project:123"``."""
        actor = _actor_id(actor)
        with self._lock:
            self._gates = attrs.evolve(self._gates, actors=self._gates.actors | {actor})

    def disable_actor(self, actor: str) -> None:
        """Remove one actor id from the actors gate."""
        actor = _actor_id(actor)
        with self._lock:
            self._gates = attrs.evolve(self._gates, actors=self._gates.actors - {actor})

    def enable_percentage_of_actors(self, percentage: float) -> None:
        """Set the percentage-of-actors gate (0-100, fractions allowed)."""
        self._change(percentage_of_actors=_percentage("percentage", percentage))

    def disable_percentage_of_actors(self) -> None:
        """Close the percentage-of-actors gate."""
        self._change(percentage_of_actors=0.0)

    def enable_percentage_of_time(self, percentage: float) -> None:
        """Set the percentage-of-time gate (0-100, fractions allowed)."""
        self._change(percentage_of_time=_percentage("percentage", percentage))

    def disable_percentage_of_time(self) -> None:
        """Close the percentage-of-time gate."""
        self._change(percentage_of_time=0.0)
