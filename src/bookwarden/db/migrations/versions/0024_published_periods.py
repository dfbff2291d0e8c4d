"""What the jobs enforcing the published periods need (privacy/periods.py lists every period and its job).

- accounts.last_signed_in_at: "2 years of inactivity before deletion" needs the account's last sign-in,
  and its sessions, which showed it, are themselves gone a day after they end. Set at every sign-in
  (identity/sessions.py create_session). When an existing account last signed in is not known (its
  sessions are gone), so existing accounts count from this upgrade: none is deleted for inactivity it may
  not have had. Accounts created afterwards start with none and count from their creation.
- bookwarden_forget_withdrawn_consent(max_rows): consent records are kept "3 years after withdrawal, as
  proof", and the application role may only add them (migration 0017). This one narrow definer function
  removes, in the institution of the transaction only (row-level security is forced on the owner too),
  a withdrawal recorded more than 3 years ago and the records of the same patron and purpose before it,
  never what a legal hold on the whole patron keeps. The period is written here, not passed in: the
  application cannot shorten the proof it keeps.
- DELETE on operator_sessions for the application role: an operator's session goes a day after it ends,
  like an institution's (operator accounts are still never deleted).

Revision ID: 0024
Revises: 0023
"""

from alembic import op

from bookwarden.db.migrations.rls import grant_app

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The default fills the rows there are (DDL: row-level security does not hide them), then goes.
    op.execute("ALTER TABLE accounts ADD COLUMN last_signed_in_at TIMESTAMP WITH TIME ZONE DEFAULT now()")
    op.execute("ALTER TABLE accounts ALTER COLUMN last_signed_in_at DROP DEFAULT")
    op.execute(
        """
        CREATE FUNCTION bookwarden_forget_withdrawn_consent(max_rows integer)
        RETURNS TABLE (record_id uuid)
        LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
        AS $$
            WITH due AS (
                SELECT c.tenant_id, c.id FROM consent_records c
                WHERE c.tenant_id = bookwarden_current_tenant()
                  AND EXISTS (
                      SELECT 1 FROM consent_records w
                      WHERE w.tenant_id = c.tenant_id AND w.patron_id = c.patron_id AND w.purpose = c.purpose
                        AND NOT w.given AND w.seq >= c.seq
                        AND w.recorded_at < now() - interval '1095 days'
                  )
                  AND NOT EXISTS (
                      SELECT 1 FROM legal_holds h
                      WHERE h.tenant_id = c.tenant_id AND h.patron_id = c.patron_id AND h.category IS NULL
                        AND h.lifted_at IS NULL AND (h.held_until IS NULL OR h.held_until > now())
                  )
                ORDER BY c.seq
                LIMIT max_rows
            )
            DELETE FROM consent_records c USING due
            WHERE c.tenant_id = due.tenant_id AND c.id = due.id
            RETURNING c.id
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION bookwarden_forget_withdrawn_consent(integer) FROM PUBLIC")
    op.execute("GRANT EXECUTE ON FUNCTION bookwarden_forget_withdrawn_consent(integer) TO bookwarden_app")
    grant_app("operator_sessions", "DELETE")


def downgrade() -> None:
    op.execute("REVOKE DELETE ON operator_sessions FROM bookwarden_app")
    op.execute("DROP FUNCTION bookwarden_forget_withdrawn_consent(integer)")
    op.execute("ALTER TABLE accounts DROP COLUMN last_signed_in_at")
