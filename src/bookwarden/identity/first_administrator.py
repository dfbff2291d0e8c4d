"""An institution's first administrator, named when the platform creates the institution.

`bookwarden tenant create SLUG NAME --admin-email ADDRESS` creates the institution and then, here, an
invited account for that address holding tenant_admin, and mails it the invitation link (identity/links.py,
one-time, 72 hours): whoever opens it sets the account's password. Nothing secret is shown to the operator,
who never holds a credential of the institution's, and no token is minted.

An administrator's role requires a second factor, so once the invitation is accepted the holder cannot sign
in before enrolling one, and nobody in the institution can send them the enrolment link yet: the operator
has it mailed (`bookwarden tenant admin-enrolment SLUG`, `send_enrolment_link`), the same link an
administrator sends after a reset (identity/enrolment/links.py): the holder's password and an app's code.

Exceptions, each only while the first administrator is the institution's only account: the operator acts inside the
institution without a grant (there is no data and nobody to approve one), and tenant_admin is granted
without a second person's approval (there is nobody yet to ask). Both are recorded in the institution's
trail, naming the operator, and the grant's event says it was the first administrator.
"""

from __future__ import annotations

import uuid
from dataclasses import replace

from sqlalchemy import func, select

from bookwarden.access.roles.models import AccountRole
from bookwarden.access.roles.notices import EntitlementEvent, entitlement_changed
from bookwarden.audit.events import Action
from bookwarden.audit.record import record
from bookwarden.core.authorize import authorize
from bookwarden.core.errors import Conflict, InvalidInput
from bookwarden.core.permissions import BuiltinRole, Permission
from bookwarden.core.principal import Principal
from bookwarden.crypto.master import MasterKeys
from bookwarden.db.session import TenantSession
from bookwarden.identity import links
from bookwarden.identity.accounts import service as accounts
from bookwarden.identity.enrolment import links as enrolment_links
from bookwarden.identity.links import IssuedLink, LinkPurpose
from bookwarden.identity.models import Account, AccountKind
from bookwarden.tenancy.models import Tenant


def checked_address(email: str) -> str:
    """The first administrator's address, or InvalidInput: checked before the institution is created, so a
    mistyped one leaves nothing behind (an institution without its administrator)."""
    address = email.strip()
    if "@" not in address.strip("@") or any(ch.isspace() for ch in address):
        raise InvalidInput(f"--admin-email: {email!r} is not an email address; nothing was created")
    return address


def invite(session: TenantSession, master: MasterKeys, operator: Principal, email: str) -> IssuedLink:
    """Create the institution's first administrator (invited) and mail its invitation; refused once any account
    exists."""
    authorize(operator, Permission.PLATFORM_TENANTS_MANAGE)
    address = checked_address(email)
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


def send_enrolment_link(session: TenantSession, master: MasterKeys, operator: Principal) -> enrolment_links.LinkSent:
    """Mail the first administrator, who accepted the invitation, the link enrolling their second factor; refused
    once the institution has any other account (its administrators send such links then)."""
    authorize(operator, Permission.PLATFORM_TENANTS_MANAGE)
    found = list(session.scalars(select(Account).where(Account.tenant_id == session.tenant_id).limit(2)))
    first = found[0] if len(found) == 1 else None
    granted = first is not None and session.scalar(
        select(AccountRole.id).where(
            AccountRole.tenant_id == session.tenant_id,
            AccountRole.account_id == first.id,
            AccountRole.builtin_role == BuiltinRole.TENANT_ADMIN.value,
            AccountRole.granted_by == operator.id,
        )
    )
    if not granted:
        raise Conflict(
            "only the first administrator, invited by you at tenant create and still the institution's only account, "
            "is sent this link by an operator: afterwards the institution's administrators send it"
        )
    setup = replace(operator, tenant_id=session.tenant_id, permissions=frozenset({Permission.ACCOUNTS_MANAGE}))
    return enrolment_links.send_link(session, master, setup, first.id)
