"""`batcher run` end to end: the CLI in-process against the simulator as a real server."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from batcher import Outcome, Settings, run_batch
from batcher.lock import RunLock
from batcher.models import RESULT_COLUMNS
from batcher.progress import NullProgress
from batcher.simulator import RunningSimulator
from tests.conftest import TOKEN, CliRun, read_results, write_csv

Cli = Callable[..., CliRun]
Sim = Callable[..., RunningSimulator]


@pytest.fixture
def fast(tmp_path: Path) -> Path:
    """A config file that starts fast and backs off briefly, so tests take little time."""
    path = tmp_path / "fast.toml"
    path.write_text("start_rate = 400.0\nbackoff_base = 0.01\nbackoff_max = 0.05\n")
    return path


def ids(n: int, start: int = 100) -> list[list[str]]:
    return [[f"id:{start + i}", "close", "Spam", "bot"] for i in range(n)]


HEADER = ("identifier", "status", "category", "summary")


def test_every_row_exactly_once_in_order(
    tmp_path: Path, cli: Cli, simulator: Sim, token_env: str, fast: Path
) -> None:
    """A 2,000-row file against the simulator: every row once, in input order, ok, with its id."""
    sim = simulator()
    source = write_csv(tmp_path / "in.csv", HEADER, ids(2000))
    result = cli("run", source, "--base-url", sim.base_url, "--config", fast, "--no-progress")
    assert result.code == 0, result.err
    rows = read_results(tmp_path / "in.results.csv")
    assert [int(r["row"]) for r in rows] == list(range(1, 2001))
    assert all(r["outcome"] == "ok" and r["http_status"] == "200" for r in rows)
    assert [r["contact_id"] for r in rows] == [str(100 + i) for i in range(2000)]
    assert sim.simulator.count(200) == 2000
    assert len(sim.simulator.requests) == 2000
    assert not (tmp_path / "in.results.csv.journal").exists()


def test_results_columns_and_extras_carried_through(
    tmp_path: Path, cli: Cli, simulator: Sim, token_env: str, fast: Path
) -> None:
    """The results file has the contract's columns in order, then the input's extra columns."""
    sim = simulator()
    source = write_csv(
        tmp_path / "in.csv",
        ("ticket", "Identifier", "STATUS", "note"),
        [["T-1", "id:5", "open", "NA"], ["T-2", "email:a+b/c?d#e%f@x.com", "close", ""]],
    )
    out = tmp_path / "custom.csv"
    result = cli("run", source, "--base-url", sim.base_url, "--out", out, "--config", fast)
    assert result.code == 0, result.err
    header = out.read_text().splitlines()[0].split(",")
    assert header == [*RESULT_COLUMNS, "ticket", "note"]
    rows = read_results(out)
    assert (rows[0]["ticket"], rows[0]["note"]) == ("T-1", "NA")
    assert rows[1]["identifier"] == "email:a+b/c?d#e%f@x.com"
    # The server saw the email as one path segment that decodes back to itself.
    by_identifier = {r.identifier: r for r in sim.simulator.requests}
    assert set(by_identifier) == {"id:5", "email:a+b/c?d#e%f@x.com"}
    assert "%2B" in by_identifier["email:a+b/c?d#e%f@x.com"].raw_path


def test_each_outcome_matches_what_the_server_answered(
    tmp_path: Path, cli: Cli, simulator: Sim, token_env: str, fast: Path
) -> None:
    """ok, invalid, failed (404, blocked 400, 500s), skipped duplicate: one outcome per row."""
    sim = simulator(error_rate=0.0)
    rows = [
        ["id:1", "close", "Spam", "bot"],  # ok
        ["id:2", "closed", "", ""],  # invalid status
        ["email:unknown@x.com", "close", "", ""],  # 404
        ["email:blocked@x.com", "open", "", ""],  # 400 blocked
        ["id:1", "close", "Spam", "bot"],  # duplicate of row 1
        ["phone:6.01E+10", "close", "", ""],  # spreadsheet damage
        ["id:3", "open", "", "a summary"],  # summary on open
    ]
    source = write_csv(tmp_path / "in.csv", HEADER, rows)
    result = cli("run", source, "--base-url", sim.base_url, "--config", fast, "--no-progress")
    assert result.code == 1
    got = read_results(tmp_path / "in.results.csv")
    assert [r["outcome"] for r in got] == [
        "ok", "invalid", "failed", "failed", "skipped", "invalid", "invalid",
    ]  # fmt: skip
    assert got[1]["error"].startswith("status: 'closed'")
    assert got[2]["http_status"] == "404"
    assert got[2]["error"] == "404 Contact not found"
    assert got[3]["error"] == "400 Contact is blocked"
    assert got[4]["error"] == "duplicate of row 1"
    assert "spreadsheet" in got[5]["error"]
    # Invalid rows and the duplicate were never sent (arrival order varies with concurrency).
    assert sorted(r.identifier for r in sim.simulator.requests) == [
        "email:blocked@x.com", "email:unknown@x.com", "id:1",
    ]  # fmt: skip
    assert "ok 1" in result.err
    assert "invalid 3" in result.err


def test_retryable_errors_exhaust_max_attempts(
    tmp_path: Path, cli: Cli, simulator: Sim, token_env: str, fast: Path
) -> None:
    """A row answered 500 every time is failed after --max-attempts tries, with the last error."""
    sim = simulator(error_rate=1.0)
    source = write_csv(tmp_path / "in.csv", HEADER, ids(2))
    args = ("--base-url", sim.base_url, "--config", fast, "--max-attempts", "3")
    result = cli("run", source, *args)
    assert result.code == 1
    got = read_results(tmp_path / "in.results.csv")
    assert [r["outcome"] for r in got] == ["failed", "failed"]
    assert got[0]["attempts"] == "3"
    assert got[0]["error"].startswith("retries exhausted after 3 attempts: 500 Unexpected")
    assert sim.simulator.count(500) == 6


def test_dropped_connections_and_500s_are_retried_to_ok(
    tmp_path: Path, cli: Cli, simulator: Sim, token_env: str, fast: Path
) -> None:
    """With some 500s and dropped connections, every row still ends ok."""
    sim = simulator(error_rate=0.1, drop_rate=0.1, seed=3)
    source = write_csv(tmp_path / "in.csv", HEADER, ids(200))
    # 10 tries: the chance that one of 200 rows fails them all is 2e-5.
    args = ("--base-url", sim.base_url, "--config", fast, "--max-attempts", "10")
    result = cli("run", source, *args)
    assert result.code == 0, result.err
    got = read_results(tmp_path / "in.results.csv")
    assert {r["outcome"] for r in got} == {"ok"}
    assert sim.simulator.count(500) > 0
    assert sim.simulator.count(0) > 0
    assert "no answer x" in result.err
    retried = [r for r in got if int(r["attempts"]) > 1]
    assert retried


def test_449_is_requeued_then_ok_or_deferred(
    tmp_path: Path, cli: Cli, simulator: Sim, token_env: str, fast: Path
) -> None:
    """449 rows are set aside and sent again; still 449 after --max-requeues: deferred."""
    sim = simulator(queue_share=1.0, queue_hold=0.25)
    source = write_csv(tmp_path / "in.csv", HEADER, ids(3))
    args = ("--base-url", sim.base_url, "--config", fast, "--requeue-delay", "0.1")
    result = cli("run", source, *args, "--max-requeues", "10")
    assert result.code == 0, result.err
    assert {r["outcome"] for r in read_results(tmp_path / "in.results.csv")} == {"ok"}
    assert sim.simulator.count(449) >= 3

    sim2 = simulator(queue_share=1.0, queue_hold=60)
    out = tmp_path / "deferred.csv"
    args = ("--base-url", sim2.base_url, "--config", fast, "--requeue-delay", "0.05")
    result = cli("run", source, *args, "--max-requeues", "2", "--out", out)
    assert result.code == 1
    got = read_results(out)
    assert {r["outcome"] for r in got} == {"deferred"}
    assert got[0]["attempts"] == "3"
    assert got[0]["http_status"] == "449"
    assert "449" in got[0]["error"]


def test_429_waits_and_resends_without_failing(
    tmp_path: Path, cli: Cli, simulator: Sim, token_env: str
) -> None:
    """Over a shared limit the run is paced by the headers; any 429 is resent, never failed."""
    sim = simulator(shared_limit=10)
    source = write_csv(tmp_path / "in.csv", HEADER, ids(25))
    config = tmp_path / "burst.toml"
    config.write_text("start_rate = 40.0\n")  # start faster than the limit: 429s will come
    result = cli("run", source, "--base-url", sim.base_url, "--config", config)
    assert result.code == 0, result.err
    got = read_results(tmp_path / "in.results.csv")
    assert {r["outcome"] for r in got} == {"ok"}
    assert sim.simulator.count(200) == 25


def test_same_contact_rows_apply_in_file_order(
    tmp_path: Path, cli: Cli, simulator: Sim, token_env: str, fast: Path
) -> None:
    """open then close on one contact ends closed, close then open ends open, under concurrency."""
    sim = simulator(latency=0.01)
    rows = []
    for i in range(40):
        rows.append([f"id:{i + 1}", "open", "", ""])
        rows.append([f"id:{i + 1}", "close", "", ""])
        rows.append([f"id:{i + 501}", "close", "", ""])
        rows.append([f"id:{i + 501}", "open", "", ""])
    source = write_csv(tmp_path / "in.csv", HEADER, rows)
    args = ("--base-url", sim.base_url, "--config", fast, "--concurrency", "16")
    result = cli("run", source, *args)
    assert result.code == 0, result.err
    statuses = sim.simulator.statuses
    assert all(statuses[f"id:{i + 1}"] == "closed" for i in range(40))
    assert all(statuses[f"id:{i + 501}"] == "open" for i in range(40))


# A 401 while other workers wait out a long 429 pause, and the grace period after any stop,
# are proven in virtual time in tests/test_lifecycle.py.
def test_401_stops_at_once_and_marks_the_rest_skipped(
    tmp_path: Path, cli: Cli, simulator: Sim, token_env: str, fast: Path
) -> None:
    """A 401 mid-run: exit 3, message names the variable, unsent rows skipped, journal kept."""
    sim = simulator(revoke_after=10)
    source = write_csv(tmp_path / "in.csv", HEADER, ids(200))
    result = cli("run", source, "--base-url", sim.base_url, "--config", fast)
    assert result.code == 3
    assert "AELYST_API_TOKEN" in result.err
    got = read_results(tmp_path / "in.results.csv")
    assert len(got) == 200
    outcomes = Counter(r["outcome"] for r in got)
    assert outcomes["ok"] == 10
    assert outcomes["ok"] + outcomes["failed"] + outcomes["skipped"] == 200
    skipped = [r for r in got if r["outcome"] == "skipped"]
    assert all(r["error"] == "not sent: authentication failed" for r in skipped)
    # Nothing more than what was in flight was sent after the first 401.
    assert sim.simulator.count(401) <= 8
    assert (tmp_path / "in.results.csv.journal").exists()


def test_resume_sends_only_rows_without_a_final_outcome(
    tmp_path: Path, cli: Cli, simulator: Sim, token_env: str, fast: Path
) -> None:
    """After a 401 stop, the same command against a good server sends only the rest."""
    first = simulator(revoke_after=50)
    source = write_csv(tmp_path / "in.csv", HEADER, ids(150))
    assert cli("run", source, "--base-url", first.base_url, "--config", fast).code == 3
    second = simulator()
    result = cli("run", source, "--base-url", second.base_url, "--config", fast)
    assert result.code == 0, result.err
    got = read_results(tmp_path / "in.results.csv")
    assert [int(r["row"]) for r in got] == list(range(1, 151))
    assert {r["outcome"] for r in got} == {"ok"}
    # The rows the first server applied were not sent again.
    applied_first = {r.identifier for r in first.simulator.requests if r.status == 200}
    sent_second = {r.identifier for r in second.simulator.requests}
    assert len(applied_first) == 50
    assert not applied_first & sent_second
    assert len(sent_second) == 100
    assert not (tmp_path / "in.results.csv.journal").exists()


def test_changed_input_refuses_to_resume_until_restart(
    tmp_path: Path, cli: Cli, simulator: Sim, token_env: str, fast: Path
) -> None:
    """An interrupted run's input changed: exit 2 naming --restart; --restart sends everything."""
    first = simulator(revoke_after=5)
    source = write_csv(tmp_path / "in.csv", HEADER, ids(20))
    assert cli("run", source, "--base-url", first.base_url, "--config", fast).code == 3
    write_csv(source, HEADER, ids(21))
    second = simulator()
    refused = cli("run", source, "--base-url", second.base_url, "--config", fast)
    assert refused.code == 2
    assert "changed" in refused.err
    assert "--restart" in refused.err
    assert second.simulator.requests == []
    args = ("--base-url", second.base_url, "--config", fast, "--restart")
    assert cli("run", source, *args).code == 0
    assert len(second.simulator.requests) == 21


