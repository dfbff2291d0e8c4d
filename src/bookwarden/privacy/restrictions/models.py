"""Restriction of processing (GDPR art. 18): one row per patron whose data is kept but not changed."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, func
from sqlalchemy.orm import Mapped, mapped_column

from bookwarden.db.base import Base, tenant_fk


class Restriction(Base):
    """A patron whose data is restricted (GDPR art. 18): kept, not changed, until the restriction is lifted."""

    __tablename__ = "privacy_restrictions"
    __table_args__ = (tenant_fk("privacy_restrictions", "patron_id", "patrons", "patron"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    patron_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    request_id: Mapped[uuid.UUID | None]
    restricted_by: Mapped[uuid.UUID]
    restricted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
