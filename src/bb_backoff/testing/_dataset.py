"""The mock's data: one workspace of repositories, pull requests, issues and members.

Everything is drawn from ``random.Random(seed)``, so the same seed and size
give the same dataset, byte for byte, on every run.  The records are plain
frozen values; :meth:`to_json` renders them as Bitbucket's API does (type
fields, links), given the API base the links should point at, so a mock
served on a random port links to itself.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Final

import attrs

from .._endpoints import PAGELEN_MAX, PULL_REQUEST_PAGELEN_MAX
from .._exceptions import short_repr

WORKSPACE_SLUG: Final = "acme"
HTML_BASE: Final = "https://bitbucket.org"

PULL_REQUEST_STATES: Final = ("OPEN", "MERGED", "DECLINED", "SUPERSEDED")
"""Every pull-request state; ``state=ALL`` asks for all of them."""
REVIEW_STATES: Final = ("approved", "changes_requested", None)
"""A reviewer's verdict on a pull request, as a participant's ``state`` says it."""

# Weights that look like a real repository's history: most pull requests merged.
_STATE_WEIGHTS: Final = (15, 65, 15, 5)
_ISSUE_STATES: Final = ("new", "open", "resolved", "on hold", "closed", "wontfix")
_ISSUE_KINDS: Final = ("bug", "enhancement", "proposal", "task")
_PRIORITIES: Final = ("trivial", "minor", "major", "critical", "blocker")
_ADJECTIVES: Final = (
    "api", "core", "web", "mobile", "data", "billing", "search", "auth", "infra", "docs",
    "legacy", "edge", "batch", "admin", "shared", "public",
)  # fmt: skip
_NOUNS: Final = (
    "service", "gateway", "client", "pipeline", "portal", "worker", "toolkit", "store",
    "engine", "monitor", "scheduler", "exporter", "importer", "ui", "cli", "sdk",
)  # fmt: skip
_FIRST_NAMES: Final = (
    "Ada", "Alan", "Barbara", "Claude", "Donald", "Edsger", "Frances", "Grace", "Hedy",
    "Ivan", "John", "Katherine", "Leslie", "Margaret", "Niklaus", "Radia", "Ken", "Tim",
)  # fmt: skip
_LAST_NAMES: Final = (
    "Lovelace", "Turing", "Liskov", "Shannon", "Knuth", "Dijkstra", "Allen", "Hopper",
    "Lamarr", "Sutherland", "Backus", "Johnson", "Lamport", "Hamilton", "Wirth", "Perlman",
)  # fmt: skip
_VERBS: Final = ("Fix", "Add", "Remove", "Refactor", "Speed up", "Document", "Test", "Rename")
_THINGS: Final = (
    "pagination", "retry loop", "login form", "cache", "CSV export", "webhook handler",
    "rate limiter", "config loader", "error page", "search index", "build script", "logging",
)  # fmt: skip
_TROUBLES: Final = ("fails", "is slow", "needs work", "crashes")
_FILES: Final = (
    "src/app.py", "src/config.py", "src/models.py", "src/views.py", "tests/test_app.py",
    "README.md", "setup.cfg", "src/utils.py",
)  # fmt: skip
_REMARKS: Final = (
    "Looks good to me.", "Could we add a test for this?", "Nit: naming.",
    "Why not reuse the helper?", "Done, thanks!", "This breaks on Windows.",
    "Rebased on main.", "Can you split this in two?", "+1", "Fixed in the next commit.",
)  # fmt: skip

# Histories start here (2021-03-01T00:00:00Z) and move forward in seeded steps.
MAX_SEED: Final = 2**64
"""The largest seed taken, either way from 0: a dataset's seed goes in every repr."""
_HISTORY_START: Final = 1_614_556_800.0
_HOUR: Final = 3600.0
_DAY: Final = 86_400.0


