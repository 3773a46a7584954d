"""Handing rows to workers: ``batcher.workqueue.WorkQueue`` in virtual time (``FakeClock``)."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

import anyio
import pytest

from batcher.models import Record, Request
from batcher.policy import Tries
from batcher.virtualtime import FakeClock
from batcher.workqueue import Job, WorkQueue

#: Upper bound for any single wait in these tests (virtual seconds): a hang fails at once.
BOUND = 2.0
#: Virtual seconds a whole test may last.
TEST_BOUND = 60.0


def run(clock: FakeClock, main: Callable[[], Awaitable[None]]) -> None:
    """Run ``main`` in ``clock``'s virtual time, failing if it lasts over TEST_BOUND."""

    async def bounded() -> None:
        with anyio.fail_after(TEST_BOUND):
            await main()

    clock.run(bounded)


def job(row: int, contact: str, status: str = "open") -> Job:
    """A job for one valid row."""
    return Job(Request(Record(row, contact, status), status))


async def get_now(queue: WorkQueue) -> Job | None:
    """get(), failing the test if it does not return within BOUND seconds."""
    with anyio.fail_after(BOUND):
        return await queue.get()


async def get_blocks(queue: WorkQueue, seconds: float = 0.05) -> bool:
    """True if get() is still waiting after ``seconds`` (nothing was handed out)."""
    with anyio.move_on_after(seconds) as scope:
        got = await queue.get()
        raise AssertionError(f"get() handed out {got!r} while it should have waited")
    return scope.cancelled_caught


async def fill(queue: WorkQueue, jobs: list[Job]) -> None:
    """Put every job, in order, bounded in time."""
    with anyio.fail_after(BOUND):
        for item in jobs:
            assert await queue.put(item)


def rows(jobs: list[Job | None]) -> list[int]:
    """Row numbers of the jobs (None is not allowed here)."""
    out = []
    for item in jobs:
        assert item is not None
        out.append(item.request.row)
    return out


def test_same_contact_rows_wait_for_the_one_in_flight() -> None:
    """A contact's next row is not handed out until its current row is done."""
    clock = FakeClock()
    queue = WorkQueue(clock=clock)

    async def main() -> None:
        await fill(queue, [job(1, "id:a"), job(2, "id:a", "close"), job(3, "id:b")])
        first = await get_now(queue)
        second = await get_now(queue)
        assert rows([first, second]) == [1, 3]
        assert await get_blocks(queue)
        assert first is not None
        queue.done(first)
        third = await get_now(queue)
        assert rows([third]) == [2]

    run(clock, main)


def test_busy_contact_does_not_block_other_contacts() -> None:
    """While one contact has a row in flight and more waiting, other contacts' rows flow."""
    clock = FakeClock()
    queue = WorkQueue(clock=clock)

    async def main() -> None:
        jobs = [job(1, "id:busy")] + [job(n, "id:busy") for n in range(2, 6)]
        jobs += [job(n, f"id:{n}") for n in range(6, 11)]
        await fill(queue, jobs)
        assert rows([await get_now(queue)]) == [1]
        handed = [await get_now(queue) for _ in range(5)]
        assert rows(handed) == [6, 7, 8, 9, 10]
        assert clock.now() == 0.0  # none of them waited

    run(clock, main)


def test_workers_never_hold_one_contact_twice_and_keep_file_order() -> None:
    """Six workers, random send times: a contact is never in flight twice; its rows keep order."""
    rng = random.Random(1234)
    contacts = [f"id:{n}" for n in range(5)]
    jobs = [job(row, rng.choice(contacts)) for row in range(1, 61)]
    clock = FakeClock()
    queue = WorkQueue(max_pending=8, clock=clock)
    in_flight: dict[str, int] = dict.fromkeys(contacts, 0)
    most_in_flight = 0
    handled: dict[str, list[int]] = {c: [] for c in contacts}

    async def feeder() -> None:
        for item in jobs:
            assert await queue.put(item)
        queue.close()

    async def worker(seed: int) -> None:
        nonlocal most_in_flight
        delays = random.Random(seed)
        for _ in range(len(jobs) + 1):  # bounded: a worker cannot handle more than every row
            current = await queue.get()
            if current is None:
                return
            contact = current.contact
            in_flight[contact] += 1
            most_in_flight = max(most_in_flight, in_flight[contact])
            handled[contact].append(current.request.row)
            await anyio.sleep(delays.choice([0, 0, 0.001, 0.002]))
            in_flight[contact] -= 1
            queue.done(current)
        raise AssertionError("worker got more jobs than there are rows")

    async def main() -> None:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                group.start_soon(feeder)
                for seed in range(6):
                    group.start_soon(worker, seed)

    run(clock, main)
    assert most_in_flight == 1
    for contact in contacts:
        expected = [item.request.row for item in jobs if item.contact == contact]
        assert handled[contact] == expected
    assert sum(len(v) for v in handled.values()) == len(jobs)


