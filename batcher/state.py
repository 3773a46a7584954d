"""The state file: the last request that succeeded for each identifier, kept from run to run.

A nightly job that is fed a fresh export every night (``--state FILE``) remembers
here what went through, so that ``--skip-done-within 7d`` can leave out the rows
that ask for exactly what already succeeded for their contact, instead of sending
them again (spending the rate budget and, for a close, adding another closing note).

It is an SQLite database, like the journal: write-ahead log, one committed
transaction per success (a killed run loses nothing that succeeded), and
``INSERT OR REPLACE`` keyed by identifier, so it holds one row per identifier (the
latest success) and stays as large as the set of contacts, however many nights it
sees. Its ``meta`` table holds the format version. While a run uses it, it is
locked (``STATE.lock``, the same ``flock`` as the results file's), so a second job
using it is refused; a dry run and ``batcher state`` only read it.

It holds the identifier, what was asked (status, category, summary), when (UTC) and
the contact id; never the API token, never a row's other columns.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from batcher.errors import UsageError
from batcher.lock import RunLock
from batcher.models import Request

#: The layout of the tables below; a file of another version is refused, never rewritten.
FORMAT_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS done (
    identifier TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    category TEXT NOT NULL,
    summary TEXT NOT NULL,
    done_at REAL NOT NULL,
    contact_id INTEGER
);
CREATE INDEX IF NOT EXISTS done_by_time ON done (done_at);
"""


@dataclass(frozen=True, slots=True)
class Done:
    """The last request that succeeded for one identifier.

    Attributes:
        identifier: The row's identifier, as written in the input.
        status: ``open`` or ``close``.
        category: The closing note's name, or "".
        summary: The summary, or "".
        done_at: When the 200 was recorded (UTC).
        contact_id: The ``contactId`` the API answered, or None.
    """

    identifier: str
    status: str
    category: str
    summary: str
    done_at: datetime
    contact_id: int | None


@dataclass(frozen=True, slots=True)
class StateStats:
    """What a state file holds, for ``batcher state``.

    Attributes:
        rows: Identifiers remembered (one row each).
        oldest: The oldest success remembered, or None when there is none.
        newest: The newest success remembered, or None when there is none.
        statuses: Identifiers per status last asked (``open``, ``close``).
    """

    rows: int
    oldest: datetime | None
    newest: datetime | None
    statuses: dict[str, int]


class StateFile:
    """One state file, open for a run (``readonly=False``) or for reading only."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        if readonly:
            if not path.is_file():
                raise UsageError(f"no state file at {str(path)!r}")
            target, uri = path.absolute().as_uri() + "?mode=ro", True
        else:
            target, uri = str(path), False
        self._db = sqlite3.connect(target, uri=uri, isolation_level=None, check_same_thread=False)
        try:
            if not readonly:
                self._db.execute("PRAGMA journal_mode=WAL")
                # As in the journal: a commit survives the process being killed.
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.executescript(_SCHEMA)
                self._db.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('format', ?)",
                    (FORMAT_VERSION,),
                )
            # Every page: damage further in would otherwise surface mid-run, as a crash.
            damage = str(self._db.execute("PRAGMA quick_check").fetchone()[0])
            found = self._db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise UsageError(f"{str(path)!r} is not a batcher state file ({exc})") from None
        if damage != "ok":
            self._db.close()
            raise UsageError(
                f"the state file {str(path)!r} is damaged ({damage}); move it away (a new one "
                "is started: rows already done are sent once more) or restore it"
            )
        if found is None or found[0] != FORMAT_VERSION:
            self._db.close()
            version = "none" if found is None else repr(found[0])
            raise UsageError(
                f"{str(path)!r} is not a batcher state file of format {FORMAT_VERSION} "
                f"(format: {version}); name another --state"
            )

    def close(self) -> None:
        self._db.close()

    def remember(self, request: Request, contact_id: int | None, when: datetime) -> None:
        """Record that ``request`` succeeded at ``when``, durably, before returning."""
        self._db.execute(
            "INSERT OR REPLACE INTO done (identifier, status, category, summary, done_at,"
            " contact_id) VALUES (?, ?, ?, ?, ?, ?)",
            (
                request.identifier,
                request.status,
                request.category,
                request.summary,
                when.timestamp(),
                contact_id,
            ),
        )

    def last(self, identifier: str) -> Done | None:
        """The last success recorded for ``identifier``, or None."""
        found = self._db.execute(
            "SELECT identifier, status, category, summary, done_at, contact_id FROM done"
            " WHERE identifier = ?",
            (identifier,),
        ).fetchone()
        if found is None:
            return None
        ident, status, category, summary, done_at, contact_id = found
        return Done(ident, status, category, summary, _utc(done_at), contact_id)

    def done_since(self, request: Request, since: datetime) -> datetime | None:
        """When exactly ``request`` last succeeded for its contact, if at or after ``since``."""
        done = self.last(request.identifier)
        if done is None or done.done_at < since:
            return None
        if (done.status, done.category, done.summary) != (
            request.status,
            request.category,
            request.summary,
        ):
            return None
        return done.done_at

    def stats(self) -> StateStats:
        rows, oldest, newest = self._db.execute(
            "SELECT count(*), min(done_at), max(done_at) FROM done"
        ).fetchone()
        statuses = {
            str(status): int(n)
            for status, n in self._db.execute(
                "SELECT status, count(*) FROM done GROUP BY 1 ORDER BY 1"
            )
        }
        return StateStats(
            int(rows),
            None if oldest is None else _utc(oldest),
            None if newest is None else _utc(newest),
            statuses,
        )


@contextmanager
def use_state(path: str, *, dry_run: bool) -> Iterator[StateFile | None]:
    """The state file a run uses, locked for it, or None when there is none.

    A dry run only reads it (no lock, nothing written), and a state file that does not
    exist yet is, to a dry run, one that remembers nothing.
    """
    if not path:
        yield None
        return
    where = Path(path)
    if where.is_dir():
        raise UsageError(f"--state {path!r} is a folder; name a file")
    if dry_run:
        if not where.exists():
            yield None
            return
        state = StateFile(where, readonly=True)
        try:
            yield state
        finally:
            state.close()
        return
    if not where.parent.is_dir():
        raise UsageError(f"--state's folder {str(where.parent)!r} does not exist")
    advice = "wait for it to finish; jobs that share a state file must not run at once"
    with RunLock(where, advice=advice):
        state = StateFile(where)
        try:
            yield state
        finally:
            state.close()


def show_time(when: datetime) -> str:
    """``2026-11-28 02:14 UTC``: how the state's times are shown to people."""
    return f"{when.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)
