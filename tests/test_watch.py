"""The ``reconcile watch`` daemon in process, on SQLite and PostgreSQL: one round at a time.

A round is driven by hand (``daemon._round()``, ``daemon.reconcile()``,
``daemon.check_drift()``); a file change is ``daemon.changed.set()``, as the
watchfiles thread would do it. The clock is a ManualClock: leases expire by
``clock.advance``, never by sleeping. Leases here live 15 minutes, so their
heartbeat (every 5 minutes of real time) never fires during a test. Metrics are read
from the daemon's own Prometheus registry; the HTTP endpoints are exercised on a
free port. The last tests check that the pipeline examples (CI workflows, pre-commit
hook, systemd unit) parse and only run commands and options that exist.
"""

from __future__ import annotations

import configparser
import json
import logging
import re
import shlex
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from ruamel.yaml import YAML

from reconciler.apply import break_glass
from reconciler.cli.app import cli
from reconciler.clock import ManualClock
from reconciler.errors import UserError
from reconciler.executor import Executor, RunStats
from reconciler.state import Store
from reconciler.state.crm_store import CrmTx
from reconciler.watch import Daemon, WatchOptions
from reconciler.watch.daemon import LEADER_LEASE
from reconciler.watch.logs import JsonFormatter
from reconciler.watch.metrics import Metrics, serve

ROOT = Path(__file__).resolve().parent.parent
LEASE_TTL = timedelta(minutes=15)
DEADLINE_S = 10.0  # hang guard for waits on threads


def spec_text(name: str = "demo", *, status: str = "paused", duration: str = "1d") -> str:
    """A flow spec as an editor would save it; ``duration`` sits on line 12."""
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


DURATION_LINE = 12


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))


@pytest.fixture
def specs(repo: Path) -> Path:
    return repo / "specs"


def save(specs: Path, text: str, name: str = "demo.yaml") -> Path:
    path = specs / name
    path.write_text(text)
    return path


DaemonFactory = Callable[..., Daemon]


@pytest.fixture
def make_daemon(database_url: str, clock: ManualClock, specs: Path) -> Iterator[DaemonFactory]:
    """Daemons on their own store each (as separate processes would be); stepped down at teardown."""
    made: list[tuple[Daemon, Store]] = []

    def make(*, self_heal: bool = False, executor: Executor | None = None, store: Store | None = None) -> Daemon:
        own = store or Store.open(database_url)
        options = WatchOptions(
            paths=[specs],
            known_scripts=frozenset(),
            actor="watch-test",
            debounce_ms=50,
            reconcile_interval=3600.0,  # only the first round and changes reconcile
            drift_interval=3600.0,
            run_interval=0.05,
            lease_ttl=LEASE_TTL,
            self_heal=self_heal,
        )
        daemon = Daemon(
            own,
            clock,
            options,
            executor=executor or Executor(own, clock),
            dispatcher=None,
            metrics=Metrics(),
        )
        made.append((daemon, own))
        return daemon

    yield make
    for daemon, own in made:
        daemon.stop.set()
        daemon._step_down()
        own.close()


def metric(daemon: Daemon, name: str, **labels: str) -> float | None:
    return daemon.metrics.registry.get_sample_value(name, labels)


def reconciles(daemon: Daemon, result: str) -> float:
    return metric(daemon, "reconciler_reconciles_total", result=result) or 0.0


def enroll(store: Store, clock: ManualClock, flow: str, count: int) -> list[str]:
    emails = [f"c{i}@example.com" for i in range(count)]
    with store.transaction() as tx:
        CrmTx(tx).upsert_contacts([{"email": e, "consent_marketing": True} for e in emails], clock.now())
    result = Executor(store, clock).enroll(flow, emails)
    assert result.enrolled == emails
    return emails


# --- apply on change ----------------------------------------------------------------------------


