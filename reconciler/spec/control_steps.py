"""Steps that steer the flow: waits, waiting for an action, splits into branches, and
the finish. They decide where a participant goes next and when; they change nothing
in the CRM themselves.

One family of ``steps`` (DESIGN.md section 4: flow control, CRM, sends).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import Field, WithJsonSchema, model_validator

from reconciler.spec.base import SpecModel
from reconciler.spec.conditions import Condition, condition_kinds
from reconciler.spec.step_base import ExitTo, LinearStep, StepBase
from reconciler.spec.types import Duration, Label, Name

EVERYONE_ELSE = "everyone_else"


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


class Wait(LinearStep):
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


class WaitForAction(LinearStep):
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


class Split(StepBase):
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
                raise ValueError(
                    f"branch {branch.name!r} needs a 'when' condition "
                    f"(the catch-all branch, which needs none, is called {EVERYONE_ELSE})"
                )
            wrong = condition_kinds(branch.when) - allowed
            if wrong:
                raise ValueError(
                    f"branch {branch.name!r}: a split based on {self.based_on} cannot test {', '.join(sorted(wrong))}"
                )
        return self


class FlowHandoff(SpecModel):
    add_to_flow: Name


class Finish(StepBase):
    type: Literal["finish"]
    on_success: FlowHandoff | None = None
    on_no_success: FlowHandoff | None = None
