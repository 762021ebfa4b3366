"""One feature's gates in Redis, in the layout of Ruby Flipper's Redis adapter.

Theory of operation.  Flipper keeps a set ``flipper_features`` of feature
names and, per feature, a hash named after it (both behind an optional key
prefix).  The hash's fields are the gates: ``boolean`` (``"true"``),
``percentage_of_actors`` and ``percentage_of_time`` (numbers as strings),
one ``actors/<id>`` (``"1"``) per enabled actor and one ``groups/<name>`` per
enabled group.  Every change first adds the name to the set, then touches the
hash: enabling the boolean gate clears the hash and writes ``boolean``;
disabling it deletes the hash (the rollback: every gate closes at once);
disabling a percentage writes ``"0"``; disabling an actor deletes its field.
Removing a feature takes it out of the set and deletes its hash.

This module reads such a hash into a :class:`FlipperHash` (with Flipper's
lenient typecasts, so a hash written by a Ruby Flipper reads as Ruby reads it)
and writes it as Flipper does.  Each change runs in one MULTI/EXEC
transaction with the read of the new hash, so a concurrent writer can never
leave half a change behind and the writer sees exactly the state it made.
Evaluating the gates is :mod:`._flags`' job; nothing here decides anything.

Every error leaves as :class:`~bb_backoff._flags.FlagStoreError` whose
message names the store without its password.
"""

from __future__ import annotations

import asyncio
import re
import threading
import weakref
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Final, TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import attrs
import redis
import redis.asyncio
from redis.connection import parse_url

from ._exceptions import hide_redis_tail, secret_name
from ._flags import FlagStoreError
from ._redis_clients import (
    ENCODE_ADVICE,
    UnusableRedisURL,
    async_client,
    check_asyncio,
    client_passwords,
    describe_client,
    is_redis_url,
    scrub,
    split_password,
    sync_client,
    url_passwords,
)

FEATURES_KEY: Final = "flipper_features"
"""The set of feature names, as Flipper names it."""
BOOLEAN: Final = "boolean"
PERCENTAGE_OF_ACTORS: Final = "percentage_of_actors"
PERCENTAGE_OF_TIME: Final = "percentage_of_time"
ACTORS_PREFIX: Final = "actors/"
GROUPS_PREFIX: Final = "groups/"

DEFAULT_TIMEOUT: Final = 0.25
"""Seconds to connect, and to wait for an answer, on a store made from a URL (no retries).

A request asks the flag; it must not wait long for Redis.  A URL may set
its own (``?socket_timeout=0.5&socket_connect_timeout=0.5``).
"""
# Flipper's Typecast.to_boolean: these strings are true, anything else false.
_TRUTHS: Final = frozenset({"true", "1"})
# Ruby's String#to_f: the longest leading decimal number, else 0.0.  ASCII
# only: Ruby reads no other digits (fullwidth "100".to_f is 0.0) nor other spaces.
_RUBY_FLOAT: Final = re.compile(
    r"\s*([+-]?(?:\d+(?:_\d+)*(?:\.\d+(?:_\d+)*)?|\.\d+(?:_\d+)*)(?:[eE][+-]?\d+)?)",
    re.ASCII,
)

AnyRedis: TypeAlias = "redis.Redis | redis.asyncio.Redis"


@attrs.frozen
class FlipperHash:
    """One feature's hash, read as Flipper reads it.

    Attributes:
        boolean: the boolean gate (``"true"`` or ``"1"``).
        actors: the ids of the ``actors/<id>`` fields.
        groups: the names of the ``groups/<name>`` fields; Flipper's groups
            are Ruby blocks, so this library shows them but cannot open them.
        percentage_of_actors: 0-100 (clamped, as Flipper's gates behave).
        percentage_of_time: 0-100.
        ignored: other fields (a newer Flipper's ``expression``, say) that
            this library does not evaluate, sorted.
    """

    boolean: bool = False
    actors: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    percentage_of_actors: float = 0.0
    percentage_of_time: float = 0.0
    ignored: tuple[str, ...] = ()

    @property
    def unevaluated(self) -> tuple[str, ...]:
        """The fields that may open the flag in Ruby but never here."""
        return tuple(sorted(GROUPS_PREFIX + group for group in self.groups)) + self.ignored


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def ruby_to_f(text: str) -> float:
    """Ruby's ``String#to_f``, which Flipper's typecasts use: ``"12.5x"`` is 12.5, ``"x"`` is 0."""
    match = _RUBY_FLOAT.match(text)
    return 0.0 if match is None else float(match.group(1).replace("_", ""))


