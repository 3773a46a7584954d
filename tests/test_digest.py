"""`batcher report`: a results file's counts, its failures grouped by cause, what to run next."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from batcher import Outcome, Reason, Settings, run_batch
from batcher.digest import digest
from batcher.report import outcome_counts, summary_lines
from batcher.simulator import RunningSimulator
from batcher.testing import FakeClock, SimulatorConfig, simulated_transport
from tests.conftest import TOKEN, CliRun, write_csv

Cli = Callable[..., CliRun]
HEADER = ("identifier", "status", "category", "summary")


def troubled(path: Path) -> Path:
    """30 unknown contacts (404), 12 ids a spreadsheet broke, 3 bad statuses, a duplicate,
    and 20 ordinary closes; in an order that mixes them."""
    rows: list[tuple[str, str, str, str]] = []
    for n in range(1, 21):
        rows.append((f"id:{n}", "close", "Spam", ""))
        rows.append((f"email:unknown{n}@example.com", "close", "Spam", ""))
    rows += [(f"email:unknown{n}@example.com", "open", "", "") for n in range(21, 31)]
    rows += [(f"phone:6.0{n}E+10", "close", "", "") for n in range(12)]
    rows += [(f"id:{n}", "shut", "", "") for n in range(100, 103)]
    rows.append(("id:1", "close", "Spam", ""))  # duplicate of row 1
    return write_csv(path, HEADER, rows)


def test_report_groups_the_rows_that_are_not_ok_by_cause(tmp_path: Path) -> None:
    """Counts equal the run's summary; the 30 refusals, 12 broken ids and 3 bad statuses are
    three causes, most frequent first, each with its count and first five rows, the row's own
    values masked; next steps name retry --outcomes failed and the invalid rows."""
    clock = FakeClock()
    out = tmp_path / "in.results.csv"
    summary = run_batch(troubled(tmp_path / "in.csv"), out=out, token=TOKEN, clock=clock,
                        transport=simulated_transport(SimulatorConfig(), clock=clock))  # fmt: skip
    found = digest(out)
    assert found.outcomes == summary.outcomes
    assert found.reasons == summary.reasons
    assert found.rows == 66
    assert found.last_http == {"200": 20, "404": 30, "": 16}
    assert [(c.count, c.outcome, c.reason) for c in found.causes] == [
        (30, Outcome.FAILED, Reason.REFUSED),
        (12, Outcome.INVALID, Reason.INVALID),
        (3, Outcome.INVALID, Reason.INVALID),
    ]
    assert found.causes[0].rows == [2, 4, 6, 8, 10]
    assert found.causes[0].message == "404 Contact not found"
    assert found.causes[1].rows == [51, 52, 53, 54, 55]
    assert found.causes[1].message.startswith("identifier: '…' looks like a number")
    assert found.causes[2].message.startswith("status: '…' is not one of open, close")
    text = "\n".join(found.lines())
    assert summary_lines(summary)[1].strip() in text
    assert "rows 2, 4, 6, 8, 10 and 25 more" in text
    assert "6.00E+10" not in text
    assert "unknown" not in text
    steps = found.next_steps()
    assert any("--outcomes failed" in step for step in steps)
    assert any("invalid rows (15)" in step for step in steps)
    assert not any(step.startswith("batcher retry") and "--outcomes" not in step for step in steps)


def test_cli_report_prints_the_runs_counts_and_json(
    tmp_path: Path, cli: Cli, simulator: Callable[..., RunningSimulator], token_env: str
) -> None:
    """`batcher report` prints the very counts line the run printed; --json holds the same
    counts, the causes and next steps, and says whether all is ok."""
    sim = simulator()
    fast = tmp_path / "fast.toml"
    fast.write_text("start_rate = 500.0\n")
    source = troubled(tmp_path / "in.csv")
    ran = cli("run", source, "--base-url", sim.base_url, "--config", fast, "--rate", "500")
    assert ran.code == 1, ran.err
    counts = next(line for line in ran.err.splitlines() if line.startswith("  ok "))
    report = cli("report", tmp_path / "in.results.csv")
    assert report.code == 0, report.err
    assert f"  66 rows: {counts.strip()}" in report.out
    as_json = cli("report", tmp_path / "in.results.csv", "--json")
    data = json.loads(as_json.out)
    assert data["outcomes"] == {"ok": 20, "invalid": 15, "failed": 30, "deferred": 0, "skipped": 1}
    assert data["all_ok"] is False
    assert [c["count"] for c in data["not_ok"]] == [30, 12, 3]
    assert data["last_http_statuses"] == {"200": 20, "404": 30, "none": 16}
    assert TOKEN not in report.out + as_json.out


def test_report_on_a_stopped_run_suggests_retry(tmp_path: Path) -> None:
    """A run stopped at its deadline: the rows not sent are one cause, `batcher retry` is the
    next step, and the journal left beside the file is pointed out."""
    source = write_csv(tmp_path / "in.csv", HEADER,
                       [(f"id:{n}", "close", "Spam", "") for n in range(1, 101)])  # fmt: skip
    clock = FakeClock()
    out = tmp_path / "in.results.csv"
    summary = run_batch(source, out=out, settings=Settings(rate=10, max_duration=2.0),
                        token=TOKEN, clock=clock,
                        transport=simulated_transport(SimulatorConfig(), clock=clock))  # fmt: skip
    assert summary.stop_reason is Reason.NOT_SENT_DEADLINE
    found = digest(out)
    assert found.outcomes == summary.outcomes
    assert found.causes[0].reason is Reason.NOT_SENT_DEADLINE
    assert found.causes[0].message == "not sent: deadline"
    assert found.worth_retrying == summary.outcomes[Outcome.SKIPPED]
    assert found.journal
    steps = found.next_steps()
    assert steps[0].startswith("# in.results.csv.journal is still there")
    assert steps[1].startswith(f"batcher retry {out} ")


def test_report_on_an_all_ok_file(tmp_path: Path, cli: Cli) -> None:
    """A file whose rows are all ok (or skipped on purpose) reports nothing to do."""
    results = tmp_path / "r.csv"
    write_csv(results, ("row", "identifier", "status", "category", "summary", "outcome",
                        "http_status", "contact_id", "attempts", "error", "ticket"),
              [("1", "id:1", "open", "", "", "ok", "200", "1", "1", "", "T-1"),
               ("2", "id:1", "open", "", "", "skipped", "", "", "0", "duplicate of row 1", "T-2"),
               ("3", "id:2", "open", "", "", "skipped", "", "", "0",
                "already done on 2026-11-28 02:14 UTC", "T-3")])  # fmt: skip
    report = cli("report", results)
    assert report.code == 0
    assert "ok 1 · invalid 0 · failed 0 · deferred 0 · skipped 2 (duplicates 1) (already " in (
        report.out
    )
    assert "every row is ok or was skipped on purpose" in report.out
    assert "# nothing to do" in report.out


def test_report_refuses_a_file_that_is_not_a_results_file(tmp_path: Path, cli: Cli) -> None:
    """An input file, or no file at all: exit 2 naming it."""
    source = write_csv(tmp_path / "in.csv", HEADER, [("id:1", "open", "", "")])
    refused = cli("report", source)
    assert refused.code == 2
    assert "is not a batcher results file" in refused.err
    missing = cli("report", tmp_path / "none.csv")
    assert missing.code == 2
    assert "none.csv" in missing.err


def test_counts_line_is_shared_with_the_run_summary() -> None:
    """The report and the run's summary word their counts with one function."""
    outcomes = dict.fromkeys(Outcome, 0) | {Outcome.OK: 150, Outcome.SKIPPED: 250}
    reasons = dict.fromkeys(Reason, 0) | {Reason.SENT: 150, Reason.ALREADY_DONE: 250}
    assert outcome_counts(outcomes, reasons) == (
        "ok 150 · invalid 0 · failed 0 · deferred 0 · skipped 250 (already done 250)"
    )
