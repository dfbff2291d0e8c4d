"""Operator accounts: platform staff (support, ops, CISO, DPO) who sign in with a password and an
authenticator app, always both. identity/operators/signin.py signs them in.

Creation, and why this flow. `bookwarden operator create USERNAME --role ROLE` (the console, under
platform.operators.manage) makes an account in the `enrolling` state, with no password and no
factor, and prints a signed one-time link (identity/links.py, 24 hours). Whoever opens it sets the
password (the operator policy: 15 characters at least, common and context words refused) and
enrols an authenticator app, in one step, and gets ten recovery codes; only then is the account
active. No initial password ever exists, so none can be read over a shoulder, left in a shell
history or reused; the console user never learns a credential of the operator's; and a link that
leaks after use is worth nothing. The link must still reach its holder by a trusted channel: the
platform has no mail of its own (see below).

One-time without trusting the link's age alone: the link is bound (its state fingerprint) to a
random nonce stored on the row. A new link (`bookwarden operator enrolment-link`) replaces the
nonce, so the earlier one stops working; completing the enrolment clears it.

Keys. Operator rows have no tenant, but their TOTP secrets are sealed like every secret here:
under a subject key per operator in the keyring, under the platform's own slot there (the nil id,
which no tenant can have), wrapped by the master key and re-wrapped by its rotation.

Platform tables only: no tenant transaction can see these rows (row-level security in migration
0012 admits only transactions without tenant context). Every change is recorded on the platform's
audit chain.

Entitlement-change notices. Each account change here is an entitlement change, but the platform
has no security contacts and no mail of its own: the outbox is a tenant table (tenant_id in its
key, rows sealed under the tenant's key, delivery jobs naming the tenant), so it cannot hold a
platform notice without a change to its schema. No notice is sent; the platform's audit chain is
the record. Operators are disabled, never deleted, so that record always names a row.
"""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from bookwarden.audit.events import Action
from bookwarden.audit.record import record
from bookwarden.core.errors import BookwardenError, Conflict, InvalidInput, NotFound
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, PLATFORM_ROLES, BuiltinRole, Permission
from bookwarden.crypto.fields import decrypt_field, encrypt_field
from bookwarden.crypto.keyring import Keyring, blind_index
from bookwarden.crypto.master import MasterKeys
from bookwarden.db.session import Database, platform_session
from bookwarden.identity import links, passwords
from bookwarden.identity.links import InvalidLink, IssuedLink, LinkClaims, LinkPurpose
from bookwarden.identity.mfa import service as mfa
from bookwarden.identity.models import OperatorToken
from bookwarden.identity.operators.models import OperatorAccount, OperatorSession, OperatorStatus

PLATFORM = links.PLATFORM  # the keyring slot and link "tenant" of the platform's own staff
TABLE = "operator_accounts"
USERNAME = re.compile(r"^[a-z][a-z0-9._-]{1,63}$")
PENDING_TOTP_TIMEOUT = timedelta(minutes=10)
ROLES = sorted(role.value for role in PLATFORM_ROLES)
_NONCE_BYTES = 16


class TotpCodeRefused(BookwardenError):
    slug, status, title = "totp-code-refused", 422, "Code not accepted"

    def __init__(self) -> None:
        super().__init__(
            "the code does not match the new secret: type the code your authenticator app shows now (and check "
            "that the phone sets its clock automatically); nothing was changed, try again"
        )


@dataclass(frozen=True)
class EnrolmentLink:
    account: OperatorAccount
    url: str
    link: IssuedLink


@dataclass(frozen=True)
class EnrolmentStarted:
    secret: str  # base32, shown once so it can be typed when the QR code cannot be scanned
    provisioning_uri: str
    expires_at: datetime


@dataclass(frozen=True)
class Enrolled:
    account_id: uuid.UUID
    recovery_codes: list[str]


def permissions_of(account: OperatorAccount) -> frozenset[Permission]:
    return BUILTIN_PERMISSIONS[BuiltinRole(account.role)]


def normal_username(username: str) -> str:
    return username.strip().lower()


# --- the console -----------------------------------------------------------------------------


def create_operator(session: Session, keyring: Keyring, master: MasterKeys, username: str, role: str) -> EnrolmentLink:
    """A new operator account, enrolling; returns the one-time link its holder enrols with."""
    name = normal_username(username)
    if not USERNAME.match(name):
        raise InvalidInput(f'username "{username}" must be 2-64 of a-z, 0-9, ".", "_" and "-", starting with a letter')
    if role not in ROLES:
        raise InvalidInput(f'role "{role}" is not an operator role; one of: {", ".join(ROLES)}')
    if session.scalar(select(OperatorAccount.id).where(OperatorAccount.username == name)) is not None:
        raise Conflict(f'an operator account "{name}" exists already (disabled accounts keep their name)')
    keyring.create_tenant(PLATFORM)  # the platform's own keys; idempotent
    account = OperatorAccount(id=uuid.uuid4(), username=name, role=role, status=OperatorStatus.ENROLLING.value)
    keyring.create_subject(PLATFORM, account.id)
    session.add(account)
    session.flush()
    record(session, Action.OPERATOR_ACCOUNT_CREATED, ("operator_account", account.id), details={"role": role})
    return _new_link(session, master, account)


