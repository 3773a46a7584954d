"""The run's pace: ``batcher.pacer.Pacer`` in virtual time (``FakeClock``), driven by concurrent
anyio tasks through ``turn()`` and observed through when turns are granted and the pacer's
properties. The rate limits are kept by ``FakeApi``, a few lines of in-process bookkeeping:
nothing goes over a network."""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import anyio
import anyio.abc
import pytest

from batcher.models import Answer, AnswerKind
from batcher.pacer import BudgetKind, Pacer, PacingConfig
from batcher.virtualtime import FakeClock

#: Counting windows as half-open [t, t + width - EPSILON): sums of 1/rate drift by a few ulps.
EPSILON = 1e-6
#: Virtual seconds one run may last: a hang fails at once (the clock jumps there), not at a timeout.
BOUND = 600.0
#: PacingConfig's defaults: a budget's window and margin, and the ceiling's margin.
SPAN = 1.0 + 0.005  # a window plus PacingConfig.margin
CEILING_SPAN = 1.0 + 0.005
OK = Answer(AnswerKind.OK, 200)
#: No answer came: it tells the pacer nothing about the budget.
TIMED_OUT = Answer(AnswerKind.RETRYABLE, None, error="timed out")
#: No connection was made: the API never saw the request.
NOT_SENT = Answer(AnswerKind.RETRYABLE, None, error="connection refused", sent=False)
#: What run_tasks starts: an async function of no arguments.
Task = Callable[[], Coroutine[Any, Any, None]]
#: The answer a worker gets for a request to a contact.
Respond = Callable[[str], Answer]


def run_tasks(clock: FakeClock, *tasks: Task) -> None:
    """Run ``tasks`` concurrently in ``clock``'s virtual time until all of them return."""

    async def main() -> None:
        with anyio.fail_after(BOUND):
            async with anyio.create_task_group() as group:
                for task in tasks:
                    group.start_soon(task)

    clock.run(main)


def run_main(clock: FakeClock, main: Task) -> None:
    """Run one async ``main`` in ``clock``'s virtual time, failing if it lasts over BOUND."""

    async def bounded() -> None:
        with anyio.fail_after(BOUND):
            await main()

    clock.run(bounded)


def busiest_window(times: Iterable[float], width: float = 1.0) -> int:
    """Most events in any half-open window [t, t + width) starting at an event."""
    ordered = sorted(times)
    best = 0
    for i, start in enumerate(ordered):
        end = start + width - EPSILON
        best = max(best, sum(1 for t in ordered[i:] if t < end))
    return best


def headers(limit: float | None, remaining: float | None) -> Answer:
    """A 200 answer carrying X-RateLimit headers."""
    return Answer(AnswerKind.OK, 200, contact_id=1, limit=limit, remaining=remaining)


def throttled(retry_after: float | None) -> Answer:
    """A 429 answer."""
    return Answer(AnswerKind.RATE_LIMITED, 429, retry_after=retry_after)


def always(answer: Answer) -> Respond:
    return lambda _contact: answer


@dataclass
class Sent:
    """Departures, in the order their turns were granted."""

    log: list[tuple[str, float]] = field(default_factory=list)

    def times(self, contact: str | None = None) -> list[float]:
        return [t for c, t in self.log if contact is None or c == contact]


def worker(
    pacer: Pacer,
    clock: FakeClock,
    contacts: Iterable[str],
    sent: Sent,
    respond: Respond,
    *,
    latency: float = 0.0,
    until: float = BOUND,
) -> Task:
    """A worker: a turn for each of ``contacts`` (a finite iterable) in order, until
    ``until``; each request is answered ``respond(contact)`` after ``latency``."""

    async def work() -> None:
        for contact in contacts:
            if clock.now() >= until:
                return
            async with pacer.turn(contact) as turn:
                assert turn.granted
                sent.log.append((contact, clock.now()))
                if latency:
                    await clock.sleep(latency)
                turn.answered(respond(contact))

    return work


def one_off(name: str, count: int = 1000) -> Iterable[str]:
    """``count`` contacts, each seen once."""
    return (f"id:{name}-{n}" for n in range(count))


def same(contact: str, count: int = 1000) -> Iterable[str]:
    return (contact for _ in range(count))


