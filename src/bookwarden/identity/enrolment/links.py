"""Administrator-assisted enrolment of a second factor, after an MFA reset.

An administrator's reset (enrolment.reset_second_factors) leaves an account with no factor, and an
account whose role requires one then cannot sign in at all (signin.SecondFactorEnrolmentRequired):
there is no enrolment-only session on a password alone. This is the way back in:

1. `send_link`: an administrator has a signed link mailed to the account's own address (never shown
   to the administrator), valid for 24 hours. The account must be active and have no factor.
2. `begin`: the holder opens the link and types their password. The link and the password are both
   checked, with the sign-in throttles (per address, per account) exactly as a sign-in; then a
   sign-in session is opened in the "second factor pending" state, which authenticates nothing, and
   an authenticator app secret is handed out for it (enrolment.start_totp).
3. `confirm`: a code from the app, sent with that session's cookie, activates the secret, issues ten
   recovery codes and completes the session's second step: the holder ends in a normal session.

One-time: the link is bound (through its state fingerprint) to a random nonce stored in
`mfa_enrolment_links`, one row per account. A new link replaces the nonce, so the earlier link stops
working; completing the enrolment deletes the row, so the link cannot be used again, not even after
a later reset leaves the account looking as it did. The row also names the session that proved the
password with the link: only that session can confirm.

Sending a link and enrolling with one are entitlement changes: the security contacts are told
(never muted when the account is an administrator's). Every step records its audit event.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from sqlalchemy import func

from bookwarden.access.roles.notices import EntitlementEvent, entitlement_changed
from bookwarden.audit import record as audit
from bookwarden.audit.events import Action, Outcome
from bookwarden.audit.record import record, record_now
from bookwarden.core.authorize import authorize
from bookwarden.core.errors import BookwardenError, Conflict, Forbidden, NotFound, Unauthenticated
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.crypto.master import MasterKeys
from bookwarden.db.session import Database, TenantSession, platform_session, tenant_session
from bookwarden.identity import links, passwords, sessions, throttle
from bookwarden.identity.enrolment import service as enrolment
from bookwarden.identity.links import InvalidLink, LinkClaims, LinkPurpose
from bookwarden.identity.models import Account, AccountStatus, MfaEnrolmentLink
from bookwarden.identity.signin import service as signin
from bookwarden.identity.throttle import FailedFactor
from bookwarden.tenancy.models import Tenant, TenantStatus

_NONCE_BYTES = 16
VIA = "administrator's enrolment link"


@dataclass(frozen=True)
class LinkSent:
    account_id: UUID
    expires_at: datetime


@dataclass(frozen=True)
class Begun:
    """The password was right: a pending session (its cookie) and the new secret to put in the app."""

    account_id: UUID
    session_token: str
    secret: str
    provisioning_uri: str
    expires_at: datetime


@dataclass(frozen=True)
class Enrolled:
    account_id: UUID
    session_token: str  # the session's new value: its second step is done
    recovery_codes: list[str]


def _state(master: MasterKeys, account: Account, nonce: bytes) -> str:
    # A changed password or status ends the link too, as for every link of links.py.
    material = f"mfa-enrolment\x00{account.password_hash or 'none'}\x00{account.status.value}\x00{nonce.hex()}"
    return links.fingerprint(master, material)


# --- the administrator -----------------------------------------------------------------------


def send_link(session: TenantSession, master: MasterKeys, actor: Principal, account_id: UUID) -> LinkSent:
    """Mail the holder a one-time link to enrol a new second factor; any earlier link stops working."""
    authorize(actor, Permission.ACCOUNTS_MANAGE)
    if actor.is_person(account_id):  # through a session or one of their tokens
        raise Forbidden("nobody may send themselves an enrolment link: ask another administrator")
    account = session.get(Account, (session.tenant_id, account_id), with_for_update=True, populate_existing=True)
    if account is None:
        raise NotFound(f"no account {account_id}")
    if account.status is not AccountStatus.ACTIVE:
        raise Conflict(
            f"account {account.id} is {account.status.value}: an enrolment link is for an active account "
            "(enable it first; an invited account enrols after accepting its invitation)"
        )
    if enrolment.has_factor(session, account):
        raise Conflict(
            f"account {account.id} still has a second factor: reset its second factors first "
            f"(POST /api/v1/accounts/{account.id}/mfa-reset), then send the link"
        )
    nonce = secrets.token_bytes(_NONCE_BYTES)
    institution = session.get(Tenant, session.tenant_id).name
    sent = links.mail_link(
        session,
        master,
        account,
        LinkPurpose.MFA_ENROLMENT,
        f"an administrator of {institution}",
        state=_state(master, account, nonce),
    )
    row = session.get(MfaEnrolmentLink, (session.tenant_id, account.id)) or MfaEnrolmentLink(
        tenant_id=session.tenant_id, account_id=account.id
    )
    row.nonce, row.issued_by, row.expires_at, row.session_id = nonce, actor.id, sent.expires_at, None
    row.created_at = func.now()
    session.add(row)
    session.flush()
    expires = sent.expires_at.isoformat()
    record(session, Action.MFA_ENROLMENT_LINK_SENT, ("account", account.id), details={"link_expires_at": expires})
    entitlement_changed(
        session,
        actor,
        EntitlementEvent.MFA_ENROLMENT_LINK_SENT,
        f"account {account.id}",
        {"link expires (UTC)": expires},
        account_id=account.id,
    )
    return LinkSent(account.id, sent.expires_at)


# --- the holder ------------------------------------------------------------------------------


def begin(db: Database, token: str, password: str, source_address: str, user_agent: str) -> Begun:
    """Check the link and the password; open a pending session and hand out a new app secret.

    Raises InvalidLink, TooManyAttempts or signin.InvalidCredentials (the one answer for a wrong
    password and a locked account, as at sign-in).
    """
    claims = links.verify(db.master, token, LinkPurpose.MFA_ENROLMENT)
    address = throttle.address_key(db.master, source_address)
    try:
        with platform_session(db) as session:
            throttle.admit_address(session, address)
    except throttle.TooManyAttempts:
        details = {"attempt": "mfa enrolment link"}
        target = ("account", claims.account_id)
        record_now(
            db, Action.SIGN_IN_THROTTLED, target, outcome=Outcome.DENIED, details=details, tenant_id=claims.tenant_id
        )
        raise
    with tenant_session(db, claims.tenant_id) as session:
        admitted = _admit(session, db.master, claims)
    if admitted is None:
        raise signin.InvalidCredentials()
    password_hash, admission = admitted
    # The slow argon2 check runs between transactions, holding no connection or row lock.
    verification = (
        passwords.verify_password(password_hash, password, passwords.DEFAULT)
        if password_hash
        else passwords.dummy_verify(password, passwords.DEFAULT)
    )
    with tenant_session(db, claims.tenant_id) as session:
        outcome = _conclude(session, db.master, claims, verification, admission, address, source_address, user_agent)
    if isinstance(outcome, BookwardenError):
        raise outcome
    return outcome


def _usable(session: TenantSession, master: MasterKeys, claims: LinkClaims) -> tuple[Account, MfaEnrolmentLink]:
    tenant = session.get(Tenant, session.tenant_id)
    if tenant is None or tenant.status is not TenantStatus.ACTIVE:
        raise InvalidLink()
    account = session.get(Account, (session.tenant_id, claims.account_id), with_for_update=True, populate_existing=True)
    row = session.get(MfaEnrolmentLink, (session.tenant_id, claims.account_id), populate_existing=True)
    if account is None or row is None or account.status is not AccountStatus.ACTIVE:
        raise InvalidLink()
    if not links.state_matches(claims, _state(master, account, row.nonce)):
        raise InvalidLink()
    return account, row


def _admit(
    session: TenantSession, master: MasterKeys, claims: LinkClaims
) -> tuple[str | None, throttle.Admission] | None:
    account, _ = _usable(session, master, claims)
    admission = throttle.admit_account(session, account.id)
    if admission is None:
        _failed(session, account.id, "account locked")
        return None
    return account.password_hash, admission


def _failed(session: TenantSession, account_id: UUID, reason: str, **details) -> None:
    # As a sign-in failure (the caller gets the same invalid-credentials answer), naming the link.
    details = {"reason": reason, "via": VIA, **details}
    record(session, Action.SIGN_IN_FAILED, ("account", account_id), outcome=Outcome.DENIED, details=details)


def _conclude(
    session: TenantSession,
    master: MasterKeys,
    claims: LinkClaims,
    verification: passwords.Verification,
    admission: throttle.Admission,
    address: bytes,
    source_address: str,
    user_agent: str,
) -> Begun | BookwardenError:
    try:
        account, row = _usable(session, master, claims)
    except InvalidLink as refused:
        return refused  # used or replaced while the password was being checked
    if not verification.ok:
        _failed(session, account.id, "wrong password", consecutive_failures=admission.consecutive)
        throttle.failure_counted(session, account, admission, FailedFactor.PASSWORD)
        return signin.InvalidCredentials()
    throttle.release_address(session, address)
    # The account streak stays counted until the new factor is confirmed, as for a sign-in whose
    # second step is still to come.
    signed, cookie = sessions.create_session(
        session, account.id, source_address=source_address, user_agent=user_agent, second_factor_pending=True
    )
    row.session_id = signed.id
    holder = signin.as_principal(session, account.id)
    audit.current().principal = holder  # the rest of this request acts as the holder
    record(
        session,
        Action.SIGN_IN_SUCCEEDED,
        ("account", account.id),
        details={"session_id": signed.id, "second_factor_pending": True, "via": VIA},
        actor=holder,
    )
    started = enrolment.start_totp(session, enrolment.SignedInAccount(holder, signed.id))
    return Begun(account.id, cookie, started.secret, started.provisioning_uri, started.expires_at)


def confirm(db: Database, cookie: str, code: str) -> Enrolled:
    """Activate the secret handed out by `begin` with a code from the app; the session becomes a normal one."""
    found = sessions.lookup(db, cookie)
    if found is None:
        raise _nothing_waiting()
    with tenant_session(db, found.tenant_id) as session:
        row = session.get(
            MfaEnrolmentLink, (session.tenant_id, found.account_id), with_for_update=True, populate_existing=True
        )
        if row is None or row.session_id != found.session_id:
            raise _nothing_waiting()
        holder = signin.as_principal(session, found.account_id)
        audit.current().principal = holder
        added = enrolment.confirm_totp(session, enrolment.SignedInAccount(holder, found.session_id), code)
        if added.session_token is None:  # the session had passed a second step already: not ours
            raise _nothing_waiting()
        session.delete(row)
        throttle.clear_account(session, found.account_id)
        session.flush()
        entitlement_changed(
            session,
            holder,
            EntitlementEvent.MFA_ENROLLED_WITH_LINK,
            f"account {found.account_id}",
            {"method": signin.TOTP, "recovery codes issued": str(len(added.recovery_codes))},
            account_id=found.account_id,
        )
        return Enrolled(found.account_id, added.session_token, added.recovery_codes)


def _nothing_waiting() -> Unauthenticated:
    return Unauthenticated(
        "no second-factor enrolment is waiting in this session: open the link from your mail again and "
        "type your password first"
    )
