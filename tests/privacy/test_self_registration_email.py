"""Whose address is it? A self-registration's address counts only once its owner confirms it through the
link mailed to it, and the request form never falls silent because an address is on file twice.

The attack this answers, walked end to end over real SMTP with real commits: someone registers with the
address of an existing patron. Before, the form then found "more than one patron" and sent no code, so
the owner could no longer exercise their rights by email. Now the owner still gets their code and makes
their request; the stranger's registration receives nothing meant for the owner (no code, no request,
no mail of theirs in its access package or erasure) and lapses after 48 hours, erased with its key.
"""

from __future__ import annotations

import re
import time
import uuid
from datetime import date, timedelta
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from bookwarden.api.app import create_app
from bookwarden.core.errors import InvalidInput
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.identity import links
from bookwarden.identity.links import LinkClaims, LinkPurpose
from bookwarden.jobs.models import JobSchedule
from bookwarden.jobs.service import handler_for
from bookwarden.jobs.worker import Worker
from bookwarden.library import records as library
from bookwarden.library.models import Patron
from bookwarden.library.schemas import PatronCreate, PatronUpdate
from bookwarden.notify.models import OutboxMessage
from bookwarden.notify.service import open_mail
from bookwarden.privacy.complaints import service as complaints
from bookwarden.privacy.consent.unsubscribe import patron_email
from bookwarden.privacy.registration import jobs as registration_jobs
from bookwarden.privacy.registration import service as self_registration
from bookwarden.privacy.requests import form as request_form
from bookwarden.privacy.requests import service as requests
from bookwarden.privacy.requests.models import PrivacyRequest
from bookwarden.privacy.requests.service import Decision
from bookwarden.privacy.retention import holds
from bookwarden.privacy.subjects import data as subject_data
from bookwarden.privacy.subjects.models import ErasureCertificate
from bookwarden.tenancy.models import Tenant
from tests.e2e.test_notify import smtp_server  # noqa: F401 - the real aiosmtpd server fixture
from tests.helpers import fresh_address

REGISTER = "/api/v1/self-registration"
CONFIRM = "/api/v1/self-registration/confirm"
FORM = "/api/v1/privacy/requests/form"
VERIFY = "/api/v1/privacy/requests/form/verify"
OWNER = "olive.owner@alpha.example"
IMPOSTOR_NAME = "Mallory Impostor"


def _principal(tenant_id, *permissions) -> Principal:
    return Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant_id, frozenset(permissions))


@pytest.fixture
def web(committed_db, settings):
    return create_app(committed_db, settings)


@pytest.fixture
def institution(committed_db, committed_tenant) -> SimpleNamespace:
    """An institution open to self-registration, with one patron its staff entered: the address's owner."""
    tenant_id = committed_tenant()
    with tenant_session(committed_db, tenant_id) as session:
        owner = library.create(session, library.PATRONS, PatronCreate(name="Olive Owner", email=OWNER))
        admin = _principal(tenant_id, Permission.POLICY_MANAGE)
        self_registration.set_settings(session, admin, enabled=True, timezone="UTC")
    with platform_session(committed_db) as session:
        tenant = session.get(Tenant, tenant_id)
    return SimpleNamespace(id=tenant.id, slug=tenant.slug, name=tenant.name, owner=owner.id)


def _visitor(app) -> TestClient:
    return TestClient(
        app, base_url="https://testserver", client=(fresh_address(), 50000), raise_server_exceptions=False
    )


def _register(app, institution, name: str, email: str = OWNER):
    body = {"institution": institution.slug, "name": name, "email": email, "birth_date": "1990-01-01"}
    answer = _visitor(app).post(REGISTER, json=body)
    assert answer.status_code == 201, answer.text
    return answer.json()


def _deliver_all(db) -> None:
    worker = Worker(db, "registration-email")
    while worker.run_one():
        pass


def _token(mail) -> str:
    [token] = re.findall(r"#token=(\S+)", mail.message.get_content())
    return token


