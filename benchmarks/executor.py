"""How fast does the step executor move participants, and how much does batching buy?

What is measured: ``Executor.run_once`` draining 100,000 participants (``--participants``)
through a flow of five internal steps — update_contact (score + 1), add_to_selection,
split on the country, a one-minute wait, finish — in two passes: the first takes every
participant through the first three steps onto the wait, the clock (a ManualClock) moves
past the wait, the second takes everyone through the wait to the finish. Both passes
are timed together, including storing the events the steps emit (contact_updated,
added_to_selection). No flow here reacts to those types, so they are stored processed
(a flow with such a trigger or success criterion would send them through the event
pass; ``--listener`` adds one, so every contact_updated goes that way). The unit is the
participant-step: one row in ``step_runs``; 100k participants make 500k of them.

On SQLite the executor runs in this process. With ``--postgres`` it runs on PostgreSQL
(``RECONCILER_TEST_PG_URL`` or ``--pg-url``, in a schema of its own, dropped after) in 1
and in 2 worker processes sharing the database (``FOR UPDATE SKIP LOCKED``); every
worker has its own ManualClock set to the same instant, and the timer runs from the
moment all workers are ready to the moment the last one is done.

The baseline, in the same run on the same database kind: the naive way, one
transaction per participant-step — begin, SELECT the participant and its contact, do
the step with single-row statements (UPDATE the score, look up the selection and the
membership, INSERT it, store the event), INSERT the step run, UPDATE the participant,
commit — on a smaller sample (``--baseline``, 5,000 participants), scaled to steps/s.
It processes no events, so it is flattered a little.

Setup (contacts and participants, bulk-inserted; on PostgreSQL then ANALYZEd, as
autovacuum would) is not timed. Targets are printed as
PASS/FAIL lines and never fatal (timings on shared machines are noisy): SQLite ≥ 20,000
steps/s, PostgreSQL ≥ 10,000 steps/s, ≥ 10× the naive baseline, peak RSS ≤ 300 MB.

    .venv/bin/python benchmarks/executor.py                      # SQLite, 100k
    .venv/bin/python benchmarks/executor.py --participants 20000 --profile
    .venv/bin/python benchmarks/executor.py --postgres           # and PostgreSQL, 1 and 2 workers
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common import profiled, verdict
from sqlalchemy import create_engine, func, insert, select, text, update

from reconciler.apply import ApplyOptions, apply
from reconciler.clock import ManualClock
from reconciler.executor import BATCH_SIZE, Executor, RunStats
from reconciler.spec.bundle import bundle_document
from reconciler.state import Store
from reconciler.state import crm as c
from reconciler.state import tables as t
from reconciler.state.executor_store import insert_participants

FLOW = "bench"
STEPS = 5
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
WAIT = timedelta(minutes=1)
TARGET_SQLITE = 20_000
TARGET_PG = 10_000
TARGET_RATIO = 10.0
TARGET_RSS_MB = 300
BARRIER_TIMEOUT_S = 3600  # hang guard: a pass never takes an hour
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def flow_document() -> dict[str, Any]:
    return {
        "apiVersion": "reconciler/v1",
        "kind": "Flow",
        "metadata": {"name": FLOW},
        "spec": {
            "status": "running",
            "triggers": [{"type": "manual"}],
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
                        {"name": "se", "when": {"field": "country", "value": "SE"}, "next": "pause"},
                        {"name": "everyone_else", "next": "pause"},
                    ],
                },
                {"id": "pause", "type": "wait", "duration": "1m"},
                {"id": "done", "type": "finish"},
            ],
        },
    }


# --- databases ---------------------------------------------------------------------------------


@contextmanager
def sqlite_url() -> Iterator[str]:
    directory = Path(tempfile.mkdtemp(prefix="bench-executor-"))
    try:
        yield f"sqlite:///{directory / 'state.db'}"
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def pg_url(base: str) -> Iterator[str]:
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def listener_document() -> dict[str, Any]:
    """A running flow that awaits contact_updated (of a field the bench flow never changes)."""
    return {
        "apiVersion": "reconciler/v1",
        "kind": "Flow",
        "metadata": {"name": "bench-listener"},
        "spec": {
            "status": "running",
            "triggers": [{"type": "contact_updated", "fields": ["category"]}],
            "steps": [{"id": "done", "type": "finish"}],
        },
    }


def populate(url: str, count: int, *, listener: bool = False) -> None:
    """The flow, ``count`` contacts with score 0 and one participant each, due at START."""
    store = Store.open(url)
    try:
        apply(
            store,
            [bundle_document(flow_document(), {})] + ([bundle_document(listener_document(), {})] if listener else []),
            clock=ManualClock(START),
            options=ApplyOptions(actor="bench", lock_wait=timedelta(0)),
        )
        record = store.flow(FLOW)
        assert record is not None and record.status == "running"
        with store.transaction() as tx:
            for start in range(0, count, 5000):  # in chunks, so the setup stays small in memory too
                part = range(start, min(start + 5000, count))
                tx.c.execute(
                    insert(c.contacts),
                    [
                        {
                            "email": f"p{i:07d}@example.com",
                            "country": ("SE", "NO")[i % 2],
                            "score": 0,
                            "interests": [],
                            "subscriptions": [],
                            "consent_marketing": False,
                            "blocked": False,
                            "retired": False,
                            "custom": {},
                            "created_at": START,
                            "updated_at": START,
                        }
                        for i in part
                    ],
                )
                insert_participants(
                    tx,
                    [
                        {
                            "flow_id": record.id,
                            "contact": f"p{i:07d}@example.com",
                            "status": "active",
                            "step_id": "tag",
                            "due_at": START,
                            "reason": None,
                            "revision_seen": record.revision,
                            "enrolled_at": START,
                            "updated_at": START,
                            "visit": 0,
                            "step_state": None,
                            "success_at": None,
                            "finished_at": None,
                        }
                        for i in part
                    ],
                )
        if store.engine.dialect.name == "postgresql":
            # Fresh bulk-loaded tables have no planner statistics until autovacuum analyzes them
            # (and it may be off, as on the test server): without them the per-event
            # participations query scans the whole status index, and the run turns quadratic.
            with store.engine.connect() as conn:
                conn.execute(text("ANALYZE"))
                conn.commit()
    finally:
        store.close()


def check(url: str, count: int) -> int:
    """Every participant finished with five step runs and a score of 1; returns the step runs."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            p = t.participants
            statuses: dict[Any, int] = dict(conn.execute(select(p.c.status, func.count()).group_by(p.c.status)).all())
            assert statuses == {"finished": count}, statuses
            scores: dict[Any, int] = dict(
                conn.execute(select(c.contacts.c.score, func.count()).group_by(c.contacts.c.score)).all()
            )
            assert scores == {1.0: count}, scores
            runs = int(conn.execute(select(func.count()).select_from(c.step_runs)).scalar_one())
            assert runs == STEPS * count, runs
            return runs
    finally:
        engine.dispose()


