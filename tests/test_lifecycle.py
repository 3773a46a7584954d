"""A row's life, in virtual time and in process, through the public API only.

Every test here runs ``run_batch`` on a ``FakeClock`` against ``simulated_transport``
(``batcher.testing``; one scripted scenario uses an ``httpx.MockTransport``): backoff,
449 requeues, 429 pauses, deadlines and the grace period take no real time, so each test
asserts on *virtual* times (the transport's request log, ``clock.now()``), never on the
wall clock, and checks the results file, the summary and what the simulated API saw.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import httpx
import pytest

from batcher import (
    AuthenticationFailed,
    Interrupted,
    Outcome,
    Reason,
    RunSummary,
    Settings,
    run_batch,
)
from batcher.stopping import GRACE
from batcher.testing import FakeClock, SimulatorConfig, simulated_transport
from tests.conftest import TOKEN, read_results, write_csv

if TYPE_CHECKING:
    # The type of ``transport.requests`` items (only annotations name it).
    from batcher.simrules import RequestRecord

HEADER = ("identifier", "status")


def make_input(tmp_path: Path, n: int, start: int = 1) -> Path:
    """``n`` rows ``id:start`` ... each closing its own contact."""
    return write_csv(tmp_path / "in.csv", HEADER, [[f"id:{start + i}", "close"] for i in range(n)])


def results_path(source: Path) -> Path:
    return source.with_name(f"{source.stem}.results.csv")


def journal_of(source: Path) -> Path:
    return source.with_name(f"{source.stem}.results.csv.journal")


def by_contact(requests: list[RequestRecord]) -> dict[str, list[RequestRecord]]:
    """Each identifier's requests, in arrival order."""
    grouped: dict[str, list[RequestRecord]] = defaultdict(list)
    for record in requests:
        grouped[record.identifier].append(record)
    return grouped


def gaps(records: list[RequestRecord]) -> list[float]:
    """Virtual seconds between one contact's consecutive requests."""
    return [b.time - a.time for a, b in pairwise(records)]


def others_between(requests: list[RequestRecord], identifier: str, lo: float, hi: float) -> int:
    """Requests for other contacts that arrived strictly between ``lo`` and ``hi``."""
    return sum(1 for r in requests if r.identifier != identifier and lo < r.time < hi)


@dataclass
class Seen:
    """One answer as the client got it, on the run's clock."""

    time: float
    identifier: str
    status: int
    retry_after: str | None


@dataclass
class Tap(httpx.AsyncBaseTransport):
    """Wraps a transport: records every answer with its headers, and may run a hook when the
    ``at``-th request arrives (counted over the tap's whole life, so once across runs)."""

    inner: httpx.AsyncBaseTransport
    clock: FakeClock
    at: int = 0
    hook: Callable[[], None] | None = None
    arrived: int = 0
    seen: list[Seen] = field(default_factory=list)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.arrived += 1
        if self.hook is not None and self.arrived == self.at:
            self.hook()
        response = await self.inner.handle_async_request(request)
        identifier = request.url.raw_path.decode().split("/")[3]
        self.seen.append(
            Seen(
                self.clock.now(),
                identifier,
                response.status_code,
                response.headers.get("Retry-After"),
            )
        )
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def sigint() -> None:
    """Deliver SIGINT to this process, as Ctrl-C would."""
    os.kill(os.getpid(), signal.SIGINT)


# -- backoff -------------------------------------------------------------------------------


def test_500s_and_dropped_connections_are_retried_until_ok(tmp_path: Path) -> None:
    """500s and dropped connections are retried with backoff until every row is ok."""
    clock = FakeClock()
    config = SimulatorConfig(error_rate=0.2, drop_rate=0.1, seed=5)
    transport = simulated_transport(config, clock=clock)
    source = make_input(tmp_path, 150)
    settings = Settings(max_attempts=12, backoff_base=0.5, backoff_max=8.0, start_rate=50.0)
    summary = run_batch(source, settings=settings, token=TOKEN, clock=clock,
                        transport=transport, rng=random.Random(1))  # fmt: skip

    got = read_results(results_path(source))
    assert [int(r["row"]) for r in got] == list(range(1, 151))
    assert {r["outcome"] for r in got} == {"ok"}
    assert transport.count(500) > 0
    assert transport.count(0) > 0  # dropped connections
    assert summary.no_answer == transport.count(0)
    assert summary.reasons[Reason.SENT] == 150
    # Each row's attempts are the requests the API saw for it, ending with its one 200.
    sent = by_contact(transport.requests)
    for row in got:
        records = sent[row["identifier"]]
        assert int(row["attempts"]) == len(records)
        assert [r.status for r in records][-1] == 200
        assert [r.status for r in records].count(200) == 1
        assert int(row["contact_id"]) == records[-1].contact_id
    assert any(int(r["attempts"]) > 1 for r in got)
    assert not journal_of(source).exists()


