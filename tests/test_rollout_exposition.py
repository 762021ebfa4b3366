"""Reading a deployment's metrics: expositions made by the real prometheus-client.

The expositions come from a real ``CollectorRegistry`` that a
``PrometheusHook`` filled from real clients' requests (on virtual time),
written by prometheus-client's own ``generate_latest`` (text format and
OpenMetrics) and served by its own HTTP server; the parser is
prometheus-client's.
"""

from __future__ import annotations

import contextlib
import io
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

import bb_backoff as bb
from bb_backoff._rollout import (
    Between,
    Conclusion,
    ExpositionError,
    Series,
    Step,
    VariantCounts,
    VariantTally,
    _exposition,
    build_report,
    counts_between,
    counts_from_exposition,
    load_exposition,
    metrics_report,
    series_from_exposition,
)
from bb_backoff.instrumentation import PrometheusHook
from bb_backoff.testing import VirtualClock

SECRET = "scrape-SECRET"


def scripted(*responses: httpx.Response) -> Callable[[httpx.Request], httpx.Response]:
    """Answers in order, then 200s."""
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        return queue.pop(0) if queue else httpx.Response(200, json={})

    return handler


def traffic(hooks: list[object], rounds: int = 1) -> None:
    """Two projects import on virtual time; Flipper turns the flag on for Project:1 only.

    Per round, Project:1 (flag on, ExponentialBackoff): a 429 then a success,
    a 503 then a success, a 404.  Project:2 (flag off, FixedRetry: three
    attempts): three 429s (a give-up), a success, a 500 then a success.
    """
    clock = VirtualClock()
    flag = bb.FlipperFlag(actors=["Project:1"])
    scripts = {
        "Project:1": [
            httpx.Response(429),
            httpx.Response(200, json={}),
            httpx.Response(503),
            httpx.Response(200, json={}),
            httpx.Response(404),
        ],
        "Project:2": [httpx.Response(429)] * 3
        + [httpx.Response(200, json={}), httpx.Response(500), httpx.Response(200, json={})],
    }
    for actor, script in scripts.items():
        with bb.BitbucketClient(
            auth=bb.BearerToken(SECRET),
            actor=actor,
            flag=flag,
            transport=httpx.MockTransport(scripted(*script * rounds)),
            clock=clock.monotonic,
            now=clock.time,
            sleep=clock.sleep,
            policy=bb.ExponentialBackoff(seed=1),
            gate=bb.AccountGate(store=bb.MemoryStore(), seed=1),
            hooks=hooks,
        ) as api:
            for _ in range(3 * rounds):
                with contextlib.suppress(bb.BitbucketError):
                    api.get("/repositories/acme/app")


def scrape(rounds: int = 1) -> tuple[bytes, dict[str, VariantCounts]]:
    """An exposition of ``traffic``'s metrics, and what a tally on the same clients counted."""
    registry, tally = CollectorRegistry(), VariantTally()
    traffic([PrometheusHook(registry), tally], rounds)
    return generate_latest(registry), tally.counts()


def scrapes(*rounds: int) -> list[str]:
    """The expositions of one process (one registry) after each batch of ``traffic`` rounds."""
    registry = CollectorRegistry()
    taken = []
    for batch in rounds:
        traffic([PrometheusHook(registry)], batch)
        taken.append(generate_latest(registry).decode())
    return taken


def federated(*series: tuple[str, str, str, float]) -> str:
    """A /federate exposition of request counters: (instance, variant, outcome, value) each."""
    lines = ["# TYPE bb_backoff_requests_total untyped"]
    lines += [
        f'bb_backoff_requests_total{{instance="{instance}",job="importer",outcome="{outcome}",'
        f'variant="{variant}"}} {value}'
        for instance, variant, outcome, value in series
    ]
    return "\n".join(lines) + "\n"


# -- counts from an exposition --------------------------------------------------------


