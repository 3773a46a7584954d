"""`batcher retry`, `batcher demo`, `batcher simulate`, help texts and `python -m batcher`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from batcher.cli import _parser
from batcher.simulator import RunningSimulator
from tests.conftest import CliRun, read_results, write_csv

Cli = Callable[..., CliRun]
Sim = Callable[..., RunningSimulator]
HEADER = ("identifier", "status", "category", "summary", "ticket")


@pytest.fixture
def fast(tmp_path: Path) -> Path:
    path = tmp_path / "fast.toml"
    path.write_text("start_rate = 400.0\nbackoff_base = 0.01\nbackoff_max = 0.02\n")
    return path


def test_retry_turns_failed_and_deferred_rows_into_ok(
    tmp_path: Path, cli: Cli, simulator: Sim, token_env: str, fast: Path
) -> None:
    """retry sends again failed (5xx) and deferred rows, keeps row numbers and extras."""
    rows = [[f"id:{i}", "close", "Spam", "", f"T-{i}"] for i in range(1, 41)]
    rows.append(["email:unknown@x.com", "close", "", "", "T-404"])
    rows.append(["id:1", "close", "Spam", "", "T-dup"])
    source = write_csv(tmp_path / "in.csv", HEADER, rows)
    bad = simulator(error_rate=0.5, queue_share=0.3, queue_hold=60, seed=5)
    args = ("--base-url", bad.base_url, "--config", fast, "--max-attempts", "1")
    first = cli("run", source, *args, "--requeue-delay", "0", "--max-requeues", "0")
    assert first.code == 1
    before = read_results(tmp_path / "in.results.csv")
    outcomes = {r["outcome"] for r in before}
    assert {"failed", "deferred"} <= outcomes
    wanted = {
        r["row"]
        for r in before
        if r["outcome"] == "deferred" or (r["outcome"] == "failed" and r["http_status"] == "500")
    }

    good = simulator()
    second = cli(
        "retry", tmp_path / "in.results.csv", "--base-url", good.base_url, "--config", fast
    )
    assert second.code == 0, second.err
    after = read_results(tmp_path / "in.results.retry.csv")
    assert {r["row"] for r in after} == wanted
    assert {r["outcome"] for r in after} == {"ok"}
    # Original row numbers and extra columns, and nothing else carried over.
    by_row = {r["row"]: r for r in before}
    for r in after:
        assert r["ticket"] == by_row[r["row"]]["ticket"]
        assert r["identifier"] == by_row[r["row"]]["identifier"]
    assert list(after[0]) == [*list(before[0])]
    # The 404 and the duplicate are not sent again by default.
    assert "email:unknown@x.com" not in {r.identifier for r in good.simulator.requests}
    assert len(good.simulator.requests) == len(wanted)


def test_retry_outcomes_flag_selects_rows(
    tmp_path: Path, cli: Cli, simulator: Sim, token_env: str, fast: Path
) -> None:
    """--outcomes failed sends every failed row again, 404s included."""
    source = write_csv(tmp_path / "in.csv", HEADER, [["email:unknown@x.com", "close", "", "", "T"]])
    sim = simulator()
    assert cli("run", source, "--base-url", sim.base_url, "--config", fast).code == 1
    results = tmp_path / "in.results.csv"
    out = tmp_path / "again.csv"
    result = cli("retry", results, "--outcomes", "failed", "--base-url", sim.base_url, "--out", out)
    assert result.code == 1
    assert [r["outcome"] for r in read_results(out)] == ["failed"]
    assert len(sim.simulator.requests) == 2
    bad = cli("retry", results, "--outcomes", "okay", "--base-url", sim.base_url)
    assert bad.code == 2
    assert "okay" in bad.err


def test_retry_refuses_a_file_that_is_not_a_results_file(
    tmp_path: Path, cli: Cli, token_env: str
) -> None:
    """retry of a plain input file: exit 2 saying it is not a results file."""
    source = write_csv(tmp_path / "in.csv", HEADER, [["id:1", "open", "", "", ""]])
    result = cli("retry", source)
    assert result.code == 2
    assert "not a batcher results file" in result.err


def test_demo_runs_against_the_simulator_without_a_token(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """batcher demo needs no token: it prints the summary and where the results are."""
    monkeypatch.delenv("AELYST_API_TOKEN", raising=False)
    result = cli("demo", "--no-progress")
    assert result.code == 0, result.err
    assert "results written to" in result.out
    path = Path(result.out.split("results written to ")[1].strip())
    rows = read_results(path)
    assert len(rows) == 56
    assert {r["outcome"] for r in rows} >= {"ok", "invalid", "failed", "skipped"}


def test_demo_shows_its_first_results_as_a_table_and_keep_writes_them_there(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """batcher demo prints the first rows of its results (row, identifier, outcome,
    http_status, error) and where the file is; --keep DIR writes the file into DIR."""
    monkeypatch.delenv("AELYST_API_TOKEN", raising=False)
    keep = tmp_path / "kept" / "here"
    result = cli("demo", "--no-progress", "--keep", keep)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].split() == ["row", "identifier", "outcome", "http_status", "error"]
    assert set(lines[1]) <= {"-", " "}
    rows = read_results(keep / "demo.results.csv")
    for line, row in zip(lines[2:12], rows[:10], strict=True):
        assert line.split()[:4] == [
            row["row"],
            row["identifier"],
            row["outcome"],
            row["http_status"],
        ]
    assert "(10 of 56 rows)" in result.out
    assert result.out.rstrip().endswith(f"results written to {keep / 'demo.results.csv'}")
    assert "404 Contact not found" in result.out  # a row that is not ok shows why


def test_demo_keep_must_be_a_folder(cli: Cli, tmp_path: Path) -> None:
    """--keep naming a file: exit 2, nothing run."""
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    result = cli("demo", "--no-progress", "--keep", a_file)
    assert result.code == 2
    assert "--keep" in result.err


def test_every_command_has_help_text() -> None:
    """Every subcommand and every option has help text."""
    parser = _parser()
    subparsers = next(a for a in parser._actions if a.choices)
    assert isinstance(subparsers.choices, dict)
    assert set(subparsers.choices) == {"run", "retry", "report", "state", "simulate", "demo"}
    for name, command in subparsers.choices.items():
        assert command.description, name
        for action in command._actions:
            if action.dest not in ("help",):
                assert action.help, f"{name} {action.option_strings or action.dest}"


def test_python_dash_m_and_help_exit_0() -> None:
    """`python -m batcher --help` works and lists the commands and exit codes."""
    done = subprocess.run(
        [sys.executable, "-m", "batcher", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0
    for word in ("run", "retry", "simulate", "demo", "exit codes"):
        assert word in done.stdout


def test_help_does_not_import_pandas_or_httpx() -> None:
    """`batcher --help` stays fast: pandas, httpx (and openpyxl) are imported only when a run
    starts."""
    code = (
        "import sys, contextlib, io\n"
        "from batcher.cli import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['--help'])\n"
        "print(sorted(m for m in ('pandas', 'httpx', 'tqdm', 'openpyxl') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        stdin=subprocess.DEVNULL,
    )
    assert done.stdout.strip() == "[]"


def test_simulate_bad_flag_value_exits_2(cli: Cli) -> None:
    """batcher simulate with an impossible value: exit 2 with a message, no traceback."""
    result = cli("simulate", "--error-rate", "2")
    assert result.code == 2
    assert "error_rate" in result.err


def test_retry_replays_later_rows_of_the_same_contact_in_file_order(
    tmp_path: Path, cli: Cli, simulator: Sim, token_env: str, fast: Path
) -> None:
    """Row 1 (open) deferred, row 2 (close) ok for the same contact: retry sends both, in file
    order, so the contact ends closed as the file says, not open."""
    results = tmp_path / "in.results.csv"
    with results.open("w", encoding="utf-8") as file:
        file.write(
            "row,identifier,status,category,summary,outcome,http_status,contact_id,attempts,error,"
            "ticket\n1,id:7,open,,,deferred,449,,6,still in queue,T-1\n"
            "2,id:7,close,,,ok,200,7,1,,T-2\n"
        )
    sim = simulator()
    result = cli("retry", results, "--base-url", sim.base_url, "--config", fast)
    assert result.code == 0, result.err
    assert [r.body for r in sim.simulator.requests] == [{"status": "open"}, {"status": "close"}]
    assert sim.simulator.statuses["id:7"] == "closed"
    assert [r["row"] for r in read_results(tmp_path / "in.results.retry.csv")] == ["1", "2"]