def issue_enrolment_link(session: Session, master: MasterKeys, username: str) -> EnrolmentLink:
    """A new enrolment link for an account still enrolling (the first expired or was lost); the old one ends."""
    account = find(session, username, lock=True)
    if account.status != OperatorStatus.ENROLLING:
        raise Conflict(
            f'operator "{account.username}" is {account.status}: an enrolment link is for an account that has not '
            "enrolled yet"
        )
    return _new_link(session, master, account)


def _new_link(session: Session, master: MasterKeys, account: OperatorAccount) -> EnrolmentLink:
    account.enrolment_nonce = secrets.token_bytes(_NONCE_BYTES)
    link = links.issue_for(master, LinkPurpose.OPERATOR_ENROLMENT, PLATFORM, account.id, _state(master, account))
    account.enrolment_expires_at = link.expires_at
    account.pending_totp_secret, account.pending_totp_expires_at = None, None
    session.flush()
    details = {"link_expires_at": link.expires_at.isoformat()}
    record(session, Action.OPERATOR_ENROLMENT_LINK_ISSUED, ("operator_account", account.id), details=details)
    return EnrolmentLink(account, links.link_url(LinkPurpose.OPERATOR_ENROLMENT, link.token), link)


def disable(session: Session, username: str) -> OperatorAccount:
    """No sign-in, and every session and operator token of the account ends at once; the account and its
    history stay."""
    account = find(session, username, lock=True)
    if account.status == OperatorStatus.DISABLED:
        raise Conflict(f'operator "{account.username}" is disabled already')
    account.status, account.disabled_at = OperatorStatus.DISABLED.value, func.now()
    ended = end_sessions(session, account.id)
    revoked = end_tokens(session, account.id)
    session.flush()
    details = {"role": account.role, "sessions_ended": ended, "tokens_revoked": revoked}
    record(session, Action.OPERATOR_ACCOUNT_DISABLED, ("operator_account", account.id), details=details)
    return account


def enable(session: Session, username: str) -> OperatorAccount:
    """Active again when it had enrolled, enrolling otherwise (a link is still needed then)."""
    account = find(session, username, lock=True)
    if account.status != OperatorStatus.DISABLED:
        raise Conflict(f'operator "{account.username}" is {account.status}, not disabled')
    enrolled = account.password_hash is not None and account.totp_secret is not None
    account.status = (OperatorStatus.ACTIVE if enrolled else OperatorStatus.ENROLLING).value
    account.disabled_at = None
    session.flush()
    details = {"role": account.role, "status": account.status}
    record(session, Action.OPERATOR_ACCOUNT_ENABLED, ("operator_account", account.id), details=details)
    return account


def list_operators(session: Session) -> list[OperatorAccount]:
    found = list(session.scalars(select(OperatorAccount).order_by(OperatorAccount.username)))
    ids = [account.id for account in found]
    record(session, Action.OPERATOR_ACCOUNT_LISTED, ("operator_account", None), details={"ids": ids, "count": len(ids)})
    return found


def console_account(session: Session, username: str) -> OperatorAccount | None:
    """The account the console acts as for an OS user mapped to `username` (console.py); None if there is none."""
    return session.scalar(select(OperatorAccount).where(OperatorAccount.username == normal_username(username)))


def none_yet(session: Session) -> bool:
    """No operator account exists at all: the platform's very first one is still to be created."""
    return session.scalar(select(func.count()).select_from(OperatorAccount)) == 0


def find(session: Session, username: str, *, lock: bool = False) -> OperatorAccount:
    query = select(OperatorAccount).where(OperatorAccount.username == normal_username(username))
    account = session.scalar(query.with_for_update() if lock else query)
    if account is None:
        raise NotFound(f'no operator account "{normal_username(username)}"')
    return account


