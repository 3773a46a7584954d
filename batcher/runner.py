"""A whole run: input file in, one call per valid row, results file out.

The pipeline, all in one anyio task group::

    reader ──> feeder ──> WorkQueue ──> N workers ──> Pacer ──> AelystClient
                 │                          │
                 └── invalid, duplicate ────┴── final outcomes ──> Journal ──> results CSV

Every row gets exactly one final outcome, recorded in the journal the
moment it is known; the results file is written from the journal, in row
order, when the run ends or stops. Per-row trouble is an outcome, never an
exception: the only exceptions that leave ``run_batch`` are for the run as a
whole (``batcher.errors``).

A run that stops early (401, Ctrl-C, SIGTERM) keeps its journal: the same
command resumes it, sending only the rows that have no final outcome. A run
that reaches the end removes its journal; the results file is its record.
"""

from __future__ import annotations

import random
import signal
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict, Unpack

import anyio
import anyio.lowlevel

from batcher.attemptlog import Attempt, AttemptLog, NullAttemptLog
from batcher.client import AelystClient, request_body, request_url
from batcher.clock import Clock, SystemClock
from batcher.config import Settings, checked_token, read_token
from batcher.dedupe import DuplicateFinder
from batcher.errors import (
    AuthenticationFailed,
    InputFileError,
    Interrupted,
    RunAborted,
    UsageError,
)
from batcher.journal import Journal, journal_path
from batcher.limiter import Pacer, PacingConfig
from batcher.lock import RunLock
from batcher.models import (
    RESULT_COLUMNS,
    Answer,
    AnswerKind,
    Outcome,
    Plan,
    Record,
    Result,
    RunSummary,
    Secret,
)
from batcher.progress import NullProgress, Progress
from batcher.reader import InputInfo, read_records, scan_input
from batcher.validate import Invalid, check
from batcher.workqueue import Job, WorkQueue
from batcher.writer import write_input_rows, write_results

if TYPE_CHECKING:
    import httpx

#: How many of a dry run's requests are shown.
SAMPLE_REQUESTS = 3
#: 429 answers one row may get before batcher gives up on it (a guard against a server that
#: never lets anything through; each 429 already pauses the whole run for Retry-After).
MAX_THROTTLED = 100
#: Seconds in-flight requests get to finish after Ctrl-C or SIGTERM.
GRACE = 5.0
DRY_RUN = "dry run: not sent"
DUPLICATE = "duplicate of row "
NOT_SENT_AUTH = "not sent: authentication failed"
NOT_SENT_INTERRUPTED = "not sent: interrupted"
NOT_SENT_DEADLINE = "not sent: deadline"
NOT_SENT_FAILED = "not sent: the run stopped on an error"
IN_FLIGHT_INTERRUPTED = "interrupted while in flight (the call may have been applied)"
AUTH_FAILED = "authentication failed: "
#: Errors that are not final: a resumed run drops these outcomes and sends the rows again.
NOT_FINAL = ("not sent: ", "interrupted while in flight", AUTH_FAILED)


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


def default_results_path(input_path: Path) -> Path:
    """``<input stem>.results.csv`` beside the input."""
    return input_path.with_name(f"{input_path.stem}.results.csv")


def dry_run_path(input_path: Path) -> Path:
    """``<input stem>.dry-run.csv``: where a dry run writes, so a real run's results stay."""
    return input_path.with_name(f"{input_path.stem}.dry-run.csv")


