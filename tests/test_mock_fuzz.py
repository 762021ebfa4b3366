"""Fuzz of the mock's routes: random methods, paths, queries and headers through every driver.

Whatever comes in, the mock answers with a well-formed HTTP reply (a status
from 200 to 599, a JSON body that parses or a text body that decodes),
nothing raises out of the core, a transport or the ASGI app, and the
counters add up: every request is counted once, in the outcome its status
says, and every request the rate window admitted is in ``per_principal``.

The mocks run on a frozen virtual clock with no faults, so a 5xx could only
be the mock's own bug; the tests say there is none.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import MutableMapping
from typing import Any, Final
from urllib.parse import quote, urlencode, urlsplit

import httpx
from hypothesis import given
from hypothesis import strategies as st

from bb_backoff.testing import DatasetSize, MockBitbucket, MockCounters, VirtualClock

API: Final = "https://api.bitbucket.org/2.0"
LIMIT: Final = 8
TINY: Final = DatasetSize(
    repositories=2,
    pull_requests=3,
    comments_per_pull_request=1,
    issues=2,
    comments_per_issue=1,
    members=2,
)
# Principal kinds whose requests count against a rate window (see MockReply.principal).
PRINCIPALS: Final = frozenset({"access-token", "user", "consumer"})
OUTCOMES: Final = (
    "ok",
    "rate_limited",
    "server_errors",
    "resets",
    "timeouts",
    "unauthorized",
    "not_found",
    "bad_requests",
    "outage_calls",
)


def new_mock() -> MockBitbucket:
    clock = VirtualClock()
    return MockBitbucket(
        size=TINY,
        limit=LIMIT,
        clock=clock.monotonic,
        now=clock.time,
        sleep=clock.sleep,
        async_sleep=clock.sleep,
    )


# The mock's credentials are drawn from its seed (0), so every mock has the same ones.
CREDENTIALS: Final = new_mock()


# -- strategies ------------------------------------------------------------------------------

ascii_text = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=12)
any_text = st.text(max_size=12)
segments = st.one_of(
    st.sampled_from(
        [
            "acme",
            CREDENTIALS.dataset.workspace_uuid,
            *(repository.slug for repository in CREDENTIALS.dataset.repositories),
            "globex",
            "1",
            "2",
            "0",
            "999999999999",
            "-1",
            "pullrequests",
            "issues",
            "comments",
            "diff",
            "members",
            "workspaces",
            "permissions",
            "%2F",
            "%zz",
            "..",
            ".",
            "",
        ]
    ),
    any_text.map(lambda text: quote(text, safe="")),
    ascii_text,
)
shapes = st.sampled_from(
    [
        "/user",
        "/user/workspaces",
        "/user/permissions/{}",
        "/workspaces",
        "/workspaces/{}",
        "/workspaces/{}/members",
        "/repositories",
        "/repositories/{}",
        "/repositories/{}/{}",
        "/repositories/{}/{}/pullrequests",
        "/repositories/{}/{}/pullrequests/{}",
        "/repositories/{}/{}/pullrequests/{}/comments",
        "/repositories/{}/{}/pullrequests/{}/comments/{}",
        "/repositories/{}/{}/pullrequests/{}/diff",
        "/repositories/{}/{}/diff/{}:{}%0D{}",
        "/repositories/{}/{}/issues",
        "/repositories/{}/{}/issues/{}",
        "/repositories/{}/{}/issues/{}/comments",
        "/repositories/{}/{}/issues/{}/comments/{}",
    ]
)


@st.composite
def api_paths(draw: st.DrawFn) -> str:
    """A path under the API: a route's shape with drawn segments, or segments at random."""
    if draw(st.booleans()):
        shape = draw(shapes)
        filled = shape.format(*draw(st.lists(segments, min_size=6, max_size=6)))
    else:
        filled = "/" + "/".join(draw(st.lists(segments, max_size=6)))
    return "/2.0" + filled + draw(st.sampled_from(["", "", "/"]))


