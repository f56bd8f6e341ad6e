"""Status, drift, history and participant views, as text and as JSON (DESIGN.md section 3)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from reconciler.diff import DiffEntry
from reconciler.drift import Drift
from reconciler.state.records import PARTICIPANT_STATUSES, FlowRecord, Occupancy, ParticipantRecord, RevisionRecord


def _dumps(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _status_row(record: FlowRecord, occupancy: Occupancy) -> dict[str, Any]:
    return {
        "name": record.name,
        "status": record.status,
        "revision": record.revision,
        "participants": {s: occupancy.by_status.get(s, 0) for s in PARTICIPANT_STATUSES},
        "steps": {step: count for step, count in sorted(occupancy.on_step.items()) if step},
        "updated_at": record.updated_at.isoformat(),
    }


def status_json(flows: Sequence[FlowRecord], occupancy: Mapping[str, Occupancy]) -> str:
    return _dumps({"flows": [_status_row(f, occupancy.get(f.name, Occupancy())) for f in flows]})


def status_text(flows: Sequence[FlowRecord], occupancy: Mapping[str, Occupancy]) -> str:
    if not flows:
        return "No flows in the database. Run `reconcile apply` to create them from the specs."
    lines = [f"{'FLOW':<32} {'STATUS':<12} {'REV':>4}  PARTICIPANTS"]
    for flow in flows:
        counts = occupancy.get(flow.name, Occupancy())
        shown = ", ".join(f"{s} {n}" for s in PARTICIPANT_STATUSES if (n := counts.by_status.get(s, 0))) or "none"
        lines.append(f"{flow.name:<32} {flow.status:<12} {flow.revision:>4}  {shown}")
        for step, n in sorted(counts.on_step.items()):
            if step:
                lines.append(f"{'':<32} {'':<12} {'':>4}    on {step}: {n}")
    return "\n".join(lines)


def drift_json(drifts: Sequence[Drift]) -> str:
    return _dumps(
        {"format_version": "1", "drifts": [{"flow": d.flow, "kind": d.kind, "detail": d.detail} for d in drifts]}
    )


def drift_text(drifts: Sequence[Drift]) -> str:
    if not drifts:
        return "No drift. Actual state matches what was applied and what the specs say."
    lines = [f"! {d.flow}: {d.kind}: {d.detail}" for d in drifts]
    lines.append(f"{len(drifts)} drift(s) found; `reconcile apply` heals them.")
    return "\n".join(lines)


def _revision_row(rev: RevisionRecord) -> dict[str, Any]:
    return {
        "revision": rev.revision,
        "content_hash": rev.content_hash,
        "applied_at": rev.applied_at.isoformat(),
        "git_commit": rev.git_commit,
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
        lines.append(
            f"{r.revision:>4}  {r.applied_at:%Y-%m-%d %H:%M:%S}  {r.kind:<6}  {r.status or '-':<11}  "
            f"{(r.content_hash or '-')[:12]:<12}  {(r.git_commit or '-')[:12]:<12}  {r.applied_by}"
        )
    return "\n".join(lines)


def revision_diff_text(name: str, a: int, b: int, entries: Sequence[DiffEntry]) -> str:
    if not entries:
        return f"{name}: revisions {a} and {b} are the same."
    lines = [f"{name}: revision {a} → {b}"]
    for e in entries:
        if e.before is None:
            lines.append(f"  + {e.path}: {json.dumps(e.after, default=str)}")
        elif e.after is None:
            lines.append(f"  - {e.path}")
        else:
            lines.append(f"  ~ {e.path}: {json.dumps(e.before, default=str)} → {json.dumps(e.after, default=str)}")
    return "\n".join(lines)


def participants_json(participants: Sequence[ParticipantRecord]) -> str:
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


def participants_text(name: str, participants: Sequence[ParticipantRecord]) -> str:
    if not participants:
        return f"No participants in {name!r}."
    lines = [f"{'CONTACT':<40} {'STATUS':<22} {'STEP':<24} REASON"]
    lines += [f"{p.contact:<40} {p.status:<22} {p.step_id or '-':<24} {p.reason or ''}".rstrip() for p in participants]
    return "\n".join(lines)
