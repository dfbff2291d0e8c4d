"""Access packages and erasure certificates over HTTP.

Staff who handle privacy requests build a patron's access package and get its download link once;
the patron downloads it with that link alone (no account needed: the link is the credential, for 7
days). Outside a data-subject request, a package takes two people: one asks, another approves, the one
who asked builds it once and its link is downloaded once.

Erasure certificates are read and verified by the institution; the erasure policy (keep posts anonymized
or delete them) is the administrators'. Erasure itself is carried out by the request lifecycle once
approved (maker-checker), not by a route of its own.
"""

# No `from __future__ import annotations`: FastAPI reads these annotations at definition time.

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from bookwarden.access.routes import ApprovalOut
from bookwarden.api import bodies
from bookwarden.api.deps import database, requires, tenant_scope
from bookwarden.api.problems import responses
from bookwarden.audit import signing
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.db.session import Database
from bookwarden.privacy.subjects import erasure
from bookwarden.privacy.subjects import export as subject_export

router = APIRouter(prefix="/api/v1/privacy", tags=["privacy: access and erasure"], responses=responses(422))
HANDLE = Depends(requires(Permission.PRIVACY_REQUESTS_HANDLE))
POLICY = Depends(requires(Permission.POLICY_MANAGE))


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PackageIn(Input):
    patron_id: UUID
    request_id: UUID | None = None  # the data-subject request this answers, when one does
    approval_id: UUID | None = None  # else the approved request for this package (maker-checker)


class PackageAskIn(Input):
    patron_id: UUID


class PackageOut(BaseModel):
    id: UUID
    patron_id: UUID
    expires_at: datetime
    size_bytes: int
    record_count: int
    download_path: str = Field(description="the patron's download link: shown once, valid 7 days")


class CertificateDocument(BaseModel):
    statement: dict[str, Any]
    signature: str
    key_id: str
    public_key: str | None = None  # informative only: verification trusts the platform's key, never this


class ErasureCertificateOut(CertificateDocument):
    valid: bool


class VerificationOut(BaseModel):
    valid: bool
    problem: str | None
    key_id: str | None
    certificate_id: str | None


class ErasurePolicyIn(Input):
    keep_posts_anonymized: bool = Field(
        description="true: an erased patron's posts stay, by a placeholder author; false (default): deleted"
    )


class ErasurePolicyOut(BaseModel):
    keep_posts_anonymized: bool


def _trusted(request: Request) -> list[bytes]:
    return signing.trusted_public_keys(request.app.state.settings)


@router.post(
    "/subject-exports/approvals",
    status_code=202,
    response_model=ApprovalOut,
    responses=responses(401, 403, 404),
)
def ask_subject_export(body: PackageAskIn, principal: Principal = HANDLE, db: Database = Depends(database)):
    """Ask for a patron's access package outside a data-subject request; another holder of
    privacy.requests.handle approves at /api/v1/approvals/{id}/approve, then the asker builds it once."""
    with tenant_scope(db, principal) as session:
        return subject_export.ask(session, principal, body.patron_id)


@router.post("/subject-exports", status_code=201, response_model=PackageOut, responses=responses(401, 403, 404, 409))
def build_subject_export(body: PackageIn, principal: Principal = HANDLE, db: Database = Depends(database)):
    """Build a patron's access package (every record, JSON and CSV, in a ZIP sealed at rest) for the open
    data-subject request it answers (`request_id`), or under an approval the caller asked for (`approval_id`:
    one build, one download); the download link in the answer is shown once and works for 7 days."""
    with tenant_scope(db, principal) as session:
        package = subject_export.build_for_staff(
            session, principal, body.patron_id, request_id=body.request_id, approval_id=body.approval_id
        )
    return PackageOut(
        id=package.id,
        patron_id=package.patron_id,
        expires_at=package.expires_at,
        size_bytes=package.size_bytes,
        record_count=package.record_count,
        download_path=package.download_path,
    )


@router.get(
    "/subject-exports/download/{token}",
    response_class=StreamingResponse,
    responses={
        200: {"content": {subject_export.MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}}},
        **responses(403, 404, 409),
    },
)
def download_subject_export(
    token: Annotated[str, Path(pattern=subject_export.TOKEN_PATTERN, description="the link's token")],
    db: Database = Depends(database),
):
    """Download an access package by its link (the link is the credential); every download is recorded. A
    package built outside a data-subject request (under an approval) is downloaded once."""
    download = subject_export.open_download(db, token)
    headers = {
        "Content-Disposition": f'attachment; filename="{download.filename}"',
        "Content-Length": str(download.size_bytes),
        "Cache-Control": "no-store",
    }
    return StreamingResponse(download.chunks, media_type=subject_export.MEDIA_TYPE, headers=headers)


@router.get(
    "/erasure-certificates/{certificate_id}", response_model=ErasureCertificateOut, responses=responses(401, 403, 404)
)
def read_erasure_certificate(
    certificate_id: UUID, request: Request, principal: Principal = HANDLE, db: Database = Depends(database)
):
    """An erasure certificate: the signed statement of what was erased, with the key that signed it."""
    trusted = _trusted(request)
    with tenant_scope(db, principal) as session:
        certificate = erasure.view_certificate(session, principal, certificate_id)
        document = erasure.document(certificate, trusted[0])
    verdict = erasure.verify_document(document, trusted)
    return ErasureCertificateOut(**document, valid=verdict.valid)


@router.post("/erasure-certificates/verify", response_model=VerificationOut, responses=responses(401, 403))
@bodies.machine_made("statement", reason="the statement the platform signed, checked against its signature as is")
def verify_erasure_certificate(
    body: CertificateDocument, request: Request, principal: Principal = HANDLE, db: Database = Depends(database)
):
    """Check a certificate (as this API gave it) against the platform's signing key."""
    verdict = erasure.verify_document(body.model_dump(), _trusted(request))
    with tenant_scope(db, principal) as session:
        erasure.record_verification(session, principal, verdict)
    return VerificationOut(**verdict.__dict__)


@router.get("/erasure-policy", response_model=ErasurePolicyOut, responses=responses(401, 403))
def read_erasure_policy(principal: Principal = POLICY, db: Database = Depends(database)):
    """The institution's erasure policy."""
    with tenant_scope(db, principal) as session:
        policy = erasure.view_policy(session, principal)
        return ErasurePolicyOut(keep_posts_anonymized=policy.keep_posts_anonymized)


@router.put("/erasure-policy", response_model=ErasurePolicyOut, responses=responses(401, 403))
def set_erasure_policy(body: ErasurePolicyIn, principal: Principal = POLICY, db: Database = Depends(database)):
    """Choose whether an erased patron's posts are kept anonymized or deleted (the default)."""
    with tenant_scope(db, principal) as session:
        policy = erasure.set_policy(session, principal, keep_posts_anonymized=body.keep_posts_anonymized)
        return ErasurePolicyOut(keep_posts_anonymized=policy.keep_posts_anonymized)
