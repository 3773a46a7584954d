"""Does batcher hold, stop or go on as it should when the API itself is in trouble? End to end.

    python benchmarks/health.py [--only NAME] [--json FILE]

Each scenario runs ``batcher run`` as a subprocess (``AELYST_API_TOKEN`` set,
``--log-file`` and ``--summary-json`` on) against ``batcher simulate`` in its own
process, or against a closed port, once with the fault and once without it, in
the same invocation, and reads every side: batcher's attempt log (one line per
request it sent, no-answers included), its summary JSON (outcomes, reasons,
outages, stop reason, exit code) and results CSV, the simulator's request log,
and batcher's stderr. The simulator and batcher are started and stopped by their
pids (``ratelimits.simulator`` and ``ratelimits.run_batcher``), also on error.

Scenarios:

down-from-start  nothing listens (a port bound, noted and closed), 2,000 rows,
                 --outage-wait 10s: exit 3 in under 40 s, at most 30 requests sent
                 (attempt-log lines), no row failed; then the very same command, with
                 the simulator now listening on that port, resumes: exit 0, every row ok
outage-15s       2,000 rows, shared limit 50/s, the API down for 15 s after 1,000
                 requests (--down-after 1000 --down-for 15): no row failed, every row
                 ok, at most 25 requests without an answer during the outage, and at
                 most 20 s longer than the same run without the outage
same-400         1,000 closes without a category, --require-category, shared 50/s:
                 exit 3 after at most 100 requests (simulator log lines), and stderr
                 says ``stopped: the last 50 rows were all refused with "400
                 Validation error."``
faults           5 % 500s and 2 % dropped connections, shared 20/s, 440 rows (as
                 ratelimits case 4): exit 0, every row ok, no outage in the summary
404s             10 % of the rows (seeded) for unknown contacts (404), shared 50/s,
                 2,000 rows: exit 1, ok + failed with 404 = every row, failed = the
                 unknown rows, no stop (summary stop_reason null)

Every scenario also shows its wall time against the same run without the fault
(informative, except outage-15s's bound); for down-from-start the run without
the fault is the resumed one, which sends all 2,000 rows. Wall times are
batcher's process start to exit. "Requests during the outage" are attempt-log
lines with ``http_status`` null whose time falls in an outage of the summary,
[start, end + 1 s) because the summary's times are whole seconds (an outage
still going on when the run ended counts to the end of the log). The simulator
does not log the connections it resets while down, so that count is batcher's.
It prints a Markdown table of the runs and one of the checks, and exits 1 if any
check fails (2 if a run could not be made at all). Standard library only, plus
batcher's own CLI as subprocesses.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ratelimits import FIRST_ID, BenchmarkError, Check, run_batcher, simulator, table, write_input

ROWS = 2_000
#: The message ``--max-same-errors 50`` (the default) must print for scenario same-400.
SAME_400_MESSAGE = 'stopped: the last 50 rows were all refused with "400 Validation error."'
UNKNOWN_SHARE = 0.10
SEED = 11
#: Seconds a run may take beyond what its rows need at the limit before it is stopped.
RUN_SLACK = 120.0


@dataclass
class Run:
    """One batcher run, as batcher's files, its stderr and the simulator's log recorded it."""

    label: str
    rows: int
    wall: float
    exit_code: int | None  # None: batcher overran its timeout and was stopped
    outcomes: dict[str, int]
    reasons: dict[str, int]
    stop_reason: str | None
    outages: list[dict[str, Any]]
    #: Attempt-log lines: every request batcher sent, answered or not.
    attempts: int
    no_answer: int
    #: Attempt-log lines with no answer inside an outage of the summary, and probes among all.
    no_answer_in_outage: int
    probes: int
    #: Simulator log lines (requests it answered or dropped); None without a simulator.
    sim_requests: int | None
    failed_404: int
    stderr_tail: str = ""
    elapsed_seconds: float | None = None

    def count(self, outcome: str) -> int:
        return self.outcomes.get(outcome, 0)

    @property
    def code(self) -> str:
        return "timeout" if self.exit_code is None else str(self.exit_code)


@dataclass
class ScenarioResult:
    scenario: str
    runs: list[Run] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)


ScenarioRuns = tuple[list[Run], list[Check]]


# -- running ------------------------------------------------------------------------------------


def closed_port() -> int:
    """A port nothing listens on: bound by the OS for us, noted, and closed again."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@contextmanager
