"""Building a plan: desired specs vs actual state → ``FlowChange``s (``plan.stages``).

Per flow: create, delete, or the stages that take the stored flow to its spec within
the lifecycle rules (an edit of a running flow is blocked or paused around; an
out-of-band status is kept while the spec is unchanged); who an edit reaches, along the
flow's graph; start readiness. No side effects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from reconciler.diff import DiffEntry, diff_documents
from reconciler.lifecycle import check_edit, transition
from reconciler.plan.stages import (
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
)
from reconciler.spec import start_blockers
from reconciler.spec.bundle import FlowBundle, bundle_document, step_files_of
from reconciler.spec.graph import FlowGraph, flow_graph
from reconciler.state.records import QUEUED, FlowRecord, Occupancy, StatusChange
from reconciler.statuses import FlowStatus


def build_plan(
    desired: Sequence[FlowBundle],
    actual: Mapping[str, FlowRecord],
    occupancy: Mapping[str, Occupancy],
    *,
    prune: bool = False,
    update_policy: UpdatePolicy | None = None,
    status_changes: Mapping[str, StatusChange] | None = None,
    heal: bool = False,
) -> Plan:
    """The plan that makes ``actual`` match ``desired``. No side effects.

    An out-of-band status (``reconcile flow pause`` …, the newest of ``status_changes``
    says who and when) is kept while the flow's spec is unchanged since it was applied;
    a changed spec or ``heal`` restores the spec's status, and the change says so."""
    changes = []
    wanted = {b.name: b for b in desired}
    for name in sorted(wanted):
        record = actual.get(name)
        bundle = wanted[name]
        if record is None:
            changes.append(_create(bundle))
        else:
            oob = _out_of_band(record, (status_changes or {}).get(name))
            change = _change(bundle, record, occupancy.get(name, Occupancy()), update_policy, oob, heal)
            changes.append(change)
    leftover = sorted(set(actual) - set(wanted))
    if prune:
        changes.extend(_delete(actual[name], occupancy.get(name, Occupancy())) for name in leftover)
        leftover = []
    return Plan(tuple(changes), tuple(leftover))


def _create(bundle: FlowBundle) -> FlowChange:
    status = bundle.flow.spec.status
    diff = tuple(diff_documents(None, bundle.document, None, bundle.file_digests))
    change = FlowChange(bundle.name, "create", (Create(bundle, status),), diff, status_after=status)
    return _readiness(change, bundle)


def _delete(record: FlowRecord, occupancy: Occupancy) -> FlowChange:
    diff = (DiffEntry("", record.spec, None),)
    base = FlowChange(record.name, "delete", diff=diff, status_before=record.status, expected_hash=record.content_hash)
    if record.status == FlowStatus.RUNNING:
        return _block(
            base,
            f"flow {record.name!r} is running and cannot be deleted: pause it first "
            f"(reconcile flow pause {record.name}, or apply its spec with status: paused), then apply --prune",
        )
    stages: tuple[Stage, ...] = (
        (End(occupancy.in_flow), Delete()) if record.status == FlowStatus.PAUSED else (Delete(),)
    )
    return replace(base, stages=stages)


def _out_of_band(record: FlowRecord, last: StatusChange | None) -> OutOfBand | None:
    if record.status == record.applied_status:
        return None
    found = last if last is not None and last.to_status == record.status else None
    return OutOfBand(
        record.status,
        record.applied_status,
        found.actor if found else None,
        found.origin if found else None,
        found.at if found else None,
        kept=True,
    )


def _change(
    bundle: FlowBundle,
    record: FlowRecord,
    occupancy: Occupancy,
    policy: UpdatePolicy | None,
    out_of_band: OutOfBand | None = None,
    heal: bool = False,
) -> FlowChange:
    desired_status = bundle.flow.spec.status
    unchanged = bundle.content_hash == record.content_hash
    if out_of_band is not None and unchanged and not heal:
        return FlowChange(
            bundle.name,
            "no-op",
            status_before=record.status,
            status_after=record.status,
            expected_hash=record.content_hash,
            out_of_band=out_of_band,
        )
    undone = replace(out_of_band, kept=False) if out_of_band and desired_status != record.status else None
    return replace(_change_to(bundle, record, occupancy, policy), out_of_band=undone)


