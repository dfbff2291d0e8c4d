"""Erasure of a patron: every declared location, the keys shredded, a signed certificate for the institution.

One call, one transaction (the caller's): the rows of every table the registry links to the patron or
to their accounts are deleted, deepest first, each counted (privacy/subjects/data.py finds them; a new
table is covered without a change here). Complaints and mail are sealed under the tenant's key, not
the patron's, so shredding would not reach them: they are deleted like every row. Posts are kept,
moved to a placeholder author and re-sealed under its key, when the tenant's policy says so. Access
packages go with their keys. Last, the patron's and their accounts' subject keys are destroyed: from
then on no copy of their fields, in any backup, can be opened.

The shred commits in the keyring at once, so it comes after every other step: a failure before it
rolls back everything and leaves the patron as they were; a failure after it (the commit itself)
leaves rows nobody can read, and running the erasure again finishes it (every step is idempotent).

The audit trail is not rewritten (it is append-only and chained): its events name the patron by a
random id and carry ids, counts and field names, never values (audit/record.py), so what remains
is pseudonymous. Aggregates (publisher reports) hold counts only.

The certificate states tenant, pseudonymous subject id, request, time, the locations and categories
erased with counts, and the audit sequence number at erasure, as canonical JSON behind a versioned
domain-separation prefix, signed with the platform's Ed25519 audit key (audit/signing.py).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import bindparam, delete, func, select, text, tuple_, update

from bookwarden.audit import contexts as audit_contexts
from bookwarden.audit import record as audit
from bookwarden.audit import signing
from bookwarden.audit.events import Action
from bookwarden.core import faults
from bookwarden.core.authorize import authorize
from bookwarden.core.canonical import canonical_json
from bookwarden.core.classification import Category, Protection
from bookwarden.core.config import get_settings
from bookwarden.core.errors import InvalidInput, NotFound
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.crypto.aead import DecryptionError
from bookwarden.crypto.fields import decrypt_field, encrypt_field
from bookwarden.db.session import TenantSession
from bookwarden.library import records as library
from bookwarden.library import schemas
from bookwarden.library.guards import check_patron_deletion
from bookwarden.library.models import Patron, Post
from bookwarden.privacy.registry import registry
from bookwarden.privacy.subjects import data as subject_data
from bookwarden.privacy.subjects.data import Location, Subject
from bookwarden.privacy.subjects.models import ErasureCertificate, ErasurePolicy, SubjectExportPackage

STATEMENT_PREFIX = b"bookwarden-erasure-certificate-v1\n"
FORMAT = "bookwarden-erasure-certificate-v1"
TARGET = "erasure_certificate"
ANONYMOUS_AUTHOR = "Former member"
RETAINED_AUDIT = (
    "audit trail: append-only and hash-chained; its events name the patron only by this random id and hold "
    "ids, counts and field names, never a personal value; their source addresses and user agents are deleted "
    "(audit_event_contexts), except in events recorded before migration 0026, which hashed them and keep them "
    "until their segment is dropped"
)


# -- the tenant's policy -------------------------------------------------------------------------


def get_policy(session: TenantSession) -> ErasurePolicy:
    """The tenant's erasure policy; the default (delete everything) when it never set one."""
    policy = session.get(ErasurePolicy, session.tenant_id)
    return policy or ErasurePolicy(tenant_id=session.tenant_id, keep_posts_anonymized=False)


def view_policy(session: TenantSession, actor: Principal) -> ErasurePolicy:
    authorize(actor, Permission.POLICY_MANAGE)
    policy = get_policy(session)
    audit.record(session, Action.ERASURE_POLICY_VIEWED, ("erasure_policy", session.tenant_id))
    return policy


