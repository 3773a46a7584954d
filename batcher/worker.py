"""The worker loop: take a row, wait for its turn, send it, act on the answer.

``Workers.work`` runs once per worker task. A worker never decides what an
answer means (``policy.Policy.decide`` does) and never raises for a row: every
answer ends in a final outcome for the recorder, the row set aside in the work
queue for another try, or a stop.
"""

from __future__ import annotations

import anyio

from batcher.attemptlog import Attempt, AttemptLog
from batcher.client import AelystClient
from batcher.clock import Clock
from batcher.health import Health
from batcher.models import Reason
from batcher.pacer import Pacer
from batcher.policy import Decision, Finish, Policy, Requeue, StopRun
from batcher.progress import Progress
from batcher.recording import Recorder
from batcher.stopping import Stopper
from batcher.workqueue import Job, WorkQueue


class Workers:
    """What every worker shares; see the module docstring."""

    def __init__(
        self,
        *,
        queue: WorkQueue,
        pacer: Pacer,
        policy: Policy,
        recorder: Recorder,
        stopper: Stopper,
        health: Health,
        clock: Clock,
        attempt_log: AttemptLog,
        progress: Progress,
    ) -> None:
        self._health = health
        self._queue = queue
        self._pacer = pacer
        self._policy = policy
        self._recorder = recorder
        self._stopper = stopper
        self._clock = clock
        self._attempt_log = attempt_log
        self._progress = progress
        #: Rows whose request is on the wire, by row: a stop cuts these off.
        self.on_wire: dict[int, Job] = {}
        #: Workers waiting for a turn: a stop ends their wait at once (only requests on
        #: the wire get the grace period).
        self._waiting: set[anyio.CancelScope] = set()

    def stop_waiting(self) -> None:
        """End every wait for a turn (the run has stopped; nothing more is sent)."""
        for scope in self._waiting:
            scope.cancel()
        self._pacer.stop_waiting()

    async def work(self, client: AelystClient) -> None:
        """One worker: send rows until the queue has none left or the run stops."""
        while (job := await self._queue.get()) is not None:
            await self._send(client, job)

    async def _send(self, client: AelystClient, job: Job) -> None:
        """Wait for the run's health and pace to let ``job`` go, send it, act on the answer."""
        pacer, health = self._pacer, self._health
        while True:
            probe = await self._admitted()
            if probe is None:
                self._not_sent(job)
                return
            async with pacer.turn(job.contact) as turn:
                if not turn.granted or self._stopper.reason is not None:
                    self._not_sent(job)  # the run stopped while this worker waited its turn
                    return
                if health.api_down and not probe:
                    continue  # the API went down meanwhile: only the probe may go
                row = job.request.row
                self.on_wire[row] = job
                sent_at = self._clock.now()
                answer = await client.send(job.request)
                latency = self._clock.now() - sent_at
                del self.on_wire[row]
                paused = pacer.paused_for
                self._recorder.answered(answer.http_status)
                was_down = health.api_down
                health.answered(job.contact, answer, probe=probe)
                self._note_health(was_down)
                tries, decision = self._policy.decide(answer, job.tries, api_down=health.api_down)
                self._attempt_log.attempt(
                    Attempt(
                        row=row,
                        identifier=job.contact,
                        attempt=tries.attempts,
                        http_status=answer.http_status,
                        latency=latency,
                        pace=pacer.rate,
                        error=answer.error,
                        probe=probe,
                    )
                )
                turn.answered(answer)
            if pacer.paused_for > paused + 0.001:
                self._progress.note(
                    f"429 Too Many Requests: every worker waits {pacer.paused_for:.1f} s; "
                    f"pace now {pacer.rate:.1f}/s"
                )
            self._apply(Job(job.request, tries), decision)
            return

    async def _admitted(self) -> bool | None:
        """Wait until the run's health lets a request go: whether it goes as the probe, or
        None when the run stopped (or must stop: the API stayed away too long)."""
        admitted: bool | None = None
        if self._health.api_down:  # otherwise nothing to wait for, nor a scope to pay for
            with anyio.CancelScope() as waiting:
                self._waiting.add(waiting)
                try:
                    admitted = await self._health.admit()
                finally:
                    self._waiting.discard(waiting)
        if self._stopper.reason is not None:
            return None
        if admitted is False:
            self._stopper.stop(Reason.NOT_SENT_OUTAGE, self._health.outage_stop_message())
            return None
        return bool(admitted)

    def _not_sent(self, job: Job) -> None:
        self._recorder.not_sent(job, self._stopper.reason or Reason.NOT_SENT_ERROR)

    def _apply(self, job: Job, decision: Decision) -> None:
        if isinstance(decision, Finish | StopRun):
            finish = decision if isinstance(decision, Finish) else decision.finish
            self._recorder.record_job(
                job,
                finish.outcome,
                finish.reason,
                error=finish.error,
                contact_id=finish.contact_id,
            )
            self._queue.done(job)
            if isinstance(decision, StopRun):
                note = decision.note or _STOP_NOTES[decision.reason]
                self._stopper.stop(decision.reason, note)
            else:
                verdict = self._health.finished(job.contact, finish, job.tries.last_status)
                if verdict is not None:
                    self._stopper.stop(*verdict)
        elif not self._queue.set_aside(job, decision.delay, requeue=isinstance(decision, Requeue)):
            self._recorder.not_sent(job, self._stopper.reason or Reason.NOT_SENT_ERROR)

    def _note_health(self, was_down: bool) -> None:
        """Tell the person watching when an outage begins or ends."""
        health = self._health
        if health.api_down and not was_down:
            outage = health.outage
            assert outage is not None  # noqa: S101 - api_down says so
            self._progress.note(
                f"{health.outage_note()} (last error: {outage.last_error}); no new rows "
                "until it answers"
            )
        elif was_down and not health.api_down:
            self._progress.note("the API answers again: going on at the pace it had")


#: What the person watching is told when an answer stops the run.
_STOP_NOTES = {Reason.NOT_SENT_AUTH: "401 UN_AUTHORIZED: sending nothing more"}
