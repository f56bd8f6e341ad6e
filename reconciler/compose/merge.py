"""Merge fields as composing a message uses them: a flow's variables, and template
errors turned into the participant's permanent delivery error.

A ``RenderError`` (a field without a value, a construct the language refuses, a
render over its budget) is about this participant's message only, so it becomes a
``PermanentDeliveryError`` that says where: ``merge field in subject: contact.first_name
has no value``; a broken budget speaks for itself: ``subject is longer than 998 characters``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from reconciler.actions.delivery import PermanentDeliveryError
from reconciler.spec.models import Flow
from reconciler.templating import (
    Budget,
    BudgetExceeded,
    MergeContext,
    MergeTemplate,
    Names,
    RenderError,
    compile_template,
    merge_context,
    render,
)

__all__ = ["compiled", "flow_fields", "participant_context", "rendered"]


def flow_fields(flow: Flow) -> dict[str, Any]:
    """What ``flow.*`` merge fields see."""
    return {"name": flow.name, "description": flow.metadata.description, "owner": flow.spec.owner}


def participant_context(
    *,
    flow: Flow,
    contact: Mapping[str, Any],
    company: Mapping[str, Any] | None = None,
    unsubscribe_url: str | None = None,
) -> MergeContext:
    """``merge_context`` for one participant of ``flow``."""
    return merge_context(contact=contact, company=company, flow=flow_fields(flow), unsubscribe_url=unsubscribe_url)


def compiled(source: str, names: Names, *, html: bool, where: str) -> MergeTemplate:
    try:
        return compile_template(source, names, html=html)
    except RenderError as exc:
        raise PermanentDeliveryError(f"merge field in {where}: {exc.message}") from None


def rendered(
    template: MergeTemplate,
    context: MergeContext,
    budget: Budget,
    *,
    where: str,
    on_value: Callable[[Any], Any] | None = None,
) -> str:
    try:
        return render(template, context, budget, on_value=on_value)
    except BudgetExceeded as exc:
        raise PermanentDeliveryError(exc.message) from None
    except RenderError as exc:
        raise PermanentDeliveryError(f"merge field in {where}: {exc.message}") from None
