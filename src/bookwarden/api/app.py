"""The FastAPI application: middleware (security headers, request bodies, request ids, logs, metrics),
routers, health, metrics."""

from __future__ import annotations

import hmac
import os
import re
import secrets
import time
import uuid
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from pydantic import BaseModel
from sqlalchemy import text
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bookwarden import areas
from bookwarden.api import docs, problems
from bookwarden.api.access_log import AccessLog, access_record
from bookwarden.api.blocking import AddressBlocks
from bookwarden.api.bodies import RequestBodies
from bookwarden.api.headers import SecurityHeaders, is_https
from bookwarden.audit import record as audit
from bookwarden.core import logs
from bookwarden.core.config import Settings, get_settings
from bookwarden.core.errors import Unauthenticated
from bookwarden.core.sensitive import find_sensitive
from bookwarden.db.session import Database, connect, platform_session
from bookwarden.monitor.response.blocks import BlockCache
from bookwarden.monitor.response.jails import allowlist
from bookwarden.web import site

log = structlog.get_logger()
REQUEST_ID = re.compile(r"^[A-Za-z0-9-]{8,64}$")


class Health(BaseModel):
    status: str


def request_id_for(given: str) -> str:
    """This request's id: the caller's X-Request-ID, when it is a plain one, with a random suffix.

    Every request gets an id of its own even when a client sends the same X-Request-ID twice:
    usage metering counts API calls as distinct request ids in the trail (library/usage.py), so a
    reused id must not make many calls count as one. The caller's id stays the prefix, so its own
    logs still find ours; the id we used comes back in the response's X-Request-ID.
    """
    suffix = secrets.token_hex(6)
    # Kept only when plain, and screened: the id goes into the permanent trail, and a caller must not
    # be able to store a card number there by choosing it as their request id.
    if REQUEST_ID.match(given) and find_sensitive(given) is None:
        return f"{given[: 64 - len(suffix) - 1]}-{suffix}"
    return str(uuid.uuid4())


def user_agent_for(given: str | None) -> str | None:
    """The User-Agent as the trail keeps it: screened like every text the platform stores."""
    if given is not None and find_sensitive(given) is not None:
        return WITHHELD_USER_AGENT
    return given


# In place of a User-Agent that held what looked like payment or bank data (never stored).
WITHHELD_USER_AGENT = "(withheld: looked like payment or bank data)"


