"""RetryTransport (bb_backoff._transport): the clients' retries under a plain httpx client.

Every test runs on a virtual clock and an in-process :class:`httpx.MockTransport`,
through ``httpx.Client`` and ``httpx.AsyncClient`` alike.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

import httpx
import pytest

import bb_backoff as bb
from bb_backoff._transport import request_account
from bb_backoff.instrumentation import GaveUp, RequestFinished
from bb_backoff.testing import VirtualClock, run_virtual

BASE = "https://api.bitbucket.org/2.0"

Handler = Callable[[httpx.Request], httpx.Response]
AsyncHandler = Callable[[httpx.Request], Coroutine[Any, Any, httpx.Response]]


def answers(*responses: httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    """A handler answering ``responses`` in order, then 200 ``{"ok": true}``; and its requests."""
    queue = list(responses)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if queue:
            item = queue.pop(0)
            if isinstance(item, Exception):
                raise item
            return item
        return httpx.Response(200, json={"ok": True})

    return handler, seen


def get(
    kind: str, handler: Handler, clock: VirtualClock, method: str = "GET", **options: Any
) -> httpx.Response:
    """One request through an httpx client of ``kind`` on a RetryTransport over ``handler``."""
    # The breaker opens only after more errors in a row than one request's five
    # attempts: a run of errors makes the request give up (with the breaker
    # open, it would wait for the account's outage to end).
    options.setdefault("gate", bb.AccountGate(store=bb.MemoryStore(), seed=1, failure_threshold=6))
    transport = bb.RetryTransport(
        httpx.MockTransport(handler),
        clock=clock.monotonic,
        now=clock.time,
        sleep=clock.sleep,
        async_sleep=clock.sleep,
        policy=bb.ExponentialBackoff(seed=1),
        **options,
    )
    if kind == "sync":
        with httpx.Client(transport=transport, base_url=BASE, follow_redirects=True) as client:
            return client.request(method, "/user", content=b"body" if method != "GET" else None)

    async def main() -> httpx.Response:
        async with httpx.AsyncClient(
            transport=transport, base_url=BASE, follow_redirects=True
        ) as client:
            return await client.request(
                method, "/user", content=b"body" if method != "GET" else None
            )

    return run_virtual(main(), clock)


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_a_429_with_retry_after_is_waited_out_exactly(kind: str) -> None:
    clock = VirtualClock()
    handler, seen = answers(httpx.Response(429, headers={"Retry-After": "42"}))
    response = get(kind, handler, clock)
    assert response.json() == {"ok": True}
    assert len(seen) == 2
    assert clock.sleeps == [42.0]


def test_a_5xx_is_retried_with_jittered_backoff_and_the_body_sent_again(kind: str) -> None:
    clock = VirtualClock()
    handler, seen = answers(httpx.Response(503), httpx.Response(502))
    response = get(kind, handler, clock, method="PUT")
    assert response.status_code == 200
    assert [r.content for r in seen] == [b"body"] * 3
    assert len(clock.sleeps) == 2


def test_giving_up_returns_the_last_response_not_a_bitbucket_error(kind: str) -> None:
    """Under an httpx client, callers expect httpx's behaviour: raise_for_status as usual."""
    clock = VirtualClock()
    handler, seen = answers(*[httpx.Response(503, text="down")] * 10)
    response = get(kind, handler, clock)
    assert response.status_code == 503
    assert response.text == "down"
    assert len(seen) == 5  # the policy's five errors in a row
    with pytest.raises(httpx.HTTPStatusError):
        response.raise_for_status()


def test_a_run_of_errors_that_opens_the_breaker_is_waited_out(kind: str) -> None:
    """Five errors in a row open the account's breaker (the default threshold): the
    request whose own attempts they spent waits for the outage to end, probing."""
    clock = VirtualClock()
    handler, seen = answers(*[httpx.Response(503, text="down")] * 10)
    gate = bb.AccountGate(store=bb.MemoryStore(), seed=1)
    response = get(kind, handler, clock, gate=gate)
    assert response.status_code == 200
    assert len(seen) == 11


# Found by an independent probe: with no gate on the way (the flag off, or
# gate=False), the flow ended before its first step and its StopIteration
# escaped: a bare 404 became StopIteration, or a RuntimeError under asyncio.
@pytest.mark.parametrize("options", [{}, {"flag": False}, {"gate": False}])
def test_a_final_status_is_returned_at_once(kind: str, options: dict[str, Any]) -> None:
    clock = VirtualClock()
    handler, seen = answers(httpx.Response(404, json={"type": "error"}))
    assert get(kind, handler, clock, **options).status_code == 404
    assert len(seen) == 1


