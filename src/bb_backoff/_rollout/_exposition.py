"""Reading a deployment's metrics: a Prometheus exposition of this library's counters.

:func:`counts_from_exposition` turns the text a process serves on its
``/metrics`` endpoint (Prometheus' text format, or OpenMetrics) into
:class:`VariantCounts` per flag variant, with prometheus-client's own parser
(imported only here; ``pip install 'bb-backoff[prometheus]'``).  It reads
the metrics :class:`~bb_backoff.instrumentation.PrometheusHook` writes, and
those OpenTelemetry's Prometheus exporter makes of
:class:`~bb_backoff.instrumentation.OpenTelemetryHook`'s instruments (the
same names):

- ``bb_backoff_requests_total{variant, outcome}``: requests; an outcome
  other than ``"ok"`` is an error, ``"rate_limited"`` also a 429;
- ``bb_backoff_retries_total{variant, reason}``: retries; reason
  ``"rate_limit"`` is a 429;
- ``bb_backoff_give_ups_total{variant, reason}``: give-ups;
- ``bb_backoff_wait_seconds_total{variant}``: seconds waited;
- ``bb_backoff_request_duration_seconds_sum{variant}``: seconds of requests.

Samples are added up by variant over any other label (``instance``,
``job``, ...), so a federated or aggregated exposition works too.  Counters
count since their process started: one scrape covers the processes' life,
not one rollout step.  Two scrapes do: :func:`counts_between` subtracts a
scrape taken when the step began from one taken at its end (``--since``).

:func:`load_exposition` fetches the text from a file, standard input
(``-``) or an http(s) URL (with httpx); both raise :class:`ExpositionError`
with a message fit for a person, never another exception.
"""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import httpx

from .._exceptions import printable, redact_url
from ._counts import RATE_LIMITED, VariantCounts
from ._report import Report, Step, build_report
from ._stats import DEFAULT_ALPHA

MAX_BYTES: Final = 64 * 1024 * 1024
"""The largest exposition read, in bytes (a real one is kilobytes)."""
DEFAULT_TIMEOUT: Final = 10.0
"""Seconds to wait for a metrics URL."""
STEP_LABEL: Final = "metrics"
"""The label of the one step a deployment's metrics make."""
REQUESTS: Final = "bb_backoff_requests_total"
"""The sample that says how many requests each variant made."""

_OK: Final = "ok"
_RATE_LIMIT: Final = "rate_limit"
_ACCEPT: Final = "text/plain;version=0.0.4;q=1, application/openmetrics-text;q=0.5, */*;q=0.1"


class ExpositionError(ValueError):
    """The metrics could not be read: no such file, an unreachable URL, a malformed text."""


def _parse(text: str) -> list[Any]:
    """The metric families in ``text``, by the parser of its format."""
    # prometheus-client is an optional dependency, imported only here.
    from prometheus_client import parser  # noqa: PLC0415
    from prometheus_client.openmetrics import parser as openmetrics  # noqa: PLC0415

    # OpenMetrics ends with "# EOF"; the text format has no such line.
    module: Any = openmetrics if text.rstrip().endswith("# EOF") else parser
    return list(module.text_string_to_metric_families(text))


def counts_from_exposition(text: str, source: str = "the exposition") -> dict[str, VariantCounts]:
    """The counts of each flag variant in a Prometheus exposition of this library's metrics.

    Args:
        text: the exposition (Prometheus text format 0.0.4, or OpenMetrics).
        source: where it came from, for error messages.

    Returns:
        The counts by variant (``"on"``, ``"off"``), in the order the
        variants first appear.

    Raises:
        ExpositionError: the text is not an exposition, a sample of ours
            has no ``variant`` label or a value that is not a finite,
            non-negative number, or there is no ``bb_backoff_requests_total``
            sample at all.
        ModuleNotFoundError: prometheus-client is not installed.
    """
    try:
        families = _parse(text)
    except (ValueError, TypeError, IndexError, KeyError) as error:
        raise ExpositionError(
            f"{source} is not a Prometheus exposition: {printable(str(error), 200)}"
        ) from None
    sums: defaultdict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    seen_requests = False
    for family in families:
        for sample in family.samples:
            fields = _fields(sample.name, sample.labels)
            if not fields:
                continue
            variant = sample.labels.get("variant")
            if not variant:
                raise ExpositionError(f"{source}: {sample.name} has a sample without a variant")
            value = float(sample.value)
            if not math.isfinite(value) or value < 0:
                raise ExpositionError(
                    f"{source}: {sample.name}{{variant={variant!r}}} is {value!r}, "
                    "not a count or a number of seconds"
                )
            seen_requests |= sample.name == REQUESTS
            for field in fields:
                sums[variant][field] += value
    if not seen_requests:
        raise ExpositionError(
            f"{source} has no {REQUESTS} samples: is it the /metrics of a process whose "
            "clients have PrometheusHook (or OpenTelemetryHook with a Prometheus exporter)?"
        )
    return {variant: _counts(fields) for variant, fields in sums.items()}


