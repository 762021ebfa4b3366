"""Credentials (``_auth.py``), exercised through the sync and async clients.

A fake Bitbucket serves both the API and the OAuth 2 token endpoint.  Like the
real one, it rotates refresh tokens: a refresh token works once, so a second
refresh with the same token is rejected with ``invalid_grant``.  Secrets all
contain ``SECRET`` so a leak is easy to spot in a ``repr`` or a message.
"""

from __future__ import annotations

import asyncio
import base64
import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx

from bb_backoff import (
    DEFAULT_BASE_URL,
    TOKEN_URL,
    AccountGate,
    AsyncBitbucketClient,
    BasicAuth,
    BearerToken,
    BitbucketClient,
    MemoryStore,
    OAuth2,
    OAuth2Tokens,
    Unauthorized,
    UnsafeURL,
)
from bb_backoff._gate import account_key
from bb_backoff._window import MODEL
from bb_backoff.testing import VirtualClock, run_virtual

USER_URL = f"{DEFAULT_BASE_URL}/user"
EVIL_URL = "https://evil.example/steal"

CLIENT_ID = "consumer-key"
CLIENT_SECRET = "client-SECRET-value"
BEARER = "bearer-SECRET-token"
EMAIL = "dev@example.com"
API_TOKEN = "api-SECRET-token"
EXPIRED_BODY = {
    "type": "error",
    "error": {"message": "Access token expired. Use your refresh token to obtain a new one."},
}
ACCESS_LIFETIME = 7_200


def access(generation: int) -> str:
    return f"access-SECRET-{generation}"


def refresh(generation: int) -> str:
    return f"refresh-SECRET-{generation}"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def streamed(response: httpx.Response) -> httpx.Response:
    """The same response with an unread body, as a network transport returns it."""
    return httpx.Response(
        response.status_code,
        headers=response.headers,
        stream=httpx.ByteStream(response.content),
    )


