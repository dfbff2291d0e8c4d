"""Personal fields: AES-256-GCM under the subject's key, AAD binding tenant, table, column and row.

Binding the AAD to the row means a ciphertext copied into another row, column, table or tenant
fails to open: tampering by moving values around is detected, not silently accepted.
"""

from __future__ import annotations

from uuid import UUID

from bookwarden.crypto.aead import Key, open_sealed, seal


def field_aad(tenant_id: UUID, table: str, column: str, row_id: UUID) -> bytes:
    return f"field|{tenant_id}|{table}|{column}|{row_id}".encode()


def encrypt_field(key: Key, tenant_id: UUID, table: str, column: str, row_id: UUID, value: str | None) -> bytes | None:
    if value is None:
        return None
    return seal(key, value.encode(), field_aad(tenant_id, table, column, row_id))


def decrypt_field(key: Key, tenant_id: UUID, table: str, column: str, row_id: UUID, sealed: bytes | None) -> str | None:
    if sealed is None:
        return None
    return open_sealed(key, sealed, field_aad(tenant_id, table, column, row_id)).decode()
