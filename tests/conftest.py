"""Fixtures shared by the end-to-end tests: the simulator as a real server, input files,
and the CLI called in-process."""

from __future__ import annotations

import csv
import io
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from batcher.cli import main
from batcher.simulator import RunningSimulator, SimulatorConfig, running

#: The token the tests run with; a test greps every output for it.
TOKEN = "tok-SECRET-7f3a9c-never-print-me"  # noqa: S105 - a fake token the tests grep for


@dataclass
class CliRun:
    """What one in-process ``batcher`` call did."""

    code: int
    out: str
    err: str


def read_results(path: Path) -> list[dict[str, str]]:
    """A results file as a list of rows (column name -> text)."""
    with path.open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def token_env(monkeypatch: pytest.MonkeyPatch) -> str:
    """AELYST_API_TOKEN set to the test token."""
    monkeypatch.setenv("AELYST_API_TOKEN", TOKEN)
    return TOKEN


@pytest.fixture
def simulator() -> Iterator[Callable[..., RunningSimulator]]:
    """Start simulators (real servers on 127.0.0.1, free ports); all stop after the test."""
    with ExitStack() as stack:

        def start(**config: object) -> RunningSimulator:
            return stack.enter_context(running(SimulatorConfig(**config)))  # type: ignore[arg-type]

        yield start


@pytest.fixture
def cli() -> Callable[..., CliRun]:
    """Call ``batcher`` in-process with these arguments; capture exit code and output."""

    def call(*args: str | os.PathLike[str]) -> CliRun:
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = main([os.fspath(a) for a in args])
        return CliRun(code, out.getvalue(), err.getvalue())

    return call


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1: what it was sent, and the status it answers."""

    url: str
    answer: int = 200
    posts: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A tiny HTTP server on a free loopback port, in a thread; stopped after the test."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    got = Receiver(f"http://127.0.0.1:{server.server_address[1]}/hooks/T0/B0/secret")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            got.posts.append((dict(self.headers.items()), body))
            self.send_response(got.answer)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep the test output clean

    server.RequestHandlerClass = Handler
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield got
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
