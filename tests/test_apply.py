"""Plan and apply under the lifecycle rules, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from reconciler.apply import ApplyOptions, ApplyResult, apply, break_glass, make_plan
from reconciler.clock import ManualClock
from reconciler.errors import UserError
from reconciler.plan import stage_name
from reconciler.spec.bundle import FlowBundle, bundle_document
from reconciler.state import Store
from reconciler.state.records import ACTIVE, CANCELLED, QUEUED
from tests.conftest import flow_doc

STEPS = [
    {"id": "tag", "type": "update_contact", "updates": [{"field": "category", "action": "set", "value": "lead"}]},
    {"id": "pause", "type": "wait", "duration": "2d"},
    {
        "id": "route",
        "type": "split",
        "branches": [
            {"name": "se", "when": {"field": "country", "value": "SE"}, "next": "swedes"},
            {"name": "everyone_else", "next": "done"},
        ],
    },
    {"id": "swedes", "type": "add_to_selection", "selection": "se"},
    {"id": "done", "type": "finish"},
]


def doc(
    name: str = "f", *, status: str = "paused", steps: list[dict[str, Any]] | None = None, **spec: Any
) -> dict[str, Any]:
    return flow_doc(name, steps=steps if steps is not None else STEPS, status=status, **spec)


def bundles(*documents: dict[str, Any]) -> list[FlowBundle]:
    return [bundle_document(d, {}) for d in documents]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def run(store: Store, clock: ManualClock, *documents: dict[str, Any], **options: Any) -> ApplyResult:
    clock.advance(timedelta(minutes=1))
    return apply(
        store, bundles(*documents), clock=clock, options=ApplyOptions(actor="test", lock_wait=timedelta(0), **options)
    )


def actions(result: ApplyResult) -> dict[str, tuple[str, list[str], bool]]:
    return {c.flow: (c.action, [stage_name(s) for s in c.stages], c.blocked) for c in result.plan.changes}


def enroll(store: Store, clock: ManualClock, flow: str, step: str | None, n: int = 1, *, status: str = ACTIVE) -> None:
    with store.transaction() as tx:
        for i in range(n):
            tx.add_participant(
                flow, f"{flow}-{step}-{i}-{status}@x.example", status=status, step_id=step, now=clock.now()
            )


def test_create_then_apply_again_is_a_no_op(store: Store, clock: ManualClock) -> None:
    first = run(store, clock, doc("a", status="running"), doc("b", status="not_running"))
    assert actions(first) == {"a": ("create", ["create"], False), "b": ("create", ["create"], False)}
    flows = store.flows()
    assert (flows["a"].status, flows["a"].revision, flows["b"].status) == ("running", 1, "not_running")
    second = run(store, clock, doc("a", status="running"), doc("b", status="not_running"))
    assert not second.plan.has_changes and second.applied == ()
    assert [r.revision for r in store.revisions("a")] == [1]


def test_edit_of_a_paused_flow_is_a_new_revision_with_a_keyed_diff(store: Store, clock: ManualClock) -> None:
    run(store, clock, doc())
    edited = [STEPS[1], STEPS[0], *STEPS[2:]]  # move a step
    edited[1] = {**edited[1], "updates": [{"field": "category", "action": "set", "value": "hot"}]}
    result = run(store, clock, doc(steps=edited))
    (change,) = result.applied
    paths = {d.path: (d.before, d.after) for d in change.diff}
    assert paths["spec.steps[tag].position"] == (1, 2)
    assert paths["spec.steps[tag].updates"][1] == [{"field": "category", "action": "set", "value": "hot"}]
    revisions = store.revisions("f")
    assert [(r.revision, r.previous_revision) for r in revisions] == [(1, None), (2, 1)]
    assert revisions[1].content_hash == store.flow("f").content_hash  # type: ignore[union-attr]


def test_a_running_flow_is_not_edited_unless_the_policy_says_so(store: Store, clock: ManualClock) -> None:
    run(store, clock, doc(status="running"))
    edited = doc(status="running", steps=[{**STEPS[0], "name": "Tag it"}, *STEPS[1:]])
    blocked = run(store, clock, edited)
    (change,) = blocked.plan.changes
    assert change.blocked and "running flows cannot be edited" in (change.reason or "")
    assert blocked.applied == () and store.flow("f").revision == 1  # type: ignore[union-attr]

    staged = run(store, clock, edited, update_policy="pause_and_resume")
    assert actions(staged) == {"f": ("update", ["pause", "update", "resume"], False)}
    assert store.flow("f").status == "running"  # type: ignore[union-attr]
    changes = [(c.from_status, c.to_status, c.origin) for c in store.status_changes("f")]
    assert changes[-2:] == [("running", "paused", "apply"), ("paused", "running", "apply")]

    in_spec = run(
        store,
        clock,
        doc(status="running", update_policy="pause_and_resume", steps=[{**STEPS[0], "name": "Tag"}, *STEPS[1:]]),
    )
    assert actions(in_spec)["f"][1] == ["pause", "update", "resume"]


def test_editing_while_pausing_needs_no_policy(store: Store, clock: ManualClock) -> None:
    run(store, clock, doc(status="running"))
    result = run(store, clock, doc(status="paused", steps=STEPS[1:]))
    assert actions(result) == {"f": ("update", ["pause", "update"], False)}


@pytest.mark.parametrize(
    ("before", "after", "stages"),
    [
        ("not_running", "running", ["start"]),
        ("not_running", "paused", ["pause", "record"]),
        ("running", "paused", ["pause", "record"]),
        ("paused", "running", ["resume", "record"]),
        ("running", "not_running", ["end", "record"]),
        ("paused", "not_running", ["end", "record"]),
    ],
)
def test_status_transitions(store: Store, clock: ManualClock, before: str, after: str, stages: list[str]) -> None:
    run(store, clock, doc(status=before))
    result = run(store, clock, doc(status=after))
    (change,) = result.applied
    assert [stage_name(s) for s in change.stages] == (["start", "record"] if stages == ["start"] else stages)
    assert store.flow("f").status == after  # type: ignore[union-attr]
    assert store.flow("f").revision == 2  # type: ignore[union-attr]
    assert not make_plan(store, bundles(doc(status=after))).has_changes


def test_resume_sends_queued_participants_to_the_first_step(store: Store, clock: ManualClock) -> None:
    run(store, clock, doc(status="paused"))
    enroll(store, clock, "f", None, 3, status=QUEUED)
    enroll(store, clock, "f", "pause", 2)
    run(store, clock, doc(status="running"))
    steps = sorted((p.status, p.step_id) for p in store.participants("f"))
    assert steps == [(ACTIVE, "pause")] * 2 + [(ACTIVE, "tag")] * 3


def test_end_cancels_and_a_restart_never_brings_them_back(store: Store, clock: ManualClock) -> None:
    run(store, clock, doc(status="running"))
    enroll(store, clock, "f", "pause", 2)
    enroll(store, clock, "f", None, 1, status=QUEUED)
    enroll(store, clock, "f", None, 1, status="finished")
    result = run(store, clock, doc(status="not_running"))
    assert result.applied[0].stages[0].cancels == 3  # type: ignore[union-attr]
    run(store, clock, doc(status="running"))
    statuses = sorted(p.status for p in store.participants("f"))
    assert statuses == [CANCELLED, CANCELLED, CANCELLED, "finished"]
    assert all(p.reason == "the flow was ended" for p in store.participants("f") if p.status == CANCELLED)


def test_delete_only_with_prune_and_never_running(store: Store, clock: ManualClock) -> None:
    run(store, clock, doc("run", status="running"), doc("paused"), doc("off", status="not_running"))
    enroll(store, clock, "paused", "pause", 2)
    kept = run(store, clock)
    assert not kept.plan.has_changes and kept.plan.unmanaged == ("off", "paused", "run")
    pruned = run(store, clock, prune=True)
    assert actions(pruned) == {
        "off": ("delete", ["delete"], False),
        "paused": ("delete", ["end", "delete"], False),
        "run": ("delete", [], True),
    }
    assert "pause it first" in (pruned.plan.blocked[0].reason or "")
    assert set(store.flows()) == {"run"}
    assert [(r.revision, r.kind) for r in store.revisions("paused")] == [(1, "apply"), (2, "delete")]
    recreated = run(store, clock, doc("paused"), doc("run", status="running"))
    assert actions(recreated)["paused"][0] == "create"
    assert [r.revision for r in store.revisions("paused")] == [1, 2, 3]
    assert store.participants("paused") == []


def test_rename_is_delete_plus_create(store: Store, clock: ManualClock) -> None:
    run(store, clock, doc("old-name"))
    result = run(store, clock, doc("new-name"), prune=True)
    assert actions(result) == {
        "new-name": ("create", ["create"], False),
        "old-name": ("delete", ["end", "delete"], False),
    }


# --- edit restrictions once participants exist -------------------------------------------------


def _edit(store: Store, clock: ManualClock, steps: list[dict[str, Any]]) -> tuple[bool, str]:
    result = run(store, clock, doc(steps=steps))
    (change,) = result.plan.changes
    return change.blocked, change.reason or ""


@pytest.mark.parametrize(
    ("occupied", "steps", "message"),
    [
        ("pause", [STEPS[0], *STEPS[2:]], "step 'pause' (wait) has 1 participant in it and cannot be removed"),
        ("pause", [STEPS[1], STEPS[0], *STEPS[2:]], "step 'pause' (wait) has 1 participant in it and cannot be moved"),
        ("route", [*STEPS[:2], *STEPS[3:]], "step 'route' (split) has 1 participant in it and cannot be removed"),
        ("tag", STEPS[1:], "step 'tag' has 1 participant on it: say where they go with 'replaces: [tag]'"),
        ("tag", [{"id": "tag", "type": "wait", "duration": "1d"}, *STEPS[1:]], "cannot change type"),
        (
            "swedes",
            [*STEPS[:2], {**STEPS[2], "branches": [{"name": "everyone_else", "next": "done"}]}, *STEPS[3:]],
            "branch 'se' of split 'route' has 1 participant(s) on its steps and cannot be removed",
        ),
    ],
)
def test_edit_restrictions(
    store: Store, clock: ManualClock, occupied: str, steps: list[dict[str, Any]], message: str
) -> None:
    run(store, clock, doc())
    enroll(store, clock, "f", occupied)
    blocked, reason = _edit(store, clock, steps)
    assert blocked and message in reason
    assert store.flow("f").revision == 1  # type: ignore[union-attr]


def test_unoccupied_steps_can_go_and_replaces_moves_participants(store: Store, clock: ManualClock) -> None:
    run(store, clock, doc())
    enroll(store, clock, "f", "tag", 2)
    enroll(store, clock, "f", "pause", 1)
    assert _edit(store, clock, [*STEPS[:3], STEPS[4]]) == (False, "")  # 'swedes' is empty: fine to remove
    new_first = {
        "id": "tag-v2",
        "type": "update_contact",
        "replaces": ["tag"],
        "updates": [{"field": "category", "action": "set", "value": "lead"}],
    }
    result = run(store, clock, doc(steps=[new_first, STEPS[1], STEPS[2], STEPS[4]]))
    (change,) = result.applied
    assert change.stages[0].moves == (("tag", "tag-v2", 2),)  # type: ignore[union-attr]
    assert sorted(p.step_id or "" for p in store.participants("f")) == ["pause", "tag-v2", "tag-v2"]


def test_ending_first_lifts_the_restrictions(store: Store, clock: ManualClock) -> None:
    run(store, clock, doc(status="running"))
    enroll(store, clock, "f", "pause")
    result = run(store, clock, doc(status="not_running", steps=[STEPS[0], STEPS[4]]))
    assert actions(result) == {"f": ("update", ["end", "update"], False)}


# --- break-glass and drift ---------------------------------------------------------------------


def test_break_glass_follows_the_rules(store: Store, clock: ManualClock) -> None:
    run(store, clock, doc("f", status="running"))
    with pytest.raises(UserError, match="cannot resume a flow that is running"):
        break_glass(store, "f", "resume", clock=clock, actor="ops")
    with pytest.raises(UserError, match="running flow cannot be deleted"):
        break_glass(store, "f", "delete", clock=clock, actor="ops")
    with pytest.raises(UserError, match="no flow named 'ghost'"):
        break_glass(store, "ghost", "pause", clock=clock, actor="ops")
    paused = break_glass(store, "f", "pause", clock=clock, actor="ops")
    assert (paused.status_before, paused.status_after) == ("running", "paused")
    healed = run(store, clock, doc("f", status="running"), heal=True)
    assert actions(healed) == {"f": ("resume", ["resume"], False)}
    assert store.flow("f").revision == 1  # type: ignore[union-attr]  # the spec did not change
    break_glass(store, "f", "end", clock=clock, actor="ops")
    deleted = break_glass(store, "f", "delete", clock=clock, actor="ops")
    assert deleted.status_after is None and "f" not in store.flows()


def test_start_is_refused_without_required_settings(store: Store, clock: ManualClock) -> None:
    mail = [{"id": "m", "type": "send_email", "subject": "Hi", "content": "c.html"}, STEPS[4]]
    run(store, clock, doc(steps=mail, status="not_running"))
    with pytest.raises(UserError, match="cannot run: step 'm' sends e-mail"):
        break_glass(store, "f", "start", clock=clock, actor="ops")
    plan = make_plan(store, bundles(doc(steps=mail, status="running")))
    (change,) = plan.changes
    assert change.blocked and (change.reason or "").startswith("cannot run:")


def test_edit_impact_counts_who_is_on_before_and_past_the_step(store: Store, clock: ManualClock) -> None:
    from reconciler.state.executor_store import log_step_runs

    run(store, clock, doc())
    enroll(store, clock, "f", "pause", 2)  # on the wait: the tag step is behind them
    enroll(store, clock, "f", "tag", 1)
    enroll(store, clock, "f", None, 1, status=QUEUED)
    ids = [p.id for p in store.participants("f") if p.step_id == "pause"]
    with store.transaction() as tx:
        log_step_runs(
            tx,
            [
                {"participant_id": i, "visit": 0, "step_id": "tag", "revision": 1, "outcome": "done", "at": clock.now()}
                for i in ids
            ],
        )
    edited = [{**STEPS[0], "updates": [{"field": "category", "action": "set", "value": "hot"}]}, *STEPS[1:]]
    plan = make_plan(store, bundles(doc(steps=edited)))
    (change,) = plan.changes
    (impact,) = change.impact
    assert (impact.step, impact.participants, impact.before, impact.past) == ("tag", 1, 1, 2)


def test_an_out_of_band_status_is_kept_until_the_spec_changes(store: Store, clock: ManualClock) -> None:
    """One rule for apply and watch: kept while the flow's spec is unchanged; a change to
    that spec restores the spec's status (before: the edit went in and the pause stayed)."""
    run(store, clock, doc(status="running"))
    break_glass(store, "f", "pause", clock=clock, actor="ops")
    kept = run(store, clock, doc(status="running"))
    assert kept.applied == () and not kept.plan.has_changes
    (change,) = kept.plan.kept
    assert change.out_of_band is not None and (change.out_of_band.actor, change.out_of_band.status) == ("ops", "paused")
    assert store.flow("f").status == "paused"  # type: ignore[union-attr]
    edited = doc(status="running", steps=[{**STEPS[0], "name": "Tag it"}, *STEPS[1:]])
    (change,) = run(store, clock, edited).applied
    assert [stage_name(s) for s in change.stages] == ["update", "resume"]
    assert change.out_of_band is not None and not change.out_of_band.kept  # the plan says it undoes it
    assert (store.flow("f").status, store.flow("f").revision) == ("running", 2)  # type: ignore[union-attr]
