"""API tokens: random, shown once, stored as SHA-256, owned by a person, bounded by their power class.

A token carries 256 bits from the OS's CSPRNG, so a fast hash is enough: nothing about it
can be guessed, and the stored hash is useless to whoever reads the table.

Who a token belongs to.
- A *personal* token has an owner: an account of its institution (API token) or an operator account
  (operator token). It is minted by that person, signed in: an account through its sign-in session
  (POST /api/v1/auth/me/tokens; an account holding administrative permissions has necessarily passed
  its second factor to have one), an operator through an operator session, which exists only after
  the second factor (POST /api/v1/operator/auth/me/tokens). A token never mints a token. It carries at
  most what its owner holds when it is minted, and at every use it is cut down to what the owner holds
  *now* and refused once the owner is no longer active: it acts for the owner, never for more.
  Maker-checker and every "not yourself" rule compare the owner (core/principal.py `person`).
- A *service* token has no owner. The platform console mints the platform's (`bookwarden token create`:
  platform permissions the operator running it holds, console.py), for the platform's provisioning or
  monitoring; it mints no institution's (their machines use a token a person of theirs minted, acting
  for them). The demo makes its institutions' through `issue_api_token`. A service token belongs to
  no person, so maker-checker treats it as a party of its own (it cannot approve its own request). An
  institution sees its service tokens made before (owner null) in GET /api/v1/tokens and can revoke them.

How long. A token's power class is that of the permissions it carries (access/power.py), and each
class has a maximum lifetime, enforced when minting and again at every use (so a token minted before
a maximum was lowered stops at the new one): ordinary 366 days, administrative 30 days, platform
(operator tokens) 7 days. No token ever carries platform.grants.break_glass: break-glass is for an
operator signed in with a second factor (access/grants/service.py).

Last use is kept to the minute: written when the stored time is over a minute old, so a busy token
costs one write a minute, not one per request.

Disabling an account or an operator account revokes its tokens with its sessions, in the same
transaction (identity/accounts/service.py `revoke_tokens`, identity/operators/service.py `end_tokens`:
there, because this module names accounts and operators, not the reverse); deleting an account deletes
its tokens (the foreign key cascades).
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from uuid import UUID

from sqlalchemy import func, or_, select, text, update
from sqlalchemy.orm import Session

from bookwarden.access.power import PowerClass, power_class
from bookwarden.access.roles import notices
from bookwarden.access.roles.reads import account_permissions
from bookwarden.audit.events import Action
from bookwarden.audit.record import current, record
from bookwarden.core.authorize import authorize
from bookwarden.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from bookwarden.core.permissions import (
    BUILTIN_PERMISSIONS,
    PLATFORM_PERMISSIONS,
    TENANT_PERMISSIONS,
    BuiltinRole,
    Permission,
)
from bookwarden.core.principal import SYSTEM, Principal, PrincipalKind, permissions_from
from bookwarden.core.text import is_line
from bookwarden.db.session import Database, TenantSession, platform_session, tenant_session
from bookwarden.identity.models import Account, AccountStatus, ApiToken, OperatorToken
from bookwarden.identity.operators.models import OperatorAccount, OperatorStatus

TENANT_PREFIX = "bwt_"
OPERATOR_PREFIX = "bwo_"
MIN_LIFETIME = timedelta(minutes=1)
# The longest a token of each class may live, from its minting: what a leaked token is worth.
MAX_LIFETIME: dict[PowerClass, timedelta] = {
    PowerClass.ORDINARY: timedelta(days=366),
    PowerClass.ADMINISTRATIVE: timedelta(days=30),
    PowerClass.PLATFORM: timedelta(days=7),
}
DEFAULT_LIFETIME = timedelta(days=90)  # when none is asked, capped by the class's maximum
TOUCH_EVERY = timedelta(minutes=1)
NAME_LENGTH = 100
# Held only by a person signed in with a second factor, never by a token.
NEVER_IN_A_TOKEN = frozenset({Permission.PLATFORM_GRANTS_BREAK_GLASS})
OPERATOR_TOKEN_PERMISSIONS = PLATFORM_PERMISSIONS - NEVER_IN_A_TOKEN


class TokenStatus(enum.StrEnum):
    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def max_lifetime(permissions: Iterable[Permission]) -> timedelta:
    return MAX_LIFETIME[power_class(permissions)]


def default_lifetime(permissions: Iterable[Permission]) -> timedelta:
    return min(DEFAULT_LIFETIME, max_lifetime(permissions))


def status_of(row: ApiToken | OperatorToken, now: datetime | None = None) -> TokenStatus:
    now = now or datetime.now(UTC)
    if row.revoked_at is not None:
        return TokenStatus.REVOKED
    if row.expires_at <= now or row.created_at + max_lifetime(permissions_from(row.scopes)) <= now:
        return TokenStatus.EXPIRED
    return TokenStatus.ACTIVE


def _check(name: str, permissions: list[Permission], allowed: frozenset[Permission], ttl: timedelta) -> None:
    if not is_line(name, NAME_LENGTH) or not name.strip():
        raise InvalidInput(f"name: say what the token is for, on one line of at most {NAME_LENGTH} characters")
    if not permissions:
        raise InvalidInput("a token needs at least one permission")
    never = set(permissions) & NEVER_IN_A_TOKEN
    if never:
        raise InvalidInput(
            f"{', '.join(sorted(never))} is never held by a token: break glass from an operator session signed in "
            "with a second factor"
        )
    extra = set(permissions) - allowed
    if extra:
        raise InvalidInput(f"permissions not allowed here: {', '.join(sorted(extra))}")
    cls = power_class(permissions)
    longest = MAX_LIFETIME[cls]
    if not MIN_LIFETIME <= ttl <= longest:
        raise InvalidInput(
            f"a token with {cls} permissions lives between one minute and {longest.days} days "
            f"(ordinary {MAX_LIFETIME[PowerClass.ORDINARY].days}, administrative "
            f"{MAX_LIFETIME[PowerClass.ADMINISTRATIVE].days}, platform {MAX_LIFETIME[PowerClass.PLATFORM].days}); "
            "nothing was created"
        )


def _beyond(permissions: Iterable[Permission], held: frozenset[Permission], whose: str) -> None:
    missing = set(permissions) - held
    if missing:
        raise InvalidInput(
            f"{whose} does not hold {', '.join(sorted(missing))}: a token carries at most what its owner may do; "
            "nothing was created"
        )


# -- minting -------------------------------------------------------------------------------------


def issue_api_token(
    session: TenantSession,
    name: str,
    permissions: list[Permission],
    ttl: timedelta,
    *,
    owner_id: UUID | None = None,
) -> tuple[ApiToken, str]:
    """A tenant token; returns the row and the token, which is never retrievable again.

    With `owner_id`, a personal token of that active account, within what it holds; without, a service
    token (the console's). Callers over HTTP go through `mint_own_api_token`.
    """
    _check(name, permissions, TENANT_PERMISSIONS, ttl)
    if owner_id is not None:
        owner = session.get(Account, (session.tenant_id, owner_id))
        if owner is None or owner.status is not AccountStatus.ACTIVE:
            raise InvalidInput(f"owner: no active account {owner_id} in this institution; nothing was created")
        _beyond(permissions, account_permissions(session, owner.id), f"account {owner.id}")
    secret = TENANT_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        tenant_id=session.tenant_id,
        name=name.strip(),
        token_hash=token_hash(secret),
        scopes=sorted(permissions),
        owner_id=owner_id,
        expires_at=datetime.now(UTC) + ttl,
    )
    session.add(row)
    session.flush()
    record(session, Action.TOKEN_ISSUED, ("api_token", row.id), details=_described(row))
    # A new machine credential is an entitlement: the security contacts hear of it (never its secret),
    # always when it carries administrative permissions (access/roles/notices.py).
    notices.entitlement_changed(
        session,
        current().principal or SYSTEM,
        notices.EntitlementEvent.API_TOKEN_CREATED,
        f"API token {row.name!r}",
        {**_noticed(row), "expires_at": row.expires_at.isoformat(timespec="seconds")},
        permissions=permissions,
    )
    return row, secret


def mint_own_api_token(
    session: TenantSession, actor: Principal, name: str, permissions: list[Permission], ttl: timedelta
) -> tuple[ApiToken, str]:
    """A signed-in account mints a token for itself, within what it holds now and its class's lifetime."""
    if actor.kind is not PrincipalKind.ACCOUNT or actor.tenant_id != session.tenant_id:
        raise Forbidden(
            "a token is minted by the account it belongs to, signed in (POST /api/v1/auth/login); a token cannot "
            "mint a token"
        )
    _beyond(permissions, actor.permissions, "your account")
    return issue_api_token(session, name, permissions, ttl, owner_id=actor.id)


def issue_operator_token(
    session: Session,
    name: str,
    permissions: list[Permission],
    ttl: timedelta,
    *,
    owner_id: UUID | None = None,
) -> tuple[OperatorToken, str]:
    """An operator token: a service token (the console's), or, with `owner_id`, an operator's own, minted
    only through `mint_own_operator_token` (an operator session, second factor passed)."""
    _check(name, permissions, PLATFORM_PERMISSIONS, ttl)
    if owner_id is not None:
        owner = session.get(OperatorAccount, owner_id)
        if owner is None or owner.status != OperatorStatus.ACTIVE:
            raise InvalidInput(f"owner: no active operator account {owner_id}; nothing was created")
        _beyond(permissions, BUILTIN_PERMISSIONS[BuiltinRole(owner.role)], f"operator {owner.username}")
    secret = OPERATOR_PREFIX + secrets.token_urlsafe(32)
    row = OperatorToken(
        name=name.strip(),
        token_hash=token_hash(secret),
        scopes=sorted(permissions),
        owner_id=owner_id,
        expires_at=datetime.now(UTC) + ttl,
    )
    session.add(row)
    session.flush()
    record(session, Action.TOKEN_ISSUED, ("operator_token", row.id), details=_described(row))
    return row, secret


def mint_own_operator_token(
    session: Session, actor: Principal, name: str, permissions: list[Permission], ttl: timedelta
) -> tuple[OperatorToken, str]:
    """An operator signed in with password and second factor mints a token for themselves.

    Only an operator session will do (PrincipalKind.OPERATOR, which exists only after the second factor):
    not an operator token (a token never mints a token), not an operator inside an institution's grant.
    """
    if actor.kind is not PrincipalKind.OPERATOR or actor.tenant_id is not None or actor.grant_id is not None:
        raise Forbidden(
            "an operator token is minted by its operator, signed in with password and second factor "
            "(POST /api/v1/operator/auth/login, then .../mfa); a token cannot mint a token"
        )
    _beyond(permissions, actor.permissions, "your operator role")
    return issue_operator_token(session, name, permissions, ttl, owner_id=actor.id)


def _described(row: ApiToken | OperatorToken) -> dict:
    # What the token may do, whose it is and until when; never the token, nor its hash.
    return {
        "name": row.name,
        "permissions": list(row.scopes),
        "power_class": power_class(permissions_from(row.scopes)).value,
        "owner_id": row.owner_id,
        "expires_at": row.expires_at.isoformat(),
    }


def _noticed(row: ApiToken) -> dict[str, str]:
    return {
        "permissions": ", ".join(row.scopes),
        "owner": f"account {row.owner_id}" if row.owner_id else "none: a service token, minted at the platform console",
    }


# -- listing -------------------------------------------------------------------------------------


def list_api_tokens(session: TenantSession, actor: Principal) -> list[ApiToken]:
    """Every token of the institution, as whoever manages them reads them: its staff holding tokens.manage,
    or an operator who issues tokens (names, owners and dates, never a secret: no grant needed)."""
    authorize(actor, Permission.TOKENS_MANAGE if actor.tenant_id is not None else Permission.PLATFORM_TOKENS_ISSUE)
    return _api_tokens(session)


def _api_tokens(session: TenantSession, *, owner_id: UUID | None = None) -> list[ApiToken]:
    """The institution's tokens (or one owner's), newest first, ended ones too: recorded with their ids."""
    query = select(ApiToken).where(ApiToken.tenant_id == session.tenant_id)
    if owner_id is not None:
        query = query.where(ApiToken.owner_id == owner_id)
    found = list(session.scalars(query.order_by(ApiToken.created_at.desc(), ApiToken.id).limit(500)))
    _listed(session, "api_token", found, owner_id)
    return found


def list_own_api_tokens(session: TenantSession, actor: Principal) -> list[ApiToken]:
    return _api_tokens(session, owner_id=_own_person(actor, session.tenant_id))


def list_operator_tokens(session: Session, *, owner_id: UUID | None = None) -> list[OperatorToken]:
    query = select(OperatorToken)
    if owner_id is not None:
        query = query.where(OperatorToken.owner_id == owner_id)
    found = list(session.scalars(query.order_by(OperatorToken.created_at.desc(), OperatorToken.id).limit(500)))
    _listed(session, "operator_token", found, owner_id)
    return found


def list_own_operator_tokens(session: Session, actor: Principal) -> list[OperatorToken]:
    return list_operator_tokens(session, owner_id=_own_person(actor, None))


def _listed(session: Session, kind: str, found: list, owner_id: UUID | None) -> None:
    ids = [row.id for row in found]
    details = {"ids": ids, "count": len(ids), "owner_id": owner_id}
    record(session, Action.TOKEN_LISTED, (kind, None), details=details)


def _own_person(actor: Principal, tenant_id: UUID | None) -> UUID:
    """The person whose own tokens `actor` may list and revoke: its account, or its token's owner."""
    wanted = (PrincipalKind.ACCOUNT, PrincipalKind.API_TOKEN) if tenant_id else (
        PrincipalKind.OPERATOR, PrincipalKind.OPERATOR_TOKEN)  # fmt: skip
    if actor.kind not in wanted or actor.tenant_id != tenant_id or actor.grant_id is not None:
        raise Forbidden(
            "these are a person's own tokens: an institution's account (or its token) reaches its own at "
            "/api/v1/auth/me/tokens, an operator (or their token) at /api/v1/operator/auth/me/tokens"
        )
    if actor.person is None:
        raise Forbidden(
            "a service token belongs to nobody, so it has no tokens of its own: a holder of tokens.manage lists "
            "and revokes the institution's tokens (the platform console, operator service tokens)"
        )
    return actor.person


# -- revoking ------------------------------------------------------------------------------------


def revoke_api_token(session: TenantSession, token_id: UUID) -> bool:
    """The console's revocation (or any caller's that authorized already); False when there was nothing to end."""
    row = session.get(ApiToken, (session.tenant_id, token_id), with_for_update=True)
    if row is None or row.revoked_at is not None:
        return False
    _revoke_api_token(session, current().principal or SYSTEM, row, "platform console")
    return True


def revoke_tenant_token(session: TenantSession, actor: Principal, token_id: UUID) -> ApiToken:
    """A holder of tokens.manage ends any token of the institution."""
    authorize(actor, Permission.TOKENS_MANAGE)
    row = _live_api_token(session, token_id, owner_id=None)
    _revoke_api_token(session, actor, row, "tokens.manage")
    return row


def revoke_own_api_token(session: TenantSession, actor: Principal, token_id: UUID) -> ApiToken:
    """A person ends one of their own tokens (a token may end itself or its owner's other tokens)."""
    row = _live_api_token(session, token_id, owner_id=_own_person(actor, session.tenant_id))
    _revoke_api_token(session, actor, row, "owner")
    return row


def _live_api_token(session: TenantSession, token_id: UUID, *, owner_id: UUID | None) -> ApiToken:
    row = session.get(ApiToken, (session.tenant_id, token_id), with_for_update=True)
    if row is None or (owner_id is not None and row.owner_id != owner_id):
        # Another person's token is "not found": its existence is not theirs to learn.
        raise NotFound(f"no API token {token_id}" + (" of yours" if owner_id is not None else ""))
    if row.revoked_at is not None:
        raise Conflict(f"API token {token_id} is revoked already")
    return row


def _revoke_api_token(session: TenantSession, actor: Principal, row: ApiToken, by: str) -> None:
    row.revoked_at = datetime.now(UTC)
    session.flush()
    details = {"name": row.name, "owner_id": row.owner_id, "permissions": list(row.scopes), "by": by}
    record(session, Action.TOKEN_REVOKED, ("api_token", row.id), details=details)
    notices.entitlement_changed(
        session,
        actor,
        notices.EntitlementEvent.API_TOKEN_REVOKED,
        f"API token {row.name!r}",
        {**_noticed(row), "revoked by": by},
        permissions=permissions_from(row.scopes),
    )


def revoke_operator_token(session: Session, token_id: UUID) -> bool:
    """The console's revocation of any operator token; False when there was nothing to end."""
    row = session.get(OperatorToken, token_id, with_for_update=True)
    if row is None or row.revoked_at is not None:
        return False
    _revoke_operator_token(session, row, "platform console")
    return True


def revoke_own_operator_token(session: Session, actor: Principal, token_id: UUID) -> OperatorToken:
    person = _own_person(actor, None)
    row = session.get(OperatorToken, token_id, with_for_update=True)
    if row is None or row.owner_id != person:
        raise NotFound(f"no operator token {token_id} of yours")
    if row.revoked_at is not None:
        raise Conflict(f"operator token {token_id} is revoked already")
    _revoke_operator_token(session, row, "owner")
    return row


def _revoke_operator_token(session: Session, row: OperatorToken, by: str) -> None:
    row.revoked_at = datetime.now(UTC)
    session.flush()
    details = {"name": row.name, "owner_id": row.owner_id, "permissions": list(row.scopes), "by": by}
    record(session, Action.TOKEN_REVOKED, ("operator_token", row.id), details=details)


# -- each request --------------------------------------------------------------------------------


def authenticate(db: Database, presented: str) -> Principal | None:
    """Token -> principal, or None. The tenant comes from our own row, never from the token text.

    One answer (None) for unknown, expired (by date or by its class's lifetime), revoked, and a token
    whose owner is no longer active; a personal token is cut down to what its owner holds now.
    """
    if presented.startswith(OPERATOR_PREFIX):
        return _operator_token(db, presented)
    if not presented.startswith(TENANT_PREFIX):
        return None
    with platform_session(db) as session:
        found = session.execute(
            text(
                "SELECT tenant_id, token_id, scopes, owner_id, created_at, last_used_at "
                "FROM bookwarden_resolve_api_token(:h)"
            ),
            {"h": token_hash(presented)},
        ).first()
    if found is None:
        return None
    permissions = permissions_from(found.scopes)
    if not _within_class_lifetime(permissions, found.created_at):
        return None
    if found.owner_id is None and not _stale(found.last_used_at):
        # A service token used within the minute: the one round trip above is all it costs.
        return Principal(PrincipalKind.API_TOKEN, found.token_id, found.tenant_id, permissions)
    with tenant_session(db, found.tenant_id) as session:
        if found.owner_id is not None:
            owner = session.get(Account, (found.tenant_id, found.owner_id))
            if owner is None or owner.status is not AccountStatus.ACTIVE:
                return None
            permissions = permissions & account_permissions(session, owner.id)
        if _stale(found.last_used_at):
            _touch(session, ApiToken, ApiToken.tenant_id == found.tenant_id, ApiToken.id == found.token_id)
    return Principal(PrincipalKind.API_TOKEN, found.token_id, found.tenant_id, permissions, owner_id=found.owner_id)


def _operator_token(db: Database, presented: str) -> Principal | None:
    with platform_session(db) as session:
        found = session.execute(
            select(OperatorToken, OperatorAccount)
            .outerjoin(OperatorAccount, OperatorAccount.id == OperatorToken.owner_id)
            .where(
                OperatorToken.token_hash == token_hash(presented),
                OperatorToken.revoked_at.is_(None),
                OperatorToken.expires_at > func.now(),
            )
        ).first()
        if found is None:
            return None
        row, owner = found
        scopes = permissions_from(row.scopes)
        if not _within_class_lifetime(scopes, row.created_at):
            return None
        # Minted before tokens were kept from it, or written by hand: break-glass stays with people.
        permissions = scopes - NEVER_IN_A_TOKEN
        if row.owner_id is not None:
            if owner is None or owner.status != OperatorStatus.ACTIVE:
                return None
            permissions = permissions & BUILTIN_PERMISSIONS[BuiltinRole(owner.role)]
        if _stale(row.last_used_at):
            _touch(session, OperatorToken, OperatorToken.id == row.id)
        return Principal(PrincipalKind.OPERATOR_TOKEN, row.id, None, permissions, owner_id=row.owner_id)


def _within_class_lifetime(permissions: frozenset[Permission], created_at: datetime) -> bool:
    return created_at + max_lifetime(permissions) > datetime.now(UTC)


def _stale(last_used_at: datetime | None) -> bool:
    return last_used_at is None or last_used_at < datetime.now(UTC) - TOUCH_EVERY


def _touch(session: Session, model: type[ApiToken] | type[OperatorToken], *where) -> None:
    # Conditional on the database's clock too: two instances racing within the minute write once.
    session.execute(
        update(model)
        .where(*where, or_(model.last_used_at.is_(None), model.last_used_at < func.now() - TOUCH_EVERY))
        .values(last_used_at=func.now())
        .execution_options(synchronize_session=False)
    )


# -- people behind recorded credentials -------------------------------------------------------------


def recorded_as(session: TenantSession, principal: Principal, recorded_id: UUID | None) -> bool:
    """True when `recorded_id` (a credential recorded as having acted: an account, or an API token) is
    `principal` itself or the same person: the account, or a token that account owns.

    For rules kept above the approvals service that remember only the credential (privacy requests'
    `registered_by`): a token's owner is looked up here.
    """
    if recorded_id is None:
        return False
    if principal.same_party(recorded_id):
        return True
    if principal.person is None:
        return False
    token = session.get(ApiToken, (session.tenant_id, recorded_id))
    return token is not None and token.owner_id == principal.person
