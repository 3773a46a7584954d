"""The rules of the simulated Aelyst conversation-status endpoint, with no I/O of their own.

``SimulatedAPI`` answers ``POST /v1/contact/{identifier}/conversation/status``
the way the API's documentation says it does, plus the failures a bulk run must
survive: rate limits, revoked tokens, 449 "in queue", 500s, dropped connections
and slow answers. Two shells serve these same rules, so a test can pick either
and get the same answers: ``batcher.simulator`` over real HTTP/1.1 (anyio + h11)
and ``batcher.simtransport`` in process, as an httpx transport.

Before any request, a connection may be refused outright: from the moment
``down_after`` requests have arrived, for ``down_for`` seconds, the API is down
(``refuses_connection``; each refusal is timed in ``refusals``).

Each request goes through these checks, in order; the first that fires answers::

    drop_rate        the connection is closed after the request is read, no answer
    latency          the shell waits this long before answering
    route            any other path: 404 {"code":404,"message":"Not found"};
                     another method on the endpoint's path: 405
    auth             no / wrong bearer token, or more than ``revoke_after`` accepted
                     requests: 401 {"code":401,"message":"UN_AUTHORIZED"}
    rate limit       429 {"code":429,"message":"Too Many Requests"} + Retry-After
    validation       400 {"code":400,"message":"Validation error."}
    unknown contact  404 {"code":404,"message":"Contact not found"}
    blocked contact  400 {"code":400,"message":"Contact is blocked"}
    queue            449 (no Retry-After)
    error_rate       500 {"code":500,"message":"Unexpected error occurred"}
    success          200 {"contactId": N}

A request is decided, recorded and (on a 200) applied to ``statuses`` when it
arrives; ``latency`` only delays the answer. The rules never wait: the answer
says how long to, and the shell does the waiting on its clock.

Contacts follow a documented rule, so tests can name the answer they want:

- unknown (404): ``id:0`` (any ``id:`` whose number is zero), any ``phone:+0...``,
  and any identifier containing ``unknown`` in any case;
- blocked (400): any identifier containing ``blocked``;
- every other identifier that passes validation exists. Its contactId is ``N``
  for ``id:N``, otherwise a stable positive 31-bit number hashed from the
  identifier (blake2b), the same in every run.

The identifier is the one path segment between ``/v1/contact/`` and
``/conversation/status``, percent-decoded with ``urllib.parse.unquote`` (so a
literal ``+`` stays ``+``, ``%2B`` and ``%2F`` decode to ``+`` and ``/``). A
query string is not part of the path: an unencoded ``?`` in an email cuts the
path short and gets the route's 404, as it would on a real server.

Rate limits are fixed windows ``floor(now / window)`` on the server's clock, or with
``window_kind="sliding"`` sliding ones: a request counts from its arrival until
``window`` seconds later, and Retry-After is the time until the oldest counted one
leaves, rounded up (at least 1).
Only requests that pass auth and are not themselves answered 429 use up budget.
``shared_limit`` counts every path together, ``path_limit`` counts each unique
raw path on its own (the two readings of the API's documentation). Answers
past auth carry ``X-RateLimit-Limit`` / ``X-RateLimit-Remaining`` for the
shared limit when one is set, else for the path's limit; ``rate_headers``
switches them off or makes them lie.

A body over 64 KiB is answered 413 before any check, and is not recorded: real
bodies are under 1 KiB, and the cap keeps a runaway client from filling memory.

Only the standard library is imported here: the simulated API must never share
code with the client it is testing.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import IO, Final
from urllib.parse import unquote

__all__ = [
    "MAX_BODY",
    "Answer",
    "RequestRecord",
    "SimulatedAPI",
    "SimulatorConfig",
    "contact_id",
]

_RATE_HEADER_MODES: Final = frozenset({"normal", "none", "zero", "garbage"})
_WINDOW_KINDS: Final = frozenset({"fixed", "sliding"})
#: Paths a sliding window keeps before it forgets those with nothing left counted.
_SLIDING_PATHS: Final = 4096

#: The largest request body the API reads; a larger one is answered 413.
MAX_BODY: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """How the simulated API behaves. The defaults give a well-behaved server with no limits.

    Attributes:
        token: The only bearer token accepted; ``None`` accepts any non-empty token.
        revoke_after: After this many requests have passed auth, every request
            gets 401, as if the token were revoked mid-run. ``None``: never.
        shared_limit: Requests allowed per window across all paths; ``None``: no limit.
        path_limit: Requests allowed per window for each unique request path;
            ``None``: no limit.
        window: Window length in seconds. Fixed windows are aligned to multiples of
            ``window`` on the server's clock.
        window_kind: ``"fixed"`` (windows ``floor(now / window)``) or ``"sliding"``
            (each request counts for ``window`` seconds from its arrival).
        rate_headers: ``"normal"`` (true headers when a limit is set), ``"none"``
            (never sent), ``"zero"`` (``Limit: 0`` and ``Remaining: 0`` on every
            answer past auth, the real limits still enforced) or ``"garbage"``
            (non-numeric values).
        queue_share: Share of contacts, picked by a seeded hash of the identifier,
            that answer 449 for a while.
        queue_hold: Seconds such a contact keeps answering 449, counted from the
            first request for it that reached the queue check.
        error_rate: Share of requests, past every other check, answered 500.
        drop_rate: Share of requests whose connection is closed after the request
            is read, without any answer.
        latency: Seconds to wait before answering each request.
        require_category: The workspace rule that closing needs a category:
            a close without one (absent or empty) gets 400.
        seed: Seeds every random choice: drops, 500s and the queued contacts.
        down_after: After this many requests have arrived, the API goes down: every
            connection is refused for ``down_for`` seconds. ``None``: never; 0: down
            from the start.
        down_for: Seconds the API stays down (``math.inf``: for good).
        log_path: If set, one JSON line per request (a ``RequestRecord``) is
            appended there and flushed, for tests that run batcher as a subprocess.
    """

    token: str | None = None
    revoke_after: int | None = None
    shared_limit: int | None = None
    path_limit: int | None = None
    window: float = 1.0
    window_kind: str = "fixed"
    rate_headers: str = "normal"
    queue_share: float = 0.0
    queue_hold: float = 0.0
    error_rate: float = 0.0
    drop_rate: float = 0.0
    latency: float = 0.0
    require_category: bool = False
    seed: int = 0
    down_after: int | None = None
    down_for: float = 0.0
    log_path: str | None = None

    def __post_init__(self) -> None:
        # Fail at construction, not as a puzzling answer in the middle of a test.
        if self.rate_headers not in _RATE_HEADER_MODES:
            raise ValueError(f"rate_headers must be one of {sorted(_RATE_HEADER_MODES)}")
        if self.window_kind not in _WINDOW_KINDS:
            raise ValueError(f"window_kind must be one of {sorted(_WINDOW_KINDS)}")
        if not self.window > 0:
            raise ValueError("window must be positive")
        for name in ("revoke_after", "shared_limit", "path_limit", "down_after"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must not be negative")
        for name in ("queue_share", "error_rate", "drop_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.queue_hold < 0 or self.latency < 0 or self.down_for < 0:
            raise ValueError("queue_hold, latency and down_for must not be negative")


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request the simulated API received, and how it answered.

    Attributes:
        time: Server clock (monotonic by default) when the request was decided,
            on arrival, before any latency.
        identifier: The path segment, percent-decoded, or the raw path when the
            path did not match the endpoint.
        raw_path: The path exactly as received, still percent-encoded, without
            any query string.
        body: The parsed JSON body when it was a JSON object, else ``None``.
        status: The HTTP status answered; 0 for a dropped connection.
        contact_id: The ``contactId`` answered with a 200, else ``None``.
    """

    time: float
    identifier: str
    raw_path: str
    body: dict[str, object] | None
    status: int
    contact_id: int | None


