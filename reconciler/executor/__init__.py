"""The step executor: turns events into enrollments and moves participants along.

``run_once`` drains what is due now — events first (triggers, success criteria,
awaited actions), then participants in batches — and returns; ``reconcile run`` and
the watch daemon call it on an interval, with the outbox dispatcher. Every batch is one transaction; any number
of executors can share one database (see ``state.executor_store``).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

from reconciler.clock import Clock
from reconciler.errors import UserError
from reconciler.executor.batch import Batch
from reconciler.executor.catalog import Catalog
from reconciler.executor.enrollment import Enroller, EnrollResult, process_events
from reconciler.executor.facts import FactLoader
from reconciler.spec import no_cyclic_gc
from reconciler.state import Store
from reconciler.state.crm_store import CrmTx
from reconciler.state.executor_store import claim_due

__all__ = ["BATCH_SIZE", "EnrollResult", "Executor", "RunStats"]

# Participants per batch (one transaction). Bigger batches write each touched index page
# once for more rows: 2,000 took about 10 % less time than 500 at 30k participants on
# SQLite, and still holds SQLite's write lock for well under a second.
BATCH_SIZE = 2000


@dataclass
class RunStats:
    events: int = 0
    batches: int = 0
    participants: int = 0
    steps: int = 0

    def __iadd__(self, other: RunStats) -> RunStats:
        self.events += other.events
        self.batches += other.batches
        self.participants += other.participants
        self.steps += other.steps
        return self


class Executor:
    def __init__(self, store: Store, clock: Clock, *, batch_size: int = BATCH_SIZE, event_batch: int = 500) -> None:
        self.store, self.clock = store, clock
        self.batch_size, self.event_batch = batch_size, event_batch

    def process_events(self) -> int:
        with no_cyclic_gc(), self.store.transaction() as tx:
            crm = CrmTx(tx)
            catalog = Catalog(tx.flows())
            enroller = Enroller(tx, crm, catalog, FactLoader(crm), self.clock.now())
            return process_events(enroller, self.event_batch)

    def run_batch(self) -> RunStats:
        with no_cyclic_gc(), self.store.transaction() as tx:
            now = self.clock.now()
            claimed = claim_due(tx, now, self.batch_size)
            if not claimed:
                return RunStats()
            batch = Batch(tx, Catalog(tx.flows()), now)
            batch.run(claimed)
            return RunStats(batches=1, participants=len(claimed), steps=batch.steps_run)

    def run_once(self, *, max_rounds: int = 100_000, stop: threading.Event | None = None) -> RunStats:
        """Drain everything due now (or until ``stop`` is set, after the batch at hand)."""
        total = RunStats()
        for _ in range(max_rounds):
            if stop is not None and stop.is_set():
                break
            events = self.process_events()
            done = self.run_batch()
            total.events += events
            total += done
            if not events and not done.participants:
                break
        return total

    def enroll(self, flow_name: str, emails: Sequence[str]) -> EnrollResult:
        """Manual enrollment (``reconcile participants add``): the same rules as a trigger."""
        with self.store.transaction() as tx:
            crm = CrmTx(tx)
            catalog = Catalog(tx.flows())
            if catalog.record(flow_name) is None:
                raise UserError(f"no flow named {flow_name!r}")
            contacts = crm.contacts_by_email(emails)
            unknown = sorted({e.lower() for e in emails} - set(contacts))
            if unknown:
                raise UserError(f"no contact with e-mail {', '.join(unknown)}; import them first")
            enroller = Enroller(tx, crm, catalog, FactLoader(crm), self.clock.now())
            return enroller.enroll(flow_name, list(contacts.values()), source="manual")
