"""The monthly security report: the numbers are what happened (sign-in failures on the days they failed, a
request past its deadline, a drill), an institution's report holds nothing of another's, the page carries
pygal's SVG and no script, and the report reaches the designated contacts once a month."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select, text

from bookwarden.access.roles.notices import add_security_contact
from bookwarden.audit import record as audit_record
from bookwarden.backup.models import Backup, BackupDrill, BackupKind, BackupStatus, DrillOutcome
from bookwarden.core.errors import Forbidden
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, BuiltinRole, Permission
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.identity import passwords
from bookwarden.identity.accounts import service as accounts
from bookwarden.identity.models import AccountKind, AccountStatus
from bookwarden.incidents import affected
from bookwarden.incidents import service as incidents
from bookwarden.incidents.models import IncidentCategory
from bookwarden.incidents.models import Severity as IncidentSeverity
from bookwarden.library import records as library
from bookwarden.library import schemas
from bookwarden.monitor.alerts import service as alerts
from bookwarden.monitor.fim import service as fim
from bookwarden.monitor.fim.models import HostCheck, HostScan
from bookwarden.monitor.response import blocks
from bookwarden.monitor.response.addresses import Allowlist
from bookwarden.notify.models import OutboxMessage
from bookwarden.notify.service import open_mail
from bookwarden.privacy.requests import service as requests
from bookwarden.reports import jobs, render, security
from bookwarden.reports.registry import SECTIONS, Month, Scope
from tests.helpers import acting, fresh_address, stored_hash
from tests.reports.conftest import approve_baseline

PASSWORD = "violet tractor mango 42 harbour"
NOW = datetime.now(UTC)
MONTH = Month.of(NOW).previous()


class _Clock(datetime):
    """The audit trail's clock, set to a day of the month reported (events are dated when recorded)."""

    at: datetime = NOW

    @classmethod
    def now(cls, tz=None):
        return cls.at


@pytest.fixture
def clock(monkeypatch):
    monkeypatch.setattr(audit_record, "datetime", _Clock)

    def set_day(day: int, hour: int = 10) -> None:
        _Clock.at = MONTH.start.replace(day=day, hour=hour)

    yield set_day
    _Clock.at = NOW


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch):
    monkeypatch.setattr(passwords, "DEFAULT", passwords.OWASP_FLOOR)


def _admin(tenant_id) -> Principal:
    return Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant_id, BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN])


def _account(db, tenant, username: str) -> None:
    with tenant_session(db, tenant.id) as session:
        account = accounts.create_account(session, _admin(tenant.id), kind=AccountKind.STAFF, username=username)
        account.password_hash = stored_hash(PASSWORD, passwords.DEFAULT)
        account.status = AccountStatus.ACTIVE


def _sign_in(browser, tenant, username: str, password: str) -> int:
    client = browser(fresh_address())  # each attempt from its own address: no throttling in the way
    answer = client.post(
        "/api/v1/auth/login", json={"institution": tenant.slug, "username": username, "password": password}
    )
    return answer.status_code


def _request_past_its_deadline(db, tenant, *, answered: bool) -> uuid.UUID:
    """A request received on the 2nd of the month, due on the 20th; denied on the 10th when `answered`."""
    desk = Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant.id, {Permission.PRIVACY_REQUESTS_REGISTER})
    officer = Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant.id, {Permission.PRIVACY_REQUESTS_HANDLE})
    with tenant_session(db, tenant.id) as session:
        patron = library.create(session, library.PATRONS, schemas.PatronCreate(name="Ada Reader"))
        request = requests.register_for_patron(session, desk, patron.id, requests.RequestKind.ACCESS)
        if answered:
            requests.decide(session, officer, request.id, requests.Decision.DENY, "no such records are held")
        session.execute(
            text(
                "UPDATE privacy_requests SET received_at = :received, due_at = :due, "
                "decided_at = CASE WHEN decided_at IS NULL THEN NULL ELSE CAST(:decided AS timestamptz) END "
                "WHERE tenant_id = :t AND id = :id"
            ),
            {
                "received": MONTH.start.replace(day=2),
                "due": MONTH.start.replace(day=20),
                "decided": MONTH.start.replace(day=10),
                "t": tenant.id,
                "id": request.id,
            },
        )
        return request.id


