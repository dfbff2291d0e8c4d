"""The operator console's and the portal's pages for actions that were API-only, through the test client: an
operator ends their own grant, the CISO breaks glass with a reason, a handler opens an incident by hand, assigns
it, promotes an alert, sends or declines the breach notices, acknowledges an alert from the list with htmx and
without, and a patron downloads their own package. Each refuses a form without its CSRF token, a person without
the permission (403) and another institution's or person's ids (404), with nothing changed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from sqlalchemy import select, text

from bookwarden.access.grants import service as grants
from bookwarden.access.grants.models import GrantScope, OperatorGrant
from bookwarden.access.roles import notices
from bookwarden.core.errors import Forbidden
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, PLATFORM_PERMISSIONS, BuiltinRole, Permission
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.identity import passwords
from bookwarden.incidents import affected
from bookwarden.incidents import service as incidents
from bookwarden.incidents.affected import BreachTarget
from bookwarden.incidents.models import Incident, IncidentNotice
from bookwarden.monitor.alerts.models import StoredAlert
from bookwarden.monitor.alerts.service import raise_alert
from bookwarden.notify.models import OutboxMessage
from bookwarden.notify.service import open_mail
from bookwarden.privacy.requests import service as privacy_requests
from bookwarden.privacy.requests.models import RequestKind
from bookwarden.privacy.requests.service import Decision
from bookwarden.privacy.subjects.models import SubjectExportPackage
from tests.e2e.people import PASSWORD, patron, publish_notice, staff
from tests.web.consoles import operator_signed_in, post_form, sign_in, token

FORGED = ({}, {"csrf_token": "forged"})


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch):
    monkeypatch.setattr(passwords, "DEFAULT", passwords.OWASP_FLOOR)


def _me(client) -> Principal:
    """The signed-in operator as a principal of their own (for the services the test calls as them)."""
    found = client.get("/api/v1/operator/auth/me").json()
    role = BuiltinRole(found["role"])
    return Principal(PrincipalKind.OPERATOR, uuid.UUID(found["id"]), None, BUILTIN_PERMISSIONS[role])


def _someone_else() -> Principal:
    return Principal(
        PrincipalKind.OPERATOR_TOKEN, uuid.uuid4(), None, frozenset({Permission.PLATFORM_GRANTS_REQUEST}),
        owner_id=uuid.uuid4(),
    )  # fmt: skip


def _ask(db, operator: Principal, tenant_id, ticket="SUP-1") -> OperatorGrant:
    return grants.request_grant(
        db, operator, tenant_id, scope=GrantScope.READ, justification="A patron's loans look wrong",
        ticket=ticket, duration=timedelta(hours=1),
    )  # fmt: skip


def _grant(db, tenant_id, grant_id) -> OperatorGrant:
    with tenant_session(db, tenant_id) as session:
        found = session.get(OperatorGrant, (tenant_id, grant_id))
        session.expunge(found)
        return found


def _admin(tenant_id) -> Principal:
    return Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant_id, BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN])


def _staff(db, browser, tenant, username, role):
    secret = pyotp.random_base32()
    staff(db, tenant.id, username, roles=[role], totp=secret)
    return sign_in(browser(), tenant.slug, username, PASSWORD, secret)


def _mails(db, tenant_id) -> list:
    with tenant_session(db, tenant_id) as session:
        return [open_mail(session, row) for row in session.scalars(select(OutboxMessage))]


# -- an operator ends their own grant -------------------------------------------------------------------------


def test_an_operator_ends_their_own_grant_and_no_one_elses(db, browser, tenant, other_tenant):
    olga = operator_signed_in(db, browser(), "olga.sup", "operator_support")
    mine = _ask(db, _me(olga), tenant.id, "SUP-MINE")
    theirs = _ask(db, _someone_else(), tenant.id, "SUP-THEIRS")
    with tenant_session(db, tenant.id) as session:
        grants.approve_grant(session, _admin(tenant.id), mine.id)
    listed = olga.get("/operator/grants")
    end = f"/operator/grants/{tenant.id}/{mine.id}/end"
    assert f'action="{end}"' in listed.text and str(mine.id) in listed.text
    assert "SUP-THEIRS" not in listed.text
    for sent in FORGED:
        answer = olga.post(end, data=sent)
        assert answer.status_code == 403 and "not sent from a page of this site" in answer.text
    # Another institution's id with my grant, and another person's grant: not found, nothing ended.
    assert post_form(olga, "/operator/grants", f"/operator/grants/{other_tenant.id}/{mine.id}/end").status_code == 404
    refused = post_form(olga, "/operator/grants", f"/operator/grants/{tenant.id}/{theirs.id}/end")
    assert refused.status_code == 404 and refused.headers["content-type"].startswith("text/html")
    assert _grant(db, tenant.id, theirs.id).status == "requested"
    # A person without the permission (institution staff, the CISO): refused.
    admin = _staff(db, browser, tenant, "ada", BuiltinRole.TENANT_ADMIN)
    assert post_form(admin, "/console", end).status_code == 403
    ciso = operator_signed_in(db, browser(), "cora.ciso", "ciso")
    assert post_form(ciso, "/operator", end).status_code == 403
    assert _grant(db, tenant.id, mine.id).status == "approved"
    grants.open_grant(db, _me(olga), mine.id)  # still open: it works until it is ended

    answer = post_form(olga, "/operator/grants", end)
    assert answer.status_code == 303 and answer.headers["location"] == "/operator/grants?done=ended"
    assert _grant(db, tenant.id, mine.id).status == "revoked"
    with pytest.raises(Forbidden):
        grants.open_grant(db, _me(olga), mine.id)
    after = olga.get(answer.headers["location"]).text
    assert "access through this grant stops now" in after and f'action="{end}"' not in after
    # Ended already: the service's refusal, as a page.
    assert post_form(olga, "/operator/grants", end).status_code == 409


# -- break-glass --------------------------------------------------------------------------------------------


def test_the_ciso_breaks_glass_with_a_reason_and_the_institution_is_told(db, browser, tenant, other_tenant):
    with tenant_session(db, tenant.id) as session:
        notices.add_security_contact(session, "soc@alpha.example")
    grant = _ask(db, _someone_else(), tenant.id, "SUP-911")
    ciso = operator_signed_in(db, browser(), "cora.ciso", "ciso")
    form_page = ciso.get("/operator/break-glass")
    assert form_page.status_code == 200 and 'name="reason"' in form_page.text
    assert 'href="/operator/break-glass"' in ciso.get("/operator").text
    fields = {"institution": tenant.slug, "grant": str(grant.id), "reason": "Ransomware on the catalogue host"}
    for sent in FORGED:
        assert ciso.post("/operator/break-glass", data={**fields, **sent}).status_code == 403
    # Operations hold no break-glass: refused, and the menu does not offer it.
    ops = operator_signed_in(db, browser(), "olga.ops", "operator_ops")
    assert ops.get("/operator/break-glass").status_code == 403
    assert post_form(ops, "/operator", "/operator/break-glass", **fields).status_code == 403
    assert 'href="/operator/break-glass"' not in ops.get("/operator").text
    # The grant named with another institution: not found, on the form.
    other = post_form(
        ciso, "/operator/break-glass", "/operator/break-glass", **{**fields, "institution": other_tenant.slug}
    )
    assert other.status_code == 404 and 'role="alert"' in other.text and 'name="reason"' in other.text
    # No reason worth the name: refused, nothing approved.
    short = post_form(ciso, "/operator/break-glass", "/operator/break-glass", **{**fields, "reason": "urgent"})
    assert short.status_code == 422 and "reason" in short.text
    assert _grant(db, tenant.id, grant.id).status == "requested"
    assert not [m for m in _mails(db, tenant.id) if "Ransomware" in m.body]

    answer = post_form(ciso, "/operator/break-glass", "/operator/break-glass", **fields)
    assert answer.status_code == 303 and answer.headers["location"] == "/operator/break-glass?done=broken"
    found = _grant(db, tenant.id, grant.id)
    assert (found.status, found.break_glass) == ("approved", True)
    told = [
        m for m in _mails(db, tenant.id) if "soc@alpha.example" in m.to and "Ransomware on the catalogue host" in m.body
    ]
    assert len(told) == 1 and "approved by the platform CISO" in told[0].body
    # Decided already: refused in the service's words.
    again = post_form(ciso, "/operator/break-glass", "/operator/break-glass", **fields)
    assert again.status_code == 409 and "only a requested grant can be decided" in again.text


# -- incidents: opened by hand, assigned, promoted from an alert, the breach notices ----------------------------


def _incident(db, incident_id) -> Incident:
    with platform_session(db) as session:
        found = session.get(Incident, incident_id)
        session.expunge(found)
        return found


def test_a_handler_opens_an_incident_by_hand_and_assigns_it(db, browser):
    ops = operator_signed_in(db, browser(), "olga.ops", "operator_ops")
    fields = {"title": "Backup host unreachable", "summary": "Nightly backup failed twice", "severity": "high",
              "category": "availability"}  # fmt: skip
    for sent in FORGED:
        assert ops.post("/operator/incidents", data={**fields, **sent}).status_code == 403
    dpo = operator_signed_in(db, browser(), "dana.dpo", "dpo")
    assert post_form(dpo, "/operator", "/operator/incidents", **fields).status_code == 403
    with platform_session(db) as session:
        assert session.scalar(select(Incident.id).where(Incident.title == fields["title"])) is None
    blank = post_form(ops, "/operator/incidents", "/operator/incidents", **{**fields, "summary": ""})
    assert blank.status_code == 422 and 'role="alert"' in blank.text

    answer = post_form(ops, "/operator/incidents", "/operator/incidents", **fields)
    assert answer.status_code == 303 and answer.headers["location"].endswith("?done=opened")
    incident_id = uuid.UUID(answer.headers["location"].split("/")[-1].split("?")[0])
    found = _incident(db, incident_id)
    assert (found.source, found.severity, found.assignee_id) == ("manual", "high", None)
    detail = f"/operator/incidents/{incident_id}"
    page = ops.get(detail)
    assert "Opened: the CISO is mailed at once." in ops.get(answer.headers["location"]).text
    assert "olga.ops" in page.text and "dana.dpo" not in page.text  # only handlers are offered

    olga = _me(ops)
    for sent in FORGED:
        assert ops.post(f"{detail}/assign", data={"handler_id": str(olga.id), **sent}).status_code == 403
    assert post_form(dpo, "/operator", f"{detail}/assign", handler_id=str(olga.id)).status_code == 403
    # Someone who handles no incidents: refused in the service's words, on the incident's page.
    not_a_handler = _me(dpo).id
    refused = post_form(ops, detail, f"{detail}/assign", handler_id=str(not_a_handler))
    assert refused.status_code == 422 and "no active operator account whose role handles incidents" in refused.text
    unknown = uuid.uuid4()
    assert post_form(ops, detail, f"/operator/incidents/{unknown}/assign", handler_id=str(olga.id)).status_code == 404
    assert _incident(db, incident_id).assignee_id is None
    answer = post_form(ops, detail, f"{detail}/assign", handler_id=str(olga.id))
    assert answer.status_code == 303 and _incident(db, incident_id).assignee_id == olga.id
    assert "<dt>Assigned to</dt><dd>olga.ops</dd>" in ops.get(detail).text


def _alert(db, title="Repeated sign-in failures", severity="high") -> uuid.UUID:
    with platform_session(db) as session:
        return raise_alert(session, rule="page.check", title=title, severity=severity).alert.id


def test_an_alert_is_promoted_to_an_incident_once(db, browser):
    alert_id = _alert(db)
    ops = operator_signed_in(db, browser(), "olga.ops", "operator_ops")
    detail = f"/operator/alerts/{alert_id}"
    assert f'action="{detail}/promote"' in ops.get(detail).text
    fields = {"summary": "A burst of refused sign-ins from one network", "severity": "high", "category": "other"}
    for sent in FORGED:
        assert ops.post(f"{detail}/promote", data={**fields, **sent}).status_code == 403
    dpo = operator_signed_in(db, browser(), "dana.dpo", "dpo")
    assert post_form(dpo, "/operator", f"{detail}/promote", **fields).status_code == 403
    assert post_form(ops, detail, f"/operator/alerts/{uuid.uuid4()}/promote", **fields).status_code == 404
    with platform_session(db) as session:
        assert session.scalar(select(Incident.id).where(Incident.source_ref == str(alert_id))) is None

    answer = post_form(ops, detail, f"{detail}/promote", title="Sign-in burst", **fields)
    assert answer.status_code == 303 and answer.headers["location"].endswith("?done=promoted")
    incident_id = uuid.UUID(answer.headers["location"].split("/")[-1].split("?")[0])
    found = _incident(db, incident_id)
    assert (found.source, found.source_ref, found.title) == ("alert", str(alert_id), "Sign-in burst")
    # The same alert again, while its incident is open: that incident.
    again = post_form(ops, detail, f"{detail}/promote", **fields)
    assert again.headers["location"].startswith(f"/operator/incidents/{incident_id}")


def _breach(db, *institutions) -> uuid.UUID:
    handler = Principal(PrincipalKind.OPERATOR_TOKEN, uuid.uuid4(), None, PLATFORM_PERMISSIONS)
    with platform_session(db) as session:
        incident = incidents.open_incident(session, handler, title="Stolen session", summary="Two countries")
    affected.mark_breach(
        db, handler, incident.id, since=datetime.now(UTC) - timedelta(hours=2),
        targets=[BreachTarget("tenant", str(t)) for t in institutions], data=["identity"],
        measures="Sessions revoked.", contact="security@bookwarden.example", notify=False,
    )  # fmt: skip
    return incident.id


def _notices(db, tenant_id, incident_id) -> list[str]:
    with tenant_session(db, tenant_id) as session:
        return list(
            session.scalars(
                select(IncidentNotice.decision).where(
                    IncidentNotice.incident_id == incident_id, IncidentNotice.audience == "institution"
                )
            )
        )


def test_the_breach_notice_is_sent_or_declined_from_the_incident_page(db, browser, tenant, other_tenant, make_tenant):
    with tenant_session(db, tenant.id) as session:
        notices.add_security_contact(session, "soc@alpha.example")
    incident_id = _breach(db, tenant.id, other_tenant.id)
    third = make_tenant("gamma", "Gamma College")  # not affected by this breach
    ops = operator_signed_in(db, browser(), "olga.ops", "operator_ops")
    detail = f"/operator/incidents/{incident_id}"
    page = ops.get(detail)
    assert page.text.count("not decided yet") == 2 and f'value="{tenant.id}"' in page.text
    send, decline = f"{detail}/breach/notices", f"{detail}/breach/declines"
    for sent in FORGED:
        assert ops.post(send, data={"institution": str(tenant.id), **sent}).status_code == 403
    dpo = operator_signed_in(db, browser(), "dana.dpo", "dpo")
    assert post_form(dpo, "/operator", send, institution=str(tenant.id)).status_code == 403
    outside = post_form(ops, detail, send, institution=str(third.id))
    assert outside.status_code == 404 and "does not affect institution" in outside.text
    assert _notices(db, tenant.id, incident_id) == [] and _notices(db, third.id, incident_id) == []

    answer = post_form(ops, detail, send, institution=str(tenant.id))
    assert answer.status_code == 303 and answer.headers["location"].endswith("?done=notified")
    assert _notices(db, tenant.id, incident_id) == ["sent"]
    assert any("personal-data breach notice" in m.subject for m in _mails(db, tenant.id))
    # Never twice: refused in the service's words, on the page.
    twice = post_form(ops, detail, send, institution=str(tenant.id))
    assert twice.status_code == 409 and "a notice is never sent twice" in twice.text
    answer = post_form(ops, detail, decline, institution=str(other_tenant.id), reason="Only test accounts touched")
    assert answer.status_code == 303 and _notices(db, other_tenant.id, incident_id) == ["not_notified"]
    page = ops.get(detail).text
    assert "not decided yet" not in page and "not notified" in page and "notified" in page
    assert f'action="{send}"' not in page


# -- htmx: an alert acknowledged and closed from the list, with and without JavaScript ---------------------------


def _status(db, alert_id) -> str:
    with platform_session(db) as session:
        return session.get(StoredAlert, alert_id).status


def test_an_alert_is_acknowledged_from_the_list_by_htmx_and_closed_by_a_plain_form(db, browser):
    alert_id = _alert(db, "A watched file changed")
    ops = operator_signed_in(db, browser(), "olga.ops", "operator_ops")
    listed = ops.get("/operator/alerts")
    ack = f"/operator/alerts/{alert_id}/acknowledge"
    assert f'hx-post="{ack}"' in listed.text and f'action="{ack}"' in listed.text
    csrf = token(listed)
    # The filter form's "any" is an empty value, as a browser (or htmx) sends it: no filter, not a refusal.
    assert "A watched file changed" in ops.get("/operator/alerts?severity=&status=open").text
    htmx = {"HX-Request": "true", "HX-Target": f"alert-{alert_id}"}
    # htmx's request carries the token in its header (static/web.js, from the page's meta tag): a forged one fails.
    assert ops.post(ack, headers={**htmx, "X-CSRF-Token": "forged"}).status_code == 403
    assert ops.post(ack, headers=htmx).status_code == 403
    assert _status(db, alert_id) == "open"
    answer = ops.post(ack, headers={**htmx, "X-CSRF-Token": csrf}, data={"back": "list"}, follow_redirects=False)
    assert answer.status_code == 200 and answer.text.lstrip().startswith(f'<tr id="alert-{alert_id}">')
    assert "<td>acknowledged</td>" in answer.text and 'hx-swap-oob="innerHTML"' in answer.text
    assert "<html" not in answer.text  # a fragment: the row and the status line, never a whole page
    assert _status(db, alert_id) == "acknowledged"
    # The same form without JavaScript: a plain post, then back to the list.
    answer = post_form(ops, "/operator/alerts", f"/operator/alerts/{alert_id}/close", back="list")
    assert answer.status_code == 303 and answer.headers["location"] == "/operator/alerts?done=closed"
    assert _status(db, alert_id) == "closed"
    assert "Closed: the next match" in ops.get(answer.headers["location"]).text
    # A reader without alerts.manage sees no buttons in the list.
    dpo = operator_signed_in(db, browser(), "dana.dpo", "dpo")
    assert dpo.get("/operator/alerts").status_code == 403


# -- the portal: download my package ----------------------------------------------------------------------------


def _ready_package(db, tenant_id, patron_id) -> uuid.UUID:
    """An access request carried out by the institution: the package answering it."""
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


def _patron(db, tenant, username):
    _, patron_id = patron(db, tenant.id, username)
    return patron_id


def _portal(browser, tenant, username):
    client = browser()
    answer = post_form(client, "/signin", "/signin", institution=tenant.slug, username=username, password=PASSWORD)
    assert answer.status_code == 303, answer.text
    return client


def test_a_patron_downloads_their_own_package_and_no_one_elses(db, browser, tenant, other_tenant):
    publish_notice(db, tenant.id)
    publish_notice(db, other_tenant.id)
    ada_id, bob_id = _patron(db, tenant, "ada"), _patron(db, tenant, "bob")
    theirs_id = _patron(db, other_tenant, "cyd")
    ada_package, bob_package = _ready_package(db, tenant.id, ada_id), _ready_package(db, tenant.id, bob_id)
    other_package = _ready_package(db, other_tenant.id, theirs_id)
    ada = _portal(browser, tenant, "ada")
    page = ada.get("/portal/requests")
    assert f'href="/portal/packages/{ada_package}"' in page.text
    assert f"/portal/packages/{bob_package}" not in page.text and "Expires (UTC)" in page.text

    answer = ada.get(f"/portal/packages/{ada_package}")
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/zip"
    assert answer.content[:2] == b"PK" and "no-store" in answer.headers["cache-control"]
    # Another patron's package, another institution's, or none: not found, as a page.
    for other in (bob_package, other_package, uuid.uuid4()):
        refused = ada.get(f"/portal/packages/{other}")
        assert refused.status_code == 404 and refused.headers["content-type"].startswith("text/html"), other
    # Staff hold no self-service: refused.
    clerk = _staff(db, browser, tenant, "cid", BuiltinRole.PRIVACY_OFFICER)
    assert clerk.get(f"/portal/packages/{ada_package}").status_code == 403
    # Expired (not yet purged): gone, with what to do.
    with tenant_session(db, tenant.id) as session:
        session.execute(
            text("UPDATE subject_export_packages SET expires_at = now() - interval '1 minute' WHERE id = :id"),
            {"id": ada_package},
        )
    gone = ada.get(f"/portal/packages/{ada_package}")
    assert gone.status_code == 410 and "ask for a new copy" in gone.text
    assert f"/portal/packages/{ada_package}" not in ada.get("/portal/requests").text
    with tenant_session(db, tenant.id) as session:
        downloads = session.get(SubjectExportPackage, (tenant.id, ada_package)).downloads
    assert downloads == 1