def test_the_first_round_applies_and_a_change_is_applied_on_the_next_round(
    make_daemon: DaemonFactory, specs: Path
) -> None:
    save(specs, spec_text(duration="1d"))
    daemon = make_daemon()
    assert not daemon.ready.is_set()
    daemon._round()
    store = daemon.store
    record = store.flow("demo")
    assert record is not None and (record.revision, record.status) == (1, "paused")
    assert daemon.ready.is_set()
    assert metric(daemon, "reconciler_leader") == 1
    assert reconciles(daemon, "ok") == 1
    assert metric(daemon, "reconciler_specs_valid") == 1
    assert metric(daemon, "reconciler_plan_changes") == 1
    assert (metric(daemon, "reconciler_last_reconcile_timestamp") or 0) > 0

    save(specs, spec_text(duration="2d"))
    daemon._round()  # no file event and the interval is not up: nothing to do yet
    assert store.flow("demo").revision == 1  # type: ignore[union-attr]
    assert reconciles(daemon, "ok") == 1

    daemon.changed.set()  # what the watchfiles thread does after the debounce
    daemon._round()
    assert not daemon.changed.is_set()
    record = store.flow("demo")
    assert record is not None and record.revision == 2
    assert record.spec["spec"]["steps"][0]["duration"] == "2d"
    assert [r.applied_by for r in store.revisions("demo")] == ["watch-test", "watch-test"]
    assert reconciles(daemon, "ok") == 2
    assert metric(daemon, "reconciler_plan_changes") == 1

    daemon.changed.set()  # a save that changed nothing: a no-op reconcile
    daemon._round()
    assert store.flow("demo").revision == 2  # type: ignore[union-attr]
    assert reconciles(daemon, "ok") == 3
    assert metric(daemon, "reconciler_plan_changes") == 0


def test_a_status_change_in_the_spec_is_applied_without_self_heal(make_daemon: DaemonFactory, specs: Path) -> None:
    """Self-heal off skips only changes that undo out-of-band status changes, not the specs' own."""
    save(specs, spec_text(status="running"))
    daemon = make_daemon(self_heal=False)
    daemon._round()
    assert daemon.store.flow("demo").status == "running"  # type: ignore[union-attr]
    save(specs, spec_text(status="paused"))
    daemon.changed.set()
    daemon._round()
    record = daemon.store.flow("demo")
    assert record is not None and (record.status, record.revision) == ("paused", 2)


# --- invalid specs ------------------------------------------------------------------------------


def test_an_invalid_edit_keeps_the_last_state_and_a_fixed_one_applies(
    make_daemon: DaemonFactory, specs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    save(specs, spec_text("demo", duration="1d"))
    save(specs, spec_text("other", duration="1d"), "other.yaml")
    daemon = make_daemon()
    daemon._round()
    store = daemon.store
    assert {n: f.revision for n, f in store.flows().items()} == {"demo": 1, "other": 1}

    # One valid edit and one invalid one in the same save storm: neither applies (never half).
    save(specs, spec_text("other", duration="3d"), "other.yaml")
    broken = save(specs, spec_text("demo", duration="soon"))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="reconciler.watch"):
        daemon.changed.set()
        daemon._round()
    assert metric(daemon, "reconciler_specs_valid") == 0
    assert reconciles(daemon, "invalid") == 1
    flows = store.flows()
    assert {n: f.revision for n, f in flows.items()} == {"demo": 1, "other": 1}
    assert flows["other"].spec["spec"]["steps"][0]["duration"] == "1d"
    located = [r for r in caplog.records if r.getMessage().startswith("invalid spec: ")]
    assert located, caplog.text
    record = located[0]
    assert Path(record.file).name == broken.name  # type: ignore[attr-defined]
    assert record.line == DURATION_LINE  # type: ignore[attr-defined]
    assert f"{broken.name}:{DURATION_LINE}:" in record.getMessage()
    assert any("keeping the last applied state" in r.getMessage() for r in caplog.records)

    # The drift check still works while the specs are invalid (it compares with the last revisions).
    daemon.check_drift()
    assert metric(daemon, "reconciler_drift_count") == 0

    save(specs, spec_text("demo", duration="2d"))
    daemon.changed.set()
    daemon._round()
    assert metric(daemon, "reconciler_specs_valid") == 1
    flows = store.flows()
    assert {n: f.revision for n, f in flows.items()} == {"demo": 2, "other": 2}
    assert flows["demo"].spec["spec"]["steps"][0]["duration"] == "2d"
    assert flows["other"].spec["spec"]["steps"][0]["duration"] == "3d"


