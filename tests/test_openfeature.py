"""OpenFeatureFlag (``_openfeature.py``) against the real SDK and its in-memory provider.

The first half asks the source directly (targeting, errors, the flag's key);
the second half runs the clients, sync and async mirrored, on the mock API
and virtual time: the provider's answer picks the policy of every request,
and a provider that cannot answer is a failure of the source (legacy policy,
a warning, ``flag_errors``), never a silent "off".
"""

from __future__ import annotations

import logging
import pickle
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ProviderFatalError
from openfeature.flag_evaluation import FlagResolutionDetails, Reason
from openfeature.provider import FeatureProvider
from openfeature.provider.in_memory_provider import InMemoryFlag, InMemoryProvider

from bb_backoff import (
    FLAG_NAME,
    AccountGate,
    AsyncBitbucketClient,
    BitbucketClient,
    FlagSource,
    MemoryStore,
    Page,
    RateLimited,
    RetryEvent,
)
from bb_backoff.openfeature import FlagEvaluationError, OpenFeatureFlag
from bb_backoff.testing import DatasetSize, MockBitbucket, VirtualClock

ROLLED_OUT = "Project:42"
"""The one actor the targeted flag is on for."""
OTHER = "Project:7"

Install = Callable[[dict[str, InMemoryFlag[Any]]], InMemoryProvider]


@pytest.fixture
def install_flags() -> Iterator[Install]:
    """Installs an in-memory provider as the global default; the previous one comes back after."""
    previous = api.get_client().provider

    def install(flags: dict[str, InMemoryFlag[Any]]) -> InMemoryProvider:
        provider = InMemoryProvider(flags)
        api.set_provider_and_wait(provider)
        return provider

    yield install
    api.set_provider_and_wait(previous)
    assert api.get_client().provider is previous


def static_flag(on: bool) -> InMemoryFlag[bool]:
    return InMemoryFlag("on" if on else "off", {"on": True, "off": False})


def targeted_flag(actor: str, seen: list[str | None] | None = None) -> InMemoryFlag[bool]:
    """On for ``actor`` only, by the in-memory flag's context evaluator."""

    def evaluate(
        flag: InMemoryFlag[bool], context: EvaluationContext
    ) -> FlagResolutionDetails[bool]:
        if seen is not None:
            seen.append(context.targeting_key)
        variant = "on" if context.targeting_key == actor else "off"
        return FlagResolutionDetails(
            value=flag.variants[variant], variant=variant, reason=Reason.TARGETING_MATCH
        )

    return InMemoryFlag("off", {"on": True, "off": False}, context_evaluator=evaluate)


# -- the source on its own -----------------------------------------------------------


def test_openfeature_flag_satisfies_the_flag_source_protocol(install_flags: Install) -> None:
    assert isinstance(OpenFeatureFlag(), FlagSource)


def test_context_evaluator_turns_the_flag_on_for_the_targeted_actor_only(
    install_flags: Install,
) -> None:
    seen: list[str | None] = []
    install_flags({FLAG_NAME: targeted_flag(ROLLED_OUT, seen)})
    flag = OpenFeatureFlag()
    answers = [flag.enabled(FLAG_NAME, actor) for actor in [ROLLED_OUT, OTHER, None]]
    assert answers == [True, False, False]
    assert seen == [ROLLED_OUT, OTHER, None]  # the actor is the targeting key; None: no key


@pytest.mark.anyio
async def test_async_context_evaluator_turns_the_flag_on_for_the_targeted_actor_only(
    install_flags: Install,
) -> None:
    seen: list[str | None] = []
    install_flags({FLAG_NAME: targeted_flag(ROLLED_OUT, seen)})
    flag = OpenFeatureFlag()
    answers = [await flag.enabled_async(FLAG_NAME, actor) for actor in [ROLLED_OUT, OTHER, None]]
    assert answers == [True, False, False]
    assert seen == [ROLLED_OUT, OTHER, None]


@pytest.mark.parametrize("on", [True, False])
def test_static_flag_answers_its_default_variant_for_every_actor(
    install_flags: Install, on: bool
) -> None:
    install_flags({FLAG_NAME: static_flag(on)})
    flag = OpenFeatureFlag()
    assert [flag.enabled(FLAG_NAME, actor) for actor in [ROLLED_OUT, None]] == [on, on]


