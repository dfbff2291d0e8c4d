"""Jobs: the PostgreSQL job queue and its recurring schedules (platform tables, no RLS).

Revision ID: 0002
Revises: 0001
"""

from alembic import op

from bookwarden.db.migrations.rls import grant_app

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE TYPE job_status AS ENUM ('queued', 'running', 'succeeded', 'failed')")
    # No tenant_id column: a job for one tenant names it in its payload, and the worker (app
    # role, no tenant context) must see every tenant's jobs to claim them.
    op.execute(
        """
        CREATE TABLE jobs (
            id BIGINT GENERATED ALWAYS AS IDENTITY,
            kind TEXT NOT NULL,
            payload JSONB DEFAULT '{}'::jsonb NOT NULL,
            status job_status NOT NULL,
            run_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            attempts INTEGER NOT NULL,
            max_attempts INTEGER NOT NULL,
            last_error TEXT,
            locked_by TEXT,
            locked_until TIMESTAMP WITH TIME ZONE,
            created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            finished_at TIMESTAMP WITH TIME ZONE,
            CONSTRAINT pk_jobs PRIMARY KEY (id),
            CONSTRAINT ck_jobs_kind_not_empty CHECK (kind <> ''),
            CONSTRAINT ck_jobs_attempts_not_negative CHECK (attempts >= 0),
            CONSTRAINT ck_jobs_max_attempts_positive CHECK (max_attempts >= 1),
            CONSTRAINT ck_jobs_running_has_lease
                CHECK (status <> 'running' OR (locked_by IS NOT NULL AND locked_until IS NOT NULL))
        );
        CREATE INDEX ix_jobs_status_run_at ON jobs (status, run_at);
        CREATE TABLE job_schedules (
            name TEXT NOT NULL,
            kind TEXT NOT NULL,
            payload JSONB DEFAULT '{}'::jsonb NOT NULL,
            every_seconds INTEGER NOT NULL,
            next_run_at TIMESTAMP WITH TIME ZONE NOT NULL,
            enabled BOOLEAN DEFAULT true NOT NULL,
            CONSTRAINT pk_job_schedules PRIMARY KEY (name),
            CONSTRAINT ck_job_schedules_every_seconds_positive CHECK (every_seconds > 0),
            CONSTRAINT ck_job_schedules_kind_not_empty CHECK (kind <> '')
        );
        """
    )
    # DELETE on jobs only: finished jobs are purged (their payloads name tenants and subjects);
    # schedules are paused with `enabled`, never deleted by the service.
    grant_app("jobs", "SELECT, INSERT, UPDATE, DELETE")
    grant_app("job_schedules", "SELECT, INSERT, UPDATE")
