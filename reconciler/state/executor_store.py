"""SQL for the step executor: claim due participants in batches, write their moves.

Claims are set-based: one query picks up to N due participants of running flows,
locking them (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several workers on
several machines never take the same row; SQLite's ``BEGIN IMMEDIATE`` serializes
writers instead). The executor then processes the batch in memory and writes every
move back with ``executemany`` — all in the one transaction that claimed them, so a
worker that dies mid-batch leaves nothing behind: its rows are simply due again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update

from reconciler.state import crm as c
from reconciler.state import tables as t
from reconciler.state.bulk import chunks, insert_many, update_many
from reconciler.state.database import advisory_xact_lock
from reconciler.state.participant_store import participant_columns
from reconciler.state.records import Participant
from reconciler.state.store import Tx
from reconciler.statuses import IN_FLOW, FlowStatus, ParticipantStatus

EVENT_LOCK_KEY = 0x72656376  # "recv": the advisory lock around event processing
_PARTICIPANT_FIELDS = (
    "status",
    "step_id",
    "due_at",
    "reason",
    "step_state",
    "visit",
    "success_at",
    "finished_at",
    "revision_seen",
)


def claim_due(tx: Tx, now: datetime, limit: int) -> list[Participant]:
    p, f = t.participants, t.flows
    query = (
        select(*participant_columns())
        .join(f, f.c.id == p.c.flow_id)
        .where(p.c.status == ParticipantStatus.ACTIVE, p.c.due_at <= now, f.c.status == FlowStatus.RUNNING)
        .order_by(p.c.due_at, p.c.id)
        .limit(limit)
    )
    if tx.c.dialect.name == "postgresql":
        query = query.with_for_update(of=p, skip_locked=True)
    return [Participant(*row) for row in tx.c.execute(query).all()]


def save_participants(tx: Tx, claimed: Sequence[Participant], now: datetime) -> None:
    """Write back every claimed participant's new state in one bulk update."""
    rows = [{"id": one.id, **{name: getattr(one, name) for name in _PARTICIPANT_FIELDS}} for one in claimed]
    update_many(tx.c, t.participants, rows, updated_at=now)


def log_step_runs(tx: Tx, rows: Sequence[Mapping[str, Any]]) -> None:
    insert_many(tx.c, c.step_runs, rows)


def add_outbox(tx: Tx, rows: Sequence[Mapping[str, Any]]) -> None:
    insert_many(tx.c, c.outbox, rows)


def insert_participants(tx: Tx, rows: Sequence[Mapping[str, Any]]) -> None:
    insert_many(tx.c, t.participants, rows)


def participations(tx: Tx, emails: Iterable[str], *, in_flow_only: bool = False) -> list[Participant]:
    """Every participation of these contacts (or only queued/active ones)."""
    p, f = t.participants, t.flows
    wanted = sorted(set(emails))
    found: list[Participant] = []
    for part in chunks(wanted):
        query = (
            select(*participant_columns()).join(f, f.c.id == p.c.flow_id).where(p.c.contact.in_(part)).order_by(p.c.id)
        )
        if in_flow_only:
            query = query.where(p.c.status.in_(IN_FLOW))
        found.extend(Participant(*row) for row in tx.c.execute(query))
    return found


def set_participant_fields(tx: Tx, ids: Sequence[int], now: datetime, **values: Any) -> None:
    p = t.participants
    for part in chunks(list(ids)):
        tx.c.execute(update(p).where(p.c.id.in_(part)).values(**values, updated_at=now))


def count_by_value(tx: Tx, column: str, values: Sequence[str]) -> dict[str, int]:
    """How many contacts each value of ``column`` (our_contact …) has: for even distribution."""
    return _counts(tx, c.contacts.c[column], values)


def open_requests_by_owner(tx: Tx, owners: Sequence[str]) -> dict[str, int]:
    """How many requests that are not closed each owner has: for automatic assignment."""
    return _counts(tx, c.requests.c.owner, owners, c.requests.c.status != "closed")


def _counts(tx: Tx, column: Any, values: Sequence[str], *where: Any) -> dict[str, int]:
    """Rows per value of ``column`` among ``values`` (0 for the missing ones)."""
    query = select(column, func.count()).where(column.in_(list(values)), *where).group_by(column)
    counts = dict.fromkeys(values, 0)
    counts.update({str(value): int(n) for value, n in tx.c.execute(query)})
    return counts


def mark_success(tx: Tx, ids: Sequence[int], now: datetime) -> None:
    """A success criterion was met (the first time counts)."""
    p = t.participants
    for part in chunks(list(ids)):
        tx.c.execute(update(p).where(p.c.id.in_(part), p.c.success_at.is_(None)).values(success_at=now, updated_at=now))


def lock_event_processing(tx: Tx) -> None:
    """One event processor at a time (PostgreSQL): events are handled in order per
    contact, and two workers never enroll the same contact from two events at once."""
    advisory_xact_lock(tx.c, EVENT_LOCK_KEY)


def status_history(tx: Tx, names: Sequence[str]) -> dict[str, list[tuple[datetime, str | None]]]:
    """Each flow's status changes, oldest first: (when, new status)."""
    s = t.status_changes
    found: dict[str, list[tuple[datetime, str | None]]] = {}
    query = select(s.c.flow_name, s.c.at, s.c.to_status).where(s.c.flow_name.in_(list(names))).order_by(s.c.id)
    for name, at, status in tx.c.execute(query):
        found.setdefault(str(name), []).append((at, status))
    return found
