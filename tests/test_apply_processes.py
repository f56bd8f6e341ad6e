"""``reconcile apply`` as real processes: several at once, one killed halfway, a dead lock holder.

Every test runs the command line in child processes (``python -m reconciler.cli``)
against SQLite and PostgreSQL, and then looks at the database from the test process.
Time never passes by sleeping: a lease "expires" because its row says so, and the
only waits are polling loops with an overall deadline, as hang guards.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, func, select, text, update

from reconciler.apply import APPLY_LEASE
from reconciler.clock import SystemClock
from reconciler.desired import load_desired
from reconciler.spec.bundle import content_hash
from reconciler.state import Store
from reconciler.state import tables as t
from reconciler.state.lease import hold

LOCK_TIMEOUT = "120"
DEADLINE_S = 90.0  # hang guard for every wait on a child process


# --- a spec repository of many small flows ------------------------------------------------------


def flow(number: int, version: int) -> dict[str, Any]:
    """A valid flow without content files; ``version`` changes every step a little."""
    return {
        "apiVersion": "reconciler/v1",
        "kind": "Flow",
        "metadata": {"name": f"flow-{number:04d}"},
        "spec": {
            "status": ("running", "paused", "not_running")[number % 3],
            "update_policy": "pause_and_resume",
            "triggers": [{"type": "manual"}],
            "steps": [
                {
                    "id": "tag",
                    "type": "update_contact",
                    "updates": [{"field": "category", "action": "set", "value": f"lead-v{version}"}],
                },
                {"id": "pause", "type": "wait", "duration": f"{version}d"},
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


def write_flows(repo: Path, count: int, version: int) -> dict[str, str]:
    """Write ``count`` flows (JSON is YAML) and return their content hashes as apply will store them."""
    specs = repo / "specs"  # the repo fixture: reconciler.toml and specs/ in a temp dir
    for number in range(count):
        (specs / f"flow-{number:04d}.yaml").write_text(json.dumps(flow(number, version), indent=1))
    return {b.name: b.content_hash for b in load_desired([specs], frozenset())}


@pytest.fixture
def open_store() -> Iterator[Callable[[str], Store]]:
    """Open a store later in the test (after the children made the database); closed at teardown."""
    opened: list[Store] = []

    def open_(url: str) -> Store:
        opened.append(Store.open(url))
        return opened[-1]

    yield open_
    for store in opened:
        store.close()


def command(url: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "reconciler.cli", "--database-url", url, *args]


def reconcile(url: str, repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(url, *args), cwd=repo, capture_output=True, text=True, timeout=DEADLINE_S, check=False, env=child_env()
    )


def start(url: str, repo: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command(url, *args), cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env()
    )


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    env["RECONCILER_ACTOR"] = "process-test"
    return env


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=DEADLINE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    return process.returncode, out, err


def one_clean_error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, stderr
    assert lines[0].startswith("Error: ")
    return lines[0]


def applied_count(stdout: str) -> int:
    last = stdout.strip().splitlines()[-1]
    assert last.startswith("Applied "), stdout[-500:]
    return int(last.split()[1])


def count_revisions(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(t.revisions)).scalar_one())


def observer(url: str) -> Engine:
    """A plain engine for watching a running apply. The store's own SQLite engine starts
    every transaction, reads too, with BEGIN IMMEDIATE: it would queue behind the apply."""
    return create_engine(url)


def lease_row(engine: Engine) -> Any:
    with engine.connect() as connection:
        return connection.execute(select(t.leases).where(t.leases.c.name == APPLY_LEASE)).first()


def assert_converged(url: str, repo: Path) -> None:
    done = reconcile(url, repo, "plan", "--detailed-exitcode")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr


# --- several applies at once --------------------------------------------------------------------


def test_four_applies_at_once_create_every_flow_exactly_once(
    database_url: str, repo: Path, open_store: Callable[[str], Store]
) -> None:
    expected = write_flows(repo, 30, version=1)
    # A fresh database: the four also race to create the schema.
    processes = [start(database_url, repo, "apply", "specs", "--lock-timeout", LOCK_TIMEOUT) for _ in range(4)]
    results = [finish(p) for p in processes]
    for code, _, err in results:
        assert code == 0, err
        assert "Traceback" not in err
    assert sorted(applied_count(out) for _, out, _ in results) == [0, 0, 0, 30]

    store = open_store(database_url)
    flows = store.flows()
    assert {name: f.content_hash for name, f in flows.items()} == expected
    for name, record in flows.items():
        revisions = store.revisions(name)
        assert [(r.revision, r.kind, r.previous_revision) for r in revisions] == [(1, "apply", None)], name
        assert record.revision == 1 and revisions[0].content_hash == record.content_hash
    assert store.lease(APPLY_LEASE) is None  # every apply let go of the lock
    assert_converged(database_url, repo)


def test_apply_without_waiting_refuses_while_the_lock_is_held(database_url: str, repo: Path, store: Store) -> None:
    write_flows(repo, 3, version=1)
    with hold(store, APPLY_LEASE, clock=SystemClock(), ttl=timedelta(minutes=10)) as lease:
        done = reconcile(database_url, repo, "apply", "specs", "--lock-timeout", "0")
        assert done.returncode == 1
        line = one_clean_error_line(done.stderr)
        assert f"the apply lock is held by {lease.holder}" in line
        assert "reconcile force-unlock apply" in line
        assert store.flows() == {}  # nothing was applied
    assert store.lease(APPLY_LEASE) is None
    done = reconcile(database_url, repo, "apply", "specs", "--lock-timeout", "0")
    assert done.returncode == 0, done.stderr
    assert_converged(database_url, repo)


# --- an apply killed halfway --------------------------------------------------------------------


@dataclass(frozen=True)
class Killed:
    pid: int
    before: dict[str, str]  # content hash of each flow before the killed apply (empty: it created them)
    after: dict[str, str]  # ... and as the killed apply would have left it
    revisions: dict[str, int]  # revisions of each flow before the killed apply


def kill_halfway(url: str, repo: Path, store: Store, *, updates: bool, flows: int = 300) -> Killed:
    """Start an apply and SIGKILL it once some, not all, of its flows are written.

    Without ``updates`` the killed apply creates the flows; with it, version 1 is
    applied first and the killed apply updates every flow to version 2. Should an apply
    finish before it is caught, the next version is applied and caught instead."""
    before: dict[str, str] = {}
    first = 1
    if updates:
        before = write_flows(repo, flows, 1)
        done = reconcile(url, repo, "apply", "specs", "--lock-timeout", "0")
        assert done.returncode == 0, done.stderr
        first = 2
    watch = observer(url)
    try:
        for version in range(first, first + 5):
            after = write_flows(repo, flows, version)
            revisions = {name: record.revision for name, record in store.flows().items()}
            baseline = count_revisions(watch)
            process = start(url, repo, "apply", "specs", "--lock-timeout", "0")
            deadline = time.monotonic() + DEADLINE_S
            written = 0
            while process.poll() is None and written < 5:
                assert time.monotonic() < deadline, "the apply neither wrote anything nor finished"
                written = count_revisions(watch) - baseline
                time.sleep(0.002)
            if process.poll() is None and written < flows:
                os.kill(process.pid, signal.SIGKILL)
            code, _, err = finish(process)
            if code == -signal.SIGKILL:
                return Killed(process.pid, before, after, revisions)
            # too fast to catch: it must have applied everything
            assert code == 0, err
            assert count_revisions(watch) - baseline == flows
            before = after
    finally:
        watch.dispose()
    raise AssertionError("every apply finished before it could be killed")


@dataclass(frozen=True)
class Revision:
    revision: int
    previous: int | None
    kind: str
    content_hash: str | None
    spec: Any


def all_revisions(engine: Engine) -> dict[str, list[Revision]]:
    """Every flow's revisions, oldest first, in one query."""
    r = t.revisions
    with engine.connect() as connection:
        rows = connection.execute(select(r).order_by(r.c.flow_name, r.c.revision)).all()
    number = {row.id: row.revision for row in rows}
    found: dict[str, list[Revision]] = {}
    for row in rows:
        previous = number[row.previous_id] if row.previous_id is not None else None
        found.setdefault(row.flow_name, []).append(
            Revision(row.revision, previous, row.kind, row.content_hash, row.spec)
        )
    return found


