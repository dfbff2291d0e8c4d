"""The consoles through the test client: each page behind the permission its API route needs, another
institution's ids answer 404, forms refused without their CSRF token, refusals shown in the service's words."""

from __future__ import annotations

import uuid
from uuid import UUID

import pyotp
import pytest
from sqlalchemy import select, text

from bookwarden.access.approvals.models import ApprovalRequest
from bookwarden.access.grants import service as grants
from bookwarden.access.grants.models import OperatorGrant
from bookwarden.access.roles import notices
from bookwarden.core.permissions import BuiltinRole, Permission
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import tenant_session
from bookwarden.identity import passwords
from bookwarden.identity.roles import held_roles
from bookwarden.library import records
from bookwarden.privacy.requests import service as requests
from bookwarden.privacy.requests.models import RequestKind
from tests.e2e.people import PASSWORD, administrator, staff
from tests.helpers import populate
from tests.web.consoles import operator_signed_in, post_form, sign_in

ADMIN = [BuiltinRole.TENANT_ADMIN]


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch):
    monkeypatch.setattr(passwords, "DEFAULT", passwords.OWASP_FLOOR)


@pytest.fixture
def person(db, browser):
    """person(tenant, username, roles) -> a test client signed in to the pages as a new member of staff."""

    def make(tenant, username, roles=()):
        secret = pyotp.random_base32()
        staff(db, tenant.id, username, roles=roles, totp=secret)
        return sign_in(browser(), tenant.slug, username, PASSWORD, secret)

    return make


INSTITUTION_PAGES = [
    ("/console/accounts", "Accounts and roles"),
    ("/console/approvals", "Approvals"),
    ("/console/operator-grants", "Operator access"),
    ("/console/password-policy", "Password policy"),
    ("/console/security-contacts", "Security contacts and notices"),
    ("/console/audit", "Audit trail"),
    ("/console/audit/sign-in-failures", "Sign-in failures"),
    ("/console/usage", "Usage in"),
]


def test_an_administrator_sees_every_page_of_the_menu(person, tenant):
    admin = person(tenant, "ada", ADMIN)
    home = admin.get("/console")
    assert home.status_code == 200
    for path, heading in INSTITUTION_PAGES:
        assert f'href="{path}"' in home.text
        answer = admin.get(path)
        assert answer.status_code == 200, (path, answer.text[:500])
        assert heading in answer.text
        assert "<script>" not in answer.text and " style=" not in answer.text
    # The privacy officer's pages are not the administrator's.
    assert 'href="/console/privacy/requests"' not in home.text


def test_a_page_without_its_permission_is_refused(person, tenant):
    circulation = person(tenant, "cid", [BuiltinRole.CIRCULATION_STAFF])
    home = circulation.get("/console")
    assert home.status_code == 200 and "None of your roles opens a page" in home.text
    for path, _ in INSTITUTION_PAGES:
        answer = circulation.get(path)
        assert answer.status_code == 403, path
        assert answer.headers["content-type"].startswith("text/html")
    # The auditor reads the trail but runs no control: no account changes, no role grants.
    auditor = person(tenant, "aud", [BuiltinRole.AUDITOR])
    assert auditor.get("/console/audit").status_code == 200
    assert auditor.get("/console/audit/chain").status_code == 200
    assert post_form(auditor, "/console/audit", "/console/accounts", kind="staff", username="x1",
                     email="x1@example.org").status_code == 403  # fmt: skip


def test_another_institutions_ids_answer_not_found(person, tenant, other_tenant, db):
    theirs = staff(db, other_tenant.id, "bea")
    admin = person(tenant, "ada", ADMIN)
    assert admin.get(f"/console/accounts/{theirs}").status_code == 404
    answer = post_form(admin, "/console/accounts", f"/console/accounts/{theirs}/disable")
    assert answer.status_code == 404
    answer = post_form(admin, "/console/accounts", f"/console/accounts/{theirs}/roles", role="auditor")
    assert answer.status_code == 404
    with tenant_session(db, other_tenant.id) as session:
        assert held_roles(session, theirs) == []


