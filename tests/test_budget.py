"""The budget learner, ``batcher.budget.Budget``, as tables: departures and answers go in at
given times, ``kind``, ``limit``, ``earliest()``, ``spacing()`` and ``paused_until`` come out.
No event loop and no clock: the learner is pure."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from batcher.budget import Budget, BudgetKind, PacingConfig, Ticket
from batcher.models import Answer, AnswerKind

OK = Answer(AnswerKind.OK, 200)
#: No answer came: it tells the learner nothing about the budget.
TIMED_OUT = Answer(AnswerKind.RETRYABLE, None, error="timed out")
#: The defaults spelled out, since the expected times below are computed from them.
WINDOW = 1.0
MARGIN = 0.005
CEILING_MARGIN = 0.005
SPAN = WINDOW + MARGIN


def headers(limit: float | None, remaining: float | None) -> Answer:
    """A 200 answer carrying X-RateLimit headers."""
    return Answer(AnswerKind.OK, 200, contact_id=1, limit=limit, remaining=remaining)


def throttled(retry_after: float | None = None) -> Answer:
    """A 429 answer."""
    return Answer(AnswerKind.RATE_LIMITED, 429, retry_after=retry_after)


@dataclass(frozen=True)
class Trip:
    """One request: to ``contact``, left at ``sent``, answered ``answer`` at ``back``
    (``answer`` None: never answered, still on the wire; ``held``: the spacing held it back
    before it left)."""

    contact: str
    sent: float
    back: float
    answer: Answer | None
    held: bool = False


def trip(contact: str, sent: float, answer: Answer | None, *, latency: float = 0.02) -> Trip:
    return Trip(contact, sent, sent + latency, answer)


def replay(trips: Sequence[Trip], config: PacingConfig | None = None) -> Budget:
    """A learner that saw ``trips``: every departure and answer in time order. At one time
    the answers come first (a worker sends its next request once the last is answered),
    then the departures, each in the order given."""
    budget = Budget(config or PacingConfig(), 0.0)
    events = [(t.back, 0, n) for n, t in enumerate(trips) if t.answer is not None]
    events += [(t.sent, 1, n) for n, t in enumerate(trips)]
    tickets: dict[int, Ticket] = {}
    for now, is_departure, n in sorted(events):
        one = trips[n]
        if is_departure:
            if one.held:
                budget.held_back()
            tickets[n] = budget.send(one.contact, now)
        else:
            assert one.answer is not None
            budget.answered(tickets[n], one.answer, now)
    return budget


def rounds(
    *latencies: float, held: bool = True, answer: Answer = OK, start: float = 0.0
) -> list[Trip]:
    """Round trips one after another (each sent when the last was answered), to new
    contacts; ``held``: the spacing held each back before it left."""
    trips = []
    now = start
    for n, latency in enumerate(latencies):
        trips.append(Trip(f"id:{n}", now, now + latency, answer, held=held))
        now += latency
    return trips


def rates_after(trips: Sequence[Trip], config: PacingConfig) -> list[float]:
    """The pace after each answer."""
    return [replay(trips[: n + 1], config).rate for n in range(len(trips))]


def first_seen(*answers: Answer, gap: float = 0.1) -> list[Trip]:
    """One request to a new contact every ``gap`` seconds, answered ``answers`` in turn."""
    return [trip(f"id:{n}", n * gap, answer) for n, answer in enumerate(answers)]


# -- what kind of budget the headers show ---------------------------------------------------

GARBAGE = [
    pytest.param(None, None, id="no-headers"),
    pytest.param(None, 5, id="no-limit"),
    pytest.param(20, None, id="no-remaining"),
    pytest.param(0, 0, id="limit-zero"),
    pytest.param(-10, 5, id="limit-negative"),
    pytest.param(20, -1, id="remaining-negative"),
    pytest.param(10, 11, id="remaining-above-limit"),
    pytest.param(0.5, 0, id="limit-below-one"),
]


@pytest.mark.parametrize(("limit", "remaining"), GARBAGE)
def test_garbage_headers_are_no_budget(limit: float | None, remaining: float | None) -> None:
    """Missing, zero, negative or inconsistent rate headers teach no budget: kind NONE, no
    limit, and exactly the climb that answers without any headers make."""
    garbage = replay(first_seen(*[headers(limit, remaining)] * 4))
    assert garbage.kind is BudgetKind.NONE
    assert garbage.limit is None
    assert garbage.earliest("id:9", 1.0) == 1.0
    garbage_trips = rounds(*[0.02] * 4, answer=headers(limit, remaining))
    assert rates_after(garbage_trips, PacingConfig()) == rates_after(
        rounds(*[0.02] * 4), PacingConfig()
    )
    assert replay(garbage_trips).spacing() == (1580.0, 2.0)  # 5 -> 110 -> 320 -> 740 -> 1580


@pytest.mark.parametrize(
    ("trips", "kind", "limit"),
    [
        pytest.param([], BudgetKind.UNKNOWN, None, id="nothing-yet"),
        pytest.param(first_seen(OK), BudgetKind.NONE, None, id="no-headers"),
        pytest.param(first_seen(headers(20, 19)), BudgetKind.SHARED, 20, id="one-fresh"),
        pytest.param(
            first_seen(headers(20, 19), headers(20, 18)),
            BudgetKind.SHARED,
            20,
            id="fresh-then-drawn-on",
        ),
        pytest.param(first_seen(headers(20, 12)), BudgetKind.SHARED, 20, id="drawn-on"),
        pytest.param(
            first_seen(headers(5, 4), headers(5, 4)), BudgetKind.PER_PATH, 5, id="two-fresh"
        ),
        pytest.param(
            first_seen(headers(5, 5), headers(5, 4)),
            BudgetKind.PER_PATH,
            5,
            id="two-fresh-one-not-yet-counted",
        ),
        pytest.param(
            first_seen(headers(5, 4), headers(5, 4), headers(5, 3)),
            BudgetKind.SHARED,
            5,
            id="two-fresh-then-a-first-seen-drawn-on",
        ),
        pytest.param(
            first_seen(headers(5, 4), headers(5, 3), headers(5, 4)),
            BudgetKind.SHARED,
            5,
            id="fresh-answers-not-in-a-row",
        ),
        pytest.param(
            [trip("id:a", 0.0, headers(5, 4)), trip("id:a", 0.1, headers(5, 4))],
            BudgetKind.SHARED,
            5,
            id="one-contact-seen-within-a-window-is-not-first-seen",
        ),
        pytest.param(
            [trip("id:a", 0.0, headers(5, 4)), trip("id:a", 1.5, headers(5, 4))],
            BudgetKind.PER_PATH,
            5,
            id="one-contact-unseen-for-a-window-is-first-seen-again",
        ),
        pytest.param(
            first_seen(headers(1, 0), headers(1, 0)),
            BudgetKind.SHARED,
            1,
            id="a-limit-of-one-cannot-show-a-fresh-budget",
        ),
        pytest.param(
            first_seen(OK, headers(20, 19)), BudgetKind.SHARED, 20, id="headers-after-none"
        ),
        pytest.param(
            first_seen(headers(20, 19), headers(20, 18), OK, headers(0, 0), headers(20, 25)),
            BudgetKind.SHARED,
            20,
            id="shared-then-garbage-keeps-it",
        ),
        pytest.param(
            first_seen(headers(5, 4), headers(5, 4), OK, headers(-1, 3), TIMED_OUT),
            BudgetKind.PER_PATH,
            5,
            id="per-path-then-garbage-keeps-it",
        ),
        pytest.param(
            first_seen(headers(20, 19), headers(30, 28)),
            BudgetKind.SHARED,
            30,
            id="the-last-sensible-limit-counts",
        ),
    ],
)
def test_kind_of_budget(trips: list[Trip], kind: BudgetKind, limit: float | None) -> None:
    """Answers in, the kind of budget and the limit out."""
    budget = replay(trips)
    assert budget.kind is kind
    assert budget.limit == limit


# -- the spacing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "trips", "spacing"),
    [
        pytest.param(PacingConfig(start_rate=5.0), [], (5.0, 2.0), id="start"),
        pytest.param(PacingConfig(start_rate=0.5), [], (0.5, 1.0), id="start-below-one"),
        pytest.param(
            PacingConfig(start_rate=50.0, ceiling=2.0), [], (2.0, 2.0), id="ceiling-caps-start"
        ),
        pytest.param(
            PacingConfig(start_rate=50.0, ceiling=0.5), [], (0.5, 1.0), id="ceiling-below-one"
        ),
        pytest.param(PacingConfig(max_rate=3.0), [], (3.0, 2.0), id="max-rate-caps-start"),
        pytest.param(
            PacingConfig(), first_seen(headers(20, 19)), (20.0, 20.0), id="shared-whole-window"
        ),
        pytest.param(
            PacingConfig(window=2.0),
            first_seen(headers(20, 19)),
            (10.0, 20.0),
            id="shared-two-second-window",
        ),
        pytest.param(
            PacingConfig(ceiling=50.0),
            first_seen(headers(20, 19)),
            (20.0, 20.0),
            id="shared-under-the-ceiling",
        ),
        pytest.param(
            PacingConfig(ceiling=10.0),
            first_seen(headers(100, 99)),
            (10.0, 2.0),
            id="shared-over-the-ceiling-goes-at-the-ceiling",
        ),
        pytest.param(
            PacingConfig(ceiling=50.0),
            first_seen(headers(5, 4), headers(5, 4)),
            (50.0, 2.0),
            id="per-path-at-the-ceiling",
        ),
        pytest.param(
            PacingConfig(start_rate=5.0),
            first_seen(headers(5, 4), headers(5, 4)),
            (5.0, 2.0),
            id="per-path-without-ceiling-keeps-the-climbing-pace",
        ),
    ],
)
def test_spacing(config: PacingConfig, trips: list[Trip], spacing: tuple[float, float]) -> None:
    """What the learned budget asks of the even spacing: (rate, bucket)."""
    budget = replay(trips, config)
    assert budget.spacing() == spacing
    assert budget.rate == spacing[0]


# -- a shared budget is spent, never overspent ------------------------------------------------

#: A budget of 5 learned from the first request (answered at 0). The run's first requests
#: are counted from their answers (they open connections: their way there is unknown).
LEARN_5 = trip("id:first", -0.02, headers(5, 4))


@pytest.mark.parametrize(
    ("departures", "now", "earliest"),
    [
        pytest.param([], 0.02, 0.02, id="four-left"),
        pytest.param([0.02] * 3, 0.02, 0.02, id="one-left"),
        pytest.param([0.02] * 4, 0.02, SPAN, id="spent-at-once-then-wait-for-the-first"),
        pytest.param([0.02] * 4, 0.5, SPAN, id="still-spent-mid-window"),
        pytest.param([0.02] * 4, SPAN, SPAN, id="the-first-aged-out"),
        pytest.param([0.02] * 4 + [SPAN], SPAN, 0.02 + SPAN, id="then-the-next-four"),
        pytest.param([0.2, 0.4, 0.6, 0.8], 0.8, SPAN, id="evenly-spent"),
        pytest.param([0.2, 0.4, 0.6, 0.8, SPAN], SPAN, 0.2 + SPAN, id="sliding"),
        pytest.param([0.02] * 4 + [5.0], 5.0, 5.0, id="long-after"),
    ],
)
def test_shared_budget_of_l_per_window_and_margin(
    departures: list[float], now: float, earliest: float
) -> None:
    """Under a shared budget of L, a request may go whenever fewer than L of ours left in
    the last window + margin (1.01 s): a window's budget may go at once, then none until
    the first of them ages out."""
    budget = replay(
        [LEARN_5] + [Trip(f"id:{n}", t, math.inf, None) for n, t in enumerate(departures)]
    )
    assert budget.kind is BudgetKind.SHARED
    assert budget.earliest("id:next", now) == pytest.approx(earliest, abs=1e-12)


def test_a_shared_budget_never_lets_more_than_l_go_in_any_window_and_margin() -> None:
    """Sending each request at the earliest the learner allows, for ten windows, budgets of 5
    and of 20: exactly L in every window + margin, never more, in bursts of L."""
    for limit in (5, 20):
        budget = replay([trip("id:first", -0.02, headers(limit, limit - 1))])
        times = [0.0]
        now = 0.02
        for n in range(10 * limit):
            now = budget.earliest(f"id:{n}", now)
            budget.send(f"id:{n}", now)
            times.append(now)
            if now > 10.0:
                break
        for i in range(len(times) - limit):
            assert times[i + limit] - times[i] >= SPAN - 1e-9
        # In bursts: each window's L leave at one instant (the first window's budget after
        # the first answer), as the window that spent them ages out.
        assert times[1:limit] == [0.02] * (limit - 1)
        assert times[limit : 2 * limit] == pytest.approx([SPAN] + [0.02 + SPAN] * (limit - 1))


@pytest.mark.parametrize(
    ("answer", "free_now"),
    [
        # Our one request, answered Remaining 2 of 10: 7 were others'. 3 are ours in all,
        # the first already spent: 2 may go now, then none until it ages out.
        pytest.param(headers(10, 2), 2, id="others-used-seven"),
        pytest.param(headers(10, 0), 0, id="others-used-all-but-ours"),
        pytest.param(headers(10, 9), 9, id="no-others"),
    ],
)
def test_others_use_holds_slots_back_until_it_ages_out(answer: Answer, free_now: int) -> None:
    """Others' use is (L - Remaining) minus ours; it holds back that many of our slots until
    the answer that showed it is a window + margin old, then the whole budget is ours but
    for our own requests still in the window."""
    budget = replay([trip("id:first", -0.02, answer)])
    now = 0.02
    sent = 0
    while budget.earliest(f"id:{sent}", now) == now and sent < 20:
        budget.send(f"id:{sent}", now)
        sent += 1
    assert sent == free_now
    assert budget.earliest("id:next", now) == pytest.approx(SPAN)
    # Aged out: the whole budget of 10, less our own still in the window (those at 0.02).
    later = SPAN
    more = 0
    while budget.earliest(f"id:more{more}", later) == later and more < 20:
        budget.send(f"id:more{more}", later)
        more += 1
    assert more == 10 - free_now


def test_requests_that_left_together_do_not_hide_others_use() -> None:
    """Two of ours leave at one instant; the server counts the one answered second after
    the first, so its Remaining says one more was used. Neither answer may count the other
    as ours already counted: others' use (5 of 10) is then 5, not 4, and 3 more may go."""
    trips = [trip("id:a", 0.0, headers(10, 4)), trip("id:b", 0.0, headers(10, 3))]
    budget = replay(trips)
    free = 0
    while budget.earliest(f"id:{free}", 0.02) == 0.02 and free < 10:
        budget.send(f"id:{free}", 0.02)
        free += 1
    assert free == 3


