"""The errors (``_exceptions.py``): hierarchy, context fields, messages without secrets.

The hierarchy is pinned twice: against an explicit table, and against the
tree drawn in the module docstring, so the picture and the code cannot drift
apart.  The clients' errors are checked end to end, sync and async mirrored.
"""

from __future__ import annotations

import base64
import gc
import pickle
import re
import threading
import traceback
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import respx
from hypothesis import given
from hypothesis import strategies as st

import bb_backoff
from bb_backoff import (
    AsyncBitbucketClient,
    BitbucketClient,
    BitbucketError,
    ExponentialBackoff,
    HTTPStatusError,
    InvalidResponse,
    NotFound,
    PaginationError,
    RateLimited,
    RetriesExhausted,
    Unauthorized,
    UnsafeURL,
)
from bb_backoff import _exceptions as exceptions_module
from bb_backoff._exceptions import SECRET_MINIMUM, redact_url
from bb_backoff._flipper_redis import _redact_url as flipper_redact_url
from bb_backoff._outcomes import ERROR_TEXT_LIMIT
from bb_backoff._redis_clients import url_passwords
from bb_backoff.testing import VirtualClock

BASE_URL = "https://api.bitbucket.org/2.0"

PARENTS: list[tuple[type[Exception], type[Exception]]] = [
    (BitbucketError, Exception),
    (HTTPStatusError, BitbucketError),
    (Unauthorized, HTTPStatusError),
    (NotFound, HTTPStatusError),
    (RetriesExhausted, BitbucketError),
    (RateLimited, RetriesExhausted),
    (UnsafeURL, BitbucketError),
    (InvalidResponse, BitbucketError),
    (PaginationError, InvalidResponse),
]
ERRORS = [child for child, _parent in PARENTS]

# Minimal required arguments beyond the message, per class.
REQUIRED: dict[type[Exception], dict[str, Any]] = {
    HTTPStatusError: {"status": 500},
    Unauthorized: {"status": 401},
    NotFound: {"status": 404},
}


def make(kind: type[Exception], message: str = "boom", **fields: Any) -> BitbucketError:
    error = kind(message, **REQUIRED.get(kind, {}), **fields)
    assert isinstance(error, BitbucketError)
    return error


# -- hierarchy -----------------------------------------------------------------------


@pytest.mark.parametrize(("child", "parent"), PARENTS, ids=lambda kind: kind.__name__)
def test_each_error_has_the_documented_direct_parent(
    child: type[Exception], parent: type[Exception]
) -> None:
    assert child.__bases__ == (parent,)
    assert issubclass(child, parent)


@pytest.mark.parametrize(
    ("kind", "not_a"),
    [
        (RateLimited, HTTPStatusError),
        (Unauthorized, NotFound),
        (UnsafeURL, InvalidResponse),
        (PaginationError, RetriesExhausted),
        (HTTPStatusError, httpx.HTTPStatusError),
    ],
    ids=lambda kind: kind.__name__,
)
def test_sibling_branches_do_not_overlap(kind: type[Exception], not_a: type[Exception]) -> None:
    assert not issubclass(kind, not_a)


def docstring_tree() -> list[tuple[str, str | None]]:
    """``(class name, parent name)`` pairs from the tree in the module docstring."""
    pairs: list[tuple[str, str | None]] = []
    stack: list[tuple[int, str]] = []
    doc = exceptions_module.__doc__ or ""
    for line in doc.splitlines():
        found = re.match(r"^(\s*(?:[│├└─]\s*)*)([A-Z][A-Za-z]+)\s{2,}", line)
        if found is None:
            continue
        depth = len(found.group(1))
        while stack and stack[-1][0] >= depth:
            stack.pop()
        pairs.append((found.group(2), stack[-1][1] if stack else None))
        stack.append((depth, found.group(2)))
    return pairs


def test_hierarchy_matches_the_tree_in_the_module_docstring() -> None:
    drawn = docstring_tree()
    actual = [
        (child.__name__, None if parent is Exception else parent.__name__)
        for child, parent in PARENTS
    ]
    assert drawn == actual


@pytest.mark.parametrize("kind", ERRORS, ids=lambda kind: kind.__name__)
def test_every_error_is_exported_from_the_package(kind: type[Exception]) -> None:
    assert getattr(bb_backoff, kind.__name__) is kind
    assert kind.__name__ in bb_backoff.__all__


# -- context fields and messages ---------------------------------------------------------


@pytest.mark.parametrize("kind", ERRORS, ids=lambda kind: kind.__name__)
def test_every_error_carries_flag_variant_and_attempts(kind: type[Exception]) -> None:
    error = make(kind, flag_variant="on", attempts=3, method="GET", url=f"{BASE_URL}/user")
    assert (error.flag_variant, error.attempts, error.method, error.url) == (
        "on",
        3,
        "GET",
        f"{BASE_URL}/user",
    )
    assert str(error) == f"boom (GET {BASE_URL}/user) [after 3 attempts, flag on]"