def test_a_row_answered_500_every_time_fails_after_max_attempts_within_backoff_bounds(
    tmp_path: Path,
) -> None:
    """Always 500: failed/retries_exhausted after exactly max_attempts requests, each gap
    within the full-jitter bound min(backoff_max, backoff_base * 2**(k-1))."""
    clock = FakeClock()
    transport = simulated_transport(SimulatorConfig(error_rate=1.0, seed=2), clock=clock)
    rows, max_attempts, base, most, start_rate = 4, 7, 1.0, 8.0, 100.0
    source = make_input(tmp_path, rows)
    settings = Settings(max_attempts=max_attempts, backoff_base=base, backoff_max=most,
                        start_rate=start_rate, concurrency=4)  # fmt: skip
    summary = run_batch(source, settings=settings, token=TOKEN, clock=clock,
                        transport=transport, rng=random.Random(7))  # fmt: skip

    assert summary.outcomes[Outcome.FAILED] == rows
    assert summary.reasons[Reason.RETRIES_EXHAUSTED] == rows
    assert summary.requests == rows * max_attempts == transport.count(500)
    got = read_results(results_path(source))
    assert {r["outcome"] for r in got} == {"failed"}
    assert {r["attempts"] for r in got} == {str(max_attempts)}
    assert {r["http_status"] for r in got} == {"500"}
    assert all(r["error"].startswith(f"retries exhausted after {max_attempts} attempts")
               for r in got)  # fmt: skip
    # The pacer may add at most one turn per row due at the same moment to a backoff.
    pacing = rows / start_rate
    all_gaps: list[float] = []
    for records in by_contact(transport.requests).values():
        assert len(records) == max_attempts
        for failures, gap in enumerate(gaps(records), start=1):
            ceiling = min(most, base * 2 ** (failures - 1))
            assert 0.0 <= gap <= ceiling + pacing, (failures, gap, ceiling)
            all_gaps.append(gap)
    # The jitter is real (not a fixed wait) and the ceiling grows (later gaps exceed the first).
    assert len({round(g, 6) for g in all_gaps}) > len(all_gaps) // 2
    assert max(all_gaps) > base + pacing


# -- 449 -----------------------------------------------------------------------------------


def test_a_449_row_is_set_aside_for_requeue_delay_while_other_rows_flow_then_ok(
    tmp_path: Path,
) -> None:
    """449: the held contact is sent again after requeue_delay (up to 1.2x, plus the pacer's
    turns), other rows are sent in between, and it ends ok."""
    clock = FakeClock()
    delay, rate, concurrency = 5.0, 10.0, 2
    # Held for 8 s from its first request: 449 at t, 449 at t+5..6, then 200 at t+10..12.
    config = SimulatorConfig(queue_share=0.1, queue_hold=8.0, seed=11)
    transport = simulated_transport(config, clock=clock)
    source = make_input(tmp_path, 200)
    settings = Settings(requeue_delay=delay, rate=rate, concurrency=concurrency, max_requeues=5)
    summary = run_batch(source, settings=settings, token=TOKEN, clock=clock,
                        transport=transport, rng=random.Random(3))  # fmt: skip

    got = read_results(results_path(source))
    assert {r["outcome"] for r in got} == {"ok"}
    assert summary.reasons[Reason.SENT] == 200
    requests = transport.requests
    sent = by_contact(requests)
    held = {c: rs for c, rs in sent.items() if rs[0].status == 449}
    assert len(held) >= 5
    # A row that came due waits at most for a worker to come free and for its own turn.
    pacing = 2 * (concurrency + 1) / rate
    last_first_send = max(rs[0].time for rs in sent.values())
    flowing = 0
    for contact, records in held.items():
        assert [r.status for r in records] == [449, 449, 200], contact
        for gap in gaps(records):
            assert delay <= gap <= 1.2 * delay + pacing, (contact, gap)
        if records[-1].time < last_first_send:
            flowing += 1
            for a, b in pairwise(records):
                # Meanwhile the run kept sending other rows at its pace.
                assert others_between(requests, contact, a.time, b.time) >= 0.8 * delay * rate / 2
    assert flowing >= 3
    assert {r["attempts"] for r in got if r["identifier"] in held} == {"3"}


