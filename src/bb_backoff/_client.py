"""The clients: :class:`BitbucketClient` (sync) and :class:`AsyncBitbucketClient`.

:class:`_BaseClient` holds everything that is not I/O: arguments, the origin
guard, the flag check, the account gate's handle, events.  Every logical
request is one :class:`~._flow.RequestFlow` generator; each client adds only
its driver, one ``_send`` method that carries the flow's steps out (send,
sleep, ask the gate), and the loops of ``pages``.

The success path stays lean: a request that succeeds at once costs a flag
check, a reservation at the gate (a lock and a list append in memory) and a
status comparison over bare httpx; the retry bookkeeping is built only when
an attempt fails.
"""

from __future__ import annotations

import inspect
import logging
import re
import ssl
import threading
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from datetime import timedelta
from http.cookiejar import Cookie, CookieJar
from pathlib import Path
from typing import Any, Final, Self, TypeAlias, TypeGuard

import attrs
import httpx

from ._auth import BasicAuth, BearerToken, OAuth2, OAuth2Flow, TokenEndpointAnswered
from ._endpoints import Endpoints
from ._events import OnRetry
from ._exceptions import BitbucketError, redact_url, short_repr
from ._flags import FlagCheck, FlagSource
from ._flow import FlowSettings, RequestFlow, arun, network_error, run
from ._gate import AccountGate, account_key, check_sync_gate, resolve_gate
from ._origin import OriginGuard, parse_url, unsendable, with_params
from ._outcomes import undecodable
from ._pagination import Page, Pager, json_body
from ._policy import ExponentialBackoff, FixedRetry, RetryPolicy, check_policy
from ._timing import (
    MAX_WAIT,
    AsyncSleep,
    Clock,
    SyncSleep,
    default_async_sleep,
    default_clock,
    default_now,
    default_sleep,
)
from ._version import __version__
from .instrumentation._hooks import Hooks

logger: Final = logging.getLogger("bb_backoff")

DEFAULT_BASE_URL: Final = "https://api.bitbucket.org/2.0"
DEFAULT_TIMEOUT: Final = 30.0
"""Seconds; diffs of large pull requests take a while."""
MAX_TIMEOUT: Final = MAX_WAIT
"""The longest timeout taken, in seconds: a day (the longest single wait).

A timeout bounds one step of a request (connecting, one read, one write,
waiting for a pooled connection), so a day is far past any need; the socket
would take up to about 292 years before failing every request, but a
larger value is a mistake (``math.inf``, milliseconds taken for seconds).
``httpx.Timeout(None)`` waits for ever.
"""

Auth: TypeAlias = BearerToken | BasicAuth | OAuth2
Params: TypeAlias = Mapping[str, Any]

