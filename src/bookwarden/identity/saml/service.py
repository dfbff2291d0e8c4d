"""Institutional sign-on (SAML 2.0): sign-in through each tenant's identity provider.

The configuration (which IdP, which attribute carries the username, which attribute values give
which roles, whether an unknown username gets an account) is changed only with a second
administrator's approval: identity/saml/config.py.

Sign-in, as the browser sees it:

1. GET  .../{slug}/login   -> 303 to the IdP with an AuthnRequest (HTTP-Redirect) and a RelayState;
   the request is stored for 10 minutes, bound to this browser by a cookie only it holds.
2. the IdP authenticates the person and posts a signed response to
   POST .../{slug}/acs (HTTP-POST): the stored request is taken (answered once, by the browser that
   started it: a response cannot be injected into someone else's browser, the "login CSRF"), the
   response verified (saml_protocol.verify_response), its assertion id stored until it expires
   (a replay is refused), and the person signed in exactly as a password sign-in ends: a session
   in PostgreSQL (identity/sessions.py) and the same cookie.

InResponseTo is required: unsolicited (IdP-initiated) responses are refused, since nothing would
then tie the response to the browser that presents it.

Accounts are matched by username (the configured attribute). Roles: the mapping's roles are
granted through identity/roles.py (segregation of duties and entitlement notices included) and
only ever to non-administrative roles; a role that sign-on granted and the IdP no longer asserts
is revoked at the next sign-in. Roles granted by people are never touched.

Second factor: the same rule as a password sign-in (signin.second_factor_needed). When the IdP
asserts a multi-factor authentication context (saml_protocol.MFA_CONTEXTS) the second factor is
taken as done; otherwise the session waits for POST /api/v1/auth/mfa like a password sign-in does.

Every sign-in leaves one audit event: auth.sign_in.succeeded, or auth.sign_in.failed with
{"method": "saml", "reason": ...}, the latter committed in its own transaction. Starting one
records auth.sign_in.started, and serving the public SP metadata sso.metadata_served.

Starting is public and writes (a request row, an audit event), so it is throttled per source
address with the sign-in throttle (identity/throttle.py, same limits: 5 in 15 minutes, then
doubling delays, 429 with Retry-After), under a key of its own so that it never eats into the
password sign-in's allowance. A start counts until its sign-in succeeds, when the count is taken
back: people who finish signing in are never slowed, however many share an address (a campus
NAT); only starts left unanswered add up. A refusal records auth.sign_in.throttled. Request rows
of abandoned sign-ins are purged hourly (identity/jobs.py) as well as by later starts.

Concurrent sign-ins of one person (two tabs, a double click at the IdP): for an existing account
the second waits on the account's row lock until the first commits, then reads the roles it granted
or revoked. A new username has no row to lock: both find no account and both create it, the unique
username index lets one commit and makes the other fail. The loser's transaction is then run again
from the start: it now finds the account the winner created (with its roles) and signs in as it.
Only after `_ATTEMPTS` such losses in a row is it refused, with 409 concurrent-sign-in, which
starting again resolves.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass, replace
from datetime import timedelta
from urllib.parse import urlsplit
from uuid import UUID

import structlog
from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from bookwarden.access.roles.models import AccountRole, Role
from bookwarden.access.roles.reads import privileged_roles
from bookwarden.audit.events import Action, Outcome
from bookwarden.audit.record import acting, current, record, record_now
from bookwarden.core.errors import BookwardenError, Conflict, InvalidInput, NotFound, SegregationOfDutiesError
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.crypto.derive import KeyPurpose, derive
from bookwarden.db.session import Database, TenantSession, platform_session, tenant_session
from bookwarden.identity import roles as access
from bookwarden.identity import sessions, throttle
from bookwarden.identity.accounts import service as accounts
from bookwarden.identity.models import Account, AccountKind, AccountStatus
from bookwarden.identity.saml import config as saml_config
from bookwarden.identity.saml import protocol as saml_protocol
from bookwarden.identity.saml.models import SamlConfig, SamlConsumedAssertion, SamlRequest
from bookwarden.identity.saml.protocol import EXPLANATION, Refusal, ResponseRefused
from bookwarden.identity.signin import service as signin
from bookwarden.tenancy.models import Tenant, TenantStatus

log = structlog.get_logger()

REQUEST_LIFETIME = timedelta(minutes=10)  # time to authenticate at the IdP, second factor included
BROWSER_COOKIE = "bw_saml_request"
_BROWSER_BYTES = 32
UNIQUE_VIOLATION = "23505"  # PostgreSQL's SQLSTATE for a unique index refusing a second row
_IDP_NAMESPACE = uuid.UUID("5d0a6a53-8a57-4f6c-9a3e-2f4b1c6d9e71")


class SamlSignInRefused(BookwardenError):
    """An institutional sign-on that signs nobody in; `reason` is audited, the explanation shown."""

    slug, status, title = "saml-sign-in-refused", 401, "Institutional sign-on refused"

    def __init__(self, reason: Refusal, *, status: int = 401, account_id: UUID | None = None):
        super().__init__(f"institutional sign-on refused: {EXPLANATION[reason]}")
        self.reason = reason
        self.status = status
        self.account_id = account_id  # when the refusal concerns a known account (audit target)


def identity_provider(tenant_id: UUID) -> Principal:
    """Who acts when sign-on creates an account or grants a role: the tenant's IdP, under a stable id.

    Its id marks the roles it granted (AccountRole.granted_by), so it can revoke them, and only them.
    """
    return Principal(
        PrincipalKind.SYSTEM,
        uuid.uuid5(_IDP_NAMESPACE, str(tenant_id)),
        tenant_id,
        frozenset({Permission.ACCOUNTS_MANAGE, Permission.ROLES_ASSIGN}),
    )


# --- public, per institution ------------------------------------------------------------------


def _institution(db: Database, slug: str) -> Tenant:
    """An active institution by slug; NotFound otherwise (a suspended one has nobody to sign in)."""
    with platform_session(db) as session:
        tenant = signin.institution(session, slug)
    return _active(tenant, slug)


def _active(tenant: Tenant | None, slug: str) -> Tenant:
    if tenant is None or tenant.status is not TenantStatus.ACTIVE:
        raise NotFound(f"no institution {slug} offers sign-on here")
    return tenant


def sp_metadata(db: Database, slug: str) -> bytes:
    """The SP metadata of an active institution, configured or not: its IdP needs it first."""
    tenant = _institution(db, slug)
    with tenant_session(db, tenant.id) as session:
        record(session, Action.SSO_METADATA_SERVED, ("tenant", tenant.id))
    return saml_protocol.sp_metadata(saml_protocol.sp_urls(tenant.slug))


@dataclass(frozen=True)
class SignInStarted:
    redirect_url: str  # the IdP's SingleSignOnService, with SAMLRequest and RelayState
    browser_token: str  # the cookie that binds the answer to this browser
    cookie_path: str


def start_key(db: Database, source_address: str) -> bytes:
    """The address's throttle key for sign-in starts: its sign-in key (same /64 grouping for IPv6)
    under a label of its own, so that starts and password failures are counted apart."""
    return derive(throttle.address_key(db.master, source_address), KeyPurpose.SAML_SIGN_IN_START)


def start_sign_in(db: Database, slug: str, next_path: str, source_address: str) -> SignInStarted:
    """Send the browser to its institution's IdP; raises TooManyAttempts (recorded) while its address waits."""
    address = start_key(db, source_address)
    with platform_session(db) as session:
        # Before anything else, as for a password sign-in: a waiting caller learns nothing more.
        try:
            throttle.admit_address(session, address)
            throttled = None
        except throttle.TooManyAttempts as refused:
            throttled = refused
        named = signin.institution(session, slug)
    if throttled is not None:
        details = {"attempt": "saml sign-in start"}
        tenant_id = named.id if named is not None else None
        record_now(db, Action.SIGN_IN_THROTTLED, outcome=Outcome.DENIED, details=details, tenant_id=tenant_id)
        raise throttled
    tenant = _active(named, slug)
    sp = saml_protocol.sp_urls(tenant.slug)
    with tenant_session(db, tenant.id) as session:
        config = saml_config.configured(session)
        relay_state = secrets.token_urlsafe(32)  # 43 characters: within SAML's 80-byte RelayState limit
        browser_token = secrets.token_urlsafe(_BROWSER_BYTES)
        try:
            request_id, url = saml_protocol.authn_request(sp, config.idp_metadata, config.idp_entity_id, relay_state)
        except ResponseRefused as refused:
            raise SamlSignInRefused(refused.reason, status=409) from None
        # Expired requests of this tenant go as new ones come: the table holds ~10 minutes of sign-ins.
        session.execute(
            delete(SamlRequest).where(SamlRequest.tenant_id == tenant.id, SamlRequest.expires_at < func.now())
        )
        session.add(
            SamlRequest(
                tenant_id=tenant.id,
                relay_state=relay_state,
                request_id=request_id,
                browser_hash=_hash(browser_token),
                next_path=next_path,
                expires_at=func.now() + REQUEST_LIFETIME,
            )
        )
        record(session, Action.SSO_SIGN_IN_STARTED, details={"method": "saml", "saml_request_id": request_id})
    return SignInStarted(url, browser_token, urlsplit(sp.acs_url).path)


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


