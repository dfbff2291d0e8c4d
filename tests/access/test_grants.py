"""Operator access grants: without one an operator sees nothing; with one, only its scope, only its window."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from bookwarden.access.grants import service as grants
from bookwarden.access.grants.models import GrantScope, OperatorGrant
from bookwarden.access.roles.notices import add_security_contact
from bookwarden.api.deps import tenant_scope
from bookwarden.core.authorize import authorize
from bookwarden.core.errors import Conflict, Forbidden, InvalidInput, SegregationOfDutiesError
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, BuiltinRole, Permission
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import tenant_session
from bookwarden.library import records, schemas
from bookwarden.notify.models import OutboxMessage


def _platform(role: BuiltinRole) -> Principal:
    return Principal(PrincipalKind.OPERATOR_TOKEN, uuid.uuid4(), None, BUILTIN_PERMISSIONS[role])


def _signed_in(role: BuiltinRole, permissions=frozenset()) -> Principal:
    """An operator's own session (second factor passed): the only principal that breaks glass."""
    return Principal(PrincipalKind.OPERATOR, uuid.uuid4(), None, BUILTIN_PERMISSIONS[role] | permissions)


def _tenant_admin(tenant) -> Principal:
    return Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant.id, BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN])


@pytest.fixture
def patron(db, tenant, in_tenant):
    with in_tenant(tenant) as session:
        add_security_contact(session, "soc@alpha.example")
        return records.create(session, records.PATRONS, schemas.PatronCreate(name="Private Person"))


def _ask(db, operator, tenant, scope=GrantScope.READ, hours=2):
    return grants.request_grant(
        db,
        operator,
        tenant.id,
        scope=scope,
        justification="patron cannot sign in, INC-42",
        ticket="INC-42",
        duration=timedelta(hours=hours),
    )


def test_without_a_grant_an_operator_sees_nothing(db, tenant, patron):
    operator = _platform(BuiltinRole.OPERATOR_SUPPORT)
    with pytest.raises(Forbidden), tenant_scope(db, operator):
        pass
    with pytest.raises(Forbidden):
        grants.open_grant(db, operator, uuid.uuid4())


def test_a_requested_but_unapproved_grant_opens_nothing(db, tenant, patron):
    operator = _platform(BuiltinRole.OPERATOR_SUPPORT)
    grant = _ask(db, operator, tenant)
    with pytest.raises(Forbidden):
        grants.open_grant(db, operator, grant.id)


def test_an_approved_grant_gives_exactly_its_scope_to_exactly_its_operator(db, tenant, other_tenant, patron):
    operator, stranger = _platform(BuiltinRole.OPERATOR_SUPPORT), _platform(BuiltinRole.OPERATOR_SUPPORT)
    grant = _ask(db, operator, tenant)
    with tenant_session(db, tenant.id) as session:
        grants.approve_grant(session, _tenant_admin(tenant), grant.id)
    inside = grants.open_grant(db, operator, grant.id)
    assert inside.tenant_id == tenant.id and inside.grant_id == grant.id
    with tenant_scope(db, inside) as session:
        assert records.read(session, records.PATRONS, patron.id).name == "Private Person"
    with pytest.raises(Forbidden, match=r"patrons\.write"):
        authorize(inside, Permission.PATRONS_WRITE)
    with pytest.raises(Forbidden):
        grants.open_grant(db, stranger, grant.id)  # someone else's grant opens nothing


def test_grants_last_at_most_eight_hours_and_need_a_reason(db, tenant):
    operator = _platform(BuiltinRole.OPERATOR_SUPPORT)
    with pytest.raises(InvalidInput, match="8 hours"):
        _ask(db, operator, tenant, hours=9)
    with pytest.raises(InvalidInput, match="justification"):
        grants.request_grant(
            db, operator, tenant.id, scope=GrantScope.READ, justification="", ticket="T-1", duration=timedelta(hours=1)
        )
    with pytest.raises(Exception, match="at_most_8h"), tenant_session(db, tenant.id) as session:
        session.execute(
            text(
                "INSERT INTO operator_grants (tenant_id, id, operator_id, scope, justification, ticket, starts_at,"
                " expires_at, status, break_glass) VALUES (:t, :i, :i, 'read', 'x', 'x', now(),"
                " now() + interval '9 h', 'approved', false)"
            ),
            {"t": tenant.id, "i": uuid.uuid4()},
        )


