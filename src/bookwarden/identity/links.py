"""Signed, expiring one-time links: invitations (set a first password), password resets, and the others
their purposes list (second-factor and operator enrolment, a self-registration's address confirmation).

No table stores them. A link carries its own claims, signed by the platform:

    token   = base64url(payload) "." base64url(HMAC-SHA256(key, payload))
    payload = JSON {purpose, tenant, account, exp, state}

- `key` is derived from the master key with the purpose as label, never the master key itself:
  a reset token cannot even be checked as an invitation, and nothing signed here can be
  replayed against another use of the master key (its id, the address throttle, wrapping).
- `state` is a keyed fingerprint of the account's password hash, status and email index when
  the link was made. Using the link sets a password, so the fingerprint changes and the link
  stops working: one-time without storage. A changed address ends the account's links the same
  way, and no link works while the account is disabled. Two links made for the same state (an
  invitation sent twice) both work until either is used.
- Invitations last 72 hours, resets 1 hour. A master-key rotation ends every outstanding link:
  they are short-lived, and a new one is a click away.

Every refusal (malformed, tampered, expired, wrong purpose, used, account changed or gone) is
the same `401 invalid-link`, decided only after the signature check has run in full.

Asking for a reset never tells whether the account exists: the answer is always the same, the
work done has the same shape (a token is built and signed either way), and the requests are
rate-limited per source address with the sign-in throttle's mechanism, in a count of their own.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

import structlog
from pydantic import HttpUrl
from pydantic_settings import BaseSettings, SettingsConfigDict

from bookwarden.access.roles.notices import EntitlementEvent, entitlement_changed
from bookwarden.audit.events import Action, Outcome
from bookwarden.audit.record import record, record_now
from bookwarden.core import faults
from bookwarden.core.authorize import authorize
from bookwarden.core.canonical import canonical_json
from bookwarden.core.errors import BookwardenError, Conflict, InvalidInput
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.crypto.derive import KeyPurpose, derive
from bookwarden.crypto.fields import decrypt_field
from bookwarden.crypto.master import MasterKeys
from bookwarden.db.session import Database, TenantSession, platform_session, tenant_session
from bookwarden.identity import sessions, throttle
from bookwarden.identity.accounts import service as accounts
from bookwarden.identity.models import Account, AccountStatus
from bookwarden.identity.passwords import PasswordRejected
from bookwarden.identity.signin import service as signin
from bookwarden.notify.models import MailCategory
from bookwarden.notify.service import queue_mail
from bookwarden.tenancy.models import Tenant, TenantStatus
from bookwarden.tenancy.service import ensure_active

log = structlog.get_logger()


class LinkPurpose(enum.StrEnum):
    INVITE = "invite"
    RESET = "reset"
    # An administrator's link to enrol a new second factor after an MFA reset (identity/enrolment/service.py).
    MFA_ENROLMENT = "mfa-enrolment"
    # A new operator account's link to set its password and enrol its authenticator app
    # (identity/operators/service.py); its tenant is the platform's nil id, PLATFORM.
    OPERATOR_ENROLMENT = "operator-enrolment"
    # A self-registered patron's link proving they own the address they registered with
    # (privacy/registration/service.py); its "account" is the patron's id.
    EMAIL_CONFIRMATION = "email-confirmation"


LIFETIME = {
    LinkPurpose.INVITE: timedelta(hours=72),
    LinkPurpose.RESET: timedelta(hours=1),
    LinkPurpose.MFA_ENROLMENT: timedelta(hours=24),
    LinkPurpose.OPERATOR_ENROLMENT: timedelta(hours=24),
    # As long as an unconfirmed registration is kept: it lapses when its link does.
    LinkPurpose.EMAIL_CONFIRMATION: timedelta(hours=48),
}
# Where each link leads in the web console; the page posts the token to the matching API route.
PAGE = {
    LinkPurpose.INVITE: "accept-invitation",
    LinkPurpose.RESET: "reset-password",
    LinkPurpose.MFA_ENROLMENT: "enrol-second-factor",
    LinkPurpose.OPERATOR_ENROLMENT: "operator/enrol",
    LinkPurpose.EMAIL_CONFIRMATION: "confirm-email",
}
MAIL = {
    LinkPurpose.INVITE: ("invitation.txt", "your invitation"),
    LinkPurpose.RESET: ("password_reset.txt", "reset your password"),
    LinkPurpose.MFA_ENROLMENT: ("mfa_enrolment.txt", "set up your second factor again"),
}
# The one answer to a reset request, whether or not the account exists (the API's and the page's).
RESET_REQUESTED = (
    "if this institution has an active account with this username and an email address, a link to "
    "choose a new password is on its way to that address; it works once, within the hour"
)
PLATFORM = uuid.UUID(int=0)  # the "tenant" of links made for the platform's own staff
# The status an account must have for each kind of link to be made or used.
REQUIRED_STATUS = {LinkPurpose.INVITE: AccountStatus.INVITED, LinkPurpose.RESET: AccountStatus.ACTIVE}

_SELF_SERVICE = "the sign-in page (by you, we hope)"
_STATE_BYTES = 16  # 128 bits: no two states of one account collide by chance
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


class LinkSettings(BaseSettings):
    """Read from the environment on every use, so a changed setting needs no restart of a test."""

    model_config = SettingsConfigDict(env_prefix="BOOKWARDEN_", extra="ignore")

    public_url: HttpUrl = HttpUrl("http://127.0.0.1:8000")


def public_url_for(path: str) -> str:
    """The platform's absolute URL for `path` (which starts with "/"), from BOOKWARDEN_PUBLIC_URL."""
    return str(LinkSettings().public_url).rstrip("/") + path