class FakeBitbucket:
    """The API (``/2.0/user``) and the token endpoint, with rotating refresh tokens.

    Generation 1 is the pair the client starts with; its access token is
    already expired on the server, so a request with it gets a 401 "expired".
    """

    def __init__(self, clock: VirtualClock, *, stream_bodies: bool = False) -> None:
        self.clock = clock
        self.stream_bodies = stream_bodies
        self.lock = threading.Lock()
        self.generation = 1
        self.valid_access: str | None = None
        self.reject_every_token = False
        self.refreshes: list[dict[str, list[str]]] = []
        self.refresh_headers: list[str | None] = []
        self.rejected_refreshes = 0
        self.api_authorizations: list[str | None] = []
        # Concurrency tests set ``callers``: the token endpoint then holds its answer
        # until that many threads (or tasks) have read the clock, i.e. have checked
        # the token's expiry and are queueing for the refresh.  Without a lock in
        # the client they would all reach this endpoint and spend the same token.
        self.callers = 0
        self.clock_readers: set[object] = set()
        self.arrived = threading.Condition()

    def now(self) -> float:
        """The client's ``now``: epoch seconds, recording who asked."""
        try:
            reader: object = asyncio.current_task()
        except RuntimeError:  # no event loop: a thread of the sync client
            reader = None
        with self.arrived:
            self.clock_readers.add(reader or threading.get_ident())
            self.arrived.notify_all()
        return self.clock.time()

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url == httpx.URL(TOKEN_URL):
            with self.arrived:
                self.arrived.wait_for(lambda: len(self.clock_readers) >= self.callers, timeout=5)
        return self._respond(request)

    async def async_handle(self, request: httpx.Request) -> httpx.Response:
        if request.url == httpx.URL(TOKEN_URL):
            for _ in range(1_000):  # let the other tasks reach the refresh
                if len(self.clock_readers) >= self.callers:
                    break
                await asyncio.sleep(0)
        return self._respond(request)

    def _respond(self, request: httpx.Request) -> httpx.Response:
        response = self._route(request)
        return streamed(response) if self.stream_bodies else response

    def _route(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            if request.url == httpx.URL(TOKEN_URL):
                return self._token(request)
            if request.url == httpx.URL(USER_URL):
                return self._user(request)
        return httpx.Response(599, text=f"unexpected {request.method} {request.url}")

    def _token(self, request: httpx.Request) -> httpx.Response:
        form = parse_qs(request.content.decode())
        self.refreshes.append(form)
        self.refresh_headers.append(request.headers.get("Authorization"))
        if request.method != "POST" or form.get("grant_type") != ["refresh_token"]:
            return httpx.Response(400, json={"error": "unsupported_grant_type"})
        if request.headers.get("Authorization") != basic(CLIENT_ID, CLIENT_SECRET):
            return httpx.Response(401, json={"error": "invalid_client"})
        if form.get("refresh_token") != [refresh(self.generation)]:
            self.rejected_refreshes += 1
            return httpx.Response(
                400, json={"error": "invalid_grant", "error_description": "Invalid refresh_token"}
            )
        self.generation += 1
        self.valid_access = access(self.generation)
        return httpx.Response(
            200,
            json={
                "access_token": access(self.generation),
                "refresh_token": refresh(self.generation),
                "expires_in": ACCESS_LIFETIME,
                "token_type": "bearer",
            },
        )

    def _user(self, request: httpx.Request) -> httpx.Response:
        authorization = request.headers.get("Authorization")
        self.api_authorizations.append(authorization)
        if self.reject_every_token or authorization != f"Bearer {self.valid_access}":
            return httpx.Response(401, json=EXPIRED_BODY)
        return httpx.Response(200, json={"username": "dev"})


def oauth2(
    clock: VirtualClock,
    rotated: list[OAuth2Tokens] | None = None,
    *,
    expires_in: float | None = -10.0,
    refresh_token: str = refresh(1),
) -> OAuth2:
    """OAuth 2 credentials at generation 1, expiring ``expires_in`` s from now (by ``clock``)."""
    return OAuth2(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        refresh_token=refresh_token,
        access_token=access(1),
        expires_at=None if expires_in is None else clock.time() + expires_in,
        on_refresh=None if rotated is None else rotated.append,
    )


def sync_client(
    auth: Any,
    clock: VirtualClock,
    handler: Callable[[httpx.Request], httpx.Response],
    now: Callable[[], float] | None = None,
) -> BitbucketClient:
    return BitbucketClient(
        auth=auth,
        transport=httpx.MockTransport(handler),
        clock=clock.monotonic,
        now=now or clock.time,
        sleep=clock.sleep,
    )


def async_client(
    auth: Any,
    clock: VirtualClock,
    handler: Callable[..., Any],
    now: Callable[[], float] | None = None,
) -> AsyncBitbucketClient:
    return AsyncBitbucketClient(
        auth=auth,
        transport=httpx.MockTransport(handler),
        clock=clock.monotonic,
        now=now or clock.time,
        sleep=clock.sleep,
    )


# -- static credentials ----------------------------------------------------------


def user_route() -> tuple[respx.Router, respx.Route]:
    router = respx.Router(assert_all_called=False)
    route = router.get(USER_URL).mock(return_value=httpx.Response(200, json={"username": "dev"}))
    return router, route


def test_sync_bearer_token_is_sent_as_authorization_bearer() -> None:
    router, route = user_route()
    with sync_client(BearerToken(BEARER), VirtualClock(), router.handler) as client:
        assert client.get("/user") == {"username": "dev"}
    assert route.calls.last.request.headers["Authorization"] == f"Bearer {BEARER}"


@pytest.mark.anyio
async def test_async_bearer_token_is_sent_as_authorization_bearer() -> None:
    router, route = user_route()
    async with async_client(BearerToken(BEARER), VirtualClock(), router.async_handler) as client:
        assert await client.get("/user") == {"username": "dev"}
    assert route.calls.last.request.headers["Authorization"] == f"Bearer {BEARER}"


def test_sync_basic_auth_sends_email_and_api_token() -> None:
    router, route = user_route()
    with sync_client(BasicAuth(EMAIL, API_TOKEN), VirtualClock(), router.handler) as client:
        client.get("/user")
    assert route.calls.last.request.headers["Authorization"] == basic(EMAIL, API_TOKEN)


@pytest.mark.anyio
async def test_async_basic_auth_sends_email_and_api_token() -> None:
    router, route = user_route()
    auth = BasicAuth(EMAIL, API_TOKEN)
    async with async_client(auth, VirtualClock(), router.async_handler) as client:
        await client.get("/user")
    assert route.calls.last.request.headers["Authorization"] == basic(EMAIL, API_TOKEN)


def test_basic_auth_header_is_base64_of_email_colon_token() -> None:
    expected = "Basic " + base64.b64encode(b"dev@example.com:api-SECRET-token").decode()
    assert BasicAuth(EMAIL, API_TOKEN).authorization() == expected
    assert BearerToken(BEARER).authorization() == "Bearer bearer-SECRET-token"


# -- secrets stay out of reprs ------------------------------------------------------


def all_credentials() -> list[object]:
    return [
        BearerToken(BEARER),
        BasicAuth(EMAIL, API_TOKEN),
        OAuth2(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            refresh_token=refresh(1),
            access_token=access(1),
            expires_at=123.0,
        ),
        OAuth2Tokens(access(1), refresh(1), 123.0),
    ]


@pytest.mark.parametrize("credentials", all_credentials(), ids=type)
def test_repr_of_credentials_never_shows_a_secret(credentials: object) -> None:
    text = repr(credentials)
    assert "SECRET" not in text
    assert "'***'" in text


def test_repr_keeps_the_non_secret_parts_for_debugging() -> None:
    assert (
        repr(BasicAuth(EMAIL, API_TOKEN)) == "BasicAuth(email='dev@example.com', api_token='***')"
    )
    assert repr(OAuth2Tokens(access(1), refresh(1), 5.0)) == (
        "OAuth2Tokens(access_token='***', refresh_token='***', expires_at=5.0)"
    )
    assert CLIENT_ID in repr(all_credentials()[2])


@pytest.mark.parametrize("credentials", all_credentials()[:3], ids=type)
@pytest.mark.parametrize("client_class", [BitbucketClient, AsyncBitbucketClient])
def test_repr_of_clients_never_shows_a_secret(credentials: Any, client_class: type[Any]) -> None:
    client = client_class(auth=credentials)
    assert "SECRET" not in repr(client)
    assert repr(client).startswith(f"{client_class.__name__}(base_url=")


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: BearerToken(""), "token"),
        (lambda: BasicAuth("", API_TOKEN), "email"),
        (lambda: BasicAuth(EMAIL, ""), "api_token"),
        (lambda: OAuth2(client_id="", client_secret="s", refresh_token="r"), "client_id"),
        (lambda: OAuth2(client_id="c", client_secret="", refresh_token="r"), "client_secret"),
        (lambda: OAuth2(client_id="c", client_secret="s", refresh_token=""), "refresh_token"),
        (lambda: BearerToken(None), "token"),  # type: ignore[arg-type]
    ],
    ids=["bearer", "email", "api_token", "client_id", "client_secret", "refresh_token", "none"],
)
def test_empty_secrets_raise_value_error_naming_the_field(
    make: Callable[[], object], field: str
) -> None:
    with pytest.raises(ValueError, match=rf"^{field} must be a non-empty string"):
        make()


# -- OAuth 2: refresh before the request when expired ----------------------------------


def assert_one_rotation(
    fake: FakeBitbucket, rotated: list[OAuth2Tokens], clock: VirtualClock
) -> None:
    """Exactly one refresh, done right, and the rotated pair handed to ``on_refresh``."""
    assert fake.refreshes == [{"grant_type": ["refresh_token"], "refresh_token": [refresh(1)]}]
    assert fake.refresh_headers == [basic(CLIENT_ID, CLIENT_SECRET)]
    assert fake.rejected_refreshes == 0
    assert [(t.access_token, t.refresh_token, t.expires_at) for t in rotated] == [
        (access(2), refresh(2), clock.time() + ACCESS_LIFETIME)
    ]


def test_sync_expired_access_token_is_refreshed_before_the_request() -> None:
    clock = VirtualClock()
    fake = FakeBitbucket(clock)
    rotated: list[OAuth2Tokens] = []
    auth = oauth2(clock, rotated)
    with sync_client(auth, clock, fake.handle) as client:
        assert client.get("/user") == {"username": "dev"}
    assert_one_rotation(fake, rotated, clock)
    assert fake.api_authorizations == [f"Bearer {access(2)}"]  # the stale token never went out
    assert auth.tokens.refresh_token == refresh(2)


