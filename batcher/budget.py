"""The budget learner: when the next request may go, by what answers said of the rate limit.

Pure: departures and answers go in (each with the time it happened), the earliest time the
next request may leave comes out, and the pace the spacing should keep. No clock, no I/O,
no waiting: ``pacer.Pacer`` does the waiting.

What it learns:

* ``X-RateLimit-Limit`` (L) / ``X-RateLimit-Remaining`` give the budget of the current
  window (``window`` seconds; the API does not announce when its window ends). A contact
  not seen for a window whose answer says ``Remaining == L - 1`` had a fresh budget: two
  such in a row mean the budget is per path; one that had been drawn on means it is shared.
* A shared budget is spent, not paced at a share of it: a request may go whenever fewer
  than L requests (ours, plus those of others the server counted) left in the last
  ``window + margin`` seconds. So a run spends a window's whole budget at once and then
  waits until its first request of that window has aged out. Counting our own departures
  over a sliding window is safe for both kinds of window: a fixed window is shorter than
  ``window + margin``, so it never holds more than L of them either. (So the window's kind
  and phase are not learned: knowing a fixed window's boundary would let a run burst at
  it, but probing for it cost more windows than it won in the benchmark.)
  Others' use is ``(L - Remaining) - ours`` for each answer (ours: our requests that left
  in the window before it); the smallest recent estimate counts, since a request that left
  later and arrived first can only make one estimate too high.
* A per-path budget holds each contact to L requests per ``window + margin``; the run as a
  whole goes as fast as the ceiling (or, without one, the climb) allows.
* Without usable headers (missing, zero, negative, not a number) the pace climbs: each
  round trip (an answer to a request sent at the current pace) may carry twice the
  requests the last one did, while answers come back clean, latency does not grow and the
  pace is what holds requests back; after the first 429, 10 % a window.
* 429: one pause for every request until ``Retry-After`` has passed (the server is the
  authority); a climbing pace halves, and a shared budget's margin doubles, once per
  overload (not again for requests that left before the last drop). The first 429 of a
  climb by round trips drops the pace to what the server took in the last window, if less.

The ceiling (``--rate`` R) is a hard bound on departures: never more than R in any
``1 s + ceiling_margin``, whatever the headers say, from the first second on.

Every count is of when a request may have reached the server, not when it was let go: one
slower than the fastest answer may have spent the difference on its way there, and one
that left before any answer came (on a connection still being opened) counts from its
answer.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import StrEnum

from batcher.models import Answer, AnswerKind

#: Latency over this multiple of the fastest answer seen (plus ``_LATENCY_SLACK``) counts as
#: growing: the API (or this process) is saturated, and the climb holds.
_LATENCY_GROWTH = 2.0
_LATENCY_SLACK = 0.005
#: The token bucket of a climbing or capped pace: two tokens keep a late wake-up's lateness
#: (the next request goes at once) without letting a burst through.
_SMALL_BUCKET = 2.0


class BudgetKind(StrEnum):
    """What the answers' rate headers say about the API's budget."""

    #: No answer with usable rate headers yet.
    UNKNOWN = "unknown"
    #: Answers carry no usable rate headers: the pace climbs until a 429 or the ceiling.
    NONE = "none"
    #: One budget for every request of the run.
    SHARED = "shared"
    #: Each contact's path has a budget of its own.
    PER_PATH = "per-path"


@dataclass(frozen=True, slots=True)
class PacingConfig:
    """How the pace starts and what bounds it.

    Attributes:
        start_rate: Requests per second before any answer is seen.
        ceiling: Requests per second never exceeded (``--rate``), or None for none.
        window: Seconds the X-RateLimit budget is counted over.
        margin: Seconds a budget's window is stretched by, for the time between a
            request leaving here and arriving there (doubled once per overload of 429s,
            up to a tenth of the window).
        ceiling_margin: The same for the ceiling's one-second window.
        max_rate: Where a climb without any ceiling stops (the concurrency bounds it sooner).
        max_pause: Longest pause a 429's Retry-After imposes (a longer one stops the run:
            ``policy.Policy.max_retry_after``).
        min_rate: Requests per second 429s never push a climbing pace below (unless the
            ceiling is lower).
    """

    start_rate: float = 5.0
    ceiling: float | None = None
    window: float = 1.0
    margin: float = 0.005
    ceiling_margin: float = 0.005
    max_rate: float = 10_000.0
    max_pause: float = 600.0
    min_rate: float = 1.0


@dataclass(frozen=True, slots=True)
class Ticket:
    """One request let go: what the learner needs to read its answer."""

    contact: str
    sent_at: float


class Budget:
    """The learner; see the module docstring. Every method takes the time as ``now``."""

    def __init__(self, config: PacingConfig, now: float) -> None:
        self._config = config
        #: What the rate headers say the budget is.
        self.kind = BudgetKind.UNKNOWN
        #: The last sensible X-RateLimit-Limit seen, or None.
        self.limit: float | None = None
        #: 429 answers seen.
        self.throttled = 0
        #: Until when every request waits after a 429.
        self.paused_until = -math.inf
        #: Seconds a budget's window is stretched by (see PacingConfig.margin).
        self.margin = config.margin
        self._rate = self._bounded(config.start_rate)  # the climbing pace
        # Departures (slow ones as arrivals), oldest first: the shared budget's count and
        # the ceiling's both read it.
        self._sent: deque[float] = deque()
        self._departed: deque[float] = deque()  # departures as they were, oldest first
        self._by_contact: dict[str, deque[float]] = {}  # per-path budgets
        self._others: deque[tuple[float, float]] = deque()  # (sent_at, others' use) per answer
        self._seen: dict[str, float] = {}  # contact -> time of its last answer (pruned)
        self._fresh_in_a_row = 0
        self._provisional = False  # SHARED on one fresh answer only: not yet confirmed
        self._slow_start = True
        self._changed_at = now  # the climbing pace last changed
        self._held = False  # the spacing held a request back since then
        self._fastest = math.inf  # quickest answer seen (seconds)
        self._taken: deque[float] = deque()  # answers (not 429) in the last window of a climb
        self._dropped_at = -math.inf  # the last 429 that slowed the pace (or widened a margin)
        self._warm_since = math.inf  # when the first answer came
        self._window_start = now

    # -- what the pacer asks ------------------------------------------------------------------

    @property
    def rate(self) -> float:
        """Requests per second the spacing keeps."""
        return self.spacing()[0]

    def spacing(self) -> tuple[float, float]:
        """(requests per second, bucket size) for the even spacing between departures.

        A shared budget's bucket is the budget itself (a window's worth may go at once; the
        departures' own count keeps it to the budget); a climbing or capped pace has a
        small bucket.
        """
        ceiling = self._config.ceiling
        if self.kind is BudgetKind.SHARED and self.limit is not None:
            rate = self.limit / self._config.window
            if ceiling is None or rate <= ceiling:
                return rate, max(1.0, math.floor(self.limit))
            return ceiling, _small_bucket(ceiling)
        if self.kind is BudgetKind.PER_PATH and ceiling is not None:
            return ceiling, _small_bucket(ceiling)
        return self._rate, _small_bucket(self._rate)

    def earliest(self, contact: str, now: float) -> float:
        """The earliest time a request to ``contact`` may leave (``now`` if it may now)."""
        at = max(now, self.paused_until, self._contact_earliest(contact))
        ceiling = self._config.ceiling
        if ceiling is not None:
            count, span = _ceiling_count(ceiling)
            if len(self._sent) >= count:
                at = max(at, self._sent[-count] + span + self._config.ceiling_margin)
        if self.kind is BudgetKind.SHARED and self.limit is not None:
            at = max(at, self._shared_earliest(now))
        return at

    def contact_earliest(self, contact: str, now: float) -> float:
        """When ``contact``'s own budget lets a request go (``now`` if it does now)."""
        return max(now, self._contact_earliest(contact))

    def held_back(self) -> None:
        """The spacing held a request back: the pace is what limits the run just now."""
        self._held = True

    # -- what happened ------------------------------------------------------------------------

    def send(self, contact: str, now: float) -> Ticket:
        """A request to ``contact`` leaves now."""
        self._sent.append(now)
        self._departed.append(now)
        # Every contact's, whatever the budget is thought to be now: it may turn out to be
        # per path, and the departures before that count against each contact's budget.
        log = self._by_contact.setdefault(contact, deque())
        log.append(now)
        _drop_before(log, now - 2.0 * (self._config.window + self.margin))
        self._prune_sent(now)
        return Ticket(contact, now)

    def unsent(self, ticket: Ticket) -> None:
        """A turn given back without sending: it counts against no budget."""
        contact = self._by_contact.get(ticket.contact)
        for log in (self._sent, self._departed, contact):
            if log is not None and ticket.sent_at in log:
                log.remove(ticket.sent_at)

    def answered(self, ticket: Ticket, answer: Answer, now: float) -> None:
        """Learn from the answer to ``ticket``'s request."""
        self._tick(now)
        if answer.kind is AnswerKind.RATE_LIMITED:
            self._throttle(ticket, now, answer.retry_after)
            return
        if answer.http_status is None:
            # No answer is no evidence that a faster pace would be taken: a climb needs a
            # clean round trip from here on.
            self._changed_at = now
            return
        self._count_as_arrived(ticket, now)
        self._fastest = min(self._fastest, now - ticket.sent_at)
        self._warm_since = min(self._warm_since, now)
        limit, remaining = answer.limit, answer.remaining
        if limit is None or limit < 1 or remaining is None or remaining < 0 or remaining > limit:
            # No sensible budget: keep what was learned, or climb when nothing was.
            if self.kind is BudgetKind.UNKNOWN:
                self.kind = BudgetKind.NONE
            if self.kind is BudgetKind.NONE:
                self._climb(ticket, now)
            return
        self.limit = limit
        self._learn_kind(ticket.contact, limit, remaining, now)
        if self.kind is BudgetKind.SHARED:
            ours = self._ours_before(ticket.sent_at)
            self._others.append((ticket.sent_at, max(0.0, (limit - remaining) - ours)))
        elif self._config.ceiling is None:
            self._climb(ticket, now)
        self._seen[ticket.contact] = now

    # -- how -------------------------------------------------------------------------------------

    def _contact_earliest(self, contact: str) -> float:
        if self.limit is None or not self._per_contact():
            return -math.inf
        log = self._by_contact.get(contact)
        # Until the budget is known to be shared, one request per contact per window: a
        # contact's rows go back to back, and a budget spent on one contact would say
        # nothing of whether the others have budgets of their own.
        count = max(1, math.floor(self.limit)) if self.kind is BudgetKind.PER_PATH else 1
        if log is None or len(log) < count:
            return -math.inf
        return log[-count] + self._config.window + self.margin

    def _per_contact(self) -> bool:
        """Whether each contact's departures are counted on their own."""
        return self.kind is BudgetKind.PER_PATH or (
            self.kind is BudgetKind.SHARED and self._provisional
        )

    def _shared_earliest(self, now: float) -> float:
        """When fewer than L requests (ours and others') will be in the budget's window."""
        assert self.limit is not None  # noqa: S101 - the caller checked
        span = self._config.window + self.margin
        others = self._others
        while others and others[0][0] + span <= now:
            others.popleft()
        used_by_others = min((use for sent_at, use in others if sent_at + span > now), default=0.0)
        free = math.floor(self.limit - used_by_others)
        if free < 1:
            # Until the estimate that leaves no room ages out.
            return min(sent_at for sent_at, _ in others) + span
        if len(self._sent) < free:
            return now
        return self._sent[-free] + span

    def _ours_before(self, sent_at: float) -> int:
        """Our departures the server surely counted when it answered one that left at
        ``sent_at``: itself, and those that left within ``window - margin`` before it. Not
        those that left at the same instant (a window's budget leaves at once): they may have
        arrived after it, and counting them would make this estimate of others' use too low,
        which the smallest estimate then keeps."""
        start = sent_at - self._config.window + self.margin
        count = 1
        for t in reversed(self._departed):
            if t >= sent_at:
                continue
            if t <= start:
                break
            count += 1
        return count

    def _learn_kind(self, contact: str, limit: float, remaining: float, now: float) -> None:
        last = self._seen.get(contact)
        if last is None or now - last >= self._config.window:
            fresh = remaining >= limit - 1 and limit >= 2
            self._fresh_in_a_row = self._fresh_in_a_row + 1 if fresh else 0
            if self._fresh_in_a_row >= 2:
                self.kind, self._provisional = BudgetKind.PER_PATH, False
                return
            if not fresh:
                self.kind, self._provisional = BudgetKind.SHARED, False
        if self.kind in (BudgetKind.UNKNOWN, BudgetKind.NONE):
            # One fresh answer proves nothing yet: spend it as a shared budget until two
            # in a row show it is per path (spending it so is safe either way).
            self.kind, self._provisional = BudgetKind.SHARED, True

    def _count_as_arrived(self, ticket: Ticket, now: float) -> None:
        """Count a request from when it may have arrived: a departure's time is when it was
        let go, and a request slower than the fastest answer may have spent the difference
        on its way there (the first, on a new connection, took 13 ms more: counted from its
        departure, the ceiling let 52 through in the second after it arrived). Requests
        that left before any answer came, on connections still being opened, are counted
        from their answers: there is no fastest answer yet to tell their way there by."""
        cold = ticket.sent_at < self._warm_since
        late = (now - ticket.sent_at) - (0.0 if cold else self._fastest)
        if late <= 0:
            return
        arrived = ticket.sent_at + late
        for log in (self._sent, self._by_contact.get(ticket.contact)):
            if log is not None:
                _move_later(log, ticket.sent_at, arrived)

    def _climb(self, ticket: Ticket, now: float) -> None:
        if self._slow_start:  # only the first drop reads it
            self._taken.append(now)
            _drop_before(self._taken, now - self._config.window)
        latency = now - ticket.sent_at
        if ticket.sent_at < self._changed_at or not self._held:
            return  # sent before the pace changed, or the pace is not what holds requests
        if latency > _LATENCY_GROWTH * self._fastest + _LATENCY_SLACK:
            return  # latency grows: more would only queue
        if self._slow_start:
            # Twice the requests per round trip: one carries the bucket plus what the pace
            # lets go meanwhile, so from 5/s at 20 ms the next goes at 110/s, not 10/s
            # (the first round trips each carried the bucket's two and no more).
            self._set_rate(2.0 * self._rate + _small_bucket(self._rate) / max(latency, 1e-3), now)
        elif now - self._changed_at >= self._config.window:
            self._set_rate(self._rate * 1.1, now)

    def _throttle(self, ticket: Ticket, now: float, retry_after: float | None) -> None:
        self.throttled += 1
        wait = self._config.window
        if retry_after is not None and retry_after > 0:
            wait = min(retry_after, self._config.max_pause)
        self.paused_until = max(self.paused_until, now + wait)
        if ticket.sent_at <= self._dropped_at:
            # Sent before the last drop: the same overload, already answered for. Every
            # request in flight at the first 429 is refused too, and dropping for each took
            # a climbing pace from 740/s to the 1/s floor within 20 ms.
            return
        self._dropped_at = now
        climbing, self._slow_start = self._slow_start, False
        if self.kind is BudgetKind.SHARED:
            self.margin = min(2 * self.margin, self._config.window / 10)
            return
        # Half the pace. The first 429 of a climb by round trips, which may be far past the
        # limit by then, drops it to what the server took in the last window if that is less:
        # halving from 740/s cost six overloads of 429s under a hidden 10/s (each refusing
        # every request in flight), where this costs one. (Early in a run that count is of
        # less than a window: a 429 from another client's use then slows the run more.)
        rate = self._rate * 0.5
        _drop_before(self._taken, now - self._config.window)
        if climbing and self._taken:
            rate = min(rate, len(self._taken) / self._config.window)
        self._set_rate(max(rate, self._config.min_rate), now)

    def _set_rate(self, rate: float, now: float) -> None:
        self._rate = self._bounded(rate)
        self._changed_at = now
        self._held = False

    def _bounded(self, rate: float) -> float:
        rate = min(rate, self._config.max_rate)
        if self._config.ceiling is not None:
            rate = min(rate, self._config.ceiling)
        return max(rate, 0.01)

    def _prune_sent(self, now: float) -> None:
        # Kept by time, not by count, for both the budget's window and the ceiling's: a slow
        # request's answer may come after R later ones left, and must still find its
        # departure to count it from its arrival.
        keep = 2.0 * (self._config.window + self.margin)
        if self._config.ceiling is not None:
            _, span = _ceiling_count(self._config.ceiling)
            keep = max(keep, 2.0 * (span + self._config.ceiling_margin))
        for log in (self._sent, self._departed):
            _drop_before(log, now - max(keep, 2.0))

    def _tick(self, now: float) -> None:
        """Once a window: forget contacts and per-path logs that no longer count."""
        window = self._config.window
        if now - self._window_start < window:
            return
        self._window_start = now
        self._seen = {c: t for c, t in self._seen.items() if t >= now - window}
        span = window + self.margin
        self._by_contact = {
            c: log for c, log in self._by_contact.items() if log and log[-1] + span > now
        }