def test_an_exposition_gives_the_counts_the_clients_events_gave() -> None:
    exposition, tallied = scrape()
    counts = counts_from_exposition(exposition.decode())
    assert set(counts) == {"on", "off"}
    for variant in ("on", "off"):
        read, heard = counts[variant], tallied[variant]
        assert (read.requests, read.errors, read.give_ups, read.rate_limited, read.retries) == (
            heard.requests,
            heard.errors,
            heard.give_ups,
            heard.rate_limited,
            heard.retries,
        )
        assert read.wait_seconds == pytest.approx(heard.wait_seconds)
        assert read.duration_seconds == pytest.approx(heard.duration_seconds)
    assert counts["on"] == VariantCounts(
        requests=3,
        errors=1,
        give_ups=0,
        rate_limited=1,
        retries=2,
        wait_seconds=counts["on"].wait_seconds,
        duration_seconds=counts["on"].duration_seconds,
    )
    assert (counts["off"].requests, counts["off"].errors, counts["off"].give_ups) == (3, 1, 1)
    assert counts["off"].rate_limited == 2 + 1
    assert counts["off"].wait_seconds == pytest.approx(3.0)


def test_openmetrics_gives_the_same_counts_as_the_text_format() -> None:
    registry = CollectorRegistry()
    traffic([PrometheusHook(registry)])
    # prometheus-client's OpenMetrics writer carries no annotations.
    openmetrics: str = generate_openmetrics(registry).decode()  # type: ignore[no-untyped-call]
    assert openmetrics.rstrip().endswith("# EOF")
    assert counts_from_exposition(openmetrics) == counts_from_exposition(
        generate_latest(registry).decode()
    )


def test_samples_are_added_up_over_every_label_but_the_variant() -> None:
    """Prometheus' /federate: two importer instances, untyped samples with timestamps."""
    text = """\
# TYPE bb_backoff_requests_total untyped
bb_backoff_requests_total{instance="a",outcome="ok",variant="on"} 90 1700000000000
bb_backoff_requests_total{instance="b",outcome="ok",variant="on"} 100 1700000000000
bb_backoff_requests_total{instance="a",outcome="rate_limited",variant="on"} 4 1700000000000
bb_backoff_requests_total{instance="b",outcome="not_found",variant="on"} 6 1700000000000
bb_backoff_requests_total{instance="a",outcome="ok",variant="off"} 50 1700000000000
# TYPE bb_backoff_retries_total untyped
bb_backoff_retries_total{instance="a",reason="rate_limit",variant="on"} 7 1700000000000
bb_backoff_retries_total{instance="b",reason="server_error",variant="on"} 2 1700000000000
# TYPE bb_backoff_gate_changes_total untyped
bb_backoff_gate_changes_total{instance="a",mode="probe"} 3 1700000000000
"""
    counts = counts_from_exposition(text)
    assert counts == {
        "on": VariantCounts(requests=200, errors=10, rate_limited=4 + 7, retries=9),
        "off": VariantCounts(requests=50),
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("this is { not an exposition\n", "the exposition is not a Prometheus exposition"),
        (
            "# TYPE up gauge\nup 1\n",
            (
                "the exposition has no bb_backoff_requests_total samples: is it the /metrics of "
                "a process whose clients have PrometheusHook"
            ),
        ),
        (
            '# TYPE bb_backoff_requests_total counter\nbb_backoff_requests_total{outcome="ok"} 1\n',
            "the exposition: bb_backoff_requests_total has a sample without a variant",
        ),
        (
            (
                "# TYPE bb_backoff_requests_total counter\n"
                'bb_backoff_requests_total{outcome="ok",variant="on"} NaN\n'
            ),
            "bb_backoff_requests_total{variant='on'} is nan, not a count",
        ),
        (
            (
                "# TYPE bb_backoff_wait_seconds_total counter\n"
                'bb_backoff_wait_seconds_total{variant="on"} -2\n'
            ),
            "bb_backoff_wait_seconds_total{variant='on'} is -2.0, not a count",
        ),
    ],
    ids=["garbage", "not ours", "no variant", "nan", "negative"],
)
def test_an_exposition_that_is_not_ours_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ExpositionError) as raised:
        counts_from_exposition(text)
    assert message in str(raised.value)


# -- two scrapes ----------------------------------------------------------------------


def test_two_scrapes_give_what_happened_between_them() -> None:
    before, after = scrapes(1, 2)
    between = counts_between(series_from_exposition(before), series_from_exposition(after))
    assert {v: (c.requests, c.errors, c.give_ups) for v, c in between.counts.items()} == {
        "on": (6, 2, 0),
        "off": (6, 2, 2),
    }
    assert (between.resets, between.gone) == (0, 0)


