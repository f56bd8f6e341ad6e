"""Drift: where the actual state has moved away from what was applied or declared.

Kinds: ``status`` (status changed out of band, e.g. ``reconcile flow pause``),
``edit`` (the stored spec no longer matches its last applied revision: edited
outside reconcile), ``unmanaged`` (in the database, in no spec), ``not_applied``
(in a spec, never applied), ``pending`` (the spec changed since it was applied).
Report-only. ``apply`` applies pending specs (and deletes unmanaged flows with
``--prune``); an out-of-band status is *kept* while the flow's spec is unchanged
since it was applied, and undone by a change to that spec or ``--self-heal`` —
the ``kept`` field of a status drift says which (None when no specs were read).
Ignore rules (``[drift] ignore`` in reconciler.toml,
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
    kept: bool | None = None  # a status drift: apply keeps it (True) or undoes it (False); None: unknown


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
    wanted = {b.name: b for b in desired} if desired is not None else None
    for name, record in actual.items():
        applied_status = record.applied_status
        if record.status != applied_status:
            change = last_status_changes.get(name)
            how = f" by {change.actor} ({change.origin}) at {change.at:%Y-%m-%d %H:%M}Z" if change else ""
            detail = f"status is {record.status}, applied {applied_status}; changed{how}"
            bundle = wanted.get(name) if wanted is not None else None
            keeps: bool | None = None
            if bundle is not None and bundle.content_hash == record.content_hash:
                keeps, detail = True, f"{detail}; kept by apply: the spec is unchanged (apply --self-heal undoes it)"
            elif bundle is not None:
                keeps, detail = False, f"{detail}; the next apply undoes it: the spec changed since it was applied"
            elif wanted is None:
                detail += "; apply keeps it while the flow's spec is unchanged (apply --self-heal undoes it)"
            found.append(Drift(name, "status", detail, keeps))
        revision = last_revisions.get(name)
        stored = content_hash(record.spec, record.files)
        if stored != record.content_hash or (revision is not None and revision.content_hash != record.content_hash):
            number = revision.revision if revision else "?"
            found.append(Drift(name, "edit", f"the stored spec differs from applied revision {number}"))
    if wanted is not None:
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
