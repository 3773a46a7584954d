"""The token is never in stdout, stderr, the results, journal, log, summary or failed-out
files, an exception or a traceback: failing runs in-process and as real processes."""

from __future__ import annotations

import base64
import io
import os
import socket
import subprocess
import sys
import traceback
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from batcher import AuthenticationFailed, Settings, run_batch
from batcher.cli import main
from batcher.client import AelystClient
from batcher.models import Secret
from batcher.simulator import RunningSimulator
from tests.conftest import CliRun, write_csv

Cli = Callable[..., CliRun]
Sim = Callable[..., RunningSimulator]

#: Distinctive, and changed by URL-encoding (/ + = ? & %), so every encoded form differs.
SECRET = "tok/Q7+zx=LEAK9f3b1c?&%-w"  # noqa: S105 - a fake token the tests grep for
#: A piece of the token no encoding or escaping would leave out.
CORE = "LEAK9f3b1c"
#: The only token a simulator that must answer 401 accepts.
OTHER_TOKEN = "someone-elses-token"  # noqa: S105 - fake
HEADER = ("identifier", "status", "category", "summary", "note")
ROWS = [[f"id:{n}", "close", "Spam", "bot", f"n{n}"] for n in range(1, 9)]
INVALID_ROWS = [["phone:6.01E+10", "close", "", "", "x"], ["bad", "open", "Spam", "", "y"]]


def leaked_forms(token: str) -> dict[str, bytes]:
    """The token as it could appear: plain, escaped, URL-encoded, and base64 at any alignment
    (so "Bearer <token>" or "user:<token>" encoded whole is caught too)."""
    raw = token.encode()
    forms = {
        "plain": raw,
        "core": CORE.encode() if CORE in token else raw,
        "repr": repr(token)[1:-1].encode(),
        "url": quote(token, safe="").encode(),
        "url-plus": quote_plus(token).encode(),
    }
    for offset in range(3):
        padded = b"\0" * offset + raw
        # The middle of the encoding depends only on the token's own bytes.
        forms[f"base64+{offset}"] = base64.b64encode(padded)[4:-4]
        forms[f"urlsafe-base64+{offset}"] = base64.urlsafe_b64encode(padded)[4:-4]
    return forms


def assert_no_leak(token: str, where: str, data: bytes) -> None:
    for form, needle in leaked_forms(token).items():
        assert needle not in data, f"the token ({form}) is in {where}"


def assert_no_leak_anywhere(token: str, out: str, err: str, folder: Path) -> None:
    """Neither output stream nor any file under ``folder`` holds the token in any form."""
    assert_no_leak(token, "stdout", out.encode())
    assert_no_leak(token, "stderr", err.encode())
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert files  # there is something to look at
    for path in files:
        assert_no_leak(token, str(path.relative_to(folder)), path.read_bytes())


def free_port() -> int:
    """A 127.0.0.1 port nothing listens on (it was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def in_process(args: list[str]) -> CliRun:
    """batcher in this process; an exception that escapes ``main`` becomes its traceback."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(args)
        except Exception:  # the traceback is what the test greps
            traceback.print_exc()
            code = 1
    return CliRun(code, out.getvalue(), err.getvalue())


def as_process(args: list[str], cwd: Path, token: str) -> CliRun:
    """batcher as a cron job runs it, at its most talkative: dev mode and asyncio debug on."""
    env = {**os.environ, "AELYST_API_TOKEN": token, "PYTHONDEVMODE": "1", "PYTHONASYNCIODEBUG": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "batcher", *args],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return CliRun(done.returncode, done.stdout, done.stderr)


