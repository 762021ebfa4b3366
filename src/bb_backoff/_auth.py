"""Credentials for Bitbucket Cloud, and the OAuth 2 refresh flow.

Three kinds, as Bitbucket accepts them in 2026:

* :class:`BearerToken`: an OAuth 2 access token, or a repository / project /
  workspace access token (``Authorization: Bearer``).
* :class:`BasicAuth`: an Atlassian API token with the account's **email**
  (app passwords were removed in July 2026).
* :class:`OAuth2`: an OAuth consumer's refresh token.  Access tokens last
  7,200 s and refresh tokens rotate on every use, so the client refreshes
  once when the access token has expired (or the API says so with a 401),
  hands the new pair to ``on_refresh`` for safekeeping, and retries.

No credential appears in a ``repr``; the client never sends the API
credentials anywhere but the API's origin, and the OAuth consumer's secret
and refresh token only to ``token_url``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import math
import threading
import weakref
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Final, TypeGuard

import attrs
import httpx

from ._exceptions import (
    Unauthorized,
    UnsafeURL,
    printable,
    redact_url,
    register_secrets,
    short_repr,
)
from ._policy import server_failed

logger: Final = logging.getLogger("bb_backoff")

TOKEN_URL: Final = "https://bitbucket.org/site/oauth2/access_token"  # noqa: S105 (a URL)
"""Bitbucket Cloud's OAuth 2 token endpoint."""

# Refresh a little before the access token expires, so a request that is
# already on the wire does not race the expiry.
_DEFAULT_MARGIN: Final = 60.0
MAX_MARGIN: Final = 3_600.0
"""The largest ``margin`` taken: half the 7,200 s an access token lives.  A
larger one spends most of each token's life refreshing it again, and from
7,200 s on, the token is refreshed before every request."""
# Marks the refresh request, the one request allowed off the API's origin.
TOKEN_REFRESH_EXTENSION: Final = "bb_backoff.token_refresh"  # noqa: S105 (a name)
_REFRESHED_ON_401: Final = "bb_backoff.refreshed_on_401"
"""Set on a request once a 401 "expired" made it refresh: the request's retries refresh no more."""


class TokenEndpointAnswered(Exception):
    """The token endpoint's transient answer (408, 429, 5xx) to a refresh sent on the side.

    The async flow sends its refresh out of the request's reach (see
    :meth:`OAuth2Flow.async_auth_flow`); the client takes this answer as
    the request's response, as httpx would have handed it over.
    """

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"the token endpoint answered HTTP {response.status_code}")
        self.response = response


_HIDDEN: Final = "'***'"


def _basic(user: str, password: str) -> str:
    return "Basic " + _basic_value(user, password)


