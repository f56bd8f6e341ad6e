"""A plan as JSON (the external contract), terminal text, and a pull-request comment.

All three read the same ``Plan`` that ``apply`` executes, so what a reviewer sees is
what will happen. ``plan_json`` is the machine contract of DESIGN.md section 3 and
must only ever grow compatibly; the text and Markdown views are for people and may
change shape. Pure functions: no I/O, no printing, no decisions — every verdict
(blocked, moves, impact) was made by ``reconciler.plan``.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

from reconciler.diff import DiffEntry
from reconciler.plan import (
    ACTIONS,
    Create,
    End,
    FlowChange,
    OutOfBand,
    Plan,
    RecordSpec,
    StepImpact,
    Update,
    stage_name,
)
from reconciler.render.mermaid import flow_mermaid
from reconciler.render.plan_notes import IN_PLACE, created_yaml, kept_line, undo_line
from reconciler.spec.models import Flow

FORMAT_VERSION = "1"
SYMBOLS = {"create": "+", "update": "~", "delete": "-", "start": ">", "pause": ">", "resume": ">", "end": ">"}
NO_CHANGES = "No changes. Actual state matches the specs."
WHOLE_FLOW = "(whole flow)"
_ANSI = {"+": "32", "~": "33", "-": "31", ">": "36", "blocked": "31"}  # green, yellow, red, cyan
_ALWAYS_COUNTED = ("create", "update", "delete")
_TEXT_VALUE_CHARS = 100
_MD_VALUE_CHARS = 200
_MD_UNMANAGED_NAMES = 50


# --- shared reading of a change -----------------------------------------------------


def _stage_names(change: FlowChange) -> list[str]:
    return [stage_name(s) for s in change.stages]


def _moves(change: FlowChange) -> list[tuple[str, str, int]]:
    return [move for stage in change.stages if isinstance(stage, Update) for move in stage.moves]


def _cancels(change: FlowChange) -> int:
    return sum(stage.cancels for stage in change.stages if isinstance(stage, End))


def _new_flow(change: FlowChange) -> Flow | None:
    """The flow as it will be after the change, when a stage carries it."""
    flows = [s.bundle.flow for s in change.stages if isinstance(s, Create | Update | RecordSpec)]
    return flows[-1] if flows else None


def _participants(count: int) -> str:
    return f"{count} participant{'' if count == 1 else 's'}"


def _compact(value: Any, limit: int) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def display_entries(change: FlowChange) -> list[DiffEntry]:
    """The diff for people: a created flow's whole document becomes one line per
    top-level setting and per step, so a reviewer reads steps, not one JSON blob."""
    entries: list[DiffEntry] = []
    for entry in change.diff:
        if entry.path == "" and entry.before is None and isinstance(entry.after, dict):
            entries.extend(_expand_document(entry.after))
        else:
            entries.append(entry)
    return entries


def _expand_document(document: dict[str, Any]) -> Iterator[DiffEntry]:
    for key, value in document.items():
        if key in ("apiVersion", "kind"):
            continue
        if key != "spec" or not isinstance(value, dict):
            yield DiffEntry(key, None, value)
            continue
        for spec_key, spec_value in value.items():
            if spec_key == "steps" and isinstance(spec_value, list):
                for step in spec_value:
                    step_id = step.get("id") if isinstance(step, dict) else None
                    yield DiffEntry(f"spec.steps[{step_id}]", None, step)
            else:
                yield DiffEntry(f"spec.{spec_key}", None, spec_value)


def summary_line(plan: Plan) -> str:
    """``Plan: 1 to create, 0 to update, 1 to pause, 0 to delete; 1 blocked.``"""
    kept = len(plan.kept)
    kept_note = f"{kept} out-of-band status change(s) kept (apply --self-heal undoes them)" if kept else ""
    if not plan.has_changes:
        return f"No changes to apply; {kept_note}." if kept else NO_CHANGES
    counts = plan.summary()
    parts = [
        f"{counts[action]} to {action}"
        for action in ACTIONS
        if action != "no-op" and (action in _ALWAYS_COUNTED or counts[action])
    ]
    blocked = f"; {counts['blocked']} blocked" if counts["blocked"] else ""
    return f"Plan: {', '.join(parts)}{blocked}{'; ' + kept_note if kept else ''}."


def unmanaged_note(names: tuple[str, ...], *, limit: int | None = None) -> str:
    shown = names if limit is None else names[:limit]
    more = f" and {len(names) - len(shown)} more" if len(shown) < len(names) else ""
    return (
        f"{len(names)} flow(s) in the database are not in the specs: {', '.join(shown)}{more} "
        "(apply --prune deletes them)"
    )


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
        "stages": _stage_names(change),
        "status_before": change.status_before,
        "status_after": change.status_after,
        "diff": [{"path": e.path, "before": e.before, "after": e.after} for e in change.diff],
        "impact": [
            {"step": i.step, "participants": i.participants, "before": i.before, "past": i.past, "waiting": i.waiting}
            for i in change.impact
        ],
        "moves": [{"from": old, "to": new, "participants": count} for old, new, count in _moves(change)],
        "cancels": _cancels(change),
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
    names = _stage_names(change)
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
            lines.append(f"    {paint('+', '+')} {path}: {_compact(entry.after, _TEXT_VALUE_CHARS)}")
        elif entry.after is None:
            lines.append(f"    {paint('-', '-')} {path}")
        else:
            before, after = _compact(entry.before, _TEXT_VALUE_CHARS), _compact(entry.after, _TEXT_VALUE_CHARS)
            lines.append(f"    {paint('~', '~')} {path}: {before} → {after}")
    lines.extend(f"    ! {_impact_line(i)}" for i in change.impact)
    lines.extend(f"    → {_participants(n)} move from step '{old}' to '{new}'" for old, new, n in _moves(change))
    if _cancels(change):
        lines.append(f"    ! {_participants(_cancels(change))} in the flow will be cancelled")
    if change.out_of_band is not None:
        lines.append(f"    ! {undo_line(change.out_of_band)}")
    if change.in_place:
        lines.append(f"    = {IN_PLACE}")
    if change.blocked:
        reasons = change.reasons or (change.reason or "no reason given",)
        lines.extend("    " + paint(f"✗ blocked: {reason}", "blocked") for reason in reasons)
    return lines


# --- Markdown ----------------------------------------------------------------------


def plan_markdown(plan: Plan, *, max_chars: int = 60_000) -> str:
    """A pull-request comment of at most ``max_chars`` characters.

    Blocked changes come first, so the size limit hides them last; when the next
    flow's section would not fit, the rest are counted in a closing note. A single
    section too large on its own is shrunk (diagram, then diff rows) instead.
    """
    parts = [_markdown_head(plan)]
    changes = sorted((c for c in plan.changes if c.is_change), key=lambda c: not c.blocked)
    reserve = len(_more_note(len(changes), max_chars))
    used = len(parts[0])
    shown = 0
    for index, change in enumerate(changes):
        more_follow = index < len(changes) - 1
        section = _section(change)
        if len(section) > max_chars - used - (reserve if more_follow else 0):
            cut = _section_within(change, max_chars - used - reserve) if shown == 0 else None
            if cut is not None:
                parts.append(cut)
                shown += 1
            break
        parts.append(section)
        used += len(section)
        shown += 1
    if shown < len(changes):
        parts.append(_more_note(len(changes) - shown, max_chars))
    return _hard_cap("".join(parts), max_chars)


def _more_note(hidden: int, max_chars: int) -> str:
    return (
        f"\n… {hidden} more flow change(s) not shown: the comment is limited to {max_chars:,} characters; "
        "run reconcile plan locally for the full plan.\n"
    )


def _hard_cap(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    tail = f"\n\n… cut: the comment is limited to {max_chars:,} characters; run reconcile plan locally.\n"
    if len(tail) >= max_chars:
        return text[:max_chars]
    return text[: max_chars - len(tail)] + tail


def _markdown_head(plan: Plan) -> str:
    lines = ["## Reconciler plan", "", summary_line(plan), ""]
    if plan.has_changes:
        lines += ["| action | count |", "|---|---:|"]
        lines += [f"| {action} | {count} |" for action, count in plan.summary().items() if action != "blocked"]
        blocked = plan.summary()["blocked"]
        lines += [f"| **blocked** | **{blocked}** |" if blocked else "| blocked | 0 |", ""]
    if plan.unmanaged:
        lines += [f"> {_md_text(unmanaged_note(plan.unmanaged, limit=_MD_UNMANAGED_NAMES))}", ""]
    if plan.kept:
        lines += ["**Out-of-band status changes kept:**", ""]
        lines += [f"- {_md_text(kept_line(c))}" for c in plan.kept[:_MD_UNMANAGED_NAMES]]
        if len(plan.kept) > _MD_UNMANAGED_NAMES:
            lines.append(f"- … and {len(plan.kept) - _MD_UNMANAGED_NAMES} more")
        lines.append("")
    return "\n".join(lines) + "\n"


def _md_text(text: str) -> str:
    """Plain text that Markdown shows as written (one line, no markup)."""
    return re.sub(r"([\\`*_\[\]<>|#])", r"\\\1", " ".join(text.split()))


def _md_code(text: str) -> str:
    """Inline code safe inside a table cell: a fence longer than any backtick run."""
    text = text.replace("\r", " ").replace("\n", " ").replace("|", "\\|")
    runs = [len(run) for run in re.findall(r"`+", text)]
    fence = "`" * (max(runs, default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _md_value(value: Any, missing: bool) -> str:
    return "—" if missing else _md_code(_compact(value, _MD_VALUE_CHARS))


def _diff_rows(change: FlowChange) -> list[str]:
    rows = []
    for entry in display_entries(change):
        added = entry.before is None and entry.after is not None
        removed = entry.after is None
        before, after = _md_value(entry.before, added), _md_value(entry.after, removed)
        rows.append(f"| {_md_code(entry.path or WHOLE_FLOW)} | {before} | {after} |")
    return rows


def _summary_html(change: FlowChange) -> str:
    symbol = SYMBOLS.get(change.action, "~")
    blocked = " — <b>BLOCKED</b>" if change.blocked else ""
    return (
        f"<summary>{html.escape(symbol)} <code>{html.escape(change.flow)}</code>: "
        f"{html.escape(change.action)}{blocked}</summary>"
    )


def _open_tag(change: FlowChange) -> str:
    """Blocked changes are shown unfolded: they are what a reviewer must act on."""
    return "<details open>" if change.blocked else "<details>"


def _facts(change: FlowChange) -> list[str]:
    """Reason, stages, status and impact: short lines, always shown."""
    lines = []
    if change.blocked:
        reasons = change.reasons or (change.reason or "no reason given",)
        if len(reasons) == 1:
            lines += [f"> **Blocked:** {_md_text(reasons[0])}", ""]
        else:
            lines += ["> **Blocked:**", *(f"> - {_md_text(r)}" for r in reasons), ""]
    facts = []
    if change.stages:
        facts.append("**Stages:** " + " → ".join(_stage_names(change)))
    if change.status_before != change.status_after:
        facts.append(f"**Status:** {change.status_before or '(new)'} → {change.status_after or '(deleted)'}")
    if facts:
        lines += [" · ".join(facts), ""]
    notes = [f"- {_impact_line(i)}" for i in change.impact]
    notes += [f"- {_participants(n)} move from step `{old}` to `{new}`" for old, new, n in _moves(change)]
    if _cancels(change):
        notes.append(f"- {_participants(_cancels(change))} in the flow will be cancelled")
    if change.out_of_band is not None:
        notes.append(f"- **{_md_text(undo_line(change.out_of_band))}**")
    if change.in_place:
        notes.append(f"- {_md_text(IN_PLACE)}")
    if notes:
        lines += [*notes, ""]
    return lines


def _section(change: FlowChange, *, rows: int | None = None, diagram: bool = True) -> str:
    """One flow's ``<details>`` block; ``rows`` and ``diagram`` shrink it to fit."""
    lines = [f"{_open_tag(change)}{_summary_html(change)}", "", *_facts(change)]
    diff = _diff_rows(change)
    shown = diff if rows is None else diff[:rows]
    created = created_yaml(change) if rows is None else None
    if created is not None:
        fence = "`" * max(3, max((len(r) for r in re.findall(r"`+", created)), default=0) + 1)
        lines += [f"{fence}yaml", created, fence, ""]
        shown = diff
    elif shown:
        lines += ["| path | before | after |", "|---|---|---|", *shown, ""]
    if len(shown) < len(diff):
        lines += [f"_… {len(diff) - len(shown)} more difference(s) not shown (comment size limit)._", ""]
    flow = _new_flow(change)
    if flow is not None and diagram:
        lines += ["```mermaid", flow_mermaid(flow), "```", ""]
    elif flow is not None:
        lines += ["_Diagram left out (comment size limit)._", ""]
    lines += ["</details>", ""]
    return "\n".join(lines) + "\n"


