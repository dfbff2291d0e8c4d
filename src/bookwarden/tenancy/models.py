"""The tenants table: a platform table (no tenant_id column, no row-level security).

It holds institution names and status only; every key lives in the keyring database and
every patron record in the RLS-protected tables.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import DateTime, Enum, String, func
from sqlalchemy.orm import Mapped, mapped_column

from bookwarden.core.classification import STATE, not_personal
from bookwarden.db.base import Base

# The institution is the controller, a legal person: its names are not personal data.
INSTITUTION = not_personal("names the institution (the controller), not a person")


class TenantStatus(enum.StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    slug: Mapped[str] = mapped_column(String(63), unique=True, info=INSTITUTION)
    name: Mapped[str] = mapped_column(String(200), info=INSTITUTION)
    status: Mapped[TenantStatus] = mapped_column(
        Enum(TenantStatus, name="tenant_status", values_callable=lambda e: [m.value for m in e]),
        default=TenantStatus.ACTIVE,
        info=STATE,
    )
    suspended_reason: Mapped[str | None] = mapped_column(
        String(500), info=not_personal("why operators suspended the institution (contract, security)")
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    suspended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
