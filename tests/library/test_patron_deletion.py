"""Deleting a patron takes two people and a grace period (library/deletion.py): asked by one member of staff,
hidden and frozen at once with the key kept, confirmed or undone by another within the period, destroyed by
the hourly job at its end (or lapsed, when nobody confirmed)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from bookwarden.core.permissions import BUILTIN_PERMISSIONS, LIBRARY_READ, LIBRARY_WRITE, BuiltinRole
from bookwarden.crypto.fields import decrypt_field
from bookwarden.crypto.keyring import KeyDestroyed
from bookwarden.db.session import tenant_session
from bookwarden.jobs.service import handler_for
from bookwarden.library import deletion
from tests.helpers import PATHS, one_persons_clients, populate
from tests.privacy.test_legal_holds import HOLDS, REASON
from tests.privacy.test_legal_holds import OFFICER as HOLDS_OFFICER

STAFF = BuiltinRole.CIRCULATION_STAFF
SOD = "urn:bookwarden:problem:segregation-of-duties"


@pytest.fixture
def ann(app, db, tenant):
    """Two tokens of one member of staff, Ann."""
    return one_persons_clients(app, db, tenant.id, STAFF)


@pytest.fixture
def bob(app, db, tenant):
    return one_persons_clients(app, db, tenant.id, STAFF, count=1)[0]


def _patron(client, n: int = 0) -> dict:
    body = {"name": f"Deletable {n}", "email": f"d{n}@example.org", "barcode": f"7{n:013d}"}
    made = client.post("/api/v1/patrons", json=body)
    assert made.status_code == 201, made.text
    return made.json()


def _ask(client, patron_id) -> dict:
    asked = client.delete(f"/api/v1/patrons/{patron_id}")
    assert asked.status_code == 202, asked.text
    return asked.json()


def _age(db, tenant, patron_id) -> None:
    """The grace period ends (the database clock decides)."""
    with tenant_session(db, tenant.id) as session:
        session.execute(
            text("UPDATE patrons SET deletion_due_at = now() - interval '1 second' WHERE id = :id"), {"id": patron_id}
        )


def _events(db, tenant, action: str) -> list[tuple]:
    with tenant_session(db, tenant.id) as session:
        return session.execute(
            text("SELECT target_id, actor_kind, details FROM audit_events WHERE action = :a ORDER BY seq"),
            {"a": action},
        ).all()


def _name_sealed(db, tenant, patron_id) -> bytes:
    with tenant_session(db, tenant.id) as session:
        return session.execute(text("SELECT name FROM patrons WHERE id = :id"), {"id": patron_id}).scalar_one()


def _opened(db, tenant, patron_id, sealed: bytes) -> str:
    db.keyring._subject_cache.clear()  # as a process that never held the key
    key = db.keyring.subject_key(tenant.id, uuid.UUID(str(patron_id)))
    return decrypt_field(key, tenant.id, "patrons", "name", uuid.UUID(str(patron_id)), sealed)


def test_the_one_who_deleted_cannot_confirm_or_undo_it_through_another_token(ann, bob, db, tenant):
    first, second = ann
    patron = _patron(first)
    asked = _ask(first, patron["id"])
    assert asked["confirmed"] is False and asked["patron_id"] == patron["id"]
    period = datetime.fromisoformat(asked["due_at"]) - datetime.now(UTC)
    assert timedelta(days=7, minutes=-5) < period <= timedelta(days=7)  # BOOKWARDEN_PATRON_DELETION_GRACE_DAYS
    for client in (first, second):
        for step in ("confirm", "undo"):
            refused = client.post(f"/api/v1/patrons/{patron['id']}/deletion/{step}")
            assert refused.status_code == 409 and refused.json()["type"] == SOD, (step, refused.text)
    confirmed = bob.post(f"/api/v1/patrons/{patron['id']}/deletion/confirm")
    assert confirmed.status_code == 200 and confirmed.json()["confirmed"] is True
    assert bob.post(f"/api/v1/patrons/{patron['id']}/deletion/confirm").status_code == 409  # decided already
    (event,) = _events(db, tenant, "patron.deletion_confirmed")
    assert str(event.target_id) == patron["id"] and event.details["approval_id"] == asked["approval_id"]
    # Ann cannot undo it after Bob confirmed either; Bob (or anyone but Ann) may, within the period.
    assert second.post(f"/api/v1/patrons/{patron['id']}/deletion/undo").json()["type"] == SOD


def test_the_generic_approval_route_confirms_too_but_not_for_the_asker(app, db, tenant, client_for):
    asker, own_token = one_persons_clients(app, db, tenant.id, BuiltinRole.TENANT_ADMIN)
    patron = _patron(asker)
    approval_id = _ask(asker, patron["id"])["approval_id"]
    own = own_token.post(f"/api/v1/approvals/{approval_id}/approve")
    assert own.status_code == 409 and own.json()["type"] == SOD
    other = one_persons_clients(app, db, tenant.id, BuiltinRole.TENANT_ADMIN, count=1)[0]
    assert other.post(f"/api/v1/approvals/{approval_id}/approve").status_code == 200
    assert len(_events(db, tenant, "patron.deletion_confirmed")) == 1


def test_a_patron_pending_deletion_is_hidden_frozen_and_back_intact_when_undone(ann, bob, client_for, tenant):
    staff = client_for(tenant, permissions=LIBRARY_READ | LIBRARY_WRITE)
    records = populate(staff, 3)
    patron = records[next(kind for kind in records if kind.table == "patrons")]
    pid = patron["id"]
    _ask(ann[0], pid)

    assert staff.get(f"/api/v1/patrons/{pid}").status_code == 404
    assert pid not in {p["id"] for p in staff.get("/api/v1/patrons").json()["items"]}
    looked_up = staff.post("/api/v1/patrons/lookup", json={"by": "barcode", "value": patron["barcode"]})
    assert looked_up.status_code == 200 and looked_up.json() == []
    assert staff.patch(f"/api/v1/patrons/{pid}", json={"affiliation": "alumni"}).status_code == 404
    assert staff.delete(f"/api/v1/patrons/{pid}").status_code == 404  # asked once is enough
    # Every record about them goes out of sight with them, and nothing new can be recorded about them.
    for kind, record in records.items():
        if kind.table == "patrons":
            continue
        path = PATHS[kind]
        assert staff.get(f"/api/v1/{path}/{record['id']}").status_code == 404, path
        assert staff.get(f"/api/v1/{path}").json()["items"] == [], path
        assert staff.delete(f"/api/v1/{path}/{record['id']}").status_code == 404, path
    new_loan = {
        "patron_id": pid,
        "item_id": "i",
        "borrowed_at": "2026-01-01T00:00:00Z",
        "due_at": "2026-02-01T00:00:00Z",
    }
    assert staff.post("/api/v1/loans", json=new_loan).status_code == 404
    # Not in a bulk export, not in an access package asked outside a request.
    officer, checker = (client_for(tenant, permissions=BUILTIN_PERMISSIONS[BuiltinRole.PRIVACY_OFFICER]) for _ in "ab")
    assert officer.post("/api/v1/privacy/subject-exports/approvals", json={"patron_id": pid}).status_code == 404
    export = officer.post("/api/v1/patrons/exports", json={"format": "jsonl"}).json()["id"]
    assert checker.post(f"/api/v1/approvals/{export}/approve").status_code == 200
    exported = officer.get(f"/api/v1/patrons/exports/{export}")
    assert exported.status_code == 200 and pid not in exported.text

    assert bob.post(f"/api/v1/patrons/{pid}/deletion/undo").status_code == 204
    assert staff.get(f"/api/v1/patrons/{pid}").json() == patron  # the key was kept: every field reads again
    assert len(staff.get("/api/v1/loans").json()["items"]) == 1
    assert bob.post(f"/api/v1/patrons/{pid}/deletion/undo").status_code == 404  # nothing pending any more


def test_after_the_grace_period_it_can_be_neither_undone_nor_confirmed(ann, bob, db, tenant):
    patron = _patron(ann[0])
    _ask(ann[0], patron["id"])
    _age(db, tenant, patron["id"])
    late = bob.post(f"/api/v1/patrons/{patron['id']}/deletion/undo")
    assert late.status_code == 409 and "grace period" in late.json()["detail"]
    late = bob.post(f"/api/v1/patrons/{patron['id']}/deletion/confirm")
    assert late.status_code == 409 and "grace period" in late.json()["detail"]


def test_the_job_destroys_exactly_the_confirmed_deletions_whose_period_ended(app, db, tenant, other_tenant, ann, bob):
    due, waiting, unconfirmed = (_patron(ann[0], n) for n in range(3))
    for patron in (due, waiting, unconfirmed):
        _ask(ann[0], patron["id"])
    for patron in (due, waiting):
        assert bob.post(f"/api/v1/patrons/{patron['id']}/deletion/confirm").status_code == 200
    # Another institution's pending deletion, confirmed, its period still running.
    theirs_asker = one_persons_clients(app, db, other_tenant.id, STAFF, count=1)[0]
    theirs_checker = one_persons_clients(app, db, other_tenant.id, STAFF, count=1)[0]
    theirs = _patron(theirs_asker, 9)
    _ask(theirs_asker, theirs["id"])
    assert theirs_checker.post(f"/api/v1/patrons/{theirs['id']}/deletion/confirm").status_code == 200
    for patron in (due, unconfirmed):
        _age(db, tenant, patron["id"])
    sealed = _name_sealed(db, tenant, due["id"])
    assert _opened(db, tenant, due["id"], sealed) == due["name"]  # pending: the key is still there

    outcome = deletion.carry_out_due(db)
    assert (outcome.destroyed, outcome.lapsed, outcome.held) == (1, 1, 0)

    with pytest.raises(KeyDestroyed):
        _opened(db, tenant, due["id"], sealed)  # the backup's copy of the row can no longer be read
    with tenant_session(db, tenant.id) as session:
        left = set(session.execute(text("SELECT id::text FROM patrons")).scalars())
    assert due["id"] not in left and {waiting["id"], unconfirmed["id"]} <= left
    assert _opened(db, tenant, waiting["id"], _name_sealed(db, tenant, waiting["id"])) == waiting["name"]
    assert _opened(db, other_tenant, theirs["id"], _name_sealed(db, other_tenant, theirs["id"])) == theirs["name"]
    (deleted,) = _events(db, tenant, "patron.deleted")
    assert str(deleted.target_id) == due["id"] and deleted.actor_kind == "system"
    assert deleted.details["subject_key_destroyed"] is True and due["name"] not in str(deleted.details)
    (lapsed,) = _events(db, tenant, "patron.deletion_lapsed")
    assert str(lapsed.target_id) == unconfirmed["id"]
    # The lapsed one is back, whole; the one still in its period stays hidden.
    assert bob.get(f"/api/v1/patrons/{unconfirmed['id']}").json()["name"] == unconfirmed["name"]
    assert bob.get(f"/api/v1/patrons/{waiting['id']}").status_code == 404
    assert _events(db, other_tenant, "patron.deleted") == []
    assert deletion.carry_out_due(db).destroyed == 0  # nothing more is due


def test_a_crash_after_the_key_went_is_finished_by_the_next_run(db, tenant, ann, bob, monkeypatch):
    patron = _patron(ann[0])
    _ask(ann[0], patron["id"])
    assert bob.post(f"/api/v1/patrons/{patron['id']}/deletion/confirm").status_code == 200
    _age(db, tenant, patron["id"])
    sealed = _name_sealed(db, tenant, patron["id"])
    keyring = type(db.keyring)
    real = keyring.shred_subject

    def shred_then_crash(self, tenant_id, subject_id):
        real(self, tenant_id, subject_id)  # committed in the keyring at once
        raise RuntimeError("the process died before the data transaction committed")

    monkeypatch.setattr(keyring, "shred_subject", shred_then_crash)
    with pytest.raises(RuntimeError, match="next run resumes"):
        deletion.carry_out_due(db)
    monkeypatch.setattr(keyring, "shred_subject", real)
    # The rows are still there (rolled back), pending, and unreadable: the next run finishes.
    assert _name_sealed(db, tenant, patron["id"]) == sealed
    with pytest.raises(KeyDestroyed):
        _opened(db, tenant, patron["id"], sealed)
    assert deletion.carry_out_due(db).destroyed == 1
    assert len(_events(db, tenant, "patron.deleted")) == 1
    with tenant_session(db, tenant.id) as session:
        assert session.execute(text("SELECT count(*) FROM patrons")).scalar_one() == 0


def test_a_crash_while_asking_leaves_the_patron_as_it_was(db, tenant, ann, bob, monkeypatch):
    patron = _patron(ann[0])

    def crash(*args, **kwargs):
        raise RuntimeError("the process died mid-request")

    monkeypatch.setattr(deletion, "record", crash)  # after the approval and the marking, before the commit
    assert ann[0].delete(f"/api/v1/patrons/{patron['id']}").status_code == 500
    monkeypatch.undo()
    assert bob.get(f"/api/v1/patrons/{patron['id']}").status_code == 200
    with tenant_session(db, tenant.id) as session:
        assert session.execute(text("SELECT count(*) FROM approval_requests")).scalar_one() == 0
    _ask(ann[0], patron["id"])  # and it can be asked again


def test_a_legal_hold_refuses_the_deletion_and_stops_its_destruction(db, tenant, ann, bob, client_for):
    officer = client_for(tenant, permissions=HOLDS_OFFICER)
    held = _patron(ann[0], 1)
    hold = officer.post(HOLDS, json={"reason": REASON, "patron_id": held["id"]})
    assert hold.status_code == 201
    refused = ann[0].delete(f"/api/v1/patrons/{held['id']}")
    assert refused.status_code == 409 and "legal hold" in refused.json()["detail"]

    # Placed during the grace period, a hold keeps the patron (hidden, the key kept) for as long as it lasts.
    later = _patron(ann[0], 2)
    _ask(ann[0], later["id"])
    assert bob.post(f"/api/v1/patrons/{later['id']}/deletion/confirm").status_code == 200
    second = officer.post(HOLDS, json={"reason": REASON, "patron_id": later["id"]})
    assert second.status_code == 201
    _age(db, tenant, later["id"])
    assert deletion.carry_out_due(db).held == 1
    assert _opened(db, tenant, later["id"], _name_sealed(db, tenant, later["id"])) == later["name"]
    assert officer.post(f"{HOLDS}/{second.json()['id']}/lift").status_code == 200
    assert deletion.carry_out_due(db).destroyed == 1


def test_the_worker_runs_the_job_hourly(db):
    from bookwarden import areas
    from bookwarden.db.session import platform_session
    from bookwarden.jobs.models import JobSchedule
    from bookwarden.library import jobs

    assert jobs in areas.modules("jobs") and handler_for(deletion.DUE_JOB) is not None
    jobs.declare_schedules(db)
    with platform_session(db) as session:
        every = {s.name: s.every_seconds for s in session.query(JobSchedule)}
    assert every[deletion.DUE_JOB] == 3600
