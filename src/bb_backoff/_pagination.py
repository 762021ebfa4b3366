"""Pages of a listing: the envelope, the opaque ``next`` links, and their checks.

Bitbucket's listings come as ``{"values": [...], "next": ...}``; ``next`` is
an opaque URL to follow, never to build (a relative one is resolved against
the page it came from, as a browser would).  :func:`read_page` checks one page
(``values`` is a list, ``next`` stays on the API's origin and never repeats),
and :func:`first_page_url` checks the page length before the first request.
Both clients' ``pages`` loops call these through :class:`Pager`.

A ``next`` link that is refused does not cost the page it came on: the page
is handed to the caller first, and the refusal is raised when the caller
asks for the page after it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import parse_qsl

import attrs
import httpx

from . import _endpoints as endpoints
from ._exceptions import BitbucketError, InvalidResponse, PaginationError, UnsafeURL, redact_url
from ._flow import CONTEXT
from ._origin import (
    USERINFO_REFUSED,
    OriginGuard,
    is_absolute,
    origin,
    parse_url,
    unsendable,
    with_params,
)

logger: Final = logging.getLogger("bb_backoff")

MAX_EMPTY_PAGES: Final = 20
"""Empty pages in a row with a ``next`` link before a listing is refused as a loop."""
MAX_PAGES: Final = 100_000
"""Pages one listing may have: five million items at the importer's page length of 50."""
OVERRUN_SLACK: Final = 100
"""Items beyond twice the listing's largest ``size`` before it is refused as a loop
(a page at the longest ``pagelen``): items added while it is read shift later
pages and repeat a few, never a whole listing's worth."""


def _redacted_repr(value: object) -> str:
    return repr(None if value is None else redact_url(value))


@attrs.frozen
class Page:
    """One page of a paginated listing.

    Attributes:
        values: the page's items.
        next: the opaque URL of the next page (absolute: a relative link is
            resolved against ``url``), ``None`` on the last page or when the
            server's ``next`` is not a string.  Store it to resume an import
            later with ``paginate(next)``.  A ``next`` the client refuses is
            kept here as the server sent it; the listing then raises when
            asked for the page after this one.
        previous: the previous page's URL, if the API gave one.
        page: the page number, if given.
        pagelen: the page length, if given.
        size: the total number of items, if given (often missing).
        url: the URL this page was fetched from.
        flag_variant: ``"on"`` or ``"off"``: the flag's answer for this
            page's request (each page asks the flag).
        attempts: requests sent for this page (retries and redirects included).
    """

    values: list[Any]
    next: str | None = attrs.field(repr=_redacted_repr)
    previous: str | None = attrs.field(default=None, repr=_redacted_repr)
    page: int | None = None
    pagelen: int | None = None
    size: int | None = None
    url: str = attrs.field(default="", repr=_redacted_repr)
    flag_variant: str | None = None
    attempts: int = 0


def flag_variant_of(response: httpx.Response) -> str | None:
    """The flag's answer for the request behind ``response``: ``"on"``, ``"off"``, or ``None``.

    Works for the responses of :class:`~bb_backoff.RetryTransport` (any httpx
    client) and of the clients' own requests.
    """
    context = response.extensions.get(CONTEXT)
    return context[0] if context else None


def request_context(response: httpx.Response) -> dict[str, Any]:
    """The request behind ``response``: method, URL, flag variant, attempts (for errors)."""
    variant, attempts = response.extensions.get(CONTEXT, (None, 0))
    return {
        "method": response.request.method,
        "url": response.request.url,
        "flag_variant": variant,
        "attempts": attempts,
    }


def json_body(response: httpx.Response) -> Any:
    """The parsed JSON body.

    Raises:
        InvalidResponse: the body is not JSON.
    """
    try:
        return response.json()
    except (ValueError, RecursionError):  # not JSON, or nested too deep to parse
        pass
    # Raised outside the handler, so that the parser's error is not kept as
    # the context: it holds the whole body, which may quote a credential.
    raise InvalidResponse(
        f"expected JSON, got {response.headers.get('Content-Type', 'no content type')} "
        f"(HTTP {response.status_code})",
        **request_context(response),
    )


