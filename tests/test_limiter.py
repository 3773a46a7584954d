"""The run's pace: ``batcher.limiter.Pacer`` in virtual time (``FakeClock``), driven by concurrent
anyio tasks and observed only through ``acquire``, ``observe``, ``release``, ``rate`` and
``paused_for``."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from functools import partial
from itertools import pairwise
from typing import Any

import anyio
import pytest
from batcher.limiter import Pacer, PacingConfig

from batcher.models import Answer, AnswerKind
from batcher.virtualtime import FakeClock

#: The share of a ceiling the pacer goes up to (see batcher.limiter).
CEILING_SHARE = 0.99
#: The share of an advertised limit the pacer uses (PacingConfig.headroom's default).
HEADROOM = 0.98
#: Counting windows as half-open [t, t + 1 - EPSILON): sums of 1/rate drift by a few ulps.
EPSILON = 1e-6
#: Virtual seconds one run may last: a hang fails at once (the clock jumps there), not at a timeout.
BOUND = 600.0
OK = Answer(AnswerKind.OK, 200)
#: No answer came: it tells the pacer nothing about the budget.
TIMED_OUT = Answer(AnswerKind.RETRYABLE, None, error="timed out")
#: What run_tasks starts: an async function of no arguments.
Task = Callable[[], Coroutine[Any, Any, None]]


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


def busiest_window(times: list[float], width: float = 1.0) -> int:
    """Most events in any half-open window [t, t + width) starting at an event."""
    ordered = sorted(times)
    best = 0
    for i, start in enumerate(ordered):
        end = start + width - EPSILON
        best = max(best, sum(1 for t in ordered[i:] if t < end))
    return best


def gaps(times: list[float]) -> list[float]:
    """Time between each event and the next."""
    return [later - earlier for earlier, later in pairwise(times)]


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


async def acquire_unanswered(pacer: Pacer, contacts: Sequence[str], *, within: float) -> list[str]:
    """Acquire once for each contact (one task each, started in order) and answer none: the
    contacts whose acquire returned within ``within`` seconds, now on the wire. Those still
    waiting then are cancelled (never sent)."""
    went: list[str] = []

    async def one(contact: str) -> None:
        await pacer.acquire(contact)
        went.append(contact)

    with anyio.move_on_after(within):
        async with anyio.create_task_group() as group:
            for contact in contacts:
                group.start_soon(one, contact)
    return went


def headers(limit: float | None, remaining: float | None) -> Answer:
    """A 200 answer carrying X-RateLimit headers."""
    return Answer(AnswerKind.OK, 200, contact_id=1, limit=limit, remaining=remaining)


def throttled(retry_after: float | None) -> Answer:
    """A 429 answer."""
    return Answer(AnswerKind.RATE_LIMITED, 429, retry_after=retry_after)


def what_it_does_next(
    config: PacingConfig, answers: Sequence[tuple[str, Answer]]
) -> list[tuple[str, float, float]]:
    """(contact, time, rate) of every acquire a pacer told ``answers`` (at time 0) then lets go
    in a fixed script: four busy workers for 4 s, one always sending to the same contact, the
    others to new contacts, all answered 200 without rate headers (nothing to learn a budget
    from), and a 429 (Retry-After 0.5) at 2 s. What it learned shows here: a
    shared budget holds the pace at its limit, a per-path one holds the repeated contact to its
    own spacing, no budget lets the pace climb, and a known limit makes the 429 drop smaller."""
    clock = FakeClock()
    pacer = Pacer(config, clock, cpu_time=clock.cpu_time)
    for contact, answer in answers:
        pacer.observe(contact, answer)
    sent: list[tuple[str, float, float]] = []

    def worker(name: str, *, same_contact: bool) -> Task:
        async def work() -> None:
            for n in range(1000):  # bounded: far more than 4 s of turns at any pace here
                if clock.now() >= 4.0:
                    return
                contact = name if same_contact else f"{name}-{n}"
                await pacer.acquire(contact)
                sent.append((contact, clock.now(), pacer.rate))
                pacer.observe(contact, OK)
            raise AssertionError("the script sent more than it could in 4 s")

        return work

    async def throttle() -> None:
        await clock.sleep(2.0)
        pacer.observe("id:throttled", throttled(0.5))

    workers = [worker("id:same", same_contact=True)]
    workers += [worker(f"id:w{n}", same_contact=False) for n in range(3)]
    run_tasks(clock, *workers, throttle)
    return sent


SHARED_20 = [(f"id:s{n}", headers(20, 19 - n)) for n in range(2)]
PER_PATH_5 = [(f"id:p{n}", headers(5, 4)) for n in range(3)]


def test_no_burst_at_start() -> None:
    """The first 10 acquires at start_rate 5/s go out one every 0.2 s, not all at once."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=5.0), clock)
    times: list[float] = []
    run_tasks(clock, *(acquirer(pacer, clock, f"c{i}", times, rounds=1) for i in range(10)))
    assert len(times) == 10
    assert times[0] == 0.0
    assert gaps(times) == pytest.approx([0.2] * 9, abs=0.006)
    assert times[-1] == pytest.approx(1.8, abs=0.006)