def real_paths(mock: MockBitbucket) -> tuple[list[str], list[str]]:
    """The listings and the resources the mock serves (a diff's target aside)."""
    listings = ["/user/workspaces", "/workspaces/acme/members", "/repositories/acme"]
    resources = ["/user", "/workspaces/acme"]
    for repository in mock.dataset.repositories:
        base = f"/repositories/{repository.full_name}"
        listings += [f"{base}/pullrequests", f"{base}/issues"]
        resources.append(base)
        for pull_request in repository.pull_requests:
            number = f"{base}/pullrequests/{pull_request.id}"
            listings.append(f"{number}/comments")
            resources += [number, f"{number}/diff"]
            resources += [f"{number}/comments/{comment.id}" for comment in pull_request.comments]
        for issue in repository.issues:
            number = f"{base}/issues/{issue.id}"
            listings.append(f"{number}/comments")
            resources.append(number)
            resources += [f"{number}/comments/{comment.id}" for comment in issue.comments]
    return ["/2.0" + path for path in listings], ["/2.0" + path for path in resources]


LISTINGS, RESOURCES = real_paths(CREDENTIALS)
paths = st.one_of(
    st.sampled_from(LISTINGS),
    st.sampled_from(RESOURCES),
    api_paths(),
    st.sampled_from(["/", "/2.0", "/site/oauth2/access_token", "/2.0x/user", "/2"]),
    any_text.map(lambda text: "/" + quote(text)),
)


def item_fields(mock: MockBitbucket) -> dict[str, list[str]]:
    """Each listing's item fields (its top-level keys): the names a client may sort by."""
    fields: dict[str, list[str]] = {}
    authorization = {"Authorization": mock.bearer().authorization()}
    for path in LISTINGS:
        listing = mock.respond("GET", f"{API.removesuffix('/2.0')}{path}?state=ALL", authorization)
        fields[path] = sorted({key for item in json.loads(listing.body)["values"] for key in item})
    return fields


LISTING_FIELDS = item_fields(MockBitbucket(size=TINY))
FIELDS = sorted({field for fields in LISTING_FIELDS.values() for field in fields})
# Each query parameter the mock reads, with values mostly of the right kind.
PARAMETERS: Final = {
    "pagelen": st.one_of(
        st.sampled_from(["1", "2", "10", "50", "100"]),
        st.sampled_from(["51", "101", "0", "-1", "2.5", "", "1e3", "9" * 12]),
        any_text,
    ),
    "page": st.one_of(st.sampled_from(["1", "2", "3", "0", "-1", ""]), any_text),
    "sort": st.one_of(
        st.sampled_from(FIELDS).flatmap(lambda field: st.sampled_from([field, f"-{field}"])),
        st.sampled_from(["workspace.slug", "-", "", "Created_on"]),
        any_text,
    ),
    "role": st.one_of(st.sampled_from(["member", "owner", "admin", "visitor", ""]), any_text),
    "state": st.one_of(st.sampled_from(["ALL", "OPEN", "merged", "CLOSED", ""]), any_text),
    "fields": st.one_of(
        st.sampled_from(
            ["+values.reviewers,+values.participants", "+values.participants", "values.id", ","]
        ),
        any_text,
    ),
    "q": any_text,
}
methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
VALID_AUTHORIZATIONS: Final = (
    CREDENTIALS.bearer().authorization(),
    CREDENTIALS.basic().authorization(),
    f"Bearer {CREDENTIALS.oauth_access_token}",
)
authorizations = st.sampled_from(
    [*VALID_AUTHORIZATIONS, "Bearer nope", "Basic !!!", "Basic YTpi", "Digest x", "", None]
)
hosts = st.one_of(
    st.sampled_from(
        [
            "api.bitbucket.org",
            "127.0.0.1:8080",
            "[::1]:8000",
            "mock.test:65535",
            "mock.test:65536",
            "a/b",
            "user@host",
            "",
            "bad host",
            "[zz]",
        ]
    ),
    ascii_text,
)


