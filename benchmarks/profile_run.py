"""Where a row's CPU goes: one run under cProfile, time grouped by package.

    python benchmarks/profile_run.py [--rows 5000]

Starts the simulator as its own process (no latency, no limit), runs batcher
in this process under cProfile, and prints the CPU time per package (batcher's
own modules one by one), without the time spent waiting in epoll. cProfile
slows every call by a similar amount, so the shares are what to read, not the
absolute microseconds.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from batcher.config import Settings
from batcher.runner import run_batch


def package_of(filename: str, function: str) -> str:
    if "batcher" in filename and "site-packages" not in filename:
        return "batcher." + Path(filename).stem
    for name in ("httpx", "httpcore", "h11", "anyio", "pandas", "sniffio", "idna"):
        if f"/{name}/" in filename:
            return name
    if "asyncio" in filename:
        return "asyncio"
    if function.startswith("<method 'execute' of 'sqlite3"):
        return "sqlite3"
    if "socket" in function or "_ssl" in function:
        return "sockets"
    return "other (stdlib, builtins)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    args = parser.parse_args()
    sim = subprocess.Popen(
        [sys.executable, "-m", "batcher", "simulate", "--port", "0"],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = sim.stdout.readline() if sim.stdout else ""
        base_url = line.rsplit(" ", 1)[-1].strip()
        with tempfile.TemporaryDirectory() as tmp:
            source = Path(tmp) / "in.csv"
            source.write_text(
                "identifier,status,category\n"
                + "".join(f"id:{1000000 + n},close,Spam\n" for n in range(args.rows))
            )
            settings = Settings(base_url=base_url, start_rate=2000.0)
            profile = cProfile.Profile()
            cpu = time.process_time()
            profile.enable()
            summary = run_batch(source, settings=settings, token="bench")  # noqa: S106
            profile.disable()
            run_cpu = time.process_time() - cpu
            # cProfile sees only the main thread; the reader parses in a worker thread.
            # A dry run is the reading, checking, journal and writing without the HTTP.
            cpu = time.process_time()
            run_batch(source, settings=settings, dry_run=True, out=Path(tmp) / "dry.csv")
            dry_cpu = time.process_time() - cpu
    finally:
        sim.terminate()
        sim.wait(timeout=10)
        if sim.stdout:
            sim.stdout.close()
    stats = pstats.Stats(profile)
    totals: dict[str, float] = defaultdict(float)
    for (filename, _, function), row in stats.stats.items():  # type: ignore[attr-defined]
        if function.startswith("<method 'poll' of 'select.epoll"):
            continue  # waiting, not working
        totals[package_of(filename, function)] += row[2]  # tottime
    total = sum(totals.values())
    rows = summary.rows
    print(f"{rows} rows, {total:.2f} s of CPU under cProfile ({total / rows * 1e6:.0f} us/row)")
    print("| where | share of CPU |\n|---|---|")
    for name, seconds in sorted(totals.items(), key=lambda item: -item[1]):
        if seconds / total >= 0.005:
            print(f"| {name} | {seconds / total:.1%} |")
    own = sum(s for n, s in totals.items() if n.startswith("batcher."))
    print(f"| all of batcher's own modules | {own / total:.1%} |")
    print(
        f"\nprocess CPU, all threads: the profiled run {run_cpu / rows * 1e6:.0f} us/row; "
        f"a dry run (read, check, journal, write; no HTTP) {dry_cpu / rows * 1e6:.0f} us/row"
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
