"""Access control over HTTP: what a tenant admin does, and what the schema refuses up front."""

from __future__ import annotations

import uuid

import pytest

from bookwarden.core.permissions import BUILTIN_PERMISSIONS, BuiltinRole
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.identity.accounts import service as accounts
from bookwarden.identity.models import AccountKind

ADMIN = BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN]


@pytest.fixture
def admin(client_for, tenant):
    return client_for(tenant, permissions=ADMIN)


@pytest.fixture
def checker(client_for, tenant):
    """A second administrator: the one who approves what `admin` asks."""
    return client_for(tenant, permissions=ADMIN)


@pytest.fixture
def account_id(in_tenant, tenant):
    principal = Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant.id, ADMIN)
    with in_tenant(tenant) as session:
        return accounts.create_account(session, principal, kind=AccountKind.STAFF, username="dana").id


def test_an_admin_defines_a_role_and_assigns_it(admin, account_id):
    created = admin.post("/api/v1/roles", json={"name": "desk", "permissions": ["loans.read", "loans.write"]})
    assert created.status_code == 201
    assert admin.post(f"/api/v1/accounts/{account_id}/roles", json={"role": "desk"}).status_code == 204
    assert admin.get(f"/api/v1/accounts/{account_id}/roles").json() == ["desk"]
    names = {r["name"]: r for r in admin.get("/api/v1/roles").json()}
    assert names["desk"]["permissions"] == ["loans.read", "loans.write"] and not names["desk"]["builtin"]
    assert names["auditor"]["builtin"] and "ciso" not in names  # platform roles never listed in a tenant
    assert admin.delete(f"/api/v1/accounts/{account_id}/roles/desk").status_code == 204
    assert admin.get(f"/api/v1/accounts/{account_id}/roles").json() == []


def test_platform_permissions_are_refused_by_the_schema(admin):
    response = admin.post("/api/v1/roles", json={"name": "sneaky", "permissions": ["platform.tenants.manage"]})
    assert response.status_code == 422
    assert response.json()["type"] == "urn:bookwarden:problem:validation-error"


def test_segregation_of_duties_over_http_names_the_conflict(admin, checker, account_id):
    asked = admin.post(f"/api/v1/accounts/{account_id}/roles", json={"role": "tenant_admin"})
    assert asked.status_code == 202
    assert checker.post(f"/api/v1/approvals/{asked.json()['id']}/approve").status_code == 200
    refused = admin.post(f"/api/v1/accounts/{account_id}/roles", json={"role": "auditor"})
    assert refused.status_code == 409
    problem = refused.json()
    assert problem["type"] == "urn:bookwarden:problem:segregation-of-duties"
    assert "tenant_admin" in problem["detail"] and "auditor" in problem["detail"]


def test_circulation_staff_cannot_touch_roles(client_for, tenant, account_id):
    staff = client_for(tenant, permissions=BUILTIN_PERMISSIONS[BuiltinRole.CIRCULATION_STAFF])
    assert staff.get("/api/v1/roles").status_code == 403
    assert staff.post(f"/api/v1/accounts/{account_id}/roles", json={"role": "tenant_admin"}).status_code == 403


def test_security_contacts_receive_every_later_notice(admin, account_id, db, tenant):
    from sqlalchemy import func, select

    from bookwarden.db.session import tenant_session
    from bookwarden.notify.models import OutboxMessage

    assert admin.post("/api/v1/security-contacts", json={"email": "soc@alpha.example.org"}).status_code == 204
    assert admin.get("/api/v1/security-contacts").json() == ["soc@alpha.example.org"]
    assert admin.post(f"/api/v1/accounts/{account_id}/roles", json={"role": "circulation_staff"}).status_code == 204
    with tenant_session(db, tenant.id) as session:
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 2  # contact added, role granted
    bad = admin.post("/api/v1/security-contacts", json={"email": "soc@alpha.example.org\r\nBcc: x@evil.org"})
    assert bad.status_code == 422


@pytest.mark.parametrize(("role_class", "floor"), [("patron", 8), ("staff", 12), ("admin", 15)])
def test_password_policy_floors_are_in_the_schema_and_enforced(admin, checker, app, db, tenant, role_class, floor):
    from bookwarden.db.session import tenant_session
    from bookwarden.identity.passwords import RoleClass

    schema = app.openapi()
    body = schema["paths"][f"/api/v1/password-policies/{role_class}"]["put"]["requestBody"]["content"]
    ref = body["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert schema["components"]["schemas"][ref]["properties"]["min_length"]["minimum"] == floor
    assert admin.put(f"/api/v1/password-policies/{role_class}", json={"min_length": floor - 1}).status_code == 422
    asked = admin.put(f"/api/v1/password-policies/{role_class}", json={"min_length": floor + 2, "history": 3})
    assert asked.status_code == 202 and asked.json()["status"] == "pending"
    with tenant_session(db, tenant.id) as session:
        assert accounts.policy_for(session, RoleClass(role_class)).min_length == floor  # not yet
    assert checker.post(f"/api/v1/approvals/{asked.json()['id']}/approve").json()["status"] == "approved"
    with tenant_session(db, tenant.id) as session:
        policy = accounts.policy_for(session, RoleClass(role_class))
    assert (policy.min_length, policy.max_length, policy.history, policy.expiry_days) == (floor + 2, 128, 3, None)
    assert admin.put("/api/v1/password-policies/operator", json={"min_length": 20}).status_code in (404, 405)


def test_the_one_who_asks_cannot_approve(admin, checker, account_id, db, tenant):
    asked = admin.post(f"/api/v1/accounts/{account_id}/roles", json={"role": "security_officer"}).json()
    assert admin.get("/api/v1/approvals").json()[0]["id"] == asked["id"]
    own = admin.post(f"/api/v1/approvals/{asked['id']}/approve")
    assert own.status_code == 409 and own.json()["type"] == "urn:bookwarden:problem:segregation-of-duties"
    assert admin.get(f"/api/v1/accounts/{account_id}/roles").json() == []  # nothing granted
    assert checker.post(f"/api/v1/approvals/{asked['id']}/reject").json()["status"] == "rejected"
    assert checker.post(f"/api/v1/approvals/{asked['id']}/approve").status_code == 409  # decided already
    assert admin.get(f"/api/v1/accounts/{account_id}/roles").json() == []


def test_admin_roles_cannot_be_granted_without_an_approval_even_by_the_service(db, tenant, in_tenant, account_id):
    from bookwarden.core.errors import ApprovalRequired
    from bookwarden.identity import roles as access

    principal = Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant.id, ADMIN)
    with pytest.raises(ApprovalRequired), in_tenant(tenant) as session:
        access.grant_role(session, principal, account_id, BuiltinRole.TENANT_ADMIN)


def test_the_database_refuses_a_checker_who_is_the_maker(db, tenant, in_tenant, admin, account_id):
    from sqlalchemy import text

    asked = admin.post(f"/api/v1/accounts/{account_id}/roles", json={"role": "tenant_admin"}).json()
    with pytest.raises(Exception, match="checker_is_not_maker"), in_tenant(tenant) as session:
        session.execute(
            text("UPDATE approval_requests SET status = 'approved', decided_by = requested_by WHERE id = :i"),
            {"i": asked["id"]},
        )
