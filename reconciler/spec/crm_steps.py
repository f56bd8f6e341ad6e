"""Steps that change the CRM: contact fields, selection and project memberships,
owners, and the follow-ups, requests and sales a flow creates. Their effects commit
in the same transaction as the participant's move.

One family of ``steps`` (DESIGN.md section 4: flow control, CRM, sends).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from reconciler.spec.base import SpecModel
from reconciler.spec.conditions import Scalar, check_field_name
from reconciler.spec.fields import ACTIONS_BY_TYPE, READ_ONLY_FIELDS, FieldType, field_type
from reconciler.spec.step_base import LinearStep
from reconciler.spec.types import Duration, Label, Text


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


class UpdateContact(LinearStep):
    type: Literal["update_contact"]
    updates: list[FieldUpdate] = Field(min_length=1)


class _Membership(LinearStep):
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


class DistributeToOwner(LinearStep):
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


class CreateFollowUp(LinearStep):
    type: Literal["create_follow_up"]
    title: Text
    follow_up_type: Label
    project: Label | None = None
    due: FollowUpDue
    assign_to: str = Field(default="our_contact", description="our_contact, our_support_manager or an associate")
    agenda: str | None = None

    _assign = field_validator("assign_to")(_assignee)


class CreateRequest(LinearStep):
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


class CreateSale(LinearStep):
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
