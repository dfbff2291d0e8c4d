"""The request form without an account, end to end over real SMTP: a code mailed to the address on file,
read back from the delivered mail; wrong, expired and exhausted codes; the same answer whether or not a
patron matched (no mail when none did); the per-address throttle; a request sent to the platform without
an institution, answered asking which one and forwarded when named. Real commits (committed_db)."""

from __future__ import annotations

import re
import time
import uuid
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from bookwarden.api.app import create_app
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.identity import throttle
from bookwarden.jobs.worker import Worker
from bookwarden.library import records as library
from bookwarden.library.schemas import PatronCreate
from bookwarden.notify.models import OutboxMessage
from bookwarden.privacy.requests.models import PrivacyInquiry, PrivacyRequest
from bookwarden.tenancy.models import Tenant
from tests.e2e.test_notify import smtp_server  # noqa: F401 - the real aiosmtpd server fixture
from tests.helpers import fresh_address

FORM = "/api/v1/privacy/requests/form"
VERIFY = "/api/v1/privacy/requests/form/verify"
FORWARD = "/api/v1/privacy/inquiries/forward"
ON_FILE = "ann.onfile@alpha.example"


@pytest.fixture
def form_app(committed_db, settings):
    return create_app(committed_db, settings)


@pytest.fixture
def institution(committed_db, committed_tenant) -> Tenant:
    """A committed institution with one patron: an address on file and an institutional id."""
    tenant_id = committed_tenant()
    with tenant_session(committed_db, tenant_id) as session:
        library.create(
            session, library.PATRONS, PatronCreate(name="Ann Patron", email=ON_FILE, institutional_id="U-0001")
        )
    with platform_session(committed_db) as session:
        return session.get(Tenant, tenant_id)


def _visitor(app) -> TestClient:
    return TestClient(
        app, base_url="https://testserver", client=(fresh_address(), 50000), raise_server_exceptions=False
    )


def _deliver_all(db) -> None:
    worker = Worker(db, "request-form")
    while worker.run_one():
        pass


def _code(mail) -> str:
    [code] = re.findall(r"^\s+(\d{6})\s*$", mail.message.get_content(), re.MULTILINE)
    return code


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def _outbox_count(db, tenant_id) -> int:
    with tenant_session(db, tenant_id) as session:
        return session.scalar(select(func.count()).select_from(OutboxMessage))


def _same_answer(one: dict, other: dict) -> None:
    """Two answers of the form that must not tell a match from no match: equal but for the random id."""
    assert {k: v for k, v in one.items() if k != "verification_id"} == {
        k: v for k, v in other.items() if k != "verification_id"
    }
    assert one["verification_id"] and other["verification_id"]


def test_a_code_goes_to_the_address_on_file_and_verifies_the_request(
    form_app,
    committed_db,
    institution,
    smtp_server,  # noqa: F811
):
    visitor = _visitor(form_app)
    body = {"institution": institution.slug, "kind": "access", "by": "institutional_id", "value": "U-0001"}

    asked = visitor.post(FORM, json=body)
    nobody = _visitor(form_app).post(FORM, json={**body, "value": "U-9999"})
    stranger = _visitor(form_app).post(FORM, json={**body, "by": "email", "value": "stranger@elsewhere.example"})

    assert [r.status_code for r in (asked, nobody, stranger)] == [202, 202, 202]
    _same_answer(asked.json(), nobody.json())
    _same_answer(asked.json(), stranger.json())
    assert asked.json()["status"] == "verification_pending"
    _deliver_all(committed_db)
    # One mail, to the address on file: none for the identifier nobody holds, none to the typed address.
    [mail] = smtp_server.messages
    assert mail.recipients == [ON_FILE]
    assert mail.message["Subject"] == f"[{institution.name}] your code to confirm a privacy request"
    code = _code(mail)
    with tenant_session(committed_db, institution.id) as session:
        [request] = session.scalars(select(PrivacyRequest)).all()
        assert (request.state, request.channel) == ("received", "form")
        stored = session.execute(text("SELECT code_hash FROM privacy_request_challenges")).scalars().all()
        assert len(stored) == 3 and all(code.encode() not in bytes(h) for h in stored)

    verification = {"institution": institution.slug, "verification_id": asked.json()["verification_id"]}
    wrong = visitor.post(VERIFY, json={**verification, "code": _wrong(code)})
    decoy = visitor.post(
        VERIFY,
        json={
            "institution": institution.slug,
            "verification_id": nobody.json()["verification_id"],
            "code": _wrong(code),
        },
    )
    right = visitor.post(VERIFY, json={**verification, "code": code})
    again = visitor.post(VERIFY, json={**verification, "code": code})

    assert (wrong.status_code, wrong.json()["type"]) == (401, "urn:bookwarden:problem:verification-code-wrong")
    assert wrong.json()["detail"].endswith("4 tries left")
    assert (decoy.status_code, decoy.json()["detail"]) == (401, wrong.json()["detail"])
    assert right.status_code == 200, right.text
    verified = right.json()["request"]
    assert (right.json()["status"], verified["id"], verified["state"], verified["verification"]) == (
        "identity_verified",
        str(request.id),
        "identity_verified",
        "email_code",
    )
    assert (again.status_code, again.json()["type"]) == (401, "urn:bookwarden:problem:verification-code-expired")
    with tenant_session(committed_db, institution.id) as session:
        assert session.get(PrivacyRequest, (institution.id, request.id)).state == "identity_verified"
        events = session.execute(
            text("SELECT action, outcome FROM audit_events WHERE action LIKE 'privacy_request.%' ORDER BY seq")
        ).all()
    assert [tuple(e) for e in events] == [
        ("privacy_request.received", "succeeded"),
        ("privacy_request.code_sent", "succeeded"),
        ("privacy_request.received", "failed"),  # no patron matches: recorded, nothing disclosed
        ("privacy_request.received", "failed"),
        ("privacy_request.identity_verified", "failed"),
        ("privacy_request.identity_verified", "failed"),
        ("privacy_request.identity_verified", "succeeded"),
        ("privacy_request.identity_verified", "failed"),
    ]