def test_a_transport_error_no_retry_can_fix_is_httpx_s_own(kind: str) -> None:
    clock = VirtualClock()
    handler, seen = answers(httpx.UnsupportedProtocol("ftp is not http"))
    with pytest.raises(httpx.UnsupportedProtocol):
        get(kind, handler, clock)
    assert len(seen) == 1


def transport_on(
    clock: VirtualClock, handler: Handler | AsyncHandler, **options: Any
) -> bb.RetryTransport:
    """A RetryTransport over ``handler`` on ``clock``, with a gate of its own."""
    options.setdefault("gate", bb.AccountGate(store=bb.MemoryStore(), seed=1))
    return bb.RetryTransport(
        httpx.MockTransport(handler),
        clock=clock.monotonic,
        now=clock.time,
        sleep=clock.sleep,
        async_sleep=clock.sleep,
        **options,
    )


def test_a_request_the_gate_gives_up_on_returns_its_last_response() -> None:
    """The rate-limit budget spent waiting at the gate: the last 429, not a RateLimited."""
    clock = VirtualClock()
    hooks = Recorder()
    transport = transport_on(
        clock,
        lambda _request: httpx.Response(429, text="Rate limit for this resource has been exceeded"),
        policy=bb.ExponentialBackoff(rate_limit_budget=600, seed=2),
        hooks=[hooks],
    )
    with httpx.Client(transport=transport, base_url=BASE) as client:
        response = client.get("/user")
    assert response.status_code == 429
    assert response.text == "Rate limit for this resource has been exceeded"
    assert clock.slept <= 600
    assert [(e.reason, e.outcome) for e in hooks.gave_up] == [("budget", "rate_limited")]


def held_for_two_hours(clock: VirtualClock, **options: Any) -> bb.RetryTransport:
    """A transport whose first answer holds the account longer than ``max_hint`` (then 200s).

    The gate's window is four hours, so that it holds the whole two.
    """
    first = iter([httpx.Response(429, headers={"Retry-After": "7200"})])
    return transport_on(
        clock,
        lambda _request: next(first, httpx.Response(200, json={})),
        policy=bb.ExponentialBackoff(max_hint=3600, seed=2),
        gate=bb.AccountGate(window=4 * 3600.0, store=bb.MemoryStore(), seed=1),
        **options,
    )


def test_a_request_the_gate_gives_up_on_before_its_first_send_raises_httpx_pool_timeout() -> None:
    """Nothing of its own to return: httpx's error for waiting too long for a slot."""
    clock = VirtualClock()
    transport = held_for_two_hours(clock)
    with httpx.Client(transport=transport, base_url=BASE) as client:
        assert client.get("/user").status_code == 429  # the hint is too long: at once
        # The account is held for two hours, longer than max_hint: the next
        # request is refused at the gate before it sends anything.
        with pytest.raises(httpx.PoolTimeout, match="max_hint"):
            client.get("/user")
    assert clock.slept == 0


class Recorder:
    """A hook keeping the give-ups and finished requests it is told of."""

    def __init__(self) -> None:
        self.gave_up: list[GaveUp] = []
        self.finished: list[RequestFinished] = []

    def on_give_up(self, event: GaveUp) -> None:
        self.gave_up.append(event)

    def on_request(self, event: RequestFinished) -> None:
        self.finished.append(event)


def test_a_request_the_gate_gives_up_on_after_a_transport_error_raises_that_error() -> None:
    """It did send: httpx's error of its last attempt, not a PoolTimeout."""
    clock = VirtualClock()
    hooks = Recorder()

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/held"):
            return httpx.Response(429, headers={"Retry-After": "3000"})
        await asyncio.sleep(1.0)  # meanwhile the other request's 429 holds the account
        raise httpx.ReadTimeout("slow", request=request)

    transport = transport_on(
        clock,
        handler,
        policy=bb.ExponentialBackoff(rate_limit_budget=600, seed=1),
        hooks=[hooks],
    )

    async def main() -> tuple[object, object]:
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            return await asyncio.gather(
                client.get("/slow"), client.get("/held"), return_exceptions=True
            )

    slow, held = run_virtual(main(), clock)
    assert isinstance(slow, httpx.ReadTimeout)
    assert isinstance(held, httpx.Response)
    assert held.status_code == 429
    assert sorted((e.outcome, e.attempts) for e in hooks.finished) == [("rate_limited", 1)] * 2


