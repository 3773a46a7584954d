"""``batcher report RESULTS.csv``: a results file digested for whoever opens it in the morning.

Counts per outcome (the same line the run's summary printed) and per last HTTP
status; then the rows that are not ok, grouped by cause (reason and message, most
frequent first, with counts and their first row numbers), so 40,000 refusals read
as the three causes they are; then what to run next.

It reads any results file batcher wrote (a finished run's, a stopped run's, a
retry's) as a stream with the csv module, so memory grows with the number of
distinct causes, not of rows. A row's reason is found again as ``batcher retry``
finds it (``policy.recover_reason``). Values quoted in a message (a row's own
identifier or cell, as validation quotes them) are masked, so that rows broken
the same way fall into one group and no row's data is shown.
"""

from __future__ import annotations

import csv
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from batcher.errors import InputFileError
from batcher.journal import journal_path
from batcher.models import RESULT_COLUMNS, TEXTS, Outcome, Reason
from batcher.policy import recover_reason, worth_retrying
from batcher.report import outcome_counts

#: Row numbers shown per cause.
FIRST_ROWS = 5

#: Rows that are not ``ok`` and yet need nothing: skipped on purpose.
_FINE = frozenset({Reason.SENT, Reason.DUPLICATE, Reason.ALREADY_DONE, Reason.DRY_RUN})
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_LENGTH = re.compile(r": \d+ characters, more than")


@dataclass(slots=True)
class Cause:
    """Rows that are not ok for one and the same cause.

    Attributes:
        outcome: Their outcome.
        reason: Their reason.
        message: The cause in words (the error with quoted values masked).
        count: How many rows.
        rows: The first few of their row numbers.
    """

    outcome: Outcome
    reason: Reason
    message: str
    count: int = 0
    rows: list[int] = field(default_factory=list)


@dataclass(slots=True)
class Digest:
    """What a results file says, counted and grouped.

    Attributes:
        path: The results file.
        outcomes: Rows per outcome.
        reasons: Rows per reason (as ``policy.recover_reason`` reads them back).
        last_http: Rows per last HTTP status ("" for rows never answered).
        causes: The rows not ok, by cause, most frequent first.
        unreadable: Lines that are not rows batcher wrote (left out of every count).
        journal: A journal sits beside the file: its run stopped early, or is still going.
    """

    path: Path
    outcomes: dict[Outcome, int] = field(default_factory=lambda: dict.fromkeys(Outcome, 0))
    reasons: dict[Reason, int] = field(default_factory=lambda: dict.fromkeys(Reason, 0))
    last_http: dict[str, int] = field(default_factory=dict)
    causes: list[Cause] = field(default_factory=list)
    unreadable: int = 0
    journal: bool = False

    @property
    def rows(self) -> int:
        return sum(self.outcomes.values())

    @property
    def all_ok(self) -> bool:
        """Every row ok, or skipped on purpose (duplicate, already done, dry run)."""
        return not self.causes

    @property
    def worth_retrying(self) -> int:
        """Rows ``batcher retry`` sends again by default."""
        return sum(n for reason, n in self.reasons.items() if worth_retrying(reason))

    def next_steps(self) -> list[str]:
        """What to run next, each with a comment saying what it does."""
        path = shlex.quote(str(self.path))
        steps = []
        if self.journal:
            steps.append(
                f"# {journal_path(self.path).name} is still there: its run stopped early (or "
                "is still going); the same batcher run command resumes it"
            )
        if self.worth_retrying:
            steps.append(
                f"batcher retry {path}   # sends again the rows whose cause may pass "
                f"({self.worth_retrying}: 5xx, timeouts, 429, 449, 401, not sent)"
            )
        refused = self.reasons[Reason.REFUSED]
        if refused:
            steps.append(
                f"batcher retry {path} --outcomes failed   # once the cause of the rows "
                f"refused for good (400, 404: {refused}) is fixed: every failed row again"
            )
        invalid = self.reasons[Reason.INVALID]
        if invalid:
            steps.append(
                f"# invalid rows ({invalid}) were never sent: correct them in the input (the "
                "error column says what is wrong) and run them"
            )
        return steps or ["# nothing to do: every row is ok or was skipped on purpose"]

    def lines(self) -> list[str]:
        """The report as text."""
        http = " ".join(f"{code or 'none'} x{n}" for code, n in self._http_order())
        lines = [
            f"batcher report: {self.path}",
            f"  {self.rows} rows: {outcome_counts(self.outcomes, self.reasons)}",
            f"  HTTP, last answer per row: {http or 'none'}",
        ]
        if self.unreadable:
            lines.append(f"  {self.unreadable} lines are not rows batcher wrote; not counted")
        if self.causes:
            lines.append("  not ok, by cause (most frequent first):")
            width = len(str(self.causes[0].count))
            for cause in self.causes:
                shown = ", ".join(str(row) for row in cause.rows)
                more = cause.count - len(cause.rows)
                shown += f" and {more} more" if more else ""
                lines.append(
                    f"    {cause.count:>{width}}  {cause.outcome.value} ({cause.reason.value}): "
                    f"{cause.message}"
                )
                lines.append(f"    {'':>{width}}  rows {shown}")
        else:
            lines.append("  every row is ok or was skipped on purpose")
        lines.append("  next:")
        lines.extend(f"    {step}" for step in self.next_steps())
        return lines

    def _http_order(self) -> list[tuple[str, int]]:
        """Statuses in numeric order, rows never answered last."""
        return sorted(self.last_http.items(), key=lambda item: (not item[0], item[0]))

    def as_json(self) -> dict[str, object]:
        """The report as JSON (``--json``): counts, causes and next steps; no row data."""
        return {
            "results": str(self.path),
            "rows": self.rows,
            "outcomes": {o.value: self.outcomes[o] for o in Outcome},
            "reasons": {r.value: n for r, n in self.reasons.items() if n},
            "last_http_statuses": {code or "none": n for code, n in self._http_order()},
            "all_ok": self.all_ok,
            "not_ok": [
                {
                    "count": c.count,
                    "outcome": c.outcome.value,
                    "reason": c.reason.value,
                    "cause": c.message,
                    "rows": c.rows,
                }
                for c in self.causes
            ],
            "worth_retrying": self.worth_retrying,
            "unreadable": self.unreadable,
            "journal": self.journal,
            "next": self.next_steps(),
        }