def assert_each_flow_whole(store: Store, killed: Killed) -> int:
    """Every flow is fully old or fully new; returns how many are new."""
    flows = store.flows()
    history = all_revisions(store.engine)
    assert set(flows) <= set(killed.after)
    if killed.before:
        assert set(flows) == set(killed.before)
    assert set(history) == set(flows)  # no revision without its flow state
    new = 0
    for name, record in flows.items():
        assert record.content_hash == content_hash(record.spec, record.files), name
        revisions = history[name]
        assert [r.revision for r in revisions] == list(range(1, len(revisions) + 1)), name
        assert [r.previous for r in revisions] == [None, *range(1, len(revisions))], name
        assert record.revision == len(revisions), name
        newest = revisions[-1]
        assert (newest.kind, newest.content_hash, newest.spec) == ("apply", record.content_hash, record.spec), name
        if record.content_hash == killed.after[name]:
            new += 1
            assert len(revisions) == killed.revisions.get(name, 0) + 1, name
        else:
            assert record.content_hash == killed.before[name], name
            assert len(revisions) == killed.revisions[name], name
    return new


def test_a_killed_apply_leaves_whole_flows_and_force_unlock_recovers(
    database_url: str, repo: Path, store: Store
) -> None:
    killed = kill_halfway(database_url, repo, store, updates=False)
    total = len(killed.after)
    new = assert_each_flow_whole(store, killed)
    assert 0 < new < total

    held = lease_row(store.engine)
    assert held is not None and f":{killed.pid}:" in held.holder  # the dead process still holds the lock
    refused = reconcile(database_url, repo, "apply", "specs", "--lock-timeout", "0")
    assert refused.returncode == 1
    line = one_clean_error_line(refused.stderr)
    assert f"held by {held.holder}" in line and "reconcile force-unlock apply" in line
    assert assert_each_flow_whole(store, killed) == new  # the refused apply changed nothing

    unlocked = reconcile(database_url, repo, "force-unlock")
    assert (unlocked.returncode, unlocked.stdout) == (0, f"released the apply lock held by {held.holder}\n")
    done = reconcile(database_url, repo, "apply", "specs", "--lock-timeout", "0")
    assert done.returncode == 0, done.stderr
    assert applied_count(done.stdout) == total - new
    assert assert_each_flow_whole(store, killed) == total
    assert lease_row(store.engine) is None
    assert_converged(database_url, repo)


