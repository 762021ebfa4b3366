"""The mock's routing: from an API path and query to the reply Bitbucket gives.

Theory of operation
-------------------
:class:`MockBitbucket <bb_backoff.testing.MockBitbucket>` hands the
:class:`Router` only GET requests that passed authentication, their rate
window and the fault draw, as a :class:`Get`.  The router owns no lock, reads
no clock, never sleeps and does no I/O: the same dataset and the same
:class:`Get` always give the same :class:`MockReply` (a resource, a page of a
listing, a redirect, or a 4xx in Bitbucket's error envelope: 400 for a bad
parameter, 404 for what does not exist, 410 for the cross-workspace
listings Atlassian removed).

Handlers register with :func:`_route` for the raw, still percent-encoded
paths their pattern fully matches; the path segments are decoded only after
matching.  A handler that refuses a request raises :class:`_Refused`, which
:meth:`Router.route` turns into its reply.  Every listing goes through
:meth:`Router._listing`, which checks ``pagelen`` against the endpoint's cap,
sorts by one of the fields the endpoint declares sortable, and wraps one page
in Bitbucket's envelope with opaque page links.
"""

from __future__ import annotations

import collections
import math
import re
from collections.abc import Callable
from typing import Any, Final, TypeAlias
from urllib.parse import unquote, urlencode

import attrs

from .._endpoints import PAGELEN_MAX, PULL_REQUEST_PAGELEN_MAX
from ._dataset import PULL_REQUEST_STATES, Account, Comment, Dataset, Issue, PullRequest, Repository
from ._replies import TEXT_CONTENT_TYPE, MockReply, error_reply, json_reply

DEFAULT_PAGELEN: Final = 10
"""Bitbucket's page length when a request names none."""

_ROLES: Final = frozenset({"member", "contributor", "admin", "owner"})
_DIGITS: Final = re.compile(r"[0-9]{1,9}")
_STATUS_NOT_FOUND: Final = 404
_STATUS_GONE: Final = 410
# The fields each listing sorts by: its items' top-level scalar fields.
_REPOSITORY_SORTS: Final = frozenset(
    {"created_on", "updated_on", "full_name", "name", "slug", "uuid", "is_private", "scm"}
    | {"has_issues"}
)
_PULL_REQUEST_SORTS: Final = frozenset(
    {"id", "title", "description", "state", "created_on", "updated_on", "comment_count"}
    | {"task_count", "close_source_branch"}
)
_PULL_REQUEST_COMMENT_SORTS: Final = frozenset({"id", "created_on", "updated_on", "deleted"})
_ISSUE_SORTS: Final = frozenset(
    {"id", "title", "state", "kind", "priority", "votes", "created_on", "updated_on"}
)
_ISSUE_COMMENT_SORTS: Final = frozenset({"id", "created_on", "updated_on"})
_WORKSPACE_ACCESS_SORTS: Final = frozenset({"administrator"})

Query: TypeAlias = list[tuple[str, str]]


