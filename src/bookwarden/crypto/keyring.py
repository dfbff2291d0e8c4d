"""The keyring: tenant keys wrapped by the master key, subject keys wrapped by the tenant key.

It lives in its own database (see db/provision.py), so a dump of the data database holds
ciphertext only. Destroying a subject key there makes that subject's fields unreadable in
every copy of the data, backups included; destroying a tenant's keys does the same for a
whole tenant.

Rotation re-wraps and never re-encrypts data: rotating the master key re-wraps the tenant
keys; rotating a tenant key re-wraps that tenant's subject keys. Each wrapped row names the
key that wrapped it, so an interrupted rotation resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections import OrderedDict
from collections.abc import Iterable
from uuid import UUID

from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Uuid,
    and_,
    delete,
    func,
    insert,
    select,
    tuple_,
    update,
)
from sqlalchemy.engine import Engine

from bookwarden.core import faults
from bookwarden.crypto.aead import DecryptionError, new_key, open_sealed, seal
from bookwarden.crypto.master import MasterKeys

metadata = MetaData()

tenant_keys = Table(
    "tenant_keys",
    metadata,
    Column("tenant_id", Uuid, primary_key=True),
    Column("purpose", String(16), primary_key=True),  # "data" wraps subject keys; "index" keys blind indexes
    Column("version", Integer, primary_key=True),
    Column("wrapped", LargeBinary, nullable=True),  # NULL once destroyed
    Column("master_key_id", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("destroyed_at", DateTime(timezone=True)),
)

subject_keys = Table(
    "subject_keys",
    metadata,
    Column("tenant_id", Uuid, primary_key=True),
    Column("subject_id", Uuid, primary_key=True),
    Column("wrapped", LargeBinary, nullable=False),
    Column("tenant_key_version", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

DATA = "data"
INDEX = "index"
SUBJECT_KEYS_SQL = (
    "SELECT subject_id, wrapped, tenant_key_version FROM subject_keys"
    " WHERE tenant_id = %(tenant)s AND subject_id = ANY(%(ids)s)"
)


class KeyDestroyed(Exception):
    """The key needed was destroyed (subject erased or tenant offboarded): the data is gone for good."""


def _tenant_aad(tenant_id: UUID, purpose: str, version: int) -> bytes:
    return f"tenant-key|{tenant_id}|{purpose}|{version}".encode()


def _subject_aad(tenant_id: UUID, subject_id: UUID, version: int) -> bytes:
    return f"subject-key|{tenant_id}|{subject_id}|{version}".encode()


class Keyring:
    """Process-wide access to keys. Thread-safe; unwrapped keys are cached in memory.

    Unwrapped tenant keys are cached for the life of the process. Unwrapped subject keys are
    cached in a bounded LRU: anyone able to read this process's memory already holds the
    tenant keys that unwrap every subject key, so the cache widens no exposure, and it spares
    a keyring round trip on every read. A shred evicts the key here at once; other processes
    holding it in memory lose it at their next restart or eviction, while storage (and so
    every backup) loses it when the shred commits.
    """

    def __init__(self, engine: Engine, master: MasterKeys, cache_size: int = 200_000):
        self.engine = engine
        # Same pool; single-statement reads need no transaction of their own.
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.master = master
        self._cache_size = cache_size
        self._tenant_cache: dict[tuple[UUID, str], tuple[int, bytes]] = {}
        self._subject_cache: OrderedDict[tuple[UUID, UUID], bytes] = OrderedDict()
        self._lock = threading.Lock()

    # -- tenants -------------------------------------------------------------------------

    def create_tenant(self, tenant_id: UUID) -> None:
        """Give a new tenant its data key, blind-index key and own key (idempotent)."""
        with self.engine.begin() as conn:
            for purpose in (DATA, INDEX):
                exists = conn.execute(
                    select(tenant_keys.c.version).where(
                        tenant_keys.c.tenant_id == tenant_id, tenant_keys.c.purpose == purpose
                    )
                ).first()
                if exists is None:
                    conn.execute(insert(tenant_keys).values(self._wrap_tenant_key(tenant_id, purpose, 1, new_key())))
        if not self.subject_keys(tenant_id, [tenant_id]):
            self.create_subject(tenant_id, tenant_id)

    def tenant_own_key(self, tenant_id: UUID) -> bytes:
        """The key of data the tenant itself owns (outgoing mail, security contacts), not any patron.

        It is the subject key whose subject is the tenant: wrapped by the tenant key like every
        subject key, so rotation re-wraps it and only offboarding destroys it. Data is never sealed
        directly under the tenant key, which rotation replaces.
        """
        return self.subject_key(tenant_id, tenant_id)

    def _wrap_tenant_key(self, tenant_id: UUID, purpose: str, version: int, key: bytes) -> dict:
        return {
            "tenant_id": tenant_id,
            "purpose": purpose,
            "version": version,
            "wrapped": seal(self.master.current, key, _tenant_aad(tenant_id, purpose, version)),
            "master_key_id": self.master.current_id,
        }

    def tenant_key(self, tenant_id: UUID, purpose: str = DATA) -> tuple[int, bytes]:
        """(version, key) of the tenant's current key for `purpose`."""
        cached = self._tenant_cache.get((tenant_id, purpose))
        if cached is not None:
            return cached
        with self.engine.connect() as conn:
            row = conn.execute(
                select(tenant_keys)
                .where(tenant_keys.c.tenant_id == tenant_id, tenant_keys.c.purpose == purpose)
                .order_by(tenant_keys.c.version.desc())
                .limit(1)
            ).first()
        if row is None or row.wrapped is None:
            raise KeyDestroyed(f"tenant {tenant_id} has no {purpose} key")
        key = self._unwrap_tenant_row(row)
        self._tenant_cache[(tenant_id, purpose)] = (row.version, key)
        return row.version, key

    def _tenant_key_version(self, tenant_id: UUID, version: int) -> bytes:
        current_version, key = self.tenant_key(tenant_id)
        if version == current_version:
            return key
        with self.engine.connect() as conn:
            row = conn.execute(
                select(tenant_keys).where(
                    tenant_keys.c.tenant_id == tenant_id,
                    tenant_keys.c.purpose == DATA,
                    tenant_keys.c.version == version,
                )
            ).first()
        if row is None or row.wrapped is None:
            raise KeyDestroyed(f"tenant {tenant_id} key version {version} was destroyed")
        return self._unwrap_tenant_row(row)

    def _unwrap_tenant_row(self, row) -> bytes:
        master = self.master.get(row.master_key_id)
        return open_sealed(master, row.wrapped, _tenant_aad(row.tenant_id, row.purpose, row.version))

    def index_key(self, tenant_id: UUID) -> bytes:
        return self.tenant_key(tenant_id, INDEX)[1]

    def destroy_tenant(self, tenant_id: UUID) -> None:
        """Offboarding: every key of the tenant is destroyed; all its data becomes unreadable."""
        with self.engine.begin() as conn:
            conn.execute(delete(subject_keys).where(subject_keys.c.tenant_id == tenant_id))
            conn.execute(
                update(tenant_keys)
                .where(tenant_keys.c.tenant_id == tenant_id)
                .values(wrapped=None, destroyed_at=func.now())
            )
        self._forget_tenant(tenant_id)

    def _forget_tenant(self, tenant_id: UUID) -> None:
        with self._lock:
            for purpose in (DATA, INDEX):
                self._tenant_cache.pop((tenant_id, purpose), None)
            for key in [k for k in self._subject_cache if k[0] == tenant_id]:
                del self._subject_cache[key]

    # -- subjects ------------------------------------------------------------------------

    def create_subject(self, tenant_id: UUID, subject_id: UUID) -> bytes:
        """A fresh key for a new subject, stored wrapped; committed at once in the keyring.

        If the caller's data transaction later rolls back, the key is an orphan that protects
        nothing; it is harmless and swept with the subject's erasure or the tenant's offboarding.
        """
        version, tenant_key = self.tenant_key(tenant_id)
        key = new_key()
        with self.engine.begin() as conn:
            conn.execute(
                insert(subject_keys).values(
                    tenant_id=tenant_id,
                    subject_id=subject_id,
                    wrapped=seal(tenant_key, key, _subject_aad(tenant_id, subject_id, version)),
                    tenant_key_version=version,
                )
            )
        self._remember(tenant_id, subject_id, key)
        return key

    def subject_key(self, tenant_id: UUID, subject_id: UUID) -> bytes:
        key = self.subject_keys(tenant_id, [subject_id]).get(subject_id)
        if key is None:
            raise KeyDestroyed(f"the key of subject {subject_id} was destroyed")
        return key

    def subject_keys(self, tenant_id: UUID, subject_ids: Iterable[UUID]) -> dict[UUID, bytes]:
        """Keys for many subjects in one keyring query; destroyed keys are simply absent."""
        found: dict[UUID, bytes] = {}
        missing: list[UUID] = []
        with self._lock:
            for sid in dict.fromkeys(subject_ids):
                key = self._subject_cache.get((tenant_id, sid))
                if key is None:
                    missing.append(sid)
                else:
                    self._subject_cache.move_to_end((tenant_id, sid))
                    found[sid] = key
        if missing:
            with self._autocommit.connect() as conn:
                # One round trip (no BEGIN/ROLLBACK) of driver SQL: this runs on every cache miss.
                rows = conn.exec_driver_sql(SUBJECT_KEYS_SQL, {"tenant": tenant_id, "ids": missing}).all()
            for row in rows:
                tenant_key = self._tenant_key_version(tenant_id, row.tenant_key_version)
                key = open_sealed(
                    tenant_key, row.wrapped, _subject_aad(tenant_id, row.subject_id, row.tenant_key_version)
                )
                found[row.subject_id] = key
                self._remember(tenant_id, row.subject_id, key)
        return found

    def subject_key_stored(self, tenant_id: UUID, subject_id: UUID) -> bool:
        """Whether the keyring still holds the subject's key, asked of the database, never of this process's
        cache: another process may have destroyed it since this one read it."""
        with self._autocommit.connect() as conn:
            found = conn.execute(
                select(subject_keys.c.subject_id).where(
                    subject_keys.c.tenant_id == tenant_id, subject_keys.c.subject_id == subject_id
                )
            ).first()
        if found is None:
            with self._lock:
                self._subject_cache.pop((tenant_id, subject_id), None)
        return found is not None

    def shred_subject(self, tenant_id: UUID, subject_id: UUID) -> bool:
        """Destroy a subject's key. True when a key was destroyed, False when it already was."""
        with self._lock:
            self._subject_cache.pop((tenant_id, subject_id), None)
        with self.engine.begin() as conn:
            result = conn.execute(
                delete(subject_keys).where(
                    subject_keys.c.tenant_id == tenant_id, subject_keys.c.subject_id == subject_id
                )
            )
        return result.rowcount > 0

    def _remember(self, tenant_id: UUID, subject_id: UUID, key: bytes) -> None:
        if self._cache_size <= 0:
            return
        with self._lock:
            self._subject_cache[(tenant_id, subject_id)] = key
            if len(self._subject_cache) > self._cache_size:
                self._subject_cache.popitem(last=False)

    # -- rotation ------------------------------------------------------------------------

    def rotate_tenant_key(self, tenant_id: UUID, batch: int = 5000) -> int:
        """New data-key version; re-wrap every subject key under it; destroy old versions.

        Resumable: rows still on an older version are picked up by the next run. Returns the
        number of subject keys re-wrapped.
        """
        with self.engine.begin() as conn:
            latest = conn.execute(
                select(func.max(tenant_keys.c.version)).where(
                    tenant_keys.c.tenant_id == tenant_id, tenant_keys.c.purpose == DATA
                )
            ).scalar_one_or_none()
            if latest is None:
                raise KeyDestroyed(f"tenant {tenant_id} has no data key")
            pending = conn.execute(
                select(func.count())
                .select_from(subject_keys)
                .where(subject_keys.c.tenant_id == tenant_id, subject_keys.c.tenant_key_version < latest)
            ).scalar_one()
            if pending == 0:
                conn.execute(insert(tenant_keys).values(self._wrap_tenant_key(tenant_id, DATA, latest + 1, new_key())))
        faults.point("tenant_key.version_added")
        self._forget_tenant(tenant_id)
        version, new = self.tenant_key(tenant_id)
        rewrapped = 0
        while True:
            with self.engine.begin() as conn:
                rows = conn.execute(
                    select(subject_keys)
                    .where(subject_keys.c.tenant_id == tenant_id, subject_keys.c.tenant_key_version < version)
                    .limit(batch)
                    .with_for_update(skip_locked=True)
                ).all()
                if not rows:
                    break
                for row in rows:
                    old = self._tenant_key_version(tenant_id, row.tenant_key_version)
                    key = open_sealed(old, row.wrapped, _subject_aad(tenant_id, row.subject_id, row.tenant_key_version))
                    conn.execute(
                        update(subject_keys)
                        .where(subject_keys.c.tenant_id == tenant_id, subject_keys.c.subject_id == row.subject_id)
                        .values(
                            wrapped=seal(new, key, _subject_aad(tenant_id, row.subject_id, version)),
                            tenant_key_version=version,
                        )
                    )
                faults.point("tenant_key.rewrapping")
                rewrapped += len(rows)
            faults.point("tenant_key.batch_rewrapped")
        faults.point("tenant_key.rewrapped")
        with self.engine.begin() as conn:
            conn.execute(
                update(tenant_keys)
                .where(
                    tenant_keys.c.tenant_id == tenant_id,
                    tenant_keys.c.purpose == DATA,
                    tenant_keys.c.version < version,
                    tenant_keys.c.wrapped.is_not(None),
                )
                .values(wrapped=None, destroyed_at=func.now())
            )
        return rewrapped

    def rewrap_under_master(self, new_master: MasterKeys) -> int:
        """Re-wrap every tenant key under `new_master.current`. Resumable; returns rows re-wrapped.

        `new_master` must also hold the keys that wrap the rows today (the old master key).
        """
        self.master = new_master
        count = 0
        with self.engine.begin() as conn:
            rows = conn.execute(
                select(tenant_keys)
                .where(tenant_keys.c.wrapped.is_not(None), tenant_keys.c.master_key_id != new_master.current_id)
                .with_for_update()
            ).all()
            for row in rows:
                key = self._unwrap_tenant_row(row)
                aad = _tenant_aad(row.tenant_id, row.purpose, row.version)
                conn.execute(
                    update(tenant_keys)
                    .where(
                        and_(
                            tuple_(tenant_keys.c.tenant_id, tenant_keys.c.purpose, tenant_keys.c.version)
                            == (row.tenant_id, row.purpose, row.version)
                        )
                    )
                    .values(wrapped=seal(new_master.current, key, aad), master_key_id=new_master.current_id)
                )
                count += 1
                faults.point("master.rewrapping")
        return count


def blind_index(index_key: bytes, kind: str, value: str) -> bytes:
    """HMAC-SHA256 of a normalised value: equal inputs match, nothing about the value leaks.

    `kind` separates domains, so an email and a barcode with the same text never collide.
    """
    normalised = " ".join(value.split()).casefold()
    return hmac.new(index_key, f"{kind}\x00{normalised}".encode(), hashlib.sha256).digest()


__all__ = ["DATA", "INDEX", "DecryptionError", "KeyDestroyed", "Keyring", "blind_index"]
