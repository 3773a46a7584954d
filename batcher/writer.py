"""The results file: one row per input record, in input order.

Columns: ``RESULT_COLUMNS`` then the input's extra columns. Every file here is
written to a temporary name beside the target and renamed into place, so it
is either complete or absent, never half-written.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from batcher.models import RESULT_COLUMNS, Result


def write_results(path: Path, results: Iterable[Result], extra_columns: tuple[str, ...]) -> int:
    """Write the results file atomically; return how many rows it holds."""
    with _atomic_csv(path) as writer:
        writer.writerow((*RESULT_COLUMNS, *extra_columns))
        return _write_rows(writer, (result_row(result) for result in results))


def result_row(result: Result) -> tuple[object, ...]:
    """One results-file row: the contract's columns, then the input's extra values."""
    record = result.record
    return (
        record.row,
        record.identifier,
        record.status,
        record.category,
        record.summary,
        result.outcome.value,
        "" if result.http_status is None else result.http_status,
        "" if result.contact_id is None else result.contact_id,
        result.attempts,
        result.error,
        *record.extras,
    )


def write_input_rows(
    path: Path,
    results: Iterable[Result],
    header: tuple[str, ...],
    columns: dict[str, int | None],
) -> int:
    """Write rows back in the input's own columns (for ``--failed-out``); return the count."""
    where = {index: name for name, index in columns.items() if index is not None}
    extra_at = [i for i in range(len(header)) if i not in where]

    def cells(result: Result) -> list[str]:
        record = result.record
        row = [""] * len(header)
        for index, name in where.items():
            row[index] = getattr(record, name)
        for index, value in zip(extra_at, record.extras, strict=False):
            row[index] = value
        return row

    with _atomic_csv(path) as writer:
        writer.writerow(header)
        return _write_rows(writer, (cells(result) for result in results))


def _write_rows(writer: Any, rows: Iterable[Iterable[object]]) -> int:
    count = 0
    for row in rows:
        writer.writerow(row)
        count += 1
    return count


@contextmanager
def _atomic_csv(path: Path) -> Iterator[Any]:
    """A csv writer on a temporary file that replaces ``path`` only if all went well."""
    with atomic_text(path, newline="") as out:
        yield csv.writer(out)


@contextmanager
def atomic_text(path: Path, *, newline: str | None = None) -> Iterator[TextIO]:
    """A text file at a temporary name beside ``path``, renamed over it only if all went well.

    The temporary file is created exclusively (a name planted beforehand is never written
    through), and given the mode the umask allows, as any new file would have: mkstemp's
    own 0600 would keep a shared results folder from reading it.
    """
    handle, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(handle, 0o666 & ~_UMASK)
        with os.fdopen(handle, "w", encoding="utf-8", newline=newline) as out:
            yield out
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def remove_stale_temps(path: Path) -> int:
    """Delete temporary files a killed write to ``path`` left behind; return how many."""
    removed = 0
    for stale in path.parent.glob(f"{_temp_prefix(path)}*.tmp"):
        stale.unlink(missing_ok=True)
        removed += 1
    return removed


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: The process's umask, read once at import (reading it means setting it).
_UMASK = _read_umask()