def _count(_instance: object, field: attrs.Attribute[int], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{field.name} must be a non-negative integer, got {value!r}")


def _positive(_instance: object, field: attrs.Attribute[int], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{field.name} must be a positive integer, got {value!r}")


ITEM_KINDS: Final = (
    "repository",
    "pull_request",
    "pull_request_comment",
    "diff",
    "issue",
    "issue_comment",
    "member",
)
"""The kinds of item an import collects, as :meth:`Dataset.expected` keys them."""


@attrs.frozen
class DatasetSize:
    """How big the mock's dataset is.

    Comment counts are means: each pull request or issue gets between 0 and
    twice the mean, drawn from the seed, so comment listings have one page,
    several pages or none at all.

    Args:
        repositories: repositories in the workspace.
        pull_requests: pull requests per repository.
        comments_per_pull_request: mean comments per pull request.
        issues: issues per repository.
        comments_per_issue: mean comments per issue.
        members: workspace members, the authenticated user included (at least 1).

    Raises:
        ValueError: for a negative count (or no members); the message names it.
    """

    repositories: int = attrs.field(default=3, validator=_count)
    pull_requests: int = attrs.field(default=100, validator=_count)
    comments_per_pull_request: int = attrs.field(default=5, validator=_count)
    issues: int = attrs.field(default=40, validator=_count)
    comments_per_issue: int = attrs.field(default=3, validator=_count)
    members: int = attrs.field(default=12, validator=_positive)


def timestamp(epoch_seconds: float) -> str:
    """An ISO 8601 timestamp as Bitbucket writes them: ``2021-03-01T00:00:00.000000+00:00``."""
    return datetime.fromtimestamp(epoch_seconds, tz=UTC).isoformat(timespec="microseconds")


def _href(url: str) -> dict[str, str]:
    return {"href": url}


@attrs.frozen
class Account:
    """A Bitbucket user account.

    Attributes:
        account_id: the Atlassian account id, like ``"557058:6d1f..."``.
        uuid: the Bitbucket UUID in braces.
        display_name: the full name.
        nickname: the short name.
    """

    account_id: str
    uuid: str
    display_name: str
    nickname: str

    def to_json(self, api: str) -> dict[str, Any]:
        """The account as the API embeds it (``{"type": "user", ...}``).

        Args:
            api: the API base the links point at, like ``"https://api.bitbucket.org/2.0"``.
        """
        return {
            "type": "user",
            "account_id": self.account_id,
            "uuid": self.uuid,
            "display_name": self.display_name,
            "nickname": self.nickname,
            "links": {
                "self": _href(f"{api}/users/{self.uuid}"),
                "html": _href(f"{HTML_BASE}/{self.uuid}/"),
                "avatar": _href(f"{HTML_BASE}/account/{self.nickname}/avatar/"),
            },
        }


@attrs.frozen
class Comment:
    """A comment on a pull request or an issue.

    Attributes:
        id: unique within its repository.
        author: who wrote it.
        created_on: epoch seconds.
        text: the raw Markdown.
    """

    id: int
    author: Account
    created_on: float
    text: str


@attrs.frozen
class PullRequest:
    """A pull request.

    Attributes:
        id: from 1 in each repository, in creation order.
        title: the title.
        state: one of :data:`PULL_REQUEST_STATES`.
        author: who opened it.
        created_on: epoch seconds.
        source_branch: the branch it merges.
        source_hash: the source commit (40 hex digits).
        destination_hash: the destination commit (40 hex digits).
        comments: its comments, oldest first.
        diff: its unified diff.
        reviews: its reviewers, each with its verdict (one of
            :data:`REVIEW_STATES`); never the author.
    """

    id: int
    title: str
    state: str
    author: Account
    created_on: float
    source_branch: str
    source_hash: str
    destination_hash: str
    comments: tuple[Comment, ...]
    diff: str
    reviews: tuple[tuple[Account, str | None], ...] = ()

    @property
    def reviewers(self) -> tuple[Account, ...]:
        """The accounts asked to review it."""
        return tuple(account for account, _verdict in self.reviews)

    def participants_json(self, api: str) -> list[dict[str, Any]]:
        """The ``participants`` list: the reviewers, then everyone else who commented.

        A participant's ``participated_on`` is the time of its last comment
        (a reviewer who never commented: the pull request's last activity,
        or ``null`` if it has not given a verdict).
        """
        last_comment: dict[Account, float] = {}
        for comment in self.comments:
            last_comment[comment.author] = comment.created_on
        activity = _last_activity(self.created_on, self.comments)
        participants = []
        for account, verdict in self.reviews:
            when = last_comment.get(account, activity if verdict is not None else None)
            participants.append(_participant(account, "REVIEWER", verdict, when, api))
        reviewers = set(self.reviewers)
        participants += (
            _participant(account, "PARTICIPANT", None, when, api)
            for account, when in last_comment.items()
            if account not in reviewers
        )
        return participants

    def diff_spec(self, full_name: str) -> str:
        """The diff path's last part: ``ws/repo:{source}%0D{destination}`` (12-digit hashes).

        Bitbucket separates the two commits with an encoded carriage return.
        """
        return f"{full_name}:{self.source_hash[:12]}%0D{self.destination_hash[:12]}"


@attrs.frozen
class Issue:
    """An issue; its milestone travels inside the issue payload.

    Attributes:
        id: from 1 in each repository, in creation order.
        title: the title.
        state: the issue state, like ``"open"``.
        kind: ``"bug"``, ``"enhancement"``, ``"proposal"`` or ``"task"``.
        priority: ``"trivial"`` to ``"blocker"``.
        reporter: who filed it.
        created_on: epoch seconds.
        milestone: the milestone's name, or ``None``.
        comments: its comments, oldest first.
    """

    id: int
    title: str
    state: str
    kind: str
    priority: str
    reporter: Account
    created_on: float
    milestone: str | None
    comments: tuple[Comment, ...]


@attrs.frozen
class Repository:
    """A repository in the workspace.

    Attributes:
        slug: the URL name, like ``"billing-service"``.
        full_name: ``"{workspace}/{slug}"``.
        uuid: the Bitbucket UUID in braces.
        created_on: epoch seconds.
        owner: the workspace's slug.
        pull_requests: its pull requests; ``pull_requests[i].id == i + 1``.
        issues: its issues; ``issues[i].id == i + 1``.
        milestones: the milestones' names, in order (an issue's milestone is one of them).
    """

    slug: str
    full_name: str
    uuid: str
    created_on: float
    owner: str
    pull_requests: tuple[PullRequest, ...]
    issues: tuple[Issue, ...]
    milestones: tuple[str, ...] = ()

    def to_json(self, api: str) -> dict[str, Any]:
        """The repository payload (``{"type": "repository", ...}``)."""
        base = f"{api}/repositories/{self.full_name}"
        return {
            "type": "repository",
            "full_name": self.full_name,
            "name": self.slug,
            "slug": self.slug,
            "uuid": self.uuid,
            "is_private": True,
            "scm": "git",
            "has_issues": True,
            "mainbranch": {"type": "branch", "name": "main"},
            "created_on": timestamp(self.created_on),
            "updated_on": timestamp(self.updated_on),
            "workspace": {"type": "workspace", "slug": self.owner},
            "links": {
                "self": _href(base),
                "html": _href(f"{HTML_BASE}/{self.full_name}"),
                "pullrequests": _href(f"{base}/pullrequests"),
                "issues": _href(f"{base}/issues"),
            },
        }

    @property
    def updated_on(self) -> float:
        """The latest activity, in epoch seconds."""
        latest = [self.created_on]
        latest += (pr.created_on for pr in self.pull_requests[-1:])
        latest += (issue.created_on for issue in self.issues[-1:])
        return max(latest)

    def summary(self, api: str) -> dict[str, Any]:
        """The short form a pull request or issue embeds."""
        return {
            "type": "repository",
            "full_name": self.full_name,
            "name": self.slug,
            "uuid": self.uuid,
            "links": {"self": _href(f"{api}/repositories/{self.full_name}")},
        }

    def pull_request_json(
        self, pull_request: PullRequest, api: str, *, reviews: bool = True
    ) -> dict[str, Any]:
        """One pull request's payload (``{"type": "pullrequest", ...}``).

        Args:
            pull_request: the pull request.
            api: the API base the links point at.
            reviews: include ``reviewers`` and ``participants``, as the
                pull request's own GET does; listings leave them out unless
                asked with ``fields=+values.reviewers,+values.participants``.
        """
        base = f"{api}/repositories/{self.full_name}/pullrequests/{pull_request.id}"
        repository = self.summary(api)
        closed = pull_request.state in {"MERGED", "DECLINED", "SUPERSEDED"}
        payload: dict[str, Any] = {
            "type": "pullrequest",
            "id": pull_request.id,
            "title": pull_request.title,
            "description": f"{pull_request.title}.",
            "state": pull_request.state,
            "author": pull_request.author.to_json(api),
            "source": {
                "branch": {"name": pull_request.source_branch},
                "commit": {"type": "commit", "hash": pull_request.source_hash[:12]},
                "repository": repository,
            },
            "destination": {
                "branch": {"name": "main"},
                "commit": {"type": "commit", "hash": pull_request.destination_hash[:12]},
                "repository": repository,
            },
            "comment_count": len(pull_request.comments),
            "task_count": 0,
            "close_source_branch": closed,
            "created_on": timestamp(pull_request.created_on),
            "updated_on": timestamp(_last_activity(pull_request.created_on, pull_request.comments)),
            "links": {
                "self": _href(base),
                "html": _href(f"{HTML_BASE}/{self.full_name}/pull-requests/{pull_request.id}"),
                "comments": _href(f"{base}/comments"),
                "diff": _href(f"{base}/diff"),
            },
        }
        if reviews:
            payload["reviewers"] = [account.to_json(api) for account in pull_request.reviewers]
            payload["participants"] = pull_request.participants_json(api)
        return payload

    def pull_request_comment_json(
        self, pull_request: PullRequest, comment: Comment, api: str
    ) -> dict[str, Any]:
        """One pull-request comment's payload (``{"type": "pullrequest_comment", ...}``)."""
        base = f"{api}/repositories/{self.full_name}/pullrequests/{pull_request.id}"
        return {
            "type": "pullrequest_comment",
            "id": comment.id,
            "created_on": timestamp(comment.created_on),
            "updated_on": timestamp(comment.created_on),
            "content": _content(comment.text),
            "user": comment.author.to_json(api),
            "deleted": False,
            "pullrequest": {
                "type": "pullrequest",
                "id": pull_request.id,
                "title": pull_request.title,
                "links": {"self": _href(base)},
            },
            "links": {"self": _href(f"{base}/comments/{comment.id}")},
        }

    def issue_json(self, issue: Issue, api: str) -> dict[str, Any]:
        """One issue's payload (``{"type": "issue", ...}``), its milestone inside."""
        base = f"{api}/repositories/{self.full_name}/issues/{issue.id}"
        milestone = None
        if issue.milestone is not None:
            number = self.milestones.index(issue.milestone) + 1
            milestone = {
                "type": "milestone",
                "id": number,
                "name": issue.milestone,
                "links": {
                    "self": _href(f"{api}/repositories/{self.full_name}/milestones/{number}")
                },
            }
        return {
            "type": "issue",
            "id": issue.id,
            "title": issue.title,
            "state": issue.state,
            "kind": issue.kind,
            "priority": issue.priority,
            "reporter": issue.reporter.to_json(api),
            "assignee": None,
            "milestone": milestone,
            "component": None,
            "version": None,
            "votes": 0,
            "content": _content(f"{issue.title}. Steps to reproduce are in the logs."),
            "repository": self.summary(api),
            "created_on": timestamp(issue.created_on),
            "updated_on": timestamp(_last_activity(issue.created_on, issue.comments)),
            "links": {
                "self": _href(base),
                "html": _href(f"{HTML_BASE}/{self.full_name}/issues/{issue.id}"),
                "comments": _href(f"{base}/comments"),
            },
        }

    def issue_comment_json(self, issue: Issue, comment: Comment, api: str) -> dict[str, Any]:
        """One issue comment's payload (``{"type": "issue_comment", ...}``)."""
        base = f"{api}/repositories/{self.full_name}/issues/{issue.id}"
        return {
            "type": "issue_comment",
            "id": comment.id,
            "created_on": timestamp(comment.created_on),
            "updated_on": None,
            "content": _content(comment.text),
            "user": comment.author.to_json(api),
            "issue": {
                "type": "issue",
                "id": issue.id,
                "title": issue.title,
                "links": {"self": _href(base)},
            },
            "links": {"self": _href(f"{base}/comments/{comment.id}")},
        }


def _participant(
    account: Account, role: str, verdict: str | None, when: float | None, api: str
) -> dict[str, Any]:
    return {
        "type": "participant",
        "user": account.to_json(api),
        "role": role,
        "approved": verdict == "approved",
        "state": verdict,
        "participated_on": None if when is None else timestamp(when),
    }


def _content(raw: str) -> dict[str, str]:
    return {"type": "rendered", "raw": raw, "markup": "markdown", "html": f"<p>{raw}</p>"}


def _last_activity(created_on: float, comments: tuple[Comment, ...]) -> float:
    return comments[-1].created_on if comments else created_on


def _pages(items: int, pagelen: int) -> int:
    # An empty listing is still one request, answered with an empty page.
    return max(1, math.ceil(items / pagelen))


@attrs.frozen
class Dataset:
    """The mock's workspace, generated from a seed.

    Build one with :meth:`generate`; :class:`MockBitbucket` does so from its
    ``seed`` and ``size``.

    Attributes:
        seed: the seed it was drawn from.
        size: how big it is.
        workspace: the workspace's slug (``"acme"``).
        workspace_uuid: the workspace's UUID in braces.
        user: the authenticated user (also the first member).
        members: the workspace's members.
        repositories: the repositories, oldest first.
    """

    seed: int
    size: DatasetSize
    workspace: str
    workspace_uuid: str
    user: Account
    members: tuple[Account, ...]
    repositories: tuple[Repository, ...]

    @classmethod
    def generate(cls, seed: int = 0, size: DatasetSize | None = None) -> Dataset:
        """Draw a dataset from ``seed``.

        Args:
            seed: the seed; the same seed and size give the same dataset.
            size: how big; :class:`DatasetSize` defaults if omitted.

        Raises:
            ValueError: ``seed`` is not an integer within :data:`MAX_SEED` of 0, or
                ``size`` not a :class:`DatasetSize`.
        """
        if isinstance(seed, bool) or not isinstance(seed, int) or not -MAX_SEED <= seed <= MAX_SEED:
            # Bounded: a 400-digit seed filled every repr, and past 4,300
            # digits the seed's own string failed, naming nothing.
            raise ValueError(
                f"seed must be an integer from -2**64 to 2**64, got {short_repr(seed)}"
            )
        size = DatasetSize() if size is None else size
        if not isinstance(size, DatasetSize):
            raise ValueError(f"size must be a DatasetSize, got {type(size).__name__}")
        # A string seed keeps this stream independent of the fault stream a
        # mock with the same seed draws from.
        rng = random.Random(f"dataset:{seed}")  # noqa: S311 (reproducible test data, not secrets)
        # Reviews draw from a stream of their own, so adding them changed no other value.
        reviews = random.Random(f"reviews:{seed}")  # noqa: S311 (ditto)
        members = tuple(_account(rng, index) for index in range(size.members))
        slugs = _unique_slugs(rng, size.repositories)
        created = _HISTORY_START
        repositories = []
        for slug in slugs:
            created += rng.uniform(1, 60) * _DAY
            repositories.append(
                _repository(
                    rng,
                    reviews,
                    workspace=WORKSPACE_SLUG,
                    slug=slug,
                    created_on=created,
                    size=size,
                    members=members,
                )
            )
        return cls(
            seed=seed,
            size=size,
            workspace=WORKSPACE_SLUG,
            workspace_uuid=_uuid(rng),
            user=members[0],
            members=members,
            repositories=tuple(repositories),
        )

    def repository(self, slug: str) -> Repository | None:
        """The repository with ``slug``, or ``None``."""
        for repository in self.repositories:
            if repository.slug == slug:
                return repository
        return None

    @property
    def workspace_name(self) -> str:
        """The workspace's display name (``"Acme"``)."""
        return self.workspace.capitalize()

    def workspace_json(self, api: str) -> dict[str, Any]:
        """The workspace's payload (``{"type": "workspace", ...}``), as its own GET answers."""
        base = f"{api}/workspaces/{self.workspace}"
        return {
            "type": "workspace",
            "uuid": self.workspace_uuid,
            "name": self.workspace_name,
            "slug": self.workspace,
            "is_private": True,
            "is_privacy_enforced": False,
            "created_on": timestamp(_HISTORY_START),
            "updated_on": timestamp(
                max((r.updated_on for r in self.repositories), default=_HISTORY_START)
            ),
            "links": {
                "self": _href(base),
                "html": _href(f"{HTML_BASE}/{self.workspace}/"),
                "avatar": _href(f"{HTML_BASE}/workspaces/{self.workspace}/avatar/"),
                "members": _href(f"{base}/members"),
                "owners": _href(f"{base}/members?q=permission%3D%22owner%22"),
                "projects": _href(f"{base}/projects"),
                "repositories": _href(f"{api}/repositories/{self.workspace}"),
                "snippets": _href(f"{api}/snippets/{self.workspace}"),
            },
        }

    def workspace_access_json(self, api: str, *, administrator: bool) -> dict[str, Any]:
        """One row of ``/user/workspaces`` (``{"type": "workspace_access", ...}``).

        Args:
            api: the API base the links point at.
            administrator: whether the caller administers the workspace.
        """
        return {
            "type": "workspace_access",
            "administrator": administrator,
            "workspace": {
                "type": "workspace_base",
                "uuid": self.workspace_uuid,
                "name": self.workspace_name,
                "slug": self.workspace,
                "links": {
                    "self": _href(f"{api}/workspaces/{self.workspace}"),
                    "html": _href(f"{HTML_BASE}/{self.workspace}/"),
                    "avatar": _href(f"{HTML_BASE}/workspaces/{self.workspace}/avatar/"),
                },
            },
        }

    def member_json(self, member: Account, api: str) -> dict[str, Any]:
        """One workspace membership's payload (``{"type": "workspace_membership", ...}``)."""
        return {
            "type": "workspace_membership",
            "user": member.to_json(api),
            "workspace": {
                "type": "workspace",
                "slug": self.workspace,
                "uuid": self.workspace_uuid,
                "links": {"self": _href(f"{api}/workspaces/{self.workspace}")},
            },
            "links": {"self": _href(f"{api}/workspaces/{self.workspace}/members/{member.uuid}")},
        }

    def expected(self) -> dict[str, set[tuple[Any, ...]]]:
        """The keys a complete import ends up with, per kind.

        Returns:
            ``{"repository": {(full_name,)}, "pull_request": {(full_name, id)},
            "pull_request_comment": {(full_name, pr_id, comment_id)},
            "diff": {(full_name, pr_id)}, "issue": {(full_name, id)},
            "issue_comment": {(full_name, issue_id, comment_id)},
            "member": {(account_id,)}}``.
        """
        expected: dict[str, set[tuple[Any, ...]]] = {kind: set() for kind in ITEM_KINDS}
        for repository in self.repositories:
            name = repository.full_name
            expected["repository"].add((name,))
            for pull_request in repository.pull_requests:
                expected["pull_request"].add((name, pull_request.id))
                expected["diff"].add((name, pull_request.id))
                expected["pull_request_comment"].update(
                    (name, pull_request.id, comment.id) for comment in pull_request.comments
                )
            for issue in repository.issues:
                expected["issue"].add((name, issue.id))
                expected["issue_comment"].update(
                    (name, issue.id, comment.id) for comment in issue.comments
                )
        expected["member"] = {(member.account_id,) for member in self.members}
        return expected

    def requests_needed(self, pagelen: int = 50) -> int:
        """The successful HTTP calls a complete import makes, at the least.

        The importer's flow: ``/user``; the ``/user/workspaces`` listing
        (one workspace); its ``/repositories/{workspace}`` listing; per
        repository its GET, the pull-request listing
        (``state=ALL``), per pull request its comment listing and its diff (two
        calls: the redirect and its target), the issue listing, per issue its
        comment listing; and the workspace's member listing.  A listing costs
        one call per page, and one for an empty listing.

        Args:
            pagelen: the page length asked for; pull-request listings use at
                most 50, the API's cap for them.

        Returns:
            The number of calls.

        Raises:
            ValueError: ``pagelen`` is not an integer from 1 to 100.
        """
        if isinstance(pagelen, bool) or not isinstance(pagelen, int):
            raise ValueError(f"pagelen must be an integer, got {pagelen!r}")
        if not 1 <= pagelen <= PAGELEN_MAX:
            raise ValueError(f"pagelen must be from 1 to {PAGELEN_MAX}, got {pagelen}")
        pull_request_pagelen = min(pagelen, PULL_REQUEST_PAGELEN_MAX)
        workspaces = _pages(1, pagelen)
        calls = 1 + workspaces + _pages(len(self.repositories), pagelen)
        calls += _pages(len(self.members), pagelen)
        for repository in self.repositories:
            calls += 1 + _pages(len(repository.pull_requests), pull_request_pagelen)
            for pull_request in repository.pull_requests:
                calls += _pages(len(pull_request.comments), pagelen) + 2
            calls += _pages(len(repository.issues), pagelen)
            calls += sum(_pages(len(issue.comments), pagelen) for issue in repository.issues)
        return calls


def _uuid(rng: random.Random) -> str:
    return "{" + str(uuid.UUID(int=rng.getrandbits(128), version=4)) + "}"


def _hash(rng: random.Random) -> str:
    return f"{rng.getrandbits(160):040x}"


def _account(rng: random.Random, index: int) -> Account:
    first = _FIRST_NAMES[index % len(_FIRST_NAMES)]
    last = rng.choice(_LAST_NAMES)
    # The index keeps nicknames unique however many members there are.
    nickname = f"{first.lower()}{last[0].lower()}{index}"
    return Account(
        account_id=f"557058:{uuid.UUID(int=rng.getrandbits(128), version=4)}",
        uuid=_uuid(rng),
        display_name=f"{first} {last}",
        nickname=nickname,
    )


def _unique_slugs(rng: random.Random, count: int) -> list[str]:
    pairs = [f"{adjective}-{noun}" for adjective in _ADJECTIVES for noun in _NOUNS]
    chosen = rng.sample(pairs, min(count, len(pairs)))
    # Beyond the word pairs, number them: the slugs must stay unique.
    chosen += [f"repo-{index}" for index in range(len(chosen), count)]
    return chosen


def _comments(
    rng: random.Random,
    mean: int,
    after: float,
    ids: Iterator[int],
    members: tuple[Account, ...],
) -> tuple[Comment, ...]:
    comments = []
    when = after
    for _ in range(rng.randint(0, 2 * mean)):
        when += rng.uniform(0.1, 48) * _HOUR
        comments.append(Comment(next(ids), rng.choice(members), when, rng.choice(_REMARKS)))
    return tuple(comments)


def _diff(rng: random.Random, pull_request_id: int) -> str:
    parts = []
    for path in rng.sample(_FILES, rng.randint(1, 3)):
        old, new = f"{rng.getrandbits(28):07x}", f"{rng.getrandbits(28):07x}"
        line = rng.randint(1, 200)
        parts.append(
            f"diff --git a/{path} b/{path}\n"
            f"index {old}..{new} 100644\n"
            f"--- a/{path}\n"
            f"+++ b/{path}\n"
            f"@@ -{line},3 +{line},4 @@\n"
            f" # context\n"
            f"-value = {pull_request_id}\n"
            f"+value = {pull_request_id + 1}\n"
            f"+checked = True\n"
            f" # end\n"
        )
    return "".join(parts)


def _reviews(
    rng: random.Random, state: str, author: Account, members: tuple[Account, ...]
) -> tuple[tuple[Account, str | None], ...]:
    candidates = [member for member in members if member != author]
    chosen = rng.sample(candidates, rng.randint(0, min(2, len(candidates))))
    # Merged pull requests were approved; closed ones were not.
    verdicts: tuple[str | None, ...] = {
        "MERGED": ("approved",),
        "OPEN": REVIEW_STATES,
    }.get(state, ("changes_requested", None))
    return tuple((reviewer, rng.choice(verdicts)) for reviewer in chosen)


def _repository(
    rng: random.Random,
    review_rng: random.Random,
    *,
    workspace: str,
    slug: str,
    created_on: float,
    size: DatasetSize,
    members: tuple[Account, ...],
) -> Repository:
    full_name = f"{workspace}/{slug}"
    # Comment ids are unique within the repository, and not small: they look
    # like the global ids Bitbucket hands out.
    pull_request_comment_ids = iter(range(rng.randint(100_000, 900_000), 10**9))
    issue_comment_ids = iter(range(rng.randint(10_000, 90_000), 10**9))
    pull_requests = []
    when = created_on
    for number in range(1, size.pull_requests + 1):
        when += rng.uniform(0.5, 72) * _HOUR
        title = f"{rng.choice(_VERBS)} {rng.choice(_THINGS)}"
        pull_requests.append(
            PullRequest(
                id=number,
                title=title,
                state=rng.choices(PULL_REQUEST_STATES, weights=_STATE_WEIGHTS)[0],
                author=rng.choice(members),
                created_on=when,
                source_branch=f"feature/{number}-{title.lower().replace(' ', '-')}",
                source_hash=_hash(rng),
                destination_hash=_hash(rng),
                comments=_comments(
                    rng, size.comments_per_pull_request, when, pull_request_comment_ids, members
                ),
                diff=_diff(rng, number),
            )
        )
        drawn = pull_requests[-1]
        pull_requests[-1] = attrs.evolve(
            drawn, reviews=_reviews(review_rng, drawn.state, drawn.author, members)
        )
    milestones = tuple(f"v{major}.{minor}" for major in (1, 2) for minor in range(3))
    issues = []
    when = created_on
    for number in range(1, size.issues + 1):
        when += rng.uniform(0.5, 96) * _HOUR
        # About a third of the issues have no milestone, as in real trackers.
        milestone = rng.choice(milestones) if rng.random() < 2 / 3 else None
        issues.append(
            Issue(
                id=number,
                title=f"{rng.choice(_THINGS).capitalize()} {rng.choice(_TROUBLES)}",
                state=rng.choice(_ISSUE_STATES),
                kind=rng.choice(_ISSUE_KINDS),
                priority=rng.choice(_PRIORITIES),
                reporter=rng.choice(members),
                created_on=when,
                milestone=milestone,
                comments=_comments(rng, size.comments_per_issue, when, issue_comment_ids, members),
            )
        )
    return Repository(
        slug=slug,
        full_name=full_name,
        uuid=_uuid(rng),
        created_on=created_on,
        owner=workspace,
        pull_requests=tuple(pull_requests),
        issues=tuple(issues),
        milestones=milestones,
    )
