"""bb_backoff.testing.MockBitbucket: endpoints, pages, rate limits, auth, faults, transports.

Everything runs on a VirtualClock: waits are recorded, never slept.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import threading
from collections.abc import Iterator
from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest

from bb_backoff import (
    AsyncBitbucketClient,
    BasicAuth,
    BearerToken,
    BitbucketClient,
    ExponentialBackoff,
    OAuth2,
    OAuth2Tokens,
)
from bb_backoff.testing import (
    DatasetSize,
    Faults,
    MockBitbucket,
    MockCounters,
    VirtualClock,
    run_virtual,
)
from bb_backoff.testing._dataset import ITEM_KINDS
from bb_backoff.testing._ratelimit import RATE_LIMIT_BODY

API = "https://api.bitbucket.org/2.0"
TOKEN_URL = "https://bitbucket.org/site/oauth2/access_token"
SMALL = DatasetSize(
    repositories=2,
    pull_requests=12,
    comments_per_pull_request=2,
    issues=5,
    comments_per_issue=2,
    members=3,
)


def make_mock(**options: Any) -> tuple[MockBitbucket, VirtualClock]:
    clock = VirtualClock()
    options.setdefault("size", SMALL)
    mock = MockBitbucket(
        clock=clock.monotonic, now=clock.time, sleep=clock.sleep, async_sleep=clock.sleep, **options
    )
    return mock, clock


def http(mock: MockBitbucket, authorization: str | None = "bearer") -> httpx.Client:
    """A bare httpx client on the mock, authorized as the access token by default."""
    headers = {}
    if authorization == "bearer":
        headers["Authorization"] = mock.bearer().authorization()
    elif authorization == "basic":
        headers["Authorization"] = mock.basic().authorization()
    elif authorization == "oauth":
        headers["Authorization"] = f"Bearer {mock.oauth_access_token}"
    elif authorization is not None:
        headers["Authorization"] = authorization
    return httpx.Client(transport=mock.transport(), base_url=API, headers=headers)


@pytest.fixture
def mock() -> MockBitbucket:
    return make_mock()[0]


@pytest.fixture
def client(mock: MockBitbucket) -> Iterator[httpx.Client]:
    with http(mock) as client:
        yield client


def repo_path(mock: MockBitbucket, index: int = 0) -> str:
    return f"/repositories/{mock.dataset.repositories[index].full_name}"


def error_message(response: httpx.Response) -> str:
    body = response.json()
    assert body["type"] == "error"
    message: str = body["error"]["message"]
    return message


# -- endpoints ------------------------------------------------------------------------


def test_user_is_the_user_for_basic_and_oauth_and_the_tokens_bot_for_the_access_token(
    mock: MockBitbucket,
) -> None:
    user = mock.dataset.user
    for authorization in ("basic", "oauth"):
        with http(mock, authorization) as client:
            body = client.get("/user").json()
            assert (body["type"], body["account_id"]) == ("user", user.account_id)
    with http(mock) as client:
        bot = client.get("/user").json()
    assert bot["display_name"] == "acme access token"
    assert bot["account_id"] != user.account_id


def test_user_workspaces_lists_the_workspace_the_caller_reaches_as_workspace_access(
    mock: MockBitbucket,
) -> None:
    dataset = mock.dataset
    with http(mock, "basic") as client:
        body = client.get("/user/workspaces").json()
    assert set(body) == {"values", "page", "pagelen", "size"}
    (access,) = body["values"]
    assert (access["type"], access["administrator"]) == ("workspace_access", True)
    workspace = access["workspace"]
    assert (workspace["type"], workspace["slug"], workspace["uuid"], workspace["name"]) == (
        "workspace_base",
        "acme",
        dataset.workspace_uuid,
        "Acme",
    )
    assert workspace["links"]["self"]["href"] == f"{API}/workspaces/acme"
    with http(mock) as client:
        (bot_access,) = client.get("/user/workspaces").json()["values"]
    assert bot_access["administrator"] is False


@pytest.mark.parametrize("identifier", ["acme", "uuid"])
def test_a_workspace_has_its_payload_by_slug_or_uuid(
    client: httpx.Client, mock: MockBitbucket, identifier: str
) -> None:
    dataset = mock.dataset
    name = dataset.workspace_uuid if identifier == "uuid" else identifier
    body = client.get(f"/workspaces/{name}").json()
    assert body == dataset.workspace_json(API)
    assert (body["type"], body["slug"], body["is_private"]) == ("workspace", "acme", True)
    links = {key: link["href"] for key, link in body["links"].items()}
    assert links["repositories"] == f"{API}/repositories/acme"
    assert links["members"] == f"{API}/workspaces/acme/members"
    assert client.get(f"/repositories/{name}").json()["size"] == 2


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/repositories", {"role": "member", "sort": "created_on"}),
        ("/repositories", {}),
        ("/workspaces", {"role": "member"}),
        ("/user/permissions/workspaces", {}),
        ("/user/permissions/repositories", {}),
    ],
)
def test_the_removed_cross_workspace_listings_are_410_gone_with_the_error_envelope(
    client: httpx.Client, mock: MockBitbucket, path: str, params: dict[str, str]
) -> None:
    response = client.get(path, params=params)
    body = response.json()
    assert (response.status_code, body["type"]) == (410, "error")
    assert body["error"]["message"] == "This API is no longer supported."
    assert f"GET /2.0{path} was removed (CHANGE-2770)" in body["error"]["detail"]
    assert "/2.0/user/workspaces" in body["error"]["detail"]
    counters = mock.counters
    assert (counters.calls, counters.bad_requests) == (1, 1)


def test_a_workspaces_repositories_with_a_role_list_every_repository_oldest_first(
    client: httpx.Client, mock: MockBitbucket
) -> None:
    params = {"role": "member", "sort": "created_on"}
    body = client.get("/repositories/acme", params=params).json()
    assert [r["full_name"] for r in body["values"]] == [
        r.full_name for r in mock.dataset.repositories
    ]
    assert body["values"][0]["type"] == "repository"
    response = client.get("/repositories/acme", params={"role": "visitor"})
    assert (response.status_code, error_message(response)) == (400, "Invalid role: visitor")


def test_a_workspaces_repositories_are_listed_and_an_unknown_workspace_is_404(
    client: httpx.Client, mock: MockBitbucket
) -> None:
    assert client.get("/repositories/acme").json()["size"] == 2
    response = client.get("/repositories/globex")
    assert response.status_code == 404
    assert error_message(response) == "No workspace with identifier 'globex'."


def test_a_repository_has_its_payload(client: httpx.Client, mock: MockBitbucket) -> None:
    repository = mock.dataset.repositories[1]
    body = client.get(repo_path(mock, 1)).json()
    assert body == repository.to_json(API)


def test_pull_requests_default_to_open_only_as_bitbucket_does(
    client: httpx.Client, mock: MockBitbucket
) -> None:
    repository = mock.dataset.repositories[0]
    body = client.get(f"{repo_path(mock)}/pullrequests", params={"pagelen": 50}).json()
    assert [pr["id"] for pr in body["values"]] == [
        pr.id for pr in repository.pull_requests if pr.state == "OPEN"
    ]


def test_pull_requests_honour_state_all_and_repeated_states(
    client: httpx.Client, mock: MockBitbucket
) -> None:
    repository = mock.dataset.repositories[0]
    path = f"{repo_path(mock)}/pullrequests"
    every = client.get(path, params={"state": "ALL", "pagelen": 50}).json()
    assert [pr["id"] for pr in every["values"]] == list(range(1, 13))
    some = client.get(path, params=[("state", "MERGED"), ("state", "declined"), ("pagelen", 50)])
    assert [pr["id"] for pr in some.json()["values"]] == [
        pr.id for pr in repository.pull_requests if pr.state in {"MERGED", "DECLINED"}
    ]


def test_an_unknown_pull_request_state_is_400(client: httpx.Client, mock: MockBitbucket) -> None:
    response = client.get(f"{repo_path(mock)}/pullrequests", params={"state": "CLOSED"})
    assert (response.status_code, error_message(response)) == (400, "Invalid state: CLOSED")


def test_a_pull_request_and_its_comments_have_their_payloads(
    client: httpx.Client, mock: MockBitbucket
) -> None:
    repository = mock.dataset.repositories[0]
    pull_request = next(pr for pr in repository.pull_requests if pr.comments)
    path = f"{repo_path(mock)}/pullrequests/{pull_request.id}"
    assert client.get(path).json() == repository.pull_request_json(pull_request, API)
    comments = client.get(f"{path}/comments").json()["values"]
    assert [(c["type"], c["id"]) for c in comments] == [
        ("pullrequest_comment", c.id) for c in pull_request.comments
    ]
    first = pull_request.comments[0]
    assert client.get(f"{path}/comments/{first.id}").json()["id"] == first.id


def test_the_diff_redirects_to_the_commit_range_on_the_same_origin_which_is_plain_text(
    client: httpx.Client, mock: MockBitbucket
) -> None:
    repository = mock.dataset.repositories[0]
    pull_request = repository.pull_requests[2]
    redirect = client.get(f"{repo_path(mock)}/pullrequests/3/diff")
    source, destination = pull_request.source_hash[:12], pull_request.destination_hash[:12]
    assert redirect.status_code == 302
    assert redirect.headers["Location"] == (
        f"{API}/repositories/{repository.full_name}/diff/"
        f"{repository.full_name}:{source}%0D{destination}?from_pullrequest_id=3"
    )
    diff = client.get(redirect.headers["Location"])
    assert diff.status_code == 200
    assert diff.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert diff.text == pull_request.diff


def test_a_diff_range_matching_no_pull_request_is_404(
    client: httpx.Client, mock: MockBitbucket
) -> None:
    full_name = mock.dataset.repositories[0].full_name
    response = client.get(f"{repo_path(mock)}/diff/{full_name}:0123456789ab%0Dba9876543210")
    assert (response.status_code, error_message(response)) == (404, "Diff not found")


def test_issues_carry_their_milestones_and_have_comments(
    client: httpx.Client, mock: MockBitbucket
) -> None:
    repository = mock.dataset.repositories[0]
    issues = client.get(f"{repo_path(mock)}/issues").json()["values"]
    assert [issue["milestone"] for issue in issues] == [
        repository.issue_json(issue, API)["milestone"] for issue in repository.issues
    ]
    issue = next(i for i in repository.issues if i.comments)
    path = f"{repo_path(mock)}/issues/{issue.id}"
    assert client.get(path).json()["id"] == issue.id
    comments = client.get(f"{path}/comments").json()["values"]
    assert [(c["type"], c["id"]) for c in comments] == [
        ("issue_comment", c.id) for c in issue.comments
    ]
    assert client.get(f"{path}/comments/{issue.comments[0].id}").json()["issue"]["id"] == issue.id


def test_workspace_members_are_memberships(client: httpx.Client, mock: MockBitbucket) -> None:
    values = client.get("/workspaces/acme/members").json()["values"]
    assert [(m["type"], m["user"]["account_id"]) for m in values] == [
        ("workspace_membership", member.account_id) for member in mock.dataset.members
    ]


def test_sort_by_created_on_ascending_or_descending(
    client: httpx.Client, mock: MockBitbucket
) -> None:
    path = f"{repo_path(mock)}/pullrequests"
    params: dict[str, str | int] = {"state": "ALL", "pagelen": 50}
    ascending = client.get(path, params={**params, "sort": "created_on"}).json()["values"]
    descending = client.get(path, params={**params, "sort": "-created_on"}).json()["values"]
    assert [pr["id"] for pr in ascending] == list(range(1, 13))
    assert [pr["id"] for pr in descending] == list(range(12, 0, -1))


def test_sorting_by_a_field_the_items_lack_is_400(client: httpx.Client) -> None:
    response = client.get("/workspaces/acme/members", params={"sort": "created_on"})
    assert (response.status_code, error_message(response)) == (
        400,
        "Invalid sort field: created_on",
    )


@pytest.mark.parametrize("sort", ["links", "-links", "author", "workspace.slug", "-", "Created_on"])
def test_sorting_by_a_field_that_is_no_sortable_value_is_400_never_a_500(
    client: httpx.Client, mock: MockBitbucket, sort: str
) -> None:
    for path in ("/repositories/acme", f"{repo_path(mock)}/pullrequests", "/user/workspaces"):
        response = client.get(path, params={"sort": sort})
        assert (response.status_code, error_message(response)) == (
            400,
            f"Invalid sort field: {sort}",
        )
    assert mock.counters.server_errors == 0


def test_sorting_by_a_field_that_is_null_on_some_items_puts_the_nulls_last(
    client: httpx.Client, mock: MockBitbucket
) -> None:
    issue = next(i for i in mock.dataset.repositories[0].issues if len(i.comments) > 1)
    path = f"{repo_path(mock)}/issues/{issue.id}/comments"
    ascending = client.get(path, params={"sort": "updated_on"})
    descending = client.get(path, params={"sort": "-updated_on"})
    assert (ascending.status_code, descending.status_code) == (200, 200)
    assert [c["id"] for c in ascending.json()["values"]] == [c.id for c in issue.comments]


def test_a_pull_request_names_its_reviewers_and_participants_as_its_own_get_does(
    client: httpx.Client, mock: MockBitbucket
) -> None:
    repository = mock.dataset.repositories[0]
    pull_request = next(pr for pr in repository.pull_requests if pr.reviews and pr.comments)
    body = client.get(f"{repo_path(mock)}/pullrequests/{pull_request.id}").json()
    assert [r["account_id"] for r in body["reviewers"]] == [
        r.account_id for r in pull_request.reviewers
    ]
    roles = {p["user"]["account_id"]: p["role"] for p in body["participants"]}
    commenters = {c.author.account_id for c in pull_request.comments}
    reviewers = {r.account_id for r in pull_request.reviewers}
    assert roles == {
        **dict.fromkeys(commenters, "PARTICIPANT"),
        **dict.fromkeys(reviewers, "REVIEWER"),
    }
    for participant in body["participants"]:
        assert participant["type"] == "participant"
        assert participant["approved"] == (participant["state"] == "approved")
        assert participant["state"] in {"approved", "changes_requested", None}


def test_a_pull_request_listing_leaves_reviews_out_unless_fields_adds_them(
    client: httpx.Client, mock: MockBitbucket
) -> None:
    path = f"{repo_path(mock)}/pullrequests"
    plain = client.get(path, params={"state": "ALL"}).json()["values"]
    assert not any("reviewers" in pr or "participants" in pr for pr in plain)
    fields = "+values.reviewers,+values.participants"
    added = client.get(path, params={"state": "ALL", "fields": fields}).json()["values"]
    assert all("reviewers" in pr and "participants" in pr for pr in added)
    only = client.get(path, params={"state": "ALL", "fields": "+values.reviewers"}).json()
    assert all("reviewers" in pr and "participants" not in pr for pr in only["values"])


# -- pages --------------------------------------------------------------------------------


def test_a_page_has_exactly_bitbuckets_envelope_with_previous_from_page_2(
    client: httpx.Client, mock: MockBitbucket
) -> None:
    path = f"{repo_path(mock)}/pullrequests"
    first = client.get(path, params={"state": "ALL", "pagelen": 5}).json()
    assert set(first) == {"values", "page", "pagelen", "size", "next"}
    assert (first["page"], first["pagelen"], first["size"]) == (1, 5, 12)
    second = client.get(first["next"]).json()
    assert set(second) == {"values", "page", "pagelen", "size", "next", "previous"}
    last = client.get(second["next"]).json()
    assert set(last) == {"values", "page", "pagelen", "size", "previous"}
    assert ([len(p["values"]) for p in (first, second, last)], last["page"]) == ([5, 5, 2], 3)
    assert client.get(last["previous"]).json() == second


def test_next_links_are_absolute_keep_the_query_and_add_the_page_last(
    client: httpx.Client, mock: MockBitbucket
) -> None:
    path = f"{repo_path(mock)}/pullrequests"
    first = client.get(path, params={"state": "ALL", "sort": "created_on", "pagelen": 5}).json()
    assert first["next"] == f"{API}{path}?state=ALL&sort=created_on&pagelen=5&page=2"
    second = client.get(first["next"]).json()
    assert second["next"] == f"{API}{path}?state=ALL&sort=created_on&pagelen=5&page=3"


def test_following_next_links_visits_every_item_once(
    client: httpx.Client, mock: MockBitbucket
) -> None:
    url: str | None = f"{API}{repo_path(mock)}/pullrequests?state=ALL&pagelen=4"
    seen = []
    while url is not None:
        page = client.get(url).json()
        seen += [pr["id"] for pr in page["values"]]
        url = page.get("next")
    assert seen == list(range(1, 13))


def test_the_default_pagelen_is_10(client: httpx.Client, mock: MockBitbucket) -> None:
    page = client.get(f"{repo_path(mock)}/pullrequests", params={"state": "ALL"}).json()
    assert (page["pagelen"], len(page["values"])) == (10, 10)


@pytest.mark.parametrize(
    ("path", "pagelen", "status"),
    [
        ("/pullrequests", 50, 200),
        ("/pullrequests", 51, 400),
        ("/pullrequests", 100, 400),
        ("/issues", 100, 200),
        ("/issues", 101, 400),
        ("/pullrequests/1/comments", 100, 200),
        ("/pullrequests/1/comments", 101, 400),
    ],
)
def test_pagelen_caps_at_50_for_pull_request_lists_and_100_elsewhere(
    client: httpx.Client, mock: MockBitbucket, path: str, pagelen: int, status: int
) -> None:
    response = client.get(f"{repo_path(mock)}{path}", params={"pagelen": pagelen})
    assert response.status_code == status
    if status == 400:
        assert response.json() == {"type": "error", "error": {"message": "Invalid pagelen"}}


@pytest.mark.parametrize("pagelen", ["0", "-5", "ten", "2.5", ""])
def test_a_pagelen_that_is_not_a_positive_integer_is_400(
    client: httpx.Client, pagelen: str
) -> None:
    response = client.get("/workspaces/acme/members", params={"pagelen": pagelen})
    assert (response.status_code, error_message(response)) == (400, "Invalid pagelen")


def test_a_page_beyond_the_end_is_404_and_an_empty_listing_has_an_empty_first_page(
    client: httpx.Client, mock: MockBitbucket
) -> None:
    beyond = client.get("/workspaces/acme/members", params={"page": 2})
    assert (beyond.status_code, error_message(beyond)) == (404, "Invalid page")
    repository = mock.dataset.repositories[0]
    silent = next(pr for pr in repository.pull_requests if not pr.comments)
    empty = client.get(f"{repo_path(mock)}/pullrequests/{silent.id}/comments").json()
    assert (empty["values"], empty["size"], "next" in empty) == ([], 0, False)


@pytest.mark.parametrize(
    "path",
    [
        "/nothing-here",
        "/repositories/acme/no-such-repo",
        "/repositories/globex/{slug}",
        "/repositories/acme/{slug}/pullrequests/99",
        "/repositories/acme/{slug}/pullrequests/abc/comments",
        "/repositories/acme/{slug}/pullrequests/1/comments/1",
        "/repositories/acme/{slug}/issues/0",
        "/repositories/acme/{slug}/issues/1/comments/424242",
        "/repositories/acme/{slug}/wiki",
        "/workspaces/globex/members",
    ],
)
def test_unknown_paths_repositories_and_ids_are_404_with_the_envelope(
    client: httpx.Client, mock: MockBitbucket, path: str
) -> None:
    response = client.get(path.format(slug=mock.dataset.repositories[0].slug))
    assert response.status_code == 404
    assert isinstance(error_message(response), str)


def test_paths_outside_the_api_base_are_404(client: httpx.Client) -> None:
    assert client.get("https://api.bitbucket.org/1.0/user").status_code == 404


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_methods_other_than_get_are_405(client: httpx.Client, method: str) -> None:
    response = client.request(method, "/user")
    assert (response.status_code, response.headers["Allow"]) == (405, "GET")
    assert error_message(response) == f"Method {method} not allowed"


# -- rate limits ------------------------------------------------------------------------


def test_past_the_limit_a_429_is_bitbuckets_plain_text_with_its_reason_and_no_hint() -> None:
    mock, _ = make_mock(limit=3)
    with http(mock) as client:
        statuses = [client.get("/user").status_code for _ in range(4)]
        refused = client.get("/user")
    assert statuses == [200, 200, 200, 429]
    assert refused.content == RATE_LIMIT_BODY
    assert len(refused.content) == 46
    assert refused.headers["Content-Type"] == "text/plain"
    assert refused.reason_phrase == "Unknown Status Code"
    assert "Retry-After" not in refused.headers
    assert "X-RateLimit-Reset" not in refused.headers


def test_a_slot_frees_exactly_window_seconds_after_it_was_used() -> None:
    mock, clock = make_mock(limit=2, window=60)
    with http(mock) as client:
        client.get("/user")
        clock.advance(10)
        client.get("/user")
        clock.advance(49.5)
        assert client.get("/user").status_code == 429  # t=59.5: both slots held
        clock.advance(0.5)
        assert client.get("/user").status_code == 200  # t=60: the first slot is free
        assert client.get("/user").status_code == 429
        clock.advance(10)
        assert client.get("/user").status_code == 200  # t=70: the second one is


def test_rejected_requests_do_not_hold_slots_unless_count_rejected() -> None:
    for count_rejected, expected in ((False, 200), (True, 429)):
        mock, clock = make_mock(limit=1, window=60, count_rejected=count_rejected)
        with http(mock) as client:
            client.get("/user")
            clock.advance(30)
            assert client.get("/user").status_code == 429
            clock.advance(30)
            assert client.get("/user").status_code == expected


def test_hint_retry_after_is_the_whole_seconds_until_a_slot_frees() -> None:
    mock, clock = make_mock(limit=1, window=100, hint="retry-after")
    with http(mock) as client:
        client.get("/user")
        clock.advance(30.5)
        refused = client.get("/user")
        assert refused.headers["Retry-After"] == "70"  # 69.5 s, rounded up
        clock.advance(70)
        assert client.get("/user").status_code == 200


def test_hint_retry_after_date_is_the_same_moment_as_an_http_date() -> None:
    mock, clock = make_mock(limit=1, window=100, hint="retry-after-date")
    start = clock.time()
    with http(mock) as client:
        clock.advance(0.5)
        client.get("/user")  # its slot frees at start + 100.5
        clock.advance(30)
        refused = client.get("/user")
    when = parsedate_to_datetime(refused.headers["Retry-After"]).timestamp()
    assert when == start + 101  # rounded up to the second: never before the slot frees


@pytest.mark.parametrize("window", [1e12, 1e17, 1e308])
def test_a_window_past_the_last_http_date_names_that_date_rather_than_fail(window: float) -> None:
    mock, _clock = make_mock(limit=1, window=window, hint="retry-after-date")
    with http(mock) as client:
        client.get("/user")
        refused = client.get("/user")
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "Fri, 31 Dec 9999 23:59:59 GMT"
    assert mock.counters.server_errors == 0


def test_hint_reset_is_x_ratelimit_reset_in_seconds_remaining() -> None:
    mock, clock = make_mock(limit=1, window=100, hint="reset")
    with http(mock) as client:
        client.get("/user")
        clock.advance(99.25)
        refused = client.get("/user")
    assert refused.headers["X-RateLimit-Reset"] == "1"
    assert "Retry-After" not in refused.headers


def test_with_count_rejected_the_hint_waits_for_the_rejected_requests_to_expire() -> None:
    mock, clock = make_mock(limit=1, window=100, hint="retry-after", count_rejected=True)
    with http(mock) as client:
        client.get("/user")
        clock.advance(40)
        client.get("/user")  # refused at t=40, and held until t=140
        clock.advance(20)
        # This refused request holds a slot too: the window has room at t=160.
        assert client.get("/user").headers["Retry-After"] == "100"


def test_json_429_answers_with_the_error_envelope() -> None:
    mock, _ = make_mock(limit=0, json_429=True)
    with http(mock) as client:
        refused = client.get("/user")
    assert refused.status_code == 429
    assert error_message(refused) == "Rate limit for this resource has been exceeded"
    assert refused.reason_phrase == "Unknown Status Code"


def test_token_headers_on_access_token_requests_turn_near_limit_below_20_percent() -> None:
    mock, _ = make_mock(limit=10, token_headers=True)
    with http(mock) as client:
        near = [client.get(repo_path(mock)).headers["X-RateLimit-NearLimit"] for _ in range(11)]
        refused = client.get(repo_path(mock))
    # 10 - used remaining: 9 .. 2 are not near; 1 and 0 are (< 2, 20% of 10).
    assert near == ["false"] * 8 + ["true"] * 3
    assert refused.status_code == 429
    assert (refused.headers["X-RateLimit-Limit"], refused.headers["X-RateLimit-Resource"]) == (
        "10",
        "api",
    )


def test_token_headers_only_for_the_access_token_and_repositories_paths() -> None:
    mock, _ = make_mock(token_headers=True)
    with http(mock) as client:
        assert "X-RateLimit-Limit" not in client.get("/user").headers
        assert "X-RateLimit-Limit" not in client.get("/workspaces/acme/members").headers
    with http(mock, "basic") as client:
        assert "X-RateLimit-Limit" not in client.get(repo_path(mock)).headers
    mock, _ = make_mock()
    with http(mock) as client:
        assert "X-RateLimit-Limit" not in client.get(repo_path(mock)).headers


def test_the_access_token_the_user_and_the_oauth_consumer_have_separate_windows() -> None:
    mock, _ = make_mock(limit=2)
    for authorization in ("bearer", "basic", "oauth"):
        with http(mock, authorization) as client:
            assert [client.get("/user").status_code for _ in range(3)] == [200, 200, 429]
    assert mock.counters.per_principal == {
        "access-token": 2,
        f"user:{mock.email}": 2,
        f"consumer:{mock.client_id}": 2,
    }


def test_other_consumers_hold_their_share_of_the_window_in_steady_state() -> None:
    mock, clock = make_mock(limit=100, window=100, other_consumers=0.5)
    with http(mock) as client:
        first = [client.get("/user").status_code for _ in range(51)]
        assert first == [200] * 50 + [429]
        assert mock.counters.other_consumer_calls == 0
        clock.advance(100)
        # The mock's 50 have expired; the others kept making one request every 2 s.
        again = [client.get("/user").status_code for _ in range(51)]
    assert again == [200] * 50 + [429]
    assert mock.counters.other_consumer_calls == 50
    assert mock.counters.calls == 102


def test_other_consumers_are_refused_too_when_the_window_is_full() -> None:
    # limit 10 per 10 s, other consumers at half: one request every 2 s.
    made = []
    for count_rejected in (False, True):
        mock, clock = make_mock(
            limit=10, window=10, other_consumers=0.5, count_rejected=count_rejected
        )
        with http(mock) as client:
            for _ in range(6):
                client.get("/user")  # 5 accepted, the 6th refused
            clock.advance(2)
            client.get("/user")
        made.append(mock.counters.other_consumer_calls)
    # At t=2 an old slot of theirs frees; a refused request still held (count_rejected) keeps
    # the window full, so their request at t=2 is refused.
    assert made == [1, 0]


def test_unauthorized_requests_do_not_touch_the_window() -> None:
    mock, _ = make_mock(limit=1)
    with http(mock, "Bearer wrong") as client:
        assert [client.get("/user").status_code for _ in range(3)] == [401] * 3
    with http(mock) as client:
        assert client.get("/user").status_code == 200


# -- auth -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", "Basic !!!", "Basic dXNlcjpwYXNz", "Token abc", "Bearer "],
)
def test_wrong_or_missing_credentials_are_401_with_the_envelope(
    mock: MockBitbucket, authorization: str | None
) -> None:
    with http(mock, authorization) as client:
        response = client.get("/user")
    assert response.status_code == 401
    assert error_message(response) == "Invalid or missing credentials"
    assert mock.counters.unauthorized == 1


def test_a_wrong_api_token_for_the_right_email_is_401(mock: MockBitbucket) -> None:
    with http(mock, BasicAuth(mock.email, "nope").authorization()) as client:
        assert client.get("/user").status_code == 401


def test_a_basic_credential_that_is_not_ascii_is_401_not_a_mock_error(
    mock: MockBitbucket,
) -> None:
    # (base64 refuses a str with a non-ASCII character with a ValueError of its own.)
    with httpx.Client(transport=mock.transport(), base_url=API) as client:
        wrong = {"Authorization": "Basic " + base64.b64encode(b"who:what").decode()}
        garbled = {b"Authorization": b"Basic \xe9"}
        assert client.get("/user", headers=garbled).status_code == 401
        grant = {"grant_type": "refresh_token", "refresh_token": mock.refresh_token}
        refused = client.post(TOKEN_URL, data=grant, headers=wrong)
        garbled_refused = client.post(TOKEN_URL, data=grant, headers=garbled)
    assert garbled_refused.status_code == refused.status_code < 500
    assert mock.counters.server_errors == 0


def test_the_credential_helpers_hand_out_the_mocks_credentials(mock: MockBitbucket) -> None:
    assert mock.bearer() == BearerToken(mock.access_token)
    assert mock.basic() == BasicAuth(mock.email, mock.api_token)
    oauth = mock.oauth2()
    assert (oauth.client_id, oauth.token_url) == (mock.client_id, TOKEN_URL)
    assert oauth.tokens.refresh_token == mock.refresh_token
    assert oauth.tokens.access_token == mock.oauth_access_token
    assert oauth.tokens.expires_at == mock.oauth_expires_at
    assert mock.oauth2(token_url="http://127.0.0.1:1/site/oauth2/access_token").token_url == (
        "http://127.0.0.1:1/site/oauth2/access_token"
    )


def test_credentials_come_from_the_seed() -> None:
    first, second, other = make_mock(seed=5)[0], make_mock(seed=5)[0], make_mock(seed=6)[0]
    assert (first.access_token, first.refresh_token) == (second.access_token, second.refresh_token)
    assert first.access_token != other.access_token


def test_an_oauth_access_token_expires_7200_s_after_issue() -> None:
    mock, clock = make_mock()
    assert mock.oauth_expires_at == clock.time() + 7200
    with http(mock, "oauth") as client:
        clock.advance(7199.9)
        assert client.get("/user").status_code == 200
        clock.advance(0.1)
        expired = client.get("/user")
    assert expired.status_code == 401
    assert error_message(expired) == (
        "Access token expired. Use your refresh token to obtain a new access token."
    )


def refresh(client: httpx.Client, refresh_token: str, *, secret: str | None = None) -> Any:
    mock_auth = client.headers.get("X-Client")
    assert mock_auth is not None
    client_id, client_secret = mock_auth.split(":")
    return client.post(
        TOKEN_URL,
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=(client_id, secret or client_secret),
    )


@pytest.fixture
def token_client(mock: MockBitbucket) -> Iterator[httpx.Client]:
    headers = {"X-Client": f"{mock.client_id}:{mock.client_secret}"}
    with httpx.Client(transport=mock.transport(), headers=headers) as client:
        yield client


def test_a_refresh_rotates_both_tokens(mock: MockBitbucket, token_client: httpx.Client) -> None:
    old_refresh, old_access = mock.refresh_token, mock.oauth_access_token
    response = refresh(token_client, old_refresh)
    body = response.json()
    assert response.status_code == 200
    assert (body["access_token"], body["refresh_token"]) == (
        mock.oauth_access_token,
        mock.refresh_token,
    )
    assert (body["expires_in"], body["token_type"]) == (7200, "bearer")
    assert isinstance(body["scopes"], str)
    assert mock.refresh_token != old_refresh
    assert mock.oauth_access_token != old_access
    assert mock.counters.refreshes == 1
    with http(mock, f"Bearer {body['access_token']}") as client:
        assert client.get("/user").status_code == 200


def test_reusing_a_rotated_refresh_token_is_400_invalid_grant(
    mock: MockBitbucket, token_client: httpx.Client
) -> None:
    old = mock.refresh_token
    refresh(token_client, old)
    reused = refresh(token_client, old)
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    assert "already used" in reused.json()["error_description"]
    assert refresh(token_client, "made-up").json()["error"] == "invalid_grant"
    assert (mock.counters.refreshes, mock.counters.bad_requests) == (1, 2)


def test_bad_client_credentials_are_401_invalid_client(
    mock: MockBitbucket, token_client: httpx.Client
) -> None:
    response = refresh(token_client, mock.refresh_token, secret="wrong")
    assert (response.status_code, response.json()["error"]) == (401, "invalid_client")
    assert mock.counters.unauthorized == 1


def test_the_token_endpoint_matches_its_path_on_any_host(mock: MockBitbucket) -> None:
    with httpx.Client(transport=mock.transport()) as client:
        response = client.post(
            "http://127.0.0.1:9/site/oauth2/access_token",
            data={"grant_type": "refresh_token", "refresh_token": mock.refresh_token},
            auth=(mock.client_id, mock.client_secret),
        )
        wrong_grant = client.post(
            TOKEN_URL,
            data={"grant_type": "password"},
            auth=(mock.client_id, mock.client_secret),
        )
    assert response.status_code == 200
    assert wrong_grant.json()["error"] == "unsupported_grant_type"


def test_an_access_token_refreshed_away_keeps_working_until_it_expires(
    mock: MockBitbucket, token_client: httpx.Client
) -> None:
    old_access = mock.oauth_access_token
    refresh(token_client, mock.refresh_token)
    with http(mock, f"Bearer {old_access}") as client:
        assert client.get("/user").status_code == 200


def test_the_oauth2_client_refreshes_once_the_token_expires_and_stores_the_rotation() -> None:
    mock, clock = make_mock()
    stored: list[OAuth2Tokens] = []
    auth: OAuth2 = mock.oauth2(on_refresh=stored.append)
    with BitbucketClient(
        auth=auth,
        transport=mock.transport(),
        clock=clock.monotonic,
        now=clock.time,
        sleep=clock.sleep,
    ) as client:
        client.user()
        clock.advance(7200)
        assert client.user()["account_id"] == mock.dataset.user.account_id
    assert [tokens.refresh_token for tokens in stored] == [mock.refresh_token]
    assert (mock.counters.refreshes, mock.counters.unauthorized) == (1, 0)


def test_calls_with_oauth_tokens_count_against_the_consumer_across_refreshes(
    mock: MockBitbucket, token_client: httpx.Client
) -> None:
    with http(mock, "oauth") as client:
        client.get("/user")
    refresh(token_client, mock.refresh_token)
    with http(mock, "oauth") as client:
        client.get("/user")
    assert mock.counters.per_principal == {f"consumer:{mock.client_id}": 2}


# -- faults ----------------------------------------------------------------------------


def statuses_and_errors(mock: MockBitbucket, count: int, **extensions: Any) -> list[object]:
    """The status of each of ``count`` requests, or the transport error's type."""
    outcomes: list[object] = []
    with http(mock) as client:
        for _ in range(count):
            try:
                outcomes.append(client.get("/user", **extensions).status_code)
            except httpx.TransportError as error:
                outcomes.append(type(error))
    return outcomes


