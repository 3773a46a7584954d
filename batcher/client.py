"""Sending one request to the API: the only module that imports httpx.

``AelystClient.send`` never raises for a row: every HTTP answer, timeout and
connection error becomes an ``Answer``. httpx's exceptions are translated in
one place, ``_transport_error``.
"""

from __future__ import annotations

import json
import math
import ssl
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from urllib.parse import quote, urlsplit

import anyio
import httpx

from batcher.config import is_loopback
from batcher.models import Answer, AnswerKind, Request, Secret
from batcher.policy import classify_status

#: How much of an answer's body batcher reads; the rest is dropped (a huge answer is an error).
MAX_BODY = 64 * 1024
#: How much of a non-JSON body goes into a row's error text.
ERROR_EXCERPT = 300
_USER_AGENT = "batcher/0.1 (+bulk conversation status)"


def path_segment(identifier: str) -> str:
    """Percent-encode an identifier into exactly one URL path segment.

    ``:`` and ``@`` stay as written (RFC 3986 allows them in a segment, and the
    API's own clients send them so); everything else that is not unreserved is
    encoded, ``/ ? # % +`` and spaces included (``+`` as ``%2B``: some servers
    read a literal ``+`` in a path as a space). A segment of only dots would
    climb the path, so its dots are encoded too.
    """
    segment = quote(identifier, safe=":@")
    if segment.strip(".") == "":
        segment = segment.replace(".", "%2E")
    return segment


def request_url(base_url: str, identifier: str) -> str:
    """The full URL of the call for one contact."""
    return f"{base_url.rstrip('/')}/contact/{path_segment(identifier)}/conversation/status"


def request_body(request: Request) -> bytes:
    return json.dumps(request.body(), separators=(",", ":")).encode()