@pytest.mark.anyio
async def test_async_expired_access_token_is_refreshed_before_the_request() -> None:
    clock = VirtualClock()
    fake = FakeBitbucket(clock)
    rotated: list[OAuth2Tokens] = []
    auth = oauth2(clock, rotated)
    async with async_client(auth, clock, fake.async_handle) as client:
        assert await client.get("/user") == {"username": "dev"}
    assert_one_rotation(fake, rotated, clock)
    assert fake.api_authorizations == [f"Bearer {access(2)}"]
    assert auth.tokens.refresh_token == refresh(2)


def test_sync_token_within_the_margin_is_refreshed_and_a_fresh_one_is_not() -> None:
    clock = VirtualClock()
    fake = FakeBitbucket(clock)
    fake.valid_access = access(1)
    with sync_client(oauth2(clock, expires_in=3_600), clock, fake.handle) as client:
        client.get("/user")
    assert (fake.refreshes, fake.api_authorizations) == ([], [f"Bearer {access(1)}"])
    with sync_client(oauth2(clock, expires_in=30), clock, fake.handle) as client:
        client.get("/user")  # 30 s left is inside the 60 s margin
    assert len(fake.refreshes) == 1
    assert fake.api_authorizations[-1] == f"Bearer {access(2)}"


@pytest.mark.anyio
async def test_async_token_within_the_margin_is_refreshed_and_a_fresh_one_is_not() -> None:
    clock = VirtualClock()
    fake = FakeBitbucket(clock)
    fake.valid_access = access(1)
    async with async_client(oauth2(clock, expires_in=3_600), clock, fake.async_handle) as client:
        await client.get("/user")
    assert (fake.refreshes, fake.api_authorizations) == ([], [f"Bearer {access(1)}"])
    async with async_client(oauth2(clock, expires_in=30), clock, fake.async_handle) as client:
        await client.get("/user")
    assert len(fake.refreshes) == 1
    assert fake.api_authorizations[-1] == f"Bearer {access(2)}"


def test_sync_refreshed_token_is_reused_until_it_expires_again() -> None:
    clock = VirtualClock()
    fake = FakeBitbucket(clock)
    rotated: list[OAuth2Tokens] = []
    with sync_client(oauth2(clock, rotated), clock, fake.handle) as client:
        client.get("/user")
        client.get("/user")
        clock.advance(ACCESS_LIFETIME)
        client.get("/user")
    assert [t.access_token for t in rotated] == [access(2), access(3)]
    assert fake.api_authorizations == [f"Bearer {access(n)}" for n in (2, 2, 3)]


@pytest.mark.anyio
async def test_async_refreshed_token_is_reused_until_it_expires_again() -> None:
    clock = VirtualClock()
    fake = FakeBitbucket(clock)
    rotated: list[OAuth2Tokens] = []
    async with async_client(oauth2(clock, rotated), clock, fake.async_handle) as client:
        await client.get("/user")
        await client.get("/user")
        clock.advance(ACCESS_LIFETIME)
        await client.get("/user")
    assert [t.access_token for t in rotated] == [access(2), access(3)]
    assert fake.api_authorizations == [f"Bearer {access(n)}" for n in (2, 2, 3)]


# -- OAuth 2: a 401 "expired" ----------------------------------------------------------


def test_sync_401_access_token_expired_refreshes_once_and_resends_once() -> None:
    clock = VirtualClock()
    fake = FakeBitbucket(clock)
    rotated: list[OAuth2Tokens] = []
    with sync_client(oauth2(clock, rotated, expires_in=None), clock, fake.handle) as client:
        assert client.get("/user") == {"username": "dev"}
    assert_one_rotation(fake, rotated, clock)
    assert fake.api_authorizations == [f"Bearer {access(1)}", f"Bearer {access(2)}"]


@pytest.mark.anyio
async def test_async_401_access_token_expired_refreshes_once_and_resends_once() -> None:
    clock = VirtualClock()
    fake = FakeBitbucket(clock)
    rotated: list[OAuth2Tokens] = []
    auth = oauth2(clock, rotated, expires_in=None)
    async with async_client(auth, clock, fake.async_handle) as client:
        assert await client.get("/user") == {"username": "dev"}
    assert_one_rotation(fake, rotated, clock)
    assert fake.api_authorizations == [f"Bearer {access(1)}", f"Bearer {access(2)}"]


def test_sync_second_401_after_the_refresh_raises_unauthorized() -> None:
    clock = VirtualClock()
    fake = FakeBitbucket(clock)
    fake.reject_every_token = True
    with (
        sync_client(oauth2(clock, expires_in=None), clock, fake.handle) as client,
        pytest.raises(Unauthorized) as caught,
    ):
        client.get("/user")
    assert caught.value.status == 401
    assert (len(fake.refreshes), len(fake.api_authorizations)) == (1, 2)
    assert "SECRET" not in str(caught.value)


@pytest.mark.anyio
async def test_async_second_401_after_the_refresh_raises_unauthorized() -> None:
    clock = VirtualClock()
    fake = FakeBitbucket(clock)
    fake.reject_every_token = True
    async with async_client(oauth2(clock, expires_in=None), clock, fake.async_handle) as client:
        with pytest.raises(Unauthorized) as caught:
            await client.get("/user")
    assert caught.value.status == 401
    assert (len(fake.refreshes), len(fake.api_authorizations)) == (1, 2)
    assert "SECRET" not in str(caught.value)


def invalid_credentials(_request: httpx.Request) -> httpx.Response:
    return httpx.Response(401, json={"type": "error", "error": {"message": "Invalid credentials"}})


def test_sync_401_that_does_not_say_expired_raises_without_refreshing() -> None:
    clock = VirtualClock()
    auth = oauth2(clock, expires_in=None)
    with (
        sync_client(auth, clock, invalid_credentials) as client,
        pytest.raises(Unauthorized) as caught,
    ):
        client.get("/user")
    assert (caught.value.status, caught.value.error_message) == (401, "Invalid credentials")
    assert auth.tokens.refresh_token == refresh(1)


