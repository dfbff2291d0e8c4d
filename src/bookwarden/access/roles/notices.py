"""Entitlement-change notices: every change of who may do what is mailed to the tenant's
designated security contacts, so a rogue account or a quiet privilege grant is seen at once.

Queued in the same transaction as the change (through the outbox), delivered by the worker
within a minute.

Muting. A security contact may be spared the routine kinds (an ordinary API token created or
revoked, an operator grant used, an ordinary role granted...): each contact keeps a list of muted
kinds. Administrative changes can never be muted: granting or revoking an administrative role,
changing a role that carries administrative permissions, creating or revoking an API token that
carries them, resetting an administrator's password or second factors, changing the password policy,
break-glass access, institutional sign-on, and who receives these notices. Muting such a kind is
refused with an error naming the rule (`set_mutes`), and the rule is applied again where notices are
sent (`entitlement_changed`): a mute that somehow names an administrative kind, or an ordinary event
that turns out to concern an administrator, is mailed all the same.

"Administrative" is decided from permissions, not role names, by the one definition every control
uses (access/power.py): a change is administrative when the permissions it touches, or those of the
role or account it concerns, make their holder privileged. A custom "helpdesk" role that can assign
roles cannot be granted quietly, any more than the built-in tenant admin role can.
"""

from __future__ import annotations

import enum
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

import structlog
from sqlalchemy import delete, select

from bookwarden.access.power import power_class
from bookwarden.access.roles.models import SecurityContact
from bookwarden.access.roles.reads import account_permissions, role_permissions
from bookwarden.audit.events import Action
from bookwarden.audit.record import record
from bookwarden.core.authorize import authorize
from bookwarden.core.errors import BookwardenError, Conflict, NotFound
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.crypto.fields import decrypt_field, encrypt_field
from bookwarden.db.session import TenantSession
from bookwarden.notify.models import MailCategory, OutboxMessage
from bookwarden.notify.service import UndeliverableMail, open_mail, queue_mail
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
    PASSWORD_POLICY_CHANGED = "password policy changed"  # noqa: S105 - an event name
    RETENTION_POLICY_CHANGED = "retention period of personal data changed"
    MFA_RESET = "second factor reset"
    MFA_ENROLMENT_LINK_SENT = "second factor enrolment link sent"
    MFA_ENROLLED_WITH_LINK = "second factor enrolled with an administrator's link"
    API_TOKEN_CREATED = "API token created"  # noqa: S105 - an event name
    API_TOKEN_REVOKED = "API token revoked"  # noqa: S105 - an event name
    SECURITY_CONTACTS_CHANGED = "security contacts changed"
    NOTICE_MUTES_CHANGED = "security notice mutes changed"
    SSO_CONFIGURED = "institutional sign-on configured"
    SSO_REMOVED = "institutional sign-on removed"
    SSO_CHANGE_ASKED = "institutional sign-on change asked, waiting for a second administrator"
    OPERATOR_GRANT_REQUESTED = "operator access requested"
    OPERATOR_GRANT_APPROVED = "operator access approved"
    OPERATOR_GRANT_BREAK_GLASS = "operator access approved by break-glass"
    OPERATOR_GRANT_USED = "operator access used"
    OPERATOR_GRANT_EXPIRED = "operator access expired"


class NoticeKind(enum.StrEnum):
    """What a security contact mutes: an event, split where it may concern an administrator."""

    ACCOUNT_CREATED = "account_created"
    ACCOUNT_DISABLED = "account_disabled"
    ACCOUNT_ENABLED = "account_enabled"
    ACCOUNT_DELETED = "account_deleted"
    ROLE_GRANTED = "role_granted"
    ROLE_REVOKED = "role_revoked"
    ROLE_PERMISSIONS_CHANGED = "role_permissions_changed"
    PASSWORD_RESET = "password_reset"  # noqa: S105 - a notice kind
    MFA_RESET = "mfa_reset"
    MFA_ENROLMENT = "mfa_enrolment"  # an enrolment link sent after a reset, or used
    API_TOKEN_CREATED = "api_token_created"  # noqa: S105 - a notice kind
    API_TOKEN_REVOKED = "api_token_revoked"  # noqa: S105 - a notice kind
    OPERATOR_GRANT_REQUESTED = "operator_grant_requested"
    OPERATOR_GRANT_APPROVED = "operator_grant_approved"
    OPERATOR_GRANT_USED = "operator_grant_used"
    OPERATOR_GRANT_EXPIRED = "operator_grant_expired"
    # Administrative: never muted.
    ADMIN_ROLE_GRANTED = "admin_role_granted"
    ADMIN_ROLE_REVOKED = "admin_role_revoked"
    ADMIN_ROLE_PERMISSIONS_CHANGED = "admin_role_permissions_changed"
    ADMIN_PASSWORD_RESET = "admin_password_reset"  # noqa: S105 - a notice kind
    ADMIN_MFA_RESET = "admin_mfa_reset"
    ADMIN_MFA_ENROLMENT = "admin_mfa_enrolment"
    ADMIN_API_TOKEN_CREATED = "admin_api_token_created"  # noqa: S105 - a notice kind
    ADMIN_API_TOKEN_REVOKED = "admin_api_token_revoked"  # noqa: S105 - a notice kind
    PASSWORD_POLICY_CHANGED = "password_policy_changed"  # noqa: S105 - a notice kind
    RETENTION_POLICY_CHANGED = "retention_policy_changed"
    OPERATOR_GRANT_BREAK_GLASS = "operator_grant_break_glass"
    SSO_CONFIGURED = "sso_configured"
    SSO_REMOVED = "sso_removed"
    SECURITY_CONTACTS_CHANGED = "security_contacts_changed"
    NOTICE_MUTES_CHANGED = "notice_mutes_changed"