_TEXT: Final = {"Accept": "text/plain, */*"}
_ANY: Final = {"Accept": "*/*"}


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
        timeout: float | timedelta | httpx.Timeout,
        gate: AccountGate | bool | None,
        http: HTTPOptions,
        hooks: Iterable[object],
    ) -> None:
        flag_check = FlagCheck(flag=flag, actor=actor)
        check_policy("policy", policy)
        check_policy("legacy_policy", legacy_policy)
        if auth is not None and not isinstance(auth, BearerToken | BasicAuth | OAuth2):
            raise ValueError(
                f"auth must be BearerToken, BasicAuth or OAuth2, got {type(auth).__name__}"
            )
        for name, function in (("clock", clock), ("now", now)):
            if not callable(function):
                raise ValueError(f"{name} must be a callable returning seconds")
        base = _check_base_url(base_url)
        account_gate = resolve_gate(gate)

        self.base_url: Final = str(base)
        self.actor: Final = actor
        self.flag: Final[FlagSource] = flag_check.flag
        self._flag_check = flag_check
        self.policy: Final = policy
        self.legacy_policy: Final = legacy_policy
        self.gate: Final = account_gate
        """The account gate requests pass with the flag on, or ``None`` (``gate=False``)."""
        self._auth = auth
        self._guard = OriginGuard(
            self.base_url, auth.token_url if isinstance(auth, OAuth2) else None
        )
        self._hooks = Hooks(hooks, on_retry)
        self._base_path = base.path
        self._clock = clock
        self._now = now
        self._timeout = _check_timeout(timeout)
        if (
            http.headers
            and auth is not None
            and "authorization" in {k.lower() for k in http.headers}
        ):
            raise ValueError(
                "headers must not carry Authorization when auth= is given "
                "(pass the credentials once, as auth=)"
            )
        self._http_options = http
        self._lock = threading.Lock()
        handle = (
            None
            if account_gate is None
            else account_gate.bind(account_key(auth, self.base_url), clock=clock, now=now)
        )
        self._gate_handle = handle
        # What a flag check selects: the policy, the variant's name, the gate (or none).
        common: dict[str, Any] = {
            "actor": self.actor,
            "clock": clock,
            "now": now,
            "base_path": self._base_path,
        }
        self._on = FlowSettings(policy, "on", gate=handle, **common)
        self._off = FlowSettings(legacy_policy, "off", gate=None, **common)
        fixed = flag_check.fixed
        self._fixed = None if fixed is None else self._on if fixed else self._off
        """The variant of a flag that cannot change (a bool), or ``None``: ask per request."""

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={self.base_url!r}, actor={self.actor!r}, "
            f"flag={self.flag!r}, auth={self._auth!r}, gate={self.gate!r})"
        )

    def _httpx_options(self, guard: Callable[[httpx.Request], object]) -> dict[str, Any]:
        """What the httpx client is built with: ours, then the caller's httpx options."""
        options = self._http_options
        headers = {"User-Agent": f"bb-backoff/{__version__}", "Accept": "application/json"}
        headers.update(options.headers or {})
        auth: httpx.Auth | None = None
        if isinstance(self._auth, OAuth2):
            auth = OAuth2Flow(self._auth, self._now, timeout=self._timeout)
        elif self._auth is not None:
            headers["Authorization"] = self._auth.authorization()
        hooks = options.event_hooks or {}
        theirs = list(hooks.get("request", ()))
        built: dict[str, Any] = {
            "auth": auth,
            "cookies": NoCookies(),
            "headers": headers,
            "timeout": self._timeout,
            # Bitbucket redirects the pull-request diff; the request flow
            # follows redirects itself (each hop passes the gate), and the
            # origin guard keeps them on the API.  It is the first request
            # hook, so the caller's never see a request to another origin,
            # and the last, so a hook of theirs that rewrites the URL is
            # checked too.
            "follow_redirects": False,
            "event_hooks": {
                "request": [guard, *theirs, guard] if theirs else [guard],
                "response": list(hooks.get("response", ())),
            },
        }
        for name in ("limits", "verify", "proxy"):
            value = getattr(options, name)
            if value is not None:
                built[name] = value
        return built

    # -- the flag --------------------------------------------------------------------

    @property
    def flag_errors(self) -> int:
        """How many times the flag source failed (and the legacy policy was used)."""
        return self._flag_check.errors

    def _ask_flag(self) -> FlowSettings:
        """Ask the flag once for this logical request ("off" if the source fails)."""
        fixed = self._fixed
        if fixed is not None:
            return fixed
        return self._on if self._flag_check.ask() else self._off


class NoCookies(CookieJar):
    """The clients' cookie jar: it keeps nothing, so no request carries a cookie.

    Every request is authenticated by the client's credential alone.  A
    cookie the API sets (a session, a load balancer's) would otherwise ride
    along on the requests after it, in this client and not in the other
    workers' or processes', and storing one costs every response a few
    microseconds: httpx builds an ``email.message.Message`` of its headers
    to look for ``Set-Cookie``, about as much as the account gate costs.
    """

    def extract_cookies(self, response: object, request: object) -> None:
        """Keep none of the response's cookies."""

    def set_cookie(self, cookie: Cookie) -> None:
        """Keep no cookie."""


def _check_base_url(base_url: object) -> httpx.URL:
    """The API root, refused (never echoed when it may hold a secret) unless plain http(s)."""
    try:
        base = parse_url(base_url.rstrip("/") if isinstance(base_url, str) else "")
    except httpx.InvalidURL:  # not a URL, or a host that is not valid IDNA
        raise ValueError("base_url is not a valid URL") from None
    if base.userinfo:
        # Never echo it: the userinfo is a credential.
        raise ValueError("base_url must not contain credentials; pass them as auth=")
    if base.query or base.fragment or not {"?", "#"}.isdisjoint(str(base)):
        # A query on the API root is where a token would hide; never echo it.
        # An empty one counts too ("/2.0?" would send "/2.0?/user"): httpx
        # reads it as no query, but keeps the "?" in the URL.
        raise ValueError(
            "base_url must not have a query or a fragment (the value is not shown); "
            "credentials go in auth="
        )
    if base.scheme not in {"http", "https"} or not base.host:
        raise ValueError(f"base_url must be an absolute http(s) URL, got {redact_url(base_url)!r}")
    return base


