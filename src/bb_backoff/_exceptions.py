"""Every error bb-backoff raises.

::

    BitbucketError                  base: carries flag_variant and attempts
    ├── HTTPStatusError             a final error response: status, message, detail
    │   ├── Unauthorized            401 (after one token refresh, where possible)
    │   └── NotFound                404
    ├── RetriesExhausted            the policy gave up on 408 / 5xx / transport errors
    │   └── RateLimited             ...gave up while rate limited: waited, last_hint
    ├── UnsafeURL                   a URL off the API's origin, or not valid; nothing sent
    └── InvalidResponse             a body that is not what the API promises
        └── PaginationError         a page without ``values``, or a ``next`` that repeats

Messages never contain credentials: URLs in them are redacted with
:func:`redact_url`, and no header is ever quoted.
"""

from __future__ import annotations

import contextlib
import re
import threading
import weakref
from typing import Any, Final
from urllib.parse import SplitResult, quote, quote_plus, unquote_plus, urlsplit, urlunsplit

# A query or fragment parameter whose name contains one of these is a secret
# (access_token, api_token, private_token, client_secret, apikey, jwt, sig...).
_SECRET_MARKERS: Final = (
    "token",
    "secret",
    "password",
    "passwd",
    "pwd",
    "key",
    "sig",
    "jwt",
    "auth",
    "session",
    "credential",
)
_SECRET_NAMES: Final = frozenset({"code", "pass"})
_UNPARSEABLE: Final = "<unparseable URL>"
_REDACTED: Final = "[redacted]"
_SCHEME_PREFIX: Final = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.\-]*://|//)?")
_REDIS_SCHEMES: Final = frozenset(("redis", "rediss", "unix"))
# A host (a name, an IPv4 or a bracketed IPv6 address) and an optional port.
_HOST_PORT: Final = re.compile(r"(?:[A-Za-z0-9._~%\-]*|\[[0-9A-Fa-f:.]*\])(?::[0-9]*)?")
MESSAGE_LIMIT: Final = 1000
"""Characters of an error message kept; the rest is summarised."""
TEXT_LIMIT: Final = 500
"""Characters kept of text from the server (``error_message``, ``detail``)."""
URL_LIMIT: Final = 500
"""Characters kept of a redacted URL."""


SECRET_MINIMUM: Final = 6
"""Credential values shorter than this are not scrubbed from text (they would
garble it, and no Bitbucket credential is that short)."""

# The values of the credentials alive in the process, by credential: what a
# server may echo back (a 401 body quoting the Authorization header) and that
# error text must never carry on.  Keyed by identity (credentials compare
# equal by value: a WeakKeyDictionary would forget a live one when an equal
# one died), each entry dropped once its credential is.
_SECRETS: Final[dict[int, tuple[weakref.ref[object], tuple[str, ...], tuple[str, ...]]]] = {}
_SECRETS_LOCK: Final = threading.Lock()
# Keys whose credential died, dropped from _SECRETS under the lock by the
# next caller.  A weakref callback runs wherever the collector does, which
# may be inside a critical section of this very thread: it must neither take
# the lock (a deadlock) nor change _SECRETS (under an iteration); appending
# to a list does neither.
_DEAD: Final[list[int]] = []
_KEPT_PER_CREDENTIAL: Final = 16
# A value and its quoted forms (see _quoted_forms): at most this many.
_MOST_FORMS: Final = 7
_ESCAPE: Final = re.compile(r"%[0-9A-F]{2}")


def register_secrets(owner: object, *values: str | None) -> None:
    """Have error and log text scrub ``values`` (``owner``'s own secrets) while ``owner`` lives.

    The values of the first call (a consumer's secret, a basic credential)
    stay scrubbed as long as the owner lives.  A credential whose values
    change (an OAuth 2 refresh) registers the new ones too; of those, the
    last :data:`_KEPT_PER_CREDENTIAL` stay scrubbed (old rotated tokens are
    dead, and a long import rotates hundreds).
    """
    fresh = tuple(
        form
        for value in values
        if value and len(value) >= SECRET_MINIMUM
        for form in _quoted_forms(value)
    )
    key = id(owner)
    with _SECRETS_LOCK:
        _drop_dead()
        entry = _SECRETS.get(key)
        if entry is not None and entry[0]() is owner:
            reference, first, rotated = entry
            new = tuple(value for value in fresh if value not in first and value not in rotated)
            rotated = (rotated + new)[-_KEPT_PER_CREDENTIAL * _MOST_FORMS :]
        else:
            reference = weakref.ref(owner, lambda _dead: _DEAD.append(key))
            first, rotated = tuple(dict.fromkeys(fresh)), ()
        _SECRETS[key] = (reference, first, rotated)


