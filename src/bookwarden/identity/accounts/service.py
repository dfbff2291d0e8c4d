"""Accounts: create, set passwords under the role-based policy, disable, enable, delete.

Each account is a data subject with its own key; its username and email are found through
blind indexes. Every change of entitlement queues the security contacts' notice, and every use
case records its audit event in the caller's transaction (ids and field names, never values).

Two periods the personal-data registry publishes are kept here (identity/jobs.py runs them): an account
is deleted after 2 years without activity (`remove_inactive`; an account linked to a patron goes with
the patron instead, privacy/retention), and old password hashes are kept only as far back as the
password policy's history (`trim_password_history`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from uuid import UUID

from sqlalchemy import delete, func, or_, select, update

from bookwarden.access.approvals.models import ApprovalRequest, SensitiveAction, require_approval
from bookwarden.access.power import PowerClass, power_class
from bookwarden.access.roles.models import AccountRole, RolePermission
from bookwarden.access.roles.notices import EntitlementEvent, entitlement_changed
from bookwarden.access.roles.reads import account_permissions
from bookwarden.audit.events import Action
from bookwarden.audit.record import record
from bookwarden.core.authorize import authorize
from bookwarden.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, Permission
from bookwarden.core.principal import SYSTEM, Principal, PrincipalKind
from bookwarden.crypto.fields import decrypt_field, encrypt_field
from bookwarden.crypto.keyring import KeyDestroyed, blind_index
from bookwarden.db.session import TenantSession
from bookwarden.identity import sessions, throttle
from bookwarden.identity.models import (
    Account,
    AccountKind,
    AccountStatus,
    ApiToken,
    PasswordHistory,
    PasswordPolicyRow,
)
from bookwarden.identity.passwords import PasswordPolicy, RoleClass, check_password, hash_password
from bookwarden.tenancy.models import Tenant

TABLE = "accounts"
# The registry's "then 2 years of inactivity before deletion" (privacy/registry.py; privacy/periods.py checks).
KEEP_INACTIVE = timedelta(days=730)


def _index(session: TenantSession, kind: str, value: str) -> bytes:
    return blind_index(session.keyring.index_key(session.tenant_id), f"account-{kind}", value)


def create_account(
    session: TenantSession,
    actor: Principal,
    *,
    kind: AccountKind,
    username: str,
    email: str | None = None,
    display_name: str | None = None,
    password: str | None = None,
    patron_id: uuid.UUID | None = None,
) -> Account:
    """An active account when a password is given, else an invited one (it sets its own later).

    A patron's account names their patron record (`patron_id`): what the portal shows them is that record's.
    """
    authorize(actor, Permission.ACCOUNTS_MANAGE)
    if patron_id is not None and kind is not AccountKind.PATRON:
        raise InvalidInput("patron_id: only a patron's account is linked to a patron record")
    username = username.strip()
    if not 2 <= len(username) <= 254 or any(ch.isspace() for ch in username):
        raise InvalidInput("username must be 2-254 characters without spaces")
    username_index = _index(session, "username", username)
    if session.scalar(
        select(Account.id).where(Account.tenant_id == session.tenant_id, Account.username_index == username_index)
    ):
        raise Conflict("an account with this username exists already")
    account = Account(
        tenant_id=session.tenant_id,
        id=uuid.uuid4(),
        kind=kind,
        username_index=username_index,
        status=AccountStatus.INVITED,
        patron_id=patron_id,  # the patrons foreign key refuses an id of no patron of this institution
    )
    key = session.keyring.create_subject(session.tenant_id, account.id)
    for column, value in (("username", username), ("email", email), ("display_name", display_name)):
        setattr(account, column, encrypt_field(key, session.tenant_id, TABLE, column, account.id, value))
    account.email_index = _index(session, "email", email) if email else None
    session.add(account)
    session.flush()
    if password is not None:
        _set_password(session, account, password)
    fields = [column for column, value in (("email", email), ("display_name", display_name)) if value is not None]
    details = {"kind": kind.value, "status": account.status.value, "fields": ["username", *fields]}
    if patron_id is not None:
        details["patron_id"] = patron_id
    record(session, Action.ACCOUNT_CREATED, ("account", account.id), details=details)
    entitlement_changed(
        session,
        actor,
        EntitlementEvent.ACCOUNT_CREATED,
        f"account {account.id}",
        {"kind": kind.value, "username": username},
    )
    return account


def username_of(session: TenantSession, account: Account) -> str:
    key = session.keyring.subject_key(session.tenant_id, account.id)
    return decrypt_field(key, session.tenant_id, TABLE, "username", account.id, account.username)


def find_by_username(session: TenantSession, username: str) -> Account | None:
    return session.scalar(
        select(Account).where(
            Account.tenant_id == session.tenant_id,
            Account.username_index == _index(session, "username", username.strip()),
        )
    )


def get_account(session: TenantSession, account_id: UUID) -> Account:
    account = session.get(Account, (session.tenant_id, account_id))
    if account is None:
        raise NotFound(f"no account {account_id}")
    return account


def view_account(session: TenantSession, actor: Principal, account_id: UUID) -> Account:
    """An account as an administrator or auditor reads it: recorded."""
    authorize(actor, Permission.ACCOUNTS_READ)
    account = get_account(session, account_id)
    record(session, Action.ACCOUNT_VIEWED, ("account", account.id))
    return account


def list_accounts(
    session: TenantSession, actor: Principal, *, after: UUID | None, limit: int
) -> tuple[list[Account], bool]:
    """A page of the institution's accounts in id order, and whether more follow: recorded with their ids."""
    authorize(actor, Permission.ACCOUNTS_READ)
    query = select(Account).where(Account.tenant_id == session.tenant_id)
    if after is not None:
        query = query.where(Account.id > after)
    found = list(session.scalars(query.order_by(Account.id).limit(limit + 1)))
    page = found[:limit]
    ids = [account.id for account in page]
    record(session, Action.ACCOUNT_LISTED, ("account", None), details={"ids": ids, "count": len(ids)})
    return page, len(found) > limit


