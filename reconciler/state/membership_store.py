"""SQL for memberships: contacts in static selections and projects.

Split from ``crm_store`` because membership is the CRM's set-based hot spot: steps
add and remove whole batches, and splits and criteria ask "which of these contacts
are in which of these groups" once per batch, never once per contact. A group is
created on first use, also when another writer creates it at the same moment.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ARRAY, Connection, Integer, delete, func, insert, literal, select
from sqlalchemy.exc import IntegrityError

from reconciler.state import crm as c
from reconciler.state.bulk import EACH, chunks, insert_many


class MembershipTx:
    """The membership statements of ``CrmTx`` (a mixin: ``c`` is the transaction's connection)."""

    c: Connection

    def add_members(self, kind: str, name: str, contact_ids: Sequence[int], now: datetime) -> list[int]:
        """Add contacts to a static selection or project (created on first use);
        returns the ids that were not members yet."""
        group, members, key = _membership(kind)
        group_id = self._group_id(group, name, now)
        current = self._members(members, key, group_id, contact_ids)
        new = [i for i in dict.fromkeys(contact_ids) if i not in current]
        if new:
            insert_many(self.c, members, [{key: group_id, "contact_id": i, "added_at": now} for i in new])
        return new

    def remove_members(self, kind: str, name: str, contact_ids: Sequence[int]) -> list[int]:
        group, members, key = _membership(kind)
        group_id = self.c.execute(select(group.c.id).where(group.c.name == name)).scalar()
        if group_id is None:
            return []
        current = self._members(members, key, group_id, contact_ids)
        gone = [i for i in dict.fromkeys(contact_ids) if i in current]
        for part in chunks(gone):
            self.c.execute(delete(members).where(members.c[key] == group_id, members.c.contact_id.in_(part)))
        return gone

    def memberships(self, kind: str, names: Iterable[str], contact_ids: Sequence[int]) -> set[tuple[str, int]]:
        """(group name, contact id) for each of ``contact_ids`` in each group of ``names``."""
        group, members, key = _membership(kind)
        wanted = sorted(set(names))
        if not wanted or not contact_ids:
            return set()
        groups = {
            int(i): str(n) for i, n in self.c.execute(select(group.c.id, group.c.name).where(group.c.name.in_(wanted)))
        }
        if not groups:
            return set()
        found = self._member_rows(members, key, list(groups), contact_ids)
        return {(groups[group_id], contact_id) for group_id, contact_id in found}

    def _group_id(self, group: Any, name: str, now: datetime) -> int:
        found = self.c.execute(select(group.c.id).where(group.c.name == name)).scalar()
        if found is not None:
            return int(found)
        try:
            with self.c.begin_nested():  # another writer may create the same group at this moment
                result = self.c.execute(insert(group).values(name=name, created_at=now))
        except IntegrityError:
            return int(self.c.execute(select(group.c.id).where(group.c.name == name)).scalar_one())
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])

    def _members(self, members: Any, key: str, group_id: int, contact_ids: Sequence[int]) -> set[int]:
        return {contact_id for _, contact_id in self._member_rows(members, key, [group_id], contact_ids)}

    def _member_rows(
        self, members: Any, key: str, group_ids: Sequence[int], contact_ids: Sequence[int]
    ) -> set[tuple[int, int]]:
        """(group id, contact id) of these contacts in these groups. On PostgreSQL the
        contacts come as ``unnest(array)`` joined to the members: one primary-key probe
        per contact whatever the statistics say. (With a long IN list and statistics
        from when the group was small, it read every member of the group instead: a
        third of a second per batch at 100k members.)"""
        found: set[tuple[int, int]] = set()
        group_column, contact_column = members.c[key], members.c.contact_id
        for part in chunks(list(dict.fromkeys(contact_ids))):
            query = select(group_column, contact_column).where(group_column.in_(list(group_ids)))
            if self.c.dialect.name == "postgresql":
                wanted = func.unnest(literal(list(part), ARRAY(Integer))).table_valued("id").render_derived()
                query = query.join(wanted, contact_column == wanted.c.id)
                found.update((int(g), int(i)) for g, i in self.c.execute(query))
            else:
                query = query.where(contact_column.in_(EACH))
                found.update((int(g), int(i)) for g, i in self.c.execute(query, {"each": part}))
        return found


def _membership(kind: str) -> tuple[Any, Any, str]:
    if kind == "selection":
        return c.selections, c.selection_members, "selection_id"
    if kind == "project":
        return c.projects, c.project_members, "project_id"
    raise ValueError(f"unknown membership kind {kind!r}")
