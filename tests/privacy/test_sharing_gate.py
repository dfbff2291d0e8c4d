"""The sharing gate itself: which objections stop which path, and why; restrictions; the one override;
direct marketing; optional mail refused and held back for a patron who objects. Every route and command
that shares is run against it in tests/invariants/test_sharing_gate.py."""

from __future__ import annotations

import hashlib
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from bookwarden.core.errors import InvalidInput
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, BuiltinRole, Permission
from bookwarden.core.purposes import PurposeRefused, SharingPath, checked_purpose
from bookwarden.library import guards
from bookwarden.privacy.consent import gate, mailings, objections, unsubscribe
from bookwarden.privacy.consent.service import Topic
from bookwarden.privacy.restrictions import service as restrictions
from tests.invariants.test_sharing_gate import Place, _export, _exported, _lend, _object, _patrons, _release
from tests.privacy.test_complaints import _principal
from tests.privacy.test_unsubscribe import _queue_newsletter, _subscribed_patron

OFFICER = BUILTIN_PERMISSIONS[BuiltinRole.PRIVACY_OFFICER]
PUBLIC = "https://library.alpha.example"


@pytest.fixture(autouse=True)
def public_url(monkeypatch):
    monkeypatch.setenv("BOOKWARDEN_PUBLIC_URL", PUBLIC)


@pytest.fixture
def place(tenant, client_for, in_tenant) -> Place:
    return Place(tenant, client_for, in_tenant)


@pytest.mark.parametrize("purpose", ["direct_marketing", "marketing", "telemarketing", "ads_advertising", "promotions"])
def test_direct_marketing_is_never_a_purpose(purpose):
    with pytest.raises(PurposeRefused, match="direct marketing") as refused:
        checked_purpose(purpose)
    assert refused.value.status == 403 and refused.value.slug == "direct-marketing-refused"


@pytest.mark.parametrize("purpose", ["usage_analysis", "court_order", "newsletters", "patron_administration"])
def test_other_purposes_are_names_and_pass(purpose):
    assert checked_purpose(purpose) == purpose


@pytest.mark.parametrize("purpose", ["", "Usage", "usage analysis", "x" * 81, "purpose:usage"])
def test_a_purpose_that_is_not_a_name_is_refused(purpose):
    with pytest.raises(InvalidInput, match="lowercase letters"):
        checked_purpose(purpose)


def test_the_gate_names_each_patron_left_out_with_its_reason_and_records_the_counts(place, in_tenant, tenant):
    ann, bo, cy, di, ed = _patrons(place, 5)
    _object(place, bo, "third_party_disclosure")
    _object(place, cy, "purpose:usage_analysis")
    _object(place, ed, "purpose:something_else")  # another purpose: no bar here
    with in_tenant(tenant) as session:
        restrictions.restrict(session, _principal(tenant.id, OFFICER), di, None)

        shared = gate.check_sharing(session, SharingPath.DISCLOSURE, "usage_analysis", [ann, bo, cy, di, ed])
        mailed = gate.check_sharing(session, SharingPath.OPTIONAL_MAIL, "usage_analysis", [ann, bo, cy, di, ed])
        everyone = gate.check_sharing(session, SharingPath.BULK_EXPORT, "usage_analysis", None)

        assert shared.excluded == {
            bo: "objected:third_party_disclosure",
            cy: "objected:purpose:usage_analysis",
            di: "restricted",
        }
        assert shared.allowed == [ann, ed]
        # Mail goes to the patron, not to a third party: that objection does not stop it; the purpose does.
        assert mailed.excluded == {cy: "objected:purpose:usage_analysis", di: "restricted"}
        assert everyone.excluded == shared.excluded and everyone.considered is None
        with pytest.raises(TypeError):
            everyone.allowed  # noqa: B018 - a decision over everyone does not list them
    with in_tenant(tenant) as session:  # the events are appended when the transaction commits
        [details, *_] = session.execute(
            text("SELECT details FROM audit_events WHERE action = 'privacy.sharing.checked' ORDER BY seq")
        ).scalars()
    assert details == {
        "path": "disclosure",
        "purpose": "usage_analysis",
        "considered": 5,
        "excluded": 3,
        "excluded_reasons": ["objected:purpose:usage_analysis=1", "objected:third_party_disclosure=1", "restricted=1"],
        "excluded_sha256": hashlib.sha256("\n".join(sorted(str(p) for p in (bo, cy, di))).encode()).hexdigest(),
        "legal_obligation": False,
        "overridden": 0,
    }


def test_a_legal_obligation_passes_objections_only_on_a_disclosure(place, in_tenant, tenant):
    [bo] = _patrons(place, 1)
    _object(place, bo, "third_party_disclosure")
    with in_tenant(tenant) as session:
        obliged = gate.check_sharing(session, SharingPath.DISCLOSURE, "court_order", [bo], legal_obligation=True)
        assert obliged.allowed == [bo] and obliged.overridden == 1
        for path in (SharingPath.BULK_EXPORT, SharingPath.PUBLISHER_REPORT, SharingPath.OPTIONAL_MAIL):
            with pytest.raises(InvalidInput, match="only on a disclosure"):
                gate.check_sharing(session, path, "court_order", [bo], legal_obligation=True)


def test_an_export_leaves_out_who_objects_to_its_purpose_and_only_for_that_purpose(place):
    ann, bo = _patrons(place, 2)
    _object(place, bo, "purpose:research_sharing")

    assert _exported(place, _export(place, [ann, bo], "research_sharing"), [ann, bo]) == {ann}
    assert _exported(place, _export(place, [ann, bo], None), [ann, bo]) == {ann, bo}