class InvalidLink(BookwardenError):
    """The one answer for every link that cannot be used, whatever the reason."""

    slug, status, title = "invalid-link", 401, "Link not valid"

    def __init__(self) -> None:
        super().__init__(
            "this link cannot be used: it has expired, has been used already, was not sent by us, or the "
            "account has changed since; ask for a new one (an administrator re-sends invitations, and a "
            "password reset can be asked for on the sign-in page)"
        )


@dataclass(frozen=True)
class LinkClaims:
    purpose: LinkPurpose
    tenant_id: UUID
    account_id: UUID
    expires: int  # unix seconds
    state: str


@dataclass(frozen=True)
class IssuedLink:
    token: str
    expires_at: datetime


# --- keys and encoding ---------------------------------------------------------------------


def _mac(master: MasterKeys, purpose: LinkPurpose, payload: bytes) -> bytes:
    key = derive(master.current, KeyPurpose.ONE_TIME_LINK_SIGNING, purpose.value)
    return hmac.new(key, payload, hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes | None:
    """Strict base64url: the alphabet only, and only the canonical spelling of the bytes.

    Python's decoder skips foreign characters and ignores the spare low bits of the last one,
    so several texts decode alike; refusing all but one means any changed character is refused.
    """
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        return None
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    return raw if _b64(raw) == text else None


def state_of(master: MasterKeys, account: Account | None) -> str:
    """The fingerprint a link must still match when used: password hash, status and address."""
    if account is None:
        material = "none\x00none\x00none"
    else:
        email_index = account.email_index.hex() if account.email_index else "none"
        material = f"{account.password_hash or 'none'}\x00{account.status.value}\x00{email_index}"
    return fingerprint(master, material)


def fingerprint(master: MasterKeys, material: str) -> str:
    """The keyed state a link is bound to, from whatever text describes the state (`state_of`'s form)."""
    # Keyed: the payload is readable by whoever holds the link, and must tell them nothing of the hash.
    key = derive(master.current, KeyPurpose.ONE_TIME_LINK_STATE)
    digest = hmac.new(key, material.encode(), hashlib.sha256).digest()
    return _b64(digest[:_STATE_BYTES])


def sign(master: MasterKeys, claims: LinkClaims) -> str:
    # RFC 8785; links signed before it used json.dumps(sort_keys, compact), the same bytes for these
    # ASCII claims and integer expiry (tests/core/test_core_encodings.py), so links already mailed still work.
    payload = canonical_json(
        {
            "purpose": claims.purpose.value,
            "tenant": str(claims.tenant_id),
            "account": str(claims.account_id),
            "exp": claims.expires,
            "state": claims.state,
        }
    )
    return f"{_b64(payload)}.{_b64(_mac(master, claims.purpose, payload))}"


def issue(
    master: MasterKeys, purpose: LinkPurpose, tenant_id: UUID, account: Account | None, *, now: float | None = None
) -> IssuedLink:
    """A link for `account`; with None, a link for a random account that nothing will ever accept."""
    account_id = account.id if account is not None else uuid.uuid4()
    return issue_for(master, purpose, tenant_id, account_id, state_of(master, account), now=now)


def issue_for(
    master: MasterKeys, purpose: LinkPurpose, tenant_id: UUID, subject_id: UUID, state: str, *, now: float | None = None
) -> IssuedLink:
    """A link for `subject_id` bound to `state` (a `fingerprint`), for callers that keep their own state."""
    issued_at = time.time() if now is None else now
    expires = int(issued_at + LIFETIME[purpose].total_seconds())
    token = sign(master, LinkClaims(purpose, tenant_id, subject_id, expires, state))
    return IssuedLink(token, datetime.fromtimestamp(expires, UTC))


def state_matches(claims: LinkClaims, state: str) -> bool:
    return hmac.compare_digest(state.encode(), claims.state.encode())


def verify(master: MasterKeys, token: str, purpose: LinkPurpose, *, now: float | None = None) -> LinkClaims:
    """The claims of a genuine, unexpired link made for `purpose`; InvalidLink otherwise.

    The state is checked later, against the account row (`_usable_account`).
    """
    payload_text, _, mac_text = token.partition(".")
    payload, given = _unb64(payload_text), _unb64(mac_text)
    # The MAC is computed and compared in constant time whatever the input looked like, so a
    # malformed token costs what a forged one does.
    expected = _mac(master, purpose, payload or b"")
    genuine = hmac.compare_digest(expected, given or b"")
    if payload is None or not genuine:
        raise InvalidLink()
    claims = _claims(payload)
    checked_at = time.time() if now is None else now
    if claims is None or claims.purpose is not purpose or claims.expires <= checked_at:
        raise InvalidLink()
    return claims


def _claims(payload: bytes) -> LinkClaims | None:
    # Our own signed data by now; parsed defensively all the same, so no shape of it can crash.
    try:
        data = json.loads(payload)
        return LinkClaims(
            purpose=LinkPurpose(data["purpose"]),
            tenant_id=UUID(data["tenant"]),
            account_id=UUID(data["account"]),
            expires=int(data["exp"]),
            state=str(data["state"]),
        )
    except (ValueError, KeyError, TypeError):
        return None


def link_url(purpose: LinkPurpose, token: str) -> str:
    # In the fragment: browsers send it to no server, so it stays out of access logs and Referer headers.
    return public_url_for(f"/{PAGE[purpose]}#token={token}")


# --- mailing links -------------------------------------------------------------------------


def send_invitation(session: TenantSession, master: MasterKeys, actor: Principal, account_id: UUID) -> IssuedLink:
    """Mail an invited account the link that sets its first password (on creation, or again later)."""
    authorize(actor, Permission.ACCOUNTS_MANAGE)
    account = accounts.get_account(session, account_id)
    if account.status is not AccountStatus.INVITED:
        raise Conflict(
            f"account {account.id} is {account.status.value}, not invited: an invitation only sets a first "
            "password; send a password reset to an active account"
        )
    institution = session.get(Tenant, session.tenant_id).name
    link = mail_link(session, master, account, LinkPurpose.INVITE, f"an administrator of {institution}")
    record(session, Action.ACCOUNT_INVITED, ("account", account.id), details={"link_expires_at": _when(link)})
    return link


def send_reset(session: TenantSession, master: MasterKeys, actor: Principal, account_id: UUID) -> IssuedLink:
    """An administrator has a reset link mailed to the holder; the administrator never sees the link."""
    authorize(actor, Permission.ACCOUNTS_MANAGE)
    account = accounts.get_account(session, account_id)
    if account.status is not AccountStatus.ACTIVE:
        raise Conflict(
            f"account {account.id} is {account.status.value}: only an active account gets a reset link "
            "(re-send the invitation to an invited account; enable a disabled one first)"
        )
    institution = session.get(Tenant, session.tenant_id).name
    link = mail_link(session, master, account, LinkPurpose.RESET, f"an administrator of {institution}")
    details = {"by": "administrator", "link_expires_at": _when(link)}
    record(session, Action.PASSWORD_RESET_REQUESTED, ("account", account.id), details=details)
    return link


def _when(link: IssuedLink) -> str:
    return link.expires_at.isoformat()


def mail_link(
    session: TenantSession,
    master: MasterKeys,
    account: Account,
    purpose: LinkPurpose,
    sender: str,
    *,
    state: str | None = None,
) -> IssuedLink:
    """Mail the holder a link for `purpose`, bound to `state` when given, else to `state_of(account)`."""
    key = session.keyring.subject_key(session.tenant_id, account.id)

    def field(column: str) -> str | None:
        return decrypt_field(key, session.tenant_id, accounts.TABLE, column, account.id, getattr(account, column))

    address = field("email")
    if address is None:
        raise Conflict(f"account {account.id} has no email address, so a link cannot reach its holder")
    tenant = session.get(Tenant, session.tenant_id)
    if state is None:
        link = issue(master, purpose, session.tenant_id, account)
    else:
        link = issue_for(master, purpose, session.tenant_id, account.id, state)
    template, subject = MAIL[purpose]
    queue_mail(
        session,
        to=address,
        subject=f"[{tenant.name}] {subject}",
        template=template,
        context={
            "recipient_name": field("display_name") or field("username"),
            "username": field("username"),
            "institution": tenant.name,
            "institution_slug": tenant.slug,
            "sender": sender,
            "url": link_url(purpose, link.token),
            "expires": link.expires_at.strftime("%H:%M UTC on %d %B %Y"),
        },
        category=MailCategory.SERVICE,
    )
    faults.point("links.queued")
    return link


# --- using links ---------------------------------------------------------------------------


def accept_invitation(db: Database, token: str, password: str) -> UUID:
    """Set the first password of an invited account (under its role's policy) and activate it."""
    claims = verify(db.master, token, LinkPurpose.INVITE)
    with _refusal_recorded(db, claims, Action.ACCOUNT_ACTIVATED), tenant_session(db, claims.tenant_id) as session:
        account = _usable_account(session, db.master, claims)
        accounts.change_password(session, account, password)
        record(session, Action.ACCOUNT_ACTIVATED, ("account", account.id), actor=_holder(session, account))
        return account.id


def reset_with_link(db: Database, token: str, password: str) -> UUID:
    """Set a new password from a reset link: the lock ends, every session ends, security contacts hear."""
    claims = verify(db.master, token, LinkPurpose.RESET)
    with _refusal_recorded(db, claims, Action.PASSWORD_RESET), tenant_session(db, claims.tenant_id) as session:
        account = _usable_account(session, db.master, claims)
        accounts.change_password(session, account, password)
        throttle.clear_account(session, account.id)
        ended = sessions.revoke_all_for_account(session, account.id)
        # The holder acted, not an administrator: the event and the notice name the account itself.
        holder = _holder(session, account)
        details = {"by": "holder", "sessions_ended": ended}
        record(session, Action.PASSWORD_RESET, ("account", account.id), details=details, actor=holder)
        entitlement_changed(
            session, holder, EntitlementEvent.PASSWORD_RESET, f"account {account.id}", account_id=account.id
        )
        return account.id


def _holder(session: TenantSession, account: Account) -> Principal:
    return Principal(PrincipalKind.ACCOUNT, account.id, session.tenant_id, frozenset())


@contextmanager
def _refusal_recorded(db: Database, claims: LinkClaims, action: Action) -> Iterator[None]:
    """A genuine link whose new password the policy refused: the refused step is recorded, naming the rule.

    In a transaction of its own, because the refusal rolled the link's transaction back.
    """
    try:
        yield
    except PasswordRejected as refused:
        record_now(
            db,
            action,
            ("account", claims.account_id),
            outcome=Outcome.FAILED,
            details={"problem": refused.slug, "rule": refused.rule.value},
            tenant_id=claims.tenant_id,
        )
        raise


def _usable_account(session: TenantSession, master: MasterKeys, claims: LinkClaims) -> Account:
    if session.get(Tenant, session.tenant_id) is None:
        raise InvalidLink()
    # A suspended institution refuses every request, links included; the holder may be told so.
    ensure_active(session, session.tenant_id)
    # The row lock makes two uses of one link in flight queue up: the second sees the new password
    # hash, so its state no longer matches and it is refused.
    account = session.get(Account, (session.tenant_id, claims.account_id), with_for_update=True, populate_existing=True)
    state = state_of(master, account)
    matches = hmac.compare_digest(state.encode(), claims.state.encode())
    if account is None or not matches or account.status is not REQUIRED_STATUS[claims.purpose]:
        raise InvalidLink()
    return account


# --- asking for a reset --------------------------------------------------------------------


def request_reset(db: Database, institution: str, username: str, source_address: str) -> None:
    """Mail a reset link when the account exists, is active and has an address; otherwise nothing.

    Raises TooManyAttempts when the address must wait. Returns the same way in every other case.
    """
    with platform_session(db) as session:
        try:
            throttle.admit_address(session, _request_key(db.master, source_address))
            throttled = None
        except throttle.TooManyAttempts as refused:
            throttled = refused  # the institution is still looked up, so the refusal reaches its chain
        tenant = signin.institution(session, institution)
    named = tenant.id if tenant is not None else None
    if throttled is not None:
        _request_refused(db, named, "too many requests", Outcome.DENIED)
        raise throttled
    if tenant is None or tenant.status is not TenantStatus.ACTIVE:
        issue(db.master, LinkPurpose.RESET, uuid.uuid4(), None)
        _request_refused(db, named, "unknown institution" if tenant is None else "institution suspended")
        return
    with tenant_session(db, tenant.id) as session:
        account = accounts.find_by_username(session, username)
        if account is None or account.status is not AccountStatus.ACTIVE or account.email is None:
            issue(db.master, LinkPurpose.RESET, tenant.id, None)
            reason = "unknown account" if account is None else "account not active or without an address"
            target = ("account", account.id) if account is not None else None
            details = {"by": "self-service", "reason": reason}
            record(session, Action.PASSWORD_RESET_REQUESTED, target, outcome=Outcome.FAILED, details=details)
            return
        try:
            link = mail_link(session, db.master, account, LinkPurpose.RESET, _SELF_SERVICE)
        except InvalidInput:
            # An address stored before addresses were checked: the asker must still get the usual
            # answer, not a 422 that would tell them this account exists.
            log.warning("links.reset_unsent", reason="account email refused", account_id=str(account.id))
            details = {"by": "self-service", "reason": "account email refused"}
            record(
                session,
                Action.PASSWORD_RESET_REQUESTED,
                ("account", account.id),
                outcome=Outcome.FAILED,
                details=details,
            )
            return
        details = {"by": "self-service", "link_expires_at": _when(link)}
        record(session, Action.PASSWORD_RESET_REQUESTED, ("account", account.id), details=details)


def _request_refused(db: Database, tenant_id: UUID | None, reason: str, outcome: Outcome = Outcome.FAILED) -> None:
    # Never the username asked about: to the institution's chain when the slug names one, else the platform's.
    details = {"by": "self-service", "reason": reason}
    record_now(db, Action.PASSWORD_RESET_REQUESTED, outcome=outcome, details=details, tenant_id=tenant_id)


def _request_key(master: MasterKeys, source_address: str) -> bytes:
    # A count of its own in the address throttle: asking for links must not slow the asker's
    # sign-ins, and failed sign-ins must not stop them asking. Every request counts and none is
    # taken back: taking back only those for real accounts would show which accounts exist.
    return derive(throttle.address_key(master, source_address), KeyPurpose.PASSWORD_RESET_REQUEST)