@pytest.mark.parametrize("kind", ERRORS, ids=lambda kind: kind.__name__)
def test_defaults_mean_no_request_ran(kind: type[Exception]) -> None:
    error = make(kind)
    assert (error.flag_variant, error.attempts, error.method, error.url) == (None, 0, None, None)
    assert str(error) == "boom"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"attempts": 1}, "boom [after 1 attempt]"),
        ({"flag_variant": "off"}, "boom [flag off]"),
        ({"method": "GET"}, "boom"),  # a method without a URL says nothing
        ({"method": "GET", "url": f"{BASE_URL}/user"}, f"boom (GET {BASE_URL}/user)"),
    ],
)
def test_str_includes_only_the_context_that_is_there(fields: dict[str, Any], expected: str) -> None:
    assert str(BitbucketError("boom", **fields)) == expected


def test_http_status_error_keeps_status_message_and_detail() -> None:
    error = NotFound(
        "HTTP 404: Repository not found",
        status=404,
        error_message="Repository not found",
        detail="acme/app",
        flag_variant="off",
        attempts=1,
    )
    assert (error.status, error.error_message, error.detail) == (
        404,
        "Repository not found",
        "acme/app",
    )
    assert (error.flag_variant, error.attempts) == ("off", 1)


def test_rate_limited_keeps_the_retry_fields_and_the_last_hint() -> None:
    error = RateLimited(
        "rate limited",
        last_hint=120.0,
        status=429,
        waited=300.0,
        elapsed=301.5,
        stop_reason="budget",
        flag_variant="on",
        attempts=4,
    )
    fields = (error.last_hint, error.status, error.waited, error.elapsed, error.stop_reason)
    assert fields == (120.0, 429, 300.0, 301.5, "budget")
    assert (error.flag_variant, error.attempts) == ("on", 4)


@pytest.mark.parametrize("kind", ERRORS, ids=lambda kind: kind.__name__)
def test_errors_survive_a_pickle_round_trip(kind: type[Exception]) -> None:
    """Process pools and job queues pickle exceptions raised in workers."""
    error = make(kind, flag_variant="on", attempts=2, method="GET", url=f"{BASE_URL}/user")
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 (our own bytes)
    assert type(copy) is kind
    assert isinstance(copy, BitbucketError)
    assert (str(copy), copy.flag_variant, copy.attempts) == (str(error), "on", 2)


# -- redact_url -------------------------------------------------------------------------

SECRET_PARAMS = [
    "access_token",
    "refresh_token",
    "token",
    "key",
    "secret",
    "client_secret",
    "password",
    "ACCESS_TOKEN",
    "Token",
]


def test_redact_url_removes_userinfo() -> None:
    assert redact_url("https://user:hunter2@api.bitbucket.org/2.0/user") == (
        "https://api.bitbucket.org/2.0/user"
    )
    assert redact_url("https://x-token-auth:tok@bitbucket.org:8443/a") == (
        "https://bitbucket.org:8443/a"
    )


