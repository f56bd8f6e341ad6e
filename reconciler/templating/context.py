"""The values merge fields see: one builder for e-mail, SMS and CRM texts alike.

One rule for empty values everywhere: a field that is missing, None, blank text or
an empty list has *no value*. Such a field is simply left out of ``Fields``, so the
template sees it as undefined: false in ``{% if %}``, replaced by ``| default(…)``,
and an error naming it (``contact.first_name has no value``) when printed — never
an empty greeting. ``Fields`` knows its own dotted name for that message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["Fields", "MergeContext", "has_no_value", "merge_context"]


class Fields(dict[str, Any]):
    """The fields of one merge variable (``contact``), without those that have no
    value; nested mappings (``contact.custom``) are ``Fields`` too. ``label`` is the
    dotted name (``contact.custom``); templates cannot reach it (only field names)."""

    __slots__ = ("label",)

    def __init__(self, label: str, values: Mapping[str, Any]) -> None:
        super().__init__()
        self.label = label
        for key, value in values.items():
            if isinstance(value, Mapping):
                self[key] = Fields(f"{label}.{key}", value)
            elif not has_no_value(value):
                self[key] = value


def has_no_value(value: Any) -> bool:
    """Missing, None, blank text and an empty list are all "no value"."""
    return (
        value is None
        or (isinstance(value, str) and not value.strip())
        or (isinstance(value, list | tuple) and not value)
    )


class MergeContext(dict[str, Any]):
    """What a template is rendered with; made by ``merge_context`` only."""

    __slots__ = ()


def merge_context(
    *,
    contact: Mapping[str, Any],
    company: Mapping[str, Any] | None = None,
    flow: Mapping[str, Any] | None = None,
    unsubscribe_url: str | None = None,
) -> MergeContext:
    """The merge variables for one participant. ``contact`` is
    ``ContactRecord.as_template_data()``; ``company`` is what
    ``reconciler.executor.facts.company_view`` gives (default: just the contact's
    company name); ``flow`` has ``name``, ``description`` and ``owner``;
    ``unsubscribe_url`` is given for e-mail to the contact only."""
    context = MergeContext(
        contact=Fields("contact", contact),
        company=Fields("company", company if company is not None else {"name": contact.get("company")}),
        flow=Fields("flow", flow or {}),
    )
    if unsubscribe_url:
        context["unsubscribe_url"] = unsubscribe_url
    return context