class FakeApi:
    """An API's rate limit as its server keeps it: ``limit`` requests per ``window`` seconds,
    counted on arrival over a sliding window or a fixed one (``[k * window, (k + 1) *
    window)``), for the whole run or per contact path. ``others`` are arrivals of other
    clients on the shared budget. Over the limit it answers 429 (and does not count it)."""

    def __init__(
        self,
        clock: FakeClock,
        limit: int,
        *,
        window: float = 1.0,
        sliding: bool = True,
        per_path: bool = False,
        others: Sequence[float] = (),
    ) -> None:
        self._clock = clock
        self._limit = limit
        self._window = window
        self._sliding = sliding
        self._per_path = per_path
        self._arrivals: dict[str, list[float]] = {"": sorted(others)}
        self.refused = 0

    def _used(self, key: str, now: float) -> int:
        arrivals = self._arrivals.setdefault(key, [])
        if self._sliding:
            return sum(1 for t in arrivals if now - self._window < t <= now)
        window = math.floor(now / self._window)
        return sum(1 for t in arrivals if t <= now and math.floor(t / self._window) == window)

    def answer(self, contact: str) -> Answer:
        now = self._clock.now()
        key = contact if self._per_path else ""
        used = self._used(key, now)
        if used >= self._limit:
            self.refused += 1
            return throttled(1.0)
        self._arrivals[key].append(now)
        return headers(self._limit, self._limit - used - 1)


# -- the start and the ceiling ----------------------------------------------------------------


def test_the_start_pace_lets_a_bucket_of_two_go_then_spaces_evenly() -> None:
    """At start_rate 5/s, before any answer: two at once (the bucket of two that keeps a
    late wake-up's lateness), then one every 0.2 s."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=5.0), clock)
    sent = Sent()
    # Answered long after the last has gone: nothing is learned meanwhile.
    work = [worker(pacer, clock, [f"id:{n}"], sent, always(OK), latency=10.0) for n in range(6)]
    run_tasks(clock, *work)
    assert sent.times() == pytest.approx([0.0, 0.0, 0.2, 0.4, 0.6, 0.8], abs=1e-5)


def test_the_ceiling_holds_from_the_first_second() -> None:
    """At a ceiling of 5/s, no 1-second window (the first included) holds more than 5."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=5.0, ceiling=5.0), clock)
    sent = Sent()
    work = [worker(pacer, clock, one_off(f"w{i}", 10), sent, always(OK)) for i in range(4)]
    run_tasks(clock, *work)
    assert len(sent.log) == 40
    assert busiest_window(sent.times(), CEILING_SPAN) == 5
    assert sum(1 for t in sent.times() if t < 1.0) == 5


def test_a_climb_never_passes_the_ceiling() -> None:
    """Climbing without headers from 5/s to a ceiling of 40/s: no 1-second window (plus the
    ceiling's margin) ever holds more than 40, and the climb does reach it."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=5.0, ceiling=40.0), clock)
    sent = Sent()
    work = [
        worker(pacer, clock, one_off(f"w{i}", 80), sent, always(OK), latency=0.01) for i in range(8)
    ]
    run_tasks(clock, *work)
    assert len(sent.log) == 640
    assert pacer.rate == 40.0
    assert busiest_window(sent.times(), CEILING_SPAN) <= 40
    assert busiest_window(sent.times()) == 40  # at the ceiling, not below it


def test_a_ceiling_below_start_rate_paces_from_the_first_request() -> None:
    """A ceiling of 2/s under a start_rate of 50/s: two at once, then two a second and a
    ceiling's margin, from the first request on."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=50.0, ceiling=2.0), clock)
    assert pacer.rate == 2.0
    sent = Sent()
    work = [worker(pacer, clock, [f"id:{n}"], sent, always(OK), latency=10.0) for n in range(5)]
    run_tasks(clock, *work)
    assert sent.times() == pytest.approx([0.0, 0.0, 1.005, 1.005, 2.01], abs=1e-5)


class LateClock(FakeClock):
    """Virtual time in which every sleeper on the clock wakes 3 ms late."""

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds + 0.003)


def test_late_wake_ups_never_let_a_second_hold_more_than_the_ceiling() -> None:
    """At a ceiling of 50/s, with every wake-up 3 ms late and uneven work between requests,
    the 51st request after any request leaves at least 1 s and the ceiling's margin later."""
    clock = LateClock()
    pacer = Pacer(PacingConfig(start_rate=50.0, ceiling=50.0), clock)
    times: list[float] = []

    def late_worker(name: str) -> Task:
        async def work() -> None:
            for n in range(40):
                async with pacer.turn(f"id:{name}-{n}") as turn:
                    times.append(clock.now())
                    await clock.sleep(0.004 if n % 3 else 0.0)
                    turn.answered(OK)

        return work

    run_tasks(clock, *(late_worker(f"w{i}") for i in range(6)))
    assert len(times) == 240
    assert all(
        later - earlier >= CEILING_SPAN - 1e-9
        for earlier, later in zip(times, times[50:], strict=False)
    )