# -- the ceiling -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ceiling", "departures", "now", "earliest"),
    [
        pytest.param(5.0, [0.0] * 4, 0.0, 0.0, id="room-for-one-more"),
        pytest.param(5.0, [0.0] * 5, 0.0, 1.0 + CEILING_MARGIN, id="five-at-once"),
        pytest.param(5.0, [0.0, 0.2, 0.4, 0.6, 0.8], 0.8, 1.005, id="five-spaced"),
        pytest.param(
            5.0, [0.0, 0.2, 0.4, 0.6, 0.8, 1.005], 1.005, 1.205, id="then-the-second-ages"
        ),
        pytest.param(2.5, [0.0, 0.0], 0.0, 1.005, id="fractional-ceiling-rounds-down"),
        pytest.param(0.5, [0.0], 0.0, 2.005, id="under-one-per-second"),
        pytest.param(50.0, [0.0] * 50, 0.3, 1.005, id="fifty"),
    ],
)
def test_the_ceiling_bounds_departures_in_any_second(
    ceiling: float, departures: list[float], now: float, earliest: float
) -> None:
    """Never more than R departures in any 1 s + ceiling_margin, from the first second."""
    trips = [Trip(f"id:{n}", t, math.inf, None) for n, t in enumerate(departures)]
    budget = replay(trips, PacingConfig(start_rate=1000.0, ceiling=ceiling))
    assert budget.earliest("id:next", now) == pytest.approx(earliest, abs=1e-12)


