"""Evaluate enrollment filters and split conditions against what we know of a contact.

Comparisons follow the CRM's Find: text compares case-insensitively, a
multi-value field (interests) "equals" a value when it holds it, and a missing
value matches only ``is_not_set`` (and the negative operators).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from reconciler.spec.conditions import (
    AllOf,
    AnyOf,
    Condition,
    FieldCondition,
    FormFieldCondition,
    InProject,
    InSelection,
    LinkClickedCondition,
    Not,
)
from reconciler.state.crm_records import ContactRecord


@dataclass(frozen=True)
class Facts:
    """Everything a condition may ask about one contact."""

    contact: ContactRecord
    company: Mapping[str, Any] | None = None
    selections: frozenset[str] = frozenset()
    projects: frozenset[str] = frozenset()
    clicks: frozenset[tuple[str, str | None]] = frozenset()  # (link, email step or None)
    forms: Mapping[str, list[Mapping[str, Any]]] = field(default_factory=dict)  # form → submissions

    def field(self, name: str) -> Any:
        if name.startswith("company."):
            rest = name[len("company.") :]
            if self.company is None:
                return None
            if rest.startswith("custom."):
                return (self.company.get("custom") or {}).get(rest[len("custom.") :])
            return self.company.get(rest)
        return self.contact.get(name)


def matches(condition: Condition, facts: Facts, *, form: str | None = None) -> bool:
    if isinstance(condition, AllOf):
        return all(matches(c, facts, form=form) for c in condition.all)
    if isinstance(condition, AnyOf):
        return any(matches(c, facts, form=form) for c in condition.any)
    if isinstance(condition, Not):
        return not matches(condition.not_, facts, form=form)
    if isinstance(condition, InSelection):
        return condition.selection in facts.selections
    if isinstance(condition, InProject):
        return condition.project in facts.projects
    if isinstance(condition, LinkClickedCondition):
        if condition.email is None:
            return any(link == condition.link for link, _ in facts.clicks)
        return (condition.link, condition.email) in facts.clicks
    if isinstance(condition, FormFieldCondition):
        submissions = facts.forms.get(form or "", [])
        return any(compare(s.get(condition.form_field), condition.op, condition.value) for s in submissions)
    if isinstance(condition, FieldCondition):
        return compare(facts.field(condition.field), condition.op, condition.value)
    raise TypeError(f"unknown condition {condition!r}")  # pragma: no cover - the models allow no other


def compare(actual: Any, op: str, expected: Any) -> bool:
    if op == "is_set":
        return _is_set(actual)
    if op == "is_not_set":
        return not _is_set(actual)
    negative = op in ("not_equals", "not_contains", "not_in")
    if not _is_set(actual):
        return negative
    if isinstance(actual, list):
        hits = [_compare_one(item, op.removeprefix("not_") if negative else op, expected) for item in actual]
        return not any(hits) if negative else any(hits)
    return _compare_one(actual, op, expected)


def _is_set(value: Any) -> bool:
    return value is not None and value not in ("", [])


def _norm(value: Any) -> Any:
    if isinstance(value, str):
        return value.casefold()
    if isinstance(value, datetime):
        return value.date() if value.tzinfo is None and value.time() == datetime.min.time() else value
    return value


def _compare_one(actual: Any, op: str, expected: Any) -> bool:
    a = _norm(actual)
    if op in ("in", "not_in"):
        found = any(_equal(a, _norm(e)) for e in expected)
        return found if op == "in" else not found
    e = _norm(expected)
    if op == "equals":
        return _equal(a, e)
    if op == "not_equals":
        return not _equal(a, e)
    if op in ("contains", "not_contains", "starts_with", "ends_with"):
        text, part = str(a), str(e).casefold()
        return {
            "contains": part in text,
            "not_contains": part not in text,
            "starts_with": text.startswith(part),
            "ends_with": text.endswith(part),
        }[op]
    ordered = _ordered(a, e)
    if ordered is None:
        return False
    left, right = ordered
    return bool({"gt": left > right, "gte": left >= right, "lt": left < right, "lte": left <= right}[op])


def _equal(a: Any, e: Any) -> bool:
    if isinstance(a, bool) or isinstance(e, bool):
        return bool(a) == bool(e) if isinstance(a, bool) and isinstance(e, bool) else str(a) == str(e).casefold()
    if isinstance(a, (int, float)) and isinstance(e, (int, float)):
        return float(a) == float(e)
    if isinstance(a, (int, float)) or isinstance(e, (int, float)):
        try:
            return float(a) == float(e)
        except (TypeError, ValueError):
            return False
    return bool(a == e)


def _ordered(a: Any, e: Any) -> tuple[Any, Any] | None:
    try:
        if isinstance(a, (date, datetime)) or isinstance(e, (date, datetime)):
            return _as_date(a), _as_date(e)
        return float(a), float(e)
    except (TypeError, ValueError):
        return None


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])
