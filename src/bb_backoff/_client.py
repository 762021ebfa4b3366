"""The clients: :class:`BitbucketClient` (sync) and :class:`AsyncBitbucketClient`.

:class:`_BaseClient` holds everything that is not I/O: URLs and the origin
guard, the flag check, turning responses and transport errors into outcomes
for the policy (:class:`_Retrying`), errors, events, JSON and pages.  The two
clients add only the sending and the sleeping, each in one ``_send`` method
that every call goes through, every page and every retry included.

The success path stays lean: a request that succeeds at once costs a flag
check and a status comparison over bare httpx; the retry bookkeeping is
built only when an attempt fails.
"""

from __future__ import annotations

import inspect
import logging
import re
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final, Generic, Self, TypeAlias, TypeVar

import attrs
import httpx

from . import _endpoints as endpoints
from ._auth import TOKEN_REFRESH_EXTENSION, BasicAuth, BearerToken, OAuth2, OAuth2Flow
from ._events import OnRetry, RetryEvent
from ._exceptions import (
    BitbucketError,
    HTTPStatusError,
    InvalidResponse,
    NotFound,
    PaginationError,
    RateLimited,
    RetriesExhausted,
    Unauthorized,
    UnsafeURL,
    redact_url,
)
from ._flags import FLAG_NAME, FlagSource, StaticFlag
from ._hints import hint_from_headers
from ._policy import (
    Decision,
    ExponentialBackoff,
    FixedRetry,
    Outcome,
    Reason,
    RetryHistory,
    RetryPolicy,
    StopReason,
)
from ._timing import (
    AsyncSleep,
    Clock,
    SyncSleep,
    default_async_sleep,
    default_clock,
    default_now,
    default_sleep,
)

__version__: Final = "0.1.0"

logger: Final = logging.getLogger("bb_backoff")

DEFAULT_BASE_URL: Final = "https://api.bitbucket.org/2.0"
DEFAULT_TIMEOUT: Final = 30.0
"""Seconds; diffs of large pull requests take a while."""

Auth: TypeAlias = BearerToken | BasicAuth | OAuth2
Params: TypeAlias = Mapping[str, Any]

# Transport errors where the request certainly never reached the server.
_NOT_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError)
# Transport errors worth retrying; the rest (a bad URL scheme, say) are bugs.
_TRANSIENT: Final = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    httpx.ProxyError,
)
_ERROR_TEXT_LIMIT: Final = 200
# "scheme://" at the start: an absolute URL. A regex rather than parsing
# keeps the success path cheap; "://" inside a query does not count.
_ABSOLUTE: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://").match
# Where a response carries the request's flag variant and attempts, so errors
# raised after _send (bad JSON, a bad page) can say them too.
_CONTEXT: Final = "bb_backoff.context"
_TEXT: Final = {"Accept": "text/plain, */*"}


def _redacted_repr(value: object) -> str:
    return repr(None if value is None else redact_url(value))


@attrs.frozen
class Page:
    """One page of a paginated listing.

    Attributes:
        values: the page's items.
        next: the opaque URL of the next page, ``None`` on the last page.
            Store it to resume an import later with ``paginate(next)``.
        previous: the previous page's URL, if the API gave one.
        page: the page number, if given.
        pagelen: the page length, if given.
        size: the total number of items, if given (often missing).
        url: the URL this page was fetched from.
    """

    values: list[Any]
    next: str | None = attrs.field(repr=_redacted_repr)
    previous: str | None = attrs.field(default=None, repr=_redacted_repr)
    page: int | None = None
    pagelen: int | None = None
    size: int | None = None
    url: str = attrs.field(default="", repr=_redacted_repr)


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    # httpx normalises a default port to None, so https://h and https://h:443 compare equal.
    return (url.scheme, url.host, url.port)


