"""Second factors: enrolling and removing one's own, an administrator's reset, and WebAuthn at sign-in.

What an account can hold (identity/mfa/service.py has the mechanisms, and says what is stored how):

- an authenticator app (TOTP), offered to every account. Enrolment takes two steps. `start_totp`
  makes a secret and keeps it sealed in `totp_enrolments`, where it is no factor yet: sign-in
  never asks for a secret nobody has shown to work. `confirm_totp` takes a code from the app,
  which proves the app holds the secret; only then does the secret become the account's (in
  place of an earlier one, so changing phones is one enrolment), with ten fresh recovery codes.
- security keys and passkeys (WebAuthn), offered to staff only, as mfa.py decides.
- recovery codes: ten at a time, a new set replacing the old, shown once.

The rules, and why:

- Changing the factors of an account that has one needs a session that passed one
  (`_require_passed`). Any usable session of such an account has (signin.authenticate_session
  refuses the others), so this states what holds; regenerating recovery codes relies on it.
- A factor proved while enrolling (the confirmation code, the new key's registration) also
  completes the second step of the session it was enrolled in, which gets a new value. The
  session is worth no more than before: an account without a factor had a full session on its
  password alone, and an account with one could not be here without passing it.
- Removing the last app or key while a role requires a second factor is refused. Removing it
  otherwise also drops the recovery codes: they stand in for a lost factor, and left alone they
  would keep sign-in asking for codes of a factor the holder chose to give up.
- An administrator's reset (`reset_second_factors`) removes every factor of another account,
  ends its sessions and tells the security contacts: it is how a holder who lost every factor
  gets back in, and exactly what an attacker would want, so it is never quiet.

WebAuthn at sign-in follows signin.complete_second_factor: it opens its own transactions, so
that a refused assertion stays counted (and its challenge spent) after the refusal is raised,
and it finishes through signin.second_factor_passed like a TOTP code. Challenges are kept
server-side, one per session and purpose, for mfa.CEREMONY_TIMEOUT, and taken (deleted) by the
response that answers them, whether or not it verifies: each is answered at most once.

Every change of a factor, and every look at them, records its audit event in the same transaction
(the account and key ids, the method; never a secret, code or credential).
"""

from __future__ import annotations

import enum
import ipaddress
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert

from bookwarden.access.roles.notices import EntitlementEvent, entitlement_changed
from bookwarden.access.roles.reads import privileged_roles
from bookwarden.audit.events import Action
from bookwarden.audit.record import record
from bookwarden.core.authorize import authorize
from bookwarden.core.errors import BookwardenError, Conflict, Forbidden, NotFound, Unauthenticated
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.crypto.fields import decrypt_field, encrypt_field
from bookwarden.crypto.keyring import blind_index
from bookwarden.db.session import Database, TenantSession, tenant_session
from bookwarden.identity import sessions, throttle
from bookwarden.identity.accounts import service as accounts
from bookwarden.identity.mfa import service as mfa
from bookwarden.identity.models import (
    Account,
    AccountKind,
    AccountStatus,
    MfaChallenge,
    SecurityKey,
    SignInSession,
    TotpEnrolment,
)
from bookwarden.identity.signin import service as signin
from bookwarden.identity.throttle import FailedFactor
from bookwarden.tenancy.models import Tenant

# Long enough to find the phone, scan the code and type one; a secret left on a screen for longer
# may have been seen by someone else, so it is not accepted after that.
TOTP_ENROLMENT_TIMEOUT = timedelta(minutes=10)
TOTP_ENROLMENTS = "totp_enrolments"  # the table whose name binds the pending secret's ciphertext
DEFAULT_KEY_NAME = "Security key"


class Ceremony(enum.StrEnum):
    """What a stored WebAuthn challenge is for: a response to one cannot answer the other."""

    REGISTER = "register"
    AUTHENTICATE = "authenticate"


# --- errors ----------------------------------------------------------------------------------


class SecurityKeysForStaffOnly(BookwardenError):
    slug, status, title = "security-keys-staff-only", 403, "Security keys are for staff accounts"

    def __init__(self) -> None:
        super().__init__(
            "security keys (WebAuthn) are offered to staff accounts; protect a patron account with an "
            "authenticator app instead (POST /api/v1/auth/me/mfa/totp)"
        )


