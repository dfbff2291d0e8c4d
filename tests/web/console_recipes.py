"""Audit-coverage recipes of the consoles' pages (web/consoles and each area's pages.py): each page calls the
service its API route calls, and leaves the same event (registered on import by tests/web/audit_recipes.py)."""

from __future__ import annotations

import uuid

import pyotp
from fastapi.testclient import TestClient
from sqlalchemy import select

from bookwarden.access.grants import service as grants
from bookwarden.access.roles import notices
from bookwarden.audit.events import PLATFORM_CHAIN, Action
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import tenant_session
from bookwarden.library import records as library
from bookwarden.privacy.complaints import service as complaints
from bookwarden.privacy.escalations import service as escalations
from bookwarden.privacy.escalations.models import DpoEscalation
from bookwarden.privacy.requests import service as requests
from bookwarden.privacy.requests.models import RequestKind
from tests.helpers import grant
from tests.invariants.audit_coverage import Call, quiet_page, route
from tests.web.audit_recipes import form

quiet_page("/console", "the institution console's menu: links the reader's permissions open, no data")
quiet_page("/operator", "the operator console's menu: links the reader's role opens, no data")
quiet_page("/console/console.css", "the consoles' stylesheet, the same for everyone")
quiet_page(
    "/console/password-policy", "the institution's password settings and the form to ask a change: no one's data"
)
quiet_page("/console/audit/chain", "the button that starts a verification (the POST records it)")


def staff(w, role: str, username: str | None = None) -> TestClient:
    """A browser signed in (second factor passed, where the role needs one) as a new account holding `role`."""
    username = username or f"{role.replace('_', '-')}-{uuid.uuid4().hex[:6]}"
    secret = pyotp.random_base32()
    account = w.account(username, totp=secret)
    with tenant_session(w.db, w.tenant.id) as session:
        grant(session, w.tenant.id, account.id, role)
    client = w.browser()
    if w.login(client, username)["mfa_required"]:
        assert client.post("/api/v1/auth/mfa", json={"code": pyotp.TOTP(secret).now()}).status_code == 200
    return client


def get(client: TestClient, url: str, expect, chain) -> Call:
    return Call(client, "GET", url, expect, chain)


def _request(
    w, kind: RequestKind = RequestKind.ACCESS, *, hold: bool = False, approve: bool = False, start: bool = False
):
    desk = Principal(
        PrincipalKind.API_TOKEN,
        uuid.uuid4(),
        w.tenant.id,
        {Permission.PRIVACY_REQUESTS_HANDLE, Permission.PRIVACY_REQUESTS_REGISTER},
    )
    patron_id = uuid.UUID(w.records[library.PATRONS]["id"])
    with tenant_session(w.db, w.tenant.id) as session:
        made = requests.register_for_patron(session, desk, patron_id, kind)
        if hold:
            requests.hold(session, desk, made.id, "court order 12")
        if approve:
            requests.decide(session, desk, made.id, requests.Decision.APPROVE)
        if start:
            requests.start(session, desk, made.id)
        return made.id


# -- accounts and roles -------------------------------------------------------------------------------


@route("GET", "/console/accounts")
def _(w):
    return get(staff(w, "tenant_admin"), "/console/accounts", Action.ACCOUNT_LISTED, w.tenant.id)


@route("POST", "/console/accounts")
def _(w):
    fields = {"kind": "staff", "username": "nell", "email": "nell@alpha.example"}
    return form(staff(w, "tenant_admin"), "/console/accounts", Action.ACCOUNT_CREATED, w.tenant.id, fields)


@route("GET", "/console/accounts/{account_id}")
def _(w):
    url = f"/console/accounts/{w.account('rhea').id}"
    return get(staff(w, "tenant_admin"), url, Action.ACCOUNT_VIEWED, w.tenant.id)


def _account_action(verb: str, expect, *, active: bool = True, before=None):
    @route("POST", f"/console/accounts/{{account_id}}/{verb}")
    def _(w):
        account = w.account("rhea", active=active)
        if before is not None:
            before(w, account)
        url = f"/console/accounts/{account.id}/{verb}"
        return form(staff(w, "tenant_admin"), url, expect, w.tenant.id, {}, page=f"/console/accounts/{account.id}")


def _disabled(w, account) -> None:
    with tenant_session(w.db, w.tenant.id) as session:
        from bookwarden.identity.accounts import service as accounts

        accounts.disable_account(session, w.as_admin(), account.id)


