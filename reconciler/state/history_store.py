"""SQL for a flow's history: applied revisions and status changes.

Split from ``store`` because history outlives the flows it describes: it is kept by
flow name, not by flow id, so a deleted (or re-created) flow keeps its past, and
``history``, ``drift`` and the executor's "was it live then?" all read it. Rows are
only ever appended here, never changed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from reconciler.state import tables as t
from reconciler.state.records import FlowRecord, RevisionRecord, StatusChange


class HistoryTx:
    """The history statements of ``Tx`` (a mixin: ``c`` is the transaction's connection)."""

    c: Connection

    def last_revision(self, name: str) -> RevisionRecord | None:
        found = revisions(self.c, name, last=True)
        return found[0] if found else None

    def record_revision(
        self,
        flow: FlowRecord | None,
        *,
        name: str,
        kind: str,
        now: datetime,
        actor: str,
        git_commit: str | None,
        git_dirty: bool | None = None,
    ) -> int:
        """Append the flow's current state (or its deletion) to its history; returns the revision number."""
        previous = self.last_revision(name)
        number = (previous.revision if previous else 0) + 1
        previous_id = (
            self.c.execute(
                select(t.revisions.c.id).where(t.revisions.c.flow_name == name, t.revisions.c.revision == number - 1)
            ).scalar()
            if previous
            else None
        )
        self.c.execute(
            insert(t.revisions).values(
                flow_name=name,
                revision=number,
                kind=kind,
                status=flow.status if flow else None,
                spec=flow.spec if flow else None,
                files=flow.files if flow else None,
                content_hash=flow.content_hash if flow else None,
                applied_at=now,
                applied_by=actor,
                git_commit=git_commit,
                git_dirty=git_dirty,
                previous_id=previous_id,
            )
        )
        if flow is not None:
            self.c.execute(update(t.flows).where(t.flows.c.name == name).values(revision=number))
        return number


def revisions(c: Connection, name: str, *, last: bool = False) -> list[RevisionRecord]:
    """Every revision of a flow, oldest first (or only its newest)."""
    r = t.revisions
    if last:
        newest = select(func.max(r.c.revision)).where(r.c.flow_name == name).scalar_subquery()
        return _revision_query(c, (r.c.flow_name == name) & (r.c.revision == newest))
    return _revision_query(c, r.c.flow_name == name)


def last_revisions(c: Connection) -> dict[str, RevisionRecord]:
    """The newest revision of every flow name ever applied, in one query."""
    r = t.revisions
    newest = select(func.max(r.c.id)).group_by(r.c.flow_name).scalar_subquery()
    return {rev.flow_name: rev for rev in _revision_query(c, r.c.id.in_(newest))}


def status_changes(c: Connection, name: str | None = None) -> list[StatusChange]:
    query = select(t.status_changes).order_by(t.status_changes.c.id)
    if name is not None:
        query = query.where(t.status_changes.c.flow_name == name)
    return [_status_change(r) for r in c.execute(query)]


def last_status_changes(c: Connection) -> dict[str, StatusChange]:
    s = t.status_changes
    newest = select(func.max(s.c.id)).group_by(s.c.flow_name).scalar_subquery()
    return {r.flow_name: _status_change(r) for r in c.execute(select(s).where(s.c.id.in_(newest)))}


def _status_change(r: Any) -> StatusChange:
    return StatusChange(r.flow_name, r.from_status, r.to_status, r.at, r.origin, r.actor)


def _revision_query(c: Connection, where: Any) -> list[RevisionRecord]:
    r = t.revisions
    previous = r.alias("previous")
    query = (
        select(r, previous.c.revision.label("previous_revision"))
        .outerjoin(previous, previous.c.id == r.c.previous_id)
        .where(where)
        .order_by(r.c.flow_name, r.c.revision)
    )
    return [
        RevisionRecord(
            row.flow_name,
            row.revision,
            row.kind,
            row.status,
            row.spec,
            row.files,
            row.content_hash,
            row.applied_at,
            row.applied_by,
            row.git_commit,
            row.previous_revision,
            row.git_dirty,
        )
        for row in c.execute(query)
    ]
