"""The API's rules for one row: what ``batcher.validate.check`` accepts, and its reasons."""

from __future__ import annotations

import pytest

from batcher.models import Record, Request
from batcher.validate import MAX_CATEGORY, MAX_SUMMARY, Invalid, check


def record(
    identifier: str = "id:1",
    status: str = "open",
    category: str = "",
    summary: str = "",
    problem: str = "",
) -> Record:
    """A record as the reader would hand it over (row 7, no extra columns)."""
    return Record(7, identifier, status, category, summary, (), problem)


def request_for(rec: Record) -> Request:
    """Check ``rec`` and insist it is valid."""
    verdict = check(rec)
    assert isinstance(verdict, Request), verdict
    return verdict


def reason_for(rec: Record) -> str:
    """Check ``rec`` and insist it is invalid; return the reason."""
    verdict = check(rec)
    assert isinstance(verdict, Invalid), verdict
    return verdict.reason


@pytest.mark.parametrize(
    "identifier",
    [
        pytest.param("id:1", id="id-one-digit"),
        pytest.param("id:0012", id="id-leading-zeros"),
        pytest.param("id:123456789012345678901234567890", id="id-long"),
        pytest.param("email:abdc@gmail.com", id="email-plain"),
        pytest.param("email:a+b/c?d#e%f@x.com", id="email-plus-slash-query-hash-percent"),
        pytest.param("email:first.last@mail.example.co.uk", id="email-dotted"),
        pytest.param("email:a@b.c", id="email-shortest"),
        pytest.param("phone:+1234567", id="phone-7-digits"),
        pytest.param("phone:+60121233112", id="phone-11-digits"),
        pytest.param("phone:+123456789012345", id="phone-15-digits"),
    ],
)
def test_valid_identifier_is_sent_exactly_as_written(identifier: str) -> None:
    """A valid id/email/phone identifier passes and reaches the request unchanged."""
    request = request_for(record(identifier))
    assert request.identifier == identifier
    assert request.record.identifier == identifier


@pytest.mark.parametrize(
    ("identifier", "rule_words"),
    [
        pytest.param("12345", ("does not start with id:, email: or phone:",), id="no-prefix"),
        pytest.param("abdc@gmail.com", ("does not start with",), id="email-without-prefix"),
        pytest.param("+60121233112", ("does not start with",), id="phone-without-prefix"),
        pytest.param("ID:12", ("does not start with",), id="prefix-upper-case"),
        pytest.param("id:12a", ("id: followed by digits only",), id="id-with-letter"),
        pytest.param("id:", ("id: followed by digits only",), id="id-no-digits"),
        pytest.param("email:a@b", ("dotted domain",), id="email-no-dot"),
        pytest.param("email:a@@b.com", ("single @",), id="email-two-ats"),
        pytest.param("email:a@b@c.com", ("single @",), id="email-two-separate-ats"),
        pytest.param("email:a b@c.com", ("no spaces",), id="email-space"),
        pytest.param("email:a@b..com", ("dotted domain",), id="email-empty-label"),
        pytest.param("email:@b.com", ("one address",), id="email-no-local-part"),
        pytest.param("phone:+123456", ("7 to 15 digits",), id="phone-6-digits"),
        pytest.param("phone:+1234567890123456", ("7 to 15 digits",), id="phone-16-digits"),
        pytest.param("phone:60121233112", ("+ and 7 to 15 digits",), id="phone-no-plus"),
        pytest.param("phone:+6012 1233", ("+ and 7 to 15 digits",), id="phone-space"),
    ],
)
def test_invalid_identifier_reason_names_column_and_value(
    identifier: str, rule_words: tuple[str, ...]
) -> None:
    """A malformed identifier is invalid; the reason names the column, the value and the rule."""
    reason = reason_for(record(identifier))
    assert reason.startswith("identifier: ")
    assert repr(identifier) in reason
    for words in rule_words:
        assert words in reason


@pytest.mark.parametrize(
    "identifier",
    [
        pytest.param("phone:6.01E+10", id="phone-excel-dot"),
        pytest.param("phone:6,01E+10", id="phone-excel-comma"),
        pytest.param("phone:+6.01E+10", id="phone-excel-with-plus"),
        pytest.param("id:1e9", id="id-lower-e"),
        pytest.param("id:1.5E+12", id="id-upper-e"),
    ],
)
def test_spreadsheet_scientific_notation_is_named_as_such(identifier: str) -> None:
    """A number a spreadsheet rewrote (6.01E+10, 1e9) is invalid and the reason says so."""
    reason = reason_for(record(identifier))
    assert reason.startswith("identifier: ")
    assert repr(identifier) in reason
    assert "spreadsheet" in reason
    assert "scientific" in reason


def test_empty_identifier_is_invalid() -> None:
    """An empty identifier cell is invalid, and the reason shows the accepted forms."""
    reason = reason_for(record(""))
    assert reason.startswith("identifier: empty")
    assert "id:<digits>" in reason


@pytest.mark.parametrize(
    ("written", "normalised"),
    [
        pytest.param("open", "open", id="open"),
        pytest.param("close", "close", id="close"),
        pytest.param("OPEN", "open", id="upper-open"),
        pytest.param(" Close ", "close", id="padded-title-close"),
        pytest.param("\tcLoSe\t", "close", id="tabs-mixed-case"),
    ],
)
def test_status_ignores_case_and_surrounding_spaces(written: str, normalised: str) -> None:
    """OPEN and ' Close ' are accepted and sent as open/close."""
    request = request_for(record(status=written))
    assert request.status == normalised
    assert request.body()["status"] == normalised


