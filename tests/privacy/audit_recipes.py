"""Audit-coverage recipes of the privacy area: how to call each of its routes and commands, and the
event each must leave (run by tests/invariants/test_audit_coverage.py)."""

from __future__ import annotations

import re
import uuid
from datetime import date
from uuid import UUID

from fastapi.testclient import TestClient
from sqlalchemy import select, text

from bookwarden.audit.events import PLATFORM_CHAIN, Action
from bookwarden.core.config import get_settings
from bookwarden.core.permissions import (
    BuiltinRole,
    Permission,
)
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import tenant_session
from bookwarden.identity.models import Account, AccountKind
from bookwarden.library import records as library
from bookwarden.notify.models import OutboxMessage
from bookwarden.notify.service import open_mail
from tests.e2e.test_cli import cli_env  # noqa: F401 - fixture
from tests.e2e.test_saml import MAPPINGS, _start, admin, idp, key_pairs, sp_metadata  # noqa: F401 - fixtures
from tests.helpers import fresh_address
from tests.invariants.audit_coverage import (
    Call,
    Command,
    Console,
    World,
    command,
    route,
)


def _escalated(db, tenant_id: UUID) -> UUID:
    """An escalation as the hourly job raises it for an overdue request (metadata only)."""
    from bookwarden.privacy.escalations.models import Level, SubjectKind
    from bookwarden.privacy.escalations.service import raise_escalation

    with tenant_session(db, tenant_id) as session:
        due = session.execute(text("SELECT now() - interval '1 day'")).scalar_one()
        return raise_escalation(session, SubjectKind.PRIVACY_REQUEST, uuid.uuid4(), Level.OVERDUE, due)


@route("GET", "/api/v1/operator/privacy/escalations")
def _(w):
    _escalated(w.db, w.tenant.id)
    return Call(w.operator, "GET", "/api/v1/operator/privacy/escalations", Action.DPO_ESCALATION_LISTED, PLATFORM_CHAIN)


@route("POST", "/api/v1/operator/privacy/escalations/{tenant_id}/{escalation_id}/acknowledge")
def _(w):
    url = f"/api/v1/operator/privacy/escalations/{w.tenant.id}/{_escalated(w.db, w.tenant.id)}/acknowledge"
    return Call(w.operator, "POST", url, Action.DPO_ESCALATION_ACKNOWLEDGED, w.tenant.id)


# privacy: records of processing, complaints

PRIVACY = "/api/v1/privacy"
COMPLAINT = {"subject": "My loans were shown to another patron", "body": "At the desk, on the screen."}


def _patron_browser(w: World) -> TestClient:
    """A browser signed in as a new patron account holding the patron role (the privacy portal)."""
    from bookwarden.identity import roles as access

    username = f"patron-{uuid.uuid4().hex[:6]}"
    account = w.account(username, kind=AccountKind.PATRON)
    with tenant_session(w.db, w.tenant.id) as session:
        access.grant_role(session, w.as_admin(), account.id, BuiltinRole.PATRON)
    client = w.browser()
    w.login(client, username)
    return client


def _complaint(w: World) -> UUID:
    from bookwarden.privacy.complaints import service as complaints

    desk = Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), w.tenant.id, {Permission.PRIVACY_COMPLAINTS_REGISTER})
    patron_id = UUID(w.records[library.PATRONS]["id"])  # made through the API first, in its own session
    with tenant_session(w.db, w.tenant.id) as session:
        return complaints.register_for_patron(session, desk, patron_id, **COMPLAINT).id


@route("GET", f"{PRIVACY}/records-of-processing")
def _(w):
    client = w.client({Permission.PRIVACY_RECORDS_READ})
    url = f"{PRIVACY}/records-of-processing"
    return Call(client, "GET", url, Action.RECORDS_OF_PROCESSING_EXPORTED, w.tenant.id)


@route("POST", f"{PRIVACY}/complaints")
def _(w):
    client = w.client({Permission.PRIVACY_COMPLAINTS_REGISTER})
    body = {"patron_id": w.records[library.PATRONS]["id"], **COMPLAINT}
    return Call(client, "POST", f"{PRIVACY}/complaints", Action.COMPLAINT_REGISTERED, w.tenant.id, json=body)


@route("POST", f"{PRIVACY}/me/complaints")
def _(w):
    client = _patron_browser(w)
    return Call(client, "POST", f"{PRIVACY}/me/complaints", Action.COMPLAINT_REGISTERED, w.tenant.id, json=COMPLAINT)


@route("GET", f"{PRIVACY}/me/complaints")
def _(w):
    return Call(_patron_browser(w), "GET", f"{PRIVACY}/me/complaints", Action.COMPLAINT_LISTED, w.tenant.id)


@route("GET", f"{PRIVACY}/complaints")
def _(w):
    client = w.client({Permission.PRIVACY_COMPLAINTS_HANDLE})
    return Call(client, "GET", f"{PRIVACY}/complaints", Action.COMPLAINT_LISTED, w.tenant.id)


@route("GET", f"{PRIVACY}/complaints/{{complaint_id}}")
def _(w):
    client = w.client({Permission.PRIVACY_COMPLAINTS_HANDLE})
    return Call(client, "GET", f"{PRIVACY}/complaints/{_complaint(w)}", Action.COMPLAINT_VIEWED, w.tenant.id)


@route("POST", f"{PRIVACY}/complaints/{{complaint_id}}/answer")
def _(w):
    client = w.client({Permission.PRIVACY_COMPLAINTS_HANDLE})
    url = f"{PRIVACY}/complaints/{_complaint(w)}/answer"
    return Call(client, "POST", url, Action.COMPLAINT_ANSWERED, w.tenant.id, json={"answer": "The screen was moved."})