def _quoted_forms(value: str) -> tuple[str, ...]:
    """``value``, and the forms a server quoting it in a URL or a form gives back.

    An Atlassian API token holds ``=`` (and others may hold ``+`` or ``/``):
    echoed percent-encoded (``%3D``), in either case of hex digits, or
    form-encoded, it must be scrubbed as well as the raw value.
    """
    forms = [value]
    for quoted in (quote(value, safe=""), quote_plus(value, safe=""), quote(value)):
        forms += [quoted, _ESCAPE.sub(lambda escape: escape[0].lower(), quoted)]
    return tuple(dict.fromkeys(forms))


def _drop_dead() -> None:
    """Drop the entries of credentials that died (the caller holds the lock)."""
    while _DEAD:
        key = _DEAD.pop()
        entry = _SECRETS.get(key)
        # The key may have been taken since by a new credential at the
        # same address: only a dead reference's entry goes.
        if entry is not None and entry[0]() is None:
            del _SECRETS[key]


def scrub(text: str) -> str:
    """``text`` with every registered credential value replaced by ``[redacted]``."""
    if not _SECRETS:
        return text
    with _SECRETS_LOCK:
        _drop_dead()
        secrets = [
            value for _reference, first, rotated in _SECRETS.values() for value in first + rotated
        ]
    # The longest first: a secret that contains another is replaced whole.
    for secret in sorted(secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, _REDACTED)
    return text


_SCRUB_DEPTH: Final = 4
"""How deep :func:`scrub_error` looks into lists, tuples and dicts in an exception's arguments."""


def scrub_error(error: BaseException) -> BaseException:
    """``error`` (raised below us: a transport's) with the credentials scrubbed from its text.

    It is about to become the cause of one of our errors, or to be raised
    again: its message must not carry a credential on either (a transport
    may quote a request header in it).
    """
    if not _SECRETS:
        return error
    args = error.args
    scrubbed = _scrubbed(args)
    if scrubbed is not args:
        _assign(error, "args", scrubbed)
    # Their text is read from these attributes, not from args (an OSError made
    # with an errno, a UnicodeError).
    names = (
        ("strerror", "filename", "filename2")
        if isinstance(error, OSError)
        else ("reason",)
        if isinstance(error, UnicodeError)
        else ()
    )
    for name in (*names, "__notes__"):
        value = getattr(error, name, None)
        scrubbed = _scrubbed(value)
        if scrubbed is not value:
            _assign(error, name, scrubbed)
    return error


def _assign(error: BaseException, name: str, value: object) -> None:
    """Set ``error.name``; an exception that refuses (frozen, a read-only property) keeps its own.

    Scrubbing must never replace the error it is scrubbing with one of its own.
    """
    with contextlib.suppress(AttributeError, TypeError):
        setattr(error, name, value)


def _scrubbed(value: object, depth: int = 0) -> object:
    """``value`` scrubbed when it is text, or holds text; ``value`` itself when nothing changed.

    A list, tuple or dict is scrubbed item by item (an exception prints its
    arguments' ``repr``), a few levels deep, into a new one of the same type.
    """
    if isinstance(value, str | bytes | bytearray):
        return _scrubbed_text(value)
    new: object
    if depth < _SCRUB_DEPTH and type(value) is dict:
        new = {key: _scrubbed(item, depth + 1) for key, item in value.items()}
        same = all(new[key] is item for key, item in value.items())
    elif depth < _SCRUB_DEPTH and (type(value) is list or type(value) is tuple):
        items = [_scrubbed(item, depth + 1) for item in value]
        same = all(item is old for item, old in zip(items, value, strict=True))
        new = items if type(value) is list else tuple(items)
    else:
        return value
    return value if same else new


