"""The simulated Aelyst endpoint as a real HTTP/1.1 server on a socket (anyio + h11).

``batcher simulate``, ``batcher demo`` and the end-to-end tests run batcher
against it. The API's rules, and the list of what it answers, live in
``batcher.simrules``; this module is only the server around them: it reads each
request off the connection, asks ``SimulatedAPI.respond``, waits the answer's
latency on its clock, and writes the answer, or closes the connection unanswered
when the answer is a drop. ``batcher.simtransport`` serves the same rules in
process, without sockets.

Only the standard library, anyio, h11 and batcher's own simulator and clock
modules are imported here: the simulator must never share code with the client
it is testing.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Final

import anyio
import anyio.abc
import h11
from anyio.from_thread import start_blocking_portal

from batcher.clock import Clock, SystemClock
from batcher.simrules import (
    MAX_BODY,
    Answer,
    RequestRecord,
    ServesAPI,
    SimulatedAPI,
    SimulatorConfig,
    contact_id,
)

__all__ = [
    "RequestRecord",
    "RunningSimulator",
    "Simulator",
    "SimulatorConfig",
    "contact_id",
    "running",
    "serve_forever",
]

_DEFAULT_CONFIG: Final = SimulatorConfig()
_RECEIVE_SIZE: Final = 65536
# A request h11 cannot parse never reaches the rules: it is the server's to refuse.
_BAD_REQUEST: Final = Answer(
    400, b'{"code":400,"message":"Bad request"}', ((b"content-type", b"application/json"),)
)


class Simulator(ServesAPI):
    """The simulated API served over HTTP/1.1: a ``SimulatedAPI`` behind an h11 server.

    The rules decide each request without awaiting, so concurrent connections
    never race a counter; only the latency wait and the I/O await.
    """

    def __init__(
        self,
        config: SimulatorConfig = _DEFAULT_CONFIG,
        *,
        clock: Clock | None = None,
    ) -> None:
        self._clock = clock or SystemClock()
        #: The rules and their state; the properties below read through to it.
        self.api = SimulatedAPI(config, now=self._clock.now)

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``host:port``, report the port to ``task_status``, serve until cancelled."""
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
        async with listener:
            # Opened before started(): a bad log path fails the start, not the first request.
            self.api.open_log()
            try:
                # anyio's typed attribute lookup; ruff's S610 mistakes it for Django's.
                bound = listener.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610
                task_status.started(bound)
                await listener.serve(self._handle_connection)
            finally:
                self.api.close_log()

    async def _handle_connection(self, stream: anyio.abc.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        async with stream:
            try:
                while await self._handle_request(conn, stream):
                    conn.start_next_cycle()
            except h11.RemoteProtocolError:
                await self._refuse_malformed(conn, stream)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                # The client went away mid-answer; nothing is left to tell it.
                pass

    async def _next_event(
        self, conn: h11.Connection, stream: anyio.abc.SocketStream
    ) -> h11.Event | None:
        """The next event; None for h11's PAUSED, which only follows a whole request."""
        while True:
            event = conn.next_event()
            if isinstance(event, h11.Event):
                return event
            if event is h11.PAUSED:
                return None
            try:
                data = await stream.receive(_RECEIVE_SIZE)
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                # h11 turns this into ConnectionClosed between requests, or a
                # RemoteProtocolError when the client hung up mid-request.
                data = b""
            conn.receive_data(data)

    async def _handle_request(self, conn: h11.Connection, stream: anyio.abc.SocketStream) -> bool:
        """Read one request and answer it. True when the connection can carry another."""
        request = await self._next_event(conn, stream)
        if not isinstance(request, h11.Request):
            return False  # ConnectionClosed: the client is done with this connection
        if self.api.refuses_connection():
            return False  # down: the connection is reset without an answer
        if conn.they_are_waiting_for_100_continue:
            await stream.send(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
        chunks: list[bytes] = []
        size = 0
        while True:
            event = await self._next_event(conn, stream)
            if isinstance(event, h11.Data):
                size += len(event.data)
                chunks.append(event.data)
                if size > MAX_BODY:
                    # Stop reading: the rules answer 413 to what is already too large,
                    # and the unread rest of the body means the connection closes.
                    break
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                return False

        authorization = None
        for name, value in request.headers:
            if name == b"authorization":
                authorization = value
                break
        answer = self.api.respond(request.method, request.target, authorization, b"".join(chunks))
        if answer.dropped:
            return False  # the caller closes the stream without a byte of answer
        if answer.latency:
            await self._clock.sleep(answer.latency)
        await self._send(conn, stream, answer)
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE

    async def _send(
        self, conn: h11.Connection, stream: anyio.abc.SocketStream, answer: Answer
    ) -> None:
        head = [*answer.headers, (b"content-length", b"%d" % len(answer.body))]
        response = h11.Response(status_code=answer.status, headers=head, reason=answer.reason)
        # One write per answer: three small writes would cost three syscalls.
        data = (
            conn.send(response)
            + conn.send(h11.Data(data=answer.body))
            + conn.send(h11.EndOfMessage())
        )
        await stream.send(data)

    async def _refuse_malformed(self, conn: h11.Connection, stream: anyio.abc.SocketStream) -> None:
        # h11 lets a server answer a request it could not parse, as long as it
        # has not started an answer yet; the connection closes afterwards.
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        with suppress(h11.LocalProtocolError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            await self._send(conn, stream, _BAD_REQUEST)


@dataclass(frozen=True)
class RunningSimulator:
    """A simulator serving in a background thread, as ``running()`` yields it."""

    #: The simulator; read its ``requests``, ``statuses`` and ``count()``.
    simulator: Simulator
    #: The port it listens on, on 127.0.0.1.
    port: int

    @property
    def base_url(self) -> str:
        """The API base URL to give the client, ending in ``/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"


@contextmanager
def running(
    config: SimulatorConfig = _DEFAULT_CONFIG,
    *,
    clock: Clock | None = None,
) -> Iterator[RunningSimulator]:
    """Runs a Simulator in a background thread; stops it on exit.

    The thread runs an asyncio event loop through
    ``anyio.from_thread.start_blocking_portal``. ``clock`` (default ``SystemClock()``)
    is the server's time (rate windows, queue holds, record times) and its latency
    wait; the loop in the thread is an ordinary one, so a ``FakeClock`` passed here
    is time a test moves by hand with ``advance``.
    """
    simulator = Simulator(config, clock=clock)
    with start_blocking_portal(backend="asyncio") as portal:
        future, port = portal.start_task(simulator.serve, name="batcher-simulator")
        try:
            yield RunningSimulator(simulator, port)
        finally:
            # Cancelling the task's future cancels serve(); the portal then waits for it.
            future.cancel()


def serve_forever(
    config: SimulatorConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    on_ready: Callable[[str], None],
) -> None:
    """Blocking: serve until KeyboardInterrupt, SIGTERM or cancellation.

    Runs the server with ``anyio.run`` on the asyncio backend and calls
    ``on_ready(base_url)`` once it is listening. SIGINT and SIGTERM stop it
    cleanly when it runs in the main thread.
    """
    simulator = Simulator(config)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            # Signal handlers can only be installed from the main thread.
            if threading.current_thread() is threading.main_thread() and sys.platform != "win32":
                await tg.start(_cancel_on_signal, tg.cancel_scope)
            bound: int = await tg.start(simulator.serve, host, port)
            netloc = f"[{host}]" if ":" in host else host
            on_ready(f"http://{netloc}:{bound}/v1")

    # Ctrl-C before the signal handler is installed (or off the main thread) is a clean stop too.
    with suppress(KeyboardInterrupt):
        anyio.run(main, backend="asyncio")


async def _cancel_on_signal(
    scope: anyio.CancelScope,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for _ in signals:
            scope.cancel()
            return
