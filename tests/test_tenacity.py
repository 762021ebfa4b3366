"""The tenacity adapter (``_tenacity.py``): bb-backoff decisions inside tenacity.

Each test wraps a function doing an httpx call on a ``MockTransport`` in
``tenacity.Retrying(**strategies.kwargs(), sleep=...)`` with a fake sleep that
records the waits, so the waits tenacity takes are compared to the policy's
exact ones.  Functions come in two styles: returning the ``httpx.Response``
(tenacity retries on the result) and calling ``raise_for_status()`` (tenacity
retries on the exception).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable, Iterator
from email.utils import formatdate
from typing import Any

import attrs
import httpx
import pytest
import tenacity

from bb_backoff import GITLAB_16_7, ExponentialBackoff, FixedRetry, TenacityStrategies
from bb_backoff.testing import VirtualClock

URL = "https://api.bitbucket.org/2.0/user"

# No jitter: the waits are 1, 2, 4 s, capped at 5 s; 3 error attempts in all.
POLICY = ExponentialBackoff(
    initial=1.0, factor=2.0, max_delay=5.0, jitter="none", error_attempts=3, max_hint=3_600
)

Step = httpx.Response | Exception


class Script:
    """A mock transport handler answering with ``steps`` in order, recording requests."""

    def __init__(self, *steps: Step) -> None:
        self._steps: Iterator[Step] = iter(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = next(self._steps)
        if isinstance(step, Exception):
            raise step
        return step

    @property
    def calls(self) -> int:
        return len(self.requests)


def client_for(script: Script) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(script))


def returning(client: httpx.Client, method: str = "GET") -> httpx.Response:
    """Result style: the response is the result; tenacity retries on it."""
    return client.request(method, URL)


def raising(client: httpx.Client, method: str = "GET") -> httpx.Response:
    """Exception style: errors surface as ``httpx.HTTPStatusError``."""
    response = client.request(method, URL)
    response.raise_for_status()
    return response


STYLES = [returning, raising]
STYLE_IDS = ["result", "raise_for_status"]
Fetch = Callable[..., httpx.Response]


def retrying(
    sleeps: list[float],
    policy: ExponentialBackoff | FixedRetry = POLICY,
    *,
    reraise: bool = False,
) -> tenacity.Retrying:
    strategies = TenacityStrategies(policy, now=VirtualClock().time)
    return tenacity.Retrying(**strategies.kwargs(), sleep=sleeps.append, reraise=reraise)


def retry_after(status: int, seconds: str) -> httpx.Response:
    return httpx.Response(status, headers={"Retry-After": seconds})


# -- the strategies themselves ---------------------------------------------------------


def test_kwargs_are_tenacitys_retry_wait_and_stop() -> None:
    strategies = TenacityStrategies(POLICY)
    kwargs = strategies.kwargs()
    assert kwargs == {
        "retry": strategies.retry,
        "wait": strategies.wait,
        "stop": strategies.stop,
    }
    assert repr(strategies) == f"TenacityStrategies({POLICY!r})"


# -- sync ------------------------------------------------------------------------------


@pytest.mark.parametrize("fetch", STYLES, ids=STYLE_IDS)
def test_retry_after_above_the_backoff_cap_is_waited_exactly(fetch: Fetch) -> None:
    script = Script(retry_after(429, "30"), httpx.Response(200, json={"ok": True}))
    sleeps: list[float] = []
    response = retrying(sleeps)(fetch, client_for(script))
    assert (response.status_code, sleeps, script.calls) == (200, [30.0], 2)


def test_retry_after_as_an_http_date_is_read_with_the_injected_now() -> None:
    clock = VirtualClock()
    when = formatdate(clock.time() + 45, usegmt=True)
    script = Script(retry_after(503, when), httpx.Response(200))
    sleeps: list[float] = []
    strategies = TenacityStrategies(POLICY, now=clock.time)
    tenacity.Retrying(**strategies.kwargs(), sleep=sleeps.append)(returning, client_for(script))
    assert sleeps == [45.0]


def test_retry_after_below_the_backoff_is_not_undercut() -> None:
    script = Script(httpx.Response(503), retry_after(503, "1"), httpx.Response(200))
    sleeps: list[float] = []
    retrying(sleeps)(returning, client_for(script))
    assert sleeps == [1.0, 2.0]  # the second wait is the backoff's 2 s, not the hint's 1 s


def test_hint_above_max_hint_stops_at_once_with_the_response_as_result() -> None:
    script = Script(retry_after(429, "7200"), httpx.Response(200))
    sleeps: list[float] = []
    with pytest.raises(tenacity.RetryError) as caught:
        retrying(sleeps)(returning, client_for(script))
    assert caught.value.last_attempt.result().status_code == 429
    assert (sleeps, script.calls) == ([], 1)


def test_hint_above_max_hint_stops_at_once_and_reraises_the_http_error() -> None:
    script = Script(retry_after(429, "7200"), httpx.Response(200))
    sleeps: list[float] = []
    with pytest.raises(httpx.HTTPStatusError) as caught:
        retrying(sleeps, reraise=True)(raising, client_for(script))
    assert caught.value.response.status_code == 429
    assert (sleeps, script.calls) == ([], 1)


@pytest.mark.parametrize("fetch", STYLES, ids=STYLE_IDS)
def test_503s_are_retried_with_the_policys_backoff(fetch: Fetch) -> None:
    script = Script(httpx.Response(503), httpx.Response(503), httpx.Response(200))
    sleeps: list[float] = []
    response = retrying(sleeps)(fetch, client_for(script))
    assert (response.status_code, sleeps, script.calls) == (200, [1.0, 2.0], 3)


def test_429_without_a_hint_gets_the_backoff() -> None:
    script = Script(httpx.Response(429), httpx.Response(429), httpx.Response(200))
    sleeps: list[float] = []
    retrying(sleeps)(returning, client_for(script))
    assert sleeps == [1.0, 2.0]


def test_transport_errors_are_retried() -> None:
    script = Script(
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("dropped"),
        httpx.Response(200),
    )
    sleeps: list[float] = []
    policy = ExponentialBackoff(initial=1.0, max_delay=5.0, jitter="none", error_attempts=5)
    response = retrying(sleeps, policy)(returning, client_for(script))
    assert (response.status_code, sleeps, script.calls) == (200, [1.0, 2.0, 4.0], 4)


@pytest.mark.parametrize("fetch", STYLES, ids=STYLE_IDS)
def test_error_attempts_budget_stops_the_retries(fetch: Fetch) -> None:
    script = Script(*[httpx.Response(503) for _ in range(5)])
    sleeps: list[float] = []
    with pytest.raises(tenacity.RetryError) as caught:
        retrying(sleeps)(fetch, client_for(script))
    assert (caught.value.last_attempt.attempt_number, sleeps, script.calls) == (3, [1.0, 2.0], 3)


def test_404_result_is_returned_without_retrying() -> None:
    script = Script(httpx.Response(404), httpx.Response(200))
    sleeps: list[float] = []
    response = retrying(sleeps)(returning, client_for(script))
    assert (response.status_code, sleeps, script.calls) == (404, [], 1)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410])
def test_final_http_errors_propagate_without_retrying(status: int) -> None:
    script = Script(httpx.Response(status), httpx.Response(200))
    sleeps: list[float] = []
    with pytest.raises(httpx.HTTPStatusError) as caught:
        retrying(sleeps)(raising, client_for(script))
    assert (caught.value.response.status_code, sleeps, script.calls) == (status, [], 1)


def test_post_is_not_retried_on_503_or_after_a_read_timeout() -> None:
    """Only failures where the POST certainly never reached the server are safe to retry."""
    sleeps: list[float] = []
    script = Script(httpx.Response(503), httpx.Response(200))
    response = retrying(sleeps)(returning, client_for(script), "POST")
    assert (response.status_code, script.calls) == (503, 1)
    script = Script(httpx.ReadTimeout("slow"), httpx.Response(200))
    with pytest.raises(httpx.ReadTimeout):
        retrying(sleeps)(returning, client_for(script), "POST")
    assert (sleeps, script.calls) == ([], 1)


def test_post_is_retried_after_a_connect_error_and_a_429() -> None:
    script = Script(httpx.ConnectError("refused"), httpx.Response(429), httpx.Response(201))
    sleeps: list[float] = []
    response = retrying(sleeps)(returning, client_for(script), "POST")
    # Each reason has its own backoff sequence: the 429 starts at 1 s again.
    assert (response.status_code, sleeps, script.calls) == (201, [1.0, 1.0], 3)


def test_non_http_exceptions_propagate_untouched() -> None:
    sleeps: list[float] = []

    def broken() -> None:
        raise KeyError("not an HTTP problem")

    with pytest.raises(KeyError):
        retrying(sleeps)(broken)
    assert sleeps == []


def test_decorator_form_uses_the_same_decisions() -> None:
    script = Script(retry_after(429, "12"), httpx.Response(200, json={"n": 1}))
    sleeps: list[float] = []
    strategies = TenacityStrategies(POLICY)

    @tenacity.retry(**strategies.kwargs(), sleep=sleeps.append)
    def fetch_json(client: httpx.Client) -> object:
        return raising(client).json()

    assert (fetch_json(client_for(script)), sleeps) == ({"n": 1}, [12.0])


def test_two_overlapping_calls_keep_separate_histories() -> None:
    """A call that starts while another is mid-retries does not see its history."""
    strategies = TenacityStrategies(POLICY)
    inner_script = Script(*[httpx.Response(503) for _ in range(3)])
    outer_script = Script(httpx.Response(503), httpx.Response(503), httpx.Response(200))
    outer_sleeps: list[float] = []
    inner_sleeps: list[float] = []
    inner_outcomes: list[str] = []

    def outer_fetch(client: httpx.Client) -> httpx.Response:
        response = returning(client)
        if outer_script.calls == 2:  # mid-retries: run a whole other call with the same strategies
            inner = tenacity.Retrying(**strategies.kwargs(), sleep=inner_sleeps.append)
            try:
                inner(returning, client_for(inner_script))
            except tenacity.RetryError as error:
                inner_outcomes.append(f"gave up after {error.last_attempt.attempt_number}")
        return response

    outer = tenacity.Retrying(**strategies.kwargs(), sleep=outer_sleeps.append)
    response = outer(outer_fetch, client_for(outer_script))
    assert (response.status_code, outer_sleeps) == (200, [1.0, 2.0])
    assert (inner_sleeps, inner_outcomes) == ([1.0, 2.0], ["gave up after 3"])


def test_histories_are_dropped_when_calls_end() -> None:
    strategies = TenacityStrategies(POLICY)
    sleeps: list[float] = []
    for _ in range(3):
        script = Script(httpx.Response(503), httpx.Response(200))
        tenacity.Retrying(**strategies.kwargs(), sleep=sleeps.append)(returning, client_for(script))
    gc.collect()
    assert (len(strategies._decisions), sleeps) == (0, [1.0, 1.0, 1.0])


# -- async -----------------------------------------------------------------------------

AsyncFetch = Callable[..., Awaitable[httpx.Response]]


async def async_returning(client: httpx.AsyncClient, path: str = "/user") -> httpx.Response:
    return await client.get(f"https://api.bitbucket.org/2.0{path}")


async def async_raising(client: httpx.AsyncClient, path: str = "/user") -> httpx.Response:
    response: httpx.Response = await async_returning(client, path)
    response.raise_for_status()
    return response


ASYNC_STYLES = [async_returning, async_raising]


def recorder(sleeps: list[float]) -> Callable[[float], Awaitable[None]]:
    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        await asyncio.sleep(0)  # yield to other tasks, as a real sleep would; no real wait

    return sleep


def async_retrying(sleeps: list[float], *, reraise: bool = False) -> tenacity.AsyncRetrying:
    strategies = TenacityStrategies(POLICY)
    return tenacity.AsyncRetrying(**strategies.kwargs(), sleep=recorder(sleeps), reraise=reraise)


def async_client_for(script: Script) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(script))


@pytest.mark.anyio
@pytest.mark.parametrize("fetch", ASYNC_STYLES, ids=STYLE_IDS)
async def test_async_retry_after_above_the_backoff_cap_is_waited_exactly(
    fetch: AsyncFetch,
) -> None:
    script = Script(retry_after(429, "30"), httpx.Response(200))
    sleeps: list[float] = []
    response: httpx.Response = await async_retrying(sleeps)(fetch, async_client_for(script))
    assert (response.status_code, sleeps, script.calls) == (200, [30.0], 2)


@pytest.mark.anyio
async def test_async_hint_above_max_hint_stops_at_once() -> None:
    script = Script(retry_after(429, "7200"), httpx.Response(200))
    sleeps: list[float] = []
    with pytest.raises(httpx.HTTPStatusError) as caught:
        await async_retrying(sleeps, reraise=True)(async_raising, async_client_for(script))
    assert (caught.value.response.status_code, sleeps, script.calls) == (429, [], 1)


@pytest.mark.anyio
@pytest.mark.parametrize("fetch", ASYNC_STYLES, ids=STYLE_IDS)
async def test_async_503s_and_transport_errors_are_retried(fetch: AsyncFetch) -> None:
    script = Script(httpx.Response(503), httpx.ConnectError("refused"), httpx.Response(200))
    sleeps: list[float] = []
    response: httpx.Response = await async_retrying(sleeps)(fetch, async_client_for(script))
    assert (response.status_code, sleeps, script.calls) == (200, [1.0, 2.0], 3)


@pytest.mark.anyio
async def test_async_404_is_not_retried() -> None:
    script = Script(httpx.Response(404), httpx.Response(200))
    sleeps: list[float] = []
    response: httpx.Response = await async_retrying(sleeps)(
        async_returning, async_client_for(script)
    )
    assert (response.status_code, sleeps, script.calls) == (404, [], 1)
    script = Script(httpx.Response(404), httpx.Response(200))
    with pytest.raises(httpx.HTTPStatusError):
        await async_retrying(sleeps)(async_raising, async_client_for(script))
    assert (sleeps, script.calls) == ([], 1)


@pytest.mark.anyio
async def test_async_two_concurrent_calls_keep_separate_histories() -> None:
    """Interleaved calls sharing one TenacityStrategies each follow their own schedule."""
    strategies = TenacityStrategies(POLICY)
    failing = Script(*[httpx.Response(503) for _ in range(4)])
    limited = Script(retry_after(429, "7"), httpx.Response(503), httpx.Response(200))
    failing_sleeps: list[float] = []
    limited_sleeps: list[float] = []

    async def call(script: Script, sleeps: list[float]) -> int:
        retry = tenacity.AsyncRetrying(**strategies.kwargs(), sleep=recorder(sleeps))
        try:
            response: httpx.Response = await retry(async_returning, async_client_for(script))
        except tenacity.RetryError as error:
            return -error.last_attempt.attempt_number
        return response.status_code

    results = await asyncio.gather(call(failing, failing_sleeps), call(limited, limited_sleeps))
    assert list(results) == [-3, 200]  # the failing call gave up after its 3rd attempt
    assert failing_sleeps == [1.0, 2.0]
    # The 503 after the 429 begins the error sequence: 1 s, not 2 s.
    assert limited_sleeps == [7.0, 1.0]


@pytest.mark.parametrize("reraise", [True, False])
def test_retry_follows_the_policys_own_classification(reraise: bool) -> None:
    """GITLAB_16_7 does not retry transport errors; the adapter must not either."""
    script = Script(httpx.ReadError("reset"), httpx.Response(200))
    sleeps: list[float] = []
    with pytest.raises(httpx.ReadError):
        retrying(sleeps, attrs.evolve(GITLAB_16_7, seed=0), reraise=reraise)(
            returning, client_for(script)
        )
    assert (script.calls, sleeps) == (1, [])


@pytest.mark.parametrize(
    ("arguments", "named"),
    [(("x",), "policy"), ((None,), "policy"), ((ExponentialBackoff(),), "now")],
)
def test_an_invalid_argument_is_refused_naming_it(arguments: tuple[Any, ...], named: str) -> None:
    """Refused when built, not as an AttributeError at the first retry."""
    keywords: dict[str, Any] = {"now": 5} if named == "now" else {}
    with pytest.raises(ValueError, match=named):
        TenacityStrategies(*arguments, **keywords)
