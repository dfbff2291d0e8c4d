"""Erasure, a confirmed patron deletion, a maker-checker approval and an access package, killed at every step.

No partial erasure survives: a kill before the keys go leaves the patron whole (the officer carries the
request out again); a kill after a key went leaves rows nobody can read, which the hourly job erases and
closes by itself. An approval killed while being carried out is still pending, and carried out once."""

from __future__ import annotations

import io
import re
import uuid
import zipfile

import pytest
from sqlalchemy import func, select, text

from bookwarden.access.approvals import service as approvals
from bookwarden.access.approvals.models import ApprovalRequest
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, BuiltinRole, Permission
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import tenant_session
from bookwarden.jobs.service import handler_for
from bookwarden.library import deletion
from bookwarden.library import records as library
from bookwarden.library.models import Patron
from bookwarden.library.schemas import PatronCreate
from bookwarden.privacy.requests import service as requests
from bookwarden.privacy.requests.models import PrivacyRequest, RequestKind
from bookwarden.privacy.retention import holds
from bookwarden.privacy.subjects import export
from bookwarden.privacy.subjects.models import ErasureCertificate, SubjectExportPackage
from tests.crash.kill import die_at
from tests.crash.mail import drain

OFFICER = frozenset(BUILTIN_PERMISSIONS[BuiltinRole.PRIVACY_OFFICER])
DESK = frozenset(BUILTIN_PERMISSIONS[BuiltinRole.CIRCULATION_STAFF])
ERASURE_POINTS = ["erasure.rows_deleted", "erasure.first_key_shredded", "erasure.keys_shredded"]
APPROVAL_POINTS = ["approvals.decided", "approvals.carried_out"]
DELETION_POINTS = ["deletion.rows_deleted", "deletion.key_shredded"]
POINTS = [*ERASURE_POINTS, *APPROVAL_POINTS, *DELETION_POINTS, "export.package_written"]


def person(tenant_id, permissions) -> Principal:
    return Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant_id, permissions)


@pytest.fixture
def library_with_patrons(committed_db, committed_tenant, settings, audit_holds):
    """An institution, the patron to erase and a witness whose committed record must survive every kill."""
    tenant_id = committed_tenant()
    with tenant_session(committed_db, tenant_id) as session:
        patron = library.create(session, library.PATRONS, PatronCreate(name="Ann Erased", email="ann@alpha.example"))
        witness = library.create(session, library.PATRONS, PatronCreate(name="Wanda Witness"))
    return tenant_id, patron.id, witness.id


def _registered_erasure(db, tenant_id, patron_id):
    """A staff-registered erasure, approved by a first officer; it waits for the second's approval."""
    first = person(tenant_id, OFFICER)
    with tenant_session(db, tenant_id) as session:
        request = requests.register_for_patron(session, person(tenant_id, DESK), patron_id, RequestKind.ERASURE)
        requests.decide(session, first, request.id, requests.Decision.APPROVE)
        return request.id, request.approval_id


def _state(db, tenant_id, request_id) -> str:
    with tenant_session(db, tenant_id) as session:
        return session.get(PrivacyRequest, (tenant_id, request_id)).state


def _patron_left(db, tenant_id, patron_id) -> tuple[bool, bool]:
    """(the patron's row is there, their key is there)."""
    db.keyring._subject_cache.clear()
    with tenant_session(db, tenant_id) as session:
        row = session.get(Patron, (tenant_id, patron_id)) is not None
        return row, bool(db.keyring.subject_keys(tenant_id, [patron_id]))


def _events(db, tenant_id, action: str) -> int:
    with tenant_session(db, tenant_id) as session:
        return session.scalar(text("SELECT count(*) FROM audit_events WHERE action = :a"), {"a": action})


def _witness_whole(db, tenant_id, witness_id) -> None:
    db.keyring._subject_cache.clear()
    with tenant_session(db, tenant_id) as session:
        assert library.read(session, library.PATRONS, witness_id).name == "Wanda Witness"


@pytest.mark.parametrize("point", ERASURE_POINTS)
def test_an_erasure_killed_at_any_step_is_never_left_half_done(committed_db, library_with_patrons, point):
    tenant_id, patron_id, witness_id = library_with_patrons
    request_id, approval_id = _registered_erasure(committed_db, tenant_id, patron_id)
    officer = person(tenant_id, OFFICER)
    with tenant_session(committed_db, tenant_id) as session:
        approvals.approve(session, officer, approval_id)
        requests.start(session, officer, request_id)

    def complete(db):
        with tenant_session(db, tenant_id) as session:
            requests.complete(session, officer, request_id)

    die_at(point, complete, committed_db)

    row, key = _patron_left(committed_db, tenant_id, patron_id)
    assert row  # the deletes rolled back with the transaction
    assert _state(committed_db, tenant_id, request_id) == "in_progress"
    # The worker's hourly duty: it finishes what lost its key, and leaves a whole patron to the officer.
    handler_for(requests.DEADLINES)(committed_db, {})
    if point == "erasure.rows_deleted":
        assert key and _patron_left(committed_db, tenant_id, patron_id) == (True, True)
        with tenant_session(committed_db, tenant_id) as session:
            requests.complete(session, officer, request_id)
    else:
        assert not key
    assert _patron_left(committed_db, tenant_id, patron_id) == (False, False)
    assert _state(committed_db, tenant_id, request_id) == "completed"
    with tenant_session(committed_db, tenant_id) as session:
        assert session.scalar(select(func.count()).select_from(ErasureCertificate)) == 1
    assert _events(committed_db, tenant_id, "patron.erased") == 1
    _witness_whole(committed_db, tenant_id, witness_id)


