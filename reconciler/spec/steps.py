"""Step models: one class per step type of DESIGN.md section 2.

Settings follow the vendor's step settings (see ../shared/reference/vendor-flows.md).
Checks that need only the step itself live here as validators; checks that need
the whole flow (targets of ``next``, start readiness, files) live in ``checks``.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal, Union

from pydantic import Field, WithJsonSchema, field_validator, model_validator

from reconciler.spec.base import SpecModel
from reconciler.spec.conditions import Condition, Scalar, check_field_name, condition_kinds
from reconciler.spec.fields import ACTIONS_BY_TYPE, READ_ONLY_FIELDS, FieldType, field_type
from reconciler.spec.types import Duration, Label, Name, Text, check_email

ROLES = ("our_contact", "our_support_manager")
EVERYONE_ELSE = "everyone_else"
_SCRIPT_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
_PHONE_RE = re.compile(r"^\+?[0-9][0-9 ()-]{4,19}$")
_SMS_SENDER_RE = re.compile(r"^(?:[A-Za-z0-9 ]{1,11}|\+?[0-9]{3,15})$")


def check_sms_sender(value: str | None) -> str | None:
    if value is not None and not _SMS_SENDER_RE.match(value):
        raise ValueError(f"invalid SMS sender {value!r}: up to 11 letters/digits, or a phone number")
    return value


class ExitTo(SpecModel):
    """Where a participant goes after leaving the flow early (both optional)."""

    add_to_flow: Name | None = None
    add_to_selection: Label | None = None


class _Step(SpecModel):
    id: Name
    name: str | None = Field(default=None, max_length=200, description="display title")
    replaces: list[Name] = Field(
        default_factory=list,
        description="ids of removed steps whose participants move here when the edit is applied",
    )


class _Linear(_Step):
    next: Name | None = Field(default=None, description="step to go to next; the following step when absent")


# --- Send message ---------------------------------------------------------------


class SendEmail(_Linear):
    type: Literal["send_email"]
    subject: Text
    content: str = Field(min_length=1, description="HTML file, relative to the spec file")
    text_content: str | None = Field(default=None, description="plain-text alternative file")
    attachments: list[str] = Field(default_factory=list, description="files, 25 MB in total at most")


class SendSms(_Linear):
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


# --- Update participant -------------------------------------------------------------


class FieldUpdate(SpecModel):
    field: str
    action: str
    value: Scalar | list[Scalar] | None = None

    @model_validator(mode="after")
    def _action_fits_field(self) -> FieldUpdate:
        check_field_name(self.field)
        kind = field_type(self.field)
        assert kind is not None
        if self.field in READ_ONLY_FIELDS:
            raise ValueError(f"field {self.field!r} cannot be updated by a flow")
        allowed = ACTIONS_BY_TYPE[kind]
        if self.action not in allowed:
            raise ValueError(
                f"action {self.action!r} is not valid for {kind.value} field {self.field!r}; "
                f"use one of {', '.join(sorted(allowed))}"
            )
        if self.action == "clear":
            if self.value is not None:
                raise ValueError("action 'clear' takes no value")
            return self
        if self.value is None:
            raise ValueError(f"action {self.action!r} needs a value")
        _check_update_value(kind, self.action, self.value)
        return self


def _check_update_value(kind: FieldType, action: str, value: Any) -> None:
    if action in ("increase", "decrease") or kind is FieldType.NUMBER:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"action {action!r} needs a number")
    elif kind is FieldType.BOOLEAN:
        if not isinstance(value, bool):
            raise ValueError("a yes/no field needs true or false")
    elif kind is FieldType.MULTI:
        if isinstance(value, list) and not value:
            raise ValueError("give at least one value")
    elif isinstance(value, list):
        raise ValueError(f"a {kind.value} field takes one value, not a list")


class UpdateContact(_Linear):
    type: Literal["update_contact"]
    updates: list[FieldUpdate] = Field(min_length=1)


class _Membership(_Linear):
    selection: Label | None = None
    project: Label | None = None

    @model_validator(mode="after")
    def _one_target(self) -> _Membership:
        if self.selection is None and self.project is None:
            raise ValueError("name a selection, a project, or both")
        return self


class AddToSelection(_Membership):
    type: Literal["add_to_selection"]


class RemoveFromSelection(_Membership):
    type: Literal["remove_from_selection"]


class DistributeToOwner(_Linear):
    type: Literal["distribute_to_owner"]
    associates: list[Label] = Field(default_factory=list, description="round-robin, evenly")
    group: Label | None = None
    only_if_unassigned: bool = True
    fallback: Label | None = None
    notify: bool = True

    @model_validator(mode="after")
    def _someone(self) -> DistributeToOwner:
        if not self.associates and self.group is None:
            raise ValueError("name associates or a group to distribute to")
        if len(set(self.associates)) != len(self.associates):
            raise ValueError("associates are listed more than once")
        return self


# --- Create activity ------------------------------------------------------------------


class FirstAvailable(SpecModel):
    """The first free slot in the assignee's diary (a meeting)."""

    after: Duration | None = None
    working_days: bool = False
    length: Duration = timedelta(hours=1)


