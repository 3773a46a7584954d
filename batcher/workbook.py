"""Reading an ``.xlsx`` workbook: the only module that imports openpyxl.

Support teams keep their lists in Excel, and a CSV exported from it is where
``6.01E+10`` and ``123.0`` come from. Read from the workbook itself the digits
are intact, so batcher reads the sheet (the first, or ``--sheet NAME``) and
turns every cell into the text a person sees (``cell_text``): whole numbers
as digits, never with ``.0`` nor in scientific notation; dates as ISO dates;
empty cells empty.

That text is written, as UTF-8 CSV, to a temporary file that lives as long as
the run (``spooled_workbook``), and the CSV path does the rest exactly as for
a CSV input: the whole sheet checked before the first request, the same
validation, extra columns carried through. The run's identity stays the
workbook's: its path in messages and for the default results path, and its
hash for resume.

openpyxl is an optional dependency (``pip install "batcher[excel]"``), imported
only when a workbook is read.
"""

from __future__ import annotations

import csv
import hashlib
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from batcher.errors import InputFileError, UsageError
from batcher.reader import InputInfo, scan_input

if TYPE_CHECKING:
    from openpyxl.workbook.workbook import Workbook

#: What to install when openpyxl is missing.
EXTRA = 'pip install "batcher[excel]"'
_BLOCK = 1 << 20


@contextmanager
def spooled_workbook(path: Path, *, sheet: str | None = None) -> Iterator[InputInfo]:
    """The workbook's sheet as a scanned input, its text in a temporary CSV file until the
    block ends; ``InputFileError`` (exit 2) if it cannot be read, ``UsageError`` without the
    excel extra."""
    digest = _sha256(path)
    with tempfile.TemporaryDirectory(prefix="batcher-xlsx-") as folder:
        text_path = Path(folder) / f"{path.stem}.csv"
        with text_path.open("w", encoding="utf-8", newline="") as out:
            csv.writer(out).writerows(sheet_rows(path, sheet=sheet))
        info = scan_input(text_path, encoding="utf-8", delimiter=",", shown_as=path)
        yield replace(info, path=path, sha256=digest, text_path=text_path)


def sheet_rows(path: Path, *, sheet: str | None = None) -> Iterator[list[str]]:
    """Every non-empty row of the sheet, each cell as text (``cell_text``), trailing empty
    cells dropped. The first row is the header."""
    book = _open(path)
    try:
        sheets = {ws.title: ws for ws in book.worksheets}  # chart sheets hold no rows
        chosen = next(iter(sheets.values()), None) if sheet is None else sheets.get(sheet)
        if chosen is None:
            names = ", ".join(repr(name) for name in sheets) or "none"
            raise InputFileError(
                f"input file {str(path)!r} has no sheet named {sheet!r} (sheets: {names})"
                if sheet is not None
                else f"input file {str(path)!r} has no worksheet"
            )
        rows: Iterable[tuple[object, ...]] = chosen.iter_rows(values_only=True)
        for values in rows:
            cells = [cell_text(value) for value in values]
            while cells and not cells[-1]:
                cells.pop()
            if cells:
                yield cells
    finally:
        book.close()


def cell_text(value: object) -> str:
    """A cell's value as the text a person sees: ``60121233112`` (never ``6.01E+10`` nor
    ``60121233112.0``), ``0.125``, ``2024-03-01`` (and the time when it is not midnight),
    ``TRUE``/``FALSE``, and ``""`` for an empty cell."""
    if value is None:
        return ""
    if isinstance(value, bool):  # before int: a bool is an int
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        # repr is the shortest text that reads back as the same float; Decimal writes it
        # without an exponent (1e-05 -> 0.00001).
        return format(Decimal(repr(value)), "f")
    if isinstance(value, datetime):
        if value.time() == time(0, 0):
            return value.date().isoformat()
        spec = "seconds" if value.microsecond == 0 else "auto"
        return value.isoformat(sep=" ", timespec=spec)
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value)
    return str(value)


def _open(path: Path) -> Workbook:
    try:
        import openpyxl  # noqa: PLC0415 - an optional dependency, only for .xlsx input
    except ImportError as exc:
        raise UsageError(
            f"reading the workbook {str(path)!r} needs the excel extra: {EXTRA} "
            "(or save the sheet as CSV)"
        ) from exc
    from openpyxl.utils.exceptions import InvalidFileException  # noqa: PLC0415

    try:
        # read_only streams the rows; data_only gives a formula's last computed value.
        return openpyxl.load_workbook(path, read_only=True, data_only=True)
    except OSError as exc:
        raise InputFileError(
            f"cannot open input file {str(path)!r}: {exc.strerror or exc}"
        ) from exc
    except (InvalidFileException, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise InputFileError(
            f"input file {str(path)!r} is not a readable .xlsx workbook ({exc}); "
            "save it again from Excel as .xlsx, or as CSV"
        ) from exc


def _sha256(path: Path) -> str:
    """Hex digest of the workbook's bytes: a resumed run checks the input did not change."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as raw:
            while block := raw.read(_BLOCK):
                digest.update(block)
    except OSError as exc:
        raise InputFileError(
            f"cannot open input file {str(path)!r}: {exc.strerror or exc}"
        ) from exc
    return digest.hexdigest()