_account_action("disable", Action.ACCOUNT_DISABLED)
_account_action("enable", Action.ACCOUNT_ENABLED, before=_disabled)
_account_action("password-reset", Action.PASSWORD_RESET_REQUESTED)


@route("POST", "/console/accounts/{account_id}/roles")
def _(w):
    account = w.account("rhea")
    url = f"/console/accounts/{account.id}/roles"
    page = f"/console/accounts/{account.id}"
    return form(
        staff(w, "tenant_admin"), url, Action.ROLE_GRANTED, w.tenant.id, {"role": "circulation_staff"}, page=page
    )


@route("POST", "/console/accounts/{account_id}/roles/{role}/revoke")
def _(w):
    account = w.account("rhea")
    with tenant_session(w.db, w.tenant.id) as session:
        grant(session, w.tenant.id, account.id, "circulation_staff")
    url = f"/console/accounts/{account.id}/roles/circulation_staff/revoke"
    return form(
        staff(w, "tenant_admin"), url, Action.ROLE_REVOKED, w.tenant.id, {}, page=f"/console/accounts/{account.id}"
    )


# -- approvals, operator grants, contacts, policy ------------------------------------------------------


@route("GET", "/console/approvals")
def _(w):
    return get(staff(w, "tenant_admin"), "/console/approvals", Action.APPROVAL_LISTED, w.tenant.id)


@route("POST", "/console/approvals/{approval_id}/approve")
def _(w):
    asked = w.approval_asked()
    url = f"/console/approvals/{asked.id}/approve"
    return form(staff(w, "tenant_admin"), url, Action.APPROVAL_APPROVED, w.tenant.id, {}, page="/console/approvals")


@route("POST", "/console/approvals/{approval_id}/reject")
def _(w):
    asked = w.approval_asked()
    url = f"/console/approvals/{asked.id}/reject"
    return form(staff(w, "tenant_admin"), url, Action.APPROVAL_REJECTED, w.tenant.id, {}, page="/console/approvals")


@route("GET", "/console/operator-grants")
def _(w):
    return get(staff(w, "tenant_admin"), "/console/operator-grants", Action.GRANT_LISTED, w.tenant.id)


for _verb, _expect, _made in (
    ("approve", Action.GRANT_APPROVED, "grant_requested"),
    ("deny", Action.GRANT_REJECTED, "grant_requested"),
    ("revoke", Action.GRANT_REVOKED, "grant_approved"),
):

    def _grant_recipe(verb=_verb, expect=_expect, made=_made):
        @route("POST", f"/console/operator-grants/{{grant_id}}/{verb}")
        def _(w):
            grant_id = getattr(w, made)().id
            url = f"/console/operator-grants/{grant_id}/{verb}"
            return form(staff(w, "tenant_admin"), url, expect, w.tenant.id, {}, page="/console/operator-grants")

    _grant_recipe()


@route("GET", "/console/security-contacts")
def _(w):
    return get(staff(w, "tenant_admin"), "/console/security-contacts", Action.NOTICE_MUTES_VIEWED, w.tenant.id)


@route("POST", "/console/security-contacts")
def _(w):
    fields = {"email": "soc@alpha.example"}
    return form(
        staff(w, "tenant_admin"), "/console/security-contacts", Action.SECURITY_CONTACT_ADDED, w.tenant.id, fields
    )


def _contact(w) -> uuid.UUID:
    with tenant_session(w.db, w.tenant.id) as session:
        notices.add_security_contact(session, "soc@alpha.example")
        notices.add_security_contact(session, "ciso@alpha.example")
        return notices.contact_mutes(session, w.as_admin())[0].id


@route("POST", "/console/security-contacts/{contact_id}/remove")
def _(w):
    url = f"/console/security-contacts/{_contact(w)}/remove"
    return form(staff(w, "tenant_admin"), url, None, w.tenant.id, {}, page="/console/security-contacts")


@route("POST", "/console/security-contacts/{contact_id}/mutes")
def _(w):
    url = f"/console/security-contacts/{_contact(w)}/mutes"
    return form(
        staff(w, "tenant_admin"), url, None, w.tenant.id, {"muted": "role_granted"}, page="/console/security-contacts"
    )


@route("POST", "/console/password-policy/{role_class}")
def _(w):
    fields = {"min_length": "14", "max_length": "128", "history": "5"}
    return form(
        staff(w, "tenant_admin"),
        "/console/password-policy/staff",
        Action.APPROVAL_REQUESTED,
        w.tenant.id,
        fields,
        page="/console/password-policy",
    )


# -- privacy -----------------------------------------------------------------------------------------------


