"""SQL for the outbox dispatcher: claim pending sends, record every attempt.

A row moves ``pending → sending → sent | failed | unknown`` (and back to ``pending``
for a retry). ``sending`` is committed *before* the provider is called, so a
dispatcher that dies mid-send leaves the row ``sending``; the next dispatcher turns
rows stuck there into ``unknown`` — visible, never resent blindly, never lost.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select, update
from sqlalchemy.exc import DataError, IntegrityError, OperationalError

from reconciler.state import crm as c
from reconciler.state import tables as t
from reconciler.state.bulk import chunks
from reconciler.state.database import DatabaseError, advisory_xact_lock
from reconciler.state.records import OutboxRow
from reconciler.state.store import Store, Tx
from reconciler.statuses import IN_FLOW, ParticipantStatus

CLAIM_LOCK_KEY = 0x72656364  # "recd": the advisory lock around a dispatcher's claim


class HeldConnection:
    """One connection kept for a dispatcher's run, for its many small transactions: no
    pool checkout and reset per transaction (half the cost of ``Store.transaction`` on
    SQLite). Not for threads at once; ``GroupCommit`` serialises its use."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._connection: Connection | None = None

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        try:
            if self._connection is None:
                self._connection = self.store.engine.connect()
            with self._connection.begin():
                yield Tx(self._connection)
        except (OperationalError, IntegrityError, DataError) as exc:
            self.close()  # rolled back whole; a fresh connection next time
            raise DatabaseError(f"state database error: {str(exc.orig).strip().splitlines()[0]}") from None

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


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
    """Due rows, longest due first. Ordered like the index (state, next_attempt_at, id),
    so the LIMIT stops after ``limit`` rows instead of sorting every due row (a backlog
    of 20,000 made each claim sort 20,000)."""
    o = c.outbox
    query = (
        select(o)
        .where(o.c.state == "pending", o.c.next_attempt_at <= now)
        .order_by(o.c.next_attempt_at, o.c.id)
        .limit(limit)
    )
    if tx.c.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return [_row(r) for r in tx.c.execute(query)]


def sent_since(tx: Tx, since: datetime, flows: Iterable[str]) -> dict[str, int]:
    """Attempts started since ``since``, for each of these flows (the per-flow rate
    limit): counted in the (flow_name, started_at) index, no table rows read."""
    a = c.outbox_attempts
    query = (
        select(a.c.flow_name, func.count())
        .where(a.c.flow_name.in_(sorted(set(flows))), a.c.started_at >= since)
        .group_by(a.c.flow_name)
    )
    return {str(name): int(n) for name, n in tx.c.execute(query)}


def serialize_claims(tx: Tx) -> None:
    """One dispatcher claims at a time (PostgreSQL), so each sees the others' reservations
    when it works out a flow's rate budget."""
    advisory_xact_lock(tx.c, CLAIM_LOCK_KEY)


def reserve(tx: Tx, rows: Sequence[OutboxRow], until: datetime, now: datetime) -> None:
    """Hold claimed rows for this dispatcher: still ``pending``, but not due for anyone
    else until ``until``. A dispatcher that dies leaves them due again, not lost."""
    _postpone(tx, [r.id for r in rows], until, now, reserved=True)


def reserved_by_flow(tx: Tx, now: datetime) -> dict[str, int]:
    """Rows some dispatcher holds to send and has not started yet, per flow: with the
    attempts started in the last minute, what a flow's rate limit has spent."""
    o = c.outbox
    query = select(o.c.flow_name, func.count()).where(o.c.reserved_until > now).group_by(o.c.flow_name)
    return {str(name): int(n) for name, n in tx.c.execute(query)}


@dataclass(frozen=True)
class Finished:
    """The outcome of one attempt, to be written: ``state`` of the row (``pending`` for a
    retry at ``next_attempt_at``) and ``outcome`` of the attempt."""

    row: OutboxRow
    state: str
    outcome: str
    detail: str | None = None
    next_attempt_at: datetime | None = None
    provider_id: str | None = None


