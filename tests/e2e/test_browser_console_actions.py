"""In a real browser: the institution console's pages for what was API-only.

- a privacy officer records a disclosure (the patron who objected is left out), releases a publisher report
  (and is refused one for a month not over), places a legal hold and lifts it;
- the same with JavaScript off: a hold placed and lifted by plain forms;
- a security officer asks to send the breach notices to the patrons affected, a second one approves them in
  Approvals and the patrons' mail reaches the SMTP server; on another incident the first decides not to
  notify, with the reason; the contacts' page lists the entitlement notices mailed, delivered.

axe-core on every page (no serious or critical violation), screenshots in test-artifacts/.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from sqlalchemy import select

from bookwarden.access.roles import notices
from bookwarden.core.classification import Category
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, PLATFORM_PERMISSIONS, BuiltinRole
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.identity import passwords
from bookwarden.incidents import affected
from bookwarden.incidents import service as incidents
from bookwarden.incidents.affected import BreachTarget
from bookwarden.incidents.models import IncidentNotice
from bookwarden.jobs.worker import Worker
from bookwarden.library import records
from bookwarden.library import service as library
from bookwarden.library.schemas import PatronCreate
from bookwarden.privacy.consent import objections
from bookwarden.privacy.disclosures.models import Disclosure, DisclosureSubject
from bookwarden.privacy.reports import catalogue
from bookwarden.privacy.reports.models import PublisherReport
from bookwarden.privacy.retention.models import LegalHold
from tests.e2e.people import sign_in_staff, slug_of, staff
from tests.e2e.test_notify import smtp_server  # noqa: F401 - fixture

CONTACT = "soc@alpha.example"
CATALOGUE = b"item_id,title,publisher\nitem-9,Beloved,Vintage\nitem-1,Middlemarch,Penguin\n"


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch):
    monkeypatch.setattr(passwords, "DEFAULT", passwords.OWASP_FLOOR)


def _person(site, tenant_id, username: str, role: BuiltinRole) -> str:
    secret = pyotp.random_base32()
    staff(site.db, tenant_id, username, roles=[role], totp=secret)
    return secret


def _officer(tenant_id) -> Principal:
    return Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant_id, BUILTIN_PERMISSIONS[BuiltinRole.PRIVACY_OFFICER])


def _email(name: str) -> str:
    return f"{name.split()[0].lower()}@alpha.example"


def _patrons(db, tenant_id, names) -> list[uuid.UUID]:
    clerk = Principal(
        PrincipalKind.API_TOKEN, uuid.uuid4(), tenant_id, BUILTIN_PERMISSIONS[BuiltinRole.CIRCULATION_STAFF]
    )
    with tenant_session(db, tenant_id) as session:
        return [
            library.create(
                session,
                clerk,
                records.PATRONS,
                PatronCreate(name=name, email=f"{name.split()[0].lower()}@alpha.example"),
            ).id
            for name in names
        ]


def _deliver_all(db) -> None:
    worker = Worker(db, "browser-test")
    for _ in range(50):
        if not worker.run_one():
            return


def _menu(page, label: str) -> None:
    page.get_by_role("navigation", name="Institution console").get_by_role("link", name=label).click()
    page.wait_for_load_state()


def test_a_privacy_officer_records_a_disclosure_releases_a_report_and_holds_data(
    site, committed_tenant, page, axe, shot
):
    tenant_id = committed_tenant()
    slug = slug_of(site.db, tenant_id)
    grace, alan = _patrons(site.db, tenant_id, ["Grace Hopper", "Alan Turing"])
    with tenant_session(site.db, tenant_id) as session:
        objections.record_objection(session, alan, "third_party_disclosure", actor=_officer(tenant_id))
    _load_catalogue(site.db, tenant_id)
    secret = _person(site, tenant_id, "pia", BuiltinRole.PRIVACY_OFFICER)
    sign_in_staff(page, site.url, slug, "pia", secret)

    # A disclosure: recorded before the data leaves; the patron who objected is left out.
    _menu(page, "Disclosures")
    page.get_by_label("Recipient").fill("Metro Analytics Ltd")
    page.get_by_label("Kind").select_option("usage_analysis")
    page.get_by_label("Purpose").fill("usage_analysis")
    page.get_by_label("Legal basis").select_option("legitimate_interests")
    page.get_by_label("circulation history").check()
    page.get_by_role("textbox", name="Patrons their ids").fill(f"{grace}\n{alan}")
    axe(page)
    shot(page, "disclosure-form")
    page.get_by_role("button", name="Record the disclosure").click()
    page.wait_for_url(re.compile(r"/console/privacy/disclosures/[0-9a-f-]+\?done=recorded"))
    assert "and no others" in page.locator("[role=status]").inner_text()
    shared = page.locator("main table").inner_text()
    assert str(grace) in shared and str(alan) not in shared
    axe(page)
    shot(page, "disclosure-recorded")
    with tenant_session(site.db, tenant_id) as session:
        disclosure = session.scalars(select(Disclosure)).one()
        assert (disclosure.recipient, disclosure.refused_count) == ("Metro Analytics Ltd", 1)
        assert session.scalars(select(DisclosureSubject.patron_id)).all() == [grace]

    # A publisher report: released, read again; a month not over is refused in plain words.
    _menu(page, "Publisher reports")
    page.get_by_label("Publisher").fill("Vintage")
    page.get_by_label("First month").fill("2026-01")
    page.get_by_label("Months").fill("2")
    axe(page)
    shot(page, "report-form")
    page.get_by_role("button", name="Release the report").click()
    page.wait_for_url(re.compile(r"/console/privacy/publisher-reports/[0-9a-f-]+\?done=released"))
    assert "2026-01 to 2026-02" in page.locator("main dl").inner_text()
    assert page.get_by_role("link", name="Download as CSV").is_visible()
    axe(page)
    shot(page, "report-released")
    with tenant_session(site.db, tenant_id) as session:
        assert session.scalars(select(PublisherReport.publisher)).all() == ["Vintage"]
    _menu(page, "Publisher reports")
    page.get_by_label("Publisher").fill("Vintage")
    page.get_by_label("First month").fill(f"{datetime.now(UTC):%Y-%m}")
    page.get_by_role("button", name="Release the report").click()
    page.wait_for_load_state()
    assert "must have ended" in page.locator("[role=alert]").inner_text()
    axe(page)
    shot(page, "report-refused")
    with tenant_session(site.db, tenant_id) as session:
        assert len(session.scalars(select(PublisherReport)).all()) == 1

    # A legal hold on Grace's data: placed, listed, lifted.
    _menu(page, "Legal holds")
    page.get_by_label("Patron", exact=False).and_(page.locator("#patron_id")).fill(str(grace))
    page.get_by_label("The matter").fill("Case 2026-114, County Court")
    page.get_by_role("button", name="Place the hold").click()
    page.wait_for_url(re.compile(r"done=placed"))
    assert "Case 2026-114" in page.locator("main table").inner_text()
    axe(page)
    shot(page, "hold-placed")
    page.once("dialog", lambda dialog: dialog.accept())  # the button asks before it acts
    page.get_by_role("button", name="Lift the hold for Case 2026-114, County Court").click()
    page.wait_for_url(re.compile(r"done=lifted"))
    assert "No hold is active" in page.locator("main table").inner_text()
    axe(page)
    shot(page, "hold-lifted")
    with tenant_session(site.db, tenant_id) as session:
        hold = session.scalars(select(LegalHold)).one()
        assert hold.patron_id == grace and hold.lifted_at is not None


def _load_catalogue(db, tenant_id) -> None:
    loader = Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant_id, BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN])
    with tenant_session(db, tenant_id) as session:
        catalogue.load(session, loader, CATALOGUE)


def test_a_hold_is_placed_and_lifted_with_javascript_off(site, committed_tenant, chromium, shot):
    tenant_id = committed_tenant()
    slug = slug_of(site.db, tenant_id)
    (grace,) = _patrons(site.db, tenant_id, ["Grace Hopper"])
    secret = _person(site, tenant_id, "pia", BuiltinRole.PRIVACY_OFFICER)
    context = chromium.new_context(viewport={"width": 1100, "height": 800}, locale="en-GB", java_script_enabled=False)
    page = context.new_page()
    try:
        sign_in_staff(page, site.url, slug, "pia", secret)
        page.goto(f"{site.url}/console/privacy/legal-holds")
        page.locator("#patron_id").fill(str(grace))
        page.get_by_role("combobox", name="Category").select_option("loan_history")
        page.get_by_label("The matter").fill("Regulator's inquiry 7")
        page.get_by_role("button", name="Place the hold").click()
        page.wait_for_url(re.compile(r"done=placed"))
        shot(page, "hold-placed-without-javascript")
        page.get_by_role("button", name="Lift the hold for Regulator's inquiry 7").click()  # no question asked
        page.wait_for_url(re.compile(r"done=lifted"))
        shot(page, "hold-lifted-without-javascript")
    finally:
        context.close()
    with tenant_session(site.db, tenant_id) as session:
        hold = session.scalars(select(LegalHold)).one()
        assert (hold.patron_id, hold.category, hold.lifted_at is not None) == (grace, "loan_history", True)


def _breach(db, tenant_id) -> uuid.UUID:
    handler = Principal(PrincipalKind.OPERATOR_TOKEN, uuid.uuid4(), None, PLATFORM_PERMISSIONS)
    with platform_session(db) as session:
        incident = incidents.open_incident(
            session, handler, title="Session used from two countries", summary="One staff session, two places"
        )
    affected.triage(db, handler, incident.id, severity="high", category="unauthorised_access",
                    institutions=[tenant_id])  # fmt: skip
    affected.mark_breach(
        db, handler, incident.id, since=datetime.now(UTC) - timedelta(hours=2),
        targets=[BreachTarget("tenant", str(tenant_id))], data=[Category.IDENTITY, Category.CONTACT],
        measures="The session was revoked and the password reset.", contact="security@bookwarden.example",
        notify=True,
    )  # fmt: skip
    return incident.id


def _decisions(db, tenant_id, incident_id) -> list[str]:
    with tenant_session(db, tenant_id) as session:
        return sorted(
            session.scalars(
                select(IncidentNotice.decision).where(
                    IncidentNotice.incident_id == incident_id, IncidentNotice.audience == "patron"
                )
            )
        )


def test_security_officers_send_the_breach_notices_in_two_and_the_contacts_page_lists_the_notices_mailed(
    site,
    committed_tenant,
    chromium,
    page,
    axe,
    shot,
    smtp_server,  # noqa: F811 - the fixture imported above
):
    tenant_id = committed_tenant()
    slug = slug_of(site.db, tenant_id)
    with tenant_session(site.db, tenant_id) as session:
        notices.add_security_contact(session, CONTACT)
    _patrons(site.db, tenant_id, ["Grace Hopper", "Alan Turing"])
    sent_one, declined_one = _breach(site.db, tenant_id), _breach(site.db, tenant_id)
    first = _person(site, tenant_id, "sam", BuiltinRole.SECURITY_OFFICER)
    second = _person(site, tenant_id, "sue", BuiltinRole.SECURITY_OFFICER)

    sign_in_staff(page, site.url, slug, "sam", first)
    page.goto(f"{site.url}/console/incidents/{sent_one}")
    page.get_by_role("link", name="Notices to the patrons affected").click()
    page.wait_for_url(re.compile(r"/patron-notices$"))
    axe(page)
    shot(page, "patron-notices")
    page.get_by_role("button", name="Ask to send the notices").click()
    page.wait_for_url(re.compile(r"done=asked"))
    assert "waits for a second person" in page.locator("main").inner_text()
    axe(page)
    shot(page, "sending-asked")
    assert _decisions(site.db, tenant_id, sent_one) == ["prepared", "prepared"]

    other = chromium.new_context(viewport={"width": 1100, "height": 800}, locale="en-GB")
    checker = other.new_page()
    try:
        sign_in_staff(checker, site.url, slug, "sue", second)
        checker.goto(f"{site.url}/console/approvals")
        assert "send breach notices" in checker.locator("main table").first.inner_text()
        checker.get_by_role("button", name="Approve").click()
        checker.wait_for_url(re.compile(r"done=approved"))
        axe(checker)
        shot(checker, "sending-approved-by-a-second-officer")
    finally:
        other.close()
    assert _decisions(site.db, tenant_id, sent_one) == ["sent", "sent"]

    page.goto(f"{site.url}/console/incidents/{declined_one}/patron-notices")
    page.get_by_label("Why the patrons are not notified").fill("A public notice on the library's site replaces them.")
    page.get_by_role("button", name="Record: not notified").click()
    page.wait_for_url(re.compile(r"done=declined"))
    axe(page)
    shot(page, "not-notified")
    assert _decisions(site.db, tenant_id, declined_one) == ["not_notified", "not_notified"]
    page.goto(f"{site.url}/console/incidents/{declined_one}")
    assert "A public notice on the library's site replaces them." in page.locator("main table").inner_text()

    _deliver_all(site.db)
    told = {r for m in smtp_server.messages for r in m.recipients}
    assert {"grace@alpha.example", "alan@alpha.example", CONTACT} <= told

    _menu(page, "Contacts, notices and mutes")
    sent = page.locator("table[aria-labelledby=sent]").inner_text()
    assert "role granted" in sent and CONTACT in sent and "yes, " in sent
    axe(page)
    shot(page, "entitlement-notices-mailed")
