"""The statement's "bank information and credit cards are not stored", checked on what is stored.

Every text entry point screens for payment and bank data (api/bodies.py, the console's options, imports);
this reads back what is actually in the database with the same detector (core/sensitive.py), so a value
that reached a column some other way (a restore, a hand-run SQL statement, a path someone forgot) shows.
It reads the readable text columns: encrypted personal fields were screened on their way in and only
their subject's key opens them; one-way hashes hold no text.
"""

from __future__ import annotations

from sqlalchemy import ARRAY, String, Text, select
from sqlalchemy.orm import Session

from bookwarden.core.sensitive import find_sensitive
from bookwarden.db.base import whole_schema

HASHED = "one_way_hash"


def _text_columns(table) -> list:
    return [
        column
        for column in table.c
        if isinstance(column.type, String | Text | ARRAY)
        and (not isinstance(column.type, ARRAY) or isinstance(column.type.item_type, String | Text))
        and column.info.get("protection") != HASHED
    ]


def scanned_tables(tenant: bool) -> list[str]:
    """The tenant tables (tenant=True) or the platform's own, that have readable text columns."""
    return sorted(
        name
        for name, table in whole_schema().tables.items()
        if ("tenant_id" in table.c) is tenant and _text_columns(table)
    )


def payment_findings(session: Session, tables: list[str]) -> list[str]:
    """ "table.column (row n): what it looks like", for every stored value the detector flags; values never
    appear in the answer. A tenant session sees its institution's rows only (row-level security)."""
    schema = whole_schema()
    found = []
    for name in tables:
        table = schema.tables[name]
        columns = _text_columns(table)
        keys = list(table.primary_key.columns)
        for row in session.execute(select(*keys, *columns)):
            ident = ", ".join(str(value) for value in row[: len(keys)])
            for column, value in zip(columns, row[len(keys) :], strict=True):
                for text in value if isinstance(value, list) else [value]:
                    if isinstance(text, str) and (finding := find_sensitive(text)) is not None:
                        found.append(f"{name}.{column.name} (row {ident}): looks like a {finding.kind}")
                        break
    return found
