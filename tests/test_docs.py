"""The docs show what the code does, and every example in them runs.

- The schedule table is the one the code prints, as is the rollout page's
  sample of the default simulation; README's benchmark table is the latest
  results'; the site's home page opens as README does.
- Every fenced ``python`` block in README.md and docs/*.md runs, in order, one
  namespace per file (a block may use what an earlier block of its file
  defined), so an example cannot rot.  A block opts out only with an
  ``<!-- not-run: reason -->`` comment on the line before its fence, for what
  the suite cannot give (a real Bitbucket token, say); ``sh``, ``console``,
  ``text`` and unlabelled blocks are not Python and never run.
- The API reference lists every public name, and the griffe extensions it
  is built with (docs/_ext/griffe_reference.py) do their jobs.
"""

from __future__ import annotations

import inspect
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

import bb_backoff
from bb_backoff._cli import main, schedule_table
from files import load_file

ROOT = Path(__file__).parent.parent


def test_the_policies_page_shows_the_current_schedules() -> None:
    page = (ROOT / "docs" / "policies.md").read_text()
    assert schedule_table() in page


def test_the_rollout_page_shows_what_the_default_simulation_prints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The sample after "The default run prints" is `rollout-report --simulate`'s table and verdict.

    The simulation runs on virtual time from seed 0: the same output every
    run, for about 3 s of CPU.
    """
    page = (ROOT / "docs" / "rollout.md").read_text()
    opening = "The default run prints (the legend of the columns follows the verdict):\n\n```\n"
    start = page.index(opening) + len(opening)
    sample = page[start : page.index("\n```", start)]
    assert sample.startswith("| step | variant |")
    assert main(["rollout-report", "--simulate"]) == 0
    assert sample in capsys.readouterr().out


def test_readme_opens_with_the_two_quickstart_commands() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    opening = lines[lines.index("```sh") + 1 : lines.index("```sh") + 3]
    assert opening[0].endswith("bb-backoff bench")
    assert opening[1].endswith("python -m pytest")


def test_readme_shows_the_latest_benchmark_table() -> None:
    """README and benchmarks/results/table.md are written by the same run: they must agree.

    Only the full default run from the checkout's root (README's first line)
    writes table.md; any other local run (a scenario, --quick, --seed, ...)
    writes nowhere unless told --output, so it cannot break this test.
    """
    table = (ROOT / "benchmarks" / "results" / "table.md").read_text().strip()
    assert table in (ROOT / "README.md").read_text()


def test_the_home_page_opens_as_the_readme_does() -> None:
    """docs/index.md repeats README up to the benchmark section, links made relative to docs/."""
    readme = (ROOT / "README.md").read_text()
    opening = readme[: readme.index("\n## What the flag does to an import\n")]
    home = (ROOT / "docs" / "index.md").read_text()
    assert home.startswith(opening.replace("](docs/", "]("))


# -- every example runs ---------------------------------------------------------------

# Pages whose examples another test runs, with what they need there: running
# them here too would only run them twice.
RUN_ELSEWHERE = {
    # As test files of a pytester run, with the plugin's fixtures.
    "docs/testing.md": "tests/test_pytest_plugin.py::"
    "test_every_example_in_the_testing_guide_passes_as_a_test_file",
    # Against the suite's real redis-server.
    "docs/flags.md": "tests/test_flipper_redis.py::"
    "test_every_python_example_in_the_flags_page_runs",
}

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\s]*)[^`]*$")
_NOT_RUN = re.compile(r"^\s*<!--\s*not-run:(?P<reason>.*?)-->\s*$")


@attrs.frozen
class Example:
    """One fenced Python block of a page."""

    page: str
    line: int
    """The line of the block's first line of code, counting from 1."""
    code: str
    not_run: str | None = None
    """Why it does not run, from its ``<!-- not-run: reason -->`` marker."""


def _closes(line: str, fence: str) -> bool:
    """Whether ``line`` closes a block opened by ``fence``: the same character, as many or more."""
    text = line.strip()
    return text.startswith(fence) and text == fence[0] * len(text)


def python_examples(page: str, markdown: str) -> list[Example]:
    """The fenced ``python`` blocks of a markdown page, in order."""
    examples: list[Example] = []
    lines = markdown.splitlines()
    number = 0
    while number < len(lines):
        opening = _FENCE.match(lines[number])
        number += 1
        if opening is None:
            continue
        indent, fence, info = opening["indent"], opening["fence"], opening["info"]
        start = number
        while number < len(lines) and not _closes(lines[number], fence):
            number += 1
        if info.lower() in {"python", "py"}:
            body = [line.removeprefix(indent) for line in lines[start:number]]
            before = next((line for line in reversed(lines[: start - 1]) if line.strip()), "")
            marker = _NOT_RUN.match(before)
            examples.append(
                Example(
                    page=page,
                    line=start + 1,
                    code="\n".join(body) + "\n",
                    not_run=None if marker is None else marker["reason"].strip(),
                )
            )
        number += 1  # past the closing fence
    return examples


def documented_pages() -> list[str]:
    pages = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "docs").rglob("*.md"))
    return ["README.md", *pages]


