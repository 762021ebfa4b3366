"""MockBitbucket: a faithful stand-in for the Bitbucket Cloud REST API 2.0.

Theory of operation
-------------------
One pure core, :meth:`MockBitbucket.respond`, turns a request (method, URL,
headers, body) into a :class:`MockReply`: the status, headers and body to
send, how long to wait before sending them, and whether to fail the
connection instead.  It reads the injected clocks and changes the mock's
state (rate windows, OAuth tokens, counters) under one lock, but never
sleeps and never touches a socket.  Three thin drivers do the I/O: the sync
httpx transport (waits with ``sleep``), the async transport and the ASGI app
(wait with ``async_sleep``), so all three behave alike.

A request goes through these steps, in Bitbucket's order:

1. a step queued with :meth:`MockBitbucket.script`, if one matches;
2. the OAuth token endpoint, if the path is the token URL's;
3. a full outage, if one is on (every API request: 503 from the proxy);
4. authentication (no principal: 401);
5. the principal's rolling rate window (full: 429);
6. a fault drawn from the seeded generator (5xx, reset, timeout, slow);
7. the route: a resource, a page of a listing, a redirect, or 400/404/405
   (``_routes`` maps the paths to their replies).

Rate windows are per principal: the workspace access token, the user (API
token with email) and the OAuth consumer each get ``limit`` requests per
``window`` seconds (``_ratelimit`` keeps the windows and the share of other
consumers).
"""

from __future__ import annotations

import base64
import binascii
import inspect
import math
import random
import string
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from email.utils import formatdate
from typing import Final, TypeAlias
from urllib.parse import parse_qsl, urlsplit

import attrs
import httpx

from .._auth import TOKEN_URL, BasicAuth, BearerToken, OAuth2, OAuth2Tokens
from .._timing import (
    AsyncSleep,
    Clock,
    SyncSleep,
    default_async_sleep,
    default_clock,
    default_now,
    default_sleep,
    duration,
    finite,
    to_seconds,
)
from ._dataset import Account, Dataset, DatasetSize
from ._ratelimit import RateLimiter
from ._routes import (
    JSON_CONTENT_TYPE,
    Fault,
    Get,
    Headers,
    MockReply,
    Query,
    Router,
    error_reply,
    json_reply,
)
from ._server import MockASGIApp

HINT_MODES: Final = ("none", "retry-after", "retry-after-date", "reset")
"""The values of ``MockBitbucket(hint=...)``."""
RATE_LIMIT_BODY: Final = b"Rate limit for this resource has been exceeded"
"""Bitbucket's plain-text 429 body (46 bytes)."""
RATE_LIMIT_REASON: Final = b"Unknown Status Code"
"""The reason phrase Bitbucket's 429s often carry."""
OAUTH_TOKEN_LIFETIME: Final = 7200.0
"""Seconds an OAuth access token lives."""
EXPIRED_MESSAGE: Final = (
    "Access token expired. Use your refresh token to obtain a new access token."
)
"""The 401 message for an expired OAuth access token."""
DEFAULT_READ_TIMEOUT: Final = 5.0
"""Seconds a transport waits on a timeout fault when the request sets no read timeout."""
ACCESS_TOKEN_PRINCIPAL: Final = "access-token"  # noqa: S105 (a label, not a secret)
"""The :attr:`MockCounters.per_principal` key of the workspace access token."""

# X-RateLimit-NearLimit turns true when fewer than this share of the limit remain.
_NEAR_LIMIT_SHARE: Final = 0.2
_STATUS_UNAUTHORIZED: Final = 401
_STATUS_NOT_FOUND: Final = 404
_STATUS_TOO_MANY: Final = 429
_STATUS_SERVER_ERROR: Final = 500
_STATUS_UNAVAILABLE: Final = 503
_HTML_503: Final = (
    b"<html><body><h1>503 Service Unavailable</h1>\n"
    b"No server is available to handle this request.\n</body></html>\n"
)
_SERVER_ERROR_MESSAGES: Final = {
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}
# A reset over a real socket sends the start of a body that never finishes.
_RESET_BODY: Final = b'{"type": "pullrequest", "id": 1, "title": "'
_SCOPES: Final = "account repository pullrequest issue"
_SECRET_ALPHABET: Final = string.ascii_letters + string.digits

Step: TypeAlias = int | str | httpx.Response
"""A scripted step: an error status (400-599), ``"reset"``, ``"timeout"`` or a response."""


def _rate(_instance: object, field: attrs.Attribute[float], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"{field.name} must be a probability from 0 to 1, got {value!r}")