# --- the executor --------------------------------------------------------------------------------


def drain(url: str, batch_size: int, *, ready: Any = None) -> RunStats:
    """Both passes in this process: through the first three steps, past the wait, to the end."""
    store = Store.open(url, migrate=False)
    clock = ManualClock(START)
    executor = Executor(store, clock, batch_size=batch_size)
    try:
        if ready is not None:
            ready.wait()  # the start line: every worker has imported and connected
        stats = executor.run_once()
        clock.advance(WAIT + timedelta(seconds=1))
        if ready is not None:
            ready.wait()  # nobody takes the second pass before everyone is done with the first
        stats += executor.run_once()
        return stats
    finally:
        store.close()


def _worker(url: str, batch_size: int, ready: Any, out: Any) -> None:
    try:
        stats = drain(url, batch_size, ready=ready)
    except BaseException:
        ready.abort()  # nobody waits for a dead worker
        raise
    out.put((stats.steps, stats.events, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))


def run_workers(url: str, workers: int, batch_size: int) -> tuple[float, int, int, int]:
    """``workers`` processes draining the database; returns (seconds, steps, events, max worker RSS KB)."""
    ctx = mp.get_context("spawn")
    ready = ctx.Barrier(workers + 1, timeout=BARRIER_TIMEOUT_S)
    out = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(url, batch_size, ready, out)) for _ in range(workers)]
    for proc in procs:
        proc.start()
    ready.wait()
    started = time.perf_counter()
    ready.wait()  # between the passes (not timed separately: the slowest worker sets the pace)
    results = [out.get(timeout=3600) for _ in procs]
    elapsed = time.perf_counter() - started
    for proc in procs:
        proc.join()
        assert proc.exitcode == 0, f"a worker failed with exit code {proc.exitcode}"
    return elapsed, sum(r[0] for r in results), sum(r[1] for r in results), max(r[2] for r in results)