def _code(mail) -> str:
    [code] = re.findall(r"^\s+(\d{6})\s*$", mail.message.get_content(), re.MULTILINE)
    return code


def _queued_token(db, tenant_id) -> str:
    """The link of the confirmation mail still in the outbox (it is forgotten once sent)."""
    with tenant_session(db, tenant_id) as session:
        [message] = session.scalars(select(OutboxMessage).order_by(OutboxMessage.created_at.desc()).limit(1)).all()
        [token] = re.findall(r"#token=(\S+)", open_mail(session, message).body)
    return token


def _same_answer(one: dict, other: dict) -> None:
    assert {k: v for k, v in one.items() if k != "verification_id"} == {
        k: v for k, v in other.items() if k != "verification_id"
    }


def _lapse_now(db, tenant_id, patron_id) -> None:
    """Time passes: the registration's 48 hours are over."""
    with tenant_session(db, tenant_id) as session:
        session.execute(
            text(
                "UPDATE patrons SET email_unconfirmed_until = now() - interval '1 second' "
                "WHERE id = :p AND email_unconfirmed_until IS NOT NULL"
            ),
            {"p": patron_id},
        )


def _actions(db, tenant_id, patron_id) -> list[tuple[str, str]]:
    with tenant_session(db, tenant_id) as session:
        rows = session.execute(
            text("SELECT action, outcome FROM audit_events WHERE target_id = :p ORDER BY seq"), {"p": str(patron_id)}
        ).all()
    return [tuple(r) for r in rows]


def test_registering_with_the_owners_address_never_locks_the_owner_out(
    web,
    committed_db,
    institution,
    smtp_server,  # noqa: F811
):
    # A stranger registers with the owner's address.
    registered = _register(web, institution, IMPOSTOR_NAME)
    impostor = uuid.UUID(registered["patron_id"])
    assert registered["email_confirmed"] is False
    _deliver_all(committed_db)
    # The owner's mailbox gets the confirmation link, and nothing of the stranger's words.
    [confirmation] = smtp_server.messages
    assert confirmation.recipients == [OWNER]
    assert confirmation.message["Subject"] == f"[{institution.name}] confirm your email address"
    assert "Mallory" not in confirmation.message.get_content() and "#token=" in confirmation.message.get_content()
    with tenant_session(committed_db, institution.id) as session:
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0  # the link is not kept

    # The owner asks through the form, by their address, and gets their code as before.
    asked = _visitor(web).post(
        FORM, json={"institution": institution.slug, "kind": "access", "by": "email", "value": OWNER}
    )
    nobody = _visitor(web).post(
        FORM, json={"institution": institution.slug, "kind": "access", "by": "email", "value": "no@alpha.example"}
    )
    assert asked.status_code == nobody.status_code == 202
    _same_answer(asked.json(), nobody.json())
    _deliver_all(committed_db)
    code_mail = smtp_server.messages[1]
    assert len(smtp_server.messages) == 2 and code_mail.recipients == [OWNER]
    verified = _visitor(web).post(
        VERIFY,
        json={
            "institution": institution.slug,
            "verification_id": asked.json()["verification_id"],
            "code": _code(code_mail),
        },
    )
    assert verified.status_code == 200, verified.text
    request = verified.json()["request"]
    assert (request["patron_id"], request["state"], request["shared_address_group"]) == (
        str(institution.owner),
        "identity_verified",
        None,
    )

    # The stranger's registration received nothing meant for the owner.
    with tenant_session(committed_db, institution.id) as session:
        assert session.scalars(select(PrivacyRequest.patron_id)).all() == [institution.owner]
        assert patron_email(session, impostor) is None  # no service, optional or notice mail goes to it
        assert patron_email(session, institution.owner) == OWNER
        staff = _principal(institution.id, Permission.PRIVACY_COMPLAINTS_REGISTER)
        with pytest.raises(InvalidInput, match="no email address on file"):
            complaints.register_for_patron(session, staff, impostor, subject="Loans", body="Wrong loans")
        # Its access package or erasure would not take the mailbox's mail as its own.
        who = subject_data.subject(session, impostor)
        [outbox] = [location for location in subject_data.locations() if location.name == "outbox"]
        assert who.addresses == frozenset() and subject_data.matching_ids(session, outbox, who) == []
        owner_mail = session.scalar(select(func.count()).select_from(OutboxMessage))
        assert owner_mail == 1  # the owner's code mail, kept as sent

    # 48 hours later, unconfirmed, the registration lapses: erased like any patron, its key shredded.
    _lapse_now(committed_db, institution.id, impostor)
    assert self_registration.lapse_unconfirmed(committed_db) == 1
    assert self_registration.lapse_unconfirmed(committed_db) == 0
    with tenant_session(committed_db, institution.id) as session:
        assert session.get(Patron, (institution.id, impostor)) is None
        assert session.get(Patron, (institution.id, institution.owner)) is not None
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == owner_mail  # not erased with it
        [certificate] = session.scalars(select(ErasureCertificate)).all()
        assert certificate.subject_id == impostor and certificate.request_id is None
    assert not committed_db.keyring.subject_keys(institution.id, [impostor])
    assert committed_db.keyring.subject_keys(institution.id, [institution.owner])
    assert ("patron.self_registration_lapsed", "succeeded") in _actions(committed_db, institution.id, impostor)
    assert ("patron.erased", "succeeded") in _actions(committed_db, institution.id, impostor)


