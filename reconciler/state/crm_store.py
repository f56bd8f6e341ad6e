"""SQL for the built-in CRM: contacts, memberships, activities, associates, events.

``CrmTx`` works inside a store transaction, so a step's CRM effect commits with the
participant's move, and an import commits whole or not at all. Set-based where it
matters: imports and memberships go in batches, never a query per row.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Connection,
    Integer,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import BindParameter

from reconciler.state import crm as c
from reconciler.state.bulk import insert_many, update_many
from reconciler.state.store import Tx

CONTACT_COLUMNS = (
    "email",
    "first_name",
    "last_name",
    "title",
    "mobile",
    "phone",
    "company",
    "category",
    "business",
    "country",
    "city",
    "language",
    "interests",
    "subscriptions",
    "consent_marketing",
    "blocked",
    "retired",
    "birth_date",
    "score",
    "our_contact",
    "our_support_manager",
)
CONTACT_DEFAULTS: dict[str, Any] = {
    "interests": [],
    "subscriptions": [],
    "consent_marketing": False,
    "blocked": False,
    "retired": False,
}
_CHUNK = 500  # rows per IN (...) or executemany batch
# ``column.in_(_EACH)`` with ``{"each": values}``: the list goes in as one expanding
# parameter, not as a literal SQLAlchemy coerces value by value (hot reads of a batch).
_EACH: BindParameter[Any] = bindparam("each", expanding=True)


@dataclass(frozen=True)
class ContactRecord:
    id: int
    email: str
    values: Mapping[str, Any]  # every column of CONTACT_COLUMNS
    custom: Mapping[str, Any] = field(default_factory=dict)

    def get(self, name: str) -> Any:
        """A field by its spec name: ``first_name``, ``full_name``, ``custom.tier``."""
        if name.startswith("custom."):
            return self.custom.get(name[len("custom.") :])
        if name == "full_name":
            parts = [self.values.get("first_name"), self.values.get("last_name")]
            return " ".join(p for p in parts if p) or None
        return self.values.get(name)

    def as_template_data(self) -> dict[str, Any]:
        data = dict(self.values)
        data["full_name"] = self.get("full_name")
        data["custom"] = dict(self.custom)
        return data


@dataclass(frozen=True)
class NewEvent:
    type: str
    contact_email: str
    occurred_at: datetime
    subject: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    source: str = "emit"
    idempotency_key: str | None = None


@dataclass(frozen=True)
class EventRecord:
    id: int
    type: str
    contact_email: str
    subject: str | None
    data: Mapping[str, Any]
    source: str
    occurred_at: datetime


@dataclass(frozen=True)
class AssociateRecord:
    id: int
    name: str
    email: str | None
    mobile: str | None
    group_name: str | None
    active: bool


def chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class CrmTx:
    """CRM reads and writes inside one store transaction."""

    def __init__(self, tx: Tx) -> None:
        self.c: Connection = tx.c

    # --- contacts -------------------------------------------------------------------

    def contacts_by_email(self, emails: Iterable[str]) -> dict[str, ContactRecord]:
        wanted = sorted({e.lower() for e in emails})
        found: dict[str, ContactRecord] = {}
        columns = [c.contacts.c.id, c.contacts.c.custom, *(c.contacts.c[name] for name in CONTACT_COLUMNS)]
        query = select(*columns).where(c.contacts.c.email.in_(_EACH))
        for part in chunks(wanted):
            for row in self.c.execute(query, {"each": part}).all():
                values = dict(zip(CONTACT_COLUMNS, row[2:], strict=True))
                found[values["email"]] = ContactRecord(row[0], values["email"], values, row[1] or {})
        return found

    def upsert_contacts(self, rows: Sequence[Mapping[str, Any]], now: datetime) -> tuple[list[str], list[str]]:
        """Insert or update contacts by email (only the columns given change).
        Returns (created, updated) emails. Rows carry CONTACT_COLUMNS keys and ``custom``."""
        created: list[str] = []
        updated: list[str] = []
        for part in chunks(list(rows)):
            existing = self.contacts_by_email(r["email"] for r in part)
            inserts = []
            for row in {r["email"].lower(): r for r in part}.values():  # the last row of an e-mail wins
                email = row["email"].lower()
                values = {k: v for k, v in row.items() if k in CONTACT_COLUMNS and k != "email"}
                custom = dict(row.get("custom") or {})
                current = existing.get(email)
                if current is None:
                    inserts.append(
                        {
                            **CONTACT_DEFAULTS,
                            **{k: None for k in CONTACT_COLUMNS if k not in CONTACT_DEFAULTS},
                            **values,
                            "email": email,
                            "custom": custom,
                            "created_at": now,
                            "updated_at": now,
                        }
                    )
                    created.append(email)
                else:
                    merged = {**current.custom, **custom}
                    changes = {k: v for k, v in values.items() if current.values.get(k) != v}
                    if changes or merged != dict(current.custom):
                        self.c.execute(
                            update(c.contacts)
                            .where(c.contacts.c.id == current.id)
                            .values(**changes, custom=merged, updated_at=now)
                        )
                        updated.append(email)
            if inserts:
                self.c.execute(insert(c.contacts), inserts)
        return created, updated

    def update_contacts(self, changes: Mapping[int, Mapping[str, Any]], now: datetime) -> None:
        """Many contacts' field changes (``custom`` included): one bulk update per set of columns."""
        grouped: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for contact_id, values in changes.items():
            if values:
                grouped.setdefault(tuple(sorted(values)), []).append({"id": contact_id, **values})
        for rows in grouped.values():
            update_many(self.c, c.contacts, rows, updated_at=now)

    def ensure_companies(self, names: Iterable[str]) -> None:
        wanted = sorted({n for n in names if n})
        for part in chunks(wanted):
            have = set(self.c.execute(select(c.companies.c.name).where(c.companies.c.name.in_(part))).scalars())
            new = [{"name": n, "custom": {}} for n in part if n not in have]
            if new:
                self.c.execute(insert(c.companies), new)

    def update_company(self, name: str, values: Mapping[str, Any]) -> None:
        """Set fields (and ``custom``) of the company called ``name``."""
        if values:
            self.c.execute(update(c.companies).where(c.companies.c.name == name).values(**dict(values)))

    def companies_by_name(self, names: Iterable[str]) -> dict[str, dict[str, Any]]:
        wanted = sorted({n for n in names if n})
        found: dict[str, dict[str, Any]] = {}
        for part in chunks(wanted):
            for row in self.c.execute(select(c.companies).where(c.companies.c.name.in_(part))):
                values = dict(row._mapping)
                values["custom"] = dict(values.get("custom") or {})
                found[row.name] = values
        return found

    # --- selections and projects -------------------------------------------------------

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
                query = query.where(contact_column.in_(_EACH))
                found.update((int(g), int(i)) for g, i in self.c.execute(query, {"each": part}))
        return found

    # --- activities ---------------------------------------------------------------------

    def insert_rows(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Bulk insert follow-ups, requests or sales made by a step."""
        target = {"follow_ups": c.follow_ups, "requests": c.requests, "sales": c.sales}[table]
        if rows:
            self.c.execute(insert(target), [dict(r) for r in rows])

    # --- associates and their diaries ----------------------------------------------------

    def upsert_associates(self, rows: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
        """Insert or update associates by name; only the keys given change. Returns (created, updated)."""
        existing = {a.name: a for a in self.associates()}
        created = updated = 0
        for row in rows:
            values = {k: row[k] for k in ("email", "mobile", "group_name", "active") if k in row}
            current = existing.get(row["name"])
            if current is None:
                self.c.execute(
                    insert(c.associates).values(
                        name=row["name"],
                        **{"email": None, "mobile": None, "group_name": None, "active": True, **values},
                    )
                )
                created += 1
            elif any(getattr(current, k) != v for k, v in values.items()):
                self.c.execute(update(c.associates).where(c.associates.c.name == row["name"]).values(**values))
                updated += 1
        return created, updated

    def associates(self) -> list[AssociateRecord]:
        return [
            AssociateRecord(r.id, r.name, r.email, r.mobile, r.group_name, r.active)
            for r in self.c.execute(select(c.associates).order_by(c.associates.c.name))
        ]

    def appointments(self, associate_id: int, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
        a = c.appointments
        query = (
            select(a.c.starts_at, a.c.ends_at)
            .where(a.c.associate_id == associate_id, a.c.ends_at > start, a.c.starts_at < end)
            .order_by(a.c.starts_at)
        )
        return [(s, e) for s, e in self.c.execute(query)]

    def add_appointment(
        self, associate_id: int, start: datetime, end: datetime, title: str, contact_id: int | None
    ) -> None:
        self.c.execute(
            insert(c.appointments).values(
                associate_id=associate_id, starts_at=start, ends_at=end, title=title, contact_id=contact_id
            )
        )

    # --- events ---------------------------------------------------------------------------

    def known_event_keys(self, keys: Iterable[str]) -> set[str]:
        """The idempotency keys among ``keys`` that stored events already carry."""
        seen: set[str] = set()
        for part in chunks(sorted(set(keys))):
            column = c.events.c.idempotency_key
            seen.update(self.c.execute(select(column).where(column.in_(part))).scalars())
        return seen

    def append_events(self, new: Sequence[NewEvent], *, awaited: Container[str] | None = None) -> int:
        """Store events; one whose idempotency key was seen before is dropped. Returns how many were stored.

        With ``awaited`` (the types anything reacts to), an event of another type is
        stored already processed: the event pass would only pass over it."""
        seen = self.known_event_keys(e.idempotency_key for e in new if e.idempotency_key)
        rows = []
        for event in new:
            if event.idempotency_key and event.idempotency_key in seen:
                continue
            if event.idempotency_key:
                seen.add(event.idempotency_key)
            rows.append(
                {
                    "type": event.type,
                    "contact_email": event.contact_email.lower(),
                    "subject": event.subject,
                    "data": dict(event.data),
                    "source": event.source,
                    "idempotency_key": event.idempotency_key,
                    "occurred_at": event.occurred_at,
                    "processed_at": None if awaited is None or event.type in awaited else event.occurred_at,
                }
            )
        insert_many(self.c, c.events, rows)
        return len(rows)

    def unprocessed_events(self, limit: int) -> list[EventRecord]:
        query = select(c.events).where(c.events.c.processed_at.is_(None)).order_by(c.events.c.id).limit(limit)
        if self.c.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        return [_event(r) for r in self.c.execute(query)]

    def pass_over_events(self, except_types: Iterable[str], now: datetime) -> int:
        """Mark every unprocessed event whose type is not in ``except_types`` processed
        at once (nothing reacts to it; it stays stored for reports and splits)."""
        e = c.events
        query = update(e).where(e.c.processed_at.is_(None), e.c.type.not_in(sorted(set(except_types))))
        return int(self.c.execute(query.values(processed_at=now)).rowcount)

    def mark_processed(self, ids: Sequence[int], now: datetime) -> None:
        for part in chunks(list(ids)):
            self.c.execute(update(c.events).where(c.events.c.id.in_(part)).values(processed_at=now))

    def events_of(
        self, emails: Iterable[str], types: Iterable[str], since: datetime | None = None
    ) -> list[EventRecord]:
        wanted = sorted(set(emails))
        found: list[EventRecord] = []
        for part in chunks(wanted):
            conditions: list[ColumnElement[bool]] = [
                c.events.c.contact_email.in_(part),
                c.events.c.type.in_(sorted(set(types))),
            ]
            if since is not None:
                conditions.append(c.events.c.occurred_at >= since)
            found.extend(
                _event(r) for r in self.c.execute(select(c.events).where(and_(*conditions)).order_by(c.events.c.id))
            )
        return found


def _membership(kind: str) -> tuple[Any, Any, str]:
    if kind == "selection":
        return c.selections, c.selection_members, "selection_id"
    if kind == "project":
        return c.projects, c.project_members, "project_id"
    raise ValueError(f"unknown membership kind {kind!r}")


def _event(row: Any) -> EventRecord:
    return EventRecord(
        row.id, row.type, row.contact_email, row.subject, dict(row.data or {}), row.source, row.occurred_at
    )


def first_free_slot(
    busy: Sequence[tuple[datetime, datetime]],
    after: datetime,
    length: timedelta,
    tz: tzinfo,
    *,
    day_start: int = 8,
    day_end: int = 17,
    working_days_only: bool = True,
) -> datetime:
    """The first slot of ``length`` at or after ``after`` within working hours in ``tz``
    that overlaps none of ``busy``; aware datetimes in, UTC out."""
    slot = after.astimezone(tz)
    if slot.minute or slot.second or slot.microsecond:  # meetings start on the hour
        slot = slot.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    for _ in range(10_000):
        opens = slot.replace(hour=day_start, minute=0, second=0, microsecond=0)
        closes = slot.replace(hour=day_end, minute=0, second=0, microsecond=0)
        if (working_days_only and slot.weekday() >= 5) or slot + length > closes:
            slot = opens + timedelta(days=1)
        elif slot < opens:
            slot = opens
        else:
            clash = max((e for s, e in busy if s < slot + length and e > slot), default=None)
            if clash is None:
                return slot.astimezone(UTC)
            slot = clash.astimezone(tz)
    raise ValueError("no free slot in the diary within a year")


__all__ = ["AssociateRecord", "ContactRecord", "CrmTx", "EventRecord", "NewEvent", "first_free_slot"]
