"""One flow graph: what ``validate`` checks, the diagram shows and the executor runs are the same.

Hypothesis generates flows (instant CRM steps, waits, splits with jumping and exiting
branches, SMS steps that exit without a mobile, wait-for-action with either timeout,
``next`` anywhere — backwards too) that pass validate, runs contacts through them on
the real executor with a moved clock, and checks every participant's path against the
compiled graph: it starts at the first step, every move is an edge of the graph (or the
graph's jump to the finish step when a success criterion is met with
``finish_immediately``), no step that validate calls unreachable is ever visited, and a
participant leaves the flow only from a step with a way out.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from reconciler.apply import ApplyOptions, apply
from reconciler.clock import ManualClock
from reconciler.desired import load_desired
from reconciler.executor import Executor
from reconciler.render.mermaid import flow_mermaid
from reconciler.spec import validate
from reconciler.spec.bundle import bundle_document
from reconciler.spec.graph import EdgeKind, FlowGraph, flow_graph
from reconciler.spec.models import Flow
from reconciler.state import Store
from reconciler.state import crm as c
from reconciler.state import tables as t
from reconciler.state.crm_store import CrmTx, NewEvent
from tests.conftest import flow_doc, migrated_sqlite_template

OPTIONS = ApplyOptions(actor="t", lock_wait=timedelta(0))
ROOT = Path(__file__).resolve().parent.parent


def run_flow(
    document: dict[str, Any], people: list[dict[str, Any]], rounds: int = 6, sale_for: str | None = None
) -> dict[str, list[str]]:
    """Apply ``document`` running, enroll ``people``, run the executor ``rounds`` times an
    hour apart (``sale_for`` gets a sale after the second); every contact's visited step
    ids, in order, and final status."""
    directory = Path(tempfile.mkdtemp(prefix="graph-run-"))
    try:
        db = directory / "state.db"
        shutil.copy(migrated_sqlite_template(), db)
        store = Store.open(f"sqlite:///{db}")
        try:
            clock = ManualClock()
            result = apply(store, [bundle_document(document, {})], clock=clock, options=OPTIONS)
            assert not result.blocked, result.blocked
            with store.transaction() as tx:
                CrmTx(tx).upsert_contacts(people, clock.now())
            executor = Executor(store, clock, batch_size=3)
            executor.enroll(document["metadata"]["name"], [p["email"] for p in people])
            for round_ in range(rounds):
                executor.run_once()
                clock.advance(timedelta(hours=1))
                if round_ == 1 and sale_for is not None:
                    with store.transaction() as tx:
                        CrmTx(tx).append_events([NewEvent("sale_created", sale_for, clock.now())])
            with store.engine.connect() as conn:
                runs = conn.execute(
                    select(t.participants.c.contact, c.step_runs.c.step_id)
                    .join(t.participants, t.participants.c.id == c.step_runs.c.participant_id)
                    .order_by(c.step_runs.c.participant_id, c.step_runs.c.visit)
                ).all()
                final = conn.execute(select(t.participants.c.contact, t.participants.c.status)).all()
        finally:
            store.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    paths: dict[str, list[str]] = {email: [] for email, _ in final}
    for email, step_id in runs:
        paths[email].append(step_id)
    paths.update({f"{email}#status": [status] for email, status in final})
    return paths


# --- the cases --------------------------------------------------------------------


def test_next_on_an_ordinary_step_jumps_as_validate_and_the_diagram_say(repo: Path, write_spec: Any) -> None:
    steps = [
        {"id": "a0", "type": "add_to_selection", "selection": "s0", "next": "done"},
        {"id": "a1", "type": "add_to_selection", "selection": "s1"},
        {"id": "a2", "type": "add_to_selection", "selection": "s2"},
        {"id": "sp2", "type": "split", "branches": [{"name": "everyone_else"}]},
        {"id": "done", "type": "finish"},
    ]
    document = flow_doc("jump", steps=steps, status="running")
    write_spec("jump.yaml", document)
    warnings = [d.message for d in validate([repo]).diagnostics]
    assert [m for m in warnings if "can never be reached" in m] == [
        f"step {s!r} can never be reached" for s in ("a1", "a2", "sp2")
    ]
    diagram = flow_mermaid(Flow.model_validate(document))
    assert "step_a0 --> step_done" in diagram and "step_a0 --> step_a1" not in diagram
    paths = run_flow(document, [{"email": "a@x.example"}])
    assert paths["a@x.example"] == ["a0", "done"]
    assert paths["a@x.example#status"] == ["finished"]


def test_the_shipped_webinar_flow_takes_everyone_else_straight_to_done() -> None:
    (webinar,) = [b for b in load_desired([ROOT / "specs"], None) if b.name == "webinar-follow-up"]
    graph = flow_graph(webinar.flow)
    assert graph.successors("tag-attendee") == ["done"]
    assert "done" not in graph.reachable_from(["tag-attendee"]) - {"done"}
    assert graph.branch("interest", "everyone_else").target == "tag-attendee"
    assert {"alert-sales", "call-task"}.isdisjoint(graph.reachable_from(["tag-attendee"]))


# --- the property ---------------------------------------------------------------------------

KINDS = ("update", "list", "wait", "split", "sms", "action", "finish")


@st.composite
def flows(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(2, 7))
    ids = [f"s{i}" for i in range(count)]
    target = st.none() | st.sampled_from(ids)
    steps: list[dict[str, Any]] = []
    for sid in ids:
        kind = draw(st.sampled_from(KINDS))
        step: dict[str, Any]
        if kind == "update":
            step = {"type": "update_contact", "updates": [{"field": "score", "action": "increase", "value": 1}]}
        elif kind == "list":
            step = {"type": "add_to_selection", "selection": draw(st.sampled_from(["x", "y"]))}
        elif kind == "wait":
            step = {"type": "wait", "duration": draw(st.sampled_from(["30m", "2h"]))}
        elif kind == "split":
            lead: dict[str, Any] = {"name": "lead", "when": {"field": "category", "op": "equals", "value": "lead"}}
            rest: dict[str, Any] = {"name": "everyone_else"}
            for branch in (lead, rest):
                if draw(st.booleans()):
                    branch["exit"] = True
                else:
                    branch["next"] = draw(target)
            step = {"type": "split", "branches": [lead, rest]}
        elif kind == "sms":
            step = {
                "type": "send_sms",
                "text": "Hi",
                "sender": "ACME",
                "on_missing_mobile": draw(st.sampled_from(["skip", "exit"])),
            }
        elif kind == "action":
            step = {
                "type": "wait_for_action",
                "actions": [{"link_clicked": "promo"}],
                "timeout": "90m",
                "on_timeout": draw(st.sampled_from(["continue", "exit"])),
            }
        else:
            step = {"type": "finish"}
        if kind not in ("split", "finish"):
            step["next"] = draw(target)
        steps.append({"id": sid, **{k: v for k, v in step.items() if v is not None}})
    for step in steps:
        for branch in step.get("branches", []):
            if branch.get("next") is None:
                branch.pop("next", None)
    success = {"criteria": [{"type": "sale_created"}], "finish_immediately": draw(st.booleans())}
    return flow_doc("prop", steps=steps, status="running", triggers=[{"type": "manual"}], success_criteria=success)


PEOPLE = [
    {"email": "lead@x.example", "category": "lead", "mobile": "+46701234567"},
    {"email": "other@x.example", "category": "other"},
]


def _ways_out(graph: FlowGraph, step_id: str) -> bool:
    return any(e.kind in (EdgeKind.EXIT, EdgeKind.END, EdgeKind.FINISH) for e in graph.edges[step_id])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flows())
def test_every_executor_path_is_a_walk_in_the_graph_validate_checks(document: dict[str, Any]) -> None:
    flow = Flow.model_validate(document)
    graph = flow_graph(flow)
    assume(graph.cycle_without_wait() is None)  # validate refuses such a flow; it is never applied
    unreachable = set(graph.unreachable())
    paths = run_flow(document, PEOPLE, sale_for=PEOPLE[0]["email"])
    for person in PEOPLE:
        path, (status,) = paths[person["email"]], paths[person["email"] + "#status"]
        assert path, "every participant visits the first step"
        assert path[0] == graph.first
        assert not unreachable & set(path), (path, unreachable)
        for here, there in pairwise(path):
            assert graph.can_move(here, there), (here, there, path, document["spec"]["steps"])
        if status in ("finished", "dropped_out", "finished_with_success"):
            # out of the flow only where the graph has a way out; with finish_immediately and
            # no finish step at all, a met criterion ends the flow where the participant is
            success_anywhere = graph.finish_on_success and graph.success_finish(path[-1]) is None
            assert _ways_out(graph, path[-1]) or (status == "finished_with_success" and success_anywhere), (
                path,
                status,
            )
