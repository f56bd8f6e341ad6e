"""Plan as data: the stages a flow change is made of, the change, and the plan.

Each stage is a small frozen dataclass saying what apply will do; ``FlowChange`` holds a
flow's stages in order with its diff, whether a rule blocks it and why, who it reaches
and what it keeps out of band. ``apply`` visits these stages and every renderer (text,
JSON, Markdown) reads them; ``plan.build`` makes them, with no side effects.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from reconciler.diff import DiffEntry
from reconciler.spec.bundle import FlowBundle
from reconciler.statuses import FlowStatus

ACTIONS = ("create", "update", "start", "pause", "resume", "end", "delete", "no-op")
UpdatePolicy = Literal["block", "pause_and_resume"]


@dataclass(frozen=True)
class Create:
    """Create the flow with its spec, directly in its desired status."""

    bundle: FlowBundle
    status: FlowStatus


@dataclass(frozen=True)
class Update:
    """Replace the flow's spec (it is paused or not running by now); move the
    participants of removed steps to the steps that replace them."""

    bundle: FlowBundle
    moves: tuple[tuple[str, str, int], ...] = ()


@dataclass(frozen=True)
class Start:
    """not running → running: triggers on."""


@dataclass(frozen=True)
class Pause:
    """→ paused: participants freeze on their step, new ones queue."""


@dataclass(frozen=True)
class Resume:
    """paused → running: queued participants go to the first step, others continue."""


@dataclass(frozen=True)
class End:
    """→ not running: triggers off; queued and active participants are cancelled."""

    cancels: int = 0


@dataclass(frozen=True)
class Delete:
    """Remove the flow and its participants; its history stays."""


@dataclass(frozen=True)
class RecordSpec:
    """Store the spec as a new revision when only its status changed."""

    bundle: FlowBundle


Stage = Create | Update | Start | Pause | Resume | End | Delete | RecordSpec
STAGE_NAMES: dict[type, str] = {
    Create: "create",
    Update: "update",
    Start: "start",
    Pause: "pause",
    Resume: "resume",
    End: "end",
    Delete: "delete",
    RecordSpec: "record",
}


def stage_name(stage: Stage) -> str:
    return STAGE_NAMES[type(stage)]


@dataclass(frozen=True)
class StepImpact:
    """Who a changed step reaches: those on it and before it get the new version;
    those already past it do not (the vendor's rule; a new step never reaches them)."""

    step: str
    participants: int  # on the step now
    before: int = 0
    past: int = 0
    waiting: int = 0  # on it, waiting out a wait whose due time stays unless recomputed


@dataclass(frozen=True)
class OutOfBand:
    """A status the flow got outside the specs (``reconcile flow pause NAME`` …): what it is,
    what its last applied spec says, and who made it when. ``kept``: apply leaves it (the
    spec did not change and no ``--self-heal``); otherwise this change undoes it."""

    status: FlowStatus
    applied_status: FlowStatus
    actor: str | None
    origin: str | None
    at: datetime | None
    kept: bool


@dataclass(frozen=True)
class FlowChange:
    flow: str
    action: str
    stages: tuple[Stage, ...] = ()
    diff: tuple[DiffEntry, ...] = ()
    blocked: bool = False
    reason: str | None = None
    status_before: FlowStatus | None = None
    status_after: FlowStatus | None = None
    impact: tuple[StepImpact, ...] = ()
    expected_hash: str | None = None  # the actual state the plan was made against
    reasons: tuple[str, ...] = ()  # every blocking problem; ``reason`` joins them
    out_of_band: OutOfBand | None = None  # an out-of-band status this change keeps or undoes
    in_place: bool = False  # a metadata-only edit of a running flow: a new revision, no pause

    @property
    def is_change(self) -> bool:
        return self.action != "no-op"

    @property
    def kept(self) -> bool:
        """The flow keeps a status it got out of band."""
        return self.out_of_band is not None and self.out_of_band.kept


@dataclass(frozen=True)
class Plan:
    changes: tuple[FlowChange, ...]
    unmanaged: tuple[str, ...] = field(default=())

    @property
    def has_changes(self) -> bool:
        return any(c.is_change for c in self.changes)

    @property
    def blocked(self) -> tuple[FlowChange, ...]:
        return tuple(c for c in self.changes if c.blocked)

    @property
    def kept(self) -> tuple[FlowChange, ...]:
        return tuple(c for c in self.changes if c.kept)

    def summary(self) -> dict[str, int]:
        counts = Counter(c.action for c in self.changes)
        return {action: counts.get(action, 0) for action in ACTIONS} | {"blocked": len(self.blocked)}
