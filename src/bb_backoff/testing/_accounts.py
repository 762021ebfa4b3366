"""Who is calling: the mock's credentials, the principals they stand for, and OAuth.

The mock issues its own credentials from its seed: a workspace access token
(Bearer, answered by a bot account), the user's email and API token (HTTP
basic), and an OAuth consumer with a refresh token that rotates on every
use and access tokens that live 7,200 s.  :meth:`Accounts.authenticate`
maps an ``Authorization`` header to the :class:`Principal` whose rate window
the request counts against; :meth:`Accounts.token_endpoint` answers
``POST /site/oauth2/access_token``.

Not thread-safe on its own: :class:`~bb_backoff.testing.MockBitbucket`
calls it under its lock.
"""

from __future__ import annotations

import base64
import random
import string
from collections.abc import Callable, Mapping
from typing import Final
from urllib.parse import parse_qsl

import attrs

from .._auth import OAuth2, OAuth2Tokens
from .._timing import Clock
from ._dataset import Account, Dataset
from ._replies import MockReply, error_reply, json_reply

ACCESS_TOKEN_PRINCIPAL: Final = "access-token"  # noqa: S105 (a label, not a secret)
"""The :attr:`MockCounters.per_principal` key of the workspace access token."""
OAUTH_TOKEN_LIFETIME: Final = 7200.0
"""Seconds an OAuth access token lives."""
EXPIRED_MESSAGE: Final = (
    "Access token expired. Use your refresh token to obtain a new access token."
)
"""The 401 message for an expired OAuth access token."""
STATUS_UNAUTHORIZED: Final = 401
_SCOPES: Final = "account repository pullrequest issue"
_SECRET_ALPHABET: Final = string.ascii_letters + string.digits


@attrs.frozen
class Principal:
    """Whom a request counts against: its rate-window key and the account it acts as.

    Attributes:
        key: ``"access-token"``, ``"user:<email>"`` or ``"consumer:<client_id>"``.
        account: the account ``/user`` answers with.
        is_access_token: the workspace access token (it gets token headers).
    """

    key: str
    account: Account
    is_access_token: bool = False

    @property
    def kind(self) -> str:
        """The key without its identifier, safe to log: ``"access-token"``, ``"user"``, ..."""
        return self.key.partition(":")[0]


def basic_credentials(authorization: str) -> tuple[str | None, str | None]:
    """The user and password of an HTTP basic ``Authorization`` value, or ``(None, None)``."""
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    # binascii.Error and UnicodeDecodeError, and the ValueError of a value
    # that is not ASCII ("Basic \xe9"): no credentials, 401, never a 500.
    except ValueError:
        return None, None
    user, separator, password = decoded.partition(":")
    return (user, password) if separator else (None, None)


def _unauthorized() -> MockReply:
    return error_reply(
        STATUS_UNAUTHORIZED,
        "Invalid or missing credentials",
        ("WWW-Authenticate", 'Basic realm="Bitbucket.org HTTP"'),
    )


