"""`bookwarden`: every operation an operator runs by hand."""

from __future__ import annotations

import enum
import functools
import getpass
import os
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from bookwarden.access.permissions import Permission
from bookwarden.access.principal import Principal, PrincipalKind
from bookwarden.audit.events import Action, Outcome
from bookwarden.core.config import Settings, get_settings
from bookwarden.core.errors import BookwardenError, Forbidden

app = typer.Typer(
    help="Bookwarden: library customer data under an enforced security and privacy model.",
    pretty_exceptions_enable=False,  # its tracebacks print local variables: secrets among them
    no_args_is_help=True,
)
db_app = typer.Typer(help="The database server, roles and schema.", no_args_is_help=True)
tenant_app = typer.Typer(help="Institutions (tenants).", no_args_is_help=True)
token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
keys_app = typer.Typer(help="Master and tenant keys.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit trail: verify, export, search.", no_args_is_help=True)
usage_app = typer.Typer(help="Usage metering for charges, derived from the audit trail.", no_args_is_help=True)
privacy_app = typer.Typer(help="Privacy: records of processing.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(tenant_app, name="tenant")
app.add_typer(token_app, name="token")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
app.add_typer(usage_app, name="usage")
app.add_typer(privacy_app, name="privacy")
retention_app = typer.Typer(help="Retention: periods, the purge preview and run reports.", no_args_is_help=True)
app.add_typer(retention_app, name="retention")
operator_app = typer.Typer(
    help="Operator accounts: platform staff who sign in with a password and an authenticator app.", no_args_is_help=True
)
app.add_typer(operator_app, name="operator")
reports_app = typer.Typer(
    help="Anonymized publisher reports: the catalogue, k and noise, budgets, releases.", no_args_is_help=True
)
app.add_typer(reports_app, name="reports")

out = Console()
err = Console(stderr=True)


# -- the console: who runs commands, what each needs, what each leaves in the audit trail ------

CONSOLE_NAMESPACE = uuid.UUID("6f0c2a4e-3b1d-5e8a-9c7f-1d2e3f405162")


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (some containers): the uid still says who
        return f"uid {os.getuid()}"


def console_principal() -> Principal:
    """The platform console acting: one id per OS user. It holds the whole catalogue, read at call time;
    each command still names the one permission it needs, checked through authorize()."""
    return Principal(PrincipalKind.SYSTEM, uuid.uuid5(CONSOLE_NAMESPACE, os_user()), None, frozenset(Permission))


@dataclass
class _Run:
    """One run of the command line: its database (opened on first use) and what it has recorded."""

    db: Any = None
    command: str | None = None
    succeeded_recorded: bool = False


_run: ContextVar[_Run | None] = ContextVar("bookwarden_console_run", default=None)


@contextmanager
def _running() -> Iterator[_Run]:
    run = _Run()
    token = _run.set(run)
    try:
        yield run
    finally:
        _run.reset(token)
        if run.db is not None:
            run.db.dispose()


@app.callback()
def _console(ctx: typer.Context) -> None:
    from bookwarden.audit import record as audit

    # Every audit event of this run names the console as actor, and one request id ties them together.
    context = audit.Context(
        principal=console_principal(),
        source_address="console",
        user_agent="bookwarden-cli",
        request_id=str(uuid.uuid4()),
    )
    ctx.with_resource(audit.acting(context))
    ctx.with_resource(_running())
    from bookwarden.core import logs

    # Logs of a one-shot command go to stderr: its stdout is what it prints (a token, JSON, CSV).
    # `serve` and `worker` configure their own logs on stdout, as services.
    logs.configure(get_settings().log_level, stream="stderr")


def command(group: typer.Typer, name: str, permission: Permission, **options: Any) -> Callable:
    """Declare a command of `group` (a command group, or `app` itself) and the one permission it needs.

        @command(audit_app, "verify", Permission.AUDIT_VERIFY)
        def audit_verify(...) -> None: ...

    The console principal's permissions are checked through authorize() before the command runs,
    and every run leaves an event naming the OS user in the platform chain: console.command when it
    succeeds, access.denied or request.failed when it is refused. The command still records its own
    action's event (tenant.created, audit.verified...): tests/test_audit_coverage.py runs every command
    and fails for one that declares no permission or leaves no event of its own.
    """

    def register(run: Callable) -> Callable:
        @functools.wraps(run)
        def checked(*args: Any, **kwargs: Any) -> Any:
            from bookwarden.access.authorize import authorize

            current = _run.get()
            if current is not None:
                current.command = " ".join(filter(None, (_group_name(group), name)))
            with _console_run(permission):
                authorize(console_principal(), permission)
                return run(*args, **kwargs)

        checked.required_permission = permission  # read by tests/test_audit_coverage.py
        group.command(name, **options)(checked)
        return checked

    return register


def _group_name(group: typer.Typer, parent: typer.Typer | None = None) -> str | None:
    """The words naming `group` on the command line ("privacy requests" for a group inside a group)."""
    for info in (parent or app).registered_groups:
        if info.typer_instance is group:
            return info.name
        inner = _group_name(group, info.typer_instance)
        if inner is not None:
            return f"{info.name} {inner}"
    return None


class Verdict(typer.Exit):
    """The command did its whole work and its exit code reports what it found (1: tampered).

    The run is recorded as console.command with that code, not as a failed request: the
    command's own event (audit.verified, outcome failed) carries the finding.
    """


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(2)


def _institution_id(tenant: str) -> uuid.UUID:
    """An institution named by id or slug, as every --tenant option takes it."""
    from bookwarden.db.session import platform_session
    from bookwarden.tenancy import service

    with platform_session(_connect()) as session:
        return service.get_tenant(session, tenant).id


def _connect():
    """The database of this run: one set of pools per command, closed when the command ends."""
    from bookwarden.db.session import connect

    run = _run.get()
    if run is None:
        return connect(get_settings())
    if run.db is None:
        run.db = connect(get_settings())
    return run.db


def _console_details(**details: Any) -> dict[str, Any]:
    """Details of a console event: the OS user and the command, then the event's own."""
    run = _run.get()
    return {"os_user": os_user(), "command": run.command if run is not None else None, **details}


@contextmanager
def _console_run(permission: Permission) -> Iterator[None]:
    """Record how a command ended: console.command when it succeeded, the refusal or failure otherwise.

    In a transaction of its own, after the command: a refused command's transaction rolled back, and
    `db migrate` must have made the audit tables before anything can be written to them.
    """
    try:
        yield
    except BookwardenError as exc:
        denied = isinstance(exc, Forbidden)
        action = Action.ACCESS_DENIED if denied else Action.REQUEST_FAILED
        given = {"permission": exc.permission} if denied and exc.permission else {}
        _console_event(action, Outcome.DENIED if denied else Outcome.FAILED, problem=exc.slug, **given)
        raise
    except Verdict as exc:
        _command_succeeded(permission, exit_code=exc.exit_code)
        raise
    except typer.Exit as exc:
        if exc.exit_code:
            _console_event(Action.REQUEST_FAILED, Outcome.FAILED, problem="invalid-input", permission=permission)
        else:
            _command_succeeded(permission)
        raise
    except Exception as exc:
        _console_event(Action.REQUEST_FAILED, Outcome.FAILED, problem="internal-error", error=type(exc).__name__)
        raise
    _command_succeeded(permission)


def _command_succeeded(permission: Permission, **details: Any) -> None:
    """console.command, once per run (`db stop` records it before the database goes away)."""
    run = _run.get()
    if run is not None and run.succeeded_recorded:
        return
    if run is not None:
        run.succeeded_recorded = True
    _console_event(Action.CONSOLE_COMMAND, Outcome.SUCCEEDED, permission=permission, **details)


def _console_event(action, outcome, **details: Any) -> None:
    from bookwarden.audit import record as audit

    try:
        audit.record_now(_connect(), action, outcome=outcome, details=_console_details(**details))
    except Exception as exc:
        # The command's own answer stands; losing its record must not hide it, but it is loud.
        err.print(f"[red]warning:[/red] the audit event of this command was not recorded ({type(exc).__name__})")


def _record(action, target: tuple[str, uuid.UUID | None] | None = None, *, tenant_id=None, **details: Any) -> None:
    """The command's own event (with the OS user), committed now: in `tenant_id`'s chain, or the platform's."""
    from bookwarden.audit import record as audit

    audit.record_now(
        _connect(), action, target, outcome=Outcome.SUCCEEDED, details=_console_details(**details), tenant_id=tenant_id
    )


def _migrated_urls(settings: Settings):
    from bookwarden.crypto.master import load_master_keys
    from bookwarden.db import provision
    from bookwarden.db.migrate import migrate
    from bookwarden.db.server import admin_url

    master = load_master_keys(settings)
    urls = provision.provision(admin_url(settings), settings.database_name, master.current)
    migrate(urls)
    return urls


# -- db ------------------------------------------------------------------------------------


@command(db_app, "url", Permission.PLATFORM_DATABASE_MANAGE)
def db_url() -> None:
    """Print the administrative URL of the server in use, on Bookwarden's database (psql, pg_dump)."""
    from bookwarden.db.provision import libpq
    from bookwarden.db.server import admin_url

    settings = get_settings()
    url = libpq(admin_url(settings).set(database=settings.database_name))
    _record(Action.DATABASE_URL_SHOWN)  # the URL carries the administrator's credentials
    print(url)


@command(db_app, "migrate", Permission.PLATFORM_DATABASE_MANAGE)
def db_migrate() -> None:
    """Create roles and databases if needed, and bring both schemas up to date."""
    settings = get_settings()
    _migrated_urls(settings)
    _record(Action.DATABASE_MIGRATED, database=settings.database_name)  # after: a fresh database has no trail yet
    err.print("[green]database is up to date[/green]")


@command(db_app, "stop", Permission.PLATFORM_DATABASE_MANAGE)
def db_stop() -> None:
    """Stop the embedded PostgreSQL server (no effect with BOOKWARDEN_DATABASE_URL)."""
    from bookwarden.db.server import stop_embedded

    settings = get_settings()
    # Recorded first: once stopped, no database is there to take the events. A database that cannot
    # take them (never migrated, say) must still be stoppable: the failure is reported, not fatal.
    try:
        _record(Action.DATABASE_STOPPED, embedded=settings.database_url is None)
    except Exception as exc:
        err.print(f"[red]warning:[/red] the audit event of this stop was not recorded ({type(exc).__name__})")
    _command_succeeded(Permission.PLATFORM_DATABASE_MANAGE)
    _connect().dispose()  # its connections end now rather than be cut by the shutdown
    stopped = stop_embedded(settings.resolved_home / "pg")
    err.print("embedded server stopped" if stopped else "embedded server was not running")


# -- tenants -------------------------------------------------------------------------------


def _tenant_table(tenants) -> Table:
    table = Table("id", "slug", "name", "status", "created")
    for t in tenants:
        table.add_row(str(t.id), t.slug, t.name, t.status.value, t.created_at.isoformat(timespec="seconds"))
    return table


@command(tenant_app, "create", Permission.PLATFORM_TENANTS_MANAGE)
def tenant_create(slug: str, name: str) -> None:
    """Create an institution: its keys, its file area (0700), its row."""
    from bookwarden.db.session import platform_session
    from bookwarden.tenancy import service

    db = _connect()
    with platform_session(db) as session:
        tenant = service.create_tenant(session, db.keyring, get_settings().resolved_home, slug, name)
    out.print(_tenant_table([tenant]))


@command(tenant_app, "list", Permission.PLATFORM_TENANTS_MANAGE)
def tenant_list() -> None:
    """List institutions and their status."""
    from bookwarden.db.session import platform_session
    from bookwarden.tenancy import service

    with platform_session(_connect()) as session:
        out.print(_tenant_table(service.show_tenants(session)))


@command(tenant_app, "suspend", Permission.PLATFORM_TENANTS_MANAGE)
def tenant_suspend(
    tenant: str, reason: Annotated[str, typer.Option(help="why; shown to every refused caller")]
) -> None:
    """Suspend an institution: every request for it is refused until resumed."""
    from bookwarden.db.session import platform_session
    from bookwarden.tenancy import service

    with platform_session(_connect()) as session:
        out.print(_tenant_table([service.suspend_tenant(session, tenant, reason)]))


@command(tenant_app, "resume", Permission.PLATFORM_TENANTS_MANAGE)
def tenant_resume(tenant: str) -> None:
    """Lift a suspension."""
    from bookwarden.db.session import platform_session
    from bookwarden.tenancy import service

    with platform_session(_connect()) as session:
        out.print(_tenant_table([service.resume_tenant(session, tenant)]))


# -- tokens --------------------------------------------------------------------------------


@command(token_app, "create", Permission.PLATFORM_TOKENS_ISSUE)
def token_create(
    tenant: Annotated[str | None, typer.Option(help="institution id or slug")] = None,
    operator: Annotated[bool, typer.Option("--operator", help="a platform operator token instead")] = False,
    name: Annotated[str, typer.Option(help="what the token is for")] = "api",
    permission: Annotated[list[str] | None, typer.Option(help="repeatable; see --role for bundles")] = None,
    role: Annotated[str | None, typer.Option(help="give the token a built-in role's permissions")] = None,
    days: Annotated[int, typer.Option(min=1, max=366, help="lifetime in days")] = 90,
) -> None:
    """Create an API token; it is printed once and stored only as a hash.

    Default permissions: read and write the hosted library data (tenant), manage tenants (operator).
    """
    from bookwarden.access.permissions import BUILTIN_PERMISSIONS, LIBRARY_READ, LIBRARY_WRITE, BuiltinRole, Permission
    from bookwarden.db.session import platform_session, tenant_session
    from bookwarden.identity import tokens

    if operator == (tenant is not None):
        raise _fail("give either --tenant or --operator")
    try:
        chosen = {Permission(p) for p in permission or []} | set(BUILTIN_PERMISSIONS[BuiltinRole(role)] if role else ())
    except ValueError as exc:
        permissions = ", ".join(p.value for p in Permission)
        raise _fail(f"{exc}; permissions: {permissions}; roles: {', '.join(r.value for r in BuiltinRole)}") from None
    db = _connect()
    if operator:
        with platform_session(db) as session:
            _, secret = tokens.issue_operator_token(
                session, name, sorted(chosen or {Permission.PLATFORM_TENANTS_MANAGE}), timedelta(days=days)
            )
    else:
        tenant_id = _institution_id(tenant)
        with tenant_session(db, tenant_id) as session:
            _, secret = tokens.issue_api_token(
                session, name, sorted(chosen or LIBRARY_READ | LIBRARY_WRITE), timedelta(days=days)
            )
    print(secret)


# -- operator accounts ---------------------------------------------------------------------


def _operator_table(operators) -> Table:
    table = Table("id", "username", "role", "status", "created")
    for o in operators:
        table.add_row(str(o.id), o.username, o.role, o.status, o.created_at.isoformat(timespec="seconds"))
    return table


def _print_enrolment_link(enrolment) -> None:
    # The link is the account's only way in: printed once, to be handed to its holder in person or by a
    # channel the platform trusts (the platform has no mail of its own); stdout only, never a log.
    until = enrolment.link.expires_at.strftime("%H:%M UTC on %d %B %Y")
    err.print(
        f"enrolment link for {enrolment.account.username} ({enrolment.account.role}), works once until {until}; "
        "whoever opens it sets the password and the authenticator app:"
    )
    print(enrolment.url)


@command(operator_app, "create", Permission.PLATFORM_OPERATORS_MANAGE)
def operator_create(
    username: str,
    role: Annotated[str, typer.Option(help="operator_support, operator_ops, ciso or dpo")],
) -> None:
    """Create an operator account and print its one-time enrolment link (password and authenticator app)."""
    from bookwarden.db.session import platform_session
    from bookwarden.identity.operators import service as operator_accounts

    db = _connect()
    with platform_session(db) as session:
        enrolment = operator_accounts.create_operator(session, db.keyring, db.master, username, role)
    _print_enrolment_link(enrolment)


@command(operator_app, "enrolment-link", Permission.PLATFORM_OPERATORS_MANAGE)
def operator_enrolment_link(username: str) -> None:
    """A new enrolment link for an account that has not enrolled yet; the earlier link stops working."""
    from bookwarden.db.session import platform_session
    from bookwarden.identity.operators import service as operator_accounts

    db = _connect()
    with platform_session(db) as session:
        enrolment = operator_accounts.issue_enrolment_link(session, db.master, username)
    _print_enrolment_link(enrolment)


@command(operator_app, "disable", Permission.PLATFORM_OPERATORS_MANAGE)
def operator_disable(username: str) -> None:
    """Disable an operator account: no sign-in, and its sessions end at once."""
    from bookwarden.db.session import platform_session
    from bookwarden.identity.operators import service as operator_accounts

    with platform_session(_connect()) as session:
        out.print(_operator_table([operator_accounts.disable(session, username)]))


@command(operator_app, "enable", Permission.PLATFORM_OPERATORS_MANAGE)
def operator_enable(username: str) -> None:
    """Enable a disabled operator account again."""
    from bookwarden.db.session import platform_session
    from bookwarden.identity.operators import service as operator_accounts

    with platform_session(_connect()) as session:
        out.print(_operator_table([operator_accounts.enable(session, username)]))


@command(operator_app, "list", Permission.PLATFORM_OPERATORS_MANAGE)
def operator_list() -> None:
    """List operator accounts, their roles and status."""
    from bookwarden.db.session import platform_session
    from bookwarden.identity.operators import service as operator_accounts

    with platform_session(_connect()) as session:
        out.print(_operator_table(operator_accounts.list_operators(session)))


# -- keys ----------------------------------------------------------------------------------


@command(keys_app, "rotate-tenant", Permission.PLATFORM_KEYS_ROTATE)
def keys_rotate_tenant(tenant: str) -> None:
    """New tenant data key; re-wrap every subject key under it (no data re-encrypted). Resumable."""

    db = _connect()
    tenant_id = _institution_id(tenant)
    count = db.keyring.rotate_tenant_key(tenant_id)
    _record(Action.KEY_ROTATED, ("tenant", tenant_id), tenant_id=tenant_id, key="tenant", subject_keys_rewrapped=count)
    err.print(f"tenant key rotated; {count} subject keys re-wrapped")


@command(keys_app, "rotate-master", Permission.PLATFORM_KEYS_ROTATE)
def keys_rotate_master() -> None:
    """New master key; re-wrap every tenant key under it. Key-file mode only; resumable after a crash."""
    from bookwarden.crypto import rotation

    settings = get_settings()
    if settings.master_key is not None:
        raise _fail(
            "the master key comes from BOOKWARDEN_MASTER_KEY; rotate it in your secret store, "
            "unset the variable to use the key file, or see README 'Keys'"
        )
    count = rotation.rotate_master(settings)
    _record(Action.KEY_ROTATED, key="master", tenant_keys_rewrapped=count)  # connected under the new key
    err.print(f"master key rotated; {count} tenant keys re-wrapped")


# -- processes -----------------------------------------------------------------------------


@command(app, "serve", Permission.PLATFORM_SERVICES_RUN)
def serve(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the HTTP API."""
    import uvicorn

    from bookwarden.api.app import create_app
    from bookwarden.core import logs

    settings = get_settings()
    logs.configure(settings.log_level)
    _record(Action.SERVICE_STARTED, service="api", host=host, port=port)
    uvicorn.run(create_app(_connect(), settings), host=host, port=port, log_config=None, access_log=False)


@command(app, "worker", Permission.PLATFORM_SERVICES_RUN)
def worker(name: Annotated[str, typer.Option(help="worker name in job leases")] = "worker") -> None:
    """Run background jobs until SIGTERM/SIGINT."""
    from bookwarden.core import logs
    from bookwarden.jobs.housekeeping import declare_all
    from bookwarden.jobs.worker import Worker, stop_on_signals

    settings = get_settings()
    logs.configure(settings.log_level)
    stop = threading.Event()
    stop_on_signals(stop)
    db = _connect()
    declare_all(db)
    _record(Action.SERVICE_STARTED, service="worker", name=name)
    Worker(db, name).run_forever(stop)


@command(app, "demo", Permission.PLATFORM_DEMO_SEED)
def demo(
    patrons: Annotated[int, typer.Option(min=1, max=10_000, help="patrons per institution, when first seeded")] = 200,
) -> None:
    """Seed two demo institutions (once); print a fresh API token and desk sign-in for each."""
    from bookwarden import demo as demo_data

    for slug, given in demo_data.seed(_connect(), get_settings(), patrons_each=patrons).items():
        out.print(f"[bold]{slug}[/bold] API token: {given.api_token}")
        out.print(
            f"[bold]{slug}[/bold] sign-in: institution {slug}, user {given.desk_username}, "
            f"password {given.desk_password}"
        )


# -- audit -----------------------------------------------------------------------------------


@command(audit_app, "search", Permission.AUDIT_READ)
def audit_search(
    tenant: Annotated[str, typer.Option(help="institution id or slug")],
    actor_id: Annotated[str | None, typer.Option(help="who acted: token, account or operator id")] = None,
    actor_kind: Annotated[str | None, typer.Option(help="api_token, account, operator_token, system...")] = None,
    action: Annotated[str | None, typer.Option(help='an action, or a prefix ending in "." (patron.)')] = None,
    target_kind: Annotated[str | None, typer.Option(help="patron, loan, account...")] = None,
    target_id: Annotated[str | None, typer.Option(help="id of the record or account acted on")] = None,
    outcome: Annotated[str | None, typer.Option(help="succeeded, denied or failed")] = None,
    since: Annotated[str | None, typer.Option("--from", help="ISO 8601 time, inclusive (UTC if no offset)")] = None,
    until: Annotated[str | None, typer.Option("--to", help="ISO 8601 time, exclusive (UTC if no offset)")] = None,
    order: Annotated[str, typer.Option(help="newest or oldest first")] = "newest",
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv")] = "jsonl",
    output: Annotated[Path | None, typer.Option(help="write here (mode 0600) instead of stdout")] = None,
) -> None:
    """Every event of an institution's audit trail matching the filters, as JSON lines or CSV (streamed)."""
    from contextlib import closing

    from bookwarden.audit import record as audit
    from bookwarden.audit import search
    from bookwarden.audit.events import Action, Outcome
    from bookwarden.db.session import tenant_session

    query = search.EventQuery(
        actor_id=_uuid_option("--actor-id", actor_id),
        actor_kind=actor_kind,
        action=action,
        target_kind=target_kind,
        target_id=_uuid_option("--target-id", target_id),
        outcome=_choice("--outcome", outcome, Outcome) if outcome else None,
        since=_time_option("--from", since),
        until=_time_option("--to", until),
        order=_choice("--order", order, search.Order),
    )
    db = _connect()
    tenant_id = _institution_id(tenant)
    chunks = search.export(
        db,
        lambda: tenant_session(db, tenant_id),
        query,
        _choice("--format", fmt, search.ExportFormat),
        audit.current(),
        Action.AUDIT_SEARCHED,
    )
    # closing(): a reader that stops early (| head) still leaves the search's event, with the rows sent.
    with closing(chunks), _binary_output(output) as sink:
        for chunk in chunks:
            sink.write(chunk)
    if output is not None:
        err.print(f"written to {output}")


def _choice(name: str, value: str, choices: type[enum.Enum]) -> Any:
    try:
        return choices(value)
    except ValueError:
        raise _fail(f"{name}: {value!r} is none of {', '.join(c.value for c in choices)}") from None


def _uuid_option(name: str, value: str | None) -> uuid.UUID | None:
    if value is None:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise _fail(f"{name}: {value!r} is not an id") from None


def _time_option(name: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _fail(f"{name}: {value!r} is not an ISO 8601 time (2026-03-01 or 2026-03-01T12:00:00+01:00)") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@contextmanager
def _binary_output(path: Path | None) -> Iterator[Any]:
    if path is None:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    # 0600: the trail names addresses and user agents; the file is for whoever ran the command.
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as sink:
        yield sink


# -- audit: checkpoints, proofs, verification, bundles ---------------------------------------


def _chain_id(ref: str):
    """An institution's id or slug, or "platform" for the platform's own chain."""
    from bookwarden.audit.events import PLATFORM_CHAIN
    from bookwarden.db.session import platform_session
    from bookwarden.tenancy import service

    if ref == "platform":
        return PLATFORM_CHAIN
    with platform_session(_connect()) as session:
        return service.get_tenant(session, ref).id


_EVERY_CHAIN = 'institution id or slug, or "platform"; default: every chain'


@command(audit_app, "public-key", Permission.AUDIT_READ)
def audit_public_key() -> None:
    """Print the public key that signs audit checkpoints (base64, raw Ed25519) and its key id."""
    from bookwarden.audit import signing

    key = signing.load_signing_key(get_settings())
    _record(Action.AUDIT_KEY_VIEWED, key_id=key.key_id)
    print(signing.encode_public_key(key.public))
    print(f"key id {key.key_id}")


@command(audit_app, "rotate-signing-key", Permission.PLATFORM_KEYS_ROTATE)
def audit_rotate_signing_key() -> None:
    """A new key signs checkpoints and erasure certificates from now on; the old public key is kept as
    retired (<home>/audit-signing-retired.pub), so what it signed still verifies. Key-file mode only."""
    from bookwarden.audit import signing

    old, new = signing.rotate_signing_key(get_settings())  # refused (nothing written) in environment-key mode
    _record(Action.KEY_ROTATED, key="audit_signing", retired_key_id=old, key_id=new)
    err.print(f"audit signing key rotated: key {new} signs from now on; key {old} is retired and still trusted")
    err.print("give auditors the new public key: bookwarden audit public-key")


@command(audit_app, "checkpoint", Permission.PLATFORM_SERVICES_RUN)
def audit_checkpoint(
    tenant: Annotated[str | None, typer.Option(help=_EVERY_CHAIN)] = None,
) -> None:
    """Seal a chain (or every chain) now in a signed Merkle checkpoint, whatever the schedule says."""
    from bookwarden.audit import checkpoints, signing
    from bookwarden.audit.record import current
    from bookwarden.db.session import tenant_session

    key = signing.load_signing_key(get_settings())
    db = _connect()
    if tenant is None:
        made = checkpoints.checkpoint_all(db, key, every_events=None, every=None, actor=current().principal)
    else:
        with tenant_session(db, _chain_id(tenant)) as session:
            made = [c for c in [checkpoints.make_checkpoint(session, key)] if c is not None]
    for checkpoint in made:
        out.print(f"tenant {checkpoint.tenant_id}: checkpoint at size {checkpoint.tree_size}, "
                  f"root {checkpoint.root_hash.hex()}, key {checkpoint.key_id}")
    if not made:
        err.print("nothing new to seal")


@command(audit_app, "prove", Permission.AUDIT_READ)
def audit_prove(
    tenant: Annotated[str, typer.Option(help='institution id or slug, or "platform"')],
    seq: Annotated[int | None, typer.Option(min=1, help="inclusion proof of this event")] = None,
    size: Annotated[int | None, typer.Option(min=1, help="against this checkpoint (default: the newest)")] = None,
    old: Annotated[int | None, typer.Option("--from", min=1, help="consistency proof from this checkpoint")] = None,
    new: Annotated[int | None, typer.Option("--to", min=1, help="... to this checkpoint size")] = None,
) -> None:
    """Print, as JSON, an inclusion proof (--seq) or a consistency proof between checkpoints (--from, --to)."""
    import json

    from bookwarden.audit import checkpoints
    from bookwarden.db.session import tenant_session

    if (seq is None) == (old is None and new is None) or (seq is None and (old is None or new is None)):
        raise _fail("give either --seq N [--size S], or --from SIZE --to SIZE")
    chain = _chain_id(tenant)
    with tenant_session(_connect(), chain) as session:
        if seq is not None:
            proof = checkpoints.inclusion_proof(session, seq, size)
        else:
            proof = checkpoints.consistency_proof(session, old, new)
    _record(Action.AUDIT_PROVED, ("audit_chain", chain), tenant_id=chain, seq=seq, tree_size=size, old=old, new=new)
    print(json.dumps(proof, indent=2))


@command(audit_app, "verify", Permission.AUDIT_READ)
def audit_verify(
    tenant: Annotated[str | None, typer.Option(help=_EVERY_CHAIN)] = None,
    since: Annotated[int | None, typer.Option(min=1, help="start at this checkpoint size (its signature and "
                                                          "frontier); check only later events")] = None,
    public_key: Annotated[list[str] | None, typer.Option(help="also trust this key (base64); repeatable")] = None,
) -> None:
    """Check each chain: seq, body digests, hash links, head, signed checkpoints. Exit 0 clean, 1 tampered.

    The first broken event of a chain is named: tenant, seq, event id and what is wrong.
    """
    from bookwarden.audit import checkpoints, signing, verify
    from bookwarden.audit.record import record
    from bookwarden.db.session import tenant_session

    if since is not None and tenant is None:
        raise _fail("--since needs --tenant: checkpoint sizes belong to one chain")
    pinned = [signing.decode_public_key(k) for k in public_key or []]
    keys = signing.TrustedKeys(*signing.trusted_public_keys(get_settings()), *pinned)
    db = _connect()
    chains = [_chain_id(tenant)] if tenant is not None else checkpoints.chain_ids(db)
    tampered = False
    for chain in chains:
        report = verify.verify_chain(db, chain, keys, since)
        for note in report.notes:
            err.print(f"tenant {chain}: {note}")
        print(report.summary(), flush=True)
        tampered |= not report.clean
        finding = report.finding
        try:
            with tenant_session(db, chain) as session:
                record(session, Action.AUDIT_VERIFIED, ("audit_chain", chain),
                       outcome=Outcome.SUCCEEDED if report.clean else Outcome.FAILED,
                       details={"from_seq": report.start.seq + 1, "to_seq": report.last_seq,
                                "events": report.events, "problem_seq": finding.seq if finding else None})
        except Exception as exc:
            if report.clean:
                raise
            # A tampered chain may refuse appends (a forged row sits where the next event goes): the
            # verdict above stands.
            err.print(f"[red]warning:[/red] the audit.verified event was not recorded ({type(exc).__name__})")
        err.print(f"{report.events:,} events in {report.seconds:.2f} s ({report.rate:,.0f}/s)")
    if tampered:
        raise Verdict(1)


@command(audit_app, "export", Permission.AUDIT_READ)
def audit_export(
    tenant: Annotated[str, typer.Option(help='institution id or slug, or "platform"')],
    output: Annotated[Path, typer.Option(help="bundle file to write (.tar.gz, mode 0600)")],
) -> None:
    """Write a chain's bundle: events as OCSF-shaped JSON lines, signed checkpoints, the public key, a manifest.

    `bookwarden audit verify-bundle FILE` checks it anywhere, with no database.
    """
    from bookwarden.audit import bundle, signing

    chain = _chain_id(tenant)
    summary = bundle.export_bundle(_connect(), chain, output, signing.trusted_public_keys(get_settings()))
    _record(Action.AUDIT_EXPORTED, ("audit_chain", chain), tenant_id=chain, format="bundle", events=summary.events,
            first_seq=summary.first_seq, last_seq=summary.last_seq)
    err.print(f"{summary.events:,} events (seq {summary.first_seq}..{summary.last_seq}) and "
              f"{summary.checkpoints} checkpoints written to {output}")


@audit_app.command("verify-bundle")
def audit_verify_bundle(
    file: Annotated[Path, typer.Argument(help="a bundle written by bookwarden audit export")],
    public_key: Annotated[list[str] | None, typer.Option(help="trust only these keys (base64, from `bookwarden "
                                                              "audit public-key`); repeatable; default: the "
                                                              "bundle's own")] = None,
) -> None:
    """Verify a bundle offline: chain, checkpoints, signatures, OCSF fields. Exit 0 clean, 1 tampered.

    Needs no database and no permission (declares none, records nothing): it reads only the file,
    so an auditor runs it on any machine.
    """
    from bookwarden.audit import bundle, signing

    pinned = [signing.decode_public_key(k) for k in public_key] if public_key else None
    report, notes = bundle.verify_bundle(file, pinned)
    for note in notes:
        err.print(note)
    print(report.summary())
    err.print(f"{report.events:,} events in {report.seconds:.2f} s ({report.rate:,.0f}/s)")
    if not report.clean:
        raise typer.Exit(1)


# Commands that must run with no database at all, so declare no permission and leave no event (an
# auditor's machine has no Bookwarden database to check or record against), each with its reason.
OFFLINE_COMMANDS = {
    ("audit", "verify-bundle"): "verifies a bundle file anywhere, trusting only the file and a pinned key",
}


# -- usage -----------------------------------------------------------------------------------


@command(usage_app, "report", Permission.PLATFORM_USAGE_READ)
def usage_report(
    tenant: Annotated[str | None, typer.Option(help="institution id or slug; default: every institution")] = None,
    month: Annotated[str | None, typer.Option(help="YYYY-MM, calendar month in UTC; default: this month")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, json or csv")] = "table",
) -> None:
    """API calls, events, records held and storage bytes per institution for one month (for charges).

    API calls and events are the month's, from the audit trail; records and bytes are as of now.
    """
    import csv
    import json

    from bookwarden.audit import metering
    from bookwarden.core.csv_safety import spreadsheet_safe

    if fmt not in ("table", "json", "csv"):
        raise _fail(f"--format: {fmt!r} is none of table, json, csv")
    usages = metering.report(_connect(), month or metering.current_month(), tenant)
    if fmt == "json":
        print(json.dumps([{"slug": slug, **usage.as_dict()} for slug, usage in usages], indent=2))
    elif fmt == "csv":
        tables = metering.table_names()
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow([*USAGE_COLUMNS, *(f"{t}_{m}" for t in tables for m in ("rows", "bytes"))])
        for slug, usage in usages:
            row = usage.as_dict()
            per_table = [row["tables"][t][m] for t in tables for m in ("rows", "bytes")]
            writer.writerow(spreadsheet_safe([slug, *(row[c] for c in USAGE_COLUMNS[1:]), *per_table]))
    else:
        out.print(_usage_table(usages))


USAGE_COLUMNS = (
    "slug",
    "tenant_id",
    "month",
    "api_calls",
    "events_recorded",
    "records_held",
    "storage_bytes",
    "measured_at",
)


def _usage_table(usages) -> Table:
    table = Table("institution", "month", "API calls", "events", "records", "storage bytes", title="Usage")
    for column in table.columns[2:]:
        column.justify = "right"
    for slug, usage in usages:
        table.add_row(
            slug,
            usage.month,
            f"{usage.api_calls:,}",
            f"{usage.events_recorded:,}",
            f"{usage.records_held:,}",
            f"{usage.storage_bytes:,}",
        )
    return table


# -- privacy ---------------------------------------------------------------------------------


certificate_app = typer.Typer(help="Erasure certificates: show and verify.", no_args_is_help=True)
privacy_app.add_typer(certificate_app, name="certificate")



@command(privacy_app, "export", Permission.PRIVACY_REQUESTS_HANDLE)
def privacy_export(
    tenant: Annotated[str, typer.Option(help="institution id or slug")],
    patron: Annotated[str, typer.Option(help="the patron's id")],
    request: Annotated[str | None, typer.Option(help="the data-subject request it answers")] = None,
) -> None:
    """Build a patron's access package; print its id, expiry and download link (shown once, valid 7 days)."""
    import json

    from bookwarden.db.session import tenant_session
    from bookwarden.privacy.subjects import export as subject_export

    patron_id = _uuid_option("--patron", patron)
    request_id = _uuid_option("--request", request)
    with tenant_session(_connect(), _institution_id(tenant)) as session:
        package = subject_export.build_package(session, patron_id, request_id=request_id)
    print(json.dumps({"id": str(package.id), "patron_id": str(package.patron_id), "records": package.record_count,
                      "bytes": package.size_bytes, "expires_at": package.expires_at.isoformat(),
                      "download_path": package.download_path}, indent=2))  # fmt: skip


@command(certificate_app, "show", Permission.PRIVACY_REQUESTS_HANDLE)
def privacy_certificate_show(
    certificate: Annotated[str, typer.Argument(help="the certificate's id")],
    tenant: Annotated[str, typer.Option(help="institution id or slug")],
) -> None:
    """Print an erasure certificate: its signed statement, the signature and the key that made it."""
    import json

    from bookwarden.audit import signing
    from bookwarden.db.session import tenant_session
    from bookwarden.privacy.subjects import erasure

    key = signing.load_signing_key(get_settings())
    with tenant_session(_connect(), _institution_id(tenant)) as session:
        found = erasure.view_certificate(session, _uuid_option("CERTIFICATE", certificate))
        print(json.dumps(erasure.document(found, key.public), indent=2, sort_keys=True))


@command(certificate_app, "verify", Permission.PRIVACY_REQUESTS_HANDLE)
def privacy_certificate_verify(
    tenant: Annotated[str, typer.Option(help="institution id or slug")],
    certificate: Annotated[str | None, typer.Argument(help="a stored certificate's id")] = None,
    file: Annotated[Path | None, typer.Option(help="a certificate as `show` or the API gave it (JSON)")] = None,
    public_key: Annotated[list[str] | None, typer.Option(help="also trust this key (base64); repeatable")] = None,
) -> None:
    """Check an erasure certificate's signature against the platform's key. Exit 0 valid, 1 not."""
    import json

    from bookwarden.audit import signing
    from bookwarden.db.session import tenant_session
    from bookwarden.privacy.subjects import erasure

    if (certificate is None) == (file is None):
        raise _fail("give a certificate id or --file, one of them")
    pinned = [signing.decode_public_key(k) for k in public_key or []]
    trusted = [*signing.trusted_public_keys(get_settings()), *pinned]
    with tenant_session(_connect(), _institution_id(tenant)) as session:
        if file is not None:
            try:
                document = json.loads(file.read_text())
            except (OSError, ValueError) as exc:
                raise _fail(f"cannot read a certificate from {file}: {exc}") from None
            if not isinstance(document, dict):
                raise _fail(f"{file} holds no certificate")
            verdict = erasure.verify_document(document, trusted)
            erasure.record_verification(session, verdict)
        else:
            _, verdict = erasure.verify_stored(session, _uuid_option("CERTIFICATE", certificate), trusted)
    if verdict.valid:
        print(f"certificate {verdict.certificate_id}: valid, signed by key {verdict.key_id}")
        return
    print(f"certificate {verdict.certificate_id}: NOT VALID: {verdict.problem}")
    raise Verdict(1)


@command(privacy_app, "records", Permission.PRIVACY_RECORDS_READ)
def privacy_records(
    tenant: Annotated[str, typer.Option(help="institution id or slug")],
    fmt: Annotated[str, typer.Option("--format", help="json or csv (one row per category)")] = "json",
) -> None:
    """An institution's records of processing (GDPR art. 30), generated from the personal-data registry."""
    from bookwarden.db.session import tenant_session
    from bookwarden.privacy.records import service as records

    chosen = _choice("--format", fmt, records.RecordsFormat)
    db = _connect()
    tenant_id = _institution_id(tenant)
    with tenant_session(db, tenant_id) as session:
        body = records.export(session, chosen)  # recorded in the institution's trail
    sys.stdout.write(body if body.endswith("\n") else body + "\n")


@command(privacy_app, "disclosures", Permission.PRIVACY_DISCLOSURES_MANAGE)
def privacy_disclosures(
    tenant: Annotated[str, typer.Option(help="institution id or slug")],
    patron: Annotated[str | None, typer.Option(help="only the disclosures naming this patron id")] = None,
) -> None:
    """An institution's disclosures of personal data to third parties, newest first, as JSON lines:
    recipient, kind, purpose, basis, categories and counts (never who; the API shows that)."""
    import json

    from bookwarden.db.session import tenant_session
    from bookwarden.privacy.disclosures import service as disclosures

    patron_id = _uuid_option("--patron", patron)
    db = _connect()
    tenant_id = _institution_id(tenant)
    with tenant_session(db, tenant_id) as session:
        found = disclosures.list_disclosures(session, console_principal(), patron_id=patron_id)
        lines = [json.dumps(disclosures.summary(d), sort_keys=True) for d in found]
    sys.stdout.write("".join(line + "\n" for line in lines))


# -- publisher reports -----------------------------------------------------------------------



@command(reports_app, "catalogue-import", Permission.REPORTS_CATALOGUE_MANAGE)
def reports_catalogue_import(
    file: Annotated[Path, typer.Argument(help="UTF-8 CSV with the header item_id,title,publisher")],
    tenant: Annotated[str, typer.Option(help="institution id or slug")],
    replace: Annotated[bool, typer.Option(help="also remove the items the file does not list")] = False,
) -> None:
    """Load titles and publishers of items: every line checked first, nothing written unless all pass."""
    from bookwarden.db.session import tenant_session
    from bookwarden.privacy.reports import catalogue

    try:
        content = file.read_bytes()
    except OSError as exc:
        raise _fail(f"cannot read {file}: {exc.strerror}") from None
    with tenant_session(_connect(), _institution_id(tenant)) as session:
        summary = catalogue.load(session, console_principal(), content, replace=replace)
    err.print(
        f"{summary.items:,} items: {summary.added:,} added, {summary.changed:,} changed, "
        f"{summary.unchanged:,} unchanged, {summary.removed:,} removed"
    )


@command(reports_app, "policy", Permission.REPORTS_POLICY_MANAGE)
def reports_policy(
    tenant: Annotated[str, typer.Option(help="institution id or slug")],
    k: Annotated[int | None, typer.Option(help="suppress cells under k patrons (10 at least)")] = None,
    noise: Annotated[bool | None, typer.Option("--noise/--no-noise", help="add differential-privacy noise")] = None,
    epsilon_per_report: Annotated[float | None, typer.Option(help="epsilon a report spends by default")] = None,
    publisher_budget: Annotated[float | None, typer.Option(help="default total epsilon per publisher")] = None,
    max_cells_per_patron: Annotated[int | None, typer.Option(help="title-months a patron counts in")] = None,
    max_loans_per_cell: Annotated[int | None, typer.Option(help="loans of one patron counted per cell")] = None,
) -> None:
    """Show an institution's rules for publisher reports, or change the ones given."""
    import json

    from bookwarden.db.session import tenant_session
    from bookwarden.privacy.reports import service as publisher_reports

    changes = {
        "k": k,
        "noise": noise,
        "epsilon_per_report": epsilon_per_report,
        "publisher_budget": publisher_budget,
        "max_cells_per_patron": max_cells_per_patron,
        "max_loans_per_cell": max_loans_per_cell,
    }
    with tenant_session(_connect(), _institution_id(tenant)) as session:
        if any(value is not None for value in changes.values()):
            policy = publisher_reports.set_policy(session, console_principal(), **changes)
        else:
            policy = publisher_reports.read_policy(session, console_principal())
    print(json.dumps(policy.as_dict(), indent=2))


@command(reports_app, "budget", Permission.REPORTS_POLICY_MANAGE)
def reports_budget(
    tenant: Annotated[str, typer.Option(help="institution id or slug")],
    publisher: Annotated[str | None, typer.Option(help="the publisher whose budget to set")] = None,
    budget: Annotated[float | None, typer.Option(help="total epsilon the publisher may receive")] = None,
) -> None:
    """List publishers' privacy budgets, or set one (--publisher and --budget)."""
    from bookwarden.db.session import tenant_session
    from bookwarden.privacy.reports import service as publisher_reports

    if (publisher is None) != (budget is None):
        raise _fail("--publisher and --budget go together (neither: list the budgets)")
    with tenant_session(_connect(), _institution_id(tenant)) as session:
        if publisher is not None and budget is not None:
            rows = [publisher_reports.set_budget(session, console_principal(), publisher, budget)]
        else:
            rows = publisher_reports.budgets(session, console_principal())
        table = Table("publisher", "budget", "spent", "remaining", title="Privacy budgets (epsilon)")
        for row in rows:
            table.add_row(row.publisher, f"{row.budget:g}", f"{row.spent:g}", f"{row.budget - row.spent:g}")
    out.print(table)


@command(reports_app, "publishers", Permission.REPORTS_PUBLISHERS)
def reports_publishers(
    tenant: Annotated[str, typer.Option(help="institution id or slug")],
    publisher: Annotated[str, typer.Option(help="the publisher, as the catalogue names it")],
    first_month: Annotated[str, typer.Option("--from", help="first month, YYYY-MM")],
    last_month: Annotated[str, typer.Option("--to", help="last month, YYYY-MM (ended)")],
    epsilon: Annotated[float | None, typer.Option(help="with noise on: epsilon to spend")] = None,
    fmt: Annotated[str, typer.Option("--format", help="json or csv")] = "json",
) -> None:
    """Release a publisher's anonymized usage report (cells under k patrons suppressed) and print it."""
    from bookwarden.db.session import tenant_session
    from bookwarden.privacy.reports import service as publisher_reports

    chosen = _choice("--format", fmt, publisher_reports.ReportFormat)
    with tenant_session(_connect(), _institution_id(tenant)) as session:
        report = publisher_reports.release(
            session, console_principal(), publisher, first_month, last_month, epsilon=epsilon
        )
        body = publisher_reports.render(report, chosen)
    sys.stdout.write(body if body.endswith("\n") else body + "\n")


@command(reports_app, "list", Permission.REPORTS_PUBLISHERS)
def reports_list(
    tenant: Annotated[str, typer.Option(help="institution id or slug")],
    publisher: Annotated[str | None, typer.Option(help="only this publisher's")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table",
) -> None:
    """Reports released, the latest first, with their k and epsilon."""
    import json

    from bookwarden.db.session import tenant_session
    from bookwarden.privacy.reports import service as publisher_reports

    if fmt not in ("table", "json"):
        raise _fail(f"--format: {fmt!r} is none of table, json")
    with tenant_session(_connect(), _institution_id(tenant)) as session:
        found = [
            {
                "id": str(r.id),
                "publisher": r.publisher,
                "first_month": f"{r.first_month:%Y-%m}",
                "last_month": f"{r.last_month:%Y-%m}",
                "k": r.k,
                "epsilon": r.epsilon,
                "cells_published": r.cells_published,
                "released_at": r.released_at.isoformat(timespec="seconds"),
            }
            for r in publisher_reports.releases(session, console_principal(), publisher)
        ]
    if fmt == "json":
        print(json.dumps(found, indent=2))
        return
    table = Table("id", "publisher", "months", "k", "epsilon", "cells", "released", title="Publisher reports")
    for r in found:
        epsilon = "-" if r["epsilon"] is None else f"{r['epsilon']:g}"
        table.add_row(r["id"], r["publisher"], f"{r['first_month']}..{r['last_month']}", str(r["k"]), epsilon,
                      str(r["cells_published"]), r["released_at"])  # fmt: skip
    out.print(table)


# -- retention -------------------------------------------------------------------------------


def _tenant_ids(tenant: str | None) -> list[uuid.UUID]:
    """The institution named, or every institution."""
    from bookwarden.privacy.retention import service as retention

    if tenant is None:
        return retention.tenant_ids(_connect())
    return [_institution_id(tenant)]


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else "-"


@command(retention_app, "preview", Permission.PRIVACY_RETENTION_MANAGE)
def retention_preview(
    tenant: Annotated[str | None, typer.Option(help="institution id or slug; default: every institution")] = None,
) -> None:
    """What the next purge would remove, per institution and category: counts, the oldest date, and what
    legal holds keep (the purge's own selection)."""
    from bookwarden.db.session import tenant_session
    from bookwarden.privacy.retention import service as retention

    table = Table("institution", "category", "keep days", "cutoff", "due", "held", "oldest due")
    db = _connect()
    for tenant_id in _tenant_ids(tenant):
        with tenant_session(db, tenant_id) as session:
            for line in retention.preview(session, console_principal()):
                days = "until deleted" if line.keep_days is None else str(line.keep_days)
                table.add_row(str(tenant_id), line.category.value, days, _when(line.cutoff), f"{line.due:,}",
                              f"{line.held:,}", _when(line.oldest))  # fmt: skip
    out.print(table)


@command(retention_app, "policies", Permission.PRIVACY_RETENTION_MANAGE)
def retention_policies(tenant: Annotated[str, typer.Option(help="institution id or slug")]) -> None:
    """An institution's period per category: what applies, its source, the default and the bounds."""
    from bookwarden.db.session import tenant_session
    from bookwarden.privacy.retention import service as retention

    table = Table("category", "keep days", "source", "default", "bounds")
    (tenant_id,) = _tenant_ids(tenant)
    with tenant_session(_connect(), tenant_id) as session:
        for period in retention.view_periods(session, console_principal()):
            bounds = f"{period.least_days}-{period.most_days}" + (" or until deleted" if period.forever_allowed else "")
            table.add_row(period.category.value, str(period.keep_days or "until deleted"), period.source,
                          str(period.default_days or "until deleted"), bounds)  # fmt: skip
    out.print(table)


@command(retention_app, "set", Permission.PRIVACY_RETENTION_MANAGE)
def retention_set(
    tenant: Annotated[str, typer.Option(help="institution id or slug")],
    category: Annotated[str, typer.Option(help="loan_history, searches, posts, inactive_patrons, exports...")],
    days: Annotated[int | None, typer.Option(min=1, help="keep-for period in days")] = None,
    forever: Annotated[bool, typer.Option(help="keep until deleted (posts only)")] = False,
) -> None:
    """Ask for a new period: an approval request the institution's second officer approves
    (POST /api/v1/approvals/{id}/approve); nothing changes until then."""
    from bookwarden.db.session import tenant_session
    from bookwarden.privacy.retention import service as retention
    from bookwarden.privacy.retention.models import RetentionCategory

    chosen = _choice("--category", category, RetentionCategory)
    if (days is None) == (not forever):
        raise _fail("give either --days N or --forever")
    (tenant_id,) = _tenant_ids(tenant)
    with tenant_session(_connect(), tenant_id) as session:
        asked = retention.ask_change(session, console_principal(), chosen, None if forever else days)
    out.print(f"approval request {asked.id}: waiting for a second holder of privacy.retention.manage")


@command(retention_app, "run", Permission.PRIVACY_RETENTION_MANAGE)
def retention_run(
    tenant: Annotated[str | None, typer.Option(help="institution id or slug; default: every institution")] = None,
) -> None:
    """Purge now what is past its period (as the daily job does); resumes an unfinished run."""
    from bookwarden.privacy.retention import service as retention

    db = _connect()
    for tenant_id in _tenant_ids(tenant):
        run_id = retention.run_purge(db, tenant_id, triggered_by="console")
        err.print(f"{tenant_id}: run {run_id} completed")


@command(retention_app, "runs", Permission.PRIVACY_RETENTION_MANAGE)
def retention_runs(
    tenant: Annotated[str, typer.Option(help="institution id or slug")],
    limit: Annotated[int, typer.Option(min=1, max=500, help="how many runs, newest first")] = 10,
) -> None:
    """Purge run reports: per category what was removed, kept by a legal hold, or failed."""
    from bookwarden.db.session import tenant_session
    from bookwarden.privacy.retention import service as retention

    table = Table("run", "status", "as of", "category", "removed", "held", "errors")
    (tenant_id,) = _tenant_ids(tenant)
    with tenant_session(_connect(), tenant_id) as session:
        for run in retention.list_runs(session, console_principal(), limit=limit):
            for line in run.categories:
                table.add_row(str(run.id), run.status.value, _when(run.as_of), line.category.value,
                              f"{line.removed:,}", f"{line.held:,}", f"{line.errors:,}")  # fmt: skip
    out.print(table)


# -- data-subject requests ------------------------------------------------------------------

privacy_requests_app = typer.Typer(help="Data-subject requests: an institution's queue.", no_args_is_help=True)
privacy_app.add_typer(privacy_requests_app, name="requests")


def _request_row(found) -> dict[str, Any]:
    # States, kinds, ids and dates: the console shows no corrections or reasons (sealed; the API opens them).
    return found.model_dump(mode="json")


@command(privacy_requests_app, "list", Permission.PRIVACY_REQUESTS_HANDLE)
def privacy_requests_list(
    tenant: Annotated[str, typer.Option(help="institution id or slug")],
    view: Annotated[str, typer.Option(help="open, overdue, on_legal_hold, closed or all")] = "open",
) -> None:
    """An institution's data-subject requests, the most urgent first, as JSON lines (no personal values)."""
    import json

    from bookwarden.db.session import tenant_session
    from bookwarden.privacy.requests import service as requests

    chosen = _choice("--view", view, requests.QueueView)
    db = _connect()
    tenant_id = _institution_id(tenant)
    with tenant_session(db, tenant_id) as session:
        found = requests.queue(session, console_principal(), chosen)  # recorded in the institution's trail
    sys.stdout.write("".join(json.dumps(_request_row(r), sort_keys=True) + "\n" for r in found))


@command(privacy_requests_app, "show", Permission.PRIVACY_REQUESTS_HANDLE)
def privacy_requests_show(
    request_id: Annotated[str, typer.Argument(help="the request's id")],
    tenant: Annotated[str, typer.Option(help="institution id or slug")],
) -> None:
    """One data-subject request: kind, state, deadlines, decisions and holds (no corrections or reasons)."""
    import json

    from bookwarden.db.session import tenant_session
    from bookwarden.privacy.requests import service as requests

    chosen = _uuid_option("request_id", request_id)
    db = _connect()
    tenant_id = _institution_id(tenant)
    with tenant_session(db, tenant_id) as session:
        found, _ = requests.read(session, console_principal(), chosen, opened=False)
    sys.stdout.write(json.dumps(_request_row(found), sort_keys=True, indent=2) + "\n")


privacy_escalations_app = typer.Typer(
    help="The platform DPO's oversight: late requests and complaints of every institution.", no_args_is_help=True
)
privacy_app.add_typer(privacy_escalations_app, name="escalations")


@command(privacy_escalations_app, "list", Permission.PLATFORM_PRIVACY_OVERSIGHT)
def privacy_escalations_list(
    view: Annotated[str, typer.Option(help="unacknowledged (the worklist), open or all")] = "unacknowledged",
) -> None:
    """Escalations to the DPO across institutions, the longest overdue first, as JSON lines (metadata only)."""
    import json

    from bookwarden.privacy.escalations import service as dpo_escalations

    chosen = _choice("--view", view, dpo_escalations.View)
    found = dpo_escalations.listing(_connect(), console_principal(), chosen)
    sys.stdout.write("".join(json.dumps(e.model_dump(mode="json"), sort_keys=True) + "\n" for e in found))


@command(privacy_escalations_app, "acknowledge", Permission.PLATFORM_PRIVACY_OVERSIGHT)
def privacy_escalations_acknowledge(
    escalation_id: Annotated[str, typer.Argument(help="the escalation's id")],
    tenant: Annotated[str, typer.Option(help="institution id or slug")],
) -> None:
    """Take an escalation up; the institution sees it in its own audit trail."""
    import json

    from bookwarden.privacy.escalations import service as dpo_escalations

    chosen = _uuid_option("escalation_id", escalation_id)
    found = dpo_escalations.acknowledge(_connect(), console_principal(), tenant, chosen)
    sys.stdout.write(json.dumps(found.model_dump(mode="json"), sort_keys=True, indent=2) + "\n")


def main() -> None:
    try:
        app()
    except BookwardenError as exc:
        err.print(f"[red]error:[/red] {exc.detail}")
        sys.exit(2)


if __name__ == "__main__":
    main()