_Headers = tuple[tuple[bytes, bytes], ...]

_REASONS: Final = {
    200: b"OK",
    400: b"Bad Request",
    401: b"Unauthorized",
    404: b"Not Found",
    405: b"Method Not Allowed",
    413: b"Content Too Large",
    429: b"Too Many Requests",
    449: b"Retry With",
    500: b"Internal Server Error",
}


@dataclass(frozen=True, slots=True)
class Answer:
    """What the API answers one request, for a shell to send.

    Attributes:
        status: The HTTP status; 0 when the connection is dropped instead.
        body: The JSON body (empty for a drop).
        headers: Lower-case header names and values, ``content-type`` first;
            the shell adds the framing (``content-length``).
        dropped: Close the connection without any answer instead of sending this.
        latency: Seconds the shell waits before sending the answer (0 for a drop).
    """

    status: int
    body: bytes
    headers: _Headers
    dropped: bool = False
    latency: float = 0.0

    @property
    def reason(self) -> bytes:
        """The status line's reason phrase (empty for a status the API never sends)."""
        return _REASONS.get(self.status, b"")


_DEFAULT_CONFIG: Final = SimulatorConfig()

# Exactly one path segment: a literal "/" inside the identifier makes it another route.
_ROUTE: Final = re.compile(r"/v1/contact/([^/]+)/conversation/status")
# The API's documented pattern; used with fullmatch so a trailing newline cannot slip by.
_IDENTIFIER: Final = re.compile(r"id:[0-9]+|email:[^@\s]+@[^@\s]+|phone:\+[0-9]+")
_BODY_KEYS: Final = frozenset({"status", "category", "summary"})
_CATEGORY_MAX: Final = 128
_SUMMARY_MAX: Final = 512


