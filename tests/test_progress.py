"""The progress bar: what its counts say, where it starts on a resume, that a stop does not
fill it, and, on a real terminal, that the plan stands on its own lines before it."""

from __future__ import annotations

import fcntl
import io
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from batcher import AuthenticationFailed, Outcome, Settings, run_batch
from batcher.progress import BarProgress, Status, bar_text
from batcher.simulator import RunningSimulator
from tests.conftest import TOKEN, read_results, write_csv

Sim = Callable[..., RunningSimulator]
HEADER = ("identifier", "status")


def test_bar_text_names_each_count() -> None:
    """The counts say what they are: `449 waiting 3 · retrying 2`, then the next due time."""
    text = bar_text(
        Status(pace=19.6, requeued=3, retrying=2, due_in=4.2, paused_for=0.0), ok=120, failed=1
    )
    assert text == "19.6 req/s · ok 120 · failed 1 · 449 waiting 3 · retrying 2 · next in 4s"


def test_bar_text_shows_waits_only_while_something_waits() -> None:
    """Nothing set aside: no 449 count, no retry count, no `next in`."""
    text = bar_text(
        Status(pace=5.0, requeued=0, retrying=0, due_in=0.0, paused_for=0.0), ok=5, failed=0
    )
    assert text == "5.0 req/s · ok 5 · failed 0"
    assert "449" not in text
    assert "next in" not in text


def test_bar_text_after_connection_errors_says_retrying_not_449() -> None:
    """Rows backing off after connection errors are `retrying`; no 449 is claimed."""
    text = bar_text(
        Status(pace=5.0, requeued=0, retrying=4, due_in=1.0, paused_for=0.0), ok=0, failed=0
    )
    assert "retrying 4" in text
    assert "449" not in text
    assert "next in 1s" in text


def test_bar_text_shows_an_outage_and_a_429_pause() -> None:
    """An outage leads the text while it lasts; a 429 pause is named."""
    outage = "API unreachable since 02:13:05, next try in 8 s"
    text = bar_text(
        Status(pace=5.0, requeued=0, retrying=0, due_in=0.0, paused_for=2.0, outage=outage),
        ok=1,
        failed=0,
    )
    assert text.startswith(outage + " · ")
    assert "paused 2.0s (429)" in text


def test_bar_appears_at_start_and_a_resumed_bar_starts_at_rows_done() -> None:
    """Nothing is drawn before start(); a resumed run's bar starts at the rows already done
    and reaches 100 % when the rest are done."""
    stream = io.StringIO()
    bar = BarProgress(stream)
    bar.note("plan: 6 rows to send")
    assert stream.getvalue() == "batcher: plan: 6 rows to send\n"
    bar.start(10, 4)
    assert " 4/10 " in stream.getvalue()
    for _ in range(6):
        bar.advance(Outcome.OK)
    bar.close()
    assert "100%" in stream.getvalue()
    assert "10/10" in stream.getvalue()
    assert stream.getvalue().rstrip().endswith("ok 6 · failed 0]")  # the final counts


class CountingProgress:
    """A Progress that remembers where its bar started and how far it moved."""

    def __init__(self) -> None:
        self.total = -1
        self.done = -1
        self.advanced = 0

    def start(self, total: int, done: int) -> None:
        self.total, self.done = total, done

    def advance(self, outcome: Outcome) -> None:
        self.advanced += 1

    def note(self, message: str) -> None:
        pass

    def show(self, status: Status) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_stopped_run_does_not_fill_the_bar_and_its_resume_ends_at_100(tmp_path: Path) -> None:
    """Rows a stop leaves unsent do not move the bar (no jump to 100 %); the resumed run's
    bar starts at the rows already done and ends exactly at the total."""
    source = write_csv(tmp_path / "in.csv", HEADER, [[f"id:{n}", "close"] for n in range(1, 21)])
    sent: list[int] = []

    def revoked_at_third(request: httpx.Request) -> httpx.Response:
        sent.append(1)
        if len(sent) == 3:
            return httpx.Response(401, json={"message": "Unauthorized"})
        return httpx.Response(200, json={"contactId": len(sent)})

    settings = Settings(base_url="http://127.0.0.1:9/v1", start_rate=1000.0, concurrency=1)
    first = CountingProgress()
    with pytest.raises(AuthenticationFailed):
        run_batch(source, settings=settings, token="test-token-1", progress=first,
                  transport=httpx.MockTransport(revoked_at_third))  # fmt: skip
    assert (first.total, first.done) == (20, 0)
    assert first.advanced == 3  # two ok and the 401; not the 17 rows never sent
    ok_before = sum(r["outcome"] == "ok" for r in read_results(tmp_path / "in.results.csv"))

    def fine(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"contactId": 1})

    second = CountingProgress()
    run_batch(source, settings=settings, token="test-token-1", progress=second,
              transport=httpx.MockTransport(fine))  # fmt: skip
    assert second.total == 20
    assert second.done == ok_before
    assert second.done + second.advanced == second.total


