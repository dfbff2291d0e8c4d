"""Isolation as the catalog states it: which tenant tables lack row-level security ENABLED and FORCED or
their policy. Read live from pg_class and pg_policy (readable by every role), for the live evidence."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from bookwarden.db.base import whole_schema


def tenant_tables() -> list[str]:
    """Every mapped table with a tenant_id column (the whole schema: areas.load() has run)."""
    return sorted(name for name, table in whole_schema().tables.items() if "tenant_id" in table.c)


def isolation_problems(session: Session) -> list[str]:
    """One line per tenant table whose isolation is not what every tenant table must have."""
    names = tenant_tables()
    rows = session.execute(
        text(
            "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, "
            "EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = 'tenant_isolation') "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relname = ANY(:names)"
        ),
        {"names": names},
    )
    found = {name: (enabled, forced, policy) for name, enabled, forced, policy in rows}
    problems = []
    for name in names:
        if name not in found:
            problems.append(f"{name}: not in the database")
            continue
        enabled, forced, policy = found[name]
        missing = [what for what, ok in (("enabled", enabled), ("forced", forced), ("policy", policy)) if not ok]
        if missing:
            problems.append(f"{name}: row-level security not {', '.join(missing)}")
    return problems
