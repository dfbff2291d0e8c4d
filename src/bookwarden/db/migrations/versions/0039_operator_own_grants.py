"""An operator's own grants, across institutions: the status page of the operator console.

The rows are tenant rows under row-level security; an operator has no tenant context, so one narrow
definer function answers "which grants did I ask for, and where do they stand?" with the grant's
metadata (institution, scope, ticket, window, status), never its justification, and only the grants
asked by that person or credential. Inside an institution's transaction it reads empty.

Revision ID: 0039
Revises: 0036 (numbered in its session; the lead re-chains it after the migrations merged before it)
"""

from alembic import op

revision = "0039"
down_revision = "0036"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # grant_lookup (migration 0006) already lets the owner read operator_grants for such functions.
    op.execute(
        """
        CREATE FUNCTION bookwarden_operator_own_grants(credential uuid, person uuid, max_rows integer)
        RETURNS TABLE (tenant_id uuid, tenant_slug text, tenant_name text, id uuid, scope text, ticket text,
                       starts_at timestamptz, expires_at timestamptz, status text, break_glass boolean,
                       decided_at timestamptz, first_used_at timestamptz, ended_at timestamptz,
                       created_at timestamptz)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
        AS $$
            SELECT g.tenant_id, t.slug::text, t.name::text, g.id, g.scope::text, g.ticket::text, g.starts_at,
                   g.expires_at, g.status::text, g.break_glass, g.decided_at, g.first_used_at, g.ended_at,
                   g.created_at
            FROM operator_grants g JOIN tenants t ON t.id = g.tenant_id
            WHERE bookwarden_current_tenant() IS NULL
              AND (g.operator_id = credential OR (person IS NOT NULL AND g.requested_by_person = person))
            ORDER BY g.created_at DESC, g.id
            LIMIT max_rows
        $$;
        REVOKE ALL ON FUNCTION bookwarden_operator_own_grants(uuid, uuid, integer) FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION bookwarden_operator_own_grants(uuid, uuid, integer) TO bookwarden_app;
        """
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION bookwarden_operator_own_grants(uuid, uuid, integer)")
