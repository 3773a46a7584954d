"""Reading the input CSV: the only module that imports pandas.

The file is read twice, both times streaming:

1. ``scan_input`` checks it with the standard library's csv module before
   anything is sent: it decodes every byte (so a bad byte stops the run with
   exit 2 before the first request), finds the delimiter and the header,
   counts the records for the progress bar, and hashes the file so a resumed
   run can tell whether the input changed.
2. ``read_records`` streams it with pandas in chunks of ``chunk_rows``
   records, every value as text exactly as written (no type inference, no
   ``NA``/``null``/empty turned into a missing value), whitespace trimmed.

A record with more fields than the header is kept, never shifted: pandas'
python engine hands such lines to a callback, which folds the surplus into a
hidden overflow column, and the record comes out with a ``problem``.

An ``.xlsx`` workbook is read through the same path: ``scanned_input`` has
``batcher.workbook`` write its sheet as UTF-8 CSV text to a temporary file for
as long as the run lasts, and the ``InputInfo`` keeps the workbook as the
input's identity (its path in messages, its hash for resume).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from batcher.errors import InputFileError, UsageError
from batcher.models import INPUT_COLUMNS, Record

if TYPE_CHECKING:
    from pandas import DataFrame
    from pandas.io.parsers import TextFileReader

#: Delimiters batcher recognises when none is given.
DELIMITERS = (",", ";", "\t", "|")
#: The hidden column that catches the surplus fields of an over-long record.
_OVERFLOW = "\x00overflow"
_REQUIRED = ("identifier", "status")
_BLOCK = 1 << 20
#: File name endings read as Excel workbooks (``batcher.workbook``).
WORKBOOK_SUFFIXES = (".xlsx", ".xlsm")


@dataclass(frozen=True, slots=True)
class InputInfo:
    """What ``scan_input`` learned about the input file.

    Attributes:
        path: The input file.
        encoding: The encoding it is read with.
        delimiter: The field delimiter, given or sniffed.
        header: The header's column names, stripped, as written.
        columns: Where each of identifier/status/category/summary is (index, or None).
        extra_columns: The other columns' names, in file order.
        records: Records in the file (header and blank lines not counted).
        sha256: Hex digest of the file's bytes.
        text_path: Where the records are read from when that is not ``path``: a workbook's
            sheet as CSV text (``batcher.workbook``). None for a CSV input.
    """

    path: Path
    encoding: str
    delimiter: str
    header: tuple[str, ...]
    columns: dict[str, int | None]
    extra_columns: tuple[str, ...]
    records: int
    sha256: str
    text_path: Path | None = None


def is_workbook(path: Path) -> bool:
    """Whether ``path`` names an Excel workbook (read by ``batcher.workbook``)."""
    return path.suffix.casefold() in WORKBOOK_SUFFIXES


@contextmanager
def scanned_input(
    path: Path, *, encoding: str = "utf-8", delimiter: str | None = None, sheet: str | None = None
) -> Iterator[InputInfo]:
    """``scan_input`` for a CSV file; for an ``.xlsx`` workbook, its sheet (the first, or
    ``sheet``) checked the same way, its text kept in a temporary file until the block ends."""
    if is_workbook(path):
        from batcher.workbook import spooled_workbook  # noqa: PLC0415 - only for .xlsx input

        with spooled_workbook(path, sheet=sheet) as info:
            yield info
        return
    if sheet is not None:
        raise UsageError(f"--sheet is for an .xlsx workbook; {str(path)!r} is read as CSV")
    if path.suffix.casefold() in (".xls", ".xlsb", ".ods"):
        raise InputFileError(
            f"{str(path)!r}: batcher reads .xlsx workbooks and CSV files; save it as one of those"
        )
    yield scan_input(path, encoding=encoding, delimiter=delimiter)


def scan_input(
    path: Path,
    *,
    encoding: str = "utf-8",
    delimiter: str | None = None,
    shown_as: Path | None = None,
) -> InputInfo:
    """Check the whole input file before a run; raise ``InputFileError`` if it cannot be used.

    ``shown_as``: the name messages give the file (a workbook, for its CSV text).
    """
    name = str(shown_as or path)
    # utf-8-sig reads files with and without a byte-order mark alike.
    codec = "utf-8-sig" if _text_codec(encoding).name == "utf-8" else encoding
    digest = hashlib.sha256()
    try:
        if path.exists() and not path.is_file():
            # A pipe would be read once by this check and be empty for the run (or block).
            raise InputFileError(
                f"input file {str(path)!r} is not a regular file (a pipe or a device?); "
                "save it to a file first"
            )
        raw = path.open("rb")
    except OSError as exc:
        raise InputFileError(f"cannot open input file {name!r}: {exc.strerror}") from exc
    with raw:
        text = _HashingDecoder(raw, codec, digest)
        records = 0
        try:
            first_line = text.peek_line()
            if not first_line.strip():
                raise InputFileError(f"input file {name!r} is empty: it needs a header row")
            sep = delimiter or _sniff_delimiter(first_line)
            # strict, as pandas' python engine reads it: a quoting error the lenient csv
            # reader would paper over makes pandas drop the whole record without a word.
            reader = csv.reader(text, delimiter=sep, strict=True)
            starts_at = 1  # the physical line the record being read starts on
            header = tuple(name.strip() for name in next(reader))
            starts_at = reader.line_num + 1
            for fields in reader:
                # pandas skips blank and spaces-only lines: count records as it will read them.
                records += bool(fields) and (len(fields) > 1 or bool(fields[0].strip()))
                starts_at = reader.line_num + 1
        except UnicodeError as exc:
            reason = exc.reason if isinstance(exc, UnicodeDecodeError) else str(exc)
            raise InputFileError(
                f"input file {name!r}, record {records + 1} (line {text.line_number + 1}): "
                f"bytes that are not {encoding} ({reason}); name the file's encoding "
                "with --encoding"
            ) from exc
        except csv.Error as exc:
            raise InputFileError(
                f"input file {name!r}, the record that starts on line {starts_at}: "
                f"{exc}{_quoting_hint(str(exc), sep)}"
            ) from exc
    columns, extras = _map_columns(name, header)
    return InputInfo(path, codec, sep, header, columns, extras, records, digest.hexdigest())


def _text_codec(encoding: str) -> codecs.CodecInfo:
    """The codec named ``encoding``; ``InputFileError`` unless it decodes bytes to text."""
    try:
        info = codecs.lookup(encoding)
    except LookupError as exc:
        raise InputFileError(
            f"unknown encoding {encoding!r}: name one such as utf-8, cp1252 or latin-1"
        ) from exc
    if not info._is_text_encoding:
        raise InputFileError(f"{encoding!r} is not a text encoding: name one such as utf-8")
    return info


def _quoting_hint(message: str, sep: str) -> str:
    if "expected after" not in message and "end of data" not in message:
        return ""
    return (
        "; a field that starts with a quote must end with one, right before the "
        f"delimiter {sep!r} or the end of the line, and a quote inside it is written twice"
    )


#: Records in the first chunk parsed: a run's first request waits only for those.
FIRST_ROWS = 500


def read_records(
    info: InputInfo, *, chunk_rows: int = 50_000, first_rows: int = FIRST_ROWS
) -> Iterator[Record]:
    """Yield every record of a scanned input file, in file order, ``chunk_rows`` at a time
    after the first ``first_rows``."""
    import pandas as pd  # noqa: PLC0415 - pandas costs ~0.3 s to import; only runs need it

    width = len(info.header)
    names = [f"c{i}" for i in range(width)] + [_OVERFLOW]

    def fold_surplus(fields: list[str]) -> list[str]:
        return [*fields[:width], info.delimiter.join(fields[width:])]

    chunks = pd.read_csv(
        info.text_path or info.path,
        sep=info.delimiter,
        # The header line is read as a row (and dropped below): with fewer fields than
        # `names`, pandas never mistakes the first column for an index, as it would if the
        # first record were the longest line.
        header=None,
        names=names,
        dtype=str,
        keep_default_na=False,
        na_filter=False,
        skip_blank_lines=True,
        encoding=info.encoding,
        engine="python",
        on_bad_lines=fold_surplus,
        chunksize=chunk_rows,
    )
    where = info.columns
    extra_at = [i for i in range(width) if i not in where.values()]
    with chunks:
        for chunk in _chunks(chunks, first_rows):
            rows = chunk.itertuples(index=True, name=None)
            for index, *values in rows:
                if index == 0:
                    continue  # the header line
                cells = [v.strip() if isinstance(v, str) else "" for v in values]
                # A str, even "", means the record had a field past the header's last column;
                # a record that ends early has NaN there.
                has_surplus = isinstance(values[width], str)
                surplus = cells[width]
                yield Record(
                    row=int(index),
                    identifier=_cell(cells, where["identifier"]),
                    status=_cell(cells, where["status"]),
                    category=_cell(cells, where["category"]),
                    summary=_cell(cells, where["summary"]),
                    extras=tuple(cells[i] for i in extra_at),
                    problem=(
                        f"record has more fields than the header's {width} columns "
                        f"(surplus: {surplus[:60]!r})"
                        if has_surplus
                        else ""
                    ),
                )


def _chunks(reader: TextFileReader, first_rows: int) -> Iterator[DataFrame]:
    """The reader's chunks, the first of them ``first_rows`` records and the header line."""
    size: int | None = first_rows + 1
    while True:
        try:
            yield reader.get_chunk(size)
        except StopIteration:
            return
        size = None  # the reader's own chunksize from here on