def first_page_url(
    guard: OriginGuard, path_or_url: str, params: Mapping[str, Any] | None
) -> httpx.URL:
    """The first page's URL, parsed, with the page length checked as it will be sent.

    Raises:
        ValueError: a ``pagelen`` the endpoint would refuse.
        UnsafeURL: an absolute URL off the API's origin, or a URL httpx
            cannot send (a control character, too long).
    """
    joined = guard.url(path_or_url)
    try:
        # As given: dict() of httpx.QueryParams keeps one value of each.
        url = httpx.URL(joined) if params is None else with_params(joined, params)
    except httpx.InvalidURL as error:
        raise unsendable(joined, error) from None
    # Check the page length whatever form the caller used (with or without a
    # slash, a query or the origin).
    base_path = httpx.URL(guard.base_url).path
    path = url.path.removeprefix(base_path.rstrip("/"))
    for text in url.params.get_list("pagelen"):  # every one sent, repeated or not
        try:
            value: object = int(text)
        except ValueError:
            value = text
        endpoints.check_pagelen(path, {"pagelen": value})
    return url


def page_key(url: httpx.URL) -> bytes:
    """What makes two page URLs the same page, as a short digest.

    Scheme and host in any case and an explicit default port name the same
    page (httpx lower-cases both; :func:`~._origin.origin` drops the port);
    the path counts as sent.  The query counts as the server reads it: its
    parameters in any order, a repeated one once (Bitbucket's ``next``
    links repeat parameters, and a link that repeats them once more on
    every page would never match an earlier one), and no ``page`` as
    ``page=1`` (the first page's URL often has none, a link back to it
    does).  A digest, not the URL, because a relative ``next`` such as
    ``a/b`` grows the URL a little on every page: keeping every URL would
    let a few bytes from the server fill gigabytes before :data:`MAX_PAGES`.
    """
    scheme, host, port = origin(url)
    query = url.query.decode("ascii")  # httpx keeps it percent-encoded
    if "%" in query or "+" in query:
        pairs = set(parse_qsl(query, keep_blank_values=True))  # as httpx's url.params reads it
    else:  # (the same pairs, without parse_qsl's decoding: most next links)
        fields = (field.partition("=") for field in query.split("&") if field)
        pairs = {(name, value) for name, _, value in fields}
    if all(name != "page" for name, _ in pairs):
        pairs.add(("page", "1"))
    where = f"{scheme}://{host}:{port}".encode() + url.raw_path.partition(b"?")[0]
    # Lengths first: no two different URLs run together into the same bytes.
    pieces = [b"%d:" % len(where), where]
    for name, value in sorted(pairs):
        name_bytes, value_bytes = name.encode(), value.encode()
        pieces.append(b"%d:%d:%b%b" % (len(name_bytes), len(value_bytes), name_bytes, value_bytes))
    return hashlib.blake2b(b"".join(pieces), digest_size=16).digest()