# --- the answer -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SamlAnswer:
    """What the browser posted to the ACS; any field may be missing or malformed."""

    saml_response: str | None
    relay_state: str | None
    browser_token: str | None
    source_address: str
    user_agent: str


@dataclass(frozen=True)
class SamlSignedIn:
    tenant_id: UUID
    account_id: UUID
    session_token: str
    second_factor_pending: bool
    next_path: str


def finish_sign_in(db: Database, slug: str, answer: SamlAnswer) -> SamlSignedIn:
    """Verify the IdP's answer and sign its subject in; raises SamlSignInRefused (audited) otherwise."""
    tenant = _institution(db, slug)
    try:
        return _finish(db, tenant, answer)
    except SamlSignInRefused as refused:
        log.warning("saml.sign_in_refused", tenant_id=str(tenant.id), reason=refused.reason.value)
        record_now(
            db,
            Action.SIGN_IN_FAILED,
            ("account", refused.account_id) if refused.account_id else None,
            outcome=Outcome.DENIED,
            details={"method": "saml", "reason": refused.reason.value},
            tenant_id=tenant.id,
        )
        raise


def _finish(db: Database, tenant: Tenant, answer: SamlAnswer) -> SamlSignedIn:
    sp = saml_protocol.sp_urls(tenant.slug)
    with tenant_session(db, tenant.id) as session:
        config = session.get(SamlConfig, tenant.id)
        taken = _take_request(session, answer) if config is not None else None
    # Taken (deleted) and committed before anything is checked: a request is answered once, rightly or not.
    if config is None or taken is None:
        raise SamlSignInRefused(Refusal.NOT_STARTED)
    request_id, next_path, live = taken
    if not live:
        raise SamlSignInRefused(Refusal.REQUEST_EXPIRED)
    if not answer.saml_response:
        raise SamlSignInRefused(Refusal.MALFORMED)
    try:
        verified = saml_protocol.verify_response(
            sp, config.idp_metadata, config.idp_entity_id, answer.saml_response, request_id
        )
    except ResponseRefused as refused:
        raise SamlSignInRefused(refused.reason) from None
    with tenant_session(db, tenant.id) as session:
        fresh = _spend_assertion(session, verified)
    if not fresh:
        raise SamlSignInRefused(Refusal.REPLAYED)
    return _sign_in_settled(db, tenant, config, verified, answer, next_path)


