"""How powerful an account is comes from the permissions it holds, never from a role's name (DESIGN
invariant 7): a custom role carrying administrative permissions meets every control the built-in
administrator roles meet. First the walk of issue 12, a rogue administrator building a second
administrator of their own over HTTP; then each control, attacked with custom roles."""

from __future__ import annotations

import re
import uuid

import pyotp
import pytest
from sqlalchemy import select

from bookwarden.access.approvals import service as approvals
from bookwarden.access.approvals.models import ApprovalRequest, SensitiveAction
from bookwarden.access.power import ADMINISTRATIVE_PERMISSIONS, PowerClass, power_class
from bookwarden.access.roles import notices, sod
from bookwarden.access.roles.notices import NoticeKind, add_security_contact
from bookwarden.core.errors import ApprovalRequired, Conflict, InvalidInput, SegregationOfDutiesError
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, PLATFORM_PERMISSIONS, BuiltinRole, Permission
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.identity import passwords
from bookwarden.identity import roles as access
from bookwarden.identity.accounts import service as accounts
from bookwarden.identity.models import AccountKind
from bookwarden.identity.passwords import PasswordRejected, RoleClass
from bookwarden.identity.saml import config as saml_config
from bookwarden.notify.models import OutboxMessage
from bookwarden.notify.service import open_mail
from tests.helpers import define_role, grant

P = Permission
ADMIN = BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN]
PASSWORD = "violet tractor mango 42 harbour"
PROBLEM = "urn:bookwarden:problem:"
TOKEN = re.compile(r"#token=([A-Za-z0-9_.-]+)")
HELPDESK = ["accounts.manage", "audit.read", "roles.assign"]


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch):
    """Verify at OWASP's floor in these tests only; sign-in reads DEFAULT at call time."""
    monkeypatch.setattr(passwords, "DEFAULT", passwords.OWASP_FLOOR)


def _admin(tenant) -> Principal:
    return Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant.id, ADMIN)


def _link(in_tenant, tenant, to: str, subject_part: str) -> str:
    """The token of the newest mail to `to` whose subject says `subject_part`."""
    with in_tenant(tenant) as session:
        rows = session.scalars(select(OutboxMessage).order_by(OutboxMessage.created_at)).all()
        mails = [m for m in (open_mail(session, row) for row in rows) if m.to == to and subject_part in m.subject]
    return TOKEN.search(mails[-1].body).group(1)


def _login(client, username: str, password: str = PASSWORD):
    return client.post("/api/v1/auth/login", json={"institution": "alpha", "username": username, "password": password})


def _role_names(client) -> set[str]:
    return {role["name"] for role in client.get("/api/v1/roles").json()}


# -- the walk ----------------------------------------------------------------------------------


