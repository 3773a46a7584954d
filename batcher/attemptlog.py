"""The attempt log (``--log-file``): one JSON line per request sent.

Each line: ``time`` (UTC, ISO 8601), ``row``, ``identifier``, ``attempt``,
``http_status`` (null when no answer came), ``latency_ms``, ``pace`` (the
run's requests per second when it was sent) and ``error``. With ``redact``,
emails and phone numbers become stable pseudonyms (``email:#`` and the first
16 hex digits of their SHA-256), the same in every run, so lines about one
contact can still be grouped. The token is never in it.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Protocol


class AttemptLog(Protocol):
    def attempt(
        self,
        *,
        row: int,
        identifier: str,
        attempt: int,
        http_status: int | None,
        latency: float,
        pace: float,
        error: str,
    ) -> None:
        """Record one request and what came of it."""

    def close(self) -> None: ...


class NullAttemptLog:
    """Records nothing."""

    def attempt(
        self,
        *,
        row: int,
        identifier: str,
        attempt: int,
        http_status: int | None,
        latency: float,
        pace: float,
        error: str,
    ) -> None:
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
        self._file: IO[str] = path.open("a", encoding="utf-8")
        self._redact = redact_identifiers

    def attempt(
        self,
        *,
        row: int,
        identifier: str,
        attempt: int,
        http_status: int | None,
        latency: float,
        pace: float,
        error: str,
    ) -> None:
        line = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "row": row,
            "identifier": redact(identifier) if self._redact else identifier,
            "attempt": attempt,
            "http_status": http_status,
            "latency_ms": round(latency * 1000, 1),
            "pace": round(pace, 2),
            "error": error,
        }
        self._file.write(json.dumps(line, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
