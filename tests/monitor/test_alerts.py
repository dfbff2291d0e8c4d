"""Stored alerts: one row per rule and group while live, repeats folded in; seen by operators, and by an
institution only when it concerns that institution; acknowledged and closed by operators, audited; subscribers told
after commit."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from bookwarden.audit.events import PLATFORM_CHAIN, Action
from bookwarden.core.errors import Conflict, Forbidden, NotFound
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, BuiltinRole, Permission
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.jobs.models import Job
from bookwarden.monitor.alerts import service, subscribers
from bookwarden.monitor.alerts.delivery import MAIL_JOB, WEBHOOK_JOB, DeliverySettings
from bookwarden.monitor.alerts.models import AlertStatus, StoredAlert
from bookwarden.monitor.engine import Alert
from tests.helpers import acting
from tests.monitor.helpers import T0

OPERATOR = acting(None, Permission.PLATFORM_ALERTS_READ, Permission.PLATFORM_ALERTS_MANAGE)
QUIET = DeliverySettings(webhook_url=None)


def _correlation(first=T0, last=T0, count=5, final=False, tenant=None, address="203.0.113.9") -> Alert:
    return Alert(
        rule="sshd_brute_force",
        title="SSH brute force",
        severity="high",
        kind="correlation",
        first_seen=first,
        last_seen=last,
        count=count,
        source_address=address,
        group={"source_address": address},
        lines=(),
        final=final,
        tenant_id=tenant,
    )


def _detection(at=T0, address="198.51.100.7", tenant=None) -> Alert:
    return Alert("web_sql_injection", "SQL injection", "high", "detection", at, at, 1, address, {}, (), True, tenant)


def _rows(db) -> list[StoredAlert]:
    with platform_session(db) as session:
        return list(session.scalars(select(StoredAlert).order_by(StoredAlert.created_at)))


def test_an_opening_alert_and_its_final_alert_are_one_stored_alert(db):
    with platform_session(db) as session:
        opened = service.record_engine_alert(session, _correlation(count=5), QUIET)
        final = service.record_engine_alert(
            session, _correlation(last=T0 + timedelta(seconds=40), count=80, final=True), QUIET
        )

    assert opened.created and not final.created
    [row] = _rows(db)
    assert (row.count, row.first_seen, row.last_seen) == (80, T0, T0 + timedelta(seconds=40))
    assert row.source_address == "203.0.113.9" and row.status == AlertStatus.OPEN


def test_the_same_rule_and_group_firing_again_while_open_folds_in_and_a_closed_one_does_not(db):
    later = T0 + timedelta(hours=1)
    with platform_session(db) as session:
        service.record_engine_alert(session, _correlation(count=80, final=True), QUIET)
        again = service.record_engine_alert(session, _correlation(first=later, last=later, count=5), QUIET)
        service.record_engine_alert(session, _correlation(first=later, last=later, count=7, final=True), QUIET)
        other = service.record_engine_alert(session, _correlation(address="192.0.2.1"), QUIET)

    assert not again.created and other.created
    rows = _rows(db)
    assert sorted((r.source_address, r.count) for r in rows) == [("192.0.2.1", 5), ("203.0.113.9", 87)]

    with platform_session(db) as session:
        service.close(session, OPERATOR, again.alert.id)
        reopened = service.record_engine_alert(session, _correlation(first=later + timedelta(hours=1)), QUIET)
    assert reopened.created and reopened.alert.id != again.alert.id


def test_repeated_detections_from_one_address_count_in_one_alert(db):
    with platform_session(db) as session:
        for _ in range(3):
            service.record_engine_alert(session, _detection(), QUIET)  # the same second: still three matches
        service.record_engine_alert(session, _detection(address="198.51.100.8"), QUIET)
    assert sorted((r.source_address, r.count) for r in _rows(db)) == [("198.51.100.7", 3), ("198.51.100.8", 1)]


def test_a_new_alert_queues_mail_above_the_threshold_and_the_webhook_and_a_repeat_queues_nothing(db):
    settings = DeliverySettings(mail_severity="high", webhook_url="http://127.0.0.1:9/hook")
    with platform_session(db) as session:
        high = service.record_engine_alert(session, _detection(), settings)
        service.record_engine_alert(session, _detection(), settings)
        low = service.raise_alert(session, rule="check.low", title="Low", severity="low", settings=settings)
        jobs = [(j.kind, j.payload["alert_id"]) for j in session.scalars(select(Job).order_by(Job.id))]
    assert jobs == [(MAIL_JOB, str(high.alert.id)), (WEBHOOK_JOB, str(high.alert.id)), (WEBHOOK_JOB, str(low.alert.id))]


def test_raise_alert_groups_like_the_engines_and_refuses_an_unknown_severity(db, tenant):
    with platform_session(db) as session:
        first = service.raise_alert(
            session,
            rule="audit.verification_failed",
            title="Audit verification failed",
            severity="critical",
            summary="chain broken at seq 12",
            group={"chain": tenant.id},
            institution_id=tenant.id,
        )
        second = service.raise_alert(
            session,
            rule="audit.verification_failed",
            title="Audit verification failed",
            severity="critical",
            group={"chain": tenant.id},
            institution_id=tenant.id,
        )
        with pytest.raises(Exception, match="severity 'dire'"):
            service.raise_alert(session, rule="x", title="x", severity="dire")
    assert first.created and not second.created
    assert second.alert.count == 2 and second.alert.grouped == {"chain": str(tenant.id)}


def test_an_alert_concerns_an_institution_only_when_every_event_does(db, tenant, other_tenant):
    with platform_session(db) as session:
        one = service.record_engine_alert(session, _detection(tenant=str(tenant.id)), QUIET)
        platform = service.record_engine_alert(
            session, _detection(tenant="00000000-0000-0000-0000-000000000000"), QUIET
        )
    assert one.alert.institution_id == tenant.id
    assert platform.alert.institution_id is None


def test_acknowledge_and_close_are_the_operators_and_audited(db, tenant):
    reader = acting(None, Permission.PLATFORM_ALERTS_READ)
    with platform_session(db) as session:
        stored = service.raise_alert(session, rule="check", title="Check", severity="medium").alert
    with platform_session(db) as session, pytest.raises(Forbidden):
        service.acknowledge(session, reader, stored.id)
    with platform_session(db) as session:
        service.acknowledge(session, OPERATOR, stored.id)
    with platform_session(db) as session, pytest.raises(Conflict):
        service.acknowledge(session, OPERATOR, stored.id)
    with platform_session(db) as session:
        closed = service.close(session, OPERATOR, stored.id)
    with platform_session(db) as session, pytest.raises(NotFound):
        service.close(session, OPERATOR, uuid.uuid4())
    assert closed.status == AlertStatus.CLOSED and closed.closed_by == OPERATOR.person
    with tenant_session(db, PLATFORM_CHAIN) as session:
        actions = session.scalars(
            text("SELECT action FROM audit_events WHERE tenant_id = :t AND target_id = :a ORDER BY seq"),
            {"t": PLATFORM_CHAIN, "a": stored.id},
        ).all()
    assert actions == [Action.ALERT_ACKNOWLEDGED, Action.ALERT_CLOSED]


def test_an_institution_reads_its_own_alerts_and_no_other(db, tenant, other_tenant, client_for, app, operator_token):
    with platform_session(db) as session:
        own = service.raise_alert(session, rule="r.own", title="Own", severity="high", institution_id=tenant.id).alert
        theirs = service.raise_alert(
            session, rule="r.theirs", title="Theirs", severity="high", institution_id=other_tenant.id
        ).alert
        platform = service.raise_alert(session, rule="r.platform", title="Platform", severity="high").alert
    admin = client_for(tenant, permissions=BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN])
    officer = client_for(tenant, permissions=BUILTIN_PERMISSIONS[BuiltinRole.SECURITY_OFFICER])

    listed = admin.get("/api/v1/alerts")
    assert listed.status_code == 200, listed.text
    assert [a["id"] for a in listed.json()] == [str(own.id)]
    assert officer.get(f"/api/v1/alerts/{own.id}").status_code == 200
    for hidden in (theirs.id, platform.id, uuid.uuid4()):
        answer = admin.get(f"/api/v1/alerts/{hidden}")
        assert answer.status_code == 404, answer.text  # another's alert answers as a missing one
    # Without the permission, and on the operators' routes: refused.
    staff = client_for(tenant, permissions=BUILTIN_PERMISSIONS[BuiltinRole.CIRCULATION_STAFF])
    assert staff.get("/api/v1/alerts").status_code == 403
    assert admin.get("/api/v1/operator/alerts").status_code == 403
    assert admin.post(f"/api/v1/operator/alerts/{own.id}/close").status_code == 403
    # Even reading the table directly in its context, the institution sees only its row (row-level security).
    with tenant_session(db, tenant.id) as session:
        assert [r.id for r in session.scalars(select(StoredAlert))] == [own.id]
        assert session.execute(text("UPDATE monitor_alerts SET status = 'closed'")).rowcount == 0


def test_operators_read_every_alert_and_handle_it_over_http(db, tenant, app, operator_token):
    from fastapi.testclient import TestClient

    with platform_session(db) as session:
        stored = service.raise_alert(session, rule="r.one", title="One", severity="high", institution_id=tenant.id)
    client = TestClient(app, raise_server_exceptions=False)
    client.headers["Authorization"] = f"Bearer {operator_token}"

    listed = client.get("/api/v1/operator/alerts", params={"severity": "medium", "status": "open"})
    assert [a["id"] for a in listed.json()] == [str(stored.alert.id)]
    assert client.get("/api/v1/operator/alerts", params={"severity": "critical"}).json() == []
    assert client.post(f"/api/v1/operator/alerts/{stored.alert.id}/acknowledge").json()["status"] == "acknowledged"
    assert client.post(f"/api/v1/operator/alerts/{stored.alert.id}/close").json()["status"] == "closed"
    assert client.post(f"/api/v1/operator/alerts/{stored.alert.id}/close").status_code == 409
    assert client.get(f"/api/v1/operator/alerts/{uuid.uuid4()}").status_code == 404
    forged = TestClient(app, raise_server_exceptions=False)
    forged.headers["Authorization"] = "Bearer bw_not_a_real_token"
    assert forged.get("/api/v1/operator/alerts").status_code == 401


def test_subscribers_hear_of_each_stored_alert(db):
    heard = []
    callback = subscribers.on_alert(lambda _db, recorded: heard.append((recorded.alert.rule, recorded.created)))
    subscribers.on_alert(callback)  # registered once, whatever the imports
    broken = subscribers.on_alert(lambda _db, recorded: 1 / 0)  # a failing subscriber does not stop the others
    try:
        with platform_session(db) as session:
            recorded = [service.record_engine_alert(session, _detection(), QUIET) for _ in range(2)]
        subscribers.tell(db, recorded)
    finally:
        subscribers._callbacks.remove(callback)
        subscribers._callbacks.remove(broken)
    assert heard == [("web_sql_injection", True), ("web_sql_injection", False)]


def test_alerts_quiet_for_90_days_lose_their_address_and_group(db):
    from bookwarden.monitor.alerts.jobs import forget_addresses

    with platform_session(db) as session:
        old = service.record_engine_alert(session, _correlation(), QUIET).alert
        recent = service.record_engine_alert(session, _correlation(address="192.0.2.77"), QUIET).alert
        session.execute(
            text("UPDATE monitor_alerts SET last_seen = now() - interval '91 days' WHERE id = :id"), {"id": old.id}
        )
        session.execute(
            text("UPDATE monitor_alerts SET last_seen = now() - interval '89 days' WHERE id = :id"),
            {"id": recent.id},
        )

    assert forget_addresses(db) == 1
    assert forget_addresses(db) == 0
    with platform_session(db) as session:
        forgotten, kept = session.get(StoredAlert, old.id), session.get(StoredAlert, recent.id)
        session.refresh(forgotten)
        session.refresh(kept)
    assert (forgotten.source_address, forgotten.grouped, forgotten.count) == (None, {}, 5)
    assert kept.source_address == "192.0.2.77"
    # Nothing folds into a forgotten alert: the same group opens a new one.
    with platform_session(db) as session:
        assert service.record_engine_alert(session, _correlation(first=T0 + timedelta(days=1)), QUIET).created
