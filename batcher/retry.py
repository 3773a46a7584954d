"""``batcher retry``: send again the rows of a results file that are worth it.

The results file is read as input: its ``identifier``/``status``/``category``/
``summary`` columns are the calls, its ``row`` column keeps the original row
numbers, and the columns after ``error`` are the original extra columns. The
new results file has the same format and holds the rows that were sent again:
the chosen ones, and after each the later rows of the same contact that had
reached the server, so the contact's rows still apply in file order.
"""

from __future__ import annotations

from array import array
from collections.abc import Collection, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Unpack

from batcher.config import Settings
from batcher.errors import InputFileError, UsageError
from batcher.feed import Classifier, Kind, Source
from batcher.models import RESULT_COLUMNS, Outcome, Reason, Record, Result, RunSummary
from batcher.policy import recover_reason, worth_retrying
from batcher.reader import read_records, scan_input
from batcher.runner import RunOptions, start_run

_OWN = frozenset(RESULT_COLUMNS) - {"identifier", "status", "category", "summary"}


def default_retry_path(results_path: Path) -> Path:
    """``<results stem>.retry.csv`` beside the results file."""
    return results_path.with_name(f"{results_path.stem}.retry.csv")


def parse_outcomes(text: str) -> frozenset[Outcome]:
    """``failed,deferred`` as a set of outcomes; UsageError naming the allowed ones."""
    chosen = set()
    for name in filter(None, (part.strip().lower() for part in text.split(","))):
        try:
            chosen.add(Outcome(name))
        except ValueError:
            allowed = ", ".join(o.value for o in Outcome if o is not Outcome.OK)
            raise UsageError(f"--outcomes: {name!r} is not one of {allowed}") from None
    if not chosen:
        raise UsageError("--outcomes names no outcome")
    return frozenset(chosen)


def retry_source(
    results_path: Path, outcomes: Collection[Outcome] | None = None, *, settings: Settings
) -> Source:
    """The rows of a results file to send again, as a run's source.

    ``outcomes`` None selects as ``policy.worth_retrying`` says; a set selects every row
    with one of those outcomes (``failed`` then includes 400 and 404).
    """
    info = scan_input(results_path, encoding="utf-8", delimiter=settings.delimiter or ",")
    missing = [c for c in RESULT_COLUMNS if c not in {n.casefold() for n in info.header}]
    if missing:
        raise InputFileError(
            f"{str(results_path)!r} is not a batcher results file: no {', '.join(missing)} column"
        )
    names = info.extra_columns
    at = {name.casefold(): i for i, name in enumerate(names)}
    keep = [i for i, name in enumerate(names) if name.casefold() not in _OWN]
    extra_columns = tuple(names[i] for i in keep)

    def results() -> Iterator[Result]:
        # A duplicate is found again by the rule that found it (feed.Classifier), not by
        # the words of its error: the results file has no reason column.
        classifier = Classifier(
            allowed_categories=settings.allowed_categories, done_rows=array("q")
        )
        try:
            for record in read_records(info):
                result = _as_result(record, at, keep)
                if result is None:
                    continue
                repeat = classifier.classify(result.record).kind is Kind.DUPLICATE
                if result.outcome is Outcome.SKIPPED and repeat:
                    result = replace(result, reason=Reason.DUPLICATE)
                yield result
        finally:
            classifier.close()

    def chosen(result: Result) -> bool:
        return worth_retrying(result.reason) if outcomes is None else result.outcome in outcomes

    # A contact's rows apply in file order: when row 5 (open) is sent again, a later row 6
    # (close) that went through must go again after it, or the contact would end open.
    first_chosen: dict[str, int] = {}
    for result in results():
        if chosen(result):
            first_chosen.setdefault(result.record.identifier, result.row)

    def selected() -> Iterator[Record]:
        for result in results():
            first = first_chosen.get(result.record.identifier)
            replay = first is not None and result.row > first and _was_sent(result)
            if chosen(result) or replay:
                yield result.record

    total = sum(1 for _ in selected())
    return Source(info, total, extra_columns, selected)


def _was_sent(result: Result) -> bool:
    """A row that reached the server (so its place in the contact's sequence matters)."""
    return result.outcome in (Outcome.OK, Outcome.FAILED, Outcome.DEFERRED)


def _as_result(record: Record, at: dict[str, int], keep: list[int]) -> Result | None:
    """The results-file row as it was, with its original row number and extras."""
    cells = record.extras
    try:
        row = int(cells[at["row"]])
        outcome = Outcome(cells[at["outcome"]])
        status_text = cells[at["http_status"]]
        http_status = int(status_text) if status_text else None
    except (ValueError, IndexError):
        return None  # not a row batcher wrote: leave it alone
    original = Record(
        row,
        record.identifier,
        record.status,
        record.category,
        record.summary,
        tuple(cells[i] for i in keep if i < len(cells)),
    )
    error = cells[at["error"]]
    reason = recover_reason(outcome, http_status, error)
    return Result(original, outcome, http_status=http_status, error=error, reason=reason)


def retry_batch(
    results_path: str | Path,
    *,
    out: str | Path | None = None,
    outcomes: Collection[Outcome] | None = None,
    settings: Settings | None = None,
    restart: bool = False,
    **options: Unpack[RunOptions],
) -> RunSummary:
    """Send again the rows of a results file worth another try; write a new results file."""
    settings = settings or Settings()
    source_path = Path(results_path)
    source = retry_source(source_path, outcomes, settings=settings)
    out_path = Path(out) if out is not None else default_retry_path(source_path)
    return start_run(source, out=out_path, settings=settings, restart=restart, **options)
