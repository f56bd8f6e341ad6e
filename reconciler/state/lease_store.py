"""SQL for leases: take, renew and release a named lock row.

Split from ``store`` so the lock's compare-and-set rules (take it when free, expired
or ours; lose the race gracefully) sit in one place of their own. ``lease`` holds a
lease for a block of code with a heartbeat on top of these statements; nothing here
waits, sleeps or starts a thread.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from reconciler.state import tables as t
from reconciler.state.records import LeaseRecord


class LeaseTx:
    """The lease statements of ``Tx`` (a mixin: ``c`` is the transaction's connection)."""

    c: Connection

    def try_lease(self, name: str, holder: str, now: datetime, expires_at: datetime) -> LeaseRecord | None:
        """Take the lease if it is free, expired or ours; else return who holds it."""
        row = self.c.execute(select(t.leases).where(t.leases.c.name == name)).first()
        if row is None:
            try:
                with self.c.begin_nested():
                    self.c.execute(
                        insert(t.leases).values(
                            name=name, holder=holder, acquired_at=now, expires_at=expires_at, heartbeat_at=now
                        )
                    )
            except IntegrityError:  # somebody inserted it first
                row = self.c.execute(select(t.leases).where(t.leases.c.name == name)).first()
                assert row is not None
                return lease_record(row)
            return None
        current = lease_record(row)
        if current.holder != holder and current.expires_at > now:
            return current
        taken = self.c.execute(
            update(t.leases)
            .where(
                t.leases.c.name == name,
                t.leases.c.holder == current.holder,
                t.leases.c.expires_at == current.expires_at,
            )
            .values(holder=holder, acquired_at=now, expires_at=expires_at, heartbeat_at=now)
        )
        if taken.rowcount != 1:  # somebody else took it between our read and our write
            row = self.c.execute(select(t.leases).where(t.leases.c.name == name)).first()
            return lease_record(row) if row is not None else current
        return None

    def renew_lease(self, name: str, holder: str, now: datetime, expires_at: datetime) -> bool:
        result = self.c.execute(
            update(t.leases)
            .where(t.leases.c.name == name, t.leases.c.holder == holder)
            .values(expires_at=expires_at, heartbeat_at=now)
        )
        return bool(result.rowcount)

    def release_lease(self, name: str, holder: str | None = None) -> bool:
        query = delete(t.leases).where(t.leases.c.name == name)
        if holder is not None:
            query = query.where(t.leases.c.holder == holder)
        return bool(self.c.execute(query).rowcount)


def read_lease(c: Connection, name: str) -> LeaseRecord | None:
    row = c.execute(select(t.leases).where(t.leases.c.name == name)).first()
    return lease_record(row) if row is not None else None


def lease_record(r: Row[Any]) -> LeaseRecord:
    return LeaseRecord(r.name, r.holder, r.acquired_at, r.expires_at, r.heartbeat_at)
