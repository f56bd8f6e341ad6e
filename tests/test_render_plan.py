"""Plan renderers: the JSON contract, the text view, the size-capped Markdown comment, Mermaid."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from reconciler.plan import Plan, build_plan
from reconciler.render.mermaid import escape_label, flow_mermaid, node_id
from reconciler.render.plan import NO_CHANGES, plan_json, plan_markdown, plan_text
from reconciler.spec.bundle import FlowBundle, bundle_document, content_hash
from reconciler.spec.models import Flow
from reconciler.state.records import FlowRecord, Occupancy
from tests.conftest import flow_doc

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
EMAIL = {"sender": {"address": "news@acme.example"}, "reply_to": "help@acme.example"}
SPLIT = {
    "id": "route",
    "type": "split",
    "branches": [
        {"name": "leads", "when": {"field": "category", "op": "equals", "value": "lead"}, "next": "done"},
        {"name": "everyone_else", "exit": True},
    ],
}


def record(doc: dict[str, Any], status: str, *, flow_id: int = 1) -> FlowRecord:
    return FlowRecord(
        id=flow_id,
        name=doc["metadata"]["name"],
        status=status,
        revision=1,
        spec=doc,
        files={},
        content_hash=content_hash(doc, {}),
        created_at=NOW,
        updated_at=NOW,
        status_changed_at=NOW,
    )


def bundle(doc: dict[str, Any]) -> FlowBundle:
    return bundle_document(doc, files={})


def two_waits(name: str, *, first: str = "1d", **spec: Any) -> dict[str, Any]:
    steps = [
        {"id": "pause", "type": "wait", "duration": first},
        {"id": "later", "type": "wait", "duration": "1d"},
        {"id": "done", "type": "finish"},
    ]
    return flow_doc(name, steps=steps, **spec)


@pytest.fixture
def plan() -> Plan:
    """One of each: create, update with diff, status-only change, blocked edit, delete, no-op."""
    desired = [
        bundle(flow_doc("fresh", status="paused")),
        bundle(two_waits("edited", first="2d", status="paused")),
        bundle(flow_doc("started", status="paused")),
        bundle(two_waits("live", first="3d", status="running")),
        bundle(flow_doc("same")),
    ]
    actual = {
        "edited": record(two_waits("edited", status="paused"), "paused", flow_id=1),
        "started": record(flow_doc("started"), "not_running", flow_id=2),
        "live": record(two_waits("live", status="running"), "running", flow_id=3),
        "same": record(flow_doc("same"), "not_running", flow_id=4),
        "gone": record(flow_doc("gone", status="paused"), "paused", flow_id=5),
    }
    occupancy = {
        "edited": Occupancy({"active": 12}, {"pause": 12}),
        "live": Occupancy({"active": 4}, {"pause": 4}),
        "gone": Occupancy({"active": 2, "queued": 1}, {"pause": 2}),
    }
    return build_plan(desired, actual, occupancy, prune=True)


def by_flow(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {change["flow"]: change for change in document["changes"]}


# --- JSON ------------------------------------------------------------------------------


def test_json_top_level_contract(plan: Plan) -> None:
    document = json.loads(plan_json(plan))
    assert list(document) == ["format_version", "changes", "change_summary", "unmanaged", "kept_out_of_band"]
    assert document["format_version"] == "1"
    assert document["unmanaged"] == []
    assert document["change_summary"] == {
        "create": 1,
        "update": 2,
        "start": 0,
        "pause": 1,
        "resume": 0,
        "end": 0,
        "delete": 1,
        "no-op": 1,
        "blocked": 1,
    }
    assert [c["flow"] for c in document["changes"]] == ["edited", "fresh", "live", "same", "started", "gone"]


def test_json_change_keys_and_values(plan: Plan) -> None:
    changes = by_flow(json.loads(plan_json(plan)))
    keys = [
        "flow",
        "action",
        "blocked",
        "reason",
        "reasons",
        "stages",
        "status_before",
        "status_after",
        "diff",
        "impact",
        "moves",
        "cancels",
        "kept",
        "out_of_band",
        "in_place",
    ]
    assert all(list(change) == keys for change in changes.values())
    assert {name: c["action"] for name, c in changes.items()} == {
        "edited": "update",
        "fresh": "create",
        "live": "update",
        "same": "no-op",
        "started": "pause",
        "gone": "delete",
    }

    edited = changes["edited"]
    assert edited["stages"] == ["update"]
    assert edited["diff"] == [{"path": "spec.steps[pause].duration", "before": "1d", "after": "2d"}]
    assert edited["impact"] == [{"step": "pause", "participants": 12, "before": 0, "past": 0, "waiting": 0}]
    assert (edited["blocked"], edited["reason"], edited["moves"]) == (False, None, [])

    fresh = changes["fresh"]
    assert fresh["stages"] == ["create"]
    assert (fresh["status_before"], fresh["status_after"]) == (None, "paused")
    assert fresh["diff"] == [{"path": "", "before": None, "after": flow_doc("fresh", status="paused")}]

    started = changes["started"]
    assert started["stages"] == ["pause", "record"]
    # a status the spec left out is its default, shown as the transition
    assert started["diff"] == [{"path": "spec.status", "before": "not_running", "after": "paused"}]

    live = changes["live"]
    assert live["blocked"] is True
    assert "running flows cannot be edited" in live["reason"]
    assert live["stages"] == ["pause", "update", "resume"]  # what the policy would do, for review

    gone = changes["gone"]
    assert gone["stages"] == ["end", "delete"]
    assert gone["cancels"] == 3
    assert (gone["status_before"], gone["status_after"]) == ("paused", None)
    assert gone["diff"] == [{"path": "", "before": flow_doc("gone", status="paused"), "after": None}]

    same = changes["same"]
    assert (same["stages"], same["diff"], same["blocked"]) == ([], [], False)


def test_json_lists_moves_of_update_stages() -> None:
    old = flow_doc(
        "moving", status="paused", steps=[{"id": "ping", "type": "notify_sms", "to": "our_contact", "text": "x"}]
    )
    old["spec"]["steps"].append({"id": "done", "type": "finish"})
    new_steps = [
        {
            "id": "tell",
            "type": "notify_email",
            "to": "our_contact",
            "subject": "S",
            "message": "m",
            "replaces": ["ping"],
        },
        {"id": "done", "type": "finish"},
    ]
    plan = build_plan(
        [bundle(flow_doc("moving", status="paused", steps=new_steps))],
        {"moving": record(old, "paused")},
        {"moving": Occupancy({"active": 5}, {"ping": 5})},
    )
    (change,) = json.loads(plan_json(plan))["changes"]
    assert change["moves"] == [{"from": "ping", "to": "tell", "participants": 5}]
    assert "→ 5 participants move from step 'ping' to 'tell'" in plan_text(plan)


def test_json_keeps_unmanaged_flows_without_prune() -> None:
    plan = build_plan([], {"b": record(flow_doc("b"), "not_running"), "a": record(flow_doc("a"), "not_running")}, {})
    document = json.loads(plan_json(plan))
    assert document["unmanaged"] == ["a", "b"]
    assert document["changes"] == []


# --- text -------------------------------------------------------------------------------


def test_text_symbols_diff_lines_and_summary(plan: Plan) -> None:
    text = plan_text(plan)
    lines = text.splitlines()
    assert "~ edited: update" in lines
    assert '    ~ spec.steps[pause].duration: "1d" → "2d"' in lines
    assert "    ! 12 participants on step 'pause'" in lines
    assert "+ fresh: create" in lines
    assert "    spec:" in lines and "        - {id: done, type: finish}" in lines  # a created flow as YAML
    assert "> started: pause (pause → record)" in lines
    assert "- gone: delete (end → delete)" in lines
    assert "    ! 3 participants in the flow will be cancelled" in lines
    assert "~ live: update (pause → update → resume)" in lines
    assert "    - spec.steps[later]" not in lines  # the edit of live changes pause only
    assert any(line.startswith("    ✗ blocked: flow 'live' is running") for line in lines)
    assert "same" not in text  # no-op flows are not listed
    assert lines[-1] == "Plan: 1 to create, 2 to update, 1 to pause, 1 to delete; 1 blocked."
    assert "\x1b[" not in text


def test_text_shows_pause_update_resume_stages() -> None:
    plan = build_plan(
        [bundle(two_waits("hot", first="2d", status="running", update_policy="pause_and_resume"))],
        {"hot": record(two_waits("hot", status="running"), "running")},
        {},
    )
    assert plan_text(plan).splitlines()[0] == "~ hot: update (pause → update → resume)"


def test_text_removed_and_long_added_values() -> None:
    long_subject = "x" * 300
    new_steps = [
        {"id": "pause", "type": "wait", "duration": "1d"},
        {"id": "tell", "type": "notify_email", "to": "a@acme.example", "subject": long_subject, "message": "m"},
        {"id": "done", "type": "finish"},
    ]
    plan = build_plan(
        [bundle(flow_doc("t", steps=new_steps))],
        {"t": record(two_waits("t"), "not_running")},
        {},
    )
    lines = plan_text(plan).splitlines()
    assert "    - spec.steps[later]" in lines
    (added,) = [line for line in lines if line.startswith("    + spec.steps[tell]: ")]
    value = added.removeprefix("    + spec.steps[tell]: ")
    assert len(value) == 100 and value.endswith("…") and value.startswith('{"id":"tell"')


def test_text_colour_only_when_asked(plan: Plan) -> None:
    coloured = plan_text(plan, color=True)
    assert "\x1b[32m+\x1b[0m fresh: create" in coloured
    assert "\x1b[33m~\x1b[0m edited: update" in coloured
    assert "\x1b[31m-\x1b[0m gone: delete" in coloured
    assert "\x1b[36m>\x1b[0m started: pause" in coloured
    assert "\x1b[31m✗ blocked:" in coloured
    assert re.sub(r"\x1b\[\d+m", "", coloured) == plan_text(plan)


def test_text_no_changes_and_unmanaged_note() -> None:
    plan = build_plan(
        [bundle(flow_doc("same"))],
        {
            "same": record(flow_doc("same"), "not_running"),
            "a": record(flow_doc("a"), "not_running", flow_id=2),
            "b": record(flow_doc("b"), "not_running", flow_id=3),
        },
        {},
    )
    assert plan_text(plan).splitlines() == [
        NO_CHANGES,
        "2 flow(s) in the database are not in the specs: a, b (apply --prune deletes them)",
    ]
    assert plan_text(Plan(())) == "No changes. Actual state matches the specs."


# --- Markdown ----------------------------------------------------------------------------


def test_markdown_summary_sections_and_diagram(plan: Plan) -> None:
    markdown = plan_markdown(plan)
    assert markdown.startswith("## Reconciler plan\n")
    assert "| create | 1 |" in markdown and "| **blocked** | **1** |" in markdown
    assert markdown.count("<details") == 5  # every change but the no-op
    first = markdown.index("<details")
    assert markdown[first:].startswith("<details open><summary>~ <code>live</code>: update — <b>BLOCKED</b></summary>")
    assert "> **Blocked:** flow 'live' is running" in markdown
    assert '| `spec.steps[pause].duration` | `"1d"` | `"2d"` |' in markdown
    assert "**Stages:** end → delete" in markdown
    assert "```mermaid\nflowchart TD" in markdown
    assert "<summary>&gt; <code>started</code>: pause</summary>" in markdown
    assert "more flow change(s) not shown" not in markdown


def test_markdown_escapes_pipes_and_backticks() -> None:
    steps = [
        {"id": "tell", "type": "notify_email", "to": "a@acme.example", "subject": "A | `B`", "message": "m"},
        {"id": "done", "type": "finish"},
    ]
    old = flow_doc("esc", steps=[{"id": "tell", **steps[0], "subject": "plain"}, steps[1]])
    plan = build_plan([bundle(flow_doc("esc", steps=steps))], {"esc": record(old, "not_running")}, {})
    row = next(line for line in plan_markdown(plan).splitlines() if "subject" in line)
    assert row == '| `spec.steps[tell].subject` | `"plain"` | ``"A \\| `B`"`` |'


def test_markdown_caps_500_created_flows() -> None:
    plan = build_plan(
        [bundle(flow_doc(f"flow-{i:03d}", steps=[SPLIT, {"id": "done", "type": "finish"}])) for i in range(500)], {}, {}
    )
    markdown = plan_markdown(plan, max_chars=60_000)
    assert len(markdown) <= 60_000
    shown = markdown.count("<details>")
    assert 0 < shown < 500
    assert markdown.rstrip().endswith(
        f"… {500 - shown} more flow change(s) not shown: the comment is limited to 60,000 characters; "
        "run reconcile plan locally for the full plan."
    )
    assert markdown.count("<details>") == markdown.count("</details>")


def test_markdown_truncates_inside_one_enormous_flow() -> None:
    steps = [
        {"id": f"step-{i}", "type": "notify_email", "to": "a@acme.example", "subject": "s" * 150, "message": "m"}
        for i in range(400)
    ]
    plan = build_plan([bundle(flow_doc("huge", steps=[*steps, {"id": "done", "type": "finish"}]))], {}, {})
    markdown = plan_markdown(plan, max_chars=10_000)
    assert len(markdown) <= 10_000
    assert "<code>huge</code>" in markdown and markdown.count("</details>") == 1
    assert "more difference(s) not shown" in markdown
    assert "Diagram left out" in markdown


def test_markdown_always_within_a_tiny_limit(plan: Plan) -> None:
    for limit in (50, 300, 900, 2_000):
        assert len(plan_markdown(plan, max_chars=limit)) <= limit


# --- Mermaid ------------------------------------------------------------------------------


def test_mermaid_labels_split_branches_and_exits() -> None:
    steps = [
        {"id": "welcome-mail", "type": "notify_email", "to": "a@acme.example", "subject": "S", "message": "m"},
        {"id": "wait-click", "type": "wait_for_action", "actions": [{"link_clicked": "agenda"}], "on_timeout": "exit"},
        SPLIT,
        {"id": "done", "type": "finish"},
    ]
    doc = flow_doc("m", steps=steps, triggers=[{"type": "manual"}, {"type": "form_submitted", "form": "signup"}])
    diagram = flow_mermaid(Flow.model_validate(doc))
    lines = [line.strip() for line in diagram.splitlines()]
    assert lines[0] == "flowchart TD"
    assert 'flow_trigger{{"triggers: manual, form_submitted"}}' in lines
    assert 'step_welcome_mail["welcome-mail: notify_email"]' in lines
    assert 'step_wait_click(["wait-click: wait_for_action"])' in lines
    assert 'step_route{"route: split"}' in lines
    assert 'step_done(("done: finish"))' in lines
    assert 'flow_exit(["drop out"])' in lines
    assert "flow_trigger --> step_welcome_mail" in lines
    assert "step_welcome_mail --> step_wait_click" in lines
    assert "step_wait_click --> step_route" in lines
    assert "step_wait_click -.->|timeout| flow_exit" in lines
    assert "step_route -->|leads| step_done" in lines
    assert "step_route -->|everyone_else| flow_exit" in lines


def test_mermaid_branch_without_next_goes_to_the_following_step() -> None:
    split = {**SPLIT, "branches": [{**SPLIT["branches"][0], "next": None, "name": 'say "hi" [1]'}]}
    doc = flow_doc("f", steps=[split, {"id": "done", "type": "finish"}])
    diagram = flow_mermaid(Flow.model_validate(doc))
    assert "step_route -->|say #quot;hi#quot; #91;1#93;| step_done" in diagram
    assert "step_route -->|everyone_else| step_done" in diagram
    assert "flow_exit" not in diagram


def test_mermaid_escaping_and_ids() -> None:
    assert (
        escape_label('a "b" [c] {d} (e) <f> | #g')
        == "a #quot;b#quot; #91;c#93; #123;d#125; #40;e#41; #lt;f#gt; #124; #35;g"
    )
    assert node_id("pause-2d") == "step_pause_2d"
