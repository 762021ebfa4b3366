"""Shared fixtures: the async backend, and hypothesis settings for a fast suite."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

# Property tests run on virtual time, so wall-clock deadlines only add flakiness
# on shared machines; CI may raise the example count with HYPOTHESIS_PROFILE=ci.
settings.register_profile(
    "default", deadline=None, max_examples=100, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci", deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio (the anyio pytest plugin ships with httpx's anyio)."""
    return "asyncio"