# privacy: data-subject requests (the queue, the patron's own, the form without an account)

OFFICER_PERMISSIONS = {Permission.PRIVACY_REQUESTS_HANDLE}


def _linked_patron_browser(w: World) -> TestClient:
    """A browser signed in as a patron account linked to the patron record made through the API."""
    from bookwarden.identity import roles as access

    username = f"linked-{uuid.uuid4().hex[:6]}"
    patron_id = UUID(w.records[library.PATRONS]["id"])  # made through the API first, in its own session
    account = w.account(username, kind=AccountKind.PATRON)
    with tenant_session(w.db, w.tenant.id) as session:
        session.get(Account, (w.tenant.id, account.id)).patron_id = patron_id
        access.grant_role(session, w.as_admin(), account.id, BuiltinRole.PATRON)
    client = w.browser()
    w.login(client, username)
    return client


def _privacy_request(w: World, kind: str = "access", to: str = "identity_verified") -> UUID:
    """A request registered by desk staff for the API's patron, moved on to `to` by an officer."""
    from bookwarden.privacy.requests import service as requests

    desk = Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), w.tenant.id, {Permission.PRIVACY_REQUESTS_REGISTER})
    officer = Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), w.tenant.id, OFFICER_PERMISSIONS)
    patron_id = UUID(w.records[library.PATRONS]["id"])
    with tenant_session(w.db, w.tenant.id) as session:
        request = requests.register_for_patron(session, desk, patron_id, requests.RequestKind(kind))
        if to == "on_legal_hold":
            requests.hold(session, officer, request.id, "court order 12")
        if to in ("approved", "in_progress"):
            requests.decide(session, officer, request.id, requests.Decision.APPROVE)
        if to == "in_progress":
            requests.start(session, officer, request.id)
        return request.id


def _form_sent(w: World) -> tuple[str, str]:
    """(verification id, code) of a form naming the API's patron: the code read from the outbox."""
    from bookwarden.privacy.requests import form as request_form

    answer = request_form.submit(
        w.db,
        institution=w.tenant.slug,
        kind="access",
        by="email",
        value=w.records[library.PATRONS]["email"],
        source_address=fresh_address(),
    )
    with tenant_session(w.db, w.tenant.id) as session:
        [message] = session.scalars(select(OutboxMessage).order_by(OutboxMessage.created_at.desc()).limit(1)).all()
        [code] = re.findall(r"^\s+(\d{6})\s*$", open_mail(session, message).body, re.MULTILINE)
    return str(answer.verification_id), code


@route("POST", f"{PRIVACY}/me/requests")
def _(w):
    client = _linked_patron_browser(w)
    body = {"kind": "objection", "objection_scope": "third_party_disclosure"}
    return Call(client, "POST", f"{PRIVACY}/me/requests", Action.PRIVACY_REQUEST_RECEIVED, w.tenant.id, json=body)


@route("GET", f"{PRIVACY}/me/requests")
def _(w):
    client = _linked_patron_browser(w)
    return Call(client, "GET", f"{PRIVACY}/me/requests", Action.PRIVACY_REQUEST_LISTED, w.tenant.id)


@route("POST", f"{PRIVACY}/requests")
def _(w):
    client = w.client({Permission.PRIVACY_REQUESTS_REGISTER})
    body = {"patron_id": w.records[library.PATRONS]["id"], "kind": "access"}
    return Call(client, "POST", f"{PRIVACY}/requests", Action.PRIVACY_REQUEST_RECEIVED, w.tenant.id, json=body)


@route("GET", f"{PRIVACY}/requests")
def _(w):
    client = w.client(OFFICER_PERMISSIONS)
    return Call(client, "GET", f"{PRIVACY}/requests", Action.PRIVACY_REQUEST_LISTED, w.tenant.id)


@route("GET", f"{PRIVACY}/requests/{{request_id}}")
def _(w):
    url = f"{PRIVACY}/requests/{_privacy_request(w)}"
    return Call(w.client(OFFICER_PERMISSIONS), "GET", url, Action.PRIVACY_REQUEST_VIEWED, w.tenant.id)


@route("POST", f"{PRIVACY}/requests/{{request_id}}/decision")
def _(w):
    url = f"{PRIVACY}/requests/{_privacy_request(w)}/decision"
    body = {"decision": "approve"}
    return Call(w.client(OFFICER_PERMISSIONS), "POST", url, Action.PRIVACY_REQUEST_APPROVED, w.tenant.id, json=body)


@route("POST", f"{PRIVACY}/requests/{{request_id}}/start")
def _(w):
    url = f"{PRIVACY}/requests/{_privacy_request(w, to='approved')}/start"
    return Call(w.client(OFFICER_PERMISSIONS), "POST", url, Action.PRIVACY_REQUEST_STARTED, w.tenant.id)


@route("POST", f"{PRIVACY}/requests/{{request_id}}/complete")
def _(w):
    url = f"{PRIVACY}/requests/{_privacy_request(w, 'restriction', to='in_progress')}/complete"
    return Call(w.client(OFFICER_PERMISSIONS), "POST", url, Action.PRIVACY_REQUEST_COMPLETED, w.tenant.id)


@route("POST", f"{PRIVACY}/requests/{{request_id}}/hold")
def _(w):
    url = f"{PRIVACY}/requests/{_privacy_request(w)}/hold"
    body = {"reason": "litigation hold, case 2026-14"}
    return Call(w.client(OFFICER_PERMISSIONS), "POST", url, Action.PRIVACY_REQUEST_HELD, w.tenant.id, json=body)


