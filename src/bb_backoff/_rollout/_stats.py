"""Did the error rate increase with the flag on?  A one-sided pooled two-proportion z-test.

Theory of operation
-------------------
Each flag variant sends ``n`` logical requests, of which ``x`` end in an
error, so its error rate is ``x / n``.  Under the null hypothesis both
variants share one error rate, best estimated by pooling them:
``p = (x_on + x_off) / (n_on + n_off)``.  The difference of the two observed
rates then has the standard error ``sqrt(p (1 - p) (1/n_on + 1/n_off))``,
and ``z`` is the difference in standard errors.  The rollout asks one
question, "did the error rate *increase* with the flag on?", so the test is
one-sided: the p-value is the upper tail of the standard normal beyond
``z``, ``P(Z >= z) = erfc(z / sqrt 2) / 2``; ``erfc`` keeps tiny p-values
exact where ``1 - cdf`` would round to zero.

The verdict (:func:`judge`) reads the test in this order:

1. a variant without requests has no error rate: "not enough data", naming
   the variant;
2. the flag's observed rate is not higher: "no increase", whatever the
   counts (its one-sided p-value is at least one half).  No errors under
   either variant lands here too: there is no variance to test, and
   nothing increased;
3. the flag's rate is higher, but the normal approximation does not hold,
   because a variant expects fewer than :data:`MIN_EXPECTED` errors or
   successes under the pooled rate (the "success-failure condition"): "not
   enough data", with the requests per variant that would be enough,
   rather than a p-value that means nothing;
4. otherwise the p-value decides: "increased" below alpha, else "no
   significant increase".

Everything here is pure: counts in, numbers and a verdict out.
"""

from __future__ import annotations

import enum
import functools
import math
from typing import Final

import attrs

MIN_EXPECTED: Final = 5
"""The fewest errors, and the fewest successes, each variant must expect under the pooled rate."""
DEFAULT_ALPHA: Final = 0.05
"""The significance level: an increase is reported when the one-sided p-value is below it."""


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return value


def _check_alpha(alpha: object) -> float:
    # Above one half, a p-value below alpha could come with a lower rate with the flag on.
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha <= 0.5:  # noqa: PLR2004
        raise ValueError(f"alpha must be a number above 0 and at most 0.5, got {alpha!r}")
    return float(alpha)


def upper_tail(z: float) -> float:
    """``P(Z >= z)`` for a standard normal ``Z``: the one-sided p-value of ``z``.

    Args:
        z: the statistic, in standard errors (may be infinite).

    Returns:
        A probability from 0 to 1; ``upper_tail(0) == 0.5``.
    """
    return 0.5 * math.erfc(z / math.sqrt(2.0))


@attrs.frozen(kw_only=True)
class ZTest:
    """The pooled two-proportion z-test of "variant a errs more often than variant b".

    Attributes:
        errors_a: errors of variant a (the flag on, in a rollout).
        requests_a: requests of variant a.
        errors_b: errors of variant b (the flag off).
        requests_b: requests of variant b.
        rate_a: ``errors_a / requests_a``.
        rate_b: ``errors_b / requests_b``.
        pooled: the rate both would share if they did not differ.
        z: ``(rate_a - rate_b)`` in pooled standard errors; 0 when there is
            no variance (no errors at all, or nothing but errors).
        p_value: ``P(Z >= z)``, one-sided: small when a errs more than b.
    """

    errors_a: int
    requests_a: int
    errors_b: int
    requests_b: int
    rate_a: float
    rate_b: float
    pooled: float
    z: float
    p_value: float

    @property
    def enough_data(self) -> bool:
        """Whether each variant expects :data:`MIN_EXPECTED` errors and successes (pooled rate)."""
        return all(
            n * self.pooled >= MIN_EXPECTED and n * (1 - self.pooled) >= MIN_EXPECTED
            for n in (self.requests_a, self.requests_b)
        )