def test_a_confirmed_address_shared_by_two_patrons_still_gets_its_code_and_the_officer_decides(
    web,
    committed_db,
    institution,
    smtp_server,  # noqa: F811
):
    # A household: the owner's partner registers with the same address and confirms it from that mailbox.
    partner = uuid.UUID(_register(web, institution, "Pat Partner")["patron_id"])
    _deliver_all(committed_db)
    token = _token(smtp_server.messages[0])
    confirmed = _visitor(web).post(CONFIRM, json={"token": token})
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json() == {"patron_id": str(partner), "email_confirmed": True}
    with tenant_session(committed_db, institution.id) as session:
        assert patron_email(session, partner) == OWNER  # from now on the address counts

    # The form: the address is on file twice. The code still goes to it, once.
    asked = _visitor(web).post(
        FORM, json={"institution": institution.slug, "kind": "erasure", "by": "email", "value": OWNER}
    )
    assert asked.status_code == 202
    _deliver_all(committed_db)
    [code_mail] = smtp_server.messages[1:]
    assert code_mail.recipients == [OWNER]
    verified = _visitor(web).post(
        VERIFY,
        json={
            "institution": institution.slug,
            "verification_id": asked.json()["verification_id"],
            "code": _code(code_mail),
        },
    )
    assert verified.status_code == 200, verified.text
    group = verified.json()["request"]["shared_address_group"]
    assert group == asked.json()["verification_id"]

    # One request per patron, both confirmed by the one code, marked as one form's.
    officer = _principal(institution.id, Permission.PRIVACY_REQUESTS_HANDLE)
    with tenant_session(committed_db, institution.id) as session:
        made = {r.patron_id: r for r in session.scalars(select(PrivacyRequest)).all()}
        assert set(made) == {institution.owner, partner}
        assert {(r.state, str(r.shared_address_group)) for r in made.values()} == {("identity_verified", group)}
        queue = requests.queue(session, officer)
        assert {str(s.shared_address_group) for s in queue} == {group}
        # The officer, having asked the requester, settles it: the owner's is approved, the partner's denied.
        requests.decide(session, officer, made[institution.owner].id, Decision.APPROVE)
        reason = "The requester is Olive Owner; this record is another person's."
        requests.decide(session, officer, made[partner].id, Decision.DENY, reason)
    with tenant_session(committed_db, institution.id) as session:
        states = {r.patron_id: r.state for r in session.scalars(select(PrivacyRequest)).all()}
    assert states == {institution.owner: "approved", partner: "denied"}
    _deliver_all(committed_db)
    assert [m.recipients for m in smtp_server.messages[2:]] == [[OWNER]]  # the refusal, to the same mailbox


