"""The public surface: __all__ is sorted, complete and importable, and stays small."""

from __future__ import annotations

import subprocess
import sys
from importlib.resources import files

import bb_backoff


def test_all_is_sorted_and_names_exactly_the_public_attributes() -> None:
    public = {
        name
        for name, value in vars(bb_backoff).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith("bb_backoff")
    }

    # isort's order, as ruff's RUF022 keeps it: CONSTANTS, then Classes, then functions.
    def isort_key(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert bb_backoff.__all__ == sorted(bb_backoff.__all__, key=isort_key)
    assert public - set(bb_backoff.__all__) == set()
    assert all(hasattr(bb_backoff, name) for name in bb_backoff.__all__)


def test_public_objects_come_from_private_modules() -> None:
    modules = {
        getattr(bb_backoff, name).__module__
        for name in bb_backoff.__all__
        if hasattr(getattr(bb_backoff, name), "__module__")
        and getattr(getattr(bb_backoff, name), "__module__", "").startswith("bb_backoff")
    }
    assert all(module.split(".")[-1].startswith("_") for module in modules)


def test_importing_the_package_imports_neither_the_testing_helpers_nor_the_command() -> None:
    code = (
        "import sys, bb_backoff; "
        "print(sorted(m for m in sys.modules if m == 'bb_backoff._cli' or "
        "m.startswith(('bb_backoff.testing', 'respx', 'hypothesis', 'pytest'))))"
    )
    out = subprocess.run(  # noqa: S603 (our own interpreter, a fixed script)
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_the_package_is_typed() -> None:
    assert files("bb_backoff").joinpath("py.typed").is_file()
