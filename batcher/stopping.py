"""Stopping a run early: the one owner of why, when, and what a stop does.

A run stops early on Ctrl-C or SIGTERM, at ``--max-duration``, on a 401, when
the run's health says so (an outage longer than ``--outage-wait``, refusals that
hit every row: ``batcher.health``), or on an unexpected error. Whatever the
cause, a stop does the same things, once:

* it takes the reason (the first stop wins; later ones change nothing);
* the work queue hands out nothing more, and every row it still held is
  recorded ``skipped`` with that reason (the same command sends them again);
* workers waiting for a turn stop waiting (``on_stop`` hooks), and requests
  already on the wire get ``GRACE`` seconds to be answered; a second Ctrl-C
  ends them at once.

The runner records the rows never read into the queue, and the rows cut off on
the wire, when the run ends (``runner``), and raises ``error()`` if there is one.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

import anyio

from batcher.clock import Clock
from batcher.errors import (
    ApiUnreachable,
    AuthenticationFailed,
    Interrupted,
    RunAborted,
    TooManyErrors,
)
from batcher.models import Reason, RunSummary
from batcher.progress import Progress
from batcher.recording import Recorder
from batcher.workqueue import WorkQueue

#: Seconds in-flight requests get to finish after a stop.
GRACE = 5.0


class Stopper:
    """Stops a run; see the module docstring."""

    def __init__(
        self,
        *,
        clock: Clock,
        queue: WorkQueue,
        recorder: Recorder,
        progress: Progress,
        token_env: str,
    ) -> None:
        self._clock = clock
        self._queue = queue
        self._recorder = recorder
        self._progress = progress
        self._token_env = token_env
        #: Why the run stopped early, or None while it has not.
        self.reason: Reason | None = None
        #: What the person watching was told when it stopped.
        self.message = ""
        self._work: anyio.CancelScope | None = None
        self._signalled = False
        self._on_stop: list[Callable[[], None]] = []

    def attach(self, work: anyio.CancelScope, *, on_stop: Callable[[], None]) -> None:
        """The scope of the feeder and the workers (what the grace period bounds), and what
        else a stop must do at once."""
        self._work = work
        self._on_stop.append(on_stop)

    def stop(self, reason: Reason, note: str) -> None:
        """Send nothing more; rows still queued are recorded as not sent for ``reason``."""
        if self.reason is not None:
            return
        self.reason = reason
        self.message = note
        self._progress.note(note)
        # Requests in flight get GRACE seconds; a worker waiting for its turn (after a 429,
        # up to Retry-After) is not waited for.
        if self._work is not None:
            self._work.deadline = min(self._work.deadline, self._clock.now() + GRACE)
        for job in self._queue.stop():
            self._recorder.not_sent(job, reason)
        for hook in self._on_stop:
            hook()

    def crashed(self) -> None:
        """The run ended on an error nobody asked for: its unsent rows say so."""
        if self.reason is None:
            self.reason = Reason.NOT_SENT_ERROR

    async def watch_signals(self) -> None:
        """First SIGINT/SIGTERM: stop taking rows, in-flight requests get GRACE seconds.
        A second one: stop now."""
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                if self._signalled:
                    if self._work is not None:
                        self._work.cancel()
                    return
                self._signalled = True
                self.stop(
                    Reason.NOT_SENT_INTERRUPTED,
                    f"interrupted: no new rows; requests in flight get {GRACE:.0f} s "
                    "(interrupt again to stop now)",
                )

    async def deadline(self, seconds: float) -> None:
        """At ``--max-duration``: stop taking rows, as on SIGTERM (the run then exits 1)."""
        await self._clock.sleep(seconds)
        self.stop(
            Reason.NOT_SENT_DEADLINE,
            f"deadline ({seconds:.0f} s) reached: no new rows; requests in flight get "
            f"{GRACE:.0f} s",
        )

    def error(self, summary: RunSummary) -> RunAborted | None:
        """The error the run ends with, for a stop that is one (a deadline is not)."""
        if self.reason is Reason.NOT_SENT_AUTH:
            return AuthenticationFailed(
                f"the server answered 401 (UN_AUTHORIZED): check the token in "
                f"{self._token_env}; rows not sent are marked skipped, and running "
                "the same command again sends only those",
                summary=summary,
            )
        if self.reason in (Reason.NOT_SENT_OUTAGE, Reason.NOT_SENT_WAIT):
            return ApiUnreachable(self.message, summary=summary)
        if self.reason in (Reason.NOT_SENT_SAME_ERRORS, Reason.NOT_SENT_MAX_ERRORS):
            return TooManyErrors(self.message, summary=summary)
        if self.reason is Reason.NOT_SENT_INTERRUPTED:
            return Interrupted(
                "interrupted: rows not sent are marked skipped; run the same command again "
                "to send only those",
                summary=summary,
            )
        return None