def test_no_match_one_match_and_a_shared_address_answer_alike_after_the_same_floor(
    web, committed_db, institution, monkeypatch
):
    """Not a timed test: each path must ask to be held until the same floor (as in test_privacy_request_form)."""
    with tenant_session(committed_db, institution.id) as session:
        shared = "shared@alpha.example"
        for name in ("Sam Shared", "Sasha Shared"):
            library.create(session, library.PATRONS, PatronCreate(name=name, email=shared))
    waits: list[float] = []
    monkeypatch.setattr(request_form, "ANSWER_FLOOR", 60.0)
    monkeypatch.setattr(request_form, "time", SimpleNamespace(monotonic=time.monotonic, sleep=waits.append))
    base = {"institution": institution.slug, "kind": "access", "by": "email"}

    answers = [
        _visitor(web).post(FORM, json={**base, "value": value}) for value in ("no@alpha.example", OWNER, shared)
    ]

    assert [a.status_code for a in answers] == [202, 202, 202]
    _same_answer(answers[0].json(), answers[1].json())
    _same_answer(answers[0].json(), answers[2].json())
    assert len(waits) == 3 and all(55 < w <= 60 for w in waits)
    with tenant_session(committed_db, institution.id) as session:
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 2  # one code per address
        assert session.scalar(select(func.count()).select_from(PrivacyRequest)) == 3


def test_an_unconfirmed_address_is_matched_by_no_identifier(web, committed_db, institution):
    """Only unconfirmed registrations hold the address, or the barcode staff gave one: no code, no request."""
    stranger = uuid.UUID(_register(web, institution, IMPOSTOR_NAME, email="lone@alpha.example")["patron_id"])
    with tenant_session(committed_db, institution.id) as session:
        library.update(session, library.PATRONS, stranger, PatronUpdate(barcode="B-0042"))
        sent_before = session.scalar(select(func.count()).select_from(OutboxMessage))
    base = {"institution": institution.slug, "kind": "access"}
    for by, value in (("email", "lone@alpha.example"), ("barcode", "B-0042")):
        assert _visitor(web).post(FORM, json={**base, "by": by, "value": value}).status_code == 202
    with tenant_session(committed_db, institution.id) as session:
        assert session.scalar(select(func.count()).select_from(PrivacyRequest)) == 0
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == sent_before
        reasons = session.execute(
            text(
                "SELECT details->>'reason' FROM audit_events WHERE action = 'privacy_request.received' "
                "AND outcome = 'failed' ORDER BY seq"
            )
        ).scalars()
        assert list(reasons) == [
            "only unconfirmed self-registrations match",
            "the address on file is a self-registration's, not yet confirmed",
        ]


