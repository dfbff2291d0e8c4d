"""The record store of the hosted domain: the only code that writes its tables.

It takes no actor: staff and patrons reach it through library/service.py, which checks their permission
first; the services that compose it (an erasure, a rectification, a self-registration, a retention purge)
authorized the act they are part of.

Every kind of record is described once by a `RecordKind` (its table, which columns are
personal, whose subject key protects them), and the same few functions create, read,
update, delete and list any kind. Personal values are sealed under the patron's subject
key before they reach SQL and opened after; a destroyed key reads as null.

Every use case records its audit event in the caller's transaction (committed or rolled back
with it): viewed, listed (the ids returned), created, changed (field names, never values),
deleted, looked up (the index used and the ids found, never the value looked for).

A patron whose deletion by staff is pending (library/deletion.py) is hidden, with every record about them:
no read, list, lookup or export finds them, and nothing about them is changed or added (`_live`).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID

import structlog
from pydantic import BaseModel
from sqlalchemy import ColumnElement, Select, bindparam, exists, select
from sqlalchemy.exc import IntegrityError

from bookwarden.audit.events import Action
from bookwarden.audit.record import record
from bookwarden.core.errors import Conflict, IntegrityFailure, InvalidInput, NotFound
from bookwarden.core.pagination import Page, decode_cursor, encode_cursor
from bookwarden.core.sensitive import check_fields
from bookwarden.crypto.aead import cipher
from bookwarden.crypto.fields import FieldDecryptionError, decrypt_field, decrypt_fields, encrypt_field
from bookwarden.crypto.keyring import KeyDestroyed, blind_index
from bookwarden.db.session import TenantSession
from bookwarden.library import schemas
from bookwarden.library.guards import check_patron_change
from bookwarden.library.models import Loan, Patron, Post, ReadingList, ReadingListItem, Search

log = structlog.get_logger()
SUBJECT = "subject_id"  # label of the subject id column in reads (never a table column name)

# Blind-indexed patron fields: exact lookups without decrypting every row.
INDEXED = tuple(f.value for f in schemas.LookupField)


@dataclass(frozen=True)
class RecordKind:
    name: str
    model: type
    personal: tuple[str, ...]
    create: type[BaseModel]
    update: type[BaseModel]
    out: type[BaseModel]
    # SQL expression naming the subject (patron) whose key seals this record's personal fields.
    subject: Callable[[], ColumnElement[UUID]]
    # Parent a new record must point at, checked inside the tenant (other tenants' ids are "not found").
    parent: tuple[str, type] | None = None

    @property
    def table(self) -> str:
        return self.model.__tablename__

    @property
    def target(self) -> str:
        """The kind as audit events name it: patron, loan, reading_list_item..."""
        return self.name.replace(" ", "_")

    def action(self, verb: str) -> Action:
        return Action(f"{self.target}.{verb}")


# Subjects are named with table columns, not ORM attributes: a Core select stays on SQLAlchemy's
# fast Core path only when nothing in it is an ORM entity or attribute (about 200 µs per read).


def _list_owner() -> ColumnElement[UUID]:
    lists, items = ReadingList.__table__.c, ReadingListItem.__table__.c
    return (
        select(lists.patron_id).where(lists.tenant_id == items.tenant_id, lists.id == items.list_id).scalar_subquery()
    )


PATRONS = RecordKind(
    "patron",
    Patron,
    ("name", "email", "phone", "postal_address", "institutional_id", "affiliation", "birth_date", "barcode"),
    schemas.PatronCreate,
    schemas.PatronUpdate,
    schemas.PatronOut,
    lambda: Patron.__table__.c.id,
)
LOANS = RecordKind(
    "loan",
    Loan,
    ("item_title",),
    schemas.LoanCreate,
    schemas.LoanUpdate,
    schemas.LoanOut,
    lambda: Loan.__table__.c.patron_id,
    ("patron_id", Patron),
)
SEARCHES = RecordKind(
    "search",
    Search,
    ("query",),
    schemas.SearchCreate,
    schemas.SearchUpdate,
    schemas.SearchOut,
    lambda: Search.__table__.c.patron_id,
    ("patron_id", Patron),
)
READING_LISTS = RecordKind(
    "reading list",
    ReadingList,
    ("title",),
    schemas.ReadingListCreate,
    schemas.ReadingListUpdate,
    schemas.ReadingListOut,
    lambda: ReadingList.__table__.c.patron_id,
    ("patron_id", Patron),
)
READING_LIST_ITEMS = RecordKind(
    "reading list item",
    ReadingListItem,
    ("note",),
    schemas.ReadingListItemCreate,
    schemas.ReadingListItemUpdate,
    schemas.ReadingListItemOut,
    _list_owner,
    ("list_id", ReadingList),
)
POSTS = RecordKind(
    "post",
    Post,
    ("body",),
    schemas.PostCreate,
    schemas.PostUpdate,
    schemas.PostOut,
    lambda: Post.__table__.c.patron_id,
    ("patron_id", Patron),
)
KINDS = (PATRONS, LOANS, SEARCHES, READING_LISTS, READING_LIST_ITEMS, POSTS)


# -- sealing -------------------------------------------------------------------------------


def _to_text(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, date) else str(value)


def _seal(session: TenantSession, kind: RecordKind, row: Any, key: bytes, values: dict[str, Any]) -> None:
    for column, value in values.items():
        if column in kind.personal:
            value = encrypt_field(key, session.tenant_id, kind.table, column, row.id, _to_text(value))
        setattr(row, column, value)
    if kind is PATRONS:
        index_key = session.keyring.index_key(session.tenant_id)
        for column in INDEXED:
            if column in values:
                plain = values[column]
                setattr(row, f"{column}_index", None if plain is None else blind_index(index_key, column, plain))


def _open(session: TenantSession, kind: RecordKind, records: list[tuple[Mapping[str, Any], UUID]]) -> list[BaseModel]:
    """Decrypt records given as (column values, subject id) with one keyring lookup for the batch."""
    keys = session.keyring.subject_keys(session.tenant_id, [subject for _, subject in records])
    ciphers = {subject: cipher(key) for subject, key in keys.items()}
    out = []
    for values, subject in records:
        data = dict(values)
        aead = ciphers.get(subject)
        sealed = {column: data[column] for column in kind.personal}
        try:
            data.update(
                dict.fromkeys(sealed)
                if aead is None
                else decrypt_fields(aead, session.tenant_id, kind.table, data["id"], sealed)
            )
        except FieldDecryptionError as failed:
            log.warning("integrity failure", table=kind.table, column=failed.column, record_id=str(data["id"]))
            raise IntegrityFailure(
                f"{kind.name} {data['id']}: field {failed.column} was altered outside Bookwarden and cannot be "
                "trusted; the event is logged for the security team"
            ) from None
        out.append(kind.out.model_validate(data))
    return out


def _values(entity: Any) -> dict[str, Any]:
    return {c.key: getattr(entity, c.key) for c in entity.__table__.columns}


@functools.cache
def _columns(kind: RecordKind) -> tuple:
    """The record's columns and its subject id, as one Core select list (reads skip the ORM: faster)."""
    return (*kind.model.__table__.columns, kind.subject().label(SUBJECT))