def test_only_the_asker_or_a_holder_of_the_permission_ends_a_grant(db, tenant):
    """Read after the grant (the asker needs no permission to end their own), so the route's check alone
    would not say it: the service refuses everyone else who lacks operator_grants.approve."""
    operator = _platform(BuiltinRole.OPERATOR_SUPPORT)
    grant = _ask(db, operator, tenant)
    everything_else = Principal(
        PrincipalKind.API_TOKEN,
        uuid.uuid4(),
        tenant.id,
        BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN] - {Permission.OPERATOR_GRANTS_APPROVE},
        owner_id=uuid.uuid4(),
    )
    with tenant_session(db, tenant.id) as session:
        with pytest.raises(Forbidden, match=r"operator_grants\.approve"):
            grants.revoke_grant(session, everything_else, grant.id)
        assert grants.revoke_grant(session, _tenant_admin(tenant), grant.id).status == "revoked"


def test_expired_and_revoked_grants_close_at_once(db, tenant, patron):
    operator = _platform(BuiltinRole.OPERATOR_SUPPORT)
    expiring, revoked = _ask(db, operator, tenant), _ask(db, operator, tenant)
    with tenant_session(db, tenant.id) as session:
        for g in (expiring, revoked):
            grants.approve_grant(session, _tenant_admin(tenant), g.id)
        grants.revoke_grant(session, _tenant_admin(tenant), revoked.id)
        session.execute(
            text(
                "UPDATE operator_grants SET starts_at = now() - interval '3 h',"
                " expires_at = now() - interval '1 s' WHERE id = :g"
            ),
            {"g": expiring.id},
        )
    for g in (expiring, revoked):
        with pytest.raises(Forbidden):
            grants.open_grant(db, operator, g.id)
    assert grants.end_expired_grants(db) == 1
    with tenant_session(db, tenant.id) as session:
        assert session.get(OperatorGrant, (tenant.id, expiring.id)).status == "expired"


def test_break_glass_is_the_cisos_flagged_and_notified(db, tenant, patron):
    operator, ciso = _platform(BuiltinRole.OPERATOR_OPS), _signed_in(BuiltinRole.CISO)
    grant = _ask(db, operator, tenant)
    with pytest.raises(Forbidden):
        grants.break_glass(db, _signed_in(BuiltinRole.OPERATOR_OPS), tenant.id, grant.id)  # not a CISO
    approved = grants.break_glass(db, ciso, tenant.id, grant.id)
    assert approved.break_glass and approved.decided_by == ciso.id and approved.decided_by_person == ciso.id
    with tenant_session(db, tenant.id) as session:
        notices = session.scalars(select(OutboxMessage)).all()
    assert len(notices) == 2  # requested, then break-glass approved; mailed to the tenant's contacts


def test_break_glass_is_never_held_by_a_token(db, tenant, patron):
    """Even a token carrying the CISO's permissions (minted before tokens were kept from it, or forged in a
    test like this one): only an operator signed in with a second factor breaks glass."""
    grant = _ask(db, _platform(BuiltinRole.OPERATOR_OPS), tenant)
    ciso_account = uuid.uuid4()
    ciso_token = Principal(
        PrincipalKind.OPERATOR_TOKEN, uuid.uuid4(), None, BUILTIN_PERMISSIONS[BuiltinRole.CISO], owner_id=ciso_account
    )
    with pytest.raises(Forbidden, match="never held by a token"):
        grants.break_glass(db, ciso_token, tenant.id, grant.id)
    with pytest.raises(Forbidden, match="never held by a token"):
        grants.break_glass(db, _platform(BuiltinRole.CISO), tenant.id, grant.id)  # a service token neither
    with tenant_session(db, tenant.id) as session:
        assert session.get(OperatorGrant, (tenant.id, grant.id)).status == "requested"  # nothing was decided


def test_the_ciso_cannot_approve_their_own_request(db, tenant):
    ciso = _signed_in(BuiltinRole.CISO, BUILTIN_PERMISSIONS[BuiltinRole.OPERATOR_SUPPORT])
    grant = _ask(db, ciso, tenant)
    with pytest.raises(SegregationOfDutiesError):
        grants.break_glass(db, ciso, tenant.id, grant.id)


def test_the_ciso_cannot_break_glass_for_a_request_one_of_their_tokens_asked(db, tenant):
    """People, not credentials: the grant keeps the operator behind the asking token."""
    ciso = _signed_in(BuiltinRole.CISO, BUILTIN_PERMISSIONS[BuiltinRole.OPERATOR_SUPPORT])
    their_token = Principal(
        PrincipalKind.OPERATOR_TOKEN, uuid.uuid4(), None, BUILTIN_PERMISSIONS[BuiltinRole.OPERATOR_SUPPORT],
        owner_id=ciso.id,
    )  # fmt: skip
    grant = _ask(db, their_token, tenant)
    assert (grant.operator_id, grant.requested_by_person) == (their_token.id, ciso.id)
    with pytest.raises(SegregationOfDutiesError, match="sessions or tokens"):
        grants.break_glass(db, ciso, tenant.id, grant.id)
    # The token's owner may still end the request they asked, from their session.
    with tenant_session(db, tenant.id) as session:
        assert grants.revoke_grant(session, ciso, grant.id).status == "revoked"


