"""Privacy complaints: registered by the patron or by staff on their behalf, acknowledged by mail within
24 hours, escalated to the complaint handlers when at risk (35 days) or overdue (45 days), closed by
the answer; deadlines stored as data, every transition in the audit trail, other tenants see nothing.

Time moves by rewriting the stored times in SQL, as an old complaint would have them."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from bookwarden import areas
from bookwarden.access.roles.notices import add_security_contact
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, LIBRARY_WRITE, BuiltinRole, Permission
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.identity import passwords
from bookwarden.identity import roles as access
from bookwarden.identity.accounts import service as accounts
from bookwarden.identity.models import AccountKind, AccountStatus
from bookwarden.jobs.models import JobSchedule
from bookwarden.jobs.service import handler_for
from bookwarden.jobs.worker import Worker
from bookwarden.library import records as library
from bookwarden.library.schemas import PatronCreate
from bookwarden.notify.models import OutboxMessage, OutboxStatus
from bookwarden.notify.service import open_mail
from bookwarden.privacy.complaints import jobs as complaint_jobs
from bookwarden.privacy.complaints import service as complaints
from bookwarden.privacy.complaints.models import Complaint
from bookwarden.privacy.complaints.service import SlaState
from tests.e2e.test_notify import smtp_server  # noqa: F401 - the real aiosmtpd server fixture
from tests.helpers import grant, stored_hash

PASSWORD = "violet tractor mango 42 harbour"
SUBJECT = "My loan history was shown to another patron"
BODY = "At the desk on Monday the screen showed my loans to the person behind me."
OFFICER = frozenset(BUILTIN_PERMISSIONS[BuiltinRole.PRIVACY_OFFICER])
DESK = frozenset(BUILTIN_PERMISSIONS[BuiltinRole.CIRCULATION_STAFF])
ME = "/api/v1/privacy/me/complaints"
COMPLAINTS = "/api/v1/privacy/complaints"


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch):
    monkeypatch.setattr(passwords, "DEFAULT", passwords.OWASP_FLOOR)


def _principal(tenant_id, permissions) -> Principal:
    return Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant_id, frozenset(permissions))


def _admin(tenant_id) -> Principal:
    return _principal(tenant_id, BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN])


def _patron(session, name="Ann Patron", email: str | None = "ann.patron@alpha.example") -> uuid.UUID:
    return library.create(session, library.PATRONS, PatronCreate(name=name, email=email)).id


def _account(session, username, *, kind=AccountKind.STAFF, roles=(), email=None, patron_id=None, active=True):
    account = accounts.create_account(
        session, _admin(session.tenant_id), kind=kind, username=username, email=email or f"{username}@alpha.example"
    )
    account.password_hash = stored_hash(PASSWORD, passwords.DEFAULT)
    account.status = AccountStatus.ACTIVE if active else AccountStatus.DISABLED
    account.patron_id = patron_id
    session.flush()
    for role in roles:
        grant(session, session.tenant_id, account.id, role)
    return account


def _mails(session) -> list:
    """Every queued or sent message of the tenant, opened: (to, subject, body, status)."""
    rows = session.scalars(select(OutboxMessage).order_by(OutboxMessage.created_at, OutboxMessage.id)).all()
    return [(m.to, m.subject, m.body, row.status) for row in rows for m in [open_mail(session, row)]]


def _events(session, complaint_id) -> list[tuple[str, str, dict]]:
    return [
        tuple(row)
        for row in session.execute(
            text("SELECT action, actor_kind, details FROM audit_events WHERE target_id = :c ORDER BY seq"),
            {"c": complaint_id},
        )
    ]


def _age(session, complaint_id, by: timedelta) -> None:
    """Make the complaint `by` older: every stored time moves back together."""
    session.execute(
        text(
            """UPDATE complaints SET created_at = created_at - :by, ack_due_at = ack_due_at - :by,
                 at_risk_at = at_risk_at - :by, due_at = due_at - :by,
                 acknowledged_at = acknowledged_at - :by WHERE id = :c"""
        ),
        {"by": by, "c": complaint_id},
    )


def _register(db, tenant_id, **overrides) -> uuid.UUID:
    with tenant_session(db, tenant_id) as session:
        patron_id = overrides.pop("patron_id", None) or _patron(session)
        return complaints.register_for_patron(
            session,
            _principal(tenant_id, DESK),
            patron_id,
            subject=overrides.get("subject", SUBJECT),
            body=overrides.get("body", BODY),
            contact_email=overrides.get("contact_email"),
        ).id


def _deliver_all(db) -> None:
    worker = Worker(db, "complaints")
    while worker.run_one():
        pass


# -- registering -----------------------------------------------------------------------------


def test_a_signed_in_patron_registers_a_complaint_and_its_acknowledgement_is_queued(browser, in_tenant, tenant):
    with in_tenant(tenant) as session:
        patron_id = _patron(session)
        account = _account(session, "ann", kind=AccountKind.PATRON, patron_id=patron_id, roles=[BuiltinRole.PATRON])
    client = browser()
    login = {"institution": "alpha", "username": "ann", "password": PASSWORD}
    assert client.post("/api/v1/auth/login", json=login).status_code == 200

    response = client.post(ME, json={"subject": SUBJECT, "body": BODY})

    assert response.status_code == 201, response.text
    made = response.json()
    assert (made["status"], made["channel"], made["account_id"], made["patron_id"]) == (
        "open",
        "patron",
        str(account.id),
        str(patron_id),
    )
    assert (made["days_remaining"], made["at_risk"], made["overdue"], made["acknowledged_at"]) == (
        45,
        False,
        False,
        None,
    )
    with in_tenant(tenant) as session:
        stored = session.get(Complaint, (tenant.id, uuid.UUID(made["id"])))
        # The deadlines are data, stored with the complaint.
        assert stored.ack_due_at - stored.created_at == timedelta(hours=24)
        assert stored.at_risk_at - stored.created_at == timedelta(days=35)
        assert stored.due_at - stored.created_at == timedelta(days=45)
        [(to, subject, body, status)] = _mails(session)
        assert stored.ack_message_id is not None
        events = _events(session, stored.id)
    assert (to, status) == ("ann@alpha.example", OutboxStatus.QUEUED)  # the account's address
    assert subject == f"[Alpha University] your complaint was received (reference {made['id']})"
    assert SUBJECT in body and "within 45 days" in body
    assert [(action, actor) for action, actor, _ in events] == [("complaint.registered", "account")]
    assert events[0][2]["channel"] == "patron"
    # What the patron wrote is ciphertext in the table.
    with in_tenant(tenant) as session:
        raw = session.execute(
            text("SELECT subject, body, contact_address FROM complaints WHERE id = :c"), {"c": made["id"]}
        )
    for column in raw.one():
        for plaintext in (SUBJECT, BODY, "ann@alpha.example", "Monday"):
            assert plaintext.encode() not in bytes(column)

    mine = client.get(ME).json()["items"]
    assert [c["id"] for c in mine] == [made["id"]]


def test_staff_register_on_a_patrons_behalf_to_the_address_on_file(client_for, tenant, in_tenant):
    desk = client_for(tenant, permissions=DESK | LIBRARY_WRITE)
    patron = desk.post("/api/v1/patrons", json={"name": "Bo Patron", "email": "bo@alpha.example"}).json()

    response = desk.post(COMPLAINTS, json={"patron_id": patron["id"], "subject": SUBJECT, "body": BODY})

    assert response.status_code == 201, response.text
    assert (response.json()["channel"], response.json()["patron_id"]) == ("staff", patron["id"])
    with in_tenant(tenant) as session:
        assert [m[0] for m in _mails(session)] == ["bo@alpha.example"]
    # Desk staff take complaints; they do not read anyone's.
    assert desk.get(COMPLAINTS).status_code == 403
    assert desk.get(f"{COMPLAINTS}/{response.json()['id']}").status_code == 403


def test_a_complaint_needs_an_address_to_answer_to_and_a_patron_of_this_institution(client_for, tenant, in_tenant):
    desk = client_for(tenant, permissions=DESK | LIBRARY_WRITE)
    silent = desk.post("/api/v1/patrons", json={"name": "No Mail"}).json()

    no_address = desk.post(COMPLAINTS, json={"patron_id": silent["id"], "subject": SUBJECT, "body": BODY})
    unknown = desk.post(COMPLAINTS, json={"patron_id": str(uuid.uuid4()), "subject": SUBJECT, "body": BODY})
    given = desk.post(
        COMPLAINTS, json={"patron_id": silent["id"], "subject": SUBJECT, "body": BODY, "contact_email": "nm@x.example"}
    )

    assert no_address.status_code == 422 and "contact_email" in no_address.json()["detail"]
    assert unknown.status_code == 404
    assert given.status_code == 201
    with in_tenant(tenant) as session:
        assert session.scalar(select(Complaint.id)) == uuid.UUID(given.json()["id"])  # the refusals stored nothing
        assert [m[0] for m in _mails(session)] == ["nm@x.example"]


def test_the_patron_route_is_for_a_signed_in_patron_only(client_for, tenant):
    token = client_for(tenant, permissions={Permission.SELF_SERVICE})
    response = token.post(ME, json={"subject": SUBJECT, "body": BODY})
    assert response.status_code == 403
    assert "patron signed in" in response.json()["detail"]


def test_payment_data_is_refused_even_in_a_complaint(client_for, tenant, in_tenant):
    desk = client_for(tenant, permissions=DESK | LIBRARY_WRITE)
    patron = desk.post("/api/v1/patrons", json={"name": "Cy", "email": "cy@alpha.example"}).json()
    body = "You charged my card 4111 1111 1111 1111 twice"
    response = desk.post(COMPLAINTS, json={"patron_id": patron["id"], "subject": SUBJECT, "body": body})
    assert response.status_code == 422
    with in_tenant(tenant) as session:
        assert session.scalar(select(Complaint.id)) is None


# -- acknowledgement over real SMTP ----------------------------------------------------------


def test_the_acknowledgement_arrives_over_smtp_and_the_sla_records_when_it_left(
    committed_db,
    committed_tenant,
    smtp_server,  # noqa: F811
):
    tenant_id = committed_tenant()
    complaint_id = _register(committed_db, tenant_id)

    _deliver_all(committed_db)

    [mail] = smtp_server.messages
    assert mail.recipients == ["ann.patron@alpha.example"]
    assert mail.message["Subject"].endswith(f"your complaint was received (reference {complaint_id})")
    assert SUBJECT in mail.message.get_content() and "List-Unsubscribe" not in mail.message
    officer = _principal(tenant_id, OFFICER)
    with tenant_session(committed_db, tenant_id) as session:
        sent_at = session.scalar(select(OutboxMessage.sent_at))
        # The view reads the time the mail left even before the job has recorded it.
        [shown] = complaints.sla_view(session, officer)
        assert shown.acknowledged_at == sent_at

    report = complaints.process_deadlines(committed_db)
    again = complaints.process_deadlines(committed_db)

    assert (report.acknowledged, report.escalated, again.acknowledged, again.escalated) == (1, 0, 0, 0)
    with tenant_session(committed_db, tenant_id) as session:
        stored = session.get(Complaint, (tenant_id, complaint_id))
        assert stored.acknowledged_at == sent_at <= stored.ack_due_at
        assert [(a, actor, d.get("on_time")) for a, actor, d in _events(session, complaint_id)] == [
            ("complaint.registered", "api_token", None),
            ("complaint.acknowledged", "system", True),
        ]


# -- escalation ------------------------------------------------------------------------------


def test_a_complaint_36_days_old_is_escalated_to_the_handlers_then_overdue_then_answered(
    committed_db,
    committed_tenant,
    smtp_server,  # noqa: F811
):
    tenant_id = committed_tenant()
    admin = _admin(tenant_id)
    with tenant_session(committed_db, tenant_id) as session:
        officer = _account(session, "olga", roles=[BuiltinRole.PRIVACY_OFFICER])
        access.create_role(session, admin, "complaints_desk", {Permission.PRIVACY_COMPLAINTS_HANDLE}, "")
        handler = _account(session, "hal", roles=["complaints_desk"])
        _account(session, "dora", roles=[BuiltinRole.CIRCULATION_STAFF])  # takes complaints, is not told
        _account(session, "gone", roles=[BuiltinRole.PRIVACY_OFFICER], active=False)  # disabled: not told
    complaint_id = _register(committed_db, tenant_id)
    _deliver_all(committed_db)
    complaints.process_deadlines(committed_db)  # records the acknowledgement
    smtp_server.messages.clear()

    with tenant_session(committed_db, tenant_id) as session:
        _age(session, complaint_id, timedelta(days=36))
    at_risk = complaints.process_deadlines(committed_db)
    repeated = complaints.process_deadlines(committed_db)
    _deliver_all(committed_db)

    assert (at_risk.escalated, repeated.escalated) == (1, 0)  # flagged: escalated once
    told = sorted(m.recipients[0] for m in smtp_server.messages)
    assert told == ["hal@alpha.example", "olga@alpha.example"]
    mail = smtp_server.messages[0].message
    assert mail["Subject"] == f"[Committed {_slug(committed_db, tenant_id)}] privacy complaint answer at risk " + (
        f"(reference {complaint_id})"
    )
    content = mail.get_content()
    assert "Days remaining: 9" in content
    assert SUBJECT not in content and BODY not in content  # the text stays in Bookwarden
    reader = _principal(tenant_id, OFFICER)
    with tenant_session(committed_db, tenant_id) as session:
        [shown] = complaints.sla_view(session, reader, SlaState.AT_RISK)
        assert (shown.id, shown.days_remaining, shown.at_risk, shown.overdue) == (complaint_id, 9, True, False)
        assert shown.at_risk_escalated_at is not None and shown.overdue_escalated_at is None
        assert complaints.sla_view(session, reader, SlaState.OVERDUE) == []

    smtp_server.messages.clear()
    with tenant_session(committed_db, tenant_id) as session:
        _age(session, complaint_id, timedelta(days=10))  # 46 days old
    overdue = complaints.process_deadlines(committed_db)
    _deliver_all(committed_db)

    assert overdue.escalated == 1
    assert sorted(m.recipients[0] for m in smtp_server.messages) == ["hal@alpha.example", "olga@alpha.example"]
    assert "answer overdue" in smtp_server.messages[0].message["Subject"]
    with tenant_session(committed_db, tenant_id) as session:
        [shown] = complaints.sla_view(session, reader, SlaState.OVERDUE)
        assert (shown.days_remaining, shown.overdue, shown.at_risk) == (-1, True, False)
        complaints.answer(session, reader, complaint_id, "We have moved the desk screen; sorry for the delay.")
    with tenant_session(committed_db, tenant_id) as session:
        assert complaints.sla_view(session, reader, SlaState.OPEN) == []
        events = _events(session, complaint_id)
    assert [(action, details.get("level")) for action, _, details in events] == [
        ("complaint.registered", None),
        ("complaint.acknowledged", None),
        ("complaint.escalated", "at_risk"),
        ("complaint.escalated", "overdue"),
        ("complaint.answered", None),
    ]
    assert sorted(events[2][2]["notified_accounts"]) == sorted([str(officer.id), str(handler.id)])
    assert events[4][2]["on_time"] is False


def _slug(db, tenant_id) -> str:
    from bookwarden.tenancy.service import get_tenant

    with platform_session(db) as session:
        return get_tenant(session, tenant_id).slug


def test_an_acknowledgement_not_sent_in_24_hours_is_escalated_to_the_security_contacts_when_nobody_handles(db, tenant):
    with tenant_session(db, tenant.id) as session:
        add_security_contact(session, "soc@alpha.example")
    complaint_id = _register(db, tenant.id)
    with tenant_session(db, tenant.id) as session:
        _age(session, complaint_id, timedelta(hours=25))  # and no worker ever delivered the acknowledgement

    # The worker's duty, as the worker finds it: declared hourly, run by its registered handler.
    assert complaint_jobs in areas.modules("jobs")
    complaint_jobs.declare_schedules(db)
    handler_for(complaints.DEADLINES)(db, {})

    with platform_session(db) as session:
        assert session.get(JobSchedule, complaints.DEADLINES).every_seconds == 3600
    with tenant_session(db, tenant.id) as session:
        stored = session.get(Complaint, (tenant.id, complaint_id))
        assert stored.ack_escalated_at is not None and stored.acknowledged_at is None
        escalations = [m for m in _mails(session) if "privacy complaint" in m[1]]
        [(_, _, details)] = [e for e in _events(session, complaint_id) if e[0] == "complaint.escalated"]
    assert [(m[0], "acknowledgement not sent" in m[1]) for m in escalations] == [("soc@alpha.example", True)]
    assert (details["level"], details["notified_accounts"], details["security_contacts_notified"]) == (
        "unacknowledged",
        [],
        1,
    )


# -- answering and reading -------------------------------------------------------------------


def test_answering_closes_the_complaint_and_mails_the_answer(client_for, tenant, in_tenant, db):
    complaint_id = _register(db, tenant.id, contact_email="reply@alpha.example")
    officer = client_for(tenant, permissions=OFFICER)

    answered = officer.post(f"{COMPLAINTS}/{complaint_id}/answer", json={"answer": "We have moved the screen."})
    twice = officer.post(f"{COMPLAINTS}/{complaint_id}/answer", json={"answer": "Again."})

    assert answered.status_code == 200, answered.text
    body = answered.json()
    assert (body["status"], body["days_remaining"], body["at_risk"], body["overdue"]) == (
        "answered",
        None,
        False,
        False,
    )
    assert body["answered_at"] is not None
    assert twice.status_code == 409
    detail = officer.get(f"{COMPLAINTS}/{complaint_id}").json()
    assert (detail["subject"], detail["body"], detail["contact_email"], detail["answer"]) == (
        SUBJECT,
        BODY,
        "reply@alpha.example",
        "We have moved the screen.",
    )
    assert officer.get(COMPLAINTS).json()["items"] == []
    assert [c["id"] for c in officer.get(COMPLAINTS, params={"state": "answered"}).json()["items"]] == [
        str(complaint_id)
    ]
    with in_tenant(tenant) as session:
        mails = _mails(session)
        actions = [action for action, _, _ in _events(session, complaint_id)]
    # Acknowledgement and answer, both to the address given (queued in one test transaction: any order).
    [answer_mail] = [m for m in mails if "answer to your complaint" in m[1]]
    assert [m[0] for m in mails] == ["reply@alpha.example"] * 2
    assert "We have moved the screen." in answer_mail[2]
    assert actions == ["complaint.registered", "complaint.answered", "complaint.viewed"]


def test_another_institution_can_neither_see_nor_answer_it(client_for, tenant, other_tenant, db, in_tenant):
    complaint_id = _register(db, tenant.id)
    theirs = client_for(other_tenant, permissions=OFFICER)

    seen = theirs.get(f"{COMPLAINTS}/{complaint_id}")
    answered = theirs.post(f"{COMPLAINTS}/{complaint_id}/answer", json={"answer": "Not ours to answer."})
    listed = theirs.get(COMPLAINTS, params={"state": "all"})

    assert (seen.status_code, answered.status_code) == (404, 404)
    assert seen.json()["title"] == theirs.get(f"{COMPLAINTS}/{uuid.uuid4()}").json()["title"]
    assert listed.json()["items"] == []
    with in_tenant(tenant) as session:
        assert session.get(Complaint, (tenant.id, complaint_id)).status == "open"
        assert [m[0] for m in _mails(session)] == ["ann.patron@alpha.example"]  # no answer went out


def test_the_sla_view_lists_by_state_with_days_remaining(client_for, tenant, db):
    fresh, old, late = (_register(db, tenant.id) for _ in range(3))
    with tenant_session(db, tenant.id) as session:
        _age(session, old, timedelta(days=40))
        _age(session, late, timedelta(days=50))
    officer = client_for(tenant, permissions=OFFICER)

    def listed(state):
        items = officer.get(COMPLAINTS, params={"state": state}).json()["items"]
        return [(c["id"], c["days_remaining"]) for c in items]

    assert listed("open") == [(str(late), -5), (str(old), 5), (str(fresh), 45)]  # most urgent first
    assert listed("at_risk") == [(str(old), 5)]
    assert listed("overdue") == [(str(late), -5)]
    assert listed("answered") == []
    assert officer.get(COMPLAINTS, params={"state": "late"}).status_code == 422
