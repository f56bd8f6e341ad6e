"""Leases: at most one holder of a named lock at a time, across processes and machines.

A lease lives in the state database with a holder and an expiry. The holder renews
it from a heartbeat thread every third of its time to live; a holder that dies
stops renewing, and the lease expires by itself — no stale lock to clean up by hand
(``reconcile force-unlock`` exists for the impatient). Used by ``apply`` (one apply
at a time) and by the watch daemon (one leader).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from reconciler.clock import Clock
from reconciler.errors import UserError
from reconciler.state.records import LeaseRecord
from reconciler.state.store import Store


class LeaseHeld(UserError):
    """Somebody else holds the lease and did not let go in time."""

    def __init__(self, name: str, held: LeaseRecord) -> None:
        super().__init__(
            f"the {name} lock is held by {held.holder} since {held.acquired_at:%Y-%m-%d %H:%M:%S}Z "
            f"(expires {held.expires_at:%H:%M:%S}Z unless renewed); try again later, or run "
            f"`reconcile force-unlock {name}` if that process is gone"
        )
        self.held = held


def new_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    """A held lease; renewed in the background until released."""

    def __init__(self, store: Store, name: str, holder: str, ttl: timedelta, clock: Clock) -> None:
        self.store, self.name, self.holder, self.ttl, self.clock = store, name, holder, ttl, clock
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._heartbeat, name=f"lease-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _heartbeat(self) -> None:
        interval = self.ttl.total_seconds() / 3
        while not self._stop.wait(interval):
            try:
                if not self.renew():
                    self.lost.set()
                    return
            except UserError:  # the database is away for a moment; the next beat retries
                continue

    def renew(self) -> bool:
        now = self.clock.now()
        with self.store.transaction() as tx:
            return tx.renew_lease(self.name, self.holder, now, now + self.ttl)

    def release(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        with self.store.transaction() as tx:
            tx.release_lease(self.name, self.holder)


def try_acquire(store: Store, name: str, holder: str, ttl: timedelta, clock: Clock) -> LeaseRecord | None:
    """One attempt: None when the lease is now ours, else the current holder's lease."""
    now = clock.now()
    with store.transaction() as tx:
        return tx.try_lease(name, holder, now, now + ttl)


@contextmanager
def hold(
    store: Store,
    name: str,
    *,
    clock: Clock,
    ttl: timedelta = timedelta(seconds=30),
    wait: timedelta = timedelta(0),
    poll: float = 0.25,
    holder: str | None = None,
) -> Iterator[Lease]:
    """Hold the lease ``name`` for the duration of the block, waiting up to ``wait`` for it."""
    holder = holder or new_holder()
    deadline = time.monotonic() + wait.total_seconds()
    while True:
        held = try_acquire(store, name, holder, ttl, clock)
        if held is None:
            break
        if time.monotonic() >= deadline:
            raise LeaseHeld(name, held)
        time.sleep(poll)
    lease = Lease(store, name, holder, ttl, clock)
    lease.start()
    try:
        yield lease
    finally:
        lease.release()


def force_release(store: Store, name: str) -> LeaseRecord | None:
    """Drop a lease whoever holds it; returns what was dropped."""
    held = store.lease(name)
    with store.transaction() as tx:
        tx.release_lease(name)
    return held
