"""Enrollment: who enters a flow, when, and what events do to participants.

A contact enters a flow only while it is running (at the first step) or paused
(``queued``) — never when it is not running, the incumbents' known leak. Once-only,
the filter (checked once, at enrollment), the exclusion selection and the
``remove_from_flows`` setting are honoured here. Events are processed once, in the
order they were stored: they fire triggers, meet success criteria and end
``wait_for_action`` waits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from reconciler.executor.catalog import Catalog
from reconciler.executor.conditions import matches
from reconciler.executor.facts import FactLoader, Needs
from reconciler.spec.events import AddedToProject, AddedToSelection, ContactUpdated, FormSubmitted, LinkClicked
from reconciler.spec.models import Flow
from reconciler.spec.steps import WaitForAction
from reconciler.state.crm_store import ContactRecord, CrmTx, EventRecord
from reconciler.state.executor_store import (
    insert_participants,
    lock_event_processing,
    mark_success,
    participations,
    set_participant_fields,
    status_history,
)
from reconciler.state.records import ACTIVE, DROPPED_OUT, IN_FLOW, QUEUED, Participant
from reconciler.state.store import Tx
from reconciler.statuses import TRIGGERS_ON, FlowStatus


@dataclass
class EnrollResult:
    enrolled: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # email → why


def event_matches(spec_event: Any, event: EventRecord) -> bool:
    """Does a trigger or success criterion fire on this stored event?"""
    if spec_event.type != event.type:
        return False
    if isinstance(spec_event, FormSubmitted):
        return spec_event.form == event.subject
    if isinstance(spec_event, LinkClicked):
        return spec_event.link == event.subject
    if isinstance(spec_event, AddedToSelection):
        return spec_event.selection == event.subject
    if isinstance(spec_event, AddedToProject):
        return spec_event.project == event.subject
    if isinstance(spec_event, ContactUpdated) and spec_event.fields:
        changed = event.data.get("changed") or []
        return any(f in changed for f in spec_event.fields)
    return True


class Enroller:
    def __init__(self, tx: Tx, crm: CrmTx, catalog: Catalog, facts: FactLoader, now: datetime) -> None:
        self.tx, self.crm, self.catalog, self.facts, self.now = tx, crm, catalog, facts, now

    def enroll(self, flow_name: str, contacts: Sequence[ContactRecord], source: str) -> EnrollResult:
        result = EnrollResult()
        record = self.catalog.record(flow_name)
        flow = self.catalog.flow(flow_name)
        if record is None or flow is None:
            result.skipped.update(dict.fromkeys((c.email for c in contacts), f"no flow named {flow_name!r}"))
            return result
        if record.status not in TRIGGERS_ON:
            result.skipped.update(dict.fromkeys((c.email for c in contacts), f"flow {flow_name!r} is not running"))
            return result
        enrollment = flow.spec.enrollment
        history = [p for p in participations(self.tx, [c.email for c in contacts]) if p.flow_name == flow_name]
        needs = Needs()
        needs.add(enrollment.filter)
        if enrollment.exclusion_selection:
            needs.selections.add(enrollment.exclusion_selection)
        criteria = flow.spec.success_criteria.criteria if flow.spec.success_criteria else []
        for criterion in criteria:
            if isinstance(criterion, AddedToSelection):
                needs.selections.add(criterion.selection)
            elif isinstance(criterion, AddedToProject):
                needs.projects.add(criterion.project)
        facts = self.facts.load(contacts, needs)
        rows = []
        for contact in {c.email: c for c in contacts}.values():
            mine = [p for p in history if p.contact == contact.email]
            fact = facts[contact.email]
            if enrollment.once_only and mine:
                reason = "already took part (the flow is once only)"
            elif any(p.status in IN_FLOW for p in mine):
                reason = "already in the flow"
            elif enrollment.exclusion_selection and enrollment.exclusion_selection in fact.selections:
                reason = f"on the exclusion selection {enrollment.exclusion_selection!r}"
            elif enrollment.filter is not None and not matches(enrollment.filter, fact):
                reason = "does not match the flow's filter"
            else:
                reason = None
            if reason:
                result.skipped[contact.email] = reason
                continue
            success = any(
                (isinstance(c, AddedToSelection) and c.selection in fact.selections)
                or (isinstance(c, AddedToProject) and c.project in fact.projects)
                for c in criteria
            )
            running = record.status == FlowStatus.RUNNING
            rows.append(
                {
                    "flow_id": record.id,
                    "contact": contact.email,
                    "status": ACTIVE if running else QUEUED,
                    "step_id": flow.spec.steps[0].id if running else None,
                    "due_at": self.now if running else None,
                    "reason": None,
                    "revision_seen": record.revision,
                    "enrolled_at": self.now,
                    "updated_at": self.now,
                    "visit": 0,
                    "step_state": None,
                    "success_at": self.now if success else None,
                    "finished_at": None,
                }
            )
            result.enrolled.append(contact.email)
        if result.enrolled:
            self._remove_from_other_flows(flow, result.enrolled)
        insert_participants(self.tx, rows)
        return result

    def _remove_from_other_flows(self, flow: Flow, emails: list[str]) -> None:
        others = set(flow.spec.settings.remove_from_flows)
        if not others:
            return
        gone = [p.id for p in participations(self.tx, emails, in_flow_only=True) if p.flow_name in others]
        set_participant_fields(
            self.tx,
            gone,
            self.now,
            status=DROPPED_OUT,
            reason=f"enrolled in flow {flow.name!r}",
            due_at=None,
            step_state=None,
            finished_at=self.now,
        )


def process_events(enroller: Enroller, limit: int) -> int:
    """Handle up to ``limit`` stored events in order; returns how many were handled.

    Events nothing reacts to (see ``Catalog.awaited_event_types``) are passed over in
    one statement first: reading their contacts would cost more than the steps. (The
    flows' own such events — contact_updated, added_to_selection … — are stored
    processed already, by the batch that made them.)

    A trigger fires only if the flow was live (running or paused) when the event
    happened — an event from while it was not running never enrolls anyone later.
    """
    tx, crm, catalog, now = enroller.tx, enroller.crm, enroller.catalog, enroller.now
    lock_event_processing(tx)
    passed = crm.pass_over_events(catalog.awaited_event_types(), now)
    events = crm.unprocessed_events(limit)
    if not events:
        return passed
    live = catalog.live()
    history = status_history(tx, [record.name for record, _ in live])
    contacts = crm.contacts_by_email(e.contact_email for e in events)
    emails = sorted(contacts)
    current: dict[str, list[Participant]] = {}
    for part in participations(tx, emails, in_flow_only=True):
        current.setdefault(part.contact, []).append(part)
    for event in events:
        contact = contacts.get(event.contact_email)
        if contact is None:
            continue
        enrolled = False
        for record, flow in live:
            if not _was_live(history.get(record.name, []), event.occurred_at):
                continue
            if any(event_matches(trigger, event) for trigger in flow.spec.triggers):
                enrolled |= bool(enroller.enroll(record.name, [contact], source=f"trigger:{event.type}").enrolled)
        if enrolled:
            current[contact.email] = participations(tx, [contact.email], in_flow_only=True)
        _meet(tx, catalog, event, now, current.get(contact.email, []))
    crm.mark_processed([e.id for e in events], now)
    return passed + len(events)


def _was_live(changes: list[tuple[datetime, str | None]], at: datetime) -> bool:
    """Was the flow running or paused at ``at``, by its status history?"""
    status = None
    for when, to_status in changes:
        if when > at:
            break
        status = to_status
    return status in TRIGGERS_ON


def _meet(tx: Tx, catalog: Catalog, event: EventRecord, now: datetime, parts: Sequence[Participant]) -> None:
    """Success criteria met and awaited actions taken by this event."""
    succeeded, finishing, woken = [], [], []
    for part in parts:
        flow = catalog.flow(part.flow_name)
        if flow is None:
            continue
        success = flow.spec.success_criteria
        if success and any(event_matches(c, event) for c in success.criteria):
            succeeded.append(part.id)
            if success.finish_immediately and part.status == ACTIVE:
                finishing.append(part.id)
        step = catalog.step(part.flow_name, part.step_id)
        if isinstance(step, WaitForAction) and part.step_state == "waiting":
            wanted = [
                (a.form_submitted and ("form_submitted", a.form_submitted)) or ("link_clicked", a.link_clicked)
                for a in step.actions
            ]
            if (event.type, event.subject) in wanted:
                woken.append(part.id)
    if succeeded:
        mark_success(tx, succeeded, now)
    if finishing:
        set_participant_fields(tx, finishing, now, due_at=now)
    if woken:
        set_participant_fields(tx, woken, now, step_state="action", due_at=now)
