"""The pytest plugin (``bb_backoff.pytest_plugin``), run the way an importer's suite runs it.

Each test writes an outside test file and runs it with pytester in this
process: the plugin comes from the ``pytest11`` entry point, as it does for
any project that installs bb-backoff, so nothing here imports the fixtures.
Waits are virtual: the inner tests assert on virtual time, never wall time.
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import bb_backoff.pytest_plugin

pytest_plugins = ["pytester"]

DOCS = Path(__file__).parent.parent / "docs" / "testing.md"

# The inner suites run async tests on asyncio, as this project does.
ASYNCIO = """
import pytest

@pytest.fixture
def anyio_backend():
    return "asyncio"
"""


def passed_ids(pytester: pytest.Pytester, *args: str) -> list[str]:
    """Run the inner suite; the ids of the tests that passed, after checking none failed."""
    recorder = pytester.inline_run(*args)
    passed, skipped, failed = recorder.listoutcomes()
    assert (skipped, failed) == ([], [])
    assert recorder.getfailedcollections() == []
    return [report.nodeid.split("::")[-1] for report in passed]


# -- registration --------------------------------------------------------------------


def test_the_plugin_is_the_pytest11_entry_point_named_bb_backoff() -> None:
    plugins = {point.name: point.value for point in entry_points(group="pytest11")}
    assert plugins["bb_backoff"] == "bb_backoff.pytest_plugin"


def test_the_plugin_is_loaded_in_this_projects_own_session(pytestconfig: pytest.Config) -> None:
    assert pytestconfig.pluginmanager.get_plugin("bb_backoff") is bb_backoff.pytest_plugin


def test_loading_the_plugin_leaves_the_testing_helpers_and_the_benchmark_unimported() -> None:
    """Every pytest run of a project that installs bb-backoff loads the plugin: keep it light."""
    code = (
        "import sys, bb_backoff.pytest_plugin; "
        "print('bb_backoff.testing' in sys.modules, 'bb_backoff._bench' in sys.modules)"
    )
    out = subprocess.run(  # noqa: S603 (our own interpreter, a fixed script)
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["False", "False"]


# -- flag_variant ----------------------------------------------------------------------


def test_a_test_asking_for_a_client_runs_once_per_variant_with_that_flag(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        ASYNCIO
        + """
def test_sync_page(bitbucket_client, mock_bitbucket, flag_variant):
    slug = mock_bitbucket.dataset.repositories[0].slug
    page = next(bitbucket_client.pages(f"/repositories/acme/{slug}/pullrequests"))
    assert page.flag_variant == flag_variant

@pytest.mark.anyio
async def test_async_page(async_bitbucket_client, mock_bitbucket, flag_variant):
    slug = mock_bitbucket.dataset.repositories[0].slug
    pages = async_bitbucket_client.pages(f"/repositories/acme/{slug}/pullrequests")
    page = await pages.__anext__()
    await pages.aclose()
    assert page.flag_variant == flag_variant

def test_variant_alone(flag_variant):
    assert flag_variant in ("on", "off")

def test_without_a_client(virtual_clock, mock_bitbucket):
    assert virtual_clock.monotonic() == 0.0

@pytest.mark.parametrize("flag_variant", ["on"])
def test_one_variant_only(bitbucket_client, mock_bitbucket, flag_variant):
    slug = mock_bitbucket.dataset.repositories[0].slug
    assert bitbucket_client.repo("acme", slug)["slug"] == slug
"""
    )
    assert passed_ids(pytester) == [
        "test_sync_page[on]",
        "test_sync_page[off]",
        "test_async_page[on]",
        "test_async_page[off]",
        "test_variant_alone[on]",
        "test_variant_alone[off]",
        "test_without_a_client",
        "test_one_variant_only[on]",
    ]


def test_a_flag_variant_other_than_on_or_off_is_refused(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import pytest

@pytest.mark.parametrize("flag_variant", ["true"])
def test_it(bitbucket_client):
    pass
"""
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*ValueError: flag_variant must be 'on' or 'off', got 'true'"])


# -- virtual time ----------------------------------------------------------------------

