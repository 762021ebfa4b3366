"""MockBitbucket: a faithful stand-in for the Bitbucket Cloud REST API 2.0.

Theory of operation
-------------------
One pure core, :meth:`MockBitbucket.respond`, turns a request (method, URL,
headers, body) into a :class:`MockReply`: the status, headers and body to
send, how long to wait before sending them, and whether to fail the
connection instead.  It reads the injected clocks and changes the mock's
state (rate windows, OAuth tokens, counters) under one lock, but never
sleeps, never touches a socket and never raises: every request, however
malformed, gets a reply and lands in exactly one counter.  Thin drivers
(``_drivers``) do the I/O: httpx handlers under ``httpx.MockTransport``
(sync and async) and an ASGI app, so all of them behave alike.

A request goes through these steps, in Bitbucket's order:

1. its URL: a ``Host`` that is no host, or a scheme that is not HTTP, is 400;
2. a step queued with :meth:`MockBitbucket.script`, if one matches;
3. the OAuth token endpoint, if the path is the token URL's (``_accounts``);
4. a full outage, if one is on (every API request: 503 from the proxy);
5. authentication (no principal: 401; ``_accounts``);
6. the principal's rolling rate window (full: 429; ``_ratelimit``);
7. a fault drawn from the seeded generator (5xx, reset, timeout, slow;
   ``_faults``);
8. the route: a resource, a page of a listing, a redirect, or the 4xx
   Bitbucket gives (``_routes`` maps the paths to their replies).

An exception inside any step is the mock's own bug: it is answered 500
with Bitbucket's error envelope and counted, never raised.
"""

from __future__ import annotations

import contextlib
import logging
import random
import re
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Final, TypeAlias
from urllib.parse import SplitResult, parse_qsl, urlsplit

import attrs
import httpx

from .._auth import TOKEN_URL, BasicAuth, BearerToken, OAuth2, OAuth2Tokens
from .._exceptions import redact_url, short_repr
from .._timing import (
    AsyncSleep,
    Clock,
    SyncSleep,
    default_async_sleep,
    default_clock,
    default_now,
    default_sleep,
    to_seconds,
)
from ._accounts import STATUS_UNAUTHORIZED, Accounts, Principal
from ._dataset import Dataset, DatasetSize
from ._drivers import AccessLog, HTTPXHandlers, MockASGIApp
from ._faults import (
    SERVER_ERROR_MESSAGES,
    Faults,
    draw_fault,
    reset_reply,
    timeout_reply,
    unavailable_reply,
)
from ._ratelimit import HINT_MODES, STATUS_TOO_MANY, RateLimiter, RateLimitStyle
from ._replies import MockReply, error_reply, with_headers
from ._routes import Get, Query, Router

logger: Final = logging.getLogger("bb_backoff.testing")

_STATUS_BAD_REQUEST: Final = 400
_STATUS_NOT_FOUND: Final = 404
_STATUS_SERVER_ERROR: Final = 500
# A host name, an IPv4 address or a bracketed IPv6 address, and an optional port.
_HOST: Final = re.compile(r"([A-Za-z0-9_.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::([0-9]{1,5}))?")
_MAX_PORT: Final = 65535

Step: TypeAlias = int | str | httpx.Response
"""A scripted step: an error status (400-599), ``"reset"``, ``"timeout"`` or a response."""


@attrs.frozen
class MockCounters:
    """What the mock has seen since it started or since :meth:`~MockBitbucket.reset_counters`.

    Every request lands in exactly one of ``ok``, ``rate_limited``,
    ``server_errors``, ``resets``, ``timeouts``, ``unauthorized``,
    ``not_found``, ``bad_requests`` and ``outage_calls``, so those add up to
    ``calls``.

    Attributes:
        calls: every request the mock received, token refreshes and
            malformed requests included.
        ok: answered 2xx or 3xx (each diff redirect is one).
        rate_limited: answered 429.
        server_errors: answered 5xx (drawn or scripted faults, and the
            mock's own failures, which are bugs).
        resets: connections dropped.
        timeouts: requests that timed out: timeout faults, and answers
            slower than the client's read timeout.
        unauthorized: answered 401 (bad or expired credentials, bad OAuth
            client credentials).
        refreshes: successful OAuth token refreshes (also in ``ok``).
        not_found: answered 404.
        bad_requests: answered another 4xx (a bad ``pagelen``, a bad
            ``Host``, 405, 410 for a removed endpoint, an ``invalid_grant``, ...).
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
    url = None
    if isinstance(value, str):
        # A control character or a bad host raised httpx.InvalidURL, raw (or idna's UnicodeError).
        with contextlib.suppress(httpx.InvalidURL, UnicodeError):
            parsed = httpx.URL(value.rstrip("/"))
            if parsed.scheme in {"http", "https"} and parsed.host:  # (IDNA fails here)
                url = parsed
    if url is None:
        shown = redact_url(value) if isinstance(value, str) else type(value).__name__
        raise ValueError(
            f"{name} must be an absolute http(s) URL, with no control character, got {shown!r}"
        )
    return url


def _flag(name: str, value: object) -> bool:
    """``value`` if it is ``True`` or ``False``; ``bool("false")`` is true, so nothing else is."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {short_repr(value)}")
    return value


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


