"""The Flow document: ``apiVersion: reconciler/v1``, ``kind: Flow``.

These frozen models are the desired state. They hold no behaviour beyond checks
on their own fields; everything that spans the flow is in ``checks``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from reconciler.spec.base import SpecModel
from reconciler.spec.conditions import Condition
from reconciler.spec.events import Criterion, Trigger
from reconciler.spec.steps import ExitTo, Step, check_sms_sender
from reconciler.spec.types import EmailAddress, Label, Name, TimeOfDay, Timezone
from reconciler.statuses import FlowStatus

API_VERSION = "reconciler/v1"


class Metadata(SpecModel):
    name: Name = Field(description="the flow's identity; renaming is delete + create")
    description: str | None = Field(default=None, max_length=2000)
    labels: dict[Name, str] = Field(default_factory=dict)


def _address_shorthand(value: Any) -> Any:
    if isinstance(value, str):
        return {"use": "sender"} if value == "sender" else {"address": value}
    return value


class _Address(SpecModel):
    use: str = "address"
    name: str | None = Field(default=None, max_length=200)
    address: EmailAddress | None = None
    fallback_address: EmailAddress | None = Field(
        default=None, description="used when the contact has no such associate"
    )

    def required_address(self) -> str | None:
        """The address that must exist for sending; None when it is missing."""
        use = self.use
        if use == "address":
            return self.address
        if use == "sender":
            return "sender"
        return self.fallback_address

    @model_validator(mode="after")
    def _consistent(self) -> _Address:
        use = self.use
        if use != "address" and self.address is not None:
            raise ValueError(f"'address' is only for use: address (this one uses {use})")
        if use in ("address", "sender") and self.fallback_address is not None:
            raise ValueError("'fallback_address' is only for use: our_contact or our_support_manager")
        return self


class Sender(_Address):
    """From: a fixed address, or the contact's associate with a fallback address."""

    use: Literal["address", "our_contact", "our_support_manager"] = "address"


class ReplyTo(_Address):
    """Reply-to: as the sender, or ``sender`` to reuse the From address."""

    use: Literal["address", "sender", "our_contact", "our_support_manager"] = "address"


class Analytics(SpecModel):
    source: str = Field(min_length=1)
    campaign: str = Field(min_length=1)


class EmailSettings(SpecModel):
    sender: Annotated[
        Sender | None,
        BeforeValidator(_address_shorthand, json_schema_input_type=Sender | EmailAddress | None),
    ] = None
    reply_to: Annotated[
        ReplyTo | None,
        BeforeValidator(_address_shorthand, json_schema_input_type=ReplyTo | EmailAddress | Literal["sender"] | None),
    ] = None
    subscription: Label | None = Field(default=None, description="subscription type the contact must have")
    analytics: Analytics | None = None


class SmsSettings(SpecModel):
    sender: str | None = None
    default_region: str | None = Field(
        default=None, pattern=r"^[A-Z]{2}$", description="ISO country for numbers without +country code"
    )

    _sender = field_validator("sender")(check_sms_sender)


class SendingWindow(SpecModel):
    """Sends (e-mail and SMS) only inside this window, in the flow's time zone."""

    days: Literal["mon-fri", "mon-sun"] = "mon-fri"
    from_: TimeOfDay = Field(alias="from")
    to: TimeOfDay

    @model_validator(mode="after")
    def _ordered(self) -> SendingWindow:
        if self.from_ >= self.to:
            raise ValueError(f"the window must end after it starts ({self.from_} → {self.to})")
        return self


class Settings(SpecModel):
    email: EmailSettings | None = None
    sms: SmsSettings | None = None
    sending_window: SendingWindow | None = None
    remove_from_flows: list[Name] = Field(
        default_factory=list, description="enrolling here drops the contact out of these flows"
    )


class Enrollment(SpecModel):
    once_only: bool = Field(default=True, description="a contact can start this flow only once")
    filter: Condition | None = Field(default=None, description="checked once, at enrollment")
    exclusion_selection: Label | None = Field(default=None, description="contacts in it never enroll, and leave")


class SuccessCriteria(SpecModel):
    criteria: list[Criterion] = Field(min_length=1)
    finish_immediately: bool = Field(default=True, description="move to finish as soon as one is met")


class FlowSpec(SpecModel):
    status: FlowStatus = FlowStatus.NOT_RUNNING
    owner: Label | None = None
    timezone: Timezone | None = None
    update_policy: Literal["block", "pause_and_resume"] = Field(
        default="block", description="how an edit of a running flow is applied"
    )
    settings: Settings = Field(default_factory=Settings)
    triggers: list[Trigger] = Field(default_factory=list)
    enrollment: Enrollment = Field(default_factory=Enrollment)
    success_criteria: SuccessCriteria | None = None
    steps: list[Step] = Field(min_length=1)


class Flow(SpecModel):
    api_version: Literal["reconciler/v1"] = Field(alias="apiVersion")
    kind: Literal["Flow"]
    metadata: Metadata
    spec: FlowSpec

    @property
    def name(self) -> str:
        return self.metadata.name

    def to_document(self) -> dict[str, Any]:
        """The spec as plain data in its own spelling, defaults left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_defaults=True) | {
            "apiVersion": self.api_version,
            "kind": self.kind,
        }


__all__ = ["API_VERSION", "ExitTo", "Flow", "FlowSpec", "FlowStatus"]
