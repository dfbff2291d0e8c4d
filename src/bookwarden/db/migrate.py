"""Bring both databases' schemas up to date with Alembic, as the owner role."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import URL

from bookwarden.db.provision import DatabaseUrls

HERE = Path(__file__).parent


def _config(script_location: Path, url: URL) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    # ConfigParser interpolation treats % specially; URLs may contain it (escaped passwords).
    cfg.set_main_option("sqlalchemy.url", url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def migrate(urls: DatabaseUrls) -> None:
    command.upgrade(_config(HERE / "migrations", urls.owner), "head")
    command.upgrade(_config(HERE / "keyring_migrations", urls.keyring_owner), "head")
