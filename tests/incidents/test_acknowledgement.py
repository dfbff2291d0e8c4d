"""The institution acknowledges receipt of its breach notice: recorded in its own chain and on the incident's
timeline; the escalation job reminds each institution told but not yet acknowledging (every 12 hours, three times
at most, each reminder once) and stops for the one that acknowledged while it goes on for the other. Another
institution cannot acknowledge (not found), acknowledging twice changes nothing, and with no notice sent there
is nothing to acknowledge. A storm of account lockouts names the institutions whose accounts were locked."""

from __future__ import annotations

import uuid

import pyotp
from sqlalchemy import text

from bookwarden.audit.events import Action
from bookwarden.audit.record import record
from bookwarden.core.permissions import Permission
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.incidents import affected, service
from bookwarden.incidents import jobs as incident_jobs
from tests.e2e.people import PASSWORD, staff
from tests.incidents.test_breach import HANDLER, _client, _mails, _mark, world  # noqa: F401 - the breach's world
from tests.privacy.test_complaints import _account
from tests.web.consoles import operator_signed_in, post_form, sign_in

NOTIFY = {Permission.INCIDENTS_NOTIFY, Permission.INCIDENTS_READ}


def _told_ago(db, tenant_id, hours: int) -> None:
    with tenant_session(db, tenant_id) as session:
        session.execute(
            text("UPDATE incident_impacts SET institution_told_at = now() - make_interval(hours => :h)"), {"h": hours}
        )


def _events(db, tenant_id, action: Action) -> list[dict]:
    with tenant_session(db, tenant_id) as session:
        return list(
            session.execute(text("SELECT details FROM audit_events WHERE action = :a ORDER BY seq"), {"a": action})
            .scalars()
            .all()
        )


def _timeline(db, incident_id) -> list[tuple[str, dict]]:
    with platform_session(db) as session:
        return [(e.kind, e.details) for e in service.timeline_of(session, incident_id)]


def test_reminders_stop_for_the_institution_that_acknowledged_and_go_on_for_the_other(db, app, world, issue_token):  # noqa: F811
    north, south, _ = world["tenants"]
    incident = world["incident"]
    _mark(db, incident)
    assert affected.remind_unacknowledged(db) == []  # just told: nothing due yet
    for tenant in (north, south):
        _told_ago(db, tenant.id, 13)
    first = affected.remind_unacknowledged(db)
    assert sorted(first) == sorted([(incident.id, north.id, 1), (incident.id, south.id, 1)])
    assert affected.remind_unacknowledged(db) == []  # each reminder once
    officer = _client(app, issue_token(north, permissions=NOTIFY))

    answer = officer.post(f"/api/v1/incidents/{incident.id}/acknowledgement")

    assert answer.status_code == 200, answer.text
    assert answer.json()["already"] is False
    shown = officer.get(f"/api/v1/incidents/{incident.id}").json()["impact"]
    assert shown["acknowledged_at"] == answer.json()["acknowledged_at"]
    assert _events(db, north.id, Action.BREACH_ACKNOWLEDGED) != []
    lines = [(k, d) for k, d in _timeline(db, incident.id) if k == "institution_acknowledged"]
    assert [d["institution"] for _, d in lines] == [str(north.id)]
    for tenant in (north, south):
        _told_ago(db, tenant.id, 25)
    assert affected.remind_unacknowledged(db) == [(incident.id, south.id, 2)]  # north: acknowledged, no more
    for tenant in (north, south):
        _told_ago(db, tenant.id, 24 * 5)
    assert affected.remind_unacknowledged(db) == [(incident.id, south.id, 3)]
    assert affected.remind_unacknowledged(db) == []  # three at most
    reminders = {t.slug: [m for m in _mails(db, t.id) if "reminder: acknowledge" in m.subject] for t in (north, south)}
    assert (len(reminders["north"]), len(reminders["south"])) == (1, 3)
    assert f"/api/v1/incidents/{incident.id}/acknowledgement" in reminders["south"][0].body
    chased = [d["institution"] for k, d in _timeline(db, incident.id) if k == "acknowledgement_chased"]
    assert sorted(chased) == sorted([str(north.id), *[str(south.id)] * 3])