def test_five_tries_then_the_code_is_spent_alike_for_a_decoy(
    form_app,
    committed_db,
    institution,
    smtp_server,  # noqa: F811
):
    body = {"institution": institution.slug, "kind": "erasure", "by": "email", "value": ON_FILE}
    real = _visitor(form_app).post(FORM, json=body).json()
    decoy = _visitor(form_app).post(FORM, json={**body, "value": "nobody@alpha.example"}).json()
    _deliver_all(committed_db)
    code = _code(smtp_server.messages[0])
    answers = {}
    for name, asked in (("real", real), ("decoy", decoy)):
        verification = {"institution": institution.slug, "verification_id": asked["verification_id"]}
        client = _visitor(form_app)
        tries = [client.post(VERIFY, json={**verification, "code": _wrong(code)}) for _ in range(5)]
        last = client.post(VERIFY, json={**verification, "code": code})  # right, but too late
        answers[name] = [(r.status_code, r.json()["type"], r.json()["detail"]) for r in (*tries, last)]
    assert answers["real"] == answers["decoy"]
    assert [detail[-12:] for _, _, detail in answers["real"][:5]] == [f"{n} tries left" for n in (4, 3, 2, 1, 0)]
    assert answers["real"][5][:2] == (401, "urn:bookwarden:problem:verification-code-exhausted")
    with tenant_session(committed_db, institution.id) as session:
        assert session.scalar(select(PrivacyRequest.state)) == "received"


def test_an_expired_code_is_refused(
    form_app,
    committed_db,
    institution,
    smtp_server,  # noqa: F811
):
    body = {"institution": institution.slug, "kind": "restriction", "by": "institutional_id", "value": "U-0001"}
    asked = _visitor(form_app).post(FORM, json=body).json()
    _deliver_all(committed_db)
    code = _code(smtp_server.messages[0])
    with tenant_session(committed_db, institution.id) as session:
        session.execute(text("UPDATE privacy_request_challenges SET expires_at = now() - interval '1 second'"))

    late = _visitor(form_app).post(
        VERIFY, json={"institution": institution.slug, "verification_id": asked["verification_id"], "code": code}
    )

    assert (late.status_code, late.json()["type"]) == (401, "urn:bookwarden:problem:verification-code-expired")
    with tenant_session(committed_db, institution.id) as session:
        assert session.scalar(select(PrivacyRequest.state)) == "received"


def test_a_match_and_no_match_are_answered_after_the_same_floor(form_app, committed_db, institution, monkeypatch):
    """Not a timed test: the clock is read, and the wait asked for, through the module; both paths must
    ask to be held until the same floor, so neither answers sooner than the other."""
    from bookwarden.privacy.requests import form as request_form

    waits: list[float] = []
    monkeypatch.setattr(request_form, "ANSWER_FLOOR", 60.0)
    clock = SimpleNamespace(monotonic=time.monotonic, sleep=waits.append)  # this module's clock only
    monkeypatch.setattr(request_form, "time", clock)
    base = {"institution": institution.slug, "kind": "access", "by": "email"}

    matched = _visitor(form_app).post(FORM, json={**base, "value": ON_FILE})
    unmatched = _visitor(form_app).post(FORM, json={**base, "value": "nobody@alpha.example"})

    assert matched.status_code == unmatched.status_code == 202
    _same_answer(matched.json(), unmatched.json())
    assert len(waits) == 2 and all(55 < w <= 60 for w in waits)  # each held to 60 s after it began
    assert _outbox_count(committed_db, institution.id) == 1  # one was a real match


