"""The contenders: this client's policies and the peers, each as a fetcher for the importer.

The peers are configured as their own documentation suggests for an HTTP
API, wrapped around a bare httpx client that raises for error statuses:

* tenacity: ``wait_random_exponential(min=1, max=60)``, ``stop_after_attempt(6)``,
  retrying ``httpx.HTTPError`` (the widely copied API-client recipe), and
  beside it as a careful user would tune it for an hourly limit:
  ``wait_random_exponential(min=1, max=300)``, ``stop_after_attempt(500)``;
* stamina: ``stamina.retry(on=httpx.HTTPError)`` with its defaults (10
  attempts, 45 s timeout, 0.1 s initial, 5 s max, 1 s jitter), and again with
  an ``on`` hook that returns ``Retry-After`` as the wait;
* backoff: ``on_exception(expo, httpx.HTTPError, max_tries=8)``;
* httpx-retries: ``RetryTransport(retry=Retry(total=5, backoff_factor=0.5))``;
* urllib3 (sync): ``Retry(total=5, backoff_factor=0.5,
  status_forcelist=[429, 500, 502, 503, 504])``, its own decisions and sleep.

Peers read ``time.monotonic`` / ``time.time`` / ``time.sleep`` directly and
take no clock.  On virtual time, :func:`Contender.patched` swaps the ``time``
module those peer modules see for one backed by the virtual clock, for the
duration of their run only; asyncio sleeps are virtual through the loop.  Our
own client needs none of that: it takes ``clock``, ``now`` and ``sleep``.

Every time setting is multiplied by ``scale`` (1 on virtual time; smaller for
real-time runs against a scaled-down window).
"""

from __future__ import annotations

import contextlib
import importlib
import types
from collections.abc import Callable, Iterator
from typing import Any, Final

import attrs
import httpx

from .._client import AsyncBitbucketClient, BitbucketClient
from .._gate import AccountGate
from .._policy import GITLAB_16_7, ExponentialBackoff, FixedRetry, RetryPolicy
from .._timing import MIN_WAIT
from ..testing import MockBitbucket, VirtualClock, VirtualThreads
from ._importer import AsyncFetcher, SyncFetcher

_TIMEOUT: Final = 30.0


@attrs.frozen(kw_only=True)
class Arena:
    """Where a contender runs: the mock, the clock, the time scale.

    Attributes:
        mock: the API.
        base_url: where to reach it.
        seed: for the policies' random sources.
        scale: multiply every time setting by this.
        clock: the virtual clock, or ``None`` on real time.
        threads: the virtual thread scheduler for sync contenders, if any.
        transport: an in-process transport, or ``None`` for the network.
        configured_limit: the limit the scenario tells the clients
            (``AccountGate(limit=...)`` for our gated contenders), or ``None``.
    """

    mock: MockBitbucket
    base_url: str
    seed: int
    scale: float = 1.0
    clock: VirtualClock | None = None
    threads: VirtualThreads | None = None
    transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None
    configured_limit: int | None = None

    def client_timing(self) -> dict[str, Any]:
        """The clock, now and (sync) sleep arguments for our clients."""
        if self.clock is None:
            return {}
        timing: dict[str, Any] = {"clock": self.clock.monotonic, "now": self.clock.time}
        if self.threads is not None:
            timing["sleep"] = self.threads.sleep
        return timing

    def headers(self) -> dict[str, str]:
        """The access token, as a peer's bare httpx client sends it."""
        return {"Authorization": f"Bearer {self.mock.access_token}"}


@attrs.frozen
class Contender:
    """One row of the benchmark: a name, a mode, and how to build its fetcher.

    Attributes:
        name: the row's label.
        mode: ``"async"`` (tasks) or ``"sync"`` (threads).
        build: makes the fetcher in an arena.
        requires: the module the contender needs, if it is optional.
        patches: modules whose ``time`` the contender reads, swapped on virtual time.
    """

    name: str
    mode: str
    build: Callable[[Arena], AsyncFetcher | SyncFetcher]
    requires: str | None = None
    patches: tuple[str, ...] = ()

    def available(self) -> bool:
        """Whether the contender's optional dependency is installed."""
        if self.requires is None:
            return True
        try:
            importlib.import_module(self.requires)
        except ImportError:
            return False
        return True

    @contextlib.contextmanager
    def patched(self, arena: Arena) -> Iterator[None]:
        """Give the peer modules a ``time`` backed by the virtual clock, then restore it."""
        if arena.clock is None or not self.patches:
            yield
            return
        clock = arena.clock
        sleep = arena.threads.sleep if arena.threads is not None else clock.sleep
        virtual_time = types.SimpleNamespace(
            monotonic=clock.monotonic, time=clock.time, sleep=sleep, perf_counter=clock.monotonic
        )
        with contextlib.ExitStack() as stack:
            for name in self.patches:
                module = importlib.import_module(name)
                stack.callback(setattr, module, "time", getattr(module, "time"))  # noqa: B009
                setattr(module, "time", virtual_time)  # noqa: B010
            yield


