"""Apply: make the actual state match the specs, within the lifecycle rules.

Under the ``apply`` lease (one apply at a time per database), the plan is built
against the state as it is now, then each flow's change runs in one transaction:
a flow is either fully old or fully new, never half-applied, whatever happens to
the process. Blocked changes are skipped and reported. The break-glass commands
(``reconcile flow pause NAME`` …) live here too: same rules, same lease, recorded
as out-of-band status changes so ``drift`` shows them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from reconciler.clock import Clock
from reconciler.errors import UserError
from reconciler.lifecycle import TransitionError, check_action
from reconciler.plan import (
    Create,
    Delete,
    End,
    FlowChange,
    Pause,
    Plan,
    RecordSpec,
    Resume,
    Start,
    Update,
    UpdatePolicy,
    build_plan,
)
from reconciler.spec import Flow, no_cyclic_gc, start_blockers
from reconciler.spec.bundle import FlowBundle
from reconciler.spec.steps import Wait
from reconciler.state import Store, Tx
from reconciler.state.lease import hold
from reconciler.state.outbox_store import revision_spec
from reconciler.state.records import FlowRecord
from reconciler.statuses import FlowStatus
from reconciler.timing import wait_until, zone

APPLY_LEASE = "apply"
ENDED = "the flow was ended"


class ApplyConflict(UserError):
    """The state changed between planning and applying a flow."""


@dataclass(frozen=True)
class ApplyOptions:
    actor: str
    prune: bool = False
    dry_run: bool = False
    update_policy: UpdatePolicy | None = None
    git_commit: str | None = None  # the bare sha of HEAD
    git_dirty: bool | None = None  # the applied files differ from git_commit; None outside git
    lock_ttl: timedelta = timedelta(seconds=30)
    lock_wait: timedelta = timedelta(seconds=60)
    recompute_waits: bool = False  # participants waiting on a changed wait get the new due time
    heal: bool = False  # also undo out-of-band status changes of flows whose spec did not change (--self-heal)


@dataclass(frozen=True)
class ApplyResult:
    plan: Plan
    applied: tuple[FlowChange, ...]

    @property
    def blocked(self) -> tuple[FlowChange, ...]:
        return self.plan.blocked


def make_plan(
    store: Store,
    desired: Sequence[FlowBundle],
    *,
    prune: bool = False,
    update_policy: UpdatePolicy | None = None,
    heal: bool = False,
) -> Plan:
    """The plan against the state now; out-of-band status changes are kept unless ``heal``
    (the one rule of ``apply`` and ``watch``: see ``reconciler.plan.build_plan``)."""
    with no_cyclic_gc():
        flows, occupancy = store.flows(), store.occupancy()
        changes = store.last_status_changes() if any(f.status != f.applied_status for f in flows.values()) else {}
        return build_plan(
            desired,
            flows,
            occupancy,
            prune=prune,
            update_policy=update_policy,
            status_changes=changes,
            heal=heal,
        )


def apply(store: Store, desired: Sequence[FlowBundle], *, clock: Clock, options: ApplyOptions) -> ApplyResult:
    """Plan and apply under the lease; returns what was applied and what was blocked."""
    with hold(store, APPLY_LEASE, clock=clock, ttl=options.lock_ttl, wait=options.lock_wait) as lease:
        plan = make_plan(store, desired, prune=options.prune, update_policy=options.update_policy, heal=options.heal)
        if options.dry_run:
            return ApplyResult(plan, ())
        applied = []
        for change in plan.changes:
            if change.blocked or not change.is_change or not change.stages:
                continue
            if lease.lost.is_set():
                raise UserError("lost the apply lock (heartbeats failed): stopped; run apply again")
            with store.transaction() as tx:
                _FlowApplier(tx, change, clock.now(), options).run()
            applied.append(change)
        return ApplyResult(plan, tuple(applied))


class _FlowApplier:
    """Runs one flow's stages inside one transaction (a visitor over the stages)."""

    def __init__(self, tx: Tx, change: FlowChange, now: datetime, options: ApplyOptions) -> None:
        self.tx, self.change, self.now, self.options = tx, change, now, options
        self.name = change.flow
        self.new_spec = False

    def run(self) -> None:
        record = self.tx.flow(self.name)
        found = record.content_hash if record else None
        if found != self.change.expected_hash or (record and record.status != self.change.status_before):
            raise ApplyConflict(f"flow {self.name!r} changed while it was being applied; run apply again")
        recompute: Flow | None = None  # the new spec, when waiting participants get new due times
        for stage in self.change.stages:
            if isinstance(stage, Create):
                self._store_files(stage.bundle)
                self.tx.create_flow(
                    self.name,
                    stage.status,
                    spec=stage.bundle.document,
                    files=stage.bundle.file_digests,
                    content_hash=stage.bundle.content_hash,
                    now=self.now,
                )
                self.tx.set_status(self.name, stage.status, self.now, origin="apply", actor=self.options.actor)
                self.new_spec = True
            elif isinstance(stage, (Update, RecordSpec)):
                self._store_files(stage.bundle)
                self.tx.update_spec(
                    self.name,
                    spec=stage.bundle.document,
                    files=stage.bundle.file_digests,
                    content_hash=stage.bundle.content_hash,
                    now=self.now,
                )
                if isinstance(stage, Update):
                    for old, new, _ in stage.moves:
                        self.tx.move_participants(self._flow().id, old, new, self.now)
                    if self.options.recompute_waits:
                        recompute = stage.bundle.flow
                self.new_spec = True
            elif isinstance(stage, Delete):
                self.tx.delete_flow(self.name, self.now, origin="apply", actor=self.options.actor)
                self.tx.record_revision(
                    None,
                    name=self.name,
                    kind="delete",
                    now=self.now,
                    actor=self.options.actor,
                    git_commit=self.options.git_commit,
                    git_dirty=self.options.git_dirty,
                )
            else:
                change_status(self.tx, self._flow(), stage, self.now, origin="apply", actor=self.options.actor)
        if self.new_spec:
            revision = self.tx.record_revision(
                self._flow(),
                name=self.name,
                kind="apply",
                now=self.now,
                actor=self.options.actor,
                git_commit=self.options.git_commit,
                git_dirty=self.options.git_dirty,
            )
            if recompute is not None:
                self._recompute_waits(recompute, revision)

    def _recompute_waits(self, after: Flow, revision: int) -> None:
        """Participants waiting on a wait get the due time the new setting gives, counted
        from when they entered the wait (the time already waited counts; vendor tools
        leave them on the old time). When they entered: their due time less the wait of
        the revision that due time was worked out under — not the previous spec's, which
        an edit applied without this flag may have changed since."""
        flow = self._flow()
        lengths: dict[int, dict[str, Wait]] = {}
        for step in after.spec.steps:
            if not isinstance(step, Wait):
                continue
            dues = []
            for participant, due, seen in self.tx.waiting_on(flow.id, step.id):
                if step.until is not None:
                    dues.append((participant, wait_until(step, self.now, zone(after.spec.timezone))))
                    continue
                if seen not in lengths:
                    found = revision_spec(self.tx, self.name, seen)
                    steps = Flow.model_validate(found[0]).spec.steps if found else []
                    lengths[seen] = {s.id: s for s in steps if isinstance(s, Wait)}
                old = lengths[seen].get(step.id)
                if due is not None and old is not None and old.duration is not None and step.duration is not None:
                    dues.append((participant, due - old.duration + step.duration))
            self.tx.set_due(dues, self.now, revision)

    def _flow(self) -> FlowRecord:
        record = self.tx.flow(self.name)
        assert record is not None
        return record

    def _store_files(self, bundle: FlowBundle) -> None:
        blobs = []
        for ref in bundle.files.values():
            try:
                data = ref.path.read_bytes()
            except OSError as exc:
                raise ApplyConflict(f"{ref.name}: cannot read ({exc.strerror}); run apply again") from None
            if hashlib.sha256(data).hexdigest() != ref.sha256:
                raise ApplyConflict(f"{ref.name} changed while it was being applied; run apply again")
            blobs.append((ref.sha256, data))
        self.tx.put_blobs(blobs)


