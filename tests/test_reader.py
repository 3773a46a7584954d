"""Reading the input CSV: ``scan_input`` checks the file, ``read_records`` yields its text."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from batcher.errors import InputFileError
from batcher.models import Record
from batcher.reader import InputInfo, read_records, scan_input

HEADER = b"identifier,status,category,summary\n"


def write(tmp_path: Path, data: bytes, name: str = "input.csv") -> Path:
    """Write ``data`` byte for byte and return the path."""
    path = tmp_path / name
    path.write_bytes(data)
    return path


def read_all(
    path: Path, *, encoding: str = "utf-8", delimiter: str | None = None
) -> tuple[InputInfo, list[Record]]:
    """Scan then read the whole file."""
    info = scan_input(path, encoding=encoding, delimiter=delimiter)
    return info, list(read_records(info))


def test_values_are_never_turned_into_missing(tmp_path: Path) -> None:
    """NA, null, None, empty, id:0012 and a leading + come out exactly as written."""
    path = write(
        tmp_path,
        HEADER
        + b"NA,null,None,\n"
        + b"id:0012,open,N/A,nan\n"
        + b"+60121233112,NULL,#N/A,-\n"
        + b",,,\n",
    )
    _, records = read_all(path)
    assert [(r.identifier, r.status, r.category, r.summary) for r in records] == [
        ("NA", "null", "None", ""),
        ("id:0012", "open", "N/A", "nan"),
        ("+60121233112", "NULL", "#N/A", "-"),
        ("", "", "", ""),
    ]
    assert all(isinstance(value, str) for r in records for value in (r.category, r.summary))


def test_surrounding_whitespace_is_trimmed(tmp_path: Path) -> None:
    """Spaces and tabs around a value are trimmed; spaces inside are kept."""
    path = write(tmp_path, HEADER + b"  id:1 ,\topen\t, Spam Bot ,  two  words \n")
    _, (rec,) = read_all(path)
    assert (rec.identifier, rec.status, rec.category, rec.summary) == (
        "id:1",
        "open",
        "Spam Bot",
        "two  words",
    )


def test_header_names_match_without_case_or_spaces(tmp_path: Path) -> None:
    """' Identifier ', 'STATUS', 'Category' and 'summary ' find their columns in any order."""
    path = write(tmp_path, b"Summary , Identifier ,Category,STATUS\nA bot,id:5,Spam,close\n")
    info, (rec,) = read_all(path)
    assert info.header == ("Summary", "Identifier", "Category", "STATUS")
    assert info.columns == {"identifier": 1, "status": 3, "category": 2, "summary": 0}
    assert (rec.identifier, rec.status, rec.category, rec.summary) == (
        "id:5",
        "close",
        "Spam",
        "A bot",
    )


def test_extra_columns_are_carried_through_in_order(tmp_path: Path) -> None:
    """Columns batcher does not read keep their names and values, in the file's order."""
    path = write(
        tmp_path,
        b"ticket,identifier,agent,status,note\nT-1,id:1,ann,open,first\nT-2,id:2,bob,close,\n",
    )
    info, records = read_all(path)
    assert info.extra_columns == ("ticket", "agent", "note")
    assert [r.extras for r in records] == [("T-1", "ann", "first"), ("T-2", "bob", "")]
    assert [r.category for r in records] == ["", ""]


@pytest.mark.parametrize(
    "bom", [pytest.param(b"", id="no-bom"), pytest.param(b"\xef\xbb\xbf", id="bom")]
)
def test_utf8_with_and_without_bom(tmp_path: Path, bom: bytes) -> None:
    """UTF-8 reads alike with or without a byte-order mark; the BOM never joins a column name."""
    text = "identifier,status,note\nemail:josé@exämple.com,open,café ☕\n"
    path = write(tmp_path, bom + text.encode("utf-8"))
    info, (rec,) = read_all(path)
    assert info.header == ("identifier", "status", "note")
    assert rec.identifier == "email:josé@exämple.com"
    assert rec.extras == ("café ☕",)


