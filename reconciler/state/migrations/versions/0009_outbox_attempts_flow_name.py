"""outbox_attempts: the flow's name, so the rate limit counts from one index

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25

Every claim of the dispatcher counts each flow's attempts of the last minute. That
joined every attempt of the window to its outbox row for the flow's name: at a
thousand messages a second, some 60,000 rows per claim. With the name on the attempt
and an index on (flow_name, started_at), the count is a range of one index. Existing
attempts get the name of their row.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox_attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("flow_name", sa.String(63), nullable=True))
    op.execute(
        "UPDATE outbox_attempts SET flow_name = "
        "(SELECT outbox.flow_name FROM outbox WHERE outbox.id = outbox_attempts.outbox_id)"
    )
    with op.batch_alter_table("outbox_attempts", schema=None) as batch_op:
        batch_op.alter_column("flow_name", existing_type=sa.String(63), nullable=False)
        batch_op.drop_index("ix_outbox_attempts_started_at")
        batch_op.create_index("ix_outbox_attempts_flow_started", ["flow_name", "started_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_attempts_flow_started")
        batch_op.create_index("ix_outbox_attempts_started_at", ["started_at"], unique=False)
        batch_op.drop_column("flow_name")
