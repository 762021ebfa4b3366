"""The benchmark's workload: an importer in the shape of GitLab's Bitbucket Cloud importer.

The import is a graph of tasks discovered as it goes: the workspace list
(``/user/workspaces``: Atlassian removed the cross-workspace repository list)
yields each workspace's repository and member lists, the repository list
yields repositories, a repository yields its pull-request and issue lists, a
pull request yields its comments and diff, and every listing yields its next
page.  :class:`ImportState` is the pure part (what a fetched body means and
what to fetch next); :func:`import_async` and :func:`import_sync` are the two
drivers, with a pool of workers sharing one task queue.  A request that fails
for good is dropped, and with it every item behind it: that is what "items
lost" counts.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, Protocol
from urllib.parse import quote

import attrs

from ..testing import VirtualThreads

PAGELEN: Final = 50


@attrs.frozen
class Task:
    """One request to make: ``kind`` says how to read the answer."""

    kind: str
    url: str
    context: tuple[Any, ...] = ()


def initial_tasks() -> list[Task]:
    """Where an import starts: who am I, and which workspaces I reach."""
    return [Task("user", "/user"), Task("workspaces", _listing("/user/workspaces"))]


def repository_task(full_name: str) -> Task:
    """Where the import of one repository (``"workspace/slug"``) starts: its GET.

    The repository leads to its pull requests and issues, as in a whole
    import; a GitLab project imports one repository this way.
    """
    return Task("repository", f"/repositories/{_path(full_name)}", (full_name,))


def _listing(path: str, **params: str) -> str:
    pairs = {**params, "pagelen": str(PAGELEN)}
    query = "&".join(f"{key}={value}" for key, value in pairs.items())
    return f"{path}?{query}"


class ImportState:
    """What the import has collected, and what a fetched body leads to next."""

    def __init__(self) -> None:
        self.items: dict[str, collections.Counter[tuple[Any, ...]]] = collections.defaultdict(
            collections.Counter
        )
        self._workspaces: set[str] = set()

    def record(self, kind: str, key: tuple[Any, ...]) -> None:
        """Count one imported item."""
        self.items[kind][key] += 1

    def follow(self, task: Task, body: Any) -> list[Task]:
        """Record what ``body`` holds for ``task`` and return the tasks it leads to."""
        handler = getattr(self, f"_on_{task.kind}")
        tasks: list[Task] = handler(task, body)
        if isinstance(body, dict) and isinstance(body.get("next"), str):
            tasks.append(Task(task.kind, body["next"], task.context))
        return tasks

    def _on_user(self, _task: Task, _body: Any) -> list[Task]:
        return []

    def _on_workspaces(self, _task: Task, body: Any) -> list[Task]:
        tasks = []
        for access in body["values"]:
            workspace = access["workspace"]["slug"]
            # A listing may repeat a row: each workspace is imported once.
            if workspace not in self._workspaces:
                self._workspaces.add(workspace)
                segment = quote(workspace, safe="")
                tasks.append(
                    Task(
                        "repositories",
                        _listing(f"/repositories/{segment}", role="member", sort="created_on"),
                    )
                )
                tasks.append(Task("members", _listing(f"/workspaces/{segment}/members")))
        return tasks

    def _on_repositories(self, _task: Task, body: Any) -> list[Task]:
        names = [repository["full_name"] for repository in body["values"]]
        return [Task("repository", f"/repositories/{_path(name)}", (name,)) for name in names]

    def _on_repository(self, task: Task, body: Any) -> list[Task]:
        (full_name,) = task.context
        self.record("repository", (body["full_name"],))
        base = f"/repositories/{_path(full_name)}"
        return [
            Task(
                "pull_requests",
                _listing(f"{base}/pullrequests", state="ALL", sort="created_on"),
                (full_name,),
            ),
            Task("issues", _listing(f"{base}/issues", sort="created_on"), (full_name,)),
        ]

    def _on_pull_requests(self, task: Task, body: Any) -> list[Task]:
        (full_name,) = task.context
        base = f"/repositories/{_path(full_name)}/pullrequests"
        tasks = []
        for pull_request in body["values"]:
            number = pull_request["id"]
            self.record("pull_request", (full_name, number))
            tasks.append(
                Task(
                    "pull_request_comments",
                    _listing(f"{base}/{number}/comments", sort="created_on"),
                    (full_name, number),
                )
            )
            tasks.append(Task("diff", f"{base}/{number}/diff", (full_name, number)))
        return tasks

    def _on_pull_request_comments(self, task: Task, body: Any) -> list[Task]:
        full_name, number = task.context
        for comment in body["values"]:
            self.record("pull_request_comment", (full_name, number, comment["id"]))
        return []

    def _on_diff(self, task: Task, _body: Any) -> list[Task]:
        self.record("diff", task.context)
        return []

    def _on_issues(self, task: Task, body: Any) -> list[Task]:
        (full_name,) = task.context
        base = f"/repositories/{_path(full_name)}/issues"
        tasks = []
        for issue in body["values"]:
            self.record("issue", (full_name, issue["id"]))
            tasks.append(
                Task(
                    "issue_comments",
                    _listing(f"{base}/{issue['id']}/comments", sort="created_on"),
                    (full_name, issue["id"]),
                )
            )
        return tasks

    def _on_issue_comments(self, task: Task, body: Any) -> list[Task]:
        full_name, number = task.context
        for comment in body["values"]:
            self.record("issue_comment", (full_name, number, comment["id"]))
        return []

    def _on_members(self, _task: Task, body: Any) -> list[Task]:
        for membership in body["values"]:
            self.record("member", (membership["user"]["account_id"],))
        return []

    def lost(self, expected: dict[str, set[tuple[Any, ...]]]) -> int:
        """Expected items that were not imported."""
        return sum(len(keys - set(self.items.get(kind, ()))) for kind, keys in expected.items())

    def duplicates(self) -> int:
        """Items imported more than once (extra copies)."""
        return sum(
            count - 1 for counter in self.items.values() for count in counter.values() if count > 1
        )


def _path(full_name: str) -> str:
    workspace, slug = full_name.split("/", 1)
    return f"{quote(workspace, safe='')}/{quote(slug, safe='')}"


@attrs.define
class ImportResult:
    """How one import went, by the shared clock."""

    state: ImportState
    seconds: float
    latencies: list[float]
    give_ups: int
    errors: collections.Counter[str]


class AsyncFetcher(Protocol):
    """What a contender provides for async workers."""

    async def json(self, url: str) -> Any:
        """GET ``url`` (a path or a ``next`` URL) and parse the JSON."""

    async def text(self, url: str) -> str:
        """GET ``url`` as text."""

    async def aclose(self) -> None:
        """Release connections."""


class SyncFetcher(Protocol):
    """What a contender provides for threads."""

    def json(self, url: str) -> Any:
        """GET ``url`` (a path or a ``next`` URL) and parse the JSON."""

    def text(self, url: str) -> str:
        """GET ``url`` as text."""

    def close(self) -> None:
        """Release connections."""


class _Tally:
    """Latencies and give-ups, shared by the workers of one import."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.latencies: list[float] = []
        self.give_ups = 0
        self.errors: collections.Counter[str] = collections.Counter()

    def failed(self, error: Exception) -> None:
        self.give_ups += 1
        self.errors[type(error).__name__] += 1