def test_a_request_answered_after_r_later_ones_left_still_counts_from_its_arrival() -> None:
    """--rate 2: A and B leave at 0, B is answered at once, A (sent before any answer, so
    counted from its answer) only at 1.5 s, after C and D have left. A still counts from
    1.5: E may go once D is a second old, but F not until A is."""
    budget = Budget(PacingConfig(ceiling=2.0), 0.0)
    a = budget.send("id:a", 0.0)
    b = budget.send("id:b", 0.0)
    budget.answered(b, OK, 0.02)
    c_at = budget.earliest("id:c", 0.02)
    budget.send("id:c", c_at)
    d_at = budget.earliest("id:d", c_at)
    budget.send("id:d", d_at)
    budget.answered(a, OK, 1.5)
    e_at = budget.earliest("id:e", 1.5)
    assert e_at == pytest.approx(d_at + 1.0 + CEILING_MARGIN)
    budget.send("id:e", e_at)
    assert budget.earliest("id:f", e_at) == pytest.approx(1.5 + 1.0 + CEILING_MARGIN)


def test_the_ceiling_holds_under_a_larger_shared_budget() -> None:
    """A shared budget of 100 with a ceiling of 10: the ceiling bounds the burst."""
    config = PacingConfig(ceiling=10.0)
    trips = [trip("id:first", -0.02, headers(100, 99))]
    trips += [Trip(f"id:{n}", 0.02, math.inf, None) for n in range(9)]
    budget = replay(trips, config)
    assert budget.kind is BudgetKind.SHARED
    assert budget.earliest("id:next", 0.02) == pytest.approx(1.0 + CEILING_MARGIN)