@pytest.mark.anyio
async def test_async_401_that_does_not_say_expired_raises_without_refreshing() -> None:
    clock = VirtualClock()
    auth = oauth2(clock, expires_in=None)
    async with async_client(auth, clock, invalid_credentials) as client:
        with pytest.raises(Unauthorized) as caught:
            await client.get("/user")
    assert (caught.value.status, caught.value.error_message) == (401, "Invalid credentials")
    assert auth.tokens.refresh_token == refresh(1)


# -- OAuth 2: a failed refresh ------------------------------------------------------------


def test_sync_failed_refresh_raises_unauthorized_without_secrets_and_sends_nothing() -> None:
    clock = VirtualClock()
    fake = FakeBitbucket(clock)
    rotated: list[OAuth2Tokens] = []
    auth = oauth2(clock, rotated, refresh_token="refresh-SECRET-already-spent")
    with sync_client(auth, clock, fake.handle) as client, pytest.raises(Unauthorized) as caught:
        client.get("/user")
    error = caught.value
    assert (error.status, error.error_message) == (400, "Invalid refresh_token")
    assert "SECRET" not in str(error)
    assert CLIENT_SECRET not in repr(error.args)
    assert (fake.rejected_refreshes, fake.api_authorizations, rotated) == (1, [], [])


@pytest.mark.anyio
async def test_async_failed_refresh_raises_unauthorized_without_secrets_and_sends_nothing() -> None:
    clock = VirtualClock()
    fake = FakeBitbucket(clock)
    rotated: list[OAuth2Tokens] = []
    auth = oauth2(clock, rotated, refresh_token="refresh-SECRET-already-spent")
    async with async_client(auth, clock, fake.async_handle) as client:
        with pytest.raises(Unauthorized) as caught:
            await client.get("/user")
    error = caught.value
    assert (error.status, error.error_message) == (400, "Invalid refresh_token")
    assert "SECRET" not in str(error)
    assert CLIENT_SECRET not in repr(error.args)
    assert (fake.rejected_refreshes, fake.api_authorizations, rotated) == (1, [], [])


# -- OAuth 2: concurrency ---------------------------------------------------------------


CONCURRENT_CASES = [-10.0, None]
CONCURRENT_IDS = ["expired-by-clock", "401-expired"]


@pytest.mark.parametrize("expires_in", CONCURRENT_CASES, ids=CONCURRENT_IDS)
def test_sync_eight_threads_with_an_expired_token_cause_exactly_one_refresh(
    expires_in: float | None,
) -> None:
    clock = VirtualClock()
    fake = FakeBitbucket(clock)
    rotated: list[OAuth2Tokens] = []
    fake.callers = 8
    start = threading.Barrier(8)
    auth = oauth2(clock, rotated, expires_in=expires_in)

    with sync_client(auth, clock, fake.handle, now=fake.now) as client:

        def fetch() -> Any:
            start.wait()
            return client.get("/user")

        with ThreadPoolExecutor(max_workers=8) as pool:
            futures = [pool.submit(fetch) for _ in range(8)]
            results = [future.result() for future in futures]

    assert results == [{"username": "dev"}] * 8
    assert_one_rotation(fake, rotated, clock)
    assert fake.api_authorizations.count(f"Bearer {access(2)}") == 8


@pytest.mark.anyio
@pytest.mark.parametrize("expires_in", CONCURRENT_CASES, ids=CONCURRENT_IDS)
async def test_async_eight_tasks_with_an_expired_token_cause_exactly_one_refresh(
    expires_in: float | None,
) -> None:
    clock = VirtualClock()
    fake = FakeBitbucket(clock)
    rotated: list[OAuth2Tokens] = []
    fake.callers = 8
    auth = oauth2(clock, rotated, expires_in=expires_in)
    async with async_client(auth, clock, fake.async_handle, now=fake.now) as client:
        results = await asyncio.gather(*(client.get("/user") for _ in range(8)))
    assert results == [{"username": "dev"}] * 8
    assert_one_rotation(fake, rotated, clock)
    assert fake.api_authorizations.count(f"Bearer {access(2)}") == 8


# -- OAuth 2 over a network-like transport ----------------------------------------------


@pytest.mark.parametrize("expires_in", [-10.0, None], ids=["expired-by-clock", "401-expired"])
def test_sync_refresh_works_when_bodies_arrive_unread_as_from_a_network(
    expires_in: float | None,
) -> None:
    """A real transport hands the auth flow unread responses; the flow must read them."""
    clock = VirtualClock()
    fake = FakeBitbucket(clock, stream_bodies=True)
    rotated: list[OAuth2Tokens] = []
    with sync_client(oauth2(clock, rotated, expires_in=expires_in), clock, fake.handle) as client:
        assert client.get("/user") == {"username": "dev"}
    assert_one_rotation(fake, rotated, clock)


@pytest.mark.anyio
@pytest.mark.parametrize("expires_in", [-10.0, None], ids=["expired-by-clock", "401-expired"])
async def test_async_refresh_works_when_bodies_arrive_unread_as_from_a_network(
    expires_in: float | None,
) -> None:
    """A real transport hands the auth flow unread responses; the flow must read them."""
    clock = VirtualClock()
    fake = FakeBitbucket(clock, stream_bodies=True)
    rotated: list[OAuth2Tokens] = []
    auth = oauth2(clock, rotated, expires_in=expires_in)
    async with async_client(auth, clock, fake.async_handle) as client:
        assert await client.get("/user") == {"username": "dev"}
    assert_one_rotation(fake, rotated, clock)


# -- credentials never leave the API's origin --------------------------------------------


def fresh_oauth2() -> OAuth2:
    """OAuth 2 credentials that need no refresh (so the token endpoint stays unused)."""
    return OAuth2(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        refresh_token=refresh(1),
        access_token=access(1),
    )


AUTHS: list[Callable[[], Any]] = [
    lambda: BearerToken(BEARER),
    lambda: BasicAuth(EMAIL, API_TOKEN),
    fresh_oauth2,
]
AUTH_IDS = ["bearer", "basic", "oauth2"]
AUTH_HEADERS = list(
    zip(AUTHS, [f"Bearer {BEARER}", basic(EMAIL, API_TOKEN), f"Bearer {access(1)}"], strict=True)
)


