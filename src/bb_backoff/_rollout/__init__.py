"""The rollout report: did the error rate increase with the flag on? (used by the CLI only).

Pure parts: :mod:`._stats` (the one-sided pooled two-proportion z-test and
its verdict) and :mod:`._counts` (what each variant did, and the hook that
counts it).
"""

from ._counts import VARIANTS, VariantCounts, VariantTally, total
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
    "VariantCounts",
    "VariantTally",
    "Verdict",
    "ZTest",
    "enough_requests",
    "judge",
    "total",
    "two_proportion_z_test",
    "upper_tail",
]
