"""Finding rows that would repeat the call just made for the same contact.

A row is an exact duplicate when the previous valid row for the same contact
asks for the very same thing (status, category and summary). Only the
previous one counts: ``open``, ``close``, ``open`` on one contact keeps all
three, because skipping the last would leave the conversation closed.

The last request per contact lives in a dict for the first ``IN_MEMORY``
contacts (most inputs), then in a private temporary SQLite database (an empty
file name), which keeps a small cache in memory and spills the rest to disk,
so a million distinct contacts do not grow the process.
"""

from __future__ import annotations

import sqlite3

from batcher.models import Request

_BATCH = 5000  # rows per transaction: this table needs no durability, only speed
#: Contacts kept in a dict before moving to SQLite: a few MB, and each lookup about 10 times
#: cheaper than SQLite's (two statements a row, in the plan and again in the run).
IN_MEMORY = 20_000


class DuplicateFinder:
    """Remembers the last request per contact; see the module docstring."""

    def __init__(self, in_memory: int = IN_MEMORY) -> None:
        self._in_memory = in_memory
        #: contact -> (fingerprint, row) until there are more than ``in_memory`` contacts.
        self._recent: dict[str, tuple[str, int]] | None = {}
        self._db = sqlite3.connect("")
        self._db.execute(
            "CREATE TABLE last"
            " (contact TEXT PRIMARY KEY, request TEXT NOT NULL, row INTEGER NOT NULL)"
        )
        self._pending = 0

    def earlier_row(self, request: Request) -> int | None:
        """The row this one duplicates, or None; either way it becomes the contact's last."""
        previous, same = self.compare(request)
        return previous if same else None

    def compare(self, request: Request) -> tuple[int | None, bool]:
        """The contact's previous valid row (None: this is its first) and whether it asked
        for the very same thing; unless it did, this row becomes the contact's last."""
        fingerprint = f"{request.status}\x1f{request.category}\x1f{request.summary}"
        last = self._last(request.identifier)
        if last is not None and last[0] == fingerprint:
            return last[1], True
        self._remember(request.identifier, fingerprint, request.row)
        return (None if last is None else last[1]), False

    def _last(self, contact: str) -> tuple[str, int] | None:
        """The contact's last (fingerprint, row), from wherever it is kept."""
        if self._recent is not None:
            return self._recent.get(contact)
        found = self._db.execute("SELECT request, row FROM last WHERE contact = ?", (contact,))
        row = found.fetchone()
        return None if row is None else (str(row[0]), int(row[1]))

    def _remember(self, contact: str, fingerprint: str, row: int) -> None:
        recent = self._recent
        if recent is not None:
            recent[contact] = (fingerprint, row)
            if len(recent) > self._in_memory:
                self._move_to_disk(recent)
            return
        self._db.execute(
            "INSERT OR REPLACE INTO last VALUES (?, ?, ?)", (contact, fingerprint, row)
        )
        self._pending += 1
        if self._pending >= _BATCH:
            self._db.commit()
            self._pending = 0

    def _move_to_disk(self, recent: dict[str, tuple[str, int]]) -> None:
        self._db.executemany(
            "INSERT INTO last VALUES (?, ?, ?)",
            ((contact, fingerprint, row) for contact, (fingerprint, row) in recent.items()),
        )
        self._db.commit()
        self._recent = None

    def close(self) -> None:
        self._db.close()