class OffOrigin:
    """A respx router with the API, a foreign host and the token endpoint, all recorded."""

    def __init__(self) -> None:
        self.router = respx.Router(assert_all_called=False)
        ok = httpx.Response(200, json={"stolen": True})
        self.evil = self.router.route(host="evil.example").mock(return_value=ok)
        self.token = self.router.route(host="bitbucket.org").mock(return_value=ok)

    def assert_nothing_sent_off_origin(self) -> None:
        assert (self.evil.call_count, self.token.call_count) == (0, 0)


REDIRECT_TARGETS = [EVIL_URL, TOKEN_URL, "http://api.bitbucket.org/2.0/user"]
REDIRECT_IDS = ["other-host", "token-endpoint", "plain-http"]


@pytest.mark.parametrize("make_auth", AUTHS, ids=AUTH_IDS)
def test_sync_next_link_to_another_host_raises_unsafe_url_and_is_not_followed(
    make_auth: Callable[[], Any],
) -> None:
    mock = OffOrigin()
    page = {"values": [1], "next": f"{EVIL_URL}?page=2"}
    mock.router.get(f"{DEFAULT_BASE_URL}/workspaces/acme/members").respond(json=page)
    with (
        sync_client(make_auth(), VirtualClock(), mock.router.handler) as client,
        pytest.raises(UnsafeURL) as caught,
    ):
        list(client.paginate("/workspaces/acme/members"))
    mock.assert_nothing_sent_off_origin()
    assert "SECRET" not in str(caught.value)


@pytest.mark.anyio
@pytest.mark.parametrize("make_auth", AUTHS, ids=AUTH_IDS)
async def test_async_next_link_to_another_host_raises_unsafe_url_and_is_not_followed(
    make_auth: Callable[[], Any],
) -> None:
    mock = OffOrigin()
    page = {"values": [1], "next": f"{EVIL_URL}?page=2"}
    mock.router.get(f"{DEFAULT_BASE_URL}/workspaces/acme/members").respond(json=page)
    async with async_client(make_auth(), VirtualClock(), mock.router.async_handler) as client:
        with pytest.raises(UnsafeURL) as caught:
            [item async for item in client.paginate("/workspaces/acme/members")]
    mock.assert_nothing_sent_off_origin()
    assert "SECRET" not in str(caught.value)


@pytest.mark.parametrize("target", REDIRECT_TARGETS, ids=REDIRECT_IDS)
@pytest.mark.parametrize("make_auth", AUTHS, ids=AUTH_IDS)
def test_sync_redirect_off_the_origin_raises_unsafe_url_and_is_not_followed(
    make_auth: Callable[[], Any], target: str
) -> None:
    mock = OffOrigin()
    plain = mock.router.get("http://api.bitbucket.org/2.0/user").respond(json={})
    mock.router.get(USER_URL).respond(302, headers={"Location": target})
    with (
        sync_client(make_auth(), VirtualClock(), mock.router.handler) as client,
        pytest.raises(UnsafeURL) as caught,
    ):
        client.get("/user")
    mock.assert_nothing_sent_off_origin()
    assert plain.call_count == 0
    assert "SECRET" not in str(caught.value)


@pytest.mark.anyio
@pytest.mark.parametrize("target", REDIRECT_TARGETS, ids=REDIRECT_IDS)
@pytest.mark.parametrize("make_auth", AUTHS, ids=AUTH_IDS)
async def test_async_redirect_off_the_origin_raises_unsafe_url_and_is_not_followed(
    make_auth: Callable[[], Any], target: str
) -> None:
    mock = OffOrigin()
    plain = mock.router.get("http://api.bitbucket.org/2.0/user").respond(json={})
    mock.router.get(USER_URL).respond(302, headers={"Location": target})
    async with async_client(make_auth(), VirtualClock(), mock.router.async_handler) as client:
        with pytest.raises(UnsafeURL) as caught:
            await client.get("/user")
    mock.assert_nothing_sent_off_origin()
    assert plain.call_count == 0
    assert "SECRET" not in str(caught.value)


@pytest.mark.parametrize("make_auth", AUTHS, ids=AUTH_IDS)
def test_sync_get_of_an_absolute_url_on_another_host_raises_unsafe_url(
    make_auth: Callable[[], Any],
) -> None:
    mock = OffOrigin()
    with sync_client(make_auth(), VirtualClock(), mock.router.handler) as client:
        with pytest.raises(UnsafeURL):
            client.get("https://evil.example/x")
        with pytest.raises(UnsafeURL):
            client.get("https://api.bitbucket.org.evil.example/2.0/user")
    mock.assert_nothing_sent_off_origin()


@pytest.mark.anyio
@pytest.mark.parametrize("make_auth", AUTHS, ids=AUTH_IDS)
async def test_async_get_of_an_absolute_url_on_another_host_raises_unsafe_url(
    make_auth: Callable[[], Any],
) -> None:
    mock = OffOrigin()
    async with async_client(make_auth(), VirtualClock(), mock.router.async_handler) as client:
        with pytest.raises(UnsafeURL):
            await client.get("https://evil.example/x")
        with pytest.raises(UnsafeURL):
            await client.get("https://api.bitbucket.org.evil.example/2.0/user")
    mock.assert_nothing_sent_off_origin()


@pytest.mark.parametrize(("make_auth", "header"), AUTH_HEADERS, ids=AUTH_IDS)
def test_sync_same_origin_redirect_is_followed_with_the_credentials(
    make_auth: Callable[[], Any], header: str
) -> None:
    router = respx.Router(assert_all_called=False)
    diff_url = f"{DEFAULT_BASE_URL}/repositories/acme/app/diff/abc"
    router.get(f"{DEFAULT_BASE_URL}/repositories/acme/app/pullrequests/1/diff").respond(
        302, headers={"Location": diff_url}
    )
    target = router.get(diff_url).respond(text="diff --git a/x b/x\n")
    auth = make_auth()
    with sync_client(auth, VirtualClock(), router.handler) as client:
        assert client.pull_request_diff("acme", "app", 1) == "diff --git a/x b/x\n"
    assert target.calls.last.request.headers["Authorization"] == header


