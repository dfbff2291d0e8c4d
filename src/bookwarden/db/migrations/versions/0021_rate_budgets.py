"""Per-address budgets for open routes that are not sign-ins (the portal's cookie banner).

Revision ID: 0021
Revises: 0020
"""

from alembic import op

from bookwarden.db.migrations.rls import grant_app

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A platform table like auth_failures: keyed by an HMAC of the address bucket (a key derived
    # from the master key), so it names nobody; counts belong to no institution.
    op.execute(
        """
        CREATE TABLE rate_budgets (
            purpose TEXT NOT NULL,
            key BYTEA NOT NULL,
            window_start TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            spent INTEGER NOT NULL,
            CONSTRAINT pk_rate_budgets PRIMARY KEY (purpose, key),
            CONSTRAINT ck_rate_budgets_purpose_known CHECK (purpose IN ('cookie_choice')),
            CONSTRAINT ck_rate_budgets_spent_positive CHECK (spent >= 1)
        );
        CREATE INDEX ix_rate_budgets_window_start ON rate_budgets (window_start);
        """
    )
    grant_app("rate_budgets", "SELECT, INSERT, UPDATE, DELETE")


def downgrade() -> None:
    op.execute("DROP TABLE rate_budgets")
