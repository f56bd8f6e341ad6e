"""The outbox view: what is pending, sent, failed or unknown, per flow."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from reconciler.state.records import OUTBOX_STATES as STATES
from reconciler.state.records import OutboxRow


def outbox_json(counts: Mapping[str, Mapping[str, int]], rows: Sequence[OutboxRow]) -> str:
    return json.dumps(
        {
            "flows": {
                flow: {state: by_state.get(state, 0) for state in STATES} for flow, by_state in sorted(counts.items())
            },
            "items": [
                {
                    "id": r.id,
                    "flow": r.flow_name,
                    "step": r.step_id,
                    "kind": r.kind,
                    "contact": r.contact_email,
                    "state": r.state,
                    "attempts": r.attempts,
                    "next_attempt_at": r.next_attempt_at.isoformat(),
                    "last_error": r.last_error,
                }
                for r in rows
            ],
        },
        indent=2,
    )


def outbox_text(counts: Mapping[str, Mapping[str, int]], rows: Sequence[OutboxRow]) -> str:
    if not counts:
        return "The outbox is empty."
    lines = [f"{'FLOW':<28} " + " ".join(f"{s.upper():>8}" for s in STATES)]
    for flow, by_state in sorted(counts.items()):
        lines.append(f"{flow:<28} " + " ".join(f"{by_state.get(s, 0):>8}" for s in STATES))
    for r in rows:
        note = f" — {r.last_error}" if r.last_error else ""
        lines.append(
            f"  #{r.id} {r.state:<8} {r.kind:<13} {r.flow_name}/{r.step_id} → {r.contact_email} "
            f"(attempts {r.attempts}){note}"
        )
    return "\n".join(lines)
