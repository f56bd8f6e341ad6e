"""Recording CRM events: ``events emit`` and ``events ingest``.

Events are what flows listen to (triggers, success criteria, ``wait_for_action``).
Once validated (``event_validation``), their CRM side effects are applied here (a
form submission creates its contact, an ``added_to_selection`` event adds the
membership, ``contact_updated`` writes the fields and records which ones changed)
and they are appended to the event log in the same transaction. Unlike an import,
these fire triggers.

An idempotency ``key`` makes an event safe to send twice: an event whose key was
seen before is skipped with all its side effects. Nothing here prints.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.crm.cells import ContactValues, write_companies
from reconciler.crm.csv_input import ImportRejected, InputError, Problem, open_lines
from reconciler.crm.event_validation import (
    CREATES_CONTACT,
    ActivityEvent,
    AddedToProject,
    ContactEvent,
    EventInvalid,
    FormSubmitted,
    LinkClicked,
    ParsedEvent,
    SaleEvent,
    parse_event,
)
from reconciler.errors import UserError
from reconciler.state import Store
from reconciler.state.crm_store import ContactRecord, CrmTx, NewEvent

RECORDED, DUPLICATE, NO_CHANGE = "recorded", "duplicate", "no_change"


class EventRejected(UserError):
    """A well-formed event the CRM cannot take (an unknown contact, a contact that exists)."""


@dataclass
class EventOutcome:
    type: str
    email: str
    status: str = RECORDED  # recorded | duplicate | no_change
    contact_created: bool = False
    detail: str = ""

    def describe(self) -> str:
        if self.status == DUPLICATE:
            return f"skipped {self.type} for {self.email}: its idempotency key was already used"
        if self.status == NO_CHANGE:
            return f"no {self.type} event for {self.email}: {self.detail}"
        created = " (contact created)" if self.contact_created else ""
        return f"recorded {self.type} for {self.email}{created}" + (f": {self.detail}" if self.detail else "")


class EventWriter:
    """Applies events, one at a time, inside one transaction."""

    def __init__(self, crm: CrmTx, now: datetime, source: str) -> None:
        self.crm, self.now, self.source = crm, now, source
        self.keys: set[str] = set()

    def apply(self, parsed: ParsedEvent) -> EventOutcome:
        event = parsed.event
        outcome = EventOutcome(event.type, event.email)
        key = event.key
        if key is not None and (key in self.keys or self.crm.known_event_keys([key])):
            outcome.status = DUPLICATE
            return outcome
        when = (event.occurred_at or self.now).astimezone(UTC)
        new: list[NewEvent] = []
        contact = self.crm.contacts_by_email([event.email]).get(event.email)
        if contact is None:
            if event.type not in CREATES_CONTACT:
                raise EventRejected(
                    f"no contact with e-mail {event.email}; only form_submitted, link_clicked and contact_created "
                    "create contacts (or import it: reconcile contacts import)"
                )
            self._create(parsed.contact or ContactValues(event.email))
            outcome.contact_created = True
            if event.type != "contact_created":
                new.append(NewEvent("contact_created", event.email, when, source=self.source))
        elif event.type == "contact_created":
            raise EventRejected(f"contact {event.email} already exists; use contact_updated to change it")
        subject, data = self._effect(parsed, contact, outcome)
        if outcome.status == RECORDED:
            new.append(NewEvent(event.type, event.email, when, subject, data, self.source, key))
        if new:
            self.crm.append_events(new)
        if key is not None:
            self.keys.add(key)
        return outcome

    def _effect(
        self, parsed: ParsedEvent, contact: ContactRecord | None, outcome: EventOutcome
    ) -> tuple[str | None, dict[str, Any]]:
        """The event's own CRM change, its subject and its data."""
        event = parsed.event
        if isinstance(event, FormSubmitted):
            return event.form, {"fields": dict(event.fields)}
        if isinstance(event, LinkClicked):
            return event.link, event.fields.model_dump(exclude_none=True)
        if isinstance(event, SaleEvent | ActivityEvent):
            return None, event.fields.model_dump(exclude_none=True)
        if isinstance(event, ContactEvent):
            if contact is None or parsed.contact is None:  # just created
                return None, {}
            changed = self._update(contact, parsed.contact)
            if not changed:
                outcome.status, outcome.detail = NO_CHANGE, "no field changed"
            outcome.detail = outcome.detail or "changed " + ", ".join(changed)
            return None, {"changed": changed}
        assert contact is not None  # only the creating types get here without one
        kind, name = ("project", event.project) if isinstance(event, AddedToProject) else ("selection", event.selection)
        if not self.crm.add_members(kind, name, [contact.id], self.now):
            outcome.status, outcome.detail = NO_CHANGE, f"already a member of {kind} {name!r}"
        return name, {}

    def _create(self, given: ContactValues) -> None:
        self._write_company(given, given.company_name)
        self.crm.upsert_contacts([given.row()], self.now)

    def _update(self, contact: ContactRecord, given: ContactValues) -> list[str]:
        changed = [k for k, v in given.values.items() if contact.values.get(k) != v]
        changed += [f"custom.{k}" for k, v in given.custom.items() if contact.custom.get(k) != v]
        company = given.company_name or contact.values.get("company")
        if given.company or given.company_custom:
            if not company:
                raise EventRejected(
                    f"contact {contact.email} has no company: give fields.company with the company fields"
                )
            current = self.crm.companies_by_name([company]).get(company) or {"custom": {}}
            changed += [f"company.{k}" for k, v in given.company.items() if current.get(k) != v]
            changed += [f"company.custom.{k}" for k, v in given.company_custom.items() if current["custom"].get(k) != v]
        if changed:
            self._write_company(given, company)
            self.crm.upsert_contacts([given.row()], self.now)
        return changed

    def _write_company(self, given: ContactValues, name: str | None) -> None:
        if name:
            write_companies(self.crm, {name: given})


