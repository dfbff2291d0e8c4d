"""Institutional sign-on configuration: the tenant's identity provider and what its assertions mean here,
changed only when a second administrator approves (maker-checker, access/approvals/service.py).

Whoever controls the IdP decides who signs in as whom; one that asserts multi-factor authentication
even completes an administrator's second factor. So replacing or removing the configuration, and
changing its role mapping or whether unknown usernames get accounts, is a sensitive action like
granting an administrative role: one holder of sso.manage asks, another approves, and only then is
the change made. Otherwise a tenant admin could upload an IdP of their own and sign in as anyone.

- `ask_change` / `ask_removal` check the request now (metadata, role mappings) and store it as an
  approval request whose parameters hold the exact settings asked for (`content`), their SHA-256
  (`content_sha256`), and the digest of the configuration in force when asked (`replaces_sha256`,
  null when there was none), with a readable summary for the approver.
- On approval, `carry_out` applies the request's own content through `configure` / `remove_config`,
  which refuse to act without an approved request for exactly that content, and check it again
  (metadata still valid, mapped roles still without administrative permissions).
- The approval is bound to what was asked, three ways: the parameters must equal those computed
  from the content being applied (another content cannot ride on it); the digests must be those
  the audit chain recorded when it was asked (the chain is append-only: a request row altered since
  is refused as an integrity failure); and the configuration in force must still be the one the
  request replaces (two changes asked from the same configuration: once one is applied, the other
  is stale and refused, never applied over it by accident).
- The first configuration of an institution needs approval too: the first IdP decides who signs in
  as whom as much as any later one. Password policies work the same way (even an institution's
  first policy is asked and approved); an institution with a single administrator approves with a
  second holder of sso.manage (README, "Institutional sign-on").

Every change is audited (approval.requested, approval.approved, then sso.configured or sso.removed
naming the approval and the digest) and mailed to the security contacts when it takes effect.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text

from bookwarden.access.approvals import service as approvals
from bookwarden.access.approvals.models import ApprovalRequest, SensitiveAction, require_approval
from bookwarden.access.power import power_class, privileging
from bookwarden.access.roles.models import Role
from bookwarden.access.roles.notices import EntitlementEvent, entitlement_changed
from bookwarden.audit.events import Action
from bookwarden.audit.record import PENDING, record
from bookwarden.core.authorize import authorize
from bookwarden.core.canonical import ascii_sorted_json
from bookwarden.core.errors import Conflict, IntegrityFailure, InvalidInput, NotFound
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, BuiltinRole, Permission
from bookwarden.core.principal import Principal
from bookwarden.db.session import TenantSession
from bookwarden.identity import roles as access
from bookwarden.identity.models import AccountKind
from bookwarden.identity.saml import protocol as saml_protocol
from bookwarden.identity.saml.models import SamlConfig
from bookwarden.identity.saml.protocol import IdpMetadata

CHANGE = SensitiveAction.CONFIGURE_SSO
REMOVAL = SensitiveAction.REMOVE_SSO
WHAT = "institutional sign-on (SAML)"


@dataclass(frozen=True)
class RoleMapping:
    attribute: str
    value: str
    role: str


@dataclass(frozen=True)
class SamlSettings:
    idp_metadata: str
    username_attribute: str
    email_attribute: str | None
    display_name_attribute: str | None
    role_mappings: tuple[RoleMapping, ...]
    create_accounts: bool
    new_account_kind: AccountKind


# --- content and digests ----------------------------------------------------------------------


def content(settings: SamlSettings) -> dict[str, Any]:
    """The settings as stored in an approval request: JSON, one shape, every field present."""
    return {
        "idp_metadata": settings.idp_metadata,
        "username_attribute": settings.username_attribute,
        "email_attribute": settings.email_attribute,
        "display_name_attribute": settings.display_name_attribute,
        "role_mappings": [{"attribute": m.attribute, "value": m.value, "role": m.role} for m in settings.role_mappings],
        "create_accounts": settings.create_accounts,
        "new_account_kind": settings.new_account_kind.value,
    }


def settings_from(stored: Any) -> SamlSettings:
    """The settings an approval request holds; InvalidInput when it holds no such thing (a row written by
    hand: a request asked through the API always holds what `content` made)."""

    def text_of(value: Any, *, optional: bool = False) -> str | None:
        if isinstance(value, str) or (optional and value is None):
            return value
        raise TypeError(value)

    try:
        if not isinstance(stored["create_accounts"], bool):
            raise TypeError(stored["create_accounts"])
        return SamlSettings(
            idp_metadata=text_of(stored["idp_metadata"]),
            username_attribute=text_of(stored["username_attribute"]),
            email_attribute=text_of(stored["email_attribute"], optional=True),
            display_name_attribute=text_of(stored["display_name_attribute"], optional=True),
            role_mappings=tuple(
                RoleMapping(text_of(m["attribute"]), text_of(m["value"]), text_of(m["role"]))
                for m in stored["role_mappings"]
            ),
            create_accounts=stored["create_accounts"],
            new_account_kind=AccountKind(stored["new_account_kind"]),
        )
    except (KeyError, TypeError, ValueError):
        raise InvalidInput("content: not an institutional sign-on configuration") from None


def digest(settings_content: dict[str, Any]) -> str:
    """SHA-256 of the content's sorted, compact, ASCII-escaped JSON: what an approval binds.

    Not RFC 8785: IdP metadata and role mapping values may hold any text, which this form escapes
    (\\u00e9) where JCS writes UTF-8, and pending approval requests hold digests of this form.
    """
    return hashlib.sha256(ascii_sorted_json(settings_content)).hexdigest()


def _in_force(config: SamlConfig | None) -> str | None:
    """The digest of the configuration in force, computed as for a request's content; None without one."""
    if config is None:
        return None
    stored = {
        "idp_metadata": config.idp_metadata,
        "username_attribute": config.username_attribute,
        "email_attribute": config.email_attribute,
        "display_name_attribute": config.display_name_attribute,
        "role_mappings": [{k: m[k] for k in ("attribute", "value", "role")} for m in config.role_mappings],
        "create_accounts": config.create_accounts,
        "new_account_kind": config.new_account_kind,
    }
    return digest(stored)


