"""Run-level health in virtual time: an outage holds the run and probes, then stops it
resumably; refusals that hit every row stop it; scattered faults and 404s do not."""

from __future__ import annotations

import json
import math
import random
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from batcher import (
    ApiUnreachable,
    Outcome,
    Reason,
    RunSummary,
    Settings,
    TooManyErrors,
    run_batch,
)
from batcher.attemptlog import JsonAttemptLog
from batcher.simtransport import SimulatedTransport
from batcher.testing import FakeClock, SimulatorConfig, simulated_transport
from tests.conftest import TOKEN, CliRun, read_results, write_csv

HEADER = ("identifier", "status", "category", "summary")


def closes(path: Path, rows: int, category: str = "Spam") -> Path:
    return write_csv(path, HEADER, [(f"id:{n}", "close", category, "") for n in range(1, rows + 1)])


def run(
    source: Path, out: Path, clock: FakeClock, config: SimulatorConfig, **settings: Any
) -> tuple[RunSummary, SimulatedTransport]:
    """One run of ``source`` against a simulated API of ``config``, in virtual time."""
    transport = simulated_transport(config, clock=clock)
    summary = run_batch(
        source,
        out=out,
        settings=Settings(**settings),
        token=TOKEN,
        clock=clock,
        transport=transport,
        rng=random.Random(7),  # with the seeded simulator and virtual time: the same every run
    )
    return summary, transport


def test_api_down_from_the_start_stops_after_outage_wait_and_resumes(tmp_path: Path) -> None:
    """Down from the start with outage_wait 10 s: ApiUnreachable well inside 40 s after at
    most 30 connection attempts, no row failed, every row skipped as not sent for the
    outage; the same call finishes every row once the API answers."""
    source = closes(tmp_path / "in.csv", 2000)
    out = tmp_path / "out.csv"
    clock = FakeClock()
    down = simulated_transport(SimulatorConfig(down_after=0, down_for=math.inf), clock=clock)
    with pytest.raises(ApiUnreachable) as stop:
        run_batch(source, out=out, settings=Settings(outage_wait=10), token=TOKEN,
                  clock=clock, transport=down)  # fmt: skip
    assert clock.now() < 40
    assert len(down.api.refusals) <= 30
    assert "unreachable since" in str(stop.value)
    assert "Connection refused" in str(stop.value)
    summary = stop.value.summary
    assert isinstance(summary, RunSummary)
    assert summary.outcomes[Outcome.FAILED] == 0
    assert summary.reasons[Reason.NOT_SENT_OUTAGE] == 2000
    assert summary.stop_reason is Reason.NOT_SENT_OUTAGE
    assert len(summary.outages) == 1
    assert summary.outages[0].end == ""
    rows = read_results(out)
    assert {r["outcome"] for r in rows} == {"skipped"}
    assert len(rows) == 2000

    up = simulated_transport(SimulatorConfig(), clock=clock)
    again = run_batch(source, out=out, settings=Settings(rate=500), token=TOKEN, clock=clock,
                      transport=up)  # fmt: skip
    assert again.outcomes[Outcome.OK] == 2000
    assert up.count(200) == 2000


def test_a_15_s_outage_holds_the_run_and_costs_no_row(tmp_path: Path) -> None:
    """A 15 s outage in a 2,000-row run at 50/s: no row fails, at most 25 connection
    attempts during it, and the run ends at most 20 s after the same run without it."""
    source = closes(tmp_path / "in.csv", 2000)
    plain, _ = run(source, tmp_path / "a.csv", FakeClock(), SimulatorConfig(shared_limit=50))
    clock = FakeClock()
    summary, transport = run(
        source,
        tmp_path / "b.csv",
        clock,
        SimulatorConfig(shared_limit=50, down_after=500, down_for=15),
        max_attempts=2,  # rows caught in the outage must not spend these
    )
    assert summary.outcomes[Outcome.OK] == 2000
    assert 0 < len(transport.api.refusals) <= 25
    assert summary.elapsed <= plain.elapsed + 20
    assert len(summary.outages) == 1
    outage = summary.outages[0]
    assert outage.end
    assert 15 <= outage.seconds <= 20


