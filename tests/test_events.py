"""RetryEvent: a frozen record a callback can keep."""

from __future__ import annotations

import attrs
import pytest

from bb_backoff import Reason, RetryEvent


def test_retry_events_are_frozen_and_compare_by_value() -> None:
    event = RetryEvent(
        attempt=1,
        reason=Reason.RATE_LIMIT,
        status=429,
        delay=1.5,
        retry_after=None,
        hint_source=None,
        flag_variant="on",
        method="GET",
        url="https://api.bitbucket.org/2.0/user",
    )
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        event.delay = 0  # type: ignore[misc]
    assert event == attrs.evolve(event)
    assert hash(event) == hash(attrs.evolve(event))
