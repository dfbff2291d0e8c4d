"""`bookwarden worker`: background jobs."""

from __future__ import annotations

import os
import socket
import threading
from datetime import timedelta
from typing import Annotated

import typer

from bookwarden import areas
from bookwarden.audit.events import Action
from bookwarden.console import command, connect, record_action
from bookwarden.core import logs
from bookwarden.core.config import get_settings
from bookwarden.core.permissions import Permission
from bookwarden.jobs import worker as job_worker

commands = typer.Typer()  # merged into the root: `bookwarden <command>`
groups = (commands,)


@command(commands, "worker", Permission.PLATFORM_SERVICES_RUN, unmapped=True)
def worker(
    name: Annotated[str | None, typer.Option(help="worker name in job leases (default: host:pid)")] = None,
) -> None:
    """Run background jobs until SIGTERM/SIGINT; run as many as needed, on any machines.

    On SIGTERM the worker claims nothing more; the job in hand gets BOOKWARDEN_GRACEFUL_SHUTDOWN_SECONDS to
    finish, and is then given back for another worker to take at once.
    """
    settings = get_settings()
    # One name per process: a lease names its holder, and the logs tell the workers apart.
    name = name or f"{socket.gethostname()}:{os.getpid()}"
    logs.configure(settings.log_level)
    stop = threading.Event()
    job_worker.stop_on_signals(stop)
    db = connect()
    for jobs in areas.modules("jobs"):  # every area's schedules, declared again at each start (idempotent)
        jobs.declare_schedules(db)
    record_action(Action.SERVICE_STARTED, service="worker", name=name)
    job_worker.Worker(db, name, grace=timedelta(seconds=settings.graceful_shutdown_seconds)).run_forever(stop)
