"""The policy, table by table: what each answer means for its row, with no I/O."""

from __future__ import annotations

import random

import pytest

from batcher.models import Answer, AnswerKind, Outcome, Reason
from batcher.policy import (
    MAX_THROTTLED,
    Finish,
    Policy,
    Requeue,
    Retry,
    StopRun,
    Tries,
    classify_status,
    is_final,
    recover_reason,
    worth_retrying,
)


class UpperBound(random.Random):
    """Jitter that always takes the top of its range, so delays are exact."""

    def uniform(self, a: float, b: float) -> float:
        return b


POLICY = Policy(
    max_attempts=3,
    max_requeues=2,
    requeue_delay=180.0,
    backoff_base=0.5,
    backoff_max=4.0,
    rng=UpperBound(),
)


def answer(kind: AnswerKind, status: int | None, error: str = "", cid: int | None = None) -> Answer:
    return Answer(kind, status, contact_id=cid, error=error)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (200, AnswerKind.OK),
        (400, AnswerKind.REFUSED),
        (404, AnswerKind.REFUSED),
        (409, AnswerKind.REFUSED),
        (401, AnswerKind.AUTH),
        (429, AnswerKind.RATE_LIMITED),
        (449, AnswerKind.QUEUED),
        (500, AnswerKind.RETRYABLE),
        (503, AnswerKind.RETRYABLE),
        (None, AnswerKind.RETRYABLE),
    ],
)
def test_classify_status(status: int | None, kind: AnswerKind) -> None:
    """Each HTTP status (or no answer at all) is treated as the API documents it."""
    assert classify_status(status) is kind


@pytest.mark.parametrize(
    ("given", "before", "decision", "after"),
    [
        pytest.param(
            answer(AnswerKind.OK, 200, cid=7),
            Tries(),
            Finish(Outcome.OK, Reason.SENT, contact_id=7),
            Tries(attempts=1, last_status=200),
            id="200-ok",
        ),
        pytest.param(
            answer(AnswerKind.REFUSED, 404, "404 Contact not found"),
            Tries(attempts=2, failures=1, last_status=500),
            Finish(Outcome.FAILED, Reason.REFUSED, "404 Contact not found"),
            Tries(attempts=3, failures=1, last_status=404),
            id="404-refused-for-good",
        ),
        pytest.param(
            answer(AnswerKind.AUTH, 401, "401 UN_AUTHORIZED"),
            Tries(),
            StopRun(
                Finish(
                    Outcome.FAILED, Reason.AUTH_REFUSED, "authentication failed: 401 UN_AUTHORIZED"
                ),
                Reason.NOT_SENT_AUTH,
            ),
            Tries(attempts=1, last_status=401),
            id="401-stops-the-run",
        ),
        pytest.param(
            answer(AnswerKind.RATE_LIMITED, 429, "429 Too Many Requests"),
            Tries(attempts=1, throttled=1, last_status=429),
            Retry(0.0),
            Tries(attempts=2, throttled=2, last_status=429),
            id="429-again-at-once-not-a-failure",
        ),
        pytest.param(
            answer(AnswerKind.RATE_LIMITED, 429, "429 Too Many Requests"),
            Tries(attempts=120, throttled=MAX_THROTTLED - 1, last_status=429),
            Finish(
                Outcome.FAILED,
                Reason.THROTTLED,
                f"gave up after {MAX_THROTTLED} answers of 429: 429 Too Many Requests",
            ),
            Tries(attempts=121, throttled=MAX_THROTTLED, last_status=429),
            id="429-guard",
        ),
        pytest.param(
            answer(AnswerKind.QUEUED, 449, "449 in queue"),
            Tries(attempts=1, requeues=1, last_status=449),
            Requeue(216.0),
            Tries(attempts=2, requeues=2, last_status=449),
            id="449-set-aside-never-sooner-than-asked",
        ),
        pytest.param(
            answer(AnswerKind.QUEUED, 449, "449 in queue"),
            Tries(attempts=3, requeues=2, last_status=449),
            Finish(
                Outcome.DEFERRED,
                Reason.DEFERRED_449,
                "still in queue (449) after 2 requeues: 449 in queue",
            ),
            Tries(attempts=4, requeues=2, last_status=449),
            id="449-deferred-after-max-requeues",
        ),
        pytest.param(
            answer(AnswerKind.RETRYABLE, 500, "500 boom"),
            Tries(),
            Retry(0.5),
            Tries(attempts=1, failures=1, last_status=500),
            id="5xx-first-backoff",
        ),
        pytest.param(
            answer(AnswerKind.RETRYABLE, None, "timeout: ReadTimeout"),
            Tries(attempts=1, failures=1, last_status=500),
            Retry(1.0),
            Tries(attempts=2, failures=2, last_status=None),
            id="timeout-backoff-doubles",
        ),
        pytest.param(
            answer(AnswerKind.RETRYABLE, 503, "503 busy"),
            Tries(attempts=4, failures=2, requeues=1, last_status=449),
            Finish(
                Outcome.FAILED,
                Reason.RETRIES_EXHAUSTED,
                "retries exhausted after 3 attempts: 503 busy",
            ),
            Tries(attempts=5, failures=3, requeues=1, last_status=503),
            id="5xx-exhausted",
        ),
    ],
)
def test_decide(given: Answer, before: Tries, decision: object, after: Tries) -> None:
    """After each kind of answer the policy gives the documented decision and counters."""
    tries, got = POLICY.decide(given, before)
    assert got == decision
    assert tries == after