def _check_timeout(timeout: object) -> float | httpx.Timeout:
    """Seconds, a timedelta or an :class:`httpx.Timeout`, each up to :data:`MAX_TIMEOUT`.

    Checked here because httpx takes any number and the socket fails on it
    later, on every request: ``settimeout`` refuses more than 2**63
    nanoseconds (about 292 years) with an ``OverflowError``, and a negative
    value with a ``ValueError``.
    """
    if isinstance(timeout, httpx.Timeout):
        for step, seconds in timeout.as_dict().items():
            if seconds is not None and not _timeout_seconds(seconds):
                raise ValueError(
                    f"timeout's {step} must be None (no limit) or positive seconds up to "
                    f"{MAX_TIMEOUT:.0f}, got {short_repr(seconds)}"
                )
        return timeout
    if isinstance(timeout, timedelta):
        timeout = timeout.total_seconds()
    if not _timeout_seconds(timeout):
        raise ValueError(
            f"timeout must be positive seconds up to {MAX_TIMEOUT:.0f} (a day), a timedelta "
            f"or an httpx.Timeout, got {short_repr(timeout)} "
            "(httpx.Timeout(None) waits for ever, if you must)"
        )
    return float(timeout)


def build_request(
    http: httpx.Client | httpx.AsyncClient,
    method: str,
    url: str | httpx.URL,
    params: Params | None,
    headers: Mapping[str, str] | None,
) -> httpx.Request:
    """The request to send, ``params`` merged into ``url``'s query.

    Raises:
        UnsafeURL: httpx cannot build a request for ``url`` (nothing is sent).
        TypeError, ValueError: ``params`` is not query parameters, naming it.
    """
    try:
        # ``params`` merged into the URL's query, as :meth:`pages` does:
        # httpx's ``build_request(url, params=...)`` replaces the query, and a
        # stored ``next`` given with ``fields`` would lose its page.  A
        # parameter given replaces the URL's of the same name; repeated
        # values stay.
        target = url if params is None else with_params(url, params)
        return http.build_request(method, target, headers=headers)
    except httpx.InvalidURL as error:
        raise unsendable(str(url), error) from None


# Per kind of client: the method its transport must have, what to call it, the client.
_TRANSPORTS: Final = {
    False: ("handle_request", "a sync httpx transport (httpx.BaseTransport)", "BitbucketClient"),
    True: (
        "handle_async_request",
        "an async httpx transport (httpx.AsyncBaseTransport)",
        "AsyncBitbucketClient",
    ),
}


def _check_transport(transport: object, *, asynchronous: bool) -> None:
    """``ValueError`` naming ``transport`` unless it is one the httpx client can send through."""
    method, wanted, _client = _TRANSPORTS[asynchronous]
    if transport is None or callable(getattr(transport, method, None)):
        return
    other_method, _wanted, other = _TRANSPORTS[not asynchronous]
    hint = f"; {other} takes this one" if callable(getattr(transport, other_method, None)) else ""
    raise ValueError(f"transport must be {wanted}, got {type(transport).__name__}{hint}")


def _closed(http: httpx.Client | httpx.AsyncClient, error: RuntimeError) -> BitbucketError:
    """The error for a request on a closed client (httpx's is a bare ``RuntimeError``).

    Any other ``RuntimeError`` goes on up as it came.
    """
    if not http.is_closed:
        raise error
    return BitbucketError("the client is closed and sends nothing more; make a new one")


def _timeout_seconds(value: object) -> TypeGuard[float]:
    # Compared as they are: float() of a huge int overflows, and NaN is in no range.
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= MAX_TIMEOUT
    )


_HOOK_KINDS: Final = frozenset({"request", "response"})


# RFC 9110's token (a header's name), and what a header's value must not hold.
_HEADER_NAME: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE_FORBIDDEN: Final = re.compile(rb"[\r\n\x00]")


