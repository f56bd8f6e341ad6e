"""What apply would do: desired specs vs actual state, as data (``stages``), built
without side effects (``build``). ``apply`` visits the stages; the renderers read them."""

from __future__ import annotations

from reconciler.plan.build import build_plan
from reconciler.plan.stages import (
    ACTIONS,
    STAGE_NAMES,
    Create,
    Delete,
    End,
    FlowChange,
    OutOfBand,
    Pause,
    Plan,
    RecordSpec,
    Resume,
    Stage,
    Start,
    StepImpact,
    Update,
    UpdatePolicy,
    stage_name,
)

__all__ = [
    "ACTIONS",
    "STAGE_NAMES",
    "Create",
    "Delete",
    "End",
    "FlowChange",
    "OutOfBand",
    "Pause",
    "Plan",
    "RecordSpec",
    "Resume",
    "Stage",
    "Start",
    "StepImpact",
    "Update",
    "UpdatePolicy",
    "build_plan",
    "stage_name",
]
