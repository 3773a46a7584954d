"""The simulator answers like the documented API, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import anyio.lowlevel
import httpx
import pytest

from batcher.clock import Clock, SystemClock
from batcher.simrules import SimulatedAPI
from batcher.simulator import (
    RequestRecord,
    RunningSimulator,
    Simulator,
    SimulatorConfig,
    contact_id,
    running,
)
from batcher.virtualtime import FakeClock

#: The test client's bearer token (not a secret: the simulator accepts any unless told).
BEARER = "test-token"
AUTH = {"Authorization": f"Bearer {BEARER}"}
OPEN = {"status": "open"}
IN_QUEUE = (
    "Your request cannot be processed at the moment as it is currently in queue. "
    "Please try again in a few minutes."
)
PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def anyio_backend() -> str:
    """Run the async tests on asyncio only, the backend batcher uses."""
    return "asyncio"


class SleepRecordingClock(SystemClock):
    """The real clock, except that waits are noted and take no time."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        await anyio.lowlevel.checkpoint()


@contextmanager
def simulated(
    config: SimulatorConfig | None = None, *, clock: Clock | None = None
) -> Iterator[tuple[RunningSimulator, httpx.Client]]:
    """A running simulator and a client pointed at it with a valid token."""
    with (
        running(config or SimulatorConfig(), clock=clock) as sim,
        httpx.Client(base_url=sim.base_url, headers=AUTH, timeout=5) as client,
    ):
        yield sim, client


def post(client: httpx.Client, identifier: str, body: object = OPEN) -> httpx.Response:
    return client.post(f"/contact/{identifier}/conversation/status", json=body)


def error(code: int, message: str) -> dict[str, object]:
    return {"code": code, "message": message}


def rate(response: httpx.Response) -> tuple[str | None, str | None]:
    return response.headers.get("x-ratelimit-limit"), response.headers.get("x-ratelimit-remaining")


def read_responses(sock: socket.socket, count: int) -> list[bytes]:
    """Read ``count`` whole HTTP responses (head + Content-Length body) from a raw socket."""
    buffer = b""
    responses: list[bytes] = []
    for _ in range(1000):
        while len(responses) < count and b"\r\n\r\n" in buffer:
            head, _, rest = buffer.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            if len(rest) < length:
                break
            responses.append(head + b"\r\n\r\n" + rest[:length])
            buffer = rest[length:]
        if len(responses) == count:
            return responses
        chunk = sock.recv(65536)
        if not chunk:
            break
        buffer += chunk
    raise AssertionError(f"got {len(responses)} of {count} responses")


def raw_request(identifier: str, *, extra: bytes = b"") -> bytes:
    body = b'{"status":"open"}'
    return (
        b"POST /v1/contact/%s/conversation/status HTTP/1.1\r\nHost: t\r\n"
        b"Authorization: Bearer t\r\nContent-Type: application/json\r\n%s"
        b"Content-Length: %d\r\n\r\n%s"
    ) % (identifier.encode(), extra, len(body), body)


# -- success -------------------------------------------------------------------


def test_open_and_close_answer_contact_id_and_track_status() -> None:
    """id:N answers 200 {"contactId": N} as JSON, and each 200 updates statuses."""
    with simulated() as (sim, client):
        opened = post(client, "id:42")
        closed = post(client, "id:42", {"status": "close", "category": "Spam", "summary": "bot"})

    assert opened.status_code == 200
    assert opened.json() == {"contactId": 42}
    assert opened.headers["content-type"] == "application/json"
    assert closed.json() == {"contactId": 42}
    assert sim.simulator.statuses == {"id:42": "closed"}
    assert sim.simulator.count(200) == 2
    first = sim.simulator.requests[0]
    assert first.identifier == "id:42"
    assert first.body == OPEN
    assert first.status == 200
    assert first.contact_id == 42


def test_contact_id_is_stable_and_positive_for_emails_and_phones() -> None:
    """Non-id identifiers get the same positive 31-bit contactId in every run."""
    answers = []
    for _ in range(2):
        with simulated() as (_, client):
            answers.append(
                [post(client, i).json()["contactId"] for i in ("email:a@b.c", "phone:+60121")]
            )

    assert answers[0] == answers[1]
    assert answers[0] == [contact_id("email:a@b.c"), contact_id("phone:+60121")]
    assert all(0 < cid < 2**31 for cid in answers[0])


