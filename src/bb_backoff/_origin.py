"""The origin guard: credentials go to the API's scheme, host and port, and nowhere else.

``next`` links and redirects are chosen by the server; a compromised or buggy
response could point them anywhere.  :class:`OriginGuard` resolves the paths
the caller gives, refuses absolute URLs off the origin before anything is
sent, and checks every request httpx is about to send (redirects included),
so the API credentials never leave the API and the OAuth refresh token goes
to the token endpoint only.  A URL with userinfo (``user:password@host``) is
refused even on the origin: httpx would turn it into an ``Authorization:
Basic`` header in place of the client's credentials, and log it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import httpx

from ._auth import TOKEN_REFRESH_EXTENSION
from ._exceptions import UnsafeURL, redact_url

# "scheme://" at the start: an absolute URL. A regex rather than parsing
# keeps the success path cheap; "://" inside a query does not count.
is_absolute: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://").match

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}

USERINFO_REFUSED: Final = (
    "it carries userinfo (user:password@), which would replace the client's credentials"
)
"""Why a URL with userinfo is refused (the userinfo itself is never shown)."""


def _host(url: httpx.URL) -> str:
    """The host as httpx reads it, or ``httpx.InvalidURL`` when it cannot be read.

    httpx parses a punycode host that is not valid IDNA
    (``xn--pi-7ld.example``) and only fails when the host is read, with
    idna's error: a ``UnicodeError``, which nothing expecting a bad URL to
    raise ``InvalidURL`` would catch.
    """
    try:
        return url.host
    except UnicodeError:
        raise httpx.InvalidURL(f"Invalid IDNA hostname: {url.raw_host!r}") from None


def parse_url(url: str | httpx.URL) -> httpx.URL:
    """``url`` parsed, with a host that can be read.

    Raises:
        httpx.InvalidURL: ``url`` is not a URL, or its host is not valid IDNA.
    """
    parsed = httpx.URL(url)
    _host(parsed)
    return parsed


def origin(url: httpx.URL) -> tuple[str, str, int | None]:
    """``(scheme, host, port)``, with a default port as ``None``.

    httpx drops a default port itself, but not when the scheme is written in
    capitals (``HTTPS://host:443``), so it is dropped here too.

    Raises:
        httpx.InvalidURL: the host is not valid IDNA.
    """
    port = url.port
    if port is not None and port == _DEFAULT_PORTS.get(url.scheme):
        port = None
    return (url.scheme, _host(url), port)


def unsendable(url: str, error: httpx.InvalidURL) -> UnsafeURL:
    """The error for a URL httpx cannot build a request for; nothing was sent.

    A path with a control character or over httpx's 64 KiB limit passes
    :meth:`OriginGuard.url` (paths are joined, not parsed, on the fast
    path) and fails only when the request is built.

    Args:
        url: the URL as it was to be sent (shown redacted).
        error: httpx's reason.
    """
    return UnsafeURL(
        f"refusing to send a request to {redact_url(url)}: it is not a valid URL ({error})"
    )


def has_userinfo(url: str | httpx.URL) -> bool:
    """Whether a URL names a user or a password (``user:password@host``); False if unparseable."""
    try:
        return bool(httpx.URL(url).userinfo)
    except httpx.InvalidURL:
        return False


# httpx keeps a URL's parsed parts in a private named tuple; comparing them
# first is a fifth of the cost of the public properties (which decode IDNA
# hosts).  Only an exact match is trusted: anything else takes the public way.
_PARSED: Final = "_uri_reference"
_HAS_PARSED: Final = hasattr(getattr(httpx.URL("http://a"), _PARSED, None), "host")


def _parsed_origin(url: httpx.URL) -> tuple[str, str, int | None] | None:
    if not _HAS_PARSED:
        return None
    parsed = getattr(url, _PARSED)
    return (parsed.scheme, parsed.host, parsed.port)


def with_params(url: str | httpx.URL, params: object) -> httpx.URL:
    """``url`` with ``params`` merged into its query: a parameter given replaces the URL's.

    Raises:
        TypeError: ``params`` is not query parameters (a mapping, pairs, or a
            query string), naming it.
        ValueError: a value cannot be written in a URL (an int of more than
            4,300 digits), naming ``params``.
        httpx.InvalidURL: ``url`` is not a URL httpx can send.
    """
    parsed = httpx.URL(url)
    if not isinstance(params, Mapping | list | tuple | str | bytes):
        raise TypeError(
            f"params must be a mapping of query parameters, not {type(params).__name__}"
        )
    given: Any = params
    try:
        return parsed.copy_merge_params(given)
    except (TypeError, AttributeError, IndexError, ValueError) as error:
        # (str() of an int past 4,300 digits is the one ValueError naming digits.)
        too_long = isinstance(error, ValueError) and "digits" in str(error)
    # Raised here, not in the except block: httpx's error stays out of the chain.
    problem: TypeError | ValueError = (
        ValueError("params: a value is an int too long to write in a URL (over 4,300 digits)")
        if too_long
        else TypeError(
            "params must be a mapping of query parameters (or (name, value) pairs), "
            f"not {type(params).__name__} of that shape"
        )
    )
    raise problem


class OriginGuard:
    """Where requests may go: the API's origin, and the token URL for a refresh.

    Args:
        base_url: the API root, already validated (absolute http(s), no userinfo).
        token_url: the OAuth token endpoint, when the client refreshes tokens.
    """

    __slots__ = ("_origin", "_parsed", "_prefix", "_token_url", "base_url")

    def __init__(self, base_url: str, token_url: str | None = None) -> None:
        self.base_url: Final = base_url
        self._prefix = base_url + "/"
        url = httpx.URL(base_url)
        self._origin = origin(url)
        self._parsed = _parsed_origin(url)
        self._token_url = None if token_url is None else httpx.URL(token_url)

    def url(self, path_or_url: str) -> str:
        """The absolute URL for a path relative to ``base_url``, or a checked absolute URL.

        Raises:
            TypeError: ``path_or_url`` is not a string (only its type is named).
            ValueError: ``path_or_url`` is empty.
            UnsafeURL: an absolute URL off the API's origin, or with userinfo.
        """
        if not isinstance(path_or_url, str):
            # Its type only: bytes of a URL may hold an access_token, and a
            # huge int's digits fail (past 4,300) before any message is made.
            raise TypeError(
                f"path_or_url must be a non-empty string, not {type(path_or_url).__name__} "
                "(the value is not shown)"
            )
        if not path_or_url:
            raise ValueError("path_or_url must be a non-empty string, got ''")
        if path_or_url[0] == "/":  # the common case: a path, never a URL with a scheme
            if path_or_url[1:2] != "/":  # one slash: the base URL has none at its end
                return self.base_url + path_or_url
            return self._prefix + path_or_url.lstrip("/")
        if path_or_url.startswith(self._prefix):
            # A `next` link, the other common case: whatever follows the
            # base URL's "/" is path or query, so the scheme, host and port
            # are the base URL's and there is no userinfo (parsing it to
            # learn that costs more than the rest of the request).  As for
            # a path, httpx still refuses characters a URL cannot hold when
            # it builds the request, and every request's URL is checked
            # again, parsed, before it is sent (:meth:`check`).
            return path_or_url
        if not is_absolute(path_or_url):
            return self._prefix + path_or_url.lstrip("/")
        if not self.on_origin(path_or_url):
            if has_userinfo(path_or_url):
                why = USERINFO_REFUSED
            else:
                try:
                    parse_url(path_or_url)
                except httpx.InvalidURL:
                    why = "it is not a valid URL"
                else:
                    why = f"it is not on the origin of {self.base_url}"
            raise UnsafeURL(f"refusing to send a request to {redact_url(path_or_url)}: {why}")
        return path_or_url

    def on_origin(self, url: str | httpx.URL) -> bool:
        """Whether an absolute URL may get the credentials: on the API's origin, no userinfo.

        The origin is the API's scheme, host and port; an unparseable URL is
        not on it.
        """
        try:
            parsed = httpx.URL(url)
            return not parsed.userinfo and origin(parsed) == self._origin
        except httpx.InvalidURL:
            return False

    def check(self, request: httpx.Request) -> None:
        """Refuse to send anything off the API's origin; a token refresh goes to token_url only.

        The clients run this for every request httpx sends, redirects
        included.

        Raises:
            UnsafeURL: the request would leave, or its URL has userinfo; nothing was sent.
        """
        url = request.url
        if request.extensions.get(TOKEN_REFRESH_EXTENSION):
            if self._token_url is not None and url == self._token_url:
                return
            raise UnsafeURL(
                f"refusing to send the OAuth refresh token to {redact_url(url)}: "
                "it goes to the token endpoint only"
            )
        if self._parsed is not None:
            parsed = getattr(url, _PARSED)
            if (parsed.scheme, parsed.host, parsed.port) == self._parsed and not parsed.userinfo:
                return
        if url.userinfo:
            raise UnsafeURL(f"refusing to send a request to {redact_url(url)}: {USERINFO_REFUSED}")
        if self.on_origin(url):
            return
        raise UnsafeURL(
            f"refusing to send a request to {redact_url(request.url)}: "
            f"only {self.base_url} and its origin get the credentials"
        )
