"""The pagination helpers: what makes two page URLs the same page."""

from __future__ import annotations

import hashlib

import httpx
from hypothesis import given
from hypothesis import strategies as st

from bb_backoff._origin import origin, parse_url
from bb_backoff._pagination import page_key


def reference_key(url: httpx.URL) -> bytes:
    """The page key as first written, through httpx's own query parsing (the spec).

    With one fix the key has too: the origin and path go in after their
    length (``/x?a=b`` and ``/x1:1:ab`` were the same page).
    """
    scheme, host, port = origin(url)
    params = url.params
    query = set(params.multi_items())
    if "page" not in params:
        query.add(("page", "1"))
    digest = hashlib.blake2b(digest_size=16)
    where = f"{scheme}://{host}:{port}".encode() + url.raw_path.partition(b"?")[0]
    digest.update(b"%d:" % len(where) + where)
    for name, value in sorted(query):
        name_bytes, value_bytes = name.encode(), value.encode()
        digest.update(b"%d:%d:" % (len(name_bytes), len(value_bytes)) + name_bytes + value_bytes)
    return digest.digest()


# A small vocabulary, so that different spellings of one page meet often:
# percent-encoding, "+" for a space, blank values, fields without "=",
# empty fields, repeated parameters, an explicit default port.
_FIELDS = st.sampled_from(
    [
        "page=2", "page=%32", "pa%67e=2", "page=1", "page=", "page", "pagelen=50",
        "q=a+b", "q=a%20b", "q=a b", "q=a%2Bb", "=x", "", "a=b=c", "a=b%3Dc", "x",
    ]
)  # fmt: skip
_ORIGINS = st.sampled_from(
    [
        "https://api.bitbucket.org",
        "HTTPS://API.bitbucket.org:443",
        "https://api.bitbucket.org:8443",
        "http://api.bitbucket.org",
    ]
)
_PATHS = st.sampled_from(
    ["/2.0/repositories/ada", "/2.0/repositories/ad%61", "/2.0/x", "/2.0/x1:1:ab"]
)
_URLS = st.builds(
    lambda where, path, fields: parse_url(f"{where}{path}?{'&'.join(fields)}"),
    _ORIGINS,
    _PATHS,
    st.lists(_FIELDS, max_size=4),
)


@given(first=_URLS, second=_URLS)
def test_two_urls_are_the_same_page_exactly_when_the_reference_says_so(
    first: httpx.URL, second: httpx.URL
) -> None:
    # The key reads the query itself (faster than httpx's url.params); it
    # must tell pages apart, and together, exactly as httpx's reading does.
    same = page_key(first) == page_key(second)
    assert same == (reference_key(first) == reference_key(second)), (first, second)


def test_a_next_link_spelled_differently_is_the_same_page() -> None:
    base = "https://api.bitbucket.org/2.0/repositories/ada"
    assert page_key(parse_url(f"{base}?pagelen=50&page=2")) == page_key(
        parse_url("HTTPS://API.bitbucket.org:443/2.0/repositories/ada?pa%67e=2&pagelen=50&page=2")
    )
    assert page_key(parse_url(base)) == page_key(parse_url(f"{base}?page=1"))
    assert page_key(parse_url(f"{base}?q=a+b")) == page_key(parse_url(f"{base}?q=a%20b"))
    assert page_key(parse_url(f"{base}?q=a+b")) != page_key(parse_url(f"{base}?q=a%2Bb"))
    # The path and the query do not run together (the first version's keys did).
    assert page_key(parse_url(f"{base}?a=b")) != page_key(parse_url(f"{base}1:1:ab"))
