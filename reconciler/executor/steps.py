"""What each step does to one participant, as a decision: move on, wait, exit, finish.

Handlers read the contact and the flow and stage their CRM effects on the batch
(``Effects``); nothing is written until the batch flushes, in the same transaction
as the participants' moves. Sends (e-mail, SMS, notifications, scripts) become
outbox rows for the dispatcher.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from reconciler.spec.steps import ExitTo

# Sends to the contact: they wait for the flow's sending window (in the executor and again
# in the dispatcher), and one that fails for good fails its participant.
CONTACT_SENDS = frozenset({"send_email", "send_sms"})
_RENDER = SandboxedEnvironment(
    undefined=StrictUndefined, autoescape=False, finalize=lambda value: "" if value is None else value
)


class StepError(Exception):
    """A step cannot be done for this participant (kept as its ``failed`` reason)."""


def render(text: str | None, data: Mapping[str, Any] | Callable[[], Mapping[str, Any]]) -> str | None:
    """``text`` with its merge fields filled in; ``data`` may be a function, called only
    when the text has merge fields (most step texts have none)."""
    if text is None:
        return None
    if "{" not in text:
        return text
    try:
        return _template(text).render(data() if callable(data) else data)
    except TemplateError as exc:
        raise StepError(f"merge field: {exc}") from None


@lru_cache(maxsize=1024)
def _template(text: str) -> Template:
    """Compiled once: a batch renders the same step text for hundreds of participants."""
    return _RENDER.from_string(text)


@dataclass(frozen=True)
class Next:
    """Done with this step: go to ``target`` (None: the following step)."""

    outcome: str = "done"
    target: str | None = None


@dataclass(frozen=True)
class Hold:
    """Stay on this step until ``due`` (None: until an event wakes it)."""

    due: datetime | None
    state: str | None = "waiting"


@dataclass(frozen=True)
class Exit:
    reason: str
    then: ExitTo | None = None


@dataclass(frozen=True)
class Finish:
    handoff: str | None = None  # add to this flow


Decision = Next | Hold | Exit | Finish


@dataclass
class Effects:
    """CRM writes staged by a batch, flushed in bulk."""

    contact_changes: dict[int, dict[str, Any]] = field(default_factory=dict)
    custom_changes: dict[int, dict[str, Any]] = field(default_factory=dict)
    memberships: list[tuple[str, str, int, bool]] = field(default_factory=list)  # kind, name, contact, add?
    activities: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {"follow_ups": [], "requests": [], "sales": []}
    )
    outbox: list[dict[str, Any]] = field(default_factory=list)
    events: list[tuple[str, str, str | None, dict[str, Any]]] = field(
        default_factory=list
    )  # type, email, subject, data
    owner_counts: Counter[str] = field(default_factory=Counter)
    request_counts: Counter[str] = field(default_factory=Counter)
    busy: dict[int, list[tuple[datetime, datetime]]] = field(default_factory=dict)


def apply_update(current: Any, action: str, value: Any) -> Any:
    """The new value of a field after a bulk-update style action."""
    if action == "set":
        return value
    if action == "clear":
        return [] if isinstance(current, list) else None
    if action in ("increase", "decrease"):
        try:
            base = float(current) if current not in (None, "") else 0.0
        except (TypeError, ValueError):
            raise StepError(f"cannot {action} a field whose value {current!r} is not a number") from None
        result = base + float(value) if action == "increase" else base - float(value)
        return int(result) if result.is_integer() and not isinstance(value, float) else result
    items = list(current or [])
    values = value if isinstance(value, list) else [value]
    if action == "add":
        return items + [v for v in values if v not in items]
    if action == "remove":
        return [v for v in items if v not in values]
    raise StepError(f"unknown action {action!r}")  # pragma: no cover - the models allow no other