def test_every_request_a_transport_gives_up_on_is_reported_as_finished() -> None:
    """httpx's own error out of the transport: the request still ends in a RequestFinished."""
    clock = VirtualClock()
    hooks = Recorder()
    handler, _ = answers(httpx.UnsupportedProtocol("ftp"))
    transport = transport_on(clock, handler, hooks=[hooks])
    with (
        httpx.Client(transport=transport, base_url=BASE) as client,
        pytest.raises(httpx.UnsupportedProtocol),
    ):
        client.get("/user")
    held = held_for_two_hours(clock, hooks=[hooks])
    with httpx.Client(transport=held, base_url=BASE) as client:
        client.get("/user")
        with pytest.raises(httpx.PoolTimeout):
            client.get("/user")
    assert [(e.outcome, e.status) for e in hooks.finished] == [
        ("retries_exhausted", None),
        ("rate_limited", 429),
        ("rate_limited", None),
    ]
    assert [e.reason for e in hooks.gave_up] == ["not_retryable", "hint_too_long", "hint_too_long"]


def test_a_give_up_with_the_last_response_is_reported_to_hooks(kind: str) -> None:
    clock = VirtualClock()
    hooks = Recorder()
    handler, seen = answers(*[httpx.Response(500)] * 10)
    assert get(kind, handler, clock, gate=False, hooks=[hooks]).status_code == 500
    assert len(seen) == 5
    assert [(e.reason, e.status, e.attempts) for e in hooks.gave_up] == [("attempts", 500, 5)]


def test_an_error_status_with_an_undecodable_body_is_retried_by_its_status(kind: str) -> None:
    clock = VirtualClock()
    garbled = httpx.Response(
        429, headers={"Content-Encoding": "gzip"}, stream=httpx.ByteStream(b"not gzip")
    )
    handler, seen = answers(garbled)
    assert get(kind, handler, clock).json() == {"ok": True}
    assert len(seen) == 2


# Found by an independent probe: the transport read and closed every error
# response, so the httpx client above never saw its stream end and
# ``response.elapsed`` raised.
@pytest.mark.parametrize("status", [404, 503])
def test_an_error_response_comes_back_unread_for_the_client_to_read_decode_and_time(
    kind: str, status: int
) -> None:
    clock = VirtualClock()
    body = gzip.compress(b"Service Unavailable")
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        # Streamed, as a real transport's: nothing read yet.
        return httpx.Response(
            status, headers={"Content-Encoding": "gzip"}, stream=httpx.ByteStream(body)
        )

    response = get(kind, handler, clock, gate=False)
    assert response.status_code == status
    assert response.text == "Service Unavailable"
    assert response.elapsed >= timedelta(0)
    assert len(seen) == (1 if status == 404 else 5)


def test_after_transport_errors_httpx_s_own_error_comes_out(kind: str) -> None:
    clock = VirtualClock()
    handler, seen = answers(*[httpx.ReadTimeout("slow")] * 10)
    with pytest.raises(httpx.ReadTimeout):
        get(kind, handler, clock)
    assert len(seen) == 5


def test_with_the_flag_off_the_legacy_policy_applies(kind: str) -> None:
    clock = VirtualClock()
    handler, seen = answers(*[httpx.Response(429)] * 5)
    response = get(kind, handler, clock, flag=False)
    assert response.status_code == 429
    assert len(seen) == 3
    assert clock.sleeps == [1.0, 1.0]


def test_redirects_come_back_through_the_transport_and_each_hop_is_retried(kind: str) -> None:
    clock = VirtualClock()
    handler, seen = answers(
        httpx.Response(302, headers={"Location": f"{BASE}/elsewhere"}),
        httpx.Response(503),
    )
    response = get(kind, handler, clock)
    assert response.json() == {"ok": True}
    assert [str(r.url) for r in seen] == [f"{BASE}/user", f"{BASE}/elsewhere", f"{BASE}/elsewhere"]


def test_retry_events_reach_on_retry(kind: str) -> None:
    clock = VirtualClock()
    events: list[bb.RetryEvent] = []
    handler, _ = answers(httpx.Response(500))
    get(kind, handler, clock, on_retry=events.append)
    assert [(e.status, e.flag_variant, e.method) for e in events] == [(500, "on", "GET")]


def test_a_sync_transport_refuses_async_use_and_the_other_way_round() -> None:
    sync_only = bb.RetryTransport(httpx.HTTPTransport())

    async def main() -> None:
        async with httpx.AsyncClient(transport=sync_only) as client:
            await client.get(f"{BASE}/user")

    with pytest.raises(TypeError, match=r"httpx\.Client"):
        run_virtual(main())
    async_only = bb.RetryTransport(httpx.AsyncHTTPTransport())
    with (
        httpx.Client(transport=async_only) as client,
        pytest.raises(TypeError, match="AsyncClient"),
    ):
        client.get(f"{BASE}/user")