def test_invalid_specs_at_start_make_the_daemon_ready_but_apply_nothing(
    make_daemon: DaemonFactory, specs: Path
) -> None:
    save(specs, "apiVersion: reconciler/v1\nkind: Flow\nmetadata: {name: demo\n")  # a YAML syntax error
    daemon = make_daemon()
    daemon._round()
    assert daemon.ready.is_set()
    assert metric(daemon, "reconciler_specs_valid") == 0
    assert daemon.store.flows() == {}


def test_a_blocked_edit_is_counted_and_not_applied(make_daemon: DaemonFactory, specs: Path) -> None:
    save(specs, spec_text(status="running", duration="1d"))
    daemon = make_daemon()
    daemon._round()
    save(specs, spec_text(status="running", duration="2d"))  # a running flow cannot be edited
    daemon.changed.set()
    daemon._round()
    record = daemon.store.flow("demo")
    assert record is not None and (record.revision, record.status) == (1, "running")
    assert metric(daemon, "reconciler_plan_blocked") == 1
    assert reconciles(daemon, "blocked") == 1
    daemon.check_drift()
    assert metric(daemon, "reconciler_drift", kind="pending") == 1


# --- drift and self-heal -------------------------------------------------------------------------


@pytest.mark.parametrize("self_heal", [False, True])
def test_an_out_of_band_pause_is_drift_and_healed_only_with_self_heal(
    make_daemon: DaemonFactory, specs: Path, clock: ManualClock, self_heal: bool
) -> None:
    save(specs, spec_text(status="running"))
    daemon = make_daemon(self_heal=self_heal)
    daemon._round()
    store = daemon.store
    assert metric(daemon, "reconciler_drift_count") == 0

    result = break_glass(store, "demo", "pause", clock=clock, actor="oncall")
    assert (result.status_before, result.status_after) == ("running", "paused")
    daemon.check_drift()
    assert metric(daemon, "reconciler_drift_count") == 1
    assert metric(daemon, "reconciler_drift", kind="status") == 1
    for kind in ("edit", "unmanaged", "not_applied", "pending"):
        assert metric(daemon, "reconciler_drift", kind=kind) == 0

    clock.advance(timedelta(minutes=1))
    daemon.changed.set()
    daemon._round()  # a reconcile, then a drift check is not yet due: check by hand
    daemon.check_drift()
    record = store.flow("demo")
    assert record is not None
    if self_heal:
        assert record.status == "running"
        assert metric(daemon, "reconciler_drift_count") == 0
    else:
        assert record.status == "paused"  # report-only: the operator's pause stays
        assert metric(daemon, "reconciler_drift_count") == 1
        assert metric(daemon, "reconciler_drift", kind="status") == 1


def test_a_change_to_the_paused_flows_spec_restores_its_status_as_apply_does(
    make_daemon: DaemonFactory, specs: Path, clock: ManualClock
) -> None:
    """The one rule of apply and watch: kept while the spec is unchanged, restored by a change to it."""
    save(specs, spec_text(status="running"))
    daemon = make_daemon(self_heal=False)
    daemon._round()
    break_glass(daemon.store, "demo", "pause", clock=clock, actor="oncall")
    clock.advance(timedelta(minutes=1))
    save(specs, spec_text(status="running", duration="2d"))
    daemon.changed.set()
    daemon._round()
    record = daemon.store.flow("demo")
    assert record is not None and (record.status, record.revision) == ("running", 2)


def test_unmanaged_and_pending_drift_are_counted_by_kind(make_daemon: DaemonFactory, specs: Path) -> None:
    save(specs, spec_text("demo"))
    save(specs, spec_text("gone"), "gone.yaml")
    daemon = make_daemon()
    daemon._round()
    (specs / "gone.yaml").unlink()  # without --prune the flow stays: unmanaged
    save(specs, spec_text("demo", duration="5d"))  # not applied yet: pending
    daemon.check_drift()
    assert metric(daemon, "reconciler_drift", kind="unmanaged") == 1
    assert metric(daemon, "reconciler_drift", kind="pending") == 1
    assert metric(daemon, "reconciler_drift_count") == 2