def _check_headers(headers: object) -> None:
    """``ValueError`` unless ``headers`` can go out on every request as given.

    What the HTTP/1.1 layer refuses on every request (a bad name, a line
    break in a value) is refused once here; a value is never echoed (it may
    be a key).
    """
    try:
        raw = httpx.Headers(headers).raw  # type: ignore[arg-type]
    except (TypeError, ValueError, AttributeError):
        raw = None
    if raw is None:
        # Raised here, out of the except block: httpx's error (a
        # UnicodeEncodeError) holds the whole value, a token perhaps, and
        # ``from None`` only hides it from tracebacks; it would stay
        # reachable as __context__ (a scrubber, a logger, Sentry).
        raise ValueError(_header_problem(headers))
    for name, value in raw:
        if not _HEADER_NAME.fullmatch(name):
            raise ValueError(
                f"headers: {name.decode('ascii', 'replace')!r} is not a valid header name"
            )
        if _HEADER_VALUE_FORBIDDEN.search(value):
            raise ValueError(
                f"headers[{name.decode('ascii')!r}] holds a line break or a NUL, "
                "which HTTP does not allow in a header (the value is not shown)"
            )


_NOT_HEADERS: Final = "headers must be a mapping of header names to strings"


def _header_problem(headers: object) -> str:
    """What is wrong with ``headers``, which httpx refused: names the header, never its value."""
    given: Any = headers
    try:
        items = list(given.items() if isinstance(given, Mapping) else given)
    except Exception:  # noqa: BLE001 (anything the caller gave may raise: not headers)
        return _NOT_HEADERS
    for item in items:
        problem = _one_header_problem(item)
        if problem is not None:
            return problem
    return _NOT_HEADERS


def _one_header_problem(item: object) -> str | None:
    """What is wrong with one ``(name, value)`` of the headers, if anything."""
    if not isinstance(item, tuple | list) or len(item) != 2:  # noqa: PLR2004 (name, value)
        return _NOT_HEADERS
    name, value = item
    if not isinstance(name, str | bytes):
        return f"headers: a header name must be a string, not {type(name).__name__}"
    if isinstance(name, str) and not name.isascii():
        return f"headers: {short_repr(name)} is not a valid header name (not ASCII)"
    shown = short_repr(name if isinstance(name, str) else name.decode("ascii", "replace"))
    if not isinstance(value, str | bytes):
        return (
            f"headers[{shown}] must be a string, not {type(value).__name__} "
            "(the value is not shown)"
        )
    if isinstance(value, str) and not value.isascii():
        return (
            f"headers[{shown}] holds a character that is not ASCII, which a header "
            "cannot carry as text (the value is not shown; a no-break space or a "
            "typographic quote pasted with a token?)"
        )
    return None


def _ca_bundle(path: str) -> ssl.SSLContext:
    """An SSL context trusting the CA bundle at ``path`` (a PEM file, or a directory of them).

    Raises:
        ValueError: naming ``verify``, when it cannot be read as one.
    """
    try:
        if Path(path).is_dir():
            return ssl.create_default_context(capath=path)
        return ssl.create_default_context(cafile=path)
    except (OSError, ValueError) as error:  # ssl.SSLError is an OSError
        why = getattr(error, "strerror", None) or type(error).__name__
    # Raised here, not in the except block: nothing of the file in the chain.
    raise ValueError(
        f"verify: no CA bundle could be read at {short_repr(path)} ({why}); give a PEM "
        "file or a directory of them, an ssl.SSLContext, or True"
    )


