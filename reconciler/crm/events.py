"""CRM events from outside: ``events emit``, ``events ingest`` and ``selections add``.

Events are what flows listen to (triggers, success criteria, ``wait_for_action``).
Here they are validated (one pydantic model per kind, unknown keys are errors),
their CRM side effects are applied (a form submission creates its contact, an
``added_to_selection`` event adds the membership, ``contact_updated`` writes the
fields and records which ones changed) and they are appended to the event log in
the same transaction. Unlike an import, these fire triggers.

An idempotency ``key`` makes an event safe to send twice: an event whose key was
seen before is skipped with all its side effects. Nothing here prints.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    FiniteFloat,
    JsonValue,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)

from reconciler.crm.cells import ContactValues, field_value, parse_email, resolve_field, write_companies
from reconciler.crm.csv_input import ImportRejected, InputError, Problem, open_lines
from reconciler.errors import UserError
from reconciler.spec.types import Name
from reconciler.state import Store
from reconciler.state.crm_store import ContactRecord, CrmTx, NewEvent

EVENT_TYPES = (
    "form_submitted",
    "link_clicked",
    "sale_created",
    "sale_sold",
    "sale_lost",
    "request_created",
    "follow_up_created",
    "contact_created",
    "contact_updated",
    "added_to_project",
    "added_to_selection",
)
CREATES_CONTACT = frozenset({"form_submitted", "link_clicked", "contact_created"})
# Form fields that fill in a contact the submission creates (never blocked, score …).
FORM_CONTACT_FIELDS = frozenset(
    {
        "first_name",
        "last_name",
        "title",
        "mobile",
        "phone",
        "company",
        "country",
        "city",
        "language",
        "consent_marketing",
        "interests",
        "subscriptions",
    }
)
RECORDED, DUPLICATE, NO_CHANGE = "recorded", "duplicate", "no_change"


def _printable(value: str) -> str:
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError("must not contain control characters")
    return value


Subject = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), AfterValidator(_printable)
]
Key = Annotated[str, StringConstraints(min_length=1, max_length=200), AfterValidator(_printable)]
Email = Annotated[str, AfterValidator(parse_email)]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Event(_Model):
    email: Email
    occurred_at: AwareDatetime | None = None
    key: Key | None = None


class FormSubmitted(_Event):
    type: Literal["form_submitted"]
    form: Subject
    fields: dict[str, JsonValue] = Field(default_factory=dict, description="the submitted form data")


class LinkFields(_Model):
    email_step: Name | None = Field(default=None, description="id of the send_email step whose link was clicked")


class LinkClicked(_Event):
    type: Literal["link_clicked"]
    link: Subject
    fields: LinkFields = LinkFields()


class SaleFields(_Model):
    title: Title | None = None
    amount: FiniteFloat | None = None


class SaleEvent(_Event):
    type: Literal["sale_created", "sale_sold", "sale_lost"]
    fields: SaleFields = SaleFields()


class ActivityFields(_Model):
    title: Title | None = None


class ActivityEvent(_Event):
    type: Literal["request_created", "follow_up_created"]
    fields: ActivityFields = ActivityFields()


class ContactEvent(_Event):
    type: Literal["contact_created", "contact_updated"]
    fields: dict[str, JsonValue] = Field(default_factory=dict, description="contact field values")


class AddedToProject(_Event):
    type: Literal["added_to_project"]
    project: Subject


class AddedToSelection(_Event):
    type: Literal["added_to_selection"]
    selection: Subject


EventIn = Annotated[
    Union[
        FormSubmitted,
        LinkClicked,
        SaleEvent,
        ActivityEvent,
        ContactEvent,
        AddedToProject,
        AddedToSelection,
    ],
    Field(discriminator="type"),
]
_ADAPTER: TypeAdapter[EventIn] = TypeAdapter(EventIn)


class EventInvalid(UserError):
    """The event itself is malformed; ``messages`` has one line per problem."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("invalid event: " + "; ".join(messages))
        self.messages = messages


class EventRejected(UserError):
    """A well-formed event the CRM cannot take (an unknown contact, a contact that exists)."""


@dataclass(frozen=True)
class ParsedEvent:
    event: EventIn
    contact: ContactValues | None = None  # contact fields it writes (contact events, new form contacts)


