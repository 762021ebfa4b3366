"""Importers for tests: GitLab's import order through the client's helpers, sync and async.

An importer built the way GitLab's is (the workspaces the account reaches, each
one's repositories and members, then pull requests with comments and diffs,
issues with comments), with several workers sharing one client; each returns
the items it imported, counted, so a test can check that every item arrived
exactly once.
"""

from __future__ import annotations

import asyncio
import collections
import functools
from collections.abc import Awaitable, Callable
from typing import Any

import bb_backoff as bb
from bb_backoff.testing import MockBitbucket, VirtualThreads

Items = collections.Counter[tuple[Any, ...]]


def expected_items(mock: MockBitbucket) -> Items:
    return collections.Counter(
        (kind, *key) for kind, keys in mock.dataset.expected().items() for key in keys
    )


# -- the sync importer -----------------------------------------------------------------


def import_sync(client: bb.BitbucketClient, threads: VirtualThreads, workers: int) -> Items:
    items: Items = collections.Counter()
    jobs: collections.deque[Callable[[], None]] = collections.deque()
    busy = 0

    def pull_request(full_name: str, number: int) -> None:
        workspace, slug = full_name.split("/")
        for comment in client.pull_request_comments(workspace, slug, number):
            items["pull_request_comment", full_name, number, comment["id"]] += 1
        if client.pull_request_diff(workspace, slug, number):
            items["diff", full_name, number] += 1

    def issue(full_name: str, number: int) -> None:
        workspace, slug = full_name.split("/")
        for comment in client.issue_comments(workspace, slug, number):
            items["issue_comment", full_name, number, comment["id"]] += 1

    def repository(full_name: str) -> None:
        workspace, slug = full_name.split("/")
        items["repository", client.repo(workspace, slug)["full_name"]] += 1
        for found in client.pull_requests(workspace, slug):
            items["pull_request", full_name, found["id"]] += 1
            jobs.append(functools.partial(pull_request, full_name, found["id"]))
        for found in client.issues(workspace, slug):
            items["issue", full_name, found["id"]] += 1
            jobs.append(functools.partial(issue, full_name, found["id"]))

    def start() -> None:
        client.user()
        for access in client.workspaces():
            workspace = access["workspace"]["slug"]
            for found in client.repos(workspace):
                jobs.append(functools.partial(repository, found["full_name"]))
            for membership in client.workspace_members(workspace):
                items["member", membership["user"]["account_id"]] += 1

    jobs.append(start)

    def worker() -> None:
        nonlocal busy
        while jobs or busy:
            if not jobs:
                threads.sleep(1.0)
                continue
            job = jobs.popleft()
            busy += 1
            try:
                job()
            finally:
                busy -= 1

    threads.run([worker] * workers)
    return items


# -- the async importer ----------------------------------------------------------------


async def import_async(
    client: bb.AsyncBitbucketClient, workers: int, *, repository: str | None = None
) -> Items:
    """Import what the account reaches; or, given ``repository`` (``workspace/slug``), that alone.

    The repository alone is its pull requests with their comments and
    diffs, and its issues with their comments: no user, workspaces or members.
    """
    items: Items = collections.Counter()
    queue: asyncio.Queue[Callable[[], Awaitable[None]]] = asyncio.Queue()

    async def pull_request(full_name: str, number: int) -> None:
        workspace, slug = full_name.split("/")
        async for comment in client.pull_request_comments(workspace, slug, number):
            items["pull_request_comment", full_name, number, comment["id"]] += 1
        if await client.pull_request_diff(workspace, slug, number):
            items["diff", full_name, number] += 1

    async def issue(full_name: str, number: int) -> None:
        workspace, slug = full_name.split("/")
        async for comment in client.issue_comments(workspace, slug, number):
            items["issue_comment", full_name, number, comment["id"]] += 1

    async def import_repository(full_name: str) -> None:
        workspace, slug = full_name.split("/")
        items["repository", (await client.repo(workspace, slug))["full_name"]] += 1
        async for found in client.pull_requests(workspace, slug):
            items["pull_request", full_name, found["id"]] += 1
            queue.put_nowait(functools.partial(pull_request, full_name, found["id"]))
        async for found in client.issues(workspace, slug):
            items["issue", full_name, found["id"]] += 1
            queue.put_nowait(functools.partial(issue, full_name, found["id"]))

    async def start() -> None:
        await client.user()
        async for access in client.workspaces():
            workspace = access["workspace"]["slug"]
            async for found in client.repos(workspace):
                queue.put_nowait(functools.partial(import_repository, found["full_name"]))
            async for membership in client.workspace_members(workspace):
                items["member", membership["user"]["account_id"]] += 1

    queue.put_nowait(
        start if repository is None else functools.partial(import_repository, repository)
    )

    async def worker() -> None:
        while True:
            job = await queue.get()
            try:
                await job()
            finally:
                queue.task_done()

    pool = [asyncio.create_task(worker()) for _ in range(workers)]
    try:
        await queue.join()
    finally:
        for task in pool:
            task.cancel()
        # A failed job re-raises here, after the others have been stopped.
        results = await asyncio.gather(*pool, return_exceptions=True)
    errors = [r for r in results if not isinstance(r, asyncio.CancelledError | type(None))]
    if errors:
        raise errors[0]
    return items
