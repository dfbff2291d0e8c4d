"""Roles, permissions and segregation of duties, attacked the way a rogue insider would."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from bookwarden.access.roles import reads
from bookwarden.access.roles.notices import add_security_contact
from bookwarden.core.authorize import authorize
from bookwarden.core.errors import Conflict, Forbidden, InvalidInput, NotFound, SegregationOfDutiesError
from bookwarden.core.permissions import (
    BUILTIN_PERMISSIONS,
    PLATFORM_PERMISSIONS,
    TENANT_PERMISSIONS,
    BuiltinRole,
    Permission,
)
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.identity import roles as access
from bookwarden.identity.accounts import service as accounts
from bookwarden.identity.models import AccountKind
from bookwarden.identity.tokens import service as tokens
from bookwarden.notify.models import OutboxMessage
from tests.helpers import grant


def _admin(tenant) -> Principal:
    """An API token holding the tenant admin's permissions, as `token create --role tenant_admin` gives."""
    return Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant.id, BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN])


def _as_account(session, tenant, account) -> Principal:
    return Principal(PrincipalKind.ACCOUNT, account.id, tenant.id, reads.account_permissions(session, account.id))


@pytest.fixture
def staff(db, tenant, in_tenant):
    with in_tenant(tenant) as session:
        add_security_contact(session, "security@alpha.example")
        admin = _admin(tenant)
        made = {
            name: accounts.create_account(
                session, admin, kind=AccountKind.STAFF, username=name, email=f"{name}@alpha.example"
            )
            for name in ("ann", "bob", "cy")
        }
    return made


def test_a_new_custom_role_holds_nothing(db, tenant, in_tenant, staff):
    with in_tenant(tenant) as session:
        role = access.create_role(session, _admin(tenant), "shelf_reader", set())
        access.grant_role(session, _admin(tenant), staff["ann"].id, "shelf_reader")
        assert access.role_permissions(session, role) == set()
        assert reads.account_permissions(session, staff["ann"].id) == frozenset()


def test_custom_roles_grant_exactly_their_permissions(db, tenant, in_tenant, staff):
    with in_tenant(tenant) as session:
        access.create_role(session, _admin(tenant), "shelf_reader", {Permission.LOANS_READ})
        access.grant_role(session, _admin(tenant), staff["ann"].id, "shelf_reader")
        ann = _as_account(session, tenant, staff["ann"])
        authorize(ann, Permission.LOANS_READ)
        with pytest.raises(Forbidden):
            authorize(ann, Permission.LOANS_WRITE)
        access.set_role_permissions(session, _admin(tenant), "shelf_reader", {Permission.LOANS_WRITE})
        assert reads.account_permissions(session, staff["ann"].id) == {Permission.LOANS_WRITE}


def test_platform_permissions_and_roles_stay_out_of_tenants(db, tenant, in_tenant, staff):
    with in_tenant(tenant) as session:
        with pytest.raises(InvalidInput, match="platform"):
            access.create_role(session, _admin(tenant), "sneaky", {Permission.PLATFORM_TENANTS_MANAGE})
        with pytest.raises(NotFound, match="platform role"):
            access.grant_role(session, _admin(tenant), staff["ann"].id, BuiltinRole.CISO)
        with pytest.raises(Conflict, match="built-in"):
            access.create_role(session, _admin(tenant), "auditor", set())
    assert not (TENANT_PERMISSIONS & PLATFORM_PERMISSIONS)
    assert all(not (BUILTIN_PERMISSIONS[r] & PLATFORM_PERMISSIONS) for r in BuiltinRole if not r.is_platform)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (BuiltinRole.TENANT_ADMIN, BuiltinRole.AUDITOR),
        (BuiltinRole.AUDITOR, BuiltinRole.TENANT_ADMIN),
        (BuiltinRole.SECURITY_OFFICER, BuiltinRole.AUDITOR),
        (BuiltinRole.AUDITOR, BuiltinRole.SECURITY_OFFICER),
    ],
)
def test_conflicting_roles_are_refused_naming_the_conflict(db, tenant, in_tenant, staff, first, second):
    with in_tenant(tenant) as session:
        grant(session, tenant.id, staff["bob"].id, first)
        with pytest.raises(SegregationOfDutiesError) as refused:
            access.grant_role(session, _admin(tenant), staff["bob"].id, second)
        assert first.value in refused.value.detail and second.value in refused.value.detail
        assert access.held_roles(session, staff["bob"].id) == [first.value]


def test_nobody_assigns_roles_to_themselves(db, tenant, in_tenant, staff):
    with in_tenant(tenant) as session:
        grant(session, tenant.id, staff["ann"].id, BuiltinRole.TENANT_ADMIN)
        ann = _as_account(session, tenant, staff["ann"])
        with pytest.raises(SegregationOfDutiesError, match="themselves"):
            access.grant_role(session, ann, staff["ann"].id, BuiltinRole.CIRCULATION_STAFF)
        access.grant_role(session, ann, staff["bob"].id, BuiltinRole.CIRCULATION_STAFF)  # others: fine


def test_role_changes_need_the_permission_and_denials_change_nothing(db, tenant, in_tenant, staff):
    with in_tenant(tenant) as session:
        access.grant_role(session, _admin(tenant), staff["cy"].id, BuiltinRole.CIRCULATION_STAFF)
        cy = _as_account(session, tenant, staff["cy"])
        with pytest.raises(Forbidden, match=r"roles\.assign"):
            access.grant_role(session, cy, staff["cy"].id, BuiltinRole.TENANT_ADMIN)
        with pytest.raises(Forbidden, match=r"roles\.manage"):
            access.create_role(session, cy, "mine", set(TENANT_PERMISSIONS))
        assert access.held_roles(session, staff["cy"].id) == [BuiltinRole.CIRCULATION_STAFF.value]


def test_another_tenants_accounts_cannot_be_given_roles(db, tenant, other_tenant, in_tenant, staff):
    with in_tenant(other_tenant) as session, pytest.raises(Exception, match="no account"):
        access.grant_role(session, _admin(other_tenant), staff["ann"].id, BuiltinRole.TENANT_ADMIN)


def test_every_entitlement_change_queues_a_notice_to_the_security_contacts(db, tenant, in_tenant, staff):
    with in_tenant(tenant) as session:
        before = len(session.scalars(select(OutboxMessage)).all())
        assert before == 3  # three accounts created by the fixture
        access.grant_role(session, _admin(tenant), staff["ann"].id, BuiltinRole.CIRCULATION_STAFF)
        access.revoke_role(session, _admin(tenant), staff["ann"].id, BuiltinRole.CIRCULATION_STAFF)
        access.create_role(session, _admin(tenant), "helpers", {Permission.POSTS_READ})
        accounts.disable_account(session, _admin(tenant), staff["bob"].id)
        accounts.delete_account(session, _admin(tenant), staff["cy"].id)
        tokens.issue_api_token(session, "catalogue sync", [Permission.PATRONS_READ], timedelta(days=1))
        messages = session.scalars(select(OutboxMessage)).all()
        assert len(messages) == before + 6
        assert {m.category for m in messages} == {"security"}
