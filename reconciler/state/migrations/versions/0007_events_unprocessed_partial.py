"""events: index only the events still to process

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25

The event pass reads ``WHERE processed_at IS NULL ORDER BY id LIMIT n``. The index on
(processed_at, id) held every event ever stored, most of them processed long ago (the
executor's own contact_updated and added_to_selection events are stored processed when
no flow awaits them), so every insert paid for an entry nobody reads. A partial index on
id, over the unprocessed events only, serves the same read and stays as small as the
backlog.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

UNPROCESSED = sa.text("processed_at IS NULL")


def upgrade() -> None:
    op.drop_index("ix_events_unprocessed", table_name="events")
    op.create_index("ix_events_unprocessed", "events", ["id"], sqlite_where=UNPROCESSED, postgresql_where=UNPROCESSED)


def downgrade() -> None:
    op.drop_index("ix_events_unprocessed", table_name="events")
    op.create_index("ix_events_unprocessed", "events", ["processed_at", "id"])