def test_an_apply_waits_for_a_dead_holders_lease_to_expire(database_url: str, repo: Path, store: Store) -> None:
    killed = kill_halfway(database_url, repo, store, updates=True)
    total = len(killed.after)
    new = assert_each_flow_whole(store, killed)
    assert 0 < new < total
    held = lease_row(store.engine)
    assert held is not None

    # How long an apply takes to start, load the specs and find the lock taken:
    started = time.monotonic()
    refused = reconcile(database_url, repo, "apply", "specs", "--lock-timeout", "0")
    to_refusal = time.monotonic() - started
    assert refused.returncode == 1 and "force-unlock" in one_clean_error_line(refused.stderr)

    waiting = start(database_url, repo, "apply", "specs")  # the default lock timeout: it waits
    try:
        # Half as long again later, it has met the lock and is still waiting for it, not failing.
        patience = time.monotonic() + 1.5 * to_refusal
        while time.monotonic() < patience:
            assert waiting.poll() is None, waiting.communicate()
            time.sleep(0.05)
        assert lease_row(store.engine) == held  # nobody took it, nobody renewed it
        # Time passes for the dead holder: its lease runs out, as it would 30 s after its last heartbeat.
        with store.engine.begin() as connection:
            connection.execute(
                update(t.leases)
                .where(t.leases.c.name == APPLY_LEASE)
                .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )
        code, out, err = finish(waiting)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.communicate()
    assert code == 0, err
    assert applied_count(out) == total - new
    assert assert_each_flow_whole(store, killed) == total
    assert lease_row(store.engine) is None
    assert_converged(database_url, repo)


# --- taking over an expired lease: two takers at the same moment (PostgreSQL) ---------------------


def _waiting_on_a_lock(observer: Engine, application: str) -> bool:
    with observer.connect() as connection:
        return bool(
            connection.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE application_name = :application AND wait_event_type = 'Lock'"
                ),
                {"application": application},
            ).scalar()
        )


@pytest.mark.postgres
def test_only_one_of_two_takers_gets_an_expired_lease(pg_url: str, pg_engine: Engine, repo: Path) -> None:
    write_flows(repo, 3, version=1)
    store = Store.open(pg_url)
    try:
        now = datetime.now(UTC)
        with store.transaction() as tx:  # a holder that died long ago
            assert (
                tx.try_lease(APPLY_LEASE, "dead:1:gone", now - timedelta(minutes=5), now - timedelta(minutes=4)) is None
            )
        child: subprocess.Popen[str] | None = None
        with store.transaction() as tx:
            # Taker A has updated the expired row and not committed yet ...
            assert tx.try_lease(APPLY_LEASE, "taker-a", now, now + timedelta(minutes=10)) is None
            # ... when taker B, an apply that will not wait, reads the same expired row.
            taker_b = f"taker-b-{uuid.uuid4().hex[:8]}"
            child = start(f"{pg_url}&application_name={taker_b}", repo, "apply", "specs", "--lock-timeout", "0")
            deadline = time.monotonic() + DEADLINE_S
            while child.poll() is None and not _waiting_on_a_lock(pg_engine, taker_b):
                assert time.monotonic() < deadline, "taker B neither finished nor waited for taker A"
                time.sleep(0.02)
        code, _, err = finish(child)  # A has committed: the lease is A's
        assert store.lease(APPLY_LEASE) is not None
        assert store.lease(APPLY_LEASE).holder == "taker-a"  # type: ignore[union-attr]
        assert code == 1, "taker B applied while taker A held the lock"
        assert "held by taker-a" in one_clean_error_line(err)
        assert store.flows() == {}
    finally:
        store.close()
