"""Data-subject requests: received, verified, decided by the institution's privacy officers, carried out.

Every kind runs its lifecycle to completion against the area that does it; every move the lifecycle
does not allow is refused with 409; another institution's requests are not found; operator staff
cannot decide or carry one out; a staff-initiated erasure needs a second officer; the due date comes
from the institution's policy, and the hourly job reminds and escalates (time moves by rewriting the
stored times in SQL, as an old request would have them)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text

from bookwarden import areas
from bookwarden.access.approvals import service as approvals
from bookwarden.access.roles.notices import add_security_contact
from bookwarden.audit import record as audit
from bookwarden.core.errors import Conflict, Forbidden, InvalidInput, NotFound, SegregationOfDutiesError
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, LIBRARY_WRITE, BuiltinRole, Permission
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.core.sensitive import SensitiveDataRefused
from bookwarden.db.session import platform_session
from bookwarden.identity import passwords
from bookwarden.identity.accounts import service as accounts
from bookwarden.identity.models import AccountKind, AccountStatus
from bookwarden.jobs.models import JobSchedule
from bookwarden.jobs.service import handler_for
from bookwarden.library import records as library
from bookwarden.library.schemas import PatronCreate, PatronUpdate
from bookwarden.notify.models import OutboxMessage
from bookwarden.notify.service import open_mail
from bookwarden.privacy.requests import form as request_form
from bookwarden.privacy.requests import jobs as request_jobs
from bookwarden.privacy.requests import service as requests
from bookwarden.privacy.requests.models import PrivacyRequest, RequestKind, RequestState
from bookwarden.privacy.requests.service import Decision
from bookwarden.privacy.restrictions import service as restrictions
from tests.helpers import grant, stored_hash

PASSWORD = "violet tractor mango 42 harbour"
OFFICER = frozenset(BUILTIN_PERMISSIONS[BuiltinRole.PRIVACY_OFFICER])
DESK = frozenset(BUILTIN_PERMISSIONS[BuiltinRole.CIRCULATION_STAFF])
REQUESTS = "/api/v1/privacy/requests"
S = RequestState


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch):
    monkeypatch.setattr(passwords, "DEFAULT", passwords.OWASP_FLOOR)


def _principal(tenant_id, permissions, kind=PrincipalKind.API_TOKEN) -> Principal:
    return Principal(kind, uuid.uuid4(), tenant_id, frozenset(permissions))


def _patron(session, name="Ann Patron", email="ann.patron@alpha.example") -> uuid.UUID:
    return library.create(session, library.PATRONS, PatronCreate(name=name, email=email)).id


def _events(session, request_id) -> list[tuple[str, str, dict]]:
    """The request's audit events: those appended, then those this transaction queued for its commit."""
    appended = [
        tuple(row)
        for row in session.execute(
            text("SELECT action, outcome, details FROM audit_events WHERE target_id = :r ORDER BY seq"),
            {"r": request_id},
        )
    ]
    queued = [
        (e.action, e.outcome, e.details) for e in session.info.get(audit.PENDING, []) if e.target_id == request_id
    ]
    return appended + queued


def _staff_request(session, kind=RequestKind.ACCESS, **extra) -> PrivacyRequest:
    patron_id = extra.pop("patron_id", None) or _patron(session)
    return requests.register_for_patron(session, _principal(session.tenant_id, DESK), patron_id, kind, **extra)


def _in_state(session, state: RequestState, kind=RequestKind.ACCESS) -> PrivacyRequest:
    """A request brought to `state` through the lifecycle itself."""
    officer = _principal(session.tenant_id, OFFICER)
    if state is S.RECEIVED:
        return requests.receive(session, None, requests.RequestChannel.FORM, _patron(session), kind)
    request = _staff_request(session, kind)
    if state is S.ON_LEGAL_HOLD:
        return requests.hold(session, officer, request.id, "litigation hold, case 2026-14")
    if state is S.DENIED:
        return requests.decide(session, officer, request.id, Decision.DENY, "not the patron's data")
    if state in (S.APPROVED, S.IN_PROGRESS, S.COMPLETED):
        requests.decide(session, officer, request.id, Decision.APPROVE)
    if state in (S.IN_PROGRESS, S.COMPLETED):
        requests.start(session, officer, request.id)
    if state is S.COMPLETED:
        requests.complete(session, officer, request.id)
    assert request.state == state
    return request


