"""The mock's routing: from an API path and query to the reply Bitbucket gives.

Theory of operation
-------------------
:class:`MockBitbucket <bb_backoff.testing.MockBitbucket>` hands the
:class:`Router` only GET requests that passed authentication, their rate
window and the fault draw, as a :class:`Get`.  The router owns no lock, reads
no clock, never sleeps and does no I/O: the same dataset and the same
:class:`Get` always give the same :class:`MockReply` (a resource, a page of a
listing, a redirect, or a 400 or 404 in Bitbucket's error envelope).

Handlers register with :func:`_route` for the raw, still percent-encoded
paths their pattern fully matches; the path segments are decoded only after
matching.  A handler that refuses a request raises :class:`_Refused`, which
:meth:`Router.route` turns into its reply.  Every listing goes through
:meth:`Router._listing`, which checks ``pagelen`` against the endpoint's cap,
sorts, and wraps one page in Bitbucket's envelope with opaque page links.
"""

from __future__ import annotations

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


_SEGMENT: Final = "([^/]+)"
_REPO: Final = f"/repositories/{_SEGMENT}/{_SEGMENT}"


class Router:
    """The API's resources: from paths to payloads, pages and redirects.

    Pure given the dataset; it caches rendered payload lists, which is safe
    because the dataset never changes.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self._by_slug = {repository.slug: repository for repository in dataset.repositories}
        self._rendered: dict[tuple[str, tuple[Any, ...]], list[dict[str, Any]]] = {}
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

    def _repository(self, workspace: str, slug: str) -> Repository:
        repository = self._by_slug.get(slug) if workspace == self.dataset.workspace else None
        if repository is None:
            raise _not_found(f"Repository {workspace}/{slug} not found")
        return repository

    def _workspace(self, workspace: str) -> None:
        if workspace != self.dataset.workspace:
            raise _not_found(f"No workspace with identifier '{workspace}'.")

    @_route("/user")
    def user(self, get: Get, _arguments: list[str]) -> MockReply:
        return json_reply(200, get.account.to_json(get.api))

    @_route("/repositories")
    def repositories(self, get: Get, _arguments: list[str]) -> MockReply:
        role = _last(get.query, "role")
        if role is not None and role not in _ROLES:
            raise _bad_request(f"Invalid role: {role}")
        # Without a role this is every public repository; the mock's are all private.
        chosen = self.dataset.repositories if role is not None else ()
        return self._listing(
            get, ("repositories", bool(chosen)), lambda: [r.to_json(get.api) for r in chosen]
        )

    @_route(f"/repositories/{_SEGMENT}")
    def workspace_repositories(self, get: Get, arguments: list[str]) -> MockReply:
        self._workspace(arguments[0])
        repositories = self.dataset.repositories
        return self._listing(
            get, ("repositories", True), lambda: [r.to_json(get.api) for r in repositories]
        )

    @_route(f"/workspaces/{_SEGMENT}/members")
    def members(self, get: Get, arguments: list[str]) -> MockReply:
        self._workspace(arguments[0])
        dataset = self.dataset
        return self._listing(
            get, ("members",), lambda: [dataset.member_json(m, get.api) for m in dataset.members]
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
        return self._listing(
            get,
            ("pullrequests", repository.slug, tuple(sorted(chosen))),
            lambda: [
                repository.pull_request_json(pull_request, get.api)
                for pull_request in repository.pull_requests
                if pull_request.state in chosen
            ],
            cap=PULL_REQUEST_PAGELEN_MAX,
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
        cap: int = PAGELEN_MAX,
    ) -> MockReply:
        """One page of a listing in Bitbucket's envelope, with opaque page links."""
        pagelen = _positive(_last(get.query, "pagelen"), "pagelen", DEFAULT_PAGELEN)
        if pagelen > cap:
            raise _bad_request("Invalid pagelen")
        page = _positive(_last(get.query, "page"), "page", 1)
        items = self._rendered.get((get.api, key))
        if items is None:
            items = self._rendered[(get.api, key)] = render()
        sort = _last(get.query, "sort")
        if sort:
            field = sort.removeprefix("-")
            if not all(field in item for item in items):
                raise _bad_request(f"Invalid sort field: {sort}")
            items = sorted(items, key=lambda item: item[field], reverse=sort.startswith("-"))
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