def test_the_ceiling_holds_when_a_429_pause_ends() -> None:
    """A shared budget of 100 under a ceiling of 10/s: the run goes at the ceiling, with a
    bucket of two. A 429 (Retry-After 0.3) pauses every request; when the pause ends the
    requests that piled up do not burst past the ceiling."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=10.0, ceiling=10.0), clock)
    api = FakeApi(clock, 100)
    sent = Sent()
    throttled_at: list[float] = []

    def respond(contact: str) -> Answer:
        if clock.now() >= 1.5 and not throttled_at:
            throttled_at.append(clock.now())
            return throttled(0.3)
        return api.answer(contact)

    work = [
        worker(pacer, clock, one_off(f"w{i}", 40), sent, respond, latency=0.02, until=5.0)
        for i in range(8)
    ]
    run_tasks(clock, *work)
    assert pacer.budget is BudgetKind.SHARED
    assert pacer.limit == 100
    assert pacer.throttled == 1
    [at] = throttled_at
    times = sent.times()
    assert not [t for t in times if at < t < at + 0.3]
    assert busiest_window(times, CEILING_SPAN) <= 10
    assert busiest_window([t for t in times if t >= at + 0.3], CEILING_SPAN) <= 10
    assert busiest_window(times) == 10  # at the ceiling
    assert api.refused == 0


# -- a shared budget -----------------------------------------------------------------------


def burst(times: Sequence[float], window: int) -> list[float]:
    """The departures in the ``window``-th window + margin of the run."""
    start = window * SPAN
    return [t for t in times if start - EPSILON <= t < start + SPAN - EPSILON]


@pytest.mark.parametrize("sliding", [True, False], ids=["sliding", "fixed"])
def test_a_shared_budget_is_spent_at_once_and_never_overspent(sliding: bool) -> None:
    """A shared budget of 10 a second (sliding or fixed windows at the server): a window's
    10 leave at once, no window + margin ever holds more than 10, over four windows, and the
    server refuses none."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=5.0), clock)
    api = FakeApi(clock, 10, sliding=sliding)
    sent = Sent()
    work = [
        worker(pacer, clock, one_off(f"w{i}", 20), sent, api.answer, latency=0.02, until=4.0)
        for i in range(20)
    ]
    run_tasks(clock, *work)
    assert pacer.budget is BudgetKind.SHARED
    assert pacer.limit == 10
    assert pacer.rate == 10.0
    assert api.refused == 0
    times = sent.times()
    assert busiest_window(times, SPAN) == 10
    # Two at the start pace, then the other eight as soon as the first answers (20 ms) show
    # the budget; each later window all ten as the one before ages out (the first two, sent
    # before any answer came, count from their answers at 20 ms).
    assert burst(times, 0) == pytest.approx([0.0] * 2 + [0.02] * 8, abs=1e-6)
    if not sliding:
        for k in range(1, 4):
            expected = [k * SPAN + 0.02] * 10
            assert burst(times, k) == pytest.approx(expected, abs=1e-6)
        return
    # A sliding window at the server still holds the first window's last eight when it
    # answers the second window's first two: the learner cannot tell those from others' use
    # and may hold back for a window until that estimate ages out. Each window is still
    # spent at once, and the run loses at most that one window's worth.
    for k in range(1, 4):
        window = burst(times, k)
        assert window
        assert max(window) - min(window) <= 0.02 + EPSILON
    assert sum(len(burst(times, k)) for k in range(4)) >= 30


def test_others_use_holds_slots_back_until_it_ages_out() -> None:
    """Others used 15 of a shared 20 just before the run: the first window has room for 5 of
    ours, the server refuses none, and once the others' use has aged out the run has all 20."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=5.0), clock)
    api = FakeApi(clock, 20, others=[0.0] * 15)
    sent = Sent()
    work = [
        worker(pacer, clock, one_off(f"w{i}", 20), sent, api.answer, latency=0.02, until=3.0)
        for i in range(30)
    ]
    run_tasks(clock, *work)
    assert api.refused == 0
    times = sent.times()
    assert len([t for t in times if t < 1.0]) == 5
    assert busiest_window([t for t in times if t >= 1.0], SPAN) == 20
    assert busiest_window(times, SPAN) <= 20


def test_a_faster_budget_counts_for_turns_already_waiting() -> None:
    """Turns queued at the 5/s start pace go as soon as an answer shows a budget of 100, not
    at the turns they would have had at 5/s."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=5.0), clock)
    sent = Sent()
    first = worker(pacer, clock, ["id:first"], sent, always(headers(100, 99)), latency=0.005)
    waiting = [worker(pacer, clock, [f"id:{n}"], sent, always(OK), latency=1.0) for n in range(7)]
    run_tasks(clock, first, *waiting)
    assert pacer.rate == 100.0
    assert sent.times() == pytest.approx([0.0, 0.0] + [0.005] * 6, abs=1e-6)