@attrs.frozen(kw_only=True)
class HTTPOptions:
    """httpx's own client options, passed through as given (validated here).

    Attributes:
        headers: sent with every request, after the client's own
            (``User-Agent``, ``Accept``); not ``Authorization``: that is ``auth=``.
        event_hooks: ``{"request": [...], "response": [...]}``, called by
            httpx for every request it sends (redirect hops and retries
            included), between two checks of the client's origin guard (a
            request a hook sends elsewhere is refused).
        limits: :class:`httpx.Limits` for the connection pool.
        verify: TLS verification (a bool, a CA bundle path or an
            :class:`ssl.SSLContext`); a path is read when the options are
            checked, into an :class:`ssl.SSLContext`.
        proxy: a proxy URL or :class:`httpx.Proxy`.
    """

    headers: Mapping[str, str] | None = None
    event_hooks: Mapping[str, Sequence[Callable[..., Any]]] | None = None
    limits: httpx.Limits | None = None
    verify: Any = None
    proxy: Any = None

    def check(self, *, asynchronous: bool) -> HTTPOptions:
        """These options, or ``ValueError`` naming the one that is wrong."""
        if self.headers is not None:
            _check_headers(self.headers)
        if self.event_hooks is not None:
            if (
                not isinstance(self.event_hooks, Mapping)
                or not set(self.event_hooks) <= _HOOK_KINDS
            ):
                raise ValueError('event_hooks must be {"request": [...], "response": [...]}')
            for event, hooks in self.event_hooks.items():
                # A list or a tuple: read here and again when the client is
                # built, which an iterator would not survive.
                if not isinstance(hooks, list | tuple):
                    raise ValueError(
                        f"event_hooks[{event!r}] must be a list of callables, "
                        f"got {type(hooks).__name__}"
                    )
                for hook in hooks:
                    if not callable(hook) or inspect.iscoroutinefunction(hook) != asynchronous:
                        kind = "async callables" if asynchronous else "callables (not async)"
                        raise ValueError(f"event_hooks must hold {kind} here")
        if self.limits is not None and not isinstance(self.limits, httpx.Limits):
            raise ValueError(f"limits must be an httpx.Limits, got {type(self.limits).__name__}")
        if self.verify is not None and not isinstance(self.verify, bool | str | ssl.SSLContext):
            raise ValueError("verify must be a bool, a CA bundle path or an ssl.SSLContext")
        if isinstance(self.verify, str):
            # Read now, as httpx would when the client is built (its error,
            # a FileNotFoundError, named no argument), into the SSLContext
            # httpx asks for (it deprecates a path).
            return attrs.evolve(self, verify=_ca_bundle(self.verify)).check(
                asynchronous=asynchronous
            )
        if self.proxy is not None:
            try:
                httpx.Proxy(self.proxy) if not isinstance(self.proxy, httpx.Proxy) else None
            except (TypeError, ValueError, httpx.InvalidURL):
                raise ValueError(
                    f"proxy must be a proxy URL or an httpx.Proxy, got {redact_url(self.proxy)!r}"
                ) from None
        return self