@attrs.frozen
class Faults:
    """Faults the mock injects, each drawn per request from the seeded generator.

    A request that passed authentication and its rate window meets at most
    one fault: one draw decides which, so the rates must sum to at most 1.
    Faulted requests count against the rate window, as they do at Bitbucket.

    A full outage is not drawn: for ``outage_seconds`` from ``outage_start``
    (both measured from the moment the mock was created, on its ``clock``),
    every API request is answered 503 with the HTML body of a proxy, before
    authentication and the rate window, so it uses no slot; such requests are
    counted in :attr:`MockCounters.outage_calls`.  Scripted steps still come
    first, and the OAuth token endpoint stays up.

    Args:
        server_error_rate: share of requests answered 500, 502 or 503 (the
            503 with an HTML body, as a proxy sends it; the others with the
            JSON error envelope).
        reset_rate: share of connections dropped without a response.
        timeout_rate: share of requests never answered in time: a transport
            waits the request's read timeout and raises
            :class:`httpx.ReadTimeout`; the ASGI app answers after
            ``slow_seconds``.
        slow_rate: share of requests answered ``slow_seconds`` late.
        slow_seconds: the extra wait of a slow request, in seconds (or a
            :class:`~datetime.timedelta`).
        outage_start: when the full outage begins, in seconds after the
            mock was created (or a timedelta).
        outage_seconds: how long the full outage lasts, in seconds (or a
            timedelta); 0, the default, means no outage.

    The OAuth token endpoint meets no random faults; script them there
    (see :meth:`MockBitbucket.script`).

    Raises:
        ValueError: a rate outside 0..1, rates summing above 1, or a
            negative or infinite ``slow_seconds``, ``outage_start`` or
            ``outage_seconds``; the message names it.
    """

    server_error_rate: float = attrs.field(default=0.0, validator=_rate)
    reset_rate: float = attrs.field(default=0.0, validator=_rate)
    timeout_rate: float = attrs.field(default=0.0, validator=_rate)
    slow_rate: float = attrs.field(default=0.0, validator=_rate)
    slow_seconds: float = attrs.field(default=10.0, converter=duration, validator=finite)
    outage_start: float = attrs.field(default=0.0, converter=duration, validator=finite)
    outage_seconds: float = attrs.field(default=0.0, converter=duration, validator=finite)

    def __attrs_post_init__(self) -> None:
        if self.total > 1:
            raise ValueError(
                "faults: server_error_rate + reset_rate + timeout_rate + slow_rate "
                f"must be at most 1, got {self.total!r}"
            )

    @property
    def total(self) -> float:
        """The share of requests that meet some fault."""
        return self.server_error_rate + self.reset_rate + self.timeout_rate + self.slow_rate

    def in_outage(self, elapsed: float) -> bool:
        """Whether ``elapsed`` seconds after the mock's creation fall in the full outage."""
        return self.outage_start <= elapsed < self.outage_start + self.outage_seconds


@attrs.frozen
class MockCounters:
    """What the mock has seen since it started or since :meth:`~MockBitbucket.reset_counters`.

    Every request lands in exactly one of ``ok``, ``rate_limited``,
    ``server_errors``, ``resets``, ``timeouts``, ``unauthorized``,
    ``not_found``, ``bad_requests`` and ``outage_calls``, so those add up to
    ``calls``.

    Attributes:
        calls: every request the mock received, token refreshes included.
        ok: answered 2xx or 3xx (each diff redirect is one).
        rate_limited: answered 429.
        server_errors: answered 5xx.
        resets: connections dropped.
        timeouts: requests that timed out: timeout faults, and answers
            slower than the client's read timeout.
        unauthorized: answered 401 (bad or expired credentials, bad OAuth
            client credentials).
        refreshes: successful OAuth token refreshes (also in ``ok``).
        not_found: answered 404.
        bad_requests: answered another 4xx (a bad ``pagelen``, 405, an
            ``invalid_grant``, ...).
        outage_calls: API requests that arrived during the full outage (see
            :class:`Faults`), answered 503 (or timed out, when the client's
            read timeout is shorter than the latency); not in
            ``server_errors``.
        other_consumer_calls: requests that other tools on the same accounts
            got through since the mock started (see ``other_consumers``); not
            part of ``calls``.
        per_principal: requests each principal got past its rate window, by
            principal: ``"access-token"``, ``"user:<email>"`` or
            ``"consumer:<client_id>"``.
    """

    calls: int = 0
    ok: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    resets: int = 0
    timeouts: int = 0
    unauthorized: int = 0
    refreshes: int = 0
    not_found: int = 0
    bad_requests: int = 0
    outage_calls: int = 0
    other_consumer_calls: int = 0
    per_principal: dict[str, int] = attrs.field(factory=dict)