def _scrubbed_text(value: str | bytes | bytearray) -> object:
    """Text scrubbed (bytes read as UTF-8, undecodable bytes kept); ``value`` when it held none."""
    if isinstance(value, str):
        scrubbed = scrub(value)
        return value if scrubbed == value else scrubbed
    text = bytes(value).decode("utf-8", "surrogateescape")
    scrubbed = scrub(text)
    if scrubbed == text:
        return value
    return type(value)(scrubbed.encode("utf-8", "surrogateescape"))


def scrub_chain(error: BaseException) -> BaseException:
    """``error`` and every exception chained to it, scrubbed (see :func:`scrub_error`).

    For an exception of the caller's code (a flag source, a hook) that is
    logged with its traceback: the traceback prints each chained message.
    """
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        scrub_error(current)
        pending += (current.__cause__, current.__context__)
        if isinstance(current, BaseExceptionGroup):
            pending += current.exceptions
    return error


def printable(text: str, limit: int = MESSAGE_LIMIT) -> str:
    r"""``text`` safe for one log line: control characters escaped, at most ``limit`` characters.

    Newlines, escape sequences and other non-printable characters become
    ``\\n``, ``\\x1b``..., so a server cannot forge log lines or colour a
    terminal through an error message.  The values of the credentials in
    use are scrubbed first (see :func:`register_secrets`): a server may echo
    them back.
    """
    text = scrub(text)
    if len(text) <= limit and text.isprintable():
        return text
    cleaned = "".join(
        character if character.isprintable() else repr(character)[1:-1]
        for character in text[:limit]
    )
    if len(text) > limit:
        cleaned += f"... [{len(text) - limit} more characters]"
    return cleaned


_SHOWN_BITS: Final = 256
_SHOWN_CHARACTERS: Final = 80


def short_repr(value: object) -> str:
    """``repr(value)`` for an error message, cut short.

    A huge int's repr is itself a denial of service, and past 4,300 digits
    Python refuses it with a ``ValueError`` that names no argument.
    """
    huge = isinstance(value, int) and value.bit_length() >= _SHOWN_BITS
    text = "a huge int" if huge else repr(value)
    return text if len(text) <= _SHOWN_CHARACTERS else text[: _SHOWN_CHARACTERS - 3] + "..."


def secret_name(name: str) -> bool:
    """Whether a query parameter named ``name`` (as written: percent-encoded) holds a secret."""
    lowered = unquote_plus(name).lower()
    return lowered in _SECRET_NAMES or any(marker in lowered for marker in _SECRET_MARKERS)


def split_userinfo(text: str) -> tuple[str, str | None, str]:
    """``(scheme "://" or "", user part or None, the rest)`` of a URL, without parsing it.

    urlsplit cuts a password holding ``/``, ``?`` or ``#`` short (and would
    leave the rest of it in the path), and a user name may be an email
    address (``me@example.com:password@host``), so the user part is found
    by hand: it ends at the last ``@`` of the authority, or, when what is
    left there is no host (``:s3/cr3t@host``: the password went on past a
    ``/``; ``:?s3cr3t@host`` and ``:12/s3cr3t@host``, where only a port is
    left), at the first ``@`` after it.  A URL written without a scheme
    (``user:pw@host:6379``) has one too.
    """
    prefix = _SCHEME_PREFIX.match(text)
    start = 0 if prefix is None else prefix.end()
    rest = text[start:]
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, end)
    host = rest[at + 1 : end]
    # No host name before a port (":" or ":12", from ":?s3cret@host" or
    # ":12/s3cret@host") is a password cut at its "?" or "/" too; so is
    # anything there in a unix:// URL, which has no host ("alice:" from
    # "unix://alice:/s3cret@/run/redis.sock").
    unix = text[:start].lower() == "unix://"
    if host.startswith(":") or not _HOST_PORT.fullmatch(host) or (unix and host):
        later = rest.find("@", end)
        if later >= 0 and (at >= 0 or ":" in host):
            at = later
    if at < 0:
        return text[:start], None, rest
    return text[:start], rest[:at], rest[at + 1 :]


