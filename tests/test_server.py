"""The mock over real HTTP: the ASGI app on virtual time, serve_mock in (brief) real time.

Also the serve-mock command's options (its parser and the mock they build),
and a real third-party client (atlassian-python-api) walking a served mock.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, MutableMapping
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from bb_backoff import BitbucketClient, OAuth2Tokens
from bb_backoff._cli import _served_mock, build_parser, main
from bb_backoff.testing import DatasetSize, Faults, MockBitbucket, VirtualClock, serve_mock
from bb_backoff.testing._server import _listener
from markers import REALTIME

TINY = DatasetSize(
    repositories=1,
    pull_requests=3,
    comments_per_pull_request=1,
    issues=2,
    comments_per_issue=1,
    members=2,
)


# -- the ASGI app, driven directly on virtual time -------------------------------------------


class Exchange:
    """One request through the ASGI app, and the messages it sent back."""

    def __init__(self, app: Any, path: str, *, host: str = "mock.test:8080", **scope: Any) -> None:
        self.app = app
        path, _, query = path.partition("?")
        self.scope = {
            "type": "http",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "headers": [(b"host", host.encode())],
            **scope,
        }
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(self, message: MutableMapping[str, Any]) -> None:
        self.sent.append(dict(message))

    def run(self) -> tuple[int, dict[bytes, bytes], bytes, bool]:
        asyncio.run(self.app(self.scope, self.receive, self.send))
        start, body = self.sent
        assert start["type"] == "http.response.start"
        return start["status"], dict(start["headers"]), body["body"], body["more_body"]


def virtual_mock(**options: Any) -> tuple[MockBitbucket, VirtualClock]:
    clock = VirtualClock()
    mock = MockBitbucket(
        size=TINY,
        clock=clock.monotonic,
        now=clock.time,
        sleep=clock.sleep,
        async_sleep=clock.sleep,
        **options,
    )
    return mock, clock


def authorized(mock: MockBitbucket) -> list[tuple[bytes, bytes]]:
    return [
        (b"host", b"mock.test:8080"),
        (b"authorization", mock.bearer().authorization().encode()),
    ]


def test_the_asgi_app_links_pages_to_the_origin_the_request_came_to() -> None:
    mock, _ = virtual_mock()
    exchange = Exchange(
        mock.asgi_app(), "/2.0/workspaces/acme/members?pagelen=1", headers=authorized(mock)
    )
    status, headers, body, unfinished = exchange.run()
    assert (status, unfinished) == (200, False)
    assert headers[b"content-length"] == str(len(body)).encode()
    assert b'"next":"http://mock.test:8080/2.0/workspaces/acme/members?pagelen=1&page=2"' in body


def test_an_asgi_reset_promises_more_bytes_than_it_sends_and_never_finishes() -> None:
    mock, _ = virtual_mock()
    mock.script("reset")
    _, headers, body, unfinished = Exchange(
        mock.asgi_app(), "/2.0/user", headers=authorized(mock)
    ).run()
    assert int(headers[b"content-length"]) > len(body)
    assert unfinished
    assert mock.counters.resets == 1


def test_an_asgi_timeout_answers_after_slow_seconds() -> None:
    mock, clock = virtual_mock(faults=Faults(timeout_rate=1.0, slow_seconds=7))
    status, _, _, _ = Exchange(mock.asgi_app(), "/2.0/user", headers=authorized(mock)).run()
    assert (status, clock.sleeps) == (200, [7.0])
    assert mock.counters.timeouts == 1


def test_the_asgi_app_completes_the_lifespan_protocol() -> None:
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    asyncio.run(virtual_mock()[0].asgi_app()({"type": "lifespan"}, receive, send))
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_the_asgi_app_answers_a_bad_host_header_400_and_counts_it() -> None:
    mock, _ = virtual_mock()
    for host in (b"a/b", b"user@mock.test", b"mock.test:123456", b""):
        headers = [(b"host", host), *authorized(mock)[1:]]
        status, _, body, _ = Exchange(mock.asgi_app(), "/2.0/user", headers=headers).run()
        assert (status, json.loads(body)["error"]["message"]) == (400, "Bad Request")
    assert (mock.counters.calls, mock.counters.bad_requests) == (4, 4)


def test_the_asgi_app_refuses_a_websocket_and_counts_nothing() -> None:
    mock, _ = virtual_mock()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    scope = {"type": "websocket", "path": "/2.0/user", "headers": []}
    asyncio.run(mock.asgi_app()(scope, receive, send))
    assert sent == [{"type": "websocket.close", "code": 1008}]
    assert mock.counters.calls == 0


def test_the_access_log_has_one_line_per_request_without_secrets_or_line_breaks() -> None:
    mock, _ = virtual_mock()
    lines: list[str] = []
    app = mock.asgi_app(access_log=lines.append)
    Exchange(app, "/2.0/user?client_secret=hush&page=1", headers=authorized(mock)).run()
    Exchange(app, "/2.0/user", method="G\nET").run()
    Exchange(app, "/site/oauth2/access_token").run()
    assert lines == [
        "GET /2.0/user?client_secret=[redacted]&page=1 200 access-token",
        "G\\nET /2.0/user 401 -",
        "GET /site/oauth2/access_token 405 -",
    ]
    assert not any(mock.access_token in line for line in lines)


def test_an_access_log_that_fails_stops_and_never_changes_an_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # serve-mock's log is stderr: when its reader goes away, printing raises
    # BrokenPipeError; the client must still get the mock's answer.
    mock, _ = virtual_mock()
    calls: list[str] = []

    def broken(line: str) -> None:
        calls.append(line)
        raise BrokenPipeError(32, "Broken pipe")

    app = mock.asgi_app(access_log=broken)
    for _ in range(3):
        assert Exchange(app, "/2.0/user", headers=authorized(mock)).run()[0] == 200
    assert len(calls) == 1
    assert mock.counters.ok == 3
    assert [r.getMessage() for r in caplog.records if "access log" in r.getMessage()] == [
        "the mock's access log failed (BrokenPipeError(32, 'Broken pipe')); it stops"
    ]


# -- serve_mock: a real uvicorn server on a free port -------------------------------------------


@pytest.fixture
def served() -> Iterator[tuple[MockBitbucket, str]]:
    mock = MockBitbucket(size=TINY)
    with serve_mock(mock) as base_url:
        yield mock, base_url


def test_serve_mock_yields_a_base_url_on_a_free_port_whose_links_point_back(
    served: tuple[MockBitbucket, str],
) -> None:
    mock, base_url = served
    assert base_url.startswith("http://127.0.0.1:")
    assert base_url.endswith("/2.0")
    headers = {"Authorization": mock.bearer().authorization()}
    with httpx.Client(headers=headers) as client:
        first = client.get(f"{base_url}/workspaces/acme/members", params={"pagelen": 1}).json()
        assert first["next"] == f"{base_url}/workspaces/acme/members?pagelen=1&page=2"
        second = client.get(first["next"]).json()
    assert [m["user"]["account_id"] for m in first["values"] + second["values"]] == [
        m.account_id for m in mock.dataset.members
    ]


def test_a_clients_forwarded_headers_do_not_change_the_served_links(
    served: tuple[MockBitbucket, str],
) -> None:
    mock, base_url = served
    headers = {
        "Authorization": mock.bearer().authorization(),
        "X-Forwarded-Proto": "https",
        "X-Forwarded-For": "203.0.113.7",
    }
    with httpx.Client(headers=headers) as client:
        page = client.get(f"{base_url}/workspaces/acme/members", params={"pagelen": 1}).json()
        wrong = client.get(f"{base_url}/user", headers={"X-Forwarded-Proto": "ws"})
    assert page["next"] == f"{base_url}/workspaces/acme/members?pagelen=1&page=2"
    assert wrong.status_code == 200


def test_the_clients_import_a_served_mock_following_the_diff_redirect(
    served: tuple[MockBitbucket, str],
) -> None:
    mock, base_url = served
    found: set[tuple[str, int]] = set()
    with BitbucketClient(auth=mock.bearer(), base_url=base_url) as client:
        for repository in client.repos():
            workspace, slug = repository["full_name"].split("/")
            for pull_request in client.pull_requests(workspace, slug):
                diff = client.pull_request_diff(workspace, slug, pull_request["id"])
                if diff.startswith("diff --git"):
                    found.add((repository["full_name"], pull_request["id"]))
    assert found == mock.dataset.expected()["diff"]


@REALTIME
def test_a_served_mock_rate_limits_in_real_time() -> None:
    mock = MockBitbucket(size=TINY, limit=3, window=0.5, hint="retry-after")
    with (
        serve_mock(mock) as base_url,
        httpx.Client(
            base_url=base_url, headers={"Authorization": mock.bearer().authorization()}
        ) as client,
    ):
        statuses = [client.get("/user").status_code for _ in range(4)]
        refused = client.get("/user")
        time.sleep(0.55)  # the window is real time here
        after = client.get("/user").status_code
    assert statuses == [200, 200, 200, 429]
    assert (refused.text, refused.headers["Retry-After"]) == (
        "Rate limit for this resource has been exceeded",
        "1",
    )
    assert after == 200


def test_a_served_reset_fault_surfaces_as_an_httpx_transport_error(
    served: tuple[MockBitbucket, str],
) -> None:
    mock, base_url = served
    mock.script("reset")
    with httpx.Client(base_url=base_url) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.get("/user")
        # The connection is gone, the server is not: the next request gets through.
        assert client.get("/user").status_code == 401


@REALTIME
def test_an_answer_cut_short_by_the_servers_stop_is_no_error_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A slow answer in flight when the server stops (Ctrl-C on serve-mock) is cancelled
    after the graceful shutdown's second: expected, so not an ASGI error with a traceback."""
    mock = MockBitbucket(size=TINY, faults=Faults(slow_rate=1.0, slow_seconds=30))
    ended: list[object] = []

    def call(base_url: str) -> None:
        try:
            with httpx.Client(base_url=base_url, timeout=10) as client:
                headers = {"Authorization": mock.bearer().authorization()}
                ended.append(client.get("/user", headers=headers).status_code)
        except httpx.HTTPError as error:
            ended.append(error)

    with caplog.at_level(logging.ERROR, logger="uvicorn.error"):
        with serve_mock(mock) as base_url:
            caller = threading.Thread(target=call, args=(base_url,))
            caller.start()
            deadline = time.monotonic() + 5
            while mock.counters.calls == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
        caller.join(10)
    assert mock.counters.calls == 1
    assert ended  # not left waiting for the slow answer: uvicorn answers 500 or closes
    assert ended[0] != 200
    assert "Exception in ASGI application" not in caplog.text
    assert "CancelledError" not in caplog.text


