"""The clients, sync and async, through one test body each.

Every test runs twice, once per client (the ``api`` fixture), on an
in-process :class:`httpx.MockTransport` and a :class:`VirtualClock`: nothing
sleeps for real.
"""

from __future__ import annotations

import asyncio
import gzip
import inspect
import itertools
import logging
import math
import random
import re
import socket
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from email.utils import formatdate
from pathlib import Path
from typing import Any

import attrs
import certifi
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

import bb_backoff as bb
from bb_backoff import _flow
from bb_backoff._auth import TOKEN_REFRESH_EXTENSION
from bb_backoff._client import MAX_TIMEOUT
from bb_backoff._gate import account_key
from bb_backoff._origin import OriginGuard
from bb_backoff._outcomes import error_envelope as _error_envelope
from bb_backoff.instrumentation import RequestFinished
from bb_backoff.testing import VirtualClock, run_virtual

BASE = "https://api.bitbucket.org/2.0"
TOKEN = "s3cr3t-t0ken-value"
RATE_LIMIT_TEXT = "Rate limit for this resource has been exceeded"

Handler = Callable[[httpx.Request], httpx.Response]


def rate_limited(headers: dict[str, str] | None = None) -> httpx.Response:
    """Bitbucket's usual 429: plain text, odd reason phrase, often no hint."""
    return httpx.Response(
        429,
        text=RATE_LIMIT_TEXT,
        headers=headers or {},
        extensions={"reason_phrase": b"Unknown Status Code"},
    )


def error(status: int, message: str = "boom", detail: str | None = None) -> httpx.Response:
    """Bitbucket's JSON error envelope."""
    body: dict[str, Any] = {"type": "error", "error": {"message": message}}
    if detail is not None:
        body["error"]["detail"] = detail
    return httpx.Response(status, json=body)


def scripted(*responses: httpx.Response | Exception, then: Any = None) -> Handler:
    """Answer with ``responses`` in order, then with 200 and ``then`` as JSON forever."""
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        if queue:
            item = queue.pop(0)
            if isinstance(item, Exception):
                raise item
            return item
        return httpx.Response(200, json={"ok": True} if then is None else then)

    return handler


class Api:
    """Drives a sync or an async client with the same awaitable calls."""

    def __init__(self, kind: str, handler: Handler, clock: VirtualClock, **options: Any) -> None:
        self.kind = kind
        self.clock = clock
        self.events: list[bb.RetryEvent] = []
        self.requests: list[httpx.Request] = []

        def recording(request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            return handler(request)

        options.setdefault("auth", bb.BearerToken(TOKEN))
        options.setdefault("on_retry", self.events.append)
        common = {
            "transport": httpx.MockTransport(recording),
            "clock": clock.monotonic,
            "now": clock.time,
            "sleep": clock.sleep,
            **options,
        }
        self.client: bb.BitbucketClient | bb.AsyncBitbucketClient = (
            bb.BitbucketClient(**common) if kind == "sync" else bb.AsyncBitbucketClient(**common)
        )

    async def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call a client method; iterators are collected into a list."""
        result = getattr(self.client, name)(*args, **kwargs)
        if inspect.isawaitable(result):
            return await result
        if isinstance(result, AsyncIterator):
            return [item async for item in result]
        if isinstance(result, Iterator):
            return list(result)
        return result

    async def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return await self.call("get", path, params)

    async def close(self) -> None:
        if isinstance(self.client, bb.AsyncBitbucketClient):
            await self.client.aclose()
        else:
            self.client.close()


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def make_api(kind: str, clock: VirtualClock) -> Iterator[Callable[..., Api]]:
    made: list[Api] = []

    def make(handler: Handler, **options: Any) -> Api:
        api = Api(kind, handler, clock, **options)
        made.append(api)
        return api

    yield make
    for api in made:
        if isinstance(api.client, bb.BitbucketClient):
            api.client.close()


pytestmark = pytest.mark.anyio


# -- the success path ---------------------------------------------------------------


async def test_get_returns_parsed_json_from_a_path_relative_to_the_base(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(scripted(then={"username": "ada"}))
    assert await api.get("/user") == {"username": "ada"}
    assert await api.get("user") == {"username": "ada"}
    assert [str(r.url) for r in api.requests] == [f"{BASE}/user", f"{BASE}/user"]


async def test_success_sends_credentials_and_identifies_the_library(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(scripted())
    await api.get("/user")
    headers = api.requests[0].headers
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["User-Agent"] == f"bb-backoff/{bb.__version__}"


async def test_the_first_attempt_builds_no_retry_state(
    make_api: Callable[..., Api], monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(*_args: object) -> None:
        raise AssertionError("retry state built on the success path")

    monkeypatch.setattr(_flow, "_Attempts", forbidden)
    api = make_api(scripted(then={"values": [1], "size": 1}))
    assert await api.get("/user") == {"values": [1], "size": 1}
    assert await api.call("paginate", "/things") == [1]


async def test_get_accepts_an_absolute_url_on_the_api_origin(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(scripted())
    await api.get(f"{BASE}/user?fields=username")
    assert str(api.requests[0].url) == f"{BASE}/user?fields=username"


async def test_a_first_answer_s_x_ratelimit_limit_reaches_the_gate_without_another_send(
    make_api: Callable[..., Api],
) -> None:
    store = bb.MemoryStore()
    api = make_api(
        lambda _r: httpx.Response(200, json={}, headers={"X-RateLimit-Limit": "1000"}),
        gate=bb.AccountGate(store=store),
    )
    assert await api.get("/user") == {}
    model = store.model(account_key(bb.BearerToken(TOKEN), BASE))
    assert model is not None
    assert model.ceiling == 1000
    assert len(api.requests) == 1


@pytest.mark.parametrize("options", [{"gate": False}, {"flag": False}], ids=["no-gate", "flag-off"])
async def test_a_first_answer_that_redirects_is_followed_without_a_gate_too(
    make_api: Callable[..., Api], options: dict[str, Any]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/2.0/user":
            return httpx.Response(302, headers={"Location": f"{BASE}/users/ada"})
        return httpx.Response(200, json={"username": "ada"})

    api = make_api(handler, **options)
    assert await api.get("/user") == {"username": "ada"}
    assert [r.url.path for r in api.requests] == ["/2.0/user", "/2.0/users/ada"]


async def test_a_request_answered_at_once_is_reported_to_a_hook_as_one_attempt(
    make_api: Callable[..., Api],
) -> None:
    class Finished:
        def __init__(self) -> None:
            self.heard: list[RequestFinished] = []

        def on_request(self, event: RequestFinished) -> None:
            self.heard.append(event)

    hook = Finished()
    api = make_api(scripted(), hooks=[hook], gate=bb.AccountGate(store=bb.MemoryStore()))
    assert await api.get("/user") == {"ok": True}
    assert [(e.outcome, e.status, e.attempts) for e in hook.heard] == [("ok", 200, 1)]


# -- rate limits ---------------------------------------------------------------------


async def test_a_bare_plain_text_429_is_retried_with_jittered_backoff(
    make_api: Callable[..., Api], clock: VirtualClock
) -> None:
    api = make_api(scripted(rate_limited(), rate_limited(), then={"id": 1}))
    assert await api.get("/user") == {"id": 1}
    assert len(api.requests) == 3
    assert 0 <= clock.sleeps[0] < 1.0
    assert 0 <= clock.sleeps[1] < 2.0
    assert [e.reason for e in api.events] == [bb.Reason.RATE_LIMIT] * 2
    assert [e.status for e in api.events] == [429, 429]
    assert [e.attempt for e in api.events] == [1, 2]
    assert [e.flag_variant for e in api.events] == ["on", "on"]


async def test_a_json_429_envelope_is_handled_like_the_plain_text_one(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(scripted(error(429, "Rate limit exceeded"), then={"id": 1}))
    assert await api.get("/user") == {"id": 1}
    assert api.events[0].reason is bb.Reason.RATE_LIMIT


async def test_retry_after_seconds_is_waited_exactly_when_above_the_cap(
    make_api: Callable[..., Api], clock: VirtualClock
) -> None:
    api = make_api(
        scripted(rate_limited({"Retry-After": "120"})),
        policy=bb.ExponentialBackoff(max_delay=10),
    )
    await api.get("/user")
    assert clock.sleeps == [120.0]
    assert api.events[0].retry_after == 120.0
    assert api.events[0].hint_source == "Retry-After"


async def test_retry_after_as_an_http_date_is_read_against_the_injected_now(
    make_api: Callable[..., Api], clock: VirtualClock
) -> None:
    date = formatdate(clock.time() + 90, usegmt=True)
    api = make_api(
        scripted(rate_limited({"Retry-After": date})), policy=bb.ExponentialBackoff(max_delay=5)
    )
    await api.get("/user")
    assert clock.sleeps == [90.0]


async def test_a_503_whose_retry_after_outlasts_the_error_budget_is_waited_not_given_up(
    make_api: Callable[..., Api], clock: VirtualClock
) -> None:
    """A maintenance 503 asks for two minutes: the default client waits them.

    The hint is the server's schedule (charged to the rate-limit budget), so
    the one-minute error budget does not end the request before it starts.
    """
    maintenance = error(503, "Down for maintenance")
    maintenance.headers["Retry-After"] = "120"
    api = make_api(scripted(maintenance, then={"id": 1}))
    assert await api.get("/user") == {"id": 1}
    assert clock.sleeps == [120.0]
    assert api.events[0].retry_after == 120.0


async def test_a_hint_beyond_what_is_left_of_the_budget_gives_up_saying_which_wait_spent_it(
    make_api: Callable[..., Api], clock: VirtualClock
) -> None:
    maintenance = error(503, "Down for maintenance")
    maintenance.headers["Retry-After"] = "120"
    api = make_api(
        scripted(maintenance), policy=bb.ExponentialBackoff(rate_limit_budget=100, seed=1)
    )
    with pytest.raises(bb.RetriesExhausted) as caught:
        await api.get("/user")
    assert clock.sleeps == []
    assert caught.value.stop_reason == "budget"
    message = str(caught.value)
    assert "0.0 s waited for rate limits and server hints, 0.0 s for errors" in message
    assert "the server asked for 120 s more (Retry-After)" in message


async def test_x_ratelimit_reset_seconds_remaining_is_honoured(
    make_api: Callable[..., Api], clock: VirtualClock
) -> None:
    api = make_api(
        scripted(rate_limited({"X-RateLimit-Reset": "300"})),
        policy=bb.ExponentialBackoff(max_delay=5),
    )
    await api.get("/user")
    assert clock.sleeps == [300.0]
    assert api.events[0].hint_source == "X-RateLimit-Reset"


@pytest.mark.parametrize(
    "garbage", ["soon", "-5", "NaN", "1e9999", "Thu, 01 Jan 1970 00:00:00 GMT"]
)
async def test_a_garbage_or_past_retry_after_falls_back_to_the_backoff(
    make_api: Callable[..., Api], clock: VirtualClock, garbage: str
) -> None:
    api = make_api(scripted(rate_limited({"Retry-After": garbage})))
    await api.get("/user")
    assert len(clock.sleeps) == 1
    assert 0 <= clock.sleeps[0] < 1.0
    assert api.events[0].retry_after is None


async def test_a_hint_just_over_a_window_is_waited_by_default(
    make_api: Callable[..., Api], clock: VirtualClock
) -> None:
    """A window's worth of wait, rounded up or with a margin, is a hint, not an absurdity."""
    api = make_api(scripted(rate_limited({"Retry-After": "3601"}), then={"id": 1}))
    assert await api.get("/user") == {"id": 1}
    assert clock.slept == pytest.approx(3601.0)


async def test_an_absurd_retry_after_gives_up_at_once_with_a_clear_error(
    make_api: Callable[..., Api], clock: VirtualClock
) -> None:
    api = make_api(scripted(rate_limited({"Retry-After": "172800"})))
    with pytest.raises(bb.RateLimited) as caught:
        await api.get("/user")
    assert clock.sleeps == []
    assert caught.value.last_hint == 172800.0
    assert caught.value.stop_reason == "hint_too_long"
    assert "172800 s (Retry-After)" in str(caught.value)
    assert "max_hint" in str(caught.value)


async def test_a_hint_past_a_day_gives_up_at_once_even_with_no_limit_on_hints(
    make_api: Callable[..., Api], clock: VirtualClock
) -> None:
    """``max_hint=inf`` with an infinite budget slept 1e20 s: ``time.sleep`` overflowed.

    The ``OverflowError`` escaped ``client.get`` (not a library error), and
    the async client slept for centuries.  No single wait is longer than a
    day, and a hint is never cut short: a longer one gives up.
    """
    policy = bb.ExponentialBackoff(max_hint=math.inf, rate_limit_budget=math.inf)
    api = make_api(scripted(rate_limited({"Retry-After": "1" + "0" * 20})), policy=policy)
    with pytest.raises(bb.RateLimited) as caught:
        await api.get("/user")
    assert clock.sleeps == []
    assert caught.value.stop_reason == "hint_too_long"
    assert "a day at most" in str(caught.value)


class _Glacial:
    """A policy of the caller's own: one retry, after 1e10 s."""

    def decide(self, history: bb.RetryHistory, outcome: bb.Outcome) -> bb.Decision:
        if history.attempts:
            return bb.Decision(None, None, bb.StopReason.ATTEMPTS, None, history)
        return bb.Decision(bb.Reason.SERVER_ERROR, 1e10, None, None, bb.RetryHistory(attempts=1))


async def test_a_custom_policys_wait_past_a_day_is_slept_as_a_day(
    make_api: Callable[..., Api], clock: VirtualClock
) -> None:
    """No sleep of a request is longer than a day (``time.sleep`` overflows past 2.9e9 s)."""
    api = make_api(scripted(error(503)), policy=_Glacial(), gate=False)
    assert await api.get("/user") == {"ok": True}
    assert clock.sleeps == [86_400.0]


async def test_a_rate_limit_that_never_ends_gives_up_within_the_budget(
    make_api: Callable[..., Api], clock: VirtualClock
) -> None:
    api = make_api(
        lambda _request: rate_limited(),
        policy=bb.ExponentialBackoff(rate_limit_budget=timedelta(minutes=30), seed=1),
    )
    with pytest.raises(bb.RateLimited) as caught:
        await api.get("/user")
    error = caught.value
    assert clock.slept <= 1800 * (1 + 1e-9)
    assert error.waited == pytest.approx(clock.slept)
    assert error.attempts == len(api.requests)
    assert error.status == 429
    assert error.error_message == RATE_LIMIT_TEXT
    assert error.flag_variant == "on"
    assert error.last_hint is None


async def test_the_default_policy_waits_at_least_an_hour_for_a_rate_limit(
    make_api: Callable[..., Api], clock: VirtualClock
) -> None:
    """A rate limit is a reason to wait: the default budget outlasts Bitbucket's rolling hour."""
    calls = 0

    def handler(_request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return rate_limited() if clock.monotonic() < 3700 else httpx.Response(200, json={})

    api = make_api(handler)
    assert await api.get("/user") == {}
    assert clock.monotonic() >= 3700


# -- errors --------------------------------------------------------------------------


async def test_server_errors_are_retried_then_give_up_with_the_envelope(
    make_api: Callable[..., Api], clock: VirtualClock
) -> None:
    api = make_api(
        lambda _request: error(503, "Service unavailable", "try later"),
        policy=bb.ExponentialBackoff(error_attempts=4, seed=3),
    )
    with pytest.raises(bb.RetriesExhausted) as caught:
        await api.get("/user")
    exhausted = caught.value
    assert type(exhausted) is bb.RetriesExhausted
    assert len(api.requests) == 4
    assert exhausted.attempts == 4
    assert exhausted.status == 503
    assert exhausted.error_message == "Service unavailable"
    assert exhausted.detail == "try later"
    assert exhausted.stop_reason == "attempts"
    assert len(clock.sleeps) == 3


@pytest.mark.parametrize("status", [408, 500, 502, 503, 504])
async def test_408_and_5xx_are_retried(make_api: Callable[..., Api], status: int) -> None:
    api = make_api(scripted(error(status), then={"id": 1}))
    assert await api.get("/user") == {"id": 1}
    assert api.events[0].reason is bb.Reason.SERVER_ERROR


@pytest.mark.parametrize(
    ("status", "exception"),
    [
        (400, bb.HTTPStatusError),
        (401, bb.Unauthorized),
        (403, bb.HTTPStatusError),
        (404, bb.NotFound),
        (410, bb.HTTPStatusError),
        (422, bb.HTTPStatusError),
    ],
)
async def test_final_statuses_raise_at_once_with_message_and_detail(
    make_api: Callable[..., Api], status: int, exception: type[bb.HTTPStatusError]
) -> None:
    api = make_api(scripted(error(status, "Nope", "because")))
    with pytest.raises(exception) as caught:
        await api.get("/repositories/w/r")
    assert type(caught.value) is exception
    assert len(api.requests) == 1
    assert caught.value.status == status
    assert caught.value.error_message == "Nope"
    assert caught.value.detail == "because"
    assert caught.value.attempts == 1
    assert caught.value.flag_variant == "on"
    assert str(caught.value).startswith(f"HTTP {status}: Nope (GET {BASE}/repositories/w/r)")


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError("refused"),
        httpx.ConnectTimeout("slow"),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("reset"),
        httpx.ReadError("reset"),
    ],
)
async def test_transport_errors_are_retried(
    make_api: Callable[..., Api], failure: Exception
) -> None:
    api = make_api(scripted(failure, then={"id": 1}))
    assert await api.get("/user") == {"id": 1}
    assert api.events[0].reason is bb.Reason.TRANSPORT_ERROR
    assert api.events[0].error == type(failure).__name__
    assert api.events[0].status is None