# -- this client ----------------------------------------------------------------------


def _scaled(policy: RetryPolicy, scale: float) -> RetryPolicy:
    """``policy`` with every time setting multiplied by ``scale``.

    A first wait is never scaled below ``MIN_WAIT`` (10 ms), which the
    policies refuse: at ``--scale 0.005`` (the default of ``--real``) the
    first wait is 10 ms rather than 5 ms, two seconds of the unscaled hour.
    """
    if scale == 1.0:
        return policy
    if isinstance(policy, FixedRetry):
        return attrs.evolve(policy, delay=policy.delay * scale)
    if isinstance(policy, ExponentialBackoff):
        initial = max(policy.initial * scale, MIN_WAIT)
        return attrs.evolve(
            policy,
            initial=initial,
            max_delay=max(policy.max_delay * scale, initial),
            error_budget=policy.error_budget * scale,
            rate_limit_budget=policy.rate_limit_budget * scale,
            max_hint=policy.max_hint * scale,
        )
    raise TypeError(f"cannot scale {policy!r}")


def _gate(arena: Arena, *, enabled: bool) -> AccountGate | bool:
    """The account gate at the arena's time scale (seeded), or ``False`` for none.

    It knows the limit only when the scenario tells the clients
    (``configured_limit``); otherwise it learns it, as a gate does by default.
    """
    if not enabled:
        return False
    scale = arena.scale
    # The probes' waits no shorter than MIN_WAIT, which the gate refuses (see _scaled).
    return AccountGate(
        window=arena.mock.window,
        limit=arena.configured_limit,
        probe_initial=max(1.0 * scale, MIN_WAIT),
        probe_max=max(300.0 * scale, MIN_WAIT),
        breaker_max=max(60.0 * scale, MIN_WAIT),
        probe_lease=60.0 * scale,
        outage_budget=1800.0 * scale,
        seed=arena.seed,
    )


class ClientFetcher:
    """An async importer's fetcher over one of our clients (the bench's and the rollout's)."""

    def __init__(self, client: AsyncBitbucketClient) -> None:
        self._client = client

    async def json(self, url: str) -> Any:
        return await self._client.get(url)

    async def text(self, url: str) -> str:
        return await self._client.get_text(url)

    async def aclose(self) -> None:
        await self._client.aclose()


class _OursSync:
    def __init__(self, client: BitbucketClient) -> None:
        self._client = client

    def json(self, url: str) -> Any:
        return self._client.get(url)

    def text(self, url: str) -> str:
        return self._client.get_text(url)

    def close(self) -> None:
        self._client.close()


def ours_async(
    *, flag: bool, policy: Callable[[int], RetryPolicy], gate: bool = True
) -> Callable[[Arena], AsyncFetcher]:
    """This client, async, with the flag fixed and ``policy(seed)`` as both policies.

    ``gate``: pass the account gate (scaled like the mock's window), or none.
    """

    def build(arena: Arena) -> AsyncFetcher:
        chosen = _scaled(policy(arena.seed), arena.scale)
        transport = arena.transport
        assert transport is None or isinstance(transport, httpx.AsyncBaseTransport)  # noqa: S101
        return ClientFetcher(
            AsyncBitbucketClient(
                auth=arena.mock.bearer(),
                flag=flag,
                policy=chosen,
                legacy_policy=chosen,
                base_url=arena.base_url,
                transport=transport,
                gate=_gate(arena, enabled=gate),
                **arena.client_timing(),
            )
        )

    return build