@pytest.mark.parametrize(
    "url",
    ["user:s3cret@127.0.0.1:6379/0", ":s3cret@127.0.0.1:6379", "//user:s3cret@host/x"],
)
def test_redact_url_removes_userinfo_written_without_a_scheme(url: str) -> None:
    # A Redis address is often written this way; the password must not show.
    assert "s3cret" not in redact_url(url)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "unix:///tmp/redis.sock?db=0&password=hush",
            "unix:///tmp/redis.sock?db=0&password=[redacted]",
        ),
        ("file:///etc/hosts", "file:///etc/hosts"),
        ("http:///path", "http:///path"),
    ],
)
def test_redact_url_keeps_an_empty_authority_as_written(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        # An email address as the user name (Bitbucket's API tokens go with one).
        (
            "https://ada@example.com:s3cret@api.bitbucket.org/2.0/x",
            "https://api.bitbucket.org/2.0/x",
        ),
        ("redis://me@corp.com:s3cret@127.0.0.1:1/0", "redis://127.0.0.1:1/0"),
        # ... and a password holding "/" besides.
        ("redis://me@corp.com:s3/cret@host/0", "redis://host/0"),
        ("http://a@b:s3cret@c/x", "http://c/x"),
        # An "@" in the query is not a user part.
        (
            "https://api.bitbucket.org/2.0/x?email=a@b.com",
            "https://api.bitbucket.org/2.0/x?email=a@b.com",
        ),
        ("https://host:8443/a?e=a@b", "https://host:8443/a?e=a@b"),
        # A password cut at its "?" or "/" where only a port is left before.
        ("redis://:?s3cret=x@127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:12/s3cret@127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("unix://:s3?cret@/run/redis.sock?db=0", "unix:///run/redis.sock?db=0"),
        # ... and where what is left reads as a host and a port (the digits of
        # "1234?s3cret" or "1234/s3cret"): a Redis URL with an "@" after its
        # host shows neither its port nor anything after the host.
        ("rediss://default:1234?s3cret@h:1/0", "rediss://default?[redacted]"),
        ("redis://default:1234?s3cret&more=1@h:1/0", "redis://default?[redacted]"),
        ("redis://default:1234#s3cret&x@h/0", "redis://default#[redacted]"),
        ("redis://default:1234/s3cret@h:1/0", "redis://default/[redacted]"),
        (
            "redis://127.0.0.1:1/0?username=me@example.com&password=s3cret",
            "redis://127.0.0.1/[redacted]?[redacted]",
        ),
        ("redis://127.0.0.1:1/0?password=s3cret@prod", "redis://127.0.0.1/[redacted]?[redacted]"),
        ("redis://[::1]:1/0?client_name=w@h", "redis://[::1]/[redacted]?[redacted]"),
        # A unix:// URL needs no host: one before an "@" in the path was a password's.
        ("unix://default:1234/s3cret@/tmp/redis.sock", "unix:///tmp/redis.sock"),
        ("unix:///run/redis/server@main.sock?db=0", "unix:///run/redis/server@main.sock?db=0"),
        ("https://[::1]:8080/x", "https://[::1]:8080/x"),
    ],
)
def test_redact_url_finds_the_user_part_whatever_it_holds(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "s3" not in redact_url(url)


def test_redact_url_accepts_httpx_urls() -> None:
    url = httpx.URL("https://user:hunter2@api.bitbucket.org/2.0/user?access_token=abc123")
    redacted = redact_url(url)
    assert "hunter2" not in redacted
    assert "abc123" not in redacted
    assert redacted.startswith("https://api.bitbucket.org/2.0/user?access_token=")


@pytest.mark.parametrize("name", SECRET_PARAMS)
def test_redact_url_hides_secret_looking_query_values(name: str) -> None:
    redacted = redact_url(f"{BASE_URL}/user?pagelen=50&{name}=s3cr3t-value&page=2")
    assert "s3cr3t-value" not in redacted
    assert "pagelen=50" in redacted
    assert "page=2" in redacted
    assert f"{name}=" in redacted


@pytest.mark.parametrize("name", SECRET_PARAMS)
def test_redact_url_hides_secret_looking_path_parameters(name: str) -> None:
    """``/user;access_token=...``: RFC 3986 leaves a segment's ``;name=value`` to the server."""
    url = f"{BASE_URL}/repositories;v=1;{name}=s3cr3t-value/acme;{name}=sk-other?page=2"
    assert redact_url(url) == (
        f"{BASE_URL}/repositories;v=1;{name}=[redacted]/acme;{name}=[redacted]?page=2"
    )


def test_redact_url_replaces_the_value_with_the_documented_marker() -> None:
    """The docstring promises ``[redacted]``, so logs can be grepped for it."""
    assert redact_url(f"{BASE_URL}/user?access_token=abc") == (
        f"{BASE_URL}/user?access_token=[redacted]"
    )


@pytest.mark.parametrize(
    "url",
    [
        f"{BASE_URL}/repositories/acme?role=member&sort=created_on&pagelen=50",
        f"{BASE_URL}/repositories/acme/app/pullrequests?state=ALL&q=title%20~%20%22fix%22",
        f"{BASE_URL}/user",
        "https://api.bitbucket.org:8443/2.0/user#frag",
        f"{BASE_URL}/repositories/acme;v=1;rev=main/app",
    ],
)
def test_redact_url_leaves_urls_without_secrets_unchanged(url: str) -> None:
    assert redact_url(url) == url


secret_values = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
    min_size=12,
    max_size=40,
).map("sk_{}".format)


@given(name=st.sampled_from(SECRET_PARAMS), value=secret_values)
def test_redacted_path_parameters_never_contain_the_secret(name: str, value: str) -> None:
    assert value not in redact_url(f"{BASE_URL}/user;{name}={value}")


@given(
    name=st.sampled_from(SECRET_PARAMS),
    value=secret_values,
    password=secret_values,
    other=st.dictionaries(
        st.sampled_from(["page", "pagelen", "q", "sort", "state"]),
        st.text(alphabet="abc012 ~=&", max_size=8),
        max_size=3,
    ),
)
def test_redacted_urls_never_contain_the_secrets(
    name: str, value: str, password: str, other: dict[str, str]
) -> None:
    query = str(httpx.QueryParams({**other, name: value}))
    redacted = redact_url(f"https://me:{password}@api.bitbucket.org/2.0/user?{query}")
    assert value not in redacted
    assert password not in redacted
    assert redacted.startswith("https://api.bitbucket.org/2.0/user?")


