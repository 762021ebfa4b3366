"""The rollout report: did the error rate increase with the flag on? (used by the CLI only).

Pure parts: :mod:`._stats` (the one-sided pooled two-proportion z-test and
its verdict).
"""

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
    "Conclusion",
    "Verdict",
    "ZTest",
    "enough_requests",
    "judge",
    "two_proportion_z_test",
    "upper_tail",
]
