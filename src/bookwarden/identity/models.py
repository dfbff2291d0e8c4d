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

from bookwarden.core.classification import (
    COUNTER,
    ENTITLEMENT,
    MACHINE,
    RANDOM_SECRET,
    SETTING,
    STATE,
    Category,
    Protection,
    SubjectKind,
    blind_index,
    not_personal,
    personal,
    subject_link,
)
from bookwarden.db.base import Base, tenant_fk
from bookwarden.tenancy.models import Tenant  # noqa: F401 - target of the tenant foreign keys

# Updated at most once a minute per token (identity/tokens/service.py), so its precision is stated.
LAST_USED = not_personal(
    "when the token last authenticated a request, to the minute; about a person only through its owner"
)


class ApiToken(Base):
    """A machine credential of one tenant (RLS-protected like every tenant table).

    It acts for its owner, an account of the same tenant, and never for more than that account may do
    now; a token without an owner is a service token, minted only at the platform console
    (identity/tokens/service.py). Owner and last use arrived with migration 0025.
    """

    __tablename__ = "api_tokens"
    __table_args__ = (
        UniqueConstraint("tenant_id", "token_hash"),
        Index("ix_api_tokens_token_hash", "token_hash"),
        Index("ix_api_tokens_owner", "tenant_id", "owner_id"),
        tenant_fk("api_tokens", "owner_id", "accounts", "owner"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100), info=MACHINE)
    # A person's credential once it has an owner: withheld from access packages like a session's hash.
    token_hash: Mapped[bytes] = mapped_column(LargeBinary, info=personal(Category.CREDENTIALS, Protection.ONE_WAY_HASH))
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(40)), info=ENTITLEMENT)
    owner_id: Mapped[uuid.UUID | None] = mapped_column(
        info=subject_link(SubjectKind.ACCOUNT, "the account the token acts for; none for a service token")
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), info=LAST_USED)