class AelystClient:
    """Sends the open/close call over one pool of keep-alive HTTP/1.1 connections.

    The token goes into the Authorization header and nowhere else: it is never
    part of an error, a log line or a repr. The standard proxy variables
    (``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``) are honoured for the real API
    (https through a CONNECT tunnel, so the proxy never sees the token), and never for
    a loopback base URL, which would otherwise go through the proxy in clear text.
    """

    def __init__(
        self,
        base_url: str,
        token: Secret,
        *,
        connections: int = 8,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._base_url = base_url
        self._token = token
        self._timeout = timeout
        where = urlsplit(base_url)
        local = is_loopback(where.hostname or "")
        self._client = httpx.AsyncClient(
            headers={
                "Authorization": f"Bearer {token.reveal()}",
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": _USER_AGENT,
            },
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
            follow_redirects=False,
            transport=transport,
            trust_env=not local,
            # Plain http to this machine never does TLS, so the CA bundle (0.03 s of every
            # start) is not loaded for it; a context that trusts nothing fails closed.
            verify=ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            if local and where.scheme == "http"
            else True,
        )

    def __repr__(self) -> str:
        return f"AelystClient(base_url={self._base_url!r})"

    async def __aenter__(self) -> AelystClient:
        await self._client.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._client.__aexit__(exc_type, exc, tb)

    async def send(self, request: Request) -> Answer:
        """Send one row's call; whatever happens, describe it as an ``Answer``."""
        url = request_url(self._base_url, request.identifier)
        answer: Answer | None = None
        try:
            # httpx's timeouts bound each read; a server that trickles its answer a byte a
            # second never trips them. This bounds the whole exchange.
            with anyio.move_on_after(self._timeout):
                async with self._client.stream(
                    "POST", url, content=request_body(request)
                ) as response:
                    body = await _read_capped(response)
                    # Classified as soon as it is read: a deadline landing while the
                    # connection is put back must not turn a 200 into a timeout.
                    answer = _classify(response, body, self._scrub)
            if answer is None:
                answer = Answer(
                    AnswerKind.RETRYABLE,
                    None,
                    error=f"timeout: no complete answer within {self._timeout:g} s",
                )
        except httpx.HTTPError as exc:
            answer = _transport_error(exc, self._scrub)
        except Exception as exc:  # a row's trouble is an outcome, never a crash
            # e.g. httpx.InvalidURL (not an HTTPError) for an identifier too long for a URL
            error = self._scrub(f"{type(exc).__name__}: {exc}")[:ERROR_EXCERPT]
            answer = Answer(AnswerKind.RETRYABLE, None, error=error)
        if not answer.error:
            return answer  # most answers: nothing to scrub
        return replace(answer, error=self._scrub(answer.error))

    def _scrub(self, text: str) -> str:
        """Text with the token cut out, and with any end of it that is the token's start
        (an excerpt cut in the middle of the token)."""
        token = self._token.reveal()
        if not token:
            return text
        text = text.replace(token, "[token]")
        for length in range(len(token) - 1, 3, -1):
            if text.endswith(token[:length]):
                return text[:-length] + "[token]"
        return text


async def _read_capped(response: httpx.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY:
            break
    return b"".join(chunks)


def _transport_error(exc: httpx.HTTPError, scrub: Callable[[str], str]) -> Answer:
    """Translate an httpx exception (no answer at all) into a retryable ``Answer``."""
    detail = scrub(str(exc) or type(exc).__name__)
    if isinstance(exc, httpx.TimeoutException):
        error = f"timeout: {type(exc).__name__}"
    elif isinstance(exc, httpx.TransportError):
        error = f"network error: {type(exc).__name__}: {detail}"
    else:
        error = f"HTTP error: {type(exc).__name__}: {detail}"
    # Refused, unresolvable, failed TLS, or no connection free: the request never left.
    sent = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    return Answer(AnswerKind.RETRYABLE, None, error=error[:ERROR_EXCERPT], sent=sent)


def _classify(response: httpx.Response, body: bytes, scrub: Callable[[str], str]) -> Answer:
    """The answer to a request. ``scrub`` cuts the token out of any text taken from the
    answer before an excerpt of it is kept (an excerpt cut mid-token still leaks)."""
    status = response.status_code
    kind = classify_status(status)
    parsed = _json_object(body)
    contact_id = None
    if kind is AnswerKind.OK:
        value = parsed.get("contactId") if parsed is not None else None
        contact_id = value if isinstance(value, int) and not isinstance(value, bool) else None
        error = ""
        if contact_id is None:
            # A proxy, a captive portal or a wrong base URL answering 200 with a page must
            # not make a row look done.
            kind = AnswerKind.UNCONFIRMED
            error = (
                f"200 without a contactId ({_body_shape(body, parsed, scrub)}): not the API's "
                "answer; the call may not have been applied (check --base-url)"
            )
    else:
        error = _error_text(status, response, body, parsed, scrub)
    headers = response.headers
    return Answer(
        kind,
        status,
        contact_id=contact_id,
        error=error,
        limit=_number(headers.get("X-RateLimit-Limit")),
        remaining=_number(headers.get("X-RateLimit-Remaining")),
        retry_after=_retry_after(headers.get("Retry-After")),
    )


def _json_object(body: bytes) -> dict[str, object] | None:
    if not body or len(body) > MAX_BODY:
        return None
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested too deep
        return None
    return value if isinstance(value, dict) else None


def _body_shape(body: bytes, parsed: dict[str, object] | None, scrub: Callable[[str], str]) -> str:
    """What a body looked like, briefly: empty, not JSON (an excerpt), or JSON (an excerpt)."""
    if not body:
        return "empty body"
    kind = "not JSON" if parsed is None else "JSON"
    text = repr(scrub(body.decode("utf-8", "replace"))[: ERROR_EXCERPT // 3])
    return f"{kind}: {text}"


def _error_text(
    status: int,
    response: httpx.Response,
    body: bytes,
    parsed: dict[str, object] | None,
    scrub: Callable[[str], str],
) -> str:
    """The server's own message where it gave one; otherwise what the body looked like."""
    if parsed is not None and "message" in parsed:
        return f"{status} {scrub(str(parsed['message']))[:ERROR_EXCERPT]}"
    if status in (301, 302, 303, 307, 308):
        location = scrub(response.headers.get("Location", "?"))[:200]
        return f"{status} redirect to {location} (not followed)"
    if not body:
        return f"{status} {response.reason_phrase} (empty body)"
    if len(body) > MAX_BODY:
        return f"{status} {response.reason_phrase} (body over {MAX_BODY} bytes, not read)"
    text = repr(scrub(body.decode("utf-8", "replace"))[:ERROR_EXCERPT])
    if len(text) > ERROR_EXCERPT:  # escaping can make the excerpt longer than the body
        text = text[: ERROR_EXCERPT - 3] + "..."
    return f"{status} {response.reason_phrase} (not JSON: {text})"


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date (RFC 9110 allows both)."""
    seconds = _number(value)
    if seconds is not None or value is None:
        return seconds
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None
