"""The vocabulary between the batch and the step handlers: decisions, effects, context.

A handler looks at one participant on one step through a read-only ``StepContext`` and
returns a ``Decision`` — go on (``Next``), stay (``Hold``), drop out (``Exit``) or end
(``Finish``) — carrying the ``effects`` the step has on the world as data: fields to
set, memberships, activities, CRM events, outbox messages. A handler does no I/O and
changes nothing itself; the batch applies the effects (so the next step of the same
contact sees them) and writes them all in the transaction that claimed the batch.
That is what keeps a step's meaning in one small function, testable with plain data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, tzinfo
from enum import StrEnum
from typing import Any, Literal, NamedTuple, Protocol

from reconciler.executor.conditions import Facts
from reconciler.messages import OutboxMessage
from reconciler.spec.graph import FlowGraph
from reconciler.spec.models import Flow
from reconciler.spec.steps import ExitTo, Split
from reconciler.state.crm_records import AssociateRecord, ContactRecord


class StepError(Exception):
    """A step cannot be done for this participant (kept as its ``failed`` reason)."""


class Outcome(StrEnum):
    """How a visit of a step ended, as ``step_runs`` records it (``kind: detail``)."""

    DONE = "done"
    WAITED = "waited"
    ACTION_TAKEN = "action taken"
    TIMED_OUT = "timed out"
    BRANCH = "branch"
    SKIPPED = "skipped"
    QUEUED = "queued"
    EXIT = "exit"
    FINISH = "finish"
    FAILED = "failed"
    LEFT = "left"  # moved off the step before it was done (success criterion met)

    def text(self, detail: str | None = None) -> str:
        value: str = self._value_  # not .value: a descriptor call, on every logged step
        return value if not detail else f"{value}: {detail}"


# --- effects: what a step does to the world, applied and written by the batch -----------
# Named tuples, as the decisions below: immutable, and made several times per participant
# step (a frozen dataclass costs an object.__setattr__ per field to build).


class SetFields(NamedTuple):
    """New values of the contact's own fields (``custom``: the whole new custom dict)."""

    values: Mapping[str, Any]
    custom: Mapping[str, Any] | None = None


class SetCompanyField(NamedTuple):
    company: str
    column: str  # a company column, or "custom" with the whole new dict
    value: Any


class Membership(NamedTuple):
    kind: Literal["selection", "project"]
    name: str
    add: bool


class Activity(NamedTuple):
    """A new CRM row: a follow-up, request or sale."""

    table: Literal["follow_ups", "requests", "sales"]
    row: Mapping[str, Any]


class Booking(NamedTuple):
    """A meeting slot taken in an associate's diary."""

    associate_id: int
    starts: datetime
    ends: datetime
    title: str


class Assigned(NamedTuple):
    """One more contact (``owner``) or open request (``request``) for an associate,
    so the next round-robin choice in the batch sees it."""

    counter: Literal["owner", "request"]
    associate: str


class Emit(NamedTuple):
    """A CRM event about the contact (other flows may react to it)."""

    type: str
    subject: str | None = None
    data: Mapping[str, Any] | None = None


class Send(NamedTuple):
    message: OutboxMessage


Effect = SetFields | SetCompanyField | Membership | Activity | Booking | Assigned | Emit | Send
NO_EFFECTS: tuple[Effect, ...] = ()


# --- decisions --------------------------------------------------------------------------


class Next(NamedTuple):
    """Done with this step: go to ``target`` (None: the step's ``next`` in the graph)."""

    outcome: Outcome = Outcome.DONE
    detail: str | None = None
    target: str | None = None
    effects: tuple[Effect, ...] = NO_EFFECTS


class Hold(NamedTuple):
    """Stay on this step until ``due`` (None: until an event wakes it)."""

    due: datetime | None
    state: str | None = "waiting"
    effects: tuple[Effect, ...] = NO_EFFECTS


class Exit(NamedTuple):
    """Drop out of the flow with a reason; ``then`` adds the contact to a flow or selection."""

    reason: str
    then: ExitTo | None = None
    effects: tuple[Effect, ...] = NO_EFFECTS


class Finish(NamedTuple):
    """The flow is done for this participant; ``handoff``: add the contact to that flow."""

    handoff: str | None = None
    effects: tuple[Effect, ...] = NO_EFFECTS


Decision = Next | Hold | Exit | Finish


# --- what a handler may read ------------------------------------------------------------


class ParticipantView(Protocol):
    """What a handler may read of the participant (``state.records.Participant``, which the batch moves)."""

    @property
    def id(self) -> int: ...

    @property
    def step_state(self) -> str | None: ...

    @property
    def success_at(self) -> datetime | None: ...


class StepContext(Protocol):
    """The world as one step of one participant sees it: read-only, with this batch's
    earlier effects already in (a contact updated two steps ago reads updated)."""

    @property
    def now(self) -> datetime: ...

    @property
    def flow(self) -> Flow: ...

    @property
    def graph(self) -> FlowGraph: ...

    @property
    def zone(self) -> tzinfo: ...

    @property
    def contact(self) -> ContactRecord:
        """The contact as it is now (this batch's changes included)."""

    def render(self, text: str | None) -> str | None:
        """``text`` with its merge fields filled in for this contact (``StepError`` if it cannot be)."""

    def split_facts(self, step: Split) -> Facts:
        """What the split's conditions ask about the contact (memberships, clicks, forms, company)."""

    def member(self, kind: str, name: str) -> bool: ...

    def submitted(self, form: str | None) -> bool:
        """Has the contact submitted this form (ever)?"""

    def company(self, name: str) -> Mapping[str, Any] | None: ...

    def associates(self) -> Sequence[AssociateRecord]: ...

    def counts(self, counter: Literal["owner", "request"], names: Sequence[str]) -> Mapping[str, int]:
        """Contacts owned / open requests per associate, with this batch's assignments."""

    def busy(self, associate_id: int) -> Sequence[tuple[datetime, datetime]]:
        """The associate's diary from now on, with this batch's bookings."""


Handler = Callable[[ParticipantView, Any, StepContext], Decision]