class SecondFactorNotPassed(BookwardenError):
    slug, status, title = "second-factor-not-passed", 403, "Second factor needed first"

    def __init__(self) -> None:
        super().__init__(
            "changing the second factors of an account that has one needs a session that passed it; "
            "sign in again with your authenticator app or security key, then retry"
        )


class LastSecondFactor(BookwardenError):
    slug, status, title = "last-second-factor", 409, "Last second factor"

    def __init__(self, roles: list[str]):
        super().__init__(
            f"your role ({', '.join(roles)}) carries administrative permissions, which require a second factor, "
            "and this is the last one on your account; "
            "add another (an authenticator app or a second security key) before removing this one"
        )


class TotpCodeRefused(BookwardenError):
    slug, status, title = "totp-code-refused", 422, "Code not accepted"

    def __init__(self) -> None:
        super().__init__(
            "the code does not match the new secret: type the code your authenticator app shows now for this "
            "account (and check that the phone sets its clock automatically); the app is not active until a "
            "code matches"
        )


def _no_pending_sign_in() -> Unauthenticated:
    return Unauthenticated("no sign-in is waiting for a second factor here; sign in with your password first")


# --- where security keys are used ------------------------------------------------------------


class RelyingParty(BaseSettings):
    """Where security keys are used, from BOOKWARDEN_PUBLIC_URL: the address people open Bookwarden at.

    The origin is that URL's scheme, host and port; the RP ID is its host name, so a key registered
    here works on this host only (WebAuthn binds every key to its RP ID). WebAuthn takes no IP
    address as RP ID, and needs a secure context: https, or http on localhost, which browsers treat
    as secure. So a loopback address such as the development default http://127.0.0.1:8000 maps to
    origin http://localhost:8000 and RP ID "localhost": open Bookwarden at http://localhost:8000 to
    use a security key there. Any other IP address, and plain http elsewhere, are refused on loading.
    """

    model_config = SettingsConfigDict(env_prefix="BOOKWARDEN_", extra="ignore")

    public_url: str = Field(
        default="http://127.0.0.1:8000", description="the URL people open Bookwarden at, e.g. https://library.example"
    )

    @field_validator("public_url")
    @classmethod
    def _usable_for_webauthn(cls, value: str) -> str:
        _origin_and_rp_id(value)
        return value

    @property
    def origin(self) -> str:
        return _origin_and_rp_id(self.public_url)[0]

    @property
    def rp_id(self) -> str:
        return _origin_and_rp_id(self.public_url)[1]


@lru_cache(maxsize=1)
def relying_party() -> RelyingParty:
    """Read once from the environment, like config.get_settings()."""
    return RelyingParty()


def _origin_and_rp_id(url: str) -> tuple[str, str]:
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        raise ValueError("BOOKWARDEN_PUBLIC_URL must be an http(s) URL with a host name, like https://library.example")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("BOOKWARDEN_PUBLIC_URL has a port that is not a number from 0 to 65535") from None
    address = _ip_address(host)
    if address is not None:
        if not address.is_loopback:
            raise ValueError("BOOKWARDEN_PUBLIC_URL must name its host by domain name: WebAuthn takes no IP address")
        host = "localhost"
    local = host == "localhost" or host.endswith(".localhost")
    if parts.scheme == "http" and not local:
        raise ValueError("BOOKWARDEN_PUBLIC_URL must use https: browsers offer security keys only to secure sites")
    # Browsers leave the scheme's default port out of the origin they report.
    default_port = 443 if parts.scheme == "https" else 80
    netloc = host if port in (None, default_port) else f"{host}:{port}"
    return f"{parts.scheme}://{netloc}", host


def _ip_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


# --- who is acting ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedInAccount:
    """An account acting on its own second factors through one sign-in session (never an API token)."""

    principal: Principal
    session_id: UUID

    @property
    def account_id(self) -> UUID:
        return self.principal.id


@dataclass(frozen=True)
class TotpStarted:
    secret: str  # base32, shown once so it can be typed when the QR code cannot be scanned
    provisioning_uri: str
    expires_at: datetime


@dataclass(frozen=True)
class FactorAdded:
    recovery_codes: list[str]  # shown once; empty when the account keeps the codes it has
    session_token: str | None  # the session's new cookie value, when this completed its second step
    security_key: SecurityKey | None = None


@dataclass(frozen=True)
class FactorsReset:
    authenticator_app: bool
    security_keys: int
    recovery_codes: int
    sessions_ended: int


