"""The in-flight cap: at most 16 requests on the wire until more are shown to be needed.

httpx's pool bookkeeping grows with the pool: on a saturated CPU, past about 16 busy
connections each request costs more, and throughput falls (measured with 20 ms of latency:
464 rows/s at 16 connections, 298 at 32, 221 at 64). So the cap starts at 16. It grows by
half after a second in which it held back a request while every token was on the wire (no
request was waiting for the pace instead) and this process used under half a core: a slow
API needs more requests in flight. It drops back to 16 when the CPU is saturated (at least
90 % of a core); between the two it stays, since lifting it at once piled the requests back
into the pool.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import anyio

#: Requests in flight until more are shown to be needed.
CAPPED = 16
#: How much the cap grows after a second that showed the need.
_GROWTH = 1.5
#: A CPU share (of one core) at which this process counts as saturated.
_CPU_SATURATED = 0.9
#: A CPU share under which the cap is lifted again.
_CPU_ROOM = 0.5
#: Seconds between two looks at the CPU.
_PERIOD = 1.0


class InFlightCap:
    """Tokens for requests on the wire; see the module docstring."""

    def __init__(self, cpu_time: Callable[[], float], now: float) -> None:
        self._cpu_time = cpu_time
        # The limiter queues the waiters and wakes one per token freed (an event set on each
        # answer woke all of them: 48 tasks per answer at 64 workers under a cap of 16).
        self._tokens = anyio.CapacityLimiter(CAPPED)
        self._period_start = now
        self._period_cpu = cpu_time()
        self._capped = False  # the cap held a request back this period

    @property
    def limit(self) -> float:
        """Most requests in flight at once, as now."""
        return self._tokens.total_tokens

    async def take(self, *, pace_idle: bool) -> object:
        """Wait for a token; ``pace_idle``: no other request is waiting for the pace, so if
        this one must wait, it is the cap that holds it back. Returns the token."""
        borrower = object()
        try:
            self._tokens.acquire_on_behalf_of_nowait(borrower)
        except anyio.WouldBlock:
            self._capped = self._capped or pace_idle
            await self._tokens.acquire_on_behalf_of(borrower)
        return borrower

    def give(self, token: object) -> None:
        """The request that held ``token`` is off the wire (answered, or never sent)."""
        self._tokens.release_on_behalf_of(token)

    def tick(self, now: float) -> None:
        """Once a second: grow or drop the cap by what the CPU and the last second showed."""
        elapsed = now - self._period_start
        if elapsed < _PERIOD:
            return
        cpu = self._cpu_time()
        share = (cpu - self._period_cpu) / elapsed
        self._period_start, self._period_cpu = now, cpu
        if share >= _CPU_SATURATED:
            self._tokens.total_tokens = CAPPED
        elif share < _CPU_ROOM and self._capped:
            self._tokens.total_tokens = math.ceil(self.limit * _GROWTH)  # lets waiters go
        self._capped = False
