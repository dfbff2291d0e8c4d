"""Access packages (encrypted at rest, expiring links) and erasure certificates.

Revision ID: 0015
Revises: 0014
"""

from alembic import op

from bookwarden.db.migrations.rls import tenant_table

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Chunks are AES-256-GCM ciphertext under the package's own key (in the keyring, destroyed on
    # expiry); the download token is kept as its SHA-256 only.
    op.execute(
        """
        CREATE TABLE subject_export_packages (
            tenant_id UUID NOT NULL,
            id UUID NOT NULL,
            patron_id UUID NOT NULL,
            request_id UUID,
            created_by UUID,
            token_hash BYTEA NOT NULL,
            chunk_count INTEGER NOT NULL,
            size_bytes BIGINT NOT NULL,
            record_count INTEGER NOT NULL,
            sha256 BYTEA NOT NULL,
            created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            expires_at TIMESTAMP WITH TIME ZONE NOT NULL,
            downloads INTEGER NOT NULL DEFAULT 0,
            last_downloaded_at TIMESTAMP WITH TIME ZONE,
            CONSTRAINT pk_subject_export_packages PRIMARY KEY (tenant_id, id),
            CONSTRAINT fk_subject_export_packages_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id),
            CONSTRAINT fk_subject_export_packages_patron FOREIGN KEY(tenant_id, patron_id)
                REFERENCES patrons (tenant_id, id) ON DELETE CASCADE,
            CONSTRAINT uq_subject_export_packages_tenant_id_token_hash UNIQUE (tenant_id, token_hash)
        );
        CREATE INDEX ix_subject_export_packages_patron ON subject_export_packages (tenant_id, patron_id);
        CREATE INDEX ix_subject_export_packages_expires ON subject_export_packages (expires_at);

        CREATE TABLE subject_export_chunks (
            tenant_id UUID NOT NULL,
            package_id UUID NOT NULL,
            seq INTEGER NOT NULL,
            body BYTEA NOT NULL,
            CONSTRAINT pk_subject_export_chunks PRIMARY KEY (tenant_id, package_id, seq),
            CONSTRAINT fk_subject_export_chunks_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id),
            CONSTRAINT fk_subject_export_chunks_package FOREIGN KEY(tenant_id, package_id)
                REFERENCES subject_export_packages (tenant_id, id) ON DELETE CASCADE
        );

        CREATE TABLE erasure_policies (
            tenant_id UUID NOT NULL,
            keep_posts_anonymized BOOLEAN NOT NULL DEFAULT false,
            anonymous_author_id UUID,
            updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            CONSTRAINT pk_erasure_policies PRIMARY KEY (tenant_id),
            CONSTRAINT fk_erasure_policies_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id)
        );

        CREATE TABLE erasure_certificates (
            tenant_id UUID NOT NULL,
            id UUID NOT NULL,
            subject_id UUID NOT NULL,
            request_id UUID,
            erased_at TIMESTAMP WITH TIME ZONE NOT NULL,
            audit_seq BIGINT NOT NULL,
            statement JSONB NOT NULL,
            key_id VARCHAR(16) NOT NULL,
            signature BYTEA NOT NULL,
            CONSTRAINT pk_erasure_certificates PRIMARY KEY (tenant_id, id),
            CONSTRAINT fk_erasure_certificates_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id)
        );
        CREATE INDEX ix_erasure_certificates_subject ON erasure_certificates (tenant_id, subject_id);
        """
    )
    tenant_table("subject_export_packages")
    tenant_table("subject_export_chunks")
    tenant_table("erasure_policies")
    # A certificate is evidence: the app may add one and read it, never change or remove it.
    tenant_table("erasure_certificates", "SELECT, INSERT")

    # Events about a patron's records (a loan, a post) name the patron in details.patron_id: the access
    # package lists them too, and this keeps that lookup an index scan on a trail of any size.
    op.execute(
        "CREATE INDEX ix_audit_events_patron ON audit_events (tenant_id, (details->>'patron_id')) "
        "WHERE details ? 'patron_id'"
    )

    # The expiry job is a platform job (no tenant context): like bookwarden_complaints_due, a narrow
    # definer function returns the ids of expired packages, never their content.
    op.execute(
        "CREATE POLICY subject_exports_expired ON subject_export_packages FOR SELECT TO bookwarden_owner USING (true)"
    )
    op.execute(
        """
        CREATE FUNCTION bookwarden_subject_exports_expired(max_rows integer)
        RETURNS TABLE (tenant_id uuid, package_id uuid)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
        AS $$
            SELECT p.tenant_id, p.id FROM subject_export_packages p
            WHERE p.expires_at <= now()
            ORDER BY p.expires_at
            LIMIT max_rows
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION bookwarden_subject_exports_expired(integer) FROM PUBLIC")
    op.execute("GRANT EXECUTE ON FUNCTION bookwarden_subject_exports_expired(integer) TO bookwarden_app")


def downgrade() -> None:
    op.execute("DROP FUNCTION bookwarden_subject_exports_expired(integer)")
    op.execute("DROP INDEX ix_audit_events_patron")
    op.execute("DROP TABLE erasure_certificates")
    op.execute("DROP TABLE erasure_policies")
    op.execute("DROP TABLE subject_export_chunks")
    op.execute("DROP TABLE subject_export_packages")
