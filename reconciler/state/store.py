"""The state store: the one place that talks SQL.

Reads return plain records (``records``); writes happen inside
``Store.transaction()``, whose ``Tx`` offers the state changes apply, the
break-glass commands and the executor need. A transaction commits whole or not at
all: no half-applied flow, ever. The flows table is written here; the statements on
participants, history and leases live in ``participant_store``, ``history_store``
and ``lease_store``, and ``Tx`` gathers them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Row, create_engine, delete, insert, select, update
from sqlalchemy.exc import DataError, IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.pool import StaticPool

from reconciler.state import crm, history_store, lease_store, participant_store
from reconciler.state import tables as t
from reconciler.state.database import READ_ONLY, DatabaseError, connect, connect_for_reading, ensure_current
from reconciler.state.history_store import HistoryTx
from reconciler.state.lease_store import LeaseTx
from reconciler.state.participant_store import ParticipantTx
from reconciler.state.records import (
    FlowRecord,
    LeaseRecord,
    Occupancy,
    Participant,
    RevisionRecord,
    StatusChange,
)
from reconciler.statuses import FlowStatus

INSUFFICIENT_PRIVILEGE = "42501"  # PostgreSQL's SQLSTATE for a role without the right to write


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> Store:
        engine = connect(url)
        if migrate:
            ensure_current(engine)
        return cls(engine)

    @classmethod
    def open_read_only(cls, url: str) -> Store:
        """A store for commands that only read: it never creates, migrates or writes the
        database. With no state yet (a missing SQLite file, an empty database) it reads an
        empty state held in memory, so ``plan`` shows everything to create."""
        engine = connect_for_reading(url)
        return cls(engine if engine is not None else _empty_state())

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
        except ProgrammingError as exc:
            if getattr(exc.orig, "sqlstate", None) != INSUFFICIENT_PRIVILEGE:
                raise
            raise DatabaseError(
                f"state database error: {str(exc.orig).strip().splitlines()[0]} (are these read-only credentials?)"
            ) from None

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
            return _flows(c)

    def flow(self, name: str) -> FlowRecord | None:
        with self._read() as c:
            return _flow_or_none(c, name)

    def occupancy(self) -> dict[str, Occupancy]:
        """Participant counts for every flow, in a few grouped queries."""
        with self._read() as c:
            return participant_store.occupancy(c)

    def oldest_due(self) -> datetime | None:
        """The earliest due time of an active participant of a running flow (executor lag)."""
        with self._read() as c:
            return participant_store.oldest_due(c)

    def dropout_reasons(self) -> dict[str, dict[str, int]]:
        """Why participants dropped out, per flow: reason → count."""
        with self._read() as c:
            return participant_store.dropout_reasons(c)

    def revisions(self, name: str) -> list[RevisionRecord]:
        with self._read() as c:
            return history_store.revisions(c, name)

    def last_revisions(self) -> dict[str, RevisionRecord]:
        """The newest revision of every flow name ever applied, in one query."""
        with self._read() as c:
            return history_store.last_revisions(c)

    def last_status_changes(self) -> dict[str, StatusChange]:
        with self._read() as c:
            return history_store.last_status_changes(c)

    def status_changes(self, name: str | None = None) -> list[StatusChange]:
        with self._read() as c:
            return history_store.status_changes(c, name)

    def participants(self, name: str) -> list[Participant]:
        with self._read() as c:
            return participant_store.participants(c, name)

    def blob(self, sha256: str) -> bytes | None:
        with self._read() as c:
            data = c.execute(select(t.blobs.c.data).where(t.blobs.c.sha256 == sha256)).scalar()
        return bytes(data) if data is not None else None

    def lease(self, name: str) -> LeaseRecord | None:
        with self._read() as c:
            return lease_store.read_lease(c, name)


class Tx(ParticipantTx, HistoryTx, LeaseTx):
    """State changes inside one database transaction."""

    def __init__(self, connection: Connection) -> None:
        self.c = connection

    def flows(self) -> dict[str, FlowRecord]:
        return _flows(self.c)

    def flow(self, name: str) -> FlowRecord | None:
        return _flow_or_none(self.c, name)

    def occupancy(self) -> dict[str, Occupancy]:
        return participant_store.occupancy(self.c)

    def put_blobs(self, blobs: Iterable[tuple[str, bytes]]) -> None:
        for sha256, data in blobs:
            exists = self.c.execute(select(t.blobs.c.sha256).where(t.blobs.c.sha256 == sha256)).first()
            if exists is None:
                self.c.execute(insert(t.blobs).values(sha256=sha256, size=len(data), data=data))

    def create_flow(
        self,
        name: str,
        status: FlowStatus,
        *,
        spec: dict[str, Any],
        files: dict[str, str],
        content_hash: str,
        now: datetime,
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

    def set_status(self, name: str, status: FlowStatus, now: datetime, *, origin: str, actor: str) -> FlowStatus:
        """Set a flow's status; returns the status it had."""
        before: FlowStatus = self.c.execute(select(t.flows.c.status).where(t.flows.c.name == name)).scalar_one()
        self.c.execute(
            update(t.flows).where(t.flows.c.name == name).values(status=status, status_changed_at=now, updated_at=now)
        )
        self.c.execute(
            insert(t.status_changes).values(
                flow_name=name, from_status=before, to_status=status, at=now, origin=origin, actor=actor
            )
        )
        return before

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


def _empty_state() -> Engine:
    """An in-memory database with the current schema and no rows: "nothing applied yet"."""
    engine = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
    t.metadata.create_all(engine)
    return engine


def _flows(c: Connection) -> dict[str, FlowRecord]:
    return {r.name: _flow(r) for r in c.execute(select(t.flows).order_by(t.flows.c.name))}


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
