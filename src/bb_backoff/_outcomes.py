"""What an attempt produced, as the policy sees it: one mapping for every caller.

The clients' request flow and the tenacity adapter both turn httpx's
responses and errors into :class:`~bb_backoff.Outcome` here, so they cannot
disagree about which errors are worth a retry or which requests never left.
"""

from __future__ import annotations

from typing import Final

import httpx

from ._exceptions import scrub
from ._hints import hint_from_headers
from ._policy import Outcome

NOT_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError)
"""Transport errors where the request certainly never reached the server.

A proxy that fails has not forwarded the request, so it is as safe to retry
as a refused connection, even for a POST.
"""
TRANSIENT: Final = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    httpx.ProxyError,
)
"""Transport errors worth retrying.

The others (``UnsupportedProtocol``, ``LocalProtocolError``: a bad URL
scheme, a header httpx refuses to send) are bugs on our side that a retry
repeats.
"""
_ERROR_STATUS: Final = 400
ERROR_TEXT_LIMIT: Final = 200
"""Characters of a plain-text error body kept in an error message."""


def outcome_of_error(method: str, error: httpx.TransportError) -> Outcome | None:
    """The outcome of an attempt that got no response, or ``None`` if it is not transient."""
    if not isinstance(error, TRANSIENT):
        return None
    return Outcome(method=method, sent=not isinstance(error, NOT_SENT))


def outcome_of_response(response: httpx.Response, now: float, method: str | None = None) -> Outcome:
    """The outcome of an attempt that got ``response``.

    Args:
        response: the answer.
        now: epoch seconds, to read date hints.
        method: the logical request's method, when the answer may come from
            another request (the OAuth flow hands back the token endpoint's
            transient failure as the request's response).
    """
    return Outcome(
        method=response.request.method if method is None else method,
        status=response.status_code,
        hint=hint_from_headers(response.headers, now),
    )


def error_envelope(response: httpx.Response) -> tuple[str | None, str | None]:
    """``error.message`` and ``error.detail`` from Bitbucket's envelope, or a plain-text body.

    The credentials in use are scrubbed from both (see
    :func:`~bb_backoff._exceptions.register_secrets`) before a plain-text
    body is cut to :data:`ERROR_TEXT_LIMIT`: cut first, a 401 body quoting the
    ``Authorization`` header across the cut would keep the token's first
    characters, which the scrub no longer recognises.
    """
    try:
        body = response.json()
    except (ValueError, RecursionError):  # not JSON, or nested too deep to parse
        text = scrub(response.text.strip())
        return (text[:ERROR_TEXT_LIMIT] or None, None)
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return (None, None)
    message, detail = error.get("message"), error.get("detail")
    return (
        scrub(message) if isinstance(message, str) else None,
        scrub(detail) if isinstance(detail, str) else None,
    )


def undecodable(
    response: httpx.Response, error: httpx.DecodingError
) -> httpx.Response | httpx.DecodingError:
    """What the flow judges when ``response``'s body cannot be decoded.

    An error status: the response without its body (see :func:`without_body`).
    A success: the decoding error (its body is the answer).
    """
    return without_body(response) if response.status_code >= _ERROR_STATUS else error


def without_body(response: httpx.Response) -> httpx.Response:
    """An error response whose body could not be decoded, as one with no body.

    Its status and headers still tell what happened: a 429 or a 503 whose
    page a proxy sent with a wrong ``Content-Encoding`` is waited out or
    retried as any other, not taken for a broken answer.  (A success's body
    is the answer itself: its decoding error stays final.)
    """
    headers = [
        (name, value)
        for name, value in response.headers.multi_items()
        if name.lower() not in {"content-encoding", "content-length"}
    ]
    try:
        request: httpx.Request | None = response.request
    except RuntimeError:  # a transport's own response, not yet bound to its request
        request = None
    return httpx.Response(
        response.status_code,
        headers=headers,
        content=b"",
        request=request,
        extensions=response.extensions,
    )