def test_a_form_without_its_csrf_token_changes_nothing(person, tenant, db):
    admin = person(tenant, "ada", ADMIN)
    target = staff(db, tenant.id, "bob")
    for sent in ({}, {"csrf_token": "forged"}):
        answer = admin.post(f"/console/accounts/{target}/roles", data={"role": "circulation_staff", **sent})
        assert answer.status_code == 403 and "not sent from a page of this site" in answer.text
    with tenant_session(db, tenant.id) as session:
        assert held_roles(session, target) == []
    granted = post_form(admin, "/console/accounts", f"/console/accounts/{target}/roles", role="circulation_staff")
    assert granted.status_code == 303 and granted.headers["location"].endswith("done=granted")
    with tenant_session(db, tenant.id) as session:
        assert held_roles(session, target) == ["circulation_staff"]


def test_segregation_of_duties_is_refused_in_the_services_words(person, tenant, db):
    admin = person(tenant, "ada", ADMIN)
    target = staff(db, tenant.id, "carl", roles=[BuiltinRole.TENANT_ADMIN])
    answer = post_form(admin, f"/console/accounts/{target}", f"/console/accounts/{target}/roles", role="auditor")
    assert answer.status_code == 409
    assert "Segregation of duties" in answer.text and "audit" in answer.text
    with tenant_session(db, tenant.id) as session:
        assert "auditor" not in held_roles(session, target)


def test_an_administrative_role_is_asked_and_a_second_administrator_approves_it(person, tenant, db):
    first, second = person(tenant, "ada", ADMIN), person(tenant, "eve", ADMIN)
    target = staff(db, tenant.id, "dan")
    asked = post_form(first, "/console/accounts", f"/console/accounts/{target}/roles", role="security_officer")
    assert asked.headers["location"].endswith("done=asked")
    assert "waits for" in first.get(asked.headers["location"]).text or "asked" in asked.headers["location"]
    with tenant_session(db, tenant.id) as session:
        approval = session.scalars(select(ApprovalRequest).where(ApprovalRequest.status == "pending")).one()
    # The asker sees it among their own, with no button to approve it; the service refuses it anyway.
    queue = first.get("/console/approvals").text
    assert "Asked by you" in queue and f"/console/approvals/{approval.id}/approve" not in queue
    refused = post_form(first, "/console/approvals", f"/console/approvals/{approval.id}/approve")
    assert refused.status_code in (403, 409)
    approved = post_form(second, "/console/approvals", f"/console/approvals/{approval.id}/approve")
    assert approved.status_code == 303, approved.text
    with tenant_session(db, tenant.id) as session:
        assert held_roles(session, target) == ["security_officer"]


def test_security_contacts_mutes_refuse_an_administrative_kind(person, tenant, db):
    admin = person(tenant, "ada", ADMIN)
    added = post_form(admin, "/console/security-contacts", "/console/security-contacts", email="soc@alpha.example")
    assert added.status_code == 303
    with tenant_session(db, tenant.id) as session:
        contact = notices.contact_mutes(session, administrator(tenant.id))[0]
    page = f"/console/security-contacts/{contact.id}/mutes"
    refused = post_form(admin, "/console/security-contacts", page, muted="admin_role_granted")
    assert refused.status_code == 409 and "cannot be muted" in refused.text
    fields = {"csrf_token": _token(admin), "muted": ["role_granted", "account_created"]}
    muted = admin.post(page, data=fields, follow_redirects=False)
    assert muted.status_code == 303
    with tenant_session(db, tenant.id) as session:
        assert set(notices.contact_mutes(session, administrator(tenant.id))[0].muted) == {
            "role_granted",
            "account_created",
        }


def _token(client):
    from tests.web.consoles import token

    return token(client.get("/console/security-contacts"))


