"""Access control over HTTP: custom roles, role assignments, security contacts, password policy,
and operator access grants (asked for by operators, decided by the tenant or, in an emergency, the CISO)."""

import enum
from datetime import datetime, timedelta
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model, model_validator

from bookwarden.access.approvals import service as approvals
from bookwarden.access.approvals.models import ApprovalRequest, SensitiveAction
from bookwarden.access.grants import service as grants
from bookwarden.access.grants.models import GrantScope, GrantStatus
from bookwarden.access.roles import notices
from bookwarden.api.deps import database, requires, tenant_scope
from bookwarden.api.problems import responses
from bookwarden.core.permissions import TENANT_PERMISSIONS, Permission
from bookwarden.core.principal import Principal
from bookwarden.core.text import line, lines
from bookwarden.db.session import Database
from bookwarden.identity import roles as access
from bookwarden.identity.passwords import MIN_LENGTH_FLOORS, RoleClass
from bookwarden.notify.service import EmailAddress

router = APIRouter(prefix="/api/v1", tags=["access control"], responses=responses(401, 403, 422))

RoleName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{1,63}$")]
Email = EmailAddress


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Only tenant permissions can be named here: the schema itself keeps platform powers out of tenant roles.
TenantPermission = enum.StrEnum("TenantPermission", {p.name: p.value for p in sorted(TENANT_PERMISSIONS)})


class RoleIn(Input):
    name: RoleName
    description: lines(500, blank_ok=True) = ""
    permissions: list[TenantPermission] = Field(default_factory=list, max_length=len(TENANT_PERMISSIONS))


class RolePermissionsIn(Input):
    permissions: list[TenantPermission] = Field(max_length=len(TENANT_PERMISSIONS))


class RoleOut(BaseModel):
    name: str
    builtin: bool
    description: str
    permissions: list[Permission]


class AssignmentIn(Input):
    role: RoleName


class ApprovalOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: UUID
    action: SensitiveAction
    params: dict
    requested_by: UUID
    requested_by_person: UUID | None = Field(
        description="the account behind the asking credential (a token's owner); null for a service token"
    )
    requested_at: datetime
    expires_at: datetime
    status: str
    decided_by: UUID | None
    decided_by_person: UUID | None
    decided_at: datetime | None


class ContactIn(Input):
    email: Email


class PolicyInput(Input):
    @model_validator(mode="before")
    @classmethod
    def _numbers_not_booleans(cls, body: object) -> object:
        # Lax parsing read `false` as 0 passwords of history; JSON's true and false are no numbers.
        if isinstance(body, dict):
            for name, value in body.items():
                if isinstance(value, bool):
                    raise ValueError(f"{name}: a number, not true or false")
        return body


def _policy_input(role_class: RoleClass) -> type[BaseModel]:
    """The body for one role class: its platform floor is in the schema, so clients see it up front."""
    floor = MIN_LENGTH_FLOORS[role_class]
    return create_model(
        f"{role_class.value.capitalize()}PolicyIn",
        __base__=PolicyInput,
        # At most 64, the least maximum allowed, so no valid body can ask for min above max.
        min_length=(int, Field(ge=floor, le=64, description=f"platform floor: {floor}")),
        max_length=(int, Field(default=128, ge=64, le=1024)),
        history=(int, Field(default=5, ge=0, le=24)),
        expiry_days=(int | None, Field(default=None, ge=1, le=3650, description="null: passwords never expire")),
    )


@router.get("/roles", response_model=list[RoleOut])
def list_roles(principal: Principal = Depends(requires(Permission.ROLES_READ)), db: Database = Depends(database)):
    """Built-in roles (fixed permissions) and the tenant's custom roles."""
    with tenant_scope(db, principal) as session:
        return [
            RoleOut(name=name, builtin=builtin, description=description, permissions=sorted(permissions))
            for name, builtin, description, permissions in access.list_roles(session, principal)
        ]