@pytest.mark.anyio
@pytest.mark.parametrize(("make_auth", "header"), AUTH_HEADERS, ids=AUTH_IDS)
async def test_async_same_origin_redirect_is_followed_with_the_credentials(
    make_auth: Callable[[], Any], header: str
) -> None:
    router = respx.Router(assert_all_called=False)
    diff_url = f"{DEFAULT_BASE_URL}/repositories/acme/app/diff/abc"
    router.get(f"{DEFAULT_BASE_URL}/repositories/acme/app/pullrequests/1/diff").respond(
        302, headers={"Location": diff_url}
    )
    target = router.get(diff_url).respond(text="diff --git a/x b/x\n")
    auth = make_auth()
    async with async_client(auth, VirtualClock(), router.async_handler) as client:
        assert await client.pull_request_diff("acme", "app", 1) == "diff --git a/x b/x\n"
    assert target.calls.last.request.headers["Authorization"] == header


# -- the token endpoint misbehaving -----------------------------------------------------


def oauth(clock: VirtualClock, **options: Any) -> OAuth2:
    """Credentials whose access token expired a minute ago by the virtual clock (by default)."""
    options.setdefault("expires_at", clock.time() - 60)
    return OAuth2(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        refresh_token=refresh(1),
        access_token=access(1),
        **options,
    )


def token_answer(generation: int) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "access_token": access(generation),
            "refresh_token": refresh(generation),
            "expires_in": ACCESS_LIFETIME,
            "token_type": "bearer",
        },
    )


class Script:
    """Token-endpoint answers in order; the API answers 200 to the freshest token."""

    def __init__(self, *token_answers: httpx.Response, api: httpx.Response | None = None) -> None:
        self.token_answers = list(token_answers)
        self.api = api
        self.token_requests: list[httpx.Request] = []
        self.api_requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url == httpx.URL(TOKEN_URL):
            self.token_requests.append(request)
            return self.token_answers.pop(0)
        self.api_requests.append(request)
        return self.api or httpx.Response(200, json={"ok": True})


def run_both(
    kind: str, script: Script, clock: VirtualClock, credentials: OAuth2, **options: Any
) -> Any:
    """``get('/user')`` on the sync or the async client; returns the JSON."""
    common: dict[str, Any] = {
        "auth": credentials,
        "transport": httpx.MockTransport(script),
        "clock": clock.monotonic,
        "now": clock.time,
        "sleep": clock.sleep,
        **options,
    }
    if kind == "sync":
        with BitbucketClient(**common) as client:
            return client.get("/user")

    async def main() -> Any:
        async with AsyncBitbucketClient(**common) as client:
            return await client.get("/user")

    return asyncio.run(main())


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_the_refresh_request_carries_the_clients_timeout(kind: str) -> None:
    """Without one, a hung token endpoint would hold the refresh lock forever."""
    clock = VirtualClock()
    script = Script(token_answer(2))
    run_both(kind, script, clock, oauth(clock), timeout=12.5)
    assert script.token_requests[0].extensions["timeout"] == {
        "connect": 12.5,
        "read": 12.5,
        "write": 12.5,
        "pool": 12.5,
    }


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize(
    ("status", "headers"),
    # 507 and 520: any 5xx, as the API's (found by an independent probe).
    [(503, {}), (429, {"Retry-After": "30"}), (507, {}), (520, {})],
)
def test_a_transient_token_endpoint_failure_is_waited_out_not_unauthorized(
    kind: str, status: int, headers: dict[str, str]
) -> None:
    clock = VirtualClock()
    script = Script(httpx.Response(status, headers=headers), token_answer(2))
    assert run_both(kind, script, clock, oauth(clock)) == {"ok": True}
    assert len(script.token_requests) == 2
    assert len(clock.sleeps) == 1
    if status == 429:
        assert clock.sleeps == [30.0]
    assert script.api_requests[0].headers["Authorization"] == f"Bearer {access(2)}"


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("status", [429, 503])
def test_a_token_endpoint_failure_teaches_the_apis_gate_nothing(kind: str, status: int) -> None:
    """The token endpoint is another host with its own limits: its 429 is not the API's.

    Read as the API's, it taught the gate a limit of the sends made so far
    and held an import for up to an hour; and, with no ``Retry-After``, the
    request retried at once at the gate instead of backing off.
    """
    clock = VirtualClock()
    store = MemoryStore()
    script = Script(httpx.Response(status, text="Rate limit exceeded"), token_answer(2))
    credentials = oauth(clock)
    assert run_both(kind, script, clock, credentials, gate=AccountGate(store=store)) == {"ok": True}
    assert len(clock.sleeps) == 1
    assert clock.sleeps[0] > 0  # the policy's backoff, not a gate with nothing to say
    model = store.model(account_key(credentials, DEFAULT_BASE_URL))
    assert model is not None
    assert (model.mode, model.limit, model.hold_until) == (MODEL, None, 0.0)
    assert len(model.log) == 1  # the API request that went out; the refused one spent nothing
    assert model.errors == []
    assert model.failures == 0  # the success ended the run


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_refused_refresh_is_unauthorized_at_once(kind: str) -> None:
    clock = VirtualClock()
    script = Script(httpx.Response(400, json={"error": "invalid_grant"}))
    with pytest.raises(Unauthorized) as caught:
        run_both(kind, script, clock, oauth(clock))
    assert (len(script.token_requests), clock.sleeps) == (1, [])
    assert caught.value.error_message == "invalid_grant"
    assert caught.value.flag_variant == "on"


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_redirect_from_the_token_endpoint_never_carries_the_refresh_token_on(kind: str) -> None:
    clock = VirtualClock()
    moved = httpx.Response(307, headers={"Location": f"{DEFAULT_BASE_URL}/collect"})
    script = Script(moved)
    with pytest.raises(UnsafeURL, match="token endpoint only"):
        run_both(kind, script, clock, oauth(clock))
    assert script.api_requests == []


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_one_request_refreshes_at_most_once(kind: str) -> None:
    """Stale token refreshed, yet the API still says "expired": no second refresh, 401."""
    clock = VirtualClock()
    script = Script(token_answer(2), api=httpx.Response(401, json=EXPIRED_BODY))
    with pytest.raises(Unauthorized):
        run_both(kind, script, clock, oauth(clock))
    assert len(script.token_requests) == 1


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_one_request_refreshes_at_most_once_across_its_retries(kind: str) -> None:
    """503 and 401 "expired" in turn: the request's retries do not refresh again.

    Found by an independent probe: each retry ran the auth flow afresh, and
    one request rotated the tokens four times.
    """
    clock = VirtualClock()
    answers = iter([httpx.Response(503), httpx.Response(401, json=EXPIRED_BODY)] * 5)
    script = Script(*(token_answer(generation) for generation in range(2, 8)))
    script.api = None

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url == httpx.URL(TOKEN_URL):
            return script(request)
        script.api_requests.append(request)
        return next(answers)

    fresh = oauth(clock, expires_at=clock.time() + ACCESS_LIFETIME)
    with pytest.raises(Unauthorized):
        run_both(kind, script, clock, fresh, transport=httpx.MockTransport(handler))
    assert len(script.token_requests) == 1
    assert len(script.api_requests) == 4  # 503, 401: refresh; 503, 401: given up


