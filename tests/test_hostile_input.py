"""Hostile input: any bytes, any table of text, any identifier, and a CRM export with every
trap at once (sample_inputs/hostile.csv) run end to end against the simulator."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from batcher import run_batch
from batcher.client import path_segment, request_url
from batcher.errors import InputFileError
from batcher.models import RESULT_COLUMNS
from batcher.reader import read_records, scan_input
from batcher.simulator import RunningSimulator
from batcher.validate import Invalid, check
from tests.conftest import CliRun, read_results

Cli = Callable[..., CliRun]
Sim = Callable[..., RunningSimulator]

HOSTILE = Path(__file__).resolve().parent.parent / "sample_inputs" / "hostile.csv"

# Hypothesis draws many examples into one folder: fixtures it may share must not be
# function-scoped, and every example overwrites the same few files.
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for every example of this module's properties."""
    return tmp_path_factory.mktemp("hostile")


def dry_run_rows(path: Path) -> list[list[str]]:
    """Run ``path`` dry through the library; the results file's rows, header first."""
    out = path.with_name("results.csv")
    run_batch(path, out=out, dry_run=True)
    with out.open(newline="", encoding="utf-8") as file:
        return list(csv.reader(file))


# -- any bytes --------------------------------------------------------------------------------

# Pieces of real CSV trouble; glued together behind a valid header they reach far deeper
# into the reader than uniformly random bytes, which nearly always fail at the header.
_PIECES = st.sampled_from(
    [b"id:1", b"open", b"close", b"NA", b"6.01E+10", b"x", b" ", b",", b";", b"\t", b"|",
     b'"', b'""', b"\n", b"\r", b"\r\n", b"\xef\xbb\xbf", b"\x00", b"\xff", b"\xc3\xa9",
     b"\xe2\x80\xa8", b"\x85", b"\x0b", b"\\", b"'", b"#",
     b"\nid:2,close", b"\nid:3;open", b"\r\nid:4\topen\r\n", b"\n\n"]
)  # fmt: skip
_GLUED = st.lists(_PIECES, max_size=50).map(b"".join)
_HEADERS = st.sampled_from(
    [
        b"",
        b"identifier,status\n",
        b"identifier;status;note\r\n",
        b"\xef\xbb\xbfIdentifier\tStatus\n",
        b"\xef\xbb\xbf STATUS |identifier\r\n",
    ]
)
_HEADED = st.tuples(_HEADERS, _GLUED).map(b"".join)
ANY_BYTES = st.one_of(st.binary(max_size=300), _HEADED, _HEADED)


@settings(FUZZ, max_examples=200)
@given(data=ANY_BYTES)
# Found by this property: pandas' python engine reads with a strict csv dialect; a quoting
# error the lenient scan let through made it drop the record without a word (count mismatch)
# or, further into the file, raise csv.Error in the middle of read_records.
@example(data=b'identifier,status\n"\x00')
@example(data=b'identifier,status\nid:1,open\n"a"b,c\nid:2,open\n')
@example(data=b'identifier,status\nid:1,open\n"id:2,open\n')
def test_any_bytes_are_refused_or_read_whole(workdir: Path, data: bytes) -> None:
    """Any bytes: scan_input refuses them, or every record it counted is read and gets exactly
    one results row, numbered 1..n in order."""
    path = workdir / "bytes.csv"
    path.write_bytes(data)
    try:
        info = scan_input(path)
    except InputFileError:
        event("refused by scan_input")
        return
    event("records read", "3 or more" if info.records >= 3 else str(info.records))
    records = list(read_records(info))
    assert len(records) == info.records
    assert [r.row for r in records] == list(range(1, info.records + 1))
    header, *rows = dry_run_rows(path)
    assert header == [*RESULT_COLUMNS, *info.extra_columns]
    assert [int(row[0]) for row in rows] == list(range(1, info.records + 1))
    assert [row[1] for row in rows] == [r.identifier for r in records]


# -- any table of text ------------------------------------------------------------------------


