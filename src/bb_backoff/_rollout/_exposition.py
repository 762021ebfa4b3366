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
scrape taken when the step began from one taken at its end (``--since``),
series by series (:class:`Series`: one sample name with all its labels, one
process's counter in a federated exposition), before anything is added up:
a series that counted from zero again in between (its process restarted)
counts its later value whole, as Prometheus' ``increase()`` does, whatever
the other processes' series did.

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
from typing import Any, Final, TypeAlias

import attrs
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


SeriesKey: TypeAlias = tuple[str, tuple[tuple[str, str], ...]]
"""A series: its sample name and all its labels, sorted by label name."""


@attrs.frozen(kw_only=True)
class Series:
    """This library's counters in one exposition, series by series.

    A series is one sample name with all its labels (the variant, the
    outcome or reason, and ``instance``, ``job``, ... in a federated
    exposition): one process's counter.  Only the samples a
    :class:`VariantCounts` field counts are kept.

    Attributes:
        values: each series' value: a count, or seconds.
        created: when each series began counting, in seconds since the
            epoch, for the series whose ``_created`` sample the exposition
            has (prometheus-client writes them; a restarted process has new
            ones).
    """

    values: Mapping[SeriesKey, float] = attrs.field(factory=dict)
    created: Mapping[SeriesKey, float] = attrs.field(factory=dict)

    def counts(self) -> dict[str, VariantCounts]:
        """The counts of each variant: the series added up over every label but the variant.

        Returns:
            The counts by variant, in the order the variants first appear.
        """
        sums: defaultdict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for (name, labels), value in self.values.items():
            by_name = dict(labels)
            for field in _fields(name, by_name):
                sums[by_name["variant"]][field] += value
        return {variant: _counts(fields) for variant, fields in sums.items()}


def series_from_exposition(text: str, source: str = "the exposition") -> Series:
    """The series of this library's counters in a Prometheus exposition.

    Args:
        text: the exposition (Prometheus text format 0.0.4, or OpenMetrics).
        source: where it came from, for error messages.

    Returns:
        Its series; samples with the same name and labels are added up.

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
    values: defaultdict[SeriesKey, float] = defaultdict(float)
    created: dict[SeriesKey, float] = {}
    seen_requests = False
    for family in families:
        for sample in family.samples:
            value = float(sample.value)
            key: SeriesKey = (sample.name, tuple(sorted(sample.labels.items())))
            if sample.name in _CREATED:
                # A start time that is not a number cannot tell a restart.
                if math.isfinite(value):
                    created[(_CREATED[sample.name], key[1])] = value
                continue
            if not _fields(sample.name, sample.labels):
                continue
            variant = sample.labels.get("variant")
            if not variant:
                raise ExpositionError(f"{source}: {sample.name} has a sample without a variant")
            if not math.isfinite(value) or value < 0:
                raise ExpositionError(
                    f"{source}: {sample.name}{{variant={variant!r}}} is {value!r}, "
                    "not a count or a number of seconds"
                )
            seen_requests |= sample.name == REQUESTS
            values[key] += value
    if not seen_requests:
        raise ExpositionError(
            f"{source} has no {REQUESTS} samples: is it the /metrics of a process whose "
            "clients have PrometheusHook (or OpenTelemetryHook with a Prometheus exporter)?"
        )
    return Series(values=dict(values), created=created)


def counts_from_exposition(text: str, source: str = "the exposition") -> dict[str, VariantCounts]:
    """The counts of each flag variant in a Prometheus exposition of this library's metrics.

    Args:
        text: the exposition (Prometheus text format 0.0.4, or OpenMetrics).
        source: where it came from, for error messages.

    Returns:
        The counts by variant (``"on"``, ``"off"``), in the order the
        variants first appear.

    Raises:
        ExpositionError: as :func:`series_from_exposition`.
        ModuleNotFoundError: prometheus-client is not installed.
    """
    return series_from_exposition(text, source).counts()


def _fields(name: str, labels: Mapping[str, str]) -> tuple[str, ...]:
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


# The sample that says when a counted sample began (prometheus-client's), by its name.
_CREATED: Final = {
    "bb_backoff_requests_created": REQUESTS,
    "bb_backoff_retries_created": "bb_backoff_retries_total",
    "bb_backoff_give_ups_created": "bb_backoff_give_ups_total",
    "bb_backoff_wait_seconds_created": "bb_backoff_wait_seconds_total",
    "bb_backoff_request_duration_seconds_created": "bb_backoff_request_duration_seconds_sum",
}


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


@attrs.frozen(kw_only=True)
class Between:
    """What the processes did between two scrapes.

    Attributes:
        counts: the counts by variant; a variant that did nothing in
            between is left out.
        resets: series that counted from zero again in between (a process
            restarted): their value went down, or their ``_created`` time
            changed.  Each counts its later value whole; what it counted
            between the earlier scrape and the restart is lost.
        gone: series of the earlier scrape missing from the later one (a
            process stopped, or restarted and has not counted them again):
            what they counted after the earlier scrape is lost.
    """

    counts: dict[str, VariantCounts]
    resets: int = 0
    gone: int = 0


def counts_between(earlier: Series, later: Series) -> Between:
    """What each variant did between two scrapes: ``later`` minus ``earlier``, series by series.

    Each series is subtracted on its own before the series are added up by
    variant, so that one process's restart among several is seen: as
    Prometheus' ``increase()``, a series whose counter went down (or whose
    ``_created`` time changed) restarted and counts its later value, and a
    series the earlier scrape lacks counts whole.  Every request series
    adds the same increase to requests and, when it is an error, to errors:
    a variant never has more errors than requests.

    Args:
        earlier: the series of the scrape taken when the step began.
        later: the series of a scrape taken later, of the same processes.

    Returns:
        The counts by variant, in ``later``'s order, and how many series
        restarted or went away in between.
    """
    increases: dict[SeriesKey, float] = {}
    resets = 0
    for key, now in later.values.items():
        then = earlier.values.get(key)
        began, begins = earlier.created.get(key), later.created.get(key)
        restarted = then is not None and (
            now < then or (began is not None and begins is not None and began != begins)
        )
        resets += restarted
        increases[key] = now if then is None or restarted else now - then
    counts = {
        variant: counted
        for variant, counted in Series(values=increases).counts().items()
        if counted != VariantCounts()
    }
    gone = sum(key not in later.values for key in earlier.values)
    return Between(counts=counts, resets=resets, gone=gone)


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
            and :func:`series_from_exposition`).
        ModuleNotFoundError: prometheus-client is not installed.
    """
    shown = shown_source(source)
    earlier = None
    if since is not None:
        shown_since = shown_source(since)
        earlier = series_from_exposition(load_exposition(since, timeout=timeout), shown_since)
    series = series_from_exposition(load_exposition(source, timeout=timeout), shown)
    if earlier is None:
        counts = series.counts()
        window = (
            "They count since each process started: the rows cover the processes' lifetime, "
            "not one rollout step (pass --since with a scrape taken when the step began)."
        )
    else:
        between = counts_between(earlier, series)
        counts = between.counts
        window = (
            f"The rows cover what happened since the earlier scrape, {shown_since}, "
            f"series by series.{_losses(between)}"
        )
    description = (
        f"Metrics of a deployment, read from {shown}: this library's Prometheus counters, "
        f"added up over every label but the variant. {window}"
    )
    return build_report(
        description, [Step(label=STEP_LABEL, percentage=None, counts=counts)], alpha=alpha
    )


def _losses(between: Between) -> str:
    """What the rows of ``between`` miss, for the report's description: restarts, series gone."""
    text = ""
    if between.resets:
        text += (
            f" {between.resets:,} series counted from zero again in between (a process "
            "restarted): the later scrape's value counts whole for each, and what each "
            "counted from the earlier scrape to the restart is missing."
        )
    if between.gone:
        verb = "is" if between.gone == 1 else "are"
        text += (
            f" {between.gone:,} series of the earlier scrape {verb} not in the later one (a "
            "process stopped or restarted): what they counted since the earlier scrape is "
            "missing."
        )
    return text
