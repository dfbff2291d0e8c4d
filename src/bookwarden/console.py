"""The console: who runs commands, what each needs, what each leaves in the audit trail.

Every area's `cli.py` declares its commands with `@command(group, name, permission)` from here; the
root command (`bookwarden.cli`) mounts every area's groups from the manifest and opens each run
(`start_run`). Shared option parsing (ids, times, choices, output files) lives here too, so every
command reads `--tenant`, `--since` and the like the same way.
"""

from __future__ import annotations

import enum
import functools
import getpass
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from sqlalchemy.exc import SQLAlchemyError

from bookwarden.access.grants import service as grants
from bookwarden.audit import record as audit
from bookwarden.audit.events import PLATFORM_CHAIN, Action, Outcome
from bookwarden.core import logs
from bookwarden.core.authorize import authorize
from bookwarden.core.config import get_settings
from bookwarden.core.errors import BookwardenError, Forbidden, InvalidInput
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.core.purposes import SharingPath
from bookwarden.core.sensitive import find_sensitive
from bookwarden.db.session import connect as connect_database
from bookwarden.db.session import platform_session
from bookwarden.identity.operators import service as operator_accounts
from bookwarden.identity.operators.models import OperatorStatus
from bookwarden.tenancy import service as tenancy

# The root command group, set by bookwarden.cli when it mounts the areas (to name a command's group).
_root: list[typer.Typer] = []


def set_root(app: typer.Typer) -> None:
    _root[:] = [app]


out = Console()
err = Console(stderr=True)


# -- the console: who runs commands, what each needs, what each leaves in the audit trail ------
#
# The console acts as a named operator account, never as an all-permissions principal: the OS user
# running it is mapped to an operator account (BOOKWARDEN_CONSOLE_OPERATORS="deploy=alice.ops", or the
# account named as the OS user), and the command runs with that account's role, recorded as that person
# (PrincipalKind.CONSOLE, the account's id). The account must be active: enrolled, with its password and
# second factor, and not disabled. A command that reads or changes one institution's data declares a
# tenant permission; no operator role holds one, so it runs only through an approved, current operator
# grant for that institution, named with --grant and opened by the very function HTTP uses
# (access/grants/service.py `open_grant`). A few commands need no operator at all (`unmapped`): those that
# make the platform exist or run it (db migrate and stop, serve, worker, demo) and the very first
# operator's creation; whoever runs them is recorded by OS user.

CONSOLE_NAMESPACE = uuid.UUID("6f0c2a4e-3b1d-5e8a-9c7f-1d2e3f405162")
GRANT_HELP = (
    "the approved operator grant for this institution (ask: POST /api/v1/operator/grants, scope privacy or audit; "
    "the institution approves it)"
)
# Every command that reads or changes an institution's data takes it: `grant: Grant = None`.
Grant = Annotated[str | None, typer.Option(help=GRANT_HELP)]


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (some containers): the uid still says who
        return f"uid {os.getuid()}"


def operator_username() -> str:
    """The operator account the OS user acts as: BOOKWARDEN_CONSOLE_OPERATORS maps it, else its own name."""
    user = os_user()
    for pair in get_settings().console_operators.split(","):
        listed, _, operator = pair.partition("=")
        if listed.strip() == user and operator.strip():
            return operator.strip()
    return user


def _unmapped_principal(permissions: frozenset[Permission] = frozenset()) -> Principal:
    """Whoever runs a command that needs no operator: one id per OS user, only that command's permission."""
    return Principal(PrincipalKind.SYSTEM, uuid.uuid5(CONSOLE_NAMESPACE, os_user()), None, permissions)


def _how_to_map() -> str:
    return (
        f'map it to your operator account: BOOKWARDEN_CONSOLE_OPERATORS="{os_user()}=<operator username>" '
        "(operator accounts: bookwarden operator create, by a holder of platform.operators.manage)"
    )


def _mapped_operator() -> Principal | None:
    """The console principal of the operator account the OS user is mapped to; None when there is none.

    Refused (Forbidden) when the account exists but is not active: a disabled operator's console is closed,
    and an enrolling one has no second factor yet."""
    username = operator_username()
    with platform_session(connect()) as session:
        account = operator_accounts.console_account(session, username)
    if account is None:
        return None
    if account.status != OperatorStatus.ACTIVE:
        raise Forbidden(
            f'the OS user "{os_user()}" acts as operator "{account.username}", which is {account.status}: '
            "only an active account (enrolled, not disabled) runs the console"
        )
    return Principal(PrincipalKind.CONSOLE, account.id, None, operator_accounts.permissions_of(account))


def console_principal() -> Principal:
    """Who the running command acts as: the mapped operator, or that operator through the command's grant."""
    run = _run.get()
    if run is not None and run.principal is not None:
        return run.principal
    operator = _mapped_operator()
    if operator is None:
        raise Forbidden(f'the OS user "{os_user()}" is mapped to no operator account; {_how_to_map()}')
    return operator


