"""One batch: take due participants through as many steps as they can go right now.

Per participant: the checks before every step (success met, exclusion list, former
employee), then the step's decision. Instant steps chain within the batch
(update → add to selection → split → finish in one go); a wait stops it. Every
completed step is logged once per visit (``step_runs``), every effect is flushed in
bulk at the end, in the transaction that claimed the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from reconciler.actions.delivery import PermanentDeliveryError
from reconciler.actions.sms_text import normalize_number
from reconciler.executor.catalog import Catalog, FlowView
from reconciler.executor.conditions import Facts, matches
from reconciler.executor.enrollment import Enroller
from reconciler.executor.facts import FactLoader, Needs, company_view
from reconciler.executor.steps import (
    CONTACT_SENDS,
    Decision,
    Effects,
    Exit,
    Finish,
    Hold,
    Next,
    StepError,
    apply_update,
    render,
)
from reconciler.spec import steps as s
from reconciler.spec.models import Flow
from reconciler.state.crm_store import AssociateRecord, ContactRecord, CrmTx, NewEvent, first_free_slot
from reconciler.state.executor_store import (
    Claimed,
    add_outbox,
    count_by_value,
    log_step_runs,
    open_requests_by_owner,
    save_participants,
)
from reconciler.state.records import DROPPED_OUT, FAILED, FINISHED, FINISHED_WITH_SUCCESS
from reconciler.state.store import Tx
from reconciler.timing import after, wait_until, window_opens

MAX_HOPS = 64  # steps one participant may take in one batch (loops always hold on a wait)
TemplateData = Callable[[], dict[str, Any]]


class _Once:
    """``make()`` called at most once, on first use (cheaper than functools.cache per step)."""

    __slots__ = ("_make", "_value")

    def __init__(self, make: TemplateData) -> None:
        self._make: TemplateData | None = make
        self._value: dict[str, Any] = {}

    def __call__(self) -> dict[str, Any]:
        if self._make is not None:
            self._value, self._make = self._make(), None
        return self._value


class Batch:
    def __init__(self, tx: Tx, catalog: Catalog, now: datetime) -> None:
        self.tx, self.catalog, self.now = tx, catalog, now
        self.crm = CrmTx(tx)
        self.facts = FactLoader(self.crm)
        self.enroller = Enroller(tx, self.crm, catalog, self.facts, now)
        self.effects = Effects()
        self.runs: list[dict[str, Any]] = []
        self.contacts: dict[str, ContactRecord] = {}
        self.values: dict[str, dict[str, Any]] = {}  # contact email → current field values (with this batch's updates)
        self.handoffs: list[tuple[str, str]] = []  # (flow, email)
        self.steps_run = 0
        self._associates_cache: list[AssociateRecord] | None = None
        self._split_needs: dict[tuple[str, str], Needs] = {}

    def run(self, claimed: list[Claimed]) -> None:
        self.contacts = self.crm.contacts_by_email(p.contact for p in claimed)
        groups: dict[str, set[str]] = {"selection": set(), "project": set()}
        for name in {p.flow_name for p in claimed}:
            flow = self.catalog.flow(name)
            if flow is None:
                continue
            if flow.spec.enrollment.exclusion_selection:
                groups["selection"].add(flow.spec.enrollment.exclusion_selection)
            for step in flow.spec.steps:
                if isinstance(step, s.AddToSelection | s.RemoveFromSelection):
                    groups["selection"].update([step.selection] if step.selection else [])
                    groups["project"].update([step.project] if step.project else [])
        ids = [c.id for c in self.contacts.values()]
        for kind, names in groups.items():
            self.facts.preload(kind, names, ids)
        if any(self.catalog.uses_company(name) for name in {p.flow_name for p in claimed}):
            self.facts.companies(c.get("company") for c in self.contacts.values())
        for p in claimed:
            self._advance(p)
        self._flush(claimed)

    # --- the participant state machine ------------------------------------------------

    def _advance(self, p: Claimed) -> None:
        view = self.catalog.view(p.flow_name)
        if view is None:
            return
        contact = self.contacts.get(p.contact)
        if contact is None:
            self._end(p, FAILED, f"contact {p.contact} no longer exists")
            return
        flow, steps = view.flow, view.steps
        for _ in range(MAX_HOPS):
            step = steps.get(p.step_id or "")
            if step is None:
                self._end(p, FAILED, f"step {p.step_id!r} is no longer in the flow")
                return
            p.revision_seen = view.record.revision
            decision = self._checks(p, flow, contact) or self._decide(p, view, step, contact)
            if isinstance(decision, Hold):
                p.due_at, p.step_state = decision.due, decision.state
                return
            if isinstance(decision, Next):
                self._log(p, step.id, decision.outcome)
                target = decision.target or view.following[step.id]
                if target is None:
                    self._finish(p, flow, None)
                    return
                p.step_id, p.step_state, p.due_at = target, None, self.now
                continue
            if isinstance(decision, Exit):
                self._log(p, step.id, f"exit: {decision.reason}")
                self._exit(p, decision, contact)
            else:
                self._log(p, step.id, "finish")
                self._finish(p, flow, decision.handoff)
            return
        p.due_at = self.now  # keep going in the next batch

    def _checks(self, p: Claimed, flow: Flow, contact: ContactRecord) -> Decision | None:
        spec = flow.spec
        if p.success_at is not None and spec.success_criteria is not None and spec.success_criteria.finish_immediately:
            return Finish()
        exclusion = spec.enrollment.exclusion_selection
        if exclusion and self.facts.member("selection", exclusion, contact.id):
            return Exit(f"on the exclusion selection {exclusion!r}")
        if self._read(contact).get("retired"):
            return Exit("former employee")
        return None

    def _decide(self, p: Claimed, view: FlowView, step: s.Step, contact: ContactRecord) -> Decision:
        try:
            return self._step(p, view, step, contact)
        except StepError as exc:
            return self._fail(p, step.id, str(exc))

    def _fail(self, p: Claimed, step_id: str, reason: str) -> Decision:
        self._log(p, step_id, f"failed: {reason}"[:200])
        self._end(p, FAILED, reason)
        return Hold(None, None)

    def _step(self, p: Claimed, view: FlowView, step: s.Step, contact: ContactRecord) -> Decision:
        handler = STEP_HANDLERS.get(type(step))
        if handler is None:  # pragma: no cover - every step type of the models has one
            raise StepError(f"step type {step.type!r} is not supported by the executor")
        return handler(self, p, view, step, contact)

    def _wait(self, p: Claimed, view: FlowView, step: s.Wait, _contact: ContactRecord) -> Decision:
        if p.step_state == "waiting":
            return Next("waited")
        due = wait_until(step, self.now, view.zone)
        # A wait until a time that has passed goes on in this batch, as the next batch
        # would at once: one claim and one save fewer per participant.
        return Next("waited") if due <= self.now else Hold(due)

    def _wait_for_action(self, p: Claimed, _view: FlowView, step: s.WaitForAction, _contact: ContactRecord) -> Decision:
        if p.step_state == "action":
            return Next("action taken")
        if p.step_state == "waiting":  # the timeout passed
            if step.on_timeout == "exit":
                return Exit("no action before the timeout", step.after_exit)
            return Next("timed out")
        return Hold(None if step.timeout == "never" else self.now + step.timeout)

    def _finish_step(self, p: Claimed, _view: FlowView, step: s.Finish, _contact: ContactRecord) -> Decision:
        handoff = step.on_success if p.success_at is not None else step.on_no_success
        return Finish(handoff.add_to_flow if handoff else None)

    def _send_step(self, p: Claimed, view: FlowView, step: s.Step, contact: ContactRecord) -> Decision:
        flow = view.flow
        if step.type in CONTACT_SENDS:
            opens = window_opens(flow.spec.settings.sending_window, self.now, view.zone)
            if opens is not None:
                return Hold(opens, None)
        return self._send(p, flow, step, contact)

    def _split(self, _p: Claimed, view: FlowView, step: s.Split, contact: ContactRecord) -> Decision:
        key = (view.flow.name, step.id)
        needs = self._split_needs.get(key)
        if needs is None:
            needs = self._split_needs[key] = Needs()
            for branch in step.branches:
                needs.add(branch.when, step.form)
        current = self._current(contact)
        # Most splits ask about the contact's own fields: no lookups to make.
        facts = self.facts.load([current], needs)[contact.email] if needs.lookups else Facts(current)
        for branch in step.branches:
            if branch.when is None and step.based_on == "form_submitted" and branch.name != s.EVERYONE_ELSE:
                submitted = self.crm.events_of([contact.email], ["form_submitted"])
                hit = any(e.subject == step.form for e in submitted)
            else:
                hit = branch.when is None or matches(branch.when, facts, form=step.form)
            if hit:
                if branch.exit:
                    return Exit(f"split {step.id!r}: branch {branch.name!r} exits", branch.after_exit)
                return Next(f"branch {branch.name}", branch.next)
        raise StepError("no branch matched")  # pragma: no cover - everyone_else always matches

    # --- CRM steps -------------------------------------------------------------------------

    def _data(self, flow: Flow, contact: ContactRecord) -> TemplateData:
        """Merge-field data, built only if a text has merge fields."""
        return _Once(lambda: self._template_data(flow, contact))

    def _membership_step(
        self, _p: Claimed, _view: FlowView, step: s.AddToSelection | s.RemoveFromSelection, contact: ContactRecord
    ) -> Decision:
        add = isinstance(step, s.AddToSelection)
        for kind, name in (("selection", step.selection), ("project", step.project)):
            if name is not None:
                self._membership(kind, name, contact, add=add)
        return Next()

    def _request_step(self, _p: Claimed, view: FlowView, step: s.CreateRequest, contact: ContactRecord) -> Decision:
        flow, data = view.flow, self._data(view.flow, contact)
        owner = self._request_owner(step.owner, contact)
        self.effects.activities["requests"].append(
            {
                "contact_id": contact.id,
                "title": render(step.title, data),
                "request_type": step.request_type,
                "status": step.status,
                "category": step.category,
                "priority": step.priority,
                "owner": owner,
                "message": render(step.message, data),
                "flow_name": flow.name,
                "created_at": self.now,
            }
        )
        self._event("request_created", contact, None, {"flow": flow.name})
        return Next(f"request for {owner or 'nobody'}")

    def _sale_step(self, _p: Claimed, view: FlowView, step: s.CreateSale, contact: ContactRecord) -> Decision:
        flow, data = view.flow, self._data(view.flow, contact)
        owner = self._assignee(step.owner, contact)
        expected = after(self.now, step.date.in_, step.date.working_days, view.zone) if step.date else None
        self.effects.activities["sales"].append(
            {
                "contact_id": contact.id,
                "title": render(step.title, data),
                "sale_type": step.sale_type,
                "stage": step.stage,
                "amount": step.amount,
                "currency": step.currency,
                "description": render(step.description, data),
                "project": step.project,
                "expected_at": expected,
                "owner": owner,
                "status": "open",
                "flow_name": flow.name,
                "created_at": self.now,
            }
        )
        self._event("sale_created", contact, None, {"flow": flow.name})
        return Next()

    def _update_contact(self, _p: Claimed, view: FlowView, step: s.UpdateContact, contact: ContactRecord) -> Decision:
        data = self._data(view.flow, contact)
        values = self._values(contact)
        if any(isinstance(row.value, str) and "{" in row.value for row in step.updates):
            data()  # taken now: every row's merge fields see the contact as it was before this step
        changed = []
        for row in step.updates:
            value = render(row.value, data) if isinstance(row.value, str) else row.value
            if row.field.startswith("company."):
                if self._update_company(values.get("company"), row.field, row.action, value):
                    changed.append(row.field)
                continue
            if row.field.startswith("custom."):
                name = row.field[len("custom.") :]
                custom = self.effects.custom_changes.setdefault(contact.id, dict(contact.custom))
                new = apply_update(custom.get(name), row.action, value)
                if custom.get(name) != new:
                    custom[name] = new
                    changed.append(row.field)
                continue
            new = apply_update(values.get(row.field), row.action, value)
            if values.get(row.field) != new:
                values[row.field] = new
                self.effects.contact_changes.setdefault(contact.id, {})[row.field] = new
                changed.append(row.field)
        if changed:
            self._event("contact_updated", contact, None, {"changed": changed})
        return Next(f"updated {', '.join(changed)}" if changed else "nothing to change")

    def _update_company(self, name: str | None, field: str, action: str, value: Any) -> bool:
        """One bulk-update row on the contact's company; True if it changed something."""
        if not name:
            raise StepError(f"the contact has no company, so {field} cannot be updated")
        company = self.facts.companies([name])[name] or {"custom": {}}
        column = field[len("company.") :]
        changed: bool
        if column.startswith("custom."):  # custom fields change as one dict
            custom, key = dict(company.get("custom") or {}), column[len("custom.") :]
            new = apply_update(custom.get(key), action, value)
            changed = custom.get(key) != new
            custom[key] = new
            column, new = "custom", custom
        else:
            new = apply_update(company.get(column), action, value)
            changed = company.get(column) != new
        if changed:
            self.facts.change_company(name, column, new)
        return changed

    def _membership(self, kind: str, name: str, contact: ContactRecord, *, add: bool) -> None:
        was = self.facts.member(kind, name, contact.id)
        if was == add:
            return
        self.facts.note(kind, name, contact.id, added=add)
        self.effects.memberships.append((kind, name, contact.id, add))
        if add:
            self._event(f"added_to_{kind}", contact, name, {})

    def _distribute(self, p: Claimed, view: FlowView, step: s.DistributeToOwner, contact: ContactRecord) -> Decision:
        flow, values = view.flow, self._values(contact)
        if step.only_if_unassigned and values.get("our_contact"):
            return Next("already has an owner")
        candidates = list(step.associates)
        active = {a.name: a for a in self._associates() if a.active}
        if step.group:
            candidates += [a.name for a in active.values() if a.group_name == step.group and a.name not in candidates]
        candidates = [c for c in candidates if c in active] or ([step.fallback] if step.fallback else [])
        if not candidates:
            raise StepError("no active associate to distribute to, and no fallback")
        counts = self.effects.owner_counts
        missing = [c for c in candidates if c not in counts]
        if missing:
            counts.update(count_by_value(self.tx, "our_contact", missing))
        owner = min(candidates, key=lambda name: (counts[name], candidates.index(name)))
        counts[owner] += 1
        values["our_contact"] = owner
        self.effects.contact_changes.setdefault(contact.id, {})["our_contact"] = owner
        self._event("contact_updated", contact, None, {"changed": ["our_contact"]})
        if step.notify and owner in active and active[owner].email:
            self._outbox(
                p,
                flow,
                step.id,
                "notify_email",
                contact,
                {
                    "to": active[owner].email,
                    "subject": f"New contact assigned to you: {contact.email}",
                    "message": f"{contact.get('full_name') or contact.email} was assigned to you by flow {flow.name}.",
                },
            )
        return Next(f"owner {owner}")

    def _follow_up(self, _p: Claimed, view: FlowView, step: s.CreateFollowUp, contact: ContactRecord) -> Decision:
        flow, tz, data = view.flow, view.zone, self._data(view.flow, contact)
        associate = self._assignee(step.assign_to, contact)
        row: dict[str, Any] = {
            "contact_id": contact.id,
            "associate": associate,
            "title": render(step.title, data),
            "follow_up_type": step.follow_up_type,
            "project": step.project,
            "agenda": render(step.agenda, data),
            "flow_name": flow.name,
            "created_at": self.now,
            "due_at": None,
            "starts_at": None,
            "ends_at": None,
        }
        if step.due.in_ is not None:
            row["due_at"] = after(self.now, step.due.in_, step.due.working_days, tz)
        else:
            slot = step.due.first_available
            assert slot is not None
            start = after(self.now, slot.after, slot.working_days, tz) if slot.after else self.now
            known = {a.name: a for a in self._associates()}
            if associate in known:
                aid = known[associate].id
                if aid not in self.effects.busy:
                    self.effects.busy[aid] = self.crm.appointments(aid, self.now, self.now + timedelta(days=400))
                begins = first_free_slot(self.effects.busy[aid], start, slot.length, tz)
                self.effects.busy[aid].append((begins, begins + slot.length))
                self.crm.add_appointment(aid, begins, begins + slot.length, row["title"], contact.id)
            else:
                begins = start
            row.update(starts_at=begins, ends_at=begins + slot.length, due_at=begins)
        self.effects.activities["follow_ups"].append(row)
        self._event("follow_up_created", contact, None, {"flow": flow.name})
        return Next(f"follow-up for {associate or 'nobody'}")

    def _assignee(self, who: str, contact: ContactRecord) -> str | None:
        if who in s.ROLES:
            value = self._values(contact).get(who)
            return str(value) if value else None
        return who

    def _request_owner(self, owner: str, contact: ContactRecord) -> str | None:
        if owner == "unassigned":
            return None
        if owner != "auto":
            return self._assignee(owner, contact)
        manager = self._values(contact).get("our_support_manager")
        if manager:
            return str(manager)
        active = [a.name for a in self._associates() if a.active]
        if not active:
            return None
        counts = self.effects.request_counts
        missing = [a for a in active if a not in counts]
        if missing:
            counts.update(open_requests_by_owner(self.tx, missing))
        chosen = min(active, key=lambda name: (counts[name], name))
        counts[chosen] += 1
        return chosen

    # --- sends: to the outbox ----------------------------------------------------------------

    def _send(self, p: Claimed, flow: Flow, step: s.Step, contact: ContactRecord) -> Decision:
        values = self._values(contact)
        if isinstance(step, s.SendEmail):
            problem = self._email_problem(flow, values)
            if problem:
                return Next(f"skipped: {problem}")
            self._outbox(
                p,
                flow,
                step.id,
                step.type,
                contact,
                {
                    "to": contact.email,
                    "subject": step.subject,
                    "content": step.content,
                    "text_content": step.text_content,
                    "attachments": list(step.attachments),
                },
            )
        elif isinstance(step, s.SendSms):
            settings = flow.spec.settings.sms
            try:
                number = normalize_number(
                    str(values.get("mobile") or ""), settings.default_region if settings else None
                )
                problem = None
            except PermanentDeliveryError as exc:
                number, problem = (
                    "",
                    "no mobile number" if not values.get("mobile") else f"no usable mobile number: {exc}",
                )
            if problem:
                if step.on_missing_mobile == "exit":
                    return Exit(problem, step.after_exit)
                return Next(f"skipped: {problem}")
            if values.get("blocked"):
                return Next("skipped: contact is blocked")
            sender = step.sender or (flow.spec.settings.sms.sender if flow.spec.settings.sms else None)
            self._outbox(p, flow, step.id, step.type, contact, {"to": number, "text": step.text, "sender": sender})
        elif isinstance(step, s.NotifyEmail | s.NotifySms):
            to = step.to
            if to in s.ROLES:
                name = values.get(to)
                associate = next((a for a in self._associates() if a.name == name), None)
                address = (
                    (associate.email if isinstance(step, s.NotifyEmail) else associate.mobile) if associate else None
                )
                if not address:
                    return Next(f"skipped: the contact's {to.replace('_', ' ')} has no address")
                to = str(address)
            body = (
                {"subject": step.subject, "message": step.message}
                if isinstance(step, s.NotifyEmail)
                else {"text": step.text, "sender": step.sender}
            )
            self._outbox(p, flow, step.id, step.type, contact, {"to": to, **body})
        elif isinstance(step, s.RunScript):
            self._outbox(p, flow, step.id, step.type, contact, {"script": step.script})
        return Next("queued for sending" if not isinstance(step, s.RunScript) else "script queued")

    def _email_problem(self, flow: Flow, values: dict[str, Any]) -> str | None:
        if values.get("blocked"):
            return "the address is blocked"
        if not values.get("consent_marketing"):
            return "no marketing consent"
        settings = flow.spec.settings.email
        if settings and settings.subscription and settings.subscription not in (values.get("subscriptions") or []):
            return f"not subscribed to {settings.subscription!r}"
        return None

    def _outbox(
        self, p: Claimed, flow: Flow, step_id: str, kind: str, contact: ContactRecord, payload: dict[str, Any]
    ) -> None:
        record = self.catalog.record(flow.name)
        revision = record.revision if record else 0
        self.effects.outbox.append(
            {
                "idempotency_key": f"{p.id}:{revision}:{step_id}:{p.visit}",
                "participant_id": p.id,
                "flow_name": flow.name,
                "revision": revision,
                "step_id": step_id,
                "kind": kind,
                "contact_email": contact.email,
                "payload": payload,
                "state": "pending",
                "attempts": 0,
                "next_attempt_at": self.now,
                "last_error": None,
                "created_at": self.now,
                "updated_at": self.now,
            }
        )

    # --- endings ---------------------------------------------------------------------------

    def _finish(self, p: Claimed, flow: Flow, handoff: str | None) -> None:
        self._end(p, FINISHED_WITH_SUCCESS if p.success_at else FINISHED, None)
        if handoff:
            self.handoffs.append((handoff, p.contact))

    def _exit(self, p: Claimed, decision: Exit, contact: ContactRecord) -> None:
        self._end(p, DROPPED_OUT, decision.reason)
        if decision.then is not None:
            if decision.then.add_to_selection:
                self._membership("selection", decision.then.add_to_selection, contact, add=True)
            if decision.then.add_to_flow:
                self.handoffs.append((decision.then.add_to_flow, p.contact))

    def _end(self, p: Claimed, status: str, reason: str | None) -> None:
        p.status, p.reason, p.due_at, p.step_state, p.finished_at = status, reason, None, None, self.now

    def _log(self, p: Claimed, step_id: str, outcome: str) -> None:
        self.runs.append(
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

    # --- helpers ---------------------------------------------------------------------------

    def _values(self, contact: ContactRecord) -> dict[str, Any]:
        if contact.email not in self.values:
            self.values[contact.email] = dict(contact.values)
        return self.values[contact.email]

    def _read(self, contact: ContactRecord) -> Mapping[str, Any]:
        """The contact's current values, for reading (``_values`` copies them, to change)."""
        return self.values.get(contact.email) or contact.values

    def _current(self, contact: ContactRecord) -> ContactRecord:
        custom = self.effects.custom_changes.get(contact.id, contact.custom)
        return ContactRecord(contact.id, contact.email, self._read(contact), custom)

    def _template_data(self, flow: Flow, contact: ContactRecord) -> dict[str, Any]:
        current = self._current(contact)
        data = current.as_template_data()
        name = data.get("company")
        found = self.facts.companies([name])[name] if name and self.catalog.uses_company(flow.name) else None
        company = company_view(name, found)
        return {
            "contact": data,
            "company": company,
            "flow": {"name": flow.name, "description": flow.metadata.description, "owner": flow.spec.owner},
        }

    def _associates(self) -> list[AssociateRecord]:
        if self._associates_cache is None:
            self._associates_cache = self.crm.associates()
        return self._associates_cache

    def _event(self, kind: str, contact: ContactRecord, subject: str | None, data: dict[str, Any]) -> None:
        self.effects.events.append((kind, contact.email, subject, data))

    # --- flush -----------------------------------------------------------------------------

    def _flush(self, claimed: list[Claimed]) -> None:
        effects = self.effects
        changes: dict[int, dict[str, Any]] = {i: dict(v) for i, v in effects.contact_changes.items()}
        for contact_id, custom in effects.custom_changes.items():
            changes.setdefault(contact_id, {})["custom"] = custom
        self.crm.update_contacts(changes, self.now)
        if self.facts.company_changes:
            self.crm.ensure_companies(self.facts.company_changes)
            for name, values in self.facts.company_changes.items():
                self.crm.update_company(name, values)
        grouped: dict[tuple[str, str, bool], list[int]] = {}
        for kind, name, contact_id, add in effects.memberships:
            grouped.setdefault((kind, name, add), []).append(contact_id)
        for (kind, name, add), ids in grouped.items():
            if add:
                self.crm.add_members(kind, name, ids, self.now)
            else:
                self.crm.remove_members(kind, name, ids)
        for table, rows in effects.activities.items():
            self.crm.insert_rows(table, rows)
        add_outbox(self.tx, effects.outbox)
        log_step_runs(self.tx, self.runs)
        save_participants(self.tx, claimed, self.now)
        self.crm.append_events(
            [
                NewEvent(kind, email, self.now, subject, data, source="flow")
                for kind, email, subject, data in effects.events
            ],
            awaited=self.catalog.awaited_event_types(),
        )
        by_flow: dict[str, list[str]] = {}
        for flow_name, email in self.handoffs:
            by_flow.setdefault(flow_name, []).append(email)
        for flow_name, emails in by_flow.items():
            contacts = [self.contacts[e] for e in emails if e in self.contacts]
            self.enroller.enroll(flow_name, contacts, source="handoff")


# Each step type's handler: (batch, participant, flow, step, contact) → decision.
STEP_HANDLERS: dict[type[Any], Callable[..., Decision]] = {
    s.Wait: Batch._wait,
    s.WaitForAction: Batch._wait_for_action,
    s.Split: Batch._split,
    s.Finish: Batch._finish_step,
    s.SendEmail: Batch._send_step,
    s.SendSms: Batch._send_step,
    s.NotifyEmail: Batch._send_step,
    s.NotifySms: Batch._send_step,
    s.RunScript: Batch._send_step,
    s.UpdateContact: Batch._update_contact,
    s.AddToSelection: Batch._membership_step,
    s.RemoveFromSelection: Batch._membership_step,
    s.DistributeToOwner: Batch._distribute,
    s.CreateFollowUp: Batch._follow_up,
    s.CreateRequest: Batch._request_step,
    s.CreateSale: Batch._sale_step,
}