def _with_headers(reply: MockReply, extra: Headers) -> MockReply:
    return attrs.evolve(reply, headers=reply.headers + extra) if extra else reply


def _reset_reply() -> MockReply:
    return MockReply(200, (("Content-Type", JSON_CONTENT_TYPE),), _RESET_BODY, fault="reset")


def _timeout_reply(read_timeout: float) -> MockReply:
    return MockReply(504, fault="timeout", delay=read_timeout)


def _unavailable_reply() -> MockReply:
    return MockReply(_STATUS_UNAVAILABLE, (("Content-Type", "text/html"),), _HTML_503)


# -- the mock -----------------------------------------------------------------------


@attrs.frozen
class _Request:
    method: str
    path: str
    """The raw path: relative to the API base for an API request, else the whole path."""
    is_api: bool
    api: str
    query: Query
    headers: dict[str, str]
    body: bytes


@attrs.frozen
class _Principal:
    key: str
    account: Account
    is_access_token: bool = False


def _check_arguments(
    *, limit: object, hint: object, other_consumers: object, callables: Mapping[str, object]
) -> None:
    for name, function in callables.items():
        if not callable(function):
            raise ValueError(f"{name} must be callable, got {type(function).__name__}")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"limit must be a non-negative integer, got {limit!r}")
    if hint not in HINT_MODES:
        raise ValueError(f"hint must be one of {', '.join(HINT_MODES)}; got {hint!r}")
    if (
        isinstance(other_consumers, bool)
        or not isinstance(other_consumers, int | float)
        or not 0 <= other_consumers <= 1
    ):
        raise ValueError(f"other_consumers must be a share from 0 to 1, got {other_consumers!r}")


def _absolute_url(name: str, value: object) -> httpx.URL:
    url = httpx.URL(value.rstrip("/")) if isinstance(value, str) else None
    if url is None or url.scheme not in {"http", "https"} or not url.host:
        raise ValueError(f"{name} must be an absolute http(s) URL, got {value!r}")
    return url


def _check_step(step: object) -> Step:
    if isinstance(step, httpx.Response):
        return step
    if isinstance(step, str) and step in {"reset", "timeout"}:
        return step
    if isinstance(step, int) and not isinstance(step, bool) and 400 <= step <= 599:  # noqa: PLR2004
        return step
    raise ValueError(
        "steps must be an error status (400-599), 'reset', 'timeout' or an httpx.Response, "
        f"got {step!r}"
    )


def _basic_credentials(authorization: str) -> tuple[str | None, str | None]:
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    user, separator, password = decoded.partition(":")
    return (user, password) if separator else (None, None)