def redact_url(url: object) -> str:
    """A URL safe to log: no userinfo, and secret-looking query values hidden.

    Args:
        url: a URL (``str`` or :class:`httpx.URL`).

    Returns:
        The URL with ``user:password@`` removed (even when the password
        holds ``/``, ``?`` or ``#``), the values of parameters whose names
        look secret (``access_token``, ``api_token``, ``private_token``,
        ``client_secret``, ``jwt``, ``sig``...) replaced by ``[redacted]``
        (in the query, the fragment and a path segment's ``;name=value``),
        control characters escaped, and at most :data:`URL_LIMIT` characters.
        A Redis URL with an ``@`` after its host shows neither its port nor
        anything after the host (see :func:`redis_tail_has_at`); one whose
        query password has fields or a fragment after it does not show
        them (see :func:`redis_password_cut`).
    """
    prefix, userinfo, rest = split_userinfo(str(url))
    text = prefix + rest
    try:
        parts = urlsplit(text)
    except ValueError:
        # An error message must never fail on the URL it reports.
        return _UNPARSEABLE
    netloc = parts.netloc.rpartition("@")[2]
    path = _redact_path_parameters(parts.path)
    query = _redact_pairs(parts.query)
    fragment = _redact_pairs(parts.fragment)  # OAuth implicit flows put tokens here
    netloc, path, query, fragment = hide_redis_tail(
        parts, (netloc, path, query, fragment), _REDACTED, had_user=userinfo is not None
    )
    rebuilt = urlunsplit((parts.scheme, netloc, path, query, fragment))
    scheme = f"{parts.scheme}://"
    if not netloc and parts.scheme and text.startswith(scheme) and not rebuilt.startswith(scheme):
        # urlunsplit drops an empty authority for schemes it does not know:
        # keep unix:///path as written.
        rebuilt = f"{scheme}{rebuilt[len(parts.scheme) + 1 :]}"
    return printable(rebuilt, URL_LIMIT)


def redis_tail_has_at(parts: SplitResult) -> bool:
    """Whether a Redis URL holds an ``@`` after its host: in its query, fragment or redis:// path.

    Such an ``@`` may end a password that went on past a ``?``, ``#`` or
    ``/`` where what is left before reads as a host and a port
    (``redis://default:1234?s3cret@host/0`` is the host ``default``, the
    port 1234 and a query), or it may be a query value's own
    (``?client_name=worker@host``): the two cannot be told apart, so what
    shows or quotes such a URL hides the port and everything after the host.
    """
    scheme = parts.scheme.lower()
    if scheme not in _REDIS_SCHEMES:
        return False
    if "@" in parts.query or "@" in parts.fragment:
        return True
    # A unix:// path is the socket's and may hold an "@", unless a host comes
    # before it (a unix:// URL needs none: "default:1234" was a password's),
    # or a user part does and the "@" ends a piece of a path: the password
    # "s3c@/tmp/x" cut at its "/" leaves "/tmp/x@/run/redis.sock".
    if scheme != "unix":
        return "@" in parts.path
    return _unix_path_after_cut(
        parts.path, host=bool(parts.netloc.rpartition("@")[2]), user="@" in parts.netloc
    )


def _unix_path_after_cut(path: str, *, host: bool, user: bool) -> bool:
    """Whether a unix:// socket path may hold the rest of a password cut at a ``/``.

    After a user part, the password's "@" is followed by the real path's
    ``/``, or ends the path (redis-py also takes the socket from ``?path=``).
    """
    return ("@" in path and host) or (user and ("@/" in path or path.endswith("@")))


def _is_secret_field(field: str) -> bool:
    """Whether a query field (``name=value``) holds a secret, by its name: a password, a key..."""
    return secret_name(field.partition("=")[0])


def redis_password_cut(parts: SplitResult) -> bool:
    """Whether a Redis URL's query password has something after it: a field or a fragment.

    A password holding an unencoded ``&`` or ``#`` is cut there: redis-py
    takes what comes before, and the rest reads as another field
    (``?password=s3c&ret``, ``?password=s3c&r=et``) or as a fragment
    (``?password=s3c#ret``).  That cannot be told apart from a field of
    its own (``?password=x&db=1``), so what shows or quotes such a URL
    hides what follows the password.
    """
    if parts.scheme.lower() not in _REDIS_SCHEMES:
        return False
    fields = parts.query.split("&")
    for index, field in enumerate(fields):
        if _is_secret_field(field):
            return index < len(fields) - 1 or bool(parts.fragment)
    return False