HOUR_OF_429S = """
from bb_backoff import RateLimited

# Five requests an hour: the sixth is a 429, and so is every try for an hour.
pytestmark = pytest.mark.bb_backoff_mock(limit=5, window=3600)

def test_sync_import(bitbucket_client, mock_bitbucket, virtual_clock, flag_variant):
    slug = mock_bitbucket.dataset.repositories[0].slug
    if flag_variant == "off":  # the legacy retry gives up after three tries
        with pytest.raises(RateLimited):
            for _ in range(10):
                bitbucket_client.repo("acme", slug)
        assert virtual_clock.monotonic() < 60
        return
    for _ in range(10):
        bitbucket_client.repo("acme", slug)
    assert virtual_clock.monotonic() >= 3600
    assert mock_bitbucket.counters.ok == 10
    assert mock_bitbucket.counters.rate_limited >= 1

@pytest.mark.anyio
async def test_async_import(async_bitbucket_client, mock_bitbucket, virtual_clock, flag_variant):
    slug = mock_bitbucket.dataset.repositories[0].slug
    if flag_variant == "off":
        with pytest.raises(RateLimited):
            for _ in range(10):
                await async_bitbucket_client.repo("acme", slug)
        assert virtual_clock.monotonic() < 60
        return
    for _ in range(10):
        await async_bitbucket_client.repo("acme", slug)
    assert virtual_clock.monotonic() >= 3600
    assert mock_bitbucket.counters.ok == 10
    assert mock_bitbucket.counters.rate_limited >= 1
"""


