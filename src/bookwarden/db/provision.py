"""Create the databases and the two roles Bookwarden runs with.

`bookwarden_owner` owns the schema and runs migrations; `bookwarden_app` runs the
service: it logs in, owns nothing and cannot bypass row-level security. Their
passwords are derived from the master key, so no further secret needs storing and
provisioning is idempotent (run it again and it converges).

Two databases: the data database, and a separate keyring database that holds the
wrapped tenant and subject keys. Keeping keys out of the data database is what makes
crypto-shredding reach backups: a dump of the data database never contains a key,
so once a subject key is destroyed, no earlier dump can be decrypted.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql
from sqlalchemy.engine import URL

from bookwarden.crypto.derive import KeyPurpose, derive

OWNER_ROLE = "bookwarden_owner"
APP_ROLE = "bookwarden_app"


@dataclass(frozen=True)
class DatabaseUrls:
    owner: URL
    app: URL
    keyring_owner: URL
    keyring_app: URL


def role_password(master_key: bytes, role: str) -> str:
    return derive(master_key, KeyPurpose.DATABASE_ROLE_PASSWORD, role).hex()


def database_urls(admin: URL, database: str, master_key: bytes) -> DatabaseUrls:
    def url(role: str, db: str) -> URL:
        return admin.set(username=role, password=role_password(master_key, role), database=db)

    keyring = keyring_database(database)
    return DatabaseUrls(
        owner=url(OWNER_ROLE, database),
        app=url(APP_ROLE, database),
        keyring_owner=url(OWNER_ROLE, keyring),
        keyring_app=url(APP_ROLE, keyring),
    )


def keyring_database(database: str) -> str:
    return f"{database}_keyring"


def libpq(url: URL) -> str:
    """A URL psycopg (and psql, pg_dump) accept directly."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def provision(admin: URL, database: str, master_key: bytes) -> DatabaseUrls:
    """Make sure roles and databases exist with the right attributes. Idempotent."""
    with psycopg.connect(libpq(admin), autocommit=True) as conn:
        for role in (OWNER_ROLE, APP_ROLE):
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(
                sql.SQL(
                    "{} ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOREPLICATION PASSWORD {}"
                ).format(sql.SQL(verb), sql.Identifier(role), sql.Literal(role_password(master_key, role)))
            )
        for db in (database, keyring_database(database)):
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone():
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {} ENCODING 'UTF8' TEMPLATE template0").format(
                        sql.Identifier(db), sql.Identifier(OWNER_ROLE)
                    )
                )
            conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(db)))
            conn.execute(
                sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(
                    sql.Identifier(db), sql.Identifier(APP_ROLE)
                )
            )
    urls = database_urls(admin, database, master_key)
    for owner_url in (urls.owner, urls.keyring_owner):
        with psycopg.connect(libpq(owner_url), autocommit=True) as conn:
            # Since PostgreSQL 15 the owner of the database owns schema public; nobody else may create in it.
            conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
            conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(sql.Identifier(APP_ROLE)))
    return urls


def drop(admin: URL, database: str) -> None:
    """Remove both databases (used by tests and by `bookwarden db reset`)."""
    with psycopg.connect(libpq(admin), autocommit=True) as conn:
        for db in (database, keyring_database(database)):
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