class MockBitbucket:
    """An in-process Bitbucket Cloud API 2.0 with rate limits, faults and a seeded dataset.

    Reach it through :meth:`transport` (sync httpx), :meth:`async_transport`,
    or :meth:`asgi_app` / :func:`~bb_backoff.testing.serve_mock` (a real HTTP
    server).  It issues its own credentials: :meth:`bearer`, :meth:`basic`
    and :meth:`oauth2` hand them to a client.

    Args:
        seed: seeds the dataset, the credentials and the fault draws; the
            same seed gives the same run.
        size: how big the dataset is (:class:`DatasetSize` defaults).
        limit: requests per ``window`` per principal (0 refuses every one).
        window: the rolling window, in seconds (or a timedelta).
        hint: what a 429 tells the client: ``"none"`` (Bitbucket's usual:
            nothing), ``"retry-after"`` (``Retry-After``: whole seconds until a
            slot frees, rounded up), ``"retry-after-date"`` (the same moment as
            an HTTP-date by ``now``) or ``"reset"`` (``X-RateLimit-Reset``:
            seconds remaining).
        token_headers: send ``X-RateLimit-Limit``, ``X-RateLimit-Resource``
            and ``X-RateLimit-NearLimit`` (true when fewer than 20% of the
            limit remain) on access-token requests to ``/repositories/*``.
        json_429: answer 429 with the JSON error envelope instead of
            Bitbucket's usual plain text.
        other_consumers: the share (0 to 1) of each principal's limit that
            other tools on the same account use, at a steady rate.
        count_rejected: count 429'd requests against the window too.
        faults: the faults to inject at random (:class:`Faults` defaults:
            none).
        latency: seconds every response takes (or a timedelta).
        clock: monotonic seconds; times the rate windows and token expiry.
        now: epoch seconds; for HTTP-date hints and ``oauth_expires_at``.
        sleep: waits seconds in the sync transport.
        async_sleep: waits seconds in the async transport and the ASGI app
            (a sync callable is accepted too).
        base_url: the API root; routing uses its path, and links the origin
            each request came to.
        token_url: the OAuth token endpoint; any host, routing uses its path.

    Raises:
        ValueError: for an invalid argument; the message names it.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        size: DatasetSize | None = None,
        limit: int = 1000,
        window: float = 3600.0,
        hint: str = "none",
        token_headers: bool = False,
        json_429: bool = False,
        other_consumers: float = 0.0,
        count_rejected: bool = False,
        faults: Faults | None = None,
        latency: float = 0.0,
        clock: Clock = default_clock,
        now: Clock = default_now,
        sleep: SyncSleep = default_sleep,
        async_sleep: AsyncSleep = default_async_sleep,
        base_url: str = "https://api.bitbucket.org/2.0",
        token_url: str = TOKEN_URL,
    ) -> None:
        _check_arguments(
            limit=limit,
            hint=hint,
            other_consumers=other_consumers,
            callables={"clock": clock, "now": now, "sleep": sleep, "async_sleep": async_sleep},
        )
        window = to_seconds(window, "window")
        if window <= 0:
            raise ValueError(f"window must be positive, got {window!r}")
        faults = Faults() if faults is None else faults
        if not isinstance(faults, Faults):
            raise ValueError(f"faults must be a Faults, got {type(faults).__name__}")
        base = _absolute_url("base_url", base_url)

        self.dataset: Final = Dataset.generate(seed, size)
        """The seeded workspace the mock serves."""
        self.limit: Final = limit
        self.window: Final = window
        self.hint: Final = hint
        self.token_headers: Final = bool(token_headers)
        self.json_429: Final = bool(json_429)
        self.other_consumers: Final = float(other_consumers)
        self.count_rejected: Final = bool(count_rejected)
        self.faults: Final = faults
        self.latency: Final = to_seconds(latency, "latency")
        self.base_url: Final = str(base)
        self.token_url: Final = str(_absolute_url("token_url", token_url))
        self._clock = clock
        self._now = now
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._base_path = base.raw_path.decode("ascii").rstrip("/")
        self._token_path = urlsplit(self.token_url).path

        self._lock = threading.Lock()
        self._router = Router(self.dataset)
        # The outage and the other consumers' schedule are timed from here.
        self._started = clock()
        self._limiter = RateLimiter(
            limit=limit,
            window=window,
            other_share=self.other_consumers,
            count_rejected=self.count_rejected,
            start=self._started,
        )
        # String seeds keep the streams independent of each other and of the dataset's.
        self._fault_rng = random.Random(f"faults:{seed}")  # noqa: S311 (reproducible, not secret)
        self._secret_rng = random.Random(f"credentials:{seed}")  # noqa: S311 (fake credentials)
        self._counts: Counter[str] = Counter()
        self._per_principal: Counter[str] = Counter()
        self._script: list[tuple[str | None, Step]] = []

        workspace = self.dataset.workspace
        self.access_token: Final = "ATCTT3xFfGN0" + self._secret(48)
        """A workspace access token (Bearer); it has its own rate window."""
        self.email: Final = f"{self.dataset.user.nickname}@example.com"
        """The user's Atlassian account email, for HTTP basic with :attr:`api_token`."""
        self.api_token: Final = "ATATT3xFfGF0" + self._secret(48)
        """The user's Atlassian API token."""
        self.client_id: Final = self._secret(18)
        """The OAuth consumer's key; OAuth calls count against the consumer."""
        self.client_secret: Final = self._secret(32)
        """The OAuth consumer's secret."""
        # /user with the access token answers with the token's bot account.
        self._bot = Account(
            account_id=f"557058:{self._secret(32)}",
            uuid="{" + self._secret(32) + "}",
            display_name=f"{workspace} access token",
            nickname=f"{workspace}-access-token",
        )
        self._start_oauth()

    def __repr__(self) -> str:
        return (
            f"MockBitbucket(seed={self.dataset.seed}, limit={self.limit}, "
            f"window={self.window}, hint={self.hint!r}, faults={self.faults!r})"
        )

    # -- credentials ------------------------------------------------------------

    def _secret(self, length: int) -> str:
        return "".join(self._secret_rng.choice(_SECRET_ALPHABET) for _ in range(length))

    def _start_oauth(self) -> None:
        self._refresh_token = self._secret(40)
        self._spent_refresh_tokens: set[str] = set()
        # An OAuth access token works until it expires, refreshed or not.
        self._oauth_issued: dict[str, float] = {}
        self._oauth_access_token = ""
        self._oauth_expires_at = 0.0
        self._issue_oauth_access_token()

    def _issue_oauth_access_token(self) -> None:
        token = self._secret(64)
        issued = self._clock()
        horizon = issued - OAUTH_TOKEN_LIFETIME
        self._oauth_issued = {t: at for t, at in self._oauth_issued.items() if at > horizon}
        self._oauth_issued[token] = issued
        self._oauth_access_token = token
        self._oauth_expires_at = self._now() + OAUTH_TOKEN_LIFETIME

    @property
    def refresh_token(self) -> str:
        """The OAuth refresh token that works now; it rotates on every refresh."""
        return self._refresh_token

    @property
    def oauth_access_token(self) -> str:
        """The newest OAuth access token (Bearer); it lives 7,200 s."""
        return self._oauth_access_token

    @property
    def oauth_expires_at(self) -> float:
        """When :attr:`oauth_access_token` expires, in epoch seconds (by ``now``)."""
        return self._oauth_expires_at

    def bearer(self) -> BearerToken:
        """The workspace access token, as client credentials."""
        return BearerToken(self.access_token)

    def basic(self) -> BasicAuth:
        """The user's email and API token, as client credentials."""
        return BasicAuth(self.email, self.api_token)

    def oauth2(
        self,
        on_refresh: Callable[[OAuth2Tokens], object] | None = None,
        *,
        token_url: str | None = None,
    ) -> OAuth2:
        """The OAuth consumer with its current tokens, as client credentials.

        Args:
            on_refresh: called with the new tokens after every refresh.
            token_url: where the client refreshes; the mock's ``token_url`` by
                default.  For a served mock pass the server's origin with the
                token path, like ``"http://127.0.0.1:54321/site/oauth2/access_token"``.
        """
        with self._lock:
            return OAuth2(
                client_id=self.client_id,
                client_secret=self.client_secret,
                refresh_token=self._refresh_token,
                access_token=self._oauth_access_token,
                expires_at=self._oauth_expires_at,
                token_url=self.token_url if token_url is None else token_url,
                on_refresh=on_refresh,
            )

    # -- scripting and counters ----------------------------------------------------

    def script(self, *steps: Step, path: str | None = None) -> None:
        """Queue steps that the next matching requests get instead of normal handling.

        Each matching request takes the oldest queued step: an int is an error
        status (429 in the mock's 429 style with its hint, the others with the
        error envelope); ``"reset"`` drops the connection; ``"timeout"`` times
        out (over the ASGI app: answers after ``slow_seconds``); an
        :class:`httpx.Response` is sent as it is.  Scripted answers skip
        authentication and the rate window, but are counted.  A scripted
        429's hint is the time until the principal's oldest counted request
        frees its slot, at least 1 s.

        Args:
            steps: the steps, in order.
            path: only requests to this path match: relative to the API base
                and without the query, like
                ``"/repositories/acme/api-service/pullrequests"``; for the token
                endpoint, its path.  ``None`` matches any API request.

        Raises:
            ValueError: for a step that is none of the above, or a path not
                starting with ``/``.
        """
        checked = [_check_step(step) for step in steps]
        if path is not None and (not isinstance(path, str) or not path.startswith("/")):
            raise ValueError(f"path must start with '/', got {path!r}")
        with self._lock:
            self._script.extend((path, step) for step in checked)

    @property
    def counters(self) -> MockCounters:
        """A snapshot of the counters."""
        with self._lock:
            counts = self._counts
            return MockCounters(
                calls=counts["calls"],
                ok=counts["ok"],
                rate_limited=counts["rate_limited"],
                server_errors=counts["server_errors"],
                resets=counts["resets"],
                timeouts=counts["timeouts"],
                unauthorized=counts["unauthorized"],
                refreshes=counts["refreshes"],
                not_found=counts["not_found"],
                bad_requests=counts["bad_requests"],
                outage_calls=counts["outage_calls"],
                other_consumer_calls=self._limiter.other_calls,
                per_principal=dict(self._per_principal),
            )

    def reset_counters(self) -> None:
        """Set every counter back to zero; the rate windows stay as they are."""
        with self._lock:
            self._counts.clear()
            self._per_principal.clear()
            self._limiter.other_calls = 0

    # -- the core -------------------------------------------------------------------

    def respond(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        *,
        read_timeout: float | None = None,
    ) -> MockReply:
        """Decide the answer to one request: the core every driver shares.

        It never sleeps and does no I/O: the caller waits ``reply.delay``,
        then answers, drops the connection or times out (see
        :class:`MockReply`).  Use it to drive the mock from another HTTP
        library.

        Args:
            method: the HTTP method.
            url: the absolute URL, percent-encoded as sent.  Links in the
                answer use its origin, so a served mock links to itself.
            headers: the request headers, in any case.
            body: the request body (the token endpoint reads a form).
            read_timeout: the client's read timeout in seconds, when the
                caller knows it (the transports do): an answer that would
                take longer becomes a timeout after ``read_timeout``.
                ``None`` (the ASGI app): a slow answer is just slow.

        Returns:
            The reply.
        """
        parts = urlsplit(url)
        path = parts.path or "/"
        is_api = path == self._base_path or path.startswith(self._base_path + "/")
        request = _Request(
            method=method.upper(),
            path=(path[len(self._base_path) :] or "/") if is_api else path,
            is_api=is_api,
            api=f"{parts.scheme}://{parts.netloc}{self._base_path}",
            query=parse_qsl(parts.query, keep_blank_values=True),
            headers={name.lower(): value for name, value in (headers or {}).items()},
            body=body,
        )
        with self._lock:
            # The clock is read under the lock so window entries stay in order across threads.
            monotonic, epoch = self._clock(), self._now()
            step = self._next_step(request)
            # A full outage: the proxy in front of the API answers every API
            # request before authentication and the rate window.
            outage = (
                step is None and request.is_api and self.faults.in_outage(monotonic - self._started)
            )
            if outage:
                reply = self._in_time(_unavailable_reply(), self.latency, read_timeout)
            else:
                reply = self._decide(request, step, monotonic, epoch, read_timeout)
            self._tally(reply, outage=outage)
            return reply

    def _decide(
        self,
        request: _Request,
        step: Step | None,
        monotonic: float,
        epoch: float,
        read_timeout: float | None,
    ) -> MockReply:
        if step is None:
            reply, extra_delay, timed_out = self._answer(request, monotonic, epoch)
        elif step == "timeout":
            # Over a real socket the request is handled, and answered late.
            timed_out, extra_delay = True, 0.0
            if read_timeout is None:
                reply = self._answer(request, monotonic, epoch)[0]
            else:
                reply = _timeout_reply(read_timeout)
        else:
            principal = self._authenticate(request.headers, monotonic)
            reply = self._scripted(step, request, principal, monotonic, epoch)
            extra_delay, timed_out = 0.0, False

        if timed_out:
            if read_timeout is not None:
                return _timeout_reply(read_timeout)
            late = self.latency + self.faults.slow_seconds
            if reply.fault == "reset":
                return attrs.evolve(reply, delay=late)
            return attrs.evolve(reply, fault="timeout", delay=late)
        return self._in_time(reply, self.latency + extra_delay, read_timeout)

    @staticmethod
    def _in_time(reply: MockReply, delay: float, read_timeout: float | None) -> MockReply:
        """``reply`` after ``delay`` seconds, or a timeout if the client stops waiting first."""
        if reply.fault is None and read_timeout is not None and delay > read_timeout:
            return _timeout_reply(read_timeout)
        return attrs.evolve(reply, delay=delay)

    def _answer(
        self, request: _Request, monotonic: float, epoch: float
    ) -> tuple[MockReply, float, bool]:
        """Normal handling: the reply, the extra delay of a slow fault, and whether it timed out."""
        if not request.is_api:
            if request.path == self._token_path:
                return self._token_endpoint(request), 0.0, False
            return error_reply(_STATUS_NOT_FOUND, "Resource not found"), 0.0, False
        principal = self._authenticate(request.headers, monotonic)
        if isinstance(principal, MockReply):
            return principal, 0.0, False
        admission = self._limiter.admit(principal.key, monotonic)
        rate_headers = self._rate_headers(principal, request.path, admission.used)
        if not admission.accepted:
            return self._rate_limited(admission.wait, epoch, rate_headers), 0.0, False
        self._per_principal[principal.key] += 1

        fault, extra_delay = self._draw_fault()
        if isinstance(fault, MockReply) or fault == "reset":
            reply = _reset_reply() if fault == "reset" else fault
            return _with_headers(reply, rate_headers), 0.0, False
        if request.method != "GET":
            reply = error_reply(405, f"Method {request.method} not allowed", ("Allow", "GET"))
        else:
            get = Get(request.path, request.query, request.api, principal.account)
            reply = self._router.route(get)
        return _with_headers(reply, rate_headers), extra_delay, fault == "timeout"

    def _tally(self, reply: MockReply, *, outage: bool) -> None:
        counts = self._counts
        counts["calls"] += 1
        status = reply.status
        if outage:
            counts["outage_calls"] += 1
        elif reply.fault is not None:
            counts["resets" if reply.fault == "reset" else "timeouts"] += 1
        elif status < 400:  # noqa: PLR2004
            counts["ok"] += 1
        elif status >= _STATUS_SERVER_ERROR:
            counts["server_errors"] += 1
        else:
            bucket = {
                _STATUS_UNAUTHORIZED: "unauthorized",
                _STATUS_NOT_FOUND: "not_found",
                _STATUS_TOO_MANY: "rate_limited",
            }
            counts[bucket.get(status, "bad_requests")] += 1

    def _next_step(self, request: _Request) -> Step | None:
        for index, (path, step) in enumerate(self._script):
            if (path is None and request.is_api) or path == request.path:
                del self._script[index]
                return step
        return None

    def _scripted(
        self,
        step: Step,
        request: _Request,
        principal: _Principal | MockReply,
        monotonic: float,
        epoch: float,
    ) -> MockReply:
        """The reply for a scripted step other than ``"timeout"``."""
        if isinstance(step, httpx.Response):
            content = step.read()
            # The driver sets the framing headers for the body it sends.
            framing = {"content-length", "transfer-encoding"}
            headers = tuple(
                (name, value)
                for name, value in step.headers.multi_items()
                if name.lower() not in framing
            )
            return MockReply(
                step.status_code, headers, content, reason=step.extensions.get("reason_phrase")
            )
        if step == "reset":
            return _reset_reply()
        assert isinstance(step, int)  # noqa: S101 (checked when queued)
        known = principal if isinstance(principal, _Principal) else None
        # A scripted answer reports the window as full: it stands in for a refusal.
        rate_headers = () if known is None else self._rate_headers(known, request.path, self.limit)
        if step == _STATUS_TOO_MANY:
            wait = self._limiter.oldest_wait(None if known is None else known.key, monotonic)
            return self._rate_limited(wait, epoch, rate_headers)
        message = _SERVER_ERROR_MESSAGES.get(step, "Scripted error")
        return _with_headers(error_reply(step, message), rate_headers)

    def _authenticate(self, headers: dict[str, str], monotonic: float) -> _Principal | MockReply:
        authorization = headers.get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() == "bearer":
            if token == self.access_token:
                return _Principal(ACCESS_TOKEN_PRINCIPAL, self._bot, is_access_token=True)
            issued = self._oauth_issued.get(token)
            if issued is not None:
                if monotonic - issued >= OAUTH_TOKEN_LIFETIME:
                    return error_reply(_STATUS_UNAUTHORIZED, EXPIRED_MESSAGE)
                return _Principal(f"consumer:{self.client_id}", self.dataset.user)
        elif _basic_credentials(authorization) == (self.email, self.api_token):
            return _Principal(f"user:{self.email}", self.dataset.user)
        return error_reply(
            _STATUS_UNAUTHORIZED,
            "Invalid or missing credentials",
            ("WWW-Authenticate", 'Basic realm="Bitbucket.org HTTP"'),
        )

    def _rate_headers(self, principal: _Principal, path: str, used: int) -> Headers:
        if not (
            self.token_headers
            and principal.is_access_token
            and (path == "/repositories" or path.startswith("/repositories/"))
        ):
            return ()
        remaining = max(0, self.limit - used)
        near = remaining < _NEAR_LIMIT_SHARE * self.limit or self.limit == 0
        return (
            ("X-RateLimit-Limit", str(self.limit)),
            ("X-RateLimit-Resource", "api"),
            ("X-RateLimit-NearLimit", "true" if near else "false"),
        )

    def _rate_limited(self, wait: float, epoch: float, extra: Headers) -> MockReply:
        seconds = max(1, math.ceil(wait))
        hint: Headers = ()
        if self.hint == "retry-after":
            hint = (("Retry-After", str(seconds)),)
        elif self.hint == "retry-after-date":
            # Rounded up to the second, so the date never undercuts the real wait.
            hint = (("Retry-After", formatdate(math.ceil(epoch + wait), usegmt=True)),)
        elif self.hint == "reset":
            hint = (("X-RateLimit-Reset", str(seconds)),)
        if self.json_429:
            body = error_reply(_STATUS_TOO_MANY, RATE_LIMIT_BODY.decode())
        else:
            body = MockReply(_STATUS_TOO_MANY, (("Content-Type", "text/plain"),), RATE_LIMIT_BODY)
        return MockReply(
            _STATUS_TOO_MANY, body.headers + hint + extra, body.body, reason=RATE_LIMIT_REASON
        )

    def _draw_fault(self) -> tuple[MockReply | Fault | None, float]:
        """One draw per request: the fault, if any, and the extra delay it brings."""
        faults = self.faults
        if not faults.total:
            return None, 0.0
        draw = self._fault_rng.random()
        if draw < faults.server_error_rate:
            status = self._fault_rng.choice((500, 502, 503))
            if status == _STATUS_UNAVAILABLE:
                return _unavailable_reply(), 0.0
            return error_reply(status, _SERVER_ERROR_MESSAGES[status]), 0.0
        draw -= faults.server_error_rate
        if draw < faults.reset_rate:
            return "reset", 0.0
        draw -= faults.reset_rate
        if draw < faults.timeout_rate:
            return "timeout", 0.0
        draw -= faults.timeout_rate
        return None, faults.slow_seconds if draw < faults.slow_rate else 0.0

    def _token_endpoint(self, request: _Request) -> MockReply:
        if request.method != "POST":
            return json_reply(
                405,
                {"error": "invalid_request", "error_description": "Use POST"},
                ("Allow", "POST"),
            )
        client = _basic_credentials(request.headers.get("authorization", ""))
        if client != (self.client_id, self.client_secret):
            return json_reply(
                _STATUS_UNAUTHORIZED,
                {
                    "error": "invalid_client",
                    "error_description": "Invalid OAuth client credentials",
                },
            )
        form = dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
        if form.get("grant_type") != "refresh_token":
            return json_reply(
                400,
                {
                    "error": "unsupported_grant_type",
                    "error_description": "The mock supports grant_type=refresh_token only",
                },
            )
        presented = form.get("refresh_token", "")
        if presented != self._refresh_token:
            description = (
                "Refresh token already used: refresh tokens rotate on every refresh"
                if presented in self._spent_refresh_tokens
                else "Invalid refresh_token"
            )
            return json_reply(400, {"error": "invalid_grant", "error_description": description})
        self._spent_refresh_tokens.add(presented)
        self._refresh_token = self._secret(40)
        self._issue_oauth_access_token()
        self._counts["refreshes"] += 1
        return json_reply(
            200,
            {
                "access_token": self._oauth_access_token,
                "refresh_token": self._refresh_token,
                "expires_in": int(OAUTH_TOKEN_LIFETIME),
                "token_type": "bearer",
                "scopes": _SCOPES,
                "state": "refresh_token",
            },
        )

    # -- drivers ------------------------------------------------------------------

    def transport(self) -> httpx.BaseTransport:
        """A sync httpx transport into the mock; it waits with ``sleep``.

        Thread-safe: the threads of a client may share it.
        """
        return _SyncTransport(self.respond, self._sleep)

    def async_transport(self) -> httpx.AsyncBaseTransport:
        """An async httpx transport into the mock; it waits with ``async_sleep``."""
        return _AsyncTransport(self.respond, self._async_sleep)

    def asgi_app(self) -> MockASGIApp:
        """The mock as a raw ASGI 3 application; it waits with ``async_sleep``.

        Serve it with :func:`~bb_backoff.testing.serve_mock`, or with any
        ASGI server.
        """
        return MockASGIApp(self.respond, self._async_sleep)