def _percentage_field(text: str | None) -> float:
    # A percentage outside 0-100 behaves as its bound in Flipper's gates
    # (crc32 % 100_000 < 150_000 always holds; rand < -0.1 never does).
    return 0.0 if text is None else min(max(ruby_to_f(text), 0.0), 100.0)


def parse_flipper_hash(fields: Mapping[Any, Any]) -> FlipperHash:
    """Read a feature's hash (``HGETALL``) as Ruby Flipper reads it.

    Args:
        fields: the hash, with bytes or str fields and values.

    Returns:
        The gates; a missing hash (``{}``) is every gate closed.
    """
    text = {_text(field): _text(value) for field, value in fields.items()}
    actors: set[str] = set()
    groups: set[str] = set()
    ignored: list[str] = []
    for field in text:
        if field.startswith(ACTORS_PREFIX):
            actors.add(field.removeprefix(ACTORS_PREFIX))
        elif field.startswith(GROUPS_PREFIX):
            groups.add(field.removeprefix(GROUPS_PREFIX))
        elif field not in (BOOLEAN, PERCENTAGE_OF_ACTORS, PERCENTAGE_OF_TIME):
            ignored.append(field)
    return FlipperHash(
        boolean=text.get(BOOLEAN) in _TRUTHS,
        actors=frozenset(actors),
        groups=frozenset(groups),
        percentage_of_actors=_percentage_field(text.get(PERCENTAGE_OF_ACTORS)),
        percentage_of_time=_percentage_field(text.get(PERCENTAGE_OF_TIME)),
        ignored=tuple(sorted(ignored)),
    )


def format_percentage(value: float) -> str:
    """A percentage as Flipper writes it: ``"25"`` for a whole number, else ``"12.5"``.

    Never in exponent form (``1e-05``), which Ruby's ``to_f`` would still
    read but people would not; it reads back as exactly ``value``.
    """
    if value == int(value):
        return str(int(value))
    return format(Decimal(repr(value)), "f")


