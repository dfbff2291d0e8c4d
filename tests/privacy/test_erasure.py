"""Erasure: every declared location, the keys shredded, a signed certificate; backups stay unreadable."""

from __future__ import annotations

import json
import os
import uuid
from uuid import UUID

import pytest
from psycopg import sql
from sqlalchemy import select, text

from bookwarden.audit import signing
from bookwarden.core.errors import Conflict, NotFound
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.crypto.aead import DecryptionError, cipher
from bookwarden.crypto.fields import decrypt_field
from bookwarden.crypto.keyring import KeyDestroyed
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.identity.accounts import service as accounts
from bookwarden.identity.models import Account, AccountKind
from bookwarden.library import records as library
from bookwarden.privacy.complaints import service as complaints
from bookwarden.privacy.subjects import data as subject_data
from bookwarden.privacy.subjects import erasure
from bookwarden.privacy.subjects import export as subject_export
from bookwarden.privacy.subjects.models import ErasureCertificate
from bookwarden.tenancy import service as tenancy
from tests.helpers import acting, populate, restored_dump

STAFF = frozenset({Permission.ACCOUNTS_MANAGE, Permission.PRIVACY_COMPLAINTS_REGISTER})
PERSONAL_VALUES = ("Patron 1", "patron1@example.org", "Middlemarch", "rare herbals", "chapter 3", "Loved it",
                   "U-00001", "Term reading", "Shown to others")  # fmt: skip


@pytest.fixture
def key() -> signing.SigningKey:
    return signing.SigningKey.from_seed(os.urandom(32))


def _staff(tenant_id: UUID) -> Principal:
    return Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant_id, STAFF)


def _subject(db, tenant, client_for, n: int = 1) -> tuple[UUID, UUID]:
    """A patron with every kind of record, a portal account, a complaint, mail and an access package;
    and another patron (their id is returned second) whom the erasure must not touch."""
    staff = client_for(tenant)
    patron_id = UUID(populate(staff, n)[library.PATRONS]["id"])
    other_id = UUID(populate(staff, n + 1)[library.PATRONS]["id"])
    with tenant_session(db, tenant.id) as session:
        account = accounts.create_account(
            session, _staff(tenant.id), kind=AccountKind.PATRON, username=f"patron{n}", email=f"patron{n}@example.org"
        )
        account.patron_id = patron_id
        session.flush()
        complaints.register_for_patron(
            session, _staff(tenant.id), patron_id, subject="Shown to others", body="My loans were on the screen."
        )
        subject_export.build_package(session, patron_id)
    return patron_id, other_id


def _counts(db, tenant_id: UUID, patron_id: UUID, accounts_of: tuple[UUID, ...] | None = None) -> dict[str, int]:
    """Rows about the patron (and the accounts they had) in every location of the map; works after the
    patron row is gone too, given their account ids."""
    with tenant_session(db, tenant_id) as session:
        if accounts_of is None:
            accounts_of = tuple(session.scalars(select(Account.id).where(Account.patron_id == patron_id)))
        who = subject_data.Subject(
            tenant_id, patron_id, accounts_of, {}, cipher(session.keyring.tenant_own_key(tenant_id)),
            _addresses(session, patron_id),
        )  # fmt: skip
        return {
            loc.name: len(subject_data.matching_ids(session, loc, who))
            for loc in subject_data.locations()
            if not loc.names_only
        }


def _addresses(session, patron_id: UUID) -> frozenset[str]:
    try:
        return subject_data.subject(session, patron_id).addresses
    except NotFound:
        return frozenset({"patron1@example.org"})  # the erased one's, as the test made it


def _erase(db, tenant_id: UUID, patron_id: UUID, key, **kw) -> ErasureCertificate:
    with tenant_session(db, tenant_id) as session:
        return erasure.erase_patron(session, patron_id, signing_key=key, **kw)


def test_every_declared_location_is_erased_and_the_certificate_says_so(db, tenant, client_for, key):
    patron_id, other_id = _subject(db, tenant, client_for)
    before = _counts(db, tenant.id, patron_id)
    assert all(before[name] for name in ("patrons", "loans", "searches", "reading_list_items", "posts", "accounts",
                                         "complaints", "outbox", "subject_export_packages"))  # fmt: skip
    other_before = _counts(db, tenant.id, other_id)
    request_id = uuid.uuid4()

    with tenant_session(db, tenant.id) as session:
        account_ids = tuple(session.scalars(select(Account.id).where(Account.patron_id == patron_id)))

    certificate = _erase(db, tenant.id, patron_id, key, request_id=request_id)

    after = _counts(db, tenant.id, patron_id, account_ids)
    assert after == dict.fromkeys(before, 0)  # every row about them, in every location, is gone
    assert _counts(db, tenant.id, other_id) == other_before  # the other patron keeps everything
    statement = certificate.statement
    erased = {e["table"]: e for e in statement["locations"]}
    for name, rows in before.items():
        assert erased[name]["rows"] == rows, name
        assert erased[name]["action"] == "deleted"
    assert "tenant_key" in erased["complaints"]["sealed_under"]  # deleted explicitly: shredding misses it
    assert statement["tenant_id"] == str(tenant.id) and statement["subject_id"] == str(patron_id)
    assert statement["request_id"] == str(request_id) and statement["subject_keys_destroyed"] == 2
    assert {"circulation_history", "search_history", "user_content", "complaints"} <= set(statement["categories"])
    assert statement["retained"][0]["what"] == "audit_events" and statement["retained"][0]["count"] > 0
    verdict = erasure.verify_document(erasure.document(certificate, key.public), [key.public])
    assert verdict.valid, verdict.problem
    # The patron's and their account's keys are destroyed.
    db.keyring._subject_cache.clear()
    with pytest.raises(KeyDestroyed):
        db.keyring.subject_key(tenant.id, patron_id)