_o, _a = c.outbox, c.outbox_attempts
_START_ATTEMPT = insert(_a).values(
    outbox_id=bindparam("b_id"),
    flow_name=bindparam("b_flow"),
    attempt=bindparam("b_attempt"),
    started_at=bindparam("b_now", type_=_a.c.started_at.type),
    finished_at=None,
    outcome="sending",
    detail=None,
    provider_id=None,
)
_RESERVED = (_o.c.state == "pending", _o.c.next_attempt_at == bindparam("b_reserved", type_=_o.c.next_attempt_at.type))
_SENDING = {
    "state": "sending",
    "reserved_until": None,
    "attempts": _o.c.attempts + 1,
    "updated_at": bindparam("b_now", type_=_o.c.updated_at.type),
}
_START_ROW = update(_o).where(_o.c.id == bindparam("b_id"), *_RESERVED).values(_SENDING).returning(_o.c.id)
_START_ROWS = (
    update(_o).where(_o.c.id.in_(bindparam("b_ids", expanding=True)), *_RESERVED).values(_SENDING).returning(_o.c.id)
)
_FINISH_ROW = (
    update(_o)
    .where(_o.c.id == bindparam("b_id"))
    .values(
        state=bindparam("b_state"),
        updated_at=bindparam("b_now", type_=_o.c.updated_at.type),
        last_error=bindparam("b_error", type_=_o.c.last_error.type),
        next_attempt_at=func.coalesce(
            bindparam("b_next", type_=_o.c.next_attempt_at.type), _o.c.next_attempt_at, type_=_o.c.next_attempt_at.type
        ),
    )
)
_FINISH_ATTEMPT = (
    update(_a)
    .where(_a.c.outbox_id == bindparam("b_id"), _a.c.attempt == bindparam("b_attempt"))
    .values(
        outcome=bindparam("b_outcome"),
        finished_at=bindparam("b_now", type_=_a.c.finished_at.type),
        detail=bindparam("b_detail", type_=_a.c.detail.type),
        provider_id=bindparam("b_provider", type_=_a.c.provider_id.type),
    )
)


def start_attempts(tx: Tx, rows: Sequence[tuple[OutboxRow, datetime]], now: datetime) -> set[int]:
    """Mark reserved rows ``sending`` and open their attempts, right before they are
    handed over (committed first). ``rows`` are (row, reserved until); returns the ids
    taken — a row is not when its reservation lapsed and another dispatcher took it."""
    by_reservation: dict[datetime, list[int]] = {}
    for row, reserved_until in rows:
        by_reservation.setdefault(reserved_until, []).append(row.id)
    taken: set[int] = set()
    for reserved_until, ids in by_reservation.items():
        if len(ids) == 1:  # the common case: one thread's next row; a statement SQLAlchemy compiled already
            taken.update(
                tx.c.execute(_START_ROW, {"b_id": ids[0], "b_reserved": reserved_until, "b_now": now}).scalars()
            )
            continue
        for part in chunks(ids):
            taken.update(
                tx.c.execute(_START_ROWS, {"b_ids": part, "b_reserved": reserved_until, "b_now": now}).scalars()
            )
    started = [
        {"b_id": row.id, "b_flow": row.flow_name, "b_attempt": row.attempts + 1, "b_now": now}
        for row, _ in rows
        if row.id in taken
    ]
    if started:
        tx.c.execute(_START_ATTEMPT, started)
    return taken


def start_attempt(tx: Tx, row: OutboxRow, reserved_until: datetime, now: datetime) -> bool:
    """``start_attempts`` for one row."""
    return bool(start_attempts(tx, [(row, reserved_until)], now))


def finish_attempts(tx: Tx, finished: Sequence[Finished], now: datetime) -> None:
    """Write outcomes: each row's state and its attempt's outcome, two statements for all."""
    if not finished:
        return
    tx.c.execute(
        _FINISH_ROW,
        [
            {
                "b_id": f.row.id,
                "b_state": f.state,
                "b_now": now,
                "b_error": f.detail if f.state != "sent" else None,
                "b_next": f.next_attempt_at,
            }
            for f in finished
        ],
    )
    tx.c.execute(
        _FINISH_ATTEMPT,
        [
            {
                "b_id": f.row.id,
                "b_attempt": f.row.attempts + 1,
                "b_outcome": f.outcome,
                "b_now": now,
                "b_detail": f.detail,
                "b_provider": f.provider_id,
            }
            for f in finished
        ],
    )


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
    """``finish_attempts`` for one row."""
    finish_attempts(tx, [Finished(row, state, outcome, detail, next_attempt_at, provider_id)], now)


def defer(tx: Tx, ids: Sequence[int], until: datetime, now: datetime) -> None:
    """Not before ``until`` (the sending window, the rate limit), for any dispatcher."""
    _postpone(tx, ids, until, now, reserved=False)


def _postpone(tx: Tx, ids: Sequence[int], until: datetime, now: datetime, *, reserved: bool) -> None:
    o = c.outbox
    for part in chunks(list(ids)):
        tx.c.execute(
            update(o)
            .where(o.c.id.in_(part))
            .values(next_attempt_at=until, reserved_until=until if reserved else None, updated_at=now)
        )


def fail_participant(tx: Tx, participant_id: int, reason: str, now: datetime) -> None:
    """A send failed for good: the participant stops here, with the reason (if still in the flow)."""
    p = t.participants
    tx.c.execute(
        update(p)
        .where(p.c.id == participant_id, p.c.status.in_(IN_FLOW))
        .values(status=ParticipantStatus.FAILED, reason=reason[:500], due_at=None, finished_at=now, updated_at=now)
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
