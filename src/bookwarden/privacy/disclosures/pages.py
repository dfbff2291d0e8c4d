"""Disclosures to third parties in the institution console: the register, one disclosure and whom it named,
whether subjects are told of each kind, and recording a disclosure (POST /api/v1/privacy/disclosures's service
and input model: objectors left out through the sharing gate, the subjects told per policy)."""

from __future__ import annotations

import re
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Query, Request
from fastapi.responses import RedirectResponse

from bookwarden.api.problems import record_refusal
from bookwarden.core.classification import Category
from bookwarden.core.errors import BookwardenError
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.privacy.disclosures import service as disclosures
from bookwarden.privacy.disclosures.models import DisclosureKind, LegalBasis
from bookwarden.privacy.disclosures.routes import DisclosureIn
from bookwarden.web.consoles import Console, done, entry, page, read_form
from bookwarden.web.routing import PageRouter, form
from bookwarden.web.session import requires, tenant_scope

router = PageRouter()
MANAGE = Depends(requires(Permission.PRIVACY_DISCLOSURES_MANAGE))
HOME = "/console/privacy/disclosures"
entry(
    Console.INSTITUTION,
    "Privacy",
    "Disclosures",
    HOME,
    Permission.PRIVACY_DISCLOSURES_MANAGE,
    "personal data shared with third parties: to whom, why, on which basis",
)


Done = Annotated[str | None, Query(alias="done", max_length=20)]
DONE = {"recorded": "Recorded. Share the data of the patrons listed below, and no others."}
# The form's text fields, kept when a refusal shows the form again.
GIVEN = ("recipient", "kind", "purpose", "basis", "patron_ids", "reference", "notice_withheld_reason")


def _register(request: Request, principal: Principal, status_code: int = 200, **context):
    with tenant_scope(request, principal) as session:
        found = disclosures.list_disclosures(session, principal)
        policies = disclosures.notice_policies(session, principal)
    context = {"error": "", "given": {}, "ticked": [], **context}
    return page(
        request, Console.INSTITUTION, "console/disclosures.html", status_code=status_code, title="Disclosures",
        rows=found, policies=policies, kinds=list(DisclosureKind), bases=list(LegalBasis), categories=list(Category),
        **context,
    )  # fmt: skip


@router.get(HOME)
def register(request: Request, principal: Principal = MANAGE):
    return _register(request, principal)


@router.post(HOME)
def record_disclosure(request: Request, principal: Principal = MANAGE):
    """Record a disclosure before it happens; the page that follows names the patrons whose data may go."""
    fields = form(request)
    try:
        ids = [part for part in re.split(r"[\s,]+", fields.get("patron_ids", "")) if part]
        body = read_form(request, DisclosureIn, lists=("categories",), patron_ids=ids)
        with tenant_scope(request, principal) as session:
            made = disclosures.disclose(
                session, recipient=body.recipient, purpose=body.purpose, basis=body.basis,
                categories=body.categories, patron_ids=body.patron_ids, kind=body.kind, reference=body.reference,
                notice_withheld_reason=body.notice_withheld_reason, actor=principal,
            )  # fmt: skip
    except BookwardenError as refused:
        record_refusal(request, refused)  # recorded as the API records it; shown on the form
        given = {name: fields.get(name, "") for name in GIVEN}
        return _register(
            request, principal, status_code=refused.status, error=refused.detail, given=given,
            ticked=fields.getlist("categories"),
        )  # fmt: skip
    return RedirectResponse(f"{HOME}/{made.disclosure.id}?done=recorded", status_code=303)


@router.get(HOME + "/{disclosure_id}")
def read_disclosure(request: Request, disclosure_id: UUID, principal: Principal = MANAGE, done_: Done = None):
    with tenant_scope(request, principal) as session:
        found, subjects = disclosures.read(session, principal, disclosure_id)
    return page(
        request,
        Console.INSTITUTION,
        "console/disclosure.html",
        title=f"Disclosure to {found.recipient}",
        d=found,
        subjects=subjects,
        done=done(done_, DONE),
    )
