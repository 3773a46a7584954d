"""``batcher demo``: a real run against the built-in simulator, with nothing to set up.

The simulator is started on a free loopback port with a throwaway token,
a shared limit of 20 requests a second, a few 449s and 500s; the run uses
that token directly (nothing is read from or written to the environment) and
writes its results into a new temporary directory.
"""

from __future__ import annotations

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


def run_demo(input_path: Path | None = None, *, progress: bool = True) -> RunSummary:
    """Run ``input_path`` (default: the demo sample) against a fresh simulator."""
    source = input_path or DEMO_INPUT
    if not source.is_file():
        raise UsageError(f"demo input {str(source)!r} not found; name a CSV file to run")
    token = secrets.token_urlsafe(24)
    config = SimulatorConfig(
        token=token, shared_limit=20, queue_share=0.1, queue_hold=1.5, error_rate=0.05, seed=7
    )
    out = Path(tempfile.mkdtemp(prefix="batcher-demo-")) / f"{source.stem}.results.csv"
    with running(config) as sim:
        settings = Settings(base_url=sim.base_url, requeue_delay=1.0, backoff_base=0.2)
        return run_batch(
            source, out=out, settings=settings, token=token, progress=make_progress(progress)
        )