def nothing_listening(port: int) -> Iterator[str]:
    yield f"http://127.0.0.1:{port}/v1"


def write_rows(path: Path, identifiers: Sequence[str]) -> None:
    """Closes without a category, one per identifier."""
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["identifier", "status"])
        writer.writerows([identifier, "close"] for identifier in identifiers)


def with_unknowns(rows: int, share: float, seed: int) -> list[str]:
    """``id:N`` rows, ``share`` of them (seeded, at random) unknown contacts the API 404s."""
    chooser = random.Random(seed)
    return [
        f"email:unknown{n}@x.com" if chooser.random() < share else f"id:{n}"
        for n in range(FIRST_ID, FIRST_ID + rows)
    ]


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as file:
        return [json.loads(line) for line in file if line.strip()]


def _in_outage(when: datetime, windows: Sequence[tuple[datetime, datetime | None]]) -> bool:
    return any(start <= when and (end is None or when < end) for start, end in windows)


def read_run(label: str, rows: int, folder: Path, ran: tuple[float, int | None, str]) -> Run:
    """One run's figures from the files it left in ``folder``; ``ran`` is ``run_batcher``'s."""
    wall, code, stderr = ran
    summary: dict[str, Any] = {}
    if (folder / "summary.json").exists():
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    outages: list[dict[str, Any]] = list(summary.get("outages") or [])
    windows = [
        (
            datetime.fromisoformat(o["start"]),
            datetime.fromisoformat(o["end"]) + timedelta(seconds=1) if o.get("end") else None,
        )
        for o in outages
    ]
    attempts = _lines(folder / "attempts.jsonl")
    unanswered = [a for a in attempts if a["http_status"] is None]
    in_outage = [a for a in unanswered if _in_outage(datetime.fromisoformat(a["time"]), windows)]
    outcomes: Counter[str] = Counter()
    failed_404 = 0
    if (folder / "results.csv").exists():
        with (folder / "results.csv").open(encoding="utf-8", newline="") as file:
            for row in csv.DictReader(file):
                outcomes[row["outcome"]] += 1
                failed_404 += row["outcome"] == "failed" and row["http_status"] == "404"
    sim_log = folder / "sim.log"
    return Run(
        label=label,
        rows=rows,
        wall=wall,
        exit_code=code,
        outcomes=dict(outcomes),
        reasons=dict(summary.get("reasons") or {}),
        stop_reason=summary.get("stop_reason"),
        outages=outages,
        attempts=len(attempts),
        no_answer=len(unanswered),
        no_answer_in_outage=len(in_outage),
        probes=sum(1 for a in attempts if a.get("probe")),
        sim_requests=len(_lines(sim_log)) if sim_log.exists() else None,
        failed_404=failed_404,
        stderr_tail=stderr[-2000:],
        elapsed_seconds=summary.get("elapsed_seconds"),
    )


def batcher_flags(folder: Path, extra: Sequence[str]) -> list[str]:
    return [
        "--log-file",
        str(folder / "attempts.jsonl"),
        "--summary-json",
        str(folder / "summary.json"),
        *extra,
    ]