def test_a_confirmation_link_forged_expired_used_or_lapsed_is_refused_alike(web, committed_db, institution):
    def register(email: str) -> tuple[uuid.UUID, str]:
        patron_id = uuid.UUID(_register(web, institution, "Reg Istrant", email=email)["patron_id"])
        return patron_id, _queued_token(committed_db, institution.id)

    def confirm(token: str):
        return _visitor(web).post(CONFIRM, json={"token": token})

    refusals = []
    first, token = register("first@alpha.example")
    payload, _, mac = token.partition(".")
    # Forged: a changed signature, a link of another purpose for the same patron, nonsense.
    refusals.append(confirm(f"{payload}.{mac[:-2]}{'AA' if mac[-2:] != 'AA' else 'BA'}"))
    claims = links.verify(committed_db.master, token, LinkPurpose.EMAIL_CONFIRMATION)
    reset = links.sign(
        committed_db.master, LinkClaims(LinkPurpose.RESET, claims.tenant_id, first, claims.expires, claims.state)
    )
    refusals.append(confirm(reset))
    refusals.append(confirm("not-a.link"))
    # Expired: a genuine link made more than 48 hours ago.
    old = links.issue_for(
        committed_db.master,
        LinkPurpose.EMAIL_CONFIRMATION,
        institution.id,
        first,
        claims.state,
        now=time.time() - timedelta(hours=49).total_seconds(),
    )
    refusals.append(confirm(old.token))
    # Lapsed: the registration's time is over, though the link itself has not expired yet.
    lapsed, lapsed_token = register("lapsed@alpha.example")
    _lapse_now(committed_db, institution.id, lapsed)
    refusals.append(confirm(lapsed_token))
    # Used: it works once.
    assert confirm(token).status_code == 200
    refusals.append(confirm(token))
    # Changed by staff: setting the address vouches for it, and ends the links sent to the old one.
    vouched, vouched_token = register("typo@alpha.example")
    with tenant_session(committed_db, institution.id) as session:
        library.update(session, library.PATRONS, vouched, PatronUpdate(email="right@alpha.example"))
        assert patron_email(session, vouched) == "right@alpha.example"
    refusals.append(confirm(vouched_token))

    assert {(r.status_code, r.json()["type"], r.json()["detail"]) for r in refusals} == {
        (401, "urn:bookwarden:problem:invalid-link", self_registration.InvalidConfirmationLink().detail)
    }
    with tenant_session(committed_db, institution.id) as session:
        pending = dict(session.execute(select(Patron.id, Patron.email_unconfirmed_until)).all())
    assert pending[first] is None and pending[vouched] is None and pending[lapsed] is not None
    # Genuine links that could not be used are in the trail; the address never counted for the lapsed one.
    assert ("patron.self_registration_confirmed", "failed") in _actions(committed_db, institution.id, lapsed)
    assert _actions(committed_db, institution.id, first).count(("patron.self_registration_confirmed", "failed")) == 1


def test_the_hourly_lapse_keeps_confirmed_vouched_and_held_registrations(committed_db, institution):
    assert handler_for(self_registration.LAPSE_JOB)
    registration_jobs.declare_schedules(committed_db)
    with platform_session(committed_db) as session:
        declared = session.get(JobSchedule, self_registration.LAPSE_JOB)
        assert declared.every_seconds == self_registration.LAPSE_EVERY.total_seconds()

    def register(email: str) -> uuid.UUID:
        born = date(1990, 1, 1)
        made = self_registration.register(
            committed_db, institution.slug, fresh_address(), name="Reg Istrant", email=email, birth_date=born
        )
        return made.patron_id

    confirmed, vouched, held, late = (register(f"{n}@alpha.example") for n in ("conf", "vouch", "held", "late"))
    assert self_registration.confirm(committed_db, _token_for(committed_db, institution.id, confirmed)) == confirmed
    officer = _principal(institution.id, Permission.PRIVACY_HOLDS_MANAGE)
    with tenant_session(committed_db, institution.id) as session:
        library.update(session, library.PATRONS, vouched, PatronUpdate(email="vouch@alpha.example"))
        holds.place(session, officer, reason="Court order 2026-CV-7", patron_id=held)
    for patron_id in (vouched, held, late):
        _lapse_now(committed_db, institution.id, patron_id)

    assert self_registration.lapse_unconfirmed(committed_db) == 1

    with tenant_session(committed_db, institution.id) as session:
        left = set(session.scalars(select(Patron.id)))
    assert left == {institution.owner, confirmed, vouched, held}
    assert not committed_db.keyring.subject_keys(institution.id, [late])
    assert committed_db.keyring.subject_keys(institution.id, [held])


def _token_for(db, tenant_id, patron_id) -> str:
    """A genuine confirmation link for `patron_id` as it stands (what the mail carried)."""
    with tenant_session(db, tenant_id) as session:
        patron = session.get(Patron, (tenant_id, patron_id))
        return links.issue_for(
            db.master,
            LinkPurpose.EMAIL_CONFIRMATION,
            tenant_id,
            patron_id,
            self_registration._state(db.master, patron),
        ).token