def test_server_errors_come_at_their_rate_as_500_502_or_an_html_503() -> None:
    mock, _ = make_mock(faults=Faults(server_error_rate=0.3))
    outcomes = statuses_and_errors(mock, 1000)
    errors = [status for status in outcomes if status != 200]
    assert 250 < len(errors) < 350
    assert set(errors) == {500, 502, 503}
    with http(mock) as client:
        mock.script(500)  # a scripted 5xx uses the envelope
        assert error_message(client.get("/user")) == "Internal server error"
    assert mock.counters.server_errors == len(errors) + 1


def test_a_503_fault_has_an_html_body_and_the_others_the_envelope() -> None:
    mock, _ = make_mock(faults=Faults(server_error_rate=1.0))
    bodies: dict[int, httpx.Response] = {}
    with http(mock) as client:
        while len(bodies) < 3:
            response = client.get("/user")
            bodies[response.status_code] = response
    assert bodies[503].headers["Content-Type"] == "text/html"
    assert b"503 Service Unavailable" in bodies[503].content
    assert error_message(bodies[500]) == "Internal server error"
    assert error_message(bodies[502]) == "Bad gateway"


def test_resets_come_at_their_rate_as_remote_protocol_errors() -> None:
    mock, _ = make_mock(faults=Faults(reset_rate=0.2))
    outcomes = statuses_and_errors(mock, 1000)
    resets = outcomes.count(httpx.RemoteProtocolError)
    assert 150 < resets < 250
    assert set(outcomes) == {200, httpx.RemoteProtocolError}
    assert mock.counters.resets == resets