_ATTEMPTS = 3  # one loss per concurrent sign-in of the same person; three in a row is no longer a race


class _LostRace(Exception):
    """Another sign-in of the same person committed first what this one was writing."""


def _sign_in_settled(
    db: Database,
    tenant: Tenant,
    config: SamlConfig,
    verified: saml_protocol.VerifiedAssertion,
    answer: SamlAnswer,
    next_path: str,
) -> SamlSignedIn:
    """`_sign_in` in a transaction of its own, run again when a concurrent sign-in won a race:
    the next run reads what the winner committed (READ COMMITTED) and goes on from there."""
    start = start_key(db, answer.source_address)
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            with tenant_session(db, tenant.id) as session:
                return _sign_in(session, config, verified, answer, next_path, start)
        except (IntegrityError, StaleDataError, _LostRace) as lost:
            if isinstance(lost, IntegrityError) and getattr(lost.orig, "sqlstate", None) != UNIQUE_VIOLATION:
                raise
            log.info("saml.sign_in_race_lost", tenant_id=str(tenant.id), attempt=attempt, error=type(lost).__name__)
    raise SamlSignInRefused(Refusal.CONCURRENT_SIGN_IN, status=409)


def _take_request(session: TenantSession, answer: SamlAnswer) -> tuple[str, str, bool] | None:
    """The request this answer names, if this browser started it: deleted, whatever comes next."""
    if not answer.relay_state or not answer.browser_token or len(answer.relay_state) > 64:
        return None
    row = session.execute(
        delete(SamlRequest)
        .where(
            SamlRequest.tenant_id == session.tenant_id,
            SamlRequest.relay_state == answer.relay_state,
            SamlRequest.browser_hash == _hash(answer.browser_token),
        )
        .returning(SamlRequest.request_id, SamlRequest.next_path, SamlRequest.expires_at > func.now())
    ).first()
    return (row[0], row[1], bool(row[2])) if row is not None else None