def test_set_aside_job_comes_back_after_the_delay_while_others_flow() -> None:
    """A job set aside for 0.1 s comes back (new tries) at its due time; others go at once."""
    clock = FakeClock()
    queue = WorkQueue(clock=clock)

    async def main() -> None:
        await fill(queue, [job(1, "id:queued"), job(2, "id:queued", "close")])
        await fill(queue, [job(n, f"id:{n}") for n in range(3, 7)])
        first = await get_now(queue)
        assert first is not None
        assert rows([first]) == [1]
        start = clock.now()
        again = Job(first.request, Tries(attempts=1, requeues=1, last_status=449))
        assert queue.set_aside(again, 0.1)
        assert queue.waiting == 1
        assert queue.next_due_in == pytest.approx(0.1)
        others = []
        got_at = []
        for _ in range(4):
            other = await get_now(queue)
            assert other is not None
            others.append(other)
            got_at.append(clock.now())
            queue.done(other)
        assert rows(list(others)) == [3, 4, 5, 6]
        assert got_at == [start] * 4  # the others did not wait for the set-aside row
        back = await get_now(queue)
        assert back is again
        assert back.tries == Tries(attempts=1, requeues=1, last_status=449)
        assert clock.now() == pytest.approx(start + 0.1)  # back at its due time, not before
        assert queue.waiting == 0
        # The contact's later row only goes once the set-aside row is done.
        assert await get_blocks(queue, 0.02)
        queue.done(back)
        assert rows([await get_now(queue)]) == [2]

    run(clock, main)


def test_due_set_aside_job_goes_before_ready_rows() -> None:
    """Once due (not before), a set-aside job is handed out ahead of rows that were ready."""
    clock = FakeClock()
    queue = WorkQueue(clock=clock)

    async def main() -> None:
        await fill(queue, [job(1, "id:a"), job(2, "id:b"), job(3, "id:c")])
        first = await get_now(queue)
        assert first is not None
        assert queue.set_aside(first, 0.02)
        await anyio.sleep(0.019)
        assert rows([await get_now(queue)]) == [2]  # 1 ms before it is due: a ready row
        await anyio.sleep(0.011)
        assert (await get_now(queue)) is first

    run(clock, main)


def test_get_returns_none_for_every_getter_when_closed_and_drained() -> None:
    """Several workers waiting on an empty queue all get None once it is closed."""
    clock = FakeClock()
    queue = WorkQueue(clock=clock)
    results: list[Job | None] = []

    async def getter() -> None:
        results.append(await queue.get())

    async def main() -> None:
        with anyio.fail_after(BOUND):
            async with anyio.create_task_group() as group:
                for _ in range(4):
                    group.start_soon(getter)
                await anyio.sleep(0.02)
                assert results == []
                queue.close()

    run(clock, main)
    assert results == [None, None, None, None]


def test_get_waits_for_the_last_job_in_flight_before_ending() -> None:
    """After close, getters wait while a job is in flight (it may be set aside), then end."""
    clock = FakeClock()
    queue = WorkQueue(clock=clock)
    results: list[Job | None] = []

    async def getter() -> None:
        results.append(await queue.get())

    async def main() -> None:
        await fill(queue, [job(1, "id:a")])
        queue.close()
        current = await get_now(queue)
        assert current is not None
        with anyio.fail_after(BOUND):
            async with anyio.create_task_group() as group:
                for _ in range(3):
                    group.start_soon(getter)
                await anyio.sleep(0.02)
                assert results == []  # the job in flight might still come back
                assert queue.set_aside(current, 0.02)
                await anyio.sleep(0.05)
                # One getter took the set-aside job back; the others still wait for it.
                assert results == [current]
                queue.done(current)
        assert results == [current, None, None]

    run(clock, main)


