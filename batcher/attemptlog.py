"""The attempt log (``--log-file``): one JSON line per request sent.

Each line: ``time`` (UTC, ISO 8601), ``row``, ``identifier``, ``attempt``,
``http_status`` (null when no answer came), ``latency_ms``, ``pace`` (the
run's requests per second when it was sent), ``error`` and ``probe`` (true for
the one request an outage lets through to see whether the API is back). With ``redact``,
emails and phone numbers become stable pseudonyms (``email:#`` and the first
16 hex digits of their SHA-256), the same in every run, so lines about one
contact can still be grouped. The token is never in it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Protocol

from batcher.errors import StorageError


@dataclass(frozen=True, slots=True)
class Attempt:
    """One request sent, and what came of it.

    Attributes:
        row: The input row.
        identifier: The contact.
        attempt: 1 for the row's first request, 2 for the next, ...
        http_status: The answer's status, or None when no answer came.
        latency: Seconds from sending to the answer (or the error).
        pace: The run's requests per second when it was sent.
        error: The error text ("" for a clean 200).
        probe: Sent as the one probe of an outage (``batcher.health``).
    """

    row: int
    identifier: str
    attempt: int
    http_status: int | None
    latency: float
    pace: float
    error: str
    probe: bool = False


class AttemptLog(Protocol):
    def attempt(self, attempt: Attempt) -> None:
        """Record one request and what came of it."""

    def close(self) -> None: ...


class NullAttemptLog:
    """Records nothing."""

    def attempt(self, attempt: Attempt) -> None:
        pass

    def close(self) -> None:
        pass


def redact(identifier: str) -> str:
    """``email:…``/``phone:…`` as a stable pseudonym; ``id:…`` as it is."""
    kind, _, value = identifier.partition(":")
    if kind not in ("email", "phone"):
        return identifier
    return f"{kind}:#{hashlib.sha256(value.encode()).hexdigest()[:16]}"


class JsonAttemptLog:
    """Appends JSON lines to a file, flushed line by line."""

    def __init__(self, path: Path, *, redact_identifiers: bool = False) -> None:
        # O_NOFOLLOW: a symbolic link planted at the log's path is not appended through.
        self._path = path
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        self._file: IO[str] = os.fdopen(fd, "a", encoding="utf-8")
        self._redact = redact_identifiers

    def attempt(self, attempt: Attempt) -> None:
        line = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "row": attempt.row,
            "identifier": redact(attempt.identifier) if self._redact else attempt.identifier,
            "attempt": attempt.attempt,
            "http_status": attempt.http_status,
            "latency_ms": round(attempt.latency * 1000, 1),
            "pace": round(attempt.pace, 2),
            "error": attempt.error,
            "probe": attempt.probe,
        }
        try:
            self._file.write(json.dumps(line, ensure_ascii=False) + "\n")
            self._file.flush()
        except OSError as exc:
            raise StorageError(
                f"cannot write the --log-file {str(self._path)!r}: {exc.strerror or exc}; "
                "free some space, then run the same command to resume"
            ) from exc

    def close(self) -> None:
        self._file.close()
