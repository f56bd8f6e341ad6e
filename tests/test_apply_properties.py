"""Apply converges, whatever sequence of specs it is given.

Hypothesis draws a sequence of desired states: a set of flows, each with a status
and a list of steps, every next state derived from the one before by adding and
removing flows (a running one is paused first: prune never deletes a running
flow, by design), changing statuses, and inserting, removing,
editing and moving steps. Each state is applied with ``--prune`` in turn. No
participants are involved, and every flow says ``update_policy: pause_and_resume``,
so nothing may be blocked. After every apply:

(a) planning the same state again finds nothing to do;
(b) every flow's revision chain is whole: revisions 1..n, each pointing at the one
    before, and the newest one holds exactly the flow's spec, status and content hash;
(c) every flow has the status its spec asks for;
(d) every flow that is gone has a last revision of kind ``delete``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from reconciler.apply import ApplyOptions, apply, make_plan
from reconciler.clock import ManualClock
from reconciler.plan import stage_name
from reconciler.spec import validate
from reconciler.spec.bundle import FlowBundle, bundle_document, content_hash
from reconciler.state import Store
from reconciler.state.tables import metadata

T = TypeVar("T")
Draw = Callable[[st.SearchStrategy[T]], T]

NAMES = ("alpha", "beta", "gamma", "delta")
STEP_IDS = ("s1", "s2", "s3", "s4", "s5", "s6")
STATUSES = ("not_running", "paused", "running")
KINDS = ("wait", "update_contact", "split")

# A step in the abstract: (id, kind, variant). A split's variant picks which later step its
# branch leads to, so targets always point forward (no loops) and every step stays reachable.
Step = tuple[str, str, int]
State = dict[str, tuple[str, list[Step]]]  # flow name -> (status, steps)

SETTINGS = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# --- specs --------------------------------------------------------------------------------------


def render_step(step: Step, later: list[str]) -> dict[str, Any]:
    sid, kind, variant = step
    if kind == "wait":
        return {"id": sid, "type": "wait", "duration": f"{variant + 1}d"}
    if kind == "update_contact":
        return {
            "id": sid,
            "type": "update_contact",
            "updates": [{"field": "category", "action": "set", "value": f"c{variant}"}],
        }
    target = later[variant] if variant < len(later) else "done"
    return {
        "id": sid,
        "type": "split",
        "branches": [{"name": "se", "when": {"field": "country", "value": "SE"}, "next": target}],
    }


def document(name: str, status: str, steps: list[Step]) -> dict[str, Any]:
    ids = [s[0] for s in steps] + ["done"]
    rendered = [render_step(step, ids[i + 1 :]) for i, step in enumerate(steps)]
    return {
        "apiVersion": "reconciler/v1",
        "kind": "Flow",
        "metadata": {"name": name},
        "spec": {
            "status": status,
            "update_policy": "pause_and_resume",
            "triggers": [{"type": "manual"}],
            "steps": [*rendered, {"id": "done", "type": "finish"}],
        },
    }


def desired(state: State) -> list[FlowBundle]:
    return [bundle_document(document(name, status, steps), {}) for name, (status, steps) in sorted(state.items())]


# --- drawing a sequence of states ------------------------------------------------------------------


def draw_step(draw: Draw[Any], sid: str) -> Step:
    return (sid, draw(st.sampled_from(KINDS)), draw(st.integers(0, 2)))


def draw_flow(draw: Draw[Any]) -> tuple[str, list[Step]]:
    ids = draw(st.lists(st.sampled_from(STEP_IDS), unique=True, max_size=4))
    return draw(st.sampled_from(STATUSES)), [draw_step(draw, sid) for sid in ids]


def mutate_steps(draw: Draw[Any], steps: list[Step]) -> list[Step]:
    steps = list(steps)
    edit = draw(st.sampled_from(("insert", "remove", "edit", "move")))
    unused = [sid for sid in STEP_IDS if sid not in {s[0] for s in steps}]
    if edit == "insert" and unused:
        steps.insert(draw(st.integers(0, len(steps))), draw_step(draw, draw(st.sampled_from(unused))))
    elif edit == "remove" and steps:
        del steps[draw(st.integers(0, len(steps) - 1))]
    elif edit == "edit" and steps:
        at = draw(st.integers(0, len(steps) - 1))
        steps[at] = draw_step(draw, steps[at][0])  # same id; kind and settings may change
    elif edit == "move" and len(steps) > 1:
        moved = steps.pop(draw(st.integers(0, len(steps) - 1)))
        steps.insert(draw(st.integers(0, len(steps))), moved)
    return steps


def next_state(draw: Draw[Any], state: State) -> State:
    following: State = {}
    for name, (status, steps) in state.items():
        change = draw(st.sampled_from(("keep", "status", "steps", "both", "drop")))
        if change == "drop" and status != "running":
            continue
        if change == "drop":  # --prune never deletes a running flow: pause it in this state, drop it later
            following[name] = ("paused", steps)
            continue
        new_status = draw(st.sampled_from(STATUSES)) if change in ("status", "both") else status
        new_steps = mutate_steps(draw, steps) if change in ("steps", "both") else steps
        following[name] = (new_status, new_steps)
    for name in NAMES:
        if name not in state and draw(st.booleans()):
            following[name] = draw_flow(draw)
    return following


@st.composite
def state_sequences(draw: Draw[Any]) -> list[State]:
    names = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=len(NAMES)))
    states: list[State] = [{name: draw_flow(draw) for name in names}]
    for _ in range(draw(st.integers(0, 5))):
        states.append(next_state(draw, states[-1]))
    return states


# --- the property -------------------------------------------------------------------------------


def wipe(store: Store) -> None:
    with store.engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            connection.execute(table.delete())


def check_after_apply(store: Store, state: State, seen: set[str]) -> None:
    plan = make_plan(store, desired(state), prune=True)
    assert not plan.has_changes, [(c.flow, c.action, c.diff) for c in plan.changes if c.is_change]  # (a)
    assert plan.unmanaged == ()

    flows = store.flows()
    assert set(flows) == set(state)
    last_status = store.last_status_changes()
    for name in sorted(seen):
        revisions = store.revisions(name)
        numbers = [r.revision for r in revisions]
        assert numbers == list(range(1, len(revisions) + 1)), (name, numbers)  # (b)
        assert [r.previous_revision for r in revisions] == [None, *numbers[:-1]], name
        newest = revisions[-1]
        if name in state:
            record = flows[name]
            status, steps = state[name]
            bundle = bundle_document(document(name, status, steps), {})
            assert record.revision == newest.revision, name
            assert newest.kind == "apply", name
            assert newest.content_hash == record.content_hash == content_hash(record.spec, record.files), name
            assert record.content_hash == bundle.content_hash and record.spec == bundle.document, name
            assert (newest.spec, newest.status) == (record.spec, record.status), name
            assert record.status == status, name  # (c)
            assert last_status[name].to_status == status, name
        else:
            assert (newest.kind, newest.content_hash, newest.spec) == ("delete", None, None), name  # (d)
            assert last_status[name].to_status is None, name


@SETTINGS
@given(states=state_sequences())
def test_any_sequence_of_specs_applies_cleanly_and_converges(store: Store, states: list[State]) -> None:
    wipe(store)
    clock = ManualClock()
    seen: set[str] = set()
    options = ApplyOptions(actor="t", prune=True, lock_wait=timedelta(0))
    for state in states:
        clock.advance(timedelta(minutes=1))
        bundles = desired(state)
        result = apply(store, bundles, clock=clock, options=options)
        assert result.blocked == (), [(c.flow, c.reason) for c in result.blocked]
        assert [c.flow for c in result.applied] == [c.flow for c in result.plan.changes if c.is_change]
        for change in result.applied:  # what was covered: --hypothesis-show-statistics
            event(f"{change.action}: {' → '.join(stage_name(s) for s in change.stages)}")
        seen |= set(state)
        check_after_apply(store, state, seen)
    assert store.lease("apply") is None


# --- the premise: the drawn specs are valid ones --------------------------------------------------


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(states=state_sequences())
def test_the_drawn_specs_pass_validate(tmp_path_factory: pytest.TempPathFactory, states: list[State]) -> None:
    root = tmp_path_factory.mktemp("specs")
    (root / "reconciler.toml").write_text("")
    yaml = YAML(typ="safe", pure=True)
    files: list[Path] = []
    for number, state in enumerate(states):
        for name, (status, steps) in state.items():
            path = root / f"v{number}" / f"{name}.yaml"
            path.parent.mkdir(exist_ok=True)
            with path.open("w") as handle:
                yaml.dump(document(name, status, steps), handle)
            files.append(path)
    for number in range(len(states)):
        folder = root / f"v{number}"
        if folder.exists():
            specs = validate([folder], frozenset())
            assert specs.diagnostics == [], [str(d) for d in specs.diagnostics]