def _users_app() -> None:
    """An app of the user's, not the mock's, that is cancelled."""
    raise asyncio.CancelledError


def test_another_apps_cancellation_is_still_logged_while_a_mock_is_served(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """uvicorn's error logger is the process's: only the mock's own cut answers are dropped."""
    with (
        caplog.at_level(logging.ERROR, logger="uvicorn.error"),
        serve_mock(MockBitbucket(size=TINY)),
    ):
        try:
            _users_app()
        except asyncio.CancelledError:
            logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    assert "Exception in ASGI application" in caplog.text


def test_an_oauth_client_refreshes_against_the_served_token_endpoint(
    served: tuple[MockBitbucket, str],
) -> None:
    mock, base_url = served
    origin = base_url.removesuffix("/2.0")
    stored: list[OAuth2Tokens] = []
    auth = mock.oauth2(stored.append, token_url=f"{origin}/site/oauth2/access_token")
    mock.script(
        httpx.Response(401, json={"type": "error", "error": {"message": "Access token expired."}}),
        path="/user",
    )
    with BitbucketClient(auth=auth, base_url=base_url) as client:
        assert client.user()["account_id"] == mock.dataset.user.account_id
    assert [tokens.refresh_token for tokens in stored] == [mock.refresh_token]
    assert mock.counters.refreshes == 1


def test_serve_mock_stops_the_server_when_the_block_ends() -> None:
    mock = MockBitbucket(size=TINY)
    with serve_mock(mock) as base_url:
        pass
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base_url}/user", timeout=1)


