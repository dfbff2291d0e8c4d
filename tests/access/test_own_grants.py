"""An operator's own grants across institutions (the operator console's status page): only theirs, whichever
credential asked, metadata without the justification, and nothing at all from inside an institution."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import text

from bookwarden.access.grants import service as grants
from bookwarden.access.grants.models import GrantScope
from bookwarden.core.errors import Forbidden
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import tenant_session

ASK = frozenset({Permission.PLATFORM_GRANTS_REQUEST})


def _ask(db, operator, tenant, ticket):
    return grants.request_grant(
        db,
        operator,
        tenant.id,
        scope=GrantScope.READ,
        ticket=ticket,
        justification="a patron's loans look wrong",
        duration=timedelta(hours=1),
    )


def test_an_operator_sees_their_own_grants_in_every_institution_and_no_one_elses(db, tenant, other_tenant):
    olga = uuid.uuid4()
    session_of_olga = Principal(PrincipalKind.OPERATOR, olga, None, ASK)
    token_of_olga = Principal(PrincipalKind.OPERATOR_TOKEN, uuid.uuid4(), None, ASK, owner_id=olga)
    bob = Principal(PrincipalKind.OPERATOR, uuid.uuid4(), None, ASK)
    _ask(db, session_of_olga, tenant, "T-1")
    _ask(db, token_of_olga, other_tenant, "T-2")  # through one of her tokens: still hers
    _ask(db, bob, tenant, "T-3")

    mine = grants.own_grants(db, session_of_olga)
    assert sorted(g["ticket"] for g in mine) == ["T-1", "T-2"]
    assert {g["tenant_slug"] for g in mine} == {tenant.slug, other_tenant.slug}
    assert all("justification" not in g for g in mine)
    assert [g["ticket"] for g in grants.own_grants(db, bob)] == ["T-3"]


def test_the_listing_needs_the_permission_and_an_operator(db, tenant):
    with pytest.raises(Forbidden):
        grants.own_grants(db, Principal(PrincipalKind.OPERATOR, uuid.uuid4(), None, frozenset()))
    with pytest.raises(Forbidden):
        grants.own_grants(db, Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant.id, ASK))


def test_inside_an_institution_the_function_reads_nothing(db, tenant):
    olga = Principal(PrincipalKind.OPERATOR, uuid.uuid4(), None, ASK)
    _ask(db, olga, tenant, "T-1")
    with tenant_session(db, tenant.id) as session:
        found = session.execute(
            text("SELECT * FROM bookwarden_operator_own_grants(:c, :p, 10)"), {"c": olga.id, "p": olga.id}
        ).all()
    assert found == []
