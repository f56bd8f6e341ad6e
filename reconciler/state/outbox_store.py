"""SQL for the outbox dispatcher: claim pending sends, record every attempt.

A row moves ``pending → sending → sent | failed | unknown`` (and back to ``pending``
for a retry). ``sending`` is committed *before* the provider is called, so a
dispatcher that dies mid-send leaves the row ``sending``; the next dispatcher turns
rows stuck there into ``unknown`` — visible, never resent blindly, never lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update

from reconciler.state import crm as c
from reconciler.state import tables as t
from reconciler.state.crm_store import chunks
from reconciler.state.records import IN_FLOW
from reconciler.state.store import Tx

STATES = ("pending", "sending", "sent", "failed", "unknown")


@dataclass(frozen=True)
class OutboxRow:
    id: int
    idempotency_key: str
    participant_id: int | None
    flow_name: str
    revision: int
    step_id: str
    kind: str
    contact_email: str
    payload: dict[str, Any]
    state: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    updated_at: datetime


def _row(r: Any) -> OutboxRow:
    return OutboxRow(**{k: getattr(r, k) for k in OutboxRow.__dataclass_fields__})


def recover_stale(tx: Tx, stale_before: datetime, now: datetime) -> int:
    """Rows left ``sending`` by a dispatcher that died: the provider may have them."""
    o = c.outbox
    stuck = list(tx.c.execute(select(o.c.id).where(o.c.state == "sending", o.c.updated_at < stale_before)).scalars())
    for part in chunks(stuck):
        tx.c.execute(
            update(o)
            .where(o.c.id.in_(part))
            .values(
                state="unknown",
                updated_at=now,
                last_error="the dispatcher stopped while sending: the provider may or may not have it",
            )
        )
        a = c.outbox_attempts
        tx.c.execute(
            update(a)
            .where(a.c.outbox_id.in_(part), a.c.outcome == "sending")
            .values(outcome="unknown", finished_at=now)
        )
    return len(stuck)


def claim_pending(tx: Tx, now: datetime, limit: int) -> list[OutboxRow]:
    o = c.outbox
    query = select(o).where(o.c.state == "pending", o.c.next_attempt_at <= now).order_by(o.c.id).limit(limit)
    if tx.c.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return [_row(r) for r in tx.c.execute(query)]


def sent_since(tx: Tx, since: datetime) -> dict[str, int]:
    """Sends per flow since ``since`` (for the per-flow rate limit)."""
    a, o = c.outbox_attempts, c.outbox
    query = (
        select(o.c.flow_name, func.count())
        .join(o, o.c.id == a.c.outbox_id)
        .where(a.c.started_at >= since)
        .group_by(o.c.flow_name)
    )
    return {str(name): int(n) for name, n in tx.c.execute(query)}


def reserve(tx: Tx, rows: Sequence[OutboxRow], until: datetime, now: datetime) -> None:
    """Hold claimed rows for this dispatcher: still ``pending``, but not due for anyone
    else until ``until``. A dispatcher that dies leaves them due again, not lost."""
    defer(tx, [r.id for r in rows], until, now)


def start_attempt(tx: Tx, row: OutboxRow, reserved_until: datetime, now: datetime) -> bool:
    """Mark one reserved row ``sending`` and open its attempt, right before it is handed
    over (committed first). False when the reservation lapsed and another took it."""
    o = c.outbox
    taken = tx.c.execute(
        update(o)
        .where(o.c.id == row.id, o.c.state == "pending", o.c.next_attempt_at == reserved_until)
        .values(state="sending", attempts=row.attempts + 1, updated_at=now)
    )
    if taken.rowcount != 1:
        return False
    tx.c.execute(
        insert(c.outbox_attempts).values(
            outbox_id=row.id,
            attempt=row.attempts + 1,
            started_at=now,
            finished_at=None,
            outcome="sending",
            detail=None,
            provider_id=None,
        )
    )
    return True


def finish_attempt(
    tx: Tx,
    row: OutboxRow,
    *,
    state: str,
    outcome: str,
    now: datetime,
    next_attempt_at: datetime | None = None,
    detail: str | None = None,
    provider_id: str | None = None,
) -> None:
    o, a = c.outbox, c.outbox_attempts
    values: dict[str, Any] = {"state": state, "updated_at": now, "last_error": detail if state != "sent" else None}
    if next_attempt_at is not None:
        values["next_attempt_at"] = next_attempt_at
    tx.c.execute(update(o).where(o.c.id == row.id).values(**values))
    tx.c.execute(
        update(a)
        .where(a.c.outbox_id == row.id, a.c.attempt == row.attempts + 1)
        .values(outcome=outcome, finished_at=now, detail=detail, provider_id=provider_id)
    )


def defer(tx: Tx, ids: Sequence[int], until: datetime, now: datetime) -> None:
    o = c.outbox
    for part in chunks(list(ids)):
        tx.c.execute(update(o).where(o.c.id.in_(part)).values(next_attempt_at=until, updated_at=now))


def fail_participant(tx: Tx, participant_id: int, reason: str, now: datetime) -> None:
    """A send failed for good: the participant stops here, with the reason (if still in the flow)."""
    p = t.participants
    tx.c.execute(
        update(p)
        .where(p.c.id == participant_id, p.c.status.in_(IN_FLOW))
        .values(status="failed", reason=reason[:500], due_at=None, finished_at=now, updated_at=now)
    )


def revision_spec(tx: Tx, flow_name: str, revision: int) -> tuple[dict[str, Any], dict[str, str]] | None:
    r = t.revisions
    row = tx.c.execute(select(r.c.spec, r.c.files).where(r.c.flow_name == flow_name, r.c.revision == revision)).first()
    if row is None or row.spec is None:
        return None
    return dict(row.spec), dict(row.files or {})


def outbox_counts(tx: Tx) -> dict[str, dict[str, int]]:
    o = c.outbox
    found: dict[str, dict[str, int]] = {}
    for flow, state, n in tx.c.execute(
        select(o.c.flow_name, o.c.state, func.count()).group_by(o.c.flow_name, o.c.state)
    ):
        found.setdefault(str(flow), {})[str(state)] = int(n)
    return found


def outbox_rows(tx: Tx, states: Sequence[str], limit: int) -> list[OutboxRow]:
    o = c.outbox
    query = select(o).where(o.c.state.in_(list(states))).order_by(o.c.id).limit(limit)
    return [_row(r) for r in tx.c.execute(query)]


def blob(tx: Tx, digest: str) -> bytes | None:
    """A stored content file, by its SHA-256."""
    data = tx.c.execute(select(t.blobs.c.data).where(t.blobs.c.sha256 == digest)).scalar()
    return bytes(data) if data is not None else None
