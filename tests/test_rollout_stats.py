"""The rollout's statistics: the one-sided pooled two-proportion z-test and its verdict."""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from bb_backoff._rollout import (
    MIN_EXPECTED,
    Conclusion,
    enough_requests,
    judge,
    two_proportion_z_test,
    upper_tail,
)
from bb_backoff._rollout._stats import confidence_text, p_text, percent

REQUESTS = st.integers(min_value=1, max_value=1_000_000)
ALPHAS = st.floats(min_value=1e-6, max_value=0.5)


@st.composite
def variant(draw: st.DrawFn) -> tuple[int, int]:
    """(errors, requests) of one variant: at least one request."""
    requests = draw(REQUESTS)
    return draw(st.integers(min_value=0, max_value=requests)), requests


# -- upper_tail -----------------------------------------------------------------------


def test_upper_tail_at_known_quantiles_of_the_standard_normal() -> None:
    assert upper_tail(0.0) == 0.5
    assert upper_tail(1.6448536269514722) == pytest.approx(0.05, abs=1e-12)
    assert upper_tail(1.959963984540054) == pytest.approx(0.025, abs=1e-12)
    assert upper_tail(math.inf) == 0.0
    assert upper_tail(-math.inf) == 1.0


def test_upper_tail_keeps_tiny_p_values_that_one_minus_cdf_rounds_to_zero() -> None:
    assert 1 - NormalDist().cdf(10.0) == 0.0
    assert upper_tail(10.0) == pytest.approx(7.619853024160527e-24, rel=1e-9)


@given(st.floats(min_value=-40, max_value=40))
def test_upper_tail_agrees_with_the_normal_distribution(z: float) -> None:
    assert upper_tail(z) == pytest.approx(1 - NormalDist().cdf(z), abs=1e-12)


# -- the z-test -----------------------------------------------------------------------


def test_z_test_matches_a_value_worked_by_hand() -> None:
    """60 of 500 against 40 of 500: pooled 0.1, standard error sqrt(0.1 * 0.9 * 2/500).

    z = 0.04 / 0.0189737 = 2.10819, and P(Z >= 2.10819) = 0.017507.
    """
    test = two_proportion_z_test(60, 500, 40, 500)
    assert (test.rate_a, test.rate_b, test.pooled) == (0.12, 0.08, 0.1)
    assert test.z == pytest.approx(2.1081851, abs=1e-6)
    assert test.p_value == pytest.approx(0.0175075, abs=1e-6)
    assert test.enough_data


@given(variant(), variant())
def test_p_value_is_a_probability(a: tuple[int, int], b: tuple[int, int]) -> None:
    test = two_proportion_z_test(*a, *b)
    assert 0.0 <= test.p_value <= 1.0
    assert math.isfinite(test.z)


@given(variant(), variant())
def test_swapping_the_variants_negates_z_and_mirrors_the_p_value(
    a: tuple[int, int], b: tuple[int, int]
) -> None:
    forward, backward = two_proportion_z_test(*a, *b), two_proportion_z_test(*b, *a)
    assert backward.z == pytest.approx(-forward.z, rel=1e-9, abs=1e-12)
    assert forward.p_value + backward.p_value == pytest.approx(1.0, abs=1e-12)


@given(variant(), variant())
def test_p_value_is_below_one_half_exactly_when_variant_a_errs_more_often(
    a: tuple[int, int], b: tuple[int, int]
) -> None:
    test = two_proportion_z_test(*a, *b)
    assume(test.p_value != pytest.approx(0.5, abs=1e-12))
    assert (test.p_value < 0.5) == (a[0] * b[1] > b[0] * a[1])


@given(variant(), variant(), st.integers(min_value=1, max_value=50))
def test_one_more_error_in_variant_a_never_raises_the_p_value(
    a: tuple[int, int], b: tuple[int, int], more: int
) -> None:
    errors, requests = a
    assume(errors + more <= requests)
    before = two_proportion_z_test(errors, requests, *b)
    after = two_proportion_z_test(errors + more, requests, *b)
    assert after.z >= before.z - 1e-9
    assert after.p_value <= before.p_value + 1e-12


@given(variant(), variant(), st.integers(min_value=1, max_value=50))
def test_one_more_error_in_variant_b_never_lowers_the_p_value(
    a: tuple[int, int], b: tuple[int, int], more: int
) -> None:
    errors, requests = b
    assume(errors + more <= requests)
    before = two_proportion_z_test(*a, errors, requests)
    after = two_proportion_z_test(*a, errors + more, requests)
    assert after.p_value >= before.p_value - 1e-12


