"""An institution's first administrator, named when the platform creates the institution.

`bookwarden tenant create SLUG NAME --admin-email ADDRESS` creates the institution and then, here, an
invited account for that address holding tenant_admin, and mails it the invitation link (identity/links.py,
one-time, 72 hours): whoever opens it sets the account's password. Nothing secret is shown to the operator,
who never holds a credential of the institution's, and no token is minted.

Two exceptions, each only while the institution has no account at all: the operator acts inside the
institution without a grant (there is no data and nobody to approve one), and tenant_admin is granted
without a second person's approval (there is nobody yet to ask). Both are recorded in the institution's
trail, naming the operator, and the grant's event says it was the first administrator.
"""

from __future__ import annotations

import uuid
from dataclasses import replace

from sqlalchemy import func, select

from bookwarden.access.authorize import authorize
from bookwarden.access.permissions import BuiltinRole, Permission
from bookwarden.access.principal import Principal
from bookwarden.access.roles.models import AccountRole
from bookwarden.access.roles.notices import EntitlementEvent, entitlement_changed
from bookwarden.audit.events import Action
from bookwarden.audit.record import record
from bookwarden.core.errors import Conflict, InvalidInput
from bookwarden.crypto.master import MasterKeys
from bookwarden.db.session import TenantSession
from bookwarden.identity import links
from bookwarden.identity.accounts import service as accounts
from bookwarden.identity.links import IssuedLink, LinkPurpose
from bookwarden.identity.models import Account, AccountKind
from bookwarden.tenancy.models import Tenant


def invite(session: TenantSession, master: MasterKeys, operator: Principal, email: str) -> IssuedLink:
    """Create the institution's first administrator (invited) and mail its invitation; refused once any account
    exists."""
    authorize(operator, Permission.PLATFORM_TENANTS_MANAGE)
    address = email.strip()
    if "@" not in address.strip("@") or any(ch.isspace() for ch in address):
        raise InvalidInput(f"--admin-email: {email!r} is not an email address; nothing was created")
    if session.scalar(select(func.count()).select_from(Account).where(Account.tenant_id == session.tenant_id)):
        raise Conflict(
            "the institution has accounts already: its administrators invite the others (POST /api/v1/accounts)"
        )
    # The platform setting the institution up, for these two acts only: recorded as the operator.
    setup = replace(operator, tenant_id=session.tenant_id, permissions=frozenset({Permission.ACCOUNTS_MANAGE}))
    account = accounts.create_account(session, setup, kind=AccountKind.STAFF, username=address, email=address)
    session.add(
        AccountRole(
            tenant_id=session.tenant_id,
            id=uuid.uuid4(),
            account_id=account.id,
            granted_by=operator.id,
            builtin_role=BuiltinRole.TENANT_ADMIN.value,
        )
    )
    session.flush()
    details = {"role": BuiltinRole.TENANT_ADMIN.value, "approval_id": None, "first_administrator": True}
    record(session, Action.ROLE_GRANTED, ("account", account.id), details=details, actor=setup)
    entitlement_changed(
        session, setup, EntitlementEvent.ROLE_GRANTED, f"account {account.id}", {"role": BuiltinRole.TENANT_ADMIN}
    )
    institution = session.get(Tenant, session.tenant_id).name
    link = links.mail_link(session, master, account, LinkPurpose.INVITE, f"Bookwarden, which hosts {institution}")
    details = {"link_expires_at": link.expires_at.isoformat(), "first_administrator": True}
    record(session, Action.ACCOUNT_INVITED, ("account", account.id), details=details, actor=setup)
    return link