def test_a_row_still_449_after_max_requeues_is_deferred(tmp_path: Path) -> None:
    """449 on every try: the row ends deferred (reason deferred_449) after max_requeues."""
    clock = FakeClock()
    config = SimulatorConfig(queue_share=1.0, queue_hold=10_000.0)
    transport = simulated_transport(config, clock=clock)
    source = make_input(tmp_path, 6)
    settings = Settings(requeue_delay=180.0, max_requeues=2, start_rate=100.0)
    started = clock.now()
    summary = run_batch(source, settings=settings, token=TOKEN, clock=clock,
                        transport=transport, rng=random.Random(4))  # fmt: skip

    assert summary.outcomes[Outcome.DEFERRED] == 6
    assert summary.reasons[Reason.DEFERRED_449] == 6
    got = read_results(results_path(source))
    assert {(r["outcome"], r["attempts"], r["http_status"]) for r in got} == {
        ("deferred", "3", "449")
    }
    assert all("449" in r["error"] for r in got)
    assert transport.count(449) == 18
    # Two requeues of 180-216 s each passed, in virtual time.
    assert 2 * 180.0 <= clock.now() - started <= 2 * 216.0 + 1.0


# -- 429 -----------------------------------------------------------------------------------


def test_429s_pause_every_worker_for_retry_after_and_every_row_ends_ok(tmp_path: Path) -> None:
    """Starting above a shared limit: after each 429 no request at all is sent until its
    Retry-After has passed (the pacer's shared pause), and every row still ends ok."""
    clock = FakeClock()
    # With latency, requests let go before the first answer can tell the pacer the limit.
    inner = simulated_transport(SimulatorConfig(shared_limit=10, latency=0.2), clock=clock)
    tap = Tap(inner, clock)
    source = make_input(tmp_path, 80)
    settings = Settings(start_rate=100.0, concurrency=16)
    summary = run_batch(source, settings=settings, token=TOKEN, clock=clock, transport=tap)

    got = read_results(results_path(source))
    assert {r["outcome"] for r in got} == {"ok"}
    assert inner.count(200) == 80
    assert inner.count(429) > 0
    assert summary.http_statuses.get(429) == inner.count(429)
    throttled = [s for s in tap.seen if s.status == 429]
    requests = inner.requests
    for answer in throttled:
        assert answer.retry_after is not None
        resume = answer.time + float(answer.retry_after)
        # Requests let go before the 429 was seen were already on the wire (they arrived
        # earlier); from the moment it is seen, the pacer lets nothing go until Retry-After.
        early = [r for r in requests if answer.time < r.time < resume]
        assert early == [], (answer, early[:3])
    # A 429'd row counts the 429 in its attempts, and is never failed for it.
    rows_429 = {s.identifier for s in throttled}
    assert all(int(r["attempts"]) >= 2 for r in got if r["identifier"] in rows_429)


# -- deadline ------------------------------------------------------------------------------


def test_deadline_stops_taking_rows_and_a_second_run_finishes_each_row_once(
    tmp_path: Path,
) -> None:
    """max_duration with a slow pace: the run returns a summary, unsent rows are skipped
    not_sent_deadline, nothing is sent after deadline+grace, the journal is kept, and a
    second run on the same clock sends only the rest, each row ok exactly once."""
    clock = FakeClock()
    config = SimulatorConfig(latency=0.5)
    transport = simulated_transport(config, clock=clock)
    source = make_input(tmp_path, 100)
    max_duration = 10.0
    started = clock.now()
    first = run_batch(source, settings=Settings(max_duration=max_duration, rate=5.0),
                      token=TOKEN, clock=clock, transport=transport)  # fmt: skip

    deadline = started + max_duration
    assert isinstance(first, RunSummary)
    assert first.stop_reason is Reason.NOT_SENT_DEADLINE
    assert first.rows == 100
    # No row is taken after the deadline; what was on the wire had the grace period.
    assert all(r.time <= deadline for r in transport.requests)
    assert clock.now() <= deadline + GRACE
    got = read_results(results_path(source))
    assert [int(r["row"]) for r in got] == list(range(1, 101))
    counts = Counter(r["outcome"] for r in got)
    assert 0 < counts["ok"] < 100
    assert counts["ok"] + counts["skipped"] == 100
    # Requests on the wire at the deadline were answered within the grace period.
    assert first.reasons[Reason.NOT_SENT_DEADLINE] == counts["skipped"]
    assert {r["error"] for r in got if r["outcome"] == "skipped"} == {"not sent: deadline"}
    assert counts["ok"] == transport.count(200)
    assert journal_of(source).exists()
    sent_first = len(transport.requests)

    second = run_batch(source, settings=Settings(rate=50.0), token=TOKEN, clock=clock,
                       transport=transport)  # fmt: skip
    assert second.stop_reason is None
    assert second.resumed == counts["ok"]
    assert len(transport.requests) - sent_first == counts["skipped"]
    got = read_results(results_path(source))
    assert {r["outcome"] for r in got} == {"ok"}
    oks = Counter(r.identifier for r in transport.requests if r.status == 200)
    assert set(oks) == {f"id:{i}" for i in range(1, 101)}
    assert set(oks.values()) == {1}
    assert not journal_of(source).exists()