def test_a_rogue_administrator_cannot_make_a_second_administrator_alone(client_for, browser, in_tenant, tenant):
    rogue = client_for(tenant, permissions=ADMIN)
    colleague = client_for(tenant, permissions=ADMIN)  # an honest second administrator

    # An account whose mailbox the rogue controls: ordinary work, and the account holds nothing.
    body = {"kind": "staff", "username": "mallory", "email": "mallory@alpha.example.org"}
    made = rogue.post("/api/v1/accounts", json=body)
    assert made.status_code == 201, made.text
    mallory = made.json()["id"]

    # A custom role with every power the rogue needs: held for a second person, not created.
    asked = rogue.post("/api/v1/roles", json={"name": "helpdesk", "permissions": HELPDESK})
    assert asked.status_code == 202, asked.text
    definition = asked.json()
    assert definition["action"] == SensitiveAction.DEFINE_ADMIN_ROLE == "define_admin_role"
    assert definition["params"] == {"role": "helpdesk", "permissions": HELPDESK, "description": "", "replaces": None}
    assert "helpdesk" not in _role_names(rogue)
    # Approving it themselves is refused, and the role cannot be given before it exists.
    own = rogue.post(f"/api/v1/approvals/{definition['id']}/approve")
    assert own.status_code == 409 and own.json()["type"] == PROBLEM + "segregation-of-duties"
    assert "helpdesk" not in _role_names(rogue)
    assert rogue.post(f"/api/v1/accounts/{mallory}/roles", json={"role": "helpdesk"}).status_code == 404

    # Say the colleague approves the role (a helpdesk may be a fair need): the walk goes on.
    assert colleague.post(f"/api/v1/approvals/{definition['id']}/approve").json()["status"] == "approved"
    created = {r["name"]: r for r in rogue.get("/api/v1/roles").json()}["helpdesk"]
    assert created["permissions"] == HELPDESK and not created["builtin"]

    # Giving it to the account they created: held for a second person, bound to the role's permissions.
    held = rogue.post(f"/api/v1/accounts/{mallory}/roles", json={"role": "helpdesk"})
    assert held.status_code == 202, held.text
    grant_request = held.json()
    assert grant_request["action"] == "grant_admin_role"
    assert grant_request["params"] == {"account_id": mallory, "role": "helpdesk", "permissions": HELPDESK}
    own = rogue.post(f"/api/v1/approvals/{grant_request['id']}/approve")
    assert own.status_code == 409 and own.json()["type"] == PROBLEM + "segregation-of-duties"
    assert rogue.get(f"/api/v1/accounts/{mallory}/roles").json() == []

    # Say the colleague approves this too. The account is now held to the administrators' password floor...
    assert colleague.post(f"/api/v1/approvals/{grant_request['id']}/approve").json()["status"] == "approved"
    assert rogue.get(f"/api/v1/accounts/{mallory}/roles").json() == ["helpdesk"]
    invitation = _link(in_tenant, tenant, "mallory@alpha.example.org", "invitation")
    short = browser().post("/api/v1/auth/accept-invitation", json={"token": invitation, "password": "Qz7!vK2p#Lm9xR"})
    assert short.status_code == 422, short.text
    assert "at least 15 characters for administrator accounts" in short.json()["detail"]
    accepted = browser().post("/api/v1/auth/accept-invitation", json={"token": invitation, "password": PASSWORD})
    assert accepted.status_code == 204, accepted.text

    # ...and signing in without a second factor is refused, naming the role that requires one.
    client = browser()
    refused = _login(client, "mallory")
    assert refused.status_code == 403
    assert refused.json()["type"] == PROBLEM + "second-factor-enrolment-required"
    assert "helpdesk" in refused.json()["detail"]
    assert client.get("/api/v1/auth/me").status_code == 401

    # The rogue mails the account an enrolment link (to the mailbox they control) and signs in as it with
    # both factors. A request it asks for still waits for someone else.
    assert rogue.post(f"/api/v1/accounts/{mallory}/mfa-enrolment-link").status_code == 200
    token = _link(in_tenant, tenant, "mallory@alpha.example.org", "second factor")
    begun = client.post("/api/v1/auth/mfa-enrolment", json={"token": token, "password": PASSWORD})
    assert begun.status_code == 201, begun.text
    confirmed = client.post(
        "/api/v1/auth/mfa-enrolment/confirm", json={"code": pyotp.TOTP(begun.json()["secret"]).now()}
    )
    assert confirmed.status_code == 200, confirmed.text
    puppet = client.post("/api/v1/accounts", json={**body, "username": "mallory2", "email": "m2@alpha.example.org"})
    assert puppet.status_code == 201, puppet.text
    asked = client.post(f"/api/v1/accounts/{puppet.json()['id']}/roles", json={"role": "helpdesk"})
    assert asked.status_code == 202, asked.text
    # Refused before the queue is even reached (helpdesk holds no accounts.read); with it, the rule that the
    # asker never approves would refuse it (409), as it refused the rogue above.
    own = client.post(f"/api/v1/approvals/{asked.json()['id']}/approve")
    assert own.status_code == 403 and "accounts.read" in own.json()["detail"]
    assert rogue.get(f"/api/v1/accounts/{puppet.json()['id']}/roles").json() == []


# -- the classes -------------------------------------------------------------------------------


def test_each_administrative_permission_alone_makes_its_holder_administrative():
    assert power_class(()) is PowerClass.ORDINARY
    assert power_class({P.LOANS_READ, P.PATRONS_EXPORT, P.PRIVACY_ERASURE_APPROVE}) is PowerClass.ORDINARY
    for permission in ADMINISTRATIVE_PERMISSIONS:
        assert power_class({permission, P.LOANS_READ}) is PowerClass.ADMINISTRATIVE, permission
    assert {
        P.AUDIT_READ,
        P.AUDIT_VERIFY,
        P.SSO_MANAGE,
        P.POLICY_MANAGE,
        P.ACCOUNTS_MANAGE,
    } <= ADMINISTRATIVE_PERMISSIONS
    assert power_class({P.PLATFORM_USAGE_READ}) is PowerClass.PLATFORM
    assert not (ADMINISTRATIVE_PERMISSIONS & PLATFORM_PERMISSIONS)


