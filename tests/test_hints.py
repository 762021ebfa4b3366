"""Tests for server hints, ``bb_backoff._hints``: Retry-After and X-RateLimit-Reset.

Every time is relative to a fixed ``now`` (epoch seconds), never the clock.
"""

from __future__ import annotations

import math
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bb_backoff import Hint, hint_from_headers, parse_ratelimit_reset, parse_retry_after
from bb_backoff._hints import RATELIMIT_RESET, RETRY_AFTER
from strategies import EPOCH_SECONDS, FIXED_NOW, header_values, http_date, seconds

# The RFC 9110 example date; FIXED_NOW is this instant.
DATE = "Wed, 21 Oct 2015 07:28:00 GMT"

NOWS = st.floats(min_value=0.0, max_value=4e9)

GARBAGE = [
    "soon",
    "",
    "   ",
    "-5",
    "-0",
    "+5",
    "1e3",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "Infinity",
    "1.",
    ".5",
    "1_000",
    "0x10",
    "5 seconds",
    "\u0661\u0662",  # Arabic-Indic digits: int() would read them, HTTP does not
    "x" * 10_000,
    "9" * 10_000,
]
BAD_DATES = [
    "Wed, 21 Oct 2015 07:28:00",  # no zone
    "Wed, 21 Oct 2015 07:28:00 -0000",  # "-0000" is RFC 5322's "zone unknown"
    "Wed, 32 Oct 2015 07:28:00 GMT",
    "Wed, 21 Foo 2015 07:28:00 GMT",
    "Wed, 21 Oct 2015 07:27:59 GMT",  # one second in the past
    "Thu, 01 Jan 1970 00:00:00 GMT",
    DATE + " " + "x" * 64,
]


# --- Retry-After --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        ("0", 0.0),
        ("007", 7.0),
        ("1.5", 1.5),
        ("0.250", 0.25),
        ("2.123456789", 2.123456789),
        ("  30  ", 30.0),
        ("\t7\r\n", 7.0),
        ("999999999999999", 999_999_999_999_999.0),
    ],
)
def test_retry_after_delta_seconds_with_decimals_and_whitespace(
    value: str, expected: float
) -> None:
    assert parse_retry_after(value, FIXED_NOW) == expected


@pytest.mark.parametrize(
    ("value", "now", "expected"),
    [
        (DATE, FIXED_NOW - 480, 480.0),
        (DATE, FIXED_NOW, 0.0),
        (DATE, FIXED_NOW - 0.25, 0.25),
        (f"  {DATE}\t", FIXED_NOW - 60, 60.0),
        ("Wed, 21 Oct 2015 07:28:00 +0000", FIXED_NOW - 60, 60.0),
        ("Wed, 21 Oct 2015 09:28:00 +0200", FIXED_NOW - 60, 60.0),
        ("Wed, 21 Oct 2015 07:28:00 UT", FIXED_NOW - 60, 60.0),
        ("Wednesday, 21-Oct-15 07:28:00 GMT", FIXED_NOW - 60, 60.0),  # RFC 850 form
    ],
)
def test_retry_after_http_date_is_seconds_from_now(value: str, now: float, expected: float) -> None:
    assert parse_retry_after(value, now) == expected


@pytest.mark.parametrize("value", GARBAGE + BAD_DATES)
def test_retry_after_garbage_and_past_or_zoneless_dates_give_no_hint(value: str) -> None:
    assert parse_retry_after(value, FIXED_NOW) is None


@given(header_values(), NOWS)
def test_retry_after_never_raises_and_is_none_or_finite_non_negative(
    value: str, now: float
) -> None:
    actual = parse_retry_after(value, now)
    assert actual is None or (math.isfinite(actual) and actual >= 0)


@given(st.integers(min_value=0, max_value=10**15 - 1), st.integers(0, 10**9 - 1), NOWS)
def test_retry_after_delta_seconds_reads_back_any_number_whatever_now(
    whole: int, fraction: int, now: float
) -> None:
    assert parse_retry_after(str(whole), now) == float(whole)
    assert parse_retry_after(f"{whole}.{fraction:09d}", now) == float(f"{whole}.{fraction:09d}")


