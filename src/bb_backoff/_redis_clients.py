"""redis-py clients for the library's Redis parts: made from a URL, told apart, described.

The account gate's store (:mod:`._redis`), the fleet-wide flag's store
(:mod:`._flipper_redis`) and the benchmark's Redis check all take a URL or a
client.  From a URL they make clients the same way: short timeouts and no
retries, because a request is waiting behind every call and must never wait
long for Redis.  Whatever they were given, they name it without its password
and scrub the password from the error messages they pass on.

redis-py is an optional dependency: it is imported here only when a client
is made, or when the value asked about may be one.
"""

from __future__ import annotations

import itertools
import re
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import parse_qsl, unquote, unquote_plus, urlsplit

from ._exceptions import redis_password_cut, redis_tail_has_at, split_userinfo, without_port

if TYPE_CHECKING:
    import redis
    import redis.asyncio

SCHEMES: Final = ("redis", "rediss", "unix")
"""The URL schemes redis-py connects with."""


def is_redis_url(value: str) -> bool:
    """Whether ``value`` is a ``redis://``, ``rediss://`` or ``unix://`` URL (by its scheme).

    In any case (``REDIS://``): a scheme is case-insensitive (RFC 3986).
    """
    scheme, separator, _ = value.partition("://")
    return bool(separator) and scheme.lower() in SCHEMES


def _lower_scheme(url: str) -> str:
    """``url`` with its scheme in lower case: redis-py's sync client refuses ``REDIS://``."""
    scheme, separator, rest = url.partition("://")
    return f"{scheme.lower()}{separator}{rest}" if separator else url


def is_redis_client(value: object) -> bool:
    """Whether ``value`` is a redis-py client (sync or asyncio), without importing redis."""
    module = type(value).__module__
    return (module == "redis" or module.startswith("redis.")) and callable(
        getattr(value, "register_script", None)
    )


def client_kind(value: object) -> Literal["sync", "async"] | None:
    """``"sync"`` for a :class:`redis.Redis`, ``"async"`` for a :class:`redis.asyncio.Redis`.

    ``None`` for anything else; redis is not imported unless something
    imported it already (nothing can be its client otherwise).
    """
    if "redis" not in sys.modules:
        return None
    import redis  # noqa: PLC0415 (imported already: the check above)
    import redis.asyncio  # noqa: PLC0415

    if isinstance(value, redis.Redis):
        return "sync"
    if isinstance(value, redis.asyncio.Redis):
        return "async"
    return None


# -- clients made from a URL ---------------------------------------------------------------


def _options(timeout: float, retry: object) -> dict[str, Any]:
    # No retry: the caller is a request waiting, so it waits at most one
    # connect and one answer timeout.  (A pooled connection that a restart
    # broke is replaced when it is taken from the pool.)  The URL's own
    # query (``?socket_timeout=0.5``) wins over these.
    return {"socket_timeout": timeout, "socket_connect_timeout": timeout, "retry": retry}


class UnusableRedisURL(ValueError):
    """A Redis URL that redis-py parses but would misread, or fail on at the first command.

    Its message names what to fix and quotes no piece of the user part (where
    a password is), so callers may pass it on beside the redacted URL.
    """


_DATABASE: Final = re.compile(r"[0-9]+")
_SHORTEST_SCRUBBED_PATH: Final = 3
ENCODE_ADVICE: Final = "percent-encode a password that holds '/', '?', '#', '&' or '@'"
"""What to do about a password redis-py would cut (the URL's delimiters, unencoded)."""
_OCSP_SETTINGS: Final = ("ssl_validate_ocsp", "ssl_ocsp_")
"""redis-py's OCSP settings: the sync connections' only, and misread from a URL's text."""