def measure(
    label: str,
    identifiers: Sequence[str],
    *,
    sim: Sequence[str],
    run: Sequence[str] = (),
    seconds: float,
) -> Run:
    """Simulator up, batcher through the rows, simulator down; then read every log."""
    with tempfile.TemporaryDirectory(prefix=f"batcher-health-{label}-") as tmp:
        folder = Path(tmp)
        write_rows(folder / "input.csv", identifiers)
        with simulator(sim, folder / "sim.log", folder / "simulator.stderr") as base_url:
            ran = run_batcher(
                folder / "input.csv",
                base_url,
                folder / "results.csv",
                batcher_flags(folder, run),
                seconds + RUN_SLACK,
            )
        result = read_run(label, len(identifiers), folder, ran)
    show(result)
    return result


def show(r: Run) -> None:
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(r.outcomes.items()) if v) or "none"
    sim = "" if r.sim_requests is None else f", simulator logged {r.sim_requests}"
    print(
        f"  [{r.label}] exit {r.code}, wall {r.wall:.2f} s; rows {r.rows}: {outcomes}; "
        f"stop_reason {r.stop_reason}",
        flush=True,
    )
    print(
        f"    attempts {r.attempts} (no answer {r.no_answer}, of them in an outage "
        f"{r.no_answer_in_outage}; probes {r.probes}){sim}"
    )
    for o in r.outages:
        print(
            f"    outage {o['start']} -> {o['end']}: {o['seconds']} s, {o['probes']} probes, "
            f"last error {o['last_error']!r}"
        )
    summary_line = next((line for line in r.stderr_tail.splitlines() if " rows in " in line), "")
    print(f"    {summary_line}", flush=True)


# -- checks -------------------------------------------------------------------------------------


def exit_check(scenario: str, r: Run, expected: int) -> Check:
    return Check(
        scenario,
        f"exit code ({r.label})",
        str(expected),
        r.code,
        -1 if r.exit_code is None else r.exit_code,
        r.exit_code == expected,
    )


def all_ok_check(scenario: str, r: Run) -> Check:
    return Check(
        scenario,
        f"rows ending ok ({r.label})",
        f"all {r.rows}, exit 0",
        f"{r.count('ok')}/{r.rows} (exit {r.code})",
        r.count("ok") / r.rows,
        r.count("ok") == r.rows and r.exit_code == 0,
    )


def no_failed_check(scenario: str, r: Run) -> Check:
    failed = r.count("failed")
    return Check(scenario, f"rows failed ({r.label})", "0", str(failed), failed, failed == 0)


def wall_check(scenario: str, faulty: Run, clean: Run, bound: float | None = None) -> Check:
    extra = faulty.wall - clean.wall
    return Check(
        scenario,
        f"wall time {faulty.label} - {clean.label}",
        "informative" if bound is None else f"<= +{bound:.0f} s",
        f"{extra:+.2f} s ({faulty.wall:.2f} s vs {clean.wall:.2f} s)",
        extra,
        bound is None or (extra <= bound and faulty.exit_code is not None),
    )


# -- the scenarios ------------------------------------------------------------------------------


def down_from_start() -> ScenarioRuns:
    """Nothing listens; then the very same command against the simulator on that port."""
    name, max_wall, max_attempts = "down-from-start", 40.0, 30
    port = closed_port()
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="batcher-health-down-") as tmp:
        folder = Path(tmp)
        write_input(folder / "input.csv", ROWS)
        flags = batcher_flags(folder, ["--outage-wait", "10s"])
        results = folder / "results.csv"
        with nothing_listening(port) as base_url:
            ran = run_batcher(folder / "input.csv", base_url, results, flags, max_wall + RUN_SLACK)
        down = read_run("down", ROWS, folder, ran)
        show(down)
        # Fresh logs for the second run: the very same command appends to the attempt log.
        for log in ("attempts.jsonl", "summary.json"):
            (folder / log).unlink(missing_ok=True)
        with simulator(
            ["--port", str(port), "--shared-limit", "50"],
            folder / "sim.log",
            folder / "simulator.stderr",
        ) as up_url:
            ran = run_batcher(folder / "input.csv", up_url, results, flags, ROWS / 50 + RUN_SLACK)
        resumed = read_run("resumed", ROWS, folder, ran)
        show(resumed)
        runs = [down, resumed]
    checks = [
        exit_check(name, down, 3),
        Check(
            name,
            "wall time (down)",
            f"< {max_wall:.0f} s",
            f"{down.wall:.2f} s",
            down.wall,
            down.wall < max_wall and down.exit_code is not None,
        ),
        Check(
            name,
            "requests sent (attempt-log lines, down)",
            f"<= {max_attempts}",
            f"{down.attempts} ({down.probes} probes)",
            down.attempts,
            down.attempts <= max_attempts,
        ),
        no_failed_check(name, down),
        Check(
            name,
            "rows skipped as not sent (down)",
            f"all {ROWS} (informative)",
            f"{down.count('skipped')} ({', '.join(f'{k} {v}' for k, v in down.reasons.items())})",
            down.count("skipped"),
            True,
        ),
        all_ok_check(name, resumed),
        wall_check(name, down, resumed),
    ]
    return runs, checks