# --- the naive baseline ----------------------------------------------------------------------------


def naive(url: str) -> tuple[float, int]:
    """One transaction per participant-step, row by row; returns (seconds, steps)."""
    store = Store.open(url, migrate=False)
    p, ct, sel, mem, runs, ev = t.participants, c.contacts, c.selections, c.selection_members, c.step_runs, c.events
    order = ["tag", "list", "route", "pause", "done"]
    steps = 0
    try:
        with store.engine.connect() as conn:
            ids = list(conn.execute(select(p.c.id).order_by(p.c.id)).scalars())
        now = START
        started = time.perf_counter()
        for pid in ids:
            for step in order:
                if step == "done":
                    now = START + WAIT + timedelta(seconds=1)
                with store.engine.begin() as conn:
                    part = conn.execute(select(p).where(p.c.id == pid)).one()
                    contact = conn.execute(select(ct).where(ct.c.email == part.contact)).one()
                    values: dict[str, Any] = {"visit": part.visit + 1, "updated_at": now}
                    outcome = "done"
                    if step == "tag":
                        conn.execute(
                            update(ct)
                            .where(ct.c.id == contact.id)
                            .values(score=(contact.score or 0) + 1, updated_at=now)
                        )
                        conn.execute(
                            insert(ev).values(
                                type="contact_updated",
                                contact_email=contact.email,
                                subject=None,
                                data={"changed": ["score"]},
                                source="flow",
                                occurred_at=now,
                            )
                        )
                    elif step == "list":
                        sid = conn.execute(select(sel.c.id).where(sel.c.name == "hot")).scalar()
                        if sid is None:
                            key = conn.execute(insert(sel).values(name="hot", created_at=now)).inserted_primary_key
                            assert key is not None
                            sid = key[0]
                        member = conn.execute(
                            select(mem.c.contact_id).where(mem.c.selection_id == sid, mem.c.contact_id == contact.id)
                        ).first()
                        if member is None:
                            conn.execute(insert(mem).values(selection_id=sid, contact_id=contact.id, added_at=now))
                            conn.execute(
                                insert(ev).values(
                                    type="added_to_selection",
                                    contact_email=contact.email,
                                    subject="hot",
                                    data={},
                                    source="flow",
                                    occurred_at=now,
                                )
                            )
                    elif step == "route":
                        outcome = "branch se" if contact.country == "SE" else "branch everyone_else"
                    elif step == "pause":
                        outcome = "waited"
                    if step == "done":
                        values.update(status="finished", step_id="done", due_at=None, finished_at=now)
                    else:
                        values.update(step_id=order[order.index(step) + 1], due_at=now)
                    conn.execute(
                        insert(runs).values(
                            participant_id=pid,
                            visit=part.visit,
                            step_id=step,
                            revision=part.revision_seen,
                            outcome=outcome,
                            at=now,
                        )
                    )
                    conn.execute(update(p).where(p.c.id == pid).values(**values))
                steps += 1
        return time.perf_counter() - started, steps
    finally:
        store.close()


# --- reporting ---------------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    participants: int
    steps: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.steps / self.seconds if self.seconds else 0.0


def peak_rss_mb() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, children