def test_a_reset_says_the_server_disconnected() -> None:
    mock, _ = make_mock()
    mock.script("reset")
    with http(mock) as client, pytest.raises(httpx.RemoteProtocolError) as caught:
        client.get("/user")
    assert str(caught.value) == "Server disconnected without sending a response."


def test_a_timeout_waits_the_read_timeout_then_raises_read_timeout() -> None:
    mock, clock = make_mock(faults=Faults(timeout_rate=1.0))
    with http(mock) as client, pytest.raises(httpx.ReadTimeout):
        client.get("/user", timeout=httpx.Timeout(10, read=3))
    assert clock.sleeps == [3.0]
    assert mock.counters.timeouts == 1


def test_a_timeout_without_a_read_timeout_waits_5_s() -> None:
    mock, clock = make_mock()
    mock.script("timeout")
    with http(mock) as client, pytest.raises(httpx.ReadTimeout):
        client.get("/user", timeout=None)
    assert clock.sleeps == [5.0]


def test_timeouts_come_at_their_rate() -> None:
    mock, _ = make_mock(faults=Faults(timeout_rate=0.1))
    outcomes = statuses_and_errors(mock, 1000)
    assert 60 < outcomes.count(httpx.ReadTimeout) < 140


def test_a_slow_request_is_answered_slow_seconds_late() -> None:
    mock, clock = make_mock(faults=Faults(slow_rate=1.0, slow_seconds=4))
    with http(mock) as client:
        assert client.get("/user", timeout=5).status_code == 200
    assert clock.sleeps == [4.0]