# -- 401 -----------------------------------------------------------------------------------


def test_a_401_mid_run_lists_every_row_and_resume_sends_the_rest(tmp_path: Path) -> None:
    """revoke_after: AuthenticationFailed with a summary of every row; the results file lists
    every row; resuming with a good token sends the 401'd and unsent rows, and only those."""
    clock = FakeClock()
    revoked = simulated_transport(SimulatorConfig(revoke_after=30), clock=clock)
    source = make_input(tmp_path, 120)
    settings = Settings(start_rate=20.0)
    with pytest.raises(AuthenticationFailed) as raised:
        run_batch(source, settings=settings, token=TOKEN, clock=clock, transport=revoked)

    summary = raised.value.summary
    assert isinstance(summary, RunSummary)
    assert summary.rows == 120
    assert summary.stop_reason is Reason.NOT_SENT_AUTH
    assert summary.outcomes[Outcome.OK] == 30 == revoked.count(200)
    assert summary.reasons[Reason.AUTH_REFUSED] == revoked.count(401) >= 1
    got = read_results(results_path(source))
    assert [int(r["row"]) for r in got] == list(range(1, 121))
    assert {r["outcome"] for r in got} == {"ok", "failed", "skipped"}
    assert {r["http_status"] for r in got if r["outcome"] == "failed"} == {"401"}
    assert {r["error"] for r in got if r["outcome"] == "skipped"} == {
        "not sent: authentication failed"
    }
    assert journal_of(source).exists()
    not_ok = {r["identifier"] for r in got if r["outcome"] != "ok"}

    good = simulated_transport(SimulatorConfig(), clock=clock)
    again = run_batch(source, settings=settings, token=TOKEN, clock=clock, transport=good)
    assert again.resumed == 30
    assert Counter(r.identifier for r in good.requests) == Counter(not_ok)
    assert {r["outcome"] for r in read_results(results_path(source))} == {"ok"}
    assert not journal_of(source).exists()


def test_a_401_while_others_wait_out_a_long_429_ends_at_once(
    tmp_path: Path,
) -> None:
    """A 401 with nothing else on the wire ends the run at once: neither the 60 s
    Retry-After other workers are waiting out nor the grace period is waited for; the
    429'd row is listed as not sent."""
    clock = FakeClock()
    auth_at: list[float] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        identifier = request.url.raw_path.decode().split("/")[3]
        if identifier == "id:1":  # every worker not yet sending now waits 60 s for its turn
            await anyio.sleep(0.05)
            return httpx.Response(429, json={"code": 429, "message": "Too Many Requests"},
                                  headers={"Retry-After": "60"})  # fmt: skip
        await anyio.sleep(0.2)  # id:2 was on the wire when the 429 came
        auth_at.append(clock.now())
        return httpx.Response(401, json={"code": 401, "message": "UN_AUTHORIZED"})

    source = make_input(tmp_path, 20)
    settings = Settings(start_rate=1000.0)
    with pytest.raises(AuthenticationFailed) as raised:
        run_batch(source, settings=settings, token=TOKEN, clock=clock,
                  transport=httpx.MockTransport(handler))  # fmt: skip

    assert auth_at, "the 401 was never answered"
    assert clock.now() - auth_at[0] < 0.01  # not the 60 s of Retry-After, nor GRACE
    summary = raised.value.summary
    assert isinstance(summary, RunSummary)
    assert summary.rows == 20
    got = read_results(results_path(source))
    assert [int(r["row"]) for r in got] == list(range(1, 21))
    assert got[0]["outcome"] == "skipped"  # the 429'd row was waiting, not answered
    assert got[1]["outcome"] == "failed"
    assert got[1]["http_status"] == "401"


# -- interruption --------------------------------------------------------------------------


