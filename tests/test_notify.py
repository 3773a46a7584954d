"""--notify: one POST of the summary JSON per run, never the token, never a changed exit code."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from batcher.notify import TIMEOUT, notify
from batcher.simulator import RunningSimulator
from tests.conftest import TOKEN, CliRun, Receiver, write_csv

Cli = Callable[..., CliRun]
Sim = Callable[..., RunningSimulator]
HEADER = ("identifier", "status")


def closed_port_url() -> str:
    """A loopback URL nobody listens on (a port taken from the OS and given back)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


def test_one_post_per_run_with_text_and_exit_code_and_no_token(
    tmp_path: Path, cli: Cli, simulator: Sim, token_env: str, receiver: Receiver
) -> None:
    """A run with --notify POSTs exactly once: JSON with text (the one-line summary) and
    exit_code, the same counts as the summary JSON, and no token or row data anywhere."""
    sim = simulator()
    source = write_csv(
        tmp_path / "in.csv", HEADER, [["email:ana@x.com", "open"], ["id:7", "close"]]
    )
    summary_path = tmp_path / "s.json"
    ran = cli("run", source, "--base-url", sim.base_url, "--notify", receiver.url,
              "--summary-json", summary_path, "--quiet")  # fmt: skip
    assert ran.code == 0, ran.err
    assert len(receiver.posts) == 1
    headers, body = receiver.posts[0]
    data = json.loads(body)
    assert data["exit_code"] == 0
    assert data["text"] == ran.err.strip()  # the --quiet line, as is
    assert data["text"].startswith("batcher: 2 rows in ")
    written = json.loads(summary_path.read_text())
    assert written["notify"] == {"delivered": True, "attempts": 1, "error": ""}
    assert {k: v for k, v in written.items() if k != "notify"} == {
        k: v for k, v in data.items() if k != "text"
    }
    everything = body.decode() + json.dumps(headers)
    assert TOKEN not in everything
    assert "authorization" not in {name.lower() for name in headers}
    assert "ana@x.com" not in everything
    assert "id:7" not in everything
    assert headers["Content-Type"] == "application/json"


def test_a_run_that_cannot_start_still_notifies(
    tmp_path: Path, cli: Cli, receiver: Receiver
) -> None:
    """Exit 2 (no input file) still sends one POST, saying it could not start and why."""
    ran = cli("run", tmp_path / "missing.csv", "--notify", receiver.url)
    assert ran.code == 2
    assert len(receiver.posts) == 1
    data = json.loads(receiver.posts[0][1])
    assert data["exit_code"] == 2
    assert data["text"].startswith("batcher: could not start (exit 2): ")
    assert "missing.csv" in data["text"]


def test_the_config_files_notify_url_is_used_when_the_run_cannot_start(
    tmp_path: Path, cli: Cli, receiver: Receiver
) -> None:
    """A notify_url from the config file notifies a run that could not start (no token)."""
    config = tmp_path / "job.toml"
    config.write_text(f'notify_url = "{receiver.url}"\ntoken_env = "NO_SUCH_TOKEN_VAR"\n')
    source = write_csv(tmp_path / "in.csv", HEADER, [["id:1", "open"]])
    ran = cli("run", source, "--config", config)
    assert ran.code == 2
    assert [json.loads(body)["exit_code"] for _, body in receiver.posts] == [2]


def test_a_receiver_that_is_down_changes_no_exit_code(
    tmp_path: Path, cli: Cli, simulator: Sim, token_env: str
) -> None:
    """Nobody listening: the run still exits 0, stderr says the notification failed (naming
    the host, not the URL's path), and the summary JSON records it."""
    sim = simulator()
    source = write_csv(tmp_path / "in.csv", HEADER, [["id:1", "open"]])
    summary_path = tmp_path / "s.json"
    url = closed_port_url()
    ran = cli("run", source, "--base-url", sim.base_url, "--notify", url,
              "--summary-json", summary_path)  # fmt: skip
    assert ran.code == 0, ran.err
    assert "the notification failed: http://127.0.0.1:" in ran.err
    assert "/hook" not in ran.err
    recorded = json.loads(summary_path.read_text())
    assert recorded["exit_code"] == 0
    assert recorded["notify"]["delivered"] is False
    assert recorded["notify"]["attempts"] == 3
    assert "ConnectError" in recorded["notify"]["error"]


def test_plain_http_to_another_host_is_refused_up_front(tmp_path: Path, cli: Cli) -> None:
    """--notify http://<not loopback>: exit 2 before anything is read, the URL not echoed."""
    source = write_csv(tmp_path / "in.csv", HEADER, [["id:1", "open"]])
    ran = cli("run", source, "--dry-run", "--notify", "http://hooks.example.com/T0/B0/XyZsecret")
    assert ran.code == 2
    assert "notify URL must be https://" in ran.err
    assert "XyZsecret" not in ran.err
    assert not (tmp_path / "in.dry-run.csv").exists()


class FakeTime:
    """A monotonic clock and sleep for ``notify``: sleeping and timeouts advance it."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_retries_fit_in_the_timeout_when_the_receiver_hangs() -> None:
    """A receiver that never answers: each try waits at most what is left of the 10 s, so
    the whole notification costs at most the timeout, and it reports the failure."""
    fake = FakeTime()

    def hang(request: httpx.Request) -> httpx.Response:
        fake.now += request.extensions["timeout"]["read"]
        raise httpx.ReadTimeout("timed out", request=request)

    delivery = notify("https://hooks.example.com/x", {"exit_code": 0}, "t",
                      transport=httpx.MockTransport(hang), clock=fake.clock,
                      sleep=fake.sleep)  # fmt: skip
    assert not delivery.delivered
    assert fake.now <= TIMEOUT
    assert delivery.attempts == 1
    assert "ReadTimeout" in delivery.error
    assert delivery.error.startswith("https://hooks.example.com: gave up after 10 s")


@pytest.mark.parametrize(("status", "attempts"), [(500, 3), (429, 3), (404, 1), (400, 1)])
def test_retries_only_what_may_pass(status: int, attempts: int) -> None:
    """5xx and 429 are tried three times in all (two retries); a 4xx refusal once."""
    fake = FakeTime()
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(status)

    delivery = notify("https://hooks.example.com/x", {"exit_code": 1}, "t",
                      transport=httpx.MockTransport(answer), clock=fake.clock,
                      sleep=fake.sleep)  # fmt: skip
    assert len(sent) == attempts == delivery.attempts
    assert not delivery.delivered
    assert f"answered {status}" in delivery.error
    assert fake.now <= TIMEOUT


def test_a_loopback_receiver_ignores_proxy_settings(
    monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    """HTTP_PROXY pointing nowhere does not stop a notification to 127.0.0.1."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, closed_port_url())
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    delivery = notify(receiver.url, {"exit_code": 0}, "hello")
    assert delivery.delivered
    assert json.loads(receiver.posts[0][1]) == {"exit_code": 0, "text": "hello"}