def digest(path: Path) -> Digest:
    """Read a results file and count and group its rows; ``InputFileError`` if it is not one."""
    found = Digest(path, journal=journal_path(path).exists())
    groups: dict[tuple[Outcome, Reason, str], Cause] = {}
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:
            reader = csv.reader(file)
            header = [name.strip().casefold() for name in next(reader, [])]
            missing = [c for c in RESULT_COLUMNS if c not in header]
            if missing:
                raise InputFileError(
                    f"{str(path)!r} is not a batcher results file: no {', '.join(missing)} column"
                )
            at = {name: header.index(name) for name in RESULT_COLUMNS}
            for cells in reader:
                if not cells:
                    continue
                try:
                    row = int(cells[at["row"]])
                    outcome = Outcome(cells[at["outcome"]])
                    status = cells[at["http_status"]]
                    error = cells[at["error"]]
                    reason = recover_reason(outcome, int(status) if status else None, error)
                except (ValueError, IndexError):
                    found.unreadable += 1
                    continue
                found.outcomes[outcome] += 1
                found.reasons[reason] += 1
                found.last_http[status] = found.last_http.get(status, 0) + 1
                if outcome is Outcome.OK or reason in _FINE:
                    continue
                key = (outcome, reason, _message(reason, error))
                cause = groups.get(key)
                if cause is None:
                    cause = groups[key] = Cause(*key)
                cause.count += 1
                if len(cause.rows) < FIRST_ROWS:
                    cause.rows.append(row)
    except OSError as exc:
        raise InputFileError(f"cannot read results file {str(path)!r}: {exc.strerror}") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputFileError(f"{str(path)!r} is not a batcher results file: {exc}") from exc
    found.causes = sorted(groups.values(), key=lambda c: (-c.count, c.rows[0]))
    return found


def _message(reason: Reason, error: str) -> str:
    """A row's error as its cause: batcher's own words as such, values quoted in it masked."""
    own = TEXTS.get(reason)
    if own is not None and error.startswith(own) and reason is not Reason.AUTH_REFUSED:
        return own.rstrip(": ")
    return _LENGTH.sub(": more characters than", _QUOTED.sub("'…'", error)) or reason.value
