"""Typed outbox messages: what the executor decided to send, as the dispatcher reads it back.

The outbox stores a message as JSON (``payload``) beside its ``kind``. This module is
the one place that says what each kind carries: the executor's send handlers build
these, ``to_payload`` stores them, and the dispatcher turns a stored row back into one
with ``parse_message`` — a row that does not fit (an old or hand-edited database) is a
``MessageInvalid`` for that row alone, never a crash of the dispatcher.

Texts are templates (merge fields are filled in by the dispatcher, per contact, from
the revision the message was queued under); ``to`` is already resolved.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar


class MessageInvalid(ValueError):
    """A stored outbox payload that is not a message of its kind."""


@dataclass(frozen=True, slots=True)
class EmailSend:
    """A marketing e-mail to the contact: subject template, content files of the revision."""

    kind: ClassVar[str] = "send_email"
    to: str
    subject: str
    content: str
    text_content: str | None = None
    attachments: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SmsSend:
    """A marketing SMS to the contact's (normalized) mobile number."""

    kind: ClassVar[str] = "send_sms"
    to: str
    text: str
    sender: str | None = None


@dataclass(frozen=True, slots=True)
class EmailNotification:
    """A plain e-mail to a colleague (no content files, no List-Unsubscribe)."""

    kind: ClassVar[str] = "notify_email"
    to: str
    subject: str
    message: str


@dataclass(frozen=True, slots=True)
class SmsNotification:
    """An SMS to a colleague."""

    kind: ClassVar[str] = "notify_sms"
    to: str
    text: str
    sender: str | None = None


@dataclass(frozen=True, slots=True)
class ScriptRun:
    """An operator-registered script, run for the contact."""

    kind: ClassVar[str] = "run_script"
    script: str


OutboxMessage = EmailSend | SmsSend | EmailNotification | SmsNotification | ScriptRun
MESSAGE_TYPES: dict[str, type[OutboxMessage]] = {
    cls.kind: cls for cls in (EmailSend, SmsSend, EmailNotification, SmsNotification, ScriptRun)
}
# Sends to the contact: they wait for the flow's sending window (in the executor and again
# in the dispatcher), and one that fails for good fails its participant.
CONTACT_SENDS = frozenset({EmailSend.kind, SmsSend.kind})


def to_payload(message: OutboxMessage) -> dict[str, Any]:
    payload = asdict(message)
    if isinstance(message, EmailSend):
        payload["attachments"] = list(message.attachments)
    return payload


def parse_message(kind: str, payload: Mapping[str, Any]) -> OutboxMessage:
    """The message a stored row holds; ``MessageInvalid`` names what does not fit."""
    cls = MESSAGE_TYPES.get(kind)
    if cls is None:
        raise MessageInvalid(f"unknown outbox message kind {kind!r}")
    if not isinstance(payload, Mapping):
        raise MessageInvalid(f"the {kind} payload is not an object")
    known = {f.name: f for f in fields(cls)}
    extra = sorted(set(payload) - set(known))
    if extra:
        raise MessageInvalid(f"the {kind} payload has unknown keys: {', '.join(extra)}")
    values: dict[str, Any] = {}
    for name, spec in known.items():
        value = payload.get(name)
        optional = "None" in str(spec.type) or name == "attachments"
        if value is None:
            if not optional:
                raise MessageInvalid(f"the {kind} payload has no {name!r}")
            continue
        if name == "attachments":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise MessageInvalid(f"the {kind} payload's attachments are not a list of file names")
            value = tuple(value)
        elif not isinstance(value, str):
            raise MessageInvalid(f"the {kind} payload's {name!r} is not a string")
        values[name] = value
    return cls(**values)