def test_the_built_in_roles_fall_in_the_class_their_permissions_give():
    classes = {role: power_class(BUILTIN_PERMISSIONS[role]) for role in BuiltinRole}
    ordinary = {role for role, cls in classes.items() if cls is PowerClass.ORDINARY}
    platform = {role for role, cls in classes.items() if cls is PowerClass.PLATFORM}
    assert ordinary == {BuiltinRole.PATRON, BuiltinRole.CIRCULATION_STAFF}
    assert platform == {r for r in BuiltinRole if r.is_platform}


def test_the_built_in_conflicts_follow_from_the_permission_pairs():
    def clash(held: BuiltinRole, new: BuiltinRole) -> list[sod.Clash]:
        return sod.conflicts({held.value: BUILTIN_PERMISSIONS[held]}, BUILTIN_PERMISSIONS[new])

    for admin in (BuiltinRole.TENANT_ADMIN, BuiltinRole.SECURITY_OFFICER):
        assert clash(admin, BuiltinRole.AUDITOR) and clash(BuiltinRole.AUDITOR, admin)
        assert clash(BuiltinRole.AUDITOR, admin)[0].held_in == (BuiltinRole.AUDITOR.value,)
    # Reading the trail is no conflict: the privacy officer reads it, and may be an auditor too.
    assert not clash(BuiltinRole.PRIVACY_OFFICER, BuiltinRole.AUDITOR)
    assert not clash(BuiltinRole.TENANT_ADMIN, BuiltinRole.SECURITY_OFFICER)
    assert all(not sod.straddled(BUILTIN_PERMISSIONS[role]) for role in BuiltinRole)


# -- each control, with custom roles -----------------------------------------------------------


@pytest.fixture
def staff(tenant, in_tenant):
    with in_tenant(tenant) as session:
        add_security_contact(session, "security@alpha.example")
        return {
            name: accounts.create_account(
                session, _admin(tenant), kind=AccountKind.STAFF, username=name, email=f"{name}@alpha.example"
            )
            for name in ("ann", "bob")
        }


def test_segregation_of_duties_holds_between_custom_roles(tenant, in_tenant, staff):
    with in_tenant(tenant) as session:
        define_role(session, tenant.id, "desk_admin", {P.ACCOUNTS_MANAGE, P.LOANS_READ})
        define_role(session, tenant.id, "verifier", {P.AUDIT_VERIFY})
        grant(session, tenant.id, staff["ann"].id, "desk_admin")
        with pytest.raises(SegregationOfDutiesError) as refused:
            access.grant_role(session, _admin(tenant), staff["ann"].id, "verifier")
        assert "verifier" in refused.value.detail and "desk_admin" in refused.value.detail
        assert "accounts.manage" in refused.value.detail and "audit.verify" in refused.value.detail
        # Asking for it is refused at once too: nobody is asked to approve a grant that cannot be made.
        with pytest.raises(SegregationOfDutiesError):
            access.grant_or_ask(session, _admin(tenant), staff["ann"].id, "verifier")
        # A built-in role and a custom one alike: the auditor's permissions meet desk_admin's.
        with pytest.raises(SegregationOfDutiesError, match="desk_admin"):
            access.grant_role(session, _admin(tenant), staff["ann"].id, BuiltinRole.AUDITOR)
        assert access.held_roles(session, staff["ann"].id) == ["desk_admin"]


def test_a_role_carrying_both_sides_of_a_pair_cannot_be_defined(tenant, in_tenant):
    with in_tenant(tenant) as session:
        for attempt in (access.create_role, access.create_or_ask):
            with pytest.raises(SegregationOfDutiesError, match="nobody could hold it"):
                attempt(session, _admin(tenant), "all_in_one", {P.AUDIT_VERIFY, P.ROLES_ASSIGN})
        assert "all_in_one" not in {role.name for role in access.custom_roles(session)}


def test_changing_a_custom_roles_permissions_is_refused_when_a_holder_would_break_a_pair(tenant, in_tenant, staff):
    with in_tenant(tenant) as session:
        access.create_role(session, _admin(tenant), "shelver", {P.LOANS_READ})
        grant(session, tenant.id, staff["ann"].id, "shelver")
        grant(session, tenant.id, staff["ann"].id, BuiltinRole.TENANT_ADMIN)
        grant(session, tenant.id, staff["bob"].id, "shelver")
        for change in (access.set_role_permissions, access.change_or_ask):
            with pytest.raises(SegregationOfDutiesError) as refused:
                change(session, _admin(tenant), "shelver", {P.LOANS_READ, P.AUDIT_VERIFY})
            assert str(staff["ann"].id) in refused.value.detail and "tenant_admin" in refused.value.detail
        assert access.role_permissions(session, access.custom_role(session, "shelver")) == {P.LOANS_READ}