def _officer_account(session, username="olivia", email=None):
    admin = _principal(session.tenant_id, BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN])
    account = accounts.create_account(
        session, admin, kind=AccountKind.STAFF, username=username, email=email or f"{username}@alpha.example"
    )
    account.status = AccountStatus.ACTIVE
    session.flush()
    grant(session, session.tenant_id, account.id, BuiltinRole.PRIVACY_OFFICER)
    return account


def _mails(session) -> list[tuple[str, str, str]]:
    rows = session.scalars(select(OutboxMessage).order_by(OutboxMessage.created_at, OutboxMessage.id)).all()
    return [(m.to, m.subject, m.body) for row in rows for m in [open_mail(session, row)]]


def _age(session, request_id, by: timedelta) -> None:
    """Make the request `by` older: every stored time moves back together."""
    session.execute(
        text(
            """UPDATE privacy_requests SET received_at = received_at - :by, due_at = due_at - :by,
                 verified_at = verified_at - :by, decided_at = decided_at - :by WHERE id = :r"""
        ),
        {"by": by, "r": request_id},
    )


# -- receiving -------------------------------------------------------------------------------


def test_staff_register_a_request_verified_at_once_and_due_in_30_days(in_tenant, tenant):
    with in_tenant(tenant) as session:
        request = _staff_request(session, RequestKind.PORTABILITY)
        assert (request.state, request.channel, request.verification) == ("identity_verified", "staff", "staff")
        assert request.due_at - request.received_at == timedelta(days=30)
        events = _events(session, request.id)
    assert [(a, o) for a, o, _ in events] == [
        ("privacy_request.received", "succeeded"),
        ("privacy_request.identity_verified", "succeeded"),
    ]
    assert events[0][2]["kind"] == "portability" and events[0][2]["channel"] == "staff"
    assert events[1][2] == {"method": "staff"}


def test_a_signed_in_patron_asks_about_their_own_data(browser, in_tenant, tenant):
    with in_tenant(tenant) as session:
        patron_id = _patron(session)
        admin = _principal(tenant.id, BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN])
        account = accounts.create_account(
            session, admin, kind=AccountKind.PATRON, username="ann", email="a@alpha.example"
        )
        account.password_hash = stored_hash(PASSWORD, passwords.DEFAULT)
        account.status, account.patron_id = AccountStatus.ACTIVE, patron_id
        session.flush()
        grant(session, tenant.id, account.id, BuiltinRole.PATRON)
    client = browser()
    login = {"institution": "alpha", "username": "ann", "password": PASSWORD}
    assert client.post("/api/v1/auth/login", json=login).status_code == 200

    made = client.post(
        "/api/v1/privacy/me/requests", json={"kind": "objection", "objection_scope": "purpose:marketing"}
    )

    assert made.status_code == 201, made.text
    body = made.json()
    assert (body["state"], body["channel"], body["verification"], body["patron_id"]) == (
        "identity_verified",
        "patron",
        "signed_in",
        str(patron_id),
    )
    assert body["objection_scope"] == "purpose:marketing" and body["days_remaining"] == 30
    assert [r["id"] for r in client.get("/api/v1/privacy/me/requests").json()["items"]] == [body["id"]]
    # A patron does not work the queue.
    assert client.get(REQUESTS).status_code == 403


def test_a_request_must_say_what_its_kind_needs_and_nothing_else(in_tenant, tenant):
    with in_tenant(tenant) as session:
        patron_id = _patron(session)
        desk = _principal(tenant.id, DESK)
        refused = [
            (RequestKind.OBJECTION, {}),
            (RequestKind.OBJECTION, {"objection_scope": "everything"}),
            (RequestKind.ACCESS, {"objection_scope": "third_party_disclosure"}),
            (RequestKind.RECTIFICATION, {}),
            (RequestKind.RECTIFICATION, {"corrections": {}}),
            (RequestKind.RECTIFICATION, {"corrections": {"email": "not an address"}}),
            (RequestKind.RECTIFICATION, {"corrections": {"status": "blocked"}}),
            (RequestKind.RECTIFICATION, {"corrections": {"name": None}}),
            (RequestKind.RECTIFICATION, {"corrections": {"affiliation": "card 4111 1111 1111 1111"}}),
            (RequestKind.ERASURE, {"corrections": {"name": "X"}}),
        ]
        for kind, extra in refused:
            with pytest.raises((InvalidInput, SensitiveDataRefused)) as caught:
                requests.register_for_patron(session, desk, patron_id, kind, **extra)
            assert "4111" not in str(caught.value) and "not an address" not in str(caught.value)
        with pytest.raises(NotFound):
            requests.register_for_patron(session, desk, uuid.uuid4(), RequestKind.ACCESS)
        assert session.scalar(select(PrivacyRequest.id)) is None