_ASKED = "administrative permissions: asked, waiting for a second person (another holder of roles.manage)"


def _asked(request: ApprovalRequest) -> JSONResponse:
    return JSONResponse(ApprovalOut.model_validate(request).model_dump(mode="json"), status_code=202)


@router.post(
    "/roles",
    status_code=201,
    response_model=RoleOut,
    responses={**responses(409), 202: {"model": ApprovalOut, "description": _ASKED}},
)
def create_role(
    body: RoleIn, principal: Principal = Depends(requires(Permission.ROLES_MANAGE)), db: Database = Depends(database)
):
    """Create a custom role; one carrying administrative permissions is asked for instead, and created when
    another holder of roles.manage approves."""
    with tenant_scope(db, principal) as session:
        made = access.create_or_ask(
            session, principal, body.name, {Permission(p) for p in body.permissions}, body.description
        )
        if isinstance(made, ApprovalRequest):
            return _asked(made)
        return RoleOut(
            name=made.name, builtin=False, description=made.description, permissions=sorted(body.permissions)
        )


@router.put(
    "/roles/{name}/permissions",
    response_model=RoleOut,
    responses={**responses(404, 409), 202: {"model": ApprovalOut, "description": _ASKED}},
)
def set_role_permissions(
    name: RoleName,
    body: RolePermissionsIn,
    principal: Principal = Depends(requires(Permission.ROLES_MANAGE)),
    db: Database = Depends(database),
):
    """Replace a custom role's permissions; administrative ones are asked for instead, and applied when
    another holder of roles.manage approves."""
    with tenant_scope(db, principal) as session:
        changed = access.change_or_ask(session, principal, name, {Permission(p) for p in body.permissions})
        if isinstance(changed, ApprovalRequest):
            return _asked(changed)
        return RoleOut(
            name=changed.name, builtin=False, description=changed.description, permissions=sorted(body.permissions)
        )


@router.get("/accounts/{account_id}/roles", response_model=list[str], responses=responses(404))
def account_roles(
    account_id: UUID, principal: Principal = Depends(requires(Permission.ROLES_READ)), db: Database = Depends(database)
):
    with tenant_scope(db, principal) as session:
        return access.roles_of(session, principal, account_id)


@router.post(
    "/accounts/{account_id}/roles",
    status_code=204,
    responses={
        **responses(404, 409),
        202: {"model": ApprovalOut, "description": "administrative permissions: asked, waiting for a second person"},
    },
)
def grant_role(
    account_id: UUID,
    body: AssignmentIn,
    principal: Principal = Depends(requires(Permission.ROLES_ASSIGN)),
    db: Database = Depends(database),
):
    """Grant a role; one carrying administrative permissions (built-in or custom) is asked for instead, and
    granted when another holder of roles.assign approves."""
    with tenant_scope(db, principal) as session:
        granted = access.grant_or_ask(session, principal, account_id, body.role)
        if isinstance(granted, ApprovalRequest):
            return _asked(granted)
    return Response(status_code=204)


@router.get("/approvals", response_model=list[ApprovalOut])
def list_approvals(
    principal: Principal = Depends(requires(Permission.ACCOUNTS_READ)), db: Database = Depends(database)
):
    """Sensitive actions waiting for a second person."""
    with tenant_scope(db, principal) as session:
        return approvals.pending(session, principal)


def _decision_routes(collection: str, out: type[BaseModel], permission: Permission, decisions: dict) -> None:
    """POST /{collection}/{id}/{verb} for each verb: one tenant-scoped call of the decision function."""
    for verb, decide in decisions.items():
        _decision_route(collection, out, permission, verb, decide)


