""".xlsx input: every cell as the text a person sees, and everything else as for a CSV
(validation, extra columns, resume, retry, --failed-out), end to end against the simulator."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from datetime import date, datetime, time
from pathlib import Path

import pytest
from openpyxl import Workbook

from batcher.simulator import RunningSimulator
from batcher.workbook import cell_text
from tests.conftest import TOKEN, CliRun, read_results

Cli = Callable[..., CliRun]
Sim = Callable[..., RunningSimulator]
HEADER = ("identifier", "status", "category", "summary", "ticket", "phone", "opened", "note")


@pytest.fixture
def fast(tmp_path: Path) -> Path:
    path = tmp_path / "fast.toml"
    path.write_text("start_rate = 400.0\nbackoff_base = 0.01\nbackoff_max = 0.02\n")
    return path


def write_workbook(
    path: Path,
    rows: Sequence[Sequence[object]],
    *,
    header: Sequence[str] = HEADER,
    **sheets: object,
) -> Path:
    """A workbook whose first sheet holds ``header`` and ``rows``, values typed as given
    (numbers as numbers, dates as dates, None as an empty cell)."""
    book = Workbook()
    first = book.active
    assert first is not None
    first.title = "Contacts"
    first.append(list(header))
    for row in rows:
        first.append(list(row))
    for title, content in sheets.items():
        extra = book.create_sheet(title)
        assert isinstance(content, list)
        for row in content:
            extra.append(list(row))
    book.save(path)
    return path


def forty_rows() -> list[list[object]]:
    """40 valid rows; the extra columns hold numbers typed as numbers, a date, an empty cell."""
    return [
        [f"id:{n}", "close", "Spam", "", 124, 60121233113, date(2024, 3, 1), None]
        for n in range(1, 41)
    ]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        pytest.param(60121233113, "60121233113", id="int"),
        pytest.param(60121233113.0, "60121233113", id="whole-float"),
        pytest.param(123.0, "123", id="no-dot-zero"),
        pytest.param(6.01e10, "60100000000", id="no-scientific"),
        pytest.param(1e20, "100000000000000000000", id="big-whole-float"),
        pytest.param(0.125, "0.125", id="fraction"),
        pytest.param(1e-05, "0.00001", id="small-fraction"),
        pytest.param(-2.5, "-2.5", id="negative"),
        pytest.param(datetime(2024, 3, 1), "2024-03-01", id="midnight-is-a-date"),
        pytest.param(datetime(2024, 3, 1, 9, 30), "2024-03-01 09:30:00", id="datetime"),
        pytest.param(date(2024, 3, 1), "2024-03-01", id="date"),
        pytest.param(time(9, 30), "09:30:00", id="time"),
        pytest.param(True, "TRUE", id="true"),
        pytest.param(False, "FALSE", id="false"),
        pytest.param(None, "", id="empty"),
        pytest.param("id:0012", "id:0012", id="text-as-is"),
    ],
)
def test_cell_text_is_what_a_person_sees(value: object, text: str) -> None:
    """Whole numbers without `.0` and never in scientific notation; dates as ISO dates."""
    assert cell_text(value) == text


def test_workbook_with_numbers_typed_as_numbers_runs_with_the_digits_intact(
    tmp_path: Path, cli: Cli, simulator: Sim, token_env: str, fast: Path
) -> None:
    """A 40-row workbook runs against the simulator, every row ok, and the results carry
    `124` and `60121233113` exactly, the date as an ISO date and the empty cell empty."""
    source = write_workbook(tmp_path / "contacts.xlsx", forty_rows())
    sim = simulator(token=TOKEN)
    result = cli("run", source, "--base-url", sim.base_url, "--config", fast, "--no-progress")
    assert result.code == 0, result.err
    rows = read_results(tmp_path / "contacts.results.csv")
    assert len(rows) == 40
    assert {r["outcome"] for r in rows} == {"ok"}
    assert list(rows[0])[-4:] == ["ticket", "phone", "opened", "note"]
    for r in rows:
        assert (r["ticket"], r["phone"], r["opened"], r["note"]) == (
            "124",
            "60121233113",
            "2024-03-01",
            "",
        )
    assert [r["row"] for r in rows] == [str(n) for n in range(1, 41)]
    assert len(sim.simulator.requests) == 40


def test_workbook_rows_are_validated_as_for_a_csv(
    tmp_path: Path, cli: Cli, simulator: Sim, token_env: str, fast: Path
) -> None:
    """A bad identifier or status in a workbook is `invalid`, never sent; a duplicate is
    skipped; a number in the identifier column is refused as it would be in a CSV."""
    rows: list[list[object]] = [
        ["id:1", "close", "Spam", "", 1, 2, None, None],
        ["id:1", "close", "Spam", "", 1, 2, None, None],
        ["id:2", "shut", "", "", 1, 2, None, None],
        [60121233113, "open", "", "", 1, 2, None, None],
        ["phone:+60121233113", "open", "", "", 1, 2, None, None],
    ]
    source = write_workbook(tmp_path / "in.xlsx", rows)
    sim = simulator(token=TOKEN)
    result = cli("run", source, "--base-url", sim.base_url, "--config", fast, "--no-progress")
    assert result.code == 1, result.err
    got = read_results(tmp_path / "in.results.csv")
    assert [r["outcome"] for r in got] == ["ok", "skipped", "invalid", "invalid", "ok"]
    assert got[3]["identifier"] == "60121233113"
    assert {r.identifier for r in sim.simulator.requests} == {"id:1", "phone:+60121233113"}


def test_retry_and_failed_out_work_on_a_workbook_run(
    tmp_path: Path, cli: Cli, simulator: Sim, token_env: str, fast: Path
) -> None:
    """--failed-out writes the rows to try again as CSV in the workbook's columns (numbers as
    typed), and `batcher retry` on the results turns them ok with their extras intact."""
    source = write_workbook(tmp_path / "contacts.xlsx", forty_rows())
    bad = simulator(token=TOKEN, error_rate=0.5, seed=3)
    again = tmp_path / "again.csv"
    first = cli(
        "run", source, "--base-url", bad.base_url, "--config", fast, "--no-progress",
        "--max-attempts", "1", "--max-same-errors", "0", "--failed-out", again,
    )  # fmt: skip
    assert first.code == 1, first.err
    results = tmp_path / "contacts.results.csv"
    failed = {r["identifier"] for r in read_results(results) if r["outcome"] == "failed"}
    assert failed
    retry_rows = read_results(again)
    assert list(retry_rows[0]) == list(HEADER)
    assert {r["identifier"] for r in retry_rows} == failed
    assert {(r["ticket"], r["phone"], r["opened"]) for r in retry_rows} == {
        ("124", "60121233113", "2024-03-01")
    }

    good = simulator(token=TOKEN)
    second = cli("retry", results, "--base-url", good.base_url, "--config", fast, "--no-progress")
    assert second.code == 0, second.err
    after = read_results(tmp_path / "contacts.results.retry.csv")
    assert {r["identifier"] for r in after} == failed
    assert {r["outcome"] for r in after} == {"ok"}
    assert {(r["ticket"], r["phone"]) for r in after} == {("124", "60121233113")}


def test_an_interrupted_workbook_run_resumes_and_a_changed_workbook_is_refused(
    tmp_path: Path, cli: Cli, simulator: Sim, token_env: str, fast: Path
) -> None:
    """Resume keys on the workbook's own hash: the same workbook sends only the rest; a
    changed one is refused (exit 2) until --restart."""
    source = write_workbook(tmp_path / "contacts.xlsx", forty_rows())
    args = ("--config", fast, "--no-progress", "--concurrency", "1")
    revoking = simulator(token=TOKEN, revoke_after=10)
    first = cli("run", source, "--base-url", revoking.base_url, *args)
    assert first.code == 3, first.err
    done = {
        r["row"] for r in read_results(tmp_path / "contacts.results.csv") if r["outcome"] == "ok"
    }
    assert len(done) == 10

    good = simulator(token=TOKEN)
    second = cli("run", source, "--base-url", good.base_url, *args)
    assert second.code == 0, second.err
    assert len(good.simulator.requests) == 30
    assert {r["outcome"] for r in read_results(tmp_path / "contacts.results.csv")} == {"ok"}

    # Complete: the same command sends nothing; --restart against a revoked token stops
    # part-way again, leaving a journal of this workbook.
    assert cli("run", source, "--base-url", good.base_url, *args).code == 0
    assert len(good.simulator.requests) == 30
    third = cli("run", source, "--base-url", revoking.base_url, *args, "--restart")
    assert third.code == 3
    write_workbook(source, forty_rows()[:39])
    changed = cli("run", source, "--base-url", good.base_url, *args)
    assert changed.code == 2
    assert "contacts.xlsx" in changed.err
    assert "--restart" in changed.err


def test_sheet_flag_reads_the_named_sheet(
    tmp_path: Path, cli: Cli, simulator: Sim, token_env: str, fast: Path
) -> None:
    """--sheet NAME reads that sheet; a name that is not there: exit 2 listing the sheets."""
    other = [["identifier", "status", "ticket"], ["id:77", "open", 5], ["id:78", "open", 6.0]]
    source = write_workbook(tmp_path / "in.xlsx", forty_rows(), Later=other)
    sim = simulator(token=TOKEN)
    result = cli(
        "run", source, "--sheet", "Later", "--base-url", sim.base_url, "--config", fast,
        "--no-progress",
    )  # fmt: skip
    assert result.code == 0, result.err
    rows = read_results(tmp_path / "in.results.csv")
    assert [(r["identifier"], r["ticket"]) for r in rows] == [("id:77", "5"), ("id:78", "6")]

    missing = cli("run", source, "--sheet", "Nope", "--dry-run")
    assert missing.code == 2
    assert "'Nope'" in missing.err
    assert "'Contacts', 'Later'" in missing.err


def test_the_whole_workbook_is_checked_before_the_first_request(
    tmp_path: Path, cli: Cli, simulator: Sim, token_env: str
) -> None:
    """A workbook without a status column, or not a workbook at all: exit 2 naming the
    workbook, nothing sent."""
    sim = simulator(token=TOKEN)
    source = write_workbook(tmp_path / "in.xlsx", [["id:1", 1]], header=("identifier", "ticket"))
    result = cli("run", source, "--base-url", sim.base_url, "--no-progress")
    assert result.code == 2
    assert "in.xlsx" in result.err
    assert "'status'" in result.err
    broken = tmp_path / "broken.xlsx"
    broken.write_text("identifier,status\nid:1,open\n")
    result = cli("run", broken, "--base-url", sim.base_url, "--no-progress")
    assert result.code == 2
    assert "broken.xlsx" in result.err
    assert sim.simulator.requests == []


def test_sheet_flag_on_a_csv_is_refused(tmp_path: Path, cli: Cli) -> None:
    """--sheet names a workbook's sheet: on a CSV input it is a usage error (exit 2)."""
    source = tmp_path / "in.csv"
    source.write_text("identifier,status\nid:1,open\n")
    result = cli("run", source, "--sheet", "Contacts", "--dry-run")
    assert result.code == 2
    assert "--sheet" in result.err


def test_without_the_excel_extra_a_workbook_gets_exit_2_naming_it(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No openpyxl installed: a .xlsx input exits 2 saying `pip install "batcher[excel]"`."""
    source = write_workbook(tmp_path / "in.xlsx", forty_rows())
    monkeypatch.setitem(sys.modules, "openpyxl", None)
    result = cli("run", source, "--dry-run")
    assert result.code == 2
    assert 'pip install "batcher[excel]"' in result.err
    assert "Traceback" not in result.err
