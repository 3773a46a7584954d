"""What each answer means for its row, decided in one place, with no I/O.

Three questions, each answered here and nowhere else:

* How is an HTTP status to be treated (``classify_status``)? The client uses it to
  build an ``Answer``; ``batcher retry`` uses it to read a results file's rows.
* After an answer, what happens to the row (``Policy.decide``)? A final outcome,
  another try after a delay (backoff, or at once after a 429 since the pacer holds
  every worker), set aside for a 449, or a final outcome that stops the run (401).
  Attempt counters are an immutable ``Tries``: each decision returns the next one.
* Which recorded outcomes are final (``is_final``: what a resumed run keeps) and
  which are worth another run (``worth_retrying``: ``batcher retry``'s default)?
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from batcher.models import TEXTS, Answer, AnswerKind, Outcome, Reason

#: 429 answers one row may get before batcher gives up on it (a guard against a server that
#: never lets anything through; each 429 already pauses the whole run for Retry-After).
MAX_THROTTLED = 100

_KIND_BY_STATUS = {
    200: AnswerKind.OK,
    401: AnswerKind.AUTH,
    429: AnswerKind.RATE_LIMITED,
    449: AnswerKind.QUEUED,
}

#: Reasons a resumed run drops and sends again: the row was not answered for good.
_NOT_FINAL = frozenset(
    {
        Reason.NOT_SENT_INTERRUPTED,
        Reason.NOT_SENT_DEADLINE,
        Reason.NOT_SENT_AUTH,
        Reason.NOT_SENT_ERROR,
        Reason.NOT_SENT_OUTAGE,
        Reason.NOT_SENT_WAIT,
        Reason.NOT_SENT_SAME_ERRORS,
        Reason.NOT_SENT_MAX_ERRORS,
        Reason.IN_FLIGHT_INTERRUPTED,
        Reason.AUTH_REFUSED,
    }
)
#: Reasons whose row would go through on another run: the cause may pass.
_WORTH_RETRYING = _NOT_FINAL | {
    Reason.RETRIES_EXHAUSTED,
    Reason.NO_ANSWER,
    Reason.NOT_CONNECTED,
    Reason.UNCONFIRMED,
    Reason.THROTTLED,
    Reason.DEFERRED_449,
}


def classify_status(status: int | None) -> AnswerKind:
    """How to treat an HTTP status; None (no answer: timeout, lost connection) is retryable."""
    if status is None or status >= 500:
        return AnswerKind.RETRYABLE
    return _KIND_BY_STATUS.get(status, AnswerKind.REFUSED)


def is_final(reason: Reason) -> bool:
    """Whether a recorded outcome stands on resume (False: the row is sent again)."""
    return reason not in _NOT_FINAL


def worth_retrying(reason: Reason) -> bool:
    """Whether ``batcher retry`` sends the row again by default.

    Yes when the cause may pass: 5xx, timeouts, lost connections, 429, 449, 401 and
    rows a stopped run did not send. No for ok, invalid, 400/404, duplicates, dry runs
    and rows already done: the same row would end the same way.
    """
    return reason in _WORTH_RETRYING


def recover_reason(outcome: Outcome, http_status: int | None, error: str) -> Reason:
    """The reason of a row read back from a results file, which has no reason column.

    Rows that were answered are told apart by their outcome and HTTP status. A skipped
    row carries no status: its reason is looked up by the text batcher itself wrote for it
    (``TEXTS``, the same table that wrote it), and a text not found there reads as not
    sent (worth sending again). A server's message is never read. ``batcher retry`` finds
    duplicates again by their rule (``feed.Classifier``), so its choice of rows depends on
    these texts only for a dry run's rows.
    """
    if outcome is Outcome.OK:
        return Reason.SENT
    if outcome is Outcome.INVALID:
        return Reason.INVALID
    if outcome is Outcome.DEFERRED:
        return Reason.DEFERRED_449
    if outcome is Outcome.FAILED:
        if http_status == 200:
            return Reason.UNCONFIRMED
        kind = classify_status(http_status)
        if kind is AnswerKind.AUTH:
            return Reason.AUTH_REFUSED
        if kind is AnswerKind.RATE_LIMITED:
            return Reason.THROTTLED
        return Reason.REFUSED if kind is AnswerKind.REFUSED else Reason.RETRIES_EXHAUSTED
    for reason, text in TEXTS.items():
        if error.startswith(text):
            return reason
    return Reason.NOT_SENT_INTERRUPTED


@dataclass(frozen=True, slots=True)
class Tries:
    """What one row has been through so far; each answer gives a new one.

    Attributes:
        attempts: Requests sent for it (every one, 429s and 449s included).
        failures: Retryable failures (5xx, timeout, network), counted against max-attempts.
        requeues: 449 answers, counted against max-requeues.
        throttled: 429 answers (never counted as failures).
        last_status: The last HTTP status answered, if any.
    """

    attempts: int = 0
    failures: int = 0
    requeues: int = 0
    throttled: int = 0
    last_status: int | None = None


@dataclass(frozen=True, slots=True)
class Finish:
    """The row has its final outcome.

    Attributes:
        outcome: The outcome.
        reason: Why (machine-readable).
        error: Why, in words ("" for ok).
        contact_id: The ``contactId`` of a 200, else None.
    """

    outcome: Outcome
    reason: Reason
    error: str = ""
    contact_id: int | None = None


@dataclass(frozen=True, slots=True)
class Retry:
    """Send the row again after ``delay`` seconds (backoff after a 5xx; 0 after a 429)."""

    delay: float


@dataclass(frozen=True, slots=True)
class Requeue:
    """Set the row aside for ``delay`` seconds: the API said 449, "try again in a few minutes"."""

    delay: float


@dataclass(frozen=True, slots=True)
class StopRun:
    """The row has its final outcome (``finish``) and the whole run stops (``reason``),
    telling the person watching ``note`` (or a standard line for the reason)."""

    finish: Finish
    reason: Reason
    note: str = ""


Decision = Finish | Retry | Requeue | StopRun

#: Answers whose Retry-After is honoured (a 429's pauses the run; a 5xx's delays the row).
_MAY_ASK_TO_WAIT = frozenset({AnswerKind.RATE_LIMITED, AnswerKind.RETRYABLE})


def _exhausted(answer: Answer) -> Reason:
    """Why a row's tries ran out, by its last one: no connection, no answer, or a 5xx."""
    if not answer.sent:
        return Reason.NOT_CONNECTED
    if answer.http_status is None:
        return Reason.NO_ANSWER
    return Reason.RETRIES_EXHAUSTED


