"""The state store: the one place that talks SQL.

Reads return plain records (``records``); writes happen inside
``Store.transaction()``, whose ``Tx`` offers the state changes apply, the
break-glass commands and (later) the executor need. A transaction commits whole
or not at all: no half-applied flow, ever.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Row, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import DataError, IntegrityError, OperationalError

from reconciler.state import crm
from reconciler.state import tables as t
from reconciler.state.database import READ_ONLY, DatabaseError, connect, ensure_current
from reconciler.state.records import (
    ACTIVE,
    CANCELLED,
    DROPPED_OUT,
    IN_FLOW,
    QUEUED,
    FlowRecord,
    LeaseRecord,
    Occupancy,
    ParticipantRecord,
    RevisionRecord,
    StatusChange,
)


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> Store:
        engine = connect(url)
        if migrate:
            ensure_current(engine)
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        try:
            with self.engine.begin() as connection:
                yield Tx(connection)
        except (OperationalError, IntegrityError, DataError) as exc:
            # Rolled back whole; say what the database said, without a traceback.
            raise DatabaseError(f"state database error: {str(exc.orig).strip().splitlines()[0]}") from None

    @contextmanager
    def reading(self) -> Iterator[Tx]:
        """A read-only transaction (on SQLite it does not take the write lock)."""
        with self._read() as connection, connection.begin():
            yield Tx(connection)

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect().execution_options(**READ_ONLY) as connection:
                yield connection
        except OperationalError as exc:
            raise DatabaseError(f"state database error: {exc.orig}") from None

    # --- reads -------------------------------------------------------------------

    def flows(self) -> dict[str, FlowRecord]:
        with self._read() as c:
            return {r.name: _flow(r) for r in c.execute(select(t.flows).order_by(t.flows.c.name))}

    def flow(self, name: str) -> FlowRecord | None:
        with self._read() as c:
            return _flow_or_none(c, name)

    def occupancy(self) -> dict[str, Occupancy]:
        """Participant counts for every flow, in two grouped queries."""
        with self._read() as c:
            return _occupancy(c)

    def oldest_due(self) -> datetime | None:
        """The earliest due time of an active participant of a running flow (executor lag)."""
        p, f = t.participants, t.flows
        query = (
            select(func.min(p.c.due_at))
            .join(f, f.c.id == p.c.flow_id)
            .where(p.c.status == ACTIVE, f.c.status == "running")
        )
        with self._read() as c:
            value = c.execute(query).scalar()
        return _aware(value)

    def dropout_reasons(self) -> dict[str, dict[str, int]]:
        """Why participants dropped out, per flow: reason → count."""
        p, f = t.participants, t.flows
        query = (
            select(f.c.name, p.c.reason, func.count())
            .join(f, f.c.id == p.c.flow_id)
            .where(p.c.status == DROPPED_OUT)
            .group_by(f.c.name, p.c.reason)
        )
        found: dict[str, dict[str, int]] = {}
        with self._read() as c:
            for name, reason, count in c.execute(query):
                found.setdefault(name, {})[reason or "unknown"] = count
        return found

    def revisions(self, name: str) -> list[RevisionRecord]:
        with self._read() as c:
            return _revisions(c, name)

    def last_revisions(self) -> dict[str, RevisionRecord]:
        """The newest revision of every flow name ever applied, in one query."""
        r = t.revisions
        newest = select(func.max(r.c.id)).group_by(r.c.flow_name).scalar_subquery()
        with self._read() as c:
            return {rev.flow_name: rev for rev in _revision_query(c, r.c.id.in_(newest))}

    def last_status_changes(self) -> dict[str, StatusChange]:
        s = t.status_changes
        newest = select(func.max(s.c.id)).group_by(s.c.flow_name).scalar_subquery()
        with self._read() as c:
            return {
                r.flow_name: StatusChange(r.flow_name, r.from_status, r.to_status, r.at, r.origin, r.actor)
                for r in c.execute(select(s).where(s.c.id.in_(newest)))
            }

    def status_changes(self, name: str | None = None) -> list[StatusChange]:
        query = select(t.status_changes).order_by(t.status_changes.c.id)
        if name is not None:
            query = query.where(t.status_changes.c.flow_name == name)
        with self._read() as c:
            return [
                StatusChange(r.flow_name, r.from_status, r.to_status, r.at, r.origin, r.actor) for r in c.execute(query)
            ]

    def participants(self, name: str) -> list[ParticipantRecord]:
        query = (
            select(t.participants, t.flows.c.name.label("flow_name"))
            .join(t.flows, t.flows.c.id == t.participants.c.flow_id)
            .where(t.flows.c.name == name)
            .order_by(t.participants.c.id)
        )
        with self._read() as c:
            return [_participant(r) for r in c.execute(query)]

    def blob(self, sha256: str) -> bytes | None:
        with self._read() as c:
            data = c.execute(select(t.blobs.c.data).where(t.blobs.c.sha256 == sha256)).scalar()
        return bytes(data) if data is not None else None

    def lease(self, name: str) -> LeaseRecord | None:
        with self._read() as c:
            row = c.execute(select(t.leases).where(t.leases.c.name == name)).first()
        return _lease(row) if row is not None else None


class Tx:
    """State changes inside one database transaction."""

    def __init__(self, connection: Connection) -> None:
        self.c = connection

    def flows(self) -> dict[str, FlowRecord]:
        return {r.name: _flow(r) for r in self.c.execute(select(t.flows).order_by(t.flows.c.name))}

    def flow(self, name: str) -> FlowRecord | None:
        return _flow_or_none(self.c, name)

    def occupancy(self) -> dict[str, Occupancy]:
        return _occupancy(self.c)

    def last_revision(self, name: str) -> RevisionRecord | None:
        found = _revisions(self.c, name, last=True)
        return found[0] if found else None

    def put_blobs(self, blobs: Iterable[tuple[str, bytes]]) -> None:
        for sha256, data in blobs:
            exists = self.c.execute(select(t.blobs.c.sha256).where(t.blobs.c.sha256 == sha256)).first()
            if exists is None:
                self.c.execute(insert(t.blobs).values(sha256=sha256, size=len(data), data=data))

    def create_flow(
        self, name: str, status: str, *, spec: dict[str, Any], files: dict[str, str], content_hash: str, now: datetime
    ) -> FlowRecord:
        self.c.execute(
            insert(t.flows).values(
                name=name,
                status=status,
                revision=0,
                spec=spec,
                files=files,
                content_hash=content_hash,
                created_at=now,
                updated_at=now,
                status_changed_at=now,
            )
        )
        record = _flow_or_none(self.c, name)
        assert record is not None
        return record

    def update_spec(
        self, name: str, *, spec: dict[str, Any], files: dict[str, str], content_hash: str, now: datetime
    ) -> None:
        self.c.execute(
            update(t.flows)
            .where(t.flows.c.name == name)
            .values(spec=spec, files=files, content_hash=content_hash, updated_at=now)
        )

    def record_revision(
        self, flow: FlowRecord | None, *, name: str, kind: str, now: datetime, actor: str, git_commit: str | None
    ) -> int:
        """Append the flow's current state (or its deletion) to its history; returns the revision number."""
        previous = self.last_revision(name)
        number = (previous.revision if previous else 0) + 1
        previous_id = (
            self.c.execute(
                select(t.revisions.c.id).where(t.revisions.c.flow_name == name, t.revisions.c.revision == number - 1)
            ).scalar()
            if previous
            else None
        )
        self.c.execute(
            insert(t.revisions).values(
                flow_name=name,
                revision=number,
                kind=kind,
                status=flow.status if flow else None,
                spec=flow.spec if flow else None,
                files=flow.files if flow else None,
                content_hash=flow.content_hash if flow else None,
                applied_at=now,
                applied_by=actor,
                git_commit=git_commit,
                previous_id=previous_id,
            )
        )
        if flow is not None:
            self.c.execute(update(t.flows).where(t.flows.c.name == name).values(revision=number))
        return number

    def set_status(self, name: str, status: str, now: datetime, *, origin: str, actor: str) -> str:
        """Set a flow's status; returns the status it had."""
        before = self.c.execute(select(t.flows.c.status).where(t.flows.c.name == name)).scalar_one()
        self.c.execute(
            update(t.flows).where(t.flows.c.name == name).values(status=status, status_changed_at=now, updated_at=now)
        )
        self.c.execute(
            insert(t.status_changes).values(
                flow_name=name, from_status=before, to_status=status, at=now, origin=origin, actor=actor
            )
        )
        return str(before)

    def delete_flow(self, name: str, now: datetime, *, origin: str, actor: str) -> None:
        flow_id = self.c.execute(select(t.flows.c.id).where(t.flows.c.name == name)).scalar_one()
        before = self.c.execute(select(t.flows.c.status).where(t.flows.c.id == flow_id)).scalar_one()
        participants = select(t.participants.c.id).where(t.participants.c.flow_id == flow_id)
        self.c.execute(delete(crm.step_runs).where(crm.step_runs.c.participant_id.in_(participants)))
        self.c.execute(delete(t.participants).where(t.participants.c.flow_id == flow_id))
        self.c.execute(delete(t.flows).where(t.flows.c.id == flow_id))
        self.c.execute(
            insert(t.status_changes).values(
                flow_name=name, from_status=before, to_status=None, at=now, origin=origin, actor=actor
            )
        )

    def cancel_participants(self, flow_id: int, now: datetime, reason: str) -> int:
        """Every queued or active participant → cancelled (the flow was ended)."""
        result = self.c.execute(
            update(t.participants)
            .where(t.participants.c.flow_id == flow_id, t.participants.c.status.in_(IN_FLOW))
            .values(status=CANCELLED, reason=reason, due_at=None, updated_at=now)
        )
        return int(result.rowcount)

    def release_queued(self, flow_id: int, first_step: str, revision: int, now: datetime) -> int:
        """Queued participants go to the first step (on resume or start)."""
        result = self.c.execute(
            update(t.participants)
            .where(t.participants.c.flow_id == flow_id, t.participants.c.status == QUEUED)
            .values(status=ACTIVE, step_id=first_step, due_at=now, revision_seen=revision, updated_at=now)
        )
        return int(result.rowcount)

    def waiting_on(self, flow_id: int, step_id: str) -> list[tuple[int, datetime | None, int]]:
        """(participant, due time, the revision it was worked out under) of those waiting on a step."""
        p = t.participants
        query = select(p.c.id, p.c.due_at, p.c.revision_seen).where(
            p.c.flow_id == flow_id, p.c.status == ACTIVE, p.c.step_id == step_id, p.c.step_state == "waiting"
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
        result = self.c.execute(
            update(t.participants)
            .where(
                t.participants.c.flow_id == flow_id,
                t.participants.c.status == ACTIVE,
                t.participants.c.step_id == from_step,
            )
            .values(step_id=to_step, due_at=now, updated_at=now)
        )
        return int(result.rowcount)

    def add_participant(
        self,
        flow_name: str,
        contact: str,
        *,
        status: str,
        step_id: str | None,
        now: datetime,
        due_at: datetime | None = None,
        reason: str | None = None,
    ) -> int:
        flow = _flow_or_none(self.c, flow_name)
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

    # --- leases ------------------------------------------------------------------

    def try_lease(self, name: str, holder: str, now: datetime, expires_at: datetime) -> LeaseRecord | None:
        """Take the lease if it is free, expired or ours; else return who holds it."""
        row = self.c.execute(select(t.leases).where(t.leases.c.name == name)).first()
        if row is None:
            try:
                with self.c.begin_nested():
                    self.c.execute(
                        insert(t.leases).values(
                            name=name, holder=holder, acquired_at=now, expires_at=expires_at, heartbeat_at=now
                        )
                    )
            except IntegrityError:  # somebody inserted it first
                row = self.c.execute(select(t.leases).where(t.leases.c.name == name)).first()
                assert row is not None
                return _lease(row)
            return None
        current = _lease(row)
        if current.holder != holder and current.expires_at > now:
            return current
        taken = self.c.execute(
            update(t.leases)
            .where(
                t.leases.c.name == name,
                t.leases.c.holder == current.holder,
                t.leases.c.expires_at == current.expires_at,
            )
            .values(holder=holder, acquired_at=now, expires_at=expires_at, heartbeat_at=now)
        )
        if taken.rowcount != 1:  # somebody else took it between our read and our write
            row = self.c.execute(select(t.leases).where(t.leases.c.name == name)).first()
            return _lease(row) if row is not None else current
        return None

    def renew_lease(self, name: str, holder: str, now: datetime, expires_at: datetime) -> bool:
        result = self.c.execute(
            update(t.leases)
            .where(t.leases.c.name == name, t.leases.c.holder == holder)
            .values(expires_at=expires_at, heartbeat_at=now)
        )
        return bool(result.rowcount)

    def release_lease(self, name: str, holder: str | None = None) -> bool:
        query = delete(t.leases).where(t.leases.c.name == name)
        if holder is not None:
            query = query.where(t.leases.c.holder == holder)
        return bool(self.c.execute(query).rowcount)


def _flow(r: Row[Any]) -> FlowRecord:
    return FlowRecord(
        r.id,
        r.name,
        r.status,
        r.revision,
        r.spec,
        r.files,
        r.content_hash,
        r.created_at,
        r.updated_at,
        r.status_changed_at,
    )


def _flow_or_none(c: Connection, name: str) -> FlowRecord | None:
    row = c.execute(select(t.flows).where(t.flows.c.name == name)).first()
    return _flow(row) if row is not None else None


def _occupancy(c: Connection) -> dict[str, Occupancy]:
    p, f = t.participants, t.flows
    by_status: dict[str, dict[str, int]] = {}
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
        .where(p.c.status == ACTIVE)
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
    passed_in_flow: dict[str, dict[str, int]] = {}
    runs = crm.step_runs
    for name, step, status, count in c.execute(
        select(f.c.name, runs.c.step_id, p.c.status, func.count(func.distinct(runs.c.participant_id)))
        .join(p, p.c.id == runs.c.participant_id)
        .join(f, f.c.id == p.c.flow_id)
        .group_by(f.c.name, runs.c.step_id, p.c.status)
    ):
        steps = passed.setdefault(name, {})
        steps[step] = steps.get(step, 0) + count
        if status in IN_FLOW:
            in_flow = passed_in_flow.setdefault(name, {})
            in_flow[step] = in_flow.get(step, 0) + count
    return {
        name: Occupancy(
            by_status=counts,
            on_step=on_step.get(name, {}),
            waiting=waiting.get(name, {}),
            next_due=next_due.get(name, {}),
            passed=passed.get(name, {}),
            passed_in_flow=passed_in_flow.get(name, {}),
        )
        for name, counts in by_status.items()
    }


def _revisions(c: Connection, name: str, *, last: bool = False) -> list[RevisionRecord]:
    r = t.revisions
    if last:
        newest = select(func.max(r.c.revision)).where(r.c.flow_name == name).scalar_subquery()
        return _revision_query(c, (r.c.flow_name == name) & (r.c.revision == newest))
    return _revision_query(c, r.c.flow_name == name)


def _revision_query(c: Connection, where: Any) -> list[RevisionRecord]:
    r = t.revisions
    previous = r.alias("previous")
    query = (
        select(r, previous.c.revision.label("previous_revision"))
        .outerjoin(previous, previous.c.id == r.c.previous_id)
        .where(where)
        .order_by(r.c.flow_name, r.c.revision)
    )
    return [
        RevisionRecord(
            row.flow_name,
            row.revision,
            row.kind,
            row.status,
            row.spec,
            row.files,
            row.content_hash,
            row.applied_at,
            row.applied_by,
            row.git_commit,
            row.previous_revision,
        )
        for row in c.execute(query)
    ]


def _participant(r: Row[Any]) -> ParticipantRecord:
    return ParticipantRecord(
        r.id,
        r.flow_name,
        r.contact,
        r.status,
        r.step_id,
        r.due_at,
        r.reason,
        r.revision_seen,
        r.enrolled_at,
        r.updated_at,
    )


def _lease(r: Row[Any]) -> LeaseRecord:
    return LeaseRecord(r.name, r.holder, r.acquired_at, r.expires_at, r.heartbeat_at)


def _aware(value: datetime | None) -> datetime | None:
    """Aggregates bypass the column type: SQLite hands back a naive UTC string or datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
