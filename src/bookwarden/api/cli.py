"""`bookwarden serve` and `bookwarden demo`: the HTTP API, and demo institutions to try it with."""

from __future__ import annotations

from typing import Annotated

import typer
import uvicorn

from bookwarden import demo as demo_data
from bookwarden.api.app import create_app
from bookwarden.audit.events import Action
from bookwarden.console import command, connect, out, record_action
from bookwarden.core import logs
from bookwarden.core.config import Settings, get_settings
from bookwarden.core.permissions import Permission

commands = typer.Typer()  # merged into the root: `bookwarden <command>`
groups = (commands,)


# -- processes -----------------------------------------------------------------------------


@command(commands, "serve", Permission.PLATFORM_SERVICES_RUN, unmapped=True)
def serve(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the HTTP API."""

    settings = get_settings()
    logs.configure(settings.log_level)
    record_action(Action.SERVICE_STARTED, service="api", host=host, port=port)
    uvicorn.run(create_app(connect(), settings), host=host, port=port, **server_options(settings))


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
