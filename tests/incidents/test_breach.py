"""Breach notice: a breach injected through one address reads patrons of two institutions out of three. Marking
the incident a breach finds exactly those two institutions and exactly the patrons read (by subject id) in the
audit trail, starts both clocks, and sends each of the two its notice from the template; the third gets
nothing. A notice is never sent twice; a decision not to notify is recorded with its reason; the patrons'
notices are sent only when one person asks and another approves, and each once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from bookwarden.access.roles.notices import add_security_contact
from bookwarden.core.classification import Category
from bookwarden.core.errors import Conflict, InvalidInput, NotFound
from bookwarden.core.permissions import Permission
from bookwarden.db.session import PLATFORM, platform_session, tenant_session
from bookwarden.incidents import affected, service
from bookwarden.incidents.affected import BreachTarget
from bookwarden.incidents.models import IncidentNotice
from bookwarden.notify.models import OutboxMessage
from bookwarden.notify.service import open_mail
from tests.helpers import acting

HANDLER = acting(None, Permission.PLATFORM_INCIDENTS_HANDLE)
ATTACKER = "203.0.113.66"
MEASURES = "The stolen token was revoked and every session of the integration ended."
CONTACT = "incidents@bookwarden.example"


def _client(app, token: str, address: str = "198.51.100.10") -> TestClient:
    client = TestClient(app, raise_server_exceptions=False, client=(address, 50000))
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def _barcode() -> str:
    """A barcode that is no Luhn-valid number (those are refused as possible payment cards)."""
    while True:
        digits = f"{uuid.uuid4().int % 10**13:013d}"
        total = sum(int(d) if i % 2 == 0 else sum(divmod(int(d) * 2, 10)) for i, d in enumerate(reversed(digits)))
        if total % 10:
            return digits


def _patrons(client, n: int, prefix: str) -> list[str]:
    made = []
    for i in range(n):
        body = {
            "name": f"{prefix} Patron {i}",
            "email": f"{prefix}{i}@patrons.example",
            "barcode": _barcode(),
        }
        response = client.post("/api/v1/patrons", json=body)
        assert response.status_code == 201, response.text
        made.append(response.json()["id"])
    return made


def _read(client, patron_id: str) -> None:
    assert client.get(f"/api/v1/patrons/{patron_id}").status_code == 200


def _mails(db, tenant_id) -> list:
    with tenant_session(db, tenant_id) as session:
        return [open_mail(session, row) for row in session.scalars(select(OutboxMessage))]


@pytest.fixture
def world(db, app, make_tenant, issue_token):
    """Three institutions with patrons; one address (the attacker's) reads two patrons of the first and one of
    the second; ordinary staff read others from their own address, in all three."""
    tenants = [make_tenant(slug, name) for slug, name in
               (("north", "North University"), ("south", "South Library"), ("east", "East College"))]  # fmt: skip
    staff = {t.id: _client(app, issue_token(t)) for t in tenants}
    patrons = {t.id: _patrons(staff[t.id], 3, t.slug) for t in tenants}
    for t in tenants:
        with tenant_session(db, t.id) as session:
            add_security_contact(session, f"security@{t.slug}.example")
    north, south, east = tenants
    stolen = {t.id: _client(app, issue_token(t), ATTACKER) for t in (north, south)}
    _read(stolen[north.id], patrons[north.id][0])
    _read(stolen[north.id], patrons[north.id][1])
    _read(stolen[south.id], patrons[south.id][2])
    _read(staff[north.id], patrons[north.id][2])  # an ordinary read: not the breach
    _read(staff[east.id], patrons[east.id][0])
    with platform_session(db) as session:
        incident = service.open_incident(
            session, HANDLER, title="Stolen integration token", summary="Patron records read from one address."
        )
    return {"tenants": tenants, "patrons": patrons, "incident": incident}


def _mark(db, incident, **overrides):
    arguments = {
        "since": datetime.now(UTC) - timedelta(hours=1),
        "targets": [BreachTarget("address", ATTACKER)],
        "data": [Category.IDENTITY, Category.CONTACT],
        "measures": MEASURES,
        "contact": CONTACT,
        **overrides,
    }
    return affected.mark_breach(db, HANDLER, incident.id, **arguments)


def test_a_breach_of_two_institutions_reaches_exactly_them_and_lists_exactly_the_patrons_read(db, world):
    north, south, east = world["tenants"]
    patrons = world["patrons"]

    scope = _mark(db, world["incident"])

    found = {item.institution: sorted(map(str, item.subjects)) for item in scope.institutions}
    assert found == {
        north.id: sorted(patrons[north.id][:2]),
        south.id: [patrons[south.id][2]],
    }
    assert all(item.notified for item in scope.institutions)
    assert all(
        item.processor_due_at == scope.aware_at + affected.PROCESSOR_NOTICE_WITHIN for item in scope.institutions
    )
    for tenant in (north, south):
        [notice] = [m for m in _mails(db, tenant.id) if "breach notice" in m.subject]
        assert notice.to == f"security@{tenant.slug}.example"
        assert "Stolen integration token" in notice.subject
        for words in ("Patron records read from one address.", MEASURES, CONTACT, "Names, usernames"[:5].lower()):
            assert words.lower() in notice.body.lower(), words
        assert "72 hours" in notice.body
    assert _mails(db, east.id) == []  # the third institution gets nothing
    with tenant_session(db, east.id) as session:
        assert session.scalars(select(IncidentNotice)).all() == []
    with platform_session(db) as session:
        assert set(service.get(session, world["incident"].id).institutions) == {north.id, south.id}


def test_each_institution_sees_its_clock_its_patrons_and_its_notices_and_no_other_institutions(
    db, app, world, issue_token
):
    north, south, east = world["tenants"]
    incident = world["incident"]
    _mark(db, incident)
    reader = _client(app, issue_token(north, permissions={Permission.INCIDENTS_READ}))

    shown = reader.get(f"/api/v1/incidents/{incident.id}")

    assert shown.status_code == 200, shown.text
    impact = shown.json()["impact"]
    assert sorted(impact["subjects"]) == sorted(world["patrons"][north.id][:2])
    aware = datetime.fromisoformat(impact["aware_at"])
    told = datetime.fromisoformat(impact["institution_told_at"])
    assert datetime.fromisoformat(impact["processor_due_at"]) == aware + timedelta(hours=24)
    assert datetime.fromisoformat(impact["authority_due_at"]) == told + timedelta(hours=72)
    decisions = {(n["audience"], n["decision"]) for n in impact["notices"]}
    assert decisions == {("institution", "sent"), ("patron", "prepared")}
    assert str(south.id) not in shown.text  # no other institution's id or patrons
    outsider = _client(app, issue_token(east, permissions={Permission.INCIDENTS_READ}))
    assert outsider.get(f"/api/v1/incidents/{incident.id}").status_code == 404
    assert outsider.get(f"/api/v1/incidents/{uuid.uuid4()}").status_code == 404


def test_a_notice_cannot_be_sent_twice(db, world):
    north = world["tenants"][0]
    _mark(db, world["incident"])
    with pytest.raises(Conflict, match="never sent twice"):
        affected.notify_institution(db, HANDLER, world["incident"].id, north.id)
    with pytest.raises(Conflict, match="marked a breach"):
        _mark(db, world["incident"])
    assert len([m for m in _mails(db, north.id) if "breach notice" in m.subject]) == 1


def test_a_decision_not_to_notify_is_recorded_with_its_reason_and_then_nothing_is_sent(db, app, world, issue_token):
    north, south, _ = world["tenants"]
    incident = world["incident"]
    scope = _mark(db, incident, notify=False)
    assert not any(item.notified for item in scope.institutions)
    reason = "The records read held only barcodes of cards withdrawn last year: no risk to the patrons."

    affected.decline_institution(db, HANDLER, incident.id, south.id, reason)
    affected.notify_institution(db, HANDLER, incident.id, north.id)

    with pytest.raises(Conflict, match="not_notified"):
        affected.notify_institution(db, HANDLER, incident.id, south.id)
    assert [m for m in _mails(db, south.id) if "breach notice" in m.subject] == []
    reader = _client(app, issue_token(south, permissions={Permission.INCIDENTS_READ}))
    [notice] = reader.get(f"/api/v1/incidents/{incident.id}").json()["impact"]["notices"]
    assert (notice["decision"], notice["reason"]) == ("not_notified", reason)
    with tenant_session(db, south.id) as session:
        raw = session.execute(text("SELECT reason FROM incident_notices")).scalar_one()
        event = session.execute(
            text("SELECT details FROM audit_events WHERE action = 'breach.not_notified'")
        ).scalar_one()
    assert reason.encode() not in bytes(raw) and event == {"audience": "institution"}  # sealed; the trail has no words
    with tenant_session(db, PLATFORM) as session:
        actions = (
            session.execute(
                text("SELECT action FROM audit_events WHERE target_id = :i ORDER BY seq"), {"i": incident.id}
            )
            .scalars()
            .all()
        )
    assert actions.count("breach.not_notified") == 1 and actions.count("breach.notified") == 1


def test_the_patrons_are_told_only_when_one_asks_and_another_approves_and_each_once(db, app, world, issue_token):
    north = world["tenants"][0]
    incident = world["incident"]
    _mark(db, incident)
    notifier = {Permission.INCIDENTS_NOTIFY, Permission.ACCOUNTS_READ}
    asker, approver = (_client(app, issue_token(north, permissions=notifier)) for _ in "ab")

    prepared = asker.get(f"/api/v1/incidents/{incident.id}/patron-notices").json()
    assert sorted(prepared["prepared"]) == sorted(world["patrons"][north.id][:2])
    assert MEASURES in prepared["notice"] and "Stolen" not in prepared["notice"].split("What happened")[0]
    asked = asker.post(f"/api/v1/incidents/{incident.id}/patron-notices/send")
    assert asked.status_code == 202, asked.text
    assert [m for m in _mails(db, north.id) if "your personal data" in m.subject] == []  # nothing before approval
    own = asker.post(f"/api/v1/approvals/{asked.json()['id']}/approve")
    assert own.status_code == 409 and "cannot approve" in own.json()["detail"]  # never the one who asked

    approved = approver.post(f"/api/v1/approvals/{asked.json()['id']}/approve")

    assert approved.status_code == 200, approved.text
    told = sorted(m.to for m in _mails(db, north.id) if "your personal data" in m.subject)
    assert told == ["north0@patrons.example", "north1@patrons.example"]
    after = asker.get(f"/api/v1/incidents/{incident.id}/patron-notices").json()
    assert after["prepared"] == [] and sorted(after["sent"]) == sorted(world["patrons"][north.id][:2])
    again = asker.post(f"/api/v1/incidents/{incident.id}/patron-notices/send")
    assert again.status_code == 409, again.text


def test_an_institution_decides_not_to_notify_its_patrons_with_the_reason(db, app, world, issue_token):
    south = world["tenants"][1]
    incident = world["incident"]
    _mark(db, incident)
    officer = _client(app, issue_token(south, permissions={Permission.INCIDENTS_NOTIFY}))
    reason = "Every affected patron was told in person at the desk on the same day."

    declined = officer.post(f"/api/v1/incidents/{incident.id}/patron-notices/declines", json={"reason": reason})

    assert declined.status_code == 200 and declined.json() == {"count": 1}
    listed = officer.get(f"/api/v1/incidents/{incident.id}/patron-notices").json()
    assert listed["not_notified"] == [world["patrons"][south.id][2]] and listed["prepared"] == []
    assert officer.post(f"/api/v1/incidents/{incident.id}/patron-notices/send").status_code == 409
    empty = officer.post(f"/api/v1/incidents/{incident.id}/patron-notices/declines", json={"reason": " "})
    assert empty.status_code == 422


def test_a_breach_marking_refuses_bad_targets_and_changes_nothing(db, world):
    incident = world["incident"]
    with pytest.raises(InvalidInput, match="not an IP address"):
        _mark(db, incident, targets=[BreachTarget("address", "not-an-address")])
    with pytest.raises(NotFound, match="no institution"):
        _mark(db, incident, targets=[BreachTarget("tenant", str(uuid.uuid4()))])
    with pytest.raises(InvalidInput, match="data"):
        _mark(db, incident, data=["hobbies"])
    with platform_session(db) as session:
        assert service.get(session, incident.id).breach_marked_at is None
    with pytest.raises(NotFound):
        affected.notify_institution(db, HANDLER, uuid.uuid4(), world["tenants"][0].id)


def test_an_erased_patron_leaves_no_trace_in_the_incident(db, world):
    north = world["tenants"][0]
    _mark(db, world["incident"])
    erased = uuid.UUID(world["patrons"][north.id][0])
    with tenant_session(db, north.id) as session:
        session.execute(text("DELETE FROM patrons WHERE id = :p"), {"p": erased})
    with tenant_session(db, north.id) as session:
        left = (
            session.execute(
                text("SELECT count(*) FROM incident_subjects WHERE patron_id = :p"), {"p": erased}
            ).scalar_one()
            + session.execute(
                text("SELECT count(*) FROM incident_notices WHERE patron_id = :p"), {"p": erased}
            ).scalar_one()
        )
    assert left == 0


def test_an_institution_not_told_by_its_processor_deadline_is_escalated_once(db, world):
    north, south, _ = world["tenants"]
    incident = world["incident"]
    _mark(db, incident, notify=False)
    affected.decline_institution(db, HANDLER, incident.id, south.id, "Only withdrawn card numbers were read.")
    for tenant in (north, south):
        with tenant_session(db, tenant.id) as session:
            session.execute(
                text("UPDATE incident_impacts SET processor_due_at = processor_due_at - interval '25 hours'")
            )

    assert affected.escalate_overdue_notices(db) == [(incident.id, north.id)]  # the declined one is decided
    assert affected.escalate_overdue_notices(db) == []  # once

    with platform_session(db) as session:
        overdue = [e for e in service.timeline_of(session, incident.id) if e.kind == "notice_overdue"]
    assert [e.details["institution"] for e in overdue] == [str(north.id)]
