"""Audit-coverage recipes of the operator console's and the portal's pages for actions that were API-only
(access, incidents, monitor/alerts and privacy/subjects pages.py): each leaves the event its API route leaves,
in the same chain (registered on import by tests/web/audit_recipes.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from bookwarden.audit.events import PLATFORM_CHAIN, Action
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, PLATFORM_PERMISSIONS, BuiltinRole
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.incidents import affected
from bookwarden.incidents import service as incidents
from bookwarden.incidents.affected import BreachTarget
from bookwarden.monitor.alerts.service import raise_alert
from bookwarden.privacy.requests import service as privacy_requests
from bookwarden.privacy.requests.models import RequestKind
from bookwarden.privacy.requests.service import Decision
from bookwarden.privacy.subjects.models import SubjectExportPackage
from tests.e2e.people import PASSWORD as PATRON_PASSWORD
from tests.e2e.people import patron, publish_notice
from tests.invariants.audit_coverage import Call, quiet_page, route
from tests.web.audit_recipes import form


def _handler() -> Principal:
    return Principal(PrincipalKind.OPERATOR_TOKEN, uuid.uuid4(), None, PLATFORM_PERMISSIONS)


quiet_page("/operator/break-glass", "the break-glass form only: the grant is named by the operator who asked")


@route("POST", "/operator/grants/{tenant_id}/{grant_id}/end")
def _(w):
    client = w.operator_signed_in("olga.sup", "operator_support")
    me = client.get("/api/v1/operator/auth/me").json()
    operator = Principal(
        PrincipalKind.OPERATOR, uuid.UUID(me["id"]), None, BUILTIN_PERMISSIONS[BuiltinRole.OPERATOR_SUPPORT]
    )
    grant = w.grant_requested(operator)
    url = f"/operator/grants/{w.tenant.id}/{grant.id}/end"
    return form(client, url, Action.GRANT_REVOKED, w.tenant.id, {}, page="/operator/grants")


@route("POST", "/operator/break-glass")
def _(w):
    grant = w.grant_requested()  # asked by another operator: the CISO cannot break glass for their own
    fields = {"institution": w.tenant.slug, "grant": str(grant.id), "reason": "the catalogue host is encrypted"}
    client = w.operator_signed_in("carol.ciso", "ciso")
    return form(client, "/operator/break-glass", Action.GRANT_BREAK_GLASS, w.tenant.id, fields)


@route("POST", "/operator/incidents")
def _(w):
    fields = {"title": "Backup host unreachable", "summary": "Two nightly backups failed"}
    return form(w.operator_signed_in(), "/operator/incidents", Action.INCIDENT_OPENED, PLATFORM_CHAIN, fields)


def _incident(w) -> uuid.UUID:
    with platform_session(w.db) as session:
        return incidents.open_incident(session, _handler(), title="Stolen session", summary="Two countries").id


@route("POST", "/operator/incidents/{incident_id}/assign")
def _(w):
    client = w.operator_signed_in()
    me = client.get("/api/v1/operator/auth/me").json()["id"]
    url = f"/operator/incidents/{_incident(w)}"
    return form(client, f"{url}/assign", Action.INCIDENT_ASSIGNED, PLATFORM_CHAIN, {"handler_id": me}, page=url)


@route("POST", "/operator/alerts/{alert_id}/promote")
def _(w):
    with platform_session(w.db) as session:
        alert_id = raise_alert(session, rule="page.recipe", title="A check failed", severity="high").alert.id
    url = f"/operator/alerts/{alert_id}"
    fields = {"summary": "a check failed twice"}
    return form(w.operator_signed_in(), f"{url}/promote", Action.INCIDENT_OPENED, PLATFORM_CHAIN, fields, page=url)


def _breach(w) -> uuid.UUID:
    incident_id = _incident(w)
    affected.mark_breach(
        w.db, _handler(), incident_id, since=datetime.now(UTC) - timedelta(hours=1),
        targets=[BreachTarget("tenant", str(w.tenant.id))], data=["identity"], measures="Sessions revoked.",
        contact="security@bookwarden.example", notify=False,
    )  # fmt: skip
    return incident_id


@route("POST", "/operator/incidents/{incident_id}/breach/notices")
def _(w):
    url = f"/operator/incidents/{_breach(w)}"
    fields = {"institution": str(w.tenant.id)}
    return form(w.operator_signed_in(), f"{url}/breach/notices", Action.BREACH_NOTIFIED, w.tenant.id, fields, page=url)


@route("POST", "/operator/incidents/{incident_id}/breach/declines")
def _(w):
    url = f"/operator/incidents/{_breach(w)}"
    fields = {"institution": str(w.tenant.id), "reason": "only test accounts were touched"}
    client = w.operator_signed_in()
    return form(client, f"{url}/breach/declines", Action.BREACH_NOT_NOTIFIED, w.tenant.id, fields, page=url)


@route("GET", "/portal/packages/{package_id}")
def _(w):
    username = f"reader-{uuid.uuid4().hex[:6]}"
    _, patron_id = patron(w.db, w.tenant.id, username)
    publish_notice(w.db, w.tenant.id, version=f"v-{username}")
    client = w.browser()
    fields = {"institution": w.tenant.slug, "username": username, "password": PATRON_PASSWORD}
    assert form(client, "/signin", None, None, fields).send().status_code == 303
    officer = Principal(
        PrincipalKind.API_TOKEN, uuid.uuid4(), w.tenant.id, BUILTIN_PERMISSIONS[BuiltinRole.PRIVACY_OFFICER]
    )
    with tenant_session(w.db, w.tenant.id) as session:
        request = privacy_requests.register_for_patron(session, officer, patron_id, RequestKind.ACCESS)
        privacy_requests.decide(session, officer, request.id, Decision.APPROVE)
        privacy_requests.start(session, officer, request.id)
        privacy_requests.complete(session, officer, request.id)
        package_id = session.scalars(
            select(SubjectExportPackage.id).where(SubjectExportPackage.request_id == request.id)
        ).one()
    return Call(client, "GET", f"/portal/packages/{package_id}", Action.SUBJECT_EXPORT_DOWNLOADED, w.tenant.id)
