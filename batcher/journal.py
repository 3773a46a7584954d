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
from collections.abc import Callable, Iterator
from pathlib import Path

from batcher.models import Outcome, Reason, Record, Result
from batcher.policy import recover_reason

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
    extras TEXT NOT NULL,
    reason TEXT NOT NULL
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
        # Only the run holding the results file's lock (batcher.lock) opens its journal, so
        # the connection takes SQLite's file lock once instead of six fcntl calls a commit,
        # and keeps the write-ahead log's index in its own memory (no -shm file). Set before
        # WAL mode, which reads it.
        self._db.execute("PRAGMA locking_mode=EXCLUSIVE")
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL: a commit is in the OS before it returns; it survives the process being
        # killed (what the journal is for), though not a power cut.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._add_reasons()

    def _add_reasons(self) -> None:
        """A journal written before reasons were stored gets its ``reason`` column."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(results)")}
        if "reason" in columns:
            return
        self._db.execute("ALTER TABLE results ADD COLUMN reason TEXT NOT NULL DEFAULT ''")
        query = "SELECT row, outcome, http_status, error FROM results"
        for row, outcome, http_status, error in self._db.execute(query).fetchall():
            reason = recover_reason(Outcome(outcome), http_status, error)
            self._db.execute("UPDATE results SET reason = ? WHERE row = ?", (reason.value, row))

    def close(self) -> None:
        self._db.close()

    def remove(self) -> None:
        """Close and delete the journal (and SQLite's side files)."""
        self.close()
        for suffix in ("", "-wal", "-shm"):
            self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)

    def integrity(self) -> str:
        """SQLite's quick check of every page: "ok", or what is wrong."""
        return str(self._db.execute("PRAGMA quick_check").fetchone()[0])

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def record(self, result: Result) -> None:
        """Store one row's final outcome, durably, before returning."""
        record = result.record
        self._db.execute(
            "INSERT OR REPLACE INTO results (row, identifier, status, category, summary,"
            " outcome, http_status, contact_id, attempts, error, extras, reason)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                json.dumps(record.extras, ensure_ascii=False) if record.extras else "[]",
                result.reason.value,
            ),
        )

    def forget(self, keep: Callable[[Reason], bool]) -> int:
        """Drop the outcomes whose reason ``keep`` rejects; return how many were dropped."""
        dropped = 0
        for (reason,) in self._db.execute("SELECT DISTINCT reason FROM results").fetchall():
            if not keep(Reason(reason)):
                cursor = self._db.execute("DELETE FROM results WHERE reason = ?", (reason,))
                dropped += cursor.rowcount
        return dropped

    def outcome_counts(self) -> dict[Outcome, int]:
        """Recorded rows per outcome."""
        counts = dict.fromkeys(Outcome, 0)
        for outcome, n in self._db.execute("SELECT outcome, count(*) FROM results GROUP BY 1"):
            counts[Outcome(outcome)] = int(n)
        return counts

    def reason_counts(self) -> dict[Reason, int]:
        """Recorded rows per reason."""
        counts = dict.fromkeys(Reason, 0)
        for reason, n in self._db.execute("SELECT reason, count(*) FROM results GROUP BY 1"):
            counts[Reason(reason)] = int(n)
        return counts

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
            " contact_id, attempts, error, extras, reason FROM results ORDER BY row"
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
            reason,
        ) in cursor:
            values = tuple(json.loads(extras)) if extras != "[]" else ()
            record = Record(row, ident, status, category, summary, values)
            yield Result(record, Outcome(outcome), http, cid, attempts, error, Reason(reason))