@dataclass
class _Run:
    """One run of the command line: its database (opened on first use) and what it has recorded."""

    db: Any = None
    command: str | None = None
    succeeded_recorded: bool = False
    principal: Principal | None = None


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


def start_run(ctx: typer.Context) -> None:
    # Every audit event of this run names who acts (set once the command knows: `_acting`), and one request
    # id ties them together.
    context = audit.Context(
        principal=_unmapped_principal(),
        source_address="console",
        user_agent="bookwarden-cli",
        request_id=str(uuid.uuid4()),
    )
    ctx.with_resource(audit.acting(context))
    ctx.with_resource(_running())
    # Logs of a one-shot command go to stderr: its stdout is what it prints (a token, JSON, CSV).
    # `serve` and `worker` configure their own logs on stdout, as services.
    logs.configure(get_settings().log_level, stream="stderr")


def _acting(principal: Principal) -> Principal:
    run = _run.get()
    if run is not None:
        run.principal = principal
    audit.current().principal = principal
    return principal


def _operator_for(permission: Permission, unmapped: bool | Callable[[], bool]) -> Principal:
    """The principal a command starts as; Forbidden for an unmapped OS user unless the command needs none."""
    if unmapped is True:
        # Commands that make the platform exist or run it: the database may not be there yet (db migrate),
        # so a mapping that cannot be read is no mapping. A mapped operator is still recorded by name.
        try:
            operator = _mapped_operator()
        except SQLAlchemyError:
            operator = None
        if operator is None:
            return _unmapped_principal(frozenset({permission}))
        return replace(operator, permissions=operator.permissions | {permission})
    operator = _mapped_operator()
    if operator is not None:
        return operator
    if callable(unmapped) and unmapped():
        return _unmapped_principal(frozenset({permission}))
    raise Forbidden(f'the OS user "{os_user()}" is mapped to no active operator account; {_how_to_map()}')


def through_grant(tenant_id: uuid.UUID, grant: str | None, permission: Permission) -> Principal:
    """The console operator inside one institution, through its grant, checked as HTTP checks it: approved,
    current, this operator's, this institution's (access/grants/service.py `open_grant`, the same function),
    covering `permission`. Every event after it names the grant; a refusal is recorded as access.denied."""
    operator = console_principal()
    if operator.kind is not PrincipalKind.CONSOLE or operator.grant_id is not None:
        raise Forbidden("only an operator's console, mapped to an active operator account, uses a grant")
    if not grant:
        raise Forbidden(
            f"this command reads or changes institution {tenant_id}'s data: operators reach it only through an "
            f"approved grant, named with --grant; {GRANT_HELP}",
            permission=permission,
        )
    try:
        grant_id = uuid.UUID(grant)
    except ValueError:
        raise Forbidden(f"--grant: {grant!r} is not the id of an operator grant") from None
    acting = _acting(grants.open_grant(connect(), operator, grant_id, tenant_id=tenant_id))
    authorize(acting, permission)
    return acting


def command(
    group: typer.Typer,
    name: str,
    permission: Permission,
    *,
    unmapped: bool | Callable[[], bool] = False,
    shares: SharingPath | None = None,
    **options: Any,
) -> Callable:
    """Declare a command of `group` (an area's command group) and the one permission it needs; `shares`,
    when the command lets patron data leave the institution, names its path through the sharing gate
    (tests/invariants/test_sharing_gate.py runs each such command for a patron who objected).

        @command(audit_app, "verify", Permission.PLATFORM_AUDIT_VERIFY)
        def audit_verify(...) -> None: ...

    The command runs as the operator account the OS user is mapped to, and that account's permissions
    are checked through authorize() before it runs. A tenant permission (anything but platform.*) is
    held only through a grant: such a command takes `--tenant` and `--grant` (`Grant`), and runs as the
    grant's principal (`through_grant`). `unmapped`: True for a command that needs no operator (it makes
    the platform exist or runs it), or a check saying when (the first operator's creation).

    Every run leaves an event naming the OS user: console.command when it succeeds, access.denied or
    request.failed when it is refused. The command still records its own action's event (tenant.created,
    audit.verified...): tests/invariants/test_audit_coverage.py runs every command and fails for one that
    declares no permission or leaves no event of its own.
    """

    def register(run: Callable) -> Callable:
        @functools.wraps(run)
        def checked(*args: Any, **kwargs: Any) -> Any:
            current = _run.get()
            if current is not None:
                current.command = " ".join(filter(None, (_group_name(group), name)))
            with _console_run(permission):
                acting = _acting(_operator_for(permission, unmapped))
                if not permission.is_platform:
                    acting = through_grant(institution_id(kwargs["tenant"]), kwargs.get("grant"), permission)
                authorize(acting, permission)
                refuse_payment_data(kwargs)
                return run(*args, **kwargs)

        checked.required_permission = permission  # read by tests/invariants/test_audit_coverage.py
        checked.shares = shares  # read by tests/invariants/test_sharing_gate.py
        group.command(name, **options)(checked)
        return checked

    return register