def test_an_async_request_cancelled_during_its_refresh_leaves_the_rotated_tokens_stored() -> None:
    """The refresh finishes out of the cancelled request's reach; the next requests use it.

    Found by an independent probe: the answer was dropped with the request,
    and every later refresh sent the dead refresh token (``invalid_grant``).
    """
    clock = VirtualClock()
    stored: list[OAuth2Tokens] = []
    spent: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url == httpx.URL(TOKEN_URL):
            given = parse_qs(request.content.decode())["refresh_token"][0]
            if given in spent:
                return httpx.Response(400, json={"error": "invalid_grant"})
            spent.append(given)
            await asyncio.sleep(5.0)  # rotated on the server; the answer on its way
            return token_answer(len(spent) + 1)
        return httpx.Response(200, json={"ok": True})

    credentials = oauth(clock, on_refresh=stored.append)

    async def main() -> list[Any]:
        async with async_client(credentials, clock, handler) as client:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(client.get("/user"), 1.0)
            return list(await asyncio.gather(*(client.get("/user") for _ in range(3))))

    assert run_virtual(main(), clock) == [{"ok": True}] * 3
    assert spent == [refresh(1)]
    assert [tokens.refresh_token for tokens in stored] == [refresh(2)]
    assert credentials.tokens.refresh_token == refresh(2)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_401_whose_refresh_met_a_brief_failure_refreshes_when_tried_again(kind: str) -> None:
    """The request is marked as refreshed only once its refresh happened (found by a review)."""
    clock = VirtualClock()
    answers = iter([httpx.Response(401, json=EXPIRED_BODY)] * 2)
    script = Script(httpx.Response(503), token_answer(2))

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url == httpx.URL(TOKEN_URL):
            return script(request)
        script.api_requests.append(request)
        if request.headers["Authorization"] == f"Bearer {access(2)}":
            return httpx.Response(200, json={"ok": True})
        return next(answers)

    fresh = oauth(clock, expires_at=clock.time() + ACCESS_LIFETIME)
    assert run_both(kind, script, clock, fresh, transport=httpx.MockTransport(handler)) == {
        "ok": True
    }
    assert len(script.token_requests) == 2


def test_closing_an_async_client_waits_for_a_refresh_on_the_wire() -> None:
    """A job with a deadline: the loop ends right after; the rotated pair is stored first.

    Found by a review: asyncio.run cancels the tasks left, the refresh's too.
    """
    clock = VirtualClock()
    stored: list[OAuth2Tokens] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url == httpx.URL(TOKEN_URL):
            await asyncio.sleep(5.0)  # rotated on the server; the answer on its way
            return token_answer(2)
        return httpx.Response(200, json={"ok": True})

    credentials = oauth(clock, on_refresh=stored.append)

    async def job() -> None:
        async with async_client(credentials, clock, handler) as client:
            await client.get("/user")

    with pytest.raises(TimeoutError):
        run_virtual(asyncio.wait_for(job(), 1.0), clock)
    assert [tokens.refresh_token for tokens in stored] == [refresh(2)]
    assert credentials.tokens.refresh_token == refresh(2)


def test_one_oauth2_serves_clients_on_successive_event_loops() -> None:
    """An asyncio.Lock binds to its first loop; the credentials keep one per loop."""
    clock = VirtualClock()
    credentials = oauth(clock)
    script = Script(token_answer(2), token_answer(3))

    async def main() -> list[Any]:
        async with AsyncBitbucketClient(
            auth=credentials,
            transport=httpx.MockTransport(script),
            clock=clock.monotonic,
            now=clock.time,
        ) as client:
            return list(await asyncio.gather(*(client.get("/user") for _ in range(3))))

    assert asyncio.run(main()) == [{"ok": True}] * 3
    clock.advance(2 * ACCESS_LIFETIME)
    assert asyncio.run(main()) == [{"ok": True}] * 3
    assert len(script.token_requests) == 2


