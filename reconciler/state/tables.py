"""The state database schema (SQLAlchemy Core).

Actual state lives here: flows as last applied, every applied revision, status
changes, participants (the table the executor drives), stored content files, and
leases. Migrations in ``migrations/`` create exactly these tables; a test checks
that the two agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from reconciler.statuses import FlowStatus, ParticipantStatus

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class When(TypeDecorator[datetime]):
    """An aware UTC datetime on every backend (SQLite keeps no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the state database")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_Status = TypeVar("_Status", FlowStatus, ParticipantStatus)


class Status(TypeDecorator[_Status]):
    """A status column: its plain string value goes in (an unknown status is refused
    before it reaches the database), the enum member comes out."""

    impl = String
    cache_ok = True

    def __init__(self, statuses: type[_Status], length: int) -> None:
        super().__init__(length)
        self.statuses: type[_Status] = statuses
        # Dict lookups, not ``statuses(value)``: the executor reads and writes a status per
        # participant, and an enum call costs as much as the rest of the conversion.
        self._plain: dict[str, str] = {m.value: str(m.value) for m in statuses}
        self._members: dict[str, _Status] = {m.value: m for m in statuses}

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        plain = self._plain.get(value)
        return plain if plain is not None else self.statuses(value).value  # the enum says what is wrong

    def process_result_value(self, value: Any, dialect: Dialect) -> _Status | None:
        if value is None:
            return None
        member = self._members.get(value)
        return member if member is not None else self.statuses(value)


flows = Table(
    "flows",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(63), nullable=False, unique=True),
    Column("status", Status(FlowStatus, 16), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("spec", JSON, nullable=False),
    Column("files", JSON, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("created_at", When(), nullable=False),
    Column("updated_at", When(), nullable=False),
    Column("status_changed_at", When(), nullable=False),
)

revisions = Table(
    "revisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # By name, not by flow id: the history of a deleted (or re-created) flow stays.
    Column("flow_name", String(63), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("kind", String(16), nullable=False),  # apply | delete
    Column("status", Status(FlowStatus, 16), nullable=True),
    Column("spec", JSON, nullable=True),
    Column("files", JSON, nullable=True),
    Column("content_hash", String(64), nullable=True),
    Column("applied_at", When(), nullable=False),
    Column("applied_by", String(200), nullable=False),
    Column("git_commit", String(64), nullable=True),  # the bare sha of HEAD
    Column("git_dirty", Boolean, nullable=True),  # applied files differed from it; None outside git
    Column("previous_id", Integer, ForeignKey("revisions.id"), nullable=True),
    UniqueConstraint("flow_name", "revision", name="uq_revisions_flow_name_revision"),
)

status_changes = Table(
    "status_changes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("flow_name", String(63), nullable=False, index=True),
    Column("from_status", Status(FlowStatus, 16), nullable=True),
    Column("to_status", Status(FlowStatus, 16), nullable=True),
    Column("at", When(), nullable=False),
    Column("origin", String(16), nullable=False),  # apply | break-glass
    Column("actor", String(200), nullable=False),
)

participants = Table(
    "participants",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("flow_id", Integer, ForeignKey("flows.id", ondelete="CASCADE"), nullable=False),
    Column("contact", String(320), nullable=False),
    Column("status", Status(ParticipantStatus, 24), nullable=False),
    Column("step_id", String(63), nullable=True),
    Column("due_at", When(), nullable=True),
    Column("reason", Text, nullable=True),
    Column("revision_seen", Integer, nullable=False),
    Column("enrolled_at", When(), nullable=False),
    Column("updated_at", When(), nullable=False),
    # Executor state: which move this is (step_runs are unique per visit), what the
    # participant is doing on its step (None: not started; "waiting"; "action": the
    # awaited action happened), and when a success criterion was met.
    Column("visit", Integer, nullable=False, server_default="0"),
    Column("step_state", String(16), nullable=True),
    Column("success_at", When(), nullable=True),
    Column("finished_at", When(), nullable=True),
    Index("ix_participants_flow_status_step", "flow_id", "status", "step_id"),
    Index("ix_participants_status_due_id", "status", "due_at", "id"),
    Index("ix_participants_contact", "contact"),
)

blobs = Table(
    "blobs",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("size", Integer, nullable=False),
    Column("data", LargeBinary, nullable=False),
)

leases = Table(
    "leases",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("acquired_at", When(), nullable=False),
    Column("expires_at", When(), nullable=False),
    Column("heartbeat_at", When(), nullable=False),
)
