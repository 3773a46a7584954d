"""The run's pace: ``batcher.limiter.Pacer`` on a fake clock, driven by concurrent anyio tasks."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Coroutine
from functools import partial
from itertools import count, pairwise
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from batcher.limiter import Pacer, PacingConfig
from batcher.models import Answer, AnswerKind

#: The share of a ceiling the pacer goes up to (see batcher.limiter).
CEILING_SHARE = 0.99

#: Scheduler passes the fake clock lets the woken task run before it moves time again.
SETTLE = 10
#: Counting windows as half-open [t, t + 1 - EPSILON): sums of 1/rate drift by a few ulps.
EPSILON = 1e-6
OK = Answer(AnswerKind.OK, 200)
#: What run_tasks starts: an async function of no arguments.
Task = Callable[[], Coroutine[Any, Any, None]]


@pytest.fixture
def anyio_backend() -> str:
    """Run the async tests on asyncio only, the backend batcher uses."""
    return "asyncio"


class FakeClock:
    """Virtual time: a sleep costs no real time, and sleepers wake in due-time order.

    ``sleep`` queues the caller in a min-heap by due time; ``run`` (a background
    task) lets every other task settle, then moves time straight to the earliest
    due sleeper and wakes it. Moving time forward in ``sleep`` itself would let a
    task due at 0.6 s advance the clock past one due at 0.2 s when several tasks
    sleep at once.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, anyio.Event]] = []  # min-heap by due time
        self._order = count()
        #: Times moved forward so far.
        self.steps = 0

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        event = anyio.Event()
        due = self._now + max(0.0, seconds)
        heapq.heappush(self._sleepers, (due, next(self._order), event))
        await event.wait()

    async def run(self, *, max_steps: int = 20_000) -> None:
        """Wake sleepers in due order until cancelled; fail if it never ends."""
        for _ in range(max_steps):
            for _ in range(SETTLE):
                await anyio.lowlevel.checkpoint()
            if self._sleepers:
                due, _, event = heapq.heappop(self._sleepers)
                self._now = max(self._now, due)
                self.steps += 1
                event.set()
        raise AssertionError(f"fake clock still running after {max_steps} steps")


async def run_tasks(clock: FakeClock, *tasks: Task) -> None:
    """Run ``tasks`` concurrently on ``clock`` until all of them return."""
    async with anyio.create_task_group() as group:
        group.start_soon(clock.run)
        async with anyio.create_task_group() as workers:
            for task in tasks:
                workers.start_soon(task)
        group.cancel_scope.cancel()


def busiest_window(times: list[float], width: float = 1.0) -> int:
    """Most events in any half-open window [t, t + width) starting at an event."""
    ordered = sorted(times)
    best = 0
    for i, start in enumerate(ordered):
        end = start + width - EPSILON
        best = max(best, sum(1 for t in ordered[i:] if t < end))
    return best


def acquirer(
    pacer: Pacer,
    clock: FakeClock,
    contact: str,
    times: list[float],
    *,
    rounds: int,
    answer: Answer | None = None,
) -> Task:
    """A worker that acquires ``rounds`` times, noting when, and reports ``answer`` (or
    releases its turn unanswered: every acquire is followed by one or the other)."""

    async def work() -> None:
        for _ in range(rounds):
            await pacer.acquire(contact)
            times.append(clock.now())
            if answer is not None:
                pacer.observe(contact, answer)
            else:
                pacer.release()

    return work


def headers(limit: float | None, remaining: float | None) -> Answer:
    """A 200 answer carrying X-RateLimit headers."""
    return Answer(AnswerKind.OK, 200, contact_id=1, limit=limit, remaining=remaining)


@pytest.mark.anyio
async def test_no_burst_at_start() -> None:
    """The first 10 acquires at start_rate 5/s go out one every 0.2 s, not all at once."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=5.0), clock)
    times: list[float] = []
    await run_tasks(clock, *(acquirer(pacer, clock, f"c{i}", times, rounds=1) for i in range(10)))
    assert len(times) == 10
    assert times[0] == 0.0
    gaps = [later - earlier for earlier, later in pairwise(times)]
    assert gaps == pytest.approx([0.2] * 9, abs=0.006)
    assert times[-1] == pytest.approx(1.8, abs=0.006)


@pytest.mark.anyio
async def test_first_gap_is_a_full_interval() -> None:
    """The second acquire of a fresh pacer comes exactly one interval after the first."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=5.0), clock)
    times: list[float] = []
    await run_tasks(clock, *(acquirer(pacer, clock, f"c{i}", times, rounds=1) for i in range(2)))
    assert times == pytest.approx([0.0, 0.2], abs=1e-9)