def test_a_restricted_patron_is_in_no_export(place, tenant, in_tenant):
    ann, bo = _patrons(place, 2)
    with in_tenant(tenant) as session:
        restrictions.restrict(session, _principal(tenant.id, OFFICER), bo, None)

    assert _exported(place, _export(place, [ann, bo], None), [ann, bo]) == {ann}


def test_without_the_gate_loaded_nothing_is_exported_and_the_approval_is_not_spent(place, monkeypatch):
    ann, bo = _patrons(place, 2)
    asker, checker = (place.client_for(place.tenant, permissions=OFFICER) for _ in range(2))
    approval = asker.post("/api/v1/patrons/exports", json={"format": "jsonl"}).json()["id"]
    assert checker.post(f"/api/v1/approvals/{approval}/approve").status_code == 200
    monkeypatch.setattr(guards, "_sharing_gate", [])

    with pytest.raises(RuntimeError, match="sharing gate"):
        guards.sharing_gate()
    failed = asker.get(f"/api/v1/patrons/exports/{approval}")
    assert failed.status_code == 500 and str(ann) not in failed.text  # fails closed: not one row

    monkeypatch.undo()
    assert _exported(place, asker.get(f"/api/v1/patrons/exports/{approval}"), [ann, bo]) == {ann, bo}


def test_an_objection_to_marketing_stops_every_optional_mail_whatever_was_subscribed(in_tenant, tenant):
    with in_tenant(tenant) as session:
        zoe = _subscribed_patron(session, topics=(Topic.NEWSLETTERS, Topic.EVENTS))
        objections.record_objection(session, zoe, "purpose:direct_marketing", actor=_principal(tenant.id, OFFICER))

        for topic in (Topic.NEWSLETTERS, Topic.EVENTS):
            with pytest.raises(unsubscribe.OptedOut, match="objected:purpose:direct_marketing"):
                unsubscribe.queue_optional_mail(
                    session, zoe, topic, subject="News", template="newsletter.txt", context={"message": "m"}
                )
        sent = mailings.send(
            session, _principal(tenant.id, {Permission.MAILINGS_SEND}), Topic.EVENTS, subject="Events", message="m"
        )
    assert (sent.queued, sent.objected) == (0, 1)


def test_a_mail_queued_before_an_objection_is_held_back_at_delivery(in_tenant, tenant):
    with in_tenant(tenant) as session:
        zoe = _subscribed_patron(session)
        message = _queue_newsletter(session, zoe)
        assert unsubscribe.still_wanted(session, message.headers)

        objections.record_objection(session, zoe, "purpose:newsletters", actor=_principal(tenant.id, OFFICER))
        assert not unsubscribe.still_wanted(session, message.headers)

        objections.withdraw_objection(session, zoe, "purpose:newsletters", actor=_principal(tenant.id, OFFICER))
        assert unsubscribe.still_wanted(session, message.headers)


def test_a_mail_kind_that_is_direct_marketing_is_refused_with_its_reason(in_tenant, tenant):
    sender = _principal(tenant.id, {Permission.MAILINGS_SEND})
    with in_tenant(tenant) as session:
        with pytest.raises(PurposeRefused, match="direct marketing"):
            mailings.send(session, sender, "direct_marketing", subject="Buy", message="m")
        with pytest.raises(InvalidInput, match="topic: one of newsletters"):
            mailings.send(session, sender, "gardening", subject="s", message="m")


def test_an_objection_recorded_in_one_institution_is_not_read_in_another(place, other_tenant, in_tenant):
    [ann] = _patrons(place, 1)
    _object(place, ann, "third_party_disclosure")
    with in_tenant(other_tenant) as session:
        decision = gate.check_sharing(session, SharingPath.BULK_EXPORT, "patron_administration", None)
        assert decision.excluded == {}


def test_the_database_refuses_a_marketing_purpose_whatever_code_writes_it(in_tenant, tenant):
    with in_tenant(tenant) as session:
        for table, values in (
            (
                "disclosures",
                "(tenant_id, id, recipient, kind, purpose, basis, categories, subject_count, refused_count, "
                "notices_queued, disclosed_by) VALUES (:t, :i, 'Ads Ltd', 'other', :p, 'consent', '[]', 0, 0, 0, :i)",
            ),
            (
                "publisher_reports",
                "(tenant_id, id, publisher, purpose, first_month, last_month, k, noise, mechanism, cells_published, "
                "cells_suppressed, body, released_by) VALUES (:t, :i, 'Penguin', :p, '2026-01-01', '2026-01-01', 10, "
                "false, 'none', 0, 0, '{}', :i)",
            ),
        ):
            for purpose in ("direct_marketing", "telemarketing"):
                with pytest.raises(IntegrityError, match="not_marketing"), session.begin_nested():
                    session.execute(
                        text(f"INSERT INTO {table} {values}"),
                        {"t": tenant.id, "i": uuid.uuid4(), "p": purpose},
                    )


def test_a_release_records_its_purpose_and_lists_it(place, tenant, in_tenant):
    ann, bo = _patrons(place, 2)
    _lend(place, [ann, bo])

    released = _release(place, [ann, bo], "collection_review")
    listed = place.client_for(tenant, permissions={Permission.REPORTS_PUBLISHERS}).get("/api/v1/reports/publishers")

    assert released.status_code == 201, released.text
    assert [r["purpose"] for r in listed.json()["items"]] == ["collection_review"]
    with in_tenant(tenant) as session:
        details = session.execute(
            text("SELECT details FROM audit_events WHERE action = 'publisher_report.released'")
        ).scalar_one()
    assert details["purpose"] == "collection_review"
