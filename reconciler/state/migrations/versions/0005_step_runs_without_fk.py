"""step_runs: no foreign key to participants

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25

step_runs is the executor's log: one row per participant-step, written in the batch
that claimed (and locked) the participant. On PostgreSQL the foreign key checked every
inserted row with a ``SELECT … FOR KEY SHARE`` on the participant — a quarter of the
executor's database time at 100k participants — to protect a reference that the
same transaction had just read. Deleting a flow deletes its participants' step runs
explicitly instead of by cascade.
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("step_runs", schema=None) as batch_op:
        batch_op.drop_constraint("fk_step_runs_participant_id_participants", type_="foreignkey")


def downgrade() -> None:
    op.execute("DELETE FROM step_runs WHERE participant_id NOT IN (SELECT id FROM participants)")
    with op.batch_alter_table("step_runs", schema=None) as batch_op:
        batch_op.create_foreign_key(
            "fk_step_runs_participant_id_participants", "participants", ["participant_id"], ["id"], ondelete="CASCADE"
        )
