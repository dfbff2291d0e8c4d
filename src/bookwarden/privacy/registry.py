"""The personal-data registry: what every table holds, whom each row is about, why it is kept.

Built from the schema itself. Every mapped table (Base.metadata) is read column by column:

- a column that declares itself (core/classification.py, through `info=`) is what it says;
- a column that declares nothing is classified by structure only when its role is plain:
  `tenant_id` (the institution, the controller), a foreign key or primary key (a reference or a
  random row id: pseudonymous), any other UUID (a random id), a `*_at` timestamp (a time the
  row records). A name that looks personal ("birth", "address", "name"...) never passes this way;
- anything else is unclassified, and `Registry.problems()` names it `table.column`.

Tables the ORM does not map (the audit trail, written only by definer functions; the sign-in
failure counters) are declared here, in UNMAPPED, with the same vocabulary; the registry test
compares both with the live database, so a column added by a migration alone fails it too.

Whom a row is about (its subject link) follows the foreign keys to a subject table (patrons,
accounts), or a column that names its subject (`subject=`). The purposes, recipients and retention
of each category are declared below (POLICIES): the records of processing are generated from them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from sqlalchemy import DateTime, Integer, LargeBinary, MetaData, Table, Uuid

from bookwarden.core.classification import (
    COUNTER,
    MACHINE,
    STATE,
    Category,
    Classification,
    Protection,
    SubjectKind,
    not_personal,
    personal,
    pseudonymous,
    subject_link,
)
from bookwarden.db.base import whole_schema

# Each row of these tables is a data subject with its own key (crypto/keyring.py create_subject).
SUBJECT_TABLES: Mapping[str, SubjectKind] = {"patrons": SubjectKind.PATRON, "accounts": SubjectKind.ACCOUNT}

SUBJECT_DESCRIPTIONS: Mapping[SubjectKind, str] = {
    SubjectKind.PATRON: "library patrons (students, faculty, members of the public)",
    SubjectKind.ACCOUNT: "people who sign in: the institution's staff, and patrons using the privacy portal",
    SubjectKind.CONTACT: "people named only by an address: security contacts, recipients of mail",
    SubjectKind.OPERATOR: "the platform's operator staff",
    SubjectKind.PRINCIPAL: "whoever acted: staff, patrons, holders of API tokens, operator staff",
}

# Name parts that suggest a person: a column named so is never classified by its structure alone.
PERSONAL_LOOKING = frozenset(
    {
        "address", "age", "agent", "birth", "body", "born", "comment", "dob", "email", "gender", "ip",
        "location", "mail", "name", "nationality", "note", "passport", "phone", "query", "sex", "ssn",
        "surname", "text", "title", "username",
    }
)  # fmt: skip

RECORD_TIME = not_personal("a time the row records; about a person only through the row's subject link")
HASH = not_personal("a hash of the chain or a signature, computed from the rows")


def _declared(**columns: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return columns


# Tables outside Base.metadata, declared column by column (tenant_id needs no declaration).
UNMAPPED: Mapping[str, Mapping[str, dict[str, Any]]] = {
    # The audit trail (migration 0009): appended only through bookwarden_audit_append.
    "audit_events": _declared(
        seq=COUNTER,
        id=pseudonymous("random id of the event"),
        occurred_at=RECORD_TIME,
        actor_kind=STATE,
        actor_id=subject_link(SubjectKind.PRINCIPAL, "who acted: an account, API token or operator id"),
        grant_id=pseudonymous("the operator grant acted under"),
        action=STATE,
        target_kind=STATE,
        target_id=subject_link(SubjectKind.PATRON, "the record acted on: a patron, an account, a loan..."),
        outcome=STATE,
        # Written only by events appended before migration 0026 (format 1), where they are hashed.
        source_address=personal(Category.DEVICE_NETWORK, Protection.PLAIN),
        user_agent=personal(Category.DEVICE_NETWORK, Protection.PLAIN),
        request_id=MACHINE,
        details=pseudonymous("ids, counts and field names; never personal values (audit/record.py)"),
        body_digest=HASH,
        prev_hash=HASH,
        hash=HASH,
        format=STATE,
        context_commitment=HASH,
    ),
    # Format 2 events' addresses and user agents, kept apart so they can go (migration 0026, audit/contexts.py).
    "audit_event_contexts": _declared(
        # The values are about whoever the event at this place names (audit_events.actor_id, target_id).
        seq=subject_link(SubjectKind.PRINCIPAL, "the event at this place in the chain: its actor and target"),
        occurred_at=RECORD_TIME,
        source_address=personal(Category.DEVICE_NETWORK, Protection.PLAIN),
        user_agent=personal(Category.DEVICE_NETWORK, Protection.PLAIN),
        commitment_key=not_personal("a random key of one event's commitment, deleted with the values it keys"),
    ),
    "audit_heads": _declared(seq=COUNTER, hash=HASH, prev_hash=HASH),
    "audit_checkpoints": _declared(
        tree_size=COUNTER,
        root_hash=HASH,
        last_hash=HASH,
        frontier=HASH,
        signed_at=RECORD_TIME,
        key_id=MACHINE,
        signature=HASH,
    ),
    "audit_segment_drops": _declared(upto_seq=COUNTER, last_hash=HASH, dropped_at=RECORD_TIME),
    # Sign-in failure counters (migration 0005): a platform table written with plain SQL.
    "auth_failures": _declared(
        scope=STATE,
        key=pseudonymous(
            "HMAC of an account (tenant index key) or of a source address (key derived from the master key)"
        ),
        consecutive=COUNTER,
        window_start=RECORD_TIME,
        last_failure_at=RECORD_TIME,
        locked_until=RECORD_TIME,
        notice_sent_at=RECORD_TIME,
    ),
    # Per-address budgets of open routes (migration 0021): a platform table written with plain SQL.
    "rate_budgets": _declared(
        purpose=STATE,
        key=pseudonymous("HMAC of a source address bucket (key derived from the master key)"),
        window_start=RECORD_TIME,
        spent=COUNTER,
    ),
    "alembic_version": _declared(version_num=MACHINE),
}


@dataclass(frozen=True)
class CategoryPolicy:
    """Why a category is processed, who receives it, how long it is kept by default."""

    description: str
    purposes: tuple[str, ...]
    recipients: tuple[str, ...]
    retention: str
    keep_days: int | None  # default keep-for period; None: as long as the relationship lasts


STAFF = "the institution's authorised staff, by role"
PLATFORM = "the platform (processor): hosting only; operator staff only under an approved, audited access grant"
MAIL_RELAY = "the outgoing mail relay (processor's sub-processor) while delivering"

POLICIES: Mapping[Category, CategoryPolicy] = {
    Category.IDENTITY: CategoryPolicy(
        "names, usernames, date of birth",
        ("identify patrons and staff", "provide library services to registered users"),
        (STAFF, PLATFORM),
        "while the patron or account is active; then 2 years of inactivity before deletion",
        730,
    ),
    Category.CONTACT: CategoryPolicy(
        "email addresses, phone numbers, postal addresses",
        ("service messages (due dates, holds, security notices)", "answer requests and complaints"),
        (STAFF, PLATFORM, MAIL_RELAY),
        "while the patron or account is active; then 2 years of inactivity before deletion",
        730,
    ),
    Category.INSTITUTIONAL_ID: CategoryPolicy(
        "institutional identification numbers, library card barcodes",
        ("match patrons with the institution's records", "check out items at the desk"),
        (STAFF, PLATFORM),
        "while the patron is registered with the institution",
        730,
    ),
    Category.AFFILIATION: CategoryPolicy(
        "role at the institution (student, faculty, staff, member of the public)",
        ("apply the loan rules of the patron's group",),
        (STAFF, PLATFORM),
        "while the patron is registered with the institution",
        730,
    ),
    Category.CIRCULATION_HISTORY: CategoryPolicy(
        "what a patron borrowed and when",
        ("lend items and get them back", "anonymized usage statistics for the institution and publishers"),
        (STAFF, PLATFORM, "publishers: anonymized counts only, never personal data"),
        "1 year after the item is returned; anonymized afterwards",
        365,
    ),
    Category.SEARCH_HISTORY: CategoryPolicy(
        "what a patron searched for",
        ("show the patron their recent searches",),
        (PLATFORM,),
        "90 days",
        90,
    ),
    Category.READING_LISTS: CategoryPolicy(
        "reading lists and notes on them",
        ("keep the patron's reading lists",),
        (STAFF, PLATFORM),
        "until the patron deletes them or the account is erased",
        None,
    ),
    Category.USER_CONTENT: CategoryPolicy(
        "posts on the institution's message boards",
        ("publish what the patron wrote to the board's readers",),
        ("readers of the board", STAFF, PLATFORM),
        "until deleted by the author or a moderator; kept anonymized after erasure if the institution chooses",
        None,
    ),
    Category.CREDENTIALS: CategoryPolicy(
        "password hashes, second-factor secrets, security keys, session and recovery-code hashes",
        ("authenticate people who sign in",),
        ("nobody: verified by the platform only",),
        "while the account exists; old password hashes as far back as the password policy's history",
        None,
    ),
    Category.DEVICE_NETWORK: CategoryPolicy(
        "addresses and browsers that signed in or acted, names of security keys",
        ("security: detect and investigate misuse", "the audit trail the institution reads"),
        (STAFF + " (security officers, auditors)", PLATFORM),
        "sign-in sessions: 1 day after they end; in the audit trail: at most 90 days, and at once when a patron "
        "it is about is erased (events recorded before migration 0026: as long as their segment is kept); "
        "security alerts: 90 days after their last event; "
        "blocked addresses (active response): while blocked, then the repeat-offender look-back (7 days)",
        1,
    ),
    Category.PREFERENCES: CategoryPolicy(
        "communication preferences and consents",
        ("honour each person's choices about messages and cookies",),
        (STAFF, PLATFORM),
        "while the account exists; consent records 3 years after withdrawal, as proof",
        None,
    ),
    Category.CORRESPONDENCE: CategoryPolicy(
        "mail sent to people: subject and body",
        ("deliver service and security messages",),
        (PLATFORM, MAIL_RELAY),
        "90 days after sending",
        90,
    ),
    Category.COMPLAINTS: CategoryPolicy(
        "complaints about the handling of personal data, and their answers",
        ("acknowledge, answer and escalate complaints within their deadlines",),
        (STAFF + " (privacy officers)", PLATFORM),
        "3 years after the answer, to show how the complaint was handled",
        1095,
    ),
    Category.PRIVACY_REQUESTS: CategoryPolicy(
        "data-subject requests: corrections asked for, reasons of decisions and legal holds, contact addresses",
        ("receive, verify, decide and carry out data-subject requests within their deadlines",),
        (STAFF + " (privacy officers)", PLATFORM),
        "3 years after the request is completed or denied, to show how it was handled",
        1095,
    ),
    Category.STAFF_ACTIVITY: CategoryPolicy(
        "why operator staff asked for access to the institution's data",
        ("let the institution decide on and review operator access",),
        (STAFF + " (administrators, auditors)", PLATFORM),
        "2 years after the grant ended",
        730,
    ),
    Category.CONCERNS: CategoryPolicy(
        "reports of suspected unauthorised access to an account, or that a child's data is held",
        ("investigate the report, secure the account, remove a child's data held without consent",),
        (STAFF + " (privacy and security officers, security contacts)", PLATFORM),
        "2 years after the report was received",
        730,
    ),
    Category.INCIDENTS: CategoryPolicy(
        "security incidents and personal-data breaches a patron was affected by, and why they were or were not told",
        ("handle security incidents", "notify breaches to the institution, its authority and the people affected"),
        (STAFF + " (security and privacy officers)", "the platform's incident handlers"),
        "as long as the patron's record; removed with it when erased",
        None,
    ),
}


@dataclass(frozen=True)
class ColumnEntry:
    table: str
    name: str
    classification: Classification | None  # None: unclassified (a problem)
    reason: str | None = None
    category: Category | None = None
    protection: Protection | None = None
    index_of: str | None = None
    subject: SubjectKind | None = None
    declared: bool = True  # False: classified by its structure
    problem: str | None = None

    @property
    def qualified(self) -> str:
        return f"{self.table}.{self.name}"


@dataclass(frozen=True)
class SubjectLink:
    kind: SubjectKind
    via: str  # how to get from a row to its subject, e.g. "loans.patron_id -> patrons"


@dataclass(frozen=True)
class TableEntry:
    name: str
    mapped: bool
    columns: tuple[ColumnEntry, ...]
    subject_links: tuple[SubjectLink, ...]
    problems: tuple[str, ...] = ()

    @property
    def tenant_scoped(self) -> bool:
        return any(c.name == "tenant_id" for c in self.columns)

    @property
    def personal_columns(self) -> tuple[ColumnEntry, ...]:
        return tuple(c for c in self.columns if c.classification is Classification.PERSONAL)

    @property
    def categories(self) -> tuple[Category, ...]:
        return tuple(sorted({c.category for c in self.personal_columns if c.category is not None}))

    def column(self, name: str) -> ColumnEntry:
        return next(c for c in self.columns if c.name == name)


@dataclass(frozen=True)
class Registry:
    tables: Mapping[str, TableEntry]
    policies: Mapping[Category, CategoryPolicy] = field(default_factory=lambda: POLICIES)

    def categories_per_table(self, *, tenant_only: bool = False) -> dict[str, tuple[Category, ...]]:
        return {
            name: entry.categories
            for name, entry in sorted(self.tables.items())
            if entry.categories and (entry.tenant_scoped or not tenant_only)
        }

    def locations(self, category: Category, *, tenant_only: bool = False) -> list[ColumnEntry]:
        """Every column holding `category`, table by table."""
        return [
            column
            for _, entry in sorted(self.tables.items())
            if entry.tenant_scoped or not tenant_only
            for column in entry.personal_columns
            if column.category is category
        ]

    def subjects_of(self, category: Category, *, tenant_only: bool = False) -> list[SubjectKind]:
        """Kinds of people a category is held about: the subject links of the tables that hold it."""
        tables = {c.table for c in self.locations(category, tenant_only=tenant_only)}
        return sorted({link.kind for t in tables for link in self.tables[t].subject_links})

    def problems(self) -> list[str]:
        """Everything misdeclared, one line each, naming table.column: the registry test asserts none."""
        found = [f"{c.qualified}: {c.problem}" for e in self.tables.values() for c in e.columns if c.problem]
        found += [problem for entry in self.tables.values() for problem in entry.problems]
        found += [f"category {c.value}: no purposes, recipients or retention in POLICIES" for c in Category
                  if c not in self.policies]  # fmt: skip
        return sorted(found)

    def check_catalog(self, columns: Iterable[tuple[str, str]]) -> list[str]:
        """Columns of the live database (table, column) the registry does not know, and known tables
        the database lacks: a migration that adds a column its model (or UNMAPPED) does not declare."""
        live: dict[str, set[str]] = {}
        for table, column in columns:
            live.setdefault(table, set()).add(column)
        found = []
        for table, names in sorted(live.items()):
            entry = self.tables.get(table)
            if entry is None:
                found.append(f"{table}: a table of the database that no model maps and UNMAPPED does not declare")
                continue
            known = {c.name for c in entry.columns}
            found += [f"{table}.{name}: in the database but not declared" for name in sorted(names - known)]
            found += [f"{table}.{name}: declared but not in the database" for name in sorted(known - names)]
        found += [f"{table}: declared but not in the database" for table in sorted(set(self.tables) - set(live))]
        return found


def build(metadata: MetaData, unmapped: Mapping[str, Mapping[str, dict[str, Any]]] = UNMAPPED) -> Registry:
    tables: dict[str, TableEntry] = {}
    for table in metadata.sorted_tables:
        columns = tuple(_mapped_column(table, column) for column in table.columns)
        tables[table.name] = _entry(table.name, True, columns, _links(table, metadata, columns))
    for name, declared in unmapped.items():
        if name in tables:
            continue  # mapped since: the model's own declarations win
        columns = tuple(_from_info(name, column, info) for column, info in declared.items())
        if name not in PLATFORM_UNMAPPED:
            columns = (_tenant_column(name), *columns)
        links = tuple(SubjectLink(SubjectKind(c.subject), c.qualified) for c in columns if c.subject is not None)
        tables[name] = _entry(name, False, columns, links)
    return Registry(tables)


@lru_cache(maxsize=1)
def registry() -> Registry:
    """The registry of the whole schema (every area's models imported)."""
    return build(whole_schema())


# -- reading one column ----------------------------------------------------------------------

TENANT_REASON = "the institution the row belongs to (the controller), not a person"
# Tables declared in UNMAPPED that belong to no institution (no tenant_id column).
PLATFORM_UNMAPPED = frozenset({"auth_failures", "rate_budgets", "alembic_version"})


def _tenant_column(table: str) -> ColumnEntry:
    return ColumnEntry(table, "tenant_id", Classification.NOT_PERSONAL, TENANT_REASON, declared=False)


def _mapped_column(table: Table, column) -> ColumnEntry:
    if column.info:
        entry = _from_info(table.name, column.name, column.info)
        if entry.protection in (Protection.SUBJECT_KEY, Protection.TENANT_KEY) and not isinstance(
            column.type, LargeBinary
        ):
            return _with_problem(entry, f"declared {entry.protection.value} but is {column.type}, not ciphertext bytes")
        return entry
    structural = _by_structure(table, column)
    if structural is not None:
        return structural
    return ColumnEntry(
        table.name,
        column.name,
        None,
        problem=(
            "unclassified: declare it on the model with info=personal(Category...), blind_index(...), "
            "pseudonymous(...) or not_personal(...) (core/classification.py)"
        ),
    )


def _by_structure(table: Table, column) -> ColumnEntry | None:
    if column.name == "tenant_id":
        return _tenant_column(table.name)
    if PERSONAL_LOOKING & set(column.name.lower().split("_")):
        return None  # its name suggests a person: only an explicit declaration will do
    pseudonymous_because = None
    if column.foreign_keys:
        targets = sorted({fk.column.table.name for fk in column.foreign_keys})
        pseudonymous_because = f"reference to {', '.join(targets)}"
    elif column.primary_key and isinstance(column.type, Uuid | Integer):
        pseudonymous_because = "random id of the row" if isinstance(column.type, Uuid) else "sequence id of the row"
    elif isinstance(column.type, Uuid):
        pseudonymous_because = "random id of a row or principal, meaningless without the table it names"
    if pseudonymous_because is not None:
        return ColumnEntry(table.name, column.name, Classification.PSEUDONYMOUS, pseudonymous_because, declared=False)
    if isinstance(column.type, DateTime) and column.name.endswith("_at"):
        return ColumnEntry(table.name, column.name, Classification.NOT_PERSONAL, RECORD_TIME["reason"], declared=False)
    return None


def _from_info(table: str, name: str, info: Mapping[str, Any]) -> ColumnEntry:
    try:
        if info.get("personal") is True:
            return ColumnEntry(
                table,
                name,
                Classification.PERSONAL,
                category=Category(info["category"]),
                protection=Protection(info["protection"]),
                subject=SubjectKind(info["subject"]) if "subject" in info else None,
            )
        if info.get("personal") is False:
            return ColumnEntry(
                table,
                name,
                Classification(info["classification"]),
                reason=info["reason"],
                index_of=info.get("index_of"),
                subject=SubjectKind(info["subject"]) if "subject" in info else None,
            )
    except (KeyError, ValueError) as exc:
        return ColumnEntry(table, name, None, problem=f"malformed declaration ({exc}): use core/classification.py")
    return ColumnEntry(table, name, None, problem='info without "personal": use core/classification.py')


def _with_problem(entry: ColumnEntry, problem: str) -> ColumnEntry:
    return dataclasses.replace(entry, problem=problem)


# -- whom a row is about ---------------------------------------------------------------------


def _links(table: Table, metadata: MetaData, columns: tuple[ColumnEntry, ...]) -> tuple[SubjectLink, ...]:
    links = []
    if table.name in SUBJECT_TABLES:
        links.append(SubjectLink(SUBJECT_TABLES[table.name], f"{table.name}.id (each row is one)"))
    links += [SubjectLink(c.subject, c.qualified) for c in columns if c.subject is not None]
    links += _foreign_key_paths(table, metadata, (table.name,), table.name)
    unique = {(link.kind, link.via): link for link in links}
    return tuple(unique.values())


def _foreign_key_paths(table: Table, metadata: MetaData, seen: tuple[str, ...], prefix: str) -> list[SubjectLink]:
    """Follow foreign keys until a subject table: loans.patron_id -> patrons."""
    found = []
    for constraint in sorted(table.foreign_key_constraints, key=lambda c: c.name or ""):
        target = constraint.referred_table.name
        local = [c.name for c in constraint.columns if c.name != "tenant_id"]
        if target == "tenants" or not local or target in seen:
            continue
        step = f"{prefix}.{','.join(local)} -> {target}"
        if target in SUBJECT_TABLES:
            found.append(SubjectLink(SUBJECT_TABLES[target], step))
        else:
            found += _foreign_key_paths(metadata.tables[target], metadata, (*seen, target), step)
    return found


def _entry(name: str, mapped: bool, columns: tuple[ColumnEntry, ...], links: tuple[SubjectLink, ...]) -> TableEntry:
    problems = []
    personal_names = {c.name for c in columns if c.classification is Classification.PERSONAL}
    for column in columns:
        if column.index_of is not None and column.index_of not in personal_names:
            problems.append(f"{column.qualified}: blind index of {column.index_of}, which is no personal column here")
    if personal_names and not links:
        problems.append(
            f"{name}: holds personal columns ({', '.join(sorted(personal_names))}) but no row links to a subject: "
            "add a foreign key to patrons or accounts, or declare subject= on the column that names the person"
        )
    return TableEntry(name, mapped, columns, links, tuple(problems))
