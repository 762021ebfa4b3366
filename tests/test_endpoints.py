"""Endpoint paths and page-length caps (the helpers are exercised in test_client.py).

``repos()`` without a workspace walks ``/user/workspaces``: its walk is
pinned here on both clients.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import bb_backoff as bb
from bb_backoff import _endpoints as endpoints

BASE = "https://api.bitbucket.org/2.0"


@pytest.mark.parametrize(
    ("path", "cap"),
    [
        ("/repositories/ws/repo/pullrequests", 50),
        ("/repositories/ws/repo/pullrequests/", 50),
        ("/repositories/ws/repo/pullrequests/3/comments", 100),
        ("/repositories/ws/repo/issues", 100),
        ("/workspaces/ws/members", 100),
        # Every list of pull requests (found by an independent probe: these
        # were checked against 100 and sent pagelen=100 to a 400).
        ("/workspaces/ws/pullrequests/{user-uuid}", 50),
        ("/pullrequests/{user-uuid}", 50),
        ("/repositories/ws/repo/commit/abc123/pullrequests", 50),
        ("/repositories/ws/repo/pullrequests/3", 100),
        # Not lists of pull requests, though named so (found by a review).
        ("/repositories/ws/repo/src/main/docs/pullrequests", 100),
        ("/repositories/ws/repo/commits/pullrequests", 100),
        ("/repositories/pullrequests", 100),
    ],
)
def test_pull_request_lists_cap_pagelen_at_50_and_the_rest_at_100(path: str, cap: int) -> None:
    assert endpoints.pagelen_cap(path) == cap


@pytest.mark.parametrize("pagelen", [0, -1, 101, 2.5, "10", True])
def test_invalid_pagelen_names_the_parameter(pagelen: object) -> None:
    with pytest.raises(ValueError, match="pagelen"):
        endpoints.check_pagelen("/repositories/ws/repo/issues", {"pagelen": pagelen})


def test_no_pagelen_is_fine() -> None:
    endpoints.check_pagelen("/repositories/ws/repo/pullrequests", None)
    endpoints.check_pagelen("/repositories/ws/repo/pullrequests", {"state": "ALL"})


def test_listing_endpoints_carry_the_importer_parameters() -> None:
    assert endpoints.pull_requests("ws", "repo", "ALL", 50) == (
        "/repositories/ws/repo/pullrequests",
        {"pagelen": 50, "state": "ALL", "sort": "created_on"},
    )
    assert endpoints.repos("ws", "member", 50) == (
        "/repositories/ws",
        {"pagelen": 50, "sort": "created_on", "role": "member"},
    )
    assert endpoints.user_workspaces(50) == ("/user/workspaces", {"pagelen": 50})
    assert (
        endpoints.pull_request_diff("ws", "repo", 7) == "/repositories/ws/repo/pullrequests/7/diff"
    )


# -- repos() without a workspace: /user/workspaces, then each workspace's listing -----------


def access(slug: str | None, uuid: str | None = None) -> dict[str, Any]:
    workspace = {"type": "workspace_base", "slug": slug, "uuid": uuid}
    return {"type": "workspace_access", "administrator": False, "workspace": workspace}


class Workspaces:
    """Serves /user/workspaces (two pages, one workspace repeated) and each one's repositories."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.paths: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/2.0")
        self.paths.append(request.url.raw_path.decode().removeprefix("/2.0"))
        if path == "/user/workspaces":
            if request.url.params.get("page") == "2":
                return httpx.Response(200, json={"values": self.rows[1:]})
            return httpx.Response(
                200,
                json={"values": self.rows[:1], "next": f"{BASE}/user/workspaces?pagelen=50&page=2"},
            )
        workspace = path.removeprefix("/repositories/")
        names = [f"{workspace}/one", f"{workspace}/two"]
        return httpx.Response(200, json={"values": [{"full_name": name} for name in names]})


ROWS = [access("acme"), access("globex"), access("acme"), access(None, "{1234}")]
WALKED = ["acme/one", "acme/two", "globex/one", "globex/two", "{1234}/one", "{1234}/two"]
REQUESTS = [
    "/user/workspaces?pagelen=50",
    "/repositories/acme?pagelen=50&sort=created_on&role=member",
    "/user/workspaces?pagelen=50&page=2",
    "/repositories/globex?pagelen=50&sort=created_on&role=member",
    "/repositories/%7B1234%7D?pagelen=50&sort=created_on&role=member",
]


def test_sync_repos_walks_user_workspaces_then_each_workspace_once() -> None:
    handler = Workspaces(ROWS)
    with bb.BitbucketClient(
        auth=bb.BearerToken("t"), transport=httpx.MockTransport(handler)
    ) as client:
        walked = [repository["full_name"] for repository in client.repos()]
    assert (walked, handler.paths) == (WALKED, REQUESTS)


