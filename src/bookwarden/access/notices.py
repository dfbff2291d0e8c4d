"""Entitlement-change notices: every change of who may do what is mailed to the tenant's
designated security contacts, so a rogue account or a quiet privilege grant is seen at once.

Queued in the same transaction as the change (through the outbox), delivered by the worker
within a minute. Security notices cannot be muted.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime

import structlog
from sqlalchemy import select

from bookwarden.access.models import SecurityContact
from bookwarden.audit.events import Action
from bookwarden.audit.record import record
from bookwarden.crypto.fields import decrypt_field, encrypt_field
from bookwarden.db.session import TenantSession
from bookwarden.identity.principal import Principal
from bookwarden.notify.models import MailCategory
from bookwarden.notify.service import queue_mail
from bookwarden.tenancy.models import Tenant

log = structlog.get_logger()


class EntitlementEvent(enum.StrEnum):
    ACCOUNT_CREATED = "account created"
    ACCOUNT_DISABLED = "account disabled"
    ACCOUNT_ENABLED = "account enabled"
    ACCOUNT_DELETED = "account deleted"
    ROLE_GRANTED = "role granted"
    ROLE_REVOKED = "role revoked"
    ROLE_PERMISSIONS_CHANGED = "permission set of a role changed"
    PASSWORD_RESET = "password reset"  # noqa: S105 - an event name
    MFA_RESET = "second factor reset"
    API_TOKEN_CREATED = "API token created"  # noqa: S105 - an event name
    SECURITY_CONTACTS_CHANGED = "security contacts changed"
    SSO_CONFIGURED = "institutional sign-on configured"
    SSO_REMOVED = "institutional sign-on removed"
    OPERATOR_GRANT_REQUESTED = "operator access requested"
    OPERATOR_GRANT_APPROVED = "operator access approved"
    OPERATOR_GRANT_USED = "operator access used"
    OPERATOR_GRANT_EXPIRED = "operator access expired"


def entitlement_changed(
    session: TenantSession,
    actor: Principal,
    event: EntitlementEvent,
    target: str,
    details: dict[str, str] | None = None,
) -> int:
    """Queue one notice per security contact; returns how many were queued."""
    contacts = security_contacts(session)
    if not contacts:
        log.warning("entitlement notice has no recipient", notice=event.value, tenant_id=str(session.tenant_id))
        return 0
    institution = session.get(Tenant, session.tenant_id).name
    context = {
        "institution": institution,
        "event_text": event.value,
        "target": target,
        "actor": f"{actor.kind.value} {actor.id}",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "details": details or {},
    }
    for address in contacts:
        queue_mail(
            session,
            to=address,
            subject=f"[{institution}] security notice: {event.value}",
            template="entitlement_changed.txt",
            context=context,
            category=MailCategory.SECURITY,
        )
    return len(contacts)


def security_contacts(session: TenantSession) -> list[str]:
    key = session.keyring.tenant_own_key(session.tenant_id)
    rows = session.execute(select(SecurityContact).where(SecurityContact.tenant_id == session.tenant_id)).scalars()
    return [decrypt_field(key, session.tenant_id, "security_contacts", "email", row.id, row.email) for row in rows]


def list_security_contacts(session: TenantSession) -> list[str]:
    """The contacts as an administrator lists them: recorded (how many, never the addresses)."""
    contacts = security_contacts(session)
    record(session, Action.SECURITY_CONTACT_LISTED, ("security_contact", None), details={"count": len(contacts)})
    return contacts


def add_security_contact(session: TenantSession, email: str) -> SecurityContact:
    """Stored under the tenant key: notices must reach contacts even after any one subject's erasure."""
    import uuid

    contact = SecurityContact(tenant_id=session.tenant_id, id=uuid.uuid4())
    key = session.keyring.tenant_own_key(session.tenant_id)
    contact.email = encrypt_field(key, session.tenant_id, "security_contacts", "email", contact.id, email)
    session.add(contact)
    session.flush()
    record(session, Action.SECURITY_CONTACT_ADDED, ("security_contact", contact.id))
    return contact