def test_error_urls_are_redacted_and_str_never_shows_secrets() -> None:
    url = "https://me:hunter2@api.bitbucket.org/2.0/user?access_token=abc123"
    for kind in ERRORS:
        error = make(kind, method="GET", url=url, attempts=1)
        assert error.url is not None
        assert "hunter2" not in error.url
        assert "abc123" not in error.url
        assert "hunter2" not in str(error)
        assert "abc123" not in str(error)


# -- the clients' errors ----------------------------------------------------------------

TOKEN_QUERY = "access_token=tok-SECRET-123"


def api(status: int, **kwargs: Any) -> respx.Router:
    router = respx.Router(assert_all_called=False)
    router.get(url__startswith=f"{BASE_URL}/").respond(status, **kwargs)
    return router


def sync_client(router: respx.Router, clock: VirtualClock, **options: Any) -> BitbucketClient:
    return BitbucketClient(
        transport=httpx.MockTransport(router.handler),
        clock=clock.monotonic,
        now=clock.time,
        sleep=clock.sleep,
        **options,
    )


def async_client(router: respx.Router, clock: VirtualClock, **options: Any) -> AsyncBitbucketClient:
    return AsyncBitbucketClient(
        transport=httpx.MockTransport(router.async_handler),
        clock=clock.monotonic,
        now=clock.time,
        sleep=clock.sleep,
        **options,
    )


NOT_FOUND_BODY = {"type": "error", "error": {"message": "Repository not found", "detail": "x"}}
RETRY_POLICY = ExponentialBackoff(initial=1.0, max_delay=8.0, jitter="none", error_attempts=3)
RATE_POLICY = ExponentialBackoff(initial=1.0, max_delay=8.0, jitter="none", max_attempts=2)


def assert_not_found(error: NotFound) -> None:
    assert (error.status, error.error_message, error.detail) == (
        404,
        "Repository not found",
        "x",
    )
    assert (error.flag_variant, error.attempts, error.method) == ("on", 1, "GET")
    assert error.url is not None
    assert error.url.startswith(f"{BASE_URL}/repositories/acme/app?access_token=")
    assert "SECRET" not in error.url
    assert "SECRET" not in str(error)


def test_sync_client_404_raises_not_found_with_context_and_no_secret() -> None:
    with (
        sync_client(api(404, json=NOT_FOUND_BODY), VirtualClock()) as client,
        pytest.raises(NotFound) as caught,
    ):
        client.get(f"/repositories/acme/app?{TOKEN_QUERY}")
    assert_not_found(caught.value)


@pytest.mark.anyio
async def test_async_client_404_raises_not_found_with_context_and_no_secret() -> None:
    async with async_client(api(404, json=NOT_FOUND_BODY), VirtualClock()) as client:
        with pytest.raises(NotFound) as caught:
            await client.get(f"/repositories/acme/app?{TOKEN_QUERY}")
    assert_not_found(caught.value)


def assert_exhausted(error: RetriesExhausted, clock: VirtualClock) -> None:
    assert type(error) is RetriesExhausted
    assert (error.status, error.attempts, error.flag_variant) == (503, 3, "on")
    assert (error.waited, error.elapsed, error.stop_reason) == (3.0, 3.0, "attempts")
    assert clock.sleeps == [1.0, 2.0]
    assert "SECRET" not in str(error)


def test_sync_client_gives_up_on_503s_with_retries_exhausted() -> None:
    clock = VirtualClock()
    client = sync_client(api(503), clock, policy=RETRY_POLICY)
    with client, pytest.raises(RetriesExhausted) as caught:
        client.get(f"/user?{TOKEN_QUERY}")
    assert_exhausted(caught.value, clock)


@pytest.mark.anyio
async def test_async_client_gives_up_on_503s_with_retries_exhausted() -> None:
    clock = VirtualClock()
    async with async_client(api(503), clock, policy=RETRY_POLICY) as client:
        with pytest.raises(RetriesExhausted) as caught:
            await client.get(f"/user?{TOKEN_QUERY}")
    assert_exhausted(caught.value, clock)


def assert_rate_limited(error: RateLimited) -> None:
    assert (error.status, error.attempts, error.flag_variant, error.last_hint) == (
        429,
        2,
        "on",
        5.0,
    )
    assert (error.waited, error.stop_reason) == (5.0, "attempts")
    assert error.error_message == "Rate limit for this resource has been exceeded"


RATE_LIMIT = {
    "text": "Rate limit for this resource has been exceeded",
    "headers": {"Retry-After": "5"},
}


def test_sync_client_gives_up_on_429s_with_rate_limited() -> None:
    client = sync_client(api(429, **RATE_LIMIT), VirtualClock(), policy=RATE_POLICY)
    with client, pytest.raises(RateLimited) as caught:
        client.get("/user")
    assert_rate_limited(caught.value)


@pytest.mark.anyio
async def test_async_client_gives_up_on_429s_with_rate_limited() -> None:
    async with async_client(api(429, **RATE_LIMIT), VirtualClock(), policy=RATE_POLICY) as client:
        with pytest.raises(RateLimited) as caught:
            await client.get("/user")
    assert_rate_limited(caught.value)


