"""Operator accounts and their sign-in sessions: platform tables (no tenant), created by migration 0012.

Row-level security lets only a transaction without tenant context see them (platform_session);
identity/operators/service.py and identity/operators/signin.py hold what is done with them.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import ARRAY, BigInteger, DateTime, ForeignKey, Index, Integer, LargeBinary, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from bookwarden.core.classification import (
    COUNTER,
    ENTITLEMENT,
    RANDOM_SECRET,
    STATE,
    Category,
    Protection,
    SubjectKind,
    personal,
    subject_link,
)
from bookwarden.db.base import Base


class OperatorStatus(enum.StrEnum):
    ENROLLING = "enrolling"  # created; its holder has not yet set a password and enrolled a second factor
    ACTIVE = "active"
    DISABLED = "disabled"


class OperatorAccount(Base):
    """A member of the platform's staff: one platform role, a password and an authenticator app."""

    __tablename__ = "operator_accounts"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    # Chosen by the platform (alice.ops), shown in the console and the audit trail's lookups: kept
    # readable, like the sign-in addresses, because the platform must find its own staff by it.
    username: Mapped[str] = mapped_column(
        String(64), unique=True, info=personal(Category.IDENTITY, Protection.PLAIN, subject=SubjectKind.OPERATOR)
    )
    role: Mapped[str] = mapped_column(String(32), info=ENTITLEMENT)
    status: Mapped[str] = mapped_column(String(16), info=STATE)
    password_hash: Mapped[str | None] = mapped_column(
        Text, info=personal(Category.CREDENTIALS, Protection.ONE_WAY_HASH)
    )
    password_changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Sealed under the operator's own key in the keyring (tenant slot: the platform's nil id).
    totp_secret: Mapped[bytes | None] = mapped_column(LargeBinary, info=personal(Category.CREDENTIALS))
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger, info=COUNTER)
    recovery_code_hashes: Mapped[list[str] | None] = mapped_column(
        ARRAY(Text), info=personal(Category.CREDENTIALS, Protection.ONE_WAY_HASH)
    )
    pending_totp_secret: Mapped[bytes | None] = mapped_column(LargeBinary, info=personal(Category.CREDENTIALS))
    pending_totp_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    enrolment_nonce: Mapped[bytes | None] = mapped_column(LargeBinary, info=RANDOM_SECRET)
    enrolment_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class OperatorSession(Base):
    """One signed-in operator browser; only the SHA-256 of its cookie value is stored."""

    __tablename__ = "operator_sessions"
    __table_args__ = (Index("ix_operator_sessions_account", "account_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    token_hash: Mapped[bytes] = mapped_column(
        LargeBinary, unique=True, info=personal(Category.CREDENTIALS, Protection.ONE_WAY_HASH)
    )
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("operator_accounts.id", ondelete="CASCADE"),
        info=subject_link(SubjectKind.OPERATOR, "the operator account the session signs in"),
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    idle_expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    absolute_expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Every operator session starts pending: the second factor is always required.
    mfa_verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    mfa_failures: Mapped[int] = mapped_column(Integer, default=0, info=COUNTER)
    source_address: Mapped[str] = mapped_column(Text, info=personal(Category.DEVICE_NETWORK, Protection.PLAIN))
    user_agent: Mapped[str] = mapped_column(Text, info=personal(Category.DEVICE_NETWORK, Protection.PLAIN))