#: name -> (simulator settings, or None for a base URL nothing listens on; extra arguments;
#: what the input is; the exit code, or None for "not 0")
SCENARIOS: dict[str, tuple[dict[str, object] | None, tuple[str, ...], str, int | None]] = {
    "401-mid-run": ({"token": SECRET, "revoke_after": 3}, (), "rows", 3),
    "401-mid-run-quiet": ({"token": SECRET, "revoke_after": 2}, ("--quiet",), "rows", 3),
    "wrong-token": ({"token": OTHER_TOKEN}, (), "rows", 3),
    "500s-retries-exhausted": ({"error_rate": 1.0}, ("--max-attempts", "2"), "rows", 1),
    # An API that never answers is an outage: the run stops (exit 3) quoting the last error.
    "dropped-connections": ({"drop_rate": 1.0}, ("--outage-wait", "0"), "rows", 3),
    "connection-refused": (None, ("--outage-wait", "0"), "rows", 3),
    "invalid-rows": ({}, (), "invalid rows", 1),
    "dry-run": ({}, ("--dry-run",), "rows", 0),
    "input-is-a-folder": ({}, (), "a folder", 2),
    "input-not-utf8": ({}, (), "latin-1", 2),
    # Today an uncaught exception once the rows are sent (the results file cannot be renamed
    # over a folder): whatever it becomes, its traceback must not hold the token.
    "results-path-is-a-folder": ({}, (), "rows, results path a folder", None),
}


@pytest.mark.parametrize("mode", ["in-process", "subprocess"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_token_never_leaks_from_a_failing_run(
    tmp_path: Path,
    simulator: Sim,
    monkeypatch: pytest.MonkeyPatch,
    scenario: str,
    mode: str,
) -> None:
    """A failing run (401, 500s, drops, refused connection, invalid rows, dry run, unreadable
    input, an exception) with --log-file, --summary-json and --failed-out: no form of the token
    in stdout, stderr or any file it leaves."""
    config, extra, given, expected = SCENARIOS[scenario]
    base_url = simulator(**config).base_url if config is not None else ""
    base_url = base_url or f"http://127.0.0.1:{free_port()}/v1"
    source = write_csv(tmp_path / "in.csv", HEADER, ROWS)
    results = tmp_path / "results.csv"
    if given == "invalid rows":
        write_csv(source, HEADER, [*ROWS[:2], *INVALID_ROWS])
    elif given == "a folder":
        source = tmp_path / "folder.csv"
        source.mkdir()
    elif given == "latin-1":
        source.write_bytes(b"identifier,status\nid:1,close\nid:2,caf\xe9\n")
    elif given.endswith("results path a folder"):
        results.mkdir()
    fast = tmp_path / "fast.toml"
    fast.write_text("start_rate = 400.0\nbackoff_base = 0.01\nbackoff_max = 0.05\n")
    argv = ["run", str(source), "--out", str(results), "--base-url", base_url]
    argv += ["--config", str(fast), "--no-progress", "--log-file", str(tmp_path / "log.jsonl")]
    argv += ["--summary-json", str(tmp_path / "summary.json")]
    argv += ["--failed-out", str(tmp_path / "again.csv"), *extra]
    if mode == "in-process":
        monkeypatch.setenv("AELYST_API_TOKEN", SECRET)
        monkeypatch.chdir(tmp_path)
        result = in_process(argv)
    else:
        result = as_process(argv, tmp_path, SECRET)
    if expected is None:
        assert result.code != 0
    else:
        assert result.code == expected, result.err
    if expected in (1, 3):  # the run went ahead: there are files to grep
        assert results.is_file()
        assert (tmp_path / "log.jsonl").is_file()
        assert (tmp_path / "summary.json").is_file()
    if expected == 3:  # kept for a resume
        assert (tmp_path / "results.csv.journal").is_file()
    assert_no_leak_anywhere(SECRET, result.out, result.err, tmp_path)


def test_leak_check_would_see_the_token(tmp_path: Path) -> None:
    """The grep itself works: the token, its URL-encoded form and a base64 "Bearer" header
    written into a file are each caught."""
    encoded = base64.b64encode(f"Bearer {SECRET}".encode())
    for data in (SECRET.encode(), quote(SECRET, safe="").encode(), b"Authorization: " + encoded):
        (tmp_path / "f.txt").write_bytes(b"x" + data + b"y")
        with pytest.raises(AssertionError, match="the token"):
            assert_no_leak_anywhere(SECRET, "", "", tmp_path)


def test_library_errors_and_reprs_never_hold_the_token(tmp_path: Path, simulator: Sim) -> None:
    """run_batch's AuthenticationFailed (message, repr, traceback, summary) and the client's
    and settings' reprs never hold the token."""
    sim = simulator(token=OTHER_TOKEN)
    source = write_csv(tmp_path / "in.csv", HEADER, ROWS)
    settings = Settings(base_url=sim.base_url, start_rate=400.0)
    with pytest.raises(AuthenticationFailed) as caught:
        run_batch(source, out=tmp_path / "results.csv", settings=settings, token=SECRET)
    exc = caught.value
    text = "".join(traceback.format_exception(exc)) + repr(exc) + repr(exc.summary)
    text += repr(AelystClient(sim.base_url, Secret(SECRET))) + repr(settings)
    assert_no_leak(SECRET, "the exception", text.encode())
    assert "AELYST_API_TOKEN" in str(exc)
    assert_no_leak_anywhere(SECRET, "", "", tmp_path)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604], ids=["world", "group", "others"])
