"""bb_backoff._bench._importer: what each body leads to, and both drivers against the mock.

The drivers run on virtual time: async workers on ``run_virtual``, threads
under ``VirtualThreads``, the mock on the same clock.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from bb_backoff._bench import ImportState, Task, import_async, import_sync
from bb_backoff._bench._importer import PAGELEN, ImportResult, initial_tasks, repository_task
from bb_backoff._bench._scenarios import QUICK_SIZE
from bb_backoff.testing import MockBitbucket, VirtualClock, VirtualThreads, run_virtual

API = "https://api.bitbucket.org/2.0"
WORKERS = 4
NEXT = f"{API}/repositories/acme/widget/pullrequests?state=ALL&pagelen=50&page=2"


class Refused(Exception):
    """What the test fetchers raise for a URL they are told to drop."""


def never(_url: str) -> bool:
    return False


class AsyncMockFetcher:
    """A bare fetcher on the mock: no retries; raises for error statuses and for ``drop``."""

    def __init__(self, mock: MockBitbucket, drop: Callable[[str], bool] = never) -> None:
        self.drop = drop
        self.http = httpx.AsyncClient(
            transport=mock.async_transport(),
            base_url=API,
            headers={"Authorization": mock.bearer().authorization()},
            follow_redirects=True,
        )

    async def _get(self, url: str) -> httpx.Response:
        if self.drop(url):
            raise Refused(url)
        return (await self.http.get(url)).raise_for_status()

    async def json(self, url: str) -> Any:
        return (await self._get(url)).json()

    async def text(self, url: str) -> str:
        return (await self._get(url)).text

    async def aclose(self) -> None:
        await self.http.aclose()


class SyncMockFetcher:
    """The same for threads."""

    def __init__(self, mock: MockBitbucket, drop: Callable[[str], bool] = never) -> None:
        self.drop = drop
        self.http = httpx.Client(
            transport=mock.transport(),
            base_url=API,
            headers={"Authorization": mock.bearer().authorization()},
            follow_redirects=True,
        )

    def _get(self, url: str) -> httpx.Response:
        if self.drop(url):
            raise Refused(url)
        return self.http.get(url).raise_for_status()

    def json(self, url: str) -> Any:
        return self._get(url).json()

    def text(self, url: str) -> str:
        return self._get(url).text

    def close(self) -> None:
        self.http.close()


def run_async_import(mock_seed: int = 0, drop: Callable[[str], bool] = never) -> ImportResult:
    clock = VirtualClock()
    mock = MockBitbucket(seed=mock_seed, size=QUICK_SIZE, latency=0.1, clock=clock.monotonic)
    return run_virtual(import_async(AsyncMockFetcher(mock, drop), WORKERS, clock.monotonic), clock)


def run_sync_import(mock_seed: int = 0, drop: Callable[[str], bool] = never) -> ImportResult:
    clock = VirtualClock()
    threads = VirtualThreads(clock)
    mock = MockBitbucket(
        seed=mock_seed, size=QUICK_SIZE, latency=0.1, clock=clock.monotonic, sleep=threads.sleep
    )
    return import_sync(SyncMockFetcher(mock, drop), WORKERS, clock.monotonic, threads)


IMPORTS = {"async": run_async_import, "sync": run_sync_import}


def imported(state: ImportState) -> dict[str, set[tuple[Any, ...]]]:
    return {kind: set(counter) for kind, counter in state.items.items() if counter}


def missing(state: ImportState, expected: dict[str, set[tuple[Any, ...]]]) -> dict[str, set[Any]]:
    gaps = {kind: keys - set(state.items.get(kind, ())) for kind, keys in expected.items()}
    return {kind: keys for kind, keys in gaps.items() if keys}


def quick_mock() -> MockBitbucket:
    return MockBitbucket(seed=0, size=QUICK_SIZE)


# -- initial tasks --------------------------------------------------------------------


def test_an_import_starts_with_the_user_and_the_workspaces_the_token_reaches() -> None:
    assert initial_tasks() == [
        Task("user", "/user"),
        Task("workspaces", "/user/workspaces?pagelen=50"),
    ]


# -- ImportState.follow ---------------------------------------------------------------


def test_the_user_leads_nowhere_and_records_nothing() -> None:
    state = ImportState()
    assert state.follow(Task("user", "/user"), {"type": "user"}) == []
    assert imported(state) == {}


def access(slug: str) -> dict[str, Any]:
    return {"type": "workspace_access", "workspace": {"type": "workspace_base", "slug": slug}}


def test_workspaces_lead_to_each_ones_repositories_and_members_once() -> None:
    state = ImportState()
    listing = Task("workspaces", "/user/workspaces?pagelen=50")
    assert state.follow(listing, {"values": [access("acme"), access("other co")]}) == [
        Task("repositories", "/repositories/acme?role=member&sort=created_on&pagelen=50"),
        Task("members", "/workspaces/acme/members?pagelen=50"),
        Task("repositories", "/repositories/other%20co?role=member&sort=created_on&pagelen=50"),
        Task("members", "/workspaces/other%20co/members?pagelen=50"),
    ]
    assert state.follow(listing, {"values": [access("acme")]}) == []
    assert imported(state) == {}


def test_repositories_lead_to_each_repository() -> None:
    state = ImportState()
    listing = Task("repositories", "/repositories/acme?role=member")
    page = {"values": [{"full_name": "acme/widget"}, {"full_name": "other co/tool"}]}
    assert state.follow(listing, page) == [
        Task("repository", "/repositories/acme/widget", ("acme/widget",)),
        Task("repository", "/repositories/other%20co/tool", ("other co/tool",)),
    ]
    assert imported(state) == {}


def test_a_repository_is_recorded_and_leads_to_its_pull_request_and_issue_listings() -> None:
    state = ImportState()
    task = Task("repository", "/repositories/acme/widget", ("acme/widget",))
    assert state.follow(task, {"full_name": "acme/widget"}) == [
        Task(
            "pull_requests",
            "/repositories/acme/widget/pullrequests?state=ALL&sort=created_on&pagelen=50",
            ("acme/widget",),
        ),
        Task(
            "issues",
            "/repositories/acme/widget/issues?sort=created_on&pagelen=50",
            ("acme/widget",),
        ),
    ]
    assert imported(state) == {"repository": {("acme/widget",)}}


def test_pull_requests_are_recorded_and_each_leads_to_its_comments_and_its_diff() -> None:
    state = ImportState()
    task = Task("pull_requests", "/repositories/acme/widget/pullrequests", ("acme/widget",))
    base = "/repositories/acme/widget/pullrequests"
    assert state.follow(task, {"values": [{"id": 1}, {"id": 7}]}) == [
        Task(
            "pull_request_comments",
            f"{base}/1/comments?sort=created_on&pagelen=50",
            ("acme/widget", 1),
        ),
        Task("diff", f"{base}/1/diff", ("acme/widget", 1)),
        Task(
            "pull_request_comments",
            f"{base}/7/comments?sort=created_on&pagelen=50",
            ("acme/widget", 7),
        ),
        Task("diff", f"{base}/7/diff", ("acme/widget", 7)),
    ]
    assert imported(state) == {"pull_request": {("acme/widget", 1), ("acme/widget", 7)}}


def test_issues_are_recorded_and_each_leads_to_its_comments() -> None:
    state = ImportState()
    task = Task("issues", "/repositories/acme/widget/issues", ("acme/widget",))
    assert state.follow(task, {"values": [{"id": 3}]}) == [
        Task(
            "issue_comments",
            "/repositories/acme/widget/issues/3/comments?sort=created_on&pagelen=50",
            ("acme/widget", 3),
        )
    ]
    assert imported(state) == {"issue": {("acme/widget", 3)}}


@pytest.mark.parametrize(
    ("kind", "recorded"),
    [("pull_request_comments", "pull_request_comment"), ("issue_comments", "issue_comment")],
)
def test_comments_are_recorded_under_their_pull_request_or_issue(kind: str, recorded: str) -> None:
    state = ImportState()
    task = Task(kind, "/comments", ("acme/widget", 3))
    assert state.follow(task, {"values": [{"id": 10}, {"id": 11}]}) == []
    assert imported(state) == {recorded: {("acme/widget", 3, 10), ("acme/widget", 3, 11)}}


def test_a_diff_is_recorded_by_its_pull_request_whatever_its_text() -> None:
    state = ImportState()
    task = Task("diff", "/repositories/acme/widget/pullrequests/1/diff", ("acme/widget", 1))
    assert state.follow(task, "diff --git a/x b/x\n") == []
    assert imported(state) == {"diff": {("acme/widget", 1)}}


def test_members_are_recorded_by_account_id() -> None:
    state = ImportState()
    body = {"values": [{"user": {"account_id": "557058:a"}}, {"user": {"account_id": "557058:b"}}]}
    assert state.follow(Task("members", "/workspaces/acme/members"), body) == []
    assert imported(state) == {"member": {("557058:a",), ("557058:b",)}}


@pytest.mark.parametrize(
    ("kind", "context"),
    [
        ("workspaces", ()),
        ("repositories", ()),
        ("pull_requests", ("acme/widget",)),
        ("issues", ("acme/widget",)),
        ("pull_request_comments", ("acme/widget", 1)),
        ("issue_comments", ("acme/widget", 1)),
        ("members", ()),
    ],
)
def test_a_next_link_becomes_a_task_of_the_same_kind_and_context(
    kind: str, context: tuple[Any, ...]
) -> None:
    state = ImportState()
    tasks = state.follow(Task(kind, "/first-page", context), {"values": [], "next": NEXT})
    assert tasks == [Task(kind, NEXT, context)]


def test_a_last_page_without_a_next_link_leads_nowhere_further() -> None:
    state = ImportState()
    task = Task("issues", "/repositories/acme/widget/issues", ("acme/widget",))
    assert state.follow(task, {"values": [], "next": None}) == []


# -- lost and duplicates --------------------------------------------------------------


def test_lost_counts_the_expected_items_not_imported() -> None:
    state = ImportState()
    state.record("issue", ("acme/widget", 1))
    state.record("issue", ("acme/widget", 99))  # not expected: neither lost nor found
    expected: dict[str, set[tuple[Any, ...]]] = {
        "issue": {("acme/widget", 1), ("acme/widget", 2)},
        "member": {("557058:a",)},
    }
    assert state.lost(expected) == 2


def test_lost_is_zero_when_everything_expected_was_imported() -> None:
    state = ImportState()
    state.record("member", ("557058:a",))
    assert state.lost({"member": {("557058:a",)}, "issue": set()}) == 0


def test_duplicates_count_the_extra_copies_of_items_imported_more_than_once() -> None:
    state = ImportState()
    for _ in range(3):
        state.record("issue", ("acme/widget", 1))
    state.record("issue", ("acme/widget", 2))
    for _ in range(2):
        state.record("member", ("557058:a",))
    assert state.duplicates() == 2 + 1


# -- the drivers ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", IMPORTS)
def test_an_import_collects_exactly_the_mocks_dataset(mode: str) -> None:
    result = IMPORTS[mode]()
    expected = quick_mock().dataset.expected()
    assert imported(result.state) == {kind: keys for kind, keys in expected.items() if keys}
    assert (result.state.lost(expected), result.state.duplicates()) == (0, 0)
    assert (result.give_ups, result.errors) == (0, collections.Counter())


@pytest.mark.parametrize("mode", IMPORTS)
def test_an_import_times_every_logical_request_once(mode: str) -> None:
    result = IMPORTS[mode]()
    dataset = quick_mock().dataset
    diffs = len(dataset.expected()["diff"])
    others = dataset.requests_needed(PAGELEN) - 2 * diffs
    # Every call takes 0.1 s; a diff is one logical request of two calls, the
    # redirect and its target.
    latencies = collections.Counter(round(latency, 9) for latency in result.latencies)
    assert latencies == {0.1: others, 0.2: diffs}


def test_threads_take_up_new_work_as_soon_as_it_is_queued_like_tasks() -> None:
    """No polling: an idle thread waits as one blocked on a queue, so both take as long."""
    assert run_sync_import().seconds == pytest.approx(run_async_import().seconds)


def first_pull_request_with_comments(mock: MockBitbucket) -> tuple[str, int]:
    repository = mock.dataset.repositories[0]
    pull_request = next(pr for pr in repository.pull_requests if pr.comments)
    return repository.full_name, pull_request.id


def first_issue_with_comments(mock: MockBitbucket) -> tuple[str, int]:
    repository = mock.dataset.repositories[0]
    issue = next(issue for issue in repository.issues if issue.comments)
    return repository.full_name, issue.id


def lose_a_diff() -> tuple[Callable[[str], bool], dict[str, set[Any]]]:
    full_name, number = first_pull_request_with_comments(quick_mock())
    return (
        lambda url: url.endswith(f"/pullrequests/{number}/diff"),
        {"diff": {(full_name, number)}},
    )


def lose_a_pull_requests_comments() -> tuple[Callable[[str], bool], dict[str, set[Any]]]:
    expected = quick_mock().dataset.expected()
    full_name, number = first_pull_request_with_comments(quick_mock())
    comments = {key for key in expected["pull_request_comment"] if key[:2] == (full_name, number)}
    return (
        lambda url: f"/pullrequests/{number}/comments?" in url,
        {"pull_request_comment": comments},
    )


def lose_the_pull_request_listing() -> tuple[Callable[[str], bool], dict[str, set[Any]]]:
    expected = quick_mock().dataset.expected()
    behind = {kind: expected[kind] for kind in ("pull_request", "pull_request_comment", "diff")}
    return (lambda url: "/pullrequests?" in url, behind)


def lose_an_issues_comments() -> tuple[Callable[[str], bool], dict[str, set[Any]]]:
    expected = quick_mock().dataset.expected()
    full_name, number = first_issue_with_comments(quick_mock())
    comments = {key for key in expected["issue_comment"] if key[:2] == (full_name, number)}
    return (lambda url: f"/issues/{number}/comments?" in url, {"issue_comment": comments})


def lose_the_repository_listing() -> tuple[Callable[[str], bool], dict[str, set[Any]]]:
    expected = quick_mock().dataset.expected()
    behind = {kind: keys for kind, keys in expected.items() if kind != "member" and keys}
    return (lambda url: url.startswith("/repositories/acme?"), behind)


def lose_the_members() -> tuple[Callable[[str], bool], dict[str, set[Any]]]:
    expected = quick_mock().dataset.expected()
    return (lambda url: "/members?" in url, {"member": expected["member"]})


@pytest.mark.parametrize("mode", IMPORTS)
@pytest.mark.parametrize(
    "scenario",
    [
        lose_a_diff,
        lose_a_pull_requests_comments,
        lose_the_pull_request_listing,
        lose_an_issues_comments,
        lose_the_repository_listing,
        lose_the_members,
    ],
)
def test_a_request_that_fails_for_good_loses_exactly_the_items_behind_it(
    mode: str, scenario: Callable[[], tuple[Callable[[str], bool], dict[str, set[Any]]]]
) -> None:
    drop, lost = scenario()
    result = IMPORTS[mode](drop=drop)
    expected = quick_mock().dataset.expected()
    assert missing(result.state, expected) == lost
    assert result.state.lost(expected) == sum(len(keys) for keys in lost.values())
    assert (result.give_ups, result.errors) == (1, collections.Counter({"Refused": 1}))


def test_an_async_import_from_one_repository_task_imports_that_repository_alone() -> None:
    """``start=[repository_task(name)]``: one GitLab project's import, no listing, no members."""
    clock = VirtualClock()
    mock = MockBitbucket(seed=0, size=QUICK_SIZE, latency=0.1, clock=clock.monotonic)
    (repository,) = mock.dataset.repositories
    start = [repository_task(repository.full_name)]
    outcome = run_virtual(
        import_async(AsyncMockFetcher(mock), WORKERS, clock.monotonic, start=start), clock
    )
    expected = {
        kind: keys for kind, keys in mock.dataset.expected().items() if kind != "member" and keys
    }
    assert imported(outcome.state) == expected
    assert outcome.give_ups == 0
