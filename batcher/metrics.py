"""``--metrics-file``: a run's numbers for node_exporter's textfile collector.

The only module that imports ``prometheus_client`` (imported only when a run asks for
a metrics file, so ``import batcher`` stays light). Every value is a gauge of the last
run, written at its end into a fresh registry; ``write_to_textfile`` writes a temporary
file beside the target and renames it into place, so the collector never reads half a
file. Counts, times and the exit code only: no row's data, never the token.

Series (``batcher_`` prefix): ``rows{outcome}``, ``rows_by_reason{reason}``,
``requests{http_status}`` ("none": no answer at all), ``responses_429``,
``responses_449``, ``duration_seconds``, ``rows_per_second``, ``requests_per_second``,
``exit_code`` and ``end_time_seconds`` (Unix time). A run that could not start (exit 2)
writes only the last two.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

from batcher.models import Outcome, Reason, RunSummary
from batcher.report import requests_per_second, rows_per_second


def write_metrics(
    path: Path, summary: RunSummary | None, *, exit_code: int, end_time: float
) -> None:
    """Write the run's metrics to ``path`` atomically (``summary`` None: it did not start)."""
    registry = CollectorRegistry()

    def gauge(name: str, documentation: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(f"batcher_{name}", documentation, labels, registry=registry)

    gauge("exit_code", "Exit code of the last run (0 all ok, 1 some rows not ok, 2, 3)").set(
        exit_code
    )
    gauge("end_time_seconds", "When the last run ended, in Unix time").set(end_time)
    if summary is not None:
        rows = gauge("rows", "Rows of the results file per outcome", ("outcome",))
        for outcome in Outcome:
            rows.labels(outcome=outcome.value).set(summary.outcomes[outcome])
        reasons = gauge("rows_by_reason", "Rows of the results file per reason", ("reason",))
        for reason in Reason:
            reasons.labels(reason=reason.value).set(summary.reasons[reason])
        requests = gauge(
            "requests",
            'Requests sent, per HTTP status answered ("none": no answer)',
            ("http_status",),
        )
        for status, n in sorted(summary.http_statuses.items()):
            requests.labels(http_status=str(status)).set(n)
        requests.labels(http_status="none").set(summary.no_answer)
        gauge("responses_429", "Answers 429 (over the rate limit)").set(
            summary.http_statuses.get(429, 0)
        )
        gauge("responses_449", "Answers 449 (in queue, try again later)").set(
            summary.http_statuses.get(449, 0)
        )
        gauge("duration_seconds", "How long the last run took").set(summary.elapsed)
        gauge("rows_per_second", "Rows given an outcome per second").set(rows_per_second(summary))
        gauge("requests_per_second", "Requests sent per second").set(requests_per_second(summary))
    write_to_textfile(str(path), registry)
