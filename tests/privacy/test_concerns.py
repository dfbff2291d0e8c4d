"""Concerns: anyone reports suspected unauthorised access to an account, or that a child's data is held. A
report is stored sealed, recorded, and reaches the institution at once (its security contacts and those who
handle concerns); staff with the permission list and read them; another institution sees nothing; the open
form is throttled per network address and screened for payment data; the incidents hook can open an incident."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select, text

from bookwarden.access.roles.notices import add_security_contact
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, BuiltinRole, Permission
from bookwarden.db.session import tenant_session
from bookwarden.identity import passwords
from bookwarden.identity.models import AccountKind
from bookwarden.notify.models import OutboxMessage
from bookwarden.notify.service import open_mail
from bookwarden.privacy.concerns import service as concerns
from bookwarden.privacy.concerns.models import Concern
from tests.helpers import fresh_address
from tests.privacy.test_complaints import PASSWORD, _account, _patron
from tests.privacy.test_self_registration import browser

FORM = "/api/v1/privacy/concerns/form"
ME = "/api/v1/privacy/me/concerns"
CONCERNS = "/api/v1/privacy/concerns"
SECURITY = frozenset(BUILTIN_PERMISSIONS[BuiltinRole.SECURITY_OFFICER])
TOLD = "Someone read my loans: my account shows a sign-in from a town I have never been to."


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch):
    monkeypatch.setattr(passwords, "DEFAULT", passwords.OWASP_FLOOR)


def report(slug: str, **overrides) -> dict:
    return {"institution": slug, "kind": "unauthorised_access", "description": TOLD,
            "contact_email": "worried@example.org", **overrides}  # fmt: skip


def _mails(session) -> list[tuple[str, str, str]]:
    """The reports' mail (not the role-change notices the fixtures cause): (to, subject, body), by address."""
    opened = [open_mail(session, row) for row in session.scalars(select(OutboxMessage))]
    return sorted((m.to, m.subject, m.body) for m in opened if "report of" in m.subject)


def test_an_anonymous_report_is_stored_sealed_and_reaches_the_institutions_security_and_privacy_staff(
    app, client_for, tenant, other_tenant, in_tenant
):
    with in_tenant(tenant) as session:
        add_security_contact(session, "security@alpha.example")
        _account(session, "olga", roles=[BuiltinRole.PRIVACY_OFFICER])  # olga@alpha.example
        _account(session, "desk", roles=[BuiltinRole.CIRCULATION_STAFF])  # handles no concerns: not told
    with in_tenant(other_tenant) as session:
        add_security_contact(session, "security@beta.example")

    sent = browser(app).post(FORM, json=report(tenant.slug, kind="child_data"))

    assert sent.status_code == 201, sent.text
    reference = sent.json()["reference"]
    with in_tenant(tenant) as session:
        mails = _mails(session)
        raw = session.execute(text("SELECT description, contact_address FROM privacy_concerns")).one()
        [event] = session.execute(
            text("SELECT details FROM audit_events WHERE action = 'concern.reported' AND target_id = :c"),
            {"c": reference},
        ).scalars()
    assert [to for to, _, _ in mails] == ["olga@alpha.example", "security@alpha.example"]
    assert all(reference in subject and "child" in subject for _, subject, _ in mails)
    assert all(TOLD not in body and "worried@example.org" not in body for _, _, body in mails)  # read signed in
    for column in raw:
        assert TOLD.encode() not in bytes(column) and b"worried@example.org" not in bytes(column)
    assert (event["kind"], event["channel"], event["notified"], event["incident_id"]) == (
        "child_data",
        "anonymous",
        2,
        None,
    )
    with in_tenant(other_tenant) as session:
        assert _mails(session) == []

    staff = client_for(tenant, permissions=SECURITY)
    assert [c["id"] for c in staff.get(CONCERNS).json()["items"]] == [reference]
    opened = staff.get(f"{CONCERNS}/{reference}").json()
    assert (opened["description"], opened["contact_email"], opened["kind"]) == (
        TOLD,
        "worried@example.org",
        "child_data",
    )

    # Another institution's staff, with the same permission, see nothing of it.
    theirs = client_for(other_tenant, permissions=SECURITY)
    assert theirs.get(CONCERNS).json()["items"] == []
    assert theirs.get(f"{CONCERNS}/{reference}").status_code == 404
    # Without the permission: refused.
    assert client_for(tenant, permissions={Permission.PATRONS_READ}).get(CONCERNS).status_code == 403


