"""The importer's endpoints: paths, default parameters and page-length caps.

Both clients inherit their helpers from :class:`Endpoints`, which builds each
call from these functions, so the sync and async helpers cannot drift apart.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, cast
from urllib.parse import quote, urlsplit

from ._exceptions import InvalidResponse, short_repr

DEFAULT_PAGELEN: Final = 50
"""The page length GitLab's importer asks for."""
PAGELEN_MAX: Final = 100
"""The usual cap on ``pagelen``."""
PULL_REQUEST_PAGELEN_MAX: Final = 50
"""Pull-request lists answer ``pagelen`` above 50 with 400 "Invalid pagelen"."""

# Every list of pull requests: a repository's, a commit's, and a user's
# (across a workspace or everywhere); not a pull request's own lists.
_PULL_REQUEST_LIST: Final = re.compile(
    r"^/repositories/[^/]+/[^/]+/(?:commit/[^/]+/)?pullrequests/?$"
    r"|^(?:/workspaces/[^/]+)?/pullrequests/[^/]+/?$"
)

Params = Mapping[str, Any]

ROLES: Final = ("member", "contributor", "admin", "owner")
"""The ``role`` values ``/repositories/{workspace}`` takes."""
PULL_REQUEST_STATES: Final = ("ALL", "OPEN", "MERGED", "DECLINED", "SUPERSEDED")
"""The ``state`` values a pull-request list takes, in any case (``ALL``: every state, GitLab's)."""
# An id or a path segment given as an int beyond a 64-bit one names nothing
# Bitbucket holds, and past 4,300 digits str() of it fails, naming nothing.
_LARGEST_INT: Final = 2**63 - 1


# Path shapes Bitbucket's API uses, most specific first: (pattern, template).
_PULL_REQUEST_PARTS: Final = "comments|diff|activity|commits|statuses|participants"
_REPOSITORY_PARTS: Final = "pullrequests|issues|milestones|commits|refs|src|diff"
_TEMPLATES: Final = tuple(
    (re.compile(pattern), template)
    for pattern, template in (
        (
            rf"^/repositories/[^/]+/[^/]+/pullrequests/\d+/({_PULL_REQUEST_PARTS})(/\d+)?$",
            r"/repositories/{workspace}/{repo_slug}/pullrequests/{id}/\1",
        ),
        (
            r"^/repositories/[^/]+/[^/]+/issues/\d+/comments(/\d+)?$",
            r"/repositories/{workspace}/{repo_slug}/issues/{id}/comments",
        ),
        (
            r"^/repositories/[^/]+/[^/]+/(pullrequests|issues)/\d+$",
            r"/repositories/{workspace}/{repo_slug}/\1/{id}",
        ),
        (
            rf"^/repositories/[^/]+/[^/]+/({_REPOSITORY_PARTS})(/.*)?$",
            r"/repositories/{workspace}/{repo_slug}/\1",
        ),
        (r"^/repositories/[^/]+/[^/]+$", r"/repositories/{workspace}/{repo_slug}"),
        (r"^/repositories/[^/]+$", r"/repositories/{workspace}"),
        (r"^/repositories$", r"/repositories"),
        (
            r"^/workspaces/[^/]+/(members|projects|permissions)(/.*)?$",
            r"/workspaces/{workspace}/\1",
        ),
        (r"^/workspaces/[^/]+$", r"/workspaces/{workspace}"),
        (r"^/(user|workspaces|user/workspaces|user/permissions/[a-z]+)$", r"/\1"),
    )
)


def endpoint_template(url: str, base_path: str = "/2.0") -> str:
    """The endpoint a URL calls, as a template with no ids and no query: a safe metric label.

    ``https://api.bitbucket.org/2.0/repositories/acme/app/pullrequests/7/comments?page=2``
    becomes ``/repositories/{workspace}/{repo_slug}/pullrequests/{id}/comments``.
    A path of another shape becomes ``"other"``, so labels stay few.

    Args:
        url: the request's URL (absolute or a path).
        base_path: the API root's path, stripped first.
    """
    path = urlsplit(url).path
    if base_path and path.startswith(base_path.rstrip("/") + "/"):
        path = path[len(base_path.rstrip("/")) :]
    path = path.rstrip("/") or "/"
    for pattern, template in _TEMPLATES:
        match = pattern.match(path)
        if match is not None:
            return match.expand(template)
    return "other"


