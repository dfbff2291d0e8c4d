"""Accounts and API tokens. Only a SHA-256 of each token is stored; the token itself is shown once."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import (
    ARRAY,
    BigInteger,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from bookwarden.db.base import Base, tenant_fk
from bookwarden.tenancy.models import Tenant  # noqa: F401 - target of the tenant foreign keys


class ApiToken(Base):
    """A machine credential of one tenant (RLS-protected like every tenant table)."""

    __tablename__ = "api_tokens"
    __table_args__ = (UniqueConstraint("tenant_id", "token_hash"), Index("ix_api_tokens_token_hash", "token_hash"))

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[bytes] = mapped_column(LargeBinary)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(40)))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class OperatorToken(Base):
    """A platform operator's machine credential: manages tenants, reaches no tenant data."""

    __tablename__ = "operator_tokens"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(40)))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AccountKind(enum.StrEnum):
    STAFF = "staff"
    PATRON = "patron"


class AccountStatus(enum.StrEnum):
    INVITED = "invited"
    ACTIVE = "active"
    DISABLED = "disabled"


def _enum(cls: type[enum.StrEnum], name: str) -> Enum:
    return Enum(cls, name=name, values_callable=lambda e: [m.value for m in e])


class Account(Base):
    """A person who signs in to one tenant: staff, or a patron using the privacy portal.

    Each account is a data subject with its own key: username, email and display name are
    sealed under it, and found through blind indexes.
    """

    __tablename__ = "accounts"
    __table_args__ = (
        UniqueConstraint("tenant_id", "username_index"),
        Index("ix_accounts_email_index", "tenant_id", "email_index"),
        tenant_fk("accounts", "patron_id", "patrons", "patron"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    kind: Mapped[AccountKind] = mapped_column(_enum(AccountKind, "account_kind"))
    username: Mapped[bytes] = mapped_column(LargeBinary, info={"personal": True})
    username_index: Mapped[bytes] = mapped_column(LargeBinary)
    email: Mapped[bytes | None] = mapped_column(LargeBinary, info={"personal": True})
    email_index: Mapped[bytes | None] = mapped_column(LargeBinary)
    display_name: Mapped[bytes | None] = mapped_column(LargeBinary, info={"personal": True})
    patron_id: Mapped[uuid.UUID | None]
    password_hash: Mapped[str | None] = mapped_column(Text)
    password_changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[AccountStatus] = mapped_column(_enum(AccountStatus, "account_status"))
    totp_secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    recovery_code_hashes: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PasswordHistory(Base):
    __tablename__ = "password_history"
    __table_args__ = (
        tenant_fk("password_history", "account_id", "accounts", "account"),
        Index("ix_password_history_account", "tenant_id", "account_id", "created_at"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID]
    password_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class PasswordPolicyRow(Base):
    """A tenant's settings for one role class, within the platform floors (identity/passwords.py)."""

    __tablename__ = "password_policies"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    role_class: Mapped[str] = mapped_column(String(16), primary_key=True)
    min_length: Mapped[int]
    max_length: Mapped[int]
    history: Mapped[int]
    expiry_days: Mapped[int | None]
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class SignInSession(Base):
    """One signed-in browser (RLS-protected like every tenant table).

    identity/sessions.py holds what is done with it; the table is created by migration 0005.
    """

    __tablename__ = "sessions"
    __table_args__ = (
        UniqueConstraint("tenant_id", "token_hash"),
        Index("ix_sessions_token_hash", "token_hash"),
        Index("ix_sessions_account", "tenant_id", "account_id"),
        tenant_fk("sessions", "account_id", "accounts", "account"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    token_hash: Mapped[bytes] = mapped_column(LargeBinary)
    account_id: Mapped[uuid.UUID]
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    idle_expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    absolute_expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The second factor was needed when the session began; signin.py also re-checks the account
    # on every request, so a factor or role added later is enforced on existing sessions too.
    mfa_required: Mapped[bool]
    mfa_verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    mfa_failures: Mapped[int] = mapped_column(Integer, default=0)
    source_address: Mapped[str] = mapped_column(Text)
    user_agent: Mapped[str] = mapped_column(Text)


class SecurityKey(Base):
    """A registered WebAuthn credential (security key or passkey): public key and counter, nothing secret.

    identity/enrolment.py holds what is done with it; the table is created by migration 0007.
    """

    __tablename__ = "webauthn_credentials"
    __table_args__ = (
        UniqueConstraint("tenant_id", "credential_id"),
        Index("ix_webauthn_credentials_account", "tenant_id", "account_id"),
        tenant_fk("webauthn_credentials", "account_id", "accounts", "account"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID]
    credential_id: Mapped[bytes] = mapped_column(LargeBinary)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)  # COSE_Key, as the authenticator sent it
    sign_count: Mapped[int] = mapped_column(BigInteger)
    transports: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list)
    aaguid: Mapped[uuid.UUID]
    backed_up: Mapped[bool] = mapped_column(default=False)
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class MfaChallenge(Base):
    """The challenge of one WebAuthn ceremony in progress: one per session and purpose, used once."""

    __tablename__ = "mfa_challenges"
    __table_args__ = (
        UniqueConstraint("tenant_id", "session_id", "purpose"),
        Index("ix_mfa_challenges_account", "tenant_id", "account_id"),
        tenant_fk("mfa_challenges", "account_id", "accounts", "account"),
        tenant_fk("mfa_challenges", "session_id", "sessions", "session"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID]
    session_id: Mapped[uuid.UUID]
    purpose: Mapped[str] = mapped_column(String(16))  # enrolment.Ceremony: "register" or "authenticate"
    challenge: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TotpEnrolment(Base):
    """A TOTP secret shown to its holder and not yet confirmed: sealed, and no factor until confirmed."""

    __tablename__ = "totp_enrolments"
    __table_args__ = (tenant_fk("totp_enrolments", "account_id", "accounts", "account"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    secret: Mapped[bytes] = mapped_column(LargeBinary)  # sealed under the account's subject key
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