@pytest.mark.parametrize(
    "delimiter",
    [
        pytest.param(",", id="comma"),
        pytest.param(";", id="semicolon"),
        pytest.param("\t", id="tab"),
        pytest.param("|", id="pipe"),
    ],
)
@pytest.mark.parametrize(
    "given", [pytest.param(False, id="sniffed"), pytest.param(True, id="given")]
)
def test_delimiters_sniffed_and_given(tmp_path: Path, delimiter: str, given: bool) -> None:
    """Delimiters , ; tab | are sniffed from the header or taken as given; others stay in values."""
    others = "".join(d for d in ",;|" if d != delimiter)
    lines = [
        ["identifier", "status", "category", "summary"],
        ["id:1", "close", "Spam", f"a{others}b"],
        ["id:2", "open", "", ""],
    ]
    path = write(tmp_path, "".join(delimiter.join(line) + "\n" for line in lines).encode())
    info, records = read_all(path, delimiter=delimiter if given else None)
    assert info.delimiter == delimiter
    assert [(r.identifier, r.status, r.category, r.summary) for r in records] == [
        ("id:1", "close", "Spam", f"a{others}b"),
        ("id:2", "open", "", ""),
    ]


@pytest.mark.parametrize(
    "delimiter",
    [
        pytest.param(",", id="comma"),
        pytest.param(";", id="semicolon"),
        pytest.param("\t", id="tab"),
    ],
)
def test_quoted_fields_hold_delimiters_quotes_and_newlines(tmp_path: Path, delimiter: str) -> None:
    """A quoted field keeps delimiters, doubled quotes and line breaks; the next record is whole."""
    sep = delimiter.encode()
    data = (
        sep.join([b"identifier", b"status", b"category", b"summary"])
        + b"\n"
        + sep.join(
            [b"id:1", b"close", b'"Spam' + sep + b' bot"', b'"said ""hi""\nthen' + sep + b'left"']
        )
        + b"\n"
        + sep.join([b"id:2", b"open", b"", b""])
        + b"\n"
    )
    info, records = read_all(write(tmp_path, data))
    assert info.records == 2
    assert [(r.row, r.identifier, r.category, r.summary) for r in records] == [
        (1, "id:1", f"Spam{delimiter} bot", f'said "hi"\nthen{delimiter}left'),
        (2, "id:2", "", ""),
    ]


def test_crlf_line_endings(tmp_path: Path) -> None:
    """CRLF files read like LF files: no stray carriage return in any value or column name."""
    path = write(tmp_path, b"identifier,status,note\r\nid:1,open,a\r\nid:2,close,b\r\n")
    info, records = read_all(path)
    assert info.header == ("identifier", "status", "note")
    assert info.records == 2
    assert [(r.identifier, r.status, r.extras) for r in records] == [
        ("id:1", "open", ("a",)),
        ("id:2", "close", ("b",)),
    ]


def test_blank_lines_are_not_records_and_rows_skip_them(tmp_path: Path) -> None:
    """Blank lines are skipped; row is the 1-based record number, not the line number."""
    path = write(tmp_path, b"identifier,status\n\nid:1,open\n\n\nid:2,close\nid:3,open\n\n")
    info, records = read_all(path)
    assert info.records == 3
    assert [(r.row, r.identifier) for r in records] == [(1, "id:1"), (2, "id:2"), (3, "id:3")]


def test_whitespace_only_line_counted_like_it_is_read(tmp_path: Path) -> None:
    """With a spaces-only line, InputInfo.records equals the records read_records yields."""
    path = write(tmp_path, b"identifier,status\nid:1,open\n   \nid:2,close\n")
    info, records = read_all(path)
    assert len(records) == 2
    assert info.records == len(records)


def test_record_with_too_many_fields_gets_a_problem_and_is_not_shifted(tmp_path: Path) -> None:
    """A record with surplus fields keeps its own values in place and says what the surplus was."""
    path = write(
        tmp_path,
        b"identifier,status,note\nid:1,open,a\nid:2,close,b,extra1,extra2\nid:3,open,c\n",
    )
    info, records = read_all(path)
    assert info.records == 3
    assert [(r.row, r.identifier, r.status, r.extras) for r in records] == [
        (1, "id:1", "open", ("a",)),
        (2, "id:2", "close", ("b",)),
        (3, "id:3", "open", ("c",)),
    ]
    assert records[0].problem == ""
    assert "more fields than the header" in records[1].problem
    assert "extra1,extra2" in records[1].problem
    assert records[2].problem == ""


