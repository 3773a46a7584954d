"""Feeding the run: every input record classified once, the same way for the plan and the feed.

``classify`` is the one place that decides what a record is: already done by an
interrupted run of this job (``RESUMED``), ``INVALID``, a ``DUPLICATE`` of the
contact's previous row, ``ALREADY_DONE`` by an earlier run (the state file says this
very request succeeded lately), or a request to ``SEND``. ``plan`` counts its verdicts
before the first request; ``feed`` acts on them: invalid, duplicate and already-done
rows get their outcome at once, dry-run rows are shown and skipped, the rest are
queued in file order.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from functools import partial
from itertools import islice

import anyio.lowlevel

from batcher.client import request_body, request_url
from batcher.clock import Clock
from batcher.dedupe import DuplicateFinder
from batcher.errors import InputFileError
from batcher.models import RESULT_COLUMNS, TEXTS, Outcome, Plan, Reason, Record, Request, Result
from batcher.reader import FIRST_ROWS, InputInfo, read_records
from batcher.recording import Recorder
from batcher.state import show_time
from batcher.validate import Invalid, check
from batcher.workqueue import Job, WorkQueue

#: How many of a dry run's requests are shown.
SAMPLE_REQUESTS = 3
#: Records parsed per step off the event loop; the first step is small, so the first
#: request need not wait for the whole first step (20,000 rows took 0.1 s to parse). It is
#: less than the reader's first chunk, so it never waits for the reader's second.
_CHUNK = 20_000
_FIRST_CHUNK = FIRST_ROWS // 2


@dataclass(frozen=True, slots=True)
class Source:
    """Where a run's records come from.

    Attributes:
        info: The scanned file (path, hash, header).
        total: Records the run goes through (for the progress bar).
        extra_columns: The extra columns the results file carries, in order.
        read: Makes a fresh iterator over the records, in ascending row order.
    """

    info: InputInfo
    total: int
    extra_columns: tuple[str, ...]
    read: Callable[[], Iterator[Record]]


def input_source(info: InputInfo) -> Source:
    """An input CSV as a run's source; refused if an extra column would clash in the results."""
    clashes = [c for c in info.extra_columns if c.casefold() in RESULT_COLUMNS]
    if clashes:
        raise InputFileError(
            f"input file {str(info.path)!r}: column {clashes[0]!r} has the name of one of the "
            f"results file's own columns ({', '.join(RESULT_COLUMNS)}); rename it"
        )
    return Source(info, info.records, info.extra_columns, partial(read_records, info))


class Kind(Enum):
    """What a record is to this run."""

    RESUMED = "resumed"
    INVALID = "invalid"
    DUPLICATE = "duplicate"
    ALREADY_DONE = "already_done"
    SEND = "send"


@dataclass(frozen=True, slots=True)
class Verdict:
    """One record, classified.

    Attributes:
        kind: What it is.
        record: The record.
        request: The call to make, for a valid record (None when invalid).
        why: For ``INVALID`` the rule it breaks; for ``DUPLICATE`` the error text naming
            the earlier row; for ``ALREADY_DONE`` the error text saying when.
    """

    kind: Kind
    record: Record
    request: Request | None = None
    why: str = ""


#: When exactly this request last succeeded for its contact, if lately enough to skip it
#: (``StateFile.done_since`` with the run's cut-off); None: send it.
AlreadyDone = Callable[[Request], datetime | None]


class Classifier:
    """Classifies records in ascending row order; see ``classify``. Close it when done.

    ``already_done``: how to ask the state file about a contact's first row in this input
    (None: nothing is skipped as already done).
    """

    def __init__(
        self,
        *,
        allowed_categories: tuple[str, ...],
        done_rows: array[int],
        already_done: AlreadyDone | None = None,
    ) -> None:
        self._allowed = allowed_categories or None
        self._done = done_rows
        self._already_done = already_done
        self._duplicates = DuplicateFinder()

    def classify(self, record: Record) -> Verdict:
        """What ``record`` is to this run (rows must come in ascending order)."""
        resumed = contains(self._done, record.row)
        verdict = check(record, allowed_categories=self._allowed)
        if isinstance(verdict, Invalid):
            kind = Kind.RESUMED if resumed else Kind.INVALID
            return Verdict(kind, record, why=verdict.reason)
        # Every valid row, resumed or not, updates the duplicate finder, so that
        # "duplicate of row N" means the same on a resume as on a fresh run.
        previous, same = self._duplicates.compare(verdict)
        if resumed:
            return Verdict(Kind.RESUMED, record, verdict)
        if same:
            return Verdict(Kind.DUPLICATE, record, verdict, f"{TEXTS[Reason.DUPLICATE]}{previous}")
        # Only a contact's first row here is compared with the state: after an earlier row
        # of this input, the contact is in whatever state that row leaves it (open, then a
        # close that succeeded last night: the close must go again).
        if previous is None and self._already_done is not None:
            when = self._already_done(verdict)
            if when is not None:
                why = f"{TEXTS[Reason.ALREADY_DONE]}{show_time(when)}"
                return Verdict(Kind.ALREADY_DONE, record, verdict, why)
        return Verdict(Kind.SEND, record, verdict)

    def close(self) -> None:
        self._duplicates.close()


