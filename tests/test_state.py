"""The state file (--state) and --skip-done-within: a nightly job sends only what changed."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from batcher import AuthenticationFailed, Outcome, Plan, Reason, RunSummary, Settings, run_batch
from batcher.lock import RunLock
from batcher.simtransport import SimulatedTransport
from batcher.simulator import RunningSimulator
from batcher.state import StateFile
from batcher.testing import FakeClock, SimulatorConfig, simulated_transport
from tests.conftest import TOKEN, CliRun, read_results, write_csv

Cli = Callable[..., CliRun]
Sim = Callable[..., RunningSimulator]
HEADER = ("identifier", "status", "category", "summary")
WEEK = 7 * 86400.0
DONE_TEXT = re.compile(r"already done on \d{4}-\d\d-\d\d \d\d:\d\d UTC")


def row(n: int, status: str) -> tuple[str, str, str, str]:
    """Contact id:n asked to open, or to close with the category Spam."""
    return (f"id:{n}", "close", "Spam", "") if status == "close" else (f"id:{n}", "open", "", "")


def first_night() -> list[tuple[str, str, str, str]]:
    """300 contacts: odd ones closed as Spam, even ones opened."""
    return [row(n, "close" if n % 2 else "open") for n in range(1, 301)]


#: The contacts whose request changes on the second night, 50 of the 300: 25 odd ones closed
#: the first night and opened the second, 25 even ones the other way round.
FLIPPED = {f"id:{n}" for n in (*range(3, 301, 12), *range(6, 301, 12))}
NEW = {f"id:{n}" for n in range(301, 401)}


def second_night() -> list[tuple[str, str, str, str]]:
    """The first night's 300 rows with the 50 ``FLIPPED`` ones changed, then 100 new closes."""
    rows = [row(n, "close" if (n % 2) != (f"id:{n}" in FLIPPED) else "open") for n in range(1, 301)]
    return rows + [row(n, "close") for n in range(301, 401)]


def night(
    source: Path, out: Path, clock: FakeClock, **settings: Any
) -> tuple[RunSummary, SimulatedTransport, list[Plan]]:
    """One run in virtual time against the simulated API; its summary, transport and plan."""
    transport = simulated_transport(SimulatorConfig(), clock=clock)
    plans: list[Plan] = []
    summary = run_batch(
        source,
        out=out,
        settings=Settings(**settings),
        token=TOKEN,
        clock=clock,
        transport=transport,
        on_plan=plans.append,
    )
    return summary, transport, plans


def state_rows(path: Path) -> dict[str, tuple[str, str, float]]:
    """identifier -> (status, category, done_at) as the state file holds them."""
    with sqlite3.connect(path) as db:
        query = "SELECT identifier, status, category, done_at FROM done"
        return {ident: (status, cat, at) for ident, status, cat, at in db.execute(query)}


def test_second_night_sends_only_what_changed(tmp_path: Path) -> None:
    """300 rows done last night (50 now flipped) plus 100 new, with --state and
    --skip-done-within 7d: exactly 150 requests (the flipped and the new), the 250 unchanged
    rows skipped as already done, the plan said so first, and the run counts as all ok."""
    state = tmp_path / "cleanup.state"
    clock = FakeClock()
    one = write_csv(tmp_path / "night1.csv", HEADER, first_night())
    first, sent_first, _ = night(
        one, tmp_path / "night1.results.csv", clock, state_file=str(state), skip_done_within=WEEK
    )
    assert first.outcomes[Outcome.OK] == 300
    assert len(sent_first.requests) == 300
    assert len(state_rows(state)) == 300

    two = write_csv(tmp_path / "night2.csv", HEADER, second_night())
    out = tmp_path / "night2.results.csv"
    summary, transport, plans = night(two, out, clock, state_file=str(state), skip_done_within=WEEK)
    assert len(transport.requests) == 150
    assert {r.identifier for r in transport.requests} == FLIPPED | NEW
    assert summary.all_ok
    assert summary.outcomes[Outcome.OK] == 150
    assert summary.outcomes[Outcome.SKIPPED] == 250
    assert summary.reasons[Reason.ALREADY_DONE] == 250
    assert summary.already_done == 250
    assert plans == [
        Plan(rows=400, to_send=150, invalid=0, duplicates=0, resumed=0,
             start_rate=plans[0].start_rate, ceiling=None, already_done=250)
    ]  # fmt: skip
    results = read_results(out)
    skipped = [r for r in results if r["outcome"] == "skipped"]
    assert {r["identifier"] for r in skipped} == {f"id:{n}" for n in range(1, 301)} - FLIPPED
    assert all(DONE_TEXT.fullmatch(r["error"]) for r in skipped)
    assert all(r["attempts"] == "0" and r["http_status"] == "" for r in skipped)
    # Bounded: one row per identifier, the latest success (the flipped ones now say so).
    held = state_rows(state)
    assert len(held) == 400
    assert held["id:6"][0] == "close"  # opened on night one, closed on night two
    assert held["id:3"][0] == "open"  # closed on night one, opened on night two
    assert held["id:1"][0] == "close"


