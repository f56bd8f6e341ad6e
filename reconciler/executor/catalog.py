"""The flows as the executor sees them: stored records with their specs parsed once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo

from reconciler.spec.models import Flow
from reconciler.spec.steps import Step, WaitForAction
from reconciler.state.records import FlowRecord
from reconciler.timing import flow_zone

_PARSED: dict[str, Flow] = {}  # by content hash: a new revision parses again
_MAX_PARSED = 4096


def parse(record: FlowRecord) -> Flow:
    flow = _PARSED.get(record.content_hash)
    if flow is None:
        if len(_PARSED) >= _MAX_PARSED:
            _PARSED.clear()
        flow = _PARSED[record.content_hash] = Flow.model_validate(record.spec)
    return flow


@dataclass(frozen=True)
class FlowView:
    """What the executor looks up on every step of a flow, worked out once per batch."""

    flow: Flow
    record: FlowRecord
    steps: dict[str, Step]  # by id
    following: dict[str, str | None]  # step id → the id of the step below it (None: the last)
    zone: tzinfo


class Catalog:
    def __init__(self, records: dict[str, FlowRecord]) -> None:
        self.records = records
        self._views: dict[str, FlowView | None] = {}
        self._uses_company: dict[str, bool] = {}
        self._awaited: frozenset[str] | None = None

    def record(self, name: str) -> FlowRecord | None:
        return self.records.get(name)

    def flow(self, name: str) -> Flow | None:
        record = self.records.get(name)
        if record is None:
            return None
        return parse(record)

    def view(self, name: str) -> FlowView | None:
        if name not in self._views:
            record, flow = self.records.get(name), self.flow(name)
            view = None
            if record is not None and flow is not None:
                ids = [step.id for step in flow.spec.steps]
                view = FlowView(
                    flow,
                    record,
                    {step.id: step for step in flow.spec.steps},
                    dict(zip(ids, [*ids[1:], None], strict=True)),
                    flow_zone(flow),
                )
            self._views[name] = view
        return self._views[name]

    def step(self, name: str, step_id: str | None) -> Step | None:
        view = self.view(name)
        return view.steps.get(step_id or "") if view is not None else None

    def uses_company(self, name: str) -> bool:
        """Do the flow's steps read or write company fields (in updates or merge fields)?
        Then a batch reads its contacts' companies once, up front."""
        if name not in self._uses_company:
            flow = self.flow(name)
            self._uses_company[name] = flow is not None and any(
                "company." in step.model_dump_json() for step in flow.spec.steps
            )
        return self._uses_company[name]

    def live(self) -> list[tuple[FlowRecord, Flow]]:
        """Flows whose triggers are on: running or paused (never not_running)."""
        out = []
        for name, record in sorted(self.records.items()):
            flow = self.flow(name)
            if flow is not None and record.status in ("running", "paused"):
                out.append((record, flow))
        return out

    def awaited_event_types(self) -> frozenset[str]:
        """The event types anything here reacts to: triggers of live flows, success
        criteria and awaited actions of any flow. Every other event is only recorded."""
        if self._awaited is not None:
            return self._awaited
        types: set[str] = set()
        for name, record in self.records.items():
            flow = self.flow(name)
            if flow is None:
                continue
            if record.status in ("running", "paused"):
                types.update(trigger.type for trigger in flow.spec.triggers)
            if flow.spec.success_criteria:
                types.update(criterion.type for criterion in flow.spec.success_criteria.criteria)
            if any(isinstance(step, WaitForAction) for step in flow.spec.steps):
                types.update(("form_submitted", "link_clicked"))
        self._awaited = frozenset(types)
        return self._awaited
