"""Active response: blocked source addresses, the version every HTTP process polls, and jail strikes
(platform tables).

Numbered 0033 with `down_revision = "0031"` as written by its branch; re-chained at merge after 0032.

Revision ID: 0033
Revises: 0032
"""

from alembic import op

from bookwarden.db.migrations.rls import grant_app

revision = "0033"
down_revision = "0032"
branch_labels = None
depends_on = None

TABLES = {
    "address_blocks": "SELECT, INSERT, UPDATE, DELETE",
    "address_block_version": "SELECT, INSERT, UPDATE",
    "response_strikes": "SELECT, INSERT, UPDATE, DELETE",
}


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE address_blocks (
            id UUID NOT NULL,
            network CIDR NOT NULL,
            rule VARCHAR(200) NOT NULL,
            jail VARCHAR(100),
            reason TEXT,
            offence INTEGER NOT NULL,
            created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            expires_at TIMESTAMP WITH TIME ZONE NOT NULL,
            created_by_kind VARCHAR(16) NOT NULL,
            created_by_id UUID,
            ended_at TIMESTAMP WITH TIME ZONE,
            ended_why VARCHAR(16),
            ended_by_id UUID,
            CONSTRAINT pk_address_blocks PRIMARY KEY (id),
            CONSTRAINT ck_address_blocks_offence_positive CHECK (offence >= 1),
            CONSTRAINT ck_address_blocks_expires_after_created CHECK (expires_at > created_at),
            CONSTRAINT ck_address_blocks_ended_why_known CHECK (ended_why IN ('unblocked', 'expired')),
            CONSTRAINT ck_address_blocks_ended_has_why CHECK ((ended_at IS NULL) = (ended_why IS NULL))
        );
        CREATE INDEX ix_address_blocks_active ON address_blocks (expires_at) WHERE ended_at IS NULL;
        CREATE INDEX ix_address_blocks_network_created ON address_blocks (network, created_at);
        CREATE TABLE address_block_version (
            id INTEGER NOT NULL,
            version BIGINT NOT NULL,
            CONSTRAINT pk_address_block_version PRIMARY KEY (id),
            CONSTRAINT ck_address_block_version_one_row CHECK (id = 1)
        );
        INSERT INTO address_block_version (id, version) VALUES (1, 0);
        CREATE TABLE response_strikes (
            jail VARCHAR(100) NOT NULL,
            network CIDR NOT NULL,
            window_start TIMESTAMP WITH TIME ZONE NOT NULL,
            strikes INTEGER NOT NULL,
            CONSTRAINT pk_response_strikes PRIMARY KEY (jail, network)
        );
        """
    )
    # Platform tables: seen only by a transaction without tenant context (as the backup catalogue is).
    for table, privileges in TABLES.items():
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY platform_only ON {table} "
            "USING (bookwarden_current_tenant() IS NULL) WITH CHECK (bookwarden_current_tenant() IS NULL)"
        )
        grant_app(table, privileges)


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"DROP TABLE {table}")