def test_a_flag_the_provider_reports_disabled_is_off_and_not_an_error(
    install_flags: Install,
) -> None:
    """Reason DISABLED with the default value is a flag switched off, not a failure."""

    def disabled(
        _flag: InMemoryFlag[bool], _context: EvaluationContext
    ) -> FlagResolutionDetails[bool]:
        return FlagResolutionDetails(value=False, reason=Reason.DISABLED)

    install_flags({FLAG_NAME: InMemoryFlag("on", {"on": True}, context_evaluator=disabled)})
    assert OpenFeatureFlag().enabled(FLAG_NAME, ROLLED_OUT) is False


def test_a_missing_flag_raises_flag_evaluation_error_with_the_sdks_error_code(
    install_flags: Install,
) -> None:
    install_flags({})
    with pytest.raises(FlagEvaluationError) as caught:
        OpenFeatureFlag().enabled(FLAG_NAME, ROLLED_OUT)
    error = caught.value
    assert (error.flag_key, error.actor, error.error_code) == (
        FLAG_NAME,
        ROLLED_OUT,
        "FLAG_NOT_FOUND",
    )
    assert str(error) == (
        f"OpenFeature could not evaluate {FLAG_NAME!r} for {ROLLED_OUT!r}: "
        f"FLAG_NOT_FOUND (Flag '{FLAG_NAME}' not found)"
    )


@pytest.mark.anyio
async def test_async_a_missing_flag_raises_flag_evaluation_error(install_flags: Install) -> None:
    install_flags({})
    with pytest.raises(FlagEvaluationError) as caught:
        await OpenFeatureFlag().enabled_async(FLAG_NAME, ROLLED_OUT)
    assert caught.value.error_code == "FLAG_NOT_FOUND"


@pytest.mark.parametrize("truthy", ["true", 1])
def test_a_flag_with_non_bool_variants_is_a_type_mismatch_not_on(
    install_flags: Install, truthy: object
) -> None:
    """A flag configured with string or number variants ("true", 1) never switches it on."""
    install_flags({FLAG_NAME: InMemoryFlag("on", {"on": truthy, "off": "false"})})
    with pytest.raises(FlagEvaluationError) as caught:
        OpenFeatureFlag().enabled(FLAG_NAME, ROLLED_OUT)
    assert caught.value.error_code == "TYPE_MISMATCH"


def error_reason(
    _flag: InMemoryFlag[bool], _context: EvaluationContext
) -> FlagResolutionDetails[bool]:
    """A provider that says True, but with reason ERROR and no error code."""
    return FlagResolutionDetails(value=True, reason=Reason.ERROR)


def test_an_error_reason_without_an_error_code_is_a_failure_even_with_value_true(
    install_flags: Install,
) -> None:
    install_flags({FLAG_NAME: InMemoryFlag("on", {"on": True}, context_evaluator=error_reason)})
    with pytest.raises(FlagEvaluationError) as caught:
        OpenFeatureFlag().enabled(FLAG_NAME, ROLLED_OUT)
    assert (caught.value.error_code, caught.value.error_message) == ("GENERAL", None)


@pytest.mark.anyio
async def test_async_an_error_reason_without_an_error_code_is_a_failure_even_with_value_true(
    install_flags: Install,
) -> None:
    install_flags({FLAG_NAME: InMemoryFlag("on", {"on": True}, context_evaluator=error_reason)})
    with pytest.raises(FlagEvaluationError) as caught:
        await OpenFeatureFlag().enabled_async(FLAG_NAME, ROLLED_OUT)
    assert caught.value.error_code == "GENERAL"