# -- passwords -----------------------------------------------------------------------------


def role_class(session: TenantSession, account: Account) -> RoleClass:
    """The password policy's class: from the permissions the account's roles give (access/power.py), never
    their names, so any role carrying administrative permissions holds its holder to the admin floor (a
    patron account too: its kind does not lower that)."""
    power = power_class(account_permissions(session, account.id))
    if power is PowerClass.PLATFORM:
        return RoleClass.OPERATOR
    if power is PowerClass.ADMINISTRATIVE:
        return RoleClass.ADMIN
    return RoleClass.PATRON if account.kind is AccountKind.PATRON else RoleClass.STAFF


def policy_for(session: TenantSession, cls: RoleClass) -> PasswordPolicy:
    row = session.get(PasswordPolicyRow, (session.tenant_id, cls.value))
    if row is None:
        return PasswordPolicy.for_role(cls)
    return PasswordPolicy.for_role(
        cls, min_length=row.min_length, max_length=row.max_length, history=row.history, expiry_days=row.expiry_days
    )


def set_password_policy(
    session: TenantSession, actor: Principal, cls: RoleClass, *, approval: ApprovalRequest | None = None, **settings
) -> PasswordPolicy:
    """Tenant settings within the platform floors (a setting below a floor is refused, naming it).

    Weakening or strengthening a policy is a sensitive action: it takes an approved maker-checker
    request for exactly these settings (access/approvals/service.py).
    """
    authorize(actor, Permission.POLICY_MANAGE)
    policy = PasswordPolicy.for_role(cls, **settings)
    params = {"role_class": cls.value, **settings}
    require_approval(approval, SensitiveAction.CHANGE_PASSWORD_POLICY, params, f"changing the {cls} password policy")
    row = session.get(PasswordPolicyRow, (session.tenant_id, cls.value)) or PasswordPolicyRow(
        tenant_id=session.tenant_id, role_class=cls.value
    )
    row.min_length, row.max_length = policy.min_length, policy.max_length
    row.history, row.expiry_days = policy.history, policy.expiry_days
    row.updated_at = datetime.now(UTC)
    session.add(row)
    session.flush()
    settings = {"min_length": row.min_length, "max_length": row.max_length, "history": row.history}
    details = {**settings, "expiry_days": row.expiry_days, "approval_id": approval.id if approval else None}
    record(session, Action.POLICY_CHANGED, ("password_policy", None), details={"role_class": cls.value, **details})
    notice = {**{k: str(v) for k, v in settings.items()}, "expiry_days": str(row.expiry_days or "never")}
    entitlement_changed(session, actor, EntitlementEvent.PASSWORD_POLICY_CHANGED, f"{cls} password policy", notice)
    return policy


def change_password(session: TenantSession, account: Account, new_password: str) -> None:
    """The holder changes their own password (they proved the old one, or a reset link, before)."""
    _set_password(session, account, new_password)