def _error_envelope(response: httpx.Response) -> tuple[str | None, str | None]:
    """``error.message`` and ``error.detail`` from Bitbucket's envelope, or a plain-text body."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return (text[:_ERROR_TEXT_LIMIT] or None, None)
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return (None, None)
    message, detail = error.get("message"), error.get("detail")
    return (
        message if isinstance(message, str) else None,
        detail if isinstance(detail, str) else None,
    )


class _Retrying:
    """One logical request's retry bookkeeping, made only once an attempt fails."""

    __slots__ = (
        "_actor",
        "_clock",
        "_now",
        "_policy",
        "_report",
        "_request",
        "_started",
        "history",
        "pending",
        "variant",
    )

    def __init__(
        self,
        request: httpx.Request,
        policy: RetryPolicy,
        variant: str,
        *,
        actor: str | None,
        clock: Clock,
        now: Clock,
        report: Callable[[RetryEvent], object],
    ) -> None:
        self._request = request
        self._policy = policy
        self.variant = variant
        self._actor = actor
        self._clock = clock
        self._now = now
        self._report = report
        self._started = clock()
        self.history = RetryHistory()
        self.pending: Awaitable[object] | None = None
        """An awaitable returned by an async ``on_retry``, for the async client to await."""

    def after_response(self, response: httpx.Response) -> float:
        """Seconds to wait before the next attempt after a failed ``response``.

        Raises:
            BitbucketError: the error to give up with.
        """
        outcome = Outcome(
            method=self._request.method,
            status=response.status_code,
            hint=hint_from_headers(response.headers, self._now()),
        )
        return self._decide(outcome, response, None)

    def after_error(self, error: httpx.TransportError) -> float:
        """Seconds to wait before the next attempt after a transport ``error``.

        Raises:
            BitbucketError: the error to give up with.
        """
        if not isinstance(error, _TRANSIENT):
            exhausted = self._context(
                RetriesExhausted,
                f"{type(error).__name__} is not a transient error",
                stop_reason=StopReason.NOT_RETRYABLE.value,
                attempts=self.history.attempts + 1,
            )
            if isinstance(error, httpx.LocalProtocolError):
                # h11 quotes the offending header, which may be a credential.
                raise exhausted from None
            raise exhausted from error
        outcome = Outcome(method=self._request.method, sent=not isinstance(error, _NOT_SENT))
        return self._decide(outcome, None, error)

    def _decide(
        self, outcome: Outcome, response: httpx.Response | None, error: Exception | None
    ) -> float:
        decision = self._policy.decide(self.history, outcome)
        self.history = decision.history
        if decision.delay is None:
            raise self._give_up(decision, response) from error
        assert decision.reason is not None  # noqa: S101 (a retry always has a reason)
        hint = decision.hint
        reported = self._report(
            RetryEvent(
                attempt=decision.history.attempts,
                reason=decision.reason,
                status=outcome.status,
                delay=decision.delay,
                retry_after=None if hint is None else hint.seconds,
                hint_source=None if hint is None else hint.source,
                flag_variant=self.variant,
                method=self._request.method,
                url=redact_url(self._request.url),
                actor=self._actor,
                error=None if error is None else type(error).__name__,
            )
        )
        self.pending = reported if inspect.isawaitable(reported) else None
        return decision.delay

    def _context(self, kind: type[BitbucketError], message: str, **fields: Any) -> BitbucketError:
        fields.setdefault("attempts", self.history.attempts)
        if issubclass(kind, RetriesExhausted):
            fields["elapsed"] = self._clock() - self._started
        return kind(
            message,
            flag_variant=self.variant,
            method=self._request.method,
            url=self._request.url,
            **fields,
        )

    def _give_up(self, decision: Decision, response: httpx.Response | None) -> BitbucketError:
        status = None if response is None else response.status_code
        message, detail = (None, None) if response is None else _error_envelope(response)
        history = decision.history
        if decision.stop is StopReason.NOT_RETRYABLE:
            if response is None:
                return self._context(
                    RetriesExhausted,
                    f"transport error, not retried for {self._request.method}",
                    stop_reason=decision.stop.value,
                )
            assert status is not None  # noqa: S101 (a response has a status)
            kind = {401: Unauthorized, 404: NotFound}.get(status, HTTPStatusError)
            text = f"HTTP {status}" + (f": {message}" if message else "")
            return self._context(kind, text, status=status, error_message=message, detail=detail)

        assert decision.stop is not None  # noqa: S101 (no delay means a stop reason)
        hint = decision.hint
        why = {
            StopReason.ATTEMPTS: f"gave up after {history.attempts} attempts",
            StopReason.BUDGET: (
                f"gave up: the waiting budget is spent ({history.waited:.1f} s waited)"
            ),
            StopReason.HINT_TOO_LONG: (
                f"gave up at once: the server asked to wait {hint.seconds:.0f} s ({hint.source}), "
                "more than the policy's max_hint"
                if hint is not None
                else "gave up: the server's hint is too long"
            ),
        }[decision.stop]
        common = {
            "status": status,
            "waited": history.waited,
            "stop_reason": decision.stop.value,
            "error_message": message,
            "detail": detail,
        }
        if decision.reason is Reason.RATE_LIMIT:
            return self._context(
                RateLimited,
                f"rate limited: {why}",
                last_hint=None if hint is None else hint.seconds,
                **common,
            )
        failure = f"HTTP {status}" if status is not None else "transport error"
        return self._context(RetriesExhausted, f"{failure}: {why}", **common)


