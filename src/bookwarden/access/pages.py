"""The consoles' access control: approvals waiting for a second person, operator grants (decided by the
institution, asked and followed by operators), security contacts and the notices they receive (mutes),
and the password policy. Each page calls the service its API route calls, as the person signed in."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Query, Request
from fastapi.responses import RedirectResponse
from pydantic import Field, StringConstraints

from bookwarden.access.approvals import service as approvals
from bookwarden.access.approvals.models import SensitiveAction
from bookwarden.access.grants import service as grants
from bookwarden.access.grants.models import GrantScope
from bookwarden.access.roles import notices
from bookwarden.access.routes import ContactIn, Input, MutesIn, _policy_input
from bookwarden.core.errors import BookwardenError, InvalidInput
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.core.text import line, lines
from bookwarden.identity.accounts import service as accounts
from bookwarden.identity.passwords import MIN_LENGTH_FLOORS, RoleClass
from bookwarden.web.consoles import Console, done, entry, page, read_form
from bookwarden.web.routing import PageRouter, form
from bookwarden.web.session import requires, tenant_scope

router = PageRouter()
Done = Annotated[str | None, Query(alias="done", max_length=20)]
APPROVALS, GRANTS, CONTACTS, POLICY = (
    "/console/approvals",
    "/console/operator-grants",
    "/console/security-contacts",
    "/console/password-policy",
)
OPERATOR_GRANTS = "/operator/grants"
INST, OPS = Console.INSTITUTION, Console.OPERATOR
entry(
    INST,
    "People and access",
    "Approvals",
    APPROVALS,
    Permission.ACCOUNTS_READ,
    "sensitive actions waiting for a second person",
)
entry(
    INST,
    "People and access",
    "Operator access",
    GRANTS,
    Permission.OPERATOR_GRANTS_APPROVE,
    "the platform's operators ask; you approve, deny or end",
)
entry(
    INST,
    "People and access",
    "Password policy",
    POLICY,
    Permission.POLICY_MANAGE,
    "length, history and expiry per kind of account",
)
entry(
    INST,
    "Security notices",
    "Contacts, notices and mutes",
    CONTACTS,
    Permission.SECURITY_CONTACTS_MANAGE,
    "who is mailed every entitlement change, and what they mute",
)
entry(
    OPS,
    "Access grants",
    "My grants",
    OPERATOR_GRANTS,
    Permission.PLATFORM_GRANTS_REQUEST,
    "ask an institution for time-bound access; follow where each stands",
)

DONE = {
    "approved": "Approved and carried out.",
    "rejected": "Rejected: nothing was changed.",
    "denied": "Denied: the operator gets no access.",
    "revoked": "Ended: the operator's access stops now.",
    "added": "Contact added; every contact is told.",
    "removed": "Contact removed; every contact, the one removed too, is told.",
    "muted": "Mutes saved; every contact is told.",
    "asked": "Asked: it waits for a second person (Approvals).",
    "requested": "Asked: the institution's security contacts are told; it waits for its administrators.",
    "ended": "Ended: your access through this grant stops now, and the institution's trail records it.",
    "broken": "Approved as break-glass: the institution's security contacts are mailed now, with your reason.",
}


def _db(request: Request):
    return request.app.state.db


# -- approvals -------------------------------------------------------------------------------------


@router.get(APPROVALS)
def approval_queue(
    request: Request, principal: Principal = Depends(requires(Permission.ACCOUNTS_READ)), done_: Done = None
):
    """Pending sensitive actions: those others asked (which the reader may decide) and the reader's own."""
    with tenant_scope(request, principal) as session:
        pending = approvals.pending(session, principal)
    mine = [a for a in pending if principal.same_party(a.requested_by, a.requested_by_person)]
    others = [a for a in pending if a not in mine]
    return page(
        request, INST, "console/approvals.html", title="Approvals", waiting=others, mine=mine, done=done(done_, DONE)
    )


def _approval_decision(verb: str, past: str, decide) -> None:
    @router.post(APPROVALS + "/{approval_id}/" + verb, name=f"page_{verb}_approval")
    def decision(
        request: Request, approval_id: UUID, principal: Principal = Depends(requires(Permission.ACCOUNTS_READ))
    ):
        """Decided by the permission of the action's own kind, never by who asked (the service checks both)."""
        with tenant_scope(request, principal) as session:
            decide(session, principal, approval_id)
        return RedirectResponse(f"{APPROVALS}?done={past}", status_code=303)


