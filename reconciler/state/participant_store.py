"""SQL for participants as apply and the reports see them: where they are, and the
moves a flow's lifecycle makes them do (cancel on end, release on resume, move off a
removed step, a new due time for a changed wait).

Split from ``store`` to keep the participant table's set-based statements together:
each is one statement for a whole flow, never a query per participant. The
executor's own hot path (claims and bulk write-back) is ``executor_store``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select, update

from reconciler.state import crm
from reconciler.state import tables as t
from reconciler.state.database import DatabaseError
from reconciler.state.records import Occupancy, Participant
from reconciler.statuses import IN_FLOW, FlowStatus, ParticipantStatus


class ParticipantTx:
    """The participant statements of ``Tx`` (a mixin: ``c`` is the transaction's connection)."""

    c: Connection

    def cancel_participants(self, flow_id: int, now: datetime, reason: str) -> int:
        """Every queued or active participant → cancelled (the flow was ended)."""
        result = self.c.execute(
            update(t.participants)
            .where(t.participants.c.flow_id == flow_id, t.participants.c.status.in_(IN_FLOW))
            .values(status=ParticipantStatus.CANCELLED, reason=reason, due_at=None, updated_at=now)
        )
        return int(result.rowcount)

    def release_queued(self, flow_id: int, first_step: str, revision: int, now: datetime) -> int:
        """Queued participants go to the first step (on resume or start)."""
        p = t.participants
        result = self.c.execute(
            update(p)
            .where(p.c.flow_id == flow_id, p.c.status == ParticipantStatus.QUEUED)
            .values(
                status=ParticipantStatus.ACTIVE, step_id=first_step, due_at=now, revision_seen=revision, updated_at=now
            )
        )
        return int(result.rowcount)

    def waiting_on(self, flow_id: int, step_id: str) -> list[tuple[int, datetime | None, int]]:
        """(participant, due time, the revision it was worked out under) of those waiting on a step."""
        p = t.participants
        query = select(p.c.id, p.c.due_at, p.c.revision_seen).where(
            p.c.flow_id == flow_id,
            p.c.status == ParticipantStatus.ACTIVE,
            p.c.step_id == step_id,
            p.c.step_state == "waiting",
        )
        return [(int(i), due, int(seen)) for i, due, seen in self.c.execute(query)]

    def set_due(self, dues: Sequence[tuple[int, datetime]], now: datetime, revision: int) -> None:
        """New due times, worked out under ``revision``."""
        if dues:
            p = t.participants
            statement = (
                update(p)
                .where(p.c.id == bindparam("pid"))
                .values(due_at=bindparam("due"), revision_seen=revision, updated_at=now)
            )
            self.c.execute(statement, [{"pid": i, "due": due} for i, due in dues])

    def move_participants(self, flow_id: int, from_step: str, to_step: str, now: datetime) -> int:
        p = t.participants
        result = self.c.execute(
            update(p)
            .where(p.c.flow_id == flow_id, p.c.status == ParticipantStatus.ACTIVE, p.c.step_id == from_step)
            .values(step_id=to_step, due_at=now, updated_at=now)
        )
        return int(result.rowcount)

    def add_participant(
        self,
        flow_name: str,
        contact: str,
        *,
        status: ParticipantStatus,
        step_id: str | None,
        now: datetime,
        due_at: datetime | None = None,
        reason: str | None = None,
    ) -> int:
        flow = self.c.execute(select(t.flows.c.id, t.flows.c.revision).where(t.flows.c.name == flow_name)).first()
        if flow is None:
            raise DatabaseError(f"no flow named {flow_name!r}")
        result = self.c.execute(
            insert(t.participants).values(
                flow_id=flow.id,
                contact=contact,
                status=status,
                step_id=step_id,
                due_at=due_at,
                reason=reason,
                revision_seen=flow.revision,
                enrolled_at=now,
                updated_at=now,
            )
        )
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])


def participant_columns() -> list[Any]:
    """The columns of a ``Participant``, in its field order (select them joined with flows)."""
    p, f = t.participants, t.flows
    return [f.c.name if name == "flow_name" else p.c[name] for name in Participant.__dataclass_fields__]


def participants(c: Connection, name: str) -> list[Participant]:
    query = (
        select(*participant_columns())
        .join(t.flows, t.flows.c.id == t.participants.c.flow_id)
        .where(t.flows.c.name == name)
        .order_by(t.participants.c.id)
    )
    return [Participant(*row) for row in c.execute(query)]


def oldest_due(c: Connection) -> datetime | None:
    """The earliest due time of an active participant of a running flow (executor lag)."""
    p, f = t.participants, t.flows
    query = (
        select(func.min(p.c.due_at))
        .join(f, f.c.id == p.c.flow_id)
        .where(p.c.status == ParticipantStatus.ACTIVE, f.c.status == FlowStatus.RUNNING)
    )
    return _aware(c.execute(query).scalar())


def dropout_reasons(c: Connection) -> dict[str, dict[str, int]]:
    """Why participants dropped out, per flow: reason → count."""
    p, f = t.participants, t.flows
    query = (
        select(f.c.name, p.c.reason, func.count())
        .join(f, f.c.id == p.c.flow_id)
        .where(p.c.status == ParticipantStatus.DROPPED_OUT)
        .group_by(f.c.name, p.c.reason)
    )
    found: dict[str, dict[str, int]] = {}
    for name, reason, count in c.execute(query):
        found.setdefault(name, {})[reason or "unknown"] = count
    return found


def occupancy(c: Connection) -> dict[str, Occupancy]:
    """Participant counts for every flow, in three grouped queries."""
    p, f = t.participants, t.flows
    by_status: dict[str, dict[ParticipantStatus, int]] = {}
    on_step: dict[str, dict[str, int]] = {}
    for name, status, count in c.execute(
        select(f.c.name, p.c.status, func.count()).join(f, f.c.id == p.c.flow_id).group_by(f.c.name, p.c.status)
    ):
        by_status.setdefault(name, {})[status] = count
    waiting: dict[str, dict[str, int]] = {}
    next_due: dict[str, dict[str, datetime]] = {}
    for name, step, state, count, earliest in c.execute(
        select(f.c.name, p.c.step_id, p.c.step_state, func.count(), func.min(p.c.due_at))
        .join(f, f.c.id == p.c.flow_id)
        .where(p.c.status == ParticipantStatus.ACTIVE)
        .group_by(f.c.name, p.c.step_id, p.c.step_state)
    ):
        steps = on_step.setdefault(name, {})
        steps[step] = steps.get(step, 0) + count
        if state == "waiting":
            waiting.setdefault(name, {})[step] = count
        due = _aware(earliest)
        if due is not None:
            dues = next_due.setdefault(name, {})
            dues[step] = min(dues.get(step, due), due)
    passed: dict[str, dict[str, int]] = {}
    runs = crm.step_runs
    for name, step, count in c.execute(
        select(f.c.name, runs.c.step_id, func.count(func.distinct(runs.c.participant_id)))
        .join(p, p.c.id == runs.c.participant_id)
        .join(f, f.c.id == p.c.flow_id)
        .group_by(f.c.name, runs.c.step_id)
    ):
        passed.setdefault(name, {})[step] = count
    return {
        name: Occupancy(
            by_status=counts,
            on_step=on_step.get(name, {}),
            waiting=waiting.get(name, {}),
            next_due=next_due.get(name, {}),
            passed=passed.get(name, {}),
        )
        for name, counts in by_status.items()
    }


def _aware(value: datetime | None) -> datetime | None:
    """Aggregates bypass the column type: SQLite hands back a naive UTC string or datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