class _BaseClient:
    """Everything the two clients share: all of it but sending and sleeping."""

    def __init__(
        self,
        *,
        auth: Auth | None,
        flag: FlagSource | bool,
        actor: str | None,
        policy: RetryPolicy,
        legacy_policy: RetryPolicy,
        base_url: str,
        on_retry: OnRetry | None,
        clock: Clock,
        now: Clock,
        timeout: float | httpx.Timeout,
    ) -> None:
        if isinstance(flag, bool):
            flag = StaticFlag(flag)
        elif not callable(getattr(flag, "enabled", None)):
            raise ValueError(f"flag must be a FlagSource or a bool, got {type(flag).__name__}")
        if actor is not None and (not isinstance(actor, str) or not actor):
            raise ValueError(
                f"actor must be an id string like 'Project:123' or None, got {actor!r}"
            )
        for name, value in (("policy", policy), ("legacy_policy", legacy_policy)):
            if not callable(getattr(value, "decide", None)):
                raise ValueError(f"{name} must be a retry policy, got {type(value).__name__}")
        if auth is not None and not isinstance(auth, BearerToken | BasicAuth | OAuth2):
            raise ValueError(
                f"auth must be BearerToken, BasicAuth or OAuth2, got {type(auth).__name__}"
            )
        for name, function in (("clock", clock), ("now", now)):
            if not callable(function):
                raise ValueError(f"{name} must be a callable returning seconds")
        if on_retry is not None and not callable(on_retry):
            raise ValueError("on_retry must be a callable taking a RetryEvent")
        try:
            base = httpx.URL(base_url.rstrip("/") if isinstance(base_url, str) else "")
        except httpx.InvalidURL:
            raise ValueError("base_url is not a valid URL") from None
        if base.userinfo:
            # Never echo it: the userinfo is a credential.
            raise ValueError("base_url must not contain credentials; pass them as auth=")
        if base.scheme not in {"http", "https"} or not base.host:
            raise ValueError(f"base_url must be an absolute http(s) URL, got {base_url!r}")

        self.base_url: Final = str(base)
        self.actor: Final = actor
        self.flag: Final[FlagSource] = flag
        self.policy: Final = policy
        self.legacy_policy: Final = legacy_policy
        self.flag_errors = 0
        """How many times the flag source raised (and the legacy policy was used)."""
        self._auth = auth
        self._origin = _origin(base)
        self._on_retry = on_retry
        self._clock = clock
        self._now = now
        self._timeout = timeout
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={self.base_url!r}, actor={self.actor!r}, "
            f"flag={self.flag!r}, auth={self._auth!r})"
        )

    # -- construction helpers ------------------------------------------------

    def _httpx_options(self) -> dict[str, Any]:
        headers = {"User-Agent": f"bb-backoff/{__version__}", "Accept": "application/json"}
        auth: httpx.Auth | None = None
        if isinstance(self._auth, OAuth2):
            auth = OAuth2Flow(self._auth, self._now, timeout=self._timeout)
        elif self._auth is not None:
            headers["Authorization"] = self._auth.authorization()
        return {
            "auth": auth,
            "headers": headers,
            "timeout": self._timeout,
            # Bitbucket redirects the pull-request diff; the request hook below
            # makes sure a redirect never leaves the API's origin.
            "follow_redirects": True,
        }

    def _guard(self, request: httpx.Request) -> None:
        """Refuse to send anything off the API's origin; a token refresh goes to token_url only.

        This runs for every request httpx sends, redirects included, so a
        redirect cannot carry the API credentials elsewhere, nor the refresh
        token anywhere but the token endpoint.
        """
        if request.extensions.get(TOKEN_REFRESH_EXTENSION):
            if isinstance(self._auth, OAuth2) and request.url == httpx.URL(self._auth.token_url):
                return
            raise UnsafeURL(
                f"refusing to send the OAuth refresh token to {redact_url(request.url)}: "
                "it goes to the token endpoint only"
            )
        if _origin(request.url) == self._origin:
            return
        raise UnsafeURL(
            f"refusing to send a request to {redact_url(request.url)}: "
            f"only {self.base_url} and its origin get the credentials"
        )

    # -- per-request logic --------------------------------------------------

    def _url(self, path_or_url: str) -> str:
        """The absolute URL for a path relative to ``base_url``, or a checked absolute URL."""
        if not isinstance(path_or_url, str) or not path_or_url:
            raise ValueError(f"path_or_url must be a non-empty string, got {path_or_url!r}")
        if not _ABSOLUTE(path_or_url):
            return f"{self.base_url}/{path_or_url.lstrip('/')}"
        if not self._on_origin(path_or_url):
            raise UnsafeURL(
                f"refusing to send a request to {redact_url(path_or_url)}: "
                f"it is not on the origin of {self.base_url}"
            )
        return path_or_url

    def _on_origin(self, url: str) -> bool:
        """Whether an absolute URL is on the API's scheme, host and port (False if unparseable)."""
        try:
            return _origin(httpx.URL(url)) == self._origin
        except httpx.InvalidURL:
            return False

    def _select_policy(self) -> tuple[RetryPolicy, str]:
        """Ask the flag once for this logical request; fall back to legacy if it raises."""
        try:
            on = self.flag.enabled(FLAG_NAME, self.actor)
        except Exception:
            with self._lock:
                self.flag_errors += 1
            logger.warning(
                "flag source %s raised while checking %s for %s; using the legacy policy",
                type(self.flag).__name__,
                FLAG_NAME,
                self.actor,
                exc_info=True,
            )
            return self.legacy_policy, "off"
        return (self.policy, "on") if on else (self.legacy_policy, "off")

    def _report(self, event: RetryEvent) -> object:
        """Log one retry and call ``on_retry``; return what the callback returned."""
        logger.info(
            "%s %s: %s (attempt %d, %s); retrying in %.2f s (flag %s)",
            event.method,
            event.url,
            event.reason.value,
            event.attempt,
            event.status if event.status is not None else event.error,
            event.delay,
            event.flag_variant,
            extra={"retry_event": event},
        )
        if self._on_retry is None:
            return None
        try:
            return self._on_retry(event)
        except Exception:
            logger.exception("on_retry callback raised; the request goes on")
            return None

    @staticmethod
    def _context(response: httpx.Response) -> dict[str, Any]:
        """The request behind ``response``: method, URL, flag variant, attempts."""
        variant, attempts = response.extensions.get(_CONTEXT, (None, 0))
        return {
            "method": response.request.method,
            "url": response.request.url,
            "flag_variant": variant,
            "attempts": attempts,
        }

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise InvalidResponse(
                f"expected JSON, got {response.headers.get('Content-Type', 'no content type')} "
                f"(HTTP {response.status_code})",
                **self._context(response),
            ) from None

    def _failed_send(
        self,
        error: Exception,
        request: httpx.Request,
        variant: str,
        retrying: _Retrying | None,
    ) -> BitbucketError:
        """The error to raise when sending failed for a reason no retry can fix.

        Our own errors (from the origin guard or the OAuth flow) get the
        request's context; httpx's (a redirect loop, an undecodable body)
        become :class:`InvalidResponse`.
        """
        attempts = 1 if retrying is None else retrying.history.attempts + 1
        if isinstance(error, BitbucketError):
            return error.with_context(
                flag_variant=variant, attempts=attempts, method=request.method, url=request.url
            )
        return InvalidResponse(
            f"the response could not be read: {type(error).__name__}",
            flag_variant=variant,
            attempts=attempts,
            method=request.method,
            url=request.url,
        )

    def _first_page_url(self, path_or_url: str, params: Params | None) -> str:
        url = httpx.URL(self._url(path_or_url))
        if params:
            url = url.copy_merge_params(dict(params))
        # Check the page length on the URL as it will be sent, whatever form
        # the caller used (with or without a slash, a query or the origin).
        base_path = httpx.URL(self.base_url).path
        path = url.path.removeprefix(base_path.rstrip("/"))
        pagelen = url.params.get_list("pagelen")
        if pagelen:
            try:
                value: object = int(pagelen[-1])
            except ValueError:
                value = pagelen[-1]
            endpoints.check_pagelen(path, {"pagelen": value})
        return str(url)

    def _page(self, data: Any, response: httpx.Response, seen: set[str]) -> Page:
        """Check one page and its ``next`` link, and record the URL as seen."""
        context = self._context(response)
        url = str(response.request.url)
        values = data.get("values") if isinstance(data, dict) else None
        if not isinstance(values, list):
            raise PaginationError("the page has no 'values' list", **context)
        next_url = data.get("next") or None
        if next_url is not None:
            if not isinstance(next_url, str):
                raise PaginationError("the page's 'next' is not a URL", **context)
            if not _ABSOLUTE(next_url) or not self._on_origin(next_url):
                raise UnsafeURL(
                    f"the next link {redact_url(next_url)} leaves the origin of {self.base_url}; "
                    "nothing was sent to it",
                    **context,
                )
            if next_url in seen:
                raise PaginationError(
                    f"the next link {redact_url(next_url)} repeats an earlier page; "
                    "stopping instead of looping",
                    **context,
                )
            seen.add(next_url)

        def number(key: str) -> int | None:
            value = data.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) else None

        previous = data.get("previous")
        return Page(
            values=values,
            next=next_url,
            previous=previous if isinstance(previous, str) else None,
            page=number("page"),
            pagelen=number("pagelen"),
            size=number("size"),
            url=url,
        )

    def _retrying(self, request: httpx.Request, policy: RetryPolicy, variant: str) -> _Retrying:
        return _Retrying(
            request,
            policy,
            variant,
            actor=self.actor,
            clock=self._clock,
            now=self._now,
            report=self._report,
        )

    @staticmethod
    def _warn_if_short(first: Page | None, count: int) -> None:
        # Only a listing read from its first page can be compared with its
        # size; one resumed from a stored next link starts part-way through.
        if first is not None and first.page == 1 and first.size is not None and count < first.size:
            logger.warning(
                "listing %s ended after %d of %d items: the API stopped sending next links",
                redact_url(first.url),
                count,
                first.size,
            )