@given(EPOCH_SECONDS, seconds(1e6))
def test_retry_after_future_http_date_is_exact_seconds_from_now(when: int, ahead: float) -> None:
    now = when - ahead
    assert parse_retry_after(http_date(when), now) == when - now


@given(EPOCH_SECONDS, st.floats(min_value=1e-3, max_value=1e9))
def test_retry_after_past_http_date_gives_no_hint(when: int, behind: float) -> None:
    assert parse_retry_after(http_date(when), when + behind) is None


# --- X-RateLimit-Reset --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "now", "expected"),
    [
        ("30", FIXED_NOW, 30.0),
        ("0", FIXED_NOW, 0.0),
        ("1.5", FIXED_NOW, 1.5),
        (" 42\n", FIXED_NOW, 42.0),
        ("999999999", FIXED_NOW, 999_999_999.0),  # just below the threshold: still remaining
        ("999999999.9", FIXED_NOW, 999_999_999.9),
        ("1000000000", 999_999_990.0, 10.0),  # at the threshold: an epoch timestamp
        (str(int(FIXED_NOW) + 60), FIXED_NOW, 60.0),
        (f"{int(FIXED_NOW)}.5", FIXED_NOW, 0.5),
        (str(int(FIXED_NOW) * 1000 + 30_000), FIXED_NOW, 30.0),  # epoch milliseconds
        ("1000000000000", 999_999_990.0, 10.0),  # at that threshold: milliseconds
        (str(int(FIXED_NOW)), FIXED_NOW, 0.0),
    ],
)
def test_ratelimit_reset_is_seconds_remaining_or_an_epoch_timestamp(
    value: str, now: float, expected: float
) -> None:
    assert parse_ratelimit_reset(value, now) == expected


@pytest.mark.parametrize("value", [*GARBAGE, DATE, str(int(FIXED_NOW) - 1), "1000000000"])
def test_ratelimit_reset_garbage_dates_and_past_timestamps_give_no_hint(value: str) -> None:
    assert parse_ratelimit_reset(value, FIXED_NOW) is None


@given(st.integers(min_value=0, max_value=999_999_999), NOWS)
def test_ratelimit_reset_below_1e9_is_seconds_remaining_whatever_now(
    remaining: int, now: float
) -> None:
    assert parse_ratelimit_reset(str(remaining), now) == float(remaining)


@given(st.integers(min_value=10**9, max_value=10**12 - 1), NOWS)
def test_ratelimit_reset_from_1e9_is_an_epoch_timestamp(epoch: int, now: float) -> None:
    expected = epoch - now if epoch >= now else None
    assert parse_ratelimit_reset(str(epoch), now) == expected


@given(st.integers(min_value=10**12, max_value=10**16), NOWS)
def test_ratelimit_reset_from_1e12_is_an_epoch_timestamp_in_milliseconds(
    epoch_ms: int, now: float
) -> None:
    expected = epoch_ms / 1000.0 - now
    assert parse_ratelimit_reset(str(epoch_ms), now) == (expected if expected >= 0 else None)


@given(header_values(), NOWS)
def test_ratelimit_reset_never_raises_and_is_none_or_finite_non_negative(
    value: str, now: float
) -> None:
    actual = parse_ratelimit_reset(value, now)
    assert actual is None or (math.isfinite(actual) and actual >= 0)


# --- hint_from_headers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"Content-Type": "text/plain"}, None),
        ({RETRY_AFTER: "120"}, Hint(120.0, RETRY_AFTER)),
        ({RETRY_AFTER: DATE}, Hint(60.0, RETRY_AFTER)),
        ({RATELIMIT_RESET: "30"}, Hint(30.0, RATELIMIT_RESET)),
        ({RETRY_AFTER: "120", RATELIMIT_RESET: "30"}, Hint(120.0, RETRY_AFTER)),
        ({RETRY_AFTER: "20", RATELIMIT_RESET: "30"}, Hint(30.0, RATELIMIT_RESET)),
        ({RETRY_AFTER: "30", RATELIMIT_RESET: "30"}, Hint(30.0, RETRY_AFTER)),
        ({RETRY_AFTER: "soon", RATELIMIT_RESET: "30"}, Hint(30.0, RATELIMIT_RESET)),
        ({RETRY_AFTER: "5", RATELIMIT_RESET: "-1"}, Hint(5.0, RETRY_AFTER)),
        ({RETRY_AFTER: "soon", RATELIMIT_RESET: "later"}, None),
    ],
)
def test_hint_from_headers_takes_the_longer_valid_hint(
    headers: dict[str, str], expected: Hint | None
) -> None:
    """A tie goes to Retry-After; an unreadable header is skipped, not fatal."""
    assert hint_from_headers(headers, FIXED_NOW - 60) == expected