@pytest.mark.parametrize(
    "make",
    [
        lambda: BearerToken("bearer-SECRET-token\n"),
        lambda: BasicAuth(EMAIL, "api-SECRET-token "),
        lambda: OAuth2(client_id=CLIENT_ID, client_secret="x\tSECRET", refresh_token="r"),
    ],
)
def test_a_secret_with_whitespace_is_refused_without_echoing_it(make: Callable[[], object]) -> None:
    with pytest.raises(ValueError, match="whitespace or control characters") as caught:
        make()
    assert "SECRET" not in str(caught.value)


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"expires_at": "soon"}, "expires_at"),
        ({"margin": -1}, "margin"),
        ({"margin": True}, "margin"),
        # NaN never compared as expired; inf and a huge int failed on every request.
        ({"expires_at": math.nan}, "expires_at"),
        ({"expires_at": math.inf}, "expires_at"),
        ({"expires_at": -math.inf}, "expires_at"),
        ({"expires_at": 10**400}, "expires_at"),
        ({"expires_at": True}, "expires_at"),
        ({"margin": math.inf}, "margin"),
        ({"margin": math.nan}, "margin"),
        ({"margin": 10**5000}, "margin"),
        # Past half the token's 7,200 s life: 1e308 was taken, a token
        # always stale, refreshed before every request.
        ({"margin": 1e308}, "margin"),
        ({"margin": 7_200}, "margin"),
        ({"margin": 3_600.5}, "margin"),
    ],
)
def test_oauth2_validates_its_times(options: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        OAuth2(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token="r", **options)


@pytest.mark.parametrize(
    "make",
    [
        lambda: BearerToken("bearer-SECRET-tökén"),
        lambda: OAuth2(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            refresh_token="r",
            access_token="é-SECRET",
        ),
    ],
)
def test_a_token_that_cannot_go_in_a_header_is_refused_without_echoing_it(
    make: Callable[[], object],
) -> None:
    """httpx would otherwise fail later with a UnicodeEncodeError holding the whole header."""
    with pytest.raises(ValueError, match="must be ASCII") as caught:
        make()
    assert "SECRET" not in str(caught.value)


@pytest.mark.parametrize(
    "token_url",
    [
        "https://consumer:SECRET@bitbucket.org/site/oauth2/access_token",
        "not a url",
        "ftp://bitbucket.org/token",
        "https://xn--pi-7ld.bitbucket.org/token",  # punycode that is not valid IDNA
    ],
)
def test_a_token_url_with_credentials_or_no_http_is_refused_without_echoing_secrets(
    token_url: str,
) -> None:
    with pytest.raises(ValueError, match="token_url") as caught:
        OAuth2(
            client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token="r", token_url=token_url
        )
    assert "SECRET" not in str(caught.value)


def test_the_repr_of_oauth2_redacts_secrets_in_the_token_url_query() -> None:
    credentials = OAuth2(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        refresh_token="r",
        token_url="https://bitbucket.org/site/oauth2/access_token?client_secret=SECRET",
    )
    assert "SECRET" not in repr(credentials)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_an_on_refresh_that_raises_is_logged_and_the_request_goes_on(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    clock = VirtualClock()
    script = Script(token_answer(2))

    def store(tokens: OAuth2Tokens) -> None:
        # A storage error quoting what it was given (found by an independent probe).
        raise OSError(f"disk full: {tokens.refresh_token} {tokens.access_token}")

    credentials = oauth(clock, on_refresh=store)
    with caplog.at_level("ERROR", logger="bb_backoff"):
        assert run_both(kind, script, clock, credentials) == {"ok": True}
    assert credentials.tokens.access_token == access(2)
    assert any("on_refresh raised OSError: disk full" in r.getMessage() for r in caplog.records)
    assert "SECRET" not in caplog.text


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize(
    "body",
    [
        {"access_token": "tök-SECRET", "refresh_token": "r2", "expires_in": 7200},
        {"access_token": "a b", "refresh_token": "r2"},
        {"access_token": "ok-SECRET", "refresh_token": ["r2"], "expires_in": 7200},
        # (An unusable expires_in alone keeps the pair: see the test below.)
    ],
)
def test_a_refresh_answer_with_unusable_tokens_is_unauthorized_without_secrets(
    kind: str, body: dict[str, Any]
) -> None:
    clock = VirtualClock()
    script = Script(httpx.Response(200, json=body))
    with pytest.raises(Unauthorized, match="no usable access token") as caught:
        run_both(kind, script, clock, oauth(clock))
    assert "SECRET" not in str(caught.value)
    assert script.api_requests == []


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize(
    "expires_in",
    [
        '"7200s"',
        '"NaN"',
        '"inf"',
        "1e400",  # inf once parsed
        "[]",
        "{}",
        "true",
        "0",
        "-5",
        '"-7200"',
        "10" + "0" * 400,  # float() of it overflowed, raw (an independent probe)
        "9" * 5_000,  # past int()'s 4,300 digits: the whole answer was not JSON
    ],
)
def test_an_unusable_expires_in_keeps_the_rotated_pair_with_no_known_expiry(
    kind: str, expires_in: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The refresh token sent is spent once the endpoint answers (they rotate on every use).

    Refusing the whole answer for its ``expires_in`` threw the new pair away
    and left the spent token: every later refresh was ``invalid_grant``, the
    client locked out for good.  The pair is kept, stored through
    ``on_refresh``, and refreshed again only on a 401 "expired" (zero or
    less is not "refresh before every request").
    """
    clock = VirtualClock()
    stored: list[OAuth2Tokens] = []
    body = (
        f'{{"access_token": "{access(2)}", "refresh_token": "{refresh(2)}", '
        f'"expires_in": {expires_in}, "token_type": "bearer"}}'
    )
    answer = httpx.Response(200, content=body, headers={"Content-Type": "application/json"})
    script = Script(answer)
    credentials = oauth(clock, on_refresh=stored.append)
    with caplog.at_level("WARNING", logger="bb_backoff"):
        assert run_both(kind, script, clock, credentials) == {"ok": True}
        assert run_both(kind, script, clock, credentials) == {"ok": True}
    assert len(script.token_requests) == 1  # no refresh before the second request
    assert credentials.tokens == OAuth2Tokens(access(2), refresh(2), None)
    assert stored == [credentials.tokens]
    assert [request.headers["Authorization"] for request in script.api_requests] == [
        f"Bearer {access(2)}"
    ] * 2
    assert any("expires_in is not a positive number" in r.getMessage() for r in caplog.records)
    assert "SECRET" not in caplog.text


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize(("expires_in", "lifetime"), [("7200", 7200.0), ('"3600"', 3600.0)])
def test_a_usable_expires_in_sets_the_expiry_from_now(
    kind: str, expires_in: str, lifetime: float
) -> None:
    clock = VirtualClock()
    body = (
        f'{{"access_token": "{access(2)}", "refresh_token": "{refresh(2)}", '
        f'"expires_in": {expires_in}}}'
    )
    answer = httpx.Response(200, content=body, headers={"Content-Type": "application/json"})
    credentials = oauth(clock)
    assert run_both(kind, Script(answer), clock, credentials) == {"ok": True}
    assert credentials.tokens.expires_at == clock.time() + lifetime


@pytest.mark.parametrize("margin", [0, 60, 3_600])
def test_a_margin_up_to_half_an_access_tokens_life_is_taken(margin: float) -> None:
    credentials = OAuth2(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token="r", margin=margin
    )
    assert credentials._margin == margin
