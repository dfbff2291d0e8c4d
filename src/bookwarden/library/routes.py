"""Staff API for the hosted domain: the same five routes for every kind of record."""

# No `from __future__ import annotations`: FastAPI reads these annotations at definition time,
# and they name each kind's own schemas.

import functools
from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, StringConstraints

from bookwarden.access.routes import ApprovalOut
from bookwarden.api.deps import database, requires, tenant_scope
from bookwarden.api.problems import responses
from bookwarden.audit import record as audit
from bookwarden.audit.routes import _closing as closing  # closes the chunks when the reader goes away
from bookwarden.core.pagination import Page
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.core.purposes import PURPOSE_PATTERN, SharingPath, sharing_marker
from bookwarden.db.session import Database
from bookwarden.library import deletion, export, records, schemas, service
from bookwarden.library.records import RecordKind
from bookwarden.library.service import PERMISSIONS

router = APIRouter(prefix="/api/v1", responses=responses(401, 403, 422))

Limit = Annotated[int, Query(ge=1, le=200, description="page size")]
Cursor = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_-]{22}$", description="next_cursor of the previous page")]

PATHS = {
    records.PATRONS: "patrons",
    records.LOANS: "loans",
    records.SEARCHES: "searches",
    records.READING_LISTS: "reading-lists",
    records.READING_LIST_ITEMS: "reading-list-items",
    records.POSTS: "posts",
}


def _add_routes(kind: RecordKind, path: str) -> None:
    tag = path.replace("-", " ")
    one = f"/{path}/{{record_id}}"
    Out, Create, Update = kind.out, kind.create, kind.update
    read_permission, write_permission = PERMISSIONS[kind]
    READ, WRITE = Depends(requires(read_permission)), Depends(requires(write_permission))

    @router.post(
        f"/{path}",
        status_code=201,
        response_model=Out,
        tags=[tag],
        name=f"create_{kind.table}",
        responses=responses(404, 409),
    )
    def create(body: Create, principal: Principal = WRITE, db: Database = Depends(database)):
        with tenant_scope(db, principal) as session:
            return service.create(session, principal, kind, body)

    @router.get(one, response_model=Out, tags=[tag], name=f"read_{kind.table}", responses=responses(404))
    def read(record_id: UUID, principal: Principal = READ, db: Database = Depends(database)):
        with tenant_scope(db, principal) as session:
            return service.read(session, principal, kind, record_id)

    @router.patch(one, response_model=Out, tags=[tag], name=f"update_{kind.table}", responses=responses(404, 409))
    def update(record_id: UUID, body: Update, principal: Principal = WRITE, db: Database = Depends(database)):
        with tenant_scope(db, principal) as session:
            return service.update(session, principal, kind, record_id, body)

    if kind is not records.PATRONS:  # a patron's deletion takes two people: below

        @router.delete(one, status_code=204, tags=[tag], name=f"delete_{kind.table}", responses=responses(404))
        def delete(record_id: UUID, principal: Principal = WRITE, db: Database = Depends(database)):
            with tenant_scope(db, principal) as session:
                service.delete(session, principal, kind, record_id)
            return Response(status_code=204)

    filters = (
        {"list_id": "reading list"}
        if kind is records.READING_LIST_ITEMS
        else ({} if kind is records.PATRONS else {"patron_id": "patron"})
    )

    @router.get(f"/{path}", response_model=Page[Out], tags=[tag], name=f"list_{kind.table}")
    def list_(
        principal: Principal = READ,
        db: Database = Depends(database),
        cursor: Cursor = None,
        limit: Limit = 50,
        patron_id: Annotated[UUID | None, Query(include_in_schema="patron_id" in filters)] = None,
        list_id: Annotated[UUID | None, Query(include_in_schema="list_id" in filters)] = None,
    ):
        with tenant_scope(db, principal) as session:
            return service.list_page(
                session,
                principal,
                kind,
                cursor=cursor,
                limit=limit,
                patron_id=patron_id if "patron_id" in filters else None,
                list_id=list_id if "list_id" in filters else None,
            )


for _kind, _path in PATHS.items():
    _add_routes(_kind, _path)


@router.post("/patrons/lookup", response_model=list[schemas.PatronOut], tags=["patrons"])
def lookup_patrons(
    body: schemas.PatronLookup,
    principal: Principal = Depends(requires(Permission.PATRONS_READ)),
    db: Database = Depends(database),
):
    """Exact match on one of email, institutional id or barcode (blind indexes; nothing decrypted to search)."""
    with tenant_scope(db, principal) as session:
        return service.lookup_patrons(session, principal, body)


# -- deleting a patron (two people and a grace period: library/deletion.py) -----------------------------


class PatronDeletionOut(BaseModel):
    patron_id: UUID
    approval_id: UUID
    due_at: datetime
    confirmed: bool