def _basic_value(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _non_empty(name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")
    if any(character.isspace() or not character.isprintable() for character in value):
        # A token read from a file keeps its newline; httpx would then quote
        # the whole header, secret included, in its error. Never echo it.
        raise ValueError(f"{name} must not contain whitespace or control characters")


def _header_safe(name: str, value: object) -> None:
    """A value sent as it is in a header: printable ASCII only, or httpx's error quotes it."""
    _non_empty(name, value)
    assert isinstance(value, str)  # noqa: S101 (checked just above)
    if not value.isascii():
        raise ValueError(
            f"{name} must be ASCII: it is sent as it is in the Authorization header "
            "(the value is not shown)"
        )


def _finite_number(value: object) -> TypeGuard[float]:
    """A real number (not a bool) that a float holds, finite."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _check_token_url(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("token_url must be an absolute http(s) URL string")
    try:
        url = httpx.URL(value)
        # httpx parses punycode that is not valid IDNA and fails only when
        # the host is read, with idna's UnicodeError.
        host = url.host
    except (httpx.InvalidURL, UnicodeError):
        raise ValueError("token_url is not a valid URL (the value is not shown)") from None
    if url.userinfo:
        raise ValueError("token_url must not contain credentials (the value is not shown)")
    if url.scheme not in {"http", "https"} or not host:
        raise ValueError(f"token_url must be an absolute http(s) URL, got {redact_url(value)!r}")
    return value


@attrs.frozen(repr=False)
class BearerToken:
    """An OAuth 2 access token or an access token, sent as ``Authorization: Bearer``.

    Args:
        token: the token. Never shown in ``repr``.
    """

    token: str = attrs.field(validator=lambda _s, a, v: _header_safe(a.name, v))

    def __attrs_post_init__(self) -> None:
        register_secrets(self, self.token)

    def __repr__(self) -> str:
        return f"BearerToken(token={_HIDDEN})"

    def authorization(self) -> str:
        """The ``Authorization`` header value."""
        return f"Bearer {self.token}"


@attrs.frozen(repr=False)
class BasicAuth:
    """An Atlassian API token with the account's email, sent as HTTP basic.

    Args:
        email: the Atlassian account's email address.
        api_token: the API token. Never shown in ``repr``.
    """

    email: str = attrs.field(validator=lambda _s, a, v: _non_empty(a.name, v))
    api_token: str = attrs.field(validator=lambda _s, a, v: _non_empty(a.name, v))

    def __attrs_post_init__(self) -> None:
        register_secrets(self, self.api_token, _basic_value(self.email, self.api_token))

    def __repr__(self) -> str:
        return f"BasicAuth(email={self.email!r}, api_token={_HIDDEN})"

    def authorization(self) -> str:
        """The ``Authorization`` header value."""
        return _basic(self.email, self.api_token)


@attrs.frozen(repr=False)
class OAuth2Tokens:
    """One OAuth 2 token pair.

    Attributes:
        access_token: the bearer token for API calls.
        refresh_token: the one-use token that gets the next pair.
        expires_at: when the access token expires, in epoch seconds, or
            ``None`` if unknown (then only a 401 triggers a refresh).
    """

    access_token: str | None
    refresh_token: str
    expires_at: float | None = None

    def __repr__(self) -> str:
        return (
            f"OAuth2Tokens(access_token={_HIDDEN}, refresh_token={_HIDDEN}, "
            f"expires_at={self.expires_at!r})"
        )


class OAuth2:
    """An OAuth 2 consumer's tokens, refreshed and rotated as needed.

    Safe to share between threads of one sync client, or tasks of one async
    client: one refresh at a time, and a request that waited for someone
    else's refresh uses its result instead of spending the rotated token.
    Threads and tasks wait on different locks, so a sync and an async client
    sharing one ``OAuth2`` may both refresh; give each its own.

    Args:
        client_id: the OAuth consumer's key.
        client_secret: the consumer's secret. Never shown in ``repr``.
        refresh_token: the current refresh token.
        access_token: the current access token, if one is known.
        expires_at: when ``access_token`` expires, in epoch seconds.
        token_url: the token endpoint.
        on_refresh: called with the new :class:`OAuth2Tokens` after every
            refresh; store the rotated refresh token there, the old one no
            longer works.  If it raises, the error is logged and the request
            goes on with the new tokens (still in :attr:`tokens`).
        margin: refresh this many seconds before ``expires_at`` (0 to 3,600:
            half an access token's life).

    Raises:
        ValueError: for an empty ``client_id``, ``client_secret`` or
            ``refresh_token``, or a ``margin`` out of range; the message names it.
    """

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        access_token: str | None = None,
        expires_at: float | None = None,
        token_url: str = TOKEN_URL,
        on_refresh: Callable[[OAuth2Tokens], object] | None = None,
        margin: float = _DEFAULT_MARGIN,
    ) -> None:
        _non_empty("client_id", client_id)
        _non_empty("client_secret", client_secret)
        _non_empty("refresh_token", refresh_token)
        if access_token is not None:
            _header_safe("access_token", access_token)
        if expires_at is not None and not _finite_number(expires_at):
            # NaN never compares as expired, and inf or a huge int fails
            # (or overflows) on every request's expiry check instead.
            raise ValueError("expires_at must be epoch seconds (a finite number) or None")
        if not _finite_number(margin) or not 0 <= margin <= MAX_MARGIN:
            raise ValueError(
                f"margin must be seconds from 0 to {MAX_MARGIN:,.0f} (half an access token's "
                f"7,200 s life), got {short_repr(margin)}"
            )
        self.client_id: Final = client_id
        self._client_secret = client_secret
        if on_refresh is not None and not callable(on_refresh):
            raise ValueError("on_refresh must be a callable taking OAuth2Tokens")
        self.token_url: Final = _check_token_url(token_url)
        self._on_refresh = on_refresh
        self._margin = margin
        self._tokens = OAuth2Tokens(access_token, refresh_token, expires_at)
        register_secrets(
            self,
            client_secret,
            _basic_value(client_id, client_secret),
            refresh_token,
            access_token,
        )
        self._thread_lock = threading.Lock()
        # One task lock per event loop: an asyncio.Lock is bound to the loop
        # that first uses it, and an OAuth2 may outlive one asyncio.run().
        self._task_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:
        return (
            f"OAuth2(client_id={self.client_id!r}, client_secret={_HIDDEN}, "
            f"tokens={self._tokens!r}, token_url={redact_url(self.token_url)!r})"
        )

    @property
    def tokens(self) -> OAuth2Tokens:
        """The current token pair."""
        return self._tokens

    def _task_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        with self._thread_lock:
            lock = self._task_locks.get(loop)
            if lock is None:
                lock = self._task_locks[loop] = asyncio.Lock()
        return lock

    def _stale(self, tokens: OAuth2Tokens, now: float) -> bool:
        return tokens.access_token is None or (
            tokens.expires_at is not None and now >= tokens.expires_at - self._margin
        )

    def _refresh_request(self, tokens: OAuth2Tokens) -> httpx.Request:
        return httpx.Request(
            "POST",
            self.token_url,
            data={"grant_type": "refresh_token", "refresh_token": tokens.refresh_token},
            headers={"Authorization": _basic(self.client_id, self._client_secret)},
            extensions={TOKEN_REFRESH_EXTENSION: True},
        )

    def _accept(self, response: httpx.Response, now: float) -> OAuth2Tokens:
        if response.is_redirect:
            # Redirects are never followed for a refresh: the refresh token
            # and the consumer's secret go to the token endpoint only.
            raise UnsafeURL(
                f"refusing to follow the token endpoint's HTTP {response.status_code} to "
                f"{redact_url(response.headers.get('Location', ''))}: the refresh token goes to "
                "the token endpoint only",
                method="POST",
                url=redact_url(self.token_url),
            )
        if response.status_code != 200:  # noqa: PLR2004
            raise Unauthorized(
                f"OAuth 2 token refresh failed with HTTP {response.status_code}",
                status=response.status_code,
                error_message=_oauth_error(response),
                method="POST",
                url=redact_url(self.token_url),
            )
        try:
            # An integer too long for int() (4,300 digits) would refuse the
            # whole answer; as an expires_in it is merely unusable.
            body = response.json(parse_int=_json_int)
            access = body["access_token"]
            refresh = body.get("refresh_token") or self._tokens.refresh_token
            expires_in = body.get("expires_in")
            _header_safe("access_token", access)
            _non_empty("refresh_token", refresh)
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError, OverflowError):
            raise Unauthorized(
                "OAuth 2 token refresh returned no usable access token",
                status=response.status_code,
                method="POST",
                url=redact_url(self.token_url),
            ) from None
        # Read after the pair is known good, and never a reason to drop it:
        # the refresh token sent is spent by now (they rotate on every use),
        # so refusing the answer would leave nothing that works.
        expires_at = _expires_at(expires_in, now)
        tokens = OAuth2Tokens(access, refresh, expires_at)
        register_secrets(self, access, refresh)
        self._tokens = tokens
        if self._on_refresh is not None:
            try:
                self._on_refresh(tokens)
            except Exception as error:  # noqa: BLE001 (the caller's callback: anything)
                # The request goes on with the new tokens; they stay readable
                # in OAuth2.tokens for the caller to store another way.  A
                # storage error may quote what it was given: the tokens.
                logger.error(  # noqa: TRY400 (a traceback would show the unscrubbed text)
                    "on_refresh raised %s; the rotated tokens were not stored by it "
                    "(read them from OAuth2.tokens)",
                    printable(f"{type(error).__name__}: {error}"),
                )
        return tokens


def _json_int(digits: str) -> int | float:
    """A JSON integer as ``int``, or ``inf`` when it is too long for one."""
    try:
        return int(digits)
    except ValueError:  # past sys.get_int_max_str_digits()
        return math.inf


def _expires_at(expires_in: object, now: float) -> float | None:
    """When a refreshed access token expires (epoch seconds), or ``None`` if unknown.

    ``expires_in`` is the token endpoint's: positive seconds, as a number or
    a numeric string.  Anything else (``"7200s"``, ``"NaN"``, ``1e400``, a
    list, zero or less) is read as unknown, with a warning: the new tokens
    are kept, and the access token is refreshed when the API answers 401
    "expired".  Zero or less is not "refresh before every request".
    """
    if expires_in is None:
        return None
    seconds = math.nan
    if isinstance(expires_in, int | float | str) and not isinstance(expires_in, bool):
        with contextlib.suppress(ValueError, OverflowError):
            seconds = float(expires_in)
    expires_at = now + seconds
    if seconds > 0 and math.isfinite(expires_at):
        return expires_at
    # Only the type: the answer's other fields are tokens, and nothing of it is echoed.
    logger.warning(
        "the token endpoint's expires_in is not a positive number of seconds (a %s); "
        "the new tokens are kept with no known expiry: the access token is refreshed "
        "when the API answers 401 expired",
        type(expires_in).__name__,
    )
    return None


def _retrieved(task: asyncio.Future[bool]) -> None:
    """Mark a task's outcome as seen (asyncio logs an exception nobody retrieved)."""
    if not task.cancelled():
        task.exception()


def _oauth_error(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except (ValueError, RecursionError):
        return None
    if isinstance(body, dict):
        error = body.get("error_description") or body.get("error")
        return error if isinstance(error, str) else None
    return None


def _says_expired(response: httpx.Response) -> bool:
    """Whether a (read) 401 says the access token expired."""
    return "expired" in response.text.lower()


def _transient(status: int) -> bool:
    """The token endpoint's own transient failures (408, 429, any 5xx), as the API's.

    Handed back to the client's retry loop as the response, instead of
    ending the import as Unauthorized.
    """
    return status == 429 or server_failed(status)  # noqa: PLR2004


class OAuth2Flow(httpx.Auth):
    """Drives :class:`OAuth2` for one client: refresh on expiry or on 401 "expired".

    At most one refresh per request: a token refreshed because it was stale
    is not refreshed again when the API still answers 401.  The sync and
    async flows are the same steps; they differ only in the lock held while a
    refresh is on the wire (a thread lock or a task lock), so a rotated
    refresh token is never spent twice, and in how they read a body.
    Overriding both flows means httpx no longer reads bodies for us
    (``requires_response_body`` only applies to ``auth_flow``), so the flows
    read the token response and 401s themselves; other responses stay unread
    for the client.  If the token endpoint answers 408, 429 or 5xx, that
    answer becomes the request's response, and the client's retry loop waits
    and tries again (honouring its ``Retry-After``).
    """

    def __init__(
        self,
        credentials: OAuth2,
        now: Callable[[], float],
        *,
        timeout: float | httpx.Timeout | None = None,
    ) -> None:
        self._credentials = credentials
        self._now = now
        # httpcore reads timeouts from each request; a refresh built here
        # would otherwise have none and could hang every thread on the lock.
        self._timeout = httpx.Timeout(timeout).as_dict()
        self._client: httpx.AsyncClient | None = None
        # Refreshes on the wire, referenced until done (the loop keeps weak ones).
        self._refreshing: set[asyncio.Future[bool]] = set()

    def _refresh_needed(self, seen: OAuth2Tokens, *, force: bool) -> httpx.Request | None:
        """The refresh request to send, or ``None`` if someone else already refreshed."""
        credentials = self._credentials
        current = credentials.tokens
        if current is not seen or not (force or credentials._stale(current, self._now())):
            return None
        request = credentials._refresh_request(current)
        request.extensions["timeout"] = self._timeout
        return request

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        """Authorize ``request``, refreshing under a thread lock when needed."""
        credentials = self._credentials
        tokens = credentials.tokens
        refreshed = False
        for attempt in range(2):
            if attempt or credentials._stale(tokens, self._now()):
                with credentials._thread_lock:
                    refresh = self._refresh_needed(tokens, force=bool(attempt))
                    if refresh is not None:
                        answer = yield refresh
                        answer.read()
                        if _transient(answer.status_code):
                            return
                        credentials._accept(answer, self._now())
                        refreshed = True
                tokens = credentials.tokens
                if attempt:  # refreshed for a 401, by us or by another request
                    request.extensions[_REFRESHED_ON_401] = True
            request.headers["Authorization"] = f"Bearer {tokens.access_token}"
            response = yield request
            if not self._may_refresh_on(response, request, refreshed=refreshed):
                return
            response.read()
            if not _says_expired(response):
                return

    @staticmethod
    def _may_refresh_on(
        response: httpx.Response, request: httpx.Request, *, refreshed: bool
    ) -> bool:
        """Whether a 401 may make ``request`` refresh: once per request, its retries included."""
        return (
            response.status_code == 401  # noqa: PLR2004
            and not refreshed
            and not request.extensions.get(_REFRESHED_ON_401)
        )

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """Authorize ``request``, refreshing under a task lock when needed."""
        credentials = self._credentials
        tokens = credentials.tokens
        refreshed = False
        for attempt in range(2):
            if attempt or credentials._stale(tokens, self._now()):
                if self._client is not None:
                    # Out of the request's reach: a request cancelled while
                    # the token endpoint answers would drop the rotated pair
                    # (the old refresh token is dead by then), and every
                    # later refresh would fail.  The task holds the lock
                    # until the pair is stored, whatever becomes of us.
                    refreshing = asyncio.ensure_future(self._refresh_aside(tokens, attempt))
                    self._refreshing.add(refreshing)
                    refreshing.add_done_callback(self._refreshing.discard)
                    # Left alone when we are cancelled: its error is nobody's to raise.
                    refreshing.add_done_callback(_retrieved)
                    refreshed = await asyncio.shield(refreshing) or refreshed
                else:
                    async with credentials._task_lock():
                        refresh = self._refresh_needed(tokens, force=bool(attempt))
                        if refresh is not None:
                            answer = yield refresh
                            await answer.aread()
                            if _transient(answer.status_code):
                                return
                            credentials._accept(answer, self._now())
                            refreshed = True
                tokens = credentials.tokens
                if attempt:  # refreshed for a 401, by us or by another request
                    request.extensions[_REFRESHED_ON_401] = True
            request.headers["Authorization"] = f"Bearer {tokens.access_token}"
            response = yield request
            if not self._may_refresh_on(response, request, refreshed=refreshed):
                return
            await response.aread()
            if not _says_expired(response):
                return

    async def settle(self) -> None:
        """Wait for the refreshes on the wire, so that their rotated pairs are stored.

        The async client's ``aclose`` calls it: a loop torn down right after
        (``asyncio.run`` cancels what is left) would otherwise drop a pair
        the token endpoint has already rotated.
        """
        while self._refreshing:
            pending = list(self._refreshing)
            with contextlib.suppress(Exception):
                await asyncio.shield(asyncio.gather(*pending, return_exceptions=True))

    def bind(self, client: httpx.AsyncClient) -> None:
        """Send async refreshes through ``client`` (with no auth), each in a task of its own."""
        self._client = client

    async def _refresh_aside(self, seen: OAuth2Tokens, attempt: int) -> bool:
        """Refresh ``seen`` unless someone did, under the task lock: whether this refreshed.

        Raises:
            TokenEndpointAnswered: the token endpoint's transient answer.
            Unauthorized, UnsafeURL: the refresh was refused.
        """
        credentials = self._credentials
        assert self._client is not None  # noqa: S101 (bound: see bind)
        async with credentials._task_lock():
            refresh = self._refresh_needed(seen, force=bool(attempt))
            if refresh is None:
                return False
            answer = await self._client.send(refresh, auth=None, follow_redirects=False)
            if _transient(answer.status_code):
                raise TokenEndpointAnswered(answer)
            credentials._accept(answer, self._now())
            return True
