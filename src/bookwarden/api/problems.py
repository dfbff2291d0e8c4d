"""RFC 9457 problem+json for every failure, with a stable `type` per problem.

Validation errors never echo the submitted values: a rejected field may hold personal or
payment data, and error bodies end up in logs and browser consoles.
"""

from __future__ import annotations

import psycopg
import sqlalchemy.exc
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from bookwarden.audit import record as audit
from bookwarden.audit.events import Action, Outcome
from bookwarden.core.errors import BookwardenError, Forbidden, TenantSuspended, Unauthenticated
from bookwarden.core.sensitive import SensitiveDataRefused
from bookwarden.db.session import platform_session
from bookwarden.identity import throttle
from bookwarden.identity.throttle import BudgetSpent
from bookwarden.web import errors as pages

MEDIA_TYPE = "application/problem+json"
log = structlog.get_logger()


class FieldError(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldError] | None = None


# Seconds a caller is asked to wait when the database is unavailable (a restart takes a few).
DATABASE_RETRY_AFTER = 5


def problem_type(slug: str) -> str:
    return f"urn:bookwarden:problem:{slug}"


def problem(
    status: int,
    slug: str,
    title: str,
    detail: str,
    request: Request | None = None,
    errors: list[FieldError] | None = None,
) -> Response:
    if request is not None and pages.is_page(request):
        # The same refusal, shown to a person as a page of the layout (or a sign-in for a 401 on a read).
        return pages.page_problem(request, status, slug, title, detail)
    request_id = getattr(request.state, "request_id", None) if request is not None else None
    body = Problem(
        type=problem_type(slug),
        title=title,
        status=status,
        detail=detail,
        # The request id ties what the caller saw to the server's log line for the same request.
        instance=f"urn:bookwarden:request:{request_id}" if request_id else None,
        errors=errors,
    )
    headers = {"X-Request-ID": request_id} if request_id else None
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, media_type=MEDIA_TYPE, headers=headers)


class ProblemException(StarletteHTTPException):
    """A refusal made below the routes (while a request body is read): an HTTPException, so that
    FastAPI passes it on from its body parsing untouched, rendered here as the problem it names."""

    def __init__(self, status: int, slug: str, title: str, detail: str, errors: list[FieldError] | None = None):
        super().__init__(status_code=status, detail=detail)
        self.slug, self.title, self.errors = slug, title, errors


def _sensitive(exc: SensitiveDataRefused, request: Request) -> JSONResponse:
    return problem(
        422,
        "sensitive-data-refused",
        "Sensitive data refused",
        str(exc),
        request,
        [FieldError(field=exc.field, message=f"looks like a {exc.finding.kind}")],
    )


DENIALS = {
    Unauthenticated.slug: Action.AUTH_REJECTED,
    Forbidden.slug: Action.ACCESS_DENIED,
    TenantSuspended.slug: Action.ACCESS_DENIED,
}


def _record_refusal(request: Request, slug: str, permission: str | None) -> BudgetSpent | None:
    """The audit event of a refused request. Its own transaction: the refused one rolled back.

    A caller with no credential spends from its address's budget first (identity/throttle.py
    ANONYMOUS_EVENTS): once spent, nothing more is recorded until the window ends, and the budget's
    refusal (429 with Retry-After) is returned for the handler to answer with instead.
    """
    action = DENIALS.get(slug, Action.REQUEST_FAILED)
    route = getattr(request.scope.get("route"), "path", None)
    details = {"method": request.method, "route": route, "problem": slug}
    if permission is not None:
        details["permission"] = permission
    db = request.app.state.db
    try:
        if audit.current().principal is None and request.client is not None:
            with platform_session(db) as session:
                throttle.spend(session, throttle.ANONYMOUS_EVENTS, db.master, request.client.host)
        audit.record_now(
            db,
            action,
            outcome=Outcome.DENIED if action is not Action.REQUEST_FAILED else Outcome.FAILED,
            details=details,
        )
    except BudgetSpent as spent:
        log.warning("audit.anonymous_budget_spent", problem=slug, route=route)
        return spent
    except Exception as exc:
        # The refused action did nothing; losing its record must not turn a 4xx into a 500, but it is loud.
        log.error("audit.refusal_not_recorded", error_type=type(exc).__name__, problem=slug)
    return None