def hide_redis_tail(
    parts: SplitResult, shown: tuple[str, str, str, str], mark: str, *, had_user: bool = False
) -> tuple[str, str, str, str]:
    """``shown`` (netloc, path, query, fragment), hidden after the host when it must be.

    When :func:`redis_tail_has_at`, the port goes and ``mark`` stands for the
    path, query and fragment (a unix:// socket path without an ``@`` stays:
    it is the socket's); for a URL with a user part (``had_user``, or one
    left in ``netloc``), ``mark`` stands for the host (and a unix:// socket
    path) too: the user part may have ended at an ``@`` of the password's,
    and what follows be a piece of it (``redis://:s3c@ret#more@host``).
    Otherwise, when :func:`redis_password_cut`, ``mark`` stands for the
    fields after the query's password and for the fragment.
    """
    netloc, path, query, fragment = shown
    scheme = parts.scheme.lower()
    if scheme in _REDIS_SCHEMES and "?" in parts.query:
        # A second "?": redis-py reads what follows as part of a value
        # (?path=/r.sock?password=s3c is a socket path), so no field's
        # name says whether it holds a secret (the stores refuse it); nor
        # what follows a "#" after it.
        query = mark
        fragment = mark if fragment else ""
    unix_user = scheme == "unix" and _unix_path_after_cut(parts.path, host=False, user=had_user)
    if not (redis_tail_has_at(parts) or unix_user):
        if not redis_password_cut(parts):
            return netloc, path, query, fragment
        fields = query.split("&")
        kept = next(
            (index + 1 for index, field in enumerate(fields) if _is_secret_field(field)),
            len(fields),
        )
        query = "&".join([*fields[:kept], *([mark] if kept < len(fields) else [])])
        return netloc, path, query, mark if fragment or parts.fragment else ""
    user, at, address = netloc.rpartition("@")
    if scheme != "unix" or "@" in path or had_user or at:
        path = f"/{mark}" if path else ""
    return (
        user + at + (mark if had_user or at else without_port(address)),
        path,
        mark if query else "",
        mark if fragment else "",
    )


def without_port(netloc: str) -> str:
    """``host:port`` without its port (an IPv6 address in brackets keeps its colons)."""
    end = netloc.find("]") + 1 if netloc.startswith("[") else 0
    host, colon, _ = netloc[end:].partition(":")
    return netloc[:end] + host if colon else netloc


def _redact_path_parameters(path: str) -> str:
    """A path with the secret values of its segments' parameters (``/user;token=...``) hidden.

    RFC 3986 leaves ``;name=value`` after a segment to the server, and
    servers read session ids and tokens there (``;jsessionid=``).
    """
    if ";" not in path:
        return path
    return "/".join(
        ";".join([segment, *(_redact_pairs(parameter) for parameter in parameters)])
        for segment, *parameters in (part.split(";") for part in path.split("/"))
    )


def _redact_pairs(text: str) -> str:
    """``name=value&...`` with secret values replaced, everything else as it was."""
    return "&".join(
        f"{pair.partition('=')[0]}={_REDACTED}" if _is_secret_field(pair) else pair
        for pair in text.split("&")
    )


def _server_text(text: str | None) -> str | None:
    return None if text is None else printable(str(text), TEXT_LIMIT)


def _rebuild(kind: type[BitbucketError], state: dict[str, Any]) -> BitbucketError:
    """Unpickle an error without calling its keyword-only constructor."""
    error = kind.__new__(kind)
    Exception.__init__(error, state.get("message", ""))
    error.__dict__.update(state)
    return error