@route("POST", f"{PRIVACY}/requests/{{request_id}}/resume")
def _(w):
    url = f"{PRIVACY}/requests/{_privacy_request(w, to='on_legal_hold')}/resume"
    return Call(w.client(OFFICER_PERMISSIONS), "POST", url, Action.PRIVACY_REQUEST_RESUMED, w.tenant.id)


@route("GET", f"{PRIVACY}/request-policy")
def _(w):
    url = f"{PRIVACY}/request-policy"
    return Call(w.client(OFFICER_PERMISSIONS), "GET", url, Action.PRIVACY_REQUEST_POLICY_VIEWED, w.tenant.id)


@route("PUT", f"{PRIVACY}/request-policy")
def _(w):
    url, body = f"{PRIVACY}/request-policy", {"respond_within_days": 20, "remind_before_days": 5}
    client = w.client(OFFICER_PERMISSIONS)
    return Call(client, "PUT", url, Action.PRIVACY_REQUEST_POLICY_CHANGED, w.tenant.id, json=body)


@route("DELETE", f"{PRIVACY}/restrictions/{{patron_id}}")
def _(w):
    from bookwarden.privacy.restrictions import service as restrictions

    patron_id = UUID(w.records[library.PATRONS]["id"])
    with tenant_session(w.db, w.tenant.id) as session:
        restrictions.restrict(session, w.as_admin(), patron_id, None)
    url = f"{PRIVACY}/restrictions/{patron_id}"
    return Call(w.client(OFFICER_PERMISSIONS), "DELETE", url, Action.PRIVACY_RESTRICTION_LIFTED, w.tenant.id)


@route("POST", f"{PRIVACY}/requests/form")
def _(w):
    body = {"institution": w.tenant.slug, "kind": "access", "by": "email", "value": w.records[library.PATRONS]["email"]}
    return Call(
        w.browser(), "POST", f"{PRIVACY}/requests/form", Action.PRIVACY_REQUEST_RECEIVED, w.tenant.id, json=body
    )


@route("POST", f"{PRIVACY}/requests/form/verify")
def _(w):
    verification_id, code = _form_sent(w)
    body = {"institution": w.tenant.slug, "verification_id": verification_id, "code": code}
    url = f"{PRIVACY}/requests/form/verify"
    return Call(w.browser(), "POST", url, Action.PRIVACY_REQUEST_VERIFIED, w.tenant.id, json=body)


@route("POST", f"{PRIVACY}/inquiries/forward")
def _(w):
    from bookwarden.privacy.requests import form as request_form

    email = w.records[library.PATRONS]["email"]
    asked = request_form.submit(
        w.db, institution=None, kind="erasure", by="email", value=email, source_address=fresh_address()
    )
    body = {"reference": asked.inquiry_reference, "institution": w.tenant.slug}
    url = f"{PRIVACY}/inquiries/forward"
    return Call(w.browser(), "POST", url, Action.PRIVACY_INQUIRY_FORWARDED, PLATFORM_CHAIN, json=body)


# privacy: access packages, erasure certificates, the erasure policy


def _certificate(w: World) -> UUID:
    """A patron erased, certified with the key the app verifies against."""
    from bookwarden.audit import signing
    from bookwarden.privacy.subjects import erasure

    patron_id = UUID(w.new_record(library.PATRONS)["id"])
    key = signing.load_signing_key(w.app.state.settings)
    with tenant_session(w.db, w.tenant.id) as session:
        return erasure.erase_patron(session, patron_id, signing_key=key).id


@route("POST", f"{PRIVACY}/subject-exports/approvals")
def _(w):
    client = w.client({Permission.PRIVACY_REQUESTS_HANDLE})
    body = {"patron_id": w.records[library.PATRONS]["id"]}
    url = f"{PRIVACY}/subject-exports/approvals"
    return Call(client, "POST", url, Action.APPROVAL_REQUESTED, w.tenant.id, json=body)


@route("POST", f"{PRIVACY}/subject-exports")
def _(w):
    # Outside a data-subject request: asked by one officer, approved by another, built by the one who asked.
    asker = w.client({Permission.PRIVACY_REQUESTS_HANDLE})
    patron_id = w.records[library.PATRONS]["id"]
    asked = asker.post(f"{PRIVACY}/subject-exports/approvals", json={"patron_id": patron_id})
    assert asked.status_code == 202, asked.text
    checker = w.client({Permission.PRIVACY_REQUESTS_HANDLE, Permission.ACCOUNTS_READ})
    assert checker.post(f"/api/v1/approvals/{asked.json()['id']}/approve").status_code == 200
    body = {"patron_id": patron_id, "approval_id": asked.json()["id"]}
    return Call(asker, "POST", f"{PRIVACY}/subject-exports", Action.SUBJECT_EXPORT_BUILT, w.tenant.id, json=body)


@route("GET", f"{PRIVACY}/subject-exports/download/{{token}}")
def _(w):
    from bookwarden.privacy.subjects import export as subject_export

    patron_id = UUID(w.records[library.PATRONS]["id"])  # made through the API first, in its own session
    with tenant_session(w.db, w.tenant.id) as session:
        package = subject_export.build_package(session, patron_id)
    anonymous = TestClient(w.app, raise_server_exceptions=False)  # the link is the credential
    return Call(anonymous, "GET", package.download_path, Action.SUBJECT_EXPORT_DOWNLOADED, w.tenant.id)


@route("GET", f"{PRIVACY}/erasure-certificates/{{certificate_id}}")
def _(w):
    client = w.client({Permission.PRIVACY_REQUESTS_HANDLE})
    url = f"{PRIVACY}/erasure-certificates/{_certificate(w)}"
    return Call(client, "GET", url, Action.ERASURE_CERTIFICATE_VIEWED, w.tenant.id)


