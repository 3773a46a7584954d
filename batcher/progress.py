"""The progress bar: the only module that imports tqdm.

The runner always talks to a ``Progress``; when there is no terminal (cron,
CI, a pipe) or ``--no-progress`` is given it is a ``NullProgress``, so no
loop ever asks "are we quiet?".
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn, Protocol, TextIO

from batcher.models import Outcome

if TYPE_CHECKING:
    from tqdm import tqdm


@dataclass(frozen=True, slots=True)
class Status:
    """How the run is going, for the bar (refreshed twice a second).

    Attributes:
        pace: Requests per second the run is paced at.
        requeued: Rows set aside after a 449, waiting for their due time.
        retrying: Rows set aside after a failure (backoff), waiting for their due time.
        due_in: Seconds until the first set-aside row is due.
        paused_for: Seconds left of a 429's pause.
        outage: "API unreachable since ..., next try in 8 s" during an outage, else "".
    """

    pace: float
    requeued: int = 0
    retrying: int = 0
    due_in: float = 0.0
    paused_for: float = 0.0
    outage: str = ""


class Progress(Protocol):
    def start(self, total: int, done: int) -> None:
        """The run begins: ``total`` rows, ``done`` of them finished by an earlier run."""

    def advance(self, outcome: Outcome) -> None:
        """One more row is done (not called for rows a stop left unsent)."""

    def note(self, message: str) -> None:
        """A line for the person watching (on stderr, without breaking the bar)."""

    def show(self, status: Status) -> None:
        """How the run is going now (the counts of rows done are the bar's own)."""

    def close(self) -> None: ...


class NullProgress:
    """No bar; notes go to ``stream`` as plain lines, or nowhere when it is None."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    def start(self, total: int, done: int) -> None:
        pass

    def advance(self, outcome: Outcome) -> None:
        pass

    def note(self, message: str) -> None:
        if self._stream is not None:
            print(f"batcher: {message}", file=self._stream, flush=True)

    def show(self, status: Status) -> None:
        pass

    def close(self) -> None:
        pass


class BarProgress:
    """A tqdm bar on stderr: rows done of total, pace, and ok / failed / waiting counts.

    The bar appears when the run starts (``start``), so whatever is printed before it
    (the plan) stands on lines of its own, and a resumed run's bar starts at the rows
    already done.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._bar: tqdm[NoReturn] | None = None
        self._ok = 0
        self._failed = 0
        self._text = ""
        self._pace = 0.0

    def start(self, total: int, done: int) -> None:
        from tqdm import tqdm  # noqa: PLC0415 - keep `batcher --help` fast

        # A terminal that reports no size (`script` run without a terminal around it, some
        # CI pseudo-terminals) would get a bar 0 columns wide on row -1, that is none at all.
        follow_size = all(_terminal_size(self._stream))
        self._bar = tqdm(
            total=total,
            initial=done,
            file=self._stream,
            unit="row",
            dynamic_ncols=follow_size,
            ncols=None if follow_size else _FALLBACK_SIZE[0],
            nrows=None if follow_size else _FALLBACK_SIZE[1],
            leave=True,
        )

    def note(self, message: str) -> None:
        if self._bar is None:
            print(f"batcher: {message}", file=self._stream, flush=True)
        else:
            self._bar.write(f"batcher: {message}", file=self._stream)

    def advance(self, outcome: Outcome) -> None:
        if outcome is Outcome.OK:
            self._ok += 1
        elif outcome is Outcome.FAILED:
            self._failed += 1
        if self._bar is not None:
            self._bar.update(1)

    def show(self, status: Status) -> None:
        self._pace = status.pace
        text = bar_text(status, ok=self._ok, failed=self._failed)
        if text != self._text and self._bar is not None:
            self._text = text
            self._bar.set_postfix_str(text, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            # The last frame shows the final counts, not those of the last half-second tick;
            # nothing waits any more.
            self.show(Status(pace=self._pace))
            self._bar.close()


#: The bar's columns and rows on a terminal that does not say its size.
_FALLBACK_SIZE = (100, 24)


def _terminal_size(stream: TextIO) -> tuple[int, int]:
    """Columns and rows of the terminal ``stream`` writes to; 0 where it says none."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (OSError, ValueError):  # io.UnsupportedOperation is both
        return (0, 0)
    return (size.columns, size.lines)


def bar_text(status: Status, *, ok: int, failed: int) -> str:
    """What the bar says after its counts, each number with its name:
    ``19.6 req/s · ok 120 · failed 1 · 449 waiting 3 · retrying 2 · next in 4s``.

    Set-aside rows and the next due time appear only while some wait; a 429 pause and an
    outage only while they last (an outage says so first: no request goes meanwhile).
    """
    parts = [status.outage] if status.outage else []
    parts += [f"{status.pace:.1f} req/s", f"ok {ok}", f"failed {failed}"]
    if status.requeued:
        parts.append(f"449 waiting {status.requeued}")
    if status.retrying:
        parts.append(f"retrying {status.retrying}")
    if status.requeued or status.retrying:
        parts.append(f"next in {status.due_in:.0f}s")
    if status.paused_for > 0:
        parts.append(f"paused {status.paused_for:.1f}s (429)")
    return " · ".join(parts)


def make_progress(enabled: bool, *, quiet: bool = False, stream: TextIO | None = None) -> Progress:
    """A bar when asked for and stderr is a terminal; otherwise plain notes (none if quiet)."""
    stream = stream or sys.stderr
    if quiet:
        return NullProgress()
    if enabled and stream.isatty():
        return BarProgress(stream)
    return NullProgress(stream)
