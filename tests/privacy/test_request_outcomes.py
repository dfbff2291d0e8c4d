"""The patron hears how their data-subject request ended, at the address on their record.

Refused: the reason. Access or portability: the package's download link, which works and exists
nowhere else. Erasure: a confirmation queued before nothing of the patron is left, delivered over real
SMTP, and then gone from the outbox too. No address on file: nothing is queued, and the trail says so.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from sqlalchemy import func, select

from bookwarden.core.permissions import Permission
from bookwarden.db.session import tenant_session
from bookwarden.jobs.worker import Worker
from bookwarden.library import records as library
from bookwarden.library.schemas import PatronCreate
from bookwarden.notify.models import OutboxMessage
from bookwarden.privacy.requests import service as requests
from bookwarden.privacy.requests.models import RequestKind
from bookwarden.privacy.requests.service import Decision
from tests.e2e.test_notify import smtp_server  # noqa: F401 - the real aiosmtpd server fixture
from tests.privacy.test_privacy_requests import OFFICER, _events, _mails, _principal, _run, _staff_request

ADDRESS = "ann.patron@alpha.example"  # _staff_request's patron


def test_a_refusal_tells_the_patron_why(in_tenant, tenant):
    with in_tenant(tenant) as session:
        request = _staff_request(session)
        requests.decide(
            session, _principal(tenant.id, OFFICER), request.id, Decision.DENY, "the loans are another library's"
        )
        [(to, subject, body)] = _mails(session)
        [denied] = [d for a, _, d in _events(session, request.id) if a == "privacy_request.denied"]
    assert to == ADDRESS and "refused" in subject and str(request.id) in subject
    assert "Why: the loans are another library's" in body and "data protection authority" in body
    assert denied["patron_told"] is True and "another library" not in str(denied)


def test_an_access_package_link_reaches_the_patron_and_downloads(in_tenant, tenant, app, monkeypatch):
    from fastapi.testclient import TestClient

    monkeypatch.setenv("BOOKWARDEN_PUBLIC_URL", "https://library.alpha.example")
    with in_tenant(tenant) as session:
        request = _run(session, _staff_request(session, RequestKind.ACCESS).id)
        [(to, subject, body)] = _mails(session)
        [done] = [d for a, _, d in _events(session, request.id) if a == "privacy_request.completed"]
    [link] = [word for word in body.split() if word.startswith("https://library.alpha.example/")]
    token = link.rsplit("/", 1)[1]
    assert to == ADDRESS and "carried out" in subject and done["patron_told"] is True
    assert token not in str(done)  # the link is the key: it is in the mail, never in the trail

    download = TestClient(app).get(urlsplit(link).path)
    assert download.status_code == 200, download.text
    assert download.content[:2] == b"PK"  # the ZIP


def test_an_erasure_is_confirmed_and_the_confirmation_forgotten_once_sent(
    committed_db,
    committed_tenant,
    smtp_server,  # noqa: F811
):
    tenant_id = committed_tenant()
    with tenant_session(committed_db, tenant_id) as session:
        patron_id = library.create(session, library.PATRONS, PatronCreate(name="Ann Patron", email=ADDRESS)).id
        request = requests.receive(
            session,
            _principal(tenant_id, {Permission.SELF_SERVICE}),
            requests.RequestChannel.PATRON,
            patron_id,
            RequestKind.ERASURE,
            verified=requests.Verification.SIGNED_IN,
        )
        request = _run(session, request.id)
        certificate_id = request.outcome_id
        queued = session.scalar(select(func.count()).select_from(OutboxMessage))

    worker = Worker(committed_db, "outcomes")
    while worker.run_one():
        pass

    assert queued == 1
    [mail] = smtp_server.messages
    assert mail.recipients == [ADDRESS]
    content = mail.message.get_content()
    assert "erased" in content and str(certificate_id) in content
    with tenant_session(committed_db, tenant_id) as session:
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0  # nothing keeps the address
        [done] = [d for a, _, d in _events(session, request.id) if a == "privacy_request.completed"]
    assert done["patron_told"] is True


def test_no_address_on_file_means_no_mail_and_the_trail_says_so(in_tenant, tenant):
    with in_tenant(tenant) as session:
        patron_id = library.create(session, library.PATRONS, PatronCreate(name="Bo NoMail")).id
        request = _run(session, _staff_request(session, RequestKind.ACCESS, patron_id=patron_id).id)
        [done] = [d for a, _, d in _events(session, request.id) if a == "privacy_request.completed"]
        assert _mails(session) == []
    assert done["patron_told"] is False