def two_proportion_z_test(errors_a: int, requests_a: int, errors_b: int, requests_b: int) -> ZTest:
    """Test whether variant a's error rate is higher than variant b's (one-sided, pooled).

    Args:
        errors_a: errors of variant a, at most ``requests_a``.
        requests_a: requests of variant a, at least 1.
        errors_b: errors of variant b, at most ``requests_b``.
        requests_b: requests of variant b, at least 1.

    Returns:
        The test; read :attr:`ZTest.enough_data` before trusting its p-value.

    Raises:
        ValueError: a count that is not a non-negative integer, no requests
            in a variant, or more errors than requests; the message names it.
    """
    for name, value in (
        ("errors_a", errors_a),
        ("requests_a", requests_a),
        ("errors_b", errors_b),
        ("requests_b", requests_b),
    ):
        _count(name, value)
    for variant, errors, requests in (("a", errors_a, requests_a), ("b", errors_b, requests_b)):
        if requests == 0:
            raise ValueError(f"requests_{variant} must be at least 1 to have an error rate")
        if errors > requests:
            raise ValueError(
                f"errors_{variant} ({errors}) cannot exceed requests_{variant} ({requests})"
            )
    rate_a, rate_b = errors_a / requests_a, errors_b / requests_b
    pooled = (errors_a + errors_b) / (requests_a + requests_b)
    variance = pooled * (1 - pooled) * (1 / requests_a + 1 / requests_b)
    # No variance means both rates are 0 (or both 1): no difference to weigh.
    z = (rate_a - rate_b) / math.sqrt(variance) if variance > 0 else 0.0
    return ZTest(
        errors_a=errors_a,
        requests_a=requests_a,
        errors_b=errors_b,
        requests_b=requests_b,
        rate_a=rate_a,
        rate_b=rate_b,
        pooled=pooled,
        z=z,
        p_value=upper_tail(z),
    )


class Conclusion(enum.Enum):
    """What a comparison of the two variants' error rates concludes."""

    INCREASED = "increased"
    """The flag's error rate is higher, and the one-sided p-value is below alpha."""
    NOT_SIGNIFICANT = "no significant increase"
    """The flag's error rate is higher, but not by more than chance explains."""
    NO_INCREASE = "no increase"
    """The flag's error rate is not higher than the legacy one."""
    NOT_ENOUGH_DATA = "not enough data"
    """A variant has no requests, or the flag's rate is higher but too few errors to weigh."""


def percent(rate: float) -> str:
    """A rate as a percentage for people: ``"3.1 %"``, ``"0.04 %"``, ``"0 %"``."""
    value = 100 * rate
    if value == 0:
        return "0 %"
    if value < 0.1:  # noqa: PLR2004 (below a tenth of a percent, two significant digits)
        return f"{value:.2g} %"
    return f"{value:.1f} %"


def p_text(p_value: float) -> str:
    """A p-value as printed: ``"p = 0.018"``, ``"p = 0.73"``, with bounds at 0.001 and 0.999."""
    if p_value < 0.001:  # noqa: PLR2004
        return "p < 0.001"
    if p_value > 0.999:  # noqa: PLR2004
        return "p > 0.999"
    if p_value < 0.1:  # noqa: PLR2004 (two significant digits)
        return f"p = {p_value:.2g}"
    # Two decimals, three near 1, where two would round 0.998 up to "1.00".
    return f"p = {p_value:.2f}" if p_value <= 0.99 else f"p = {p_value:.3f}"  # noqa: PLR2004


def confidence_text(p_value: float) -> str:
    """``1 - p`` as a confidence: ``"99.7 % confidence"``."""
    confidence = 100 * (1 - p_value)
    if confidence > 99.9:  # noqa: PLR2004
        return "> 99.9 % confidence"
    return f"{confidence:.1f} % confidence"


@attrs.frozen(kw_only=True)
class Verdict:
    """The answer to "did the error rate increase with the flag on?" for one comparison.

    Attributes:
        label: what is compared, e.g. ``"25 %"`` or ``"100 % vs 0 %"``.
        errors_on: errors with the flag on.
        requests_on: requests with the flag on.
        errors_off: errors with the flag off.
        requests_off: requests with the flag off.
        conclusion: the verdict.
        alpha: the significance level used.
        z: the test statistic, or ``None`` when a variant has no requests.
        p_value: the one-sided p-value, or ``None`` when a variant has no requests.
        text: one line for people, with the rates, the verdict and the p-value.
    """

    label: str
    errors_on: int
    requests_on: int
    errors_off: int
    requests_off: int
    conclusion: Conclusion
    alpha: float
    z: float | None
    p_value: float | None
    text: str

    @property
    def error_rate_on(self) -> float | None:
        """The error rate with the flag on, or ``None`` without requests."""
        return self.errors_on / self.requests_on if self.requests_on else None

    @property
    def error_rate_off(self) -> float | None:
        """The error rate with the flag off, or ``None`` without requests."""
        return self.errors_off / self.requests_off if self.requests_off else None

    @property
    def confidence(self) -> float | None:
        """``1 - p_value``: how sure the test is that the rate increased, or ``None``."""
        return None if self.p_value is None else 1.0 - self.p_value


