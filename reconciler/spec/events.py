"""Triggers and success criteria: the CRM events a flow listens to.

Both lists name the same kinds of event (a form submitted, a link clicked, a
contact added to a selection …), so they share the models; each list allows only
the kinds the vendor allows there.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, field_validator

from reconciler.spec.base import SpecModel
from reconciler.spec.conditions import check_field_name
from reconciler.spec.types import Label


class ContactCreated(SpecModel):
    """A contact was created by any source except import."""

    type: Literal["contact_created"]


class ContactUpdated(SpecModel):
    """A contact was updated (not by import or bulk update); ``fields`` narrows it."""

    type: Literal["contact_updated"]
    fields: list[str] = Field(default_factory=list, description="fire only when one of these changed")

    @field_validator("fields")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        for name in value:
            check_field_name(name)
        return value


class SaleCreated(SpecModel):
    type: Literal["sale_created"]


class SaleSold(SpecModel):
    type: Literal["sale_sold"]


class SaleLost(SpecModel):
    type: Literal["sale_lost"]


class RequestCreated(SpecModel):
    type: Literal["request_created"]


class FollowUpCreated(SpecModel):
    type: Literal["follow_up_created"]


class Manual(SpecModel):
    """Enrolled by hand (``reconcile participants add``) only."""

    type: Literal["manual"]


class AddedToProject(SpecModel):
    type: Literal["added_to_project"]
    project: Label


class AddedToSelection(SpecModel):
    """Ours: the CRM has no such trigger, imports need it."""

    type: Literal["added_to_selection"]
    selection: Label


class FormSubmitted(SpecModel):
    type: Literal["form_submitted"]
    form: Label


class LinkClicked(SpecModel):
    type: Literal["link_clicked"]
    link: Label


Trigger = Annotated[
    Union[
        ContactCreated,
        ContactUpdated,
        SaleCreated,
        SaleSold,
        SaleLost,
        AddedToProject,
        RequestCreated,
        FormSubmitted,
        LinkClicked,
        Manual,
        AddedToSelection,
    ],
    Field(discriminator="type"),
]

Criterion = Annotated[
    Union[
        ContactUpdated,
        SaleCreated,
        FollowUpCreated,
        RequestCreated,
        AddedToSelection,
        AddedToProject,
        FormSubmitted,
        LinkClicked,
    ],
    Field(discriminator="type"),
]