def test_importing_the_testing_package_does_not_import_uvicorn() -> None:
    code = "import sys, bb_backoff.testing; print('uvicorn' in sys.modules)"
    out = subprocess.run(  # noqa: S603 (our own interpreter, a fixed script)
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"


# -- a real third-party client: atlassian-python-api (requests) on the served mock ------------

WALKED = DatasetSize(
    repositories=2,
    pull_requests=12,
    comments_per_pull_request=2,
    issues=3,
    comments_per_issue=2,
    members=4,
)


@pytest.mark.parametrize("credentials", ["access token", "api token"])
def test_atlassian_python_api_walks_workspaces_repositories_pull_requests_and_issues(
    credentials: str,
) -> None:
    from atlassian.bitbucket.cloud import Cloud  # noqa: PLC0415 (a test-only dependency)

    mock = MockBitbucket(size=WALKED, seed=3)
    dataset = mock.dataset
    auth: dict[str, str] = (
        {"token": mock.access_token}
        if credentials == "access token"
        else {"username": mock.email, "password": mock.api_token}
    )
    with serve_mock(mock) as base_url:
        # The library is typed only in part: its constructors and helpers are not.
        cloud = Cloud(url=base_url.removesuffix("/2.0"), **auth)  # type: ignore[no-untyped-call]
        (workspace,) = cloud.workspaces.each()
        assert (workspace.slug, workspace.uuid, workspace.name) == (
            "acme",
            dataset.workspace_uuid,
            "Acme",
        )
        members = [member.user["account_id"] for member in workspace.members.each()]
        assert members == [member.account_id for member in dataset.members]
        repositories = list(workspace.repositories.each())
        assert [r.slug for r in repositories] == [r.slug for r in dataset.repositories]
        for repository, expected in zip(repositories, dataset.repositories, strict=True):
            # Pull requests: each() lists the open ones, then GETs each (reviews ride on the GET).
            walked = {pr.id: pr for pr in repository.pullrequests.each()}
            opened = {pr.id: pr for pr in expected.pull_requests if pr.state == "OPEN"}
            assert walked.keys() == opened.keys()
            for number, pull_request in walked.items():
                truth = opened[number]
                assert pull_request.author.account_id == truth.author.account_id
                assert [r.account_id for r in pull_request.reviewers()] == [
                    r.account_id for r in truth.reviewers
                ]
                reviewers = {
                    p.user.account_id for p in pull_request.participants() if p.is_reviewer
                }
                assert reviewers == {r.account_id for r in truth.reviewers}
                assert [c.raw for c in pull_request.comments()] == [c.text for c in truth.comments]
                assert pull_request.diff() == truth.diff
            issues = list(repository.issues.each())
            assert [(i.id, i.title) for i in issues] == [(i.id, i.title) for i in expected.issues]
            for issue in expected.issues:
                path = f"repositories/{expected.full_name}/issues/{issue.id}/comments"
                paged = cloud._get_paged(path)  # type: ignore[no-untyped-call]
                comments = [c["id"] for c in paged]
                assert comments == [c.id for c in issue.comments]
        assert cloud.repositories.get("acme", dataset.repositories[1].slug).name == (
            dataset.repositories[1].slug
        )
        assert not cloud.workspaces.exists("globex")
    assert mock.counters.calls == mock.counters.ok + mock.counters.not_found
    assert mock.counters.not_found == 1


def test_the_listener_hands_tcp_nodelay_to_the_connections_it_accepts() -> None:
    listener = _listener("127.0.0.1", 0)
    listener.listen()
    with listener, socket.create_connection(listener.getsockname()[:2]):
        accepted, _ = listener.accept()
        with accepted:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


# -- the serve-mock command ------------------------------------------------------------------


def serve_mock_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["serve-mock", *argv])


