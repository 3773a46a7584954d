"""Nightly-job features: --max-duration, --summary-json, --log-file/--redact, --quiet, the plan."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from batcher.attemptlog import redact
from batcher.simulator import RunningSimulator
from tests.conftest import TOKEN, CliRun, Receiver, read_results, write_csv

Cli = Callable[..., CliRun]
Sim = Callable[..., RunningSimulator]
HEADER = ("identifier", "status")


def cron_run(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """batcher as cron runs it: no terminal, no stdin, output captured."""
    env = {**os.environ, "AELYST_API_TOKEN": TOKEN}
    return subprocess.run(
        [sys.executable, "-m", "batcher", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_deadline_stops_writes_matching_summary_and_resumes(tmp_path: Path, simulator: Sim) -> None:
    """A cron-style run past its --max-duration stops at the deadline (exit 1), writes a summary
    JSON that matches the results file, and the same command resumes to completion.

    The deadline's timing (no row taken after it, the grace period, each row sent once over
    the two runs) is proven in virtual time in tests/test_lifecycle.py; this run is kept small.
    """
    rows_in = 60
    sim = simulator()
    rows_data = [[f"id:{i}", "close"] for i in range(1, rows_in + 1)]
    source = write_csv(tmp_path / "in.csv", HEADER, rows_data)
    summary_path = tmp_path / "summary.json"
    # At the default start pace (5/s) the 60 rows would take several seconds; 1 s cuts them.
    args = ["run", str(source), "--base-url", sim.base_url, "--rate", "40", "--concurrency", "2"]
    args += ["--max-duration", "1s", "--summary-json", str(summary_path)]
    first = cron_run(args)
    assert first.returncode == 1, first.stderr
    assert "deadline" in first.stderr
    assert "\r" not in first.stderr  # no progress bar without a terminal
    rows = read_results(tmp_path / "in.results.csv")
    assert [int(r["row"]) for r in rows] == list(range(1, rows_in + 1))
    counts = Counter(r["outcome"] for r in rows)
    assert 0 < counts["ok"] < rows_in
    assert {r["error"] for r in rows if r["outcome"] == "skipped"} <= {
        "not sent: deadline",
        "interrupted while in flight (the call may have been applied)",
    }
    summary = json.loads(summary_path.read_text())
    assert summary["exit_code"] == 1
    assert summary["outcomes"] == {o: counts.get(o, 0) for o in summary["outcomes"]}
    assert summary["rows"] == rows_in
    assert summary["http_statuses"] == {"200": sim.simulator.count(200)}
    assert summary["stopped"] == "not sent: deadline"
    assert summary["input"] == str(source)
    assert summary["results"] == str(tmp_path / "in.results.csv")
    for key in ("started_at", "ended_at", "elapsed_seconds", "rows_per_second"):
        assert summary[key]
    assert "id:1" not in summary_path.read_text()  # no row data

    fast = tmp_path / "fast.toml"
    fast.write_text("start_rate = 400.0\n")
    second = cron_run(["run", str(source), "--base-url", sim.base_url, "--rate", "400",
                       "--config", str(fast), "--summary-json", str(summary_path)])  # fmt: skip
    assert second.returncode == 0, second.stderr
    rows = read_results(tmp_path / "in.results.csv")
    assert {r["outcome"] for r in rows} == {"ok"}
    summary = json.loads(summary_path.read_text())
    assert summary["exit_code"] == 0
    assert summary["outcomes"]["ok"] == rows_in
    assert summary["resumed"] == counts["ok"]


def test_log_file_has_a_line_per_attempt_and_redacts(
    tmp_path: Path, cli: Cli, simulator: Sim, token_env: str
) -> None:
    """--log-file writes one JSON line per request; --redact hides emails and phones stably."""
    sim = simulator(queue_share=1.0, queue_hold=0.1)
    rows = [["email:ana@x.com", "close"], ["phone:+60121233112", "open"], ["id:9", "open"]]
    source = write_csv(tmp_path / "in.csv", HEADER, rows)
    log = tmp_path / "attempts.jsonl"
    args = ("--base-url", sim.base_url, "--requeue-delay", "0.15", "--log-file", log, "--redact")
    result = cli("run", source, *args)
    assert result.code == 0, result.err
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == len(sim.simulator.requests)
    assert {line["http_status"] for line in lines} == {449, 200}
    first = lines[0]
    assert set(first) == {
        "time", "row", "identifier", "attempt", "http_status", "latency_ms", "pace", "error",
        "probe",
    }  # fmt: skip
    text = log.read_text()
    assert "ana@x.com" not in text
    assert "60121233112" not in text
    assert TOKEN not in text
    assert redact("email:ana@x.com") in {line["identifier"] for line in lines}
    assert "id:9" in {line["identifier"] for line in lines}
    assert max(line["attempt"] for line in lines if line["row"] == 3) >= 2


def test_quiet_prints_one_line(tmp_path: Path, cli: Cli, simulator: Sim, token_env: str) -> None:
    """--quiet: stderr is the one-line summary only, stdout is empty."""
    sim = simulator()
    source = write_csv(tmp_path / "in.csv", HEADER, [["id:1", "open"], ["id:2", "open"]])
    result = cli("run", source, "--base-url", sim.base_url, "--quiet")
    assert result.code == 0
    assert result.out == ""
    assert result.err.count("\n") == 1
    assert result.err.startswith("batcher: 2 rows in")


def test_plan_is_printed_before_sending_and_warns_of_a_short_deadline(
    tmp_path: Path, cli: Cli, simulator: Sim, token_env: str
) -> None:
    """The plan counts rows to send, invalid rows and duplicates; it warns of a short deadline."""
    sim = simulator()
    rows = [["id:1", "open"], ["id:1", "open"], ["bad", "open"], ["id:2", "close"]]
    source = write_csv(tmp_path / "in.csv", HEADER, rows)
    args = ("--base-url", sim.base_url, "--rate", "1", "--max-duration", "1s")
    result = cli("run", source, *args)
    assert "plan: 2 rows to send of 4 (1 invalid, 1 duplicates)" in result.err
    assert "at most 1/s" in result.err
    assert "warning: --max-duration 1s is shorter than the estimate (2s)" in result.err


def test_summary_json_on_a_run_that_cannot_start(tmp_path: Path, cli: Cli) -> None:
    """Exit 2 still writes --summary-json, with the exit code and the error."""
    summary_path = tmp_path / "s.json"
    result = cli("run", tmp_path / "missing.csv", "--summary-json", summary_path)
    assert result.code == 2
    data = json.loads(summary_path.read_text())
    assert data["exit_code"] == 2
    assert "missing.csv" in data["error"]


@pytest.mark.parametrize("text", ["45x", "m", "-5", "1h30"])
def test_bad_max_duration_exits_2(tmp_path: Path, cli: Cli, text: str) -> None:
    """A --max-duration that is not a duration: exit 2 naming the value."""
    source = write_csv(tmp_path / "in.csv", HEADER, [["id:1", "open"]])
    result = cli("run", source, "--dry-run", f"--max-duration={text}")
    assert result.code == 2
    assert repr(text) in result.err


def test_the_readme_cron_line_two_nights(
    tmp_path: Path, cli: Cli, simulator: Sim, token_env: str, receiver: Receiver
) -> None:
    """The README's nightly job, two nights: the second sends only the 150 changed or new rows
    and exits 0; each night POSTs once; the metrics, the summary JSON and `batcher report` on
    the results all give the counts the run printed."""
    sim = simulator()
    job = tmp_path / "cleanup.toml"
    job.write_text(f'start_rate = 500.0\nrate = 500.0\nbase_url = "{sim.base_url}"\n')
    header = ("identifier", "status", "category")
    first = [[f"id:{n}", "close" if n % 2 else "open", "Spam" if n % 2 else ""]
             for n in range(1, 301)]  # fmt: skip
    second = [list(r) for r in first]
    for n in range(3, 301, 6):  # 50 contacts flip: close to open, open to close
        second[n - 1] = [f"id:{n}", "open", ""] if n % 2 else [f"id:{n}", "close", "Spam"]
    second += [[f"id:{n}", "close", "Spam"] for n in range(301, 401)]
    cron = ["--config", job, "--out", tmp_path / "spam.results.csv", "--state",
            tmp_path / "spam.state", "--skip-done-within", "7d", "--notify", receiver.url,
            "--metrics-file", tmp_path / "batcher.prom", "--summary-json",
            tmp_path / "spam.summary.json", "--quiet"]  # fmt: skip
    source = tmp_path / "spam.csv"
    write_csv(source, header, first)
    night_one = cli("run", source, *cron)
    assert night_one.code == 0, night_one.err
    write_csv(source, header, second)
    night_two = cli("run", source, *cron)
    assert night_two.code == 0, night_two.err
    assert sim.simulator.count(200) == 300 + 150
    assert len(receiver.posts) == 2
    posted = json.loads(receiver.posts[1][1])
    assert posted["text"] == night_two.err.strip()
    assert posted["exit_code"] == 0
    assert posted["outcomes"] == {"ok": 150, "invalid": 0, "failed": 0, "deferred": 0,
                                  "skipped": 250}  # fmt: skip
    assert posted["already_done"] == 250
    assert all(TOKEN not in json.dumps(h) + b.decode() for h, b in receiver.posts)

    metrics = (tmp_path / "batcher.prom").read_text()
    rows = dict(re.findall(r'batcher_rows\{outcome="(\w+)"\} ([0-9.]+)', metrics))
    assert {k: int(float(v)) for k, v in rows.items()} == posted["outcomes"]
    assert "batcher_exit_code 0.0" in metrics
    summary = json.loads((tmp_path / "spam.summary.json").read_text())
    assert summary["notify"]["delivered"] is True

    report = cli("report", tmp_path / "spam.results.csv")
    assert report.code == 0
    assert "400 rows: ok 150 · invalid 0 · failed 0 · deferred 0 · skipped 250 " in report.out
    assert "(already done 250)" in report.out
    assert "# nothing to do" in report.out
