"""Fixtures for testing an importer: the mock API, virtual time, both flag variants.

pytest loads this plugin by itself in every project that installs bb-backoff
(the ``pytest11`` entry point ``bb_backoff``).  Every test that asks for
:func:`flag_variant`, directly or through a client fixture, runs twice: once
with the flag on (the exponential backoff and the account gate), once off
(the legacy retry).

Fixtures (see ``docs/testing.md``):

- ``flag_variant``: ``"on"`` then ``"off"``.
- ``virtual_clock``: a :class:`~bb_backoff.testing.VirtualClock`.
- ``mock_bitbucket``: a :class:`~bb_backoff.testing.MockBitbucket` on that
  clock, with a small seeded dataset; change it with the
  ``bb_backoff_mock_options`` fixture or the ``bb_backoff_mock`` marker.
- ``bitbucket_client`` / ``async_bitbucket_client``: clients on the mock,
  on virtual time, with the flag set by ``flag_variant`` and a gate of their
  own; change them with the ``bb_backoff_client_options`` fixture.

Loading the plugin imports bb_backoff itself but not the testing helpers;
the fixtures import those when they first run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

import pytest

if TYPE_CHECKING:
    from bb_backoff import AsyncBitbucketClient, BitbucketClient
    from bb_backoff.testing import MockBitbucket, VirtualClock

FLAG_VARIANTS: Final = ("on", "off")
"""The values of ``flag_variant``, in the order the tests run."""
MOCK_MARKER: Final = "bb_backoff_mock"
"""``@pytest.mark.bb_backoff_mock(**options)``: MockBitbucket arguments for one test."""

# The plugin owns these: they put the mock and the clients on the test's
# virtual clock and the flag on flag_variant; a test that needs them otherwise
# builds its own client from mock_bitbucket and virtual_clock.
_MOCK_OWNED: Final = frozenset({"clock", "now", "sleep", "async_sleep"})
_CLIENT_OWNED: Final = frozenset({"transport", "clock", "now", "sleep", "flag"})


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker, so ``--strict-markers`` accepts it."""
    config.addinivalue_line(
        "markers",
        f"{MOCK_MARKER}(**options): MockBitbucket arguments (limit=, window=, faults=, "
        "size=, seed=, hint=, ...) for the mock_bitbucket fixture of this test.",
    )


@pytest.fixture(params=FLAG_VARIANTS)
def flag_variant(request: pytest.FixtureRequest) -> str:
    """``"on"``, then ``"off"``: every test that uses it runs once per variant.

    ``@pytest.mark.parametrize("flag_variant", ["on"])`` runs a test with one
    variant only.
    """
    variant: str = request.param
    return variant


@pytest.fixture
def virtual_clock() -> VirtualClock:
    """A :class:`~bb_backoff.testing.VirtualClock`, shared by the mock and the clients."""
    from bb_backoff.testing import VirtualClock  # noqa: PLC0415 (loaded only when used)

    return VirtualClock()


@pytest.fixture
def bb_backoff_mock_options() -> dict[str, Any]:
    """MockBitbucket arguments for ``mock_bitbucket``; override it in a conftest or module.

    Returns:
        Keyword arguments (``limit``, ``window``, ``faults``, ``size``,
        ``seed``, ``hint``...) laid over the plugin's defaults: seed 0 and a
        small dataset.  The time arguments belong to the plugin.
    """
    return {}


@pytest.fixture
def mock_bitbucket(
    request: pytest.FixtureRequest,
    virtual_clock: VirtualClock,
    bb_backoff_mock_options: dict[str, Any],
) -> MockBitbucket:
    """A :class:`~bb_backoff.testing.MockBitbucket` on ``virtual_clock``.

    Its arguments are the defaults (seed 0, a small dataset), then
    ``bb_backoff_mock_options``, then the ``bb_backoff_mock`` markers from
    the module down to the test (the closest wins).  Its sync and async
    waits are virtual.

    Raises:
        ValueError: an option sets the clock, ``now`` or a sleep, or a
            marker has positional arguments.
    """
    from bb_backoff.testing import DatasetSize, MockBitbucket  # noqa: PLC0415 (loaded when used)

    options: dict[str, Any] = {
        "seed": 0,
        "size": DatasetSize(
            repositories=2,
            pull_requests=12,
            comments_per_pull_request=2,
            issues=6,
            comments_per_issue=2,
            members=3,
        ),
    }
    options.update(
        _owned_by_plugin("bb_backoff_mock_options", bb_backoff_mock_options, _MOCK_OWNED)
    )
    # iter_markers yields the closest first; apply the farthest first so the closest wins.
    for marker in reversed(list(request.node.iter_markers(MOCK_MARKER))):
        if marker.args:
            raise ValueError(
                f"@pytest.mark.{MOCK_MARKER} takes keyword arguments only, got {marker.args!r}"
            )
        options.update(_owned_by_plugin(f"@pytest.mark.{MOCK_MARKER}", marker.kwargs, _MOCK_OWNED))
    return MockBitbucket(
        **options,
        clock=virtual_clock.monotonic,
        now=virtual_clock.time,
        sleep=virtual_clock.sleep,
        async_sleep=_virtual_async_sleep(virtual_clock),
    )


