"""Legal holds: placed and lifted by privacy officers with a reason, an end or none; every change recorded
(never the reason's text); the hold is what the purge and the erasure ask about a patron."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from bookwarden.core.permissions import Permission
from bookwarden.db.session import tenant_session
from bookwarden.library import records as library
from bookwarden.library.schemas import PatronCreate
from bookwarden.privacy.retention import holds

HOLDS = "/api/v1/privacy/holds"
OFFICER = frozenset({Permission.PRIVACY_HOLDS_MANAGE})
REASON = "Court order 2026-CV-0042"


def _patron(db, tenant) -> uuid.UUID:
    with tenant_session(db, tenant.id) as session:
        return library.create(session, library.PATRONS, PatronCreate(name="Held Patron")).id


def _events(db, tenant, action: str) -> list[dict]:
    with tenant_session(db, tenant.id) as session:
        return list(
            session.execute(text("SELECT details FROM audit_events WHERE action = :a ORDER BY seq"), {"a": action})
            .scalars()
        )


def test_a_hold_is_placed_read_by_active_hold_and_lifted_with_each_change_recorded(db, tenant, client_for):
    patron_id = _patron(db, tenant)
    client = client_for(tenant, permissions=OFFICER)
    until = (datetime.now(UTC) + timedelta(days=90)).isoformat()
    placed = client.post(HOLDS, json={"reason": REASON, "patron_id": str(patron_id), "held_until": until})
    assert placed.status_code == 201, placed.text
    hold = placed.json()
    assert hold["patron_id"] == str(patron_id) and hold["category"] is None and hold["lifted_at"] is None
    with tenant_session(db, tenant.id) as session:
        assert holds.active_hold(session, patron_id).id == uuid.UUID(hold["id"])
    assert [h["id"] for h in client.get(HOLDS).json()] == [hold["id"]]

    lifted = client.post(f"{HOLDS}/{hold['id']}/lift")
    assert lifted.status_code == 200 and lifted.json()["lifted_at"] is not None
    with tenant_session(db, tenant.id) as session:
        assert holds.active_hold(session, patron_id) is None
    assert client.get(HOLDS).json() == []
    assert [h["id"] for h in client.get(HOLDS, params={"include_ended": True}).json()] == [hold["id"]]
    assert client.post(f"{HOLDS}/{hold['id']}/lift").status_code == 409  # lifted already

    for action in ("legal_hold.placed", "legal_hold.lifted"):
        (details,) = _events(db, tenant, action)
        assert details["patron_id"] == str(patron_id) and details["reason_length"] == len(REASON)
        assert REASON not in str(details)  # the matter's reference stays in the row


def test_a_hold_on_a_whole_category_names_no_patron(db, tenant, client_for):
    client = client_for(tenant, permissions=OFFICER)
    placed = client.post(HOLDS, json={"reason": REASON, "category": "searches"})
    assert placed.status_code == 201 and placed.json()["patron_id"] is None
    with tenant_session(db, tenant.id) as session:
        assert holds.category_held(session, holds.RetentionCategory.SEARCHES)
        assert not holds.category_held(session, holds.RetentionCategory.POSTS)


def test_holds_are_refused_when_they_hold_nothing_or_end_in_the_past(db, tenant, client_for):
    client = client_for(tenant, permissions=OFFICER)
    assert client.post(HOLDS, json={"reason": REASON}).status_code == 422
    assert client.post(HOLDS, json={"reason": REASON, "patron_id": str(uuid.uuid4())}).status_code == 404
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    assert client.post(HOLDS, json={"reason": REASON, "category": "posts", "held_until": past}).status_code == 409
    assert client.post(f"{HOLDS}/{uuid.uuid4()}/lift").status_code == 404
    assert client_for(tenant).post(HOLDS, json={"reason": REASON, "category": "posts"}).status_code == 403


def test_a_held_patron_cannot_be_deleted(db, tenant, client_for):
    patron_id = _patron(db, tenant)
    assert client_for(tenant, permissions=OFFICER).post(
        HOLDS, json={"reason": REASON, "patron_id": str(patron_id)}
    ).status_code == 201
    refused = client_for(tenant).delete(f"/api/v1/patrons/{patron_id}")
    assert refused.status_code == 409 and "legal hold" in refused.json()["detail"]


def test_another_institution_sees_no_hold(db, tenant, other_tenant, client_for):
    patron_id = _patron(db, tenant)
    client_for(tenant, permissions=OFFICER).post(HOLDS, json={"reason": REASON, "patron_id": str(patron_id)})
    assert client_for(other_tenant, permissions=OFFICER).get(HOLDS).json() == []
    with tenant_session(db, other_tenant.id) as session:
        assert holds.active_hold(session, patron_id) is None