def _decision_route(collection: str, out: type[BaseModel], permission: Permission, verb: str, decide) -> None:
    @router.post(
        f"/{collection}/{{record_id}}/{verb}",
        response_model=out,
        name=f"{verb}_{collection.replace('-', '_')}",
        responses=responses(404, 409),
    )
    def decision(
        record_id: UUID,
        principal: Principal = Depends(requires(permission)),
        db: Database = Depends(database),
    ):
        with tenant_scope(db, principal) as session:
            return decide(session, principal, record_id)


# The decider of an approval also needs the permission of the action itself, and must not be who asked.
_decision_routes(
    "approvals", ApprovalOut, Permission.ACCOUNTS_READ, {"approve": approvals.approve, "reject": approvals.reject}
)


@router.delete("/accounts/{account_id}/roles/{role}", status_code=204, responses=responses(404))
def revoke_role(
    account_id: UUID,
    role: RoleName,
    principal: Principal = Depends(requires(Permission.ROLES_ASSIGN)),
    db: Database = Depends(database),
):
    with tenant_scope(db, principal) as session:
        access.revoke_role(session, principal, account_id, role)
    return Response(status_code=204)


@router.get("/security-contacts", response_model=list[str])
def list_contacts(
    principal: Principal = Depends(requires(Permission.SECURITY_CONTACTS_MANAGE)), db: Database = Depends(database)
):
    with tenant_scope(db, principal) as session:
        return notices.list_security_contacts(session, principal)


@router.post("/security-contacts", status_code=204)
def add_contact(
    body: ContactIn,
    principal: Principal = Depends(requires(Permission.SECURITY_CONTACTS_MANAGE)),
    db: Database = Depends(database),
):
    with tenant_scope(db, principal) as session:
        notices.add_contact(session, principal, body.email)
    return Response(status_code=204)


@router.delete("/security-contacts/{contact_id}", status_code=204, responses=responses(404, 409))
def remove_contact(
    contact_id: UUID,
    principal: Principal = Depends(requires(Permission.SECURITY_CONTACTS_MANAGE)),
    db: Database = Depends(database),
):
    """Stop mailing a contact; every contact is told, the one removed too. The last contact stays."""
    with tenant_scope(db, principal) as session:
        notices.remove_contact(session, principal, contact_id)
    return Response(status_code=204)


# Only kinds that exist can be named; the administrative ones are refused by the service, naming the rule.
NoticeKindName = enum.StrEnum("NoticeKindName", {k.name: k.value for k in notices.NoticeKind})


class MutesIn(Input):
    muted: list[NoticeKindName] = Field(max_length=len(notices.NoticeKind), description="the kinds to mute")


class MutesOut(BaseModel):
    contact_id: UUID
    email: str
    muted: list[str]
    mutable: list[str] = Field(description="every kind that can be muted; administrative kinds never can")


def _mutes_out(contact: notices.Contact) -> MutesOut:
    return MutesOut(
        contact_id=contact.id, email=contact.address, muted=list(contact.muted), mutable=list(notices.MUTABLE)
    )


@router.get("/security-contacts/mutes", response_model=list[MutesOut])
def list_mutes(
    principal: Principal = Depends(requires(Permission.SECURITY_CONTACTS_MANAGE)), db: Database = Depends(database)
):
    """Every security contact, with its id and the notice kinds it has muted."""
    with tenant_scope(db, principal) as session:
        return [_mutes_out(contact) for contact in notices.contact_mutes(session, principal)]


@router.get("/security-contacts/{contact_id}/mutes", response_model=MutesOut, responses=responses(404))
def contact_mutes(
    contact_id: UUID,
    principal: Principal = Depends(requires(Permission.SECURITY_CONTACTS_MANAGE)),
    db: Database = Depends(database),
):
    with tenant_scope(db, principal) as session:
        return _mutes_out(notices.mutes_of(session, principal, contact_id))


