"""Access packages: everything about a patron, from the registry, sealed at rest, behind a 7-day link."""

from __future__ import annotations

import csv
import io
import json
import uuid
import zipfile
from datetime import timedelta
from uuid import UUID

import pytest
from sqlalchemy import func, select, text

from bookwarden.audit.events import Action
from bookwarden.core.errors import NotFound
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.crypto.keyring import subject_keys
from bookwarden.db.session import tenant_session
from bookwarden.identity.accounts import service as accounts
from bookwarden.identity.models import Account, AccountKind
from bookwarden.library import records as library
from bookwarden.privacy.complaints import service as complaints
from bookwarden.privacy.requests.models import RequestKind, RequestState
from bookwarden.privacy.subjects import data as subject_data
from bookwarden.privacy.subjects import export as subject_export
from bookwarden.privacy.subjects.models import SubjectExportChunk, SubjectExportPackage
from tests.helpers import populate
from tests.privacy.test_privacy_requests import _in_state, _staff_request

STAFF = frozenset({Permission.ACCOUNTS_MANAGE, Permission.PRIVACY_COMPLAINTS_REGISTER})


def _staff(tenant) -> Principal:
    return Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant.id, STAFF)


def _subject_with_everything(db, tenant, client_for) -> tuple[UUID, dict]:
    """A patron with one record of every kind, a portal account, a complaint (and its mail); another
    patron beside them whose records must never appear in the first one's package."""
    staff = client_for(tenant)
    made = populate(staff, 1)
    populate(staff, 2)
    patron_id = UUID(made[library.PATRONS]["id"])
    with tenant_session(db, tenant.id) as session:
        account = accounts.create_account(
            session, _staff(tenant), kind=AccountKind.PATRON, username="patron1", email="patron1@example.org"
        )
        account.patron_id = patron_id
        session.flush()
        complaints.register_for_patron(
            session, _staff(tenant), patron_id, subject="Shown to others", body="My loans were on the screen."
        )
    return patron_id, made


def _build(db, tenant, patron_id, **kw) -> subject_export.Package:
    with tenant_session(db, tenant.id) as session:
        return subject_export.build_package(session, patron_id, **kw)


def _archive(db, package) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(subject_export.read_package(db, package.token)))


def test_the_package_holds_every_table_the_registry_links_to_the_patron(db, tenant, client_for):
    patron_id, _ = _subject_with_everything(db, tenant, client_for)
    package = _build(db, tenant, patron_id)
    archive = _archive(db, package)
    manifest = json.loads(archive.read("manifest.json"))
    # Driven by the registry: a table linked to a patron or an account appears with no code change.
    expected = subject_data.linked_tables() - set(subject_export.EXCLUDED)
    assert expected <= set(manifest["tables"]), expected - set(manifest["tables"])
    for name in manifest["tables"]:
        assert {f"records/{name}.json", f"records/{name}.csv"} <= set(archive.namelist())
    assert "outbox" in manifest["tables"]  # mail sent to the patron's address (matched on the decrypted address)


def test_records_are_decrypted_and_only_the_subjects(db, tenant, client_for):
    patron_id, _ = _subject_with_everything(db, tenant, client_for)
    archive = _archive(db, _build(db, tenant, patron_id))

    def records(name: str) -> list[dict]:
        return json.loads(archive.read(f"records/{name}.json"))

    (patron,) = records("patrons")
    assert patron["id"] == str(patron_id) and patron["name"] == "Patron 1" and patron["email"] == "patron1@example.org"
    assert "email_index" not in patron  # blind indexes say nothing to their subject
    assert [loan["item_title"] for loan in records("loans")] == ["Middlemarch"]
    assert [s["query"] for s in records("searches")] == ["rare herbals"]
    assert [i["note"] for i in records("reading_list_items")] == ["chapter 3"]
    assert [p["body"] for p in records("posts")] == ["Loved it"]
    (account,) = records("accounts")
    assert account["username"] == "patron1"
    (complaint,) = records("complaints")  # sealed under the tenant key, opened all the same
    assert complaint["body"] == "My loans were on the screen."
    assert [m["to_address"] for m in records("outbox")] == ["patron1@example.org"]
    # The audit trail: the patron acted on, and their records (which name them in details.patron_id).
    trail = records("audit_events")
    assert {"patron.created", "loan.created", "post.created", "complaint.registered"} <= {e["action"] for e in trail}
    other_ids = {e["target_id"] for e in trail} - {None}
    with tenant_session(db, tenant.id) as session:
        others = session.execute(text("SELECT id FROM patrons WHERE id <> :p"), {"p": patron_id}).scalars().all()
    assert not {str(o) for o in others} & other_ids  # nothing about the other patron
    # CSV: the same rows, with a header.
    loans_csv = list(csv.DictReader(io.StringIO(archive.read("records/loans.csv").decode())))
    assert [row["item_title"] for row in loans_csv] == ["Middlemarch"]