class BitbucketClient(_BaseClient, Endpoints[Any, str, Iterator[Any]]):
    """A Bitbucket Cloud API client on :class:`httpx.Client`, with flag-aware retries.

    Every call goes through one retry loop.  When the feature flag
    :data:`~bb_backoff.FLAG_NAME` is on for ``actor``, the loop follows
    ``policy`` (jittered exponential backoff that honours 429s and server
    hints) and passes the account's :class:`~bb_backoff.AccountGate`; when
    it is off, ``legacy_policy``, and no gate.  The flag is asked once per
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
        timeout: seconds, a timedelta or an :class:`httpx.Timeout`: positive
            and at most a day (86,400 s) for each step, or ``None`` in an
            :class:`httpx.Timeout` for no limit.
        gate: the :class:`AccountGate` (``None``: the process's default,
            shared by every client on the same credential and clock;
            ``False``: none, every request backs off on its own).
        headers: extra headers for every request (not ``Authorization``).
        event_hooks: httpx's ``{"request": [...], "response": [...]}`` hooks.
        limits: an :class:`httpx.Limits` for the connection pool.
        verify: TLS verification, as httpx takes it.
        proxy: a proxy URL or :class:`httpx.Proxy`.
        hooks: objects told of every retry, finished request, give-up and
            gate change (see :mod:`bb_backoff.instrumentation`), such as a
            :class:`~bb_backoff.instrumentation.PrometheusHook`.

    The client follows redirects itself, one hop at a time through the
    account gate (each hop spends quota), so it takes no
    ``follow_redirects``; use :class:`~bb_backoff.RetryTransport` under your
    own httpx client for that.

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
        timeout: float | timedelta | httpx.Timeout = DEFAULT_TIMEOUT,
        gate: AccountGate | bool | None = None,
        headers: Mapping[str, str] | None = None,
        event_hooks: Mapping[str, Sequence[Callable[..., Any]]] | None = None,
        limits: httpx.Limits | None = None,
        verify: bool | str | ssl.SSLContext | None = None,
        proxy: str | httpx.Proxy | httpx.URL | None = None,
        hooks: Iterable[object] = (),
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
            gate=gate,
            http=HTTPOptions(
                headers=headers, event_hooks=event_hooks, limits=limits, verify=verify, proxy=proxy
            ).check(asynchronous=False),
            hooks=hooks,
        )
        if not callable(sleep) or inspect.iscoroutinefunction(sleep):
            raise ValueError(
                "sleep must be a (non-async) callable taking seconds; "
                "AsyncBitbucketClient takes an async one"
            )
        check_sync_gate(self.gate, "gate")
        if inspect.iscoroutinefunction(on_retry):
            raise ValueError("on_retry must not be async here; AsyncBitbucketClient awaits it")
        _check_transport(transport, asynchronous=False)
        self._sleep = sleep
        self._http = httpx.Client(transport=transport, **self._httpx_options(self._guard.check))

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
        url: str | httpx.URL,
        params: Params | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Drive one logical request's flow: the only place that sends or sleeps."""
        request = build_request(self._http, method, url, params, headers)
        hooks = self._hooks
        flow = RequestFlow(request, self._ask_flag(), hooks.observe_requests())
        return run(flow, send=self._send_once, sleep=self._sleep, report=hooks)

    def _send_once(self, request: httpx.Request) -> object:
        try:
            # Streamed, then read here, so that an error status survives a
            # body that cannot be decoded (see without_body).
            try:
                response = self._http.send(request, follow_redirects=False, stream=True)
            except httpx.HTTPStatusError as error:
                # A response hook's raise_for_status (httpx's documented
                # pattern): its response is judged as if it had not raised,
                # so a 429 is waited out and a final error is our own.
                response = error.response
            try:
                response.read()
            except httpx.DecodingError as error:
                response.close()
                return undecodable(response, error)
            except BaseException:
                response.close()
                raise
            else:
                return response
        # UnicodeError: httpx reads a redirect's Location inside send, and
        # punycode that is not valid IDNA fails there with idna's error.
        except (httpx.RequestError, httpx.InvalidURL, UnicodeError, BitbucketError) as error:
            return error  # the flow judges it
        except OSError as error:  # from a transport that is not httpx's
            return network_error(error, request)
        except RuntimeError as error:
            return _closed(self._http, error)

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
        return json_body(self._send("GET", self._guard.url(path_or_url), params))

    def get_text(self, path_or_url: str, params: Params | None = None) -> str:
        """GET a plain-text resource, such as a diff.

        Returns:
            The body as text, decoded with the charset the response names,
            or UTF-8; a byte that does not decode becomes U+FFFD (a diff of
            a file in Latin-1, say): :meth:`get_bytes` keeps every byte.
        """
        return self._send("GET", self._guard.url(path_or_url), params, _TEXT).text

    def get_bytes(self, path_or_url: str, params: Params | None = None) -> bytes:
        """GET a resource as the bytes the API sent (a diff to store byte for byte, a file).

        Returns:
            The body, undecoded (a compressed transfer is still decompressed).
        """
        return self._send("GET", self._guard.url(path_or_url), params, _ANY).content

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
            PaginationError: a page has no ``values``, a ``next`` repeats, or
                the listing runs past its bounds (:data:`~._pagination.MAX_EMPTY_PAGES`
                empty pages in a row, :data:`~._pagination.MAX_PAGES` pages).
        """
        pager = Pager(self._guard, path_or_url, params)
        while pager.url is not None:
            yield pager.read(self._send("GET", pager.url))
        pager.finish()

    def paginate(self, path_or_url: str, params: Params | None = None) -> Iterator[Any]:
        """Yield the items of a listing across all its pages (see :meth:`pages`)."""
        for page in self.pages(path_or_url, params):
            yield from page.values


class AsyncBitbucketClient(
    _BaseClient, Endpoints[Awaitable[Any], Awaitable[str], AsyncIterator[Any]]
):
    """The async twin of :class:`BitbucketClient`, on :class:`httpx.AsyncClient`.

    Same arguments, except that ``transport`` is an async transport,
    ``sleep`` may be a sync or an async callable (default
    :func:`anyio.sleep`: asyncio's or trio's), and ``event_hooks`` are async callables.
    :meth:`pages` and :meth:`paginate` are async iterators.  A flag source
    with an ``async def enabled_async(name, actor)`` is awaited instead of
    called, so a slow source never blocks the event loop.
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
        timeout: float | timedelta | httpx.Timeout = DEFAULT_TIMEOUT,
        gate: AccountGate | bool | None = None,
        headers: Mapping[str, str] | None = None,
        event_hooks: Mapping[str, Sequence[Callable[..., Any]]] | None = None,
        limits: httpx.Limits | None = None,
        verify: bool | str | ssl.SSLContext | None = None,
        proxy: str | httpx.Proxy | httpx.URL | None = None,
        hooks: Iterable[object] = (),
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
            gate=gate,
            http=HTTPOptions(
                headers=headers, event_hooks=event_hooks, limits=limits, verify=verify, proxy=proxy
            ).check(asynchronous=True),
            hooks=hooks,
        )
        if not callable(sleep):
            raise ValueError("sleep must be a callable taking seconds")
        _check_transport(transport, asynchronous=True)
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            transport=transport, **self._httpx_options(self._async_guard)
        )
        if isinstance(self._http.auth, OAuth2Flow):
            self._http.auth.bind(self._http)

    async def _async_guard(self, request: httpx.Request) -> None:
        self._guard.check(request)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections, once an OAuth 2 refresh on the wire has stored its pair."""
        auth = self._http.auth
        if isinstance(auth, OAuth2Flow):
            await auth.settle()
        await self._http.aclose()

    async def _ask_flag_async(self) -> FlowSettings:
        return self._on if await self._flag_check.ask_async() else self._off

    async def _send(
        self,
        method: str,
        url: str | httpx.URL,
        params: Params | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Drive one logical request's flow: the only place that sends or sleeps."""
        variant = self._fixed
        if variant is None:
            variant = await self._ask_flag_async()
        request = build_request(self._http, method, url, params, headers)
        hooks = self._hooks
        flow = RequestFlow(request, variant, hooks.observe_requests())
        return await arun(flow, send=self._send_once, sleep=self._sleep, report=hooks)

    async def _send_once(self, request: httpx.Request) -> object:
        try:
            try:
                response = await self._http.send(request, follow_redirects=False, stream=True)
            except httpx.HTTPStatusError as error:
                response = error.response  # a hook's raise_for_status: see the sync client
            try:
                await response.aread()
            except httpx.DecodingError as error:
                await response.aclose()
                return undecodable(response, error)
            except BaseException:
                await response.aclose()
                raise
            else:
                return response
        # UnicodeError: httpx reads a redirect's Location inside send, and
        # punycode that is not valid IDNA fails there with idna's error.
        except (httpx.RequestError, httpx.InvalidURL, UnicodeError, BitbucketError) as error:
            return error  # the flow judges it
        except TokenEndpointAnswered as answered:
            return answered.response  # the refresh's transient failure, waited out as any
        except OSError as error:  # from a transport that is not httpx's
            return network_error(error, request)
        except RuntimeError as error:
            return _closed(self._http, error)

    async def get(self, path_or_url: str, params: Params | None = None) -> Any:
        """GET a path or an absolute URL on the API's origin; see :meth:`BitbucketClient.get`."""
        return json_body(await self._send("GET", self._guard.url(path_or_url), params))

    async def get_text(self, path_or_url: str, params: Params | None = None) -> str:
        """GET a plain-text resource, such as a diff; see :meth:`BitbucketClient.get_text`."""
        return (await self._send("GET", self._guard.url(path_or_url), params, _TEXT)).text

    async def get_bytes(self, path_or_url: str, params: Params | None = None) -> bytes:
        """GET a resource as the bytes the API sent; see :meth:`BitbucketClient.get_bytes`."""
        return (await self._send("GET", self._guard.url(path_or_url), params, _ANY)).content

    async def pages(self, path_or_url: str, params: Params | None = None) -> AsyncIterator[Page]:
        """Yield the pages of a listing; see :meth:`BitbucketClient.pages`."""
        pager = Pager(self._guard, path_or_url, params)
        while pager.url is not None:
            yield pager.read(await self._send("GET", pager.url))
        pager.finish()

    async def paginate(self, path_or_url: str, params: Params | None = None) -> AsyncIterator[Any]:
        """Yield the items of a listing across all its pages."""
        async for page in self.pages(path_or_url, params):
            for item in page.values:
                yield item
