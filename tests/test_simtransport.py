"""The in-process transport answers by the simulator's rules, in virtual time, with no sockets."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from batcher.simrules import RequestRecord, SimulatorConfig
from batcher.simtransport import SimulatedTransport, simulated_transport
from batcher.simulator import running
from batcher.virtualtime import FakeClock

T = TypeVar("T")

#: The test client's bearer token (not a secret: the simulator accepts any unless told).
AUTH = {"Authorization": "Bearer test-token"}
OPEN = {"status": "open"}
BASE_URL = "http://sim/v1"


def in_virtual_time(
    config: SimulatorConfig,
    main: Callable[[httpx.AsyncClient, SimulatedTransport, FakeClock], Awaitable[T]],
    *,
    start: float = 0.0,
) -> T:
    """Run ``main`` inside ``FakeClock(start).run`` with a client on a simulated transport."""
    clock = FakeClock(start)

    async def run() -> T:
        transport = simulated_transport(config, clock=clock)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL, headers=AUTH) as c:
            return await main(c, transport, clock)

    return clock.run(run)


async def post(client: httpx.AsyncClient, identifier: str, body: object = OPEN) -> httpx.Response:
    return await client.post(f"/contact/{identifier}/conversation/status", json=body)


def rate(response: httpx.Response) -> tuple[str | None, str | None]:
    return response.headers.get("x-ratelimit-limit"), response.headers.get("x-ratelimit-remaining")


def test_id_n_answers_200_with_its_contact_id() -> None:
    """id:N answers 200 {"contactId": N} as JSON, and the 200 is recorded and applied."""

    async def main(
        client: httpx.AsyncClient, transport: SimulatedTransport, _: FakeClock
    ) -> httpx.Response:
        response = await post(client, "id:42")
        assert transport.statuses == {"id:42": "open"}
        assert transport.count(200) == 1
        assert transport.requests[0].contact_id == 42
        return response

    response = in_virtual_time(SimulatorConfig(), main)
    assert response.status_code == 200
    assert response.json() == {"contactId": 42}
    assert response.headers["content-type"] == "application/json"
    assert response.reason_phrase == "OK"


def test_missing_bearer_token_is_401() -> None:
    """A request without a bearer token gets 401 UN_AUTHORIZED."""

    async def main(client: httpx.AsyncClient, _: SimulatedTransport, __: FakeClock) -> int:
        del client.headers["Authorization"]
        response = await post(client, "id:1")
        assert response.json() == {"code": 401, "message": "UN_AUTHORIZED"}
        return response.status_code

    assert in_virtual_time(SimulatorConfig(), main) == 401


def test_shared_limit_gives_429_with_retry_after_and_rate_headers() -> None:
    """Past the shared limit: 429 with Retry-After and X-RateLimit-*; the next window has budget."""

    async def main(
        client: httpx.AsyncClient, _: SimulatedTransport, clock: FakeClock
    ) -> tuple[list[httpx.Response], httpx.Response]:
        burst = [await post(client, f"id:{n}") for n in range(1, 6)]
        await clock.sleep(float(burst[-1].headers["retry-after"]))
        return burst, await post(client, "id:9")

    burst, after = in_virtual_time(SimulatorConfig(shared_limit=3), main, start=1000.25)
    assert [r.status_code for r in burst] == [200, 200, 200, 429, 429]
    assert [rate(r) for r in burst] == [("3", "2"), ("3", "1"), ("3", "0"), ("3", "0"), ("3", "0")]
    assert [r.headers.get("retry-after") for r in burst] == [None, None, None, "1", "1"]
    assert burst[3].json() == {"code": 429, "message": "Too Many Requests"}
    assert (after.status_code, rate(after)) == (200, ("3", "2"))


def test_dropped_connection_raises_remote_protocol_error() -> None:
    """drop_rate=1.0 raises httpx.RemoteProtocolError as a closed connection does; status 0."""

    async def main(
        client: httpx.AsyncClient, transport: SimulatedTransport, _: FakeClock
    ) -> list[RequestRecord]:
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await post(client, "email:a%2Bb@x.com")
        return list(transport.requests)

    records = in_virtual_time(SimulatorConfig(drop_rate=1.0), main)
    assert [(r.status, r.identifier, r.body) for r in records] == [(0, "email:a+b@x.com", OPEN)]


def test_queued_contact_answers_449_until_the_hold_passes_in_virtual_time() -> None:
    """A queued contact answers 449 until queue_hold virtual seconds have passed, then 200."""

    async def main(
        client: httpx.AsyncClient, _: SimulatedTransport, clock: FakeClock
    ) -> list[tuple[float, int]]:
        seen = []
        for _attempt in range(10):  # bounded: the hold is 30 s, polled every 7 s
            response = await post(client, "id:7")
            seen.append((clock.now(), response.status_code))
            if response.status_code == 200:
                break
            await clock.sleep(7)
        return seen

    seen = in_virtual_time(SimulatorConfig(queue_share=1.0, queue_hold=30), main)
    assert seen == [(0, 449), (7, 449), (14, 449), (21, 449), (28, 449), (35, 200)]


def test_latency_is_exactly_the_configured_virtual_seconds() -> None:
    """latency=2.5 answers after exactly 2.5 s of virtual time; a drop answers at once."""

    async def main(client: httpx.AsyncClient, _: SimulatedTransport, clock: FakeClock) -> float:
        before = clock.now()
        response = await post(client, "id:1")
        assert response.status_code == 200
        return clock.now() - before

    assert in_virtual_time(SimulatorConfig(latency=2.5), main) == pytest.approx(2.5, abs=1e-9)

    async def dropped(client: httpx.AsyncClient, _: SimulatedTransport, clock: FakeClock) -> float:
        before = clock.now()
        with pytest.raises(httpx.RemoteProtocolError):
            await post(client, "id:1")
        return clock.now() - before

    assert in_virtual_time(SimulatorConfig(latency=2.5, drop_rate=1.0), dropped) == 0


def test_raw_path_is_kept_encoded_and_the_query_string_is_not_part_of_it() -> None:
    """%2B/%2F decode in the identifier but the raw path stays as sent; a bare "?" cuts it (404)."""

    async def main(
        client: httpx.AsyncClient, transport: SimulatedTransport, _: FakeClock
    ) -> list[int]:
        statuses = [(await post(client, "email:a%2Bb%2Fc@x.com")).status_code]
        query = await client.post("/contact/id:3/conversation/status?x=1", json=OPEN)
        cut = await client.post("/contact/email:a?b@x.com/conversation/status", json=OPEN)
        statuses += [query.status_code, cut.status_code]
        assert [r.raw_path for r in transport.requests] == [
            "/v1/contact/email:a%2Bb%2Fc@x.com/conversation/status",
            "/v1/contact/id:3/conversation/status",
            "/v1/contact/email:a",
        ]
        assert transport.requests[0].identifier == "email:a+b/c@x.com"
        return statuses

    assert in_virtual_time(SimulatorConfig(), main) == [200, 200, 404]


def test_log_path_gets_one_line_per_request_and_closes_with_the_client(tmp_path: Path) -> None:
    """With log_path, each request is appended as a JSON line; the client's exit closes the log."""
    log = tmp_path / "requests.jsonl"

    async def main(client: httpx.AsyncClient, _: SimulatedTransport, __: FakeClock) -> None:
        await post(client, "id:5")
        await post(client, "id:0")

    in_virtual_time(SimulatorConfig(log_path=str(log)), main)
    lines = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert [(line["identifier"], line["status"]) for line in lines] == [
        ("id:5", 200),
        ("id:0", 404),
    ]


