"""Maker-checker compares people, not credentials: an account and its API tokens are one person, whichever
of them asks and whichever tries to approve. (The same walked over HTTP with real sessions and minted
tokens: tests/identity/test_tokens.py.)"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from bookwarden.access.approvals import service as approvals
from bookwarden.access.approvals.models import SensitiveAction
from bookwarden.core.errors import Forbidden, SegregationOfDutiesError
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, TENANT_PERMISSIONS, BuiltinRole, Permission
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.identity.accounts import service as accounts
from bookwarden.identity.models import AccountKind

ADMIN = BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN]


def _session_of(tenant, person) -> Principal:
    return Principal(PrincipalKind.ACCOUNT, person, tenant.id, ADMIN)


def _token_of(tenant, person) -> Principal:
    return Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant.id, ADMIN, owner_id=person)


def _service_token(tenant) -> Principal:
    return Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant.id, ADMIN)


@pytest.fixture
def ask(in_tenant, tenant):
    """ask(asker) -> a pending request to make a new account a tenant admin."""

    def asked(asker: Principal):
        with in_tenant(tenant) as session:
            account = accounts.create_account(
                session, _service_token(tenant), kind=AccountKind.STAFF, username=f"cand-{uuid.uuid4().hex[:8]}"
            )
            params = {"account_id": str(account.id), "role": BuiltinRole.TENANT_ADMIN.value}
            return approvals.ask(session, asker, SensitiveAction.GRANT_ADMIN_ROLE, params)

    return asked


def _refused(in_tenant, tenant, decider: Principal, request_id) -> None:
    for decide in (approvals.approve, approvals.reject):
        with pytest.raises(SegregationOfDutiesError, match="sessions or tokens"), in_tenant(tenant) as session:
            decide(session, decider, request_id)


def test_a_token_cannot_approve_what_its_owner_asked_through_a_session(in_tenant, tenant, ask):
    ann, bob = uuid.uuid4(), uuid.uuid4()
    request = ask(_session_of(tenant, ann))
    assert request.requested_by_person == ann
    _refused(in_tenant, tenant, _token_of(tenant, ann), request.id)
    with in_tenant(tenant) as session:
        approved = approvals.approve(session, _token_of(tenant, bob), request.id)
    assert approved.status == "approved" and approved.decided_by_person == bob


def test_the_owner_cannot_approve_what_one_of_their_tokens_asked_through_a_session_or_another_token(
    in_tenant, tenant, ask
):
    ann, bob = uuid.uuid4(), uuid.uuid4()
    asking_token = _token_of(tenant, ann)
    request = ask(asking_token)
    assert (request.requested_by, request.requested_by_person) == (asking_token.id, ann)
    _refused(in_tenant, tenant, _session_of(tenant, ann), request.id)
    _refused(in_tenant, tenant, _token_of(tenant, ann), request.id)
    _refused(in_tenant, tenant, asking_token, request.id)
    with in_tenant(tenant) as session:
        assert approvals.approve(session, _session_of(tenant, bob), request.id).status == "approved"


def test_a_service_token_is_a_party_of_its_own(in_tenant, tenant, ask):
    """No owner, no person: it cannot decide its own request, and is nobody else (only the console mints one)."""
    service = _service_token(tenant)
    request = ask(service)
    assert request.requested_by_person is None
    with pytest.raises(SegregationOfDutiesError), in_tenant(tenant) as session:
        approvals.approve(session, service, request.id)
    with in_tenant(tenant) as session:
        assert approvals.approve(session, _session_of(tenant, uuid.uuid4()), request.id).status == "approved"


def test_a_request_asked_before_people_were_kept_still_knows_a_session_asker(in_tenant, tenant, ask):
    """Rows older than migration 0025 have no requested_by_person; a session's id is its person's."""
    ann = uuid.uuid4()
    request = ask(_session_of(tenant, ann))
    with in_tenant(tenant) as session:
        forgotten = text("UPDATE approval_requests SET requested_by_person = NULL WHERE id = :i")
        session.execute(forgotten, {"i": request.id})
    _refused(in_tenant, tenant, _token_of(tenant, ann), request.id)


def test_the_database_refuses_a_decision_by_the_person_who_asked(in_tenant, tenant, ask):
    ann = uuid.uuid4()
    request = ask(_token_of(tenant, ann))
    with pytest.raises(Exception, match="checker_is_not_maker_person"), in_tenant(tenant) as session:
        session.execute(
            text(
                "UPDATE approval_requests SET status = 'approved', decided_by = :d, decided_by_person = :p"
                " WHERE id = :i"
            ),
            {"d": uuid.uuid4(), "p": ann, "i": request.id},
        )


def test_only_a_holder_of_the_kinds_own_permission_decides(in_tenant, tenant, ask):
    """The queue is seen with accounts.read; deciding takes the permission of the request's kind (roles.assign
    for an administrative role), checked by the service whichever route reaches it."""
    request = ask(_session_of(tenant, uuid.uuid4()))
    lacking = Principal(
        PrincipalKind.ACCOUNT, uuid.uuid4(), tenant.id, frozenset(TENANT_PERMISSIONS - {Permission.ROLES_ASSIGN})
    )
    for decide in (approvals.approve, approvals.reject):
        with pytest.raises(Forbidden, match=r"roles\.assign"), in_tenant(tenant) as session:
            decide(session, lacking, request.id)
    with in_tenant(tenant) as session:
        assert approvals.approve(session, _session_of(tenant, uuid.uuid4()), request.id).status == "approved"