Respond: TypeAlias = Callable[..., MockReply]


def _read_timeout(request: httpx.Request) -> float:
    timeout = request.extensions.get("timeout")
    read = timeout.get("read") if isinstance(timeout, dict) else None
    return float(read) if read is not None else DEFAULT_READ_TIMEOUT


def _failure(reply: MockReply, request: httpx.Request) -> httpx.TransportError | None:
    if reply.fault == "reset":
        return httpx.RemoteProtocolError(
            "Server disconnected without sending a response.", request=request
        )
    if reply.fault == "timeout":
        return httpx.ReadTimeout("The read operation timed out", request=request)
    return None


class _SyncTransport(httpx.BaseTransport):
    def __init__(self, respond: Respond, sleep: SyncSleep) -> None:
        self._respond = respond
        self._sleep = sleep

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        reply = self._respond(
            request.method,
            str(request.url),
            request.headers,
            request.read(),
            read_timeout=_read_timeout(request),
        )
        if reply.delay > 0:
            self._sleep(reply.delay)
        failure = _failure(reply, request)
        if failure is not None:
            raise failure
        return reply.to_httpx(request)


class _AsyncTransport(httpx.AsyncBaseTransport):
    def __init__(self, respond: Respond, sleep: AsyncSleep) -> None:
        self._respond = respond
        self._sleep = sleep

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        reply = self._respond(
            request.method,
            str(request.url),
            request.headers,
            await request.aread(),
            read_timeout=_read_timeout(request),
        )
        if reply.delay > 0:
            slept = self._sleep(reply.delay)
            if inspect.isawaitable(slept):
                await slept
        failure = _failure(reply, request)
        if failure is not None:
            raise failure
        return reply.to_httpx(request)
