"""Every step type: a valid example and the invalid settings it must refuse."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from reconciler.spec.models import Flow
from reconciler.spec.steps import STEP_TYPES
from tests.conftest import flow_doc

VALID: dict[str, list[dict[str, Any]]] = {
    "send_email": [
        {"subject": "Hi {{ contact.first_name }}", "content": "c.html"},
        {"subject": "Hi", "content": "c.html", "text_content": "c.txt", "attachments": ["a.pdf"], "next": "done"},
    ],
    "send_sms": [
        {"text": "Hi"},
        {"text": "Hi", "sender": "ACME", "on_missing_mobile": "exit", "after_exit": {"add_to_selection": "no-mobile"}},
        {"text": "Hi", "sender": "+46701234567"},
    ],
    "update_contact": [
        {"updates": [{"field": "category", "action": "set", "value": "lead"}]},
        {"updates": [{"field": "score", "action": "increase", "value": 10}, {"field": "title", "action": "clear"}]},
        {"updates": [{"field": "interests", "action": "add", "value": ["webinars"]}]},
        {"updates": [{"field": "consent_marketing", "action": "set", "value": True}]},
        {"updates": [{"field": "custom.tier", "action": "set", "value": "gold"}]},
        {"updates": [{"field": "company.category", "action": "set", "value": "customer"}]},
    ],
    "add_to_selection": [{"selection": "hot"}, {"project": "q3"}, {"selection": "hot", "project": "q3"}],
    "remove_from_selection": [{"selection": "cold"}, {"project": "q3"}],
    "distribute_to_owner": [
        {"associates": ["anna", "bo"]},
        {"group": "sales", "only_if_unassigned": False, "fallback": "anna", "notify": False},
    ],
    "create_follow_up": [
        {"title": "Call", "follow_up_type": "phone", "due": {"in": "2d"}},
        {
            "title": "Meet",
            "follow_up_type": "meeting",
            "due": {"first_available": {"after": "3d", "working_days": True}},
            "assign_to": "our_support_manager",
            "agenda": "About {{ contact.company }}",
            "project": "q3",
        },
        {"title": "Call", "follow_up_type": "phone", "due": {"in": "1d", "working_days": True}, "assign_to": "anna"},
    ],
    "create_request": [
        {"title": "Demo", "request_type": "sales"},
        {
            "title": "Demo",
            "request_type": "sales",
            "status": "open",
            "category": "demo",
            "priority": "high",
            "owner": "unassigned",
            "message": "For {{ contact.email }}",
        },
    ],
    "create_sale": [
        {"title": "Lead", "sale_type": "new-business"},
        {
            "title": "Lead",
            "sale_type": "new",
            "stage": "lead",
            "amount": 1000,
            "currency": "SEK",
            "date": {"in": "2w", "working_days": True},
            "owner": "anna",
            "project": "q3",
            "description": "x",
        },
    ],
    "run_script": [{"script": "score-lead"}, {"script": "acme.score_v2"}],
    "notify_email": [
        {"to": "sales@acme.example", "subject": "New lead", "message": "{{ contact.email }}"},
        {"to": "our_contact", "subject": "New lead", "message": "x"},
    ],
    "notify_sms": [
        {"to": "our_contact", "text": "New lead"},
        {"to": "+46 70 123 45 67", "text": "x", "sender": "ACME"},
    ],
    "wait": [
        {"duration": "2d"},
        {"duration": "1w2d3h30m"},
        {"until": "2026-12-01T09:00:00"},
        {"until": "2026-12-01T09:00:00+01:00"},
    ],
    "wait_for_action": [
        {"actions": [{"link_clicked": "agenda"}]},
        {
            "actions": [{"form_submitted": "signup"}, {"link_clicked": "agenda"}],
            "timeout": "3d",
            "on_timeout": "exit",
            "after_exit": {"add_to_flow": "other"},
        },
        {"actions": [{"link_clicked": "agenda"}], "timeout": "never"},
    ],
    "split": [
        {"branches": [{"name": "se", "when": {"field": "country", "op": "equals", "value": "SE"}, "next": "done"}]},
        {
            "branches": [
                {
                    "name": "se",
                    "when": {
                        "all": [{"field": "country", "value": "SE"}, {"not": {"field": "category", "op": "is_set"}}]
                    },
                },
                {"name": "everyone_else", "exit": True, "after_exit": {"add_to_selection": "rest"}},
            ]
        },
        {"based_on": "selection", "branches": [{"name": "vip", "when": {"selection": "vip"}}]},
        {"based_on": "project", "branches": [{"name": "p", "when": {"project": "q3"}}]},
        {"based_on": "link_clicked", "branches": [{"name": "l", "when": {"link": "agenda"}}]},
        {"based_on": "form_submitted", "form": "signup", "branches": [{"name": "submitted"}]},
        {
            "based_on": "form_data",
            "form": "signup",
            "branches": [{"name": "big", "when": {"form_field": "size", "op": "gt", "value": 100}}],
        },
    ],
    "finish": [{}, {"on_success": {"add_to_flow": "onboarding"}, "on_no_success": {"add_to_flow": "nurture"}}],
}

INVALID: dict[str, list[tuple[dict[str, Any], str]]] = {
    "send_email": [
        ({"content": "c.html"}, "missing required key 'subject'"),
        ({"subject": "", "content": "c.html"}, "at least 1 character"),
        ({"subject": "x", "content": "c.html", "sender": "x"}, "unknown key 'sender'"),
    ],
    "send_sms": [
        ({"text": "x", "on_missing_mobile": "drop"}, "'skip' or 'exit'"),
        ({"text": "x", "after_exit": {"add_to_flow": "x"}}, "after_exit needs on_missing_mobile: exit"),
        ({"text": "x", "sender": "WAY-TOO-LONG-SENDER"}, "invalid SMS sender"),
    ],
    "update_contact": [
        ({"updates": []}, "at least 1 item"),
        ({"updates": [{"field": "nope", "action": "set", "value": 1}]}, "unknown field 'nope'"),
        ({"updates": [{"field": "title", "action": "increase", "value": 1}]}, "not valid for text field"),
        ({"updates": [{"field": "score", "action": "set", "value": "ten"}]}, "needs a number"),
        ({"updates": [{"field": "blocked", "action": "set", "value": "yes"}]}, "true or false"),
        ({"updates": [{"field": "title", "action": "clear", "value": "x"}]}, "takes no value"),
        ({"updates": [{"field": "title", "action": "set"}]}, "needs a value"),
        ({"updates": [{"field": "email", "action": "set", "value": "a@b.example"}]}, "cannot be updated"),
        ({"updates": [{"field": "category", "action": "set", "value": ["a", "b"]}]}, "one value"),
    ],
    "add_to_selection": [({}, "name a selection, a project, or both")],
    "remove_from_selection": [({"selection": ""}, "at least 1 character")],
    "distribute_to_owner": [({}, "name associates or a group"), ({"associates": ["anna", "anna"]}, "more than once")],
    "create_follow_up": [
        ({"title": "x", "follow_up_type": "p"}, "missing required key 'due'"),
        ({"title": "x", "follow_up_type": "p", "due": {}}, "exactly one of 'in'"),
        ({"title": "x", "follow_up_type": "p", "due": {"in": "0d"}}, "duration must be positive"),
        ({"title": "x", "follow_up_type": "p", "due": {"in": "1d"}, "assign_to": " "}, "name an associate"),
    ],
    "create_request": [
        ({"title": "x"}, "missing required key 'request_type'"),
        ({"title": "x", "request_type": "s", "owner": ""}, "name an associate"),
    ],
    "create_sale": [
        ({"title": "x", "sale_type": "s", "amount": -1}, "greater than or equal to 0"),
        ({"title": "x", "sale_type": "s", "currency": "kr"}, "should match pattern"),
    ],
    "run_script": [({"script": "rm -rf /"}, "should match pattern"), ({}, "missing required key 'script'")],
    "notify_email": [
        ({"to": "not-an-address", "subject": "s", "message": "m"}, "invalid e-mail address"),
        ({"to": "a@b.example", "subject": "s"}, "missing required key 'message'"),
    ],
    "notify_sms": [({"to": "somebody", "text": "x"}, "neither our_contact")],
    "wait": [
        ({}, "exactly one of 'duration' or 'until'"),
        ({"duration": "2d", "until": "2026-12-01T09:00:00"}, "exactly one"),
        ({"duration": "2 days"}, "invalid duration"),
        ({"duration": "20000d"}, "at most 10 years"),
    ],
    "wait_for_action": [
        ({"actions": []}, "at least 1 item"),
        ({"actions": [{}]}, "exactly one of 'form_submitted' or 'link_clicked'"),
        ({"actions": [{"link_clicked": "a"}], "timeout": "never", "on_timeout": "exit"}, "needs a timeout"),
        ({"actions": [{"link_clicked": "a"}], "after_exit": {}}, "after_exit needs on_timeout: exit"),
    ],
    "split": [
        ({"branches": [{"name": "a"}]}, "needs a 'when'"),
        ({"branches": [{"name": "a", "when": {"selection": "x"}}]}, "cannot test selection"),
        (
            {"branches": [{"name": "everyone_else"}, {"name": "a", "when": {"field": "city", "value": "x"}}]},
            "must come last",
        ),
        (
            {
                "branches": [
                    {"name": "a", "when": {"field": "city", "value": "x"}},
                    {"name": "a", "when": {"field": "city", "value": "y"}},
                ]
            },
            "unique",
        ),
        ({"branches": [{"name": "everyone_else", "when": {"field": "city", "value": "x"}}]}, "takes no 'when'"),
        ({"branches": [{"name": "a", "when": {"bogus": 1}}]}, "a condition needs one of the keys"),
        ({"branches": [{"name": "a", "when": {"field": "city", "op": "in", "value": "x"}}]}, "non-empty list"),
        ({"branches": [{"name": "a", "when": {"field": "city", "op": "is_set", "value": "x"}}]}, "takes no value"),
        ({"branches": [{"name": "a", "when": {"field": "city", "op": "gt", "value": "x"}}]}, "number or a date"),
        ({"branches": [{"name": "a", "when": {"field": "city"}}]}, "needs a value"),
        ({"branches": [{"name": "a", "when": {"field": "city", "value": ["x"]}}]}, "not a list"),
        (
            {"branches": [{"name": "a", "exit": True, "next": "done", "when": {"field": "city", "value": "x"}}]},
            "either exits or has a next step",
        ),
        ({"branches": [{"name": "everyone_else", "after_exit": {}}]}, "after_exit needs exit: true"),
        (
            {"based_on": "form_data", "branches": [{"name": "a", "when": {"form_field": "x", "value": 1}}]},
            "needs 'form'",
        ),
        ({"form": "f", "branches": [{"name": "a", "when": {"field": "city", "value": "x"}}]}, "'form' is only"),
        ({"based_on": "form_submitted", "form": "f", "branches": [{"name": "a"}, {"name": "b"}]}, "exactly one branch"),
    ],
    "finish": [({"next": "x"}, "unknown key 'next'"), ({"on_success": {}}, "missing required key 'add_to_flow'")],
}


def _flow(step_type: str, settings: dict[str, Any]) -> dict[str, Any]:
    return flow_doc(steps=[{"id": "s", "type": step_type, **settings}, {"id": "done", "type": "finish"}])


def _messages(exc: ValidationError) -> str:
    from reconciler.spec.loader import explain

    return "\n".join(explain(e)[1] for e in exc.errors())


def test_tables_cover_every_step_type() -> None:
    assert set(VALID) == set(STEP_TYPES) == set(INVALID)


@pytest.mark.parametrize(("step_type", "settings"), [(t, s) for t, cases in VALID.items() for s in cases])
def test_valid_step_settings(step_type: str, settings: dict[str, Any]) -> None:
    flow = Flow.model_validate(_flow(step_type, settings))
    assert flow.spec.steps[0].type == step_type


@pytest.mark.parametrize(
    ("step_type", "settings", "message"), [(t, s, m) for t, cases in INVALID.items() for s, m in cases]
)
def test_invalid_step_settings(step_type: str, settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Flow.model_validate(_flow(step_type, settings))
    assert message in _messages(caught.value)


def test_split_always_has_everyone_else_last() -> None:
    flow = Flow.model_validate(_flow("split", VALID["split"][0]))
    split = flow.spec.steps[0]
    assert [b.name for b in split.branches] == ["se", "everyone_else"]  # type: ignore[union-attr]


def test_durations_serialise_in_spec_spelling() -> None:
    flow = Flow.model_validate(_flow("wait", {"duration": "1w2d3h30m"}))
    assert flow.to_document()["spec"]["steps"][0]["duration"] == "1w2d3h30m"
    flow = Flow.model_validate(_flow("wait", {"duration": "48h"}))
    assert flow.to_document()["spec"]["steps"][0]["duration"] == "2d"


def test_unknown_step_type_names_the_choices() -> None:
    with pytest.raises(ValidationError) as caught:
        Flow.model_validate(_flow("send_fax", {}))
    assert "unknown type 'send_fax'" in _messages(caught.value)
    assert "send_email" in _messages(caught.value)