def test_corrections_are_sealed_in_the_row_and_never_in_the_trail(in_tenant, tenant):
    corrections = {"email": "ann.new@alpha.example", "postal_address": "7 Quay Lane"}
    with in_tenant(tenant) as session:
        request = _staff_request(session, RequestKind.RECTIFICATION, corrections=corrections)
        raw = session.execute(
            text("SELECT corrections FROM privacy_requests WHERE id = :r"), {"r": request.id}
        ).scalar()
        trail = session.execute(text("SELECT details::text FROM audit_events")).scalars().all()
        found, opened = requests.read(session, _principal(tenant.id, OFFICER), request.id)
    for plaintext in ("ann.new@alpha.example", "7 Quay Lane"):
        assert plaintext.encode() not in bytes(raw)
        assert not any(plaintext in details for details in trail)
    assert found.correction_fields == ["email", "postal_address"]
    assert opened.corrections == corrections


# -- the lifecycle, per kind -----------------------------------------------------------------


def _run(session, request_id) -> PrivacyRequest:
    officer = _principal(session.tenant_id, OFFICER)
    requests.decide(session, officer, request_id, Decision.APPROVE)
    requests.start(session, officer, request_id)
    return requests.complete(session, officer, request_id)


def test_access_and_portability_build_the_package(in_tenant, tenant):
    from bookwarden.privacy.subjects.models import SubjectExportPackage

    with in_tenant(tenant) as session:
        for kind in (RequestKind.ACCESS, RequestKind.PORTABILITY):
            request = _run(session, _staff_request(session, kind).id)
            package = session.get(SubjectExportPackage, (tenant.id, request.outcome_id))
            assert (request.state, package.patron_id, package.request_id) == (
                "completed",
                request.patron_id,
                request.id,
            )
            actions = [a for a, _, _ in _events(session, request.id)]
            assert actions == [
                "privacy_request.received",
                "privacy_request.identity_verified",
                "privacy_request.approved",
                "privacy_request.in_progress",
                "privacy_request.completed",
            ]
            assert _events(session, request.id)[-1][2]["package_id"] == str(package.id)


def test_erasure_asked_by_the_patron_erases_with_a_certificate(in_tenant, tenant):
    from bookwarden.library.models import Patron
    from bookwarden.privacy.subjects.models import ErasureCertificate

    with in_tenant(tenant) as session:
        patron_id = _patron(session)
        request = requests.receive(
            session,
            _principal(tenant.id, {Permission.SELF_SERVICE}),
            requests.RequestChannel.PATRON,
            patron_id,
            RequestKind.ERASURE,
            verified=requests.Verification.SIGNED_IN,
        )
        request = _run(session, request.id)
        certificate = session.get(ErasureCertificate, (tenant.id, request.outcome_id))
        assert certificate is not None and request.state == "completed"
        assert session.get(Patron, (tenant.id, patron_id)) is None
    with in_tenant(tenant) as session:  # read again from the database, after the commit
        # The request, and what it proves, outlive the patron record.
        stored = session.execute(
            text("SELECT state, outcome_id FROM privacy_requests WHERE id = :r"), {"r": request.id}
        ).one()
        assert tuple(stored) == ("completed", certificate.id)


def test_rectification_corrects_the_patron_record(in_tenant, tenant):
    with in_tenant(tenant) as session:
        request = _staff_request(session, RequestKind.RECTIFICATION, corrections={"name": "Ann Corrected"})
        _run(session, request.id)
        assert library.read(session, library.PATRONS, request.patron_id).name == "Ann Corrected"
        [done] = [d for a, _, d in _events(session, request.id) if a == "privacy_request.completed"]
        assert done["fields"] == ["name"]


