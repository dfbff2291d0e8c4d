"""In a real browser: the operator console's and the portal's pages for actions that were API-only.

- the CISO breaks glass for an operator's pending grant with a reason, the institution's security contact
  receives the notice (with the reason) through the real SMTP server, and the operator ends the grant early;
- a handler opens an incident by hand, assigns it, promotes an alert to an incident and sends an affected
  institution its breach notice from the incident's page;
- an alert is acknowledged from the list by htmx (the row swapped in place, no page load, the CSRF token sent
  in htmx's header) and the list filtered without a reload; with JavaScript off the same forms work as plain
  posts and a plain GET;
- a patron downloads their package from the portal's requests page; another patron's is not found, an
  expired one is gone.

axe-core on every page, screenshots in test-artifacts/.
"""

from __future__ import annotations

import re
import time
import uuid
import zipfile
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from sqlalchemy import select, text

from bookwarden.access.roles import notices
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, PLATFORM_PERMISSIONS, BuiltinRole
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.identity import passwords
from bookwarden.incidents import affected
from bookwarden.incidents import service as incidents
from bookwarden.incidents.affected import BreachTarget
from bookwarden.incidents.models import Incident, IncidentNotice
from bookwarden.jobs.worker import Worker
from bookwarden.monitor.alerts import service as alerts
from bookwarden.monitor.alerts.models import StoredAlert
from bookwarden.monitor.alerts.service import raise_alert
from bookwarden.privacy.requests import service as privacy_requests
from bookwarden.privacy.requests.models import RequestKind
from bookwarden.privacy.requests.service import Decision
from bookwarden.privacy.subjects.models import SubjectExportPackage
from tests.e2e.people import PASSWORD, patron, publish_notice, slug_of
from tests.e2e.test_notify import smtp_server  # noqa: F401 - fixture
from tests.web.consoles import OPERATOR_PASSWORD, operator_enrolled

CONTACT = "soc@alpha.example"
VIEWPORT = {"width": 1280, "height": 900}


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch):
    monkeypatch.setattr(passwords, "DEFAULT", passwords.OWASP_FLOOR)


def _operator(site, role: str) -> tuple[str, pyotp.TOTP]:
    username = f"{role.split('_')[-1]}-{uuid.uuid4().hex[:6]}"
    return username, operator_enrolled(site.db, username, role)