def test_second_run_on_the_same_results_file_is_refused(
    tmp_path: Path, cli: Cli, simulator: Sim, token_env: str, fast: Path
) -> None:
    """While a run holds the results file's lock, another exits 2 at once and sends nothing."""
    sim = simulator()
    source = write_csv(tmp_path / "in.csv", HEADER, ids(3))
    with RunLock(tmp_path / "in.results.csv"):
        result = cli("run", source, "--base-url", sim.base_url, "--config", fast)
    assert result.code == 2
    assert "another batcher run" in result.err
    assert sim.simulator.requests == []
    # The lock is gone with its holder: the next run goes ahead.
    assert cli("run", source, "--base-url", sim.base_url, "--config", fast).code == 0


def test_dry_run_sends_nothing_and_prints_requests(
    tmp_path: Path, cli: Cli, simulator: Sim
) -> None:
    """--dry-run needs no token, sends nothing, marks valid rows skipped, prints the requests."""
    sim = simulator()
    rows = [["email:a+b@x.com", "close", "Spam", "bot"], ["id:7", "OPEN", "", ""]]
    source = write_csv(tmp_path / "in.csv", HEADER, [*rows, ["bad", "open", "", ""]])
    result = cli("run", source, "--base-url", sim.base_url, "--dry-run")
    assert result.code == 1  # the invalid row
    assert sim.simulator.requests == []
    expected = f"POST {sim.base_url}/contact/email:a%2Bb@x.com/conversation/status"
    assert expected in result.out
    assert '{"status":"close","category":"Spam","summary":"bot"}' in result.out
    assert '{"status":"open"}' in result.out
    # A dry run writes beside the real results, never over them.
    assert not (tmp_path / "in.results.csv").exists()
    got = read_results(tmp_path / "in.dry-run.csv")
    assert [(r["outcome"], r["error"][:18]) for r in got[:2]] == [
        ("skipped", "dry run: not sent"),
        ("skipped", "dry run: not sent"),
    ]
    assert got[2]["outcome"] == "invalid"
    assert not list(tmp_path.glob("*.journal*"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--concurrency", "0"), "concurrency"),
        (("--base-url", "http://example.com/v1"), "https"),
        (("--delimiter", "x"), "delimiter"),
    ],
    ids=["concurrency", "plain-http-remote", "delimiter"],
)
def test_bad_arguments_exit_2(
    tmp_path: Path, cli: Cli, token_env: str, args: tuple[str, ...], message: str
) -> None:
    """Bad settings: exit 2 with a message naming the setting, nothing sent."""
    source = write_csv(tmp_path / "in.csv", HEADER, ids(1))
    result = cli("run", source, *args)
    assert result.code == 2
    assert message in result.err
    assert not (tmp_path / "in.results.csv").exists()