def test_granting_a_custom_administrative_role_takes_a_second_person(tenant, in_tenant, staff):
    maker, checker = _admin(tenant), _admin(tenant)
    with in_tenant(tenant) as session:
        define_role(session, tenant.id, "trail_reader", {P.AUDIT_READ})
        with pytest.raises(ApprovalRequired, match=r"granting trail_reader.*audit\.read"):
            access.grant_role(session, maker, staff["ann"].id, "trail_reader")
        asked = access.grant_or_ask(session, maker, staff["ann"].id, "trail_reader")
        assert isinstance(asked, ApprovalRequest) and access.held_roles(session, staff["ann"].id) == []
        with pytest.raises(SegregationOfDutiesError):
            approvals.approve(session, maker, asked.id)
        approvals.approve(session, checker, asked.id)
        assert access.held_roles(session, staff["ann"].id) == ["trail_reader"]
        # An ordinary custom role is granted at once, and asking an approval for one is refused.
        access.create_role(session, maker, "shelver", {P.LOANS_READ})
        assert not isinstance(access.grant_or_ask(session, maker, staff["bob"].id, "shelver"), ApprovalRequest)
        params = {"account_id": str(staff["ann"].id), "role": "shelver"}
        with pytest.raises(InvalidInput, match="needs no approval"):
            approvals.ask(session, maker, SensitiveAction.GRANT_ADMIN_ROLE, params)


def test_a_grant_approval_does_not_cover_a_role_changed_since(tenant, in_tenant, staff):
    maker, checker = _admin(tenant), _admin(tenant)
    with in_tenant(tenant) as session:
        define_role(session, tenant.id, "trail_reader", {P.AUDIT_READ})
        asked = access.grant_or_ask(session, maker, staff["ann"].id, "trail_reader")
        assert asked.params["permissions"] == ["audit.read"]
        # Meanwhile the role grows (itself approved by two people); the grant asked for is not this one.
        changed = access.change_or_ask(session, maker, "trail_reader", {P.AUDIT_READ, P.ACCOUNTS_MANAGE})
        approvals.approve(session, checker, changed.id)
    with pytest.raises(ApprovalRequired, match="does not cover"), in_tenant(tenant) as session:
        approvals.approve(session, checker, asked.id)
    with in_tenant(tenant) as session:
        assert access.held_roles(session, staff["ann"].id) == []


def test_defining_or_changing_a_role_so_that_it_is_administrative_takes_a_second_person(tenant, in_tenant):
    maker, checker = _admin(tenant), _admin(tenant)
    with in_tenant(tenant) as session:
        with pytest.raises(ApprovalRequired, match=r"creating role helpdesk.*roles\.assign"):
            access.create_role(session, maker, "helpdesk", {P.ROLES_ASSIGN})
        access.create_role(session, maker, "shelver", {P.LOANS_READ})  # ordinary: at once
        with pytest.raises(Conflict, match="exists already"):  # asking to create is never taken as a change
            access.create_or_ask(session, maker, "shelver", {P.SSO_MANAGE})
        with pytest.raises(ApprovalRequired, match=r"changing role shelver.*sso\.manage"):
            access.set_role_permissions(session, maker, "shelver", {P.LOANS_READ, P.SSO_MANAGE})
        asked = access.change_or_ask(session, maker, "shelver", {P.LOANS_READ, P.SSO_MANAGE})
        assert asked.params == {
            "role": "shelver",
            "permissions": ["loans.read", "sso.manage"],
            "description": "",
            "replaces": ["loans.read"],
        }
        assert access.role_permissions(session, access.custom_role(session, "shelver")) == {P.LOANS_READ}
        with pytest.raises(SegregationOfDutiesError):
            approvals.approve(session, maker, asked.id)
        # A second change asked from the same role: once the first is applied, the second is stale.
        stale = access.change_or_ask(session, maker, "shelver", {P.LOANS_READ, P.POLICY_MANAGE})
        approvals.approve(session, checker, asked.id)
        assert access.role_permissions(session, access.custom_role(session, "shelver")) == {P.LOANS_READ, P.SSO_MANAGE}
    with pytest.raises(ApprovalRequired, match="does not cover"), in_tenant(tenant) as session:
        approvals.approve(session, checker, stale.id)
    with in_tenant(tenant) as session:
        with pytest.raises(Conflict, match="nothing to approve"):
            access.change_or_ask(session, maker, "shelver", {P.LOANS_READ, P.SSO_MANAGE})
        # Back to ordinary permissions: at once; asking an approval for that is refused.
        access.set_role_permissions(session, maker, "shelver", {P.LOANS_READ})
        params = {"role": "shelver", "permissions": ["loans.read"]}
        with pytest.raises(InvalidInput, match="needs no approval"):
            approvals.ask(session, maker, SensitiveAction.DEFINE_ADMIN_ROLE, params)