def test_first_gap_is_a_full_interval() -> None:
    """The second acquire of a fresh pacer comes exactly one interval after the first."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=5.0), clock)
    times: list[float] = []
    run_tasks(clock, *(acquirer(pacer, clock, f"c{i}", times, rounds=1) for i in range(2)))
    assert times == pytest.approx([0.0, 0.2], abs=1e-9)


def test_ceiling_is_never_exceeded_from_the_start() -> None:
    """At ceiling 5/s, no 1-second window (the first included) holds more than 5 acquires."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=5.0, ceiling=5.0), clock)
    times: list[float] = []
    work = [acquirer(pacer, clock, f"c{i}", times, rounds=10, answer=OK) for i in range(4)]
    run_tasks(clock, *work)
    assert len(times) == 40
    assert busiest_window(times) <= 5


def test_ceiling_is_never_exceeded_after_the_first_second() -> None:
    """Climbing without headers, no 1-second window after the start exceeds the ceiling of 40/s."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=5.0, ceiling=40.0), clock)
    times: list[float] = []
    work = [acquirer(pacer, clock, f"c{i}", times, rounds=80, answer=OK) for i in range(8)]
    run_tasks(clock, *work)
    assert pacer.rate == pytest.approx(CEILING_SHARE * 40.0)
    assert busiest_window([t for t in times if t >= 1.0]) <= 40
    assert busiest_window(times) >= 35  # the climb did reach the ceiling


def test_ceiling_caps_the_start_rate() -> None:
    """A ceiling below start_rate paces from the very first request at the ceiling."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=50.0, ceiling=2.0), clock)
    assert pacer.rate == pytest.approx(CEILING_SHARE * 2.0)
    times: list[float] = []
    run_tasks(clock, *(acquirer(pacer, clock, f"c{i}", times, rounds=1) for i in range(5)))
    assert times[-1] - times[1] == pytest.approx(3 / (CEILING_SHARE * 2.0), abs=1e-9)