def test_a_slow_request_beyond_the_read_timeout_times_out_after_the_read_timeout() -> None:
    mock, clock = make_mock(faults=Faults(slow_rate=1.0, slow_seconds=30))
    with http(mock) as client, pytest.raises(httpx.ReadTimeout):
        client.get("/user", timeout=5)
    assert clock.sleeps == [5.0]
    assert mock.counters.timeouts == 1


def test_slow_requests_come_at_their_rate() -> None:
    mock, clock = make_mock(faults=Faults(slow_rate=0.25, slow_seconds=1))
    statuses_and_errors(mock, 1000)
    assert 200 < len(clock.sleeps) < 300


def test_latency_delays_every_response_including_errors() -> None:
    mock, clock = make_mock(latency=0.25, limit=1)
    with http(mock) as client:
        assert [client.get("/user").status_code for _ in range(2)] == [200, 429]
    with http(mock, None) as client:
        client.get("/user")
    assert clock.sleeps == [0.25, 0.25, 0.25]


def test_faulted_requests_count_against_the_window() -> None:
    mock, _ = make_mock(limit=5, faults=Faults(server_error_rate=0.5, reset_rate=0.5))
    outcomes = statuses_and_errors(mock, 6)
    assert 200 not in outcomes
    assert outcomes[-1] == 429
    assert mock.counters.per_principal == {"access-token": 5}