def test_serve_mock_options_build_the_mock_they_describe() -> None:
    args = serve_mock_args(
        *("--limit", "7", "--window", "60", "--hint", "reset", "--seed", "4"),
        *("--token-headers", "--json-429", "--latency", "0.25"),
        *("--server-error-rate", "0.1", "--reset-rate", "0.2", "--timeout-rate", "0.05"),
        *("--slow-rate", "0.15", "--slow-seconds", "3", "--outage-start", "30"),
        *("--outage-seconds", "90"),
    )
    mock = _served_mock(args)
    assert (mock.limit, mock.window, mock.hint, mock.dataset.seed) == (7, 60.0, "reset", 4)
    assert (mock.token_headers, mock.json_429, mock.latency) == (True, True, 0.25)
    assert mock.faults == Faults(
        server_error_rate=0.1,
        reset_rate=0.2,
        timeout_rate=0.05,
        slow_rate=0.15,
        slow_seconds=3,
        outage_start=30,
        outage_seconds=90,
    )


def test_serve_mock_defaults_are_bitbuckets_usual() -> None:
    mock = _served_mock(serve_mock_args())
    assert (mock.limit, mock.window, mock.hint, mock.token_headers, mock.json_429) == (
        1000,
        3600.0,
        "none",
        False,
        False,
    )
    assert (mock.faults, mock.latency) == (Faults(), 0.0)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--window", "inf"], "argument --window: must be a finite number, got inf"),
        (["--window", "1e999"], "argument --window: must be a finite number, got 1e999"),
        (["--window", "-1"], "argument --window: must be > 0, got -1"),
        (["--window", "nan"], "argument --window: must be > 0, got nan"),
        (["--window", "soon"], "argument --window: 'soon' is not a number"),
        (["--limit", "0"], "argument --limit: must be > 0, got 0"),
        (["--latency", "-0.5"], "argument --latency: must be >= 0, got -0.5"),
        (["--latency", "inf"], "argument --latency: must be a finite number, got inf"),
        (["--slow-seconds", "nan"], "argument --slow-seconds: must be >= 0, got nan"),
        (["--outage-seconds=-inf"], "argument --outage-seconds: must be a finite number, got -inf"),
        (["--reset-rate", "1.5"], "argument --reset-rate: must be a share from 0 to 1, got 1.5"),
        (["--server-error-rate", "-0.1"], "argument --server-error-rate: must be >= 0"),
        (["--timeout-rate", "nan"], "argument --timeout-rate: must be >= 0, got nan"),
        (["--host", ""], "argument --host: must not be empty"),
    ],
)
def test_serve_mock_refuses_a_bad_number_with_a_message_and_status_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve-mock", *argv])
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert message in err
    assert "Traceback" not in err