@route("POST", f"{PRIVACY}/erasure-certificates/verify")
def _(w):
    client = w.client({Permission.PRIVACY_REQUESTS_HANDLE})
    document = client.get(f"{PRIVACY}/erasure-certificates/{_certificate(w)}").json()
    body = {name: document[name] for name in ("statement", "signature", "key_id", "public_key")}
    url = f"{PRIVACY}/erasure-certificates/verify"
    return Call(client, "POST", url, Action.ERASURE_CERTIFICATE_VERIFIED, w.tenant.id, json=body)


@route("GET", f"{PRIVACY}/erasure-policy")
def _(w):
    client = w.client({Permission.POLICY_MANAGE})
    return Call(client, "GET", f"{PRIVACY}/erasure-policy", Action.ERASURE_POLICY_VIEWED, w.tenant.id)


@route("PUT", f"{PRIVACY}/erasure-policy")
def _(w):
    client = w.client({Permission.POLICY_MANAGE})
    body = {"keep_posts_anonymized": True}
    return Call(client, "PUT", f"{PRIVACY}/erasure-policy", Action.ERASURE_POLICY_CHANGED, w.tenant.id, json=body)


# retention, legal holds, self-registration

RETENTION = f"{PRIVACY}/retention"
RETENTION_OFFICER = {Permission.PRIVACY_RETENTION_MANAGE}
HOLDS = f"{PRIVACY}/holds"
HOLD = {"reason": "Court order 2026-CV-0042", "category": "searches"}


def _retention_run(w: World) -> UUID:
    from bookwarden.privacy.retention import service as retention

    return retention.run_purge(w.db, w.tenant.id)


@route("GET", f"{RETENTION}/policies")
def _(w):
    url = f"{RETENTION}/policies"
    return Call(w.client(RETENTION_OFFICER), "GET", url, Action.RETENTION_POLICY_VIEWED, w.tenant.id)


def _period_recipe(category: str, days: int) -> None:
    @route("PUT", f"{RETENTION}/policies/{category}")
    def _(w):
        url = f"{RETENTION}/policies/{category}"
        client = w.client(RETENTION_OFFICER)
        return Call(client, "PUT", url, Action.APPROVAL_REQUESTED, w.tenant.id, json={"keep_days": days})


for _category, _days in (("loan_history", 400), ("searches", 30), ("posts", 365), ("inactive_patrons", 1000),
                         ("exports", 14), ("audit_segments", 3650)):  # fmt: skip
    _period_recipe(_category, _days)


@route("GET", f"{RETENTION}/preview")
def _(w):
    return Call(w.client(RETENTION_OFFICER), "GET", f"{RETENTION}/preview", Action.RETENTION_PREVIEWED, w.tenant.id)


@route("GET", f"{RETENTION}/runs")
def _(w):
    _retention_run(w)
    return Call(w.client(RETENTION_OFFICER), "GET", f"{RETENTION}/runs", Action.RETENTION_RUN_LISTED, w.tenant.id)


@route("GET", f"{RETENTION}/runs/{{run_id}}")
def _(w):
    url = f"{RETENTION}/runs/{_retention_run(w)}"
    return Call(w.client(RETENTION_OFFICER), "GET", url, Action.RETENTION_RUN_VIEWED, w.tenant.id)


@route("POST", HOLDS)
def _(w):
    client = w.client({Permission.PRIVACY_HOLDS_MANAGE})
    return Call(client, "POST", HOLDS, Action.LEGAL_HOLD_PLACED, w.tenant.id, json=HOLD)


@route("GET", HOLDS)
def _(w):
    return Call(w.client({Permission.PRIVACY_HOLDS_MANAGE}), "GET", HOLDS, Action.LEGAL_HOLD_LISTED, w.tenant.id)


@route("POST", f"{HOLDS}/{{hold_id}}/lift")
def _(w):
    client = w.client({Permission.PRIVACY_HOLDS_MANAGE})
    placed = client.post(HOLDS, json=HOLD)
    assert placed.status_code == 201, placed.text
    return Call(client, "POST", f"{HOLDS}/{placed.json()['id']}/lift", Action.LEGAL_HOLD_LIFTED, w.tenant.id)


SELF_REGISTRATION = "/api/v1/self-registration"


def _registration_open(w: World) -> None:
    opened = w.admin.put(f"{SELF_REGISTRATION}/settings", json={"enabled": True, "timezone": "UTC"})
    assert opened.status_code == 200, opened.text


@route("POST", SELF_REGISTRATION)
def _(w):
    _registration_open(w)
    body = {"institution": w.tenant.slug, "name": "Sam Reader", "email": "sam@example.org", "birth_date": "1990-05-01"}
    return Call(w.browser(), "POST", SELF_REGISTRATION, Action.SELF_REGISTERED, w.tenant.id, json=body)


@route("POST", f"{SELF_REGISTRATION}/confirm")
def _(w):
    from bookwarden.privacy.registration import service as self_registration

    _registration_open(w)
    email = f"sam.{uuid.uuid4().hex[:8]}@example.org"
    registered = self_registration.register(
        w.db, w.tenant.slug, fresh_address(), name="Sam Reader", email=email, birth_date=date(1990, 5, 1)
    )
    with tenant_session(w.db, w.tenant.id) as session:
        # The mail is forgotten once sent: read the link from the queued one, before the worker sends it.
        [message] = session.scalars(select(OutboxMessage).order_by(OutboxMessage.created_at.desc()).limit(1)).all()
        [token] = re.findall(r"#token=(\S+)", open_mail(session, message).body)
    assert registered.patron_id
    url, body = f"{SELF_REGISTRATION}/confirm", {"token": token}
    return Call(w.browser(), "POST", url, Action.SELF_REGISTRATION_CONFIRMED, w.tenant.id, json=body)