class _AsyncCallable:
    """An object whose ``__call__`` is async: as async as an ``async def``."""

    async def __call__(self, _value: object) -> None: ...


async def _async_sleep(_seconds: float) -> None: ...


@pytest.mark.parametrize("sleep", [_async_sleep, _AsyncCallable()], ids=["function", "object"])
def test_an_async_sleep_is_refused_at_construction_naming_it(sleep: Any) -> None:
    """``httpx.Client`` called it without awaiting: 582 429s were retried in 0.02 s.

    As ``BitbucketClient`` refuses it; ``async_sleep`` is the one for ``httpx.AsyncClient``.
    """
    with pytest.raises(TypeError, match=r"^sleep must be a \(non-async\) callable"):
        bb.RetryTransport(httpx.MockTransport(answers()[0]), sleep=sleep)


def test_an_async_on_retry_over_a_sync_only_transport_is_refused_at_construction() -> None:
    async def notify(_event: bb.RetryEvent) -> None: ...

    with pytest.raises(TypeError, match=r"^on_retry must not be async"):
        bb.RetryTransport(httpx.HTTPTransport(), on_retry=notify)


def test_an_async_on_retry_is_refused_under_httpx_client_and_awaited_under_async_client() -> None:
    """One transport serves both clients; only the async one can await ``on_retry``.

    Under ``httpx.Client`` its coroutine was dropped unawaited: every event lost.
    """
    clock = VirtualClock()
    events: list[bb.RetryEvent] = []

    async def notify(event: bb.RetryEvent) -> None:
        events.append(event)

    handler, seen = answers(httpx.Response(500))
    with pytest.raises(TypeError, match=r"^on_retry must not be async under httpx\.Client"):
        get("sync", handler, clock, on_retry=notify)
    assert seen == []  # refused before anything was sent
    assert get("async", handler, clock, on_retry=notify).json() == {"ok": True}
    assert [event.status for event in events] == [500]


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"transport": "http"}, "transport"),
        ({"policy": object()}, "policy"),
        ({"flag": "yes"}, "flag"),
        ({"actor": ""}, "actor"),
        ({"gate": 3}, "gate"),
        ({"sleep": 5}, "sleep"),
    ],
)
def test_an_invalid_argument_is_refused_naming_it(arguments: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        bb.RetryTransport(**arguments)


def test_requests_on_one_credential_share_an_account_and_never_show_it() -> None:
    def request(authorization: str, url: str = f"{BASE}/user") -> httpx.Request:
        return httpx.Request("GET", url, headers={"Authorization": authorization})

    basic_one = "Basic " + base64.b64encode(b"Ada@example.com:token-one").decode()
    basic_two = "Basic " + base64.b64encode(b"ada@example.com:token-two").decode()
    assert request_account(request(basic_one)) == request_account(request(basic_two))
    assert request_account(request("Bearer a")) != request_account(request("Bearer b"))
    assert request_account(request("Bearer a")) != request_account(
        request("Bearer a", "https://other.example/2.0/user")
    )
    assert "token-one" not in request_account(request(basic_one))


def test_two_httpx_clients_with_one_token_share_the_gate() -> None:
    clock = VirtualClock()
    calls: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(clock.monotonic())
        if len(calls) == 3:
            return httpx.Response(429)
        return httpx.Response(200, json={})

    gate = bb.AccountGate(store=bb.MemoryStore(), window=100.0, seed=1)
    transports = [
        bb.RetryTransport(
            httpx.MockTransport(handler),
            gate=gate,
            clock=clock.monotonic,
            now=clock.time,
            sleep=clock.sleep,
        )
        for _ in range(2)
    ]
    headers = {"Authorization": "Bearer shared"}
    with (
        httpx.Client(transport=transports[0], headers=headers) as one,
        httpx.Client(transport=transports[1], headers=headers) as two,
    ):
        one.get(f"{BASE}/user")
        one.get(f"{BASE}/user")
        two.get(f"{BASE}/user")  # the 429: the limit is 2
        one.get(f"{BASE}/user")
        two.get(f"{BASE}/user")
    # After the 429 taught a limit of two, each send waited for a slot: no more 429s.
    assert len(calls) == 6
    assert calls[3] >= 100.0


def test_the_flag_variant_rides_on_every_response(kind: str) -> None:
    clock = VirtualClock()
    handler, _ = answers(*[httpx.Response(503)] * 5)
    given_up = get(kind, handler, clock, flag=False)
    assert (given_up.status_code, bb.flag_variant_of(given_up)) == (503, "off")
    handler, _ = answers()
    assert bb.flag_variant_of(get(kind, handler, clock)) == "on"
    assert bb.flag_variant_of(httpx.Response(200)) is None