def test_garbage_headers_keep_a_learned_budget() -> None:
    """After a shared budget of 20 is learned, answers with garbage headers (or none) keep
    it: the run stays at 20 per window + margin."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=5.0), clock)
    api = FakeApi(clock, 20)
    garbage = [headers(0, 0), headers(-1, 3), headers(20, 25), headers(None, None), OK]
    sent = Sent()
    count = iter(range(10_000))

    def respond(contact: str) -> Answer:
        n = next(count)
        answer = api.answer(contact)  # the server counts every request all the same
        return answer if n < 2 else garbage[n % len(garbage)]

    work = [
        worker(pacer, clock, one_off(f"w{i}", 20), sent, respond, latency=0.02, until=3.5)
        for i in range(30)
    ]
    run_tasks(clock, *work)
    assert pacer.budget is BudgetKind.SHARED
    assert pacer.limit == 20
    assert pacer.rate == 20.0
    assert api.refused == 0
    assert busiest_window(sent.times(), SPAN) == 20


# -- per-path budgets -------------------------------------------------------------------------


def test_a_per_path_budget_holds_each_contact_while_the_run_goes_at_the_ceiling() -> None:
    """Two fresh first-seen contacts show the budget (5 a second) is per path. Two hot
    contacts each get their 5 per window + margin, never more (their requests before the
    budget was learned count too); the run goes at the 50/s ceiling; the server refuses
    none."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=5.0, ceiling=50.0), clock)
    api = FakeApi(clock, 5, per_path=True)
    sent = Sent()
    work = [
        worker(pacer, clock, same(f"id:hot{i}"), sent, api.answer, latency=0.02, until=3.0)
        for i in range(2)
    ]
    work += [
        worker(pacer, clock, one_off(f"w{i}"), sent, api.answer, latency=0.02, until=3.0)
        for i in range(6)
    ]
    run_tasks(clock, *work)
    assert pacer.budget is BudgetKind.PER_PATH
    assert pacer.limit == 5
    assert pacer.rate == 50.0
    assert api.refused == 0
    for hot in ("id:hot0", "id:hot1"):
        times = sent.times(hot)
        assert busiest_window(times, SPAN) == 5
        assert len(times) >= 14  # its 5 in each of three windows (the last may be cut short)
    assert busiest_window(sent.times(), CEILING_SPAN) <= 50
    assert busiest_window([t for t in sent.times() if t >= 1.0]) == 50


async def learn_per_path(pacer: Pacer, clock: FakeClock, sent: Sent) -> None:
    """Two fresh first-seen contacts, answered Remaining 4 of 5: a per-path budget."""
    for n in range(2):
        await worker(pacer, clock, [f"id:p{n}"], sent, always(headers(5, 4)))()
    assert pacer.budget is BudgetKind.PER_PATH


def test_a_per_path_budget_does_not_hold_other_contacts_back() -> None:
    """Under a per-path budget of 5 with a 50/s ceiling, one busy contact gets at most 5
    turns per window + margin, while 40 one-off contacts go at the run's 50/s."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=5.0, ceiling=50.0), clock)
    sent = Sent()

    async def main() -> None:
        await learn_per_path(pacer, clock, sent)
        async with anyio.create_task_group() as group:
            group.start_soon(worker(pacer, clock, same("id:busy", 15), sent, always(OK)))
            for i in range(4):
                group.start_soon(worker(pacer, clock, one_off(f"w{i}", 10), sent, always(OK)))

    run_main(clock, main)
    busy = sent.times("id:busy")
    others = [t for c, t in sent.log if c.startswith("id:w")]
    assert len(busy) == 15
    assert busiest_window(busy, SPAN) == 5
    assert len(others) == 40
    assert max(others) < 1.0  # 42 requests at 50/s, not held back by the busy contact
    assert busiest_window(sent.times(), CEILING_SPAN) <= 50


def test_a_per_path_budget_holds_for_concurrent_turns_of_one_contact() -> None:
    """Three workers taking turns for one contact together still get at most 5 per window
    + margin, while six others keep every other slot taken."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=5.0, ceiling=50.0), clock)
    sent = Sent()

    async def main() -> None:
        await learn_per_path(pacer, clock, sent)
        async with anyio.create_task_group() as group:
            for _ in range(3):
                group.start_soon(worker(pacer, clock, same("id:busy", 5), sent, always(OK)))
            for i in range(6):
                group.start_soon(worker(pacer, clock, one_off(f"w{i}", 30), sent, always(OK)))

    run_main(clock, main)
    busy = sent.times("id:busy")
    assert len(busy) == 15
    assert busiest_window(busy, SPAN) == 5


