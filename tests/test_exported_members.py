"""The public surface of `import batcher` is exactly what `__all__` says, and stays light."""

from __future__ import annotations

import subprocess
import sys

import batcher
import batcher.testing


def test_every_exported_name_resolves() -> None:
    """Each name in batcher.__all__ can be imported from the package."""
    for name in batcher.__all__:
        assert getattr(batcher, name) is not None, name


def test_dir_lists_exactly_the_public_names() -> None:
    """dir(batcher) offers the exported names and the version, and none of the package's
    own imports (importlib, TYPE_CHECKING, ...) as if they were API."""
    public = {name for name in dir(batcher) if not name.startswith("_")}
    assert public == set(batcher.__all__)


def test_exported_names_are_the_documented_ones() -> None:
    """The exported names are the library API the README documents, nothing more."""
    assert sorted(batcher.__all__) == sorted(
        [
            "ApiUnreachable",
            "AuthenticationFailed",
            "BatcherError",
            "InputFileError",
            "Interrupted",
            "Outcome",
            "Plan",
            "RESULT_COLUMNS",
            "Reason",
            "RunAborted",
            "RunSummary",
            "Settings",
            "StorageError",
            "TooManyErrors",
            "UsageError",
            "load_settings",
            "retry_batch",
            "run_batch",
        ]
    )


def test_the_test_kit_exports_what_its_docs_name() -> None:
    """batcher.testing offers FakeClock, SimulatorConfig and simulated_transport, each usable."""
    assert sorted(batcher.testing.__all__) == [
        "FakeClock",
        "SimulatorConfig",
        "simulated_transport",
    ]
    for name in batcher.testing.__all__:
        assert callable(getattr(batcher.testing, name)), name


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