def test_a_certificate_altered_or_signed_by_another_key_does_not_verify(db, tenant, client_for, key):
    patron_id, _ = _subject(db, tenant, client_for)
    doc = erasure.document(_erase(db, tenant.id, patron_id, key), key.public)
    altered = json.loads(json.dumps(doc))
    altered["statement"]["locations"][0]["rows"] += 1
    assert not erasure.verify_document(altered, [key.public]).valid
    stranger = signing.SigningKey.from_seed(os.urandom(32))
    verdict = erasure.verify_document(doc, [stranger.public])
    assert not verdict.valid and "not trusted" in verdict.problem


def test_a_caller_sent_certificate_keeps_its_untrusted_key_id_out_of_the_trail(db, tenant, client_for):
    from bookwarden.core.permissions import Permission

    client = client_for(tenant, permissions={Permission.PRIVACY_REQUESTS_HANDLE})
    forged = {"statement": {"format": "x"}, "signature": "AAAA", "key_id": "evil\u0000key"}
    response = client.post("/api/v1/privacy/erasure-certificates/verify", json=forged)
    assert response.status_code == 200 and response.json()["valid"] is False
    with tenant_session(db, tenant.id) as session:
        details = session.execute(
            text("SELECT details FROM audit_events WHERE action = 'erasure_certificate.verified' ORDER BY seq DESC")
        ).scalar()
    assert details == {"valid": False, "key_id": None}


def test_nothing_personal_is_left_in_the_audit_trail(db, tenant, client_for, key):
    patron_id, _ = _subject(db, tenant, client_for)
    _erase(db, tenant.id, patron_id, key)
    with tenant_session(db, tenant.id) as session:
        rows = session.execute(text("SELECT action, target_id, details FROM audit_events")).all()
    dumped = json.dumps([[r.action, str(r.target_id), r.details] for r in rows])
    for value in PERSONAL_VALUES:
        assert value not in dumped, value
    assert str(patron_id) in dumped  # the pseudonymous id stays: the events still tell what was done


def test_posts_are_kept_anonymized_when_the_institution_chose_so(db, tenant, client_for, key):
    patron_id, _ = _subject(db, tenant, client_for)
    with tenant_session(db, tenant.id) as session:
        erasure.set_policy(session, acting(tenant.id, Permission.POLICY_MANAGE), keep_posts_anonymized=True)
        (post_id,) = session.scalars(text("SELECT id FROM posts WHERE patron_id = :p"), {"p": patron_id}).all()
    certificate = _erase(db, tenant.id, patron_id, key)
    with tenant_session(db, tenant.id) as session:
        post = library.read(session, library.POSTS, post_id)
        author = library.read(session, library.PATRONS, post.patron_id)
    assert post.body == "Loved it" and post.patron_id != patron_id and author.name == erasure.ANONYMOUS_AUTHOR
    erased = {e["table"]: e for e in certificate.statement["locations"]}
    assert erased["posts"] == {**erased["posts"], "action": "anonymized", "rows": 1}
    # A second erasure reuses the same placeholder author.
    second, _ = _subject(db, tenant, client_for, 3)
    _erase(db, tenant.id, second, key)
    with tenant_session(db, tenant.id) as session:
        authors = session.scalars(text("SELECT DISTINCT patron_id FROM posts WHERE board = 'book-club'")).all()
    assert post.patron_id in authors


def test_erasure_is_refused_while_a_legal_hold_covers_the_patron(db, tenant, client_for, key):
    from bookwarden.privacy.retention import holds

    patron_id, _ = _subject(db, tenant, client_for)
    officer = Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant.id, {Permission.PRIVACY_HOLDS_MANAGE})
    with tenant_session(db, tenant.id) as session:
        hold = holds.place(session, officer, reason="case 2026-17", patron_id=patron_id)
    before = _counts(db, tenant.id, patron_id)
    with pytest.raises(Conflict, match=str(hold.id)):
        _erase(db, tenant.id, patron_id, key)
    assert _counts(db, tenant.id, patron_id) == before
    assert db.keyring.subject_key(tenant.id, patron_id)  # not shredded
    with tenant_session(db, tenant.id) as session:
        holds.lift(session, officer, hold.id)
    _erase(db, tenant.id, patron_id, key)  # lifted: the erasure goes ahead
    assert not any(_counts(db, tenant.id, patron_id, ()).values())


