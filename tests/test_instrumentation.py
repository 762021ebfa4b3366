"""Instrumentation (bb_backoff.instrumentation): hooks, log records, Prometheus, OpenTelemetry.

The exporters are tested against the real prometheus-client and the real
OpenTelemetry SDK (an in-memory metric reader), on virtual time.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry

import bb_backoff as bb
from bb_backoff.instrumentation import (
    GateChanged,
    GaveUp,
    Hooks,
    OpenTelemetryHook,
    PrometheusHook,
    RequestFinished,
    RetryEvent,
    event_fields,
)
from bb_backoff.instrumentation._hooks import DURATION_BUCKETS
from bb_backoff.testing import VirtualClock, run_virtual

BASE = "https://api.bitbucket.org/2.0"
TOKEN = "instrumented-SECRET"
ACTOR = "Project:4242"


class Recorder:
    """A hook with every method: keeps what it heard."""

    def __init__(self) -> None:
        self.events: list[object] = []

    def on_retry(self, event: RetryEvent) -> None:
        self.events.append(event)

    def on_request(self, event: RequestFinished) -> None:
        self.events.append(event)

    def on_give_up(self, event: GaveUp) -> None:
        self.events.append(event)

    def on_gate(self, event: GateChanged) -> None:
        self.events.append(event)

    def of(self, kind: type) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]


def scripted(*responses: httpx.Response) -> Callable[[httpx.Request], httpx.Response]:
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        return queue.pop(0) if queue else httpx.Response(200, json={"ok": True})

    return handler


def own_gate(**options: Any) -> bb.AccountGate:
    """A gate of the test's own, whose breaker opens only after more errors in a row
    than one request's five attempts: a run of errors makes that request give up
    (with the breaker open, it would wait for the account's outage to end)."""
    return bb.AccountGate(store=bb.MemoryStore(), seed=1, failure_threshold=6, **options)


def client(
    handler: Callable[[httpx.Request], httpx.Response], clock: VirtualClock, **options: Any
) -> bb.BitbucketClient:
    options.setdefault("gate", own_gate())
    return bb.BitbucketClient(
        auth=bb.BearerToken(TOKEN),
        actor=ACTOR,
        transport=httpx.MockTransport(handler),
        clock=clock.monotonic,
        now=clock.time,
        sleep=clock.sleep,
        policy=bb.ExponentialBackoff(seed=1),
        **options,
    )


def test_a_hook_hears_every_retry_finished_request_and_give_up() -> None:
    clock = VirtualClock()
    recorder = Recorder()
    answers = scripted(
        httpx.Response(503), httpx.Response(200, json={}), *[httpx.Response(500)] * 5
    )
    with client(answers, clock, hooks=[recorder]) as api:
        api.get("/repositories/acme/app/pullrequests/7/comments?page=2")
        with pytest.raises(bb.RetriesExhausted):
            api.get("/user")
    finished = recorder.of(RequestFinished)
    assert [(e.outcome, e.attempts, e.status) for e in finished] == [
        ("ok", 2, 200),
        ("retries_exhausted", 5, 500),
    ]
    assert (
        finished[0].endpoint == "/repositories/{workspace}/{repo_slug}/pullrequests/{id}/comments"
    )
    assert finished[0].variant == "on"
    assert finished[0].waited == pytest.approx(clock.sleeps[0])
    assert [e.reason for e in recorder.of(GaveUp)] == ["attempts"]
    assert len(recorder.of(RetryEvent)) == 1 + 4


def test_a_hook_hears_the_gate_change_mode() -> None:
    clock = VirtualClock()
    recorder = Recorder()
    answers = scripted(
        httpx.Response(200, json={}),
        httpx.Response(200, json={}),
        httpx.Response(429, headers={"Retry-After": "1"}),
    )
    gate = bb.AccountGate(store=bb.MemoryStore(), limit=5, seed=1)
    with client(answers, clock, hooks=[recorder], gate=gate) as api:
        for _ in range(4):
            api.get("/user")
    changes = [(e.previous, e.mode, e.limit) for e in recorder.of(GateChanged)]
    # The 429 after two sends teaches 2, and its hint sends the gate probing;
    # the probe let through shows 3 fit.
    assert changes == [("model", "probe", 2), ("probe", "model", 3)]


def test_a_hook_needs_only_the_methods_it_wants_and_one_that_raises_fails_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class OnlyGiveUps:
        def __init__(self) -> None:
            self.heard: list[GaveUp] = []

        def on_give_up(self, event: GaveUp) -> None:
            self.heard.append(event)

    class Broken:
        def on_request(self, event: RequestFinished) -> None:
            raise RuntimeError("metrics backend down")

    clock = VirtualClock()
    only = OnlyGiveUps()
    with (
        caplog.at_level(logging.ERROR, logger="bb_backoff"),
        client(scripted(), clock, hooks=[only, Broken()]) as api,
    ):
        assert api.get("/user") == {"ok": True}
    assert only.heard == []
    assert any("hook raised" in r.getMessage() for r in caplog.records)


def test_a_raising_hook_or_on_retry_is_logged_with_a_traceback_scrubbed_of_the_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = bb.BearerToken("hook-SECRET-token")

    class Quoting:
        def on_request(self, event: RequestFinished) -> None:
            raise RuntimeError(f"exporter refused {token.token}")

    def on_retry(_event: RetryEvent) -> None:
        raise RuntimeError(f"callback saw {token.token}")

    clock = VirtualClock()
    transport = httpx.MockTransport(scripted(httpx.Response(503)))
    with (
        caplog.at_level(logging.ERROR, logger="bb_backoff"),
        bb.BitbucketClient(
            auth=token,
            transport=transport,
            hooks=[Quoting()],
            on_retry=on_retry,
            clock=clock.monotonic,
            now=clock.time,
            sleep=clock.sleep,
        ) as api,
    ):
        assert api.get("/user") == {"ok": True}
    assert "exporter refused [redacted]" in caplog.text
    assert "callback saw [redacted]" in caplog.text
    assert token.token not in caplog.text


@pytest.mark.parametrize("hooks", [[object()], "hook", 5])
def test_something_that_is_not_a_hook_is_refused(hooks: Any) -> None:
    with pytest.raises(ValueError, match="hooks"):
        bb.BitbucketClient(hooks=hooks)


class _AsyncOnRequest:
    """A hook whose on_request is async: its coroutine was dropped, never awaited."""

    def on_retry(self, event: RetryEvent) -> None: ...

    async def on_request(self, event: RequestFinished) -> None: ...


class _AsyncCallable:
    async def __call__(self, event: object) -> None: ...


class _AsyncCallableOnGate:
    """A hook whose on_gate is an object with an async ``__call__``."""

    def __init__(self) -> None:
        self.on_gate = _AsyncCallable()


@pytest.mark.parametrize(
    ("hook", "method"),
    [
        (_AsyncOnRequest(), "_AsyncOnRequest.on_request"),
        (_AsyncCallableOnGate(), "_AsyncCallableOnGate.on_gate"),
    ],
)
@pytest.mark.parametrize(
    "make",
    [
        lambda hooks: bb.BitbucketClient(hooks=hooks),
        lambda hooks: bb.AsyncBitbucketClient(hooks=hooks),
        lambda hooks: bb.RetryTransport(hooks=hooks),
    ],
    ids=["sync", "async", "transport"],
)
def test_an_async_hook_method_is_refused_at_construction_naming_the_hook_and_method(
    hook: object, method: str, make: Callable[[list[object]], object]
) -> None:
    """Both clients (and the transport) call hook methods without await: events lost.

    Before, the async client took ``async def on_request`` and dropped its
    coroutine on every request ("coroutine ... was never awaited").
    """
    with pytest.raises(TypeError, match=rf"^hooks: {re.escape(method)} is async"):
        make([hook])


def test_without_listeners_no_request_event_is_built() -> None:
    """The success path stays lean: nobody listens, nothing is built."""
    assert not Hooks().observe_requests()
    assert Hooks([Recorder()]).observe_requests()


def test_log_records_carry_the_event_fields_as_extra(caplog: pytest.LogCaptureFixture) -> None:
    clock = VirtualClock()
    with (
        caplog.at_level(logging.DEBUG, logger="bb_backoff"),
        client(scripted(httpx.Response(503), *[httpx.Response(404)]), clock) as api,
        pytest.raises(bb.NotFound),
    ):
        api.get("/repositories/acme/app")
    records = {getattr(r, "bb_backoff_event", None): r for r in caplog.records}
    finished = records["RequestFinished"]
    assert (finished.variant, finished.outcome, finished.endpoint) == (  # type: ignore[attr-defined]
        "on",
        "not_found",
        "/repositories/{workspace}/{repo_slug}",
    )
    retry = records["RetryEvent"]
    assert (retry.reason, retry.status, retry.attempt) == ("server_error", 503, 1)  # type: ignore[attr-defined]
    for record in caplog.records:
        assert TOKEN not in record.getMessage()
        assert TOKEN not in repr(record.__dict__)


def test_event_fields_are_flat_and_name_the_event() -> None:
    event = GaveUp("on", "/user", "GET", 503, 5, 12.5, 30.0, "attempts", "retries_exhausted")
    assert event_fields(event) == {
        "variant": "on",
        "endpoint": "/user",
        "method": "GET",
        "status": 503,
        "attempts": 5,
        "waited": 12.5,
        "elapsed": 30.0,
        "reason": "attempts",
        "outcome": "retries_exhausted",
        "bb_backoff_event": "GaveUp",
    }


# -- Prometheus -------------------------------------------------------------------------------


def run_mixed_traffic(hooks: list[object], *, flag: bool) -> None:
    clock = VirtualClock()
    answers = scripted(
        httpx.Response(429, headers={"Retry-After": "3"}),
        httpx.Response(200, json={}),
        *[httpx.Response(502)] * 5,
    )
    with client(answers, clock, hooks=hooks, flag=flag) as api:
        api.get("/user")
        with pytest.raises(bb.RetriesExhausted):
            api.get("/user")
        api.get("/user")


def test_prometheus_counts_requests_retries_give_ups_and_waits_by_variant() -> None:
    registry = CollectorRegistry()
    run_mixed_traffic([PrometheusHook(registry)], flag=True)

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("bb_backoff_requests_total", variant="on", outcome="ok") == 2
    assert value("bb_backoff_requests_total", variant="on", outcome="retries_exhausted") == 1
    assert value("bb_backoff_retries_total", variant="on", reason="rate_limit") == 1
    assert value("bb_backoff_retries_total", variant="on", reason="server_error") == 4
    assert value("bb_backoff_give_ups_total", variant="on", reason="attempts") == 1
    waited = value("bb_backoff_wait_seconds_total", variant="on")
    assert waited is not None
    assert waited >= 3.0
    assert value("bb_backoff_request_duration_seconds_count", variant="on") == 3


def test_prometheus_labels_never_carry_a_url_an_actor_or_a_secret() -> None:
    registry = CollectorRegistry()
    run_mixed_traffic([PrometheusHook(registry)], flag=False)
    for metric in registry.collect():
        for sample in metric.samples:
            for label in sample.labels.values():
                assert "/" not in label
                assert ACTOR not in label
                assert TOKEN not in label
    assert (
        registry.get_sample_value("bb_backoff_requests_total", {"variant": "off", "outcome": "ok"})
        == 2
    )


def test_two_prometheus_hooks_on_one_registry_share_its_metrics() -> None:
    registry = CollectorRegistry()
    first, second = PrometheusHook(registry), PrometheusHook(registry)
    run_mixed_traffic([first], flag=True)
    run_mixed_traffic([second], flag=True)
    assert (
        registry.get_sample_value("bb_backoff_requests_total", {"variant": "on", "outcome": "ok"})
        == 4
    )


# -- OpenTelemetry ----------------------------------------------------------------------------


@pytest.mark.parametrize("registry", ["registry", 5, object(), MeterProvider()])
def test_prometheus_refuses_a_registry_that_is_not_one_naming_it(registry: object) -> None:
    """Before: a TypeError about weak references, or an AttributeError, naming nothing."""
    with pytest.raises(
        TypeError, match=r"^registry must be a prometheus_client\.CollectorRegistry"
    ):
        PrometheusHook(registry)  # type: ignore[arg-type]


@pytest.mark.parametrize("provider", [5, "provider", CollectorRegistry()])
def test_opentelemetry_refuses_a_meter_provider_that_is_not_one_naming_it(
    provider: object,
) -> None:
    """Before: AttributeError: 'int' object has no attribute 'get_meter'."""
    with pytest.raises(TypeError, match=r"^meter_provider must be an OpenTelemetry MeterProvider"):
        OpenTelemetryHook(provider)  # type: ignore[arg-type]


def test_opentelemetry_records_the_same_instruments() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    run_mixed_traffic([OpenTelemetryHook(provider)], flag=True)
    data = reader.get_metrics_data()
    assert data is not None
    points: dict[str, dict[tuple[tuple[str, Any], ...], Any]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    key = tuple(sorted((point.attributes or {}).items()))
                    points.setdefault(metric.name, {})[key] = point
    requests = points["bb_backoff.requests"]
    assert requests[(("outcome", "ok"), ("variant", "on"))].value == 2
    assert requests[(("outcome", "retries_exhausted"), ("variant", "on"))].value == 1
    assert points["bb_backoff.retries"][(("reason", "server_error"), ("variant", "on"))].value == 4
    assert points["bb_backoff.give_ups"][(("reason", "attempts"), ("variant", "on"))].value == 1
    duration = points["bb_backoff.request.duration"][(("variant", "on"),)]
    assert duration.count == 3
    # Seconds, as Prometheus's: the SDK's default bounds (0, 5, 10, ... 10,000)
    # are sized for milliseconds and put every request under 5 s in one bucket.
    assert tuple(duration.explicit_bounds) == DURATION_BUCKETS


def test_the_async_client_and_the_transport_report_to_hooks_too() -> None:
    clock = VirtualClock()
    recorder = Recorder()

    async def main() -> None:
        async with bb.AsyncBitbucketClient(
            transport=httpx.MockTransport(scripted(httpx.Response(503))),
            clock=clock.monotonic,
            now=clock.time,
            hooks=[recorder],
        ) as api:
            await api.get("/user")

    run_virtual(main(), clock)
    transport = bb.RetryTransport(
        httpx.MockTransport(scripted(httpx.Response(503))),
        clock=clock.monotonic,
        now=clock.time,
        sleep=clock.sleep,
        hooks=[recorder],
    )
    with httpx.Client(transport=transport) as plain:
        plain.get(f"{BASE}/user")
    assert [e.outcome for e in recorder.of(RequestFinished)] == ["ok", "ok"]
    assert len(recorder.of(RetryEvent)) == 2