def end_sessions(session: Session, account_id: uuid.UUID) -> int:
    result = session.execute(
        update(OperatorSession)
        .where(OperatorSession.account_id == account_id, OperatorSession.revoked_at.is_(None))
        .values(revoked_at=func.now())
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


def end_tokens(session: Session, account_id: uuid.UUID) -> int:
    """Revoke every live operator token the account owns (identity/tokens/service.py also refuses, at each
    use, a token whose owner is not active). Here, not there: tokens name operators, not the reverse."""
    result = session.execute(
        update(OperatorToken)
        .where(OperatorToken.owner_id == account_id, OperatorToken.revoked_at.is_(None))
        .values(revoked_at=func.now())
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


# --- the holder, with the link -----------------------------------------------------------------


def start_enrolment(db: Database, token: str) -> EnrolmentStarted:
    """A new authenticator app secret for the link's account; nothing is active until `complete_enrolment`."""
    claims = _verified(db.master, token)
    with platform_session(db) as session:
        account = _usable(session, db.master, claims)
        secret = mfa.new_totp_secret()
        account.pending_totp_secret = seal(db.keyring, account.id, "pending_totp_secret", secret)
        account.pending_totp_expires_at = func.now() + PENDING_TOTP_TIMEOUT
        session.flush()
        session.refresh(account, ["pending_totp_expires_at"])
        uri = mfa.provisioning_uri(secret, account.username, "Bookwarden operators")
        details = {"method": "totp", "via": "operator enrolment link"}
        record(session, Action.MFA_ENROLMENT_STARTED, ("operator_account", account.id), details=details)
        return EnrolmentStarted(secret, uri, account.pending_totp_expires_at)


def complete_enrolment(db: Database, token: str, password: str, code: str) -> Enrolled:
    """Set the password (operator policy) and activate the app with its current code, in one step.

    Raises PasswordRejected naming the rule, TotpCodeRefused, Conflict (no secret waiting) or InvalidLink;
    any refusal changes nothing.
    """
    claims = _verified(db.master, token)
    with platform_session(db) as session:
        account = _usable(session, db.master, claims)
        passwords.check_password(
            password, passwords.PasswordPolicy.for_role(passwords.RoleClass.OPERATOR), context_words=[account.username]
        )
        secret = _pending_secret(session, db.keyring, account)
        step = mfa.verify_totp(secret, code, last_used_step=None)
        if step is None:
            raise TotpCodeRefused()
        codes, hashes = mfa.new_recovery_codes()
        account.password_hash = passwords.hash_password(password, passwords.DEFAULT)
        account.password_changed_at = func.now()
        account.totp_secret = seal(db.keyring, account.id, "totp_secret", secret)
        account.totp_last_step = step  # the confirming code is spent: it cannot also sign in
        account.recovery_code_hashes = hashes
        account.pending_totp_secret, account.pending_totp_expires_at = None, None
        account.enrolment_nonce, account.enrolment_expires_at = None, None
        account.status = OperatorStatus.ACTIVE.value
        session.flush()
        details = {"role": account.role, "method": "totp", "recovery_codes_issued": len(codes)}
        record(session, Action.OPERATOR_ACCOUNT_ENROLLED, ("operator_account", account.id), details=details)
        return Enrolled(account.id, codes)


def _verified(master: MasterKeys, token: str) -> LinkClaims:
    claims = links.verify(master, token, LinkPurpose.OPERATOR_ENROLMENT)
    if claims.tenant_id != PLATFORM:
        raise InvalidLink()
    return claims


def _state(master: MasterKeys, account: OperatorAccount) -> str:
    nonce = account.enrolment_nonce.hex() if account.enrolment_nonce else "none"
    return links.fingerprint(master, f"operator-enrolment\x00{account.id}\x00{account.status}\x00{nonce}")


def _usable(session: Session, master: MasterKeys, claims: LinkClaims) -> OperatorAccount:
    # The row lock queues two uses of one link: the second sees the nonce cleared and is refused.
    account = session.get(OperatorAccount, claims.account_id, with_for_update=True, populate_existing=True)
    if account is None or account.status != OperatorStatus.ENROLLING or account.enrolment_nonce is None:
        raise InvalidLink()
    if not links.state_matches(claims, _state(master, account)):
        raise InvalidLink()
    return account


def _pending_secret(session: Session, keyring: Keyring, account: OperatorAccount) -> str:
    waiting = session.scalar(
        select(OperatorAccount.id).where(
            OperatorAccount.id == account.id,
            OperatorAccount.pending_totp_secret.is_not(None),
            OperatorAccount.pending_totp_expires_at > func.now(),
        )
    )
    if waiting is None:
        raise Conflict(
            "no authenticator app secret is waiting, or it expired after 10 minutes: start again with "
            "POST /api/v1/operator/auth/enrolment"
        )
    return unseal(keyring, account.id, "pending_totp_secret", account.pending_totp_secret)


# --- sealing ---------------------------------------------------------------------------------


def seal(keyring: Keyring, account_id: uuid.UUID, column: str, value: str) -> bytes:
    return encrypt_field(keyring.subject_key(PLATFORM, account_id), PLATFORM, TABLE, column, account_id, value)


def unseal(keyring: Keyring, account_id: uuid.UUID, column: str, sealed: bytes) -> str:
    return decrypt_field(keyring.subject_key(PLATFORM, account_id), PLATFORM, TABLE, column, account_id, sealed)


def failure_key(keyring: Keyring, account_id: uuid.UUID) -> bytes:
    """The account's key in the sign-in failure counts: an HMAC under the platform's index key."""
    return blind_index(keyring.index_key(PLATFORM), "auth-failures-operator", str(account_id))
