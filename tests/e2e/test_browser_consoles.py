"""In a real browser: the institution console and the operator console.

- an administrator invites an account and grants it a role; the entitlement notice reaches the security
  contact through the real SMTP server;
- an operator asks an institution for a grant, an administrator approves it, the operator reads the
  institution's patrons through it, the grant runs out and the door closes;
- axe-core finds no serious or critical violation on any console page.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from sqlalchemy import text

from bookwarden.access.approvals import service as approvals
from bookwarden.access.approvals.models import SensitiveAction
from bookwarden.access.grants import service as grants
from bookwarden.access.grants.models import GrantScope
from bookwarden.access.roles import notices
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, BuiltinRole, Permission
from bookwarden.core.principal import SYSTEM, Principal, PrincipalKind
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.identity import passwords
from bookwarden.incidents import affected
from bookwarden.incidents import service as incidents
from bookwarden.incidents.affected import BreachTarget
from bookwarden.jobs.worker import Worker
from bookwarden.library import records
from bookwarden.library import service as library
from bookwarden.library.schemas import PatronCreate
from bookwarden.monitor.alerts.service import raise_alert
from bookwarden.monitor.response import blocks
from bookwarden.monitor.response.addresses import parse_network
from bookwarden.privacy.complaints import service as complaints
from bookwarden.privacy.requests import service as privacy_requests
from bookwarden.privacy.requests.models import RequestKind
from tests.e2e.people import sign_in_staff, slug_of, staff
from tests.e2e.test_notify import smtp_server  # noqa: F401 - fixture
from tests.web.consoles import OPERATOR_PASSWORD, operator_enrolled

CONTACT = "soc@alpha.example"


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch):
    monkeypatch.setattr(passwords, "DEFAULT", passwords.OWASP_FLOOR)


def _administrator(site, tenant_id, username="ada") -> str:
    secret = pyotp.random_base32()
    staff(site.db, tenant_id, username, roles=[BuiltinRole.TENANT_ADMIN], totp=secret)
    return secret


def _deliver_all(db) -> None:
    worker = Worker(db, "browser-test")
    for _ in range(50):
        if not worker.run_one():
            return


def test_an_administrator_invites_an_account_grants_a_role_and_the_contact_is_told(
    site,
    committed_tenant,
    page,
    axe,
    shot,
    smtp_server,  # noqa: F811 - the fixture imported above
):
    tenant_id = committed_tenant()
    slug = slug_of(site.db, tenant_id)
    with tenant_session(site.db, tenant_id) as session:
        notices.add_security_contact(session, CONTACT)
    secret = _administrator(site, tenant_id)

    sign_in_staff(page, site.url, slug, "ada", secret)
    page.goto(f"{site.url}/console")
    axe(page)
    shot(page, "console-home")
    page.get_by_role("navigation", name="Institution console").get_by_role("link", name="Accounts and roles").click()
    page.wait_for_url(re.compile(r"/console/accounts$"))
    axe(page)
    page.get_by_label("Kind").select_option("staff")
    page.get_by_label("Username").fill("marta")
    page.get_by_label("Email address").fill("marta@alpha.example")
    page.get_by_label("Name", exact=False).and_(page.locator("#display_name")).fill("Marta Lindqvist")
    shot(page, "invite-form")
    page.get_by_role("button", name="Create and send the invitation").click()
    page.wait_for_url(re.compile(r"/console/accounts/[0-9a-f-]+\?done=created"))
    marta = re.search(r"/console/accounts/([0-9a-f-]+)", page.url).group(1)
    assert "invitation to set a password is on its way" in page.locator("[role=status]").inner_text()
    axe(page)
    shot(page, "account-created")

    page.get_by_label("Grant a role").select_option("circulation_staff")
    page.get_by_role("button", name="Grant", exact=True).click()
    page.wait_for_url(re.compile(r"done=granted"))
    assert "Role granted" in page.locator("[role=status]").inner_text()
    assert page.get_by_role("button", name="Revoke circulation_staff").is_visible()
    shot(page, "role-granted")

    # An administrative role next to one that must stay apart: the service's refusal, in its words.
    page.get_by_label("Grant a role").select_option("auditor")
    page.get_by_role("button", name="Grant", exact=True).click()
    page.wait_for_load_state()
    assert "Segregation of duties" in page.locator("h1").inner_text() or "asked" in page.url
    shot(page, "auditor-asked-or-refused")

    _deliver_all(site.db)
    told = [m for m in smtp_server.messages if CONTACT in m.recipients]
    subjects = [m.message["Subject"] for m in told]
    assert any("security notice: role granted" in s for s in subjects), subjects
    assert any("security notice: account created" in s for s in subjects), subjects
    about_marta = [m.message.get_content() for m in told if f"account {marta}" in m.message.get_content()]
    body = next(b for b in about_marta if "What happened: role granted" in b)
    assert "role: circulation_staff" in body
    assert re.search(r"Changed by: account [0-9a-f-]{36}\r?\n", body)


def test_an_operator_asks_an_administrator_approves_the_operator_reads_and_the_grant_runs_out(
    site, committed_tenant, chromium, page, axe, shot
):
    tenant_id = committed_tenant()
    slug = slug_of(site.db, tenant_id)
    with tenant_session(site.db, tenant_id) as session:
        notices.add_security_contact(session, CONTACT)
        clerk = Principal(
            PrincipalKind.API_TOKEN,
            uuid.uuid4(),
            tenant_id,
            BUILTIN_PERMISSIONS[BuiltinRole.CIRCULATION_STAFF],
        )
        patron = PatronCreate(name="Grace Hopper", email="grace@alpha.example", affiliation="staff")
        library.create(session, clerk, records.PATRONS, patron)
    secret = _administrator(site, tenant_id)
    totp = operator_enrolled(site.db, "olga.ops", "operator_support")

    # The operator, in a browser of their own.
    page.goto(f"{site.url}/operator/signin")
    page.get_by_label("Username").fill("olga.ops")
    page.get_by_label("Password").fill(OPERATOR_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/operator/signin/second-factor"))
    page.get_by_label("Code").fill(totp.now())
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(re.compile(r"/operator"))
    page.goto(f"{site.url}/operator")
    axe(page)
    shot(page, "operator-home")
    page.get_by_role("link", name="My grants").first.click()
    page.get_by_label("Institution").fill(slug)
    page.get_by_label("Scope").select_option("read")
    page.get_by_label("Why").fill("The patron reports their loans are missing; checking the record.")
    page.get_by_label("Ticket").fill("SUP-2231")
    page.get_by_label("Hours").fill("1")
    page.get_by_role("button", name="Ask", exact=True).click()
    page.wait_for_url(re.compile(r"done=requested"))
    assert "requested" in page.locator("table").first.inner_text()
    axe(page)
    shot(page, "grant-asked")

    # The institution's administrator approves, in another browser.
    admin_context = chromium.new_context(viewport={"width": 1100, "height": 800}, locale="en-GB")
    admin = admin_context.new_page()
    try:
        sign_in_staff(admin, site.url, slug, "ada", secret)
        admin.goto(f"{site.url}/console/operator-grants")
        assert "SUP-2231" in admin.locator("table").inner_text()
        axe(admin)
        shot(admin, "administrator-sees-the-request")
        admin.get_by_role("button", name="Approve").click()
        admin.wait_for_url(re.compile(r"done=approved"))
        assert "approved" in admin.locator("table").inner_text()
        shot(admin, "administrator-approved")
    finally:
        admin_context.close()

    page.reload()
    page.get_by_role("link", name=f"Patrons of {slug}").click()
    page.wait_for_url(re.compile(r"/patrons"))
    assert "Grace Hopper" in page.locator("table").inner_text()
    axe(page)
    shot(page, "operator-reads-through-the-grant")
    patrons_url = page.url

    with tenant_session(site.db, tenant_id) as session:  # the window runs out; the hourly job ends it
        session.execute(
            text(
                "UPDATE operator_grants SET starts_at = now() - interval '2 hours', "
                "expires_at = now() - interval '1 hour'"
            )
        )
    assert grants.end_expired_grants(site.db) == 1
    answer = page.goto(patrons_url)
    assert answer.status == 403
    assert "no approved, current operator grant" in page.locator("[role=alert]").inner_text().lower()
    assert "Grace Hopper" not in page.content()
    shot(page, "access-ended")
    page.goto(f"{site.url}/operator/grants")
    assert "expired" in page.locator("table").first.inner_text()
    shot(page, "grant-expired")


def _menu(page) -> list[str]:
    return page.locator("nav.console-menu ul a").evaluate_all("links => links.map(a => a.getAttribute('href'))")


def _operator_sign_in(page, url: str, username: str, totp) -> None:
    page.goto(f"{url}/operator/signin")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(OPERATOR_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/operator/signin/second-factor"))
    page.get_by_label("Code").fill(totp.now())
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(re.compile(r"/operator"))


def _seeded(site, tenant_id) -> None:
    """What the pages show: patrons, requests (one overdue), a complaint, failed sign-ins, a contact, a
    pending approval and an operator's request for access."""
    clerk = Principal(
        PrincipalKind.API_TOKEN, uuid.uuid4(), tenant_id, BUILTIN_PERMISSIONS[BuiltinRole.CIRCULATION_STAFF]
    )
    desk = Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant_id, BUILTIN_PERMISSIONS[BuiltinRole.PRIVACY_OFFICER])
    admin = Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant_id, BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN])
    with tenant_session(site.db, tenant_id) as session:
        notices.add_security_contact(session, CONTACT)
        made = [
            library.create(session, clerk, records.PATRONS, PatronCreate(name=name, email=f"{n}@alpha.example"))
            for n, name in enumerate(["Grace Hopper", "Alan Turing", "Ada Byron", "Edsger Dijkstra"])
        ]
        for n, patron in enumerate(made):
            request = privacy_requests.register_for_patron(
                session,
                desk,
                patron.id,
                (RequestKind.ACCESS, RequestKind.PORTABILITY, RequestKind.RESTRICTION, RequestKind.ACCESS)[n],
            )
            if n == 0:
                session.execute(
                    text(
                        "UPDATE privacy_requests SET received_at = now() - interval '40 days', "
                        "due_at = now() - interval '3 days' WHERE id = :id"
                    ),
                    {"id": request.id},
                )
        complaints.register_for_patron(session, desk, made[1].id, subject="Loan history", body="Why is it kept?")
        approvals.ask(
            session,
            admin,
            SensitiveAction.CHANGE_PASSWORD_POLICY,
            {"role_class": "staff", "min_length": 14, "max_length": 128, "history": 5, "expiry_days": None},
        )
    _security_seeded(site, tenant_id)
    grants.request_grant(
        site.db,
        Principal(
            PrincipalKind.OPERATOR_TOKEN,
            uuid.uuid4(),
            None,
            frozenset({Permission.PLATFORM_GRANTS_REQUEST}),
            owner_id=uuid.uuid4(),
        ),
        tenant_id,
        scope=GrantScope.READ,
        justification="A patron's loans look wrong",
        ticket="SUP-77",
        duration=timedelta(hours=2),
    )