def test_sync_client_non_json_body_raises_invalid_response() -> None:
    router = api(200, text="<html>maintenance</html>", headers={"Content-Type": "text/html"})
    with sync_client(router, VirtualClock()) as client, pytest.raises(InvalidResponse) as caught:
        client.get("/user")
    assert str(caught.value) == (
        f"expected JSON, got text/html (HTTP 200) (GET {BASE_URL}/user) [after 1 attempt, flag on]"
    )
    assert (caught.value.flag_variant, caught.value.attempts) == ("on", 1)


@pytest.mark.anyio
async def test_async_client_non_json_body_raises_invalid_response() -> None:
    router = api(200, text="<html>maintenance</html>", headers={"Content-Type": "text/html"})
    async with async_client(router, VirtualClock()) as client:
        with pytest.raises(InvalidResponse) as caught:
            await client.get("/user")
    assert str(caught.value) == (
        f"expected JSON, got text/html (HTTP 200) (GET {BASE_URL}/user) [after 1 attempt, flag on]"
    )
    assert (caught.value.flag_variant, caught.value.attempts) == ("on", 1)


@pytest.mark.parametrize(
    "url", ["https://[api.bitbucket.org/x", "http://[::1/x", "https://h:99999999999/x"]
)
def test_redact_url_never_raises_on_a_malformed_url(url: str) -> None:
    """An error message must not fail on the URL it reports."""
    assert redact_url(url) in {"<unparseable URL>", url}


@pytest.mark.parametrize("name", ["jwt", "signature", "sig"])
def test_redact_url_hides_connect_jwts_and_signatures(name: str) -> None:
    assert redact_url(f"https://api.bitbucket.org/2.0/user?{name}=SECRET") == (
        f"https://api.bitbucket.org/2.0/user?{name}=[redacted]"
    )


def test_redact_url_hides_tokens_in_the_fragment() -> None:
    assert redact_url("https://bitbucket.org/cb#access_token=SECRET&scope=x") == (
        "https://bitbucket.org/cb#access_token=[redacted]&scope=x"
    )


# -- every message capped, printable, secret-free ------------------------------------------


@given(
    password=st.text(
        alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789#/?:;=&%!$",
        min_size=12,
        max_size=40,
    ).map("pw{}".format),
    path=st.sampled_from(["", "/", "/2.0/user", "/2.0/user?page=2"]),
)
def test_a_password_with_url_delimiters_in_it_never_survives_redaction(
    password: str, path: str
) -> None:
    """urlsplit cuts ``user:pa#ss@host`` at the ``#``; the userinfo must still go."""
    redacted = redact_url(f"https://ada:{password}@api.bitbucket.org{path}")
    assert password not in redacted
    assert redacted.startswith("https://api.bitbucket.org")


_PIECE = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789!$%;:", min_size=1, max_size=12)


@given(
    head=_PIECE,
    cut=st.sampled_from(["&", "#"]),
    rest=st.tuples(_PIECE, st.none() | _PIECE),
    before=st.sampled_from(["", "db=1&", "socket_timeout=2&"]),
    scheme=st.sampled_from(["redis://127.0.0.1:6379/0", "rediss://h:6380", "unix:///r.sock"]),
    # redis-py reads "password"; the others are refused, and shown the same way.
    name=st.sampled_from(["password", "PassWord", "passwd", "auth_token"]),
)
def test_a_redis_query_password_cut_at_an_ampersand_or_a_hash_shows_no_piece_of_it(
    *, head: str, cut: str, rest: tuple[str, str | None], before: str, scheme: str, name: str
) -> None:
    """``?password=s3c&ret`` or ``#ret``: redis-py reads ``s3c``, and ``ret`` as a field."""
    field, value = rest
    tail = f"TL{field}" if value is None else f"TL{field}=VL{value}"
    url = f"{scheme}?{before}{name}=HD{head}{cut}{tail}"
    for shown in (redact_url(url), flipper_redact_url(url)):
        for piece in (f"HD{head}", f"TL{field}", f"VL{value}"):
            assert piece not in shown, (url, shown)
        assert shown.startswith(scheme)
        assert before in shown  # what comes before the password still shows


# Found by a review: a password holding "@" and then "#" ends the user part
# at its own "@" (what follows reads as a host), and one holding "#" and then
# "@" left its last piece in FlipperFlag's description.
@pytest.mark.parametrize(
    "url",
    [
        "redis://:PWa@PWb#PWc@127.0.0.1:6379/0",
        "redis://:PWa@PWb?client_name=PWc@127.0.0.1:6379/0",
        "redis://:PWa#PWb@PWc@127.0.0.1:6379/0",
        "redis://me:PWa?PWb@PWc@127.0.0.1:6379/0",
    ],
)
def test_a_redis_password_holding_an_at_sign_and_a_delimiter_shows_no_piece(url: str) -> None:
    for shown in (redact_url(url), flipper_redact_url(url)):
        assert "PW" not in shown, shown
    # Where redis-py reads a piece as the host, its errors name it: scrubbed too.
    host = urlsplit(url).netloc.rpartition("@")[2]
    if host.startswith("PW"):
        assert f"to {host.lower()}:" in url_passwords(url)  # lower-cased, as redis-py reads it


