"""Recording a row's final outcome: journal, summary and progress, in one call.

Whatever part of the run decides an outcome (the feeder for invalid and
duplicate rows, a worker for an answer, the stop for rows not sent), it hands
the ``Result`` to ``Recorder.record``, which writes it to the journal first
(durable before anything else happens), then counts it and moves the bar.

A row the run stopped before sending gets its outcome too (``skipped``, not
sent), but it does not move the bar: the bar counts rows done, and after a
Ctrl-C it stays where the work stopped instead of jumping to 100 %.
A row answered 200 is also remembered in the state file (``--state``), just before
its journal entry: a run killed between the two leaves a row that the resume finds
already done, rather than one that the next night sends again.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from batcher.errors import StorageError
from batcher.journal import Journal
from batcher.models import TEXTS, Outcome, Reason, Result, RunSummary
from batcher.progress import Progress
from batcher.state import StateFile
from batcher.workqueue import Job


class Recorder:
    """Where final outcomes go; see the module docstring."""

    def __init__(
        self,
        journal: Journal,
        summary: RunSummary,
        progress: Progress,
        state: StateFile | None = None,
    ) -> None:
        self.journal = journal
        self.summary = summary
        self._progress = progress
        self._state = state

    def record(self, result: Result, *, done: bool = True) -> None:
        """Store one row's final outcome durably, count it, and show it; ``done=False`` for a
        row the run stopped before sending: the bar does not count it.

        A journal that cannot be written (a full disk) stops the run: ``StorageError``.
        """
        with self._writing("the journal", self.journal.path):
            self.journal.record(result)
        self.summary.count(result)
        if done:
            self._progress.advance(result.outcome)

    @contextmanager
    def _writing(self, what: str, path: Path) -> Iterator[None]:
        """A write that a full disk turns into a resumable stop (``StorageError``)."""
        try:
            yield
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(
                f"cannot write {what} {str(path)!r}: {exc}; what was recorded is kept: free "
                "some space, then run the same command to resume",
                summary=self.summary,
            ) from exc

    def answered(self, http_status: int | None) -> None:
        """One request got this answer (None: no answer at all)."""
        self.summary.count_answer(http_status)

    def record_job(
        self,
        job: Job,
        outcome: Outcome,
        reason: Reason,
        *,
        error: str = "",
        contact_id: int | None = None,
        done: bool = True,
    ) -> None:
        """A queued row's final outcome, with what it had been through."""
        tries = job.tries
        if outcome is Outcome.OK and self._state is not None:
            with self._writing("the state file", self._state.path):
                self._state.remember(job.request, contact_id, datetime.now(UTC))
        self.record(
            Result(
                job.request.record,
                outcome,
                http_status=tries.last_status,
                contact_id=contact_id,
                attempts=tries.attempts,
                error=error,
                reason=reason,
            ),
            done=done,
        )

    def not_sent(self, job: Job, reason: Reason) -> None:
        """A queued row the run stopped before sending (again): if it had been sent
        before, the error says so and what the last try got."""
        error = TEXTS[reason]
        tries = job.tries
        if tries.attempts:
            last = "no answer" if tries.last_status is None else f"a {tries.last_status}"
            error += f" again (sent {tries.attempts} times; the last got {last})"
        self.record_job(job, Outcome.SKIPPED, reason, error=error, done=False)