def test_a_custom_administrative_role_requires_a_second_factor_at_sign_in(browser, tenant, in_tenant):
    with in_tenant(tenant) as session:
        define_role(session, tenant.id, "trail_reader", {P.AUDIT_READ})
        access.create_role(session, _admin(tenant), "shelver", {P.LOANS_READ})
        for name, role in (("ann", "trail_reader"), ("bob", "shelver")):
            account = accounts.create_account(
                session, _admin(tenant), kind=AccountKind.STAFF, username=name, password=PASSWORD
            )
            grant(session, tenant.id, account.id, role)
    refused = _login(browser(), "ann")
    assert refused.status_code == 403, refused.text
    assert refused.json()["type"] == PROBLEM + "second-factor-enrolment-required"
    assert "trail_reader" in refused.json()["detail"]
    ordinary = _login(browser(), "bob")
    assert ordinary.status_code == 200 and ordinary.json()["mfa_required"] is False


def test_a_custom_administrative_role_holds_its_holder_to_the_admin_password_floor(tenant, in_tenant):
    fourteen = "Qz7!vK2p#Lm9xR"
    with in_tenant(tenant) as session:
        define_role(session, tenant.id, "policy_desk", {P.POLICY_MANAGE})
        access.create_role(session, _admin(tenant), "shelver", {P.LOANS_READ})
        made = {
            name: accounts.create_account(session, _admin(tenant), kind=kind, username=name)
            for name, kind in (("ann", AccountKind.STAFF), ("bob", AccountKind.STAFF), ("pat", AccountKind.PATRON))
        }
        grant(session, tenant.id, made["ann"].id, "policy_desk")
        grant(session, tenant.id, made["bob"].id, "shelver")
        grant(session, tenant.id, made["pat"].id, "policy_desk")  # a patron account's kind lowers nothing
        assert accounts.role_class(session, made["ann"]) is RoleClass.ADMIN
        assert accounts.role_class(session, made["bob"]) is RoleClass.STAFF
        assert accounts.role_class(session, made["pat"]) is RoleClass.ADMIN
        for name in ("ann", "pat"):
            with pytest.raises(PasswordRejected, match="at least 15 characters for administrator accounts"):
                accounts.change_password(session, made[name], fourteen)
        accounts.change_password(session, made["bob"], fourteen)  # staff: 12


def test_notices_about_custom_administrative_roles_cannot_be_muted(tenant, in_tenant):
    with in_tenant(tenant) as session:
        define_role(session, tenant.id, "trail_reader", {P.AUDIT_READ})
        access.create_role(session, _admin(tenant), "shelver", {P.LOANS_READ})
        kind = notices.classify(session, notices.EntitlementEvent.ROLE_GRANTED, role="trail_reader").kind
        assert kind is NoticeKind.ADMIN_ROLE_GRANTED
        kind = notices.classify(session, notices.EntitlementEvent.ROLE_GRANTED, role="shelver").kind
        assert kind is NoticeKind.ROLE_GRANTED
        # A change that touches only ordinary permissions of an administrative role is still administrative.
        kind = notices.classify(
            session, notices.EntitlementEvent.ROLE_PERMISSIONS_CHANGED, role="trail_reader", permissions={P.LOANS_READ}
        ).kind
        assert kind is NoticeKind.ADMIN_ROLE_PERMISSIONS_CHANGED


def test_sign_on_may_not_hand_out_a_role_whose_permissions_are_administrative(tenant, in_tenant):
    with in_tenant(tenant) as session:
        define_role(session, tenant.id, "trail_reader", {P.AUDIT_READ})
        access.create_role(session, _admin(tenant), "shelver", {P.LOANS_READ})
        for role, held in (("trail_reader", "audit.read"), (BuiltinRole.PRIVACY_OFFICER.value, "audit.read")):
            with pytest.raises(InvalidInput, match=rf"administrative role \(it carries .*{re.escape(held)}"):
                saml_config.check_mappable(session, role, "role")
        saml_config.check_mappable(session, "shelver", "role")
        saml_config.check_mappable(session, BuiltinRole.CIRCULATION_STAFF.value, "role")
