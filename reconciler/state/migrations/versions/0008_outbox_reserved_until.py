"""outbox: reserved_until, so every dispatcher counts every reservation against the rate limit

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25

A flow's rate limit counted the attempts started in the last minute and the rows this
dispatcher had reserved but not started: another process's reservations were not
counted, so two dispatchers could each send a full minute's budget. A reserved row
now says so in the database (``reserved_until``, cleared when its attempt starts or it
is deferred), indexed over the reserved rows only.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

RESERVED = sa.text("reserved_until IS NOT NULL")


def upgrade() -> None:
    op.add_column("outbox", sa.Column("reserved_until", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_outbox_reserved",
        "outbox",
        ["reserved_until", "flow_name"],
        sqlite_where=RESERVED,
        postgresql_where=RESERVED,
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_reserved", table_name="outbox")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("reserved_until")