def change_status(
    tx: Tx, flow: FlowRecord, stage: Start | Pause | Resume | End, now: datetime, *, origin: str, actor: str
) -> int:
    """A status stage: triggers on/off, queued released, participants cancelled. Returns participants touched."""
    if isinstance(stage, End):
        tx.set_status(flow.name, FlowStatus.NOT_RUNNING, now, origin=origin, actor=actor)
        return tx.cancel_participants(flow.id, now, ENDED)
    if isinstance(stage, Pause):
        tx.set_status(flow.name, FlowStatus.PAUSED, now, origin=origin, actor=actor)
        return 0
    tx.set_status(flow.name, FlowStatus.RUNNING, now, origin=origin, actor=actor)
    steps = flow.spec["spec"]["steps"]
    return tx.release_queued(flow.id, steps[0]["id"], flow.revision, now) if steps else 0


_STAGES: dict[str, Start | Pause | Resume | End] = {
    "start": Start(),
    "pause": Pause(),
    "resume": Resume(),
    "end": End(),
}


@dataclass(frozen=True)
class BreakGlassResult:
    flow: str
    action: str
    status_before: FlowStatus
    status_after: FlowStatus | None
    participants: int


def break_glass(
    store: Store, name: str, action: str, *, clock: Clock, actor: str, lock_wait: timedelta = timedelta(seconds=30)
) -> BreakGlassResult:
    """``reconcile flow start|pause|resume|end|delete NAME``: an out-of-band change that drift will show."""
    with hold(store, APPLY_LEASE, clock=clock, wait=lock_wait), store.transaction() as tx:
        flow = tx.flow(name)
        if flow is None:
            raise UserError(f"no flow named {name!r}")
        try:
            target = check_action(flow.status, action)
        except TransitionError as exc:
            raise UserError(f"flow {name!r}: {exc}") from None
        now = clock.now()
        if action == "start" or (action == "resume" and target == FlowStatus.RUNNING):
            problems = start_blockers(Flow.model_validate(flow.spec))
            if problems:
                raise UserError(f"flow {name!r} cannot run: " + "; ".join(p.message for p in problems))
        if action == "delete":
            cancelled = tx.cancel_participants(flow.id, now, ENDED)
            tx.delete_flow(name, now, origin="break-glass", actor=actor)
            tx.record_revision(None, name=name, kind="delete", now=now, actor=actor, git_commit=None)
            return BreakGlassResult(name, action, flow.status, None, cancelled)
        touched = change_status(tx, flow, _STAGES[action], now, origin="break-glass", actor=actor)
        return BreakGlassResult(name, action, flow.status, target, touched)