def _drills_and_backups(db, tenant_id, other_id) -> None:
    with platform_session(db) as session:
        made = {}
        for kind, institution in (
            (BackupKind.PLATFORM, None),
            (BackupKind.TENANT, tenant_id),
            (BackupKind.TENANT, other_id),
        ):
            backup = Backup(
                kind=kind,
                institution_id=institution,
                status=BackupStatus.COMPLETE,
                directory="/nonexistent",
                manifest_sha256="0" * 64,
                started_at=MONTH.start.replace(day=5),
            )
            session.add(backup)
            made[(kind, institution)] = backup
        session.flush()
        for day, outcome in ((6, DrillOutcome.PASSED), (7, DrillOutcome.FAILED)):
            session.add(
                BackupDrill(
                    backup_id=made[(BackupKind.PLATFORM, None)].id,
                    started_at=MONTH.start.replace(day=day),
                    finished_at=MONTH.start.replace(day=day, hour=1),
                    outcome=outcome,
                    failure="step chunks: a chunk does not authenticate" if outcome == DrillOutcome.FAILED else None,
                    steps=[],
                )
            )


@pytest.fixture
def month_of_events(db, tenant, other_tenant, browser, clock):
    """A month in two institutions: accounts made, sign-ins failing on the 3rd and the 17th, requests, drills."""
    clock(1)
    _account(db, tenant, "ada")
    _account(db, other_tenant, "grace")
    clock(3)
    assert [_sign_in(browser, tenant, "ada", "wrong password one") for _ in range(2)] == [401, 401]
    assert [_sign_in(browser, other_tenant, "grace", "wrong password") for _ in range(4)] == [401] * 4
    clock(17)
    assert [_sign_in(browser, tenant, "ada", "wrong password two") for _ in range(3)] == [401] * 3
    assert _sign_in(browser, tenant, "ada", PASSWORD) == 200
    _request_past_its_deadline(db, tenant, answered=False)
    _request_past_its_deadline(db, tenant, answered=True)
    _drills_and_backups(db, tenant.id, other_tenant.id)


def _section(report, key):
    return next(s for s in report["sections"] if s["key"] == key)


def test_the_institutions_report_counts_what_happened_that_month(db, tenant, other_tenant, month_of_events):
    reader = acting(tenant.id, Permission.REPORTS_SECURITY_READ)
    report = security.read_report(db, reader, MONTH)
    assert report["month"] == str(MONTH) and report["complete"] is True

    sign_ins = _section(report, "sign_ins")["data"]
    days = {d["day"]: d for d in sign_ins["days"]}
    assert len(days) == MONTH.days
    assert days[f"{MONTH}-03"]["failed"] == 2 and days[f"{MONTH}-03"]["succeeded"] == 0
    assert days[f"{MONTH}-17"]["failed"] == 3 and days[f"{MONTH}-17"]["succeeded"] == 1
    assert sign_ins["totals"]["failed"] == 5 and sign_ins["totals"]["succeeded"] == 1
    assert sum(d["failed"] for k, d in days.items() if k not in (f"{MONTH}-03", f"{MONTH}-17")) == 0

    requests_seen = _section(report, "privacy_requests")["data"]["totals"]
    assert requests_seen["received"] == 2 and requests_seen["received_by_kind"] == {"access": 2}
    assert requests_seen["answered_on_time"] == 1 and requests_seen["answered_late"] == 0
    assert requests_seen["open_past_deadline"] == 1
    assert requests_seen["most_days_past_deadline"] == (MONTH.end - MONTH.start.replace(day=20)).days

    backups = _section(report, "backups")["data"]
    assert backups["drills_passed"] == 1 and backups["drills_failed"] == 1
    assert backups["backups"] == {"platform": {"complete": 1}, "tenant": {"complete": 1}}  # not the other's

    changes = _section(report, "entitlement_changes")["data"]
    assert changes["by_action"] == {"account.created": 1}

    # Every section is there, in the registry's order, with numbers (nothing of monitoring happened that month).
    assert all(s["available"] for s in report["sections"])
    assert [s["key"] for s in report["sections"]] == list(SECTIONS)
    assert _section(report, "alerts")["data"]["total"] == 0

    # Nothing of the other institution: not its failures (4 on the 3rd), not its name, id or backup.
    text_of = json.dumps(report)
    assert str(other_tenant.id) not in text_of and other_tenant.slug not in text_of
    assert other_tenant.name not in text_of