@settings(FUZZ, max_examples=100)
@given(
    table=st.lists(st.lists(st.text(max_size=12), min_size=3, max_size=3), max_size=8),
    delimiter=st.sampled_from([",", ";", "\t", "|"]),
)
def test_any_table_of_text_comes_back_exactly(
    workdir: Path, table: list[list[str]], delimiter: str
) -> None:
    """Any table written by csv.writer: every value comes back exactly (trimmed), through the
    reader and through a dry run's results file, one results row per record."""
    path = workdir / "table.csv"
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, delimiter=delimiter)
        writer.writerow(["identifier", "status", "extra"])
        writer.writerows(table)
    expected = [(a.strip(), b.strip(), c.strip()) for a, b, c in table]
    info = scan_input(path)
    assert info.delimiter == delimiter
    records = list(read_records(info, chunk_rows=3))
    assert [(r.identifier, r.status, *r.extras) for r in records] == expected
    assert [r.problem for r in records] == [""] * len(table)
    assert info.records == len(table)
    _, *rows = dry_run_rows(path)
    assert [int(row[0]) for row in rows] == list(range(1, len(table) + 1))
    assert [(row[1], row[2], row[len(RESULT_COLUMNS)]) for row in rows] == expected


# -- regressions the properties found ---------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "line"),
    [
        pytest.param(b'identifier,status\nid:1,open\n"a"b,c\nid:2,open\n', 3, id="after-quote"),
        pytest.param(b'identifier,status\nid:1,open\n"id:2,open\nid:3,open\n', 3, id="unclosed"),
        pytest.param(b'identifier,status\n"\x00', 2, id="unclosed-at-eof"),
    ],
)
def test_quoting_error_is_refused_naming_its_line(tmp_path: Path, data: bytes, line: int) -> None:
    """A quoting error pandas would silently drop a record for stops the scan instead, naming
    the line the record starts on and how quotes must be written."""
    path = tmp_path / "in.csv"
    path.write_bytes(data)
    with pytest.raises(InputFileError) as caught:
        scan_input(path)
    message = str(caught.value)
    assert f"starts on line {line}:" in message
    assert "quote inside it is written twice" in message


def test_one_trailing_empty_field_is_a_surplus_field(tmp_path: Path) -> None:
    """A record with one more field than the header is invalid even when that field is empty,
    as it already was with two empty surplus fields; a short record is not."""
    path = tmp_path / "in.csv"
    path.write_bytes(b"identifier,status\nid:1,open,\nid:2,open,,\nid:3,open\nid:4\n")
    records = list(read_records(scan_input(path)))
    assert [(r.identifier, r.status) for r in records] == [
        ("id:1", "open"), ("id:2", "open"), ("id:3", "open"), ("id:4", ""),
    ]  # fmt: skip
    assert ["more fields than the header" in r.problem for r in records] == [
        True, True, False, False,
    ]  # fmt: skip
    verdict = check(records[0])
    assert isinstance(verdict, Invalid)
    assert "more fields than the header's 2 columns" in verdict.reason


@pytest.mark.parametrize(
    ("encoding", "message"),
    [
        pytest.param("no-such-codec", "unknown encoding 'no-such-codec'", id="unknown"),
        pytest.param("rot13", "'rot13' is not a text encoding", id="text-to-text"),
        pytest.param("hex", "'hex' is not a text encoding", id="bytes-to-bytes"),
    ],
)
def test_unusable_encoding_is_an_input_error(tmp_path: Path, encoding: str, message: str) -> None:
    """An --encoding that is not a text codec is an InputFileError (exit 2), not a crash."""
    path = tmp_path / "in.csv"
    path.write_bytes(b"identifier,status\nid:1,open\n")
    with pytest.raises(InputFileError, match=message):
        scan_input(path, encoding=encoding)