def _spend_assertion(session: TenantSession, verified: saml_protocol.VerifiedAssertion) -> bool:
    """Record the assertion as used; False when it was used before (the primary key decides, race-free)."""
    session.execute(
        delete(SamlConsumedAssertion).where(
            SamlConsumedAssertion.tenant_id == session.tenant_id, SamlConsumedAssertion.expires_at < func.now()
        )
    )
    inserted = session.execute(
        insert(SamlConsumedAssertion)
        .values(tenant_id=session.tenant_id, assertion_id=verified.assertion_id, expires_at=verified.expires_at)
        .on_conflict_do_nothing()
        .returning(SamlConsumedAssertion.assertion_id)
    )
    return inserted.first() is not None


def _sign_in(
    session: TenantSession,
    config: SamlConfig,
    verified: saml_protocol.VerifiedAssertion,
    answer: SamlAnswer,
    next_path: str,
    start: bytes,
) -> SamlSignedIn:
    idp = identity_provider(session.tenant_id)
    username = _username(config, verified)
    account = accounts.find_by_username(session, username)
    if account is not None:
        # One sign-in of an account at a time: a concurrent one waits here for the other to commit, then
        # reads the roles it granted or revoked, instead of granting or revoking them a second time.
        session.refresh(account, with_for_update=True)
    created = account is None
    if account is not None and account.status is AccountStatus.DISABLED:
        raise SamlSignInRefused(Refusal.ACCOUNT_DISABLED, account_id=account.id)
    if account is None and not config.create_accounts:
        raise SamlSignInRefused(Refusal.UNKNOWN_ACCOUNT)
    # The IdP is who acts here: the events the services record (account.created, role.granted...)
    # and the notices they queue name it, not an anonymous caller.
    with acting(replace(current(), principal=idp)):
        if account is None:
            try:
                account = _create_account(session, config, verified, username, idp)
            except Conflict:
                # create_account found the account on its own look-up: a sign-in committed it meanwhile.
                raise _LostRace from None
        elif account.status is AccountStatus.INVITED:
            # Invited and not yet set up: the IdP has now vouched for the person, as the mailed link would.
            account.status = AccountStatus.ACTIVE
            session.flush()
            record(session, Action.ACCOUNT_ACTIVATED, ("account", account.id), details={"method": "saml"})
        try:
            granted, revoked = _sync_roles(session, config, account, verified.attributes, idp)
        except SegregationOfDutiesError:
            raise SamlSignInRefused(Refusal.ROLE_CONFLICT, account_id=account.id) from None
        except (Conflict, NotFound):
            # "holds it already" / "does not hold it": a concurrent sign-in granted or revoked it meanwhile.
            raise _LostRace from None
    by_idp = verified.second_factor_asserted
    pending = signin.second_factor_needed(session, account) and not by_idp
    if pending and _roles_requiring_second_factor(session, account) and not signin.enrolled(session, account):
        raise SamlSignInRefused(Refusal.SECOND_FACTOR_ENROLMENT_REQUIRED, status=403, account_id=account.id)
    row, token = sessions.create_session(
        session,
        account.id,
        source_address=answer.source_address,
        user_agent=answer.user_agent,
        second_factor_pending=pending or by_idp,
    )
    if by_idp:
        # The IdP checked a second factor: the session completes its second step as a code would
        # (sessions.second_factor_verified), so it holds the same state and gets a new value.
        token = sessions.second_factor_verified(session, row)
    throttle.release_address(session, start)  # the start this sign-in finished no longer counts
    record(
        session,
        Action.SIGN_IN_SUCCEEDED,
        ("account", account.id),
        details={
            "method": "saml",
            "session_id": row.id,
            "second_factor": "asserted by the identity provider" if by_idp else ("pending" if pending else "none"),
            "account_created": created,
            "roles_granted": granted,
            "roles_revoked": revoked,
        },
        actor=Principal(PrincipalKind.ACCOUNT, account.id, session.tenant_id, frozenset()),
    )
    return SamlSignedIn(session.tenant_id, account.id, token, pending, next_path)