def test_stop_returns_jobs_not_in_flight_in_row_order() -> None:
    """stop() returns every queued, parked and set-aside job (not the one in flight), by row."""
    clock = FakeClock()
    queue = WorkQueue(clock=clock)

    async def main() -> None:
        await fill(
            queue,
            [job(1, "id:a"), job(2, "id:b"), job(3, "id:a"), job(4, "id:c"), job(5, "id:b")],
        )
        in_flight = await get_now(queue)  # row 1, id:a
        aside = await get_now(queue)  # row 2, id:b
        assert rows([in_flight, aside]) == [1, 2]
        assert aside is not None
        assert queue.set_aside(aside, 10.0)
        left = queue.stop()
        assert [item.request.row for item in left] == [2, 3, 4, 5]
        assert queue.stopped
        assert queue.waiting == 0
        assert in_flight is not None
        queue.done(in_flight)  # the worker finishing its row after the stop is harmless

    run(clock, main)


def test_after_stop_get_returns_none_and_put_returns_false() -> None:
    """After stop(), waiting and new getters get None, put() is refused, set_aside too."""
    clock = FakeClock()
    queue = WorkQueue(clock=clock)
    results: list[Job | None] = []

    async def getter() -> None:
        results.append(await queue.get())

    async def main() -> None:
        await fill(queue, [job(1, "id:a")])
        current = await get_now(queue)
        assert current is not None
        with anyio.fail_after(BOUND):
            async with anyio.create_task_group() as group:
                for _ in range(3):
                    group.start_soon(getter)
                await anyio.sleep(0.02)
                assert queue.stop() == []
        assert results == [None, None, None]
        assert await get_now(queue) is None
        with anyio.fail_after(BOUND):
            assert await queue.put(job(2, "id:b")) is False
        assert queue.set_aside(current, 0.01) is False
        assert await get_now(queue) is None

    run(clock, main)


def test_put_waits_at_max_pending_and_resumes_when_rows_are_taken() -> None:
    """put() blocks once max_pending rows wait (parked rows count), and resumes after a get()."""
    clock = FakeClock()
    queue = WorkQueue(max_pending=2, clock=clock)

    async def main() -> None:
        await fill(queue, [job(1, "id:a"), job(2, "id:a")])  # one ready, one parked
        put_done = anyio.Event()

        async def third_put() -> None:
            assert await queue.put(job(3, "id:b"))
            put_done.set()

        with anyio.fail_after(BOUND):
            async with anyio.create_task_group() as group:
                group.start_soon(third_put)
                await anyio.sleep(0.03)
                assert not put_done.is_set()
                first = await queue.get()
                assert rows([first]) == [1]
                await put_done.wait()
        assert rows([await get_now(queue)]) == [3]

    run(clock, main)


def test_put_blocked_at_max_pending_is_released_by_stop() -> None:
    """A put() waiting on a full queue returns False when the run stops."""
    clock = FakeClock()
    queue = WorkQueue(max_pending=1, clock=clock)
    outcome: list[bool] = []
    left: list[Job] = []

    async def blocked_put() -> None:
        outcome.append(await queue.put(job(2, "id:b")))

    async def main() -> None:
        await fill(queue, [job(1, "id:a")])
        with anyio.fail_after(BOUND):
            async with anyio.create_task_group() as group:
                group.start_soon(blocked_put)
                await anyio.sleep(0.02)
                assert outcome == []
                left.extend(queue.stop())

    run(clock, main)
    assert outcome == [False]
    assert [item.request.row for item in left] == [1]


def test_set_aside_rows_are_counted_by_why_449_or_retry() -> None:
    """A 449 requeue counts in `requeued`, a retry after a failure in `retrying`; each count
    drops when its row comes back, and a stop empties both."""
    clock = FakeClock()
    queue = WorkQueue(clock=clock)

    async def main() -> None:
        await fill(queue, [job(n, f"id:{n}") for n in range(1, 5)])
        taken = [await get_now(queue) for _ in range(4)]
        assert queue.requeued == queue.retrying == 0
        assert None not in taken
        first, second, third, fourth = (item for item in taken if item is not None)
        assert queue.set_aside(first, 1.0, requeue=True)
        assert queue.set_aside(second, 0.5)
        assert queue.set_aside(third, 2.0, requeue=True)
        assert (queue.requeued, queue.retrying, queue.waiting) == (2, 1, 3)
        back = await get_now(queue)  # the retry, due first
        assert back is second
        assert (queue.requeued, queue.retrying) == (2, 0)
        back = await get_now(queue)
        assert back is first
        assert (queue.requeued, queue.retrying) == (1, 0)
        assert queue.set_aside(fourth, 5.0)
        assert (queue.requeued, queue.retrying) == (1, 1)
        queue.stop()
        assert (queue.requeued, queue.retrying, queue.waiting) == (0, 0, 0)

    run(clock, main)
