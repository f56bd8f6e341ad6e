"""One batch: take due participants through as many steps as they can go right now.

The batch knows no step's meaning. Per participant it runs the checks before every
step (success met, exclusion list, former employee), asks the step's handler
(``reconciler.executor.handlers``) for a decision, applies the decision's effects so
the following steps see them, and moves the participant along the flow's compiled
graph. Instant steps chain within the batch (update → add to selection → split →
finish in one go); a wait stops it. Every visit of a step is logged once
(``step_runs``), and every write is flushed in bulk at the end, in the transaction
that claimed the batch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from reconciler.executor.catalog import Catalog, FlowView
from reconciler.executor.context import BatchContext
from reconciler.executor.enrollment import Enroller
from reconciler.executor.facts import FactLoader
from reconciler.executor.handlers import HANDLERS
from reconciler.executor.handlers.base import (
    Activity,
    Assigned,
    Booking,
    Decision,
    Emit,
    Exit,
    Finish,
    Hold,
    Membership,
    Next,
    Outcome,
    Send,
    SetCompanyField,
    SetFields,
    StepError,
)
from reconciler.messages import to_payload
from reconciler.spec import steps as s
from reconciler.spec.steps import ExitTo
from reconciler.state.crm_store import CrmTx, NewEvent
from reconciler.state.executor_store import add_outbox, log_step_runs, save_participants
from reconciler.state.records import Participant
from reconciler.state.store import Tx
from reconciler.statuses import ParticipantStatus

MAX_HOPS = 64  # steps one participant may take in one batch (loops always hold on a wait)


@dataclass
class Writes:
    """Everything the batch will write, collected from the handlers' effects."""

    contact_changes: dict[int, dict[str, Any]] = field(default_factory=dict)
    custom_changes: dict[int, dict[str, Any]] = field(default_factory=dict)
    memberships: dict[tuple[str, str, bool], list[int]] = field(default_factory=lambda: defaultdict(list))
    activities: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    bookings: list[tuple[Booking, int]] = field(default_factory=list)
    events: list[NewEvent] = field(default_factory=list)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    handoffs: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # flow → e-mails