# -- on a real terminal ------------------------------------------------------------------------


def on_a_terminal(
    args: list[str], *, cwd: Path, timeout: float = 60.0, size: tuple[int, int] = (100, 24)
) -> str:
    """Run ``args`` with stdout and stderr on a pseudo-terminal of ``size`` (columns, rows);
    return the raw bytes it wrote, as text. Bounded by ``timeout``; the process is killed by
    its pid."""
    master, slave = os.openpty()
    columns, rows = size
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    env = {**os.environ, "AELYST_API_TOKEN": TOKEN, "TERM": "xterm"}
    env.pop("COLUMNS", None)
    process = subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, cwd=cwd, env=env
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        assert process.wait(timeout=max(1.0, deadline - time.monotonic())) is not None
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        os.close(master)
    return b"".join(chunks).decode("utf-8", errors="replace")


def test_on_a_terminal_the_plan_comes_before_the_bar_and_a_resume_ends_at_100(
    tmp_path: Path, simulator: Sim
) -> None:
    """Under a terminal, `batcher: plan` starts a line before any bar output; after a 401
    stop, the resumed run's bar starts at the rows done and ends at 100 %."""
    rows = [[f"id:{n}", "close"] for n in range(1, 41)]
    source = write_csv(tmp_path / "in.csv", HEADER, rows)
    config = tmp_path / "fast.toml"
    config.write_text("start_rate = 400.0\nbackoff_base = 0.01\nbackoff_max = 0.05\n")
    command = [sys.executable, "-m", "batcher", "run", str(source), "--config", str(config)]

    revoking = simulator(token=TOKEN, revoke_after=10)
    first = on_a_terminal([*command, "--base-url", revoking.base_url], cwd=tmp_path)
    assert re.search(r"(^|\n)batcher: plan: 40 rows to send", first), first
    assert "%|" in first, first
    assert first.index("batcher: plan") < first.index("%|")
    assert "stopped" in first or "401" in first
    done = sum(r["outcome"] == "ok" for r in read_results(tmp_path / "in.results.csv"))
    assert 0 < done < 40
    assert "100%" not in first  # the unsent rows did not fill the bar

    good = simulator(token=TOKEN)
    second = on_a_terminal([*command, "--base-url", good.base_url], cwd=tmp_path)
    assert re.search(r"(^|\n)batcher: plan: ", second), second
    assert second.index("batcher: plan") < second.index("%|")
    bars = re.findall(r"(\d+)%\|[^\r\n]*?\| *(\d+)/(\d+)", second)
    assert bars, second
    assert (int(bars[0][1]), int(bars[0][2])) == (done, 40)  # starts at the rows done
    assert bars[-1] == ("100", "40", "40")
    assert {r["outcome"] for r in read_results(tmp_path / "in.results.csv")} == {"ok"}


def test_a_terminal_that_reports_no_width_still_gets_a_bar(tmp_path: Path) -> None:
    """A pseudo-terminal of 0x0 (as under `script` without a terminal around it) still shows
    the bar, at a fixed size, instead of an empty line."""
    code = (
        "import sys\n"
        "from batcher.models import Outcome\n"
        "from batcher.progress import make_progress\n"
        "bar = make_progress(True)\n"
        "bar.start(10, 3)\n"
        "bar.advance(Outcome.OK)\n"
        "bar.close()\n"
    )
    raw = on_a_terminal([sys.executable, "-c", code], cwd=tmp_path, size=(0, 0))
    assert "%|" in raw, repr(raw)
    assert "4/10" in raw
