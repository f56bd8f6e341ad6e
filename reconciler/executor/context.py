"""What step handlers read, for one batch: the contacts as this batch has changed them,
their memberships, companies, associates and counters — each read from the database at
most once per batch, and only when a step asks.

``BatchContext`` is the batch's read side; its ``set_fields``, ``note_membership``, …
are how a handler's effects become visible to the steps after it (a contact updated two steps ago reads updated; the next
round-robin choice counts the owner just assigned). The writes themselves are collected
by the batch and flushed in its transaction (``reconciler.executor.batch``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, tzinfo
from typing import Any, Literal

from reconciler.compose import participant_context
from reconciler.executor.catalog import FlowView
from reconciler.executor.conditions import Facts
from reconciler.executor.facts import FactLoader, Needs, company_view
from reconciler.executor.handlers.base import (
    Assigned,
    Booking,
    Membership,
    SetCompanyField,
    SetFields,
    StepError,
)
from reconciler.spec.graph import FlowGraph
from reconciler.spec.models import Flow
from reconciler.spec.steps import Split
from reconciler.spec.templates import TEXT_NAMES
from reconciler.state.crm_store import AssociateRecord, ContactRecord, CrmTx
from reconciler.state.executor_store import count_by_value, open_requests_by_owner
from reconciler.state.store import Tx
from reconciler.templating import CRM_TEXT, MergeContext, RenderError, has_template, render_text


def render(text: str | None, context: Callable[[], MergeContext]) -> str | None:
    """``text`` with its merge fields filled in, by the rules every rendered text follows
    (``reconciler.templating``); ``context`` is called only when the text has merge
    fields (most step texts have none)."""
    if text is None or not has_template(text):
        return text
    try:
        return render_text(text, context(), CRM_TEXT, TEXT_NAMES)
    except RenderError as exc:
        raise StepError(f"merge field: {exc.message}") from None


class BatchContext:
    """The ``StepContext`` of every step in one batch; ``bind`` points it at a participant."""

    def __init__(self, tx: Tx, crm: CrmTx, facts: FactLoader, now: datetime) -> None:
        self.tx, self.crm, self._facts, self.now = tx, crm, facts, now
        self.contacts: dict[str, ContactRecord] = {}  # by e-mail, with this batch's changes
        self._view: FlowView | None = None
        self._email = ""
        self.contact = ContactRecord(0, "", {})  # set by bind
        self._data: MergeContext | None = None
        self._associates: list[AssociateRecord] | None = None
        self._counts: dict[str, Counter[str]] = {"owner": Counter(), "request": Counter()}
        self._busy: dict[int, list[tuple[datetime, datetime]]] = {}
        self._split_needs: dict[tuple[str, str], Needs] = {}

    def bind(self, view: FlowView, email: str) -> None:
        self._view, self._email, self._data = view, email, None
        self.contact = self.contacts[email]  # the contact as it is now (this batch's changes included)

    # --- StepContext -------------------------------------------------------------------------

    @property
    def view(self) -> FlowView:
        assert self._view is not None
        return self._view

    @property
    def flow(self) -> Flow:
        return self.view.flow

    @property
    def graph(self) -> FlowGraph:
        return self.view.graph

    @property
    def zone(self) -> tzinfo:
        return self.view.zone

    def render(self, text: str | None) -> str | None:
        return render(text, self._merge_data)

    def split_facts(self, step: Split) -> Facts:
        key = (self.flow.name, step.id)
        needs = self._split_needs.get(key)
        if needs is None:
            needs = self._split_needs[key] = Needs()
            for branch in step.branches:
                needs.add(branch.when, step.form)
        contact = self.contact
        # Most splits ask about the contact's own fields: no lookups to make.
        return self._facts.load([contact], needs)[contact.email] if needs.lookups else Facts(contact)

    def member(self, kind: str, name: str) -> bool:
        return self._facts.member(kind, name, self.contact.id)

    def submitted(self, form: str | None) -> bool:
        return any(e.subject == form for e in self.crm.events_of([self._email], ["form_submitted"]))

    def company(self, name: str) -> Mapping[str, Any] | None:
        return self._facts.companies([name])[name]

    def associates(self) -> Sequence[AssociateRecord]:
        if self._associates is None:
            self._associates = self.crm.associates()
        return self._associates

    def counts(self, counter: Literal["owner", "request"], names: Sequence[str]) -> Mapping[str, int]:
        counts = self._counts[counter]
        missing = [n for n in names if n not in counts]
        if missing:
            if counter == "owner":
                counts.update(count_by_value(self.tx, "our_contact", missing))
            else:
                counts.update(open_requests_by_owner(self.tx, missing))
        return counts

    def busy(self, associate_id: int) -> Sequence[tuple[datetime, datetime]]:
        if associate_id not in self._busy:
            self._busy[associate_id] = self.crm.appointments(associate_id, self.now, self.now + timedelta(days=400))
        return self._busy[associate_id]

    # --- the batch's side --------------------------------------------------------------------

    def set_fields(self, effect: SetFields) -> None:
        old = self.contacts[self._email]
        values = {**old.values, **effect.values} if effect.values else old.values
        self.contacts[self._email] = self.contact = ContactRecord(
            old.id, old.email, values, effect.custom or old.custom
        )
        self._data = None

    def set_company_field(self, effect: SetCompanyField) -> None:
        self._facts.change_company(effect.company, effect.column, effect.value)
        self._data = None

    def note_membership(self, effect: Membership) -> None:
        self._facts.note(effect.kind, effect.name, self.contact.id, added=effect.add)

    def count(self, effect: Assigned) -> None:
        self._counts[effect.counter][effect.associate] += 1

    def book(self, effect: Booking) -> None:
        self._busy.setdefault(effect.associate_id, []).append((effect.starts, effect.ends))

    def _merge_data(self) -> MergeContext:
        if self._data is None:
            contact = self.contact
            name = contact.get("company")
            found = self.company(name) if name and self.view.uses_company else None
            self._data = participant_context(
                flow=self.flow, contact=contact.as_template_data(), company=company_view(name, found)
            )
        return self._data
