"""The executor keeps its promises, whatever happens to the flow around it.

Hypothesis drives one flow (update_contact → wait 1d → split whose "everyone else"
branch exits → wait_for_action on a link, 2d timeout → finish) and a pool of eight
contacts through random sequences of: trigger events and manual enrollments, executor
runs, time passing (a ManualClock, 0-3 days), status changes by apply or by the
break-glass commands (pause, resume, end, restart), edits of step settings applied
while participants are on the steps, and clicks on the awaited link. After every
rule, reading the database:

(a) no participant is lost or duplicated: rows only grow, keep their id, contact and
    flow, and a contact never has two queued/active participations in the flow;
(b) while the flow is paused or not running a run moves nobody (status, step and visit
    of every existing participant are unchanged, no step runs), new participants of a
    paused flow are queued, and a flow that is not running enrolls nobody;
(c) a terminal participant (finished, finished_with_success, dropped_out, cancelled,
    failed) never changes again, not even its timestamps;
(d) every step runs at most once per participant visit: step_runs has no duplicate
    (participant_id, visit), a participant's runs are visits 0..visit-1;
(e) with once_only, a contact never has more than one participation;
(f) every contact's score is exactly the sum of the increases of the ``update_contact``
    runs logged for it, each with the setting of the revision that ran it (no effect is
    lost or doubled).

Plus the lifecycle rules of the seed: after an end nobody is queued or active; after a
resume or start nobody is queued.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from sqlalchemy import select

from reconciler.apply import ApplyOptions, apply, break_glass
from reconciler.clock import ManualClock
from reconciler.errors import UserError
from reconciler.executor import Executor
from reconciler.spec.bundle import bundle_document
from reconciler.state import Store
from reconciler.state import crm as c
from reconciler.state import tables as t
from reconciler.state.crm_store import CrmTx, NewEvent
from reconciler.state.records import CANCELLED, DROPPED_OUT, FAILED, FINISHED, FINISHED_WITH_SUCCESS, IN_FLOW, QUEUED
from tests.conftest import migrated_sqlite_template

FLOW = "life"
CONTACTS = tuple(f"c{i}@example.com" for i in range(8))
TERMINAL = (FINISHED, FINISHED_WITH_SUCCESS, DROPPED_OUT, CANCELLED, FAILED)
STATUSES = ("running", "paused", "not_running")
BREAK_GLASS = ("start", "pause", "resume", "end")
# heal: the machine's apply always lands on the spec's status, as ``apply --self-heal`` does
# (plain apply keeps a break-glass status while the spec is unchanged).
OPTIONS = ApplyOptions(actor="t", lock_wait=timedelta(0), update_policy="pause_and_resume", heal=True)


@dataclass(frozen=True)
class Variant:
    """The step settings an edit may change (never the steps themselves)."""

    wait: str = "1d"
    score: int = 1
    timeout: str = "2d"
    on_timeout: str = "continue"
    country: str = "SE"


def flow_document(status: str, once_only: bool, v: Variant) -> dict[str, Any]:
    return {
        "apiVersion": "reconciler/v1",
        "kind": "Flow",
        "metadata": {"name": FLOW},
        "spec": {
            "status": status,
            "update_policy": "pause_and_resume",
            "triggers": [{"type": "form_submitted", "form": "signup"}, {"type": "manual"}],
            "enrollment": {"once_only": once_only},
            "steps": [
                {
                    "id": "tag",
                    "type": "update_contact",
                    "updates": [{"field": "score", "action": "increase", "value": v.score}],
                },
                {"id": "pause", "type": "wait", "duration": v.wait},
                {
                    "id": "route",
                    "type": "split",
                    "branches": [
                        {"name": "local", "when": {"field": "country", "value": v.country}, "next": "act"},
                        {"name": "everyone_else", "exit": True},
                    ],
                },
                {
                    "id": "act",
                    "type": "wait_for_action",
                    "actions": [{"link_clicked": "promo"}],
                    "timeout": v.timeout,
                    "on_timeout": v.on_timeout,
                },
                {"id": "done", "type": "finish"},
            ],
        },
    }


VARIANTS = st.builds(
    Variant,
    wait=st.sampled_from(["1d", "2d", "12h", "3d"]),
    score=st.sampled_from([1, 2, 5]),
    timeout=st.sampled_from(["2d", "1d", "3d"]),
    on_timeout=st.sampled_from(["continue", "exit"]),
    country=st.sampled_from(["SE", "NO"]),
)

Row = tuple[Any, ...]


class ExecutorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="executor-sm-"))
        db = self.dir / "state.db"
        shutil.copy(migrated_sqlite_template(), db)
        self.store = Store.open(f"sqlite:///{db}")
        self.clock = ManualClock()
        self.executor = Executor(self.store, self.clock, batch_size=3, event_batch=4)
        self.once_only = True
        self.variant = Variant()
        self.seen: dict[int, Row] = {}  # participant id → its last row
        self.status_before_rule = "not_running"
        self.count_before_rule = 0

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- reading the database -------------------------------------------------------------

    def flow_status(self) -> str:
        record = self.store.flow(FLOW)
        assert record is not None
        return record.status

    def participants(self) -> dict[int, Row]:
        p = t.participants
        query = select(
            p.c.id,
            p.c.flow_id,
            p.c.contact,
            p.c.status,
            p.c.step_id,
            p.c.visit,
            p.c.due_at,
            p.c.reason,
            p.c.step_state,
            p.c.success_at,
            p.c.finished_at,
            p.c.updated_at,
        ).order_by(p.c.id)
        with self.store.engine.connect() as conn:
            return {row[0]: tuple(row) for row in conn.execute(query)}

    def step_runs(self, *, with_revision: bool = False) -> list[tuple[Any, ...]]:
        r = c.step_runs
        columns = [r.c.participant_id, r.c.visit, r.c.step_id, *([r.c.revision] if with_revision else [])]
        with self.store.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(select(*columns))]

    @staticmethod
    def moves(rows: dict[int, Row]) -> dict[int, Row]:
        """What a run may not change while the flow is not running: status, step, visit."""
        return {pid: (row[3], row[4], row[5]) for pid, row in rows.items()}

    # --- applying ---------------------------------------------------------------------------

    def apply(self, status: str, variant: Variant) -> None:
        bundle = bundle_document(flow_document(status, self.once_only, variant), {})
        result = apply(self.store, [bundle], clock=self.clock, options=OPTIONS)
        assert not result.blocked, [c.reason for c in result.blocked]
        self.variant = variant
        assert self.flow_status() == status

    def after_status_change(self) -> None:
        status = self.flow_status()
        in_flow = [row for row in self.participants().values() if row[3] in IN_FLOW]
        if status == "not_running":
            assert not in_flow, f"an ended flow still has participants in it: {in_flow}"
        if status == "running":
            assert not [row for row in in_flow if row[3] == QUEUED], "queued participants were not released"

    # --- rules -------------------------------------------------------------------------------

    @initialize(status=st.sampled_from(STATUSES), once_only=st.booleans())
    def setup(self, status: str, once_only: bool) -> None:
        self.once_only = once_only
        with self.store.transaction() as tx:
            CrmTx(tx).upsert_contacts(
                [{"email": e, "country": ("SE", "NO")[i % 2], "score": 0} for i, e in enumerate(CONTACTS)],
                self.clock.now(),
            )
        self.apply(status, Variant())

    @rule(contact=st.sampled_from(CONTACTS))
    def trigger(self, contact: str) -> None:
        with self.store.transaction() as tx:
            CrmTx(tx).append_events([NewEvent("form_submitted", contact, self.clock.now(), "signup")])

    @rule(contact=st.sampled_from(CONTACTS))
    def click(self, contact: str) -> None:
        with self.store.transaction() as tx:
            CrmTx(tx).append_events([NewEvent("link_clicked", contact, self.clock.now(), "promo")])

    @rule(contacts=st.lists(st.sampled_from(CONTACTS), min_size=1, max_size=3))
    def enroll(self, contacts: list[str]) -> None:
        status = self.flow_status()
        before = self.participants()
        result = self.executor.enroll(FLOW, contacts)
        after = self.participants()
        new = [after[pid] for pid in after.keys() - before.keys()]
        assert len(new) == len(result.enrolled)
        if status == "not_running":
            assert not result.enrolled
            assert set(result.skipped) == set(contacts)

    @rule()
    def run(self) -> None:
        status = self.flow_status()
        before = self.participants()
        runs_before = len(self.step_runs())
        self.executor.run_once()
        after = self.participants()
        if status != "running":
            # (b) a paused or not-running flow moves nobody
            assert self.moves({pid: after[pid] for pid in before}) == self.moves(before)
            assert len(self.step_runs()) == runs_before
            new = [after[pid] for pid in after.keys() - before.keys()]
            if status == "paused":
                assert all(row[3] == QUEUED for row in new), new
            else:
                assert not new, f"a flow that is not running enrolled {new}"

    @rule(delta=st.sampled_from([timedelta(0), timedelta(hours=6), *(timedelta(days=d) for d in (1, 2, 3))]))
    def advance(self, delta: timedelta) -> None:
        self.clock.advance(delta)

    @rule(delta=st.sampled_from([timedelta(hours=12), *(timedelta(days=d) for d in (1, 2, 3))]))
    def advance_and_run(self, delta: timedelta) -> None:
        self.advance(delta)
        self.run()

    @rule(change=st.sampled_from([*(("apply", s) for s in STATUSES), *(("break_glass", a) for a in BREAK_GLASS)]))
    def lifecycle(self, change: tuple[str, str]) -> None:
        """Pause, resume, end or (re)start: by applying the spec with another status, or break-glass."""
        how, what = change
        if how == "apply":
            self.set_status(what)
        else:
            self.break_glass(what)

    def set_status(self, status: str) -> None:
        self.apply(status, self.variant)
        self.after_status_change()

    def break_glass(self, action: str) -> None:
        before = self.flow_status()
        try:
            break_glass(self.store, FLOW, action, clock=self.clock, actor="t", lock_wait=timedelta(0))
        except UserError:
            assert self.flow_status() == before
            return
        self.after_status_change()

    @rule(variant=VARIANTS)
    def edit(self, variant: Variant) -> None:
        """Change step settings while participants are on the steps (paused around it if running)."""
        self.apply(self.flow_status(), variant)

    # --- invariants ----------------------------------------------------------------------------

    @invariant()
    def database_invariants(self) -> None:
        now = self.participants()
        # (a) nobody lost, ids stable, contact and flow fixed
        for pid, row in self.seen.items():
            assert pid in now, f"participant {pid} disappeared"
            assert now[pid][1:3] == row[1:3], f"participant {pid} changed identity: {row} → {now[pid]}"
        in_flow: dict[str, list[int]] = {}
        taken: dict[str, list[int]] = {}
        for pid, row in now.items():
            taken.setdefault(row[2], []).append(pid)
            if row[3] in IN_FLOW:
                in_flow.setdefault(row[2], []).append(pid)
        assert all(len(ids) == 1 for ids in in_flow.values()), f"two participations in the flow: {in_flow}"
        # (e) once only
        if self.once_only:
            assert all(len(ids) == 1 for ids in taken.values()), f"once-only flow taken twice: {taken}"
        # (c) terminal participants are frozen
        for pid, row in self.seen.items():
            if row[3] in TERMINAL:
                assert now[pid] == row, f"terminal participant {pid} changed: {row} → {now[pid]}"
        # (d) each step once per visit
        runs = self.step_runs()
        keys = [(pid, visit) for pid, visit, _ in runs]
        assert len(keys) == len(set(keys)), "a (participant, visit) ran twice"
        visits: dict[int, list[int]] = {}
        for pid, visit, _ in runs:
            visits.setdefault(pid, []).append(visit)
        for pid, row in now.items():
            assert sorted(visits.get(pid, [])) == list(range(row[5])), (
                f"participant {pid} at visit {row[5]} has step runs {sorted(visits.get(pid, []))}"
            )
        # (f) the update_contact effect happened exactly once per run of the step, with the
        # setting of the revision that ran it
        value = {r.revision: _tag_value(r.spec) for r in self.store.revisions(FLOW) if r.spec}
        expected = dict.fromkeys(CONTACTS, 0.0)
        contact_of = {pid: row[2] for pid, row in now.items()}
        for pid, _, step_id, revision in self.step_runs(with_revision=True):
            if step_id == "tag":
                expected[contact_of[pid]] += value[revision]
        assert dict(_scores(self)) == expected
        self.seen = now


def _tag_value(spec: dict[str, Any]) -> float:
    return float(spec["spec"]["steps"][0]["updates"][0]["value"])


ExecutorMachine.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestExecutorMachine = ExecutorMachine.TestCase


def _scores(machine: ExecutorMachine) -> list[tuple[str, float]]:
    with machine.store.engine.connect() as conn:
        return [(r[0], float(r[1] or 0)) for r in conn.execute(select(c.contacts.c.email, c.contacts.c.score))]


# --- examples the machine found worth keeping -------------------------------------------------------


@pytest.fixture
def machine() -> Any:
    m = ExecutorMachine()
    yield m
    m.teardown()


def test_happy_path_through_every_step(machine: ExecutorMachine) -> None:
    machine.setup("running", once_only=True)
    machine.trigger(CONTACTS[0])  # SE: goes on to the wait for the link
    machine.trigger(CONTACTS[1])  # NO: the split's everyone_else exits
    machine.run()
    machine.database_invariants()
    machine.advance(timedelta(days=1))
    machine.run()
    machine.click(CONTACTS[0])
    machine.run()
    machine.database_invariants()
    rows = {row[2]: row for row in machine.participants().values()}
    assert rows[CONTACTS[0]][3:5] == (FINISHED, "done")
    assert rows[CONTACTS[1]][3] == DROPPED_OUT
    score = dict(_scores(machine))
    assert score[CONTACTS[0]] == 1
    assert score[CONTACTS[1]] == 1


def test_event_from_while_not_running_does_not_enroll_after_start(machine: ExecutorMachine) -> None:
    """Triggers are off while a flow is not running: a form submitted then must not enroll the
    contact when the executor gets to the event after the flow was started."""
    machine.setup("not_running", once_only=True)
    machine.trigger(CONTACTS[0])
    machine.clock.advance(timedelta(minutes=1))
    machine.set_status("running")
    machine.run()
    assert list(machine.participants().values()) == []


def test_count_of_runs_is_consistent_with_executor_stats(machine: ExecutorMachine) -> None:
    machine.setup("running", once_only=False)
    for contact in CONTACTS:
        machine.trigger(contact)
    stats = machine.executor.run_once()
    assert stats.events >= len(CONTACTS)  # the triggers, and the contact_updated events of the flow
    assert stats.steps == len(machine.step_runs())
