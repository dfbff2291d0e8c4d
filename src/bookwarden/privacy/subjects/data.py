"""Where one patron's data lives, found from the personal-data registry, and how to read it back.

The access package and the erasure both walk the same map, so neither keeps a list of tables: a
table the registry links to a patron or to one of the patron's accounts (privacy/registry.py,
through its foreign keys) is a location, with the chain of foreign keys that leads from its rows
to the patron. A new table with a foreign key to patrons (or to accounts, or to a table that has
one) is exported and erased without a change here. Tables that name their subject only by an
address (`subject=CONTACT`: the outbox, security contacts) are matched on the decrypted address.

Each column is read as the registry declares it: sealed under a subject key or the tenant key ->
decrypted; a credential or a one-way hash -> withheld (never handed out, not even to its owner);
a blind index -> left out (a keyed hash that says nothing to its subject); anything else as is.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID

import structlog
from sqlalchemy import (
    ARRAY,
    JSON,
    Boolean,
    ColumnElement,
    Date,
    DateTime,
    Integer,
    Select,
    String,
    Table,
    Uuid,
    and_,
    cast,
    false,
    func,
    literal_column,
    or_,
    select,
)

from bookwarden.audit.search import event_fields as audit_fields
from bookwarden.audit.search import events, with_context
from bookwarden.core.classification import Category, Classification, Protection, SubjectKind
from bookwarden.core.errors import NotFound
from bookwarden.crypto.aead import DecryptionError, cipher
from bookwarden.crypto.fields import decrypt_field
from bookwarden.crypto.keyring import KeyDestroyed, blind_index
from bookwarden.db.base import Base
from bookwarden.db.session import TenantSession
from bookwarden.privacy.registry import SUBJECT_TABLES, ColumnEntry, registry

log = structlog.get_logger()

WITHHELD = "(withheld: a credential is never disclosed, not even to its holder)"
UNREADABLE = "(unreadable: the stored value failed its integrity check)"
BATCH = 1000
AUDIT_TABLE = "audit_events"
# Whom the subject is: the patron, and the accounts they sign in to the portal with.
PERSON = (SubjectKind.PATRON, SubjectKind.ACCOUNT)


class Reading(enum.Enum):
    PLAIN = "plain"
    SUBJECT_KEY = "subject_key"
    TENANT_KEY = "tenant_key"
    WITHHELD = "withheld"
    OMITTED = "omitted"


@dataclass(frozen=True)
class Hop:
    column: str  # the column of this table...
    target: str  # ...that refers to this table
    target_column: str  # ...by this column
    ondelete: str | None  # what the database does to this row when the target goes
    declared: bool = False  # no foreign key: a column declared `subject=` names the patron or account


@dataclass(frozen=True)
class Path:
    hops: tuple[Hop, ...]
    end: SubjectKind  # PATRON: the last hop reaches patrons; ACCOUNT: accounts

    @property
    def depth(self) -> int:
        """How far the rows are from the patron row (accounts are one step away)."""
        return len(self.hops) + (1 if self.end is SubjectKind.ACCOUNT else 0)


@dataclass(frozen=True)
class Location:
    name: str
    table: Table
    paths: tuple[Path, ...]  # empty for patrons itself (each row is one) and CONTACT tables
    readings: tuple[tuple[str, Reading], ...]
    categories: tuple[Category, ...]
    contact_columns: tuple[str, ...] = ()  # CONTACT tables: the sealed address columns to match

    @property
    def depth(self) -> int:
        return max((p.depth for p in self.paths), default=0)

    @property
    def is_contact(self) -> bool:
        return bool(self.contact_columns)

    @property
    def names_only(self) -> bool:
        """Rows name their subject by a declared column, with no foreign key: they are meant to outlive
        the subject (a request kept as proof it was handled), so erasure keeps them and says so."""
        return bool(self.paths) and all(p.hops[0].declared for p in self.paths)

    @property
    def kept_on_unlink(self) -> bool:
        """The row outlives its patron by design (ON DELETE SET NULL): unlinked, not erased."""
        return bool(self.paths) and all(p.hops and p.hops[0].ondelete == "SET NULL" for p in self.paths)


@dataclass(frozen=True)
class Subject:
    """The person a request is about: the patron and their accounts, with their keys."""

    tenant_id: UUID
    patron_id: UUID
    account_ids: tuple[UUID, ...]
    keys: dict[UUID, Any]  # subject id -> AES-GCM cipher; a destroyed key is absent
    tenant_key: Any
    addresses: frozenset[str]  # normalised email addresses on the patron's and accounts' records
    # Blind indexes of those addresses (patrons.email_index, accounts.email_index): they outlive a
    # destroyed key, so an erasure interrupted after its shred still finds mail sent to the subject.
    address_indexes: frozenset[bytes] = frozenset()
    index_key: bytes | None = None

    @property
    def ids(self) -> tuple[UUID, ...]:
        return (self.patron_id, *self.account_ids)


# -- the map -----------------------------------------------------------------------------------


@functools.cache
def locations() -> tuple[Location, ...]:
    """Every table holding data about a patron, deepest first (the order rows can be removed in)."""
    found = []
    reg = registry()
    for table in Base.metadata.sorted_tables:
        entry = reg.tables.get(table.name)
        if entry is None or not entry.tenant_scoped:
            continue  # platform tables hold no institution's data about its patrons
        kinds = {link.kind for link in entry.subject_links}
        readings = tuple((c.name, _reading(c)) for c in entry.columns)
        contact = tuple(
            c.name
            for c in entry.columns
            if c.subject is SubjectKind.CONTACT and c.protection in (Protection.TENANT_KEY, Protection.SUBJECT_KEY)
        )
        if table.name == "patrons":
            found.append(Location(table.name, table, (), readings, entry.categories))
        elif kinds & set(PERSON):
            paths = _paths(table, (table.name,)) + _declared_paths(table, entry.columns)
            if paths:
                found.append(Location(table.name, table, tuple(paths), readings, entry.categories))
        elif contact:
            found.append(Location(table.name, table, (), readings, entry.categories, contact))
    return tuple(sorted(found, key=lambda loc: (-loc.depth, loc.name == "patrons", loc.name)))


def linked_tables() -> set[str]:
    """The tables the registry links to a patron or an account: what the map must cover."""
    return {
        name
        for name, entry in registry().tables.items()
        if entry.tenant_scoped and any(link.kind in PERSON for link in entry.subject_links)
    }


def _paths(table: Table, seen: tuple[str, ...]) -> list[Path]:
    """Every chain of foreign keys from `table` to patrons or to accounts (accounts then lead to patrons)."""
    found = []
    for constraint in sorted(table.foreign_key_constraints, key=lambda c: c.name or ""):
        target = constraint.referred_table
        pairs = [(e.parent.name, e.column.name) for e in constraint.elements if e.parent.name != "tenant_id"]
        if target.name == "tenants" or len(pairs) != 1 or target.name in seen:
            continue
        hop = Hop(pairs[0][0], target.name, pairs[0][1], constraint.ondelete)
        if target.name in SUBJECT_TABLES:
            if table.name in SUBJECT_TABLES:  # accounts.patron_id -> patrons: the account is the patron's
                found.append(Path((hop,), SubjectKind.PATRON))
            else:
                found.append(Path((hop,), SUBJECT_TABLES[target.name]))
        else:
            found += [Path((hop, *p.hops), p.end) for p in _paths(target, (*seen, target.name))]
    return found


def _declared_paths(table: Table, columns: tuple[ColumnEntry, ...]) -> list[Path]:
    """Columns without a foreign key that declare whom the row is about (`subject_link(PATRON, ...)`)."""
    return [
        Path((Hop(c.name, "", "", None, declared=True),), SubjectKind(c.subject))
        for c in columns
        if c.subject in PERSON and not table.c[c.name].foreign_keys
    ]


def _reading(column: ColumnEntry) -> Reading:
    if column.index_of is not None:
        return Reading.OMITTED
    if column.classification is not Classification.PERSONAL:
        return Reading.PLAIN
    if column.category is Category.CREDENTIALS or column.protection is Protection.ONE_WAY_HASH:
        return Reading.WITHHELD
    if column.protection is Protection.SUBJECT_KEY:
        return Reading.SUBJECT_KEY
    if column.protection is Protection.TENANT_KEY:
        return Reading.TENANT_KEY
    return Reading.PLAIN


# -- whose rows ----------------------------------------------------------------------------------


def subject(session: TenantSession, patron_id: UUID) -> Subject:
    """The patron (who must exist in this tenant), their accounts, keys and addresses."""
    patrons = Base.metadata.tables["patrons"]
    accounts = Base.metadata.tables["accounts"]
    patron = session.execute(
        select(patrons).where(patrons.c.tenant_id == session.tenant_id, patrons.c.id == patron_id)
    ).first()
    if patron is None:
        raise NotFound(f"no patron {patron_id}")
    account_rows = session.execute(
        select(accounts).where(accounts.c.tenant_id == session.tenant_id, accounts.c.patron_id == patron_id)
    ).all()
    ids = [patron_id, *(a.id for a in account_rows)]
    keys = {sid: cipher(key) for sid, key in session.keyring.subject_keys(session.tenant_id, ids).items()}
    try:
        tenant_key = cipher(session.keyring.tenant_own_key(session.tenant_id))
    except KeyDestroyed:
        tenant_key = None
    # A self-registration's address its owner has not confirmed is not the patron's: mail sent to it was
    # someone else's (the mailbox's owner), so it is neither exported with this patron nor erased with them.
    unconfirmed = patron.email_unconfirmed_until is not None
    addresses = set()
    for table, row in (("patrons", patron), *(("accounts", a) for a in account_rows)):
        if table == "patrons" and unconfirmed:
            continue
        key = keys.get(row.id)
        if key is not None and row.email is not None:
            try:
                addresses.add(_address(decrypt_field(key, session.tenant_id, table, "email", row.id, row.email)))
            except DecryptionError:
                log.warning("integrity failure", table=table, column="email", record_id=str(row.id))
    indexes = {bytes(patron.email_index)} if patron.email_index is not None and not unconfirmed else set()
    indexes |= {bytes(a.email_index) for a in account_rows if a.email_index is not None}
    return Subject(
        session.tenant_id,
        patron_id,
        tuple(a.id for a in account_rows),
        keys,
        tenant_key,
        frozenset(addresses),
        frozenset(indexes),
        session.keyring.index_key(session.tenant_id),
    )


def _address(value: str | None) -> str:
    return (value or "").strip().casefold()


def condition(location: Location, who: Subject) -> ColumnElement[bool]:
    """SQL naming the rows of `location` about `who` (CONTACT tables: every row, matched later)."""
    table = location.table
    if location.name == "patrons":
        return table.c.id == who.patron_id
    if location.is_contact:
        return table.c.tenant_id == who.tenant_id
    return and_(table.c.tenant_id == who.tenant_id, or_(*(_follow(table, p.hops, p.end, who) for p in location.paths)))


def _follow(table: Table, hops: tuple[Hop, ...], end: SubjectKind, who: Subject) -> ColumnElement[bool]:
    hop, rest = hops[0], hops[1:]
    column = table.c[hop.column]
    if not rest:
        if end is SubjectKind.PATRON:
            return column == who.patron_id
        return column.in_(who.account_ids) if who.account_ids else false()
    target = Base.metadata.tables[hop.target]
    inner = select(target.c[hop.target_column]).where(
        target.c.tenant_id == who.tenant_id, _follow(target, rest, end, who)
    )
    return column.in_(inner)


def owners(session: TenantSession, ids: Iterable[UUID]) -> dict[UUID, set[tuple[SubjectKind, UUID]]]:
    """Whom each row named by `ids` is about (the reverse of `condition`), for rows of every location the
    registry links to a patron or an account: {row id: {(PATRON, patron id) or (ACCOUNT, account id)}}. A row
    of patrons or accounts is its own subject; any other follows its paths. An account that belongs to a patron
    (the portal, or staff who are also patrons) is that patron; any other account (staff) is its own subject.
    Ids that name no such row of this institution are absent (another kind of record, or gone)."""
    wanted = sorted(set(ids))
    found: dict[UUID, set[tuple[SubjectKind, UUID]]] = {}
    if not wanted:
        return found
    tenant_id = session.tenant_id
    for location in locations():
        table = location.table
        if location.is_contact or "id" not in table.c or not isinstance(table.c.id.type, Uuid):
            continue  # CONTACT tables are matched on a decrypted address, not an id
        if location.name in SUBJECT_TABLES:
            query = select(table.c.id, table.c.id).where(table.c.tenant_id == tenant_id, table.c.id.in_(wanted))
            for row_id, subject_id in session.execute(query):
                found.setdefault(row_id, set()).add((SUBJECT_TABLES[location.name], subject_id))
            continue
        for path in location.paths:
            for row_id, subject_id in session.execute(_owner_query(table, path, tenant_id, wanted)):
                if subject_id is not None:
                    found.setdefault(row_id, set()).add((path.end, subject_id))
    accounts = Base.metadata.tables["accounts"]
    named = sorted({s for subjects in found.values() for k, s in subjects if k is SubjectKind.ACCOUNT})
    holders = dict(
        session.execute(
            select(accounts.c.id, accounts.c.patron_id).where(
                accounts.c.tenant_id == tenant_id, accounts.c.id.in_(named)
            )
        ).all()
        if named
        else []
    )
    for row_id, subjects in found.items():
        found[row_id] = {
            (SubjectKind.PATRON, holders[s]) if k is SubjectKind.ACCOUNT and holders.get(s) else (k, s)
            for k, s in subjects
            if k is not SubjectKind.ACCOUNT or s in holders
        }
    return {row_id: subjects for row_id, subjects in found.items() if subjects}


def _owner_query(table: Table, path: Path, tenant_id: UUID, ids: list[UUID]) -> Select:
    """(row id, subject id) for the rows of `table` named by `ids`, along `path`'s foreign keys."""
    current, joined = table, table
    for hop in path.hops[:-1]:
        target = Base.metadata.tables[hop.target].alias()
        on = and_(target.c.tenant_id == current.c.tenant_id, target.c[hop.target_column] == current.c[hop.column])
        joined = joined.join(target, on)
        current = target
    return (
        select(table.c.id, current.c[path.hops[-1].column])
        .select_from(joined)
        .where(table.c.tenant_id == tenant_id, table.c.id.in_(ids))
    )


