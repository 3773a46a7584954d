"""Exact duplicates: a row that repeats the previous request for the same contact."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from batcher.dedupe import IN_MEMORY, DuplicateFinder
from batcher.models import Record, Request


@pytest.fixture(
    params=[
        pytest.param(IN_MEMORY, id="in-memory"),
        pytest.param(0, id="on-disk-from-the-first-contact"),
        pytest.param(1, id="moving-to-disk-at-the-second-contact"),
    ]
)
def finder(request: pytest.FixtureRequest) -> Iterator[DuplicateFinder]:
    """A fresh finder, closed afterwards; every test runs with contacts kept in memory, on
    disk, and moving from one to the other midway."""
    opened = DuplicateFinder(in_memory=request.param)
    yield opened
    opened.close()


def request(row: int, contact: str, status: str, category: str = "", summary: str = "") -> Request:
    """A valid request for one row."""
    return Request(Record(row, contact, status, category, summary), status, category, summary)


def verdicts(finder: DuplicateFinder, requests: list[Request]) -> list[int | None]:
    """earlier_row() for each request, in order."""
    return [finder.earlier_row(item) for item in requests]


def test_repeat_of_the_previous_row_for_a_contact_is_found(finder: DuplicateFinder) -> None:
    """The same request for the same contact again returns the row it repeats."""
    assert verdicts(
        finder,
        [
            request(1, "id:1", "close", "Spam", "A bot"),
            request(2, "id:2", "open"),
            request(3, "id:1", "close", "Spam", "A bot"),
        ],
    ) == [None, None, 1]


def test_open_close_open_keeps_all_three(finder: DuplicateFinder) -> None:
    """open, close, open on one contact are all kept: only the previous request counts."""
    assert verdicts(
        finder,
        [request(1, "id:1", "open"), request(2, "id:1", "close"), request(3, "id:1", "open")],
    ) == [None, None, None]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param(("Spam", ""), ("Resolved", ""), id="other-category"),
        pytest.param(("Spam", "A bot"), ("Spam", "A human"), id="other-summary"),
        pytest.param(("Spam", ""), ("Spam", "A bot"), id="summary-added"),
        pytest.param(("Spam", ""), ("spam", ""), id="category-case"),
    ],
)
def test_different_category_or_summary_is_not_a_duplicate(
    finder: DuplicateFinder, first: tuple[str, str], second: tuple[str, str]
) -> None:
    """Two closes that differ in category or summary are both sent."""
    assert verdicts(
        finder, [request(1, "id:1", "close", *first), request(2, "id:1", "close", *second)]
    ) == [None, None]


def test_same_request_for_another_contact_is_not_a_duplicate(finder: DuplicateFinder) -> None:
    """The same request for a different contact is not a duplicate."""
    assert verdicts(finder, [request(1, "id:1", "open"), request(2, "email:a@b.co", "open")]) == [
        None,
        None,
    ]


def test_a_run_of_repeats_all_point_at_the_first(finder: DuplicateFinder) -> None:
    """Three identical rows in a row: the second and third both repeat the first, which was sent."""
    assert verdicts(
        finder, [request(1, "id:1", "open"), request(2, "id:1", "open"), request(3, "id:1", "open")]
    ) == [None, 1, 1]


def test_many_contacts_past_one_batch(finder: DuplicateFinder) -> None:
    """Past the 5000-row commit batch the finder still remembers every contact."""
    first = [request(n, f"id:{n}", "open") for n in range(1, 6002)]
    assert all(found is None for found in verdicts(finder, first))
    assert finder.earlier_row(request(7000, "id:1", "open")) == 1
    assert finder.earlier_row(request(7001, "id:6001", "open")) == 6001


def test_contacts_seen_before_the_move_to_disk_are_found_after_it() -> None:
    """What the dict held goes to SQLite whole: duplicates across the move are found."""
    finder = DuplicateFinder(in_memory=2)
    try:
        before = [request(1, "id:a", "close"), request(2, "id:b", "open")]
        moving = [request(3, "id:c", "close")]  # a third contact: over 2, moved to disk
        after = [request(4, "id:a", "close"), request(5, "id:b", "close")]
        assert verdicts(finder, [*before, *moving, *after]) == [None, None, None, 1, None]
        assert finder.compare(request(6, "id:b", "close")) == (5, True)
    finally:
        finder.close()
