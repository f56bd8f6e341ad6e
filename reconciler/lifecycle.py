"""Flow lifecycle rules, as pure functions (the seeds are the authority).

Status transitions: ``not_running`` (triggers off), ``running`` (no edits),
``paused`` (triggers on, new participants queued, edits allowed with limits).
Edit restrictions while paused, once participants exist (DESIGN.md section 1):
a wait, wait-for-action or split step that participants are in cannot be moved or
removed; a branch with participants cannot be removed; another occupied step can be
removed only when a step ``replaces`` it (its participants move there); a step's
type cannot change under the same id while participants are on it.
"""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.spec.graph import flow_graph
from reconciler.spec.models import Flow
from reconciler.spec.steps import WAIT_TYPES, Split
from reconciler.state.records import Occupancy
from reconciler.statuses import FlowStatus

NOT_RUNNING, RUNNING, PAUSED = FlowStatus.NOT_RUNNING, FlowStatus.RUNNING, FlowStatus.PAUSED
STUCK_TYPES = WAIT_TYPES | {"split"}

# (from, to) → the action that makes it. A flow may also be created in any status.
TRANSITIONS: dict[tuple[FlowStatus, FlowStatus], str] = {
    (NOT_RUNNING, RUNNING): "start",
    (NOT_RUNNING, PAUSED): "pause",  # start paused: triggers on, participants queue
    (RUNNING, PAUSED): "pause",
    (PAUSED, RUNNING): "resume",
    (RUNNING, NOT_RUNNING): "end",
    (PAUSED, NOT_RUNNING): "end",
}
TARGET: dict[str, FlowStatus] = {"start": RUNNING, "resume": RUNNING, "pause": PAUSED, "end": NOT_RUNNING}


class TransitionError(ValueError):
    """A status change the lifecycle does not allow."""


def transition(before: FlowStatus, after: FlowStatus) -> str | None:
    """The action that takes a flow from ``before`` to ``after``; None when they are equal."""
    if before == after:
        return None
    return TRANSITIONS[(before, after)]


def check_action(status: FlowStatus, action: str) -> FlowStatus:
    """The status an imperative ``action`` leads to from ``status``, or TransitionError."""
    if action == "delete":
        if status == RUNNING:
            raise TransitionError("a running flow cannot be deleted: pause it first")
        return NOT_RUNNING
    target = TARGET[action]
    if TRANSITIONS.get((status, target)) != action:
        raise TransitionError(f"cannot {action} a flow that is {status.replace('_', ' ')}")
    return target


@dataclass(frozen=True)
class EditCheck:
    """The verdict on an edit: why it is blocked (if it is) and who moves where."""

    blockers: tuple[str, ...]
    moves: tuple[tuple[str, str, int], ...]  # (removed step, step replacing it, participants)


def check_edit(before: Flow, after: Flow, occupancy: Occupancy) -> EditCheck:
    """Edit restrictions for participants currently on steps."""
    old = {s.id: s for s in before.spec.steps}
    new = {s.id: s for s in after.spec.steps}
    replaced_by = {old_id: s.id for s in after.spec.steps for old_id in s.replaces}
    order_changed = _reordered(list(old), list(new))
    blockers: list[str] = []
    moves: list[tuple[str, str, int]] = []
    for step_id, step in old.items():
        count = occupancy.on(step_id)
        if not count:
            continue
        who = f"{count} participant{'s' if count != 1 else ''}"
        if step_id not in new:
            if step.type in STUCK_TYPES:
                blockers.append(f"step {step_id!r} ({step.type}) has {who} in it and cannot be removed")
            elif step_id in replaced_by:
                moves.append((step_id, replaced_by[step_id], count))
            else:
                blockers.append(
                    f"step {step_id!r} has {who} on it: say where they go with "
                    f"'replaces: [{step_id}]' on another step, or keep the step"
                )
        elif new[step_id].type != step.type:
            blockers.append(
                f"step {step_id!r} has {who} on it and cannot change type ({step.type} → {new[step_id].type})"
            )
        elif step.type in STUCK_TYPES and step_id in order_changed:
            blockers.append(f"step {step_id!r} ({step.type}) has {who} in it and cannot be moved")
    blockers.extend(_removed_branches(before, after, occupancy))
    return EditCheck(tuple(blockers), tuple(moves))


def _reordered(before: list[str], after: list[str]) -> set[str]:
    """Steps whose order relative to some other kept step changed. Stricter than the
    moves a diff shows: swapping two steps moves both, as far as participants care."""
    common = set(before) & set(after)
    a = [k for k in before if k in common]
    b = [k for k in after if k in common]
    position = {k: i for i, k in enumerate(b)}
    changed: set[str] = set()
    for i, key in enumerate(a):
        earlier_now = set(b[: position[key]])
        if earlier_now != set(a[:i]):
            changed.add(key)
    return changed


def _removed_branches(before: Flow, after: Flow, occupancy: Occupancy) -> list[str]:
    new_splits = {s.id: s for s in after.spec.steps if isinstance(s, Split)}
    found = []
    for split in (s for s in before.spec.steps if isinstance(s, Split)):
        kept = {b.name for b in new_splits[split.id].branches} if split.id in new_splits else set()
        for name, steps in branch_steps(before, split).items():
            count = sum(occupancy.on(s) for s in steps)
            if name not in kept and count:
                found.append(
                    f"branch {name!r} of split {split.id!r} has {count} participant(s) on its steps and cannot be removed"
                )
    return found


def branch_steps(flow: Flow, split: Split) -> dict[str, set[str]]:
    """The steps only reachable through each branch of ``split`` (where its participants are)."""
    graph = flow_graph(flow)
    reach = {
        edge.label or "": graph.reachable_from([edge.target], stop=split.id)
        for edge in graph.edges[split.id]
        if edge.target is not None
    }
    reach.update({b.name: set() for b in split.branches if b.name not in reach})
    result = {}
    for name, steps in reach.items():
        others = set().union(*(s for n, s in reach.items() if n != name))
        result[name] = steps - others
    return result
