"""What the staff API accepts and returns for the hosted domain (pydantic models)."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, StringConstraints

from bookwarden.library.models import PatronStatus
from bookwarden.notify.service import EmailAddress

# Constraints are all expressible in the OpenAPI document (no silent stripping), so a request the
# schema calls valid is accepted and one it calls invalid is refused: clients can trust the schema.
# Explicit character classes, not \s or \S: regex engines disagree on which Unicode characters are spaces.
Text = Annotated[str, StringConstraints(max_length=200, pattern=r"[^ \t\r\n]")]
LongText = Annotated[str, StringConstraints(max_length=4000, pattern=r"[^ \t\r\n]")]
Email = EmailAddress
Phone = Annotated[str, StringConstraints(max_length=32, pattern=r"^\+?[0-9 ()\-.]{3,31}$")]
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:\-]+$")]


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
    birth_date: date | None = None
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
    birth_date: date | None = None
    barcode: Identifier | None = None
    status: PatronStatus = None


class LookupField(StrEnum):
    EMAIL = "email"
    INSTITUTIONAL_ID = "institutional_id"
    BARCODE = "barcode"


class PatronLookup(Input):
    """Exact lookup through blind indexes; sent in a body so the value never lands in access logs."""

    by: LookupField
    value: Annotated[str, StringConstraints(max_length=254, pattern=r"[^ \t\r\n]")]


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
    borrowed_at: datetime
    due_at: datetime
    returned_at: datetime | None = None


class LoanUpdate(Input):
    item_title: Text | None = None
    due_at: datetime = None
    returned_at: datetime | None = None


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
    searched_at: datetime | None = None


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