def columns(location: Location) -> tuple[str, ...]:
    """The names of the values `rows` yields, in order (blind indexes left out)."""
    return tuple(name for name, reading in location.readings if reading is not Reading.OMITTED)


def structured(location: Location) -> tuple[str, ...]:
    """Columns whose values are lists or objects (arrays, JSON): a CSV cell holds them as JSON text."""
    return tuple(name for name in columns(location) if isinstance(location.table.c[name].type, ARRAY | JSON))


AUDIT_STRUCTURED = ("details",)


def rows(session: TenantSession, location: Location, who: Subject) -> Iterator[tuple]:
    """The rows of `location` about `who`, decrypted and rendered (ids, times and enums as text), as
    tuples in the order of `columns(location)`.

    Rendering is planned once per table (a converter per column, ids cast to text by the database)
    rather than decided per value: a subject with tens of thousands of rows is read in one pass.
    """
    plan = _plan(location)
    query = select(*plan.select).where(condition(location, who))
    keys = {str(k): v for k, v in who.keys.items()}
    patron_key = keys.get(str(who.patron_id))
    for row in session.execute(query.execution_options(yield_per=BATCH)):
        values = list(row)
        row_id = values[plan.row_id]
        subject_key = _row_key(plan, values, keys, patron_key)
        for index, step, column in plan.steps:
            value = values[index]
            if value is None:
                continue
            if step is _Step.ISO:
                values[index] = value.isoformat()
            elif step is _Step.SUBJECT_KEY:
                values[index] = _decrypt(subject_key, who.tenant_id, location.name, column, row_id, value)
            elif step is _Step.TENANT_KEY:
                values[index] = _decrypt(who.tenant_key, who.tenant_id, location.name, column, row_id, value)
            elif step is _Step.WITHHELD:
                values[index] = WITHHELD
            else:
                values[index] = plain(value)
        if location.is_contact and not _rendered_to(plan, values, who):
            continue
        yield tuple(values)


