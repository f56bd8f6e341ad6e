"""Plain records the store hands out; no SQLAlchemy types cross this line."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# Participant statuses (DESIGN.md section 1).
QUEUED = "queued"
ACTIVE = "active"
FINISHED = "finished"
FINISHED_WITH_SUCCESS = "finished_with_success"
DROPPED_OUT = "dropped_out"
CANCELLED = "cancelled"
FAILED = "failed"
PARTICIPANT_STATUSES = (QUEUED, ACTIVE, FINISHED, FINISHED_WITH_SUCCESS, DROPPED_OUT, CANCELLED, FAILED)
IN_FLOW = (QUEUED, ACTIVE)


@dataclass(frozen=True)
class FlowRecord:
    """A flow as it is in the database now."""

    id: int
    name: str
    status: str
    revision: int
    spec: dict[str, Any]
    files: dict[str, str]
    content_hash: str
    created_at: datetime
    updated_at: datetime
    status_changed_at: datetime


@dataclass(frozen=True)
class RevisionRecord:
    """One applied revision of a flow (or its deletion)."""

    flow_name: str
    revision: int
    kind: str
    status: str | None
    spec: dict[str, Any] | None
    files: dict[str, str] | None
    content_hash: str | None
    applied_at: datetime
    applied_by: str
    git_commit: str | None
    previous_revision: int | None


@dataclass(frozen=True)
class StatusChange:
    flow_name: str
    from_status: str | None
    to_status: str | None
    at: datetime
    origin: str
    actor: str


@dataclass(frozen=True)
class Occupancy:
    """Where a flow's participants are: counts per status, and per step for those in the flow."""

    by_status: dict[str, int] = field(default_factory=dict)
    on_step: dict[str, int] = field(default_factory=dict)  # active participants per step id
    waiting: dict[str, int] = field(default_factory=dict)  # of those, waiting out a wait step
    next_due: dict[str, datetime] = field(default_factory=dict)  # the earliest due time of those per step
    passed: dict[str, int] = field(default_factory=dict)  # participants (any status) that ran the step
    passed_in_flow: dict[str, int] = field(default_factory=dict)  # of those, still queued or active

    @property
    def in_flow(self) -> int:
        return sum(self.by_status.get(s, 0) for s in IN_FLOW)

    def on(self, step_id: str) -> int:
        return self.on_step.get(step_id, 0)


@dataclass(frozen=True)
class ParticipantRecord:
    id: int
    flow_name: str
    contact: str
    status: str
    step_id: str | None
    due_at: datetime | None
    reason: str | None
    revision_seen: int
    enrolled_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class LeaseRecord:
    name: str
    holder: str
    acquired_at: datetime
    expires_at: datetime
    heartbeat_at: datetime