@route("GET", f"{SELF_REGISTRATION}/settings")
def _(w):
    url = f"{SELF_REGISTRATION}/settings"
    return Call(w.admin, "GET", url, Action.SELF_REGISTRATION_SETTINGS_VIEWED, w.tenant.id)


@route("PUT", f"{SELF_REGISTRATION}/settings")
def _(w):
    url, body = f"{SELF_REGISTRATION}/settings", {"enabled": True, "timezone": "Europe/Paris"}
    return Call(w.admin, "PUT", url, Action.SELF_REGISTRATION_SETTINGS_CHANGED, w.tenant.id, json=body)


# anonymized publisher reports

REPORTS = "/api/v1/reports"
REPORT_CATALOGUE = b"item_id,title,publisher\nitem-9,Beloved,Vintage\nitem-1,Middlemarch,Penguin\n"
REPORT_ASK = {"publisher": "Vintage", "first_month": "2026-01", "months": 2}


def _reports(w: World, *permissions: Permission) -> TestClient:
    """A client holding `permissions`, the catalogue loaded first (by another client, in its own request)."""
    loader = w.client({Permission.REPORTS_CATALOGUE_MANAGE})
    assert loader.post(f"{REPORTS}/catalogue", content=REPORT_CATALOGUE).status_code == 200
    return w.client(set(permissions))


@route("POST", f"{REPORTS}/catalogue")
def _(w):
    client = w.client({Permission.REPORTS_CATALOGUE_MANAGE})
    url = f"{REPORTS}/catalogue"
    return Call(client, "POST", url, Action.CATALOGUE_IMPORTED, w.tenant.id, content=REPORT_CATALOGUE)


@route("GET", f"{REPORTS}/catalogue")
def _(w):
    client = _reports(w, Permission.REPORTS_PUBLISHERS)
    return Call(client, "GET", f"{REPORTS}/catalogue", Action.CATALOGUE_LISTED, w.tenant.id)


@route("GET", f"{REPORTS}/policy")
def _(w):
    client = w.client({Permission.REPORTS_PUBLISHERS})
    return Call(client, "GET", f"{REPORTS}/policy", Action.PUBLISHER_REPORT_POLICY_VIEWED, w.tenant.id)


@route("PUT", f"{REPORTS}/policy")
def _(w):
    client = w.client({Permission.REPORTS_POLICY_MANAGE})
    body = {"k": 12, "noise": True}
    return Call(client, "PUT", f"{REPORTS}/policy", Action.PUBLISHER_REPORT_POLICY_CHANGED, w.tenant.id, json=body)


@route("GET", f"{REPORTS}/budgets")
def _(w):
    client = w.client({Permission.REPORTS_PUBLISHERS})
    return Call(client, "GET", f"{REPORTS}/budgets", Action.PUBLISHER_BUDGET_LISTED, w.tenant.id)


@route("PUT", f"{REPORTS}/budgets")
def _(w):
    client = _reports(w, Permission.REPORTS_POLICY_MANAGE)
    body = {"publisher": "Vintage", "budget": 5.0}
    return Call(client, "PUT", f"{REPORTS}/budgets", Action.PUBLISHER_BUDGET_CHANGED, w.tenant.id, json=body)


@route("POST", f"{REPORTS}/publishers")
def _(w):
    client = _reports(w, Permission.REPORTS_PUBLISHERS)
    return Call(client, "POST", f"{REPORTS}/publishers", Action.PUBLISHER_REPORT_RELEASED, w.tenant.id, json=REPORT_ASK)


@route("GET", f"{REPORTS}/publishers")
def _(w):
    client = w.client({Permission.REPORTS_PUBLISHERS})
    return Call(client, "GET", f"{REPORTS}/publishers", Action.PUBLISHER_REPORT_LISTED, w.tenant.id)


@route("GET", f"{REPORTS}/publishers/{{report_id}}")
def _(w):
    client = _reports(w, Permission.REPORTS_PUBLISHERS)
    released = client.post(f"{REPORTS}/publishers", json=REPORT_ASK)
    assert released.status_code == 201, released.text
    url = f"{REPORTS}/publishers/{released.json()['report_id']}"
    return Call(client, "GET", url, Action.PUBLISHER_REPORT_VIEWED, w.tenant.id, params={"format": "csv"})


# notice mutes, an administrator's enrolment link after a reset, operators signing in


# privacy: preferences, consents, cookie choices, one-click unsubscribe, disclosures

PREFERENCE_CHOICE = {"choices": [{"channel": "email", "topic": "events", "subscribed": True}], "notice_version": "v1"}
COOKIES = {"analytics": True, "preferences": False, "notice_version": "cookies-v1"}


def _own_patron_browser(w: World) -> TestClient:
    """A browser signed in as a patron account linked to a patron record (what /privacy/me/... needs)."""
    from bookwarden.identity import roles as access

    username = f"reader-{uuid.uuid4().hex[:6]}"
    patron_id = UUID(w.records[library.PATRONS]["id"])  # made through the API first, in its own session
    account = w.account(username, kind=AccountKind.PATRON)
    with tenant_session(w.db, w.tenant.id) as session:
        session.get(Account, (w.tenant.id, account.id)).patron_id = patron_id
        access.grant_role(session, w.as_admin(), account.id, BuiltinRole.PATRON)
    client = w.browser()
    w.login(client, username)
    return client


