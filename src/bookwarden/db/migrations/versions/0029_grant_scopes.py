"""Operator grants gain two scopes: `privacy` (an institution's privacy work, handled, never decided) and
`audit` (its audit trail), so that the console's commands on an institution go through a grant as HTTP
does (console.py).

Revision ID: 0029
Revises: 0028
"""

from alembic import op

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE operator_grants DROP CONSTRAINT ck_operator_grants_known_scope;
        ALTER TABLE operator_grants ADD CONSTRAINT ck_operator_grants_known_scope
            CHECK (scope IN ('read', 'read_write', 'privacy', 'audit'));
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DELETE FROM operator_grants WHERE scope IN ('privacy', 'audit');
        ALTER TABLE operator_grants DROP CONSTRAINT ck_operator_grants_known_scope;
        ALTER TABLE operator_grants ADD CONSTRAINT ck_operator_grants_known_scope
            CHECK (scope IN ('read', 'read_write'));
        """
    )