def test_an_hour_of_429s_is_waited_out_on_virtual_time_sync_and_async(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(ASYNCIO + HOUR_OF_429S)
    assert passed_ids(pytester) == [
        "test_sync_import[on]",
        "test_sync_import[off]",
        "test_async_import[on]",
        "test_async_import[off]",
    ]


def test_concurrent_tasks_under_run_virtual_wait_together(pytester: pytest.Pytester) -> None:
    """On the virtual event loop the client's and the mock's waits are timers, not jumps."""
    pytester.makepyfile(
        """
import asyncio
import pytest
from bb_backoff.testing import run_virtual

@pytest.mark.bb_backoff_mock(latency=10)
@pytest.mark.parametrize("flag_variant", ["off"])
def test_two_requests_at_once(async_bitbucket_client, mock_bitbucket, virtual_clock):
    mock_bitbucket.script(503, 503)  # each request: a 503, the legacy 1 s wait, a retry

    async def main():
        return await asyncio.gather(
            async_bitbucket_client.user(), async_bitbucket_client.user()
        )

    first, second = run_virtual(main(), virtual_clock)
    assert first == second
    # 10 s response, 1 s wait, 10 s response; both tasks at once, not one after the other
    assert virtual_clock.monotonic() == 21.0
    assert sorted(virtual_clock.sleeps) == [1.0, 1.0, 10.0, 10.0, 10.0, 10.0]
"""
    )
    assert passed_ids(pytester) == ["test_two_requests_at_once[off]"]


# -- closing -----------------------------------------------------------------------


def test_the_client_fixtures_close_their_clients_after_the_test(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        ASYNCIO
        + """
opened = []

def test_sync(bitbucket_client):
    opened.append(bitbucket_client)
    assert not bitbucket_client._http.is_closed

@pytest.mark.anyio
async def test_async(async_bitbucket_client):
    opened.append(async_bitbucket_client)
    assert not async_bitbucket_client._http.is_closed

def test_async_in_a_sync_test(async_bitbucket_client):
    opened.append(async_bitbucket_client)

def test_all_closed_afterwards():
    assert len(opened) == 6
    assert [client._http.is_closed for client in opened] == [True] * 6
"""
    )
    assert passed_ids(pytester)[-1] == "test_all_closed_afterwards"


# -- options -------------------------------------------------------------------------


def test_mock_options_come_from_the_fixture_then_the_markers_closest_last(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
import pytest

pytestmark = pytest.mark.bb_backoff_mock(limit=7)

@pytest.fixture
def bb_backoff_mock_options():
    return {"limit": 9, "window": 60, "seed": 4}

def test_module_marker_over_the_fixture(mock_bitbucket):
    assert (mock_bitbucket.limit, mock_bitbucket.window) == (7, 60.0)

@pytest.mark.bb_backoff_mock(limit=3)
def test_test_marker_over_the_module_marker(mock_bitbucket):
    assert (mock_bitbucket.limit, mock_bitbucket.window) == (3, 60.0)

def test_the_seed_gives_the_dataset(mock_bitbucket):
    from bb_backoff.testing import Dataset
    assert mock_bitbucket.dataset == Dataset.generate(4, mock_bitbucket.dataset.size)
"""
    )
    assert passed_ids(pytester, "--strict-markers") == [
        "test_module_marker_over_the_fixture",
        "test_test_marker_over_the_module_marker",
        "test_the_seed_gives_the_dataset",
    ]


def test_the_mock_runs_on_the_tests_virtual_clock_with_a_small_seeded_dataset(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
import httpx
import pytest
from bb_backoff.testing import Dataset

@pytest.mark.bb_backoff_mock(latency=5)
def test_it(mock_bitbucket, virtual_clock):
    assert mock_bitbucket.dataset == Dataset.generate(0, mock_bitbucket.dataset.size)
    assert len(mock_bitbucket.dataset.repositories) == 2
    with httpx.Client(transport=mock_bitbucket.transport()) as http:
        response = http.get(
            mock_bitbucket.base_url + "/user",
            headers={"Authorization": f"Bearer {mock_bitbucket.access_token}"},
        )
    assert response.status_code == 200
    assert (virtual_clock.monotonic(), virtual_clock.sleeps) == (5.0, [5.0])
"""
    )
    assert passed_ids(pytester) == ["test_it"]


def test_client_options_reach_both_clients(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import pytest
from bb_backoff import FixedRetry

@pytest.fixture
def bb_backoff_client_options():
    return {"actor": "Project:42", "legacy_policy": FixedRetry(max_attempts=1)}

def test_sync(bitbucket_client):
    assert (bitbucket_client.actor, bitbucket_client.legacy_policy.max_attempts) == (
        "Project:42", 1
    )

def test_async(async_bitbucket_client):
    assert async_bitbucket_client.actor == "Project:42"
"""
    )
    assert passed_ids(pytester) == [
        "test_sync[on]",
        "test_sync[off]",
        "test_async[on]",
        "test_async[off]",
    ]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (
            '@pytest.fixture\ndef bb_backoff_mock_options():\n    return {"sleep": print}\n',
            "ValueError: bb_backoff_mock_options must not set sleep: *",
        ),
        (
            "pytestmark = pytest.mark.bb_backoff_mock(clock=None, now=None)\n",
            "ValueError: @pytest.mark.bb_backoff_mock must not set clock, now: *",
        ),
        (
            "pytestmark = pytest.mark.bb_backoff_mock(5)\n",
            "ValueError: @pytest.mark.bb_backoff_mock takes keyword arguments only, got (5,)",
        ),
        (
            '@pytest.fixture\ndef bb_backoff_client_options():\n    return {"flag": True}\n',
            "ValueError: bb_backoff_client_options must not set flag: *",
        ),
        (
            "@pytest.fixture\ndef bb_backoff_client_options():\n    return 'actor=Project:42'\n",
            (
                "ValueError: bb_backoff_client_options must be a dict of keyword arguments, "
                "got 'actor=Project:42'"
            ),
        ),
    ],
    ids=["mock-options", "marker", "marker-positional", "client-options", "not-a-dict"],
)
def test_options_the_plugin_owns_are_refused_naming_them(
    pytester: pytest.Pytester, setup: str, message: str
) -> None:
    pytester.makepyfile(
        "import pytest\n\n"
        + setup
        + "\n@pytest.mark.parametrize('flag_variant', ['on'])\n"
        + "def test_it(bitbucket_client):\n    pass\n"
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*{message}"])


def test_the_marker_is_registered_for_strict_markers(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.bb_backoff_mock(**options): MockBitbucket *"])


# -- docs/testing.md -----------------------------------------------------------------


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", markdown, flags=re.DOTALL | re.MULTILINE)


def test_every_example_in_the_testing_guide_passes_as_a_test_file(
    pytester: pytest.Pytester,
) -> None:
    blocks = python_blocks(DOCS.read_text())
    assert len(blocks) >= 4
    for number, block in enumerate(blocks):
        pytester.makepyfile(**{f"test_example_{number}": block})
    result = pytester.runpytest("--strict-markers", "-W", "error")
    outcomes = result.parseoutcomes()
    assert set(outcomes) == {"passed"}, result.stdout.str()
