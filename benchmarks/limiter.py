"""How evenly each token bucket lets requests go, and how batcher's spacing and pacer compare.

    python benchmarks/limiter.py [--seconds S]

In one asyncio process, for R in 20, 100 and 500 requests per second, 8 tasks each loop
for 5 s (``--seconds``) over taking a turn followed by a no-op send
(``await asyncio.sleep(0)``), through

(a) ``aiolimiter.AsyncLimiter(R, 1)``: a bucket of R, refilled over a second;
(b) ``aiolimiter.AsyncLimiter(1, 1/R)``: a bucket of one, refilled every 1/R s;
(c) ``aiolimiter.AsyncLimiter(2, 2/R)``: a bucket of two, refilled at R per second;
(d) ``batcher.spacing.Spacing(R, 2)``, ``await spacing.wait()``: what batcher's pacer spaces
    requests with at a climbing or capped pace (c, rebuilt when the pace changes);
(e) ``batcher.pacer.Pacer(PacingConfig(start_rate=R, ceiling=R), SystemClock())``, a
    ``turn()`` per request to a distinct contact, answered with a 200 without rate headers:
    the spacing plus the ceiling's hard count (never more than R in any 1 s + 5 ms) and the
    in-flight cap, as a run without rate headers at ``--rate R`` goes.

For each it prints the turns per second over R (counting only those granted before the
deadline), the mean spacing between turns (1/R for one that keeps to R), and the most turns
in any 1-second sliding window [t, t + 1) and in the first second.

aiolimiter is one of batcher's dependencies (``batcher.spacing`` is built on it).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from aiolimiter import AsyncLimiter
from windows import max_in_window

from batcher.clock import SystemClock
from batcher.models import Answer, AnswerKind
from batcher.pacer import Pacer, PacingConfig
from batcher.spacing import Spacing

RATES = (20, 100, 500)
TASKS = 8
SECONDS = 5.0
#: A 200 without rate headers: the pacer learns no budget from it.
OK = Answer(AnswerKind.OK, 200)

#: Take one turn (the n-th of the run), call ``stamp`` when it is granted, then send a no-op.
Turn = Callable[[int, Callable[[], None]], Awaitable[None]]


@dataclass(frozen=True)
class Measured:
    rate: int
    limiter: str
    seconds: float
    granted: int
    max_window: int
    first_second: int
    spacing: float  # mean seconds between consecutive turns

    @property
    def ratio(self) -> float:
        return self.granted / self.seconds / self.rate


async def measure(rate: int, name: str, turn: Turn, seconds: float) -> Measured:
    """TASKS tasks loop over turn() (with its no-op send) until ``seconds`` have passed."""
    stamps: list[float] = []
    calls = itertools.count()
    start = time.monotonic()
    deadline = start + seconds

    def stamp() -> None:
        now = time.monotonic()
        if now < deadline:
            stamps.append(now)

    async def worker() -> None:
        while time.monotonic() < deadline:
            await turn(next(calls), stamp)

    tasks = [asyncio.create_task(worker()) for _ in range(TASKS)]
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))
    for task in tasks:
        task.cancel()  # those still waiting for a turn past the deadline
    await asyncio.gather(*tasks, return_exceptions=True)
    stamps.sort()
    first = sum(1 for t in stamps if t < start + 1.0)
    spacing = (stamps[-1] - stamps[0]) / (len(stamps) - 1) if len(stamps) > 1 else math.nan
    return Measured(rate, name, seconds, len(stamps), max_in_window(stamps), first, spacing)


def limiters(rate: int) -> list[tuple[str, Turn]]:
    """Fresh limiters for one rate (each is used by one measurement only)."""

    def bucket(limiter: AsyncLimiter) -> Turn:
        async def turn(_n: int, stamp: Callable[[], None]) -> None:
            await limiter.acquire()
            stamp()
            await asyncio.sleep(0)  # the "send"

        return turn

    spacing = Spacing(rate, 2)

    async def spacing_turn(_n: int, stamp: Callable[[], None]) -> None:
        await spacing.wait()
        stamp()
        await asyncio.sleep(0)

    pacer = Pacer(PacingConfig(start_rate=rate, ceiling=rate), SystemClock())

    async def pacer_turn(n: int, stamp: Callable[[], None]) -> None:
        async with pacer.turn(f"id:{n}") as turn:
            stamp()
            await asyncio.sleep(0)
            turn.answered(OK)

    return [
        (f"(a) AsyncLimiter({rate}, 1)", bucket(AsyncLimiter(rate, 1))),
        (f"(b) AsyncLimiter(1, 1/{rate})", bucket(AsyncLimiter(1, 1 / rate))),
        (f"(c) AsyncLimiter(2, 2/{rate})", bucket(AsyncLimiter(2, 2 / rate))),
        (f"(d) Spacing({rate}, 2)", spacing_turn),
        (f"(e) Pacer(ceiling={rate})", pacer_turn),
    ]


async def run_all(seconds: float) -> list[Measured]:
    results = []
    for rate in RATES:
        for name, turn in limiters(rate):
            result = await measure(rate, name, turn, seconds)
            print(
                f"  R={rate:>3} {name:<28} {result.granted:>5} granted "
                f"({result.ratio:.3f} x R), spacing {result.spacing * 1000:.2f} ms "
                f"(1/R = {1000 / rate:.2f} ms), max 1-s window {result.max_window}, "
                f"first second {result.first_second}",
                flush=True,
            )
            results.append(result)
    return results


def table(results: Sequence[Measured]) -> str:
    lines = [
        "| R /s | limiter | granted per s / R | mean spacing (1/R) "
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compare token buckets with batcher's pacing.")
    parser.add_argument("--seconds", type=float, default=SECONDS, help="per limiter and rate")
    args = parser.parse_args(argv)
    print(f"{TASKS} tasks, {args.seconds:g} s per limiter, a turn then await asyncio.sleep(0)")
    results = asyncio.run(run_all(args.seconds))
    print(f"\n{table(results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