def emit_event(store: Store, raw: dict[str, Any], now: datetime) -> EventOutcome:
    """Validate and record one event given on the command line."""
    parsed = parse_event(raw, text_values=True)
    with store.transaction() as tx:
        return EventWriter(CrmTx(tx), now, "emit").apply(parsed)


@dataclass
class IngestResult:
    file: str
    recorded: int = 0
    duplicates: int = 0
    no_change: int = 0
    contacts_created: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.recorded + self.duplicates + self.no_change

    def summary(self) -> str:
        return (
            f"ingested {self.total} event(s) from {self.file}: {self.recorded} recorded, "
            f"{self.duplicates} duplicate key(s) skipped, {self.no_change} without effect; "
            f"{self.contacts_created} contact(s) created"
        )


def ingest_events(store: Store, path: Path, now: datetime) -> IngestResult:
    """Record every event of a JSON Lines file in one transaction: any invalid line
    means nothing is ingested (``ImportRejected`` lists every problem)."""
    with open_lines(path) as lines, store.transaction() as tx:
        result = IngestResult(lines.name)
        writer = EventWriter(CrmTx(tx), now, "ingest")
        count = 0
        for text in lines:
            if not text.strip():
                continue
            count += 1
            try:
                outcome = writer.apply(parse_event(_json(text)))
            except EventInvalid as exc:
                result.problems.extend(Problem(lines.name, lines.line, m) for m in exc.messages)
                continue
            except UserError as exc:
                result.problems.append(Problem(lines.name, lines.line, exc.message))
                continue
            result.contacts_created += outcome.contact_created
            if outcome.status == RECORDED:
                result.recorded += 1
            elif outcome.status == DUPLICATE:
                result.duplicates += 1
            else:
                result.no_change += 1
        if count == 0:
            raise InputError(f"{lines.name}: no events (the file is empty)")
        if result.problems:
            raise ImportRejected(lines.name, result.problems, what="ingested")
    return result


def _json(text: str) -> Any:
    def constant(name: str) -> Any:
        raise EventInvalid([f"invalid JSON: {name} is not a number JSON allows"])

    try:
        return json.loads(text, parse_constant=constant)
    except json.JSONDecodeError as exc:
        raise EventInvalid([f"invalid JSON: {exc.msg} (column {exc.colno})"]) from None
    except RecursionError:
        raise EventInvalid(["invalid JSON: nested too deeply"]) from None


__all__ = [
    "EventOutcome",
    "EventRejected",
    "EventWriter",
    "IngestResult",
    "emit_event",
    "ingest_events",
]
