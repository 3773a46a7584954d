"""The API's rules for one row, checked before anything is sent.

``check(record)`` returns either the ``Request`` to send or the reason the
row is invalid. A reason names the column, the rule and the value, so that a
support person can fix the cell without reading the API's documentation.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from batcher.models import Record, Request

#: The statuses the API accepts (compared without regard to case or surrounding spaces).
STATUSES = ("open", "close")
#: Longest closing-note name the API accepts.
MAX_CATEGORY = 128
#: Longest summary the API accepts.
MAX_SUMMARY = 512

_ID = re.compile(r"id:[0-9]+")
# One address: a single "@", no whitespace, a dotted domain with no empty label.
_EMAIL = re.compile(r"email:[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+")
# E.164: "+" and 7 to 15 digits.
_PHONE = re.compile(r"phone:\+[0-9]{7,15}")
# A number a spreadsheet rewrote: 6.01E+10, 6,01E+10, 1e9.
_SCIENTIFIC = re.compile(r"\+?[0-9]+(?:[.,][0-9]+)?[eE][+-]?[0-9]+")


@dataclass(frozen=True, slots=True)
class Invalid:
    """Why a record cannot be sent.

    Attributes:
        reason: The column, the rule and the value, in one sentence.
    """

    reason: str


def check(
    record: Record, *, allowed_categories: Collection[str] | None = None
) -> Request | Invalid:
    """Apply every rule to one record: the request to send, or why it is invalid."""
    if record.problem:
        return Invalid(record.problem)
    reason = _identifier_problem(record.identifier)
    if reason:
        return Invalid(reason)
    status = record.status.strip().lower()
    if status not in STATUSES:
        return Invalid(
            f"status: {_show(record.status)} is not one of {', '.join(STATUSES)} "
            "(case and surrounding spaces are ignored)"
        )
    category, summary = record.category, record.summary
    if status == "open" and (category or summary):
        given = "category" if category else "summary"
        return Invalid(f"{given}: only a close takes a category or summary; this row is an open")
    if len(category) > MAX_CATEGORY:
        return Invalid(f"category: {len(category)} characters, more than the API's {MAX_CATEGORY}")
    if len(summary) > MAX_SUMMARY:
        return Invalid(f"summary: {len(summary)} characters, more than the API's {MAX_SUMMARY}")
    if summary and not category:
        return Invalid(
            "summary: given without a category; the API ignores a summary unless a category "
            "is given"
        )
    if category and allowed_categories is not None and category not in allowed_categories:
        return Invalid(f"category: {_show(category)} is not in the config's allowed_categories")
    return Request(record, status, category, summary)


def _identifier_problem(identifier: str) -> str:
    if not identifier:
        return "identifier: empty; expected id:<digits>, email:<address> or phone:+<digits>"
    prefix, _, rest = identifier.partition(":")
    if prefix == "id":
        if _ID.fullmatch(identifier):
            return ""
        if _SCIENTIFIC.fullmatch(rest):
            return _spreadsheet_damage(identifier)
        return f"identifier: {_show(identifier)} is not id: followed by digits only"
    if prefix == "email":
        if _EMAIL.fullmatch(identifier):
            return ""
        return (
            f"identifier: {_show(identifier)} is not email: followed by one address "
            "(a single @, a dotted domain, no spaces)"
        )
    if prefix == "phone":
        if _PHONE.fullmatch(identifier):
            return ""
        if _SCIENTIFIC.fullmatch(rest):
            return _spreadsheet_damage(identifier)
        return f"identifier: {_show(identifier)} is not phone: followed by + and 7 to 15 digits"
    return (
        f"identifier: {_show(identifier)} does not start with id:, email: or phone: "
        "(batcher does not guess a missing prefix)"
    )


def _spreadsheet_damage(identifier: str) -> str:
    return (
        f"identifier: {_show(identifier)} looks like a number a spreadsheet rewrote in "
        "scientific notation; the digits are lost, take them from the source system"
    )


def _show(value: str, limit: int = 80) -> str:
    """A value quoted for a message, cut to ``limit`` characters."""
    return repr(value if len(value) <= limit else value[:limit] + "...")