@pytest.mark.parametrize("point", APPROVAL_POINTS)
def test_an_approval_killed_while_carried_out_is_still_pending_and_carried_out_once(
    committed_db, library_with_patrons, point
):
    tenant_id, patron_id, witness_id = library_with_patrons
    request_id, approval_id = _registered_erasure(committed_db, tenant_id, patron_id)
    second = person(tenant_id, OFFICER)

    def approve(db):
        with tenant_session(db, tenant_id) as session:
            approvals.approve(session, second, approval_id)

    die_at(point, approve, committed_db)

    assert _state(committed_db, tenant_id, request_id) == "identity_verified"
    with tenant_session(committed_db, tenant_id) as session:
        assert session.get(ApprovalRequest, (tenant_id, approval_id)).status == "pending"
        approvals.approve(session, second, approval_id)
    assert _state(committed_db, tenant_id, request_id) == "approved"
    assert _events(committed_db, tenant_id, "approval.approved") == 1
    assert _events(committed_db, tenant_id, "privacy_request.approved") == 1
    _witness_whole(committed_db, tenant_id, witness_id)


@pytest.mark.parametrize("point", DELETION_POINTS)
def test_a_confirmed_deletion_killed_in_its_job_is_finished_by_the_next_run(committed_db, library_with_patrons, point):
    tenant_id, patron_id, witness_id = library_with_patrons
    asker, checker = (person(tenant_id, BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN]) for _ in range(2))
    with tenant_session(committed_db, tenant_id) as session:
        deletion.ask(session, asker, patron_id)
        deletion.confirm(session, checker, patron_id)
        session.execute(text("UPDATE patrons SET deletion_due_at = now() - interval '1 second' WHERE id = :id"),
                        {"id": patron_id})  # fmt: skip

    die_at(point, deletion.carry_out_due, committed_db)

    row, key = _patron_left(committed_db, tenant_id, patron_id)
    assert row and key == (point == "deletion.rows_deleted")
    assert deletion.carry_out_due(committed_db).destroyed == 1
    assert _patron_left(committed_db, tenant_id, patron_id) == (False, False)
    assert _events(committed_db, tenant_id, "patron.deleted") == 1
    _witness_whole(committed_db, tenant_id, witness_id)


def test_an_access_package_killed_before_its_commit_is_built_once_and_its_mailed_link_opens_it(
    committed_db, library_with_patrons, smtp_server
):
    tenant_id, patron_id, _ = library_with_patrons
    officer = person(tenant_id, OFFICER)
    with tenant_session(committed_db, tenant_id) as session:
        request = requests.register_for_patron(session, person(tenant_id, DESK), patron_id, RequestKind.ACCESS)
        requests.decide(session, officer, request.id, requests.Decision.APPROVE)
        requests.start(session, officer, request.id)

    def complete(db):
        with tenant_session(db, tenant_id) as session:
            requests.complete(session, officer, request.id)

    die_at("export.package_written", complete, committed_db)

    with tenant_session(committed_db, tenant_id) as session:
        assert session.scalar(select(func.count()).select_from(SubjectExportPackage)) == 0
    assert _state(committed_db, tenant_id, request.id) == "in_progress"
    complete(committed_db)  # the officer again: one package, and the patron told where it is
    drain(committed_db)
    with tenant_session(committed_db, tenant_id) as session:
        assert session.scalar(select(func.count()).select_from(SubjectExportPackage)) == 1
    [mail] = [m.message for m in smtp_server.messages if m.recipients == ["ann@alpha.example"]]
    [token] = re.findall(r"subject-exports/download/([A-Za-z0-9_\-]+)", mail.get_content())
    with zipfile.ZipFile(io.BytesIO(export.read_package(committed_db, token))) as package:
        assert package.namelist()


def test_an_erasure_killed_after_the_shred_waits_under_a_legal_hold_placed_since_and_the_job_goes_on(
    committed_db, committed_tenant, library_with_patrons
):
    """The hourly job finishes interrupted erasures one by one: one now under a legal hold waits (its rows are
    unreadable already), and neither fails the job nor stops another institution's from being finished."""
    held_tenant, held_patron, _ = library_with_patrons
    other_tenant = committed_tenant()
    with tenant_session(committed_db, other_tenant) as session:
        other_patron = library.create(session, library.PATRONS, PatronCreate(name="Olga Other")).id
    officer = {t: person(t, OFFICER | {Permission.PRIVACY_HOLDS_MANAGE}) for t in (held_tenant, other_tenant)}
    started = {}
    for tenant_id, patron_id in ((held_tenant, held_patron), (other_tenant, other_patron)):
        request_id, approval_id = _registered_erasure(committed_db, tenant_id, patron_id)
        with tenant_session(committed_db, tenant_id) as session:
            approvals.approve(session, person(tenant_id, OFFICER), approval_id)
            requests.start(session, officer[tenant_id], request_id)

        def complete(db, tenant_id=tenant_id, request_id=request_id):
            with tenant_session(db, tenant_id) as session:
                requests.complete(session, officer[tenant_id], request_id)

        die_at("erasure.keys_shredded", complete, committed_db)
        started[tenant_id] = request_id
    with tenant_session(committed_db, held_tenant) as session:
        holds.place(session, officer[held_tenant], reason="case 2026-31", patron_id=held_patron)

    handler_for(requests.DEADLINES)(committed_db, {})

    assert _state(committed_db, held_tenant, started[held_tenant]) == "in_progress"
    assert _patron_left(committed_db, held_tenant, held_patron) == (True, False)
    assert _state(committed_db, other_tenant, started[other_tenant]) == "completed"
    assert _patron_left(committed_db, other_tenant, other_patron) == (False, False)