def test_an_unknown_patron_is_not_found(db, tenant, key):
    with pytest.raises(NotFound):
        _erase(db, tenant.id, uuid.uuid4(), key)


def test_a_crash_midway_leaves_everything_as_it_was(db, tenant, client_for, key, monkeypatch):
    patron_id, _ = _subject(db, tenant, client_for)
    before = _counts(db, tenant.id, patron_id)
    real = erasure._erase
    done = []

    def dies_on_the_fifth_location(session, location, who, deletable):
        if len(done) == 4:
            raise RuntimeError("power cut")
        done.append(location.name)
        return real(session, location, who, deletable)

    monkeypatch.setattr(erasure, "_erase", dies_on_the_fifth_location)
    with pytest.raises(RuntimeError, match="power cut"):
        _erase(db, tenant.id, patron_id, key)
    assert len(done) == 4
    assert _counts(db, tenant.id, patron_id) == before  # one transaction: the four deletions rolled back
    db.keyring._subject_cache.clear()
    with tenant_session(db, tenant.id) as session:
        assert library.read(session, library.PATRONS, patron_id).name == "Patron 1"  # key intact
        assert session.scalar(select(ErasureCertificate.id)) is None


def test_a_crash_after_the_shred_is_finished_by_running_the_erasure_again(db, tenant, client_for, key):
    patron_id, _ = _subject(db, tenant, client_for)
    with pytest.raises(RuntimeError, match="commit lost"), tenant_session(db, tenant.id) as session:
        erasure.erase_patron(session, patron_id, signing_key=key)
        raise RuntimeError("commit lost")  # the rows roll back; the keys are gone already
    db.keyring._subject_cache.clear()
    with tenant_session(db, tenant.id) as session:
        assert library.read(session, library.PATRONS, patron_id).name is None  # unreadable, not half-erased
    certificate = _erase(db, tenant.id, patron_id, key)
    assert not any(_counts(db, tenant.id, patron_id, ()).values())
    assert certificate.statement["subject_keys_destroyed"] == 2


# -- backups -------------------------------------------------------------------------------------


def test_a_backup_taken_before_the_erasure_cannot_be_decrypted_after_it(committed_db, admin_url, home, key):
    db = committed_db
    with platform_session(db) as session:
        tenant = tenancy.create_tenant(session, db.keyring, home, "erase", "Erasing")
    with tenant_session(db, tenant.id) as session:
        patron = library.create(
            session, library.PATRONS, library.PATRONS.create(name="Ada Lovelace", email="ada@example.org")
        )
        loan = library.create(
            session,
            library.LOANS,
            library.LOANS.create(
                patron_id=patron.id,
                item_id="i-1",
                item_title="Sketch of the Analytical Engine",
                borrowed_at="2026-01-01T10:00:00Z",
                due_at="2026-01-22T10:00:00Z",
            ),
        )
    sealed = {("patrons", "name", patron.id), ("patrons", "email", patron.id), ("loans", "item_title", loan.id)}
    with restored_dump(admin_url, "erasure_scratch") as restored:
        backup = restored.conn

        def read_backup(table: str, column: str, row_id: UUID) -> str:
            (value,) = backup.execute(
                sql.SQL("SELECT {} FROM {} WHERE id = %s").format(sql.Identifier(column), sql.Identifier(table)),
                (row_id,),
            ).fetchone()
            return decrypt_field(db.keyring.subject_key(tenant.id, patron.id), tenant.id, table, column, row_id, value)

        assert read_backup("patrons", "name", patron.id) == "Ada Lovelace"  # control: readable while the key lives

        with tenant_session(db, tenant.id) as session:
            erasure.erase_patron(session, patron.id, signing_key=key)
        db.keyring._subject_cache.clear()  # as any process that never held the key

        for table, column, row_id in sealed:
            with pytest.raises(KeyDestroyed):
                read_backup(table, column, row_id)
            (value,) = backup.execute(
                sql.SQL("SELECT {} FROM {} WHERE id = %s").format(sql.Identifier(column), sql.Identifier(table)),
                (row_id,),
            ).fetchone()
            # Not with any key that is left either: the tenant's keys never sealed patron fields.
            for purpose in ("data", "index"):
                with pytest.raises(DecryptionError):
                    decrypt_field(db.keyring.tenant_key(tenant.id, purpose)[1], tenant.id, table, column, row_id, value)
            with pytest.raises(DecryptionError):
                decrypt_field(db.keyring.tenant_own_key(tenant.id), tenant.id, table, column, row_id, value)
