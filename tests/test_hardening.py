"""Hostile servers and unlucky nights: no false success, no clobbered file, no hang, no
token where it should not go. Each test here failed on the code before it."""

from __future__ import annotations

import errno
import os
import random
import socket
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import httpx
import pytest

from batcher import (
    ApiUnreachable,
    Outcome,
    Reason,
    RunSummary,
    Settings,
    StorageError,
    TooManyErrors,
    run_batch,
)
from batcher.journal import Journal
from batcher.testing import FakeClock, SimulatorConfig, simulated_transport
from tests.conftest import TOKEN, CliRun, read_results, write_csv

HEADER = ("identifier", "status", "category", "summary")
Cli = Callable[..., CliRun]


def closes(path: Path, rows: int) -> Path:
    return write_csv(path, HEADER, [(f"id:{n}", "close", "Spam", "") for n in range(1, rows + 1)])


def answering(
    status: int, body: bytes, headers: dict[str, str] | None = None
) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers=headers or {})

    return httpx.MockTransport(handler)


# -- no false success ----------------------------------------------------------------------


def test_a_200_page_without_a_contact_id_is_not_ok_and_stops_the_run(tmp_path: Path) -> None:
    """A wrong base URL answering 200 with an HTML page: no row is ok, each is failed as
    unconfirmed after one request (not retried blindly), and the run stops once every row
    gets it (--max-same-errors)."""
    source = closes(tmp_path / "in.csv", 200)
    page = b"<html><body>Welcome to the hotel Wi-Fi</body></html>"
    with pytest.raises(TooManyErrors) as stop:
        run_batch(source, settings=Settings(max_same_errors=20, rate=100), token=TOKEN,
                  clock=FakeClock(), transport=answering(200, page))  # fmt: skip
    summary = stop.value.summary
    assert isinstance(summary, RunSummary)
    assert summary.outcomes[Outcome.OK] == 0
    rows = read_results(tmp_path / "in.results.csv")
    failed = [r for r in rows if r["outcome"] == "failed"]
    assert 20 <= len(failed) <= 28
    assert all(r["attempts"] == "1" and r["contact_id"] == "" for r in failed)
    assert "200 without a contactId" in failed[0]["error"]
    assert summary.reasons[Reason.UNCONFIRMED] == len(failed)


# -- files the user did not ask to overwrite -----------------------------------------------


@pytest.mark.parametrize(
    ("flag", "target"),
    [
        ("--summary-json", "input"),
        ("--log-file", "input"),
        ("--summary-json", "results"),
        ("--log-file", "summary"),
    ],
)
def test_an_output_naming_the_input_or_another_output_is_refused(
    tmp_path: Path, cli: Cli, token_env: str, flag: str, target: str
) -> None:
    """--summary-json or --log-file naming the input, the results or another output: exit 2
    before anything is sent or written, and the file named is unchanged."""
    source = closes(tmp_path / "in.csv", 3)
    results = tmp_path / "in.results.csv"
    results.write_text("keep me\n")
    summary = tmp_path / "summary.json"
    named = {"input": source, "results": results, "summary": summary}[target]
    before = source.read_bytes(), results.read_bytes()
    extra = ("--summary-json", str(summary)) if target == "summary" else ()
    done = cli("run", source, "--base-url", "http://127.0.0.1:9/v1", flag, named, *extra)
    assert done.code == 2
    assert "would overwrite" in done.err
    assert (source.read_bytes(), results.read_bytes()) == before


def test_a_symlink_planted_at_the_lock_path_is_not_written_through(
    tmp_path: Path, cli: Cli, token_env: str
) -> None:
    """A symbolic link at RESULTS.csv.lock: exit 2, and the link's target is untouched."""
    source = closes(tmp_path / "in.csv", 3)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (tmp_path / "in.results.csv.lock").symlink_to(victim)
    done = cli("run", source, "--base-url", "http://127.0.0.1:9/v1")
    assert done.code == 2
    assert "symbolic link" in done.err
    assert victim.read_text() == "precious\n"