def test_no_turn_waits_far_longer_than_its_place_in_line() -> None:
    """Eight workers at a ceiling of 50/s with a 20 ms round trip: the pace, not the
    workers, is the bottleneck, and each turn waits about the time seven others take
    (0.14 s), never many times that."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=50.0, ceiling=50.0), clock)
    waits: list[float] = []

    def timed_worker(name: str) -> Task:
        async def work() -> None:
            for n in range(40):
                asked = clock.now()
                async with pacer.turn(f"id:{name}-{n}") as turn:
                    waits.append(clock.now() - asked)
                    await clock.sleep(0.02)
                    turn.answered(OK)

        return work

    run_tasks(clock, *(timed_worker(f"w{i}") for i in range(8)))
    assert len(waits) == 320
    assert max(waits) < 0.3


# -- the climb without headers ----------------------------------------------------------------


def test_the_pace_climbs_without_headers_while_it_holds_requests_back() -> None:
    """With busy workers and no headers the pace climbs per round trip (the next may carry
    twice the requests: 2r + 2/latency), only ever up, until the ceiling (500/s)."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=5.0, ceiling=500.0), clock)
    rates: list[float] = []

    def respond(_contact: str) -> Answer:
        rates.append(pacer.rate)
        return OK

    work = [
        worker(pacer, clock, one_off(f"w{i}", 60), Sent(), respond, latency=0.01) for i in range(8)
    ]
    run_tasks(clock, *work)
    rates.append(pacer.rate)
    assert rates == sorted(rates)  # only ever up, with no 429
    assert sorted(set(rates)) == [5.0, 210.0, 500.0]
    assert rates[-1] == 500.0


def test_the_pace_does_not_climb_when_workers_are_the_bottleneck() -> None:
    """A lone worker sending once a second never makes the pace climb."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=5.0), clock)

    async def slow_worker() -> None:
        for n in range(8):
            async with pacer.turn(f"id:{n}") as turn:
                turn.answered(OK)
            await clock.sleep(1.0)

    run_tasks(clock, slow_worker)
    assert clock.now() >= 8.0
    assert pacer.rate == 5.0


def climb(latency: Callable[[float], float], *, seconds: float = 2.0) -> list[float]:
    """The paces eight busy workers saw, answered without headers after ``latency(pace)``
    (the pace as the request left)."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=5.0), clock)
    rates: list[float] = []

    def busy(name: str) -> Task:
        async def work() -> None:
            for n in range(1000):
                if clock.now() >= seconds:
                    return
                async with pacer.turn(f"id:{name}-{n}") as turn:
                    await clock.sleep(latency(pacer.rate))
                    turn.answered(OK)
                    rates.append(pacer.rate)

        return work

    run_tasks(clock, *(busy(f"w{i}") for i in range(8)))
    return rates


def test_the_climb_holds_while_latency_grows() -> None:
    """Answers slower than twice the fastest plus 5 ms mean the API (or this process) is
    saturated: the climb holds there; at a steady latency it goes on."""
    steady = climb(lambda _pace: 0.01)
    within_slack = climb(lambda pace: 0.01 if pace < 300.0 else 0.024)
    growing = climb(lambda pace: 0.01 if pace < 300.0 else 0.026)
    assert max(steady) >= 640.0
    assert max(within_slack) >= 640.0
    assert max(growing) == 620.0  # 5 -> 210 -> 620: the first answers at 620/s came slow
    assert growing[-1] == 620.0


def paces_after(answer: Answer, rounds: int = 40) -> list[float]:
    """The pace after each of ``rounds`` turns, one after another, each answered ``answer``."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=5.0), clock)
    rates: list[float] = []

    async def work() -> None:
        for n in range(rounds):
            async with pacer.turn(f"id:{n}") as turn:
                turn.answered(answer)
            rates.append(pacer.rate)

    run_tasks(clock, work)
    return rates


def test_unanswered_requests_do_not_make_the_pace_climb() -> None:
    """Requests that got no answer at all do not climb the pace (an API that is down once
    made it climb to 5,120/s); answered ones do."""
    assert set(paces_after(TIMED_OUT)) == {5.0}
    assert max(paces_after(OK)) > 5.0


# -- 429 -----------------------------------------------------------------------------------


def test_a_429_pauses_every_waiting_turn_until_retry_after() -> None:
    """After a 429 with Retry-After 2, no turn is granted before 2 s and the climbing pace
    is halved; when the pause ends the turns that waited it out go at that pace (after the
    bucket of two), not all at once."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=10.0), clock)
    sent = Sent()

    async def main() -> None:
        async with pacer.turn("id:429") as turn:
            turn.answered(throttled(2))
        assert pacer.paused_for == pytest.approx(2.0)
        assert pacer.rate == 5.0
        async with anyio.create_task_group() as group:
            for n in range(6):
                # Answered long after the last has gone: nothing is learned meanwhile.
                group.start_soon(worker(pacer, clock, [f"id:{n}"], sent, always(OK), latency=5))

    run_main(clock, main)
    assert sent.times() == pytest.approx([2.0, 2.0, 2.2, 2.4, 2.6, 2.8], abs=1e-5)
    assert pacer.paused_for == 0.0