def test_a_departure_given_back_counts_against_no_budget() -> None:
    """``unsent`` takes a departure back from the shared budget, the ceiling and the
    contact's own budget."""
    shared = replay([trip("id:first", -0.02, headers(2, 1))])
    ticket = shared.send("id:x", 0.02)
    assert shared.earliest("id:y", 0.02) == pytest.approx(SPAN)
    shared.unsent(ticket)
    assert shared.earliest("id:y", 0.02) == 0.02

    capped = replay([], PacingConfig(ceiling=2.0))
    capped.send("id:x", 0.0)
    ticket = capped.send("id:y", 0.0)
    assert capped.earliest("id:z", 0.0) == pytest.approx(1.0 + CEILING_MARGIN)
    capped.unsent(ticket)
    assert capped.earliest("id:z", 0.0) == 0.0

    per_path = replay(first_seen(headers(2, 1), headers(2, 1)))
    assert per_path.kind is BudgetKind.PER_PATH
    first = per_path.send("id:hot", 1.0)
    second = per_path.send("id:hot", 1.0)
    assert per_path.contact_earliest("id:hot", 1.0) == pytest.approx(1.0 + SPAN)
    per_path.unsent(second)
    assert per_path.contact_earliest("id:hot", 1.0) == 1.0
    per_path.unsent(first)
    assert per_path.contact_earliest("id:hot", 1.0) == 1.0


