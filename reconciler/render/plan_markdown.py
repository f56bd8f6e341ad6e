"""A plan as a pull-request comment (GitHub/GitLab Markdown), within a size limit.

Blocked changes first; per flow a ``<details>`` section with its facts, its diff as a
table (or the created flow as YAML) and its Mermaid diagram, shrunk to fit. Reads the
same ``Plan`` as the text and JSON views (``reconciler.render.plan``).
"""

from __future__ import annotations

import html
import re
from typing import Any

from reconciler.plan import FlowChange, Plan
from reconciler.render.mermaid import flow_mermaid
from reconciler.render.plan_notes import (
    SYMBOLS,
    WHOLE_FLOW,
    change_notes,
    compact,
    created_yaml,
    display_entries,
    kept_line,
    new_flow,
    stage_names,
    summary_line,
    unmanaged_note,
)

_MD_VALUE_CHARS = 200
_MD_UNMANAGED_NAMES = 50


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
    return "—" if missing else _md_code(compact(value, _MD_VALUE_CHARS))


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
        facts.append("**Stages:** " + " → ".join(stage_names(change)))
    if change.status_before != change.status_after:
        facts.append(f"**Status:** {change.status_before or '(new)'} → {change.status_after or '(deleted)'}")
    if facts:
        lines += [" · ".join(facts), ""]
    notes = []
    for kind, text in change_notes(change, lambda s: f"`{s}`"):
        if kind == "undo":
            notes.append(f"- **{_md_text(text)}**")
        else:
            notes.append(f"- {_md_text(text) if kind == 'in_place' else text}")
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
    flow = new_flow(change)
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