# --- asking ---------------------------------------------------------------------------------


def ask_change(session: TenantSession, actor: Principal, settings: SamlSettings) -> ApprovalRequest:
    """Ask for these settings (first configuration or replacement); applied when another admin approves."""
    asked = approvals.ask(session, actor, CHANGE, {"content": content(settings)})
    _notify_asked(session, actor, asked, {"change": "set or replace the identity provider", **_notice(asked.params)})
    return asked


def ask_removal(session: TenantSession, actor: Principal) -> ApprovalRequest:
    """Ask for sign-on to be turned off; NotFound when it is not configured."""
    asked = approvals.ask(session, actor, REMOVAL, {})
    removal = {"change": "turn sign-on off", "identity provider": asked.params["idp_entity_id"]}
    _notify_asked(session, actor, asked, removal)
    return asked


def _notify_asked(session: TenantSession, actor: Principal, asked: ApprovalRequest, details: dict[str, str]) -> None:
    # Told at once, not only when it takes effect: the contacts can stop a rogue change before anyone approves it.
    details = {
        **details,
        "approval request": str(asked.id),
        "in force": "not yet: only when another administrator approves it at POST /api/v1/approvals/{id}/approve",
    }
    entitlement_changed(session, actor, EntitlementEvent.SSO_CHANGE_ASKED, WHAT, details)


def _notice(params: dict) -> dict[str, str]:
    """A sign-on configuration as the security contacts read it (from the request's summary)."""
    return {
        "identity provider": params["idp_entity_id"],
        "signing certificates (SHA-256)": ", ".join(params["signing_certificates"]),
        "role mappings": "; ".join(params["role_mappings"]) or "(none)",
        "unknown usernames": "get an account" if params["create_accounts"] else "are refused",
        "settings digest (SHA-256)": params["content_sha256"],
    }


def checked_params(session: TenantSession, action: SensitiveAction, params: dict) -> dict:
    """The parameters an approval request stores, checked now so that nobody approves a dud
    (access/approvals/service.py calls this when the request is asked)."""
    config = session.get(SamlConfig, session.tenant_id)
    if action is REMOVAL:
        if config is None:
            raise NotFound("institutional sign-on is not configured for this institution")
        return _removal_params(config)
    settings = settings_from(params.get("content"))
    expected = _change_params(session, settings, config)
    if expected["content_sha256"] == expected["replaces_sha256"]:
        raise Conflict("institutional sign-on is configured exactly so already: there is nothing to approve")
    return expected


