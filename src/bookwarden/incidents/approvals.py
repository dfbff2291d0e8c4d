"""The incidents area's sensitive action: sending the prepared breach notices to the institution's affected
patrons. One holder of incidents.notify asks (the institution's instruction), another approves, and approving
sends them (incidents/affected.py `send_patron_notices`): each prepared notice once."""

from __future__ import annotations

from uuid import UUID

from bookwarden.access.approvals.kinds import ApprovalKind, register
from bookwarden.access.approvals.models import ApprovalRequest, SensitiveAction
from bookwarden.core.errors import Conflict, InvalidInput
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.db.session import TenantSession
from bookwarden.incidents import affected


def _checked(session: TenantSession, params: dict) -> dict:
    try:
        incident_id = UUID(str(params.get("incident_id")))
    except ValueError:
        raise InvalidInput("incident_id: the id of the incident whose patron notices to send") from None
    affected._impact(session, incident_id)  # NotFound for an incident that does not affect this institution
    if not affected.prepared_patrons(session, incident_id):
        raise Conflict(f"incident {incident_id}: no patron notice is waiting to be sent (sent or decided already)")
    return {"incident_id": str(incident_id)}


def _send(session: TenantSession, approver: Principal, request: ApprovalRequest) -> None:
    affected.send_patron_notices(session, approver, UUID(request.params["incident_id"]), request.id)


register(ApprovalKind(SensitiveAction.SEND_BREACH_NOTICES, Permission.INCIDENTS_NOTIFY, _checked, _send))