#: name -> (file bytes, extra arguments, what the message says)
UNUSABLE: dict[str, tuple[bytes, tuple[str, ...], str]] = {
    "bad-bytes": (
        b"identifier,status\nid:1,open\nid:2,caf\xe9\nid:3,open\n", (),
        "record 2 (line 3): bytes that are not utf-8",
    ),
    "bad-quoting": (b'identifier,status\nid:1,open\n"id:2"x,open\n', (), "starts on line 3"),
    "duplicate-header": (b"identifier,status,Status\nid:1,open,open\n", (), "more than once"),
    "missing-columns": (b"contact;state\nid:1;open\n", (), "columns found: 'contact', 'state'"),
    "unknown-encoding": (
        b"identifier,status\nid:1,open\n", ("--encoding", "klingon"), "unknown encoding 'klingon'",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(UNUSABLE))
def test_unusable_input_exits_2_before_anything_is_sent(
    tmp_path: Path, cli: Cli, simulator: Sim, token_env: str, case: str
) -> None:
    """Bad bytes, bad quoting, a duplicate or missing column, an unknown encoding: exit 2
    with a message saying where, no traceback, no results file, no request."""
    data, args, message = UNUSABLE[case]
    sim = simulator()
    path = tmp_path / "in.csv"
    path.write_bytes(data)
    result = cli("run", path, "--base-url", sim.base_url, "--no-progress", *args)
    assert result.code == 2
    assert message in result.err
    assert "Traceback" not in result.err
    assert sim.simulator.requests == []
    assert not (tmp_path / "in.results.csv").exists()


# -- identifiers as path segments -------------------------------------------------------------

_TRICKY = st.sampled_from(
    [".", "..", "...", "/", "../..", "a/../b", "?", "#", "%", "%2e%2e", "%2F", "+", " ",
     "\x00", "\n", "é", "☕", "email:a/b?c#d%e+f g@x.com", "id:1/../../admin"]
)  # fmt: skip
_PATHISH = st.text(alphabet=st.sampled_from("./?#%+ :@\x00\t\nAz9é☕\u2028"), max_size=12)
IDENTIFIERS = st.one_of(st.text(), _TRICKY, _PATHISH)
BASES = st.sampled_from(
    ["https://api.aelyst.ai/v1", "http://127.0.0.1:8765/v1/", "https://h.example/a/b/"]
)


@given(identifier=IDENTIFIERS)
@example(identifier="..")
@example(identifier=".")
def test_identifier_is_one_path_segment_that_decodes_to_itself(identifier: str) -> None:
    """Any identifier becomes one ASCII path segment: no "/", never "." or "..", nothing that
    starts a query or fragment, and percent-decoding gives the identifier back exactly."""
    segment = path_segment(identifier)
    assert "/" not in segment
    assert segment not in (".", "..")
    assert segment.isascii()
    assert not set(segment) & set("?# \t\r\n\x00")
    assert unquote(segment) == identifier


@given(base=BASES, identifier=IDENTIFIERS)
def test_request_url_has_exactly_one_segment_for_the_identifier(base: str, identifier: str) -> None:
    """Parsed by httpx, the call's URL has the base's segments plus exactly four, no query and
    no fragment, and its identifier segment decodes to the identifier."""
    url = httpx.URL(request_url(base, identifier))
    base_segments = httpx.URL(base.rstrip("/")).raw_path.split(b"/")
    segments = url.raw_path.split(b"/")
    assert len(segments) == len(base_segments) + 4
    assert segments[: len(base_segments)] == base_segments
    assert segments[len(base_segments) :: 2] == [b"contact", b"conversation"]
    assert segments[-1] == b"status"
    assert url.query == b""
    assert url.fragment == ""
    assert unquote(segments[len(base_segments) + 1].decode("ascii")) == identifier


# -- sample_inputs/hostile.csv end to end -----------------------------------------------------

#: row -> (outcome, a fragment of the error, identifier as written, note as written)
EXPECTED: dict[int, tuple[str, str, str, str]] = {
    1: ("ok", "", "id:1001", "normal close"),
    2: ("ok", "", "id:1002", "NA"),
    3: ("ok", "", "id:1003", "null"),
    4: ("ok", "", "id:1004", "None"),
    5: ("ok", "", "email:ana/sales#eu@example.com", "slash and hash"),
    6: ("invalid", "spreadsheet rewrote in scientific notation", "phone:6.01E+10",
        "Excel turned the number into this"),
    7: ("ok", "", "phone:+60121233112", "leading plus"),
    8: ("ok", "", "id:0012", "leading zeros"),
    9: ("invalid", "status: 'Closed' is not one of open, close", "id:1009",
        "trailing space after Closed"),
    10: ("invalid", "summary: given without a category", "id:1010", "no category"),
    11: ("invalid", "only a close takes a category", "id:1011", "category on an open"),
    12: ("invalid", "category: 129 characters, more than the API's 128", "id:1012",
         "category too long"),
    13: ("invalid", "more fields than the header's 5 columns (surplus: 'SURPLUS')", "id:1013",
         "one field too many"),
    14: ("ok", "", "email:dup@example.com", "first of two"),
    15: ("skipped", "duplicate of row 14", "email:dup@example.com", "second of two"),
    16: ("ok", "", "id:1016", "open first"),
    17: ("ok", "", "id:1016", "then close"),
    18: ("ok", "", "id:1018", 'she said "hi"'),
    19: ("ok", "", "email:josé@exämple.com", "café ☕"),
    20: ("ok", "", "email:a+b?c%41@example.com", "plus question percent"),
}  # fmt: skip


def test_hostile_sample_keeps_its_traps() -> None:
    """hostile.csv is still UTF-8 with a BOM, ;-separated, CRLF, with a blank line and a
    quoted newline (an editor or git could quietly normalise them away)."""
    data = HOSTILE.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf Identifier ;STATUS;Category; summary ;note\r\n")
    assert data.count(b"\r\n") == 22
    assert data.count(b"\n") == 23  # the one bare LF is inside row 18's quoted summary
    assert b"\r\n\r\n" in data
    info = scan_input(HOSTILE)
    assert (info.delimiter, info.records, info.extra_columns) == (";", 20, ("note",))


def test_hostile_sample_end_to_end(
    tmp_path: Path, cli: Cli, simulator: Sim, token_env: str
) -> None:
    """Every row of hostile.csv gets its stated outcome; invalid and duplicate rows are never
    sent; what is sent arrives exactly as written; the note column comes through unchanged."""
    sim = simulator()
    source = tmp_path / "hostile.csv"
    shutil.copyfile(HOSTILE, source)
    config = tmp_path / "fast.toml"
    config.write_text("start_rate = 400.0\n")
    result = cli("run", source, "--base-url", sim.base_url, "--config", config, "--no-progress")
    assert result.code == 1, result.err
    assert "ok 13 · invalid 6 · failed 0 · deferred 0 · skipped 1" in result.err

    rows = read_results(tmp_path / "hostile.results.csv")
    got = {int(r["row"]): (r["outcome"], r["error"], r["identifier"], r["note"]) for r in rows}
    assert list(got) == list(EXPECTED)
    for row, (outcome, fragment, identifier, note) in EXPECTED.items():
        assert got[row][0] == outcome, (row, got[row])
        assert fragment in got[row][1], (row, got[row])
        assert (got[row][2], got[row][3]) == (identifier, note), row
        assert (got[row][1] == "") == (outcome == "ok"), row
    by_row = {int(r["row"]): r for r in rows}
    assert by_row[1]["status"] == "close"  # " close " trimmed
    assert by_row[8]["contact_id"] == "12"
    assert by_row[18]["category"] == "Spam; bot"
    assert by_row[18]["summary"] == "line one\nline two; with a semicolon"

    # Exactly the ok rows were sent, each once; nothing for an invalid or duplicate row.
    requests = sim.simulator.requests
    sent = sorted(r.identifier for r in requests)
    assert sent == sorted(ident for outcome, _, ident, _ in EXPECTED.values() if outcome == "ok")
    assert {r.status for r in requests} == {200}
    invalid = {ident for outcome, _, ident, _ in EXPECTED.values() if outcome == "invalid"}
    assert not invalid & set(sent)
    assert sent.count("email:dup@example.com") == 1

    # Bodies and paths arrive exactly as written; open then close ends closed.
    bodies = {r.identifier: r.body for r in requests}
    assert bodies["id:1001"] == {
        "status": "close", "category": "Spam", "summary": "This contact is a bot",
    }  # fmt: skip
    assert bodies["id:1018"] == {
        "status": "close", "category": "Spam; bot",
        "summary": "line one\nline two; with a semicolon",
    }  # fmt: skip
    assert bodies["id:1002"] == {"status": "open"}
    paths = {r.identifier: r.raw_path for r in requests}
    assert "/contact/email:ana%2Fsales%23eu@example.com/" in paths["email:ana/sales#eu@example.com"]
    assert "/contact/email:a%2Bb%3Fc%2541@example.com/" in paths["email:a+b?c%41@example.com"]
    assert "/contact/phone:%2B60121233112/" in paths["phone:+60121233112"]
    assert "/contact/id:0012/" in paths["id:0012"]
    assert sim.simulator.statuses["id:1016"] == "closed"
    assert [r.body for r in requests if r.identifier == "id:1016"] == [
        {"status": "open"}, {"status": "close", "category": "Spam"},
    ]  # fmt: skip