E, K = EntitlementEvent, NoticeKind
_ADMIN_ROLE = (
    "granting, revoking or changing an administrative role (any role, built-in or custom, that can manage "
    "accounts, roles, tokens, policies, sign-on, security contacts or operator grants, or read or verify "
    "the audit trail) is always notified"
)
_ADMIN_CREDENTIALS = "resetting an administrator's password or second factors is always notified"
_ADMIN_MACHINE_ACCESS = (
    "creating or revoking an API token that carries administrative permissions (the same powers as an "
    "administrative role, in a machine's hands) is always notified"
)
# Every kind that can never be muted, with the rule that says so (named in refusals and in the mail).
NEVER_MUTED: dict[NoticeKind, str] = {
    K.ADMIN_ROLE_GRANTED: _ADMIN_ROLE,
    K.ADMIN_ROLE_REVOKED: _ADMIN_ROLE,
    K.ADMIN_ROLE_PERMISSIONS_CHANGED: _ADMIN_ROLE,
    K.ADMIN_PASSWORD_RESET: _ADMIN_CREDENTIALS,
    K.ADMIN_MFA_RESET: _ADMIN_CREDENTIALS,
    K.ADMIN_MFA_ENROLMENT: _ADMIN_CREDENTIALS,
    K.ADMIN_API_TOKEN_CREATED: _ADMIN_MACHINE_ACCESS,
    K.ADMIN_API_TOKEN_REVOKED: _ADMIN_MACHINE_ACCESS,
    K.PASSWORD_POLICY_CHANGED: "password policy changes are always notified",
    K.RETENTION_POLICY_CHANGED: "changes to how long personal data is kept are always notified",
    K.OPERATOR_GRANT_BREAK_GLASS: "break-glass access to the institution's data by the platform is always notified",
    K.SSO_CONFIGURED: "changes to institutional sign-on are always notified",
    K.SSO_REMOVED: "changes to institutional sign-on are always notified",
    K.SECURITY_CONTACTS_CHANGED: "changes to who receives security notices, and to what they mute, are always notified",
    K.NOTICE_MUTES_CHANGED: "changes to who receives security notices, and to what they mute, are always notified",
}
# Each event's kind, and the kind it becomes when it concerns an administrator.
_KINDS: dict[EntitlementEvent, tuple[NoticeKind, NoticeKind | None]] = {
    E.ACCOUNT_CREATED: (K.ACCOUNT_CREATED, None),
    E.ACCOUNT_DISABLED: (K.ACCOUNT_DISABLED, None),
    E.ACCOUNT_ENABLED: (K.ACCOUNT_ENABLED, None),
    E.ACCOUNT_DELETED: (K.ACCOUNT_DELETED, None),
    E.ROLE_GRANTED: (K.ROLE_GRANTED, K.ADMIN_ROLE_GRANTED),
    E.ROLE_REVOKED: (K.ROLE_REVOKED, K.ADMIN_ROLE_REVOKED),
    E.ROLE_PERMISSIONS_CHANGED: (K.ROLE_PERMISSIONS_CHANGED, K.ADMIN_ROLE_PERMISSIONS_CHANGED),
    E.PASSWORD_RESET: (K.PASSWORD_RESET, K.ADMIN_PASSWORD_RESET),
    E.PASSWORD_POLICY_CHANGED: (K.PASSWORD_POLICY_CHANGED, None),
    E.RETENTION_POLICY_CHANGED: (K.RETENTION_POLICY_CHANGED, None),
    E.MFA_RESET: (K.MFA_RESET, K.ADMIN_MFA_RESET),
    E.MFA_ENROLMENT_LINK_SENT: (K.MFA_ENROLMENT, K.ADMIN_MFA_ENROLMENT),
    E.MFA_ENROLLED_WITH_LINK: (K.MFA_ENROLMENT, K.ADMIN_MFA_ENROLMENT),
    # A token's class is that of the permissions it carries (`permissions=`), whoever owns it.
    E.API_TOKEN_CREATED: (K.API_TOKEN_CREATED, K.ADMIN_API_TOKEN_CREATED),
    E.API_TOKEN_REVOKED: (K.API_TOKEN_REVOKED, K.ADMIN_API_TOKEN_REVOKED),
    E.SECURITY_CONTACTS_CHANGED: (K.SECURITY_CONTACTS_CHANGED, None),
    E.NOTICE_MUTES_CHANGED: (K.NOTICE_MUTES_CHANGED, None),
    E.SSO_CONFIGURED: (K.SSO_CONFIGURED, None),
    E.SSO_REMOVED: (K.SSO_REMOVED, None),
    E.SSO_CHANGE_ASKED: (K.SSO_CONFIGURED, None),  # a sign-on change, seen before anyone can approve it
    E.OPERATOR_GRANT_REQUESTED: (K.OPERATOR_GRANT_REQUESTED, None),
    E.OPERATOR_GRANT_APPROVED: (K.OPERATOR_GRANT_APPROVED, None),
    E.OPERATOR_GRANT_BREAK_GLASS: (K.OPERATOR_GRANT_BREAK_GLASS, None),
    E.OPERATOR_GRANT_USED: (K.OPERATOR_GRANT_USED, None),
    E.OPERATOR_GRANT_EXPIRED: (K.OPERATOR_GRANT_EXPIRED, None),
}
MUTABLE = tuple(kind for kind in NoticeKind if kind not in NEVER_MUTED)