def _check_url(url: str) -> None:
    """Refuse a URL redis-py would read otherwise than it is written.

    A password holding ``/``, ``?`` or ``#`` unencoded ends the host there
    for redis-py, and the rest of the password becomes the path or the
    query.  redis-py reads a ``redis://`` URL's path as a database number
    with every ``/`` removed, and quietly ignores one that is not a number
    (``redis://host/gate`` is database 0, shared with whatever else uses
    it; ``redis://host/1/2`` is database 12).  It drops a fragment and a
    query field without ``=``, which is where a password holding ``#`` or
    ``&`` unencoded leaves its rest.

    Raises:
        UnusableRedisURL: any of those.
    """
    _, userinfo, _ = split_userinfo(url)
    if userinfo is not None and any(c in userinfo for c in "/?#"):
        raise UnusableRedisURL(
            "its user part holds '/', '?' or '#' (a password cut there): "
            "percent-encode a password that holds '/', '?', '#' or '@'"
        )
    parts = urlsplit(url)
    if "#" in url:  # (not in the user part: refused above)
        raise UnusableRedisURL(
            "it holds a '#' (redis-py ignores what follows, perhaps a password cut there): "
            + ENCODE_ADVICE
        )
    fields = parts.query.split("&")
    names = {unquote_plus(field.partition("=")[0]).lower() for field in fields}
    if any(name.startswith(_OCSP_SETTINGS) for name in names):
        # (Not named: a field after a password may be a piece of it.)
        raise UnusableRedisURL(
            "it holds an OCSP setting (ssl_validate_ocsp, ssl_validate_ocsp_stapled, "
            "ssl_ocsp_context, ssl_ocsp_expected_cert): redis-py reads a URL's settings as "
            "text, which asks for no OCSP check ('true') or fails at the first command, and its "
            "asyncio connections take none of them; hand the store a redis.Redis made with them"
        )
    if "?" in parts.query:
        raise UnusableRedisURL(
            "its query holds a second '?' (redis-py reads what follows as part of a value): "
            "separate settings with '&', and percent-encode a '?' in a value or a password"
        )
    if any(field and "=" not in field for field in fields):
        raise UnusableRedisURL(
            "its query holds a field without '=' (redis-py ignores it, perhaps a password cut "
            "at a '&'): " + ENCODE_ADVICE
        )
    if parts.scheme.lower() == "unix":
        if "@" in parts.path and parts.netloc.rpartition("@")[2]:
            raise UnusableRedisURL(
                "a unix:// URL has no host, and an '@' in its path after one ends a password "
                "cut at a '/': percent-encode a password that holds '/', '?', '#' or '@'"
            )
        return  # the path is the socket's; the database is in the query
    segments = [part.strip() for part in unquote(parts.path).split("/")]
    numbers = [part for part in segments if part]
    if len(numbers) > 1 or not all(_DATABASE.fullmatch(part) for part in numbers):
        raise UnusableRedisURL(
            "the path after the host must be a database number, such as /0, or nothing "
            "(redis-py would read another path as some database: /gate as 0, /1/2 as 12)"
        )


def _check_connections(url: str, client: redis.Redis | redis.asyncio.Redis) -> None:
    """Refuse a URL whose query holds a setting redis-py's connections refuse.

    redis-py hands a query setting it does not know, or a value it cannot
    use, to each connection it opens, which refuses it at the first command,
    long after the URL was given (a ``TypeError`` out of a request).  A
    connection is only configured here: it connects when first used.

    Raises:
        UnusableRedisURL: naming the setting, with any password scrubbed.
    """
    import redis  # noqa: PLC0415 (the optional dependency: the client is one of its)

    pool = client.connection_pool
    try:
        pool.connection_class(**pool.connection_kwargs)
    except (TypeError, ValueError, redis.RedisError) as error:
        reason = scrub(str(error), url_passwords(url), "***")
        parts = urlsplit(url)
        if "@" in reason or redis_tail_has_at(parts):
            # Perhaps naming a piece of a password cut at a "?" (see redact_url).
            reason = "not shown: the URL holds an '@' after its host"
        elif redis_password_cut(parts):
            # Perhaps naming a piece of a password cut at a "&" (see redact_url).
            reason = "not shown: the URL's query holds fields after its password"
        raise UnusableRedisURL(f"redis-py refuses a setting in its query ({reason})") from None


def sync_client(url: str, *, timeout: float) -> redis.Redis:
    """A :class:`redis.Redis` for ``url``: ``timeout`` seconds to connect and to answer, no retry.

    Raises:
        UnusableRedisURL: redis-py would misread the URL or fail on it later.
        ValueError, TypeError: redis-py cannot use the URL (its message may
            quote pieces of the URL: callers report their own).
    """
    import redis  # noqa: PLC0415 (the optional dependency)
    from redis.backoff import NoBackoff  # noqa: PLC0415
    from redis.retry import Retry  # noqa: PLC0415

    url = _lower_scheme(url)
    _check_url(url)
    client = redis.Redis.from_url(url, **_options(timeout, Retry(NoBackoff(), 0)))
    _check_connections(url, client)
    return client


def async_client(url: str, *, timeout: float) -> redis.asyncio.Redis:
    """:func:`sync_client` as a :class:`redis.asyncio.Redis` (it belongs to one event loop).

    Raises:
        UnusableRedisURL: as :func:`sync_client`; also for a setting only
            the sync connections take (see :func:`check_asyncio`).
    """
    import redis.asyncio  # noqa: PLC0415 (the optional dependency)
    from redis.asyncio.retry import Retry  # noqa: PLC0415
    from redis.backoff import NoBackoff  # noqa: PLC0415

    url = _lower_scheme(url)
    _check_url(url)
    client = redis.asyncio.Redis.from_url(url, **_options(timeout, Retry(NoBackoff(), 0)))
    _check_connections(url, client)
    return client


def check_asyncio(url: str) -> None:
    """Refuse a URL (taken by the sync client) whose settings redis-py's asyncio connections refuse.

    The stores serve sync and async callers from one URL: the asyncio
    client is made on the first async call, once per event loop, and a
    setting only it refuses would fail every async request then.  Nothing
    connects here.

    Raises:
        UnusableRedisURL: as :func:`sync_client`.
    """
    async_client(url, timeout=1.0)