# -- auth ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer"}, {"Authorization": "Basic x"}, {"Authorization": "x"}],
)
def test_missing_or_malformed_bearer_token_is_401(headers: dict[str, str]) -> None:
    """Without a non-empty bearer token the answer is 401 UN_AUTHORIZED, with no rate headers."""
    with running(SimulatorConfig(shared_limit=5)) as sim, httpx.Client(timeout=5) as client:
        response = client.post(
            f"{sim.base_url}/contact/id:1/conversation/status", json=OPEN, headers=headers
        )

    assert response.status_code == 401
    assert response.json() == error(401, "UN_AUTHORIZED")
    assert rate(response) == (None, None)
    assert sim.simulator.requests[0].status == 401


def test_configured_token_must_match_exactly() -> None:
    """With a configured token, any other token gets 401 and the right one 200."""
    with simulated(SimulatorConfig(token=BEARER)) as (sim, client):
        right = post(client, "id:1")
        client.headers["Authorization"] = "Bearer test-token2"
        wrong = post(client, "id:1")

    assert (right.status_code, wrong.status_code) == (200, 401)
    assert sim.simulator.count(401) == 1


def test_token_is_revoked_after_n_accepted_requests() -> None:
    """After revoke_after accepted requests every request gets 401, even a valid one."""
    with simulated(SimulatorConfig(revoke_after=2)) as (_, client):
        statuses = [post(client, f"id:{n}").status_code for n in range(1, 5)]

    assert statuses == [200, 200, 401, 401]


# -- validation ----------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not json",
        b"[]",
        b"null",
        b"{}",
        b'{"status":"closed"}',
        b'{"status":["open"]}',
        b'{"status":"open","extra":1}',
        b'{"status":"close","category":5}',
        b'{"status":"close","category":null}',
        json.dumps({"status": "close", "category": "c" * 129}).encode(),
        json.dumps({"status": "close", "category": "c", "summary": "s" * 513}).encode(),
        b"[" * 60000,
    ],
)
def test_bad_body_is_400_validation_error(content: bytes) -> None:
    """A body that is not an object of status/category/summary within limits gets 400."""
    with simulated() as (sim, client):
        response = client.post(
            "/contact/id:1/conversation/status",
            content=content,
            headers={"Content-Type": "application/json"},
        )

    assert response.status_code == 400
    assert response.json() == error(400, "Validation error.")
    assert sim.simulator.statuses == {}


def test_category_and_summary_at_their_maximum_length_are_accepted() -> None:
    """A 128-character category and a 512-character summary are within the rules."""
    body = {"status": "close", "category": "c" * 128, "summary": "s" * 512}
    with simulated() as (_, client):
        assert post(client, "id:1", body).status_code == 200


@pytest.mark.parametrize(
    "identifier", ["foo", "id:", "id:abc", "email:nobody", "email:a@b@c", "phone:123", "id:1%0A"]
)
def test_identifier_outside_the_documented_pattern_is_400(identifier: str) -> None:
    """Identifiers that are not id:digits, email:x@y or phone:+digits get 400."""
    with simulated() as (_, client):
        response = post(client, identifier)

    assert response.status_code == 400
    assert response.json() == error(400, "Validation error.")


def test_require_category_refuses_a_close_without_category() -> None:
    """With require_category, close without (or with an empty) category gets 400; open does not."""
    with simulated(SimulatorConfig(require_category=True)) as (_, client):
        statuses = [
            post(client, "id:1", body).status_code
            for body in (
                {"status": "close"},
                {"status": "close", "category": ""},
                {"status": "close", "category": "Spam"},
                {"status": "open"},
            )
        ]

    assert statuses == [400, 400, 200, 200]


# -- contacts ------------------------------------------------------------------


@pytest.mark.parametrize(
    "identifier", ["id:0", "id:000", "phone:+0123", "email:UnKnown@x.com", "email:x@unknown.org"]
)
def test_documented_unknown_contacts_are_404(identifier: str) -> None:
    """id:0, phone:+0..., and anything containing "unknown" answer 404 Contact not found."""
    with simulated() as (_, client):
        response = post(client, identifier)

    assert response.status_code == 404
    assert response.json() == error(404, "Contact not found")