def _follow(
    guard: OriginGuard, link: str, page_url: httpx.URL, seen: set[bytes], context: dict[str, Any]
) -> tuple[str, httpx.URL | None, BitbucketError | None]:
    """The ``next`` URL to store, parsed to fetch, and why it must not be fetched (or ``None``).

    A relative link resolves against the page it came on, as a browser would
    resolve it; the origin check then applies to where it leads.  The parsed
    URL is what the next request is built from: parsing it again would cost
    as much as the rest of the client's own work on a page.
    """
    try:
        resolved: httpx.URL | None = parse_url(link if is_absolute(link) else page_url.join(link))
    # Not a URL, or a host that is not valid IDNA; a lone surrogate ("\ud800",
    # valid JSON) fails httpx's encoding with a UnicodeEncodeError.
    except (httpx.InvalidURL, UnicodeError):
        resolved = None
    if resolved is None or not guard.on_origin(resolved):
        if resolved is None:
            why = " is not a valid URL"
        elif resolved.userinfo:
            why = f": {USERINFO_REFUSED}"
        else:
            why = f" leaves the origin of {guard.base_url}"
        refused = UnsafeURL(
            f"the next link {redact_url(link)}{why}; nothing was sent to it", **context
        )
        return link, None, refused
    absolute = is_absolute(link)
    url = link if absolute else str(resolved)
    key = page_key(resolved)
    # A relative link given again on a later page leads somewhere new only
    # by growing the path ("a/b" one level deeper each time): a loop the
    # page key cannot see, the same link text can.
    again = not absolute and _relative_key(link) in seen
    if key in seen or again:
        what = (
            "repeats an earlier page"
            if key in seen
            else "is the relative link an earlier page gave (each page one level deeper)"
        )
        repeats = PaginationError(
            f"the next link {redact_url(link)} {what}; stopping instead of looping", **context
        )
        return url, None, repeats
    seen.add(key)
    if not absolute:
        seen.add(_relative_key(link))
    return url, resolved, None


def _relative_key(link: str) -> bytes:
    """What a relative ``next`` link is remembered by: its text (kept apart from page keys)."""
    return hashlib.blake2b(link.encode(), digest_size=16, person=b"relative").digest()


def read_page(
    guard: OriginGuard, data: Any, response: httpx.Response, seen: set[bytes]
) -> tuple[Page, httpx.URL | None, BitbucketError | None]:
    """Check one page and its ``next`` link, and record the link as seen.

    Args:
        guard: the origin guard the ``next`` link must pass.
        data: the page's parsed JSON body.
        response: the page's response.
        seen: the :func:`page_key` of every page URL of the listing so far.

    Returns:
        The page, its ``next`` link parsed (``None`` when there is none to
        follow), and the error that refuses that link (``None``
        when the link may be followed): a :class:`PaginationError` for a
        ``next`` that is not a URL or repeats, an :class:`UnsafeURL` for one
        off the API's origin or with userinfo (nothing was sent to it).  The
        error is returned, not raised, so that the page's items still reach
        the caller.

    Raises:
        PaginationError: no ``values`` list (there is no page to hand over).
    """
    context = request_context(response)
    url = str(response.request.url)
    values = data.get("values") if isinstance(data, dict) else None
    if not isinstance(values, list):
        raise PaginationError("the page has no 'values' list", **context)
    link = data.get("next") or None
    next_url: str | None = None
    target: httpx.URL | None = None
    refused: BitbucketError | None = None
    if isinstance(link, str):
        next_url, target, refused = _follow(guard, link, response.request.url, seen, context)
    elif link is not None:
        refused = PaginationError("the page's 'next' is not a URL", **context)

    def number(key: str) -> int | None:
        value = data.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    previous = data.get("previous")
    page = Page(
        values=values,
        next=next_url,
        previous=previous if isinstance(previous, str) else None,
        page=number("page"),
        pagelen=number("pagelen"),
        size=number("size"),
        url=url,
        flag_variant=context["flag_variant"],
        attempts=context["attempts"],
    )
    return page, target, refused


def warn_if_short(first: Page | None, count: int) -> None:
    """Log a listing that ended before its ``size`` said it would."""
    # Only a listing read from its first page can be compared with its
    # size; one resumed from a stored next link starts part-way through.
    if first is not None and first.page == 1 and first.size is not None and count < first.size:
        logger.warning(
            "listing %s ended after %d of %d items: the API stopped sending next links",
            redact_url(first.url),
            count,
            first.size,
        )