@functools.cache
def _live(kind: RecordKind) -> ColumnElement[bool]:
    """The records whose patron is not pending deletion: a patron being deleted is gone to every read and
    change already, with everything about them; only undoing the deletion brings them back."""
    patrons = Patron.__table__
    if kind is PATRONS:
        return patrons.c.deletion_due_at.is_(None)
    table = kind.model.__table__
    return ~exists().where(
        patrons.c.tenant_id == table.c.tenant_id,
        patrons.c.id == kind.subject(),
        patrons.c.deletion_due_at.is_not(None),
    )


@functools.cache
def _by_id(kind: RecordKind) -> Select:
    table = kind.model.__table__
    return select(*_columns(kind)).where(
        table.c.tenant_id == bindparam("tenant_id"), table.c.id == bindparam("id"), _live(kind)
    )


def _records(
    session: TenantSession, query: Select, params: dict[str, Any] | None = None
) -> list[tuple[Mapping[str, Any], UUID]]:
    """Run a Core select of `_columns` on the session's connection: (column values, subject id) per row.

    The ORM's execute adds nothing to a Core select but its autoflush, which is done here first, so a
    record written earlier in the transaction is read back."""
    session.flush()
    result = session.connection().execute(query, params)
    return [(row._mapping, row._mapping[SUBJECT]) for row in result]


def _fetch_record(session: TenantSession, kind: RecordKind, record_id: UUID) -> tuple[Mapping[str, Any], UUID]:
    found = _records(session, _by_id(kind), {"tenant_id": session.tenant_id, "id": record_id})
    if not found:
        raise NotFound(f"no {kind.name} {record_id}")
    return found[0]


def _fetch(session: TenantSession, kind: RecordKind, record_id: UUID) -> tuple[Any, UUID]:
    """The ORM entity (for changes) and its subject id."""
    found = session.execute(
        select(kind.model, kind.subject()).where(
            kind.model.tenant_id == session.tenant_id, kind.model.id == record_id, _live(kind)
        )
    ).first()
    if found is None:
        raise NotFound(f"no {kind.name} {record_id}")
    return found[0], found[1]


