"""Conditions: enrollment filters and split branches.

A condition is a small tree: field comparisons, membership of a selection or a
project, a clicked link, a form field, combined with ``all`` / ``any`` / ``not``.
Which key a mapping has decides which kind it is, so users write
``{field: country, op: equals, value: SE}`` or ``{selection: customers}`` with no
extra ``type`` key.
"""

from __future__ import annotations

import difflib
from datetime import date, datetime
from typing import Annotated, Any, Literal, Union

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from reconciler.spec.base import SpecModel
from reconciler.spec.fields import field_type, known_field_names
from reconciler.spec.types import Label, Name

Scalar = Union[bool, int, float, str, date, datetime]

Operator = Literal[
    "equals",
    "not_equals",
    "contains",
    "not_contains",
    "starts_with",
    "ends_with",
    "in",
    "not_in",
    "gt",
    "gte",
    "lt",
    "lte",
    "is_set",
    "is_not_set",
]
_NO_VALUE = frozenset({"is_set", "is_not_set"})
_LIST_VALUE = frozenset({"in", "not_in"})
_ORDERED = frozenset({"gt", "gte", "lt", "lte"})


def check_field_name(name: str) -> str:
    if field_type(name) is None:
        known = known_field_names()
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known fields are {', '.join(known)}"
        raise ValueError(f"unknown field {name!r}; {hint} (custom fields are written custom.<name>)")
    return name


class _Comparison(SpecModel):
    op: Operator = "equals"
    value: Scalar | list[Scalar] | None = None

    @model_validator(mode="after")
    def _value_fits_operator(self) -> _Comparison:
        if self.op in _NO_VALUE:
            if self.value is not None:
                raise ValueError(f"operator {self.op!r} takes no value")
        elif self.value is None:
            raise ValueError(f"operator {self.op!r} needs a value")
        elif self.op in _LIST_VALUE:
            if not isinstance(self.value, list) or not self.value:
                raise ValueError(f"operator {self.op!r} needs a non-empty list of values")
        elif isinstance(self.value, list):
            raise ValueError(f"operator {self.op!r} takes one value, not a list (use 'in')")
        elif self.op in _ORDERED and (isinstance(self.value, (bool, str))):
            raise ValueError(f"operator {self.op!r} needs a number or a date")
        return self


class FieldCondition(_Comparison):
    """Compare a contact or company field."""

    field: str

    _field = field_validator("field")(check_field_name)


class FormFieldCondition(_Comparison):
    """Compare a field of the submitted form (splits based on form data)."""

    form_field: Label


class InSelection(SpecModel):
    selection: Label


class InProject(SpecModel):
    project: Label


class LinkClickedCondition(SpecModel):
    link: Label
    email: Name | None = Field(default=None, description="id of the send_email step; any e-mail when absent")


class AllOf(SpecModel):
    all: list[Condition] = Field(min_length=1)


class AnyOf(SpecModel):
    any: list[Condition] = Field(min_length=1)


class Not(SpecModel):
    not_: Condition = Field(alias="not")


_KINDS = ("field", "form_field", "selection", "project", "link", "all", "any", "not")


def _condition_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        for key in _KINDS:
            if key in value:
                return key
        return None
    for key, cls in _CLASSES.items():
        if isinstance(value, cls):
            return key
    return None


Condition = Annotated[
    Union[
        Annotated[FieldCondition, Tag("field")],
        Annotated[FormFieldCondition, Tag("form_field")],
        Annotated[InSelection, Tag("selection")],
        Annotated[InProject, Tag("project")],
        Annotated[LinkClickedCondition, Tag("link")],
        Annotated[AllOf, Tag("all")],
        Annotated[AnyOf, Tag("any")],
        Annotated[Not, Tag("not")],
    ],
    Discriminator(
        _condition_kind,
        custom_error_type="condition_kind",
        custom_error_message="a condition needs one of the keys " + ", ".join(_KINDS),
    ),
]

_CLASSES: dict[str, type[SpecModel]] = {
    "field": FieldCondition,
    "form_field": FormFieldCondition,
    "selection": InSelection,
    "project": InProject,
    "link": LinkClickedCondition,
    "all": AllOf,
    "any": AnyOf,
    "not": Not,
}

for _cls in (AllOf, AnyOf, Not):
    _cls.model_rebuild()


def condition_kinds(condition: Condition) -> set[str]:
    """The leaf kinds used anywhere in a condition tree."""
    if isinstance(condition, AllOf):
        return set().union(*(condition_kinds(c) for c in condition.all))
    if isinstance(condition, AnyOf):
        return set().union(*(condition_kinds(c) for c in condition.any))
    if isinstance(condition, Not):
        return condition_kinds(condition.not_)
    kind = _condition_kind(condition)
    return {kind} if kind else set()