def record_refusal(request: Request, refused: BookwardenError) -> None:
    """A refusal a page catches to show on its form (a signed-in reader's): recorded as the handler records it."""
    _record_refusal(request, refused.slug, getattr(refused, "permission", None))


def _over_budget(spent: BudgetSpent, request: Request) -> JSONResponse:
    response = problem(spent.status, spent.slug, spent.title, spent.detail, request)
    response.headers["Retry-After"] = str(spent.retry_after)
    return response


def _field_name(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    @app.exception_handler(BookwardenError)
    async def domain_error(request: Request, exc: BookwardenError):
        spent = await run_in_threadpool(_record_refusal, request, exc.slug, getattr(exc, "permission", None))
        if spent is not None:
            return _over_budget(spent, request)
        response = problem(exc.status, exc.slug, exc.title, exc.detail, request)
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:  # a throttle's refusal (429) says how long to wait
            response.headers["Retry-After"] = str(retry_after)
        return response

    @app.exception_handler(SensitiveDataRefused)
    async def sensitive(request: Request, exc: SensitiveDataRefused):
        spent = await run_in_threadpool(_record_refusal, request, "sensitive-data-refused", None)
        return _over_budget(spent, request) if spent is not None else _sensitive(exc, request)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        for error in errors:
            cause = (error.get("ctx") or {}).get("error")
            if isinstance(cause, SensitiveDataRefused):
                return _sensitive(cause, request)
        fields = [
            FieldError(field=_field_name(tuple(e.get("loc", ()))), message=e.get("msg", "invalid")) for e in errors
        ]
        detail = "; ".join(f"{f.field}: {f.message}" for f in fields[:5])
        return problem(422, "validation-error", "Invalid request", detail, request, fields)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if isinstance(exc, ProblemException):
            if exc.slug == "sensitive-data-refused":  # screened from the body (api/bodies.py): recorded as ever
                spent = await run_in_threadpool(_record_refusal, request, exc.slug, None)
                if spent is not None:
                    return _over_budget(spent, request)
            return problem(exc.status_code, exc.slug, exc.title, exc.detail, request, exc.errors)
        slug = {404: "not-found", 405: "method-not-allowed", 401: "unauthenticated"}.get(exc.status_code, "http-error")
        return problem(exc.status_code, slug, str(exc.detail), str(exc.detail), request)

    @app.exception_handler(sqlalchemy.exc.OperationalError)
    @app.exception_handler(sqlalchemy.exc.InterfaceError)
    @app.exception_handler(psycopg.OperationalError)
    async def database_unavailable(request: Request, exc: Exception):
        # The database is restarting, failing over or refusing connections (or cancelled the statement):
        # the caller may try again, and the pool reconnects by itself (SQLAlchemy drops every connection of
        # a pool that saw a disconnect), so this process needs no restart. Never the error's text: it may
        # name the server, and quote the statement's parameters.
        log.warning("database unavailable", error_type=type(getattr(exc, "orig", None) or exc).__name__)
        response = problem(
            503,
            "database-unavailable",
            "Service unavailable",
            "the database cannot be reached just now (it may be restarting); try again in a few seconds. A change "
            "asked for may not have been made: read it back before asking again",
            request,
        )
        response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER)
        return response

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception):
        # The traceback goes to the log (no locals, so no decrypted values); the caller gets an id to quote.
        log.error("unhandled error", error_type=type(exc).__name__, exc_info=exc)
        return problem(
            500,
            "internal-error",
            "Internal error",
            "an unexpected error occurred; quote the instance id to the operator",
            request,
        )


def responses(*statuses: int) -> dict:
    """OpenAPI entries for the problems a route can answer with."""
    return {
        s: {
            "model": Problem,
            "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
            "description": "problem details (RFC 9457)",
        }
        for s in statuses
    }
