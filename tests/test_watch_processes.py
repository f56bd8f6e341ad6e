"""``reconcile watch`` as a real process on a temp spec directory, on SQLite and PostgreSQL.

The daemon runs as ``python -m reconciler.cli watch`` with JSON logs (to a file) and
its metrics on a free port; the test edits the spec files as an editor or ``git
checkout`` would and looks at the database, the logs and ``/metrics``. Two daemons on
one PostgreSQL database share the leader lease; the leader is SIGKILLed and the
other takes over. Time never passes by sleeping: the dead leader's lease "expires"
because its row says so. The only waits are polling loops with a deadline, as hang
guards.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, select, update

from reconciler.clock import SystemClock
from reconciler.executor import Executor
from reconciler.state import Store
from reconciler.state import crm as c
from reconciler.state import tables as t
from reconciler.state.crm_store import CrmTx
from reconciler.watch.daemon import LEADER_LEASE

DEADLINE_S = 30.0  # hang guard for every wait on a child process
STOP_WITHIN_S = 10.0
DURATION_LINE = 12


def spec_text(name: str, *, status: str = "paused", duration: str = "1d") -> str:
    """A flow spec as an editor saves it; ``duration`` is on line 12."""
    return (
        "apiVersion: reconciler/v1\n"
        "kind: Flow\n"
        "metadata:\n"
        f"  name: {name}\n"
        "spec:\n"
        f"  status: {status}\n"
        "  triggers:\n"
        "    - type: manual\n"
        "  steps:\n"
        "    - id: pause\n"
        "      type: wait\n"
        f"      duration: {duration}\n"
        "    - id: done\n"
        "      type: finish\n"
    )


BULK = {
    "apiVersion": "reconciler/v1",
    "kind": "Flow",
    "metadata": {"name": "bulk"},
    "spec": {
        "status": "running",
        "triggers": [{"type": "manual"}],
        "steps": [
            {"id": "tag", "type": "update_contact", "updates": [{"field": "score", "action": "increase", "value": 1}]},
            {"id": "pause", "type": "wait", "duration": "1d"},
            {"id": "done", "type": "finish"},
        ],
    },
}


def save(specs: Path, name: str, text: str) -> None:
    """Write to a temporary name and rename: what editors and git do (one event, never half a file)."""
    temporary = specs / f".{name}.tmp"
    temporary.write_text(text)
    os.replace(temporary, specs / name)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    env["RECONCILER_ACTOR"] = "watch-process-test"
    return env


def reconcile(url: str, repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler.cli", "--database-url", url, *args],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        check=False,
        env=child_env(),
    )


class Watch:
    """One ``reconcile watch`` child: its logs (JSON lines in a file) and its HTTP endpoints."""

    def __init__(self, url: str, repo: Path, name: str, *extra: str) -> None:
        self.port = free_port()
        self.log_path = repo.parent / f"{repo.name}-{name}.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "reconciler.cli",
                "--database-url",
                url,
                "watch",
                "specs",
                "--log-format",
                "json",
                "--metrics-port",
                str(self.port),
                "--run-interval",
                "0.2",
                "--debounce-ms",
                "100",
                "--drift-interval",
                "1",
                *extra,
            ],
            cwd=repo,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=child_env(),
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def logs(self) -> list[dict[str, Any]]:
        entries = []
        for line in self.log_path.read_text().splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                assert line == self.log_path.read_text().splitlines()[-1], f"not a JSON log line: {line!r}"
        return entries

    def tail(self) -> str:
        return "\n".join(self.log_path.read_text().splitlines()[-30:])

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""  # not listening yet

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        status, body = self.get("/metrics")
        if status != 200:
            return {}
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(body)
            for sample in family.samples
        }

    def metric(self, name: str, **labels: str) -> float | None:
        return self.metrics().get((name, frozenset(labels.items())))

    def reconciles(self) -> float:
        return sum(v for (name, _), v in self.metrics().items() if name == "reconciler_reconciles_total")

    def wait_for(self, what: str, condition: Callable[[], object]) -> None:
        deadline = time.monotonic() + DEADLINE_S
        while not condition():
            assert self.process.poll() is None, f"the daemon died while waiting for {what}:\n{self.tail()}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{self.tail()}"
            time.sleep(0.05)

    def ready(self) -> bool:
        return self.get("/readyz")[0] == 200

    def terminate(self) -> tuple[int, float]:
        """SIGTERM; returns the exit code and the seconds it took."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        return code, time.monotonic() - started

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()


@pytest.fixture
def watches() -> Iterator[Callable[..., Watch]]:
    started: list[Watch] = []

    def start(url: str, repo: Path, name: str = "watch", *extra: str) -> Watch:
        started.append(Watch(url, repo, name, *extra))
        return started[-1]

    yield start
    for watch in started:
        watch.close()


@pytest.fixture
def migrated(database_url: str) -> str:
    Store.open(database_url).close()  # the schema exists before any child starts
    return database_url


