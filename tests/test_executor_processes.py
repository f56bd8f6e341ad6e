"""``reconcile run`` as real processes sharing one PostgreSQL database.

A flow of four instant internal steps (update_contact: score + 1, add_to_selection,
split, finish) and tens of thousands of participants due now. Several workers drain
them at once (``FOR UPDATE SKIP LOCKED``); in the second test one worker is SIGKILLed
in the middle of its work and the others, started after, must finish everything.
Either way every effect happens exactly once: each contact's score went up by exactly
1, each participant has exactly four step runs (visits 0-3) and finished.

The flows have no waits, so nothing waits for time to pass; the only waits here are
polling loops with an overall deadline, as hang guards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, func, select, text

from reconciler.apply import ApplyOptions, apply
from reconciler.clock import ManualClock, SystemClock
from reconciler.executor import Executor
from reconciler.executor.batch import Batch
from reconciler.executor.catalog import Catalog
from reconciler.executor.enrollment import Enroller, process_events
from reconciler.executor.facts import FactLoader
from reconciler.spec.bundle import bundle_document
from reconciler.state import Store
from reconciler.state import crm as c
from reconciler.state import tables as t
from reconciler.state.crm_store import CrmTx, NewEvent, chunks
from reconciler.state.executor_store import claim_due, insert_participants

pytestmark = pytest.mark.postgres

FLOW = "bulk"
DEADLINE_S = 90.0  # hang guard for every wait on a child process
STEPS = ["tag", "list", "route", "done"]


def flow_document() -> dict[str, Any]:
    return {
        "apiVersion": "reconciler/v1",
        "kind": "Flow",
        "metadata": {"name": FLOW},
        "spec": {
            "status": "running",
            "triggers": [{"type": "manual"}, {"type": "form_submitted", "form": "signup"}],
            "steps": [
                {
                    "id": "tag",
                    "type": "update_contact",
                    "updates": [{"field": "score", "action": "increase", "value": 1}],
                },
                {"id": "list", "type": "add_to_selection", "selection": "hot"},
                {
                    "id": "route",
                    "type": "split",
                    "branches": [
                        {"name": "se", "when": {"field": "country", "value": "SE"}, "next": "done"},
                        {"name": "everyone_else", "next": "done"},
                    ],
                },
                {"id": "done", "type": "finish"},
            ],
        },
    }


@pytest.fixture
def url(pg_url: str) -> Iterator[str]:
    Store.open(pg_url).close()  # migrated before any child starts
    yield pg_url


@pytest.fixture
def watch(url: str) -> Iterator[Engine]:
    engine = create_engine(url)
    yield engine
    engine.dispose()


def populate(url: str, count: int) -> None:
    """``count`` contacts (score 0) and one participant each, active on the first step, due now.
    The selection the flow adds to does not exist yet: the workers race to create it."""
    now = datetime.now(UTC) - timedelta(seconds=1)
    store = Store.open(url)
    try:
        apply(
            store,
            [bundle_document(flow_document(), {})],
            clock=ManualClock(now),
            options=ApplyOptions(actor="t", lock_wait=timedelta(0)),
        )
        record = store.flow(FLOW)
        assert record is not None and record.status == "running"
        emails = [f"p{i:06d}@example.com" for i in range(count)]
        if not count:
            return
        with store.transaction() as tx:
            # The executor changes only the columns given, so a bulk insert of whole rows is
            # the same as upsert_contacts on an empty table, and ten times faster.
            tx.c.execute(
                c.contacts.insert(),
                [
                    {
                        "email": e,
                        "country": ("SE", "NO")[i % 2],
                        "score": 0,
                        "interests": [],
                        "subscriptions": [],
                        "consent_marketing": False,
                        "blocked": False,
                        "retired": False,
                        "custom": {},
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i, e in enumerate(emails)
                ],
            )
            for part in chunks(emails, 5000):
                insert_participants(
                    tx,
                    [
                        {
                            "flow_id": record.id,
                            "contact": e,
                            "status": "active",
                            "step_id": STEPS[0],
                            "due_at": now,
                            "reason": None,
                            "revision_seen": record.revision,
                            "enrolled_at": now,
                            "updated_at": now,
                            "visit": 0,
                            "step_state": None,
                            "success_at": None,
                            "finished_at": None,
                        }
                        for e in part
                    ],
                )
        with store.engine.connect() as conn:
            # Planner statistics, as autovacuum would gather them (it is off on the test
            # server): without them the executor's per-event participant lookup scans the
            # whole status index and 20,000 participants take minutes, not seconds.
            conn.execute(text("ANALYZE"))
            conn.commit()
    finally:
        store.close()


def worker(url: str, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    return subprocess.Popen(
        [sys.executable, "-m", "reconciler.cli", "--database-url", url, "run", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_for(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=DEADLINE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    return process.returncode, out, err


def scalar(engine: Engine, query: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def assert_exactly_once(engine: Engine, count: int) -> None:
    p, r = t.participants, c.step_runs
    with engine.connect() as conn:
        statuses: dict[Any, int] = dict(conn.execute(select(p.c.status, func.count()).group_by(p.c.status)).all())
        assert statuses == {"finished": count}, statuses
        visits: dict[Any, int] = dict(conn.execute(select(p.c.visit, func.count()).group_by(p.c.visit)).all())
        assert visits == {len(STEPS): count}, visits
        scores: dict[Any, int] = dict(
            conn.execute(select(c.contacts.c.score, func.count()).group_by(c.contacts.c.score)).all()
        )
        assert scores == {1.0: count}, f"score after the flow → contacts: {scores}"
        runs = conn.execute(
            select(func.count(), func.count(func.distinct(func.concat(r.c.participant_id, ":", r.c.visit))))
        ).one()
        assert tuple(runs) == (len(STEPS) * count, len(STEPS) * count), runs
        per_step: dict[Any, int] = dict(conn.execute(select(r.c.step_id, func.count()).group_by(r.c.step_id)).all())
        assert per_step == dict.fromkeys(STEPS, count), per_step
        bad = conn.execute(
            select(func.count())
            .select_from(p)
            .where(
                select(func.count()).where(r.c.participant_id == p.c.id).scalar_subquery() != len(STEPS),
            )
        ).scalar_one()
        assert bad == 0, f"{bad} participants without exactly {len(STEPS)} step runs"
        members = conn.execute(select(func.count()).select_from(c.selection_members)).scalar_one()
        assert members == count
        selections = conn.execute(select(func.count()).select_from(c.selections)).scalar_one()
        assert selections == 1


def test_four_workers_process_every_participant_exactly_once(url: str, watch: Engine) -> None:
    count = 20_000
    populate(url, count)
    processes = [worker(url, "--once", "--batch-size", "200") for _ in range(4)]
    results = [wait_for(p) for p in processes]
    for code, _out, err in results:
        assert code == 0, err[-3000:]
        assert "Traceback" not in err, err[-3000:]
    assert_exactly_once(watch, count)


def participant_locks(engine: Engine) -> int:
    """Row locks other sessions hold on the participants table (FOR UPDATE takes RowShareLock)."""
    query = text("SELECT count(*) FROM pg_locks WHERE relation = 'participants'::regclass AND pid <> pg_backend_pid()")
    return scalar(engine, query)


def test_a_killed_worker_loses_nothing_and_its_batch_is_redone(url: str, watch: Engine) -> None:
    count = 10_000  # in batches of 50: the kill lands in the middle of plenty of work
    populate(url, count)
    p = t.participants
    first = worker(url, "--batch-size", "50", "--interval", "0.05")  # runs until killed
    deadline = time.monotonic() + DEADLINE_S
    finished = select(func.count()).select_from(p).where(p.c.status == "finished")
    while scalar(watch, finished) < 300:
        assert first.poll() is None, first.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the first worker made no progress"
        time.sleep(0.01)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=DEADLINE_S)
    assert first.returncode == -signal.SIGKILL
    done_at_kill = scalar(watch, finished)
    assert done_at_kill < count, "the first worker finished everything before it was killed; make the work longer"
    # The server rolls back the dead session's transaction once it sees the socket close:
    # until then its batch is locked (and skipped) — wait for that, or --once workers
    # might find nothing unlocked and leave.
    while participant_locks(watch):
        assert time.monotonic() < deadline, "the killed worker's locks were never released"
        time.sleep(0.01)
    # Whatever the killed worker had in flight was rolled back: nobody is half-way.
    half = select(func.count()).select_from(p).where(p.c.status == "active", p.c.visit != 0)
    assert scalar(watch, half) == 0
    assert scalar(watch, select(func.count()).select_from(c.step_runs)) == len(STEPS) * done_at_kill
    assert scalar(watch, select(func.count()).select_from(c.contacts).where(c.contacts.c.score == 1)) == done_at_kill
    others = [worker(url, "--once", "--batch-size", "50") for _ in range(3)]
    for code, _out, err in (wait_for(o) for o in others):
        assert code == 0, err[-3000:]
        assert "Traceback" not in err, err[-3000:]
    assert_exactly_once(watch, count)


# --- races between workers, made deterministic with two transactions ------------------------------


def blocked_on_a_lock(engine: Engine, pid: int) -> bool:
    query = text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid AND wait_event_type = 'Lock'")
    with engine.connect() as conn:
        return bool(conn.execute(query, {"pid": pid}).scalar_one())


def test_two_batches_creating_the_same_selection_at_once(url: str, watch: Engine) -> None:
    """The selection a step adds to is created on first use; a second batch creating it at the
    same moment waits on the unique name, then must use the row the first one made (it used to
    die with UniqueViolation on uq_selections_name: reconcile run exited 1)."""
    populate(url, 400)
    store = Store.open(url)
    clock = SystemClock()
    errors: list[BaseException] = []
    backend: list[int] = []

    def batch(tx: Any) -> None:
        """What Executor.run_batch does in its transaction."""
        now = clock.now()
        claimed = claim_due(tx, now, 200)
        assert len(claimed) == 200
        Batch(tx, Catalog(tx.flows()), now).run(claimed)

    def second() -> None:
        try:
            with store.transaction() as tx:
                backend.append(int(tx.c.execute(text("SELECT pg_backend_pid()")).scalar_one()))
                batch(tx)
        except BaseException as exc:
            errors.append(exc)

    try:
        with store.transaction() as tx:
            batch(tx)  # creates "hot", not committed yet
            thread = threading.Thread(target=second)
            thread.start()
            deadline = time.monotonic() + DEADLINE_S
            # The second batch (the other 200) waits on the unique index for "hot".
            while thread.is_alive() and not (backend and blocked_on_a_lock(watch, backend[0])):
                assert time.monotonic() < deadline
                time.sleep(0.01)
        thread.join(DEADLINE_S)
        assert not errors, repr(errors[0])
        Executor(store, clock, batch_size=200).run_once()
    finally:
        store.close()
    p = t.participants
    assert scalar(watch, select(func.count()).select_from(p).where(p.c.status == "finished")) == 400


def test_two_workers_enrolling_the_same_contact_at_once(url: str, watch: Engine) -> None:
    populate(url, 0)
    store = Store.open(url)
    now = datetime.now(UTC)
    try:
        with store.transaction() as tx:
            CrmTx(tx).upsert_contacts([{"email": "x@example.com", "country": "SE"}], now)
            CrmTx(tx).append_events(
                [NewEvent("form_submitted", "x@example.com", now, "signup", idempotency_key=f"k{i}") for i in (1, 2)]
            )
        # Two workers at once, each taking one event: event processing is serialized, so the
        # second sees the first's enrollment.
        barrier = threading.Barrier(2)
        handled: list[int] = []

        def worker() -> None:
            barrier.wait(timeout=30)
            with store.transaction() as tx:
                crm = CrmTx(tx)
                enroller = Enroller(tx, crm, Catalog(tx.flows()), FactLoader(crm), now)
                handled.append(process_events(enroller, 1))

        threads = [threading.Thread(target=worker) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert handled == [1, 1]
    finally:
        store.close()
    p = t.participants
    assert scalar(watch, select(func.count()).select_from(p).where(p.c.contact == "x@example.com")) == 1
