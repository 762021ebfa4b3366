"""The ``bb-backoff`` command.

``bb-backoff demo`` imports a small fake repository through the client twice,
with the flag on and off, against a fake API that rate-limits like Bitbucket
(a rolling window, bare 429s without a hint), on virtual time, and prints
what happened.
"""

from __future__ import annotations

import argparse
import collections
import sys
from collections.abc import Sequence
from typing import Any

import httpx

from ._client import BitbucketClient
from ._exceptions import BitbucketError
from ._flags import FLAG_NAME
from ._policy import (
    GITLAB_16_7,
    ExponentialBackoff,
    FixedRetry,
    Reason,
    RetryPolicy,
    ScheduleRow,
)
from .testing import VirtualClock

_BASE = "https://api.bitbucket.org/2.0"
_RATE_LIMIT_TEXT = "Rate limit for this resource has been exceeded"


class _FakeBitbucket:
    """A tiny rate-limited fake: one repository, its pull requests and comments."""

    def __init__(
        self, clock: VirtualClock, *, pull_requests: int, limit: int, window: float
    ) -> None:
        self._clock = clock
        self._pull_requests = pull_requests
        self._limit = limit
        self._window = window
        self._accepted: collections.deque[float] = collections.deque()
        self.calls = 0
        self.rate_limited = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        now = self._clock.monotonic()
        while self._accepted and self._accepted[0] <= now - self._window:
            self._accepted.popleft()
        if len(self._accepted) >= self._limit:
            self.rate_limited += 1
            return httpx.Response(429, text=_RATE_LIMIT_TEXT)
        self._accepted.append(now)
        path = request.url.path.removeprefix("/2.0")
        page = int(request.url.params.get("page", "1"))
        if path == "/repositories/demo/app":
            return httpx.Response(200, json={"slug": "app", "full_name": "demo/app"})
        if path == "/repositories/demo/app/pullrequests":
            ids = list(range(1, self._pull_requests + 1))
            return self._page(request, [{"id": i} for i in ids], page)
        if path.startswith("/repositories/demo/app/pullrequests/") and path.endswith("/comments"):
            pull_request = int(path.split("/")[-2])
            comments = [{"id": pull_request * 100 + n} for n in range(1, 4)]
            return self._page(request, comments, page)
        return httpx.Response(404, json={"type": "error", "error": {"message": "Not found"}})

    @staticmethod
    def _page(
        request: httpx.Request, items: list[Any], page: int, pagelen: int = 10
    ) -> httpx.Response:
        chunk = items[(page - 1) * pagelen : page * pagelen]
        body: dict[str, Any] = {
            "values": chunk,
            "page": page,
            "pagelen": pagelen,
            "size": len(items),
        }
        if page * pagelen < len(items):
            body["next"] = str(request.url.copy_merge_params({"page": page + 1}))
        return httpx.Response(200, json=body)


def _import(*, flag: bool, pull_requests: int, limit: int, window: float) -> dict[str, Any]:
    """Import the fake repository once; return what happened."""
    clock = VirtualClock()
    fake = _FakeBitbucket(clock, pull_requests=pull_requests, limit=limit, window=window)
    imported = 0
    failed = 0
    with BitbucketClient(
        flag=flag,
        actor="Project:1",
        transport=httpx.MockTransport(fake),
        clock=clock.monotonic,
        now=clock.time,
        sleep=clock.sleep,
    ) as client:
        try:
            client.repo("demo", "app")
            found = list(client.pull_requests("demo", "app"))
        except BitbucketError:
            found = []
            failed += 1
        for pull_request in found:
            try:
                imported += 1 + len(
                    list(client.pull_request_comments("demo", "app", pull_request["id"]))
                )
            except BitbucketError:
                failed += 1
    return {
        "flag": "on" if flag else "off",
        "imported": imported,
        "expected": pull_requests * 4,
        "failed requests": failed,
        "calls": fake.calls,
        "429s": fake.rate_limited,
        "virtual minutes": clock.monotonic() / 60,
    }


def _demo(args: argparse.Namespace) -> int:
    print(
        f"Importing a fake repository ({args.pull_requests} pull requests, 3 comments each) "
        f"from a fake API allowing {args.limit} requests per {args.window:g} s, "
        f"with {FLAG_NAME} on and off (virtual time):\n"
    )
    rows = [
        _import(flag=flag, pull_requests=args.pull_requests, limit=args.limit, window=args.window)
        for flag in (True, False)
    ]
    header = list(rows[0])
    print("  ".join(f"{name:>15}" for name in header))
    for row in rows:
        print(
            "  ".join(
                f"{row[name]:>15.1f}" if isinstance(row[name], float) else f"{row[name]!s:>15}"
                for name in header
            )
        )
    print(
        "\nWith the flag on, every item arrives: a 429 is a reason to wait. With it off, the "
        "legacy fixed retry (3 attempts, 1 s apart) gives up and the items behind those "
        "requests are lost."
    )
    return 0


SCHEDULE_COLUMNS: tuple[tuple[str, RetryPolicy, Reason], ...] = (
    ("flag on, 429 (ExponentialBackoff())", ExponentialBackoff(), Reason.RATE_LIMIT),
    ("flag on, 5xx (ExponentialBackoff())", ExponentialBackoff(), Reason.SERVER_ERROR),
    ("flag off (FixedRetry())", FixedRetry(), Reason.RATE_LIMIT),
    ("GITLAB_16_7", GITLAB_16_7, Reason.RATE_LIMIT),
)


def _spread(row: ScheduleRow) -> str:
    return f"{row.low:.3g} / {row.median:.3g} / {row.high:.3g}"


def schedule_table(retries: int = 10) -> str:
    """The default, legacy and GitLab schedules side by side, as a markdown table.

    Each cell is ``low / median / high`` seconds for that wait, without
    server hints; "gave up" means the policy has stopped by then.
    """
    columns = [policy.schedule(retries, reason=reason) for _, policy, reason in SCHEDULE_COLUMNS]
    lines = [
        "| wait | " + " | ".join(title for title, _, _ in SCHEDULE_COLUMNS) + " |",
        "|---:|" + "---|" * len(SCHEDULE_COLUMNS),
    ]
    for index in range(max(len(rows) for rows in columns)):
        cells = [_spread(rows[index]) if index < len(rows) else "gave up" for rows in columns]
        lines.append(f"| {index + 1} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _schedule(args: argparse.Namespace) -> int:
    print("Waits in seconds (low / median / high) when the server sends no hint:\n")
    print(schedule_table(args.retries))
    return 0


def _positive(kind: type[int | float]) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(
        prog="bb-backoff", description="A flag-aware Bitbucket Cloud client with backoff."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="import a fake repository with the flag on and off")
    demo.add_argument("--pull-requests", type=_positive(int), default=60, help="default: 60")
    demo.add_argument(
        "--limit", type=_positive(int), default=50, help="requests per window (default: 50)"
    )
    demo.add_argument(
        "--window", type=_positive(float), default=600.0, help="seconds (default: 600)"
    )
    demo.set_defaults(run=_demo)
    schedule = commands.add_parser("schedule", help="print the delay schedules of the policies")
    schedule.add_argument(
        "--retries", type=_positive(int), default=10, help="waits to list (default: 10)"
    )
    schedule.set_defaults(run=_schedule)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return its exit status."""
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