def test_a_429_reaches_turns_already_waiting() -> None:
    """A turn waiting for the pace when a 429 comes back still waits out the pause."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=1.0), clock)
    sent = Sent()
    early = worker(pacer, clock, ["id:1"], sent, always(throttled(3)), latency=0.5)
    waiting = worker(pacer, clock, ["id:2"], sent, always(OK))  # its token comes at 1.0
    run_tasks(clock, early, waiting)
    assert sent.times() == pytest.approx([0.0, 3.5])


def test_429s_at_once_share_one_pause_and_one_drop() -> None:
    """Two 429s answered at one moment pause once and halve the pace once; one answered
    later, for a later pause, pauses and halves again."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=10.0), clock)
    sent = Sent()
    rates: list[float] = []

    def respond(_contact: str) -> Answer:
        return throttled(2)

    async def main() -> None:
        async with anyio.create_task_group() as group:
            for n in range(2):
                group.start_soon(worker(pacer, clock, [f"id:{n}"], sent, respond, latency=0.1))
        rates.append(pacer.rate)
        assert pacer.paused_for == pytest.approx(2.0)
        await worker(pacer, clock, ["id:later"], sent, respond, latency=0.1)()
        rates.append(pacer.rate)

    run_main(clock, main)
    assert sent.times() == pytest.approx([0.0, 0.0, 2.1])
    assert pacer.throttled == 3
    assert rates == [5.0, 2.5]
    assert pacer.paused_for == pytest.approx(2.0)


def test_429s_never_push_the_pace_below_min_rate() -> None:
    """However many 429s come, a climbing pace stays at min_rate or more (1/s by default)."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=50.0), clock)
    rates: list[float] = []

    async def main() -> None:
        for n in range(10):  # each waits out the last one's pause: a drop each time
            async with pacer.turn(f"id:{n}") as turn:
                turn.answered(throttled(1.0))
            rates.append(pacer.rate)

    run_main(clock, main)
    assert rates == [25.0, 12.5, 6.25, 3.125, 1.5625, 1.0, 1.0, 1.0, 1.0, 1.0]


def test_a_429_stops_the_climb() -> None:
    """A pace climbing by round trips drops at its first 429 to what the server took in the
    last window (eight workers at 10 ms take far less than the climb had reached), and from
    then on climbs only by 10 % at most once a window."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=5.0), clock)
    changes: list[tuple[float, float]] = [(0.0, pacer.rate)]  # (when, new pace)
    throttled_at: list[float] = []
    taken: list[float] = []  # clean answers

    def busy(name: str) -> Task:
        async def work() -> None:
            for n in range(1000):
                if clock.now() >= 4.0:
                    return
                async with pacer.turn(f"id:{name}-{n}") as turn:
                    await clock.sleep(0.01)
                    if clock.now() >= 0.4 and not throttled_at:
                        throttled_at.append(clock.now())
                        turn.answered(throttled(0.5))
                    else:
                        turn.answered(OK)
                        taken.append(clock.now())
                    if pacer.rate != changes[-1][1]:
                        changes.append((clock.now(), pacer.rate))

        return work

    run_tasks(clock, *(busy(f"w{i}") for i in range(8)))
    [at] = throttled_at
    before = [rate for t, rate in changes if t < at]
    # 2r + 2 / 0.01 each round trip: at least twice the last pace.
    assert all(later == 2 * earlier + 200 for earlier, later in pairwise(before))
    assert len(before) >= 3  # it was climbing
    after = [(t, rate) for t, rate in changes if t >= at]
    took = sum(1 for t in taken if at - 1.0 < t <= at)
    assert took < before[-1] / 2
    assert after[0] == (at, took)
    assert len(after) >= 2  # it climbs again, slowly
    for (earlier_at, earlier), (later_at, later) in pairwise(after):
        assert later == pytest.approx(earlier * 1.1)
        assert later_at - earlier_at >= 1.0


# -- turns given back, and waits ended ---------------------------------------------------------


