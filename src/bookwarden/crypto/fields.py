"""Personal fields: AES-256-GCM under the subject's key, AAD binding tenant, table, column and row.

Binding the AAD to the row means a ciphertext copied into another row, column, table or tenant
fails to open: tampering by moving values around is detected, not silently accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from uuid import UUID

from bookwarden.crypto.aead import DecryptionError, Key, open_sealed, seal


class FieldDecryptionError(DecryptionError):
    """One field of a row failed to open; `column` names it."""

    def __init__(self, column: str):
        super().__init__(f"field {column} failed to open")
        self.column = column


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


def decrypt_fields(
    key: Key, tenant_id: UUID, table: str, row_id: UUID, sealed: Mapping[str, bytes | None]
) -> dict[str, str | None]:
    """Several fields of one row, as `decrypt_field` opens each, with the AAD's tenant and row parts written
    once: every audited read of a patron opens eight fields, and turning the two ids into text for each
    was a third of the work. Raises `FieldDecryptionError` naming the first field that fails."""
    head, tail = f"field|{tenant_id}|{table}|", f"|{row_id}"
    opened: dict[str, str | None] = {}
    for column, value in sealed.items():
        if value is None:
            opened[column] = None
            continue
        try:
            opened[column] = open_sealed(key, value, f"{head}{column}{tail}".encode()).decode()
        except DecryptionError:
            raise FieldDecryptionError(column) from None
    return opened
