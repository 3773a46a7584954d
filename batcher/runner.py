"""A whole run: input file in, one call per valid row, results file out.

The pipeline, all in one anyio task group::

    reader ──> Feeder ──> WorkQueue ──> Workers ──> Pacer ──> AelystClient
                 │                          │  (Policy decides each answer)
                 └── invalid, duplicate ────┴── final outcomes ──> Recorder ──> Journal
                                                                          results CSV <──┘

This module owns the run itself: the lock, resuming from the journal, starting
the parts (``feed``, ``worker``, ``stopping``, ``recording``), and finishing:
every row an outcome, the results file written, the journal kept or removed.

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

import json
import random
import sqlite3
from array import array
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict, TypeVar, Unpack

import anyio

from batcher.attemptlog import AttemptLog, NullAttemptLog
from batcher.client import AelystClient
from batcher.clock import Clock, SystemClock
from batcher.config import Settings, checked_token, read_token
from batcher.errors import StorageError, UsageError
from batcher.feed import AlreadyDone, Classifier, Feeder, Source, contains, input_source, plan
from batcher.health import Health, HealthLimits
from batcher.journal import Journal, journal_path
from batcher.lock import RunLock, lock_path
from batcher.models import TEXTS, Outcome, Plan, Reason, Result, RunSummary, Secret
from batcher.pacer import Pacer, PacingConfig
from batcher.paths import check_outputs
from batcher.policy import Policy, is_final, worth_retrying
from batcher.progress import NullProgress, Progress, Status
from batcher.reader import scanned_input
from batcher.recording import Recorder
from batcher.state import StateFile, use_state
from batcher.stopping import Stopper
from batcher.worker import Workers
from batcher.workqueue import Job, WorkQueue
from batcher.writer import atomic_text, remove_stale_temps, write_input_rows, write_results

if TYPE_CHECKING:
    import httpx

E = TypeVar("E", bound=BaseException)

__all__ = [
    "RunOptions",
    "Source",
    "default_results_path",
    "done_path",
    "dry_run_path",
    "input_source",
    "run_batch",
    "run_outputs",
    "start_run",
]


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
        clock: The clock the run keeps time and runs its event loop by (tests pass a
            ``batcher.testing.FakeClock``).
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
    sheet: str | None = None,
    **options: Unpack[RunOptions],
) -> RunSummary:
    """Run a whole batch and write its results file; return the run's counts.

    Args:
        input_path: The input CSV, or an ``.xlsx`` workbook (needs ``batcher[excel]``).
        out: The results file (default ``<input stem>.results.csv`` beside the input, or
            ``<input stem>.dry-run.csv`` for a dry run).
        settings: Run settings (default ``Settings()``).
        dry_run: Read and validate everything, send nothing.
        restart: Discard what an interrupted run of the same results file recorded.
        failed_out: Also write the rows worth another try here, in the input's own columns
            (as CSV, a workbook's too).
        sheet: The workbook's sheet to read (default: the first); only for ``.xlsx`` input.
        options: See ``RunOptions``: token, transport, clock, progress, rng, ...

    Raises:
        UsageError: the run could not start; nothing was sent.
        AuthenticationFailed: the server answered 401; the results file lists every row.
        Interrupted: SIGINT or SIGTERM stopped the run; the results file lists every row.
    """
    settings = settings or Settings()
    source = Path(input_path)
    default = dry_run_path(source) if dry_run else default_results_path(source)
    with scanned_input(
        source, encoding=settings.encoding, delimiter=settings.delimiter or None, sheet=sheet
    ) as info:
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
    outputs = run_outputs(out, failed_out)
    if settings.state_file:
        outputs["--state"] = Path(settings.state_file)
    check_outputs(source.info.path, outputs)
    token = options.get("token")
    if dry_run:
        secret = Secret("")
    elif token is not None:
        secret = checked_token(token)
    else:
        secret = read_token(settings)
    del token
    clock = options.get("clock") or SystemClock()
    with RunLock(out), use_state(settings.state_file, dry_run=dry_run) as state:
        for written in (out, failed_out):
            if written is not None:
                remove_stale_temps(written)
        run = _Run(
            source=source,
            results_path=out,
            settings=settings,
            dry_run=dry_run,
            failed_out=failed_out,
            clock=clock,
            progress=options.get("progress") or NullProgress(),
            rng=options.get("rng") or random.Random(),
            attempt_log=options.get("attempt_log") or NullAttemptLog(),
            state=state,
        )
        finished = run.open_journal(restart=restart)
        if finished is not None:
            return finished  # this input's results are complete: nothing to send
        on_plan = options.get("on_plan")
        if on_plan is not None and not dry_run:
            on_plan(run.plan())
        return clock.run(
            run.execute,
            secret,
            options.get("transport"),
            options.get("handle_signals", False),
        )


def run_outputs(out: Path, failed_out: Path | None = None) -> dict[str, Path | None]:
    """Every file a run of this results file writes, by what it is (for ``check_outputs``)."""
    return {
        "the results file": out,
        "its journal": journal_path(out),
        "its lock": lock_path(out),
        "its completion mark": done_path(out),
        "--failed-out": failed_out,
    }


def done_path(results_path: Path) -> Path:
    """``RESULTS.csv.done``: written when a run completes, before its journal is removed.

    It holds the input's hash and the counts, so running the same command again on the
    same input sends nothing, even if the run was killed just after it finished.
    """
    return results_path.with_name(results_path.name + ".done")


class _Run:
    """One run: its settings, its journal, and the parts it starts."""

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
        state: StateFile | None = None,
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
        self.state = state
        #: How the classifier asks the state file (None: no row is skipped as already done).
        self.already_done: AlreadyDone | None = None
        if state is not None and settings.skip_done_within:
            since = datetime.now(UTC) - timedelta(seconds=settings.skip_done_within)
            self.already_done = partial(state.done_since, since=since)
        self.summary = RunSummary(results_path=str(results_path), input_sha256=source.info.sha256)
        #: Rows an earlier run of this job recorded for good, ascending (empty on a fresh run).
        self.done_rows: array[int] = array("q")
        self.pacer = Pacer(
            PacingConfig(
                start_rate=settings.start_rate,
                ceiling=settings.rate or None,
                window=settings.window,
                max_pause=settings.max_retry_after,
            ),
            clock,
            cpu_time=clock.cpu_time,
        )

    def open_journal(self, *, restart: bool) -> RunSummary | None:
        """Start a journal, or pick up the one an interrupted run of this job left.

        Returns the summary of a run of this same input that already completed (nothing
        is left to send), or None when there is work to do.
        """
        path = journal_path(self.results_path)
        done = done_path(self.results_path)
        sha = self.source.info.sha256
        if self.dry_run:
            # A dry run never leaves anything a real run would resume from.
            path = path.with_name(path.name + ".dry-run")
        elif restart:
            done.unlink(missing_ok=True)
        if path.is_symlink():
            raise UsageError(
                f"{str(path)!r} is a symbolic link; batcher does not write through one"
            )
        if path.exists() and not restart and not self.dry_run:
            journal = _open_journal(path)
            if journal.get_meta("input_sha256") != sha:
                journal.close()
                raise UsageError(
                    f"{str(self.source.info.path)!r} changed since the interrupted run that "
                    f"wrote {str(path)!r}; to start over and send every row again, add --restart"
                )
            try:
                journal.forget(is_final)
                self.done_rows = array("q", journal.recorded_rows())
                self.summary.outcomes = journal.outcome_counts()
                self.summary.reasons = journal.reason_counts()
            except sqlite3.DatabaseError as exc:
                journal.close()
                raise _damaged(path, exc) from exc
            self.summary.resumed = len(self.done_rows)
            self.journal = journal
            return None
        if not self.dry_run:
            finished = read_done(done, sha, self.results_path)
            if finished is not None:
                return finished
            done.unlink(missing_ok=True)  # another input's: this is a new run
        for suffix in ("", "-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
        self.journal = _open_journal(path)
        self.journal.set_meta("input_sha256", sha)
        return None

    def plan(self) -> Plan:
        """Count what the run will do (one read of the input, nothing sent)."""
        return plan(
            self.source,
            allowed_categories=self.settings.allowed_categories,
            done_rows=self.done_rows,
            start_rate=self.pacer.rate,
            ceiling=self.settings.rate or None,
            already_done=self.already_done,
        )

    async def execute(
        self, token: Secret, transport: httpx.AsyncBaseTransport | None, handle_signals: bool
    ) -> RunSummary:
        settings, clock = self.settings, self.clock
        started = clock.now()
        self.summary.started_at = _utc_now()
        self.progress.start(self.source.total, len(self.done_rows))
        recorder = Recorder(
            self.journal, self.summary, self.progress, None if self.dry_run else self.state
        )
        queue = WorkQueue(max_pending=max(1000, 8 * settings.concurrency), clock=clock)
        stopper = Stopper(
            clock=clock,
            queue=queue,
            recorder=recorder,
            progress=self.progress,
            token_env=settings.token_env,
        )
        count, share = settings.error_limit
        health = Health(
            HealthLimits(
                outage_wait=settings.outage_wait,
                max_same_errors=settings.max_same_errors,
                max_errors=count,
                max_errors_share=share,
            ),
            clock,
        )
        workers = Workers(
            health=health,
            queue=queue,
            pacer=self.pacer,
            policy=Policy(
                max_attempts=settings.max_attempts,
                max_requeues=settings.max_requeues,
                requeue_delay=settings.requeue_delay,
                max_retry_after=settings.max_retry_after,
                backoff_base=settings.backoff_base,
                backoff_max=settings.backoff_max,
                rng=self.rng,
            ),
            recorder=recorder,
            stopper=stopper,
            clock=clock,
            attempt_log=self.attempt_log,
            progress=self.progress,
        )
        classifier = Classifier(
            allowed_categories=settings.allowed_categories,
            done_rows=self.done_rows,
            already_done=self.already_done,
        )
        feeder = Feeder(
            self.source,
            classifier,
            queue,
            recorder,
            clock,
            dry_run=self.dry_run,
            base_url=settings.base_url,
            samples=self.summary.sample_requests,
        )
        completed = False
        try:
            async with (
                AelystClient(
                    settings.base_url,
                    token,
                    connections=settings.concurrency,
                    timeout=settings.timeout,
                    transport=transport,
                ) as client,
                anyio.create_task_group() as background,
            ):
                background.start_soon(self._show_progress, queue, health)
                async with anyio.create_task_group() as tasks:
                    stopper.attach(tasks.cancel_scope, on_stop=workers.stop_waiting)
                    if handle_signals:
                        background.start_soon(stopper.watch_signals)
                    if settings.max_duration and not self.dry_run:
                        background.start_soon(stopper.deadline, settings.max_duration)
                    tasks.start_soon(feeder.feed)
                    for _ in range(1 if self.dry_run else settings.concurrency):
                        tasks.start_soon(workers.work, client)
                background.cancel_scope.cancel()
            completed = True
        except BaseExceptionGroup as group:
            # A full disk met by a worker or the feeder: one clear error, not a traceback.
            storage = _leaf(group, StorageError)
            if storage is None:
                raise
            raise storage from None
        finally:
            if not completed:
                # An error or a cancellation we did not ask for: the rows it left without an
                # outcome are "not sent", the journal is kept, and the same command resumes.
                stopper.crashed()
            classifier.close()
            self.progress.close()
            health.close()
            self.summary.outages = health.history
            self.summary.stop_reason = stopper.reason
            self._finish(recorder, workers, started)
        error = stopper.error(self.summary)
        if error is not None:
            raise error
        return self.summary

    def _finish(self, recorder: Recorder, workers: Workers, started: float) -> None:
        """Whatever happened: every row gets an outcome and the results file is written."""
        reason = self.summary.stop_reason
        try:
            if reason is not None:
                self._record_unsent(recorder, workers, reason)
            self.summary.elapsed = self.clock.now() - started
            self.summary.ended_at = _utc_now()
            self._write(self.results_path, "the results file", self._write_results)
            if self.failed_out is not None:
                self._write(self.failed_out, "--failed-out", self._write_failed_out)
            if reason is None and not self.dry_run:
                # Before the journal goes: a kill between the two must not make the same
                # command send every row again.
                done = done_path(self.results_path)
                self._write(done, "the completion mark", lambda: write_done(done, self.summary))
        except StorageError:
            self.journal.close()  # kept: once there is room, the same command finishes
            raise
        if reason is not None:
            self.journal.close()  # kept: the same command resumes from it
        else:
            self.journal.remove()

    def _write_results(self) -> None:
        write_results(self.results_path, self.journal.results(), self.source.extra_columns)

    def _write_failed_out(self) -> None:
        info = self.source.info
        assert self.failed_out is not None  # noqa: S101 - only called when asked for
        retry = (r for r in self.journal.results() if worth_retrying(r.reason))
        write_input_rows(self.failed_out, retry, info.header, info.columns)

    def _write(self, path: Path, what: str, write: Callable[[], object]) -> None:
        """Write a file at the end of the run; a full disk is a resumable stop, not a crash."""
        try:
            write()
        except OSError as exc:
            self.summary.stop_reason = self.summary.stop_reason or Reason.NOT_SENT_ERROR
            raise StorageError(
                f"cannot write {what} {str(path)!r}: {exc.strerror or exc}; every outcome is "
                "kept in the journal: free some space, then run the same command to finish",
                summary=self.summary,
            ) from exc

    def _record_unsent(self, recorder: Recorder, workers: Workers, reason: Reason) -> None:
        """After a stop, give every row still without an outcome one: not sent, or cut off
        on the wire."""
        recorded = array("q", self.journal.recorded_rows())
        for record in self.source.read():
            if contains(recorded, record.row):
                continue
            job = workers.on_wire.get(record.row)
            if job is not None:
                # The request cut off on the wire was sent: it counts as an attempt.
                sent = replace(job.tries, attempts=job.tries.attempts + 1)
                recorder.not_sent(Job(job.request, sent), Reason.IN_FLIGHT_INTERRUPTED)
            else:
                result = Result(record, Outcome.SKIPPED, error=TEXTS[reason], reason=reason)
                recorder.record(result, done=False)

    async def _show_progress(self, queue: WorkQueue, health: Health) -> None:
        while True:
            self.progress.show(
                Status(
                    pace=self.pacer.rate,
                    requeued=queue.requeued,
                    retrying=queue.retrying,
                    due_in=queue.next_due_in,
                    paused_for=self.pacer.paused_for,
                    outage=health.outage_note(),
                )
            )
            await self.clock.sleep(0.5)


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _leaf(group: BaseExceptionGroup[BaseException], kind: type[E]) -> E | None:
    """The first exception of ``kind`` in a (nested) exception group."""
    for exc in group.exceptions:
        found = _leaf(exc, kind) if isinstance(exc, BaseExceptionGroup) else exc
        if isinstance(found, kind):
            return found
    return None


def _open_journal(path: Path) -> Journal:
    """The journal at ``path``; a damaged one is refused up front (exit 2), naming the way out."""
    existed = path.exists()
    try:
        journal = Journal(path)
        # Every page, not just the first: damage further in would surface mid-resume.
        found = journal.integrity() if existed else "ok"
        journal.get_meta("input_sha256")
    except sqlite3.DatabaseError as exc:
        raise _damaged(path, exc) from exc
    if found != "ok":
        journal.close()
        raise _damaged(path, found)
    return journal


def _damaged(path: Path, why: object) -> UsageError:
    return UsageError(
        f"the journal {str(path)!r} is damaged ({why}); nothing was sent. Add --restart to "
        "start over (every row is sent again), or move the journal away to keep it"
    )


def write_done(path: Path, summary: RunSummary) -> None:
    """The completion mark: the input's hash and the run's counts."""
    data = {
        "input_sha256": summary.input_sha256,
        "finished_at": summary.ended_at,
        "outcomes": {o.value: n for o, n in summary.outcomes.items()},
        "reasons": {r.value: n for r, n in summary.reasons.items() if n},
    }
    with atomic_text(path) as out:
        json.dump(data, out)


def read_done(path: Path, sha256: str, results_path: Path) -> RunSummary | None:
    """The summary of a completed run of the input with ``sha256``, if the mark says so."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data["input_sha256"] != sha256 or not results_path.is_file():
            return None
        summary = RunSummary(results_path=str(results_path), complete_already=True)
        for name, n in data["outcomes"].items():
            summary.outcomes[Outcome(name)] = int(n)
        for name, n in data["reasons"].items():
            summary.reasons[Reason(name)] = int(n)
        summary.resumed = summary.rows
        summary.ended_at = str(data["finished_at"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # no mark, or not one batcher wrote: a new run
    return summary