PATRON_WRITE = Depends(requires(Permission.PATRONS_WRITE))


@router.delete(
    "/patrons/{record_id}",
    status_code=202,
    response_model=PatronDeletionOut,
    tags=["patrons"],
    name="delete_patrons",
    responses=responses(404, 409),
)
def delete_patron(record_id: UUID, principal: Principal = PATRON_WRITE, db: Database = Depends(database)):
    """Ask for the patron's deletion: hidden and frozen at once, their key kept; another holder of patrons.write
    confirms or undoes it within the grace period, at whose end a confirmed deletion destroys the key and the
    rows, and an unconfirmed one lapses."""
    with tenant_scope(db, principal) as session:
        return deletion.ask(session, principal, record_id)


@router.post(
    "/patrons/{patron_id}/deletion/confirm",
    response_model=PatronDeletionOut,
    tags=["patrons"],
    responses=responses(404, 409),
)
def confirm_patron_deletion(patron_id: UUID, principal: Principal = PATRON_WRITE, db: Database = Depends(database)):
    """The second person confirms a pending deletion (never the one who asked, through any credential)."""
    with tenant_scope(db, principal) as session:
        return deletion.confirm(session, principal, patron_id)


@router.post("/patrons/{patron_id}/deletion/undo", status_code=204, tags=["patrons"], responses=responses(404, 409))
def undo_patron_deletion(patron_id: UUID, principal: Principal = PATRON_WRITE, db: Database = Depends(database)):
    """A second person restores a patron whose deletion is pending, within the grace period."""
    with tenant_scope(db, principal) as session:
        deletion.undo(session, principal, patron_id)
    return Response(status_code=204)


# -- the patron's own posts (the portal) -------------------------------------------------------

OWN = Depends(requires(Permission.SELF_SERVICE))


@router.get("/me/posts", response_model=Page[schemas.PostOut], tags=["portal"])
def list_own_posts(
    principal: Principal = OWN,
    db: Database = Depends(database),
    cursor: Cursor = None,
    limit: Limit = 50,
):
    """The signed-in patron's own posts."""
    with tenant_scope(db, principal) as session:
        return service.own_posts(session, principal, cursor=cursor, limit=limit)


@router.delete("/me/posts/{post_id}", status_code=204, tags=["portal"], responses=responses(401, 403, 404))
def delete_own_post(post_id: UUID, principal: Principal = OWN, db: Database = Depends(database)):
    """The signed-in patron deletes one of their own posts (another's is not found)."""
    with tenant_scope(db, principal) as session:
        service.delete_own_post(session, principal, post_id)


# -- bulk export of patrons (maker-checker: library/export.py) --------------------------------


class ExportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: export.ExportFormat = export.ExportFormat.JSONL
    # What the file is for: patrons who object to it are left out; direct marketing is refused (403).
    purpose: Annotated[str, StringConstraints(pattern=PURPOSE_PATTERN)] = export.DEFAULT_PURPOSE


@router.post("/patrons/exports", status_code=202, response_model=ApprovalOut, tags=["patrons"])
def ask_patron_export(
    body: ExportIn,
    principal: Principal = Depends(requires(Permission.PATRONS_EXPORT)),
    db: Database = Depends(database),
):
    """Ask for every patron in one file, for a purpose; another holder of patrons.export approves at
    /approvals/{id}/approve. Patrons who object to disclosure to third parties or to the purpose, or whose
    processing is restricted, will be left out of the file."""
    with tenant_scope(db, principal) as session:
        return export.ask(session, principal, body.format, body.purpose)


EXPORT_CONTENT = {media: {"schema": {"type": "string"}} for media in export.MEDIA_TYPES.values()}


@router.get(
    "/patrons/exports/{approval_id}",
    response_class=StreamingResponse,
    tags=["patrons"],
    openapi_extra=sharing_marker(SharingPath.BULK_EXPORT),
    responses={
        **responses(404, 409),
        200: {"content": EXPORT_CONTENT, "description": "every patron as JSON lines or CSV, as an attachment"},
    },
)
def download_patron_export(
    approval_id: UUID,
    principal: Principal = Depends(requires(Permission.PATRONS_EXPORT)),
    db: Database = Depends(database),
):
    """The approved export, for the one who asked: once, within 24 hours of the approval. Every patron but
    those the sharing gate leaves out (objections, restrictions)."""
    # Opened here, before answering: a refusal (not the asker's, not approved, spent) is still a problem.
    scope = functools.partial(tenant_scope, db, principal)
    fmt, chunks = export.open_download(db, scope, principal, approval_id, audit.current())
    return StreamingResponse(
        closing(b"", chunks),
        media_type=export.MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="patrons-{approval_id}.{fmt.value}"'},
    )
