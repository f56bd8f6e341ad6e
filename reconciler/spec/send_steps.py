"""Steps that send: e-mail and SMS to the contact, notifications to colleagues, and
operator scripts. Each becomes an outbox row the dispatcher delivers; the
participant moves on without waiting for the delivery.

One family of ``steps`` (DESIGN.md section 4: flow control, CRM, sends).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from reconciler.spec.step_base import ROLES, ExitTo, LinearStep, check_sms_sender
from reconciler.spec.types import Text, check_email

_SCRIPT_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
_PHONE_RE = re.compile(r"^\+?[0-9][0-9 ()-]{4,19}$")


class SendEmail(LinearStep):
    type: Literal["send_email"]
    subject: Text
    content: str = Field(min_length=1, description="HTML file, relative to the spec file")
    text_content: str | None = Field(default=None, description="plain-text alternative file")
    attachments: list[str] = Field(default_factory=list, description="files, 25 MB in total at most")


class SendSms(LinearStep):
    type: Literal["send_sms"]
    text: Text
    sender: str | None = Field(default=None, description="defaults to settings.sms.sender")
    on_missing_mobile: Literal["skip", "exit"] = "skip"
    after_exit: ExitTo | None = None

    _sender = field_validator("sender")(check_sms_sender)

    @model_validator(mode="after")
    def _exit_settings(self) -> SendSms:
        if self.after_exit is not None and self.on_missing_mobile != "exit":
            raise ValueError("after_exit needs on_missing_mobile: exit")
        return self


class RunScript(LinearStep):
    type: Literal["run_script"]
    script: str = Field(pattern=_SCRIPT_NAME, description="a script the operator registered")


class NotifyEmail(LinearStep):
    type: Literal["notify_email"]
    to: str = Field(description="our_contact, our_support_manager or an e-mail address")
    subject: Text
    message: Text

    @field_validator("to")
    @classmethod
    def _to(cls, value: str) -> str:
        if value in ROLES:
            return value
        return check_email(value)


class NotifySms(LinearStep):
    type: Literal["notify_sms"]
    to: str = Field(description="our_contact, our_support_manager or a phone number")
    text: Text
    sender: str | None = None

    _sender = field_validator("sender")(check_sms_sender)

    @field_validator("to")
    @classmethod
    def _to(cls, value: str) -> str:
        if value not in ROLES and not _PHONE_RE.match(value):
            raise ValueError(f"{value!r} is neither our_contact, our_support_manager nor a phone number")
        return value