_JsonT = TypeVar("_JsonT")
_TextT = TypeVar("_TextT")
_ItemsT = TypeVar("_ItemsT")


class _Endpoints(Generic[_JsonT, _TextT, _ItemsT]):
    """The importer's endpoints, written once for both clients.

    Each helper builds its path and parameters (in :mod:`._endpoints`) and
    hands them to ``get``, ``get_text`` or ``paginate``: plain values and an
    iterator on the sync client, awaitables and an async iterator on the
    async one.
    """

    if TYPE_CHECKING:

        def get(self, path_or_url: str, params: Params | None = None) -> _JsonT: ...
        def get_text(self, path_or_url: str, params: Params | None = None) -> _TextT: ...
        def paginate(self, path_or_url: str, params: Params | None = None) -> _ItemsT: ...

    def repo(self, workspace: str, repo_slug: str) -> _JsonT:
        """One repository."""
        return self.get(endpoints.repo(workspace, repo_slug))

    def repos(
        self,
        workspace: str | None = None,
        *,
        role: str | None = "member",
        pagelen: int = endpoints.DEFAULT_PAGELEN,
    ) -> _ItemsT:
        """Repositories by the account's role (``None``: all it can see), or one workspace's."""
        return self.paginate(*endpoints.repos(workspace, role, pagelen))

    def user(self) -> _JsonT:
        """The authenticated account."""
        return self.get(endpoints.user())

    def issues(
        self, workspace: str, repo_slug: str, *, pagelen: int = endpoints.DEFAULT_PAGELEN
    ) -> _ItemsT:
        """A repository's issues, oldest first (milestones are inside each issue)."""
        return self.paginate(*endpoints.issues(workspace, repo_slug, pagelen))

    def issue_comments(
        self,
        workspace: str,
        repo_slug: str,
        issue_id: int,
        *,
        pagelen: int = endpoints.DEFAULT_PAGELEN,
    ) -> _ItemsT:
        """One issue's comments, oldest first."""
        return self.paginate(*endpoints.issue_comments(workspace, repo_slug, issue_id, pagelen))

    def pull_requests(
        self,
        workspace: str,
        repo_slug: str,
        *,
        state: str = "ALL",
        pagelen: int = endpoints.DEFAULT_PAGELEN,
    ) -> _ItemsT:
        """A repository's pull requests in every state, oldest first (pagelen at most 50)."""
        return self.paginate(*endpoints.pull_requests(workspace, repo_slug, state, pagelen))

    def pull_request_comments(
        self,
        workspace: str,
        repo_slug: str,
        pull_request_id: int,
        *,
        pagelen: int = endpoints.DEFAULT_PAGELEN,
    ) -> _ItemsT:
        """One pull request's comments, oldest first."""
        return self.paginate(
            *endpoints.pull_request_comments(workspace, repo_slug, pull_request_id, pagelen)
        )

    def pull_request_diff(self, workspace: str, repo_slug: str, pull_request_id: int) -> _TextT:
        """One pull request's diff, as text."""
        return self.get_text(endpoints.pull_request_diff(workspace, repo_slug, pull_request_id))

    def workspace_members(
        self, workspace: str, *, pagelen: int = endpoints.DEFAULT_PAGELEN
    ) -> _ItemsT:
        """A workspace's members."""
        return self.paginate(*endpoints.workspace_members(workspace, pagelen))