class OperatorToken(Base):
    """A platform operator's machine credential: manages tenants, reaches no tenant data.

    It acts for its owner, an operator account, and never for more than that operator's role allows
    now; a token without an owner is a platform service token, minted only at the console. Owner and
    last use arrived with migration 0025, which also keeps these rows out of every tenant transaction.
    """

    __tablename__ = "operator_tokens"
    __table_args__ = (Index("ix_operator_tokens_owner", "owner_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100), info=MACHINE)
    token_hash: Mapped[bytes] = mapped_column(
        LargeBinary, unique=True, info=personal(Category.CREDENTIALS, Protection.ONE_WAY_HASH)
    )
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(40)), info=ENTITLEMENT)
    owner_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("operator_accounts.id", ondelete="CASCADE"),
        info=subject_link(SubjectKind.OPERATOR, "the operator account the token acts for; none for a service token"),
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), info=LAST_USED)


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
    kind: Mapped[AccountKind] = mapped_column(_enum(AccountKind, "account_kind"), info=STATE)
    username: Mapped[bytes] = mapped_column(LargeBinary, info=personal(Category.IDENTITY))
    username_index: Mapped[bytes] = mapped_column(LargeBinary, info=blind_index("username"))
    email: Mapped[bytes | None] = mapped_column(LargeBinary, info=personal(Category.CONTACT))
    email_index: Mapped[bytes | None] = mapped_column(LargeBinary, info=blind_index("email"))
    display_name: Mapped[bytes | None] = mapped_column(LargeBinary, info=personal(Category.IDENTITY))
    patron_id: Mapped[uuid.UUID | None]
    password_hash: Mapped[str | None] = mapped_column(
        Text, info=personal(Category.CREDENTIALS, Protection.ONE_WAY_HASH)
    )
    password_changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[AccountStatus] = mapped_column(_enum(AccountStatus, "account_status"), info=STATE)
    totp_secret: Mapped[bytes | None] = mapped_column(LargeBinary, info=personal(Category.CREDENTIALS))
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger, info=COUNTER)
    recovery_code_hashes: Mapped[list[str] | None] = mapped_column(
        ARRAY(Text), info=personal(Category.CREDENTIALS, Protection.ONE_WAY_HASH)
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Set at every sign-in (identity/sessions.py): what "2 years of inactivity" counts from, once the
    # sessions that showed it are gone (a day after they end).
    last_signed_in_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PasswordHistory(Base):
    __tablename__ = "password_history"
    __table_args__ = (
        tenant_fk("password_history", "account_id", "accounts", "account"),
        Index("ix_password_history_account", "tenant_id", "account_id", "created_at"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID]
    password_hash: Mapped[str] = mapped_column(Text, info=personal(Category.CREDENTIALS, Protection.ONE_WAY_HASH))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class PasswordPolicyRow(Base):
    """A tenant's settings for one role class, within the platform floors (identity/passwords.py)."""

    __tablename__ = "password_policies"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    role_class: Mapped[str] = mapped_column(String(16), primary_key=True, info=SETTING)
    min_length: Mapped[int] = mapped_column(info=SETTING)
    max_length: Mapped[int] = mapped_column(info=SETTING)
    history: Mapped[int] = mapped_column(info=SETTING)
    expiry_days: Mapped[int | None] = mapped_column(info=SETTING)
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
    token_hash: Mapped[bytes] = mapped_column(LargeBinary, info=personal(Category.CREDENTIALS, Protection.ONE_WAY_HASH))
    account_id: Mapped[uuid.UUID]
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    idle_expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    absolute_expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The second factor was needed when the session began; signin.py also re-checks the account
    # on every request, so a factor or role added later is enforced on existing sessions too.
    mfa_required: Mapped[bool] = mapped_column(info=STATE)
    mfa_verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    mfa_failures: Mapped[int] = mapped_column(Integer, default=0, info=COUNTER)
    source_address: Mapped[str] = mapped_column(Text, info=personal(Category.DEVICE_NETWORK, Protection.PLAIN))
    user_agent: Mapped[str] = mapped_column(Text, info=personal(Category.DEVICE_NETWORK, Protection.PLAIN))


class SecurityKey(Base):
    """A registered WebAuthn credential (security key or passkey): public key and counter, nothing secret.

    identity/enrolment/service.py holds what is done with it; the table is created by migration 0007.
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
    credential_id: Mapped[bytes] = mapped_column(LargeBinary, info=personal(Category.CREDENTIALS, Protection.PLAIN))
    # COSE_Key, as the authenticator sent it
    public_key: Mapped[bytes] = mapped_column(LargeBinary, info=personal(Category.CREDENTIALS, Protection.PLAIN))
    sign_count: Mapped[int] = mapped_column(BigInteger, info=COUNTER)
    transports: Mapped[list[str]] = mapped_column(
        ARRAY(Text), default=list, info=personal(Category.DEVICE_NETWORK, Protection.PLAIN)
    )
    aaguid: Mapped[uuid.UUID]
    backed_up: Mapped[bool] = mapped_column(default=False, info=STATE)
    name: Mapped[str] = mapped_column(String(100), info=personal(Category.DEVICE_NETWORK, Protection.PLAIN))
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
    purpose: Mapped[str] = mapped_column(String(16), info=STATE)  # enrolment.Ceremony: "register" or "authenticate"
    challenge: Mapped[bytes] = mapped_column(LargeBinary, info=RANDOM_SECRET)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TotpEnrolment(Base):
    """A TOTP secret shown to its holder and not yet confirmed: sealed, and no factor until confirmed."""

    __tablename__ = "totp_enrolments"
    __table_args__ = (tenant_fk("totp_enrolments", "account_id", "accounts", "account"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    # Sealed under the account's subject key.
    secret: Mapped[bytes] = mapped_column(LargeBinary, info=personal(Category.CREDENTIALS))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class MfaEnrolmentLink(Base):
    """An administrator's enrolment link after an MFA reset: one outstanding per account (migration 0012).

    The link itself is signed and carries no secret of ours; this row is what makes it one-time. Its
    `nonce` is covered by the link's state fingerprint, so issuing a new link (a new nonce) ends the
    old one, and completing the enrolment deletes the row. `session_id` is the sign-in session that
    proved the account's password with this link: only that session may enrol the new factor.
    identity/enrolment/service.py holds what is done with it.
    """

    __tablename__ = "mfa_enrolment_links"
    __table_args__ = (tenant_fk("mfa_enrolment_links", "account_id", "accounts", "account"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    nonce: Mapped[bytes] = mapped_column(LargeBinary, info=RANDOM_SECRET)
    issued_by: Mapped[uuid.UUID]
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    session_id: Mapped[uuid.UUID | None]
