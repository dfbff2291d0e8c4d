"""Institutional sign-on (SAML 2.0): each tenant's identity provider, its sign-ins in flight, and the
assertions already used. Tenant tables under row-level security; created by migration 0010.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, ForeignKeyConstraint, Index, LargeBinary, String, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from bookwarden.core.classification import RANDOM_SECRET, SETTING, pseudonymous
from bookwarden.db.base import Base
from bookwarden.tenancy.models import Tenant  # noqa: F401 - target of the tenant foreign keys


class SamlConfig(Base):
    """The tenant's identity provider (one per tenant) and what its assertions mean here.

    The metadata is kept as uploaded (public information: entity id, endpoints, certificates) and
    parsed again for every sign-in, so what is checked is always what the administrator gave.
    """

    __tablename__ = "saml_configs"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    idp_entity_id: Mapped[str] = mapped_column(String(1024), info=SETTING)
    idp_metadata: Mapped[str] = mapped_column(Text, info=SETTING)
    username_attribute: Mapped[str] = mapped_column(String(256), info=SETTING)
    email_attribute: Mapped[str | None] = mapped_column(String(256), info=SETTING)
    display_name_attribute: Mapped[str | None] = mapped_column(String(256), info=SETTING)
    # [{"attribute": ..., "value": ..., "role": ...}]: names of roles, never administrative ones.
    role_mappings: Mapped[list[dict]] = mapped_column(JSONB, info=SETTING)
    create_accounts: Mapped[bool] = mapped_column(info=SETTING)
    new_account_kind: Mapped[str] = mapped_column(String(16), info=SETTING)
    updated_by: Mapped[uuid.UUID]
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class SamlRequest(Base):
    """An authentication request sent to the identity provider and not yet answered.

    Found by its RelayState; answered once (the row is deleted when the answer arrives), only by
    the browser that started it (`browser_hash`: SHA-256 of a cookie only that browser holds).
    """

    __tablename__ = "saml_requests"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id"], ["saml_configs.tenant_id"], ondelete="CASCADE", name="fk_saml_requests_config"
        ),
        Index("ix_saml_requests_expiry", "tenant_id", "expires_at"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    relay_state: Mapped[str] = mapped_column(String(64), primary_key=True, info=RANDOM_SECRET)
    request_id: Mapped[str] = mapped_column(String(256), info=RANDOM_SECRET)
    browser_hash: Mapped[bytes] = mapped_column(LargeBinary, info=RANDOM_SECRET)
    next_path: Mapped[str] = mapped_column(
        Text, info=pseudonymous("a page of this site to return to, without query string; may name a record id")
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SamlConsumedAssertion(Base):
    """An assertion that signed someone in, kept until it expires so that it signs nobody in twice."""

    __tablename__ = "saml_consumed_assertions"
    __table_args__ = (Index("ix_saml_consumed_assertions_expiry", "tenant_id", "expires_at"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    assertion_id: Mapped[str] = mapped_column(
        String(256), primary_key=True, info=pseudonymous("the identity provider's random id of an assertion")
    )
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
