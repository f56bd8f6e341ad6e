"""Load, for a batch of contacts, exactly the facts their conditions ask about."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reconciler.executor.conditions import Facts
from reconciler.spec.conditions import (
    AllOf,
    AnyOf,
    Condition,
    FormFieldCondition,
    InProject,
    InSelection,
    LinkClickedCondition,
    Not,
)
from reconciler.spec.fields import COMPANY_FIELDS
from reconciler.state.crm_store import ContactRecord, CrmTx


def company_view(name: str | None, found: Mapping[str, Any] | None) -> dict[str, Any]:
    """A contact's company as merge fields see it: every company field (None where the
    CRM has no value, or no such company) and ``custom``."""
    view: dict[str, Any] = dict.fromkeys(COMPANY_FIELDS) | {"name": name, "custom": {}}
    if found:
        view.update({k: v for k, v in found.items() if k in view})
        view["custom"] = dict(found.get("custom") or {})
    return view


@dataclass
class Needs:
    selections: set[str] = field(default_factory=set)
    projects: set[str] = field(default_factory=set)
    links: bool = False
    forms: set[str] = field(default_factory=set)
    company: bool = False

    @property
    def lookups(self) -> bool:
        """Is there more to load than the contact's own fields?"""
        return bool(self.selections or self.projects or self.links or self.forms or self.company)

    def add(self, condition: Condition | None, form: str | None = None) -> None:
        if condition is None:
            return
        if isinstance(condition, AllOf | AnyOf):
            for child in condition.all if isinstance(condition, AllOf) else condition.any:
                self.add(child, form)
        elif isinstance(condition, Not):
            self.add(condition.not_, form)
        elif isinstance(condition, InSelection):
            self.selections.add(condition.selection)
        elif isinstance(condition, InProject):
            self.projects.add(condition.project)
        elif isinstance(condition, LinkClickedCondition):
            self.links = True
        elif isinstance(condition, FormFieldCondition):
            self.forms.add(form or "")
        elif getattr(condition, "field", "").startswith("company."):
            self.company = True


class FactLoader:
    """Facts per contact, with this batch's own membership and company changes overlaid."""

    def __init__(self, crm: CrmTx) -> None:
        self.crm = crm
        self.added: dict[str, set[tuple[str, int]]] = {"selection": set(), "project": set()}
        self.removed: dict[str, set[tuple[str, int]]] = {"selection": set(), "project": set()}
        # (kind, group) → (members, contacts asked about), read once per batch by ``preload``
        self._preloaded: dict[tuple[str, str], tuple[set[int], set[int]]] = {}
        # company name → its values as this batch sees them (None: no such company), read once
        self._companies: dict[str, dict[str, Any] | None] = {}
        self.company_changes: dict[str, dict[str, Any]] = {}  # name → changed columns, to flush

    def companies(self, names: Iterable[str | None]) -> dict[str, dict[str, Any] | None]:
        """The companies called ``names`` (read once per batch, with this batch's changes)."""
        wanted = {n for n in names if n}
        missing = sorted(wanted - set(self._companies))
        if missing:
            found = self.crm.companies_by_name(missing)
            self._companies.update({name: found.get(name) for name in missing})
        return {name: self._companies[name] for name in wanted}

    def change_company(self, name: str, column: str, value: Any) -> None:
        """Stage one column of a company (``custom``: the whole dict), creating it if need be."""
        current = self.companies([name])[name]
        if current is None:
            current = self._companies[name] = {"name": name, "custom": {}}
        current[column] = value
        self.company_changes.setdefault(name, {})[column] = value

    def load(self, contacts: Sequence[ContactRecord], needs: Needs) -> dict[str, Facts]:
        ids = [c.id for c in contacts]
        selections = self._groups("selection", needs.selections, ids)
        projects = self._groups("project", needs.projects, ids)
        emails = [c.email for c in contacts]
        clicks: dict[str, set[tuple[str, str | None]]] = {}
        forms: dict[str, dict[str, list[Mapping[str, Any]]]] = {}
        if needs.links or needs.forms:
            for event in self.crm.events_of(
                emails,
                [t for t, need in (("link_clicked", needs.links), ("form_submitted", bool(needs.forms))) if need],
            ):
                if event.type == "link_clicked" and event.subject:
                    email_step = event.data.get("email_step")
                    clicks.setdefault(event.contact_email, set()).add(
                        (event.subject, str(email_step) if email_step else None)
                    )
                elif event.type == "form_submitted" and event.subject:
                    fields = event.data.get("fields", {})
                    forms.setdefault(event.contact_email, {}).setdefault(event.subject, []).append(
                        dict(fields) if isinstance(fields, dict) else {}
                    )
        companies = self.companies(c.get("company") for c in contacts) if needs.company else {}
        return {
            c.email: Facts(
                contact=c,
                company=companies.get(c.get("company") or ""),
                selections=frozenset(n for n, i in selections if i == c.id),
                projects=frozenset(n for n, i in projects if i == c.id),
                clicks=frozenset(clicks.get(c.email, set())),
                forms=forms.get(c.email, {}),
            )
            for c in contacts
        }

    def preload(self, kind: str, names: Iterable[str], contact_ids: Sequence[int]) -> None:
        """Read the membership of these contacts in these groups once, for ``member``."""
        names = set(names) - {n for k, n in self._preloaded if k == kind}
        if not names or not contact_ids:
            return
        found = self.crm.memberships(kind, names, contact_ids)
        for name in names:
            self._preloaded[(kind, name)] = ({i for n, i in found if n == name}, set(contact_ids))

    def member(self, kind: str, name: str, contact_id: int) -> bool:
        known = self._preloaded.get((kind, name))
        if known is not None and contact_id in known[1]:
            key = (name, contact_id)
            if key in self.added[kind]:
                return True
            if key in self.removed[kind]:
                return False
            return contact_id in known[0]
        return (name, contact_id) in self._groups(kind, {name}, [contact_id])

    def _groups(self, kind: str, names: Iterable[str], ids: Sequence[int]) -> set[tuple[str, int]]:
        names = set(names)
        if not names:
            return set()
        found = self.crm.memberships(kind, names, ids)
        wanted = set(ids)
        found |= {(n, i) for n, i in self.added[kind] if n in names and i in wanted}
        return found - self.removed[kind]

    def note(self, kind: str, name: str, contact_id: int, *, added: bool) -> None:
        key = (name, contact_id)
        (self.added if added else self.removed)[kind].add(key)
        (self.removed if added else self.added)[kind].discard(key)
