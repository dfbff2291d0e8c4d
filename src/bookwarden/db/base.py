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