def _small_bucket(rate: float) -> float:
    """The bucket of a climbing or capped pace: two tokens, or one under 2/s."""
    return min(_SMALL_BUCKET, max(1.0, math.floor(rate)))


def _move_later(log: deque[float], before: float, after: float) -> None:
    """Move one ``before`` in the sorted ``log`` to ``after`` (later), keeping it sorted.
    Both places are near the newest end (a request's answer comes soon after it left), so
    the search starts there: a linear ``in`` and ``remove`` walked 2 s of departures."""
    for i in range(len(log) - 1, -1, -1):
        if log[i] == before:
            break
        if log[i] < before:
            return  # not there (given back, or forgotten)
    else:
        return
    del log[i]
    j = i
    while j < len(log) and log[j] <= after:
        j += 1
    log.insert(j, after)


def _drop_before(log: deque[float], horizon: float) -> None:
    """Forget the times in ``log`` (oldest first) before ``horizon``."""
    while log and log[0] < horizon:
        log.popleft()


def _ceiling_count(ceiling: float) -> tuple[int, float]:
    """(requests, seconds): at most that many may leave in any such span. R per second, or
    one per 1/R seconds under 1/s."""
    if ceiling >= 1:
        return math.floor(ceiling), 1.0
    return 1, 1.0 / ceiling
