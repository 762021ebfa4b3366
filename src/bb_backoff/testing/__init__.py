"""Helpers for testing code that uses bb-backoff: virtual time, a mock API, no real waits.

Nothing in the library imports this package; import it from your tests.
:class:`MockBitbucket` is a faithful mock of the Bitbucket Cloud API with
rate limits and faults; :func:`serve_mock` serves it over real HTTP (needs
``bb-backoff[mock]``, imported only then).
"""

from ._clock import VirtualClock
from ._dataset import Dataset, DatasetSize
from ._faults import Faults
from ._mock import MockBitbucket, MockCounters
from ._replies import MockReply
from ._server import serve_mock
from ._virtual import VirtualEventLoop, VirtualThreads, run_virtual

__all__ = [
    "Dataset",
    "DatasetSize",
    "Faults",
    "MockBitbucket",
    "MockCounters",
    "MockReply",
    "VirtualClock",
    "VirtualEventLoop",
    "VirtualThreads",
    "run_virtual",
    "serve_mock",
]
