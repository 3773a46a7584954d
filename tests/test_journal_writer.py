"""The journal (outcomes on disk at once, read back in row order) and the atomic results file."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest

from batcher.journal import Journal, journal_path
from batcher.models import RESULT_COLUMNS, Outcome, Record, Result
from batcher.writer import result_row, write_results


def result(
    row: int,
    outcome: Outcome = Outcome.OK,
    *,
    identifier: str | None = None,
    extras: tuple[str, ...] = (),
    http_status: int | None = 200,
    contact_id: int | None = None,
    error: str = "",
) -> Result:
    """A result for one row with plausible values."""
    record = Record(row, identifier or f"id:{row}", "close", "Spam", "A bot", extras)
    return Result(record, outcome, http_status, contact_id, 1, error)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    """A fresh journal beside a results file in tmp_path, closed afterwards."""
    opened = Journal(journal_path(tmp_path / "out.csv"))
    yield opened
    opened.close()


def read_csv(path: Path) -> list[list[str]]:
    """Every row of a CSV file, as text."""
    with path.open(encoding="utf-8", newline="") as file:
        return list(csv.reader(file))


def test_journal_path_sits_beside_the_results_file(tmp_path: Path) -> None:
    """The journal of RESULTS.csv is RESULTS.csv.journal in the same folder."""
    assert journal_path(tmp_path / "r.csv") == tmp_path / "r.csv.journal"


@pytest.mark.parametrize(
    "order",
    [
        pytest.param([1, 2, 3, 4, 5], id="in-order"),
        pytest.param([5, 4, 3, 2, 1], id="reversed"),
        pytest.param([3, 1, 5, 2, 4], id="shuffled"),
    ],
)
def test_results_come_back_in_row_order(journal: Journal, order: list[int]) -> None:
    """Whatever order outcomes are recorded in, results() yields them by row, values intact."""
    recorded = {row: result(row, contact_id=row * 10, extras=(f"x{row}", "")) for row in order}
    for row in order:
        journal.record(recorded[row])
    back = list(journal.results())
    assert [r.row for r in back] == [1, 2, 3, 4, 5]
    assert back == [recorded[row] for row in range(1, 6)]
    assert list(journal.recorded_rows()) == [1, 2, 3, 4, 5]
    assert len(journal) == 5


def test_recording_a_row_twice_keeps_one_the_latest(journal: Journal) -> None:
    """Recording the same row again replaces it: one row, the last outcome."""
    journal.record(result(7, Outcome.SKIPPED, http_status=None, error="not sent: interrupted"))
    journal.record(result(7, Outcome.OK, contact_id=70))
    assert len(journal) == 1
    (only,) = journal.results()
    assert only.outcome is Outcome.OK
    assert only.contact_id == 70
    assert only.error == ""


def test_journal_survives_reopening(tmp_path: Path) -> None:
    """Outcomes and meta recorded before a close are there when the journal is opened again."""
    path = journal_path(tmp_path / "out.csv")
    first = Journal(path)
    first.record(result(2, Outcome.FAILED, http_status=404, error="404 Contact not found"))
    first.set_meta("input_sha256", "abc")
    first.close()
    again = Journal(path)
    try:
        assert [(r.row, r.outcome, r.http_status, r.error) for r in again.results()] == [
            (2, Outcome.FAILED, 404, "404 Contact not found")
        ]
        assert again.get_meta("input_sha256") == "abc"
        assert again.get_meta("absent") is None
    finally:
        again.close()


def test_journal_remove_deletes_its_files(tmp_path: Path) -> None:
    """remove() deletes the journal and SQLite's side files."""
    path = journal_path(tmp_path / "out.csv")
    opened = Journal(path)
    opened.record(result(1))
    opened.remove()
    assert list(tmp_path.iterdir()) == []


