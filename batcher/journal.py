"""Every row's final outcome, on disk the moment it is known.

The journal is an SQLite database beside the results file
(``RESULTS.csv.journal``). Each outcome is its own committed transaction in
write-ahead-log mode, so a process killed at any moment (``kill -9``) loses
nothing that was recorded. It is also how the results file comes out in
input order in bounded memory: rows are recorded in whatever order they
finish and read back through the primary key, in row order.

The journal holds the rows' own values, never the API token.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from batcher.models import Outcome, Record, Result

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    row INTEGER PRIMARY KEY,
    identifier TEXT NOT NULL,
    status TEXT NOT NULL,
    category TEXT NOT NULL,
    summary TEXT NOT NULL,
    outcome TEXT NOT NULL,
    http_status INTEGER,
    contact_id INTEGER,
    attempts INTEGER NOT NULL,
    error TEXT NOT NULL,
    extras TEXT NOT NULL
);
"""


def journal_path(results_path: Path) -> Path:
    """Where the journal of a results file lives."""
    return results_path.with_name(results_path.name + ".journal")


class Journal:
    """An append-only record of final outcomes, read back in row order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # isolation_level=None: every statement commits at once (autocommit).
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL: a commit is in the OS before it returns; it survives the process being
        # killed (what the journal is for), though not a power cut.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def remove(self) -> None:
        """Close and delete the journal (and SQLite's side files)."""
        self.close()
        for suffix in ("", "-wal", "-shm"):
            self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def record(self, result: Result) -> None:
        """Store one row's final outcome, durably, before returning."""
        record = result.record
        self._db.execute(
            "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.row,
                record.identifier,
                record.status,
                record.category,
                record.summary,
                result.outcome.value,
                result.http_status,
                result.contact_id,
                result.attempts,
                result.error,
                json.dumps(record.extras, ensure_ascii=False),
            ),
        )

    def forget(self, error_prefixes: tuple[str, ...]) -> int:
        """Drop outcomes that are not final (rows a stopped run did not get answered)."""
        dropped = 0
        for prefix in error_prefixes:
            cursor = self._db.execute(
                "DELETE FROM results WHERE substr(error, 1, ?) = ?", (len(prefix), prefix)
            )
            dropped += cursor.rowcount
        return dropped

    def outcome_counts(self) -> dict[Outcome, int]:
        """Recorded rows per outcome."""
        counts = dict.fromkeys(Outcome, 0)
        for outcome, n in self._db.execute("SELECT outcome, count(*) FROM results GROUP BY 1"):
            counts[Outcome(outcome)] = int(n)
        return counts

    def count_errors(self, prefix: str) -> int:
        """Recorded rows whose error starts with ``prefix``."""
        query = "SELECT count(*) FROM results WHERE substr(error, 1, ?) = ?"
        return int(self._db.execute(query, (len(prefix), prefix)).fetchone()[0])

    def __len__(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM results").fetchone()[0])

    def recorded_rows(self) -> Iterator[int]:
        """Row numbers that have an outcome, ascending."""
        for (row,) in self._db.execute("SELECT row FROM results ORDER BY row"):
            yield int(row)

    def results(self) -> Iterator[Result]:
        """Every recorded outcome, in row order, streamed."""
        cursor = self._db.execute(
            "SELECT row, identifier, status, category, summary, outcome, http_status,"
            " contact_id, attempts, error, extras FROM results ORDER BY row"
        )
        for (
            row,
            ident,
            status,
            category,
            summary,
            outcome,
            http,
            cid,
            attempts,
            error,
            extras,
        ) in cursor:
            record = Record(row, ident, status, category, summary, tuple(json.loads(extras)))
            yield Result(record, Outcome(outcome), http, cid, attempts, error)
