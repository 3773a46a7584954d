"""The clock a run keeps time by: passed in everywhere, so tests can run in virtual time.

A run reads the time, waits, and runs its event loop through one ``Clock``.
Everything that waits inside the run (the pacer, the work queue's set-aside
rows, backoff, the 449 requeue, the 429 pause, the deadline, the grace period
after a stop, the progress refresh, httpx's timeouts) uses the event loop's
time, and ``Clock.run`` starts that loop, so the loop's time *is* the clock's:
``SystemClock`` runs an ordinary asyncio loop on ``time.monotonic``, and
``batcher.testing.FakeClock`` a loop whose time jumps ahead whenever every task
is waiting.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar, TypeVarTuple

import anyio
import anyio.to_thread

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class Clock(Protocol):
    """Monotonic time in seconds, a way to wait, and the event loop that keeps that time."""

    def now(self) -> float:
        """Seconds on this clock (the running loop's time, inside ``run``)."""

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` on this clock (inside ``run``)."""

    def cpu_time(self) -> float:
        """CPU seconds this process has used, as the pacer should see them."""

    async def run_sync(self, func: Callable[[*Ts], T], *args: *Ts) -> T:
        """Run blocking work (parsing the input) without stalling the event loop's clock."""

    def run(self, main: Callable[[*Ts], Awaitable[T]], *args: *Ts) -> T:
        """Run ``main`` to completion on an event loop that keeps this clock's time."""


class SystemClock:
    """The real clock: ``time.monotonic``, asyncio's own loop, work in a thread."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(max(0.0, seconds))

    def cpu_time(self) -> float:
        return time.process_time()

    async def run_sync(self, func: Callable[[*Ts], T], *args: *Ts) -> T:
        return await anyio.to_thread.run_sync(func, *args)

    def run(self, main: Callable[[*Ts], Awaitable[T]], *args: *Ts) -> T:
        return anyio.run(main, *args, backend="asyncio")