class RunOptions(TypedDict, total=False):
    """The injectable parts of a run, for ``run_batch``, ``retry_batch`` and ``start_run``.

    Attributes:
        token: The API token; by default read as the settings say (environment or file).
        transport: An httpx transport to send through (tests pass a fake one).
        clock: The clock the pacer paces by (tests pass a fake one).
        progress: Where progress goes (default: nowhere).
        rng: Randomness for backoff and requeue jitter (tests pass a seeded one).
        handle_signals: Stop gracefully on SIGINT/SIGTERM (main thread only; the CLI sets it).
        attempt_log: Where each request attempt is logged (default: nowhere).
        on_plan: Called with the run's ``Plan`` before its first request (costs one more
            read of the input).
    """

    token: str
    transport: httpx.AsyncBaseTransport
    clock: Clock
    progress: Progress
    rng: random.Random
    handle_signals: bool
    attempt_log: AttemptLog
    on_plan: Callable[[Plan], None]


def run_batch(
    input_path: str | Path,
    *,
    out: str | Path | None = None,
    settings: Settings | None = None,
    dry_run: bool = False,
    restart: bool = False,
    failed_out: str | Path | None = None,
    **options: Unpack[RunOptions],
) -> RunSummary:
    """Run a whole batch and write its results file; return the run's counts.

    Args:
        input_path: The input CSV.
        out: The results file (default ``<input stem>.results.csv`` beside the input, or
            ``<input stem>.dry-run.csv`` for a dry run).
        settings: Run settings (default ``Settings()``).
        dry_run: Read and validate everything, send nothing.
        restart: Discard what an interrupted run of the same results file recorded.
        failed_out: Also write the rows worth another try here, in the input's own columns.
        options: See ``RunOptions``: token, transport, clock, progress, rng, ...

    Raises:
        UsageError: the run could not start; nothing was sent.
        AuthenticationFailed: the server answered 401; the results file lists every row.
        Interrupted: SIGINT or SIGTERM stopped the run; the results file lists every row.
    """
    settings = settings or Settings()
    source = Path(input_path)
    info = scan_input(source, encoding=settings.encoding, delimiter=settings.delimiter or None)
    default = dry_run_path(source) if dry_run else default_results_path(source)
    return start_run(
        input_source(info),
        out=Path(out) if out is not None else default,
        settings=settings,
        dry_run=dry_run,
        restart=restart,
        failed_out=Path(failed_out) if failed_out is not None else None,
        **options,
    )


def start_run(
    source: Source,
    *,
    out: Path,
    settings: Settings,
    dry_run: bool = False,
    restart: bool = False,
    failed_out: Path | None = None,
    **options: Unpack[RunOptions],
) -> RunSummary:
    """Run any ``Source`` to a results file (``run_batch`` and ``retry_batch`` share this)."""
    if out.resolve() == source.info.path.resolve():
        raise UsageError(f"the results file {str(out)!r} would overwrite the input")
    if failed_out is not None and failed_out.resolve() in (
        out.resolve(),
        source.info.path.resolve(),
    ):
        raise UsageError(f"--failed-out {str(failed_out)!r} would overwrite the input or results")
    for path, what in ((out, "the results file"), (failed_out, "--failed-out")):
        if path is not None and path.is_dir():
            raise UsageError(f"{what} {str(path)!r} is a folder; name a file")
        if path is not None and not path.parent.is_dir():
            raise UsageError(f"{what}'s folder {str(path.parent)!r} does not exist")
    token = options.get("token")
    if dry_run:
        secret = Secret("")
    elif token is not None:
        secret = checked_token(token)
    else:
        secret = read_token(settings)
    del token
    with RunLock(out):
        run = _Run(
            source=source,
            results_path=out,
            settings=settings,
            dry_run=dry_run,
            failed_out=failed_out,
            clock=options.get("clock") or SystemClock(),
            progress=options.get("progress") or NullProgress(),
            rng=options.get("rng") or random.Random(),
            attempt_log=options.get("attempt_log") or NullAttemptLog(),
        )
        on_plan = options.get("on_plan")
        run.open_journal(restart=restart)
        if on_plan is not None and not dry_run:
            on_plan(run.plan())
        return anyio.run(
            run.execute,
            secret,
            options.get("transport"),
            options.get("handle_signals", False),
            backend="asyncio",
        )