def reset_password(session: TenantSession, actor: Principal, account_id: UUID, new_password: str) -> None:
    """Someone else sets the password: an entitlement change, so security contacts hear of it."""
    authorize(actor, Permission.ACCOUNTS_MANAGE)
    account = get_account(session, account_id)
    _set_password(session, account, new_password)
    # An administrator's reset is also how an account blocked after 100 failures is let in again,
    # and whoever held the old password keeps no session.
    throttle.clear_account(session, account.id)
    ended = sessions.revoke_all_for_account(session, account.id)
    record(
        session,
        Action.PASSWORD_RESET,
        ("account", account.id),
        details={"by": "administrator", "sessions_ended": ended},
    )
    entitlement_changed(session, actor, EntitlementEvent.PASSWORD_RESET, f"account {account.id}", account_id=account.id)


def _set_password(session: TenantSession, account: Account, new_password: str) -> None:
    policy = policy_for(session, role_class(session, account))
    history = session.scalars(
        select(PasswordHistory.password_hash)
        .where(PasswordHistory.tenant_id == session.tenant_id, PasswordHistory.account_id == account.id)
        .order_by(PasswordHistory.created_at.desc())
        .limit(max(policy.history, 1))
    ).all()
    previous = ([account.password_hash] if account.password_hash else []) + list(history)
    username = username_of(session, account)
    institution = session.get(Tenant, session.tenant_id)
    check_password(
        new_password, policy, context_words=[username, institution.name, institution.slug], previous_hashes=previous
    )
    if account.password_hash:
        session.add(
            PasswordHistory(
                tenant_id=session.tenant_id, id=uuid.uuid4(), account_id=account.id, password_hash=account.password_hash
            )
        )
    account.password_hash = hash_password(new_password)
    account.password_changed_at = datetime.now(UTC)
    if account.status is AccountStatus.INVITED:
        account.status = AccountStatus.ACTIVE
    session.flush()


# -- lifecycle -----------------------------------------------------------------------------


def disable_account(session: TenantSession, actor: Principal, account_id: UUID) -> Account:
    authorize(actor, Permission.ACCOUNTS_MANAGE)
    account = get_account(session, account_id)
    account.status, account.disabled_at = AccountStatus.DISABLED, datetime.now(UTC)
    session.flush()
    # Every credential of the account ends now, in this transaction: its sessions and its API tokens
    # (each request also checks the owner is active, so nothing slips between the two).
    ended = sessions.revoke_all_for_account(session, account.id)
    revoked = revoke_tokens(session, account.id)
    details = {"sessions_ended": ended, "tokens_revoked": revoked}
    record(session, Action.ACCOUNT_DISABLED, ("account", account.id), details=details)
    entitlement_changed(
        session,
        actor,
        EntitlementEvent.ACCOUNT_DISABLED,
        f"account {account.id}",
        {"sessions ended": str(ended), "API tokens revoked": str(revoked)},
    )
    return account