def _ours_sync(arena: Arena) -> SyncFetcher:
    transport = arena.transport
    assert transport is None or isinstance(transport, httpx.BaseTransport)  # noqa: S101
    return _OursSync(
        BitbucketClient(
            auth=arena.mock.bearer(),
            policy=_scaled(ExponentialBackoff(seed=arena.seed), arena.scale),
            base_url=arena.base_url,
            transport=transport,
            gate=_gate(arena, enabled=True),
            **arena.client_timing(),
        )
    )


# -- peers ----------------------------------------------------------------------------


class _PeerAsync:
    """A bare httpx client; ``get`` is the peer's retrying GET that raises for status."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.get: Callable[[str], Any] = self._bare_get

    async def _bare_get(self, url: str) -> httpx.Response:
        response = await self.http.get(url)
        response.raise_for_status()
        return response

    async def json(self, url: str) -> Any:
        return (await self.get(url)).json()

    async def text(self, url: str) -> str:
        return str((await self.get(url)).text)

    async def aclose(self) -> None:
        await self.http.aclose()


def _http_async(
    arena: Arena, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    inner = transport if transport is not None else arena.transport
    assert inner is None or isinstance(inner, httpx.AsyncBaseTransport)  # noqa: S101
    return httpx.AsyncClient(
        base_url=arena.base_url,
        transport=inner,
        headers=arena.headers(),
        follow_redirects=True,
        timeout=_TIMEOUT,
    )


def _tenacity(*, max_wait: float, attempts: int) -> Callable[[Arena], AsyncFetcher]:
    """tenacity's full-jitter exponential wait from 1 s up to ``max_wait`` s, ``attempts`` tries."""

    def build(arena: Arena) -> AsyncFetcher:
        import tenacity  # noqa: PLC0415 (peers load only when measured)

        scale = arena.scale
        peer = _PeerAsync(_http_async(arena))
        peer.get = tenacity.retry(
            # The multiplier is the exponential's unit (1 s): scaled with the bounds.
            wait=tenacity.wait_random_exponential(
                multiplier=1 * scale, min=1 * scale, max=max_wait * scale
            ),
            stop=tenacity.stop_after_attempt(attempts),
            retry=tenacity.retry_if_exception_type(httpx.HTTPError),
            reraise=True,
        )(peer._bare_get)  # noqa: SLF001
        return peer

    return build


def _stamina(*, hook: bool) -> Callable[[Arena], AsyncFetcher]:
    def build(arena: Arena) -> AsyncFetcher:
        import stamina  # noqa: PLC0415
        from stamina.instrumentation import set_on_retry_hooks  # noqa: PLC0415

        # stamina logs every retry at WARNING by default; thousands of lines
        # would bury the table (our own client logs at INFO, off by default).
        set_on_retry_hooks([])

        def retry_after(error: Exception) -> bool | float:
            """stamina's ``on`` hook: wait what Retry-After says, else retry HTTP errors."""
            if isinstance(error, httpx.HTTPStatusError) and error.response.status_code == 429:  # noqa: PLR2004
                value = error.response.headers.get("Retry-After", "")
                if value.strip().isdigit():
                    return float(value)
            return isinstance(error, httpx.HTTPError)

        peer = _PeerAsync(_http_async(arena))
        scale = arena.scale
        peer.get = stamina.retry(
            on=retry_after if hook else httpx.HTTPError,
            wait_initial=0.1 * scale,
            wait_max=5.0 * scale,
            wait_jitter=1.0 * scale,
            timeout=45.0 * scale,
        )(peer._bare_get)  # noqa: SLF001
        return peer

    return build


def _backoff(arena: Arena) -> AsyncFetcher:
    import backoff  # noqa: PLC0415

    peer = _PeerAsync(_http_async(arena))
    peer.get = backoff.on_exception(
        backoff.expo, httpx.HTTPError, max_tries=8, factor=arena.scale, logger=None
    )(peer._bare_get)  # noqa: SLF001
    return peer


def _httpx_retries(arena: Arena) -> AsyncFetcher:
    from httpx_retries import Retry, RetryTransport  # noqa: PLC0415

    inner = arena.transport if arena.transport is not None else httpx.AsyncHTTPTransport()
    assert isinstance(inner, httpx.AsyncBaseTransport)  # noqa: S101
    retry = Retry(total=5, backoff_factor=0.5 * arena.scale, max_backoff_wait=120.0 * arena.scale)
    return _PeerAsync(_http_async(arena, RetryTransport(transport=inner, retry=retry)))


