"""Disclosures to third parties in the institution console: the register, one disclosure and whom it named,
and whether subjects are told of each kind."""

from __future__ import annotations

from uuid import UUID

from fastapi import Depends, Request

from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.privacy.disclosures import service as disclosures
from bookwarden.web.consoles import Console, entry, page
from bookwarden.web.routing import PageRouter
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


@router.get(HOME)
def register(request: Request, principal: Principal = MANAGE):
    with tenant_scope(request, principal) as session:
        found = disclosures.list_disclosures(session, principal)
        policies = disclosures.notice_policies(session, principal)
    return page(
        request, Console.INSTITUTION, "console/disclosures.html", title="Disclosures", rows=found, policies=policies
    )


@router.get(HOME + "/{disclosure_id}")
def read_disclosure(request: Request, disclosure_id: UUID, principal: Principal = MANAGE):
    with tenant_scope(request, principal) as session:
        found, subjects = disclosures.read(session, principal, disclosure_id)
    return page(
        request,
        Console.INSTITUTION,
        "console/disclosure.html",
        title=f"Disclosure to {found.recipient}",
        d=found,
        subjects=subjects,
    )