@dataclass(frozen=True, slots=True)
class Policy:
    """The limits on trying one row, and the randomness of its waits.

    Attributes:
        max_attempts: Retryable failures a row may have before it is ``failed``.
        max_requeues: 449 answers a row may get before it is ``deferred``.
        requeue_delay: Seconds a 449'd row is set aside (never less; jitter only adds).
        max_retry_after: Longest ``Retry-After`` (429 or 5xx) the run waits; a longer one
            stops it, resumably.
        backoff_base: Ceiling of the first backoff, doubling with each failure (full jitter).
        backoff_max: Most seconds one backoff may wait.
        rng: Randomness for the jitter (tests pass a seeded one).
    """

    max_attempts: int = 5
    max_requeues: int = 5
    requeue_delay: float = 180.0
    max_retry_after: float = 600.0
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    rng: random.Random = random.Random()  # noqa: RUF009 - shared only when none is given

    def decide(
        self, answer: Answer, tries: Tries, *, api_down: bool = False
    ) -> tuple[Tries, Decision]:
        """What follows ``answer`` for a row that had been through ``tries`` before it.

        ``api_down``: the run is waiting out an outage (``batcher.health``); a retryable
        failure then costs the row none of its attempts, and it goes again when the run's
        probe lets it.
        """
        sent = 1 if answer.sent else 0
        tries = replace(tries, attempts=tries.attempts + sent, last_status=answer.http_status)
        kind = answer.kind
        if api_down and kind is AnswerKind.RETRYABLE:
            return tries, Retry(0.0)
        wait = answer.retry_after
        if kind in _MAY_ASK_TO_WAIT and wait is not None and wait > self.max_retry_after:
            finish = Finish(Outcome.SKIPPED, Reason.NOT_SENT_WAIT, TEXTS[Reason.NOT_SENT_WAIT])
            note = (
                f"stopped: the API asked to wait {wait:.0f} s (Retry-After on a "
                f"{answer.http_status}), longer than --max-retry-after "
                f"{self.max_retry_after:.0f} s; rows not sent are marked skipped; run the "
                "same command once that time has passed"
            )
            return tries, StopRun(finish, Reason.NOT_SENT_WAIT, note)
        if kind is AnswerKind.OK:
            return tries, Finish(Outcome.OK, Reason.SENT, contact_id=answer.contact_id)
        if kind is AnswerKind.UNCONFIRMED:
            return tries, Finish(Outcome.FAILED, Reason.UNCONFIRMED, answer.error)
        if kind is AnswerKind.REFUSED:
            return tries, Finish(Outcome.FAILED, Reason.REFUSED, answer.error)
        if kind is AnswerKind.AUTH:
            error = TEXTS[Reason.AUTH_REFUSED] + answer.error
            finish = Finish(Outcome.FAILED, Reason.AUTH_REFUSED, error)
            return tries, StopRun(finish, Reason.NOT_SENT_AUTH)
        if kind is AnswerKind.RATE_LIMITED:
            tries = replace(tries, throttled=tries.throttled + 1)
            if tries.throttled >= MAX_THROTTLED:
                error = f"gave up after {tries.throttled} answers of 429: {answer.error}"
                return tries, Finish(Outcome.FAILED, Reason.THROTTLED, error)
            return tries, Retry(0.0)  # the pacer holds every worker until Retry-After
        if kind is AnswerKind.QUEUED:
            if tries.requeues >= self.max_requeues:
                error = f"still in queue (449) after {tries.requeues} requeues: {answer.error}"
                return tries, Finish(Outcome.DEFERRED, Reason.DEFERRED_449, error)
            tries = replace(tries, requeues=tries.requeues + 1)
            return tries, Requeue(self.requeue_delay * self.rng.uniform(1.0, 1.2))
        tries = replace(tries, failures=tries.failures + 1)
        if tries.failures >= self.max_attempts:
            error = f"retries exhausted after {tries.failures} attempts: {answer.error}"
            return tries, Finish(Outcome.FAILED, _exhausted(answer), error)
        if wait is not None and wait > 0:  # a 503 saying when to come back
            return tries, Retry(wait)
        return tries, Retry(self.backoff(tries.failures))

    def backoff(self, failures: int) -> float:
        """Exponential backoff with full jitter."""
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** (failures - 1))
        return self.rng.uniform(0.0, ceiling)
