"""The pace of the whole run: one ``Pacer`` shared by all workers.

Why not ``aiolimiter.AsyncLimiter``: its bucket has a fixed rate (this pace
changes as the run learns the limit), ``AsyncLimiter(R, 1)`` lets 2R-1
requests through in the first second, and at ``AsyncLimiter(1, 1/R)`` each
wake-up's lateness is lost (``benchmarks/limiter.py``, median of 3 runs: 50.4 ms
spacing at 20/s, 3.4 % short of 100/s, 8.3 % short of 500/s, where this pacer
holds 1.000).

Requests queue for their turn in arrival order (``_waiting``); only the head
waits on the clock, for ``_last + 1/rate``, so the run sends evenly at
``rate`` with no burst, nobody books a turn at a pace that is no longer
current, and a worker woken a few milliseconds late keeps its turn (later
turns are not pushed back). At a ceiling the pace is 99 % of it, so that
catch-up never puts more than the ceiling into any one-second window.

What it learns from answers:

* ``X-RateLimit-Limit`` / ``X-RateLimit-Remaining`` give the budget of the
  current window (``window`` seconds). A contact not seen in the last window
  whose answer says ``Remaining == Limit - 1`` had a fresh budget; two such in
  a row mean the budget is per path, one that had been drawn on means it is
  shared. A shared budget paces the run at ``headroom * Limit / window``; a
  per-path budget paces each contact so, and the run climbs up to the ceiling.
* Without usable headers (missing, zero, negative, not a number) the pace
  climbs: doubling per clean window until the first 429, then 10 % a window,
  and only while the pace is what holds the run back.
* At most 16 requests are in flight until a window shows more are needed and
  the CPU has room: on a saturated CPU, beyond that httpx's pool makes every
  request dearer (``_cap_in_flight``).
* 429: one pause for every worker until ``Retry-After`` has passed, and the
  pace drops; it climbs back after clean windows.

The ceiling (``--rate``) is never exceeded, whatever the headers say.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import anyio

from batcher.clock import Clock
from batcher.models import Answer, AnswerKind

#: Longest a waiting request sleeps before it looks at the pace again.
_RECHECK = 0.05
#: A CPU share (of one core) at which this process counts as saturated.
_CPU_SATURATED = 0.9
#: A CPU share under which the cap is lifted again.
_CPU_ROOM = 0.5
#: Requests in flight until more are shown to be needed (see Pacer._cap_in_flight).
_CAPPED_IN_FLIGHT = 16
#: How much the in-flight cap grows after a window that showed the need.
_CAP_GROWTH = 1.5
#: Most a late wake-up may still use of its missed turn (seconds). The event loop wakes
#: sleepers with about 1 ms of resolution: at 640/s (1.6 ms a turn) a smaller allowance
#: lost most of each turn to lateness, and the run went at 384/s.
_CATCH_UP = 0.005
#: The share of the ceiling the pace goes up to: with the catch-up above, R+1 requests
#: then always span more than a second (R / (0.99 R) - 5 ms > 1 s), so no 1-second
#: window ever holds more than the ceiling.
_CEILING_SHARE = 0.99


@dataclass(frozen=True, slots=True)
class PacingConfig:
    """How the pace starts and what bounds it.

    Attributes:
        start_rate: Requests per second before any rate header is seen.
        ceiling: Requests per second never exceeded (``--rate``), or None for none.
        window: Seconds the X-RateLimit budget is counted over.
        headroom: Share of an advertised limit the run uses (the rest absorbs timing jitter).
        max_rate: Where a climb without any ceiling stops (the concurrency bounds it sooner).
        max_pause: Longest pause a 429's Retry-After imposes (a longer one stops the run:
            ``policy.Policy.max_retry_after``).
        min_rate: Requests per second 429s never push the pace below (unless the ceiling
            is lower): halving on every 429 from a flaky limiter once left 0.1/s.
    """

    start_rate: float = 5.0
    ceiling: float | None = None
    window: float = 1.0
    headroom: float = 0.98
    max_rate: float = 10_000.0
    max_pause: float = 600.0
    min_rate: float = 1.0


class Pacer:
    """Paces every request of a run; see the module docstring for how."""

    def __init__(
        self,
        config: PacingConfig,
        clock: Clock,
        *,
        cpu_time: Callable[[], float] = time.process_time,
    ) -> None:
        self._config = config
        self._clock = clock
        self._cpu_time = cpu_time
        #: Requests per second for the whole run, as now paced.
        self.rate = config.start_rate
        #: "unknown" until headers tell, then "shared" or "per-path".
        self.budget = "unknown"
        #: The last sensible X-RateLimit-Limit seen, or None.
        self.limit: float | None = None
        #: 429 answers seen.
        self.throttled = 0
        self._last = -math.inf  # when the last request was let go
        self._waiting: deque[anyio.Event] = deque()  # FIFO of acquirers; the head is set
        self._paused_until = -math.inf  # shared pause after a 429
        self._factor = 1.0  # share of the learned rate in use; lowered by 429s
        self._slow_start = True  # doubling climb until the first 429
        self._fresh_in_a_row = 0  # first-seen contacts in a row that had a fresh budget
        self._seen: dict[str, float] = {}  # contact -> time of its last answer (pruned)
        self._contact_next: dict[str, float] = {}  # contact -> next slot, per-path budgets
        self._period_start = clock.now()
        self._period_sends = 0
        self._period_unanswered = 0
        self._period_clean = True
        self._period_cpu = cpu_time()
        # One token per request let go and not yet answered. The limiter queues the waiters
        # and wakes one per token freed (an event set on each answer woke all of them: 48
        # tasks per answer at 64 workers under a cap of 16).
        self._in_flight = anyio.CapacityLimiter(_CAPPED_IN_FLIGHT)
        self._borrowers: list[object] = []  # tokens are alike: any one is given back
        self._period_capped = False  # the cap held a request back this window
        self._apply_rate(config.start_rate)

    @property
    def paused_for(self) -> float:
        """Seconds left of the shared pause after a 429 (0 when not paused)."""
        return max(0.0, self._paused_until - self._clock.now())

    async def acquire(self, contact: str) -> None:
        """Wait until this run may send one request to ``contact``.

        Every return must be followed by ``observe`` (an answer) or ``release`` (not sent).
        """
        clock = self._clock
        per_path = self.budget == "per-path"
        if per_path:
            # This contact's own budget first, holding no turn of the run's meanwhile.
            while (wait := self._contact_next.get(contact, -math.inf) - clock.now()) > 0:
                await clock.sleep(min(wait, _RECHECK))
        turn = anyio.Event()
        reserved = False
        try:
            if per_path:
                self._contact_next[contact] = math.inf  # taken: a second acquire for it waits
            borrower = object()
            try:
                self._in_flight.acquire_on_behalf_of_nowait(borrower)
            except anyio.WouldBlock:
                # With nobody waiting for a turn, every token is on the wire: the cap, not
                # the pace, is what holds this request back.
                self._period_capped = self._period_capped or not self._waiting
                await self._in_flight.acquire_on_behalf_of(borrower)
            self._borrowers.append(borrower)
            reserved = True
            self._waiting.append(turn)
            if self._waiting[0] is turn:
                turn.set()
            await turn.wait()
            while (slot := self._slot(clock.now())) > clock.now():
                # Sleep in short steps, so a faster pace learned meanwhile counts at once.
                await clock.sleep(min(slot - clock.now(), _RECHECK))
            self._last = slot
            self._period_sends += 1
        except BaseException:
            if reserved:
                self.release()
            raise
        finally:
            if per_path:
                self._contact_next[contact] = clock.now() + self._per_contact_interval()
            if turn in self._waiting:
                self._waiting.remove(turn)
                if self._waiting:
                    self._waiting[0].set()

    def _slot(self, now: float) -> float:
        """When the next request may go, at the current pace (no turn is booked ahead)."""
        interval = 1.0 / self.rate
        slot = self._last + interval
        # A turn missed by at most catch_up (a late wake-up) is kept, so lateness is not lost;
        # an idle pacer starts from now, never earlier (no burst).
        if slot < now - _CATCH_UP:
            slot = now
        return max(slot, self._paused_until)

    @property
    def in_flight_cap(self) -> float:
        """Most requests in flight at once (see ``_cap_in_flight``)."""
        return self._in_flight.total_tokens

    def release(self) -> None:
        """A request let go by ``acquire`` is off the wire (answered, or never sent)."""
        if self._borrowers:
            self._in_flight.release_on_behalf_of(self._borrowers.pop())

    def observe(self, contact: str, answer: Answer) -> None:
        """Learn from one answer: its rate headers, a 429, or a clean stretch."""
        self.release()
        now = self._clock.now()
        self._end_period_if_due(now)
        if answer.kind is AnswerKind.RATE_LIMITED:
            self._throttle(now, answer.retry_after)
        elif answer.http_status is not None:
            self._learn_budget(contact, now, answer.limit, answer.remaining)
        else:
            self._period_unanswered += 1
        self._seen[contact] = now

    def _throttle(self, now: float, retry_after: float | None) -> None:
        self.throttled += 1
        self._period_clean = False
        wait = self._config.window
        if retry_after is not None and retry_after > 0:
            wait = min(retry_after, self._config.max_pause)
        if now + wait > self._paused_until:
            self._paused_until = now + wait
            # One drop per pause, however many workers were answered 429 for it.
            self._slow_start = False
            self._factor = max(0.05, self._factor * (0.9 if self.limit else 0.5))
            dropped = self.rate * (0.9 if self.limit else 0.5)
            self._apply_rate(max(dropped, self._config.min_rate))

    def _learn_budget(
        self, contact: str, now: float, limit: float | None, remaining: float | None
    ) -> None:
        if limit is None or limit < 1 or remaining is None or remaining < 0 or remaining > limit:
            return  # no sensible budget: keep the last good pacing
        self.limit = limit
        window = self._config.window
        last = self._seen.get(contact)
        if last is None or now - last >= window:
            if remaining >= limit - 1 and limit >= 2:
                self._fresh_in_a_row += 1
            else:
                self._fresh_in_a_row = 0
                self.budget = "shared"
            if self._fresh_in_a_row >= 2 and self.budget != "per-path":
                self.budget = "per-path"
                # Each contact has its own budget: the run may go as fast as the user allows.
                if self._config.ceiling is not None:
                    self._apply_rate(self._config.ceiling)
        if self.budget != "per-path":
            self.budget = "shared"
            self._apply_rate(self._factor * self._config.headroom * limit / window)

    def _per_contact_interval(self) -> float:
        if self.limit is None:
            return 0.0
        return self._config.window / (self.limit * self._config.headroom)

    def _end_period_if_due(self, now: float) -> None:
        """Every window: climb if it was clean and the pace held the run back; prune."""
        window = self._config.window
        elapsed = now - self._period_start
        if elapsed < window:
            return
        # Requests that got no answer are no evidence that a faster pace would be taken: a
        # window where more than a tenth went unanswered does not climb (an unreachable API
        # once made the pace climb to 5,120/s); a dropped connection here and there does.
        if self._period_clean and self._period_unanswered <= 0.1 * self._period_sends:
            if self.budget == "shared":
                self._factor = min(1.0, self._factor * 1.02)
                if self.limit is not None:
                    self._apply_rate(self._factor * self._config.headroom * self.limit / window)
            elif self._period_sends >= 0.8 * self.rate * elapsed:
                self._apply_rate(self.rate * (2.0 if self._slow_start else 1.1))
        self._cap_in_flight(elapsed)
        self._period_start = now
        self._period_sends = 0
        self._period_unanswered = 0
        self._period_clean = True
        horizon = now - window
        self._seen = {c: t for c, t in self._seen.items() if t >= horizon}
        self._contact_next = {c: t for c, t in self._contact_next.items() if t >= now}

    def _cap_in_flight(self, elapsed: float) -> None:
        """Keep at most 16 requests in flight, more only while they are needed and affordable.

        httpx's pool bookkeeping grows with the pool: on a saturated CPU, past about 16
        busy connections each request costs more, and throughput falls (measured with 20 ms
        of latency: 464 rows/s at 16 connections, 298 at 32, 221 at 64). So the cap starts
        at 16. It grows by half after a window in which it held back a request while every
        token was on the wire (not waiting for its turn) and this process used under half a
        core: a slow API needs more requests in flight. It drops back to 16 when the CPU is
        saturated (at least 90 % of a core); between the two it stays, since lifting it at
        once piled the requests back into the pool.

        The cap used to start unlimited and engage after a saturated window: the climbing
        pace then put 64 requests in flight for a window, and the 48 extra connections sat
        in the pool for httpx's 5 s keep-alive (2 % fewer rows/s at 64 workers than at 16).
        """
        cpu = self._cpu_time()
        share = (cpu - self._period_cpu) / elapsed
        self._period_cpu = cpu
        if share >= _CPU_SATURATED:
            self._in_flight.total_tokens = _CAPPED_IN_FLIGHT
        elif share < _CPU_ROOM and self._period_capped:
            # Raising it lets waiting acquirers go.
            self._in_flight.total_tokens = math.ceil(self.in_flight_cap * _CAP_GROWTH)
        self._period_capped = False

    def _apply_rate(self, rate: float) -> None:
        ceiling = self._config.ceiling
        rate = min(rate, self._config.max_rate)
        if ceiling is not None:
            rate = min(rate, ceiling * _CEILING_SHARE)
        self.rate = max(rate, 0.01)
