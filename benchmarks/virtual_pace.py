"""The pace without rate headers, in virtual time (the test kit: no sockets, no CPU cost).

    python benchmarks/virtual_pace.py

Two figures the real benchmarks cannot isolate from the machine's own noise:

* the climb: 2,000 rows at 20 ms latency with 16 connections, against the ideal
  2,000 / (16 / 0.02 s) = 2.5 s, and how many requests went in the first 0.1 to 0.5 s;
* a hidden limit (a shared limit that sends no rate headers): how long a run takes and how
  many 429s it draws, against rows / limit seconds.

Every run is deterministic: the same figures each time on any machine.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from batcher import Settings, run_batch
from batcher.testing import FakeClock, SimulatorConfig, simulated_transport

CONNECTIONS = 16
LATENCY = 0.02


def run(folder: Path, rows: int, config: SimulatorConfig) -> tuple[float, int, list[float]]:
    """(elapsed seconds, 429s, request times) of one run in virtual time."""
    source = folder / f"in-{rows}.csv"
    source.write_text(
        "identifier,status\n" + "".join(f"id:{1_000_000 + n},close\n" for n in range(rows)),
        encoding="utf-8",
    )
    clock = FakeClock()
    transport = simulated_transport(config, clock=clock)
    summary = run_batch(
        source,
        out=folder / "out.csv",
        settings=Settings(concurrency=CONNECTIONS),
        token="bench-token",  # noqa: S106 - the simulator's, not a secret
        clock=clock,
        transport=transport,
    )
    if summary.outcomes and sum(summary.outcomes.values()) != rows:
        raise RuntimeError(f"not every row got an outcome: {summary.outcomes}")
    times = sorted(record.time for record in transport.requests)
    return summary.elapsed, summary.http_statuses.get(429, 0), times


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="batcher-virtual-") as tmp:
        folder = Path(tmp)
        rows = 2_000
        elapsed, _, times = run(folder, rows, SimulatorConfig(latency=LATENCY, rate_headers="none"))
        ideal = rows / (CONNECTIONS / LATENCY)
        by = [sum(1 for t in times if t < times[0] + s) for s in (0.1, 0.2, 0.3, 0.5)]
        print(
            f"climb: {rows} rows, {CONNECTIONS} connections, {LATENCY * 1000:.0f} ms: "
            f"{elapsed:.3f} s against an ideal {ideal:.3f} s (+{elapsed - ideal:.3f} s); "
            f"requests by 0.1 / 0.2 / 0.3 / 0.5 s: {' / '.join(map(str, by))}"
        )
        for limit, count in ((10, 300), (100, 2_000)):
            config = SimulatorConfig(shared_limit=limit, rate_headers="none", latency=LATENCY)
            elapsed, throttled, _ = run(folder, count, config)
            print(
                f"hidden limit {limit}/s (no rate headers), {count} rows: {elapsed:.1f} s "
                f"against {count / limit:.0f} s at the limit, {throttled} 429s"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