def chance(draw: st.DrawFn, percent: int) -> bool:
    return draw(st.integers(min_value=0, max_value=99)) < percent


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, str, str | None]:
    """(method, path, query, authorization) for the drivers that take a well-formed URL.

    A request a client would send (a GET of a listing or a resource, valid
    credentials, known query parameters), with something drawn at random:
    another method, path or credentials, any value for a parameter, an
    unknown parameter, or a query that is not even pairs.  A request wrong
    in everything would stop at its first check and leave the later ones
    unexplored.
    """
    method, path = "GET", draw(st.one_of(st.sampled_from(LISTINGS), st.sampled_from(RESOURCES)))
    authorization: str | None = draw(st.sampled_from(VALID_AUTHORIZATIONS))
    if chance(draw, 15):
        method = draw(st.one_of(methods, ascii_text))
    if chance(draw, 15):
        path = draw(paths)
    if chance(draw, 15):
        authorization = draw(authorizations)
    pairs = [(name, draw(values)) for name, values in PARAMETERS.items() if chance(draw, 20)]
    if chance(draw, 50):
        # Most often by a field of this listing's own items: the sort that gets furthest.
        own = LISTING_FIELDS.get(path) or FIELDS
        field = draw(st.one_of(st.sampled_from(own), st.sampled_from(own), PARAMETERS["sort"]))
        pairs.append(("sort", draw(st.sampled_from([field, f"-{field}"]))))
    if chance(draw, 10):
        pairs.append((draw(any_text), draw(any_text)))
    junk = draw(ascii_text) if chance(draw, 10) else ""  # "a=%zz&&=", "%", ...
    query = "&".join(part for part in (urlencode(pairs), junk) if part)
    return method, path, query, authorization


# -- what every answer and the counters must be ---------------------------------------------


def check_answer(status: int, headers: httpx.Headers | dict[str, str], body: bytes) -> None:
    """A well-formed answer that is no bug of the mock (no fault is configured)."""
    assert 200 <= status <= 599
    assert status < 500, (status, body)
    content_type = headers.get("content-type", "")
    if content_type.startswith("application/json"):
        json.loads(body)
    else:
        assert content_type.startswith(("text/plain", "text/html")), content_type
        body.decode("utf-8")


def expected_outcome(status: int) -> str:
    by_status = {401: "unauthorized", 404: "not_found", 429: "rate_limited"}
    if status < 400:
        return "ok"
    if status >= 500:
        return "server_errors"
    return by_status.get(status, "bad_requests")


def check_counters(mock: MockBitbucket, statuses: list[int], admitted: int | None = None) -> None:
    """Every request counted once, by its status; admitted requests in per_principal."""
    counters: MockCounters = mock.counters
    assert counters.calls == len(statuses)
    outcomes = Counter(expected_outcome(status) for status in statuses)
    assert {name: getattr(counters, name) for name in OUTCOMES} == {
        name: outcomes[name] for name in OUTCOMES
    }
    assert all(0 < used <= LIMIT for used in counters.per_principal.values())
    if admitted is not None:
        assert sum(counters.per_principal.values()) == admitted


def admitted(principal: str | None, status: int, url: str) -> bool:
    """Whether the rate window took the request: an API request of a principal, not refused."""
    try:
        path = urlsplit(url).path
    except ValueError:
        return False
    is_api = path == "/2.0" or path.startswith("/2.0/")
    return is_api and principal in PRINCIPALS and status != 429


# -- the core --------------------------------------------------------------------------------


@st.composite
def core_requests(draw: st.DrawFn) -> tuple[str, str, dict[str, str], bytes]:
    """(method, url, headers, body) as any caller of respond() may pass them."""
    method, path, query, authorization = draw(requests())
    origin = draw(st.sampled_from(["https://api.bitbucket.org", "http://127.0.0.1:8080"]))
    url = draw(
        st.one_of(
            st.just(f"{origin}{path}?{query}"),
            st.just(f"{origin}{path}?{query}"),
            st.builds(lambda host: f"http://{host}{path}?{query}", hosts),
            any_text,
        )
    )
    headers = draw(st.dictionaries(st.one_of(st.just("Host"), any_text), any_text, max_size=2))
    if authorization is not None:
        headers["Authorization"] = authorization
    if draw(st.booleans()):
        headers["Host"] = draw(hosts)
    return method, url, headers, draw(st.binary(max_size=40))


@given(st.lists(core_requests(), min_size=1, max_size=10))
def test_the_core_answers_any_request_well_formed_and_counts_it(
    exchanges: list[tuple[str, str, dict[str, str], bytes]],
) -> None:
    mock = new_mock()
    statuses, took = [], 0
    for method, url, headers, body in exchanges:
        reply = mock.respond(method, url, headers, body)
        assert (reply.fault, reply.delay) == (None, 0.0)
        check_answer(reply.status, {k.lower(): v for k, v in reply.headers}, reply.body)
        statuses.append(reply.status)
        took += admitted(reply.principal, reply.status, url)
    check_counters(mock, statuses, took)