def _error_body(code: int, message: str) -> bytes:
    return json.dumps({"code": code, "message": message}, separators=(",", ":")).encode()


# Error answers never change, so they are encoded once.
_NOT_FOUND: Final = _error_body(404, "Not found")
_METHOD_NOT_ALLOWED: Final = _error_body(405, "Method not allowed")
_UNAUTHORIZED: Final = _error_body(401, "UN_AUTHORIZED")
_TOO_MANY: Final = _error_body(429, "Too Many Requests")
_VALIDATION: Final = _error_body(400, "Validation error.")
_CONTACT_NOT_FOUND: Final = _error_body(404, "Contact not found")
_BLOCKED: Final = _error_body(400, "Contact is blocked")
_IN_QUEUE: Final = _error_body(
    449,
    "Your request cannot be processed at the moment as it is currently in queue. "
    "Please try again in a few minutes.",
)
_SERVER_ERROR: Final = _error_body(500, "Unexpected error occurred")
_TOO_LARGE: Final = _error_body(413, "Request body too large")

_JSON_HEADER: Final = (b"content-type", b"application/json")
_ZERO_HEADERS: Final = ((b"x-ratelimit-limit", b"0"), (b"x-ratelimit-remaining", b"0"))
_GARBAGE_HEADERS: Final = ((b"x-ratelimit-limit", b"abc"), (b"x-ratelimit-remaining", b"-x"))
_ALLOW_POST: Final = (b"allow", b"POST")

_DROPPED: Final = Answer(0, b"", (), dropped=True)
_TOO_LARGE_ANSWER: Final = Answer(413, _TOO_LARGE, (_JSON_HEADER,))

#: Stands for a body that is not JSON at all, as distinct from JSON ``null``.
_NOT_JSON: Final = object()


def contact_id(identifier: str) -> int:
    """The contactId the simulator answers for an existing contact (``N`` for ``id:N``)."""
    number = identifier[3:]
    if identifier.startswith("id:") and number.isascii() and number.isdigit():
        return int(number)
    digest = hashlib.blake2b(identifier.encode(), digest_size=4).digest()
    # 31 bits keep it positive in any client's int32; 0 is reserved for "unknown".
    return (int.from_bytes(digest, "big") & 0x7FFFFFFF) or 1