def test_probes_go_one_at_a_time_at_a_growing_interval(tmp_path: Path) -> None:
    """During an outage one probe goes at a time, about 1 s after it is seen, then each
    wait a fifth longer than the last, at most 30 s, until outage_wait has passed since the
    API stopped answering; the attempt log marks each probe."""
    source = closes(tmp_path / "in.csv", 50)
    clock = FakeClock()
    transport = simulated_transport(SimulatorConfig(down_after=0, down_for=math.inf), clock=clock)
    log_path = tmp_path / "attempts.jsonl"
    log = JsonAttemptLog(log_path)
    with pytest.raises(ApiUnreachable):
        run_batch(source, out=tmp_path / "out.csv", settings=Settings(outage_wait=120),
                  token=TOKEN, clock=clock, transport=transport, attempt_log=log)  # fmt: skip
    log.close()
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    probes = [line for line in lines if line["probe"]]
    refusals = transport.api.refusals
    probe_times = refusals[len(refusals) - len(probes) :]
    gaps = [later - earlier for earlier, later in pairwise(probe_times)]
    waits = [min(30.0, 1.2**n) for n in range(1, len(probes))]  # 1.2, 1.44, ... 30, 30
    assert gaps == pytest.approx(waits, abs=0.01)
    next_wait = min(30.0, 1.2 ** len(probes))
    assert probe_times[-1] + next_wait > refusals[0] + 120  # no probe left before the stop
    assert len(probes) >= 15
    assert probe_times[0] <= 3
    assert clock.now() == pytest.approx(refusals[0] + 120, abs=0.01)


def test_outage_wait_zero_stops_as_soon_as_the_outage_is_seen(tmp_path: Path) -> None:
    """--outage-wait 0: the run stops when the outage is recognised, without a probe."""
    source = closes(tmp_path / "in.csv", 100)
    clock = FakeClock()
    transport = simulated_transport(SimulatorConfig(down_after=0, down_for=math.inf), clock=clock)
    with pytest.raises(ApiUnreachable) as stop:
        run_batch(source, out=tmp_path / "out.csv", settings=Settings(outage_wait=0),
                  token=TOKEN, clock=clock, transport=transport)  # fmt: skip
    # Five contacts in a row must go unanswered; retries of the first ones (after their
    # jittered backoff) take turns between them at the starting pace of 5/s.
    assert len(transport.api.refusals) <= 15
    summary = stop.value.summary
    assert isinstance(summary, RunSummary)
    assert summary.outages[0].probes == 0


def test_every_close_refused_alike_stops_after_max_same_errors(tmp_path: Path) -> None:
    """Every close refused with the same 400: stopped after at most 100 requests, quoting
    the server's answer; the rest skipped for that reason, and the journal kept."""
    source = closes(tmp_path / "in.csv", 1000, category="")
    clock = FakeClock()
    transport = simulated_transport(SimulatorConfig(require_category=True), clock=clock)
    with pytest.raises(TooManyErrors) as stop:
        run_batch(source, out=tmp_path / "out.csv", settings=Settings(), token=TOKEN,
                  clock=clock, transport=transport)  # fmt: skip
    assert len(transport.requests) <= 100
    assert str(stop.value) == (
        'stopped: the last 50 rows were all refused with "400 Validation error."; nothing '
        "else was sent. Fix the cause, then run the same command to send the rest, or "
        "batcher retry --outcomes failed"
    )
    summary = stop.value.summary
    assert isinstance(summary, RunSummary)
    assert summary.reasons[Reason.NOT_SENT_SAME_ERRORS] == 1000 - summary.outcomes[Outcome.FAILED]
    assert (tmp_path / "out.csv.journal").exists()


