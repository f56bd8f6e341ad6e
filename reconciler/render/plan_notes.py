"""What the text and Markdown views of a plan both say: the reading of a change (its
stages, moves, cancels, who an edit reaches, the summary line) and the words for what is
not a diff — a created flow as YAML, an out-of-band status kept or undone (who, when,
what), a metadata-only edit applied in place. Pure functions.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from reconciler.diff import DiffEntry
from reconciler.lifecycle import TRANSITIONS
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
from reconciler.spec.models import Flow

_INLINE_CHARS = 90
NO_CHANGES = "No changes. Actual state matches the specs."
WHOLE_FLOW = "(whole flow)"
SYMBOLS = {"create": "+", "update": "~", "delete": "-", "start": ">", "pause": ">", "resume": ">", "end": ">"}
_ALWAYS_COUNTED = ("create", "update", "delete")


def created_yaml(change: FlowChange) -> str | None:
    """A created flow as the YAML that was written: block style, leaf settings inline."""
    documents = [s.bundle.document for s in change.stages if isinstance(s, Create)]
    if not documents:
        return None
    yaml = YAML(typ="rt")
    yaml.width = 120
    yaml.indent(mapping=2, sequence=4, offset=2)
    out = io.StringIO()
    yaml.dump(_styled({k: v for k, v in documents[0].items() if k not in ("apiVersion", "kind")}), out)
    return out.getvalue().rstrip("\n")


def _styled(value: Any) -> Any:
    """Short collections of plain values on one line (``{id: done, type: finish}``), the rest in blocks."""
    if isinstance(value, dict):
        styled: Any = CommentedMap((k, _styled(v)) for k, v in value.items())
    elif isinstance(value, list):
        styled = CommentedSeq(_styled(v) for v in value)
    else:
        return value
    items = value.values() if isinstance(value, dict) else value
    plain = all(not isinstance(v, dict | list) and "\n" not in str(v) for v in items)
    if plain and len(compact(value)) <= _INLINE_CHARS:
        styled.fa.set_flow_style()
    else:
        styled.fa.set_block_style()
    return styled


def out_of_band_text(oob: OutOfBand) -> str:
    """``paused out of band (reconcile flow pause) by ops at 2026-12-05 10:00Z; its spec says running``."""
    action = TRANSITIONS.get((oob.applied_status, oob.status), "status change")
    via = f"reconcile flow {action}" if oob.origin == "break-glass" else (oob.origin or "unknown origin")
    who = f" by {oob.actor}" if oob.actor else ""
    when = f" at {oob.at:%Y-%m-%d %H:%M}Z" if oob.at else ""
    return f"{oob.status} out of band ({via}){who}{when}; its spec says {oob.applied_status}"


def kept_line(change: FlowChange) -> str:
    assert change.out_of_band is not None
    restore = TRANSITIONS.get((change.out_of_band.status, change.out_of_band.applied_status), "restore")
    return (
        f"{change.flow}: kept {out_of_band_text(change.out_of_band)}; the spec is unchanged since it was "
        f"applied, so apply keeps it (apply --self-heal would {restore} it)"
    )


def undo_line(oob: OutOfBand) -> str:
    return f"undoes the out-of-band change: {out_of_band_text(oob)}"


IN_PLACE = "metadata only: applied in place (no pause; participants are not affected)"


# --- shared reading of a change -----------------------------------------------------


def stage_names(change: FlowChange) -> list[str]:
    return [stage_name(s) for s in change.stages]


def moves(change: FlowChange) -> list[tuple[str, str, int]]:
    return [move for stage in change.stages if isinstance(stage, Update) for move in stage.moves]


def cancels(change: FlowChange) -> int:
    return sum(stage.cancels for stage in change.stages if isinstance(stage, End))


def new_flow(change: FlowChange) -> Flow | None:
    """The flow as it will be after the change, when a stage carries it."""
    flows = [s.bundle.flow for s in change.stages if isinstance(s, Create | Update | RecordSpec)]
    return flows[-1] if flows else None


def participants(count: int) -> str:
    return f"{count} participant{'' if count == 1 else 's'}"


def compact(value: Any, limit: int | None = None) -> str:
    """``value`` as one line of JSON, cut to ``limit`` characters with an ellipsis."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


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


def impact_line(impact: StepImpact) -> str:
    """On / before / past a changed step, so nobody is surprised who gets the new version."""
    text = f"{participants(impact.participants)} on step '{impact.step}'"
    if impact.before or impact.past:
        text += f", {impact.before} before it (they get the new version), {impact.past} already past it (they do not)"
    if impact.waiting:
        text += f"; {impact.waiting} waiting keep their due time unless apply --recompute-waits"
    return text


def change_notes(change: FlowChange, quote: Callable[[str], str]) -> list[tuple[str, str]]:
    """What a change does to people beyond its diff, as (kind, text) in the order both
    views show them: ``impact``, ``move``, ``cancel``, ``undo`` (an out-of-band status),
    ``in_place``; ``quote`` writes a step id the view's way."""
    notes = [("impact", impact_line(i)) for i in change.impact]
    notes += [
        ("move", f"{participants(n)} move from step {quote(old)} to {quote(new)}") for old, new, n in moves(change)
    ]
    if cancels(change):
        notes.append(("cancel", f"{participants(cancels(change))} in the flow will be cancelled"))
    if change.out_of_band is not None:
        notes.append(("undo", undo_line(change.out_of_band)))
    if change.in_place:
        notes.append(("in_place", IN_PLACE))
    return notes
