"""The delivery interface between the outbox dispatcher and the outside world."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol


@dataclass(frozen=True)
class Address:
    address: str
    name: str | None = None


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    mime_type: str = "application/octet-stream"


@dataclass(frozen=True)
class EmailMessage:
    """A rendered e-mail, ready to send. ``message_id`` is stable per outbox row, so a
    resend after an unknown outcome can be recognised by the receiver."""

    to: Address
    sender: Address
    subject: str
    html: str
    text: str
    message_id: str
    reply_to: Address | None = None
    attachments: tuple[Attachment, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()  # e.g. List-Unsubscribe


@dataclass(frozen=True)
class SmsMessage:
    to: str  # E.164
    sender: str
    text: str
    reference: str  # the outbox idempotency key, passed to the provider
    segments: int
    encoding: Literal["GSM-7", "UCS-2"]


@dataclass(frozen=True)
class Receipt:
    """What the provider said when it accepted the message."""

    provider_id: str | None = None
    detail: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


class DeliveryError(Exception):
    """A send did not happen. ``detail`` must never contain secrets."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class TemporaryDeliveryError(DeliveryError):
    """Try again later (connection refused, 4xx SMTP reply, HTTP 429/5xx); ``retry_after``
    is the provider's hint in seconds, when it gave one."""

    def __init__(self, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class TransportUnreachable(TemporaryDeliveryError):
    """No connection to the server or provider at all (refused, no route, DNS, timeout while
    connecting): nothing was handed over. ``reconcile run --once`` exits 3 when a transport
    was unreachable for every message of the run."""


class PermanentDeliveryError(DeliveryError):
    """Never try again (5xx SMTP reply for the recipient, HTTP 4xx, invalid number)."""


class OutcomeUnknown(DeliveryError):
    """The provider may have the message (timeout after sending): never resent blindly."""


class EmailTransport(Protocol):
    def send(self, message: EmailMessage) -> Receipt: ...

    def close(self) -> None: ...


class SmsTransport(Protocol):
    def send(self, message: SmsMessage) -> Receipt: ...

    def close(self) -> None: ...
