"""``reconcile watch``: the GitOps daemon.

One loop per process: when this process leads (a lease in the database, renewed
by a heartbeat, taken over when the leader dies), it applies the specs whenever a
file changes (watchfiles, debounced: an editor's save storm or a ``git checkout``
of many files is one reconcile) and on an interval anyway (a missed event never
leaves drift forever). Every process runs executor and outbox work. Drift is checked
on an interval, logged and counted; an out-of-band status is kept while the flow's
spec is unchanged, as ``apply`` keeps it, unless ``--self-heal``. An
invalid spec never stops the daemon and never applies half: the located errors are
logged and the last good state stays until the files are fixed. SIGTERM/SIGINT stop
claiming new work, let the current batch finish, release the lease and exit 0.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import watchfiles

from reconciler.apply import ApplyOptions, apply
from reconciler.clock import Clock
from reconciler.desired import load_desired, source_state
from reconciler.drift import IgnoreRule, detect_drift
from reconciler.errors import SpecError, UserError
from reconciler.executor import Executor
from reconciler.executor.dispatch import Dispatcher
from reconciler.runtime import SEND_OUTCOMES, Runtime, RuntimeSettings, open_runtime, stop_on_signals
from reconciler.state import Store
from reconciler.state.lease import Lease, new_holder, try_acquire
from reconciler.state.outbox_store import outbox_counts
from reconciler.state.records import OUTBOX_STATES
from reconciler.statuses import ParticipantStatus
from reconciler.watch.metrics import Metrics, serve

log = logging.getLogger("reconciler.watch")
LEADER_LEASE = "watch-leader"
EDITOR_TEMPORARY = (".swp", ".swx", "~", ".tmp", ".part")


@dataclass(frozen=True)
class WatchOptions:
    paths: Sequence[Path]
    known_scripts: frozenset[str] | None
    actor: str
    debounce_ms: int = 300
    reconcile_interval: float = 60.0
    drift_interval: float = 60.0
    run_interval: float = 1.0
    lease_ttl: timedelta = timedelta(seconds=15)
    self_heal: bool = False
    prune: bool = False
    ignore: Sequence[IgnoreRule] = ()
    require_clean: bool = False  # apply only specs that are their git commit (with the files they name)


class Daemon:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        options: WatchOptions,
        *,
        executor: Executor,
        dispatcher: Dispatcher | None,
        metrics: Metrics,
    ) -> None:
        self.store, self.clock, self.options = store, clock, options
        self.runtime, self.metrics = Runtime(executor, dispatcher), metrics
        self.stop = threading.Event()
        self.changed = threading.Event()
        self.ready = threading.Event()
        self._reconciled = False
        self.holder = new_holder()
        self.lease: Lease | None = None
        self._next_reconcile = 0.0
        self._next_drift = 0.0

    # --- the loop ----------------------------------------------------------------------------

    def run(self) -> None:
        watcher = threading.Thread(target=self._watch, name="watchfiles", daemon=True)
        watcher.start()
        log.info("watching", extra={"paths": [str(p) for p in self.options.paths], "holder": self.holder})
        try:
            while not self.stop.is_set():
                self._round()
                # A saved file wakes the loop at once; so does a stop request.
                self.changed.wait(self.options.run_interval)
        finally:
            self._step_down()
            watcher.join(timeout=5)
            log.info("stopped")

    def _round(self) -> None:
        try:
            leading = self._lead()
            now = time.monotonic()
            if leading and (self.changed.is_set() or now >= self._next_reconcile):
                self.changed.clear()
                try:
                    self.reconcile()
                except UserError:
                    self.changed.set()  # not lost: the next round tries again
                    raise
                self._next_reconcile = now + self.options.reconcile_interval
            if not leading:
                self.changed.clear()  # the leader applies; a follower only works the queue
            if not self.stop.is_set():
                self._work()
            if now >= self._next_drift:
                self.check_drift()
                self._next_drift = now + self.options.drift_interval
            self._observe()
            # Ready: the round went through, and (as leader) the specs were reconciled once.
            if self._reconciled or not leading:
                self.ready.set()
        except UserError as exc:  # the database is away, a lock is held: log and try again next round
            self.ready.clear()  # /readyz says 503 until a round goes through again
            log.warning("round failed: %s", exc)

    def _watch(self) -> None:
        # ``step`` is the quiet gap that ends a batch of changes: our debounce. ``debounce``
        # caps how long a batch may keep growing (a long git checkout).
        for changes in watchfiles.watch(
            *self.options.paths,
            step=self.options.debounce_ms,
            debounce=max(self.options.debounce_ms * 10, 1600),
            stop_event=self.stop,
            yield_on_timeout=False,
            raise_interrupt=False,
        ):
            relevant = [p for _, p in changes if not p.endswith(EDITOR_TEMPORARY)]
            if relevant:
                log.info("specs changed", extra={"files": sorted(set(relevant))[:20]})
                self.changed.set()

    # --- leadership ---------------------------------------------------------------------------

    def _lead(self) -> bool:
        # Renew now, not only in the heartbeat: a leader that froze past its lease must not apply.
        if self.lease is not None and (self.lease.lost.is_set() or not self.lease.renew()):
            log.warning("lost the leader lease")
            self.lease.lost.set()
            self.lease = None
        if self.lease is None:
            held = try_acquire(self.store, LEADER_LEASE, self.holder, self.options.lease_ttl, self.clock)
            if held is None:
                self.lease = Lease(self.store, LEADER_LEASE, self.holder, self.options.lease_ttl, self.clock)
                self.lease.start()
                self._next_reconcile = 0.0
                log.info("leading", extra={"holder": self.holder})
        self.metrics.leader.set(1 if self.lease else 0)
        return self.lease is not None

    def _step_down(self) -> None:
        if self.lease is not None:
            self.lease.release()
            self.lease = None
            self.metrics.leader.set(0)

    # --- the work --------------------------------------------------------------------------------

    def reconcile(self) -> None:
        try:
            desired = load_desired(self.options.paths, self.options.known_scripts)
        except SpecError as exc:
            self.metrics.spec_valid.set(0)
            self.metrics.reconciles.labels("invalid").inc()
            for diagnostic in exc.diagnostics:
                if diagnostic.is_error:
                    log.error(
                        "invalid spec: %s",
                        diagnostic,
                        extra={"file": diagnostic.location.file, "line": diagnostic.location.line},
                    )
            log.error("specs are invalid: keeping the last applied state")
            self._reconciled = True
            self.ready.set()
            return
        self.metrics.spec_valid.set(1)
        source = source_state(self.options.paths, desired)
        if self.options.require_clean and source.dirty is not False:
            self.metrics.reconciles.labels("unclean").inc()
            log.error(
                "--require-clean: not applying, the specs %s; keeping the last applied state",
                f"have uncommitted or untracked changes ({', '.join(source.changed)})"
                if source.changed
                else "are not in a git checkout with a commit",
                extra={"files": list(source.changed[:20])},
            )
            self._reconciled = True
            self.ready.set()
            return
        options = ApplyOptions(
            actor=self.options.actor,
            prune=self.options.prune,
            heal=self.options.self_heal,
            git_commit=source.commit,
            git_dirty=source.dirty,
            lock_wait=timedelta(seconds=5),
        )
        result = apply(self.store, desired, clock=self.clock, options=options)
        changes = [c for c in result.plan.changes if c.is_change]
        self.metrics.plan_changes.set(len(changes))
        self.metrics.blocked.set(len(result.blocked))
        self.metrics.reconciles.labels("ok" if not result.blocked else "blocked").inc()
        self.metrics.last_reconcile.set(time.time())
        for change in result.applied:
            log.info("applied", extra={"flow": change.flow, "action": change.action})
        for change in result.blocked:
            log.warning("blocked", extra={"flow": change.flow, "reason": change.reason})
        for change in result.plan.kept:
            log.info("kept out-of-band status", extra={"flow": change.flow, "status": change.status_after})
        self._reconciled = True
        self.ready.set()

    def _work(self) -> None:
        done = self.runtime.work(self.stop)
        self.metrics.steps.inc(done.steps.steps)
        self.metrics.events.inc(done.steps.events)
        for outcome in SEND_OUTCOMES:
            count = done.sends.get(outcome, 0)
            if count:
                self.metrics.outbox.labels(outcome).inc(count)

    def check_drift(self) -> None:
        try:
            desired = load_desired(self.options.paths, self.options.known_scripts)
        except SpecError:
            desired = None
        store = self.store
        drifts = detect_drift(
            store.flows(), store.last_revisions(), store.last_status_changes(), desired, self.options.ignore
        )
        self.metrics.drift_total.set(len(drifts))
        for kind in ("status", "edit", "unmanaged", "not_applied", "pending"):
            self.metrics.drift.labels(kind).set(sum(1 for d in drifts if d.kind == kind))
        for drift in drifts:
            log.warning("drift", extra={"flow": drift.flow, "kind": drift.kind, "detail": drift.detail})

    def _observe(self) -> None:
        occupancy = self.store.occupancy()
        self.metrics.participants.clear()  # flows deleted since the last round lose their series
        for flow, counts in occupancy.items():
            for status in ParticipantStatus:
                self.metrics.participants.labels(flow, status).set(counts.by_status.get(status, 0))
        with self.store.reading() as tx:
            outbox = outbox_counts(tx)
        self.metrics.outbox_rows.clear()
        for flow, by_state in outbox.items():
            for state in OUTBOX_STATES:
                self.metrics.outbox_rows.labels(flow, state).set(by_state.get(state, 0))
        oldest = self.store.oldest_due()
        now = self.clock.now()
        self.metrics.lag.set(max((now - oldest).total_seconds(), 0.0) if oldest else 0.0)


def run_daemon(
    store: Store,
    clock: Clock,
    options: WatchOptions,
    settings: RuntimeSettings,
    *,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
) -> None:
    """``reconcile watch``: the daemon with the shared runtime, until SIGTERM or SIGINT;
    ``/metrics``, ``/healthz`` and ``/readyz`` on ``metrics_port`` when one is given."""
    with open_runtime(store, clock, settings) as runtime:
        metrics = Metrics()
        daemon = Daemon(
            store, clock, options, executor=runtime.executor, dispatcher=runtime.dispatcher, metrics=metrics
        )

        def _stop() -> None:
            daemon.stop.set()
            daemon.changed.set()  # wake the loop now

        stop_on_signals(_stop)
        server = serve(metrics, metrics_port, daemon.ready.is_set, metrics_host) if metrics_port is not None else None
        try:
            daemon.run()
        finally:
            if server is not None:
                server.shutdown()
