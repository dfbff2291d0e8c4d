"""Monitoring: the collectors' saved positions and the stored alerts (platform tables).

`monitor_positions`: where each collector stopped (a tailed file: device, inode, byte offset and a
fingerprint of its first bytes; an audit chain: the last sequence number read), so a restart neither
loses nor repeats a line or an event.

`monitor_alerts`: one row per alert, repeats of one rule and group folded into it while it is not closed
(a partial unique index holds that). Operators see every row; an institution reads the rows naming it
(`institution_id`) and changes none: acknowledging and closing are the operators'.

Numbered 0032 with down_revision 0031 while written beside other migrations of the same release; the
chain is settled when they are merged.

Revision ID: 0032
Revises: 0031
"""

from alembic import op

from bookwarden.db.migrations.rls import grant_app

revision = "0032"
down_revision = "0031"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE monitor_positions (
            source TEXT NOT NULL,
            device BIGINT,
            inode BIGINT,
            "offset" BIGINT NOT NULL,
            fingerprint BYTEA,
            updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            CONSTRAINT pk_monitor_positions PRIMARY KEY (source),
            CONSTRAINT ck_monitor_positions_offset_not_negative CHECK ("offset" >= 0)
        );
        CREATE TABLE monitor_alerts (
            id UUID NOT NULL,
            rule VARCHAR(200) NOT NULL,
            title TEXT NOT NULL,
            severity VARCHAR(16) NOT NULL,
            kind VARCHAR(16) NOT NULL,
            group_key TEXT NOT NULL,
            grouped JSONB DEFAULT '{}'::jsonb NOT NULL,
            institution_id UUID,
            source_address VARCHAR(64),
            summary TEXT,
            first_seen TIMESTAMP WITH TIME ZONE NOT NULL,
            last_seen TIMESTAMP WITH TIME ZONE NOT NULL,
            count INTEGER NOT NULL,
            episode_first_seen TIMESTAMP WITH TIME ZONE,
            episode_base INTEGER DEFAULT 0 NOT NULL,
            status VARCHAR(16) NOT NULL,
            created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            acknowledged_at TIMESTAMP WITH TIME ZONE,
            acknowledged_by UUID,
            closed_at TIMESTAMP WITH TIME ZONE,
            closed_by UUID,
            CONSTRAINT pk_monitor_alerts PRIMARY KEY (id),
            CONSTRAINT ck_monitor_alerts_status_known CHECK (status IN ('open', 'acknowledged', 'closed')),
            CONSTRAINT ck_monitor_alerts_severity_known
                CHECK (severity IN ('informational', 'low', 'medium', 'high', 'critical')),
            CONSTRAINT ck_monitor_alerts_count_positive CHECK (count >= 1)
        );
        -- One live alert per rule and group: a repeat folds into it (monitor/alerts/service.py).
        CREATE UNIQUE INDEX uq_monitor_alerts_live ON monitor_alerts (rule, group_key) WHERE status <> 'closed';
        CREATE INDEX ix_monitor_alerts_last_seen ON monitor_alerts (last_seen);
        CREATE INDEX ix_monitor_alerts_institution ON monitor_alerts (institution_id, last_seen);
        """
    )
    op.execute("ALTER TABLE monitor_positions ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE monitor_positions FORCE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY platform_only ON monitor_positions "
        "USING (bookwarden_current_tenant() IS NULL) WITH CHECK (bookwarden_current_tenant() IS NULL)"
    )
    grant_app("monitor_positions", "SELECT, INSERT, UPDATE")
    op.execute("ALTER TABLE monitor_alerts ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE monitor_alerts FORCE ROW LEVEL SECURITY")
    # Read: the platform (no tenant in context) every row; an institution the rows naming it. Write: the platform only.
    op.execute(
        "CREATE POLICY read_own ON monitor_alerts FOR SELECT "
        "USING (bookwarden_current_tenant() IS NULL OR institution_id = bookwarden_current_tenant())"
    )
    op.execute(
        "CREATE POLICY platform_insert ON monitor_alerts FOR INSERT WITH CHECK (bookwarden_current_tenant() IS NULL)"
    )
    op.execute(
        "CREATE POLICY platform_update ON monitor_alerts FOR UPDATE "
        "USING (bookwarden_current_tenant() IS NULL) WITH CHECK (bookwarden_current_tenant() IS NULL)"
    )
    # No DELETE: an alert is history (closed, never removed).
    grant_app("monitor_alerts", "SELECT, INSERT, UPDATE")


def downgrade() -> None:
    op.execute("DROP TABLE monitor_alerts")
    op.execute("DROP TABLE monitor_positions")