class _Step(enum.Enum):
    ISO = "iso"
    SUBJECT_KEY = "subject_key"
    TENANT_KEY = "tenant_key"
    WITHHELD = "withheld"
    PLAIN = "plain"


@dataclass(frozen=True)
class _Plan:
    select: tuple  # column expressions, in `columns` order (UUIDs cast to text)
    steps: tuple[tuple[int, _Step, str], ...]  # what to do to each value that is not passed as is
    row_id: int  # position of the row's id (the AAD's row)
    key_column: int | None  # position of the column naming the account whose key seals the row
    own_key: bool  # subject tables: the row's own id names its key
    contact: tuple[int, ...]  # CONTACT tables: positions of the sealed addresses


@functools.cache
def _plan(location: Location) -> _Plan:
    names = columns(location)
    readings = dict(location.readings)
    select_list, steps = [], []
    for index, name in enumerate(names):
        column = location.table.c[name]
        reading = readings[name]
        if isinstance(column.type, Uuid):
            select_list.append(cast(column, String).label(name))
        else:
            select_list.append(column)
        if reading is Reading.WITHHELD:
            steps.append((index, _Step.WITHHELD, name))
        elif reading is Reading.SUBJECT_KEY:
            steps.append((index, _Step.SUBJECT_KEY, name))
        elif reading is Reading.TENANT_KEY:
            steps.append((index, _Step.TENANT_KEY, name))
        elif isinstance(column.type, DateTime | Date):
            steps.append((index, _Step.ISO, name))
        elif not isinstance(column.type, Uuid | String | Integer | Boolean) or getattr(column.type, "enums", None):
            steps.append((index, _Step.PLAIN, name))
    id_name = (
        "id"
        if "id" in location.table.c
        else next(c.name for c in location.table.primary_key.columns if c.name != "tenant_id")
    )
    key_column = None
    if location.name not in SUBJECT_TABLES and not any(p.end is SubjectKind.PATRON for p in location.paths):
        single = [p.hops[0].column for p in location.paths if len(p.hops) == 1]
        key_column = names.index(single[0]) if single else None
    contact = tuple(names.index(c) for c in location.contact_columns)
    return _Plan(tuple(select_list), tuple(steps), names.index(id_name), key_column,
                 location.name in SUBJECT_TABLES, contact)  # fmt: skip