def test_missing_token_exits_2_naming_the_variable(
    tmp_path: Path, cli: Cli, simulator: Sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No token in the environment: exit 2, the message names the variable, nothing sent."""
    monkeypatch.delenv("AELYST_API_TOKEN", raising=False)
    sim = simulator()
    source = write_csv(tmp_path / "in.csv", HEADER, ids(1))
    result = cli("run", source, "--base-url", sim.base_url)
    assert result.code == 2
    assert "AELYST_API_TOKEN" in result.err
    assert sim.simulator.requests == []


def test_missing_column_exits_2_naming_the_columns_found(tmp_path: Path, cli: Cli) -> None:
    """An input without a status column: exit 2 naming the columns that were found."""
    source = write_csv(tmp_path / "in.csv", ("identifier", "state"), [["id:1", "open"]])
    result = cli("run", source, "--dry-run")
    assert result.code == 2
    assert "'status'" in result.err
    assert "'state'" in result.err


def test_unreadable_input_exits_2(tmp_path: Path, cli: Cli) -> None:
    """A missing input file: exit 2."""
    result = cli("run", tmp_path / "nope.csv", "--dry-run")
    assert result.code == 2
    assert "nope.csv" in result.err


def test_failed_out_is_ready_to_feed_back(
    tmp_path: Path, cli: Cli, simulator: Sim, token_env: str, fast: Path
) -> None:
    """--failed-out holds the rows worth another try, in the input's own columns and order."""
    sim = simulator(queue_share=1.0, queue_hold=60)
    header = ("note", "status", "identifier")
    source = write_csv(tmp_path / "in.csv", header, [["n1", "open", "id:1"], ["n2", "x", "id:2"]])
    failed = tmp_path / "again.csv"
    args = ("--base-url", sim.base_url, "--config", fast, "--max-requeues", "0")
    result = cli("run", source, *args, "--failed-out", failed)
    assert result.code == 1
    assert failed.read_text().splitlines() == ["note,status,identifier", "n1,open,id:1"]


def test_token_never_appears_in_any_output(
    tmp_path: Path, cli: Cli, simulator: Sim, token_env: str, fast: Path
) -> None:
    """Across a failing run (401, 500s, invalid rows), the token is in no output or file."""
    sim = simulator(revoke_after=3, error_rate=0.3, token=TOKEN)
    source = write_csv(tmp_path / "in.csv", HEADER, [*ids(10), ["bad", "open", "", ""]])
    result = cli("run", source, "--base-url", sim.base_url, "--config", fast, "--failed-out",
                 tmp_path / "f.csv")  # fmt: skip
    assert result.code == 3
    assert TOKEN not in result.out
    assert TOKEN not in result.err
    for path in tmp_path.iterdir():
        assert TOKEN.encode() not in path.read_bytes(), path


def test_out_that_is_a_folder_exits_2_before_sending(
    tmp_path: Path, cli: Cli, simulator: Sim, token_env: str
) -> None:
    """--out naming an existing folder: exit 2, nothing sent, no journal left behind."""
    sim = simulator()
    source = write_csv(tmp_path / "in.csv", HEADER, ids(2))
    (tmp_path / "folder").mkdir()
    result = cli("run", source, "--base-url", sim.base_url, "--out", tmp_path / "folder")
    assert result.code == 2
    assert "is a folder" in result.err
    assert sim.simulator.requests == []
    assert not list(tmp_path.glob("*.journal*"))


@pytest.mark.parametrize("name", ["Row", "error", " OUTCOME "])
def test_extra_column_named_like_a_results_column_exits_2(
    tmp_path: Path, cli: Cli, name: str
) -> None:
    """An input column named like one of the results file's own: exit 2 asking to rename it."""
    source = write_csv(tmp_path / "in.csv", ("identifier", "status", name), [["id:1", "open", "x"]])
    result = cli("run", source, "--dry-run")
    assert result.code == 2
    assert repr(name.strip()) in result.err
    assert "rename" in result.err


def test_an_unexpected_error_keeps_the_journal_and_every_row(tmp_path: Path) -> None:
    """If the run dies of an error it did not expect, every row still has an outcome, rows not
    sent say so, and the journal stays so that the same command resumes."""

    class Exploding(NullProgress):
        def __init__(self) -> None:
            super().__init__()
            self.seen = 0

        def advance(self, outcome: Outcome) -> None:
            self.seen += 1
            if self.seen == 5:
                raise RuntimeError("the progress display broke")

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"contactId": 1})

    source = write_csv(tmp_path / "in.csv", HEADER, ids(50, start=1))
    # 50/s: rows are still waiting when the fifth outcome breaks the display (at 1,000/s the
    # pace climbs past what the answers' recording keeps up with, and all 50 may be gone).
    settings = Settings(base_url="http://127.0.0.1:9/v1", start_rate=50.0, rate=50.0)
    with pytest.raises(ExceptionGroup) as raised:
        run_batch(source, settings=settings, token="test-token-1", progress=Exploding(),
                  transport=httpx.MockTransport(handler))  # fmt: skip
    assert raised.group_contains(RuntimeError, match="progress display broke", depth=None)
    got = read_results(tmp_path / "in.results.csv")
    assert [int(r["row"]) for r in got] == list(range(1, 51))
    not_sent = [r for r in got if r["outcome"] == "skipped"]
    assert not_sent
    assert all(
        r["error"].startswith(("not sent:", "interrupted while in flight")) for r in not_sent
    )
    assert (tmp_path / "in.results.csv.journal").exists()


