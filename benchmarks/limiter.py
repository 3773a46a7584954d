"""Why batcher paces with its own ``Pacer`` and not ``aiolimiter``: measured.

    python benchmarks/limiter.py

In one asyncio process, for R in 20, 100 and 500 requests per second, 8 tasks
each loop for 5 s over ``acquire()`` followed by a no-op send
(``await asyncio.sleep(0)``), through

(a) ``aiolimiter.AsyncLimiter(R, 1)``: a bucket of R per second;
(b) ``aiolimiter.AsyncLimiter(1, 1/R)``: a bucket of one, refilled every 1/R s;
(c) ``batcher.limiter.Pacer(PacingConfig(start_rate=R), SystemClock())`` (no ceiling: at a
ceiling the pacer goes to 99 % of it on purpose; with no answers observed it keeps R),
    with a distinct contact key per call (it never sees an answer, so its pace stays R).

For each it prints the acquisitions per second over R (counting only those that
completed before the 5 s deadline), the mean spacing between acquisitions (1/R
for a limiter that keeps to R), and the most acquisitions in any 1-second sliding
window [t, t + 1) and in the first second.

aiolimiter is not one of batcher's dependencies: without it, the script says how
to install it and exits 0.
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import math
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from windows import max_in_window

from batcher.clock import SystemClock
from batcher.limiter import Pacer, PacingConfig

RATES = (20, 100, 500)
TASKS = 8
SECONDS = 5.0

Acquire = Callable[[int], Awaitable[None]]


@dataclass(frozen=True)
class Measured:
    rate: int
    limiter: str
    acquired: int
    max_window: int
    first_second: int
    spacing: float  # mean seconds between consecutive acquisitions

    @property
    def ratio(self) -> float:
        return self.acquired / SECONDS / self.rate


async def measure(rate: int, name: str, acquire: Acquire) -> Measured:
    """TASKS tasks loop over acquire() and a no-op send until SECONDS have passed."""
    stamps: list[float] = []
    calls = itertools.count()
    start = time.monotonic()
    deadline = start + SECONDS

    async def worker() -> None:
        while True:
            await acquire(next(calls))
            now = time.monotonic()
            if now >= deadline:
                return
            stamps.append(now)
            await asyncio.sleep(0)  # the "send"

    tasks = [asyncio.create_task(worker()) for _ in range(TASKS)]
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))
    for task in tasks:
        task.cancel()  # those still waiting for an acquisition past the deadline
    await asyncio.gather(*tasks, return_exceptions=True)
    stamps.sort()
    first = sum(1 for t in stamps if t < start + 1.0)
    spacing = (stamps[-1] - stamps[0]) / (len(stamps) - 1) if len(stamps) > 1 else math.nan
    return Measured(rate, name, len(stamps), max_in_window(stamps), first, spacing)


def limiters(rate: int) -> list[tuple[str, Acquire]]:
    """Fresh limiters for one rate (each is used by one measurement only)."""
    from aiolimiter import AsyncLimiter  # type: ignore[import-not-found, unused-ignore]  # noqa: PLC0415

    bucket = AsyncLimiter(rate, 1)
    single = AsyncLimiter(1, 1 / rate)
    pacer = Pacer(PacingConfig(start_rate=rate), SystemClock())

    async def bucket_acquire(_: int) -> None:
        await bucket.acquire()

    async def single_acquire(_: int) -> None:
        await single.acquire()

    async def pacer_acquire(n: int) -> None:
        await pacer.acquire(f"id:{n}")

    return [
        (f"(a) AsyncLimiter({rate}, 1)", bucket_acquire),
        (f"(b) AsyncLimiter(1, 1/{rate})", single_acquire),
        (f"(c) Pacer(start_rate={rate})", pacer_acquire),
    ]


async def run_all() -> list[Measured]:
    results = []
    for rate in RATES:
        for name, acquire in limiters(rate):
            result = await measure(rate, name, acquire)
            print(
                f"  R={rate:>3} {name:<34} {result.acquired:>5} acquired "
                f"({result.ratio:.3f} x R), spacing {result.spacing * 1000:.2f} ms "
                f"(1/R = {1000 / rate:.2f} ms), max 1-s window {result.max_window}, "
                f"first second {result.first_second}",
                flush=True,
            )
            results.append(result)
    return results


def table(results: Sequence[Measured]) -> str:
    lines = [
        "| R /s | limiter | acquired per s / R | mean spacing (1/R) "
        "| max in a 1-s window | in the first second |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for r in results:
        window = f"{r.max_window} ({r.max_window / r.rate:.2f} R)"
        first = f"{r.first_second} ({r.first_second / r.rate:.2f} R)"
        spacing = f"{r.spacing * 1000:.2f} ms ({1000 / r.rate:.2f})"
        lines.append(
            f"| {r.rate} | {r.limiter[4:]} | {r.ratio:.3f} | {spacing} | {window} | {first} |"
        )
    return "\n".join(lines)


def main() -> int:
    if importlib.util.find_spec("aiolimiter") is None:
        print("benchmarks/limiter.py compares against aiolimiter: pip install aiolimiter")
        return 0
    print(f"{TASKS} tasks, {SECONDS:g} s per limiter, acquire() then await asyncio.sleep(0)")
    results = asyncio.run(run_all())
    print(f"\n{table(results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