def test_shared_budget_is_learned_from_falling_remaining() -> None:
    """Remaining 19, 18, ... of Limit 20 from many contacts: the whole run held at 0.98*20/s."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=5.0), clock)
    for n in range(10):
        pacer.observe(f"email:c{n}@x.com", headers(20, 19 - n))
    assert pacer.rate == pytest.approx(HEADROOM * 20)
    times: list[float] = []
    work = [acquirer(pacer, clock, f"id:{i}", times, rounds=15, answer=OK) for i in range(4)]
    run_tasks(clock, *work)
    # All contacts together go one every 1/(0.98*20) s for three busy, clean windows: the one
    # budget of 20 is shared by the run (an unknown budget would climb; a per-path one would
    # let the run go faster than one contact's 20).
    assert len(times) == 60
    assert clock.now() > 3.0
    assert gaps(times) == pytest.approx([1 / (HEADROOM * 20)] * 59, abs=1e-9)
    assert busiest_window(times) <= 20
    assert pacer.rate == pytest.approx(HEADROOM * 20)


def test_shared_budget_rate_respects_the_ceiling() -> None:
    """A learned shared budget above the ceiling paces at the ceiling."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=5.0, ceiling=10.0), clock)
    for n in range(5):
        pacer.observe(f"id:{n}", headers(100, 99 - n))
    assert pacer.rate == pytest.approx(CEILING_SHARE * 10.0)
    times: list[float] = []
    work = [acquirer(pacer, clock, f"c{i}", times, rounds=8, answer=OK) for i in range(4)]
    run_tasks(clock, *work)
    # From the first acquire on, across contacts and busy windows: 0.99 * 10/s, never past 10.
    assert len(times) == 32
    assert gaps(times) == pytest.approx([1 / (CEILING_SHARE * 10.0)] * 31, abs=1e-9)
    assert busiest_window(times) <= 10
    # And the budget is shared, not per-path: from here on it does what a pacer does that saw
    # one drawn-on contact of Limit 100 (after a 429, a shared budget climbs back to the
    # ceiling in one clean window; a per-path one climbs by 10 % a window).
    config = PacingConfig(start_rate=5.0, ceiling=10.0)
    learned = [(f"id:{n}", headers(100, 99 - n)) for n in range(5)]
    drawn_on = [("id:0", headers(100, 98))]
    assert what_it_does_next(config, learned) == what_it_does_next(config, drawn_on)


def test_per_path_budget_is_learned_from_fresh_contacts() -> None:
    """New contacts with Remaining == Limit - 1: each contact held to 5/s, the run faster."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=5.0, ceiling=50.0), clock)
    for n in range(4):
        pacer.observe(f"id:{n}", headers(5, 4))
    assert pacer.rate == pytest.approx(CEILING_SHARE * 50.0)
    per_contact: dict[str, list[float]] = {f"id:busy{n}": [] for n in range(3)}
    run_tasks(
        clock,
        *(acquirer(pacer, clock, contact, sent, rounds=6) for contact, sent in per_contact.items()),
    )
    for sent in per_contact.values():
        # Each contact exactly at its own budget of 5 a second (0.98 of it): Limit was 5.
        assert gaps(sent) == pytest.approx([1 / (HEADROOM * 5)] * 5, abs=1e-9)
        assert busiest_window(sent) <= 5
    # Three such contacts together: 15 in one second, three times one contact's budget.
    assert busiest_window([t for sent in per_contact.values() for t in sent]) == 15


def per_path_pacer(clock: FakeClock) -> Pacer:
    """A pacer that has learned a per-path budget of 5 per second, with a ceiling of 50/s."""
    pacer = Pacer(PacingConfig(start_rate=5.0, ceiling=50.0), clock)
    for n in range(3):
        pacer.observe(f"id:{n}", headers(5, 4))
    assert pacer.rate == pytest.approx(CEILING_SHARE * 50.0)  # per-path: the run goes at 50/s
    return pacer


def test_per_path_budget_limits_each_contact() -> None:
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
    run_tasks(clock, *work)
    assert len(busy) == 15
    assert busiest_window(busy) <= 5
    assert min(gaps(busy)) >= 0.2 - 1e-9
    # 40 one-off contacts are not held back by the busy one: they go at the run's 50/s.
    assert len(others) == 40
    assert max(others) < 1.5
    assert busiest_window(busy + others) <= 51  # 50/s, +1 for the back-dated first slot


def test_per_path_budget_holds_for_concurrent_acquires_of_one_contact() -> None:
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
    run_tasks(clock, *work)
    assert len(busy) == 15
    assert busiest_window(busy) <= 5


def test_what_a_pacer_learned_shows_in_what_it_does_next() -> None:
    """Fresh, shared-budget and per-path pacers send differently in the what_it_does_next script."""
    config = PacingConfig(start_rate=5.0)
    fresh = what_it_does_next(config, [])
    shared = what_it_does_next(config, SHARED_20)
    per_path = what_it_does_next(config, PER_PATH_5)
    assert fresh != shared
    assert fresh != per_path
    assert shared != per_path
    # Unknown: the pace climbs with busy workers; shared: held at 0.98 * 20 until the 429.
    assert max(rate for _, _, rate in fresh) > 5.0
    before_429 = [rate for _, t, rate in shared if t < 2.0]
    assert before_429 == pytest.approx([HEADROOM * 20] * len(before_429))
    # Per-path: the run starts at 0.98 * 5, one contact's budget, without ceiling to go to.
    assert per_path[0][2] == pytest.approx(HEADROOM * 5)


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
    # No budget and no limit learned: it then does exactly what a pacer that saw nothing does.
    garbage = [(f"id:{n}", headers(limit, remaining)) for n in range(5)]
    config = PacingConfig(start_rate=7.0)
    assert what_it_does_next(config, garbage) == what_it_does_next(config, [])


def test_garbage_headers_keep_a_learned_rate() -> None:
    """After a shared budget is learned, garbage headers keep the learned pacing."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=5.0), clock)
    pacer.observe("id:1", headers(20, 19))
    pacer.observe("id:2", headers(20, 18))
    learned = pacer.rate
    garbage = [(0, 0), (-1, 3), (20, 25), (None, None)]
    for limit, remaining in garbage:
        pacer.observe("id:3", headers(limit, remaining))
    assert pacer.rate == learned
    # Still the shared budget of Limit 20: it does exactly what it did before the garbage.
    config = PacingConfig(start_rate=5.0)
    shared = [("id:1", headers(20, 19)), ("id:2", headers(20, 18))]
    then_garbage = shared + [("id:3", headers(limit, remaining)) for limit, remaining in garbage]
    assert what_it_does_next(config, then_garbage) == what_it_does_next(config, shared)