def _change_params(session: TenantSession, settings: SamlSettings, config: SamlConfig | None) -> dict:
    metadata = _validated(session, settings)
    asked = content(settings)
    return {
        "content": asked,
        "content_sha256": digest(asked),
        "replaces_sha256": _in_force(config),
        # A summary for the approver and the audit trail, which records the content by its digest only.
        **_summary(metadata, settings),
    }


def _removal_params(config: SamlConfig) -> dict:
    return {"replaces_sha256": _in_force(config), "idp_entity_id": config.idp_entity_id}


def _summary(metadata: IdpMetadata, settings: SamlSettings) -> dict:
    return {
        "idp_entity_id": metadata.entity_id,
        "signing_certificates": [c.sha256 for c in metadata.certificates],
        "username_attribute": settings.username_attribute,
        "role_mappings": [f"{m.attribute}={m.value} -> {m.role}" for m in settings.role_mappings],
        "create_accounts": settings.create_accounts,
        "new_account_kind": settings.new_account_kind.value,
    }


def _validated(session: TenantSession, settings: SamlSettings) -> IdpMetadata:
    metadata = saml_protocol.parse_idp_metadata(settings.idp_metadata)
    for index, mapping in enumerate(settings.role_mappings):
        check_mappable(session, mapping.role, f"role_mappings[{index}].role")
    return metadata


def check_mappable(session: TenantSession, role: str, field: str) -> None:
    """Refuse a role that sign-on may not hand out: a platform role, or any role, built-in or custom, whose
    permissions are administrative (access/power.py): those are granted only with a second person's approval."""
    if role in {r.value for r in BuiltinRole}:
        if BuiltinRole(role).is_platform:
            raise InvalidInput(f"{field}: {role} is a platform role, not an institution's")
        permissions = set(BUILTIN_PERMISSIONS[BuiltinRole(role)])
    else:
        custom = session.scalar(select(Role).where(Role.tenant_id == session.tenant_id, Role.name == role))
        if custom is None:
            raise NotFound(f"{field}: no role named {role} in this institution")
        permissions = access.role_permissions(session, custom)
    if power_class(permissions).privileged:
        raise InvalidInput(
            f"{field}: {role} is an administrative role (it carries {', '.join(privileging(permissions))}); "
            "it is granted only with a second administrator's approval (POST /api/v1/accounts/{id}/roles, then "
            "POST /api/v1/approvals/{id}/approve), never by sign-on attributes"
        )


# --- carrying out -----------------------------------------------------------------------------


def carry_out(session: TenantSession, approver: Principal, request: ApprovalRequest) -> None:
    """Apply an approved request, from its own stored content (access/approvals/service.py calls this)."""
    if request.action == REMOVAL.value:
        remove_config(session, approver, approval=request)
    else:
        configure(session, approver, settings_from(request.params.get("content")), approval=request)


def configure(
    session: TenantSession, actor: Principal, settings: SamlSettings, *, approval: ApprovalRequest | None = None
) -> tuple[SamlConfig, IdpMetadata]:
    """Create or replace the tenant's IdP configuration, under an approved request for exactly these settings."""
    authorize(actor, Permission.SSO_MANAGE)
    config = session.get(SamlConfig, session.tenant_id)
    expected = _change_params(session, settings, config)  # checked again: metadata may have expired since
    _check_approval(session, approval, CHANGE, expected, "changing institutional sign-on")
    metadata = saml_protocol.parse_idp_metadata(settings.idp_metadata)
    config = config or SamlConfig(tenant_id=session.tenant_id)
    config.idp_entity_id = metadata.entity_id
    config.idp_metadata = settings.idp_metadata
    config.username_attribute = settings.username_attribute
    config.email_attribute = settings.email_attribute
    config.display_name_attribute = settings.display_name_attribute
    config.role_mappings = content(settings)["role_mappings"]
    config.create_accounts = settings.create_accounts
    config.new_account_kind = settings.new_account_kind.value
    config.updated_by = actor.id
    config.updated_at = datetime.now(UTC)
    session.add(config)
    session.flush()
    details = {**_summary(metadata, settings), **_approval_details(approval, expected)}
    record(session, Action.SSO_CONFIGURED, ("tenant", session.tenant_id), details=details, actor=actor)
    notice = {**_notice(expected), **_approval_notice(approval)}
    entitlement_changed(session, actor, EntitlementEvent.SSO_CONFIGURED, WHAT, notice)
    return config, metadata


