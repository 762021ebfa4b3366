"""Hostile servers: whatever comes back, a public call returns or raises a BitbucketError.

A fuzz-style suite (hypothesis) for the client's response handling, kept to
the guarantees in docs/guarantees.md: every exception out of a public call is
a :class:`BitbucketError`, its message is printable and capped, its chain has
no cycle and shows no credential, and every loop the server drives ends.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bb_backoff as bb
from bb_backoff.testing import VirtualClock, run_virtual

BASE = "https://api.bitbucket.org/2.0"
TOKEN = "hostile-SECRET-token"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["values", "next", "error", "message", "page", "size", "x"]),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)
bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.integers(min_value=1, max_value=50_000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.builds(
        lambda message: json.dumps({"type": "error", "error": {"message": message}}).encode(),
        st.text(max_size=300),
    ),
    st.builds(
        lambda values, nxt: json.dumps({"values": values, "next": nxt}).encode(),
        st.lists(st.integers(), max_size=3),
        st.one_of(
            st.none(),
            st.just(f"{BASE}/things?page=2"),
            st.just("https://evil.example/steal"),
            st.just(f"{BASE}/things"),
            st.text(max_size=30),
        ),
    ),
)
header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
headers = st.dictionaries(
    st.sampled_from(
        [
            "Retry-After",
            "X-RateLimit-Reset",
            "X-RateLimit-Limit",
            "X-RateLimit-NearLimit",
            "Content-Type",
            "Location",
            "Content-Encoding",
        ]
    ),
    header_values,
    max_size=4,
)
statuses = st.sampled_from(
    [
        200,
        201,
        204,
        301,
        302,
        303,
        304,
        307,
        308,
        400,
        401,
        403,
        404,
        408,
        410,
        422,
        429,
        500,
        502,
        503,
        504,
        599,
    ]
)
answers = st.lists(st.tuples(statuses, headers, bodies), min_size=1, max_size=6)


def chain(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None:
        assert all(current is not earlier for earlier in seen), "a cycle in the cause chain"
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def check_error(error: BaseException) -> None:
    assert isinstance(error, bb.BitbucketError), f"{type(error).__name__}: {error}"
    text = str(error)
    assert text.isprintable()
    assert len(text) < 3_000
    for link in chain(error):
        assert TOKEN not in str(link)
        assert TOKEN not in repr(link)
        assert TOKEN not in repr(getattr(link, "args", ()))


def client(
    answers: list[tuple[int, dict[str, str], bytes]], clock: VirtualClock
) -> bb.BitbucketClient:
    queue = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        status, head, body = queue.pop(0) if queue else answers[-1]
        return httpx.Response(status, headers=head, content=body)

    return bb.BitbucketClient(
        auth=bb.BearerToken(TOKEN),
        transport=httpx.MockTransport(handler),
        clock=clock.monotonic,
        now=clock.time,
        sleep=clock.sleep,
        policy=bb.ExponentialBackoff(seed=0, rate_limit_budget=7200.0),
        gate=bb.AccountGate(store=bb.MemoryStore(), seed=0),
    )


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=150)
@given(answers=answers, call=st.sampled_from(["get", "get_text", "paginate"]))
def test_whatever_the_server_answers_a_call_returns_or_raises_a_bitbucket_error(
    answers: list[tuple[int, dict[str, str], bytes]], call: str
) -> None:
    clock = VirtualClock()
    with client(answers, clock) as api:
        try:
            if call == "paginate":
                list(api.paginate("/things"))
            else:
                getattr(api, call)("/things")
        except Exception as error:  # noqa: BLE001 (the property is about what escapes)
            check_error(error)
    # Budgets hold whatever the server says.
    assert clock.slept <= 7200.0 + 60.0 + 1e-6


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=60)
@given(answers=answers, call=st.sampled_from(["get", "get_text", "paginate"]))
def test_the_async_client_keeps_the_same_promise(
    answers: list[tuple[int, dict[str, str], bytes]], call: str
) -> None:
    clock = VirtualClock()
    queue = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        status, head, body = queue.pop(0) if queue else answers[-1]
        return httpx.Response(status, headers=head, content=body)

    async def main() -> None:
        async with bb.AsyncBitbucketClient(
            auth=bb.BearerToken(TOKEN),
            transport=httpx.MockTransport(handler),
            clock=clock.monotonic,
            now=clock.time,
            policy=bb.ExponentialBackoff(seed=0, rate_limit_budget=7200.0),
            gate=bb.AccountGate(store=bb.MemoryStore(), seed=0),
        ) as api:
            try:
                if call == "paginate":
                    [item async for item in api.paginate("/things")]
                else:
                    await getattr(api, call)("/things")
            except Exception as error:  # noqa: BLE001 (the property is about what escapes)
                check_error(error)

    run_virtual(main(), clock)


# Found by an independent probe: an OSError from a transport of the caller's
# (httpx's own map theirs) escaped a client call as it was.
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_an_os_error_from_a_transport_is_a_network_error_retried_then_a_bitbucket_error(
    kind: str,
) -> None:
    clock = VirtualClock()
    calls: list[int] = []

    def flaky(_request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) < 3:
            raise OSError(f"network is unreachable ({TOKEN})")
        return httpx.Response(200, json={"ok": True})

    def down(_request: httpx.Request) -> httpx.Response:
        raise OSError("network is unreachable")

    options: dict[str, Any] = {
        "auth": bb.BearerToken(TOKEN),
        "clock": clock.monotonic,
        "now": clock.time,
        "policy": bb.ExponentialBackoff(seed=0),
        "gate": False,
    }
    if kind == "sync":
        options["sleep"] = clock.sleep
        with bb.BitbucketClient(transport=httpx.MockTransport(flaky), **options) as api:
            assert api.get("/user") == {"ok": True}
        with (
            bb.BitbucketClient(transport=httpx.MockTransport(down), **options) as api,
            pytest.raises(bb.RetriesExhausted) as caught,
        ):
            api.get("/user")
    else:

        async def main() -> Any:
            async with bb.AsyncBitbucketClient(
                transport=httpx.MockTransport(flaky), **options
            ) as api:
                assert await api.get("/user") == {"ok": True}
            async with bb.AsyncBitbucketClient(
                transport=httpx.MockTransport(down), **options
            ) as api:
                await api.get("/user")

        with pytest.raises(bb.RetriesExhausted) as caught:
            run_virtual(main(), clock)
    assert len(calls) == 3
    check_error(caught.value)
    assert isinstance(caught.value.__cause__, httpx.NetworkError)
