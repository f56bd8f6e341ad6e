"""What every step shares: an id, a display name, the steps it replaces, and (for the
steps that run in order) ``next``; plus the small settings several families use.

Split from ``steps`` so each family module (``send_steps``, ``crm_steps``,
``control_steps``) builds on one base, and ``steps`` only gathers them into the
``Step`` union the spec validates against.
"""

from __future__ import annotations

import re

from pydantic import Field

from reconciler.spec.base import SpecModel
from reconciler.spec.types import Label, Name

ROLES = ("our_contact", "our_support_manager")
_SMS_SENDER_RE = re.compile(r"^(?:[A-Za-z0-9 ]{1,11}|\+?[0-9]{3,15})$")


def check_sms_sender(value: str | None) -> str | None:
    if value is not None and not _SMS_SENDER_RE.match(value):
        raise ValueError(f"invalid SMS sender {value!r}: up to 11 letters/digits, or a phone number")
    return value


class ExitTo(SpecModel):
    """Where a participant goes after leaving the flow early (both optional)."""

    add_to_flow: Name | None = None
    add_to_selection: Label | None = None


class StepBase(SpecModel):
    id: Name
    name: str | None = Field(default=None, max_length=200, description="display title")
    replaces: list[Name] = Field(
        default_factory=list,
        description="ids of removed steps whose participants move here when the edit is applied",
    )


class LinearStep(StepBase):
    next: Name | None = Field(default=None, description="step to go to next; the following step when absent")