def test_rate_climbs_without_headers_when_the_pace_is_the_bottleneck() -> None:
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

    run_tasks(clock, *(worker(f"id:{i}") for i in range(8)))
    assert max(rates) > 5.0
    assert rates == sorted(rates)  # only ever up, with no 429
    assert pacer.rate == pytest.approx(CEILING_SHARE * 30.0)
    assert max(rates) == pytest.approx(CEILING_SHARE * 30.0)


def test_rate_does_not_climb_when_workers_are_the_bottleneck() -> None:
    """A lone worker sending once a second never makes the pace climb."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=5.0), clock)

    async def slow_worker() -> None:
        for _ in range(8):
            await pacer.acquire("id:1")
            pacer.observe("id:1", OK)
            await clock.sleep(1.0)

    run_tasks(clock, slow_worker)
    assert clock.now() >= 8.0
    assert pacer.rate == 5.0


def test_429_pauses_every_acquire_until_retry_after() -> None:
    """After a 429 with Retry-After 2, no acquire returns before 2 s, and the rate drops."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=10.0), clock)
    pacer.observe("id:1", throttled(2))
    assert pacer.paused_for == pytest.approx(2.0)
    assert pacer.rate < 10.0
    times: list[float] = []
    run_tasks(clock, *(acquirer(pacer, clock, f"id:{i}", times, rounds=2) for i in range(4)))
    assert len(times) == 8
    assert min(times) >= 2.0
    assert pacer.paused_for == 0.0
    # After the pause the run is paced at the lowered rate, not released as a burst.
    assert busiest_window(times) <= pacer.rate + 1e-9


def test_429_reaches_workers_already_waiting_for_a_slot() -> None:
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
        pacer.observe("id:2", throttled(3))

    run_tasks(clock, early, throttler)
    assert times[0] == 0.0
    assert times[1] >= 3.5