def test_blocked_contact_is_400_even_when_every_request_would_fail() -> None:
    """An identifier containing "blocked" answers 400 Contact is blocked, before 449 and 500."""
    config = SimulatorConfig(queue_share=1.0, queue_hold=60, error_rate=1.0)
    with simulated(config) as (sim, client):
        response = post(client, "email:blocked@x.com")

    assert response.status_code == 400
    assert response.json() == error(400, "Contact is blocked")
    assert sim.simulator.statuses == {}


# -- routing and paths ---------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/v1/contact/email:a/b@x.com/conversation/status",
        "/v1/contact//conversation/status",
        "/v1/contact/id:1/conversation/status/",
        "/v2/contact/id:1/conversation/status",
        "/v1/contact/email:a?b@x.com/conversation/status",
    ],
)
def test_other_paths_are_404_not_found(path: str) -> None:
    """Any path but the endpoint's, including a literal "/" or "?" in the identifier, gets 404."""
    with simulated() as (sim, client):
        response = client.post(f"http://127.0.0.1:{sim.port}{path}", json=OPEN)

    assert response.status_code == 404
    assert response.json() == error(404, "Not found")
    assert sim.simulator.requests[0].identifier == path.partition("?")[0]


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_other_methods_on_the_endpoint_are_405(method: str) -> None:
    """Only POST is allowed on the endpoint's path; the 405 says so in Allow."""
    with simulated() as (_, client):
        response = client.request(method, "/contact/id:1/conversation/status")

    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


def test_percent_encoded_identifier_is_decoded_and_recorded() -> None:
    """%2B and %2F in the one path segment decode to + and /; the raw path is kept as sent."""
    with simulated() as (sim, client):
        response = post(client, "email:a%2Bb%2Fc@x.com")

    assert response.status_code == 200
    assert response.json() == {"contactId": contact_id("email:a+b/c@x.com")}
    record = sim.simulator.requests[0]
    assert record.identifier == "email:a+b/c@x.com"
    assert record.raw_path == "/v1/contact/email:a%2Bb%2Fc@x.com/conversation/status"
    assert sim.simulator.statuses == {"email:a+b/c@x.com": "open"}


# -- rate limits ---------------------------------------------------------------


def test_shared_limit_burst_gets_exactly_the_excess_429_and_counts_down() -> None:
    """limit + k requests in one window: k 429s with Retry-After, Remaining counting down."""
    clock = FakeClock(1000.25)
    with simulated(SimulatorConfig(shared_limit=3), clock=clock) as (sim, client):
        burst = [post(client, f"id:{n}") for n in range(1, 6)]
        clock.advance(0.75)  # to 1001.0, the next window
        after = post(client, "id:9")

    assert [r.status_code for r in burst] == [200, 200, 200, 429, 429]
    assert [rate(r) for r in burst] == [("3", "2"), ("3", "1"), ("3", "0"), ("3", "0"), ("3", "0")]
    assert [r.headers.get("retry-after") for r in burst] == [None, None, None, "1", "1"]
    assert burst[3].json() == error(429, "Too Many Requests")
    assert sim.simulator.count(429) == 2
    # The 429s used no budget: the new window starts from a full one.
    assert (after.status_code, rate(after)) == (200, ("3", "2"))


def test_retry_after_is_the_rest_of_the_window_rounded_up() -> None:
    """Retry-After is ceil(seconds to the window's end), never below 1."""
    clock = FakeClock(1000.5)
    with simulated(SimulatorConfig(shared_limit=0, window=10), clock=clock) as (_, client):
        early = post(client, "id:1")
        clock.advance(9.4)  # to 1009.9
        late = post(client, "id:1")

    assert early.headers["retry-after"] == "10"
    assert late.headers["retry-after"] == "1"


def test_path_limit_gives_each_path_its_own_budget() -> None:
    """With only path_limit, each unique path has its own budget, reported in the headers."""
    clock = FakeClock(1000.25)
    with simulated(SimulatorConfig(path_limit=2), clock=clock) as (_, client):
        fresh = [post(client, f"id:{n}") for n in range(1, 6)]
        again = [post(client, "id:1") for _ in range(2)]

    assert [(r.status_code, rate(r)) for r in fresh] == [(200, ("2", "1"))] * 5
    assert [(r.status_code, rate(r)) for r in again] == [(200, ("2", "0")), (429, ("2", "0"))]