class NoticeNotMutable(BookwardenError):
    # 409, like the refusal to remove a last required factor: a valid request that a standing rule forbids.
    slug, status, title = "notice-not-mutable", 409, "Notice cannot be muted"

    def __init__(self, kind: NoticeKind):
        super().__init__(
            f"{kind.value} cannot be muted: {NEVER_MUTED[kind]} (rule: administrative changes are never muted); "
            f"kinds that can be muted: {', '.join(MUTABLE)}"
        )
        self.kind = kind


@dataclass(frozen=True)
class Classified:
    kind: NoticeKind
    rule: str | None  # why it can never be muted; None for a routine notice

    @property
    def administrative(self) -> bool:
        return self.rule is not None


def classify(
    session: TenantSession,
    event: EntitlementEvent,
    *,
    account_id: UUID | None = None,
    role: str | None = None,
    permissions: Iterable[Permission] = (),
) -> Classified:
    """The kind of notice `event` makes, administrative when it concerns administrative access.

    `account_id`: the account whose entitlements changed (administrative when it holds an
    administrative permission now); `role`: the role granted, revoked or changed; `permissions`:
    the permissions the change added or removed.
    """
    ordinary, escalated = _KINDS[event]
    kind = ordinary
    if escalated is not None and _administrative(session, account_id, role, permissions):
        kind = escalated
    return Classified(kind, NEVER_MUTED.get(kind))


def _administrative(
    session: TenantSession, account_id: UUID | None, role: str | None, permissions: Iterable[Permission]
) -> bool:
    touched = set(permissions)
    if role is not None:
        touched |= role_permissions(session, role)
    if account_id is not None:
        touched |= account_permissions(session, account_id)
    return power_class(touched).privileged