@pytest.mark.parametrize(
    ("given", "decision"),
    [
        (answer(AnswerKind.RETRYABLE, None, "network error"), Retry(0.0)),
        (answer(AnswerKind.RETRYABLE, 503, "503 busy"), Retry(0.0)),
        (answer(AnswerKind.OK, 200, cid=3), Finish(Outcome.OK, Reason.SENT, contact_id=3)),
        (answer(AnswerKind.REFUSED, 404, "404 x"), Finish(Outcome.FAILED, Reason.REFUSED, "404 x")),
    ],
)
def test_while_the_api_is_down_a_failure_costs_no_attempt(given: Answer, decision: object) -> None:
    """During an outage a retryable failure goes again at once (the probe gate spaces it)
    and does not count against max-attempts, even on the row's last attempt; real answers
    are decided as ever."""
    before = Tries(attempts=4, failures=2)
    tries, got = POLICY.decide(given, before, api_down=True)
    assert got == decision
    assert tries.failures == 2
    assert tries.attempts == 5


def test_decide_leaves_the_old_counters_alone() -> None:
    """Counters are immutable: deciding returns new ones and the old value is unchanged."""
    before = Tries(attempts=1, failures=1)
    POLICY.decide(answer(AnswerKind.RETRYABLE, 500), before)
    assert before == Tries(attempts=1, failures=1)


@pytest.mark.parametrize("failures", [1, 2, 3, 4, 5, 6, 10])
def test_backoff_stays_within_the_full_jitter_ceiling(failures: int) -> None:
    """Backoff is between 0 and min(backoff_max, base * 2**(failures - 1))."""
    policy = Policy(backoff_base=0.5, backoff_max=4.0, rng=random.Random(failures))
    ceiling = min(4.0, 0.5 * 2 ** (failures - 1))
    for _ in range(50):
        assert 0.0 <= policy.backoff(failures) <= ceiling


#: Every reason: does a resumed run keep it, and does `batcher retry` send it again?
FINALITY = [
    (Reason.SENT, True, False),
    (Reason.INVALID, True, False),
    (Reason.REFUSED, True, False),
    (Reason.DUPLICATE, True, False),
    (Reason.DRY_RUN, True, False),
    (Reason.ALREADY_DONE, True, False),
    (Reason.RETRIES_EXHAUSTED, True, True),
    (Reason.NO_ANSWER, True, True),
    (Reason.NOT_CONNECTED, True, True),
    (Reason.UNCONFIRMED, True, True),
    (Reason.THROTTLED, True, True),
    (Reason.DEFERRED_449, True, True),
    (Reason.AUTH_REFUSED, False, True),
    (Reason.NOT_SENT_INTERRUPTED, False, True),
    (Reason.NOT_SENT_DEADLINE, False, True),
    (Reason.NOT_SENT_AUTH, False, True),
    (Reason.NOT_SENT_ERROR, False, True),
    (Reason.NOT_SENT_OUTAGE, False, True),
    (Reason.NOT_SENT_WAIT, False, True),
    (Reason.NOT_SENT_SAME_ERRORS, False, True),
    (Reason.NOT_SENT_MAX_ERRORS, False, True),
    (Reason.IN_FLIGHT_INTERRUPTED, False, True),
]


@pytest.mark.parametrize(("reason", "final", "retried"), FINALITY)
def test_final_and_worth_retrying(reason: Reason, final: bool, retried: bool) -> None:
    """Which reasons a resumed run keeps, and which `batcher retry` sends again by default."""
    assert is_final(reason) is final
    assert worth_retrying(reason) is retried


def test_every_reason_is_in_the_tables() -> None:
    """No reason is missing from the table above (a new one must be decided on)."""
    assert sorted(reason for reason, _, _ in FINALITY) == sorted(Reason)


@pytest.mark.parametrize(
    ("outcome", "status", "error", "reason"),
    [
        (Outcome.OK, 200, "", Reason.SENT),
        (Outcome.INVALID, None, "identifier: empty", Reason.INVALID),
        (Outcome.DEFERRED, 449, "still in queue", Reason.DEFERRED_449),
        (Outcome.FAILED, 404, "404 Contact not found", Reason.REFUSED),
        (Outcome.FAILED, 400, "400 Validation error.", Reason.REFUSED),
        (Outcome.FAILED, 500, "retries exhausted", Reason.RETRIES_EXHAUSTED),
        (Outcome.FAILED, None, "retries exhausted", Reason.RETRIES_EXHAUSTED),
        (Outcome.FAILED, 429, "gave up", Reason.THROTTLED),
        (Outcome.FAILED, 401, "authentication failed: 401", Reason.AUTH_REFUSED),
        (Outcome.SKIPPED, None, "duplicate of row 3", Reason.DUPLICATE),
        (Outcome.SKIPPED, None, "dry run: not sent", Reason.DRY_RUN),
        (Outcome.SKIPPED, None, "already done on 2026-11-28 02:14 UTC", Reason.ALREADY_DONE),
        (Outcome.SKIPPED, None, "not sent: deadline", Reason.NOT_SENT_DEADLINE),
        (Outcome.SKIPPED, 449, "not sent: interrupted", Reason.NOT_SENT_INTERRUPTED),
        (
            Outcome.SKIPPED,
            None,
            "interrupted while in flight (the call may have been applied)",
            Reason.IN_FLIGHT_INTERRUPTED,
        ),
    ],
)
def test_recover_reason_from_a_results_row(
    outcome: Outcome, status: int | None, error: str, reason: Reason
) -> None:
    """A results-file row (no reason column) gets back the reason it was written with."""
    assert recover_reason(outcome, status, error) is reason