def test_shared_limit_is_reported_when_both_limits_are_set() -> None:
    """With both limits the headers report the shared one, even on a per-path 429."""
    clock = FakeClock(1000.25)
    config = SimulatorConfig(shared_limit=10, path_limit=1)
    with simulated(config, clock=clock) as (_, client):
        answers = [post(client, i) for i in ("id:1", "id:1", "id:2")]

    assert [(r.status_code, rate(r)) for r in answers] == [
        (200, ("10", "9")),
        (429, ("10", "9")),
        (200, ("10", "8")),
    ]


def test_rate_headers_come_with_every_answer_past_auth() -> None:
    """400, 404, 449 and 500 answers carry the rate headers too, and use budget."""
    clock = FakeClock(1000.25)
    with simulated(SimulatorConfig(shared_limit=9), clock=clock) as (_, client):
        answers = [post(client, "id:1", {"status": "x"}), post(client, "id:0")]

    assert [(r.status_code, rate(r)) for r in answers] == [(400, ("9", "8")), (404, ("9", "7"))]


def test_no_rate_headers_without_a_limit() -> None:
    """With no limit configured, the normal mode sends no rate headers."""
    with simulated() as (_, client):
        assert rate(post(client, "id:1")) == (None, None)


@pytest.mark.parametrize(
    ("mode", "expected"), [("zero", ("0", "0")), ("garbage", ("abc", "-x")), ("none", (None, None))]
)
def test_rate_header_modes_lie_or_hide_but_the_limit_holds(
    mode: str, expected: tuple[str | None, str | None]
) -> None:
    """zero/garbage/none change only the headers: the limit and Retry-After still apply."""
    clock = FakeClock(1000.25)
    config = SimulatorConfig(shared_limit=1, rate_headers=mode)
    with simulated(config, clock=clock) as (_, client):
        answers = [post(client, "id:1"), post(client, "id:2")]

    assert [r.status_code for r in answers] == [200, 429]
    assert [rate(r) for r in answers] == [expected, expected]
    assert answers[1].headers["retry-after"] == "1"


@pytest.mark.anyio
async def test_concurrent_requests_never_exceed_the_limit() -> None:
    """30 concurrent requests against a limit of 5 give exactly 5 200s (no race)."""
    simulator = Simulator(SimulatorConfig(shared_limit=5, window=3600))
    statuses: list[int] = []

    async def one(client: httpx.AsyncClient, n: int) -> None:
        response = await client.post(f"/contact/id:{n}/conversation/status", json=OPEN)
        statuses.append(response.status_code)

    async with anyio.create_task_group() as tg:
        port = await tg.start(simulator.serve)
        base_url = f"http://127.0.0.1:{port}/v1"
        async with (
            httpx.AsyncClient(base_url=base_url, headers=AUTH, timeout=5) as client,
            anyio.create_task_group() as burst,
        ):
            for n in range(1, 31):
                burst.start_soon(one, client, n)
        tg.cancel_scope.cancel()

    # A window of an hour can still end mid-test; then at most 5 more pass.
    assert statuses.count(200) in (5, 10)
    assert len(statuses) == 30


# -- 449, 500, drops, latency --------------------------------------------------


def test_queued_contact_answers_449_until_the_hold_passes() -> None:
    """A queued contact answers 449, no Retry-After, for queue_hold s from its first request."""
    clock = FakeClock(50.0)
    config = SimulatorConfig(queue_share=1.0, queue_hold=0.3)
    with simulated(config, clock=clock) as (sim, client):
        first = post(client, "id:7")
        clock.advance(0.2)  # to 50.2
        still = post(client, "id:7")
        other = post(client, "id:8")  # its own hold starts now
        clock.advance(0.11)  # to 50.31
        released = post(client, "id:7")
        other_again = post(client, "id:8")

    assert first.status_code == 449
    assert first.json() == error(449, IN_QUEUE)
    assert "retry-after" not in first.headers
    assert [r.status_code for r in (still, other, released, other_again)] == [449, 449, 200, 449]
    assert sim.simulator.statuses == {"id:7": "open"}


