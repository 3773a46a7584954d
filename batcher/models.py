"""The values that travel between batcher's modules.

Everything here is a plain, immutable value: no I/O, no third-party imports,
so every other module can depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Outcome(StrEnum):
    """What happened to one input row. Exactly one per row, in the results file."""

    #: The server answered 200.
    OK = "ok"
    #: Rejected before sending: the row breaks a rule of the API. Never sent.
    INVALID = "invalid"
    #: The server refused it for good (400, 404, 401), or retries ran out.
    FAILED = "failed"
    #: Still answered 449 ("in queue") after the last requeue; worth another run later.
    DEFERRED = "deferred"
    #: Not sent: dry run, duplicate of an earlier row, or the run stopped early.
    SKIPPED = "skipped"


class Reason(StrEnum):
    """Why a row has its outcome: machine-readable, stored in the journal's ``reason`` column.

    Resume, ``batcher retry``'s default selection and every count read this code, never the
    human ``error`` text (which ``TEXTS`` and the policy compose and nobody parses).
    """

    #: ok: the server answered 200.
    SENT = "sent"
    #: invalid: the row breaks a rule of the API; never sent.
    INVALID = "invalid"
    #: failed: the server refused this row for good (400, 404, other 4xx).
    REFUSED = "refused"
    #: failed: 5xx answers (or a mix of failures) until ``max_attempts`` ran out.
    RETRIES_EXHAUSTED = "retries_exhausted"
    #: failed: the last tries were sent and got no answer (timeout, connection cut): the
    #: call may have been applied.
    NO_ANSWER = "no_answer"
    #: failed: the last tries never reached the API (connection refused, DNS, TLS).
    NOT_CONNECTED = "not_connected"
    #: failed: answered 200 without a contactId; it may not have been applied.
    UNCONFIRMED = "unconfirmed"
    #: failed: answered 429 so often that batcher gave up on it.
    THROTTLED = "throttled"
    #: failed: this row's answer was 401; the run stopped (sent again on resume).
    AUTH_REFUSED = "auth_refused"
    #: deferred: still 449 ("in queue") after ``max_requeues``.
    DEFERRED_449 = "deferred_449"
    #: skipped: asks for exactly what the contact's previous row asked.
    DUPLICATE = "duplicate"
    #: skipped: a dry run sends nothing.
    DRY_RUN = "dry_run"
    #: skipped: the API asked to wait longer than ``--max-retry-after`` (Retry-After).
    NOT_SENT_WAIT = "not_sent_wait"
    #: skipped: the state file says this very request succeeded for the contact within
    #: ``--skip-done-within``.
    ALREADY_DONE = "already_done"
    #: skipped: the API was unreachable for longer than ``--outage-wait``.
    NOT_SENT_OUTAGE = "not_sent_outage"
    #: skipped: ``--max-same-errors`` rows in a row were refused the same way.
    NOT_SENT_SAME_ERRORS = "not_sent_same_errors"
    #: skipped: ``--max-errors`` rows were refused or failed.
    NOT_SENT_MAX_ERRORS = "not_sent_max_errors"
    #: skipped: the run was interrupted (Ctrl-C, SIGTERM) before this row was sent.
    NOT_SENT_INTERRUPTED = "not_sent_interrupted"
    #: skipped: ``--max-duration`` was reached before this row was sent.
    NOT_SENT_DEADLINE = "not_sent_deadline"
    #: skipped: a 401 stopped the run before this row was sent.
    NOT_SENT_AUTH = "not_sent_auth"
    #: skipped: the run died of an unexpected error before this row was sent.
    NOT_SENT_ERROR = "not_sent_error"
    #: skipped: the run stopped while this row's request was on the wire; it may have applied.
    IN_FLIGHT_INTERRUPTED = "in_flight_interrupted"


#: The error text of each reason batcher words itself (the others carry the server's words).
TEXTS: dict[Reason, str] = {
    Reason.DUPLICATE: "duplicate of row ",
    Reason.DRY_RUN: "dry run: not sent",
    # The error text goes on with when it was done: "already done on 2026-11-28 02:14 UTC".
    Reason.ALREADY_DONE: "already done on ",
    Reason.NOT_SENT_INTERRUPTED: "not sent: interrupted",
    Reason.NOT_SENT_DEADLINE: "not sent: deadline",
    Reason.NOT_SENT_AUTH: "not sent: authentication failed",
    Reason.NOT_SENT_ERROR: "not sent: the run stopped on an error",
    Reason.NOT_SENT_OUTAGE: "not sent: the API was unreachable",
    Reason.NOT_SENT_WAIT: "not sent: the API asked to wait longer than --max-retry-after",
    Reason.NOT_SENT_SAME_ERRORS: "not sent: the run stopped on identical refusals",
    Reason.NOT_SENT_MAX_ERRORS: "not sent: the run stopped at --max-errors",
    Reason.IN_FLIGHT_INTERRUPTED: "interrupted while in flight (the call may have been applied)",
    Reason.AUTH_REFUSED: "authentication failed: ",
}


#: The results file's own columns, in order; the input's extra columns follow them.
RESULT_COLUMNS: tuple[str, ...] = (
    "row",
    "identifier",
    "status",
    "category",
    "summary",
    "outcome",
    "http_status",
    "contact_id",
    "attempts",
    "error",
)

#: The input columns batcher reads; any other input column is carried through.
INPUT_COLUMNS: tuple[str, ...] = ("identifier", "status", "category", "summary")


@dataclass(frozen=True, slots=True)
class Record:
    """One input record, as read: text exactly as written, whitespace trimmed.

    Attributes:
        row: 1-based record number in the input (header and blank lines not counted).
        identifier: The ``identifier`` cell.
        status: The ``status`` cell.
        category: The ``category`` cell ("" when absent).
        summary: The ``summary`` cell ("" when absent).
        extras: The input's other columns' values, in the input's column order.
        problem: Why the record cannot be used as read (e.g. too many fields), or "".
    """

    row: int
    identifier: str
    status: str
    category: str = ""
    summary: str = ""
    extras: tuple[str, ...] = ()
    problem: str = ""


@dataclass(frozen=True, slots=True)
class Request:
    """A validated row, ready to send: the exact call batcher makes for it.

    Attributes:
        record: The input record it came from.
        status: ``open`` or ``close`` (normalised to lower case).
        category: The closing-note name, or "" when not given.
        summary: The summary, or "" when not given.
    """

    record: Record
    status: str
    category: str = ""
    summary: str = ""

    @property
    def row(self) -> int:
        return self.record.row

    @property
    def identifier(self) -> str:
        return self.record.identifier

    def body(self) -> dict[str, str]:
        """The JSON body: ``status``, plus ``category``/``summary`` only when given."""
        body = {"status": self.status}
        if self.category:
            body["category"] = self.category
        if self.summary:
            body["summary"] = self.summary
        return body


@dataclass(frozen=True, slots=True)
class Result:
    """The final outcome of one input row.

    Attributes:
        record: The input record.
        outcome: What happened.
        http_status: The last HTTP status the server answered for it, or None.
        contact_id: The ``contactId`` of a 200 answer, or None.
        attempts: Requests sent for this row in this run (every one, 429s and 449s included).
        error: Why the row is not ``ok`` (the rule, the server's message, ...), or "".
        reason: The machine-readable cause (``Reason``); what resume and retry read.
    """

    record: Record
    outcome: Outcome
    http_status: int | None = None
    contact_id: int | None = None
    attempts: int = 0
    error: str = ""
    reason: Reason = Reason.SENT

    @property
    def row(self) -> int:
        return self.record.row


@dataclass(frozen=True, slots=True)
class OutageRecord:
    """One stretch of the API not answering, for the summary.

    Attributes:
        start: When it began (UTC, ISO 8601).
        end: When the API answered again ("" if it had not when the run ended).
        seconds: How long it lasted (or had lasted).
        probes: Probes sent during it.
        last_error: The last error seen in it.
    """

    start: str
    end: str
    seconds: float
    probes: int
    last_error: str


@dataclass(slots=True)
class RunSummary:
    """Counts for a whole run, filled in as results are recorded.

    Attributes:
        outcomes: Rows per outcome.
        http_statuses: Answers per HTTP status (every request, retries included).
        requests: Requests sent.
        elapsed: Seconds from start to end of the run.
        results_path: Where the results file was written.
    """

    outcomes: dict[Outcome, int] = field(default_factory=lambda: dict.fromkeys(Outcome, 0))
    #: Rows per reason (``Reason``), the finer count under ``outcomes``.
    reasons: dict[Reason, int] = field(default_factory=lambda: dict.fromkeys(Reason, 0))
    http_statuses: dict[int, int] = field(default_factory=dict)
    requests: int = 0
    elapsed: float = 0.0
    results_path: str = ""
    #: Requests that got no answer (timeout, connection error).
    no_answer: int = 0
    #: Rows recorded by an earlier, interrupted run of the same job and not sent again.
    resumed: int = 0
    #: Why the run stopped early (None when it ran to the end).
    stop_reason: Reason | None = None
    #: Wall-clock start and end of the run, UTC, ISO 8601.
    started_at: str = ""
    ended_at: str = ""
    #: The input's SHA-256 (what resume and the completion mark go by).
    input_sha256: str = ""
    #: A run of this same input had already completed: nothing was sent this time.
    complete_already: bool = False
    #: Every stretch of the API not answering (see ``batcher.health``).
    outages: list[OutageRecord] = field(default_factory=list)
    #: The first few requests a dry run would send: (method, URL, JSON body).
    sample_requests: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(self.outcomes.values())

    @property
    def duplicates(self) -> int:
        """Rows skipped because they duplicate an earlier row (they do not make a run "not ok")."""
        return self.reasons[Reason.DUPLICATE]

    @property
    def already_done(self) -> int:
        """Rows skipped because the state file says they succeeded lately (not "not ok")."""
        return self.reasons[Reason.ALREADY_DONE]

    @property
    def planned(self) -> int:
        """Valid rows a dry run did not send (they do not make a dry run "not ok")."""
        return self.reasons[Reason.DRY_RUN]

    @property
    def stopped(self) -> str:
        """Why the run stopped early, in words ("" when it ran to the end)."""
        return "" if self.stop_reason is None else TEXTS[self.stop_reason]

    @property
    def all_ok(self) -> bool:
        """True when every row is ok, or skipped only as a duplicate, as already done or by a
        dry run."""
        skipped_fine = self.duplicates + self.already_done + self.planned
        return self.outcomes[Outcome.OK] + skipped_fine == self.rows

    def count(self, result: Result) -> None:
        self.outcomes[result.outcome] += 1
        self.reasons[result.reason] += 1

    def count_answer(self, http_status: int | None) -> None:
        self.requests += 1
        if http_status is None:
            self.no_answer += 1
        else:
            self.http_statuses[http_status] = self.http_statuses.get(http_status, 0) + 1


class AnswerKind(StrEnum):
    """How batcher must treat one answer (or the lack of one) from the API."""

    #: 200: the conversation was opened or closed.
    OK = "ok"
    #: 400, 404 and other 4xx: the server refused this row for good.
    REFUSED = "refused"
    #: 401: the token is wrong or revoked; the whole run stops.
    AUTH = "auth"
    #: 429: over the rate limit; wait Retry-After, send again (not a failed attempt).
    RATE_LIMITED = "rate_limited"
    #: 449: "in queue"; set the row aside for minutes, then send again.
    QUEUED = "queued"
    #: 5xx, timeout, connection error: retry with backoff, up to max-attempts.
    RETRYABLE = "retryable"
    #: 200 without ``{"contactId": <integer>}``: not the API's answer (a proxy, a captive
    #: portal, a wrong base URL); the call may not have been applied.
    UNCONFIRMED = "unconfirmed"


@dataclass(frozen=True, slots=True)
class Answer:
    """What one request got back, translated from HTTP into batcher's terms.

    Attributes:
        kind: How to treat it.
        http_status: The HTTP status, or None when no answer came (timeout, network error).
        contact_id: The ``contactId`` of a 200 answer, when the body had one.
        error: The server's message or the transport error, as text ("" for a clean 200).
        limit: ``X-RateLimit-Limit`` as a number, or None when absent or not a number.
        remaining: ``X-RateLimit-Remaining`` as a number, or None when absent or not a number.
        retry_after: ``Retry-After`` in seconds (from a number or an HTTP date), or None
            when absent or neither.
        sent: Whether the request left: False when no connection was made, so the API
            never saw it.
    """

    kind: AnswerKind
    http_status: int | None
    contact_id: int | None = None
    error: str = ""
    limit: float | None = None
    remaining: float | None = None
    retry_after: float | None = None
    sent: bool = True


@dataclass(frozen=True, slots=True)
class Plan:
    """What a run is about to do, known before its first request.

    Attributes:
        rows: Records in the input.
        to_send: Valid rows that will be sent.
        invalid: Rows that break a rule (never sent).
        duplicates: Rows that repeat the previous request for their contact (not sent).
        resumed: Rows an interrupted run of this job already finished (not sent again).
        already_done: Rows the state file says succeeded lately (not sent).
        start_rate: Requests per second before the API's headers are seen.
        ceiling: Requests per second never exceeded, or None.
    """

    rows: int
    to_send: int
    invalid: int
    duplicates: int
    resumed: int
    start_rate: float
    ceiling: float | None
    already_done: int = 0

    @property
    def estimate(self) -> float:
        """Seconds the sending takes at the ceiling, or at the start pace when there is none."""
        pace = self.ceiling or self.start_rate
        return self.to_send / pace if pace > 0 else 0.0


class Secret:
    """The API token, held so that no repr, log line or traceback can show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The token itself: for the Authorization header and nothing else."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__
