"""Escalation to the platform's DPO: late requests and complaints of every institution, metadata only.

The hourly deadline jobs raise an escalation when a request passes its due date or a complaint goes
unacknowledged, at risk or overdue; the DPO (platform staff holding platform.privacy.oversight) lists
them across institutions, sees the matter's state but never its content, and takes one up, which the
institution sees in its own trail. Nobody else lists them: tenant staff, other operators, or a tenant
transaction calling the definer function directly.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from bookwarden.core.permissions import BUILTIN_PERMISSIONS, BuiltinRole, Permission
from bookwarden.db.session import platform_session
from bookwarden.identity.tokens import service as tokens
from bookwarden.privacy.complaints import service as complaints
from bookwarden.privacy.escalations import service as dpo_escalations
from bookwarden.privacy.escalations.models import DpoEscalation
from bookwarden.privacy.escalations.service import View
from bookwarden.privacy.requests import service as requests
from bookwarden.privacy.requests.service import Decision
from tests.privacy.test_complaints import SUBJECT
from tests.privacy.test_complaints import _age as _age_complaint
from tests.privacy.test_privacy_requests import (
    OFFICER,
    _age,
    _events,
    _mails,
    _officer_account,
    _principal,
    _staff_request,
)

ESCALATIONS = "/api/v1/operator/privacy/escalations"
PATRON_NAME = "Ann Patron"  # what _staff_request's patron is called: must never reach the DPO


def _operator(app, db, permissions) -> TestClient:
    with platform_session(db) as session:
        _, secret = tokens.issue_operator_token(session, "dpo", sorted(permissions), timedelta(hours=1))
    client = TestClient(app, raise_server_exceptions=False)
    client.headers["Authorization"] = f"Bearer {secret}"
    return client


@pytest.fixture
def dpo(app, db) -> TestClient:
    return _operator(app, db, {Permission.PLATFORM_PRIVACY_OVERSIGHT})


def _overdue_request(in_tenant, tenant):
    with in_tenant(tenant) as session:
        _officer_account(session, f"officer-{uuid.uuid4().hex[:6]}")
        request = _staff_request(session)
        _age(session, request.id, timedelta(days=31))  # a day past the 30 days
    return request


def test_an_overdue_request_reaches_the_dpo_once_as_metadata_only(in_tenant, tenant, db, dpo):
    request = _overdue_request(in_tenant, tenant)

    first, again = requests.process_deadlines(db), requests.process_deadlines(db)

    assert (first.escalated, again.escalated) == (1, 0)
    listed = dpo.get(ESCALATIONS)
    assert listed.status_code == 200, listed.text
    [shown] = listed.json()
    assert shown["tenant_id"] == str(tenant.id) and shown["tenant_slug"] == tenant.slug
    matter = (shown["subject_kind"], shown["subject_id"], shown["level"])
    assert matter == ("privacy_request", str(request.id), "overdue")
    assert (shown["subject_state"], shown["days_past_due"], shown["acknowledged_at"]) == ("identity_verified", 1, None)
    assert PATRON_NAME not in listed.text and "ann.patron" not in listed.text
    with in_tenant(tenant) as session:
        [(_, subject, body)] = _mails(session)  # the officer's mail says the DPO was told
        [(_, _, details)] = [e for e in _events(session, request.id) if e[0] == "privacy_request.escalated"]
    assert "overdue" in subject and "data protection officer has been told" in " ".join(body.split())
    assert details["dpo_escalation"] == shown["id"]


def test_a_complaint_at_risk_then_overdue_is_escalated_at_each_level(in_tenant, tenant, db, dpo):
    with in_tenant(tenant) as session:
        _officer_account(session, "olga")
        patron_id = _staff_request(session).patron_id
        complaint = complaints.register_for_patron(
            session, _principal(tenant.id, OFFICER), patron_id, subject=SUBJECT, body="The screen showed my loans."
        )
        session.execute(text("UPDATE complaints SET acknowledged_at = created_at WHERE id = :c"), {"c": complaint.id})
        _age_complaint(session, complaint.id, timedelta(days=36))
    complaints.process_deadlines(db)
    with in_tenant(tenant) as session:
        _age_complaint(session, complaint.id, timedelta(days=10))
    complaints.process_deadlines(db)

    listed = dpo.get(ESCALATIONS, params={"view": "all"}).json()
    # One transaction in this test: both were raised at the same moment, so compare them as a set.
    assert sorted((e["subject_kind"], e["subject_id"], e["level"]) for e in listed) == [
        ("complaint", str(complaint.id), "at_risk"),
        ("complaint", str(complaint.id), "overdue"),
    ]
    assert {e["subject_state"] for e in listed} == {"open"}
    assert SUBJECT not in json.dumps(listed)


def test_the_dpo_takes_one_up_and_the_institution_sees_it(in_tenant, tenant, db, dpo):
    request = _overdue_request(in_tenant, tenant)
    requests.process_deadlines(db)
    [shown] = dpo.get(ESCALATIONS).json()
    url = f"{ESCALATIONS}/{tenant.id}/{shown['id']}/acknowledge"

    taken = dpo.post(url)
    twice = dpo.post(url)

    assert taken.status_code == 200, taken.text
    assert taken.json()["acknowledged_at"] is not None and taken.json()["acknowledged_by"] is not None
    assert twice.status_code == 409
    assert dpo.get(ESCALATIONS).json() == []  # off the worklist...
    assert [e["id"] for e in dpo.get(ESCALATIONS, params={"view": "open"}).json()] == [shown["id"]]  # ...still open
    with in_tenant(tenant) as session:
        [(actor_kind, details)] = session.execute(
            text("SELECT actor_kind, details FROM audit_events WHERE action = 'dpo_escalation.acknowledged'")
        ).all()
        officer = _principal(tenant.id, OFFICER)
        requests.decide(session, officer, request.id, Decision.APPROVE)
        requests.start(session, officer, request.id)
        requests.complete(session, officer, request.id)
    assert actor_kind == "operator_token" and details["subject_id"] == str(request.id)
    assert dpo.get(ESCALATIONS, params={"view": "open"}).json() == []  # settled by the institution
    [settled] = dpo.get(ESCALATIONS, params={"view": "all"}).json()
    assert settled["subject_state"] == "completed"


def test_another_institutions_escalation_or_an_unknown_one_is_not_found(in_tenant, tenant, other_tenant, db, dpo):
    _overdue_request(in_tenant, tenant)
    requests.process_deadlines(db)
    [shown] = dpo.get(ESCALATIONS).json()

    assert dpo.post(f"{ESCALATIONS}/{other_tenant.id}/{shown['id']}/acknowledge").status_code == 404
    assert dpo.post(f"{ESCALATIONS}/{tenant.id}/{uuid.uuid4()}/acknowledge").status_code == 404
    assert dpo.post(f"{ESCALATIONS}/{uuid.uuid4()}/{shown['id']}/acknowledge").status_code == 404
    assert dpo.get(ESCALATIONS).json()[0]["acknowledged_at"] is None


def test_only_the_dpo_lists_them(app, db, in_tenant, tenant, client_for):
    _overdue_request(in_tenant, tenant)
    requests.process_deadlines(db)
    others = _operator(app, db, tokens.OPERATOR_TOKEN_PERMISSIONS - {Permission.PLATFORM_PRIVACY_OVERSIGHT})
    tenant_admin = client_for(tenant, permissions=BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN])

    assert others.get(ESCALATIONS).status_code == 403
    assert tenant_admin.get(ESCALATIONS).status_code == 403
    assert TestClient(app).get(ESCALATIONS).status_code == 401
    with pytest.raises(Exception, match="platform"):
        dpo_escalations.listing(db, _principal(tenant.id, {Permission.PLATFORM_PRIVACY_OVERSIGHT}))


def test_a_tenant_transaction_reads_no_other_institutions_escalations(in_tenant, tenant, other_tenant, db):
    _overdue_request(in_tenant, tenant)
    requests.process_deadlines(db)
    with in_tenant(other_tenant) as session:
        assert session.query(DpoEscalation).all() == []
        called = session.execute(text("SELECT count(*) FROM bookwarden_dpo_escalations('all', 100)")).scalar_one()
        assert called == 0  # the definer function reads empty inside any institution's transaction
    with in_tenant(tenant) as session:
        assert len(session.query(DpoEscalation).all()) == 1
        with pytest.raises(Exception, match="permission denied"), session.begin_nested():
            session.execute(text("DELETE FROM dpo_escalations"))


def test_the_view_must_be_one_of_three(dpo):
    assert dpo.get(ESCALATIONS, params={"view": "everything"}).status_code == 422
    assert [v.value for v in View] == ["unacknowledged", "open", "all"]