def test_a_contacts_later_rows_are_sent_even_if_they_match_the_state(tmp_path: Path) -> None:
    """The state says id:1 was closed; tonight's file opens it, then closes it: both rows are
    sent, since after the open the close is no longer done. Its first row alone is compared."""
    state = tmp_path / "s.db"
    clock = FakeClock()
    settings: dict[str, Any] = {"state_file": str(state), "skip_done_within": WEEK}
    night(write_csv(tmp_path / "a.csv", HEADER, [row(1, "close")]), tmp_path / "a.out.csv",
          clock, **settings)  # fmt: skip
    source = write_csv(tmp_path / "b.csv", HEADER, [row(1, "open"), row(1, "close")])
    summary, transport, _ = night(source, tmp_path / "b.out.csv", clock, **settings)
    assert [r.status for r in transport.requests] == [200, 200]
    assert transport.statuses["id:1"] == "closed"
    assert summary.already_done == 0


def test_a_success_older_than_the_span_is_sent_again(tmp_path: Path) -> None:
    """A success recorded 8 days ago does not count within 7d: that row is sent again."""
    state = tmp_path / "s.db"
    clock = FakeClock()
    settings: dict[str, Any] = {"state_file": str(state), "skip_done_within": WEEK}
    source = write_csv(tmp_path / "in.csv", HEADER, [row(1, "close"), row(2, "close")])
    night(source, tmp_path / "one.csv", clock, **settings)
    eight_days_ago = (datetime.now(UTC) - timedelta(days=8)).timestamp()
    with sqlite3.connect(state) as db:
        db.execute("UPDATE done SET done_at = ? WHERE identifier = 'id:1'", (eight_days_ago,))
    summary, transport, _ = night(source, tmp_path / "two.csv", clock, **settings)
    assert [r.identifier for r in transport.requests] == ["id:1"]
    assert summary.already_done == 1


def test_another_category_is_sent(tmp_path: Path) -> None:
    """A close with another category (or summary) than the one that succeeded is sent."""
    state = tmp_path / "s.db"
    clock = FakeClock()
    settings: dict[str, Any] = {"state_file": str(state), "skip_done_within": WEEK}
    night(write_csv(tmp_path / "a.csv", HEADER, [("id:1", "close", "Spam", ""),
          ("id:2", "close", "Spam", "")]), tmp_path / "a.out.csv", clock, **settings)  # fmt: skip
    rows = [("id:1", "close", "Bot", ""), ("id:2", "close", "Spam", "a bot")]
    _, transport, _ = night(write_csv(tmp_path / "b.csv", HEADER, rows), tmp_path / "b.out.csv",
                            clock, **settings)  # fmt: skip
    assert [r.identifier for r in transport.requests] == ["id:1", "id:2"]


def test_state_without_skip_remembers_but_sends_everything(tmp_path: Path) -> None:
    """--state alone records every success and skips nothing."""
    state = tmp_path / "s.db"
    clock = FakeClock()
    source = write_csv(tmp_path / "in.csv", HEADER, first_night()[:20])
    night(source, tmp_path / "one.csv", clock, state_file=str(state))
    summary, transport, _ = night(source, tmp_path / "two.csv", clock, state_file=str(state))
    assert len(transport.requests) == 20
    assert summary.already_done == 0
    assert len(state_rows(state)) == 20


def test_the_state_is_written_as_rows_succeed(tmp_path: Path) -> None:
    """A run stopped by a 401 part-way has already remembered every row answered 200."""
    state = tmp_path / "s.db"
    clock = FakeClock()
    source = write_csv(tmp_path / "in.csv", HEADER, first_night()[:40])
    transport = simulated_transport(SimulatorConfig(revoke_after=10), clock=clock)
    with pytest.raises(AuthenticationFailed):
        run_batch(source, out=tmp_path / "out.csv", settings=Settings(state_file=str(state)),
                  token=TOKEN, clock=clock, transport=transport)  # fmt: skip
    ok = {r.identifier for r in transport.requests if r.status == 200}
    assert len(ok) == 10
    assert set(state_rows(state)) == ok