def _subject_of_new(session: TenantSession, kind: RecordKind, values: dict[str, Any]) -> UUID:
    """The patron a new record belongs to, proven to exist in this tenant."""
    assert kind.parent is not None
    column, parent_model = kind.parent
    parent = session.get(parent_model, (session.tenant_id, values[column]))
    subject = None if parent is None else parent.id if parent_model is Patron else parent.patron_id
    patron = parent if parent_model is Patron or subject is None else session.get(Patron, (session.tenant_id, subject))
    if patron is None or patron.deletion_due_at is not None:
        # Same words for "absent", "another tenant's" and "being deleted": nothing leaks.
        raise NotFound(f"{column}: no {parent_model.__tablename__[:-1].replace('_', ' ')} {values[column]}")
    return subject


def _key_for_change(session: TenantSession, kind: RecordKind, subject: UUID) -> bytes:
    try:
        return session.keyring.subject_key(session.tenant_id, subject)
    except KeyDestroyed:
        raise Conflict(f"the patron of this {kind.name} was erased; nothing more can be recorded about them") from None


def _flush(session: TenantSession, kind: RecordKind) -> None:
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        taken = [c for c in INDEXED if f"{c}_index" in str(exc.orig)]
        what = taken[0] if taken else "a unique field"
        raise Conflict(f"another {kind.name} already has this {what.replace('_', ' ')}") from None


# -- use cases -----------------------------------------------------------------------------


def create(session: TenantSession, kind: RecordKind, data: BaseModel) -> BaseModel:
    values = data.model_dump(exclude_none=True)
    check_fields(values)
    row = kind.model(tenant_id=session.tenant_id, id=uuid.uuid4())
    if kind is PATRONS:
        subject = row.id
        key = session.keyring.create_subject(session.tenant_id, subject)
    else:
        subject = _subject_of_new(session, kind, values)
        key = _key_for_change(session, kind, subject)
    _seal(session, kind, row, key, values)
    session.add(row)
    _flush(session, kind)
    record(session, kind.action("created"), (kind.target, row.id), details=_created_details(kind, row, subject, values))
    return _open(session, kind, [(_values(row), subject)])[0]


def _created_details(kind: RecordKind, row: Any, subject: UUID, values: dict[str, Any]) -> dict[str, Any]:
    details: dict[str, Any] = {"fields": sorted(values)}
    if kind.parent is not None:
        details[kind.parent[0]] = getattr(row, kind.parent[0])
    if kind is not PATRONS:
        details["patron_id"] = subject  # whose record it is, for a data subject's access report
    return details


def read(session: TenantSession, kind: RecordKind, record_id: UUID) -> BaseModel:
    found = _fetch_record(session, kind, record_id)
    record(session, kind.action("viewed"), (kind.target, record_id), details=_subject_details(kind, found[1]))
    return _open(session, kind, [found])[0]


def _subject_details(kind: RecordKind, subject: UUID) -> dict[str, Any]:
    return {} if kind is PATRONS else {"patron_id": subject}


def update(
    session: TenantSession, kind: RecordKind, record_id: UUID, changes: BaseModel, *, rectifying: bool = False
) -> BaseModel:
    """Change a record. A patron's guards (library/guards.py: a restriction of processing) refuse every
    change but the correction an approved rectification request carries out (`rectifying`)."""
    values = changes.model_dump(exclude_unset=True)
    check_fields(values)
    for column, value in values.items():
        if value is None and not kind.model.__table__.c[column].nullable:
            raise InvalidInput(f"{column}: may be changed but not removed")
    row, subject = _fetch(session, kind, record_id)
    if kind is PATRONS and not rectifying:
        check_patron_change(session, record_id)
    details: dict[str, Any] = {}
    if values:
        _seal(session, kind, row, _key_for_change(session, kind, subject), values)
        if kind is PATRONS and "email" in values and row.email_unconfirmed_until is not None:
            # Staff (or an officer carrying out a rectification) set the address: the institution vouches
            # for it, so it counts from now on and the self-registration it came from no longer lapses.
            row.email_unconfirmed_until = None
            details["email_vouched_by_staff"] = True
        _flush(session, kind)
    details = {"fields": sorted(values), **_subject_details(kind, subject), **details}
    record(session, kind.action("changed"), (kind.target, record_id), details=details)
    return _open(session, kind, [(_values(row), subject)])[0]


