"""Even spacing between departures: ``aiolimiter.AsyncLimiter``, rebuilt when the pace changes.

The bucket is what ``budget.Budget.spacing`` says: a shared budget's whole window (L tokens
over the window: a window's worth may go at once, then L per window), or two tokens at a
climbing or capped pace. Two, not one: ``AsyncLimiter(1, 1/R)`` loses each wake-up's
lateness (the event loop wakes sleepers about a millisecond late, several per cent at
50/s), while a second token lets the next request go at once and so keeps the pace; the
budget's own count of departures keeps any ceiling hard.

``AsyncLimiter`` keeps time on the running event loop, which is the run's clock
(``clock.Clock.run``), so it runs in virtual time under ``FakeClock`` like every other wait.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
from aiolimiter import AsyncLimiter

#: Tokens of slack in the bucket: a waiter due at the very instant its token drips in could
#: otherwise find it a rounding error short and wait again (without it, turns at 50/s with
#: 8 workers waited up to 0.68 s in virtual time, against 0.14 s).
_SLACK = 1e-6


class Spacing:
    """A token bucket of ``burst`` tokens refilled at ``rate`` per second."""

    def __init__(self, rate: float, burst: float) -> None:
        self._shape = (rate, burst)
        self._bucket = AsyncLimiter(burst + _SLACK, burst / rate)
        #: Requests waiting on the current bucket, in the order they came (dicts keep it).
        self._waiting: dict[anyio.CancelScope, None] = {}

    def adjust(self, rate: float, burst: float) -> None:
        """Keep ``rate`` from now on (requests waiting move to the new bucket)."""
        if (rate, burst) != self._shape:
            self._shape = (rate, burst)
            self._bucket = AsyncLimiter(burst + _SLACK, burst / rate)
            # At once, so that a pace that climbed counts for requests already waiting.
            for scope in self._waiting:
                scope.cancel()

    async def wait(self, on_hold: Callable[[], object] | None = None) -> None:
        """Take one token, waiting for it if need be.

        ``on_hold`` is called as the wait begins: the pace is holding a request back now,
        which a climb must know at once, not when the token comes a whole interval later
        (at 5/s that was 0.2 s before the first climb).
        """
        bucket = self._bucket
        if bucket.has_capacity():
            await bucket.acquire()
            return
        if on_hold is not None:
            on_hold()
        # A request leaves the bucket's queue only when the bucket is replaced: one that gave
        # up its place to look again would go behind every request that came meanwhile, and
        # under a steady queue wait many times its share (over a second at 50/s, 8 workers).
        while True:
            with anyio.CancelScope() as scope:
                self._waiting[scope] = None
                try:
                    await bucket.acquire()
                    return
                finally:
                    del self._waiting[scope]
            bucket = self._bucket
