"""The results file: one row per input record, in input order.

Columns: ``RESULT_COLUMNS`` then the input's extra columns. The file is
written to a temporary name beside the target and renamed into place, so a
results file is either complete or absent, never half-written.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from batcher.models import RESULT_COLUMNS, Result


def write_results(path: Path, results: Iterable[Result], extra_columns: tuple[str, ...]) -> int:
    """Write the results file atomically; return how many rows it holds."""
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    rows = 0
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            writer = csv.writer(out)
            writer.writerow((*RESULT_COLUMNS, *extra_columns))
            for result in results:
                writer.writerow(result_row(result))
                rows += 1
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return rows


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