# --- the authenticator app -------------------------------------------------------------------


def start_totp(session: TenantSession, me: SignedInAccount) -> TotpStarted:
    """A new secret for the holder's authenticator app; it counts for nothing until `confirm_totp`."""
    account = _own_account(session, me, lock=True)
    _require_passed(session, _own_session(session, me), account)
    secret = mfa.new_totp_secret()
    pending = session.get(TotpEnrolment, (session.tenant_id, account.id)) or TotpEnrolment(
        tenant_id=session.tenant_id, account_id=account.id
    )
    pending.secret = _seal(session, account.id, TOTP_ENROLMENTS, "secret", secret)
    pending.created_at = func.now()
    pending.expires_at = func.now() + TOTP_ENROLMENT_TIMEOUT
    session.add(pending)
    session.flush()
    institution = session.get(Tenant, session.tenant_id).name
    uri = mfa.provisioning_uri(secret, _label(accounts.username_of(session, account)), _label(institution))
    _record(session, Action.MFA_ENROLMENT_STARTED, account.id, signin.TOTP)
    return TotpStarted(secret, uri, pending.expires_at)


def _record(session: TenantSession, action: Action, account_id: UUID, method: str, **details: Any) -> None:
    record(session, action, ("account", account_id), details={"method": method, **details})


def confirm_totp(session: TenantSession, me: SignedInAccount, code: str) -> FactorAdded:
    """Activate the pending secret once `code` matches it; returns ten fresh recovery codes."""
    account = _own_account(session, me, lock=True)
    row = _own_session(session, me)
    _require_passed(session, row, account)
    pending = session.scalar(
        select(TotpEnrolment).where(
            TotpEnrolment.tenant_id == session.tenant_id,
            TotpEnrolment.account_id == account.id,
            TotpEnrolment.expires_at > func.now(),
        )
    )
    if pending is None:
        raise Conflict(
            "no authenticator app enrolment is waiting, or it expired after "
            f"{_minutes(TOTP_ENROLMENT_TIMEOUT)} minutes; start again with POST /api/v1/auth/me/mfa/totp"
        )
    secret = _open(session, account.id, TOTP_ENROLMENTS, "secret", pending.secret)
    step = mfa.verify_totp(secret, code, last_used_step=None)
    if step is None:
        raise TotpCodeRefused()
    account.totp_secret = _seal(session, account.id, accounts.TABLE, "totp_secret", secret)
    account.totp_last_step = step  # the confirming code is spent: it cannot also sign someone in
    session.delete(pending)
    codes = _issue_recovery_codes(account)
    session.flush()
    proved = _proved_here(session, row)
    _record(session, Action.MFA_ENROLLED, account.id, signin.TOTP, recovery_codes_issued=len(codes))
    return FactorAdded(codes, proved)


def remove_totp(session: TenantSession, me: SignedInAccount) -> None:
    """Remove the holder's authenticator app; refused when it is the last factor a role requires."""
    account = _own_account(session, me, lock=True)
    _require_passed(session, _own_session(session, me), account)
    if account.totp_secret is None:
        raise NotFound("no authenticator app is enrolled on this account")
    _after_removal(session, account, app_left=False, keys_left=_key_count(session, account.id))
    account.totp_secret = None
    account.totp_last_step = None
    session.flush()
    codes_left = bool(account.recovery_code_hashes)
    _record(session, Action.MFA_REMOVED, account.id, signin.TOTP, recovery_codes_kept=codes_left)


# --- recovery codes --------------------------------------------------------------------------


def regenerate_recovery_codes(session: TenantSession, me: SignedInAccount) -> list[str]:
    """Ten new codes in place of every earlier one, for a session that passed its second factor."""
    account = _own_account(session, me, lock=True)
    if not _has_factor(session, account):
        raise Conflict(
            "recovery codes stand in for an authenticator app or a security key, and this account has neither; "
            "enrol one first (its recovery codes come with it)"
        )
    _require_passed(session, _own_session(session, me), account)
    codes = _issue_recovery_codes(account)
    session.flush()
    record(session, Action.RECOVERY_CODES_REGENERATED, ("account", account.id), details={"count": len(codes)})
    return codes


def _issue_recovery_codes(account: Account) -> list[str]:
    codes, hashes = mfa.new_recovery_codes()
    account.recovery_code_hashes = hashes
    return codes


