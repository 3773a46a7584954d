"""Sending one call: the URL, the body, the headers, and how every answer becomes an ``Answer``."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from urllib.parse import unquote

import httpx
import pytest

from batcher.client import MAX_BODY, AelystClient, path_segment, request_url
from batcher.models import Answer, AnswerKind, Record, Request, Secret

BASE_URL = "https://api.aelyst.test/v1"
TOKEN = "tok-5e3f9a1c-not-a-real-token"  # noqa: S105 - a fake token the tests look for
Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def anyio_backend() -> str:
    """Run the async tests on asyncio only, the backend batcher uses."""
    return "asyncio"


def make_request(identifier: str = "id:1", status: str = "open", category: str = "") -> Request:
    """A valid request as the validator would build it."""
    return Request(Record(1, identifier, status, category), status, category)


async def send_one(handler: Handler, request: Request | None = None) -> Answer:
    """Send one request through a MockTransport and return the answer."""
    transport = httpx.MockTransport(handler)
    async with AelystClient(BASE_URL, Secret(TOKEN), transport=transport) as client:
        return await client.send(request or make_request())


def answering(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Handler:
    """A handler that answers every request the same way."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers=headers)

    return handler


def error_body(code: int, message: str) -> bytes:
    """The API's documented error body."""
    return json.dumps({"code": code, "message": message}).encode()


# --- path_segment -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("identifier", "segment"),
    [
        pytest.param("id:123", "id:123", id="id-colon-literal"),
        pytest.param("phone:+60121233112", "phone:%2B60121233112", id="phone-plus-encoded"),
        pytest.param("email:abdc@gmail.com", "email:abdc@gmail.com", id="email-at-literal"),
        pytest.param(
            "email:a+b/c?d#e%f@x.com",
            "email:a%2Bb%2Fc%3Fd%23e%25f@x.com",
            id="email-reserved-characters",
        ),
        pytest.param("email:josé@exämple.com", "email:jos%C3%A9@ex%C3%A4mple.com", id="non-ascii"),
        pytest.param("email:a b@c.com", "email:a%20b@c.com", id="space"),
        pytest.param("..", "%2E%2E", id="dot-dot"),
        pytest.param(".", "%2E", id="dot"),
        pytest.param("...", "%2E%2E%2E", id="three-dots"),
        pytest.param("%2E%2E", "%252E%252E", id="encoded-dots-stay-literal"),
    ],
)
def test_path_segment_encodes_into_one_segment(identifier: str, segment: str) -> None:
    """path_segment keeps : and @, encodes + / ? # % space and non-ASCII, never a dot segment."""
    encoded = path_segment(identifier)
    assert encoded == segment
    assert "/" not in encoded
    assert encoded.strip(".") != ""
    assert unquote(encoded) == identifier


def test_request_url_places_the_segment_between_contact_and_conversation() -> None:
    """request_url joins the base URL (trailing slash or not) and the one encoded segment."""
    expected = f"{BASE_URL}/contact/phone:%2B601/conversation/status"
    assert request_url(BASE_URL, "phone:+601") == expected
    assert request_url(BASE_URL + "/", "phone:+601") == expected


@pytest.mark.anyio
@pytest.mark.parametrize(
    "identifier",
    [
        pytest.param("email:a+b/c?d#e%f@x.com", id="reserved-characters"),
        pytest.param("email:josé+tag@exämple.com", id="non-ascii-plus"),
        pytest.param("..", id="dot-dot"),
        pytest.param("id:..", id="id-dot-dot"),
        pytest.param("phone:+60121233112", id="phone"),
    ],
)
async def test_transport_receives_exactly_one_segment(identifier: str) -> None:
    """The path the transport receives has one segment for the contact, which decodes back."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"contactId": 1})

    answer = await send_one(handler, make_request(identifier))
    assert answer.kind is AnswerKind.OK
    (request,) = seen
    parts = request.url.raw_path.split(b"/")
    assert parts[:3] == [b"", b"v1", b"contact"]
    assert parts[4:] == [b"conversation", b"status"]
    assert len(parts) == 6
    assert unquote(parts[3].decode("ascii")) == identifier
    assert b"?" not in request.url.raw_path
    assert request.url.query == b""
    assert request.url.fragment == ""


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "category", "expected"),
    [
        pytest.param("open", "", {"status": "open"}, id="open"),
        pytest.param("close", "Spam", {"status": "close", "category": "Spam"}, id="close"),
    ],
)
async def test_json_body_has_only_the_given_keys(
    status: str, category: str, expected: dict[str, str]
) -> None:
    """The POST body is JSON with status and only the fields the row gives."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"contactId": 1})

    await send_one(handler, make_request("id:9", status, category))
    (request,) = seen
    assert request.method == "POST"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == expected