def _username(config: SamlConfig, verified: saml_protocol.VerifiedAssertion) -> str:
    if config.username_attribute == saml_protocol.NAME_ID:
        values = [verified.name_id] if verified.name_id else []
    else:
        values = verified.attributes.get(config.username_attribute, [])
    username = values[0].strip() if len(values) == 1 else ""
    # The rule accounts.create_account applies, checked first so that it is a refusal, not an error.
    if not 2 <= len(username) <= 254 or any(ch.isspace() or not ch.isprintable() for ch in username):
        raise SamlSignInRefused(Refusal.NO_USERNAME)
    return username


def _create_account(
    session: TenantSession, config: SamlConfig, verified: saml_protocol.VerifiedAssertion, username: str, idp
) -> Account:
    """Just-in-time: an active account with no password (it signs in through the IdP only)."""

    def first(attribute: str | None) -> str | None:
        values = verified.attributes.get(attribute, []) if attribute else []
        return values[0][:254] if values and values[0] else None

    kind = AccountKind(config.new_account_kind)
    # create_account queues the security contacts' notice: a new account is an entitlement change.
    account = accounts.create_account(
        session,
        idp,
        kind=kind,
        username=username,
        email=first(config.email_attribute),
        display_name=first(config.display_name_attribute),
    )
    # create_account records account.created (as invited: no password); the IdP vouched for the person.
    account.status = AccountStatus.ACTIVE
    session.flush()
    record(session, Action.ACCOUNT_ACTIVATED, ("account", account.id), details={"method": "saml"}, actor=idp)
    return account


def _sync_roles(
    session: TenantSession, config: SamlConfig, account: Account, attributes: dict[str, list[str]], idp: Principal
) -> tuple[list[str], list[str]]:
    """Grant the mapped roles the assertion earns; revoke those sign-on granted that it no longer earns."""
    earned = {m["role"] for m in config.role_mappings if m["value"] in attributes.get(m["attribute"], [])}
    # Checked again at each sign-in: a custom role may have gained administrative permissions or gone.
    grantable = set()
    for role in earned:
        try:
            saml_config.check_mappable(session, role, "role")
        except (InvalidInput, NotFound):
            log.warning("saml.role_mapping_skipped", tenant_id=str(session.tenant_id), role=role)
            continue
        grantable.add(role)
    held = set(access.held_roles(session, account.id))
    granted_by_idp = set(
        session.scalars(
            select(func.coalesce(AccountRole.builtin_role, Role.name))
            .outerjoin(Role, (Role.tenant_id == AccountRole.tenant_id) & (Role.id == AccountRole.custom_role_id))
            .where(
                AccountRole.tenant_id == session.tenant_id,
                AccountRole.account_id == account.id,
                AccountRole.granted_by == idp.id,
            )
        )
    )
    granted = sorted(grantable - held)
    revoked = sorted(granted_by_idp - grantable)
    for role in granted:
        access.grant_role(session, idp, account.id, role)
    for role in revoked:
        access.revoke_role(session, idp, account.id, role)
    return granted, revoked


def _roles_requiring_second_factor(session: TenantSession, account: Account) -> list[str]:
    return privileged_roles(session, account.id)