def test_the_platform_report_adds_every_institution(db, tenant, other_tenant, month_of_events):
    report = security.read_report(db, acting(None, Permission.PLATFORM_REPORTS_READ), MONTH)
    days = {d["day"]: d for d in _section(report, "sign_ins")["data"]["days"]}
    assert days[f"{MONTH}-03"]["failed"] == 2 + 4
    assert _section(report, "privacy_requests")["data"]["institutions_past_deadline"] == [
        {"institution": tenant.slug, "open_past_deadline": 1}
    ]
    assert _section(report, "backups")["data"]["backups"]["tenant"] == {"complete": 2}


def test_an_institution_reads_its_own_report_only(db, tenant, other_tenant):
    reader = acting(tenant.id, Permission.REPORTS_SECURITY_READ)
    with pytest.raises(Forbidden):
        security.read_report(db, reader, MONTH, other_tenant.id)
    with pytest.raises(Forbidden):
        security.read_report(db, acting(tenant.id, Permission.AUDIT_READ), MONTH)
    with pytest.raises(Forbidden):
        security.read_report(db, acting(None, Permission.PLATFORM_USAGE_READ), MONTH)


def test_the_page_has_pygal_svg_charts_and_no_script(db, tenant, month_of_events):
    report = security.read_report(db, acting(tenant.id, Permission.REPORTS_SECURITY_READ), MONTH)
    page = render.report_html(report)
    assert page.count('class="pygal-chart"') >= 3 and "<svg" in page
    assert "<script" not in page.lower() and "javascript:" not in page.lower()
    assert "Alerts by severity" in page and "Not yet available" not in page


def test_values_are_escaped_on_the_page(db, tenant):
    report = security.build(db, Scope(tenant.id, "<img src=x onerror=alert(1)>"), MONTH)
    page = render.report_html(report)
    assert "<img src=x" not in page and "&lt;img src=x" in page


def test_the_routes_give_json_and_the_page(client_for, operator_token, app, tenant, other_tenant, month_of_events):
    client = client_for(tenant, permissions={Permission.REPORTS_SECURITY_READ})
    answer = client.get("/api/v1/reports/security", params={"month": str(MONTH)})
    assert answer.status_code == 200, answer.text
    assert _section(answer.json(), "sign_ins")["data"]["totals"]["failed"] == 5
    page = client.get("/api/v1/reports/security", params={"month": str(MONTH), "format": "html"})
    assert page.status_code == 200 and "pygal-chart" in page.text and "<script" not in page.text
    for wrong in ("2026-13", "0000-01", "9999-12", "last month"):
        assert client.get("/api/v1/reports/security", params={"month": wrong}).status_code == 422
    refused = client_for(tenant, permissions={Permission.AUDIT_READ}).get(
        "/api/v1/reports/security", params={"month": str(MONTH)}
    )
    assert refused.status_code == 403

    from fastapi.testclient import TestClient

    operator = TestClient(app, raise_server_exceptions=False)
    operator.headers["Authorization"] = f"Bearer {operator_token}"
    one = operator.get(
        "/api/v1/operator/reports/security", params={"month": str(MONTH), "tenant_id": str(other_tenant.id)}
    )
    assert one.status_code == 200, one.text
    assert one.json()["scope"]["tenant_id"] == str(other_tenant.id)
    assert _section(one.json(), "sign_ins")["data"]["totals"]["failed"] == 4


def _security_mail(db, tenant_id) -> list:
    with tenant_session(db, tenant_id) as session:
        rows = session.scalars(select(OutboxMessage).where(OutboxMessage.tenant_id == tenant_id)).all()
        return [open_mail(session, row) for row in rows if "security report" in open_mail(session, row).subject]