def _operator_sign_in(page, url: str, username: str, totp, *, next_code: bool = False) -> None:
    """Signed in with password and code; `next_code` for a second sign-in within the same 30 seconds (a code is
    never accepted twice: identity/mfa)."""
    page.goto(f"{url}/operator/signin")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(OPERATOR_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/operator/signin/second-factor"))
    page.get_by_label("Code").fill(totp.at(time.time() + 30) if next_code else totp.now())
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(re.compile(r"/operator$"))


def _deliver_all(db) -> None:
    worker = Worker(db, "browser-test")
    for _ in range(50):
        if not worker.run_one():
            return


def _handler() -> Principal:
    return Principal(PrincipalKind.OPERATOR_TOKEN, uuid.uuid4(), None, PLATFORM_PERMISSIONS)


# -- break-glass, then the operator ends the grant early ---------------------------------------------------------


def test_the_ciso_breaks_glass_the_institution_is_told_and_the_operator_ends_the_grant(
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
    support, support_totp = _operator(site, "operator_support")
    ciso, ciso_totp = _operator(site, "ciso")

    # The operator asks, on their own page, and reads the grant's id there.
    _operator_sign_in(page, site.url, support, support_totp)
    page.goto(f"{site.url}/operator/grants")
    page.get_by_label("Institution").fill(slug)
    page.get_by_label("Scope").select_option("read")
    page.get_by_label("Why").fill("The catalogue host is down and patrons cannot borrow; checking their records.")
    page.get_by_label("Ticket").fill("INC-4711")
    page.get_by_label("Hours").fill("1")
    page.get_by_role("button", name="Ask", exact=True).click()
    page.wait_for_url(re.compile(r"done=requested"))
    row = page.locator("tbody tr", has_text="INC-4711")
    grant_id = row.locator("code.id").inner_text().strip()
    uuid.UUID(grant_id)
    shot(page, "operator-asked")

    # The CISO, in a browser of their own: the menu's break-glass page.
    context = chromium.new_context(viewport=VIEWPORT, locale="en-GB")
    officer = context.new_page()
    try:
        _operator_sign_in(officer, site.url, ciso, ciso_totp)
        officer.goto(f"{site.url}/operator")
        officer.get_by_role("navigation", name="Operator console").get_by_role("link", name="Break glass").click()
        officer.wait_for_url(re.compile(r"/operator/break-glass$"))
        axe(officer)
        shot(officer, "break-glass-form")
        officer.get_by_role("textbox", name=re.compile("^Institution")).fill(slug)
        officer.get_by_label("Grant id").fill(grant_id)
        officer.get_by_label("Reason").fill("short")
        # The browser's own check stops a reason under 10 characters; the server's is tested through the client.
        officer.get_by_label("Reason").fill("Ransomware on the catalogue host: restore needs the loans now.")
        officer.get_by_role("button", name="Break glass").click()
        officer.wait_for_url(re.compile(r"done=broken"))
        assert "security contacts are mailed now" in officer.locator("[role=status]").inner_text()
        axe(officer)
        shot(officer, "break-glass-done")
    finally:
        context.close()

    _deliver_all(site.db)
    told = [m for m in smtp_server.messages if CONTACT in m.recipients]
    bodies = [m.message.get_content() for m in told]
    body = next(b for b in bodies if "Ransomware on the catalogue host" in b)
    assert "approved by the platform CISO" in body and "INC-4711" in body

    page.reload()
    row = page.locator("tbody tr", has_text="INC-4711")
    assert "approved" in row.inner_text() and "break-glass" in row.inner_text()
    axe(page)
    shot(page, "operator-sees-break-glass")
    row.get_by_role("button", name=re.compile("End now")).click()
    page.wait_for_url(re.compile(r"done=ended"))
    row = page.locator("tbody tr", has_text="INC-4711")
    assert "revoked" in row.inner_text() and row.get_by_role("button").count() == 0
    axe(page)
    shot(page, "operator-ended-the-grant")
    answer = page.goto(f"{site.url}/operator/grants/{grant_id}/patrons")
    assert answer.status == 403


# -- incidents: by hand, assigned, promoted from an alert, the breach notice -------------------------------------


def test_a_handler_opens_assigns_promotes_and_sends_the_breach_notice(site, committed_tenant, page, axe, shot):
    tenant_id = committed_tenant()
    ops, ops_totp = _operator(site, "operator_ops")
    with platform_session(site.db) as session:
        alert_id = raise_alert(
            session, rule="auth.bruteforce", title="Repeated sign-in failures", severity="high",
            institution_id=tenant_id, source_address="203.0.113.7",
        ).alert.id  # fmt: skip
        breached = incidents.open_incident(
            session, _handler(), title="Session used from two countries", summary="One staff session, two places"
        ).id
    affected.mark_breach(
        site.db, _handler(), breached, since=datetime.now(UTC) - timedelta(hours=2),
        targets=[BreachTarget("tenant", str(tenant_id))], data=["identity", "contact"],
        measures="The session was revoked.", contact="security@bookwarden.example", notify=False,
    )  # fmt: skip

    _operator_sign_in(page, site.url, ops, ops_totp)
    page.goto(f"{site.url}/operator/incidents")
    page.get_by_label("Title").fill("Backup host unreachable")
    page.get_by_label("What happened, as known now").fill("Two nightly backups failed; the host does not answer.")
    page.get_by_label("Severity").select_option("high")
    page.get_by_label("Category").select_option("availability")
    axe(page)
    shot(page, "open-form")
    page.get_by_role("button", name="Open the incident").click()
    page.wait_for_url(re.compile(r"/operator/incidents/[0-9a-f-]+\?done=opened"))
    assert "the CISO is mailed at once" in page.locator("[role=status]").inner_text()
    opened = uuid.UUID(re.search(r"/operator/incidents/([0-9a-f-]+)", page.url).group(1))

    page.get_by_label("Assign to").select_option(label=ops)
    page.get_by_role("button", name="Assign", exact=True).click()
    page.wait_for_url(re.compile(r"done=assigned"))
    assert ops in page.locator("dl.record").inner_text()
    axe(page)
    shot(page, "opened-and-assigned")
    with platform_session(site.db) as session:
        found = session.get(Incident, opened)
        assert (found.source, found.assignee_id is not None) == ("manual", True)

    page.goto(f"{site.url}/operator/alerts/{alert_id}")
    page.get_by_label("What is known now").fill("A burst of refused sign-ins from one network.")
    axe(page)
    shot(page, "promote-form")
    page.get_by_role("button", name="Open an incident from this alert").click()
    page.wait_for_url(re.compile(r"done=promoted"))
    assert str(alert_id) in page.locator("dl.record").inner_text()
    shot(page, "promoted")

    page.goto(f"{site.url}/operator/incidents/{breached}")
    notices_table = page.locator("table", has=page.locator("caption", has_text="Institutions affected by this breach"))
    assert "not decided yet" in notices_table.inner_text()
    axe(page)
    shot(page, "breach-notice-to-send")
    page.get_by_role("button", name=f"Send the breach notice to {tenant_id}").click()
    page.wait_for_url(re.compile(r"done=notified"))
    assert "notified" in notices_table.inner_text() and "not decided yet" not in notices_table.inner_text()
    axe(page)
    shot(page, "breach-notice-sent")
    with tenant_session(site.db, tenant_id) as session:
        decisions = session.scalars(select(IncidentNotice.decision).where(IncidentNotice.incident_id == breached))
        assert "sent" in list(decisions)


# -- htmx: in place with JavaScript, plain forms without -------------------------------------------------------


def _status(db, alert_id) -> str:
    with platform_session(db) as session:
        return session.get(StoredAlert, alert_id).status


def test_alerts_are_acknowledged_in_place_with_htmx_and_by_plain_forms_without_javascript(
    site, committed_tenant, chromium, page, axe, shot
):
    """With JavaScript: no page load (a marker set on the window survives), the token in htmx's header alone.
    Without: the same buttons post and come back to the list."""
    committed_tenant()
    ops, ops_totp = _operator(site, "operator_ops")
    with platform_session(site.db) as session:
        first = raise_alert(session, rule="host.fim", title="A watched file changed", severity="critical").alert.id
        second = raise_alert(session, rule="host.disk", title="A disk is almost full", severity="low").alert.id
        third = raise_alert(session, rule="host.cert", title="A certificate expires soon", severity="low").alert.id

    _operator_sign_in(page, site.url, ops, ops_totp)
    page.goto(f"{site.url}/operator/alerts")
    axe(page)
    shot(page, "alerts-before")
    page.evaluate("window.notReloaded = true")  # gone if the page were loaded again
    row = page.locator(f"#alert-{first}")
    # The row's own token field removed: htmx's header (static/web.js, from the meta tag) must carry it alone.
    row.locator("form[action$='/acknowledge'] input[name=csrf_token]").evaluate("field => field.remove()")
    with page.expect_response(re.compile(rf"/operator/alerts/{first}/acknowledge$")) as answered:
        row.get_by_role("button", name="Acknowledge: A watched file changed").click()
    assert answered.value.status == 200 and answered.value.request.headers.get("x-csrf-token")
    page.locator(f"#alert-{first} td", has_text="acknowledged").wait_for()
    assert page.evaluate("window.notReloaded") is True and page.url == f"{site.url}/operator/alerts"
    assert "Acknowledged" in page.locator("#alert-live").inner_text()
    assert _status(site.db, first) == "acknowledged"
    axe(page)
    shot(page, "acknowledged-in-place")

    # Refused to htmx (closed meanwhile by someone else): the same form goes the plain way, its refusal a page.
    with platform_session(site.db) as session:
        alerts.close(session, _handler(), third)
    page.locator(f"#alert-{third}").get_by_role("button", name="Close: A certificate expires soon").click()
    page.wait_for_url(re.compile(rf"/operator/alerts/{third}/close$"))
    assert "is closed already" in page.locator("[role=alert]").inner_text()
    shot(page, "refused-shown-as-a-page")
    page.goto(f"{site.url}/operator/alerts")
    page.evaluate("window.notReloaded = true")

    # The filter, by htmx: the list replaced, the address kept for the back button, no page load.
    page.get_by_label("Severity, and above").select_option("critical")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(re.compile(r"severity=critical"))
    page.locator(f"#alert-{second}").wait_for(state="detached")
    assert page.evaluate("window.notReloaded") is True
    assert page.locator(f"#alert-{first}").count() == 1
    shot(page, "filtered-in-place")

    # JavaScript off: the same buttons are plain forms, the filter a plain GET.
    context = chromium.new_context(viewport=VIEWPORT, locale="en-GB", java_script_enabled=False)
    plain = context.new_page()
    try:
        _operator_sign_in(plain, site.url, ops, ops_totp, next_code=True)
        plain.goto(f"{site.url}/operator/alerts")
        plain.locator(f"#alert-{second}").get_by_role("button", name="Acknowledge: A disk is almost full").click()
        plain.wait_for_url(re.compile(r"/operator/alerts\?done=acknowledged"))
        assert _status(site.db, second) == "acknowledged"
        plain.locator(f"#alert-{first}").get_by_role("button", name="Close: A watched file changed").click()
        plain.wait_for_url(re.compile(r"/operator/alerts\?done=closed"))
        assert "Closed: the next match" in plain.locator("[role=status]").first.inner_text()
        assert _status(site.db, first) == "closed"
        plain.get_by_label("Status").select_option("closed")
        plain.get_by_role("button", name="Show").click()
        plain.wait_for_url(re.compile(r"status=closed"))
        assert plain.locator(f"#alert-{first}").count() == 1 and plain.locator(f"#alert-{second}").count() == 0
        # No axe here: it runs as a script, which this page does not allow (the same list passed it above).
        shot(plain, "without-javascript")
    finally:
        context.close()


# -- the portal: download my package -----------------------------------------------------------------------------


def _ready_package(db, tenant_id, patron_id) -> uuid.UUID:
    officer = Principal(
        PrincipalKind.API_TOKEN, uuid.uuid4(), tenant_id, BUILTIN_PERMISSIONS[BuiltinRole.PRIVACY_OFFICER]
    )
    with tenant_session(db, tenant_id) as session:
        request = privacy_requests.register_for_patron(session, officer, patron_id, RequestKind.ACCESS)
        privacy_requests.decide(session, officer, request.id, Decision.APPROVE)
        privacy_requests.start(session, officer, request.id)
        privacy_requests.complete(session, officer, request.id)
        return session.scalars(
            select(SubjectExportPackage.id).where(SubjectExportPackage.request_id == request.id)
        ).one()


def test_a_patron_downloads_their_package_from_the_portal_and_no_one_elses(
    site, committed_tenant, page, axe, shot, tmp_path
):
    tenant_id = committed_tenant()
    slug = slug_of(site.db, tenant_id)
    publish_notice(site.db, tenant_id)
    _, ada_id = patron(site.db, tenant_id, "ada", name="Ada Reader")
    _, bob_id = patron(site.db, tenant_id, "bob", name="Bob Reader")
    ada_package, bob_package = _ready_package(site.db, tenant_id, ada_id), _ready_package(site.db, tenant_id, bob_id)

    page.goto(f"{site.url}/signin")
    page.get_by_label("Institution").fill(slug)
    page.get_by_label("Username").fill("ada")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/portal$"))
    page.get_by_role("region", name="Cookies").get_by_role("button", name="Only strictly necessary").click()
    page.get_by_role("link", name="My requests").click()
    ready = page.locator("table", has=page.locator("caption", has_text="destroyed, with its key, when it expires"))
    assert ready.locator("tbody tr").count() == 1
    axe(page)
    shot(page, "package-ready")
    with page.expect_download() as downloading:
        ready.get_by_role("link", name=re.compile("Download my data")).click()
    saved = tmp_path / "mine.zip"
    downloading.value.save_as(saved)
    with zipfile.ZipFile(saved) as archive:
        assert any("Ada Reader" in archive.read(name).decode(errors="ignore") for name in archive.namelist())
        assert not any("Bob Reader" in archive.read(name).decode(errors="ignore") for name in archive.namelist())

    answer = page.goto(f"{site.url}/portal/packages/{bob_package}")
    assert answer.status == 404 and "no access package with this id" in page.locator("main").inner_text()
    axe(page)
    shot(page, "someone-elses-not-found")
    with tenant_session(site.db, tenant_id) as session:
        session.execute(
            text("UPDATE subject_export_packages SET expires_at = now() - interval '1 minute' WHERE id = :id"),
            {"id": ada_package},
        )
    answer = page.goto(f"{site.url}/portal/packages/{ada_package}")
    assert answer.status == 410 and "ask for a new copy" in page.locator("main").inner_text()
    axe(page)
    shot(page, "expired-gone")
