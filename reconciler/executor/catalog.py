"""The flows as the executor sees them: stored records, their specs parsed and their
step graphs compiled once per content hash (a revision never changes)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo

from reconciler.spec.graph import FlowGraph, flow_graph
from reconciler.spec.models import Flow
from reconciler.spec.steps import Step, WaitForAction
from reconciler.state.records import FlowRecord
from reconciler.statuses import TRIGGERS_ON
from reconciler.timing import flow_zone

_COMPILED: dict[str, tuple[Flow, FlowGraph, bool]] = {}  # by content hash: a new revision compiles again
_MAX_COMPILED = 4096


def _compiled(record: FlowRecord) -> tuple[Flow, FlowGraph, bool]:
    found = _COMPILED.get(record.content_hash)
    if found is None:
        if len(_COMPILED) >= _MAX_COMPILED:
            _COMPILED.clear()
        flow = Flow.model_validate(record.spec)
        # Do the steps read or write company fields (in updates or merge fields)? Then a
        # batch reads its contacts' companies once, up front.
        uses_company = any("company." in step.model_dump_json() for step in flow.spec.steps)
        found = _COMPILED[record.content_hash] = (flow, flow_graph(flow), uses_company)
    return found


def parse(record: FlowRecord) -> Flow:
    return _compiled(record)[0]


@dataclass(frozen=True)
class FlowView:
    """A stored flow with what the executor looks up on every step, worked out once."""

    flow: Flow
    record: FlowRecord
    graph: FlowGraph
    zone: tzinfo
    uses_company: bool
    exclusion: str | None  # the exclusion selection, checked before every step


class Catalog:
    def __init__(self, records: dict[str, FlowRecord]) -> None:
        self.records = records
        self._views: dict[str, FlowView | None] = {}
        self._awaited: frozenset[str] | None = None

    def record(self, name: str) -> FlowRecord | None:
        return self.records.get(name)

    def flow(self, name: str) -> Flow | None:
        record = self.records.get(name)
        return parse(record) if record is not None else None

    def view(self, name: str) -> FlowView | None:
        if name not in self._views:
            record = self.records.get(name)
            view = None
            if record is not None:
                flow, graph, uses_company = _compiled(record)
                view = FlowView(
                    flow, record, graph, flow_zone(flow), uses_company, flow.spec.enrollment.exclusion_selection
                )
            self._views[name] = view
        return self._views[name]

    def step(self, name: str, step_id: str | None) -> Step | None:
        view = self.view(name)
        return view.graph.steps.get(step_id or "") if view is not None else None

    def live(self) -> list[tuple[FlowRecord, Flow]]:
        """Flows whose triggers are on: running or paused (never not_running)."""
        live = sorted((name, r) for name, r in self.records.items() if r.status in TRIGGERS_ON)
        return [(record, parse(record)) for _, record in live]

    def awaited_event_types(self) -> frozenset[str]:
        """The event types anything here reacts to: triggers of live flows, success
        criteria and awaited actions of any flow. Every other event is only recorded."""
        if self._awaited is not None:
            return self._awaited
        types: set[str] = set()
        for record in self.records.values():
            flow = parse(record)
            if record.status in TRIGGERS_ON:
                types.update(trigger.type for trigger in flow.spec.triggers)
            if flow.spec.success_criteria:
                types.update(criterion.type for criterion in flow.spec.success_criteria.criteria)
            if any(isinstance(step, WaitForAction) for step in flow.spec.steps):
                types.update(("form_submitted", "link_clicked"))
        self._awaited = frozenset(types)
        return self._awaited