class Accounts:
    """The credentials the mock issues from its seed, and the OAuth consumer's token state.

    Args:
        dataset: the workspace; its user is the one the API token and OAuth act as.
        seed: seeds the credentials (a stream of its own, apart from the
            dataset's and the faults').
        clock: monotonic seconds; times OAuth token expiry.
        now: epoch seconds; for :attr:`oauth_expires_at`.
    """

    def __init__(self, dataset: Dataset, seed: int, clock: Clock, now: Clock) -> None:
        self._rng = random.Random(f"credentials:{seed}")  # noqa: S311 (fake credentials)
        self._clock = clock
        self._now = now
        self.user: Final = dataset.user
        self.access_token: Final = "ATCTT3xFfGN0" + self._secret(48)
        self.email: Final = f"{dataset.user.nickname}@example.com"
        self.api_token: Final = "ATATT3xFfGF0" + self._secret(48)
        self.client_id: Final = self._secret(18)
        self.client_secret: Final = self._secret(32)
        workspace = dataset.workspace
        # /user with the access token answers with the token's bot account.
        self.bot: Final = Account(
            account_id=f"557058:{self._secret(32)}",
            uuid="{" + self._secret(32) + "}",
            display_name=f"{workspace} access token",
            nickname=f"{workspace}-access-token",
        )
        self._refresh_token = self._secret(40)
        self._spent_refresh_tokens: set[str] = set()
        # An OAuth access token works until it expires, refreshed or not.
        self._oauth_issued: dict[str, float] = {}
        self._oauth_access_token = ""
        self._oauth_expires_at = 0.0
        self._issue_oauth_access_token()

    def _secret(self, length: int) -> str:
        return "".join(self._rng.choice(_SECRET_ALPHABET) for _ in range(length))

    def _issue_oauth_access_token(self) -> None:
        token = self._secret(64)
        issued = self._clock()
        horizon = issued - OAUTH_TOKEN_LIFETIME
        self._oauth_issued = {t: at for t, at in self._oauth_issued.items() if at > horizon}
        self._oauth_issued[token] = issued
        self._oauth_access_token = token
        self._oauth_expires_at = self._now() + OAUTH_TOKEN_LIFETIME

    @property
    def refresh_token(self) -> str:
        """The OAuth refresh token that works now."""
        return self._refresh_token

    @property
    def oauth_access_token(self) -> str:
        """The newest OAuth access token."""
        return self._oauth_access_token

    @property
    def oauth_expires_at(self) -> float:
        """When :attr:`oauth_access_token` expires, in epoch seconds."""
        return self._oauth_expires_at

    def oauth2(self, on_refresh: Callable[[OAuth2Tokens], object] | None, token_url: str) -> OAuth2:
        """The OAuth consumer with its current tokens, as client credentials."""
        return OAuth2(
            client_id=self.client_id,
            client_secret=self.client_secret,
            refresh_token=self._refresh_token,
            access_token=self._oauth_access_token,
            expires_at=self._oauth_expires_at,
            token_url=token_url,
            on_refresh=on_refresh,
        )

    def authenticate(self, headers: Mapping[str, str], monotonic: float) -> Principal | MockReply:
        """The principal behind the (lower-cased) ``headers``, or the 401 to answer."""
        authorization = headers.get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() == "bearer":
            if token == self.access_token:
                return Principal(ACCESS_TOKEN_PRINCIPAL, self.bot, is_access_token=True)
            issued = self._oauth_issued.get(token)
            if issued is not None:
                if monotonic - issued >= OAUTH_TOKEN_LIFETIME:
                    return error_reply(STATUS_UNAUTHORIZED, EXPIRED_MESSAGE)
                return Principal(f"consumer:{self.client_id}", self.user)
        elif basic_credentials(authorization) == (self.email, self.api_token):
            return Principal(f"user:{self.email}", self.user)
        return _unauthorized()

    def token_endpoint(self, method: str, headers: Mapping[str, str], body: bytes) -> MockReply:
        """Answer a request to the OAuth token endpoint; a 200 is a refresh, and rotates.

        A reply to the consumer's own client credentials says so
        (``principal="consumer"``); a 405 or a 401 was nobody's.
        """
        reply = self._token_reply(method, headers, body)
        if reply.status in {405, STATUS_UNAUTHORIZED}:
            return reply
        return attrs.evolve(reply, principal="consumer")

    def _token_reply(self, method: str, headers: Mapping[str, str], body: bytes) -> MockReply:
        if method != "POST":
            return json_reply(
                405,
                {"error": "invalid_request", "error_description": "Use POST"},
                ("Allow", "POST"),
            )
        client = basic_credentials(headers.get("authorization", ""))
        if client != (self.client_id, self.client_secret):
            return json_reply(
                STATUS_UNAUTHORIZED,
                {
                    "error": "invalid_client",
                    "error_description": "Invalid OAuth client credentials",
                },
            )
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        if form.get("grant_type") != "refresh_token":
            return json_reply(
                400,
                {
                    "error": "unsupported_grant_type",
                    "error_description": "The mock supports grant_type=refresh_token only",
                },
            )
        presented = form.get("refresh_token", "")
        if presented != self._refresh_token:
            description = (
                "Refresh token already used: refresh tokens rotate on every refresh"
                if presented in self._spent_refresh_tokens
                else "Invalid refresh_token"
            )
            return json_reply(400, {"error": "invalid_grant", "error_description": description})
        self._spent_refresh_tokens.add(presented)
        self._refresh_token = self._secret(40)
        self._issue_oauth_access_token()
        return json_reply(
            200,
            {
                "access_token": self._oauth_access_token,
                "refresh_token": self._refresh_token,
                "expires_in": int(OAUTH_TOKEN_LIFETIME),
                "token_type": "bearer",
                "scopes": _SCOPES,
                "state": "refresh_token",
            },
        )