def _is_unknown(identifier: str) -> bool:
    if identifier.startswith("id:"):
        return int(identifier[3:]) == 0
    return identifier.startswith("phone:+0") or "unknown" in identifier.lower()


def _valid_status(identifier: str, payload: object, require_category: bool) -> str | None:
    """The body's status ("open" or "close") when the request passes validation, else None."""
    if not isinstance(payload, dict) or not _IDENTIFIER.fullmatch(identifier):
        return None
    if not payload.keys() <= _BODY_KEYS:
        return None
    status = payload.get("status")
    if status != "open" and status != "close":  # noqa: PLR1714 - a dict value may be unhashable
        return None
    if "category" in payload:
        category = payload["category"]
        if not isinstance(category, str) or len(category) > _CATEGORY_MAX:
            return None
    if "summary" in payload:
        summary = payload["summary"]
        if not isinstance(summary, str) or len(summary) > _SUMMARY_MAX:
            return None
    if require_category and status == "close" and not payload.get("category"):
        return None
    return "open" if status == "open" else "close"


def _parse_json(data: bytes) -> object:
    if not data:
        return _NOT_JSON
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        # ValueError covers bad JSON and bad UTF-8; RecursionError deeply nested arrays.
        return _NOT_JSON


def _text(value: bytes | str) -> str:
    # Header values and request targets are bytes on the wire; latin-1 maps each byte to
    # one character, so nothing a client sends can fail to decode.
    return value.decode("latin-1") if isinstance(value, bytes) else value