@pytest.fixture
def bb_backoff_client_options() -> dict[str, Any]:
    """Client arguments for the client fixtures; override it in a conftest or module.

    Returns:
        Keyword arguments (``actor``, ``auth``, ``policy``, ``legacy_policy``,
        ``on_retry``, ``hooks``, ``gate``...) laid over the plugin's
        defaults.  The transport, the time arguments and the flag belong to
        the plugin.
    """
    return {}


@pytest.fixture
def bitbucket_client(
    mock_bitbucket: MockBitbucket,
    virtual_clock: VirtualClock,
    flag_variant: str,
    bb_backoff_client_options: dict[str, Any],
) -> Iterator[BitbucketClient]:
    """A :class:`~bb_backoff.BitbucketClient` on ``mock_bitbucket``, on virtual time.

    The flag is ``flag_variant == "on"``; the credentials are the mock's
    workspace access token (Bearer); the gate is one of its own (seeded), so
    no two tests share a window; the exponential policy is seeded, so a run
    repeats.  Closed after the test.
    """
    from bb_backoff import BitbucketClient  # noqa: PLC0415 (loaded only when used)

    options = _client_options(mock_bitbucket, flag_variant, bb_backoff_client_options)
    client = BitbucketClient(
        **options,
        transport=mock_bitbucket.transport(),
        clock=virtual_clock.monotonic,
        now=virtual_clock.time,
        sleep=virtual_clock.sleep,
    )
    with client:
        yield client


@pytest.fixture
def async_bitbucket_client(
    mock_bitbucket: MockBitbucket,
    virtual_clock: VirtualClock,
    flag_variant: str,
    bb_backoff_client_options: dict[str, Any],
) -> Iterator[AsyncBitbucketClient]:
    """An :class:`~bb_backoff.AsyncBitbucketClient` on ``mock_bitbucket``, on virtual time.

    Configured as ``bitbucket_client``.  Use it in any async test (anyio,
    pytest-asyncio): its waits jump the virtual clock at once.  Under
    ``bb_backoff.testing.run_virtual(main, virtual_clock)`` they are timers
    on the virtual event loop instead, so concurrent tasks wait together.
    Closed after the test, on an event loop of its own.
    """
    from bb_backoff import AsyncBitbucketClient  # noqa: PLC0415 (loaded only when used)
    from bb_backoff.testing import run_virtual  # noqa: PLC0415 (loaded only when used)

    options = _client_options(mock_bitbucket, flag_variant, bb_backoff_client_options)
    client = AsyncBitbucketClient(
        **options,
        transport=mock_bitbucket.async_transport(),
        clock=virtual_clock.monotonic,
        now=virtual_clock.time,
        sleep=_virtual_async_sleep(virtual_clock),
    )
    yield client
    # No event loop runs while a plain fixture is torn down, whatever ran the
    # test; the mock's transport holds no loop resources, so a fresh virtual
    # loop closes the client (a no-op if the test closed it already).
    run_virtual(client.aclose(), virtual_clock)


def _owned_by_plugin(
    source: str, options: Mapping[str, Any], owned: frozenset[str]
) -> Mapping[str, Any]:
    if not isinstance(options, Mapping):
        raise ValueError(f"{source} must be a dict of keyword arguments, got {options!r}")
    clash = sorted(owned & options.keys())
    if clash:
        raise ValueError(
            f"{source} must not set {', '.join(clash)}: the plugin sets them to keep "
            "the test on virtual time and on flag_variant; build your own client "
            "from mock_bitbucket and virtual_clock instead"
        )
    return options


def _client_options(
    mock: MockBitbucket, flag_variant: str, extra: Mapping[str, Any]
) -> dict[str, Any]:
    from bb_backoff import AccountGate, ExponentialBackoff, MemoryStore  # noqa: PLC0415

    if flag_variant not in FLAG_VARIANTS:
        raise ValueError(f"flag_variant must be 'on' or 'off', got {flag_variant!r}")
    options: dict[str, Any] = {
        "auth": mock.bearer(),
        "base_url": mock.base_url,
        "flag": flag_variant == "on",
        "policy": ExponentialBackoff(seed=0),
        "gate": AccountGate(store=MemoryStore(), seed=0),
    }
    options.update(_owned_by_plugin("bb_backoff_client_options", extra, _CLIENT_OWNED))
    return options


def _virtual_async_sleep(clock: VirtualClock) -> Callable[[float], Awaitable[None]]:
    """An async sleep on ``clock``: a timer on its virtual loop, else an instant jump."""
    import asyncio  # noqa: PLC0415 (loaded only when used)

    from bb_backoff.testing import VirtualEventLoop  # noqa: PLC0415 (loaded only when used)

    async def sleep(seconds: float) -> None:
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # not asyncio (trio under anyio): nothing to wait on
            loop = None
        if isinstance(loop, VirtualEventLoop) and loop.clock is clock:
            clock.sleeps.append(seconds)
            await asyncio.sleep(seconds)
        else:
            clock.sleep(seconds)

    return sleep