def test_first_record_with_one_surplus_field_gets_a_problem(tmp_path: Path) -> None:
    """A first record with a single surplus field is flagged and not shifted."""
    path = write(tmp_path, b"identifier,status,note\nid:1,open,a,extra\nid:2,close,b\n")
    _, records = read_all(path)
    assert [(r.row, r.identifier, r.status, r.extras) for r in records] == [
        (1, "id:1", "open", ("a",)),
        (2, "id:2", "close", ("b",)),
    ]
    assert "'extra'" in records[0].problem
    assert records[1].problem == ""


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(
            b"n,identifier,status\n7,id:1,open,x,y\n8,id:2,close\n", id="numeric-first-column"
        ),
        pytest.param(
            b"identifier,status,n\nid:1,open,7,x,y\nid:2,close,8\n", id="identifier-first"
        ),
    ],
)
def test_first_record_with_several_surplus_fields_is_not_shifted(
    tmp_path: Path, data: bytes
) -> None:
    """An over-long first record keeps every record's values in their own columns."""
    _, records = read_all(write(tmp_path, data))
    assert [(r.row, r.identifier, r.status, r.extras) for r in records] == [
        (1, "id:1", "open", ("7",)),
        (2, "id:2", "close", ("8",)),
    ]
    assert "x,y" in records[0].problem
    assert records[1].problem == ""


def test_record_with_fewer_fields_gets_empty_cells(tmp_path: Path) -> None:
    """Missing trailing fields read as "" (never None, never a problem)."""
    path = write(tmp_path, b"identifier,status,category,summary,note\nid:1,open\nid:2\n")
    _, records = read_all(path)
    assert [
        (r.identifier, r.status, r.category, r.summary, r.extras, r.problem) for r in records
    ] == [
        ("id:1", "open", "", "", ("",), ""),
        ("id:2", "", "", "", ("",), ""),
    ]


@pytest.mark.parametrize(
    ("header", "missing"),
    [
        pytest.param(b"identifier,state,note", "'status'", id="no-status"),
        pytest.param(b"contact,status", "'identifier'", id="no-identifier"),
        pytest.param(b"id,state", "'identifier' or 'status'", id="neither"),
    ],
)
def test_missing_required_column_names_the_columns_found(
    tmp_path: Path, header: bytes, missing: str
) -> None:
    """No identifier/status column stops the scan; the message lists the columns it did find."""
    path = write(tmp_path, header + b"\nid:1,open\n")
    with pytest.raises(InputFileError) as caught:
        scan_input(path)
    message = str(caught.value)
    assert f"no {missing} column" in message
    for name in header.decode().split(","):
        assert repr(name) in message


def test_wrong_delimiter_given_reports_the_single_column_found(tmp_path: Path) -> None:
    """A ; file read with delimiter ',' fails naming the one column it saw."""
    path = write(tmp_path, b"identifier;status\nid:1;open\n")
    with pytest.raises(InputFileError, match=r"columns found: 'identifier;status'"):
        scan_input(path, delimiter=",")


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(b"identifier,status,Status", id="status-twice-by-case"),
        pytest.param(b"identifier, identifier ,status", id="identifier-twice-by-spaces"),
        pytest.param(b"identifier,status,note,NOTE", id="extra-column-twice"),
    ],
)
def test_duplicate_header_names_are_refused(tmp_path: Path, header: bytes) -> None:
    """A header naming one column twice (case and spaces ignored) is an InputFileError."""
    path = write(tmp_path, header + b"\nid:1,open,a,b\n")
    with pytest.raises(InputFileError, match="more than once"):
        scan_input(path)


def test_empty_file_is_refused(tmp_path: Path) -> None:
    """An empty file (no header) is an InputFileError."""
    with pytest.raises(InputFileError, match="empty"):
        scan_input(write(tmp_path, b""))


def test_missing_file_is_refused(tmp_path: Path) -> None:
    """A file that does not exist is an InputFileError naming it."""
    with pytest.raises(InputFileError, match="cannot open input file"):
        scan_input(tmp_path / "absent.csv")


def test_bad_bytes_name_encoding_flag_and_line(tmp_path: Path) -> None:
    """A byte that is not UTF-8 is an InputFileError naming --encoding and the line."""
    path = write(tmp_path, b"identifier,status,note\nid:1,open,ok\nid:2,open,caf\xe9\n")
    with pytest.raises(InputFileError) as caught:
        scan_input(path)
    message = str(caught.value)
    assert "--encoding" in message
    assert "line 3" in message