class BitbucketError(Exception):
    """Base class of every bb-backoff error.

    Attributes:
        flag_variant: ``"on"`` (exponential policy) or ``"off"`` (legacy
            policy) for the request that failed; ``None`` if no request ran.
        attempts: how many attempts the request made (0 if none was sent).
        method: the HTTP method, if a request was involved.
        url: the request URL, redacted, if a request was involved.
    """

    def __init__(
        self,
        message: str,
        *,
        flag_variant: str | None = None,
        attempts: int = 0,
        method: str | None = None,
        url: object = None,
    ) -> None:
        message = printable(str(message))
        super().__init__(message)
        self.message = message
        self.flag_variant = flag_variant
        self.attempts = attempts
        self.method = method
        self.url = None if url is None else redact_url(url)

    def with_context(
        self,
        *,
        flag_variant: str | None = None,
        attempts: int = 0,
        method: str | None = None,
        url: object = None,
    ) -> BitbucketError:
        """Fill in the request's context where the error does not have it yet.

        The clients call this for errors raised below them (the origin guard,
        the OAuth flow), which do not know the flag variant or the attempts.

        Returns:
            This error.
        """
        self.flag_variant = self.flag_variant or flag_variant
        self.attempts = self.attempts or attempts
        self.method = self.method or method
        if self.url is None and url is not None:
            self.url = redact_url(url)
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross process pools and job queues; the keyword-only
        # constructors would not survive pickle's default positional rebuild.
        return (_rebuild, (type(self), dict(self.__dict__)))

    def __str__(self) -> str:
        text = self.message
        if self.method and self.url:
            text += f" ({self.method} {self.url})"
        notes = []
        if self.attempts:
            notes.append(f"after {self.attempts} attempt{'s' if self.attempts != 1 else ''}")
        if self.flag_variant:
            notes.append(f"flag {self.flag_variant}")
        return f"{text} [{', '.join(notes)}]" if notes else text


class HTTPStatusError(BitbucketError):
    """The API answered with an error status that retrying cannot fix.

    Attributes:
        status: the HTTP status code.
        error_message: ``error.message`` from Bitbucket's error envelope, or
            the start of a plain-text body.
        detail: ``error.detail`` from the envelope, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        error_message: str | None = None,
        detail: str | None = None,
        **context: object,
    ) -> None:
        super().__init__(message, **context)  # type: ignore[arg-type]
        self.status = status
        self.error_message = _server_text(error_message)
        self.detail = _server_text(detail)


class Unauthorized(HTTPStatusError):
    """401: the credentials were refused (after one refresh, where possible)."""


class NotFound(HTTPStatusError):
    """404: no such repository, pull request, issue or page."""


class RetriesExhausted(BitbucketError):
    """The policy gave up on a request that kept failing.

    Attributes:
        status: the last response's status, or ``None`` after a transport error.
        waited: seconds spent waiting between attempts (the sum of the waits).
        elapsed: seconds from the first failed attempt to giving up, by the
            client's clock (waits plus the time the attempts took).
        stop_reason: why the policy stopped (a :class:`~bb_backoff.StopReason` value).
        error_message: ``error.message`` of the last error response, if any.
        detail: ``error.detail`` of the last error response, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        waited: float = 0.0,
        elapsed: float = 0.0,
        stop_reason: str | None = None,
        error_message: str | None = None,
        detail: str | None = None,
        **context: object,
    ) -> None:
        super().__init__(message, **context)  # type: ignore[arg-type]
        self.status = status
        self.waited = waited
        self.elapsed = elapsed
        self.stop_reason = stop_reason
        self.error_message = _server_text(error_message)
        self.detail = _server_text(detail)


class RateLimited(RetriesExhausted):
    """The policy gave up while the API kept answering 429.

    Attributes:
        last_hint: the last wait the server asked for, in seconds, if any.
    """

    def __init__(self, message: str, *, last_hint: float | None = None, **context: object) -> None:
        super().__init__(message, **context)  # type: ignore[arg-type]
        self.last_hint = last_hint


class UnsafeURL(BitbucketError):
    """A URL off the API's origin (scheme, host, port), or not valid: nothing was sent to it.

    Raised for ``next`` links, redirects and absolute URLs given to
    :meth:`~bb_backoff.BitbucketClient.get`, so credentials never leave the API,
    and for a path or URL httpx cannot send (a control character, over 64 KiB,
    a host that is not valid IDNA).
    """


class InvalidResponse(BitbucketError):
    """A response body is not what the API promises (not JSON, say)."""


class PaginationError(InvalidResponse):
    """A page has no ``values`` list, or its ``next`` link repeats an earlier page."""
