"""The rollout report: did the error rate increase with the flag on? (used by the CLI only).

Pure parts: :mod:`._stats` (the one-sided pooled two-proportion z-test and
its verdict), :mod:`._counts` (what each variant did, and the hook that
counts it) and :mod:`._report` (rows, verdicts, markdown, JSON, chart).
"""

from ._counts import VARIANTS, VariantCounts, VariantTally, total
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
    "MIN_EXPECTED",
    "VARIANTS",
    "Conclusion",
    "Imports",
    "Report",
    "Row",
    "Step",
    "VariantCounts",
    "VariantTally",
    "Verdict",
    "ZTest",
    "build_report",
    "enough_requests",
    "json_report",
    "judge",
    "markdown",
    "overall",
    "total",
    "two_proportion_z_test",
    "upper_tail",
    "write_chart",
]
