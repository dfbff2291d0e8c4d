"""The hosted domain's use cases as staff and patrons reach them (routes, commands, later pages): each takes
its actor, checks the permission the kind of record needs, then works through the record store.

The store (library/records.py) seals, opens and audits every record and takes no actor: the services
that compose it (an erasure, a rectification, a registration, a retention purge) authorized the act they
are part of. Whatever serves a person here goes through these functions, so a new adapter cannot forget
the check (tests/invariants/test_service_authorization.py turns the routes' own checks off to prove it).
"""

from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel

from bookwarden.core.authorize import authorize
from bookwarden.core.pagination import Page
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.db.session import TenantSession
from bookwarden.identity.accounts.service import own_patron_id
from bookwarden.library import records, schemas
from bookwarden.library.records import RecordKind

# (read, write) permission of each kind of record.
PERMISSIONS: dict[RecordKind, tuple[Permission, Permission]] = {
    records.PATRONS: (Permission.PATRONS_READ, Permission.PATRONS_WRITE),
    records.LOANS: (Permission.LOANS_READ, Permission.LOANS_WRITE),
    records.SEARCHES: (Permission.SEARCHES_READ, Permission.SEARCHES_WRITE),
    records.READING_LISTS: (Permission.READING_LISTS_READ, Permission.READING_LISTS_WRITE),
    records.READING_LIST_ITEMS: (Permission.READING_LISTS_READ, Permission.READING_LISTS_WRITE),
    records.POSTS: (Permission.POSTS_READ, Permission.POSTS_WRITE),
}


def _reading(actor: Principal, kind: RecordKind) -> None:
    authorize(actor, PERMISSIONS[kind][0])


def _writing(actor: Principal, kind: RecordKind) -> None:
    authorize(actor, PERMISSIONS[kind][1])


def create(session: TenantSession, actor: Principal, kind: RecordKind, data: BaseModel) -> BaseModel:
    _writing(actor, kind)
    return records.create(session, kind, data)


def read(session: TenantSession, actor: Principal, kind: RecordKind, record_id: UUID) -> BaseModel:
    _reading(actor, kind)
    return records.read(session, kind, record_id)


def update(
    session: TenantSession, actor: Principal, kind: RecordKind, record_id: UUID, changes: BaseModel
) -> BaseModel:
    _writing(actor, kind)
    return records.update(session, kind, record_id, changes)


def delete(session: TenantSession, actor: Principal, kind: RecordKind, record_id: UUID) -> None:
    """Any record but a patron (whose deletion takes two people: library/deletion.py)."""
    _writing(actor, kind)
    records.delete(session, kind, record_id)


def list_page(
    session: TenantSession,
    actor: Principal,
    kind: RecordKind,
    *,
    cursor: str | None,
    limit: int,
    patron_id: UUID | None = None,
    list_id: UUID | None = None,
) -> Page:
    _reading(actor, kind)
    return records.list_page(session, kind, cursor=cursor, limit=limit, patron_id=patron_id, list_id=list_id)


def lookup_patrons(session: TenantSession, actor: Principal, lookup: schemas.PatronLookup) -> list[BaseModel]:
    authorize(actor, Permission.PATRONS_READ)
    return records.lookup_patrons(session, lookup)


# -- the patron's own posts (the portal) -------------------------------------------------------------


def own_posts(session: TenantSession, actor: Principal, *, cursor: str | None, limit: int) -> Page:
    """The signed-in patron's own posts, and nobody else's."""
    authorize(actor, Permission.SELF_SERVICE)
    return records.list_page(
        session, records.POSTS, cursor=cursor, limit=limit, patron_id=own_patron_id(session, actor)
    )


def delete_own_post(session: TenantSession, actor: Principal, post_id: UUID) -> None:
    """The signed-in patron deletes one of their own posts (another's is not found)."""
    authorize(actor, Permission.SELF_SERVICE)
    records.delete_own_post(session, own_patron_id(session, actor), post_id)


class OwnRecord(BaseModel):
    """What the library holds about the signed-in patron, opened for them (the portal's "my data")."""

    patron: schemas.PatronOut
    loans: list[schemas.LoanOut]
    searches: list[schemas.SearchOut]
    reading_lists: list[schemas.ReadingListOut]
    more: bool  # some kind holds more than OWN_RECORD_LIMIT rows: the access package has them all


OWN_RECORD_LIMIT = 200


def own_record(session: TenantSession, actor: Principal) -> OwnRecord:
    """The signed-in patron's own record and activity, decrypted for them and nobody else (each read audited)."""
    authorize(actor, Permission.SELF_SERVICE)
    patron_id = own_patron_id(session, actor)
    pages = {
        kind: records.list_page(session, kind, cursor=None, limit=OWN_RECORD_LIMIT, patron_id=patron_id)
        for kind in (records.LOANS, records.SEARCHES, records.READING_LISTS)
    }
    return OwnRecord(
        patron=records.read(session, records.PATRONS, patron_id),
        loans=pages[records.LOANS].items,
        searches=pages[records.SEARCHES].items,
        reading_lists=pages[records.READING_LISTS].items,
        more=any(page.next_cursor is not None for page in pages.values()),
    )
