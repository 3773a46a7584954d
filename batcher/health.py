"""The run's health: trouble that belongs to the whole run, not to one row.

Two kinds, each a reason to hold or stop the run rather than burn the file:

* **An outage.** When ``OUTAGE_AFTER`` answers in a row, each for a different
  contact, are no answer at all (connection refused or reset, DNS or TLS failure,
  timeout) or a gateway's 502/503/504, the API is unreachable. Workers then take
  no new turns (``admit`` holds them) except one probe at a time, the next row's
  own request, at a growing interval (1 s, then each wait a fifth longer than the
  last, up to 30 s: the run notices the API back within about a fifth of the time
  it was away, and a ten-minute outage costs about 30 probes). Rows caught in
  it do not spend their attempts (``Policy.decide(..., api_down=True)``). The first
  real answer ends it, and the run goes on at the pace it had. An outage longer
  than ``outage_wait`` stops the run, resumably.
* **Refusals that hit every row.** ``max_same_errors`` rows answered in a row, for
  different contacts, all refused with the same status and message; or
  ``max_errors`` rows refused or failed (a count, or a share of the rows answered
  once 100 have been). Either stops the run, resumably, quoting the cause.

Scattered faults (a 500 here, a dropped connection there, 404s for deleted
contacts) are neither: they stay the row's own business.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import anyio

from batcher.clock import Clock
from batcher.models import Answer, OutageRecord, Outcome, Reason
from batcher.policy import Finish

#: Gateway statuses that mean the API behind it is not answering.
OUTAGE_STATUSES = frozenset({502, 503, 504})
#: No-answers in a row, each for a different contact, that make an outage.
OUTAGE_AFTER = 5
#: The first wait before a probe, growing by ``PROBE_GROWTH`` after each failed one up to
#: ``MAX_PROBE``. Doubling (probes at 1, 3, 7, 15, 31 s) noticed an API back at 15.2 s only
#: at 31 s; growing by a fifth, the wait near any moment is about a fifth of the outage.
FIRST_PROBE = 1.0
PROBE_GROWTH = 1.2
MAX_PROBE = 30.0
#: Rows answered before a ``max_errors`` share is judged.
MIN_ANSWERED_FOR_SHARE = 100


def is_outage_sign(answer: Answer) -> bool:
    """An answer that says nothing about the row: none came, or a gateway's 502/503/504."""
    return answer.http_status is None or answer.http_status in OUTAGE_STATUSES


@dataclass(frozen=True, slots=True)
class HealthLimits:
    """When trouble of the whole run stops it.

    Attributes:
        outage_wait: Seconds an outage may last before the run stops (0: at once).
        max_same_errors: Identical refusals in a row that stop the run (0: never).
        max_errors: Rows refused or failed that stop the run, or None.
        max_errors_share: Share (0-1) of the rows answered that stops the run, or None.
    """

    outage_wait: float = 600.0
    max_same_errors: int = 50
    max_errors: int | None = None
    max_errors_share: float | None = None


@dataclass(slots=True)
class Outage:
    """One stretch of the API not answering.

    Attributes:
        since: When the first of the no-answers that made it was answered (clock time).
        last_error: The latest error seen in it.
        next_probe: When the next probe may go.
        interval: The wait after the next failed probe.
        probes: Probes sent so far.
    """

    since: float
    last_error: str
    next_probe: float
    interval: float = FIRST_PROBE * PROBE_GROWTH
    probes: int = 0


@dataclass(slots=True)
class _Streak:
    """Identical refusals in a row: the (status, message) and the contacts they hit."""

    key: tuple[int | None, str] | None = None
    contacts: set[str] = field(default_factory=set)