def test_two_429s_at_once_share_one_pause_and_one_drop() -> None:
    """Two 429s answered at the same moment pause once for 2 s and lower the rate once."""
    clock_one, clock_two = FakeClock(), FakeClock()
    one = Pacer(PacingConfig(start_rate=10.0), clock_one)
    one.observe("id:1", throttled(2))
    two = Pacer(PacingConfig(start_rate=10.0), clock_two)
    two.observe("id:1", throttled(2))
    two.observe("id:2", throttled(2))
    assert two.paused_for == pytest.approx(2.0)
    assert two.rate == one.rate
    # What follows is the same as after one 429: the same pause, the same pace after it.
    after_one: list[float] = []
    after_two: list[float] = []
    run_tasks(
        clock_one, *(acquirer(one, clock_one, f"c{i}", after_one, rounds=3) for i in range(3))
    )
    run_tasks(
        clock_two, *(acquirer(two, clock_two, f"c{i}", after_two, rounds=3) for i in range(3))
    )
    assert len(after_two) == 9
    assert min(after_two) >= 2.0
    assert after_two == after_one
    # Not because the second 429 went unseen: one a moment later pauses and drops again.
    later = Pacer(PacingConfig(start_rate=10.0), clock_one)
    later.observe("id:1", throttled(2))
    clock_one.advance(0.5)
    later.observe("id:2", throttled(2))
    assert later.paused_for == pytest.approx(2.0)
    assert later.rate < one.rate


@pytest.mark.parametrize(
    ("retry_after", "pause"),
    [
        pytest.param(None, 1.0, id="missing-waits-one-window"),
        pytest.param(0.0, 1.0, id="zero-waits-one-window"),
        pytest.param(-5.0, 1.0, id="negative-waits-one-window"),
        pytest.param(7200.0, 600.0, id="long-waits-at-most-max-pause"),
        pytest.param(3.0, 3.0, id="honoured"),
    ],
)
def test_429_without_a_sensible_retry_after_pauses_one_window(
    retry_after: float | None, pause: float
) -> None:
    """A 429 without a usable Retry-After pauses for one window (1 s); a long one pauses
    at most max_pause (the policy stops the run past it), never the 1 s that hammered a
    server asking for a day."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=5.0), clock)
    pacer.observe("id:1", throttled(retry_after))
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


def test_a_faster_pace_counts_for_requests_already_waiting() -> None:
    """Workers queued at the 5/s start pace go at a learned 98/s as soon as it is learned.

    Not at the turns they would have had at 5/s."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=5.0), clock)
    times: list[float] = []

    async def first() -> None:
        await pacer.acquire("c0")
        times.append(clock.now())
        await clock.sleep(0.005)  # the answer comes back 5 ms later, with a budget of 100
        pacer.observe("c0", headers(100, 99))

    waiting = [acquirer(pacer, clock, f"c{i}", times, rounds=1) for i in range(1, 8)]
    run_tasks(clock, first, *waiting)
    assert pacer.rate == pytest.approx(98.0)
    # Seven more requests at 98/s take about 7/98 s after the first, not 7 * 0.2 s.
    assert times[-1] < 0.2
    assert gaps(times[1:]) == pytest.approx([1 / 98] * 6, abs=0.001)


class LateClock(FakeClock):
    """Virtual time in which every sleeper wakes 3 ms late."""

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds + 0.003)


def test_no_second_window_holds_more_than_the_ceiling() -> None:
    """At a ceiling of 50/s, with every wake-up 3 ms late, no 1-second window holds 51."""
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

    run_tasks(clock, *(late_worker(f"c{i}") for i in range(6)))
    assert len(times) == 240
    assert all(later - earlier >= 1.0 for earlier, later in zip(times, times[50:], strict=False))