@pytest.mark.anyio
async def test_ceiling_is_never_exceeded_from_the_start() -> None:
    """At ceiling 5/s, no 1-second window (the first included) holds more than 5 acquires."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=5.0, ceiling=5.0), clock)
    times: list[float] = []
    work = [acquirer(pacer, clock, f"c{i}", times, rounds=10, answer=OK) for i in range(4)]
    await run_tasks(clock, *work)
    assert len(times) == 40
    assert busiest_window(times) <= 5


@pytest.mark.anyio
async def test_ceiling_is_never_exceeded_after_the_first_second() -> None:
    """Climbing without headers, no 1-second window after the start exceeds the ceiling of 40/s."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=5.0, ceiling=40.0), clock)
    times: list[float] = []
    work = [acquirer(pacer, clock, f"c{i}", times, rounds=80, answer=OK) for i in range(8)]
    await run_tasks(clock, *work)
    assert pacer.rate == pytest.approx(CEILING_SHARE * 40.0)
    assert busiest_window([t for t in times if t >= 1.0]) <= 40
    assert busiest_window(times) >= 35  # the climb did reach the ceiling


@pytest.mark.anyio
async def test_ceiling_caps_the_start_rate() -> None:
    """A ceiling below start_rate paces from the very first request at the ceiling."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=50.0, ceiling=2.0), clock)
    assert pacer.rate == pytest.approx(CEILING_SHARE * 2.0)
    times: list[float] = []
    await run_tasks(clock, *(acquirer(pacer, clock, f"c{i}", times, rounds=1) for i in range(5)))
    assert times[-1] - times[1] == pytest.approx(3 / (CEILING_SHARE * 2.0), abs=1e-9)


def test_shared_budget_is_learned_from_falling_remaining() -> None:
    """Remaining 19, 18, ... of Limit 20 from different contacts: a shared budget at 0.98*20/s."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=5.0), clock)
    for n in range(10):
        pacer.observe(f"email:c{n}@x.com", headers(20, 19 - n))
    assert pacer.budget == "shared"
    assert pacer.limit == 20
    assert pacer.rate == pytest.approx(0.98 * 20)


def test_shared_budget_rate_respects_the_ceiling() -> None:
    """A learned shared budget above the ceiling paces at the ceiling."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=5.0, ceiling=10.0), clock)
    for n in range(5):
        pacer.observe(f"id:{n}", headers(100, 99 - n))
    assert pacer.budget == "shared"
    assert pacer.rate == pytest.approx(CEILING_SHARE * 10.0)


def test_per_path_budget_is_learned_from_fresh_contacts() -> None:
    """New contacts all showing Remaining == Limit - 1: a per-path budget, paced at the ceiling."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=5.0, ceiling=50.0), clock)
    for n in range(4):
        pacer.observe(f"id:{n}", headers(5, 4))
    assert pacer.budget == "per-path"
    assert pacer.limit == 5
    assert pacer.rate == pytest.approx(CEILING_SHARE * 50.0)


def per_path_pacer(clock: FakeClock) -> Pacer:
    """A pacer that has learned a per-path budget of 5 per second, with a ceiling of 50/s."""
    pacer = Pacer(PacingConfig(start_rate=5.0, ceiling=50.0), clock)
    for n in range(3):
        pacer.observe(f"id:{n}", headers(5, 4))
    assert pacer.budget == "per-path"
    return pacer


@pytest.mark.anyio
async def test_per_path_budget_limits_each_contact() -> None:
    """Under a per-path budget of 5, one contact gets at most 5 acquires a second, others go on."""
    clock = FakeClock()
    pacer = per_path_pacer(clock)
    busy: list[float] = []
    others: list[float] = []

    async def many_contacts(worker: int) -> None:
        for n in range(10):
            await pacer.acquire(f"id:{worker}-{n}")
            others.append(clock.now())
            pacer.release()

    # One worker per contact at a time, as the work queue hands rows out.
    work = [acquirer(pacer, clock, "id:busy", busy, rounds=15)]
    work += [partial(many_contacts, worker) for worker in range(4)]
    await run_tasks(clock, *work)
    assert len(busy) == 15
    assert busiest_window(busy) <= 5
    assert min(b - a for a, b in pairwise(busy)) >= 0.2 - 1e-9
    # 40 one-off contacts are not held back by the busy one: they go at the run's 50/s.
    assert len(others) == 40
    assert max(others) < 1.5
    assert busiest_window(busy + others) <= 51  # 50/s, +1 for the back-dated first slot