def plan(
    source: Source,
    *,
    allowed_categories: tuple[str, ...],
    done_rows: array[int],
    start_rate: float,
    ceiling: float | None,
    already_done: AlreadyDone | None = None,
) -> Plan:
    """Count what the run will do (one read of the input, nothing sent)."""
    counts = dict.fromkeys(Kind, 0)
    classifier = Classifier(
        allowed_categories=allowed_categories, done_rows=done_rows, already_done=already_done
    )
    try:
        for record in source.read():
            counts[classifier.classify(record).kind] += 1
    finally:
        classifier.close()
    return Plan(
        rows=sum(counts.values()),
        to_send=counts[Kind.SEND],
        invalid=counts[Kind.INVALID],
        duplicates=counts[Kind.DUPLICATE],
        resumed=counts[Kind.RESUMED],
        start_rate=start_rate,
        ceiling=ceiling,
        already_done=counts[Kind.ALREADY_DONE],
    )


@dataclass(slots=True)
class Feeder:
    """Reads the source into the run: outcomes for rows that are not sent, jobs for the rest.

    Attributes:
        source: The records.
        classifier: How each is classified.
        queue: Where rows to send go.
        recorder: Where rows that are not sent get their outcome.
        clock: Runs the parsing of each chunk off the event loop.
        dry_run: Send nothing: valid rows are skipped and the first few requests kept.
        base_url: For the dry run's sample requests.
        samples: The dry run's sample requests: (method, URL, JSON body).
    """

    source: Source
    classifier: Classifier
    queue: WorkQueue
    recorder: Recorder
    clock: Clock
    dry_run: bool = False
    base_url: str = ""
    samples: list[tuple[str, str, str]] | None = None

    async def feed(self) -> None:
        """Feed every record; close the queue when done (or when the run stopped)."""
        records = self.source.read()
        size = _FIRST_CHUNK
        try:
            while chunk := await self.clock.run_sync(_take, records, size):
                size = _CHUNK
                for i, record in enumerate(chunk):
                    if i % 256 == 0:
                        await anyio.lowlevel.checkpoint()
                    if not await self._feed_one(self.classifier.classify(record)):
                        return  # the run stopped: it records the rows never queued
        finally:
            self.queue.close()

    async def _feed_one(self, verdict: Verdict) -> bool:
        record, request = verdict.record, verdict.request
        if verdict.kind in _NOT_SENT:
            outcome, reason = _NOT_SENT[verdict.kind]
            self.recorder.record(Result(record, outcome, error=verdict.why, reason=reason))
        elif verdict.kind is Kind.SEND and request is not None:
            if not self.dry_run:
                return await self.queue.put(Job(request))
            if self.samples is not None and len(self.samples) < SAMPLE_REQUESTS:
                url = request_url(self.base_url, request.identifier)
                self.samples.append(("POST", url, request_body(request).decode()))
            self.recorder.record(
                Result(record, Outcome.SKIPPED, error=TEXTS[Reason.DRY_RUN], reason=Reason.DRY_RUN)
            )
        return True


#: What a record that is not sent ends as, by its verdict (its error is the verdict's why).
_NOT_SENT = {
    Kind.INVALID: (Outcome.INVALID, Reason.INVALID),
    Kind.DUPLICATE: (Outcome.SKIPPED, Reason.DUPLICATE),
    Kind.ALREADY_DONE: (Outcome.SKIPPED, Reason.ALREADY_DONE),
}


def contains(rows: array[int], row: int) -> bool:
    """Whether ``row`` is in the ascending array ``rows``."""
    i = bisect_left(rows, row)
    return i < len(rows) and rows[i] == row


def _take(records: Iterator[Record], n: int) -> list[Record]:
    """Up to ``n`` records from an iterator (run off the event loop)."""
    return list(islice(records, n))