# --- leadership ----------------------------------------------------------------------------------


def test_one_of_two_daemons_leads_and_the_other_takes_over_when_the_lease_expires(
    make_daemon: DaemonFactory, specs: Path, clock: ManualClock
) -> None:
    save(specs, spec_text(duration="1d"))
    first, second = make_daemon(), make_daemon()
    first._round()
    second._round()
    assert (metric(first, "reconciler_leader"), metric(second, "reconciler_leader")) == (1, 0)
    assert first.ready.is_set() and second.ready.is_set()  # a follower is ready once the database answers
    assert reconciles(second, "ok") == 0  # the follower never applies
    held = first.store.lease(LEADER_LEASE)
    assert held is not None and held.holder == first.holder
    assert held.expires_at == clock.now() + LEASE_TTL

    # A change while the leader is alive: only the leader applies it.
    save(specs, spec_text(duration="2d"))
    second.changed.set()
    second._round()
    assert first.store.flow("demo").revision == 1  # type: ignore[union-attr]
    first.changed.set()
    first._round()
    assert first.store.flow("demo").revision == 2  # type: ignore[union-attr]

    # The leader dies (no more heartbeats); a moment before its lease runs out, nothing changes.
    clock.advance(LEASE_TTL - timedelta(seconds=1))
    second._round()
    assert metric(second, "reconciler_leader") == 0
    clock.advance(timedelta(seconds=2))
    save(specs, spec_text(duration="3d"))
    second._round()  # the new leader reconciles at once, file event or not
    assert metric(second, "reconciler_leader") == 1
    held = second.store.lease(LEADER_LEASE)
    assert held is not None and held.holder == second.holder
    record = second.store.flow("demo")
    assert record is not None and record.revision == 3
    assert record.spec["spec"]["steps"][0]["duration"] == "3d"
    assert reconciles(second, "ok") == 1


def test_a_leader_that_steps_down_releases_the_lease_at_once(make_daemon: DaemonFactory, specs: Path) -> None:
    save(specs, spec_text())
    first, second = make_daemon(), make_daemon()
    first._round()
    second._round()
    assert metric(second, "reconciler_leader") == 0
    first._step_down()  # what SIGTERM does at the end of run()
    assert metric(first, "reconciler_leader") == 0
    assert first.store.lease(LEADER_LEASE) is None
    second._round()  # no waiting for the TTL
    assert metric(second, "reconciler_leader") == 1


def test_a_leader_whose_lease_was_taken_over_does_not_apply_again(
    make_daemon: DaemonFactory, specs: Path, clock: ManualClock
) -> None:
    save(specs, spec_text(duration="1d"))
    first, second = make_daemon(), make_daemon()
    first._round()
    clock.advance(LEASE_TTL + timedelta(seconds=1))  # the leader froze: no heartbeat for a whole TTL
    second._round()
    assert metric(second, "reconciler_leader") == 1
    save(specs, spec_text(duration="2d"))
    first.changed.set()
    first._round()  # the leader wakes up
    assert metric(first, "reconciler_leader") == 0
    assert first.store.flow("demo").revision == 1  # type: ignore[union-attr]


# --- executor work, lag and participants ---------------------------------------------------------


def test_a_follower_runs_executor_work_and_the_lag_and_participant_metrics(
    make_daemon: DaemonFactory, specs: Path, clock: ManualClock
) -> None:
    save(specs, spec_text(status="running", duration="1d"))
    leader, follower = make_daemon(), make_daemon()
    leader._round()
    follower._round()
    assert metric(follower, "reconciler_leader") == 0
    enroll(follower.store, clock, "demo", 3)  # active on the first step, due now

    clock.advance(timedelta(seconds=90))  # nobody ran them for a minute and a half
    follower._observe()
    assert metric(follower, "reconciler_executor_lag_seconds") == 90
    assert metric(follower, "reconciler_participants", flow="demo", status="active") == 3

    follower._round()  # every process runs executor work, leader or not: they start waiting
    assert metric(follower, "reconciler_executor_lag_seconds") == 0  # the next due time is in the future
    assert {p.step_id for p in follower.store.participants("demo")} == {"pause"}

    clock.advance(timedelta(days=1, seconds=1))
    follower._round()  # the wait is over: wait and finish ran for each
    assert {p.status for p in follower.store.participants("demo")} == {"finished"}
    assert metric(follower, "reconciler_steps_executed_total") == 6
    assert metric(follower, "reconciler_participants", flow="demo", status="finished") == 3
    assert metric(leader, "reconciler_steps_executed_total") == 0