@pytest.mark.anyio
async def test_per_path_budget_holds_for_concurrent_acquires_of_one_contact() -> None:
    """Three workers acquiring for one contact together still get at most 5 a second."""
    clock = FakeClock()
    pacer = per_path_pacer(clock)
    busy: list[float] = []

    async def many_contacts(worker: int) -> None:
        for n in range(30):
            await pacer.acquire(f"id:{worker}-{n}")  # keeps every run slot taken
            pacer.release()

    work = [acquirer(pacer, clock, "id:busy", busy, rounds=5) for _ in range(3)]
    work += [partial(many_contacts, worker) for worker in range(6)]
    await run_tasks(clock, *work)
    assert len(busy) == 15
    assert busiest_window(busy) <= 5


@pytest.mark.parametrize(
    ("limit", "remaining"),
    [
        pytest.param(None, None, id="no-headers"),
        pytest.param(None, 5, id="no-limit"),
        pytest.param(20, None, id="no-remaining"),
        pytest.param(0, 0, id="limit-zero"),
        pytest.param(-10, 5, id="limit-negative"),
        pytest.param(20, -1, id="remaining-negative"),
        pytest.param(10, 11, id="remaining-above-limit"),
        pytest.param(0.5, 0, id="limit-below-one"),
    ],
)
def test_garbage_headers_leave_the_rate_unchanged(
    limit: float | None, remaining: float | None
) -> None:
    """Missing, zero, negative or inconsistent rate headers change neither rate nor budget."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=7.0), clock)
    for n in range(5):
        pacer.observe(f"id:{n}", headers(limit, remaining))
    assert pacer.rate == 7.0
    assert pacer.budget == "unknown"
    assert pacer.limit is None


def test_garbage_headers_keep_a_learned_rate() -> None:
    """After a shared budget is learned, garbage headers keep the learned pacing."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=5.0), clock)
    pacer.observe("id:1", headers(20, 19))
    pacer.observe("id:2", headers(20, 18))
    learned = pacer.rate
    for limit, remaining in [(0, 0), (-1, 3), (20, 25), (None, None)]:
        pacer.observe("id:3", headers(limit, remaining))
    assert pacer.rate == learned
    assert pacer.limit == 20
    assert pacer.budget == "shared"


@pytest.mark.anyio
async def test_rate_climbs_without_headers_when_the_pace_is_the_bottleneck() -> None:
    """With busy workers and no headers, the rate grows past start_rate, up to the ceiling."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=5.0, ceiling=30.0), clock)
    rates: list[float] = []

    def worker(contact: str) -> Task:
        async def work() -> None:
            for _ in range(60):
                await pacer.acquire(contact)
                pacer.observe(contact, OK)
                rates.append(pacer.rate)

        return work

    await run_tasks(clock, *(worker(f"id:{i}") for i in range(8)))
    assert max(rates) > 5.0
    assert rates == sorted(rates)  # only ever up, with no 429
    assert pacer.rate == pytest.approx(CEILING_SHARE * 30.0)
    assert max(rates) == pytest.approx(CEILING_SHARE * 30.0)


@pytest.mark.anyio
async def test_rate_does_not_climb_when_workers_are_the_bottleneck() -> None:
    """A lone worker sending once a second never makes the pace climb."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=5.0), clock)

    async def slow_worker() -> None:
        for _ in range(8):
            await pacer.acquire("id:1")
            pacer.observe("id:1", OK)
            await clock.sleep(1.0)

    await run_tasks(clock, slow_worker)
    assert clock.now() >= 8.0
    assert pacer.rate == 5.0