def test_the_form_is_throttled_per_address(form_app, committed_db, institution):
    visitor = _visitor(form_app)
    body = {"institution": institution.slug, "kind": "access", "by": "email", "value": "someone@alpha.example"}
    answers = [visitor.post(FORM, json=body) for _ in range(throttle.ADDRESS_FREE_FAILURES + 1)]
    assert [a.status_code for a in answers] == [202] * throttle.ADDRESS_FREE_FAILURES + [429]
    assert int(answers[-1].headers["Retry-After"]) >= 1
    # Another address is not slowed, and nothing was mailed to anyone.
    assert _visitor(form_app).post(FORM, json=body).status_code == 202
    assert _outbox_count(committed_db, institution.id) == 0


def test_a_request_without_an_institution_is_asked_which_and_forwarded(
    form_app,
    committed_db,
    institution,
    smtp_server,  # noqa: F811
    owner_conn,
):
    visitor = _visitor(form_app)
    asked = visitor.post(FORM, json={"kind": "portability", "by": "email", "value": ON_FILE})

    assert asked.status_code == 202, asked.text
    answer = asked.json()
    assert answer["status"] == "institution_needed" and "Which institution" in answer["detail"]
    assert answer["verification_id"] is None and len(answer["inquiry_reference"]) >= 32
    [(contact, reference_hash)] = owner_conn.execute("SELECT contact_address, reference_hash FROM privacy_inquiries")
    assert ON_FILE.encode() not in bytes(contact) and answer["inquiry_reference"].encode() not in bytes(reference_hash)
    # Nothing reached any institution yet.
    assert _outbox_count(committed_db, institution.id) == 0
    # Without an institution the platform holds only an email address: any other identifier is refused.
    assert visitor.post(FORM, json={"kind": "access", "by": "institutional_id", "value": "U-0001"}).status_code == 409

    forwarded = visitor.post(FORWARD, json={"reference": answer["inquiry_reference"], "institution": institution.slug})

    assert forwarded.status_code == 202, forwarded.text
    assert forwarded.json()["status"] == "verification_pending"
    _deliver_all(committed_db)
    [mail] = smtp_server.messages
    assert mail.recipients == [ON_FILE]
    with platform_session(committed_db) as session:
        inquiry = session.scalar(select(PrivacyInquiry))
        assert (inquiry.status, inquiry.forwarded_to, inquiry.contact_address) == ("forwarded", institution.id, None)
    with tenant_session(committed_db, institution.id) as session:
        request = session.scalar(select(PrivacyRequest))
        assert (request.kind, request.inquiry_id, request.state) == ("portability", inquiry.id, "received")
    verified = visitor.post(
        VERIFY,
        json={
            "institution": institution.slug,
            "verification_id": forwarded.json()["verification_id"],
            "code": _code(mail),
        },
    )
    assert verified.status_code == 200 and verified.json()["request"]["inquiry_id"] == str(inquiry.id)
    again = visitor.post(FORWARD, json={"reference": answer["inquiry_reference"], "institution": institution.slug})
    unknown = visitor.post(FORWARD, json={"reference": uuid.uuid4().hex, "institution": institution.slug})
    assert (again.status_code, unknown.status_code) == (404, 404)


def test_an_inquiry_never_named_lapses_and_its_address_is_shredded(form_app, committed_db, owner_conn):
    from bookwarden.identity.links import PLATFORM
    from bookwarden.privacy.requests import form as request_form

    answer = _visitor(form_app).post(FORM, json={"kind": "access", "by": "email", "value": ON_FILE}).json()
    with platform_session(committed_db) as session:
        inquiry_id = session.scalar(select(PrivacyInquiry.id))
        session.execute(text("UPDATE privacy_inquiries SET expires_at = now() - interval '1 second'"))
    assert committed_db.keyring.subject_keys(PLATFORM, [inquiry_id])  # readable until it lapses

    assert request_form.lapse_inquiries(committed_db) == 1
    assert request_form.lapse_inquiries(committed_db) == 0

    [(status, contact)] = owner_conn.execute("SELECT status, contact_address FROM privacy_inquiries").fetchall()
    assert (status, contact) == ("lapsed", None)
    assert not committed_db.keyring.subject_keys(PLATFORM, [inquiry_id])  # shredded
    late = _visitor(form_app).post(FORWARD, json={"reference": answer["inquiry_reference"], "institution": "x"})
    assert late.status_code == 404