class _Urllib3Sync:
    """urllib3's ``Retry`` deciding and sleeping around an httpx call, as a PoolManager would."""

    def __init__(self, arena: Arena) -> None:
        from urllib3.util.retry import Retry  # noqa: PLC0415

        transport = arena.transport
        assert transport is None or isinstance(transport, httpx.BaseTransport)  # noqa: S101
        self._http = httpx.Client(
            base_url=arena.base_url,
            transport=transport,
            headers=arena.headers(),
            follow_redirects=True,
            timeout=_TIMEOUT,
        )
        self._retry = Retry(
            total=5,
            backoff_factor=0.5 * arena.scale,
            backoff_max=120.0 * arena.scale,
            status_forcelist=[429, 500, 502, 503, 504],
        )

    def _get(self, url: str) -> httpx.Response:
        from urllib3 import HTTPResponse  # noqa: PLC0415
        from urllib3.exceptions import ConnectTimeoutError, ProtocolError, ReadTimeoutError  # noqa: PLC0415

        retry = self._retry
        while True:
            try:
                response = self._http.get(url)
            except (httpx.ConnectError, httpx.ConnectTimeout) as error:
                retry = retry.increment("GET", url, error=ConnectTimeoutError(str(error)))
            except httpx.ReadTimeout as error:
                retry = retry.increment("GET", url, error=ReadTimeoutError(None, url, str(error)))  # type: ignore[arg-type]
            except httpx.TransportError as error:
                retry = retry.increment("GET", url, error=ProtocolError(str(error)))
            else:
                has_hint = "Retry-After" in response.headers
                if not retry.is_retry("GET", response.status_code, has_hint):
                    response.raise_for_status()
                    return response
                seen = HTTPResponse(
                    body=b"", headers=dict(response.headers), status=response.status_code
                )
                retry = retry.increment("GET", url, response=seen)
                retry.sleep(seen)
                continue
            retry.sleep()

    def json(self, url: str) -> Any:
        return self._get(url).json()

    def text(self, url: str) -> str:
        return self._get(url).text

    def close(self) -> None:
        self._http.close()


CONTENDERS: Final = (
    Contender(
        "bb-backoff, flag on",
        "async",
        ours_async(flag=True, policy=lambda seed: ExponentialBackoff(seed=seed)),
    ),
    Contender(
        "bb-backoff, flag on, no gate",
        "async",
        # What the account gate adds: the same policy, each request on its own.
        ours_async(flag=True, policy=lambda seed: ExponentialBackoff(seed=seed), gate=False),
    ),
    Contender(
        "bb-backoff, flag off (legacy)",
        "async",
        ours_async(flag=False, policy=lambda _seed: FixedRetry()),
    ),
    Contender(
        "GITLAB_16_7 preset",
        "async",
        # GitLab's module has no account-wide coordination.
        ours_async(flag=True, policy=lambda seed: attrs.evolve(GITLAB_16_7, seed=seed), gate=False),
    ),
    Contender(
        "tenacity",
        "async",
        _tenacity(max_wait=60.0, attempts=6),
        requires="tenacity",
        patches=("tenacity",),
    ),
    Contender(
        "tenacity, tuned for an hourly limit",
        "async",
        _tenacity(max_wait=300.0, attempts=500),
        requires="tenacity",
        patches=("tenacity",),
    ),
    Contender("stamina", "async", _stamina(hook=False), requires="stamina", patches=("tenacity",)),
    Contender(
        "stamina + Retry-After hook",
        "async",
        _stamina(hook=True),
        requires="stamina",
        patches=("tenacity",),
    ),
    Contender("backoff", "async", _backoff, requires="backoff"),
    Contender("httpx-retries", "async", _httpx_retries, requires="httpx_retries"),
    Contender("bb-backoff, flag on (sync)", "sync", _ours_sync),
    Contender(
        "urllib3 Retry (sync)",
        "sync",
        _Urllib3Sync,
        requires="urllib3",
        patches=("urllib3.util.retry",),
    ),
)
"""Every contender, in the table's order."""


def contender_named(name: str) -> Contender:
    """The contender called ``name``.

    Raises:
        ValueError: for an unknown name.
    """
    for contender in CONTENDERS:
        if contender.name == name:
            return contender
    raise ValueError(f"unknown contender {name!r}")