def test_the_participants_gauge_drops_to_zero_when_a_status_drains(
    make_daemon: DaemonFactory, specs: Path, clock: ManualClock
) -> None:
    save(specs, spec_text(status="running", duration="1d"))
    daemon = make_daemon()
    daemon._round()
    enroll(daemon.store, clock, "demo", 3)
    daemon._round()
    assert metric(daemon, "reconciler_participants", flow="demo", status="active") == 3
    clock.advance(timedelta(days=1, seconds=1))
    daemon._round()
    assert metric(daemon, "reconciler_participants", flow="demo", status="finished") == 3
    assert not metric(daemon, "reconciler_participants", flow="demo", status="active")  # still 3


class _StopsAfterOneBatch(Executor):
    """Asks the daemon to stop (as SIGTERM does) while the first batch is being worked on."""

    def __init__(self, store: Store, clock: ManualClock) -> None:
        super().__init__(store, clock, batch_size=1)
        self.daemon: Daemon | None = None
        self.batches = 0

    def run_batch(self) -> RunStats:
        done = super().run_batch()
        if done.participants:
            self.batches += 1
            assert self.daemon is not None
            self.daemon.stop.set()
        return done


def test_a_stop_request_stops_claiming_after_the_current_batch(
    make_daemon: DaemonFactory, specs: Path, clock: ManualClock, database_url: str
) -> None:
    save(specs, spec_text(status="running"))
    store = Store.open(database_url)
    executor = _StopsAfterOneBatch(store, clock)
    daemon = make_daemon(executor=executor, store=store)
    executor.daemon = daemon
    daemon._round()  # creates the flow; nobody is due yet
    enroll(store, clock, "demo", 5)  # five due participants, one per batch
    daemon._round()
    assert executor.batches == 1