def _cell(cells: list[str], index: int | None) -> str:
    return "" if index is None else cells[index]


def _sniff_delimiter(header_line: str) -> str:
    """The candidate delimiter that occurs most often in the header line (``,`` if none)."""
    counts = {sep: header_line.count(sep) for sep in DELIMITERS}
    best = max(counts, key=lambda sep: counts[sep])
    return best if counts[best] else ","


def _map_columns(
    shown: str, header: tuple[str, ...]
) -> tuple[dict[str, int | None], tuple[str, ...]]:
    """Match header names without regard to case or surrounding spaces."""
    folded = [name.casefold() for name in header]
    seen: set[str] = set()
    for name in folded:
        if name in seen:
            raise InputFileError(
                f"input file {shown!r}: the header names column {name!r} more than once"
            )
        seen.add(name)
    columns: dict[str, int | None] = {
        name: (folded.index(name) if name in folded else None) for name in INPUT_COLUMNS
    }
    missing = [name for name in _REQUIRED if columns[name] is None]
    if missing:
        found = ", ".join(repr(name) for name in header) or "none"
        raise InputFileError(
            f"input file {shown!r} has no {' or '.join(repr(m) for m in missing)} column "
            f"(columns found: {found})"
        )
    extras = tuple(name for name, low in zip(header, folded, strict=True) if low not in columns)
    return columns, extras