def test_queue_share_picks_a_stable_seeded_subset_of_contacts() -> None:
    """The queued contacts depend only on the seed and identifier, not on request order."""
    ids = [f"id:{n}" for n in range(1, 41)]

    def queued(seed: int, order: list[str]) -> set[str]:
        config = SimulatorConfig(queue_share=0.5, queue_hold=60, seed=seed)
        with simulated(config) as (_, client):
            return {i for i in order if post(client, i).status_code == 449}

    first = queued(1, ids)
    assert first == queued(1, ids[::-1])
    assert first != queued(2, ids)
    assert 5 < len(first) < 35


def test_error_rate_one_answers_500() -> None:
    """error_rate=1.0 answers every otherwise good request 500 Unexpected error occurred."""
    with simulated(SimulatorConfig(error_rate=1.0)) as (sim, client):
        response = post(client, "id:1")

    assert response.status_code == 500
    assert response.json() == error(500, "Unexpected error occurred")
    assert sim.simulator.statuses == {}


def test_random_failures_repeat_with_the_same_seed() -> None:
    """The same seed gives the same sequence of 500s."""

    def run(seed: int) -> list[int]:
        with simulated(SimulatorConfig(error_rate=0.5, seed=seed)) as (_, client):
            return [post(client, f"id:{n}").status_code for n in range(1, 31)]

    first = run(3)
    assert first == run(3)
    assert set(first) == {200, 500}


def test_dropped_connection_gives_no_answer_and_is_recorded_as_0() -> None:
    """drop_rate=1.0 closes the connection unanswered: httpx raises RemoteProtocolError."""
    with simulated(SimulatorConfig(drop_rate=1.0)) as (sim, client):
        with pytest.raises(httpx.RemoteProtocolError):
            post(client, "email:a%2Bb@x.com")
        requests = list(sim.simulator.requests)

    assert [(r.status, r.identifier, r.body) for r in requests] == [(0, "email:a+b@x.com", OPEN)]
    assert sim.simulator.count(0) == 1


def test_latency_is_waited_on_the_clock_before_each_answer() -> None:
    """latency=0.2 makes the server wait 0.2 s on its clock before each answer, not on a drop."""
    clock = SleepRecordingClock()
    with simulated(SimulatorConfig(latency=0.2), clock=clock) as (_, client):
        responses = [post(client, "id:1"), post(client, "id:2")]

    assert [r.status_code for r in responses] == [200, 200]
    assert clock.slept == [0.2, 0.2]

    dropping = SleepRecordingClock()
    config = SimulatorConfig(latency=0.2, drop_rate=1.0)
    with simulated(config, clock=dropping) as (_, client), pytest.raises(httpx.RemoteProtocolError):
        post(client, "id:1")
    assert dropping.slept == []


# -- log, connections, lifecycle -------------------------------------------------


def test_log_path_gets_one_json_line_per_request(tmp_path: Path) -> None:
    """With log_path, each request (401s too) is appended as one JSON RequestRecord line."""
    log = tmp_path / "requests.jsonl"
    with simulated(SimulatorConfig(log_path=str(log), token=BEARER)) as (sim, client):
        post(client, "id:5")
        client.headers["Authorization"] = "Bearer nope"
        post(client, "id:6")
        records = list(sim.simulator.requests)

    lines = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert [RequestRecord(**line) for line in lines] == records
    assert [(line["identifier"], line["status"], line["contact_id"]) for line in lines] == [
        ("id:5", 200, 5),
        ("id:6", 401, None),
    ]


def test_many_requests_share_one_keep_alive_connection() -> None:
    """50 requests from one client travel over a single TCP connection."""
    peers = set()
    with simulated() as (sim, client):
        for n in range(1, 51):
            response = post(client, f"id:{n}")
            # The client side's own address: one port means one connection.
            peers.add(response.extensions["network_stream"].get_extra_info("client_addr"))
    assert len(peers) == 1
    assert sim.simulator.count(200) == 50