def _fields(name: str, labels: dict[str, str]) -> tuple[str, ...]:
    """Which :class:`VariantCounts` fields a sample adds to (none: not one of ours)."""
    if name == REQUESTS:
        outcome = labels.get("outcome")
        if outcome == _OK:
            return ("requests",)
        if outcome == RATE_LIMITED:
            return ("requests", "errors", "rate_limited")
        return ("requests", "errors")
    if name == "bb_backoff_retries_total":
        if labels.get("reason") == _RATE_LIMIT:
            return ("retries", "rate_limited")
        return ("retries",)
    return {
        "bb_backoff_give_ups_total": ("give_ups",),
        "bb_backoff_wait_seconds_total": ("wait_seconds",),
        "bb_backoff_request_duration_seconds_sum": ("duration_seconds",),
    }.get(name, ())


def _counts(fields: dict[str, float]) -> VariantCounts:
    # Counters are floats in the format; an aggregated one (an increase()) may
    # not be whole: counts are rounded, seconds kept.
    def count(name: str) -> int:
        return round(fields.get(name, 0.0))

    return VariantCounts(
        requests=count("requests"),
        errors=count("errors"),
        give_ups=count("give_ups"),
        rate_limited=count("rate_limited"),
        retries=count("retries"),
        wait_seconds=fields.get("wait_seconds", 0.0),
        duration_seconds=fields.get("duration_seconds", 0.0),
    )


_COUNT_FIELDS: Final = ("requests", "errors", "give_ups", "rate_limited", "retries")
_SECONDS_FIELDS: Final = ("wait_seconds", "duration_seconds")


def counts_between(
    earlier: Mapping[str, VariantCounts],
    later: Mapping[str, VariantCounts],
    source: str = "the metrics",
) -> dict[str, VariantCounts]:
    """What each variant did between two scrapes: ``later`` minus ``earlier``.

    Args:
        earlier: the counts of the scrape taken when the step began.
        later: the counts of a scrape taken later, of the same processes.
        source: what was scraped, for error messages.

    Returns:
        The difference by variant, in ``later``'s order; a variant that did
        nothing in between is left out.

    Raises:
        ExpositionError: a counter went down (a process restarted between
            the scrapes, or the scrapes are of different processes).
    """
    between: dict[str, VariantCounts] = {}
    for variant, now in later.items():
        then = earlier.get(variant, VariantCounts())
        changes: dict[str, Any] = {}
        for field in (*_COUNT_FIELDS, *_SECONDS_FIELDS):
            change = getattr(now, field) - getattr(then, field)
            # Seconds are sums of floats: forgive a rounding error, never a reset.
            if change < (0 if field in _COUNT_FIELDS else -1e-6):
                raise ExpositionError(
                    f"{source}: {field} of the flag {variant} went down between the two "
                    f"scrapes ({getattr(then, field):g} to {getattr(now, field):g}): a process "
                    "restarted, or they are not of the same processes; take a new earlier scrape"
                )
            changes[field] = max(change, 0)
        counts = VariantCounts(**changes)
        if counts != VariantCounts():
            between[variant] = counts
    for variant, then in earlier.items():
        if variant not in later and then.requests:
            raise ExpositionError(
                f"{source}: the flag {variant} has requests in the earlier scrape and none "
                "in the later one: a process restarted, or they are not of the same processes"
            )
    return between


def _is_url(source: str) -> bool:
    return source.lower().startswith(("http://", "https://"))


