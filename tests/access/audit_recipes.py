"""Audit-coverage recipes of the access area: how to call each of its routes and commands, and the
event each must leave (run by tests/invariants/test_audit_coverage.py)."""

from __future__ import annotations

from bookwarden.access.roles import notices
from bookwarden.audit.events import Action
from bookwarden.db.session import tenant_session
from tests.e2e.test_cli import cli_env  # noqa: F401 - fixture
from tests.e2e.test_saml import MAPPINGS, _start, admin, idp, key_pairs, sp_metadata  # noqa: F401 - fixtures
from tests.invariants.audit_coverage import (
    Call,
    route,
)

# roles, approvals, security contacts, password policies


@route("GET", "/api/v1/roles")
def _(w):
    return Call(w.admin, "GET", "/api/v1/roles", Action.ROLE_LISTED, w.tenant.id)


@route("POST", "/api/v1/roles")
def _(w):
    body = {"name": "shelver", "permissions": ["loans.read"]}
    return Call(w.admin, "POST", "/api/v1/roles", Action.ROLE_CREATED, w.tenant.id, json=body)


@route("PUT", "/api/v1/roles/{name}/permissions")
def _(w):
    assert w.admin.post("/api/v1/roles", json={"name": "shelver", "permissions": []}).status_code == 201
    body = {"permissions": ["loans.read", "loans.write"]}
    return Call(w.admin, "PUT", "/api/v1/roles/shelver/permissions", Action.ROLE_CHANGED, w.tenant.id, json=body)


@route("GET", "/api/v1/accounts/{account_id}/roles")
def _(w):
    url = f"/api/v1/accounts/{w.account('rhea').id}/roles"
    return Call(w.admin, "GET", url, Action.ROLE_LISTED, w.tenant.id)


@route("POST", "/api/v1/accounts/{account_id}/roles")
def _(w):
    url = f"/api/v1/accounts/{w.account('rhea').id}/roles"
    return Call(w.admin, "POST", url, Action.ROLE_GRANTED, w.tenant.id, json={"role": "circulation_staff"})


@route("DELETE", "/api/v1/accounts/{account_id}/roles/{role}")
def _(w):
    account = w.account("rhea")
    # An ordinary role, granted at once (one carrying administrative permissions would wait for a second person).
    assert w.admin.post(f"/api/v1/accounts/{account.id}/roles", json={"role": "circulation_staff"}).status_code == 204
    url = f"/api/v1/accounts/{account.id}/roles/circulation_staff"
    return Call(w.admin, "DELETE", url, Action.ROLE_REVOKED, w.tenant.id)


@route("GET", "/api/v1/approvals")
def _(w):
    return Call(w.admin, "GET", "/api/v1/approvals", Action.APPROVAL_LISTED, w.tenant.id)


@route("POST", "/api/v1/approvals/{record_id}/approve")
def _(w):
    url = f"/api/v1/approvals/{w.approval_asked().id}/approve"
    return Call(w.admin, "POST", url, Action.APPROVAL_APPROVED, w.tenant.id)


@route("POST", "/api/v1/approvals/{record_id}/reject")
def _(w):
    url = f"/api/v1/approvals/{w.approval_asked().id}/reject"
    return Call(w.admin, "POST", url, Action.APPROVAL_REJECTED, w.tenant.id)


@route("GET", "/api/v1/security-contacts")
def _(w):
    return Call(w.admin, "GET", "/api/v1/security-contacts", Action.SECURITY_CONTACT_LISTED, w.tenant.id)


@route("POST", "/api/v1/security-contacts")
def _(w):
    body = {"email": "security@alpha.example"}
    return Call(w.admin, "POST", "/api/v1/security-contacts", Action.SECURITY_CONTACT_ADDED, w.tenant.id, json=body)


def _policy_recipe(role_class: str, floor: int) -> None:
    url = f"/api/v1/password-policies/{role_class}"
    route("PUT", url)(
        lambda w: Call(w.admin, "PUT", url, Action.APPROVAL_REQUESTED, w.tenant.id, json={"min_length": floor})
    )


for _class, _floor in (("patron", 8), ("staff", 12), ("admin", 15)):
    _policy_recipe(_class, _floor)


# operator grants


@route("POST", "/api/v1/operator/grants")
def _(w):
    body = {
        "tenant_id": str(w.tenant.id),
        "scope": "read",
        "justification": "patron cannot sign in, ticket INC-9",
        "ticket": "INC-9",
        "hours": 1,
    }
    return Call(w.operator, "POST", "/api/v1/operator/grants", Action.GRANT_REQUESTED, w.tenant.id, json=body)


@route("POST", "/api/v1/operator/grants/{tenant_id}/{grant_id}/break-glass")
def _(w):
    grant = w.grant_requested()  # asked by another operator: the CISO cannot break glass for their own
    url = f"/api/v1/operator/grants/{w.tenant.id}/{grant.id}/break-glass"
    # Only a CISO signed in with a second factor breaks glass: never a token.
    return Call(w.operator_signed_in("carol.ciso", "ciso"), "POST", url, Action.GRANT_BREAK_GLASS, w.tenant.id)


# the platform DPO's oversight


@route("GET", "/api/v1/operator-grants")
def _(w):
    return Call(w.admin, "GET", "/api/v1/operator-grants", Action.GRANT_LISTED, w.tenant.id)


@route("POST", "/api/v1/operator-grants/{record_id}/approve")
def _(w):
    url = f"/api/v1/operator-grants/{w.grant_requested().id}/approve"
    return Call(w.admin, "POST", url, Action.GRANT_APPROVED, w.tenant.id)


@route("POST", "/api/v1/operator-grants/{record_id}/deny")
def _(w):
    url = f"/api/v1/operator-grants/{w.grant_requested().id}/deny"
    return Call(w.admin, "POST", url, Action.GRANT_REJECTED, w.tenant.id)


@route("POST", "/api/v1/operator-grants/{record_id}/revoke")
def _(w):
    url = f"/api/v1/operator-grants/{w.grant_approved().id}/revoke"
    return Call(w.admin, "POST", url, Action.GRANT_REVOKED, w.tenant.id)


# signing in and out


def _contact(w) -> str:
    with tenant_session(w.db, w.tenant.id) as session:
        return str(notices.add_security_contact(session, "security@alpha.example").id)


@route("DELETE", "/api/v1/security-contacts/{contact_id}")
def _(w):
    url = f"/api/v1/security-contacts/{_contact(w)}"
    _contact(w)  # a second one: the last contact cannot be removed
    return Call(w.admin, "DELETE", url, Action.SECURITY_CONTACT_REMOVED, w.tenant.id)


@route("GET", "/api/v1/security-contacts/mutes")
def _(w):
    _contact(w)
    return Call(w.admin, "GET", "/api/v1/security-contacts/mutes", Action.NOTICE_MUTES_VIEWED, w.tenant.id)


@route("GET", "/api/v1/security-contacts/{contact_id}/mutes")
def _(w):
    url = f"/api/v1/security-contacts/{_contact(w)}/mutes"
    return Call(w.admin, "GET", url, Action.NOTICE_MUTES_VIEWED, w.tenant.id)


@route("PUT", "/api/v1/security-contacts/{contact_id}/mutes")
def _(w):
    url = f"/api/v1/security-contacts/{_contact(w)}/mutes"
    body = {"muted": ["api_token_created", "operator_grant_used"]}
    return Call(w.admin, "PUT", url, Action.NOTICE_MUTES_CHANGED, w.tenant.id, json=body)