def check_name(name: object) -> str:
    """A feature name that can live in the layout: a non-empty string, not the set's own key.

    Raises:
        ValueError: naming ``name``.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string with a store, got {name!r}")
    if name == FEATURES_KEY:
        raise ValueError(f"name {name!r} is the key of Flipper's set of features")
    return name


# -- describing a store without its secrets ---------------------------------------


def _redact_url(url: str) -> str:
    """The URL with its password (in the user part or the query) replaced by ``***``."""
    if "://" not in url:
        return "<a string that is not a URL>"  # "user:pw@host" would parse as scheme "user"
    masked, _ = split_password(url)
    try:
        parts = urlsplit(masked)
        query = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        return "<an unparsable URL>"
    hidden = urlencode(
        [(key, "***" if secret_name(key) else value) for key, value in query], safe="*"
    )
    # The host is what follows the authority's last "@": a password holding
    # "#", "?" or "/" and then "@" leaves pieces between the mask and it.
    user, at, address = parts.netloc.rpartition("@")
    head, mask, _ = user.partition(":***")
    netloc = f"{head + mask if mask else user}{at}{address}"
    # Perhaps a password cut after digits that read as a port (see redact_url).
    netloc, path, hidden, _ = hide_redis_tail(parts, (netloc, parts.path, hidden, ""), "***")
    rebuilt = urlunsplit((parts.scheme, netloc, path, hidden, ""))
    if not parts.netloc:  # urlunsplit drops the empty authority of unix:///path
        rebuilt = f"{parts.scheme}://{rebuilt.removeprefix(parts.scheme + ':')}"
    return rebuilt


# -- the store ---------------------------------------------------------------------------


class RedisFlagStore:
    """Reads and writes features in Flipper's Redis layout.

    Args:
        store: a ``redis://``, ``rediss://`` or ``unix://`` URL (the store
            makes and closes its own clients: a sync one, and an asyncio one
            per event loop for :meth:`read_async`), or a ``redis.Redis``
            client (:meth:`read_async` runs it in a worker thread), or a
            ``redis.asyncio.Redis`` client (only :meth:`read_async`).
            Clients handed in stay the caller's to close.
        key_prefix: prepended to every key, like Flipper's ``key_prefix:``.

    Raises:
        ValueError: ``store`` is none of those, or ``key_prefix`` not a string.
    """

    def __init__(self, store: str | AnyRedis, *, key_prefix: str = "") -> None:
        if not isinstance(key_prefix, str):
            raise ValueError(f"key_prefix must be a string, got {type(key_prefix).__name__}")
        self.key_prefix: Final = key_prefix
        self._url: str | None = None
        self._sync_client: redis.Redis | None = None
        self._async_client: redis.asyncio.Redis | None = None
        self._loop_clients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, redis.asyncio.Redis
        ] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        if isinstance(store, str):
            self.description, self._secrets = _redact_url(store), url_passwords(store)
            if not is_redis_url(store):
                raise ValueError(
                    "store must be a redis://, rediss:// or unix:// URL or a redis-py client, "
                    f"got {self.description!r}"
                )
            self._sync_client = self._client_from_url(store)
            self._url = store
        elif isinstance(store, redis.Redis | redis.asyncio.Redis):
            if isinstance(store, redis.asyncio.Redis):
                self._async_client = store
            else:
                self._sync_client = store
            self.description, self._secrets = describe_client(store), client_passwords(store)
        else:
            raise ValueError(
                "store must be a redis:// URL, a redis.Redis or a redis.asyncio.Redis client, "
                f"got {type(store).__name__}"
            )

    def _client_from_url(self, url: str) -> redis.Redis:
        # redis-py's message may quote a piece of the URL (a port, say), and
        # a password holding "/", "?" or "#" gets cut into such pieces: the
        # diagnosis comes from parsing the redacted URL, never the real one.
        try:
            parse_url(self.description)  # type: ignore[no-untyped-call]  # unannotated upstream
        except (ValueError, TypeError) as error:
            raise ValueError(
                f"store is not a valid Redis URL: {self.description!r} ({error})"
            ) from None
        try:
            client = sync_client(url, timeout=DEFAULT_TIMEOUT)
            check_asyncio(url)  # read_async makes its client later, once per event loop
        except UnusableRedisURL as error:
            raise ValueError(
                f"store is not a valid Redis URL: {self.description!r}: {error}"
            ) from None
        except (ValueError, TypeError):
            raise ValueError(
                f"store is not a valid Redis URL: {self.description!r} ({ENCODE_ADVICE})"
            ) from None
        return client

    def __repr__(self) -> str:
        return f"RedisFlagStore({self.description!r}, key_prefix={self.key_prefix!r})"

    @property
    def features_key(self) -> str:
        """The key of the set of feature names."""
        return f"{self.key_prefix}{FEATURES_KEY}"

    def key(self, name: str) -> str:
        """The key of feature ``name``'s hash."""
        return f"{self.key_prefix}{name}"

    @property
    def can_sync(self) -> bool:
        """Whether the sync methods work (a URL or a ``redis.Redis`` client)."""
        return self._sync_client is not None

    # -- errors --------------------------------------------------------------------------

    def _failure(self, doing: str, error: BaseException) -> FlagStoreError:
        detail = scrub(f"{type(error).__name__}: {error}", self._secrets, "***").rstrip(".")
        return FlagStoreError(f"flag store {self.description} failed {doing}: {detail}")

    def _sync(self) -> redis.Redis:
        if self._sync_client is None:
            raise TypeError(
                f"the flag store {self.description} is a redis.asyncio client: only "
                "enabled_async can read it; pass a URL or a redis.Redis client for sync use"
            )
        return self._sync_client

    def _run(self, doing: str, call: Callable[[redis.Redis], Any]) -> Any:
        client = self._sync()
        try:
            return call(client)
        except Exception as error:  # noqa: BLE001 (every failure leaves as FlagStoreError)
            raise self._failure(doing, error) from None

    # -- reads -----------------------------------------------------------------------------

    def read(self, name: str) -> FlipperHash:
        """Feature ``name``'s gates (all closed when it has no hash).

        Raises:
            FlagStoreError: Redis is unreachable or failed.
            TypeError: the store is an asyncio client.
        """
        fields = self._run(f"reading {name!r}", lambda client: client.hgetall(self.key(name)))
        return parse_flipper_hash(fields)

    async def read_async(self, name: str) -> FlipperHash:
        """:meth:`read` without blocking the event loop."""
        client, url = self._async_client, self._url
        if client is None and url is None:  # a sync client handed in: run it off the loop
            return await asyncio.to_thread(self.read, name)
        try:
            if client is None:
                assert url is not None  # noqa: S101 (the branch above)
                client = self._client_for_running_loop(url)
            fields = await client.hgetall(self.key(name))
        except Exception as error:  # noqa: BLE001 (every failure leaves as FlagStoreError)
            raise self._failure(f"reading {name!r}", error) from None
        return parse_flipper_hash(fields)

    def _client_for_running_loop(self, url: str) -> redis.asyncio.Redis:
        # An asyncio client belongs to the loop it first ran on: one per loop.
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._loop_clients.get(loop)
            if client is None:
                client = async_client(url, timeout=DEFAULT_TIMEOUT)
                self._loop_clients[loop] = client
            return client

    def is_known(self, name: str) -> bool:
        """Whether ``name`` is in the set of features (Flipper's ``exist?``)."""
        return bool(
            self._run(
                f"reading {self.features_key!r}",
                lambda client: client.sismember(self.features_key, name),
            )
        )

    # -- writes, each one transaction ---------------------------------------------------------
    #
    # Redis does not roll a MULTI back: a command that fails inside it (HSET
    # on a key that holds a string) leaves the others applied, the feature's
    # name added to the set, say.  So the keys' types are checked first,
    # under WATCH (a change in between makes EXEC fail, and the write starts
    # again), and a write that could fail changes nothing instead.

    def _transaction(
        self, doing: str, keys: Mapping[str, str], queue: Callable[[redis.client.Pipeline], object]
    ) -> list[Any]:
        """Run ``queue``'s commands in one MULTI/EXEC once each of ``keys`` is empty or its type.

        Raises:
            FlagStoreError: Redis is unreachable or failed, or a key holds
                another type (then nothing is written).
        """

        def transaction(pipe: redis.client.Pipeline) -> None:
            for key, expected in keys.items():
                kind = pipe.type(key)  # immediate: the pipeline is watching
                kind = kind.decode() if isinstance(kind, bytes) else kind
                if kind not in (expected, "none"):
                    raise redis.ResponseError(
                        f"WRONGTYPE {key!r} holds a {kind}, not a {expected}; nothing written"
                    )
            pipe.multi()
            queue(pipe)

        def run(client: redis.Redis) -> Any:
            return client.transaction(transaction, *keys)  # EXEC's replies, retried on WATCH

        replies: list[Any] = self._run(doing, run)
        return replies

    def _change(
        self,
        name: str,
        doing: str,
        steps: Callable[[redis.client.Pipeline, str], object],
        *,
        replaces: bool = False,
    ) -> FlipperHash:
        """Add ``name`` to the set, change its hash with ``steps``, and read the hash back.

        ``replaces``: the steps delete the key first, so it may hold anything.
        """
        key = self.key(name)
        types = {self.features_key: "set"} if replaces else {self.features_key: "set", key: "hash"}

        def queue(pipe: redis.client.Pipeline) -> None:
            pipe.sadd(self.features_key, name)
            steps(pipe, key)
            pipe.hgetall(key)

        return parse_flipper_hash(self._transaction(f"{doing} {name!r}", types, queue)[-1])

    def enable(self, name: str) -> FlipperHash:
        """Open the boolean gate: the hash becomes ``{"boolean": "true"}``, as in Flipper."""

        def steps(pipe: redis.client.Pipeline, key: str) -> None:
            pipe.delete(key)
            pipe.hset(key, BOOLEAN, "true")

        return self._change(name, "enabling", steps, replaces=True)

    def disable(self, name: str) -> FlipperHash:
        """Close every gate: delete the hash, keep the name in the set (the rollback)."""
        return self._change(name, "disabling", lambda pipe, key: pipe.delete(key), replaces=True)

    def enable_actor(self, name: str, actor: str) -> FlipperHash:
        """Add the field ``actors/<actor>`` = ``"1"``."""
        field = ACTORS_PREFIX + actor
        return self._change(name, f"enabling {actor!r} for", lambda p, key: p.hset(key, field, "1"))

    def disable_actor(self, name: str, actor: str) -> FlipperHash:
        """Delete the field ``actors/<actor>``."""
        field = ACTORS_PREFIX + actor
        return self._change(name, f"disabling {actor!r} for", lambda p, key: p.hdel(key, field))

    def set_percentage(self, name: str, gate: str, percentage: float) -> FlipperHash:
        """Write ``percentage_of_actors`` or ``percentage_of_time`` (``"0"`` closes it).

        Raises:
            ValueError: ``gate`` is neither.
        """
        if gate not in (PERCENTAGE_OF_ACTORS, PERCENTAGE_OF_TIME):
            raise ValueError(f"gate must be {PERCENTAGE_OF_ACTORS!r} or {PERCENTAGE_OF_TIME!r}")
        value = format_percentage(percentage)
        return self._change(name, f"setting {gate} of", lambda p, key: p.hset(key, gate, value))

    def remove(self, name: str) -> bool:
        """Forget feature ``name``: out of the set, hash deleted.  Whether it was in the set."""

        def queue(pipe: redis.client.Pipeline) -> None:
            pipe.srem(self.features_key, name)
            pipe.delete(self.key(name))

        types = {self.features_key: "set"}
        return bool(self._transaction(f"removing {name!r}", types, queue)[0])

    # -- closing --------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the sync client this store made from its URL (a client handed in is left open)."""
        if self._url is not None and self._sync_client is not None:
            self._sync_client.close()

    async def aclose(self) -> None:
        """Close the asyncio client this store made for the running loop, if any."""
        if self._url is None:
            return
        with self._lock:
            client = self._loop_clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()