@pytest.mark.parametrize(
    ("limit", "most_failed"),
    [("30", 30 + 8), ("20%", 120)],
)
def test_max_errors_stops_at_a_count_or_a_share(
    tmp_path: Path, limit: str, most_failed: int
) -> None:
    """--max-errors N stops once N rows are refused or failed; P% once they are P % of the
    rows answered (and at least 100 were), whatever the refusals' wording."""
    rng = random.Random(5)
    rows = [
        (f"email:unknown{n}@x.com" if rng.random() < 0.4 else f"id:{n}", "close", "Spam", "")
        for n in range(1, 1001)
    ]
    source = write_csv(tmp_path / "in.csv", HEADER, rows)
    clock = FakeClock()
    transport = simulated_transport(SimulatorConfig(), clock=clock)
    with pytest.raises(TooManyErrors) as stop:
        run_batch(source, out=tmp_path / "out.csv", settings=Settings(max_errors=limit, rate=200),
                  token=TOKEN, clock=clock, transport=transport)  # fmt: skip
    summary = stop.value.summary
    assert isinstance(summary, RunSummary)
    assert summary.stop_reason is Reason.NOT_SENT_MAX_ERRORS
    assert summary.outcomes[Outcome.FAILED] <= most_failed
    assert summary.outcomes[Outcome.SKIPPED] > 0
    assert "--max-errors" in str(stop.value)


def test_scattered_faults_and_404s_are_not_a_run_fault(tmp_path: Path) -> None:
    """5 % 500s, 2 % dropped connections and 10 % random 404s at the defaults: every row
    gets its own outcome (ok, or failed for the 404s), no outage and no stop."""
    rng = random.Random(1)
    rows = [
        (f"email:unknown{n}@x.com" if rng.random() < 0.1 else f"id:{n}", "close", "Spam", "")
        for n in range(1, 2001)
    ]
    source = write_csv(tmp_path / "in.csv", HEADER, rows)
    unknown = sum(1 for row in rows if row[0].startswith("email:unknown"))
    summary, transport = run(
        source,
        tmp_path / "out.csv",
        FakeClock(),
        SimulatorConfig(shared_limit=20, error_rate=0.05, drop_rate=0.02, seed=4),
    )
    assert summary.stop_reason is None
    assert summary.outages == []
    assert summary.outcomes[Outcome.OK] == 2000 - unknown
    assert summary.outcomes[Outcome.FAILED] == unknown == summary.reasons[Reason.REFUSED]
    assert transport.count(500) > 0
    assert transport.count(0) > 0


def test_cli_outage_exit_3_message_and_summary_json(
    tmp_path: Path, cli: object, token_env: str, simulator: object
) -> None:
    """Through the CLI against a real server that is down: exit 3, the message says since
    when and the last error, and the summary JSON records the outage and the stop."""
    sim = simulator(down_after=0, down_for=math.inf)  # type: ignore[operator]
    source = closes(tmp_path / "in.csv", 30)
    summary_path = tmp_path / "summary.json"
    done: CliRun = cli(  # type: ignore[operator]
        "run", source, "--base-url", sim.base_url, "--outage-wait", "2s",
        "--summary-json", summary_path, "--no-progress",
    )  # fmt: skip
    assert done.code == 3
    assert "API unreachable since" in done.err
    assert "stopped: the API has been unreachable since" in done.err
    assert "to resume: batcher" in done.err
    data = json.loads(summary_path.read_text())
    assert data["exit_code"] == 3
    assert data["stop_reason"] == "not_sent_outage"
    assert len(data["outages"]) == 1
    assert data["outages"][0]["start"]
    assert data["reasons"]["not_sent_outage"] == 30
    assert [r["outcome"] for r in read_results(tmp_path / "in.results.csv")] == ["skipped"] * 30


def test_cli_identical_refusals_exit_3_with_the_servers_words(
    tmp_path: Path, cli: object, token_env: str, simulator: object
) -> None:
    """Through the CLI against a real server that refuses every close without a category:
    exit 3, and the message quotes the server's answer and the count."""
    sim = simulator(require_category=True)  # type: ignore[operator]
    source = closes(tmp_path / "in.csv", 120, category="")
    done: CliRun = cli(  # type: ignore[operator]
        "run", source, "--base-url", sim.base_url, "--rate", "400", "--max-same-errors", "20",
        "--no-progress",
    )  # fmt: skip
    assert done.code == 3
    assert 'the last 20 rows were all refused with "400 Validation error."' in done.err
    assert sim.simulator.count(400) <= 20 + 8