def set_policy(session: TenantSession, actor: Principal, *, keep_posts_anonymized: bool) -> ErasurePolicy:
    authorize(actor, Permission.POLICY_MANAGE)
    policy = session.get(ErasurePolicy, session.tenant_id)
    if policy is None:
        policy = ErasurePolicy(tenant_id=session.tenant_id)
        session.add(policy)
    policy.keep_posts_anonymized = keep_posts_anonymized
    policy.updated_at = datetime.now(UTC)
    session.flush()
    audit.record(
        session,
        Action.ERASURE_POLICY_CHANGED,
        ("erasure_policy", session.tenant_id),
        details={"keep_posts_anonymized": keep_posts_anonymized},
    )
    return policy


# -- erasing ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Erased:
    table: str
    # "deleted"; "anonymized" (posts kept, moved to the placeholder author); "unlinked" (the database
    # keeps the row and clears its link); "retained" (the row names the subject by id only, with no
    # foreign key, by its table's design: kept; what it sealed under the subject key becomes unreadable)
    action: str
    rows: int
    categories: tuple[str, ...]
    sealed_under: tuple[str, ...]  # how its personal columns were protected (tenant_key: deleted explicitly)

    def as_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "action": self.action,
            "rows": self.rows,
            "categories": list(self.categories),
            "sealed_under": list(self.sealed_under),
        }


def erase_patron(
    session: TenantSession,
    patron_id: UUID,
    *,
    request_id: UUID | None = None,
    signing_key: signing.SigningKey | None = None,
) -> ErasureCertificate:
    """Erase `patron_id` everywhere and return the signed certificate (stored in the same transaction).

    Refused with Conflict while a legal hold covers the patron's data.
    """
    _refuse_if_held(session, patron_id)
    who = subject_data.subject(session, patron_id)
    key = signing_key or _platform_signing_key()
    policy = get_policy(session)
    audit_seq = session.execute(text("SELECT coalesce(max(seq), 0) FROM audit_events")).scalar_one()
    packages = list(
        session.scalars(
            select(SubjectExportPackage.id).where(
                SubjectExportPackage.tenant_id == session.tenant_id, SubjectExportPackage.patron_id == patron_id
            )
        )
    )
    erased: list[Erased] = []
    if policy.keep_posts_anonymized:
        erased.append(_anonymize_posts(session, who, policy))
    locations = subject_data.locations()
    deletable = _deletable(session, [location.name for location in locations])
    for location in locations:
        if location.name == "posts" and policy.keep_posts_anonymized:
            continue
        erased.append(_erase(session, location, who, deletable))
    erased.append(_forget_audit_contexts(session, who))
    session.flush()
    # Every key of the subject is gone once this returns: destroyed now, or by an earlier run that
    # shredded and then lost its commit (that run's rows are what this one deletes).
    keys_destroyed = len(who.ids)
    certificate = _certify(session, who, request_id, audit_seq, erased, keys_destroyed, len(packages), key)
    audit.record(
        session,
        Action.PATRON_ERASED,
        ("patron", patron_id),
        details={
            "certificate_id": certificate.id,
            "request_id": request_id,
            "rows": sum(e.rows for e in erased),
            "tables": [e.table for e in erased if e.rows],
            "subject_keys_destroyed": keys_destroyed,
            "audit_seq": audit_seq,
        },
    )
    session.flush()
    faults.point("erasure.rows_deleted")
    # Last: the one step that commits by itself (in the keyring). Everything above rolls back with the
    # caller's transaction; from here on the patron's fields are unreadable in every copy.
    for n, subject_id in enumerate((*who.ids, *packages)):
        session.keyring.shred_subject(session.tenant_id, subject_id)
        if n == 0:
            faults.point("erasure.first_key_shredded")
    faults.point("erasure.keys_shredded")
    return certificate


def _refuse_if_held(session: TenantSession, patron_id: UUID) -> None:
    # The same guard every deletion of a patron passes (library/guards.py): a legal hold refuses it.
    check_patron_deletion(session, patron_id)


def _platform_signing_key() -> signing.SigningKey:
    return signing.load_signing_key(get_settings())