def _row_key(plan: _Plan, values: list, keys: dict[str, Any], patron_key: Any) -> Any:
    """The subject key sealing a row: its own (patrons, accounts), its account's, or the patron's."""
    if plan.own_key:
        return keys.get(values[plan.row_id])
    if plan.key_column is not None:
        return keys.get(values[plan.key_column])
    return patron_key


def _rendered_to(plan: _Plan, values: list, who: Subject) -> bool:
    """A CONTACT row (decrypted already) addressed to the subject."""
    for index in plan.contact:
        value = values[index]
        if not isinstance(value, str) or value == UNREADABLE:
            continue
        if _address(value) in who.addresses:
            return True
        if who.index_key is not None and _indexes(who.index_key, value) & who.address_indexes:
            return True
    return False


def matching_ids(session: TenantSession, location: Location, who: Subject) -> list[tuple]:
    """Primary keys of the rows of `location` about `who` (CONTACT tables: those addressed to them)."""
    pk = [c for c in location.table.primary_key.columns]
    if not location.is_contact:
        return [tuple(r) for r in session.execute(select(*pk).where(condition(location, who)))]
    found = []
    for row in session.execute(select(location.table).where(condition(location, who))).mappings():
        if _addressed_to(location, row, who):
            found.append(tuple(row[c.name] for c in pk))
    return found