@pytest.mark.anyio
async def test_429_pauses_every_acquire_until_retry_after() -> None:
    """After a 429 with Retry-After 2, no acquire returns before 2 s, and the rate drops."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=10.0), clock)
    pacer.observe("id:1", Answer(AnswerKind.RATE_LIMITED, 429, retry_after=2))
    assert pacer.throttled == 1
    assert pacer.paused_for == pytest.approx(2.0)
    assert pacer.rate < 10.0
    times: list[float] = []
    await run_tasks(clock, *(acquirer(pacer, clock, f"id:{i}", times, rounds=2) for i in range(4)))
    assert len(times) == 8
    assert min(times) >= 2.0
    assert pacer.paused_for == 0.0
    # After the pause the run is paced at the lowered rate, not released as a burst.
    assert busiest_window(times) <= pacer.rate + 1e-9


@pytest.mark.anyio
async def test_429_reaches_workers_already_waiting_for_a_slot() -> None:
    """A worker that took a slot before the 429 arrived still waits out the pause."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=1.0), clock)
    times: list[float] = []

    async def early() -> None:
        await pacer.acquire("id:1")  # slot at 0
        times.append(clock.now())
        await pacer.acquire("id:1")  # slot at 1, but the 429 at 0.5 pauses until 3.5
        times.append(clock.now())

    async def throttler() -> None:
        await clock.sleep(0.5)
        pacer.observe("id:2", Answer(AnswerKind.RATE_LIMITED, 429, retry_after=3))

    await run_tasks(clock, early, throttler)
    assert times[0] == 0.0
    assert times[1] >= 3.5


def test_two_429s_at_once_share_one_pause_and_one_drop() -> None:
    """Two 429s answered at the same moment pause once for 2 s and lower the rate once."""
    clock = FakeClock()
    one = Pacer(PacingConfig(start_rate=10.0), clock)
    one.observe("id:1", Answer(AnswerKind.RATE_LIMITED, 429, retry_after=2))
    two = Pacer(PacingConfig(start_rate=10.0), clock)
    two.observe("id:1", Answer(AnswerKind.RATE_LIMITED, 429, retry_after=2))
    two.observe("id:2", Answer(AnswerKind.RATE_LIMITED, 429, retry_after=2))
    assert two.throttled == 2
    assert two.paused_for == pytest.approx(2.0)
    assert two.rate == one.rate


@pytest.mark.parametrize(
    ("retry_after", "pause"),
    [
        pytest.param(None, 1.0, id="missing-waits-one-window"),
        pytest.param(0.0, 1.0, id="zero-waits-one-window"),
        pytest.param(-5.0, 1.0, id="negative-waits-one-window"),
        pytest.param(7200.0, 1.0, id="absurd-waits-one-window"),
        pytest.param(3.0, 3.0, id="honoured"),
    ],
)
def test_429_without_a_sensible_retry_after_pauses_one_window(
    retry_after: float | None, pause: float
) -> None:
    """A 429 without a usable Retry-After pauses for one window (1 s)."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=5.0), clock)
    pacer.observe("id:1", Answer(AnswerKind.RATE_LIMITED, 429, retry_after=retry_after))
    assert pacer.paused_for == pytest.approx(pause)


def test_429_lowers_a_learned_shared_rate() -> None:
    """A 429 under a learned shared budget lowers the rate below 0.98 * limit."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=5.0), clock)
    pacer.observe("id:1", headers(20, 19))
    pacer.observe("id:2", headers(20, 18))
    before = pacer.rate
    pacer.observe(
        "id:3", Answer(AnswerKind.RATE_LIMITED, 429, retry_after=1, limit=20, remaining=0)
    )
    assert pacer.rate < before
    assert pacer.rate > 0