class _Run:
    """One run's state: its settings and the parts it drives."""

    def __init__(
        self,
        *,
        source: Source,
        results_path: Path,
        settings: Settings,
        dry_run: bool,
        failed_out: Path | None,
        clock: Clock,
        progress: Progress,
        rng: random.Random,
        attempt_log: AttemptLog,
    ) -> None:
        self.source = source
        self.results_path = results_path
        self.settings = settings
        self.dry_run = dry_run
        self.failed_out = failed_out
        self.clock = clock
        self.progress = progress
        self.rng = rng
        self.attempt_log = attempt_log
        self.summary = RunSummary(results_path=str(results_path))
        self.queue = WorkQueue(max_pending=max(1000, 8 * settings.concurrency))
        self.pacer = Pacer(
            PacingConfig(
                start_rate=settings.start_rate,
                ceiling=settings.rate or None,
                window=settings.window,
            ),
            clock,
        )
        #: Rows an earlier run of this job recorded for good, ascending (empty on a fresh run).
        self.done_rows: array[int] = array("q")
        #: Jobs whose request is on the wire, by row.
        self.in_flight: dict[int, Job] = {}
        self.interrupted = False
        self._work_scope: anyio.CancelScope | None = None  # the workers' scope, once running

    def open_journal(self, *, restart: bool) -> None:
        """Start a journal, or pick up the one an interrupted run of this job left."""
        path = journal_path(self.results_path)
        if self.dry_run:
            # A dry run never leaves anything a real run would resume from.
            path = path.with_name(path.name + ".dry-run")
        if path.exists() and not restart and not self.dry_run:
            journal = Journal(path)
            if journal.get_meta("input_sha256") != self.source.info.sha256:
                journal.close()
                raise UsageError(
                    f"{str(self.source.info.path)!r} changed since the interrupted run that "
                    f"wrote {str(path)!r}; to start over and send every row again, add --restart"
                )
            journal.forget(NOT_FINAL)
            self.done_rows = array("q", journal.recorded_rows())
            self.summary.resumed = len(self.done_rows)
            self.summary.outcomes = journal.outcome_counts()
            self.summary.duplicates = journal.count_errors(DUPLICATE)
            self.journal = journal
            return
        for suffix in ("", "-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
        self.journal = Journal(path)
        self.journal.set_meta("input_sha256", self.source.info.sha256)

    def plan(self) -> Plan:
        """Count what the run will do (one read of the input, nothing sent)."""
        allowed = self.settings.allowed_categories or None
        duplicates = DuplicateFinder()
        rows = to_send = invalid = repeats = 0
        try:
            for record in self.source.read():
                rows += 1
                verdict = check(record, allowed_categories=allowed)
                if isinstance(verdict, Invalid):
                    invalid += 1
                    continue
                repeat = duplicates.earlier_row(verdict) is not None
                if _contains(self.done_rows, record.row):
                    continue
                if repeat:
                    repeats += 1
                else:
                    to_send += 1
        finally:
            duplicates.close()
        return Plan(
            rows=rows,
            to_send=to_send,
            invalid=invalid,
            duplicates=repeats,
            resumed=len(self.done_rows),
            start_rate=self.pacer.rate,
            ceiling=self.settings.rate or None,
        )

    async def execute(
        self, token: Secret, transport: httpx.AsyncBaseTransport | None, handle_signals: bool
    ) -> RunSummary:
        started = self.clock.now()
        self.summary.started_at = _utc_now()
        duplicates = DuplicateFinder()
        completed = False
        try:
            async with (
                AelystClient(
                    self.settings.base_url,
                    token,
                    connections=self.settings.concurrency,
                    timeout=self.settings.timeout,
                    transport=transport,
                ) as client,
                anyio.create_task_group() as background,
            ):
                background.start_soon(self._show_progress)
                async with anyio.create_task_group() as tasks:
                    self._work_scope = tasks.cancel_scope
                    if handle_signals:
                        background.start_soon(self._watch_signals, tasks.cancel_scope)
                    if self.settings.max_duration and not self.dry_run:
                        background.start_soon(self._deadline)
                    tasks.start_soon(self._feed, duplicates)
                    for _ in range(1 if self.dry_run else self.settings.concurrency):
                        tasks.start_soon(self._work, client)
                background.cancel_scope.cancel()
            completed = True
        finally:
            if not completed and not self.summary.stopped:
                # An error or a cancellation we did not ask for: the rows it left without an
                # outcome are "not sent", the journal is kept, and the same command resumes.
                self.summary.stopped = NOT_SENT_FAILED
            duplicates.close()
            self.progress.close()
            self._finish_run(started)
        if self.summary.stopped in (NOT_SENT_AUTH, NOT_SENT_INTERRUPTED):
            raise self._abort_error()
        return self.summary

    def _finish_run(self, started: float) -> None:
        """Whatever happened: every row gets an outcome and the results file is written."""
        if self.summary.stopped:
            self._record_unsent()
        self.summary.elapsed = self.clock.now() - started
        self.summary.ended_at = _utc_now()
        write_results(self.results_path, self.journal.results(), self.source.extra_columns)
        if self.failed_out is not None:
            info = self.source.info
            retry = (r for r in self.journal.results() if needs_retry(r))
            write_input_rows(self.failed_out, retry, info.header, info.columns)
        if self.summary.stopped:
            self.journal.close()  # kept: the same command resumes from it
        else:
            self.journal.remove()

    def _abort_error(self) -> RunAborted:
        if self.summary.stopped == NOT_SENT_AUTH:
            return AuthenticationFailed(
                f"the server answered 401 (UN_AUTHORIZED): check the token in "
                f"{self.settings.token_env}; rows not sent are marked skipped, and running "
                "the same command again sends only those",
                summary=self.summary,
            )
        return Interrupted(
            "interrupted: rows not sent are marked skipped; run the same command again to "
            "send only those",
            summary=self.summary,
        )

    # -- the feeder: input rows in file order -------------------------------------------------

    async def _feed(self, duplicates: DuplicateFinder) -> None:
        allowed = self.settings.allowed_categories or None
        chunk_rows = 20_000
        records = self.source.read()
        done = self.done_rows
        try:
            while True:
                # Parsing a chunk takes a while: do it off the event loop.
                chunk = await anyio.to_thread.run_sync(_take, records, chunk_rows)
                if not chunk:
                    break
                for i, record in enumerate(chunk):
                    if i % 256 == 0:
                        await anyio.lowlevel.checkpoint()
                    resumed = _contains(done, record.row)
                    await self._feed_one(record, allowed, duplicates, resumed=resumed)
        finally:
            self.queue.close()

    async def _feed_one(
        self,
        record: Record,
        allowed: tuple[str, ...] | None,
        duplicates: DuplicateFinder,
        *,
        resumed: bool,
    ) -> None:
        verdict = check(record, allowed_categories=allowed)
        if isinstance(verdict, Invalid):
            if not resumed:
                self._record(Result(record, Outcome.INVALID, error=verdict.reason))
            return
        # Every valid row, resumed or not, updates the duplicate finder, so that
        # "duplicate of row N" means the same on a resume as on a fresh run.
        earlier = duplicates.earlier_row(verdict)
        if resumed:
            return
        if earlier is not None:
            self.summary.duplicates += 1
            self._record(Result(record, Outcome.SKIPPED, error=f"{DUPLICATE}{earlier}"))
            return
        if self.dry_run:
            if len(self.summary.sample_requests) < SAMPLE_REQUESTS:
                url = request_url(self.settings.base_url, verdict.identifier)
                self.summary.sample_requests.append(("POST", url, request_body(verdict).decode()))
            self.summary.planned += 1
            self._record(Result(record, Outcome.SKIPPED, error=DRY_RUN))
            return
        if not await self.queue.put(Job(verdict)):
            self._record(Result(record, Outcome.SKIPPED, error=self.summary.stopped))

    # -- the workers ----------------------------------------------------------------------------

    async def _work(self, client: AelystClient) -> None:
        while (job := await self.queue.get()) is not None:
            await self.pacer.acquire(job.contact)
            if self.queue.stopped:  # stopped while this worker waited for its turn
                self.pacer.release()
                self._record(self._result(job, Outcome.SKIPPED, error=self.summary.stopped))
                continue
            self.in_flight[job.request.row] = job
            sent_at = self.clock.now()
            answer = await client.send(job.request)
            latency = self.clock.now() - sent_at
            del self.in_flight[job.request.row]
            job.attempts += 1
            job.last_status = answer.http_status
            self.summary.count_answer(answer.http_status)
            self.attempt_log.attempt(
                Attempt(
                    row=job.request.row,
                    identifier=job.contact,
                    attempt=job.attempts,
                    http_status=answer.http_status,
                    latency=latency,
                    pace=self.pacer.rate,
                    error=answer.error,
                )
            )
            paused = self.pacer.paused_for
            self.pacer.observe(job.contact, answer)
            if self.pacer.paused_for > paused + 0.001:
                self.progress.note(
                    f"429 Too Many Requests: every worker waits {self.pacer.paused_for:.1f} s; "
                    f"pace now {self.pacer.rate:.1f}/s"
                )
            self._handle(job, answer)

    def _handle(self, job: Job, answer: Answer) -> None:
        """Decide what an answer means for its row: a final outcome, or another try."""
        kind = answer.kind
        if kind is AnswerKind.OK:
            self._finish(job, Outcome.OK, contact_id=answer.contact_id)
        elif kind is AnswerKind.REFUSED:
            self._finish(job, Outcome.FAILED, error=answer.error)
        elif kind is AnswerKind.AUTH:
            self._finish(job, Outcome.FAILED, error=f"{AUTH_FAILED}{answer.error}")
            self._stop(NOT_SENT_AUTH, "401 UN_AUTHORIZED: sending nothing more")
        elif kind is AnswerKind.RATE_LIMITED:
            job.throttled += 1
            if job.throttled >= MAX_THROTTLED:
                error = f"gave up after {job.throttled} answers of 429: {answer.error}"
                self._finish(job, Outcome.FAILED, error=error)
            else:
                self._set_aside(job, 0.0)  # the pacer holds every worker until Retry-After
        elif kind is AnswerKind.QUEUED:
            if job.requeues >= self.settings.max_requeues:
                error = f"still in queue (449) after {job.requeues} requeues: {answer.error}"
                self._finish(job, Outcome.DEFERRED, error=error)
            else:
                job.requeues += 1
                # Never sooner than asked ("try again in a few minutes"): jitter only adds.
                self._set_aside(job, self.settings.requeue_delay * self.rng.uniform(1.0, 1.2))
        else:
            job.failures += 1
            if job.failures >= self.settings.max_attempts:
                error = f"retries exhausted after {job.failures} attempts: {answer.error}"
                self._finish(job, Outcome.FAILED, error=error)
            else:
                self._set_aside(job, self._backoff(job.failures))

    def _backoff(self, failures: int) -> float:
        """Exponential backoff with full jitter."""
        s = self.settings
        return self.rng.uniform(0.0, min(s.backoff_max, s.backoff_base * 2 ** (failures - 1)))

    def _set_aside(self, job: Job, delay: float) -> None:
        if not self.queue.set_aside(job, delay):
            self._record(self._result(job, Outcome.SKIPPED, error=self.summary.stopped))

    def _finish(
        self, job: Job, outcome: Outcome, *, error: str = "", contact_id: int | None = None
    ) -> None:
        self._record(self._result(job, outcome, error=error, contact_id=contact_id))
        self.queue.done(job)

    def _result(
        self, job: Job, outcome: Outcome, *, error: str = "", contact_id: int | None = None
    ) -> Result:
        return Result(
            job.request.record,
            outcome,
            http_status=job.last_status,
            contact_id=contact_id,
            attempts=job.attempts,
            error=error,
        )

    # -- stopping -------------------------------------------------------------------------------

    def _stop(self, reason: str, note: str) -> None:
        """Send nothing more: every row not yet answered is recorded as not sent."""
        if self.summary.stopped:
            return
        self.progress.note(note)
        self.summary.stopped = reason
        # Requests in flight get GRACE seconds; a worker waiting for its turn (after a 429,
        # up to Retry-After) is not waited for.
        if self._work_scope is not None:
            scope = self._work_scope
            scope.deadline = min(scope.deadline, anyio.current_time() + GRACE)
        for job in self.queue.stop():
            self._record(self._result(job, Outcome.SKIPPED, error=reason))

    async def _watch_signals(self, work: anyio.CancelScope) -> None:
        """First SIGINT/SIGTERM: stop taking rows, give in-flight requests GRACE seconds.
        A second one: stop now."""
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                if self.interrupted:
                    work.cancel()
                    return
                self.interrupted = True
                self._stop(
                    NOT_SENT_INTERRUPTED,
                    f"interrupted: no new rows; requests in flight get {GRACE:.0f} s "
                    "(interrupt again to stop now)",
                )

    async def _deadline(self) -> None:
        """At --max-duration: stop taking rows, as on SIGTERM, and end with exit 1."""
        await anyio.sleep(self.settings.max_duration)
        self._stop(
            NOT_SENT_DEADLINE,
            f"deadline ({self.settings.max_duration:.0f} s) reached: no new rows; "
            f"requests in flight get {GRACE:.0f} s",
        )

    def _record_unsent(self) -> None:
        """After a stop, give every row still without an outcome one: not sent."""
        recorded = array("q", self.journal.recorded_rows())
        reason = self.summary.stopped
        for record in self.source.read():
            if _contains(recorded, record.row):
                continue
            job = self.in_flight.get(record.row)
            if job is not None:
                self._record(self._result(job, Outcome.SKIPPED, error=IN_FLIGHT_INTERRUPTED))
            else:
                self._record(Result(record, Outcome.SKIPPED, error=reason))

    def _record(self, result: Result) -> None:
        self.journal.record(result)
        self.summary.count(result)
        self.progress.advance(result.outcome)

    async def _show_progress(self) -> None:
        while True:
            self.progress.show(
                pace=self.pacer.rate,
                waiting=self.queue.waiting,
                due_in=self.queue.next_due_in,
                paused_for=self.pacer.paused_for,
            )
            await anyio.sleep(0.5)


def needs_retry(result: Result) -> bool:
    """Whether a row is worth sending again as it is: the default of ``batcher retry``.

    Yes for ``deferred``; for ``skipped`` other than duplicates and dry runs; and for
    ``failed`` with a cause that may pass later (5xx, timeout, network, retries
    exhausted, 429, authentication). Not for 400/404 or ``invalid``: the same row
    would fail the same way.
    """
    if result.outcome is Outcome.DEFERRED:
        return True
    if result.outcome is Outcome.SKIPPED:
        return not result.error.startswith((DUPLICATE, DRY_RUN))
    if result.outcome is Outcome.FAILED:
        status = result.http_status
        return status is None or status >= 500 or status in (401, 429)
    return False


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _contains(rows: array[int], row: int) -> bool:
    i = bisect_left(rows, row)
    return i < len(rows) and rows[i] == row


def _take(records: Iterator[Record], n: int) -> list[Record]:
    """Up to ``n`` records from an iterator (run in a worker thread)."""
    return list(islice(records, n))