def _addressed_to(location: Location, row: Any, who: Subject) -> bool:
    for column in location.contact_columns:
        sealed = row[column]
        if sealed is None or who.tenant_key is None:
            continue
        try:
            value = decrypt_field(who.tenant_key, who.tenant_id, location.name, column, _row_id(location, row), sealed)
        except DecryptionError:
            continue
        if _address(value) in who.addresses or (
            who.index_key is not None and _indexes(who.index_key, value) & who.address_indexes
        ):
            return True
    return False


def _indexes(index_key: bytes, value: str) -> set[bytes]:
    """The blind indexes an address has on a patron record and on an account record."""
    return {blind_index(index_key, "email", value), blind_index(index_key, "account-email", value)}


def _row_id(location: Location, row: Any) -> Any:
    if "id" in location.table.c:
        return row["id"]
    return next(row[c.name] for c in location.table.primary_key.columns if c.name != "tenant_id")


def _decrypt(key: Any, tenant_id: UUID, table: str, column: str, row_id: Any, sealed: bytes) -> str | None:
    if key is None:
        return None  # the key was destroyed: the value is gone for good
    try:
        return decrypt_field(key, tenant_id, table, column, row_id, sealed)
    except DecryptionError:
        log.warning("integrity failure", table=table, column=column, record_id=str(row_id))
        return UNREADABLE


