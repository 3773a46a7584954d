"""Killing, interrupting and resuming real `batcher run` processes against the simulator."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from batcher.simulator import RunningSimulator
from tests.conftest import TOKEN, read_results, write_csv

Sim = Callable[..., RunningSimulator]
HEADER = ("identifier", "status")
CONCURRENCY = 8


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Every batcher process a test starts is killed by its pid at the end, whatever happens."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)  # reaps it and closes its pipes


def start_batcher(
    processes: list[subprocess.Popen[str]], source: Path, base_url: str, *extra: str
) -> subprocess.Popen[str]:
    env = {**os.environ, "AELYST_API_TOKEN": TOKEN}
    args = [sys.executable, "-m", "batcher", "run", str(source), "--base-url", base_url]
    args += ["--no-progress", "--concurrency", str(CONCURRENCY), *extra]
    process = subprocess.Popen(
        args,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    processes.append(process)
    return process


def wait_for_requests(sim: RunningSimulator, at_least: int, timeout: float = 30) -> None:
    """Wait (bounded) until the simulator has seen ``at_least`` requests."""
    deadline = time.monotonic() + timeout
    while len(sim.simulator.requests) < at_least:
        assert time.monotonic() < deadline, "batcher did not start sending"
        time.sleep(0.01)


def test_five_kills_then_resume_give_complete_results(
    tmp_path: Path, simulator: Sim, processes: list[subprocess.Popen[str]]
) -> None:
    """Five SIGKILLs at random points of a 2,000-row run, each resumed: every row once, ok."""
    rows = 2000
    sim = simulator()
    source = write_csv(tmp_path / "in.csv", HEADER, [[f"id:{i}", "close"] for i in range(1, 2001)])
    pace = ("--rate", "400", "--config", str(tmp_path / "c.toml"))
    (tmp_path / "c.toml").write_text("start_rate = 400.0\n")
    chooser = random.Random(20261124)
    kills = 0
    for _ in range(5):
        process = start_batcher(processes, source, sim.base_url, *pace)
        # Kill somewhere between the first requests and well before the end.
        seen = len(sim.simulator.requests)
        wait_for_requests(sim, seen + chooser.randint(1, 300))
        process.kill()
        process.communicate(timeout=30)
        kills += 1
    final = start_batcher(processes, source, sim.base_url, *pace)
    _, err = final.communicate(timeout=120)
    assert final.returncode == 0, err

    got = read_results(tmp_path / "in.results.csv")
    assert [int(r["row"]) for r in got] == list(range(1, rows + 1))
    assert {r["outcome"] for r in got} == {"ok"}
    requests = sim.simulator.requests
    sends = Counter(r.identifier for r in requests)
    assert set(sends) == {f"id:{i}" for i in range(1, rows + 1)}
    # Only rows in flight at a kill may have been sent twice: at most CONCURRENCY per kill.
    assert len(requests) - rows <= kills * CONCURRENCY
    assert max(sends.values()) <= 1 + kills
    # Every ok row matches a 200 the server really gave, with its contactId.
    given = {r.identifier: r.contact_id for r in requests if r.status == 200}
    assert all(given[r["identifier"]] == int(r["contact_id"]) for r in got)
    assert not (tmp_path / "in.results.csv.journal").exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_cleanly_and_the_same_command_resumes(
    tmp_path: Path, simulator: Sim, processes: list[subprocess.Popen[str]], signum: int
) -> None:
    """SIGTERM/SIGINT: exit 3, every row listed, unsent rows skipped, resume sends the rest."""
    sim = simulator()
    source = write_csv(tmp_path / "in.csv", HEADER, [[f"id:{i}", "open"] for i in range(1, 301)])
    process = start_batcher(processes, source, sim.base_url, "--rate", "50")
    wait_for_requests(sim, 10)
    process.send_signal(signum)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 3, err
    assert "interrupted" in err
    assert "to resume: batcher run" in err
    got = read_results(tmp_path / "in.results.csv")
    assert [int(r["row"]) for r in got] == list(range(1, 301))
    outcomes = Counter(r["outcome"] for r in got)
    assert outcomes["ok"] >= 10
    assert outcomes["ok"] + outcomes["skipped"] == 300
    assert {r["error"] for r in got if r["outcome"] == "skipped"} <= {
        "not sent: interrupted",
        "interrupted while in flight (the call may have been applied)",
    }
    sent_before = len(sim.simulator.requests)
    assert outcomes["ok"] == sim.simulator.count(200)

    (tmp_path / "c.toml").write_text("start_rate = 400.0\n")
    again = start_batcher(processes, source, sim.base_url, "--config", str(tmp_path / "c.toml"))
    _, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    got = read_results(tmp_path / "in.results.csv")
    assert {r["outcome"] for r in got} == {"ok"}
    assert len(sim.simulator.requests) - sent_before == outcomes["skipped"]


def test_second_ctrl_c_stops_at_once_without_corrupting_files(
    tmp_path: Path, simulator: Sim, processes: list[subprocess.Popen[str]]
) -> None:
    """Two SIGINTs with answers slower than the wait between them: exit 3, the results list
    every row, and the requests on the wire were cut off, not waited for."""
    sim = simulator(latency=3.0)
    source = write_csv(tmp_path / "in.csv", HEADER, [[f"id:{i}", "open"] for i in range(1, 101)])
    config = tmp_path / "c.toml"
    config.write_text("start_rate = 100.0\n")  # the first CONCURRENCY requests go at once
    process = start_batcher(
        processes, source, sim.base_url, "--rate", "100", "--config", str(config)
    )
    wait_for_requests(sim, CONCURRENCY)
    process.send_signal(signal.SIGINT)
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 3, err
    got = read_results(tmp_path / "in.results.csv")
    assert [int(r["row"]) for r in got] == list(range(1, 101))
    # One SIGINT would have let the 3 s answers arrive within the 5 s grace (ok rows); only a
    # second one cuts them off. How promptly, in virtual time: tests/test_lifecycle.py.
    in_flight = [r for r in got if r["error"].startswith("interrupted while in flight")]
    assert 1 <= len(in_flight) <= CONCURRENCY
