"""outbox: indexes for the claim order and the rate limit

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25

The dispatcher claims ``WHERE state = 'pending' AND next_attempt_at <= now ORDER BY
next_attempt_at, id LIMIT n``: with id in the index PostgreSQL reads the rows in claim
order and stops after n (SQLite had rowid there already). The per-flow rate limit
counts attempts started in the last minute: without an index on started_at that read
every attempt ever made, on every claim.
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_state_next")
        batch_op.create_index("ix_outbox_state_next_id", ["state", "next_attempt_at", "id"], unique=False)
    with op.batch_alter_table("outbox_attempts", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_attempts_started_at", ["started_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_attempts_started_at")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_state_next_id")
        batch_op.create_index("ix_outbox_state_next", ["state", "next_attempt_at"], unique=False)