def plain(value: Any) -> Any:
    """A value as JSON and CSV carry it."""
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


# -- the audit trail -------------------------------------------------------------------------------

AUDIT_FIELDS = (
    "seq",
    "id",
    "occurred_at",
    "actor_kind",
    "actor_id",
    "action",
    "target_kind",
    "target_id",
    "outcome",
    "source_address",
    "user_agent",
    "context",
    "request_id",
    "details",
)


def audit_condition(who: Subject) -> ColumnElement[bool]:
    """Events where the subject acted (their accounts) or was acted on (patron, accounts, their records)."""
    return or_(
        events.c.target_id.in_(who.ids),
        events.c.actor_id.in_(who.account_ids) if who.account_ids else false(),
        # Spelled as the partial index ix_audit_events_patron is (migration 0015), so the planner uses it.
        and_(
            literal_column("audit_events.details ? 'patron_id'"),
            literal_column("audit_events.details->>'patron_id'") == str(who.patron_id),
        ),
    )


def audit_rows(session: TenantSession, who: Subject) -> Iterator[tuple]:
    """The subject's audit events, as tuples in the order of AUDIT_FIELDS."""
    # The address and user agent wherever they are kept (apart from the event since migration 0026).
    fields = audit_fields()
    chosen = [fields[name] for name in AUDIT_FIELDS]
    query = (
        select(*(cast(c, String).label(c.name) if isinstance(c.type, Uuid) else c for c in chosen))
        .select_from(with_context)
        .where(events.c.tenant_id == who.tenant_id, audit_condition(who))
        .order_by(events.c.seq)
    )
    at = AUDIT_FIELDS.index("occurred_at")
    for row in session.execute(query.execution_options(yield_per=BATCH)):
        values = list(row)
        values[at] = values[at].isoformat()
        yield tuple(values)


def audit_seqs(who: Subject) -> Select:
    """The places in the chain of the subject's audit events (a SELECT to nest in another statement)."""
    return select(events.c.seq).where(events.c.tenant_id == who.tenant_id, audit_condition(who))


def audit_count(session: TenantSession, who: Subject) -> int:
    return session.scalar(
        select(func.count()).select_from(events).where(events.c.tenant_id == who.tenant_id, audit_condition(who))
    )
