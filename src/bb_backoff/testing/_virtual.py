"""Concurrent workers on virtual time: async tasks and threads.

Theory of operation
-------------------
Virtual time moves only when every worker is waiting.  Then it jumps to the
earliest wake-up, so an import that waits out hours of rate limiting takes
seconds of CPU, and the result is the same on every run.

*Async tasks* run on :class:`VirtualEventLoop`, an asyncio loop whose
``time()`` is the virtual clock and whose selector, when nothing is ready,
advances the clock by the loop's timeout instead of blocking.  Any code on the
loop that uses :func:`asyncio.sleep` (or timers) is on virtual time without
knowing it, which is how the benchmark runs third-party retry libraries.

*Threads* run under :class:`VirtualThreads`: one at a time, handing a baton
over whenever the running thread sleeps or ends.  The next to run is the
earliest sleeper (ties in the order they went to sleep), so the interleaving
is deterministic, and the sync client and the mock share one clock.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import selectors
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, TypeVar

from .._timing import to_seconds
from ._clock import VirtualClock

T = TypeVar("T")

# When nothing is scheduled, a worker may still be waiting for a thread (the
# default executor, say) to call back; give it this long in real seconds
# before calling it a deadlock.
_DEADLOCK_GRACE: Final = 1.0


class _VirtualSelector(selectors.BaseSelector):
    """A real selector that jumps the virtual clock instead of waiting for a timeout."""

    def __init__(self, clock: VirtualClock, deadlock_grace: float) -> None:
        self._real = selectors.DefaultSelector()
        self._clock = clock
        self._deadlock_grace = deadlock_grace

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._real.select(0)
        if ready:
            return ready
        if timeout is None:
            ready = self._real.select(self._deadlock_grace)
            if not ready:
                raise RuntimeError(
                    "virtual time deadlock: every task waits and nothing is scheduled"
                )
            return ready
        if timeout > 0:
            self._clock.advance(timeout)
        return []

    def close(self) -> None:
        self._real.close()

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.get_key(fileobj)

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._real.get_map()


class VirtualEventLoop(asyncio.SelectorEventLoop):
    """An asyncio event loop on a :class:`VirtualClock`: sleeps and timers never wait.

    Args:
        clock: the clock; the loop's ``time()`` is ``clock.monotonic()``.
        deadlock_grace: real seconds to wait for a thread to call back when
            nothing is scheduled, before raising ``RuntimeError`` (deadlock).
    """

    def __init__(self, clock: VirtualClock, *, deadlock_grace: float = _DEADLOCK_GRACE) -> None:
        super().__init__(_VirtualSelector(clock, to_seconds(deadlock_grace, "deadlock_grace")))
        self.clock: Final = clock

    def time(self) -> float:
        """Virtual monotonic seconds."""
        return self.clock.monotonic()


def run_virtual(
    main: Awaitable[T],
    clock: VirtualClock | None = None,
    *,
    deadlock_grace: float = _DEADLOCK_GRACE,
) -> T:
    """Run ``main`` to completion on a fresh :class:`VirtualEventLoop`.

    Args:
        main: a coroutine (or other awaitable) to run.
        clock: the virtual clock; a new one if omitted.
        deadlock_grace: see :class:`VirtualEventLoop`.

    Returns:
        What ``main`` returns.
    """
    loop = VirtualEventLoop(clock or VirtualClock(), deadlock_grace=deadlock_grace)
    try:
        return loop.run_until_complete(main)
    finally:
        try:
            _cancel_the_rest(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


def _cancel_the_rest(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel the tasks ``main`` left behind and let them finish, as :func:`asyncio.run` does.

    Closed with them pending, the loop left each to be destroyed later with
    "Task was destroyed but it is pending!" on stderr (a Ctrl-C in the
    bench, say).  Their clean-up may sleep (the clock moves on, as time
    would) or wait on a thread; what one raises is reported.  As with
    :func:`asyncio.run`, a task that ignores its cancellation holds this up.
    """
    tasks = asyncio.all_tasks(loop)
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            loop.call_exception_handler(
                {
                    "message": "unhandled exception in a task cancelled after run_virtual's main",
                    "exception": task.exception(),
                    "task": task,
                }
            )