@pytest.mark.parametrize(
    "headers",
    [
        [("retry-after", "5"), ("x-ratelimit-reset", "9")],
        [("RETRY-AFTER", "5"), ("X-RATELIMIT-RESET", "9")],
        [("Retry-After", "5"), ("X-RateLimit-Reset", "9")],
    ],
)
def test_hint_from_headers_is_case_insensitive_with_httpx_headers(
    headers: list[tuple[str, str]],
) -> None:
    """The hint's source is the canonical header name, whatever the server's spelling."""
    assert hint_from_headers(httpx.Headers(headers), FIXED_NOW) == Hint(9.0, RATELIMIT_RESET)


def test_hint_from_headers_reads_an_httpx_response() -> None:
    response = httpx.Response(429, headers={"retry-after": DATE}, text="Rate limit")
    assert hint_from_headers(response.headers, FIXED_NOW - 90) == Hint(90.0, RETRY_AFTER)


@given(header_values(), header_values(), NOWS)
def test_hint_from_headers_is_the_larger_of_the_two_parsed_headers(
    retry_after: str, reset: str, now: float
) -> None:
    # A plain dict: httpx.Headers refuses non-ASCII text, which header_values() draws.
    headers = {RETRY_AFTER: retry_after, RATELIMIT_RESET: reset}
    from_retry_after = parse_retry_after(retry_after, now)
    from_reset = parse_ratelimit_reset(reset, now)
    candidates = [
        Hint(seconds, source)
        for seconds, source in ((from_retry_after, RETRY_AFTER), (from_reset, RATELIMIT_RESET))
        if seconds is not None
    ]
    expected = max(candidates, key=lambda hint: hint.seconds, default=None)
    assert hint_from_headers(headers, now) == expected


def test_retry_after_in_rfc_9110s_obsolete_asctime_format_is_read_as_gmt() -> None:
    """RFC 9110 section 5.6.7: recipients must accept asctime dates, which are GMT."""
    now = parsedate_to_datetime("Wed, 21 Oct 2015 07:28:00 GMT").timestamp() - 60
    assert parse_retry_after("Wed Oct 21 07:28:00 2015", now) == 60.0
    assert parse_retry_after("Wed Oct  1 07:28:00 2015", now) is None  # in the past


def test_a_repeated_retry_after_joined_by_commas_gives_the_longest() -> None:
    """httpx joins a repeated header with ", "; reading the longest never undercuts either."""
    assert parse_retry_after("120, 120", FIXED_NOW) == 120.0
    assert parse_retry_after("30,90", FIXED_NOW) == 90.0
    assert parse_retry_after("30, soon", FIXED_NOW) == 30.0  # the garbage undoes nothing
    assert parse_retry_after(", ".join(["600"] * 14), FIXED_NOW) == 600.0  # 82 characters


def test_a_repeated_http_date_retry_after_and_one_beside_a_number_give_the_longest() -> None:
    """Found by an independent review: ``"<date>, <date>"`` was no hint, and
    ``"120, <date in 600 s>"`` was 120, undercutting the date."""
    later = http_date(int(FIXED_NOW) + 600)
    assert parse_retry_after(f"{later}, {later}", FIXED_NOW) == 600.0
    assert parse_retry_after(f"120, {later}", FIXED_NOW) == 600.0
    assert parse_retry_after(f"{later}, 900", FIXED_NOW) == 900.0
    earlier = http_date(int(FIXED_NOW) + 60)
    assert parse_retry_after(f"{earlier}, {later}", FIXED_NOW) == 600.0
    assert parse_retry_after("Wed Oct 21 07:38:00 2015, 30", FIXED_NOW) == 600.0  # asctime
    past = http_date(int(FIXED_NOW) - 60)
    assert parse_retry_after(f"{past}, 30", FIXED_NOW) == 30.0
    assert parse_retry_after(f"{past}, {past}", FIXED_NOW) is None


