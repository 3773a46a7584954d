"""Recording a row's final outcome: journal, summary and progress, in one call.

Whatever part of the run decides an outcome (the feeder for invalid and
duplicate rows, a worker for an answer, the stop for rows not sent), it hands
the ``Result`` to ``Recorder.record``, which writes it to the journal first
(durable before anything else happens), then counts it and moves the bar.

A row answered 200 is also remembered in the state file (``--state``), just before
its journal entry: a run killed between the two leaves a row that the resume finds
already done, rather than one that the next night sends again.
"""

from __future__ import annotations

from datetime import UTC, datetime

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

    def record(self, result: Result) -> None:
        """Store one row's final outcome durably, count it, and show it."""
        self.journal.record(result)
        self.summary.count(result)
        self._progress.advance(result.outcome)

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
    ) -> None:
        """A queued row's final outcome, with what it had been through."""
        tries = job.tries
        if outcome is Outcome.OK and self._state is not None:
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
            )
        )

    def not_sent(self, job: Job, reason: Reason) -> None:
        """A queued row the run stopped before sending (again)."""
        self.record_job(job, Outcome.SKIPPED, reason, error=TEXTS[reason])