def test_the_same_seed_draws_the_same_faults_and_another_seed_others() -> None:
    faults = Faults(server_error_rate=0.2, reset_rate=0.2, timeout_rate=0.1)
    runs = [statuses_and_errors(make_mock(seed=seed, faults=faults)[0], 200) for seed in (1, 1, 2)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


# -- a full outage -----------------------------------------------------------------------

OUTAGE = Faults(outage_start=10, outage_seconds=20)


def statuses_at(mock: MockBitbucket, clock: VirtualClock, times: list[float]) -> list[int]:
    """The status of a ``/user`` request at each of ``times`` (seconds on the clock)."""
    statuses = []
    with http(mock) as client:
        for at in times:
            clock.advance(at - clock.monotonic())
            statuses.append(client.get("/user").status_code)
    return statuses


def test_an_outage_answers_503_from_its_start_until_its_end_and_not_outside() -> None:
    mock, clock = make_mock(faults=OUTAGE)
    assert statuses_at(mock, clock, [0, 9.9, 10, 20, 29.9, 30, 100]) == [
        200,
        200,
        503,
        503,
        503,
        200,
        200,
    ]


def test_an_outage_503_is_the_html_page_of_a_proxy() -> None:
    mock, clock = make_mock(faults=OUTAGE)
    clock.advance(15)
    with http(mock) as client:
        response = client.get(f"{repo_path(mock)}/pullrequests")
    assert (response.status_code, response.headers["Content-Type"]) == (503, "text/html")
    assert b"503 Service Unavailable" in response.content


def test_an_outage_is_timed_from_the_mocks_creation_not_from_zero() -> None:
    clock = VirtualClock(start=1000.0)
    mock = MockBitbucket(size=SMALL, faults=OUTAGE, clock=clock.monotonic, now=clock.time)
    assert statuses_at(mock, clock, [1005, 1010, 1030]) == [200, 503, 200]


def test_requests_during_an_outage_use_no_slot_of_the_rate_window() -> None:
    mock, clock = make_mock(limit=2, faults=OUTAGE)
    statuses = statuses_at(mock, clock, [10, 11, 12, 13, 14, 30, 30, 30])
    assert statuses == [503, 503, 503, 503, 503, 200, 200, 429]
    assert mock.counters.per_principal == {"access-token": 2}


def test_an_outage_answers_before_authentication() -> None:
    mock, clock = make_mock(faults=OUTAGE)
    clock.advance(10)
    with http(mock, None) as client:
        assert client.get("/user").status_code == 503
    assert (mock.counters.outage_calls, mock.counters.unauthorized) == (1, 0)


def test_scripted_steps_come_before_an_outage() -> None:
    mock, clock = make_mock(faults=OUTAGE)
    clock.advance(10)
    mock.script(404)
    assert statuses_and_errors(mock, 2) == [404, 503]


def test_the_token_endpoint_stays_up_during_an_outage() -> None:
    mock, _ = make_mock(faults=Faults(outage_start=0, outage_seconds=60))
    headers = {"X-Client": f"{mock.client_id}:{mock.client_secret}"}
    with httpx.Client(transport=mock.transport(), headers=headers) as token_client:
        assert refresh(token_client, mock.refresh_token).status_code == 200
    assert statuses_and_errors(mock, 1) == [503]


def test_outage_calls_are_their_own_outcome_so_the_outcomes_add_up_to_the_calls() -> None:
    mock, clock = make_mock(limit=3, faults=OUTAGE)
    statuses_at(mock, clock, [0, 10, 20, 30, 30, 30])
    counters = mock.counters
    assert counters == MockCounters(
        calls=6,
        ok=3,
        rate_limited=1,
        outage_calls=2,
        per_principal={"access-token": 3},
    )


def test_an_outage_answer_takes_the_latency_and_times_out_beyond_the_read_timeout() -> None:
    mock, clock = make_mock(faults=OUTAGE, latency=2.0)
    clock.advance(10)
    with http(mock) as client:
        assert client.get("/user").status_code == 503
        with pytest.raises(httpx.ReadTimeout):
            client.get("/user", timeout=1.0)
    assert clock.sleeps == [2.0, 1.0]
    assert (mock.counters.outage_calls, mock.counters.timeouts) == (2, 0)


def test_an_outage_takes_timedeltas_as_seconds() -> None:
    faults = Faults(outage_start=timedelta(minutes=5), outage_seconds=timedelta(minutes=10))
    assert faults == Faults(outage_start=300.0, outage_seconds=600.0)


def test_no_outage_by_default() -> None:
    assert [Faults().in_outage(elapsed) for elapsed in (0.0, 1.0, 1e9)] == [False, False, False]


# -- scripted steps ---------------------------------------------------------------------


def test_scripted_steps_answer_the_next_requests_in_order_before_normal_handling() -> None:
    mock, _ = make_mock()
    mock.script(503, 429, "reset", 404)
    outcomes = statuses_and_errors(mock, 5)
    assert outcomes == [503, 429, httpx.RemoteProtocolError, 404, 200]


def test_a_scripted_429_uses_the_mocks_style_and_hint() -> None:
    mock, clock = make_mock(hint="retry-after", window=100)
    with http(mock) as client:
        client.get("/user")
        clock.advance(40)
        mock.script(429)
        refused = client.get("/user")
    assert (refused.content, refused.reason_phrase) == (RATE_LIMIT_BODY, "Unknown Status Code")
    assert refused.headers["Retry-After"] == "60"  # until the oldest slot frees


def test_a_scripted_step_with_a_path_waits_for_a_request_to_that_path(
    mock: MockBitbucket, client: httpx.Client
) -> None:
    path = f"{repo_path(mock)}/issues"
    mock.script(502, path=path)
    assert client.get("/user").status_code == 200
    assert client.get(path, params={"pagelen": 5}).status_code == 502
    assert client.get(path).status_code == 200


def test_a_scripted_response_is_sent_as_it_is(mock: MockBitbucket, client: httpx.Client) -> None:
    mock.script(httpx.Response(418, headers={"X-Teapot": "yes"}, json={"short": "stout"}))
    response = client.get("/user")
    assert (response.status_code, response.headers["X-Teapot"], response.json()) == (
        418,
        "yes",
        {"short": "stout"},
    )
    assert mock.counters.bad_requests == 1


def test_scripted_steps_skip_authentication(mock: MockBitbucket) -> None:
    mock.script(500)
    with http(mock, None) as client:
        assert client.get("/user").status_code == 500
        assert client.get("/user").status_code == 401


def test_a_scripted_step_for_the_token_path_answers_the_refresh(
    mock: MockBitbucket, token_client: httpx.Client
) -> None:
    mock.script(503, path="/site/oauth2/access_token")
    assert refresh(token_client, mock.refresh_token).status_code == 503
    assert refresh(token_client, mock.refresh_token).status_code == 200


@pytest.mark.parametrize("step", [200, 302, 600, "crash", True, 1.5])
def test_a_step_that_is_no_error_status_reset_timeout_or_response_is_refused(
    mock: MockBitbucket, step: object
) -> None:
    with pytest.raises(ValueError, match="steps must be"):
        mock.script(step)  # type: ignore[arg-type]


# -- counters --------------------------------------------------------------------------


def test_counters_sort_every_request_into_one_outcome_and_reset_to_zero() -> None:
    mock, _ = make_mock(limit=4)
    mock.script("reset", "timeout")
    statuses_and_errors(mock, 2)
    with http(mock) as client:
        client.get("/user")
        client.get(f"{repo_path(mock)}/pullrequests/1/diff", follow_redirects=True)
        client.get("/nothing")
        client.get("/user")
        client.get("/workspaces/acme/members", params={"pagelen": 0})
    with http(mock, None) as client:
        client.get("/user")
    counters = mock.counters
    assert counters == MockCounters(
        calls=9,
        ok=3,
        rate_limited=2,
        resets=1,
        timeouts=1,
        unauthorized=1,
        not_found=1,
        per_principal={"access-token": 4},
    )
    mock.reset_counters()
    assert mock.counters == MockCounters()


def test_counters_are_a_snapshot(mock: MockBitbucket, client: httpx.Client) -> None:
    before = mock.counters
    client.get("/user")
    assert (before.calls, mock.counters.calls) == (0, 1)


# -- bad input: every request gets Bitbucket's 4xx, is counted, and nothing raises -------------


@pytest.mark.parametrize(
    "host", ["bad host", "a/b", "user@api.bitbucket.org", "api.bitbucket.org:99999", "", "[zz]"]
)
def test_a_bad_host_header_is_400_with_the_error_envelope_and_counted(
    mock: MockBitbucket, host: str
) -> None:
    headers = {"Host": host, "Authorization": mock.bearer().authorization()}
    reply = mock.respond("GET", f"{API}/user", headers)
    assert (reply.status, reply.header("Content-Type")) == (400, "application/json; charset=utf-8")
    assert reply.body == (
        b'{"type":"error","error":{"message":"Bad Request",'
        b'"detail":"The request\'s URL or Host header is not valid"}}'
    )
    counters = mock.counters
    assert (counters.calls, counters.bad_requests, counters.per_principal) == (1, 1, {})


@pytest.mark.parametrize(
    "url",
    ["ftp://api.bitbucket.org/2.0/user", "http:///2.0/user", "http://[::1/2.0/user", "user", ""],
)
def test_a_url_no_http_server_would_take_is_400_and_counted(mock: MockBitbucket, url: str) -> None:
    assert mock.respond("GET", url, {"Authorization": mock.bearer().authorization()}).status == 400
    assert (mock.counters.calls, mock.counters.bad_requests) == (1, 1)


def test_a_host_with_a_port_or_an_ipv6_address_is_fine(mock: MockBitbucket) -> None:
    bearer = mock.bearer().authorization()
    for origin in ("http://127.0.0.1:8080", "http://[::1]:8080", "https://mock.test"):
        host = origin.partition("://")[2]
        reply = mock.respond("GET", f"{origin}/2.0/user", {"Host": host, "Authorization": bearer})
        assert reply.status == 200


def test_a_bug_inside_the_mock_is_a_counted_500_and_never_escapes_a_transport(
    mock: MockBitbucket, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_get: object) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(mock._router, "route", broken)
    with caplog.at_level(logging.ERROR, logger="bb_backoff.testing"), http(mock) as client:
        response = client.get("/user", params={"access_token": "s3cret"})

    async def via_async() -> int:
        async with httpx.AsyncClient(
            transport=mock.async_transport(),
            base_url=API,
            headers={"Authorization": mock.bearer().authorization()},
        ) as client:
            return (await client.get("/user")).status_code

    assert (response.status_code, asyncio.run(via_async())) == (500, 500)
    assert response.json()["error"] == {
        "message": "Something went wrong",
        "detail": "KeyError inside the mock: a bug in the mock",
    }
    counters = mock.counters
    assert (counters.calls, counters.server_errors, counters.per_principal) == (
        2,
        2,
        {"access-token": 2},
    )
    assert "the mock failed on GET" in caplog.text
    assert "s3cret" not in caplog.text


def test_a_request_refused_before_its_route_uses_its_slot_and_is_counted_once(
    mock: MockBitbucket,
) -> None:
    """Every request the window admitted is in per_principal and in exactly one outcome."""
    with http(mock) as client:
        statuses = [
            client.get("/repositories/acme", params={"sort": "links"}).status_code,
            client.post("/user").status_code,
            client.get("/repositories").status_code,
            client.get("/repositories/acme", params={"pagelen": "x"}).status_code,
        ]
    counters = mock.counters
    assert statuses == [400, 405, 410, 400]
    assert (counters.calls, counters.bad_requests, counters.per_principal) == (
        4,
        4,
        {"access-token": 4},
    )


# -- determinism and arguments -------------------------------------------------------------


def test_the_same_seed_serves_the_same_bytes() -> None:
    bodies = []
    for _ in range(2):
        mock, _ = make_mock(seed=11)
        with http(mock) as client:
            bodies.append(client.get(f"{repo_path(mock)}/pullrequests?state=ALL").content)
    assert bodies[0] == bodies[1]


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"limit": -1}, "limit"),
        ({"limit": 1.5}, "limit"),
        ({"window": 0}, "window"),
        ({"window": -5}, "window"),
        ({"hint": "sometimes"}, "hint"),
        ({"other_consumers": 1.5}, "other_consumers"),
        ({"other_consumers": -0.1}, "other_consumers"),
        ({"latency": -1}, "latency"),
        ({"faults": "many"}, "faults"),
        ({"clock": 3}, "clock"),
        ({"sleep": None}, "sleep"),
        ({"async_sleep": 0}, "async_sleep"),
        ({"base_url": "api.bitbucket.org"}, "base_url"),
        ({"token_url": "/site/oauth2/access_token"}, "token_url"),
        ({"seed": "0"}, "seed"),
        # bool() of anything was taken: "false" turned JSON 429s on.
        ({"json_429": "false"}, "json_429"),
        ({"token_headers": 1}, "token_headers"),
        ({"count_rejected": None}, "count_rejected"),
        # A control character raised httpx.InvalidURL, raw.
        ({"base_url": "https://api.bitbucket.org/2.0\n"}, "base_url"),
        ({"token_url": "https://bitbucket.org/\x00/token"}, "token_url"),
        ({"base_url": "https://xn--pi-7ld.example/2.0"}, "base_url"),  # idna's UnicodeError
        # A 400-digit seed filled the repr; past 4,300 digits it failed, naming nothing.
        pytest.param({"seed": 10**400}, "seed", id="seed-400-digits"),
        pytest.param({"seed": 10**5000}, "seed", id="seed-5000-digits"),
        ({"seed": 2**64 + 1}, "seed"),
    ],
)
def test_invalid_arguments_raise_value_error_naming_the_parameter(
    options: dict[str, Any], name: str
) -> None:
    with pytest.raises(ValueError, match=name):
        MockBitbucket(**options)


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"server_error_rate": 1.1}, "server_error_rate"),
        ({"reset_rate": -0.1}, "reset_rate"),
        ({"timeout_rate": "0.1"}, "timeout_rate"),
        ({"slow_seconds": -1}, "slow_seconds"),
        ({"server_error_rate": 0.6, "slow_rate": 0.6}, "at most 1"),
        ({"outage_start": -1}, "outage_start"),
        ({"outage_start": math.nan}, "outage_start"),
        ({"outage_seconds": math.inf}, "outage_seconds"),
        ({"outage_seconds": "600"}, "outage_seconds"),
    ],
)
def test_invalid_faults_raise_value_error_naming_the_rate(
    options: dict[str, Any], name: str
) -> None:
    with pytest.raises(ValueError, match=name):
        Faults(**options)