def test_a_dry_run_shows_what_would_be_skipped_and_writes_nothing(tmp_path: Path) -> None:
    """--dry-run with --state skips the rows already done (their error says when), plans the
    rest, and neither writes nor locks the state file."""
    state = tmp_path / "s.db"
    clock = FakeClock()
    settings: dict[str, Any] = {"state_file": str(state), "skip_done_within": WEEK}
    night(write_csv(tmp_path / "one.csv", HEADER, first_night()), tmp_path / "one.out.csv",
          clock, **settings)  # fmt: skip
    before = state_rows(state)
    source = write_csv(tmp_path / "two.csv", HEADER, second_night())
    with RunLock(state):  # a job holding the state file does not stop a dry run
        summary = run_batch(source, settings=Settings(**settings), dry_run=True)
    assert summary.already_done == 250
    assert summary.planned == 150
    assert summary.all_ok
    assert state_rows(state) == before
    rows = read_results(tmp_path / "two.dry-run.csv")
    assert sum(bool(DONE_TEXT.fullmatch(r["error"])) for r in rows) == 250


def test_a_dry_run_with_a_state_file_not_yet_made(tmp_path: Path) -> None:
    """A dry run naming a state file that does not exist yet skips nothing and creates none."""
    source = write_csv(tmp_path / "in.csv", HEADER, first_night()[:5])
    settings = Settings(state_file=str(tmp_path / "new.db"), skip_done_within=WEEK)
    summary = run_batch(source, settings=settings, dry_run=True)
    assert summary.planned == 5
    assert not (tmp_path / "new.db").exists()


def test_cli_second_night_against_the_simulator(
    tmp_path: Path, cli: Cli, simulator: Sim, token_env: str
) -> None:
    """Through the command line against a real server: the second night sends exactly 150
    requests, prints the plan with 250 already done before it, and exits 0; the state file
    holds no token."""
    sim = simulator()
    fast = tmp_path / "fast.toml"
    fast.write_text("start_rate = 500.0\n")
    state = tmp_path / "cleanup.state"
    common: tuple[str | Path, ...] = ("--base-url", sim.base_url, "--config", fast, "--rate", "500")
    common += ("--state", state, "--skip-done-within", "7d", "--no-progress")
    one = write_csv(tmp_path / "night1.csv", HEADER, first_night())
    first = cli("run", one, *common)
    assert first.code == 0, first.err
    assert sim.simulator.count(200) == 300

    two = write_csv(tmp_path / "night2.csv", HEADER, second_night())
    second = cli("run", two, *common)
    assert second.code == 0, second.err
    assert sim.simulator.count(200) == 300 + 150
    assert len(sim.simulator.requests) == 450
    assert "plan: 150 rows to send of 400 (0 invalid, 0 duplicates, 250 already done)" in (
        second.err
    )
    assert "skipped 250 (already done 250)" in second.err
    for path in tmp_path.glob("cleanup.state*"):
        assert TOKEN.encode() not in path.read_bytes()

    shown = cli("state", state)
    assert shown.code == 0
    assert f"{state}: 400 identifiers (close 250, open 150)" in shown.out
    assert "oldest success: 20" in shown.out
    assert "newest success: 20" in shown.out


def test_a_second_run_using_the_state_file_is_refused(
    tmp_path: Path, cli: Cli, simulator: Sim, token_env: str
) -> None:
    """While a run holds the state file, another run naming it exits 2 and sends nothing."""
    sim = simulator()
    state = tmp_path / "s.db"
    source = write_csv(tmp_path / "in.csv", HEADER, first_night()[:3])
    with RunLock(state):
        refused = cli("run", source, "--base-url", sim.base_url, "--state", state)
    assert refused.code == 2
    assert "s.db" in refused.err
    assert "share a state file" in refused.err
    assert sim.simulator.requests == []


def test_skip_done_within_needs_a_state_file(tmp_path: Path, cli: Cli) -> None:
    """--skip-done-within without --state: exit 2, saying what is missing."""
    source = write_csv(tmp_path / "in.csv", HEADER, [row(1, "open")])
    result = cli("run", source, "--dry-run", "--skip-done-within", "7d")
    assert result.code == 2
    assert "needs a state_file (--state)" in result.err


def test_batcher_state_on_a_missing_or_foreign_file(tmp_path: Path, cli: Cli) -> None:
    """`batcher state` on no file, or on a file that is not a state file: exit 2."""
    missing = cli("state", tmp_path / "none.db")
    assert missing.code == 2
    assert "no state file" in missing.err
    foreign = tmp_path / "other.db"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE t (x)")
    refused = cli("state", foreign)
    assert refused.code == 2
    assert "not a batcher state file" in refused.err
    empty = tmp_path / "empty.db"
    StateFile(empty).close()
    assert "no success recorded yet" in cli("state", empty).out