def refuse_payment_data(options: dict[str, Any]) -> None:
    """Every text a command takes is screened as every API body is (api/bodies.py): payment and bank
    data are never stored, whichever door they come through. Files a command reads are screened by
    the service that imports them."""
    for name, value in options.items():
        for text in value if isinstance(value, list | tuple) else [value]:
            if isinstance(text, str) and (finding := find_sensitive(text)) is not None:
                option = "--" + name.replace("_", "-")
                raise InvalidInput(f"{option} looks like a {finding.kind}; payment and bank data are never stored")


def _group_name(group: typer.Typer, parent: typer.Typer | None = None) -> str | None:
    """The words naming `group` on the command line ("privacy requests" for a group inside a group)."""
    for info in (parent or _root[0]).registered_groups:
        if info.typer_instance is group:
            return info.name
        inner = _group_name(group, info.typer_instance)
        if inner is not None:
            return f"{info.name} {inner}"
    # A group whose commands were merged into another area's group of the same name (cli.root).
    return group.info.name if parent is None and isinstance(group.info.name, str) else None


class Verdict(typer.Exit):
    """The command did its whole work and its exit code reports what it found (1: tampered).

    The run is recorded as console.command with that code, not as a failed request: the
    command's own event (audit.verified, outcome failed) carries the finding.
    """


def fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(2)


def institution_id(tenant: str) -> uuid.UUID:
    """An institution named by id or slug, as every --tenant option takes it."""
    with platform_session(connect()) as session:
        return tenancy.get_tenant(session, tenant).id


def connect():
    """The database of this run: one set of pools per command, closed when the command ends."""
    run = _run.get()
    if run is None:
        return connect_database(get_settings())
    if run.db is None:
        run.db = connect_database(get_settings())
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
        command_succeeded(permission, exit_code=exc.exit_code)
        raise
    except typer.Exit as exc:
        if exc.exit_code:
            _console_event(Action.REQUEST_FAILED, Outcome.FAILED, problem="invalid-input", permission=permission)
        else:
            command_succeeded(permission)
        raise
    except Exception as exc:
        _console_event(Action.REQUEST_FAILED, Outcome.FAILED, problem="internal-error", error=type(exc).__name__)
        raise
    command_succeeded(permission)


def command_succeeded(permission: Permission, **details: Any) -> None:
    """console.command, once per run (`db stop` records it before the database goes away)."""
    run = _run.get()
    if run is not None and run.succeeded_recorded:
        return
    if run is not None:
        run.succeeded_recorded = True
    _console_event(Action.CONSOLE_COMMAND, Outcome.SUCCEEDED, permission=permission, **details)


def _console_event(action, outcome, **details: Any) -> None:
    # In the platform's chain, even for a command run through a grant: the console's own record of its runs
    # (the institution's chain has the grant's use and the command's action).
    try:
        audit.record_now(
            connect(), action, outcome=outcome, details=_console_details(**details), tenant_id=PLATFORM_CHAIN
        )
    except Exception as exc:
        # The command's own answer stands; losing its record must not hide it, but it is loud.
        err.print(f"[red]warning:[/red] the audit event of this command was not recorded ({type(exc).__name__})")


def record_action(
    action, target: tuple[str, uuid.UUID | None] | None = None, *, tenant_id=None, **details: Any
) -> None:
    """The command's own event (with the OS user), committed now: in `tenant_id`'s chain, or the platform's."""
    audit.record_now(
        connect(), action, target, outcome=Outcome.SUCCEEDED, details=_console_details(**details), tenant_id=tenant_id
    )


def choice(name: str, value: str, choices: type[enum.Enum]) -> Any:
    try:
        return choices(value)
    except ValueError:
        raise fail(f"{name}: {value!r} is none of {', '.join(c.value for c in choices)}") from None


def uuid_option(name: str, value: str | None) -> uuid.UUID | None:
    if value is None:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise fail(f"{name}: {value!r} is not an id") from None


def time_option(name: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise fail(f"{name}: {value!r} is not an ISO 8601 time (2026-03-01 or 2026-03-01T12:00:00+01:00)") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@contextmanager
def binary_output(path: Path | None) -> Iterator[Any]:
    if path is None:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    # 0600: the trail names addresses and user agents; the file is for whoever ran the command.
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as sink:
        yield sink


def tenant_ids(tenant: str | None) -> list[uuid.UUID]:
    """The institution named, or every institution."""
    if tenant is None:
        with platform_session(connect()) as session:
            return [found.id for found in tenancy.list_tenants(session)]
    return [institution_id(tenant)]


def when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else "-"