class BitbucketClient(_BaseClient, _Endpoints[Any, str, Iterator[Any]]):
    """A Bitbucket Cloud API client on :class:`httpx.Client`, with flag-aware retries.

    Every call goes through one retry loop.  When the feature flag
    :data:`~bb_backoff.FLAG_NAME` is on for ``actor``, the loop follows
    ``policy`` (jittered exponential backoff that honours 429s and server
    hints); when it is off, ``legacy_policy``.  The flag is asked once per
    logical request (one GET, one page), and the loop keeps the policy it
    started with.

    Args:
        auth: :class:`BearerToken`, :class:`BasicAuth` or :class:`OAuth2`.
        flag: a :class:`FlagSource`, or a bool for a flag that never changes.
        actor: the id the flag is checked for, like ``"Project:123"``.
        policy: the policy when the flag is on.
        legacy_policy: the policy when the flag is off.
        base_url: the API root.
        transport: an httpx transport (for tests and mocks).
        on_retry: called with a :class:`RetryEvent` before every wait.
        clock: monotonic seconds.
        now: epoch seconds (to read HTTP-date hints and token expiry).
        sleep: waits the given seconds; the only place the client sleeps.
        timeout: seconds, or an :class:`httpx.Timeout`.

    Raises:
        ValueError: for an invalid argument; the message names it.
    """

    def __init__(
        self,
        *,
        auth: Auth | None = None,
        flag: FlagSource | bool = True,
        actor: str | None = None,
        policy: RetryPolicy | None = None,
        legacy_policy: RetryPolicy | None = None,
        base_url: str = DEFAULT_BASE_URL,
        transport: httpx.BaseTransport | None = None,
        on_retry: OnRetry | None = None,
        clock: Clock = default_clock,
        now: Clock = default_now,
        sleep: SyncSleep = default_sleep,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
    ) -> None:
        super().__init__(
            auth=auth,
            flag=flag,
            actor=actor,
            policy=ExponentialBackoff() if policy is None else policy,
            legacy_policy=FixedRetry() if legacy_policy is None else legacy_policy,
            base_url=base_url,
            on_retry=on_retry,
            clock=clock,
            now=now,
            timeout=timeout,
        )
        if not callable(sleep) or inspect.iscoroutinefunction(sleep):
            raise ValueError(
                "sleep must be a (non-async) callable taking seconds; "
                "AsyncBitbucketClient takes an async one"
            )
        if inspect.iscoroutinefunction(on_retry):
            raise ValueError("on_retry must not be async here; AsyncBitbucketClient awaits it")
        self._sleep = sleep
        self._http = httpx.Client(
            transport=transport, event_hooks={"request": [self._guard]}, **self._httpx_options()
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def _send(
        self,
        method: str,
        url: str,
        params: Params | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send one logical request through the retry loop: the only place that sends or sleeps."""
        policy, variant = self._select_policy()
        request = self._http.build_request(method, url, params=params, headers=headers)
        retrying: _Retrying | None = None
        while True:
            try:
                response = self._http.send(request)
            except httpx.TransportError as error:
                retrying = retrying or self._retrying(request, policy, variant)
                delay = retrying.after_error(error)
            except (httpx.RequestError, BitbucketError) as error:
                raise self._failed_send(error, request, variant, retrying) from error
            else:
                if response.status_code < 400:  # noqa: PLR2004
                    attempts = 1 if retrying is None else retrying.history.attempts + 1
                    response.extensions[_CONTEXT] = (variant, attempts)
                    return response
                retrying = retrying or self._retrying(request, policy, variant)
                delay = retrying.after_response(response)
            self._sleep(delay)

    def get(self, path_or_url: str, params: Params | None = None) -> Any:
        """GET a path (relative to ``base_url``) or an absolute URL on the API's origin.

        Args:
            path_or_url: e.g. ``"/user"`` or a stored ``next`` URL.
            params: query parameters.

        Returns:
            The parsed JSON body.

        Raises:
            BitbucketError: see :mod:`bb_backoff._exceptions` for which one when.
        """
        return self._json(self._send("GET", self._url(path_or_url), params))

    def get_text(self, path_or_url: str, params: Params | None = None) -> str:
        """GET a plain-text resource, such as a diff.

        Returns:
            The body as text.
        """
        return self._send("GET", self._url(path_or_url), params, _TEXT).text

    def pages(self, path_or_url: str, params: Params | None = None) -> Iterator[Page]:
        """Yield the pages of a listing, following the opaque ``next`` links.

        Each page is its own logical request: it checks the flag and retries
        on its own.

        Args:
            path_or_url: the listing's path, or a stored ``next`` URL to resume.
            params: query parameters for the first page (``next`` links
                carry their own).

        Raises:
            UnsafeURL: a ``next`` link leaves the API's origin.
            PaginationError: a page has no ``values`` or a ``next`` repeats.
        """
        url: str | None = self._first_page_url(path_or_url, params)
        seen: set[str] = set()
        first: Page | None = None
        count = 0
        while url is not None:
            seen.add(url)
            response = self._send("GET", url)
            page = self._page(self._json(response), response, seen)
            first = first or page
            count += len(page.values)
            yield page
            url = page.next
        self._warn_if_short(first, count)

    def paginate(self, path_or_url: str, params: Params | None = None) -> Iterator[Any]:
        """Yield the items of a listing across all its pages (see :meth:`pages`)."""
        for page in self.pages(path_or_url, params):
            yield from page.values


class AsyncBitbucketClient(
    _BaseClient, _Endpoints[Awaitable[Any], Awaitable[str], AsyncIterator[Any]]
):
    """The async twin of :class:`BitbucketClient`, on :class:`httpx.AsyncClient`.

    Same arguments, except that ``transport`` is an async transport and
    ``sleep`` may be a sync or an async callable (default
    :func:`asyncio.sleep`).  :meth:`pages` and :meth:`paginate` are async
    iterators.
    """

    def __init__(
        self,
        *,
        auth: Auth | None = None,
        flag: FlagSource | bool = True,
        actor: str | None = None,
        policy: RetryPolicy | None = None,
        legacy_policy: RetryPolicy | None = None,
        base_url: str = DEFAULT_BASE_URL,
        transport: httpx.AsyncBaseTransport | None = None,
        on_retry: OnRetry | None = None,
        clock: Clock = default_clock,
        now: Clock = default_now,
        sleep: AsyncSleep = default_async_sleep,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
    ) -> None:
        super().__init__(
            auth=auth,
            flag=flag,
            actor=actor,
            policy=ExponentialBackoff() if policy is None else policy,
            legacy_policy=FixedRetry() if legacy_policy is None else legacy_policy,
            base_url=base_url,
            on_retry=on_retry,
            clock=clock,
            now=now,
            timeout=timeout,
        )
        if not callable(sleep):
            raise ValueError("sleep must be a callable taking seconds")
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            transport=transport,
            event_hooks={"request": [self._async_guard]},
            **self._httpx_options(),
        )

    async def _async_guard(self, request: httpx.Request) -> None:
        self._guard(request)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def _send(
        self,
        method: str,
        url: str,
        params: Params | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send one logical request through the retry loop: the only place that sends or sleeps."""
        policy, variant = self._select_policy()
        request = self._http.build_request(method, url, params=params, headers=headers)
        retrying: _Retrying | None = None
        while True:
            try:
                response = await self._http.send(request)
            except httpx.TransportError as error:
                retrying = retrying or self._retrying(request, policy, variant)
                delay = retrying.after_error(error)
            except (httpx.RequestError, BitbucketError) as error:
                raise self._failed_send(error, request, variant, retrying) from error
            else:
                if response.status_code < 400:  # noqa: PLR2004
                    attempts = 1 if retrying is None else retrying.history.attempts + 1
                    response.extensions[_CONTEXT] = (variant, attempts)
                    return response
                retrying = retrying or self._retrying(request, policy, variant)
                delay = retrying.after_response(response)
            if retrying.pending is not None:
                await self._await_callback(retrying.pending)
            slept = self._sleep(delay)
            if inspect.isawaitable(slept):
                await slept

    @staticmethod
    async def _await_callback(pending: Awaitable[object]) -> None:
        try:
            await pending
        except Exception:
            logger.exception("on_retry callback raised; the request goes on")

    async def get(self, path_or_url: str, params: Params | None = None) -> Any:
        """GET a path or an absolute URL on the API's origin; see :meth:`BitbucketClient.get`."""
        return self._json(await self._send("GET", self._url(path_or_url), params))

    async def get_text(self, path_or_url: str, params: Params | None = None) -> str:
        """GET a plain-text resource, such as a diff."""
        return (await self._send("GET", self._url(path_or_url), params, _TEXT)).text

    async def pages(self, path_or_url: str, params: Params | None = None) -> AsyncIterator[Page]:
        """Yield the pages of a listing; see :meth:`BitbucketClient.pages`."""
        url: str | None = self._first_page_url(path_or_url, params)
        seen: set[str] = set()
        first: Page | None = None
        count = 0
        while url is not None:
            seen.add(url)
            response = await self._send("GET", url)
            page = self._page(self._json(response), response, seen)
            first = first or page
            count += len(page.values)
            yield page
            url = page.next
        self._warn_if_short(first, count)

    async def paginate(self, path_or_url: str, params: Params | None = None) -> AsyncIterator[Any]:
        """Yield the items of a listing across all its pages."""
        async for page in self.pages(path_or_url, params):
            for item in page.values:
                yield item