def test_in_flight_cap_goes_only_when_it_holds_requests_back_with_cpu_to_spare() -> None:
    """The in-flight cap: 16, up by half only after holding one back with CPU to spare.

    At most 16 requests are in flight from the start. An idle CPU alone does not raise the
    cap; a window in which the cap held a request back while the CPU had room raises it by
    half; a saturated CPU brings it back to 16."""
    clock = FakeClock()
    cpu = [0.0]
    pacer = Pacer(PacingConfig(start_rate=1000.0), clock, cpu_time=lambda: cpu[0])
    on_the_wire: list[str] = []  # contacts let go and not yet answered, oldest first
    went: list[float] = []  # when the acquire under watch returned

    async def hold(*contacts: str) -> None:
        """Acquire for each contact in turn, and answer none of them (sent, not yet answered)."""
        for contact in contacts:
            await pacer.acquire(contact)
            on_the_wire.append(contact)

    async def watched(contact: str) -> None:
        await pacer.acquire(contact)
        went.append(clock.now())
        on_the_wire.append(contact)

    def answer_oldest() -> None:
        pacer.observe(on_the_wire.pop(0), OK)

    async def main() -> None:
        # 15 on the wire, then a window with an idle CPU in which nobody waited for the cap.
        await hold(*(f"a{n}" for n in range(15)))
        await clock.sleep(1.0)
        await hold("x0")
        pacer.observe(on_the_wire.pop(), OK)  # the window ends: CPU idle, but 16 were enough
        # Still 16: a 16th goes at once, and a 17th waits until an answer frees a token.
        await hold("z0")
        async with anyio.create_task_group() as group:
            group.start_soon(watched, "b0")
            await clock.sleep(1.0)
            assert went == []  # 16 on the wire: the 17th waits
            answered = clock.now()
            answer_oldest()  # a0: ends a window in which the cap held one back, CPU idle
        assert went == [answered]

        # Raised by half, to 24: with 16 on the wire, 8 more go unanswered, and the 9th waits.
        extra = [f"c{n}" for n in range(9)]
        got = await acquire_unanswered(pacer, extra, within=0.5)
        assert got == extra[:8]
        on_the_wire.extend(got)

        # A saturated window (a whole core all the window) brings it back to 16.
        await clock.sleep(1.0)
        cpu[0] += clock.now() - answered
        answer_oldest()  # a1: 23 on the wire
        went.clear()
        async with anyio.create_task_group() as group:
            group.start_soon(watched, "b1")
            for _ in range(8):
                await clock.sleep(0.125)
                assert went == []  # still 16 or more on the wire
                answered = clock.now()
                answer_oldest()
        assert went == [answered]  # the eighth answer: 23 -> 15 on the wire, and b1 makes 16
        assert len(on_the_wire) == 16

    run_main(clock, main)


def test_requests_waiting_for_the_pace_do_not_raise_the_in_flight_cap() -> None:
    """Requests held back by the pace, not the cap, leave the in-flight cap at 16.

    40 workers at 5/s: most wait for the cap, but only because the 16 holding it wait for
    their turn. The pace holds the run back, not the cap, so the cap stays."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=5.0), clock, cpu_time=lambda: 0.0)
    times: list[float] = []

    async def main() -> None:
        async with anyio.create_task_group() as group:
            for i in range(40):
                group.start_soon(acquirer(pacer, clock, f"c{i}", times, rounds=1, answer=OK))
        assert len(times) == 40
        assert clock.now() > 3.0  # several windows passed, each with an idle CPU
        # The cap is still 16: 16 requests left unanswered go, the 17th waits (10 s here, where
        # the pace alone would have let it go within 3.4 s).
        probe = [f"d{n}" for n in range(17)]
        assert await acquire_unanswered(pacer, probe, within=10.0) == probe[:16]

    run_main(clock, main)


def test_unanswered_requests_do_not_make_the_pace_climb() -> None:
    """Windows where most requests got no answer at all do not climb the pace (an API that
    is down once made it climb to 5,120/s); answered windows still do."""
    for answer, climbs in ((TIMED_OUT, False), (OK, True)):
        clock = FakeClock()
        pacer = Pacer(PacingConfig(start_rate=5.0), clock, cpu_time=clock.cpu_time)
        rates: list[float] = []

        async def work(
            pacer: Pacer = pacer, answer: Answer = answer, rates: list[float] = rates
        ) -> None:
            for n in range(40):
                await pacer.acquire(f"id:{n}")
                pacer.observe(f"id:{n}", answer)
                rates.append(pacer.rate)

        run_tasks(clock, work)
        assert (max(rates) > 5.0) is climbs


def test_429s_never_push_the_pace_below_min_rate() -> None:
    """However many 429s come, the pace stays at min_rate or more (1/s by default)."""
    clock = FakeClock()
    pacer = Pacer(PacingConfig(start_rate=50.0), clock)
    for n in range(40):
        clock.advance(2.0)  # each 429 after the previous pause has passed: a drop each time
        pacer.observe(f"id:{n}", throttled(1.0))
    assert pacer.rate == pytest.approx(1.0)