_approval_decision("approve", "approved", approvals.approve)
_approval_decision("reject", "rejected", approvals.reject)


# -- operator grants, the institution's side ------------------------------------------------------------


@router.get(GRANTS)
def grant_list(
    request: Request, principal: Principal = Depends(requires(Permission.OPERATOR_GRANTS_APPROVE)), done_: Done = None
):
    with tenant_scope(request, principal) as session:
        found = grants.list_grants(session, principal)
    return page(
        request, INST, "console/operator_grants.html", title="Operator access", grants=found, done=done(done_, DONE)
    )


def _grant_decision(verb: str, past: str, decide) -> None:
    @router.post(GRANTS + "/{grant_id}/" + verb, name=f"page_{verb}_operator_grant")
    def decision(
        request: Request, grant_id: UUID, principal: Principal = Depends(requires(Permission.OPERATOR_GRANTS_APPROVE))
    ):
        with tenant_scope(request, principal) as session:
            decide(session, principal, grant_id)
        return RedirectResponse(f"{GRANTS}?done={past}", status_code=303)


_grant_decision("approve", "approved", grants.approve_grant)
_grant_decision("deny", "denied", grants.deny_grant)
_grant_decision("revoke", "revoked", grants.revoke_grant)


# -- security contacts and the notices they receive ------------------------------------------------------

CONTACTS_MANAGE = Depends(requires(Permission.SECURITY_CONTACTS_MANAGE))


@router.get(CONTACTS)
def contact_list(request: Request, principal: Principal = CONTACTS_MANAGE, done_: Done = None):
    with tenant_scope(request, principal) as session:
        contacts = notices.contact_mutes(session, principal)
        sent = notices.sent_notices(session, principal)
    return page(
        request,
        INST,
        "console/security_contacts.html",
        title="Security contacts and notices",
        contacts=contacts,
        sent=sent,
        sent_limit=notices.SENT_LIMIT,
        mutable=notices.MUTABLE,
        never_muted=notices.NEVER_MUTED,
        done=done(done_, DONE),
    )


@router.post(CONTACTS)
def add_contact(request: Request, principal: Principal = CONTACTS_MANAGE):
    body = read_form(request, ContactIn)
    with tenant_scope(request, principal) as session:
        notices.add_contact(session, principal, body.email)
    return RedirectResponse(f"{CONTACTS}?done=added", status_code=303)


@router.post(CONTACTS + "/{contact_id}/remove")
def remove_contact(request: Request, contact_id: UUID, principal: Principal = CONTACTS_MANAGE):
    with tenant_scope(request, principal) as session:
        notices.remove_contact(session, principal, contact_id)
    return RedirectResponse(f"{CONTACTS}?done=removed", status_code=303)


@router.post(CONTACTS + "/{contact_id}/mutes")
def set_mutes(request: Request, contact_id: UUID, principal: Principal = CONTACTS_MANAGE):
    """The kinds ticked are muted, the others delivered; an administrative kind is refused by the service."""
    body = read_form(request, MutesIn, lists=("muted",))
    with tenant_scope(request, principal) as session:
        notices.set_mutes(session, principal, contact_id, [k.value for k in body.muted])
    return RedirectResponse(f"{CONTACTS}?done=muted", status_code=303)


# -- password policy -------------------------------------------------------------------------------------

TENANT_CLASSES = (RoleClass.PATRON, RoleClass.STAFF, RoleClass.ADMIN)
POLICY_MANAGE = Depends(requires(Permission.POLICY_MANAGE))


@router.get(POLICY)
def policy_view(request: Request, principal: Principal = POLICY_MANAGE, done_: Done = None):
    with tenant_scope(request, principal) as session:
        policies = [(cls, accounts.policy_for(session, cls), MIN_LENGTH_FLOORS[cls]) for cls in TENANT_CLASSES]
    return page(
        request,
        INST,
        "console/password_policy.html",
        title="Password policy",
        policies=policies,
        done=done(done_, DONE),
    )