def _erase(session: TenantSession, location: Location, who: Subject, deletable: frozenset[str]) -> Erased:
    table = location.table
    sealed = tuple(
        sorted(
            {
                entry.protection.value
                for entry in _registry_columns(location)
                if entry.protection in (Protection.SUBJECT_KEY, Protection.TENANT_KEY)
            }
        )
    )
    categories = tuple(c.value for c in location.categories)
    if location.names_only:
        rows = len(subject_data.matching_ids(session, location, who))
        return Erased(location.name, "retained", rows, categories, sealed)
    if location.kept_on_unlink:
        # The row outlives its patron by design (ON DELETE SET NULL): the database unlinks it.
        rows = len(subject_data.matching_ids(session, location, who))
        return Erased(location.name, "unlinked", rows, categories, sealed)
    if location.is_contact:
        ids = subject_data.matching_ids(session, location, who)
        rows = 0
        if ids:
            pk = tuple(table.primary_key.columns)
            rows = session.execute(delete(table).where(tuple_(*pk).in_(ids))).rowcount
        return Erased(location.name, "deleted", rows, categories, sealed)
    if location.name not in deletable and all(p.hops[0].ondelete == "CASCADE" for p in location.paths):
        # A table the service may only append to (consent records as proof): its rows go with the patron
        # or account they belong to, by the database's cascade, in this same transaction.
        rows = len(subject_data.matching_ids(session, location, who))
        return Erased(location.name, "deleted", rows, categories, sealed)
    rows = session.execute(delete(table).where(subject_data.condition(location, who))).rowcount
    return Erased(location.name, "deleted", rows, categories, sealed)


def _forget_audit_contexts(session: TenantSession, who: Subject) -> Erased:
    """The source addresses and user agents of the events the patron did or was the subject of: the events
    stay (their hashes hold only a commitment to these values), the values go."""
    rows = audit_contexts.forget_events(session, subject_data.audit_seqs(who))
    return Erased(audit_contexts.CONTEXTS_TABLE, "deleted", rows, (Category.DEVICE_NETWORK.value,), ())


def _deletable(session: TenantSession, tables: list[str]) -> frozenset[str]:
    """Which of `tables` this role may delete from (one query for all)."""
    found = session.execute(
        text("SELECT t FROM unnest(CAST(:tables AS text[])) AS t WHERE has_table_privilege(t, 'DELETE')"),
        {"tables": tables},
    ).scalars()
    return frozenset(found)


def _registry_columns(location: Location):
    return registry().tables[location.name].columns


def _anonymize_posts(session: TenantSession, who: Subject, policy: ErasurePolicy) -> Erased:
    """Keep the patron's posts, moved to the tenant's placeholder author and re-sealed under its key.

    A post whose text can no longer be opened (its key already destroyed) cannot be kept: deleted.
    """
    posts = Post.__table__
    found = session.execute(
        select(posts.c.id, posts.c.body).where(posts.c.tenant_id == who.tenant_id, posts.c.patron_id == who.patron_id)
    ).all()
    author = _anonymous_author(session, policy)
    author_key = session.keyring.subject_key(session.tenant_id, author)
    patron_key = who.keys.get(who.patron_id)
    moved, unreadable = [], []
    for post_id, body in found:
        try:
            plain = decrypt_field(patron_key, who.tenant_id, "posts", "body", post_id, body) if patron_key else None
        except DecryptionError:
            plain = None
        if plain is None:
            unreadable.append(post_id)
            continue
        resealed = encrypt_field(author_key, who.tenant_id, "posts", "body", post_id, plain)
        moved.append({"t": who.tenant_id, "p": post_id, "b": resealed})
    if moved:
        session.execute(
            update(posts)
            .where(posts.c.tenant_id == bindparam("t"), posts.c.id == bindparam("p"))
            .values(patron_id=author, body=bindparam("b")),
            moved,
        )
    if unreadable:
        session.execute(delete(posts).where(posts.c.tenant_id == who.tenant_id, posts.c.id.in_(unreadable)))
    return Erased("posts", "anonymized", len(moved), ("user_content",), ("subject_key",))


