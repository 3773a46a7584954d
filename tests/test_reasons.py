"""Reason codes, not words: resume, retry and counts read a row's reason, and the test kit
runs a whole batch in virtual time."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from batcher import AuthenticationFailed, Outcome, Reason, Settings, retry_batch, run_batch
from batcher.models import TEXTS
from batcher.testing import FakeClock, SimulatorConfig, simulated_transport
from tests.conftest import read_results, write_csv

HEADER = ("identifier", "status", "category", "summary")


def mixed_input(path: Path, contacts: int = 50) -> Path:
    """A 404 row, an invalid row, a duplicate, then ``contacts`` ordinary closes."""
    rows = [
        ("id:0", "close", "Spam", ""),  # 404 Contact not found: refused for good
        ("bogus", "close", "Spam", ""),  # invalid identifier: never sent
        ("id:1", "close", "Spam", ""),
        ("id:1", "close", "Spam", ""),  # duplicate of row 3
        *((f"id:{n}", "close", "Spam", "") for n in range(2, contacts + 2)),
    ]
    return write_csv(path, HEADER, rows)


def unfinished_or(results: list[dict[str, str]], final: set[str]) -> list[str]:
    """Identifiers in row order whose rows a resume sends again."""
    return [
        r["identifier"]
        for r in results
        if r["identifier"] not in final and r["outcome"] != "invalid"
    ]


def reword(monkeypatch: pytest.MonkeyPatch, tag: str) -> None:
    """Give every message batcher words itself a new text."""
    for reason in list(TEXTS):
        monkeypatch.setitem(TEXTS, reason, f"[{tag}] {reason.value} reworded: ")


def journal_reasons(journal: Path) -> dict[int, str]:
    with sqlite3.connect(journal) as db:
        return dict(db.execute("SELECT row, reason FROM results"))


def test_the_test_kit_runs_hours_of_449s_in_virtual_time(tmp_path: Path) -> None:
    """The README's test-kit example: 400 rows through 449 holds of 400 s and 5 % 500s all
    end ok, after more than 360 s of virtual time (the 180 s requeue, twice)."""
    source = write_csv(
        tmp_path / "in.csv", HEADER, [(f"id:{n}", "close", "Spam", "") for n in range(1, 401)]
    )
    clock = FakeClock()
    cfg = SimulatorConfig(
        shared_limit=10, queue_share=0.1, queue_hold=400.0, error_rate=0.05, seed=3
    )
    transport = simulated_transport(cfg, clock=clock)
    summary = run_batch(
        source,
        out=tmp_path / "out.csv",
        settings=Settings(requeue_delay=180.0),
        token="t",
        clock=clock,
        transport=transport,
    )
    assert summary.outcomes[Outcome.OK] == 400
    assert summary.reasons[Reason.SENT] == 400
    assert clock.now() >= 360.0
    assert summary.elapsed >= 360.0
    assert transport.count(449) > 0
    assert transport.count(500) > 0
    assert [r["outcome"] for r in read_results(tmp_path / "out.csv")] == ["ok"] * 400


def test_an_aborted_run_journals_a_reason_for_every_row(tmp_path: Path) -> None:
    """A run stopped by a 401 leaves a journal in which every row has a reason code, and
    the summary counts rows per reason."""
    source = mixed_input(tmp_path / "in.csv")
    clock = FakeClock()
    transport = simulated_transport(SimulatorConfig(revoke_after=10), clock=clock)
    with pytest.raises(AuthenticationFailed) as stop:
        run_batch(
            source,
            out=tmp_path / "out.csv",
            settings=Settings(rate=20),
            token="t",
            clock=clock,
            transport=transport,
        )
    reasons = journal_reasons(tmp_path / "out.csv.journal")
    assert sorted(reasons) == list(range(1, 55))
    assert {Reason(value) for value in reasons.values()} >= {
        Reason.SENT,
        Reason.REFUSED,
        Reason.INVALID,
        Reason.DUPLICATE,
        Reason.AUTH_REFUSED,
        Reason.NOT_SENT_AUTH,
    }
    summary = stop.value.summary
    assert summary is not None
    assert summary.reasons[Reason.DUPLICATE] == 1  # type: ignore[attr-defined]
    assert summary.stop_reason is Reason.NOT_SENT_AUTH  # type: ignore[attr-defined]


def test_rewording_every_message_changes_neither_resume_nor_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each run words batcher's messages differently: the resume still sends exactly the
    rows that had no final outcome, and retry exactly the rows worth another try."""
    source = mixed_input(tmp_path / "in.csv")
    out = tmp_path / "out.csv"
    clock = FakeClock()

    reword(monkeypatch, "first")
    first = simulated_transport(SimulatorConfig(revoke_after=10), clock=clock)
    with pytest.raises(AuthenticationFailed):
        run_batch(
            source, out=out, settings=Settings(rate=20), token="t", clock=clock, transport=first
        )
    first_results = read_results(out)
    done_first = {r["identifier"] for r in first_results if r["outcome"] in ("ok", "failed")}
    assert "id:0" in done_first  # refused for good: not sent again

    reword(monkeypatch, "second")
    second = simulated_transport(SimulatorConfig(), clock=clock)
    summary = run_batch(
        source,
        out=out,
        settings=Settings(rate=10, max_duration=2.0),
        token="t",
        clock=clock,
        transport=second,
    )
    assert summary.stop_reason is Reason.NOT_SENT_DEADLINE
    resent = [r.identifier for r in second.requests]
    authfailed = [r.identifier for r in first.requests if r.status == 401]
    # The first rows with no final outcome (the 401's rows included) go first; two leave at
    # once, in either order.
    pending = unfinished_or(first_results, done_first - set(authfailed))
    assert set(resent[:2]) == set(pending[:2])
    assert not set(resent) & (done_first - set(authfailed))
    results = read_results(out)
    assert len(results) == 54
    unsent = [r for r in results if r["outcome"] == "skipped" and r["row"] != "4"]
    assert unsent, "the deadline left rows to retry"
    assert results[3]["outcome"] == "skipped"  # the duplicate

    reword(monkeypatch, "third")
    third = simulated_transport(SimulatorConfig(), clock=clock)
    retried = retry_batch(out, token="t", clock=clock, transport=third)
    assert retried.outcomes[Outcome.OK] == len(unsent)
    assert sorted(r.identifier for r in third.requests) == sorted(r["identifier"] for r in unsent)
    assert [r["row"] for r in read_results(tmp_path / "out.retry.csv")] == [
        r["row"] for r in unsent
    ]
