"""participants: claim index ordered like the claim

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25

The executor claims ``WHERE status = 'active' AND due_at <= now ORDER BY due_at, id
LIMIT n``. With (status, due_at) PostgreSQL had to sort every due row to break ties on
id, and once its statistics said most rows were active it chose a sequential scan plus
an external sort: 100 ms per claim at 100k participants. (status, due_at, id) hands the
rows over in claim order, so the LIMIT stops after n.
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("participants", schema=None) as batch_op:
        batch_op.drop_index("ix_participants_status_due")
        batch_op.create_index("ix_participants_status_due_id", ["status", "due_at", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("participants", schema=None) as batch_op:
        batch_op.drop_index("ix_participants_status_due_id")
        batch_op.create_index("ix_participants_status_due", ["status", "due_at"], unique=False)