def test_a_turn_left_without_an_answer_counts_against_no_budget() -> None:
    """A turn left without ``answered()`` (or with an answer saying the request never left)
    is given back: at a ceiling of 2/s, three such turns at 0 do not hold back the turns
    after them, which the spacing alone paces."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=2.0, ceiling=2.0), clock)
    sent = Sent()

    async def main() -> None:
        async with pacer.turn("id:left") as turn:
            assert turn.granted
        with pytest.raises(RuntimeError, match="the body failed"):
            async with pacer.turn("id:raised") as turn:
                raise RuntimeError("the body failed")
        await worker(pacer, clock, ["id:refused"], sent, always(NOT_SENT))()
        await worker(pacer, clock, one_off("after", 3), sent, always(OK))()

    run_main(clock, main)
    # The spacing's bucket of two went at 0, then a token each 0.5 s: the refused one's at
    # 0.5, the next at 1.0 and 1.5, as the spacing lets them, for the ceiling counts none of
    # the three given back (counting the two at 0 would hold the one at 0.5 to 1.005, and
    # the refused one at 0.5 would hold the one at 1.5 to 1.505); the fourth waits for the
    # ceiling, a second and its margin after the one at 1.0.
    assert sent.times() == pytest.approx([0.5, 1.0, 1.5, 1.0 + CEILING_SPAN], abs=1e-5)


def test_a_turn_left_without_an_answer_gives_back_its_in_flight_token() -> None:
    """40 turns given back (left unanswered, or left by an exception) leave every one of the
    16 in-flight tokens free: 16 requests then go on the wire together, the 17th waits."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=1000.0), clock, cpu_time=lambda: 0.0)

    async def main() -> None:
        for n in range(40):
            if n % 2:
                async with pacer.turn(f"id:{n}"):
                    pass
            else:
                with pytest.raises(ValueError, match="no"):
                    async with pacer.turn(f"id:{n}"):
                        raise ValueError("no")
        assert pacer.in_flight_cap == 16
        async with anyio.create_task_group() as group:
            wire = Wire(pacer, clock, group)
            probe = [f"id:probe{n}" for n in range(17)]
            assert sorted(await wire.send_all(probe, within=10.0)) == sorted(probe[:16])
            await wire.answer_all()

    run_main(clock, main)