# -- per-path budgets --------------------------------------------------------------------------


def per_path_5(*more: Trip, ceiling: float | None = 50.0) -> Budget:
    """A learner that saw two fresh first-seen contacts (Limit 5) and then ``more``."""
    learn = [trip("id:p0", 0.0, headers(5, 4)), trip("id:p1", 0.0, headers(5, 4))]
    return replay([*learn, *more], PacingConfig(ceiling=ceiling))


@pytest.mark.parametrize(
    ("departures", "now", "contact_earliest"),
    [
        pytest.param([0.1] * 4, 0.1, 0.1, id="one-left"),
        pytest.param([0.1] * 5, 0.1, 0.1 + SPAN, id="five-at-once"),
        pytest.param([0.1, 0.3, 0.5, 0.7, 0.9], 0.9, 0.1 + SPAN, id="five-spaced"),
        pytest.param([0.1, 0.3, 0.5, 0.7, 0.9, 1.11], 1.11, 0.3 + SPAN, id="sliding"),
    ],
)
def test_a_per_path_budget_holds_each_contact_to_l(
    departures: list[float], now: float, contact_earliest: float
) -> None:
    """Each contact: at most L per window + margin; other contacts are not held by it."""
    budget = per_path_5(*(Trip("id:hot", t, math.inf, None) for t in departures))
    assert budget.kind is BudgetKind.PER_PATH
    assert budget.contact_earliest("id:hot", now) == pytest.approx(contact_earliest)
    assert budget.earliest("id:hot", now) == pytest.approx(contact_earliest)
    assert budget.earliest("id:other", now) == now
    assert budget.contact_earliest("id:other", now) == now