def test_a_transport_that_raises_anything_is_a_row_outcome(tmp_path: Path) -> None:
    """An exception from the HTTP layer that is not an httpx error fails that row, not the run."""

    def handler(request: httpx.Request) -> httpx.Response:
        if "id:3" in str(request.url):
            raise RuntimeError("something odd in the transport")
        return httpx.Response(200, json={"contactId": 1})

    source = write_csv(tmp_path / "in.csv", HEADER, ids(5, start=1))
    settings = Settings(base_url="http://127.0.0.1:9/v1", start_rate=1000.0, max_attempts=2,
                        backoff_base=0.01)  # fmt: skip
    summary = run_batch(source, settings=settings, token="test-token-1",
                        transport=httpx.MockTransport(handler))  # fmt: skip
    assert summary.outcomes[Outcome.OK] == 4
    got = read_results(tmp_path / "in.results.csv")
    assert got[2]["outcome"] == "failed"
    assert "RuntimeError: something odd in the transport" in got[2]["error"]


@pytest.mark.parametrize("flag", ["--log-file", "--summary-json"])
def test_an_unwritable_output_file_exits_2(tmp_path: Path, cli: Cli, flag: str) -> None:
    """A --log-file or --summary-json in a folder that does not exist: exit 2, no traceback."""
    source = write_csv(tmp_path / "in.csv", HEADER, ids(1))
    result = cli("run", source, "--dry-run", flag, tmp_path / "nope" / "x")
    assert result.code == 2
    assert "Traceback" not in result.err
    assert "nope" in result.err


def test_failed_out_may_not_overwrite_the_input(tmp_path: Path, cli: Cli) -> None:
    """--failed-out naming the input file: exit 2, the input untouched."""
    source = write_csv(tmp_path / "in.csv", HEADER, ids(2))
    before = source.read_bytes()
    result = cli("run", source, "--dry-run", "--failed-out", source)
    assert result.code == 2
    assert source.read_bytes() == before
