"""Disclosures to third parties: one function leaves out the patrons who objected (to third parties or to
the purpose) unless the basis is a legal obligation, records recipient, purpose, basis, categories and
subjects, tells the subjects when the institution's policy says so, and lists them per patron."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select, text

from bookwarden.core.classification import Category
from bookwarden.core.errors import Conflict, InvalidInput, NotFound
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, LIBRARY_WRITE, BuiltinRole, Permission
from bookwarden.identity import passwords
from bookwarden.identity.models import AccountKind
from bookwarden.notify.models import OutboxMessage
from bookwarden.notify.service import open_mail
from bookwarden.privacy.consent import objections
from bookwarden.privacy.disclosures import service as disclosures
from bookwarden.privacy.disclosures.models import DisclosureKind, DisclosureSubject, LegalBasis
from tests.e2e.test_cli import cli_env  # noqa: F401 - fixture
from tests.privacy.test_complaints import PASSWORD, _account, _patron, _principal

OFFICER = frozenset(BUILTIN_PERMISSIONS[BuiltinRole.PRIVACY_OFFICER])
DISCLOSURES = "/api/v1/privacy/disclosures"


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch):
    monkeypatch.setattr(passwords, "DEFAULT", passwords.OWASP_FLOOR)


def _patrons(session, n: int, *, email=True) -> list[uuid.UUID]:
    return [_patron(session, f"Patron {i}", f"p{i}@alpha.example" if email else None) for i in range(n)]


def _disclose(session, ids, **overrides):
    arguments = {
        "recipient": "Metro Analytics Ltd",
        "purpose": "usage_analysis",
        "basis": LegalBasis.LEGITIMATE_INTERESTS,
        "categories": [Category.CIRCULATION_HISTORY, Category.AFFILIATION],
        "patron_ids": ids,
        "kind": DisclosureKind.USAGE_ANALYSIS,
        "actor": _principal(session.tenant_id, OFFICER),
        **overrides,
    }
    return disclosures.disclose(session, **arguments)


def test_a_disclosure_leaves_out_patrons_who_objected_and_records_the_rest(db, in_tenant, tenant):
    with in_tenant(tenant) as session:
        ann, bo, cy, di = _patrons(session, 4)
        objections.record_objection(session, bo, "third_party_disclosure")
        objections.record_objection(session, cy, "purpose:usage_analysis")
        objections.record_objection(session, di, "purpose:research_sharing")  # another purpose: no bar here

        made = _disclose(session, [ann, bo, cy, di])

        assert made.patron_ids == [ann, di]
        assert set(made.refused_patron_ids) == {bo, cy}
        stored = made.disclosure
        assert (stored.recipient, stored.kind, stored.purpose, stored.basis) == (
            "Metro Analytics Ltd",
            "usage_analysis",
            "usage_analysis",
            "legitimate_interests",
        )
        assert stored.categories == ["affiliation", "circulation_history"]
        assert (stored.subject_count, stored.refused_count, stored.notices_queued) == (2, 2, 0)  # default: no notice
        named = session.scalars(select(DisclosureSubject.patron_id).order_by(DisclosureSubject.patron_id)).all()
        assert set(named) == {ann, di}
        # A subject's access package finds the disclosures about them; an objector finds none.
        assert [d.id for d in disclosures.disclosures_about(session, ann)] == [stored.id]
        assert disclosures.disclosures_about(session, bo) == []
    with in_tenant(tenant) as session:
        details = session.execute(
            text("SELECT details FROM audit_events WHERE action = 'privacy.disclosure.made'")
        ).scalar_one()
    assert (details["subject_count"], details["refused_count"], details["basis"]) == (2, 2, "legitimate_interests")
    assert len(details["subjects_sha256"]) == 64 and str(ann) not in str(details)


def test_a_legal_obligation_is_not_stopped_by_an_objection(db, in_tenant, tenant):
    with in_tenant(tenant) as session:
        ann, bo = _patrons(session, 2)
        objections.record_objection(session, bo, "third_party_disclosure")
        objections.record_objection(session, bo, "purpose:court_order")

        made = _disclose(
            session,
            [ann, bo],
            recipient="Crown Court, Leeds",
            purpose="court_order",
            basis=LegalBasis.LEGAL_OBLIGATION,
            kind=DisclosureKind.LEGAL_REQUEST,
            reference="Order 2026/114",
        )

    assert made.patron_ids == [ann, bo] and made.refused_patron_ids == []
    assert LegalBasis.LEGAL_OBLIGATION in disclosures.OBJECTIONS_CANNOT_STOP
    assert {LegalBasis.LEGAL_OBLIGATION} == disclosures.OBJECTIONS_CANNOT_STOP  # and nothing else passes


def test_when_every_subject_objected_nothing_is_recorded_or_shared(db, in_tenant, tenant):
    with in_tenant(tenant) as session:
        (bo,) = _patrons(session, 1)
        objections.record_objection(session, bo, "third_party_disclosure")
        with pytest.raises(Conflict, match="objected"):
            _disclose(session, [bo], basis=LegalBasis.CONSENT)
    with in_tenant(tenant) as session:
        assert session.scalar(select(DisclosureSubject.patron_id)) is None


def test_subjects_are_told_when_the_policy_says_so(db, in_tenant, tenant):
    officer = None
    with in_tenant(tenant) as session:
        officer = _principal(tenant.id, OFFICER)
        ann, silent = _patrons(session, 1)[0], _patron(session, "No Address", None)
        disclosures.set_notice_policy(session, officer, DisclosureKind.SERVICE_PROVIDER, True)

        made = _disclose(
            session,
            [ann, silent],
            recipient="Bindery Services plc",
            purpose="book_repair_logistics",
            basis=LegalBasis.CONTRACT,
            kind=DisclosureKind.SERVICE_PROVIDER,
        )

        assert made.disclosure.notices_queued == 1  # the patron with no address cannot be told
        rows = session.scalars(select(DisclosureSubject).order_by(DisclosureSubject.notice_message_id)).all()
        notice_ids = {r.patron_id: r.notice_message_id for r in rows}
        assert notice_ids[silent] is None and notice_ids[ann] is not None
        message = session.get(OutboxMessage, (tenant.id, notice_ids[ann]))
        mail = open_mail(session, message)
    assert mail.to == "p0@alpha.example"
    assert mail.subject == "[Alpha University] your personal data was shared with a third party"
    assert "Recipient: Bindery Services plc" in mail.body
    assert "Legal basis: contract" in mail.body and "book_repair_logistics" in mail.body
    assert "cannot be unsubscribed" in mail.body and "List-Unsubscribe" not in message.headers


def test_a_legal_request_is_told_by_default_unless_the_law_forbids_it(db, in_tenant, tenant):
    with in_tenant(tenant) as session:
        ann, bo = _patrons(session, 2)
        legal = {
            "recipient": "Regional Police",
            "purpose": "criminal_investigation",
            "basis": LegalBasis.LEGAL_OBLIGATION,
            "kind": DisclosureKind.LEGAL_REQUEST,
        }
        told = _disclose(session, [ann], **legal)
        withheld = _disclose(session, [bo], **legal, notice_withheld_reason="court order forbids telling until 2027")
        assert told.disclosure.notices_queued == 1
        assert withheld.disclosure.notices_queued == 0
        assert withheld.disclosure.notice_withheld_reason == "court order forbids telling until 2027"
        # Only a legal request may keep its subjects from being told.
        with pytest.raises(Conflict, match="only a legal request"):
            _disclose(session, [ann], notice_withheld_reason="we would rather not")


@pytest.mark.parametrize(
    ("overrides", "error", "says"),
    [
        ({"basis": "because"}, InvalidInput, "basis"),
        ({"purpose": "Usage Analysis!"}, InvalidInput, "purpose"),
        ({"categories": []}, InvalidInput, "categories"),
        ({"categories": ["hobbies"]}, InvalidInput, "categories"),
        ({"recipient": "  "}, InvalidInput, "recipient"),
        ({"patron_ids": []}, InvalidInput, "patron_ids"),
        ({"patron_ids": [uuid.uuid4()]}, NotFound, "no patron"),
    ],
)
def test_a_malformed_disclosure_is_refused_and_records_nothing(db, in_tenant, tenant, overrides, error, says):
    with in_tenant(tenant) as session:
        ids = _patrons(session, 1)
        with pytest.raises(error, match=says):
            _disclose(session, ids, **overrides)
        assert session.scalar(select(DisclosureSubject.patron_id)) is None


def test_a_disclosure_needs_the_permission(db, in_tenant, tenant):
    desk = _principal(tenant.id, BUILTIN_PERMISSIONS[BuiltinRole.CIRCULATION_STAFF])
    with in_tenant(tenant) as session, pytest.raises(Exception, match=r"privacy\.disclosures\.manage"):
        _disclose(session, _patrons(session, 1), actor=desk)


def test_the_history_of_disclosures_cannot_be_rewritten(db, in_tenant, tenant):
    with in_tenant(tenant) as session:
        _disclose(session, _patrons(session, 1))
    with in_tenant(tenant) as session:
        for statement in ("UPDATE disclosures SET recipient = 'someone else'", "DELETE FROM disclosure_subjects"):
            with pytest.raises(Exception, match="permission denied"), session.begin_nested():
                session.execute(text(statement))


# -- over HTTP ------------------------------------------------------------------------------------


def test_an_officer_records_lists_and_reads_disclosures_and_a_patron_sees_their_own(
    client_for, browser, tenant, in_tenant
):
    officer = client_for(tenant, permissions=OFFICER | LIBRARY_WRITE)
    ann = officer.post("/api/v1/patrons", json={"name": "Ann", "email": "ann@alpha.example"}).json()["id"]
    bo = officer.post("/api/v1/patrons", json={"name": "Bo"}).json()["id"]
    with in_tenant(tenant) as session:
        objections.record_objection(session, uuid.UUID(bo), "third_party_disclosure")
        _account(session, "ann", kind=AccountKind.PATRON, patron_id=uuid.UUID(ann), roles=[BuiltinRole.PATRON])
    body = {
        "recipient": "Metro Analytics Ltd",
        "kind": "usage_analysis",
        "purpose": "usage_analysis",
        "basis": "legitimate_interests",
        "categories": ["circulation_history"],
        "patron_ids": [ann, bo],
        "reference": "DPA-2026-07",
    }

    made = officer.post(DISCLOSURES, json=body)

    assert made.status_code == 201, made.text
    assert (made.json()["patron_ids"], made.json()["refused_patron_ids"]) == ([ann], [bo])
    disclosure_id = made.json()["id"]
    listed = officer.get(DISCLOSURES).json()["items"]
    assert [(d["id"], d["subject_count"], d["refused_count"]) for d in listed] == [(disclosure_id, 1, 1)]
    assert officer.get(DISCLOSURES, params={"patron_id": bo}).json()["items"] == []
    read = officer.get(f"{DISCLOSURES}/{disclosure_id}").json()
    assert read["patron_ids"] == [ann] and read["reference"] == "DPA-2026-07"
    assert officer.get(f"{DISCLOSURES}/{uuid.uuid4()}").status_code == 404

    patron = browser()
    login = {"institution": tenant.slug, "username": "ann", "password": PASSWORD}
    assert patron.post("/api/v1/auth/login", json=login).status_code == 200
    mine = patron.get("/api/v1/privacy/me/disclosures")
    assert mine.status_code == 200, mine.text
    assert [d["recipient"] for d in mine.json()["items"]] == ["Metro Analytics Ltd"]
    assert patron.get(DISCLOSURES).status_code == 403

    desk = client_for(tenant, permissions=BUILTIN_PERMISSIONS[BuiltinRole.CIRCULATION_STAFF])
    assert desk.post(DISCLOSURES, json=body).status_code == 403


def test_the_notice_policy_is_shown_with_its_defaults_and_changed(client_for, tenant):
    officer = client_for(tenant, permissions={Permission.PRIVACY_DISCLOSURES_MANAGE})
    before = {
        p["kind"]: (p["notify"], p["default"]) for p in officer.get("/api/v1/privacy/disclosure-policy").json()["items"]
    }
    assert before == {
        "usage_analysis": (False, True),
        "service_provider": (False, True),
        "legal_request": (True, True),
        "other": (True, True),
    }

    changed = officer.put("/api/v1/privacy/disclosure-policy/usage_analysis", json={"notify": True})

    assert changed.status_code == 200 and changed.json() == {"kind": "usage_analysis", "notify": True, "default": False}
    after = {p["kind"]: p["notify"] for p in officer.get("/api/v1/privacy/disclosure-policy").json()["items"]}
    assert after["usage_analysis"] is True


def test_a_patron_whose_processing_is_restricted_is_left_out_but_for_a_legal_obligation(db, in_tenant, tenant):
    from bookwarden.privacy.restrictions import service as restrictions

    with in_tenant(tenant) as session:
        ann, bo = _patrons(session, 2)
        restrictions.restrict(session, _principal(tenant.id, OFFICER), bo, None)

        shared = _disclose(session, [ann, bo])
        ordered = _disclose(
            session,
            [ann, bo],
            recipient="Crown Court, Leeds",
            purpose="court_order",
            basis=LegalBasis.LEGAL_OBLIGATION,
            kind=DisclosureKind.LEGAL_REQUEST,
        )

    assert (shared.patron_ids, shared.refused_patron_ids) == ([ann], [bo])
    assert (ordered.patron_ids, ordered.refused_patron_ids) == ([ann, bo], [])


def test_the_command_line_lists_disclosures_with_counts_never_subjects(
    cli_env,  # noqa: F811 - the fixture imported above
    committed_db,
    committed_tenant,
):
    import json

    from bookwarden.db.session import tenant_session
    from tests.e2e.test_cli import _run, granted

    tenant_id = committed_tenant()
    with tenant_session(committed_db, tenant_id) as session:
        ann, bo = _patrons(session, 2)
        objections.record_objection(session, bo, "third_party_disclosure")
        made = _disclose(session, [ann, bo], reference="DPA-2026-07")

    lines = _run(*granted(committed_db, ["privacy", "disclosures", "--tenant", str(tenant_id)])).splitlines()
    about_bo = _run(*granted(committed_db, ["privacy", "disclosures", "--tenant", str(tenant_id), "--patron", str(bo)]))

    [listed] = [json.loads(line) for line in lines]
    assert listed["id"] == str(made.disclosure.id)
    assert (listed["recipient"], listed["subject_count"], listed["refused_count"]) == ("Metro Analytics Ltd", 1, 1)
    assert str(ann) not in "".join(lines) and about_bo == ""
    with tenant_session(committed_db, tenant_id) as session:
        actors = (
            session.execute(text("SELECT actor_kind FROM audit_events WHERE action = 'privacy.disclosure.listed'"))
            .scalars()
            .all()
        )
    assert actors == ["console", "console"]  # the operator the console is mapped to, through a grant


def test_erasure_takes_a_patrons_choices_and_their_place_in_disclosures_but_leaves_the_count(db, in_tenant, tenant):
    """The histories refuse DELETE to the service, yet erasure (privacy/subjects/erasure.py) removes the patron's rows:
    they go with the patron (foreign-key cascade). A disclosure keeps how many it concerned, not who."""
    import uuid as uuid_module

    from bookwarden.privacy.consent import service as consent
    from bookwarden.privacy.consent.models import ConsentMethod
    from bookwarden.privacy.consent.service import Channel, Choice, Topic
    from bookwarden.privacy.subjects import erasure

    with in_tenant(tenant) as session:
        ann, bo = _patrons(session, 2)
        consent.set_preferences(
            session,
            _principal(tenant.id, OFFICER),
            ann,
            [Choice(Channel.EMAIL, Topic.EVENTS, True)],
            method=ConsentMethod.STAFF,
            notice_version="v1",
        )
        consent.record_cookie_choice(
            session, uuid_module.uuid4(), analytics=True, preferences=True, notice_version="c1", patron_id=ann
        )
        objections.record_objection(session, ann, "purpose:research_sharing")
        made = _disclose(session, [ann, bo])

        erasure.erase_patron(session, ann)

        for table in ("consent_records", "cookie_choices", "objections"):
            assert session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() == 0, table  # noqa: S608
        assert session.scalars(select(DisclosureSubject.patron_id)).all() == [bo]
        assert disclosures.disclosures_about(session, bo)[0].subject_count == 2
        assert made.disclosure.id == disclosures.disclosures_about(session, bo)[0].id


def test_the_access_package_lists_the_patrons_consents_objections_and_disclosures(db, in_tenant, tenant):
    import io
    import json
    import zipfile

    from bookwarden.privacy.consent import service as consent
    from bookwarden.privacy.consent.models import ConsentMethod
    from bookwarden.privacy.consent.service import Channel, Choice, Topic
    from bookwarden.privacy.subjects import export as subject_export

    with in_tenant(tenant) as session:
        (ann,) = _patrons(session, 1)
        consent.set_preferences(
            session,
            _principal(tenant.id, OFFICER),
            ann,
            [Choice(Channel.EMAIL, Topic.EVENTS, True)],
            method=ConsentMethod.STAFF,
            notice_version="v1",
        )
        objections.record_objection(session, ann, "purpose:research_sharing")
        made = _disclose(session, [ann])
        _disclose(  # the law forbids telling: not in the subject's copy either
            session,
            [ann],
            recipient="Regional Police",
            purpose="criminal_investigation",
            basis=LegalBasis.LEGAL_OBLIGATION,
            kind=DisclosureKind.LEGAL_REQUEST,
            notice_withheld_reason="court order forbids telling until 2027",
        )
        package = subject_export.build_package(session, ann)
    archive = zipfile.ZipFile(io.BytesIO(subject_export.read_package(db, package.token)))

    def records(name):
        return json.loads(archive.read(f"records/{name}.json"))

    assert [(r["purpose"], r["given"]) for r in records("consent_records")] == [("communication:email:events", True)]
    assert [r["scope"] for r in records("objections")] == ["purpose:research_sharing"]
    listed = [(r["id"], r["recipient"], r["purpose"], r["basis"]) for r in records("disclosures")]
    assert listed == [(str(made.disclosure.id), "Metro Analytics Ltd", "usage_analysis", "legitimate_interests")]
    assert sorted(records("disclosures")[0]["categories"]) == ["affiliation", "circulation_history"]
    assert "Regional Police" not in archive.read("records/disclosures.csv").decode()
    assert "withheld_disclosures" in json.loads(archive.read("manifest.json"))["left_out"]