def test_a_variant_that_did_nothing_between_the_scrapes_is_left_out() -> None:
    earlier = federated(("a", "on", "ok", 5), ("a", "off", "ok", 8), ("a", "off", "not_found", 1))
    later = federated(("a", "on", "ok", 5), ("a", "off", "ok", 18), ("a", "off", "not_found", 1))
    between = counts_between(series_from_exposition(earlier), series_from_exposition(later))
    assert between == Between(counts={"off": VariantCounts(requests=10)})


def test_a_counter_that_went_down_restarted_and_counts_its_later_value() -> None:
    """As Prometheus' increase(): a restarted process's counter counted from zero again."""
    earlier = federated(("a", "on", "ok", 50), ("a", "on", "not_found", 5))
    later = federated(("a", "on", "ok", 58), ("a", "on", "not_found", 2))
    between = counts_between(series_from_exposition(earlier), series_from_exposition(later))
    assert between == Between(counts={"on": VariantCounts(requests=8 + 2, errors=2)}, resets=1)


def test_one_process_restarting_among_several_is_seen_series_by_series() -> None:
    """Federation: importer a restarts, b goes on; the sums over both still grow.

    Subtracted after adding up, the flag's cohort made 1,050 - 1,010 = 40
    requests, 1,000 of them errors; series by series, a made 5 since its
    restart and b 10 requests and 1,000 errors: 1,015 and 1,000.
    """
    earlier = federated(("a", "on", "ok", 1000), ("b", "on", "ok", 10), ("a", "off", "ok", 10))
    later = federated(
        ("a", "on", "ok", 5),
        ("b", "on", "ok", 20),
        ("b", "on", "retries_exhausted", 1000),
        ("a", "off", "ok", 20),
    )
    between = counts_between(series_from_exposition(earlier), series_from_exposition(later))
    assert between == Between(
        counts={
            "on": VariantCounts(requests=1015, errors=1000),
            "off": VariantCounts(requests=10),
        },
        resets=1,
    )


def test_a_restart_is_seen_by_the_created_time_when_the_counters_grew_past_it() -> None:
    """A process that restarted and made more requests since than it had before the step.

    Its counters went up, but prometheus-client's ``_created`` samples
    changed: it counts its later values whole.
    """
    (earlier,) = scrapes(1)
    (later,) = scrapes(3)
    between = counts_between(series_from_exposition(earlier), series_from_exposition(later))
    assert {v: (c.requests, c.errors) for v, c in between.counts.items()} == {
        "on": (9, 3),
        "off": (9, 3),
    }
    assert between.resets == len(series_from_exposition(earlier).values)
    assert between.gone == 0


def test_a_series_new_in_the_later_scrape_counts_whole_and_one_gone_is_counted() -> None:
    earlier = federated(("a", "on", "ok", 50), ("b", "on", "ok", 7))
    later = federated(("a", "on", "ok", 60), ("c", "on", "not_found", 4))
    between = counts_between(series_from_exposition(earlier), series_from_exposition(later))
    assert between == Between(counts={"on": VariantCounts(requests=14, errors=4)}, gone=1)


_request_series = st.dictionaries(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from(["on", "off"]),
        st.sampled_from(["ok", "rate_limited", "not_found"]),
    ),
    st.integers(min_value=0, max_value=10**6) | st.floats(min_value=0, max_value=1e12),
)


def _series(values: dict[tuple[str, str, str], float]) -> Series:
    """Request counters by (instance, variant, outcome), as series_from_exposition keys them."""
    return Series(
        values={
            (
                "bb_backoff_requests_total",
                (("instance", instance), ("outcome", outcome), ("variant", variant)),
            ): value
            for (instance, variant, outcome), value in values.items()
        }
    )


@given(_request_series, _request_series)
def test_no_two_scrapes_give_more_errors_than_requests_or_a_report_that_raises(
    earlier: dict[tuple[str, str, str], float], later: dict[tuple[str, str, str], float]
) -> None:
    """Whatever restarted, each variant's errors are some of its requests: the report is made."""
    between = counts_between(_series(earlier), _series(later))
    assert all(counted.errors <= counted.requests for counted in between.counts.values())
    build_report("two scrapes", [Step(label="metrics", percentage=None, counts=between.counts)])


# -- where the text comes from --------------------------------------------------------


def test_load_exposition_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "metrics.prom"
    path.write_bytes(b"# TYPE up gauge\nup 1\n")
    assert load_exposition(str(path)) == "# TYPE up gauge\nup 1\n"


def test_load_exposition_reads_standard_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"up 1\n")))
    assert load_exposition("-") == "up 1\n"


