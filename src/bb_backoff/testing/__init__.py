"""Helpers for testing code that uses bb-backoff: virtual time, no real waits.

Nothing in the library imports this package; import it from your tests.
"""

from ._clock import VirtualClock
from ._virtual import VirtualEventLoop, VirtualThreads, run_virtual

__all__ = ["VirtualClock", "VirtualEventLoop", "VirtualThreads", "run_virtual"]
