"""What the staff API accepts and returns for the hosted domain (pydantic models)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    StringConstraints,
    WithJsonSchema,
)

from bookwarden.core.text import line, lines
from bookwarden.library.models import PatronStatus
from bookwarden.notify.service import EmailAddress

# Constraints are all expressible in the OpenAPI document (no silent stripping), so a request the
# schema calls valid is accepted and one it calls invalid is refused: clients can trust the schema.
# Explicit character classes, not \s or \S: regex engines disagree on which Unicode characters are spaces.
Text = line(200)
LongText = lines(4000)
Email = EmailAddress
Phone = Annotated[str, StringConstraints(max_length=32, pattern=r"^\+?[0-9 ()\-.]{3,31}$")]
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:\-]+$")]


def _not_a_number(value: object) -> object:
    # Lax parsing reads a number as seconds since 1970 (`returned_at: 0` became 1970-01-01).
    if isinstance(value, int | float):  # bool is an int too
        raise ValueError("give dates and times as ISO 8601 text, such as 2026-03-01 or 2026-03-01T12:00:00Z")
    return value


def _born_by_today(born: date) -> date:
    if not born.year >= 1800 or born > datetime.now(UTC).date():
        raise ValueError("a birth date between 1800-01-01 and today")
    return born


def _this_era(moment: datetime) -> datetime:
    if not 1900 <= moment.year <= 2099:  # the year as written, as the schema's pattern reads it
        raise ValueError("a time between 1900 and 2099")
    return moment


# Dates and times as ISO 8601 text only (a number such as 0 is not read as 1970-01-01), in a range a
# library record can have: no loan borrowed in 9999, no patron born tomorrow. The years are in the
# schema too (a pattern), so a client sees them; "not after today" cannot be written there.
BirthDate = Annotated[
    date,
    BeforeValidator(_not_a_number),
    AfterValidator(_born_by_today),
    WithJsonSchema({"type": "string", "format": "date", "pattern": r"^(1[89]|20)[0-9]{2}-"}),
]
# With its offset (2026-03-01T12:00:00Z): a time without one means a different moment in every zone.
Moment = Annotated[
    AwareDatetime,
    BeforeValidator(_not_a_number),
    AfterValidator(_this_era),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": r"^(19|20)[0-9]{2}-"}),
]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# -- patrons -------------------------------------------------------------------------------


class PatronCreate(Input):
    name: Text
    email: Email | None = None
    phone: Phone | None = None
    postal_address: LongText | None = None
    institutional_id: Identifier | None = None
    affiliation: Text | None = None
    birth_date: BirthDate | None = None
    barcode: Identifier | None = None
    status: PatronStatus = PatronStatus.ACTIVE


# In updates, a field left out stays as it is; `null` clears it, where clearing is allowed at all.
# Fields every record must have are typed without `| None`: absent is fine, null is refused.


class PatronUpdate(Input):
    name: Text = None
    email: Email | None = None
    phone: Phone | None = None
    postal_address: LongText | None = None
    institutional_id: Identifier | None = None
    affiliation: Text | None = None
    birth_date: BirthDate | None = None
    barcode: Identifier | None = None
    status: PatronStatus = None


class LookupField(StrEnum):
    EMAIL = "email"
    INSTITUTIONAL_ID = "institutional_id"
    BARCODE = "barcode"


class PatronLookup(Input):
    """Exact lookup through blind indexes; sent in a body so the value never lands in access logs."""

    by: LookupField
    value: line(254)


class PatronOut(Output):
    id: UUID
    # Personal fields read null once the subject's key is destroyed (erased, unreadable anywhere).
    name: str | None
    email: str | None
    phone: str | None
    postal_address: str | None
    institutional_id: str | None
    affiliation: str | None
    birth_date: date | None
    barcode: str | None
    status: PatronStatus
    created_at: datetime
    updated_at: datetime


# -- loans ---------------------------------------------------------------------------------


class LoanCreate(Input):
    patron_id: UUID
    item_id: Identifier
    item_title: Text | None = None
    borrowed_at: Moment
    due_at: Moment
    returned_at: Moment | None = None


class LoanUpdate(Input):
    item_title: Text | None = None
    due_at: Moment = None
    returned_at: Moment | None = None


class LoanOut(Output):
    id: UUID
    patron_id: UUID
    item_id: str
    item_title: str | None
    borrowed_at: datetime
    due_at: datetime
    returned_at: datetime | None


# -- searches ------------------------------------------------------------------------------


class SearchCreate(Input):
    patron_id: UUID
    query: LongText
    searched_at: Moment | None = None


class SearchUpdate(Input):
    query: LongText = None


class SearchOut(Output):
    id: UUID
    patron_id: UUID
    query: str | None
    searched_at: datetime


# -- reading lists -------------------------------------------------------------------------


class ReadingListCreate(Input):
    patron_id: UUID
    title: Text


class ReadingListUpdate(Input):
    title: Text = None


class ReadingListOut(Output):
    id: UUID
    patron_id: UUID
    title: str | None
    created_at: datetime


class ReadingListItemCreate(Input):
    list_id: UUID
    item_id: Identifier
    note: LongText | None = None


class ReadingListItemUpdate(Input):
    note: LongText | None = None


class ReadingListItemOut(Output):
    id: UUID
    list_id: UUID
    item_id: str
    note: str | None
    added_at: datetime


# -- posts ---------------------------------------------------------------------------------


class PostCreate(Input):
    patron_id: UUID
    board: Identifier
    body: LongText


class PostUpdate(Input):
    body: LongText = None


class PostOut(Output):
    id: UUID
    patron_id: UUID
    board: str
    body: str | None
    created_at: datetime