def test_bad_byte_after_first_block_names_its_line(tmp_path: Path) -> None:
    """In a file over 1 MiB, the message names the line that holds the bad byte."""
    lines = [b"identifier,status,note"]
    lines += [b"id:%d,open,%s" % (n, b"x" * 40) for n in range(1, 40_001)]
    lines[35_000] = b"id:35000,open,caf\xe9"  # physical line 35001
    path = write(tmp_path, b"\n".join(lines) + b"\n")
    assert path.stat().st_size > 1 << 20
    with pytest.raises(InputFileError) as caught:
        scan_input(path)
    message = str(caught.value)
    assert "--encoding" in message
    assert "line 35001" in message


def test_latin1_file_reads_with_its_encoding(tmp_path: Path) -> None:
    """A latin-1 file given encoding='latin-1' reads correctly, accents and all."""
    path = write(
        tmp_path,
        "identifier,status,category,note\nid:1,close,Résolu,Müller ½\n".encode("latin-1"),
    )
    info, (rec,) = read_all(path, encoding="latin-1")
    assert rec.category == "Résolu"
    assert rec.extras == ("Müller ½",)
    assert info.encoding == "latin-1"


def test_records_count_and_sha256(tmp_path: Path) -> None:
    """InputInfo counts records (not header, not blank lines) and hashes the file's exact bytes."""
    data = b'identifier,status\r\nid:1,open\r\n\r\n"id:2",close\r\nid:3,open'
    path = write(tmp_path, data)
    info, records = read_all(path)
    assert info.records == 3 == len(records)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.path == path


def test_sha256_changes_with_one_byte(tmp_path: Path) -> None:
    """Two files differing in one byte have different digests."""
    one = scan_input(write(tmp_path, b"identifier,status\nid:1,open\n", "a.csv"))
    two = scan_input(write(tmp_path, b"identifier,status\nid:1,opEn\n", "b.csv"))
    assert one.sha256 != two.sha256


def test_header_only_file_has_no_records(tmp_path: Path) -> None:
    """A file with only a header scans as 0 records and reads as none."""
    info, records = read_all(write(tmp_path, b"identifier,status\n"))
    assert info.records == 0
    assert records == []


@pytest.mark.parametrize("first_rows", [1, 2, 4, 100])
@pytest.mark.parametrize("chunk_rows", [1, 2, 3, 5, 100])
def test_chunking_gives_the_same_records(tmp_path: Path, chunk_rows: int, first_rows: int) -> None:
    """Chunks of any size (2 over 5 records included), after a first one of any size, yield
    the same records as one chunk."""
    path = write(
        tmp_path,
        b"identifier,status,note\nid:1,open,a\n\nid:2,close,b\nid:3,open,c,surplus\n"
        b'\n"id:4",close,"multi\nline"\nid:5,open,e\n',
    )
    info = scan_input(path)
    whole = list(read_records(info, chunk_rows=50_000, first_rows=50_000))
    assert [r.row for r in whole] == [1, 2, 3, 4, 5]
    assert list(read_records(info, chunk_rows=chunk_rows, first_rows=first_rows)) == whole


def test_the_first_records_need_only_the_first_small_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first ``first_rows`` records come from one small parse (the header line and those
    records), not from the first ``chunk_rows`` lines."""
    from pandas.io.parsers import TextFileReader  # noqa: PLC0415 - only this test needs it

    lines = "".join(f"id:{n},close\n" for n in range(1, 101))
    info = scan_input(write(tmp_path, f"identifier,status\n{lines}".encode()))
    sizes: list[int | None] = []
    get_chunk = TextFileReader.get_chunk

    def recorded(self: TextFileReader, size: int | None = None) -> object:
        sizes.append(size)
        return get_chunk(self, size)

    monkeypatch.setattr(TextFileReader, "get_chunk", recorded)
    records = read_records(info, chunk_rows=50, first_rows=10)
    first = [next(records) for _ in range(10)]
    assert [r.row for r in first] == list(range(1, 11))
    assert sizes == [11]
    assert [r.row for r in records] == list(range(11, 101))
    assert sizes == [11, None, None, None]  # then chunks of 50: 50, 40, and the end