def test_credentials_are_withheld_even_from_their_holder(db, tenant, client_for):
    patron_id, _ = _subject_with_everything(db, tenant, client_for)
    with tenant_session(db, tenant.id) as session:
        account = session.scalars(select(Account).where(Account.patron_id == patron_id)).one()
        account.password_hash = "$argon2id$v=19$not-a-real-hash"
    archive = _archive(db, _build(db, tenant, patron_id))
    (account,) = json.loads(archive.read("records/accounts.json"))
    assert account["password_hash"] == subject_data.WITHHELD


def test_the_package_is_sealed_at_rest_and_the_token_is_stored_only_as_a_hash(db, tenant, client_for):
    patron_id, _ = _subject_with_everything(db, tenant, client_for)
    package = _build(db, tenant, patron_id)
    with tenant_session(db, tenant.id) as session:
        row = session.get(SubjectExportPackage, (tenant.id, package.id))
        chunks = session.scalars(select(SubjectExportChunk.body).where(SubjectExportChunk.package_id == package.id))
        stored = b"".join(chunks)
    assert b"Middlemarch" not in stored and b"PK" not in stored[:64]  # ciphertext, not a ZIP
    assert package.token.encode() not in row.token_hash and len(row.token_hash) == 32
    assert (row.expires_at - row.created_at) == timedelta(days=7)
    assert package.expires_at == row.expires_at


def test_a_wrong_or_tampered_link_finds_nothing(db, tenant, client_for):
    patron_id, _ = _subject_with_everything(db, tenant, client_for)
    package = _build(db, tenant, patron_id)
    # A character inside the secret (the last one carries bits the decoder drops).
    tampered = package.token[:70] + ("A" if package.token[70] != "A" else "B") + package.token[71:]
    for token in (tampered, "x" * 86, "short", package.token + "A"):
        with pytest.raises(NotFound):
            subject_export.read_package(db, token)


def test_each_download_is_recorded_and_counted(db, tenant, client_for):
    patron_id, _ = _subject_with_everything(db, tenant, client_for)
    package = _build(db, tenant, patron_id)
    subject_export.read_package(db, package.token)
    subject_export.read_package(db, package.token)
    with tenant_session(db, tenant.id) as session:
        assert session.get(SubjectExportPackage, (tenant.id, package.id)).downloads == 2
        downloads = session.execute(
            text("SELECT details FROM audit_events WHERE action = :a AND target_id = :p ORDER BY seq"),
            {"a": Action.SUBJECT_EXPORT_DOWNLOADED.value, "p": package.id},
        ).scalars().all()
    assert [d["download"] for d in downloads] == [1, 2] and downloads[0]["patron_id"] == str(patron_id)


def test_expired_packages_are_deleted_with_their_key_by_the_recurring_job(db, tenant, client_for):
    patron_id, _ = _subject_with_everything(db, tenant, client_for)
    package = _build(db, tenant, patron_id)
    kept = _build(db, tenant, patron_id)
    with tenant_session(db, tenant.id) as session:
        subject_export.expire_now(session, package.id)
    with pytest.raises(NotFound):
        subject_export.read_package(db, package.token)  # expired: refused before the job even runs
    assert subject_export.purge_expired(db) == 1
    with tenant_session(db, tenant.id) as session:
        assert session.get(SubjectExportPackage, (tenant.id, package.id)) is None
        chunks = text("SELECT count(*) FROM subject_export_chunks WHERE package_id = :p")
        assert session.scalar(chunks, {"p": package.id}) == 0
    with db.keyring.engine.connect() as conn:
        keys = conn.execute(select(subject_keys.c.subject_id).where(subject_keys.c.tenant_id == tenant.id)).scalars()
        keys = set(keys)
    assert package.id not in keys and kept.id in keys
    assert subject_export.read_package(db, kept.token)[:2] == b"PK"


def test_a_large_subject_is_cut_into_many_sealed_chunks_that_read_back_whole(db, tenant, client_for, monkeypatch):
    monkeypatch.setattr(subject_export, "CHUNK_BYTES", 4096)
    monkeypatch.setattr(subject_export, "ROWS_PER_BATCH", 50)
    monkeypatch.setattr(subject_export, "CSV_BUFFER_BYTES", 2000)  # the CSV is read again, not kept
    patron_id, _ = _subject_with_everything(db, tenant, client_for)
    with tenant_session(db, tenant.id) as session:
        for n in range(200):
            library.create(session, library.SEARCHES, library.SEARCHES.create(patron_id=patron_id, query=f"q {n}"))
    package = _build(db, tenant, patron_id)
    with tenant_session(db, tenant.id) as session:
        row = session.get(SubjectExportPackage, (tenant.id, package.id))
    assert row.chunk_count > 1
    archive = _archive(db, package)
    assert len(json.loads(archive.read("records/searches.json"))) == 201
    searches = list(csv.DictReader(io.StringIO(archive.read("records/searches.csv").decode())))
    assert sorted(row["query"] for row in searches) == sorted(["rare herbals", *(f"q {n}" for n in range(200))])
    assert archive.testzip() is None