def test_the_extractor_finds_python_blocks_with_their_lines_and_markers() -> None:
    markdown = "\n".join(
        [
            "# A page",  # 1
            "```python",  # 2
            "x = 1",  # 3
            "```",  # 4
            "```sh",  # 5
            "pip install bb-backoff",  # 6
            "```",  # 7
            "<!-- not-run: needs a real Bitbucket token -->",  # 8
            "",  # 9
            "```python",  # 10
            "client = connect(real_token)",  # 11
            "```",  # 12
            "- a list item:",  # 13
            "",  # 14
            "    ````py",  # 15
            "    y = x + 1",  # 16
            "    ```",  # 17
            "    ````",  # 18
            "```",  # 19
            "not python",  # 20
            "```",  # 21
        ]
    )
    assert python_examples("page.md", markdown) == [
        Example(page="page.md", line=3, code="x = 1\n"),
        Example(
            page="page.md",
            line=11,
            code="client = connect(real_token)\n",
            not_run="needs a real Bitbucket token",
        ),
        Example(page="page.md", line=16, code="y = x + 1\n```\n"),
    ]


def test_the_pages_skipped_here_are_run_by_the_tests_named() -> None:
    """A page skipped here must hold examples, and the test said to run them must exist."""
    for page, test in RUN_ELSEWHERE.items():
        assert python_examples(page, (ROOT / page).read_text()), page
        path, name = test.split("::")
        assert f"\ndef {name}(" in (ROOT / path).read_text(), test
        assert page.removeprefix("docs/") in (ROOT / path).read_text(), test


def test_every_not_run_marker_says_why() -> None:
    for page in documented_pages():
        for example in python_examples(page, (ROOT / page).read_text()):
            assert example.not_run != "", f"{page}:{example.line}: not-run without a reason"


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """An example that would reach a real server (Bitbucket, say) fails at once, not later."""
    resolve = socket.getaddrinfo

    def local_only(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in {"localhost", "127.0.0.1", "::1", None}:
            raise OSError(f"a docs example tried to reach {host!r}: examples run on the mock")
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", local_only)


@pytest.mark.parametrize("page", [page for page in documented_pages() if page not in RUN_ELSEWHERE])
@pytest.mark.usefixtures("no_network")
def test_every_python_example_runs(
    page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page's blocks run in order in one namespace; a failure names the page and line."""
    monkeypatch.chdir(tmp_path)  # whatever an example writes lands here
    namespace: dict[str, Any] = {"__name__": "__docs_example__"}
    for example in python_examples(page, (ROOT / page).read_text()):
        if example.not_run is not None:
            continue
        # Padded so that a traceback's line numbers are the page's own.
        source = "\n" * (example.line - 1) + example.code
        exec(compile(source, str(ROOT / page), "exec"), namespace)  # noqa: S102


# -- the API reference ----------------------------------------------------------------


def test_the_reference_page_lists_every_public_name() -> None:
    page = (ROOT / "docs" / "reference" / "bb_backoff.md").read_text()
    listed = set(re.findall(r"^::: bb_backoff\.(\w+)$", page, flags=re.MULTILINE))
    assert listed == set(bb_backoff.__all__)


def load_reference_extensions() -> Any:
    """docs/_ext/griffe_reference.py, as mkdocs.yml loads it for mkdocstrings."""
    return load_file(ROOT / "docs" / "_ext" / "griffe_reference.py", "griffe_reference")


def walk(obj: Any) -> Iterator[Any]:
    """A griffe object and everything defined under it (aliases left out)."""
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from walk(member)


def test_the_reference_shows_attrs_classes_with_their_real_signature() -> None:
    """Without AttrsInit the reference shows ``ExponentialBackoff()`` and the strict build fails."""
    griffe = pytest.importorskip("griffe")
    extensions = load_reference_extensions()
    package = griffe.load(
        "bb_backoff",
        search_paths=[ROOT / "src"],
        extensions=griffe.load_extensions(extensions.AttrsInit()),
    )
    for cls in (bb_backoff.ExponentialBackoff, bb_backoff.AccountGate, bb_backoff.BearerToken):
        init = package[cls.__name__]["__init__"]
        documented = [(p.name, p.kind.value, p.default) for p in init.parameters][1:]
        real = [
            (
                p.name,
                p.kind.description,
                None if p.default is inspect.Parameter.empty else repr(p.default),
            )
            for p in inspect.signature(cls).parameters.values()
        ]
        assert documented == real


def test_sphinx_markup_reads_as_sphinx_shows_it() -> None:
    without_roles = load_reference_extensions().without_roles
    text = (
        "See :class:`~bb_backoff.testing.VirtualClock`, :func:`serve_mock`,\n"
        ":meth:`.transport` and :mod:`._hints`; ``code`` and a::b stay. Like this::\n"
        "\n"
        "    client = BitbucketClient()\n"
    )
    assert without_roles(text) == (
        "See `VirtualClock`, `serve_mock`,\n"
        "`transport` and `_hints`; ``code`` and a::b stay. Like this:\n"
        "\n"
        "    client = BitbucketClient()\n"
    )


def test_no_docstring_in_the_reference_shows_a_sphinx_role() -> None:
    griffe = pytest.importorskip("griffe")
    extensions = load_reference_extensions()
    package = griffe.load(
        "bb_backoff",
        search_paths=[ROOT / "src"],
        extensions=griffe.load_extensions(extensions.SphinxRoles()),
    )
    docstrings = [obj.docstring.value for obj in walk(package) if obj.docstring is not None]
    assert docstrings
    assert [text for text in docstrings if re.search(r":[a-z]+:`", text)] == []