class Batch:
    def __init__(self, tx: Tx, catalog: Catalog, now: datetime) -> None:
        self.tx, self.catalog, self.now = tx, catalog, now
        self.crm = CrmTx(tx)
        self.facts = FactLoader(self.crm)
        self.enroller = Enroller(tx, self.crm, catalog, self.facts, now)
        self.ctx = BatchContext(tx, self.crm, self.facts, now)
        self.writes = Writes()
        self.steps_run = 0

    def run(self, claimed: list[Participant]) -> None:
        self.ctx.contacts = self.crm.contacts_by_email(p.contact for p in claimed)
        self._preload(claimed)
        for p in claimed:
            self._advance(p)
        self._flush(claimed)

    def _preload(self, claimed: list[Participant]) -> None:
        """Memberships and companies the batch's steps will ask about, read at once."""
        groups: dict[str, set[str]] = {"selection": set(), "project": set()}
        views = [v for v in (self.catalog.view(n) for n in {p.flow_name for p in claimed}) if v is not None]
        for view in views:
            if view.exclusion:
                groups["selection"].add(view.exclusion)
            for step in view.flow.spec.steps:
                if isinstance(step, s.AddToSelection | s.RemoveFromSelection):
                    groups["selection"].update([step.selection] if step.selection else [])
                    groups["project"].update([step.project] if step.project else [])
        ids = [c.id for c in self.ctx.contacts.values()]
        for kind, names in groups.items():
            self.facts.preload(kind, names, ids)
        if any(view.uses_company for view in views):
            self.facts.companies(c.get("company") for c in self.ctx.contacts.values())

    # --- the participant state machine ------------------------------------------------

    def _advance(self, p: Participant) -> None:
        view = self.catalog.view(p.flow_name)
        if view is None:
            return
        ctx = self.ctx
        if p.contact not in ctx.contacts:
            self._end(p, ParticipantStatus.FAILED, f"contact {p.contact} no longer exists")
            return
        ctx.bind(view, p.contact)
        steps, next_step, revision = view.graph.steps, view.graph.next_step, view.record.revision
        appliers, log = _APPLIERS, self._log
        on_success, exclusion = view.graph.finish_on_success, view.exclusion
        for _ in range(MAX_HOPS):
            step = steps.get(p.step_id or "")
            if step is None:
                self._end(p, ParticipantStatus.FAILED, f"step {p.step_id!r} is no longer in the flow")
                return
            step_id = step.id
            p.revision_seen = revision
            decision = None
            if (p.success_at is not None and on_success) or exclusion or ctx.contact.values.get("retired"):
                decision = self._checks(p, view, step)
            if decision is None:
                try:
                    decision = HANDLERS[type(step)](p, step, ctx)
                except StepError as exc:
                    log(p, step_id, Outcome.FAILED.text(str(exc)))
                    self._end(p, ParticipantStatus.FAILED, str(exc))
                    return
            for effect in decision.effects:
                appliers[type(effect)](self, p, step_id, effect)
            if isinstance(decision, Next):
                log(p, step_id, decision.outcome.text(decision.detail))
                target = decision.target if decision.target is not None else next_step[step_id]
                if target is None:
                    self._finish(p, None)
                    return
                p.step_id, p.step_state, p.due_at = target, None, self.now
                continue
            if isinstance(decision, Hold):
                p.due_at, p.step_state = decision.due, decision.state
            elif isinstance(decision, Exit):
                log(p, step_id, Outcome.EXIT.text(decision.reason))
                self._exit(p, decision.reason, decision.then)
            else:
                log(p, step_id, Outcome.FINISH.text())
                self._finish(p, decision.handoff)
            return
        p.due_at = self.now  # keep going in the next batch

    def _checks(self, p: Participant, view: FlowView, step: s.Step) -> Decision | None:
        """The checks before every step; a decision when one of them ends the visit."""
        if p.success_at is not None and view.graph.finish_on_success and not isinstance(step, s.Finish):
            target = view.graph.success_finish(step.id)
            if target is None:  # no finish step: the flow ends here, successfully
                return Finish()
            return Next(Outcome.LEFT, "success criterion met", target)
        exclusion = view.exclusion
        if exclusion and self.ctx.member("selection", exclusion):
            return Exit(f"on the exclusion selection {exclusion!r}")
        if self.ctx.contact.values.get("retired"):
            return Exit("former employee")
        return None

    # --- effects: visible to the next steps at once (the context), written at the flush ----

    def _set_fields(self, _p: Participant, _step_id: str, effect: SetFields) -> None:
        self.ctx.set_fields(effect)
        contact_id = self.ctx.contact.id
        if effect.values:
            self.writes.contact_changes.setdefault(contact_id, {}).update(effect.values)
        if effect.custom is not None:
            self.writes.custom_changes[contact_id] = dict(effect.custom)

    def _set_company_field(self, _p: Participant, _step_id: str, effect: SetCompanyField) -> None:
        self.ctx.set_company_field(effect)  # the fact loader keeps company changes to write

    def _membership(self, _p: Participant, _step_id: str, effect: Membership) -> None:
        self.ctx.note_membership(effect)
        self.writes.memberships[(effect.kind, effect.name, effect.add)].append(self.ctx.contact.id)

    def _activity(self, _p: Participant, _step_id: str, effect: Activity) -> None:
        self.writes.activities[effect.table].append(dict(effect.row))

    def _booking(self, _p: Participant, _step_id: str, effect: Booking) -> None:
        self.ctx.book(effect)
        self.writes.bookings.append((effect, self.ctx.contact.id))

    def _assigned(self, _p: Participant, _step_id: str, effect: Assigned) -> None:
        self.ctx.count(effect)

    def _emit(self, _p: Participant, _step_id: str, effect: Emit) -> None:
        email = self.ctx.contact.email
        self.writes.events.append(NewEvent(effect.type, email, self.now, effect.subject, effect.data or {}, "flow"))

    def _outbox(self, p: Participant, step_id: str, send: Send) -> None:
        revision = self.ctx.view.record.revision
        self.writes.outbox.append(
            {
                "idempotency_key": f"{p.id}:{revision}:{step_id}:{p.visit}",
                "participant_id": p.id,
                "flow_name": p.flow_name,
                "revision": revision,
                "step_id": step_id,
                "kind": send.message.kind,
                "contact_email": self.ctx.contact.email,
                "payload": to_payload(send.message),
                "state": "pending",
                "attempts": 0,
                "next_attempt_at": self.now,
                "last_error": None,
                "created_at": self.now,
                "updated_at": self.now,
            }
        )

    # --- endings ---------------------------------------------------------------------------

    def _finish(self, p: Participant, handoff: str | None) -> None:
        self._end(p, ParticipantStatus.FINISHED_WITH_SUCCESS if p.success_at else ParticipantStatus.FINISHED, None)
        if handoff:
            self.writes.handoffs[handoff].append(p.contact)

    def _exit(self, p: Participant, reason: str, then: ExitTo | None) -> None:
        self._end(p, ParticipantStatus.DROPPED_OUT, reason)
        if then is not None:
            if then.add_to_selection and not self.ctx.member("selection", then.add_to_selection):
                self._membership(p, "", Membership("selection", then.add_to_selection, add=True))
                self._emit(p, "", Emit("added_to_selection", then.add_to_selection))
            if then.add_to_flow:
                self.writes.handoffs[then.add_to_flow].append(p.contact)

    def _end(self, p: Participant, status: ParticipantStatus, reason: str | None) -> None:
        p.status, p.reason, p.due_at, p.step_state, p.finished_at = status, reason, None, None, self.now

    def _log(self, p: Participant, step_id: str, outcome: str) -> None:
        self.writes.runs.append(
            {
                "participant_id": p.id,
                "visit": p.visit,
                "step_id": step_id,
                "revision": p.revision_seen,
                "outcome": outcome[:200],
                "at": self.now,
            }
        )
        p.visit += 1
        self.steps_run += 1

    # --- flush -----------------------------------------------------------------------------

    def _flush(self, claimed: list[Participant]) -> None:
        writes, crm = self.writes, self.crm
        changes: dict[int, dict[str, Any]] = {i: dict(v) for i, v in writes.contact_changes.items()}
        for contact_id, custom in writes.custom_changes.items():
            changes.setdefault(contact_id, {})["custom"] = custom
        crm.update_contacts(changes, self.now)
        if self.facts.company_changes:
            crm.ensure_companies(self.facts.company_changes)
            for name, values in self.facts.company_changes.items():
                crm.update_company(name, values)
        for (kind, name, add), ids in writes.memberships.items():
            if add:
                crm.add_members(kind, name, ids, self.now)
            else:
                crm.remove_members(kind, name, ids)
        for table, rows in writes.activities.items():
            crm.insert_rows(table, rows)
        for booking, contact_id in writes.bookings:
            crm.add_appointment(booking.associate_id, booking.starts, booking.ends, booking.title, contact_id)
        add_outbox(self.tx, writes.outbox)
        log_step_runs(self.tx, writes.runs)
        save_participants(self.tx, claimed, self.now)
        crm.append_events(writes.events, awaited=self.catalog.awaited_event_types())
        for flow_name, emails in writes.handoffs.items():
            contacts = [self.ctx.contacts[e] for e in emails if e in self.ctx.contacts]
            self.enroller.enroll(flow_name, contacts, source="handoff")


# Each effect's applier, by type: unbound, so that a batch holds no reference to itself
# (a cycle would keep every batch's writes alive until the cyclic collector runs).
_APPLIERS: dict[type, Callable[[Batch, Participant, str, Any], None]] = {
    SetFields: Batch._set_fields,
    SetCompanyField: Batch._set_company_field,
    Membership: Batch._membership,
    Activity: Batch._activity,
    Booking: Batch._booking,
    Assigned: Batch._assigned,
    Emit: Batch._emit,
    Send: Batch._outbox,
}
