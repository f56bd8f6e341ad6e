"""Status, drift, history and participant views, as text and as JSON (DESIGN.md section 3)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from reconciler.diff import DiffEntry
from reconciler.drift import Drift
from reconciler.state.records import FlowRecord, Occupancy, Participant, RevisionRecord
from reconciler.statuses import FlowStatus, ParticipantStatus


def _dumps(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _summary(occupancy: Occupancy) -> dict[str, Any]:
    """The vendor's statistics: enrolled (all), in progress (active), completed
    (finished + finished with success) and the success rate."""
    counts = occupancy.by_status
    enrolled = sum(counts.values())
    completed = counts.get(ParticipantStatus.FINISHED, 0) + counts.get(ParticipantStatus.FINISHED_WITH_SUCCESS, 0)
    rate = counts.get(ParticipantStatus.FINISHED_WITH_SUCCESS, 0) / enrolled if enrolled else None
    return {
        "enrolled": enrolled,
        "in_progress": counts.get(ParticipantStatus.ACTIVE, 0),
        "queued": counts.get(ParticipantStatus.QUEUED, 0),
        "completed": completed,
        "success_rate": round(rate, 4) if rate is not None else None,
    }


def _status_row(record: FlowRecord, occupancy: Occupancy, dropouts: Mapping[str, int]) -> dict[str, Any]:
    steps = _steps_in_order(record, occupancy)
    return {
        "name": record.name,
        "status": record.status,
        "revision": record.revision,
        "participants": {s.value: occupancy.by_status.get(s, 0) for s in ParticipantStatus},
        "summary": _summary(occupancy),
        "steps": {step: occupancy.on_step[step] for step in steps},
        "next_due": {step: occupancy.next_due[step].isoformat() for step in steps if step in occupancy.next_due},
        "dropout_reasons": dict(sorted(dropouts.items())),
        "updated_at": record.updated_at.isoformat(),
    }


def status_json(
    flows: Sequence[FlowRecord],
    occupancy: Mapping[str, Occupancy],
    dropouts: Mapping[str, Mapping[str, int]] | None = None,
) -> str:
    dropouts = dropouts or {}
    return _dumps(
        {"flows": [_status_row(f, occupancy.get(f.name, Occupancy()), dropouts.get(f.name, {})) for f in flows]}
    )


def _steps_in_order(record: FlowRecord, occupancy: Occupancy) -> list[str]:
    """The steps that have participants on them, in the flow's order (steps an edit
    removed, which participants may still be on, after the rest)."""
    order = [str(step.get("id")) for step in record.spec.get("spec", {}).get("steps", []) if isinstance(step, dict)]
    position = {step: i for i, step in enumerate(order)}
    occupied = [step for step in occupancy.on_step if step]
    return sorted(occupied, key=lambda step: (position.get(step, len(position)), step))


def _when_due(record: FlowRecord, occupancy: Occupancy, step: str, now: datetime | None) -> str:
    """When the first participant on a step of a running flow moves on: the answer to
    "why is nobody moving?" (a wait, the sending window, or an executor that is not running)."""
    due = occupancy.next_due.get(step)
    if due is None or now is None or record.status != FlowStatus.RUNNING:
        return ""
    if due <= now:
        return ", due now"
    return f", next due {due.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def status_text(
    flows: Sequence[FlowRecord],
    occupancy: Mapping[str, Occupancy],
    dropouts: Mapping[str, Mapping[str, int]] | None = None,
    now: datetime | None = None,
) -> str:
    if not flows:
        return "No flows in the database. Run `reconcile apply` to create them from the specs."
    dropouts = dropouts or {}
    lines = [f"{'FLOW':<28} {'STATUS':<12} {'REV':>3} {'ENROLLED':>8} {'ACTIVE':>6} {'DONE':>6} {'SUCCESS':>7}"]
    for flow in flows:
        counts = occupancy.get(flow.name, Occupancy())
        summary = _summary(counts)
        rate = f"{summary['success_rate']:.0%}" if summary["success_rate"] is not None else "-"
        lines.append(
            f"{flow.name:<28} {flow.status:<12} {flow.revision:>3} {summary['enrolled']:>8} "
            f"{summary['in_progress']:>6} {summary['completed']:>6} {rate:>7}"
        )
        shown = ", ".join(f"{s} {n}" for s in ParticipantStatus if (n := counts.by_status.get(s, 0)))
        if shown:
            lines.append(f"    participants: {shown}")
        for step in _steps_in_order(flow, counts):
            lines.append(f"    on step {step}: {counts.on_step[step]}{_when_due(flow, counts, step, now)}")
        for reason, n in sorted(dropouts.get(flow.name, {}).items()):
            lines.append(f"    dropped out ({reason}): {n}")
    return "\n".join(lines)


def drift_json(drifts: Sequence[Drift]) -> str:
    return _dumps({"format_version": "1", "drifts": [_drift_row(d) for d in drifts]})


def _drift_row(drift: Drift) -> dict[str, Any]:
    row: dict[str, Any] = {"flow": drift.flow, "kind": drift.kind, "detail": drift.detail}
    if drift.kind == "status":
        row["kept"] = drift.kept  # does apply keep the out-of-band status (null: no specs read)
    return row


def drift_text(drifts: Sequence[Drift]) -> str:
    if not drifts:
        return "No drift. Actual state matches what was applied and what the specs say."
    lines = [f"! {d.flow}: {d.kind}: {d.detail}" for d in drifts]
    lines.append(f"{len(drifts)} drift(s) found.")
    kinds = {d.kind for d in drifts}
    if kinds & {"pending", "not_applied"}:
        lines.append("`reconcile apply` applies the specs that changed or were never applied.")
    if "unmanaged" in kinds:
        lines.append("`reconcile apply --prune` deletes flows that no spec declares.")
    if "status" in kinds:
        lines.append(
            "`reconcile apply` keeps an out-of-band status while the flow's spec is unchanged; "
            "a change to that spec, or `reconcile apply --self-heal`, restores the spec's status."
        )
    return "\n".join(lines)


def _revision_row(rev: RevisionRecord) -> dict[str, Any]:
    return {
        "revision": rev.revision,
        "content_hash": rev.content_hash,
        "applied_at": rev.applied_at.isoformat(),
        "git_commit": rev.git_commit,
        "git_dirty": rev.git_dirty,
        "kind": rev.kind,
        "status": rev.status,
        "applied_by": rev.applied_by,
    }


def history_json(revisions: Sequence[RevisionRecord]) -> str:
    return _dumps([_revision_row(r) for r in revisions])


def history_text(name: str, revisions: Sequence[RevisionRecord]) -> str:
    if not revisions:
        return f"No revisions of {name!r}."
    lines = [f"{'REV':>4}  {'APPLIED (UTC)':<19}  {'KIND':<6}  {'STATUS':<11}  {'HASH':<12}  {'COMMIT':<12}  BY"]
    for r in revisions:
        line = (
            f"{r.revision:>4}  {r.applied_at:%Y-%m-%d %H:%M:%S}  {r.kind:<6}  {r.status or '-':<11}  "
            f"{(r.content_hash or '-')[:12]:<12}  {(r.git_commit or '-')[:12]:<12}  {r.applied_by}"
        )
        lines.append(f"{line}  (uncommitted changes)" if r.git_dirty else line)
    return "\n".join(lines)


def revision_diff_text(name: str, a: int, b: int, entries: Sequence[DiffEntry]) -> str:
    if not entries:
        return f"{name}: revisions {a} and {b} are the same."
    lines = [f"{name}: revision {a} → {b}"]
    for e in entries:
        if e.before is None:
            lines.append(f"  + {e.path}: {_value(e.after)}")
        elif e.after is None:
            lines.append(f"  - {e.path}")
        else:
            lines.append(f"  ~ {e.path}: {_value(e.before)} → {_value(e.after)}")
    return "\n".join(lines)


def _value(value: Any) -> str:
    """A value as JSON, with å, ä, ö and every other letter as itself (not ``\\u00e4``)."""
    return json.dumps(value, default=str, ensure_ascii=False)


def participants_json(participants: Sequence[Participant]) -> str:
    return _dumps(
        [
            {
                "contact": p.contact,
                "status": p.status,
                "step": p.step_id,
                "due_at": p.due_at.isoformat() if p.due_at else None,
                "reason": p.reason,
            }
            for p in participants
        ]
    )


def participants_text(name: str, participants: Sequence[Participant]) -> str:
    if not participants:
        return f"No participants in {name!r}."
    lines = [f"{'CONTACT':<40} {'STATUS':<22} {'STEP':<24} REASON"]
    lines += [f"{p.contact:<40} {p.status:<22} {p.step_id or '-':<24} {p.reason or ''}".rstrip() for p in participants]
    return "\n".join(lines)
