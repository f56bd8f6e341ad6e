"""Drift: where the actual state has moved away from what was applied or declared.

Kinds: ``status`` (status changed out of band, e.g. ``reconcile flow pause``),
``edit`` (the stored spec no longer matches its last applied revision: edited
outside reconcile), ``unmanaged`` (in the database, in no spec), ``not_applied``
(in a spec, never applied), ``pending`` (the spec changed since it was applied).
Report-only: ``apply`` heals. Ignore rules (``[drift] ignore`` in reconciler.toml,
``"flow-glob:kind"``) silence deliberate differences.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from reconciler.spec.bundle import FlowBundle, content_hash
from reconciler.state.records import FlowRecord, RevisionRecord, StatusChange

KINDS = ("status", "edit", "unmanaged", "not_applied", "pending")


@dataclass(frozen=True)
class Drift:
    flow: str
    kind: str
    detail: str


@dataclass(frozen=True)
class IgnoreRule:
    flow_glob: str
    kind: str  # a kind or "*"

    @classmethod
    def parse(cls, text: str) -> IgnoreRule:
        flow, _, kind = text.partition(":")
        kind = kind or "*"
        if not flow or (kind != "*" and kind not in KINDS):
            raise ValueError(f'drift ignore rule {text!r}: write "flow-glob:kind" with kind one of {", ".join(KINDS)}')
        return cls(flow, kind)

    def matches(self, drift: Drift) -> bool:
        return fnmatch.fnmatchcase(drift.flow, self.flow_glob) and self.kind in ("*", drift.kind)


def detect_drift(
    actual: Mapping[str, FlowRecord],
    last_revisions: Mapping[str, RevisionRecord | None],
    last_status_changes: Mapping[str, StatusChange | None],
    desired: Sequence[FlowBundle] | None,
    ignore: Sequence[IgnoreRule] = (),
) -> list[Drift]:
    """Every drift, sorted by flow; ``desired`` None compares with the last applied revisions only."""
    found: list[Drift] = []
    for name, record in actual.items():
        applied_status = record.applied_status
        if record.status != applied_status:
            change = last_status_changes.get(name)
            how = f" by {change.actor} ({change.origin}) at {change.at:%Y-%m-%d %H:%M}Z" if change else ""
            found.append(Drift(name, "status", f"status is {record.status}, applied {applied_status}; changed{how}"))
        revision = last_revisions.get(name)
        stored = content_hash(record.spec, record.files)
        if stored != record.content_hash or (revision is not None and revision.content_hash != record.content_hash):
            number = revision.revision if revision else "?"
            found.append(Drift(name, "edit", f"the stored spec differs from applied revision {number}"))
    if desired is not None:
        wanted = {b.name: b for b in desired}
        for name in actual.keys() - wanted.keys():
            found.append(Drift(name, "unmanaged", "in the database but in no spec (apply --prune deletes it)"))
        for name, bundle in wanted.items():
            current = actual.get(name)
            if current is None:
                found.append(Drift(name, "not_applied", "in the specs but never applied"))
            elif bundle.content_hash != current.content_hash:
                found.append(Drift(name, "pending", f"the spec changed since revision {current.revision} was applied"))
    kept = [d for d in found if not any(rule.matches(d) for rule in ignore)]
    return sorted(kept, key=lambda d: (d.flow, KINDS.index(d.kind)))
