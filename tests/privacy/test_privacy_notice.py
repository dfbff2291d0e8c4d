"""The privacy notice: each institution publishes versions; anyone reads the one in force; wherever data is
collected (self-registration, the request form, a cookie choice, preferences) the version in force is shown
and recorded, and a submission naming another version is refused with nothing stored; a material change is
mailed to exactly the institution's patrons with an address that counts, and to no erased patron."""

from __future__ import annotations

import uuid
from datetime import date

import pytest
from sqlalchemy import func, select, text

from bookwarden.access.power import PowerClass, power_class
from bookwarden.core.errors import Forbidden
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, BuiltinRole, Permission
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.jobs.models import Job
from bookwarden.jobs.service import handler_for
from bookwarden.library import records as library
from bookwarden.library.models import Patron
from bookwarden.library.schemas import PatronCreate
from bookwarden.notify.models import OutboxMessage
from bookwarden.notify.service import open_mail
from bookwarden.privacy.consent.models import CookieChoice
from bookwarden.privacy.notices import service as notices
from bookwarden.privacy.notices.models import NoticeReceipt, PrivacyNoticeVersion
from bookwarden.privacy.requests.models import PrivacyRequest
from bookwarden.privacy.subjects import erasure
from tests.privacy.test_self_registration import browser, open_registration, thirteen_today

VERSIONS = "/api/v1/privacy/notice/versions"
OFFICER = frozenset(BUILTIN_PERMISSIONS[BuiltinRole.PRIVACY_OFFICER])
FIRST = {"version": "2026-01", "text": "We hold your loans for a year.", "material": False}
SECOND = {
    "version": "2026-02",
    "text": "We hold your loans for a year, and share counts with publishers.",
    "material": True,
    "change_summary": "Anonymised usage counts now go to publishers.",
}


def notice_url(slug: str) -> str:
    return f"/api/v1/portal/{slug}/privacy-notice"