def test_a_custom_base_url_moves_the_api_and_its_links() -> None:
    mock, _ = make_mock(base_url="http://bitbucket.internal/api/2.0/")
    with httpx.Client(
        transport=mock.transport(), headers={"Authorization": mock.bearer().authorization()}
    ) as client:
        page = client.get(
            "http://bitbucket.internal/api/2.0/workspaces/acme/members?pagelen=1"
        ).json()
        assert page["next"] == (
            "http://bitbucket.internal/api/2.0/workspaces/acme/members?pagelen=1&page=2"
        )
        assert client.get("http://bitbucket.internal/2.0/user").status_code == 404


# -- transports and clients ---------------------------------------------------------------


def test_the_async_transport_answers_like_the_sync_one_and_waits_with_async_sleep() -> None:
    waits: list[float] = []

    async def async_sleep(seconds: float) -> None:
        waits.append(seconds)

    mock = MockBitbucket(size=SMALL, latency=0.5, limit=1, async_sleep=async_sleep)

    async def main() -> list[int]:
        async with httpx.AsyncClient(
            transport=mock.async_transport(),
            base_url=API,
            headers={"Authorization": mock.bearer().authorization()},
        ) as client:
            return [(await client.get("/user")).status_code for _ in range(2)]

    assert asyncio.run(main()) == [200, 429]
    assert waits == [0.5, 0.5]


