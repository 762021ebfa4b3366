"""bb-backoff: a flag-aware Bitbucket Cloud client with jittered exponential backoff.

Every API call goes through a retry loop.  With the feature flag
``bitbucket_importer_exponential_backoff`` on for the client's actor, the loop
is a jittered exponential backoff that honours 429s and ``Retry-After``; with
it off, the legacy fixed retry.  See the docs for the policies and the flag.
"""

from ._auth import TOKEN_URL, BasicAuth, BearerToken, OAuth2, OAuth2Tokens
from ._client import DEFAULT_BASE_URL, AsyncBitbucketClient, BitbucketClient
from ._events import OnRetry, RetryEvent
from ._exceptions import (
    BitbucketError,
    HTTPStatusError,
    InvalidResponse,
    NotFound,
    PaginationError,
    RateLimited,
    RetriesExhausted,
    Unauthorized,
    UnsafeURL,
)
from ._flags import FLAG_NAME, FlagSource, FlagStoreError, FlipperFlag, StaticFlag
from ._gate import AccountGate, GateStore, MemoryStore
from ._hints import Hint, hint_from_headers, parse_ratelimit_reset, parse_retry_after
from ._pagination import Page, flag_variant_of
from ._policy import (
    GITLAB_16_7,
    Decision,
    ExponentialBackoff,
    FixedRetry,
    Outcome,
    Reason,
    RetryHistory,
    RetryPolicy,
    ScheduleRow,
    StopReason,
    classify,
)
from ._redis import RedisStore
from ._tenacity import TenacityStrategies
from ._transport import RetryTransport
from ._version import __version__

__all__ = [
    "DEFAULT_BASE_URL",
    "FLAG_NAME",
    "GITLAB_16_7",
    "TOKEN_URL",
    "AccountGate",
    "AsyncBitbucketClient",
    "BasicAuth",
    "BearerToken",
    "BitbucketClient",
    "BitbucketError",
    "Decision",
    "ExponentialBackoff",
    "FixedRetry",
    "FlagSource",
    "FlagStoreError",
    "FlipperFlag",
    "GateStore",
    "HTTPStatusError",
    "Hint",
    "InvalidResponse",
    "MemoryStore",
    "NotFound",
    "OAuth2",
    "OAuth2Tokens",
    "OnRetry",
    "Outcome",
    "Page",
    "PaginationError",
    "RateLimited",
    "Reason",
    "RedisStore",
    "RetriesExhausted",
    "RetryEvent",
    "RetryHistory",
    "RetryPolicy",
    "RetryTransport",
    "ScheduleRow",
    "StaticFlag",
    "StopReason",
    "TenacityStrategies",
    "Unauthorized",
    "UnsafeURL",
    "__version__",
    "classify",
    "flag_variant_of",
    "hint_from_headers",
    "parse_ratelimit_reset",
    "parse_retry_after",
]
