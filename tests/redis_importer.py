"""One importer process of the Redis store's multi-process tests: it imports one repository.

``tests/test_redis.py`` runs several of these at once against one served
mock, all on one credential and one Redis, as ``python redis_importer.py
'<json config>'``.  Each imports its repository (the repository, its pull
requests with their comments and diffs, its issues with their comments)
with a few async workers, and prints one JSON object: the items it got, and
whether its store ended on local state.  Log lines of the ``bb_backoff``
logger go to stderr, for the test to count.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import bb_backoff as bb


async def import_repository(
    client: bb.AsyncBitbucketClient, full_name: str, workers: int
) -> list[list[Any]]:
    """Every item of one repository, as ``[kind, full_name, ...]`` lists (one per item got)."""
    items: list[list[Any]] = []
    workspace, slug = full_name.split("/")
    queue: asyncio.Queue[Callable[[], Awaitable[None]]] = asyncio.Queue()

    async def pull_request(number: int) -> None:
        items.extend(
            [
                ["pull_request_comment", full_name, number, comment["id"]]
                async for comment in client.pull_request_comments(workspace, slug, number)
            ]
        )
        if await client.pull_request_diff(workspace, slug, number):
            items.append(["diff", full_name, number])

    async def issue(number: int) -> None:
        items.extend(
            [
                ["issue_comment", full_name, number, comment["id"]]
                async for comment in client.issue_comments(workspace, slug, number)
            ]
        )

    async def repository() -> None:
        items.append(["repository", (await client.repo(workspace, slug))["full_name"]])
        async for found in client.pull_requests(workspace, slug):
            items.append(["pull_request", full_name, found["id"]])
            queue.put_nowait(functools.partial(pull_request, found["id"]))
        async for found in client.issues(workspace, slug):
            items.append(["issue", full_name, found["id"]])
            queue.put_nowait(functools.partial(issue, found["id"]))

    async def worker() -> None:
        while True:
            job = await queue.get()
            try:
                await job()
            finally:
                queue.task_done()

    queue.put_nowait(repository)
    pool = [asyncio.create_task(worker()) for _ in range(workers)]
    try:
        await queue.join()
    finally:
        for task in pool:
            task.cancel()
        results = await asyncio.gather(*pool, return_exceptions=True)
    errors = [r for r in results if not isinstance(r, asyncio.CancelledError | type(None))]
    if errors:
        raise errors[0]
    return items


async def main(config: dict[str, Any]) -> dict[str, Any]:
    """Import ``config["repository"]`` through a gate on ``config["redis_url"]``."""
    window = config["window"]
    scale = window / 3600
    store = bb.RedisStore(config["redis_url"], retry_interval=config["retry_interval"])
    gate = bb.AccountGate(
        window=window,
        store=store,
        probe_initial=0.02,
        probe_max=300 * scale,
        breaker_max=0.5,
        probe_lease=60 * scale,
    )
    policy = bb.ExponentialBackoff(
        initial=0.02, max_delay=300 * scale, rate_limit_budget=24 * 3600 * scale, error_budget=5.0
    )
    try:
        async with bb.AsyncBitbucketClient(
            auth=bb.BearerToken(config["token"]),
            base_url=config["base_url"],
            policy=policy,
            timeout=10.0,
            gate=gate,
        ) as client:
            items = await import_repository(client, config["repository"], config["workers"])
    finally:
        await store.aclose()
    return {"items": items, "degraded": store.degraded}


if __name__ == "__main__":
    logging.basicConfig(stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    logging.getLogger("bb_backoff").setLevel(logging.INFO)
    result = asyncio.run(main(json.loads(sys.argv[1])))
    sys.stdout.write(json.dumps(result) + "\n")