def test_a_failed_reconcile_is_logged_and_the_daemon_goes_on(
    make_daemon: DaemonFactory, specs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A round that fails (the database is away, the apply lock is held) is logged, not fatal."""
    save(specs, spec_text(duration="1d"))
    daemon = make_daemon()
    daemon._round()

    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise UserError("state database error: the database is away")

    monkeypatch.setattr("reconciler.watch.daemon.apply", unavailable)
    save(specs, spec_text(duration="2d"))
    daemon.changed.set()
    daemon._round()  # logged, and the daemon goes on
    assert daemon.store.flow("demo").revision == 1  # type: ignore[union-attr]
    assert not daemon.ready.is_set()  # /readyz: 503 while rounds fail
    monkeypatch.undo()
    daemon._round()  # the next round still runs the executor and the drift check
    assert metric(daemon, "reconciler_leader") == 1
    assert daemon.ready.is_set()


def test_a_change_whose_reconcile_failed_is_applied_on_the_next_round(
    make_daemon: DaemonFactory, specs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save(specs, spec_text(duration="1d"))
    daemon = make_daemon()
    daemon._round()

    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise UserError("the apply lock is held by ci-runner:42:abcd")

    monkeypatch.setattr("reconciler.watch.daemon.apply", unavailable)
    save(specs, spec_text(duration="2d"))
    daemon.changed.set()
    daemon._round()
    monkeypatch.undo()
    daemon._round()
    assert daemon.store.flow("demo").revision == 2  # type: ignore[union-attr]


# --- the watchfiles thread ----------------------------------------------------------------------


@pytest.fixture
def watching(tmp_path: Path, clock: ManualClock, specs: Path) -> Iterator[Callable[[int], Daemon]]:
    """A daemon (SQLite: the watcher never touches the database) whose watchfiles thread runs."""
    started: list[tuple[Daemon, threading.Thread, Store]] = []

    def start(debounce_ms: int) -> Daemon:
        store = Store.open(f"sqlite:///{tmp_path / 'watch.db'}")
        options = WatchOptions(paths=[specs], known_scripts=frozenset(), actor="t", debounce_ms=debounce_ms)
        daemon = Daemon(store, clock, options, executor=Executor(store, clock), dispatcher=None, metrics=Metrics())
        watcher = threading.Thread(target=daemon._watch, daemon=True)
        watcher.start()
        started.append((daemon, watcher, store))
        # The watch starts in its thread: save until it has seen a save, then let it settle.
        deadline = time.monotonic() + DEADLINE_S
        while not daemon.changed.wait(0.2):
            assert time.monotonic() < deadline, "the watcher never saw a change"
            save(specs, spec_text("armed"), "armed.yaml")
        time.sleep(0.3)
        daemon.changed.clear()
        return daemon

    yield start
    for daemon, watcher, store in started:
        daemon.stop.set()
        watcher.join(DEADLINE_S)
        assert not watcher.is_alive(), "the watcher did not stop with the stop event"
        store.close()


def changes_seen(caplog: pytest.LogCaptureFixture) -> list[list[str]]:
    return [[Path(f).name for f in r.files] for r in caplog.records if r.getMessage() == "specs changed"]  # type: ignore[attr-defined]


def test_the_watcher_flags_a_change_and_ignores_editor_temporaries(
    watching: Callable[[int], Daemon], specs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="reconciler.watch"):
        daemon = watching(100)
        caplog.clear()
        (specs / ".demo.yaml.swp").write_text("swap")
        (specs / "demo.yaml~").write_text("backup")
        (specs / "demo.yaml.tmp").write_text("half a file")
        save(specs, spec_text())
        assert daemon.changed.wait(DEADLINE_S)
        time.sleep(0.3)  # anything else the watcher would report
    seen = changes_seen(caplog)
    assert seen == [["demo.yaml"]], seen


def test_a_git_checkout_of_many_files_is_one_change(
    watching: Callable[[int], Daemon], specs: Path, repo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    staged = repo / "staged"
    staged.mkdir()
    for number in range(30):
        (staged / f"flow-{number:02d}.yaml").write_text(spec_text(f"flow-{number:02d}"))
    with caplog.at_level(logging.INFO, logger="reconciler.watch"):
        daemon = watching(300)
        caplog.clear()
        for path in sorted(staged.iterdir()):
            path.replace(specs / path.name)
        assert daemon.changed.wait(DEADLINE_S)
        time.sleep(0.6)  # twice the debounce: a second batch would have come by now
    seen = changes_seen(caplog)
    assert len(seen) == 1 and set(seen[0]) <= {p.name for p in specs.iterdir()}, seen


def test_saves_closer_together_than_the_debounce_are_one_change(
    watching: Callable[[int], Daemon], specs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="reconciler.watch"):
        daemon = watching(1000)
        caplog.clear()
        for name in ("a", "b", "c"):
            save(specs, spec_text(name), f"{name}.yaml")
            time.sleep(0.15)
        assert daemon.changed.wait(DEADLINE_S)
        time.sleep(1.2)  # past the debounce after the last save
    seen = changes_seen(caplog)
    assert len(seen) == 1, seen


# --- logs ---------------------------------------------------------------------------------------


def test_json_logs_carry_the_extra_fields() -> None:
    record = logging.LogRecord("reconciler.watch", logging.WARNING, __file__, 1, "drift", (), None)
    record.flow, record.kind = "demo", "status"
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert entry["level"] == "warning" and entry["logger"] == "reconciler.watch" and entry["msg"] == "drift"
    assert (entry["flow"], entry["kind"]) == ("demo", "status")
    assert datetime.fromisoformat(entry["ts"]).tzinfo is not None


# --- the metrics and health endpoints ------------------------------------------------------------


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=DEADLINE_S) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


METRIC_NAMES = (
    "reconciler_reconciles_total",
    "reconciler_plan_changes",
    "reconciler_plan_blocked",
    "reconciler_drift_count",
    'reconciler_drift{kind="status"}',
    "reconciler_participants",
    "reconciler_steps_executed_total",
    "reconciler_outbox_deliveries",
    "reconciler_executor_lag_seconds",
    "reconciler_leader",
    "reconciler_specs_valid",
    "reconciler_last_reconcile_timestamp",
)


def test_metrics_healthz_and_readyz_over_http(make_daemon: DaemonFactory, specs: Path) -> None:
    save(specs, spec_text(status="running"))
    daemon = make_daemon()
    server = serve(daemon.metrics, 0, daemon.ready.is_set)
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        assert get(f"{base}/healthz") == (200, "ok\n")
        assert get(f"{base}/readyz") == (503, "not ready\n")
        daemon._round()
        assert get(f"{base}/readyz") == (200, "ready\n")
        status, body = get(f"{base}/metrics")
        assert status == 200
        for name in METRIC_NAMES:
            assert name in body, name
        assert re.search(r"^reconciler_leader 1\.0$", body, re.MULTILINE), body
        assert re.search(r'^reconciler_reconciles_total\{result="ok"\} 1\.0$', body, re.MULTILINE), body
    finally:
        server.shutdown()
        server.server_close()


# --- pipeline examples: they parse, and run only commands that exist ------------------------------


def _help(*args: str) -> str:
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0, result.output
    return result.output


def _commands() -> set[str]:
    section = _help().split("Commands:", 1)[1]
    return {line.split()[0] for line in section.splitlines() if line.startswith("  ") and line.split()}


def _reconcile_invocations(script: str) -> list[list[str]]:
    """Every ``reconcile ...`` command line in a shell snippet, as argv (after ``reconcile``)."""
    found = []
    for line in script.replace("\\\n", " ").splitlines():
        for part in re.split(r"&&|\|\||;|\|", line):
            if not re.match(r"\s*(\w+=\S*\s+)*reconcile\s", part):
                continue
            words = shlex.split(part.split(">", 1)[0], comments=True)
            while words[0] != "reconcile":
                words.pop(0)  # VAR=value prefixes
            found.append(words[1:])
    return found


def _check_invocation(argv: list[str], commands: set[str]) -> str:
    global_options = {"--database-url"}
    words = list(argv)
    while words and words[0].startswith("-"):
        option = words.pop(0)
        assert option.split("=", 1)[0] in global_options, option
        if "=" not in option and words:
            words.pop(0)
    assert words, argv
    command = words[0]
    assert command in commands, f"reconcile {command}: no such command"
    options = {w.split("=", 1)[0] for w in words[1:] if w.startswith("--")}
    if options:
        text = _help(command)
        for option in options:
            assert re.search(rf"(^|[\s,]){re.escape(option)}\b", text), f"reconcile {command} {option}: no such option"
    return command + "".join(f" {o}" for o in sorted(options))


def _scripts(node: Any) -> Iterator[str]:
    """Every shell snippet: ``run:`` of GitHub steps, ``script:`` lists of GitLab jobs."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "run" and isinstance(value, str):
                yield value
            elif key in ("script", "before_script") and isinstance(value, list):
                yield from (v for v in value if isinstance(v, str))
            else:
                yield from _scripts(value)
    elif isinstance(node, list):
        for item in node:
            yield from _scripts(item)


def _load_yaml(path: Path) -> Any:
    return YAML(typ="safe", pure=True).load(path.read_text())


@pytest.mark.parametrize("name", ["github-actions.yml", "gitlab-ci.yml"])
def test_the_ci_examples_parse_and_run_validate_plan_markdown_and_apply(name: str) -> None:
    document = _load_yaml(ROOT / "examples" / "ci" / name)
    commands = _commands()
    ran = {
        _check_invocation(argv, commands) for script in _scripts(document) for argv in _reconcile_invocations(script)
    }
    assert any(r.startswith("validate") for r in ran), ran
    assert any(r.startswith("plan") and "--markdown" in r and "--detailed-exitcode" in r for r in ran), ran
    assert any(r.startswith("apply") and "--require-clean" in r for r in ran), ran
    text = (ROOT / "examples" / "ci" / name).read_text()
    assert "RECONCILER_DATABASE_URL" in text


def test_the_github_workflow_plans_on_pull_requests_and_applies_on_main_one_at_a_time() -> None:
    workflow = _load_yaml(ROOT / "examples" / "ci" / "github-actions.yml")
    triggers = workflow["on"]
    assert "pull_request" in triggers and triggers["push"]["branches"] == ["main"]
    jobs = workflow["jobs"]
    plan_jobs = [j for j in jobs.values() if "pull_request" in str(j.get("if", ""))]
    apply_jobs = [j for j in jobs.values() if "refs/heads/main" in str(j.get("if", ""))]
    assert len(plan_jobs) == 1 and len(apply_jobs) == 1
    assert "reconcile plan" in str(plan_jobs[0]) and "reconcile apply" not in str(plan_jobs[0])
    assert "reconcile apply" in str(apply_jobs[0])
    assert apply_jobs[0]["concurrency"]["cancel-in-progress"] is False  # applies queue, never cancel


def test_the_gitlab_pipeline_plans_on_merge_requests_and_applies_on_the_default_branch() -> None:
    pipeline = _load_yaml(ROOT / "examples" / "ci" / "gitlab-ci.yml")
    jobs = {k: v for k, v in pipeline.items() if isinstance(v, dict) and "script" in v}
    plan = [j for j in jobs.values() if "reconcile plan" in str(j["script"])]
    apply = [j for j in jobs.values() if "reconcile apply" in str(j["script"])]
    assert len(plan) == 1 and len(apply) == 1 and plan[0] is not apply[0]
    assert "merge_request_event" in str(plan[0]["rules"]) and "CI_DEFAULT_BRANCH" not in str(plan[0]["rules"])
    assert "CI_DEFAULT_BRANCH" in str(apply[0]["rules"]) and "merge_request_event" not in str(apply[0]["rules"])
    assert apply[0]["resource_group"]  # applies run one at a time


def test_the_pre_commit_hook_validates_the_whole_spec_tree() -> None:
    hooks = _load_yaml(ROOT / ".pre-commit-hooks.yaml")
    hook = next(h for h in hooks if h["id"] == "reconcile-validate")
    assert hook["language"] == "python"
    assert hook["pass_filenames"] is False
    assert re.search(hook["files"], "specs/flows/demo.yaml") and re.search(hook["files"], "x.yml")
    assert not re.search(hook["files"], "README.md")
    entry = shlex.split(hook["entry"])
    assert entry[0] == "reconcile"
    assert _check_invocation(entry[1:], _commands()).startswith("validate")


def test_the_systemd_unit_runs_watch_with_options_that_exist() -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(ROOT / "examples" / "systemd" / "reconciler-watch.service")
    service = parser["Service"]
    assert service["Type"] == "simple"
    assert service["Restart"] == "on-failure"
    assert service["KillSignal"] == "SIGTERM"
    assert int(service["TimeoutStopSec"]) >= 10
    assert "EnvironmentFile" in service
    argv = shlex.split(service["ExecStart"].replace("\\\n", " "))
    assert Path(argv[0]).name == "reconcile"
    assert _check_invocation(argv[1:], _commands()).startswith("watch")
    assert "--log-format" in argv and "--metrics-port" in argv


def test_outbox_states_are_gauges_read_from_the_database(
    make_daemon: DaemonFactory, specs: Path, clock: ManualClock
) -> None:
    from reconciler.state.executor_store import add_outbox

    save(specs, spec_text(status="running"))
    daemon = make_daemon()
    daemon._round()
    now = clock.now()
    with daemon.store.transaction() as tx:
        add_outbox(
            tx,
            [
                {
                    "idempotency_key": f"k{i}",
                    "participant_id": None,
                    "flow_name": "demo",
                    "revision": 1,
                    "step_id": "x",
                    "kind": "send_email",
                    "contact_email": f"c{i}@x.example",
                    "payload": {},
                    "state": state,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "last_error": None,
                    "created_at": now,
                    "updated_at": now,
                }
                for i, state in enumerate(["pending", "pending", "unknown"])
            ],
        )
    daemon._observe()
    assert metric(daemon, "reconciler_outbox_messages", flow="demo", state="pending") == 2
    assert metric(daemon, "reconciler_outbox_messages", flow="demo", state="unknown") == 1
    assert metric(daemon, "reconciler_outbox_messages", flow="demo", state="sent") == 0