def test_the_request_queue_charts_requests_against_their_deadlines(person, tenant, db, client_for):
    patron_id = UUID(populate(client_for(tenant))[records.PATRONS]["id"])
    desk = Principal(
        PrincipalKind.API_TOKEN, uuid.uuid4(), tenant.id, frozenset({Permission.PRIVACY_REQUESTS_REGISTER})
    )
    with tenant_session(db, tenant.id) as session:
        late = requests.register_for_patron(session, desk, patron_id, RequestKind.ACCESS)
        requests.register_for_patron(session, desk, patron_id, RequestKind.RESTRICTION)
        session.execute(
            text(
                "UPDATE privacy_requests SET received_at = now() - interval '40 days', "
                "due_at = now() - interval '2 days' WHERE id = :id"
            ),
            {"id": late.id},
        )
    officer = person(tenant, "pia", [BuiltinRole.PRIVACY_OFFICER])
    answer = officer.get("/console/privacy/requests")
    assert answer.status_code == 200
    assert '<svg role="img" aria-label="Open requests by due date"' in answer.text
    overdue_row = answer.text.split('<th scope="row">overdue</th>')[1].split("</tr>")[0]
    assert '<td class="number">1</td>' in overdue_row
    assert "(overdue)" in answer.text

    detail = officer.get(f"/console/privacy/requests/{late.id}")
    assert detail.status_code == 200 and "Approve" in detail.text
    approved = post_form(
        officer, f"/console/privacy/requests/{late.id}", f"/console/privacy/requests/{late.id}/approve"
    )
    assert approved.status_code == 303 and approved.headers["location"].endswith("done=approve")
    with tenant_session(db, tenant.id) as session:
        assert requests.summary_of(session, late.id).state == "approved"


def test_sign_in_failures_per_day_are_drawn_as_svg(person, tenant, browser):
    for _ in range(3):
        post_form(browser(), "/signin", "/signin", institution=tenant.slug, username="ada", password="wrong one")
    admin = person(tenant, "ada", ADMIN)
    answer = admin.get("/console/audit/sign-in-failures")
    assert answer.status_code == 200
    assert '<svg role="img" aria-label="Sign-in failures per day (UTC)"' in answer.text
    assert "3 refused sign-ins" in answer.text
    assert "<script" not in answer.text.split("<main")[1] and "<style" not in answer.text
    css = admin.get("/console/console.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert ".pygal-chart .title" in css.text and "#chart-" not in css.text


def test_an_operator_asks_an_administrator_approves_and_the_grant_opens_only_its_patrons(
    person, tenant, other_tenant, db, browser, client_for
):
    populate(client_for(tenant))
    operator = operator_signed_in(db, browser(), "olga.ops", "operator_support")
    home = operator.get("/operator")
    assert home.status_code == 200 and 'href="/operator/grants"' in home.text
    assert operator.get("/console/accounts").status_code == 403  # an operator holds no institution permission
    asked = post_form(
        operator,
        "/operator/grants",
        "/operator/grants",
        institution=tenant.slug,
        scope="read",
        justification="patron cannot see their loans, ticket attached",
        ticket="SUP-1042",
        hours="1",
    )
    assert asked.status_code == 303, asked.text
    mine = operator.get("/operator/grants").text
    assert "SUP-1042" in mine and "requested" in mine and "patron cannot see" not in mine

    admin = person(tenant, "ada", ADMIN)
    queue = admin.get("/console/operator-grants").text
    assert "SUP-1042" in queue
    with tenant_session(db, tenant.id) as session:
        grant = session.scalars(select(OperatorGrant)).one()
    refused = operator.get(f"/operator/grants/{grant.id}/patrons")
    assert refused.status_code == 403  # asked, not approved
    approved = post_form(admin, "/console/operator-grants", f"/console/operator-grants/{grant.id}/approve")
    assert approved.status_code == 303

    seen = operator.get(f"/operator/grants/{grant.id}/patrons")
    assert seen.status_code == 200 and "Patron 0" in seen.text and "patron0@example.org" in seen.text
    # Another institution's admin knows nothing of it.
    stranger = person(other_tenant, "zed", ADMIN)
    assert (
        post_form(stranger, "/console/operator-grants", f"/console/operator-grants/{grant.id}/revoke").status_code
        == 404
    )

    with tenant_session(db, tenant.id) as session:  # the window runs out
        session.execute(
            text("UPDATE operator_grants SET starts_at = now() - interval '2 hours', expires_at = now() - interval "
                 "'1 hour' WHERE id = :id"), {"id": grant.id})  # fmt: skip
    assert grants.end_expired_grants(db) == 1
    assert operator.get(f"/operator/grants/{grant.id}/patrons").status_code == 403
    assert "expired" in operator.get("/operator/grants").text