def test_an_unknown_patron_is_not_found(db, tenant):
    with tenant_session(db, tenant.id) as session, pytest.raises(NotFound):
        subject_export.build_package(session, uuid.uuid4())


def test_staff_build_a_package_over_the_api_and_the_subject_downloads_it_by_link(db, tenant, client_for):
    patron_id, _ = _subject_with_everything(db, tenant, client_for)
    officer = client_for(tenant, permissions={Permission.PRIVACY_REQUESTS_HANDLE})
    checker = client_for(tenant, permissions={Permission.PRIVACY_REQUESTS_HANDLE, Permission.ACCOUNTS_READ})
    # Outside a data-subject request: asked, approved by another, built by the asker (test_subject_export_approval).
    asked = officer.post("/api/v1/privacy/subject-exports/approvals", json={"patron_id": str(patron_id)})
    assert checker.post(f"/api/v1/approvals/{asked.json()['id']}/approve").status_code == 200
    body = {"patron_id": str(patron_id), "approval_id": asked.json()["id"]}
    built = officer.post("/api/v1/privacy/subject-exports", json=body)
    assert built.status_code == 201, built.text
    body = built.json()
    assert body["patron_id"] == str(patron_id) and body["download_path"].startswith("/api/v1/privacy/subject-exports/")
    anonymous = client_for(tenant)
    anonymous.headers.pop("Authorization")
    downloaded = anonymous.get(body["download_path"])
    assert downloaded.status_code == 200, downloaded.text
    assert downloaded.headers["content-type"] == "application/zip"
    assert "records/loans.json" in zipfile.ZipFile(io.BytesIO(downloaded.content)).namelist()
    assert anonymous.get("/api/v1/privacy/subject-exports/download/" + "A" * 86).status_code == 404
    refused = client_for(tenant).post("/api/v1/privacy/subject-exports", json={"patron_id": str(patron_id)})
    assert refused.status_code == 403


def test_a_cell_a_spreadsheet_would_run_as_a_formula_is_defused_in_the_csv_only(db, tenant, client_for):
    patron_id, _ = _subject_with_everything(db, tenant, client_for)
    formula = '=HYPERLINK("http://evil.example","x")'
    with tenant_session(db, tenant.id) as session:
        library.create(session, library.SEARCHES, library.SEARCHES.create(patron_id=patron_id, query=formula))
    archive = _archive(db, _build(db, tenant, patron_id))
    searches = list(csv.DictReader(io.StringIO(archive.read("records/searches.csv").decode())))
    assert "'" + formula in {row["query"] for row in searches}
    assert formula in {row["query"] for row in json.loads(archive.read("records/searches.json"))}
    trail = list(csv.DictReader(io.StringIO(archive.read("records/audit_events.csv").decode())))
    assert all(json.loads(row["details"]) is not None for row in trail)  # objects as JSON text


def test_a_package_answers_only_an_open_access_request_about_its_patron_in_this_institution(
    db, tenant, other_tenant, client_for
):
    """The request a package names is checked: a random id, another institution's request, another
    patron's, a request of another kind or one already closed are refused, and nothing is built."""
    with tenant_session(db, tenant.id) as session:
        open_access = _in_state(session, RequestState.APPROVED)
        patron_id = open_access.patron_id
        erasure = _staff_request(session, RequestKind.ERASURE, patron_id=patron_id)
        closed = _in_state(session, RequestState.DENIED)
        someone_else = _in_state(session, RequestState.IN_PROGRESS)
    with tenant_session(db, other_tenant.id) as session:
        elsewhere = _in_state(session, RequestState.APPROVED)
    officer = client_for(tenant, permissions={Permission.PRIVACY_REQUESTS_HANDLE})

    def build(request_id, patron=patron_id):
        body = {"patron_id": str(patron), "request_id": str(request_id)}
        return officer.post("/api/v1/privacy/subject-exports", json=body)

    assert build(uuid.uuid4()).status_code == 404
    assert build(elsewhere.id).status_code == 404  # another institution's request: not found here
    assert build(someone_else.id).status_code == 404  # about another patron
    assert build(erasure.id).status_code == 409
    assert build(closed.id, closed.patron_id).status_code == 409
    with tenant_session(db, tenant.id) as session:
        assert session.scalar(select(func.count()).select_from(SubjectExportPackage)) == 0
    built = build(open_access.id)
    assert built.status_code == 201, built.text
    with tenant_session(db, tenant.id) as session:
        (package,) = session.scalars(select(SubjectExportPackage)).all()
        assert package.request_id == open_access.id