def test_a_contact_s_departures_before_the_per_path_budget_was_learned_count() -> None:
    """A hot contact that went three times before two fresh answers showed the budget is per
    path has two left in that window, not five."""
    trips = [Trip("id:hot", t, t + 0.01, OK) for t in (-0.01, 0.02, 0.04)]
    trips += [trip("id:p0", 0.05, headers(5, 4)), trip("id:p1", 0.05, headers(5, 4))]
    budget = replay(trips, PacingConfig(ceiling=50.0))
    assert budget.kind is BudgetKind.PER_PATH
    assert budget.contact_earliest("id:hot", 0.1) == 0.1
    budget.send("id:hot", 0.1)
    budget.send("id:hot", 0.1)
    assert budget.contact_earliest("id:hot", 0.1) == pytest.approx(0.0 + SPAN)


def test_a_contact_given_back_its_only_departure_is_forgotten_without_harm() -> None:
    """A per-path contact whose only departure was given back leaves an empty log; the
    once-a-window pruning must drop it, not fail on it."""
    budget = per_path_5()
    ticket = budget.send("id:gone", 0.1)
    budget.unsent(ticket)
    later = budget.send("id:later", 2.0)
    budget.answered(later, headers(5, 4), 2.02)
    assert budget.kind is BudgetKind.PER_PATH
    assert budget.contact_earliest("id:gone", 2.02) == 2.02


# -- the climb without headers -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "trips", "rates"),
    [
        pytest.param(
            PacingConfig(start_rate=5.0),
            rounds(0.01, 0.01, 0.01, 0.01),
            # 2r + 2/latency: the bucket's two plus r x latency, twice over per round trip.
            [210.0, 620.0, 1440.0, 3080.0],
            id="doubles-the-requests-per-round-trip",
        ),
        pytest.param(
            PacingConfig(start_rate=5.0),
            rounds(0.2, 0.2, 0.2),
            [20.0, 50.0, 110.0],
            id="a-slower-round-trip-climbs-less",
        ),
        pytest.param(
            PacingConfig(start_rate=5.0),
            rounds(0.01, 0.01, 0.01, held=False),
            [5.0, 5.0, 5.0],
            id="holds-when-the-pace-held-nothing-back",
        ),
        pytest.param(
            PacingConfig(start_rate=5.0),
            rounds(0.1, 0.206, 0.206),
            [30.0, 30.0, 30.0],
            id="holds-when-latency-grows-past-2x-fastest-plus-5ms",
        ),
        pytest.param(
            PacingConfig(start_rate=5.0),
            rounds(0.1, 0.204, 0.204),
            [30.0, 2 * 30.0 + 2 / 0.204, 2 * (60.0 + 2 / 0.204) + 2 / 0.204],
            id="latency-within-2x-fastest-plus-5ms-still-climbs",
        ),
        pytest.param(
            PacingConfig(start_rate=5.0),
            rounds(0.01, 0.01, 0.01, 0.01, answer=TIMED_OUT),
            [5.0] * 4,
            id="unanswered-never-climbs",
        ),
        pytest.param(
            PacingConfig(start_rate=5.0, ceiling=300.0),
            rounds(0.01, 0.01, 0.01, 0.01),
            [210.0, 300.0, 300.0, 300.0],
            id="stops-at-the-ceiling",
        ),
        pytest.param(
            PacingConfig(start_rate=5.0, max_rate=500.0),
            rounds(0.01, 0.01, 0.01),
            [210.0, 500.0, 500.0],
            id="stops-at-max-rate",
        ),
        pytest.param(
            PacingConfig(start_rate=5.0),
            [
                Trip("id:a", 0.0, 0.1, OK, held=True),
                Trip("id:b", 0.0, 0.2, OK, held=True),
                Trip("id:c", 0.2, 0.3, OK, held=True),
            ],
            [30.0, 30.0, 80.0],
            id="one-climb-per-round-trip-at-the-new-pace",
        ),
        pytest.param(
            PacingConfig(start_rate=5.0),
            [
                Trip("id:a", 0.0, 0.5, TIMED_OUT, held=True),
                Trip("id:b", 0.2, 0.6, OK, held=True),
                Trip("id:c", 0.6, 0.7, OK, held=True),
            ],
            [5.0, 5.0, 30.0],
            id="after-no-answer-a-climb-needs-a-round-trip-from-then-on",
        ),
    ],
)
def test_the_climb_without_headers(
    config: PacingConfig, trips: list[Trip], rates: list[float]
) -> None:
    """Without usable headers each round trip (an answer to a request sent at the current
    pace) may carry twice the requests the last one did (the bucket's two plus what the pace
    let go meanwhile) while answers are clean, latency does not grow (more than 2x the
    fastest + 5 ms) and the spacing held a request back."""
    assert rates_after(trips, config) == pytest.approx(rates)