def test_results_files_take_the_umask_mode(tmp_path: Path) -> None:
    """The results file is created as any new file would be (0644 under umask 022), not
    0600, so a shared results folder can read it."""
    source = closes(tmp_path / "in.csv", 3)
    old = os.umask(0o022)
    try:
        run_batch(source, token=TOKEN, clock=FakeClock(),
                  transport=simulated_transport(SimulatorConfig()))  # fmt: skip
    finally:
        os.umask(old)
    assert (tmp_path / "in.results.csv").stat().st_mode & 0o777 == 0o644


def test_stale_temporary_files_from_a_kill_are_removed(tmp_path: Path) -> None:
    """A temporary results file left by a kill during the final write is removed by the
    next run of the same results file."""
    source = closes(tmp_path / "in.csv", 3)
    stale = tmp_path / ".in.results.csv.x1y2z3.tmp"
    stale.write_text("half a results file")
    run_batch(source, token=TOKEN, clock=FakeClock(),
              transport=simulated_transport(SimulatorConfig()))  # fmt: skip
    assert not stale.exists()
    assert [p.name for p in tmp_path.glob("*.tmp")] == []


# -- a full disk, a damaged journal ---------------------------------------------------------


def test_a_disk_full_mid_run_is_one_clear_resumable_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The journal cannot be written (disk full) after 40 rows: StorageError (exit 3)
    naming the journal, not a traceback; once there is room the same call sends exactly
    the rows not yet recorded."""
    source = closes(tmp_path / "in.csv", 100)
    clock = FakeClock()
    record = Journal.record
    written = 0

    def filling(self: Journal, result: object) -> None:
        nonlocal written
        if written >= 40:
            raise sqlite3.OperationalError("database or disk is full")
        written += 1
        record(self, result)  # type: ignore[arg-type]

    monkeypatch.setattr(Journal, "record", filling)
    first = simulated_transport(SimulatorConfig(), clock=clock)
    with pytest.raises(StorageError) as stop:
        run_batch(source, settings=Settings(rate=50), token=TOKEN, clock=clock, transport=first)
    assert stop.value.exit_code == 3
    assert "in.results.csv.journal" in str(stop.value)
    assert "disk is full" in str(stop.value)
    assert (tmp_path / "in.results.csv.journal").exists()

    monkeypatch.setattr(Journal, "record", record)
    second = simulated_transport(SimulatorConfig(), clock=clock)
    summary = run_batch(source, settings=Settings(rate=50), token=TOKEN, clock=clock,
                        transport=second)  # fmt: skip
    assert summary.outcomes[Outcome.OK] == 100
    sent_first = {r.identifier for r in first.requests}
    recorded = {f"id:{n}" for n in range(1, 101)} - {r.identifier for r in second.requests}
    assert len(recorded) >= 40
    assert recorded <= sent_first


def test_a_disk_full_at_the_final_write_is_exit_3_and_resumable(
    tmp_path: Path,
    cli: Cli,
    token_env: str,
    simulator: Callable[..., object],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The results file cannot be written at the end (ENOSPC): exit 3, not 2 ("nothing
    was sent"), the summary JSON says 3, the journal is kept, and the same command then
    writes the results without sending anything again."""
    sim = simulator()
    source = closes(tmp_path / "in.csv", 20)
    summary_path = tmp_path / "summary.json"

    def full(*args: object, **kwargs: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    base = ("run", source, "--base-url", sim.base_url, "--rate", "200")  # type: ignore[attr-defined]
    with monkeypatch.context() as patched:
        patched.setattr("batcher.runner.write_results", full)
        done = cli(*base, "--summary-json", summary_path)
    assert done.code == 3
    assert "No space left on device" in done.err
    assert "Traceback" not in done.err
    assert '"exit_code": 3' in summary_path.read_text()
    assert (tmp_path / "in.results.csv.journal").exists()
    sent = sim.simulator.count(200)  # type: ignore[attr-defined]
    assert sent == 20

    again = cli(*base)
    assert again.code == 0
    assert sim.simulator.count(200) == sent  # type: ignore[attr-defined]
    assert len(read_results(tmp_path / "in.results.csv")) == 20


def test_a_damaged_journal_is_one_clear_line_not_a_traceback(
    tmp_path: Path, cli: Cli, token_env: str
) -> None:
    """A journal damaged while the run was stopped: exit 2 naming the file and --restart."""
    source = closes(tmp_path / "in.csv", 3)
    (tmp_path / "in.results.csv.journal").write_bytes(b"SQLite format 3\x00" + b"\xff" * 200)
    done = cli("run", source, "--base-url", "http://127.0.0.1:9/v1")
    assert done.code == 2
    assert "in.results.csv.journal" in done.err
    assert "damaged" in done.err
    assert "--restart" in done.err
    assert "Traceback" not in done.err


# -- a finished run is never sent again in full ----------------------------------------------


def test_the_same_command_after_a_complete_run_sends_nothing(
    tmp_path: Path, cli: Cli, token_env: str, simulator: Callable[..., object]
) -> None:
    """A complete run, then the same command: nothing sent, and it says so, with the first
    run's exit code; a changed input is a new run, and --restart sends again."""
    sim = simulator()
    source = closes(tmp_path / "in.csv", 30)
    base = ("run", source, "--base-url", sim.base_url, "--rate", "300")  # type: ignore[attr-defined]
    assert cli(*base).code == 0
    assert sim.simulator.count(200) == 30  # type: ignore[attr-defined]
    assert not (tmp_path / "in.results.csv.journal").exists()
    again = cli(*base)
    assert again.code == 0
    assert "already complete" in again.err
    assert sim.simulator.count(200) == 30  # type: ignore[attr-defined]
    closes(source, 31)  # a new night's export
    assert cli(*base).code == 0
    assert sim.simulator.count(200) == 61  # type: ignore[attr-defined]
    assert cli(*base, "--restart").code == 0
    assert sim.simulator.count(200) == 92  # type: ignore[attr-defined]


def test_a_kill_between_the_completion_mark_and_the_journal_removal_sends_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed right after the run finished (the journal not yet removed): the same call
    sends nothing again."""
    source = closes(tmp_path / "in.csv", 30)
    clock = FakeClock()

    def killed(self: Journal) -> None:
        self.close()
        raise KeyboardInterrupt  # the moment a kill -9 would land

    monkeypatch.setattr(Journal, "remove", killed)
    first = simulated_transport(SimulatorConfig(), clock=clock)
    with pytest.raises(KeyboardInterrupt):
        run_batch(source, token=TOKEN, clock=clock, transport=first)
    assert (tmp_path / "in.results.csv.journal").exists()
    monkeypatch.undo()
    second = simulated_transport(SimulatorConfig(), clock=clock)
    summary = run_batch(source, token=TOKEN, clock=clock, transport=second)
    assert second.requests == []
    assert summary.outcomes[Outcome.OK] == 30


# -- answers that hang or crawl --------------------------------------------------------------


class Trickle(httpx.AsyncBaseTransport):
    """A server that sends its 200 one byte per (virtual) second."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        async def body() -> AsyncIterator[bytes]:
            for byte in b'{"contactId": 1}' * 10:
                await anyio.sleep(1.0)
                yield bytes([byte])

        return httpx.Response(200, content=body())


def test_an_answer_trickled_byte_by_byte_times_out_as_a_whole(tmp_path: Path) -> None:
    """httpx's timeout is per read; a whole exchange is bounded by --timeout: each try ends
    after 5 s, and the row fails for no answer instead of hanging."""
    source = closes(tmp_path / "in.csv", 1)
    clock = FakeClock()
    summary = run_batch(
        source,
        settings=Settings(timeout=5.0, max_attempts=2, outage_wait=3600),
        token=TOKEN,
        clock=clock,
        transport=Trickle(),
    )
    row = read_results(tmp_path / "in.results.csv")[0]
    assert row["outcome"] == "failed"
    assert "no complete answer within 5 s" in row["error"]
    assert summary.reasons[Reason.NO_ANSWER] == 1
    assert clock.now() < 20  # two tries of 5 s and a backoff, not 160 s of trickle


def every_third_throttled() -> httpx.MockTransport:
    count = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal count
        count += 1
        if count % 3 == 0:
            return httpx.Response(429, json={"message": "Too Many Requests"},
                                  headers={"Retry-After": "1"})  # fmt: skip
        return httpx.Response(200, json={"contactId": count})

    return httpx.MockTransport(handler)


def test_a_429_every_third_answer_does_not_collapse_the_pace(tmp_path: Path) -> None:
    """A 429 on every third answer: the 60 rows end ok in about two minutes of virtual time
    at worst; the pace used to fall to 0.1/s (16 of 60 rows in 95 s)."""
    source = closes(tmp_path / "in.csv", 60)
    clock = FakeClock()
    summary = run_batch(source, token=TOKEN, clock=clock, transport=every_third_throttled())
    assert summary.outcomes[Outcome.OK] == 60
    assert clock.now() < 150


def test_a_row_answered_429_forever_ends_within_minutes(tmp_path: Path) -> None:
    """A server that answers 429 forever: the row fails as throttled within minutes, not
    the hour and more of an ever-doubling gap."""
    source = closes(tmp_path / "in.csv", 1)
    clock = FakeClock()
    transport = answering(429, b'{"message": "Too Many Requests"}', {"Retry-After": "1"})
    summary = run_batch(source, token=TOKEN, clock=clock, transport=transport)
    assert summary.reasons[Reason.THROTTLED] == 1
    assert clock.now() < 600


def test_retry_after_on_a_503_is_obeyed(tmp_path: Path) -> None:
    """A 503 with Retry-After: 20 sends the row again 20 s later, not after a short backoff."""
    source = closes(tmp_path / "in.csv", 1)
    clock = FakeClock()
    sent: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(clock.now())
        if len(sent) == 1:
            return httpx.Response(503, json={"message": "busy"}, headers={"Retry-After": "20"})
        return httpx.Response(200, json={"contactId": 1})

    summary = run_batch(source, token=TOKEN, clock=clock, transport=httpx.MockTransport(handler))
    assert summary.outcomes[Outcome.OK] == 1
    assert sent[1] - sent[0] >= 20


def test_a_retry_after_of_a_day_stops_the_run_resumably_at_once(tmp_path: Path) -> None:
    """A 429 asking to wait a day: neither hammered every second nor a silent hang; the run
    stops (exit 3, resumable) saying how long the API asked for."""
    source = closes(tmp_path / "in.csv", 10)
    clock = FakeClock()
    transport = answering(429, b'{"message": "Too Many Requests"}', {"Retry-After": "86400"})
    with pytest.raises(ApiUnreachable) as stop:
        run_batch(source, token=TOKEN, clock=clock, transport=transport)
    assert "86400 s" in str(stop.value)
    assert clock.now() < 10
    summary = stop.value.summary
    assert isinstance(summary, RunSummary)
    assert summary.outcomes[Outcome.SKIPPED] == 10
    assert summary.stop_reason is Reason.NOT_SENT_WAIT


def test_a_fifo_input_is_refused_not_waited_on(tmp_path: Path, cli: Cli, token_env: str) -> None:
    """A named pipe as input: exit 2 at once, naming it, instead of hanging."""
    fifo = tmp_path / "in.csv"
    os.mkfifo(fifo)
    done = cli("run", fifo, "--base-url", "http://127.0.0.1:9/v1")
    assert done.code == 2
    assert "not a regular file" in done.err


# -- where the token goes ---------------------------------------------------------------------


def test_a_loopback_api_is_never_reached_through_a_proxy(
    tmp_path: Path,
    cli: Cli,
    token_env: str,
    simulator: Callable[..., object],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HTTP_PROXY / ALL_PROXY set: requests to a loopback base URL go straight to it (the
    token is never handed to a proxy in clear text)."""
    with socket.socket() as dead:  # a proxy that is not there: any use of it fails
        dead.bind(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{dead.getsockname()[1]}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    sim = simulator()
    source = closes(tmp_path / "in.csv", 5)
    done = cli("run", source, "--base-url", sim.base_url, "--outage-wait", "0")  # type: ignore[attr-defined]
    assert done.code == 0
    assert sim.simulator.count(200) == 5  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "url",
    [
        "https://user:hunter2@api.example.com/v1",
        "https://api.example.com/v1?x=1",
        "https://api.example.com/v1#x",
    ],
)
def test_a_base_url_with_user_info_query_or_fragment_is_refused(
    tmp_path: Path, cli: Cli, token_env: str, url: str
) -> None:
    """A base URL holding user:password@, a query or a fragment: exit 2, and the password
    is not echoed."""
    source = closes(tmp_path / "in.csv", 1)
    done = cli("run", source, "--base-url", url)
    assert done.code == 2
    assert "only a scheme, a host, a port and a path" in done.err
    assert "hunter2" not in done.err + done.out


# -- counting honestly ----------------------------------------------------------------------


def test_a_refused_connection_is_not_an_attempt_and_says_it_never_left(tmp_path: Path) -> None:
    """Connections refused (nothing sent): attempts stays 0 and the reason says the request
    never reached the API; answers cut off after sending are told apart as no_answer."""
    source = closes(tmp_path / "in.csv", 1)

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    summary = run_batch(source, settings=Settings(max_attempts=2), token=TOKEN,
                        clock=FakeClock(), transport=httpx.MockTransport(refused))  # fmt: skip
    row = read_results(tmp_path / "in.results.csv")[0]
    assert row["attempts"] == "0"
    assert summary.reasons[Reason.NOT_CONNECTED] == 1

    def cut(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("connection reset", request=request)

    other = closes(tmp_path / "cut.csv", 1)
    summary = run_batch(other, settings=Settings(max_attempts=2), token=TOKEN,
                        clock=FakeClock(), transport=httpx.MockTransport(cut))  # fmt: skip
    row = read_results(tmp_path / "cut.results.csv")[0]
    assert row["attempts"] == "2"
    assert summary.reasons[Reason.NO_ANSWER] == 1


# -- found in review --------------------------------------------------------------------------


def test_a_state_file_that_cannot_be_written_is_a_resumable_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk on --state: StorageError (exit 3) naming the state file, not a traceback
    from an exception group; rows the API answered before are kept as answered."""
    from batcher.state import StateFile  # noqa: PLC0415

    source = closes(tmp_path / "in.csv", 40)
    remember = StateFile.remember
    calls = 0

    def filling(self: StateFile, *args: object) -> None:
        nonlocal calls
        calls += 1
        if calls > 10:
            raise sqlite3.OperationalError("database or disk is full")
        remember(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(StateFile, "remember", filling)
    settings = Settings(state_file=str(tmp_path / "spam.state"), rate=50)
    with pytest.raises(StorageError) as stop:
        run_batch(source, settings=settings, token=TOKEN, clock=FakeClock(),
                  transport=simulated_transport(SimulatorConfig()))  # fmt: skip
    assert "spam.state" in str(stop.value)
    rows = read_results(tmp_path / "in.results.csv")
    assert sum(r["outcome"] == "ok" for r in rows) == 10


@pytest.mark.parametrize("victim", ["spam.state", "in.results.csv.journal"])
def test_a_refused_run_writes_no_summary_over_the_state_or_the_journal(
    tmp_path: Path, cli: Cli, token_env: str, victim: str
) -> None:
    """--summary-json naming the state file or the results' journal: refused (exit 2), and
    the file named is left exactly as it was."""
    source = closes(tmp_path / "in.csv", 3)
    named = tmp_path / victim
    named.write_bytes(b"precious")
    done = cli("run", source, "--base-url", "http://127.0.0.1:9/v1", "--state",
               tmp_path / "spam.state", "--summary-json", named)  # fmt: skip
    assert done.code == 2
    assert named.read_bytes() == b"precious"


def test_a_journal_damaged_beyond_its_first_page_is_exit_2_not_a_traceback(
    tmp_path: Path, cli: Cli, token_env: str
) -> None:
    """A resumable journal whose pages are damaged past the first: exit 2 naming it."""
    source = closes(tmp_path / "in.csv", 2000)
    journal = Journal(tmp_path / "in.results.csv.journal")
    journal.set_meta("input_sha256", "x")
    journal.close()
    with sqlite3.connect(tmp_path / "in.results.csv.journal") as db:
        db.execute("PRAGMA journal_mode=DELETE")
        db.executemany(
            "INSERT INTO results VALUES (?, 'id:1', 'close', '', '', 'ok', 200, 1, 1, '', '[]',"
            " 'sent')",
            [(n,) for n in range(1, 2001)],
        )
    raw = bytearray((tmp_path / "in.results.csv.journal").read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 4096] = b"\xa5" * 4096
    (tmp_path / "in.results.csv.journal").write_bytes(bytes(raw))
    done = cli("run", source, "--base-url", "http://127.0.0.1:9/v1")
    assert done.code == 2
    assert "damaged" in done.err
    assert "Traceback" not in done.err


def test_a_token_echoed_at_the_edge_of_the_excerpt_is_not_half_kept(tmp_path: Path) -> None:
    """A gateway echoing the Authorization header right where the error excerpt is cut:
    no part of the token reaches the results (it used to keep 28 of 38 characters)."""
    source = closes(tmp_path / "in.csv", 1)
    token = "sk_live_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123"  # noqa: S105 - a fake token to look for

    def echo(request: httpx.Request) -> httpx.Response:
        heard = request.headers["authorization"]
        return httpx.Response(400, json={"message": "x" * 255 + " got header " + heard})

    run_batch(source, token=token, clock=FakeClock(), transport=httpx.MockTransport(echo))
    text = (tmp_path / "in.results.csv").read_text()
    assert token[:8] not in text
    assert "[token]" in text


def test_a_row_sent_before_a_stop_says_so_and_a_cut_off_request_is_counted(
    tmp_path: Path,
) -> None:
    """A row answered 500 and waiting for its retry at the deadline: skipped, and its error
    says it was sent before and what it got; rows cut off on the wire count that request."""
    source = closes(tmp_path / "in.csv", 1)
    clock = FakeClock()
    transport = answering(500, b'{"message": "boom"}')
    run_batch(source, settings=Settings(max_duration=0.2, backoff_base=5.0, backoff_max=5.0),
              token=TOKEN, clock=clock, transport=transport, rng=_Top())  # fmt: skip
    row = read_results(tmp_path / "in.results.csv")[0]
    assert row["outcome"] == "skipped"
    assert row["error"] == "not sent: deadline again (sent 1 times; the last got a 500)"

    slow = closes(tmp_path / "slow.csv", 1)

    async def never(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(3600)
        raise AssertionError("unreachable")

    run_batch(slow, settings=Settings(max_duration=1.0), token=TOKEN, clock=FakeClock(),
              transport=httpx.MockTransport(never))  # fmt: skip
    row = read_results(tmp_path / "slow.results.csv")[0]
    assert row["error"].startswith("interrupted while in flight")
    assert row["attempts"] == "1"


class _Top(random.Random):
    """Jitter at the top of its range: delays exactly as configured."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_fake_clock_waits_for_work_handed_to_an_executor() -> None:
    """Virtual time does not jump over work running in an executor (getaddrinfo,
    to_thread): a 30 s timeout around a 50 ms job does not fire."""
    import asyncio  # noqa: PLC0415
    import time  # noqa: PLC0415

    clock = FakeClock()

    async def main() -> bool:
        loop = asyncio.get_running_loop()
        with anyio.move_on_after(30) as scope:
            await loop.run_in_executor(None, time.sleep, 0.05)
        return scope.cancelled_caught

    assert clock.run(main) is False
    assert clock.now() < 30