#: Enough variety that every rule fires for seed 11: drops, 500s, 449s, 429s, 401s, 400s, 404s.
SHARED_RULES = SimulatorConfig(
    error_rate=0.3,
    drop_rate=0.15,
    queue_share=0.3,
    queue_hold=60,
    shared_limit=22,
    revoke_after=30,
    seed=11,
)
REQUESTS: list[tuple[str, object]] = [
    *[(f"id:{n}", OPEN) for n in range(1, 21)],
    ("id:0", OPEN),
    ("email:blocked@x.com", OPEN),
    ("id:5", {"status": "shut"}),
    ("foo", OPEN),
    *[(f"email:u{n}@x.com", {"status": "close", "category": "c"}) for n in range(1, 17)],
]

#: One answer as the client saw it: status (0 for a drop), body and the rate-limit headers.
Seen = tuple[int, bytes, str | None, str | None, str | None]


def _seen(response: httpx.Response | None) -> Seen:
    if response is None:
        return (0, b"", None, None, None)
    limit, remaining = rate(response)
    return (
        response.status_code,
        response.content,
        limit,
        remaining,
        response.headers.get("retry-after"),
    )


def test_server_and_transport_share_the_rules_and_the_seeded_sequence() -> None:
    """The same config and seed give the same answers over a real socket and in process."""
    with (
        running(SHARED_RULES, clock=FakeClock(1000.25)) as sim,
        httpx.Client(base_url=sim.base_url, headers=AUTH, timeout=5) as client,
    ):
        over_socket: list[Seen] = []
        for identifier, body in REQUESTS:
            try:
                response: httpx.Response | None = client.post(
                    f"/contact/{identifier}/conversation/status", json=body
                )
            except httpx.RemoteProtocolError:
                response = None
            over_socket.append(_seen(response))
        socket_records = list(sim.simulator.requests)

    async def main(
        client: httpx.AsyncClient, transport: SimulatedTransport, _: FakeClock
    ) -> tuple[list[Seen], list[RequestRecord]]:
        seen: list[Seen] = []
        for identifier, body in REQUESTS:
            try:
                response: httpx.Response | None = await post(client, identifier, body)
            except httpx.RemoteProtocolError:
                response = None
            seen.append(_seen(response))
        return seen, list(transport.requests)

    in_process, process_records = in_virtual_time(SHARED_RULES, main, start=1000.25)
    assert in_process == over_socket
    assert process_records == socket_records
    assert {s[0] for s in over_socket} == {0, 200, 400, 401, 404, 429, 449, 500}