def test_load_exposition_says_why_a_file_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(ExpositionError, match=r"cannot read .*missing\.prom: No such file"):
        load_exposition(str(tmp_path / "missing.prom"))
    binary = tmp_path / "metrics.bin"
    binary.write_bytes(b"\xff\xfe up 1")
    with pytest.raises(ExpositionError, match=r"metrics\.bin is not UTF-8 text"):
        load_exposition(str(binary))


def test_load_exposition_refuses_a_text_too_large(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_exposition, "MAX_BYTES", 8)
    path = tmp_path / "big.prom"
    path.write_bytes(b"up 1\n" * 4)
    with pytest.raises(ExpositionError, match="is larger than 8 bytes"):
        load_exposition(str(path))


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, bytes]]:
    """prometheus-client's own HTTP server, on port 0, serving 40 rounds of ``traffic``'s metrics.

    With it, a scrape of the same registry taken after the first 10 rounds.
    """
    registry = CollectorRegistry()
    traffic([PrometheusHook(registry)], rounds=10)
    step_began = generate_latest(registry)
    traffic([PrometheusHook(registry)], rounds=30)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    yield f"http://127.0.0.1:{server.server_address[1]}/metrics", step_began
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(scope="module")
def prometheus_endpoint(served: tuple[str, bytes]) -> str:
    """The URL of the served metrics."""
    return served[0]


class _Errors(BaseHTTPRequestHandler):
    """Answers every GET with the status its path names: /status/404 -> 404."""

    def do_GET(self) -> None:
        status = int(self.path.rsplit("/", 1)[-1])
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base's name)
        pass


@pytest.fixture(scope="module")
def error_endpoint() -> Iterator[str]:
    """A real HTTP server, on port 0, that answers the status the path asks for."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Errors)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_metrics_report_reads_a_live_metrics_endpoint(prometheus_endpoint: str) -> None:
    """40 rounds: the flag's cohort errs 40 of 120, the legacy one 40 of 120: no increase."""
    report = metrics_report(prometheus_endpoint)
    assert [(row.variant, row.requests, row.errors) for row in report.rows] == [
        ("on", 120, 40),
        ("off", 120, 40),
    ]
    assert report.verdict.conclusion is Conclusion.NO_INCREASE
    assert report.source.startswith(f"Metrics of a deployment, read from {prometheus_endpoint}:")
    assert "pass --since with a scrape taken when the step began" in report.source


def test_metrics_report_since_an_earlier_scrape_covers_only_the_step(
    served: tuple[str, bytes], tmp_path: Path
) -> None:
    url, step_began = served
    earlier = tmp_path / "step-began.prom"
    earlier.write_bytes(step_began)
    report = metrics_report(url, since=str(earlier))
    assert [(row.variant, row.requests, row.errors) for row in report.rows] == [
        ("on", 90, 30),
        ("off", 90, 30),
    ]
    assert "since the earlier scrape" in report.source
    assert "restarted" not in report.source


def test_metrics_report_says_how_many_series_restarted_or_went_away(tmp_path: Path) -> None:
    earlier, later = tmp_path / "earlier.prom", tmp_path / "later.prom"
    earlier.write_text(
        federated(("a", "on", "ok", 1000), ("a", "on", "not_found", 3), ("b", "off", "ok", 10))
    )
    later.write_text(federated(("a", "on", "ok", 5), ("b", "off", "ok", 20)))
    report = metrics_report(str(later), since=str(earlier))
    assert [(row.variant, row.requests, row.errors) for row in report.rows] == [
        ("on", 5, 0),
        ("off", 10, 0),
    ]
    assert (
        "1 series counted from zero again in between (a process restarted): the later "
        "scrape's value counts whole for each" in report.source
    )
    assert "1 series of the earlier scrape is not in the later one" in report.source


def test_an_error_status_is_reported_without_the_urls_secret(error_endpoint: str) -> None:
    url = f"http://scraper:{SECRET}@{error_endpoint}/status/404"
    with pytest.raises(ExpositionError) as raised:
        load_exposition(url)
    assert str(raised.value) == f"http://{error_endpoint}/status/404 answered HTTP 404"
    assert SECRET not in repr(raised.value)


def test_an_unreachable_url_is_reported_with_the_reason() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(
        ExpositionError, match=rf"cannot fetch http://127\.0\.0\.1:{port}/metrics: "
    ):
        load_exposition(f"http://127.0.0.1:{port}/metrics", timeout=5)
