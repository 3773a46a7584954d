"""Scale and speed: memory for 100k and 1M rows, rows/s against a bare httpx loop.

One command::

    python benchmarks/scale.py            # everything (the 1M real run takes ~25 min)
    python benchmarks/scale.py --quick    # 1M only as a dry run; speed on 10k rows
    python benchmarks/scale.py --only speed   # or startup, climb, memory

It generates the inputs, starts the simulator as its own process (so the two
do not share a GIL), runs batcher and a bare ``httpx.AsyncClient`` loop
sending the same requests in the same benchmark run, and prints rows/s, CPU
microseconds per row, peak RSS and the ratios the scale issue asks for.

Peak RSS is the child's ``ru_maxrss``, read by a small wrapper process so
each figure belongs to one run only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

TOKEN = "bench-token"  # noqa: S105 - the simulator accepts any token
HERE = Path(__file__).resolve().parent

# Runs a command and prints its peak RSS (KiB) and CPU seconds, measured for it alone.
_MEASURE = """
import resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.run(sys.argv[1:], stdin=subprocess.DEVNULL).returncode
wall = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"MEASURE {code} {usage.ru_maxrss} {usage.ru_utime + usage.ru_stime:.3f} {wall:.3f}",
      file=sys.stderr)
"""

# The bare httpx loop: the same POSTs batcher sends, from N workers, as fast as it can.
_BARE = """
import asyncio, sys, time, httpx
base, rows, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
async def main():
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    headers = {"Authorization": "Bearer bench-token", "Content-Type": "application/json"}
    async with httpx.AsyncClient(limits=limits, headers=headers) as client:
        ids = iter(range(rows))
        async def worker():
            for n in ids:
                url = f"{base}/contact/id:{1000000 + n}/conversation/status"
                r = await client.post(url, content=b'{"status":"close","category":"Spam"}')
                assert r.status_code == 200, r.status_code
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(workers)))
        print(f"BARE {rows / (time.perf_counter() - start):.1f}")
