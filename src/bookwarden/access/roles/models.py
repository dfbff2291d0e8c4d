"""Custom roles, role assignments and security contacts (all tenant tables under RLS).

Built-in roles live in code (core/permissions.py) and are assigned by name; custom roles
are rows with explicit permissions. An assignment names exactly one of the two.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    ARRAY,
    CheckConstraint,
    DateTime,
    ForeignKey,
    LargeBinary,
    String,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from bookwarden.core.classification import ENTITLEMENT, SETTING, Category, Protection, SubjectKind, personal
from bookwarden.db.base import Base, tenant_fk
from bookwarden.tenancy.models import Tenant  # noqa: F401 - target of the tenant foreign keys


class Role(Base):
    __tablename__ = "roles"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(64), info=SETTING)
    description: Mapped[str] = mapped_column(String(500), default="", info=SETTING)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RolePermission(Base):
    __tablename__ = "role_permissions"
    __table_args__ = (tenant_fk("role_permissions", "role_id", "roles", "role"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    role_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    permission: Mapped[str] = mapped_column(String(64), primary_key=True, info=ENTITLEMENT)


class AccountRole(Base):
    __tablename__ = "account_roles"
    __table_args__ = (
        CheckConstraint("(builtin_role IS NULL) <> (custom_role_id IS NULL)", name="one_kind_of_role"),
        UniqueConstraint("tenant_id", "account_id", "builtin_role"),
        UniqueConstraint("tenant_id", "account_id", "custom_role_id"),
        tenant_fk("account_roles", "account_id", "accounts", "account"),
        tenant_fk("account_roles", "custom_role_id", "roles", "role"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID]
    builtin_role: Mapped[str | None] = mapped_column(String(64), info=ENTITLEMENT)
    custom_role_id: Mapped[uuid.UUID | None]
    granted_by: Mapped[uuid.UUID | None]  # principal id of whoever granted it
    granted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class SecurityContact(Base):
    """Who hears about every entitlement change in the tenant (mail sealed under the tenant key)."""

    __tablename__ = "security_contacts"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    email: Mapped[bytes] = mapped_column(
        LargeBinary, info=personal(Category.CONTACT, Protection.TENANT_KEY, subject=SubjectKind.CONTACT)
    )
    # Notice kinds (access/roles/notices.py NoticeKind) this contact does not want; administrative kinds
    # are never muted whatever this holds (migration 0012).
    muted_notices: Mapped[list[str]] = mapped_column(ARRAY(String(48)), default=list, info=SETTING)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