def entitlement_changed(
    session: TenantSession,
    actor: Principal,
    event: EntitlementEvent,
    target: str,
    details: dict[str, str] | None = None,
    *,
    account_id: UUID | None = None,
    role: str | None = None,
    permissions: Iterable[Permission] = (),
) -> int:
    """Queue one notice per security contact that has not muted its kind; returns how many were queued.

    The never-muted rule is applied here, where notices leave, whatever the stored mutes say. A role
    named in `details["role"]` counts as `role`.
    """
    contacts = _contacts(session)
    if not contacts:
        log.warning("entitlement notice has no recipient", notice=event.value, tenant_id=str(session.tenant_id))
        return 0
    role = role or (details or {}).get("role")
    classified = classify(session, event, account_id=account_id, role=role, permissions=permissions)
    institution = session.get(Tenant, session.tenant_id).name
    context = {
        "institution": institution,
        "event_text": event.value,
        "target": target,
        "actor": _actor(actor),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "details": details or {},
        "kind": classified.kind.value,
        "never_muted_because": classified.rule,
    }
    queued = 0
    for contact in contacts:
        if not classified.administrative and classified.kind.value in contact.muted:
            continue
        queue_mail(
            session,
            to=contact.address,
            subject=f"[{institution}] security notice: {event.value}",
            template="entitlement_changed.txt",
            context=context,
            category=MailCategory.SECURITY,
        )
        queued += 1
    if queued < len(contacts):
        log.info("entitlement notice muted", notice=classified.kind.value, muted_for=len(contacts) - queued)
    return queued


def _actor(actor: Principal) -> str:
    # A token names the person it acts for: the contacts must see who, not only which credential.
    described = f"{actor.kind.value} {actor.id}"
    return f"{described} (owned by {actor.owner_id})" if actor.owner_id is not None else described


@dataclass(frozen=True)
class Contact:
    id: UUID
    address: str
    muted: tuple[str, ...]


def _contacts(session: TenantSession) -> list[Contact]:
    key = session.keyring.tenant_own_key(session.tenant_id)
    rows = session.execute(
        select(SecurityContact).where(SecurityContact.tenant_id == session.tenant_id).order_by(SecurityContact.id)
    ).scalars()
    return [
        Contact(
            row.id,
            decrypt_field(key, session.tenant_id, "security_contacts", "email", row.id, row.email),
            tuple(row.muted_notices or ()),
        )
        for row in rows
    ]


# --- mutes -----------------------------------------------------------------------------------


def contact_mutes(session: TenantSession, actor: Principal) -> list[Contact]:
    """Every contact with what it has muted, as an administrator reads them: recorded (ids, never addresses)."""
    authorize(actor, Permission.SECURITY_CONTACTS_MANAGE)
    contacts = _contacts(session)
    ids = [c.id for c in contacts]
    record(session, Action.NOTICE_MUTES_VIEWED, ("security_contact", None), details={"ids": ids, "count": len(ids)})
    return contacts


def mutes_of(session: TenantSession, actor: Principal, contact_id: UUID) -> Contact:
    """One contact's mutes: recorded."""
    authorize(actor, Permission.SECURITY_CONTACTS_MANAGE)
    contact = _contact(session, contact_id)
    record(
        session, Action.NOTICE_MUTES_VIEWED, ("security_contact", contact.id), details={"muted": list(contact.muted)}
    )
    return contact


def set_mutes(session: TenantSession, actor: Principal, contact_id: UUID, kinds: Iterable[str]) -> Contact:
    """Replace what a contact mutes; an administrative kind is refused, naming the rule, and nothing changes.

    The change itself is notified to every contact (never muted): muting is how a rogue
    administrator would try to go unseen.
    """
    authorize(actor, Permission.SECURITY_CONTACTS_MANAGE)
    wanted = set()
    for name in kinds:
        try:
            kind = NoticeKind(name)
        except ValueError:
            raise NotFound(f"no notice kind {name!r}; kinds that can be muted: {', '.join(MUTABLE)}") from None
        if kind in NEVER_MUTED:
            raise NoticeNotMutable(kind)
        wanted.add(kind.value)
    contact = _contact(session, contact_id)
    row = session.get(SecurityContact, (session.tenant_id, contact.id), with_for_update=True)
    before = set(row.muted_notices or ())
    row.muted_notices = sorted(wanted)
    session.flush()
    added, removed = sorted(wanted - before), sorted(before - wanted)
    details = {"muted": sorted(wanted), "added": added, "removed": removed}
    record(session, Action.NOTICE_MUTES_CHANGED, ("security_contact", contact.id), details=details)
    entitlement_changed(
        session,
        actor,
        EntitlementEvent.NOTICE_MUTES_CHANGED,
        f"security contact {contact.id}",
        {
            "now muted": ", ".join(sorted(wanted)) or "(nothing)",
            "muted now": ", ".join(added) or "(none)",
            "unmuted now": ", ".join(removed) or "(none)",
        },
    )
    return Contact(contact.id, contact.address, tuple(sorted(wanted)))


# --- the notices sent -----------------------------------------------------------------------------

SENT_LIMIT = 200
_SUBJECT = re.compile(r"\] security notice: (?P<event>.+)$")
_EVENTS = {event.value: event for event in EntitlementEvent}
_CONCERNING = "Account concerned: "  # the line of notify/templates/entitlement_changed.txt naming the target


