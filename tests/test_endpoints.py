"""Endpoint paths and page-length caps (the helpers are exercised in test_client.py)."""

from __future__ import annotations

import pytest

from bb_backoff import _endpoints as endpoints


@pytest.mark.parametrize(
    ("path", "cap"),
    [
        ("/repositories/ws/repo/pullrequests", 50),
        ("/repositories/ws/repo/pullrequests/", 50),
        ("/repositories/ws/repo/pullrequests/3/comments", 100),
        ("/repositories/ws/repo/issues", 100),
        ("/workspaces/ws/members", 100),
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
    assert endpoints.repos(None, "member", 50) == (
        "/repositories",
        {"pagelen": 50, "sort": "created_on", "role": "member"},
    )
    assert (
        endpoints.pull_request_diff("ws", "repo", 7) == "/repositories/ws/repo/pullrequests/7/diff"
    )
