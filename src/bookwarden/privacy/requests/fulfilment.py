"""Carrying out an approved data-subject request: the one place each kind meets the area that does it.

- access, portability: privacy/subjects/export.py `build_package` (the ZIP the patron downloads);
- erasure: privacy/subjects/erasure.py `erase_patron` (the signed erasure certificate);
- objection: privacy/consent/objections.py `record_objection` (disclosures then refuse the patron);
- rectification: the patron update of library/records.py, with the corrections the request carries;
- restriction: privacy/restrictions/service.py.

Each runs in the caller's transaction: if it fails, the request stays in progress and nothing of
the fulfilment remains.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from bookwarden.core.principal import Principal
from bookwarden.db.session import TenantSession
from bookwarden.identity.links import public_url_for
from bookwarden.library import records as library
from bookwarden.library.schemas import PatronUpdate
from bookwarden.privacy.consent import objections
from bookwarden.privacy.requests.models import PrivacyRequest, RequestKind
from bookwarden.privacy.requests.notices import Outcome
from bookwarden.privacy.restrictions import service as restrictions
from bookwarden.privacy.subjects import erasure, export


@dataclass(frozen=True)
class Fulfilled:
    outcome_id: UUID | None  # the package, certificate or objection that carried the request out
    details: dict[str, Any] = field(default_factory=dict)  # ids and times for the audit event, never values
    told: Outcome = field(default_factory=Outcome)  # what the patron's mail carries (the package link): never recorded


def carry_out(
    session: TenantSession, actor: Principal, request: PrivacyRequest, corrections: dict[str, Any] | None
) -> Fulfilled:
    return _BY_KIND[RequestKind(request.kind)](session, actor, request, corrections)


def _package(session, actor, request, corrections) -> Fulfilled:
    package = export.build_package(session, request.patron_id, request_id=request.id)
    link = public_url_for(package.download_path)
    details = {"package_id": package.id, "package_expires_at": package.expires_at.isoformat()}
    return Fulfilled(package.id, details, Outcome(link=link, link_expires=package.expires_at))


def _erasure(session, actor, request, corrections) -> Fulfilled:
    certificate = erasure.erase_patron(session, request.patron_id, request_id=request.id)
    return Fulfilled(certificate.id, {"certificate_id": certificate.id}, Outcome(certificate_id=certificate.id))


def _objection(session, actor, request, corrections) -> Fulfilled:
    objection = objections.record_objection(
        session, request.patron_id, request.objection_scope, request_id=request.id, actor=actor
    )
    objection_id = getattr(objection, "id", None)
    return Fulfilled(objection_id, {"objection_id": objection_id, "scope": request.objection_scope})


def _rectification(session, actor, request, corrections) -> Fulfilled:
    changes = PatronUpdate.model_validate(corrections or {})
    library.update(session, library.PATRONS, request.patron_id, changes, rectifying=True)
    return Fulfilled(None, {"fields": sorted(changes.model_fields_set)})


def _restriction(session, actor, request, corrections) -> Fulfilled:
    restrictions.restrict(session, actor, request.patron_id, request.id)
    return Fulfilled(None, {"restricted": True})


_BY_KIND: dict[RequestKind, Callable[..., Fulfilled]] = {
    RequestKind.ACCESS: _package,
    RequestKind.PORTABILITY: _package,
    RequestKind.ERASURE: _erasure,
    RequestKind.OBJECTION: _objection,
    RequestKind.RECTIFICATION: _rectification,
    RequestKind.RESTRICTION: _restriction,
}