@dataclass(frozen=True)
class SentNotice:
    id: UUID
    to: str
    event: EntitlementEvent
    concerning: str
    queued_at: datetime
    status: str  # queued (not delivered yet), sent, failed (given up)
    sent_at: datetime | None
    attempts: int


def sent_notices(session: TenantSession, actor: Principal, limit: int = SENT_LIMIT) -> list[SentNotice]:
    """The entitlement notices mailed to the contacts, newest first, read back from the outbox (kept 90 days
    after delivery, notify/service.py): to whom, what changed, when, delivered or not. Recorded (ids only)."""
    authorize(actor, Permission.SECURITY_CONTACTS_MANAGE)
    rows = session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.tenant_id == session.tenant_id, OutboxMessage.category == MailCategory.SECURITY)
        .order_by(OutboxMessage.created_at.desc(), OutboxMessage.id)
        .limit(limit * 2)  # security mail is mostly these notices; breach notices share the category
    ).all()
    found = []
    for row in rows:
        try:
            mail = open_mail(session, row)
        except UndeliverableMail:
            continue
        matched = _SUBJECT.search(mail.subject)
        event = _EVENTS.get(matched.group("event")) if matched else None
        if event is None:
            continue
        concerning = next((ln.split(": ", 1)[1] for ln in mail.body.splitlines() if ln.startswith(_CONCERNING)), "")
        found.append(
            SentNotice(row.id, mail.to, event, concerning, row.created_at, row.status, row.sent_at, row.attempts)
        )
        if len(found) == limit:
            break
    ids = [notice.id for notice in found]
    record(session, Action.NOTICES_SENT_LISTED, ("outbox", None), actor=actor, details={"ids": ids, "count": len(ids)})
    return found


def _contact(session: TenantSession, contact_id: UUID) -> Contact:
    found = next((c for c in _contacts(session) if c.id == contact_id), None)
    if found is None:
        raise NotFound(f"no security contact {contact_id}")
    return found


def security_contacts(session: TenantSession) -> list[str]:
    """Every contact's address, muted kinds or not (complaint escalations and other mail that is no notice)."""
    return [contact.address for contact in _contacts(session)]


def list_security_contacts(session: TenantSession, actor: Principal) -> list[str]:
    """The contacts as an administrator lists them: recorded (how many, never the addresses)."""
    authorize(actor, Permission.SECURITY_CONTACTS_MANAGE)
    contacts = security_contacts(session)
    record(session, Action.SECURITY_CONTACT_LISTED, ("security_contact", None), details={"count": len(contacts)})
    return contacts


def add_contact(session: TenantSession, actor: Principal, email: str) -> SecurityContact:
    """An administrator adds a contact; every contact (the new one included) is told."""
    authorize(actor, Permission.SECURITY_CONTACTS_MANAGE)
    contact = add_security_contact(session, email)
    entitlement_changed(
        session, actor, EntitlementEvent.SECURITY_CONTACTS_CHANGED, "security contacts", {"added": email}
    )
    return contact


def remove_contact(session: TenantSession, actor: Principal, contact_id: UUID) -> None:
    """An administrator removes a contact. Every contact is told first, the one removed too; the last one
    cannot go (add its successor first): with no contact, changes to who holds power would reach nobody."""
    authorize(actor, Permission.SECURITY_CONTACTS_MANAGE)
    contact = _contact(session, contact_id)
    if len(_contacts(session)) == 1:
        raise Conflict("the institution's last security contact cannot be removed: add its successor first")
    entitlement_changed(
        session, actor, EntitlementEvent.SECURITY_CONTACTS_CHANGED, "security contacts", {"removed": contact.address}
    )
    session.execute(
        delete(SecurityContact).where(SecurityContact.tenant_id == session.tenant_id, SecurityContact.id == contact.id)
    )
    record(session, Action.SECURITY_CONTACT_REMOVED, ("security_contact", contact.id))


def add_security_contact(session: TenantSession, email: str) -> SecurityContact:
    """Stored under the tenant key: notices must reach contacts even after any one subject's erasure."""
    contact = SecurityContact(tenant_id=session.tenant_id, id=uuid.uuid4(), muted_notices=[])
    key = session.keyring.tenant_own_key(session.tenant_id)
    contact.email = encrypt_field(key, session.tenant_id, "security_contacts", "email", contact.id, email)
    session.add(contact)
    session.flush()
    record(session, Action.SECURITY_CONTACT_ADDED, ("security_contact", contact.id))
    return contact