def _valid_host(host: str) -> bool:
    """Whether ``host`` is ``name[:port]`` or ``[ipv6][:port]``, as a ``Host`` header must be."""
    match = _HOST.fullmatch(host)
    return match is not None and (match.group(2) is None or int(match.group(2)) <= _MAX_PORT)


def _origin(parts: SplitResult) -> str | None:
    """``scheme://host[:port]`` of a request, without userinfo; ``None`` for a bad one."""
    if parts.scheme.lower() not in {"http", "https"}:
        return None
    # Credentials in the URL are never echoed into links.
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme.lower()}://{host}" if _valid_host(host) else None


def _bad_request(detail: str) -> MockReply:
    return error_reply(_STATUS_BAD_REQUEST, "Bad Request", detail=detail)


class MockBitbucket:
    """An in-process Bitbucket Cloud API 2.0 with rate limits, faults and a seeded dataset.

    Reach it through :meth:`transport` (sync httpx), :meth:`async_transport`,
    :meth:`handler` / :meth:`async_handler` (for ``httpx.MockTransport`` or a
    respx side effect), or :meth:`asgi_app` /
    :func:`~bb_backoff.testing.serve_mock` (a real HTTP server).  It issues
    its own credentials: :meth:`bearer`, :meth:`basic` and :meth:`oauth2`
    hand them to a client.

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
        self.token_headers: Final = _flag("token_headers", token_headers)
        self.json_429: Final = _flag("json_429", json_429)
        self.other_consumers: Final = float(other_consumers)
        self.count_rejected: Final = _flag("count_rejected", count_rejected)
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
        self._style = RateLimitStyle(
            limit=limit, hint=hint, json_429=self.json_429, token_headers=self.token_headers
        )
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
        self._counts: Counter[str] = Counter()
        self._per_principal: Counter[str] = Counter()
        self._script: list[tuple[str | None, Step]] = []
        self._accounts = Accounts(self.dataset, seed, clock, now)
        self._handlers = HTTPXHandlers(self.respond, sleep, async_sleep)

        accounts = self._accounts
        self.access_token: Final = accounts.access_token
        """A workspace access token (Bearer); it has its own rate window."""
        self.email: Final = accounts.email
        """The user's Atlassian account email, for HTTP basic with :attr:`api_token`."""
        self.api_token: Final = accounts.api_token
        """The user's Atlassian API token."""
        self.client_id: Final = accounts.client_id
        """The OAuth consumer's key; OAuth calls count against the consumer."""
        self.client_secret: Final = accounts.client_secret
        """The OAuth consumer's secret."""

    def __repr__(self) -> str:
        return (
            f"MockBitbucket(seed={self.dataset.seed}, limit={self.limit}, "
            f"window={self.window}, hint={self.hint!r}, faults={self.faults!r})"
        )

    # -- credentials ------------------------------------------------------------

    @property
    def refresh_token(self) -> str:
        """The OAuth refresh token that works now; it rotates on every refresh."""
        with self._lock:
            return self._accounts.refresh_token

    @property
    def oauth_access_token(self) -> str:
        """The newest OAuth access token (Bearer); it lives 7,200 s."""
        with self._lock:
            return self._accounts.oauth_access_token

    @property
    def oauth_expires_at(self) -> float:
        """When :attr:`oauth_access_token` expires, in epoch seconds (by ``now``)."""
        with self._lock:
            return self._accounts.oauth_expires_at

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
            return self._accounts.oauth2(
                on_refresh, self.token_url if token_url is None else token_url
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

        It never sleeps, does no I/O and never raises: the caller waits
        ``reply.delay``, then answers, drops the connection or times out
        (see :class:`MockReply`).  Use it to drive the mock from another
        HTTP library.

        Args:
            method: the HTTP method.
            url: the absolute URL, percent-encoded as sent.  Links in the
                answer use its origin, so a served mock links to itself; an
                origin that is no ``http(s)://host[:port]`` is answered 400.
            headers: the request headers, in any case.
            body: the request body (the token endpoint reads a form).
            read_timeout: the client's read timeout in seconds, when the
                caller knows it (the transports do): an answer that would
                take longer becomes a timeout after ``read_timeout``.
                ``None`` (the ASGI app): a slow answer is just slow.

        Returns:
            The reply.
        """
        with self._lock:
            outage = False
            try:
                request = self._parse(method, url, headers, body)
                if isinstance(request, MockReply):
                    reply = self._in_time(request, self.latency, read_timeout)
                else:
                    reply, outage = self._steps(request, read_timeout)
            except Exception as error:
                # The mock answers every request: its own bug becomes a counted 500.
                logger.exception("the mock failed on %s %s", method, redact_url(url))
                reply = error_reply(
                    _STATUS_SERVER_ERROR,
                    "Something went wrong",
                    detail=f"{type(error).__name__} inside the mock: a bug in the mock",
                )
            self._tally(reply, outage=outage)
            return reply

    def _parse(
        self, method: object, url: object, headers: object, body: object
    ) -> _Request | MockReply:
        """The request in the core's terms, or the 400 for a URL no server would take."""
        try:
            parts = urlsplit(str(url))
        except ValueError:
            return _bad_request("The request's URL or Host header is not valid")
        origin = _origin(parts)
        pairs = headers.items() if isinstance(headers, Mapping) else ()
        lowered = {str(name).lower(): str(value) for name, value in pairs}
        # A server reads the Host header as sent: "a/b" or "user@a" is no host, even
        # when the URL a driver built from it happens to parse.
        host = lowered.get("host")
        if origin is None or (host is not None and not _valid_host(host)):
            return _bad_request("The request's URL or Host header is not valid")
        path = parts.path or "/"
        base = self._base_path
        is_api = path == base or path.startswith(base + "/")
        return _Request(
            method=str(method).upper(),
            path=(path[len(base) :] or "/") if is_api else path,
            is_api=is_api,
            api=f"{origin}{base}",
            query=parse_qsl(parts.query, keep_blank_values=True),
            headers=lowered,
            body=bytes(body) if isinstance(body, bytes | bytearray | memoryview) else b"",
        )

    def _steps(self, request: _Request, read_timeout: float | None) -> tuple[MockReply, bool]:
        """The reply, and whether the full outage answered it."""
        # The clock is read under the lock so window entries stay in order across threads.
        monotonic, epoch = self._clock(), self._now()
        step = self._next_step(request)
        # A full outage: the proxy in front of the API answers every API
        # request before authentication and the rate window.
        if step is None and request.is_api and self.faults.in_outage(monotonic - self._started):
            return self._in_time(unavailable_reply(), self.latency, read_timeout), True
        return self._decide(request, step, monotonic, epoch, read_timeout), False

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
                reply = timeout_reply(read_timeout)
        else:
            principal = self._accounts.authenticate(request.headers, monotonic)
            reply = self._scripted(step, request, principal, monotonic, epoch)
            extra_delay, timed_out = 0.0, False

        if timed_out:
            if read_timeout is not None:
                return timeout_reply(read_timeout)
            late = self.latency + self.faults.slow_seconds
            if reply.fault == "reset":
                return attrs.evolve(reply, delay=late)
            return attrs.evolve(reply, fault="timeout", delay=late)
        return self._in_time(reply, self.latency + extra_delay, read_timeout)

    @staticmethod
    def _in_time(reply: MockReply, delay: float, read_timeout: float | None) -> MockReply:
        """``reply`` after ``delay`` seconds, or a timeout if the client stops waiting first."""
        if reply.fault is None and read_timeout is not None and delay > read_timeout:
            return timeout_reply(read_timeout)
        return attrs.evolve(reply, delay=delay)

    def _answer(
        self, request: _Request, monotonic: float, epoch: float
    ) -> tuple[MockReply, float, bool]:
        """Normal handling: the reply, the extra delay of a slow fault, and whether it timed out."""
        if not request.is_api:
            if request.path == self._token_path:
                reply = self._accounts.token_endpoint(request.method, request.headers, request.body)
                if reply.status == 200:  # noqa: PLR2004
                    self._counts["refreshes"] += 1
                return reply, 0.0, False
            return error_reply(_STATUS_NOT_FOUND, "Resource not found"), 0.0, False
        principal = self._accounts.authenticate(request.headers, monotonic)
        if isinstance(principal, MockReply):
            return principal, 0.0, False
        admission = self._limiter.admit(principal.key, monotonic)
        rate_headers = self._style.headers(
            access_token=principal.is_access_token, path=request.path, used=admission.used
        )
        if not admission.accepted:
            refused = self._style.refusal(admission.wait, epoch, rate_headers)
            return attrs.evolve(refused, principal=principal.kind), 0.0, False
        self._per_principal[principal.key] += 1

        fault, extra_delay = draw_fault(self.faults, self._fault_rng)
        if isinstance(fault, MockReply) or fault == "reset":
            reply = reset_reply() if fault == "reset" else fault
        elif request.method != "GET":
            reply = error_reply(405, f"Method {request.method} not allowed", ("Allow", "GET"))
        else:
            get = Get(request.path, request.query, request.api, principal.account)
            reply = self._router.route(get)
        reply = attrs.evolve(with_headers(reply, rate_headers), principal=principal.kind)
        return reply, extra_delay, fault == "timeout"

    def _tally(self, reply: MockReply, *, outage: bool) -> None:
        counts = self._counts
        counts["calls"] += 1
        status = reply.status
        if outage:
            counts["outage_calls"] += 1
        elif reply.fault is not None:
            counts["resets" if reply.fault == "reset" else "timeouts"] += 1
        elif status < _STATUS_BAD_REQUEST:
            counts["ok"] += 1
        elif status >= _STATUS_SERVER_ERROR:
            counts["server_errors"] += 1
        else:
            bucket = {
                STATUS_UNAUTHORIZED: "unauthorized",
                _STATUS_NOT_FOUND: "not_found",
                STATUS_TOO_MANY: "rate_limited",
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
        principal: Principal | MockReply,
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
            return reset_reply()
        assert isinstance(step, int)  # noqa: S101 (checked when queued)
        known = principal if isinstance(principal, Principal) else None
        kind = None if known is None else known.kind
        # A scripted answer reports the window as full: it stands in for a refusal.
        rate_headers = (
            ()
            if known is None
            else self._style.headers(
                access_token=known.is_access_token, path=request.path, used=self.limit
            )
        )
        if step == STATUS_TOO_MANY:
            wait = self._limiter.oldest_wait(None if known is None else known.key, monotonic)
            return attrs.evolve(self._style.refusal(wait, epoch, rate_headers), principal=kind)
        # A scripted 503 is the JSON envelope: the HTML one is the proxy's, drawn or in an outage.
        message = SERVER_ERROR_MESSAGES.get(step, "Scripted error")
        return attrs.evolve(with_headers(error_reply(step, message), rate_headers), principal=kind)

    # -- drivers ------------------------------------------------------------------

    def handler(self, request: httpx.Request) -> httpx.Response:
        """Answer an httpx request, waiting with ``sleep``: ``httpx.MockTransport(mock.handler)``.

        Raises:
            httpx.RemoteProtocolError: a reset fault.
            httpx.ReadTimeout: a timeout fault, after the read timeout.
        """
        return self._handlers.handler(request)

    async def async_handler(self, request: httpx.Request) -> httpx.Response:
        """The async twin of :meth:`handler`; it waits with ``async_sleep``."""
        return await self._handlers.async_handler(request)

    def transport(self) -> httpx.MockTransport:
        """A sync httpx transport into the mock: ``httpx.MockTransport`` over :meth:`handler`.

        Thread-safe: the threads of a client may share it.
        """
        return httpx.MockTransport(self._handlers.handler)

    def async_transport(self) -> httpx.MockTransport:
        """An async httpx transport: ``httpx.MockTransport`` over :meth:`async_handler`."""
        return httpx.MockTransport(self._handlers.async_handler)

    def asgi_app(self, *, access_log: AccessLog | None = None) -> MockASGIApp:
        """The mock as a raw ASGI 3 application; it waits with ``async_sleep``.

        Serve it with :func:`~bb_backoff.testing.serve_mock`, or with any
        ASGI server.

        Args:
            access_log: called with one line per request (method, target with
                secrets redacted, status, principal kind; never a credential).
        """
        return MockASGIApp(self.respond, self._async_sleep, access_log)
