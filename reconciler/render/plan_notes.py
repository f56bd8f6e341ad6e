"""The words a plan uses for what is not a diff: a created flow as YAML, an out-of-band
status kept or undone (who, when, what), a metadata-only edit applied in place.

Shared by the text and Markdown views of ``reconciler.render.plan``; pure functions.
"""

from __future__ import annotations

import io
import json
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from reconciler.lifecycle import TRANSITIONS
from reconciler.plan import Create, FlowChange, OutOfBand

_INLINE_CHARS = 90


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


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
    if plain and len(_compact(value)) <= _INLINE_CHARS:
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