def test_an_erasure_leaves_a_rectification_naming_its_fields_but_not_their_values(in_tenant, tenant):
    officer = _principal(tenant.id, OFFICER)
    with in_tenant(tenant) as session:
        fix = _staff_request(session, RequestKind.RECTIFICATION, corrections={"name": "Ann Corrected"})
        assert requests.read(session, officer, fix.id)[1].corrections == {"name": "Ann Corrected"}
        erasure = requests.receive(
            session,
            _principal(tenant.id, {Permission.SELF_SERVICE}),
            requests.RequestChannel.PATRON,
            fix.patron_id,
            RequestKind.ERASURE,
            verified=requests.Verification.SIGNED_IN,
        )
        _run(session, erasure.id)
        # The request still proves what was asked (the field names); the values went with the subject key.
        found, opened = requests.read(session, officer, fix.id)
        assert (found.correction_fields, opened.corrections) == (["name"], None)


def test_restriction_stops_changes_until_lifted(in_tenant, tenant):
    officer = _principal(tenant.id, OFFICER)
    with in_tenant(tenant) as session:
        request = _run(session, _staff_request(session, RequestKind.RESTRICTION).id)
        assert restrictions.is_restricted(session, request.patron_id)
        with pytest.raises(Conflict, match="restricted"):
            library.update(session, library.PATRONS, request.patron_id, PatronUpdate(name="Changed"))
        # A rectification still corrects a restricted record: that is what the restriction waits for.
        fix = _staff_request(
            session, RequestKind.RECTIFICATION, patron_id=request.patron_id, corrections={"name": "Ann R"}
        )
        _run(session, fix.id)
        restrictions.lift(session, officer, request.patron_id)
        assert not restrictions.is_restricted(session, request.patron_id)
        assert library.update(session, library.PATRONS, request.patron_id, PatronUpdate(name="Free")).name == "Free"
        with pytest.raises(NotFound):
            restrictions.lift(session, officer, request.patron_id)


def test_objection_is_recorded_for_disclosures(in_tenant, tenant):
    from bookwarden.privacy.consent.objections import has_objected

    with in_tenant(tenant) as session:
        request = _staff_request(session, RequestKind.OBJECTION, objection_scope="third_party_disclosure")
        assert not has_objected(session, request.patron_id, "third_party_disclosure")
        _run(session, request.id)
        assert has_objected(session, request.patron_id, "third_party_disclosure")
        assert not has_objected(session, request.patron_id, "purpose:usage_analysis")


def test_a_denial_says_why_and_closes_the_request(in_tenant, tenant):
    officer = _principal(tenant.id, OFFICER)
    with in_tenant(tenant) as session:
        request = _staff_request(session)
        with pytest.raises(InvalidInput, match="reason"):
            requests.decide(session, officer, request.id, Decision.DENY, "  ")
        requests.decide(session, officer, request.id, Decision.DENY, "the data is held by another institution")
        _, opened = requests.read(session, officer, request.id)
        events = _events(session, request.id)
    assert request.state == "denied" and opened.decision_reason == "the data is held by another institution"
    assert events[-2][0] == "privacy_request.denied" and "another institution" not in str(events[-2][2])


# -- illegal moves ---------------------------------------------------------------------------

MOVES = {
    "verify": S.IDENTITY_VERIFIED,
    "approve": S.APPROVED,
    "deny": S.DENIED,
    "start": S.IN_PROGRESS,
    "complete": S.COMPLETED,
    "hold": S.ON_LEGAL_HOLD,
}


def _attempt(session, request, move):
    officer = _principal(session.tenant_id, OFFICER)
    if move == "verify":
        return requests.verify_identity(session, officer, request, requests.Verification.STAFF)
    if move == "approve":
        return requests.decide(session, officer, request.id, Decision.APPROVE)
    if move == "deny":
        return requests.decide(session, officer, request.id, Decision.DENY, "no")
    if move == "start":
        return requests.start(session, officer, request.id)
    if move == "complete":
        return requests.complete(session, officer, request.id)
    if move == "hold":
        return requests.hold(session, officer, request.id, "court order 7")
    return requests.resume(session, officer, request.id)


