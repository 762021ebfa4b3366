"""The mock's pure router: paths and queries to replies, with no lock, clock or transport.

The endpoints' payloads, envelopes and errors are pinned end to end in
test_mock.py; these tests drive the router directly, for what only it decides.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bb_backoff._endpoints import PAGELEN_MAX, PULL_REQUEST_PAGELEN_MAX
from bb_backoff.testing import Dataset, DatasetSize, MockReply
from bb_backoff.testing._routes import DEFAULT_PAGELEN, RENDERED_APIS, Get, Query, Router

API = "https://api.bitbucket.org/2.0"
SIZE = DatasetSize(
    repositories=2,
    pull_requests=12,
    comments_per_pull_request=2,
    issues=7,
    comments_per_issue=2,
    members=23,
)
DATASET = Dataset.generate(1, SIZE)


def get(path: str, query: Query | None = None, *, api: str = API) -> Get:
    return Get(path, query or [], api, DATASET.user)


def body(reply: MockReply) -> Any:
    return json.loads(reply.body)


@pytest.fixture
def router() -> Router:
    return Router(DATASET)


def test_the_same_request_always_gets_the_same_reply(router: Router) -> None:
    request = get("/workspaces/acme/members", [("pagelen", "5"), ("page", "2")])
    first = router.route(request)
    assert first == router.route(request)
    assert first == Router(DATASET).route(request)
    assert (first.status, first.delay, first.fault) == (200, 0.0, None)


def test_rendered_listings_are_kept_for_the_last_few_api_roots_only(router: Router) -> None:
    """Links name the request's origin: a listing is rendered per API root.

    Every ``Host`` header a client sends to a served mock made a new root,
    and each kept its rendered listings for ever (1.6 GB after 3,000 hosts).
    """
    path = "/workspaces/acme/members"
    for index in range(3 * RENDERED_APIS):
        api = f"http://host-{index}.test/2.0"
        page = body(router.route(get(path, api=api)))
        assert page["next"].startswith(api)
    assert len(router._rendered) == RENDERED_APIS
    # A root whose listings were dropped renders them again, the same.
    assert body(router.route(get(path))) == body(Router(DATASET).route(get(path)))


def test_user_answers_with_the_account_of_the_request_the_router_does_not_authenticate(
    router: Router,
) -> None:
    bot = DATASET.members[0]
    reply = router.route(Get("/user", [], API, bot))
    assert body(reply) == bot.to_json(API)


def test_a_trailing_slash_routes_like_the_path_without_it(router: Router) -> None:
    assert router.route(get("/user/")) == router.route(get("/user"))


def test_an_encoded_slash_stays_inside_its_path_segment(router: Router) -> None:
    slug = DATASET.repositories[0].slug
    encoded = router.route(get(f"/repositories/acme%2F{slug}"))
    assert (encoded.status, body(encoded)["error"]["message"]) == (
        404,
        f"No workspace with identifier 'acme/{slug}'.",
    )
    split = router.route(get(f"/repositories/acme/{slug}"))
    assert split.status == 200


def test_the_last_of_repeated_query_parameters_wins(router: Router) -> None:
    reply = router.route(get("/workspaces/acme/members", [("pagelen", "500"), ("pagelen", "3")]))
    assert (body(reply)["pagelen"], len(body(reply)["values"])) == (3, 3)


@pytest.mark.parametrize(
    ("suffix", "cap"),
    [
        ("/pullrequests", PULL_REQUEST_PAGELEN_MAX),
        ("/issues", PAGELEN_MAX),
        ("/pullrequests/1/comments", PAGELEN_MAX),
        ("/issues/1/comments", PAGELEN_MAX),
    ],
)
def test_pagelen_caps_are_the_clients_limits(router: Router, suffix: str, cap: int) -> None:
    path = f"/repositories/{DATASET.repositories[0].full_name}{suffix}"
    assert router.route(get(path, [("pagelen", str(cap))])).status == 200
    refused = router.route(get(path, [("pagelen", str(cap + 1))]))
    assert (refused.status, body(refused)) == (
        400,
        {"type": "error", "error": {"message": "Invalid pagelen"}},
    )


def test_links_point_at_the_api_of_each_request_even_after_a_cached_render(
    router: Router,
) -> None:
    path = "/repositories/acme"
    served = "http://127.0.0.1:8123/2.0"
    public = body(router.route(get(path, [("pagelen", "1")])))
    local = body(router.route(get(path, [("pagelen", "1")], api=served)))
    assert public["values"][0] == DATASET.repositories[0].to_json(API)
    assert local["values"][0] == DATASET.repositories[0].to_json(served)
    assert local["next"] == f"{served}{path}?pagelen=1&page=2"


def test_the_diff_range_matches_hashes_and_the_carriage_return_in_any_case(
    router: Router,
) -> None:
    repository = DATASET.repositories[1]
    pull_request = repository.pull_requests[4]
    source, destination = pull_request.source_hash[:12], pull_request.destination_hash[:12]
    path = (
        f"/repositories/{repository.full_name}/diff/"
        f"{repository.full_name}:{source.upper()}%0d{destination.upper()}"
    )
    reply = router.route(get(path))
    assert (reply.status, reply.body.decode()) == (200, pull_request.diff)


@given(pagelen=st.integers(min_value=1, max_value=PAGELEN_MAX))
def test_following_next_links_visits_every_member_once_in_ceil_size_over_pagelen_pages(
    pagelen: int,
) -> None:
    router = Router(DATASET)
    path = "/workspaces/acme/members"
    query: Query = [("pagelen", str(pagelen))]
    seen: list[str] = []
    pages = 0
    while True:
        page = body(router.route(get(path, query)))
        pages += 1
        assert page["page"] == pages
        seen += [member["user"]["account_id"] for member in page["values"]]
        if "next" not in page:
            break
        query = [("pagelen", str(pagelen)), ("page", str(pages + 1))]
        assert page["next"] == f"{API}{path}?pagelen={pagelen}&page={pages + 1}"
    assert seen == [member.account_id for member in DATASET.members]
    assert pages == math.ceil(len(DATASET.members) / pagelen)


def test_a_listing_without_pagelen_has_the_default_page_length(router: Router) -> None:
    page = body(router.route(get("/workspaces/acme/members")))
    assert (page["pagelen"], len(page["values"])) == (DEFAULT_PAGELEN, DEFAULT_PAGELEN)


def listing_paths() -> list[str]:
    repository = DATASET.repositories[0]
    pull_request = next(pr for pr in repository.pull_requests if pr.comments)
    issue = next(issue for issue in repository.issues if issue.comments)
    base = f"/repositories/{repository.full_name}"
    return [
        "/user/workspaces",
        "/workspaces/acme/members",
        "/repositories/acme",
        f"{base}/pullrequests",
        f"{base}/issues",
        f"{base}/pullrequests/{pull_request.id}/comments",
        f"{base}/issues/{issue.id}/comments",
    ]


@pytest.mark.parametrize("path", listing_paths())
def test_a_listing_sorts_by_each_scalar_field_of_its_items_and_refuses_the_others(
    router: Router, path: str
) -> None:
    """A listing sorts by its items' top-level strings, numbers and booleans, nulls last.

    A field null on every item may be a date or an object (an unassigned
    issue's ``assignee``): it is sortable or refused, never a 500.
    """
    items = body(router.route(get(path, [("state", "ALL"), ("pagelen", "50")])))["values"]
    fields = {field for item in items for field in item} - {"type"}
    for field in sorted(fields):
        values = [item[field] for item in items]
        reply = router.route(get(path, [("state", "ALL"), ("pagelen", "50"), ("sort", field)]))
        if all(value is None for value in values):
            assert reply.status in {200, 400}, field
        elif all(value is None or isinstance(value, str | int | float) for value in values):
            assert reply.status == 200, field
            ranked = [item[field] for item in body(reply)["values"]]
            present = [value for value in ranked if value is not None]
            assert present == sorted(present), field
            assert ranked == present + [None] * (len(ranked) - len(present)), field
        else:
            assert (reply.status, body(reply)["error"]["message"]) == (
                400,
                f"Invalid sort field: {field}",
            )
