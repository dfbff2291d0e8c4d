"""Offboardings: one row per institution's offboarding, its steps and its certificate (a platform table).

down_revision is 0031 as written; the chain is re-linked when branches are merged.

Revision ID: 0035
Revises: 0034
"""

from alembic import op

from bookwarden.db.migrations.rls import grant_app

revision = "0035"
down_revision = "0034"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE offboardings (
            id UUID NOT NULL,
            institution_id UUID NOT NULL,
            institution_slug VARCHAR(63) NOT NULL,
            institution_name VARCHAR(200) NOT NULL,
            state VARCHAR(16) NOT NULL,
            wipe_method VARCHAR(32) NOT NULL,
            grace_days INTEGER NOT NULL,
            approval_id UUID NOT NULL,
            requested_by UUID NOT NULL,
            requested_by_person UUID,
            requested_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            approved_by UUID,
            approved_by_person UUID,
            approved_at TIMESTAMP WITH TIME ZONE,
            export_sha256 VARCHAR(64),
            export_bytes BIGINT,
            link_expires_at TIMESTAMP WITH TIME ZONE,
            grace_ends_at TIMESTAMP WITH TIME ZONE,
            cancelled_by UUID,
            cancelled_at TIMESTAMP WITH TIME ZONE,
            steps JSONB DEFAULT '{}'::jsonb NOT NULL,
            certificate TEXT,
            finished_at TIMESTAMP WITH TIME ZONE,
            CONSTRAINT pk_offboardings PRIMARY KEY (id),
            CONSTRAINT ck_offboardings_state_known CHECK (state IN ('requested', 'approved', 'exported',
                'keys_destroyed', 'rows_deleted', 'files_wiped', 'certified', 'cancelled')),
            CONSTRAINT ck_offboardings_wipe_method_known CHECK (wipe_method IN ('nist-800-88-clear', 'dod-5220.22-m')),
            CONSTRAINT ck_offboardings_checker_is_not_maker CHECK (
                approved_by_person IS NULL OR requested_by_person IS NULL OR approved_by_person <> requested_by_person),
            CONSTRAINT ck_offboardings_certified_has_certificate CHECK (state <> 'certified' OR certificate IS NOT NULL)
        );
        -- One offboarding at a time per institution (a cancelled or finished one does not count).
        CREATE UNIQUE INDEX ux_offboardings_open ON offboardings (institution_id)
            WHERE state NOT IN ('certified', 'cancelled');
        """
    )
    op.execute("ALTER TABLE offboardings ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE offboardings FORCE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY platform_only ON offboardings "
        "USING (bookwarden_current_tenant() IS NULL) WITH CHECK (bookwarden_current_tenant() IS NULL)"
    )
    # No DELETE: the row, with its certificate, is the lasting record of the destruction.
    grant_app("offboardings", "SELECT, INSERT, UPDATE")


def downgrade() -> None:
    op.execute("DROP TABLE offboardings")