@route("GET", "/console/privacy/requests")
def _(w):
    _request(w)
    return get(staff(w, "privacy_officer"), "/console/privacy/requests", Action.PRIVACY_REQUEST_LISTED, w.tenant.id)


@route("GET", "/console/privacy/requests/{request_id}")
def _(w):
    url = f"/console/privacy/requests/{_request(w)}"
    return get(staff(w, "privacy_officer"), url, None, w.tenant.id)


def _request_action(verb: str, **made):
    @route("POST", f"/console/privacy/requests/{{request_id}}/{verb}")
    def _(w):
        request_id = _request(w, **made)
        url = f"/console/privacy/requests/{request_id}/{verb}"
        fields = {"reason": "the law requires it"} if verb in ("deny", "hold") else {}
        page = f"/console/privacy/requests/{request_id}"
        return form(staff(w, "privacy_officer"), url, None, w.tenant.id, fields, page=page)


_request_action("approve")
_request_action("deny")
_request_action("start", approve=True)
_request_action("complete", kind=RequestKind.RESTRICTION, approve=True, start=True)
_request_action("hold")
_request_action("resume", hold=True)


def _complaint(w) -> uuid.UUID:
    desk = Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), w.tenant.id, {Permission.PRIVACY_COMPLAINTS_REGISTER})
    patron_id = uuid.UUID(w.records[library.PATRONS]["id"])
    with tenant_session(w.db, w.tenant.id) as session:
        made = complaints.register_for_patron(session, desk, patron_id, subject="Loan history", body="Why kept?")
        return made.id


@route("GET", "/console/privacy/complaints")
def _(w):
    return get(staff(w, "privacy_officer"), "/console/privacy/complaints", None, w.tenant.id)


@route("GET", "/console/privacy/complaints/{complaint_id}")
def _(w):
    return get(staff(w, "privacy_officer"), f"/console/privacy/complaints/{_complaint(w)}", None, w.tenant.id)


@route("POST", "/console/privacy/complaints/{complaint_id}/answer")
def _(w):
    complaint = _complaint(w)
    url = f"/console/privacy/complaints/{complaint}/answer"
    return form(
        staff(w, "privacy_officer"),
        url,
        None,
        w.tenant.id,
        {"answer": "We keep it 90 days."},
        page=f"/console/privacy/complaints/{complaint}",
    )


@route("GET", "/console/privacy/retention")
def _(w):
    return get(staff(w, "privacy_officer"), "/console/privacy/retention", None, w.tenant.id)


@route("POST", "/console/privacy/retention/{category}")
def _(w):
    from bookwarden.privacy.retention.service import BOUNDS

    category = next(iter(BOUNDS))
    fields = {"keep_days": str(BOUNDS[category].least)}
    return form(
        staff(w, "privacy_officer"),
        f"/console/privacy/retention/{category.value}",
        Action.APPROVAL_REQUESTED,
        w.tenant.id,
        fields,
        page="/console/privacy/retention",
    )


@route("GET", "/console/privacy/disclosures")
def _(w):
    return get(staff(w, "privacy_officer"), "/console/privacy/disclosures", None, w.tenant.id)


@route("GET", "/console/privacy/disclosures/{disclosure_id}")
def _(w):
    from bookwarden.privacy.disclosures import service as disclosures
    from bookwarden.privacy.disclosures.models import DisclosureKind, LegalBasis

    officer = Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), w.tenant.id, {Permission.PRIVACY_DISCLOSURES_MANAGE})
    patron_id = uuid.UUID(w.records[library.PATRONS]["id"])
    with tenant_session(w.db, w.tenant.id) as session:
        made = disclosures.disclose(
            session,
            recipient="County court",
            purpose="court_order",
            basis=LegalBasis.LEGAL_OBLIGATION,
            categories=["identity"],
            patron_ids=[patron_id],
            kind=DisclosureKind.LEGAL_REQUEST,
            reference="case 12",
            notice_withheld_reason=None,
            actor=officer,
        )
    url = f"/console/privacy/disclosures/{made.disclosure.id}"
    return get(staff(w, "privacy_officer"), url, None, w.tenant.id)


@route("GET", "/console/privacy/publisher-reports")
def _(w):
    return get(staff(w, "privacy_officer"), "/console/privacy/publisher-reports", None, w.tenant.id)


# -- audit and usage ---------------------------------------------------------------------------------------


@route("GET", "/console/audit")
def _(w):
    return Call(
        staff(w, "auditor"), "GET", "/console/audit", Action.AUDIT_SEARCHED, w.tenant.id, params={"action": "auth."}
    )