def test_stop_waiting_ends_every_wait_with_a_turn_not_granted() -> None:
    """``stop_waiting`` ends every wait for a turn at once (here, 20 turns waiting out a
    10 s pause): those turns are not granted, count against nothing, and give back the
    in-flight tokens they held; turns asked for afterwards are granted as usual."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=1000.0), clock, cpu_time=lambda: 0.0)
    ended: list[tuple[bool, float]] = []

    async def waiter(n: int) -> None:
        async with pacer.turn(f"id:w{n}") as turn:
            ended.append((turn.granted, clock.now()))
            turn.answered(OK)  # not granted: nothing to answer, and nothing happens

    async def main() -> None:
        async with pacer.turn("id:429") as turn:
            turn.answered(throttled(10))
        async with anyio.create_task_group() as group:
            for n in range(20):
                group.start_soon(waiter, n)
            await clock.sleep(1.0)
            assert ended == []
            pacer.stop_waiting()
        assert ended == [(False, 1.0)] * 20
        assert pacer.throttled == 1
        async with anyio.create_task_group() as group:
            wire = Wire(pacer, clock, group)
            probe = [f"id:probe{n}" for n in range(17)]
            assert sorted(await wire.send_all(probe, within=20.0)) == sorted(probe[:16])
            assert min(held.granted_at for held in wire.on_the_wire) == pytest.approx(10.0)
            await wire.answer_all()

    run_main(clock, main)


# -- the in-flight cap -------------------------------------------------------------------------


@dataclass
class Held:
    """A request on the wire: its turn held open until it is answered."""

    contact: str
    granted_at: float
    answer: anyio.Event = field(default_factory=anyio.Event)
    done: anyio.Event = field(default_factory=anyio.Event)


class Wire:
    """Requests sent and not yet answered: each a task holding its turn open."""

    def __init__(self, pacer: Pacer, clock: FakeClock, group: anyio.abc.TaskGroup) -> None:
        self._pacer = pacer
        self._clock = clock
        self._group = group
        #: Granted and not yet answered, oldest first.
        self.on_the_wire: list[Held] = []

    async def _hold(self, contact: str, granted: anyio.Event | None) -> None:
        async with self._pacer.turn(contact) as turn:
            if not turn.granted:
                return
            held = Held(contact, self._clock.now())
            self.on_the_wire.append(held)
            if granted is not None:
                granted.set()
            await held.answer.wait()
            turn.answered(OK)
        held.done.set()

    def start(self, contact: str) -> None:
        """Ask for a turn for ``contact`` (without waiting for it)."""
        self._group.start_soon(self._hold, contact, None)

    async def send(self, *contacts: str) -> None:
        """For each contact in turn: wait for its turn (each then stays on the wire)."""
        for contact in contacts:
            granted = anyio.Event()
            self._group.start_soon(self._hold, contact, granted)
            await granted.wait()

    async def send_all(self, contacts: Sequence[str], *, within: float) -> list[str]:
        """Ask for a turn for each contact at once: those granted within ``within``
        seconds, now on the wire. Waits still going then are ended (never sent)."""
        before = len(self.on_the_wire)
        for contact in contacts:
            self.start(contact)
        await self._clock.sleep(within)
        self._pacer.stop_waiting()
        return [held.contact for held in self.on_the_wire[before:]]

    async def answer_oldest(self) -> float:
        """Answer the oldest request on the wire; when."""
        held = self.on_the_wire.pop(0)
        held.answer.set()
        await held.done.wait()
        return self._clock.now()

    async def answer_last(self) -> None:
        held = self.on_the_wire.pop()
        held.answer.set()
        await held.done.wait()

    async def answer_all(self) -> None:
        while self.on_the_wire:
            await self.answer_oldest()


def test_the_in_flight_cap_grows_only_when_it_holds_requests_back_with_cpu_to_spare() -> None:
    """The in-flight cap: 16, up by half only after holding one back with CPU to spare.

    At most 16 requests are in flight from the start. An idle CPU alone does not raise the
    cap; a second in which the cap held a request back while the CPU had room raises it by
    half; a saturated CPU brings it back to 16."""
    clock = FakeClock()
    cpu = [0.0]
    pacer = Pacer(PacingConfig(start_rate=1000.0), clock, cpu_time=lambda: cpu[0])
    went: list[float] = []  # when the turn under watch was granted

    async def main() -> None:
        async with anyio.create_task_group() as group:
            wire = Wire(pacer, clock, group)

            async def watched(contact: str) -> None:
                await wire.send(contact)
                went.append(clock.now())

            # 15 on the wire, then a second with an idle CPU in which nobody waited for the
            # cap.
            await wire.send(*(f"id:a{n}" for n in range(15)))
            await clock.sleep(1.0)
            await wire.send("id:x0")
            await wire.answer_last()  # the second ends: CPU idle, but 16 were enough
            # Still 16: a 16th goes at once, and a 17th waits until an answer frees a token.
            await wire.send("id:z0")
            async with anyio.create_task_group() as watching:
                watching.start_soon(watched, "id:b0")
                await clock.sleep(1.0)
                assert went == []  # 16 on the wire: the 17th waits
                # a0: ends a second in which the cap held one back, with the CPU idle.
                answered = await wire.answer_oldest()
            assert went == [answered]
            assert pacer.in_flight_cap == 24

            # Raised by half, to 24: with 16 on the wire, 8 more go, and the 9th waits.
            extra = [f"id:c{n}" for n in range(9)]
            assert sorted(await wire.send_all(extra, within=0.5)) == sorted(extra[:8])
            assert len(wire.on_the_wire) == 24

            # A saturated second (a whole core all the second) brings it back to 16.
            await clock.sleep(1.0)
            cpu[0] += clock.now() - answered
            await wire.answer_oldest()  # a1: 23 on the wire
            assert pacer.in_flight_cap == 16
            went.clear()
            async with anyio.create_task_group() as watching:
                watching.start_soon(watched, "id:b1")
                for _ in range(8):
                    await clock.sleep(0.125)
                    assert went == []  # still 16 or more on the wire
                    answered = await wire.answer_oldest()
            assert went == [answered]  # the eighth answer: 23 -> 15, and b1 makes 16
            assert len(wire.on_the_wire) == 16
            await wire.answer_all()

    run_main(clock, main)


def test_requests_waiting_for_the_pace_do_not_raise_the_in_flight_cap() -> None:
    """Requests held back by the pace, not the cap, leave the in-flight cap at 16.

    40 workers at 5/s: most wait for the cap, but only because the 16 holding it wait for
    their turn. The pace holds the run back, not the cap, so the cap stays."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=5.0, ceiling=5.0), clock, cpu_time=lambda: 0.0)
    sent = Sent()

    async def main() -> None:
        async with anyio.create_task_group() as group:
            for i in range(40):
                group.start_soon(worker(pacer, clock, [f"id:{i}"], sent, always(OK)))
        assert len(sent.log) == 40
        assert clock.now() > 3.0  # several seconds passed, each with an idle CPU
        assert pacer.in_flight_cap == 16
        # 16 requests left unanswered go, the 17th waits (10 s here, where the pace alone
        # would have let it go within 4 s).
        async with anyio.create_task_group() as group:
            wire = Wire(pacer, clock, group)
            probe = [f"id:probe{n}" for n in range(17)]
            assert sorted(await wire.send_all(probe, within=10.0)) == sorted(probe[:16])
            await wire.answer_all()

    run_main(clock, main)