def test_the_async_transport_raises_the_same_transport_errors() -> None:
    mock, clock = make_mock()
    mock.script("reset", "timeout")

    async def main() -> list[type[Exception]]:
        raised: list[type[Exception]] = []
        async with httpx.AsyncClient(transport=mock.async_transport(), base_url=API) as client:
            for _ in range(2):
                try:
                    await client.get("/user", timeout=2)
                except httpx.TransportError as error:
                    raised.append(type(error))
        return raised

    assert run_virtual(main(), clock) == [httpx.RemoteProtocolError, httpx.ReadTimeout]
    assert clock.sleeps == [2.0]


def test_the_sync_transport_keeps_exact_counts_under_real_threads() -> None:
    mock = MockBitbucket(size=SMALL, limit=300)
    transport = mock.transport()

    def hammer() -> None:
        with httpx.Client(
            transport=transport,
            base_url=API,
            headers={"Authorization": mock.bearer().authorization()},
        ) as client:
            for _ in range(50):
                client.get("/user")

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    counters = mock.counters
    assert (counters.calls, counters.ok, counters.rate_limited) == (400, 300, 100)


def sync_import(client: BitbucketClient) -> dict[str, set[tuple[Any, ...]]]:
    found: dict[str, set[tuple[Any, ...]]] = {kind: set() for kind in ITEM_KINDS}
    client.user()
    for repository in client.repos():
        name = repository["full_name"]
        workspace, slug = name.split("/")
        client.repo(workspace, slug)
        found["repository"].add((name,))
        for pull_request in client.pull_requests(workspace, slug):
            number = pull_request["id"]
            found["pull_request"].add((name, number))
            for comment in client.pull_request_comments(workspace, slug, number):
                found["pull_request_comment"].add((name, number, comment["id"]))
            if client.pull_request_diff(workspace, slug, number).startswith("diff --git"):
                found["diff"].add((name, number))
        for issue in client.issues(workspace, slug):
            found["issue"].add((name, issue["id"]))
            for comment in client.issue_comments(workspace, slug, issue["id"]):
                found["issue_comment"].add((name, issue["id"], comment["id"]))
    found["member"] = {(m["user"]["account_id"],) for m in client.workspace_members("acme")}
    return found