def revision(url: str, flow: str) -> tuple[int, Any] | None:
    """(revision, wait duration) of a flow, read with a plain engine (never queues behind the daemon)."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            row = connection.execute(select(t.flows.c.revision, t.flows.c.spec).where(t.flows.c.name == flow)).first()
    finally:
        engine.dispose()
    if row is None:
        return None
    return row.revision, row.spec["spec"]["steps"][0].get("duration")


def flow_status(url: str, flow: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(select(t.flows.c.status).where(t.flows.c.name == flow)).scalar()
    finally:
        engine.dispose()


def leases(url: str) -> dict[str, str]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return {r.name: r.holder for r in connection.execute(select(t.leases))}
    finally:
        engine.dispose()


# --- one daemon: edits, an invalid edit, drift, SIGTERM ------------------------------------------


def test_the_daemon_applies_edits_skips_invalid_ones_reports_drift_and_stops_cleanly(
    migrated: str, repo: Path, watches: Callable[..., Watch]
) -> None:
    url = migrated
    specs = repo / "specs"
    save(specs, "demo.yaml", spec_text("demo", duration="1d"))
    save(specs, "live.yaml", spec_text("live", status="running"))
    save(specs, "bulk.yaml", json.dumps(BULK, indent=1))
    watch = watches(url, repo)
    watch.wait_for("/readyz", watch.ready)
    assert watch.get("/healthz") == (200, "ok\n")
    assert revision(url, "demo") == (1, "1d") and revision(url, "live") == (1, "1d")
    assert watch.metric("reconciler_leader") == 1
    assert LEADER_LEASE in leases(url) and f":{watch.pid}:" in leases(url)[LEADER_LEASE]

    # A saved edit of a paused flow's step is applied.
    save(specs, "demo.yaml", spec_text("demo", duration="2d"))
    watch.wait_for("the edit to be applied", lambda: revision(url, "demo") == (2, "2d"))
    assert any(e["msg"] == "applied" and e.get("flow") == "demo" for e in watch.logs())

    # A save storm (a git checkout of many files) is one reconcile.
    watch.wait_for("the reconcile to be counted", lambda: watch.reconciles() == 2)
    storm = repo / "storm"
    storm.mkdir()
    for number in range(10):
        (storm / f"extra-{number}.yaml").write_text(spec_text(f"extra-{number}"))
    (storm / "demo.yaml").write_text(spec_text("demo", duration="3d"))
    for path in sorted(storm.iterdir()):
        os.replace(path, specs / path.name)
    watch.wait_for("the storm to be applied", lambda: revision(url, "extra-9") is not None)
    watch.wait_for("the storm to be applied", lambda: revision(url, "demo") == (3, "3d"))
    # the count follows the commit (after the reconcile's git check): wait for it, then it is one
    watch.wait_for("the storm's reconcile to be counted", lambda: watch.reconciles() >= 3)
    assert watch.reconciles() == 3, watch.tail()

    # An invalid edit is logged with its place and ignored; the daemon stays up.
    save(specs, "demo.yaml", spec_text("demo", duration="soon"))
    watch.wait_for("the invalid spec to be reported", lambda: watch.metric("reconciler_specs_valid") == 0)
    located = [e for e in watch.logs() if e["msg"].startswith("invalid spec: ")]
    assert located, watch.tail()
    assert Path(located[0]["file"]).name == "demo.yaml" and located[0]["line"] == DURATION_LINE
    assert f"demo.yaml:{DURATION_LINE}:" in located[0]["msg"]
    assert located[0]["level"] == "error"
    assert revision(url, "demo") == (3, "3d")
    assert watch.process.poll() is None and watch.get("/healthz")[0] == 200
    watch.wait_for(
        "the invalid reconcile to be counted", lambda: watch.metric("reconciler_reconciles_total", result="invalid")
    )
    assert watch.metric("reconciler_reconciles_total", result="invalid") == 1

    # Fixed, it applies.
    save(specs, "demo.yaml", spec_text("demo", duration="4d"))
    watch.wait_for("the fixed spec to be applied", lambda: revision(url, "demo") == (4, "4d"))
    watch.wait_for("the specs to be valid again", lambda: watch.metric("reconciler_specs_valid") == 1)

    # An out-of-band pause is drift, reported and (without --self-heal) left alone.
    paused = reconcile(url, repo, "flow", "pause", "live")
    assert paused.returncode == 0, paused.stderr
    watch.wait_for("the status drift", lambda: watch.metric("reconciler_drift", kind="status") == 1)
    assert (watch.metric("reconciler_drift_count") or 0) >= 1
    assert any(e["msg"] == "drift" and e.get("flow") == "live" and e.get("kind") == "status" for e in watch.logs())
    save(specs, "demo.yaml", spec_text("demo", duration="5d"))  # a reconcile after the pause ...
    watch.wait_for("the next edit to be applied", lambda: revision(url, "demo") == (5, "5d"))
    assert flow_status(url, "live") == "paused"  # ... did not resume it

    # Work in flight when SIGTERM comes: 300 participants due on an update_contact step.
    store = Store.open(url)
    try:
        emails = [f"p{i:03d}@example.com" for i in range(300)]
        clock = SystemClock()
        with store.transaction() as tx:
            CrmTx(tx).upsert_contacts([{"email": e, "score": 0} for e in emails], clock.now())
        assert Executor(store, clock).enroll("bulk", emails).enrolled == emails
        watch.wait_for("the executor to start on them", lambda: watch.metric("reconciler_steps_executed_total") or 0)

        code, took = watch.terminate()
        assert code == 0, watch.tail()
        assert took < STOP_WITHIN_S, f"took {took:.1f} s to stop"
        logs = watch.logs()
        assert logs[-1]["msg"] == "stopped"
        assert not [e for e in logs if e["level"] in ("error", "critical") and "invalid" not in e["msg"]]
        assert "Traceback" not in watch.log_path.read_text()
        assert leases(url) == {}  # the leader lease is released, and no apply lock is left behind

        # Nothing lost, nothing done twice: finishing the rest leaves every contact scored once.
        Executor(store, clock).run_once()
        assert {(p.status, p.step_id) for p in store.participants("bulk")} == {("active", "pause")}
        with store.engine.connect() as connection:
            scores = connection.execute(select(c.contacts.c.score).where(c.contacts.c.email.in_(emails))).scalars()
            assert sorted(set(scores)) == [1]
    finally:
        store.close()


def test_watch_refuses_a_spec_path_that_does_not_exist(repo: Path) -> None:
    done = reconcile(f"sqlite:///{repo / 'state.db'}", repo, "watch", "nowhere")
    assert done.returncode == 1  # a usage error is a user error: exit 1, one clear message
    assert "nowhere: no such file or directory" in done.stderr
    assert "Traceback" not in done.stderr


def test_sigint_stops_the_daemon_like_sigterm(repo: Path, watches: Callable[..., Watch]) -> None:
    url = f"sqlite:///{repo / 'state.db'}"
    save(repo / "specs", "demo.yaml", spec_text("demo"))
    watch = watches(url, repo)
    watch.wait_for("/readyz", watch.ready)
    assert LEADER_LEASE in leases(url)
    started = time.monotonic()
    watch.process.send_signal(signal.SIGINT)
    assert watch.process.wait(timeout=DEADLINE_S) == 0, watch.tail()
    assert time.monotonic() - started < STOP_WITHIN_S
    assert leases(url) == {}
    assert "Traceback" not in watch.log_path.read_text()


def test_a_metrics_port_in_use_is_one_clear_error(repo: Path) -> None:
    save(repo / "specs", "demo.yaml", spec_text("demo"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = reconcile(f"sqlite:///{repo / 'state.db'}", repo, "watch", "specs", "--metrics-port", str(port))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1].startswith("Error: ")
    assert str(port) in done.stderr


# --- two daemons on one PostgreSQL database ---------------------------------------------------------


@pytest.mark.postgres
def test_two_daemons_one_leads_and_the_other_takes_over_when_the_leader_is_killed(
    pg_url: str, repo: Path, watches: Callable[..., Watch]
) -> None:
    Store.open(pg_url).close()
    specs = repo / "specs"
    save(specs, "demo.yaml", spec_text("demo", duration="1d"))
    first, second = watches(pg_url, repo, "first"), watches(pg_url, repo, "second")
    for watch in (first, second):
        watch.wait_for("/readyz", watch.ready)
    first.wait_for(
        "a leader", lambda: first.metric("reconciler_leader") == 1 or second.metric("reconciler_leader") == 1
    )
    leader, follower = (first, second) if first.metric("reconciler_leader") == 1 else (second, first)
    assert follower.metric("reconciler_leader") == 0
    assert f":{leader.pid}:" in leases(pg_url)[LEADER_LEASE]
    assert revision(pg_url, "demo") == (1, "1d")

    save(specs, "demo.yaml", spec_text("demo", duration="2d"))
    leader.wait_for("the leader to apply the edit", lambda: revision(pg_url, "demo") == (2, "2d"))
    assert follower.reconciles() == 0  # the follower never applies
    assert follower.process.poll() is None

    # The leader dies without a word: its lease stays until it expires.
    os.kill(leader.pid, signal.SIGKILL)
    assert leader.process.wait(timeout=DEADLINE_S) == -signal.SIGKILL
    held = leases(pg_url)[LEADER_LEASE]
    assert f":{leader.pid}:" in held
    assert follower.metric("reconciler_leader") == 0
    # Time passes for the dead leader: its lease runs out, as it would 15 s after its last heartbeat.
    engine = create_engine(pg_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                update(t.leases)
                .where(t.leases.c.name == LEADER_LEASE)
                .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )
    finally:
        engine.dispose()
    follower.wait_for("the follower to take over", lambda: follower.metric("reconciler_leader") == 1)
    assert f":{follower.pid}:" in leases(pg_url)[LEADER_LEASE]
    assert any(e["msg"] == "leading" for e in follower.logs())

    save(specs, "demo.yaml", spec_text("demo", duration="3d"))
    follower.wait_for("the new leader to apply the next edit", lambda: revision(pg_url, "demo") == (3, "3d"))

    code, took = follower.terminate()
    assert code == 0, follower.tail()
    assert took < STOP_WITHIN_S
    assert leases(pg_url) == {}
