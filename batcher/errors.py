"""Errors that end a whole run.

A row that fails is never an exception: it becomes an outcome in the results
file (see ``batcher.models.Outcome``). Exceptions are for the run as a whole,
and all of them derive from one root, so the CLI maps them to exit codes in
one place::

    BatcherError                 the root; never raised itself
    ├── UsageError               exit 2: bad arguments or config, missing token
    │   └── InputFileError       exit 2: unreadable input, missing or duplicate column
    └── RunAborted               exit 3: the run stopped part-way
        ├── AuthenticationFailed     the server answered 401
        ├── Interrupted              Ctrl-C / SIGTERM
        ├── ApiUnreachable           an outage outlasted --outage-wait, or a long Retry-After
        ├── TooManyErrors            --max-same-errors or --max-errors was reached
        └── StorageError             the journal or the results file could not be written

Nothing here ever holds the API token: messages name the environment
variable that holds it, never its value.
"""

from __future__ import annotations


class BatcherError(Exception):
    """Root of every error batcher raises for a run as a whole."""

    #: The process exit code the CLI uses for this error.
    exit_code: int = 1


class UsageError(BatcherError):
    """The run could not start: bad arguments, bad config or a missing token. Nothing was sent."""

    exit_code = 2


class InputFileError(UsageError):
    """The input file cannot be read as batcher input. Nothing was sent."""


class RunAborted(BatcherError):
    """The run stopped part-way; the results file still lists every row."""

    exit_code = 3

    def __init__(self, message: str, *, summary: object | None = None) -> None:
        super().__init__(message)
        #: The ``RunSummary`` of the rows recorded before the stop, when there is one.
        self.summary = summary


class AuthenticationFailed(RunAborted):
    """The server answered 401: the token is missing, wrong or revoked."""


class Interrupted(RunAborted):
    """The run was interrupted (Ctrl-C, SIGTERM)."""


class ApiUnreachable(RunAborted):
    """The API did not answer for longer than ``--outage-wait``."""


class TooManyErrors(RunAborted):
    """Rows were refused alike (``--max-same-errors``) or too often (``--max-errors``)."""


class StorageError(RunAborted):
    """The journal or the results file could not be written (a full disk, say).

    What was recorded is kept: once the cause is fixed, the same command resumes.
    """