class Pager:
    """One walk through a listing: the URL to fetch next, and the checks between pages.

    Both clients' ``pages`` loops are the same few lines around it::

        pager = Pager(guard, path_or_url, params)
        while pager.url is not None:
            yield pager.read(send("GET", pager.url))
        pager.finish()

    Every loop the server drives is bounded: a ``next`` never repeats (the
    same page written with another host case or an explicit default port
    counts as a repeat), at most :data:`MAX_EMPTY_PAGES` empty pages come in
    a row, a listing hands over at most twice the items its largest ``size``
    says (plus :data:`OVERRUN_SLACK`), and it has at most :data:`MAX_PAGES`
    pages.  When a page's ``next`` is refused for any of these reasons, or
    for leaving the origin, :meth:`read` still returns the page (its items
    were received); it sets :attr:`url` to ``None`` and :meth:`finish` raises
    the refusal, so the loop hands the page over, sends nothing more, and
    then raises.

    Raises:
        ValueError: a ``pagelen`` the endpoint would refuse (at construction).
        UnsafeURL: an absolute URL off the API's origin, or with userinfo.
    """

    __slots__ = (
        "_empty",
        "_first",
        "_guard",
        "_items",
        "_pages",
        "_refused",
        "_seen",
        "_size",
        "url",
    )

    def __init__(
        self, guard: OriginGuard, path_or_url: str, params: Mapping[str, Any] | None
    ) -> None:
        self._guard = guard
        self.url: httpx.URL | None = first_page_url(guard, path_or_url, params)
        """The next page to fetch, ``None`` after the last."""
        self._seen = {page_key(self.url)}
        self._first: Page | None = None
        self._items = 0
        self._pages = 0
        self._empty = 0
        self._size: int | None = None
        """The largest ``size`` a page of this listing gave."""
        self._refused: BitbucketError | None = None

    def read(self, response: httpx.Response) -> Page:
        """Check the page in ``response`` and move :attr:`url` to its ``next``.

        A refused ``next`` (see the class) sets :attr:`url` to ``None``
        instead; :meth:`finish` raises why.

        Raises:
            InvalidResponse: the body is not JSON.
            PaginationError: the page has no ``values`` list.
        """
        page, target, refused = read_page(self._guard, json_body(response), response, self._seen)
        self._pages += 1
        self._empty = 0 if page.values else self._empty + 1
        self._items += len(page.values)
        if page.size is not None and (self._size is None or page.size > self._size):
            self._size = page.size
        if refused is None and page.next is not None:
            if self._size is not None and self._items > 2 * self._size + OVERRUN_SLACK:
                # Fresh cursors that lead back to pages already read: no
                # URL repeats, but the items run past what the listing holds.
                refused = PaginationError(
                    f"the listing has handed over {self._items} items, more than twice the "
                    f"{self._size} its size says, and its next links go on; they seem to "
                    "lead round a loop, so stopping",
                    **request_context(response),
                )
            elif self._empty >= MAX_EMPTY_PAGES:
                refused = PaginationError(
                    f"{self._empty} empty pages in a row, each with a next link; "
                    "stopping instead of following them for ever",
                    **request_context(response),
                )
            elif self._pages >= MAX_PAGES:
                refused = PaginationError(
                    f"the listing goes on past {MAX_PAGES} pages; stopping there",
                    **request_context(response),
                )
        self._first = self._first or page
        self.url = target if refused is None else None
        self._refused = refused
        return page

    def finish(self) -> None:
        """End the walk: raise the refusal of the last page's ``next``, if any.

        Otherwise log a listing that ended before its ``size`` said it would.

        Raises:
            PaginationError: the last page's ``next`` repeats an earlier page
                or is not a URL, or the listing ran past its bounds.
            UnsafeURL: the last page's ``next`` leaves the API's origin or has
                userinfo; nothing was sent to it.
        """
        refused, self._refused = self._refused, None
        if refused is not None:
            raise refused
        warn_if_short(self._first, self._items)
