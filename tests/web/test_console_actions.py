"""The institution console's pages for what was API-only, through the test client: record a disclosure,
release a publisher report, place and lift a legal hold, decide on the patrons' breach notices, read the
entitlement notices mailed. Each form refused without its CSRF token (nothing changed), each page refused
without its permission (403), another institution's ids not found (404), refusals in the service's words."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pyotp
import pytest
from sqlalchemy import select, text

from bookwarden.access.approvals.models import ApprovalRequest
from bookwarden.access.roles import notices
from bookwarden.core.classification import Category
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, PLATFORM_PERMISSIONS, BuiltinRole, Permission
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import tenant_session
from bookwarden.identity import passwords
from bookwarden.incidents import affected
from bookwarden.incidents import service as incidents
from bookwarden.incidents.affected import BreachTarget
from bookwarden.incidents.models import IncidentNotice
from bookwarden.privacy.consent import objections
from bookwarden.privacy.disclosures.models import Disclosure, DisclosureSubject
from bookwarden.privacy.reports.models import PublisherReport
from bookwarden.privacy.retention import holds
from bookwarden.privacy.retention.models import LegalHold
from tests.e2e.people import PASSWORD, staff
from tests.web.consoles import post_form, sign_in, token

DISCLOSURES = "/console/privacy/disclosures"
REPORTS = "/console/privacy/publisher-reports"
HOLDS = "/console/privacy/legal-holds"
CATALOGUE = b"item_id,title,publisher\nitem-9,Beloved,Vintage\nitem-1,Middlemarch,Penguin\n"
OFFICER = [BuiltinRole.PRIVACY_OFFICER]
SECURITY = [BuiltinRole.SECURITY_OFFICER]


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch):
    monkeypatch.setattr(passwords, "DEFAULT", passwords.OWASP_FLOOR)


@pytest.fixture
def person(db, browser):
    def make(tenant, username, roles=()):
        secret = pyotp.random_base32()
        staff(db, tenant.id, username, roles=roles, totp=secret)
        return sign_in(browser(), tenant.slug, username, PASSWORD, secret)

    return make


def _officer(tenant) -> Principal:
    return Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant.id, BUILTIN_PERMISSIONS[BuiltinRole.PRIVACY_OFFICER])


def _patrons(client_for, tenant, n: int = 2) -> list[UUID]:
    client = client_for(tenant, permissions={Permission.PATRONS_WRITE})
    made = []
    for i in range(n):
        answer = client.post("/api/v1/patrons", json={"name": f"Reader {i}", "email": f"r{i}@alpha.example"})
        assert answer.status_code == 201, answer.text
        made.append(UUID(answer.json()["id"]))
    return made


def _breach(db, tenant_id) -> UUID:
    """An incident marked a breach of the institution, with a notice prepared for each of its patrons."""
    handler = Principal(PrincipalKind.OPERATOR_TOKEN, uuid.uuid4(), None, PLATFORM_PERMISSIONS)
    from bookwarden.db.session import platform_session

    with platform_session(db) as session:
        incident = incidents.open_incident(session, handler, title="Stolen session", summary="Used twice")
    affected.triage(db, handler, incident.id, severity="high", category="unauthorised_access",
                    institutions=[tenant_id])  # fmt: skip
    affected.mark_breach(
        db, handler, incident.id, since=datetime.now(UTC) - timedelta(hours=1),
        targets=[BreachTarget("tenant", str(tenant_id))], data=[Category.IDENTITY], measures="Token revoked.",
        contact="incidents@bookwarden.example", notify=True,
    )  # fmt: skip
    return incident.id


def _notices(db, tenant_id, incident_id) -> dict[str, int]:
    with tenant_session(db, tenant_id) as session:
        rows = session.scalars(
            select(IncidentNotice.decision).where(
                IncidentNotice.incident_id == incident_id, IncidentNotice.audience == "patron"
            )
        ).all()
    return {decision: rows.count(decision) for decision in set(rows)}


# -- disclosures -------------------------------------------------------------------------------------------


def _disclosure_form(patron_ids, **changes) -> dict:
    return {
        "recipient": "Metro Analytics Ltd", "kind": "usage_analysis", "purpose": "usage_analysis",
        "basis": "legitimate_interests", "categories": ["circulation_history", "identity"],
        "patron_ids": "\n".join(str(p) for p in patron_ids), **changes,
    }  # fmt: skip


def test_a_disclosure_recorded_on_the_page_leaves_out_the_patron_who_objected(person, tenant, db, client_for):
    ann, bo = _patrons(client_for, tenant)
    with tenant_session(db, tenant.id) as session:
        objections.record_objection(session, bo, "third_party_disclosure", actor=_officer(tenant))
    officer = person(tenant, "pia", OFFICER)
    made = post_form(officer, DISCLOSURES, DISCLOSURES, **_disclosure_form([ann, bo]))
    assert made.status_code == 303, made.text
    detail = officer.get(made.headers["location"])
    assert "Share the data of the patrons listed below, and no others" in detail.text
    assert str(ann) in detail.text and str(bo) not in detail.text
    with tenant_session(db, tenant.id) as session:
        disclosure = session.scalars(select(Disclosure)).one()
        shared = session.scalars(select(DisclosureSubject.patron_id)).all()
    assert (disclosure.recipient, disclosure.refused_count, shared) == ("Metro Analytics Ltd", 1, [ann])
    assert sorted(disclosure.categories) == ["circulation_history", "identity"]


def test_a_refused_disclosure_is_shown_on_the_form_in_the_services_words_and_nothing_is_stored(
    person, tenant, db, client_for
):
    (bo,) = _patrons(client_for, tenant, 1)
    with tenant_session(db, tenant.id) as session:
        objections.record_objection(session, bo, "third_party_disclosure", actor=_officer(tenant))
    officer = person(tenant, "pia", OFFICER)
    everyone_objected = post_form(officer, DISCLOSURES, DISCLOSURES, **_disclosure_form([bo]))
    assert everyone_objected.status_code == 409
    assert 'role="alert"' in everyone_objected.text and "Metro Analytics Ltd" in everyone_objected.text  # kept
    marketing = post_form(officer, DISCLOSURES, DISCLOSURES, **_disclosure_form([bo], purpose="direct_marketing"))
    assert marketing.status_code == 403 and "marketing" in marketing.text
    no_category = post_form(officer, DISCLOSURES, DISCLOSURES, **_disclosure_form([bo], categories=[]))
    assert no_category.status_code == 422 and "categories" in no_category.text
    with tenant_session(db, tenant.id) as session:
        assert session.scalars(select(Disclosure)).all() == []
        # Each refusal shown on the form is in the trail, as the API's handler records it.
        recorded = session.execute(
            text("SELECT details->>'problem' FROM audit_events WHERE action = 'request.failed' "
                 "AND details->>'route' = :route ORDER BY seq"), {"route": DISCLOSURES},
        ).scalars().all()  # fmt: skip
    assert recorded == ["objected", "direct-marketing-refused", "invalid-input"]


# -- publisher reports -------------------------------------------------------------------------------------


def _catalogue(client_for, tenant) -> None:
    loader = client_for(tenant, permissions={Permission.REPORTS_CATALOGUE_MANAGE})
    assert loader.post("/api/v1/reports/catalogue", content=CATALOGUE).status_code == 200


def test_a_publisher_report_is_released_on_the_page_and_read_again_as_csv(person, tenant, db, client_for):
    _catalogue(client_for, tenant)
    officer = person(tenant, "pia", OFFICER)
    released = post_form(officer, REPORTS, REPORTS, publisher="Vintage", first_month="2026-01", months="2")
    assert released.status_code == 303, released.text
    detail = officer.get(released.headers["location"])
    assert detail.status_code == 200 and "Released: this is the report as it left" in detail.text
    assert "2026-01 to 2026-02" in detail.text
    with tenant_session(db, tenant.id) as session:
        report = session.scalars(select(PublisherReport)).one()
    assert (report.publisher, f"{report.first_month:%Y-%m}", f"{report.last_month:%Y-%m}") == (
        "Vintage", "2026-01", "2026-02",
    )  # fmt: skip
    csv = officer.get(f"{REPORTS}/{report.id}/csv")
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert csv.text.startswith("report_id,publisher,row,month")
    assert f'href="{REPORTS}/{report.id}"' in officer.get(REPORTS).text


def test_a_report_of_a_month_not_ended_is_refused_on_the_form(person, tenant, db, client_for):
    _catalogue(client_for, tenant)
    officer = person(tenant, "pia", OFFICER)
    this_month = f"{datetime.now(UTC):%Y-%m}"
    refused = post_form(officer, REPORTS, REPORTS, publisher="Vintage", first_month=this_month, months="1")
    assert refused.status_code == 409 and "must have ended" in refused.text
    assert f'value="{this_month}"' in refused.text  # what was typed stays
    unknown = post_form(officer, REPORTS, REPORTS, publisher="Nobody Press", first_month="2026-01", months="1")
    assert unknown.status_code == 404
    with tenant_session(db, tenant.id) as session:
        assert session.scalars(select(PublisherReport)).all() == []


# -- legal holds -------------------------------------------------------------------------------------------


def test_a_legal_hold_is_placed_listed_and_lifted_on_the_page(person, tenant, db, client_for):
    (ann,) = _patrons(client_for, tenant, 1)
    officer = person(tenant, "pia", OFFICER)
    placed = post_form(officer, HOLDS, HOLDS, patron_id=str(ann), reason="Case 2026-114, County Court")
    assert placed.status_code == 303 and placed.headers["location"].endswith("done=placed")
    listed = officer.get(placed.headers["location"])
    assert "Case 2026-114, County Court" in listed.text and str(ann) in listed.text
    with tenant_session(db, tenant.id) as session:
        assert holds.active_hold(session, ann) is not None
        hold = session.scalars(select(LegalHold)).one()
    a_category = post_form(officer, HOLDS, HOLDS, category="loan_history", reason="Regulator's inquiry 7",
                           held_until="2099-01-01T00:00")  # fmt: skip
    assert a_category.status_code == 303, a_category.text
    lifted = post_form(officer, HOLDS, f"{HOLDS}/{hold.id}/lift")
    assert lifted.status_code == 303 and lifted.headers["location"].endswith("done=lifted")
    with tenant_session(db, tenant.id) as session:
        assert holds.active_hold(session, ann) is None
        category_hold = session.scalars(select(LegalHold).where(LegalHold.category == "loan_history")).one()
        assert category_hold.held_until == datetime(2099, 1, 1, tzinfo=UTC)
    assert "Case 2026-114" not in officer.get(HOLDS).text  # active only, unless asked
    assert "Case 2026-114" in officer.get(HOLDS, params={"ended": "true"}).text
    again = post_form(officer, HOLDS, f"{HOLDS}/{hold.id}/lift")
    assert again.status_code == 409 and "lifted already" in again.text


def test_a_hold_naming_nothing_or_no_patron_of_ours_is_refused_on_the_form(person, tenant, db):
    officer = person(tenant, "pia", OFFICER)
    nothing = post_form(officer, HOLDS, HOLDS, reason="Case 9")
    assert nothing.status_code == 422 and "category" in nothing.text and 'value="Case 9"' in nothing.text
    stranger = post_form(officer, HOLDS, HOLDS, patron_id=str(uuid.uuid4()), reason="Case 9")
    assert stranger.status_code == 404 and "no patron" in stranger.text
    past = post_form(officer, HOLDS, HOLDS, category="loan_history", reason="Case 9", held_until="2001-01-01T00:00")
    assert past.status_code == 409 and "already past" in past.text
    with tenant_session(db, tenant.id) as session:
        assert session.scalars(select(LegalHold)).all() == []


# -- the patrons' breach notices ------------------------------------------------------------------------------


def test_sending_the_breach_notices_takes_a_second_person_and_then_each_patron_is_mailed_once(
    person, tenant, db, client_for
):
    _patrons(client_for, tenant)
    incident_id = _breach(db, tenant.id)
    assert _notices(db, tenant.id, incident_id) == {"prepared": 2}
    first, second = person(tenant, "sam", SECURITY), person(tenant, "sue", SECURITY)
    page = f"/console/incidents/{incident_id}/patron-notices"
    assert f'href="{page}"' in first.get(f"/console/incidents/{incident_id}").text
    shown = first.get(page)
    assert shown.status_code == 200 and "Waiting for your decision" in shown.text
    asked = post_form(first, page, f"{page}/send")
    assert asked.status_code == 303 and asked.headers["location"].endswith("done=asked")
    waiting = first.get(asked.headers["location"]).text
    assert "it waits for a second person" in waiting and f'action="{page}/send"' not in waiting  # asked once
    assert _notices(db, tenant.id, incident_id) == {"prepared": 2}  # nothing leaves on one person's word
    with tenant_session(db, tenant.id) as session:
        approval = session.scalars(select(ApprovalRequest).where(ApprovalRequest.status == "pending")).one()
    own = post_form(first, "/console/approvals", f"/console/approvals/{approval.id}/approve")
    assert own.status_code == 409 and "Segregation of duties" in own.text
    assert _notices(db, tenant.id, incident_id) == {"prepared": 2}
    approved = post_form(second, "/console/approvals", f"/console/approvals/{approval.id}/approve")
    assert approved.status_code == 303, approved.text
    assert _notices(db, tenant.id, incident_id) == {"sent": 2}
    after = first.get(page)
    assert "No notice waits for a decision" in after.text


def test_not_notifying_the_patrons_is_recorded_with_the_reason(person, tenant, db, client_for):
    _patrons(client_for, tenant)
    incident_id = _breach(db, tenant.id)
    officer = person(tenant, "sam", SECURITY)
    page = f"/console/incidents/{incident_id}/patron-notices"
    blank = post_form(officer, page, f"{page}/declines", reason="   ")
    assert blank.status_code == 422 and _notices(db, tenant.id, incident_id) == {"prepared": 2}
    declined = post_form(officer, page, f"{page}/declines", reason="The data was encrypted; the key was not reached.")
    assert declined.status_code == 303
    assert _notices(db, tenant.id, incident_id) == {"not_notified": 2}
    told = officer.get(f"/console/incidents/{incident_id}").text
    assert "The data was encrypted; the key was not reached." in told
    nothing_left = post_form(officer, page, f"{page}/send")
    assert nothing_left.status_code == 409 and "no patron notice is waiting" in nothing_left.text


# -- the entitlement notices mailed --------------------------------------------------------------------------


def test_the_notices_page_lists_each_notice_mailed_to_whom_and_whether_delivered(person, tenant, db):
    with tenant_session(db, tenant.id) as session:
        notices.add_security_contact(session, "soc@alpha.example")
    admin = person(tenant, "ada", [BuiltinRole.TENANT_ADMIN])
    target = staff(db, tenant.id, "bob")
    granted = post_form(admin, "/console/accounts", f"/console/accounts/{target}/roles", role="circulation_staff")
    assert granted.status_code == 303
    page = admin.get("/console/security-contacts").text
    sent = page.split('id="sent"')[1]
    row = next(r for r in sent.split("<tr>") if f"account {target}" in r and "role granted" in r)
    assert "soc@alpha.example" in row and "not yet" in row
    with tenant_session(db, tenant.id) as session:  # the worker delivered it
        session.execute(text("UPDATE outbox SET status = 'sent', sent_at = now(), message_id = '<m@x>'"))
    row = next(r for r in admin.get("/console/security-contacts").text.split('id="sent"')[1].split("<tr>")
               if f"account {target}" in r and "role granted" in r)  # fmt: skip
    assert "yes, " in row


# -- the controls every form keeps ---------------------------------------------------------------------------


def _actions(db, tenant, client_for) -> list[tuple[str, str, dict]]:
    """(page, action, fields) of each new form, with what it needs made first."""
    (ann,) = _patrons(client_for, tenant, 1)
    _catalogue(client_for, tenant)
    incident_id = _breach(db, tenant.id)
    with tenant_session(db, tenant.id) as session:
        hold = holds.place(session, _officer(tenant), reason="Case 1", patron_id=ann)
    notices_page = f"/console/incidents/{incident_id}/patron-notices"
    return [
        (DISCLOSURES, DISCLOSURES, _disclosure_form([ann])),
        (REPORTS, REPORTS, {"publisher": "Vintage", "first_month": "2026-01", "months": "1"}),
        (HOLDS, HOLDS, {"patron_id": str(ann), "reason": "Case 2"}),
        (HOLDS, f"{HOLDS}/{hold.id}/lift", {}),
        (notices_page, f"{notices_page}/send", {}),
        (notices_page, f"{notices_page}/declines", {"reason": "A public notice replaces them."}),
    ]


COUNTS = (
    "SELECT count(*) FROM disclosures",
    "SELECT count(*) FROM publisher_reports",
    "SELECT count(*) FROM legal_holds",
    "SELECT count(*) FROM legal_holds WHERE lifted_at IS NULL",
    "SELECT count(*) FROM approval_requests",
    "SELECT count(*) FROM incident_notices WHERE decision = 'prepared'",
)


def _state(db, tenant) -> tuple:
    """What any of the forms would change, counted."""
    with tenant_session(db, tenant.id) as session:
        return tuple(session.execute(text(query)).scalar_one() for query in COUNTS)


def test_each_form_refuses_a_missing_or_forged_csrf_token_and_changes_nothing(person, tenant, db, client_for):
    actions = _actions(db, tenant, client_for)
    both = person(tenant, "pia", [BuiltinRole.PRIVACY_OFFICER])
    before = _state(db, tenant)
    for page, action, fields in actions:
        assert both.get(page).status_code == 200, page
        real = token(both.get(page))
        for sent in ({}, {"csrf_token": "forged"}, {"csrf_token": real[:-2] + ("xx" if real[-2:] != "xx" else "yy")}):
            answer = both.post(action, data={**fields, **sent}, follow_redirects=False)
            assert answer.status_code == 403 and "not sent from a page of this site" in answer.text, action
    assert _state(db, tenant) == before


def test_each_page_and_form_is_refused_without_its_permission(person, tenant, db, client_for):
    actions = _actions(db, tenant, client_for)
    # The administrator reads incidents and accounts, but holds none of these permissions.
    admin = person(tenant, "ada", [BuiltinRole.TENANT_ADMIN])
    home = admin.get("/console").text
    assert f'href="{HOLDS}"' not in home
    before = _state(db, tenant)
    for page, action, fields in actions:
        assert admin.get(page).status_code == 403, page
        answer = post_form(admin, "/console/accounts", action, **fields)
        assert answer.status_code == 403 and answer.headers["content-type"].startswith("text/html"), action
    assert _state(db, tenant) == before
    officer = person(tenant, "pia", OFFICER)
    assert f'href="{HOLDS}"' in officer.get("/console").text


def test_another_institutions_ids_are_not_found(person, tenant, other_tenant, db, client_for):
    theirs = _actions(db, other_tenant, client_for)
    _catalogue(client_for, other_tenant)
    with tenant_session(db, other_tenant.id) as session:
        hold_id = session.scalars(select(LegalHold.id)).one()
    released = client_for(other_tenant, permissions={Permission.REPORTS_PUBLISHERS}).post(
        "/api/v1/reports/publishers", json={"publisher": "Vintage", "first_month": "2026-01"}
    )
    assert released.status_code == 201, released.text
    report_id = released.json()["report_id"]
    before = _state(db, other_tenant)
    ours = person(tenant, "pia", [BuiltinRole.PRIVACY_OFFICER])
    assert ours.get(f"{REPORTS}/{report_id}").status_code == 404
    assert ours.get(f"{REPORTS}/{report_id}/csv").status_code == 404
    assert post_form(ours, HOLDS, f"{HOLDS}/{hold_id}/lift").status_code == 404
    notices_page = theirs[4][0]
    assert ours.get(notices_page).status_code == 404
    assert post_form(ours, HOLDS, f"{notices_page}/send").status_code == 404
    assert post_form(ours, HOLDS, f"{notices_page}/declines", reason="Not ours to decide").status_code == 404
    assert _state(db, other_tenant) == before