def _security_seeded(site, tenant_id) -> None:
    """What the security pages show: alerts (the institution's and the platform's), a block, and an incident
    affecting the institution, marked a breach (its clock and its notice)."""
    handler = Principal(PrincipalKind.OPERATOR_TOKEN, uuid.uuid4(), None, BUILTIN_PERMISSIONS[BuiltinRole.CISO])
    with platform_session(site.db) as session:
        raise_alert(session, rule="auth.bruteforce", title="Repeated sign-in failures", severity="high",
                    institution_id=tenant_id, source_address="203.0.113.7")  # fmt: skip
        raise_alert(session, rule="host.fim", title="A watched file changed", severity="critical")
        blocks.place(session, parse_network("203.0.113.7"), timedelta(hours=1), rule="auth.bruteforce",
                     jail="signin", offence=1, by=SYSTEM)  # fmt: skip
        incident = incidents.open_incident(
            session, handler, title="Session used from two countries", summary="One staff session, two places"
        )
    affected.triage(site.db, handler, incident.id, severity="high", category="unauthorised_access",
                    institutions=[tenant_id])  # fmt: skip
    affected.mark_breach(
        site.db, handler, incident.id, since=datetime.now(UTC) - timedelta(hours=2),
        targets=[BreachTarget("tenant", str(tenant_id))], data=["identity", "contact"],
        measures="The session was revoked and the password reset.", contact="security@bookwarden.example",
        notify=False,
    )  # fmt: skip