# --- security keys (WebAuthn) ----------------------------------------------------------------


def security_key_options(session: TenantSession, me: SignedInAccount, rp: RelyingParty) -> dict[str, Any]:
    """Options for navigator.credentials.create(); the challenge stays here, bound to this session."""
    account = _own_account(session, me)
    _staff_only(account)
    row = _own_session(session, me)
    _require_passed(session, row, account)
    options, challenge = mfa.registration_options(
        rp.rp_id,
        session.get(Tenant, session.tenant_id).name,
        _user_handle(session, account),
        accounts.username_of(session, account),
        [key.credential_id for key in security_keys(session, me)],
    )
    _keep_challenge(session, row, Ceremony.REGISTER, challenge)
    _record(session, Action.MFA_ENROLMENT_STARTED, account.id, signin.SECURITY_KEY)
    return json.loads(options)


def take_challenge(session: TenantSession, session_id: UUID, ceremony: Ceremony) -> bytes | None:
    """Remove the session's challenge for `ceremony` and return it; None when there is none or it expired.

    Commit before checking the response it is for: the challenge must stay spent when that is refused.
    """
    taken = session.execute(
        delete(MfaChallenge)
        .where(
            MfaChallenge.tenant_id == session.tenant_id,
            MfaChallenge.session_id == session_id,
            MfaChallenge.purpose == ceremony.value,
        )
        .returning(MfaChallenge.challenge, (MfaChallenge.expires_at > func.now()).label("live"))
        .execution_options(synchronize_session=False)
    ).first()
    return taken.challenge if taken is not None and taken.live else None


def add_security_key(
    session: TenantSession,
    me: SignedInAccount,
    rp: RelyingParty,
    challenge: bytes | None,
    credential: dict[str, Any],
    name: str,
) -> FactorAdded:
    """Store the key of a navigator.credentials.create() response made for `challenge` (see take_challenge)."""
    account = _own_account(session, me, lock=True)
    _staff_only(account)
    row = _own_session(session, me)
    _require_passed(session, row, account)
    if challenge is None:
        raise mfa.MfaRegistrationError(
            mfa.MfaFailure.CHALLENGE_MISMATCH,
            "no security key registration is waiting, or it expired or was answered already; "
            "ask for new options and use the key once",
        )
    verified = mfa.verify_registration(credential, expected_challenge=challenge, rp_id=rp.rp_id, origin=rp.origin)
    if session.scalar(
        select(SecurityKey.id).where(
            SecurityKey.tenant_id == session.tenant_id, SecurityKey.credential_id == verified.credential_id
        )
    ):
        raise Conflict("this security key is registered already; use it as it is, or register a different key")
    key = SecurityKey(
        tenant_id=session.tenant_id,
        id=uuid.uuid4(),
        account_id=account.id,
        credential_id=verified.credential_id,
        public_key=verified.public_key,
        sign_count=verified.sign_count,
        transports=list(verified.transports),
        aaguid=UUID(verified.aaguid),
        backed_up=verified.backed_up,
        name=name.strip(),
    )
    session.add(key)
    # An account without recovery codes (a first factor) gets them with its key, so that losing the
    # key does not lock its holder out; codes it has already stay as they are.
    codes = [] if account.recovery_code_hashes else _issue_recovery_codes(account)
    session.flush()
    proved = _proved_here(session, row)
    details = {"key_id": key.id, "recovery_codes_issued": len(codes)}
    _record(session, Action.MFA_ENROLLED, account.id, signin.SECURITY_KEY, **details)
    return FactorAdded(codes, proved, key)


def security_keys(session: TenantSession, me: SignedInAccount) -> list[SecurityKey]:
    """The holder's own keys, oldest first."""
    return list(
        session.scalars(
            select(SecurityKey)
            .where(SecurityKey.tenant_id == session.tenant_id, SecurityKey.account_id == me.account_id)
            .order_by(SecurityKey.created_at, SecurityKey.id)
        )
    )


def view_security_keys(session: TenantSession, me: SignedInAccount) -> list[SecurityKey]:
    """The holder's keys, as the holder lists them: recorded."""
    keys = security_keys(session, me)
    ids = [key.id for key in keys]
    _record(session, Action.MFA_VIEWED, me.account_id, signin.SECURITY_KEY, key_ids=ids, count=len(ids))
    return keys