def publish(client_for, tenant, body) -> dict:
    response = client_for(tenant, permissions=OFFICER).post(VERSIONS, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_publishing_is_privacy_work_held_by_the_privacy_officer_and_no_administrative_power():
    assert Permission.PRIVACY_NOTICE_MANAGE in BUILTIN_PERMISSIONS[BuiltinRole.PRIVACY_OFFICER]
    assert Permission.PRIVACY_NOTICE_MANAGE not in BUILTIN_PERMISSIONS[BuiltinRole.CIRCULATION_STAFF]
    assert power_class({Permission.PRIVACY_NOTICE_MANAGE, Permission.PRIVACY_CONCERNS_HANDLE}) is PowerClass.ORDINARY


def test_anyone_reads_the_notice_in_force_of_that_institution_only(app, client_for, tenant, other_tenant):
    anonymous = browser(app)
    assert anonymous.get(notice_url(tenant.slug)).status_code == 404  # nothing published yet

    publish(client_for, tenant, FIRST)
    shown = anonymous.get(notice_url(tenant.slug))
    assert shown.status_code == 200, shown.text
    assert (shown.json()["version"], shown.json()["text"]) == ("2026-01", FIRST["text"])
    assert shown.json()["last_updated"] == date.today().isoformat()  # default: the day it was published

    publish(client_for, tenant, {**SECOND, "last_updated": "2026-02-01"})
    now_in_force = anonymous.get(notice_url(tenant.slug)).json()
    assert (now_in_force["version"], now_in_force["last_updated"]) == ("2026-02", "2026-02-01")
    assert now_in_force["change_summary"] == SECOND["change_summary"] and now_in_force["material"] is True

    # Another institution's notice is its own: none published there, and its staff see none of these versions.
    assert anonymous.get(notice_url(other_tenant.slug)).status_code == 404
    assert client_for(other_tenant, permissions=OFFICER).get(VERSIONS).json()["items"] == []
    mine = client_for(tenant, permissions=OFFICER).get(VERSIONS).json()["items"]
    assert [(v["version"], v["in_force"]) for v in mine] == [("2026-02", True), ("2026-01", False)]


def test_publishing_needs_the_permission_a_new_label_and_for_a_material_change_what_changed(
    client_for, tenant, in_tenant
):
    refused = client_for(tenant, permissions={Permission.POLICY_MANAGE}).post(VERSIONS, json=FIRST)
    assert refused.status_code == 403
    publish(client_for, tenant, FIRST)
    officer = client_for(tenant, permissions=OFFICER)
    assert officer.post(VERSIONS, json=FIRST).status_code == 409  # the label is taken
    vague = {**SECOND, "change_summary": None}
    assert officer.post(VERSIONS, json=vague).status_code == 422
    assert officer.post(VERSIONS, json={**SECOND, "last_updated": "2999-01-01"}).status_code == 422
    card = {**SECOND, "change_summary": "Pay with 4111 1111 1111 1111"}
    assert officer.post(VERSIONS, json=card).json()["type"].endswith("sensitive-data-refused")
    with in_tenant(tenant) as session:
        assert session.scalar(select(func.count()).select_from(PrivacyNoticeVersion)) == 1


def test_the_version_recorded_at_registration_is_the_one_in_force_at_that_moment(
    app, db, client_for, tenant, in_tenant
):
    open_registration(db, tenant.id)
    born = thirteen_today("UTC").replace(year=thirteen_today("UTC").year - 20)
    person = {"institution": tenant.slug, "name": "Ada Reader", "birth_date": born.isoformat()}

    publish(client_for, tenant, FIRST)
    first = browser(app).post("/api/v1/self-registration", json={**person, "email": "ada@example.org"})
    assert first.status_code == 201, first.text
    assert first.json()["privacy_notice"]["version"] == "2026-01"
    assert first.json()["privacy_notice"]["url"].endswith(notice_url(tenant.slug))

    publish(client_for, tenant, SECOND)
    second = browser(app).post(
        "/api/v1/self-registration", json={**person, "email": "bea@example.org", "notice_version": "2026-02"}
    )
    assert second.status_code == 201, second.text
    assert second.json()["privacy_notice"]["version"] == "2026-02"

    # A form still showing the first version is refused, and nothing about the person is kept.
    stale = browser(app).post(
        "/api/v1/self-registration", json={**person, "email": "cy@example.org", "notice_version": "2026-01"}
    )
    assert stale.status_code == 409 and stale.json()["type"].endswith("notice-version-stale")
    assert "2026-02" in stale.json()["detail"]

    with in_tenant(tenant) as session:
        recorded = dict(
            session.execute(
                select(NoticeReceipt.patron_id, PrivacyNoticeVersion.version).join(
                    PrivacyNoticeVersion,
                    (PrivacyNoticeVersion.tenant_id == NoticeReceipt.tenant_id)
                    & (PrivacyNoticeVersion.id == NoticeReceipt.version_id),
                )
            ).all()
        )
        assert session.scalar(select(func.count()).select_from(Patron)) == 2
        events = session.execute(
            text("SELECT details->>'notice_version' FROM audit_events WHERE action = 'patron.self_registered'")
        ).scalars()
        assert sorted(events) == ["2026-01", "2026-02"]
    assert recorded == {
        uuid.UUID(first.json()["patron_id"]): "2026-01",
        uuid.UUID(second.json()["patron_id"]): "2026-02",
    }


def test_the_request_form_shows_and_records_the_version_and_refuses_a_stale_one(app, client_for, tenant, in_tenant):
    staff = client_for(tenant)
    assert staff.post("/api/v1/patrons", json={"name": "Di Patron", "email": "di@example.org"}).status_code == 201
    publish(client_for, tenant, FIRST)
    form = {"institution": tenant.slug, "kind": "access", "by": "email", "value": "di@example.org"}

    sent = browser(app).post("/api/v1/privacy/requests/form", json={**form, "notice_version": "2026-01"})
    assert sent.status_code == 202, sent.text
    assert sent.json()["privacy_notice"]["version"] == "2026-01"
    # No match: the same notice shown (the answer must not differ), nothing recorded about anyone.
    nobody = browser(app).post("/api/v1/privacy/requests/form", json={**form, "value": "nobody@example.org"})
    assert nobody.json()["privacy_notice"] == sent.json()["privacy_notice"]

    publish(client_for, tenant, SECOND)
    stale = browser(app).post("/api/v1/privacy/requests/form", json={**form, "notice_version": "2026-01"})
    assert stale.status_code == 409 and stale.json()["type"].endswith("notice-version-stale")

    with in_tenant(tenant) as session:
        [request] = session.scalars(select(PrivacyRequest)).all()  # the stale form made none
        [receipt] = session.scalars(select(NoticeReceipt)).all()
        version = session.get(PrivacyNoticeVersion, (tenant.id, receipt.version_id))
    assert (receipt.request_id, receipt.patron_id, receipt.collection) == (
        request.id,
        request.patron_id,
        "request_form",
    )
    assert version.version == "2026-01"


def test_cookie_choices_and_preferences_record_the_version_in_force_and_refuse_another(
    app, client_for, tenant, in_tenant
):
    visitor = browser(app)
    url = f"/api/v1/portal/{tenant.slug}/cookie-choice"
    # Before any notice is published here, the label the banner names is recorded as given.
    assert (
        visitor.put(url, json={"analytics": True, "preferences": False, "notice_version": "site-7"}).status_code == 200
    )

    publish(client_for, tenant, FIRST)
    banner = visitor.get(url).json()
    assert banner["privacy_notice"]["version"] == "2026-01"  # what the banner shows before the choice
    chosen = visitor.put(url, json={"analytics": False, "preferences": True, "notice_version": "2026-01"})
    assert chosen.status_code == 200 and chosen.json()["notice_version"] == "2026-01"
    stale = visitor.put(url, json={"analytics": True, "preferences": True, "notice_version": "site-7"})
    assert stale.status_code == 409 and stale.json()["type"].endswith("notice-version-stale")

    staff = client_for(tenant, permissions={Permission.PRIVACY_PREFERENCES_MANAGE, Permission.PATRONS_WRITE})
    patron_id = staff.post("/api/v1/patrons", json={"name": "Ed Patron", "email": "ed@example.org"}).json()["id"]
    preferences = f"/api/v1/privacy/patrons/{patron_id}/preferences"
    assert staff.get(preferences).json()["privacy_notice"]["version"] == "2026-01"
    choice = {"choices": [{"channel": "email", "topic": "newsletters", "subscribed": True}]}
    assert staff.put(preferences, json={**choice, "notice_version": "2025-12"}).status_code == 409
    assert staff.put(preferences, json={**choice, "notice_version": "2026-01"}).status_code == 200

    with in_tenant(tenant) as session:
        labels = session.scalars(select(CookieChoice.notice_version).order_by(CookieChoice.seq)).all()
        consents = session.execute(text("SELECT notice_version FROM consent_records")).scalars().all()
    assert labels == ["site-7", "2026-01"] and consents == ["2026-01"]


def _patron(session, name: str, email: str | None):
    return library.create(session, library.PATRONS, PatronCreate(name=name, email=email)).id


def _change_mail(session) -> list[str]:
    rows = session.scalars(select(OutboxMessage)).all()
    return sorted(m.to for m in map(lambda r: open_mail(session, r), rows) if "privacy notice has changed" in m.subject)


def test_a_material_change_mails_exactly_that_institutions_patrons_with_an_address_and_not_the_erased(
    db, client_for, tenant, other_tenant, in_tenant
):
    with in_tenant(tenant) as session:
        for n in range(5):
            _patron(session, f"Reader {n}", f"reader{n}@example.org")
        _patron(session, "No Mail", None)
        erased = _patron(session, "Gone Reader", "gone@example.org")
        pending = _patron(session, "Unconfirmed", "unconfirmed@example.org")
        library.await_email_confirmation(
            session, pending, session.execute(text("SELECT now() + interval '1 day'")).scalar()
        )
    with in_tenant(tenant) as session:
        erasure.erase_patron(session, erased)
    with in_tenant(other_tenant) as session:
        _patron(session, "Elsewhere", "elsewhere@example.org")

    publish(client_for, tenant, FIRST)  # not material: no job, no mail
    published = publish(client_for, tenant, SECOND)
    with platform_session(db) as session:
        jobs = session.scalars(select(Job).where(Job.kind == notices.MAIL_JOB)).all()
    assert [job.payload for job in jobs] == [{"tenant_id": str(tenant.id), "version_id": published["id"]}]

    # Batches of two: three batches, each its own transaction and event; the job's own run then finds it done.
    progress = notices.mail_change(db, tenant.id, uuid.UUID(published["id"]), batch=2)
    handler_for(notices.MAIL_JOB)(db, jobs[0].payload)
    assert progress.mailed == 5 and progress.done

    with in_tenant(tenant) as session:
        mailed = _change_mail(session)
        version = session.get(PrivacyNoticeVersion, (tenant.id, uuid.UUID(published["id"])))
        batches = (
            session.execute(
                text("SELECT details FROM audit_events WHERE action = 'privacy_notice.change_mailed' ORDER BY seq")
            )
            .scalars()
            .all()
        )
        [body] = [
            m.body
            for m in map(lambda r: open_mail(session, r), session.scalars(select(OutboxMessage)).all())
            if m.to == "reader0@example.org"
        ]
    assert mailed == [f"reader{n}@example.org" for n in range(5)]  # once each; not the erased, nor the unconfirmed
    assert (version.mailed, version.mail_done_at is not None) == (5, True)
    assert sum(b["count"] for b in batches) == 5 and batches[-1]["done"] is True
    assert SECOND["change_summary"] in body and notice_url(tenant.slug) in body
    assert "cannot be unsubscribed" in body  # a service mail, whatever the patron's mail preferences
    with in_tenant(other_tenant) as session:
        assert _change_mail(session) == []


def test_the_service_itself_refuses_an_actor_without_the_permission(db, tenant):
    desk = Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant.id, frozenset({Permission.PATRONS_WRITE}))
    with pytest.raises(Forbidden), tenant_session(db, tenant.id) as session:
        notices.publish(session, desk, version="2026-03", notice_text="Text.", material=False)
    with pytest.raises(Forbidden), tenant_session(db, tenant.id) as session:
        notices.versions(session, desk)


def test_a_change_mail_that_dies_midway_resumes_from_its_cursor_and_mails_nobody_twice(
    db, client_for, tenant, in_tenant, monkeypatch
):
    with in_tenant(tenant) as session:
        for n in range(5):
            _patron(session, f"Reader {n}", f"reader{n}@example.org")
    publish(client_for, tenant, FIRST)
    version_id = uuid.UUID(publish(client_for, tenant, SECOND)["id"])

    real, seen = library.email_on_file, []

    def dies_on_the_third(session, patron):
        seen.append(patron.id)
        if len(seen) == 3:
            raise RuntimeError("worker killed")
        return real(session, patron)

    monkeypatch.setattr(library, "email_on_file", dies_on_the_third)
    with pytest.raises(RuntimeError):
        notices.mail_change(db, tenant.id, version_id, batch=2)
    with in_tenant(tenant) as session:
        assert len(_change_mail(session)) == 2  # the first batch committed; the second rolled back whole
    monkeypatch.setattr(library, "email_on_file", real)

    assert notices.mail_change(db, tenant.id, version_id, batch=2).mailed == 3
    with in_tenant(tenant) as session:
        assert _change_mail(session) == [f"reader{n}@example.org" for n in range(5)]