class Observe:
    """Every request's id, audit context, metrics, log line and access record (pure ASGI middleware).

    Pure ASGI rather than Starlette's BaseHTTPMiddleware, which runs the rest of the app in a task of its
    own and passes the response through a queue: a cost on every request, and on every chunk of a streamed
    export. The id and the audit context are set before the app runs, in this task, so the route (and the
    thread a sync route runs in, which copies the context) sees them.
    """

    def __init__(self, app: ASGIApp, *, requests: Counter, latency: Histogram, access_log: AccessLog | None):
        self.app, self.requests, self.latency, self.access_log = app, requests, latency, access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        request_id = request_id_for(headers.get("x-request-id", ""))
        scope.setdefault("state", {})["request_id"] = request_id  # request.state.request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        # Who acts (filled in by authentication), from where, in which request: read by audit.record.
        client = scope.get("client")
        context = audit.Context(
            source_address=client[0] if client else None,
            user_agent=user_agent_for(headers.get("user-agent")),
            request_id=request_id,
        )
        status = 500

        async def started_response(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        with audit.acting(context):
            await self.app(scope, receive, started_response)
        elapsed = time.perf_counter() - started
        route = getattr(scope.get("route"), "path", "unmatched")
        method = scope["method"]
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(elapsed)
        log.info("request", method=method, route=route, status=status, ms=round(elapsed * 1000, 2))
        if self.access_log is not None:  # for the monitor (monitor/parse/access.py)
            self.access_log.write(
                access_record(method, route, status, context.source_address, context.user_agent, elapsed, request_id)
            )


class BookwardenApp(FastAPI):
    def build_middleware_stack(self) -> ASGIApp:
        # Outside everything, Starlette's error middleware included: a 500 carries the headers too. Blocked
        # addresses are refused just inside them, before any route, body or credential is looked at.
        blocked = AddressBlocks(super().build_middleware_stack(), self.state.blocks, allowlist(self.state.settings))
        self.state.address_blocks = blocked
        return SecurityHeaders(blocked, https=is_https(self.state.settings.public_url))


def from_environment() -> FastAPI:
    """The app of one `bookwarden serve` worker process: its own settings, logging and connection pools."""
    settings = get_settings()
    logs.configure(settings.log_level)
    db = connect(settings)
    app = create_app(db, settings)
    running = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with running(app) as state:
            yield state
        db.dispose()  # after the last in-flight request: the server's connections end now, not at a timeout
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            multiprocess.mark_process_dead(os.getpid())  # its live gauges leave the sum; its counters stay in it

    app.router.lifespan_context = lifespan
    return app


def create_app(db: Database, settings: Settings) -> FastAPI:

    app = BookwardenApp(
        title="Bookwarden",
        version="0.1.0",
        description="Library customer data, hosted under an enforced security and privacy model.",
        # FastAPI's own pages would load Swagger UI and ReDoc from a CDN; api/docs.py says why they are off.
        docs_url=None,
        redoc_url=None,
    )
    app.state.db = db
    app.state.settings = settings
    app.state.blocks = BlockCache(db, settings.monitor_block_refresh_seconds)  # this process's, polled
    problems.install(app)
    areas.load()
    for router in areas.routers():  # every area's `routes` module, in the manifest's order
        app.include_router(router)
    site.install(app)  # the pages of every area (their `pages` modules) and the static files
    if settings.api_docs:
        docs.install(app)
    # No CORS middleware, on purpose: no other site's page may read an answer or send a preflighted request.
    app.add_middleware(RequestBodies)
    _observability(app, db, settings)
    return app


def _observability(app: FastAPI, db: Database, settings: Settings) -> None:
    registry = CollectorRegistry()
    requests = Counter("bookwarden_http_requests", "HTTP requests", ["method", "route", "status"], registry=registry)
    latency = Histogram(
        "bookwarden_http_request_seconds", "HTTP request latency", ["method", "route"], registry=registry
    )

    access_log = AccessLog(settings.access_log) if settings.access_log is not None else None
    app.add_middleware(Observe, requests=requests, latency=latency, access_log=access_log)

    @app.get("/healthz", response_model=Health, tags=["operations"], responses=problems.responses(503))
    def healthz():
        try:
            with platform_session(db) as session:
                session.execute(text("SELECT 1"))
        except Exception as exc:
            log.warning("health check failed", error_type=type(exc).__name__)
            return problems.problem(503, "unhealthy", "Database unreachable", "the database did not answer")
        return Health(status="ok")

    @app.get(
        "/metrics",
        tags=["operations"],
        response_class=Response,
        responses={
            200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}},
            **problems.responses(401, 404),
        },
    )
    def metrics(request: Request):
        """Prometheus metrics, for a scraper sending BOOKWARDEN_METRICS_TOKEN as a bearer token (404 while unset)."""
        # Route names and counts tell which features an institution uses, and when: not for everyone.
        expected = settings.metrics_token
        if expected is None:
            return problems.problem(404, "not-found", "Not Found", "Not Found", request)
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), expected.get_secret_value().encode()):
            raise Unauthenticated("send the metrics token (BOOKWARDEN_METRICS_TOKEN) as: Authorization: Bearer <token>")
        return Response(generate_latest(exposed()), media_type=CONTENT_TYPE_LATEST)

    def exposed() -> CollectorRegistry:
        # Under `serve --workers N` (N > 1) every worker writes its values to the folder `serve` made: this
        # worker answers for all of them, read from there at each scrape. Otherwise this process's own registry.
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            return registry
        everyone = CollectorRegistry()
        multiprocess.MultiProcessCollector(everyone)
        return everyone
