"""SQL for the built-in CRM: contacts and companies, and what a step creates.

``CrmTx`` works inside a store transaction, so a step's CRM effect commits with the
participant's move, and an import commits whole or not at all. Set-based where it
matters: imports and memberships go in batches, never a query per row. Contacts
are here; memberships, associates and the event log have modules of their own
(``membership_store``, ``associate_store``, ``event_store``) and ``CrmTx`` gathers them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from reconciler.state import crm as c
from reconciler.state.associate_store import AssociateTx
from reconciler.state.bulk import EACH, chunks, update_many
from reconciler.state.crm_records import AssociateRecord, ContactRecord, EventRecord, NewEvent
from reconciler.state.event_store import EventTx
from reconciler.state.membership_store import MembershipTx
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


class CrmTx(MembershipTx, AssociateTx, EventTx):
    """CRM reads and writes inside one store transaction."""

    def __init__(self, tx: Tx) -> None:
        self.c: Connection = tx.c

    # --- contacts -------------------------------------------------------------------

    def contacts_by_email(self, emails: Iterable[str]) -> dict[str, ContactRecord]:
        wanted = sorted({e.lower() for e in emails})
        found: dict[str, ContactRecord] = {}
        columns = [c.contacts.c.id, c.contacts.c.custom, *(c.contacts.c[name] for name in CONTACT_COLUMNS)]
        query = select(*columns).where(c.contacts.c.email.in_(EACH))
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

    # --- activities ---------------------------------------------------------------------

    def insert_rows(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Bulk insert follow-ups, requests or sales made by a step."""
        target = {"follow_ups": c.follow_ups, "requests": c.requests, "sales": c.sales}[table]
        if rows:
            self.c.execute(insert(target), [dict(r) for r in rows])


__all__ = [
    "CONTACT_COLUMNS",
    "CONTACT_DEFAULTS",
    "AssociateRecord",
    "ContactRecord",
    "CrmTx",
    "EventRecord",
    "NewEvent",
    "chunks",
]