def _anonymous_author(session: TenantSession, policy: ErasurePolicy) -> UUID:
    """The tenant's placeholder author of kept posts: made once, made again if it was removed."""
    if policy.anonymous_author_id is not None and session.get(Patron, (session.tenant_id, policy.anonymous_author_id)):
        return policy.anonymous_author_id
    author = library.create(session, library.PATRONS, schemas.PatronCreate(name=ANONYMOUS_AUTHOR))
    if session.get(ErasurePolicy, session.tenant_id) is None:
        session.add(policy)
    policy.anonymous_author_id = author.id
    session.flush()
    return author.id


# -- the certificate ---------------------------------------------------------------------------------


def _certify(
    session: TenantSession,
    who: Subject,
    request_id: UUID | None,
    audit_seq: int,
    erased: list[Erased],
    keys_destroyed: int,
    packages: int,
    key: signing.SigningKey,
) -> ErasureCertificate:
    certificate_id = uuid4()
    erased_at = session.scalar(select(func.now())).astimezone(UTC)
    audit_events = subject_data.audit_count(session, who)
    statement = {
        "format": FORMAT,
        "certificate_id": str(certificate_id),
        "tenant_id": str(who.tenant_id),
        "subject_id": str(who.patron_id),
        "accounts": len(who.account_ids),
        "request_id": str(request_id) if request_id else None,
        "erased_at": _timestamp(erased_at),
        "audit_seq": audit_seq,
        "locations": [e.as_json() for e in erased],
        "categories": sorted({c for e in erased if e.rows for c in e.categories}),
        "rows_erased": sum(e.rows for e in erased if e.action in ("deleted", "anonymized")),
        "subject_keys_destroyed": keys_destroyed,
        "package_keys_destroyed": packages,
        "files_removed": 0,  # the tenant file area holds nothing per patron: packages live in tables
        "retained": [{"what": "audit_events", "count": audit_events, "why": RETAINED_AUDIT}],
        "backups": backup_window(erased_at),
        "key_id": key.key_id,
    }
    certificate = ErasureCertificate(
        tenant_id=who.tenant_id,
        id=certificate_id,
        subject_id=who.patron_id,
        request_id=request_id,
        erased_at=erased_at,
        audit_seq=audit_seq,
        statement=statement,
        key_id=key.key_id,
        signature=key.sign(signed_bytes(statement)),
    )
    session.add(certificate)
    return certificate


def backup_window(erased_at: datetime) -> dict[str, Any]:
    """What backups taken before the erasure still hold, and until when (docs/backups.md).

    Data backups hold the subject's fields as ciphertext only; the keys are in the keyring's own
    backups, removed `keyring_backup_retention_days` after they were taken. So the fields can be
    decrypted from a backup until the last keyring backup taken before the erasure expires, at most
    that many days from now, and never after.
    """
    settings = get_settings()
    days = settings.keyring_backup_retention_days
    return {
        "decryptable_until": _timestamp(erased_at + timedelta(days=days)),
        "keyring_backup_retention_days": days,
        "ciphertext_kept_days_at_most": settings.data_backup_days_at_most,
        "how": "data backups hold ciphertext only; the subject's key survives only in keyring backups taken before "
        "the erasure, each removed after its retention period; the master key is in no backup",
    }


def signed_bytes(statement: dict[str, Any]) -> bytes:
    """What the signature covers: the versioned prefix, then the statement as RFC 8785 canonical JSON.

    Certificates signed before JCS signed `json.dumps(sort_keys=True, separators=(",", ":"))`; for what a
    statement holds (ASCII names, ids and times, integer counts) the two are the same bytes
    (tests/core/test_core_encodings.py), so those certificates still verify.
    """
    return STATEMENT_PREFIX + canonical_json(statement)


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def document(certificate: ErasureCertificate, public_key: bytes) -> dict[str, Any]:
    """The certificate as handed to the institution: statement, signature and the key to check it with."""
    return {
        "statement": certificate.statement,
        "signature": base64.b64encode(certificate.signature).decode(),
        "key_id": certificate.key_id,
        "public_key": signing.encode_public_key(public_key),
    }


