"""benchmarks/overhead.py: every variant runs, and callgrind's counts are read right.

The measurement itself (timed or counted) is not run here: timed tests are
flaky on shared machines, and callgrind takes minutes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from files import load_file

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "overhead.py"
USER = {"username": "ada", "account_id": "1234"}


overhead = load_file(SCRIPT, "overhead")


def test_every_variant_answers_with_the_body() -> None:
    with overhead.sync_variants() as variants:
        answers = [call() for call in variants.values()]
    assert answers == [USER] * 4


def test_every_listing_variant_reads_the_same_pages_and_starts_again_after_the_last() -> None:
    pages = overhead.LISTING_PAGES + 2
    with overhead.pages_variants() as variants:
        walks = [[call() for _ in range(pages)] for call in variants.values()]
    slugs = [[f"r{n}"] for n in [*range(1, overhead.LISTING_PAGES + 1), 1, 2]]
    assert walks == [[[{"slug": slug}] for [slug] in slugs]] * 3


@pytest.mark.anyio
async def test_every_async_variant_answers_with_the_body() -> None:
    async with overhead.async_variants() as variants:
        answers = [await call() for call in variants.values()]
    assert answers == [USER] * 6


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("sync", "BitbucketClient.get (flag on, memory gate)"),
        ("async", "AsyncBitbucketClient.get (flag on, memory gate)"),
        ("pages", "BitbucketClient.pages (flag on, memory gate)"),
    ],
)
def test_one_variants_run_is_what_callgrind_is_given_to_count(kind: str, name: str) -> None:
    done = subprocess.run(  # noqa: S603
        [sys.executable, str(SCRIPT), "--run", kind, name, "--requests", "3"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_callgrinds_summary_gives_instructions_and_instruction_cache_misses() -> None:
    # Events in callgrind's order with --cache-sim=yes: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw.
    stderr = "==5775== Events : Ir Dr Dw I1mr\n==5775== Collected : 1104 319 182 128 92 26 19 7 3\n"
    found = overhead.COLLECTED.search(stderr)
    assert found is not None
    assert (int(found[1]), int(found[2])) == (1104, 128)