def test_the_database_refuses_a_grant_decided_by_the_person_who_asked(db, tenant):
    person = uuid.uuid4()
    grant = _ask(db, _platform(BuiltinRole.OPERATOR_SUPPORT), tenant)
    with pytest.raises(Exception, match="decider_is_not_asker_person"), tenant_session(db, tenant.id) as session:
        session.execute(
            text(
                "UPDATE operator_grants SET requested_by_person = :p, decided_by_person = :p, status = 'approved'"
                " WHERE id = :g"
            ),
            {"p": person, "g": grant.id},
        )


def test_tenant_staff_cannot_request_and_operators_cannot_approve_in_a_tenant(db, tenant):
    with pytest.raises(Forbidden):
        _ask(db, _tenant_admin(tenant), tenant)
    grant = _ask(db, _platform(BuiltinRole.OPERATOR_SUPPORT), tenant)
    with pytest.raises(Forbidden), tenant_session(db, tenant.id) as session:
        grants.approve_grant(session, _platform(BuiltinRole.OPERATOR_OPS), grant.id)


def test_every_step_is_noticed_and_a_decided_grant_cannot_be_decided_again(db, tenant, patron):
    operator = _platform(BuiltinRole.OPERATOR_SUPPORT)
    grant = _ask(db, operator, tenant)
    with tenant_session(db, tenant.id) as session:
        grants.approve_grant(session, _tenant_admin(tenant), grant.id)
        with pytest.raises(Conflict):
            grants.deny_grant(session, _tenant_admin(tenant), grant.id)
    grants.open_grant(db, operator, grant.id)
    grants.open_grant(db, operator, grant.id)  # the first use is noticed, not every request
    with tenant_session(db, tenant.id) as session:
        session.execute(
            text(
                "UPDATE operator_grants SET starts_at = now() - interval '3 h',"
                " expires_at = now() - interval '1 s' WHERE id = :g"
            ),
            {"g": grant.id},
        )
    grants.end_expired_grants(db)
    with tenant_session(db, tenant.id) as session:
        subjects = len(session.scalars(select(OutboxMessage)).all())
    assert subjects == 4  # requested, approved, used, expired


def test_the_whole_grant_flow_over_http(app, db, tenant, client_for, patron):
    """Operator asks, tenant admin approves, operator reads with the grant header, then it is revoked."""
    from fastapi.testclient import TestClient

    from bookwarden.db.session import platform_session
    from bookwarden.identity.tokens import service as tokens

    with platform_session(db) as session:
        permissions = sorted(tokens.OPERATOR_TOKEN_PERMISSIONS)
        token = tokens.issue_operator_token(session, "support", permissions, timedelta(hours=1))[1]
    operator = TestClient(app, raise_server_exceptions=False)
    operator.headers["Authorization"] = f"Bearer {token}"
    admin = client_for(tenant, permissions=BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN])

    assert operator.get(f"/api/v1/patrons/{patron.id}").status_code == 403  # no grant: nothing
    asked = operator.post(
        "/api/v1/operator/grants",
        json={
            "tenant_id": str(tenant.id),
            "scope": "read",
            "justification": "patron locked out, ticket INC-7",
            "ticket": "INC-7",
            "hours": 1,
        },
    )
    assert asked.status_code == 201 and asked.json()["status"] == "requested"
    grant_id = asked.json()["id"]
    with_grant = {"X-Operator-Grant": grant_id}
    assert operator.get(f"/api/v1/patrons/{patron.id}", headers=with_grant).status_code == 403  # not approved
    assert admin.post(f"/api/v1/operator-grants/{grant_id}/approve").json()["status"] == "approved"
    read = operator.get(f"/api/v1/patrons/{patron.id}", headers=with_grant)
    assert read.status_code == 200 and read.json()["name"] == "Private Person"
    assert operator.post("/api/v1/patrons", json={"name": "x"}, headers=with_grant).status_code == 403  # read only
    assert operator.get("/api/v1/patrons", headers={"X-Operator-Grant": "not-a-uuid"}).status_code == 403
    assert admin.post(f"/api/v1/operator-grants/{grant_id}/revoke").json()["status"] == "revoked"
    assert operator.get(f"/api/v1/patrons/{patron.id}", headers=with_grant).status_code == 403
    assert [g["id"] for g in admin.get("/api/v1/operator-grants").json()] == [grant_id]
