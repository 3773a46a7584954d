"""batcher: apply the Aelyst open/close-conversation call to every row of a CSV file.

The library API::

    from batcher import Settings, run_batch

    summary = run_batch("contacts.csv", settings=Settings(rate=20))
    print(summary.outcomes, summary.results_path)

Names are imported on first use, so ``import batcher`` (and ``batcher --help``)
does not pay for pandas and httpx.

The public surface is ``__all__`` below, the test kit ``batcher.testing`` (a fake
clock and the simulated API in process) and the command line. Every other module
is internal: it may change between releases without notice.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "RESULT_COLUMNS",
    "ApiUnreachable",
    "AuthenticationFailed",
    "BatcherError",
    "InputFileError",
    "Interrupted",
    "Outcome",
    "Plan",
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

_WHERE = {
    "ApiUnreachable": "batcher.errors",
    "AuthenticationFailed": "batcher.errors",
    "BatcherError": "batcher.errors",
    "InputFileError": "batcher.errors",
    "Interrupted": "batcher.errors",
    "RunAborted": "batcher.errors",
    "StorageError": "batcher.errors",
    "TooManyErrors": "batcher.errors",
    "UsageError": "batcher.errors",
    "Outcome": "batcher.models",
    "Plan": "batcher.models",
    "Reason": "batcher.models",
    "RESULT_COLUMNS": "batcher.models",
    "RunSummary": "batcher.models",
    "Settings": "batcher.config",
    "load_settings": "batcher.config",
    "run_batch": "batcher.runner",
    "retry_batch": "batcher.retry",
}

if TYPE_CHECKING:
    from batcher.config import Settings, load_settings
    from batcher.errors import (
        ApiUnreachable,
        AuthenticationFailed,
        BatcherError,
        InputFileError,
        Interrupted,
        RunAborted,
        StorageError,
        TooManyErrors,
        UsageError,
    )
    from batcher.models import RESULT_COLUMNS, Outcome, Plan, Reason, RunSummary
    from batcher.retry import retry_batch
    from batcher.runner import run_batch


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'batcher' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(["__version__", *__all__])
