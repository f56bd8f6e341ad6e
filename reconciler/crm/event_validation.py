"""Incoming CRM events, validated: the shape of every event kind and what it may carry.

Events arrive from outside (``events emit`` on the command line, ``events ingest``
from a JSON Lines file) and are checked here before anything is written: one
pydantic model per kind, unknown keys are errors, contact fields are resolved and
typed, and every problem comes back as one located message. Validation is pure: it
reads no state and writes none (``ingest`` records what passes).
"""

from __future__ import annotations

from dataclasses import dataclass
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

from reconciler.crm.cells import ContactValues, field_value, parse_email, resolve_field
from reconciler.errors import UserError
from reconciler.spec.types import Name

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


__all__ = [
    "CREATES_CONTACT",
    "EVENT_TYPES",
    "FORM_CONTACT_FIELDS",
    "ActivityEvent",
    "AddedToProject",
    "AddedToSelection",
    "ContactEvent",
    "EventIn",
    "EventInvalid",
    "FormSubmitted",
    "LinkClicked",
    "ParsedEvent",
    "SaleEvent",
    "Subject",
    "parse_event",
]