def test_a_provider_that_raises_is_an_evaluation_error_carrying_its_message(
    install_flags: Install, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(
        _flag: InMemoryFlag[bool], _context: EvaluationContext
    ) -> FlagResolutionDetails[bool]:
        raise RuntimeError("flag service timed out")

    caplog.set_level(logging.CRITICAL, logger="openfeature")  # the SDK logs the traceback
    install_flags({FLAG_NAME: InMemoryFlag("on", {"on": True}, context_evaluator=broken)})
    with pytest.raises(FlagEvaluationError) as caught:
        OpenFeatureFlag().enabled(FLAG_NAME, ROLLED_OUT)
    assert (caught.value.error_code, caught.value.error_message) == (
        "GENERAL",
        "flag service timed out",
    )


def test_a_provider_that_failed_to_start_is_an_evaluation_error(install_flags: Install) -> None:
    class UnreachableProvider(InMemoryProvider):
        def initialize(self, evaluation_context: EvaluationContext) -> None:
            raise ProviderFatalError("flag service unreachable")

    with pytest.raises(ProviderFatalError):
        api.set_provider_and_wait(UnreachableProvider({FLAG_NAME: static_flag(True)}))
    with pytest.raises(FlagEvaluationError) as caught:
        OpenFeatureFlag().enabled(FLAG_NAME, ROLLED_OUT)
    assert caught.value.error_code == "PROVIDER_FATAL"


def test_flag_name_maps_the_librarys_flag_to_the_providers_key(install_flags: Install) -> None:
    install_flags({"bitbucket-importer-exponential-backoff": static_flag(True)})
    flag = OpenFeatureFlag(flag_name="bitbucket-importer-exponential-backoff")
    assert flag.enabled(FLAG_NAME, ROLLED_OUT) is True
    with pytest.raises(FlagEvaluationError) as caught:
        flag.enabled("some_other_flag", ROLLED_OUT)  # asked as it is: the provider lacks it
    assert caught.value.flag_key == "some_other_flag"


def test_an_explicit_client_is_the_one_asked(install_flags: Install) -> None:
    install_flags({FLAG_NAME: static_flag(True)})
    client = api.get_client()
    flag = OpenFeatureFlag(client)
    assert (flag.client, flag.enabled(FLAG_NAME, None)) == (client, True)


def test_a_provider_set_after_the_source_was_built_is_used(install_flags: Install) -> None:
    flag = OpenFeatureFlag()
    install_flags({FLAG_NAME: static_flag(True)})
    assert flag.enabled(FLAG_NAME, ROLLED_OUT) is True


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"client": object()}, r"^client must be an OpenFeature client, got object$"),
        ({"flag_name": ""}, r"^flag_name must be a non-empty string, got ''$"),
        ({"flag_name": 3}, r"^flag_name must be a non-empty string, got 3$"),
    ],
)
def test_invalid_arguments_raise_naming_the_parameter(
    arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        OpenFeatureFlag(**arguments)


def test_repr_names_the_key_and_the_clients_domain() -> None:
    flag = OpenFeatureFlag(api.get_client("importer"), flag_name="backoff")
    assert repr(flag) == "OpenFeatureFlag(flag_name='backoff', domain='importer')"


def test_flag_evaluation_error_survives_pickling() -> None:
    error = FlagEvaluationError(FLAG_NAME, None, "GENERAL", "boom")
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 (our own bytes)
    assert (type(copy), str(copy), copy.error_code) == (type(error), str(error), "GENERAL")


def test_the_sdk_is_imported_only_when_a_source_is_built() -> None:
    code = (
        "import sys, bb_backoff, bb_backoff.openfeature; "
        "before = 'openfeature' in sys.modules; "
        "bb_backoff.openfeature.OpenFeatureFlag(); "
        "print(before, 'openfeature' in sys.modules)"
    )
    out = subprocess.run(  # noqa: S603 (our own interpreter, a fixed script)
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["False", "True"]


# -- through the clients, on the mock and virtual time -----------------------------

# 25 pull requests (every state) in pages of 10: three logical requests, each asking the flag.
SIZE = DatasetSize(
    repositories=1,
    pull_requests=25,
    comments_per_pull_request=0,
    issues=0,
    comments_per_issue=0,
    members=1,
)
PAGE_PARAMS = {"state": "ALL", "pagelen": 10}


def virtual_mock(clock: VirtualClock, **options: Any) -> MockBitbucket:
    return MockBitbucket(
        seed=3,
        size=SIZE,
        clock=clock.monotonic,
        now=clock.time,
        sleep=clock.sleep,
        async_sleep=clock.sleep,
        **options,
    )


def pull_requests_path(mock: MockBitbucket) -> str:
    return f"/repositories/{mock.dataset.repositories[0].full_name}/pullrequests"


def sync_client(
    mock: MockBitbucket, clock: VirtualClock, actor: str, events: list[RetryEvent]
) -> BitbucketClient:
    return BitbucketClient(
        auth=mock.bearer(),
        transport=mock.transport(),
        flag=OpenFeatureFlag(),
        actor=actor,
        on_retry=events.append,
        gate=AccountGate(store=MemoryStore()),
        clock=clock.monotonic,
        now=clock.time,
        sleep=clock.sleep,
    )


def async_client(
    mock: MockBitbucket, clock: VirtualClock, actor: str, events: list[RetryEvent]
) -> AsyncBitbucketClient:
    return AsyncBitbucketClient(
        auth=mock.bearer(),
        transport=mock.async_transport(),
        flag=OpenFeatureFlag(),
        actor=actor,
        on_retry=events.append,
        gate=AccountGate(store=MemoryStore()),
        clock=clock.monotonic,
        now=clock.time,
        sleep=clock.sleep,
    )


def warnings_from_bb_backoff(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name == "bb_backoff" and record.levelno == logging.WARNING
    ]


async def read_pages(client: AsyncBitbucketClient, path: str, pages: list[Page]) -> None:
    """Append each page as it comes, so the pages before an error are kept."""
    async for page in client.pages(path, PAGE_PARAMS):
        pages.append(page)  # noqa: PERF401 (a comprehension would lose them on the error)


def pull_request_ids(pages: list[Page]) -> list[int]:
    return [pull_request["id"] for page in pages for pull_request in page.values]


def test_sync_targeted_actor_waits_out_the_rate_limit_with_the_exponential_policy(
    install_flags: Install,
) -> None:
    """Two requests a minute: the third page waits for the window; a 503 and 429s are retried."""
    install_flags({FLAG_NAME: targeted_flag(ROLLED_OUT)})
    clock = VirtualClock()
    mock = virtual_mock(clock, limit=2, window=60)
    mock.script(503)
    events: list[RetryEvent] = []
    with sync_client(mock, clock, ROLLED_OUT, events) as client:
        pages = list(client.pages(pull_requests_path(mock), PAGE_PARAMS))
        errors = client.flag_errors
    assert pull_request_ids(pages) == list(range(1, 26))
    assert [page.flag_variant for page in pages] == ["on", "on", "on"]
    assert {(event.flag_variant, event.actor) for event in events} == {("on", ROLLED_OUT)}
    assert {event.status for event in events} == {503, 429}  # the scripted fault, the window
    assert errors == 0
    assert clock.monotonic() >= 60  # the third page waited for the rolling window


@pytest.mark.anyio
async def test_async_targeted_actor_waits_out_the_rate_limit_with_the_exponential_policy(
    install_flags: Install,
) -> None:
    install_flags({FLAG_NAME: targeted_flag(ROLLED_OUT)})
    clock = VirtualClock()
    mock = virtual_mock(clock, limit=2, window=60)
    mock.script(503)
    events: list[RetryEvent] = []
    async with async_client(mock, clock, ROLLED_OUT, events) as client:
        pages = [page async for page in client.pages(pull_requests_path(mock), PAGE_PARAMS)]
        errors = client.flag_errors
    assert pull_request_ids(pages) == list(range(1, 26))
    assert [page.flag_variant for page in pages] == ["on", "on", "on"]
    assert {(event.flag_variant, event.actor) for event in events} == {("on", ROLLED_OUT)}
    assert {event.status for event in events} == {503, 429}  # the scripted fault, the window
    assert errors == 0
    assert clock.monotonic() >= 60


def test_sync_untargeted_actor_keeps_the_legacy_policy_and_gives_up_on_the_rate_limit(
    install_flags: Install,
) -> None:
    install_flags({FLAG_NAME: targeted_flag(ROLLED_OUT)})
    clock = VirtualClock()
    mock = virtual_mock(clock, limit=2, window=60)
    events: list[RetryEvent] = []
    pages: list[Page] = []
    with sync_client(mock, clock, OTHER, events) as client, pytest.raises(RateLimited) as caught:
        pages.extend(client.pages(pull_requests_path(mock), PAGE_PARAMS))
    assert [page.flag_variant for page in pages] == ["off", "off"]
    assert (caught.value.flag_variant, caught.value.attempts) == ("off", 3)
    assert [(event.status, event.flag_variant) for event in events] == [(429, "off")] * 2
    assert clock.sleeps == [1.0, 1.0]  # FixedRetry's waits


@pytest.mark.anyio
async def test_async_untargeted_actor_keeps_the_legacy_policy_and_gives_up_on_the_rate_limit(
    install_flags: Install,
) -> None:
    install_flags({FLAG_NAME: targeted_flag(ROLLED_OUT)})
    clock = VirtualClock()
    mock = virtual_mock(clock, limit=2, window=60)
    events: list[RetryEvent] = []
    pages: list[Page] = []
    async with async_client(mock, clock, OTHER, events) as client:
        with pytest.raises(RateLimited) as caught:
            await read_pages(client, pull_requests_path(mock), pages)
    assert [page.flag_variant for page in pages] == ["off", "off"]
    assert (caught.value.flag_variant, caught.value.attempts) == ("off", 3)
    assert [(event.status, event.flag_variant) for event in events] == [(429, "off")] * 2
    assert clock.sleeps == [1.0, 1.0]


def test_sync_rollback_in_the_provider_applies_from_the_next_request(
    install_flags: Install,
) -> None:
    install_flags({FLAG_NAME: static_flag(True)})
    clock = VirtualClock()
    mock = virtual_mock(clock)
    events: list[RetryEvent] = []
    variants: list[str | None] = []
    with sync_client(mock, clock, ROLLED_OUT, events) as client:
        for page in client.pages(pull_requests_path(mock), PAGE_PARAMS):
            variants.append(page.flag_variant)
            install_flags({FLAG_NAME: static_flag(False)})  # the rollback
        errors = client.flag_errors
    assert variants == ["on", "off", "off"]
    assert errors == 0


@pytest.mark.anyio
async def test_async_rollback_in_the_provider_applies_from_the_next_request(
    install_flags: Install,
) -> None:
    install_flags({FLAG_NAME: static_flag(True)})
    clock = VirtualClock()
    mock = virtual_mock(clock)
    events: list[RetryEvent] = []
    variants: list[str | None] = []
    async with async_client(mock, clock, ROLLED_OUT, events) as client:
        async for page in client.pages(pull_requests_path(mock), PAGE_PARAMS):
            variants.append(page.flag_variant)
            install_flags({FLAG_NAME: static_flag(False)})
        errors = client.flag_errors
    assert variants == ["on", "off", "off"]
    assert errors == 0


def test_sync_missing_flag_is_a_source_failure_legacy_policy_and_a_warning(
    install_flags: Install, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bb_backoff")
    install_flags({})
    clock = VirtualClock()
    mock = virtual_mock(clock)
    mock.script(503)
    events: list[RetryEvent] = []
    with sync_client(mock, clock, ROLLED_OUT, events) as client:
        pages = list(client.pages(pull_requests_path(mock), PAGE_PARAMS))
        errors = client.flag_errors
    assert [page.flag_variant for page in pages] == ["off", "off", "off"]
    assert errors == 3
    assert [(event.status, event.flag_variant) for event in events] == [(503, "off")]
    assert clock.sleeps == [1.0]  # FixedRetry's wait
    warnings = warnings_from_bb_backoff(caplog)
    assert len(warnings) == 1  # three failures in a row: one warning
    assert "legacy policy" in warnings[0].getMessage()
    assert warnings[0].exc_info is not None
    assert warnings[0].exc_info[0] is FlagEvaluationError


@pytest.mark.anyio
async def test_async_missing_flag_is_a_source_failure_legacy_policy_and_a_warning(
    install_flags: Install, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bb_backoff")
    install_flags({})
    clock = VirtualClock()
    mock = virtual_mock(clock)
    mock.script(503)
    events: list[RetryEvent] = []
    async with async_client(mock, clock, ROLLED_OUT, events) as client:
        pages = [page async for page in client.pages(pull_requests_path(mock), PAGE_PARAMS)]
        errors = client.flag_errors
    assert [page.flag_variant for page in pages] == ["off", "off", "off"]
    assert errors == 3
    assert [(event.status, event.flag_variant) for event in events] == [(503, "off")]
    assert clock.sleeps == [1.0]
    warnings = warnings_from_bb_backoff(caplog)
    assert len(warnings) == 1  # three failures in a row: one warning
    assert "legacy policy" in warnings[0].getMessage()
    assert warnings[0].exc_info is not None
    assert warnings[0].exc_info[0] is FlagEvaluationError


@pytest.mark.anyio
async def test_async_client_awaits_the_sdks_async_evaluation(install_flags: Install) -> None:
    class AsyncOnlyProvider(InMemoryProvider):
        """Answers on only through the async path, so the test sees which path ran."""

        def resolve_boolean_details(
            self,
            flag_key: str,
            default_value: bool,
            evaluation_context: EvaluationContext | None = None,
        ) -> FlagResolutionDetails[bool]:
            return FlagResolutionDetails(value=False, reason=Reason.STATIC)

    provider: FeatureProvider = AsyncOnlyProvider({FLAG_NAME: static_flag(True)})
    api.set_provider_and_wait(provider)  # install_flags puts the previous provider back
    clock = VirtualClock()
    mock = virtual_mock(clock)
    events: list[RetryEvent] = []
    async with async_client(mock, clock, ROLLED_OUT, events) as client:
        pages = [page async for page in client.pages(pull_requests_path(mock), PAGE_PARAMS)]
    assert [page.flag_variant for page in pages] == ["on", "on", "on"]