class SimulatedAPI:
    """The simulated API's state and rules: one request in, one ``Answer`` out.

    ``respond`` never awaits, so a shell serving concurrent requests on one event
    loop cannot interleave two decisions and race a counter. The lists and dicts
    below are safe to read from another thread while a shell serves.
    """

    def __init__(
        self,
        config: SimulatorConfig = _DEFAULT_CONFIG,
        *,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        #: The behaviour this API was built with.
        self.config = config
        #: Every request received, in the order they were decided (arrival order).
        self.requests: list[RequestRecord] = []
        #: identifier -> "open" | "closed": the conversation state after each 200.
        self.statuses: dict[str, str] = {}
        self._now = now
        self._random = random.Random(config.seed)
        #: status -> how many answers had it, kept as we go so count() is O(1).
        self._counts: dict[int, int] = {}
        #: Requests that passed auth, for revoke_after.
        self._accepted = 0
        self._limited = config.shared_limit is not None or config.path_limit is not None
        #: Index of the window the counters below belong to.
        self._window_index: int | None = None
        self._shared_used = 0
        #: raw path -> requests used in the current window; cleared when a window
        #: starts, so it only ever holds one window's paths.
        self._path_used: dict[str, int] = {}
        #: Sliding windows: arrival times of the requests still counted, oldest first.
        self._shared_log: deque[float] = deque()
        self._path_log: dict[str, deque[float]] = {}
        #: identifier -> clock time of its first queue check, for queued contacts only.
        self._queued_since: dict[str, float] = {}
        self._log: IO[str] | None = None
        #: When each refused connection was attempted (the API was down).
        self.refusals: list[float] = []
        #: When the outage began, once it has.
        self._down_since: float | None = None

    def refuses_connection(self) -> bool:
        """Whether the API is down now (``down_after``/``down_for``); a refusal is timed."""
        config = self.config
        if config.down_after is None or len(self.requests) < config.down_after:
            return False
        now = self._now()
        if self._down_since is None:
            self._down_since = now
        if now - self._down_since >= config.down_for:
            return False
        self.refusals.append(now)
        return True

    def count(self, status: int) -> int:
        """How many requests were answered with ``status`` (0: dropped)."""
        return self._counts.get(status, 0)

    def respond(
        self,
        method: bytes | str,
        raw_path: bytes | str,
        authorization: bytes | str | None,
        body: bytes,
    ) -> Answer:
        """Decide, record and apply one request, in the order the module docstring lists.

        ``raw_path`` is the request target as sent, still percent-encoded; a query
        string, if the caller left one on, is cut off here.
        """
        if len(body) > MAX_BODY:
            return _TOO_LARGE_ANSWER
        path = _text(raw_path).partition("?")[0]
        payload = _parse_json(body)
        record_body = payload if isinstance(payload, dict) else None
        arrival = self._now()

        config = self.config
        if config.drop_rate and self._random.random() < config.drop_rate:
            match = _ROUTE.fullmatch(path)
            identifier = unquote(match.group(1)) if match else path
            self._record(RequestRecord(arrival, identifier, path, record_body, 0, None))
            return _DROPPED

        auth = None if authorization is None else _text(authorization)
        status, answer, headers, identifier, contact = self._decide(
            _text(method), path, auth, payload, arrival
        )
        self._record(RequestRecord(arrival, identifier, path, record_body, status, contact))
        return Answer(status, answer, (_JSON_HEADER, *headers), latency=config.latency)

    # -- the API's rules -----------------------------------------------------

    def _decide(
        self, method: str, raw_path: str, authorization: str | None, payload: object, now: float
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]], str, int | None]:
        """Apply the checks from route on: (status, body, headers, identifier, id)."""
        match = _ROUTE.fullmatch(raw_path)
        if match is None:
            return 404, _NOT_FOUND, [], raw_path, None
        identifier = unquote(match.group(1))
        if method != "POST":
            return 405, _METHOD_NOT_ALLOWED, [_ALLOW_POST], identifier, None
        if not self._authorized(authorization):
            return 401, _UNAUTHORIZED, [], identifier, None
        self._accepted += 1

        config = self.config
        retry_after = self._use_budget(raw_path, now) if self._limited else None
        headers = self._rate_headers(raw_path)
        if retry_after is not None:
            headers.append((b"retry-after", b"%d" % retry_after))
            return 429, _TOO_MANY, headers, identifier, None
        status = _valid_status(identifier, payload, config.require_category)
        if status is None:
            return 400, _VALIDATION, headers, identifier, None
        if _is_unknown(identifier):
            return 404, _CONTACT_NOT_FOUND, headers, identifier, None
        if "blocked" in identifier:
            return 400, _BLOCKED, headers, identifier, None
        if config.queue_share and self._in_queue(identifier, now):
            return 449, _IN_QUEUE, headers, identifier, None
        if config.error_rate and self._random.random() < config.error_rate:
            return 500, _SERVER_ERROR, headers, identifier, None

        cid = contact_id(identifier)
        self.statuses[identifier] = "open" if status == "open" else "closed"
        return 200, b'{"contactId":%d}' % cid, headers, identifier, cid

    def _authorized(self, authorization: str | None) -> bool:
        if authorization is None:
            return False
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return False
        if self.config.token is not None and token != self.config.token:
            return False
        revoke_after = self.config.revoke_after
        return revoke_after is None or self._accepted < revoke_after

    def _use_budget(self, raw_path: str, now: float) -> int | None:
        """Count this request against the limits; the Retry-After seconds if over one."""
        config = self.config
        if config.window_kind == "sliding":
            return self._use_sliding_budget(raw_path, now)
        index = math.floor(now / config.window)
        if index != self._window_index:
            self._window_index = index
            self._shared_used = 0
            self._path_used.clear()
        over = (config.shared_limit is not None and self._shared_used >= config.shared_limit) or (
            config.path_limit is not None and self._path_used.get(raw_path, 0) >= config.path_limit
        )
        if over:
            # A 429 uses no budget; the client learns when the window ends.
            return max(1, math.ceil((index + 1) * config.window - now))
        if config.shared_limit is not None:
            self._shared_used += 1
        if config.path_limit is not None:
            self._path_used[raw_path] = self._path_used.get(raw_path, 0) + 1
        return None

    def _use_sliding_budget(self, raw_path: str, now: float) -> int | None:
        config = self.config
        window = config.window
        shared, path = self._shared_log, self._path_log.setdefault(raw_path, deque())
        for log in (shared, path):
            while log and log[0] + window <= now:
                log.popleft()
        self._shared_used, self._path_used[raw_path] = len(shared), len(path)
        oldest: list[float] = []
        if config.shared_limit is not None and len(shared) >= config.shared_limit:
            oldest.append(shared[len(shared) - config.shared_limit] if config.shared_limit else now)
        if config.path_limit is not None and len(path) >= config.path_limit:
            oldest.append(path[len(path) - config.path_limit] if config.path_limit else now)
        if oldest:
            # A 429 uses no budget; the client may go again when the oldest counted leaves.
            return max(1, math.ceil(max(oldest) + window - now))
        shared.append(now)
        path.append(now)
        self._shared_used, self._path_used[raw_path] = len(shared), len(path)
        if len(self._path_log) > _SLIDING_PATHS:
            # Keep only paths with a request still counted: memory stays flat on long runs.
            self._path_log = {p: log for p, log in self._path_log.items() if log[-1] + window > now}
            self._path_used = {p: len(log) for p, log in self._path_log.items()}
        return None

    def _rate_headers(self, raw_path: str) -> list[tuple[bytes, bytes]]:
        mode = self.config.rate_headers
        if mode == "zero":
            return list(_ZERO_HEADERS)
        if mode == "garbage":
            return list(_GARBAGE_HEADERS)
        if mode == "none" or not self._limited:
            return []
        shared_limit = self.config.shared_limit
        if shared_limit is not None:
            limit, used = shared_limit, self._shared_used
        else:
            limit = self.config.path_limit or 0
            used = self._path_used.get(raw_path, 0)
        return [
            (b"x-ratelimit-limit", b"%d" % limit),
            (b"x-ratelimit-remaining", b"%d" % max(0, limit - used)),
        ]

    def _in_queue(self, identifier: str, now: float) -> bool:
        since = self._queued_since.get(identifier)
        if since is None:
            if not self._picked_for_queue(identifier):
                return False
            since = self._queued_since[identifier] = now
        return now - since < self.config.queue_hold

    def _picked_for_queue(self, identifier: str) -> bool:
        # A keyed hash, not the shared Random: a contact's fate must not depend
        # on the order requests arrive in.
        keyed = f"{self.config.seed}\0{identifier}".encode()
        digest = hashlib.blake2b(keyed, digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64 < self.config.queue_share

    # -- records -------------------------------------------------------------

    def open_log(self) -> None:
        """Start appending to ``config.log_path``, if set; a bad path fails here, not later."""
        if self.config.log_path is not None and self._log is None:
            self._log = open(self.config.log_path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close_log()

    def close_log(self) -> None:
        """Stop appending to the log (nothing to do when none is open)."""
        if self._log is not None:
            self._log.close()
            self._log = None

    def _record(self, record: RequestRecord) -> None:
        self.requests.append(record)
        self._counts[record.status] = self._counts.get(record.status, 0) + 1
        if self._log is not None:
            self._log.write(json.dumps(asdict(record)) + "\n")
            # Flushed per line: a test in another process reads it while we run.
            self._log.flush()


class ServesAPI:
    """What a shell serving a ``SimulatedAPI`` shows of it (the server and the transport
    alike): its requests, the conversations' states and counts per status."""

    #: The rules and their state.
    api: SimulatedAPI

    @property
    def config(self) -> SimulatorConfig:
        """The behaviour the API was built with."""
        return self.api.config

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request received, in arrival order (see ``SimulatedAPI.requests``)."""
        return self.api.requests

    @property
    def statuses(self) -> dict[str, str]:
        """identifier -> "open" | "closed": the conversation state after each 200."""
        return self.api.statuses

    def count(self, status: int) -> int:
        """How many requests were answered with ``status`` (0: dropped)."""
        return self.api.count(status)
