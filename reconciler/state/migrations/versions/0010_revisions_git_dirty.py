"""revisions.git_dirty: whether the applied files differed from the recorded commit

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05

The commit alone said nothing about whether the applied specs were that commit: the
old dirty check ignored untracked files, and its ``-dirty`` suffix was cut off by the
short sha in ``history``. The flag is now a column of its own (None outside git and
for revisions recorded before it existed); ``git_commit`` keeps the bare sha. Old rows
with a ``-dirty`` suffix get the flag and lose the suffix.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("revisions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("git_dirty", sa.Boolean(), nullable=True))
    op.execute(
        "UPDATE revisions SET git_dirty = TRUE, git_commit = substr(git_commit, 1, length(git_commit) - 6) "
        "WHERE git_commit LIKE '%-dirty'"
    )


def downgrade() -> None:
    op.execute("UPDATE revisions SET git_commit = git_commit || '-dirty' WHERE git_dirty = TRUE")
    with op.batch_alter_table("revisions", schema=None) as batch_op:
        batch_op.drop_column("git_dirty")