async def import_async(
    fetcher: AsyncFetcher,
    workers: int,
    clock: Callable[[], float],
    start: Iterable[Task] | None = None,
) -> ImportResult:
    """Run a whole import with ``workers`` tasks sharing one queue.

    ``start``: the first tasks (default: :func:`initial_tasks`, the whole
    workspace); one repository's task imports that repository alone.
    """
    state = ImportState()
    tally = _Tally(clock)
    queue: asyncio.Queue[Task] = asyncio.Queue()
    for task in initial_tasks() if start is None else start:
        queue.put_nowait(task)
    started = clock()

    async def fetch(task: Task) -> Any:
        read: Callable[[str], Awaitable[Any]] = (
            fetcher.text if task.kind == "diff" else fetcher.json
        )
        return await read(task.url)

    async def worker() -> None:
        while True:
            task = await queue.get()
            begun = clock()
            try:
                body = await fetch(task)
            except Exception as error:  # noqa: BLE001 (a give-up drops the task and its items)
                tally.failed(error)
            else:
                _enqueue(queue.put_nowait, state.follow(task, body))
            finally:
                tally.latencies.append(clock() - begun)
                queue.task_done()

    pool = [asyncio.create_task(worker()) for _ in range(workers)]
    try:
        await queue.join()
    finally:
        for running in pool:
            running.cancel()
        await asyncio.gather(*pool, return_exceptions=True)
        await fetcher.aclose()
    return ImportResult(state, clock() - started, tally.latencies, tally.give_ups, tally.errors)


def import_sync(
    fetcher: SyncFetcher, workers: int, clock: Callable[[], float], threads: VirtualThreads
) -> ImportResult:
    """Run a whole import with ``workers`` threads taking turns on virtual time."""
    state = ImportState()
    tally = _Tally(clock)
    queue: collections.deque[Task] = collections.deque(initial_tasks())
    busy = 0
    started = clock()

    def worker() -> None:
        nonlocal busy
        while True:
            if not queue:
                if busy == 0:
                    threads.unpark_all()  # the others see it too, and finish
                    return
                # Like a thread blocked on queue.Queue.get: woken by the next
                # task, or by the last busy worker finishing.
                threads.park()
                continue
            task = queue.popleft()
            busy += 1
            begun = clock()
            try:
                body = fetcher.text(task.url) if task.kind == "diff" else fetcher.json(task.url)
            except Exception as error:  # noqa: BLE001 (a give-up drops the task and its items)
                tally.failed(error)
            else:
                _enqueue(queue.append, state.follow(task, body))
            finally:
                tally.latencies.append(clock() - begun)
                busy -= 1
                threads.unpark_all()

    try:
        threads.run([worker] * workers)
    finally:
        fetcher.close()
    return ImportResult(state, clock() - started, tally.latencies, tally.give_ups, tally.errors)


def _enqueue(put: Callable[[Task], object], tasks: Iterable[Task]) -> None:
    for task in tasks:
        put(task)