@router.put("/security-contacts/{contact_id}/mutes", response_model=MutesOut, responses=responses(404, 409))
def set_contact_mutes(
    contact_id: UUID,
    body: MutesIn,
    principal: Principal = Depends(requires(Permission.SECURITY_CONTACTS_MANAGE)),
    db: Database = Depends(database),
):
    """Replace the kinds this contact does not want mailed. An administrative kind is refused (409, naming
    the rule) and stays delivered whatever is stored; every contact is told of the change."""
    with tenant_scope(db, principal) as session:
        return _mutes_out(notices.set_mutes(session, principal, contact_id, [k.value for k in body.muted]))


def _add_policy_route(role_class: RoleClass) -> None:
    body_model = _policy_input(role_class)

    @router.put(
        f"/password-policies/{role_class.value}",
        status_code=202,
        response_model=ApprovalOut,
        name=f"set_{role_class}_policy",
    )
    def set_password_policy(
        body: body_model,  # type: ignore[valid-type]
        principal: Principal = Depends(requires(Permission.POLICY_MANAGE)),
        db: Database = Depends(database),
    ):
        """Ask for new settings for this role class (within the platform floors); applied when approved."""
        with tenant_scope(db, principal) as session:
            params = {"role_class": role_class.value, **body.model_dump()}
            return approvals.ask(session, principal, SensitiveAction.CHANGE_PASSWORD_POLICY, params)


# Operators' passwords follow the platform's policy; a tenant sets only its own classes.
for _class in (RoleClass.PATRON, RoleClass.STAFF, RoleClass.ADMIN):
    _add_policy_route(_class)


# -- operator access grants ----------------------------------------------------------------


class GrantRequestIn(Input):
    tenant_id: UUID
    scope: GrantScope
    justification: Annotated[lines(2000), Field(min_length=10)]
    ticket: line(200)
    hours: float = Field(gt=0.02, le=8, description="how long the grant lasts from now; at most 8 hours")


class GrantOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: UUID
    tenant_id: UUID
    operator_id: UUID
    scope: GrantScope
    justification: str
    ticket: str
    starts_at: datetime
    expires_at: datetime
    status: GrantStatus
    break_glass: bool
    decided_at: datetime | None
    first_used_at: datetime | None
    ended_at: datetime | None


@router.post(
    "/operator/grants", status_code=201, response_model=GrantOut, tags=["operator: grants"], responses=responses(404)
)
def request_grant(
    body: GrantRequestIn,
    principal: Principal = Depends(requires(Permission.PLATFORM_GRANTS_REQUEST)),
    db: Database = Depends(database),
):
    """An operator asks a tenant for time-bound access; the tenant's security contacts are told."""
    return grants.request_grant(
        db,
        principal,
        body.tenant_id,
        scope=body.scope,
        justification=body.justification,
        ticket=body.ticket,
        duration=timedelta(hours=body.hours),
    )


@router.post(
    "/operator/grants/{tenant_id}/{grant_id}/break-glass",
    response_model=GrantOut,
    tags=["operator: grants"],
    responses=responses(404, 409),
)
def break_glass(
    tenant_id: UUID,
    grant_id: UUID,
    principal: Principal = Depends(requires(Permission.PLATFORM_GRANTS_BREAK_GLASS)),
    db: Database = Depends(database),
):
    """The CISO approves in an emergency, without the tenant: flagged, and the tenant is told at once."""
    return grants.break_glass(db, principal, tenant_id, grant_id)


@router.get("/operator-grants", response_model=list[GrantOut])
def list_grants(
    principal: Principal = Depends(requires(Permission.OPERATOR_GRANTS_APPROVE)), db: Database = Depends(database)
):
    """Every operator grant asked of this institution, newest first."""
    with tenant_scope(db, principal) as session:
        return grants.list_grants(session, principal)


_decision_routes(
    "operator-grants",
    GrantOut,
    Permission.OPERATOR_GRANTS_APPROVE,
    {"approve": grants.approve_grant, "deny": grants.deny_grant, "revoke": grants.revoke_grant},
)