class _Refused(Exception):
    """Raised inside the router to answer at once with ``reply`` (a 4xx)."""

    def __init__(self, reply: MockReply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def _not_found(message: str) -> _Refused:
    return _Refused(error_reply(_STATUS_NOT_FOUND, message))


def _bad_request(message: str) -> _Refused:
    return _Refused(error_reply(400, message))


@attrs.frozen
class Get:
    """A GET that passed authentication, its rate window and the fault draw."""

    path: str
    """The raw (percent-encoded) path relative to the API base, like ``/user``."""
    query: Query
    api: str
    """The API base that links point at: the request's origin plus the base path."""
    account: Account


def _last(query: Query, name: str) -> str | None:
    """The last value of a query parameter (Bitbucket keeps the last of repeats)."""
    value = None
    for key, candidate in query:
        if key == name:
            value = candidate
    return value


def _positive(value: str | None, name: str, default: int) -> int:
    if value is None:
        return default
    if not _DIGITS.fullmatch(value) or int(value) < 1:
        raise _bad_request(f"Invalid {name}")
    return int(value)


def _numbered(items: tuple[Any, ...], number: str, what: str) -> Any:
    """The item with id ``number`` in ``items``, where ``items[i].id == i + 1``."""
    if not _DIGITS.fullmatch(number) or not 1 <= int(number) <= len(items):
        raise _not_found(f"{what} {number} not found")
    return items[int(number) - 1]


def _comment(comments: tuple[Comment, ...], number: str) -> Comment:
    for comment in comments:
        if str(comment.id) == number:
            return comment
    raise _not_found(f"Comment {number} not found")


_Handler: TypeAlias = Callable[["Router", Get, list[str]], MockReply]
_ROUTES: list[tuple[re.Pattern[str], str]] = []


def _route(pattern: str) -> Callable[[_Handler], _Handler]:
    """Register a router method for the raw relative paths that fully match ``pattern``."""

    def register(handler: _Handler) -> _Handler:
        _ROUTES.append((re.compile(pattern), handler.__name__))
        return handler

    return register


def _gone(endpoint: str, instead: str) -> _Refused:
    """The 410 for a cross-workspace listing Atlassian removed (CHANGE-2770)."""
    return _Refused(
        error_reply(
            _STATUS_GONE,
            "This API is no longer supported.",
            detail=f"{endpoint} was removed (CHANGE-2770): {instead}.",
        )
    )


_REVIEW_FIELDS: Final = ("reviewers", "participants")


def _added_review_fields(query: Query) -> tuple[str, ...]:
    """The review fields a listing's ``fields=+values.reviewers,...`` adds back."""
    asked = {part.strip() for name, value in query if name == "fields" for part in value.split(",")}
    return tuple(field for field in _REVIEW_FIELDS if f"+values.{field}" in asked)


def _without_review_fields(payload: dict[str, Any], *, keep: tuple[str, ...]) -> dict[str, Any]:
    # Listings leave out reviewers and participants unless the request adds them.
    return {
        name: value for name, value in payload.items() if name not in _REVIEW_FIELDS or name in keep
    }


_SEGMENT: Final = "([^/]+)"
_REPO: Final = f"/repositories/{_SEGMENT}/{_SEGMENT}"


RENDERED_APIS: Final = 4
"""API roots whose rendered listings a router keeps (the latest used).  Links
name the request's origin, and a served mock is reached under a name or two;
every ``Host`` a client sends would otherwise keep its own copy for ever."""


class Router:
    """The API's resources: from paths to payloads, pages and redirects.

    Pure given the dataset; it caches rendered payload lists, which is safe
    because the dataset never changes, for the :data:`RENDERED_APIS` API roots
    used last.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self._by_slug = {repository.slug: repository for repository in dataset.repositories}
        self._rendered: collections.OrderedDict[
            str, dict[tuple[Any, ...], list[dict[str, Any]]]
        ] = collections.OrderedDict()
        self._diffs = {
            (repository.slug, pull_request.source_hash[:12], pull_request.destination_hash[:12]): (
                pull_request
            )
            for repository in dataset.repositories
            for pull_request in repository.pull_requests
        }

    def route(self, get: Get) -> MockReply:
        """Answer ``get``; unknown paths are 404 with the error envelope."""
        path = get.path.rstrip("/") or "/"
        for pattern, name in _ROUTES:
            match = pattern.fullmatch(path)
            if match is not None:
                # Segments are matched encoded and decoded one by one, so an
                # encoded slash stays inside its segment.
                arguments = [unquote(group) for group in match.groups()]
                try:
                    handler: Callable[[Get, list[str]], MockReply] = getattr(self, name)
                    return handler(get, arguments)
                except _Refused as refused:
                    return refused.reply
        return error_reply(_STATUS_NOT_FOUND, f"No such endpoint: {path}")

    def _is_workspace(self, identifier: str) -> bool:
        """Whether ``identifier`` names the workspace: its slug, or its UUID in braces."""
        dataset = self.dataset
        return identifier in {dataset.workspace, dataset.workspace_uuid}

    def _repository(self, workspace: str, slug: str) -> Repository:
        repository = self._by_slug.get(slug) if self._is_workspace(workspace) else None
        if repository is None:
            raise _not_found(f"Repository {workspace}/{slug} not found")
        return repository

    def _workspace(self, workspace: str) -> None:
        if not self._is_workspace(workspace):
            raise _not_found(f"No workspace with identifier '{workspace}'.")

    @_route("/user")
    def user(self, get: Get, _arguments: list[str]) -> MockReply:
        return json_reply(200, get.account.to_json(get.api))

    @_route("/user/workspaces")
    def user_workspaces(self, get: Get, _arguments: list[str]) -> MockReply:
        dataset = self.dataset
        # The workspace's first member (the user) administers it; the access token's bot does not.
        administrator = get.account == dataset.user
        return self._listing(
            get,
            ("user-workspaces", administrator),
            lambda: [dataset.workspace_access_json(get.api, administrator=administrator)],
            sortable=_WORKSPACE_ACCESS_SORTS,
        )

    @_route("/repositories")
    def repositories(self, _get: Get, _arguments: list[str]) -> MockReply:
        raise _gone(
            "GET /2.0/repositories",
            "list the workspaces with GET /2.0/user/workspaces, "
            "then each one's repositories with GET /2.0/repositories/{workspace}",
        )

    @_route("/workspaces")
    def workspaces(self, _get: Get, _arguments: list[str]) -> MockReply:
        raise _gone("GET /2.0/workspaces", "use GET /2.0/user/workspaces")

    @_route("/user/permissions/([^/]+)")
    def user_permissions(self, _get: Get, arguments: list[str]) -> MockReply:
        raise _gone(
            f"GET /2.0/user/permissions/{arguments[0]}",
            "use GET /2.0/user/workspaces, then the workspace-scoped endpoints",
        )

    @_route(f"/workspaces/{_SEGMENT}")
    def workspace(self, get: Get, arguments: list[str]) -> MockReply:
        self._workspace(arguments[0])
        return json_reply(200, self.dataset.workspace_json(get.api))

    @_route(f"/repositories/{_SEGMENT}")
    def workspace_repositories(self, get: Get, arguments: list[str]) -> MockReply:
        self._workspace(arguments[0])
        role = _last(get.query, "role")
        if role is not None and role not in _ROLES:
            raise _bad_request(f"Invalid role: {role}")
        # The user and the access token hold every role on every repository of the workspace.
        repositories = self.dataset.repositories
        return self._listing(
            get,
            ("repositories",),
            lambda: [r.to_json(get.api) for r in repositories],
            sortable=_REPOSITORY_SORTS,
        )

    @_route(f"/workspaces/{_SEGMENT}/members")
    def members(self, get: Get, arguments: list[str]) -> MockReply:
        self._workspace(arguments[0])
        dataset = self.dataset
        return self._listing(
            get,
            ("members",),
            lambda: [dataset.member_json(m, get.api) for m in dataset.members],
            sortable=frozenset(),
        )

    @_route(_REPO)
    def repository(self, get: Get, arguments: list[str]) -> MockReply:
        return json_reply(200, self._repository(*arguments).to_json(get.api))

    @_route(f"{_REPO}/pullrequests")
    def pull_requests(self, get: Get, arguments: list[str]) -> MockReply:
        repository = self._repository(*arguments)
        states: set[str] = set()
        for name, value in get.query:
            if name == "state":
                wanted = value.upper()
                if wanted != "ALL" and wanted not in PULL_REQUEST_STATES:
                    raise _bad_request(f"Invalid state: {value}")
                states.update(PULL_REQUEST_STATES if wanted == "ALL" else (wanted,))
        # As at Bitbucket: only open pull requests unless the request says otherwise.
        chosen = frozenset(states or {"OPEN"})
        added = _added_review_fields(get.query)
        return self._listing(
            get,
            ("pullrequests", repository.slug, tuple(sorted(chosen)), added),
            lambda: [
                _without_review_fields(
                    repository.pull_request_json(pull_request, get.api), keep=added
                )
                for pull_request in repository.pull_requests
                if pull_request.state in chosen
            ],
            cap=PULL_REQUEST_PAGELEN_MAX,
            sortable=_PULL_REQUEST_SORTS,
        )

    def _pull_request(self, arguments: list[str]) -> tuple[Repository, PullRequest]:
        repository = self._repository(arguments[0], arguments[1])
        pull_request = _numbered(repository.pull_requests, arguments[2], "Pull request")
        return repository, pull_request

    @_route(f"{_REPO}/pullrequests/{_SEGMENT}")
    def pull_request(self, get: Get, arguments: list[str]) -> MockReply:
        repository, pull_request = self._pull_request(arguments)
        return json_reply(200, repository.pull_request_json(pull_request, get.api))

    @_route(f"{_REPO}/pullrequests/{_SEGMENT}/comments")
    def pull_request_comments(self, get: Get, arguments: list[str]) -> MockReply:
        repository, pull_request = self._pull_request(arguments)
        return self._listing(
            get,
            ("pr-comments", repository.slug, pull_request.id),
            lambda: [
                repository.pull_request_comment_json(pull_request, comment, get.api)
                for comment in pull_request.comments
            ],
            sortable=_PULL_REQUEST_COMMENT_SORTS,
        )

    @_route(f"{_REPO}/pullrequests/{_SEGMENT}/comments/{_SEGMENT}")
    def pull_request_comment(self, get: Get, arguments: list[str]) -> MockReply:
        repository, pull_request = self._pull_request(arguments)
        comment = _comment(pull_request.comments, arguments[3])
        return json_reply(200, repository.pull_request_comment_json(pull_request, comment, get.api))

    @_route(f"{_REPO}/pullrequests/{_SEGMENT}/diff")
    def pull_request_diff(self, get: Get, arguments: list[str]) -> MockReply:
        repository, pull_request = self._pull_request(arguments)
        # Bitbucket redirects to the diff between the two commits, on its own origin.
        target = (
            f"{get.api}/repositories/{repository.full_name}/diff/"
            f"{pull_request.diff_spec(repository.full_name)}"
            f"?from_pullrequest_id={pull_request.id}"
        )
        return MockReply(302, (("Location", target), ("Content-Type", TEXT_CONTENT_TYPE)))

    @_route(f"{_REPO}/diff/{_SEGMENT}/([^/:]+):([0-9a-fA-F]+)%0[dD]([0-9a-fA-F]+)")
    def diff(self, _get: Get, arguments: list[str]) -> MockReply:
        workspace, slug, spec_workspace, spec_slug, source, destination = arguments
        self._repository(workspace, slug)
        pull_request = self._diffs.get((slug, source.lower(), destination.lower()))
        if (spec_workspace, spec_slug) != (workspace, slug) or pull_request is None:
            raise _not_found("Diff not found")
        return MockReply(200, (("Content-Type", TEXT_CONTENT_TYPE),), pull_request.diff.encode())

    @_route(f"{_REPO}/issues")
    def issues(self, get: Get, arguments: list[str]) -> MockReply:
        repository = self._repository(*arguments)
        return self._listing(
            get,
            ("issues", repository.slug),
            lambda: [repository.issue_json(issue, get.api) for issue in repository.issues],
            sortable=_ISSUE_SORTS,
        )

    def _issue(self, arguments: list[str]) -> tuple[Repository, Issue]:
        repository = self._repository(arguments[0], arguments[1])
        return repository, _numbered(repository.issues, arguments[2], "Issue")

    @_route(f"{_REPO}/issues/{_SEGMENT}")
    def issue(self, get: Get, arguments: list[str]) -> MockReply:
        repository, issue = self._issue(arguments)
        return json_reply(200, repository.issue_json(issue, get.api))

    @_route(f"{_REPO}/issues/{_SEGMENT}/comments")
    def issue_comments(self, get: Get, arguments: list[str]) -> MockReply:
        repository, issue = self._issue(arguments)
        return self._listing(
            get,
            ("issue-comments", repository.slug, issue.id),
            lambda: [
                repository.issue_comment_json(issue, comment, get.api) for comment in issue.comments
            ],
            sortable=_ISSUE_COMMENT_SORTS,
        )

    @_route(f"{_REPO}/issues/{_SEGMENT}/comments/{_SEGMENT}")
    def issue_comment(self, get: Get, arguments: list[str]) -> MockReply:
        repository, issue = self._issue(arguments)
        comment = _comment(issue.comments, arguments[3])
        return json_reply(200, repository.issue_comment_json(issue, comment, get.api))

    def _listing(
        self,
        get: Get,
        key: tuple[Any, ...],
        render: Callable[[], list[dict[str, Any]]],
        *,
        sortable: frozenset[str],
        cap: int = PAGELEN_MAX,
    ) -> MockReply:
        """One page of a listing in Bitbucket's envelope, with opaque page links.

        ``sortable`` names the top-level fields ``sort`` may name: fields
        whose values are strings, numbers, booleans or null.  Any other
        field (``links``, ``author``, a dotted path, a field the items lack)
        is 400, as at Bitbucket.
        """
        pagelen = _positive(_last(get.query, "pagelen"), "pagelen", DEFAULT_PAGELEN)
        if pagelen > cap:
            raise _bad_request("Invalid pagelen")
        page = _positive(_last(get.query, "page"), "page", 1)
        rendered = self._rendered.get(get.api)
        if rendered is None:
            if len(self._rendered) >= RENDERED_APIS:
                self._rendered.popitem(last=False)
            rendered = self._rendered[get.api] = {}
        else:
            self._rendered.move_to_end(get.api)
        items = rendered.get(key)
        if items is None:
            items = rendered[key] = render()
        sort = _last(get.query, "sort")
        if sort:
            field = sort.removeprefix("-")
            if field not in sortable:
                raise _bad_request(f"Invalid sort field: {sort}")
            # Nulls sort last (first when descending) instead of failing to compare.
            items = sorted(
                items,
                key=lambda item: (item.get(field) is None, item.get(field)),
                reverse=sort.startswith("-"),
            )
        pages = max(1, math.ceil(len(items) / pagelen))
        if page > pages:
            raise _not_found("Invalid page")
        envelope: dict[str, Any] = {
            "values": items[(page - 1) * pagelen : page * pagelen],
            "page": page,
            "pagelen": pagelen,
            "size": len(items),
        }
        # The links keep every query parameter of the request, the page number last.
        kept = [(name, value) for name, value in get.query if name != "page"]
        base = f"{get.api}{get.path}"
        if page < pages:
            envelope["next"] = f"{base}?{urlencode([*kept, ('page', page + 1)])}"
        if page > 1:
            envelope["previous"] = f"{base}?{urlencode([*kept, ('page', page - 1)])}"
        return json_reply(200, envelope)