def _change_to(bundle: FlowBundle, record: FlowRecord, occupancy: Occupancy, policy: UpdatePolicy | None) -> FlowChange:
    desired_status = bundle.flow.spec.status
    if bundle.content_hash == record.content_hash and record.status == desired_status:
        return FlowChange(
            bundle.name,
            "no-op",
            status_before=record.status,
            status_after=desired_status,
            expected_hash=record.content_hash,
        )
    diff = _status_entries(
        diff_documents(record.spec, bundle.document, record.files, bundle.file_digests), record, desired_status
    )
    edits = tuple(d for d in diff if d.path != "spec.status")
    status_diff = () if record.status == desired_status else (DiffEntry("status", record.status, desired_status),)
    base = FlowChange(
        bundle.name,
        "no-op",
        diff=tuple(diff) if diff else status_diff,
        status_before=record.status,
        status_after=desired_status,
        expected_hash=record.content_hash,
    )
    if not edits:
        stages: list[Stage] = []
        action = transition(record.status, desired_status)
        if action is not None:
            stages.append(_status_stage(action, occupancy))
        if bundle.content_hash != record.content_hash:
            stages.append(RecordSpec(bundle))
        if not stages:
            return base
        change = replace(base, action=action or "update", stages=tuple(stages))
        return _readiness(change, bundle)

    graph = flow_graph(bundle.flow)
    impact = tuple(
        _impact(graph, occupancy, s)
        for s in _changed_steps(edits, bundle)
        if occupancy.in_flow or occupancy.passed.get(s, 0)
    )
    base = replace(base, action="update", impact=impact)
    if record.status == desired_status == FlowStatus.RUNNING and all(_is_metadata(d.path) for d in edits):
        # A description or labels cannot reach a participant: a new revision, no pause.
        return replace(base, stages=(Update(bundle),), in_place=True)
    effective_policy = policy or bundle.flow.spec.update_policy
    ends_first = desired_status == FlowStatus.NOT_RUNNING and record.status != FlowStatus.NOT_RUNNING
    problems: list[str] = []
    review: tuple[Stage, ...] | None = None  # the stages shown for review when blocked
    prefix: list[Stage] = []
    if ends_first:
        prefix = [End(occupancy.in_flow)]
    elif record.status == FlowStatus.RUNNING:
        if desired_status == FlowStatus.RUNNING and effective_policy != "pause_and_resume":
            problems.append(
                f"flow {bundle.name!r} is running and running flows cannot be edited: set spec.status: paused "
                "to edit it paused, or spec.update_policy: pause_and_resume (or apply --update-policy "
                "pause_and_resume) to pause, edit and resume in one transaction"
            )
            review = (Pause(), Update(bundle), Resume())  # what the policy would do
        prefix = [Pause()]
    moves: tuple[tuple[str, str, int], ...] = ()
    if not ends_first and occupancy.in_flow:
        before = bundle_document(record.spec, record.files)
        verdict = check_edit(before.flow, bundle.flow, occupancy)
        if verdict.blockers and review is None:
            review = (*prefix, Update(bundle))
        problems.extend(verdict.blockers)
        moves = verdict.moves
    stages = [*prefix, Update(bundle, moves)]
    now_status = FlowStatus.NOT_RUNNING if ends_first else (FlowStatus.PAUSED if prefix else record.status)
    action = transition(now_status, desired_status)
    if action is not None:
        stages.append(_status_stage(action, occupancy))
    change = replace(base, stages=tuple(stages))
    if problems:
        change = _block(change, *problems, stages=review)
    return _readiness(change, bundle)


def _is_metadata(path: str) -> bool:
    """Paths of an edit no participant can notice: the flow's description and labels."""
    return path in {"metadata.description", "metadata.labels"} or path.startswith("metadata.labels.")


def _status_entries(diff: Sequence[DiffEntry], record: FlowRecord, desired: FlowStatus) -> list[DiffEntry]:
    """``spec.status`` as a transition even where the spec leaves it out (the default)."""
    return [DiffEntry(d.path, record.applied_status, desired) if d.path == "spec.status" else d for d in diff]


def _status_stage(action: str | None, occupancy: Occupancy) -> Stage:
    if action == "start":
        return Start()
    if action == "pause":
        return Pause()
    if action == "resume":
        return Resume()
    return End(occupancy.in_flow)


def _readiness(change: FlowChange, bundle: FlowBundle) -> FlowChange:
    """Refuse to start or resume a flow whose required settings are missing."""
    if change.status_after != FlowStatus.RUNNING:
        return change
    problems = start_blockers(bundle.flow)
    if not problems:
        return change
    return _block(change, *(f"cannot run: {p.message}" for p in problems))


def _impact(graph: FlowGraph, occupancy: Occupancy, step_id: str) -> StepImpact:
    """Who reaches an edited step, along the graph of the edited flow (not list order):
    participants on a step that leads to it, and queued ones when the first step does."""
    leads = graph.leads_to(step_id)
    first = graph.first
    queued = occupancy.by_status.get(QUEUED, 0) if first is not None and (first == step_id or first in leads) else 0
    before = queued + sum(occupancy.on(s) for s in leads if s != step_id)
    return StepImpact(
        step_id, occupancy.on(step_id), before, occupancy.passed.get(step_id, 0), occupancy.waiting.get(step_id, 0)
    )


def _changed_steps(edits: Sequence[DiffEntry], bundle: FlowBundle) -> list[str]:
    """Steps an edit touches: by their own settings, or through a content file they send."""
    steps = []
    for entry in edits:
        if entry.path.startswith("spec.steps["):
            steps.append(entry.path[len("spec.steps[") :].split("]", 1)[0])
        elif entry.path.startswith("files["):
            name = entry.path[len("files[") : -1]
            steps.extend(s.id for s in bundle.flow.spec.steps if name in step_files_of(s))
    return list(dict.fromkeys(steps))


def _block(change: FlowChange, *reasons: str, stages: tuple[Stage, ...] | None = None) -> FlowChange:
    """Blocked, with every problem found so far (each its own line; ``reason`` joins them)."""
    every = (*change.reasons, *reasons)
    return replace(
        change,
        blocked=True,
        reason="; ".join(every),
        reasons=every,
        stages=stages if stages is not None else change.stages,
    )
