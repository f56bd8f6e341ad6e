"""Plain records the store hands out; no SQLAlchemy types cross this line."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from reconciler.statuses import IN_FLOW, FlowStatus, ParticipantStatus

# The participant statuses by their short names (DESIGN.md section 1), as the executor spells them.
QUEUED = ParticipantStatus.QUEUED
ACTIVE = ParticipantStatus.ACTIVE
FINISHED = ParticipantStatus.FINISHED
FINISHED_WITH_SUCCESS = ParticipantStatus.FINISHED_WITH_SUCCESS
DROPPED_OUT = ParticipantStatus.DROPPED_OUT
CANCELLED = ParticipantStatus.CANCELLED
FAILED = ParticipantStatus.FAILED
PARTICIPANT_STATUSES = tuple(ParticipantStatus)


@dataclass(frozen=True)
class FlowRecord:
    """A flow as it is in the database now."""

    id: int
    name: str
    status: FlowStatus
    revision: int
    spec: dict[str, Any]
    files: dict[str, str]
    content_hash: str
    created_at: datetime
    updated_at: datetime
    status_changed_at: datetime

    @property
    def applied_status(self) -> FlowStatus:
        """The status its stored spec declares (``status`` may differ: a break-glass change)."""
        return FlowStatus(self.spec.get("spec", {}).get("status", FlowStatus.NOT_RUNNING))


@dataclass(frozen=True)
class RevisionRecord:
    """One applied revision of a flow (or its deletion)."""

    flow_name: str
    revision: int
    kind: str
    status: FlowStatus | None
    spec: dict[str, Any] | None
    files: dict[str, str] | None
    content_hash: str | None
    applied_at: datetime
    applied_by: str
    git_commit: str | None
    previous_revision: int | None
    git_dirty: bool | None = None  # the applied files differed from git_commit; None outside git


@dataclass(frozen=True)
class StatusChange:
    flow_name: str
    from_status: FlowStatus | None
    to_status: FlowStatus | None
    at: datetime
    origin: str
    actor: str


@dataclass(frozen=True)
class Occupancy:
    """Where a flow's participants are: counts per status, and per step for those in the flow."""

    by_status: dict[ParticipantStatus, int] = field(default_factory=dict)
    on_step: dict[str, int] = field(default_factory=dict)  # active participants per step id
    waiting: dict[str, int] = field(default_factory=dict)  # of those, waiting out a wait step
    next_due: dict[str, datetime] = field(default_factory=dict)  # the earliest due time of those per step
    passed: dict[str, int] = field(default_factory=dict)  # participants (any status) that ran the step

    @property
    def in_flow(self) -> int:
        return sum(self.by_status.get(s, 0) for s in IN_FLOW)

    def on(self, step_id: str) -> int:
        return self.on_step.get(step_id, 0)


@dataclass(slots=True)
class Participant:
    """One contact's enrollment in one flow, as stored: the one shape every layer reads.
    The executor claims participants, moves them (this object) and saves them back;
    everyone else only reads them."""

    id: int
    flow_id: int
    flow_name: str
    contact: str
    status: ParticipantStatus
    step_id: str | None
    step_state: str | None  # None, "waiting" (a wait or a timeout is running), "action" (the action came)
    due_at: datetime | None
    reason: str | None
    visit: int  # step runs so far: the next run's number
    success_at: datetime | None
    finished_at: datetime | None
    revision_seen: int  # the revision of the flow the participant's last step ran under
    enrolled_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class LeaseRecord:
    name: str
    holder: str
    acquired_at: datetime
    expires_at: datetime
    heartbeat_at: datetime


__all__ = [
    "ACTIVE",
    "CANCELLED",
    "DROPPED_OUT",
    "FAILED",
    "FINISHED",
    "FINISHED_WITH_SUCCESS",
    "IN_FLOW",
    "PARTICIPANT_STATUSES",
    "QUEUED",
    "FlowRecord",
    "FlowStatus",
    "LeaseRecord",
    "Occupancy",
    "Participant",
    "ParticipantStatus",
    "RevisionRecord",
    "StatusChange",
]


OUTBOX_STATES = ("pending", "sending", "sent", "failed", "unknown")


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