async def async_import(client: AsyncBitbucketClient) -> dict[str, set[tuple[Any, ...]]]:
    found: dict[str, set[tuple[Any, ...]]] = {kind: set() for kind in ITEM_KINDS}
    await client.user()
    async for repository in client.repos():
        name = repository["full_name"]
        workspace, slug = name.split("/")
        await client.repo(workspace, slug)
        found["repository"].add((name,))
        async for pull_request in client.pull_requests(workspace, slug):
            number = pull_request["id"]
            found["pull_request"].add((name, number))
            async for comment in client.pull_request_comments(workspace, slug, number):
                found["pull_request_comment"].add((name, number, comment["id"]))
            if (await client.pull_request_diff(workspace, slug, number)).startswith("diff --git"):
                found["diff"].add((name, number))
        async for issue in client.issues(workspace, slug):
            found["issue"].add((name, issue["id"]))
            async for comment in client.issue_comments(workspace, slug, issue["id"]):
                found["issue_comment"].add((name, issue["id"], comment["id"]))
    found["member"] = {(m["user"]["account_id"],) async for m in client.workspace_members("acme")}
    return found


def test_the_sync_client_imports_everything_in_exactly_the_calls_needed() -> None:
    mock, clock = make_mock()
    with BitbucketClient(
        auth=mock.bearer(),
        transport=mock.transport(),
        clock=clock.monotonic,
        now=clock.time,
        sleep=clock.sleep,
    ) as client:
        found = sync_import(client)
    assert found == mock.dataset.expected()
    assert mock.counters.calls == mock.counters.ok == mock.dataset.requests_needed()


def test_the_async_client_imports_everything_in_exactly_the_calls_needed() -> None:
    mock, clock = make_mock()

    async def main() -> dict[str, set[tuple[Any, ...]]]:
        async with AsyncBitbucketClient(
            auth=mock.bearer(),
            transport=mock.async_transport(),
            clock=clock.monotonic,
            now=clock.time,
            sleep=clock.sleep,
        ) as client:
            return await async_import(client)

    assert run_virtual(main(), clock) == mock.dataset.expected()
    assert mock.counters.calls == mock.counters.ok == mock.dataset.requests_needed()


def test_an_import_completes_through_rate_limits_and_faults_on_virtual_time() -> None:
    mock, clock = make_mock(
        limit=20,
        window=60,
        hint="retry-after",
        faults=Faults(server_error_rate=0.05, reset_rate=0.05, slow_rate=0.05, slow_seconds=1),
    )
    with BitbucketClient(
        auth=mock.basic(),
        transport=mock.transport(),
        policy=ExponentialBackoff(seed=1),
        clock=clock.monotonic,
        now=clock.time,
        sleep=clock.sleep,
    ) as client:
        found = sync_import(client)
    counters = mock.counters
    accepted = counters.per_principal[f"user:{mock.email}"]
    assert found == mock.dataset.expected()
    # A diff retried after its target failed starts again at the redirect.
    assert counters.ok >= mock.dataset.requests_needed()
    assert counters.rate_limited > 0
    assert counters.server_errors + counters.resets > 0
    # At most 20 accepted calls in any 60 s.
    assert clock.monotonic() >= 60 * (math.ceil(accepted / 20) - 1)