def test_a_repeated_ratelimit_reset_joined_by_commas_gives_the_longest() -> None:
    """The same list handling as Retry-After: a repeated reset was dropped as garbage."""
    assert parse_ratelimit_reset("120, 120", FIXED_NOW) == 120.0
    assert parse_ratelimit_reset("30,90", FIXED_NOW) == 90.0
    assert parse_ratelimit_reset(f"30, {int(FIXED_NOW) + 60}", FIXED_NOW) == 60.0
    assert parse_ratelimit_reset(f"30, {int(FIXED_NOW) * 1000 + 45_000}", FIXED_NOW) == 45.0
    assert parse_ratelimit_reset(f"30, {int(FIXED_NOW) - 1}", FIXED_NOW) == 30.0  # a past epoch
    assert parse_ratelimit_reset("30, soon", FIXED_NOW) == 30.0
    assert parse_ratelimit_reset("30,", FIXED_NOW) == 30.0
    assert parse_ratelimit_reset("soon, later", FIXED_NOW) is None


def test_a_repeated_ratelimit_reset_header_is_never_undercut() -> None:
    headers = httpx.Headers([(RATELIMIT_RESET, "120"), (RATELIMIT_RESET, "120")])
    assert hint_from_headers(headers, FIXED_NOW) == Hint(120.0, RATELIMIT_RESET)


# One X-RateLimit-Reset number from each of its readings: seconds remaining,
# epoch seconds, epoch milliseconds.
RESET_NUMBERS = (
    st.integers(min_value=0, max_value=10**9 - 1)
    | st.integers(min_value=10**9, max_value=10**12 - 1)
    | st.integers(min_value=10**12, max_value=10**16)
)
SEPARATORS = st.sampled_from([",", ", ", " , ", ",\t"])


@given(st.lists(RESET_NUMBERS, min_size=1, max_size=3), SEPARATORS, NOWS)
def test_a_ratelimit_reset_list_is_the_longest_of_its_numbers_each_read_alone(
    numbers: list[int], separator: str, now: float
) -> None:
    alone = [parse_ratelimit_reset(str(number), now) for number in numbers]
    expected = max((wait for wait in alone if wait is not None), default=None)
    assert parse_ratelimit_reset(separator.join(map(str, numbers)), now) == expected


@given(st.lists(st.integers(min_value=0, max_value=10**15), min_size=1, max_size=3), SEPARATORS)
def test_a_retry_after_list_is_the_longest_of_its_delta_seconds(
    numbers: list[int], separator: str
) -> None:
    joined = separator.join(map(str, numbers))
    assert parse_retry_after(joined, FIXED_NOW) == float(max(numbers))


@given(
    st.lists(RESET_NUMBERS, min_size=1, max_size=2),
    st.sampled_from(["soon", "", "-5", "1e3", "nan"]),
    NOWS,
)
def test_a_hint_list_with_a_part_that_is_not_a_number_is_the_longest_of_the_others(
    numbers: list[int], garbage: str, now: float
) -> None:
    """A readable wait is never undercut: garbage beside it (a proxy's, say) is skipped."""
    joined = ", ".join([*map(str, numbers), garbage])
    assert parse_ratelimit_reset(joined, now) == parse_ratelimit_reset(
        ", ".join(map(str, numbers)), now
    )
    assert parse_retry_after(joined, now) == float(max(numbers))


@pytest.mark.parametrize("value", ["1234567890123456", "1.1234567890", "9" * 60])
def test_long_numbers_are_read_so_the_policy_can_refuse_them_clearly(value: str) -> None:
    """An absurd Retry-After is the policy's to refuse (max_hint), not garbage to ignore."""
    assert parse_retry_after(value, FIXED_NOW) == float(value)


@pytest.mark.parametrize("digits", [309, 400, 1000])
def test_delta_seconds_too_long_for_a_float_are_no_hint_not_infinity(digits: int) -> None:
    """Past 308 digits ``float()`` gives inf, which the docstring promises never to return.

    An infinite hint reached the sleep of a policy with ``max_hint=inf``.
    """
    value = "9" * digits
    assert parse_retry_after(value, FIXED_NOW) is None
    assert parse_retry_after(f"120, {value}", FIXED_NOW) == 120.0
    assert hint_from_headers({"Retry-After": value}, FIXED_NOW) is None