@pytest.mark.anyio
async def test_authorization_header_carries_the_token() -> None:
    """Every request carries 'Authorization: Bearer <token>'."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"contactId": 1})

    await send_one(handler)
    assert seen[0].headers["Authorization"] == f"Bearer {TOKEN}"


def test_repr_does_not_contain_the_token() -> None:
    """repr(AelystClient) shows the base URL and never the token."""
    client = AelystClient(BASE_URL, Secret(TOKEN), transport=httpx.MockTransport(answering(200)))
    text = repr(client)
    assert BASE_URL in text
    assert TOKEN not in text
    assert "tok-" not in text


# --- answers --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_200_gives_ok_with_contact_id() -> None:
    """200 {"contactId": 42} is OK with contact_id 42 and no error."""
    answer = await send_one(answering(200, b'{"contactId": 42}'))
    assert answer == Answer(AnswerKind.OK, 200, contact_id=42)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"not json", id="not-json"),
        pytest.param(b'{"contactId": "42"}', id="string-id"),
        pytest.param(b'{"contactId": true}', id="bool-id"),
        pytest.param(b"[42]", id="array"),
        pytest.param(b"<html><body>Welcome to the hotel Wi-Fi</body></html>", id="html"),
    ],
)
async def test_200_without_an_integer_contact_id_is_unconfirmed(body: bytes) -> None:
    """A 200 whose body lacks an integer contactId (a proxy's page, a wrong base URL) is not
    a success: it is UNCONFIRMED, saying what the body looked like."""
    answer = await send_one(answering(200, body))
    assert answer.kind is AnswerKind.UNCONFIRMED
    assert answer.contact_id is None
    assert answer.error.startswith("200 without a contactId (")
    assert "may not have been applied" in answer.error


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "message", "kind"),
    [
        pytest.param(400, "Validation error.", AnswerKind.REFUSED, id="400"),
        pytest.param(404, "Contact not found", AnswerKind.REFUSED, id="404"),
        pytest.param(403, "Contact is blocked", AnswerKind.REFUSED, id="403"),
        pytest.param(401, "UN_AUTHORIZED", AnswerKind.AUTH, id="401"),
        pytest.param(429, "Too Many Requests", AnswerKind.RATE_LIMITED, id="429"),
        pytest.param(449, "Your request cannot be processed", AnswerKind.QUEUED, id="449"),
        pytest.param(500, "Unexpected error occurred", AnswerKind.RETRYABLE, id="500"),
        pytest.param(503, "Service unavailable", AnswerKind.RETRYABLE, id="503"),
    ],
)
async def test_error_answers_are_classified_with_code_and_message(
    status: int, message: str, kind: AnswerKind
) -> None:
    """Each documented error status maps to its kind; error is '<code> <message>'."""
    answer = await send_one(answering(status, error_body(status, message)))
    assert answer.kind is kind
    assert answer.http_status == status
    assert answer.error == f"{status} {message}"
    assert answer.contact_id is None


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("2", 2.0, id="integer"),
        pytest.param("1.5", 1.5, id="fraction"),
        pytest.param(" 3 ", 3.0, id="padded"),
        pytest.param("Wed, 21 Oct 2015 07:28:00 GMT", 0.0, id="http-date-past"),
        pytest.param("soon", None, id="text"),
        pytest.param("nan", None, id="nan"),
        pytest.param("inf", None, id="inf"),
    ],
)
async def test_429_retry_after_is_parsed(value: str, expected: float | None) -> None:
    """Retry-After in seconds or as an HTTP date (a past one is 0) is parsed; anything
    else (text, nan, inf) is None."""
    answer = await send_one(
        answering(429, error_body(429, "Too Many Requests"), {"Retry-After": value})
    )
    assert answer.kind is AnswerKind.RATE_LIMITED
    assert answer.retry_after == expected


@pytest.mark.anyio
async def test_retry_after_as_a_future_http_date_is_the_seconds_until_then() -> None:
    """Retry-After as an HTTP date an hour ahead reads as about 3600 s (RFC 9110's other
    form); it used to be ignored, and the API was hit every second."""
    when = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    answer = await send_one(answering(503, error_body(503, "busy"), {"Retry-After": when}))
    assert answer.retry_after is not None
    assert 3590 <= answer.retry_after <= 3600


@pytest.mark.anyio
async def test_302_is_not_followed() -> None:
    """A redirect is refused, not followed: one request only, the Location named in the error."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(302, headers={"Location": "https://elsewhere.test/steal"})

    answer = await send_one(handler)
    assert len(seen) == 1
    assert answer.kind is AnswerKind.REFUSED
    assert answer.http_status == 302
    assert "not followed" in answer.error
    assert "https://elsewhere.test/steal" in answer.error


NGINX_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "body", "kind", "words"),
    [
        pytest.param(502, NGINX_502, AnswerKind.RETRYABLE, "not JSON", id="html-502"),
        pytest.param(
            500,
            b"<html>" + b"<p>oops</p>" * 2000 + b"</html>",
            AnswerKind.RETRYABLE,
            "not JSON",
            id="long-html-500",
        ),
        pytest.param(
            400, b"Bad request, plain text", AnswerKind.REFUSED, "not JSON", id="text-400"
        ),
        pytest.param(503, b"", AnswerKind.RETRYABLE, "empty body", id="empty-503"),
        pytest.param(404, b"", AnswerKind.REFUSED, "empty body", id="empty-404"),
        pytest.param(400, b'{"code": 400}', AnswerKind.REFUSED, "400", id="json-without-message"),
    ],
)
async def test_bodies_without_a_message_give_a_short_error(
    status: int, body: bytes, kind: AnswerKind, words: str
) -> None:
    """Non-JSON, HTML and empty bodies give a short error (< 400 chars) saying what came back."""
    answer = await send_one(answering(status, body))
    assert answer.kind is kind
    assert answer.http_status == status
    assert answer.error.startswith(str(status))
    assert words in answer.error
    assert len(answer.error) < 400