def test_pipelined_requests_are_answered_in_order_then_connection_close_closes() -> None:
    """Two requests in one write get two answers; Connection: close ends the connection."""
    with running() as sim, socket.create_connection(("127.0.0.1", sim.port), timeout=5) as sock:
        sock.sendall(raw_request("id:1") + raw_request("id:2"))
        answers = read_responses(sock, 2)
        sock.sendall(raw_request("id:3", extra=b"Connection: close\r\n"))
        last = read_responses(sock, 1)
        eof = sock.recv(1)

    assert [a.split(b"\r\n\r\n")[1] for a in answers] == [b'{"contactId":1}', b'{"contactId":2}']
    assert last[0].endswith(b'{"contactId":3}')
    assert eof == b""


def test_malformed_request_gets_400_and_the_server_keeps_serving() -> None:
    """Garbage instead of HTTP gets 400 and a close; a client hanging up mid-request is harmless."""
    with running() as sim:
        with socket.create_connection(("127.0.0.1", sim.port), timeout=5) as sock:
            sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            answer = read_responses(sock, 1)[0]
        with socket.create_connection(("127.0.0.1", sim.port), timeout=5) as sock:
            sock.sendall(raw_request("id:1")[:40])
        with httpx.Client(base_url=sim.base_url, headers=AUTH, timeout=5) as client:
            after = post(client, "id:1")

    assert answer.startswith(b"HTTP/1.1 400")
    assert after.status_code == 200


@pytest.mark.anyio
async def test_serve_reports_its_port_and_stops_cleanly_on_cancel() -> None:
    """serve() on port 0 reports the bound port, answers, and returns when cancelled."""
    simulator = Simulator()
    async with anyio.create_task_group() as tg:
        port = await tg.start(simulator.serve, "127.0.0.1", 0)
        async with httpx.AsyncClient(headers=AUTH, timeout=5) as client:
            url = f"http://127.0.0.1:{port}/v1/contact/id:3/conversation/status"
            response = await client.post(url, json=OPEN)
        tg.cancel_scope.cancel()

    assert response.json() == {"contactId": 3}
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.1", port), timeout=1),
    ):
        pass


def test_serve_forever_announces_its_url_and_exits_on_sigterm() -> None:
    """serve_forever calls on_ready(base_url) once listening and stops cleanly on SIGTERM."""
    code = (
        "from batcher.simulator import SimulatorConfig, serve_forever\n"
        "serve_forever(SimulatorConfig(), on_ready=lambda url: print(url, flush=True))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    with subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env
    ) as process:
        try:
            assert process.stdout is not None
            base_url = process.stdout.readline().strip()
            with httpx.Client(base_url=base_url, headers=AUTH, timeout=5) as client:
                response = post(client, "id:4")
            process.send_signal(signal.SIGTERM)
            returncode = process.wait(timeout=10)
        finally:
            process.kill()

    assert base_url.startswith("http://127.0.0.1:")
    assert base_url.endswith("/v1")
    assert response.json() == {"contactId": 4}
    assert returncode == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rate_headers": "bogus"},
        {"window": 0},
        {"shared_limit": -1},
        {"error_rate": 1.5},
        {"latency": -1},
    ],
)
def test_config_rejects_impossible_values(kwargs: dict[str, object]) -> None:
    """SimulatorConfig refuses values that have no meaning, at construction."""
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        SimulatorConfig(**kwargs)  # type: ignore[arg-type]


def test_a_sliding_window_counts_each_request_for_a_window_from_its_arrival() -> None:
    """Sliding 3/s: a 4th request within a second of the first gets 429 with Retry-After
    until the first leaves; once it has, one more goes (not a whole new budget)."""
    clock = FakeClock(start=10.5)
    api = SimulatedAPI(SimulatorConfig(shared_limit=3, window_kind="sliding"), now=clock.now)
    body = b'{"status":"close"}'
    statuses = []
    for _ in range(3):
        statuses.append(
            api.respond("POST", "/v1/contact/id:1/conversation/status", "Bearer t", body).status
        )
        clock.advance(0.3)
    over = api.respond("POST", "/v1/contact/id:1/conversation/status", "Bearer t", body)
    assert statuses == [200, 200, 200]
    assert over.status == 429
    assert dict(over.headers)[b"retry-after"] == b"1"
    clock.advance(0.1)  # 11.5: the first (10.5) has left; a fixed window would reset at 11.0
    again = [
        api.respond("POST", f"/v1/contact/id:{n}/conversation/status", "Bearer t", body).status
        for n in (2, 3)
    ]
    assert again == [200, 429]