class FollowUpDue(SpecModel):
    in_: Duration | None = Field(default=None, alias="in", description="to-do due after this long")
    working_days: bool = False
    first_available: FirstAvailable | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> FollowUpDue:
        if (self.in_ is None) == (self.first_available is None):
            raise ValueError("give exactly one of 'in' (a due date) or 'first_available' (a meeting slot)")
        if self.first_available is not None and self.working_days:
            raise ValueError("working_days belongs inside first_available here")
        return self


def _assignee(value: str) -> str:
    if not value.strip():
        raise ValueError("name an associate, our_contact or our_support_manager")
    return value


class CreateFollowUp(_Linear):
    type: Literal["create_follow_up"]
    title: Text
    follow_up_type: Label
    project: Label | None = None
    due: FollowUpDue
    assign_to: str = Field(default="our_contact", description="our_contact, our_support_manager or an associate")
    agenda: str | None = None

    _assign = field_validator("assign_to")(_assignee)


class CreateRequest(_Linear):
    type: Literal["create_request"]
    title: Text
    request_type: Label
    status: Label = "open"
    category: Label | None = None
    priority: Label | None = None
    owner: str = Field(default="auto", description="auto, unassigned, our_contact, our_support_manager or an associate")
    message: str | None = None

    _owner = field_validator("owner")(_assignee)


class SaleDate(SpecModel):
    in_: Duration = Field(alias="in")
    working_days: bool = False


class CreateSale(_Linear):
    type: Literal["create_sale"]
    title: Text
    sale_type: Label
    stage: Label | None = None
    amount: Decimal | None = Field(default=None, ge=0, max_digits=15, decimal_places=2)
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    description: str | None = None
    project: Label | None = None
    date: SaleDate | None = Field(default=None, description="estimated by the sale type when absent")
    owner: str = "our_contact"

    _owner = field_validator("owner")(_assignee)


# --- Internal actions --------------------------------------------------------------


class RunScript(_Linear):
    type: Literal["run_script"]
    script: str = Field(pattern=_SCRIPT_NAME, description="a script the operator registered")


class NotifyEmail(_Linear):
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


class NotifySms(_Linear):
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


LocalDateTime = Annotated[
    datetime,
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$",
            "description": "ISO date and time, e.g. 2026-12-01T09:00 (flow time zone) or 2026-12-01T09:00+01:00",
        }
    ),
]

# --- Flow control --------------------------------------------------------------------