async def test_transport_errors_that_persist_give_up_with_the_cause_attached(
    make_api: Callable[..., Api],
) -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    api = make_api(handler, policy=bb.ExponentialBackoff(error_attempts=2))
    with pytest.raises(bb.RetriesExhausted) as caught:
        await api.get("/user")
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert caught.value.status is None
    assert caught.value.attempts == 2


async def test_a_non_transient_transport_error_is_not_retried(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(scripted(httpx.UnsupportedProtocol("gopher")))
    with pytest.raises(bb.RetriesExhausted) as caught:
        await api.get("/user")
    assert caught.value.stop_reason == "not_retryable"
    assert len(api.requests) == 1


# -- the flag and the legacy policy --------------------------------------------------


async def test_with_the_flag_off_the_legacy_policy_retries_three_times_one_second_apart(
    make_api: Callable[..., Api], clock: VirtualClock
) -> None:
    api = make_api(lambda _request: rate_limited({"Retry-After": "30"}), flag=False)
    with pytest.raises(bb.RateLimited) as caught:
        await api.get("/user")
    assert clock.sleeps == [1.0, 1.0]
    assert len(api.requests) == 3
    assert caught.value.flag_variant == "off"
    assert [e.flag_variant for e in api.events] == ["off", "off"]


async def test_gitlab_flag_off_behaviour_never_retries(make_api: Callable[..., Api]) -> None:
    api = make_api(
        scripted(rate_limited()), flag=False, legacy_policy=bb.FixedRetry(max_attempts=1)
    )
    with pytest.raises(bb.RateLimited) as caught:
        await api.get("/user")
    assert len(api.requests) == 1
    assert caught.value.attempts == 1


class CountingFlag:
    def __init__(self, on: bool) -> None:
        self.on = on
        self.checks: list[tuple[str, str | None]] = []

    def enabled(self, name: str, actor: str | None) -> bool:
        self.checks.append((name, actor))
        return self.on


async def test_the_flag_is_checked_once_per_logical_request_for_the_actor(
    make_api: Callable[..., Api],
) -> None:
    flag = CountingFlag(on=True)
    api = make_api(
        scripted(rate_limited(), error(503), then={"id": 1}), flag=flag, actor="Project:7"
    )
    await api.get("/user")
    assert len(api.requests) == 3
    assert flag.checks == [(bb.FLAG_NAME, "Project:7")]


async def test_every_page_is_its_own_logical_request(make_api: Callable[..., Api]) -> None:
    flag = CountingFlag(on=True)
    pages = {
        "1": {"values": [1, 2], "next": f"{BASE}/things?page=2"},
        "2": {"values": [3], "next": f"{BASE}/things?page=3"},
        "3": {"values": [4]},
    }
    api = make_api(
        lambda request: httpx.Response(200, json=pages[request.url.params.get("page", "1")]),
        flag=flag,
    )
    assert await api.call("paginate", "/things") == [1, 2, 3, 4]
    assert len(flag.checks) == 3


async def test_a_flag_flip_mid_listing_changes_the_policy_from_the_next_page(
    make_api: Callable[..., Api],
) -> None:
    flag = bb.FlipperFlag(boolean=True)
    served: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        page = request.url.params.get("page", "1")
        served.append(page)
        if served.count(page) == 1:
            return rate_limited()
        if page == "1":
            flag.disable()
            return httpx.Response(200, json={"values": [1], "next": f"{BASE}/things?page=2"})
        return httpx.Response(200, json={"values": [2]})

    api = make_api(handler, flag=flag)
    assert await api.call("paginate", "/things") == [1, 2]
    assert [e.flag_variant for e in api.events] == ["on", "off"]


async def test_a_raising_flag_source_falls_back_to_legacy_and_warns(
    make_api: Callable[..., Api], caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        def enabled(self, name: str, actor: str | None) -> bool:
            raise RuntimeError("flag service down")

    api = make_api(scripted(error(503), then={"id": 1}), flag=Broken())
    with caplog.at_level(logging.WARNING, logger="bb_backoff"):
        assert await api.get("/user") == {"id": 1}
    assert api.client.flag_errors == 1
    assert api.events[0].flag_variant == "off"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "using the legacy policy" in warnings[0].getMessage()


# -- pagination ----------------------------------------------------------------------


def listing(pages: int, per_page: int = 2, base: str = BASE) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        number = int(request.url.params.get("page", "1"))
        start = (number - 1) * per_page
        body: dict[str, Any] = {
            "values": list(range(start, start + per_page)),
            "page": number,
            "pagelen": per_page,
            "size": pages * per_page,
        }
        if number < pages:
            body["next"] = f"{base}/things?page={number + 1}&pagelen={per_page}"
        return httpx.Response(200, json=body)

    return handler


async def test_paginate_follows_next_links_to_the_end(make_api: Callable[..., Api]) -> None:
    api = make_api(listing(pages=4))
    assert await api.call("paginate", "/things", {"pagelen": 2}) == list(range(8))
    assert [r.url.params.get("page") for r in api.requests] == [None, "2", "3", "4"]


async def test_pages_expose_next_so_an_import_can_resume_from_it(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(listing(pages=3))
    pages = await api.call("pages", "/things")
    assert [p.page for p in pages] == [1, 2, 3]
    assert pages[-1].next is None
    resumed = await api.call("paginate", pages[0].next)
    assert resumed == [2, 3, 4, 5]


async def test_every_page_goes_through_the_retry_layer(make_api: Callable[..., Api]) -> None:
    inner = listing(pages=2)
    failed: set[str] = set()

    def handler(request: httpx.Request) -> httpx.Response:
        page = request.url.params.get("page", "1")
        if page not in failed:
            failed.add(page)
            return rate_limited() if page == "1" else error(502)
        return inner(request)

    api = make_api(handler)
    assert await api.call("paginate", "/things") == [0, 1, 2, 3]
    assert [e.reason for e in api.events] == [bb.Reason.RATE_LIMIT, bb.Reason.SERVER_ERROR]


async def test_a_next_link_to_another_host_raises_and_sends_nothing_there(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(listing(pages=2, base="https://evil.example/2.0"))
    with pytest.raises(bb.UnsafeURL) as caught:
        await api.call("paginate", "/things")
    assert [r.url.host for r in api.requests] == ["api.bitbucket.org"]
    assert "evil.example" in str(caught.value)


@pytest.mark.parametrize(
    "foreign",
    [
        "http://api.bitbucket.org/2.0/things?page=2",
        "https://api.bitbucket.org:8443/2.0/things?page=2",
        "https://api.bitbucket.org.evil.example/2.0/things?page=2",
        "//evil.example/2.0/things?page=2",
    ],
)
async def test_a_next_link_off_scheme_host_or_port_is_refused(
    make_api: Callable[..., Api], foreign: str
) -> None:
    api = make_api(scripted(then={"values": [1], "next": foreign}))
    with pytest.raises(bb.UnsafeURL):
        await api.call("paginate", "/things")
    assert len(api.requests) == 1


async def test_an_absolute_url_off_the_origin_is_refused_before_sending(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(scripted())
    with pytest.raises(bb.UnsafeURL):
        await api.get("https://evil.example/steal")
    assert api.requests == []


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/repositories/a\x00b", "non-printable ASCII character"),
        ("/repositories/" + "a" * 70_000, "too long"),
    ],
)
@pytest.mark.parametrize("method", ["get", "paginate"])
async def test_a_path_httpx_cannot_send_is_an_unsafe_url_naming_why_and_nothing_is_sent(
    make_api: Callable[..., Api], method: str, path: str, why: str
) -> None:
    api = make_api(scripted(then={"values": []}))
    with pytest.raises(bb.UnsafeURL, match=f"it is not a valid URL \\(.*{why}") as caught:
        await api.call(method, path)
    assert str(caught.value).startswith(f"refusing to send a request to {BASE}/repositories/a")
    assert api.requests == []


async def test_a_redirect_off_the_origin_is_refused_and_never_followed(
    make_api: Callable[..., Api],
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "evil.example":
            raise AssertionError("the foreign host was contacted")
        return httpx.Response(302, headers={"Location": "https://evil.example/diff"})

    api = make_api(handler)
    with pytest.raises(bb.UnsafeURL):
        await api.call("pull_request_diff", "w", "r", 1)
    assert [r.url.host for r in api.requests] == ["api.bitbucket.org"]


async def test_a_repeating_next_link_raises_instead_of_looping(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(scripted(then={"values": [1], "next": f"{BASE}/things?page=2"}))
    with pytest.raises(bb.PaginationError, match="repeats an earlier page"):
        await api.call("paginate", "/things")
    assert len(api.requests) == 2


async def items_then_error(
    api: Api, method: str, path: str
) -> tuple[list[Any], bb.BitbucketError | None]:
    """The items a listing hands over (through ``pages`` or ``paginate``), then its error."""
    items: list[Any] = []

    def take(received: Any) -> None:
        items.extend(received.values if method == "pages" else [received])

    listing = getattr(api.client, method)(path)
    try:
        if isinstance(listing, AsyncIterator):
            async for received in listing:
                take(received)
        else:
            for received in listing:
                take(received)
    except bb.BitbucketError as error:
        return items, error
    return items, None


def pages_by_number(*bodies: dict[str, Any]) -> Handler:
    """Answer ``?page=N`` (no ``page``: 1) with the N-th body."""
    return lambda request: httpx.Response(
        200, json=bodies[int(request.url.params.get("page", "1")) - 1]
    )


@pytest.mark.parametrize("method", ["pages", "paginate"])
async def test_the_page_whose_next_link_loops_back_is_handed_over_before_the_error(
    make_api: Callable[..., Api], method: str
) -> None:
    api = make_api(
        pages_by_number(
            {"values": [1], "next": f"{BASE}/things?page=2"},
            {"values": [2], "next": f"{BASE}/things?page=3"},
            {"values": [3], "next": f"{BASE}/things?page=2"},
        )
    )
    items, error = await items_then_error(api, method, "/things")
    assert items == [1, 2, 3]
    assert isinstance(error, bb.PaginationError)
    assert "repeats an earlier page" in str(error)
    assert len(api.requests) == 3


@pytest.mark.parametrize("method", ["pages", "paginate"])
async def test_the_page_whose_next_link_leaves_the_origin_is_handed_over_and_nothing_follows(
    make_api: Callable[..., Api], method: str
) -> None:
    api = make_api(
        pages_by_number(
            {"values": [1], "next": f"{BASE}/things?page=2"},
            {"values": [2], "next": "https://evil.example/2.0/things?page=3"},
        )
    )
    items, error = await items_then_error(api, method, "/things")
    assert items == [1, 2]
    assert isinstance(error, bb.UnsafeURL)
    assert str(error).startswith(
        "the next link https://evil.example/2.0/things?page=3 leaves the origin of "
        f"{BASE}; nothing was sent to it"
    )
    assert [r.url.host for r in api.requests] == ["api.bitbucket.org"] * 2


# Punycode that is not valid IDNA: httpx parses it, and idna's UnicodeError
# comes only when the host is read.
INVALID_IDNA = "https://xn--pi-7ld.bitbucket.org/2.0/things?page=2"


@pytest.mark.parametrize("method", ["pages", "paginate"])
async def test_the_page_whose_next_link_has_an_invalid_idna_host_is_handed_over_before_the_error(
    make_api: Callable[..., Api], method: str
) -> None:
    api = make_api(pages_by_number({"values": [1], "next": INVALID_IDNA}))
    items, error = await items_then_error(api, method, "/things")
    assert items == [1]
    assert isinstance(error, bb.UnsafeURL)
    assert str(error).startswith(
        f"the next link {INVALID_IDNA} is not a valid URL; nothing was sent to it"
    )
    assert len(api.requests) == 1


@pytest.mark.parametrize("method", ["pages", "paginate"])
async def test_the_page_whose_next_link_holds_a_lone_surrogate_is_handed_over_before_the_error(
    make_api: Callable[..., Api], method: str
) -> None:
    # "\ud800" is valid JSON and no URL: httpx fails on it with a
    # UnicodeEncodeError, which escaped, and the page's items were lost
    # (found by a review).
    body = b'{"values": [1, 2], "next": "https://api.bitbucket.org/2.0/things?page=\\ud800"}'
    api = make_api(lambda _: httpx.Response(200, content=body))
    items, error = await items_then_error(api, method, "/things")
    assert items == [1, 2]
    assert isinstance(error, bb.UnsafeURL)
    assert "is not a valid URL; nothing was sent to it" in str(error)
    assert len(api.requests) == 1


async def test_get_of_a_url_with_an_invalid_idna_host_is_refused_before_sending(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(scripted())
    with pytest.raises(bb.UnsafeURL, match="it is not a valid URL"):
        await api.get(INVALID_IDNA)
    assert api.requests == []


async def test_a_redirect_to_an_invalid_idna_host_is_an_invalid_response_and_never_followed(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(lambda _r: httpx.Response(302, headers={"Location": INVALID_IDNA}))
    with pytest.raises(bb.InvalidResponse, match="could not be read: IDNABidiError") as caught:
        await api.get("/user")
    assert (caught.value.method, caught.value.attempts) == ("GET", 1)
    assert isinstance(caught.value.__cause__, UnicodeError)
    assert len(api.requests) == 1


async def test_the_page_whose_next_link_is_not_a_url_is_handed_over_before_the_error(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(scripted(then={"values": [1, 2], "next": 7}))
    items, error = await items_then_error(api, "paginate", "/things")
    assert items == [1, 2]
    assert isinstance(error, bb.PaginationError)
    assert "'next' is not a URL" in str(error)


async def test_the_last_page_a_listing_may_have_is_handed_over_before_the_error(
    make_api: Callable[..., Api], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bb_backoff._pagination.MAX_PAGES", 3)
    api = make_api(listing(pages=5, per_page=1))
    items, error = await items_then_error(api, "paginate", "/things")
    assert items == [0, 1, 2]
    assert isinstance(error, bb.PaginationError)
    assert "past 3 pages" in str(error)
    assert len(api.requests) == 3


@pytest.mark.parametrize(
    "alias",
    [
        "https://API.bitbucket.org/2.0/things?page=2",
        "https://api.bitbucket.org:443/2.0/things?page=2",
        "HTTPS://Api.Bitbucket.Org:443/2.0/things?page=2",
        "?page=2",
        # The query as the server reads it: in any order, a parameter repeated.
        "https://api.bitbucket.org/2.0/things?page=2&sort=id",
        "https://api.bitbucket.org/2.0/things?sort=id&page=2&sort=id&page=2",
    ],
)
async def test_a_next_link_repeating_a_page_in_another_spelling_is_a_repeat(
    make_api: Callable[..., Api], alias: str
) -> None:
    first = {"values": [1], "next": f"{BASE}/things?sort=id&page=2"}
    if "sort" not in alias:
        first["next"] = f"{BASE}/things?page=2"
    api = make_api(pages_by_number(first, {"values": [2], "next": alias}))
    items, error = await items_then_error(api, "paginate", "/things")
    assert items == [1, 2]
    assert isinstance(error, bb.PaginationError)
    assert "repeats an earlier page" in str(error)
    assert len(api.requests) == 2


@pytest.mark.parametrize(
    "back", [f"{BASE}/things?pagelen=50&page=1", f"{BASE}/things?page=1&pagelen=50&page=1"]
)
async def test_a_next_link_back_to_the_first_page_by_its_number_is_a_repeat(
    make_api: Callable[..., Api], back: str
) -> None:
    """The first page's URL has no ``page``; a link back to it says ``page=1``."""
    api = make_api(
        pages_by_number(
            {"values": [1], "next": f"{BASE}/things?pagelen=50&page=2"},
            {"values": [2], "next": back},
        )
    )
    items, error = await items_then_error(api, "paginate", "/things?pagelen=50")
    assert items == [1, 2]  # page 1 is not fetched nor handed over twice
    assert isinstance(error, bb.PaginationError)
    assert len(api.requests) == 2


async def test_next_links_that_repeat_their_parameters_once_more_each_time_are_a_loop(
    make_api: Callable[..., Api],
) -> None:
    """A server that appends its query again on every page serves page 2 forever.

    Each link is longer than the last, so no two are the same text; the
    page they name is the same, found on the first repeat.
    """

    def handler(request: httpx.Request) -> httpx.Response:
        query = request.url.query.decode()
        return httpx.Response(
            200, json={"values": [query], "next": f"{BASE}/things?{query}&page=2"}
        )

    api = make_api(handler)
    items, error = await items_then_error(api, "paginate", "/things?state=ALL")
    assert isinstance(error, bb.PaginationError)
    assert items == ["state=ALL", "state=ALL&page=2"]  # page 2 is not fetched again
    assert len(api.requests) == 2


async def test_a_next_link_back_to_the_first_page_in_capitals_is_a_repeat(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(scripted(then={"values": [1], "next": "https://API.BITBUCKET.ORG/2.0/things"}))
    with pytest.raises(bb.PaginationError, match="repeats an earlier page"):
        await api.call("paginate", "/things")
    assert len(api.requests) == 1


@pytest.mark.parametrize(
    "relative", ["/2.0/repositories/w/r/pullrequests?page=2", "?page=2", "pullrequests?page=2"]
)
async def test_a_relative_next_link_is_followed_from_the_page_it_came_on(
    make_api: Callable[..., Api], relative: str
) -> None:
    api = make_api(pages_by_number({"values": [1], "next": relative}, {"values": [2]}))
    pages = await api.call("pages", "/repositories/w/r/pullrequests")
    assert [p.values for p in pages] == [[1], [2]]
    assert [str(r.url) for r in api.requests] == [
        f"{BASE}/repositories/w/r/pullrequests",
        f"{BASE}/repositories/w/r/pullrequests?page=2",
    ]
    # Stored as absolute, so an import resumes from it wherever it was read.
    assert pages[0].next == f"{BASE}/repositories/w/r/pullrequests?page=2"


@pytest.mark.parametrize(
    "with_userinfo",
    [
        "https://attacker:chosen@api.bitbucket.org/2.0/things?page=2",
        "https://attacker@api.bitbucket.org/2.0/things?page=2",
        "//attacker:chosen@api.bitbucket.org/2.0/things?page=2",
    ],
)
async def test_a_next_link_with_userinfo_is_refused_without_echoing_it(
    make_api: Callable[..., Api], caplog: pytest.LogCaptureFixture, with_userinfo: str
) -> None:
    api = make_api(pages_by_number({"values": [1], "next": with_userinfo}, {"values": [2]}))
    with caplog.at_level(logging.DEBUG):
        items, error = await items_then_error(api, "paginate", "/things")
    assert items == [1]
    assert isinstance(error, bb.UnsafeURL)
    assert "carries userinfo" in str(error)
    assert "attacker" not in str(error)
    assert "attacker" not in caplog.text
    assert [r.headers["Authorization"] for r in api.requests] == [f"Bearer {TOKEN}"]


async def test_a_url_with_userinfo_given_by_the_caller_is_refused_before_sending(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(scripted())
    for call in ("get", "paginate"):
        with pytest.raises(bb.UnsafeURL, match="carries userinfo") as caught:
            await api.call(call, "https://attacker:chosen@api.bitbucket.org/2.0/user")
        assert "chosen" not in str(caught.value)
    assert api.requests == []


async def test_a_page_without_values_raises_a_clear_error(make_api: Callable[..., Api]) -> None:
    api = make_api(scripted(then={"items": [1]}))
    with pytest.raises(bb.PaginationError, match="no 'values' list"):
        await api.call("paginate", "/things")


async def test_a_non_json_body_raises_invalid_response(make_api: Callable[..., Api]) -> None:
    api = make_api(lambda _r: httpx.Response(200, text="<html>maintenance</html>"))
    with pytest.raises(bb.InvalidResponse, match="expected JSON"):
        await api.get("/user")


async def test_a_listing_cut_short_by_a_missing_next_is_logged(
    make_api: Callable[..., Api], caplog: pytest.LogCaptureFixture
) -> None:
    api = make_api(scripted(then={"values": [1, 2], "page": 1, "size": 5}))
    with caplog.at_level(logging.WARNING, logger="bb_backoff"):
        assert await api.call("paginate", "/things") == [1, 2]
    assert "ended after 2 of 5 items" in caplog.text


async def test_a_listing_resumed_part_way_through_is_not_reported_short(
    make_api: Callable[..., Api], caplog: pytest.LogCaptureFixture
) -> None:
    api = make_api(listing(pages=3))
    with caplog.at_level(logging.WARNING, logger="bb_backoff"):
        assert await api.call("paginate", f"{BASE}/things?page=3&pagelen=2") == [4, 5]
    assert caplog.text == ""


# -- the importer's endpoints --------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "args", "path", "params"),
    [
        ("workspaces", (), "/2.0/user/workspaces", {"pagelen": "50"}),
        (
            "repos",
            ("ws",),
            "/2.0/repositories/ws",
            {"role": "member", "sort": "created_on", "pagelen": "50"},
        ),
        (
            "issues",
            ("ws", "repo"),
            "/2.0/repositories/ws/repo/issues",
            {"sort": "created_on", "pagelen": "50"},
        ),
        (
            "issue_comments",
            ("ws", "repo", 3),
            "/2.0/repositories/ws/repo/issues/3/comments",
            {"sort": "created_on", "pagelen": "50"},
        ),
        (
            "pull_requests",
            ("ws", "repo"),
            "/2.0/repositories/ws/repo/pullrequests",
            {"state": "ALL", "sort": "created_on", "pagelen": "50"},
        ),
        (
            "pull_request_comments",
            ("ws", "repo", 9),
            "/2.0/repositories/ws/repo/pullrequests/9/comments",
            {"sort": "created_on", "pagelen": "50"},
        ),
        ("workspace_members", ("ws",), "/2.0/workspaces/ws/members", {"pagelen": "50"}),
    ],
)
async def test_listing_helpers_call_the_importer_endpoints(
    make_api: Callable[..., Api],
    method: str,
    args: tuple[Any, ...],
    path: str,
    params: dict[str, str],
) -> None:
    api = make_api(scripted(then={"values": ["item"]}))
    assert await api.call(method, *args) == ["item"]
    assert api.requests[0].url.path == path
    assert dict(api.requests[0].url.params) == params


async def test_single_resource_helpers(make_api: Callable[..., Api]) -> None:
    api = make_api(scripted(then={"slug": "repo"}))
    assert await api.call("repo", "ws", "repo") == {"slug": "repo"}
    assert await api.call("user") == {"slug": "repo"}
    assert [r.url.path for r in api.requests] == ["/2.0/repositories/ws/repo", "/2.0/user"]


async def test_the_diff_follows_a_same_origin_redirect_and_returns_text(
    make_api: Callable[..., Api],
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/pullrequests/4/diff"):
            return httpx.Response(302, headers={"Location": f"{BASE}/repositories/ws/r/diff/a..b"})
        return httpx.Response(200, text="diff --git a/x b/x\n")

    api = make_api(handler)
    assert await api.call("pull_request_diff", "ws", "r", 4) == "diff --git a/x b/x\n"
    assert api.requests[1].headers["Authorization"] == f"Bearer {TOKEN}"


async def test_path_segments_are_quoted(make_api: Callable[..., Api]) -> None:
    api = make_api(scripted(then={}))
    await api.call("repo", "my ws", "a/b")
    assert api.requests[0].url.raw_path == b"/2.0/repositories/my%20ws/a%2Fb"


async def test_pull_request_pagelen_above_50_is_refused_before_sending(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(scripted(then={"values": []}))
    with pytest.raises(ValueError, match="pagelen must be an integer from 1 to 50"):
        await api.call("pull_requests", "ws", "repo", pagelen=100)
    with pytest.raises(ValueError, match="pagelen"):
        await api.call("paginate", "/repositories/ws/repo/pullrequests", {"pagelen": 51})
    assert api.requests == []
    assert await api.call("issues", "ws", "repo", pagelen=100) == []


@pytest.mark.parametrize(
    ("method", "args", "name"),
    [
        ("issue_comments", ("ws", "r", 0), "issue_id"),
        ("pull_request_comments", ("ws", "r", "7"), "pull_request_id"),
        ("repo", ("", "r"), "workspace"),
        ("repo", ("ws", ".."), "repo_slug"),
    ],
)
async def test_helper_arguments_are_validated_with_the_parameter_named(
    make_api: Callable[..., Api], method: str, args: tuple[Any, ...], name: str
) -> None:
    api = make_api(scripted())
    with pytest.raises(ValueError, match=name):
        await api.call(method, *args)
    assert api.requests == []


# -- events, logs and secrets --------------------------------------------------------


async def test_one_log_record_per_retry_and_no_secret_anywhere(
    make_api: Callable[..., Api], caplog: pytest.LogCaptureFixture
) -> None:
    api = make_api(
        lambda _r: error(503),
        policy=bb.ExponentialBackoff(error_attempts=3),
    )
    with (
        caplog.at_level(logging.DEBUG, logger="bb_backoff"),
        pytest.raises(bb.RetriesExhausted) as caught,
    ):
        await api.get(f"/user?access_token={TOKEN}")
    retry_records = [
        r for r in caplog.records if r.name == "bb_backoff" and hasattr(r, "retry_event")
    ]
    assert len(retry_records) == 2
    assert TOKEN not in caplog.text
    assert TOKEN not in str(caught.value)
    assert TOKEN not in repr(caught.value)
    assert TOKEN not in repr(api.client)
    assert all(TOKEN not in e.url for e in api.events)


async def test_a_raising_on_retry_callback_does_not_break_the_request(
    make_api: Callable[..., Api], caplog: pytest.LogCaptureFixture
) -> None:
    def explode(_event: bb.RetryEvent) -> None:
        raise RuntimeError("metrics backend down")

    api = make_api(scripted(rate_limited(), then={"id": 1}), on_retry=explode)
    with caplog.at_level(logging.ERROR, logger="bb_backoff"):
        assert await api.get("/user") == {"id": 1}
    assert "on_retry callback raised" in caplog.text


# -- construction --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"flag": "yes"}, "flag"),
        ({"actor": ""}, "actor"),
        ({"policy": object()}, "policy"),
        ({"legacy_policy": 3}, "legacy_policy"),
        ({"auth": ("user", "pass")}, "auth"),
        ({"base_url": "api.bitbucket.org/2.0"}, "base_url"),
        ({"clock": 1.0}, "clock"),
        ({"now": None}, "now"),
        ({"sleep": 0}, "sleep"),
        ({"on_retry": "print"}, "on_retry"),
    ],
)
def test_invalid_constructor_arguments_name_the_parameter(
    kind: str, options: dict[str, Any], name: str
) -> None:
    cls = bb.BitbucketClient if kind == "sync" else bb.AsyncBitbucketClient
    with pytest.raises(ValueError, match=name):
        cls(**options)


async def test_clients_are_context_managers_that_close(clock: VirtualClock) -> None:
    with bb.BitbucketClient(transport=httpx.MockTransport(scripted())) as sync_client:
        pass
    assert sync_client._http.is_closed
    async with bb.AsyncBitbucketClient(transport=httpx.MockTransport(scripted())) as async_client:
        pass
    assert async_client._http.is_closed


async def test_a_closed_client_raises_the_librarys_error_not_httpxs_runtime_error() -> None:
    sync_client = bb.BitbucketClient(transport=httpx.MockTransport(scripted()))
    sync_client.close()
    with pytest.raises(bb.BitbucketError, match="client is closed") as raised:
        sync_client.get("/user")
    assert (raised.value.attempts, raised.value.method) == (0, "GET")
    async_client = bb.AsyncBitbucketClient(transport=httpx.MockTransport(scripted()))
    await async_client.aclose()
    with pytest.raises(bb.BitbucketError, match="client is closed"):
        await async_client.get("/user")


def test_a_runtime_error_from_an_open_clients_transport_goes_up_as_it_came() -> None:
    def broken(_request: httpx.Request) -> httpx.Response:
        raise RuntimeError("a bug in the caller's transport")

    with (
        bb.BitbucketClient(transport=httpx.MockTransport(broken)) as client,
        pytest.raises(RuntimeError, match="a bug in the caller's transport"),
    ):
        client.get("/user")


async def test_the_async_client_awaits_an_async_sleep(clock: VirtualClock) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async with bb.AsyncBitbucketClient(
        transport=httpx.MockTransport(scripted(rate_limited({"Retry-After": "7"}))),
        sleep=sleep,
        now=clock.time,
        policy=bb.ExponentialBackoff(max_delay=1),
    ) as client:
        assert await client.get("/user") == {"ok": True}
    assert slept == [7.0]


# -- properties ----------------------------------------------------------------------


@given(
    hints=st.lists(st.integers(min_value=0, max_value=600), min_size=1, max_size=6),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_the_sync_client_never_waits_less_than_any_hint(hints: list[int], seed: int) -> None:
    clock = VirtualClock()
    responses = [rate_limited({"Retry-After": str(h)}) for h in hints]
    with bb.BitbucketClient(
        transport=httpx.MockTransport(scripted(*responses)),
        policy=bb.ExponentialBackoff(seed=seed),
        clock=clock.monotonic,
        now=clock.time,
        sleep=clock.sleep,
    ) as client:
        assert client.get("/user") == {"ok": True}
    assert len(clock.sleeps) == len(hints)
    for slept, hint in zip(clock.sleeps, hints, strict=True):
        assert slept >= hint


@given(seed=st.integers(min_value=0, max_value=2**32), fault_rate=st.floats(0.0, 0.6))
def test_an_import_under_rate_limits_and_faults_returns_every_item_exactly_once(
    seed: int, fault_rate: float
) -> None:
    rng = random.Random(seed)
    inner = listing(pages=6, per_page=5)

    def handler(request: httpx.Request) -> httpx.Response:
        roll = rng.random()
        if roll < fault_rate / 2:
            return rate_limited()
        if roll < fault_rate * 0.75:
            return error(rng.choice([500, 502, 503, 504]))
        if roll < fault_rate:
            raise httpx.ReadTimeout("slow")
        return inner(request)

    clock = VirtualClock()
    with bb.BitbucketClient(
        transport=httpx.MockTransport(handler),
        policy=bb.ExponentialBackoff(seed=seed, error_attempts=50, error_budget=3600),
        clock=clock.monotonic,
        now=clock.time,
        sleep=clock.sleep,
    ) as client:
        items = list(client.paginate("/things"))
    assert items == list(range(30))


def test_the_error_envelope_parser_copes_with_bodies_that_are_not_envelopes() -> None:
    request = httpx.Request("GET", BASE)
    assert _error_envelope(httpx.Response(500, json=[1, 2], request=request)) == (None, None)
    assert _error_envelope(httpx.Response(500, json={"error": "x"}, request=request)) == (
        None,
        None,
    )
    assert _error_envelope(httpx.Response(500, text="", request=request)) == (None, None)
    long_text = "x" * 1000
    message, _ = _error_envelope(httpx.Response(500, text=long_text, request=request))
    assert message == "x" * 200


def test_the_error_envelope_scrubs_credentials_from_json_message_and_detail() -> None:
    request = httpx.Request("GET", BASE)
    token = bb.BearerToken("envelope-SECRET-token")  # registered while it lives
    body = {"error": {"message": f"bad {token.token}", "detail": f"{token.token} refused"}}
    assert _error_envelope(httpx.Response(401, json=body, request=request)) == (
        "bad [redacted]",
        "[redacted] refused",
    )


# -- hardening (each pins a bug a review found) ----------------------------------------------


def test_the_sync_client_refuses_an_async_sleep_or_on_retry() -> None:
    """An async sleep would return an unawaited coroutine: retries with no wait at all."""

    async def asleep(_seconds: float) -> None: ...

    async def notify(_event: bb.RetryEvent) -> None: ...

    with pytest.raises(ValueError, match="sleep"):
        bb.BitbucketClient(sleep=asleep)
    with pytest.raises(ValueError, match="on_retry"):
        bb.BitbucketClient(on_retry=notify)


def test_a_transport_of_the_wrong_kind_is_refused_at_construction_naming_it() -> None:
    """Not a raw AttributeError out of the first request."""
    with pytest.raises(ValueError, match=r"^transport must be a sync httpx transport.*got int$"):
        bb.BitbucketClient(transport=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"transport.*AsyncBitbucketClient takes this one"):
        bb.BitbucketClient(transport=httpx.AsyncHTTPTransport())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"transport.*BitbucketClient takes this one"):
        bb.AsyncBitbucketClient(transport=httpx.HTTPTransport())  # type: ignore[arg-type]
    # One that serves both (httpx's mock) suits either.
    mock = httpx.MockTransport(lambda _request: httpx.Response(200, json={}))
    bb.BitbucketClient(transport=mock).close()
    bb.AsyncBitbucketClient(transport=mock)


def test_the_async_client_awaits_an_async_on_retry(clock: VirtualClock) -> None:
    seen: list[int] = []

    async def notify(event: bb.RetryEvent) -> None:
        seen.append(event.attempt)

    async def main() -> Any:
        async with bb.AsyncBitbucketClient(
            transport=httpx.MockTransport(scripted(rate_limited(), rate_limited())),
            on_retry=notify,
            clock=clock.monotonic,
            now=clock.time,
            sleep=clock.sleep,
        ) as client:
            return await client.get("/user")

    assert asyncio.run(main()) == {"ok": True}
    assert seen == [1, 2]


async def test_a_proxy_error_is_retried_like_a_connect_error(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(scripted(httpx.ProxyError("proxy refused"), then={"id": 1}))
    assert await api.get("/user") == {"id": 1}
    assert api.events[0].error == "ProxyError"


async def test_a_relative_path_whose_query_holds_a_url_is_not_taken_for_an_absolute_url(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(scripted(then={"values": []}))
    await api.get('/repositories/acme?q=website="https://example.com"')
    assert api.requests[0].url.path == "/2.0/repositories/acme"


@pytest.mark.parametrize(
    "where",
    [
        "repositories/ws/r/pullrequests",
        "/repositories/ws/r/pullrequests?state=ALL",
        f"{BASE}/repositories/ws/r/pullrequests",
        "/repositories/ws/r/pullrequests?pagelen=100",
    ],
)
async def test_pagelen_is_checked_on_the_url_as_sent_whatever_its_form(
    make_api: Callable[..., Api], where: str
) -> None:
    api = make_api(scripted(then={"values": []}))
    params = None if "pagelen" in where else {"pagelen": 100}
    with pytest.raises(ValueError, match="pagelen must be an integer from 1 to 50"):
        await api.call("paginate", where, params)
    assert api.requests == []


async def test_repos_in_a_workspace_keep_the_role_filter(make_api: Callable[..., Api]) -> None:
    api = make_api(scripted(then={"values": []}))
    await api.call("repos", "acme", role="admin")
    assert api.requests[0].url.params["role"] == "admin"


def test_a_base_url_with_credentials_is_refused_without_echoing_them() -> None:
    with pytest.raises(ValueError, match="must not contain credentials") as caught:
        bb.BitbucketClient(base_url="https://x-token-auth:SECRET123@api.bitbucket.org/2.0")
    assert "SECRET123" not in str(caught.value)


DEEP_TOKEN = "deep-SECRET-token-123"


def _noted() -> BaseException:
    error = OSError("proxy refused")
    error.add_note(f"sent: Authorization: Bearer {DEEP_TOKEN}")
    return error


def _noted_in_a_tuple() -> BaseException:
    error = OSError("proxy refused")
    error.__notes__ = (f"sent: Authorization: Bearer {DEEP_TOKEN}",)  # type: ignore[assignment]
    return error


# How a transport's own error may quote the credential: in its message, in
# the attributes an OSError made with an errno prints, in bytes, in a note,
# inside a group, in a UnicodeError's reason, in a container among its
# arguments (printed as their repr).
QUOTING_ERRORS: list[Callable[[], BaseException]] = [
    lambda: OSError(f"proxy refused: Authorization: Bearer {DEEP_TOKEN}"),
    lambda: OSError(111, f"proxy refused: Bearer {DEEP_TOKEN}"),
    lambda: ConnectionRefusedError(111, "refused", f"Bearer {DEEP_TOKEN}"),
    lambda: OSError(f"proxy refused: Bearer {DEEP_TOKEN}".encode()),
    lambda: OSError(bytearray(f"proxy refused: Bearer {DEEP_TOKEN}".encode())),
    lambda: OSError("proxy refused", [("Authorization", f"Bearer {DEEP_TOKEN}")]),
    lambda: OSError("proxy refused", {"headers": {"Authorization": f"Bearer {DEEP_TOKEN}"}}),
    _noted,
    _noted_in_a_tuple,
    lambda: ExceptionGroup("proxies", [OSError(f"Bearer {DEEP_TOKEN}")]),
    lambda: UnicodeDecodeError("utf-8", b"\xff", 0, 1, f"Bearer {DEEP_TOKEN}"),
]


def given_up_on_connect_errors(
    below: Callable[[], BaseException], **options: Any
) -> bb.RetriesExhausted:
    """What a client gives up with when every send fails: a ConnectError from ``below()``."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connect failed", request=request) from below()

    clock = VirtualClock()
    with (
        bb.BitbucketClient(
            auth=bb.BearerToken(DEEP_TOKEN),
            transport=httpx.MockTransport(handler),
            clock=clock.monotonic,
            now=clock.time,
            sleep=clock.sleep,
            **options,
        ) as client,
        pytest.raises(bb.RetriesExhausted) as raised,
    ):
        client.get("/user")
    return raised.value


@pytest.mark.parametrize("gate", [False, None], ids=["no-gate", "gate"])
@pytest.mark.parametrize("quoting", QUOTING_ERRORS)
def test_a_credential_quoted_deep_in_a_transport_errors_chain_never_shows(
    gate: bool | None, quoting: Callable[[], BaseException]
) -> None:
    """Under httpx's ConnectError, the error a transport raised quotes the header.

    Giving up, the client's error chains them: every message in the chain is
    scrubbed, wherever its text lives, not only the first's args (its
    traceback printed the token).
    """
    options: dict[str, Any] = {} if gate is None else {"gate": gate}
    printed = "".join(traceback.format_exception(given_up_on_connect_errors(quoting, **options)))
    assert "connect failed" in printed
    assert DEEP_TOKEN not in printed


@attrs.frozen(auto_exc=True)
class FrozenProxyError(Exception):
    """A transport's own error that cannot be changed: scrubbing must leave it be."""

    detail: str


def test_an_error_the_scrub_cannot_change_is_chained_as_it_is_not_replaced() -> None:
    error = given_up_on_connect_errors(lambda: FrozenProxyError("proxy refused"), gate=False)
    cause = error.__cause__
    assert isinstance(cause, httpx.ConnectError)
    assert isinstance(cause.__cause__, FrozenProxyError)


def test_a_page_repr_hides_secrets_in_its_urls() -> None:
    page = bb.Page(
        values=[],
        next=f"{BASE}/things?page=2&access_token={TOKEN}",
        url=f"{BASE}/things?access_token={TOKEN}",
    )
    assert TOKEN not in repr(page)
    assert page.next is not None
    assert TOKEN in page.next  # the attribute itself stays usable for resuming


async def test_an_unsafe_redirect_error_says_which_request_and_flag_variant(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(
        scripted(error(503), httpx.Response(302, headers={"Location": "https://evil.example/"}))
    )
    with pytest.raises(bb.UnsafeURL) as caught:
        await api.get("/user")
    assert (caught.value.method, caught.value.flag_variant, caught.value.attempts) == (
        "GET",
        "on",
        2,
    )
    assert caught.value.url == f"{BASE}/user"


async def test_a_redirect_loop_is_an_invalid_response_not_a_raw_httpx_error(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(lambda request: httpx.Response(302, headers={"Location": str(request.url)}))
    with pytest.raises(bb.InvalidResponse, match="TooManyRedirects"):
        await api.get("/user")


async def test_an_undecodable_body_is_an_invalid_response(make_api: Callable[..., Api]) -> None:
    api = make_api(
        lambda _r: httpx.Response(200, content=b"not gzip", headers={"Content-Encoding": "gzip"})
    )
    with pytest.raises(bb.InvalidResponse, match="DecodingError"):
        await api.get("/user")


# Found by an independent probe: httpx's build_request(url, params=...)
# replaces the URL's query, so a stored next link given with a fields filter
# lost its page (and params={} dropped the whole query).
@pytest.mark.parametrize(
    ("params", "query"),
    [
        ({"fields": "+values.x"}, "state=ALL&page=7&fields=%2Bvalues.x"),
        ({}, "state=ALL&page=7"),
        ({"page": 8}, "state=ALL&page=8"),  # a parameter given replaces the URL's
    ],
)
async def test_get_merges_params_into_the_query_of_the_url_it_is_given(
    make_api: Callable[..., Api], params: dict[str, Any], query: str
) -> None:
    api = make_api(scripted())
    await api.get(f"{BASE}/repositories/a/b/pullrequests?state=ALL&page=7", params)
    assert api.requests[0].url.query.decode() == query


async def test_paginate_sends_every_value_of_a_repeated_parameter(
    make_api: Callable[..., Api],
) -> None:
    """httpx.QueryParams is a Mapping: dict() of it kept one value of each name."""
    api = make_api(scripted(then={"values": [1]}))
    states = httpx.QueryParams([("state", "OPEN"), ("state", "MERGED"), ("state", "DECLINED")])
    assert await api.call("paginate", "/repositories/a/b/pullrequests", states) == [1]
    assert api.requests[0].url.params.get_list("state") == ["OPEN", "MERGED", "DECLINED"]
    with pytest.raises(ValueError, match="pagelen"):
        await api.call(
            "paginate",
            "/repositories/a/b/pullrequests",
            httpx.QueryParams([("pagelen", "10"), ("pagelen", "100")]),
        )


# Found by an independent probe: a 429 or a 503 whose page a proxy sent with
# a wrong Content-Encoding was taken for a broken answer and given up on at once.
@pytest.mark.parametrize("status", [429, 503])
async def test_an_error_status_with_an_undecodable_body_is_judged_by_its_status(
    make_api: Callable[..., Api], status: int
) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            # Streamed, as a real transport's: the body is decoded when read.
            return httpx.Response(
                status, headers={"Content-Encoding": "gzip"}, stream=httpx.ByteStream(b"not gzip")
            )
        return httpx.Response(200, json={"ok": True})

    api = make_api(handler)
    assert await api.get("/user") == {"ok": True}
    assert len(calls) == 2


async def test_a_success_with_an_undecodable_streamed_body_is_an_invalid_response(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(
        lambda _r: httpx.Response(
            200, headers={"Content-Encoding": "gzip"}, stream=httpx.ByteStream(b"not gzip")
        )
    )
    with pytest.raises(bb.InvalidResponse, match="DecodingError"):
        await api.get("/user")


async def test_an_unparseable_next_link_is_refused_cleanly(make_api: Callable[..., Api]) -> None:
    api = make_api(scripted(then={"values": [1], "next": "https://[api.bitbucket.org/2.0/x"}))
    with pytest.raises(bb.UnsafeURL, match="unparseable URL"):
        await api.call("paginate", "/things")
    assert len(api.requests) == 1


async def test_text_endpoints_ask_for_text(make_api: Callable[..., Api]) -> None:
    api = make_api(lambda _r: httpx.Response(200, text="diff --git"))
    await api.call("pull_request_diff", "ws", "r", 1)
    assert api.requests[0].headers["Accept"] == "text/plain, */*"


async def test_a_pagination_error_says_which_request_and_flag_variant(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(scripted(rate_limited(), then={"items": []}), flag=False)
    with pytest.raises(bb.PaginationError) as caught:
        await api.call("paginate", "/things")
    assert (caught.value.flag_variant, caught.value.attempts) == ("off", 2)
    assert caught.value.url == f"{BASE}/things"


# -- answers from outside are not trusted as they come ----------------------------------------


class Answering:
    """A flag source that answers ``value`` whatever it is asked."""

    def __init__(self, value: object) -> None:
        self.value = value

    def enabled(self, name: str, actor: str | None) -> Any:
        return self.value


@pytest.mark.parametrize(
    "answer", ["false", "0", "", [0], 1, 0.0, None, object()], ids=lambda a: type(a).__name__
)
async def test_a_flag_answer_that_is_not_a_bool_falls_back_to_legacy_and_warns(
    make_api: Callable[..., Api], caplog: pytest.LogCaptureFixture, answer: object
) -> None:
    """A rollback through a source that answers "false" must switch the backoff off."""
    api = make_api(scripted(error(503), then={"id": 1}), flag=Answering(answer))
    with caplog.at_level(logging.WARNING, logger="bb_backoff"):
        assert await api.get("/user") == {"id": 1}
    assert api.client.flag_errors == 1
    assert [e.flag_variant for e in api.events] == ["off"]
    assert "not a bool" in caplog.records[-1].getMessage()


async def test_an_async_enabled_on_a_sync_source_is_an_error_of_the_source_not_on(
    make_api: Callable[..., Api], caplog: pytest.LogCaptureFixture
) -> None:
    class AsyncOnly:
        async def enabled(self, name: str, actor: str | None) -> bool:
            return True

    api = make_api(scripted(error(503), then={"id": 1}), flag=AsyncOnly())
    with caplog.at_level(logging.WARNING, logger="bb_backoff"):
        assert await api.get("/user") == {"id": 1}
    assert [e.flag_variant for e in api.events] == ["off"]
    assert api.client.flag_errors == 1


def test_the_async_client_awaits_enabled_async_and_a_slow_source_blocks_no_one() -> None:
    """Ten requests whose flag takes 0.2 s each finish in 0.2 s, not 2 s, of loop time."""
    clock = VirtualClock()
    asked: list[float] = []

    class SlowRemote:
        def enabled(self, name: str, actor: str | None) -> bool:
            raise AssertionError("the async client must not call the blocking method")

        async def enabled_async(self, name: str, actor: str | None) -> bool:
            asked.append(clock.monotonic())
            await asyncio.sleep(0.2)
            return actor == "Project:1"

    async def main() -> list[Any]:
        async with bb.AsyncBitbucketClient(
            transport=httpx.MockTransport(scripted()),
            flag=SlowRemote(),
            actor="Project:1",
            clock=clock.monotonic,
            now=clock.time,
        ) as client:
            return await asyncio.gather(*(client.get("/user") for _ in range(10)))

    assert run_virtual(main(), clock) == [{"ok": True}] * 10
    assert len(asked) == 10
    assert clock.monotonic() == pytest.approx(0.2)


@pytest.mark.parametrize("status", [300, 301, 302, 303, 307, 308])
async def test_a_redirect_without_location_is_an_invalid_response_not_an_empty_success(
    make_api: Callable[..., Api], status: int
) -> None:
    api = make_api(lambda _request: httpx.Response(status, text=""))
    with pytest.raises(bb.InvalidResponse, match=f"HTTP {status} without a usable Location"):
        await api.get("/user")
    with pytest.raises(bb.InvalidResponse):
        await api.call("get_text", "/repositories/a/b/pullrequests/1/diff")


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


async def test_deeply_nested_json_is_an_invalid_response_not_a_recursion_error(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(lambda _request: httpx.Response(200, content=nested(100_000)))
    with pytest.raises(bb.InvalidResponse, match="expected JSON"):
        await api.get("/user")


async def test_a_deeply_nested_error_body_still_gives_the_status_error(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(lambda _request: httpx.Response(404, content=nested(100_000)))
    with pytest.raises(bb.NotFound) as caught:
        await api.get("/user")
    assert caught.value.error_message is not None
    assert len(caught.value.error_message) <= 600


async def test_a_huge_error_message_is_capped_and_printable(
    make_api: Callable[..., Api],
) -> None:
    message = "\x1b[31mred\nforged log line " + "x" * 5_000_000
    api = make_api(lambda _request: error(404, message))
    with pytest.raises(bb.NotFound) as caught:
        await api.get("/user")
    error_message = caught.value.error_message
    assert error_message is not None
    assert len(error_message) < 1_000
    assert error_message.isprintable()
    assert len(str(caught.value)) < 2_000
    assert str(caught.value).isprintable()


async def test_endless_empty_pages_with_next_links_stop_with_a_pagination_error(
    make_api: Callable[..., Api],
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        number = int(request.url.params.get("page", "1"))
        return httpx.Response(200, json={"values": [], "next": f"{BASE}/things?page={number + 1}"})

    api = make_api(handler)
    with pytest.raises(bb.PaginationError, match="empty pages in a row"):
        await api.call("paginate", "/things")
    assert len(api.requests) == 20


async def test_next_links_that_lead_round_a_loop_through_fresh_cursors_stop_with_an_error(
    make_api: Callable[..., Api],
) -> None:
    """No URL repeats (each cursor is new), but the items run past twice the size."""
    cursors = itertools.count()

    def handler(request: httpx.Request) -> httpx.Response:
        second = request.url.params.get("cursor", "").endswith("b")
        values = [{"id": n} for n in range(50, 100) if second] or [{"id": n} for n in range(50)]
        link = f"{BASE}/things?cursor={next(cursors)}{'a' if second else 'b'}"
        return httpx.Response(200, json={"values": values, "size": 100, "next": link})

    api = make_api(handler)
    with pytest.raises(bb.PaginationError, match="seem to lead round a loop"):
        await api.call("paginate", "/things")
    # 350 items over 7 pages: past twice the size and a page's slack.
    assert len(api.requests) == 7


async def test_a_relative_next_link_given_again_stops_instead_of_going_deeper(
    make_api: Callable[..., Api],
) -> None:
    """``"pullrequests/x?page=2"`` on every page: a new URL each time, one level deeper.

    Before, about 5,000 requests and 5,000 copies of one item, until the URL
    outgrew httpx.  A relative link that moves on (``?page=3`` after
    ``?page=2``) is followed as before.
    """
    api = make_api(
        lambda _request: httpx.Response(
            200, json={"values": [{"id": 1}], "next": "pullrequests/x?page=2"}
        )
    )
    with pytest.raises(bb.PaginationError, match="relative link an earlier page gave"):
        await api.call("paginate", "/repositories/a/b/pullrequests")
    assert len(api.requests) == 2

    def moving_on(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params.get("page", "1"))
        body: dict[str, Any] = {"values": [{"id": page}]}
        if page < 4:
            body["next"] = f"?page={page + 1}"
        return httpx.Response(200, json=body)

    assert await make_api(moving_on).call("paginate", "/things") == [
        {"id": 1},
        {"id": 2},
        {"id": 3},
        {"id": 4},
    ]


@pytest.mark.parametrize("timeout", [-1, 0, "x", float("nan"), True, None])
def test_an_invalid_timeout_is_refused_naming_it(kind: str, timeout: object) -> None:
    client = bb.BitbucketClient if kind == "sync" else bb.AsyncBitbucketClient
    with pytest.raises(ValueError, match="timeout"):
        client(timeout=timeout)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "timeout",
    [
        math.inf,
        1e300,
        pytest.param(10**400, id="10**400"),
        MAX_TIMEOUT + 1,
        timedelta(days=10**8),
        httpx.Timeout(-1),
        httpx.Timeout(5.0, read=math.inf),
        httpx.Timeout(5.0, pool=0),
        httpx.Timeout(5.0, write=10**5000),
        httpx.Timeout(5.0, connect="5"),  # type: ignore[arg-type]
    ],
)
def test_a_timeout_the_socket_would_refuse_on_every_request_is_refused_naming_it(
    kind: str, timeout: object
) -> None:
    """httpx took these, then every sync request raised a raw OverflowError or ValueError."""
    client = bb.BitbucketClient if kind == "sync" else bb.AsyncBitbucketClient
    with pytest.raises(ValueError, match=r"^timeout"):
        client(timeout=timeout)  # type: ignore[arg-type]


@given(
    st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.integers(min_value=0, max_value=2 * 86_400),
)
def test_a_timeout_is_taken_exactly_when_it_is_positive_and_at_most_max_timeout(
    timeout: float,
) -> None:
    if 0 < timeout <= MAX_TIMEOUT:
        bb.BitbucketClient(timeout=timeout, gate=False).close()
    else:
        with pytest.raises(ValueError, match=r"^timeout must be positive seconds"):
            bb.BitbucketClient(timeout=timeout, gate=False)


def test_the_longest_timeout_is_one_the_socket_takes() -> None:
    for timeout in (MAX_TIMEOUT, timedelta(days=1), httpx.Timeout(MAX_TIMEOUT)):
        bb.BitbucketClient(timeout=timeout, gate=False).close()
    with socket.socket() as sock:
        sock.settimeout(MAX_TIMEOUT)  # what httpcore's sync backend calls
        assert sock.gettimeout() == MAX_TIMEOUT


@pytest.mark.parametrize(
    "base_url",
    [
        f"{BASE}?access_token=hunter2-secret",
        f"{BASE}#access_token=hunter2-secret",
        "https://ada:hunter2-secret@api.bitbucket.org/2.0",
    ],
)
def test_a_base_url_that_may_hold_a_credential_is_refused_without_echoing_it(
    base_url: str,
) -> None:
    with pytest.raises(ValueError, match="base_url") as caught:
        bb.BitbucketClient(base_url=base_url)
    assert "hunter2" not in str(caught.value)


# httpx reads "?" or "#" with nothing after it as no query or fragment, but
# keeps it in the URL: every path then joined after it ("/2.0?/user").
@pytest.mark.parametrize("base_url", [f"{BASE}?", f"{BASE}#", f"{BASE}/?", f"{BASE}?#"])
def test_a_base_url_with_an_empty_query_or_fragment_is_refused(base_url: str) -> None:
    with pytest.raises(ValueError, match="base_url must not have a query or a fragment"):
        bb.BitbucketClient(base_url=base_url)


def test_a_base_url_with_an_invalid_idna_host_is_refused_naming_base_url(kind: str) -> None:
    client = bb.BitbucketClient if kind == "sync" else bb.AsyncBitbucketClient
    with pytest.raises(ValueError, match="base_url is not a valid URL"):
        client(base_url="https://xn--pi-7ld.bitbucket.org/2.0")


def causes(error: BaseException) -> list[BaseException]:
    """The error and everything it was caused by or raised during, stopping at a repeat."""
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and all(current is not s for s in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


async def test_our_own_errors_are_never_their_own_cause(make_api: Callable[..., Api]) -> None:
    api = make_api(
        lambda _request: httpx.Response(302, headers={"Location": "https://evil.example/"})
    )
    with pytest.raises(bb.UnsafeURL) as caught:
        await api.get("/user")
    chain = causes(caught.value)
    assert chain[-1].__cause__ is None
    assert chain[-1].__context__ is None


# -- the origin guard itself ------------------------------------------------------------------

TOKEN_URL = "https://bitbucket.org/site/oauth2/access_token"


@pytest.mark.parametrize(
    ("path", "url"),
    [("/x", f"{BASE}/x"), ("x", f"{BASE}/x"), ("//evil.example/x", f"{BASE}/evil.example/x")],
)
def test_the_guard_keeps_every_path_on_the_base_url(path: str, url: str) -> None:
    assert OriginGuard(BASE).url(path) == url


@given(
    base=st.sampled_from(
        [BASE, "http://127.0.0.1:8080", "https://bücher.example/2.0", "https://h.example/a?b"]
    ),
    rest=st.text(),
)
def test_a_url_under_the_base_url_is_taken_as_given_and_never_leaves_its_origin(
    base: str, rest: str
) -> None:
    """A `next` link under the base URL is not parsed on its way (that cost 17 us a page).

    Whatever follows the base URL's "/", the origin is the base URL's: the
    request goes there, or httpx refuses to build it (nothing is sent).
    """
    guard = OriginGuard(base)
    url = f"{base}/{rest}"
    assert guard.url(url) == url
    try:
        request = httpx.Request("GET", url)
    except httpx.InvalidURL:
        return
    assert guard.on_origin(request.url)
    guard.check(request)


@pytest.mark.parametrize(
    "url",
    [
        f"{BASE}/user",
        "https://api.bitbucket.org:443/2.0/user",
        "HTTPS://API.Bitbucket.ORG/2.0/user",
        "HTTPS://API.Bitbucket.ORG:443/2.0/user",
    ],
)
def test_the_guard_passes_a_request_to_the_api_origin_however_it_is_written(url: str) -> None:
    OriginGuard(BASE).check(httpx.Request("GET", url))


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/2.0/user",
        "https://api.bitbucket.org:8443/2.0/user",
        "http://api.bitbucket.org/2.0/user",
        "https://api.bitbucket.org@evil.example/2.0/user",
        "https://api.bitbucket.org.evil.example/2.0/user",
        "https://äpi.bitbucket.org/2.0/user",
    ],
)
def test_the_guard_refuses_a_request_off_the_api_origin(url: str) -> None:
    with pytest.raises(bb.UnsafeURL):
        OriginGuard(BASE).check(httpx.Request("GET", url))


@pytest.mark.parametrize(
    "url",
    [
        "https://attacker:chosen@api.bitbucket.org/2.0/user",
        "https://attacker@api.bitbucket.org/2.0/user",
        "https://:chosen@api.bitbucket.org/2.0/user",
        "HTTPS://attacker:chosen@API.bitbucket.org:443/2.0/user",
    ],
)
def test_the_guard_refuses_a_url_with_userinfo_even_on_the_api_origin(url: str) -> None:
    guard = OriginGuard(BASE)
    assert not guard.on_origin(url)
    for refuse in (lambda: guard.url(url), lambda: guard.check(httpx.Request("GET", url))):
        with pytest.raises(bb.UnsafeURL, match="carries userinfo") as caught:
            refuse()
        assert "attacker" not in str(caught.value)
        assert "chosen" not in str(caught.value)


def test_an_idna_origin_is_its_host_in_unicode_punycode_or_capitals_and_no_other() -> None:
    guard = OriginGuard("https://bücher.example/2.0")
    for same in ["bücher.example", "xn--bcher-kva.example", "BÜCHER.example"]:
        guard.check(httpx.Request("GET", f"https://{same}/2.0/x"))
    for other in ["büchers.example", "xn--bchers-3ya.example", "bucher.example"]:
        with pytest.raises(bb.UnsafeURL):
            guard.check(httpx.Request("GET", f"https://{other}/2.0/x"))


def test_the_guard_refuses_a_host_that_is_not_valid_idna_as_off_the_origin() -> None:
    guard = OriginGuard(BASE)
    assert not guard.on_origin(INVALID_IDNA)
    # httpx reads the host to build a request unless it has a Host header.
    request = httpx.Request("GET", INVALID_IDNA, headers={"Host": "api.bitbucket.org"})
    with pytest.raises(bb.UnsafeURL, match="get the credentials"):
        guard.check(request)


def test_a_token_refresh_goes_to_the_token_url_only_never_to_the_api() -> None:
    refresh = {TOKEN_REFRESH_EXTENSION: True}
    guard = OriginGuard(BASE, token_url=TOKEN_URL)
    guard.check(httpx.Request("POST", TOKEN_URL, extensions=refresh))
    for url in [f"{BASE}/user", "https://bitbucket.org/site/oauth2/other"]:
        with pytest.raises(bb.UnsafeURL, match="refresh token"):
            guard.check(httpx.Request("POST", url, extensions=refresh))
    with pytest.raises(bb.UnsafeURL, match="refresh token"):
        OriginGuard(BASE).check(httpx.Request("POST", f"{BASE}/user", extensions=refresh))
    with pytest.raises(bb.UnsafeURL):  # and nothing else goes to the token URL
        guard.check(httpx.Request("POST", TOKEN_URL))


# -- httpx's own options --------------------------------------------------------------------


async def test_extra_headers_go_with_every_request_beside_the_clients_own(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(scripted(), headers={"X-Importer": "gitlab", "Accept-Language": "en"})
    await api.get("/user")
    headers = api.requests[0].headers
    assert (headers["X-Importer"], headers["Accept-Language"]) == ("gitlab", "en")
    assert headers["Authorization"] == f"Bearer {TOKEN}"


async def test_no_cookie_the_api_sets_rides_on_a_later_request_redirects_included(
    make_api: Callable[..., Api],
) -> None:
    # Every request is authenticated by the credential alone: a session or a
    # load balancer's cookie must not follow in this client and not in others.
    session = {"Set-Cookie": "cloud.session.token=s3ss10n; Domain=api.bitbucket.org; Path=/"}
    diff = f"{BASE}/repositories/ada/r/diff/1"
    api = make_api(
        scripted(
            httpx.Response(200, json={}, headers=session),
            httpx.Response(200, json={}),
            httpx.Response(302, headers={**session, "Location": f"{diff}?redirected=1"}),
            httpx.Response(200, text="diff --git"),
        )
    )
    await api.get("/user")
    await api.get("/user")
    assert await api.call("get_text", diff, None) == "diff --git"
    assert len(api.requests) == 4
    assert [request.headers.get("Cookie") for request in api.requests] == [None] * 4


async def test_get_bytes_keeps_every_byte_that_get_text_cannot_decode(
    make_api: Callable[..., Api],
) -> None:
    # A diff of a file kept in Latin-1, sent as text/plain with no charset,
    # behind the redirect Bitbucket answers a diff with, and compressed.
    body = b"-caf\xe9\n+caf\xc3\xa9\n\x00\xff"
    diff = f"{BASE}/repositories/ada/r/pullrequests/1/diff"
    plain = {"Content-Type": "text/plain"}
    gzipped = {**plain, "Content-Encoding": "gzip"}
    api = make_api(
        scripted(
            httpx.Response(302, headers={"Location": f"{diff}?hop=1"}),
            httpx.Response(200, content=gzip.compress(body), headers=gzipped),
            httpx.Response(200, content=body, headers=plain),
        )
    )
    assert await api.call("get_bytes", diff) == body
    assert await api.call("get_text", diff) == body.decode("utf-8", "replace")
    assert [request.headers["Accept"] for request in api.requests] == [
        "*/*",
        "*/*",
        "text/plain, */*",
    ]


def test_an_authorization_header_beside_auth_is_refused(kind: str) -> None:
    client = bb.BitbucketClient if kind == "sync" else bb.AsyncBitbucketClient
    with pytest.raises(ValueError, match="Authorization"):
        client(auth=bb.BearerToken(TOKEN), headers={"authorization": "Bearer other"})


def test_event_hooks_run_after_the_origin_guard_for_every_hop() -> None:
    clock = VirtualClock()
    seen: list[str] = []
    answered: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/diff"):
            return httpx.Response(302, headers={"Location": "https://evil.example/diff"})
        return httpx.Response(200, json={})

    with bb.BitbucketClient(
        transport=httpx.MockTransport(handler),
        clock=clock.monotonic,
        now=clock.time,
        sleep=clock.sleep,
        event_hooks={
            "request": [lambda request: seen.append(str(request.url))],
            "response": [lambda response: answered.append(response.status_code)],
        },
    ) as client:
        client.get("/user")
        with pytest.raises(bb.UnsafeURL):
            client.get_text("/repositories/a/b/pullrequests/1/diff")
    assert seen == [f"{BASE}/user", f"{BASE}/repositories/a/b/pullrequests/1/diff"]
    assert answered == [200, 302]


async def test_a_request_hook_that_sends_the_request_elsewhere_is_refused_with_nothing_sent(
    make_api: Callable[..., Api], kind: str
) -> None:
    """A hook of the caller's runs after the guard's first check: the last one catches it."""

    def to_mirror(request: httpx.Request) -> None:
        request.url = request.url.copy_with(host="mirror.example.net")

    async def to_mirror_async(request: httpx.Request) -> None:
        to_mirror(request)

    api = make_api(
        scripted(then={"id": 1}),
        auth=bb.BearerToken(TOKEN),
        event_hooks={"request": [to_mirror if kind == "sync" else to_mirror_async]},
    )
    with pytest.raises(bb.UnsafeURL, match=r"mirror\.example\.net"):
        await api.get("/user")
    assert api.requests == []


async def test_a_response_hook_that_raises_for_status_does_not_stop_the_retries(
    make_api: Callable[..., Api], kind: str, clock: VirtualClock
) -> None:
    """httpx's ``raise_for_status`` hook: a 429 is still waited out, a 404 still ``NotFound``."""

    def raise_for_status(response: httpx.Response) -> None:
        response.raise_for_status()

    async def raise_for_status_async(response: httpx.Response) -> None:
        response.raise_for_status()

    hook = raise_for_status if kind == "sync" else raise_for_status_async
    api = make_api(
        scripted(rate_limited(), error(503), then={"id": 1}),
        event_hooks={"response": [hook]},
    )
    assert await api.get("/user") == {"id": 1}
    assert len(api.requests) == 3
    missing = make_api(
        lambda _request: error(404, "Repository not found"), event_hooks={"response": [hook]}
    )
    with pytest.raises(bb.NotFound, match="Repository not found"):
        await missing.get("/repositories/a/b")


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"event_hooks": {"sent": []}}, "event_hooks"),
        ({"event_hooks": {"request": [1]}}, "event_hooks"),
        ({"event_hooks": {"request": None}}, "event_hooks"),  # was TypeError: not iterable
        ({"event_hooks": {"response": print}}, "event_hooks"),
        ({"event_hooks": {"request": iter([print])}}, "event_hooks"),  # read twice
        ({"limits": 10}, "limits"),
        ({"verify": 3}, "verify"),
        ({"proxy": "not a url"}, "proxy"),
        ({"headers": 5}, "headers"),
        # What HTTP/1.1 refuses on every request (each was a RetriesExhausted
        # "LocalProtocolError is not a transient error" per request).
        ({"headers": {"X-Api-Key": "key-SECRET-123\n"}}, "headers"),
        ({"headers": {"X-Api-Key": "key\r\nX-Other: injected"}}, "headers"),
        ({"headers": {"X-Api-Key": "key\x00"}}, "headers"),
        ({"headers": {"X Bad Name": "v"}}, "headers"),
        ({"headers": {"X-Bad:Name": "v"}}, "headers"),
    ],
)
def test_an_invalid_httpx_option_is_refused_naming_it(
    kind: str, options: dict[str, Any], named: str
) -> None:
    client = bb.BitbucketClient if kind == "sync" else bb.AsyncBitbucketClient
    with pytest.raises(ValueError, match=named) as caught:
        client(**options)
    assert "SECRET" not in str(caught.value)


def _chain_text(error: BaseException) -> str:
    """Everything a scrubber, a logger or Sentry can reach from ``error``: chain included."""
    text = "".join(traceback.format_exception(error))
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen:
        seen.append(current)
        text += repr(current) + repr(current.args) + repr(getattr(current, "object", ""))
        current = current.__cause__ or current.__context__
    return text


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        # A token pasted with a no-break space: "headers must be a mapping"
        # before, with httpx's UnicodeEncodeError (the whole value) as __context__.
        ({"Authorization": "Bearer tok-SECRET-123\u00a0"}, "headers['Authorization'] holds"),
        ({"X-Api-Key": "key-SECRET-\u2019quoted\u2019"}, "headers['X-Api-Key'] holds"),
        ({"X-Api-Key": 123456}, "headers['X-Api-Key'] must be a string, not int"),
        ({5: "key-SECRET-123"}, "a header name must be a string, not int"),
        ({"Clé": "key-SECRET-123"}, "'Clé' is not a valid header name"),
        ("key-SECRET-123", "headers must be a mapping"),
    ],
)
def test_a_header_httpx_cannot_encode_is_named_and_its_value_is_nowhere_in_the_error(
    kind: str, headers: Any, message: str
) -> None:
    client = bb.BitbucketClient if kind == "sync" else bb.AsyncBitbucketClient
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        client(headers=headers)
    error = caught.value
    assert (error.__cause__, error.__context__) == (None, None)
    assert "SECRET" not in _chain_text(error)


@pytest.mark.parametrize(
    "path_or_url",
    [
        f"{BASE}/user?access_token=tok-SECRET-123".encode(),  # echoed in full before
        bytearray(b"/user?access_token=tok-SECRET-123"),
        pytest.param(10**5000, id="5000-digits"),  # int-digits ValueError naming nothing
        None,
        ["/user"],
    ],
)
async def test_a_path_that_is_not_a_string_is_refused_by_its_type_alone(
    make_api: Callable[..., Api], path_or_url: Any
) -> None:
    api = make_api(scripted())
    with pytest.raises(
        TypeError, match=r"^path_or_url must be a non-empty string, not \w+ "
    ) as caught:
        await api.get(path_or_url)
    assert "SECRET" not in _chain_text(caught.value)
    assert api.requests == []


async def test_an_empty_path_is_refused_naming_it(make_api: Callable[..., Api]) -> None:
    api = make_api(scripted())
    with pytest.raises(ValueError, match=r"^path_or_url must be a non-empty string"):
        await api.get("")


@pytest.mark.parametrize(
    ("params", "error", "message"),
    [
        (5, TypeError, "params must be a mapping of query parameters, not int"),  # AttributeError
        ([1, 2], TypeError, "params must be a mapping of query parameters"),
        ([("page",)], TypeError, "params must be a mapping of query parameters"),
        ({"page": 10**5000}, ValueError, "params: a value is an int too long"),
    ],
)
@pytest.mark.parametrize("call", ["get", "paginate"])
async def test_params_that_are_not_query_parameters_are_refused_naming_params(
    make_api: Callable[..., Api], call: str, params: Any, error: type[Exception], message: str
) -> None:
    api = make_api(scripted(then={"values": []}))
    with pytest.raises(error, match=f"^{re.escape(message)}") as caught:
        await api.call(call, "/user", params)
    assert (caught.value.__cause__, caught.value.__context__) == (None, None)
    assert api.requests == []


async def test_params_as_pairs_or_a_query_string_still_reach_the_query(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(scripted(then={"ok": 1}))
    await api.call("get", "/user?a=1", [("b", "2"), ("b", "3")])
    await api.call("get", "/user", "c=4")
    assert [request.url.query for request in api.requests] == [b"a=1&b=2&b=3", b"c=4"]


def test_a_ca_bundle_that_cannot_be_read_is_refused_naming_verify(
    kind: str, tmp_path: Path
) -> None:
    """httpx raised a bare FileNotFoundError (or ssl.SSLError) when the client was built."""
    client = bb.BitbucketClient if kind == "sync" else bb.AsyncBitbucketClient
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("no certificate here")
    for path in (str(tmp_path / "missing.pem"), str(not_pem)):
        with pytest.raises(ValueError, match=r"^verify: no CA bundle could be read at") as caught:
            client(verify=path)
        assert (caught.value.__cause__, caught.value.__context__) == (None, None)


def test_a_ca_bundle_path_is_read_into_an_ssl_context_without_httpxs_deprecation(
    kind: str,
) -> None:
    """httpx deprecates ``verify=<str>`` (a DeprecationWarning: an error in this suite)."""
    client = bb.BitbucketClient if kind == "sync" else bb.AsyncBitbucketClient
    client(verify=certifi.where())
    client(verify=str(Path(certifi.where()).parent))  # a directory of them


def test_sync_and_async_event_hooks_must_match_the_client() -> None:
    async def async_hook(_request: httpx.Request) -> None:
        return None

    with pytest.raises(ValueError, match="event_hooks"):
        bb.BitbucketClient(event_hooks={"request": [async_hook]})
    with pytest.raises(ValueError, match="event_hooks"):
        bb.AsyncBitbucketClient(event_hooks={"request": [print]})


async def test_timeout_takes_seconds_a_timedelta_or_an_httpx_timeout(
    make_api: Callable[..., Api],
) -> None:
    for timeout, expected in [
        (12.5, 12.5),
        (timedelta(seconds=7), 7.0),
        (httpx.Timeout(3.0, connect=1.0), 3.0),
    ]:
        api = make_api(scripted(), timeout=timeout)
        await api.get("/user")
        assert api.requests[-1].extensions["timeout"]["read"] == expected


def test_limits_verify_and_proxy_reach_httpx(kind: str) -> None:
    client_class = bb.BitbucketClient if kind == "sync" else bb.AsyncBitbucketClient
    client = client_class(
        limits=httpx.Limits(max_connections=3), verify=False, proxy="http://127.0.0.1:3128"
    )
    pools = [getattr(transport, "_pool", None) for transport in client._http._mounts.values()]
    assert pools
    assert all(pool is not None and pool._max_connections == 3 for pool in pools)


async def test_each_page_says_which_variant_served_it_and_after_how_many_attempts(
    make_api: Callable[..., Api],
) -> None:
    flag = bb.FlipperFlag(boolean=True)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("page") == "2":
            return httpx.Response(200, json={"values": [2]})
        flag.disable()
        return httpx.Response(200, json={"values": [1], "next": f"{BASE}/things?page=2"})

    api = make_api(handler, flag=flag)
    pages = await api.call("pages", "/things")
    assert [(p.values, p.flag_variant, p.attempts) for p in pages] == [
        ([1], "on", 1),
        ([2], "off", 1),
    ]


def test_the_async_client_and_transport_retry_under_trio_with_the_default_sleep() -> None:
    """httpx runs on trio too: the default sleep is anyio's (asyncio's failed: no event loop).

    trio's MockClock jumps over every sleep, so nothing sleeps for real.
    """
    trio = pytest.importorskip("trio")
    from trio.testing import MockClock  # noqa: PLC0415 (only with trio)

    def flaky() -> httpx.MockTransport:
        answers = [error(503), rate_limited(), httpx.Response(200, json={"id": 1})]
        return httpx.MockTransport(lambda _request: answers.pop(0))

    async def main() -> tuple[Any, int]:
        async with bb.AsyncBitbucketClient(transport=flaky(), clock=trio.current_time) as client:
            body = await client.get("/user")
        transport = bb.RetryTransport(flaky(), clock=trio.current_time)
        async with httpx.AsyncClient(transport=transport) as http:
            status = (await http.get(f"{BASE}/user")).status_code
        return body, status

    clock = MockClock(autojump_threshold=0)
    assert trio.run(main, clock=clock) == ({"id": 1}, 200)
    assert clock.current_time() > 0  # it slept, on trio's clock
