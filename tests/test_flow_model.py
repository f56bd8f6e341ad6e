"""Flow-level settings, triggers, enrollment and success criteria."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from reconciler.spec.loader import explain
from reconciler.spec.models import Flow, FlowStatus
from tests.conftest import flow_doc

TRIGGERS = [
    {"type": "contact_created"},
    {"type": "contact_updated"},
    {"type": "contact_updated", "fields": ["category"]},
    {"type": "sale_created"},
    {"type": "sale_sold"},
    {"type": "sale_lost"},
    {"type": "added_to_project", "project": "q3"},
    {"type": "request_created"},
    {"type": "form_submitted", "form": "signup"},
    {"type": "link_clicked", "link": "agenda"},
    {"type": "manual"},
    {"type": "added_to_selection", "selection": "webinar"},
]


def _error(doc: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        Flow.model_validate(doc)
    return "\n".join(explain(e)[1] for e in caught.value.errors())


def test_every_trigger_type() -> None:
    flow = Flow.model_validate(flow_doc(triggers=TRIGGERS))
    assert [t.type for t in flow.spec.triggers] == [t["type"] for t in TRIGGERS]


@pytest.mark.parametrize(
    ("triggers", "message"),
    [
        ([{"type": "form_submitted"}], "missing required key 'form'"),
        ([{"type": "contact_updated", "fields": ["nope"]}], "unknown field 'nope'"),
        ([{"type": "sms_received"}], "unknown type 'sms_received'"),
        ([{"form": "x"}], "missing required key 'type'"),
        ([{"type": "manual", "form": "x"}], "unknown key 'form'"),
    ],
)
def test_bad_triggers(triggers: list[dict[str, Any]], message: str) -> None:
    assert message in _error(flow_doc(triggers=triggers))


def test_defaults() -> None:
    flow = Flow.model_validate(flow_doc())
    assert flow.spec.status is FlowStatus.NOT_RUNNING
    assert flow.spec.enrollment.once_only is True
    assert flow.spec.update_policy == "block"


def test_full_settings() -> None:
    flow = Flow.model_validate(
        flow_doc(
            status="running",
            timezone="Europe/Stockholm",
            owner="anna",
            settings={
                "email": {
                    "sender": {"name": "Acme", "address": "News@Acme.example"},
                    "reply_to": "sender",
                    "subscription": "newsletter",
                    "analytics": {"source": "flow", "campaign": "w26"},
                },
                "sms": {"sender": "ACME", "default_region": "SE"},
                "sending_window": {"days": "mon-fri", "from": "08:00", "to": "17:00"},
                "remove_from_flows": ["old-nurture"],
            },
            enrollment={
                "once_only": False,
                "exclusion_selection": "dnc",
                "filter": {"any": [{"field": "country", "op": "in", "value": ["SE", "NO"]}, {"selection": "vip"}]},
            },
            success_criteria={
                "criteria": [{"type": "added_to_selection", "selection": "customers"}, {"type": "follow_up_created"}],
                "finish_immediately": False,
            },
        )
    )
    email = flow.spec.settings.email
    assert email is not None and email.sender is not None and email.reply_to is not None
    assert email.sender.address == "news@acme.example"  # normalised by email-validator
    assert email.reply_to.required_address() == "sender"
    assert flow.spec.settings.sending_window is not None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"timezone": "Mars/Base"}, "unknown time zone"),
        ({"status": "stopped"}, "'not_running', 'running' or 'paused'"),
        ({"settings": {"email": {"sender": "not an address"}}}, "invalid e-mail address"),
        ({"settings": {"email": {"sender": {"use": "our_contact", "address": "a@b.example"}}}}, "'address' is only"),
        (
            {"settings": {"email": {"reply_to": {"use": "sender", "fallback_address": "a@b.example"}}}},
            "'fallback_address' is only",
        ),
        ({"settings": {"sending_window": {"from": "17:00", "to": "08:00"}}}, "must end after it starts"),
        ({"settings": {"sending_window": {"from": "8am", "to": "17:00"}}}, "use HH:MM"),
        ({"settings": {"sms": {"default_region": "sweden"}}}, "should match pattern"),
        ({"settings": {"remove_from_flows": ["Bad Name"]}}, "should match pattern"),
        ({"enrollment": {"filter": {"field": "nope", "value": 1}}}, "unknown field 'nope'"),
        ({"success_criteria": {"criteria": []}}, "at least 1 item"),
        ({"success_criteria": {"criteria": [{"type": "manual"}]}}, "unknown type 'manual'"),
        ({"steps": []}, "at least 1 item"),
        ({"update_policy": "yolo"}, "'block' or 'pause_and_resume'"),
    ],
)
def test_bad_flow_settings(spec: dict[str, Any], message: str) -> None:
    assert message in _error(flow_doc(**spec))


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"apiVersion": "reconciler/v2"}, "'reconciler/v1'"),
        ({"kind": "Campaign"}, "'Flow'"),
        ({"metadata": {"name": "Not_Valid"}}, "should match pattern"),
        ({"metadata": {"name": "x", "owner": "y"}}, "unknown key 'owner'"),
        ({"extra": 1}, "unknown key 'extra'"),
    ],
)
def test_bad_documents(patch: dict[str, Any], message: str) -> None:
    assert message in _error({**flow_doc(), **patch})


def test_models_are_frozen() -> None:
    flow = Flow.model_validate(flow_doc())
    with pytest.raises(ValidationError):
        flow.spec.status = FlowStatus.RUNNING  # type: ignore[misc]
