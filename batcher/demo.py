"""``batcher demo``: a real run against the built-in simulator, with nothing to set up.

The simulator is started on a free loopback port with a throwaway token,
a shared limit of 20 requests a second, a few 449s and 500s; the run uses
that token directly (nothing is read from or written to the environment) and
writes its results into a new temporary directory, or the folder ``--keep``
names. The command then shows the first rows of the results as a small table
(``results_table``) and says where the whole file is.
"""

from __future__ import annotations

import csv
import secrets
import tempfile
from pathlib import Path

from batcher.config import Settings
from batcher.errors import UsageError
from batcher.models import RunSummary
from batcher.progress import make_progress
from batcher.runner import run_batch
from batcher.simulator import SimulatorConfig, running

#: The sample file the demo runs when none is named: package data, so that an installed
#: batcher (pip, a wheel, pipx) finds it from any folder.
DEMO_INPUT = Path(__file__).resolve().parent / "samples" / "demo.csv"


#: The results columns the demo's table shows.
TABLE_COLUMNS = ("row", "identifier", "outcome", "http_status", "error")


def run_demo(
    input_path: Path | None = None, *, progress: bool = True, keep: Path | None = None
) -> RunSummary:
    """Run ``input_path`` (default: the demo sample) against a fresh simulator; the results
    go to the folder ``keep`` (made if need be), or to a new temporary one."""
    source = input_path or DEMO_INPUT
    if not source.is_file():
        raise UsageError(f"demo input {str(source)!r} not found; name a CSV file to run")
    if keep is not None:
        if keep.exists() and not keep.is_dir():
            raise UsageError(f"--keep {str(keep)!r} is a file; name a folder")
        keep.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    config = SimulatorConfig(
        token=token, shared_limit=20, queue_share=0.1, queue_hold=1.5, error_rate=0.05, seed=7
    )
    folder = keep if keep is not None else Path(tempfile.mkdtemp(prefix="batcher-demo-"))
    out = folder / f"{source.stem}.results.csv"
    with running(config) as sim:
        settings = Settings(base_url=sim.base_url, requeue_delay=1.0, backoff_base=0.2)
        return run_batch(
            source, out=out, settings=settings, token=token, progress=make_progress(progress)
        )


def results_table(path: Path, *, rows: int = 10, width: int = 48) -> str:
    """The first ``rows`` rows of a results file as a plain-text table of ``TABLE_COLUMNS``,
    each cell cut to ``width`` characters, and a last line saying how many rows there are."""
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        shown: list[list[str]] = []
        total = 0
        for record in reader:
            total += 1
            if len(shown) < rows:
                shown.append([_cut(record.get(name) or "", width) for name in TABLE_COLUMNS])
    table = [list(TABLE_COLUMNS), *shown]
    widths = [max(len(line[i]) for line in table) for i in range(len(TABLE_COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
             for line in table]  # fmt: skip
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(f"({len(shown)} of {total} rows)" if total > len(shown) else f"({total} rows)")
    return "\n".join(lines)


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())  # one line: an error may hold a newline
    return text if len(text) <= width else text[: width - 1] + "…"