def test_the_monthly_job_mails_each_institutions_contacts_once(db, tenant, other_tenant, month_of_events):
    _Clock.at = NOW  # the job runs in the month after the one it reports
    with tenant_session(db, tenant.id) as session:
        add_security_contact(session, "soc@alpha.example")
        add_security_contact(session, "ciso@alpha.example")
    mailed = jobs.mail_last_month(db, NOW)
    assert {scope.tenant_id for scope in mailed} == {None, tenant.id, other_tenant.id}
    sent = _security_mail(db, tenant.id)
    assert sorted(m.to for m in sent) == ["ciso@alpha.example", "soc@alpha.example"]
    assert f"security report for {MONTH}" in sent[0].subject
    assert "5 failed passwords" in sent[0].body and "1 open past their deadline" in sent[0].body
    assert _security_mail(db, other_tenant.id) == []  # no security contact designated: nobody to mail
    # The platform's report goes to management through a job (it belongs to no institution's outbox).
    with platform_session(db) as session:
        queued = session.scalar(text("SELECT count(*) FROM jobs WHERE kind = :k"), {"k": security.MAIL_MANAGEMENT_JOB})
    assert queued == 1
    # Run again the same month: nothing is mailed twice.
    assert jobs.mail_last_month(db, NOW + timedelta(hours=1)) == []
    assert len(_security_mail(db, tenant.id)) == 2


def test_mailing_on_demand_reaches_the_security_contacts(db, tenant):
    with tenant_session(db, tenant.id) as session:
        add_security_contact(session, "soc@alpha.example")
    operator = acting(None, Permission.PLATFORM_REPORTS_READ)
    assert security.mail_report(db, operator, MONTH, tenant.id) == 1
    with tenant_session(db, tenant.id) as session:
        count = session.scalar(select(func.count()).select_from(OutboxMessage))
    assert count >= 1
    assert [m.to for m in _security_mail(db, tenant.id)] == ["soc@alpha.example"]


THIS_MONTH = Month.of(NOW)
HANDLER = acting(None, Permission.PLATFORM_INCIDENTS_HANDLE)
REVIEW = {"root_cause": "a scanner", "actions_taken": "none", "lessons_learned": "none", "follow_up": "none"}


def _alerts(db, institution_id, rule: str, severities: list[str]) -> None:
    with platform_session(db) as session:
        for n, severity in enumerate(severities):
            alerts.raise_alert(
                session, rule=rule, title=rule, severity=severity, group={"n": n}, institution_id=institution_id
            )


def _incident(db, title: str, institutions: list, category=IncidentCategory.UNAUTHORISED_ACCESS):
    with platform_session(db) as session:
        incident_id = incidents.open_incident(session, HANDLER, title=title, summary="seen in the logs").id
    if institutions:
        affected.triage(
            db, HANDLER, incident_id, severity=IncidentSeverity.LOW, category=category, institutions=institutions
        )
    return incident_id


@pytest.fixture
def monitored_month(db, tenant, other_tenant, fim_settings):
    """This month's monitoring: alerts naming each institution (and the platform), two blocks (one lifted), three
    incidents (one of each institution's, one of the platform's only; the first closed), and a file changed."""
    _alerts(db, tenant.id, "web.scan", ["critical", "high", "high", "low", "informational"])
    _alerts(db, other_tenant.id, "other.rule", ["medium", "medium", "medium"])
    _alerts(db, None, "host_fim_change", ["high"])
    ops = acting(None, Permission.PLATFORM_BLOCKS_MANAGE)
    with platform_session(db) as session:
        blocks.block(session, ops, "198.51.100.7", timedelta(minutes=30), Allowlist([]))
        lifted = blocks.block(session, ops, "203.0.113.9", timedelta(minutes=30), Allowlist([]))
        blocks.unblock(session, ops, lifted.id)
    ours = _incident(db, "Scan of the portal", [tenant.id], IncidentCategory.FALSE_POSITIVE)
    with platform_session(db) as session:
        incidents.close(session, HANDLER, ours, REVIEW)
    theirs = _incident(db, "Their account taken over", [other_tenant.id])
    platform_only = _incident(db, "A platform matter", [])
    approve_baseline(db, fim_settings)
    watched = fim_settings.fim_paths
    (Path(watched) / "code.py").write_text("print('changed, and longer')\n")
    fim.run_scan(db, fim_settings)
    fim.run_scan(db, fim_settings)  # the same change, reported again: counted once
    with platform_session(db) as session:
        session.add(HostScan(check_kind=HostCheck.ROOTCHECK, full=True, finished_at=NOW, findings=2, details=[]))
    return SimpleNamespace(ours=ours, theirs=theirs, platform_only=platform_only)


