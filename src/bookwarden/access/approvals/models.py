"""Maker-checker: a sensitive action asked by one person and carried out when another approves."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, String, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from bookwarden.core.classification import STATE, pseudonymous
from bookwarden.core.errors import ApprovalRequired
from bookwarden.db.base import Base


class ApprovalRequest(Base):
    __tablename__ = "approval_requests"
    __table_args__ = (
        CheckConstraint("decided_by IS NULL OR decided_by <> requested_by", name="checker_is_not_maker"),
        # The same rule for people (migration 0025): a token's owner is the person who acted through it.
        CheckConstraint(
            "decided_by_person IS NULL OR requested_by_person IS NULL OR decided_by_person <> requested_by_person",
            name="checker_is_not_maker_person",
        ),
        CheckConstraint("status IN ('pending', 'approved', 'rejected')", name="known_status"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    action: Mapped[str] = mapped_column(String(64), info=STATE)
    params: Mapped[dict] = mapped_column(JSONB, info=pseudonymous("ids and settings only, never personal data"))
    requested_by: Mapped[uuid.UUID]
    # The person behind the asking credential (core/principal.py `person`): the account itself for a
    # session, a token's owner; None for a service token and for requests asked before migration 0025.
    requested_by_person: Mapped[uuid.UUID | None] = mapped_column(
        info=pseudonymous("the id of the account that asked, through a session or one of its tokens")
    )
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16), info=STATE)
    decided_by: Mapped[uuid.UUID | None]
    decided_by_person: Mapped[uuid.UUID | None] = mapped_column(
        info=pseudonymous("the id of the account that decided, through a session or one of its tokens")
    )
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SensitiveAction(enum.StrEnum):
    # Granting any role, built-in or custom, whose permissions make its holder privileged (access/power.py).
    GRANT_ADMIN_ROLE = "grant_admin_role"
    # Creating a custom role, or changing its permissions, so that it carries such permissions
    # (identity/roles.py). The action column is a plain string (no CHECK names the actions): no migration.
    DEFINE_ADMIN_ROLE = "define_admin_role"
    CHANGE_PASSWORD_POLICY = "change_password_policy"  # noqa: S105 - an action name
    # Institutional sign-on: whoever controls the IdP decides who signs in as whom (identity/saml/config.py).
    CONFIGURE_SSO = "configure_sso"
    REMOVE_SSO = "remove_sso"
    # Every patron of the institution, decrypted, in one file (library/export.py).
    EXPORT_PATRONS = "export_patrons"
    # Deleting a patron outside an erasure request: the second person confirms it, and the subject key is
    # destroyed when the grace period ends (library/deletion.py).
    DELETE_PATRON = "delete_patron"
    # One patron's access package outside a data-subject request (privacy/subjects/export.py).
    EXPORT_SUBJECT = "export_subject"
    # How long each category of personal data is kept: when it is destroyed (privacy/retention/service.py).
    CHANGE_RETENTION_POLICY = "change_retention_policy"
    # A staff-initiated erasure request: a second privacy officer approves it (privacy/requests/service.py).
    APPROVE_ERASURE_REQUEST = "approve_erasure_request"
    # Offboarding an institution: its export, then its keys, rows and files destroyed (backup/offboarding.py).
    # Asked and approved by two operators; kept in the institution's own queue, where its staff see it.
    OFFBOARD_TENANT = "offboard_tenant"
    # Sending the prepared breach notices to the institution's affected patrons (incidents/approvals.py).
    SEND_BREACH_NOTICES = "send_breach_notices"


def require_approval(approval: ApprovalRequest | None, action: SensitiveAction, params: dict, what: str) -> None:
    """Refuse unless `approval` is an approved request for exactly this action and these parameters."""
    if approval is None:
        raise ApprovalRequired(
            f"{what} needs a second person's approval: ask at POST /api/v1/approvals; "
            "another holder of the same permission approves it"
        )
    if approval.status != "approved" or approval.action != action.value or approval.params != params:
        raise ApprovalRequired(f"the approval given does not cover {what}")