def test_acknowledging_twice_changes_nothing(db, app, world, issue_token):  # noqa: F811
    north = world["tenants"][0]
    incident = world["incident"]
    _mark(db, incident)
    officer = _client(app, issue_token(north, permissions=NOTIFY))
    first = officer.post(f"/api/v1/incidents/{incident.id}/acknowledgement").json()

    again = officer.post(f"/api/v1/incidents/{incident.id}/acknowledgement")

    assert again.status_code == 200 and again.json()["already"] is True
    assert again.json()["acknowledged_at"] == first["acknowledged_at"]
    assert len(_events(db, north.id, Action.BREACH_ACKNOWLEDGED)) == 1
    assert [k for k, _ in _timeline(db, incident.id)].count("institution_acknowledged") == 1


def test_another_institution_cannot_acknowledge_and_an_untold_one_has_nothing_to(db, app, world, issue_token):  # noqa: F811
    north, south, east = world["tenants"]
    incident = world["incident"]
    _mark(db, incident, notify=False)
    outsider = _client(app, issue_token(east, permissions=NOTIFY))
    assert outsider.post(f"/api/v1/incidents/{incident.id}/acknowledgement").status_code == 404
    officer = _client(app, issue_token(north, permissions=NOTIFY))
    assert officer.post(f"/api/v1/incidents/{uuid.uuid4()}/acknowledgement").status_code == 404
    reader = _client(app, issue_token(north, permissions={Permission.INCIDENTS_READ}))
    assert reader.post(f"/api/v1/incidents/{incident.id}/acknowledgement").status_code == 403

    untold = officer.post(f"/api/v1/incidents/{incident.id}/acknowledgement")

    assert untold.status_code == 409 and "nothing to acknowledge" in untold.json()["detail"]
    for tenant in (north, south, east):
        assert _events(db, tenant.id, Action.BREACH_ACKNOWLEDGED) == []
    affected.notify_institution(db, HANDLER, incident.id, north.id)
    assert officer.post(f"/api/v1/incidents/{incident.id}/acknowledgement").status_code == 200
    assert outsider.post(f"/api/v1/incidents/{incident.id}/acknowledgement").status_code == 404


def test_the_institutions_console_page_acknowledges_with_a_button(db, world, browser):  # noqa: F811
    north = world["tenants"][0]
    incident = world["incident"]
    _mark(db, incident)
    secret = pyotp.random_base32()
    staff(db, north.id, "sofia", roles=("security_officer",), totp=secret)
    reader = sign_in(browser(), north.slug, "sofia", PASSWORD, secret)
    page = f"/console/incidents/{incident.id}"
    assert "Acknowledge receipt" in reader.get(page).text

    answer = post_form(reader, page, f"{page}/acknowledgement")

    assert answer.status_code == 303, answer.text
    shown = reader.get(answer.headers["location"]).text
    assert "Receipt of the breach notice acknowledged" in shown and "Acknowledge receipt" not in shown
    assert len(_events(db, north.id, Action.BREACH_ACKNOWLEDGED)) == 1
    ops = operator_signed_in(db, browser(), "olga.ops", "operator_ops")
    timeline = ops.get(f"/operator/incidents/{incident.id}").text
    assert f'institution acknowledged <code class="id">{north.id}</code>' in timeline


def _locked(db, tenant, *usernames) -> None:
    with tenant_session(db, tenant.id) as session:
        for username in usernames:
            account = _account(session, username)
            record(session, Action.ACCOUNT_LOCKED, ("account", account.id), details={"consecutive_failures": 12})


def test_a_lockout_storm_names_the_institutions_whose_accounts_were_locked(db, make_tenant):
    north, south, east = make_tenant("n-storm"), make_tenant("s-storm"), make_tenant("e-storm")
    with platform_session(db) as session:
        for n in range(6):
            session.execute(
                text(
                    "INSERT INTO auth_failures (scope, key, consecutive, window_start, last_failure_at, locked_until) "
                    "VALUES ('account', :k, 12, now(), now(), now() + interval '4 minutes')"
                ),
                {"k": uuid.uuid4().bytes + bytes([n])},
            )
    _locked(db, north, "ann", "bob", "cy")
    _locked(db, south, "dee", "eve")

    incident_id = incident_jobs.find_lockout_storm(db, threshold=5)

    with platform_session(db) as session:
        assert sorted(service.get(session, incident_id).institutions) == sorted([north.id, south.id])
    _locked(db, east, "fay")  # the storm reaches a third institution while its incident is open
    assert incident_jobs.find_lockout_storm(db, threshold=5) == incident_id
    with platform_session(db) as session:
        assert sorted(service.get(session, incident_id).institutions) == sorted([north.id, south.id, east.id])
    seen = [d for k, d in _timeline(db, incident_id) if k == "seen_again"]
    assert [d.get("institutions") for d in seen] == [[str(east.id)]]
