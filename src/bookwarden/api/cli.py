"""`bookwarden serve` and `bookwarden demo`: the HTTP API, and demo institutions to try it with."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
import uvicorn

from bookwarden import demo as demo_data
from bookwarden.audit.events import Action
from bookwarden.console import command, connect, out, record_action
from bookwarden.core import logs
from bookwarden.core.config import Settings, get_settings
from bookwarden.core.permissions import Permission

commands = typer.Typer()  # merged into the root: `bookwarden <command>`
groups = (commands,)
# Where prometheus_client's multiprocess mode keeps each process's values (read by api/app.py's /metrics).
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


# -- processes -----------------------------------------------------------------------------


@command(commands, "serve", Permission.PLATFORM_SERVICES_RUN, unmapped=True)
def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: Annotated[int | None, typer.Option(min=1, max=256, help="HTTP processes (default: one per CPU)")] = None,
) -> None:
    """Run the HTTP API: N processes sharing the port, each with its own connection pools (see README)."""

    settings = get_settings()
    logs.configure(settings.log_level)
    workers = workers or os.cpu_count() or 1
    record_action(Action.SERVICE_STARTED, service="api", host=host, port=port, workers=workers)
    connect().dispose()  # the supervisor serves no request: it holds no connection while its workers run
    # An import string and a factory, so each worker process builds its own app, pools and caches after the fork
    # (connections must never be shared across processes). SIGTERM: no new connections, in-flight requests finish
    # (up to the graceful timeout), then each worker disposes of its pools.
    with shared_metrics(workers):
        uvicorn.run(
            "bookwarden.api.app:from_environment",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            timeout_graceful_shutdown=settings.graceful_shutdown_seconds,
            # The supervisor restarts a worker that misses its pings for this long: a worker still importing the
            # app on a busy machine is slow, not dead, and killing it would only start the wait again.
            timeout_worker_healthcheck=60,
            **server_options(settings),
        )


@contextmanager
def shared_metrics(workers: int) -> Iterator[None]:
    """With several workers, one private folder where each writes its metrics, so /metrics sums them all.

    prometheus_client's multiprocess mode: a worker process started while PROMETHEUS_MULTIPROC_DIR is set keeps
    its values in files there, and whichever worker answers /metrics reads every file. The folder is ours alone
    (0700, made now, removed when the server stops): files left by an earlier run would be counted again.
    """
    if workers == 1:  # uvicorn serves in this very process: its own registry holds everything
        yield
        return
    folder = tempfile.mkdtemp(prefix="bookwarden-metrics-")
    previous = os.environ.get(MULTIPROC_DIR)
    os.environ[MULTIPROC_DIR] = folder  # inherited by the worker processes uvicorn spawns
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(MULTIPROC_DIR, None)
        else:
            os.environ[MULTIPROC_DIR] = previous
        shutil.rmtree(folder, ignore_errors=True)


def server_options(settings: Settings) -> dict:
    """How uvicorn runs the API, beyond where it listens."""
    proxies = settings.trusted_proxy_list
    return {
        "log_config": None,
        "access_log": False,
        "server_header": False,  # no "Server: uvicorn": nothing to tell a scanner which server to try
        # Only the proxies named in BOOKWARDEN_TRUSTED_PROXIES may say who the client is (X-Forwarded-For)
        # and whether it came over https (X-Forwarded-Proto). uvicorn's own default believes anyone on
        # 127.0.0.1, so a local process or a pass-through proxy could pick the address that keys every
        # per-address throttle and is written into the audit trail. An empty list means believe no one.
        "proxy_headers": bool(proxies),
        "forwarded_allow_ips": proxies,
    }


@command(commands, "demo", Permission.PLATFORM_DEMO_SEED, unmapped=True)
def demo(
    patrons: Annotated[int, typer.Option(min=1, max=10_000, help="patrons per institution, when first seeded")] = 200,
) -> None:
    """Seed two demo institutions (once); print a fresh API token and desk sign-in for each."""
    for slug, given in demo_data.seed(connect(), get_settings(), patrons_each=patrons).items():
        out.print(f"[bold]{slug}[/bold] API token: {given.api_token}")
        out.print(
            f"[bold]{slug}[/bold] sign-in: institution {slug}, user {given.desk_username}, "
            f"password {given.desk_password}"
        )
        for username, password in given.patron_logins:
            out.print(f"[bold]{slug}[/bold] patron portal: user {username}, password {password}")
    out.print("The start page, http://127.0.0.1:8000/ under `make run`, lists these sign-ins too.")