def outage_15s() -> ScenarioRuns:
    name, down_for, max_extra, max_unanswered = "outage-15s", 15, 20.0, 25
    sim = ["--shared-limit", "50"]
    identifiers = [f"id:{n}" for n in range(FIRST_ID, FIRST_ID + ROWS)]
    seconds = ROWS / 50 + down_for
    clean = measure("no-outage", identifiers, sim=sim, seconds=seconds)
    down = [*sim, "--down-after", str(ROWS // 2), "--down-for", str(down_for)]
    faulty = measure("outage", identifiers, sim=down, seconds=seconds)
    seen = len(faulty.outages)
    return [clean, faulty], [
        no_failed_check(name, faulty),
        all_ok_check(name, faulty),
        Check(
            name,
            "outages in the summary (outage)",
            "1",
            ", ".join(f"{o['seconds']} s, {o['probes']} probes" for o in faulty.outages) or "0",
            seen,
            seen == 1,
        ),
        Check(
            name,
            "requests without an answer during the outage",
            f"<= {max_unanswered} (and an outage seen)",
            f"{faulty.no_answer_in_outage} (all no-answers {faulty.no_answer}, "
            f"probes {faulty.probes})",
            faulty.no_answer_in_outage,
            seen >= 1 and faulty.no_answer_in_outage <= max_unanswered,
        ),
        wall_check(name, faulty, clean, max_extra),
    ]


def same_400() -> ScenarioRuns:
    name, rows, max_requests = "same-400", 1_000, 100
    sim = ["--shared-limit", "50"]
    identifiers = [f"id:{n}" for n in range(FIRST_ID, FIRST_ID + rows)]
    clean = measure("accepted", identifiers, sim=sim, seconds=rows / 50)
    refused = measure("refused", identifiers, sim=[*sim, "--require-category"], seconds=rows / 50)
    requests = refused.sim_requests or 0
    said = SAME_400_MESSAGE in refused.stderr_tail
    line = next(
        (ln for ln in refused.stderr_tail.splitlines() if "stopped: the last" in ln), "none"
    )
    return [clean, refused], [
        exit_check(name, refused, 3),
        Check(
            name,
            "requests the simulator logged (refused)",
            f"<= {max_requests}",
            f"{requests} (stop_reason {refused.stop_reason})",
            requests,
            requests <= max_requests,
        ),
        Check(
            name,
            "stderr quotes the refusal",
            "has the message above",
            "yes" if said else f"no: {line[:100]}",
            float(said),
            said,
        ),
        all_ok_check(name, clean),
        wall_check(name, refused, clean),
    ]


def faults() -> ScenarioRuns:
    name, rows = "faults", 440
    sim = ["--shared-limit", "20"]
    identifiers = [f"id:{n}" for n in range(FIRST_ID, FIRST_ID + rows)]
    clean = measure("no-faults", identifiers, sim=sim, seconds=rows / 20)
    faulty = measure(
        "faults",
        identifiers,
        sim=[*sim, "--error-rate", "0.05", "--drop-rate", "0.02"],
        seconds=rows / 20,
    )
    return [clean, faulty], [
        all_ok_check(name, faulty),
        Check(
            name,
            "outages in the summary (faults)",
            "0",
            str(len(faulty.outages)),
            len(faulty.outages),
            not faulty.outages,
        ),
        all_ok_check(name, clean),
        wall_check(name, faulty, clean),
    ]


def not_found() -> ScenarioRuns:
    name = "404s"
    sim = ["--shared-limit", "50"]
    clean_ids = [f"id:{n}" for n in range(FIRST_ID, FIRST_ID + ROWS)]
    mixed = with_unknowns(ROWS, UNKNOWN_SHARE, SEED)
    unknown = sum("unknown" in identifier for identifier in mixed)
    clean = measure("no-404s", clean_ids, sim=sim, seconds=ROWS / 50)
    faulty = measure("404s", mixed, sim=sim, seconds=ROWS / 50)
    ok, failed = faulty.count("ok"), faulty.count("failed")
    return [clean, faulty], [
        exit_check(name, faulty, 1),
        Check(
            name,
            "ok + failed with 404",
            f"all {ROWS}",
            f"{ok} + {faulty.failed_404} = {ok + faulty.failed_404}",
            ok + faulty.failed_404,
            ok + faulty.failed_404 == ROWS,
        ),
        Check(
            name,
            "rows failed",
            f"= unknown rows ({unknown})",
            str(failed),
            failed,
            failed == unknown,
        ),
        Check(
            name,
            "summary stop_reason",
            "null",
            json.dumps(faulty.stop_reason),
            float(faulty.stop_reason is not None),
            faulty.stop_reason is None and faulty.exit_code is not None,
        ),
        all_ok_check(name, clean),
        wall_check(name, faulty, clean),
    ]


SCENARIOS: dict[str, tuple[str, Callable[[], ScenarioRuns]]] = {
    "down-from-start": (
        "the API down from the start (closed port), --outage-wait 10s",
        down_from_start,
    ),
    "outage-15s": ("the API down 15 s after 1,000 requests, shared 50/s", outage_15s),
    "same-400": ("every close refused 400 (--require-category), shared 50/s", same_400),
    "faults": ("5% 500s, 2% dropped connections, shared 20/s", faults),
    "404s": (f"{UNKNOWN_SHARE:.0%} unknown contacts (404), shared 50/s", not_found),
}


def runs_table(results: Sequence[ScenarioResult]) -> str:
    lines = [
        "| scenario | run | exit | outcomes | attempts | no answer in outage | outages | wall |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        for r in result.runs:
            outcomes = " ".join(f"{k} {v}" for k, v in sorted(r.outcomes.items()) if v)
            outages = " ".join(f"{o['seconds']}s/{o['probes']}p" for o in r.outages) or "-"
            lines.append(
                f"| {result.scenario} | {r.label} | {r.code} | {outcomes} | {r.attempts} | "
                f"{r.no_answer_in_outage if r.outages else '-'} | {outages} | {r.wall:.2f} s |"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--only", choices=list(SCENARIOS), help="run only this scenario")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write every figure here")
    args = parser.parse_args(argv)

    results: list[ScenarioResult] = []
    started = time.monotonic()
    try:
        for name, (title, scenario) in SCENARIOS.items():
            if args.only and name != args.only:
                continue
            print(f"scenario {name}: {title}", flush=True)
            runs, checks = scenario()
            results.append(ScenarioResult(name, runs, checks))
    except BenchmarkError as exc:
        print(f"health: error: {exc}", file=sys.stderr)
        return 2
    checks = [c for r in results for c in r.checks]
    print(f"\n{runs_table(results)}\n\n{table(checks)}\n")
    print(f"total {time.monotonic() - started:.0f} s")
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1), encoding="utf-8")
    return 0 if all(c.passed for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
