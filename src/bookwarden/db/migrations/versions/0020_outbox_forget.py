"""Mail that is forgotten once settled: the outbox row goes when the message is sent or given up.

Revision ID: 0020
Revises: 0019
"""

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The confirmation of an erasure goes to an address the erasure has just removed everywhere
    # else: its outbox row must not keep it once delivery has settled (notify/delivery.py).
    op.execute("ALTER TABLE outbox ADD COLUMN forget_when_settled BOOLEAN DEFAULT false NOT NULL")


def downgrade() -> None:
    op.execute("ALTER TABLE outbox DROP COLUMN forget_when_settled")