def test_every_console_page_passes_axe(site, committed_tenant, chromium, page, axe, shot):
    tenant_id = committed_tenant()
    slug = slug_of(site.db, tenant_id)
    _seeded(site, tenant_id)
    people = {}
    for username, role in (
        ("ada", BuiltinRole.TENANT_ADMIN),
        ("pia", BuiltinRole.PRIVACY_OFFICER),
        ("aud", BuiltinRole.AUDITOR),
    ):
        people[username] = pyotp.random_base32()
        staff(site.db, tenant_id, username, roles=[role], totp=people[username])
    for _ in range(3):  # refused sign-ins, for the chart
        page.goto(f"{site.url}/signin")
        page.get_by_label("Institution").fill(slug)
        page.get_by_label("Username").fill("ada")
        page.get_by_label("Password").fill("not the password at all")
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_load_state()

    seen = set()
    for username, secret in people.items():
        context = chromium.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
        reader = context.new_page()
        try:
            sign_in_staff(reader, site.url, slug, username, secret)
            reader.goto(f"{site.url}/console")
            axe(reader)
            shot(reader, f"{username}-home")
            for href in _menu(reader):
                reader.goto(f"{site.url}{href}")
                assert reader.locator("h1").count() == 1
                axe(reader)
                shot(reader, f"{username}{href.replace('/', '-')}")
                seen.add(href)
                # The first detail page of a list, where it has one.
                detail = reader.locator(f"main table a[href^='{href}/']").first
                if detail.count():
                    detail.click()
                    reader.wait_for_load_state()
                    axe(reader)
                    shot(reader, f"{username}{href.replace('/', '-')}-detail")
            if username == "aud":
                reader.goto(f"{site.url}/console/audit/chain")
                reader.get_by_role("button", name="Verify the whole chain now").click()
                reader.wait_for_load_state()
                assert "Clean:" in reader.locator("[role=status]").inner_text()
                axe(reader)
                shot(reader, "aud-chain-verified")
        finally:
            context.close()
    assert {"/console/accounts", "/console/privacy/requests", "/console/audit/chain", "/console/usage"} <= seen

    for username, role in (("olga.ops", "operator_ops"), ("dana.dpo", "dpo")):
        totp = operator_enrolled(site.db, username, role)
        context = chromium.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
        reader = context.new_page()
        try:
            _operator_sign_in(reader, site.url, username, totp)
            reader.goto(f"{site.url}/operator")
            axe(reader)
            shot(reader, f"{username}-home")
            for href in _menu(reader):
                reader.goto(f"{site.url}{href}")
                axe(reader)
                shot(reader, f"{username}{href.replace('/', '-')}")
                seen.add(href)
                detail = reader.locator(f"main table a[href^='{href}/']").first
                if detail.count():
                    detail.click()
                    reader.wait_for_load_state()
                    axe(reader)
                    shot(reader, f"{username}{href.replace('/', '-')}-detail")
                    seen.add(f"{href}/detail")
        finally:
            context.close()
    assert {"/operator/institutions", "/operator/grants", "/operator/usage", "/operator/escalations"} <= seen
    assert {
        "/operator/alerts/detail", "/operator/blocks", "/operator/file-integrity", "/operator/incidents/detail",
        "/operator/backups", "/operator/drills", "/operator/evidence", "/operator/security-report",
        "/console/alerts", "/console/incidents", "/console/security-report", "/console/evidence",
    } <= seen  # fmt: skip
