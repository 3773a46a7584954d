"""The simulated API in process: an httpx transport that answers by the simulator's rules.

``simulated_transport(config, clock=clock)`` gives an ``httpx.AsyncBaseTransport``
to pass as ``transport=`` to ``httpx.AsyncClient`` or ``run_batch``. Each request
is answered by ``batcher.simrules.SimulatedAPI``, the same rules the socket
server in ``batcher.simulator`` serves, with no sockets and no threads: inside
``FakeClock().run(...)`` a run with latency, 449 holds and rate windows takes
no real time.

This module imports httpx, unlike the rest of the simulator: a transport is
httpx's own interface for answering a client's requests, so it cannot be
written without it. It shares no code with ``batcher.client``; the rules it
serves still import only the standard library.
"""

from __future__ import annotations

from typing import Final

import httpx

from batcher.clock import Clock, SystemClock
from batcher.simrules import ServesAPI, SimulatedAPI, SimulatorConfig

__all__ = ["SimulatedTransport", "simulated_transport"]

_DEFAULT_CONFIG: Final = SimulatorConfig()


class SimulatedTransport(ServesAPI, httpx.AsyncBaseTransport):
    """An httpx transport answering every request with a ``SimulatedAPI``'s rules.

    Use it from one event loop at a time: the rules decide without awaiting, so
    concurrent requests on that loop never race a counter.
    """

    def __init__(self, api: SimulatedAPI, clock: Clock) -> None:
        #: The rules and their state: ``requests``, ``statuses``, ``count()``.
        self.api = api
        self._clock = clock
        # Opened here, not on the first request: a bad log path fails at construction.
        api.open_log()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Answer ``request`` by the rules, after the answer's latency on the clock."""
        if self.api.refuses_connection():
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        body = await request.aread()
        # The path as sent, still percent-encoded: the rules decode the identifier
        # themselves, and count per-path budgets by the raw path, as the server does.
        raw_path = request.url.raw_path.partition(b"?")[0].decode("latin-1")
        authorization = request.headers.get_list("authorization")
        answer = self.api.respond(
            request.method, raw_path, authorization[0] if authorization else None, body
        )
        if answer.dropped:
            # What httpx raises when a server closes the connection without answering.
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        if answer.latency:
            await self._clock.sleep(answer.latency)
        return httpx.Response(
            answer.status,
            headers=list(answer.headers),
            content=answer.body,
            request=request,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": answer.reason},
        )

    async def aclose(self) -> None:
        """Close the request log, if one is open (``AsyncClient`` calls this on exit)."""
        self.api.close_log()


def simulated_transport(
    config: SimulatorConfig | None = None, *, clock: Clock | None = None
) -> SimulatedTransport:
    """A transport serving a fresh simulated API built from ``config``.

    ``clock`` (default ``SystemClock()``) is the API's time (rate windows, queue
    holds, record times) and what the latency is waited on; pass the run's
    ``FakeClock`` so that the run and the API share virtual time.
    """
    clock = clock or SystemClock()
    return SimulatedTransport(SimulatedAPI(config or _DEFAULT_CONFIG, now=clock.now), clock)