def measure_sqlite(participants: int, batch_size: int, profile: bool, listener: bool) -> Row:
    with sqlite_url() as url:
        populate(url, participants, listener=listener)
        started, cpu = time.perf_counter(), time.process_time()
        stats = profiled(lambda: drain(url, batch_size)) if profile else drain(url, batch_size)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        steps = check(url, participants)
        assert stats.steps == steps
        # CPU seconds too: on a shared VM they vary less than wall time between A/B runs.
        print(f"  sqlite: {stats.events} events processed on the way, {cpu:.2f} CPU s", file=sys.stderr)
        return Row("sqlite, 1 process" + (" (profiled)" if profile else ""), participants, steps, elapsed)


def measure_naive(make_url: Callable[[], Any], kind: str, participants: int) -> Row:
    with make_url() as url:
        populate(url, participants)
        elapsed, steps = naive(url)
        assert check(url, participants) == steps
        return Row(f"{kind}, naive (1 tx per step)", participants, steps, elapsed)


def measure_pg(base: str, participants: int, workers: int, batch_size: int, listener: bool) -> Row:
    with pg_url(base) as url:
        populate(url, participants, listener=listener)
        elapsed, steps, events, _ = run_workers(url, workers, batch_size)
        assert check(url, participants) == steps
        print(f"  postgres x{workers}: {events} events processed on the way", file=sys.stderr)
        return Row(f"postgres, {workers} process{'es' if workers > 1 else ''}", participants, steps, elapsed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--participants", type=int, default=100_000)
    parser.add_argument("--baseline", type=int, default=5_000, help="participants for the naive baseline")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--postgres", action="store_true", help="also run on PostgreSQL with 1 and 2 workers")
    parser.add_argument("--pg-url", default=os.environ.get("RECONCILER_TEST_PG_URL", DEFAULT_PG))
    parser.add_argument("--profile", action="store_true", help="cProfile the SQLite run: top 25")
    parser.add_argument("--listener", action="store_true", help="add a flow awaiting contact_updated events")
    args = parser.parse_args(argv)

    rows: list[Row] = []
    sqlite = measure_sqlite(args.participants, args.batch_size, args.profile, args.listener)
    rows.append(sqlite)
    sqlite_naive = measure_naive(sqlite_url, "sqlite", args.baseline)
    rows.append(sqlite_naive)
    pg_rows: list[Row] = []
    pg_naive: Row | None = None
    if args.postgres:
        for workers in (1, 2):
            pg_rows.append(measure_pg(args.pg_url, args.participants, workers, args.batch_size, args.listener))
        pg_naive = measure_naive(lambda: pg_url(args.pg_url), "postgres", args.baseline)
        rows += [*pg_rows, pg_naive]

    print()
    print(f"{'run':<34} {'participants':>12} {'steps':>9} {'seconds':>8} {'steps/s':>9}")
    for row in rows:
        print(f"{row.name:<34} {row.participants:>12,} {row.steps:>9,} {row.seconds:>8.2f} {row.rate:>9,.0f}")
    own, children = peak_rss_mb()
    print(f"peak RSS: this process {own:.0f} MB, largest worker process {children:.0f} MB")
    print()
    verdict(sqlite.rate >= TARGET_SQLITE, f"SQLite {sqlite.rate:,.0f} steps/s (target ≥ {TARGET_SQLITE:,})")
    ratio = sqlite.rate / sqlite_naive.rate if sqlite_naive.rate else float("inf")
    verdict(ratio >= TARGET_RATIO, f"SQLite {ratio:.1f}× the naive baseline (target ≥ {TARGET_RATIO:.0f}×)")
    for row in pg_rows:
        verdict(row.rate >= TARGET_PG, f"{row.name}: {row.rate:,.0f} steps/s (target ≥ {TARGET_PG:,})")
    if pg_rows and pg_naive is not None:
        best = max(r.rate for r in pg_rows)
        ratio = best / pg_naive.rate if pg_naive.rate else float("inf")
        verdict(ratio >= TARGET_RATIO, f"PostgreSQL {ratio:.1f}× the naive baseline (target ≥ {TARGET_RATIO:.0f}×)")
    verdict(max(own, children) <= TARGET_RSS_MB, f"peak RSS {max(own, children):.0f} MB (target ≤ {TARGET_RSS_MB} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