class Health:
    """Watches every answer and every final outcome; see the module docstring."""

    def __init__(self, limits: HealthLimits, clock: Clock) -> None:
        self._limits = limits
        self._clock = clock
        # Clock times are shown as the wall-clock time they stand for.
        self._wall_at = (clock.now(), datetime.now(UTC))
        #: The outage now going on, or None.
        self.outage: Outage | None = None
        #: Every outage of the run so far, for the summary.
        self.history: list[OutageRecord] = []
        self._signs: list[tuple[str, float]] = []  # (contact, when): a streak of no-answers
        self._probe_out = False
        self._changed = anyio.Event()
        self._same = _Streak()
        self._answered = 0
        self._errors = 0

    # -- outages ----------------------------------------------------------------------------

    async def admit(self) -> bool | None:
        """Wait until this worker may send: True as a probe of an outage, None normally.

        False: the outage has lasted longer than ``outage_wait``; the caller stops the run.
        """
        clock = self._clock
        while (outage := self.outage) is not None:
            give_up = outage.since + self._limits.outage_wait
            if clock.now() >= give_up:
                return False
            if not self._probe_out and clock.now() >= outage.next_probe:
                self._probe_out = True
                outage.probes += 1
                return True
            until = give_up if self._probe_out else min(outage.next_probe, give_up)
            changed = self._changed
            with anyio.move_on_after(max(0.0, until - clock.now())):
                await changed.wait()
        return None

    def answered(self, contact: str, answer: Answer, *, probe: bool) -> None:
        """Take one answer into account (every answer, probes included)."""
        now = self._clock.now()
        if probe:
            self._probe_out = False
        if not is_outage_sign(answer):
            self._signs.clear()
            if self.outage is not None:
                self._end_outage(now)
            return
        outage = self.outage
        if outage is not None:
            outage.last_error = answer.error
            if probe:
                outage.next_probe = now + outage.interval
                outage.interval = min(outage.interval * PROBE_GROWTH, MAX_PROBE)
            self._notify()
            return
        if all(c != contact for c, _ in self._signs):
            self._signs.append((contact, now))
        if len(self._signs) >= OUTAGE_AFTER:
            since = self._signs[0][1]
            self.outage = Outage(since, answer.error, next_probe=now + FIRST_PROBE)
            self._signs.clear()
            self._notify()

    @property
    def api_down(self) -> bool:
        return self.outage is not None

    def outage_note(self) -> str:
        """For the person watching: since when, and when the next try is."""
        outage = self.outage
        if outage is None:
            return ""
        next_in = max(0.0, outage.next_probe - self._clock.now())
        return f"API unreachable since {self.clock_time(outage.since)}, next try in {next_in:.0f} s"

    def outage_stop_message(self) -> str:
        outage = self.outage
        assert outage is not None  # noqa: S101 - only asked for during an outage
        waited = self._clock.now() - outage.since
        return (
            f"stopped: the API has been unreachable since {self.clock_time(outage.since)} "
            f"({waited:.0f} s, longer than --outage-wait); last error: {outage.last_error}. "
            "Rows not sent are marked skipped; run the same command once the API answers"
        )

    def clock_time(self, when: float) -> str:
        """A clock time as the local wall-clock time it stands for (``02:13:05``)."""
        return self._wall(when).astimezone().strftime("%H:%M:%S")

    def close(self) -> None:
        """The run is over: an outage still going on is recorded as it stands."""
        if self.outage is not None:
            self.history.append(self._record(self.outage, None))

    def _end_outage(self, now: float) -> None:
        assert self.outage is not None  # noqa: S101 - the caller checked
        self.history.append(self._record(self.outage, now))
        self.outage = None
        self._notify()

    def _record(self, outage: Outage, end: float | None) -> OutageRecord:
        return OutageRecord(
            start=self._wall(outage.since).isoformat(timespec="seconds"),
            end="" if end is None else self._wall(end).isoformat(timespec="seconds"),
            seconds=(self._clock.now() if end is None else end) - outage.since,
            probes=outage.probes,
            last_error=outage.last_error,
        )

    def _wall(self, when: float) -> datetime:
        at, wall = self._wall_at
        return wall + timedelta(seconds=when - at)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    # -- refusals ---------------------------------------------------------------------------

    def finished(
        self, contact: str, finish: Finish, http_status: int | None
    ) -> tuple[Reason, str] | None:
        """Take a row's final outcome from an answer into account; a stop if one is due."""
        self._answered += 1
        limits = self._limits
        if finish.outcome is Outcome.FAILED:
            self._errors += 1
        if finish.reason in (Reason.REFUSED, Reason.UNCONFIRMED):
            # Every "200 without a contactId" is the same fault, whatever page came back.
            message = finish.error if finish.reason is Reason.REFUSED else "unconfirmed"
            key = (http_status, message)
            if key != self._same.key:
                self._same = _Streak(key, set())
            self._same.contacts.add(contact)
        else:
            self._same = _Streak()
        same = len(self._same.contacts)
        if limits.max_same_errors and same >= limits.max_same_errors:
            return Reason.NOT_SENT_SAME_ERRORS, (
                f"stopped: the last {same} rows were all refused with "
                f'"{finish.error}"; nothing else was sent. Fix the cause, then run the same '
                "command to send the rest, or batcher retry --outcomes failed"
            )
        if limits.max_errors is not None and self._errors >= limits.max_errors:
            return Reason.NOT_SENT_MAX_ERRORS, (
                f"stopped: {self._errors} rows refused or failed (--max-errors "
                f"{limits.max_errors}); nothing else was sent. Fix the cause, then run the "
                "same command to send the rest"
            )
        share = limits.max_errors_share
        if (
            share is not None
            and self._answered >= MIN_ANSWERED_FOR_SHARE
            and self._errors >= share * self._answered
        ):
            return Reason.NOT_SENT_MAX_ERRORS, (
                f"stopped: {self._errors} of {self._answered} rows answered were refused or "
                f"failed (--max-errors {share:.0%}); nothing else was sent. Fix the cause, "
                "then run the same command to send the rest"
            )
        return None
