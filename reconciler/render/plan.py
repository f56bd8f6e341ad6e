"""A plan as JSON (the external contract) and terminal text; the pull-request comment
is ``plan_markdown`` (re-exported here), the words both views share ``plan_notes``.

All three read the same ``Plan`` that ``apply`` executes, so what a reviewer sees is
what will happen. ``plan_json`` is the machine contract of DESIGN.md section 3 and
must only ever grow compatibly; the text and Markdown views are for people and may
change shape. Pure functions: no I/O, no printing, no decisions — every verdict
(blocked, moves, impact) was made by ``reconciler.plan``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from reconciler.plan import (
    FlowChange,
    OutOfBand,
    Plan,
)
from reconciler.render.plan_markdown import plan_markdown
from reconciler.render.plan_notes import (
    NO_CHANGES,
    SYMBOLS,
    WHOLE_FLOW,
    cancels,
    change_notes,
    compact,
    created_yaml,
    display_entries,
    kept_line,
    moves,
    stage_names,
    summary_line,
    unmanaged_note,
)

FORMAT_VERSION = "1"
_ANSI = {"+": "32", "~": "33", "-": "31", ">": "36", "blocked": "31"}  # green, yellow, red, cyan
_TEXT_VALUE_CHARS = 100


# --- JSON ------------------------------------------------------------------------


def plan_json(plan: Plan) -> str:
    """``{"format_version": "1", "changes": [...], "change_summary": {...}, "unmanaged": [...]}``."""
    document = {
        "format_version": FORMAT_VERSION,
        "changes": [_change_json(change) for change in plan.changes],
        "change_summary": plan.summary(),
        "unmanaged": list(plan.unmanaged),
        "kept_out_of_band": [{"flow": c.flow, **_out_of_band_json(c.out_of_band)} for c in plan.kept],
    }
    return json.dumps(document, indent=2, default=str)


def _out_of_band_json(oob: OutOfBand | None) -> dict[str, Any]:
    if oob is None:
        return {}
    return {
        "status": oob.status,
        "spec_status": oob.applied_status,
        "actor": oob.actor,
        "origin": oob.origin,
        "at": oob.at.isoformat() if oob.at else None,
        "kept": oob.kept,
    }


def _change_json(change: FlowChange) -> dict[str, Any]:
    return {
        "flow": change.flow,
        "action": change.action,
        "blocked": change.blocked,
        "reason": change.reason,
        "reasons": list(change.reasons),
        "stages": stage_names(change),
        "status_before": change.status_before,
        "status_after": change.status_after,
        "diff": [{"path": e.path, "before": e.before, "after": e.after} for e in change.diff],
        "impact": [
            {"step": i.step, "participants": i.participants, "before": i.before, "past": i.past, "waiting": i.waiting}
            for i in change.impact
        ],
        "moves": [{"from": old, "to": new, "participants": count} for old, new, count in moves(change)],
        "cancels": cancels(change),
        "kept": change.kept,
        "out_of_band": _out_of_band_json(change.out_of_band) or None,
        "in_place": change.in_place,
    }


# --- text ------------------------------------------------------------------------


def plan_text(plan: Plan, *, color: bool = False) -> str:
    """Terraform-like: a block per changed flow, then the summary line."""

    def paint(text: str, key: str) -> str:
        return f"\x1b[{_ANSI[key]}m{text}\x1b[0m" if color else text

    lines: list[str] = []
    for change in plan.changes:
        if change.is_change:
            lines.extend(_change_text(change, paint))
            lines.append("")
    for change in plan.kept:
        lines += [f"= {kept_line(change)}", ""]
    lines.append(summary_line(plan))
    if plan.unmanaged:
        lines.append(unmanaged_note(plan.unmanaged))
    return "\n".join(lines)


def _header(change: FlowChange) -> str:
    names = stage_names(change)
    stages = f" ({' → '.join(names)})" if names and names != [change.action] else ""
    return f"{change.flow}: {change.action}{stages}"


def _change_text(change: FlowChange, paint: Callable[[str, str], str]) -> list[str]:
    symbol = SYMBOLS.get(change.action, "~")
    lines = [f"{paint(symbol, symbol)} {_header(change)}"]
    created = created_yaml(change)
    if created is not None:
        lines.extend(f"    {line}" for line in created.splitlines())
    for entry in [] if created is not None else display_entries(change):
        path = entry.path or WHOLE_FLOW
        if entry.before is None and entry.after is not None:
            lines.append(f"    {paint('+', '+')} {path}: {compact(entry.after, _TEXT_VALUE_CHARS)}")
        elif entry.after is None:
            lines.append(f"    {paint('-', '-')} {path}")
        else:
            before, after = compact(entry.before, _TEXT_VALUE_CHARS), compact(entry.after, _TEXT_VALUE_CHARS)
            lines.append(f"    {paint('~', '~')} {path}: {before} → {after}")
    markers = {"move": "→", "in_place": "="}
    lines.extend(f"    {markers.get(kind, '!')} {text}" for kind, text in change_notes(change, lambda s: f"'{s}'"))
    if change.blocked:
        reasons = change.reasons or (change.reason or "no reason given",)
        lines.extend("    " + paint(f"✗ blocked: {reason}", "blocked") for reason in reasons)
    return lines


__all__ = ["FORMAT_VERSION", "NO_CHANGES", "plan_json", "plan_markdown", "plan_text"]
