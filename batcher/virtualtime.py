"""Virtual time: an asyncio event loop whose clock jumps ahead whenever every task waits.

``FakeClock`` is the clock for tests (``batcher.testing`` exports it). Inside
``FakeClock.run`` the event loop's ``time()`` is the fake clock, so every sleep,
timeout, cancel-scope deadline and ``anyio.current_time()`` is virtual. When no
callback is ready and nothing outside the loop can wake it, the loop moves the
clock straight to its next timer instead of sleeping: an hour of backoff, 449
requeues and deadlines passes in milliseconds, in the same order as in real
time, and the same way on every run.

The one thing that cannot be skipped is real I/O: while the loop watches a real
socket (a simulator served on 127.0.0.1, say), it waits for it in real time and
the clock advances by the real time that passed. With an in-process transport
(``batcher.testing.simulated_transport``) nothing is real and nothing is waited
for.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import selectors
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor
from typing import Any, TypeVar, TypeVarTuple

import anyio
import anyio.lowlevel

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class FakeClock:
    """Virtual time for tests: run code with ``run``; time jumps when every task waits.

    It satisfies ``batcher.clock.Clock``: pass it as ``clock=`` to ``run_batch``
    and to ``simulated_transport`` so that the run and the simulated API share it.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by hand (between runs, or in a test of the simulator's rules)."""
        if seconds < 0:
            raise ValueError("time does not go backwards")
        self._now += seconds

    async def sleep(self, seconds: float) -> None:
        # Inside run() the loop's time is this clock, so anyio's sleep is virtual.
        await anyio.sleep(max(0.0, seconds))

    def cpu_time(self) -> float:
        # Work done in virtual time costs no virtual time: the CPU always has room.
        return 0.0

    async def run_sync(self, func: Callable[[*Ts], T], *args: *Ts) -> T:
        # On the loop itself: a thread would be real work the loop cannot see, and time
        # would jump ahead while it ran.
        await anyio.lowlevel.checkpoint()
        return func(*args)

    def run(self, main: Callable[[*Ts], Awaitable[T]], *args: *Ts) -> T:
        """Run ``main`` on a virtual-time asyncio loop (through ``anyio.run``)."""
        return anyio.run(
            main, *args, backend="asyncio", backend_options={"loop_factory": self._new_loop}
        )

    def _new_loop(self) -> asyncio.AbstractEventLoop:
        return _VirtualLoop(self)


class _VirtualLoop(asyncio.SelectorEventLoop):
    """asyncio's selector loop, keeping the FakeClock's time."""

    def __init__(self, clock: FakeClock) -> None:
        self._fake_clock = clock
        #: Jobs handed to the executor and not yet done (getaddrinfo, to_thread): real work
        #: the loop must wait for in real time rather than skip over.
        self.executor_jobs = 0
        super().__init__(_SkippingSelector(clock, self))

    def time(self) -> float:
        return self._fake_clock.now()

    def call_at(
        self,
        when: float,
        callback: Callable[[*Ts], object],
        *args: *Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        # On a real loop time has moved on by the time a timer set for now runs: a callback
        # that reschedules itself for "now" until a computed amount has drained (aiolimiter's
        # bucket, a rounding error short) then sees time pass and stops. Here it would
        # reschedule for the same instant forever, so such a timer is set one step later.
        now = self.time()
        if when <= now:
            when = math.nextafter(now, math.inf)
        return super().call_at(when, callback, *args, context=context)

    def run_in_executor(
        self, executor: Executor | None, func: Callable[[*Ts], T], *args: *Ts
    ) -> asyncio.Future[T]:
        future = super().run_in_executor(executor, func, *args)
        self.executor_jobs += 1
        future.add_done_callback(self._executor_job_done)
        return future

    def _executor_job_done(self, _: asyncio.Future[Any]) -> None:
        self.executor_jobs -= 1


class _SkippingSelector(selectors.BaseSelector):
    """A selector that skips the wait to the loop's next timer when nothing real can happen.

    The loop asks ``select(timeout)`` with the time to its next timer (None when it has
    none, 0 when callbacks are ready). Only the loop's own wake-up pipe registered means no
    real I/O is pending: the wait is skipped by moving the clock. Anything else registered
    is real I/O, waited for in real time.
    """

    def __init__(self, clock: FakeClock, loop: _VirtualLoop) -> None:
        self._clock = clock
        self._loop = loop
        self._real = selectors.DefaultSelector()

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._real.select(0)
        if ready or timeout == 0:
            return ready
        # The first registration is the loop's own self-pipe (signals, other threads): with
        # nothing else registered and no executor job running, nothing real can happen.
        idle = len(self._real.get_map()) <= 1 and not self._loop.executor_jobs
        if timeout is not None and idle:
            self._clock.advance(timeout)
            return []
        started = time.monotonic()
        ready = self._real.select(timeout)
        self._clock.advance(time.monotonic() - started)
        return ready
