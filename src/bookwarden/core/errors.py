"""Typed errors raised by services; api/problems.py and cli.py map them once, in one place."""

from __future__ import annotations


class BookwardenError(Exception):
    """Base: `slug` names the problem type, `status` its HTTP status, the message says what to do."""

    slug = "error"
    status = 400
    title = "Request refused"

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class NotFound(BookwardenError):
    # Also the answer for another tenant's ids: a 404 leaks nothing about whether the id exists.
    slug, status, title = "not-found", 404, "Not found"


class Conflict(BookwardenError):
    slug, status, title = "conflict", 409, "Conflict"


class Gone(BookwardenError):
    """What was here existed and has ended (an expired download): not coming back."""

    slug, status, title = "gone", 410, "Gone"


class InvalidInput(BookwardenError):
    slug, status, title = "invalid-input", 422, "Invalid input"


class Unauthenticated(BookwardenError):
    slug, status, title = "unauthenticated", 401, "Authentication required"


class Forbidden(BookwardenError):
    slug, status, title = "forbidden", 403, "Forbidden"

    def __init__(self, detail: str, permission: str | None = None):
        super().__init__(detail)
        self.permission = permission  # the permission lacking, when that is the reason (audited)


class TenantSuspended(BookwardenError):
    slug, status, title = "tenant-suspended", 403, "Institution suspended"


class IntegrityFailure(BookwardenError):
    """Stored ciphertext failed authentication: it was altered or moved outside Bookwarden."""

    slug, status, title = "integrity-failure", 409, "Stored record failed its integrity check"


class SegregationOfDutiesError(BookwardenError):
    """An assignment would give one person duties that must stay apart."""

    slug, status, title = "segregation-of-duties", 409, "Segregation of duties"


class ApprovalRequired(BookwardenError):
    """A sensitive action needs a second person's approval (maker-checker)."""

    slug, status, title = "approval-required", 409, "Approval required"