def rename_security_key(session: TenantSession, me: SignedInAccount, key_id: UUID, name: str) -> SecurityKey:
    key = _own_key(session, me, key_id)
    key.name = name.strip()
    session.flush()
    _record(session, Action.MFA_CHANGED, me.account_id, signin.SECURITY_KEY, key_id=key.id, fields=["name"])
    return key


def remove_security_key(session: TenantSession, me: SignedInAccount, key_id: UUID) -> None:
    """Remove one of the holder's keys; refused when it is the last factor a role requires."""
    account = _own_account(session, me, lock=True)
    _require_passed(session, _own_session(session, me), account)
    key = _own_key(session, me, key_id)
    _after_removal(
        session, account, app_left=account.totp_secret is not None, keys_left=_key_count(session, account.id) - 1
    )
    session.delete(key)
    session.flush()
    codes_left = bool(account.recovery_code_hashes)
    _record(session, Action.MFA_REMOVED, account.id, signin.SECURITY_KEY, key_id=key_id, recovery_codes_kept=codes_left)


def _own_key(session: TenantSession, me: SignedInAccount, key_id: UUID) -> SecurityKey:
    key = session.get(SecurityKey, (session.tenant_id, key_id))
    if key is None or key.account_id != me.account_id:
        # Another account's key answers like a missing one: its id tells nothing.
        raise NotFound(f"no security key {key_id} on your account")
    return key


def _staff_only(account: Account) -> None:
    if account.kind is not AccountKind.STAFF:
        raise SecurityKeysForStaffOnly()


def _user_handle(session: TenantSession, account: Account) -> bytes:
    # WebAuthn's user handle must name nobody (authenticators may show it to others): an HMAC of the
    # account id under the tenant's index key is stable per account and opaque to everyone else.
    return blind_index(session.keyring.index_key(session.tenant_id), "webauthn-user-handle", str(account.id))


def _keep_challenge(session: TenantSession, row: SignInSession, ceremony: Ceremony, challenge: bytes) -> None:
    # One per session and purpose: asking again replaces the challenge, so at most one is ever live.
    statement = insert(MfaChallenge).values(
        tenant_id=session.tenant_id,
        id=uuid.uuid4(),
        account_id=row.account_id,
        session_id=row.id,
        purpose=ceremony.value,
        challenge=challenge,
        expires_at=func.now() + mfa.CEREMONY_TIMEOUT,
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[MfaChallenge.tenant_id, MfaChallenge.session_id, MfaChallenge.purpose],
            set_={
                "challenge": statement.excluded.challenge,
                "created_at": func.now(),
                "expires_at": statement.excluded.expires_at,
            },
        )
    )


def _as_credential(key: SecurityKey) -> mfa.WebAuthnCredential:
    return mfa.WebAuthnCredential(
        credential_id=key.credential_id,
        public_key=key.public_key,
        sign_count=key.sign_count,
        transports=tuple(key.transports or ()),
        aaguid=str(key.aaguid),
        backed_up=key.backed_up,
    )


# --- an administrator's reset ----------------------------------------------------------------


def reset_second_factors(session: TenantSession, actor: Principal, account_id: UUID) -> FactorsReset:
    """Remove every second factor of another account and end its sessions; the security contacts hear of it."""
    authorize(actor, Permission.ACCOUNTS_MANAGE)
    if actor.is_person(account_id):  # through a session or one of their tokens
        raise Forbidden(
            "nobody may reset their own second factors: ask another administrator, or remove one factor at a "
            "time under /api/v1/auth/me/mfa"
        )
    account = session.get(Account, (session.tenant_id, account_id), with_for_update=True, populate_existing=True)
    if account is None:
        raise NotFound(f"no account {account_id}")
    had_app, had_codes = account.totp_secret is not None, len(account.recovery_code_hashes or [])
    account.totp_secret = None
    account.totp_last_step = None
    account.recovery_code_hashes = None
    keys = _delete_for_account(session, SecurityKey, account.id)
    _delete_for_account(session, MfaChallenge, account.id)
    _delete_for_account(session, TotpEnrolment, account.id)
    session.flush()
    # Whoever holds a session may be the one who took the factors: none survives the reset.
    ended = sessions.revoke_all_for_account(session, account.id)
    removed = FactorsReset(had_app, keys, had_codes, ended)
    details = {
        "authenticator_app_removed": had_app,
        "security_keys_removed": keys,
        "recovery_codes_removed": had_codes,
        "sessions_ended": ended,
    }
    record(session, Action.MFA_RESET, ("account", account.id), details=details)
    entitlement_changed(
        session,
        actor,
        EntitlementEvent.MFA_RESET,
        f"account {account.id}",
        {
            "authenticator app removed": "yes" if removed.authenticator_app else "no",
            "security keys removed": str(removed.security_keys),
            "recovery codes removed": str(removed.recovery_codes),
            "sessions ended": str(removed.sessions_ended),
        },
        account_id=account.id,
    )
    return removed


