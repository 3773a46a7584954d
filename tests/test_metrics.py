"""--metrics-file: the node_exporter textfile format, parsed back, agreeing with the results."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from batcher import Settings, run_batch
from batcher.metrics import write_metrics
from batcher.simulator import RunningSimulator
from batcher.testing import FakeClock, SimulatorConfig, simulated_transport
from tests.conftest import TOKEN, CliRun, read_results, write_csv

Cli = Callable[..., CliRun]
HEADER = ("identifier", "status", "category", "summary")


def samples(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(name, labels) -> value for every sample of a metrics file, parsed as Prometheus text."""
    found = {}
    for family in text_string_to_metric_families(path.read_text(encoding="utf-8")):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def by_label(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str
) -> dict[str, float]:
    """One labelled series as label value -> value."""
    return {labels[0][1]: value for (n, labels), value in found.items() if n == name and labels}


def test_metrics_agree_with_the_results_and_the_summary(tmp_path: Path) -> None:
    """A run with 449s, 404s, invalid rows and a duplicate: the metrics file parses, its row
    counts equal the results file's, and requests per status, 449s, duration and exit code
    equal the summary's."""
    rows = [(f"id:{n}", "close", "Spam", "") for n in range(1, 41)]
    rows += [
        ("id:0", "close", "Spam", ""),
        ("bogus", "open", "", ""),
        ("id:1", "close", "Spam", ""),
    ]
    source = write_csv(tmp_path / "in.csv", HEADER, rows)
    clock = FakeClock()
    config = SimulatorConfig(queue_share=0.2, queue_hold=5.0, seed=4)
    out = tmp_path / "in.results.csv"
    transport = simulated_transport(config, clock=clock)
    summary = run_batch(
        source, out=out, settings=Settings(requeue_delay=3.0), token=TOKEN, clock=clock,
        transport=transport,
    )  # fmt: skip
    metrics = tmp_path / "batcher.prom"
    write_metrics(metrics, summary, exit_code=1, end_time=1_796_000_000.0)
    found = samples(metrics)
    results = Counter(r["outcome"] for r in read_results(out))
    assert by_label(found, "batcher_rows") == {
        o: float(results.get(o, 0)) for o in ("ok", "invalid", "failed", "deferred", "skipped")
    }
    assert by_label(found, "batcher_rows_by_reason")["duplicate"] == 1.0
    requests = by_label(found, "batcher_requests")
    assert requests == {**{str(k): float(v) for k, v in summary.http_statuses.items()},
                        "none": 0.0}  # fmt: skip
    assert requests["449"] > 0
    assert found[("batcher_responses_449", ())] == requests["449"]
    assert found[("batcher_responses_429", ())] == 0.0
    assert found[("batcher_duration_seconds", ())] == summary.elapsed
    assert found[("batcher_rows_per_second", ())] > 0
    assert found[("batcher_exit_code", ())] == 1.0
    assert found[("batcher_end_time_seconds", ())] == 1_796_000_000.0
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("batcher.prom")] == [
        "batcher.prom"
    ]  # written through a temporary file renamed into place; none left behind


def test_cli_metrics_file_row_counts_equal_the_results_file(
    tmp_path: Path, cli: Cli, simulator: Callable[..., RunningSimulator], token_env: str
) -> None:
    """batcher run --metrics-file: the exit code and the rows per outcome in the metrics equal
    the process's exit code and the results file's counts."""
    sim = simulator()
    rows = [("id:1", "open", "", ""), ("id:0", "open", "", ""), ("x", "open", "", "")]
    source = write_csv(tmp_path / "in.csv", HEADER, rows)
    metrics = tmp_path / "run.prom"
    ran = cli("run", source, "--base-url", sim.base_url, "--metrics-file", metrics)
    assert ran.code == 1, ran.err
    found = samples(metrics)
    assert found[("batcher_exit_code", ())] == 1.0
    results = Counter(r["outcome"] for r in read_results(tmp_path / "in.results.csv"))
    assert by_label(found, "batcher_rows") == {
        "ok": 1.0, "invalid": 1.0, "failed": 1.0, "deferred": 0.0, "skipped": 0.0
    }  # fmt: skip
    assert sum(by_label(found, "batcher_rows").values()) == sum(results.values())
    assert TOKEN not in metrics.read_text()


def test_metrics_of_a_run_that_could_not_start(tmp_path: Path, cli: Cli) -> None:
    """Exit 2 still writes the metrics file: the exit code and the end time, no row counts."""
    metrics = tmp_path / "run.prom"
    ran = cli("run", tmp_path / "missing.csv", "--metrics-file", metrics)
    assert ran.code == 2
    found = samples(metrics)
    assert found[("batcher_exit_code", ())] == 2.0
    assert ("batcher_end_time_seconds", ()) in found
    assert not by_label(found, "batcher_rows")


def test_metrics_file_in_a_missing_folder_is_refused(tmp_path: Path, cli: Cli) -> None:
    """A metrics file whose folder does not exist: exit 2 before anything is read or sent."""
    source = write_csv(tmp_path / "in.csv", HEADER, [("id:1", "open", "", "")])
    ran = cli("run", source, "--dry-run", "--metrics-file", tmp_path / "no" / "run.prom")
    assert ran.code == 2
    assert "--metrics-file's folder" in ran.err


def test_import_batcher_does_not_import_prometheus_client() -> None:
    """prometheus_client is imported only when a run writes a metrics file."""
    code = "import sys, batcher.cli; print('prometheus_client' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60, stdin=subprocess.DEVNULL)  # fmt: skip
    assert done.stdout.strip() == "False"