def test_async_repos_walks_user_workspaces_then_each_workspace_once() -> None:
    handler = Workspaces(ROWS)

    async def walk() -> list[str]:
        async with bb.AsyncBitbucketClient(
            auth=bb.BearerToken("t"), transport=httpx.MockTransport(handler)
        ) as client:
            return [repository["full_name"] async for repository in client.repos()]

    assert (asyncio.run(walk()), handler.paths) == (WALKED, REQUESTS)


def test_repos_of_every_workspace_sends_nothing_until_iterated_and_checks_pagelen_first() -> None:
    handler = Workspaces(ROWS)
    with bb.BitbucketClient(
        auth=bb.BearerToken("t"), transport=httpx.MockTransport(handler)
    ) as client:
        client.repos()
        with pytest.raises(ValueError, match="pagelen"):
            client.repos(pagelen=101)
    assert handler.paths == []


@pytest.mark.parametrize("row", [access(None), {"workspace": "acme"}, "acme", {"workspace": {}}])
def test_a_user_workspaces_row_naming_no_workspace_is_an_invalid_response(row: object) -> None:
    handler = Workspaces([row])  # type: ignore[list-item]
    with (
        bb.BitbucketClient(
            auth=bb.BearerToken("t"), transport=httpx.MockTransport(handler)
        ) as client,
        pytest.raises(bb.InvalidResponse, match="names no workspace"),
    ):
        list(client.repos())


# -- arguments refused before anything is sent ----------------------------------------------


@pytest.mark.parametrize(
    ("build", "name"),
    [
        # str() of an int past 4,300 digits raised Python's own ValueError, naming nothing.
        (lambda: endpoints.repo(10**5000, "r"), "workspace"),  # type: ignore[arg-type]
        (lambda: endpoints.repo("ws", -(10**5000)), "repo_slug"),  # type: ignore[arg-type]
        (lambda: endpoints.repo(2**63, "r"), "workspace"),  # type: ignore[arg-type]
        (lambda: endpoints.pull_request_diff("ws", "r", 10**5000), "pull_request_id"),
        (lambda: endpoints.issue_comments("ws", "r", 2**63, 50), "issue_id"),
    ],
)
def test_an_int_too_large_for_a_path_is_refused_naming_it(
    build: Callable[[], object], name: str
) -> None:
    with pytest.raises(ValueError, match=rf"^{name} must be .*(64 bits|2\*\*63 - 1), got"):
        build()


def test_ints_up_to_64_bits_still_make_paths() -> None:
    largest = 2**63 - 1
    path = endpoints.repo(largest, -largest)  # type: ignore[arg-type]
    assert path == f"/repositories/{largest}/-{largest}"
    assert endpoints.pull_request_diff("ws", "r", 2**63 - 1).endswith(f"/{2**63 - 1}/diff")


@pytest.mark.parametrize("role", [True, "Admin", "members", "", 1])
def test_a_role_bitbucket_does_not_take_is_refused_naming_role(role: object) -> None:
    """Before, it went out as ``role=True`` and came back a 400 (the mock's: a PaginationError)."""
    with pytest.raises(ValueError, match=r"^role must be one of member, contributor, admin, owner"):
        endpoints.repos("ws", role, 50)  # type: ignore[arg-type]


@pytest.mark.parametrize("role", [*endpoints.ROLES, None])
def test_every_documented_role_and_none_is_taken(role: str | None) -> None:
    path, query = endpoints.repos("ws", role, 50)
    assert (path, query.get("role")) == ("/repositories/ws", role)


@pytest.mark.parametrize("state", ["bogus", "", None, 3, "ALL,OPEN"])
def test_a_pull_request_state_bitbucket_does_not_take_is_refused_naming_state(
    state: object,
) -> None:
    with pytest.raises(ValueError, match=r"^state must be one of ALL, OPEN, MERGED"):
        endpoints.pull_requests("ws", "r", state, 50)  # type: ignore[arg-type]


@pytest.mark.parametrize("state", ["ALL", "open", "Merged", "DECLINED", "superseded"])
def test_every_pull_request_state_is_taken_in_any_case_as_given(state: str) -> None:
    assert endpoints.pull_requests("ws", "r", state, 50)[1]["state"] == state


def test_repos_of_every_workspace_refuses_a_bad_role_before_sending() -> None:
    """Checked at the call, not when the first workspace is listed."""
    handler = Workspaces(ROWS)
    with bb.BitbucketClient(
        auth=bb.BearerToken("t"), transport=httpx.MockTransport(handler)
    ) as client:
        with pytest.raises(ValueError, match=r"^role"):
            client.repos(role="boss")
        with pytest.raises(ValueError, match=r"^state"):
            client.pull_requests("ws", "r", state="closed")
    assert handler.paths == []