def _delete_for_account(
    session: TenantSession, model: type[SecurityKey] | type[MfaChallenge] | type[TotpEnrolment], account_id: UUID
) -> int:
    result = session.execute(
        delete(model)
        .where(model.tenant_id == session.tenant_id, model.account_id == account_id)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


# --- WebAuthn as the second step of a sign-in ------------------------------------------------


def sign_in_options(db: Database, token: str, rp: RelyingParty) -> dict[str, Any]:
    """Options for navigator.credentials.get() naming the pending sign-in's keys; the challenge stays here."""
    found = sessions.lookup(db, token)
    if found is None:
        raise _no_pending_sign_in()
    with tenant_session(db, found.tenant_id) as session:
        row = sessions.live(session, found.session_id)
        if row is None or row.mfa_verified_at is not None:
            raise _no_pending_sign_in()
        credential_ids = session.scalars(
            select(SecurityKey.credential_id).where(
                SecurityKey.tenant_id == session.tenant_id, SecurityKey.account_id == found.account_id
            )
        ).all()
        if not credential_ids:
            raise Conflict(
                "no security key is registered to this account; send your authenticator app's code or a "
                "recovery code to POST /api/v1/auth/mfa"
            )
        options, challenge = mfa.authentication_options(rp.rp_id, list(credential_ids))
        _keep_challenge(session, row, Ceremony.AUTHENTICATE, challenge)
        details = {"method": signin.SECURITY_KEY, "session_id": row.id}
        record(session, Action.MFA_CHALLENGED, ("account", found.account_id), details=details)
    return json.loads(options)


def complete_webauthn_sign_in(
    db: Database, token: str, credential: dict[str, Any], source_address: str, rp: RelyingParty
) -> signin.SignedIn:
    """Check a security key's assertion for the pending session behind `token`, as a TOTP code is checked.

    Returns the session's new cookie value. Every refusal is counted like a wrong code.
    """
    found = sessions.lookup(db, token)
    if found is None:
        raise _no_pending_sign_in()
    address = throttle.address_key(db.master, source_address)
    signin.admit_second_factor(db, found, address)
    with tenant_session(db, found.tenant_id) as session:
        outcome = _check_assertion(session, found, credential, address, rp)
    if isinstance(outcome, BookwardenError):
        raise outcome
    return outcome


def _check_assertion(
    session: TenantSession,
    found: sessions.SessionRef,
    credential: dict[str, Any],
    address: bytes,
    rp: RelyingParty,
) -> signin.SignedIn | BookwardenError:
    method = signin.SECURITY_KEY
    row = sessions.live(session, found.session_id)
    if row is None or row.mfa_verified_at is not None:
        signin.second_factor_failed(session, found.account_id, found.session_id, method, "no sign-in waiting")
        return _no_pending_sign_in()
    challenge = take_challenge(session, row.id, Ceremony.AUTHENTICATE)  # spent, whatever follows
    account = session.get(Account, (session.tenant_id, found.account_id), with_for_update=True, populate_existing=True)
    if account is None or account.status is not AccountStatus.ACTIVE:
        sessions.revoke(session, row.id)
        signin.second_factor_failed(session, found.account_id, row.id, method, "account not active")
        return signin.InvalidSecondFactor()
    admission = throttle.admit_account(session, account.id, honour_lock=False)
    if admission is None:  # the hard cap: nothing more is checked on this account
        sessions.revoke(session, row.id)
        signin.second_factor_failed(session, account.id, row.id, method, "account blocked")
        return signin.InvalidSecondFactor()
    try:
        _verify_assertion(session, account, credential, challenge, rp)
    except mfa.MfaError as refused:
        ended = sessions.record_second_factor_failure(session, row, signin.SECOND_FACTOR_TRIES)
        signin.second_factor_failed(
            session,
            account.id,
            row.id,
            method,
            refused.reason.value,
            session_ended=ended,
            consecutive_failures=admission.consecutive,
        )
        throttle.failure_counted(session, account, admission, FailedFactor.SECOND_FACTOR)
        return refused
    return signin.second_factor_passed(session, account, row, address, method)


def _verify_assertion(
    session: TenantSession, account: Account, credential: dict[str, Any], challenge: bytes | None, rp: RelyingParty
) -> None:
    if challenge is None:
        raise mfa.MfaError(
            mfa.MfaFailure.CHALLENGE_MISMATCH,
            "no security key request is waiting, or it expired or was answered already; "
            "ask for new options and use the key once",
        )
    # The row lock serialises two requests racing with one assertion: only one can raise the count.
    key = session.scalar(
        select(SecurityKey)
        .where(
            SecurityKey.tenant_id == session.tenant_id,
            SecurityKey.account_id == account.id,
            SecurityKey.credential_id == mfa.asserted_credential_id(credential),
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if key is None:
        raise mfa.MfaError(
            mfa.MfaFailure.UNKNOWN_CREDENTIAL,
            "this security key is not registered to this account; use a key you registered, or a recovery code",
        )
    key.sign_count = mfa.verify_authentication(
        credential, expected_challenge=challenge, rp_id=rp.rp_id, origin=rp.origin, credential=_as_credential(key)
    )
    key.last_used_at = func.now()
    session.flush()


# --- shared ----------------------------------------------------------------------------------


def _own_account(session: TenantSession, me: SignedInAccount, *, lock: bool = False) -> Account:
    # Locked when factors change: two requests changing them at once must not both pass the checks.
    account = session.get(Account, (session.tenant_id, me.account_id), with_for_update=lock, populate_existing=True)
    if account is None or account.status is not AccountStatus.ACTIVE:
        raise Unauthenticated("the session is not valid (unknown, expired or signed out); sign in again")
    return account


def _own_session(session: TenantSession, me: SignedInAccount) -> SignInSession:
    row = sessions.live(session, me.session_id)
    if row is None or row.account_id != me.account_id:
        raise Unauthenticated("the session is not valid (unknown, expired or signed out); sign in again")
    return row


def _require_passed(session: TenantSession, row: SignInSession, account: Account) -> None:
    if row.mfa_verified_at is None and _has_factor(session, account):
        raise SecondFactorNotPassed()


def _proved_here(session: TenantSession, row: SignInSession) -> str | None:
    """The new factor was just proved in this session: its second step is done (new cookie value)."""
    if row.mfa_verified_at is not None:
        return None
    return sessions.second_factor_verified(session, row)


def has_factor(session: TenantSession, account: Account) -> bool:
    """An authenticator app or a security key; recovery codes only stand in for one of them."""
    return _has_factor(session, account)


def _has_factor(session: TenantSession, account: Account) -> bool:
    return account.totp_secret is not None or _key_count(session, account.id) > 0


def _key_count(session: TenantSession, account_id: UUID) -> int:
    return session.scalar(
        select(func.count())
        .select_from(SecurityKey)
        .where(SecurityKey.tenant_id == session.tenant_id, SecurityKey.account_id == account_id)
    )


def _after_removal(session: TenantSession, account: Account, *, app_left: bool, keys_left: int) -> None:
    """Refuse to remove the last factor a role requires; with no factor left, the recovery codes go too."""
    if app_left or keys_left > 0:
        return
    required_by = privileged_roles(session, account.id)
    if required_by:
        raise LastSecondFactor(required_by)
    account.recovery_code_hashes = None


def _seal(session: TenantSession, account_id: UUID, table: str, column: str, value: str) -> bytes:
    key = session.keyring.subject_key(session.tenant_id, account_id)
    return encrypt_field(key, session.tenant_id, table, column, account_id, value)


def _open(session: TenantSession, account_id: UUID, table: str, column: str, sealed: bytes) -> str:
    key = session.keyring.subject_key(session.tenant_id, account_id)
    return decrypt_field(key, session.tenant_id, table, column, account_id, sealed)


def _label(value: str) -> str:
    # The otpauth label is "issuer:account": a colon in either would split it (mfa.provisioning_uri).
    return " ".join(value.replace(":", " ").split()) or "Bookwarden"


def _minutes(duration: timedelta) -> int:
    return int(duration.total_seconds() // 60)
