"""SQL for the CRM event log: what flows react to (triggers, criteria, awaited actions).

Split from ``crm_store`` because the log has rules of its own: an event whose
idempotency key was seen before is dropped, an event nothing awaits is stored
already processed, and unprocessed events are claimed in order (``SKIP LOCKED`` on
PostgreSQL). Events are appended and marked processed, never edited otherwise.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, select, update

from reconciler.state import crm as c
from reconciler.state.bulk import chunks, insert_many
from reconciler.state.crm_records import EventRecord, NewEvent


class EventTx:
    """The event log statements of ``CrmTx`` (a mixin: ``c`` is the transaction's connection)."""

    c: Connection

    def known_event_keys(self, keys: Iterable[str]) -> set[str]:
        """The idempotency keys among ``keys`` that stored events already carry."""
        seen: set[str] = set()
        for part in chunks(sorted(set(keys))):
            column = c.events.c.idempotency_key
            seen.update(self.c.execute(select(column).where(column.in_(part))).scalars())
        return seen

    def append_events(self, new: Sequence[NewEvent], *, awaited: Container[str] | None = None) -> int:
        """Store events; one whose idempotency key was seen before is dropped. Returns how many were stored.

        With ``awaited`` (the types anything reacts to), an event of another type is
        stored already processed: the event pass would only pass over it."""
        seen = self.known_event_keys(e.idempotency_key for e in new if e.idempotency_key)
        rows = []
        for event in new:
            if event.idempotency_key and event.idempotency_key in seen:
                continue
            if event.idempotency_key:
                seen.add(event.idempotency_key)
            rows.append(
                {
                    "type": event.type,
                    "contact_email": event.contact_email.lower(),
                    "subject": event.subject,
                    "data": dict(event.data),
                    "source": event.source,
                    "idempotency_key": event.idempotency_key,
                    "occurred_at": event.occurred_at,
                    "processed_at": None if awaited is None or event.type in awaited else event.occurred_at,
                }
            )
        insert_many(self.c, c.events, rows)
        return len(rows)

    def unprocessed_events(self, limit: int) -> list[EventRecord]:
        query = select(c.events).where(c.events.c.processed_at.is_(None)).order_by(c.events.c.id).limit(limit)
        if self.c.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        return [_event(r) for r in self.c.execute(query)]

    def pass_over_events(self, except_types: Iterable[str], now: datetime) -> int:
        """Mark every unprocessed event whose type is not in ``except_types`` processed
        at once (nothing reacts to it; it stays stored for reports and splits)."""
        e = c.events
        query = update(e).where(e.c.processed_at.is_(None), e.c.type.not_in(sorted(set(except_types))))
        return int(self.c.execute(query.values(processed_at=now)).rowcount)

    def mark_processed(self, ids: Sequence[int], now: datetime) -> None:
        for part in chunks(list(ids)):
            self.c.execute(update(c.events).where(c.events.c.id.in_(part)).values(processed_at=now))

    def events_of(
        self, emails: Iterable[str], types: Iterable[str], since: datetime | None = None
    ) -> list[EventRecord]:
        wanted = sorted(set(emails))
        found: list[EventRecord] = []
        for part in chunks(wanted):
            conditions: list[ColumnElement[bool]] = [
                c.events.c.contact_email.in_(part),
                c.events.c.type.in_(sorted(set(types))),
            ]
            if since is not None:
                conditions.append(c.events.c.occurred_at >= since)
            found.extend(
                _event(r) for r in self.c.execute(select(c.events).where(and_(*conditions)).order_by(c.events.c.id))
            )
        return found


def _event(row: Any) -> EventRecord:
    return EventRecord(
        row.id, row.type, row.contact_email, row.subject, dict(row.data or {}), row.source, row.occurred_at
    )