def test_sigint_mid_run_raises_interrupted_and_the_same_call_sends_the_rest(
    tmp_path: Path,
) -> None:
    """SIGINT mid-run: Interrupted, every row has an outcome, unsent rows are
    not_sent_interrupted, and the same call again sends exactly the rows not ok."""
    clock = FakeClock()
    inner = simulated_transport(SimulatorConfig(latency=0.3), clock=clock)
    tap = Tap(inner, clock, at=25, hook=sigint)
    source = make_input(tmp_path, 150)

    def run() -> RunSummary:
        return run_batch(source, settings=Settings(rate=20.0), token=TOKEN, clock=clock,
                         transport=tap, handle_signals=True)  # fmt: skip

    with pytest.raises(Interrupted) as raised:
        run()
    summary = raised.value.summary
    assert isinstance(summary, RunSummary)
    assert summary.stop_reason is Reason.NOT_SENT_INTERRUPTED
    assert summary.rows == 150
    got = read_results(results_path(source))
    assert [int(r["row"]) for r in got] == list(range(1, 151))
    counts = Counter(r["outcome"] for r in got)
    assert counts["ok"] + counts["skipped"] == 150
    assert counts["ok"] >= 25  # the request that met the signal was answered in the grace
    assert counts["ok"] == inner.count(200)
    assert summary.reasons[Reason.NOT_SENT_INTERRUPTED] == counts["skipped"] > 0
    assert {r["error"] for r in got if r["outcome"] == "skipped"} == {"not sent: interrupted"}
    not_ok = [r["identifier"] for r in got if r["outcome"] != "ok"]
    sent_before = len(inner.requests)

    again = run()
    assert again.stop_reason is None
    assert again.resumed == counts["ok"]
    assert Counter(r.identifier for r in inner.requests[sent_before:]) == Counter(not_ok)
    assert {r["outcome"] for r in read_results(results_path(source))} == {"ok"}
    assert not journal_of(source).exists()


def test_one_sigint_gives_requests_on_the_wire_the_grace_period_then_cuts_them_off(
    tmp_path: Path,
) -> None:
    """One SIGINT with answers slower than the grace: the run ends GRACE virtual seconds
    after the signal, and the rows still on the wire are in_flight_interrupted."""
    clock = FakeClock()
    inner = simulated_transport(SimulatorConfig(latency=30.0), clock=clock)
    signalled: list[float] = []

    def once() -> None:
        signalled.append(clock.now())
        sigint()

    concurrency = 8
    tap = Tap(inner, clock, at=concurrency, hook=once)
    source = make_input(tmp_path, 50)
    with pytest.raises(Interrupted) as raised:
        run_batch(source, settings=Settings(rate=100.0, concurrency=concurrency), token=TOKEN,
                  clock=clock, transport=tap, handle_signals=True)  # fmt: skip

    assert clock.now() - signalled[0] == pytest.approx(GRACE, abs=0.01)
    summary = raised.value.summary
    assert isinstance(summary, RunSummary)
    assert summary.reasons[Reason.IN_FLIGHT_INTERRUPTED] == len(inner.requests) == concurrency
    assert summary.reasons[Reason.NOT_SENT_INTERRUPTED] == 50 - concurrency
    assert len(read_results(results_path(source))) == 50


def test_a_second_sigint_stops_at_once_without_the_grace_period(tmp_path: Path) -> None:
    """Two SIGINTs with slow answers: the run ends at the second one, not after the answers
    or the grace period; rows cut off on the wire say so, and every row is listed."""
    clock = FakeClock()
    latency, second_after = 3.0, 0.5
    inner = simulated_transport(SimulatorConfig(latency=latency), clock=clock)
    signalled: list[float] = []

    def twice() -> None:
        signalled.append(clock.now())
        sigint()
        asyncio.get_running_loop().call_later(second_after, sigint)

    concurrency = 8
    tap = Tap(inner, clock, at=concurrency, hook=twice)
    source = make_input(tmp_path, 100)
    with pytest.raises(Interrupted):
        run_batch(source, settings=Settings(rate=100.0, concurrency=concurrency), token=TOKEN,
                  clock=clock, transport=tap, handle_signals=True)  # fmt: skip

    assert signalled
    assert clock.now() - signalled[0] <= second_after + 0.01  # not 3 s answers, not 5 s grace
    assert tap.seen == []  # no answer came back: every request was cut off
    got = read_results(results_path(source))
    assert [int(r["row"]) for r in got] == list(range(1, 101))
    in_flight = [r for r in got if r["error"].startswith("interrupted while in flight")]
    assert 1 <= len(in_flight) <= concurrency
    assert len(in_flight) == len(inner.requests)
    assert {r["outcome"] for r in got} == {"skipped"}
    assert journal_of(source).exists()