def test_after_a_429_the_climb_is_10_percent_a_window() -> None:
    """A 429 halves a climbing pace; from then on it climbs 10 % a window, not per round
    trip."""
    config = PacingConfig(start_rate=40.0)
    trips = [Trip("id:429", 0.0, 0.25, throttled(0.5))]
    trips += rounds(*[0.125] * 24, start=0.75)  # answered at 0.875, 1.0, ..., 3.75
    rates = rates_after(trips, config)
    assert rates[0] == 20.0
    # One rise a window after the last change: at 1.25, 2.25 and 3.25.
    assert rates[1:] == pytest.approx([20.0] * 3 + [22.0] * 8 + [24.2] * 8 + [26.62] * 5)


# -- 429 -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("retry_after", "pause"),
    [
        pytest.param(None, 1.0, id="missing-waits-one-window"),
        pytest.param(0.0, 1.0, id="zero-waits-one-window"),
        pytest.param(-5.0, 1.0, id="negative-waits-one-window"),
        pytest.param(3.0, 3.0, id="honoured"),
        pytest.param(7200.0, 600.0, id="long-waits-at-most-max-pause"),
    ],
)
def test_a_429_pauses_every_request(retry_after: float | None, pause: float) -> None:
    """A 429 pauses every request (any contact) for Retry-After, or one window without a
    usable one, at most max_pause (the policy stops the run past it)."""
    budget = replay([Trip("id:1", 0.0, 0.5, throttled(retry_after))])
    assert budget.paused_until == pytest.approx(0.5 + pause)
    assert budget.throttled == 1
    for contact in ("id:1", "id:other"):
        assert budget.earliest(contact, 0.5) == pytest.approx(0.5 + pause)
    assert budget.earliest("id:other", 0.5 + pause + 1) == 0.5 + pause + 1


@pytest.mark.parametrize(
    ("sent_answered", "paused_until", "rate"),
    [
        pytest.param([(0.0, 0.5)], 2.5, 5.0, id="one"),
        pytest.param([(0.0, 0.5)] * 2, 2.5, 5.0, id="two-at-once-one-pause-one-drop"),
        pytest.param([(0.0, 0.5)] * 4, 2.5, 5.0, id="four-at-once"),
        pytest.param([(0.0, 0.5), (0.0, 1.0)], 3.0, 5.0, id="sent-before-the-drop-pauses-only"),
        pytest.param([(0.0, 0.5), (0.1, 3.0)], 5.0, 5.0, id="sent-before-answered-after-pause"),
        pytest.param([(0.0, 0.5), (0.51, 1.0)], 3.0, 2.5, id="sent-after-the-drop-drops-again"),
        pytest.param([(0.0, 0.5), (0.5, 1.0)], 3.0, 5.0, id="sent-as-it-dropped-is-before"),
        pytest.param([(0.0, 0.5), (2.5, 3.0)], 5.0, 2.5, id="after-the-pause-drops-again"),
    ],
)
def test_429s_for_one_overload_share_one_drop(
    sent_answered: list[tuple[float, float]], paused_until: float, rate: float
) -> None:
    """Every 429 pauses until its Retry-After, but the pace drops once per overload: a 429
    for a request sent before the last drop (in flight when the first 429 came) is the same
    overload, and dropping for each took a climbing pace to the 1/s floor in 20 ms."""
    trips = [
        Trip(f"id:{n}", sent, answered, throttled(2.0))
        for n, (sent, answered) in enumerate(sent_answered)
    ]
    budget = replay(trips, PacingConfig(start_rate=10.0))
    assert budget.paused_until == pytest.approx(paused_until)
    assert budget.rate == pytest.approx(rate)
    assert budget.throttled == len(sent_answered)


