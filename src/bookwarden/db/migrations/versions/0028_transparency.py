"""Transparency at collection: privacy notice versions and their receipts; reports of suspected unauthorised
access or of a child's data (concerns). Three tenant tables, row-level security forced.

Revision ID: 0028
Revises: 0027
"""

from alembic import op

from bookwarden.db.migrations.rls import tenant_table

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A published version is never rewritten: the app updates only the progress of its change mail.
    op.execute(
        """
        CREATE TABLE privacy_notice_versions (
            tenant_id UUID NOT NULL,
            id UUID NOT NULL,
            seq BIGINT GENERATED ALWAYS AS IDENTITY,
            version VARCHAR(40) NOT NULL,
            notice_text TEXT NOT NULL,
            last_updated DATE NOT NULL,
            material BOOLEAN NOT NULL,
            change_summary TEXT,
            published_by UUID NOT NULL,
            published_by_person UUID,
            published_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            mail_cursor UUID,
            mailed INTEGER NOT NULL,
            mail_done_at TIMESTAMP WITH TIME ZONE,
            CONSTRAINT pk_privacy_notice_versions PRIMARY KEY (tenant_id, id),
            CONSTRAINT fk_privacy_notice_versions_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id),
            CONSTRAINT uq_privacy_notice_versions_version UNIQUE (tenant_id, version),
            CONSTRAINT ck_privacy_notice_versions_material_says_what_changed
                CHECK (NOT material OR change_summary IS NOT NULL),
            CONSTRAINT ck_privacy_notice_versions_mailed_counted CHECK (mailed >= 0)
        );
        CREATE INDEX ix_privacy_notice_versions_latest ON privacy_notice_versions (tenant_id, seq);

        CREATE TABLE privacy_notice_receipts (
            tenant_id UUID NOT NULL,
            id UUID NOT NULL,
            version_id UUID NOT NULL,
            collection VARCHAR(32) NOT NULL,
            patron_id UUID NOT NULL,
            request_id UUID,
            collected_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            CONSTRAINT pk_privacy_notice_receipts PRIMARY KEY (tenant_id, id),
            CONSTRAINT fk_privacy_notice_receipts_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id),
            CONSTRAINT fk_privacy_notice_receipts_version FOREIGN KEY(tenant_id, version_id)
                REFERENCES privacy_notice_versions (tenant_id, id) ON DELETE CASCADE,
            CONSTRAINT fk_privacy_notice_receipts_patron FOREIGN KEY(tenant_id, patron_id)
                REFERENCES patrons (tenant_id, id) ON DELETE CASCADE,
            CONSTRAINT fk_privacy_notice_receipts_request FOREIGN KEY(tenant_id, request_id)
                REFERENCES privacy_requests (tenant_id, id) ON DELETE CASCADE,
            CONSTRAINT ck_privacy_notice_receipts_collection_known
                CHECK (collection IN ('self_registration', 'request_form'))
        );
        CREATE INDEX ix_privacy_notice_receipts_patron ON privacy_notice_receipts (tenant_id, patron_id);
        CREATE INDEX ix_privacy_notice_receipts_request ON privacy_notice_receipts (tenant_id, request_id);

        CREATE TABLE privacy_concerns (
            tenant_id UUID NOT NULL,
            id UUID NOT NULL,
            kind VARCHAR(32) NOT NULL,
            channel VARCHAR(16) NOT NULL,
            account_id UUID,
            description BYTEA NOT NULL,
            contact_address BYTEA NOT NULL,
            received_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            incident_id UUID,
            CONSTRAINT pk_privacy_concerns PRIMARY KEY (tenant_id, id),
            CONSTRAINT fk_privacy_concerns_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id),
            CONSTRAINT fk_privacy_concerns_account FOREIGN KEY(tenant_id, account_id)
                REFERENCES accounts (tenant_id, id) ON DELETE CASCADE,
            CONSTRAINT ck_privacy_concerns_kind_known CHECK (kind IN ('unauthorised_access', 'child_data')),
            CONSTRAINT ck_privacy_concerns_channel_known CHECK (channel IN ('patron', 'anonymous')),
            CONSTRAINT ck_privacy_concerns_patron_names_account CHECK ((channel = 'patron') = (account_id IS NOT NULL))
        );
        CREATE INDEX ix_privacy_concerns_received ON privacy_concerns (tenant_id, received_at);
        CREATE INDEX ix_privacy_concerns_account ON privacy_concerns (tenant_id, account_id);
        """
    )
    tenant_table("privacy_notice_versions", "SELECT, INSERT, UPDATE")
    # Receipts go with their patron or request (cascades), never by the application's hand.
    tenant_table("privacy_notice_receipts", "SELECT, INSERT")
    tenant_table("privacy_concerns", "SELECT, INSERT, UPDATE, DELETE")


def downgrade() -> None:
    op.execute("DROP TABLE privacy_concerns")
    op.execute("DROP TABLE privacy_notice_receipts")
    op.execute("DROP TABLE privacy_notice_versions")