def parse_event(raw: Any, *, text_values: bool = False) -> ParsedEvent:
    """Validate one event given as a mapping (a JSON line, or the options of ``emit``).
    ``text_values``: field values are command-line text, so custom ones are typed."""
    if not isinstance(raw, dict):
        raise EventInvalid([f"expected a JSON object, got {type(raw).__name__}"])
    kind = raw.get("type")
    if kind is None:
        raise EventInvalid([f"type: missing; one of {', '.join(EVENT_TYPES)}"])
    if not isinstance(kind, str) or kind not in EVENT_TYPES:
        raise EventInvalid([f"type: unknown event type {kind!r}; one of {', '.join(EVENT_TYPES)}"])
    try:
        event = _ADAPTER.validate_python(raw)
    except ValidationError as exc:
        raise EventInvalid(_messages(exc, kind)) from None
    contact = None
    if isinstance(event, ContactEvent):
        if event.type == "contact_updated" and not event.fields:
            raise EventInvalid(["fields: contact_updated needs at least one contact field"])
        contact = _contact_values(event.email, event.fields, text_values)
    elif isinstance(event, FormSubmitted):
        given = {k: v for k, v in event.fields.items() if k.lower() in FORM_CONTACT_FIELDS}
        contact = _contact_values(event.email, given, text_values)
    return ParsedEvent(event, contact)


def _contact_values(email: str, fields: dict[str, Any], text: bool) -> ContactValues:
    contact = ContactValues(email)
    messages: list[str] = []
    for key, value in fields.items():
        try:
            ref = resolve_field(key)
            if ref.target == "contact" and ref.name == "email":
                raise ValueError("the e-mail address is the event's email, not a field")
            contact.set(ref, field_value(ref, value, text=text))
        except ValueError as exc:
            messages.append(f"fields.{key}: {exc}")
    if messages:
        raise EventInvalid(messages)
    return contact


def _messages(exc: ValidationError, kind: str) -> list[str]:
    found = []
    for error in exc.errors(include_url=False):
        loc = [str(part) for part in error["loc"]]
        if loc and loc[0] == kind:
            loc = loc[1:]
        where = ".".join(loc)
        code = error["type"]
        if code == "missing":
            message = f"required for {kind}"
        elif code == "extra_forbidden":
            message = f"not allowed for {kind}"
        elif code == "timezone_aware":
            message = "needs a UTC offset, e.g. 2026-11-25T10:00:00Z"
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
        found.append(f"{where}: {message}" if where else message)
    return found


# --- applying events ----------------------------------------------------------------------


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


# --- selections ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SelectionAdd:
    name: str
    added: list[str]
    already: int

    def summary(self) -> str:
        return f"added {len(self.added)} contact(s) to {self.name} ({self.already} already members)"


_SUBJECT: TypeAdapter[str] = TypeAdapter(Subject)


def add_to_selection(store: Store, name: str, emails: Sequence[str], now: datetime) -> SelectionAdd:
    """Add existing contacts to a static selection (created if needed); one
    ``added_to_selection`` event per new member fires the flows' triggers."""
    try:
        name = _SUBJECT.validate_python(name)
    except ValidationError as exc:
        raise UserError(f"invalid selection name {name!r}: {exc.errors()[0]['msg']}") from None
    wanted: list[str] = []
    invalid: list[str] = []
    for email in emails:
        try:
            wanted.append(parse_email(email))
        except ValueError:
            invalid.append(email)
    if invalid:
        raise UserError(f"invalid e-mail address(es): {', '.join(invalid)}; nothing was added to {name}")
    wanted = list(dict.fromkeys(wanted))
    with store.transaction() as tx:
        crm = CrmTx(tx)
        found = crm.contacts_by_email(wanted)
        unknown = [e for e in wanted if e not in found]
        if unknown:
            raise UserError(f"no contact with e-mail {', '.join(unknown)}; nothing was added to {name}")
        new = set(crm.add_members("selection", name, [found[e].id for e in wanted], now))
        added = [e for e in wanted if found[e].id in new]
        crm.append_events([NewEvent("added_to_selection", e, now, subject=name, source="crm") for e in added])
    return SelectionAdd(name, added, len(wanted) - len(added))


__all__ = [
    "CREATES_CONTACT",
    "EVENT_TYPES",
    "EventInvalid",
    "EventOutcome",
    "EventRejected",
    "EventWriter",
    "IngestResult",
    "ParsedEvent",
    "SelectionAdd",
    "add_to_selection",
    "emit_event",
    "ingest_events",
    "parse_event",
]