def _preferences_staff(w: World) -> TestClient:
    return w.client({Permission.PRIVACY_PREFERENCES_MANAGE})


def _unsubscribe_link(w: World) -> str:
    from bookwarden.privacy.consent import unsubscribe
    from bookwarden.privacy.consent.service import Topic

    token = unsubscribe.sign(w.db.master, w.tenant.id, UUID(w.records[library.PATRONS]["id"]), Topic.NEWSLETTERS)
    return f"{unsubscribe.PATH}{token}"


def _disclosure(w: World) -> UUID:
    from bookwarden.privacy.disclosures import service as disclosures

    officer = Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), w.tenant.id, {Permission.PRIVACY_DISCLOSURES_MANAGE})
    patron_id = UUID(w.records[library.PATRONS]["id"])
    with tenant_session(w.db, w.tenant.id) as session:
        made = disclosures.disclose(session, actor=officer, **DISCLOSURE, patron_ids=[patron_id])
        return made.disclosure.id


DISCLOSURE = {
    "recipient": "Metro Analytics Ltd",
    "kind": "usage_analysis",
    "purpose": "usage_analysis",
    "basis": "legitimate_interests",
    "categories": ["circulation_history"],
}


@route("GET", f"{PRIVACY}/me/preferences")
def _(w):
    return Call(_own_patron_browser(w), "GET", f"{PRIVACY}/me/preferences", Action.PREFERENCES_VIEWED, w.tenant.id)


@route("PUT", f"{PRIVACY}/me/preferences")
def _(w):
    client, url = _own_patron_browser(w), f"{PRIVACY}/me/preferences"
    return Call(client, "PUT", url, Action.PREFERENCES_CHANGED, w.tenant.id, json=PREFERENCE_CHOICE)


@route("GET", f"{PRIVACY}/patrons/{{patron_id}}/preferences")
def _(w):
    url = f"{PRIVACY}/patrons/{w.records[library.PATRONS]['id']}/preferences"
    return Call(_preferences_staff(w), "GET", url, Action.PREFERENCES_VIEWED, w.tenant.id)


@route("PUT", f"{PRIVACY}/patrons/{{patron_id}}/preferences")
def _(w):
    url = f"{PRIVACY}/patrons/{w.records[library.PATRONS]['id']}/preferences"
    body = {**PREFERENCE_CHOICE, "method": "form"}
    return Call(_preferences_staff(w), "PUT", url, Action.PREFERENCES_CHANGED, w.tenant.id, json=body)


@route("GET", f"{PRIVACY}/me/consents")
def _(w):
    return Call(_own_patron_browser(w), "GET", f"{PRIVACY}/me/consents", Action.CONSENTS_VIEWED, w.tenant.id)


@route("GET", f"{PRIVACY}/patrons/{{patron_id}}/consents")
def _(w):
    url = f"{PRIVACY}/patrons/{w.records[library.PATRONS]['id']}/consents"
    return Call(_preferences_staff(w), "GET", url, Action.CONSENTS_VIEWED, w.tenant.id)


@route("GET", "/api/v1/portal/{tenant_slug}/cookie-choice")
def _(w):
    url = f"/api/v1/portal/{w.tenant.slug}/cookie-choice"
    return Call(w.browser(), "GET", url, Action.COOKIE_CHOICE_VIEWED, w.tenant.id)


@route("PUT", "/api/v1/portal/{tenant_slug}/cookie-choice")
def _(w):
    url = f"/api/v1/portal/{w.tenant.slug}/cookie-choice"
    return Call(w.browser(), "PUT", url, Action.COOKIE_CHOICE_RECORDED, w.tenant.id, json=COOKIES)


@route("GET", f"{PRIVACY}/me/cookie-choice")
def _(w):
    url = f"{PRIVACY}/me/cookie-choice"
    return Call(_own_patron_browser(w), "GET", url, Action.COOKIE_CHOICE_VIEWED, w.tenant.id)


@route("PUT", f"{PRIVACY}/me/cookie-choice")
def _(w):
    url = f"{PRIVACY}/me/cookie-choice"
    return Call(_own_patron_browser(w), "PUT", url, Action.COOKIE_CHOICE_RECORDED, w.tenant.id, json=COOKIES)


@route("GET", "/api/v1/unsubscribe/{token}")
def _(w):
    return Call(w.browser(), "GET", _unsubscribe_link(w), Action.UNSUBSCRIBE_VIEWED, w.tenant.id)


@route("POST", "/api/v1/unsubscribe/{token}")
def _(w):
    return Call(w.browser(), "POST", _unsubscribe_link(w), Action.UNSUBSCRIBED, w.tenant.id)


@route("POST", f"{PRIVACY}/disclosures")
def _(w):
    client = w.client({Permission.PRIVACY_DISCLOSURES_MANAGE})
    body = {**DISCLOSURE, "patron_ids": [w.records[library.PATRONS]["id"]]}
    return Call(client, "POST", f"{PRIVACY}/disclosures", Action.DISCLOSED, w.tenant.id, json=body)


@route("GET", f"{PRIVACY}/disclosures")
def _(w):
    client = w.client({Permission.PRIVACY_DISCLOSURES_MANAGE})
    return Call(client, "GET", f"{PRIVACY}/disclosures", Action.DISCLOSURE_LISTED, w.tenant.id)


@route("GET", f"{PRIVACY}/disclosures/{{disclosure_id}}")
def _(w):
    client = w.client({Permission.PRIVACY_DISCLOSURES_MANAGE})
    return Call(client, "GET", f"{PRIVACY}/disclosures/{_disclosure(w)}", Action.DISCLOSURE_VIEWED, w.tenant.id)


