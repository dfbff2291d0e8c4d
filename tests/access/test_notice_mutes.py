"""Muting entitlement-change notices: a security contact may be spared routine kinds; administrative changes
are refused when muted and mailed all the same, because the check is made where notices are sent."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from bookwarden.access.roles import notices
from bookwarden.access.roles.notices import NEVER_MUTED, NoticeKind, add_security_contact
from bookwarden.api.app import create_app
from bookwarden.core.config import Settings
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, BuiltinRole, Permission
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.identity import roles as access
from bookwarden.identity.accounts import service as accounts
from bookwarden.identity.models import AccountKind
from bookwarden.identity.tokens import service as tokens
from bookwarden.jobs.worker import Worker
from bookwarden.notify.models import OutboxMessage
from bookwarden.notify.service import open_mail
from bookwarden.tenancy import service as tenancy
from tests.e2e.test_notify import smtp_server  # noqa: F401 - the real aiosmtpd server fixture
from tests.helpers import define_role, grant

ADMIN = BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN]
PROBLEM = "urn:bookwarden:problem:"
SOC, CISO = "soc@mute.example", "ciso@mute.example"


def _admin(tenant_id) -> Principal:
    return Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant_id, ADMIN)


def _contact_ids(client: TestClient) -> dict[str, str]:
    listed = client.get("/api/v1/security-contacts/mutes")
    assert listed.status_code == 200, listed.text
    return {c["email"]: c["contact_id"] for c in listed.json()}


def test_a_muted_kind_is_not_mailed_and_an_administrative_one_is_refused_and_still_mailed(
    committed_db,
    home,
    smtp_server,  # noqa: F811
):
    with platform_session(committed_db) as session:
        tenant = tenancy.create_tenant(session, committed_db.keyring, home, "mute-u", "Mute University")
    with tenant_session(committed_db, tenant.id) as session:
        for address in (SOC, CISO):
            add_security_contact(session, address)
        clerk = accounts.create_account(session, _admin(tenant.id), kind=AccountKind.STAFF, username="clerk")
        boss = accounts.create_account(session, _admin(tenant.id), kind=AccountKind.STAFF, username="boss")
        secret = tokens.issue_api_token(session, "security officer", sorted(ADMIN), timedelta(days=1))[1]
    client = TestClient(create_app(committed_db, Settings(home=home)), raise_server_exceptions=False)
    client.headers["Authorization"] = f"Bearer {secret}"
    soc = _contact_ids(client)[SOC]

    muted = client.put(f"/api/v1/security-contacts/{soc}/mutes", json={"muted": ["role_granted", "api_token_created"]})
    assert muted.status_code == 200, muted.text
    assert muted.json()["muted"] == ["api_token_created", "role_granted"]
    refused = client.put(
        f"/api/v1/security-contacts/{soc}/mutes", json={"muted": ["role_granted", "admin_role_granted"]}
    )
    assert refused.status_code == 409 and refused.json()["type"] == PROBLEM + "notice-not-mutable"
    assert "admin_role_granted cannot be muted" in refused.json()["detail"]
    assert "administrative role" in refused.json()["detail"]  # the rule, named
    assert client.get(f"/api/v1/security-contacts/{soc}/mutes").json()["muted"] == ["api_token_created", "role_granted"]

    with tenant_session(committed_db, tenant.id) as session:
        grant(session, tenant.id, clerk.id, BuiltinRole.CIRCULATION_STAFF)  # ordinary: muted for the SOC
    with tenant_session(committed_db, tenant.id) as session:
        grant(session, tenant.id, boss.id, BuiltinRole.TENANT_ADMIN)  # administrative: never muted
    # A mute row that somehow names an administrative kind (written past the API) changes nothing.
    with tenant_session(committed_db, tenant.id) as session:
        session.execute(
            text("UPDATE security_contacts SET muted_notices = ARRAY['admin_role_revoked', 'role_revoked']")
        )
    with tenant_session(committed_db, tenant.id) as session:
        access.revoke_role(session, _admin(tenant.id), boss.id, BuiltinRole.TENANT_ADMIN)

    worker = Worker(committed_db, "mutes")
    while worker.run_one():
        pass
    received: dict[str, list[str]] = {SOC: [], CISO: []}
    bodies = {}
    for message in smtp_server.messages:
        subject = " ".join(message.message["Subject"].split()).removeprefix("[Mute University] security notice: ")
        received[message.recipients[0]].append(subject)
        bodies[(message.recipients[0], subject)] = message.message.get_content()
    assert received[CISO].count("role granted") == 2  # nothing muted: both grants
    assert received[SOC].count("role granted") == 1  # the ordinary grant was muted for this contact
    assert "tenant_admin" in bodies[(SOC, "role granted")] and "cannot be switched off" in bodies[(SOC, "role granted")]
    assert "role revoked" in received[SOC] and "role revoked" in received[CISO]  # the stored mute was overridden
    assert received[SOC].count("security notice mutes changed") == 1  # every contact hears of a change of mutes
    assert received[CISO].count("security notice mutes changed") == 1
    with tenant_session(committed_db, tenant.id) as session:
        actions = session.execute(text("SELECT action, outcome FROM audit_events ORDER BY seq")).all()
    assert ("security_contact.mutes_changed", "succeeded") in actions
    assert ("security_contact.mutes_viewed", "succeeded") in actions


# -- the rules (rolled-back database; notices read from the outbox) ------------------------------


@pytest.fixture
def contacts(in_tenant, tenant):
    with in_tenant(tenant) as session:
        return [add_security_contact(session, address).id for address in (SOC, CISO)]


def _queued(in_tenant, tenant) -> list[tuple[str, str]]:
    with in_tenant(tenant) as session:
        mails = [open_mail(session, row) for row in session.scalars(select(OutboxMessage))]
    return sorted((m.to, m.subject.split("security notice: ")[-1]) for m in mails if "security notice" in m.subject)


def test_every_administrative_kind_is_refused_naming_its_rule(client_for, contacts, tenant):
    client = client_for(tenant, permissions=ADMIN)
    for kind, rule in NEVER_MUTED.items():
        refused = client.put(f"/api/v1/security-contacts/{contacts[0]}/mutes", json={"muted": [kind.value]})
        assert refused.status_code == 409, kind
        assert rule in refused.json()["detail"]
    kinds = client.get(f"/api/v1/security-contacts/{contacts[0]}/mutes").json()
    assert kinds["muted"] == [] and set(kinds["mutable"]) == set(NoticeKind) - set(NEVER_MUTED)
    assert "password_policy_changed" not in kinds["mutable"] and "operator_grant_used" in kinds["mutable"]


def test_a_custom_role_that_can_assign_roles_is_administrative(client_for, contacts, in_tenant, tenant):
    client = client_for(tenant, permissions=ADMIN)
    assert client.put(f"/api/v1/security-contacts/{contacts[0]}/mutes", json={"muted": ["role_granted"]}).is_success
    admin = _admin(tenant.id)
    with in_tenant(tenant) as session:
        define_role(session, tenant.id, "helpdesk", {Permission.ROLES_ASSIGN})  # administrative: two people
        access.create_role(session, admin, "shelver", {Permission.LOANS_READ})
        helper = accounts.create_account(session, admin, kind=AccountKind.STAFF, username="helper")
        session.execute(text("DELETE FROM outbox"))
        access.grant_role(session, admin, helper.id, "shelver")
        grant(session, tenant.id, helper.id, "helpdesk")  # asked by one administrator, approved by another
    # The SOC muted role grants: it hears of the helpdesk grant (administrative), not of the shelver one.
    assert _queued(in_tenant, tenant) == [(CISO, "role granted"), (CISO, "role granted"), (SOC, "role granted")]
    with in_tenant(tenant) as session:
        kind = notices.classify(session, notices.EntitlementEvent.ROLE_GRANTED, role="helpdesk").kind
    assert kind is NoticeKind.ADMIN_ROLE_GRANTED


def test_mutes_need_the_permission_and_a_contact_of_this_institution(client_for, contacts, tenant, other_tenant):
    reader = client_for(tenant, permissions=BUILTIN_PERMISSIONS[BuiltinRole.AUDITOR])
    assert reader.get("/api/v1/security-contacts/mutes").status_code == 403
    assert reader.put(f"/api/v1/security-contacts/{contacts[0]}/mutes", json={"muted": []}).status_code == 403
    outsider = client_for(other_tenant, permissions=ADMIN)
    assert outsider.get(f"/api/v1/security-contacts/{contacts[0]}/mutes").status_code == 404
    assert outsider.put(f"/api/v1/security-contacts/{contacts[0]}/mutes", json={"muted": []}).status_code == 404
    unknown = client_for(tenant, permissions=ADMIN).put(
        f"/api/v1/security-contacts/{contacts[0]}/mutes", json={"muted": ["no_such_kind"]}
    )
    assert unknown.status_code == 422


def test_removing_a_contact_tells_every_contact_and_the_last_one_stays(
    client_for, contacts, in_tenant, tenant, other_tenant
):
    soc, ciso = contacts
    outsider = client_for(other_tenant, permissions=ADMIN)
    assert outsider.delete(f"/api/v1/security-contacts/{soc}").status_code == 404  # another institution's
    reader = client_for(tenant, permissions=BUILTIN_PERMISSIONS[BuiltinRole.AUDITOR])
    assert reader.delete(f"/api/v1/security-contacts/{soc}").status_code == 403
    admin = client_for(tenant, permissions=ADMIN)

    assert admin.delete(f"/api/v1/security-contacts/{soc}").status_code == 204

    # Both were told, the one removed too (a rogue administrator cannot quietly take a watcher away).
    told = [to for to, what in _queued(in_tenant, tenant) if what == "security contacts changed"]
    assert sorted(told) == sorted([SOC, CISO])
    assert admin.get("/api/v1/security-contacts").json() == [CISO]
    last = admin.delete(f"/api/v1/security-contacts/{ciso}")
    assert last.status_code == 409 and "last security contact" in last.json()["detail"]
    assert admin.get("/api/v1/security-contacts").json() == [CISO]