def remove_config(session: TenantSession, actor: Principal, *, approval: ApprovalRequest | None = None) -> None:
    """Institutional sign-on off, under an approved request: sign-ins in flight end; accounts and roles stay."""
    authorize(actor, Permission.SSO_MANAGE)
    config = configured(session)
    expected = _removal_params(config)
    _check_approval(session, approval, REMOVAL, expected, "turning institutional sign-on off")
    idp = config.idp_entity_id
    session.delete(config)
    session.flush()
    details = {"idp_entity_id": idp, **_approval_details(approval, expected)}
    record(session, Action.SSO_REMOVED, ("tenant", session.tenant_id), details=details, actor=actor)
    entitlement_changed(
        session,
        actor,
        EntitlementEvent.SSO_REMOVED,
        WHAT,
        {"identity provider": idp, **_approval_notice(approval)},
    )


def _check_approval(
    session: TenantSession, approval: ApprovalRequest | None, action: SensitiveAction, expected: dict, what: str
) -> None:
    stale = approval is not None and approval.params.get("replaces_sha256") != expected["replaces_sha256"]
    if stale and approval.action == action.value:
        raise Conflict(
            f"institutional sign-on has changed since approval request {approval.id} was asked: it would "
            "replace a configuration that is no longer in force; ask again for the change you want"
        )
    require_approval(approval, action, expected, what)
    _as_recorded(session, approval)


def _as_recorded(session: TenantSession, approval: ApprovalRequest) -> None:
    """The request's digests must be those its approval.requested event holds: the row may have been
    altered since (the audit chain cannot be, unnoticed), and then nothing is applied."""
    recorded = _requested_details(session, approval)
    for key in ("content_sha256", "replaces_sha256"):
        if key in approval.params and (recorded is None or recorded.get(key) != approval.params[key]):
            raise IntegrityFailure(
                f"approval request {approval.id} no longer holds what was asked ({key} differs from the one the "
                "audit trail recorded when it was asked): nothing was changed; reject it and ask again"
            )


def _requested_details(session: TenantSession, approval: ApprovalRequest) -> dict | None:
    # Asked in this same transaction (a script asking and approving at once): still queued, not appended.
    for event in session.info.get(PENDING, []):
        if event.action == Action.APPROVAL_REQUESTED.value and event.target_id == approval.id:
            return event.details
    row = session.execute(
        text(
            "SELECT details FROM audit_events WHERE tenant_id = :t AND target_id = :id AND target_kind = 'approval' "
            "AND action = :action ORDER BY seq LIMIT 1"
        ),
        {"t": session.tenant_id, "id": approval.id, "action": Action.APPROVAL_REQUESTED.value},
    ).first()
    return row[0] if row is not None else None


def _approval_details(approval: ApprovalRequest, expected: dict) -> dict:
    return {
        "approval_id": approval.id,
        "requested_by": approval.requested_by,
        "content_sha256": expected.get("content_sha256"),
        "replaced_sha256": expected["replaces_sha256"],
    }


def _approval_notice(approval: ApprovalRequest) -> dict[str, str]:
    # "Changed by" in the notice is the approver; the asker is named here.
    return {"asked by": str(approval.requested_by), "approval request": str(approval.id)}


# --- reading ----------------------------------------------------------------------------------


def read_config(session: TenantSession, actor: Principal) -> tuple[SamlConfig, IdpMetadata]:
    authorize(actor, Permission.SSO_MANAGE)
    config = configured(session)
    record(session, Action.SSO_VIEWED, ("tenant", session.tenant_id), actor=actor)
    return config, saml_protocol.parse_idp_metadata(config.idp_metadata, check_validity=False)


def configured(session: TenantSession) -> SamlConfig:
    config = session.get(SamlConfig, session.tenant_id)
    if config is None:
        raise NotFound("institutional sign-on is not configured for this institution")
    return config