def test_a_unix_url_has_no_host_so_what_stands_there_before_an_at_sign_is_a_user_part() -> None:
    # Found by a review: "alice:" read as a host with an empty port, and the
    # password "/s3c?ret" cut at its "/" showed as the path.
    url = "unix://alice:/s3c?r3t@/run/redis.sock"
    assert redact_url(url) == "unix:///run/redis.sock"
    assert flipper_redact_url(url) == "unix://alice:***@/run/redis.sock"


def test_a_unix_socket_path_with_an_at_sign_shows_unless_it_may_end_a_cut_password() -> None:
    # A user part can have ended at an "@" only where a "/" follows it: the
    # socket path starts there (found by a review: any "@" hid the path and
    # the database, and an operator could not tell which socket failed).
    kept = "unix://:pw@/run/redis@6379.sock?db=1"
    assert redact_url(kept) == "unix:///run/redis@6379.sock?db=1"
    assert flipper_redact_url(kept) == "unix://:***@/run/redis@6379.sock?db=1"
    for cut in (
        "unix://:s3c@/tmp/r3t/x@/run/redis.sock?db=1",
        # redis-py also reads the socket from ?path=: the cut "@" ends the path
        # (found by a review of the commit that kept /run/redis@6379.sock).
        "unix://:s3c@/tmp/r3t@?path=/run/redis.sock",
        "unix://:s3c@/r3t@",
    ):
        for shown in (redact_url(cut), flipper_redact_url(cut)):
            assert "r3t" not in shown, shown
        assert any("r3t" in password for password in url_passwords(cut))


def test_a_redis_query_with_a_second_question_mark_is_hidden() -> None:
    # redis-py reads "/r.sock?password=s3cr3t" as the socket path: no name
    # says the value after the second "?" is a secret.
    url = "unix://?path=/run/redis.sock?password=s3cr3t"
    assert redact_url(url) == "unix://?[redacted]"
    assert flipper_redact_url(url) == "unix://?***"
    # A password cut at a "#" after it: the fragment goes too.
    assert redact_url("redis://h/0?db=0?password=s3c#r3t") == "redis://h/0?[redacted]#[redacted]"
    assert redact_url("https://x.example/a?b=c?d=e") == "https://x.example/a?b=c?d=e"


def test_flipper_hides_what_redact_url_hides_in_a_redis_query() -> None:
    for name in ("passwd", "api_key", "auth_token"):
        url = f"redis://127.0.0.1:1/0?db=1&{name}=s3c&r3t-pass"  # cut at its "&"
        assert flipper_redact_url(url) == f"redis://127.0.0.1:1/0?db=1&{name}=***&***"
        assert redact_url(url) == f"redis://127.0.0.1:1/0?db=1&{name}=[redacted]&[redacted]"


def test_a_redis_query_with_fields_after_its_password_hides_them_and_only_them() -> None:
    url = "redis://127.0.0.1:6379/0?db=1&password=s3cr3t&socket_timeout=2"
    assert redact_url(url) == "redis://127.0.0.1:6379/0?db=1&password=[redacted]&[redacted]"
    assert flipper_redact_url(url) == "redis://127.0.0.1:6379/0?db=1&password=***&***"
    # Not Redis: "&" separates fields, as a URL's query always does.
    assert redact_url("https://x.example/?password=s3cr3t&page=2") == (
        "https://x.example/?password=[redacted]&page=2"
    )


@pytest.mark.parametrize(
    "name",
    ["api_token", "private_token", "apikey", "x-api-key", "authorization", "sessionid", "code"],
)
def test_redact_url_hides_more_names_that_carry_credentials(name: str) -> None:
    redacted = redact_url(f"{BASE_URL}/user?{name}=s3cr3t-value&pagelen=10")
    assert "s3cr3t-value" not in redacted
    assert "pagelen=10" in redacted


def test_a_huge_url_is_cut_short_in_messages() -> None:
    redacted = redact_url(f"{BASE_URL}/user?q=" + "x" * 100_000)
    assert len(redacted) < 600


@given(text=st.text(max_size=3000))
def test_printable_text_is_printable_and_bounded(text: str) -> None:
    cleaned = exceptions_module.printable(text, 200)
    assert cleaned.isprintable()
    assert len(cleaned) <= 200 * 10 + 40  # each kept character escapes to at most 10