@pytest.mark.parametrize(
    "written",
    [
        pytest.param("closed", id="closed"),
        pytest.param("Closed ", id="closed-trimmed-still-invalid"),
        pytest.param("", id="empty"),
        pytest.param("   ", id="blank"),
        pytest.param("opened", id="opened"),
        pytest.param("open close", id="both"),
    ],
)
def test_status_outside_open_close_is_invalid(written: str) -> None:
    """A status other than open/close is invalid; the reason shows the value as written."""
    reason = reason_for(record(status=written))
    assert reason.startswith("status: ")
    assert repr(written) in reason
    assert "open, close" in reason


@pytest.mark.parametrize(
    ("category", "summary", "column"),
    [
        pytest.param("Spam", "", "category", id="category"),
        pytest.param("", "A bot", "summary", id="summary"),
        pytest.param("Spam", "A bot", "category", id="both-names-category"),
    ],
)
def test_category_or_summary_on_an_open_is_invalid(
    category: str, summary: str, column: str
) -> None:
    """Only a close takes a category or summary; on an open the reason names the column."""
    reason = reason_for(record(status="open", category=category, summary=summary))
    assert reason.startswith(f"{column}: ")
    assert "only a close" in reason


@pytest.mark.parametrize(
    ("length", "valid"),
    [
        pytest.param(MAX_CATEGORY, True, id="128-ok"),
        pytest.param(MAX_CATEGORY + 1, False, id="129-invalid"),
    ],
)
def test_category_length_limit(length: int, valid: bool) -> None:
    """A category of 128 characters is sent; 129 is invalid, with both numbers in the reason."""
    assert MAX_CATEGORY == 128
    verdict = check(record(status="close", category="c" * length))
    if valid:
        assert isinstance(verdict, Request)
        assert verdict.category == "c" * length
    else:
        assert isinstance(verdict, Invalid)
        assert verdict.reason.startswith("category: ")
        assert "129" in verdict.reason
        assert "128" in verdict.reason


@pytest.mark.parametrize(
    ("length", "valid"),
    [
        pytest.param(MAX_SUMMARY, True, id="512-ok"),
        pytest.param(MAX_SUMMARY + 1, False, id="513-invalid"),
    ],
)
def test_summary_length_limit(length: int, valid: bool) -> None:
    """A summary of 512 characters is sent; 513 is invalid, with both numbers in the reason."""
    assert MAX_SUMMARY == 512
    verdict = check(record(status="close", category="Spam", summary="s" * length))
    if valid:
        assert isinstance(verdict, Request)
        assert verdict.summary == "s" * length
    else:
        assert isinstance(verdict, Invalid)
        assert verdict.reason.startswith("summary: ")
        assert "513" in verdict.reason
        assert "512" in verdict.reason


def test_summary_without_category_is_invalid() -> None:
    """A close with a summary but no category is invalid (the API would ignore the summary)."""
    reason = reason_for(record(status="close", summary="A bot"))
    assert reason.startswith("summary: ")
    assert "without a category" in reason


@pytest.mark.parametrize(
    ("allowed", "category", "valid"),
    [
        pytest.param(None, "Anything", True, id="no-list-allows-any"),
        pytest.param(("Spam", "Resolved"), "Spam", True, id="listed"),
        pytest.param(("Spam", "Resolved"), "Other", False, id="not-listed"),
        pytest.param(("Spam",), "spam", False, id="case-sensitive"),
        pytest.param((), "", True, id="close-without-category-needs-no-list"),
    ],
)
def test_allowed_categories_are_honoured(
    allowed: tuple[str, ...] | None, category: str, valid: bool
) -> None:
    """With allowed_categories, a close naming another category is invalid, naming the value."""
    verdict = check(record(status="close", category=category), allowed_categories=allowed)
    if valid:
        assert isinstance(verdict, Request)
    else:
        assert isinstance(verdict, Invalid)
        assert verdict.reason.startswith("category: ")
        assert repr(category) in verdict.reason
        assert "allowed_categories" in verdict.reason


@pytest.mark.parametrize(
    ("category", "summary", "expected"),
    [
        pytest.param("", "", {"status": "close"}, id="status-only"),
        pytest.param("Spam", "", {"status": "close", "category": "Spam"}, id="category"),
        pytest.param(
            "Spam",
            "This contact is a bot",
            {"status": "close", "category": "Spam", "summary": "This contact is a bot"},
            id="category-and-summary",
        ),
    ],
)
def test_request_body_has_no_empty_keys_and_no_nulls(
    category: str, summary: str, expected: dict[str, str]
) -> None:
    """Request.body() holds status plus only the given fields: no empty strings, no None."""
    body = request_for(record(status=" CLOSE ", category=category, summary=summary)).body()
    assert body == expected
    assert all(isinstance(value, str) and value for value in body.values())


def test_open_body_is_status_only() -> None:
    """An open sends exactly {"status": "open"}."""
    assert request_for(record(status="Open")).body() == {"status": "open"}


def test_record_with_a_problem_is_invalid_with_that_reason() -> None:
    """A record the reader flagged (e.g. too many fields) is invalid with the reader's reason."""
    problem = "record has more fields than the header's 4 columns (surplus: 'x')"
    assert reason_for(record("id:1", "open", problem=problem)) == problem


def test_request_keeps_the_record_it_came_from() -> None:
    """The request carries the record (row and identifier) it was built from."""
    rec = record("email:a@b.co", "close", "Spam")
    request = request_for(rec)
    assert request.record is rec
    assert request.row == 7
    assert request.category == "Spam"