def test_the_first_drop_of_a_climb_goes_to_what_the_server_took() -> None:
    """A climb by round trips may be far past the limit at its first 429: the pace drops to
    the answers of the last window if that is less than half the pace; later drops halve."""
    config = PacingConfig(start_rate=5.0)
    climbed = rounds(0.01, 0.01, 0.01)  # 5 -> 210 -> 620 -> 1,440/s
    assert rates_after(climbed, config)[-1] == pytest.approx(1440.0)
    answers = [trip(f"id:ok{n}", 0.5 + 0.1 * n, OK) for n in range(8)]  # at 0.52 .. 1.22
    late = [*climbed, *answers, Trip("id:429", 1.25, 1.3, throttled(1.0))]
    assert replay(late, config).rate == pytest.approx(8.0)  # 8 answers in (0.3, 1.3]
    early = [*climbed, Trip("id:429", 0.04, 0.06, throttled(1.0))]
    assert replay(early, config).rate == pytest.approx(3.0)  # three answers so far
    again = [*late, trip("id:ok-again", 2.4, OK), Trip("id:429-again", 2.5, 2.55, throttled(1.0))]
    assert replay(again, config).rate == pytest.approx(4.0)  # the climb is over: halved
    # Taking more than half the pace: halved.
    busy = [*climbed, *[trip(f"id:b{n}", 0.3 + 0.001 * n, OK) for n in range(900)]]
    busy.append(Trip("id:429", 1.25, 1.3, throttled(1.0)))
    assert replay(busy, config).rate == pytest.approx(720.0)


@pytest.mark.parametrize(
    ("config", "rates"),
    [
        pytest.param(PacingConfig(start_rate=8.0), [4.0, 2.0, 1.0, 1.0, 1.0], id="min-rate-1"),
        pytest.param(PacingConfig(start_rate=8.0, min_rate=3.0), [4.0, 3.0, 3.0], id="min-rate-3"),
        pytest.param(
            PacingConfig(start_rate=8.0, ceiling=0.5), [0.5, 0.5], id="a-lower-ceiling-holds"
        ),
    ],
)
def test_429s_never_push_the_pace_below_min_rate(config: PacingConfig, rates: list[float]) -> None:
    """However many 429s come (each after the last pause), a climbing pace stays at
    min_rate or more, unless the ceiling is lower."""
    trips = [Trip(f"id:{n}", 2.0 * n, 2.0 * n + 0.01, throttled(1.0)) for n in range(len(rates))]
    assert rates_after(trips, config) == pytest.approx(rates)


def test_a_429_under_a_shared_budget_widens_the_margin_not_the_pace() -> None:
    """A shared budget is not slowed by a 429: its margin doubles (at most a tenth of the
    window), so each window's budget waits longer for the last one to age out."""
    trips = [trip("id:first", 0.0, headers(10, 9))]
    margins = []
    for n in range(6):
        at = 1.0 + 2.0 * n
        trips.append(Trip(f"id:429-{n}", at, at + 0.01, throttled(1.0)))
        budget = replay(trips)
        margins.append(budget.margin)
        assert budget.kind is BudgetKind.SHARED
        assert budget.spacing() == (10.0, 10.0)
    assert margins == pytest.approx([0.01, 0.02, 0.04, 0.08, 0.1, 0.1])
    wider = replay([*trips, *(Trip(f"id:{n}", 20.0, math.inf, None) for n in range(10))])
    assert wider.earliest("id:next", 20.0) == pytest.approx(20.0 + WINDOW + 0.1)