def get_certificate(session: TenantSession, certificate_id: UUID) -> ErasureCertificate:
    certificate = session.get(ErasureCertificate, (session.tenant_id, certificate_id))
    if certificate is None:
        raise NotFound(f"no erasure certificate {certificate_id}")
    return certificate


def view_certificate(session: TenantSession, actor: Principal, certificate_id: UUID) -> ErasureCertificate:
    authorize(actor, Permission.PRIVACY_REQUESTS_HANDLE)
    certificate = get_certificate(session, certificate_id)
    details = {"subject_id": certificate.subject_id}
    audit.record(session, Action.ERASURE_CERTIFICATE_VIEWED, (TARGET, certificate_id), details=details)
    return certificate


@dataclass(frozen=True)
class Verification:
    valid: bool
    problem: str | None
    key_id: str | None
    certificate_id: str | None


def verify_document(doc: dict[str, Any], trusted: list[bytes]) -> Verification:
    """Check a certificate document against trusted public keys (never the key the document carries)."""
    try:
        statement, encoded, key_id = doc["statement"], doc["signature"], str(doc["key_id"])
        if not isinstance(statement, dict) or not isinstance(encoded, str):
            raise TypeError("a certificate has a statement (an object) and a signature (base64 text)")
    except (KeyError, TypeError) as exc:
        raise InvalidInput(f"not an erasure certificate: {exc}") from None
    named = statement.get("certificate_id")
    certificate_id = None if named is None else str(named)
    try:
        signature = base64.b64decode(encoded, validate=True)
    except (ValueError, binascii.Error):
        return Verification(False, "the signature is not base64", key_id, certificate_id)
    by_id = {signing.key_id(k): k for k in trusted}
    if statement.get("format") != FORMAT:
        return Verification(False, f"unknown format {statement.get('format')!r}", key_id, certificate_id)
    if statement.get("key_id") != key_id:
        return Verification(False, "the statement names another key than the signature", key_id, certificate_id)
    public = by_id.get(key_id)
    if public is None:
        return Verification(False, f"signed by key {key_id}, which is not trusted", key_id, certificate_id)
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, signed_bytes(statement))
    except (InvalidSignature, ValueError):  # ValueError: a number or text no certificate holds (NaN, 2**60)
        return Verification(False, "the signature does not verify: the statement was altered", key_id, certificate_id)
    return Verification(True, None, key_id, certificate_id)


def verify_stored(
    session: TenantSession, certificate_id: UUID, trusted: list[bytes]
) -> tuple[ErasureCertificate, Verification]:
    """Verify a stored certificate and record that it was checked (with the verdict)."""
    certificate = get_certificate(session, certificate_id)
    verdict = verify_document(document(certificate, trusted[0]), trusted)
    audit.record(
        session,
        Action.ERASURE_CERTIFICATE_VERIFIED,
        (TARGET, certificate_id),
        details={"valid": verdict.valid, "key_id": verdict.key_id},
    )
    return certificate, verdict


def record_verification(session: TenantSession, actor: Principal, verdict: Verification) -> None:
    """Record that `actor` checked a certificate (the check itself needs no key: verify_document)."""
    authorize(actor, Permission.PRIVACY_REQUESTS_HANDLE)
    certificate_id = _uuid_or_none(verdict.certificate_id)
    # The document came from the caller: its key id is recorded only once it named a trusted key.
    audit.record(
        session,
        Action.ERASURE_CERTIFICATE_VERIFIED,
        (TARGET, certificate_id),
        details={"valid": verdict.valid, "key_id": verdict.key_id if verdict.valid else None},
    )


def _uuid_or_none(value: Any) -> UUID | None:
    try:
        return UUID(str(value))
    except ValueError:
        return None