def delete(session: TenantSession, kind: RecordKind, record_id: UUID) -> None:
    """Delete a record about a patron. A patron is not deleted here: their deletion cannot be undone, so it
    takes two people and a grace period (library/deletion.py), or an erasure (privacy/subjects/erasure.py)."""
    if kind is PATRONS:
        raise TypeError("a patron is deleted through library/deletion.py (ask, confirm) or erased, never here")
    row, subject = _fetch(session, kind, record_id)
    session.delete(row)
    session.flush()
    record(session, kind.action("deleted"), (kind.target, record_id), details=_subject_details(kind, subject))


def delete_own_post(session: TenantSession, patron_id: UUID, post_id: UUID) -> None:
    """A patron deletes one of their own posts. Another patron's post, or no post, is the same 404:
    the answer tells nobody whether a post id exists."""
    post = session.get(Post, (session.tenant_id, post_id))
    if post is None or post.patron_id != patron_id:
        raise NotFound(f"no post {post_id} of yours")
    delete(session, POSTS, post_id)


def list_page(
    session: TenantSession,
    kind: RecordKind,
    *,
    cursor: str | None,
    limit: int,
    patron_id: UUID | None = None,
    list_id: UUID | None = None,
) -> Page:
    table = kind.model.__table__
    query = select(*_columns(kind)).where(table.c.tenant_id == session.tenant_id, _live(kind))
    if patron_id is not None:
        query = query.where(kind.subject() == patron_id)
    if list_id is not None:
        query = query.where(table.c.list_id == list_id)
    if cursor is not None:
        query = query.where(table.c.id > decode_cursor(cursor))
    records = _records(session, query.order_by(table.c.id).limit(limit + 1))
    more = len(records) > limit
    records = records[:limit]
    ids = [values["id"] for values, _ in records]
    filters = {name: value for name, value in (("patron_id", patron_id), ("list_id", list_id)) if value is not None}
    record(session, kind.action("listed"), (kind.target, None), details={"ids": ids, "count": len(ids), **filters})
    return Page(
        items=_open(session, kind, records),
        next_cursor=encode_cursor(records[-1][0]["id"]) if more else None,
    )


def lookup_patrons(session: TenantSession, lookup: schemas.PatronLookup) -> list[BaseModel]:
    column, value = lookup.by.value, lookup.value
    index_key = session.keyring.index_key(session.tenant_id)
    table = Patron.__table__
    query = select(*_columns(PATRONS)).where(
        table.c.tenant_id == session.tenant_id,
        table.c[f"{column}_index"] == blind_index(index_key, column, value),
        _live(PATRONS),
    )
    found = _records(session, query.order_by(table.c.id).limit(100))
    ids = [values["id"] for values, _ in found]
    # Which index, never the value looked for: the trail must not become a copy of the personal data.
    record(session, Action.PATRON_LOOKED_UP, ("patron", None), details={"by": column, "ids": ids, "count": len(ids)})
    return _open(session, PATRONS, found)


# -- the address on file ----------------------------------------------------------------------


def email_counts(patron: Patron) -> bool:
    """Whether the address on the record may be used to reach the patron or identify them: staff entered it
    (the institution vouches for it) or its owner confirmed it. An address typed into self-registration and
    not yet confirmed is nobody's: nothing is mailed to it, and the request form does not match it."""
    return patron.email is not None and patron.email_unconfirmed_until is None


def email_on_file(session: TenantSession, patron: Patron) -> str | None:
    """The address to reach the patron at; None when there is none, it does not count yet, or the patron was erased."""
    if not email_counts(patron) or patron.deletion_due_at is not None:  # nothing is sent to a patron being deleted
        return None
    try:
        key = session.keyring.subject_key(session.tenant_id, patron.id)
    except KeyDestroyed:
        return None
    return decrypt_field(key, session.tenant_id, PATRONS.table, "email", patron.id, patron.email)


def await_email_confirmation(session: TenantSession, patron_id: UUID, until: datetime) -> Patron:
    """The new patron's address does not count until its owner confirms it; unconfirmed at `until`, it lapses."""
    row = session.get(Patron, (session.tenant_id, patron_id), with_for_update=True)
    if row is None or row.email is None:
        raise Conflict(f"patron {patron_id} has no address to confirm")
    row.email_unconfirmed_until = until
    session.flush()
    return row


def email_confirmed(session: TenantSession, patron: Patron) -> None:
    """Its owner confirmed the address (through the link mailed to it): from now on it counts."""
    patron.email_unconfirmed_until = None
    session.flush()


# -- cursors -------------------------------------------------------------------------------