@router.post(POLICY + "/{role_class}")
def ask_policy(request: Request, role_class: RoleClass, principal: Principal = POLICY_MANAGE):
    """Ask for new settings (within the platform floors): carried out when a second person approves."""
    if role_class not in TENANT_CLASSES:
        raise InvalidInput(
            "operators' passwords follow the platform's policy; an institution sets patron, staff, admin"
        )
    body = read_form(request, _policy_input(role_class))
    with tenant_scope(request, principal) as session:
        params = {"role_class": role_class.value, **body.model_dump()}
        approvals.ask(session, principal, SensitiveAction.CHANGE_PASSWORD_POLICY, params)
    return RedirectResponse(f"{POLICY}?done=asked", status_code=303)


# -- operator grants, the operator's side ------------------------------------------------------------------


class GrantAskIn(Input):
    institution: Annotated[str, StringConstraints(min_length=1, max_length=63, strip_whitespace=True)] = Field(
        description="the institution's slug or id"
    )
    scope: GrantScope
    justification: Annotated[lines(2000), Field(min_length=10)]
    ticket: line(200)
    hours: float = Field(gt=0.02, le=8)


@router.get(OPERATOR_GRANTS)
def own_grants(
    request: Request, principal: Principal = Depends(requires(Permission.PLATFORM_GRANTS_REQUEST)), done_: Done = None
):
    """The reader's grants in every institution (metadata: never the institution's data) and the form to ask."""
    found = grants.own_grants(_db(request), principal)
    return page(
        request,
        OPS,
        "console/own_grants.html",
        title="My access grants",
        grants=found,
        scopes=list(GrantScope),
        done=done(done_, DONE),
    )


@router.post(OPERATOR_GRANTS)
def ask_grant(request: Request, principal: Principal = Depends(requires(Permission.PLATFORM_GRANTS_REQUEST))):
    body = read_form(request, GrantAskIn)
    grants.request_grant(
        _db(request),
        principal,
        body.institution,
        scope=body.scope,
        justification=body.justification,
        ticket=body.ticket,
        duration=timedelta(hours=body.hours),
    )
    return RedirectResponse(f"{OPERATOR_GRANTS}?done=requested", status_code=303)


@router.post(OPERATOR_GRANTS + "/{tenant_id}/{grant_id}/end")
def end_own_grant(
    request: Request,
    tenant_id: UUID,
    grant_id: UUID,
    principal: Principal = Depends(requires(Permission.PLATFORM_GRANTS_REQUEST)),
):
    """The operator ends a grant they asked for before its time; another's grant, or another institution's
    id, is not found (grants.end_own_grant)."""
    grants.end_own_grant(_db(request), principal, tenant_id, grant_id)
    return RedirectResponse(f"{OPERATOR_GRANTS}?done=ended", status_code=303)


# -- break-glass: the CISO approves without the institution, in an emergency ---------------------------------

BREAK_GLASS = "/operator/break-glass"
BREAK = Depends(requires(Permission.PLATFORM_GRANTS_BREAK_GLASS))
entry(
    OPS,
    "Access grants",
    "Break glass",
    BREAK_GLASS,
    Permission.PLATFORM_GRANTS_BREAK_GLASS,
    "approve an operator's pending grant in an emergency; the institution is told at once",
)


class BreakGlassIn(Input):
    institution: Annotated[str, StringConstraints(min_length=1, max_length=63, strip_whitespace=True)] = Field(
        description="the institution's slug or id"
    )
    grant: UUID
    reason: Annotated[lines(2000), Field(min_length=10)]


@router.get(BREAK_GLASS)
def break_glass_form(request: Request, principal: Principal = BREAK, done_: Done = None):
    """The form only: the grant is named by the operator who asked (their "My grants" page shows its id)."""
    return page(
        request, OPS, "console/break_glass.html", title="Break glass", done=done(done_, DONE), error="", given={}
    )


@router.post(BREAK_GLASS)
def break_glass(request: Request, principal: Principal = BREAK):
    """grants.break_glass, as POST /api/v1/operator/grants/{tenant}/{grant}/break-glass, with the CISO's reason
    in the notice the institution receives. A refusal is shown on the form, in the service's words."""
    try:
        body = read_form(request, BreakGlassIn)
        grants.break_glass(_db(request), principal, body.institution, body.grant, reason=body.reason)
    except BookwardenError as refused:
        return page(
            request, OPS, "console/break_glass.html", status_code=refused.status, title="Break glass",
            error=refused.detail, given=form(request),
        )  # fmt: skip
    return RedirectResponse(f"{BREAK_GLASS}?done=broken", status_code=303)
