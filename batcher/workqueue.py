"""The rows waiting to be sent, handed to workers in an order that is safe.

Three rules shape it:

* Rows for one contact are never in flight together and go in file order, so
  ``open`` then ``close`` on one contact ends closed. A contact is *busy*
  while one of its rows is queued, in flight or set aside; its later rows
  wait behind it (``_busy[contact]``), not in the ready queue.
* A row set aside (449 "in queue", or a backoff after a 5xx) waits in a
  min-heap by due time while the workers keep sending other rows; it goes
  first once due. The queue knows which of the two each is, so the progress
  bar can say "449 waiting 3 · retrying 2" rather than one count of both.
* The queue is bounded: the feeder waits while ``max_pending`` rows are
  queued, so a million-row file is never all in memory.

Due times are read from the run's ``Clock``, whose time is also the event
loop's (``batcher.clock``), so a set-aside row waits in virtual time in tests.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass
from itertools import count

import anyio

from batcher.clock import Clock, SystemClock
from batcher.models import Request
from batcher.policy import Tries


@dataclass(frozen=True, slots=True)
class Job:
    """One valid row on its way through the run.

    Attributes:
        request: What to send.
        tries: What it has been through so far; a set-aside row comes back with new ones.
    """

    request: Request
    tries: Tries = Tries()  # noqa: RUF009 - frozen: one shared default is safe

    @property
    def contact(self) -> str:
        return self.request.identifier


class WorkQueue:
    """Hands jobs to workers; see the module docstring for the order."""

    def __init__(self, *, max_pending: int = 1000, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._max_pending = max_pending
        self._ready: deque[Job] = deque()  # sendable now, roughly in file order
        self._busy: dict[str, deque[Job]] = {}  # busy contact -> its later rows, in file order
        self._parked = 0  # rows waiting in _busy
        self._delayed: list[tuple[float, int, Job, bool]] = []  # min-heap by due time;
        # the bool: set aside by a 449 requeue (True) or for a retry after a failure (False)
        self._requeued = 0  # entries of _delayed set aside by a 449
        self._seq = count()
        self._in_flight = 0
        self._closed = False
        self._stopped = False
        self._changed = anyio.Event()

    @property
    def waiting(self) -> int:
        """Rows set aside until a due time (449 requeues and backoffs)."""
        return len(self._delayed)

    @property
    def requeued(self) -> int:
        """Rows set aside because the API answered 449 ("in queue, try later")."""
        return self._requeued

    @property
    def retrying(self) -> int:
        """Rows set aside to be tried again after a failure (5xx, timeout, no answer, 429)."""
        return len(self._delayed) - self._requeued

    @property
    def next_due_in(self) -> float:
        """Seconds until the first set-aside row is due (0 when none)."""
        if not self._delayed:
            return 0.0
        return max(0.0, self._delayed[0][0] - self._clock.now())

    @property
    def stopped(self) -> bool:
        return self._stopped

    async def put(self, job: Job) -> bool:
        """Add a row in file order; wait while the queue is full. False if the run has stopped."""
        while not self._stopped and len(self._ready) + self._parked >= self._max_pending:
            await self._wait()
        if self._stopped:
            return False
        later_rows = self._busy.get(job.contact)
        if later_rows is None:
            self._busy[job.contact] = deque()
            self._ready.append(job)
        else:
            later_rows.append(job)
            self._parked += 1
        self._notify()
        return True

    def close(self) -> None:
        """No more rows will be put."""
        self._closed = True
        self._notify()

    async def get(self) -> Job | None:
        """The next job to send, or None when there is nothing left (or the run stopped)."""
        while True:
            if self._stopped:
                return None
            if self._delayed and self._delayed[0][0] <= self._clock.now():
                _, _, job, requeued = heapq.heappop(self._delayed)
                self._requeued -= requeued
            elif self._ready:
                job = self._ready.popleft()
            elif self._closed and not self._delayed and self._in_flight == 0:
                self._notify()  # wake the other workers so they see the end too
                return None
            else:
                await self._wait(self.next_due_in if self._delayed else math.inf)
                continue
            self._in_flight += 1
            self._notify()
            return job

    def done(self, job: Job) -> None:
        """The job has its final outcome: the contact's next row may go."""
        self._in_flight -= 1
        later_rows = self._busy.get(job.contact)
        if later_rows:
            self._parked -= 1
            self._ready.appendleft(later_rows.popleft())
        else:
            self._busy.pop(job.contact, None)
        self._notify()

    def set_aside(self, job: Job, delay: float, *, requeue: bool = False) -> bool:
        """Send the job (with its new ``tries``) again after ``delay`` seconds; its contact
        stays busy. ``requeue``: the API answered 449 (counted in ``requeued``); otherwise a
        retry after a failure (counted in ``retrying``).

        False if the run has stopped: the caller records the row as not sent.
        """
        self._in_flight -= 1
        if self._stopped:
            self._notify()
            return False
        due = self._clock.now() + delay
        heapq.heappush(self._delayed, (due, next(self._seq), job, requeue))
        self._requeued += requeue
        self._notify()
        return True

    def stop(self) -> list[Job]:
        """Hand out nothing more; return every job not in flight, in row order."""
        self._stopped = True
        left = [*self._ready, *(entry[2] for entry in self._delayed)]
        for later_rows in self._busy.values():
            left.extend(later_rows)
        self._ready.clear()
        self._delayed.clear()
        self._requeued = 0
        self._busy.clear()
        self._parked = 0
        self._notify()
        return sorted(left, key=lambda job: job.request.row)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def _wait(self, seconds: float = math.inf) -> None:
        event = self._changed
        with anyio.move_on_after(seconds):
            await event.wait()
