"""What a run reports: the summary on stderr, the one-line summary, the plan, the JSON.

Nothing here holds a row's data or the token: counts, times and paths only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from batcher.models import Outcome, Plan, Reason, RunSummary
from batcher.writer import atomic_text


def summary_lines(summary: RunSummary) -> list[str]:
    """The summary printed at the end of a run."""
    return [
        one_line(summary),
        "  "
        + outcome_counts(summary.outcomes, summary.reasons)
        + (f" (resumed {summary.resumed})" if summary.resumed else ""),
        f"  HTTP: {_statuses(summary) or 'none sent'}",
        f"  results: {summary.results_path}",
    ]


def outcome_counts(outcomes: Mapping[Outcome, int], reasons: Mapping[Reason, int]) -> str:
    """``ok 150 · invalid 0 · failed 0 · deferred 0 · skipped 250 (already done 250)``: the
    counts line of a run's summary, and of ``batcher report`` on its results file."""
    text = " · ".join(f"{o.value} {outcomes.get(o, 0)}" for o in Outcome)
    duplicates = reasons.get(Reason.DUPLICATE, 0)
    already_done = reasons.get(Reason.ALREADY_DONE, 0)
    text += f" (duplicates {duplicates})" if duplicates else ""
    return text + (f" (already done {already_done})" if already_done else "")


def one_line(summary: RunSummary) -> str:
    """The whole run in one line (all ``--quiet`` prints)."""
    ok, rows = summary.outcomes[Outcome.OK], summary.rows
    line = (
        f"batcher: {rows} rows in {summary.elapsed:.1f} s, {summary.requests} requests "
        f"({requests_per_second(summary):.1f}/s); ok {ok}, not ok {rows - ok}"
    )
    return line + (f"; stopped: {summary.stopped}" if summary.stopped else "")


def plan_lines(plan: Plan, max_duration: float) -> list[str]:
    """The plan printed before the first request, with a warning if the deadline is short."""
    pace = (
        f"at most {plan.ceiling:g}/s" if plan.ceiling else "learned from the API's headers"
    ) + f", starting at {plan.start_rate:g}/s"
    if plan.ceiling:
        when = f"at {plan.ceiling:g}/s this takes about {duration(plan.estimate)}"
    else:
        when = (
            f"at the start pace it would take {duration(plan.estimate)}; "
            "less once the API's headers show a higher limit"
        )
    lines = [
        f"batcher: plan: {plan.to_send} rows to send of {plan.rows} "
        f"({plan.invalid} invalid, {plan.duplicates} duplicates"
        + (f", {plan.already_done} already done" if plan.already_done else "")
        + (f", {plan.resumed} done by the interrupted run" if plan.resumed else "")
        + ")",
        f"batcher: pace: {pace}; {when}",
    ]
    if max_duration and plan.estimate > max_duration:
        lines.append(
            f"batcher: warning: --max-duration {duration(max_duration)} is shorter than the "
            f"estimate ({duration(plan.estimate)}); rows not sent by then are skipped and "
            "the same command resumes them"
        )
    return lines


def requests_per_second(summary: RunSummary) -> float:
    return summary.requests / summary.elapsed if summary.elapsed > 0 else 0.0


def rows_per_second(summary: RunSummary) -> float:
    """Rows this run gave an outcome (not those a resumed run found done) per second."""
    rows_this_run = summary.rows - summary.resumed
    return rows_this_run / summary.elapsed if summary.elapsed > 0 else 0.0


def summary_json(
    summary: RunSummary, *, exit_code: int, input_path: Path, results_path: Path
) -> dict[str, object]:
    """The machine-readable summary (``--summary-json``)."""
    return {
        "input": str(input_path),
        "results": str(results_path),
        "started_at": summary.started_at,
        "ended_at": summary.ended_at,
        "elapsed_seconds": round(summary.elapsed, 3),
        "rows": summary.rows,
        "outcomes": {o.value: summary.outcomes[o] for o in Outcome},
        "reasons": {r.value: n for r, n in summary.reasons.items() if n},
        "duplicates": summary.duplicates,
        "already_done": summary.already_done,
        "resumed": summary.resumed,
        "requests": summary.requests,
        "http_statuses": {str(k): v for k, v in sorted(summary.http_statuses.items())},
        "no_answer": summary.no_answer,
        "throttled_429": summary.http_statuses.get(429, 0),
        "queued_449": summary.http_statuses.get(449, 0),
        "rows_per_second": round(rows_per_second(summary), 2),
        "requests_per_second": round(requests_per_second(summary), 2),
        "stopped": summary.stopped,
        "stop_reason": summary.stop_reason.value if summary.stop_reason else None,
        "outages": [
            {
                "start": o.start,
                "end": o.end or None,
                "seconds": round(o.seconds, 1),
                "probes": o.probes,
                "last_error": o.last_error,
            }
            for o in summary.outages
        ],
        "exit_code": exit_code,
    }


def write_json(path: Path, data: dict[str, object]) -> None:
    """Write JSON atomically (a monitor never reads half a file)."""
    with atomic_text(path) as out:
        json.dump(data, out, indent=2)
        out.write("\n")


def duration(seconds: float) -> str:
    """``3h05m``, ``12m30s``, ``42s``."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _statuses(summary: RunSummary) -> str:
    text = " ".join(f"{code} x{n}" for code, n in sorted(summary.http_statuses.items()))
    if summary.no_answer:
        text += f" no answer x{summary.no_answer}"
    return text.strip()