class _Worker:
    __slots__ = ("done", "error", "function", "result", "turn")

    def __init__(self, function: Callable[[], Any]) -> None:
        self.function = function
        self.turn = threading.Event()
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None


class VirtualThreads:
    """Threads that take turns on a :class:`VirtualClock`, deterministically.

    Give the workers ``sleep=threads.sleep`` and ``clock=clock.monotonic``;
    call :meth:`run` with the work.  Only one worker runs at a time; a worker
    that sleeps hands over to the earliest sleeper, and the clock jumps to its
    wake-up time.

    Args:
        clock: the shared clock.
    """

    def __init__(self, clock: VirtualClock) -> None:
        self.clock: Final = clock
        self._sleepers: list[tuple[float, int, _Worker]] = []
        self._order = itertools.count()
        self._local = threading.local()
        self._finished = threading.Event()
        self._workers: list[_Worker] = []
        self._parked: list[_Worker] = []

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of virtual time, letting the other workers run meanwhile.

        Called outside a worker thread, it just advances the clock.
        """
        seconds = to_seconds(seconds, "seconds")
        worker: _Worker | None = getattr(self._local, "worker", None)
        if worker is None:
            self.clock.sleep(seconds)
            return
        self.clock.sleeps.append(seconds)
        worker.turn.clear()
        heapq.heappush(
            self._sleepers, (self.clock.monotonic() + seconds, next(self._order), worker)
        )
        self._hand_over()
        worker.turn.wait()

    def park(self) -> None:
        """Wait, letting the other workers run, until one of them calls :meth:`unpark_all`.

        For a worker with nothing to do until another one produces work (a
        thread blocked on ``queue.Queue.get``): it takes no turn meanwhile,
        and wakes at the virtual time it is unparked.

        Raises:
            RuntimeError: called outside a worker, or by the last worker not
                parked or done (nobody would wake it).
        """
        worker: _Worker | None = getattr(self._local, "worker", None)
        if worker is None:
            raise RuntimeError("park() is for a worker of VirtualThreads.run()")
        if not self._sleepers:
            raise RuntimeError("park() by the only worker left running: nobody would unpark it")
        worker.turn.clear()
        self._parked.append(worker)
        self._hand_over()
        worker.turn.wait()

    def unpark_all(self) -> None:
        """Wake every parked worker at the current virtual time (after this one's turn)."""
        now = self.clock.monotonic()
        for worker in self._parked:
            heapq.heappush(self._sleepers, (now, next(self._order), worker))
        self._parked.clear()

    def _hand_over(self) -> None:
        """Wake the earliest sleeper, moving the clock to its time; or finish."""
        if not self._sleepers and self._parked:
            # Nobody left to unpark them: wake them (like a condition
            # variable's spurious wake-up, they look again and go on).
            self.unpark_all()
        if not self._sleepers:
            if all(worker.done for worker in self._workers):
                self._finished.set()
            return
        wake, _, worker = heapq.heappop(self._sleepers)
        ahead = wake - self.clock.monotonic()
        if ahead > 0:
            self.clock.advance(ahead)
        worker.turn.set()

    def _body(self, worker: _Worker) -> None:
        self._local.worker = worker
        worker.turn.wait()
        try:
            worker.result = worker.function()
        except BaseException as error:  # noqa: BLE001 (reported to run()'s caller)
            worker.error = error
        worker.done = True
        self._hand_over()

    def run(self, functions: Sequence[Callable[[], T]]) -> list[T]:
        """Run each function in its own thread until all are done.

        Returns:
            Their results, in order.

        Raises:
            BaseException: the first worker's exception (in the order given),
                after every worker has finished.
        """
        if self._workers:
            raise RuntimeError("VirtualThreads.run() can only be called once")
        self._workers = [_Worker(function) for function in functions]
        if not self._workers:
            return []
        threads = [
            threading.Thread(target=self._body, args=(worker,), daemon=True)
            for worker in self._workers
        ]
        for thread in threads:
            thread.start()
        now = self.clock.monotonic()
        for worker in self._workers:
            heapq.heappush(self._sleepers, (now, next(self._order), worker))
        self._hand_over()
        self._finished.wait()
        for thread in threads:
            thread.join()
        for worker in self._workers:
            if worker.error is not None:
                raise worker.error
        return [worker.result for worker in self._workers]
