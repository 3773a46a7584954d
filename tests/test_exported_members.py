"""The public surface of `import batcher` is exactly what `__all__` says, and stays light."""

from __future__ import annotations

import subprocess
import sys

import batcher


def test_every_exported_name_resolves() -> None:
    """Each name in batcher.__all__ can be imported, and dir() lists them all."""
    for name in batcher.__all__:
        assert getattr(batcher, name) is not None, name
    assert set(batcher.__all__) <= set(dir(batcher))


def test_exported_names_are_the_documented_ones() -> None:
    """The exported names are the library API the README documents, nothing more."""
    assert sorted(batcher.__all__) == sorted(
        [
            "AuthenticationFailed",
            "BatcherError",
            "InputFileError",
            "Interrupted",
            "Outcome",
            "RESULT_COLUMNS",
            "RunAborted",
            "RunSummary",
            "Settings",
            "UsageError",
            "load_settings",
            "retry_batch",
            "run_batch",
        ]
    )


def test_import_batcher_does_not_import_pandas_or_httpx() -> None:
    """`import batcher` pulls in neither pandas nor httpx until a run needs them."""
    code = "import sys, batcher; print([m for m in ('pandas', 'httpx') if m in sys.modules])"
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.stdout.strip() == "[]"