def _section_within(change: FlowChange, budget: int) -> str | None:
    """The largest shrunk section that fits ``budget``; None when nothing useful does."""
    if len(section := _section(change, diagram=False)) <= budget:
        return section
    low, high = 0, len(_diff_rows(change))
    while low < high:  # the most diff rows that still fit
        middle = (low + high + 1) // 2
        if len(_section(change, rows=middle, diagram=False)) <= budget:
            low = middle
        else:
            high = middle - 1
    section = _section(change, rows=low, diagram=False)
    if len(section) <= budget:
        return section
    head = f"{_open_tag(change)}{_summary_html(change)}\n\n"
    tail = "_Details left out (comment size limit)._\n\n</details>\n\n"
    reason = ""
    if change.blocked:
        room = budget - len(head) - len(tail) - len("> **Blocked:** \n\n")
        text = _md_text(change.reason or "no reason given")
        reason = f"> **Blocked:** {text if len(text) <= room else text[: max(room - 1, 0)] + '…'}\n\n"
    minimal = head + reason + tail
    return minimal if len(minimal) <= budget else None


def _impact_line(impact: StepImpact) -> str:
    """On / before / past a changed step, so nobody is surprised who gets the new version."""
    text = f"{_participants(impact.participants)} on step '{impact.step}'"
    if impact.before or impact.past:
        text += f", {impact.before} before it (they get the new version), {impact.past} already past it (they do not)"
    if impact.waiting:
        text += f"; {impact.waiting} waiting keep their due time unless apply --recompute-waits"
    return text