def test_the_longest_delta_seconds_a_float_holds_is_still_read() -> None:
    assert parse_retry_after("9" * 308, FIXED_NOW) == float("9" * 308)


# --- The server's clock: a point in time is read against the response's Date ----


@given(
    EPOCH_SECONDS,
    st.integers(min_value=0, max_value=7200),
    st.floats(min_value=-86_400.0, max_value=86_400.0),
)
def test_a_point_in_time_is_read_against_the_responses_date_whatever_the_clients_skew(
    server_now: int, ahead: int, skew: float
) -> None:
    """The wait is what the server meant, however far (up to a day) the client's clock is off."""
    headers = {"Date": http_date(server_now), RETRY_AFTER: http_date(server_now + ahead)}
    assert hint_from_headers(headers, server_now + skew) == Hint(float(ahead), RETRY_AFTER)
    epoch_reset = {"Date": http_date(server_now), RATELIMIT_RESET: str(server_now + ahead)}
    assert hint_from_headers(epoch_reset, server_now + skew) == Hint(float(ahead), RATELIMIT_RESET)


def test_a_server_a_minute_fast_does_not_push_a_full_windows_hint_past_max_hint() -> None:
    """Seen on an independent mock: 3,590 s asked, the client's clock 30 s slow, 3,620 s read."""
    server_now = int(FIXED_NOW)
    headers = {"Date": http_date(server_now), RETRY_AFTER: http_date(server_now + 3590)}
    assert hint_from_headers(headers, server_now - 30) == Hint(3590.0, RETRY_AFTER)


@pytest.mark.parametrize(
    "date",
    ["yesterday", "", "Thu, 01 Jan 1970 00:00:00 GMT", "Wed, 21 Oct 2015 07:28:00"],
)
def test_a_missing_broken_or_far_off_date_leaves_the_clients_clock(date: str) -> None:
    """Garbage, a zoneless date, or one further than a day from now: ``now`` stands in."""
    headers = {"Date": date, RETRY_AFTER: http_date(int(FIXED_NOW) + 90)}
    assert hint_from_headers(headers, FIXED_NOW) == Hint(90.0, RETRY_AFTER)
    assert hint_from_headers({RETRY_AFTER: http_date(int(FIXED_NOW) + 90)}, FIXED_NOW) == Hint(
        90.0, RETRY_AFTER
    )


def test_delta_seconds_do_not_depend_on_the_date() -> None:
    headers = {"Date": http_date(int(FIXED_NOW) + 600), RETRY_AFTER: "120"}
    assert hint_from_headers(headers, FIXED_NOW) == Hint(120.0, RETRY_AFTER)


# --- Wrong types: a TypeError naming the argument -------------------------------------


@pytest.mark.parametrize("parse", [parse_retry_after, parse_ratelimit_reset])
@pytest.mark.parametrize(
    ("value", "now", "named"),
    [
        (None, 0.0, "value"),  # AttributeError: 'NoneType' object has no attribute 'strip'
        (b"120", 0.0, "value"),
        (120, 0.0, "value"),
        ("120", "0", "now"),
        ("120", None, "now"),
        ("120", True, "now"),
    ],
)
def test_a_parser_refuses_the_wrong_types_naming_the_argument(
    parse: Any, value: object, now: object, named: str
) -> None:
    with pytest.raises(TypeError, match=rf"^{named} must be"):
        parse(value, now)


@pytest.mark.parametrize(
    ("headers", "now", "named"),
    [
        ([("Retry-After", "120")], FIXED_NOW, "headers"),
        ("Retry-After: 120", FIXED_NOW, "headers"),
        ({"Retry-After": "120"}, None, "now"),
        ({"Retry-After": 120}, FIXED_NOW, r"headers\['Retry-After'\]"),
        ({"X-RateLimit-Reset": [120]}, FIXED_NOW, r"headers\['X-RateLimit-Reset'\]"),
        ({"Date": 0}, FIXED_NOW, r"headers\['Date'\]"),
    ],
)
def test_hint_from_headers_refuses_the_wrong_types_naming_the_argument(
    headers: object, now: object, named: str
) -> None:
    with pytest.raises(TypeError, match=rf"^{named} must be"):
        hint_from_headers(headers, now)  # type: ignore[arg-type]
