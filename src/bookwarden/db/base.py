"""Declarative base shared by every area's models."""

from __future__ import annotations

from sqlalchemy import ForeignKeyConstraint, MetaData
from sqlalchemy.orm import DeclarativeBase

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def tenant_fk(table: str, column: str, target: str, label: str) -> ForeignKeyConstraint:
    """(tenant_id, column) -> target (tenant_id, id), deleted with its target.

    The key includes tenant_id, so a row can never point into another tenant, and Citus can
    co-locate the join.
    """
    return ForeignKeyConstraint(
        ["tenant_id", column], [f"{target}.tenant_id", f"{target}.id"], ondelete="CASCADE", name=f"fk_{table}_{label}"
    )


# Set once every area's models are imported (`bookwarden.areas.load()`). Code that walks the whole
# schema (the personal-data registry: erasure and access packages follow it) refuses to run before:
# a table missing from its walk would be a table an erasure silently leaves behind.
_schema_loaded = False


def schema_loaded() -> None:
    global _schema_loaded
    _schema_loaded = True


def whole_schema() -> MetaData:
    """Every area's tables; raises if the areas have not been loaded yet."""
    if not _schema_loaded:
        raise RuntimeError("the schema is not whole yet: call bookwarden.areas.load() at the entry point first")
    return Base.metadata
