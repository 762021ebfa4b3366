"""RetryTransport: the clients' retry behaviour under any httpx client.

Code that already owns an ``httpx.Client`` or ``httpx.AsyncClient`` wraps its
transport instead of switching clients::

    client = httpx.Client(transport=RetryTransport(), base_url="https://api.bitbucket.org/2.0")

Every request then runs the same :class:`~._flow.RequestFlow` as the
clients': the flag chooses the policy per request, 429s and hints are waited
out, the account gate paces the account (keyed by the request's
``Authorization`` header and origin, never the secret itself), and the
sync and async paths share one class, as httpx-retries' transport does.

Where it differs from :class:`~bb_backoff.BitbucketClient`, because a
transport sits under the client rather than around it:

* a request that the policy gives up on returns its **last response** (call
  ``raise_for_status()`` as usual), or re-raises **httpx's own error** after
  a transport error; no :class:`~bb_backoff.BitbucketError` (as with the
  client, a request whose errors run out while the account's breaker is
  open waits for it first, up to the gate's ``outage_budget``);
* redirects are returned, not followed (the httpx client above follows them,
  and each hop comes back through the transport, so the gate still sees it);
* there is no origin guard, no pagination and no endpoint helpers: those
  need the client's base URL and the page envelope;
* a request body is read into memory before the first attempt, so that it
  can be sent again; so is an error response's (small) body, to release
  the connection before a retry; the one returned is handed back unread
  (as received, still encoded), for the client above to read, decode and
  time as it does any response (``response.elapsed``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
from collections.abc import Iterable
from typing import Final

import httpx

from ._events import OnRetry
from ._flags import FlagCheck, FlagSource
from ._flow import FlowSettings, RequestFlow, arun, run
from ._gate import AccountGate, GateHandle, check_sync_gate, resolve_gate
from ._outcomes import without_body
from ._policy import ExponentialBackoff, FixedRetry, RetryPolicy, check_policy
from ._timing import (
    AsyncSleep,
    Clock,
    SyncSleep,
    default_async_sleep,
    default_clock,
    default_now,
    default_sleep,
    is_async_callable,
)
from .instrumentation._hooks import Hooks

_FINAL_STATUS: Final = 400
_ASYNC_ON_RETRY: Final = (
    "on_retry must not be async under httpx.Client, which cannot await it (its events "
    "would be lost); give a sync on_retry, or use this transport with httpx.AsyncClient"
)


class _Buffered:
    """The error responses of one request, read as they come; the last one, unread again.

    An error response is read at once (the flow reads its message, and a
    retry must not hold the connection), which closes it.  An httpx client
    above would then never see the response's stream end, and could not
    time it: the one returned leaves as a fresh response over the same raw
    bytes.  A response the wrapped transport had read already (a
    ``MockTransport``'s) goes back as it came.
    """

    __slots__ = ("last", "raw")

    def __init__(self) -> None:
        self.last: httpx.Response | None = None
        self.raw = b""

    def keep(self, response: httpx.Response, raw: bytes) -> httpx.Response:
        """A read copy of ``response`` (closed, its ``raw`` bytes taken), for the flow."""
        copy = _unread(response, raw)
        try:
            copy.read()
        except httpx.DecodingError:
            copy = without_body(copy)  # the flow judges its status and headers
        self.last, self.raw = copy, raw
        return copy

    def returned(self, response: httpx.Response) -> httpx.Response:
        """What the transport returns for the flow's ``response``: unread, if it was read here."""
        return response if response is not self.last else _unread(response, self.raw)


def _unread(response: httpx.Response, raw: bytes) -> httpx.Response:
    """``response`` again over its ``raw`` bytes (still encoded), not read yet."""
    return httpx.Response(
        response.status_code,
        headers=response.headers,
        stream=httpx.ByteStream(raw),
        extensions=response.extensions,
    )


def request_account(request: httpx.Request) -> str:
    """A fingerprint of the account a request spends the quota of (never the secret).

    The same owners as :func:`~._gate.account_key`: HTTP basic counts
    against its user (the name before the colon), anything else against the
    whole ``Authorization`` value (a bearer token).  An OAuth access token
    changes at every refresh, so each gets its own model here; the clients,
    which know the consumer, do better.
    """
    url = request.url
    authorization = request.headers.get("Authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    identity = f"raw:{authorization}"
    if scheme.lower() == "basic":
        try:
            user = base64.b64decode(credentials, validate=True).decode("utf-8").partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            pass
        else:
            identity = f"user:{user.lower()}"
    elif not authorization:
        identity = "anonymous"
    origin = f"{url.scheme}://{url.host}:{url.port or ''}"
    return hashlib.sha256(f"bb-backoff\0{origin}\0{identity}".encode()).hexdigest()[:24]


class RetryTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Wraps any httpx transport with the flag-aware retry policies and the account gate.

    One object serves ``httpx.Client`` and ``httpx.AsyncClient``: give it a
    sync transport, an async one, or none (then httpx's default transports,
    made when first needed).

    Args:
        transport: the transport to wrap (``None``: httpx's default).
        flag: a :class:`FlagSource`, or a bool for a flag that never changes.
        actor: the id the flag is checked for, like ``"Project:123"``.
        policy: the policy when the flag is on (default
            :class:`ExponentialBackoff`).
        legacy_policy: the policy when the flag is off (default
            :class:`FixedRetry`).
        gate: the :class:`AccountGate` (``None``: the process's default;
            ``False``: none).
        on_retry: called with a :class:`RetryEvent` before every wait.
        clock: monotonic seconds.
        now: epoch seconds (to read HTTP-date hints).
        sleep: the sync wait (seconds), for ``httpx.Client``: not async
            (``httpx.Client`` could not await it: no wait at all).
        async_sleep: the async wait (seconds), for ``httpx.AsyncClient``
            (async or not).
        hooks: objects told of every retry, finished request, give-up and
            gate change (see :mod:`bb_backoff.instrumentation`).

    Raises:
        ValueError: for an invalid argument; the message names it.
        TypeError: an async ``sleep``, or an async ``on_retry`` with a
            transport that serves ``httpx.Client`` only (an async
            ``on_retry`` is refused at the first request under
            ``httpx.Client`` otherwise).
    """

    def __init__(
        self,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
        *,
        flag: FlagSource | bool = True,
        actor: str | None = None,
        policy: RetryPolicy | None = None,
        legacy_policy: RetryPolicy | None = None,
        gate: AccountGate | bool | None = None,
        on_retry: OnRetry | None = None,
        clock: Clock = default_clock,
        now: Clock = default_now,
        sleep: SyncSleep = default_sleep,
        async_sleep: AsyncSleep = default_async_sleep,
        hooks: Iterable[object] = (),
    ) -> None:
        if transport is not None and not isinstance(
            transport, httpx.BaseTransport | httpx.AsyncBaseTransport
        ):
            raise ValueError(
                f"transport must be an httpx transport, got {type(transport).__name__}"
            )
        policy = ExponentialBackoff() if policy is None else policy
        legacy_policy = FixedRetry() if legacy_policy is None else legacy_policy
        check_policy("policy", policy)
        check_policy("legacy_policy", legacy_policy)
        for name, function in (
            ("clock", clock),
            ("now", now),
            ("sleep", sleep),
            ("async_sleep", async_sleep),
        ):
            if not callable(function):
                raise ValueError(f"{name} must be a callable")
        if is_async_callable(sleep):
            # Called without await under httpx.Client: every retry at once.
            raise TypeError(
                "sleep must be a (non-async) callable taking seconds: it serves httpx.Client, "
                "which cannot await it; async_sleep serves httpx.AsyncClient"
            )
        # An async on_retry is awaited under httpx.AsyncClient only.
        self._async_on_retry = is_async_callable(on_retry)
        if (
            self._async_on_retry
            and isinstance(transport, httpx.BaseTransport)
            and not isinstance(transport, httpx.AsyncBaseTransport)
        ):
            raise TypeError(_ASYNC_ON_RETRY)
        self._flag = FlagCheck(flag=flag, actor=actor)
        self.policy: Final = policy
        self.legacy_policy: Final = legacy_policy
        self.gate: Final = resolve_gate(gate)
        self._transport = transport
        self._hooks = Hooks(hooks, on_retry)
        self._clock = clock
        self._now = now
        self._sleep = sleep
        self._async_sleep = async_sleep
        # Looked up once, not per request: a sync caller is then refused.
        self._async_only_store = not getattr(getattr(self.gate, "store", None), "serves_sync", True)
        self._handles: dict[str, GateHandle] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"RetryTransport({self._transport!r}, flag={self._flag.flag!r}, "
            f"actor={self._flag.actor!r}, policy={self.policy!r}, gate={self.gate!r})"
        )

    @property
    def flag_errors(self) -> int:
        """How many times the flag source failed (and the legacy policy was used)."""
        return self._flag.errors

    # -- shared by both paths ------------------------------------------------------------

    def _flow(self, request: httpx.Request, *, on: bool) -> RequestFlow:
        gate = None
        if on and self.gate is not None:
            gate = self._handle(request_account(request))
        settings = FlowSettings(
            self.policy if on else self.legacy_policy,
            "on" if on else "off",
            actor=self._flag.actor,
            clock=self._clock,
            now=self._now,
            gate=gate,
            follow_redirects=False,
            give_up_with_response=True,
            base_path="",
        )
        return RequestFlow(request, settings, self._hooks.observe_requests())

    def _handle(self, account: str) -> GateHandle:
        handle = self._handles.get(account)
        if handle is None:
            assert self.gate is not None  # noqa: S101 (asked only with a gate)
            with self._lock:
                handle = self._handles.get(account)
                if handle is None:
                    handle = self.gate.bind(account, clock=self._clock, now=self._now)
                    self._handles[account] = handle
        return handle

    # -- sync ------------------------------------------------------------------------------

    def _sync_inner(self) -> httpx.BaseTransport:
        inner = self._transport
        if inner is None:
            with self._lock:
                if self._transport is None:
                    self._transport = httpx.HTTPTransport()
                inner = self._transport
        if not isinstance(inner, httpx.BaseTransport):
            raise TypeError(
                "this RetryTransport wraps an async transport; use it with httpx.AsyncClient"
            )
        return inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through the flow (httpx calls this).

        Raises:
            TypeError: the gate's store serves async callers only (a
                ``redis.asyncio.Redis``), or ``on_retry`` is async: this
                transport is under a sync client.
        """
        if self._async_only_store:
            check_sync_gate(self.gate, "gate")
        if self._async_on_retry:
            raise TypeError(_ASYNC_ON_RETRY)
        inner = self._sync_inner()
        request.read()  # a body that can be sent again
        buffered = _Buffered()

        def send(attempt: httpx.Request) -> object:
            try:
                response = inner.handle_request(attempt)
                if response.status_code >= _FINAL_STATUS and not response.is_stream_consumed:
                    # Error bodies are small; read them for the flow and
                    # release the connection before any retry (iter_raw closes).
                    return buffered.keep(response, b"".join(response.iter_raw()))
            except httpx.TransportError as error:
                return error  # the flow judges it (a body cut short too)
            return response

        flow = self._flow(request, on=self._flag.ask())
        return buffered.returned(run(flow, send=send, sleep=self._sleep, report=self._hooks))

    def close(self) -> None:
        """Close the wrapped transport."""
        inner = self._transport
        if isinstance(inner, httpx.BaseTransport):
            inner.close()

    # -- async ------------------------------------------------------------------------------

    def _async_inner(self) -> httpx.AsyncBaseTransport:
        inner = self._transport
        if inner is None:
            with self._lock:
                if self._transport is None:
                    self._transport = httpx.AsyncHTTPTransport()
                inner = self._transport
        if not isinstance(inner, httpx.AsyncBaseTransport):
            raise TypeError("this RetryTransport wraps a sync transport; use it with httpx.Client")
        return inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through the flow (httpx.AsyncClient calls this)."""
        inner = self._async_inner()
        await request.aread()
        buffered = _Buffered()

        async def send(attempt: httpx.Request) -> object:
            try:
                response = await inner.handle_async_request(attempt)
                if response.status_code >= _FINAL_STATUS and not response.is_stream_consumed:
                    raw = b"".join([part async for part in response.aiter_raw()])
                    return buffered.keep(response, raw)
            except httpx.TransportError as error:
                return error
            return response

        flow = self._flow(request, on=await self._flag.ask_async())
        response = await arun(flow, send=send, sleep=self._async_sleep, report=self._hooks)
        return buffered.returned(response)

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        inner = self._transport
        if isinstance(inner, httpx.AsyncBaseTransport):
            await inner.aclose()


__all__ = ["RetryTransport", "request_account"]
