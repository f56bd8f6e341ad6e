"""Conditions as the executor evaluates them: the CRM's Find semantics."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from pydantic import TypeAdapter

from reconciler.executor.conditions import Facts, compare, matches
from reconciler.spec.conditions import Condition
from reconciler.state.crm_store import ContactRecord

CONTACT = ContactRecord(
    1,
    "a@x.example",
    {
        "first_name": "Åsa",
        "country": "SE",
        "score": 42,
        "interests": ["webinars", "ai"],
        "consent_marketing": True,
        "birth_date": date(1990, 5, 17),
        "title": None,
        "company": "Acme AB",
        "last_name": None,
    },
    {"tier": "gold"},
)
FACTS = Facts(
    contact=CONTACT,
    company={"name": "Acme AB", "employees": 250, "custom": {"segment": "mid"}},
    selections=frozenset({"vip"}),
    projects=frozenset({"q3"}),
    clicks=frozenset({("pricing", "mail-1")}),
    forms={"signup": [{"size": 120, "role": "CTO"}]},
)
condition = TypeAdapter(Condition)


@pytest.mark.parametrize(
    ("actual", "op", "expected", "result"),
    [
        ("SE", "equals", "se", True),
        ("SE", "not_equals", "se", False),
        ("Acme AB", "contains", "acme", True),
        ("Acme AB", "not_contains", "acme", False),
        ("Acme AB", "starts_with", "ac", True),
        ("Acme AB", "ends_with", "ab", True),
        ("SE", "in", ["NO", "se"], True),
        ("SE", "not_in", ["NO"], True),
        (42, "gt", 41, True),
        (42, "gte", 42, True),
        (42, "lt", 42, False),
        (42, "lte", 42.0, True),
        ("42", "equals", 42, True),
        ("x", "equals", 42, False),
        ("x", "gt", 1, False),
        (None, "is_set", None, False),
        ("", "is_not_set", None, True),
        ([], "is_not_set", None, True),
        (None, "equals", "x", False),
        (None, "not_equals", "x", True),
        (None, "not_in", ["x"], True),
        (["webinars", "ai"], "equals", "AI", True),
        (["webinars"], "not_contains", "ai", True),
        (["webinars"], "in", ["ai", "webinars"], True),
        (True, "equals", True, True),
        (True, "equals", False, False),
        (date(1990, 5, 17), "lt", date(2000, 1, 1), True),
        (date(1990, 5, 17), "gte", "1990-05-17", True),
    ],
)
def test_compare(actual: Any, op: str, expected: Any, result: bool) -> None:
    assert compare(actual, op, expected) is result


@pytest.mark.parametrize(
    ("spec", "form", "result"),
    [
        ({"field": "first_name", "value": "åsa"}, None, True),
        ({"field": "custom.tier", "value": "gold"}, None, True),
        ({"field": "company.employees", "op": "gte", "value": 100}, None, True),
        ({"field": "company.custom.segment", "value": "mid"}, None, True),
        ({"field": "full_name", "value": "Åsa"}, None, True),
        ({"selection": "vip"}, None, True),
        ({"selection": "other"}, None, False),
        ({"project": "q3"}, None, True),
        ({"link": "pricing"}, None, True),
        ({"link": "pricing", "email": "mail-1"}, None, True),
        ({"link": "pricing", "email": "mail-2"}, None, False),
        ({"form_field": "size", "op": "gt", "value": 100}, "signup", True),
        ({"form_field": "role", "value": "cto"}, "signup", True),
        ({"form_field": "role", "value": "cto"}, "other", False),
        ({"all": [{"selection": "vip"}, {"field": "country", "value": "SE"}]}, None, True),
        ({"any": [{"selection": "nope"}, {"field": "country", "value": "NO"}]}, None, False),
        ({"not": {"selection": "vip"}}, None, False),
    ],
)
def test_matches(spec: dict[str, Any], form: str | None, result: bool) -> None:
    assert matches(condition.validate_python(spec), FACTS, form=form) is result


def test_company_fields_without_a_company_are_unset() -> None:
    facts = Facts(contact=CONTACT)
    assert matches(condition.validate_python({"field": "company.name", "op": "is_not_set"}), facts)
    assert matches(condition.validate_python({"field": "company.custom.x", "op": "is_not_set"}), facts)
