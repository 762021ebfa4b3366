"""RetryTransport (bb_backoff._transport): the clients' retries under a plain httpx client.

Every test runs on a virtual clock and an in-process :class:`httpx.MockTransport`,
through ``httpx.Client`` and ``httpx.AsyncClient`` alike.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import bb_backoff as bb
from bb_backoff._transport import request_account
from bb_backoff.testing import VirtualClock, run_virtual

BASE = "https://api.bitbucket.org/2.0"

Handler = Callable[[httpx.Request], httpx.Response]


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
    options.setdefault("gate", bb.AccountGate(store=bb.MemoryStore(), seed=1))
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


def test_a_final_status_is_returned_at_once(kind: str) -> None:
    clock = VirtualClock()
    handler, seen = answers(httpx.Response(404, json={"type": "error"}))
    assert get(kind, handler, clock).status_code == 404
    assert len(seen) == 1


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