@pytest.mark.parametrize("kind", ERRORS, ids=lambda kind: kind.__name__)
def test_every_error_message_is_capped_and_printable(kind: type[Exception]) -> None:
    long = make(kind, "line one\nline two \x1b[2J" + "y" * 1_000_000, method="GET", attempts=1)
    assert str(long).isprintable()
    assert len(long.message) < 1_100
    assert pickle.loads(pickle.dumps(long)).message == long.message  # noqa: S301 (our own bytes)


# -- a credential the server echoes back ----------------------------------------------------

ECHO_TOKEN = "echoed-SECRET-token-value"
ECHO_PASSWORD = "echoed-SECRET-api-token"
ECHO_CLIENT_SECRET = "echoed-SECRET-consumer"
ECHO_REFRESH = "echoed-SECRET-refresh"
ECHO_ACCESS = "echoed-SECRET-access"


def echo_credentials(kind: str, clock: VirtualClock) -> tuple[object, list[str]]:
    """A credential of ``kind`` and every form of it a server could quote back."""
    if kind == "bearer":
        return bb_backoff.BearerToken(ECHO_TOKEN), [ECHO_TOKEN]
    if kind == "basic":
        encoded = base64.b64encode(f"me@example.com:{ECHO_PASSWORD}".encode()).decode()
        return bb_backoff.BasicAuth("me@example.com", ECHO_PASSWORD), [ECHO_PASSWORD, encoded]
    credentials = bb_backoff.OAuth2(
        client_id="consumer",
        client_secret=ECHO_CLIENT_SECRET,
        refresh_token=ECHO_REFRESH,
        access_token=ECHO_ACCESS,
        expires_at=clock.time() + 7200,
    )
    return credentials, [ECHO_CLIENT_SECRET, ECHO_REFRESH, ECHO_ACCESS]


def chain_text(error: BaseException) -> str:
    """Everything an error and its chain show: str, repr, fields, the formatted traceback."""
    parts = ["".join(traceback.format_exception(error))]
    seen: BaseException | None = error
    while seen is not None:
        parts += [str(seen), repr(seen), repr(getattr(seen, "__dict__", {})), repr(seen.args)]
        if isinstance(seen, BitbucketError):
            parts.append(repr(pickle.loads(pickle.dumps(seen)).__dict__))  # noqa: S301 (ours)
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


def echoing(request: httpx.Request) -> httpx.Response:
    """A server that quotes the request's Authorization header in its error."""
    quoted = request.headers.get("Authorization", "")
    if request.url.path.endswith("/json"):
        body = {"type": "error", "error": {"message": f"bad {quoted}", "detail": quoted}}
        return httpx.Response(400, json=body)
    if request.url.path.endswith("/html"):
        return httpx.Response(200, text=f"<html>{quoted}</html>")
    if request.url.path.endswith("/down"):
        raise httpx.ConnectError(f"could not send {quoted}", request=request)
    return httpx.Response(401, text=f"Bad credentials: {quoted}")


@pytest.mark.parametrize("kind", ["bearer", "basic", "oauth"])
@pytest.mark.parametrize("path", ["/user", "/json", "/html", "/down"])
def test_a_credential_the_server_echoes_back_never_reaches_an_error_or_its_chain(
    kind: str, path: str
) -> None:
    clock = VirtualClock()
    credentials, secrets = echo_credentials(kind, clock)
    with (
        BitbucketClient(
            auth=credentials,  # type: ignore[arg-type]
            transport=httpx.MockTransport(echoing),
            policy=ExponentialBackoff(error_attempts=2),
            clock=clock.monotonic,
            now=clock.time,
            sleep=clock.sleep,
        ) as client,
        pytest.raises(BitbucketError) as caught,
    ):
        client.get(path)
    shown = chain_text(caught.value)
    assert "[redacted]" in shown or path == "/html"
    for secret in secrets:
        assert secret not in shown


@pytest.mark.parametrize("kept", [6, 12, len(ECHO_TOKEN) - 1])
def test_a_token_quoted_across_the_plain_text_cut_leaves_no_prefix_in_the_error(
    kept: int,
) -> None:
    """The body is scrubbed before it is cut: cut first, ``kept`` characters of the token stayed."""
    pad = ERROR_TEXT_LIMIT - len("Bearer ") - kept

    def quoting(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, text="x" * pad + request.headers["Authorization"])

    clock = VirtualClock()
    with (
        BitbucketClient(
            auth=bb_backoff.BearerToken(ECHO_TOKEN),
            transport=httpx.MockTransport(quoting),
            gate=False,
            clock=clock.monotonic,
            now=clock.time,
            sleep=clock.sleep,
        ) as client,
        pytest.raises(bb_backoff.Unauthorized) as caught,
    ):
        client.get("/user")
    assert caught.value.error_message == ("x" * pad + "Bearer [redacted]")[:ERROR_TEXT_LIMIT]
    shown = chain_text(caught.value)
    for length in range(SECRET_MINIMUM, len(ECHO_TOKEN) + 1):
        assert ECHO_TOKEN[:length] not in shown