def test_serve_mock_on_a_port_in_use_says_so_with_status_2(
    served: tuple[MockBitbucket, str], capsys: pytest.CaptureFixture[str]
) -> None:
    port = urlsplit(served[1]).port
    assert main(["serve-mock", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"bb-backoff serve-mock: error: cannot listen on 127.0.0.1:{port}: ")
    assert "Traceback" not in err


def test_serve_mock_refuses_fault_rates_summing_above_1_with_status_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["serve-mock", "--reset-rate", "0.6", "--slow-rate", "0.5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bb-backoff serve-mock: error: faults: ")
    assert "must be at most 1, got 1.1" in err
    assert "Traceback" not in err


def test_serve_mock_serves_its_options_and_logs_one_secret_free_line_per_request() -> None:
    command = [
        *(sys.executable, "-m", "bb_backoff", "serve-mock", "--limit", "2"),
        *("--json-429", "--token-headers", "--oauth"),
    ]
    with subprocess.Popen(  # noqa: S603 (our own interpreter and module)
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as server:
        try:
            assert server.stdout is not None
            lines = dict(server.stdout.readline().strip().split(": ", 1) for _ in range(6))
            base_url, token = lines["base_url"], lines["token"]
            client_id, client_secret = lines["oauth client"].split()
            with httpx.Client(base_url=base_url, timeout=10) as client:
                bearer = {"Authorization": f"Bearer {token}"}
                first = client.get("/repositories/acme", headers=bearer)
                client.get("/user", headers=bearer)
                refused = client.get(f"/user?access_token={token}", headers=bearer)
                refreshed = client.post(
                    lines["oauth token url"],
                    data={
                        "grant_type": "refresh_token",
                        "refresh_token": lines["oauth refresh token"],
                    },
                    auth=(client_id, client_secret),
                )
                oauth = {"Authorization": f"Bearer {refreshed.json()['access_token']}"}
                as_consumer = client.get("/user", headers=oauth)
        finally:
            server.terminate()
            _, err = server.communicate(timeout=10)
    assert first.headers["X-RateLimit-Limit"] == "2"
    assert (refused.status_code, refused.headers["Content-Type"]) == (
        429,
        "application/json; charset=utf-8",
    )
    assert refused.json()["error"]["message"] == "Rate limit for this resource has been exceeded"
    assert (refreshed.status_code, as_consumer.status_code) == (200, 200)
    log = err.splitlines()
    assert log[:5] == [
        "GET /2.0/repositories/acme 200 access-token",
        "GET /2.0/user 200 access-token",
        "GET /2.0/user?access_token=[redacted] 429 access-token",
        "POST /site/oauth2/access_token 200 consumer",
        "GET /2.0/user 200 consumer",
    ]
    assert token not in err
    assert client_secret not in err