# -- passwords, and describing without them ------------------------------------------------


def split_password(url: str) -> tuple[str, str | None]:
    """``url`` with the password of its user part replaced by ``***``, and that password.

    Done before ``urlsplit``, which cuts a password holding ``/``, ``?`` or
    ``#`` short and would leave the rest of it in the path.
    """
    prefix, userinfo, rest = split_userinfo(url)
    if userinfo is None or ":" not in userinfo:
        return url, None
    user, _, password = userinfo.partition(":")
    return f"{prefix}{user}:***@{rest}", password


def url_passwords(url: str) -> list[str]:
    """Every password ``url`` holds, only to scrub them from messages.

    The user part's (as written and percent-decoded) and the values of
    query parameters whose names hold ``password``.
    """
    _, password = split_password(url)
    found = [] if not password else [password, unquote(password)]
    try:
        parts = urlsplit(url)
        query = parse_qsl(parts.query)
    except ValueError:
        return found
    found += [value for key, value in query if "password" in key.lower() and value]
    if redis_tail_has_at(parts):
        # The port may be the digits a password began with (see redact_url),
        # and redis-py's errors name it with the host ("connecting to
        # default:1234", asyncio's "('127.0.0.1', 1234)"), as a number
        # ("01234" shows as 1234).  Only those forms: a short port alone
        # ("0") would hide every such character of the message.
        address = parts.netloc.rpartition("@")[2]
        written = without_port(address)
        # As written, and as redis-py names it: the host urlsplit reads
        # (lower-cased up to a "%"), percent-decoded, an IPv6 address without
        # its brackets.
        read = unquote(parts.hostname or "")
        hosts = list(
            dict.fromkeys(
                form
                for case in (written, written.lower(), read)
                for decoded in (case, unquote(case))
                for form in (decoded, decoded.strip("[]"))
            )
        )
        digits = address[len(written) + 1 :]
        numbers: list[str] = []
        if digits:
            # (int() refuses more than 4,300 digits; no port has 20.)
            readable = digits.isascii() and digits.isdigit() and len(digits) <= 20  # noqa: PLR2004
            numbers = [digits, *([str(int(digits))] if readable else [])]
            # asyncio names the address the host resolved to: "('127.0.0.1', 17)",
            # "('::1', 17, 0, 0)".
            found += [form for number in numbers for form in (f"', {number})", f"', {number}, ")]
            if readable and not int(digits):
                numbers.append("6379")  # redis-py connects to the default port for a port 0
        if written and split_userinfo(url)[1] is not None:
            # The host may be a piece of the password too (redact_url hides
            # it): as redis-py's errors name it, after "to" and before the
            # port (the default one when none is written), or quoted.
            numbers = numbers or ["6379"]
            found += [form for host in hosts for form in (f"to {host}:", f"'{host}'")]
        for number, host in itertools.product(numbers, hosts):
            found += [f"{host}:{number}", f"'{host}', {number}"]
        if parts.scheme.lower() == "unix":
            # The socket path, in the path or (redis-py reads it there too)
            # in the query: after a cut password, either may hold its rest.
            # (Not a path of a character or two: "/" would hide every "/" of
            # a message, and so little of a password says nothing.)
            paths = [parts.path, *(value for key, value in query if key == "path")]
            found += [
                form
                for path in paths
                for form in (path, unquote(path))
                if len(form) >= _SHORTEST_SCRUBBED_PATH
            ]
    return found


def _connection_kwargs(client: object) -> Mapping[str, Any]:
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", None)
    return kwargs if isinstance(kwargs, Mapping) else {}


def client_passwords(client: object) -> list[str]:
    """The password a redis-py client logs in with (none or one), only to scrub it from messages."""
    password = _connection_kwargs(client).get("password")
    return [str(password)] if password else []


def describe_client(client: object) -> str:
    """Where a redis-py client points, as a URL without its password.

    ``redis://<host>:<port>/<db>`` or ``unix://<path>?db=<db>``, with
    redis-py's defaults for what the client does not say.
    """
    kwargs = _connection_kwargs(client)
    db = kwargs.get("db", 0)
    if kwargs.get("path"):
        return f"unix://{kwargs['path']}?db={db}"
    return f"redis://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{db}"


_HOLE: Final = "\ue000"
"""Where a password was, until the end of :func:`scrub` (a private-use character)."""


def scrub(text: str, passwords: list[str], mark: str) -> str:
    """``text`` with every one of ``passwords`` replaced by ``mark``, the longest first.

    Longest first: a shorter one that another holds (``host:`` in
    ``host:1234``) would otherwise break the longer one before its turn.
    The marks go in last, so that a password that is a piece of the mark
    is not found again inside it.
    """
    # (dict.fromkeys, not set: the same order whatever the hash seed.)
    for password in sorted(dict.fromkeys(passwords), key=len, reverse=True):
        if password:
            text = text.replace(password, _HOLE)
    return text.replace(_HOLE, mark)