@pytest.mark.anyio
async def test_a_faster_pace_counts_for_requests_already_waiting() -> None:
    """Workers queued at the 5/s start pace go at the learned 98/s as soon as it is learned,
    not at the turns they would have had at 5/s."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=5.0), clock)
    times: list[float] = []

    async def first() -> None:
        await pacer.acquire("c0")
        times.append(clock.now())
        await clock.sleep(0.005)  # the answer comes back 5 ms later, with a budget of 100
        pacer.observe("c0", headers(100, 99))

    waiting = [acquirer(pacer, clock, f"c{i}", times, rounds=1) for i in range(1, 8)]
    await run_tasks(clock, first, *waiting)
    assert pacer.rate == pytest.approx(98.0)
    # Seven more requests at 98/s take about 7/98 s after the first, not 7 * 0.2 s.
    assert times[-1] < 0.2
    gaps = [later - earlier for earlier, later in pairwise(times[1:])]
    assert gaps == pytest.approx([1 / 98] * 6, abs=0.001)


@pytest.mark.anyio
async def test_no_second_window_holds_more_than_the_ceiling() -> None:
    """At a ceiling of 50/s, with every wake-up 3 ms late, no 1-second window holds 51."""

    class LateClock(FakeClock):
        async def sleep(self, seconds: float) -> None:
            await super().sleep(seconds + 0.003)

    clock = LateClock()
    pacer = Pacer(PacingConfig(start_rate=50.0, ceiling=50.0), clock)
    times: list[float] = []

    def late_worker(contact: str) -> Task:
        async def work() -> None:
            for n in range(40):
                await pacer.acquire(contact)
                times.append(clock.now())
                await clock.sleep(0.004 if n % 3 else 0.0)  # uneven work between requests
                pacer.release()

        return work

    await run_tasks(clock, *(late_worker(f"c{i}") for i in range(6)))
    assert len(times) == 240
    assert all(later - earlier >= 1.0 for earlier, later in zip(times, times[50:], strict=False))


@pytest.mark.anyio
async def test_in_flight_cap_goes_only_when_it_holds_requests_back_with_cpu_to_spare() -> None:
    """At most 16 requests are in flight from the start. An idle CPU alone does not raise the
    cap; a window in which the cap held a request back while the CPU had room raises it by
    half; a saturated CPU brings it back to 16."""
    clock = FakeClock()
    cpu = [0.0]
    pacer = Pacer(PacingConfig(start_rate=1000.0), clock, cpu_time=lambda: cpu[0])

    async def hold(count: int, prefix: str) -> None:
        for n in range(count):
            await pacer.acquire(f"{prefix}{n}")  # sent, not yet answered

    async def idle_second() -> None:
        await clock.sleep(1.0)
        await hold(1, "x")
        pacer.observe("x0", OK)  # a window with no CPU used and no request held back

    await run_tasks(clock, partial(hold, 15, "a"), idle_second)
    assert pacer.in_flight_cap == 16  # the CPU was idle, but 16 were enough
    await run_tasks(clock, partial(hold, 1, "z"))
    assert pacer.outstanding == 16

    went: list[float] = []

    async def seventeenth() -> None:
        await pacer.acquire("b0")
        went.append(clock.now())

    async def answer_later() -> None:
        await clock.sleep(1.0)
        assert went == []  # 16 in flight: the 17th waits
        pacer.observe("a0", OK)  # a window in which the cap held one back, CPU idle

    start = clock.now()
    await run_tasks(clock, seventeenth, answer_later)
    assert went[0] - start >= 1.0 - EPSILON
    assert pacer.in_flight_cap == 24
    await run_tasks(clock, partial(hold, 4, "c"))
    assert pacer.outstanding == 20  # past 16 without waiting

    async def busy_second() -> None:
        await clock.sleep(1.0)
        cpu[0] += 1.0  # a whole second of CPU in one second of wall time: saturated
        pacer.observe("a1", OK)

    await run_tasks(clock, busy_second)
    assert pacer.in_flight_cap == 16
    assert pacer.outstanding == 19
    went.clear()

    async def answers_one_by_one() -> None:
        for n in range(2, 6):
            await clock.sleep(0.25)
            assert went == []  # still 16 or more in flight
            pacer.observe(f"a{n}", OK)

    start = clock.now()
    await run_tasks(clock, seventeenth, answers_one_by_one)
    assert went[0] - start >= 1.0 - EPSILON  # four answers: 19 -> 15 in flight
    assert pacer.outstanding == 16


@pytest.mark.anyio
async def test_requests_waiting_for_the_pace_do_not_raise_the_in_flight_cap() -> None:
    """40 workers at 5/s: most wait for the cap, but only because the 16 holding it wait for
    their turn. The pace holds the run back, not the cap, so the cap stays."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=5.0), clock, cpu_time=lambda: 0.0)
    times: list[float] = []
    work = [acquirer(pacer, clock, f"c{i}", times, rounds=1, answer=OK) for i in range(40)]
    await run_tasks(clock, *work)
    assert len(times) == 40
    assert clock.now() > 3.0  # several windows passed, each with an idle CPU
    assert pacer.in_flight_cap == 16
