"""Marks shared by the test modules."""

from __future__ import annotations

from typing import Final

import pytest

REALTIME: Final = pytest.mark.xdist_group("realtime")
"""Tests on real time (servers, processes): run one after another on one
pytest-xdist worker (``--dist loadgroup``), so that they never compete with
each other for the machine's cores."""