def test_writer_writes_result_columns_then_extra_columns(tmp_path: Path) -> None:
    """The header is RESULT_COLUMNS then the extras; None becomes an empty cell."""
    out = tmp_path / "out.csv"
    rows = [
        result(1, contact_id=11, extras=("T-1", "ann")),
        result(
            2, Outcome.FAILED, http_status=None, error="timeout: ReadTimeout", extras=("T-2", "")
        ),
    ]
    assert write_results(out, rows, ("ticket", "agent")) == 2
    header, first, second = read_csv(out)
    assert header == [*RESULT_COLUMNS, "ticket", "agent"]
    assert dict(zip(header, first, strict=True)) == {
        "row": "1",
        "identifier": "id:1",
        "status": "close",
        "category": "Spam",
        "summary": "A bot",
        "outcome": "ok",
        "http_status": "200",
        "contact_id": "11",
        "attempts": "1",
        "error": "",
        "ticket": "T-1",
        "agent": "ann",
    }
    assert dict(zip(header, second, strict=True))["http_status"] == ""
    assert dict(zip(header, second, strict=True))["contact_id"] == ""
    assert second[-2:] == ["T-2", ""]


def test_result_row_never_holds_none() -> None:
    """result_row turns missing status and contact id into "", never the text 'None'."""
    row = result_row(result(3, Outcome.INVALID, http_status=None, contact_id=None))
    assert None not in row
    assert "None" not in [str(cell) for cell in row]


def test_writer_round_trips_quotes_newlines_and_commas(tmp_path: Path) -> None:
    """Values with quotes, commas, CR/LF and non-ASCII read back exactly as written."""
    out = tmp_path / "out.csv"
    tricky = 'say "hi", then\nleave;\r\nok | café ☕'
    rows = [
        result(1, identifier="email:a,b@x.com", error=tricky, extras=(tricky, '"')),
        result(2, extras=("", ",")),
    ]
    write_results(out, rows, ("note", "other"))
    _, first, second = read_csv(out)
    assert first[1] == "email:a,b@x.com"
    assert first[RESULT_COLUMNS.index("error")] == tricky
    assert first[-2:] == [tricky, '"']
    assert second[-2:] == ["", ","]


def test_writer_with_no_results_writes_the_header_only(tmp_path: Path) -> None:
    """An empty run still writes a results file with its header."""
    out = tmp_path / "out.csv"
    assert write_results(out, [], ()) == 0
    assert read_csv(out) == [list(RESULT_COLUMNS)]


def test_writer_replaces_the_file_and_leaves_no_temp_file(tmp_path: Path) -> None:
    """Writing over an existing results file replaces it whole; no temporary file remains."""
    out = tmp_path / "out.csv"
    out.write_text("old contents\n", encoding="utf-8")
    write_results(out, [result(1)], ())
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]
    assert read_csv(out)[1][0] == "1"


def test_writer_leaves_the_old_file_untouched_when_results_fail_midway(tmp_path: Path) -> None:
    """If the results iterable raises midway, the old file is unchanged and no temp file is left."""
    out = tmp_path / "out.csv"
    out.write_bytes(b"previous,results\r\n1,ok\r\n")

    def failing() -> Iterator[Result]:
        yield result(1)
        yield result(2)
        raise RuntimeError("journal went away")

    with pytest.raises(RuntimeError, match="journal went away"):
        write_results(out, failing(), ())
    assert out.read_bytes() == b"previous,results\r\n1,ok\r\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_writer_failing_midway_creates_no_file(tmp_path: Path) -> None:
    """If there was no results file and writing fails, there is still none."""
    out = tmp_path / "out.csv"

    def failing() -> Iterator[Result]:
        yield result(1)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_results(out, failing(), ())
    assert list(tmp_path.iterdir()) == []


def test_journal_to_results_file_in_row_order(tmp_path: Path, journal: Journal) -> None:
    """Outcomes recorded out of order come out of the writer in row order."""
    for row in (3, 1, 2):
        journal.record(result(row, extras=(f"n{row}",)))
    out = tmp_path / "out.csv"
    assert write_results(out, journal.results(), ("note",)) == 3
    assert [line[0] for line in read_csv(out)[1:]] == ["1", "2", "3"]
    assert [line[-1] for line in read_csv(out)[1:]] == ["n1", "n2", "n3"]
