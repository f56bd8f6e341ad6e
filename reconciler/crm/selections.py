"""``selections add``: put existing contacts in a static selection, firing its triggers.

A selection is created on first use. Every new member gets one
``added_to_selection`` event in the same transaction, so flows that trigger on the
selection enroll them; contacts already in it change nothing. All-or-nothing: one
unknown or invalid address and nobody is added. Nothing here prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pydantic import TypeAdapter, ValidationError

from reconciler.crm.cells import parse_email
from reconciler.crm.event_validation import Subject
from reconciler.errors import UserError
from reconciler.state import Store
from reconciler.state.crm_store import CrmTx, NewEvent


@dataclass(frozen=True)
class SelectionAdd:
    name: str
    added: list[str]
    already: int

    def summary(self) -> str:
        return f"added {len(self.added)} contact(s) to {self.name} ({self.already} already members)"


_SUBJECT: TypeAdapter[str] = TypeAdapter(Subject)


def add_to_selection(store: Store, name: str, emails: Sequence[str], now: datetime) -> SelectionAdd:
    """Add existing contacts to a static selection (created if needed); one
    ``added_to_selection`` event per new member fires the flows' triggers."""
    try:
        name = _SUBJECT.validate_python(name)
    except ValidationError as exc:
        raise UserError(f"invalid selection name {name!r}: {exc.errors()[0]['msg']}") from None
    wanted: list[str] = []
    invalid: list[str] = []
    for email in emails:
        try:
            wanted.append(parse_email(email))
        except ValueError:
            invalid.append(email)
    if invalid:
        raise UserError(f"invalid e-mail address(es): {', '.join(invalid)}; nothing was added to {name}")
    wanted = list(dict.fromkeys(wanted))
    with store.transaction() as tx:
        crm = CrmTx(tx)
        found = crm.contacts_by_email(wanted)
        unknown = [e for e in wanted if e not in found]
        if unknown:
            raise UserError(f"no contact with e-mail {', '.join(unknown)}; nothing was added to {name}")
        new = set(crm.add_members("selection", name, [found[e].id for e in wanted], now))
        added = [e for e in wanted if found[e].id in new]
        crm.append_events([NewEvent("added_to_selection", e, now, subject=name, source="crm") for e in added])
    return SelectionAdd(name, added, len(wanted) - len(added))