@route("GET", f"{PRIVACY}/me/disclosures")
def _(w):
    url = f"{PRIVACY}/me/disclosures"
    return Call(_own_patron_browser(w), "GET", url, Action.DISCLOSURE_LISTED, w.tenant.id)


@route("GET", f"{PRIVACY}/disclosure-policy")
def _(w):
    client = w.client({Permission.PRIVACY_DISCLOSURES_MANAGE})
    return Call(client, "GET", f"{PRIVACY}/disclosure-policy", Action.DISCLOSURE_POLICY_VIEWED, w.tenant.id)


@route("PUT", f"{PRIVACY}/disclosure-policy/{{kind}}")
def _(w):
    client, url = w.client({Permission.PRIVACY_DISCLOSURES_MANAGE}), f"{PRIVACY}/disclosure-policy/legal_request"
    return Call(client, "PUT", url, Action.DISCLOSURE_POLICY_CHANGED, w.tenant.id, json={"notify": False})


@route("POST", f"{PRIVACY}/mailings")
def _(w):
    client = w.client({Permission.MAILINGS_SEND})
    body = {"topic": "newsletters", "subject": "Alpha Library news", "message": "The reading room reopens."}
    return Call(client, "POST", f"{PRIVACY}/mailings", Action.MAILING_SENT, w.tenant.id, json=body)


@command("privacy", "requests", "list")
def _(c):
    return Command(["privacy", "requests", "list", "--tenant", "north"], Action.PRIVACY_REQUEST_LISTED, c.tenant())


@command("privacy", "requests", "show")
def _(c):
    from bookwarden.privacy.requests import service as requests

    tenant_id = c.tenant()
    desk = Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant_id, {Permission.PRIVACY_REQUESTS_REGISTER})
    with tenant_session(c.db, tenant_id) as session:
        patron = library.create(session, library.PATRONS, library.PATRONS.create(name="Asking Patron"))
        request = requests.register_for_patron(session, desk, patron.id, requests.RequestKind.ACCESS)
    args = ["privacy", "requests", "show", str(request.id), "--tenant", "north"]
    return Command(args, Action.PRIVACY_REQUEST_VIEWED, tenant_id)


@command("privacy", "escalations", "list")
def _(c):
    c.as_role("dpo")  # the platform DPO's oversight
    _escalated(c.db, c.tenant())
    return Command(["privacy", "escalations", "list", "--view", "all"], Action.DPO_ESCALATION_LISTED, PLATFORM_CHAIN)


@command("privacy", "escalations", "acknowledge")
def _(c):
    c.as_role("dpo")  # the platform DPO's oversight
    tenant_id = c.tenant()
    args = ["privacy", "escalations", "acknowledge", str(_escalated(c.db, tenant_id)), "--tenant", "north"]
    return Command(args, Action.DPO_ESCALATION_ACKNOWLEDGED, tenant_id)


@command("privacy", "records")
def _(c):
    args = ["privacy", "records", "--tenant", "north", "--format", "csv"]
    return Command(args, Action.RECORDS_OF_PROCESSING_EXPORTED, c.tenant())


def _erased_certificate(c: Console) -> tuple[UUID, UUID]:
    """(tenant, certificate) of a patron of "north" erased and certified with the console's key."""
    from bookwarden.audit import signing
    from bookwarden.privacy.subjects import erasure

    tenant_id = c.tenant()
    with tenant_session(c.db, tenant_id) as session:
        patron = library.create(session, library.PATRONS, library.PATRONS.create(name="Erased Patron"))
    get_settings.cache_clear()
    key = signing.load_signing_key(get_settings())
    with tenant_session(c.db, tenant_id) as session:
        return tenant_id, erasure.erase_patron(session, patron.id, signing_key=key).id


@command("privacy", "export")
def _(c):
    tenant_id = c.tenant()
    with tenant_session(c.db, tenant_id) as session:
        patron = library.create(session, library.PATRONS, library.PATRONS.create(name="Asking Patron"))
    # Outside a data-subject request the first run asks (maker-checker); tests/privacy/test_subject_export.py
    # walks the approval and the build with --approval.
    args = ["privacy", "export", "--tenant", "north", "--patron", str(patron.id)]
    return Command(args, Action.APPROVAL_REQUESTED, tenant_id)


@command("privacy", "certificate", "show")
def _(c):
    tenant_id, certificate = _erased_certificate(c)
    args = ["privacy", "certificate", "show", str(certificate), "--tenant", "north"]
    return Command(args, Action.ERASURE_CERTIFICATE_VIEWED, tenant_id)


@command("privacy", "certificate", "verify")
def _(c):
    tenant_id, certificate = _erased_certificate(c)
    args = ["privacy", "certificate", "verify", str(certificate), "--tenant", "north"]
    return Command(args, Action.ERASURE_CERTIFICATE_VERIFIED, tenant_id)


@command("retention", "preview")
def _(c):
    return Command(["retention", "preview", "--tenant", "north"], Action.RETENTION_PREVIEWED, c.tenant())


@command("retention", "policies")
def _(c):
    return Command(["retention", "policies", "--tenant", "north"], Action.RETENTION_POLICY_VIEWED, c.tenant())


@command("retention", "set")
def _(c):
    args = ["retention", "set", "--tenant", "north", "--category", "searches", "--days", "30"]
    return Command(args, Action.APPROVAL_REQUESTED, c.tenant())


@command("retention", "run")
def _(c):
    return Command(["retention", "run", "--tenant", "north"], Action.RETENTION_RUN_COMPLETED, c.tenant())