def _rate_text(errors: int, requests: int) -> str:
    return f"{percent(errors / requests)} ({errors:,} of {requests:,})"


def enough_requests(pooled: float) -> int | None:
    """Requests each variant needs for the test at the ``pooled`` error rate, or ``None``.

    The fewest ``n`` with ``n * pooled`` and ``n * (1 - pooled)`` both at
    least :data:`MIN_EXPECTED`; ``None`` when no ``n`` is enough (a pooled
    rate of 0 or 1: no errors, or nothing but errors).
    """
    smaller = min(pooled, 1.0 - pooled)
    if smaller <= 0:
        return None
    return math.ceil(MIN_EXPECTED / smaller - 1e-9)


def judge(
    label: str,
    *,
    errors_on: int,
    requests_on: int,
    errors_off: int,
    requests_off: int,
    alpha: float = DEFAULT_ALPHA,
) -> Verdict:
    """Decide whether the error rate increased with the flag on.

    Args:
        label: what is compared (shown first in :attr:`Verdict.text`).
        errors_on: requests with the flag on that ended in an error.
        requests_on: requests with the flag on.
        errors_off: requests with the flag off that ended in an error.
        requests_off: requests with the flag off.
        alpha: the significance level, above 0 and at most 0.5.

    Returns:
        The verdict, by the rules in this module's docstring: "not enough
        data" without requests in a variant, or with a higher rate the test
        cannot weigh yet; "no increase" when the flag's rate is not higher;
        else "increased" when the one-sided p-value is below ``alpha``, "no
        significant increase" otherwise.

    Raises:
        ValueError: for invalid counts or ``alpha``; the message names it.
    """
    alpha = _check_alpha(alpha)
    for name, value in (
        ("errors_on", errors_on),
        ("requests_on", requests_on),
        ("errors_off", errors_off),
        ("requests_off", requests_off),
    ):
        _count(name, value)
    verdict = functools.partial(
        Verdict,
        label=label,
        errors_on=errors_on,
        requests_on=requests_on,
        errors_off=errors_off,
        requests_off=requests_off,
        alpha=alpha,
    )
    missing = [name for name, n in (("on", requests_on), ("off", requests_off)) if n == 0]
    if missing:
        shown = " and ".join(f"the flag {name}" for name in missing)
        return verdict(
            conclusion=Conclusion.NOT_ENOUGH_DATA,
            z=None,
            p_value=None,
            text=f"{label}: not enough data: no requests with {shown}",
        )
    test = two_proportion_z_test(errors_on, requests_on, errors_off, requests_off)
    rates = (
        f"error rate on {_rate_text(errors_on, requests_on)} "
        f"vs off {_rate_text(errors_off, requests_off)}"
    )
    if test.rate_a <= test.rate_b:
        conclusion = Conclusion.NO_INCREASE
        if test.pooled == 0:
            detail = "no errors under either variant"
        elif test.pooled == 1:
            detail = "every request failed under both variants"
        else:
            detail = f"one-sided {p_text(test.p_value)}"
            if not test.enough_data:
                detail += ", few requests: weak evidence"
    elif not test.enough_data:
        conclusion = Conclusion.NOT_ENOUGH_DATA
        needed = enough_requests(test.pooled)
        detail = (
            f"the flag's rate is higher, but the test needs at least {MIN_EXPECTED} expected "
            f"errors and successes per variant at the pooled rate of {percent(test.pooled)}: "
            f"about {needed:,} requests per variant"
        )
    elif test.p_value < alpha:
        conclusion = Conclusion.INCREASED
        detail = f"one-sided {p_text(test.p_value)}, {confidence_text(test.p_value)}"
    else:
        conclusion = Conclusion.NOT_SIGNIFICANT
        detail = f"one-sided {p_text(test.p_value)}, needs p < {alpha:g}"
    shown = "INCREASED" if conclusion is Conclusion.INCREASED else conclusion.value
    return verdict(
        conclusion=conclusion,
        z=test.z,
        p_value=test.p_value,
        text=f"{label}: {rates}: {shown} ({detail})",
    )
