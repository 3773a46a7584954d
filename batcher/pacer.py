"""The pace of the whole run: one ``Pacer`` shared by all workers, giving out turns.

A turn is one request's permission to leave::

    async with pacer.turn(contact) as turn:
        if turn.granted:
            answer = await client.send(request)
            turn.answered(answer)

Leaving the block gives the turn back whatever happened (an unanswered turn counts
against no budget). A turn waits, in this order, for: the contact's own budget
(``budget``), a token of the in-flight cap (``inflight``), the end of a 429's pause, a
token of the even spacing (``spacing``, on ``aiolimiter``), and the run's budget and
ceiling (``budget``); a pause that begins after its
token was taken sends it back to wait the pause out and take another. The three modules
each own one algorithm; this one only puts them in order and tells them what happened.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio

from batcher.budget import Budget, BudgetKind, PacingConfig, Ticket
from batcher.clock import Clock
from batcher.inflight import InFlightCap
from batcher.models import Answer
from batcher.spacing import Spacing

__all__ = ["BudgetKind", "Pacer", "PacingConfig", "Turn"]

#: Longest a request waiting for the budget sleeps before it looks again: what the
#: answers meanwhile taught the budget must count at once.
_RECHECK = 0.05
#: Seconds early that count as on time: a sleep until a computed instant can wake a
#: rounding error before it, and must not sleep that error again (forever, on a clock that
#: only moves when every task waits).
_ON_TIME = 1e-9


class Turn:
    """One request's turn (see the module docstring)."""

    def __init__(self, pacer: Pacer, ticket: Ticket | None, token: object | None) -> None:
        self._pacer = pacer
        self._ticket = ticket
        self._token = token
        #: Whether the request may leave (False: the run stopped while it waited).
        self.granted = ticket is not None
        self._open = self.granted

    def answered(self, answer: Answer) -> None:
        """The request got ``answer`` (or none: an answer with no HTTP status)."""
        self._close(answer)

    def _give_back(self) -> None:
        self._close(None)

    def _close(self, answer: Answer | None) -> None:
        """Hand the turn back once: answered, or (``None``) never sent."""
        if self._open and self._ticket is not None:
            self._open = False
            self._pacer._finish(self._ticket, self._token, answer)


class Pacer:
    """Gives out turns at the pace the run has learned; see the module docstring."""

    def __init__(
        self,
        config: PacingConfig,
        clock: Clock,
        *,
        cpu_time: Callable[[], float] | None = None,
    ) -> None:
        self._clock = clock
        self._budget = Budget(config, clock.now())
        self._spacing = Spacing(*self._budget.spacing())
        self._cap = InFlightCap(cpu_time or clock.cpu_time, clock.now())
        self._pacing = 0  # turns past the cap, waiting for the spacing or the budget
        self._waiting: set[anyio.CancelScope] = set()

    @property
    def rate(self) -> float:
        """Requests per second the run is paced at, as now."""
        return self._budget.rate

    @property
    def budget(self) -> BudgetKind:
        """What the rate headers said the budget is."""
        return self._budget.kind

    @property
    def limit(self) -> float | None:
        """The last sensible X-RateLimit-Limit seen, or None."""
        return self._budget.limit

    @property
    def throttled(self) -> int:
        """429 answers seen."""
        return self._budget.throttled

    @property
    def in_flight_cap(self) -> float:
        """Most requests in flight at once, as now (see ``inflight``)."""
        return self._cap.limit

    @property
    def paused_for(self) -> float:
        """Seconds left of the shared pause after a 429 (0 when not paused)."""
        return max(0.0, self._budget.paused_until - self._clock.now())

    def stop_waiting(self) -> None:
        """End every wait for a turn: those turns are not granted."""
        for scope in self._waiting:
            scope.cancel()

    @asynccontextmanager
    async def turn(self, contact: str) -> AsyncIterator[Turn]:
        """Wait for a turn to send one request to ``contact``; given back on leaving."""
        turn = Turn(self, None, None)
        with anyio.CancelScope() as scope:
            self._waiting.add(scope)
            try:
                turn = await self._wait(contact)
            finally:
                self._waiting.discard(scope)
        try:
            yield turn
        finally:
            turn._give_back()

    async def _wait(self, contact: str) -> Turn:
        budget, clock = self._budget, self._clock
        # The contact's own budget first, holding nothing of the run's meanwhile.
        await self._until(lambda: budget.contact_earliest(contact, clock.now()))
        token = await self._cap.take(pace_idle=self._pacing == 0)
        try:
            self._pacing += 1
            try:
                paced = False
                while not paced:
                    paced = await self._paced(contact)
            finally:
                self._pacing -= 1
        except BaseException:
            self._cap.give(token)
            raise
        return Turn(self, budget.send(contact, clock.now()), token)

    async def _paced(self, contact: str) -> bool:
        """Wait out a 429's pause, then for a token of the spacing, then for the run's budget
        and ceiling; False if a pause began meanwhile. A token is not kept through a pause:
        every request that waited it out would then leave the moment it ends, as one burst."""
        budget, clock = self._budget, self._clock
        await self._until(lambda: budget.paused_until)
        await self._spacing.wait(on_hold=budget.held_back)
        while budget.earliest(contact, (now := clock.now())) > now + _ON_TIME:
            if budget.paused_until > now + _ON_TIME:
                return False
            await self._until(lambda: budget.earliest(contact, clock.now()))
        return True

    async def _until(self, when: Callable[[], float]) -> None:
        """Sleep until ``when()`` (looked at again every _RECHECK seconds) has come."""
        clock = self._clock
        while (wait := when() - clock.now()) > _ON_TIME:
            await clock.sleep(min(wait, _RECHECK) if math.isfinite(wait) else _RECHECK)

    def _finish(self, ticket: Ticket, token: object | None, answer: Answer | None) -> None:
        if token is not None:
            self._cap.give(token)
        now = self._clock.now()
        self._cap.tick(now)
        if answer is None or not answer.sent:
            self._budget.unsent(ticket)
        if answer is not None:
            self._budget.answered(ticket, answer, now)
            self._spacing.adjust(*self._budget.spacing())