def test_a_refreshed_oauth_token_is_scrubbed_too() -> None:
    clock = VirtualClock()
    credentials, _secrets = echo_credentials("oauth", clock)
    assert isinstance(credentials, bb_backoff.OAuth2)
    exceptions_module.register_secrets(credentials, "rotated-SECRET-access")
    assert exceptions_module.scrub("token rotated-SECRET-access") == "token [redacted]"
    assert exceptions_module.scrub(f"token {ECHO_ACCESS}") == "token [redacted]"


@pytest.mark.parametrize(
    "quoted",
    [
        "ATATT3xFfGF0abc%2BDEF%2Fghi-jkl_mno%3D0A1B",  # percent-encoded
        "ATATT3xFfGF0abc%2bDEF%2fghi-jkl_mno%3d0A1B",  # lower-case hex digits
        "ATATT3xFfGF0abc%2BDEF/ghi-jkl_mno%3D0A1B",  # a path's quoting: "/" kept
    ],
)
def test_a_token_echoed_percent_encoded_is_scrubbed_too(quoted: str) -> None:
    """An Atlassian API token holds "=" (others "+" or "/"): a URL or a form quotes them."""
    token = "ATATT3xFfGF0abc+DEF/ghi-jkl_mno=0A1B"
    credentials = bb_backoff.BasicAuth("me@example.com", token)
    with (
        bb_backoff.BitbucketClient(
            auth=credentials,
            transport=httpx.MockTransport(
                lambda _request: httpx.Response(400, text=f"invalid request: api_token={quoted}")
            ),
            gate=False,
        ) as client,
        pytest.raises(bb_backoff.HTTPStatusError) as caught,
    ):
        client.get("/user")
    shown = chain_text(caught.value)
    assert "api_token=[redacted]" in shown
    assert quoted not in shown


# Found by an independent probe: only a credential's last 16 values were
# kept, so after seven refreshes (about twelve hours of 7,200 s tokens) the
# consumer's secret and its basic value were no longer scrubbed.
def test_a_credentials_first_values_stay_scrubbed_however_often_it_rotates() -> None:
    owner = _Credential()
    exceptions_module.register_secrets(owner, "consumer-SECRET-value", "first-SECRET-refresh")
    for rotation in range(100):
        exceptions_module.register_secrets(
            owner, f"access-{rotation:03d}-SECRET", f"refresh-{rotation:03d}-SECRET"
        )
    shown = exceptions_module.scrub(
        "consumer-SECRET-value first-SECRET-refresh access-099-SECRET refresh-099-SECRET"
    )
    assert shown == " ".join(["[redacted]"] * 4)
    # Rotated values long dead are let go: a long import rotates hundreds.
    assert exceptions_module.scrub("access-000-SECRET") == "access-000-SECRET"


def test_a_live_credential_stays_scrubbed_when_an_equal_one_is_dropped() -> None:
    """Credentials compare equal by value; the registry must not confuse two equal ones."""
    first = bb_backoff.BearerToken("equal-SECRET-token")
    second = bb_backoff.BearerToken("equal-SECRET-token")
    assert first == second
    del first
    gc.collect()
    assert "equal-SECRET-token" not in exceptions_module.scrub("say equal-SECRET-token")
    del second
    gc.collect()
    assert exceptions_module.scrub("say equal-SECRET-token") == "say equal-SECRET-token"


def test_values_too_short_to_be_a_credential_are_not_scrubbed() -> None:
    owner: object = type("Owner", (), {})()
    exceptions_module.register_secrets(owner, "abc", "", None)
    assert exceptions_module.scrub("abc") == "abc"


class _Credential:
    """A credential-like owner that can be part of a reference cycle."""

    cycle: object = None


def test_a_credential_collected_inside_the_secrets_lock_does_not_deadlock() -> None:
    # The collector runs weakref callbacks wherever it happens to run: inside
    # register_secrets or scrub of this very thread, holding the lock.  A
    # callback that takes the lock hangs the process; one that changes the
    # registry breaks the iteration.  Collect a registered credential with
    # the lock held, in a thread, so that a hang fails the test.
    done = threading.Event()

    def collect_under_the_lock() -> None:
        owner = _Credential()
        owner.cycle = owner  # only the collector frees it
        exceptions_module.register_secrets(owner, "cycled-SECRET-token")
        del owner
        with exceptions_module._SECRETS_LOCK:
            gc.collect()
        done.set()

    worker = threading.Thread(target=collect_under_the_lock, daemon=True)
    worker.start()
    worker.join(timeout=30.0)
    assert done.is_set(), "the weakref callback blocked on the secrets lock"
    # The dead credential is dropped by the next caller, and scrubbing works.
    assert exceptions_module.scrub("say cycled-SECRET-token") == "say cycled-SECRET-token"
    assert not any(
        reference() is None for reference, _first, _rotated in exceptions_module._SECRETS.values()
    )