def pagelen_cap(path: str) -> int:
    """The largest ``pagelen`` the endpoint at ``path`` accepts."""
    return PULL_REQUEST_PAGELEN_MAX if _PULL_REQUEST_LIST.search(path) else PAGELEN_MAX


def check_pagelen(path: str, params: Params | None) -> None:
    """Refuse a ``pagelen`` the endpoint would answer with a 400.

    Raises:
        ValueError: naming ``pagelen`` and the endpoint's cap.
    """
    if not params or "pagelen" not in params:
        return
    value = params["pagelen"]
    cap = pagelen_cap(path)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= cap:
        raise ValueError(f"pagelen must be an integer from 1 to {cap} for {path}, got {value!r}")


def _segment(name: str, value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"{name} must be a string or an integer, got {type(value).__name__}")
    if isinstance(value, int) and not -_LARGEST_INT <= value <= _LARGEST_INT:
        raise ValueError(f"{name} must be a string or an integer of 64 bits, got a huge int")
    text = str(value)
    if not text or text in {".", ".."}:
        raise ValueError(f"{name} must be a non-empty path segment, got {short_repr(value)}")
    return quote(text, safe="")


def _id(name: str, value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _LARGEST_INT:
        raise ValueError(
            f"{name} must be a positive integer up to 2**63 - 1, got {short_repr(value)}"
        )
    return str(value)


def _one_of(name: str, value: object, allowed: tuple[str, ...], *, any_case: bool) -> None:
    """``ValueError`` naming ``name`` unless ``value`` is one of ``allowed``."""
    given = value.upper() if any_case and isinstance(value, str) else value
    if not isinstance(given, str) or given not in allowed:
        raise ValueError(
            f"{name} must be one of {', '.join(allowed)}, got {short_repr(value)} "
            "(Bitbucket answers anything else with 400)"
        )


def _repo(workspace: str, repo_slug: str) -> str:
    return f"/repositories/{_segment('workspace', workspace)}/{_segment('repo_slug', repo_slug)}"


def _listing(path: str, pagelen: int, **params: Any) -> tuple[str, dict[str, Any]]:
    query = {"pagelen": pagelen, **params}
    check_pagelen(path, query)
    return path, query


def repo(workspace: str, repo_slug: str) -> str:
    """``/repositories/{workspace}/{repo_slug}``."""
    return _repo(workspace, repo_slug)


def user_workspaces(pagelen: int) -> tuple[str, dict[str, Any]]:
    """``/user/workspaces``: the workspaces the caller can reach, one ``workspace_access`` each."""
    return _listing("/user/workspaces", pagelen)


def repos(workspace: str, role: str | None, pagelen: int) -> tuple[str, dict[str, Any]]:
    """``/repositories/{workspace}?role=member&sort=created_on``."""
    if role is not None:
        _one_of("role", role, ROLES, any_case=False)
    extra = {"role": role} if role is not None else {}
    return _listing(
        f"/repositories/{_segment('workspace', workspace)}", pagelen, sort="created_on", **extra
    )


def workspace_slug(access: object) -> str:
    """The workspace a ``/user/workspaces`` row names: its slug, else its UUID in braces.

    Raises:
        InvalidResponse: the row names no workspace.
    """
    workspace = access.get("workspace", access) if isinstance(access, dict) else None
    if isinstance(workspace, dict):
        for key in ("slug", "uuid"):
            value = workspace.get(key)
            if isinstance(value, str) and value:
                return value
    raise InvalidResponse("a /user/workspaces row names no workspace (no slug or uuid)")


def _each_workspace(workspaces: Iterator[Any], listing: Callable[[str], Any]) -> Iterator[Any]:
    seen: set[str] = set()
    for access in workspaces:
        slug = workspace_slug(access)
        # Listings may repeat an item: each workspace is listed once.
        if slug not in seen:
            seen.add(slug)
            yield from listing(slug)


async def _each_workspace_async(
    workspaces: AsyncIterator[Any], listing: Callable[[str], Any]
) -> AsyncIterator[Any]:
    seen: set[str] = set()
    async for access in workspaces:
        slug = workspace_slug(access)
        if slug not in seen:
            seen.add(slug)
            async for item in listing(slug):
                yield item


def user() -> str:
    """``/user``: the authenticated account."""
    return "/user"


def issues(workspace: str, repo_slug: str, pagelen: int) -> tuple[str, dict[str, Any]]:
    """``/repositories/{r}/issues?sort=created_on``."""
    return _listing(f"{_repo(workspace, repo_slug)}/issues", pagelen, sort="created_on")


def issue_comments(
    workspace: str, repo_slug: str, issue_id: int, pagelen: int
) -> tuple[str, dict[str, Any]]:
    """``/repositories/{r}/issues/{id}/comments?sort=created_on``."""
    path = f"{_repo(workspace, repo_slug)}/issues/{_id('issue_id', issue_id)}/comments"
    return _listing(path, pagelen, sort="created_on")


def pull_requests(
    workspace: str, repo_slug: str, state: str, pagelen: int
) -> tuple[str, dict[str, Any]]:
    """``/repositories/{r}/pullrequests?state=ALL&sort=created_on`` (pagelen at most 50)."""
    _one_of("state", state, PULL_REQUEST_STATES, any_case=True)
    return _listing(
        f"{_repo(workspace, repo_slug)}/pullrequests", pagelen, state=state, sort="created_on"
    )


def pull_request_comments(
    workspace: str, repo_slug: str, pull_request_id: int, pagelen: int
) -> tuple[str, dict[str, Any]]:
    """``/repositories/{r}/pullrequests/{id}/comments?sort=created_on``."""
    path = (
        f"{_repo(workspace, repo_slug)}/pullrequests/"
        f"{_id('pull_request_id', pull_request_id)}/comments"
    )
    return _listing(path, pagelen, sort="created_on")


def pull_request_diff(workspace: str, repo_slug: str, pull_request_id: int) -> str:
    """``/repositories/{r}/pullrequests/{id}/diff`` (plain text, may redirect)."""
    return (
        f"{_repo(workspace, repo_slug)}/pullrequests/{_id('pull_request_id', pull_request_id)}/diff"
    )


def workspace_members(workspace: str, pagelen: int) -> tuple[str, dict[str, Any]]:
    """``/workspaces/{workspace}/members``."""
    return _listing(f"/workspaces/{_segment('workspace', workspace)}/members", pagelen)


_JsonT = TypeVar("_JsonT")
_TextT = TypeVar("_TextT")
_ItemsT = TypeVar("_ItemsT")


class Endpoints(Generic[_JsonT, _TextT, _ItemsT]):
    """The importer's endpoints, written once for both clients.

    Each helper builds its path and parameters (in :mod:`._endpoints`) and
    hands them to ``get``, ``get_text`` or ``paginate``: plain values and an
    iterator on the sync client, awaitables and an async iterator on the
    async one.
    """

    if TYPE_CHECKING:

        def get(self, path_or_url: str, params: Params | None = None) -> _JsonT: ...
        def get_text(self, path_or_url: str, params: Params | None = None) -> _TextT: ...
        def paginate(self, path_or_url: str, params: Params | None = None) -> _ItemsT: ...

    def repo(self, workspace: str, repo_slug: str) -> _JsonT:
        """One repository."""
        return self.get(repo(workspace, repo_slug))

    def workspaces(self, *, pagelen: int = DEFAULT_PAGELEN) -> _ItemsT:
        """The workspaces the account can reach (``/user/workspaces``).

        Each item is a ``workspace_access``: ``{"administrator": bool,
        "workspace": {"slug": ..., "uuid": ..., ...}}``.
        """
        return self.paginate(*user_workspaces(pagelen))

    def repos(
        self,
        workspace: str | None = None,
        *,
        role: str | None = "member",
        pagelen: int = DEFAULT_PAGELEN,
    ) -> _ItemsT:
        """One workspace's repositories, or those of every workspace the account reaches.

        Atlassian removed the cross-workspace ``GET /2.0/repositories``
        (CHANGE-2770), so without ``workspace`` this walks ``/user/workspaces``
        and lists ``/repositories/{workspace}`` for each workspace in turn,
        as GitLab's importer does: one more listing per workspace.

        Args:
            workspace: the workspace's slug (or UUID in braces); ``None``
                for every workspace the account reaches.
            role: keep the repositories on which the account has this role
                (``"member"``, ``"contributor"``, ``"admin"``, ``"owner"``);
                ``None`` for all it can see.
            pagelen: items per page, 1 to 100.

        Raises:
            ValueError: a bad ``workspace``, ``role`` or ``pagelen``, naming it.
            InvalidResponse: (while iterating) a ``/user/workspaces`` row
                names no workspace.
        """
        if role is not None:  # now, not when the first workspace is listed
            _one_of("role", role, ROLES, any_case=False)
        if workspace is not None:
            return self.paginate(*repos(workspace, role, pagelen))
        workspaces = self.workspaces(pagelen=pagelen)

        def listing(slug: str) -> _ItemsT:
            return self.paginate(*repos(slug, role, pagelen))

        if isinstance(workspaces, AsyncIterator):
            return cast("_ItemsT", _each_workspace_async(workspaces, listing))
        return cast("_ItemsT", _each_workspace(cast("Iterator[Any]", workspaces), listing))

    def user(self) -> _JsonT:
        """The authenticated account."""
        return self.get(user())

    def issues(self, workspace: str, repo_slug: str, *, pagelen: int = DEFAULT_PAGELEN) -> _ItemsT:
        """A repository's issues, oldest first (milestones are inside each issue)."""
        return self.paginate(*issues(workspace, repo_slug, pagelen))

    def issue_comments(
        self,
        workspace: str,
        repo_slug: str,
        issue_id: int,
        *,
        pagelen: int = DEFAULT_PAGELEN,
    ) -> _ItemsT:
        """One issue's comments, oldest first."""
        return self.paginate(*issue_comments(workspace, repo_slug, issue_id, pagelen))

    def pull_requests(
        self,
        workspace: str,
        repo_slug: str,
        *,
        state: str = "ALL",
        pagelen: int = DEFAULT_PAGELEN,
    ) -> _ItemsT:
        """A repository's pull requests in every state, oldest first (pagelen at most 50).

        Args:
            workspace: the workspace's slug (or UUID in braces).
            repo_slug: the repository's slug.
            state: ``"ALL"``, ``"OPEN"``, ``"MERGED"``, ``"DECLINED"`` or
                ``"SUPERSEDED"`` (in any case).
            pagelen: items per page, 1 to 50.

        Raises:
            ValueError: a bad argument, naming it.
        """
        return self.paginate(*pull_requests(workspace, repo_slug, state, pagelen))

    def pull_request_comments(
        self,
        workspace: str,
        repo_slug: str,
        pull_request_id: int,
        *,
        pagelen: int = DEFAULT_PAGELEN,
    ) -> _ItemsT:
        """One pull request's comments, oldest first."""
        return self.paginate(*pull_request_comments(workspace, repo_slug, pull_request_id, pagelen))

    def pull_request_diff(self, workspace: str, repo_slug: str, pull_request_id: int) -> _TextT:
        """One pull request's diff, as text."""
        return self.get_text(pull_request_diff(workspace, repo_slug, pull_request_id))

    def workspace_members(self, workspace: str, *, pagelen: int = DEFAULT_PAGELEN) -> _ItemsT:
        """A workspace's members."""
        return self.paginate(*workspace_members(workspace, pagelen))
