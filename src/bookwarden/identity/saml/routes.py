"""Institutional sign-on (SAML 2.0) over HTTP: the tenant administrators' configuration, and the three
public addresses an identity provider and a browser use (identity/saml/service.py says what each does).

Changing the configuration is maker-checker (identity/saml/config.py): PUT and DELETE answer 202
with an approval request, and the change is made when another holder of sso.manage approves it at
POST /api/v1/approvals/{id}/approve.

The public routes (metadata, login, acs) come before authentication and act on no one's data, so
they declare no permission (see `open_routes` in tests/api/test_api.py): the SP metadata is public by
nature, login only sends the browser to its institution's IdP, and the ACS is authorised by the
IdP's signature over the assertion plus the cookie of the browser that started the sign-in.

The ACS takes a cross-site form POST (the IdP's page submits it), so it neither expects the
SameSite=Lax session cookie nor checks the origin: that cookie is what it issues. The cookie binding
the sign-in to the browser is therefore SameSite=None (sent on that POST), Secure, HttpOnly, limited
to the ACS path and to 10 minutes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from bookwarden.access.power import power_class
from bookwarden.access.routes import ApprovalOut
from bookwarden.api import bodies
from bookwarden.api.deps import database, requires, tenant_scope
from bookwarden.api.problems import problem, responses
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, BuiltinRole, Permission
from bookwarden.core.principal import Principal
from bookwarden.core.text import line, lines
from bookwarden.db.session import Database
from bookwarden.identity.models import AccountKind
from bookwarden.identity.saml import config as saml_config
from bookwarden.identity.saml import protocol as saml_protocol
from bookwarden.identity.saml import service as saml
from bookwarden.identity.saml.models import SamlConfig
from bookwarden.identity.saml.protocol import IdpMetadata
from bookwarden.identity.signin.routes import SignInOut, set_session_cookie, source_address, too_many_attempts
from bookwarden.identity.throttle import TooManyAttempts
from bookwarden.tenancy.service import get_tenant

router = APIRouter(prefix=saml_protocol.SSO_PREFIX, tags=["institutional sign-on"], responses=responses(422))

# Friendly names (eduPersonPrincipalName), OIDs (urn:oid:1.3.6.1.4.1.5923.1.1.1.6), claim URIs, or "NameID".
AttributeName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:/#-]{1,256}$")]
RoleName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{1,63}$")]
TenantSlug = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$", description="the institution's slug")]
# Only a path on this site: "/..." but never "//host" or "/\\host", which browsers read as another site
# (no backslash at all), and no query string or fragment (a search term would be kept with the sign-in).
NextPath = Annotated[
    str,
    Query(
        alias="next",
        max_length=512,
        pattern=r"^/([\x21\x22\x24-\x2e\x30-\x3e\x40-\x5b\x5d-\x7e][\x21\x22\x24-\x3e\x40-\x5b\x5d-\x7e]*)?$",
        description="where to go once signed in",
    ),
]
MAX_FORM_BYTES = 4 * saml_protocol.MAX_RESPONSE_BYTES // 3 + 4096  # base64 of the largest response, and a margin
SAML_METADATA = "application/samlmetadata+xml"
# The settings' JSON at their largest: metadata of MAX_METADATA_CHARS with every character escaped as
# \uXXXX (six bytes), and a mebibyte for the role mappings and the rest.
MAX_SETTINGS_BYTES = 6 * saml_protocol.MAX_METADATA_CHARS + 1024 * 1024


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Built-in roles sign-on may never hand out (platform roles, and those carrying administrative permissions),
# refused by the schema itself; the service refuses those and custom roles carrying such permissions.
NOT_MAPPABLE = sorted(r.value for r in BuiltinRole if r.is_platform or power_class(BUILTIN_PERMISSIONS[r]).privileged)


class RoleMappingIn(Input):
    attribute: AttributeName
    value: line(256)
    role: RoleName = Field(
        description="a role without administrative permissions (access control, accounts, audit, sign-on, policy)",
        json_schema_extra={"not": {"enum": NOT_MAPPABLE}},
    )


class SamlConfigIn(Input):
    idp_metadata: Annotated[
        lines(saml_protocol.MAX_METADATA_CHARS),
        # The format names what no JSON Schema can check; a 422 names what is wrong with it.
        Field(
            description="the identity provider's SAML 2.0 metadata (XML), with its signing certificate",
            json_schema_extra={"format": "saml-metadata"},
        ),
    ]
    username_attribute: AttributeName = Field(
        default="eduPersonPrincipalName", description='the attribute that carries the username, or "NameID"'
    )
    email_attribute: AttributeName | None = Field(default="mail", description="used for accounts created on sign-in")
    display_name_attribute: AttributeName | None = Field(default="displayName")
    role_mappings: list[RoleMappingIn] = Field(default_factory=list, max_length=50)
    create_accounts: bool = Field(default=False, description="true: an unknown username gets an account on sign-in")
    new_account_kind: AccountKind = AccountKind.STAFF


class RoleMappingOut(BaseModel):
    attribute: str
    value: str
    role: str


class SamlCertificateOut(BaseModel):
    subject: str
    not_after: datetime
    sha256: str


class SamlConfigOut(BaseModel):
    idp_entity_id: str
    idp_sso_url: str
    idp_signing_certificates: list[SamlCertificateOut]
    sp_entity_id: str = Field(description="give this, or the metadata at sp_metadata_url, to the identity provider")
    sp_metadata_url: str
    acs_url: str
    login_url: str
    username_attribute: str
    email_attribute: str | None
    display_name_attribute: str | None
    role_mappings: list[RoleMappingOut]
    create_accounts: bool
    new_account_kind: AccountKind
    updated_at: datetime


def _out(config: SamlConfig, metadata: IdpMetadata, slug: str) -> SamlConfigOut:
    sp = saml_protocol.sp_urls(slug)
    return SamlConfigOut(
        idp_entity_id=metadata.entity_id,
        idp_sso_url=metadata.sso_url,
        idp_signing_certificates=[SamlCertificateOut(**vars(c)) for c in metadata.certificates],
        sp_entity_id=sp.entity_id,
        sp_metadata_url=sp.metadata_url,
        acs_url=sp.acs_url,
        login_url=sp.login_url,
        username_attribute=config.username_attribute,
        email_attribute=config.email_attribute,
        display_name_attribute=config.display_name_attribute,
        role_mappings=[RoleMappingOut(**m) for m in config.role_mappings],
        create_accounts=config.create_accounts,
        new_account_kind=AccountKind(config.new_account_kind),
        updated_at=config.updated_at,
    )


# -- configuration (tenant administrators) -------------------------------------------------


def _asked(request) -> JSONResponse:
    return JSONResponse(ApprovalOut.model_validate(request).model_dump(mode="json"), status_code=202)


ASKED = {202: {"model": ApprovalOut, "description": "asked: applied when another holder of sso.manage approves"}}


@router.put("", status_code=202, response_model=ApprovalOut, responses={**ASKED, **responses(401, 403, 404, 409)})
@bodies.limit(MAX_SETTINGS_BYTES)
def configure(
    body: SamlConfigIn,
    principal: Principal = Depends(requires(Permission.SSO_MANAGE)),
    db: Database = Depends(database),
):
    """Ask to set (or replace) the institution's identity provider, the first time included: 202 with the
    approval request, applied when another holder of sso.manage approves it. Bad metadata is a 422 naming
    the problem, a mapping to a role the institution does not have a 404, the configuration in force 409."""
    settings = saml_config.SamlSettings(
        idp_metadata=body.idp_metadata,
        username_attribute=body.username_attribute,
        email_attribute=body.email_attribute,
        display_name_attribute=body.display_name_attribute,
        role_mappings=tuple(saml_config.RoleMapping(m.attribute, m.value, m.role) for m in body.role_mappings),
        create_accounts=body.create_accounts,
        new_account_kind=body.new_account_kind,
    )
    with tenant_scope(db, principal) as session:
        return _asked(saml_config.ask_change(session, principal, settings))


@router.get("", response_model=SamlConfigOut, responses=responses(401, 403, 404))
def read_configuration(
    principal: Principal = Depends(requires(Permission.SSO_MANAGE)), db: Database = Depends(database)
):
    with tenant_scope(db, principal) as session:
        config, metadata = saml_config.read_config(session, principal)
        return _out(config, metadata, get_tenant(session, principal.tenant_id).slug)


@router.delete("", status_code=202, response_model=ApprovalOut, responses={**ASKED, **responses(401, 403, 404)})
def remove_configuration(
    principal: Principal = Depends(requires(Permission.SSO_MANAGE)), db: Database = Depends(database)
):
    """Ask to turn institutional sign-on off (202, applied when another holder of sso.manage approves).
    Accounts stay, with their roles; password sign-in is unchanged."""
    with tenant_scope(db, principal) as session:
        return _asked(saml_config.ask_removal(session, principal))


# -- public: the identity provider and the browser -----------------------------------------


@router.get(
    "/{tenant_slug}/metadata",
    response_class=Response,
    responses={200: {"content": {SAML_METADATA: {"schema": {"type": "string"}}}}, **responses(404)},
)
def sp_metadata(tenant_slug: TenantSlug, db: Database = Depends(database)):
    """This institution's service-provider metadata, for its identity provider's administrator."""
    return Response(saml.sp_metadata(db, tenant_slug), media_type=SAML_METADATA)


@router.get(
    "/{tenant_slug}/login",
    status_code=303,
    response_class=RedirectResponse,
    responses={
        303: {"description": "to the identity provider (HTTP-Redirect binding)"},
        **responses(404, 409, 429),
    },
)
def login(request: Request, tenant_slug: TenantSlug, next_path: NextPath = "/", db: Database = Depends(database)):
    """Start a sign-in: the browser goes to the institution's identity provider. Throttled per source
    address (429 with Retry-After) while sign-ins started from it are left unfinished."""
    try:
        started = saml.start_sign_in(db, tenant_slug, next_path, source_address(request))
    except TooManyAttempts as refused:
        return too_many_attempts(request, refused)
    response = RedirectResponse(started.redirect_url, status_code=303)
    response.set_cookie(
        saml.BROWSER_COOKIE,
        started.browser_token,
        max_age=int(saml.REQUEST_LIFETIME.total_seconds()),
        path=started.cookie_path,
        secure=True,
        httponly=True,
        samesite="none",
    )
    response.headers["Cache-Control"] = "no-store"
    return response


async def _answer(request: Request) -> saml.SamlAnswer:
    """The posted form, read within a size limit; anything malformed becomes an audited refusal, not a 422."""
    body, fields = bytearray(), {}
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            body = bytearray()
            break
    try:
        fields = parse_qs(body.decode("ascii"), max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        fields = {}

    def one(name: str) -> str | None:
        values = fields.get(name, [])
        return values[0] if len(values) == 1 else None

    return saml.SamlAnswer(
        saml_response=one("SAMLResponse"),
        relay_state=one("RelayState"),
        browser_token=request.cookies.get(saml.BROWSER_COOKIE),
        source_address=source_address(request),
        user_agent=request.headers.get("user-agent", ""),
    )


ACS_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["SAMLResponse", "RelayState"],
                    "properties": {
                        "SAMLResponse": {"type": "string", "description": "base64 of the IdP's signed Response"},
                        "RelayState": {"type": "string", "maxLength": 80},
                    },
                }
            }
        },
    }
}


@router.post(
    "/{tenant_slug}/acs",
    status_code=303,
    response_model=SignInOut,
    openapi_extra=ACS_FORM,
    responses={
        303: {"description": "signed in: a session cookie, and on to the page asked for at login"},
        **responses(401, 403, 404, 409),
    },
)
def assertion_consumer_service(
    tenant_slug: TenantSlug,
    request: Request,
    answer: saml.SamlAnswer = Depends(_answer),
    db: Database = Depends(database),
):
    """The identity provider's answer (HTTP-POST binding). Every refusal is audited with its reason."""
    try:
        signed_in = saml.finish_sign_in(db, tenant_slug, answer)
    except saml.SamlSignInRefused as refused:
        # Rendered here: the refusal is audited already, as a sign-in failure, with its reason.
        response = problem(refused.status, refused.slug, refused.title, refused.detail, request)
    else:
        # Pending a second factor, the page asked for learns it from the query, and /auth/me answers 401.
        location = signed_in.next_path
        if signed_in.second_factor_pending:
            location += "?mfa=required"
        out = SignInOut(account_id=signed_in.account_id, mfa_required=signed_in.second_factor_pending)
        response = Response(out.model_dump_json(), status_code=303, media_type="application/json")
        response.headers["Location"] = location
        set_session_cookie(response, signed_in.session_token)
    response.delete_cookie(saml.BROWSER_COOKIE, path=request.url.path, secure=True, httponly=True, samesite="none")
    response.headers["Cache-Control"] = "no-store"
    return response
