"""The consoles' pages of alerts, blocked addresses, file integrity, incidents, backups and drills, security
reports and evidence, through the test client: each behind its API route's permission, another institution's
alert or incident not found, a form without its CSRF token refused with nothing changed, and each form's
happy path through the same service the API calls."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from sqlalchemy import select

from bookwarden.core.permissions import BUILTIN_PERMISSIONS, PLATFORM_PERMISSIONS, BuiltinRole
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import platform_session
from bookwarden.identity import passwords
from bookwarden.incidents import affected
from bookwarden.incidents import service as incidents
from bookwarden.incidents.models import Incident
from bookwarden.monitor.alerts.models import StoredAlert
from bookwarden.monitor.alerts.service import raise_alert
from bookwarden.monitor.fim import service as fim
from bookwarden.monitor.fim.models import FimBaseline
from bookwarden.monitor.response.models import AddressBlock
from tests.e2e.people import PASSWORD, staff
from tests.web.consoles import operator_signed_in, post_form, sign_in

OPERATOR_PAGES = [
    "/operator/alerts",
    "/operator/blocks",
    "/operator/file-integrity",
    "/operator/incidents",
    "/operator/backups",
    "/operator/drills",
    "/operator/evidence",
    "/operator/security-report",
]
INSTITUTION_PAGES = ["/console/alerts", "/console/incidents", "/console/security-report", "/console/evidence"]


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


@pytest.fixture
def ops(db, browser):
    return operator_signed_in(db, browser(), "olga.ops", "operator_ops")


def handler() -> Principal:
    return Principal(PrincipalKind.OPERATOR_TOKEN, uuid.uuid4(), None, PLATFORM_PERMISSIONS)


def _alert(db, institution_id=None, title="Repeated sign-in failures") -> uuid.UUID:
    with platform_session(db) as session:
        return raise_alert(
            session, rule="page.check", title=title, severity="high", institution_id=institution_id
        ).alert.id


def _status(db, alert_id) -> str:
    with platform_session(db) as session:
        return session.get(StoredAlert, alert_id).status


def _incident(db, *institutions) -> uuid.UUID:
    with platform_session(db) as session:
        incident = incidents.open_incident(
            session, handler(), title="Stolen session", summary="A session was used from two countries"
        )
    if institutions:
        affected.triage(db, handler(), incident.id, severity="high", category="unauthorised_access",
                        institutions=list(institutions))  # fmt: skip
    return incident.id


def _state(db, incident_id) -> str:
    with platform_session(db) as session:
        return session.get(Incident, incident_id).state


def test_each_page_is_refused_without_its_permission(person, tenant, db, browser):
    circulation = person(tenant, "cid", [BuiltinRole.CIRCULATION_STAFF])
    for path in INSTITUTION_PAGES + OPERATOR_PAGES:
        answer = circulation.get(path)
        assert answer.status_code == 403, path
        assert answer.headers["content-type"].startswith("text/html")
    home = circulation.get("/console")
    assert not any(f'href="{path}"' in home.text for path in INSTITUTION_PAGES)
    # The auditor reads the reports and evidence, not the alerts or incidents.
    auditor = person(tenant, "aud", [BuiltinRole.AUDITOR])
    assert auditor.get("/console/alerts").status_code == 403
    assert auditor.get("/console/incidents").status_code == 403
    assert auditor.get("/console/security-report").status_code == 200
    # The DPO's role holds none of the security operations.
    dpo = operator_signed_in(db, browser(), "dana.dpo", "dpo")
    for path in OPERATOR_PAGES:
        assert dpo.get(path).status_code == 403, path
    assert dpo.get("/console/alerts").status_code == 403
    alert = _alert(db)
    assert post_form(dpo, "/operator/grants", f"/operator/alerts/{alert}/acknowledge").status_code == 403
    assert _status(db, alert) == "open"


def test_every_page_of_both_menus_opens(person, tenant, ops):
    admin = person(tenant, "ada", [BuiltinRole.SECURITY_OFFICER])
    home = admin.get("/console")
    for path in INSTITUTION_PAGES:
        assert f'href="{path}"' in home.text, path
        answer = admin.get(path)
        assert answer.status_code == 200, (path, answer.text[:400])
        assert "<script>" not in answer.text and " style=" not in answer.text
    home = ops.get("/operator")
    for path in OPERATOR_PAGES:
        assert f'href="{path}"' in home.text, path
        answer = ops.get(path)
        assert answer.status_code == 200, (path, answer.text[:400])
        assert "<script>" not in answer.text and " style=" not in answer.text


def test_an_institution_sees_its_alerts_and_not_anothers(person, tenant, other_tenant, db):
    mine = _alert(db, tenant.id, "Ours: a burst of refused sign-ins")
    theirs = _alert(db, other_tenant.id, "Theirs: a burst of refused sign-ins")
    platform = _alert(db, None, "Platform: disk almost full")
    admin = person(tenant, "ada", [BuiltinRole.TENANT_ADMIN])
    listed = admin.get("/console/alerts")
    assert "Ours:" in listed.text and "Theirs:" not in listed.text and "Platform:" not in listed.text
    assert admin.get(f"/console/alerts/{mine}").status_code == 200
    assert admin.get(f"/console/alerts/{theirs}").status_code == 404
    assert admin.get(f"/console/alerts/{platform}").status_code == 404
    # The institution reads; it has no form to acknowledge, and the operators' route refuses it.
    assert "acknowledge" not in admin.get(f"/console/alerts/{mine}").text
    assert admin.post(f"/console/alerts/{mine}/acknowledge").status_code in (403, 404, 405)


def test_the_operator_filters_acknowledges_and_closes_an_alert(ops, db):
    high = _alert(db, title="High: a trojaned binary")
    with platform_session(db) as session:
        raise_alert(session, rule="page.low", title="Low: a slow disk", severity="low")
    filtered = ops.get("/operator/alerts?severity=high")
    assert "High:" in filtered.text and "Low:" not in filtered.text
    assert "Low:" in ops.get("/operator/alerts").text
    # Without its token: refused, nothing changed.
    for sent in ({}, {"csrf_token": "forged"}):
        answer = ops.post(f"/operator/alerts/{high}/acknowledge", data=sent)
        assert answer.status_code == 403 and "not sent from a page of this site" in answer.text
    assert _status(db, high) == "open"
    detail = f"/operator/alerts/{high}"
    answer = post_form(ops, detail, f"{detail}/acknowledge")
    assert answer.status_code == 303 and answer.headers["location"].endswith("done=acknowledged")
    assert _status(db, high) == "acknowledged"
    assert "Acknowledged: repeats" in ops.get(answer.headers["location"]).text
    answer = post_form(ops, detail, f"{detail}/close")
    assert answer.status_code == 303 and _status(db, high) == "closed"
    # Closed: no form is left, and the service refuses a second close in its words.
    assert f'action="{detail}/close"' not in ops.get(detail).text
    again = post_form(ops, "/operator/alerts", f"{detail}/close")
    assert again.status_code == 409


def _blocks(db) -> list[str]:
    with platform_session(db) as session:
        return [str(b.network) for b in session.scalars(select(AddressBlock).where(AddressBlock.ended_at.is_(None)))]


def test_the_operator_blocks_and_unblocks_an_address(ops, db):
    refused = ops.post("/operator/blocks", data={"address": "203.0.113.9", "minutes": "30"})
    assert refused.status_code == 403 and _blocks(db) == []
    answer = post_form(ops, "/operator/blocks", "/operator/blocks", address="203.0.113.9", minutes="30",
                       reason="scanning the sign-in page")  # fmt: skip
    assert answer.status_code == 303, answer.text
    assert _blocks(db) == ["203.0.113.9/32"]
    listed = ops.get("/operator/blocks")
    assert "203.0.113.9/32" in listed.text and "scanning the sign-in page" in listed.text
    # A network too wide is refused in the service's words, on the page, and nothing is blocked.
    wide = post_form(ops, "/operator/blocks", "/operator/blocks", address="10.0.0.0/4", minutes="30")
    assert wide.status_code == 422 and 'role="alert"' in wide.text
    assert _blocks(db) == ["203.0.113.9/32"]
    with platform_session(db) as session:
        block_id = session.scalars(select(AddressBlock.id)).one()
    assert ops.post(f"/operator/blocks/{block_id}/unblock", data={}).status_code == 403
    assert _blocks(db) == ["203.0.113.9/32"]
    answer = post_form(ops, "/operator/blocks", f"/operator/blocks/{block_id}/unblock")
    assert answer.status_code == 303 and _blocks(db) == []


@pytest.fixture
def fim_settings(app, tmp_path):
    tree = tmp_path / "watched"
    tree.mkdir()
    (tree / "settings.toml").write_text("mode = 'strict'\n")
    return app.state.settings.model_copy(update={"fim_paths": str(tree)})


def _baseline_status(db, baseline_id) -> str:
    with platform_session(db) as session:
        return session.get(FimBaseline, baseline_id).status


def test_a_second_operator_approves_a_baseline_and_the_proposer_is_refused(ops, db, browser, fim_settings, app):
    app.state.settings = fim_settings
    me = uuid.UUID(ops.get("/api/v1/operator/auth/me").json()["id"])
    olga = Principal(PrincipalKind.OPERATOR, me, None, BUILTIN_PERMISSIONS[BuiltinRole.OPERATOR_OPS])
    proposed, _ = fim.propose(db, olga, fim_settings)
    page = ops.get("/operator/file-integrity")
    assert str(proposed.id) in page.text and "proposed" in page.text
    # The proposer: refused by the service, in its words, on the page; the baseline still waits.
    refused = post_form(ops, "/operator/file-integrity", f"/operator/file-integrity/{proposed.id}/approve")
    assert refused.status_code == 409, refused.text
    assert "The operator who proposed a baseline cannot decide it" in refused.text
    assert _baseline_status(db, proposed.id) == "proposed"
    ciso = operator_signed_in(db, browser(), "cora.ciso", "ciso")
    assert ciso.post(f"/operator/file-integrity/{proposed.id}/approve", data={}).status_code == 403
    assert _baseline_status(db, proposed.id) == "proposed"
    answer = post_form(ciso, "/operator/file-integrity", f"/operator/file-integrity/{proposed.id}/approve")
    assert answer.status_code == 303 and _baseline_status(db, proposed.id) == "active"
    # A second proposal, rejected.
    second, _ = fim.propose(db, olga, fim_settings)
    answer = post_form(ciso, "/operator/file-integrity", f"/operator/file-integrity/{second.id}/reject")
    assert answer.status_code == 303 and _baseline_status(db, second.id) == "rejected"


def test_an_incident_is_worked_through_its_life_cycle(ops, db, tenant):
    incident_id = _incident(db)
    detail = f"/operator/incidents/{incident_id}"
    assert "Stolen session" in ops.get("/operator/incidents").text
    refused = ops.post(f"{detail}/triage", data={"severity": "high", "category": "unauthorised_access"})
    assert refused.status_code == 403 and _state(db, incident_id) == "open"
    answer = post_form(ops, detail, f"{detail}/triage", severity="high", category="unauthorised_access",
                       institutions=str(tenant.id), note="one institution's sessions")  # fmt: skip
    assert answer.status_code == 303, answer.text
    assert _state(db, incident_id) == "triaged"
    with platform_session(db) as session:
        assert session.get(Incident, incident_id).institutions == [tenant.id]
    # Out of order: refused in the service's words, on the incident's page.
    skipped = post_form(ops, detail, f"{detail}/steps", step="recovered", note="restored")
    assert skipped.status_code == 409 and "it must be eradicated to become recovered" in skipped.text
    for step in ("contained", "eradicated", "recovered"):
        page = ops.get(detail)
        assert f'name="step" value="{step}"' in page.text
        answer = post_form(ops, detail, f"{detail}/steps", step=step, note=f"{step}: done")
        assert answer.status_code == 303 and _state(db, incident_id) == step
    review = {"root_cause": "a leaked cookie", "actions_taken": "sessions revoked", "lessons_learned": "bind",
              "follow_up": "SEC-12"}  # fmt: skip
    partial = post_form(ops, detail, f"{detail}/close", root_cause="a leaked cookie")
    assert partial.status_code == 422 and _state(db, incident_id) == "recovered"
    answer = post_form(ops, detail, f"{detail}/close", **review)
    assert answer.status_code == 303 and _state(db, incident_id) == "closed"
    timeline = ops.get(detail).text
    assert "contained: done" in timeline and "a leaked cookie" in timeline


def test_a_breach_is_marked_and_the_institution_sees_its_clock(ops, db, tenant, other_tenant, person):
    admin = person(tenant, "ada", [BuiltinRole.TENANT_ADMIN])  # events of this institution, in the window
    incident_id = _incident(db, tenant.id)
    detail = f"/operator/incidents/{incident_id}"
    since = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
    fields = {"since": since, "institutions": str(tenant.id), "data": "identity", "measures": "sessions revoked",
              "contact": "dpo@alpha.example", "notify": "yes"}  # fmt: skip
    assert ops.post(f"{detail}/breach", data=fields).status_code == 403
    with platform_session(db) as session:
        assert session.get(Incident, incident_id).breach_marked_at is None
    answer = post_form(ops, detail, f"{detail}/breach", **fields)
    assert answer.status_code == 303, answer.text
    with platform_session(db) as session:
        assert session.get(Incident, incident_id).breach_marked_at is not None
    listed = admin.get("/console/incidents")
    assert "Stolen session" in listed.text and "personal-data breach" in listed.text
    page = admin.get(f"/console/incidents/{incident_id}")
    assert page.status_code == 200
    assert "Breach clock" in page.text and "supervisory authority must be told by" in page.text
    assert "sessions revoked" in page.text and "dpo@alpha.example" in page.text
    assert "institution" in page.text and "sent" in page.text  # the institution's notice, decided and sent
    # Another institution's incident is not found, and not listed.
    theirs = _incident(db, other_tenant.id)
    assert admin.get(f"/console/incidents/{theirs}").status_code == 404
    assert str(theirs) not in admin.get("/console/incidents").text


def test_evidence_shows_each_control_and_the_report_its_month(person, tenant, ops):
    auditor = person(tenant, "aud", [BuiltinRole.AUDITOR])
    page = auditor.get("/console/evidence")
    assert page.status_code == 200
    assert page.text.count('class="state ') >= 5
    assert "holds" in page.text and "Signed with key" in page.text
    report = auditor.get("/console/security-report?month=2026-01")
    assert report.status_code == 200 and "Month 2026-01" in report.text
    assert auditor.get("/console/security-report?month=2026-13").status_code == 422
    platform = ops.get("/operator/evidence")
    assert platform.status_code == 200 and "the platform" in platform.text
    one = ops.get(f"/operator/evidence?institution={tenant.id}")
    assert one.status_code == 200 and tenant.name in one.text
    assert ops.get("/operator/security-report").status_code == 200