@given(variant(), variant(), st.integers(min_value=2, max_value=100))
def test_k_times_the_counts_give_sqrt_k_times_the_z(
    a: tuple[int, int], b: tuple[int, int], k: int
) -> None:
    """Same rates, k times the requests: the standard error shrinks by sqrt(k)."""
    once = two_proportion_z_test(*a, *b)
    scaled = two_proportion_z_test(a[0] * k, a[1] * k, b[0] * k, b[1] * k)
    assert scaled.z == pytest.approx(once.z * math.sqrt(k), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize(
    ("a", "b"), [((0, 100), (0, 300)), ((100, 100), (300, 300))], ids=["no errors", "all errors"]
)
def test_no_variance_gives_z_zero_not_a_division_by_zero(
    a: tuple[int, int], b: tuple[int, int]
) -> None:
    test = two_proportion_z_test(*a, *b)
    assert (test.z, test.p_value, test.enough_data) == (0.0, 0.5, False)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((-1, 10, 0, 10), "errors_a must be a non-negative integer"),
        ((0, 10, 0, 2.5), "requests_b must be a non-negative integer"),
        ((0, True, 0, 10), "requests_a must be a non-negative integer"),
        ((0, 0, 0, 10), "requests_a must be at least 1"),
        ((0, 10, 0, 0), "requests_b must be at least 1"),
        ((11, 10, 0, 10), r"errors_a \(11\) cannot exceed requests_a \(10\)"),
        ((0, 10, 3, 2), r"errors_b \(3\) cannot exceed requests_b \(2\)"),
    ],
)
def test_z_test_refuses_invalid_counts_naming_them(arguments: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        two_proportion_z_test(*arguments)


def test_enough_data_is_the_success_failure_condition_at_the_pooled_rate() -> None:
    # Pooled 5 %: 100 requests expect exactly 5 errors each; 99 do not.
    assert two_proportion_z_test(6, 100, 4, 100).enough_data
    assert not two_proportion_z_test(6, 99, 4, 100).enough_data


@given(st.floats(min_value=1e-6, max_value=1 - 1e-6))
def test_enough_requests_is_the_fewest_that_satisfy_the_condition(pooled: float) -> None:
    needed = enough_requests(pooled)
    assert needed is not None
    smaller = min(pooled, 1 - pooled)
    assert needed * smaller >= MIN_EXPECTED * (1 - 1e-9)
    assert (needed - 1) * smaller < MIN_EXPECTED


def test_enough_requests_is_none_when_no_number_is_enough() -> None:
    assert (enough_requests(0.0), enough_requests(1.0), enough_requests(0.5)) == (None, None, 10)


# -- the verdict ----------------------------------------------------------------------


def test_a_clear_increase_is_reported_with_its_p_value_and_confidence() -> None:
    verdict = judge("25 %", errors_on=60, requests_on=500, errors_off=40, requests_off=500)
    assert verdict.conclusion is Conclusion.INCREASED
    assert verdict.p_value == pytest.approx(0.0175075, abs=1e-6)
    assert verdict.confidence == pytest.approx(0.9824925, abs=1e-6)
    assert verdict.text == (
        "25 %: error rate on 12.0 % (60 of 500) vs off 8.0 % (40 of 500): "
        "INCREASED (one-sided p = 0.018, 98.2 % confidence)"
    )


def test_the_same_increase_is_not_significant_at_a_stricter_alpha() -> None:
    verdict = judge(
        "25 %", errors_on=60, requests_on=500, errors_off=40, requests_off=500, alpha=0.01
    )
    assert verdict.conclusion is Conclusion.NOT_SIGNIFICANT
    assert verdict.text.endswith("no significant increase (one-sided p = 0.018, needs p < 0.01)")


def test_a_lower_rate_with_the_flag_on_is_no_increase() -> None:
    verdict = judge("50 %", errors_on=40, requests_on=500, errors_off=60, requests_off=500)
    assert verdict.conclusion is Conclusion.NO_INCREASE
    assert verdict.text.endswith("no increase (one-sided p = 0.98)")


def test_no_errors_at_all_is_no_increase_and_says_why() -> None:
    verdict = judge("50 %", errors_on=0, requests_on=400, errors_off=0, requests_off=300)
    assert (verdict.conclusion, verdict.error_rate_on, verdict.error_rate_off) == (
        Conclusion.NO_INCREASE,
        0.0,
        0.0,
    )
    assert verdict.text == (
        "50 %: error rate on 0 % (0 of 400) vs off 0 % (0 of 300): "
        "no increase (no errors under either variant)"
    )


def test_every_request_failing_under_both_is_no_increase_and_says_so() -> None:
    verdict = judge("50 %", errors_on=4, requests_on=4, errors_off=9, requests_off=9)
    assert verdict.conclusion is Conclusion.NO_INCREASE
    assert verdict.text.endswith("(every request failed under both variants)")


def test_a_lower_rate_on_few_requests_is_no_increase_marked_weak() -> None:
    verdict = judge("25 %", errors_on=0, requests_on=12, errors_off=2, requests_off=30)
    assert verdict.conclusion is Conclusion.NO_INCREASE
    assert verdict.text.endswith(", few requests: weak evidence)")


def test_a_higher_rate_on_few_errors_is_not_enough_data_and_says_how_many() -> None:
    """Pooled 3 of 60 = 5 %: each variant needs 5 / 0.05 = 100 requests."""
    verdict = judge("25 %", errors_on=2, requests_on=30, errors_off=1, requests_off=30)
    assert verdict.conclusion is Conclusion.NOT_ENOUGH_DATA
    assert verdict.p_value is not None
    assert verdict.text == (
        "25 %: error rate on 6.7 % (2 of 30) vs off 3.3 % (1 of 30): not enough data "
        "(the flag's rate is higher, but the test needs at least 5 expected errors and "
        "successes per variant at the pooled rate of 5.0 %: about 100 requests per variant)"
    )


@pytest.mark.parametrize(
    ("requests_on", "requests_off", "missing"),
    [(0, 10, "the flag on"), (10, 0, "the flag off"), (0, 0, "the flag on and the flag off")],
)
def test_a_variant_without_requests_is_not_enough_data_naming_it(
    requests_on: int, requests_off: int, missing: str
) -> None:
    verdict = judge(
        "metrics", errors_on=0, requests_on=requests_on, errors_off=0, requests_off=requests_off
    )
    assert (verdict.conclusion, verdict.z, verdict.p_value, verdict.confidence) == (
        Conclusion.NOT_ENOUGH_DATA,
        None,
        None,
        None,
    )
    assert verdict.text == f"metrics: not enough data: no requests with {missing}"


@given(variant(), variant(), ALPHAS)
def test_increased_exactly_when_the_valid_test_says_p_below_alpha(
    on: tuple[int, int], off: tuple[int, int], alpha: float
) -> None:
    verdict = judge(
        "step",
        errors_on=on[0],
        requests_on=on[1],
        errors_off=off[0],
        requests_off=off[1],
        alpha=alpha,
    )
    test = two_proportion_z_test(*on, *off)
    increased = test.enough_data and test.rate_a > test.rate_b and test.p_value < alpha
    assert (verdict.conclusion is Conclusion.INCREASED) == increased
    assert verdict.p_value == test.p_value
    assert (verdict.conclusion is Conclusion.NO_INCREASE) == (test.rate_a <= test.rate_b)


@pytest.mark.parametrize("alpha", [0, -0.1, 0.6, math.nan, True, "0.05"])
def test_judge_refuses_an_alpha_outside_zero_to_one_half(alpha: Any) -> None:
    with pytest.raises(ValueError, match=r"alpha must be a number above 0 and at most 0\.5"):
        judge("step", errors_on=1, requests_on=2, errors_off=1, requests_off=2, alpha=alpha)


def test_judge_refuses_negative_counts_naming_them() -> None:
    with pytest.raises(ValueError, match="errors_off must be a non-negative integer, got -1"):
        judge("step", errors_on=1, requests_on=2, errors_off=-1, requests_off=2)


# -- numbers for people ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "shown"), [(0.0, "0 %"), (0.00041, "0.041 %"), (0.031, "3.1 %"), (1.0, "100.0 %")]
)
def test_percent_keeps_small_rates_readable(rate: float, shown: str) -> None:
    assert percent(rate) == shown


@pytest.mark.parametrize(
    ("p_value", "p_shown", "confidence_shown"),
    [
        (0.0001, "p < 0.001", "> 99.9 % confidence"),
        (0.0175, "p = 0.018", "98.2 % confidence"),
        (0.5, "p = 0.50", "50.0 % confidence"),
        (0.998, "p = 0.998", "0.2 % confidence"),
        (0.9995, "p > 0.999", "0.0 % confidence"),
    ],
)
def test_p_values_and_confidences_are_shown_with_bounds(
    p_value: float, p_shown: str, confidence_shown: str
) -> None:
    assert (p_text(p_value), confidence_text(p_value)) == (p_shown, confidence_shown)
