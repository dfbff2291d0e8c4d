"""The catalogue publisher reports join loans to: item id -> title and publisher, loaded from CSV.

A file is checked whole before anything is written: one bad line (missing column, blank or
overlong value, an item id given twice, bytes that are not UTF-8) refuses the file with every
problem found, line by line, and the catalogue stays as it was. A good file is written in the
caller's one transaction, so a failure midway leaves nothing half-loaded either.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import delete, func, literal_column, select, tuple_
from sqlalchemy.dialects.postgresql import insert

from bookwarden.audit import record as audit
from bookwarden.audit.events import Action
from bookwarden.core.authorize import authorize
from bookwarden.core.errors import InvalidInput
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.core.sensitive import find_sensitive
from bookwarden.db.session import TenantSession
from bookwarden.privacy.reports.models import CatalogueItem

HEADER = ("item_id", "title", "publisher")
LIMITS = {"item_id": 64, "title": 500, "publisher": 200}  # the columns' lengths (report_models.py)
MAX_ITEMS = 200_000  # one file; a bigger catalogue is loaded in parts (without --replace)
MAX_BYTES = 64 * 1024 * 1024
PROBLEMS_SHOWN = 10
BATCH = 1_000
LIST_LIMIT = 1_000
# Control characters (NUL above all: PostgreSQL text cannot hold it, line breaks too) have no place in
# a title. VALUE_PATTERN says the same for the API's schema: no control character, something visible.
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
VALUE_PATTERN = r"^[^\x00-\x1f\x7f]*[^\x00-\x20\x7f][^\x00-\x1f\x7f]*$"


@dataclass(frozen=True)
class CatalogueEntry:
    item_id: str
    title: str
    publisher: str


@dataclass(frozen=True)
class ImportSummary:
    items: int  # lines in the file
    added: int
    changed: int
    unchanged: int
    removed: int  # with replace: items of the catalogue the file no longer lists


def parse(content: bytes | str) -> list[CatalogueEntry]:
    """The entries of a CSV file with the header item_id,title,publisher; InvalidInput naming every bad line."""
    if isinstance(content, bytes):
        if len(content) > MAX_BYTES:
            raise InvalidInput(f"the file is over {MAX_BYTES // (1024 * 1024)} MiB: load the catalogue in parts")
        try:
            content = content.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"the file is not UTF-8 text (byte {exc.start})") from None
    content = content.removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(content, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None or tuple(h.strip().lower() for h in header) != HEADER:
            raise InvalidInput(f"the first line must be the header {','.join(HEADER)}")
        entries, problems, seen = [], [], {}
        for row in reader:
            line = reader.line_num
            if not row:
                continue  # a blank line, at the end of the file usually
            entry, problem = _entry(row)
            if problem is None and entry.item_id in seen:
                problem = f"item {entry.item_id!r} is already on line {seen[entry.item_id]}"
            if problem is not None:
                problems.append(f"line {line}: {problem}")
                continue
            seen[entry.item_id] = line
            entries.append(entry)
            if len(entries) > MAX_ITEMS:
                raise InvalidInput(f"more than {MAX_ITEMS:,} items: load the catalogue in parts")
    except csv.Error as exc:
        raise InvalidInput(f"line {reader.line_num}: not valid CSV ({exc})") from None
    if problems:
        shown = "; ".join(problems[:PROBLEMS_SHOWN])
        more = f" (and {len(problems) - PROBLEMS_SHOWN} more)" if len(problems) > PROBLEMS_SHOWN else ""
        raise InvalidInput(f"{len(problems)} bad line(s), nothing loaded: {shown}{more}")
    if not entries:
        raise InvalidInput("the file lists no items")
    return entries


def _entry(row: list[str]) -> tuple[CatalogueEntry | None, str | None]:
    if len(row) != len(HEADER):
        return None, f"{len(row)} columns, expected {len(HEADER)} ({','.join(HEADER)})"
    values = dict(zip(HEADER, (value.strip() for value in row), strict=True))
    for name, value in values.items():
        if not value:
            return None, f"{name} is blank"
        if len(value) > LIMITS[name]:
            return None, f"{name} is longer than {LIMITS[name]} characters"
        if CONTROL.search(value):
            return None, f"{name} holds a control character"
        finding = find_sensitive(value)
        if finding is not None:  # never echoed: the message says what it looks like, not what it is
            return None, f"{name} looks like a {finding.kind}; payment and bank data are never stored"
    return CatalogueEntry(**values), None


def load(session: TenantSession, actor: Principal, content: bytes | str, *, replace: bool = False) -> ImportSummary:
    """Add or update the items of a CSV file; with `replace`, also remove the items it does not list."""
    authorize(actor, Permission.REPORTS_CATALOGUE_MANAGE)
    entries = parse(content)
    tenant_id = session.tenant_id
    added = changed = 0
    for start in range(0, len(entries), BATCH):
        batch = entries[start : start + BATCH]
        statement = insert(CatalogueItem).values(
            [{"tenant_id": tenant_id, "item_id": e.item_id, "title": e.title, "publisher": e.publisher} for e in batch]
        )
        excluded = statement.excluded
        statement = statement.on_conflict_do_update(
            index_elements=[CatalogueItem.tenant_id, CatalogueItem.item_id],
            set_={"title": excluded.title, "publisher": excluded.publisher, "updated_at": func.now()},
            # An unchanged line writes nothing (and keeps its updated_at).
            where=tuple_(CatalogueItem.title, CatalogueItem.publisher) != tuple_(excluded.title, excluded.publisher),
        ).returning(CatalogueItem.item_id, _inserted())
        for _, inserted in session.execute(statement):
            added += int(inserted)
            changed += int(not inserted)
    removed = 0
    if replace:
        listed = [e.item_id for e in entries]
        removed = session.execute(
            delete(CatalogueItem).where(CatalogueItem.tenant_id == tenant_id, CatalogueItem.item_id.not_in(listed))
        ).rowcount
    summary = ImportSummary(len(entries), added, changed, len(entries) - added - changed, removed)
    audit.record(
        session,
        Action.CATALOGUE_IMPORTED,
        ("catalogue", None),
        details={"replace": replace, **summary.__dict__},
        actor=actor,
    )
    return summary


def _inserted():
    # xmax is 0 on a row version this statement inserted, and set on one it updated.
    return literal_column("(xmax = 0)").label("inserted")


def entries(
    session: TenantSession,
    actor: Principal,
    *,
    publisher: str | None = None,
    after: str | None = None,
    limit: int = 100,
) -> list[CatalogueItem]:
    """Catalogue items in item id order, from after `after`, of one publisher when given."""
    authorize(actor, Permission.REPORTS_PUBLISHERS)
    query = select(CatalogueItem).order_by(CatalogueItem.item_id).limit(min(limit, LIST_LIMIT))
    if publisher is not None:
        query = query.where(CatalogueItem.publisher == publisher)
    if after is not None:
        query = query.where(CatalogueItem.item_id > after)
    found = list(session.scalars(query))
    audit.record(session, Action.CATALOGUE_LISTED, ("catalogue", None), details={"count": len(found)}, actor=actor)
    return found


def has_publisher(session: TenantSession, tenant_id: UUID, publisher: str) -> bool:
    query = select(CatalogueItem.item_id).where(
        CatalogueItem.tenant_id == tenant_id, CatalogueItem.publisher == publisher
    )
    return session.execute(query.limit(1)).first() is not None