def load_exposition(source: str, *, timeout: float = DEFAULT_TIMEOUT) -> str:
    """The text of an exposition: from an http(s) URL, a file, or standard input (``"-"``).

    Args:
        source: ``http(s)://...`` (fetched with httpx, redirects followed),
            ``-`` for standard input, or a file path.
        timeout: seconds to wait for a URL.

    Returns:
        The text, decoded (UTF-8 for a file or standard input; the
        response's charset for a URL).

    Raises:
        ExpositionError: the file cannot be read, the URL cannot be
            fetched or answers an error status, the text is larger than
            :data:`MAX_BYTES`, or a file is not UTF-8.  The message never
            shows a URL's credentials.
    """
    if _is_url(source):
        return _fetch(source, timeout)
    name = shown_source(source)
    if source == "-":
        data = sys.stdin.buffer.read(MAX_BYTES + 1)
    else:
        try:
            with Path(source).open("rb") as file:
                data = file.read(MAX_BYTES + 1)
        except OSError as error:
            reason = error.strerror or type(error).__name__
            raise ExpositionError(f"cannot read {name}: {reason}") from None
    if len(data) > MAX_BYTES:
        raise ExpositionError(f"{name} is larger than {MAX_BYTES:,} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ExpositionError(f"{name} is not UTF-8 text") from None


def _fetch(url: str, timeout: float) -> str:
    shown = redact_url(url)
    try:
        with (
            httpx.Client(timeout=timeout, follow_redirects=True) as client,
            client.stream("GET", url, headers={"Accept": _ACCEPT}) as response,
        ):
            if response.status_code >= 400:  # noqa: PLR2004
                raise ExpositionError(f"{shown} answered HTTP {response.status_code}")
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_BYTES:
                    raise ExpositionError(f"{shown} sent more than {MAX_BYTES:,} bytes")
            encoding = response.encoding or "utf-8"
    except httpx.TransportError as error:
        # The OS's reason ("Connection refused") names no URL, so no secret.
        reason = printable(str(error), 200)
        detail = f"{type(error).__name__}: {reason}" if reason else type(error).__name__
        raise ExpositionError(f"cannot fetch {shown}: {detail}") from None
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        raise ExpositionError(f"cannot fetch {shown}: {type(error).__name__}") from None
    try:
        return bytes(body).decode(encoding)
    except (UnicodeDecodeError, LookupError):
        raise ExpositionError(f"{shown} sent text that is not {encoding}") from None


def shown_source(source: str) -> str:
    """``source`` as reports and messages show it: a URL without secrets, a path as given."""
    if _is_url(source):
        return redact_url(source)
    return "standard input" if source == "-" else printable(source, 200)


def metrics_report(
    source: str,
    *,
    since: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    alpha: float = DEFAULT_ALPHA,
) -> Report:
    """The rollout report of a deployment's metrics: one step, its variants, one verdict.

    Args:
        source: an http(s) URL, a file path, or ``-`` for standard input.
        since: an earlier scrape of the same processes (a URL or a file),
            taken when the step began: the report covers what happened
            since.  Without it, the counters' whole life.
        timeout: seconds to wait for a URL.
        alpha: the significance level of the verdict.

    Raises:
        ExpositionError: the metrics cannot be read (see :func:`load_exposition`
            and :func:`counts_from_exposition`), or a counter went down
            since ``since`` (see :func:`counts_between`).
        ModuleNotFoundError: prometheus-client is not installed.
    """
    shown = shown_source(source)
    earlier = None
    if since is not None:
        shown_since = shown_source(since)
        earlier = counts_from_exposition(load_exposition(since, timeout=timeout), shown_since)
    counts = counts_from_exposition(load_exposition(source, timeout=timeout), shown)
    if earlier is None:
        window = (
            "They count since each process started: the rows cover the processes' lifetime, "
            "not one rollout step (pass --since with a scrape taken when the step began)."
        )
    else:
        counts = counts_between(earlier, counts, f"{shown_since} and {shown}")
        window = f"The rows cover what happened since the earlier scrape, {shown_since}."
    description = (
        f"Metrics of a deployment, read from {shown}: this library's Prometheus counters, "
        f"added up over every label but the variant. {window}"
    )
    return build_report(
        description, [Step(label=STEP_LABEL, percentage=None, counts=counts)], alpha=alpha
    )