@pytest.mark.parametrize("state", list(RequestState), ids=str)
def test_every_move_the_lifecycle_does_not_allow_is_refused(in_tenant, tenant, state):
    with in_tenant(tenant) as session:
        request = _in_state(session, state)
        refused = [m for m, to in MOVES.items() if to not in requests.ALLOWED[state]]
        if state is not S.ON_LEGAL_HOLD:
            refused.append("resume")
        assert refused, state
        for move in refused:
            with pytest.raises(Conflict):
                _attempt(session, request, move)
            session.expire_all()
            assert session.get(PrivacyRequest, (tenant.id, request.id)).state == state


def test_an_illegal_move_over_http_is_a_409_problem(client_for, tenant, in_tenant):
    with in_tenant(tenant) as session:
        request_id = _in_state(session, S.COMPLETED).id
    officer = client_for(tenant, permissions=OFFICER)
    for verb, body in (("decision", {"decision": "approve"}), ("start", None), ("complete", None), ("resume", None)):
        response = officer.post(f"{REQUESTS}/{request_id}/{verb}", json=body)
        assert response.status_code == 409, (verb, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    held = officer.post(f"{REQUESTS}/{request_id}/hold", json={"reason": "court order"})
    assert held.status_code == 409


# -- legal holds -----------------------------------------------------------------------------


def test_a_held_request_resumes_where_it_was(in_tenant, tenant, db):
    officer = _principal(tenant.id, OFFICER)
    with in_tenant(tenant) as session:
        request = _in_state(session, S.APPROVED)
        until = datetime.now(UTC) + timedelta(days=3)
        requests.hold(session, officer, request.id, "litigation hold, case 2026-14", until)
        found, opened = requests.read(session, officer, request.id)
        assert (found.state, found.held_from, found.held_until) == (S.ON_LEGAL_HOLD, S.APPROVED, until)
        assert opened.hold_reason == "litigation hold, case 2026-14"
        with pytest.raises(Conflict, match="has passed"):
            requests.hold(session, officer, _in_state(session, S.APPROVED).id, "x", datetime.now(UTC) - timedelta(1))
        requests.resume(session, officer, request.id)
        assert (request.state, request.held_from, request.hold_reason) == ("approved", None, None)
        # A hold with an end resumes by itself once the end has passed (the hourly job).
        requests.hold(session, officer, request.id, "order until Friday", until)
        session.execute(
            text("UPDATE privacy_requests SET held_until = now() - interval '1 minute' WHERE id = :r"),
            {"r": request.id},
        )
    report = requests.process_deadlines(db)
    with in_tenant(tenant) as session:
        assert session.get(PrivacyRequest, (tenant.id, request.id)).state == "approved"
        assert [a for a, _, _ in _events(session, request.id)][-1] == "privacy_request.resumed"
    assert report.resumed == 1


# -- the institution decides, nobody else ----------------------------------------------------


def test_another_institutions_requests_are_not_found(client_for, tenant, other_tenant, in_tenant):
    with in_tenant(other_tenant) as session:
        theirs = _staff_request(session).id
    mine = client_for(tenant, permissions=OFFICER)
    calls = [
        mine.get(f"{REQUESTS}/{theirs}"),
        mine.post(f"{REQUESTS}/{theirs}/decision", json={"decision": "approve"}),
        mine.post(f"{REQUESTS}/{theirs}/start"),
        mine.post(f"{REQUESTS}/{theirs}/complete"),
        mine.post(f"{REQUESTS}/{theirs}/hold", json={"reason": "x"}),
        mine.post(f"{REQUESTS}/{theirs}/resume"),
    ]
    assert [c.status_code for c in calls] == [404] * 6
    assert mine.get(REQUESTS).json()["items"] == []
    with in_tenant(other_tenant) as session:
        assert session.get(PrivacyRequest, (other_tenant.id, theirs)).state == "identity_verified"


def test_operator_staff_cannot_decide_or_carry_out(app, operator_token, tenant, in_tenant):
    from fastapi.testclient import TestClient

    with in_tenant(tenant) as session:
        request_id = _staff_request(session).id
    operator = TestClient(app, raise_server_exceptions=False)
    operator.headers["Authorization"] = f"Bearer {operator_token}"
    calls = [
        operator.get(REQUESTS),
        operator.post(f"{REQUESTS}/{request_id}/decision", json={"decision": "approve"}),
        operator.post(f"{REQUESTS}/{request_id}/start"),
        operator.post(f"{REQUESTS}/{request_id}/complete"),
    ]
    assert [c.status_code for c in calls] == [403] * 4
    # Even an operator principal inside the tenant (through a grant) holding the permission is refused.
    through_grant = Principal(PrincipalKind.OPERATOR_TOKEN, uuid.uuid4(), tenant.id, OFFICER, grant_id=uuid.uuid4())
    with in_tenant(tenant) as session:
        for attempt in (
            lambda: requests.decide(session, through_grant, request_id, Decision.APPROVE),
            lambda: requests.start(session, through_grant, request_id),
            lambda: requests.complete(session, through_grant, request_id),
            lambda: requests.hold(session, through_grant, request_id, "x"),
        ):
            with pytest.raises(Forbidden, match="controller"):
                attempt()
        assert session.get(PrivacyRequest, (tenant.id, request_id)).state == "identity_verified"


def test_a_staff_erasure_needs_a_second_officer(in_tenant, tenant):
    desk, first, second = (_principal(tenant.id, p) for p in (DESK | OFFICER, OFFICER, OFFICER))
    with in_tenant(tenant) as session:
        request = requests.register_for_patron(session, desk, _patron(session), RequestKind.ERASURE)

        requests.decide(session, first, request.id, Decision.APPROVE)

        assert request.state == "identity_verified" and request.approval_id is not None
        with pytest.raises(Conflict, match="second officer"):
            requests.decide(session, second, request.id, Decision.APPROVE)
        # Each refusal rolls back what it did, as the request's transaction would.
        with pytest.raises(SegregationOfDutiesError), session.begin_nested():
            approvals.approve(session, first, request.approval_id)  # the asker
        with pytest.raises(SegregationOfDutiesError), session.begin_nested():
            approvals.approve(session, desk, request.approval_id)  # the one who registered it
        session.expire_all()
        request = session.get(PrivacyRequest, (tenant.id, request.id))
        assert request.state == "identity_verified"

        approvals.approve(session, second, request.approval_id)

        assert request.state == "approved" and request.decided_by == second.id
        [approved] = [d for a, _, d in _events(session, request.id) if a == "privacy_request.approved"]
        assert approved["approval_id"] == str(request.approval_id) and approved["asked_by"] == str(first.id)


def test_a_rejected_erasure_approval_can_be_asked_again(in_tenant, tenant):
    desk, first, second = (_principal(tenant.id, p) for p in (DESK, OFFICER, OFFICER))
    with in_tenant(tenant) as session:
        request = requests.register_for_patron(session, desk, _patron(session), RequestKind.ERASURE)
        requests.decide(session, first, request.id, Decision.APPROVE)
        approvals.reject(session, second, request.approval_id)
        requests.decide(session, first, request.id, Decision.APPROVE)  # asks again
        approvals.approve(session, second, request.approval_id)
        assert request.state == "approved"


# -- deadlines -------------------------------------------------------------------------------


def test_the_due_date_comes_from_the_institutions_policy(client_for, tenant, in_tenant):
    officer = client_for(tenant, permissions=OFFICER)
    assert officer.get("/api/v1/privacy/request-policy").json() == {
        "respond_within_days": 30,
        "remind_before_days": 7,
        "default": True,
    }
    changed = officer.put("/api/v1/privacy/request-policy", json={"respond_within_days": 14, "remind_before_days": 3})
    assert changed.status_code == 200 and changed.json()["default"] is False
    bad = officer.put("/api/v1/privacy/request-policy", json={"respond_within_days": 91, "remind_before_days": 3})
    assert bad.status_code == 422
    with in_tenant(tenant) as session:
        request = _staff_request(session)
    assert request.due_at - request.received_at == timedelta(days=14)


def test_officers_are_reminded_before_the_due_date_and_told_when_overdue(in_tenant, tenant, db):
    with in_tenant(tenant) as session:
        _officer_account(session, "olivia")
        request = _staff_request(session)
        fresh = _staff_request(session)
        unverified = _in_state(session, S.RECEIVED)
        _age(session, request.id, timedelta(days=24))  # 6 days left: inside the 7-day reminder
        _age(session, unverified.id, timedelta(hours=23))  # not verified: nobody is chased for it

    first = requests.process_deadlines(db)
    again = requests.process_deadlines(db)

    assert (first.reminded, first.escalated, first.lapsed, again.reminded, again.escalated) == (1, 0, 0, 0, 0)
    with in_tenant(tenant) as session:
        [(to, subject, body)] = _mails(session)
        assert to == "olivia@alpha.example" and "due soon" in subject and str(request.id) in subject
        assert "Days remaining: 6" in body
        _age(session, request.id, timedelta(days=7))  # now a day overdue
        _age(session, unverified.id, timedelta(hours=2))  # a day and an hour without its code
    overdue = requests.process_deadlines(db)
    with in_tenant(tenant) as session:
        mails = _mails(session)
        stored = session.get(PrivacyRequest, (tenant.id, request.id))
        actions = [(a, d.get("notified_accounts")) for a, _, d in _events(session, request.id)][-2:]
        assert session.get(PrivacyRequest, (tenant.id, fresh.id)).reminded_at is None
        listed = requests.queue(session, _principal(tenant.id, OFFICER), requests.QueueView.OVERDUE)
    assert (overdue.reminded, overdue.escalated, overdue.lapsed) == (0, 1, 1)
    with in_tenant(tenant) as session:
        assert session.get(PrivacyRequest, (tenant.id, unverified.id)) is None
        assert [a for a, _, _ in _events(session, unverified.id)][-1] == "privacy_request.lapsed"
    # One transaction in this test: both mails carry the same time, so look at them as a set.
    assert sorted("overdue" in subject for _, subject, _ in mails) == [False, True]
    assert stored.escalated_at is not None and stored.reminded_at is not None
    assert [a for a, _ in actions] == ["privacy_request.reminded", "privacy_request.escalated"]
    assert {r.id for r in listed} == {request.id}  # the unverified one lapsed: a day without its code


def test_the_hourly_duty_escalates_to_the_security_contacts_when_there_is_no_officer(in_tenant, tenant, db):
    with in_tenant(tenant) as session:
        add_security_contact(session, "security@alpha.example")
        request = _staff_request(session)
        _age(session, request.id, timedelta(days=31))
    # The worker's duties, as the worker finds them: declared hourly, run by their registered handlers.
    assert request_jobs in areas.modules("jobs")
    request_jobs.declare_schedules(db)
    with platform_session(db) as session:
        assert session.get(JobSchedule, requests.DEADLINES).every_seconds == 3600
        assert session.get(JobSchedule, request_form.LAPSE).every_seconds == 3600
    handler_for(request_form.LAPSE)(db, {})
    handler_for(requests.DEADLINES)(db, {})
    with in_tenant(tenant) as session:
        [(to, subject, _)] = _mails(session)
        [(_, _, details)] = [e for e in _events(session, request.id) if e[0] == "privacy_request.escalated"]
    assert to == "security@alpha.example" and "overdue" in subject
    assert details["security_contacts_notified"] == 1 and details["notified_accounts"] == []


# -- the queue over HTTP ---------------------------------------------------------------------


def test_the_queue_over_http(client_for, tenant):
    desk = client_for(tenant, permissions=DESK | LIBRARY_WRITE)
    patron = desk.post("/api/v1/patrons", json={"name": "Bo Patron", "email": "bo@alpha.example"}).json()
    made = desk.post(
        REQUESTS,
        json={"patron_id": patron["id"], "kind": "rectification", "corrections": {"phone": "+44 20 7946 0000"}},
    )
    assert made.status_code == 201, made.text
    request_id = made.json()["id"]
    assert desk.get(REQUESTS).status_code == 403  # desk staff register, they do not decide

    officer = client_for(tenant, permissions=OFFICER)
    assert [r["id"] for r in officer.get(REQUESTS).json()["items"]] == [request_id]
    detail = officer.get(f"{REQUESTS}/{request_id}").json()
    assert detail["corrections"] == {"phone": "+44 20 7946 0000"} and detail["correction_fields"] == ["phone"]
    assert officer.post(f"{REQUESTS}/{request_id}/decision", json={"decision": "approve"}).json()["state"] == "approved"
    assert officer.post(f"{REQUESTS}/{request_id}/start").json()["state"] == "in_progress"
    done = officer.post(f"{REQUESTS}/{request_id}/complete").json()
    assert done["state"] == "completed" and done["days_remaining"] is None
    assert desk.get(f"/api/v1/patrons/{patron['id']}").json()["phone"] == "+44 20 7946 0000"
    assert officer.get(REQUESTS, params={"view": "closed"}).json()["items"][0]["id"] == request_id