def test_token_file_readable_by_others_is_refused(
    tmp_path: Path, cli: Cli, simulator: Sim, mode: int
) -> None:
    """A token_file others can read: exit 2 saying chmod 600, the token not in the message,
    nothing sent; the same file made private works."""
    sim = simulator(token=SECRET)
    # The token file is the one place the token may be: it lives outside the folder grepped.
    (tmp_path / "secret").mkdir()
    token_file = tmp_path / "secret" / "token"
    token_file.write_text(SECRET + "\n")
    token_file.chmod(mode)
    work = tmp_path / "run"
    work.mkdir()
    config = work / "config.toml"
    config.write_text(f'token_file = "{token_file}"\ntoken_env = "BATCHER_TEST_NO_SUCH_VAR"\n')
    source = write_csv(work / "in.csv", HEADER, ROWS[:2])
    args = ("run", source, "--base-url", sim.base_url, "--config", config, "--no-progress")
    refused = cli(*args, "--summary-json", work / "summary.json")
    assert refused.code == 2
    assert "chmod 600" in refused.err
    assert sim.simulator.requests == []
    assert not (work / "in.results.csv").exists()
    assert_no_leak_anywhere(SECRET, refused.out, refused.err, work)

    token_file.chmod(0o600)
    accepted = cli(*args, "--log-file", work / "log.jsonl")
    assert accepted.code == 0, accepted.err
    assert len(sim.simulator.requests) == 2
    assert_no_leak_anywhere(SECRET, accepted.out, accepted.err, work)


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(
            "tok-line-one-LEAK9f3b1c\nline-two-LEAK9f3b1c",
            id="newline",
        ),
        pytest.param("tok-café-LEAK9f3b1c", id="non-ascii"),
    ],
)
def test_token_that_is_no_header_value_never_leaks(
    tmp_path: Path, simulator: Sim, monkeypatch: pytest.MonkeyPatch, token: str
) -> None:
    """A token with a character an HTTP header cannot carry (a token file's second line, an
    accented letter): whatever the run does, the token is in no output and no file."""
    sim = simulator()
    source = write_csv(tmp_path / "in.csv", HEADER, ROWS[:2])
    monkeypatch.setenv("AELYST_API_TOKEN", token)
    monkeypatch.chdir(tmp_path)
    log = tmp_path / "log.jsonl"
    args = ["run", str(source), "--base-url", sim.base_url, "--no-progress"]
    result = in_process([*args, "--max-attempts", "1", "--log-file", str(log)])
    assert result.code != 0
    for part in token.split("\n"):
        assert_no_leak(part, "stderr", result.err.encode())
        assert_no_leak_anywhere(part, result.out, result.err, tmp_path)


@pytest.mark.parametrize("token", ["tok-a\ntok-b", "tok-café"], ids=["newline", "non-ascii"])
def test_token_that_is_no_header_value_is_refused_up_front(
    tmp_path: Path, cli: Cli, simulator: Sim, monkeypatch: pytest.MonkeyPatch, token: str
) -> None:
    """A token an HTTP header cannot carry: exit 2 before anything is sent, naming the
    variable, not the token."""
    sim = simulator()
    source = write_csv(tmp_path / "in.csv", HEADER, ROWS[:2])
    monkeypatch.setenv("AELYST_API_TOKEN", token)
    result = cli("run", source, "--base-url", sim.base_url, "--no-progress", "--max-attempts", "1")
    assert result.code == 2
    assert "AELYST_API_TOKEN" in result.err
    assert sim.simulator.requests == []