def test_the_monitoring_and_incident_sections_count_what_happened(db, tenant, other_tenant, monitored_month):
    report = security.read_report(db, acting(tenant.id, Permission.REPORTS_SECURITY_READ), THIS_MONTH)

    assert _section(report, "alerts")["data"] == {
        "total": 5,
        "by_severity": {"critical": 1, "high": 2, "medium": 0, "low": 1, "informational": 1},
        "by_rule": {"web.scan": 5},
    }
    assert _section(report, "blocked_addresses")["data"] == {
        "scope": "platform",
        "blocked": 2,
        "lifted": 1,
        "expired": 0,
        "active_at_end": 1,
        "by_reason": {"manual": 2},
    }
    assert _section(report, "incidents")["data"] == {
        "opened": 1,
        "closed": 1,
        "open_at_end": 0,
        "by_severity": {"critical": 0, "high": 0, "medium": 0, "low": 1},
        "breaches": 0,
        "notices_sent": 0,
    }
    host = _section(report, "file_integrity")["data"]
    assert host["scope"] == "platform" and host["last_scan_at"] is not None
    assert host["files_watched"] == 3  # the root and its two files
    assert host["changes"] == 1 and host["unexpected_changes"] == 1
    assert host["rootcheck_runs"] == 1 and host["rootcheck_findings"] == 2

    # Nothing of the other institution's alerts or incidents, nor the platform's own.
    text_of = json.dumps(report)
    assert "other.rule" not in text_of and "host_fim_change" not in text_of
    for incident_id in (monitored_month.theirs, monitored_month.platform_only):
        assert str(incident_id) not in text_of
    assert str(other_tenant.id) not in text_of

    page = render.report_html(report)
    assert "Alerts by severity" in page and "<script" not in page.lower()
    assert "5 alerts (critical 1, high 2, low 1, informational 1)" in security.mail_context(report)["sections"][2][1]

    theirs = security.build(db, Scope(other_tenant.id, "other"), THIS_MONTH)
    assert _section(theirs, "alerts")["data"]["by_rule"] == {"other.rule": 3}
    assert _section(theirs, "incidents")["data"]["opened"] == 1
    assert _section(theirs, "incidents")["data"]["open_at_end"] == 1


def test_the_platform_report_counts_every_alert_and_incident(db, monitored_month):
    report = security.read_report(db, acting(None, Permission.PLATFORM_REPORTS_READ), THIS_MONTH)
    found = _section(report, "alerts")["data"]
    assert found["total"] == 9 and found["by_severity"]["medium"] == 3 and found["by_severity"]["high"] == 3
    assert found["by_rule"] == {"web.scan": 5, "other.rule": 3, "host_fim_change": 1}
    assert _section(report, "incidents")["data"] | {"by_severity": None} == {
        "opened": 3,
        "closed": 1,
        "open_at_end": 2,
        "by_severity": None,
        "breaches": 0,
        "notices_sent": 0,
    }
    # A month before any of it: nothing.
    earlier = security.build(db, Scope(None, "the platform"), THIS_MONTH.previous())
    assert _section(earlier, "alerts")["data"]["total"] == 0
    assert _section(earlier, "blocked_addresses")["data"]["blocked"] == 0
    assert _section(earlier, "incidents")["data"]["opened"] == 0
    assert _section(earlier, "file_integrity")["data"]["changes"] == 0
