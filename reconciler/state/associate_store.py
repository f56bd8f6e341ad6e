"""SQL for associates (the colleagues flows assign, notify and book) and their diaries.

Split from ``crm_store`` because associates are the CRM's people on our side, not
contacts: loaded by ``associates import``, looked up by name for owners and
notifications, and asked for a free slot when a step books a meeting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from reconciler.state import crm as c
from reconciler.state.crm_records import AssociateRecord


class AssociateTx:
    """The associate and diary statements of ``CrmTx`` (a mixin: ``c`` is the transaction's connection)."""

    c: Connection

    def upsert_associates(self, rows: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
        """Insert or update associates by name; only the keys given change. Returns (created, updated)."""
        existing = {a.name: a for a in self.associates()}
        created = updated = 0
        for row in rows:
            values = {k: row[k] for k in ("email", "mobile", "group_name", "active") if k in row}
            current = existing.get(row["name"])
            if current is None:
                self.c.execute(
                    insert(c.associates).values(
                        name=row["name"],
                        **{"email": None, "mobile": None, "group_name": None, "active": True, **values},
                    )
                )
                created += 1
            elif any(getattr(current, k) != v for k, v in values.items()):
                self.c.execute(update(c.associates).where(c.associates.c.name == row["name"]).values(**values))
                updated += 1
        return created, updated

    def associates(self) -> list[AssociateRecord]:
        return [
            AssociateRecord(r.id, r.name, r.email, r.mobile, r.group_name, r.active)
            for r in self.c.execute(select(c.associates).order_by(c.associates.c.name))
        ]

    def appointments(self, associate_id: int, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
        a = c.appointments
        query = (
            select(a.c.starts_at, a.c.ends_at)
            .where(a.c.associate_id == associate_id, a.c.ends_at > start, a.c.starts_at < end)
            .order_by(a.c.starts_at)
        )
        return [(s, e) for s, e in self.c.execute(query)]

    def add_appointment(
        self, associate_id: int, start: datetime, end: datetime, title: str, contact_id: int | None
    ) -> None:
        self.c.execute(
            insert(c.appointments).values(
                associate_id=associate_id, starts_at=start, ends_at=end, title=title, contact_id=contact_id
            )
        )
