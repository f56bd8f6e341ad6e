"""The two status vocabularies every layer speaks: a flow's and a participant's.

They sit at the bottom of the layers (with ``errors`` and ``clock``) because the
spec (a flow's desired status), the state (what the database holds), the lifecycle
rules, the executor and the renderers all name the same statuses, and none of them
may own the words for the others. The values are the external contract of
DESIGN.md sections 1 and 3: they are what the database stores and what JSON output
prints. ``StrEnum`` members are plain strings there, and compare equal to them.
This module imports nothing.
"""

from __future__ import annotations

from enum import StrEnum


# Whether a flow's triggers are on and its participants move (DESIGN.md section 1). A
# comment, not a docstring: pydantic would copy a docstring into the spec's JSON Schema.
class FlowStatus(StrEnum):
    NOT_RUNNING = "not_running"
    RUNNING = "running"
    PAUSED = "paused"


class ParticipantStatus(StrEnum):
    """Where one contact's enrollment in one flow stands (DESIGN.md section 1)."""

    QUEUED = "queued"  # enrolled while the flow was paused; waits for the first step
    ACTIVE = "active"  # on a step, maybe waiting until due_at
    FINISHED = "finished"
    FINISHED_WITH_SUCCESS = "finished_with_success"
    DROPPED_OUT = "dropped_out"  # always with a reason
    CANCELLED = "cancelled"  # the flow was ended
    FAILED = "failed"  # a permanent action error, kept with its text


IN_FLOW = (ParticipantStatus.QUEUED, ParticipantStatus.ACTIVE)
"""The statuses of participants still in their flow (every other status is final)."""

TRIGGERS_ON = frozenset({FlowStatus.RUNNING, FlowStatus.PAUSED})
"""Flow statuses whose triggers enroll contacts (running: at the first step; paused: queued)."""

__all__ = ["IN_FLOW", "TRIGGERS_ON", "FlowStatus", "ParticipantStatus"]
