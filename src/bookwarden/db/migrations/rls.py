"""Helpers every migration uses to make a table tenant-scoped or grant the app role."""

from __future__ import annotations

from alembic import op


def tenant_table(table: str, app_privileges: str = "SELECT, INSERT, UPDATE, DELETE") -> None:
    """Row-level security ENABLED and FORCED (the owner is bound too), one policy, app grants."""
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY tenant_isolation ON {table} "
        "USING (tenant_id = bookwarden_current_tenant()) "
        "WITH CHECK (tenant_id = bookwarden_current_tenant())"
    )
    grant_app(table, app_privileges)


def grant_app(table: str, privileges: str) -> None:
    op.execute(f"GRANT {privileges} ON {table} TO bookwarden_app")