def test_the_open_form_is_throttled_per_address_and_refuses_payment_data(app, tenant, in_tenant):
    address = fresh_address()
    from fastapi.testclient import TestClient

    same = TestClient(app, client=(address, 50000), raise_server_exceptions=False)
    answers = [same.post(FORM, json=report(tenant.slug)).status_code for _ in range(6)]
    assert answers[:5] == [201] * 5 and answers[5] == 429
    assert int(same.post(FORM, json=report(tenant.slug)).headers["Retry-After"]) > 0
    assert browser(app).post(FORM, json=report(tenant.slug)).status_code == 201  # another address is not held up

    card = browser(app).post(FORM, json=report(tenant.slug, description="My card 4111 1111 1111 1111 was shown"))
    assert card.status_code == 422 and card.json()["type"].endswith("sensitive-data-refused")
    assert browser(app).post(FORM, json=report("no-such-library")).status_code == 404
    assert browser(app).post(FORM, json=report(tenant.slug, contact_email="not an address")).status_code == 422
    with in_tenant(tenant) as session:
        assert session.scalar(select(func.count()).select_from(Concern)) == 6  # five, and the other address's


def test_a_signed_in_patron_reports_and_is_answered_at_their_accounts_address(browser, client_for, tenant, in_tenant):
    with in_tenant(tenant) as session:
        patron_id = _patron(session)
        account = _account(session, "ann", kind=AccountKind.PATRON, patron_id=patron_id, roles=[BuiltinRole.PATRON])
    client = browser()
    login = {"institution": tenant.slug, "username": "ann", "password": PASSWORD}
    assert client.post("/api/v1/auth/login", json=login).status_code == 200

    made = client.post(ME, json={"kind": "unauthorised_access", "description": TOLD})

    assert made.status_code == 201, made.text
    opened = client_for(tenant, permissions=SECURITY).get(f"{CONCERNS}/{made.json()['reference']}").json()
    assert (opened["channel"], opened["account_id"], opened["contact_email"]) == (
        "patron",
        str(account.id),
        "ann@alpha.example",
    )
    # Staff credentials are not a patron's own account: the patron route refuses them.
    token = client_for(tenant, permissions={Permission.SELF_SERVICE})
    assert token.post(ME, json={"kind": "child_data", "description": TOLD}).status_code == 403


def test_the_incidents_hook_opens_an_incident_from_a_report_in_its_transaction(db, tenant, in_tenant, monkeypatch):
    opened: list[uuid.UUID] = []

    def open_incident(session, concern) -> uuid.UUID:
        opened.append(concern.id)
        return uuid.UUID(int=7)

    monkeypatch.setattr(concerns, "_incident_openers", [])
    concerns.register_incident_opener(open_incident)
    received = concerns.report_anonymous(
        db, institution=tenant.slug, kind="child_data", description=TOLD, contact_email="a@example.org",
        source_address=fresh_address(),
    )  # fmt: skip
    assert opened == [received.reference]
    with tenant_session(db, tenant.id) as session:
        assert session.get(Concern, (tenant.id, received.reference)).incident_id == uuid.UUID(int=7)


def test_reports_are_forgotten_two_years_after_they_were_received_in_every_institution(
    db, tenant, other_tenant, in_tenant
):
    from bookwarden.core.principal import SYSTEM
    from bookwarden.privacy.concerns.jobs import RECEIVED_CONCERNS
    from bookwarden.tenancy.periods import enforce

    ids = {}
    for t in (tenant, other_tenant):
        for age in ("731 days", "729 days"):
            received = concerns.report_anonymous(
                db, institution=t.slug, kind="unauthorised_access", description=TOLD, contact_email="a@example.org",
                source_address=fresh_address(),
            )  # fmt: skip
            ids[(t.slug, age)] = received.reference
            with tenant_session(db, t.id) as session:
                session.execute(
                    text("UPDATE privacy_concerns SET received_at = now() - CAST(:age AS interval) WHERE id = :c"),
                    {"c": received.reference, "age": age},
                )
    removed = enforce(db, RECEIVED_CONCERNS, actor=SYSTEM)
    assert (removed[tenant.id], removed[other_tenant.id]) == (1, 1)
    for t in (tenant, other_tenant):
        with tenant_session(db, t.id) as session:
            left = set(session.scalars(select(Concern.id)))
        assert left == {ids[(t.slug, "729 days")]}
