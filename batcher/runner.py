"""A whole run: input file in, one call per valid row, results file out.

The pipeline, all in one anyio task group::

    reader ──> feeder ──> WorkQueue ──> N workers ──> Pacer ──> AelystClient
                 │                          │
                 └── invalid, duplicate ────┴── final outcomes ──> Journal ──> results CSV

Every row gets exactly one final outcome, recorded in the journal the
moment it is known; the results file is written from the journal, in row
order, when the run ends (or stops). Per-row trouble is an outcome, never an
exception: the only exceptions that leave ``run_batch`` are for the run as a
whole (``batcher.errors``).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from functools import partial
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel

from batcher.client import AelystClient, request_body, request_url
from batcher.clock import Clock, SystemClock
from batcher.config import Settings, read_token
from batcher.dedupe import DuplicateFinder
from batcher.errors import AuthenticationFailed, UsageError
from batcher.journal import Journal, journal_path
from batcher.limiter import Pacer, PacingConfig
from batcher.models import Answer, AnswerKind, Outcome, Record, Result, RunSummary
from batcher.progress import NullProgress, Progress
from batcher.reader import InputInfo, read_records, scan_input
from batcher.validate import Invalid, check
from batcher.workqueue import Job, WorkQueue
from batcher.writer import write_results

if TYPE_CHECKING:
    import httpx

#: How many of a dry run's requests are shown.
SAMPLE_REQUESTS = 3
#: 429 answers one row may get before batcher gives up on it (a guard against a server that
#: never lets anything through; each 429 already pauses the whole run for Retry-After).
MAX_THROTTLED = 100
#: Error texts of rows not sent because the run stopped; such rows are sent on a resume.
NOT_SENT_AUTH = "not sent: authentication failed"
DRY_RUN = "dry run: not sent"


def default_results_path(input_path: Path) -> Path:
    """``<input stem>.results.csv`` beside the input."""
    return input_path.with_name(f"{input_path.stem}.results.csv")


def run_batch(
    input_path: str | Path,
    *,
    out: str | Path | None = None,
    settings: Settings | None = None,
    dry_run: bool = False,
    token: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Clock | None = None,
    progress: Progress | None = None,
    rng: random.Random | None = None,
) -> RunSummary:
    """Run a whole batch and write its results file; return the run's counts.

    Args:
        input_path: The input CSV.
        out: The results file (default ``<input stem>.results.csv`` beside the input).
        settings: Run settings (default ``Settings()``).
        dry_run: Read and validate everything, send nothing.
        token: The API token; by default read as ``settings`` says (environment or file).
        transport: An httpx transport to send through (tests pass a fake one).
        clock: The clock the pacer paces by (tests pass a fake one).
        progress: Where progress goes (default: nowhere).
        rng: Randomness for backoff and requeue jitter (tests pass a seeded one).

    Raises:
        UsageError: the run could not start; nothing was sent.
        AuthenticationFailed: the server answered 401; the results file lists every row.
    """
    run, secret = _prepare(
        input_path,
        out=out,
        settings=settings,
        dry_run=dry_run,
        token=token,
        clock=clock,
        progress=progress,
        rng=rng,
    )
    return anyio.run(run.execute, secret, transport, backend="asyncio")


async def run_batch_async(
    input_path: str | Path,
    *,
    out: str | Path | None = None,
    settings: Settings | None = None,
    dry_run: bool = False,
    token: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Clock | None = None,
    progress: Progress | None = None,
    rng: random.Random | None = None,
) -> RunSummary:
    """``run_batch`` for callers already inside an event loop (asyncio)."""
    prepare = partial(
        _prepare,
        input_path,
        out=out,
        settings=settings,
        dry_run=dry_run,
        token=token,
        clock=clock,
        progress=progress,
        rng=rng,
    )
    run, secret = await anyio.to_thread.run_sync(prepare)
    return await run.execute(secret, transport)


def _prepare(
    input_path: str | Path,
    *,
    out: str | Path | None,
    settings: Settings | None,
    dry_run: bool,
    token: str | None,
    clock: Clock | None,
    progress: Progress | None,
    rng: random.Random | None,
) -> tuple[_Run, str]:
    """Everything that can fail before a request is sent: input, paths, token."""
    settings = settings or Settings()
    source = Path(input_path)
    results_path = Path(out) if out is not None else default_results_path(source)
    info = scan_input(source, encoding=settings.encoding, delimiter=settings.delimiter or None)
    if results_path.resolve() == source.resolve():
        raise UsageError(f"the results file {str(results_path)!r} would overwrite the input")
    if not results_path.parent.is_dir():
        raise UsageError(f"the results file's folder {str(results_path.parent)!r} does not exist")
    if not dry_run and token is None:
        token = read_token(settings)
    run = _Run(
        info=info,
        results_path=results_path,
        settings=settings,
        dry_run=dry_run,
        clock=clock or SystemClock(),
        progress=progress or NullProgress(),
        rng=rng or random.Random(),
    )
    return run, token or ""


class _Run:
    """One run's state: its settings and the parts it drives."""

    def __init__(
        self,
        *,
        info: InputInfo,
        results_path: Path,
        settings: Settings,
        dry_run: bool,
        clock: Clock,
        progress: Progress,
        rng: random.Random,
    ) -> None:
        self.info = info
        self.results_path = results_path
        self.settings = settings
        self.dry_run = dry_run
        self.clock = clock
        self.progress = progress
        self.rng = rng
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

    async def execute(self, token: str, transport: httpx.AsyncBaseTransport | None) -> RunSummary:
        started = self.clock.now()
        self.journal = self._open_journal()
        duplicates = DuplicateFinder()
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
                    tasks.start_soon(self._feed, duplicates)
                    for _ in range(1 if self.dry_run else self.settings.concurrency):
                        tasks.start_soon(self._work, client)
                background.cancel_scope.cancel()
        finally:
            duplicates.close()
            self.progress.close()
            self.summary.elapsed = self.clock.now() - started
            write_results(self.results_path, self.journal.results(), self.info.extra_columns)
            if self.summary.stopped:
                self.journal.close()  # kept: the same command resumes from it
            else:
                self.journal.remove()
        if self.summary.stopped:
            raise AuthenticationFailed(
                f"the server answered 401 (UN_AUTHORIZED): check the token in "
                f"{self.settings.token_env}; rows not sent are marked skipped, and running "
                "the same command again sends them",
                summary=self.summary,
            )
        return self.summary

    def _open_journal(self) -> Journal:
        path = journal_path(self.results_path)
        if self.dry_run:
            # A dry run never leaves anything a real run would resume from.
            path = path.with_name(path.name + ".dry-run")
        for suffix in ("", "-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
        journal = Journal(path)
        journal.set_meta("input_sha256", self.info.sha256)
        return journal

    # -- the feeder: input rows in file order -------------------------------------------------

    async def _feed(self, duplicates: DuplicateFinder) -> None:
        allowed = self.settings.allowed_categories or None
        chunk_rows = 20_000
        records = read_records(self.info, chunk_rows=chunk_rows)
        try:
            while True:
                # Parsing a chunk takes a while: do it off the event loop.
                chunk = await anyio.to_thread.run_sync(_take, records, chunk_rows)
                if not chunk:
                    break
                for i, record in enumerate(chunk):
                    if i % 256 == 0:
                        await anyio.lowlevel.checkpoint()
                    await self._feed_one(record, allowed, duplicates)
        finally:
            self.queue.close()

    async def _feed_one(
        self, record: Record, allowed: tuple[str, ...] | None, duplicates: DuplicateFinder
    ) -> None:
        verdict = check(record, allowed_categories=allowed)
        if isinstance(verdict, Invalid):
            self._record(Result(record, Outcome.INVALID, error=verdict.reason))
            return
        earlier = duplicates.earlier_row(verdict)
        if earlier is not None:
            self.summary.duplicates += 1
            self._record(Result(record, Outcome.SKIPPED, error=f"duplicate of row {earlier}"))
            return
        if self.dry_run:
            if len(self.summary.sample_requests) < SAMPLE_REQUESTS:
                url = request_url(self.settings.base_url, verdict.identifier)
                self.summary.sample_requests.append(("POST", url, request_body(verdict).decode()))
            self._record(Result(record, Outcome.SKIPPED, error=DRY_RUN))
            return
        if not await self.queue.put(Job(verdict)):
            self._record(Result(record, Outcome.SKIPPED, error=self.summary.stopped))

    # -- the workers ----------------------------------------------------------------------------

    async def _work(self, client: AelystClient) -> None:
        while (job := await self.queue.get()) is not None:
            await self.pacer.acquire(job.contact)
            answer = await client.send(job.request)
            job.attempts += 1
            job.last_status = answer.http_status
            job.last_error = answer.error
            self.summary.count_answer(answer.http_status)
            self.pacer.observe(job.contact, answer)
            self._handle(job, answer)

    def _handle(self, job: Job, answer: Answer) -> None:
        """Decide what an answer means for its row: a final outcome, or another try."""
        kind = answer.kind
        if kind is AnswerKind.OK:
            self._finish(job, Outcome.OK, contact_id=answer.contact_id)
        elif kind is AnswerKind.REFUSED:
            self._finish(job, Outcome.FAILED, error=answer.error)
        elif kind is AnswerKind.AUTH:
            self._finish(job, Outcome.FAILED, error=f"authentication failed: {answer.error}")
            self._stop(NOT_SENT_AUTH)
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
                self._set_aside(job, self.settings.requeue_delay * self.rng.uniform(0.9, 1.1))
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

    def _stop(self, reason: str) -> None:
        """Send nothing more: every row not yet answered is recorded as not sent."""
        if self.summary.stopped:
            return
        self.summary.stopped = reason
        for job in self.queue.stop():
            self._record(self._result(job, Outcome.SKIPPED, error=reason))

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


def _take(records: Iterator[Record], n: int) -> list[Record]:
    """Up to ``n`` records from an iterator (run in a worker thread)."""
    return list(islice(records, n))