class Wait(_Linear):
    type: Literal["wait"]
    duration: Duration | None = None
    until: LocalDateTime | None = Field(
        default=None, description="local time in the flow's time zone, or with an offset"
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Wait:
        if (self.duration is None) == (self.until is None):
            raise ValueError("give exactly one of 'duration' or 'until'")
        return self


class AwaitedAction(SpecModel):
    form_submitted: Label | None = None
    link_clicked: Label | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> AwaitedAction:
        if (self.form_submitted is None) == (self.link_clicked is None):
            raise ValueError("give exactly one of 'form_submitted' or 'link_clicked'")
        return self


class WaitForAction(_Linear):
    type: Literal["wait_for_action"]
    actions: list[AwaitedAction] = Field(min_length=1)
    timeout: Duration | Literal["never"] = Field(
        default=timedelta(days=7),
        description="maximum waiting time; 'never' waits forever",
    )
    on_timeout: Literal["continue", "exit"] = "continue"
    after_exit: ExitTo | None = None

    @model_validator(mode="after")
    def _exit_settings(self) -> WaitForAction:
        if self.on_timeout == "exit" and self.timeout == "never":
            raise ValueError("on_timeout: exit needs a timeout")
        if self.after_exit is not None and self.on_timeout != "exit":
            raise ValueError("after_exit needs on_timeout: exit")
        return self


SplitBasis = Literal["contact", "form_submitted", "form_data", "link_clicked", "project", "selection"]
# Which condition kinds each basis allows in its branches.
_BASIS_KINDS: dict[str, frozenset[str]] = {
    "contact": frozenset({"field"}),
    "form_data": frozenset({"form_field"}),
    "link_clicked": frozenset({"link"}),
    "project": frozenset({"project"}),
    "selection": frozenset({"selection"}),
    "form_submitted": frozenset(),
}


class Branch(SpecModel):
    name: str = Field(min_length=1, max_length=100)
    when: Condition | None = None
    next: Name | None = None
    exit: bool = False
    after_exit: ExitTo | None = None

    @model_validator(mode="after")
    def _exit_settings(self) -> Branch:
        if self.exit and self.next is not None:
            raise ValueError("a branch either exits or has a next step, not both")
        if self.after_exit is not None and not self.exit:
            raise ValueError("after_exit needs exit: true")
        return self


class Split(_Step):
    type: Literal["split"]
    based_on: SplitBasis = "contact"
    form: Label | None = Field(default=None, description="for form_submitted and form_data")
    branches: list[Branch] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _everyone_else_always_exists(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("branches"), list):
            names = [b.get("name") if isinstance(b, dict) else getattr(b, "name", None) for b in data["branches"]]
            if EVERYONE_ELSE not in names:
                data = {**data, "branches": [*data["branches"], {"name": EVERYONE_ELSE}]}
        return data

    @model_validator(mode="after")
    def _branches(self) -> Split:
        names = [b.name for b in self.branches]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"branch names must be unique: {', '.join(duplicates)}")
        if names[-1] != EVERYONE_ELSE:
            raise ValueError("the everyone_else branch must come last")
        if self.branches[-1].when is not None:
            raise ValueError("the everyone_else branch takes no 'when'")
        needs_form = self.based_on in ("form_submitted", "form_data")
        if needs_form and self.form is None:
            raise ValueError(f"a split based on {self.based_on} needs 'form'")
        if not needs_form and self.form is not None:
            raise ValueError("'form' is only for splits based on form_submitted or form_data")
        others = self.branches[:-1]
        if self.based_on == "form_submitted":
            if len(others) != 1 or others[0].when is not None:
                raise ValueError(
                    "a form_submitted split has exactly one branch (submitted), without 'when', before everyone_else"
                )
            return self
        allowed = _BASIS_KINDS[self.based_on]
        for branch in others:
            if branch.when is None:
                raise ValueError(f"branch {branch.name!r} needs a 'when' condition")
            wrong = condition_kinds(branch.when) - allowed
            if wrong:
                raise ValueError(
                    f"branch {branch.name!r}: a split based on {self.based_on} cannot test {', '.join(sorted(wrong))}"
                )
        return self


class FlowHandoff(SpecModel):
    add_to_flow: Name


class Finish(_Step):
    type: Literal["finish"]
    on_success: FlowHandoff | None = None
    on_no_success: FlowHandoff | None = None


Step = Annotated[
    Union[
        SendEmail,
        SendSms,
        UpdateContact,
        AddToSelection,
        RemoveFromSelection,
        DistributeToOwner,
        CreateFollowUp,
        CreateRequest,
        CreateSale,
        RunScript,
        NotifyEmail,
        NotifySms,
        Wait,
        WaitForAction,
        Split,
        Finish,
    ],
    Field(discriminator="type"),
]

STEP_TYPES: tuple[str, ...] = (
    "send_email",
    "send_sms",
    "update_contact",
    "add_to_selection",
    "remove_from_selection",
    "distribute_to_owner",
    "create_follow_up",
    "create_request",
    "create_sale",
    "run_script",
    "notify_email",
    "notify_sms",
    "wait",
    "wait_for_action",
    "split",
    "finish",
)
WAIT_TYPES = frozenset({"wait", "wait_for_action"})