def revoke_tokens(session: TenantSession, account_id: UUID) -> int:
    """Revoke every live API token the account owns; returns how many (identity/tokens/service.py also
    refuses, at each use, a token whose owner is not active). Here, not in tokens: tokens name accounts,
    not the reverse, so the sibling packages import each other one way only."""
    result = session.execute(
        update(ApiToken)
        .where(ApiToken.tenant_id == session.tenant_id, ApiToken.owner_id == account_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=func.now())
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


def enable_account(session: TenantSession, actor: Principal, account_id: UUID) -> Account:
    authorize(actor, Permission.ACCOUNTS_MANAGE)
    account = get_account(session, account_id)
    account.status = AccountStatus.ACTIVE if account.password_hash else AccountStatus.INVITED
    account.disabled_at = None
    session.flush()
    record(session, Action.ACCOUNT_ENABLED, ("account", account.id), details={"status": account.status.value})
    entitlement_changed(session, actor, EntitlementEvent.ACCOUNT_ENABLED, f"account {account.id}")
    return account


def delete_account(session: TenantSession, actor: Principal, account_id: UUID) -> None:
    """Rows go (roles and history cascade) and the account's key is destroyed, reaching backups too."""
    authorize(actor, Permission.ACCOUNTS_MANAGE)
    account = get_account(session, account_id)
    session.delete(account)
    session.flush()
    session.keyring.shred_subject(session.tenant_id, account_id)
    record(session, Action.ACCOUNT_DELETED, ("account", account_id), details={"subject_key_destroyed": True})
    entitlement_changed(session, actor, EntitlementEvent.ACCOUNT_DELETED, f"account {account_id}")


# -- periods -------------------------------------------------------------------------------


def last_activity():
    """When an account last showed a sign of life: its creation, a password set, a sign-in."""
    return func.greatest(Account.created_at, Account.password_changed_at, Account.last_signed_in_at)


def remove_inactive(session: TenantSession, cutoff: datetime, limit: int) -> list[UUID]:
    """Delete at most `limit` accounts inactive since before `cutoff`, as `delete_account` does (rows, roles,
    sessions and history go with them; the key is destroyed); their ids. An account linked to a patron is
    the patron's and goes with them (privacy/retention: the patron's activity includes its sign-ins)."""
    ids = list(
        session.scalars(
            select(Account.id)
            .where(Account.tenant_id == session.tenant_id, Account.patron_id.is_(None), last_activity() < cutoff)
            .order_by(Account.id)
            .limit(limit)
        )
    )
    if not ids:
        return []
    for account_id in ids:
        # Told before the row goes: the notice classifies the account by the roles it still holds.
        entitlement_changed(
            session,
            SYSTEM,
            EntitlementEvent.ACCOUNT_DELETED,
            f"account {account_id}",
            {"why": f"no sign-in for {KEEP_INACTIVE.days} days: removed under the retention period"},
            account_id=account_id,
        )
    accounts = Account.__table__
    session.execute(delete(accounts).where(accounts.c.tenant_id == session.tenant_id, accounts.c.id.in_(ids)))
    for account_id in ids:
        session.keyring.shred_subject(session.tenant_id, account_id)
        details = {"subject_key_destroyed": True, "inactive_days": KEEP_INACTIVE.days}
        record(session, Action.ACCOUNT_DELETED, ("account", account_id), actor=SYSTEM, details=details)
    return ids


def trim_password_history(session: TenantSession, cutoff: datetime | None, limit: int) -> list[UUID]:
    """Delete at most `limit` stored password hashes older than the account's policy needs; their ids.

    A policy's history counts the current password first (identity/passwords.py), so an account keeps its
    newest `history - 1` old hashes. `cutoff` is unused: this period is a depth, not a time."""
    per_account = session.execute(
        select(PasswordHistory.account_id, func.count())
        .where(PasswordHistory.tenant_id == session.tenant_id)
        .group_by(PasswordHistory.account_id)
        .order_by(PasswordHistory.account_id)
    ).all()
    history = PasswordHistory.__table__
    removed: list[UUID] = []
    for account_id, stored in per_account:
        if len(removed) >= limit:
            break
        account = session.get(Account, (session.tenant_id, account_id))
        keep = max(policy_for(session, role_class(session, account)).history - 1, 0)
        if stored <= keep:
            continue
        older = (
            select(history.c.id)
            .where(history.c.tenant_id == session.tenant_id, history.c.account_id == account_id)
            .order_by(history.c.created_at.desc(), history.c.id.desc())
            .offset(keep)
            .limit(limit - len(removed))
        )
        removed += session.scalars(
            delete(history)
            .where(history.c.tenant_id == session.tenant_id, history.c.id.in_(older.scalar_subquery()))
            .returning(history.c.id)
        )
    return removed


def own_patron_id(session: TenantSession, actor: Principal) -> UUID:
    """The patron record of the signed-in patron account acting; refused for anyone else (the portal's
    'my data': preferences, consents, posts...)."""
    authorize(actor, Permission.SELF_SERVICE)
    account = session.get(Account, (session.tenant_id, actor.id)) if actor.kind is PrincipalKind.ACCOUNT else None
    if account is None or account.kind is not AccountKind.PATRON or account.patron_id is None:
        raise Forbidden("only a patron signed in to an account linked to their patron record can do this")
    return account.patron_id


def holders_to_mail(session: TenantSession, permission: Permission) -> list[tuple[UUID, str]]:
    """(account id, address) of every active account with an address that holds `permission` through any
    role, built-in or custom: who is mailed the work the permission handles (complaints, concerns). Decided
    by the permission, never by a role's name."""
    builtin = [role.value for role, held in BUILTIN_PERMISSIONS.items() if permission in held]
    custom = select(RolePermission.role_id).where(
        RolePermission.tenant_id == session.tenant_id, RolePermission.permission == permission.value
    )
    accounts = session.scalars(
        select(Account)
        .join(AccountRole, (AccountRole.tenant_id == Account.tenant_id) & (AccountRole.account_id == Account.id))
        .where(
            Account.tenant_id == session.tenant_id,
            Account.status == AccountStatus.ACTIVE,
            Account.email.is_not(None),
            or_(AccountRole.builtin_role.in_(builtin), AccountRole.custom_role_id.in_(custom)),
        )
        .distinct()
        .order_by(Account.id)
    ).all()
    return [(account.id, address) for account in accounts if (address := account_address(session, account))]


def account_address(session: TenantSession, account: Account) -> str | None:
    """The account's address, decrypted; None when it has none or its key was destroyed."""
    if account.email is None:
        return None
    try:
        key = session.keyring.subject_key(session.tenant_id, account.id)
    except KeyDestroyed:
        return None
    return decrypt_field(key, session.tenant_id, "accounts", "email", account.id, account.email)
