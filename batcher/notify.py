"""``--notify URL``: the summary JSON POSTed somewhere when a run ends.

One POST per run, whatever its exit code (also when it could not start): the
summary JSON (counts, times, paths: no row's data) plus a ``text`` field holding the
one-line summary, so a Slack or Mattermost incoming webhook shows it as is. It is
sent by a client of its own, with none of the API's headers (no token), no redirects
followed, and the environment's proxies ignored for a loopback receiver.

A notification must never hold up or change the run it reports: the whole delivery,
retries included, fits in ``TIMEOUT`` seconds, and a failure is returned as a
``Delivery`` (for stderr and the summary JSON), never raised. The URL itself is never
shown, only its scheme and host: a webhook's path is its secret.

This module and ``batcher.client`` are the only users of httpx (the test kit aside).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from batcher import __version__
from batcher.config import check_url, is_loopback

#: Seconds the whole delivery may take, retries and pauses included.
TIMEOUT = 10.0
#: Tries after the first, for no answer, a 5xx or a 429.
RETRIES = 2
#: Pause before each retry (cut short by ``TIMEOUT``).
_PAUSES = (1.0, 2.0)


@dataclass(frozen=True, slots=True)
class Delivery:
    """How a notification went.

    Attributes:
        delivered: The receiver answered 2xx.
        attempts: POSTs sent.
        error: Why it was not delivered ("" when it was); names the host, never the URL.
    """

    delivered: bool
    attempts: int
    error: str = ""

    def as_json(self) -> dict[str, object]:
        return {"delivered": self.delivered, "attempts": self.attempts, "error": self.error}


def where(url: str) -> str:
    """``https://hooks.example.com``: the URL without its path, query or credentials."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


def notify(
    url: str,
    data: Mapping[str, object],
    text: str,
    *,
    timeout: float = TIMEOUT,
    retries: int = RETRIES,
    transport: httpx.BaseTransport | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Delivery:
    """POST ``data`` with ``text`` to ``url``; how it went (never raises for the receiver).

    ``UsageError`` only for a URL that is neither https nor plain http to a loopback host
    (the run's settings refuse it before the run starts).
    """
    check_url(url, "notify URL", show=False)
    body = {**data, "text": text}
    deadline = clock() + timeout
    loopback = is_loopback(urlsplit(url).hostname or "")
    attempts, error = 0, "not sent"
    with httpx.Client(
        headers={"User-Agent": f"batcher/{__version__}"},
        follow_redirects=False,
        trust_env=not loopback,
        transport=transport,
    ) as client:
        while attempts <= retries:
            left = deadline - clock()
            if left <= 0:
                error = f"gave up after {timeout:g} s: {error}"
                break
            attempts += 1
            try:
                response = client.post(url, json=body, timeout=left)
            except httpx.HTTPError as exc:
                # httpx's messages name the host at most; the URL is cut out to be sure.
                error = f"{type(exc).__name__}: {exc}".replace(url, where(url))
            else:
                if response.is_success:
                    return Delivery(True, attempts)
                error = f"answered {response.status_code} {response.reason_phrase}".strip()
                if response.status_code < 500 and response.status_code != 429:
                    break  # refused: sending it again would be refused again
            if attempts <= retries:
                pause = min(_PAUSES[min(attempts, len(_PAUSES)) - 1], deadline - clock())
                if pause > 0:
                    sleep(pause)
    return Delivery(False, attempts, f"{where(url)}: {error}")