@command("retention", "runs")
def _(c):
    tenant_id = c.tenant()
    c.run("retention", "run", "--tenant", "north")
    return Command(["retention", "runs", "--tenant", "north"], Action.RETENTION_RUN_LISTED, tenant_id)


def _report_catalogue(c: Console) -> str:
    """The catalogue file of the reports commands, loaded into "north" (made here)."""
    file = c.home.parent / "report-catalogue.csv"
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(REPORT_CATALOGUE)
    c.tenant()
    c.run("reports", "catalogue-import", str(file), "--tenant", "north")
    return str(file)


@command("reports", "catalogue-import")
def _(c):
    file = c.home.parent / "report-catalogue.csv"
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(REPORT_CATALOGUE)
    args = ["reports", "catalogue-import", str(file), "--tenant", "north"]
    return Command(args, Action.CATALOGUE_IMPORTED, c.tenant())


@command("reports", "policy")
def _(c):
    args = ["reports", "policy", "--tenant", "north", "--k", "15"]
    return Command(args, Action.PUBLISHER_REPORT_POLICY_CHANGED, c.tenant())


@command("reports", "budget")
def _(c):
    _report_catalogue(c)
    args = ["reports", "budget", "--tenant", "north", "--publisher", "Vintage", "--budget", "4"]
    return Command(args, Action.PUBLISHER_BUDGET_CHANGED, None)


@command("reports", "publishers")
def _(c):
    _report_catalogue(c)
    months = ["--from", "2026-01", "--to", "2026-02"]
    args = ["reports", "publishers", "--tenant", "north", "--publisher", "Vintage", *months]
    return Command(args, Action.PUBLISHER_REPORT_RELEASED, None)


@command("reports", "list")
def _(c):
    return Command(["reports", "list", "--tenant", "north"], Action.PUBLISHER_REPORT_LISTED, c.tenant())


@command("privacy", "disclosures")
def _(c):
    return Command(["privacy", "disclosures", "--tenant", "north"], Action.DISCLOSURE_LISTED, c.tenant())


# privacy: the notice, concerns

NOTICE = {"version": "2027-01", "text": "What we hold about you, why, and for how long.", "material": False}
CONCERN = {"kind": "unauthorised_access", "description": "Someone signed in to my account from abroad."}


def _notice_published(db, tenant_id: UUID) -> None:
    from bookwarden.privacy.notices import service as notices

    officer = Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant_id, {Permission.PRIVACY_NOTICE_MANAGE})
    with tenant_session(db, tenant_id) as session:
        notices.publish(session, officer, version="2026-12", notice_text="The first notice.", material=False)


def _concern(w: World) -> UUID:
    from bookwarden.privacy.concerns import service as concerns

    received = concerns.report_anonymous(
        w.db, institution=w.tenant.slug, contact_email="someone@example.org", source_address=fresh_address(), **CONCERN
    )
    return received.reference


@route("GET", "/api/v1/portal/{tenant_slug}/privacy-notice")
def _(w):
    _notice_published(w.db, w.tenant.id)
    url = f"/api/v1/portal/{w.tenant.slug}/privacy-notice"
    return Call(w.browser(), "GET", url, Action.PRIVACY_NOTICE_VIEWED, w.tenant.id)


@route("GET", f"{PRIVACY}/notice/versions")
def _(w):
    client = w.client({Permission.PRIVACY_NOTICE_MANAGE})
    return Call(client, "GET", f"{PRIVACY}/notice/versions", Action.PRIVACY_NOTICE_LISTED, w.tenant.id)


@route("POST", f"{PRIVACY}/notice/versions")
def _(w):
    client = w.client({Permission.PRIVACY_NOTICE_MANAGE})
    return Call(client, "POST", f"{PRIVACY}/notice/versions", Action.PRIVACY_NOTICE_PUBLISHED, w.tenant.id, json=NOTICE)


@route("POST", f"{PRIVACY}/concerns/form")
def _(w):
    body = {"institution": w.tenant.slug, "contact_email": "someone@example.org", **CONCERN}
    return Call(w.browser(), "POST", f"{PRIVACY}/concerns/form", Action.CONCERN_REPORTED, w.tenant.id, json=body)


@route("POST", f"{PRIVACY}/me/concerns")
def _(w):
    client = _patron_browser(w)
    body = {**CONCERN, "contact_email": "me@example.org"}
    return Call(client, "POST", f"{PRIVACY}/me/concerns", Action.CONCERN_REPORTED, w.tenant.id, json=body)


@route("GET", f"{PRIVACY}/concerns")
def _(w):
    client = w.client({Permission.PRIVACY_CONCERNS_HANDLE})
    return Call(client, "GET", f"{PRIVACY}/concerns", Action.CONCERN_LISTED, w.tenant.id)


@route("GET", f"{PRIVACY}/concerns/{{concern_id}}")
def _(w):
    client = w.client({Permission.PRIVACY_CONCERNS_HANDLE})
    return Call(client, "GET", f"{PRIVACY}/concerns/{_concern(w)}", Action.CONCERN_VIEWED, w.tenant.id)


@command("privacy", "notice", "publish")
def _(c):
    import tempfile
    from pathlib import Path

    text_file = Path(tempfile.mkdtemp()) / "notice.txt"
    text_file.write_text("What we hold about you, why, and for how long.\n", encoding="utf-8")
    args = ["privacy", "notice", "publish", "--tenant", "north", "--version", "2027-02", "--file", str(text_file)]
    return Command(args, Action.PRIVACY_NOTICE_PUBLISHED, c.tenant())


@command("privacy", "notice", "list")
def _(c):
    return Command(["privacy", "notice", "list", "--tenant", "north"], Action.PRIVACY_NOTICE_LISTED, c.tenant())
