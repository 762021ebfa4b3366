"""The rollout report: did the error rate increase with the flag on? (used by the CLI only).

Pure parts: :mod:`._stats` (the one-sided pooled two-proportion z-test and
its verdict), :mod:`._counts` (what each variant did, and the hook that
counts it), :mod:`._exposition` (the same counts from a Prometheus
exposition) and :mod:`._report` (rows, verdicts, markdown, JSON, chart).
:mod:`._simulation` runs a simulated rollout on the mock API, on virtual
time; it needs :mod:`bb_backoff.testing` and the benchmark's importer, so it
is imported only by ``rollout-report --simulate``, and nothing in the
library imports this package.
"""

from ._counts import VARIANTS, VariantCounts, VariantTally, total
from ._exposition import (
    DEFAULT_TIMEOUT,
    Between,
    ExpositionError,
    Series,
    counts_between,
    counts_from_exposition,
    load_exposition,
    metrics_report,
    series_from_exposition,
)
from ._report import (
    Imports,
    Report,
    Row,
    Step,
    build_report,
    json_report,
    markdown,
    overall,
    write_chart,
)
from ._stats import (
    DEFAULT_ALPHA,
    MIN_EXPECTED,
    Conclusion,
    Verdict,
    ZTest,
    enough_requests,
    judge,
    two_proportion_z_test,
    upper_tail,
)

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_TIMEOUT",
    "MIN_EXPECTED",
    "VARIANTS",
    "Between",
    "Conclusion",
    "ExpositionError",
    "Imports",
    "Report",
    "Row",
    "Series",
    "Step",
    "VariantCounts",
    "VariantTally",
    "Verdict",
    "ZTest",
    "build_report",
    "counts_between",
    "counts_from_exposition",
    "enough_requests",
    "json_report",
    "judge",
    "load_exposition",
    "markdown",
    "metrics_report",
    "overall",
    "series_from_exposition",
    "total",
    "two_proportion_z_test",
    "upper_tail",
    "write_chart",
]