@route("GET", "/console/audit/export")
def _(w):
    return Call(
        staff(w, "auditor"),
        "GET",
        "/console/audit/export",
        Action.AUDIT_EXPORTED,
        w.tenant.id,
        params={"format": "csv"},
    )


@route("POST", "/console/audit/chain")
def _(w):
    return form(staff(w, "auditor"), "/console/audit/chain", Action.AUDIT_VERIFIED, w.tenant.id, {})


@route("GET", "/console/audit/sign-in-failures")
def _(w):
    return get(staff(w, "auditor"), "/console/audit/sign-in-failures", Action.AUDIT_SEARCHED, w.tenant.id)


@route("GET", "/console/usage")
def _(w):
    return get(staff(w, "auditor"), "/console/usage", Action.USAGE_REPORTED, w.tenant.id)


# -- the operator console ------------------------------------------------------------------------------------


@route("GET", "/operator/institutions")
def _(w):
    return get(w.operator_signed_in(), "/operator/institutions", None, PLATFORM_CHAIN)


@route("POST", "/operator/institutions")
def _(w):
    fields = {"slug": "gamma-college", "name": "Gamma College"}
    return form(w.operator_signed_in(), "/operator/institutions", None, PLATFORM_CHAIN, fields)


@route("POST", "/operator/institutions/{tenant_id}/suspend")
def _(w):
    url = f"/operator/institutions/{w.tenant.id}/suspend"
    return form(w.operator_signed_in(), url, None, PLATFORM_CHAIN, {"reason": "unpaid"}, page="/operator/institutions")


@route("POST", "/operator/institutions/{tenant_id}/resume")
def _(w):
    client = w.operator_signed_in()
    assert (
        form(
            client,
            f"/operator/institutions/{w.tenant.id}/suspend",
            None,
            None,
            {"reason": "unpaid"},
            page="/operator/institutions",
        )
        .send()
        .status_code
        == 303
    )
    url = f"/operator/institutions/{w.tenant.id}/resume"
    return form(client, url, None, PLATFORM_CHAIN, {}, page="/operator/institutions")


@route("GET", "/operator/grants")
def _(w):
    return get(w.operator_signed_in(), "/operator/grants", Action.GRANT_LISTED, PLATFORM_CHAIN)


@route("POST", "/operator/grants")
def _(w):
    fields = {
        "institution": w.tenant.slug,
        "scope": "read",
        "justification": "patron cannot sign in, INC-9",
        "ticket": "INC-9",
        "hours": "1",
    }
    return form(w.operator_signed_in(), "/operator/grants", Action.GRANT_REQUESTED, w.tenant.id, fields)


@route("GET", "/operator/grants/{grant_id}/patrons")
def _(w):
    w.records  # noqa: B018 - a patron to read
    client = w.operator_signed_in()
    mine = client.get("/api/v1/operator/auth/me")
    operator = Principal(
        PrincipalKind.OPERATOR, uuid.UUID(mine.json()["id"]), None, frozenset({Permission.PLATFORM_GRANTS_REQUEST})
    )
    asked = w.grant_requested(operator)
    with tenant_session(w.db, w.tenant.id) as session:
        grants.approve_grant(session, w.as_admin(), asked.id)
    return get(client, f"/operator/grants/{asked.id}/patrons", Action.GRANT_USED, w.tenant.id)


@route("GET", "/operator/usage")
def _(w):
    return get(w.operator_signed_in(), "/operator/usage", Action.USAGE_REPORTED, PLATFORM_CHAIN)


@route("GET", "/operator/escalations")
def _(w):
    client = w.operator_signed_in("dana.dpo", "dpo")
    return get(client, "/operator/escalations", Action.DPO_ESCALATION_LISTED, PLATFORM_CHAIN)


@route("POST", "/operator/escalations/{tenant_id}/{escalation_id}/acknowledge")
def _(w):
    request_id = _request(w)
    with tenant_session(w.db, w.tenant.id) as session:
        due = session.scalar(select(requests.PrivacyRequest.due_at).where(requests.PrivacyRequest.id == request_id))
        escalation = escalations.raise_escalation(
            session, escalations.SubjectKind.PRIVACY_REQUEST, request_id, escalations.Level.UNACKNOWLEDGED, due
        )
    client = w.operator_signed_in("dana.dpo", "dpo")
    url = f"/operator/escalations/{w.tenant.id}/{escalation}/acknowledge"
    return form(client, url, Action.DPO_ESCALATION_ACKNOWLEDGED, w.tenant.id, {}, page="/operator/escalations")


assert DpoEscalation  # the table the acknowledgement writes