asyncio.run(main())
"""


@dataclass(frozen=True)
class Measured:
    code: int
    peak_mib: float
    cpu_seconds: float
    wall: float
    stderr: str


def measure(args: list[str], *, env: dict[str, str] | None = None) -> Measured:
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    match = re.search(r"MEASURE (\d+) (\d+) ([\d.]+) ([\d.]+)", done.stderr)
    if match is None:
        raise RuntimeError(done.stderr[-2000:])
    code, rss, cpu, wall = match.groups()
    return Measured(int(code), int(rss) / 1024, float(cpu), float(wall), done.stderr)


def make_input(folder: Path, rows: int) -> Path:
    path = folder / f"in-{rows}.csv"
    if not path.exists():
        with path.open("w") as file:
            file.write("identifier,status,category,ticket\n")
            for n in range(rows):
                file.write(f"id:{1000000 + n},close,Spam,T-{n}\n")
    return path


class Simulator:
    """``batcher simulate`` as its own process, stopped by its pid."""

    def __init__(self, *flags: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "batcher", "simulate", "--port", "0", *flags],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        line = self.process.stdout.readline() if self.process.stdout else ""
        self.base_url = line.rsplit(" ", 1)[-1].strip()
        if not self.base_url.startswith("http://127.0.0.1:"):
            self.stop()
            raise RuntimeError(f"simulator did not start: {line!r}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


def batcher_run(
    source: Path, folder: Path, *extra: str, base_url: str | None = None
) -> tuple[Measured, dict[str, object]]:
    summary = folder / f"summary-{source.stem}.json"
    out = folder / f"{source.stem}.results.csv"
    args = [sys.executable, "-m", "batcher", "run", str(source), "--out", str(out)]
    args += ["--no-progress", "--quiet", "--restart", "--summary-json", str(summary), *extra]
    if base_url:
        args += ["--base-url", base_url]
    env = {**os.environ, "AELYST_API_TOKEN": TOKEN}
    result = measure(args, env=env)
    data = json.loads(summary.read_text())
    return result, data


def memory(folder: Path, quick: bool) -> list[tuple[str, str, str, bool]]:
    rows: list[tuple[str, str, str, bool]] = []
    small, large = make_input(folder, 100_000), make_input(folder, 1_000_000)
    peaks: dict[str, float] = {}
    for label, source in (("100k", small), ("1M", large)):
        result, _ = batcher_run(source, folder, "--dry-run")
        peaks[f"dry {label}"] = result.peak_mib
        print(f"dry run {label}: peak RSS {result.peak_mib:.1f} MiB, wall {result.wall:.1f} s")
    sim = Simulator()
    try:
        sizes = (("100k", small),) if quick else (("100k", small), ("1M", large))
        for label, source in sizes:
            result, data = batcher_run(source, folder, base_url=sim.base_url)
            peaks[f"real {label}"] = result.peak_mib
            print(
                f"real run {label}: peak RSS {result.peak_mib:.1f} MiB, "
                f"{data['rows_per_second']} rows/s, exit {result.code}"
            )
    finally:
        sim.stop()
    for kind in ("dry", "real"):
        if f"{kind} 1M" not in peaks:
            continue
        big, base = peaks[f"{kind} 1M"], peaks[f"{kind} 100k"]
        rows.append((f"peak RSS, {kind} run, 1M rows", "<= 180 MiB", f"{big:.1f} MiB", big <= 180))
        ratio = big / base
        rows.append((f"1M / 100k peak RSS, {kind} run", "<= 1.10", f"{ratio:.3f}", ratio <= 1.10))
    return rows


def bare_loop(base_url: str, count: int, workers: int) -> float:
    """Requests per second of the bare httpx loop, in its own process."""
    done = subprocess.run(
        [sys.executable, "-c", _BARE, base_url, str(count), str(workers)],
        capture_output=True,
        text=True,
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return float(done.stdout.split()[-1])


def speed(folder: Path, quick: bool, repeat: int) -> list[tuple[str, str, str, bool]]:
    """Medians of ``repeat`` rounds against one simulator with 20 ms latency.

    Each round runs every configuration once, so a slow stretch of a shared machine
    (seen as ±2 % between otherwise equal runs) falls on all of them alike rather than
    on whichever configuration happened to run then.
    """
    count = 10_000 if quick else 20_000
    source = make_input(folder, count)
    configs = ("bare 8", 8, 16, 32, 64)
    rates: dict[object, list[float]] = {config: [] for config in configs}
    cpus: dict[object, list[float]] = {config: [] for config in configs}
    sim = Simulator("--latency", "0.02")
    try:
        for round_ in range(1, repeat + 1):
            for config in configs:
                if config == "bare 8":
                    rates[config].append(bare_loop(sim.base_url, count, 8))
                    continue
                result, data = batcher_run(
                    source, folder, "--concurrency", str(config), base_url=sim.base_url
                )
                rates[config].append(float(str(data["rows_per_second"])))
                cpus[config].append(result.cpu_seconds / count * 1e6)
            print(f"round {round_}: " + ", ".join(f"{c}: {rates[c][-1]:.1f}" for c in configs))
    finally:
        sim.stop()
    median = {config: statistics.median(rates[config]) for config in configs}
    print(f"bare httpx loop, 8 connections: {median['bare 8']:.1f} requests/s (median)")
    for config in configs[1:]:
        print(
            f"batcher, concurrency {config}: {median[config]:.1f} rows/s (median), "
            f"{statistics.median(cpus[config]):.0f} us CPU per row"
        )
    rows: list[tuple[str, str, str, bool]] = []
    ratio = median[8] / median["bare 8"]
    rows.append(("batcher / bare httpx, concurrency 8", ">= 0.85", f"{ratio:.3f}", ratio >= 0.85))
    low = min(median[c] for c in (32, 64))
    rows.append(
        ("lowest rows/s of 32, 64 over rows/s at 16", ">= 1.00", f"{low / median[16]:.3f}",
         low >= median[16])
    )  # fmt: skip
    return rows


def climb(folder: Path, repeat: int) -> list[tuple[str, str, str, bool]]:
    """A server with no rate headers, 20 ms latency, 16 connections, 5,000 rows: rows/s of
    the whole ``batcher run`` process (start-up and the climb from 5/s included) against a
    bare httpx loop's, medians of ``repeat`` interleaved rounds."""
    count = 5_000
    source = make_input(folder, count)
    whole: list[float] = []
    bare: list[float] = []
    sim = Simulator("--latency", "0.02", "--rate-headers", "none")
    try:
        for round_ in range(1, repeat + 1):
            bare.append(bare_loop(sim.base_url, count, 16))
            result, _ = batcher_run(source, folder, "--concurrency", "16", base_url=sim.base_url)
            whole.append(count / result.wall)
            print(
                f"climb round {round_}: bare 16: {bare[-1]:.1f}, batcher process: {whole[-1]:.1f}"
            )
    finally:
        sim.stop()
    ratio = statistics.median(whole) / statistics.median(bare)
    print(
        f"no headers: batcher process {statistics.median(whole):.1f} rows/s, bare httpx "
        f"{statistics.median(bare):.1f} (medians of {repeat})"
    )
    return [("no headers: batcher process / bare httpx, 16 connections", ">= 0.90",
             f"{ratio:.3f}", ratio >= 0.90)]  # fmt: skip


def startup() -> list[tuple[str, str, str, bool]]:
    times = []
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "batcher", "--help"],
            capture_output=True,
            check=True,
            stdin=subprocess.DEVNULL,
        )
        times.append(time.perf_counter() - start)
    median = sorted(times)[2]
    print(f"batcher --help: median of 5 {median:.3f} s")
    return [("batcher --help (median of 5)", "< 0.3 s", f"{median:.3f} s", median < 0.3)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1M as dry run only; 10k speed")
    parser.add_argument("--keep", type=Path, help="keep generated inputs in this folder")
    parser.add_argument(
        "--only", choices=("startup", "speed", "climb", "memory"), help="one part only"
    )
    parser.add_argument("--repeat", type=int, default=5, help="speed rounds (default 5)")
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        parts: dict[str, Callable[[], list[tuple[str, str, str, bool]]]] = {
            "startup": startup,
            "speed": partial(speed, folder, args.quick, args.repeat),
            "climb": partial(climb, folder, args.repeat),
            "memory": partial(memory, folder, args.quick),
        }
        table = [row for name, part in parts.items() if args.only in (None, name) for row in part()]
    print("\n| figure | bound | measured | |\n|---|---|---|---|")
    for name, bound, value, ok in table:
        print(f"| {name} | {bound} | {value} | {'pass' if ok else 'FAIL'} |")
    return 0 if all(ok for *_, ok in table) else 1


if __name__ == "__main__":
    sys.exit(main())
