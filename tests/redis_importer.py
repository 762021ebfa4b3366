"""One importer process of the Redis store's multi-process tests: it imports one repository.

``tests/test_redis.py`` runs several of these at once against one served
mock, all on one credential and one Redis, as ``python redis_importer.py
'<json config>'``.  Each imports its repository (the repository, its pull
requests with their comments and diffs, its issues with their comments)
with a few async workers (``importers.import_async``, as the suite's
in-process imports), and prints one JSON object: the items it got, and
whether its store ended on local state.  Log lines of the ``bb_backoff``
logger go to stderr, for the test to count.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Any

import bb_backoff as bb
from importers import import_async  # run as a script, its directory is on sys.path


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
            imported = await import_async(
                client, config["workers"], repository=config["repository"]
            )
    finally:
        await store.aclose()
    items = [list(item) for item, count in imported.items() for _ in range(count)]
    return {"items": items, "degraded": store.degraded}


if __name__ == "__main__":
    logging.basicConfig(stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    logging.getLogger("bb_backoff").setLevel(logging.INFO)
    result = asyncio.run(main(json.loads(sys.argv[1])))
    sys.stdout.write(json.dumps(result) + "\n")
