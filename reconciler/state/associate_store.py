"""SQL for associates (the colleagues flows assign, notify and book) and their diaries.

Split from ``crm_store`` because associates are the CRM's people on our side, not
contacts: loaded by ``associates import``, looked up by name for owners and
notifications, and asked for a free slot when a step books a meeting. The slot
search (``first_free_slot``) is pure: it reads a diary given to it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
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


def first_free_slot(
    busy: Sequence[tuple[datetime, datetime]],
    after: datetime,
    length: timedelta,
    tz: tzinfo,
    *,
    day_start: int = 8,
    day_end: int = 17,
    working_days_only: bool = True,
) -> datetime:
    """The first slot of ``length`` at or after ``after`` within working hours in ``tz``
    that overlaps none of ``busy``; aware datetimes in, UTC out."""
    slot = after.astimezone(tz)
    if slot.minute or slot.second or slot.microsecond:  # meetings start on the hour
        slot = slot.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    for _ in range(10_000):
        opens = slot.replace(hour=day_start, minute=0, second=0, microsecond=0)
        closes = slot.replace(hour=day_end, minute=0, second=0, microsecond=0)
        if (working_days_only and slot.weekday() >= 5) or slot + length > closes:
            slot = opens + timedelta(days=1)
        elif slot < opens:
            slot = opens
        else:
            clash = max((e for s, e in busy if s < slot + length and e > slot), default=None)
            if clash is None:
                return slot.astimezone(UTC)
            slot = clash.astimezone(tz)
    raise ValueError("no free slot in the diary within a year")