class _HashingDecoder:
    """A line iterator over a binary file that hashes every byte and counts lines as it decodes."""

    def __init__(self, raw: io.BufferedReader, encoding: str, digest: hashlib._Hash) -> None:
        self._raw = raw
        self._decoder = codecs.getincrementaldecoder(encoding)()
        self._decoder_encoding = encoding
        self._digest = digest
        self._lines: list[str] = []
        self._tail = ""
        self._eof = False
        self._error: UnicodeDecodeError | None = None  # raised once the good lines are out
        #: 1-based number of the line last handed out.
        self.line_number = 0

    def _fill(self) -> bool:
        """Decode one more block into ``_lines``; False at the end of the file."""
        if self._error is not None:
            raise self._error
        if self._eof:
            return False
        block = self._raw.read(_BLOCK)
        self._digest.update(block)
        self._eof = not block
        try:
            decoded = self._decoder.decode(block, final=self._eof)
        except UnicodeDecodeError as exc:
            # Hand out the lines before the bad byte first, so the error names its record.
            self._error = exc
            # exc.object is what the decoder held back plus this block.
            good = bytes(exc.object[: exc.start])
            decoded = good.decode(self._decoder_encoding, errors="ignore")
            self._eof = True
        # Split on "\n" only: csv needs whole physical lines, and str.splitlines would also
        # break at characters such as U+2028 that may sit inside a value.
        parts = (self._tail + decoded).split("\n")
        self._tail = parts.pop()
        lines = [part + "\n" for part in parts]
        if self._eof and self._tail and self._error is None:
            lines.append(self._tail)
            self._tail = ""
        self._lines.extend(reversed(lines))
        return True

    def peek_line(self) -> str:
        while not self._lines and self._fill():
            pass
        return self._lines[-1] if self._lines else ""

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        while not self._lines:
            if not self._fill():
                raise StopIteration
        self.line_number += 1
        return self._lines.pop()