@pytest.mark.anyio
async def test_binary_body_gives_a_short_error() -> None:
    """A binary (non-text) error body still gives an error text under 400 characters."""
    answer = await send_one(answering(502, bytes(range(256)) * 4))
    assert answer.kind is AnswerKind.RETRYABLE
    assert len(answer.error) < 400


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "kind"),
    [
        pytest.param(400, AnswerKind.REFUSED, id="400"),
        pytest.param(500, AnswerKind.RETRYABLE, id="500"),
        pytest.param(200, AnswerKind.UNCONFIRMED, id="200"),
    ],
)
async def test_huge_body_is_handled(status: int, kind: AnswerKind) -> None:
    """A body over 64 KiB is not parsed; the answer keeps its kind and a short error."""
    huge = error_body(status, "m" * (MAX_BODY * 2))
    assert len(huge) > MAX_BODY
    answer = await send_one(answering(status, huge))
    assert answer.kind is kind
    assert answer.http_status == status
    assert len(answer.error) < 400
    if status != 200:
        assert f"over {MAX_BODY} bytes" in answer.error


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("limit", "remaining", "expected"),
    [
        pytest.param("10", "5", (10.0, 5.0), id="numbers"),
        pytest.param("20.0", "0", (20.0, 0.0), id="float-and-zero"),
        pytest.param("abc", "5", (None, 5.0), id="limit-abc"),
        pytest.param("nan", "nan", (None, None), id="nan"),
        pytest.param("inf", "-inf", (None, None), id="infinite"),
        pytest.param("", " ", (None, None), id="blank"),
        pytest.param("-3", "7", (-3.0, 7.0), id="negative-passed-on"),
    ],
)
async def test_rate_headers_are_parsed(
    limit: str, remaining: str, expected: tuple[float | None, float | None]
) -> None:
    """X-RateLimit-Limit/Remaining become numbers; text, nan and inf become None."""
    headers = {"X-RateLimit-Limit": limit, "X-RateLimit-Remaining": remaining}
    answer = await send_one(answering(200, b'{"contactId": 1}', headers))
    assert (answer.limit, answer.remaining) == expected


@pytest.mark.anyio
async def test_missing_rate_headers_are_none() -> None:
    """Without rate headers, limit, remaining and retry_after are None."""
    answer = await send_one(answering(200, b'{"contactId": 1}'))
    assert (answer.limit, answer.remaining, answer.retry_after) == (None, None, None)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("error", "words"),
    [
        pytest.param(
            httpx.ConnectError("connection refused"),
            "network error: ConnectError: connection refused",
            id="connect",
        ),
        pytest.param(httpx.ReadTimeout("timed out"), "timeout: ReadTimeout", id="read-timeout"),
        pytest.param(httpx.ConnectTimeout(""), "timeout: ConnectTimeout", id="connect-timeout"),
        pytest.param(
            httpx.RemoteProtocolError("peer closed"),
            "network error: RemoteProtocolError",
            id="protocol",
        ),
    ],
)
async def test_transport_errors_are_retryable(error: httpx.HTTPError, words: str) -> None:
    """A transport error gives RETRYABLE, no status and a clear error; send() never raises."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    answer = await send_one(handler)
    assert answer.kind is AnswerKind.RETRYABLE
    assert answer.http_status is None
    assert words in answer.error
    assert TOKEN not in answer.error