# -- the httpx transports (httpx.MockTransport over the handlers) --------------------------------


@given(st.lists(requests(), min_size=1, max_size=10))
def test_the_sync_transport_answers_any_request_well_formed_and_counts_it(
    drawn: list[tuple[str, str, str, str | None]],
) -> None:
    mock = new_mock()
    statuses = []
    with httpx.Client(transport=mock.transport()) as client:
        for method, path, query, authorization in drawn:
            headers = {} if authorization is None else {"Authorization": authorization}
            url = f"https://api.bitbucket.org{path}?{query}"
            response = client.request(method, url, headers=headers)
            check_answer(response.status_code, response.headers, response.content)
            statuses.append(response.status_code)
    check_counters(mock, statuses)


@given(st.lists(requests(), min_size=1, max_size=10))
def test_the_async_transport_answers_any_request_well_formed_and_counts_it(
    drawn: list[tuple[str, str, str, str | None]],
) -> None:
    mock = new_mock()

    async def run() -> list[int]:
        statuses = []
        async with httpx.AsyncClient(transport=mock.async_transport()) as client:
            for method, path, query, authorization in drawn:
                headers = {} if authorization is None else {"Authorization": authorization}
                url = f"https://api.bitbucket.org{path}?{query}"
                response = await client.request(method, url, headers=headers)
                check_answer(response.status_code, response.headers, response.content)
                statuses.append(response.status_code)
        return statuses

    check_counters(mock, asyncio.run(run()))


# -- the ASGI app: raw bytes as a server hands them over ---------------------------------------

raw_bytes = st.binary(max_size=24)


@st.composite
def scopes(draw: st.DrawFn) -> dict[str, Any]:
    method, path, query, authorization = draw(requests())
    raw_path = draw(st.one_of(st.just(path.encode()), raw_bytes.map(lambda b: b"/2.0/" + b)))
    headers = [(b"host", draw(hosts).encode("utf-8"))] if draw(st.booleans()) else []
    if authorization is not None:
        headers.append((b"authorization", authorization.encode()))
    headers += draw(st.lists(st.tuples(raw_bytes, raw_bytes), max_size=2))
    return {
        "type": "http",
        "method": draw(st.one_of(st.just(method), ascii_text)),
        "scheme": draw(st.sampled_from(["http", "https"])),
        "server": ("127.0.0.1", 8000),
        "path": raw_path.decode("latin-1"),
        "raw_path": raw_path,
        "query_string": draw(st.one_of(st.just(query.encode()), raw_bytes)),
        "headers": headers,
    }


@given(st.lists(scopes(), min_size=1, max_size=10))
def test_the_asgi_app_answers_any_request_well_formed_counts_it_and_logs_one_line(
    drawn: list[dict[str, Any]],
) -> None:
    mock = new_mock()
    lines: list[str] = []
    app = mock.asgi_app(access_log=lines.append)
    statuses = []
    for scope in drawn:
        sent: list[MutableMapping[str, Any]] = []
        bodies = iter([{"type": "http.request", "body": b"x", "more_body": True}])

        async def receive(bodies: Any = bodies) -> dict[str, Any]:
            return next(bodies, {"type": "http.request", "body": b"", "more_body": False})

        async def send(message: MutableMapping[str, Any], sent: Any = sent) -> None:
            sent.append(message)

        asyncio.run(app(scope, receive, send))
        start, body = sent
        assert start["type"] == "http.response.start"
        headers = {name.decode(): value.decode("latin-1") for name, value in start["headers"]}
        assert int(headers["content-length"]) == len(body["body"])
        check_answer(start["status"], headers, body["body"])
        statuses.append(start["status"])
    assert len(lines) == len(drawn)
    assert all(line.isprintable() for line in lines)
    assert not any(CREDENTIALS.access_token in line for line in lines)
    took = 0
    for scope, line, status in zip(drawn, lines, statuses, strict=True):
        outcome, principal = line.rsplit(" ", 2)[1:]
        assert outcome == str(status)
        url = "http://x" + scope["raw_path"].decode("latin-1")
        took += admitted(None if principal == "-" else principal, status, url)
    check_counters(mock, statuses, took)
